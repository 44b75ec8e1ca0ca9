//! Hollow nodes: a simulation for controller and scale tests, in the spirit of upstream's kubemark
//! hollow kubelet. It never runs a container, and says so: every node it registers carries the
//! label `kaji.io/hollow=true` and a nodeInfo whose osImage and versions name the simulation.
//!
//! What it does, as a kubelet would, through the API only:
//! - registers N nodes (capacity/allocatable, conditions, addresses, a podCIDR) and heartbeats
//!   through Leases in `kube-node-lease`, posting node status when it changes;
//! - for every pod bound to one of its nodes (one pod watch for all nodes), after `ready_delay`,
//!   reports it Running and Ready with a fake IP from the node's podCIDR and fake containers
//!   (`hollow://...` container and image IDs);
//! - removes pods being deleted at once (hollow containers stop instantly) with gracePeriodSeconds 0;
//! - simulates node failure: a node annotated `kaji.io/hollow-stop-heartbeat=true` stops
//!   heartbeating and stops tending its pods, as if its kubelet had died (removing the annotation
//!   brings it back). Killing a `kaji agent --hollow` process does the same for all its nodes.
//! - reports synthetic resource usage (simulation) for the metrics API: a running pod uses what
//!   its annotations `kaji.io/hollow-cpu-millicores` and `kaji.io/hollow-memory-bytes` say
//!   (`stats::Synthetic`), served as `/metrics/resource` and `/stats/summary` by one small HTTPS
//!   kubelet endpoint on 127.0.0.1 for all the agent's nodes, which each node names in its
//!   annotation `kaji.io/hollow-kubelet-endpoint` (`server::bind_hollow`);
//! - simulates containers that exit (for Job tests): see [`EXIT_CODE_ANNOTATION`];
//! - simulates a failing readiness probe: see [`READY_ANNOTATION`].

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The label every hollow node carries.
pub const HOLLOW_LABEL: &str = "kaji.io/hollow";
/// The annotation that makes a hollow node stop heartbeating (simulated node failure).
pub const STOP_HEARTBEAT_ANNOTATION: &str = "kaji.io/hollow-stop-heartbeat";
/// The annotation naming a hollow node's kubelet endpoint (`host:port`), whose paths are
/// `/hollow/<node>/metrics/resource` and `/hollow/<node>/stats/summary`.
pub const KUBELET_ENDPOINT_ANNOTATION: &str = "kaji.io/hollow-kubelet-endpoint";
/// Simulation hook for Job tests: a pod annotated with an exit code has its containers "exit"
/// with that code once it has run for `kaji.io/hollow-run-seconds` (default 0): the pod turns
/// Succeeded (0) or Failed, or, with restartPolicy OnFailure/Always and a non-zero code, its
/// containers "restart" (restartCount + 1) and run again.
pub const EXIT_CODE_ANNOTATION: &str = "kaji.io/hollow-exit-code";
pub const RUN_SECONDS_ANNOTATION: &str = "kaji.io/hollow-run-seconds";
/// Simulation hook for readiness: a pod annotated `kaji.io/hollow-ready: "false"` is reported
/// Running but not Ready (its containers not ready), as if its readiness probe failed; removing
/// the annotation makes it Ready again. A status written by someone else is overwritten with
/// this view, as a kubelet's status manager does.
pub const READY_ANNOTATION: &str = "kaji.io/hollow-ready";

/// Whether the simulation reports `pod` Ready.
fn simulated_ready(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(READY_ANNOTATION))
        .map(String::as_str)
        != Some("false")
}
/// Where node Leases live.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Upstream's NodeStatusReportFrequency default (with node leases, an unchanged status is posted
/// this often).
const STATUS_REPORT_FREQUENCY: Duration = Duration::from_secs(300);
/// Nodes registered at once, and Leases renewed at once (each node is a few writes; one at a
/// time, 5,000 nodes took 49 s).
const CONCURRENT_NODE_WRITES: usize = 64;

/// How hollow nodes look and behave.
#[derive(Clone, Debug)]
pub struct HollowOptions {
    /// How many nodes; named `<name_prefix>-<i>`.
    pub nodes: usize,
    pub name_prefix: String,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    /// How long a bound pod takes to turn Running and Ready.
    pub ready_delay: Duration,
    /// Heartbeat (Lease renewal) interval.
    pub heartbeat: Duration,
}

impl Default for HollowOptions {
    fn default() -> Self {
        HollowOptions {
            nodes: 1,
            name_prefix: "hollow-node".into(),
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: 110,
            ready_delay: Duration::from_millis(500),
            heartbeat: Duration::from_secs(10),
        }
    }
}

/// One simulated node's state.
struct HollowNode {
    index: usize,
    /// Heartbeats and pod handling are off (simulated failure).
    stopped: bool,
    /// Pod IPs handed out, by pod uid.
    ips: HashMap<String, String>,
    next_ip: u32,
}

impl HollowNode {
    /// The node's podCIDR: 10.(244 + i/256).(i%256).0/24, so up to ~3000 nodes get distinct ranges.
    fn cidr_prefix(&self) -> String {
        format!("10.{}.{}", 244 + self.index / 256, self.index % 256)
    }

    fn allocate_ip(&mut self, uid: &str) -> String {
        if let Some(ip) = self.ips.get(uid) {
            return ip.clone();
        }
        let used: HashSet<&String> = self.ips.values().collect();
        let mut ip = String::new();
        for _ in 0..254 {
            self.next_ip = if self.next_ip >= 254 {
                2
            } else {
                self.next_ip.max(1) + 1
            };
            ip = format!("{}.{}", self.cidr_prefix(), self.next_ip);
            if !used.contains(&ip) {
                break;
            }
        }
        self.ips.insert(uid.to_string(), ip.clone());
        ip
    }
}

/// The hollow nodes' clients: each node writes as itself (`system:node:<name>` in
/// `system:nodes`, so the Node authorizer and NodeRestriction judge it as a kubelet); the one
/// shared watch of bound pods and of the hollow nodes reads as `kaji:hollow-nodes`.
pub struct Clients {
    pub reader: Client,
    /// By node name ([`node_name`]); a node without one writes with `reader`.
    pub nodes: HashMap<String, Client>,
}

/// A client that writes as node `name` through `reader`'s connections: each request carries
/// `Impersonate-User: system:node:<name>` and `Impersonate-Group: system:nodes`, which the API
/// server grants the hollow nodes' reader for node identities only. One pool of connections
/// serves every hollow node (a client certificate per node meant a TLS client, connections and
/// handshakes per node: at 5,000 nodes most of the server's CPU while they registered).
pub fn node_client(reader: &Client, name: &str) -> Client {
    let user = http::HeaderValue::from_str(&format!("system:node:{name}"))
        .unwrap_or_else(|_| http::HeaderValue::from_static("system:node:invalid"));
    let namespace = reader.default_namespace().to_string();
    let reader = reader.clone();
    let service = tower::service_fn(move |mut req: http::Request<kube::client::Body>| {
        let reader = reader.clone();
        let headers = req.headers_mut();
        headers.insert("impersonate-user", user.clone());
        headers.insert(
            "impersonate-group",
            http::HeaderValue::from_static("system:nodes"),
        );
        async move { reader.send(req).await }
    });
    Client::new(service, namespace)
}

impl Clients {
    /// The reader, and for each of the `opts.nodes` hollow nodes a [`node_client`] over it.
    pub fn over(reader: Client, opts: &HollowOptions) -> Clients {
        let nodes = (0..opts.nodes)
            .map(|i| node_name(opts, i))
            .map(|name| (name.clone(), node_client(&reader, &name)))
            .collect();
        Clients { reader, nodes }
    }
}

struct Hollow {
    /// The shared reader.
    client: Client,
    node_clients: HashMap<String, Client>,
    opts: HollowOptions,
    nodes: Mutex<HashMap<String, HollowNode>>,
    /// Pods with a pending status report or deletion, so that a burst of events does one write.
    in_flight: Mutex<HashSet<String>>,
    /// Bounds concurrent writes so that 10,000 pods turning Ready do not open 10,000 requests.
    writes: tokio::sync::Semaphore,
    /// Synthetic resource usage of running hollow pods (simulation).
    usage: Arc<crate::stats::Synthetic>,
    /// The hollow kubelet endpoint (`127.0.0.1:<port>`), when it could be started.
    kubelet_endpoint: Option<String>,
}

/// The name of hollow node `i`.
pub fn node_name(opts: &HollowOptions, i: usize) -> String {
    format!("{}-{i}", opts.name_prefix)
}

/// The node's fake InternalIP, in 10.240.0.0/14 (never a .0 address).
fn node_ip(index: usize) -> String {
    let n = index + 1;
    format!("10.{}.{}.{}", 240 + n / 65536 % 4, n / 256 % 256, n % 256)
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Runs the hollow nodes until the process ends.
pub async fn run(clients: Clients, opts: HollowOptions) -> anyhow::Result<()> {
    let Clients {
        reader: client,
        nodes: node_clients,
    } = clients;
    let nodes = (0..opts.nodes)
        .map(|i| {
            (
                node_name(&opts, i),
                HollowNode {
                    index: i,
                    stopped: false,
                    ips: HashMap::new(),
                    next_ip: 1,
                },
            )
        })
        .collect();
    let usage = Arc::new(crate::stats::Synthetic::default());
    let (kubelet_endpoint, kubelet_server) = match start_kubelet_endpoint(
        node_clients.get(&node_name(&opts, 0)).unwrap_or(&client),
        &opts,
        usage.clone(),
    )
    .await
    {
        Some((endpoint, serve)) => (Some(endpoint), Some(serve)),
        None => (None, None),
    };
    let hollow = Arc::new(Hollow {
        client,
        node_clients,
        opts,
        nodes: Mutex::new(nodes),
        in_flight: Mutex::new(HashSet::new()),
        writes: tokio::sync::Semaphore::new(32),
        usage,
        kubelet_endpoint,
    });
    futures::stream::iter(0..hollow.opts.nodes)
        .for_each_concurrent(CONCURRENT_NODE_WRITES, |i| {
            let hollow = hollow.clone();
            async move {
                let name = node_name(&hollow.opts, i);
                // Registration retries: the API server may still be starting.
                let mut delay = Duration::from_millis(200);
                while let Err(e) = hollow.register(&name, i).await {
                    tracing::warn!(node = %name, error = %e, "registering hollow node");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        })
        .await;
    tracing::info!(
        nodes = hollow.opts.nodes,
        "hollow nodes registered (simulation: no containers run)"
    );
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(serve) = kubelet_server {
        tasks.spawn(serve);
    }
    tasks.spawn(hollow.clone().heartbeat_loop());
    tasks.spawn(hollow.clone().watch_nodes());
    tasks.spawn(hollow.clone().watch_pods());
    match tasks.join_next().await {
        Some(r) => r?,
        None => Ok(()),
    }
}

/// Starts the hollow nodes' kubelet endpoint (retrying while the API server starts); None when
/// no serving certificate could be had (the nodes then have no metrics).
async fn start_kubelet_endpoint(
    client: &Client,
    opts: &HollowOptions,
    usage: Arc<crate::stats::Synthetic>,
) -> Option<(
    String,
    std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>,
)> {
    let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let mut delay = Duration::from_millis(200);
    let certs = loop {
        match crate::server::request_serving_certificate(client, &opts.name_prefix, &names).await {
            Ok(c) => break c,
            Err(e) if delay < Duration::from_secs(5) => {
                tracing::debug!(error = %format!("{e:#}"), "hollow kubelet certificate");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "no hollow kubelet endpoint: hollow nodes report no metrics");
                return None;
            }
        }
    };
    match crate::server::bind_hollow(usage, &certs).await {
        Ok((port, serve)) => Some((format!("127.0.0.1:{port}"), Box::pin(serve))),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "no hollow kubelet endpoint: hollow nodes report no metrics");
            None
        }
    }
}

impl Hollow {
    /// Follows a bound pod's synthetic usage (running pods of our live nodes count).
    fn track_usage(&self, pod: &Pod) {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        let ours = self
            .nodes
            .lock()
            .expect("hollow state")
            .get(node)
            .is_some_and(|n| !n.stopped);
        if ours {
            self.usage.observe(pod, node);
        } else {
            self.usage
                .forget(pod.metadata.uid.as_deref().unwrap_or_default());
        }
    }

    /// Upstream kubelets renew every quarter of the lease duration (40 s lease, 10 s renewals).
    fn lease_duration_seconds(&self) -> i32 {
        i32::try_from((self.opts.heartbeat * 4).as_secs())
            .unwrap_or(i32::MAX)
            .max(1)
    }

    fn node_status(&self, name: &str, index: usize) -> Value {
        let t = now();
        let resources = json!({
            "cpu": self.opts.cpu, "memory": self.opts.memory, "pods": self.opts.pods.to_string(),
            "ephemeral-storage": "100Gi",
        });
        let cond = |ty: &str, status: &str, reason: &str, message: &str| {
            json!({"type": ty, "status": status, "reason": reason, "message": message,
                   "lastHeartbeatTime": t, "lastTransitionTime": t})
        };
        json!({
            "capacity": resources,
            "allocatable": resources,
            "phase": "Running",
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status (hollow node: simulated)"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": node_ip(index)},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": format!("hollow-{index}"),
                "systemUUID": format!("hollow-{index}"),
                "bootID": format!("hollow-{index}"),
                "kernelVersion": "hollow (simulated)",
                "osImage": "Kaji hollow node (simulation; runs no containers)",
                "containerRuntimeVersion": "hollow://0.1.0",
                "kubeletVersion": "v1.33.0-kaji-hollow",
                "kubeProxyVersion": "v1.33.0-kaji-hollow",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        })
    }

    /// The client node `name` writes with.
    fn client_of(&self, name: &str) -> Client {
        self.node_clients.get(name).unwrap_or(&self.client).clone()
    }

    async fn register(&self, name: &str, index: usize) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(self.client_of(name));
        let cidr = format!(
            "{}.0/24",
            self.nodes
                .lock()
                .expect("hollow state")
                .get(name)
                .map(HollowNode::cidr_prefix)
                .unwrap_or_default()
        );
        let annotations = match &self.kubelet_endpoint {
            Some(e) => json!({KUBELET_ENDPOINT_ANNOTATION: e}),
            None => json!({}),
        };
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": annotations, "labels": {
                HOLLOW_LABEL: "true",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
            }},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        });
        let uid = match nodes
            .create(&PostParams::default(), &serde_json::from_value(node)?)
            .await
        {
            Ok(created) => created.metadata.uid,
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // A restart: the node exists; the annotation decides whether it is still "failed".
                let existing = nodes.get(name).await?;
                let stopped = existing
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(STOP_HEARTBEAT_ANNOTATION))
                    .is_some_and(|v| v == "true");
                if let Some(n) = self.nodes.lock().expect("hollow state").get_mut(name) {
                    n.stopped = stopped;
                }
                let endpoint = existing
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(KUBELET_ENDPOINT_ANNOTATION));
                if let Some(e) = &self.kubelet_endpoint
                    && endpoint != Some(e)
                {
                    let patch =
                        json!({"metadata": {"annotations": {KUBELET_ENDPOINT_ANNOTATION: e}}});
                    nodes
                        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await?;
                }
                existing.metadata.uid
            }
            Err(e) => return Err(e.into()),
        };
        // The API server drops a Node's status on create, so it is posted next.
        self.post_status(name, index).await?;
        self.create_lease(name, uid.as_deref()).await
    }

    /// A new node's Lease, written at once (one request); an existing one is renewed.
    async fn create_lease(&self, name: &str, uid: Option<&str>) -> anyhow::Result<()> {
        let renew = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
            .to_string();
        let mut lease = json!({
            "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": self.lease_duration_seconds(), "renewTime": renew},
        });
        if let Some(uid) = uid {
            lease["metadata"]["ownerReferences"] =
                json!([{"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}]);
        }
        let api: Api<Lease> = Api::namespaced(self.client_of(name), LEASE_NAMESPACE);
        match api
            .create(&PostParams::default(), &serde_json::from_value(lease)?)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                crate::node::renew_lease(
                    &self.client_of(name),
                    name,
                    self.lease_duration_seconds(),
                    uid,
                )
                .await
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn post_status(&self, name: &str, index: usize) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(self.client_of(name));
        let patch = json!({"status": self.node_status(name, index)});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    async fn renew_lease(&self, name: &str) -> anyhow::Result<()> {
        crate::node::renew_lease(
            &self.client_of(name),
            name,
            self.lease_duration_seconds(),
            None,
        )
        .await
    }

    /// Renews every live node's Lease each interval, spread evenly over the interval (a burst
    /// of 5,000 writes every 10 s would stall everything else), and posts node status at
    /// upstream's report frequency. Registration has just renewed every Lease, so the first
    /// round is one interval later.
    async fn heartbeat_loop(self: Arc<Self>) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + self.opts.heartbeat,
            self.opts.heartbeat,
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_status = std::time::Instant::now();
        loop {
            tick.tick().await;
            let live: Vec<(String, usize)> = {
                let nodes = self.nodes.lock().expect("hollow state");
                nodes
                    .iter()
                    .filter(|(_, n)| !n.stopped)
                    .map(|(k, n)| (k.clone(), n.index))
                    .collect()
            };
            let post_status = last_status.elapsed() >= STATUS_REPORT_FREQUENCY;
            if post_status {
                last_status = std::time::Instant::now();
            }
            let this = self.clone();
            let start = tokio::time::Instant::now();
            let (n, period) = (live.len().max(1) as u32, self.opts.heartbeat.mul_f64(0.9));
            futures::stream::iter(live.into_iter().enumerate())
                .for_each_concurrent(CONCURRENT_NODE_WRITES, |(i, (name, index))| {
                    let this = this.clone();
                    async move {
                        tokio::time::sleep_until(start + period * (i as u32) / n).await;
                        if let Err(e) = this.renew_lease(&name).await {
                            tracing::warn!(node = %name, error = %format!("{e:#}"), "renewing hollow node lease");
                        }
                        if post_status && let Err(e) = this.post_status(&name, index).await {
                            tracing::warn!(node = %name, error = %e, "posting hollow node status");
                        }
                    }
                })
                .await;
        }
    }

    /// Follows the failure switch, and posts status Ready again when a live node is seen not
    /// Ready (after a simulated failure ends, as a restarted kubelet would).
    async fn watch_nodes(self: Arc<Self>) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let cfg = watcher::Config::default().labels(&format!("{HOLLOW_LABEL}=true"));
        let mut stream = watcher::watcher(nodes, cfg).default_backoff().boxed();
        while let Some(ev) = stream.next().await {
            let node = match ev {
                Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => n,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "watching hollow nodes");
                    continue;
                }
            };
            let Some(name) = node.metadata.name.clone() else {
                continue;
            };
            let stop = node
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(STOP_HEARTBEAT_ANNOTATION))
                .is_some_and(|v| v == "true");
            let (index, resumed) = {
                let mut all = self.nodes.lock().expect("hollow state");
                let Some(n) = all.get_mut(&name) else {
                    continue;
                };
                let resumed = n.stopped && !stop;
                if n.stopped != stop {
                    tracing::info!(node = %name, stopped = stop, "hollow node heartbeat switch");
                }
                n.stopped = stop;
                (n.index, resumed)
            };
            if stop {
                continue;
            }
            let ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == "True");
            if resumed || !ready {
                let this = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = this.renew_lease(&name).await {
                        tracing::warn!(node = %name, error = %format!("{e:#}"), "renewing hollow node lease");
                    }
                    if let Err(e) = this.post_status(&name, index).await {
                        tracing::warn!(node = %name, error = %e, "posting hollow node status");
                    }
                });
                if resumed {
                    // Pods deleted or bound while the node was "down" are handled now.
                    self.resync_pods(&node.metadata.name.unwrap_or_default())
                        .await;
                }
            }
        }
        Ok(())
    }

    async fn resync_pods(self: &Arc<Self>, node: &str) {
        let pods: Api<Pod> = Api::all(self.client_of(node));
        let lp = kube::api::ListParams::default().fields(&format!("spec.nodeName={node}"));
        match pods.list(&lp).await {
            Ok(list) => {
                for p in list.items {
                    self.clone().handle_pod(p);
                }
            }
            Err(e) => tracing::warn!(node, error = %e, "listing pods of a resumed hollow node"),
        }
    }

    /// One watch over all bound pods (kubelets watch `spec.nodeName=<node>`; one watch of
    /// `spec.nodeName!=` serves every hollow node, and pending pods are never sent to it);
    /// those bound to our live nodes are tended.
    async fn watch_pods(self: Arc<Self>) -> anyhow::Result<()> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let cfg = watcher::Config::default().fields("spec.nodeName!=");
        let mut stream = watcher::watcher(pods, cfg).default_backoff().boxed();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                    self.track_usage(&p);
                    self.clone().handle_pod(p)
                }
                Ok(watcher::Event::Delete(p)) => {
                    self.usage
                        .forget(p.metadata.uid.as_deref().unwrap_or_default());
                    let node = p
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.clone())
                        .unwrap_or_default();
                    let uid = p.metadata.uid.clone().unwrap_or_default();
                    if let Some(n) = self.nodes.lock().expect("hollow state").get_mut(&node) {
                        n.ips.remove(&uid);
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "watching pods"),
            }
        }
        Ok(())
    }

    fn handle_pod(self: Arc<Self>, pod: Pod) {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            return;
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        {
            let mut nodes = self.nodes.lock().expect("hollow state");
            let Some(n) = nodes.get_mut(&node) else {
                return;
            };
            if n.stopped {
                return;
            }
            // Remember IPs already given (e.g. before a restart) so that none is handed out twice.
            if let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) {
                n.ips.insert(uid.clone(), ip);
            }
        }
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        // Running with an IP and Ready: what this node reported. A pod that the node lifecycle
        // controller marked not Ready while the node was "down" is reported again when the node
        // is back, as a kubelet's status manager does after a partition heals.
        let status = pod.status.as_ref();
        let want_ready = if simulated_ready(&pod) {
            "True"
        } else {
            "False"
        };
        let reported = phase == "Running"
            && status.and_then(|s| s.pod_ip.as_ref()).is_some()
            && status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == want_ready);
        if !deleting
            && reported
            && let Some(exit) = simulated_exit(&pod)
        {
            self.finish_later(pod, exit);
            return;
        }
        if !deleting && (reported || phase == "Succeeded" || phase == "Failed") {
            return;
        }
        let key = format!("{uid}/{deleting}");
        if !self
            .in_flight
            .lock()
            .expect("hollow state")
            .insert(key.clone())
        {
            return;
        }
        tokio::spawn(async move {
            if !deleting {
                tokio::time::sleep(self.opts.ready_delay).await;
            }
            let result = {
                let _permit = self.writes.acquire().await;
                if deleting {
                    self.remove_pod(&pod).await
                } else {
                    self.report_running(&pod, &node).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(pod = ?pod.metadata.name, error = %e, "hollow pod update");
            }
            self.in_flight.lock().expect("hollow state").remove(&key);
        });
    }

    /// Hollow containers stop at once, so a pod being deleted goes right away.
    async fn remove_pod(&self, pod: &Pod) -> anyhow::Result<()> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client_of(node), &ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match pods.delete(&name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn report_running(&self, pod: &Pod, node: &str) -> anyhow::Result<()> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let (ip, host_ip) = {
            let mut nodes = self.nodes.lock().expect("hollow state");
            let Some(n) = nodes.get_mut(node) else {
                return Ok(());
            };
            if n.stopped {
                return Ok(());
            }
            let i = n.index;
            (n.allocate_ip(&uid), node_ip(i))
        };
        let t = now();
        let default_spec = k8s_openapi::api::core::v1::PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&default_spec);
        let ready = simulated_ready(pod);
        let container_status = |c: &k8s_openapi::api::core::v1::Container| {
            json!({
                "name": c.name,
                "image": c.image.clone().unwrap_or_default(),
                "imageID": format!("hollow://{}", c.image.clone().unwrap_or_default()),
                "containerID": format!("hollow://{uid}/{}", c.name),
                "ready": ready,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": t}},
            })
        };
        let init: Vec<Value> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| {
                json!({
                    "name": c.name,
                    "image": c.image.clone().unwrap_or_default(),
                    "imageID": format!("hollow://{}", c.image.clone().unwrap_or_default()),
                    "containerID": format!("hollow://{uid}/{}", c.name),
                    "ready": true,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": t, "finishedAt": t}},
                })
            })
            .collect();
        let cond = |ty: &str, ok: bool| {
            let mut c = json!({"type": ty, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": t});
            if !ok {
                c["reason"] = json!("ContainersNotReady");
            }
            c
        };
        let mut status = json!({
            "phase": "Running",
            "conditions": [cond("PodReadyToStartContainers", true), cond("Initialized", true), cond("Ready", ready), cond("ContainersReady", ready), cond("PodScheduled", true)],
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map_or(Value::String(t.clone()), |s| json!(s)),
            "containerStatuses": spec.containers.iter().map(container_status).collect::<Vec<_>>(),
        });
        if !init.is_empty() {
            status["initContainerStatuses"] = json!(init);
        }
        let patch = json!({"status": status});
        // The answer (the whole pod) is not needed: read as text, not decoded into a Pod.
        let client = self.client_of(node);
        let pods: Api<Pod> = Api::namespaced(
            client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let request = kube::core::Request::new(pods.resource_url()).patch_subresource(
            "status",
            pod.metadata.name.as_deref().unwrap_or_default(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )?;
        match client.request_text(request).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The simulated exit (code, run time) a pod asks for (see [`EXIT_CODE_ANNOTATION`]).
fn simulated_exit(pod: &Pod) -> Option<(i32, Duration)> {
    let a = pod.metadata.annotations.as_ref()?;
    let code = a.get(EXIT_CODE_ANNOTATION)?.parse().ok()?;
    let secs: f64 = a
        .get(RUN_SECONDS_ANNOTATION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Some((code, Duration::from_secs_f64(secs.clamp(0.0, 86_400.0))))
}

impl Hollow {
    /// Lets a Running pod's containers exit after their simulated run time.
    fn finish_later(self: Arc<Self>, pod: Pod, (code, run): (i32, Duration)) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let restarts = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.first())
            .map_or(0, |c| c.restart_count);
        let key = format!("{uid}/exit/{restarts}");
        if !self
            .in_flight
            .lock()
            .expect("hollow state")
            .insert(key.clone())
        {
            return;
        }
        tokio::spawn(async move {
            tokio::time::sleep(run).await;
            let result = {
                let _permit = self.writes.acquire().await;
                self.report_exit(&pod, code, restarts).await
            };
            if let Err(e) = result {
                tracing::debug!(pod = ?pod.metadata.name, error = %e, "hollow pod exit");
            }
            self.in_flight.lock().expect("hollow state").remove(&key);
        });
    }

    async fn report_exit(&self, pod: &Pod, code: i32, restarts: i32) -> anyhow::Result<()> {
        let t = now();
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.as_deref().unwrap_or("Always");
        let restart = code != 0 && policy != "Never";
        let reason = if code == 0 { "Completed" } else { "Error" };
        let terminated =
            json!({"exitCode": code, "reason": reason, "startedAt": t, "finishedAt": t});
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let statuses: Vec<Value> = spec
            .containers
            .iter()
            .map(|c| {
                let mut s = json!({
                    "name": c.name,
                    "image": c.image.clone().unwrap_or_default(),
                    "imageID": format!("hollow://{}", c.image.clone().unwrap_or_default()),
                    "containerID": format!("hollow://{uid}/{}", c.name),
                    "ready": restart,
                    "started": restart,
                    "restartCount": restarts + i32::from(restart),
                });
                if restart {
                    s["state"] = json!({"running": {"startedAt": t}});
                    s["lastState"] = json!({"terminated": terminated});
                } else {
                    s["state"] = json!({"terminated": terminated});
                }
                s
            })
            .collect();
        let mut status = json!({"containerStatuses": statuses});
        if !restart {
            let mut conditions: Vec<Value> = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .map(|cs| {
                    cs.iter()
                        .filter_map(|c| serde_json::to_value(c).ok())
                        .collect()
                })
                .unwrap_or_default();
            for c in &mut conditions {
                if matches!(c["type"].as_str(), Some("Ready" | "ContainersReady")) {
                    *c = json!({"type": c["type"], "status": "False", "reason": "PodCompleted", "lastProbeTime": null, "lastTransitionTime": t});
                }
            }
            status["phase"] = json!(if code == 0 { "Succeeded" } else { "Failed" });
            status["conditions"] = json!(conditions);
        }
        let node = spec.node_name.as_deref().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(
            self.client_of(node),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        // A merge patch: the lists are written whole.
        match pods
            .patch_status(
                pod.metadata.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
