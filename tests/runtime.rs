//! The node's runtime environment on this machine: a managed containerd (kaji-kubelet's
//! `containerd` module) with Kaji's pause image, the CNI bridge, the test registry mirror, the
//! supervisor's restart, and a cleanup that leaves nothing behind.
//!
//! Needs root, containerd, runc, the CNI plugins and the test registry (scripts/test-images.sh,
//! which this test runs; it is idempotent). A missing piece fails the test; nothing is skipped.

use kaji_kubelet::containerd::{self, ContainerdOptions, ManagedContainerd, PAUSE_IMAGE};
use kaji_kubelet::cri::{Cri, api};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next());
    assert_eq!(
        uid,
        Some("0"),
        "this test runs real containers: it needs root"
    );
    for tool in ["containerd", "ctr", "runc", "ip"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
            .unwrap_or(false);
        assert!(found, "{tool} is missing: run .ci/install-deps");
    }
    assert!(
        Path::new("/usr/lib/cni/bridge").exists(),
        "CNI plugins missing: apt-get install containernetworking-plugins"
    );
}

/// Runs scripts/test-images.sh (found above the crate) once per process and returns the
/// registries file it writes.
fn test_images() -> PathBuf {
    static DONE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DONE.get_or_init(build_test_images).clone()
}

fn build_test_images() -> PathBuf {
    let mut dir = Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    let script = loop {
        let candidate = dir.join("scripts/test-images.sh");
        if candidate.exists() {
            break candidate;
        }
        assert!(
            dir.pop(),
            "scripts/test-images.sh not found above {}",
            env!("CARGO_MANIFEST_DIR")
        );
    };
    let out = std::process::Command::new(&script)
        .output()
        .expect("running scripts/test-images.sh");
    assert!(
        out.status.success(),
        "scripts/test-images.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from("/etc/kaji/test-registries.yaml")
}

async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn http_get(ip: &str, port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect_timeout(
        &format!("{ip}:{port}").parse().ok()?,
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(format!(
                    "{}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&*dir.to_string_lossy()))
        .map(str::to_string)
        .collect()
}

/// One test's containerd: its own state dir, bridge, network, pod CIDR and cgroup parent.
struct Instance {
    dir: tempfile::TempDir,
    opts: ContainerdOptions,
    cgroup_parent: String,
    subnet_prefix: String,
}

impl Instance {
    fn new(n: u32) -> Instance {
        let dir = tempfile::Builder::new()
            .prefix("kaji-rt-")
            .tempdir()
            .expect("tempdir");
        let tag = (std::process::id() % 10_000) * 10 + n;
        let third = tag % 250;
        let mut opts = ContainerdOptions::new(
            dir.path().join("containerd"),
            format!("10.244.{third}.0/24"),
        );
        opts.registries = Some(test_images());
        opts.bridge_name = format!("kajirt{tag}");
        opts.network_name = format!("kaji-rt-{tag}");
        Instance {
            dir,
            opts,
            cgroup_parent: format!("/kaji-rt-{tag}"),
            subnet_prefix: format!("10.244.{third}."),
        }
    }

    /// Runs a pod with the nginx:1.16 test image (pulled through the docker.io mirror) and
    /// returns its sandbox ID, pod IP and netns file.
    async fn run_web_pod(&self, cri: &mut Cri) -> (String, String, PathBuf) {
        let image = "docker.io/library/nginx:1.16";
        cri.pull_image(image, None)
            .await
            .expect("pull nginx:1.16 through the mirror");
        assert!(
            cri.image_status(image)
                .await
                .expect("ImageStatus")
                .is_some()
        );
        let logs = self.dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let sandbox_config = api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: "web".into(),
                uid: format!("uid{}", self.cgroup_parent),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: "web".into(),
            log_directory: logs.to_string_lossy().into_owned(),
            linux: Some(api::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sandbox = cri
            .run_sandbox(sandbox_config.clone())
            .await
            .expect("RunPodSandbox with the pause image");
        let container_config = api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: "nginx".into(),
                attempt: 0,
            }),
            image: Some(api::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            log_path: "nginx/0.log".into(),
            ..Default::default()
        };
        let container = cri
            .create_container(&sandbox, container_config, sandbox_config)
            .await
            .expect("CreateContainer");
        cri.start_container(&container)
            .await
            .expect("StartContainer");
        let status = cri
            .runtime
            .pod_sandbox_status(api::PodSandboxStatusRequest {
                pod_sandbox_id: sandbox.clone(),
                verbose: true,
            })
            .await
            .expect("PodSandboxStatus")
            .into_inner();
        let ip = status
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .unwrap_or_default();
        assert!(
            ip.starts_with(&self.subnet_prefix),
            "pod IP {ip:?} not from the pod CIDR"
        );
        let info = status.info.values().cloned().collect::<Vec<_>>().join("\n");
        let netns = info
            .split('"')
            .find(|s| s.starts_with("/var/run/netns/") || s.starts_with("/run/netns/"))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("no netns path in the sandbox's verbose status: {info}"));
        assert!(netns.exists(), "netns file {} missing", netns.display());
        let page = wait_for("the pod's web server", Duration::from_secs(10), || async {
            http_get(&ip, 80)
        })
        .await;
        assert!(page.contains("nginx 1.16 (kaji test image)"), "{page}");
        assert!(
            Path::new("/sys/class/net")
                .join(&self.opts.bridge_name)
                .exists(),
            "bridge missing"
        );
        (sandbox, ip, netns)
    }

    /// Nothing of this instance is left on the machine.
    fn assert_clean(&self, ip: &str, netns: &Path) {
        let socket = self.opts.state_dir.join("containerd.sock");
        let leftovers = processes_mentioning(&socket.to_string_lossy());
        assert!(leftovers.is_empty(), "processes left behind: {leftovers:?}");
        // Only the page counts: this machine's default route may accept any connection.
        assert!(
            !http_get(ip, 80).is_some_and(|p| p.contains("kaji test image")),
            "the pod still answers after cleanup"
        );
        let mounts = mounts_under(self.dir.path());
        assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
        assert!(
            !Path::new("/sys/class/net")
                .join(&self.opts.bridge_name)
                .exists(),
            "bridge left behind"
        );
        assert!(
            !netns.exists(),
            "netns file {} left behind",
            netns.display()
        );
        let ipam = self
            .opts
            .state_dir
            .join("cni/networks")
            .join(&self.opts.network_name);
        let allocated: Vec<_> = std::fs::read_dir(&ipam)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip"))
            .collect();
        assert!(
            allocated.is_empty(),
            "pod IPs still allocated: {allocated:?}"
        );
        let nat = std::process::Command::new("iptables-save")
            .args(["-t", "nat"])
            .output()
            .expect("iptables-save");
        let nat = String::from_utf8_lossy(&nat.stdout);
        let needle = format!("\\\"{}\\\"", self.opts.network_name);
        let rules: Vec<_> = nat.lines().filter(|l| l.contains(&needle)).collect();
        assert!(rules.is_empty(), "iptables rules left behind: {rules:?}");
        let cached: Vec<_> = std::fs::read_dir("/var/lib/cni/results")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{}-", self.opts.network_name))
            })
            .collect();
        assert!(
            cached.is_empty(),
            "CNI result cache left behind: {cached:?}"
        );
        // Container cgroups are gone; the pod-level parent is the kubelet's to remove (here the
        // test's), and it must be empty.
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let parent = hierarchy
                .path()
                .join(self.cgroup_parent.trim_start_matches('/'));
            if parent.exists() {
                // Killed processes leave their cgroups a moment after they are reaped; poll.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                loop {
                    match std::fs::remove_dir(&parent) {
                        Ok(()) => break,
                        Err(e) if std::time::Instant::now() >= deadline => {
                            panic!("cgroup {} not empty: {e}", parent.display())
                        }
                        Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_containerd_runs_a_pod_survives_a_crash_and_cleans_up() {
    require_root();
    let it = Instance::new(1);

    // Start: config written, CRI answering, pause image imported.
    let started = Instant::now();
    let mc = ManagedContainerd::start(it.opts.clone())
        .await
        .expect("managed containerd starts");
    eprintln!("containerd ready in {:?}", started.elapsed());
    let socket = mc.socket().to_path_buf();
    assert!(socket.starts_with(&it.opts.state_dir));
    let images = kaji_kubelet::images::list_images(&socket)
        .await
        .expect("ctr images ls");
    assert!(
        images.iter().any(|i| i == PAUSE_IMAGE),
        "pause image missing from {images:?}"
    );
    let hosts = std::fs::read_to_string(it.opts.state_dir.join("certs.d/docker.io/hosts.toml"))
        .expect("hosts.toml");
    assert!(
        hosts.contains("[host.\"http://127.0.0.1:5000\"]"),
        "{hosts}"
    );

    let mut cri = Cri::connect(&socket, Duration::from_secs(5))
        .await
        .expect("CRI client");
    let (sandbox, ip, netns) = it.run_web_pod(&mut cri).await;

    // kill -9 containerd: the supervisor restarts it; the pod keeps running meanwhile.
    let pid = mc.pid().expect("containerd pid");
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    wait_for(
        "containerd to be restarted",
        Duration::from_secs(20),
        || async {
            (mc.restarts() >= 1
                && mc.pid().is_some_and(|p| p != pid)
                && containerd::cri_version(&socket).await.is_ok())
            .then_some(())
        },
    )
    .await;
    assert!(
        http_get(&ip, 80).is_some_and(|p| p.contains("nginx 1.16")),
        "the pod died with containerd"
    );
    let mut cri = Cri::connect(&socket, Duration::from_secs(5))
        .await
        .expect("CRI after restart");
    let sandboxes = cri
        .list_sandboxes(None)
        .await
        .expect("ListPodSandbox after restart");
    assert!(
        sandboxes.iter().any(|s| s.id == sandbox),
        "the restarted containerd lost the sandbox"
    );

    // Stop without stopping the pod first: cleanup must take everything down.
    mc.stop().await.expect("stop and clean up");
    it.assert_clean(&ip, &netns);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_finds_its_pods_and_cleanup_works_after_a_crash() {
    require_root();
    let it = Instance::new(2);
    let mc = ManagedContainerd::start(it.opts.clone())
        .await
        .expect("managed containerd starts");
    let mut cri = Cri::connect(mc.socket(), Duration::from_secs(5))
        .await
        .expect("CRI client");
    let (sandbox, ip, netns) = it.run_web_pod(&mut cri).await;

    // The agent dies: dropping the handle kills containerd but not the pods.
    drop(cri);
    drop(mc);
    assert!(
        http_get(&ip, 80).is_some_and(|p| p.contains("nginx 1.16")),
        "the pod died with the agent"
    );

    // The next agent start finds the pod again.
    let mc = ManagedContainerd::start(it.opts.clone())
        .await
        .expect("containerd starts again");
    let mut cri = Cri::connect(mc.socket(), Duration::from_secs(5))
        .await
        .expect("CRI client");
    let ready = cri
        .list_sandboxes(None)
        .await
        .expect("ListPodSandbox")
        .iter()
        .any(|s| s.id == sandbox && s.state == api::PodSandboxState::SandboxReady as i32);
    assert!(ready, "the sandbox is not found Ready after a restart");

    // The agent dies again; cleanup alone (containerd not running) removes everything.
    drop(cri);
    drop(mc);
    containerd::cleanup(&it.opts)
        .await
        .expect("cleanup after a crash");
    it.assert_clean(&ip, &netns);
}
