//! Pods: READY counts (sidecar init containers included), the STATUS reason logic
//! (Init:0/1, CrashLoopBackOff, Completed, Terminating, NodeLost -> Unknown, ...) and RESTARTS
//! with the time of the last restart, as upstream's `printPod`.

use std::collections::HashSet;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::Column;
use crate::docs;
use crate::duration::{parse_time, since};
use crate::value::{age, arr_at, bool_at, get, int_at, is_deleting, is_set, name, or_none, str_at};

pub(crate) const COLUMNS: &[Column] = &[
    Column::NAME,
    Column::new(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    Column::new(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
    ),
    Column::new(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    Column::AGE,
    Column::wide("IP", "string", docs::POD_STATUS_POD_IP),
    Column::wide("Node", "string", docs::POD_SPEC_NODE_NAME),
    Column::wide(
        "Nominated Node",
        "string",
        docs::POD_STATUS_NOMINATED_NODE_NAME,
    ),
    Column::wide("Readiness Gates", "string", docs::POD_SPEC_READINESS_GATES),
];

/// The reason a pod on an unreachable node is deleted with (`node.NodeUnreachablePodReason`).
const NODE_LOST: &str = "NodeLost";

pub(crate) fn row(pod: &Value, now: Timestamp) -> Vec<Value> {
    let spec_init = arr_at(pod, &["spec", "initContainers"]);
    // Sidecars: init containers with restartPolicy Always keep running and count as containers.
    let sidecars: HashSet<&str> = spec_init
        .iter()
        .filter(|c| str_at(c, &["restartPolicy"]) == "Always")
        .map(|c| str_at(c, &["name"]))
        .collect();
    let sidecar_count = spec_init
        .iter()
        .filter(|c| str_at(c, &["restartPolicy"]) == "Always")
        .count();
    let total = arr_at(pod, &["spec", "containers"]).len() + sidecar_count;
    let mut ready = 0usize;
    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;

    let phase = str_at(pod, &["status", "phase"]);
    let mut reason = match str_at(pod, &["status", "reason"]) {
        "" => phase.to_owned(),
        r => r.to_owned(),
    };
    let conditions = arr_at(pod, &["status", "conditions"]);
    if conditions.iter().any(|c| {
        str_at(c, &["type"]) == "PodScheduled" && str_at(c, &["reason"]) == "SchedulingGated"
    }) {
        reason = "SchedulingGated".to_owned();
    }

    let mut initializing = false;
    for (i, status) in arr_at(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        let count = int_at(status, &["restartCount"]);
        restarts += count;
        let finished = last_termination(status);
        last_restart = later(last_restart, finished);
        let is_sidecar = sidecars.contains(str_at(status, &["name"]));
        if is_sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = later(last_sidecar_restart, finished);
        }
        let terminated = get(status, &["state", "terminated"]).filter(|t| t.is_object());
        let waiting = get(status, &["state", "waiting"]).filter(|w| w.is_object());
        if terminated.is_some_and(|t| int_at(t, &["exitCode"]) == 0) {
            continue;
        }
        if is_sidecar && bool_at(status, &["started"]) {
            if bool_at(status, &["ready"]) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            // Initialization failed.
            reason = match str_at(t, &["reason"]) {
                "" if int_at(t, &["signal"]) != 0 => {
                    format!("Init:Signal:{}", int_at(t, &["signal"]))
                }
                "" => format!("Init:ExitCode:{}", int_at(t, &["exitCode"])),
                r => format!("Init:{r}"),
            };
        } else if let Some(w) =
            waiting.filter(|w| !matches!(str_at(w, &["reason"]), "" | "PodInitializing"))
        {
            reason = format!("Init:{}", str_at(w, &["reason"]));
        } else {
            reason = format!("Init:{i}/{}", spec_init.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_is_true(conditions, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for status in arr_at(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts += int_at(status, &["restartCount"]);
            last_restart = later(last_restart, last_termination(status));
            let terminated = get(status, &["state", "terminated"]).filter(|t| t.is_object());
            let waiting_reason = get(status, &["state", "waiting"])
                .filter(|w| w.is_object())
                .map(|w| str_at(w, &["reason"]))
                .unwrap_or("");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_owned();
            } else if let Some(t) = terminated {
                reason = match str_at(t, &["reason"]) {
                    "" if int_at(t, &["signal"]) != 0 => {
                        format!("Signal:{}", int_at(t, &["signal"]))
                    }
                    "" => format!("ExitCode:{}", int_at(t, &["exitCode"])),
                    r => r.to_owned(),
                };
            } else if bool_at(status, &["ready"]) && is_set(status, &["state", "running"]) {
                has_running = true;
                ready += 1;
            }
        }
        // A pod with a container still running is not "Completed".
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| str_at(c, &["type"]) == "Ready" && str_at(c, &["status"]) == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_owned();
        }
    }

    if is_deleting(pod) && str_at(pod, &["status", "reason"]) == NODE_LOST {
        reason = "Unknown".to_owned();
    } else if is_deleting(pod) && !matches!(phase, "Succeeded" | "Failed") {
        reason = "Terminating".to_owned();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), now)),
        _ => restarts.to_string(),
    };

    let pod_ip = arr_at(pod, &["status", "podIPs"]).first().map_or_else(
        || str_at(pod, &["status", "podIP"]),
        |ip| str_at(ip, &["ip"]),
    );
    let gates = arr_at(pod, &["spec", "readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let true_gates = gates
            .iter()
            .filter(|g| {
                let wanted = str_at(g, &["conditionType"]);
                conditions
                    .iter()
                    .find(|c| str_at(c, &["type"]) == wanted)
                    .is_some_and(|c| str_at(c, &["status"]) == "True")
            })
            .count();
        format!("{true_gates}/{}", gates.len())
    };

    vec![
        name(pod),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts_cell.into(),
        age(pod, now),
        or_none(pod_ip).into(),
        or_none(str_at(pod, &["spec", "nodeName"])).into(),
        or_none(str_at(pod, &["status", "nominatedNodeName"])).into(),
        readiness_gates.into(),
    ]
}

/// `Completed` row conditions for pods that have finished, as upstream marks them.
pub(crate) fn row_conditions(pod: &Value) -> Vec<Value> {
    match str_at(pod, &["status", "phase"]) {
        "Succeeded" => vec![
            json!({"type": "Completed", "status": "True", "reason": "Succeeded",
                                   "message": "The pod has completed successfully."}),
        ],
        "Failed" => vec![
            json!({"type": "Completed", "status": "True", "reason": "Failed",
                                "message": "The pod failed."}),
        ],
        _ => Vec::new(),
    }
}

fn last_termination(status: &Value) -> Option<Timestamp> {
    parse_time(get(status, &["lastState", "terminated", "finishedAt"]))
}

fn later(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The first condition of this type decides (upstream's `isPodInitializedConditionTrue`).
fn condition_is_true(conditions: &[Value], type_: &str) -> bool {
    conditions
        .iter()
        .find(|c| str_at(c, &["type"]) == type_)
        .is_some_and(|c| str_at(c, &["status"]) == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{cells, headers};

    fn pod(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "p", "creationTimestamp": "2024-05-01T11:55:00Z"}, "spec": spec, "status": status})
    }

    fn ready_status_restarts(p: &Value) -> (String, String, String) {
        let c = cells("", "Pod", p);
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        (s(&c[1]), s(&c[2]), s(&c[3]))
    }

    fn two_containers() -> Value {
        json!({"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"})
    }

    #[test]
    fn columns() {
        assert_eq!(
            headers("", "Pod"),
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP*",
                "Node*",
                "Nominated Node*",
                "Readiness Gates*"
            ]
        );
    }

    #[test]
    fn running_pod_full_row() {
        let p = json!({
            "metadata": {"name": "web-1", "creationTimestamp": "2024-05-01T11:55:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "node-1",
                     "readinessGates": [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/x"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}],
                "conditions": [{"type": "Ready", "status": "True"}, {"type": "example.com/lb", "status": "True"}],
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 3, "state": {"running": {"startedAt": "2024-05-01T11:56:00Z"}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:55:00Z"}}},
                    {"name": "b", "ready": false, "restartCount": 0, "state": {"running": {}}}
                ]}
        });
        assert_eq!(
            cells("", "Pod", &p),
            [
                json!("web-1"),
                json!("1/2"),
                json!("Running"),
                json!("3 (5m ago)"),
                json!("5m"),
                json!("10.0.0.5"),
                json!("node-1"),
                json!("<none>"),
                json!("1/2")
            ]
        );
    }

    #[test]
    fn empty_pod() {
        assert_eq!(
            cells("", "Pod", &json!({})),
            [
                json!(""),
                json!("0/0"),
                json!(""),
                json!("0"),
                json!("<unknown>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn pending_and_waiting_reasons() {
        let p = pod(two_containers(), json!({"phase": "Pending"}));
        assert_eq!(
            ready_status_restarts(&p),
            ("0/2".into(), "Pending".into(), "0".into())
        );

        let p = pod(
            two_containers(),
            json!({"phase": "Pending", "containerStatuses": [
            {"name": "a", "state": {"waiting": {"reason": "ContainerCreating"}}},
            {"name": "b", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}),
        );
        // Statuses are read last to first: the first container's reason wins.
        assert_eq!(ready_status_restarts(&p).1, "ContainerCreating");

        let p = pod(
            two_containers(),
            json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": true, "state": {"running": {}}},
            {"name": "b", "restartCount": 7, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 2, "finishedAt": "2024-05-01T11:58:00Z"}}}]}),
        );
        assert_eq!(
            ready_status_restarts(&p),
            ("1/2".into(), "CrashLoopBackOff".into(), "7 (2m ago)".into())
        );

        let gated = pod(
            two_containers(),
            json!({"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        );
        assert_eq!(ready_status_restarts(&gated).1, "SchedulingGated");

        let evicted = pod(
            two_containers(),
            json!({"phase": "Failed", "reason": "Evicted"}),
        );
        assert_eq!(ready_status_restarts(&evicted).1, "Evicted");
    }

    #[test]
    fn terminated_reasons() {
        let p = pod(
            json!({"containers": [{"name": "a"}]}),
            json!({"phase": "Succeeded", "containerStatuses": [
            {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
        );
        assert_eq!(
            ready_status_restarts(&p),
            ("0/1".into(), "Completed".into(), "0".into())
        );
        assert_eq!(
            crate::row_conditions("", "Pod", &p)[0]["reason"],
            json!("Succeeded")
        );

        let p = pod(
            json!({"containers": [{"name": "a"}]}),
            json!({"phase": "Failed", "containerStatuses": [
            {"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
        );
        assert_eq!(ready_status_restarts(&p).1, "Signal:9");
        let p = pod(
            json!({"containers": [{"name": "a"}]}),
            json!({"phase": "Failed", "containerStatuses": [
            {"name": "a", "state": {"terminated": {"exitCode": 3}}}]}),
        );
        assert_eq!(ready_status_restarts(&p).1, "ExitCode:3");

        // One container completed, one still running: Running if the pod is Ready, else NotReady.
        let status = |ready: &str| {
            json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": ready}],
            "containerStatuses": [
                {"name": "a", "ready": true, "state": {"running": {}}},
                {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})
        };
        assert_eq!(
            ready_status_restarts(&pod(two_containers(), status("True"))).1,
            "Running"
        );
        assert_eq!(
            ready_status_restarts(&pod(two_containers(), status("False"))).1,
            "NotReady"
        );
    }

    #[test]
    fn init_containers() {
        let spec = json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]});
        let p = pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
            {"name": "i2", "state": {"running": {}}}],
            "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
        );
        assert_eq!(
            ready_status_restarts(&p),
            ("0/1".into(), "Init:1/2".into(), "0".into())
        );

        let p = pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:59:00Z"}}}]}),
        );
        assert_eq!(
            ready_status_restarts(&p),
            (
                "0/1".into(),
                "Init:CrashLoopBackOff".into(),
                "4 (60s ago)".into()
            )
        );

        let p = pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
        );
        assert_eq!(ready_status_restarts(&p).1, "Init:Error");
        let p = pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "state": {"terminated": {"exitCode": 2}}}]}),
        );
        assert_eq!(ready_status_restarts(&p).1, "Init:ExitCode:2");
        let p = pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "state": {"terminated": {"exitCode": 143, "signal": 15}}}]}),
        );
        assert_eq!(ready_status_restarts(&p).1, "Init:Signal:15");
        let p = pod(
            spec,
            json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
        );
        assert_eq!(ready_status_restarts(&p).1, "Init:0/2");
    }

    #[test]
    fn sidecar_init_containers_count_in_ready() {
        let spec = json!({"initContainers": [{"name": "proxy", "restartPolicy": "Always"}, {"name": "setup"}],
                          "containers": [{"name": "app"}]});
        let p = pod(
            spec.clone(),
            json!({"phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [
                {"name": "proxy", "started": true, "ready": true, "restartCount": 2, "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:50:00Z"}}},
                {"name": "setup", "restartCount": 1, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
            "containerStatuses": [{"name": "app", "ready": true, "state": {"running": {}}}]}),
        );
        // Restarts of ordinary init containers stop counting once the pod is initialized.
        assert_eq!(
            ready_status_restarts(&p),
            ("2/2".into(), "Running".into(), "2 (10m ago)".into())
        );

        let p = pod(
            spec,
            json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "proxy", "started": true, "ready": false, "state": {"running": {}}},
            {"name": "setup", "state": {"running": {}}}]}),
        );
        assert_eq!(
            ready_status_restarts(&p),
            ("0/2".into(), "Init:1/2".into(), "0".into())
        );
    }

    #[test]
    fn terminating_and_node_lost() {
        let mut p = pod(
            two_containers(),
            json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": true, "state": {"running": {}}}, {"name": "b", "ready": true, "state": {"running": {}}}]}),
        );
        p["metadata"]["deletionTimestamp"] = json!("2024-05-01T12:00:00Z");
        assert_eq!(
            ready_status_restarts(&p),
            ("2/2".into(), "Terminating".into(), "0".into())
        );

        p["status"]["reason"] = json!("NodeLost");
        assert_eq!(ready_status_restarts(&p).1, "Unknown");

        let mut done = pod(two_containers(), json!({"phase": "Succeeded"}));
        done["metadata"]["deletionTimestamp"] = json!("2024-05-01T12:00:00Z");
        assert_eq!(ready_status_restarts(&done).1, "Succeeded");
    }

    #[test]
    fn restarts_without_a_termination_time() {
        let p = pod(
            json!({"containers": [{"name": "a"}]}),
            json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "restartCount": 2, "ready": true, "state": {"running": {}}}]}),
        );
        assert_eq!(ready_status_restarts(&p).2, "2");
    }
}
