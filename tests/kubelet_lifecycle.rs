//! End-to-end tests of the container lifecycle on the real node agent (`kaji server` with its
//! in-process kubelet and a managed containerd, stock kubectl): init containers, postStart and
//! preStop hooks, graceful termination, startup probes, hostPort, and resources with QoS and the
//! OOM killer. Each test asserts what a user sees: the STATUS and RESTARTS columns, events,
//! and the pod's status by jsonpath.
//!
//! The test images are busybox stand-ins (scripts/test-images.sh): `sh`, `sleep`, `cat`, `head`,
//! `tail`, `httpd`, ... but no `touch` or `dd`, so files are written with `echo` and memory is
//! filled with `head -c | tail` (tail keeps a line-less input in memory).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::node::Node;
use support::wait_for;

/// READY, STATUS and RESTARTS of `kubectl get pod` (RESTARTS without the "(5s ago)").
fn row(n: &Node, pod: &str) -> (String, String, String) {
    let out = n.cluster.ok(&["get", "pod", pod, "--no-headers"]);
    let cols: Vec<&str> = out.split_whitespace().collect();
    (
        cols.get(1).unwrap_or(&"").to_string(),
        cols.get(2).unwrap_or(&"").to_string(),
        cols.get(3).unwrap_or(&"").to_string(),
    )
}

fn status(n: &Node, pod: &str) -> String {
    row(n, pod).1
}

/// Waits until the STATUS column reads `want`; returns every STATUS seen on the way.
fn wait_status(n: &Node, pod: &str, want: &str, timeout: Duration) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    wait_for(&format!("{pod} STATUS {want}"), timeout, || {
        let s = status(n, pod);
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        (s == want).then_some(())
    });
    seen
}

/// The pod's events as "Type Reason: message" lines.
fn events(n: &Node, pod: &str) -> String {
    n.cluster.ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod}"),
        "-o",
        "jsonpath={range .items[*]}{.type} {.reason}: {.message}{\"\\n\"}{end}",
    ])
}

/// How many times the kubelet reported an event whose message starts with `prefix`.
fn event_count(n: &Node, pod: &str, prefix: &str) -> u32 {
    n.cluster
        .ok(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={pod}"),
            "-o",
            "jsonpath={range .items[*]}{.count} {.message}{\"\\n\"}{end}",
        ])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, m)| m.starts_with(prefix))
        .map(|(c, _)| c.parse::<u32>().unwrap_or(1))
        .sum()
}

fn wait_event(n: &Node, pod: &str, want: &str, timeout: Duration) -> String {
    wait_for(&format!("an event {want:?} about {pod}"), timeout, || {
        let e = events(n, pod);
        e.contains(want).then_some(e)
    })
}

/// A plain HTTP/1.0 GET; the body when the status is 200.
fn http_get(addr: &str, path: &str) -> Option<String> {
    let sa: SocketAddr = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let code = head.strip_prefix("HTTP/1.")?.split_whitespace().nth(1)?;
    (code == "200").then(|| body.to_string())
}

fn restarts(n: &Node, pod: &str, path: &str) -> u32 {
    n.jsonpath(pod, path).parse().unwrap_or(0)
}

/// A directory of the test's data dir, mounted into pods as a hostPath, for markers the test
/// reads after a pod is gone.
fn host_dir(n: &Node, name: &str) -> std::path::PathBuf {
    let d = n.cluster.data_dir().join(name);
    std::fs::create_dir_all(&d).expect("host dir");
    d
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Init containers run one at a time, in order, each to completion, before the app container;
/// the STATUS column walks Init:0/2, Init:1/2, then Running; they share the pod's volumes.
#[test]
fn init_containers_run_in_order_before_the_app() {
    let n = Node::start("lc-init");
    let gates = host_dir(&n, "gates");
    n.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: init-ok
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: first
    image: busybox:latest
    command: ["sh", "-c", "until test -f /gates/go1; do sleep 0.1; done; echo first >> /www/index.html"]
    volumeMounts:
    - {{name: www, mountPath: /www}}
    - {{name: gates, mountPath: /gates}}
  - name: second
    image: busybox:latest
    command: ["sh", "-c", "until test -f /gates/go2; do sleep 0.1; done; echo second >> /www/index.html"]
    volumeMounts:
    - {{name: www, mountPath: /www}}
    - {{name: gates, mountPath: /gates}}
  containers:
  - name: web
    image: nginx:1.16
    volumeMounts:
    - {{name: www, mountPath: /www}}
  volumes:
  - name: www
    emptyDir: {{}}
  - name: gates
    hostPath: {{path: {}}}
"#,
        gates.display()
    ));
    wait_status(&n, "init-ok", "Init:0/2", Duration::from_secs(60));
    // The first one runs; the second and the app wait for it.
    wait_for(
        "the first init container running",
        Duration::from_secs(30),
        || {
            let started = n.jsonpath(
                "init-ok",
                "{.status.initContainerStatuses[0].state.running.startedAt}",
            );
            (!started.is_empty()).then_some(())
        },
    );
    assert_eq!(
        n.jsonpath(
            "init-ok",
            "{.status.initContainerStatuses[1].state.waiting.reason} {.status.containerStatuses[0].state.waiting.reason}"
        ),
        "PodInitializing PodInitializing"
    );
    let initialized = "{.status.conditions[?(@.type==\"Initialized\")].status} {.status.conditions[?(@.type==\"Initialized\")].reason}";
    assert_eq!(
        n.jsonpath("init-ok", initialized),
        "False ContainersNotInitialized"
    );
    assert_eq!(n.jsonpath("init-ok", "{.status.phase}"), "Pending");
    std::fs::write(gates.join("go1"), "").unwrap();
    wait_status(&n, "init-ok", "Init:1/2", Duration::from_secs(30));
    assert_eq!(
        n.jsonpath(
            "init-ok",
            "{.status.initContainerStatuses[0].state.terminated.reason} {.status.containerStatuses[0].state.waiting.reason}"
        ),
        "Completed PodInitializing"
    );
    std::fs::write(gates.join("go2"), "").unwrap();
    let ip = n.wait_running("init-ok");
    assert_eq!(
        n.jsonpath(
            "init-ok",
            "{.status.initContainerStatuses[*].state.terminated.reason} {.status.initContainerStatuses[*].state.terminated.exitCode}"
        ),
        "Completed Completed 0 0"
    );
    assert_eq!(n.jsonpath("init-ok", initialized), "True ");
    wait_for("init-ok READY 1/1 Running", Duration::from_secs(30), || {
        let (ready, st, _) = row(&n, "init-ok");
        (ready == "1/1" && st == "Running").then_some(())
    });
    // The app serves what the init containers wrote, in their order.
    let page = wait_for("the app to serve the page", Duration::from_secs(30), || {
        http_get(&format!("{ip}:80"), "/")
    });
    assert_eq!(page, "first\nsecond\n");
}

/// A failing init container: with restartPolicy Never the pod fails (Init:Error) and the app
/// never starts; with Always it is retried with back-off (Init:CrashLoopBackOff).
#[test]
fn failing_init_containers_fail_the_pod_or_back_off() {
    let n = Node::start("lc-initfail");
    n.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: init-never
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: setup
    image: busybox:latest
    command: ["sh", "-c", "echo setting up; exit 3"]
  containers:
  - name: app
    image: busybox:latest
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: init-always
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: setup
    image: busybox:latest
    command: ["sh", "-c", "exit 1"]
  containers:
  - name: app
    image: busybox:latest
    command: ["sleep", "3600"]
"#,
    );
    n.wait_phase("init-never", "Failed");
    assert_eq!(status(&n, "init-never"), "Init:Error");
    assert_eq!(
        n.jsonpath(
            "init-never",
            "{.status.initContainerStatuses[0].state.terminated.exitCode} {.status.initContainerStatuses[0].state.terminated.reason} {.status.containerStatuses[0].state.waiting.reason}"
        ),
        "3 Error PodInitializing"
    );
    assert!(
        !events(&n, "init-never").contains("Started container app"),
        "{}",
        events(&n, "init-never")
    );
    assert_eq!(n.logs(&["init-never", "-c", "setup"]).trim(), "setting up");

    let seen = wait_status(
        &n,
        "init-always",
        "Init:CrashLoopBackOff",
        Duration::from_secs(60),
    );
    assert!(
        restarts(
            &n,
            "init-always",
            "{.status.initContainerStatuses[0].restartCount}"
        ) >= 1,
        "STATUS went {seen:?}"
    );
    assert_eq!(
        n.jsonpath(
            "init-always",
            "{.status.phase} {.status.initContainerStatuses[0].lastState.terminated.exitCode} {.status.containerStatuses[0].state.waiting.reason}"
        ),
        "Pending 1 PodInitializing"
    );
    let ev = events(&n, "init-always");
    assert!(
        ev.contains("Back-off restarting failed container setup"),
        "{ev}"
    );
    assert!(!ev.contains("Started container app"), "{ev}");
}

/// postStart runs right after the start (exec: the main process sees its file; httpGet: another
/// pod gets the request); preStop runs before the SIGTERM on deletion. A failing postStart kills
/// the container (FailedPostStartHook); a failing preStop is reported (FailedPreStopHook).
#[test]
fn lifecycle_hooks_run_after_start_and_before_termination() {
    let n = Node::start("lc-hooks");
    let marks = host_dir(&n, "marks");
    // A web server that logs each request's URL.
    n.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hook-server
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: busybox:latest
    command: ["httpd", "-f", "-vv", "-p", "8080", "-h", "/tmp"]
"#,
    );
    let server = n.wait_running("hook-server");
    n.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hooked
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: main
    image: busybox:latest
    command: ["sh", "-c", "trap 'if test -f /marks/prestop; then echo TERM-after-preStop > /marks/term; else echo TERM-before-preStop > /marks/term; fi; exit 0' TERM; until test -f /tmp/poststart; do sleep 0.1; done; echo saw $(cat /tmp/poststart); sleep 3600 & wait"]
    lifecycle:
      postStart:
        exec: {{command: ["sh", "-c", "echo written-by-poststart > /tmp/poststart"]}}
      preStop:
        exec: {{command: ["sh", "-c", "echo prestop-ran > /marks/prestop"]}}
    volumeMounts:
    - {{name: marks, mountPath: /marks}}
  - name: web
    image: busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    lifecycle:
      postStart:
        httpGet: {{host: "{server}", port: 8080, path: /poststart-web}}
      preStop:
        httpGet: {{host: "{server}", port: 8080, path: /prestop-web}}
  volumes:
  - name: marks
    hostPath: {{path: {marks}}}
"#,
        marks = marks.display()
    ));
    n.wait_running("hooked");
    n.wait_logs(&["hooked", "-c", "main"], "saw written-by-poststart");
    n.wait_logs(&["hook-server"], "url:/poststart-web");
    // Any HTTP response is a successful hook (this server answers 404).
    assert!(n.logs(&["hook-server"]).contains("response:404"));
    assert!(!n.logs(&["hook-server"]).contains("prestop"));
    let ev = events(&n, "hooked");
    assert!(!ev.contains("Failed"), "{ev}");
    assert_eq!(
        n.jsonpath("hooked", "{.status.containerStatuses[*].restartCount}"),
        "0 0"
    );
    assert!(!marks.join("prestop").exists());
    let started = Instant::now();
    n.cluster.ok(&["delete", "pod", "hooked", "--wait=true"]);
    let took = started.elapsed();
    assert_eq!(read(&marks.join("prestop")), "prestop-ran\n");
    // The main process got its SIGTERM after the preStop hook, and exited on it.
    assert_eq!(read(&marks.join("term")), "TERM-after-preStop\n");
    n.wait_logs(&["hook-server"], "url:/prestop-web");
    assert!(
        took < Duration::from_secs(9),
        "the containers exited on SIGTERM, yet deletion took {took:?}"
    );

    // Failing hooks.
    n.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: bad-poststart
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    command: ["sleep", "3600"]
    lifecycle:
      postStart:
        exec: {command: ["sh", "-c", "echo no luck; sleep 2; exit 7"]}
---
apiVersion: v1
kind: Pod
metadata:
  name: bad-prestop
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: busybox:latest
    command: ["sleep", "3600"]
    lifecycle:
      preStop:
        exec: {command: ["sh", "-c", "exit 5"]}
"#,
    );
    let ev = wait_event(
        &n,
        "bad-poststart",
        // The reason, not the Killing event whose message is also "FailedPostStartHook".
        "Warning FailedPostStartHook:",
        Duration::from_secs(30),
    );
    assert!(ev.contains("Exec lifecycle hook ([sh -c echo no luck; sleep 2; exit 7]) for Container \"c\" in Pod \"bad-poststart_default("), "{ev}");
    assert!(
        ev.contains("failed - error: command 'sh -c echo no luck; sleep 2; exit 7' exited with 7: , message: \"no luck\\n\""),
        "{ev}"
    );
    // The container waits with the hook's error (shown while the next attempt's hook runs),
    // is started again, and then backs off; it is never shown running.
    let mut seen = Vec::new();
    wait_for(
        "bad-poststart restarted and backing off",
        Duration::from_secs(40),
        || {
            let (_, st, restarts) = row(&n, "bad-poststart");
            if seen.last() != Some(&st) {
                seen.push(st.clone());
            }
            (st == "CrashLoopBackOff" && restarts != "0").then_some(())
        },
    );
    assert!(seen.iter().any(|s| s == "PostStartHookError"), "{seen:?}");
    assert!(!seen.iter().any(|s| s == "Running"), "{seen:?}");
    let ev = events(&n, "bad-poststart");
    assert!(ev.contains("Normal Killing: FailedPostStartHook"), "{ev}");
    n.wait_running("bad-prestop");
    n.cluster
        .ok(&["delete", "pod", "bad-prestop", "--wait=true"]);
    wait_event(
        &n,
        "bad-prestop",
        "Warning FailedPreStopHook: Exec lifecycle hook ([sh -c exit 5]) for Container \"c\" in Pod \"bad-prestop_default(",
        Duration::from_secs(10),
    );
}

/// Deletion sends SIGTERM, then SIGKILL after terminationGracePeriodSeconds: a container that
/// traps TERM finishes its handler; one that ignores it is killed when the period ends.
#[test]
fn termination_is_graceful_then_forced() {
    let n = Node::start("lc-term");
    let marks = host_dir(&n, "marks");
    n.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: traps-term
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - name: c
    image: busybox:latest
    command: ["sh", "-c", "trap 'echo got TERM; sleep 1; echo cleaned up > /marks/trap; exit 0' TERM; echo waiting; sleep 3600 & wait"]
    volumeMounts:
    - {{name: marks, mountPath: /marks}}
  volumes:
  - name: marks
    hostPath: {{path: {}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: ignores-term
spec:
  terminationGracePeriodSeconds: 4
  containers:
  - name: c
    image: busybox:latest
    command: ["sh", "-c", "trap '' TERM; echo waiting; while true; do sleep 1; done"]
"#,
        marks.display()
    ));
    n.wait_running("traps-term");
    n.wait_running("ignores-term");
    n.wait_logs(&["traps-term"], "waiting");
    n.wait_logs(&["ignores-term"], "waiting");
    let gone = |pod: &str| {
        let out = n.cluster.kubectl(&["get", "pod", pod, "-o", "name"]);
        String::from_utf8_lossy(&out.stderr).contains("NotFound")
    };
    let started = Instant::now();
    n.cluster.ok(&[
        "delete",
        "pod",
        "traps-term",
        "ignores-term",
        "--wait=false",
    ]);
    // Both show Terminating while their containers stop.
    wait_for("Terminating", Duration::from_secs(5), || {
        (status(&n, "ignores-term") == "Terminating").then_some(())
    });
    let trap_took = wait_for("traps-term gone", Duration::from_secs(20), || {
        gone("traps-term").then(|| started.elapsed())
    });
    let ignore_took = wait_for("ignores-term gone", Duration::from_secs(30), || {
        gone("ignores-term").then(|| started.elapsed())
    });
    assert_eq!(read(&marks.join("trap")), "cleaned up\n");
    assert!(
        trap_took >= Duration::from_secs(1) && trap_took < Duration::from_secs(20),
        "the TERM handler takes 1 s and the grace period is 30 s, yet the pod went after {trap_took:?}"
    );
    assert!(
        ignore_took >= Duration::from_secs(4) && ignore_took < Duration::from_secs(20),
        "SIGKILL comes after the 4 s grace period, yet the pod went after {ignore_took:?}"
    );
    let ev = events(&n, "ignores-term");
    assert!(ev.contains("Normal Killing: Stopping container c"), "{ev}");
}

/// A second delete with a shorter grace period, while the pod is already terminating, cuts the
/// wait short: upstream's pod worker cancels the kill in progress and kills again with it.
#[test]
fn a_second_delete_with_a_shorter_grace_period_cuts_the_wait() {
    let n = Node::start("lc-regrace");
    n.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: slow-to-die
spec:
  terminationGracePeriodSeconds: 120
  containers:
  - name: c
    image: busybox:latest
    command: ["sh", "-c", "trap '' TERM; echo waiting; while true; do sleep 1; done"]
"#,
    );
    n.wait_running("slow-to-die");
    n.wait_logs(&["slow-to-die"], "waiting");
    let gone = || {
        let out = n
            .cluster
            .kubectl(&["get", "pod", "slow-to-die", "-o", "name"]);
        String::from_utf8_lossy(&out.stderr).contains("NotFound")
    };
    // The first delete takes the spec's 120 s; the kubelet starts stopping the container.
    n.cluster
        .ok(&["delete", "pod", "slow-to-die", "--wait=false"]);
    wait_event(
        &n,
        "slow-to-die",
        "Normal Killing: Stopping container c",
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(!gone(), "the container ignores SIGTERM");
    let second = Instant::now();
    n.cluster.ok(&[
        "delete",
        "pod",
        "slow-to-die",
        "--grace-period=1",
        "--wait=false",
    ]);
    assert_eq!(
        n.jsonpath("slow-to-die", "{.metadata.deletionGracePeriodSeconds}"),
        "1",
        "the API server shortens the grace period"
    );
    let took = wait_for(
        "slow-to-die gone after the second delete",
        Duration::from_secs(30),
        || gone().then(|| second.elapsed()),
    );
    assert!(
        took < Duration::from_secs(20),
        "killed with the 1 s grace period (at least 2 s to SIGKILL), yet it took {took:?}"
    );
}

/// A forced delete (grace period 0) removes the pod from the API at once, yet the kubelet still
/// sends SIGTERM and waits upstream's minimum of 2 s before SIGKILL, so the container's TERM
/// handler runs.
#[test]
fn a_forced_delete_still_sends_sigterm_first() {
    let n = Node::start("lc-forced");
    let marks = host_dir(&n, "marks");
    n.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: forced
spec:
  terminationGracePeriodSeconds: 60
  containers:
  - name: c
    image: busybox:latest
    command: ["sh", "-c", "trap 'echo got TERM > /marks/forced; exit 0' TERM; echo waiting; sleep 3600 & wait"]
    volumeMounts:
    - {{name: marks, mountPath: /marks}}
  volumes:
  - name: marks
    hostPath: {{path: {}}}
"#,
        marks.display()
    ));
    n.wait_running("forced");
    n.wait_logs(&["forced"], "waiting");
    n.cluster.ok(&[
        "delete",
        "pod",
        "forced",
        "--grace-period=0",
        "--force",
        "--wait=false",
    ]);
    let out = n.cluster.kubectl(&["get", "pod", "forced", "-o", "name"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"));
    wait_for(
        "the forced pod's TERM handler to run",
        Duration::from_secs(20),
        || (read(&marks.join("forced")) == "got TERM\n").then_some(()),
    );
}

/// Seconds since the epoch of an RFC 3339 time as the status shows it (`2024-05-01T10:00:00Z`).
fn epoch_seconds(t: &str) -> i64 {
    let num = |r: std::ops::Range<usize>| -> i64 {
        t.get(r)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a time: {t:?}"))
    };
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + num(11..13) * 3600 + num(14..16) * 60 + num(17..19)
}

/// CrashLoopBackOff is timed from when the container exited (upstream's doBackOff uses the
/// exited instance's finishedAt), not from when it was last started: a container that fails
/// after running 6 s is restarted at once the first time, and 10 s after its second exit.
#[test]
fn crash_loop_backoff_counts_from_the_exit() {
    let n = Node::start("lc-backoff");
    n.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: fails-late
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    command: ["sh", "-c", "sleep 6; exit 1"]
"#,
    );
    let path = "{.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].state.running.startedAt} {.status.containerStatuses[0].lastState.terminated.finishedAt}";
    let (started, finished) = wait_for(
        "fails-late running again after its second exit",
        Duration::from_secs(90),
        || {
            let s = n.jsonpath("fails-late", path);
            let f: Vec<&str> = s.split(' ').collect();
            let restarts: u32 = f.first()?.parse().ok()?;
            let (started, finished) = (*f.get(1)?, *f.get(2)?);
            (restarts >= 2 && !started.is_empty() && !finished.is_empty())
                .then(|| (epoch_seconds(started), epoch_seconds(finished)))
        },
    );
    assert!(
        started - finished >= 9,
        "restarted {}s after it exited; the back-off after the second exit is 10 s",
        started - finished
    );
    let ev = events(&n, "fails-late");
    assert!(
        ev.contains(
            "Warning BackOff: Back-off restarting failed container c in pod fails-late_default("
        ),
        "{ev}"
    );
}

/// Liveness and readiness wait for the startup probe; a startup probe that exhausts its
/// failureThreshold restarts the container.
#[test]
fn startup_probe_gates_other_probes_and_restarts() {
    let n = Node::start("lc-startup");
    let gates = host_dir(&n, "gates");
    n.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: slow-start
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    command: ["sleep", "3600"]
    startupProbe:
      exec: {{command: ["cat", "/gates/started"]}}
      periodSeconds: 1
      failureThreshold: 30
    livenessProbe:
      exec: {{command: ["cat", "/gates/started"]}}
      periodSeconds: 1
      failureThreshold: 1
    readinessProbe:
      exec: {{command: ["cat", "/gates/started"]}}
      periodSeconds: 1
    volumeMounts:
    - {{name: gates, mountPath: /gates}}
  volumes:
  - name: gates
    hostPath: {{path: {}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: never-starts
spec:
  terminationGracePeriodSeconds: 120
  containers:
  - name: c
    image: busybox:latest
    command: ["sleep", "3600"]
    startupProbe:
      exec: {{command: ["cat", "/tmp/never"]}}
      periodSeconds: 1
      failureThreshold: 3
      terminationGracePeriodSeconds: 1
    livenessProbe:
      exec: {{command: ["true"]}}
      periodSeconds: 1
"#,
        gates.display()
    ));
    n.wait_running("slow-start");
    // Until the startup probe succeeds the container is running but neither started nor
    // ready, and the liveness probe (which would fail, and restart it) does not run.
    wait_for(
        "three failed startup probes",
        Duration::from_secs(30),
        || (event_count(&n, "slow-start", "Startup probe failed") >= 3).then_some(()),
    );
    assert_eq!(
        n.jsonpath(
            "slow-start",
            "{.status.containerStatuses[0].started} {.status.containerStatuses[0].ready}"
        ),
        "false false"
    );
    assert_eq!(
        row(&n, "slow-start"),
        ("0/1".into(), "Running".into(), "0".into())
    );
    std::fs::write(gates.join("started"), "").unwrap();
    wait_for(
        "slow-start started and ready",
        Duration::from_secs(30),
        || {
            (n.jsonpath(
                "slow-start",
                "{.status.containerStatuses[0].started} {.status.containerStatuses[0].ready}",
            ) == "true true")
                .then_some(())
        },
    );
    assert_eq!(
        row(&n, "slow-start"),
        ("1/1".into(), "Running".into(), "0".into())
    );
    let ev = events(&n, "slow-start");
    assert!(
        ev.contains("Startup probe failed: cat: can't open '/gates/started'"),
        "{ev}"
    );
    assert!(!ev.contains("Liveness probe failed"), "{ev}");
    assert!(!ev.contains("Readiness probe failed"), "{ev}");

    // Killed with the probe's grace period (1 s, the SIGKILL comes 2 s after the SIGTERM that
    // `sleep` ignores), not the pod's 120 s.
    wait_for("never-starts RESTARTS 1", Duration::from_secs(40), || {
        (row(&n, "never-starts").2 != "0").then_some(())
    });
    let ev = events(&n, "never-starts");
    assert!(
        ev.contains("Warning Unhealthy: Startup probe failed: cat: can't open '/tmp/never'"),
        "{ev}"
    );
    assert!(
        ev.contains("Normal Killing: Container c failed startup probe, will be restarted"),
        "{ev}"
    );
    assert_eq!(
        n.jsonpath("never-starts", "{.status.containerStatuses[0].started}"),
        "false"
    );
    assert_eq!(
        restarts(
            &n,
            "slow-start",
            "{.status.containerStatuses[0].restartCount}"
        ),
        0
    );
}

/// hostPort through the CNI portmap plugin: the node's IP and 127.0.0.1 answer on the host
/// port; the plugin's rules for the pod are removed with it.
#[test]
fn host_port_answers_on_the_node_and_is_removed_with_the_pod() {
    // The plugin's shared chains (CNI-HOSTPORT-DNAT, -SETMARK, -MASQ and the jumps to them)
    // outlive the pods; if this test made them, it removes them again.
    let had_chains = iptables_nat().contains(":CNI-HOSTPORT-DNAT ");
    let n = Node::start("lc-hostport");
    let port = support::free_port();
    n.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hostport
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: nginx:1.16
    ports:
    - {{containerPort: 80, hostPort: {port}}}
"#
    ));
    n.wait_running("hostport");
    let node_ip = n.cluster.ok(&[
        "get",
        "node",
        "kaji-test-node",
        "-o",
        "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    assert!(!node_ip.is_empty());
    for host in [node_ip.as_str(), "127.0.0.1"] {
        let page = wait_for(
            &format!("{host}:{port} to answer"),
            Duration::from_secs(20),
            || http_get(&format!("{host}:{port}"), "/"),
        );
        assert!(page.contains("1.16"), "{host}:{port}: {page}");
    }
    let dport = format!("--dport {port} ");
    let dports = format!("--dports {port} ");
    let rules = iptables_nat();
    assert!(rules.contains(&dport) && rules.contains(&dports), "{rules}");
    n.cluster.ok(&["delete", "pod", "hostport", "--wait=true"]);
    assert!(http_get(&format!("127.0.0.1:{port}"), "/").is_none());
    let rules = iptables_nat();
    assert!(
        !rules.contains(&dport) && !rules.contains(&dports),
        "rules for port {port} left behind:\n{rules}"
    );
    if !had_chains {
        remove_portmap_chains();
    }
}

/// Removes portmap's shared chains when no pod uses them (no rule left in CNI-HOSTPORT-DNAT).
fn remove_portmap_chains() {
    if iptables_nat().contains("-A CNI-HOSTPORT-DNAT ") {
        return;
    }
    let iptables = |args: &[&str]| {
        let _ = Command::new("iptables")
            .args(["-w", "-t", "nat"])
            .args(args)
            .output();
    };
    let local = [
        "-m",
        "addrtype",
        "--dst-type",
        "LOCAL",
        "-j",
        "CNI-HOSTPORT-DNAT",
    ];
    iptables(&[&["-D", "PREROUTING"][..], &local].concat());
    iptables(&[&["-D", "OUTPUT"][..], &local].concat());
    iptables(&[
        "-D",
        "POSTROUTING",
        "-m",
        "comment",
        "--comment",
        "CNI portfwd requiring masquerade",
        "-j",
        "CNI-HOSTPORT-MASQ",
    ]);
    for chain in [
        "CNI-HOSTPORT-DNAT",
        "CNI-HOSTPORT-SETMARK",
        "CNI-HOSTPORT-MASQ",
    ] {
        iptables(&["-F", chain]);
        iptables(&["-X", chain]);
    }
    let rules = iptables_nat();
    assert!(
        !rules.contains("CNI-HOSTPORT"),
        "portmap chains left behind:\n{rules}"
    );
}

fn iptables_nat() -> String {
    let out = Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .expect("iptables-save");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Requests and limits become cgroup settings (cgroup v1 here: cpu shares and CFS quota,
/// memory limit), the QoS class follows upstream's rules, and a container that outgrows its
/// memory limit is OOMKilled.
#[test]
fn resources_become_cgroup_limits_qos_and_oom_kills() {
    let n = Node::start("lc-resources");
    let show = r#"["sh", "-c", "echo mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes) shares=$(cat /sys/fs/cgroup/cpu/cpu.shares) quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) period=$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); sleep 3600"]"#;
    n.apply(
        &r#"apiVersion: v1
kind: Pod
metadata:
  name: guaranteed
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    command: SHOW
    resources:
      limits: {cpu: 250m, memory: 64Mi}
---
apiVersion: v1
kind: Pod
metadata:
  name: burstable
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    command: SHOW
    resources:
      requests: {cpu: 100m, memory: 32Mi}
      limits: {memory: 128Mi}
---
apiVersion: v1
kind: Pod
metadata:
  name: besteffort
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    command: SHOW
---
apiVersion: v1
kind: Pod
metadata:
  name: oom
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    command: ["sh", "-c", "echo filling; head -c 200m /dev/zero | tail"]
    resources:
      limits: {memory: 32Mi}
"#
        .replace("SHOW", show),
    );
    for (pod, qos, want) in [
        (
            "guaranteed",
            "Guaranteed",
            "mem=67108864 shares=256 quota=25000 period=100000",
        ),
        (
            "burstable",
            "Burstable",
            "mem=134217728 shares=102 quota=-1 period=100000",
        ),
        (
            "besteffort",
            "BestEffort",
            "mem=9223372036854771712 shares=2 quota=-1 period=100000",
        ),
    ] {
        n.wait_running(pod);
        assert_eq!(n.jsonpath(pod, "{.status.qosClass}"), qos, "{pod}");
        let logs = n.wait_logs(&[pod], "mem=");
        assert_eq!(logs.trim(), want, "{pod}");
    }
    let reason = "{.status.containerStatuses[0].lastState.terminated.reason}";
    wait_for("oom OOMKilled", Duration::from_secs(60), || {
        (n.jsonpath("oom", reason) == "OOMKilled").then_some(())
    });
    assert_eq!(
        n.jsonpath(
            "oom",
            "{.status.containerStatuses[0].lastState.terminated.exitCode}"
        ),
        "137"
    );
    assert!(restarts(&n, "oom", "{.status.containerStatuses[0].restartCount}") >= 1);
    let describe = n.cluster.ok(&["describe", "pod", "oom"]);
    assert!(describe.contains("Reason:       OOMKilled"), "{describe}");
    // A memory limit alone (the request defaults to it) is Burstable: Guaranteed needs CPU too.
    assert_eq!(n.jsonpath("oom", "{.status.qosClass}"), "Burstable");
}
