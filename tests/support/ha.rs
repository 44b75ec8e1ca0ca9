//! An HA cluster for tests and the HA bench: an etcd cluster of N members (Debian's
//! /usr/bin/etcd, static `--initial-cluster` on free 127.0.0.1 ports) and M `kaji server`s on it
//! (`--datastore-endpoint`, k3s's external-datastore HA), each on its own loopback address
//! (127.0.X.11, .12, ... with one free port for all) so that the `kubernetes` endpoints list
//! them apart. The addresses are added to `lo` for the run (root): a server's certificate
//! carries the host's local addresses, so each serves its own address with a valid name.
//! The first server makes the cluster's CA, service-account key and node token; the others get
//! copies before they start (what a joining server downloads in `--server` mode). Everything
//! (agents, servers, etcd, addresses, directories) goes on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::support::{KUBECTL_NEW, free_port, tail, wait_for};

/// The files every server of a cluster shares (relative to the data dir).
const SHARED: &[&str] = &[
    "server/tls/ca.crt",
    "server/tls/ca.key",
    "server/tls/service-account.key",
    "token",
];

pub struct EtcdCluster {
    members: Vec<Child>,
    pub client_urls: Vec<String>,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers.
    pub fn start(n: usize) -> EtcdCluster {
        let dir = tempfile::Builder::new()
            .prefix("kaji-ha-etcd-")
            .tempdir()
            .expect("tempdir");
        let urls: Vec<(String, String)> = (0..n)
            .map(|_| {
                (
                    format!("http://127.0.0.1:{}", free_port()),
                    format!("http://127.0.0.1:{}", free_port()),
                )
            })
            .collect();
        let initial: Vec<String> = urls
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}={peer}"))
            .collect();
        let members = urls
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let log = std::fs::File::create(dir.path().join(format!("etcd-{i}.log")))
                    .expect("log file");
                Command::new("/usr/bin/etcd")
                    .arg(format!("--name=m{i}"))
                    .arg(format!(
                        "--data-dir={}",
                        dir.path().join(format!("m{i}")).display()
                    ))
                    .arg(format!("--listen-client-urls={client}"))
                    .arg(format!("--advertise-client-urls={client}"))
                    .arg(format!("--listen-peer-urls={peer}"))
                    .arg(format!("--initial-advertise-peer-urls={peer}"))
                    .arg(format!("--initial-cluster={}", initial.join(",")))
                    .arg("--initial-cluster-state=new")
                    .arg("--initial-cluster-token=kaji-ha-test")
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("starting /usr/bin/etcd (apt-get install etcd-server)")
            })
            .collect();
        let mut etcd = EtcdCluster {
            members,
            client_urls: urls.into_iter().map(|(c, _)| c).collect(),
            dir,
        };
        wait_for(
            "the etcd cluster to be healthy",
            Duration::from_secs(60),
            || {
                Command::new("/usr/bin/etcdctl")
                    .env("ETCDCTL_API", "3")
                    .arg(format!("--endpoints={}", etcd.endpoints()))
                    .args(["endpoint", "health"])
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|_| ())
            },
        );
        // A member that could not bind its probed free port (taken meanwhile by a parallel
        // test) has exited, and another test's member may be answering there: fail loudly.
        for (i, m) in etcd.members.iter_mut().enumerate() {
            if let Ok(Some(status)) = m.try_wait() {
                let log = std::fs::read_to_string(etcd.dir.path().join(format!("etcd-{i}.log")))
                    .unwrap_or_default();
                panic!("etcd member m{i} exited ({status}):\n{}", tail(&log, 10));
            }
        }
        etcd
    }

    /// The members' client URLs, comma-separated (`--datastore-endpoint`).
    pub fn endpoints(&self) -> String {
        self.client_urls.join(",")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            let _ = m.kill();
            let _ = m.wait();
        }
    }
}

pub struct HaServer {
    pub ip: String,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    child: Option<Child>,
}

impl HaServer {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn url(&self, port: u16) -> String {
        format!("https://{}:{port}", self.ip)
    }

    pub fn alive(&self) -> bool {
        self.child.is_some()
    }
}

pub struct HaCluster {
    pub name: String,
    pub etcd: EtcdCluster,
    /// The servers' HTTPS port (the same on every address).
    pub port: u16,
    pub servers: Vec<HaServer>,
    agents: Vec<(Child, PathBuf)>,
    addresses: Vec<String>,
    root: tempfile::TempDir,
    extra: Vec<String>,
}

/// Claims `n` addresses 127.0.X.`first`.. of a free 127.0.X.0/24 block: the first X whose
/// .`first` can be added to `lo` (a taken one is refused with "File exists"), so concurrent
/// clusters never share addresses (the HA clusters use .11.., tests/ha_join.rs .21..).
pub fn claim_block(first: u8, n: usize) -> (u8, Vec<String>) {
    for x in 40..=250u8 {
        let head = format!("127.0.{x}.{first}");
        let added = Command::new("ip")
            .args(["addr", "add", &format!("{head}/32"), "dev", "lo"])
            .output()
            .expect("running ip");
        if !added.status.success() {
            continue;
        }
        let mut addrs = vec![head];
        for i in 1..n {
            let a = format!("127.0.{x}.{}", usize::from(first) + i);
            let _ = Command::new("ip")
                .args(["addr", "add", &format!("{a}/32"), "dev", "lo"])
                .output();
            addrs.push(a);
        }
        return (x, addrs);
    }
    panic!("no free 127.0.X.{first} block");
}

impl HaCluster {
    /// The cluster's description before anything runs: `servers` servers on their own
    /// loopback addresses with data dirs under one temporary root.
    fn new(name: &str, etcd: EtcdCluster, servers: usize, extra: &[&str]) -> HaCluster {
        let root = tempfile::Builder::new()
            .prefix(&format!("kaji-{name}-"))
            .tempdir()
            .expect("tempdir");
        let (_, addresses) = claim_block(11, servers);
        HaCluster {
            name: name.to_string(),
            etcd,
            port: free_port(),
            servers: addresses
                .iter()
                .enumerate()
                .map(|(i, ip)| {
                    let dir = root.path().join(format!("server-{i}"));
                    HaServer {
                        ip: ip.clone(),
                        kubeconfig: dir.join("kubeconfig.yaml"),
                        dir,
                        child: None,
                    }
                })
                .collect(),
            agents: Vec::new(),
            addresses,
            root,
            extra: extra.iter().map(|s| (*s).to_string()).collect(),
        }
    }

    /// `servers` servers on an etcd of `members` members; `extra` flags for every server.
    pub fn start(name: &str, members: usize, servers: usize, extra: &[&str]) -> HaCluster {
        let etcd = EtcdCluster::start(members);
        let mut c = HaCluster::new(name, etcd, servers, extra);
        c.spawn(0);
        c.wait_ready(0);
        // The others share the first one's CA, service-account key and token.
        for i in 1..servers {
            for rel in SHARED {
                let from = c.servers[0].dir.join(rel);
                let to = c.servers[i].dir.join(rel);
                std::fs::create_dir_all(to.parent().expect("a parent")).expect("mkdir");
                std::fs::copy(&from, &to)
                    .unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
            }
        }
        for i in 1..servers {
            c.spawn(i);
        }
        for i in 1..servers {
            c.wait_ready(i);
        }
        c
    }

    pub fn spawn(&mut self, i: usize) {
        let s = &mut self.servers[i];
        std::fs::create_dir_all(&s.dir).expect("data dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(s.dir.join("server.log"))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_kaji"))
            .args(["server", "--disable-agent"])
            .args(["--bind-address", &s.ip, "--advertise-address", &s.ip])
            .args(["--https-listen-port", &self.port.to_string()])
            .arg("--data-dir")
            .arg(&s.dir)
            .args(["--datastore-endpoint", &self.etcd.endpoints()])
            .args(&self.extra)
            .env("KAJI_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting kaji server");
        s.child = Some(child);
    }

    fn wait_ready(&mut self, i: usize) {
        wait_for(
            &format!("server {i} to answer"),
            Duration::from_secs(90),
            || {
                let s = &mut self.servers[i];
                if let Some(status) = s.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    panic!(
                        "kaji server {i} exited early ({status}); log:\n{}",
                        tail(&s.log(), 40)
                    );
                }
                if !s.kubeconfig.exists() {
                    return None;
                }
                self.kubectl(i, &["get", "--raw", "/readyz"])
                    .status
                    .success()
                    .then_some(())
            },
        );
    }

    /// kill -9 of server `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.servers[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The first server still running.
    pub fn alive(&self) -> usize {
        self.servers
            .iter()
            .position(HaServer::alive)
            .expect("a live server")
    }

    pub fn kubectl(&self, i: usize, args: &[&str]) -> Output {
        let s = &self.servers[i];
        Command::new(KUBECTL_NEW)
            .arg("--kubeconfig")
            .arg(&s.kubeconfig)
            .args(["--request-timeout", "10s"])
            .args(args)
            .env("HOME", &s.dir)
            .env("KUBECACHEDIR", s.dir.join("cache"))
            .stdin(Stdio::null())
            .output()
            .expect("running kubectl")
    }

    /// kubectl on a live server; stdout, failing the test with stderr on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        let i = self.alive();
        let out = self.kubectl(i, args);
        assert!(
            out.status.success(),
            "kubectl {args:?} on server {i} failed: {}\nserver log tail:\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&self.servers[i].log(), 30)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `holderIdentity` of the Lease `kube-system/<name>` (read on a live server).
    pub fn lease_holder(&self, name: &str) -> Option<String> {
        let out = self.kubectl(
            self.alive(),
            &[
                "get",
                "lease",
                "-n",
                "kube-system",
                name,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
        );
        let h = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !h.is_empty()).then_some(h)
    }

    /// Which server an election identity belongs to (each logs the leases it acquires).
    pub fn server_of(&self, identity: &str) -> Option<usize> {
        self.servers
            .iter()
            .position(|s| s.log().contains(&format!("identity={identity}")))
    }

    /// A client for server `i` (its admin kubeconfig).
    pub async fn client(&self, i: usize) -> kube::Client {
        let kc =
            kube::config::Kubeconfig::read_from(&self.servers[i].kubeconfig).expect("kubeconfig");
        let mut cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .expect("client config");
        cfg.connect_timeout = Some(Duration::from_secs(2));
        cfg.read_timeout = Some(Duration::from_secs(10));
        cfg.write_timeout = Some(Duration::from_secs(10));
        kube::Client::try_from(cfg).expect("client")
    }

    /// Starts `kaji agent --hollow` with `nodes` nodes named `<prefix>-N`, given server `i`'s
    /// URL (its load balancer on a free port); returns its index.
    pub fn start_hollow_agent(
        &mut self,
        i: usize,
        nodes: usize,
        prefix: &str,
        extra: &[&str],
    ) -> usize {
        let dir = self
            .root
            .path()
            .join(format!("agent-{}", self.agents.len()));
        std::fs::create_dir_all(&dir).expect("agent dir");
        let log = std::fs::File::create(dir.join("agent.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_kaji"))
            .args(["agent", "--hollow", "--nodes", &nodes.to_string()])
            .args(["--node-name-prefix", prefix, "--lb-server-port", "0"])
            .args(["--server", &self.servers[i].url(self.port)])
            .arg("--token-file")
            .arg(self.servers[0].dir.join("token"))
            .arg("--data-dir")
            .arg(&dir)
            .args(extra)
            .env("KAJI_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting kaji agent");
        self.agents.push((child, dir));
        self.agents.len() - 1
    }

    pub fn agent_log(&self, a: usize) -> String {
        std::fs::read_to_string(self.agents[a].1.join("agent.log")).unwrap_or_default()
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for HaCluster {
    fn drop(&mut self) {
        for (a, _) in &mut self.agents {
            let _ = a.kill();
            let _ = a.wait();
        }
        for i in 0..self.servers.len() {
            self.kill(i);
        }
        for a in &self.addresses {
            let _ = Command::new("ip")
                .args(["addr", "del", &format!("{a}/32"), "dev", "lo"])
                .output();
        }
    }
}

// ---- Managed etcd (helper A): the same cluster on `--cluster-init` / `--server` ----

impl HaCluster {
    /// `servers` servers on Kaji's managed etcd (k3s's embedded-etcd HA): server 0 with
    /// `--cluster-init`, the others joining it one at a time with `--server <server 0>
    /// --token-file <server 0>/server/token` (etcd takes one new member at a time). Each
    /// server's member listens on its own address with etcd's default ports and dies with its
    /// server (kill -9 included); a respawned server finds its member in its data dir. `extra`
    /// flags go to every server, as in [`HaCluster::start`].
    pub fn start_managed(name: &str, servers: usize, extra: &[&str]) -> HaCluster {
        // No external members: spawn's --datastore-endpoint is empty, the managed member wins.
        let etcd = EtcdCluster {
            members: Vec::new(),
            client_urls: Vec::new(),
            dir: tempfile::Builder::new()
                .prefix("kaji-ha-etcd-")
                .tempdir()
                .expect("tempdir"),
        };
        let base: Vec<String> = extra.iter().map(|s| (*s).to_string()).collect();
        let mut c = HaCluster::new(name, etcd, servers, extra);
        c.extra = [base.clone(), vec!["--cluster-init".to_string()]].concat();
        c.spawn(0);
        c.wait_ready(0);
        let first = c.servers[0].url(c.port);
        let token = c.servers[0].dir.join("server/token");
        for i in 1..servers {
            c.extra = [
                base.clone(),
                vec![
                    "--server".to_string(),
                    first.clone(),
                    "--token-file".to_string(),
                    token.display().to_string(),
                ],
            ]
            .concat();
            c.spawn(i);
            c.wait_ready(i);
        }
        c.extra = base;
        c
    }
}
