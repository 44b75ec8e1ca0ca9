//! The pure half of the pod network: which entries a node programs for the other nodes, read
//! from their Node objects (podCIDR and flannel's annotations), and the masquerade ruleset.

use super::{BACKEND_DATA, BACKEND_TYPE, Backend, PUBLIC_IP};
use k8s_openapi::api::core::v1::Node;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Another node as this node's network sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    /// Its podCIDR, e.g. `10.42.2.0/24`.
    pub pod_cidr: String,
    /// The network address of its podCIDR (`10.42.2.0`): flannel's VXLAN gateway, the address
    /// of the peer's VXLAN device.
    pub gateway: Ipv4Addr,
    /// Its underlay address (`flannel.alpha.coreos.com/public-ip`).
    pub public_ip: Ipv4Addr,
    /// The MAC of its VXLAN device (vxlan backend only).
    pub vtep_mac: Option<String>,
}

/// `a.b.c.d/n` with host bits clear: (network, prefix).
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    (u32::from(ip) & !mask == 0).then_some((ip, len))
}

/// A MAC address as `ip` prints it: six lower-case hex pairs.
pub fn parse_mac(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split(':').collect();
    (parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit())))
    .then(|| s.to_ascii_lowercase())
}

/// The peers this node programs: every other node with a podCIDR that announces the same
/// backend (hollow nodes announce none and are skipped), keyed by node name.
pub fn peers(nodes: &[Arc<Node>], own_name: &str, backend: Backend) -> BTreeMap<String, Peer> {
    let mut out = BTreeMap::new();
    for node in nodes {
        let Some(name) = node.metadata.name.as_deref() else {
            continue;
        };
        if name == own_name || node.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(pod_cidr) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) else {
            continue;
        };
        let Some((gateway, _)) = parse_cidr(pod_cidr) else {
            continue;
        };
        let annotations = node.metadata.annotations.clone().unwrap_or_default();
        if annotations.get(BACKEND_TYPE).map(String::as_str) != Some(backend.name()) {
            continue;
        }
        let Some(public_ip) = annotations.get(PUBLIC_IP).and_then(|s| s.parse().ok()) else {
            continue;
        };
        let vtep_mac = match backend {
            Backend::Vxlan => {
                let data: serde_json::Value = annotations
                    .get(BACKEND_DATA)
                    .and_then(|d| serde_json::from_str(d).ok())
                    .unwrap_or_default();
                match data["VtepMAC"].as_str().and_then(parse_mac) {
                    Some(mac) => Some(mac),
                    None => continue,
                }
            }
            _ => None,
        };
        out.insert(
            name.to_string(),
            Peer {
                name: name.to_string(),
                pod_cidr: pod_cidr.to_string(),
                gateway,
                public_ip,
                vtep_mac,
            },
        );
    }
    out
}

/// Every node's podCIDR (sorted, without duplicates): traffic to these keeps its pod source IP.
pub fn pod_cidrs(nodes: &[Arc<Node>]) -> Vec<String> {
    let mut out: Vec<String> = nodes
        .iter()
        .filter_map(|n| n.spec.as_ref()?.pod_cidr.clone())
        .filter(|c| parse_cidr(c).is_some())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The node's masquerade table (ip family), replacing any earlier version atomically: pod
/// traffic to any pod keeps its source IP (pod-to-pod across nodes), pod traffic leaving the pod
/// network is masqueraded, as flannel's `FLANNEL-POSTRTG` chain does.
pub fn masquerade_ruleset(table: &str, own_pod_cidr: &str, pod_cidrs: &[String]) -> String {
    let mut all: Vec<&str> = pod_cidrs.iter().map(String::as_str).collect();
    if !all.contains(&own_pod_cidr) {
        all.push(own_pod_cidr);
    }
    format!(
        "table ip {table} {{}}\n\
         delete table ip {table}\n\
         table ip {table} {{\n\
         \tset pod-cidrs {{\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\tauto-merge\n\t\telements = {{ {elements} }}\n\t}}\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {own_pod_cidr} ip daddr @pod-cidrs return\n\
         \t\tip saddr {own_pod_cidr} ip daddr 224.0.0.0/4 return\n\
         \t\tip saddr {own_pod_cidr} masquerade fully-random\n\
         \t}}\n\
         }}\n",
        elements = all.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cidr: &str, ann: serde_json::Value) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "annotations": ann},
                "spec": {"podCIDR": cidr}
            }))
            .unwrap(),
        )
    }

    fn vx(ip: &str, mac: &str) -> serde_json::Value {
        json!({
            BACKEND_TYPE: "vxlan",
            BACKEND_DATA: format!("{{\"VNIs\":1,\"VtepMAC\":\"{mac}\"}}"),
            PUBLIC_IP: ip,
        })
    }

    #[test]
    fn peers_are_other_nodes_of_the_same_backend() {
        let nodes = vec![
            node("a", "10.42.0.0/24", vx("172.31.0.1", "aa:bb:cc:dd:ee:01")),
            node("b", "10.42.1.0/24", vx("172.31.0.2", "AA:BB:CC:DD:EE:02")),
            node("hollow", "10.42.2.0/24", json!({})),
            node("badmac", "10.42.3.0/24", vx("172.31.0.4", "zz")),
            node(
                "gw",
                "10.42.4.0/24",
                json!({BACKEND_TYPE: "host-gw", PUBLIC_IP: "172.31.0.5"}),
            ),
        ];
        let p = peers(&nodes, "a", Backend::Vxlan);
        assert_eq!(p.keys().collect::<Vec<_>>(), vec!["b"]);
        let b = &p["b"];
        assert_eq!(b.gateway, Ipv4Addr::new(10, 42, 1, 0));
        assert_eq!(b.public_ip, Ipv4Addr::new(172, 31, 0, 2));
        assert_eq!(b.vtep_mac.as_deref(), Some("aa:bb:cc:dd:ee:02"));
        let p = peers(&nodes, "a", Backend::HostGw);
        assert_eq!(p.keys().collect::<Vec<_>>(), vec!["gw"]);
        assert_eq!(p["gw"].vtep_mac, None);
    }

    #[test]
    fn masquerade_keeps_pod_to_pod_sources() {
        let cidrs = pod_cidrs(&[
            node("b", "10.42.1.0/24", json!({})),
            node("a", "10.42.0.0/24", json!({})),
            node("c", "not a cidr", json!({})),
        ]);
        assert_eq!(cidrs, vec!["10.42.0.0/24", "10.42.1.0/24"]);
        let r = masquerade_ruleset("kaji-flannel-x", "10.42.0.0/24", &cidrs);
        assert!(
            r.contains("elements = { 10.42.0.0/24, 10.42.1.0/24 }"),
            "{r}"
        );
        assert!(r.contains("ip saddr 10.42.0.0/24 ip daddr @pod-cidrs return"));
        assert!(r.contains("ip saddr 10.42.0.0/24 masquerade fully-random"));
        assert!(r.starts_with("table ip kaji-flannel-x {}\ndelete table ip kaji-flannel-x\n"));
    }

    #[test]
    fn cidrs_and_macs_are_checked() {
        assert_eq!(
            parse_cidr("10.42.3.0/24"),
            Some((Ipv4Addr::new(10, 42, 3, 0), 24))
        );
        assert_eq!(parse_cidr("10.42.3.1/24"), None);
        assert_eq!(parse_cidr("10.42.3.0/33"), None);
        assert_eq!(
            parse_mac("0A:0b:0c:0d:0e:0f").as_deref(),
            Some("0a:0b:0c:0d:0e:0f")
        );
        assert_eq!(parse_mac("0a:0b:0c:0d:0e"), None);
    }
}
