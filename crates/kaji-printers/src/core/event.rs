//! Events: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE (and the wide SUBOBJECT, SOURCE, FIRST SEEN,
//! COUNT, NAME). events.k8s.io/v1 Events are printed by the same code after mapping their fields
//! onto the core/v1 shape, as upstream converts both to one internal type.

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::Column;
use crate::docs;
use crate::duration::{parse_time, since};
use crate::value::{get, int_at, is_set, name, str_at};

pub(crate) const COLUMNS: &[Column] = &[
    Column::new("Last Seen", "string", docs::EVENT_LAST_TIMESTAMP),
    Column::new("Type", "string", docs::EVENT_TYPE),
    Column::new("Reason", "string", docs::EVENT_REASON),
    Column::new("Object", "string", docs::EVENT_INVOLVED_OBJECT),
    Column::wide("Subobject", "string", docs::OBJECT_REFERENCE_FIELD_PATH),
    Column::wide("Source", "string", docs::EVENT_SOURCE),
    Column::new("Message", "string", docs::EVENT_MESSAGE),
    Column::wide("First Seen", "string", docs::EVENT_FIRST_TIMESTAMP),
    Column::wide("Count", "string", docs::EVENT_COUNT),
    Column {
        name: "Name",
        type_: "string",
        format: "name",
        description: docs::NAME,
        priority: 1,
    },
];

/// A core/v1 Event's cells.
pub(crate) fn row(event: &Value, now: Timestamp) -> Vec<Value> {
    let first_time = parse_time(get(event, &["firstTimestamp"]))
        .or_else(|| parse_time(get(event, &["eventTime"])));
    let first_seen = since(first_time, now);
    let mut last_seen = match parse_time(get(event, &["lastTimestamp"])) {
        Some(t) => since(Some(t), now),
        None => first_seen.clone(),
    };
    let mut count = int_at(event, &["count"]);
    if is_set(event, &["series"]) {
        last_seen = since(parse_time(get(event, &["series", "lastObservedTime"])), now);
        count = int_at(event, &["series", "count"]);
    } else if count == 0 {
        // Singleton events carry no count in the new API.
        count = 1;
    }
    let kind = str_at(event, &["involvedObject", "kind"]).to_lowercase();
    let target = match str_at(event, &["involvedObject", "name"]) {
        "" => kind,
        object => format!("{kind}/{object}"),
    };
    vec![
        last_seen.into(),
        str_at(event, &["type"]).into(),
        str_at(event, &["reason"]).into(),
        target.into(),
        str_at(event, &["involvedObject", "fieldPath"]).into(),
        source(event).into(),
        str_at(event, &["message"]).trim().into(),
        first_seen.into(),
        count.into(),
        name(event),
    ]
}

/// "component, host", falling back to the reporting controller and instance.
fn source(event: &Value) -> String {
    let first_non_empty = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_owned()
        } else {
            a.to_owned()
        }
    };
    let component = first_non_empty(
        str_at(event, &["source", "component"]),
        str_at(event, &["reportingComponent"]),
    );
    let instance = first_non_empty(
        str_at(event, &["source", "host"]),
        str_at(event, &["reportingInstance"]),
    );
    if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    }
}

/// Maps an events.k8s.io/v1 Event onto the core/v1 field names (upstream's conversion).
pub(crate) fn from_events_v1(event: &Value) -> Value {
    const RENAMES: &[(&str, &str)] = &[
        ("metadata", "metadata"),
        ("regarding", "involvedObject"),
        ("related", "related"),
        ("note", "message"),
        ("deprecatedSource", "source"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
        ("reportingController", "reportingComponent"),
        ("reportingInstance", "reportingInstance"),
        ("series", "series"),
        ("eventTime", "eventTime"),
        ("type", "type"),
        ("reason", "reason"),
        ("action", "action"),
    ];
    let mut core = Map::new();
    for (from, to) in RENAMES {
        if let Some(v) = event.get(*from) {
            core.insert((*to).to_owned(), v.clone());
        }
    }
    Value::Object(core)
}

#[cfg(test)]
mod tests {
    use crate::testutil::{cells, headers};
    use serde_json::json;

    #[test]
    fn columns() {
        let want = [
            "Last Seen",
            "Type",
            "Reason",
            "Object",
            "Subobject*",
            "Source*",
            "Message",
            "First Seen*",
            "Count*",
            "Name*",
        ];
        assert_eq!(headers("", "Event"), want);
        assert_eq!(headers("events.k8s.io", "Event"), want);
        assert_eq!(crate::columns("", "Event")[9].format, "name");
    }

    #[test]
    fn core_event() {
        let e = json!({
            "metadata": {"name": "web-1.17c0a", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{web}"},
            "reason": "BackOff", "type": "Warning", "message": "Back-off restarting failed container\n",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2024-05-01T10:00:00Z", "lastTimestamp": "2024-05-01T11:58:00Z", "count": 42
        });
        assert_eq!(
            cells("", "Event", &e),
            [
                json!("2m"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web-1"),
                json!("spec.containers{web}"),
                json!("kubelet, node-1"),
                json!("Back-off restarting failed container"),
                json!("120m"),
                json!(42),
                json!("web-1.17c0a")
            ]
        );
    }

    #[test]
    fn new_style_event_through_core() {
        // Only eventTime and a series: LAST SEEN from the series, FIRST SEEN from eventTime.
        let e = json!({
            "metadata": {"name": "n.1"}, "involvedObject": {"kind": "Node"}, "type": "Normal", "reason": "Starting",
            "eventTime": "2024-05-01T11:00:00.000000Z", "reportingComponent": "kube-proxy", "reportingInstance": "node-1",
            "series": {"count": 5, "lastObservedTime": "2024-05-01T11:59:30.000000Z"}
        });
        let c = cells("", "Event", &e);
        assert_eq!(
            c[0..4],
            [
                json!("30s"),
                json!("Normal"),
                json!("Starting"),
                json!("node")
            ]
        );
        assert_eq!(c[5], json!("kube-proxy, node-1"));
        assert_eq!(c[7..9], [json!("60m"), json!(5)]);

        let bare = cells("", "Event", &json!({}));
        assert_eq!(
            bare,
            [
                json!("<unknown>"),
                json!(""),
                json!(""),
                json!(""),
                json!(""),
                json!(""),
                json!(""),
                json!("<unknown>"),
                json!(1),
                json!("")
            ]
        );
    }

    #[test]
    fn events_k8s_io_event() {
        let e = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "web.1"}, "eventTime": "2024-05-01T11:59:00.000000Z",
            "regarding": {"kind": "Deployment", "name": "web"}, "note": "Scaled up replica set web-7d to 3",
            "reason": "ScalingReplicaSet", "type": "Normal", "reportingController": "deployment-controller",
            "reportingInstance": "", "action": "Scale"
        });
        assert_eq!(
            cells("events.k8s.io", "Event", &e),
            [
                json!("60s"),
                json!("Normal"),
                json!("ScalingReplicaSet"),
                json!("deployment/web"),
                json!(""),
                json!("deployment-controller"),
                json!("Scaled up replica set web-7d to 3"),
                json!("60s"),
                json!(1),
                json!("web.1")
            ]
        );
        let old = json!({"metadata": {"name": "x"}, "regarding": {"kind": "Pod", "name": "p"},
            "deprecatedSource": {"component": "kubelet"}, "deprecatedFirstTimestamp": "2024-05-01T11:00:00Z",
            "deprecatedLastTimestamp": "2024-05-01T11:50:00Z", "deprecatedCount": 3});
        let c = cells("events.k8s.io", "Event", &old);
        assert_eq!(
            [&c[0], &c[5], &c[7], &c[8]],
            [&json!("10m"), &json!("kubelet"), &json!("60m"), &json!(3)]
        );
    }
}
