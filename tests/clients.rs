//! End-to-end tests (clients).
mod support;
