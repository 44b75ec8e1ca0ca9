//! Pod startup benchmark (issue 5): `kaji server` with its real node agent (in-process kubelet,
//! managed containerd, CNI bridge) runs `nginx:1.16` pods (the busybox httpd test image from
//! scripts/test-images.sh, through the docker.io mirror), image already present, and reports:
//! - startup latency, create -> Ready, p50/p90/p99 over KAJI_BENCH_PODS (100) pods created
//!   (a) one at a time and (b) all at once, measured two ways: the Ready condition's
//!   lastTransitionTime minus creationTimestamp (the API's own clock, 1 s resolution as upstream's
//!   metav1.Time) and a watch in the bench with its own clock (from the create request);
//!   the anchor is the Kubernetes SLO, p99 <= 5 s;
//! - where the time goes as the watch sees it: create -> scheduled -> Running -> Ready;
//! - memory: the kaji server process (which hosts the agent), containerd, the shims and the pods'
//!   processes (pause + httpd), idle and with the pods running; and CPU used per phase.
//!
//! Needs root and the test images; runs on the default node subnet 10.42.0.0/24 (the tests claim
//! networks of their own, tests/support/node.rs), so not twice at the same time. Leaves the machine clean: pods deleted, server stopped,
//! containerd, its shims, mounts, netns and the CNI bridge removed (kaji_kubelet::containerd::cleanup).

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
#[allow(dead_code)] // each bench uses part of it
mod common;
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const IMAGE: &str = "nginx:1.16";
const BRIDGE: &str = "kbenchpods";
const NODE: &str = "kaji-bench-node";
const REGISTRIES: &str = "/etc/kaji/test-registries.yaml";
/// Kubernetes' pod startup SLO (stateless pods, image present): p99 <= 5 s.
const SLO: Duration = Duration::from_secs(5);

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// A child process that is killed (SIGKILL, as a crash) and reaped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---- /proc accounting ------------------------------------------------------------------------

struct ProcInfo {
    pid: u32,
    ppid: u32,
    comm: String,
    cmdline: String,
    /// utime + stime + cutime + cstime, in seconds: waited-for children count (runc under a shim).
    cpu: f64,
}

fn read_proc(pid: u32) -> Option<ProcInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After the ')': state is field 3 of stat, so field k is at index k - 3.
    let num = |k: usize| fields.get(k - 3).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    Some(ProcInfo {
        pid,
        ppid: num(4) as u32,
        comm,
        cmdline: String::from_utf8_lossy(&cmdline).replace('\0', " "),
        cpu: (num(14) + num(15) + num(16) + num(17)) / 100.0,
    })
}

fn all_procs() -> Vec<ProcInfo> {
    std::fs::read_dir("/proc")
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).filter_map(read_proc).collect())
        .unwrap_or_default()
}

/// A field of /proc/PID/status or smaps_rollup, in KiB.
fn kib(pid: u32, file: &str, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0.0)
}

/// Memory and CPU of a group of processes.
#[derive(Default, Clone, Copy)]
struct Group {
    count: usize,
    rss_mib: f64,
    pss_mib: f64,
    cpu: f64,
}

impl Group {
    fn of<'a>(procs: impl IntoIterator<Item = &'a ProcInfo>) -> Group {
        procs.into_iter().fold(Group::default(), |g, p| Group {
            count: g.count + 1,
            rss_mib: g.rss_mib + kib(p.pid, "status", "VmRSS:") / 1024.0,
            pss_mib: g.pss_mib + kib(p.pid, "smaps_rollup", "Pss:") / 1024.0,
            cpu: g.cpu + p.cpu,
        })
    }
}

/// The processes of this cluster's node, found from the server's pid and containerd's socket.
struct Usage {
    server: Group,
    containerd: Group,
    shims: Group,
    /// The pods' own processes: pause and httpd, children of the shims.
    pods: Group,
    /// Busy and total CPU seconds of the whole machine (others may be building on it).
    machine_busy: f64,
    machine_total: f64,
}

fn machine_cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<f64> = stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|s| s.parse().ok()).collect();
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    ((total - idle) / 100.0, total / 100.0)
}

fn usage(server_pid: u32, state_dir: &Path) -> Usage {
    let procs = all_procs();
    let state = state_dir.to_string_lossy();
    let shims: Vec<&ProcInfo> = procs.iter().filter(|p| p.comm.starts_with("containerd-shim") && p.cmdline.contains(&*state)).collect();
    // The pods' processes: everything below a shim.
    let mut below: Vec<u32> = shims.iter().map(|p| p.pid).collect();
    let mut pods = Vec::new();
    while let Some(parent) = below.pop() {
        for p in procs.iter().filter(|p| p.ppid == parent) {
            below.push(p.pid);
            pods.push(p);
        }
    }
    let (machine_busy, machine_total) = machine_cpu();
    Usage {
        server: Group::of(procs.iter().filter(|p| p.pid == server_pid)),
        containerd: Group::of(procs.iter().filter(|p| p.comm == "containerd" && p.cmdline.contains(&*state))),
        shims: Group::of(shims),
        pods: Group::of(pods),
        machine_busy,
        machine_total,
    }
}

fn print_memory(label: &str, u: &Usage) {
    println!("memory, {label}:");
    println!("  kaji server (API server, controllers, scheduler, agent): RSS {:>6.1} MiB, PSS {:>6.1} MiB", u.server.rss_mib, u.server.pss_mib);
    println!("  containerd:                                             RSS {:>6.1} MiB, PSS {:>6.1} MiB", u.containerd.rss_mib, u.containerd.pss_mib);
    println!(
        "  {:>3} shims:                                             RSS {:>6.1} MiB, PSS {:>6.1} MiB",
        u.shims.count, u.shims.rss_mib, u.shims.pss_mib
    );
    println!(
        "  {:>3} pod processes (pause + httpd):                     RSS {:>6.1} MiB, PSS {:>6.1} MiB",
        u.pods.count, u.pods.rss_mib, u.pods.pss_mib
    );
}

fn print_cpu(label: &str, before: &Usage, after: &Usage, wall: Duration) {
    // Shims that started in the phase count from zero; shims that exited in it are lost.
    let shims = (after.shims.cpu + after.pods.cpu - before.shims.cpu - before.pods.cpu).max(0.0);
    println!(
        "  CPU during {label} ({:.1} s wall): kaji server {:.1} s, containerd {:.1} s, shims + runc + pods {:.1} s; \
         whole machine {:.1} of {:.1} CPU-s busy",
        wall.as_secs_f64(),
        after.server.cpu - before.server.cpu,
        after.containerd.cpu - before.containerd.cpu,
        shims,
        after.machine_busy - before.machine_busy,
        after.machine_total - before.machine_total,
    );
}

// ---- what the watch sees ---------------------------------------------------------------------

/// When the bench's watch first saw each stage of a pod, by the bench's clock.
#[derive(Default, Clone)]
struct Seen {
    scheduled: Option<Instant>,
    running: Option<Instant>,
    ready: Option<Instant>,
    /// Ready's lastTransitionTime minus creationTimestamp, in seconds (the API's clock).
    api_startup: Option<f64>,
}

type Book = Arc<Mutex<HashMap<String, Seen>>>;

fn record(book: &Book, pod: &Pod, now: Instant) -> bool {
    let Some(name) = pod.metadata.name.clone() else { return false };
    let status = pod.status.as_ref();
    let ready = status.and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "Ready" && c.status == "True"));
    let mut book = book.lock().unwrap_or_else(|e| e.into_inner());
    let seen = book.entry(name).or_default();
    let before = (seen.scheduled.is_some(), seen.running.is_some(), seen.ready.is_some());
    if seen.scheduled.is_none() && pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
        seen.scheduled = Some(now);
    }
    if seen.running.is_none() && status.and_then(|s| s.phase.as_deref()) == Some("Running") {
        seen.running = Some(now);
    }
    if seen.ready.is_none()
        && let Some(c) = ready
    {
        seen.ready = Some(now);
        if let (Some(t), Some(created)) = (&c.last_transition_time, &pod.metadata.creation_timestamp) {
            seen.api_startup = Some(t.0.duration_since(created.0).as_secs_f64());
        }
    }
    before != (seen.scheduled.is_some(), seen.running.is_some(), seen.ready.is_some())
}

/// Watches the bench's pods for the whole run, recording first sightings into `book`.
fn spawn_watch(api: Api<Pod>, book: Book, tx: tokio::sync::watch::Sender<u64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default().labels("bench=pods")).default_backoff().applied_objects();
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            if let Ok(pod) = ev
                && record(&book, &pod, Instant::now())
            {
                tx.send_modify(|n| *n += 1);
            }
        }
    })
}

async fn wait_ready(book: &Book, rx: &mut tokio::sync::watch::Receiver<u64>, names: &[String], timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        rx.borrow_and_update();
        let ready = {
            let book = book.lock().unwrap_or_else(|e| e.into_inner());
            names.iter().filter(|n| book.get(*n).is_some_and(|s| s.ready.is_some())).count()
        };
        if ready == names.len() {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
            anyhow::bail!("only {ready}/{} pods Ready after {timeout:?}", names.len());
        }
    }
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "pods"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "web", "image": IMAGE, "ports": [{"containerPort": 80}]}],
        },
    }))
    .expect("pod")
}

// ---- figures ---------------------------------------------------------------------------------

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn line(label: &str, mut secs: Vec<f64>) -> f64 {
    secs.sort_by(f64::total_cmp);
    let p99 = pct(&secs, 0.99);
    println!(
        "  {label:<44} p50 {:>7.0} ms  p90 {:>7.0} ms  p99 {:>7.0} ms  max {:>7.0} ms  (n={})",
        pct(&secs, 0.5) * 1e3,
        pct(&secs, 0.9) * 1e3,
        p99 * 1e3,
        secs.last().copied().unwrap_or(f64::NAN) * 1e3,
        secs.len()
    );
    p99
}

/// Prints the startup figures of the pods in `created` (name -> when the create request left).
fn report(book: &Book, created: &HashMap<String, (Instant, Duration)>) {
    let book = book.lock().unwrap_or_else(|e| e.into_inner());
    let (mut watch, mut api, mut request, mut sched, mut run, mut ready) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (name, (t0, req)) in created {
        let Some(s) = book.get(name) else { continue };
        let since = |t: Option<Instant>, from: Instant| t.map(|t| t.saturating_duration_since(from).as_secs_f64());
        request.push(req.as_secs_f64());
        watch.extend(since(s.ready, *t0));
        api.extend(s.api_startup);
        sched.extend(since(s.scheduled, *t0));
        if let Some(sc) = s.scheduled {
            run.extend(since(s.running, sc));
        }
        if let Some(r) = s.running {
            ready.extend(since(s.ready, r));
        }
    }
    let p99 = line("create -> Ready, bench watch (own clock)", watch);
    let api_p99 = line("create -> Ready, API timestamps (1 s res.)", api);
    println!(
        "    SLO p99 <= 5 s: watch p99 is {:.1}% of it ({:.1}x headroom); API-timestamp p99 {:.0}%",
        p99 / SLO.as_secs_f64() * 100.0,
        SLO.as_secs_f64() / p99,
        api_p99 / SLO.as_secs_f64() * 100.0
    );
    println!("  where the time goes (bench watch):");
    line("  create request round trip", request);
    line("  create -> scheduled (spec.nodeName)", sched);
    line("  scheduled -> Running (phase)", run);
    line("  Running -> Ready condition", ready);
}

// ---- the bench -------------------------------------------------------------------------------


/// Deletes the bench's pods and waits until the API no longer has them; returns the time taken.
async fn delete_all(api: &Api<Pod>) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let lp = ListParams::default().labels("bench=pods");
    let mut tasks = tokio::task::JoinSet::new();
    for p in api.list(&lp).await?.items {
        let api = api.clone();
        tasks.spawn(async move {
            let dp = DeleteParams { grace_period_seconds: Some(1), ..DeleteParams::default() };
            api.delete(&p.metadata.name.unwrap_or_default(), &dp).await.map(|_| ())
        });
    }
    while let Some(r) = tasks.join_next().await {
        match r? {
            Ok(()) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    loop {
        let left = api.list(&lp).await?.items.len();
        if left == 0 {
            return Ok(t0.elapsed());
        }
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(180), "{left} pods still there after 180 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Bench {
    api: Api<Pod>,
    book: Book,
    rx: tokio::sync::watch::Receiver<u64>,
    server_pid: u32,
    state_dir: PathBuf,
    n: usize,
}

impl Bench {
    fn usage(&self) -> Usage {
        usage(self.server_pid, &self.state_dir)
    }

    async fn create(api: Api<Pod>, name: String) -> anyhow::Result<(String, (Instant, Duration))> {
        let t0 = Instant::now();
        api.create(&PostParams::default(), &pod(&name)).await?;
        Ok((name, (t0, t0.elapsed())))
    }

    /// (a): each pod is created once the previous one is Ready; the earlier ones keep running.
    async fn one_at_a_time(&mut self) -> anyhow::Result<HashMap<String, (Instant, Duration)>> {
        let mut created = HashMap::new();
        for i in 0..self.n {
            let (name, t) = Bench::create(self.api.clone(), format!("seq-{i}")).await?;
            wait_ready(&self.book, &mut self.rx, std::slice::from_ref(&name), Duration::from_secs(60)).await?;
            created.insert(name, t);
        }
        Ok(created)
    }

    /// (b): all pods created at once, each by its own task.
    async fn burst(&mut self) -> anyhow::Result<HashMap<String, (Instant, Duration)>> {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..self.n {
            tasks.spawn(Bench::create(self.api.clone(), format!("burst-{i}")));
        }
        let mut created = HashMap::new();
        while let Some(r) = tasks.join_next().await {
            let (name, t) = r??;
            created.insert(name, t);
        }
        let names: Vec<String> = created.keys().cloned().collect();
        wait_ready(&self.book, &mut self.rx, &names, Duration::from_secs(300)).await?;
        Ok(created)
    }

    async fn run(&mut self) -> anyhow::Result<()> {
        let t0 = Instant::now();
        let warm = Bench::create(self.api.clone(), "warmup".into()).await?;
        wait_ready(&self.book, &mut self.rx, std::slice::from_ref(&warm.0), Duration::from_secs(120)).await?;
        println!("warm-up pod (pulls {IMAGE} from the local mirror) Ready after {:.0} ms", t0.elapsed().as_secs_f64() * 1e3);
        delete_all(&self.api).await?;

        for (label, burst) in [("(a) one at a time", false), ("(b) burst, all at once", true)] {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let before = self.usage();
            let t0 = Instant::now();
            let created = if burst { self.burst().await? } else { self.one_at_a_time().await? };
            let wall = t0.elapsed();
            let after = self.usage();
            println!("\n{} pods {label}: all Ready after {:.1} s", self.n, wall.as_secs_f64());
            report(&self.book, &created);
            print_cpu(label, &before, &after, wall);
            tokio::time::sleep(Duration::from_secs(3)).await;
            print_memory(&format!("{} pods running, 3 s after {label}", self.n), &self.usage());
            let gone = delete_all(&self.api).await?;
            println!("  deleting the {} pods took {:.1} s (grace period 1 s)", self.n, gone.as_secs_f64());
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        print_memory("idle again, 3 s after the last pods were deleted", &self.usage());
        Ok(())
    }
}

/// The figures; deletes the bench's pods whatever happened.
async fn bench(kubeconfig: &Path, server_pid: u32, state_dir: PathBuf, n: usize) -> anyhow::Result<()> {
    let client = common::ready_client(kubeconfig).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let start = Instant::now();
    loop {
        let ready = nodes.get_opt(NODE).await?.and_then(|n| n.status?.conditions?.into_iter().find(|c| c.type_ == "Ready")).is_some_and(|c| c.status == "True");
        if ready {
            break;
        }
        anyhow::ensure!(start.elapsed() < Duration::from_secs(60), "node {NODE} not Ready after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("node {NODE} Ready {:.1} s after the API answered", start.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(3)).await;
    print_memory("idle (node Ready, no pods)", &usage(server_pid, &state_dir));

    let api: Api<Pod> = Api::namespaced(client, "default");
    let book = Book::default();
    let (tx, rx) = tokio::sync::watch::channel(0);
    let watch = spawn_watch(api.clone(), book.clone(), tx);
    let mut b = Bench { api: api.clone(), book, rx, server_pid, state_dir, n };
    let result = b.run().await;
    let deleted = delete_all(&api).await;
    watch.abort();
    result.and(deleted.map(|_| ()))
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("KAJI_BENCH_PODS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    // SAFETY: geteuid has no preconditions.
    anyhow::ensure!(unsafe { libc_geteuid() } == 0, "the pod bench runs real containers and needs root");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-images.sh");
    let out = Command::new("bash").arg(&script).output()?;
    anyhow::ensure!(out.status.success(), "scripts/test-images.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));

    let dir = tempfile::Builder::new().prefix("kaji-bench-pods-").tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let server = Proc(
        Command::new(env!("CARGO_BIN_EXE_kaji"))
            .args(["server", "--disable-agent=false", "--bind-address", "127.0.0.1", "--https-listen-port", &port])
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--registries", REGISTRIES, "--cni-bridge-name", BRIDGE, "--kubelet-port", "0", "--node-name", NODE])
            .env("KAJI_LOG", std::env::var("KAJI_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    let state_dir = dir.path().join("agent/containerd");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = rt.block_on(bench(&dir.path().join("kubeconfig.yaml"), server.0.id(), state_dir.clone(), n));

    // Stop the cluster and put the machine back: containerd, shims, mounts, netns, bridge.
    drop(server);
    let mut opts = kaji_kubelet::containerd::ContainerdOptions::new(&state_dir, "10.42.0.0/24");
    opts.bridge_name = BRIDGE.to_string();
    opts.network_name = format!("kaji-{BRIDGE}");
    let cleaned = rt.block_on(kaji_kubelet::containerd::cleanup(&opts));
    let state = state_dir.to_string_lossy();
    let left = all_procs().into_iter().filter(|p| p.cmdline.contains(&*state)).count();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().lines().filter(|l| l.contains(&*state)).count();
    let bridge = Path::new("/sys/class/net").join(BRIDGE).exists();
    println!("\nafter cleanup: {left} processes, {mounts} mounts left from this node; bridge {BRIDGE} {}", if bridge { "STILL THERE" } else { "gone" });
    if let Err(e) = &result {
        let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("bench failed: {e:#}\nserver log tail:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    result?;
    cleaned?;
    anyhow::ensure!(left == 0 && mounts == 0 && !bridge, "the node was not cleaned up");
    dir.close()?;
    Ok(())
}
