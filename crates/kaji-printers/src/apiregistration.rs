//! apiregistration.k8s.io: APIService, as kube-aggregator's own table convertor
//! (`registry/apiservice/etcd`): NAME, SERVICE (`Local` or `namespace/name`), AVAILABLE (`True`,
//! or the status with the reason in parentheses), AGE.

use jiff::Timestamp;
use serde_json::Value;

use crate::Column;
use crate::value::{age, arr_at, name, opt_str, str_at};

pub(crate) fn columns(kind: &str) -> Option<&'static [Column]> {
    (kind == "APIService").then_some(API_SERVICE)
}

pub(crate) fn row(kind: &str, obj: &Value, now: Timestamp) -> Option<Vec<Value>> {
    (kind == "APIService").then(|| {
        let service = match obj
            .get("spec")
            .and_then(|s| s.get("service"))
            .filter(|s| s.is_object())
        {
            Some(s) => format!("{}/{}", str_at(s, &["namespace"]), str_at(s, &["name"])),
            None => "Local".to_string(),
        };
        let available = arr_at(obj, &["status", "conditions"])
            .iter()
            .find(|c| opt_str(c, &["type"]) == Some("Available"))
            .map_or_else(
                || "Unknown".to_string(),
                |c| {
                    let status = str_at(c, &["status"]);
                    let reason = str_at(c, &["reason"]);
                    if status == "True" || reason.is_empty() {
                        status.to_string()
                    } else {
                        format!("{status} ({reason})")
                    }
                },
            );
        vec![name(obj), service.into(), available.into(), age(obj, now)]
    })
}

const API_SERVICE: &[Column] = &[
    Column::NAME,
    Column::new(
        "Service",
        "string",
        "The reference to the service that hosts this API endpoint.",
    ),
    Column::new("Available", "string", "Whether this service is available."),
    Column::AGE,
];

#[cfg(test)]
mod tests {
    use crate::testutil::{cells, headers};
    use serde_json::json;

    #[test]
    fn api_service() {
        const G: &str = "apiregistration.k8s.io";
        assert_eq!(
            headers(G, "APIService"),
            ["Name", "Service", "Available", "Age"]
        );
        let local = json!({"metadata": {"name": "v1.apps", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"group": "apps", "version": "v1"},
            "status": {"conditions": [{"type": "Available", "status": "True", "reason": "Local"}]}});
        assert_eq!(
            cells(G, "APIService", &local),
            [
                json!("v1.apps"),
                json!("Local"),
                json!("True"),
                json!("60m")
            ]
        );
        let down = json!({"metadata": {"name": "v1alpha1.wardle.example.com"},
            "spec": {"service": {"namespace": "wardle", "name": "api"}},
            "status": {"conditions": [{"type": "Available", "status": "False", "reason": "FailedDiscoveryCheck"}]}});
        assert_eq!(
            cells(G, "APIService", &down)[1..3],
            [json!("wardle/api"), json!("False (FailedDiscoveryCheck)")]
        );
        let fresh = json!({"metadata": {"name": "v1.x.io"}, "spec": {"service": {"namespace": "a", "name": "b"}}});
        assert_eq!(cells(G, "APIService", &fresh)[2], json!("Unknown"));
    }
}
