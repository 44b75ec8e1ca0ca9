//! End-to-end tests of the node agent itself, with real containers: a restarted agent adopts the
//! containers that kept running, and container logs are rotated (`--container-log-max-size`,
//! `--container-log-max-files`) without `kubectl logs -f` losing a line.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::node::Node;
use support::{KUBECTL_NEW, wait_for};

fn node_ready(n: &Node) -> bool {
    n.jsonpath_of(
        &["node", "kaji-test-node"],
        "{.status.conditions[?(@.type==\"Ready\")].status}",
    ) == "True"
}

trait JsonpathOf {
    fn jsonpath_of(&self, what: &[&str], path: &str) -> String;
}

impl JsonpathOf for Node {
    fn jsonpath_of(&self, what: &[&str], path: &str) -> String {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        let jp = format!("jsonpath={path}");
        args.extend(["-o", jp.as_str()]);
        String::from_utf8_lossy(&self.cluster.kubectl(&args).stdout).into_owned()
    }
}

/// `GET /` on port 80 of `ip`, HTTP/1.0; the body when the answer is 200.
fn http_get(ip: &str) -> Option<String> {
    let addr: std::net::SocketAddr = format!("{ip}:80").parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.contains(" 200 ").then(|| body.to_string())
}

#[test]
fn a_restarted_agent_adopts_running_containers() {
    let mut n = Node::start("agent-restart");
    n.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: nginx:1.16
"#,
    );
    let ip = n.wait_running("web");
    let page = wait_for("the page from the pod", Duration::from_secs(30), || http_get(&ip));
    assert!(page.contains("nginx 1.16"), "{page}");
    let before = n.jsonpath(
        "web",
        "{.status.containerStatuses[0].containerID} {.status.containerStatuses[0].state.running.startedAt}",
    );
    assert!(before.starts_with("containerd://"), "{before}");

    // A crash of the whole `kaji server` (SIGKILL: no clean-up runs), then a new one on the same
    // data dir. Its managed containerd replaces the one left behind; the shims and the container
    // kept running all along.
    n.cluster.kill();
    assert!(
        http_get(&ip).is_some_and(|p| p.contains("nginx 1.16")),
        "the container serves while no agent runs"
    );
    n.cluster.spawn();
    wait_for("the node Ready again", Duration::from_secs(60), || node_ready(&n).then_some(()));
    // The new agent runs new pods (so its pod workers, the old pod's included, have synced)...
    n.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: after
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: nginx:1.16
"#,
    );
    n.wait_running("after");
    // ...and reports the old pod's container as it was: same ID, same start, no restart.
    wait_for("the pod's status after the restart", Duration::from_secs(30), || {
        let s = n.jsonpath(
            "web",
            "{.status.phase} {.status.containerStatuses[0].ready} {.status.containerStatuses[0].restartCount}",
        );
        (s == "Running true 0").then_some(())
    });
    let after = n.jsonpath(
        "web",
        "{.status.containerStatuses[0].containerID} {.status.containerStatuses[0].state.running.startedAt}",
    );
    assert_eq!(after, before, "the container was replaced");
    assert_eq!(n.jsonpath("web", "{.status.podIP}"), ip);
    assert!(http_get(&ip).is_some_and(|p| p.contains("nginx 1.16")));
    // And it still manages it: logs through the new kubelet, and deletion stops the container.
    n.cluster.ok(&["logs", "web"]);
    n.cluster.ok(&["delete", "pod", "web", "--wait=true", "--timeout=60s"]);
    assert!(http_get(&ip).is_none(), "the deleted pod still answers");
}

/// `<data-dir>/agent/pods/<ns>_<pod>_<uid>/<container>/`: the container's CRI log files.
fn log_files(n: &Node, pod: &str, container: &str) -> Vec<String> {
    let uid = n.jsonpath(pod, "{.metadata.uid}");
    let dir: PathBuf = n
        .cluster
        .data_dir()
        .join(format!("agent/pods/default_{pod}_{uid}/{container}"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn line_number(line: &str) -> Option<u64> {
    line.strip_prefix("line ")?.split(' ').next()?.parse().ok()
}

#[test]
fn container_logs_rotate_and_follow_carries_on() {
    let n = Node::start_with(
        "log-rotation",
        &["--container-log-max-size", "16Ki", "--container-log-max-files", "3"],
    );
    // About 100 lines of 100 bytes a second: the 10 s rotation check finds 16Ki exceeded.
    n.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: chatty
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: logger
    image: busybox:latest
    command: ["sh", "-c", "i=0; while true; do echo \"line $i ..........................................................................\"; i=$((i+1)); sleep 0.01; done"]
"#,
    );
    n.wait_running("chatty");
    n.wait_logs(&["chatty"], "line 0 ");

    // Follow from the start, across the rotations.
    let mut follow = Command::new(KUBECTL_NEW)
        .arg("--kubeconfig")
        .arg(&n.cluster.kubeconfig)
        .args(["logs", "-f", "chatty"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl logs -f");
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let seen = seen.clone();
        let out = follow.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                seen.lock().unwrap().push(line);
            }
        })
    };

    // Two rotations: at most 3 files (the live 0.log and two rotated ones) at any time.
    let mut most = 0;
    wait_for("two rotations of the log", Duration::from_secs(60), || {
        let files = log_files(&n, "chatty", "logger");
        most = most.max(files.len());
        let rotated = files.iter().filter(|f| f.starts_with("0.log.")).count();
        (rotated >= 2).then_some(())
    });
    // A third one removes the oldest rotated file, to keep 3.
    let oldest = log_files(&n, "chatty", "logger")
        .into_iter()
        .find(|f| f.starts_with("0.log."))
        .expect("a rotated file");
    wait_for("the oldest rotated file removed", Duration::from_secs(30), || {
        let files = log_files(&n, "chatty", "logger");
        most = most.max(files.len());
        (!files.contains(&oldest)).then_some(())
    });
    assert!(most <= 3, "more than 3 log files at once ({most})");
    assert!(log_files(&n, "chatty", "logger").contains(&"0.log".to_string()));

    // `kubectl logs` reads the live file: the first lines are gone from it. (Right after a
    // rotation the new file can still be empty.)
    let (now, first) = wait_for("a numbered line in the live log", Duration::from_secs(30), || {
        let now = n.logs(&["chatty"]);
        let first = now.lines().next().and_then(line_number)?;
        Some((now, first))
    });
    assert!(first > 0, "the live log still starts at line 0");
    // The follower saw every line, in order, across the rotations.
    let upto = now.lines().filter_map(line_number).next_back().expect("lines");
    wait_for("the follower to catch up", Duration::from_secs(30), || {
        let seen = seen.lock().unwrap();
        (seen.iter().filter_map(|l| line_number(l)).next_back()? >= upto).then_some(())
    });
    let _ = follow.kill();
    let _ = follow.wait();
    let _ = reader.join();
    let numbers: Vec<u64> = seen.lock().unwrap().iter().filter_map(|l| line_number(l)).collect();
    assert_eq!(numbers.first(), Some(&0));
    let gaps: Vec<(u64, u64)> = numbers
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect();
    assert!(gaps.is_empty(), "kubectl logs -f lost or repeated lines across rotations: {gaps:?}");
    assert!(*numbers.last().unwrap() >= upto);
}

/// A docker-registry with basic auth (user `kaji`), on its own port and storage; stopped on drop.
struct PrivateRegistry {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// bcrypt of "kaji-pull-secret" (docker-registry's htpasswd accepts only bcrypt).
const HTPASSWD: &str = "kaji:$2a$06$SEUNM7ja.IRhOzPCoqSkUegvZOomvNciE2iSWgyFuatYBv8M2AdfG\n";
const PASSWORD: &str = "kaji-pull-secret";

impl PrivateRegistry {
    fn start() -> PrivateRegistry {
        let dir = tempfile::Builder::new().prefix("kaji-private-registry-").tempdir().expect("tempdir");
        let port = support::free_port();
        std::fs::write(dir.path().join("htpasswd"), HTPASSWD).expect("htpasswd");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: kaji-test\n    path: {root}/htpasswd\n",
            root = dir.path().display()
        );
        std::fs::write(dir.path().join("config.yml"), config).expect("registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting docker-registry");
        let r = PrivateRegistry { child, port, _dir: dir };
        wait_for("the private registry to listen", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
        r
    }
}

impl Drop for PrivateRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn image_pull_secrets_authenticate_to_a_private_registry() {
    let registry = PrivateRegistry::start();
    let host = format!("127.0.0.1:{}", registry.port);
    // A test image, copied in with the credentials.
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .args(["--dest-creds", &format!("kaji:{PASSWORD}")])
        .arg("docker://127.0.0.1:5000/library/nginx:1.16")
        .arg(format!("docker://{host}/private/web:1"))
        .output()
        .expect("skopeo");
    assert!(out.status.success(), "pushing to the private registry: {}", String::from_utf8_lossy(&out.stderr));

    // The test images' registries.yaml, plus plain HTTP for the private registry.
    let dir = tempfile::tempdir().expect("tempdir");
    let registries = dir.path().join("registries.yaml");
    let mut yaml = std::fs::read_to_string(Node::test_registries()).expect("test registries.yaml");
    yaml.push_str(&format!("  \"{host}\":\n    endpoint:\n      - \"http://{host}\"\n"));
    std::fs::write(&registries, yaml).expect("registries.yaml");
    let n = Node::start_with("pull-secrets", &["--registries", registries.to_str().expect("utf-8 path")]);

    // Without credentials: the registry's answer, and back-off.
    n.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: anonymous\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: web\n    image: {host}/private/web:1\n"
    ));
    let reason = wait_for("the anonymous pull to fail", Duration::from_secs(60), || {
        let r = n.jsonpath("anonymous", "{.status.containerStatuses[0].state.waiting.reason}");
        (r == "ErrImagePull" || r == "ImagePullBackOff").then_some(r)
    });
    let described = n.cluster.ok(&["describe", "pod", "anonymous"]);
    assert!(
        described.contains("401 Unauthorized") || described.to_lowercase().contains("unauthorized"),
        "{reason}: the registry's refusal is not in describe:\n{described}"
    );

    // With a docker-registry secret, as `kubectl create secret docker-registry` makes it.
    n.cluster.ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={host}"),
        "--docker-username=kaji",
        &format!("--docker-password={PASSWORD}"),
    ]);
    n.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: private\nspec:\n  terminationGracePeriodSeconds: 1\n  imagePullSecrets:\n  - name: regcred\n  containers:\n  - name: web\n    image: {host}/private/web:1\n"
    ));
    let ip = n.wait_running("private");
    let page = wait_for("the page from the private image", Duration::from_secs(30), || http_get(&ip));
    assert!(page.contains("nginx 1.16"), "{page}");
    // A wrong password is refused too.
    n.cluster.ok(&[
        "create",
        "secret",
        "docker-registry",
        "wrongcred",
        &format!("--docker-server={host}"),
        "--docker-username=kaji",
        "--docker-password=nope",
    ]);
    n.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: wrong\nspec:\n  terminationGracePeriodSeconds: 1\n  imagePullSecrets:\n  - name: wrongcred\n  containers:\n  - name: web\n    image: {host}/private/web:2\n"
    ));
    wait_for("the pull with a wrong password to fail", Duration::from_secs(60), || {
        let r = n.jsonpath("wrong", "{.status.containerStatuses[0].state.waiting.reason}");
        (r == "ErrImagePull" || r == "ImagePullBackOff").then_some(())
    });
    drop(n);
    drop(registry);
}

/// Python's TLS client (the test machine has python3 for the client-library tests): GETs `path`
/// from the kubelet, verifying its certificate against the cluster CA for `ip`, with or without
/// a client certificate. Prints the HTTP status, or `TLS <error>`.
const KUBELET_GET: &str = r#"
import socket, ssl, sys
ip, port, ca, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
if len(sys.argv) > 5:
    ctx.load_cert_chain(sys.argv[5], sys.argv[6])
try:
    with socket.create_connection((ip, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=ip) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    print(data.split(b"\r\n", 1)[0].decode().split(" ")[1])
except (ssl.SSLError, ConnectionError) as e:
    print("TLS", e)
"#;

#[test]
fn the_kubelet_port_answers_only_the_cluster_ca_clients() {
    let n = Node::start("kubelet-authn");
    n.apply(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: talker\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox:latest\n    command: [\"sh\", \"-c\", \"echo hello from talker; sleep 3600\"]\n",
    );
    n.wait_running("talker");
    let ip = n.jsonpath_of(&["node", "kaji-test-node"], "{.status.addresses[?(@.type==\"InternalIP\")].address}");
    let port = n.jsonpath_of(&["node", "kaji-test-node"], "{.status.daemonEndpoints.kubeletEndpoint.Port}");
    let tls = n.cluster.data_dir().join("server/tls");
    let ca = tls.join("ca.crt");
    let get = |client: Option<(&str, &str)>| {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", KUBELET_GET, &ip, &port]).arg(&ca).arg("/containerLogs/default/talker/c");
        if let Some((cert, key)) = client {
            cmd.arg(tls.join(cert)).arg(tls.join(key));
        }
        let out = cmd.output().expect("python3");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // The kubelet's certificate is the cluster CA's, for the node's address (verified above); a
    // client without a certificate is refused, one with the API server's is served.
    assert_eq!(get(None), "401");
    assert_eq!(get(Some(("client-kube-apiserver-kubelet.crt", "client-kube-apiserver-kubelet.key"))), "200");
    // A certificate from another CA does not get through the handshake.
    let other = tempfile::tempdir().expect("tempdir");
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/O=system:masters/CN=intruder"])
        .arg("-keyout")
        .arg(other.path().join("k.pem"))
        .arg("-out")
        .arg(other.path().join("c.pem"))
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let out = Command::new("python3")
        .args(["-c", KUBELET_GET, &ip, &port])
        .arg(&ca)
        .arg("/containerLogs/default/talker/c")
        .arg(other.path().join("c.pem"))
        .arg(other.path().join("k.pem"))
        .output()
        .expect("python3");
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(answer.starts_with("TLS"), "a foreign client certificate was accepted: {answer}");
    // Through the API server, as kubectl goes, the logs are there.
    assert_eq!(n.logs(&["talker"]), "hello from talker\n");
}
