//! Services (TYPE, CLUSTER-IP, EXTERNAL-IP, PORT(S)) and Endpoints.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use crate::Column;
use crate::docs;
use crate::selectors::format_labels;
use crate::value::{age, arr_at, int_at, map_at, name, str_at};

pub(super) const SERVICE: &[Column] = &[
    Column::NAME,
    Column::new("Type", "string", docs::SVC_SPEC_TYPE),
    Column::new("Cluster-IP", "string", docs::SVC_SPEC_CLUSTER_IP),
    Column::new("External-IP", "string", docs::SVC_SPEC_EXTERNAL_IPS),
    Column::new("Port(s)", "string", docs::SVC_SPEC_PORTS),
    Column::AGE,
    Column::wide("Selector", "string", docs::SVC_SPEC_SELECTOR),
];

pub(super) fn service(svc: &Value, now: Timestamp) -> Vec<Value> {
    let type_ = match str_at(svc, &["spec", "type"]) {
        "" => "ClusterIP",
        t => t,
    };
    // clusterIPs is filled from clusterIP on read upstream; older objects may carry only the latter.
    let cluster_ip = arr_at(svc, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .or_else(|| Some(str_at(svc, &["spec", "clusterIP"])).filter(|ip| !ip.is_empty()))
        .unwrap_or("<none>");
    let ports = port_string(arr_at(svc, &["spec", "ports"]));
    vec![
        name(svc),
        type_.into(),
        cluster_ip.into(),
        external_ip(svc, type_).into(),
        if ports.is_empty() {
            "<none>".to_owned()
        } else {
            ports
        }
        .into(),
        age(svc, now),
        format_labels(map_at(svc, &["spec", "selector"])).into(),
    ]
}

fn external_ip(svc: &Value, type_: &str) -> String {
    let external_ips: Vec<&str> = arr_at(svc, &["spec", "externalIPs"])
        .iter()
        .map(|ip| ip.as_str().unwrap_or(""))
        .collect();
    match type_ {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_owned(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let mut all =
                load_balancer_addresses(arr_at(svc, &["status", "loadBalancer", "ingress"]));
            all.extend(external_ips.iter().map(|ip| (*ip).to_owned()));
            if all.is_empty() {
                "<pending>".to_owned()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => str_at(svc, &["spec", "externalName"]).to_owned(),
        _ => "<unknown>".to_owned(),
    }
}

/// Load-balancer ingress points (IP, else hostname), sorted and de-duplicated. The server
/// prints the wide form, never cut short.
pub(crate) fn load_balancer_addresses(ingress: &[Value]) -> Vec<String> {
    let set: BTreeSet<&str> = ingress
        .iter()
        .filter_map(|i| {
            let ip = str_at(i, &["ip"]);
            let host = str_at(i, &["hostname"]);
            [ip, host].into_iter().find(|s| !s.is_empty())
        })
        .collect();
    set.into_iter().map(str::to_owned).collect()
}

/// "80/TCP,443:30443/TCP".
fn port_string(ports: &[Value]) -> String {
    let pieces: Vec<String> = ports
        .iter()
        .map(|p| {
            let port = int_at(p, &["port"]);
            let protocol = match str_at(p, &["protocol"]) {
                "" => "TCP",
                proto => proto,
            };
            match int_at(p, &["nodePort"]) {
                node_port if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    pieces.join(",")
}

pub(super) const ENDPOINTS: &[Column] = &[
    Column::NAME,
    Column::new("Endpoints", "string", docs::ENDPOINTS_SUBSETS),
    Column::AGE,
];

pub(super) fn endpoints(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        format_endpoints(arr_at(obj, &["subsets"])).into(),
        age(obj, now),
    ]
}

/// Up to three "ip:port" entries, then " + N more...".
fn format_endpoints(subsets: &[Value]) -> String {
    const MAX: usize = 3;
    if subsets.is_empty() {
        return "<none>".to_owned();
    }
    let mut list: Vec<String> = Vec::new();
    let mut count = 0usize;
    for subset in subsets {
        let addresses = arr_at(subset, &["addresses"]);
        let ports = arr_at(subset, &["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            list.extend(
                addresses
                    .iter()
                    .map(|a| str_at(a, &["ip"]).to_owned())
                    .take(MAX - list.len().min(MAX)),
            );
            continue;
        }
        for port in ports {
            count += addresses.len();
            let port = int_at(port, &["port"]);
            for address in addresses {
                if list.len() == MAX {
                    break;
                }
                list.push(join_host_port(str_at(address, &["ip"]), port));
            }
        }
    }
    let joined = list.join(",");
    if count > MAX {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

/// Go's `net.JoinHostPort`: IPv6 addresses get brackets.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{cells, headers};
    use serde_json::{Value, json};

    fn svc(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "s", "creationTimestamp": "2024-05-01T11:00:00Z"}, "spec": spec, "status": status})
    }

    #[test]
    fn columns() {
        assert_eq!(
            headers("", "Service"),
            [
                "Name",
                "Type",
                "Cluster-IP",
                "External-IP",
                "Port(s)",
                "Age",
                "Selector*"
            ]
        );
        assert_eq!(headers("", "Endpoints"), ["Name", "Endpoints", "Age"]);
    }

    #[test]
    fn cluster_ip() {
        let s = svc(
            json!({"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}],
            "selector": {"k8s-app": "kube-dns"}}),
            json!({}),
        );
        assert_eq!(
            cells("", "Service", &s),
            [
                json!("s"),
                json!("ClusterIP"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("53/UDP,53/TCP"),
                json!("60m"),
                json!("k8s-app=kube-dns")
            ]
        );
        let with_external = svc(
            json!({"clusterIP": "10.0.0.1", "externalIPs": ["1.2.3.4", "5.6.7.8"], "ports": [{"port": 80}]}),
            json!({}),
        );
        let c = cells("", "Service", &with_external);
        assert_eq!(
            c[1..5],
            [
                json!("ClusterIP"),
                json!("10.0.0.1"),
                json!("1.2.3.4,5.6.7.8"),
                json!("80/TCP")
            ]
        );
        let headless = svc(
            json!({"clusterIP": "None", "clusterIPs": ["None"]}),
            json!({}),
        );
        assert_eq!(
            cells("", "Service", &headless)[2..5],
            [json!("None"), json!("<none>"), json!("<none>")]
        );
    }

    #[test]
    fn node_port() {
        let s = svc(
            json!({"type": "NodePort", "clusterIPs": ["10.0.0.2"],
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}]}),
            json!({}),
        );
        assert_eq!(
            cells("", "Service", &s)[1..6],
            [
                json!("NodePort"),
                json!("10.0.0.2"),
                json!("<none>"),
                json!("80:30080/TCP,443/TCP"),
                json!("60m")
            ]
        );
    }

    #[test]
    fn load_balancer() {
        let pending = svc(
            json!({"type": "LoadBalancer", "clusterIPs": ["10.0.0.3"], "ports": [{"port": 443, "nodePort": 31443}]}),
            json!({}),
        );
        assert_eq!(
            cells("", "Service", &pending)[3..5],
            [json!("<pending>"), json!("443:31443/TCP")]
        );
        let ready = svc(
            json!({"type": "LoadBalancer", "clusterIPs": ["10.0.0.3"], "externalIPs": ["9.9.9.9"]}),
            json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "a-very-long-name.elb.example.com"}, {"ip": "203.0.113.7"}]}}),
        );
        assert_eq!(
            cells("", "Service", &ready)[3],
            json!("203.0.113.7,a-very-long-name.elb.example.com,9.9.9.9")
        );
    }

    #[test]
    fn external_name_and_unknown_type() {
        let s = svc(
            json!({"type": "ExternalName", "externalName": "db.example.com"}),
            json!({}),
        );
        assert_eq!(
            cells("", "Service", &s)[1..5],
            [
                json!("ExternalName"),
                json!("<none>"),
                json!("db.example.com"),
                json!("<none>")
            ]
        );
        let odd = svc(json!({"type": "Weird"}), json!({}));
        assert_eq!(cells("", "Service", &odd)[3], json!("<unknown>"));
        assert_eq!(
            cells("", "Service", &json!({})),
            [
                json!(""),
                json!("ClusterIP"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<unknown>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn endpoints() {
        let e = json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:00:00Z"}, "subsets": [
            {"addresses": [{"ip": "10.1.0.1"}, {"ip": "10.1.0.2"}], "ports": [{"port": 8080}, {"port": 8443}]},
            {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
        assert_eq!(
            cells("", "Endpoints", &e),
            [
                json!("web"),
                json!("10.1.0.1:8080,10.1.0.2:8080,10.1.0.1:8443 + 2 more..."),
                json!("60m")
            ]
        );
        let small = json!({"metadata": {"name": "db"}, "subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 5432}]}]});
        assert_eq!(cells("", "Endpoints", &small)[1], json!("[fd00::1]:5432"));
        let headless =
            json!({"subsets": [{"addresses": [{"ip": "10.1.0.1"}, {"ip": "10.1.0.2"}]}]});
        assert_eq!(
            cells("", "Endpoints", &headless)[1],
            json!("10.1.0.1,10.1.0.2")
        );
        assert_eq!(
            cells("", "Endpoints", &json!({"subsets": []}))[1],
            json!("<none>")
        );
        let not_ready = json!({"subsets": [{"notReadyAddresses": [{"ip": "10.1.0.1"}], "ports": [{"port": 80}]}]});
        assert_eq!(cells("", "Endpoints", &not_ready)[1], json!(""));
    }
}
