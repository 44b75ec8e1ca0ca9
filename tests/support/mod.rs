//! Shared harness of the end-to-end tests: each test starts its own `kaji server` on a free
//! port with its own data directory, drives it with stock kubectl (or a client library), and
//! leaves nothing behind (the server is killed and its directory removed on drop).
#![allow(dead_code)]

pub mod images;
pub mod node;
pub mod webhook;

use serde_json::Value;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The kubectl versions the tests run against (installed by the machine image).
pub const KUBECTL_NEW: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
pub const KUBECTL_OLD: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `f` until it returns Some or the deadline passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct Cluster {
    pub name: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    child: Option<Child>,
    /// Extra `kaji server` flags (see [`Cluster::start_with`]).
    extra_args: Vec<String>,
}

impl Cluster {
    /// Starts `kaji server` for the test named `name` and waits until kubectl can talk to it.
    pub fn start(name: &str) -> Cluster {
        Cluster::start_with(name, &[])
    }

    /// Starts `kaji server` with extra flags, e.g. `["--hollow-nodes", "3"]`.
    pub fn start_with(name: &str, flags: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix(&format!("kaji-{name}-"))
            .tempdir()
            .expect("tempdir");
        let extra_args = flags.iter().map(|f| (*f).to_string()).collect();
        let mut c = Cluster {
            name: name.to_string(),
            port: free_port(),
            kubeconfig: dir.path().join("kubeconfig.yaml"),
            dir,
            child: None,
            extra_args,
        };
        c.spawn();
        c
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log file");
        // KAJI_TEST_DATASTORE_ENDPOINT=http://127.0.0.1:2379 runs every cluster on that etcd, each
        // under its own key prefix.
        let etcd: Vec<String> =
            std::env::var("KAJI_TEST_DATASTORE_ENDPOINT").map_or(Vec::new(), |url| {
                vec![
                    "--datastore-endpoint".into(),
                    url,
                    "--datastore-key-prefix".into(),
                    format!("/kaji-test/{}-{}", self.name, self.port),
                ]
            });
        let child = Command::new(env!("CARGO_BIN_EXE_kaji"))
            .args(["server", "--disable-agent", "--bind-address", "127.0.0.1"])
            .arg("--https-listen-port")
            .arg(self.port.to_string())
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(&etcd)
            .args(&self.extra_args)
            .env("KAJI_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting kaji server");
        self.child = Some(child);
        let kubeconfig = self.kubeconfig.clone();
        wait_for("the API server to answer", Duration::from_secs(60), || {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("kaji server exited early ({status}); log:\n{}", self.log());
            }
            if !kubeconfig.exists() {
                return None;
            }
            let out = Command::new(KUBECTL_NEW)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["get", "--raw", "/readyz"])
                .output()
                .ok()?;
            out.status.success().then_some(())
        });
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(KUBECTL_NEW, args, None)
    }

    pub fn kubectl_with(&self, kubectl: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(kubectl);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        cmd.env("HOME", self.dir.path())
            .env("KUBECACHEDIR", self.dir.path().join("cache"));
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("running {kubectl}: {e}"));
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("writing stdin");
        }
        child.wait_with_output().expect("kubectl output")
    }

    /// Runs kubectl and returns stdout, failing the test with stderr if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with(KUBECTL_NEW, args, None)
    }

    pub fn ok_with(&self, kubectl: &str, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_with(kubectl, args, stdin);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{kubectl} {args:?} failed: {}\nstdout: {stdout}\nserver log tail:\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 30)
        );
        stdout
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("kubectl printed JSON")
    }

    pub fn apply(&self, kubectl: &str, manifest: &str) -> String {
        self.ok_with(kubectl, &["apply", "-f", "-"], Some(manifest))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
