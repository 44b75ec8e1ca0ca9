//! The dashboard, a spoke like the others: a web UI that talks to the API server as the viewer.
//!
//! Where to start: [`assets`] serves the front end's built files (`ui/dist`, embedded at compile
//! time by `build.rs`) under `/dashboard/`; `kaji server` hands [`assets::respond`] to the API
//! server as a hook run before authentication, so the API server knows nothing of the dashboard.
//! [`login`] is `kaji dashboard` on the server's machine (a ServiceAccount bound to
//! `cluster-admin`, a one-hour token, a URL carrying it); [`standalone`] is
//! `kaji dashboard --kubeconfig F --listen ADDR`: the same files over plain HTTP and a reverse
//! proxy of the API paths to a remote cluster, passing the browser's own credentials through.
//! In both, [`history`] keeps the last hour of the metrics API (sampled with the dashboard's own
//! credentials) and [`service`] serves it to viewers the API server lets read those metrics.

pub mod assets;
pub mod history;
pub mod login;
pub mod service;
pub mod standalone;

pub use assets::{PREFIX, respond, serve};
pub use service::Dashboard;
