//! HorizontalPodAutoscalers: served as autoscaling/v2 (stored) and autoscaling/v1 (converted on
//! the way in and out, as upstream does). v1 only has a CPU utilization target; what else a v2
//! object holds travels in upstream's annotations, so v1 round-trips without losing it:
//! `autoscaling.alpha.kubernetes.io/metrics` (other metric specs), `.../behavior`,
//! `.../current-metrics` (other metric statuses) and `.../conditions`.
//!
//! Defaults (upstream's v2 SetDefaults): minReplicas 1, a CPU target of 80% when there are no
//! metrics, and a given `behavior` completed with the default rules (scale-up: max of 4 pods and
//! 100% per 15 s; scale-down: 100% per 15 s, stabilization left to the controller's flag).
//! Validation as upstream's ValidateHorizontalPodAutoscaler.

use super::{Strategy, info};
use kaji_api::{FieldError, ResourceInfo};
use serde_json::{Map, Value, json};
use std::sync::Arc;

static V2: ResourceInfo = ResourceInfo {
    categories: &["all"],
    ..info(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        true,
        &["hpa"],
        &["status"],
    )
};
static V1: ResourceInfo = ResourceInfo {
    categories: &["all"],
    ..info(
        "autoscaling",
        "v1",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        true,
        &["hpa"],
        &["status"],
    )
};

pub const METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
pub const CURRENT_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
pub const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
pub const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";

struct HpaV2;
struct HpaV1;

fn default_v2(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("minReplicas").is_none_or(Value::is_null) {
        spec.insert("minReplicas".into(), json!(1));
    }
    if spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        spec.insert("metrics".into(), json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]));
    }
    if let Some(b) = spec.get_mut("behavior").and_then(Value::as_object_mut) {
        let up = b.entry("scaleUp").or_insert_with(|| json!({}));
        if up.is_null() {
            *up = json!({});
        }
        super::default_key(up, "stabilizationWindowSeconds", json!(0));
        super::default_key(up, "selectPolicy", json!("Max"));
        super::default_key(
            up,
            "policies",
            json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]),
        );
        let down = b.entry("scaleDown").or_insert_with(|| json!({}));
        if down.is_null() {
            *down = json!({});
        }
        super::default_key(down, "selectPolicy", json!("Max"));
        super::default_key(
            down,
            "policies",
            json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
        );
    }
}

fn int(v: &Value) -> Option<i64> {
    v.as_i64()
}

fn validate_target(errs: &mut Vec<FieldError>, path: &str, t: &Value, allow_value: bool) {
    let ty = t["type"].as_str().unwrap_or_default();
    match ty {
        "Utilization" => match t.get("averageUtilization").filter(|v| !v.is_null()) {
            None => errs.push(FieldError::required(
                format!("{path}.averageUtilization"),
                "must set either a target raw value or a target utilization",
            )),
            Some(u) if int(u).is_none_or(|u| u <= 0) => errs.push(FieldError::invalid(
                format!("{path}.averageUtilization"),
                u,
                "must be greater than 0",
            )),
            _ => {}
        },
        "AverageValue" => {
            if t.get("averageValue").is_none_or(Value::is_null) {
                errs.push(FieldError::required(
                    format!("{path}.averageValue"),
                    "must set either a target raw value or a target utilization",
                ));
            }
        }
        "Value" if allow_value => {
            if t.get("value").is_none_or(Value::is_null) {
                errs.push(FieldError::required(
                    format!("{path}.value"),
                    "must set either a target raw value or a target utilization",
                ));
            }
        }
        "" => errs.push(FieldError::required(
            format!("{path}.type"),
            "must specify a metric target type",
        )),
        other => errs.push(FieldError::invalid(
            format!("{path}.type"),
            &json!(other),
            "must be either Utilization, Value, or AverageValue",
        )),
    }
}

fn validate_rules(errs: &mut Vec<FieldError>, path: &str, r: &Value) {
    if r.is_null() {
        return;
    }
    if let Some(w) = r.get("stabilizationWindowSeconds").filter(|w| !w.is_null())
        && int(w).is_none_or(|w| !(0..=3600).contains(&w))
    {
        errs.push(FieldError::invalid(
            format!("{path}.stabilizationWindowSeconds"),
            w,
            "must be less than or equal to 3600",
        ));
    }
    if let Some(s) = r.get("selectPolicy").and_then(Value::as_str)
        && !["Max", "Min", "Disabled"].contains(&s)
    {
        errs.push(FieldError::not_supported(
            format!("{path}.selectPolicy"),
            s,
            &["Disabled", "Max", "Min"],
        ));
    }
    let policies = r["policies"].as_array().cloned().unwrap_or_default();
    if policies.is_empty() && r.get("policies").is_some() {
        errs.push(FieldError::required(
            format!("{path}.policies"),
            "must specify at least one Policy",
        ));
    }
    for (i, p) in policies.iter().enumerate() {
        let pp = format!("{path}.policies[{i}]");
        match p["type"].as_str() {
            Some("Pods" | "Percent") => {}
            Some(other) => errs.push(FieldError::not_supported(
                format!("{pp}.type"),
                other,
                &["Percent", "Pods"],
            )),
            None => errs.push(FieldError::required(format!("{pp}.type"), "")),
        }
        if int(&p["periodSeconds"]).is_none_or(|s| s <= 0) {
            errs.push(FieldError::invalid(
                format!("{pp}.periodSeconds"),
                &p["periodSeconds"],
                "must be greater than zero",
            ));
        } else if int(&p["periodSeconds"]).is_some_and(|s| s > 1800) {
            errs.push(FieldError::invalid(
                format!("{pp}.periodSeconds"),
                &p["periodSeconds"],
                "must be less than or equal to 1800",
            ));
        }
        if int(&p["value"]).is_none_or(|v| v <= 0) {
            errs.push(FieldError::invalid(
                format!("{pp}.value"),
                &p["value"],
                "must be greater than zero",
            ));
        }
    }
}

/// Upstream ValidateHorizontalPodAutoscaler (v2 shape).
fn validate_v2(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = &obj["spec"];
    let r = &spec["scaleTargetRef"];
    match r["kind"].as_str() {
        None | Some("") => errs.push(FieldError::required("spec.scaleTargetRef.kind", "")),
        Some(k) if k.contains('/') || k.contains('%') => errs.push(FieldError::invalid(
            "spec.scaleTargetRef.kind",
            &json!(k),
            "may not contain '/'",
        )),
        _ => {}
    }
    match r["name"].as_str() {
        None | Some("") => errs.push(FieldError::required("spec.scaleTargetRef.name", "")),
        Some(n) if n.contains('/') || n.contains('%') || n == "." || n == ".." => errs.push(
            FieldError::invalid("spec.scaleTargetRef.name", &json!(n), "may not contain '/'"),
        ),
        _ => {}
    }
    let min = spec.get("minReplicas").and_then(int);
    if let Some(m) = min
        && m < 1
    {
        errs.push(FieldError::invalid(
            "spec.minReplicas",
            &json!(m),
            "must be greater than or equal to 1",
        ));
    }
    let max = spec.get("maxReplicas").and_then(int).unwrap_or(0);
    if max < 1 {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than or equal to 1",
        ));
    }
    if let Some(m) = min
        && max < m
    {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than or equal to `minReplicas`",
        ));
    }
    for (i, m) in spec["metrics"].as_array().into_iter().flatten().enumerate() {
        let path = format!("spec.metrics[{i}]");
        let ty = m["type"].as_str().unwrap_or_default();
        let (key, needs_name) = match ty {
            "Resource" => ("resource", true),
            "ContainerResource" => ("containerResource", true),
            "Pods" => ("pods", false),
            "Object" => ("object", false),
            "External" => ("external", false),
            "" => {
                errs.push(FieldError::required(
                    format!("{path}.type"),
                    "must specify a metric source type",
                ));
                continue;
            }
            other => {
                errs.push(FieldError::not_supported(
                    format!("{path}.type"),
                    other,
                    &[
                        "ContainerResource",
                        "External",
                        "Object",
                        "Pods",
                        "Resource",
                    ],
                ));
                continue;
            }
        };
        let src = &m[key];
        if src.is_null() {
            errs.push(FieldError::required(
                format!("{path}.{key}"),
                "must populate information for the given metric source",
            ));
            continue;
        }
        if needs_name && src["name"].as_str().is_none_or(str::is_empty) {
            errs.push(FieldError::required(
                format!("{path}.{key}.name"),
                "must specify a resource name",
            ));
        }
        if ty == "ContainerResource" && src["container"].as_str().is_none_or(str::is_empty) {
            errs.push(FieldError::required(
                format!("{path}.{key}.container"),
                "must specify a container",
            ));
        }
        validate_target(
            &mut errs,
            &format!("{path}.{key}.target"),
            &src["target"],
            !needs_name,
        );
    }
    let b = &spec["behavior"];
    validate_rules(&mut errs, "spec.behavior.scaleUp", &b["scaleUp"]);
    validate_rules(&mut errs, "spec.behavior.scaleDown", &b["scaleDown"]);
    errs
}

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
    fn default(&self, obj: &mut Value) {
        default_v2(obj);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_v2(obj)
    }
}

fn is_cpu_utilization(m: &Value) -> bool {
    m["type"] == "Resource"
        && m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
        && m.pointer("/resource/target/type").and_then(Value::as_str) == Some("Utilization")
}

/// A v2 MetricSpec in the v1 annotation's shape (the old v2beta1 fields: targetAverageUtilization, ...).
fn spec_to_v1(m: &Value) -> Value {
    let mut out = m.clone();
    for key in ["resource", "containerResource"] {
        if let Some(src) = out.get_mut(key).and_then(Value::as_object_mut)
            && let Some(t) = src.remove("target")
        {
            if let Some(u) = t.get("averageUtilization").filter(|v| !v.is_null()) {
                src.insert("targetAverageUtilization".into(), u.clone());
            }
            if let Some(v) = t.get("averageValue").filter(|v| !v.is_null()) {
                src.insert("targetAverageValue".into(), v.clone());
            }
        }
    }
    out
}

fn spec_from_v1(m: &Value) -> Value {
    let mut out = m.clone();
    for key in ["resource", "containerResource"] {
        if let Some(src) = out.get_mut(key).and_then(Value::as_object_mut) {
            let u = src.remove("targetAverageUtilization");
            let v = src.remove("targetAverageValue");
            if let Some(u) = u {
                src.insert(
                    "target".into(),
                    json!({"type": "Utilization", "averageUtilization": u}),
                );
            } else if let Some(v) = v {
                src.insert(
                    "target".into(),
                    json!({"type": "AverageValue", "averageValue": v}),
                );
            }
        }
    }
    out
}

fn status_to_v1(m: &Value) -> Value {
    let mut out = m.clone();
    for key in ["resource", "containerResource"] {
        if let Some(src) = out.get_mut(key).and_then(Value::as_object_mut)
            && let Some(c) = src.remove("current")
        {
            if let Some(u) = c.get("averageUtilization").filter(|v| !v.is_null()) {
                src.insert("currentAverageUtilization".into(), u.clone());
            }
            if let Some(v) = c.get("averageValue").filter(|v| !v.is_null()) {
                src.insert("currentAverageValue".into(), v.clone());
            }
        }
    }
    out
}

fn status_from_v1(m: &Value) -> Value {
    let mut out = m.clone();
    for key in ["resource", "containerResource"] {
        if let Some(src) = out.get_mut(key).and_then(Value::as_object_mut) {
            let mut current = Map::new();
            if let Some(u) = src.remove("currentAverageUtilization") {
                current.insert("averageUtilization".into(), u);
            }
            if let Some(v) = src.remove("currentAverageValue") {
                current.insert("averageValue".into(), v);
            }
            src.insert("current".into(), Value::Object(current));
        }
    }
    out
}

fn annotations(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    super::child(super::child(obj, "metadata")?, "annotations")?.as_object_mut()
}

/// Takes an annotation holding JSON.
fn take_json(obj: &mut Value, key: &str) -> Option<Value> {
    let text = annotations(obj)?.remove(key)?;
    serde_json::from_str(text.as_str()?).ok()
}

fn put_json(obj: &mut Value, key: &str, v: &Value) {
    if let Some(a) = annotations(obj) {
        a.insert(key.into(), json!(v.to_string()));
    }
}

fn drop_empty_annotations(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut)
        && meta
            .get("annotations")
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
    {
        meta.remove("annotations");
    }
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
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec") {
            super::default_key(spec, "minReplicas", json!(1));
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = validate_v2(&self.convert_to_storage(obj.clone()));
        if let Some(t) = obj
            .pointer("/spec/targetCPUUtilizationPercentage")
            .filter(|t| !t.is_null())
            && int(t).is_none_or(|t| t < 1)
        {
            errs.retain(|e| !e.field.starts_with("spec.metrics"));
            errs.push(FieldError::invalid(
                "spec.targetCPUUtilizationPercentage",
                t,
                "must be greater than or equal to 1",
            ));
        }
        errs
    }
    fn storage_info(&self) -> Option<&'static ResourceInfo> {
        Some(&V2)
    }
    fn convert_to_storage(&self, mut obj: Value) -> Value {
        obj["apiVersion"] = json!("autoscaling/v2");
        let other_metrics = take_json(&mut obj, METRICS_ANNOTATION);
        let behavior = take_json(&mut obj, BEHAVIOR_ANNOTATION);
        let other_current = take_json(&mut obj, CURRENT_METRICS_ANNOTATION);
        let conditions = take_json(&mut obj, CONDITIONS_ANNOTATION);
        drop_empty_annotations(&mut obj);
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            let mut metrics = Vec::new();
            if let Some(t) = spec
                .remove("targetCPUUtilizationPercentage")
                .filter(|t| !t.is_null())
            {
                metrics.push(json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": t}}}));
            }
            metrics.extend(
                other_metrics
                    .as_ref()
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(spec_from_v1),
            );
            if !metrics.is_empty() {
                spec.insert("metrics".into(), json!(metrics));
            }
            if let Some(b) = behavior {
                spec.insert("behavior".into(), b);
            }
        }
        if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
            let mut current = Vec::new();
            if let Some(c) = status
                .remove("currentCPUUtilizationPercentage")
                .filter(|c| !c.is_null())
            {
                current.push(json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": c}}}));
            }
            current.extend(
                other_current
                    .as_ref()
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(status_from_v1),
            );
            if !current.is_empty() {
                status.insert("currentMetrics".into(), json!(current));
            }
            if let Some(c) = conditions {
                status.insert("conditions".into(), c);
            }
        }
        obj
    }
    fn convert_from_storage(&self, mut obj: Value) -> Value {
        obj["apiVersion"] = json!("autoscaling/v1");
        let mut other_metrics = Vec::new();
        let mut behavior = None;
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            let metrics = spec
                .remove("metrics")
                .and_then(|m| m.as_array().cloned())
                .unwrap_or_default();
            behavior = spec.remove("behavior").filter(|b| !b.is_null());
            let mut cpu = None;
            for m in metrics {
                if cpu.is_none() && is_cpu_utilization(&m) {
                    cpu = m.pointer("/resource/target/averageUtilization").cloned();
                } else {
                    other_metrics.push(spec_to_v1(&m));
                }
            }
            if let Some(t) = cpu {
                spec.insert("targetCPUUtilizationPercentage".into(), t);
            }
        }
        let mut other_current = Vec::new();
        let mut conditions = None;
        if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
            let current = status
                .remove("currentMetrics")
                .and_then(|m| m.as_array().cloned())
                .unwrap_or_default();
            conditions = status
                .remove("conditions")
                .filter(|c| c.as_array().is_some_and(|a| !a.is_empty()));
            let mut cpu = None;
            for m in current {
                if cpu.is_none()
                    && m["type"] == "Resource"
                    && m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
                {
                    cpu = m.pointer("/resource/current/averageUtilization").cloned();
                    if cpu.is_some() {
                        continue;
                    }
                }
                other_current.push(status_to_v1(&m));
            }
            if let Some(c) = cpu {
                status.insert("currentCPUUtilizationPercentage".into(), c);
            }
        }
        if !other_metrics.is_empty() {
            put_json(&mut obj, METRICS_ANNOTATION, &json!(other_metrics));
        }
        if let Some(b) = behavior {
            put_json(&mut obj, BEHAVIOR_ANNOTATION, &b);
        }
        if !other_current.is_empty() {
            put_json(&mut obj, CURRENT_METRICS_ANNOTATION, &json!(other_current));
        }
        if let Some(c) = conditions {
            put_json(&mut obj, CONDITIONS_ANNOTATION, &c);
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
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            50
        );
        assert_eq!(HpaV1.convert_from_storage(v2), v1);
    }

    #[test]
    fn v2_fields_survive_a_v1_round_trip() {
        let v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d"}, "minReplicas": 1, "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 10}}},
            "status": {"currentReplicas": 1, "desiredReplicas": 1,
                "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 20, "averageValue": "100m"}}},
                    {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "50Mi"}}}],
                "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}]}});
        let v1 = HpaV1.convert_from_storage(v2.clone());
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 20);
        let metrics: Value = serde_json::from_str(
            v1["metadata"]["annotations"][METRICS_ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(metrics[0]["resource"]["targetAverageValue"], "100Mi");
        let back = HpaV1.convert_to_storage(v1);
        assert_eq!(back["spec"], v2["spec"]);
        assert_eq!(back["status"]["conditions"], v2["status"]["conditions"]);
        assert_eq!(
            back["status"]["currentMetrics"][1],
            v2["status"]["currentMetrics"][1]
        );
        assert!(back["metadata"].get("annotations").is_none());
    }

    #[test]
    fn validation_gives_upstream_causes() {
        let bad = json!({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"name": "d"}, "minReplicas": 5, "maxReplicas": 2}});
        let errs = validate_v2(&bad);
        let fields: Vec<(&str, &str)> = errs
            .iter()
            .map(|e| (e.field.as_str(), e.detail.as_str()))
            .collect();
        assert!(
            fields.iter().any(|(f, _)| *f == "spec.scaleTargetRef.kind"),
            "{fields:?}"
        );
        assert!(
            fields.iter().any(|(f, m)| *f == "spec.maxReplicas"
                && m.contains("must be greater than or equal to `minReplicas`")),
            "{fields:?}"
        );
    }

    #[test]
    fn defaults_fill_behavior_and_metrics() {
        let mut obj = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d"}, "maxReplicas": 3, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 5}}}});
        default_v2(&mut obj);
        assert_eq!(obj["spec"]["minReplicas"], 1);
        assert_eq!(
            obj["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert_eq!(
            obj["spec"]["behavior"]["scaleUp"]["policies"][0]["value"],
            4
        );
        assert_eq!(
            obj["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
            5
        );
        assert_eq!(obj["spec"]["behavior"]["scaleDown"]["selectPolicy"], "Max");
    }
}
