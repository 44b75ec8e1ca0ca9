//! autoscaling: HorizontalPodAutoscaler, in both the v1 shape (targetCPUUtilizationPercentage)
//! and the v2 shape (metrics), printed as upstream prints its internal (v2-like) type.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::Column;
use crate::docs;
use crate::quantity::{format_quantity, format_quantity_ptr};
use crate::value::{age, arr_at, get, int_at, is_set, name, opt_int, str_at};

pub(crate) fn columns(kind: &str) -> Option<&'static [Column]> {
    (kind == "HorizontalPodAutoscaler").then_some(HPA)
}

pub(crate) fn row(kind: &str, obj: &Value, now: Timestamp) -> Option<Vec<Value>> {
    (kind == "HorizontalPodAutoscaler").then(|| hpa(obj, now))
}

const HPA: &[Column] = &[
    Column::NAME,
    Column::new("Reference", "string", docs::HPA_SPEC_SCALE_TARGET_REF),
    Column::new("Targets", "string", docs::HPA_SPEC_METRICS),
    Column::new("MinPods", "string", docs::HPA_SPEC_MIN_REPLICAS),
    Column::new("MaxPods", "string", docs::HPA_SPEC_MAX_REPLICAS),
    Column::new("Replicas", "string", docs::HPA_STATUS_CURRENT_REPLICAS),
    Column::AGE,
];

/// The CPU target upstream defaults to when no metric is given.
const DEFAULT_CPU_UTILIZATION: i64 = 80;

fn hpa(obj: &Value, now: Timestamp) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        str_at(obj, &["spec", "scaleTargetRef", "kind"]),
        str_at(obj, &["spec", "scaleTargetRef", "name"])
    );
    let min_pods = opt_int(obj, &["spec", "minReplicas"]).unwrap_or(1);
    vec![
        name(obj),
        reference.into(),
        format_metrics(&metric_specs(obj), &metric_statuses(obj)).into(),
        min_pods.to_string().into(),
        int_at(obj, &["spec", "maxReplicas"]).into(),
        int_at(obj, &["status", "currentReplicas"]).into(),
        age(obj, now),
    ]
}

/// v2 `spec.metrics`; or the v1 CPU target; or upstream's default of 80% CPU.
fn metric_specs(obj: &Value) -> Vec<Value> {
    let metrics = arr_at(obj, &["spec", "metrics"]);
    if !metrics.is_empty() {
        return metrics.to_vec();
    }
    let target = opt_int(obj, &["spec", "targetCPUUtilizationPercentage"])
        .unwrap_or(DEFAULT_CPU_UTILIZATION);
    vec![
        json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}}),
    ]
}

/// v2 `status.currentMetrics`, or the v1 current CPU utilization.
fn metric_statuses(obj: &Value) -> Vec<Value> {
    let current = arr_at(obj, &["status", "currentMetrics"]);
    if !current.is_empty() {
        return current.to_vec();
    }
    match opt_int(obj, &["status", "currentCPUUtilizationPercentage"]) {
        Some(cpu) => vec![
            json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": cpu}}}),
        ],
        None => Vec::new(),
    }
}

/// "cpu: 45%/80%, memory: 100Mi/1Gi + 1 more..." (at most two shown).
fn format_metrics(specs: &[Value], statuses: &[Value]) -> String {
    const MAX: usize = 2;
    if specs.is_empty() {
        return "<none>".to_owned();
    }
    let mut list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| format_metric(spec, statuses.get(i)))
        .collect();
    let count = list.len();
    if count > MAX {
        list.truncate(MAX);
        format!("{} + {} more...", list.join(", "), count - MAX)
    } else {
        list.join(", ")
    }
}

fn format_metric(spec: &Value, status: Option<&Value>) -> String {
    // The status entry at the same index, if it carries this source.
    let current = |source: &str| {
        status
            .and_then(|s| get(s, &[source]))
            .filter(|v| !v.is_null())
    };
    match str_at(spec, &["type"]) {
        source_type @ ("External" | "Object") => {
            let source = if source_type == "External" {
                "external"
            } else {
                "object"
            };
            let target = get(spec, &[source, "target"]).unwrap_or(&Value::Null);
            if is_set(target, &["averageValue"]) {
                let now = current(source)
                    .filter(|c| is_set(c, &["current", "averageValue"]))
                    .map_or_else(
                        || "<unknown>".to_owned(),
                        |c| format_quantity(get(c, &["current", "averageValue"])),
                    );
                format!(
                    "{now}/{} (avg)",
                    format_quantity(get(target, &["averageValue"]))
                )
            } else {
                let now = current(source).map_or_else(
                    || "<unknown>".to_owned(),
                    |c| format_quantity_ptr(get(c, &["current", "value"])),
                );
                format!("{now}/{}", format_quantity_ptr(get(target, &["value"])))
            }
        }
        "Pods" => {
            let now = current("pods").map_or_else(
                || "<unknown>".to_owned(),
                |c| format_quantity_ptr(get(c, &["current", "averageValue"])),
            );
            format!(
                "{now}/{}",
                format_quantity_ptr(get(spec, &["pods", "target", "averageValue"]))
            )
        }
        source_type @ ("Resource" | "ContainerResource") => {
            let source = if source_type == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let resource = str_at(spec, &[source, "name"]);
            let target = get(spec, &[source, "target"]).unwrap_or(&Value::Null);
            if is_set(target, &["averageValue"]) {
                let now = current(source).map_or_else(
                    || "<unknown>".to_owned(),
                    |c| format_quantity_ptr(get(c, &["current", "averageValue"])),
                );
                format!(
                    "{resource}: {now}/{}",
                    format_quantity(get(target, &["averageValue"]))
                )
            } else {
                let now = current(source)
                    .and_then(|c| opt_int(c, &["current", "averageUtilization"]))
                    .map_or_else(|| "<unknown>".to_owned(), |u| format!("{u}%"));
                let want = opt_int(target, &["averageUtilization"])
                    .map_or_else(|| "<auto>".to_owned(), |u| format!("{u}%"));
                format!("{resource}: {now}/{want}")
            }
        }
        _ => "<unknown type>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{cells, headers};
    use serde_json::json;

    #[test]
    fn columns() {
        assert_eq!(
            headers("autoscaling", "HorizontalPodAutoscaler"),
            [
                "Name",
                "Reference",
                "Targets",
                "MinPods",
                "MaxPods",
                "Replicas",
                "Age"
            ]
        );
    }

    #[test]
    fn v1_shape() {
        let h = json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 2, "maxReplicas": 10, "targetCPUUtilizationPercentage": 50},
            "status": {"currentReplicas": 3, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 34}});
        assert_eq!(
            cells("autoscaling", "HorizontalPodAutoscaler", &h),
            [
                json!("web"),
                json!("Deployment/web"),
                json!("cpu: 34%/50%"),
                json!("2"),
                json!(10),
                json!(3),
                json!("60m")
            ]
        );
        let fresh = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "api"}, "maxReplicas": 4}});
        assert_eq!(
            cells("autoscaling", "HorizontalPodAutoscaler", &fresh)[1..6],
            [
                json!("Deployment/api"),
                json!("cpu: <unknown>/80%"),
                json!("1"),
                json!(4),
                json!(0)
            ]
        );
    }

    #[test]
    fn v2_shape() {
        let h = json!({"metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "StatefulSet", "name": "db"}, "minReplicas": 1, "maxReplicas": 5, "metrics": [
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1024Mi"}}},
                {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}},
                {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "30"}}}]},
            "status": {"currentReplicas": 2, "currentMetrics": [
                {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "512Mi"}}},
                {"type": "Pods", "pods": {"metric": {"name": "qps"}, "current": {"averageValue": "1500m"}}}]}});
        assert_eq!(
            cells("autoscaling", "HorizontalPodAutoscaler", &h)[2],
            json!("memory: 512Mi/1Gi, 1500m/1k + 1 more...")
        );
        let few = json!({"spec": {"metrics": [
            {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app", "target": {"type": "Utilization"}}},
            {"type": "Object", "object": {"target": {"type": "AverageValue", "averageValue": "2"}}}]}});
        assert_eq!(
            cells("autoscaling", "HorizontalPodAutoscaler", &few)[2],
            json!("cpu: <unknown>/<auto>, <unknown>/2 (avg)")
        );
        let odd = json!({"spec": {"metrics": [{"type": "Telepathy"}]}});
        assert_eq!(
            cells("autoscaling", "HorizontalPodAutoscaler", &odd)[2],
            json!("<unknown type>")
        );
    }
}
