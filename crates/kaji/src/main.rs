//! The `kaji` binary: parses flags and wires the components together. Nothing else lives here.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod killall;

#[derive(Parser)]
#[command(name = "kaji", version, about = "Kaji: a small Kubernetes in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (API server with its embedded store, controllers), k3s-style.
    Server(ServerArgs),
    /// Run the controller manager alone against an API server.
    ControllerManager(ControllerManagerArgs),
    /// Run the scheduler alone against an API server (leader-elected: several may run).
    Scheduler(SchedulerArgs),
    /// Run a node agent that joins a cluster (the kubelet, or hollow nodes with --hollow).
    Agent(AgentArgs),
    /// Run the service proxy alone against an API server (nftables; root).
    Proxy(ProxyArgs),
    /// Stop everything of a data dir (k3s-killall.sh): kaji, containerd, shims and containers,
    /// mounts, the CNI bridge, the proxy's nftables table, the DNS address. State stays.
    Killall(killall::KillallArgs),
}

/// Durations as upstream flags write them: `40s`, `5m`, `1h`, `500ms`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?}")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Parser)]
struct ServerArgs {
    /// Where state, certificates and the kubeconfig live.
    #[arg(long, short = 'd', default_value = "/var/lib/kaji")]
    data_dir: PathBuf,
    /// Address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// Run without the node agent (`--disable-agent=false` turns it back on; the last one wins).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set, overrides_with = "disable_agent")]
    disable_agent: bool,
    #[command(flatten)]
    node: NodeArgs,
    /// The pod network: each node gets a /24 of it.
    #[arg(long, default_value = "10.42.0.0/16", value_parser = kaji_controllers::nodeipam::parse_cidr)]
    cluster_cidr: (std::net::Ipv4Addr, u8),
    /// Write the admin kubeconfig here instead of `<data-dir>/kubeconfig.yaml`.
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
    /// Turn off built-in components (k3s's flag): `servicelb`, `ingress` (k3s's `traefik` works
    /// too). Repeatable or comma-separated.
    #[arg(long, value_delimiter = ',')]
    disable: Vec<String>,
    /// Store history kept for watches and consistent lists, in revisions (0: no revision window).
    /// History older than both windows is compacted, as kube-apiserver's periodic etcd compaction.
    #[arg(long, default_value_t = 10_000)]
    store_history_revisions: u64,
    /// Store history kept, in seconds (0: no time window).
    #[arg(long, default_value_t = 300)]
    store_history_seconds: u64,
    /// Run N hollow nodes in-process in place of the real node agent (a simulation for tests).
    #[arg(long, default_value_t = 0)]
    hollow_nodes: usize,
    /// CPU capacity of each hollow node.
    #[arg(long, default_value = "4")]
    hollow_node_cpu: String,
    /// Memory capacity of each hollow node.
    #[arg(long, default_value = "16Gi")]
    hollow_node_memory: String,
    /// Do not run the controller manager in-process.
    #[arg(long)]
    disable_controllers: bool,
    /// Do not run the scheduler in-process.
    #[arg(long)]
    disable_scheduler: bool,
    /// How long a node may miss heartbeats before it is marked NotReady/Unknown.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
    /// Toleration seconds for node.kubernetes.io/not-ready added to every pod.
    #[arg(long, default_value_t = 300)]
    default_not_ready_toleration_seconds: i64,
    /// Toleration seconds for node.kubernetes.io/unreachable added to every pod.
    #[arg(long, default_value_t = 300)]
    default_unreachable_toleration_seconds: i64,
}

/// The node agent's flags, shared by `kaji server` (in-process agent) and `kaji agent`.
#[derive(clap::Args)]
struct NodeArgs {
    /// Node name of the agent (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// An existing CRI socket (default: start a managed containerd).
    #[arg(long)]
    container_runtime_endpoint: Option<PathBuf>,
    /// Registry mirrors and settings, k3s's registries.yaml format (default: /etc/kaji/registries.yaml if it exists).
    #[arg(long)]
    registries: Option<PathBuf>,
    /// The CNI bridge of the managed containerd (one per node on a machine).
    #[arg(long, default_value = "kaji0")]
    cni_bridge_name: String,
    /// The kubelet's HTTPS port (0: any free port, published in the node's daemonEndpoints).
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// Rotate a container's log when it grows past this size (upstream kubelet flag).
    #[arg(long, default_value = "10Mi", value_parser = parse_size)]
    container_log_max_size: u64,
    /// Log files kept per container, the live one included (upstream kubelet flag; at least 2).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..))]
    container_log_max_files: u16,
    #[command(flatten)]
    network: NetworkArgs,
    /// HTTP port of the built-in ingress controller.
    #[arg(long, default_value_t = 80)]
    ingress_http_port: u16,
    /// HTTPS port of the built-in ingress controller.
    #[arg(long, default_value_t = 443)]
    ingress_https_port: u16,
}

/// The Service network, shared by the API server (allocation, the `kube-dns` Service) and every
/// node (proxy, DNS, the pods' resolv.conf).
#[derive(clap::Args, Clone)]
struct NetworkArgs {
    /// The Service IP range (k3s's flag): ClusterIPs come from it, and every address of it that no
    /// Service holds is refused on the nodes.
    #[arg(long, default_value = "10.43.0.0/16")]
    service_cidr: kaji_api::cidr::Cidr,
    /// The cluster DNS address (default: the 10th address of the service range, 10.43.0.10).
    #[arg(long)]
    cluster_dns: Option<std::net::Ipv4Addr>,
    /// The cluster domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The service proxy's nftables table (inet family); default `kaji-proxy`.
    #[arg(long, default_value = "kaji-proxy")]
    proxy_table: String,
    /// Where the proxy serves `/metrics` (kube-proxy's default; `off` for none).
    #[arg(long, default_value = "127.0.0.1:10249")]
    proxy_metrics_bind_address: String,
    /// Resolvers the cluster DNS forwards other names to (default: those of /etc/resolv.conf).
    #[arg(long, value_delimiter = ',')]
    dns_upstreams: Vec<std::net::SocketAddr>,
    /// Where the cluster DNS serves `/metrics` (CoreDNS's port; `off` for none).
    #[arg(long, default_value = "127.0.0.1:9153")]
    dns_metrics_bind_address: String,
}

impl NetworkArgs {
    fn cluster_dns(&self) -> std::net::Ipv4Addr {
        self.cluster_dns.unwrap_or_else(|| self.service_cidr.nth(10))
    }
}

fn optional_addr(s: &str) -> Result<Option<std::net::SocketAddr>> {
    if s == "off" || s.is_empty() {
        return Ok(None);
    }
    Ok(Some(s.parse().with_context(|| format!("{s:?} is not an address such as 127.0.0.1:10249"))?))
}

#[derive(Parser)]
struct ProxyArgs {
    #[arg(long)]
    kubeconfig: PathBuf,
    /// This node's name (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    #[command(flatten)]
    network: NetworkArgs,
}

#[derive(Parser)]
struct ControllerManagerArgs {
    #[arg(long)]
    kubeconfig: PathBuf,
    /// The pod network: each node gets a /24 of it.
    #[arg(long, default_value = "10.42.0.0/16", value_parser = kaji_controllers::nodeipam::parse_cidr)]
    cluster_cidr: (std::net::Ipv4Addr, u8),
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
}

#[derive(Parser)]
struct SchedulerArgs {
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Identity in the leader-election Lease (default: a name with the process id).
    #[arg(long)]
    identity: Option<String>,
}

#[derive(Parser)]
struct AgentArgs {
    /// API server URL, e.g. https://10.0.0.1:6443.
    #[arg(long)]
    server: String,
    /// File holding the join token (`<data-dir>/token` on the server).
    #[arg(long)]
    token_file: PathBuf,
    #[command(flatten)]
    node: NodeArgs,
    /// Where the agent keeps its state (pod logs, volumes, the managed containerd).
    #[arg(long, short = 'd', default_value = "/var/lib/kaji")]
    data_dir: PathBuf,
    /// Run hollow (simulated) nodes instead of the real agent.
    #[arg(long)]
    hollow: bool,
    /// How many hollow nodes.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Name prefix of the hollow nodes.
    #[arg(long, default_value = "hollow-node")]
    node_name_prefix: String,
    #[arg(long, default_value = "4")]
    hollow_node_cpu: String,
    #[arg(long, default_value = "16Gi")]
    hollow_node_memory: String,
    /// Lease duration of the nodes (upstream kubelet flag); leases are renewed every quarter of it.
    #[arg(long, default_value_t = 40)]
    node_lease_duration_seconds: u64,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KAJI_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Plain text when stderr is a file or a pipe (a service's log, a test's capture).
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Server(args) => rt.block_on(server(args)),
        Command::ControllerManager(args) => rt.block_on(async move {
            let client = client_from_kubeconfig(&args.kubeconfig).await?;
            let opts = kaji_controllers::Options {
                node_monitor_grace_period: args.node_monitor_grace_period,
                cluster_cidr: args.cluster_cidr,
                ..Default::default()
            };
            kaji_controllers::run(client, opts).await
        }),
        Command::Scheduler(args) => rt.block_on(async move {
            let client = client_from_kubeconfig(&args.kubeconfig).await?;
            let mut opts = kaji_scheduler::Options::default();
            if let Some(id) = args.identity {
                opts.identity = id;
            }
            kaji_scheduler::run(client, opts).await
        }),
        Command::Agent(args) => rt.block_on(agent(args)),
        Command::Proxy(args) => rt.block_on(async move {
            let client = client_from_kubeconfig(&args.kubeconfig).await?;
            let node = args.node_name.clone().unwrap_or_else(kaji_kubelet::node::hostname);
            let factory = kaji_runtime::informer::Factory::new(client);
            factory.start();
            kaji_proxy::run(factory, proxy_options(&node, &args.network)?).await
        }),
        Command::Killall(args) => rt.block_on(killall::run(args)),
    }
}

async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(cfg)?)
}

async fn agent(args: AgentArgs) -> Result<()> {
    let token = std::fs::read_to_string(&args.token_file).with_context(|| format!("reading {}", args.token_file.display()))?;
    let client = kaji_kubelet::join::client(&args.server, &token).await?;
    if !args.hollow {
        let mut spokes = tokio::task::JoinSet::new();
        spawn_node(&mut spokes, &client, &args.data_dir, &args.node, &[])?;
        return match spokes.join_next().await {
            Some(r) => r?,
            None => Ok(()),
        };
    }
    let opts = kaji_kubelet::hollow::HollowOptions {
        nodes: args.nodes,
        name_prefix: args.node_name_prefix,
        cpu: args.hollow_node_cpu,
        memory: args.hollow_node_memory,
        heartbeat: Duration::from_millis(args.node_lease_duration_seconds.max(1) * 250),
        ..Default::default()
    };
    kaji_kubelet::hollow::run(client, opts).await
}

fn proxy_options(node_name: &str, net: &NetworkArgs) -> Result<kaji_proxy::ProxyOptions> {
    let mut opts = kaji_proxy::ProxyOptions::new(node_name, net.service_cidr, net.cluster_dns());
    opts.table = net.proxy_table.clone();
    opts.metrics_addr = optional_addr(&net.proxy_metrics_bind_address)?;
    Ok(opts)
}

/// Everything that runs on a real node, as spokes: the kubelet, the service proxy, the cluster
/// DNS and the ingress controller (unless `--disable ingress`).
fn spawn_node(
    spokes: &mut tokio::task::JoinSet<Result<()>>,
    client: &kube::Client,
    data_dir: &Path,
    node: &NodeArgs,
    disable: &[String],
) -> Result<()> {
    let opts = agent_options(data_dir, node);
    let net = &node.network;
    // The machine-wide names this node uses, for `kaji killall`.
    killall::NodeSettings {
        cni_bridge_name: node.container_runtime_endpoint.is_none().then(|| node.cni_bridge_name.clone()),
        proxy_table: net.proxy_table.clone(),
        cluster_dns: net.cluster_dns(),
    }
    .write(data_dir)?;
    // One informer per kind for the node's spokes (the proxy, DNS and ingress all read Services
    // and EndpointSlices); informers they register after this start at once.
    let factory = kaji_runtime::informer::Factory::new(client.clone());
    factory.start();
    spokes.spawn(kaji_proxy::run(factory.clone(), proxy_options(&opts.node_name, net)?));
    let dns = kaji_dns::DnsOptions {
        listen_ip: std::net::IpAddr::V4(net.cluster_dns()),
        port: 53,
        cluster_domain: net.cluster_domain.clone(),
        upstreams: net.dns_upstreams.clone(),
        metrics_addr: optional_addr(&net.dns_metrics_bind_address)?,
    };
    spokes.spawn(keep_running("the cluster DNS", kaji_dns::run(factory.clone(), dns)));
    if !disable.iter().any(|d| d == "ingress" || d == "traefik") {
        let node_ips = kaji_kubelet::node::internal_ip().and_then(|ip| ip.parse().ok()).into_iter().collect();
        let ingress = kaji_ingress::IngressOptions {
            http_addr: std::net::SocketAddr::from(([0, 0, 0, 0], node.ingress_http_port)),
            https_addr: std::net::SocketAddr::from(([0, 0, 0, 0], node.ingress_https_port)),
            class_name: "kaji".into(),
            node_ips,
        };
        spokes.spawn(keep_running("the ingress controller", kaji_ingress::run(factory.clone(), ingress)));
    }
    spokes.spawn(kaji_kubelet::agent::run(client.clone(), opts));
    Ok(())
}

/// A node add-on whose failure (a port taken, say) is logged without stopping the node, as a
/// crashing CoreDNS or Traefik pod would not stop a k3s node.
async fn keep_running(what: &'static str, fut: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    if let Err(e) = fut.await {
        tracing::error!(error = %format!("{e:#}"), "{what} stopped; the rest of the node keeps running");
    }
    std::future::pending().await
}

/// The real node agent's options from the flags shared by `server` and `agent`.
fn agent_options(data_dir: &Path, node: &NodeArgs) -> kaji_kubelet::agent::AgentOptions {
    let default_registries = PathBuf::from("/etc/kaji/registries.yaml");
    let defaults = kaji_kubelet::agent::AgentOptions::default();
    kaji_kubelet::agent::AgentOptions {
        node_name: node.node_name.clone().unwrap_or(defaults.node_name.clone()),
        data_dir: data_dir.to_path_buf(),
        container_runtime_endpoint: node.container_runtime_endpoint.clone(),
        registries: node.registries.clone().or_else(|| default_registries.exists().then_some(default_registries)),
        bridge_name: node.cni_bridge_name.clone(),
        kubelet_port: node.kubelet_port,
        log_rotation: kaji_kubelet::logs::LogRotation {
            max_size: node.container_log_max_size,
            max_files: usize::from(node.container_log_max_files),
        },
        cluster_dns: node.network.cluster_dns().to_string(),
        cluster_domain: node.network.cluster_domain.clone(),
        ..defaults
    }
}

/// A size such as `10Mi`, `512Ki`, `1G` or `1000` (bytes), as Kubernetes quantities.
fn parse_size(s: &str) -> Result<u64, String> {
    let units: [(&str, u64); 8] = [("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40), ("k", 1_000), ("M", 1_000_000), ("G", 1_000_000_000), ("T", 1_000_000_000_000)];
    let (num, mult) = units.iter().find_map(|(u, m)| s.strip_suffix(u).map(|n| (n, *m))).unwrap_or((s, 1));
    let n: u64 = num.trim().parse().map_err(|_| format!("{s:?} is not a size such as 10Mi"))?;
    n.checked_mul(mult).filter(|n| *n > 0).ok_or_else(|| format!("{s:?} is out of range"))
}

/// The embedded store's history windows from the flags.
fn store_options(args: &ServerArgs) -> kaji_store::RedbOptions {
    kaji_store::RedbOptions {
        history_revisions: (args.store_history_revisions > 0).then_some(args.store_history_revisions),
        history_duration: (args.store_history_seconds > 0).then(|| Duration::from_secs(args.store_history_seconds)),
        ..kaji_store::RedbOptions::default()
    }
}

async fn server(args: ServerArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let db_dir = args.data_dir.join("server").join("db");
    std::fs::create_dir_all(&db_dir).with_context(|| format!("creating {}", db_dir.display()))?;
    let store = kaji_store::RedbStore::open(&db_dir.join("state.redb"), store_options(&args))
        .context("opening the embedded store")?;
    let config = kaji_apiserver::Config {
        data_dir: args.data_dir.clone(),
        bind_address: args.bind_address,
        port: args.https_listen_port,
        kubeconfig: args.write_kubeconfig.clone(),
        admission: kaji_apiserver::registry::Admission {
            default_not_ready_toleration_seconds: args.default_not_ready_toleration_seconds,
            default_unreachable_toleration_seconds: args.default_unreachable_toleration_seconds,
        },
        service_cidr: args.node.network.service_cidr,
        cluster_dns: args.node.network.cluster_dns(),
    };
    let running = kaji_apiserver::start(config, Arc::new(store)).await?;
    tracing::info!(addr = %running.addr, elapsed_ms = started.elapsed().as_millis() as u64, "API server ready");
    eprintln!(
        "Kaji is running: https://{}\n  export KUBECONFIG={}\n  kubectl get namespaces",
        running.addr,
        running.kubeconfig.display()
    );
    // The spokes are clients of the API server, like any other; in-process only for convenience.
    let client = client_from_kubeconfig(&running.kubeconfig).await?;
    let mut spokes = tokio::task::JoinSet::new();
    if !args.disable_controllers {
        let opts = kaji_controllers::Options {
            node_monitor_grace_period: args.node_monitor_grace_period,
            cluster_cidr: args.cluster_cidr,
            servicelb: !args.disable.iter().any(|d| d == "servicelb"),
        };
        spokes.spawn(kaji_controllers::run(client.clone(), opts));
    }
    if !args.disable_scheduler {
        spokes.spawn(kaji_scheduler::run(client.clone(), kaji_scheduler::Options::default()));
    }
    if args.hollow_nodes > 0 {
        let opts = kaji_kubelet::hollow::HollowOptions {
            nodes: args.hollow_nodes,
            cpu: args.hollow_node_cpu.clone(),
            memory: args.hollow_node_memory.clone(),
            // Renew leases well within the grace period, even when a test shortens it.
            heartbeat: (args.node_monitor_grace_period / 4).min(Duration::from_secs(10)),
            ..Default::default()
        };
        spokes.spawn(kaji_kubelet::hollow::run(client.clone(), opts));
    } else if !args.disable_agent {
        spawn_node(&mut spokes, &client, &args.data_dir, &args.node, &args.disable)?;
    }
    tokio::select! {
        r = running.serve => r??,
        Some(r) = spokes.join_next() => r??,
        _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
    }
    Ok(())
}
