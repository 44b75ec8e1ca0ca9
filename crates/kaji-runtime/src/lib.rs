//! The layer the spokes share (the start of the shared spoke runtime). Where to start:
//! - [`watch::reflect`]: a cached watch of one kind whose every change pokes a `Notify`, for
//!   spokes that rebuild one picture of the cluster (proxy rules, DNS index, ingress routes);
//! - [`endpoints`]: a Service port's endpoints read off its EndpointSlices, and upstream's choice
//!   of which of them take traffic;
//! - [`http`]: a minimal HTTP/1.1 responder for `/metrics` and health-check ports;
//! - [`informer`]: the process's shared informers (one watch and one cache per kind, indexes by
//!   namespace, owner and node, managedFields stripped), started once by the [`informer::Factory`];
//! - [`controller`]: kube-runtime controllers fed by those informers, with client-go's per-key
//!   exponential back-off (5 ms to 1000 s);
//! - [`events`]: the one core/v1 Event recorder (dedup into `count`, aggregation of similar
//!   events), used by the controllers, the scheduler and the kubelet;
//! - [`leader`]: leader election on a Lease (client-go's), for the scheduler and the controller
//!   manager;
//! - [`selector`] and [`volume`]: label-selector matching on typed objects and PersistentVolume
//!   matching, shared by the PV binder and the scheduler.

pub mod controller;
pub mod endpoints;
pub mod events;
pub mod http;
pub mod informer;
pub mod leader;
pub mod selector;
pub mod volume;
pub mod watch;
