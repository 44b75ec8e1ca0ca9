//! A real cluster of several nodes on one machine, for the tests of the pod network across nodes.
//!
//! - The underlay: a bridge `ku<NNN>` in the root namespace with the private network
//!   172.31.NNN.0/24 (no uplink: nothing leaves the machine), NNN claimed with a lock file.
//! - Node 1: `kaji server` in the root namespace, listening on 172.31.NNN.1, with its own node.
//! - Nodes 2..N: each a network namespace `kt-NNN-<i>-<test>` with a veth (`eth0`, 172.31.NNN.i)
//!   on the underlay and `lo` up, running `nsenter --net=/run/netns/NS kaji agent --server
//!   https://172.31.NNN.1:PORT` with its own data dir, managed containerd, proxy and DNS. (Not
//!   `ip netns exec`: its private mount namespace with a fresh /sys hides the cgroup mounts
//!   from runc.)
//! - Pods on 172.28.(4*NNN).0/22 (a /24 per node), Services on 172.29.NNN.0/24, the VXLAN port
//!   20000+NNN (the same on every node of the cluster).
//! - Images: the agents pull the test images through a forwarder on 172.31.NNN.1:5000 to the
//!   local test registry (127.0.0.1:5000 is the namespace's own loopback there).
//!
//! Drop tears it all down: the agents are killed and `kaji killall` run for each data dir (in its
//! namespace), the namespaces deleted, the server killed and `kaji killall` run for its data dir
//! (its containers, bridge, VXLAN device, nftables tables, DNS address), the underlay deleted.

// Included by the multi-node tests with `#[path]` beside `mod support` (the other test binaries
// do not build it).
use crate::support::{Cluster, free_port, wait_for};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Cluster numbers a test can claim (the pod range 172.28.(4*n).0/22 needs n < 64).
const CLUSTERS: u64 = 64;

unsafe extern "C" {
    #[link_name = "flock"]
    fn multinode_flock(fd: i32, op: i32) -> i32;
}

fn claim(name: &str) -> (std::fs::File, u64) {
    let h = name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    let dir = Path::new("/run/kaji-tests");
    std::fs::create_dir_all(dir).expect("creating /run/kaji-tests");
    for i in 0..CLUSTERS {
        let n = (h + i) % CLUSTERS;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("multinode-{n}.lock")))
            .expect("opening a cluster lock file");
        // SAFETY: flock on a descriptor we own (LOCK_EX | LOCK_NB).
        if unsafe { multinode_flock(std::os::fd::AsRawFd::as_raw_fd(&file), 2 | 4) } == 0 {
            return (file, n);
        }
    }
    panic!("every multi-node test network is taken");
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs a command of the harness, failing the test when it fails.
fn sh(prog: &str, args: &[&str]) {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a clean-up command; what is already gone is no error.
fn quiet(prog: &str, args: &[&str]) -> bool {
    Command::new(prog)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One node of the cluster besides the server's.
pub struct AgentNode {
    pub name: String,
    pub netns: String,
    pub ip: String,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    /// Its `kaji agent` flags, for a restart.
    args: Vec<String>,
}

impl AgentNode {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Kills the agent at once (SIGKILL); its containerd and pods keep running.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Forwards TCP connections from `listen` to `target` until dropped.
struct Forwarder {
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
}

impl Forwarder {
    fn start(listen: &str, target: &'static str) -> Forwarder {
        let listener =
            TcpListener::bind(listen).unwrap_or_else(|e| panic!("binding {listen}: {e}"));
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(inbound) = conn else { continue };
                let Ok(outbound) = TcpStream::connect(target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (inbound.try_clone(), outbound.try_clone()),
                    (outbound.try_clone(), inbound.try_clone()),
                ]
                .into_iter()
                .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Forwarder { stop, addr }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// A cluster of `kaji server` (node-1, root namespace) and agents (node-2.., namespaces).
pub struct MultiNode {
    pub cluster: Cluster,
    pub n: u64,
    /// The underlay bridge (`ku<NNN>`).
    pub underlay: String,
    /// The first three octets of the underlay, e.g. `172.31.7`.
    pub underlay_prefix: String,
    pub cluster_cidr: String,
    pub service_cidr: String,
    pub service_prefix: String,
    pub cluster_dns: String,
    pub vxlan_port: u16,
    pub agents: Vec<AgentNode>,
    /// The pod network backend (`--flannel-backend`).
    pub backend: String,
    kaji: PathBuf,
    agent_registries: PathBuf,
    _forwarder: Forwarder,
    _lock: std::fs::File,
}

impl MultiNode {
    /// A cluster of `nodes` nodes (the server's included) with the vxlan backend.
    pub fn start(name: &str, nodes: usize) -> MultiNode {
        MultiNode::start_with(name, nodes, "vxlan", &[])
    }

    /// `server_extra`: further `kaji server` flags (e.g. `--node-monitor-grace-period`).
    pub fn start_with(name: &str, nodes: usize, backend: &str, server_extra: &[&str]) -> MultiNode {
        let registries = crate::support::node::Node::test_registries();
        let (lock, n) = claim(name);
        let underlay = format!("ku{n:03}");
        let underlay_prefix = format!("172.31.{n}");
        let server_ip = format!("{underlay_prefix}.1");
        let cluster_cidr = format!("172.28.{}.0/22", 4 * n);
        let service_prefix = format!("172.29.{n}");
        let service_cidr = format!("{service_prefix}.0/24");
        let cluster_dns = format!("{service_prefix}.10");
        let vxlan_port = 20000 + n as u16;
        let short: String = name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        let netns = |i: usize| format!("kt-{n}-{i}-{short}");

        // Whatever a killed earlier run with this number left behind.
        for i in 2..=8 {
            quiet("ip", &["netns", "del", &netns(i)]);
        }
        quiet("ip", &["link", "del", &underlay]);

        sh("ip", &["link", "add", &underlay, "type", "bridge"]);
        sh(
            "ip",
            &["addr", "add", &format!("{server_ip}/24"), "dev", &underlay],
        );
        sh("ip", &["link", "set", &underlay, "up"]);
        let forwarder = Forwarder::start(&format!("{server_ip}:5000"), "127.0.0.1:5000");

        let port_s = vxlan_port.to_string();
        let (http, https) = (free_port().to_string(), free_port().to_string());
        let reg = registries.to_string_lossy().into_owned();
        let node_flags = |i: usize| -> Vec<String> {
            let bridge = format!("kb{n:03}-{i}");
            [
                "--node-name",
                &format!("node-{i}"),
                "--cni-bridge-name",
                &bridge,
                "--kubelet-port",
                "0",
                "--service-cidr",
                &service_cidr,
                "--proxy-table",
                &format!("kaji-proxy-{bridge}"),
                "--proxy-metrics-bind-address",
                "off",
                "--dns-metrics-bind-address",
                "off",
                "--dns-upstreams",
                "127.0.0.1:9",
                "--node-ip",
                &format!("{underlay_prefix}.{i}"),
                "--flannel-backend",
                backend,
                "--flannel-vxlan-port",
                &port_s,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let mut flags: Vec<String> = vec![
            "--disable-agent=false".into(),
            "--bind-address".into(),
            server_ip.clone(),
            "--cluster-cidr".into(),
            cluster_cidr.clone(),
            "--ingress-http-port".into(),
            http,
            "--ingress-https-port".into(),
            https,
            "--registries".into(),
            reg,
            // The root namespace is shared with other tests: a device name of this cluster.
            "--flannel-vxlan-device".into(),
            format!("kv{n:03}-1"),
        ];
        flags.extend(node_flags(1));
        flags.extend(server_extra.iter().map(|s| s.to_string()));
        let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
        let cluster = Cluster::start_with(name, &flag_refs);

        let agent_registries = cluster.data_dir().join("agent-registries.yaml");
        std::fs::write(
            &agent_registries,
            format!("mirrors:\n  docker.io:\n    endpoint:\n      - \"http://{server_ip}:5000\"\n"),
        )
        .expect("writing the agents' registries.yaml");
        let mut mn = MultiNode {
            cluster,
            n,
            underlay: underlay.clone(),
            underlay_prefix: underlay_prefix.clone(),
            cluster_cidr,
            service_cidr: service_cidr.clone(),
            service_prefix,
            cluster_dns,
            vxlan_port,
            agents: Vec::new(),
            backend: backend.to_string(),
            kaji: PathBuf::from(env!("CARGO_BIN_EXE_kaji")),
            agent_registries,
            _forwarder: forwarder,
            _lock: lock,
        };
        for i in 2..=nodes {
            let ns = netns(i);
            let ip = format!("{underlay_prefix}.{i}");
            let veth = format!("kh{n:03}-{i}");
            sh("ip", &["netns", "add", &ns]);
            sh(
                "ip",
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            );
            sh("ip", &["link", "set", &veth, "master", &underlay, "up"]);
            sh("ip", &["-n", &ns, "link", "set", "lo", "up"]);
            sh(
                "ip",
                &["-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            );
            sh("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
            let dir = tempfile::Builder::new()
                .prefix(&format!("kaji-{name}-node{i}-"))
                .tempdir()
                .expect("tempdir");
            let mut agent = AgentNode {
                name: format!("node-{i}"),
                netns: ns,
                ip,
                dir,
                child: None,
                args: node_flags(i),
            };
            mn.spawn_agent(&mut agent);
            mn.agents.push(agent);
        }
        let want = nodes;
        wait_for(
            &format!("{want} Ready nodes"),
            Duration::from_secs(90),
            || {
                let out = mn.cluster.kubectl(&[
                "get",
                "nodes",
                "-o",
                "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status} {.metadata.annotations.flannel\\.alpha\\.coreos\\.com/backend-type}{\"\\n\"}{end}",
            ]);
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let ready = text
                    .lines()
                    .filter(|l| *l == format!("True {backend}"))
                    .count();
                (ready == want).then_some(())
            },
        );
        mn
    }

    fn spawn_agent(&self, agent: &mut AgentNode) {
        let log = std::fs::File::create(agent.dir.path().join("agent.log")).expect("agent log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", agent.netns))
            .arg(&self.kaji)
            .arg("agent")
            .arg("--server")
            .arg(format!(
                "https://{}.1:{}",
                self.underlay_prefix, self.cluster.port
            ))
            .arg("--token-file")
            .arg(self.cluster.data_dir().join("token"))
            .arg("--data-dir")
            .arg(agent.dir.path())
            .arg("--registries")
            .arg(&self.agent_registries)
            .args(&agent.args)
            .env("KAJI_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting kaji agent");
        agent.child = Some(child);
    }

    /// The agent of `node-<i>` (i >= 2).
    pub fn agent(&mut self, i: usize) -> &mut AgentNode {
        &mut self.agents[i - 2]
    }

    /// Kills node `i`'s agent (SIGKILL; its containerd and pods keep running) and starts it again.
    pub fn restart_agent(&mut self, i: usize) {
        let mut agent = self.agents.remove(i - 2);
        agent.kill();
        self.spawn_agent(&mut agent);
        self.agents.insert(i - 2, agent);
    }

    /// Stops everything of node `i` (i >= 2) as a dead machine would: its agent, containerd,
    /// shims and containers (`kaji killall` in its namespace). Its Node stays in the API.
    pub fn kill_node(&mut self, i: usize) {
        let kaji = self.kaji.clone();
        let agent = self.agent(i);
        agent.kill();
        let _ = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", agent.netns))
            .arg(&kaji)
            .args(["killall", "--data-dir"])
            .arg(agent.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// The logs of the server and every agent, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = format!("=== server\n{}", tail(&self.cluster.log(), 40));
        for a in &self.agents {
            out.push_str(&format!("\n=== {}\n{}", a.name, tail(&a.log(), 40)));
        }
        out
    }

    /// Runs `cmd` in node `i`'s network namespace (the root one for node 1).
    pub fn on_node(&self, i: usize, cmd: &[&str]) -> std::process::Output {
        let mut c = if i == 1 {
            let mut c = Command::new(cmd[0]);
            c.args(&cmd[1..]);
            c
        } else {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{}", self.agents[i - 2].netns))
                .args(cmd);
            c
        };
        c.output().expect("running a command on a node")
    }
}

impl Drop for MultiNode {
    fn drop(&mut self) {
        for i in 2..self.agents.len() + 2 {
            self.kill_node(i);
        }
        for a in &self.agents {
            quiet("ip", &["netns", "del", &a.netns]);
        }
        self.cluster.kill();
        let _ = Command::new(&self.kaji)
            .args(["killall", "--data-dir"])
            .arg(self.cluster.data_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        quiet("ip", &["link", "del", &self.underlay]);
    }
}
