//! Nodes: cluster-scoped, status written by the kubelet, `spec.unschedulable` field selector.

use crate::registry::{Strategy, info};
use kaji_api::ResourceInfo;
use serde_json::Value;

pub struct NodeStrategy;

static INFO: ResourceInfo = info("", "v1", "Node", "nodes", "node", false, &["no"], &["status", "proxy"]);

impl Strategy for NodeStrategy {
    fn info(&self) -> &ResourceInfo {
        &INFO
    }
    fn has_status(&self) -> bool {
        true
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        match field {
            "spec.unschedulable" => {
                Some(obj.pointer("/spec/unschedulable").and_then(Value::as_bool).unwrap_or(false).to_string())
            }
            _ => None,
        }
    }
}
