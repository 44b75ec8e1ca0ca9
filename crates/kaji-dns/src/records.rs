//! The answer function: a question and the index in, the records out. No I/O.
//!
//! It follows the Kubernetes DNS specification
//! (<https://github.com/kubernetes/dns/blob/master/docs/specification.md>) the way CoreDNS's
//! `kubernetes` plugin reads it (with `pods insecure`, as in the default Corefile):
//! - `<svc>.<ns>.svc.<zone>`: cluster IPs, or the ready endpoints of a headless Service, or a
//!   CNAME for an ExternalName Service; SRV gives one record per port.
//! - `<endpoint>.<svc>.<ns>.svc.<zone>`: one endpoint (its hostname, or its IP with dashes).
//! - `_<port>._<proto>.<svc>.<ns>.svc.<zone>`: SRV (and A) for one named port.
//! - `<a-b-c-d>.<ns>.pod.<zone>`: the IP written in the name.
//! - PTR in in-addr.arpa / ip6.arpa for cluster IPs and endpoint IPs.
//! - Names under the zone that do not exist are NXDOMAIN with the zone's SOA; names that exist
//!   without data of the asked type are NOERROR/NODATA with the SOA.
//!
//! Names outside the zone, and reverse names the cluster does not know, are not answered here
//! (`None`): the server forwards them, as CoreDNS's `fallthrough in-addr.arpa ip6.arpa` does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::index::{EndpointRecord, Index, PortRecord, ServiceKind};
use crate::wire::{
    Name, Question, RCODE_NOERROR, RCODE_NXDOMAIN, RData, Record, Soa, TYPE_ANY, TYPE_CNAME,
    TYPE_NS, TYPE_PTR, TYPE_SRV,
};

/// CoreDNS's default TTL for the records of the kubernetes plugin.
pub const DEFAULT_TTL: u32 = 5;
/// What CoreDNS answers for `dns-version.<zone>` TXT: the version of the specification.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// The cluster zone being served.
#[derive(Clone, Debug)]
pub struct Zone {
    /// `cluster.local`.
    pub domain: Name,
    /// The address given for `ns.dns.<zone>` (the DNS server's own).
    pub ns_ip: IpAddr,
    pub ttl: u32,
}

impl Zone {
    pub fn new(domain: &str, ns_ip: IpAddr) -> Result<Zone, crate::wire::WireError> {
        Ok(Zone {
            domain: Name::from_dotted(domain)?,
            ns_ip,
            ttl: DEFAULT_TTL,
        })
    }

    fn name(&self, labels: &[&str]) -> Option<Name> {
        let mut name = self.domain.clone();
        for label in labels.iter().rev() {
            name = name.prepend(label.as_bytes()).ok()?;
        }
        Some(name)
    }

    /// The zone's SOA record, as CoreDNS writes it.
    pub fn soa(&self, serial: u32) -> Record {
        let fallback = || self.domain.clone();
        Record::new(
            self.domain.clone(),
            self.ttl,
            RData::Soa(Soa {
                mname: self.name(&["ns", "dns"]).unwrap_or_else(fallback),
                rname: self.name(&["hostmaster"]).unwrap_or_else(fallback),
                serial,
                refresh: 7200,
                retry: 1800,
                expire: 86400,
                minimum: self.ttl,
            }),
        )
    }
}

/// What to reply for a question this server is authoritative for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    pub rcode: u16,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
    /// The answer ends in a CNAME to a name outside the zone: the server may resolve it
    /// upstream and append what it gets (CoreDNS does, for ExternalName Services).
    pub chase: Option<Name>,
}

/// Answers `q` from `index`, or None when the name is not ours (forward it).
pub fn answer(q: &Question, index: &Index, zone: &Zone) -> Option<Answer> {
    if let Some(ip) = reverse_ip(&q.name) {
        return reverse(q, ip, index, zone);
    }
    let rest = q.name.strip_zone(&zone.domain)?;
    let labels: Vec<String> = rest
        .iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect();
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    Some(in_zone(q, &labels, index, zone, 0))
}

/// What a name holds, before it is cut down to the asked type.
enum Found {
    NxDomain,
    /// The name exists; these records are its data (possibly none of the asked type).
    Records {
        records: Vec<Record>,
        additional: Vec<Record>,
    },
    Cname(Name),
}

fn in_zone(q: &Question, labels: &[&str], index: &Index, zone: &Zone, depth: u8) -> Answer {
    let owner = &q.name;
    let found = match labels {
        [] => apex(owner, index, zone),
        ["dns-version"] => Found::Records {
            records: vec![Record::new(
                owner.clone(),
                zone.ttl,
                RData::Txt(vec![SCHEMA_VERSION.as_bytes().to_vec()]),
            )],
            additional: vec![],
        },
        ["dns"] | ["svc"] | ["pod"] => empty(),
        ["ns", "dns"] => Found::Records {
            records: vec![address(owner, zone.ns_ip, zone.ttl)],
            additional: vec![],
        },
        [.., "svc"] => services(owner, &labels[..labels.len() - 1], index, zone),
        [.., "pod"] => pods(owner, &labels[..labels.len() - 1], index, zone),
        _ => Found::NxDomain,
    };
    let negative = |rcode| Answer {
        rcode,
        authority: vec![zone.soa(index.serial)],
        ..Answer::default()
    };
    match found {
        Found::NxDomain => negative(RCODE_NXDOMAIN),
        Found::Cname(target) => {
            let mut out = Answer {
                answers: vec![Record::new(
                    owner.clone(),
                    zone.ttl,
                    RData::Cname(target.clone()),
                )],
                ..Answer::default()
            };
            if q.qtype == TYPE_CNAME {
                return out;
            }
            match target.strip_zone(&zone.domain) {
                // An ExternalName pointing into the cluster: resolve it here (bounded).
                Some(rest) if depth < 4 => {
                    let rest: Vec<String> = rest
                        .iter()
                        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
                        .collect();
                    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
                    let inner = Question {
                        name: target,
                        ..q.clone()
                    };
                    let more = in_zone(&inner, &rest, index, zone, depth + 1);
                    out.rcode = more.rcode;
                    out.answers.extend(more.answers);
                    out.authority = more.authority;
                    out.additional = more.additional;
                    out.chase = more.chase;
                }
                Some(_) => {}
                None => out.chase = Some(target),
            }
            out
        }
        Found::Records {
            records,
            additional,
        } => {
            let answers: Vec<Record> = records
                .into_iter()
                .filter(|r| q.qtype == TYPE_ANY || r.data.rtype() == q.qtype)
                .collect();
            if answers.is_empty() {
                return negative(RCODE_NOERROR);
            }
            let additional = if q.qtype == TYPE_SRV || q.qtype == TYPE_NS {
                additional
            } else {
                Vec::new()
            };
            Answer {
                rcode: RCODE_NOERROR,
                answers,
                additional,
                ..Answer::default()
            }
        }
    }
}

fn empty() -> Found {
    Found::Records {
        records: vec![],
        additional: vec![],
    }
}

fn apex(owner: &Name, index: &Index, zone: &Zone) -> Found {
    let mut soa = zone.soa(index.serial);
    soa.name = owner.clone();
    let mut records = vec![soa];
    let mut additional = vec![];
    if let Some(ns) = zone.name(&["ns", "dns"]) {
        additional.push(address(&ns, zone.ns_ip, zone.ttl));
        records.push(Record::new(owner.clone(), zone.ttl, RData::Ns(ns)));
    }
    Found::Records {
        records,
        additional,
    }
}

fn address(owner: &Name, ip: IpAddr, ttl: u32) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(v4),
        IpAddr::V6(v6) => RData::Aaaa(v6),
    };
    Record::new(owner.clone(), ttl, data)
}

/// `parts` is the name left of `svc.<zone>`, leftmost first: `[.., svc, ns]`.
fn services(owner: &Name, parts: &[&str], index: &Index, zone: &Zone) -> Found {
    let (svc_name, ns, prefix) = match parts {
        [] => return empty(),
        [ns] => {
            return if index.namespace_exists(ns) {
                empty()
            } else {
                Found::NxDomain
            };
        }
        [prefix @ .., svc, ns] => (*svc, *ns, prefix),
    };
    let Some(svc) = index.service(ns, svc_name) else {
        return Found::NxDomain;
    };
    let (endpoint, port) = match prefix {
        [] => (None, None),
        [endpoint] => (Some(*endpoint), None),
        [port, proto] => (
            None,
            Some((strip_underscore(port), strip_underscore(proto))),
        ),
        _ => return Found::NxDomain,
    };
    let ttl = zone.ttl;
    let matches =
        |p: &PortRecord| port.is_none_or(|(name, proto)| p.name == name && p.protocol == proto);

    if let ServiceKind::ExternalName(target) = &svc.kind {
        if endpoint.is_some() {
            return Found::NxDomain;
        }
        let Ok(target) = Name::from_dotted(target) else {
            return Found::NxDomain;
        };
        if port.is_some() {
            let records: Vec<Record> = svc
                .ports
                .iter()
                .filter(|p| matches(p))
                .map(|p| srv(owner, ttl, p.port, target.clone()))
                .collect();
            if records.is_empty() {
                return Found::NxDomain;
            }
            return Found::Records {
                records: weighted(records),
                additional: vec![],
            };
        }
        return Found::Cname(target);
    }

    let Some(svc_fqdn) = zone.name(&[&svc.name, &svc.namespace, "svc"]) else {
        return Found::NxDomain;
    };
    let mut records = Vec::new();
    let mut additional = Vec::new();

    // Endpoint-level answers: an endpoint query (any Service), or a headless Service.
    if endpoint.is_some() || svc.kind == ServiceKind::Headless {
        let mut any = false;
        let eps: Vec<&EndpointRecord> = svc
            .endpoints
            .iter()
            .filter(|e| endpoint.is_none_or(|label| e.hostname == label))
            .collect();
        for ep in eps {
            let ports: Vec<&PortRecord> = ep.ports.iter().filter(|p| matches(p)).collect();
            if port.is_some() && ports.is_empty() {
                continue;
            }
            any = true;
            records.push(address(owner, ep.ip, ttl));
            let Ok(target) = svc_fqdn.prepend(ep.hostname.as_bytes()) else {
                continue;
            };
            for p in ports {
                records.push(srv(owner, ttl, p.port, target.clone()));
            }
            additional.push(address(&target, ep.ip, ttl));
        }
        if !any {
            return Found::NxDomain;
        }
        dedup_addresses(&mut records);
        return Found::Records {
            records: weighted(records),
            additional,
        };
    }

    // A Service with cluster IPs.
    let ServiceKind::ClusterIp(ips) = &svc.kind else {
        return Found::NxDomain;
    };
    let ports: Vec<&PortRecord> = svc.ports.iter().filter(|p| matches(p)).collect();
    if port.is_some() && ports.is_empty() {
        return Found::NxDomain;
    }
    for ip in ips {
        records.push(address(owner, *ip, ttl));
        additional.push(address(&svc_fqdn, *ip, ttl));
    }
    for p in ports {
        records.push(srv(owner, ttl, p.port, svc_fqdn.clone()));
    }
    Found::Records {
        records: weighted(records),
        additional,
    }
}

/// The same IP twice (one endpoint, several ports) is one A record.
fn dedup_addresses(records: &mut Vec<Record>) {
    let mut seen = std::collections::HashSet::new();
    records.retain(|r| match r.data {
        RData::A(ip) => seen.insert(IpAddr::V4(ip)),
        RData::Aaaa(ip) => seen.insert(IpAddr::V6(ip)),
        _ => true,
    });
}

fn srv(owner: &Name, ttl: u32, port: u16, target: Name) -> Record {
    Record::new(
        owner.clone(),
        ttl,
        RData::Srv {
            priority: 0,
            weight: 0,
            port,
            target,
        },
    )
}

/// SRV weights as CoreDNS sets them: all priority 0, each `floor(100 / count)`.
fn weighted(mut records: Vec<Record>) -> Vec<Record> {
    let count = records
        .iter()
        .filter(|r| r.data.rtype() == TYPE_SRV)
        .count();
    if let Some(w) = 100usize.checked_div(count) {
        let w = w as u16;
        for r in &mut records {
            if let RData::Srv { weight, .. } = &mut r.data {
                *weight = w;
            }
        }
    }
    records
}

fn strip_underscore(label: &str) -> &str {
    label.strip_prefix('_').unwrap_or(label)
}

/// `parts` is the name left of `pod.<zone>`: `[.., ip, ns]`.
fn pods(owner: &Name, parts: &[&str], index: &Index, zone: &Zone) -> Found {
    match parts {
        [] => empty(),
        [ns] if index.namespace_exists(ns) => empty(),
        [dashed, ns] if index.namespace_exists(ns) => match parse_dashed_ip(dashed) {
            Some(ip) => Found::Records {
                records: vec![address(owner, ip, zone.ttl)],
                additional: vec![],
            },
            None => Found::NxDomain,
        },
        _ => Found::NxDomain,
    }
}

/// `10-1-2-3` -> 10.1.2.3, `fd00--1` -> fd00::1 (CoreDNS's reading of pod names).
fn parse_dashed_ip(label: &str) -> Option<IpAddr> {
    let text = if label.matches('-').count() == 3 && !label.contains("--") {
        label.replace('-', ".")
    } else {
        label.replace('-', ":")
    };
    text.parse().ok()
}

/// The IP of a full reverse name (`4.3.2.1.in-addr.arpa`, 32 nibbles in ip6.arpa).
fn reverse_ip(name: &Name) -> Option<IpAddr> {
    let labels: Vec<&[u8]> = name.labels().collect();
    let n = labels.len();
    if n < 2 || !labels[n - 1].eq_ignore_ascii_case(b"arpa") {
        return None;
    }
    let zone = labels[n - 2];
    if zone.eq_ignore_ascii_case(b"in-addr") && n == 6 {
        let mut octets = [0u8; 4];
        for (i, label) in labels[..4].iter().enumerate() {
            octets[3 - i] = std::str::from_utf8(label).ok()?.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if zone.eq_ignore_ascii_case(b"ip6") && n == 34 {
        let mut bits = 0u128;
        for label in labels[..32].iter().rev() {
            let [c] = label else { return None };
            bits = bits << 4 | u128::from((*c as char).to_digit(16)?);
        }
        return Some(IpAddr::V6(Ipv6Addr::from(bits)));
    }
    None
}

fn reverse(q: &Question, ip: IpAddr, index: &Index, zone: &Zone) -> Option<Answer> {
    let targets = index.reverse(ip);
    if targets.is_empty() {
        return None;
    }
    let answers: Vec<Record> = if q.qtype == TYPE_PTR || q.qtype == TYPE_ANY {
        targets
            .iter()
            .filter_map(|t| {
                let mut labels = vec![t.service.as_str(), t.namespace.as_str(), "svc"];
                if let Some(ep) = &t.endpoint {
                    labels.insert(0, ep);
                }
                Some(Record::new(
                    q.name.clone(),
                    zone.ttl,
                    RData::Ptr(zone.name(&labels)?),
                ))
            })
            .collect()
    } else {
        Vec::new()
    };
    Some(Answer {
        rcode: RCODE_NOERROR,
        authority: if answers.is_empty() {
            vec![zone.soa(index.serial)]
        } else {
            vec![]
        },
        answers,
        ..Answer::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::fixtures::*;
    use crate::wire::{CLASS_IN, TYPE_A, TYPE_AAAA, TYPE_SOA, TYPE_TXT};

    fn zone() -> Zone {
        Zone::new("cluster.local", "10.43.0.10".parse().unwrap()).unwrap()
    }

    fn index() -> Index {
        let services = vec![
            cluster_ip(
                "default",
                "web",
                "10.43.0.7",
                &[("http", "TCP", 80), ("dns", "UDP", 53)],
            ),
            headless("default", "db", &[("pg", "TCP", 5432)]),
            headless("default", "empty", &[("pg", "TCP", 5432)]),
            external("default", "ext", "example.com"),
            external("default", "inner", "web.default.svc.cluster.local"),
        ];
        let slices = vec![slice(
            "default",
            "db-x",
            "db",
            &[
                ("10.42.0.5", Some("db-0"), Some(true)),
                ("10.42.0.6", None, Some(true)),
                ("10.42.0.9", None, Some(false)),
            ],
            &[("pg", "TCP", 5432)],
        )];
        Index::build(["default", "kube-system"], &services, &slices, 42)
    }

    fn ask(name: &str, qtype: u16) -> Option<Answer> {
        let q = Question {
            name: Name::from_dotted(name).unwrap(),
            qtype,
            qclass: CLASS_IN,
        };
        answer(&q, &index(), &zone())
    }

    fn data(a: &Answer) -> Vec<String> {
        a.answers
            .iter()
            .map(|r| match &r.data {
                RData::A(ip) => format!("A {ip}"),
                RData::Aaaa(ip) => format!("AAAA {ip}"),
                RData::Cname(n) => format!("CNAME {n}"),
                RData::Ptr(n) => format!("PTR {n}"),
                RData::Srv {
                    priority,
                    weight,
                    port,
                    target,
                } => format!("SRV {priority} {weight} {port} {target}"),
                RData::Txt(t) => format!("TXT {}", String::from_utf8_lossy(&t[0])),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn is_nxdomain(a: &Answer) -> bool {
        a.rcode == RCODE_NXDOMAIN
            && a.answers.is_empty()
            && matches!(
                a.authority.as_slice(),
                [Record {
                    data: RData::Soa(_),
                    ..
                }]
            )
    }

    fn is_nodata(a: &Answer) -> bool {
        a.rcode == RCODE_NOERROR
            && a.answers.is_empty()
            && matches!(
                a.authority.as_slice(),
                [Record {
                    data: RData::Soa(_),
                    ..
                }]
            )
    }

    #[test]
    fn cluster_ip_a() {
        let a = ask("web.default.svc.cluster.local", TYPE_A).unwrap();
        assert_eq!(data(&a), ["A 10.43.0.7"]);
        assert_eq!(a.answers[0].ttl, 5);
        // Case-insensitive, and the owner keeps the question's case.
        let a = ask("WEB.Default.svc.cluster.local.", TYPE_A).unwrap();
        assert_eq!(data(&a), ["A 10.43.0.7"]);
        assert_eq!(
            a.answers[0].name.to_dotted(),
            "WEB.Default.svc.cluster.local."
        );
    }

    #[test]
    fn cluster_ip_aaaa_is_nodata_for_ipv4_only() {
        assert!(is_nodata(
            &ask("web.default.svc.cluster.local", TYPE_AAAA).unwrap()
        ));
        assert!(is_nodata(
            &ask("web.default.svc.cluster.local", TYPE_TXT).unwrap()
        ));
    }

    #[test]
    fn headless_a_lists_ready_endpoints() {
        let a = ask("db.default.svc.cluster.local", TYPE_A).unwrap();
        assert_eq!(data(&a), ["A 10.42.0.5", "A 10.42.0.6"]);
    }

    #[test]
    fn headless_without_endpoints_is_nxdomain() {
        assert!(is_nxdomain(
            &ask("empty.default.svc.cluster.local", TYPE_A).unwrap()
        ));
    }

    #[test]
    fn endpoint_hostname_a() {
        let a = ask("db-0.db.default.svc.cluster.local", TYPE_A).unwrap();
        assert_eq!(data(&a), ["A 10.42.0.5"]);
        let a = ask("10-42-0-6.db.default.svc.cluster.local", TYPE_A).unwrap();
        assert_eq!(data(&a), ["A 10.42.0.6"]);
        assert!(is_nxdomain(
            &ask("db-9.db.default.svc.cluster.local", TYPE_A).unwrap()
        ));
        // Not ready: not published.
        assert!(is_nxdomain(
            &ask("10-42-0-9.db.default.svc.cluster.local", TYPE_A).unwrap()
        ));
    }

    #[test]
    fn external_name_is_a_cname_to_chase() {
        let a = ask("ext.default.svc.cluster.local", TYPE_A).unwrap();
        assert_eq!(data(&a), ["CNAME example.com."]);
        assert_eq!(a.chase, Some(Name::from_dotted("example.com").unwrap()));
        let a = ask("ext.default.svc.cluster.local", TYPE_CNAME).unwrap();
        assert_eq!(a.chase, None);
    }

    #[test]
    fn external_name_into_the_cluster_resolves_here() {
        let a = ask("inner.default.svc.cluster.local", TYPE_A).unwrap();
        assert_eq!(
            data(&a),
            ["CNAME web.default.svc.cluster.local.", "A 10.43.0.7"]
        );
        assert_eq!(a.chase, None);
    }

    #[test]
    fn srv_for_a_named_port_of_a_cluster_ip_service() {
        let a = ask("_http._tcp.web.default.svc.cluster.local", TYPE_SRV).unwrap();
        assert_eq!(data(&a), ["SRV 0 100 80 web.default.svc.cluster.local."]);
        assert_eq!(a.additional.len(), 1);
        let a = ask("_dns._udp.web.default.svc.cluster.local", TYPE_SRV).unwrap();
        assert_eq!(data(&a), ["SRV 0 100 53 web.default.svc.cluster.local."]);
        // The port name with the wrong protocol does not exist.
        assert!(is_nxdomain(
            &ask("_http._udp.web.default.svc.cluster.local", TYPE_SRV).unwrap()
        ));
        // A on a port name answers the cluster IP, as CoreDNS does.
        let a = ask("_http._tcp.web.default.svc.cluster.local", TYPE_A).unwrap();
        assert_eq!(data(&a), ["A 10.43.0.7"]);
    }

    #[test]
    fn srv_for_the_service_name_lists_every_port() {
        let a = ask("web.default.svc.cluster.local", TYPE_SRV).unwrap();
        assert_eq!(
            data(&a),
            [
                "SRV 0 50 80 web.default.svc.cluster.local.",
                "SRV 0 50 53 web.default.svc.cluster.local."
            ]
        );
    }

    #[test]
    fn srv_for_a_headless_service_names_each_endpoint() {
        let a = ask("_pg._tcp.db.default.svc.cluster.local", TYPE_SRV).unwrap();
        assert_eq!(
            data(&a),
            [
                "SRV 0 50 5432 db-0.db.default.svc.cluster.local.",
                "SRV 0 50 5432 10-42-0-6.db.default.svc.cluster.local."
            ]
        );
        let extra: Vec<String> = a.additional.iter().map(|r| r.name.to_dotted()).collect();
        assert_eq!(
            extra,
            [
                "db-0.db.default.svc.cluster.local.",
                "10-42-0-6.db.default.svc.cluster.local."
            ]
        );
    }

    #[test]
    fn ptr_for_cluster_ip_and_endpoint() {
        let a = ask("7.0.43.10.in-addr.arpa", TYPE_PTR).unwrap();
        assert_eq!(data(&a), ["PTR web.default.svc.cluster.local."]);
        let a = ask("5.0.42.10.in-addr.arpa", TYPE_PTR).unwrap();
        assert_eq!(data(&a), ["PTR db-0.db.default.svc.cluster.local."]);
        // Unknown reverse names and partial reverse zones are forwarded.
        assert!(ask("8.8.8.8.in-addr.arpa", TYPE_PTR).is_none());
        assert!(ask("10.in-addr.arpa", TYPE_PTR).is_none());
    }

    #[test]
    fn ptr_in_ip6_arpa() {
        let ip: Ipv6Addr = "fd00::7".parse().unwrap();
        let svcs = [cluster_ip("default", "v6", "fd00::7", &[])];
        let index = Index::build(
            ["default"],
            &svcs,
            Vec::<k8s_openapi::api::discovery::v1::EndpointSlice>::new(),
            1,
        );
        let nibbles: Vec<String> = format!("{:032x}", u128::from(ip))
            .chars()
            .rev()
            .map(String::from)
            .collect();
        let name = format!("{}.ip6.arpa", nibbles.join("."));
        let q = Question {
            name: Name::from_dotted(&name).unwrap(),
            qtype: TYPE_PTR,
            qclass: CLASS_IN,
        };
        let a = answer(&q, &index, &zone()).unwrap();
        assert_eq!(data(&a), ["PTR v6.default.svc.cluster.local."]);
        let q = Question {
            name: Name::from_dotted("v6.default.svc.cluster.local").unwrap(),
            qtype: TYPE_AAAA,
            qclass: CLASS_IN,
        };
        assert_eq!(
            data(&answer(&q, &index, &zone()).unwrap()),
            ["AAAA fd00::7"]
        );
    }

    #[test]
    fn pod_names_echo_their_ip() {
        let a = ask("10-42-1-7.default.pod.cluster.local", TYPE_A).unwrap();
        assert_eq!(data(&a), ["A 10.42.1.7"]);
        let a = ask("fd00--7.default.pod.cluster.local", TYPE_AAAA).unwrap();
        assert_eq!(data(&a), ["AAAA fd00::7"]);
        assert!(is_nodata(
            &ask("10-42-1-7.default.pod.cluster.local", TYPE_AAAA).unwrap()
        ));
        assert!(is_nxdomain(
            &ask("10-42-1-7.nope.pod.cluster.local", TYPE_A).unwrap()
        ));
        assert!(is_nxdomain(
            &ask("not-an-ip.default.pod.cluster.local", TYPE_A).unwrap()
        ));
    }

    #[test]
    fn missing_names_are_nxdomain_with_soa() {
        for name in [
            "nope.default.svc.cluster.local",
            "nope.nope.svc.cluster.local",
            "nope.svc.cluster.local",
            "foo.cluster.local",
            "a.b.c.web.default.svc.cluster.local",
            "google.com.default.svc.cluster.local",
        ] {
            let a = ask(name, TYPE_A).unwrap();
            assert!(is_nxdomain(&a), "{name}: {a:?}");
            let RData::Soa(soa) = &a.authority[0].data else {
                unreachable!()
            };
            assert_eq!(soa.serial, 42);
            assert_eq!(soa.minimum, 5);
        }
    }

    #[test]
    fn existing_empty_names_are_nodata() {
        for name in [
            "default.svc.cluster.local",
            "svc.cluster.local",
            "pod.cluster.local",
        ] {
            assert!(is_nodata(&ask(name, TYPE_A).unwrap()), "{name}");
        }
    }

    #[test]
    fn apex_soa_and_ns() {
        let a = ask("cluster.local", TYPE_SOA).unwrap();
        assert!(matches!(a.answers[0].data, RData::Soa(_)));
        let a = ask("cluster.local", TYPE_NS).unwrap();
        assert_eq!(
            a.answers[0].data,
            RData::Ns(Name::from_dotted("ns.dns.cluster.local").unwrap())
        );
        assert_eq!(
            a.additional[0].data,
            RData::A("10.43.0.10".parse().unwrap())
        );
        assert!(is_nodata(
            &ask("cluster.local", crate::wire::TYPE_MX).unwrap()
        ));
        let a = ask("dns-version.cluster.local", TYPE_TXT).unwrap();
        assert_eq!(data(&a), ["TXT 1.1.0"]);
    }

    #[test]
    fn names_outside_the_zone_are_not_ours() {
        assert!(ask("example.com", TYPE_A).is_none());
        assert!(ask("cluster.local.example.com", TYPE_A).is_none());
    }
}
