//! Browser tests of the dashboard (`https://<server>/dashboard/`): Debian's Chromium driven by
//! Playwright (`playwright-core` from npm, `tests/dashboard/node_modules`; it cannot download a
//! browser here, so it is pointed at /usr/bin/chromium). Each test starts a cluster, makes tokens
//! with `kaji token create`, and runs one script of `tests/dashboard/*.mjs`, which logs in as a
//! person would, drives the cluster with stock kubectl meanwhile, and prints `STEP`, `PASS` or
//! `FAIL` lines. Screenshots of every page go to `target/dashboard-screenshots/`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::node::Node;
use support::{Cluster, KUBECTL_NEW, wait_for};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    target
        .canonicalize()
        .unwrap_or(target)
        .join("dashboard-screenshots")
}

/// No silent skip: a missing browser or npm install fails the test and says how to fix it.
fn require_browser() {
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "the dashboard's browser tests need Debian's Chromium at /usr/bin/chromium (.ci/install-deps installs it)"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "the dashboard's browser tests need node (Debian's nodejs) on PATH"
    );
    assert!(
        repo()
            .join("tests/dashboard/node_modules/playwright-core/package.json")
            .exists(),
        "tests/dashboard/node_modules/playwright-core is missing: run `npm ci` in tests/dashboard (.ci/install-deps does)"
    );
}

/// A bearer token for `user` from the server's token file, once the API server accepts it.
fn token(cluster: &Cluster, user: &str, groups: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kaji"));
    cmd.args(["token", "create", "--user", user, "--data-dir"])
        .arg(cluster.data_dir());
    for g in groups {
        cmd.args(["--group", g]);
    }
    let out = cmd.output().expect("running kaji token create");
    assert!(
        out.status.success(),
        "kaji token create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // The API server re-reads the token file when it changes: wait until it knows this one.
    wait_for(
        &format!("the API server to accept {user}'s token"),
        Duration::from_secs(30),
        || {
            let out = Command::new(KUBECTL_NEW)
                .args(["--kubeconfig", "/dev/null", "--insecure-skip-tls-verify"])
                .arg(format!("--server=https://127.0.0.1:{}", cluster.port))
                .arg(format!("--token={token}"))
                .args([
                    "auth",
                    "whoami",
                    "-o",
                    "jsonpath={.status.userInfo.username}",
                ])
                .env("KUBECACHEDIR", cluster.data_dir().join("cache"))
                .output()
                .ok()?;
            (String::from_utf8_lossy(&out.stdout) == user).then_some(())
        },
    );
    token
}

/// Connections from the browser's namespace (a Unix socket, which namespaces do not separate)
/// passed to `127.0.0.1:port`, byte for byte, a thread per direction. Stops and removes the
/// socket when dropped.
struct Forward {
    path: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Forward {
    fn start(path: &Path, port: u16) -> Forward {
        use std::os::unix::net::UnixListener;
        use std::sync::atomic::Ordering;
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("binding the browser's forwarding socket");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(unix) = conn else { continue };
                // The server may be down (a restart test): the browser then sees the connection close.
                let Ok(tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                    continue;
                };
                one_way(
                    unix.try_clone().expect("unix clone"),
                    tcp.try_clone().expect("tcp clone"),
                    |t| t.shutdown(std::net::Shutdown::Write),
                );
                one_way(tcp, unix, |u| u.shutdown(std::net::Shutdown::Write));
            }
        });
        Forward {
            path: path.to_path_buf(),
            stop,
            accept: Some(accept),
        }
    }
}

/// Copies `from` to `to` on a thread of its own, then closes `to`'s writing side.
fn one_way<R, W>(mut from: R, mut to: W, close: fn(&W) -> std::io::Result<()>)
where
    R: std::io::Read + Send + 'static,
    W: std::io::Write + Send + 'static,
{
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = close(&to);
    });
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::os::unix::net::UnixStream::connect(&self.path);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn dashboard_url(cluster: &Cluster) -> String {
    format!("https://127.0.0.1:{}/dashboard/", cluster.port)
}

/// Runs `tests/dashboard/<script>` with `env`; fails with its output (and the server log's tail)
/// unless it exits 0 within `timeout`. Returns its output.
fn run_script(
    cluster: &mut Cluster,
    script: &str,
    env: &[(&str, &str)],
    timeout: Duration,
) -> String {
    run_script_with(cluster, script, env, timeout, |_, _| {})
}

/// [`run_script`], calling `on_line` with each line the script prints as it prints it (a script
/// asks the test to act on the cluster that way, e.g. to restart the server).
fn run_script_with(
    cluster: &mut Cluster,
    script: &str,
    env: &[(&str, &str)],
    timeout: Duration,
    mut on_line: impl FnMut(&mut Cluster, &str),
) -> String {
    let dir = repo().join("tests/dashboard");
    // The browser runs in a network namespace of its own: Chromium aborts every request in flight
    // (ERR_NETWORK_CHANGED) when an interface comes or goes in its namespace, and tests running
    // beside this one make CNI bridges and veths all the time. Inside, forward.mjs serves the
    // server's port on 127.0.0.1 and hands each connection to `forward`'s Unix socket, which
    // connects it to the real port here. The namespace goes away with the script.
    let forward = Forward::start(&cluster.data_dir().join("browser.sock"), cluster.port);
    let mut child = Command::new("unshare")
        .args([
            "--net",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec node \"$0\"",
        ])
        .arg(dir.join(script))
        .current_dir(&dir)
        .env("FORWARD_SOCKET", &forward.path)
        .env("DASHBOARD_URL", dashboard_url(cluster))
        .env("SCREENSHOTS", screenshots())
        .env("KUBECTL", KUBECTL_NEW)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("KUBECACHEDIR", cluster.data_dir().join("cache"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running node");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let readers: Vec<_> = [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ]
    .into_iter()
    .map(|r| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(r)).map_while(Result::ok) {
                let _ = tx.send(line);
            }
        })
    })
    .collect();
    drop(tx);
    let started = Instant::now();
    let mut output = String::new();
    let mut status = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                on_line(cluster, &line);
                output.push_str(&line);
                output.push('\n');
            }
            // Both pipes closed: the script has ended.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                status = child.wait().ok();
                break;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    for r in readers {
        let _ = r.join();
    }
    drop(forward);
    println!("--- node {script} ({:?}):\n{output}", started.elapsed());
    assert!(
        status.is_some_and(|s| s.success()),
        "the browser script {script} failed ({}):\n{output}\nserver log tail:\n{}",
        status.map_or_else(|| format!("killed after {timeout:?}"), |s| s.to_string()),
        support::tail(&cluster.log(), 30)
    );
    println!(
        "screenshots of the {script} scenario saved under {}",
        screenshots().display()
    );
    output
}

#[test]
fn dashboard_live_lists_relations_edit_and_rbac_in_a_browser() {
    require_browser();
    let mut cluster = Cluster::start_with("dashboard", &["--hollow-nodes", "2"]);
    let admin = token(&cluster, "dash-admin", &["system:masters"]);
    let viewer = token(&cluster, "dash-viewer", &[]);
    cluster.ok(&[
        "create",
        "clusterrolebinding",
        "dash-viewer-view",
        "--clusterrole=view",
        "--user=dash-viewer",
    ]);
    let out = run_script(
        &mut cluster,
        "cluster.mjs",
        &[("DASHBOARD_TOKEN", &admin), ("VIEW_TOKEN", &viewer)],
        Duration::from_secs(300),
    );
    for want in [
        "PASS cluster",
        "rolling update followed: 2 ReplicaSets drawn during it, 1 after",
        "15-forbidden.png",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    // What the browser did is what kubectl sees: 4 replicas from the Scale button (3 from the
    // YAML edit before), still there after the viewer's refused delete.
    assert_eq!(
        cluster.ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image}"
        ]),
        "4 nginx:1.16"
    );
}

#[test]
fn dashboard_pod_logs_and_exec_on_a_real_node() {
    require_browser();
    let mut n = Node::start("dashboard-node");
    n.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: talker
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:latest
    command: ["sh", "-c", "echo hello from kaji; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.5; done"]
"#,
    );
    n.wait_running("talker");
    n.wait_logs(&["talker"], "hello from kaji");
    let admin = token(&n.cluster, "dash-admin", &["system:masters"]);
    let out = run_script(
        &mut n.cluster,
        "node.mjs",
        &[("DASHBOARD_TOKEN", &admin), ("POD", "talker")],
        Duration::from_secs(180),
    );
    assert!(out.contains("PASS node"), "{out}");
    assert!(
        out.lines().any(|l| l.trim() == "hi"),
        "the terminal shows no line `hi`:\n{out}"
    );
}

#[test]
fn dashboard_list_page_with_2000_configmaps_is_virtualised() {
    require_browser();
    let mut cluster = Cluster::start("dashboard-bench");
    let admin = token(&cluster, "dash-admin", &["system:masters"]);
    let out = run_script(
        &mut cluster,
        "bench.mjs",
        &[
            ("DASHBOARD_TOKEN", &admin),
            ("EXPECT", "2000"),
            ("CREATE", "1"),
        ],
        Duration::from_secs(300),
    );
    assert!(out.contains("PASS bench"), "{out}");
    let n = cluster.ok(&["get", "configmaps", "-l", "bench=yes", "-o", "name"]);
    assert_eq!(n.lines().count(), 2000);
    // The figure, for the record (a benchmark, not a pass mark).
    for l in out.lines().filter(|l| l.starts_with("MEASURE")) {
        println!("{l}");
    }
}

/// Logged in through the URL `kaji dashboard` prints; the server restarts under the open page.
#[test]
fn dashboard_reconnects_its_watches_when_the_server_restarts() {
    require_browser();
    let mut cluster = Cluster::start("dashboard-reconnect");
    // The login `kaji dashboard` prints (as `minikube dashboard`): the URL with a token.
    let out = Command::new(env!("CARGO_BIN_EXE_kaji"))
        .args(["dashboard", "--data-dir"])
        .arg(cluster.data_dir())
        .output()
        .expect("running kaji dashboard");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kaji dashboard: {printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let login = format!("{}#token=", dashboard_url(&cluster));
    let admin = printed
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&login))
        .unwrap_or_else(|| panic!("kaji dashboard printed no {login}...: {printed}"))
        .to_string();
    let mut restarted = false;
    let out = run_script_with(
        &mut cluster,
        "reconnect.mjs",
        &[("DASHBOARD_TOKEN", &admin)],
        Duration::from_secs(180),
        |cluster, line| match line {
            // The server goes away; it comes back once the page has said so.
            "STOP-SERVER" => cluster.kill(),
            "START-SERVER" => {
                // Same data dir and port: the page's token and resourceVersions stay valid.
                cluster.spawn();
                restarted = true;
            }
            _ => {}
        },
    );
    assert!(restarted, "the script never asked for the restart:\n{out}");
    assert!(out.contains("PASS reconnect"), "{out}");
}

#[test]
fn dashboard_draws_the_servers_metrics_history_when_a_page_opens() {
    require_browser();
    let mut cluster = Cluster::start_with(
        "dashboard-history",
        &["--hollow-nodes", "1", "--metric-resolution", "1s"],
    );
    let admin = token(&cluster, "dash-admin", &["system:masters"]);
    cluster.ok(&[
        "run",
        "busy",
        "--image=nginx",
        "--annotations=kaji.io/hollow-cpu-millicores=300",
        "--annotations=kaji.io/hollow-memory-bytes=100000000",
    ]);
    // The samples are taken before any page opens.
    let min = 8;
    wait_for(
        "the dashboard to hold 8 samples of the pod",
        Duration::from_secs(90),
        || {
            let out = Command::new("curl")
                .args(["-sS", "--max-time", "10", "--cacert"])
                .arg(cluster.data_dir().join("server/tls/ca.crt"))
                .arg("-H")
                .arg(format!("Authorization: Bearer {admin}"))
                .arg(format!(
                    "https://127.0.0.1:{}/dashboard/api/history/namespaces/default/pods/busy",
                    cluster.port
                ))
                .output()
                .ok()?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (v["points"].as_array()?.len() >= min).then_some(())
        },
    );
    let out = run_script(
        &mut cluster,
        "history.mjs",
        &[
            ("DASHBOARD_TOKEN", &admin),
            ("POD", "busy"),
            ("NODE", "hollow-node-0"),
            ("MIN", &min.to_string()),
        ],
        Duration::from_secs(120),
    );
    assert!(out.contains("PASS history"), "{out}");
}
