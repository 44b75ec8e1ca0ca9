//! `kaji killall`, k3s's `k3s-killall.sh` for one data dir: stops the `kaji server` and
//! `kaji agent` processes of that data dir, its managed containerd with every shim and container,
//! unmounts what lives under the data dir, and removes the node's network pieces (CNI bridge and
//! pod veths, the proxy's nftables table, the cluster DNS address on `lo`, the pod network's
//! VXLAN device and masquerade table). The state (store,
//! certificates, images) stays: `kaji server` starts again from it.
//!
//! Everything is found from the data dir: processes by their command line (`kaji server|agent`
//! with that `--data-dir`; containerd and its shims by this data dir's containerd config and
//! socket), so other clusters on the machine are left alone. The machine-wide names a node
//! chose by flag are recorded by the node in [`SETTINGS_FILE`] when it starts; `kaji killall`
//! reads them from there (flags override).

use anyhow::{Context, Result};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Under the data dir: the node's machine-wide names, `key=value` lines (the flag names).
pub const SETTINGS_FILE: &str = "agent/node.conf";

/// `kaji killall` flags.
#[derive(clap::Args)]
pub struct KillallArgs {
    /// The data dir whose processes, containers, mounts and network to remove.
    #[arg(long, short = 'd', default_value = "/var/lib/kaji")]
    data_dir: PathBuf,
    /// The node's CNI bridge (default: the one recorded in `<data-dir>/agent/node.conf`, else `kaji0`).
    #[arg(long)]
    cni_bridge_name: Option<String>,
    /// The proxy's nftables table, inet family (default: as recorded, else `kaji-proxy`).
    #[arg(long)]
    proxy_table: Option<String>,
    /// The cluster DNS address on `lo` (default: as recorded, else 10.43.0.10).
    #[arg(long)]
    cluster_dns: Option<Ipv4Addr>,
}

/// What a node on this data dir put on the machine under names of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSettings {
    /// The managed containerd's CNI bridge; None when the node used another CRI
    /// (`--container-runtime-endpoint`), whose network is not Kaji's to remove.
    pub cni_bridge_name: Option<String>,
    pub proxy_table: String,
    pub cluster_dns: Ipv4Addr,
    /// The pod network's VXLAN device (vxlan backend).
    pub flannel_device: Option<String>,
    /// The pod network's masquerade table (ip family).
    pub flannel_table: Option<String>,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            cni_bridge_name: Some("kaji0".into()),
            proxy_table: "kaji-proxy".into(),
            cluster_dns: Ipv4Addr::new(10, 43, 0, 10),
            flannel_device: None,
            flannel_table: None,
        }
    }
}

impl NodeSettings {
    fn render(&self) -> String {
        let mut out =
            String::from("# Written by the Kaji node at start; read by `kaji killall`.\n");
        if let Some(b) = &self.cni_bridge_name {
            out.push_str(&format!("cni-bridge-name={b}\n"));
        }
        out.push_str(&format!(
            "proxy-table={}\ncluster-dns={}\n",
            self.proxy_table, self.cluster_dns
        ));
        if let Some(d) = &self.flannel_device {
            out.push_str(&format!("flannel-vxlan-device={d}\n"));
        }
        if let Some(t) = &self.flannel_table {
            out.push_str(&format!("flannel-nft-table={t}\n"));
        }
        out
    }

    fn parse(text: &str) -> Result<NodeSettings> {
        let mut s = NodeSettings {
            cni_bridge_name: None,
            ..NodeSettings::default()
        };
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (key, value) = line
                .split_once('=')
                .with_context(|| format!("{line:?} is not key=value"))?;
            match key {
                "cni-bridge-name" => s.cni_bridge_name = Some(value.to_string()),
                "proxy-table" => s.proxy_table = value.to_string(),
                "flannel-vxlan-device" => s.flannel_device = Some(value.to_string()),
                "flannel-nft-table" => s.flannel_table = Some(value.to_string()),
                "cluster-dns" => {
                    s.cluster_dns = value
                        .parse()
                        .with_context(|| format!("cluster-dns {value:?}"))?
                }
                _ => {} // a later version's key
            }
        }
        Ok(s)
    }

    /// Records the settings in `<data_dir>/agent/node.conf` (the node does, at every start).
    pub fn write(&self, data_dir: &Path) -> Result<()> {
        let path = data_dir.join(SETTINGS_FILE);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, self.render()).with_context(|| format!("writing {}", path.display()))
    }

    /// The recorded settings, if a node ever ran on this data dir.
    fn read(data_dir: &Path) -> Result<Option<NodeSettings>> {
        let path = data_dir.join(SETTINGS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => NodeSettings::parse(&text)
                .with_context(|| format!("in {}", path.display()))
                .map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

pub async fn run(args: KillallArgs) -> Result<()> {
    let data_dir = absolute(&args.data_dir);
    let mut did = 0usize;
    let mut report = |line: String| {
        println!("{line}");
        did += 1;
    };
    let mut problems: Vec<String> = Vec::new();

    // 1. Kaji itself first, so that nothing restarts containerd or reloads the table.
    let kaji = kaji_processes(&data_dir);
    for (pid, role) in &kaji {
        report(format!("stopping kaji {role} (pid {pid})"));
        signal(*pid, libc::SIGTERM);
    }
    let pids: Vec<i32> = kaji.iter().map(|(p, _)| *p).collect();
    if !wait_gone(&pids, Duration::from_secs(10)).await {
        for pid in pids.iter().filter(|p| alive(**p)) {
            report(format!("pid {pid} ignored SIGTERM for 10s: killing it"));
            signal(*pid, libc::SIGKILL);
        }
        if !wait_gone(&pids, Duration::from_secs(5)).await {
            problems.push(format!("kaji processes {pids:?} did not exit"));
        }
    }

    // 1b. The managed etcd member (it dies with its server; one left over from a crash or an
    //     orphaned supervisor is stopped here). Its data stays.
    let etcd = crate::etcd::member_pids(&data_dir);
    for pid in &etcd {
        report(format!("stopping etcd member (pid {pid})"));
        signal(*pid, libc::SIGTERM);
    }
    if !wait_gone(&etcd, Duration::from_secs(10)).await {
        for pid in etcd.iter().filter(|p| alive(**p)) {
            report(format!("etcd pid {pid} ignored SIGTERM for 10s: killing it"));
            signal(*pid, libc::SIGKILL);
        }
        if !wait_gone(&etcd, Duration::from_secs(5)).await {
            problems.push(format!("etcd processes {etcd:?} did not exit"));
        }
    }

    // 2. The node: what it recorded, unless flags say otherwise. A data dir where no node ran has
    //    no containerd or network to remove, unless flags name them.
    let recorded = NodeSettings::read(&data_dir)?;
    let flagged =
        args.cni_bridge_name.is_some() || args.proxy_table.is_some() || args.cluster_dns.is_some();
    let node_ran = recorded.is_some() || flagged || data_dir.join("agent/containerd").exists();
    let mut node = recorded.unwrap_or_default();
    if args.cni_bridge_name.is_some() {
        node.cni_bridge_name = args.cni_bridge_name.clone();
    }
    node.proxy_table = args.proxy_table.clone().unwrap_or(node.proxy_table);
    node.cluster_dns = args.cluster_dns.unwrap_or(node.cluster_dns);

    if node_ran && let Some(bridge) = &node.cni_bridge_name {
        let opts = kaji_kubelet::agent::AgentOptions {
            data_dir: data_dir.clone(),
            bridge_name: bridge.clone(),
            ..Default::default()
        }
        .containerd_options("");
        let found = kaji_kubelet::containerd::inventory(&opts);
        for pid in &found.containerd {
            report(format!(
                "stopping containerd (pid {pid}, {})",
                opts.state_dir.display()
            ));
        }
        if !found.shims.is_empty() || !found.containers.is_empty() {
            report(format!(
                "killing {} and {}",
                count(found.shims.len(), "containerd shim"),
                count(found.containers.len(), "container process")
            ));
        }
        if found.pod_ips > 0 {
            report(format!(
                "releasing {} and veths (CNI DEL)",
                count(found.pod_ips, "pod IP")
            ));
        }
        if !found.mounts.is_empty() {
            report(format!(
                "unmounting {} under {}",
                count(found.mounts.len(), "mount"),
                opts.state_dir.display()
            ));
        }
        if found.bridge {
            report(format!("deleting bridge {bridge}"));
        }
        if let Err(e) = kaji_kubelet::containerd::cleanup(&opts).await {
            problems.push(format!("{e:#}"));
        }
        let left = kaji_kubelet::containerd::inventory(&opts);
        if !left.is_empty() {
            problems.push(format!("left behind: {left:?}"));
        }
    }

    // 3. Whatever else the node mounted (pod volumes: tmpfs emptyDirs). Everything Kaji mounts is
    //    under `<data-dir>/agent`; nothing above it is touched, whatever the data dir is.
    let agent_dir = data_dir.join("agent");
    match kaji_kubelet::containerd::unmount_under(&agent_dir) {
        Ok(m) if !m.is_empty() => report(format!(
            "unmounted {} under {}",
            count(m.len(), "mount"),
            agent_dir.display()
        )),
        Ok(_) => {}
        Err(e) => problems.push(format!("{e:#}")),
    }

    // 4. The Service network: the proxy's table and the DNS address.
    if node_ran {
        if nft_table_exists(&node.proxy_table).await {
            report(format!("deleting nftables table inet {}", node.proxy_table));
            if let Err(e) = kaji_proxy::nft::delete_table(&node.proxy_table).await {
                problems.push(format!("deleting table inet {}: {e:#}", node.proxy_table));
            }
        }
        // The pod network across nodes: the VXLAN device (its routes go with it) and the
        // masquerade table.
        for line in kaji_kubelet::flannel::ip::remove(
            node.flannel_device.as_deref(),
            node.flannel_table.as_deref(),
        )
        .await
        {
            report(format!("deleting {line}"));
        }
        if on_lo(node.cluster_dns).await {
            report(format!("removing {}/32 from lo", node.cluster_dns));
            kaji_dns::remove_local_address(node.cluster_dns.into());
            if on_lo(node.cluster_dns).await {
                problems.push(format!("{} is still on lo", node.cluster_dns));
            }
        }
    }

    if !problems.is_empty() {
        anyhow::bail!(
            "kaji killall {}: {}",
            data_dir.display(),
            problems.join("; ")
        );
    }
    if did == 0 {
        println!("nothing to stop or remove for {}", data_dir.display());
    }
    Ok(())
}

/// `1 mount`, `2 mounts`, `3 container processes`.
fn count(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        _ if what.ends_with('s') => format!("{n} {what}es"),
        _ => format!("{n} {what}s"),
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    })
}

/// Every live process but this one, with its argv (from /proc; zombies left out).
pub(crate) fn processes() -> Vec<(i32, Vec<String>)> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !is_zombie(pid) {
            out.push((pid, argv));
        }
    }
    out
}

/// `kaji server` and `kaji agent` processes whose data dir is `data_dir`: `(pid, subcommand)`.
fn kaji_processes(data_dir: &Path) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for (pid, argv) in processes() {
        let Some(role) = kaji_role(&argv) else {
            continue;
        };
        let dir = PathBuf::from(data_dir_flag(&argv[2..]).unwrap_or("/var/lib/kaji"));
        // A relative --data-dir is relative to the process's working directory.
        let dir = match std::fs::read_link(format!("/proc/{pid}/cwd")) {
            Ok(cwd) if dir.is_relative() => cwd.join(dir),
            _ => dir,
        };
        if same_dir(&dir, data_dir) {
            out.push((pid, role.to_string()));
        }
    }
    out
}

/// `server` or `agent` when `argv` is `kaji server ...` or `kaji agent ...`.
fn kaji_role(argv: &[String]) -> Option<&str> {
    let exe = Path::new(argv.first()?).file_name()?;
    let role = argv.get(1)?.as_str();
    (exe == "kaji" && matches!(role, "server" | "agent")).then_some(role)
}

/// The value of `--data-dir`/`-d` in any of clap's spellings.
fn data_dir_flag(args: &[String]) -> Option<&str> {
    let mut found = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if a == "--data-dir" || a == "-d" {
            found = it.next().map(String::as_str);
        } else if let Some(v) = a
            .strip_prefix("--data-dir=")
            .or_else(|| a.strip_prefix("-d="))
        {
            found = Some(v);
        } else if let Some(v) = a
            .strip_prefix("-d")
            .filter(|v| !v.is_empty() && !a.starts_with("--"))
        {
            found = Some(v);
        }
    }
    found
}

fn same_dir(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canon(a) == canon(b)
}

fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: sending a signal has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig);
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 && !is_zombie(pid) }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st == "Z"))
        })
        .unwrap_or(true)
}

async fn wait_gone(pids: &[i32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !pids.iter().any(|p| alive(*p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn nft_table_exists(table: &str) -> bool {
    let out = tokio::process::Command::new("nft")
        .args(["list", "table", "inet", table])
        .output()
        .await;
    matches!(out, Ok(o) if o.status.success())
}

/// Whether `ip` is an address of `lo`.
async fn on_lo(ip: Ipv4Addr) -> bool {
    if ip.is_loopback() || ip.is_unspecified() {
        return false;
    }
    let out = tokio::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", "lo"])
        .output()
        .await;
    let want = format!(" {ip}/");
    matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains(&want))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn finds_the_data_dir_in_every_spelling() {
        assert_eq!(
            data_dir_flag(&argv("--data-dir /a --kubelet-port 0")),
            Some("/a")
        );
        assert_eq!(data_dir_flag(&argv("--data-dir=/b")), Some("/b"));
        assert_eq!(data_dir_flag(&argv("-d /c")), Some("/c"));
        assert_eq!(data_dir_flag(&argv("-d/e")), Some("/e"));
        assert_eq!(data_dir_flag(&argv("--disable-agent=false")), None);
        assert_eq!(data_dir_flag(&argv("--node-name n")), None);
    }

    #[test]
    fn only_kaji_server_and_agent() {
        assert_eq!(
            kaji_role(&argv("/x/target/debug/kaji server -d /a")),
            Some("server")
        );
        assert_eq!(kaji_role(&argv("kaji agent --server u")), Some("agent"));
        assert_eq!(kaji_role(&argv("kaji killall -d /a")), None);
        assert_eq!(kaji_role(&argv("/usr/bin/kaji-other server")), None);
    }

    #[test]
    fn settings_round_trip() {
        let s = NodeSettings {
            cni_bridge_name: Some("kt1".into()),
            proxy_table: "kaji-proxy-kt1".into(),
            cluster_dns: Ipv4Addr::new(10, 200, 1, 10),
            flannel_device: Some("kv1".into()),
            flannel_table: Some("kaji-flannel-kt1".into()),
        };
        assert_eq!(NodeSettings::parse(&s.render()).unwrap(), s);
        let no_bridge = NodeSettings {
            cni_bridge_name: None,
            ..NodeSettings::default()
        };
        assert_eq!(NodeSettings::parse(&no_bridge.render()).unwrap(), no_bridge);
        assert!(NodeSettings::parse("nonsense").is_err());
    }
}
