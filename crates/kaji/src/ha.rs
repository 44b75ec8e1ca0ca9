//! Servers on a managed etcd, as k3s: `kaji server --cluster-init` starts the first member;
//! `kaji server --server https://first:6443 --token T` joins as a further member and control
//! plane. A join downloads the CA from `/cacerts`, checks it against the token's hash, fetches
//! the shared material (`/v1-kaji/server-bootstrap`, with the server token's password), checks
//! the critical configuration, and only then writes anything: the shared files, its own member
//! certificates, then etcd's MemberAdd (through etcdctl) and its member started with
//! `initial-cluster-state: existing`. A data dir that has a member keeps using it.

use crate::etcd::{self, ClientTls, Member, Supervised};
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `kaji server`'s flags for HA (k3s's names).
#[derive(clap::Args, Clone, Debug)]
pub struct HaArgs {
    /// Start a managed etcd member for a new cluster (k3s's flag); other servers join it with --server.
    #[arg(long)]
    pub cluster_init: bool,
    /// Join the cluster of this server (`https://host:6443`) as a further server and etcd member.
    #[arg(long)]
    pub server: Option<String>,
    /// The server token (`K10<ca hash>::server:<password>`, or the password alone): the one
    /// to join with, or the first server's password (default: random, kept in `server/token`).
    #[arg(long, conflicts_with = "token_file")]
    pub token: Option<String>,
    /// A file holding the server token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The managed etcd member's client port.
    #[arg(long, default_value_t = 2379)]
    pub etcd_client_port: u16,
    /// The managed etcd member's peer port.
    #[arg(long, default_value_t = 2380)]
    pub etcd_peer_port: u16,
    /// Make this server's member the only one of a new cluster (k3s's flag), then exit.
    #[arg(long)]
    pub cluster_reset: bool,
    /// With --cluster-reset: restore this etcd snapshot first.
    #[arg(long, requires = "cluster_reset")]
    pub cluster_reset_restore_path: Option<PathBuf>,
}

/// The configuration every server of a cluster must share.
pub struct Critical {
    pub cluster_cidr: String,
    pub service_cidr: String,
}

/// The running member and how the API server reaches it.
pub struct ManagedEtcd {
    pub endpoint: String,
    pub tls: ClientTls,
    _process: Supervised,
}

impl HaArgs {
    fn token(&self) -> Result<Option<String>> {
        if let Some(t) = &self.token {
            return Ok(Some(t.trim().to_string()));
        }
        match &self.token_file {
            Some(f) => Ok(Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("reading --token-file {}", f.display()))?
                    .trim()
                    .to_string(),
            )),
            None => Ok(None),
        }
    }
}

/// The member's address: `--advertise-address`, else `--bind-address`, else the default route's.
fn member_ip(bind: IpAddr) -> IpAddr {
    if bind.is_unspecified() {
        kaji_apiserver::pki::advertise_ip()
    } else {
        bind
    }
}

/// Starts this server's managed etcd member if it has one or is asked for one (None: the
/// server runs on the embedded store or `--datastore-endpoint`).
pub async fn start(
    args: &HaArgs,
    data_dir: &Path,
    bind: IpAddr,
    kubernetes_service_ip: std::net::Ipv4Addr,
    critical: &Critical,
) -> Result<Option<ManagedEtcd>> {
    let token = args.token()?;
    let ip = member_ip(bind);
    if etcd::is_member(data_dir) {
        if args.server.is_some() || args.cluster_init {
            tracing::info!(
                "this data dir already has an etcd member; --cluster-init/--server are ignored"
            );
        }
    } else if let Some(url) = &args.server {
        let Some(token) = &token else {
            bail!(
                "--server needs --token or --token-file (the first server's {})",
                kaji_apiserver::pki::server_token_path(Path::new("<data-dir>")).display()
            )
        };
        join(url, token, data_dir, ip, args, critical).await?;
    } else if args.cluster_init {
        ports_free(ip, args)?;
        etcd::ensure_cas(data_dir)?;
        etcd::ensure_member_certs(data_dir, ip)?;
        Member::new(ip, args.etcd_client_port, args.etcd_peer_port).write(data_dir)?;
    } else {
        return Ok(None);
    }
    let pki = kaji_apiserver::pki::Pki::load_or_create(data_dir, kubernetes_service_ip)?;
    kaji_apiserver::pki::load_or_create_server_token(data_dir, &pki.ca_cert_pem, token.as_deref())?;
    etcd::ensure_member_certs(data_dir, ip)?;
    let member = Member::read(data_dir)?;
    let config = serde_json::json!({
        "clusterCIDR": critical.cluster_cidr,
        "serviceCIDR": critical.service_cidr,
        "etcdClientURL": member.client_url,
    });
    kaji_apiserver::pki::write_private_file(
        &data_dir.join("server/critical-config.json"),
        &serde_json::to_string_pretty(&config)?,
    )?;
    let started = Instant::now();
    let process = Supervised::start(data_dir)?;
    let (dir, url) = (data_dir.to_path_buf(), member.client_url.clone());
    // A joining member catches up before it answers; a member whose peers are gone waits for them.
    tokio::task::block_in_place(|| {
        etcd::wait_healthy(&dir, &url, Duration::from_secs(120), || process.alive())
    })?;
    tracing::info!(member = %member.name, url = %member.client_url, pid = process.pid(), elapsed_ms = started.elapsed().as_millis() as u64, "managed etcd member ready");
    Ok(Some(ManagedEtcd {
        endpoint: member.client_url,
        tls: ClientTls::of(data_dir),
        _process: process,
    }))
}

/// The join: everything is checked before anything is written.
async fn join(
    url: &str,
    token: &str,
    data_dir: &Path,
    ip: IpAddr,
    args: &HaArgs,
    critical: &Critical,
) -> Result<()> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("--server {url:?} is not a URL"))?;
    let want_hash = token
        .strip_prefix("K10")
        .and_then(|t| t.split_once("::"))
        .map(|(h, _)| h.to_string());
    let password = kaji_apiserver::pki::token_password(token).to_string();
    // The CA, fetched without trusting anyone, accepted only if it matches the token's hash.
    let mut probe = kube::Config::new(uri.clone());
    probe.accept_invalid_certs = true;
    let probe = kube::Client::try_from(probe)?;
    let ca_pem = probe
        .request_text(http::Request::get("/cacerts").body(Vec::new())?)
        .await
        .with_context(|| format!("downloading the cluster CA from {url}/cacerts"))?;
    if let Some(want) = &want_hash {
        let got = kaji_apiserver::pki::ca_hash(&ca_pem);
        if &got != want {
            bail!(
                "refusing to join {url}: the server's CA does not match the token's hash (sha256 {got}, the token says {want}); nothing was written"
            );
        }
    }
    let der = pem_to_der(&ca_pem).context("parsing the cluster CA")?;
    let mut cfg = kube::Config::new(uri);
    cfg.root_cert = Some(vec![der]);
    cfg.auth_info.username = Some("server".into());
    cfg.auth_info.password = Some(password.into());
    let client = kube::Client::try_from(cfg)?;
    let answer: Value = match client
        .request(http::Request::get("/v1-kaji/server-bootstrap").body(Vec::new())?)
        .await
    {
        Ok(v) => v,
        Err(kube::Error::Api(e)) if e.code == 401 => {
            bail!(
                "refusing to join {url}: the server rejected the token (401 Unauthorized); give the first server's {} as --token",
                "server/token"
            )
        }
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("fetching the cluster's bootstrap data from {url}")));
        }
    };
    let config = &answer["config"];
    for (flag, key, mine) in [
        ("--cluster-cidr", "clusterCIDR", &critical.cluster_cidr),
        ("--service-cidr", "serviceCIDR", &critical.service_cidr),
    ] {
        let theirs = config[key].as_str().unwrap_or_default();
        if theirs != mine.as_str() {
            bail!(
                "critical configuration value mismatch between servers: {flag} is {theirs} on {url} and {mine} here; nothing was written"
            );
        }
    }
    let Some(peer_client_url) = config["etcdClientURL"].as_str().map(str::to_string) else {
        bail!("{url} runs no managed etcd (start the first server with --cluster-init)");
    };
    let files = answer["files"]
        .as_object()
        .context("no files in the bootstrap data")?;
    for required in [
        "server/tls/ca.crt",
        "server/tls/ca.key",
        "server/tls/etcd/server-ca.key",
        "server/tls/etcd/peer-ca.key",
    ] {
        if !files.contains_key(required) {
            bail!("the bootstrap data from {url} lacks {required}");
        }
    }
    // A member added but never started would cost the cluster its quorum: its ports first.
    ports_free(ip, args)?;
    // Checked: now write. Only the known relative paths (the answer names them).
    for (rel, text) in files {
        let safe = !rel.starts_with('/') && !rel.split('/').any(|c| c == ".." || c.is_empty());
        let Some(text) = text.as_str().filter(|_| safe) else {
            continue;
        };
        let path = data_dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        kaji_apiserver::pki::write_private_file(&path, text)?;
    }
    etcd::ensure_member_certs(data_dir, ip)?;
    let mut member = Member::new(ip, args.etcd_client_port, args.etcd_peer_port);
    // MemberAdd, retried while etcd refuses for a member that has just started (it wants every
    // member connected for 5 s before a reconfiguration).
    let deadline = Instant::now() + Duration::from_secs(90);
    let added = loop {
        let peer = format!("--peer-urls={}", member.peer_url);
        let dir = data_dir.to_path_buf();
        let (ep, name) = (peer_client_url.clone(), member.name.clone());
        match tokio::task::spawn_blocking(move || {
            etcd::etcdctl(&dir, &ep, &["member", "add", &name, &peer, "-w", "json"])
        })
        .await?
        {
            Ok(out) => break out,
            Err(e)
                if Instant::now() < deadline
                    && !format!("{e:#}").contains("Peer URLs already exists") =>
            {
                tracing::info!(error = %format!("{e:#}"), "etcd member add; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                return Err(e.context(format!("adding this server as an etcd member of {url}")));
            }
        }
    };
    let added: Value = serde_json::from_str(&added).context("etcdctl member add's output")?;
    let new_id = added["member"]["ID"].as_u64();
    let mut cluster = Vec::new();
    for m in added["members"].as_array().into_iter().flatten() {
        let name = if m["ID"].as_u64() == new_id {
            member.name.as_str()
        } else {
            m["name"].as_str().unwrap_or_default()
        };
        for peer in m["peerURLs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !name.is_empty() {
                cluster.push(format!("{name}={peer}"));
            }
        }
    }
    member.initial_cluster = cluster.join(",");
    member.initial_cluster_state = "existing".into();
    member.write(data_dir)?;
    tracing::info!(member = %member.name, cluster = %member.initial_cluster, "joined the etcd cluster");
    Ok(())
}

/// Refuses ports the member could not listen on, before anything is written or added.
fn ports_free(ip: IpAddr, args: &HaArgs) -> Result<()> {
    for (flag, port) in [
        ("--etcd-client-port", args.etcd_client_port),
        ("--etcd-peer-port", args.etcd_peer_port),
    ] {
        if let Err(e) = std::net::TcpListener::bind((ip, port)) {
            bail!(
                "the etcd member cannot listen on {}: {e} (choose another {flag}); nothing was written",
                std::net::SocketAddr::new(ip, port)
            );
        }
    }
    Ok(())
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}
