//! The custom kinds' schemas in `/openapi/v2` and `/openapi/v3` (upstream's
//! `controller/openapi`), so `kubectl explain` and client-side validation know them.
