//! End-to-end tests (api).
mod support;
