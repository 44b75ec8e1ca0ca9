//! policy/v1: PodDisruptionBudget.

use jiff::Timestamp;
use serde_json::Value;

use crate::Column;
use crate::value::{age, get, int_at, int_or_string, name};

pub(crate) fn columns(kind: &str) -> Option<&'static [Column]> {
    (kind == "PodDisruptionBudget").then_some(PDB)
}

pub(crate) fn row(kind: &str, obj: &Value, now: Timestamp) -> Option<Vec<Value>> {
    (kind == "PodDisruptionBudget").then(|| pdb(obj, now))
}

const PDB: &[Column] = &[
    Column::NAME,
    Column::new(
        "Min Available",
        "string",
        "The minimum number of pods that must be available.",
    ),
    Column::new(
        "Max Unavailable",
        "string",
        "The maximum number of pods that may be unavailable.",
    ),
    Column::new(
        "Allowed Disruptions",
        "integer",
        "Calculated number of pods that may be disrupted at this time.",
    ),
    Column::AGE,
];

fn pdb(obj: &Value, now: Timestamp) -> Vec<Value> {
    let bound = |field: &str| match get(obj, &["spec", field]) {
        None | Some(Value::Null) => "N/A".to_owned(),
        Some(v) => int_or_string(v),
    };
    vec![
        name(obj),
        bound("minAvailable").into(),
        bound("maxUnavailable").into(),
        int_at(obj, &["status", "disruptionsAllowed"]).into(),
        age(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use crate::testutil::{cells, headers};
    use serde_json::json;

    #[test]
    fn pod_disruption_budget() {
        assert_eq!(
            headers("policy", "PodDisruptionBudget"),
            [
                "Name",
                "Min Available",
                "Max Unavailable",
                "Allowed Disruptions",
                "Age"
            ]
        );
        let pdb = json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"minAvailable": 2}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            cells("policy", "PodDisruptionBudget", &pdb),
            [
                json!("web"),
                json!("2"),
                json!("N/A"),
                json!(1),
                json!("60m")
            ]
        );
        let pct = json!({"spec": {"maxUnavailable": "25%"}});
        assert_eq!(
            cells("policy", "PodDisruptionBudget", &pct)[1..4],
            [json!("N/A"), json!("25%"), json!(0)]
        );
    }
}
