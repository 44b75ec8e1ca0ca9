//! The node agent. For now it holds the hollow node (`hollow`), a simulation for controller and
//! scale tests: it registers nodes and heartbeats, and reports bound pods Running and Ready
//! without running any container. Its nodes say so with the label `kaji.io/hollow=true`.

pub mod containerd;
pub mod hollow;
pub mod images;
pub mod join;
pub mod loadbalancer;
pub mod logs;
pub mod agent;
pub mod cri;
pub mod flannel;
pub mod node;
pub mod pods;
pub mod resources;
pub mod server;
pub mod stats;
pub mod status;
pub mod streaming;
pub mod token_manager;
pub mod volumes;
