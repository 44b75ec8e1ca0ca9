//! Table columns and rows for every built-in kind, as kube-apiserver prints them when a client
//! (`kubectl get`) asks for `application/json;as=Table;v=v1;g=meta.k8s.io`. Pure functions, no I/O.
//!
//! Start at [`columns`] and [`row`]: both dispatch on (API group, kind) to one module per API group
//! (`core`, `apps`, `batch`, ...). Each follows upstream's `pkg/printers/internalversion/printers.go`
//! (kubernetes 1.33), kind by kind. Shared helpers: [`duration`] (ages, `HumanDuration`),
//! `selectors` (label and selector strings), `quantity` (canonical quantities), `value` (tolerant
//! JSON access: a missing or mistyped field reads as Go's zero value, so nothing panics).
//!
//! Like upstream, the server always prints the wide cells (columns of priority 1); kubectl hides
//! them unless `-o wide`. Kinds without a printer get upstream's default table: NAME and CREATED AT.

use jiff::Timestamp;
use serde_json::Value;

mod admissionregistration;
mod apiregistration;
mod apps;
mod autoscaling;
mod batch;
mod certificates;
mod coordination;
mod core;
mod discovery;
mod docs;
pub mod duration;
mod events;
mod flowcontrol;
mod networking;
mod node;
mod policy;
mod quantity;
mod rbac;
mod scheduling;
mod selectors;
mod storage;
mod value;

/// One column definition of a meta.k8s.io/v1 Table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// "string" | "integer" | "number" | "boolean" | "date"
    pub type_: &'static str,
    /// "name" for the NAME column, else "".
    pub format: &'static str,
    pub description: &'static str,
    /// 0 = always shown, 1 = only with `kubectl get -o wide`.
    pub priority: i32,
}

impl Column {
    /// A column shown by default.
    pub(crate) const fn new(
        name: &'static str,
        type_: &'static str,
        description: &'static str,
    ) -> Self {
        Column {
            name,
            type_,
            format: "",
            description,
            priority: 0,
        }
    }

    /// A column shown only with `-o wide`.
    pub(crate) const fn wide(
        name: &'static str,
        type_: &'static str,
        description: &'static str,
    ) -> Self {
        Column {
            name,
            type_,
            format: "",
            description,
            priority: 1,
        }
    }

    /// The NAME column.
    pub(crate) const NAME: Column = Column {
        name: "Name",
        type_: "string",
        format: "name",
        description: docs::NAME,
        priority: 0,
    };

    /// The AGE column (creation timestamp, as a human duration).
    pub(crate) const AGE: Column = Column::new("Age", "string", docs::CREATION_TIMESTAMP);

    pub(crate) const CONTAINERS: Column = Column::wide("Containers", "string", docs::CONTAINERS);
    pub(crate) const IMAGES: Column = Column::wide("Images", "string", docs::IMAGES);
}

/// Upstream's default table (`rest.NewDefaultTableConvertor`), for kinds without a printer.
const DEFAULT_COLUMNS: &[Column] = &[
    Column::NAME,
    Column::new("Created At", "date", docs::CREATION_TIMESTAMP),
];

/// Columns for a kind; `group` "" = core. Unknown kinds (e.g. custom resources) get upstream's
/// default: Name (format name) and "Created At" (type date).
pub fn columns(group: &str, kind: &str) -> Vec<Column> {
    printer_columns(group, kind)
        .unwrap_or(DEFAULT_COLUMNS)
        .to_vec()
}

/// One row's cells for an object (the whole object, as stored), `now` for ages. Cells are
/// JSON values exactly as upstream puts them: strings, integers, booleans.
pub fn row(group: &str, kind: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    printer_row(group, kind, obj, now).unwrap_or_else(|| default_row(obj))
}

/// Row conditions upstream attaches (a Pod that has finished is marked `Completed`), as the
/// `conditions` of a meta.k8s.io/v1 TableRow; empty for every other kind.
pub fn row_conditions(group: &str, kind: &str, obj: &Value) -> Vec<Value> {
    match (group, kind) {
        ("", "Pod") => core::pod::row_conditions(obj),
        _ => Vec::new(),
    }
}

fn printer_columns(group: &str, kind: &str) -> Option<&'static [Column]> {
    match group {
        "" => core::columns(kind),
        "apps" => apps::columns(kind),
        "batch" => batch::columns(kind),
        "autoscaling" => autoscaling::columns(kind),
        "networking.k8s.io" => networking::columns(kind),
        "policy" => policy::columns(kind),
        "rbac.authorization.k8s.io" => rbac::columns(kind),
        "storage.k8s.io" => storage::columns(kind),
        "coordination.k8s.io" => coordination::columns(kind),
        "discovery.k8s.io" => discovery::columns(kind),
        "events.k8s.io" => events::columns(kind),
        "scheduling.k8s.io" => scheduling::columns(kind),
        "admissionregistration.k8s.io" => admissionregistration::columns(kind),
        "node.k8s.io" => node::columns(kind),
        "certificates.k8s.io" => certificates::columns(kind),
        "flowcontrol.apiserver.k8s.io" => flowcontrol::columns(kind),
        "apiregistration.k8s.io" => apiregistration::columns(kind),
        _ => None,
    }
}

fn printer_row(group: &str, kind: &str, obj: &Value, now: Timestamp) -> Option<Vec<Value>> {
    match group {
        "" => core::row(kind, obj, now),
        "apps" => apps::row(kind, obj, now),
        "batch" => batch::row(kind, obj, now),
        "autoscaling" => autoscaling::row(kind, obj, now),
        "networking.k8s.io" => networking::row(kind, obj, now),
        "policy" => policy::row(kind, obj, now),
        "rbac.authorization.k8s.io" => rbac::row(kind, obj, now),
        "storage.k8s.io" => storage::row(kind, obj, now),
        "coordination.k8s.io" => coordination::row(kind, obj, now),
        "discovery.k8s.io" => discovery::row(kind, obj, now),
        "events.k8s.io" => events::row(kind, obj, now),
        "scheduling.k8s.io" => scheduling::row(kind, obj, now),
        "admissionregistration.k8s.io" => admissionregistration::row(kind, obj, now),
        "node.k8s.io" => node::row(kind, obj, now),
        "certificates.k8s.io" => certificates::row(kind, obj, now),
        "flowcontrol.apiserver.k8s.io" => flowcontrol::row(kind, obj, now),
        "apiregistration.k8s.io" => apiregistration::row(kind, obj, now),
        _ => None,
    }
}

/// NAME and CREATED AT (RFC 3339, UTC; Go's zero time when unset).
fn default_row(obj: &Value) -> Vec<Value> {
    vec![
        value::name(obj),
        Value::from(duration::rfc3339(value::get(
            obj,
            &["metadata", "creationTimestamp"],
        ))),
    ]
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    pub(crate) fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().expect("valid timestamp")
    }

    /// Column names, with a trailing "*" on the wide ones.
    pub(crate) fn headers(group: &str, kind: &str) -> Vec<String> {
        columns(group, kind)
            .iter()
            .map(|c| {
                if c.priority == 1 {
                    format!("{}*", c.name)
                } else {
                    c.name.to_owned()
                }
            })
            .collect()
    }

    /// Checks the row has one cell per column and returns it.
    pub(crate) fn cells(group: &str, kind: &str, obj: &Value) -> Vec<Value> {
        let cells = row(group, kind, obj, now());
        assert_eq!(
            cells.len(),
            columns(group, kind).len(),
            "{group}/{kind}: one cell per column"
        );
        cells
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_kinds_get_the_default_table() {
        assert_eq!(
            headers("stable.example.com", "CronTab"),
            ["Name", "Created At"]
        );
        let cols = columns("apiextensions.k8s.io", "CustomResourceDefinition");
        assert_eq!(cols[0].format, "name");
        assert_eq!(cols[1].type_, "date");
        let crd = json!({"metadata": {"name": "crontabs.stable.example.com", "creationTimestamp": "2024-04-30T10:00:00Z"}});
        assert_eq!(
            cells("apiextensions.k8s.io", "CustomResourceDefinition", &crd),
            [
                json!("crontabs.stable.example.com"),
                json!("2024-04-30T10:00:00Z")
            ]
        );
        assert_eq!(
            cells("x.io", "Thing", &json!(null)),
            [json!(""), json!("0001-01-01T00:00:00Z")]
        );
    }

    /// Every kind's printer copes with an empty object and with nonsense, one cell per column.
    #[test]
    fn every_kind_survives_odd_input() {
        let kinds: &[(&str, &[&str])] = &[
            (
                "",
                &[
                    "Pod",
                    "PodTemplate",
                    "ReplicationController",
                    "Service",
                    "Endpoints",
                    "Node",
                    "Event",
                    "Namespace",
                    "Secret",
                    "ServiceAccount",
                    "PersistentVolume",
                    "PersistentVolumeClaim",
                    "ConfigMap",
                    "LimitRange",
                    "ResourceQuota",
                    "ComponentStatus",
                ],
            ),
            (
                "apps",
                &[
                    "Deployment",
                    "ReplicaSet",
                    "StatefulSet",
                    "DaemonSet",
                    "ControllerRevision",
                ],
            ),
            ("batch", &["Job", "CronJob"]),
            ("autoscaling", &["HorizontalPodAutoscaler"]),
            (
                "networking.k8s.io",
                &["Ingress", "IngressClass", "NetworkPolicy", "ServiceCIDR"],
            ),
            ("policy", &["PodDisruptionBudget"]),
            (
                "rbac.authorization.k8s.io",
                &["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"],
            ),
            (
                "storage.k8s.io",
                &[
                    "StorageClass",
                    "CSIDriver",
                    "CSINode",
                    "VolumeAttachment",
                    "CSIStorageCapacity",
                ],
            ),
            ("coordination.k8s.io", &["Lease"]),
            ("discovery.k8s.io", &["EndpointSlice"]),
            ("events.k8s.io", &["Event"]),
            ("scheduling.k8s.io", &["PriorityClass"]),
            ("apiextensions.k8s.io", &["CustomResourceDefinition"]),
            ("apiregistration.k8s.io", &["APIService"]),
            (
                "admissionregistration.k8s.io",
                &[
                    "MutatingWebhookConfiguration",
                    "ValidatingWebhookConfiguration",
                    "ValidatingAdmissionPolicy",
                    "ValidatingAdmissionPolicyBinding",
                    "MutatingAdmissionPolicy",
                    "MutatingAdmissionPolicyBinding",
                ],
            ),
            ("node.k8s.io", &["RuntimeClass"]),
            ("certificates.k8s.io", &["CertificateSigningRequest"]),
            (
                "flowcontrol.apiserver.k8s.io",
                &["FlowSchema", "PriorityLevelConfiguration"],
            ),
        ];
        let odd = [
            json!({}),
            json!(null),
            json!([1, 2]),
            json!({"metadata": 5, "spec": "x", "status": [true]}),
            json!({"metadata": {"name": 3, "creationTimestamp": "yesterday", "deletionTimestamp": "x"},
                   "spec": {"containers": [null, 4], "initContainers": {"a": 1}, "ports": [{"port": "x"}],
                            "replicas": "three", "selector": {"matchExpressions": [7]}, "rules": [null],
                            "metrics": [{"type": "Resource"}], "drivers": 2, "tls": 1},
                   "status": {"conditions": [null, {"type": 1}], "containerStatuses": [{"state": 1}],
                              "initContainerStatuses": [{}], "hard": {"cpu": 4}, "loadBalancer": {"ingress": [1]}},
                   "subsets": [{"addresses": [1], "ports": [{}]}], "endpoints": [{"addresses": [2]}],
                   "series": {}, "involvedObject": 1, "regarding": {}, "webhooks": 1}),
        ];
        for (group, kinds) in kinds {
            for kind in *kinds {
                for obj in &odd {
                    cells(group, kind, obj);
                }
            }
        }
    }
}
