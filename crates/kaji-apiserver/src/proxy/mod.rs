//! The one call from the hub to a spoke, as upstream's: pods/log, exec, attach and portforward
//! relayed to the node's kubelet over TLS (`kubelet`: connecting, streaming a GET; `streaming`:
//! upgrades, with the WebSocket ends and translations in `streaming/` and `wstunnel`); and the
//! `proxy` subresources of pods, services and nodes (`subresources`: where to; `upgrade_aware`:
//! the relay, as upstream's UpgradeAwareHandler). Where on which kubelet is the pod registry's
//! question (`registry::core::pod::location`).

mod html;
pub mod kubelet;
pub mod log_ws;
pub mod streaming;
pub mod subresources;
pub mod upgrade_aware;
mod wstunnel;
