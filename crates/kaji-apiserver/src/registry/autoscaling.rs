//! HorizontalPodAutoscalers: served as autoscaling/v2 (stored) and autoscaling/v1 (converted on
//! the way in and out, as upstream does). v1 only knows a CPU utilization target; converting a
//! v2 object with other metrics to v1 shows just its CPU target.

use super::{Strategy, info};
use kaji_api::ResourceInfo;
use serde_json::{Value, json};
use std::sync::Arc;

static V2: ResourceInfo = ResourceInfo {
    categories: &["all"],
    ..info("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", true, &["hpa"], &["status"])
};
static V1: ResourceInfo = ResourceInfo {
    categories: &["all"],
    ..info("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", true, &["hpa"], &["status"])
};

struct HpaV2;
struct HpaV1;

impl Strategy for HpaV2 {
    fn info(&self) -> &ResourceInfo {
        &V2
    }
    fn has_status(&self) -> bool {
        true
    }
    fn tracks_generation(&self) -> bool {
        true
    }
}

fn cpu_target(spec: &Value) -> Option<Value> {
    spec.get("metrics")?.as_array()?.iter().find_map(|m| {
        (m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
            && m.pointer("/resource/target/type").and_then(Value::as_str) == Some("Utilization"))
        .then(|| m.pointer("/resource/target/averageUtilization").cloned())
        .flatten()
    })
}

impl Strategy for HpaV1 {
    fn info(&self) -> &ResourceInfo {
        &V1
    }
    fn has_status(&self) -> bool {
        true
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn storage_info(&self) -> Option<&'static ResourceInfo> {
        Some(&V2)
    }
    fn convert_to_storage(&self, mut obj: Value) -> Value {
        obj["apiVersion"] = json!("autoscaling/v2");
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
            && let Some(t) = spec.remove("targetCPUUtilizationPercentage")
        {
            spec.insert(
                "metrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": t}}}]),
            );
        }
        if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut)
            && let Some(c) = status.remove("currentCPUUtilizationPercentage")
        {
            status.insert("currentMetrics".into(), json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": c}}}]));
        }
        obj
    }
    fn convert_from_storage(&self, mut obj: Value) -> Value {
        obj["apiVersion"] = json!("autoscaling/v1");
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            let target = cpu_target(&Value::Object(spec.clone()));
            spec.remove("metrics");
            spec.remove("behavior");
            if let Some(t) = target {
                spec.insert("targetCPUUtilizationPercentage".into(), t);
            }
        }
        if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
            let current = status.get("currentMetrics").and_then(Value::as_array).and_then(|ms| {
                ms.iter().find_map(|m| {
                    (m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu"))
                        .then(|| m.pointer("/resource/current/averageUtilization").cloned())
                        .flatten()
                })
            });
            status.remove("currentMetrics");
            status.remove("conditions");
            if let Some(c) = current {
                status.insert("currentCPUUtilizationPercentage".into(), c);
            }
        }
        obj
    }
}

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    all.push(Arc::new(HpaV2));
    all.push(Arc::new(HpaV1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_round_trip() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d"}, "maxReplicas": 5, "targetCPUUtilizationPercentage": 50}});
        let v2 = HpaV1.convert_to_storage(v1.clone());
        assert_eq!(v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 50);
        assert_eq!(HpaV1.convert_from_storage(v2), v1);
    }
}
