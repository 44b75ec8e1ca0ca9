//! core/v1 Events: field selectors on the involved object, reason, source and type.

use crate::registry::{Strategy, info, str_at};
use kaji_api::{FieldError, ResourceInfo};
use serde_json::Value;

pub struct EventStrategy;

pub static INFO: ResourceInfo = info("", "v1", "Event", "events", "event", true, &["ev"], &[]);

impl Strategy for EventStrategy {
    fn info(&self) -> &ResourceInfo {
        &INFO
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let ns = str_at(obj, "/metadata/namespace").unwrap_or_default();
        let involved = str_at(obj, "/involvedObject/namespace").unwrap_or_default();
        if !involved.is_empty() && involved != ns {
            errs.push(FieldError::invalid("involvedObject.namespace", &Value::String(involved.into()), "does not match event.namespace"));
        }
        errs
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        let ptr = match field {
            "involvedObject.kind" => "/involvedObject/kind",
            "involvedObject.namespace" => "/involvedObject/namespace",
            "involvedObject.name" => "/involvedObject/name",
            "involvedObject.uid" => "/involvedObject/uid",
            "involvedObject.apiVersion" => "/involvedObject/apiVersion",
            "involvedObject.resourceVersion" => "/involvedObject/resourceVersion",
            "involvedObject.fieldPath" => "/involvedObject/fieldPath",
            "reason" => "/reason",
            "reportingComponent" => "/reportingComponent",
            "source" => "/source/component",
            "type" => "/type",
            _ => return None,
        };
        Some(str_at(obj, ptr).unwrap_or_default().to_string())
    }
}
