//! Pod status from what the runtime reports, as upstream's `generateAPIPodStatus` and
//! `getPhase` (pkg/kubelet/kubelet_pods.go) and the status manager's conditions
//! (pkg/kubelet/status/generate.go). A pure function: the worker gathers the inputs.

use crate::cri::{self, api};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Why a container is waiting, set by the worker (ErrImagePull, CrashLoopBackOff, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

pub struct Input<'a> {
    pub pod: &'a Pod,
    /// CRI statuses of each container's instances, newest first, by container name.
    pub instances: &'a HashMap<String, Vec<api::ContainerStatus>>,
    pub waiting: &'a HashMap<String, Waiting>,
    /// (ready, started) of a running container by its id.
    pub probes: &'a (dyn Fn(&str, &Container) -> (bool, bool) + Sync),
    pub pod_ip: Option<&'a str>,
    pub host_ip: &'a str,
    pub runtime_name: &'a str,
    /// Set once the pod is being torn down (containers report terminated, not ready).
    pub terminating: bool,
    /// The kubelet failed the pod itself (reason, message), e.g. DeadlineExceeded.
    pub failed: Option<(&'a str, &'a str)>,
}

pub fn rfc3339_nanos(ns: i64) -> Value {
    if ns <= 0 {
        return Value::Null;
    }
    match jiff::Timestamp::from_nanosecond(i128::from(ns)) {
        Ok(t) => json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
        Err(_) => Value::Null,
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn restart_count(s: &api::ContainerStatus) -> i64 {
    s.annotations
        .get(cri::RESTART_COUNT_ANNOTATION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(i64::from(s.metadata.as_ref().map_or(0, |m| m.attempt)))
}

fn terminated(s: &api::ContainerStatus, runtime: &str) -> Value {
    let reason = if !s.reason.is_empty() {
        s.reason.clone()
    } else if s.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    let mut t = json!({
        "exitCode": s.exit_code,
        "reason": reason,
        "startedAt": rfc3339_nanos(s.started_at),
        "finishedAt": rfc3339_nanos(s.finished_at),
        "containerID": cri::container_id_uri(runtime, &s.id),
    });
    if !s.message.is_empty() {
        t["message"] = json!(s.message);
    }
    json!({ "terminated": t })
}

fn is_running(s: &api::ContainerStatus) -> bool {
    s.state == api::ContainerState::ContainerRunning as i32
}

fn is_exited(s: &api::ContainerStatus) -> bool {
    s.state == api::ContainerState::ContainerExited as i32
}

/// One entry of containerStatuses / initContainerStatuses.
fn container_status(input: &Input, c: &Container, default_waiting: &str) -> (Value, bool) {
    let instances = input
        .instances
        .get(&c.name)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let latest = instances.first();
    let previous = instances.get(1);
    let mut ready = false;
    let mut started = false;
    let mut out = json!({
        "name": c.name,
        "image": c.image.clone().unwrap_or_default(),
        "imageID": latest.map(|s| s.image_ref.clone()).unwrap_or_default(),
        "restartCount": latest.map_or(0, restart_count),
        "ready": false,
        "lastState": {},
    });
    if let Some(l) = latest {
        out["containerID"] = json!(cri::container_id_uri(input.runtime_name, &l.id));
    }
    let waiting = input
        .waiting
        .get(&c.name)
        .filter(|_| !latest.is_some_and(is_running));
    let state = match (waiting, latest) {
        (Some(w), _) => {
            if let Some(l) = latest.filter(|l| is_exited(l)) {
                out["lastState"] = terminated(l, input.runtime_name);
            }
            json!({"waiting": {"reason": w.reason, "message": w.message}})
        }
        (None, Some(l)) if is_running(l) && !input.terminating => {
            let (r, s) = (input.probes)(&l.id, c);
            ready = r;
            started = s;
            if let Some(p) = previous.filter(|p| is_exited(p)) {
                out["lastState"] = terminated(p, input.runtime_name);
            }
            json!({"running": {"startedAt": rfc3339_nanos(l.started_at)}})
        }
        (None, Some(l)) if is_exited(l) || input.terminating => {
            if let Some(p) = previous.filter(|p| is_exited(p)) {
                out["lastState"] = terminated(p, input.runtime_name);
            }
            if is_exited(l) {
                terminated(l, input.runtime_name)
            } else {
                json!({"terminated": {"exitCode": 137, "reason": "Error"}})
            }
        }
        _ => json!({"waiting": {"reason": default_waiting}}),
    };
    out["state"] = state;
    out["ready"] = json!(ready);
    out["started"] = json!(started);
    (out, ready)
}

/// An init container's ready and started, as upstream's prober manager sets them: ready once
/// it exited with 0, started only while it runs.
fn init_readiness(st: &mut Value) {
    let done = st
        .pointer("/state/terminated/exitCode")
        .and_then(Value::as_i64)
        == Some(0);
    let running = st.pointer("/state/running").is_some();
    st["ready"] = json!(done);
    st["started"] = json!(running);
}

/// Computes the pod's status. `old` is the status in the API (for transition times, startTime).
pub fn pod_status(input: &Input, old: Option<&Value>) -> Value {
    let pod = input.pod;
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    let inits = spec.init_containers.clone().unwrap_or_default();
    let mut init_statuses = Vec::new();
    let mut init_done = 0;
    let mut init_failed = false;
    let mut pending_init = Vec::new();
    let mut unready = Vec::new();
    // Once an app container ran, the pod was initialized (a restarting sidecar does not undo it).
    let app_ran = spec
        .containers
        .iter()
        .any(|c| input.instances.get(&c.name).is_some_and(|v| !v.is_empty()));
    for c in &inits {
        if crate::pods::actions::is_sidecar(c) {
            // A sidecar: ready and started from its probes; it counts as initialized once it
            // runs (and started), and its readiness counts for the pod's.
            let (st, ready) = container_status(input, c, "PodInitializing");
            if !ready {
                unready.push(c.name.clone());
            }
            if app_ran || st["started"] == json!(true) {
                init_done += 1;
            } else {
                pending_init.push(c.name.clone());
            }
            init_statuses.push(st);
            continue;
        }
        let (mut st, _) = container_status(input, c, "PodInitializing");
        init_readiness(&mut st);
        let code = st
            .pointer("/state/terminated/exitCode")
            .and_then(Value::as_i64);
        let last_code = st
            .pointer("/lastState/terminated/exitCode")
            .and_then(Value::as_i64);
        match code {
            Some(0) => init_done += 1,
            Some(_) => {
                init_failed = true;
                pending_init.push(c.name.clone());
            }
            None => {
                if last_code.is_some_and(|c| c != 0) && st.pointer("/state/waiting").is_some() {
                    init_failed = true;
                }
                pending_init.push(c.name.clone());
            }
        }
        init_statuses.push(st);
    }
    let initialized = init_done == inits.len();
    let mut statuses = Vec::new();
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    // Upstream's default waiting reason: PodInitializing for every container of a pod with init
    // containers (also after they are done, until the container is created).
    let default_waiting = if inits.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    for c in &spec.containers {
        let (st, ready) = container_status(input, c, default_waiting);
        if !ready {
            unready.push(c.name.clone());
        }
        if st.pointer("/state/running").is_some() {
            running += 1;
        } else if let Some(code) = st
            .pointer("/state/terminated/exitCode")
            .and_then(Value::as_i64)
        {
            stopped += 1;
            if code == 0 {
                succeeded += 1;
            }
        } else if st.pointer("/lastState/terminated").is_some() {
            stopped += 1;
        } else {
            waiting += 1;
        }
        statuses.push(st);
    }
    // upstream getPhase (a pod the kubelet failed itself stays Failed)
    let phase = if input.failed.is_some() || (init_failed && policy == "Never") {
        "Failed"
    } else if !initialized || waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if policy == "Always"
            || (policy == "OnFailure" && succeeded < stopped && !input.terminating)
        {
            "Running"
        } else if succeeded == stopped {
            "Succeeded"
        } else {
            "Failed"
        }
    } else {
        "Pending"
    };
    let old_conditions: Vec<Value> = old
        .and_then(|o| o.get("conditions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let condition = |type_: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let prev = old_conditions.iter().find(|c| c["type"] == type_);
        let since = prev
            .filter(|c| c["status"] == status)
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now()));
        let mut c = json!({"type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        if let Some(m) = message {
            c["message"] = json!(m);
        }
        c
    };
    let list = |v: &[String]| format!("[{}]", v.join(" "));
    let containers_ready = unready.is_empty();
    let (ready_reason, ready_msg) = if phase == "Succeeded" || phase == "Failed" {
        (Some("PodCompleted"), None)
    } else if containers_ready {
        (None, None)
    } else {
        (
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: {}",
                list(&unready)
            )),
        )
    };
    let mut conditions = Vec::new();
    let sandbox_ready =
        input.pod_ip.is_some() && !input.terminating && phase != "Succeeded" && phase != "Failed";
    conditions.push(condition(
        "PodReadyToStartContainers",
        sandbox_ready,
        None,
        None,
    ));
    conditions.push(if initialized {
        condition("Initialized", true, None, None)
    } else {
        condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: {}",
                list(&pending_init)
            )),
        )
    });
    let all_ready = containers_ready && phase == "Running";
    conditions.push(condition(
        "Ready",
        all_ready,
        ready_reason,
        ready_msg.clone(),
    ));
    conditions.push(condition(
        "ContainersReady",
        all_ready,
        ready_reason,
        ready_msg,
    ));
    // Conditions owned by others (PodScheduled, readiness gates, DisruptionTarget) are kept.
    for c in &old_conditions {
        let t = c["type"].as_str().unwrap_or_default();
        if ![
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
        ]
        .contains(&t)
        {
            conditions.push(c.clone());
        }
    }
    let start_time = old
        .and_then(|o| o.get("startTime"))
        .filter(|v| !v.is_null())
        .cloned()
        .unwrap_or_else(|| json!(now()));
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": input.host_ip,
        "hostIPs": [{"ip": input.host_ip}],
        "startTime": start_time,
        "containerStatuses": statuses,
        "qosClass": crate::resources::qos_class(pod),
    });
    if let Some((reason, message)) = input.failed {
        status["reason"] = json!(reason);
        status["message"] = json!(message);
    }
    if !init_statuses.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    let ip = input.pod_ip.map(str::to_string).or_else(|| {
        old.and_then(|o| o.get("podIP"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    if let Some(ip) = ip.filter(|ip| !ip.is_empty()) {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    if let Some(n) = old.and_then(|o| o.get("nominatedNodeName")) {
        status["nominatedNodeName"] = n.clone();
    }
    status
}
