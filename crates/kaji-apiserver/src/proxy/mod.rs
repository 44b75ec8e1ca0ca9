//! The one call from the hub to a spoke, as upstream's: pods/log, exec, attach and portforward
//! relayed to the node's kubelet over TLS (`kubelet`: connecting, streaming a GET; `streaming`:
//! upgrades, with the WebSocket ends and translations in `streaming/` and `wstunnel`). Where on
//! which kubelet is the pod registry's question (`registry::core::pod::location`).

pub mod kubelet;
pub mod streaming;
mod wstunnel;
