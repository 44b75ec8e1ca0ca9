//! API server benchmark: starts a real `kaji server` (release build when run by `cargo bench`)
//! on a temporary data dir and measures, through the kube-rs client over HTTPS:
//! creates, gets, lists and watch delivery (throughput, p50/p99), plus the server's idle RSS and
//! the server's CPU time per 1,000 requests of each verb (utime + stime from /proc, so the figure
//! does not depend on the client's own cost). Then pods: creates, a list of all of them
//! (`KAJI_BENCH_PODS`, default 10,000; target p99 under 100 ms), deletes, and the server's RSS
//! before the burst, after it and some seconds after the deletes (memory given back).
//! `KAJI_BENCH_COMPARE=<kubeconfig>` instead compares LISTs with another API server (below);
//! `KAJI_BENCH_BIN` runs another build of `kaji` (a saved binary, for before/after runs).
//! Numbers are printed, not asserted: performance targets live here, not in tests.

#[allow(dead_code)] // each bench uses part of it
mod common;

use common::{pct, run};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// CPU seconds (user + system) the process has used so far.
fn cpu_secs(pid: u32) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // After the comm field: state, ppid, ... utime and stime are the 12th and 13th.
            let rest: Vec<u64> = s.rsplit_once(')')?.1.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
            (rest.len() == 2).then(|| (rest[0] + rest[1]) as f64 / ticks)
        })
        .unwrap_or(0.0)
}


/// Prints a run's figures; `server_cpu` is the server's CPU seconds during the run (None: the
/// line shares another line's run).
fn report(name: &str, total: Duration, mut lat: Vec<Duration>, server_cpu: Option<f64>) {
    lat.sort();
    let n = lat.len();
    let cpu = match server_cpu {
        Some(c) if n > 0 => format!("  server CPU {:>6.3} s / 1000 req", c * 1000.0 / n as f64),
        _ => String::new(),
    };
    println!(
        "{name:<40} {n:>6} ops  {:>9.0} ops/s  p50 {:>8.2} ms  p99 {:>8.2} ms{cpu}",
        n as f64 / total.as_secs_f64(),
        pct(&lat, 0.50).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3
    );
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"bench": "true"}},
        "data": {"payload": "x".repeat(512)},
    }))
    .expect("configmap")
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "true", "app": "web"}},
        "spec": {"containers": [{
            "name": "web", "image": "nginx:1.27",
            "ports": [{"containerPort": 80}],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
        }]},
    }))
    .expect("pod")
}


#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `KAJI_BENCH_AUTHZ_ONLY=1`: only the authorizer's cost (below).
    if std::env::var("KAJI_BENCH_AUTHZ_ONLY").is_ok() {
        authorize_micro();
        return authz_compare().await;
    }
    let n: usize = std::env::var("KAJI_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(2000);
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let bin = common::kaji_bin();
    let mut child = Command::new(bin)
        .args(["server", "--disable-agent", "--bind-address", "127.0.0.1", "--https-listen-port", &port.to_string()])
        .arg("--data-dir")
        .arg(dir.path())
        .env("KAJI_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let started = Instant::now();
    let client = common::ready_client(&kubeconfig).await?;
    println!("server ready after {:.0} ms (spawn to first answered request)", started.elapsed().as_secs_f64() * 1e3);
    if let Ok(other) = std::env::var("KAJI_BENCH_COMPARE") {
        let result = compare_lists(client, pid, &other).await;
        let _ = child.kill();
        let _ = child.wait();
        return result;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("idle RSS: {:.1} MiB", rss_kib(pid) as f64 / 1024.0);

    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    // Watch delivery: a watcher receives every create; latency from just before the create call.
    let watch_api = api.clone();
    let sent: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    let sent_w = sent.clone();
    let watch_n = n / 2;
    let watcher = tokio::spawn(async move {
        let mut lat = Vec::new();
        let stream = watch_api.watch(&WatchParams::default().labels("bench=watch"), "0").await.expect("watch");
        let mut stream = stream.boxed();
        while lat.len() < watch_n {
            match stream.try_next().await {
                Ok(Some(WatchEvent::Added(o))) => {
                    let name = o.metadata.name.unwrap_or_default();
                    if let Some(t) = sent_w.lock().expect("lock").get(&name) {
                        lat.push(t.elapsed());
                    }
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        lat
    });

    for conc in [1usize, 32] {
        let a = api.clone();
        let cpu0 = cpu_secs(pid);
        let (t, lat) = run(n, conc, move |i| {
            let a = a.clone();
            async move {
                a.create(&PostParams::default(), &cm(&format!("c{conc}-{i}"))).await.expect("create");
            }
        })
        .await;
        report(&format!("create configmap (concurrency {conc})"), t, lat, Some(cpu_secs(pid) - cpu0));
    }
    for conc in [1usize, 32] {
        let a = api.clone();
        let cpu0 = cpu_secs(pid);
        let (t, lat) = run(n, conc, move |i| {
            let a = a.clone();
            async move {
                a.get(&format!("c32-{i}")).await.expect("get");
            }
        })
        .await;
        report(&format!("get configmap (concurrency {conc})"), t, lat, Some(cpu_secs(pid) - cpu0));
    }
    let total = 2 * n;
    // The same list as bytes only: the server's and the transport's share, without the
    // client's decoding into typed objects (kube-rs's serde into k8s-openapi structs).
    let c = client.clone();
    let cpu0 = cpu_secs(pid);
    let (t, lat) = run(100, 1, move |_| {
        let c = c.clone();
        async move {
            let req = kube::core::Request::new("/api/v1/namespaces/default/configmaps").list(&ListParams::default()).expect("request");
            let body = c.request_text(req).await.expect("list");
            assert!(body.len() > total * 512);
        }
    })
    .await;
    report(&format!("list {total} configmaps (bytes only)"), t, lat, Some(cpu_secs(pid) - cpu0));
    let a = api.clone();
    let cpu0 = cpu_secs(pid);
    let (t, lat) = run(100, 1, move |_| {
        let a = a.clone();
        async move {
            let l = a.list(&ListParams::default()).await.expect("list");
            assert!(l.items.len() >= total);
        }
    })
    .await;
    report(&format!("list {total} configmaps"), t, lat, Some(cpu_secs(pid) - cpu0));
    let a = api.clone();
    let cpu0 = cpu_secs(pid);
    let (t, lat) = run(100, 1, move |_| {
        let a = a.clone();
        async move {
            a.list(&ListParams::default().limit(500)).await.expect("list page");
        }
    })
    .await;
    report("list page of 500", t, lat, Some(cpu_secs(pid) - cpu0));

    let a = api.clone();
    let s = sent.clone();
    let cpu0 = cpu_secs(pid);
    let (t, lat) = run(watch_n, 8, move |i| {
        let a = a.clone();
        let s = s.clone();
        async move {
            let name = format!("w-{i}");
            s.lock().expect("lock").insert(name.clone(), Instant::now());
            let mut c = cm(&name);
            c.metadata.labels = Some([("bench".to_string(), "watch".to_string())].into());
            a.create(&PostParams::default(), &c).await.expect("create");
        }
    })
    .await;
    report("create (concurrency 8) while watched", t, lat, Some(cpu_secs(pid) - cpu0));
    let wl = tokio::time::timeout(Duration::from_secs(60), watcher).await??;
    report("watch delivery (create start -> event)", t, wl, None);
    println!("RSS after the run: {:.1} MiB", rss_kib(pid) as f64 / 1024.0);

    // Pods: creates (all defaulting, admission and validation of the biggest built-in kind), a
    // list of all of them, then deletes and the memory the server gives back afterwards.
    let pods_n: usize = std::env::var("KAJI_BENCH_PODS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rss_before = rss_kib(pid);
    let first = (n / 4).min(pods_n);
    for (conc, range) in [(1usize, 0..first), (32, first..pods_n)] {
        let a = pods.clone();
        let cpu0 = cpu_secs(pid);
        let base = range.start;
        let (t, lat) = run(range.len(), conc, move |i| {
            let a = a.clone();
            async move {
                a.create(&PostParams::default(), &pod(&format!("p-{}", base + i))).await.expect("create pod");
            }
        })
        .await;
        report(&format!("create pod (concurrency {conc})"), t, lat, Some(cpu_secs(pid) - cpu0));
    }
    // The scheduler answers every new pod (with no node: PodScheduled=False and an event), so
    // right after the creates the server is busy with that; the lists are measured once it is
    // quiet again (under 50 ms of CPU in a second; at most two minutes).
    let waited = Instant::now();
    loop {
        let c0 = cpu_secs(pid);
        tokio::time::sleep(Duration::from_secs(1)).await;
        if cpu_secs(pid) - c0 < 0.05 || waited.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    println!("server quiet {:.1} s after the creates", waited.elapsed().as_secs_f64());
    let list_pods = move |c: kube::Client| async move {
        let req = kube::core::Request::new("/api/v1/namespaces/default/pods").list(&ListParams::default()).expect("request");
        let body = c.request_text(req).await.expect("list pods");
        assert!(body.len() > pods_n * 500);
    };
    // The first list reads the objects into the store's cache; it is reported on its own.
    let first = Instant::now();
    list_pods(client.clone()).await;
    println!("first list of {pods_n} pods (bytes only, cold): {:.2} ms", first.elapsed().as_secs_f64() * 1e3);
    let c = client.clone();
    let cpu0 = cpu_secs(pid);
    let (t, lat) = run(100, 1, move |_| list_pods(c.clone())).await;
    report(&format!("list {pods_n} pods (bytes only)"), t, lat, Some(cpu_secs(pid) - cpu0));
    let a = pods.clone();
    let cpu0 = cpu_secs(pid);
    let (t, lat) = run(20, 1, move |_| {
        let a = a.clone();
        async move {
            let l = a.list(&ListParams::default()).await.expect("list pods");
            assert!(l.items.len() >= pods_n);
        }
    })
    .await;
    report(&format!("list {pods_n} pods"), t, lat, Some(cpu_secs(pid) - cpu0));
    let a = pods.clone();
    let cpu0 = cpu_secs(pid);
    let (t, lat) = run(20, 1, move |_| {
        let a = a.clone();
        async move {
            a.list(&ListParams::default().fields("spec.nodeName=none").labels("app=web")).await.expect("list pods");
        }
    })
    .await;
    report(&format!("list {pods_n} pods, selectors match none"), t, lat, Some(cpu_secs(pid) - cpu0));
    let rss_burst = rss_kib(pid);
    let a = pods.clone();
    let cpu0 = cpu_secs(pid);
    let (t, lat) = run(pods_n, 32, move |i| {
        let a = a.clone();
        async move {
            a.delete(&format!("p-{i}"), &DeleteParams::default()).await.expect("delete pod");
        }
    })
    .await;
    report("delete pod (concurrency 32)", t, lat, Some(cpu_secs(pid) - cpu0));
    let rss_deleted = rss_kib(pid);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "RSS around the pod burst: {:.1} MiB before, {:.1} MiB after {pods_n} creates and lists, {:.1} MiB right after the deletes, {:.1} MiB 10 s later",
        mib(rss_before),
        mib(rss_burst),
        mib(rss_deleted),
        mib(rss_kib(pid))
    );
    let _ = child.kill();
    let _ = child.wait();
    authorize_micro();
    authz_compare().await
}

/// `KAJI_BENCH_COMPARE=<kubeconfig>` (with `KAJI_BENCH_COMPARE_PIDS`, the other server's
/// processes, e.g. kube-apiserver and etcd, for its CPU time): the same LISTs of 1,000
/// ConfigMaps on Kaji and on another API server (`scripts/upstream-apiserver/` builds and starts
/// upstream's kube-apiserver 1.20.2 with etcd), one request to each in turn, so that both see the
/// machine at the same moment (its speed varies from one minute to the next). Bodies are read as
/// bytes: the client's decoding is the same for both and not part of either server's time.
async fn compare_lists(kaji: kube::Client, kaji_pid: u32, other_kubeconfig: &str) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    const OBJECTS: usize = 1000;
    const ROUNDS: usize = 200;
    let other = common::ready_client(std::path::Path::new(other_kubeconfig)).await?;
    let other_pids: Vec<u32> = std::env::var("KAJI_BENCH_COMPARE_PIDS")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    let other_cpu = || other_pids.iter().map(|p| cpu_secs(*p)).sum::<f64>();
    let version = other.apiserver_version().await?;
    println!("comparing LISTs of {OBJECTS} ConfigMaps (512-byte payload) with {} at {other_kubeconfig}", version.git_version);
    let ns = "bench-compare";
    for c in [&kaji, &other] {
        let namespaces: Api<Namespace> = Api::all(c.clone());
        let object = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))?;
        match namespaces.create(&PostParams::default(), &object).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        let api: Api<ConfigMap> = Api::namespaced(c.clone(), ns);
        let have = api.list_metadata(&ListParams::default()).await?.items.len();
        let a = api.clone();
        run(OBJECTS.saturating_sub(have), 16, move |i| {
            let a = a.clone();
            async move {
                a.create(&PostParams::default(), &cm(&format!("c-{}", have + i))).await.expect("create");
            }
        })
        .await;
    }
    let path = format!("/api/v1/namespaces/{ns}/configmaps");
    for (what, params) in [
        ("(a quorum read, as client libraries list)", ListParams::default()),
        ("resourceVersion=0 (watch cache)", ListParams::default().match_any()),
    ] {
        let list = |c: kube::Client, params: ListParams, path: String| async move {
            let req = kube::core::Request::new(path).list(&params).expect("request");
            let t = Instant::now();
            let body = c.request_text(req).await.expect("list");
            assert!(body.len() > OBJECTS * 512, "a list of {OBJECTS} ConfigMaps");
            t.elapsed()
        };
        // Warm both (connections, caches).
        for _ in 0..10 {
            list(kaji.clone(), params.clone(), path.clone()).await;
            list(other.clone(), params.clone(), path.clone()).await;
        }
        let (mut mine, mut theirs) = (Vec::new(), Vec::new());
        let (mut mine_cpu, mut their_cpu) = (0.0, 0.0);
        for _ in 0..ROUNDS {
            let c0 = cpu_secs(kaji_pid);
            mine.push(list(kaji.clone(), params.clone(), path.clone()).await);
            mine_cpu += cpu_secs(kaji_pid) - c0;
            let c0 = other_cpu();
            theirs.push(list(other.clone(), params.clone(), path.clone()).await);
            their_cpu += other_cpu() - c0;
        }
        mine.sort();
        theirs.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let cpu = |c: f64, pids: bool| if pids { format!(", server CPU {:.2} ms a list", c * 1e3 / ROUNDS as f64) } else { String::new() };
        println!("LIST {what}, {ROUNDS} each, interleaved:");
        println!("  kaji:  p50 {:7.2} ms  p99 {:7.2} ms{}", ms(pct(&mine, 0.5)), ms(pct(&mine, 0.99)), cpu(mine_cpu, true));
        println!("  other: p50 {:7.2} ms  p99 {:7.2} ms{}", ms(pct(&theirs, 0.5)), ms(pct(&theirs, 0.99)), cpu(their_cpu, !other_pids.is_empty()));
        println!(
            "  kaji / other: p50 {:.2}, p99 {:.2}{}",
            ms(pct(&mine, 0.5)) / ms(pct(&theirs, 0.5)),
            ms(pct(&mine, 0.99)) / ms(pct(&theirs, 0.99)),
            // The servers' own CPU leaves out the client's reading, which is in both latencies.
            if other_pids.is_empty() { String::new() } else { format!(", server CPU {:.2}", mine_cpu / their_cpu) }
        );
    }
    // The ConfigMaps go; the namespace stays, empty, for the next run: a kube-apiserver without
    // a controller manager (as start.sh runs it) never finishes deleting a namespace, and a
    // namespace left Terminating refuses the next run's creates.
    let configmaps: Api<ConfigMap> = Api::namespaced(other, ns);
    configmaps.delete_collection(&DeleteParams::default(), &ListParams::default()).await?;
    Ok(())
}

/// The RBAC authorizer's cost per call, in process: a user bound (by one of 1,000 RoleBindings
/// of other users, plus its groups' ClusterRoleBindings) to a role of 20 rules; allowed by the
/// last rule, and not allowed at all (every rule visited).
fn authorize_micro() {
    use kaji_apiserver::auth::User;
    use kaji_apiserver::auth::authz::Attributes;
    use kaji_apiserver::auth::rbac::{Binding, Index, PolicyRule, RoleRef, Subject};
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut ix = Index::default();
    let mut rules: Vec<PolicyRule> = (0..19)
        .map(|i| PolicyRule { verbs: s(&["get", "list", "watch"]), api_groups: s(&["apps"]), resources: vec![format!("things{i}")], ..Default::default() })
        .collect();
    rules.push(PolicyRule { verbs: s(&["get", "list", "watch"]), api_groups: s(&[""]), resources: s(&["pods", "configmaps"]), ..Default::default() });
    ix.put_cluster_role("view", rules);
    let bind = |ix: &mut Index, ns: &str, name: &str, kind: &str, subject: &str, role: &str| {
        ix.put_binding(Binding {
            name: name.into(),
            namespace: ns.into(),
            role_ref: RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: "ClusterRole".into(), name: role.into() },
            subjects: vec![Subject { kind: kind.into(), name: subject.into(), api_group: "rbac.authorization.k8s.io".into(), namespace: String::new() }],
        })
    };
    for i in 0..1000 {
        bind(&mut ix, &format!("ns{}", i % 50), &format!("rb{i}"), "User", &format!("user{i}"), "view");
    }
    bind(&mut ix, "ns7", "bench", "User", "user-bench", "view");
    for g in ["system:authenticated", "team-a"] {
        bind(&mut ix, "", &format!("crb-{g}"), "Group", g, "missing-role");
    }
    let user = User::new("user-bench", &["team-a", "system:authenticated"]);
    for (what, resource) in [("allowed", "configmaps"), ("no rule matches", "secrets")] {
        let a = Attributes {
            user: user.clone(),
            verb: "list".into(),
            resource_request: true,
            namespace: "ns7".into(),
            resource: resource.into(),
            ..Attributes::default()
        };
        let n = 200_000;
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(ix.authorize(std::hint::black_box(&a)));
        }
        println!(
            "RBAC authorize() with 1,000 RoleBindings, {what}: {:.2} us per call",
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }
}

/// The same GET/LIST workload as a non-admin user (a client certificate from the cluster CA,
/// bound to `view` in its namespace, among 1,000 other RoleBindings), against a server with
/// `--authorization-mode=AlwaysAllow` and one with `--authorization-mode=Node,RBAC`.
async fn authz_compare() -> anyhow::Result<()> {
    let n: usize = std::env::var("KAJI_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(2000);
    for mode in ["AlwaysAllow", "Node,RBAC"] {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_kaji"))
            .args(["server", "--disable-agent", "--bind-address", "127.0.0.1", "--https-listen-port", &port.to_string()])
            .arg(format!("--authorization-mode={mode}"))
            .arg("--data-dir")
            .arg(dir.path())
            .env("KAJI_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()?;
        let pid = child.id();
        let admin = common::ready_client(&dir.path().join("kubeconfig.yaml")).await?;
        let viewer_kc = dir.path().join("viewer.yaml");
        let out = Command::new(env!("CARGO_BIN_EXE_kaji"))
            .args(["kubeconfig", "--user", "bench-viewer", "--namespace", "default", "-d"])
            .arg(dir.path())
            .arg("-o")
            .arg(&viewer_kc)
            .output()?;
        anyhow::ensure!(out.status.success(), "kaji kubeconfig: {}", String::from_utf8_lossy(&out.stderr));
        let rbs: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(admin.clone(), "default");
        let rb = |name: String, user: String| -> k8s_openapi::api::rbac::v1::RoleBinding {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
            }))
            .expect("rolebinding")
        };
        let a = rbs.clone();
        run(1000, 16, move |i| {
            let a = a.clone();
            let b = rb(format!("other-{i}"), format!("user-{i}"));
            async move {
                a.create(&PostParams::default(), &b).await.expect("rolebinding");
            }
        })
        .await;
        rbs.create(&PostParams::default(), &rb("bench-viewer".into(), "bench-viewer".into())).await?;
        let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "default");
        let a = cms.clone();
        run(1000, 16, move |i| {
            let a = a.clone();
            async move {
                a.create(&PostParams::default(), &cm(&format!("a-{i}"))).await.expect("create");
            }
        })
        .await;
        let viewer: Api<ConfigMap> = Api::namespaced(common::ready_client(&viewer_kc).await?, "default");
        for conc in [1usize, 32] {
            let a = viewer.clone();
            let cpu0 = cpu_secs(pid);
            let (t, lat) = run(n, conc, move |i| {
                let a = a.clone();
                async move {
                    a.get(&format!("a-{}", i % 1000)).await.expect("get");
                }
            })
            .await;
            report(&format!("[{mode}] viewer get (conc {conc})"), t, lat, Some(cpu_secs(pid) - cpu0));
        }
        let a = viewer.clone();
        let cpu0 = cpu_secs(pid);
        let (t, lat) = run(n / 4, 8, move |_| {
            let a = a.clone();
            async move {
                a.list(&ListParams::default().limit(50)).await.expect("list");
            }
        })
        .await;
        report(&format!("[{mode}] viewer list page of 50 (conc 8)"), t, lat, Some(cpu_secs(pid) - cpu0));
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(())
}

