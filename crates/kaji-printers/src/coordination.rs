//! coordination.k8s.io: Lease.

use jiff::Timestamp;
use serde_json::Value;

use crate::Column;
use crate::docs;
use crate::value::{age, name, str_at};

pub(crate) fn columns(kind: &str) -> Option<&'static [Column]> {
    (kind == "Lease").then_some(LEASE)
}

pub(crate) fn row(kind: &str, obj: &Value, now: Timestamp) -> Option<Vec<Value>> {
    (kind == "Lease").then(|| {
        vec![
            name(obj),
            str_at(obj, &["spec", "holderIdentity"]).into(),
            age(obj, now),
        ]
    })
}

const LEASE: &[Column] = &[
    Column::NAME,
    Column::new("Holder", "string", docs::LEASE_SPEC_HOLDER_IDENTITY),
    Column::AGE,
];

#[cfg(test)]
mod tests {
    use crate::testutil::{cells, headers};
    use serde_json::json;

    #[test]
    fn lease() {
        assert_eq!(
            headers("coordination.k8s.io", "Lease"),
            ["Name", "Holder", "Age"]
        );
        let l = json!({"metadata": {"name": "kube-scheduler", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"holderIdentity": "cp-1_6f1c", "leaseDurationSeconds": 15}});
        assert_eq!(
            cells("coordination.k8s.io", "Lease", &l),
            [json!("kube-scheduler"), json!("cp-1_6f1c"), json!("60m")]
        );
    }
}
