//! networking.k8s.io: Ingress, IngressClass, NetworkPolicy, ServiceCIDR.

use jiff::Timestamp;
use serde_json::Value;

use crate::Column;
use crate::core::service_load_balancer_addresses;
use crate::docs;
use crate::selectors::format_label_selector;
use crate::value::{age, arr_at, get, is_set, len_at, name, opt_str, str_at};

pub(crate) fn columns(kind: &str) -> Option<&'static [Column]> {
    Some(match kind {
        "Ingress" => INGRESS,
        "IngressClass" => INGRESS_CLASS,
        "NetworkPolicy" => NETWORK_POLICY,
        "ServiceCIDR" => SERVICE_CIDR,
        _ => return None,
    })
}

pub(crate) fn row(kind: &str, obj: &Value, now: Timestamp) -> Option<Vec<Value>> {
    Some(match kind {
        "Ingress" => ingress(obj, now),
        "IngressClass" => ingress_class(obj, now),
        "NetworkPolicy" => vec![
            name(obj),
            format_label_selector(get(obj, &["spec", "podSelector"])).into(),
            age(obj, now),
        ],
        "ServiceCIDR" => {
            let cidrs: Vec<&str> = arr_at(obj, &["spec", "cidrs"])
                .iter()
                .map(|c| c.as_str().unwrap_or(""))
                .collect();
            vec![name(obj), cidrs.join(",").into(), age(obj, now)]
        }
        _ => return None,
    })
}

const INGRESS: &[Column] = &[
    Column::NAME,
    Column::new(
        "Class",
        "string",
        "The name of the IngressClass resource that should be used for additional configuration",
    ),
    Column::new(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    Column::new(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
    ),
    Column::new("Ports", "string", "Ports of TLS configurations that open"),
    Column::AGE,
];

fn ingress(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ports = if len_at(obj, &["spec", "tls"]) > 0 {
        "80, 443"
    } else {
        "80"
    };
    vec![
        name(obj),
        opt_str(obj, &["spec", "ingressClassName"])
            .unwrap_or("<none>")
            .into(),
        format_hosts(arr_at(obj, &["spec", "rules"])).into(),
        service_load_balancer_addresses(arr_at(obj, &["status", "loadBalancer", "ingress"]))
            .join(",")
            .into(),
        ports.into(),
        age(obj, now),
    ]
}

/// The first three hosts named by rules, "*" when none names one. Like upstream, the
/// "more" count is the number of rules beyond three, whether or not they name a host.
fn format_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == MAX {
            more = true;
            break;
        }
        let host = str_at(rule, &["host"]);
        if !host.is_empty() {
            hosts.push(host);
        }
    }
    if hosts.is_empty() {
        return "*".to_owned();
    }
    let joined = hosts.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - MAX)
    } else {
        joined
    }
}

const INGRESS_CLASS: &[Column] = &[
    Column::NAME,
    Column::new(
        "Controller",
        "string",
        "Controller that is responsible for handling this class",
    ),
    Column::new(
        "Parameters",
        "string",
        "A reference to a resource with additional parameters",
    ),
    Column::AGE,
];

fn ingress_class(obj: &Value, now: Timestamp) -> Vec<Value> {
    let parameters = match get(obj, &["spec", "parameters"]).filter(|p| !p.is_null()) {
        None => "<none>".to_owned(),
        Some(p) => {
            let mut text = str_at(p, &["kind"]).to_owned();
            if is_set(p, &["apiGroup"]) {
                text = format!("{text}.{}", str_at(p, &["apiGroup"]));
            }
            format!("{text}/{}", str_at(p, &["name"]))
        }
    };
    vec![
        name(obj),
        str_at(obj, &["spec", "controller"]).into(),
        parameters.into(),
        age(obj, now),
    ]
}

const NETWORK_POLICY: &[Column] = &[
    Column::NAME,
    Column::new("Pod-Selector", "string", docs::NETPOL_SPEC_POD_SELECTOR),
    Column::AGE,
];

const SERVICE_CIDR: &[Column] = &[
    Column::NAME,
    Column::new(
        "CIDRs",
        "string",
        "CIDRs defines the IP blocks in CIDR notation (e.g. \"192.168.0.0/24\" or \"2001:db8::/64\") from which to assign service cluster IPs. Max of two CIDRs is allowed, one of each IP family. This field is immutable.",
    ),
    Column::AGE,
];

#[cfg(test)]
mod tests {
    use crate::testutil::{cells, headers};
    use serde_json::json;

    #[test]
    fn ingress() {
        assert_eq!(
            headers("networking.k8s.io", "Ingress"),
            ["Name", "Class", "Hosts", "Address", "Ports", "Age"]
        );
        let ing = json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["a.example.com"]}],
                     "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.49.2"}, {"hostname": "lb.example.com"}]}}});
        assert_eq!(
            cells("networking.k8s.io", "Ingress", &ing),
            [
                json!("web"),
                json!("nginx"),
                json!("a.example.com,b.example.com"),
                json!("192.168.49.2,lb.example.com"),
                json!("80, 443"),
                json!("60m")
            ]
        );
        let many = json!({"spec": {"rules": [{"host": "a"}, {}, {"host": "c"}, {"host": "d"}, {"host": "e"}]}});
        assert_eq!(
            cells("networking.k8s.io", "Ingress", &many)[1..5],
            [
                json!("<none>"),
                json!("a,c,d + 2 more..."),
                json!(""),
                json!("80")
            ]
        );
        let catch_all = json!({"spec": {"defaultBackend": {"service": {"name": "x"}}}});
        assert_eq!(
            cells("networking.k8s.io", "Ingress", &catch_all)[2],
            json!("*")
        );
    }

    #[test]
    fn ingress_class() {
        assert_eq!(
            headers("networking.k8s.io", "IngressClass"),
            ["Name", "Controller", "Parameters", "Age"]
        );
        let ic = json!({"metadata": {"name": "nginx", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"controller": "k8s.io/ingress-nginx",
                     "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}}});
        assert_eq!(
            cells("networking.k8s.io", "IngressClass", &ic),
            [
                json!("nginx"),
                json!("k8s.io/ingress-nginx"),
                json!("IngressParameters.k8s.example.com/external-lb"),
                json!("60m")
            ]
        );
        let plain =
            json!({"spec": {"controller": "c", "parameters": {"kind": "ConfigMap", "name": "cm"}}});
        assert_eq!(
            cells("networking.k8s.io", "IngressClass", &plain)[2],
            json!("ConfigMap/cm")
        );
        assert_eq!(
            cells("networking.k8s.io", "IngressClass", &json!({}))[2],
            json!("<none>")
        );
    }

    #[test]
    fn network_policy_and_service_cidr() {
        assert_eq!(
            headers("networking.k8s.io", "NetworkPolicy"),
            ["Name", "Pod-Selector", "Age"]
        );
        let np = json!({"metadata": {"name": "deny", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"podSelector": {"matchLabels": {"role": "db"}}}});
        assert_eq!(
            cells("networking.k8s.io", "NetworkPolicy", &np),
            [json!("deny"), json!("role=db"), json!("60m")]
        );
        let all = json!({"spec": {"podSelector": {}}});
        assert_eq!(
            cells("networking.k8s.io", "NetworkPolicy", &all)[1],
            json!("<none>")
        );

        assert_eq!(
            headers("networking.k8s.io", "ServiceCIDR"),
            ["Name", "CIDRs", "Age"]
        );
        let sc = json!({"metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["10.96.0.0/12", "fd00:10:96::/112"]}});
        assert_eq!(
            cells("networking.k8s.io", "ServiceCIDR", &sc)[1],
            json!("10.96.0.0/12,fd00:10:96::/112")
        );
    }
}
