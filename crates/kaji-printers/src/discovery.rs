//! discovery.k8s.io: EndpointSlice.

use jiff::Timestamp;
use serde_json::Value;

use crate::Column;
use crate::docs;
use crate::value::{age, arr_at, name, opt_int, opt_str, str_at};

pub(crate) fn columns(kind: &str) -> Option<&'static [Column]> {
    (kind == "EndpointSlice").then_some(ENDPOINT_SLICE)
}

pub(crate) fn row(kind: &str, obj: &Value, now: Timestamp) -> Option<Vec<Value>> {
    (kind == "EndpointSlice").then(|| endpoint_slice(obj, now))
}

const ENDPOINT_SLICE: &[Column] = &[
    Column::NAME,
    Column::new("AddressType", "string", docs::EPS_ADDRESS_TYPE),
    Column::new("Ports", "string", docs::EPS_PORTS),
    Column::new("Endpoints", "string", docs::EPS_ENDPOINTS),
    Column::AGE,
];

const MAX: usize = 3;

fn endpoint_slice(obj: &Value, now: Timestamp) -> Vec<Value> {
    // A port prints as its number, else its name, else "*".
    let ports: Vec<String> = arr_at(obj, &["ports"])
        .iter()
        .map(|p| match (opt_int(p, &["port"]), opt_str(p, &["name"])) {
            (Some(port), _) => port.to_string(),
            (None, Some(port_name)) => port_name.to_owned(),
            (None, None) => "*".to_owned(),
        })
        .collect();
    let addresses: Vec<String> = arr_at(obj, &["endpoints"])
        .iter()
        .flat_map(|e| arr_at(e, &["addresses"]))
        .map(|a| a.as_str().unwrap_or("").to_owned())
        .collect();
    vec![
        name(obj),
        str_at(obj, &["addressType"]).into(),
        list_with_more(ports).into(),
        list_with_more(addresses).into(),
        age(obj, now),
    ]
}

/// Up to three entries, then " + N more..."; "<unset>" for none.
fn list_with_more(mut list: Vec<String>) -> String {
    let count = list.len();
    if count > MAX {
        list.truncate(MAX);
        return format!("{} + {} more...", list.join(","), count - MAX);
    }
    if list.is_empty() {
        "<unset>".to_owned()
    } else {
        list.join(",")
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{cells, headers};
    use serde_json::json;

    #[test]
    fn endpoint_slice() {
        assert_eq!(
            headers("discovery.k8s.io", "EndpointSlice"),
            ["Name", "AddressType", "Ports", "Endpoints", "Age"]
        );
        let s = json!({"metadata": {"name": "web-abc12", "creationTimestamp": "2024-05-01T11:00:00Z"}, "addressType": "IPv4",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "metrics"}, {}],
            "endpoints": [{"addresses": ["10.1.0.1"]}, {"addresses": ["10.1.0.2", "10.1.0.3"]}, {"addresses": ["10.1.0.4"]}]});
        assert_eq!(
            cells("discovery.k8s.io", "EndpointSlice", &s),
            [
                json!("web-abc12"),
                json!("IPv4"),
                json!("80,metrics,*"),
                json!("10.1.0.1,10.1.0.2,10.1.0.3 + 1 more..."),
                json!("60m")
            ]
        );
        assert_eq!(
            cells("discovery.k8s.io", "EndpointSlice", &json!({}))[1..4],
            [json!(""), json!("<unset>"), json!("<unset>")]
        );
    }
}
