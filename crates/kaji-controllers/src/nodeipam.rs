//! Node IPAM, as upstream's range allocator (pkg/controller/nodeipam): every node without a
//! `spec.podCIDR` gets the next free /24 of the cluster CIDR (`--cluster-cidr`, k3s's default
//! 10.42.0.0/16);
//! nodes that already have one (e.g. hollow nodes, which pick their own) are left alone and their
//! ranges are never handed out twice.

use crate::Options;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

/// The default cluster CIDR the ranges come from, and the size of each node's range.
pub const CLUSTER_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 42, 0, 0), 16);
pub const NODE_MASK: u8 = 24;

/// Parses a cluster CIDR such as `10.42.0.0/16` (prefix 8 to 24, so that it holds /24s).
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let kaji_api::cidr::Cidr(ip, len) = s.parse()?;
    if !(8..=NODE_MASK).contains(&len) {
        return Err(format!("{s:?}: the prefix must be between /8 and /{NODE_MASK} (nodes get /{NODE_MASK}s)"));
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
    (0..count).map(|i| range(cidr, i)).find(|r| !used.contains(r))
}

pub async fn run(client: Client, opts: Options) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client);
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut init: BTreeMap<String, Node> = BTreeMap::new();
    let mut stream = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Init) => init.clear(),
            Ok(watcher::Event::InitApply(n)) => {
                init.insert(n.metadata.name.clone().unwrap_or_default(), n);
                continue;
            }
            Ok(watcher::Event::InitDone) => nodes = std::mem::take(&mut init),
            Ok(watcher::Event::Apply(n)) => {
                nodes.insert(n.metadata.name.clone().unwrap_or_default(), n);
            }
            Ok(watcher::Event::Delete(n)) => {
                nodes.remove(n.metadata.name.as_deref().unwrap_or_default());
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "node IPAM watch");
                continue;
            }
        }
        let mut used: HashSet<String> = nodes
            .values()
            .filter_map(|n| n.spec.as_ref()?.pod_cidr.clone())
            .collect();
        let missing: Vec<String> = nodes
            .values()
            .filter(|n| {
                n.spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.as_deref())
                    .is_none_or(str::is_empty)
            })
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        for name in missing {
            let Some(cidr) = next_free(opts.cluster_cidr, &used) else {
                tracing::warn!(node = %name, "no pod CIDR left in the cluster CIDR");
                break;
            };
            let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(n) => {
                    tracing::info!(node = %name, pod_cidr = %cidr, "allocated the node's pod CIDR");
                    used.insert(cidr);
                    nodes.insert(name, n);
                }
                Err(e) => tracing::warn!(node = %name, error = %e, "setting the node's pod CIDR"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_skip_used_ones() {
        assert_eq!(range(CLUSTER_CIDR, 0), "10.42.0.0/24");
        assert_eq!(range(CLUSTER_CIDR, 3), "10.42.3.0/24");
        let used: HashSet<String> = ["10.42.0.0/24".to_string(), "10.42.1.0/24".to_string()].into();
        assert_eq!(next_free(CLUSTER_CIDR, &used).as_deref(), Some("10.42.2.0/24"));
        let small = parse_cidr("10.99.7.0/24").unwrap();
        assert_eq!(next_free(small, &HashSet::new()).as_deref(), Some("10.99.7.0/24"));
        assert_eq!(next_free(small, &["10.99.7.0/24".to_string()].into()), None);
    }

    #[test]
    fn cluster_cidrs_parse() {
        assert_eq!(parse_cidr("10.42.0.0/16"), Ok(CLUSTER_CIDR));
        assert_eq!(parse_cidr("10.42.1.2/16"), Ok(CLUSTER_CIDR), "host bits are masked off");
        assert!(parse_cidr("10.42.0.0/25").is_err());
        assert!(parse_cidr("10.42.0.0").is_err());
    }
}
