//! The managed etcd member of a server (k3s's embedded etcd, run here as Debian's `etcd`):
//! its certificates under `<data-dir>/server/tls/etcd` (k3s's names: `server-ca`, `peer-ca`,
//! the member's `server-client` and `peer-server-client`, the API server's `client`), its data
//! and config under `<data-dir>/server/db/etcd` (`config`, `etcd.log`, `member/`), a supervisor
//! thread that restarts it when it dies and stops it with the server, and the offline pieces:
//! snapshots (`kaji etcd-snapshot`) and `--cluster-reset`.

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, date_time_ymd,
};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

pub fn etcd_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("db").join("etcd")
}

pub fn config_path(data_dir: &Path) -> PathBuf {
    etcd_dir(data_dir).join("config")
}

pub fn tls_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("tls").join("etcd")
}

pub fn snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("db").join("snapshots")
}

/// Whether this data dir holds a managed etcd member (a restart keeps using it, as k3s's).
pub fn is_member(data_dir: &Path) -> bool {
    config_path(data_dir).exists()
}

/// The client side of the member's TLS, as the API server and etcdctl use it.
#[derive(Clone, Debug)]
pub struct ClientTls {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl ClientTls {
    pub fn of(data_dir: &Path) -> ClientTls {
        let tls = tls_dir(data_dir);
        ClientTls {
            ca_file: tls.join("server-ca.crt"),
            cert_file: tls.join("client.crt"),
            key_file: tls.join("client.key"),
        }
    }
}

/// One member's settings, kept in its etcd config file.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    /// Extra client URLs it listens on (loopback, when its address is not).
    pub listen_client_urls: String,
    /// `name=peer-url,...` of the cluster it starts in (used only while it has no data).
    pub initial_cluster: String,
    /// `new` or `existing`.
    pub initial_cluster_state: String,
}

impl Member {
    /// A new member named after the host (k3s: `<hostname>-<random>`) at `ip`.
    pub fn new(ip: IpAddr, client_port: u16, peer_port: u16) -> Member {
        let suffix: String = random_hex(8);
        let name = format!("{}-{suffix}", kaji_apiserver::pki::hostname());
        let client_url = format!("https://{}", SocketAddr::new(ip, client_port));
        let peer_url = format!("https://{}", SocketAddr::new(ip, peer_port));
        let mut listen_client_urls = client_url.clone();
        if !ip.is_loopback() {
            listen_client_urls.push_str(&format!(",https://127.0.0.1:{client_port}"));
        }
        Member {
            initial_cluster: format!("{name}={peer_url}"),
            initial_cluster_state: "new".into(),
            name,
            client_url,
            peer_url,
            listen_client_urls,
        }
    }

    /// etcd's YAML config file (`etcd --config-file`), as k3s writes `server/db/etcd/config`.
    pub fn render(&self, data_dir: &Path, force_new_cluster: bool) -> String {
        let tls = tls_dir(data_dir);
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let p = |p: PathBuf| q(&p.display().to_string());
        format!(
            "# Written by kaji server; `kaji etcd-snapshot` and --cluster-reset read it.\n\
             name: {name}\n\
             data-dir: {data}\n\
             listen-client-urls: {listen_client}\n\
             advertise-client-urls: {client}\n\
             listen-peer-urls: {peer}\n\
             initial-advertise-peer-urls: {peer}\n\
             initial-cluster: {initial}\n\
             initial-cluster-state: {state}\n\
             force-new-cluster: {force_new_cluster}\n\
             enable-v2: false\n\
             logger: zap\n\
             log-outputs: [stderr]\n\
             client-transport-security:\n  cert-file: {scert}\n  key-file: {skey}\n  client-cert-auth: true\n  trusted-ca-file: {sca}\n\
             peer-transport-security:\n  cert-file: {pcert}\n  key-file: {pkey}\n  client-cert-auth: true\n  trusted-ca-file: {pca}\n",
            name = q(&self.name),
            data = p(etcd_dir(data_dir)),
            listen_client = q(&self.listen_client_urls),
            client = q(&self.client_url),
            peer = q(&self.peer_url),
            initial = q(&self.initial_cluster),
            state = q(&self.initial_cluster_state),
            scert = p(tls.join("server-client.crt")),
            skey = p(tls.join("server-client.key")),
            sca = p(tls.join("server-ca.crt")),
            pcert = p(tls.join("peer-server-client.crt")),
            pkey = p(tls.join("peer-server-client.key")),
            pca = p(tls.join("peer-ca.crt")),
        )
    }

    pub fn write(&self, data_dir: &Path) -> Result<()> {
        let dir = etcd_dir(data_dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // etcd wants its data dir private.
        set_mode(&dir, 0o700)?;
        let path = config_path(data_dir);
        let tmp = path.with_extension("tmp");
        kaji_apiserver::pki::write_private_file(&tmp, &self.render(data_dir, false))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    pub fn read(data_dir: &Path) -> Result<Member> {
        let path = config_path(data_dir);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (no managed etcd member here)", path.display()))?;
        let field = |key: &str| -> Result<String> {
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}: ")))
                .with_context(|| format!("{} has no {key}", path.display()))?;
            Ok(serde_json::from_str::<String>(line).unwrap_or_else(|_| line.trim().to_string()))
        };
        Ok(Member {
            name: field("name")?,
            client_url: field("advertise-client-urls")?,
            peer_url: field("initial-advertise-peer-urls")?,
            listen_client_urls: field("listen-client-urls")?,
            initial_cluster: field("initial-cluster")?,
            initial_cluster_state: field("initial-cluster-state")?,
        })
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n.div_ceil(2)];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()[..n].to_string()
}

// ---- certificates ----

fn params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.not_before = date_time_ymd(2025, 1, 1);
    p.not_after = date_time_ymd(2125, 1, 1);
    p
}

fn write_pair(base: &Path, cert: &str, key: &str) -> Result<()> {
    kaji_apiserver::pki::write_private_file(&base.with_extension("key"), key)?;
    kaji_apiserver::pki::write_private_file(&base.with_extension("crt"), cert)
}

fn pair_exists(base: &Path) -> bool {
    base.with_extension("crt").exists() && base.with_extension("key").exists()
}

/// The two etcd CAs (k3s's `server-ca` for clients, `peer-ca` between members), made once by the
/// first server; joining servers receive them.
pub fn ensure_cas(data_dir: &Path) -> Result<()> {
    let tls = tls_dir(data_dir);
    std::fs::create_dir_all(&tls).with_context(|| format!("creating {}", tls.display()))?;
    for (name, cn) in [("server-ca", "etcd-server-ca"), ("peer-ca", "etcd-peer-ca")] {
        let base = tls.join(name);
        if pair_exists(&base) {
            continue;
        }
        let key = KeyPair::generate()?;
        let mut p = params(&format!("{cn}@{}", random_hex(8)));
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = p.self_signed(&key)?;
        write_pair(&base, &cert.pem(), &key.serialize_pem())?;
    }
    Ok(())
}

fn issuer(tls: &Path, ca: &str) -> Result<Issuer<'static, KeyPair>> {
    let read = |p: PathBuf| {
        std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    };
    let key = KeyPair::from_pem(&read(tls.join(format!("{ca}.key")))?)?;
    Issuer::from_ca_cert_pem(&read(tls.join(format!("{ca}.crt")))?, key)
        .with_context(|| format!("parsing the etcd {ca}"))
}

/// This member's certificates (for its address `ip`, localhost and the host name) and the API
/// server's client certificate, from the etcd CAs; made when missing or the address changed.
pub fn ensure_member_certs(data_dir: &Path, ip: IpAddr) -> Result<()> {
    let tls = tls_dir(data_dir);
    let marker = tls.join("member.sans");
    let wanted = ip.to_string();
    let current = std::fs::read_to_string(&marker).unwrap_or_default();
    let mut sans = vec![
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
    ];
    if let Ok(h) = kaji_apiserver::pki::hostname().as_str().try_into() {
        sans.push(SanType::DnsName(h));
    }
    // Also every address of the host: etcd checks a peer's client certificate against the
    // connection's source address, which for members on one host (tests on 127.0.X.Y) is the
    // address dialled, not the dialler's own.
    for a in std::iter::once(ip).chain(kaji_apiserver::pki::host_addresses()) {
        let san = SanType::IpAddress(a);
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    for (name, ca, cn, usages) in [
        (
            "server-client",
            "server-ca",
            "etcd-server",
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        ),
        (
            "peer-server-client",
            "peer-ca",
            "etcd-peer",
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        ),
        (
            "client",
            "server-ca",
            "etcd-client",
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        ),
    ] {
        let base = tls.join(name);
        if pair_exists(&base) && current == wanted {
            continue;
        }
        let key = KeyPair::generate()?;
        let mut p = params(cn);
        if name != "client" {
            p.subject_alt_names = sans.clone();
        }
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = usages;
        let cert = p.signed_by(&key, &issuer(&tls, ca)?)?;
        write_pair(&base, &cert.pem(), &key.serialize_pem())?;
    }
    kaji_apiserver::pki::write_private_file(&marker, &wanted)
}

// ---- etcdctl ----

/// Runs `etcdctl` (v3 API) against `endpoints` with the member's client certificate.
pub fn etcdctl(data_dir: &Path, endpoints: &str, args: &[&str]) -> Result<String> {
    let tls = ClientTls::of(data_dir);
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--cacert")
        .arg(&tls.ca_file)
        .arg("--cert")
        .arg(&tls.cert_file)
        .arg("--key")
        .arg(&tls.key_file)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running etcdctl (Debian's etcd-client package)")?;
    if !out.status.success() {
        bail!(
            "etcdctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits until the member at `url` answers as healthy.
pub fn wait_healthy(
    data_dir: &Path,
    url: &str,
    timeout: Duration,
    alive: impl Fn() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match etcdctl(
            data_dir,
            url,
            &["endpoint", "health", "--command-timeout=3s"],
        ) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline || !alive() => {
                let log = etcd_dir(data_dir).join("etcd.log");
                bail!(
                    "the managed etcd member at {url} is not healthy: {e:#} (see {})",
                    log.display()
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

// ---- the supervised process ----

/// The running member: restarted when it dies, stopped (SIGTERM) when this is dropped, and
/// killed by the kernel if the server dies (PR_SET_PDEATHSIG), as an embedded etcd would be.
pub struct Supervised {
    stop: Arc<AtomicBool>,
    pid: Arc<AtomicI32>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Supervised {
    pub fn start(data_dir: &Path) -> Result<Supervised> {
        let config = config_path(data_dir);
        let log_path = etcd_dir(data_dir).join("etcd.log");
        let stop = Arc::new(AtomicBool::new(false));
        let pid = Arc::new(AtomicI32::new(0));
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let thread = {
            let (stop, pid) = (stop.clone(), pid.clone());
            std::thread::Builder::new().name("etcd-supervisor".into()).spawn(move || {
                let mut backoff = Duration::from_secs(1);
                let mut first = Some(first_tx);
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let child = spawn_etcd(&config, &log_path);
                    let mut child = match child {
                        Ok(c) => {
                            if let Some(tx) = first.take() {
                                let _ = tx.send(Ok(()));
                            }
                            c
                        }
                        Err(e) => {
                            if let Some(tx) = first.take() {
                                let _ = tx.send(Err(e));
                                return;
                            }
                            tracing::error!(error = %format!("{e:#}"), "starting etcd");
                            std::thread::sleep(backoff);
                            continue;
                        }
                    };
                    pid.store(child.id() as i32, Ordering::SeqCst);
                    let status = child.wait();
                    pid.store(0, Ordering::SeqCst);
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if started.elapsed() > Duration::from_secs(60) {
                        backoff = Duration::from_secs(1);
                    }
                    tracing::warn!(status = ?status, restart_in = ?backoff, log = %log_path.display(), "the managed etcd exited; restarting it");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            })?
        };
        first_rx.recv().context("the etcd supervisor stopped")??;
        Ok(Supervised {
            stop,
            pid,
            thread: Some(thread),
        })
    }

    pub fn alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    pub fn pid(&self) -> i32 {
        self.pid.load(Ordering::SeqCst)
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut sent_kill = false;
        while self.thread.as_ref().is_some_and(|t| !t.is_finished()) {
            let pid = self.pid.load(Ordering::SeqCst);
            if pid > 0 {
                let sig = if Instant::now() > deadline {
                    libc::SIGKILL
                } else {
                    libc::SIGTERM
                };
                if sig == libc::SIGTERM || !sent_kill {
                    // SAFETY: kill(2) on our own child's pid.
                    unsafe { libc::kill(pid, sig) };
                    sent_kill |= sig == libc::SIGKILL;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn spawn_etcd(config: &Path, log_path: &Path) -> Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut cmd = Command::new("etcd");
    cmd.arg("--config-file")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the child with us.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
        .context("starting etcd (Debian's etcd-server package, /usr/bin/etcd)")
}

/// etcd processes running the member of `data_dir` (for `kaji killall` and offline commands).
pub fn member_pids(data_dir: &Path) -> Vec<i32> {
    let config = config_path(data_dir);
    crate::killall::processes()
        .into_iter()
        .filter(|(_, argv)| {
            let is_etcd = argv
                .first()
                .and_then(|a| Path::new(a).file_name())
                .is_some_and(|n| n == "etcd");
            is_etcd
                && argv
                    .windows(2)
                    .any(|w| w[0] == "--config-file" && Path::new(&w[1]) == config)
        })
        .map(|(pid, _)| pid)
        .collect()
}

// ---- snapshots and reset (offline) ----

/// `kaji etcd-snapshot`: k3s's command for the managed etcd's backups.
#[derive(clap::Args)]
pub struct EtcdSnapshotArgs {
    #[command(subcommand)]
    command: SnapshotCommand,
}

#[derive(clap::Subcommand)]
enum SnapshotCommand {
    /// Save a snapshot of the running member (k3s: `etcd-snapshot save`).
    Save(SaveArgs),
    /// List the snapshots in the snapshot directory.
    Ls(SaveArgs),
    /// Restore a snapshot into this data dir's member, with the server stopped (the same as
    /// `kaji server --cluster-reset --cluster-reset-restore-path FILE`).
    Restore(RestoreArgs),
}

#[derive(clap::Args)]
struct SaveArgs {
    #[arg(long, short = 'd', default_value = "/var/lib/kaji")]
    data_dir: PathBuf,
    /// The snapshot's name, before `-<node>-<unix time>` (k3s's default: on-demand).
    #[arg(long, default_value = "on-demand")]
    name: String,
    /// Where snapshots go (default `<data-dir>/server/db/snapshots`).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RestoreArgs {
    #[arg(long, short = 'd', default_value = "/var/lib/kaji")]
    data_dir: PathBuf,
    /// The snapshot file.
    file: PathBuf,
}

pub fn snapshot(args: EtcdSnapshotArgs) -> Result<()> {
    match args.command {
        SnapshotCommand::Save(a) => {
            let member = Member::read(&a.data_dir)?;
            let dir = a.dir.unwrap_or_else(|| snapshot_dir(&a.data_dir));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            let path = dir.join(format!(
                "{}-{}-{now}",
                a.name,
                kaji_apiserver::pki::hostname()
            ));
            let file = path.display().to_string();
            etcdctl(
                &a.data_dir,
                &member.client_url,
                &["snapshot", "save", &file],
            )?;
            println!("Snapshot {} saved.", path.display());
            Ok(())
        }
        SnapshotCommand::Ls(a) => {
            let dir = a.dir.unwrap_or_else(|| snapshot_dir(&a.data_dir));
            let mut names: Vec<_> = std::fs::read_dir(&dir)
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            names.sort();
            println!("{:<60} {:>12}", "Name", "Size");
            for p in names {
                let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or_default();
                println!("{:<60} {size:>12}", p.display());
            }
            Ok(())
        }
        SnapshotCommand::Restore(a) => cluster_reset(&a.data_dir, Some(&a.file)),
    }
}

/// `kaji server --cluster-reset [--cluster-reset-restore-path F]` (k3s's): makes this data dir's
/// member the only one of a new cluster, from its own data or from snapshot `restore`; the
/// server must be stopped, and is started again without the flag.
pub fn cluster_reset(data_dir: &Path, restore: Option<&Path>) -> Result<()> {
    let mut member = Member::read(data_dir)?;
    let running = member_pids(data_dir);
    if !running.is_empty() {
        bail!(
            "the etcd member of {} is running (pid {running:?}): stop kaji server first",
            data_dir.display()
        );
    }
    let etcd = etcd_dir(data_dir);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    member.initial_cluster = format!("{}={}", member.name, member.peer_url);
    member.initial_cluster_state = "new".into();
    if let Some(file) = restore {
        if !file.is_file() {
            bail!("no snapshot at {}", file.display());
        }
        let tmp = data_dir
            .join("server")
            .join("db")
            .join(format!("etcd-restore-{stamp}"));
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("snapshot")
            .arg("restore")
            .arg(file)
            .arg("--name")
            .arg(&member.name)
            .arg("--initial-cluster")
            .arg(&member.initial_cluster)
            .arg("--initial-advertise-peer-urls")
            .arg(&member.peer_url)
            .arg("--data-dir")
            .arg(&tmp)
            .output()
            .context("running etcdctl snapshot restore")?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&tmp);
            bail!(
                "restoring {}: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let old = data_dir
            .join("server")
            .join("db")
            .join(format!("etcd-old-{stamp}"));
        if etcd.join("member").exists() {
            std::fs::create_dir_all(&old)?;
            std::fs::rename(etcd.join("member"), old.join("member"))
                .context("moving the old member data aside")?;
            println!("The old member data is in {}.", old.display());
        }
        std::fs::rename(tmp.join("member"), etcd.join("member"))
            .context("moving the restored data in place")?;
        let _ = std::fs::remove_dir_all(&tmp);
        member.write(data_dir)?;
    } else {
        // etcd's --force-new-cluster once: the member forgets the others and keeps its data.
        let config = config_path(data_dir);
        kaji_apiserver::pki::write_private_file(&config, &member.render(data_dir, true))?;
        let run = Supervised::start(data_dir)?;
        let healthy = wait_healthy(
            data_dir,
            &member.client_url,
            Duration::from_secs(60),
            || run.alive(),
        );
        drop(run);
        member.write(data_dir)?;
        healthy?;
    }
    println!(
        "Managed etcd cluster membership has been reset, restart without --cluster-reset flag now. Backup and delete {}/server/db on each peer etcd server and rejoin the nodes.",
        data_dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_config_round_trips() {
        let dir = std::env::temp_dir().join(format!("kaji-etcd-config-{}", random_hex(8)));
        let mut m = Member::new(IpAddr::from([127, 0, 0, 2]), 12379, 12380);
        m.initial_cluster = format!("a=https://127.0.0.1:2380,{}={}", m.name, m.peer_url);
        m.initial_cluster_state = "existing".into();
        m.write(&dir).unwrap();
        assert_eq!(Member::read(&dir).unwrap(), m);
        let text = std::fs::read_to_string(config_path(&dir)).unwrap();
        assert!(
            text.contains("advertise-client-urls: \"https://127.0.0.2:12379\""),
            "{text}"
        );
        assert!(text.contains("force-new-cluster: false"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_routable_member_also_listens_on_loopback() {
        let m = Member::new(IpAddr::from([10, 1, 2, 3]), 2379, 2380);
        assert_eq!(
            m.listen_client_urls,
            "https://10.1.2.3:2379,https://127.0.0.1:2379"
        );
        assert_eq!(
            m.initial_cluster,
            format!("{}=https://10.1.2.3:2380", m.name)
        );
        assert!(
            m.name
                .starts_with(&format!("{}-", kaji_apiserver::pki::hostname()))
        );
    }
}
