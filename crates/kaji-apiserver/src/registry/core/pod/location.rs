//! Where a pod's logs and streams are served (upstream's `LogLocation`, `ExecLocation`,
//! `AttachLocation`, `PortForwardLocation` in `pkg/registry/core/pod/strategy.go`): the node's
//! kubelet and the path on it, after the checks upstream makes on the pod and the options.

use crate::objects::meta_str;
use kaji_api::ApiError;
use serde_json::Value;

/// The streams of an exec or attach (upstream's PodExecOptions / PodAttachOptions).
#[derive(Clone, Debug, Default)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    pub container: Option<String>,
    /// exec only.
    pub command: Vec<String>,
}

/// The container a log, exec or attach request is for, as upstream's `validateContainer`: the
/// one asked for (init containers count), else the only one, else the
/// `kubectl.kubernetes.io/default-container` annotation when `use_annotation`, else an error
/// naming the choices.
pub fn container_for(pod: &Value, requested: Option<&str>, use_annotation: bool) -> Result<String, ApiError> {
    let name = meta_str(pod, "name").unwrap_or_default();
    let names = |path: &str| -> Vec<String> {
        pod.pointer(path).and_then(Value::as_array).map(|cs| cs.iter().filter_map(|c| c["name"].as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    let (containers, inits) = (names("/spec/containers"), names("/spec/initContainers"));
    let annotated = pod.pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container").and_then(Value::as_str).filter(|_| use_annotation);
    match requested.filter(|c| !c.is_empty()).or(annotated) {
        Some(c) if containers.iter().chain(&inits).any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!("container {c} is not valid for pod {name}"))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut msg = format!("a container name must be specified for pod {name}, choose one of: [{}]", containers.join(" "));
            if !inits.is_empty() {
                msg.push_str(&format!(" or one of the init containers: [{}]", inits.join(" ")));
            }
            Err(ApiError::bad_request(msg))
        }
    }
}

/// Where the pod's kubelet listens: its node's InternalIP and `daemonEndpoints.kubeletEndpoint`.
pub async fn kubelet_address(storage: &dyn kaji_store::Store, pod: &Value) -> Result<(String, u16), ApiError> {
    let name = meta_str(pod, "name").unwrap_or_default();
    let node_name = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default().to_string();
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")));
    }
    let node = storage
        .get(&format!("{}{node_name}", crate::registry::keys::resource_prefix("", "nodes")))
        .await
        .map_err(crate::store_error)?
        .map(|kv| crate::objects::decode(&kv))
        .ok_or_else(|| ApiError::not_found("", "nodes", &node_name))?;
    let ip = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP").or_else(|| a.first()))
        .and_then(|a| a["address"].as_str())
        .unwrap_or_default()
        .to_string();
    let port = node.pointer("/status/daemonEndpoints/kubeletEndpoint/Port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()).unwrap_or(10250);
    if ip.is_empty() {
        return Err(ApiError::new(503, "ServiceUnavailable", format!("node {node_name} has no address")));
    }
    Ok((ip, port))
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn namespace(pod: &Value) -> &str {
    meta_str(pod, "namespace").unwrap_or("default")
}

/// pods/log: the kubelet's `/containerLogs/<ns>/<pod>/<container>`, with the log options
/// (`follow`, `tailLines`, ...) passed on as given.
pub fn log_path(pod: &Value, container: Option<&str>, options: &[(&str, &str)]) -> Result<String, ApiError> {
    let name = meta_str(pod, "name").unwrap_or_default();
    let container = container_for(pod, container, false)?;
    let query: Vec<String> = options.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
    Ok(format!("/containerLogs/{}/{name}/{container}?{}", namespace(pod), query.join("&")))
}

/// pods/exec and pods/attach (`sub`): the kubelet's `/exec/...` or `/attach/<ns>/<pod>/<container>`.
pub fn exec_path(pod: &Value, sub: &str, opts: &StreamOptions) -> Result<String, ApiError> {
    let name = meta_str(pod, "name").unwrap_or_default();
    let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        return Err(ApiError::bad_request(format!("cannot {sub} into a container in a completed pod; current phase is {phase}")));
    }
    if !opts.stdin && !opts.stdout && !opts.stderr {
        return Err(ApiError::bad_request("you must specify at least 1 of stdin, stdout, stderr"));
    }
    let container = container_for(pod, opts.container.as_deref(), true)?;
    let mut q: Vec<String> = Vec::new();
    if sub == "exec" {
        if opts.command.is_empty() {
            return Err(ApiError::bad_request("you must specify at least one command for the container"));
        }
        q.extend(opts.command.iter().map(|c| format!("command={}", encode(c))));
    }
    // The kubelet's parameter names (upstream's api.ExecStdinParam and friends).
    for (on, key) in [(opts.stdin, "input"), (opts.stdout, "output"), (opts.stderr && !opts.tty, "error"), (opts.tty, "tty")] {
        if on {
            q.push(format!("{key}=1"));
        }
    }
    let kubelet_sub = if sub == "exec" { "exec" } else { "attach" };
    Ok(format!("/{kubelet_sub}/{}/{name}/{container}?{}", namespace(pod), q.join("&")))
}

/// pods/portforward: the kubelet's `/portForward/<ns>/<pod>`.
pub fn port_forward_path(pod: &Value, ports: &[String]) -> String {
    let name = meta_str(pod, "name").unwrap_or_default();
    let q: Vec<String> = ports.iter().map(|p| format!("port={}", encode(p))).collect();
    format!("/portForward/{}/{name}?{}", namespace(pod), q.join("&"))
}
