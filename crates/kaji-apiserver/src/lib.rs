//! The hub of Kaji: the Kubernetes API server. Every other component is its client.
//!
//! Where to start: [`start`] opens the store, makes the certificates and serves HTTPS;
//! `server` authenticates and routes a request; `rest` decodes it (body, query, content type)
//! and encodes the answer (objects, tables, watch streams); `registry::store` is the generic
//! store (upstream's `genericregistry.Store`: create, update, guaranteed update, delete,
//! delete-collection over `kaji_store::Store`, no HTTP) driven by one strategy per kind in
//! `registry` (what is special about Pods, Services, ...; pod subresources in
//! `registry::core::pod`); `admission` holds the admission plug-ins the store runs on create;
//! `proxy` relays pods/log, exec, attach and portforward to the node's kubelet; `discovery` and
//! `kaji-openapi` describe the API to kubectl.

// ApiError carries a Status's details (152 bytes); errors are the slow path, so it is returned
// by value rather than boxed everywhere.
#![allow(clippy::result_large_err)]

pub mod admission;
pub mod aggregator;
pub mod apiextensions;
pub mod allocator;
pub mod auth;
mod bootstrap;
pub mod discovery;
pub mod endpoint_reconciler;
pub mod metrics;
mod migrate;
pub mod objects;
pub mod pki;
pub mod proxy;
pub mod registry;
pub mod request;
pub mod rest;
pub mod server;

use anyhow::{Context, Result};
use bytes::Bytes;
use kaji_api::ApiError;
use kaji_store::{Store, StoreError};
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// The Kubernetes version Kaji speaks.
pub const KUBE_VERSION: &str = "v1.33.0";

pub fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": format!("{KUBE_VERSION}-kaji{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": option_env!("KAJI_GIT_COMMIT").unwrap_or("unknown"),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "n/a (rust)",
        "compiler": "rustc",
        "platform": format!("linux/{}", std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64")),
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
    })
}

/// Maps store failures to API errors.
pub fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Compacted { requested, compacted } => ApiError::gone(format!("too old resource version: {requested} ({compacted})")),
        StoreError::FutureRevision { requested, current } => {
            let mut e = ApiError::timeout(format!("Too large resource version: {requested}, current: {current}"));
            e.retry_after_seconds = Some(1);
            e
        }
        // etcd's own errors pass through as kube-apiserver's do: a 500 without a reason, which
        // kubectl prints as "Error from server: etcdserver: request timed out".
        StoreError::Backend(message) if message.starts_with("etcdserver:") => ApiError::new(500, "", message),
        other => ApiError::internal(other.to_string()),
    }
}

/// How to start the API server.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    pub port: u16,
    /// Where the admin kubeconfig goes (default `<data-dir>/kubeconfig.yaml`).
    pub kubeconfig: Option<PathBuf>,
    pub admission: registry::Admission,
    /// The Service IP range (`--service-cidr`, default 10.43.0.0/16): the `kubernetes` Service
    /// takes its first address.
    pub service_cidr: kaji_api::cidr::Cidr,
    /// The cluster DNS address (`--cluster-dns`, default 10.43.0.10): the `kube-dns` Service's
    /// clusterIP.
    pub cluster_dns: std::net::Ipv4Addr,
    /// How often the metrics provider scrapes kubelets (metrics-server's `--metric-resolution`,
    /// 15 s).
    pub metric_resolution: std::time::Duration,
    /// `--anonymous-auth`, `--authorization-mode`, `--audit-log-path`.
    pub auth: auth::Options,
    /// A spoke's pages under a path prefix, answered before authentication (the dashboard's
    /// files under `/dashboard`, wired by `kaji server`): the hub knows no spoke's code.
    pub extra: Option<ExtraHandler>,
}

/// Answers requests for `prefix` and the paths under `prefix/` (None: not served there, the
/// request goes on to authentication and the API).
#[derive(Clone)]
pub struct ExtraHandler {
    pub prefix: &'static str,
    #[allow(clippy::type_complexity)]
    pub handle: Arc<dyn Fn(&http::request::Parts) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = http::Response<server::Body>> + Send>>> + Send + Sync>,
}

impl ExtraHandler {
    pub fn serves(&self, path: &str) -> bool {
        path.strip_prefix(self.prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

impl std::fmt::Debug for ExtraHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtraHandler").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl Config {
    /// The first address of the service range, the `kubernetes` Service's (10.43.0.1).
    pub fn kubernetes_service_ip(&self) -> std::net::Ipv4Addr {
        self.service_cidr.nth(1)
    }
}

/// The running API server's shared state.
pub struct ApiServer {
    pub store: Arc<dyn Store>,
    /// Where lists found the resourceVersion's place in the store's objects.
    pub stamps: Arc<objects::StampCache>,
    pub registry: registry::Registry,
    pub allocators: allocator::Allocators,
    pub admission: registry::Admission,
    pub metrics: server::Metrics,
    pub pki: pki::Pki,
    /// TLS towards kubelets (see `server::kubelet_client_config`).
    pub kubelet_tls: Arc<rustls::ClientConfig>,
    /// `host:port` clients are told to use.
    pub advertise: String,
    /// metrics.k8s.io's provider (`metrics`).
    pub resource_metrics: metrics::Provider,
    /// Authentication, authorization and audit (`auth`).
    pub auth: auth::Auth,
    /// API aggregation: APIServices proxied to extension servers (`aggregator`).
    pub aggregator: aggregator::Aggregator,
    /// `Config::extra`.
    pub extra: Option<ExtraHandler>,
    openapi_v2: OnceLock<(Bytes, Bytes)>,
    openapi_v3: OnceLock<Value>,
    /// The custom kinds' part of the OpenAPI documents (`apiextensions::openapi`).
    custom_openapi: apiextensions::openapi::CustomOpenApi,
}

impl ApiServer {
    fn openapi_v2(&self) -> &(Bytes, Bytes) {
        self.openapi_v2.get_or_init(|| {
            let doc = kaji_openapi::v2(apiextensions::openapi::builtin_infos());
            let proto = kaji_openapi::v2_protobuf(&doc);
            (Bytes::from(serde_json::to_vec(&doc).unwrap_or_default()), Bytes::from(proto))
        })
    }

    pub fn openapi_v2_json(&self) -> &Bytes {
        &self.openapi_v2().0
    }

    pub fn openapi_v2_protobuf(&self) -> &Bytes {
        &self.openapi_v2().1
    }

    pub fn openapi_v3_index(&self) -> &Value {
        self.openapi_v3.get_or_init(|| kaji_openapi::v3_index(apiextensions::openapi::builtin_infos()))
    }
}

/// A started API server: its address and the task serving it.
pub struct Running {
    pub server: Arc<ApiServer>,
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    pub serve: tokio::task::JoinHandle<Result<()>>,
}

/// Opens the store, prepares certificates and the default objects, and starts serving.
pub async fn start(config: Config, store: Arc<dyn Store>) -> Result<Running> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let pki = pki::Pki::load_or_create(&config.data_dir, config.kubernetes_service_ip())?;
    let kubelet_tls = server::kubelet_client_config(&pki)?;
    let aggregator = aggregator::Aggregator::new(&pki)?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(config.bind_address, config.port))
        .await
        .with_context(|| format!("binding {}:{}", config.bind_address, config.port))?;
    let addr = listener.local_addr()?;
    let host = if config.bind_address.is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { config.bind_address };
    let advertise = SocketAddr::new(host, addr.port()).to_string();
    let server = Arc::new(ApiServer {
        store,
        stamps: Arc::default(),
        registry: registry::Registry::builtin(),
        allocators: allocator::Allocators::new((config.service_cidr.0, config.service_cidr.1), (30000, 32767)),
        admission: config.admission.clone(),
        metrics: server::Metrics::default(),
        pki,
        kubelet_tls,
        advertise: advertise.clone(),
        resource_metrics: metrics::Provider::new(config.metric_resolution),
        auth: auth::Auth::new(config.auth.clone(), &config.data_dir)?,
        aggregator,
        extra: config.extra.clone(),
        openapi_v2: OnceLock::new(),
        openapi_v3: OnceLock::new(),
        custom_openapi: Default::default(),
    });
    migrate::legacy_keys(&*server.store, &server.registry).await?;
    bootstrap::restore_allocations(&server).await?;
    bootstrap::ensure_defaults(&server, addr, &config).await?;
    auth::rbac::Rbac::load(&server).await?;
    auth::Auth::start(&server);
    aggregator::start(&server).await?;
    apiextensions::controller::start(&server).await?;
    let kubeconfig = config.kubeconfig.clone().unwrap_or_else(|| config.data_dir.join("kubeconfig.yaml"));
    server.pki.write_admin_kubeconfig(&kubeconfig, &format!("https://{advertise}"))?;
    let serve = tokio::spawn(server::serve(server.clone(), listener));
    Ok(Running { server, addr, kubeconfig, serve })
}
