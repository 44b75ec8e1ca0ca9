//! End-to-end tests (kubectl).
mod support;
