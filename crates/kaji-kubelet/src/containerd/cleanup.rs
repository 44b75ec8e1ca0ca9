//! Leaves the machine as it was before a managed containerd ran: no containerd or shim of this
//! state dir, no container processes, no CNI allocations, iptables chains, veths or bridge, no
//! netns files, no mounts under the state dir. Works from the files and processes alone, so it
//! also cleans up after a crash (containerd need not be running). Images are kept.

use super::{ContainerdOptions, Layout};
use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const NETNS_DIR: &str = "/var/run/netns";
/// libcni's cache of ADD results (containerd 1.6 does not make it configurable).
const CNI_CACHE: &str = "/var/lib/cni/results";
const SHIM: &str = "containerd-shim-runc-v2";

/// A process from /proc: pid, parent, argv.
struct Proc {
    pid: i32,
    ppid: i32,
    argv: Vec<String>,
}

fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The comm field may hold spaces and parentheses: the ppid follows the last ')'.
        let ppid = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        let argv = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Some(Proc { pid, ppid, argv })
    })
    .collect()
}

fn flag<'a>(argv: &'a [String], name: &str) -> Option<&'a str> {
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .map(String::as_str)
}

/// containerd processes running from this state dir's config.
pub(super) fn containerd_pids(layout: &Layout) -> Vec<i32> {
    let config = layout.config.to_string_lossy();
    processes()
        .into_iter()
        .filter(|p| {
            p.argv.first().is_some_and(|a| a.ends_with("containerd"))
                && flag(&p.argv, "--config") == Some(&*config)
        })
        .map(|p| p.pid)
        .collect()
}

/// Shims serving this containerd: `containerd-shim-runc-v2 -namespace k8s.io -id ID -address SOCKET`.
fn shims(layout: &Layout, procs: &[Proc]) -> BTreeMap<i32, String> {
    let socket = layout.socket.to_string_lossy();
    procs
        .iter()
        .filter(|p| {
            p.argv.first().is_some_and(|a| a.ends_with(SHIM))
                && flag(&p.argv, "-address") == Some(&*socket)
        })
        .map(|p| (p.pid, flag(&p.argv, "-id").unwrap_or_default().to_string()))
        .collect()
}

fn descendants(procs: &[Proc], root: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut queue = vec![root];
    while let Some(parent) = queue.pop() {
        for p in procs.iter().filter(|p| p.ppid == parent) {
            out.push(p.pid);
            queue.push(p.pid);
        }
    }
    out
}

fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

pub(super) fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: sending a signal has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Waits until none of `pids` exists (zombies of ours count as gone once reaped elsewhere).
pub(super) async fn wait_gone(pids: &[i32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<_> = pids
            .iter()
            .filter(|p| alive(**p) && !is_zombie(**p))
            .collect();
        if left.is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

/// The identity (device, inode) of a network namespace, as `stat` reports it for both
/// `/proc/PID/ns/net` and a bind-mounted netns file.
fn ns_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

pub(super) async fn cleanup(opts: &ContainerdOptions) -> Result<()> {
    let layout = Layout::new(&opts.state_dir);
    let mut problems = Vec::new();

    // 1. containerd itself, so that it does not restart what we remove.
    let pids = containerd_pids(&layout);
    for pid in &pids {
        signal(*pid, libc::SIGTERM);
    }
    if !wait_gone(&pids, Duration::from_secs(10)).await {
        for pid in &pids {
            signal(*pid, libc::SIGKILL);
        }
        wait_gone(&pids, Duration::from_secs(5)).await;
    }

    // 2. Shims and their containers. Note each sandbox's netns first: the pause process holds it.
    let procs = processes();
    let shims = shims(&layout, &procs);
    let netns_files: Vec<PathBuf> = std::fs::read_dir(NETNS_DIR)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    let mut sandbox_netns: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut victims = Vec::new();
    for (shim, id) in &shims {
        let children = descendants(&procs, *shim);
        for child in &children {
            let Some(ns) = ns_id(Path::new(&format!("/proc/{child}/ns/net"))) else {
                continue;
            };
            if let Some(file) = netns_files.iter().find(|f| ns_id(f) == Some(ns)) {
                sandbox_netns
                    .entry(id.clone())
                    .or_insert_with(|| file.clone());
            }
        }
        victims.extend(children);
    }
    // The containers' cgroups: runc would remove them on delete, but nothing deletes these.
    let mut cgroups: BTreeSet<String> = BTreeSet::new();
    for pid in &victims {
        cgroups.extend(cgroup_paths(*pid));
        signal(*pid, libc::SIGKILL);
    }
    wait_gone(&victims, Duration::from_secs(5)).await;
    let shim_pids: Vec<i32> = shims.keys().copied().collect();
    for pid in &shim_pids {
        signal(*pid, libc::SIGKILL);
    }
    if !wait_gone(&shim_pids, Duration::from_secs(5)).await {
        problems.push(format!("shims {shim_pids:?} did not exit"));
    }
    remove_shim_sockets(&layout);
    remove_cgroups(&cgroups).await;

    // 3. The pod network: CNI DEL for every sandbox that still holds an IP or a netns.
    let mut sandboxes: BTreeSet<String> = ipam_owners(&layout, &opts.network_name);
    sandboxes.extend(sandbox_netns.keys().cloned());
    let conflist = layout
        .cni_conf_dir
        .join(format!("10-{}.conflist", opts.network_name));
    if let Ok(conf) = std::fs::read_to_string(&conflist) {
        for id in &sandboxes {
            let netns = sandbox_netns
                .get(id)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Err(e) = super::cni::delete(&conf, &opts.cni_bin_dir, id, &netns).await {
                problems.push(format!("CNI DEL of sandbox {id}: {e:#}"));
            }
            // libcni's result cache, which containerd would have removed with the sandbox.
            let _ = std::fs::remove_file(format!("{CNI_CACHE}/{}-{id}-eth0", opts.network_name));
            let _ = std::fs::remove_file(format!("{CNI_CACHE}/cni-loopback-{id}-lo"));
        }
    }
    for file in sandbox_netns.values() {
        unmount(file);
        let _ = std::fs::remove_file(file);
    }

    // 4. Mounts under the state dir (rootfs overlays, sandbox shm), deepest first.
    for mount in mounts_under(&opts.state_dir) {
        if !unmount(&mount) {
            problems.push(format!("unmounting {}", mount.display()));
        }
    }

    // 5. The bridge (it outlives its last veth).
    if Path::new("/sys/class/net").join(&opts.bridge_name).exists() {
        let out = tokio::process::Command::new("ip")
            .args(["link", "delete", &opts.bridge_name])
            .output()
            .await;
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => problems.push(format!(
                "ip link delete {}: {}",
                opts.bridge_name,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => problems.push(format!("running ip: {e}")),
        }
    }

    let _ = std::fs::remove_file(&layout.socket);
    let _ = std::fs::remove_file(format!("{}.ttrpc", layout.socket.display()));
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "cleanup of {}: {}",
            opts.state_dir.display(),
            problems.join("; ")
        )
    }
}

/// What an instance has left on the machine, found as [`cleanup`] finds it (`kaji killall`
/// reports it before cleaning up, and checks it is empty afterwards).
#[derive(Debug, Default, PartialEq)]
pub struct Inventory {
    pub containerd: Vec<i32>,
    pub shims: Vec<i32>,
    /// The containers' processes: every descendant of the shims.
    pub containers: Vec<i32>,
    /// Sandboxes holding a pod IP (host-local allocations).
    pub pod_ips: usize,
    /// Mount points under the state dir, deepest first.
    pub mounts: Vec<PathBuf>,
    /// Whether the CNI bridge exists.
    pub bridge: bool,
}

impl Inventory {
    pub fn is_empty(&self) -> bool {
        *self == Inventory::default()
    }
}

pub fn inventory(opts: &ContainerdOptions) -> Inventory {
    let layout = Layout::new(&opts.state_dir);
    let procs = processes();
    let shims = shims(&layout, &procs);
    Inventory {
        containerd: containerd_pids(&layout),
        containers: shims.keys().flat_map(|s| descendants(&procs, *s)).collect(),
        shims: shims.into_keys().collect(),
        pod_ips: ipam_owners(&layout, &opts.network_name).len(),
        mounts: mounts_under(&opts.state_dir),
        bridge: Path::new("/sys/class/net").join(&opts.bridge_name).exists(),
    }
}

/// Unmounts everything at or below `dir`, deepest first; returns what it unmounted, or an error
/// naming what it could not.
pub fn unmount_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mounts = mounts_under(dir);
    let failed: Vec<String> = mounts
        .iter()
        .filter(|m| !unmount(m))
        .map(|m| m.display().to_string())
        .collect();
    if !failed.is_empty() {
        anyhow::bail!("could not unmount {}", failed.join(", "));
    }
    Ok(mounts)
}

/// The cgroup paths (relative to each hierarchy's root) a process is in, except the root.
fn cgroup_paths(pid: i32) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .filter(|p| *p != "/" && !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// Removes the given cgroups in every mounted hierarchy where they exist. rmdir only removes
/// empty cgroups, so a shared parent with other members is never touched.
async fn remove_cgroups(paths: &BTreeSet<String>) {
    if paths.is_empty() {
        return;
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let hierarchies: Vec<PathBuf> = info
        .lines()
        .filter(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|fs| fs.starts_with("cgroup ") || fs.starts_with("cgroup2 "))
        })
        .filter_map(|l| {
            l.split(' ')
                .nth(4)
                .map(|p| PathBuf::from(unescape_mountinfo(p)))
        })
        .collect();
    let mut dirs: Vec<PathBuf> = hierarchies
        .iter()
        .flat_map(|h| paths.iter().map(move |p| h.join(p.trim_start_matches('/'))))
        .filter(|d| d.is_dir())
        .collect();
    dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    // A cgroup whose last task just died can be busy for a moment.
    for _ in 0..20 {
        dirs.retain(|d| std::fs::remove_dir(d).is_err() && d.exists());
        if dirs.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!("cgroups left behind: {dirs:?}");
}

/// Sandbox IDs that host-local has allocated addresses to (files `<ip>` holding the ID).
fn ipam_owners(layout: &Layout, network: &str) -> BTreeSet<String> {
    let dir = layout.cni_ipam_dir.join(network);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return BTreeSet::new();
    };
    entries
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name();
            let name = name.to_str()?;
            if name.starts_with("last_reserved_ip") || name == "lock" {
                return None;
            }
            let text = std::fs::read_to_string(e.path()).ok()?;
            text.lines()
                .next()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
        })
        .collect()
}

/// Shim sockets live in /run/containerd/s/ (a hash of address, namespace and ID); each task's
/// bundle records its socket in an `address` file.
fn remove_shim_sockets(layout: &Layout) {
    let tasks = layout.state.join("io.containerd.runtime.v2.task");
    let Ok(namespaces) = std::fs::read_dir(&tasks) else {
        return;
    };
    for ns in namespaces.flatten() {
        let Ok(bundles) = std::fs::read_dir(ns.path()) else {
            continue;
        };
        for bundle in bundles.flatten() {
            let Ok(address) = std::fs::read_to_string(bundle.path().join("address")) else {
                continue;
            };
            let path = address.trim().trim_start_matches("unix://");
            if path.starts_with("/run/containerd/s/") {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Mount points at or below `dir`, deepest first (from /proc/self/mountinfo).
pub(super) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(&dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    mounts.dedup();
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unmount(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c is a valid NUL-terminated path.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b\134c"), "/a b\\c");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn shim_flags() {
        let argv: Vec<String> = [
            "shim",
            "-namespace",
            "k8s.io",
            "-id",
            "abc",
            "-address",
            "/s.sock",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(flag(&argv, "-id"), Some("abc"));
        assert_eq!(flag(&argv, "-address"), Some("/s.sock"));
    }
}
