//! The ruleset generator: a pure function from the node's facts and the Services' ports to one
//! nftables table, shaped like kube-proxy's nftables mode (KEP-3866,
//! `pkg/proxy/nftables/proxier.go`):
//!
//! - `nat-prerouting` / `nat-output` jump to `services`, which looks the packet up in the
//!   `service-ips` verdict map (ClusterIPs, externalIPs, LoadBalancer IPs) and, for the node's
//!   own addresses, in `service-nodeports`;
//! - one chain per service port picks an endpoint with `numgen random mod N` (ready endpoints, or
//!   serving-but-terminating ones when none is ready) and one chain per endpoint DNATs to it;
//! - the filter chains reject what no Service holds: ports of Services without endpoints
//!   (`no-endpoint-services`, `no-endpoint-nodeports`) and *every other address of the service
//!   CIDR*, so a packet for the service range never leaves the node (upstream drops unallocated
//!   IPs; Kaji answers with a reset or ICMP port unreachable so that clients fail at once).
//!
//! The cluster DNS address is the one exception: it is a local address of the node, served by
//! kaji-dns, so its ports 53 and 9153 are let through to the node itself.

use crate::model::{Endpoint, ServicePort, usable};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

pub use kaji_api::cidr::Cidr;

/// What the ruleset needs to know of the node it runs on.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeFacts {
    pub node_name: String,
    /// The node's pod range (its podCIDR): traffic from elsewhere to a ClusterIP is masqueraded.
    pub pod_cidr: Option<Cidr>,
    pub service_cidr: Cidr,
    /// The cluster DNS address, a local address of every node (kaji-dns listens on it).
    pub cluster_dns: Ipv4Addr,
}

/// A set or map of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    pub is_map: bool,
    /// The body between braces, e.g. `type ipv4_addr; flags dynamic,timeout; timeout 10800s;`.
    pub definition: String,
    /// Dynamic sets (session affinity) are filled by the kernel: never flushed, so clients keep
    /// their endpoint across syncs.
    pub dynamic: bool,
    pub elements: Vec<String>,
}

/// A chain; base chains carry their hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    /// e.g. `type nat hook prerouting priority dstnat; policy accept;`.
    pub hook: Option<String>,
    pub rules: Vec<String>,
}

/// The whole table, as the generator wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    pub table: String,
    pub sets: Vec<Set>,
    pub chains: Vec<Chain>,
}

const MASQ_MARK: &str = "0x4000";

impl Ruleset {
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets.iter().find(|s| s.name == name)
    }

    /// Rules plus set elements: the size figure reported in metrics.
    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum::<usize>()
            + self.sets.iter().map(|s| s.elements.len()).sum::<usize>()
    }

    /// One `nft -f` transaction that makes the kernel's table equal to this ruleset. Without
    /// `previous` the table is deleted and created anew. With `previous` (what was loaded last)
    /// only the difference is sent, as upstream's partial syncs: new chains are added, chains
    /// whose rules changed are flushed and refilled, map elements are added and deleted one by
    /// one, and chains and sets that are gone are deleted; dynamic sets keep their elements.
    /// Either way the kernel applies all of it or none of it; the in-place form fails when the
    /// table is gone.
    pub fn transaction(&self, previous: Option<&Ruleset>) -> String {
        let t = &self.table;
        let mut out = String::with_capacity(256 + self.rule_count() * 64);
        let Some(prev) = previous else {
            let _ = writeln!(
                out,
                "add table inet {t}\ndelete table inet {t}\nadd table inet {t}"
            );
            for c in &self.chains {
                add_chain(&mut out, t, c);
            }
            for s in &self.sets {
                add_set(&mut out, t, s);
                add_elements(&mut out, t, &s.name, s.elements.iter());
            }
            for c in &self.chains {
                add_rules(&mut out, t, c);
            }
            return out;
        };
        let old_chains: BTreeMap<&str, &Chain> =
            prev.chains.iter().map(|c| (c.name.as_str(), c)).collect();
        let old_sets: BTreeMap<&str, &Set> =
            prev.sets.iter().map(|s| (s.name.as_str(), s)).collect();
        // No `add table` here: if someone removed the table since the last load, this
        // transaction fails as a whole (and the applier replaces the table whole) rather than
        // creating a table holding only the difference.
        // 1. New chains exist before anything points at them.
        for c in self
            .chains
            .iter()
            .filter(|c| !old_chains.contains_key(c.name.as_str()))
        {
            add_chain(&mut out, t, c);
        }
        // 2. Sets and map elements: deletions first (a changed verdict is a delete and an add).
        for s in &self.sets {
            match old_sets.get(s.name.as_str()) {
                None => {
                    add_set(&mut out, t, s);
                    add_elements(&mut out, t, &s.name, s.elements.iter());
                }
                Some(old) if old.definition != s.definition => {
                    let kind = if s.is_map { "map" } else { "set" };
                    let _ = writeln!(out, "delete {kind} inet {t} {}", s.name);
                    add_set(&mut out, t, s);
                    add_elements(&mut out, t, &s.name, s.elements.iter());
                }
                Some(_) if s.dynamic => {}
                Some(old) => {
                    let want: BTreeSet<&String> = s.elements.iter().collect();
                    let had: BTreeSet<&String> = old.elements.iter().collect();
                    let gone: Vec<String> = had
                        .difference(&want)
                        .map(|e| element_key(e).to_string())
                        .collect();
                    for chunk in gone.chunks(1000) {
                        let _ = writeln!(
                            out,
                            "delete element inet {t} {} {{ {} }}",
                            s.name,
                            chunk.join(", ")
                        );
                    }
                    add_elements(&mut out, t, &s.name, want.difference(&had).copied());
                }
            }
        }
        // 3. Rules: new chains filled, changed chains flushed and refilled.
        for c in &self.chains {
            match old_chains.get(c.name.as_str()) {
                None => add_rules(&mut out, t, c),
                Some(old) if old.rules != c.rules => {
                    let _ = writeln!(out, "flush chain inet {t} {}", c.name);
                    add_rules(&mut out, t, c);
                }
                Some(_) => {}
            }
        }
        // 4. What is gone, now that nothing points at it.
        let chains: BTreeSet<&str> = self.chains.iter().map(|c| c.name.as_str()).collect();
        for c in prev
            .chains
            .iter()
            .filter(|c| !chains.contains(c.name.as_str()))
        {
            let _ = writeln!(
                out,
                "flush chain inet {t} {}\ndelete chain inet {t} {}",
                c.name, c.name
            );
        }
        let sets: BTreeSet<&str> = self.sets.iter().map(|s| s.name.as_str()).collect();
        for s in prev.sets.iter().filter(|s| !sets.contains(s.name.as_str())) {
            let kind = if s.is_map { "map" } else { "set" };
            let _ = writeln!(out, "delete {kind} inet {t} {}", s.name);
        }
        out
    }
}

/// The key of a set or map element (`k : verdict` -> `k`).
fn element_key(e: &str) -> &str {
    e.split_once(" : ").map_or(e, |(k, _)| k)
}

fn add_chain(out: &mut String, t: &str, c: &Chain) {
    match &c.hook {
        Some(h) => _ = writeln!(out, "add chain inet {t} {} {{ {h} }}", c.name),
        None => _ = writeln!(out, "add chain inet {t} {}", c.name),
    }
}

fn add_set(out: &mut String, t: &str, s: &Set) {
    let kind = if s.is_map { "map" } else { "set" };
    let _ = writeln!(out, "add {kind} inet {t} {} {{ {} }}", s.name, s.definition);
}

fn add_elements<'a>(
    out: &mut String,
    t: &str,
    set: &str,
    elements: impl Iterator<Item = &'a String>,
) {
    let all: Vec<&String> = elements.collect();
    for chunk in all.chunks(1000) {
        let joined: Vec<&str> = chunk.iter().map(|e| e.as_str()).collect();
        let _ = writeln!(
            out,
            "add element inet {t} {set} {{ {} }}",
            joined.join(", ")
        );
    }
}

fn add_rules(out: &mut String, t: &str, c: &Chain) {
    for r in &c.rules {
        let _ = writeln!(out, "add rule inet {t} {} {r}", c.name);
    }
}

fn base(name: &str, hook: &str, rules: Vec<String>) -> Chain {
    Chain {
        name: name.into(),
        hook: Some(hook.into()),
        rules,
    }
}

fn chain(name: String, rules: Vec<String>) -> Chain {
    Chain {
        name,
        hook: None,
        rules,
    }
}

fn sep_name(sp: &ServicePort, ep: &Endpoint) -> String {
    format!("sep-{}__{}/{}", sp.id(), ep.ip, ep.port)
}

fn affinity_set(sp: &ServicePort, ep: &Endpoint) -> String {
    format!("affinity-{}__{}/{}", sp.id(), ep.ip, ep.port)
}

/// The chain that picks one of `eps` (at random; first the endpoint a client is bound to under
/// ClientIP affinity).
fn pick_rules(sp: &ServicePort, eps: &[&Endpoint]) -> Vec<String> {
    let mut rules = Vec::new();
    if sp.affinity_timeout.is_some() {
        for ep in eps {
            rules.push(format!(
                "ip saddr @{} goto {}",
                affinity_set(sp, ep),
                sep_name(sp, ep)
            ));
        }
    }
    let arms: Vec<String> = eps
        .iter()
        .enumerate()
        .map(|(i, ep)| format!("{i} : goto {}", sep_name(sp, ep)))
        .collect();
    rules.push(format!(
        "numgen random mod {} vmap {{ {} }}",
        eps.len(),
        arms.join(", ")
    ));
    rules
}

/// The table for `ports` on the node `node`.
pub fn generate(table: &str, node: &NodeFacts, ports: &[ServicePort]) -> Ruleset {
    let svc_cidr = node.service_cidr;
    let dns = node.cluster_dns;
    let mut chains = vec![
        base(
            "nat-prerouting",
            "type nat hook prerouting priority dstnat; policy accept;",
            vec!["jump services".into()],
        ),
        base(
            "nat-output",
            "type nat hook output priority -100; policy accept;",
            vec!["jump services".into()],
        ),
        base(
            "nat-postrouting",
            "type nat hook postrouting priority srcnat; policy accept;",
            vec!["jump masquerading".into()],
        ),
        // After DNAT (prerouting, and nat output at -100): what still has a service address here
        // was not taken by any Service.
        base(
            "filter-input",
            "type filter hook input priority -5; policy accept;",
            vec![
                // route_localnet (for NodePorts on 127.0.0.1) must not let other hosts reach the
                // node's loopback services (CVE-2020-8558): only DNATed traffic may come in so.
                "ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct status & dnat == 0 drop".into(),
                "ct state new jump service-checks".into(),
            ],
        ),
        base(
            "filter-forward",
            "type filter hook forward priority -5; policy accept;",
            vec!["ct state new jump service-checks".into()],
        ),
        base(
            "filter-output",
            "type filter hook output priority -5; policy accept;",
            vec!["ct state new jump service-checks".into()],
        ),
        chain(
            "service-checks".into(),
            vec![
                format!("ip daddr {dns} udp dport 53 accept"),
                format!("ip daddr {dns} tcp dport {{ 53, 9153 }} accept"),
                "ip daddr . meta l4proto . th dport vmap @no-endpoint-services".into(),
                "fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports".into(),
                format!("ip daddr {svc_cidr} meta l4proto tcp reject with tcp reset"),
                format!("ip daddr {svc_cidr} reject"),
            ],
        ),
        chain(
            "reject-chain".into(),
            vec![
                "meta l4proto tcp reject with tcp reset".into(),
                "reject".into(),
            ],
        ),
        chain(
            "services".into(),
            vec![
                "ip daddr . meta l4proto . th dport vmap @service-ips".into(),
                "fib daddr type local meta l4proto . th dport vmap @service-nodeports".into(),
            ],
        ),
        chain(
            "mark-for-masquerade".into(),
            vec![format!("meta mark set meta mark | {MASQ_MARK}")],
        ),
        chain(
            "masquerading".into(),
            vec![
                format!("meta mark & {MASQ_MARK} == 0 return"),
                format!("meta mark set meta mark ^ {MASQ_MARK}"),
                "masquerade fully-random".into(),
            ],
        ),
    ];
    let mut sets: Vec<Set> = Vec::new();
    // Keys already taken (first Service wins; a clash must never make the whole load fail).
    let mut service_ips: BTreeMap<String, String> = BTreeMap::new();
    let mut node_ports: BTreeMap<String, String> = BTreeMap::new();
    let mut no_ep_ips: BTreeMap<String, String> = BTreeMap::new();
    let mut no_ep_ports: BTreeMap<String, String> = BTreeMap::new();
    let mut seen_chains: BTreeSet<String> = BTreeSet::new();

    for sp in ports {
        let proto = sp.protocol.nft();
        let cluster_eps = usable(sp.endpoints.iter());
        let local_eps = usable(
            sp.endpoints
                .iter()
                .filter(|e| e.node.as_deref() == Some(node.node_name.as_str())),
        );
        let needs_local = sp.internal_local || sp.external_local;
        let svc_chain = format!("svc-{}", sp.id());
        let local_chain = format!("local-{}", sp.id());
        let ext_chain = format!("ext-{}", sp.id());
        if !seen_chains.insert(svc_chain.clone()) {
            continue;
        }
        let mut endpoint_chains: BTreeSet<&Endpoint> = BTreeSet::new();
        if !cluster_eps.is_empty() {
            let mut rules = Vec::new();
            if let Some(ip) = sp.cluster_ip {
                match node.pod_cidr {
                    Some(pods) => rules.push(format!(
                        "ip daddr {ip} ip saddr != {pods} jump mark-for-masquerade"
                    )),
                    None => rules.push(format!("ip daddr {ip} jump mark-for-masquerade")),
                }
            }
            rules.extend(pick_rules(sp, &cluster_eps));
            chains.push(chain(svc_chain.clone(), rules));
            endpoint_chains.extend(cluster_eps.iter().copied());
        }
        if needs_local && !cluster_eps.is_empty() {
            let mut rules = Vec::new();
            if let (Some(ip), true) = (sp.cluster_ip, sp.internal_local) {
                match node.pod_cidr {
                    Some(pods) => rules.push(format!(
                        "ip daddr {ip} ip saddr != {pods} jump mark-for-masquerade"
                    )),
                    None => rules.push(format!("ip daddr {ip} jump mark-for-masquerade")),
                }
            }
            if local_eps.is_empty() {
                // Upstream: external traffic with policy Local and no local endpoint is dropped.
                rules.push("drop".into());
            } else {
                rules.extend(pick_rules(sp, &local_eps));
                endpoint_chains.extend(local_eps.iter().copied());
            }
            chains.push(chain(local_chain.clone(), rules));
        }
        for ep in &endpoint_chains {
            let mut rules = vec![format!("ip saddr {} jump mark-for-masquerade", ep.ip)];
            if let Some(timeout) = sp.affinity_timeout {
                let set = affinity_set(sp, ep);
                sets.push(Set {
                    name: set.clone(),
                    is_map: false,
                    definition: format!(
                        "type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;"
                    ),
                    dynamic: true,
                    elements: Vec::new(),
                });
                rules.push(format!("update @{set} {{ ip saddr }}"));
            }
            rules.push(format!(
                "meta l4proto {proto} dnat ip to {}:{}",
                ep.ip, ep.port
            ));
            chains.push(chain(sep_name(sp, ep), rules));
        }
        // Where internal (ClusterIP) traffic goes.
        let internal_target =
            if cluster_eps.is_empty() || (sp.internal_local && local_eps.is_empty()) {
                None
            } else if sp.internal_local {
                Some(local_chain.clone())
            } else {
                Some(svc_chain.clone())
            };
        // Where external traffic (NodePort, externalIPs, LoadBalancer IPs) goes.
        let has_external = sp.node_port.is_some()
            || !sp.external_ips.is_empty()
            || !sp.load_balancer_ips.is_empty();
        let external_target = if cluster_eps.is_empty() || !has_external {
            None
        } else {
            let rules = if sp.external_local {
                // Pods and the node itself reach external addresses as cluster traffic
                // (upstream's short-circuit), masqueraded when from the node.
                let mut r: Vec<String> = node
                    .pod_cidr
                    .map(|pods| format!("ip saddr {pods} goto {svc_chain}"))
                    .into_iter()
                    .collect();
                r.push("fib saddr type local jump mark-for-masquerade".into());
                r.push(format!("fib saddr type local goto {svc_chain}"));
                r.push(format!("goto {local_chain}"));
                r
            } else {
                vec![
                    "jump mark-for-masquerade".into(),
                    format!("goto {svc_chain}"),
                ]
            };
            chains.push(chain(ext_chain.clone(), rules));
            Some(ext_chain.clone())
        };
        if let Some(ip) = sp.cluster_ip {
            let key = format!("{ip} . {proto} . {}", sp.port);
            match &internal_target {
                Some(c) => {
                    _ = service_ips
                        .entry(key)
                        .or_insert_with(|| format!("goto {c}"))
                }
                None => {
                    _ = no_ep_ips
                        .entry(key)
                        .or_insert_with(|| "goto reject-chain".into())
                }
            }
        }
        for ip in sp.external_ips.iter().chain(&sp.load_balancer_ips) {
            let key = format!("{ip} . {proto} . {}", sp.port);
            match &external_target {
                Some(c) => {
                    _ = service_ips
                        .entry(key)
                        .or_insert_with(|| format!("goto {c}"))
                }
                None => {
                    _ = no_ep_ips
                        .entry(key)
                        .or_insert_with(|| "goto reject-chain".into())
                }
            }
        }
        if let Some(np) = sp.node_port {
            let key = format!("{proto} . {np}");
            match &external_target {
                Some(c) => _ = node_ports.entry(key).or_insert_with(|| format!("goto {c}")),
                None => {
                    _ = no_ep_ports
                        .entry(key)
                        .or_insert_with(|| "goto reject-chain".into())
                }
            }
        }
    }
    let verdict_map = |name: &str, key: &str, elems: BTreeMap<String, String>| Set {
        name: name.into(),
        is_map: true,
        definition: format!("type {key} : verdict;"),
        dynamic: false,
        elements: elems
            .into_iter()
            .map(|(k, v)| format!("{k} : {v}"))
            .collect(),
    };
    let addr_port = "ipv4_addr . inet_proto . inet_service";
    let mut all_sets = vec![
        verdict_map("service-ips", addr_port, service_ips),
        verdict_map("service-nodeports", "inet_proto . inet_service", node_ports),
        verdict_map("no-endpoint-services", addr_port, no_ep_ips),
        verdict_map(
            "no-endpoint-nodeports",
            "inet_proto . inet_service",
            no_ep_ports,
        ),
    ];
    all_sets.extend(sets);
    Ruleset {
        table: table.into(),
        sets: all_sets,
        chains,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn node() -> NodeFacts {
        NodeFacts {
            node_name: "n1".into(),
            pod_cidr: Some("10.42.0.0/24".parse().unwrap()),
            service_cidr: "10.43.0.0/16".parse().unwrap(),
            cluster_dns: Ipv4Addr::new(10, 43, 0, 10),
        }
    }

    fn ep(ip: [u8; 4], ready: bool, node: &str) -> Endpoint {
        Endpoint {
            ip: std::net::IpAddr::from(ip),
            port: 8080,
            ready,
            serving: ready,
            terminating: false,
            node: Some(node.into()),
        }
    }

    fn port(name: &str, eps: Vec<Endpoint>) -> ServicePort {
        ServicePort {
            namespace: "default".into(),
            name: name.into(),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: None,
            cluster_ip: Some(Ipv4Addr::new(10, 43, 1, 1)),
            external_ips: vec![],
            load_balancer_ips: vec![],
            external_local: false,
            internal_local: false,
            affinity_timeout: None,
            health_check_node_port: None,
            endpoints: eps,
        }
    }

    fn rules(r: &Ruleset, chain: &str) -> Vec<String> {
        r.chain(chain)
            .unwrap_or_else(|| panic!("no chain {chain}"))
            .rules
            .clone()
    }

    fn elements(r: &Ruleset, set: &str) -> Vec<String> {
        r.set(set).unwrap().elements.clone()
    }

    #[test]
    fn the_service_cidr_is_rejected_before_anything_else_is_programmed() {
        let r = generate("kaji-proxy", &node(), &[]);
        let checks = rules(&r, "service-checks");
        assert_eq!(
            checks[checks.len() - 2],
            "ip daddr 10.43.0.0/16 meta l4proto tcp reject with tcp reset"
        );
        assert_eq!(checks[checks.len() - 1], "ip daddr 10.43.0.0/16 reject");
        // The node's DNS server is the only thing in the range that is let through.
        assert_eq!(checks[0], "ip daddr 10.43.0.10 udp dport 53 accept");
        for hook in ["filter-input", "filter-forward", "filter-output"] {
            assert_eq!(
                rules(&r, hook).last().unwrap(),
                "ct state new jump service-checks"
            );
        }
        assert!(elements(&r, "service-ips").is_empty());
    }

    #[test]
    fn a_cluster_ip_balances_randomly_over_ready_endpoints() {
        let sp = port(
            "web",
            vec![
                ep([10, 42, 0, 5], true, "n1"),
                ep([10, 42, 0, 6], true, "n2"),
                ep([10, 42, 0, 7], false, "n1"),
            ],
        );
        let r = generate("t", &node(), &[sp]);
        assert_eq!(
            elements(&r, "service-ips"),
            vec!["10.43.1.1 . tcp . 80 : goto svc-default/web/tcp/http"]
        );
        assert_eq!(
            rules(&r, "svc-default/web/tcp/http"),
            vec![
                "ip daddr 10.43.1.1 ip saddr != 10.42.0.0/24 jump mark-for-masquerade",
                "numgen random mod 2 vmap { 0 : goto sep-default/web/tcp/http__10.42.0.5/8080, 1 : goto sep-default/web/tcp/http__10.42.0.6/8080 }",
            ]
        );
        assert_eq!(
            rules(&r, "sep-default/web/tcp/http__10.42.0.5/8080"),
            vec![
                "ip saddr 10.42.0.5 jump mark-for-masquerade",
                "meta l4proto tcp dnat ip to 10.42.0.5:8080"
            ]
        );
        assert!(
            r.chain("sep-default/web/tcp/http__10.42.0.7/8080")
                .is_none(),
            "a not-ready endpoint gets no traffic"
        );
    }

    #[test]
    fn terminating_endpoints_are_used_only_when_none_is_ready() {
        let mut old = ep([10, 42, 0, 5], false, "n1");
        old.serving = true;
        old.terminating = true;
        let r = generate("t", &node(), &[port("web", vec![old.clone()])]);
        assert!(
            rules(&r, "svc-default/web/tcp/http")[1]
                .contains("mod 1 vmap { 0 : goto sep-default/web/tcp/http__10.42.0.5/8080 }")
        );
        let r = generate(
            "t",
            &node(),
            &[port("web", vec![old, ep([10, 42, 0, 6], true, "n1")])],
        );
        assert!(
            rules(&r, "svc-default/web/tcp/http")[1]
                .contains("mod 1 vmap { 0 : goto sep-default/web/tcp/http__10.42.0.6/8080 }")
        );
    }

    #[test]
    fn a_service_without_endpoints_rejects() {
        let mut sp = port("empty", vec![]);
        sp.node_port = Some(30080);
        let r = generate("t", &node(), &[sp]);
        assert_eq!(
            elements(&r, "no-endpoint-services"),
            vec!["10.43.1.1 . tcp . 80 : goto reject-chain"]
        );
        assert_eq!(
            elements(&r, "no-endpoint-nodeports"),
            vec!["tcp . 30080 : goto reject-chain"]
        );
        assert!(elements(&r, "service-ips").is_empty());
        assert!(r.chain("svc-default/empty/tcp/http").is_none());
    }

    #[test]
    fn node_ports_and_external_ips_masquerade_and_reach_every_endpoint() {
        let mut sp = port("np", vec![ep([10, 42, 0, 5], true, "n1")]);
        sp.node_port = Some(30080);
        sp.external_ips = vec![Ipv4Addr::new(192, 0, 2, 50)];
        sp.load_balancer_ips = vec![Ipv4Addr::new(192, 0, 2, 2)];
        let r = generate("t", &node(), &[sp]);
        assert_eq!(
            elements(&r, "service-nodeports"),
            vec!["tcp . 30080 : goto ext-default/np/tcp/http"]
        );
        assert_eq!(
            elements(&r, "service-ips"),
            vec![
                "10.43.1.1 . tcp . 80 : goto svc-default/np/tcp/http",
                "192.0.2.2 . tcp . 80 : goto ext-default/np/tcp/http",
                "192.0.2.50 . tcp . 80 : goto ext-default/np/tcp/http",
            ]
        );
        assert_eq!(
            rules(&r, "ext-default/np/tcp/http"),
            vec!["jump mark-for-masquerade", "goto svc-default/np/tcp/http"]
        );
        assert_eq!(
            rules(&r, "services")[1],
            "fib daddr type local meta l4proto . th dport vmap @service-nodeports"
        );
    }

    #[test]
    fn external_traffic_policy_local_keeps_the_source_and_the_node() {
        let mut sp = port(
            "local",
            vec![
                ep([10, 42, 0, 5], true, "n1"),
                ep([10, 42, 1, 5], true, "n2"),
            ],
        );
        sp.node_port = Some(30081);
        sp.external_local = true;
        let r = generate("t", &node(), &[sp.clone()]);
        assert_eq!(
            rules(&r, "ext-default/local/tcp/http"),
            vec![
                "ip saddr 10.42.0.0/24 goto svc-default/local/tcp/http",
                "fib saddr type local jump mark-for-masquerade",
                "fib saddr type local goto svc-default/local/tcp/http",
                "goto local-default/local/tcp/http",
            ]
        );
        let local = rules(&r, "local-default/local/tcp/http");
        assert_eq!(
            local,
            vec![
                "numgen random mod 1 vmap { 0 : goto sep-default/local/tcp/http__10.42.0.5/8080 }"
            ]
        );
        // No local endpoint: external traffic is dropped (upstream), cluster traffic still flows.
        sp.endpoints = vec![ep([10, 42, 1, 5], true, "n2")];
        let r = generate("t", &node(), &[sp]);
        assert_eq!(rules(&r, "local-default/local/tcp/http"), vec!["drop"]);
        assert!(elements(&r, "service-ips")[0].ends_with("goto svc-default/local/tcp/http"));
    }

    #[test]
    fn internal_traffic_policy_local_uses_only_this_nodes_endpoints() {
        let mut sp = port(
            "itp",
            vec![
                ep([10, 42, 0, 5], true, "n1"),
                ep([10, 42, 1, 5], true, "n2"),
            ],
        );
        sp.internal_local = true;
        let r = generate("t", &node(), &[sp.clone()]);
        assert_eq!(
            elements(&r, "service-ips"),
            vec!["10.43.1.1 . tcp . 80 : goto local-default/itp/tcp/http"]
        );
        assert!(
            rules(&r, "local-default/itp/tcp/http")[1]
                .contains("mod 1 vmap { 0 : goto sep-default/itp/tcp/http__10.42.0.5/8080 }")
        );
        sp.endpoints = vec![ep([10, 42, 1, 5], true, "n2")];
        let r = generate("t", &node(), &[sp]);
        assert_eq!(
            elements(&r, "no-endpoint-services"),
            vec!["10.43.1.1 . tcp . 80 : goto reject-chain"]
        );
    }

    #[test]
    fn client_ip_affinity_remembers_the_client_per_endpoint() {
        let mut sp = port("sticky", vec![ep([10, 42, 0, 5], true, "n1")]);
        sp.affinity_timeout = Some(60);
        let r = generate("t", &node(), &[sp]);
        let set = r
            .set("affinity-default/sticky/tcp/http__10.42.0.5/8080")
            .unwrap();
        assert!(set.dynamic);
        assert_eq!(
            set.definition,
            "type ipv4_addr; flags dynamic,timeout; timeout 60s;"
        );
        assert_eq!(
            rules(&r, "svc-default/sticky/tcp/http")[1],
            "ip saddr @affinity-default/sticky/tcp/http__10.42.0.5/8080 goto sep-default/sticky/tcp/http__10.42.0.5/8080"
        );
        assert_eq!(
            rules(&r, "sep-default/sticky/tcp/http__10.42.0.5/8080")[1],
            "update @affinity-default/sticky/tcp/http__10.42.0.5/8080 { ip saddr }"
        );
        // Affinity sets survive a sync: an unchanged ruleset sends nothing.
        assert_eq!(r.transaction(Some(&r)), "");
    }

    #[test]
    fn udp_and_several_ports_get_their_own_chains() {
        let mut dns = port("dns", vec![ep([10, 42, 0, 5], true, "n1")]);
        dns.protocol = Protocol::Udp;
        dns.port_name = "dns".into();
        dns.port = 53;
        let mut dns_tcp = dns.clone();
        dns_tcp.protocol = Protocol::Tcp;
        let r = generate("t", &node(), &[dns, dns_tcp]);
        assert_eq!(
            elements(&r, "service-ips"),
            vec![
                "10.43.1.1 . tcp . 53 : goto svc-default/dns/tcp/dns",
                "10.43.1.1 . udp . 53 : goto svc-default/dns/udp/dns"
            ]
        );
        assert!(
            rules(&r, "sep-default/dns/udp/dns__10.42.0.5/8080")
                .contains(&"meta l4proto udp dnat ip to 10.42.0.5:8080".to_string())
        );
    }

    #[test]
    fn clashing_keys_keep_the_first_service_and_never_break_the_load() {
        let a = port("a", vec![ep([10, 42, 0, 5], true, "n1")]);
        let mut b = port("b", vec![ep([10, 42, 0, 6], true, "n1")]);
        b.cluster_ip = a.cluster_ip;
        let r = generate("t", &node(), &[a, b]);
        assert_eq!(
            elements(&r, "service-ips"),
            vec!["10.43.1.1 . tcp . 80 : goto svc-default/a/tcp/http"]
        );
    }

    #[test]
    fn a_sync_deletes_what_is_gone_and_a_first_load_replaces_the_table() {
        let old = generate(
            "t",
            &node(),
            &[port("web", vec![ep([10, 42, 0, 5], true, "n1")])],
        );
        let new = generate("t", &node(), &[]);
        let tx = new.transaction(Some(&old));
        assert_eq!(
            tx,
            "delete element inet t service-ips { 10.43.1.1 . tcp . 80 }\n\
             flush chain inet t svc-default/web/tcp/http\ndelete chain inet t svc-default/web/tcp/http\n\
             flush chain inet t sep-default/web/tcp/http__10.42.0.5/8080\ndelete chain inet t sep-default/web/tcp/http__10.42.0.5/8080\n"
        );
        // One more endpoint: its chain is added and only the service's chain is refilled.
        let two = generate(
            "t",
            &node(),
            &[port(
                "web",
                vec![
                    ep([10, 42, 0, 5], true, "n1"),
                    ep([10, 42, 0, 6], true, "n1"),
                ],
            )],
        );
        let tx = two.transaction(Some(&old));
        assert!(tx.contains("add chain inet t sep-default/web/tcp/http__10.42.0.6/8080\n"));
        assert!(tx.contains("flush chain inet t svc-default/web/tcp/http\n"));
        assert!(
            !tx.contains("chain inet t sep-default/web/tcp/http__10.42.0.5/8080"),
            "{tx}"
        );
        assert!(!tx.contains("element"), "{tx}");
        let first = new.transaction(None);
        assert!(first.starts_with("add table inet t\ndelete table inet t\nadd table inet t\n"));
        assert!(first.contains("add chain inet t nat-prerouting { type nat hook prerouting priority dstnat; policy accept; }\n"));
    }

    /// Every feature at once, checked by the kernel's own parser (`nft -c`: nothing is applied).
    /// Needs root and nftables, as the proxy does.
    #[test]
    fn every_feature_loads_in_the_kernel() {
        let mut a = port(
            "a",
            vec![
                ep([10, 42, 0, 5], true, "n1"),
                ep([10, 42, 1, 5], true, "n2"),
            ],
        );
        a.node_port = Some(30080);
        a.external_ips = vec![Ipv4Addr::new(192, 0, 2, 50)];
        a.external_local = true;
        a.health_check_node_port = Some(31000);
        let mut b = port("b", vec![ep([10, 42, 0, 6], true, "n1")]);
        b.cluster_ip = Some(Ipv4Addr::new(10, 43, 1, 2));
        b.affinity_timeout = Some(30);
        b.internal_local = true;
        b.protocol = Protocol::Udp;
        let mut c = port("c", vec![]);
        c.cluster_ip = Some(Ipv4Addr::new(10, 43, 1, 3));
        c.node_port = Some(30081);
        let mut d = port("d", vec![ep([10, 42, 0, 7], true, "n1")]);
        d.cluster_ip = Some(Ipv4Addr::new(10, 43, 1, 4));
        d.protocol = Protocol::Sctp;
        let r = generate("kaji-proxy-check", &node(), &[a, b, c, d]);
        {
            let tx = r.transaction(None);
            let mut child = std::process::Command::new("nft")
                .args(["-c", "-f", "-"])
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("nft (nftables) must be installed; the proxy needs it");
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), tx.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "nft -c refused the ruleset:\n{}\n{tx}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// A sync in place leaves the kernel with exactly what a load from scratch gives (root,
    /// nftables; the table is the test's own and is removed).
    #[test]
    fn a_sync_in_place_equals_a_fresh_load_in_the_kernel() {
        let table = format!("kaji-proxy-diff-{}", std::process::id());
        let list = || {
            let out = std::process::Command::new("nft")
                .args(["list", "table", "inet", &table])
                .output()
                .expect("nft");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let load = |tx: &str| {
            let mut child = std::process::Command::new("nft")
                .args(["-f", "-"])
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("nft (nftables) must be installed; the proxy needs it");
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), tx.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "nft refused:\n{}\n{tx}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let mut a = port(
            "a",
            vec![
                ep([10, 42, 0, 5], true, "n1"),
                ep([10, 42, 0, 6], true, "n1"),
            ],
        );
        a.node_port = Some(30080);
        a.affinity_timeout = Some(30);
        let b = port("b", vec![ep([10, 42, 0, 7], true, "n1")]);
        let mut b = ServicePort {
            cluster_ip: Some(Ipv4Addr::new(10, 43, 1, 2)),
            ..b
        };
        let before = generate(&table, &node(), &[a.clone(), b.clone()]);
        a.endpoints.remove(0);
        b.endpoints.clear();
        let mut c = port("c", vec![ep([10, 42, 0, 8], true, "n1")]);
        c.cluster_ip = Some(Ipv4Addr::new(10, 43, 1, 3));
        let after = generate(&table, &node(), &[a, b, c]);
        load(&after.transaction(None));
        let fresh = list();
        load(&before.transaction(None));
        load(&after.transaction(Some(&before)));
        let synced = list();
        load(&format!("delete table inet {table}\n"));
        let sorted = |s: &str| {
            let mut l: Vec<String> = s.lines().map(|l| l.trim().to_string()).collect();
            l.sort();
            l
        };
        assert_eq!(
            sorted(&synced),
            sorted(&fresh),
            "in place:\n{synced}\nfresh:\n{fresh}"
        );
    }
}
