//! End-to-end tests of the controllers (being written).
mod support;
