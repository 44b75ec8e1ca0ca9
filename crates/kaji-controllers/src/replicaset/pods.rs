//! What a controller needs to know about a pod: whether it is active, ready, available, and
//! which of two pods to delete first (upstream pkg/controller/controller_utils.go, pkg/api/v1/pod).

use k8s_openapi::api::core::v1::Pod;
use std::cmp::Ordering;

/// Not finished and not being deleted (upstream `IsPodActive`).
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// When the pod's Ready condition turned True, if it is True.
pub fn ready_since(pod: &Pod) -> Option<Option<jiff::Timestamp>> {
    let cond = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (cond.status == "True").then(|| cond.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` (upstream `IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => since.as_second() + i64::from(min_ready_seconds) <= now.as_second(),
    }
}

/// Seconds until a ready pod becomes available, if it is ready but not yet available.
pub fn seconds_until_available(
    pod: &Pod,
    min_ready_seconds: i32,
    now: jiff::Timestamp,
) -> Option<i64> {
    let since = ready_since(pod)??;
    let left = since.as_second() + i64::from(min_ready_seconds) - now.as_second();
    (left > 0).then_some(left)
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    }
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().map(|c| c.restart_count).max())
        .unwrap_or(0)
}

/// Which pod to delete first when scaling down (upstream `ActivePods` ordering): `Less` means
/// `a` goes before `b`. Unscheduled before scheduled, Pending before Unknown before Running,
/// not ready before ready, ready for less time first, more restarts first, newer first.
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let node = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    node(a)
        .cmp(&node(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(
            || match (ready_since(a).flatten(), ready_since(b).flatten()) {
                // Both ready: the one ready for less time (later transition) first.
                (Some(ta), Some(tb)) => tb.cmp(&ta),
                _ => Ordering::Equal,
            },
        )
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| {
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(b).cmp(&created(a))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("a pod")
    }

    #[test]
    fn deletes_least_useful_first() {
        let unscheduled =
            pod(json!({"metadata": {"name": "a", "creationTimestamp": "2024-01-01T00:00:00Z"}}));
        let pending = pod(
            json!({"metadata": {"name": "b"}, "spec": {"containers": [], "nodeName": "n"}, "status": {"phase": "Pending"}}),
        );
        let running_not_ready = pod(
            json!({"metadata": {"name": "c"}, "spec": {"containers": [], "nodeName": "n"}, "status": {"phase": "Running"}}),
        );
        let ready_old = pod(
            json!({"metadata": {"name": "d"}, "spec": {"containers": [], "nodeName": "n"}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}}),
        );
        let ready_new = pod(
            json!({"metadata": {"name": "e"}, "spec": {"containers": [], "nodeName": "n"}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-06-01T00:00:00Z"}]}}),
        );
        let mut pods = [
            ready_old,
            ready_new,
            running_not_ready,
            pending,
            unscheduled,
        ];
        pods.sort_by(deletion_order);
        let names: Vec<_> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["a", "b", "c", "e", "d"]);
    }

    #[test]
    fn availability_waits_min_ready_seconds() {
        let p = pod(
            json!({"metadata": {"name": "d"}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}}),
        );
        let t0: jiff::Timestamp = "2024-01-01T00:00:05Z".parse().expect("time");
        assert!(is_available(&p, 0, t0));
        assert!(is_available(&p, 5, t0));
        assert!(!is_available(&p, 10, t0));
        assert_eq!(seconds_until_available(&p, 10, t0), Some(5));
    }
}
