//! A cluster with the real node agent (in-process kubelet, managed containerd, per-test CNI
//! bridge) for the tests that run real containers. Each test's cluster gets its own bridge and its
//! own pod network (`--cluster-cidr 10.X.Y.0/24` derived from the test's name), so tests run side
//! by side; the pods are deleted and containerd cleaned up on drop.

use super::{Cluster, wait_for};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A pod network of its own for a test: 10.X.Y.0/24 with X in 100..=199, from the name's hash
/// (FNV-1a), so that two tests never route the same subnet on two bridges.
pub fn pod_cidr_for(name: &str) -> String {
    let h = name.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3));
    format!("10.{}.{}.0/24", 100 + h % 100, (h >> 8) % 256)
}

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
}

/// A cluster whose node runs real containers; deletes its pods and cleans containerd up on drop.
pub struct Node {
    pub cluster: Cluster,
    bridge: String,
    pub pod_cidr: String,
}

impl Node {
    pub fn start(name: &str) -> Node {
        let registries = require_root_and_images();
        let bridge = format!(
            "kt{}",
            &name
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(11)
                .collect::<String>()
        );
        let reg = registries.to_string_lossy().into_owned();
        let pod_cidr = pod_cidr_for(name);
        let cluster = Cluster::start_with(
            name,
            &[
                "--disable-agent=false",
                "--registries",
                &reg,
                "--cni-bridge-name",
                &bridge,
                "--kubelet-port",
                "0",
                "--node-name",
                "kaji-test-node",
                "--cluster-cidr",
                &pod_cidr,
            ],
        );
        let node = Node {
            cluster,
            bridge,
            pod_cidr,
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
        // Workloads first, or their controllers would recreate the pods.
        let _ = self.cluster.kubectl(&[
            "delete",
            "deployments,replicasets,statefulsets,daemonsets,jobs",
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
        if !gone && !std::thread::panicking() {
            panic!("pods were not deleted within 30 s");
        }
    }
}
