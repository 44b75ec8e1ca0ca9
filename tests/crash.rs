//! End-to-end tests (crash).
mod support;
