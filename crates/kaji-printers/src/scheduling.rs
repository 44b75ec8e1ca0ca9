//! scheduling.k8s.io: PriorityClass.

use jiff::Timestamp;
use serde_json::Value;

use crate::Column;
use crate::docs;
use crate::value::{age, bool_at, int_at, name, str_at};

pub(crate) fn columns(kind: &str) -> Option<&'static [Column]> {
    (kind == "PriorityClass").then_some(PRIORITY_CLASS)
}

pub(crate) fn row(kind: &str, obj: &Value, now: Timestamp) -> Option<Vec<Value>> {
    (kind == "PriorityClass").then(|| {
        // preemptionPolicy defaults to PreemptLowerPriority upstream.
        let preemption = match str_at(obj, &["preemptionPolicy"]) {
            "" => "PreemptLowerPriority",
            p => p,
        };
        vec![
            name(obj),
            int_at(obj, &["value"]).into(),
            bool_at(obj, &["globalDefault"]).into(),
            age(obj, now),
            preemption.into(),
        ]
    })
}

const PRIORITY_CLASS: &[Column] = &[
    Column::NAME,
    Column::new("Value", "integer", docs::PC_VALUE),
    Column::new("Global-Default", "boolean", docs::PC_GLOBAL_DEFAULT),
    Column::AGE,
    Column::new("PreemptionPolicy", "string", docs::PC_PREEMPTION_POLICY),
];

#[cfg(test)]
mod tests {
    use crate::testutil::{cells, headers};
    use serde_json::json;

    #[test]
    fn priority_class() {
        assert_eq!(
            headers("scheduling.k8s.io", "PriorityClass"),
            ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"]
        );
        let pc = json!({"metadata": {"name": "system-node-critical", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "value": 2000001000, "preemptionPolicy": "PreemptLowerPriority"});
        assert_eq!(
            cells("scheduling.k8s.io", "PriorityClass", &pc),
            [
                json!("system-node-critical"),
                json!(2000001000),
                json!(false),
                json!("60m"),
                json!("PreemptLowerPriority")
            ]
        );
        let never = json!({"metadata": {"name": "batch"}, "value": -5, "globalDefault": true, "preemptionPolicy": "Never"});
        assert_eq!(
            cells("scheduling.k8s.io", "PriorityClass", &never)[1..5],
            [json!(-5), json!(true), json!("<unknown>"), json!("Never")]
        );
    }
}
