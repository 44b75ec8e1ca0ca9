//! A cluster with the real node agent (in-process kubelet, managed containerd, per-test CNI
//! bridge) for the tests that run real containers. Each test's cluster gets its own bridge and its
//! own pod network (`--cluster-cidr 10.X.Y.0/24`), claimed with a lock file, so tests run side by
//! side, in one test binary or several; the pods are deleted and containerd cleaned up on drop.

use super::{Cluster, wait_for};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Networks a test can claim: pods on 10.X.Y.0/24 with X in 100..=149, Services on
/// 10.(X+100).Y.0/24 (cluster DNS at .10), so that tests side by side never share an address.
const NETWORKS: u64 = 50 * 256;

/// Claims a network number for a test: an exclusive `flock` on
/// `/run/kaji-tests/net-<n>.lock`, held while the returned file is open (the kernel drops it when
/// the test process ends, however it ends). The search starts at the name's hash (FNV-1a).
fn claim_network(name: &str) -> (std::fs::File, u64) {
    let h = name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    let dir = Path::new("/run/kaji-tests");
    std::fs::create_dir_all(dir).expect("creating /run/kaji-tests");
    for i in 0..NETWORKS {
        let n = (h + i) % NETWORKS;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("net-{n}.lock")))
            .expect("opening a network lock file");
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc_flock(std::os::fd::AsRawFd::as_raw_fd(&file), LOCK_EX | LOCK_NB) } == 0 {
            return (file, n);
        }
    }
    panic!("every test network is taken");
}

const LOCK_EX: i32 = 2;
const LOCK_NB: i32 = 4;

fn require_root_and_images() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc_geteuid() },
        0,
        "the kubelet tests run real containers and need root"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-images.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("running scripts/test-images.sh");
    assert!(
        out.status.success(),
        "scripts/test-images.sh failed (it needs docker-registry, skopeo, busybox-static: .ci/install-deps):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from("/etc/kaji/test-registries.yaml")
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
    #[link_name = "flock"]
    fn libc_flock(fd: i32, op: i32) -> i32;
}

/// A cluster whose node runs real containers; deletes its pods and cleans containerd up on drop.
pub struct Node {
    pub cluster: Cluster,
    bridge: String,
    pub pod_cidr: String,
    /// The test's own Service range (`--service-cidr`), a /24.
    pub service_cidr: String,
    /// The first three octets of the service range, e.g. `10.200.7`.
    pub service_prefix: String,
    /// The cluster DNS address (`.10` of the service range).
    pub cluster_dns: String,
    /// The proxy's nftables table (inet family), named after the bridge.
    pub proxy_table: String,
    /// The ingress controller's ports.
    pub ingress_http_port: u16,
    pub ingress_https_port: u16,
    _network: std::fs::File,
}

impl Node {
    pub fn start(name: &str) -> Node {
        Node::start_with(name, &[])
    }

    /// A node whose `kaji server` gets extra flags (e.g. the kubelet's log rotation).
    /// The registries.yaml of the test images, for tests that extend it.
    pub fn test_registries() -> PathBuf {
        require_root_and_images()
    }

    pub fn start_with(name: &str, extra: &[&str]) -> Node {
        let registries = require_root_and_images();
        let (network, n) = claim_network(name);
        // 15 characters at most (IFNAMSIZ): unique by the claimed number, readable by the name.
        let bridge = format!(
            "kt{n:05}{}",
            &name
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(8)
                .collect::<String>()
        );
        let pod_cidr = format!("10.{}.{}.0/24", 100 + n / 256, n % 256);
        let service_prefix = format!("10.{}.{}", 200 + n / 256, n % 256);
        let service_cidr = format!("{service_prefix}.0/24");
        let cluster_dns = format!("{service_prefix}.10");
        let proxy_table = format!("kaji-proxy-{bridge}");
        let ingress_http_port = super::free_port();
        let ingress_https_port = super::free_port();
        let (http, https) = (
            ingress_http_port.to_string(),
            ingress_https_port.to_string(),
        );
        let reg = registries.to_string_lossy().into_owned();
        // A test may bring its own registries.yaml (`--registries` in `extra`).
        let own_registries = extra.contains(&"--registries");
        let mut flags: Vec<&str> = vec![
            "--disable-agent=false",
            "--cni-bridge-name",
            &bridge,
            "--kubelet-port",
            "0",
            "--node-name",
            "kaji-test-node",
            "--cluster-cidr",
            &pod_cidr,
            "--service-cidr",
            &service_cidr,
            "--proxy-table",
            &proxy_table,
            "--proxy-metrics-bind-address",
            "off",
            "--dns-metrics-bind-address",
            "off",
            // One node: no pod network across nodes (no VXLAN device shared by tests side by side).
            "--flannel-backend",
            "none",
            // Names outside the cluster (a busybox nslookup of a bare name also asks for the
            // name itself) must not reach the host's resolver off the machine: a closed local
            // port answers them (SERVFAIL) instead.
            "--dns-upstreams",
            "127.0.0.1:9",
            "--ingress-http-port",
            &http,
            "--ingress-https-port",
            &https,
        ];
        if !own_registries {
            flags.extend(["--registries", reg.as_str()]);
        }
        flags.extend_from_slice(extra);
        let cluster = Cluster::start_with(name, &flags);
        let node = Node {
            cluster,
            bridge,
            pod_cidr,
            service_cidr,
            service_prefix,
            cluster_dns,
            proxy_table,
            ingress_http_port,
            ingress_https_port,
            _network: network,
        };
        wait_for("the node to be Ready", Duration::from_secs(60), || {
            let out = node.cluster.kubectl(&[
                "get",
                "node",
                "kaji-test-node",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
        });
        node
    }

    pub fn apply(&self, manifest: &str) {
        self.cluster.apply(super::KUBECTL_NEW, manifest);
    }

    pub fn jsonpath(&self, pod: &str, path: &str) -> String {
        let out = self
            .cluster
            .kubectl(&["get", "pod", pod, "-o", &format!("jsonpath={path}")]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn wait_running(&self, pod: &str) -> String {
        wait_for(
            &format!("pod {pod} Running with an IP"),
            Duration::from_secs(60),
            || {
                let s = self.jsonpath(pod, "{.status.phase} {.status.podIP}");
                let (phase, ip) = s.split_once(' ').unwrap_or((&s, ""));
                (phase == "Running" && !ip.is_empty()).then(|| ip.to_string())
            },
        )
    }

    pub fn wait_phase(&self, pod: &str, phase: &str) {
        wait_for(
            &format!("pod {pod} {phase}"),
            Duration::from_secs(60),
            || (self.jsonpath(pod, "{.status.phase}") == phase).then_some(()),
        );
    }

    pub fn logs(&self, args: &[&str]) -> String {
        let mut a = vec!["logs"];
        a.extend_from_slice(args);
        String::from_utf8_lossy(&self.cluster.kubectl(&a).stdout).into_owned()
    }

    pub fn wait_logs(&self, args: &[&str], want: &str) -> String {
        wait_for(
            &format!("logs {args:?} to contain {want:?}"),
            Duration::from_secs(60),
            || {
                let l = self.logs(args);
                l.contains(want).then_some(l)
            },
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Workloads first, or their controllers would recreate the pods (CronJobs before the Jobs
        // they make: a CronJob due during the teardown made a Job, and a pod, after the delete).
        let _ = self.cluster.kubectl(&[
            "delete",
            "cronjobs,deployments,replicasets,statefulsets,daemonsets,jobs",
            "--all",
            "--wait=false",
        ]);
        let _ = self.cluster.kubectl(&[
            "delete",
            "pods",
            "--all",
            "--grace-period=1",
            "--wait=false",
        ]);
        let gone = (0..300).any(|_| {
            let out = self.cluster.kubectl(&["get", "pods", "-o", "name"]);
            let empty = out.status.success() && out.stdout.is_empty();
            if !empty {
                std::thread::sleep(Duration::from_millis(100));
            }
            empty
        });
        self.cluster.kill();
        let mut opts = kaji_kubelet::containerd::ContainerdOptions::new(
            self.cluster.data_dir().join("agent/containerd"),
            self.pod_cidr.as_str(),
        );
        opts.bridge_name = self.bridge.clone();
        opts.network_name = format!("kaji-{}", self.bridge);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _ = rt.block_on(kaji_kubelet::containerd::cleanup(&opts));
        // The node's network pieces that outlive the server: the proxy's table and the DNS address.
        let _ = rt.block_on(kaji_proxy::nft::delete_table(&self.proxy_table));
        if let Ok(ip) = self.cluster_dns.parse() {
            kaji_dns::remove_local_address(ip);
        }
        if !gone && !std::thread::panicking() {
            panic!("pods were not deleted within 30 s");
        }
    }
}
