//! The `kaji` binary: parses flags and wires the components together. Nothing else lives here.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod dashboard;
mod etcd;
mod ha;
mod killall;
mod users;

#[derive(Parser)]
#[command(name = "kaji", version, about = "Kaji: a small Kubernetes in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (API server with its embedded store, controllers), k3s-style.
    Server(Box<ServerArgs>),
    /// Run the controller manager alone against an API server.
    ControllerManager(ControllerManagerArgs),
    /// Run the scheduler alone against an API server (leader-elected: several may run).
    Scheduler(SchedulerArgs),
    /// Run a node agent that joins a cluster (the kubelet, or hollow nodes with --hollow).
    Agent(Box<AgentArgs>),
    /// Run the service proxy alone against an API server (nftables; root).
    Proxy(ProxyArgs),
    /// Stop everything of a data dir (k3s-killall.sh): kaji, containerd, shims and containers,
    /// mounts, the CNI bridge, the proxy's nftables table, the DNS address. State stays.
    Killall(killall::KillallArgs),
    /// Print a kubeconfig for a person: a client certificate (CN user, O groups) from the cluster CA.
    Kubeconfig(users::KubeconfigArgs),
    /// Bearer tokens for people (`create`), kept in the server's token file.
    Token(users::TokenArgs),
    /// Print a URL that opens the dashboard logged in (as `minikube dashboard`), or serve it
    /// for a remote cluster (`--kubeconfig F --listen 127.0.0.1:PORT`).
    Dashboard(dashboard::DashboardArgs),
    /// Save, list or restore snapshots of the managed etcd (k3s's `etcd-snapshot`).
    EtcdSnapshot(etcd::EtcdSnapshotArgs),
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
    /// Address the API server listens on (the last one wins, so a test can widen its default).
    #[arg(long, default_value = "0.0.0.0", overrides_with = "bind_address")]
    bind_address: IpAddr,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// The address this server is listed under in the `kubernetes` Service's endpoints, which
    /// agents fail over between (k3s's flag; default: --bind-address unless unspecified or
    /// loopback, else the default route's address).
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// Run without the node agent (`--disable-agent=false` turns it back on; the last one wins).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set, overrides_with = "disable_agent")]
    disable_agent: bool,
    #[command(flatten)]
    node: NodeArgs,
    /// --cluster-init, --server, --token, --cluster-reset: servers on a managed etcd (`ha.rs`).
    #[command(flatten)]
    ha: ha::HaArgs,
    /// The pod network: each node gets a /24 of it.
    #[arg(long, default_value = "10.42.0.0/16", value_parser = kaji_controllers::nodeipam::parse_cidr)]
    cluster_cidr: (std::net::Ipv4Addr, u8),
    /// Write the admin kubeconfig here instead of `<data-dir>/kubeconfig.yaml`.
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
    /// Turn off built-in components (k3s's flag): `servicelb`, `ingress` (k3s's `traefik` works
    /// too), `dashboard`. Repeatable or comma-separated.
    #[arg(long, value_delimiter = ',')]
    disable: Vec<String>,
    /// Store history kept for watches and consistent lists, in revisions (0: no revision window).
    /// History older than both windows is compacted, as kube-apiserver's periodic etcd compaction.
    #[arg(long, default_value_t = 10_000)]
    store_history_revisions: u64,
    /// Store history kept, in seconds (0: no time window).
    #[arg(long, default_value_t = 300)]
    store_history_seconds: u64,
    /// MiB of the embedded store's pages kept in the server's memory; beyond them pages are read
    /// through the kernel's page cache. More makes big lists cheaper at that much more RSS.
    #[arg(long, default_value_t = kaji_store::RedbOptions::default().cache_bytes >> 20)]
    store_cache_mib: usize,
    /// Keep the state in etcd instead of the embedded store (k3s's flag): `http(s)://host:port`,
    /// comma-separated for several members. Compaction is then kube-apiserver's: every
    /// --store-history-seconds (0: never), to the revision seen one interval earlier; the
    /// watch cache in front of etcd keeps the last --store-history-revisions events (0: none).
    #[arg(long, value_delimiter = ',')]
    datastore_endpoint: Vec<String>,
    /// CA bundle of etcd's serving certificates (for https endpoints).
    #[arg(long)]
    datastore_cafile: Option<PathBuf>,
    /// Client certificate for etcd.
    #[arg(long)]
    datastore_certfile: Option<PathBuf>,
    /// Client key for etcd.
    #[arg(long)]
    datastore_keyfile: Option<PathBuf>,
    /// Put in front of every etcd key, so that several clusters can share one etcd (tests).
    #[arg(long, default_value = "")]
    datastore_key_prefix: String,
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
    /// How long a leader's Lease lasts without renewal before a standby server's controller
    /// manager or scheduler takes over (upstream's --leader-elect-lease-duration).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_elect_lease_duration: Duration,
    /// How long a leader keeps trying to renew before it stops leading (--leader-elect-renew-deadline).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_elect_renew_deadline: Duration,
    /// How often candidates try to take or renew the Lease (--leader-elect-retry-period).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: Duration,
    #[command(flatten)]
    hpa: HpaArgs,
    /// Terminated pods kept before the pod garbage collector deletes the oldest (0: keep all).
    #[arg(long, default_value_t = 12_500)]
    terminated_pod_gc_threshold: usize,
    /// How often the metrics API's provider scrapes the kubelets' /metrics/resource
    /// (metrics-server's flag; tests shorten it).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    metric_resolution: Duration,
    /// Toleration seconds for node.kubernetes.io/not-ready added to every pod.
    #[arg(long, default_value_t = 300)]
    default_not_ready_toleration_seconds: i64,
    /// Toleration seconds for node.kubernetes.io/unreachable added to every pod.
    #[arg(long, default_value_t = 300)]
    default_unreachable_toleration_seconds: i64,
    /// Requests without credentials run as system:anonymous (false: 401), as kube-apiserver's.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    anonymous_auth: bool,
    /// Authorizers in order (Node, RBAC, AlwaysAllow, AlwaysDeny), as kube-apiserver's.
    #[arg(long, default_value = "Node,RBAC", value_delimiter = ',')]
    authorization_mode: Vec<String>,
    /// Write audit.k8s.io/v1 Events (Metadata level), one JSON line each, to this file.
    #[arg(long)]
    audit_log_path: Option<PathBuf>,
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
    /// The node's InternalIP, also its address on the pod network's underlay (k3s's flag;
    /// default: the address of the default route's interface).
    #[arg(long)]
    node_ip: Option<std::net::Ipv4Addr>,
    /// The pod network across nodes (k3s's flag): `vxlan`, `host-gw` (nodes on one L2 segment)
    /// or `none` (pods reach other nodes' pods only through masquerading).
    #[arg(long, default_value = "vxlan")]
    flannel_backend: kaji_kubelet::flannel::Backend,
    /// The underlay interface of the pod network (k3s's flag; default: the one holding the node IP).
    #[arg(long)]
    flannel_iface: Option<String>,
    /// The VXLAN device of the vxlan backend (one per node on a machine).
    #[arg(long, default_value = "kaji.vxlan")]
    flannel_vxlan_device: String,
    /// The UDP port of the vxlan backend (flannel's; the same on every node of a cluster).
    #[arg(long, default_value_t = 8472)]
    flannel_vxlan_port: u16,
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

/// The HPA controller's settings (upstream kube-controller-manager flags; tests shorten them).
#[derive(clap::Args, Clone)]
struct HpaArgs {
    /// How often each HorizontalPodAutoscaler is synced.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    horizontal_pod_autoscaler_sync_period: Duration,
    /// The scale-down stabilization window of HPAs without behavior.scaleDown.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    horizontal_pod_autoscaler_downscale_stabilization: Duration,
    /// The usage/target ratio band around 1.0 within which no rescale happens.
    #[arg(long, default_value_t = 0.1)]
    horizontal_pod_autoscaler_tolerance: f64,
    /// After a pod starts, its CPU samples count only once it is Ready (and sampled after).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    horizontal_pod_autoscaler_cpu_initialization_period: Duration,
    /// After a pod starts, how long a not-Ready pod may still become ready without counting as unready.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    horizontal_pod_autoscaler_initial_readiness_delay: Duration,
}

impl HpaArgs {
    fn settings(&self) -> kaji_controllers::podautoscaler::Settings {
        kaji_controllers::podautoscaler::Settings {
            sync_period: self.horizontal_pod_autoscaler_sync_period,
            downscale_stabilization: self.horizontal_pod_autoscaler_downscale_stabilization,
            tolerance: self.horizontal_pod_autoscaler_tolerance,
            cpu_initialization_period: self.horizontal_pod_autoscaler_cpu_initialization_period,
            initial_readiness_delay: self.horizontal_pod_autoscaler_initial_readiness_delay,
        }
    }
}

fn pod_gc_settings(terminated_threshold: usize) -> kaji_controllers::podgc::Settings {
    kaji_controllers::podgc::Settings {
        terminated_threshold,
        ..Default::default()
    }
}

#[derive(Parser)]
struct ControllerManagerArgs {
    #[command(flatten)]
    hpa: HpaArgs,
    /// Terminated pods kept before the pod garbage collector deletes the oldest (0: keep all).
    #[arg(long, default_value_t = 12_500)]
    terminated_pod_gc_threshold: usize,
    #[arg(long)]
    kubeconfig: PathBuf,
    /// The pod network: each node gets a /24 of it.
    #[arg(long, default_value = "10.42.0.0/16", value_parser = kaji_controllers::nodeipam::parse_cidr)]
    cluster_cidr: (std::net::Ipv4Addr, u8),
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
    /// The CA certificate (PEM) the CSR signer issues cluster-scoped certificates with.
    #[arg(long, requires = "cluster_signing_key_file")]
    cluster_signing_cert_file: Option<PathBuf>,
    /// The CA's private key (PEM) for the CSR signer.
    #[arg(long, requires = "cluster_signing_cert_file")]
    cluster_signing_key_file: Option<PathBuf>,
    /// The longest life of a signed certificate (expirationSeconds may ask for less).
    #[arg(long, default_value = "8760h", value_parser = parse_duration)]
    cluster_signing_duration: Duration,
    /// The service-account signing key (PKCS#8 PEM) legacy token Secrets are signed with.
    #[arg(long, requires = "root_ca_file")]
    service_account_private_key_file: Option<PathBuf>,
    /// The CA certificate that goes into legacy token Secrets' `ca.crt`.
    #[arg(long)]
    root_ca_file: Option<PathBuf>,
}

#[derive(Parser)]
struct SchedulerArgs {
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Identity in the leader-election Lease (default: `<hostname>_<uuid>`, as upstream).
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
    /// Port of the agent's load balancer over the servers on 127.0.0.1 (k3s's flag; 0: any free
    /// port; when 6444 is taken, another agent on this machine, any free port is used).
    #[arg(long, default_value_t = 6444)]
    lb_server_port: u16,
}

/// jemalloc, not glibc's malloc, allocates for the whole process. Measured with the scheduling
/// bench (5,000 hollow nodes, 10,000 pods; runs alternating the two builds):
/// - about a quarter of the server's CPU was in glibc's malloc and free (`_int_malloc`,
///   `_int_free`, `malloc_consolidate`, `unlink_chunk`), spread over the whole request path;
/// - with jemalloc, pods bound as fast as they can be created went from 902-1,166 to 1,467-1,554
///   a second, with 11.3-11.8 s of server CPU instead of 14.2-17.9 s; at 1,000 pods a second
///   offered, creation to bound p99 went from 306-1,355 ms to 9-17 ms;
/// - memory: the same RSS at 5,000 nodes (405-451 MiB); a minute after 3,000 pods were created
///   and deleted (50 hollow nodes), 222-226 MiB with the options below against glibc's 209-217
///   (idle 81 against 78), the same after a second burst as after the first; around the api
///   bench's 10,000 pods (10 s decay), a higher peak (613 against 545 MiB) and less 10 s after
///   the deletes (263 against 295).
///
/// mimalloc was measured too and left: no faster for lists, and 304 MiB after the burst.
/// glibc needed remedies that jemalloc does not: a fixed mmap threshold and a thread calling
/// `malloc_trim`, because its per-thread arenas kept what a burst freed.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (`_RJEM_MALLOC_CONF` in the environment adds to them):
/// - a background thread gives freed pages back to the kernel even when nothing else allocates
///   (an idle server), rather than only when an allocation happens to tick the decay;
/// - freed pages go back after about 1 s rather than 10: in the controllers bench (1,000
///   Deployments x 10) the API server's RSS at the end was 302 rather than 320-322 MiB, and at
///   5,000 hollow nodes 432 rather than 449 MiB, at the same speed.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 43] = b"background_thread:true,dirty_decay_ms:1000\0";

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
        Command::Server(args) => rt.block_on(server(*args)),
        Command::ControllerManager(args) => rt.block_on(async move {
            let client = client_from_kubeconfig(&args.kubeconfig, "kube-controller-manager").await?;
            let opts = kaji_controllers::Options {
                node_monitor_grace_period: args.node_monitor_grace_period,
                cluster_cidr: args.cluster_cidr,
                horizontal_pod_autoscaler: args.hpa.settings(),
                pod_gc: pod_gc_settings(args.terminated_pod_gc_threshold),
                cluster_signing: args.cluster_signing_cert_file.zip(args.cluster_signing_key_file).map(|(cert_file, key_file)| {
                    kaji_controllers::certificates::Signing { cert_file, key_file, duration: args.cluster_signing_duration }
                }),
                service_account_tokens: args.service_account_private_key_file.zip(args.root_ca_file).map(|(private_key_file, root_ca_file)| {
                    kaji_controllers::serviceaccount_tokens::Settings { private_key_file, root_ca_file }
                }),
                ..Default::default()
            };
            kaji_controllers::run(client, opts).await
        }),
        Command::Scheduler(args) => rt.block_on(async move {
            let client = client_from_kubeconfig(&args.kubeconfig, "kube-scheduler").await?;
            let mut opts = kaji_scheduler::Options::default();
            if let Some(id) = args.identity {
                opts.identity = id;
            }
            kaji_scheduler::run(client, opts).await
        }),
        Command::Agent(args) => rt.block_on(agent(*args)),
        Command::Proxy(args) => rt.block_on(async move {
            let client = client_from_kubeconfig(&args.kubeconfig, "kube-proxy").await?;
            let node = args.node_name.clone().unwrap_or_else(kaji_kubelet::node::hostname);
            let factory = kaji_runtime::informer::Factory::new(client);
            factory.start();
            kaji_proxy::run(factory, proxy_options(&node, &args.network)?).await
        }),
        Command::Killall(args) => rt.block_on(killall::run(args)),
        Command::Kubeconfig(args) => users::kubeconfig(args),
        Command::Token(args) => users::token(args),
        Command::Dashboard(args) => rt.block_on(dashboard::run(args)),
        Command::EtcdSnapshot(args) => etcd::snapshot(args),
    }
}

/// A client for one component. Its User-Agent names the component as upstream's binaries do
/// (`kube-controller-manager/v1.33.0 (linux/amd64) kaji/0.1.0`), so that the API server records
/// writes that name no field manager under the component's name in managedFields, as upstream.
async fn client_from_kubeconfig(path: &Path, component: &str) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?;
    let agent = format!(
        "{component}/{} ({}/{}) kaji/{}",
        kaji_apiserver::KUBE_VERSION,
        std::env::consts::OS,
        match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            a => a,
        },
        env!("CARGO_PKG_VERSION")
    );
    cfg.headers.push((http::header::USER_AGENT, http::HeaderValue::from_str(&agent)?));
    Ok(kube::Client::try_from(cfg)?)
}

async fn agent(args: AgentArgs) -> Result<()> {
    let token = std::fs::read_to_string(&args.token_file).with_context(|| format!("reading {}", args.token_file.display()))?;
    // Every client of the node goes through the load balancer over the servers (k3s's agent).
    let lb = agent_load_balancer(&args).await?;
    let server = lb.url();
    // The join token only gets the agent its own credentials (as k3s's agents).
    let joined = kaji_kubelet::join::client(&server, &token).await?;
    let client_as = |field: &'static str, value: String, component: &'static str| {
        let (joined, server) = (joined.clone(), server.clone());
        async move {
            let (cert, key, ca) = kaji_kubelet::join::client_certificate(&joined, field, &value).await?;
            kaji_kubelet::join::client_from_kubeconfig_text(&kaji_kubelet::join::kubeconfig(&server, &ca, &cert, &key), component).await
        }
    };
    if !args.hollow {
        let node_name = args.node.node_name.clone().unwrap_or_else(kaji_kubelet::node::hostname);
        let kubelet = kaji_kubelet::join::node_client(&server, &token, &node_name, &args.data_dir.join("agent")).await?;
        let services = client_as("user", "system:kube-proxy".into(), "kube-proxy").await?;
        tokio::spawn(lb.clone().follow_endpoints(services.clone()));
        let mut spokes = tokio::task::JoinSet::new();
        spawn_node(&mut spokes, None, &kubelet, &services, &args.data_dir, &args.node, &[])?;
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
    let reader = client_as("user", "kaji:hollow-nodes".into(), "kubelet").await?;
    tokio::spawn(lb.clone().follow_endpoints(client_as("user", "system:kube-proxy".into(), "kube-proxy").await?));
    kaji_kubelet::hollow::run(kaji_kubelet::hollow::Clients::over(reader, &opts), opts).await
}

/// The agent's load balancer on 127.0.0.1:--lb-server-port in front of --server.
async fn agent_load_balancer(args: &AgentArgs) -> Result<kaji_kubelet::loadbalancer::LoadBalancer> {
    use kaji_kubelet::loadbalancer::LoadBalancer;
    let at = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    match LoadBalancer::start(at(args.lb_server_port), &args.server).await {
        Err(e) if args.lb_server_port != 0 => {
            tracing::warn!(error = %format!("{e:#}"), "the load balancer's port is taken; using any free port");
            LoadBalancer::start(at(0), &args.server).await
        }
        r => r,
    }
}

fn proxy_options(node_name: &str, net: &NetworkArgs) -> Result<kaji_proxy::ProxyOptions> {
    let mut opts = kaji_proxy::ProxyOptions::new(node_name, net.service_cidr, net.cluster_dns());
    opts.table = net.proxy_table.clone();
    opts.metrics_addr = optional_addr(&net.proxy_metrics_bind_address)?;
    Ok(opts)
}

/// Everything that runs on a real node, as spokes: the kubelet (as `system:node:<name>`, with
/// `client`), the service proxy, the cluster DNS and the ingress controller (unless `--disable
/// ingress`; these three as `system:kube-proxy`, with `services`). Their informers are
/// `informers`'s (in `kaji server`, the control plane's), else a factory of their own.
fn spawn_node(
    spokes: &mut tokio::task::JoinSet<Result<()>>,
    informers: Option<&kaji_runtime::informer::Factory>,
    client: &kube::Client,
    services: &kube::Client,
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
        flannel_device: (node.container_runtime_endpoint.is_none() && opts.flannel.backend == kaji_kubelet::flannel::Backend::Vxlan)
            .then(|| opts.flannel.vxlan_device.clone()),
        flannel_table: (node.container_runtime_endpoint.is_none() && opts.flannel.backend != kaji_kubelet::flannel::Backend::None)
            .then(|| opts.flannel.nft_table.clone()),
    }
    .write(data_dir)?;
    // One informer per kind for the node's spokes (the proxy, DNS and ingress all read Services
    // and EndpointSlices); informers they register after this start at once.
    let factory = match informers {
        Some(f) => f.with_client(services.clone()),
        None => kaji_runtime::informer::Factory::new(services.clone()),
    };
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
        let node_ips = opts.node_ip.clone().or_else(kaji_kubelet::node::internal_ip).and_then(|ip| ip.parse().ok()).into_iter().collect();
        let ingress = kaji_ingress::IngressOptions {
            http_addr: std::net::SocketAddr::from(([0, 0, 0, 0], node.ingress_http_port)),
            https_addr: std::net::SocketAddr::from(([0, 0, 0, 0], node.ingress_https_port)),
            class_name: "kaji".into(),
            node_ips,
        };
        spokes.spawn(keep_running("the ingress controller", kaji_ingress::run(factory.clone(), ingress)));
    }
    // The pod network watches Nodes through the node's informers (the kubelet may read its own Node only).
    spokes.spawn(kaji_kubelet::agent::run_with_nodes(client.clone(), Some(factory.informer()), opts));
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
        node_ip: node.node_ip.map(|ip| ip.to_string()),
        flannel: kaji_kubelet::flannel::FlannelOptions {
            backend: node.flannel_backend,
            iface: node.flannel_iface.clone(),
            vxlan_device: node.flannel_vxlan_device.clone(),
            vxlan_port: node.flannel_vxlan_port,
            // One masquerade table per node: named after its bridge (several nodes on a machine).
            nft_table: format!("kaji-flannel-{}", node.cni_bridge_name),
            ..Default::default()
        },
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

/// The leader election's timing from the flags, checked as upstream's (lease > renew deadline >
/// retry period; upstream multiplies the retry period by a 1.2 jitter factor).
fn leader_timing(args: &ServerArgs) -> Result<kaji_runtime::leader::Timing> {
    let t = kaji_runtime::leader::Timing {
        lease_duration: args.leader_elect_lease_duration,
        renew_deadline: args.leader_elect_renew_deadline,
        retry_period: args.leader_elect_retry_period,
    };
    // client-go's NewLeaderElector's checks and texts.
    if t.lease_duration <= t.renew_deadline {
        anyhow::bail!("leaseDuration must be greater than renewDeadline");
    }
    if t.renew_deadline <= t.retry_period.mul_f64(1.2) {
        anyhow::bail!("renewDeadline must be greater than retryPeriod*JitterFactor");
    }
    Ok(t)
}

/// The embedded store's history windows and page cache from the flags.
fn store_options(args: &ServerArgs) -> kaji_store::RedbOptions {
    kaji_store::RedbOptions {
        history_revisions: (args.store_history_revisions > 0).then_some(args.store_history_revisions),
        history_duration: (args.store_history_seconds > 0).then(|| Duration::from_secs(args.store_history_seconds)),
        cache_bytes: args.store_cache_mib << 20,
        ..kaji_store::RedbOptions::default()
    }
}

async fn server(mut args: ServerArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let timing = leader_timing(&args)?;
    if args.ha.cluster_reset {
        return etcd::cluster_reset(&args.data_dir, args.ha.cluster_reset_restore_path.as_deref());
    }
    // A managed etcd member (--cluster-init, --server, or one this data dir has) is the datastore.
    let critical = ha::Critical { cluster_cidr: format!("{}/{}", args.cluster_cidr.0, args.cluster_cidr.1), service_cidr: args.node.network.service_cidr.to_string() };
    let managed_etcd = ha::start(&args.ha, &args.data_dir, args.advertise_address.unwrap_or(args.bind_address), args.node.network.service_cidr.nth(1), &critical).await?;
    if let Some(m) = &managed_etcd {
        if args.datastore_endpoint.iter().any(|e| !e.is_empty()) {
            tracing::warn!("this server runs a managed etcd member (--cluster-init/--server); --datastore-endpoint is ignored");
        }
        args.datastore_endpoint = vec![m.endpoint.clone()];
        (args.datastore_cafile, args.datastore_certfile, args.datastore_keyfile) = (Some(m.tls.ca_file.clone()), Some(m.tls.cert_file.clone()), Some(m.tls.key_file.clone()));
    }
    let db_dir = args.data_dir.join("server").join("db");
    std::fs::create_dir_all(&db_dir).with_context(|| format!("creating {}", db_dir.display()))?;
    let store: Arc<dyn kaji_store::Store> = if args.datastore_endpoint.is_empty() {
        Arc::new(kaji_store::RedbStore::open(&db_dir.join("state.redb"), store_options(&args)).context("opening the embedded store")?)
    } else {
        let etcd = kaji_store::EtcdOptions {
            ca_file: args.datastore_cafile.clone(),
            cert_file: args.datastore_certfile.clone(),
            key_file: args.datastore_keyfile.clone(),
            key_prefix: args.datastore_key_prefix.clone(),
            ..kaji_store::EtcdOptions::new(args.datastore_endpoint.clone())
        };
        let etcd = kaji_store::EtcdStore::connect(etcd).await.context("connecting to etcd (--datastore-endpoint)")?;
        // Watches of the last --store-history-revisions events are served from memory over one etcd watch.
        let store: Arc<dyn kaji_store::Store> = match usize::try_from(args.store_history_revisions) {
            Ok(n) if n > 0 => Arc::new(kaji_store::WatchCache::new(etcd, n)),
            _ => Arc::new(etcd),
        };
        if args.store_history_seconds > 0 {
            kaji_store::spawn_compactor(store.clone(), Duration::from_secs(args.store_history_seconds));
        }
        store
    };
    let dashboard = (!args.disable.iter().any(|d| d == "dashboard")).then(kaji_dashboard::Dashboard::new);
    let config = kaji_apiserver::Config {
        data_dir: args.data_dir.clone(),
        bind_address: args.bind_address,
        port: args.https_listen_port,
        kubeconfig: args.write_kubeconfig.clone(),
        admission: kaji_apiserver::registry::Admission {
            default_not_ready_toleration_seconds: args.default_not_ready_toleration_seconds,
            default_unreachable_toleration_seconds: args.default_unreachable_toleration_seconds,
            // Without the controller manager nothing makes service accounts (see admission::service_account).
            service_account: !args.disable_controllers,
        },
        service_cidr: args.node.network.service_cidr,
        cluster_dns: args.node.network.cluster_dns(),
        metric_resolution: args.metric_resolution,
        auth: kaji_apiserver::auth::Options {
            anonymous: args.anonymous_auth,
            modes: args.authorization_mode.clone(),
            audit_log_path: args.audit_log_path.clone(),
        },
        extra: dashboard.clone().map(dashboard::handler),
    };
    let running = kaji_apiserver::start(config, store).await?;
    tracing::info!(addr = %running.addr, elapsed_ms = started.elapsed().as_millis() as u64, "API server ready");
    // Every live server in the `kubernetes` endpoints (the lease endpoint reconciler).
    let advertise_ip = args.advertise_address.unwrap_or_else(|| {
        if args.bind_address.is_unspecified() || args.bind_address.is_loopback() { kaji_apiserver::pki::advertise_ip() } else { args.bind_address }
    });
    kaji_apiserver::endpoint_reconciler::start(&running.server, kaji_apiserver::endpoint_reconciler::Advertised { ip: advertise_ip, port: running.addr.port() });
    eprintln!(
        "Kaji is running: https://{}\n  export KUBECONFIG={}\n  kubectl get namespaces",
        running.addr,
        running.kubeconfig.display()
    );
    // The spokes are clients of the API server, like any other; in-process only for convenience.
    // Each has its own identity (a client certificate from the cluster CA, kept under
    // <data-dir>/server/tls as k3s's client-*.crt, and a kubeconfig under <data-dir>/server/cred
    // or <data-dir>/agent), so RBAC and the Node authorizer judge it as upstream's.
    let pki = &running.server.pki;
    let url = format!("https://{}", running.server.advertise);
    let cred = args.data_dir.join("server").join("cred");
    let spoke = |name: &str, cn: &str, orgs: &[&str], kubeconfig: PathBuf| -> Result<PathBuf> {
        pki.write_client_kubeconfig(name, cn, orgs, &url, &kubeconfig)?;
        Ok(kubeconfig)
    };
    let controller_kubeconfig = spoke("controller", "system:kube-controller-manager", &[], cred.join("controller.kubeconfig"))?;
    let scheduler_kubeconfig = spoke("scheduler", "system:kube-scheduler", &[], cred.join("scheduler.kubeconfig"))?;
    let proxy_kubeconfig = spoke("kube-proxy", "system:kube-proxy", &[], cred.join("proxy.kubeconfig"))?;
    let mut spokes = tokio::task::JoinSet::new();
    // One informer factory for the process's spokes (controller manager, scheduler, the node's
    // proxy, DNS and ingress), each with its own client: every kind is watched and cached once,
    // where separate processes would each keep a copy (at 5,000 pods, ~45 MB).
    let mut informers: Option<kaji_runtime::informer::Factory> = None;
    let share = |shared: &mut Option<kaji_runtime::informer::Factory>, client: kube::Client| match shared {
        Some(f) => f.with_client(client),
        None => shared.insert(kaji_runtime::informer::Factory::new(client)).clone(),
    };
    if let Some(d) = dashboard {
        spokes.spawn(dashboard::run_in_server(d, running.server.clone(), running.kubeconfig.clone(), args.metric_resolution));
    }
    if !args.disable_controllers {
        let opts = kaji_controllers::Options {
            node_monitor_grace_period: args.node_monitor_grace_period,
            cluster_cidr: args.cluster_cidr,
            servicelb: !args.disable.iter().any(|d| d == "servicelb"),
            horizontal_pod_autoscaler: args.hpa.settings(),
            pod_gc: pod_gc_settings(args.terminated_pod_gc_threshold),
            cluster_signing: Some(kaji_controllers::certificates::Signing {
                cert_file: args.data_dir.join("server/tls/ca.crt"),
                key_file: args.data_dir.join("server/tls/ca.key"),
                duration: Duration::from_secs(8760 * 3600),
            }),
            service_account_tokens: Some(kaji_controllers::serviceaccount_tokens::Settings {
                private_key_file: kaji_apiserver::auth::serviceaccount::key_path(&args.data_dir),
                root_ca_file: args.data_dir.join("server/tls/ca.crt"),
            }),
            leader_election: timing,
            ..Default::default()
        };
        let client = client_from_kubeconfig(&controller_kubeconfig, "kube-controller-manager").await?;
        spokes.spawn(kaji_controllers::run_on(share(&mut informers, client), opts));
    }
    if !args.disable_scheduler {
        let client = client_from_kubeconfig(&scheduler_kubeconfig, "kube-scheduler").await?;
        spokes.spawn(kaji_scheduler::run_on(
            share(&mut informers, client),
            kaji_scheduler::Options { leader_election: timing, ..Default::default() },
        ));
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
        let as_user = |cn: &str, orgs: &[&str]| -> Result<String> {
            let (cert, key) = pki.issue_client(cn, orgs)?;
            Ok(kaji_apiserver::pki::kubeconfig_for(&url, &pki.ca_cert_pem, &cert, &key))
        };
        let reader = kaji_kubelet::join::client_from_kubeconfig_text(&as_user("kaji:hollow-nodes", &[])?, "kubelet").await?;
        spokes.spawn(kaji_kubelet::hollow::run(kaji_kubelet::hollow::Clients::over(reader, &opts), opts));
    } else if !args.disable_agent {
        let node_name = args.node.node_name.clone().unwrap_or_else(kaji_kubelet::node::hostname);
        let agent_dir = args.data_dir.join("agent");
        let kubelet = spoke("kubelet", &format!("system:node:{node_name}"), &["system:nodes"], agent_dir.join("kubelet.kubeconfig"))?;
        let kubelet = client_from_kubeconfig(&kubelet, "kubelet").await?;
        let services = client_from_kubeconfig(&proxy_kubeconfig, "kube-proxy").await?;
        spawn_node(&mut spokes, informers.as_ref(), &kubelet, &services, &args.data_dir, &args.node, &args.disable)?;
    }
    tokio::select! {
        r = running.serve => r??,
        Some(r) = spokes.join_next() => r??,
        _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
    }
    Ok(())
}
