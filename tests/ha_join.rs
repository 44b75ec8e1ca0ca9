//! Servers on a managed etcd, as k3s: `--cluster-init`, joining with `--server`/`--token`,
//! the refusals of a join (wrong token, CA hash, critical config), restarts, and etcd snapshots
//! restored with `--cluster-reset --cluster-reset-restore-path`. Every server listens on
//! 127.0.0.1 with its own API and etcd ports and data dir; dropping a server kills it, and its
//! etcd member dies with it (PR_SET_PDEATHSIG).

#[path = "support/ha.rs"]
mod ha;
mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{Cluster, wait_for};

/// A server with a managed etcd member on free ports, started with `flags`.
fn server(name: &str, flags: &[&str]) -> Cluster {
    let (client, peer) = (
        support::free_port().to_string(),
        support::free_port().to_string(),
    );
    let mut all = vec!["--etcd-client-port", &client, "--etcd-peer-port", &peer];
    all.extend_from_slice(flags);
    Cluster::start_with(name, &all)
}

/// The server's URL, as its admin kubeconfig names it.
fn url(c: &Cluster) -> String {
    let kubeconfig = std::fs::read_to_string(&c.kubeconfig).expect("kubeconfig");
    kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("a server in the kubeconfig")
        .to_string()
}

/// Three addresses of a free 127.0.X.0/24 on `lo` (.21 to .23), one per server as on three
/// machines, removed on drop.
struct Addresses(Vec<String>);

impl Addresses {
    fn claim() -> Addresses {
        Addresses(ha::claim_block(21, 3).1)
    }
}

impl Drop for Addresses {
    fn drop(&mut self) {
        for a in &self.0 {
            let _ = Command::new("ip")
                .args(["addr", "del", &format!("{a}/32"), "dev", "lo"])
                .output();
        }
    }
}

fn server_token(c: &Cluster) -> String {
    std::fs::read_to_string(c.data_dir().join("server/token"))
        .expect("server/token")
        .trim()
        .to_string()
}

/// `etcdctl member list` through the member of `c`, with its client certificate.
fn members(c: &Cluster) -> Vec<Value> {
    members_in(c.data_dir())
}

/// `etcdctl member list` through the member of data dir `dir`.
fn members_in(dir: &Path) -> Vec<Value> {
    let tls = dir.join("server/tls/etcd");
    let config = std::fs::read_to_string(dir.join("server/db/etcd/config")).expect("etcd config");
    let endpoint = config
        .lines()
        .find_map(|l| l.strip_prefix("advertise-client-urls: "))
        .map(|s| s.trim_matches('"').to_string())
        .expect("client URL in the etcd config");
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--cacert")
        .arg(tls.join("server-ca.crt"))
        .arg("--cert")
        .arg(tls.join("client.crt"))
        .arg("--key")
        .arg(tls.join("client.key"))
        .args(["member", "list", "-w", "json"])
        .output()
        .expect("etcdctl");
    assert!(
        out.status.success(),
        "etcdctl member list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("etcdctl JSON");
    v["members"].as_array().cloned().unwrap_or_default()
}

/// Members that have started (a name and client URLs: etcdctl prints "started").
fn started(members: &[Value]) -> usize {
    members
        .iter()
        .filter(|m| {
            m["name"].as_str().is_some_and(|n| !n.is_empty())
                && m["clientURLs"].as_array().is_some_and(|u| !u.is_empty())
        })
        .count()
}

/// The etcd processes of a data dir's member (they die with their server).
fn etcd_pids(dir: &Path) -> Vec<i32> {
    let config = dir.join("server/db/etcd/config");
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'));
        let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if !zombie
            && argv.windows(2).any(|w| {
                w[0] == b"--config-file" && Path::new(&*String::from_utf8_lossy(w[1])) == config
            })
        {
            pids.push(pid);
        }
    }
    pids
}

fn etcd_running(dir: &Path) -> bool {
    !etcd_pids(dir).is_empty()
}

fn kill_and_wait(c: &mut Cluster) {
    c.kill();
    wait_for(
        "the etcd member to die with its server",
        Duration::from_secs(20),
        || (!etcd_running(c.data_dir())).then_some(()),
    );
}

/// Runs `kaji server` that must refuse to join: non-zero exit, `message` on stderr, and
/// nothing written to its data dir.
fn refused_join(first: &Cluster, token: &str, extra: &[&str], message: &str) {
    let dir = tempfile::Builder::new()
        .prefix("kaji-ha-refused-")
        .tempdir()
        .expect("tempdir");
    let (port, client, peer) = (
        support::free_port().to_string(),
        support::free_port().to_string(),
        support::free_port().to_string(),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kaji"))
        .args([
            "server",
            "--disable-agent",
            "--bind-address",
            "127.0.0.1",
            "--https-listen-port",
            &port,
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--server",
            &url(first),
            "--token",
            token,
            "--etcd-client-port",
            &client,
        ])
        .args(
            (!extra.contains(&"--etcd-peer-port"))
                .then_some(["--etcd-peer-port", &peer])
                .into_iter()
                .flatten(),
        )
        .args(extra)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("kaji server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the join should have been refused; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(message),
        "expected {message:?} in:\n{stderr}"
    );
    let written: Vec<_> = std::fs::read_dir(dir.path())
        .expect("data dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(written.is_empty(), "a refused join wrote {written:?}");
}

#[test]
fn cluster_init_restart_and_snapshot_restore() {
    let mut s1 = server("ha-init", &["--cluster-init"]);
    let m = members(&s1);
    assert_eq!((m.len(), started(&m)), (1, 1), "{m:?}");
    assert!(server_token(&s1).starts_with("K10") && server_token(&s1).contains("::server:"));
    // The agent token is still the node token.
    let agent_token = std::fs::read_to_string(s1.data_dir().join("token")).expect("token");
    assert!(agent_token.contains("::node:"), "{agent_token}");
    s1.ok(&["create", "configmap", "kept", "--from-literal=a=1"]);

    // A restart without --cluster-init keeps the member and its objects (k3s).
    kill_and_wait(&mut s1);
    s1.spawn();
    assert_eq!(
        s1.ok(&["get", "configmap", "kept", "-o", "jsonpath={.data.a}"]),
        "1"
    );
    assert_eq!(members(&s1).len(), 1);

    // The supervisor restarts a member that dies, and the API works again.
    let pid = etcd_pids(s1.data_dir())[0];
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    let restarted = wait_for("etcd to be restarted", Duration::from_secs(30), || {
        etcd_pids(s1.data_dir()).into_iter().find(|p| *p != pid)
    });
    assert_ne!(restarted, pid);
    wait_for(
        "the API to work on the restarted etcd",
        Duration::from_secs(60),
        || {
            s1.kubectl(&["create", "configmap", "after-etcd-restart"])
                .status
                .success()
                .then_some(())
        },
    );

    // Snapshot, delete, restore: the object is back.
    let out = Command::new(env!("CARGO_BIN_EXE_kaji"))
        .args(["etcd-snapshot", "save", "--data-dir"])
        .arg(s1.data_dir())
        .output()
        .expect("kaji etcd-snapshot");
    assert!(
        out.status.success(),
        "etcd-snapshot save: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snapshots: Vec<_> = std::fs::read_dir(s1.data_dir().join("server/db/snapshots"))
        .expect("snapshots dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let snapshot = &snapshots[0];
    assert!(
        snapshot
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("on-demand-"),
        "{snapshot:?}"
    );
    s1.ok(&["delete", "configmap", "kept"]);
    s1.ok(&["create", "configmap", "after-save"]);

    // Restoring while the server runs is refused.
    let reset = |dir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_kaji"))
            .args(["server", "--cluster-reset", "--cluster-reset-restore-path"])
            .arg(snapshot)
            .arg("--data-dir")
            .arg(dir)
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("kaji server --cluster-reset")
    };
    let out = reset(s1.data_dir());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stop kaji server first"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    kill_and_wait(&mut s1);
    let out = reset(s1.data_dir());
    assert!(
        out.status.success(),
        "cluster reset: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("restart without --cluster-reset flag now")
    );
    s1.spawn();
    assert_eq!(
        s1.ok(&["get", "configmap", "kept", "-o", "jsonpath={.data.a}"]),
        "1"
    );
    assert!(
        s1.fails(&["get", "configmap", "after-save"])
            .contains("NotFound")
    );

    // kaji killall stops the server and its etcd member; the data stays.
    let out = Command::new(env!("CARGO_BIN_EXE_kaji"))
        .args(["killall", "--data-dir"])
        .arg(s1.data_dir())
        .output()
        .expect("kaji killall");
    assert!(
        out.status.success(),
        "killall: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!etcd_running(s1.data_dir()));
    assert!(s1.data_dir().join("server/db/etcd/member").is_dir());
}

#[test]
fn three_servers_share_one_etcd_and_refuse_bad_joins() {
    // Each server and its member on its own address (etcd's default ports would do; free ones
    // keep clear of anything else on the machine). Dropped last, after the servers.
    let ips = Addresses::claim();
    let at = |i: usize| ["--bind-address", ips.0[i].as_str()];
    // The first server's password from --token (k3s); a bare password joins too (no CA check).
    let mut s1 = server(
        "ha-s1",
        &[
            &at(0)[..],
            &["--cluster-init", "--token", "ha-join-password"],
        ]
        .concat(),
    );
    let token = server_token(&s1);
    assert!(
        token.starts_with("K10") && token.ends_with("::server:ha-join-password"),
        "{token}"
    );
    assert!(
        url(&s1).starts_with(&format!("https://{}:", ips.0[0])),
        "{}",
        url(&s1)
    );
    let mut s2 = server(
        "ha-s2",
        &[
            &at(1)[..],
            &["--server", &url(&s1), "--token", "ha-join-password"],
        ]
        .concat(),
    );
    // --token-file works as well (k3s's flag).
    let token_file = s1.data_dir().join("server/token");
    let mut s3 = server(
        "ha-s3",
        &[
            &at(2)[..],
            &[
                "--server",
                &url(&s2),
                "--token-file",
                token_file.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    let m = wait_for("3 started etcd members", Duration::from_secs(30), || {
        let m = members(&s3);
        (started(&m) == 3).then_some(m)
    });
    assert_eq!(m.len(), 3, "{m:?}");

    // One store: written through server 1, read through server 3 and 2.
    s1.ok(&["create", "configmap", "shared", "--from-literal=k=v"]);
    assert_eq!(
        s3.ok(&["get", "configmap", "shared", "-o", "jsonpath={.data.k}"]),
        "v"
    );
    s3.ok(&["label", "configmap", "shared", "by=s3"]);
    assert_eq!(
        s2.ok(&[
            "get",
            "configmap",
            "shared",
            "-o",
            "jsonpath={.metadata.labels.by}"
        ]),
        "s3"
    );

    // One CA: the three servers hand out the same one, and server 1's kubeconfig works on 3.
    let ca = |c: &Cluster| std::fs::read_to_string(c.data_dir().join("server/tls/ca.crt")).unwrap();
    assert_eq!(ca(&s1), ca(&s3));
    assert_eq!(ca(&s1), ca(&s2));
    let out = s1.ok(&[
        "--server",
        &url(&s3),
        "get",
        "configmap",
        "shared",
        "-o",
        "name",
    ]);
    assert_eq!(out.trim(), "configmap/shared");
    // Agents join any server with the one agent token.
    let agent = |c: &Cluster| std::fs::read_to_string(c.data_dir().join("token")).unwrap();
    assert_eq!(agent(&s1), agent(&s3));

    // Refusals: each exits non-zero with a clear message and writes nothing.
    let (hash, _) = token.split_once("::").unwrap();
    refused_join(
        &s1,
        &format!("{hash}::server:not-the-password"),
        &[],
        "the server rejected the token (401 Unauthorized)",
    );
    let other_ca = format!(
        "K10{}::server:{}",
        "0".repeat(64),
        token.rsplit_once(':').unwrap().1
    );
    refused_join(
        &s1,
        &other_ca,
        &[],
        "the server's CA does not match the token's hash",
    );
    refused_join(
        &s1,
        &token,
        &["--cluster-cidr", "10.99.0.0/16"],
        "critical configuration value mismatch between servers: --cluster-cidr is 10.42.0.0/16",
    );
    refused_join(
        &s1,
        &token,
        &["--service-cidr", "10.96.0.0/12"],
        "critical configuration value mismatch between servers: --service-cidr",
    );
    // A taken etcd port is refused before the member is added (it would cost the quorum).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    refused_join(
        &s1,
        &token,
        &["--etcd-peer-port", &taken_port],
        "the etcd member cannot listen on 127.0.0.1:",
    );
    let after = members(&s1);
    assert_eq!(
        (after.len(), started(&after)),
        (3, 3),
        "refused joins changed the membership: {after:?}"
    );

    // kill -9 of server 1 takes its member with it; the other two keep the quorum and serve
    // writes, and server 1 comes back on its member and catches up.
    kill_and_wait(&mut s1);
    wait_for(
        "a write through server 2 with server 1 dead",
        Duration::from_secs(30),
        || {
            s2.kubectl(&["create", "configmap", "while-s1-down"])
                .status
                .success()
                .then_some(())
        },
    );
    assert_eq!(
        s3.ok(&["get", "configmap", "while-s1-down", "-o", "name"])
            .trim(),
        "configmap/while-s1-down"
    );
    let m = members(&s3);
    assert_eq!(
        (m.len(), started(&m)),
        (3, 3),
        "a dead member stays a member: {m:?}"
    );
    s1.spawn();
    assert_eq!(
        s1.ok(&["get", "configmap", "while-s1-down", "-o", "name"])
            .trim(),
        "configmap/while-s1-down"
    );

    // All three down: --cluster-reset makes server 1's member a cluster of one, with the data.
    for s in [&mut s3, &mut s2, &mut s1] {
        kill_and_wait(s);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_kaji"))
        .args(["server", "--cluster-reset", "--data-dir"])
        .arg(s1.data_dir())
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("kaji server --cluster-reset");
    assert!(
        out.status.success(),
        "cluster reset: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("restart without --cluster-reset flag now")
    );
    s1.spawn();
    let m = members(&s1);
    assert_eq!((m.len(), started(&m)), (1, 1), "{m:?}");
    assert_eq!(
        s1.ok(&[
            "get",
            "configmap",
            "shared",
            "-o",
            "jsonpath={.metadata.labels.by}"
        ]),
        "s3"
    );
    s1.ok(&["create", "configmap", "after-reset"]);
}

/// B's HA cluster (`support/ha.rs`) on managed etcd: 3 servers, each with its member on its own
/// address; kill -9 of the server holding the controller-manager and scheduler Leases takes its
/// member with it, and the other two keep the quorum, the API and the leaders going.
#[test]
fn managed_etcd_survives_the_leaders_kill() {
    let mut c = ha::HaCluster::start_managed("ha-managed", 3, &[]);
    let m = members_in(&c.servers[2].dir);
    assert_eq!((m.len(), started(&m)), (3, 3), "{m:?}");
    let holder = wait_for(
        "a controller-manager leader",
        Duration::from_secs(30),
        || c.lease_holder("kube-controller-manager"),
    );
    let leader = c
        .server_of(&holder)
        .expect("the leader's log names its identity");
    c.ok(&["create", "configmap", "before-kill"]);

    c.kill(leader);
    let killed = std::time::Instant::now();
    let other = (leader + 1) % 3;
    wait_for(
        "a write through another server",
        Duration::from_secs(30),
        || {
            c.kubectl(other, &["create", "configmap", "after-kill"])
                .status
                .success()
                .then_some(())
        },
    );
    let write_after = killed.elapsed();
    let new_holder = wait_for(
        "a new controller-manager leader",
        Duration::from_secs(60),
        || {
            c.lease_holder("kube-controller-manager")
                .filter(|h| *h != holder)
        },
    );
    let takeover = killed.elapsed();
    assert_ne!(c.server_of(&new_holder), Some(leader));
    let third = (leader + 2) % 3;
    let out = c.kubectl(
        third,
        &[
            "get",
            "configmap",
            "before-kill",
            "after-kill",
            "-o",
            "name",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = members_in(&c.servers[third].dir);
    assert_eq!(m.len(), 3, "the dead member stays listed: {m:?}");
    eprintln!(
        "managed etcd, kill -9 of the leader: a write through another server after {write_after:?}, new controller-manager leader after {takeover:?}"
    );
}
