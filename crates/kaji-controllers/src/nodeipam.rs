//! Node IPAM, as upstream's range allocator (pkg/controller/nodeipam): every node without a
//! `spec.podCIDR` gets the next free /24 of the cluster CIDR (`--cluster-cidr`, k3s's default
//! 10.42.0.0/16);
//! nodes that already have one (e.g. hollow nodes, which pick their own) are left alone and their
//! ranges are never handed out twice.

use crate::Options;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kaji_runtime::informer::Factory;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The default cluster CIDR the ranges come from, and the size of each node's range.
pub const CLUSTER_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 42, 0, 0), 16);
pub const NODE_MASK: u8 = 24;

/// Parses a cluster CIDR such as `10.42.0.0/16` (prefix 8 to 24, so that it holds /24s).
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let kaji_api::cidr::Cidr(ip, len) = s.parse()?;
    if !(8..=NODE_MASK).contains(&len) {
        return Err(format!(
            "{s:?}: the prefix must be between /8 and /{NODE_MASK} (nodes get /{NODE_MASK}s)"
        ));
    }
    Ok((ip, len))
}

/// The `index`-th /24 of the cluster CIDR.
pub fn range(cidr: (Ipv4Addr, u8), index: u32) -> String {
    let base = u32::from(cidr.0);
    format!(
        "{}/{NODE_MASK}",
        Ipv4Addr::from(base + (index << (32 - NODE_MASK)))
    )
}

/// The first range not in `used`, if any is left.
pub fn next_free(cidr: (Ipv4Addr, u8), used: &HashSet<String>) -> Option<String> {
    let count = 1u32 << (NODE_MASK - cidr.1);
    (0..count)
        .map(|i| range(cidr, i))
        .find(|r| !used.contains(r))
}

/// Registers the node informer and returns the loop: after every change, each node without a
/// podCIDR gets the first free /24.
pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let nodes = f.informer::<Node>();
    let api: Api<Node> = Api::all(f.client());
    Box::pin(async move {
        let mut changes = std::pin::pin!(nodes.subscribe());
        // Ranges given but not yet seen in the cache: (node uid, range) by node name.
        let mut given: HashMap<String, (String, String)> = HashMap::new();
        nodes.ready().await;
        loop {
            let state = nodes.state();
            let cidr_of = |n: &Node| {
                n.spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.clone())
                    .filter(|c| !c.is_empty())
            };
            given.retain(|name, (uid, _)| {
                state.iter().any(|n| {
                    n.metadata.name.as_deref() == Some(name.as_str())
                        && n.metadata.uid.as_deref() == Some(uid.as_str())
                        && cidr_of(n).is_none()
                })
            });
            let mut used: HashSet<String> = state.iter().filter_map(|n| cidr_of(n)).collect();
            used.extend(given.values().map(|(_, c)| c.clone()));
            let mut missing: Vec<&Arc<Node>> = state
                .iter()
                .filter(|n| cidr_of(n).is_none())
                .filter(|n| !given.contains_key(n.metadata.name.as_deref().unwrap_or_default()))
                .collect();
            missing.sort_by_key(|n| n.metadata.name.clone());
            for node in missing {
                let name = node.metadata.name.clone().unwrap_or_default();
                let Some(cidr) = next_free(opts.cluster_cidr, &used) else {
                    tracing::warn!(node = %name, "no pod CIDR left in the cluster CIDR");
                    break;
                };
                let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(node = %name, pod_cidr = %cidr, "allocated the node's pod CIDR");
                        used.insert(cidr.clone());
                        given.insert(name, (node.metadata.uid.clone().unwrap_or_default(), cidr));
                    }
                    Err(e) => {
                        tracing::warn!(node = %name, error = %e, "setting the node's pod CIDR")
                    }
                }
            }
            // Wait for a change, then take every change already queued.
            if changes.next().await.is_none() {
                return Ok(());
            }
            while let Some(Some(_)) = changes.next().now_or_never() {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_skip_used_ones() {
        assert_eq!(range(CLUSTER_CIDR, 0), "10.42.0.0/24");
        assert_eq!(range(CLUSTER_CIDR, 3), "10.42.3.0/24");
        let used: HashSet<String> = ["10.42.0.0/24".to_string(), "10.42.1.0/24".to_string()].into();
        assert_eq!(
            next_free(CLUSTER_CIDR, &used).as_deref(),
            Some("10.42.2.0/24")
        );
        let small = parse_cidr("10.99.7.0/24").unwrap();
        assert_eq!(
            next_free(small, &HashSet::new()).as_deref(),
            Some("10.99.7.0/24")
        );
        assert_eq!(next_free(small, &["10.99.7.0/24".to_string()].into()), None);
    }

    #[test]
    fn cluster_cidrs_parse() {
        assert_eq!(parse_cidr("10.42.0.0/16"), Ok(CLUSTER_CIDR));
        assert_eq!(
            parse_cidr("10.42.1.2/16"),
            Ok(CLUSTER_CIDR),
            "host bits are masked off"
        );
        assert!(parse_cidr("10.42.0.0/25").is_err());
        assert!(parse_cidr("10.42.0.0").is_err());
    }
}
