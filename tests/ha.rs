//! A highly available control plane: 3 `kaji server`s, the first with `--cluster-init` and the
//! others joined with `--server`/`--token`, each with its managed etcd member and on its own
//! loopback address (`tests/support/ha.rs`); the agent test uses k3s's external-datastore
//! topology (3 servers on one etcd the test starts).
//!
//! kill -9 of the server holding the controller-manager and scheduler Leases while 8 clients
//! create 1,000 ConfigMaps spread over the servers (a client whose server fails goes on with the
//! next; only a create whose 201 it saw counts as acknowledged): the API keeps answering through
//! the others, every acknowledged ConfigMap is there afterwards, the dead server leaves the
//! `kubernetes` endpoints, another server takes both Leases, and a Deployment created after
//! the kill becomes Available on a hollow node whose agent was given the killed server's URL
//! (it fails over through its load balancer and stays Ready).
#[path = "support/ha.rs"]
mod ha;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};
use support::{tail, wait_for};

const WRITES: usize = 1000;
const CLIENTS: usize = 8;

/// What the writers saw.
#[derive(Default)]
struct Outcome {
    acknowledged: Vec<String>,
    /// Creates that failed on one server and were retried on another.
    failovers: usize,
    /// Retries answered 409: the first attempt had been written without its 201 reaching us.
    unacknowledged_but_written: usize,
}

async fn writer(clients: Vec<kube::Client>, t: usize, done: Arc<AtomicUsize>) -> Outcome {
    let mut out = Outcome::default();
    let mut server = t % clients.len();
    for i in 0..WRITES / CLIENTS {
        let name = format!("cm-{t}-{i}");
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            data: Some([("i".to_string(), i.to_string())].into()),
            ..ConfigMap::default()
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut retried = false;
        loop {
            let api: Api<ConfigMap> = Api::namespaced(clients[server].clone(), "default");
            match api.create(&PostParams::default(), &cm).await {
                Ok(_) => {
                    out.acknowledged.push(name.clone());
                    break;
                }
                Err(kube::Error::Api(e)) if e.code == 409 && retried => {
                    out.unacknowledged_but_written += 1;
                    break;
                }
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "{name}: no server took it for 120 s: {e}"
                    );
                    retried = true;
                    out.failovers += 1;
                    server = (server + 1) % clients.len();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        done.fetch_add(1, Ordering::SeqCst);
    }
    out
}

/// The addresses in the `kubernetes` endpoints, sorted.
fn endpoint_ips(c: &ha::HaCluster) -> Vec<String> {
    let eps = c.ok(&[
        "get",
        "endpoints",
        "kubernetes",
        "-o",
        "jsonpath={.subsets[*].addresses[*].ip}",
    ]);
    let mut got: Vec<String> = eps.split_whitespace().map(str::to_string).collect();
    got.sort();
    got
}

#[test]
fn kill_the_leader_during_writes() {
    // A 10 s lease (upstream's flags; 15 s by default) so that a standby takes over within 15 s
    // of the kill: at most the lease after the last renewal it saw, plus one retry period.
    let mut c = ha::HaCluster::start_managed(
        "ha-kill",
        3,
        &[
            "--node-monitor-grace-period",
            "12s",
            "--leader-elect-lease-duration",
            "10s",
            "--leader-elect-renew-deadline",
            "8s",
            "--leader-elect-retry-period",
            "2s",
        ],
    );
    // Server 0 started first and holds both Leases.
    let cm_holder = wait_for(
        "a controller-manager leader",
        Duration::from_secs(30),
        || c.lease_holder("kube-controller-manager"),
    );
    let sched_holder = wait_for("a scheduler leader", Duration::from_secs(30), || {
        c.lease_holder("kube-scheduler")
    });
    let leader = c
        .server_of(&cm_holder)
        .expect("the leader's log names its identity");
    assert_eq!(
        c.server_of(&sched_holder),
        Some(leader),
        "one server holds both Leases"
    );

    // Every server is in the kubernetes endpoints.
    let all: Vec<String> = c.servers.iter().map(|s| s.ip.clone()).collect();
    wait_for(
        "every server in the kubernetes endpoints",
        Duration::from_secs(30),
        || (endpoint_ips(&c) == all).then_some(()),
    );
    let identities = c.ok(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        "-l",
        "apiserver.kubernetes.io/identity=kube-apiserver",
        "-o",
        "name",
    ]);
    assert_eq!(
        identities.lines().count(),
        3,
        "one apiserver identity Lease per server: {identities}"
    );

    // A hollow node whose agent was given the leader's URL.
    let agent = c.start_hollow_agent(
        leader,
        1,
        "ha-node",
        &["--node-lease-duration-seconds", "4"],
    );
    wait_for("the hollow node Ready", Duration::from_secs(60), || {
        let ready = c.ok(&[
            "get",
            "node",
            "ha-node-0",
            "--ignore-not-found",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        (ready == "True").then_some(())
    });
    wait_for(
        "the agent to learn every server",
        Duration::from_secs(30),
        || {
            c.agent_log(agent)
                .contains("server list updated")
                .then_some(())
        },
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let writers: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let clients: Vec<kube::Client> =
                rt.block_on(async { futures::future::join_all((0..3).map(|i| c.client(i))).await });
            rt.spawn(writer(clients, t, done.clone()))
        })
        .collect();
    wait_for(
        "300 writes before the kill",
        Duration::from_secs(120),
        || (done.load(Ordering::SeqCst) >= 300).then_some(()),
    );
    c.kill(leader);
    let killed = Instant::now();
    eprintln!(
        "killed server {leader} after {} writes ({:?} in)",
        done.load(Ordering::SeqCst),
        started.elapsed()
    );

    // New leaders: both Leases held by live servers' identities.
    let new_cm = wait_for(
        "a new controller-manager leader",
        Duration::from_secs(40),
        || {
            c.lease_holder("kube-controller-manager")
                .filter(|h| *h != cm_holder)
        },
    );
    let cm_takeover = killed.elapsed();
    let new_sched = wait_for("a new scheduler leader", Duration::from_secs(40), || {
        c.lease_holder("kube-scheduler")
            .filter(|h| *h != sched_holder)
    });
    let sched_takeover = killed.elapsed();
    eprintln!(
        "takeover after the kill: controller manager {cm_takeover:?}, scheduler {sched_takeover:?}"
    );
    assert!(
        c.server_of(&new_cm).is_some_and(|s| s != leader),
        "{new_cm} is a live server's"
    );
    assert!(
        c.server_of(&new_sched).is_some_and(|s| s != leader),
        "{new_sched} is a live server's"
    );
    // The 10 s lease, judged from the last renewal a standby saw (every 2 s).
    assert!(
        cm_takeover < Duration::from_secs(15),
        "controller-manager takeover took {cm_takeover:?}"
    );
    assert!(
        sched_takeover < Duration::from_secs(15),
        "scheduler takeover took {sched_takeover:?}"
    );

    let outcomes: Vec<Outcome> = writers
        .into_iter()
        .map(|w| rt.block_on(w).expect("a writer"))
        .collect();
    let write_time = started.elapsed();
    let acknowledged: Vec<&String> = outcomes.iter().flat_map(|o| &o.acknowledged).collect();
    let failovers: usize = outcomes.iter().map(|o| o.failovers).sum();
    let unacked: usize = outcomes.iter().map(|o| o.unacknowledged_but_written).sum();
    eprintln!(
        "{} writes acknowledged, {unacked} written without an acknowledgement, {failovers} retries on another server, in {write_time:?}",
        acknowledged.len()
    );
    assert_eq!(acknowledged.len() + unacked, WRITES);

    // Every acknowledged write is there, read through each live server.
    for i in (0..3).filter(|i| *i != leader) {
        let names = String::from_utf8_lossy(
            &c.kubectl(
                i,
                &[
                    "get",
                    "configmaps",
                    "-o",
                    "jsonpath={.items[*].metadata.name}",
                ],
            )
            .stdout,
        )
        .into_owned();
        let present: std::collections::HashSet<&str> = names.split_whitespace().collect();
        let missing: Vec<&&String> = acknowledged
            .iter()
            .filter(|n| !present.contains(n.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "server {i}: acknowledged but missing: {missing:?}"
        );
    }

    // The dead server leaves the kubernetes endpoints once its master lease expired.
    let live: Vec<String> = c
        .servers
        .iter()
        .filter(|s| s.alive())
        .map(|s| s.ip.clone())
        .collect();
    wait_for(
        "the dead server out of the kubernetes endpoints",
        Duration::from_secs(40),
        || (endpoint_ips(&c) == live).then_some(()),
    );

    // The agent given the dead server failed over: its node stays Ready and its Lease renews.
    let renewed = |c: &ha::HaCluster| {
        c.ok(&[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            "ha-node-0",
            "-o",
            "jsonpath={.spec.renewTime}",
        ])
    };
    let before = renewed(&c);
    wait_for(
        "the node Lease renewed through another server",
        Duration::from_secs(20),
        || (renewed(&c) != before).then_some(()),
    );
    assert!(
        c.agent_log(agent).contains("switching server"),
        "the agent's load balancer switched servers:\n{}",
        tail(&c.agent_log(agent), 30)
    );

    // A Deployment created after the kill becomes Available (scheduled by the new scheduler
    // leader, its ReplicaSet made by the new controller-manager leader).
    c.ok(&[
        "create",
        "deployment",
        "after-kill",
        "--image=nginx",
        "--replicas=2",
    ]);
    wait_for("the Deployment Available", Duration::from_secs(90), || {
        let available = c.ok(&["get", "deployment", "after-kill", "-o",
            "jsonpath={.status.conditions[?(@.type==\"Available\")].status} {.status.availableReplicas}"]);
        (available.trim() == "True 2").then_some(())
    });
    // The node stays Ready all along, until more than its grace period (12 s) has passed since
    // the kill (the Deployment may be Available sooner than that).
    loop {
        let ready = c.ok(&[
            "get",
            "node",
            "ha-node-0",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        assert_eq!(
            ready,
            "True",
            "the node stayed Ready ({:?} after the kill)",
            killed.elapsed()
        );
        if killed.elapsed() > Duration::from_secs(13) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let events = c.ok(&[
        "get",
        "events",
        "-n",
        "kube-system",
        "--field-selector",
        "reason=LeaderElection",
        "-o",
        "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
    ]);
    assert!(
        events.contains(&format!("{new_cm} became leader")),
        "{events}"
    );
}

/// An agent given one server's URL keeps its nodes Ready when that server dies: its load
/// balancer moves to another server of the `kubernetes` endpoints, through which the nodes'
/// Leases keep being renewed, and the new controller-manager leader's node lifecycle controller
/// finds them fresh.
#[test]
fn an_agent_fails_over_when_its_server_dies() {
    let mut c = ha::HaCluster::start("ha-agent", 1, 2, &["--node-monitor-grace-period", "10s"]);
    let agent = c.start_hollow_agent(0, 2, "fo-node", &["--node-lease-duration-seconds", "4"]);
    let ready = |c: &ha::HaCluster| {
        c.ok(&[
            "get", "nodes", "-l", "kaji.io/hollow=true", "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}",
        ])
    };
    wait_for("both nodes Ready", Duration::from_secs(60), || {
        (ready(&c).trim() == "fo-node-0=True fo-node-1=True").then_some(())
    });
    wait_for(
        "the agent to learn both servers",
        Duration::from_secs(30),
        || {
            let log = c.agent_log(agent);
            (log.contains("server list updated") && log.contains(&c.servers[1].ip)).then_some(())
        },
    );
    let old_leader = c.lease_holder("kube-controller-manager").expect("a leader");

    c.kill(0);
    let renewed = |c: &ha::HaCluster, node: &str| {
        c.ok(&[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            node,
            "-o",
            "jsonpath={.spec.renewTime}",
        ])
    };
    for node in ["fo-node-0", "fo-node-1"] {
        let before = renewed(&c, node);
        wait_for(
            &format!("{node}'s Lease renewed through server 1"),
            Duration::from_secs(20),
            || (renewed(&c, node) != before).then_some(()),
        );
    }
    assert!(
        c.agent_log(agent).contains("switching server"),
        "{}",
        tail(&c.agent_log(agent), 30)
    );
    // Server 1's controller manager leads now; for longer than the grace period after that,
    // the nodes stay Ready.
    wait_for(
        "server 1 leading the controller manager",
        Duration::from_secs(40),
        || {
            c.lease_holder("kube-controller-manager")
                .filter(|h| *h != old_leader)
        },
    );
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(15) {
        assert_eq!(
            ready(&c).trim(),
            "fo-node-0=True fo-node-1=True",
            "the nodes stay Ready"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}
