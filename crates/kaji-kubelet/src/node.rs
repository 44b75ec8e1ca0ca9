//! The node object: registration, status (capacity, addresses, conditions, nodeInfo, images)
//! and the heartbeat Lease, as upstream's kubelet_node_status.go and nodelease. Status is posted
//! every 60 s or when it changes (checked every 10 s); the Lease is renewed every 10 s.

use crate::cri::Cri;
use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

pub const KUBELET_VERSION: &str = "v1.33.0-kaji";
const LEASE_NAMESPACE: &str = "kube-node-lease";
const LEASE_DURATION_SECONDS: i32 = 40;
const RENEW_INTERVAL: Duration = Duration::from_secs(10);
const STATUS_REPORT_FREQUENCY: Duration = Duration::from_secs(60);

/// The node's static facts, read once at start.
#[derive(Clone, Debug)]
pub struct NodeFacts {
    pub name: String,
    pub hostname: String,
    pub internal_ip: String,
    pub cpu: String,
    pub memory: String,
    pub ephemeral_storage: String,
    pub pods: u32,
    pub kernel_version: String,
    pub os_image: String,
    pub kubelet_port: u16,
}

impl NodeFacts {
    pub fn read(name: &str, data_dir: &Path, kubelet_port: u16) -> NodeFacts {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("0")
            .to_string();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let os_image = std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "Linux".into());
        NodeFacts {
            name: name.to_string(),
            hostname: hostname(),
            internal_ip: internal_ip().unwrap_or_else(|| "127.0.0.1".into()),
            cpu: cpus.to_string(),
            memory: format!("{mem_kib}Ki"),
            ephemeral_storage: format!("{}Ki", disk_kib(data_dir)),
            pods: 110,
            kernel_version: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            os_image,
            kubelet_port,
        }
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

fn disk_kib(path: &Path) -> u64 {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return 0;
    };
    // SAFETY: statvfs fills the zeroed struct; `c` is a valid NUL-terminated path.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut s) != 0 {
            return 0;
        }
        (s.f_blocks as u64).saturating_mul(s.f_frsize as u64) / 1024
    }
}

/// The IPv4 address of the interface with the default route, else the first non-loopback one.
pub fn internal_ip() -> Option<String> {
    let default_iface = std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|r| {
            r.lines()
                .skip(1)
                .find(|l| l.split_whitespace().nth(1) == Some("00000000"))
                .and_then(|l| l.split_whitespace().next().map(str::to_string))
        });
    let addrs = ipv4_addrs();
    if let Some(i) = default_iface
        && let Some((_, ip)) = addrs.iter().find(|(n, _)| *n == i)
    {
        return Some(ip.clone());
    }
    addrs
        .into_iter()
        .find(|(n, ip)| {
            n != "lo" && !ip.starts_with("127.") && !n.starts_with("veth") && !n.starts_with("cni")
        })
        .map(|(_, ip)| ip)
}

fn ipv4_addrs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    // SAFETY: getifaddrs allocates a list that we walk read-only and free once.
    unsafe {
        let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut p = ifap;
        while !p.is_null() {
            let ifa = &*p;
            if !ifa.ifa_addr.is_null() && i32::from((*ifa.ifa_addr).sa_family) == libc::AF_INET {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                    .to_string_lossy()
                    .into_owned();
                out.push((name, ip.to_string()));
            }
            p = ifa.ifa_next;
        }
        libc::freeifaddrs(ifap);
    }
    out
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Creates the Node if it does not exist (labels as upstream's kubelet sets them).
pub async fn register(client: &Client, facts: &NodeFacts) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": facts.name, "labels": {
            "kubernetes.io/hostname": facts.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}},
        "spec": {}
    }))?;
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e).context("registering the node"),
    }
}

/// Waits until the node has a podCIDR (allocated by the controller manager's node IPAM).
pub async fn wait_for_pod_cidr(client: &Client, name: &str) -> Result<String> {
    let api: Api<Node> = Api::all(client.clone());
    let mut logged = false;
    loop {
        if let Ok(n) = api.get(name).await
            && let Some(cidr) = n.spec.and_then(|s| s.pod_cidr).filter(|c| !c.is_empty())
        {
            return Ok(cidr);
        }
        if !logged {
            tracing::info!(node = %name, "waiting for the node's podCIDR");
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status document the kubelet posts. `runtime` is None while the runtime is not up.
pub fn status(
    facts: &NodeFacts,
    runtime: Option<&str>,
    images: &[Value],
    old: Option<&Value>,
) -> Value {
    let old_conditions: Vec<Value> = old
        .and_then(|o| o.get("conditions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let now = now();
    let cond = |t: &str, status: &str, reason: &str, message: &str| {
        let since = old_conditions
            .iter()
            .find(|c| c["type"] == t && c["status"] == status)
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now));
        json!({"type": t, "status": status, "reason": reason, "message": message, "lastHeartbeatTime": now, "lastTransitionTime": since})
    };
    let ready = match runtime {
        Some(_) => cond(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        ),
        None => cond(
            "Ready",
            "False",
            "KubeletNotReady",
            "container runtime status check may not have completed yet",
        ),
    };
    let resources = json!({"cpu": facts.cpu, "memory": facts.memory, "pods": facts.pods.to_string(), "ephemeral-storage": facts.ephemeral_storage});
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ready,
        ],
        "addresses": [{"type": "InternalIP", "address": facts.internal_ip}, {"type": "Hostname", "address": facts.hostname}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": facts.kubelet_port}},
        "nodeInfo": {
            "machineID": std::fs::read_to_string("/etc/machine-id").unwrap_or_default().trim(),
            "systemUUID": std::fs::read_to_string("/sys/class/dmi/id/product_uuid").unwrap_or_default().trim(),
            "bootID": std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim(),
            "kernelVersion": facts.kernel_version,
            "osImage": facts.os_image,
            "containerRuntimeVersion": runtime.unwrap_or(""),
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
        "images": images,
    })
}

/// The node's images for its status (largest first, at most 50, as upstream).
pub async fn images(cri: &mut Cri) -> Vec<Value> {
    let mut list = cri.list_images().await.unwrap_or_default();
    list.sort_by_key(|i| std::cmp::Reverse(i.size));
    list.into_iter()
        .take(50)
        .map(|i| {
            let names: Vec<String> = i
                .repo_digests
                .iter()
                .chain(i.repo_tags.iter())
                .cloned()
                .collect();
            json!({"names": names, "sizeBytes": i.size})
        })
        .collect()
}

/// Posts node status (a merge patch of `status`); returns what was posted.
pub async fn post_status(client: &Client, name: &str, status: &Value) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await
    .context("posting node status")?;
    Ok(())
}

/// Creates or renews the node's Lease in `kube-node-lease` (upstream's nodelease controller):
/// held by the node, `duration_seconds` long, renewed now. A new Lease is owned by its Node: the
/// UID is `node_uid`, or read from the API when not given (without an owner when that fails, as
/// upstream). The agent and the hollow nodes both heartbeat with it.
pub async fn renew_lease(
    client: &Client,
    name: &str,
    duration_seconds: i32,
    node_uid: Option<&str>,
) -> Result<()> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let renew = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string();
    let patch = json!({"spec": {"holderIdentity": name, "leaseDurationSeconds": duration_seconds, "renewTime": renew}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let uid = match node_uid {
                Some(uid) => Some(uid.to_string()),
                None => Api::<Node>::all(client.clone())
                    .get(name)
                    .await
                    .ok()
                    .and_then(|n| n.metadata.uid),
            };
            let mut lease = json!({"metadata": {"name": name, "namespace": LEASE_NAMESPACE}, "spec": patch["spec"]});
            if let Some(uid) = uid {
                lease["metadata"]["ownerReferences"] =
                    json!([{"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}]);
            }
            api.create(&PostParams::default(), &serde_json::from_value(lease)?)
                .await
                .context("creating the node lease")?;
            Ok(())
        }
        Err(e) => Err(e).context("renewing the node lease"),
    }
}

/// Heartbeats until the process ends: the Lease every 10 s, status on change or every 60 s.
pub async fn heartbeat(client: Client, mut cri: Cri, facts: NodeFacts, runtime_version: String) {
    let api: Api<Node> = Api::all(client.clone());
    let mut last_posted: Option<(Instant, Value)> = None;
    loop {
        let node = api.get(&facts.name).await.ok();
        let uid = node.as_ref().and_then(|n| n.metadata.uid.clone());
        if let Err(e) =
            renew_lease(&client, &facts.name, LEASE_DURATION_SECONDS, uid.as_deref()).await
        {
            tracing::warn!(error = %format!("{e:#}"), "node lease");
        }
        let imgs = images(&mut cri).await;
        let old = node
            .as_ref()
            .and_then(|n| n.status.as_ref())
            .and_then(|s| serde_json::to_value(s).ok());
        let st = status(&facts, Some(&runtime_version), &imgs, old.as_ref());
        // Compare without heartbeat times: post when something real changed, or every 60 s.
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(cs) = v.get_mut("conditions").and_then(Value::as_array_mut) {
                for c in cs {
                    c.as_object_mut().map(|o| o.remove("lastHeartbeatTime"));
                }
            }
            v
        };
        let not_ready_in_api = old
            .as_ref()
            .and_then(|o| o.get("conditions"))
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] != "True")
            });
        let due = match &last_posted {
            None => true,
            Some((t, v)) => {
                t.elapsed() >= STATUS_REPORT_FREQUENCY || strip(v) != strip(&st) || not_ready_in_api
            }
        };
        if due {
            match post_status(&client, &facts.name, &st).await {
                Ok(()) => last_posted = Some((Instant::now(), st)),
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "node status"),
            }
        }
        tokio::time::sleep(RENEW_INTERVAL).await;
    }
}
