//! events.k8s.io/v1 Events are the same objects as core/v1 Events, stored once (as core/v1) and
//! converted on the way in and out, as upstream does: `kubectl describe` (core/v1) sees events
//! recorded through events.k8s.io/v1 (kube-rs, client-go's new recorder) and the other way round.

use super::{Strategy, info};
use kaji_api::ResourceInfo;
use serde_json::{Map, Value};
use std::sync::Arc;

struct EventsV1;

static INFO: ResourceInfo = info("events.k8s.io", "v1", "Event", "events", "event", true, &["ev"], &[]);

/// (events.k8s.io/v1 field, core/v1 field) pairs that only change name.
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("reportingController", "reportingComponent"),
];

fn rename(obj: Value, api_version: &str, forward: bool) -> Value {
    let Value::Object(mut m) = obj else { return obj };
    let mut out = Map::new();
    for (k, v) in std::mem::take(&mut m) {
        let renamed = RENAMES
            .iter()
            .find(|(new, old)| if forward { k == *new } else { k == *old })
            .map(|(new, old)| if forward { *old } else { *new });
        out.insert(renamed.unwrap_or(&k).to_string(), v);
    }
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    out.insert("kind".into(), Value::String("Event".into()));
    Value::Object(out)
}

impl Strategy for EventsV1 {
    fn info(&self) -> &ResourceInfo {
        &INFO
    }
    fn storage_info(&self) -> Option<&'static ResourceInfo> {
        Some(&super::core::EVENT_INFO)
    }
    fn convert_to_storage(&self, obj: Value) -> Value {
        rename(obj, "v1", true)
    }
    fn convert_from_storage(&self, obj: Value) -> Value {
        rename(obj, "events.k8s.io/v1", false)
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        let ptr = match field {
            "regarding.kind" => "/regarding/kind",
            "regarding.namespace" => "/regarding/namespace",
            "regarding.name" => "/regarding/name",
            "regarding.uid" => "/regarding/uid",
            "reason" => "/reason",
            "type" => "/type",
            "reportingController" => "/reportingController",
            _ => return None,
        };
        Some(obj.pointer(ptr).and_then(Value::as_str).unwrap_or_default().to_string())
    }
}

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    all.push(Arc::new(EventsV1));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}, "regarding": {"name": "p"}, "note": "hi", "reason": "Started"});
        let core = EventsV1.convert_to_storage(v1.clone());
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "hi");
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(EventsV1.convert_from_storage(core), v1);
    }
}
