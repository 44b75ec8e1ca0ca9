//! The real node agent (kubelet): registers the node, waits for its podCIDR, starts a managed
//! containerd on it (unless given a CRI socket), then runs the node heartbeat, the kubelet HTTPS
//! server and the pod workers, all as clients of the API server.

use crate::containerd::{ContainerdOptions, ManagedContainerd};
use crate::cri::Cri;
use crate::pods::{self, Shared};
use crate::{node, server};
use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Node;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// Default: the hostname.
    pub node_name: String,
    /// Kaji's data directory; the agent keeps its state in `<data_dir>/agent`.
    pub data_dir: PathBuf,
    /// An existing CRI socket; None starts a managed containerd.
    pub container_runtime_endpoint: Option<PathBuf>,
    /// A k3s-format registries.yaml for the managed containerd.
    pub registries: Option<PathBuf>,
    /// The CNI bridge of the managed containerd (distinct per node on one machine).
    pub bridge_name: String,
    pub cni_bin_dir: PathBuf,
    /// The kubelet's HTTPS port (0: any free port, reported in the node's daemonEndpoints).
    pub kubelet_port: u16,
    pub cluster_dns: String,
    pub cluster_domain: String,
    /// Container log rotation (`--container-log-max-size`, `--container-log-max-files`).
    pub log_rotation: crate::logs::LogRotation,
    /// The node's InternalIP and underlay address (`--node-ip`); default: found from the routes.
    pub node_ip: Option<String>,
    /// The pod network across nodes (`--flannel-backend` and friends).
    pub flannel: crate::flannel::FlannelOptions,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            node_name: node::hostname(),
            data_dir: PathBuf::from("/var/lib/kaji"),
            container_runtime_endpoint: None,
            registries: None,
            bridge_name: "kaji0".into(),
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            kubelet_port: 10250,
            cluster_dns: "10.43.0.10".into(),
            cluster_domain: "cluster.local".into(),
            log_rotation: crate::logs::LogRotation::default(),
            node_ip: None,
            flannel: crate::flannel::FlannelOptions::default(),
        }
    }
}

impl AgentOptions {
    pub fn agent_dir(&self) -> PathBuf {
        self.data_dir.join("agent")
    }

    /// The managed containerd's options for a podCIDR.
    pub fn containerd_options(&self, pod_cidr: &str) -> ContainerdOptions {
        ContainerdOptions {
            state_dir: self.agent_dir().join("containerd"),
            pod_cidr: pod_cidr.to_string(),
            registries: self.registries.clone(),
            cni_bin_dir: self.cni_bin_dir.clone(),
            bridge_name: self.bridge_name.clone(),
            network_name: format!("kaji-{}", self.bridge_name),
            ip_masq: true,
            mtu: None,
        }
    }
}

/// Runs the agent until the process ends (or a component fails).
pub async fn run(client: kube::Client, opts: AgentOptions) -> Result<()> {
    run_with_nodes(client, None, opts).await
}

/// [`run`], with the Node informer the pod network watches (one of a client allowed to list
/// Nodes, e.g. the proxy's); None makes one with the kubelet's client.
pub async fn run_with_nodes(
    client: kube::Client,
    nodes: Option<Arc<kaji_runtime::informer::Informer<Node>>>,
    opts: AgentOptions,
) -> Result<()> {
    let started = Instant::now();
    let agent_dir = opts.agent_dir();
    std::fs::create_dir_all(&agent_dir)
        .with_context(|| format!("creating {}", agent_dir.display()))?;
    // The server first: its port goes into the node's daemonEndpoints. Until the runtime is up
    // it has nothing to serve, so it starts with the CRI client below.
    let listener_port = opts.kubelet_port;
    let mut facts = node::NodeFacts::read(&opts.node_name, &agent_dir, listener_port);
    if let Some(ip) = &opts.node_ip {
        facts.internal_ip = ip.clone();
    }
    let mut delay = Duration::from_millis(100);
    while let Err(e) = node::register(&client, &facts).await {
        tracing::warn!(error = %format!("{e:#}"), "registering the node");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    let _ = node::post_status(&client, &facts.name, &node::status(&facts, None, &[], None)).await;
    let mut network = None;
    let (socket, managed) = match &opts.container_runtime_endpoint {
        Some(s) => (s.clone(), None),
        None => {
            let cidr = node::wait_for_pod_cidr(&client, &facts.name).await?;
            let mut copts = opts.containerd_options(&cidr);
            // The pod network across nodes decides the pods' MTU and who masquerades; a node
            // whose overlay cannot be set up still runs pods, masqueraded by the bridge.
            match crate::flannel::setup(
                &client,
                &opts.flannel,
                &facts.name,
                &facts.internal_ip,
                &cidr,
            )
            .await
            {
                Ok(Some(n)) => {
                    copts.ip_masq = false;
                    copts.mtu = Some(n.pod_mtu);
                    network = Some(n);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "setting up the pod network across nodes; pods stay on this node's network")
                }
            }
            let m = ManagedContainerd::start(copts)
                .await
                .context("starting containerd")?;
            (m.socket().to_path_buf(), Some(m))
        }
    };
    let mut cri = Cri::connect(&socket, Duration::from_secs(30)).await?;
    let version = cri.version().await?;
    let runtime_version = format!("{}://{}", version.runtime_name, version.runtime_version);
    let names = vec![
        facts.name.clone(),
        facts.hostname.clone(),
        facts.internal_ip.clone(),
        "localhost".into(),
        "127.0.0.1".into(),
    ];
    let pki_dir = agent_dir.join("pki");
    let certs = server::serving_certificate(&client, &facts.name, &names, &pki_dir).await?;
    let (port, serve) = server::bind(cri.clone(), opts.kubelet_port, &certs).await?;
    facts.kubelet_port = port;
    let images = node::images(&mut cri).await;
    node::post_status(
        &client,
        &facts.name,
        &node::status(&facts, Some(&runtime_version), &images, None),
    )
    .await?;
    tracing::info!(node = %facts.name, runtime = %runtime_version, kubelet_port = port, elapsed_ms = started.elapsed().as_millis() as u64, "node agent ready");
    let shared = Arc::new(Shared {
        client: client.clone(),
        cri: cri.clone(),
        node_name: facts.name.clone(),
        node_ip: facts.internal_ip.clone(),
        agent_dir: agent_dir.clone(),
        recorder: pods::events::Recorder::new(client.clone(), facts.name.clone()),
        runtime_name: version.runtime_name.clone(),
        cluster_dns: opts.cluster_dns.clone(),
        cluster_domain: opts.cluster_domain.clone(),
        node_cpu: facts.cpu.clone(),
        node_memory: facts.memory.clone(),
        image_backoff: Default::default(),
        tokens: Default::default(),
    });
    let client_for_nodes = client.clone();
    let mut set = tokio::task::JoinSet::new();
    set.spawn(crate::logs::run(cri.clone(), opts.log_rotation));
    set.spawn(crate::volumes::local_path::run(
        client.clone(),
        facts.name.clone(),
    ));
    set.spawn(async move {
        node::heartbeat(client, cri, facts, runtime_version).await;
        Ok(())
    });
    set.spawn(serve);
    set.spawn(pods::run(shared));
    if let Some(network) = network {
        let nodes = nodes.unwrap_or_else(|| {
            let factory = kaji_runtime::informer::Factory::new(client_for_nodes.clone());
            factory.start();
            factory.informer::<Node>()
        });
        set.spawn(network.run(nodes));
    }
    let r = tokio::select! {
        r = set.join_next() => match r { Some(r) => r.map_err(anyhow::Error::from).and_then(|r| r), None => Ok(()) },
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    // Containers keep running when the agent stops (a restarted agent adopts them).
    if let Some(m) = managed {
        let _ = m.stop_keep_containers().await;
    }
    r
}
