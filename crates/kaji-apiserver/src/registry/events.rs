//! events.k8s.io/v1 Events are the same objects as core/v1 Events, stored once (as core/v1) and
//! converted on the way in and out, as upstream does: `kubectl describe` (core/v1) sees events
//! recorded through events.k8s.io/v1 (kube-rs, client-go's new recorder) and the other way round.

use super::{Strategy, info};
use kaji_api::{FieldError, ResourceInfo};
use serde_json::{Map, Value, json};
use std::sync::Arc;

struct EventsV1;

static INFO: ResourceInfo = info(
    "events.k8s.io",
    "v1",
    "Event",
    "events",
    "event",
    true,
    &["ev"],
    &[],
);

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
    let Value::Object(mut m) = obj else {
        return obj;
    };
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

const ZERO_TIME: &[&str] = &["", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000Z"];

fn text<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn unset_time(obj: &Value, ptr: &str) -> bool {
    ZERO_TIME.contains(&text(obj, ptr))
}

/// Upstream legacyValidateEvent plus the strict checks of ValidateEventCreate for
/// events.k8s.io/v1, on the core/v1 form (upstream validates the internal type, whose names
/// are core/v1's; the reporting controller is named as in events.k8s.io).
fn validate_v1(core: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ns = text(core, "/metadata/namespace");
    let involved_ns = text(core, "/involvedObject/namespace");
    if unset_time(core, "/eventTime") {
        errs.push(FieldError::required("eventTime", ""));
    } else {
        if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(FieldError::invalid(
                "involvedObject.namespace",
                &json!(involved_ns),
                "does not match event.namespace",
            ));
        }
        let controller = text(core, "/reportingComponent");
        if controller.is_empty() {
            errs.push(FieldError::required("reportingController", ""));
        }
        for m in kaji_api::validation::qualified_name(controller) {
            errs.push(FieldError::invalid(
                "reportingController",
                &json!(controller),
                &m,
            ));
        }
        for (ptr, field, limit) in [
            ("/reportingInstance", "reportingInstance", 128),
            ("/action", "action", 128),
            ("/reason", "reason", 128),
        ] {
            let v = text(core, ptr);
            if v.is_empty() {
                errs.push(FieldError::required(field, ""));
            } else if v.len() > limit {
                errs.push(FieldError::invalid(
                    field,
                    &json!(""),
                    &format!("can have at most {limit} characters"),
                ));
            }
        }
        if text(core, "/message").len() > 1024 {
            errs.push(FieldError::invalid(
                "message",
                &json!(""),
                "can have at most 1024 characters",
            ));
        }
    }
    if let Some(series) = core.get("series").filter(|s| !s.is_null()) {
        if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
            errs.push(FieldError::invalid(
                "series.count",
                &json!(""),
                "should be at least 2",
            ));
        }
        if unset_time(series, "/lastObservedTime") {
            errs.push(FieldError::required("series.lastObservedTime", ""));
        }
    }
    let kind = text(core, "/type");
    if kind != "Normal" && kind != "Warning" {
        errs.push(FieldError::invalid(
            "type",
            &json!(""),
            &format!("has invalid value: {kind}"),
        ));
    }
    for (ptr, field) in [
        ("/firstTimestamp", "deprecatedFirstTimestamp"),
        ("/lastTimestamp", "deprecatedLastTimestamp"),
    ] {
        if !unset_time(core, ptr) {
            errs.push(FieldError::invalid(field, &json!(""), "needs to be unset"));
        }
    }
    if core.get("count").and_then(Value::as_i64).unwrap_or(0) != 0 {
        errs.push(FieldError::invalid(
            "deprecatedCount",
            &json!(""),
            "needs to be unset",
        ));
    }
    if !text(core, "/source/component").is_empty() || !text(core, "/source/host").is_empty() {
        errs.push(FieldError::invalid(
            "deprecatedSource",
            &json!(""),
            "needs to be unset",
        ));
    }
    errs
}

impl Strategy for EventsV1 {
    fn info(&self) -> &ResourceInfo {
        &INFO
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_v1(&rename(obj.clone(), "v1", true))
    }
    /// Upstream ValidateEventUpdate for events.k8s.io/v1: the create checks, and what identifies
    /// the event may not change (a series grows through `series` only).
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let (n, o) = (
            rename(new.clone(), "v1", true),
            rename(old.clone(), "v1", true),
        );
        let mut errs = validate_v1(&n);
        for (ptr, field) in [
            ("/involvedObject", "involvedObject"),
            ("/reason", "reason"),
            ("/message", "message"),
            ("/source", "source"),
            ("/firstTimestamp", "firstTimestamp"),
            ("/lastTimestamp", "lastTimestamp"),
            ("/count", "count"),
            ("/type", "type"),
            ("/eventTime", "eventTime"),
            ("/action", "action"),
            ("/related", "related"),
            ("/reportingComponent", "reportingController"),
            ("/reportingInstance", "reportingInstance"),
        ] {
            errs.extend(super::immutable(&n, &o, ptr, field));
        }
        errs
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
        Some(
            obj.pointer(ptr)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        )
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
