//! End-to-end tests of the streaming subresources with real containers: `kubectl exec` (stdin,
//! tty and resize, `-c`, exit codes), `kubectl cp`, `kubectl attach` and `kubectl port-forward`
//! (pod/, deployment/ and svc/ targets), each with kubectl 1.27 (SPDY/3.1) and kubectl 1.33
//! (WebSockets: exec and attach over `v5.channel.k8s.io`, which the API server translates to
//! SPDY for the kubelet; port-forward's SPDY tunnel). kubectl 1.33 runs with `-v=6`, and its log
//! must show the WebSocket upgrade (101) and no fallback to SPDY.

mod support;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::node::Node;
use support::{KUBECTL_NEW, KUBECTL_OLD, free_port, tail, wait_for};

const WEB_POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    kubectl.kubernetes.io/default-container: httpd
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: nginx:1.16
  - name: sidecar
    image: busybox:latest
    command: ["sh", "-c", "echo sidecar > /tmp/who; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.3; done"]
"#;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn kubectl_cmd(n: &Node, kubectl: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(kubectl);
    cmd.arg("--kubeconfig")
        .arg(&n.cluster.kubeconfig)
        .args(args);
    cmd.env("HOME", n.cluster.data_dir())
        .env("KUBECACHEDIR", n.cluster.data_dir().join("cache"));
    cmd
}

/// Kills a background kubectl when the test ends, whatever happens.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET /` on 127.0.0.1:port, HTTP/1.0; the body when the answer is 200.
fn http_get(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then_some(())?;
    head.contains(" 200 ").then(|| body.to_string())
}

/// kubectl 1.33 logs its requests (`-v=6`) so that a test can see how it upgraded.
fn verbose(kubectl: &str) -> Option<&'static str> {
    (kubectl == KUBECTL_NEW).then_some("-v=6")
}

/// For kubectl 1.33: its log shows `sub` (exec, attach) upgraded to a `v5.channel.k8s.io`
/// WebSocket (101), and no fallback to SPDY.
fn assert_websocket(kubectl: &str, sub: &str, log: &str) {
    if kubectl != KUBECTL_NEW {
        return;
    }
    let upgraded = log
        .lines()
        .any(|l| l.contains(&format!("/{sub}?")) && l.contains("\"GET\"") && l.contains("101"));
    assert!(
        upgraded && log.contains("v5.channel.k8s.io") && !log.contains("fallback"),
        "{kubectl} {sub} did not stay on a v5 WebSocket:\n{log}"
    );
}

/// Runs a streaming kubectl command (`sub` is the subresource it uses), kubectl 1.33 with
/// `-v=6`, and checks how 1.33 upgraded.
fn streaming(
    n: &Node,
    kubectl: &str,
    sub: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> std::process::Output {
    let args: Vec<&str> = verbose(kubectl)
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    let out = n.cluster.kubectl_with(kubectl, &args, stdin);
    assert_websocket(kubectl, sub, &stderr(&out));
    out
}

/// [`streaming`] for a command that must succeed; its stdout.
fn streaming_ok(n: &Node, kubectl: &str, sub: &str, args: &[&str], stdin: Option<&str>) -> String {
    let out = streaming(n, kubectl, sub, args, stdin);
    assert!(
        out.status.success(),
        "{kubectl} {args:?} failed: {}\nserver log tail:\n{}",
        stderr(&out),
        tail(&n.cluster.log(), 30)
    );
    stdout(&out)
}

#[test]
fn exec_cp_and_attach_with_kubectl_1_27_and_1_33() {
    let n = Node::start("streaming-exec");
    n.apply(WEB_POD);
    n.wait_running("web");
    for kubectl in [KUBECTL_OLD, KUBECTL_NEW] {
        // The page, from the annotated default container.
        let page = streaming_ok(
            &n,
            kubectl,
            "exec",
            &["exec", "web", "--", "cat", "/www/index.html"],
            None,
        );
        assert!(page.contains("nginx 1.16"), "{kubectl}: {page}");
        // -c picks the other container.
        let who = streaming_ok(
            &n,
            kubectl,
            "exec",
            &["exec", "web", "-c", "sidecar", "--", "cat", "/tmp/who"],
            None,
        );
        assert_eq!(who, "sidecar\n", "{kubectl}");
        // stdin is piped through and its end (v5's close signal) reaches the command.
        let echoed = streaming_ok(
            &n,
            kubectl,
            "exec",
            &["exec", "-i", "web", "--", "sh", "-c", "cat; echo done"],
            Some("line one\nline two\n"),
        );
        assert_eq!(echoed, "line one\nline two\ndone\n", "{kubectl}");
        // stderr stays apart from stdout (the marker is computed: the URL in 1.33's log names
        // the command, not its output).
        let out = streaming(
            &n,
            kubectl,
            "exec",
            &[
                "exec",
                "web",
                "--",
                "sh",
                "-c",
                "echo out; echo err-$((6*7)) >&2",
            ],
            None,
        );
        assert!(out.status.success(), "{kubectl}: {}", stderr(&out));
        assert_eq!(stdout(&out), "out\n", "{kubectl}");
        assert!(
            stderr(&out).contains("err-42"),
            "{kubectl}: {}",
            stderr(&out)
        );
        // The exit code comes back.
        let out = streaming(
            &n,
            kubectl,
            "exec",
            &["exec", "web", "--", "sh", "-c", "exit 3"],
            None,
        );
        assert_eq!(out.status.code(), Some(3), "{kubectl}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("command terminated with exit code 3"),
            "{kubectl}: {}",
            stderr(&out)
        );
        // A container that does not exist is named in the error (the API server refuses the
        // upgrade, so kubectl 1.33 tries SPDY too).
        let out =
            n.cluster
                .kubectl_with(kubectl, &["exec", "web", "-c", "nope", "--", "true"], None);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("container nope is not valid for pod web"),
            "{kubectl}: {}",
            stderr(&out)
        );
        // kubectl cp in and out (tar through exec).
        let local = n.cluster.data_dir().join("cp-src.txt");
        let content = format!("copied by {kubectl}\n");
        std::fs::write(&local, &content).expect("writing the local file");
        let local_s = local.to_string_lossy().into_owned();
        streaming_ok(
            &n,
            kubectl,
            "exec",
            &["cp", &local_s, "web:/tmp/cp.txt"],
            None,
        );
        let inside = streaming_ok(
            &n,
            kubectl,
            "exec",
            &["exec", "web", "--", "cat", "/tmp/cp.txt"],
            None,
        );
        assert_eq!(inside, content, "{kubectl}");
        let back = n.cluster.data_dir().join("cp-back.txt");
        let back_s = back.to_string_lossy().into_owned();
        streaming_ok(
            &n,
            kubectl,
            "exec",
            &["cp", "web:/tmp/cp.txt", &back_s],
            None,
        );
        assert_eq!(
            std::fs::read_to_string(&back).ok().as_deref(),
            Some(content.as_str()),
            "{kubectl}"
        );
        let _ = std::fs::remove_file(&back);
        // kubectl attach streams the running container's output.
        let args: Vec<&str> = verbose(kubectl)
            .into_iter()
            .chain(["attach", "web", "-c", "sidecar"])
            .collect();
        let mut attach = Background(
            kubectl_cmd(&n, kubectl, &args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("kubectl attach"),
        );
        let mut attached = attach.0.stdout.take().expect("stdout");
        let mut attach_log = attach.0.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut seen = String::new();
            while let Ok(k) = attached.read(&mut buf) {
                if k == 0 {
                    break;
                }
                seen.push_str(&String::from_utf8_lossy(&buf[..k]));
                if seen.matches("tick").count() >= 3 {
                    let _ = tx.send(seen.clone());
                    break;
                }
            }
        });
        let seen = rx.recv_timeout(Duration::from_secs(20));
        drop(attach);
        assert!(seen.is_ok(), "{kubectl}: attach showed no ticks");
        let mut log = String::new();
        let _ = attach_log.read_to_string(&mut log);
        assert_websocket(kubectl, "attach", &log);
    }
}

/// `kubectl exec -it` under a pseudo-terminal (util-linux `script`): the shell sees a tty of
/// the terminal's size (kubectl sends it on the resize stream, which the runtime applies once
/// the command runs: hence the pause before asking).
#[test]
fn exec_with_a_tty() {
    let n = Node::start("streaming-tty");
    n.apply(WEB_POD);
    n.wait_running("web");
    for kubectl in [KUBECTL_OLD, KUBECTL_NEW] {
        let line = format!(
            "stty rows 33 cols 91; {kubectl} {} --kubeconfig {} exec -it web -c sidecar -- sh -c 'test -t 0 && echo IS-A-TTY; sleep 1; stty size; exit 4'",
            verbose(kubectl).unwrap_or_default(),
            n.cluster.kubeconfig.display()
        );
        let out = Command::new("script")
            .args(["-q", "-e", "-c", &line, "/dev/null"])
            .env("HOME", n.cluster.data_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|c| c.wait_with_output())
            .expect("script(1) from util-linux");
        let text = stdout(&out);
        assert!(
            text.contains("IS-A-TTY"),
            "{kubectl}: {text}{}",
            stderr(&out)
        );
        assert!(text.contains("33 91"), "{kubectl}: no resize: {text}");
        assert_eq!(out.status.code(), Some(4), "{kubectl}: {text}");
        // The pseudo-terminal carries kubectl's log too.
        assert_websocket(kubectl, "exec", &text);
    }
}

/// Starts `kubectl port-forward TARGET PORT:REMOTE` and waits until a GET through it answers;
/// returns the page and kubectl's log (`-v=6`).
fn forward_and_get(n: &Node, kubectl: &str, target: &str, remote: &str) -> (String, String) {
    let port = free_port();
    let mapping = format!("{port}:{remote}");
    let log_path = n
        .cluster
        .data_dir()
        .join(format!("port-forward-{port}.log"));
    let log = std::fs::File::create(&log_path).expect("log file");
    let pf = Background(
        kubectl_cmd(n, kubectl, &["port-forward", "-v=6", target, &mapping])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kubectl port-forward"),
    );
    let started = Instant::now();
    let body = wait_for(
        &format!("{kubectl} port-forward {target} to serve on {port}"),
        Duration::from_secs(30),
        || http_get(port),
    );
    eprintln!(
        "{kubectl} port-forward {target}: answered after {:?}",
        started.elapsed()
    );
    // A second connection over the same forward works too.
    let again = http_get(port);
    assert_eq!(again.as_deref(), Some(body.as_str()), "{kubectl} {target}");
    drop(pf);
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    (body, log)
}

#[test]
fn port_forward_to_pod_deployment_and_service() {
    let n = Node::start("streaming-pf");
    n.apply(WEB_POD);
    n.apply(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: site
spec:
  replicas: 1
  selector:
    matchLabels: {app: site}
  template:
    metadata:
      labels: {app: site}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: nginx:1.15
        ports:
        - {name: http, containerPort: 80}
---
apiVersion: v1
kind: Service
metadata:
  name: site
spec:
  selector: {app: site}
  ports:
  - {name: web, port: 8080, targetPort: http}
"#,
    );
    n.wait_running("web");
    wait_for(
        "the deployment's pod Running",
        Duration::from_secs(60),
        || {
            let out = n.cluster.kubectl(&[
                "get",
                "pods",
                "-l",
                "app=site",
                "-o",
                "jsonpath={.items[*].status.phase}",
            ]);
            (stdout(&out) == "Running").then_some(())
        },
    );
    for kubectl in [KUBECTL_OLD, KUBECTL_NEW] {
        // The service port maps to the pod's named container port.
        for (target, remote, want) in [
            ("pod/web", "80", "nginx 1.16"),
            ("deployment/site", "80", "nginx 1.15"),
            ("svc/site", "8080", "nginx 1.15"),
        ] {
            let (page, log) = forward_and_get(&n, kubectl, target, remote);
            assert!(page.contains(want), "{kubectl} {target}: {page}");
            // kubectl 1.33 tunnels SPDY through a WebSocket, with no fallback.
            if kubectl == KUBECTL_NEW {
                let websocket = log.lines().any(|l| {
                    l.contains("/portforward") && l.contains("\"GET\"") && l.contains("101")
                });
                assert!(
                    websocket && !log.contains("fallback"),
                    "{kubectl} {target} fell back to SPDY:\n{log}"
                );
            }
        }
    }
    n.cluster
        .ok(&["delete", "deployment", "site", "--wait=false"]);
    n.cluster.ok(&["delete", "service", "site"]);
}

#[test]
fn run_rm_ti_attaches_and_cleans_up() {
    let n = Node::start("streaming-run");
    for (i, kubectl) in [KUBECTL_OLD, KUBECTL_NEW].into_iter().enumerate() {
        let pod = format!("tmp{i}");
        let line = format!(
            "{kubectl} {} --kubeconfig {} run {pod} --image=busybox:latest --restart=Never --rm -ti -- sh -c 'sleep 1; test -t 0 && echo IS-A-TTY; read -r line; echo got-$line'",
            verbose(kubectl).unwrap_or_default(),
            n.cluster.kubeconfig.display()
        );
        let mut child = Command::new("script")
            .args(["-q", "-e", "-c", &line, "/dev/null"])
            .env("HOME", n.cluster.data_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script(1) from util-linux");
        // Typed once the shell in the container waits for it.
        let mut stdin = child.stdin.take().expect("stdin");
        wait_for(&format!("{kubectl}: pod {pod} running"), Duration::from_secs(60), || {
            (n.jsonpath(&pod, "{.status.phase}") == "Running").then_some(())
        });
        stdin.write_all(b"hello\r").expect("typing");
        let out = child.wait_with_output().expect("kubectl run");
        let text = stdout(&out);
        assert!(text.contains("IS-A-TTY"), "{kubectl}: {text}{}", stderr(&out));
        assert!(text.contains("got-hello"), "{kubectl}: {text}");
        assert!(text.contains(&format!("pod \"{pod}\" deleted")), "{kubectl}: {text}");
        assert!(out.status.success(), "{kubectl}: {text}");
        assert_websocket(kubectl, "attach", &text);
        let gone = n.cluster.kubectl(&["get", "pod", &pod]);
        assert!(!gone.status.success(), "{kubectl}: the pod is still there");
    }
}
