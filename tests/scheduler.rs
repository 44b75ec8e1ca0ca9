//! End-to-end tests of the scheduler (being written).
mod support;
