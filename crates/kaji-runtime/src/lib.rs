//! The layer the spokes share (the start of the shared spoke runtime). Where to start:
//! - [`watch::reflect`]: a cached watch of one kind whose every change pokes a `Notify`, for
//!   spokes that rebuild one picture of the cluster (proxy rules, DNS index, ingress routes);
//! - [`endpoints`]: a Service port's endpoints read off its EndpointSlices, and upstream's choice
//!   of which of them take traffic;
//! - [`http`]: a minimal HTTP/1.1 responder for `/metrics` and health-check ports.

pub mod endpoints;
pub mod http;
pub mod selector;
pub mod volume;
pub mod watch;
