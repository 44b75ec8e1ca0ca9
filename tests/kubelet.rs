//! End-to-end tests of the real node agent: `kaji server` with its in-process kubelet and a
//! managed containerd, running real containers from the test images (scripts/test-images.sh:
//! busybox-based stand-ins pushed to 127.0.0.1:5000 and mirrored for docker.io). Stock kubectl.
//!
//! Each test's node has its own bridge and pod network (tests/support/node.rs), so the tests run
//! side by side; they delete their pods and call the containerd cleanup.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::node::Node;
use support::wait_for;

fn seed(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/seeds")
            .join(name),
    )
    .expect("seed manifest")
}

#[test]
fn seed_nginx_pod_serves_pods_talk_and_logs_stream() {
    let n = Node::start("kubelet-nginx");
    let started = std::time::Instant::now();
    n.apply(&seed("000-nginx-pod.yaml").replace("nginx:latest", "nginx:1.15"));
    let ip = n.wait_running("my-first-pod");
    eprintln!(
        "my-first-pod Running with IP {ip} after {:?} (image pulled from the local registry)",
        started.elapsed()
    );
    // Another pod reaches it over the pod network.
    n.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: client\nspec:\n  restartPolicy: Never\n  containers:\n  - name: wget\n    image: busybox:latest\n    command: [\"wget\", \"-qO-\", \"http://{ip}/\"]\n"
    ));
    n.wait_phase("client", "Succeeded");
    assert!(
        n.logs(&["client"]).contains("1.15"),
        "the page names nginx 1.15: {}",
        n.logs(&["client"])
    );
    // Two containers of one pod share the network namespace.
    n.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: two
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: nginx:1.16
  - name: client
    image: busybox:latest
    command: ["sh", "-c", "until wget -qO- http://localhost/; do sleep 0.2; done; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.3; done"]
"#,
    );
    n.wait_running("two");
    n.wait_logs(&["two", "-c", "client"], "1.16");
    // kubectl picks a default container itself; the API asks for one, as upstream.
    let err = n
        .cluster
        .fails(&["get", "--raw", "/api/v1/namespaces/default/pods/two/log"]);
    assert!(err.contains("a container name must be specified"), "{err}");
    // --tail and --timestamps, then -f streams new lines.
    let tail = n.wait_logs(
        &["two", "-c", "client", "--tail", "2", "--timestamps"],
        "tick",
    );
    assert_eq!(tail.lines().count(), 2, "{tail}");
    assert!(
        tail.lines().all(|l| l
            .split(' ')
            .next()
            .is_some_and(|t| t.ends_with('Z') && t.contains('T'))),
        "{tail}"
    );
    let mut follow = Command::new(support::KUBECTL_NEW)
        .arg("--kubeconfig")
        .arg(&n.cluster.kubeconfig)
        .args(["logs", "-f", "two", "-c", "client", "--tail", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");
    std::thread::sleep(Duration::from_secs(2));
    let _ = follow.kill();
    let out = follow.wait_with_output().expect("output");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("tick"))
        .count();
    assert!(
        lines >= 3,
        "logs -f streamed {lines} lines in 2 s: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn configuration_env_and_volumes() {
    let n = Node::start("kubelet-config");
    let host_dir = n.cluster.data_dir().join("hostpath-test/sub");
    n.apply(
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
data:
  greeting: hello
  nginx.conf: "server {}"
  bad-key!: skipped
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  password: s3cret
"#,
    );
    let manifest = r#"apiVersion: v1
kind: Pod
metadata:
  name: cfg-pod
  labels:
    app: demo
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:latest
    command: ["sh", "-c", "env | sort; echo FILE=$(cat /config/renamed.conf); echo SECRET=$(cat /secret/password); while true; do echo CUR=$(cat /secret/password); cat /shared/from-writer 2>/dev/null; sleep 0.5; done"]
    env:
    - name: GREETING
      valueFrom: {configMapKeyRef: {name: cfg, key: greeting}}
    - name: PASSWORD
      valueFrom: {secretKeyRef: {name: creds, key: password}}
    - name: MY_POD
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: MY_NODE
      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
    - name: MY_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    - name: COMPOSED
      value: "$(GREETING)-world"
    envFrom:
    - prefix: CM_
      configMapRef: {name: cfg}
    volumeMounts:
    - {name: config, mountPath: /config}
    - {name: secret, mountPath: /secret}
    - {name: shared, mountPath: /shared}
  - name: writer
    image: busybox:latest
    command: ["sh", "-c", "echo written-by-writer > /data/from-writer; echo hostpath > /host/marker; sleep 3600"]
    volumeMounts:
    - {name: shared, mountPath: /data}
    - {name: host, mountPath: /host}
  volumes:
  - name: config
    configMap:
      name: cfg
      items:
      - {key: nginx.conf, path: renamed.conf}
  - name: secret
    secret: {secretName: creds}
  - name: shared
    emptyDir: {}
  - name: host
    hostPath: {path: HOSTDIR, type: DirectoryOrCreate}
"#
    .replace("HOSTDIR", &host_dir.to_string_lossy());
    n.apply(&manifest);
    let ip = n.wait_running("cfg-pod");
    let logs = n.wait_logs(&["cfg-pod", "-c", "main"], "written-by-writer");
    for want in [
        "GREETING=hello",
        "PASSWORD=s3cret",
        "MY_POD=cfg-pod",
        "MY_NODE=kaji-test-node",
        &format!("MY_IP={ip}"),
        "COMPOSED=hello-world",
        "CM_greeting=hello",
        "FILE=server {}",
        "SECRET=s3cret",
        "KUBERNETES_SERVICE_HOST=",
    ] {
        assert!(logs.contains(want), "missing {want:?} in:\n{logs}");
    }
    assert!(
        !logs.contains("bad-key"),
        "an invalid env name was passed: {logs}"
    );
    assert_eq!(
        std::fs::read_to_string(host_dir.join("marker"))
            .ok()
            .as_deref(),
        Some("hostpath\n"),
        "hostPath DirectoryOrCreate"
    );
    // ConfigMap and Secret volumes are read-only in the container (as upstream since
    // CVE-2017-1002102); the emptyDir is not.
    for dir in ["/config", "/secret"] {
        let out = n.cluster.kubectl(&[
            "exec",
            "cfg-pod",
            "-c",
            "main",
            "--",
            "sh",
            "-c",
            &format!("echo x > {dir}/x"),
        ]);
        assert!(!out.status.success(), "{dir} is writable");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Read-only file system"), "{dir}: {err}");
    }
    n.cluster.ok(&[
        "exec",
        "cfg-pod",
        "-c",
        "main",
        "--",
        "sh",
        "-c",
        "echo x > /shared/x",
    ]);
    let events = n.cluster.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=cfg-pod",
    ]);
    assert!(
        events.contains("InvalidEnvironmentVariableNames"),
        "{events}"
    );
    // A changed Secret reaches the mounted file within the resync period.
    n.cluster.ok(&[
        "patch",
        "secret",
        "creds",
        "-p",
        r#"{"stringData":{"password":"changed"}}"#,
    ]);
    n.wait_logs(&["cfg-pod", "-c", "main", "--tail", "5"], "CUR=changed");
    // A missing ConfigMap is CreateContainerConfigError, and the agent carries on.
    n.apply(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: no-cm\nspec:\n  containers:\n  - name: c\n    image: busybox:latest\n    command: [\"sleep\", \"3600\"]\n    env:\n    - name: X\n      valueFrom: {configMapKeyRef: {name: missing, key: k}}\n",
    );
    wait_for(
        "CreateContainerConfigError",
        Duration::from_secs(30),
        || {
            n.cluster
                .ok(&["get", "pod", "no-cm"])
                .contains("CreateContainerConfigError")
                .then_some(())
        },
    );
}

#[test]
fn probes_restart_and_gate_readiness() {
    let n = Node::start("kubelet-probes");
    n.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: liveness
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    command: ["sh", "-c", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 3600"]
    livenessProbe:
      exec: {command: ["cat", "/tmp/healthy"]}
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: readiness
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: nginx:1.15
    readinessProbe:
      httpGet: {path: /missing, port: 80}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: ready-ok
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: nginx:1.15
    readinessProbe:
      tcpSocket: {port: 80}
      periodSeconds: 1
"#,
    );
    wait_for(
        "liveness RESTARTS to increment",
        Duration::from_secs(60),
        || {
            let restarts: u32 = n
                .jsonpath("liveness", "{.status.containerStatuses[0].restartCount}")
                .parse()
                .unwrap_or(0);
            (restarts >= 1).then_some(())
        },
    );
    let events = n.cluster.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=liveness",
    ]);
    assert!(events.contains("Liveness probe failed"), "{events}");
    n.wait_running("readiness");
    wait_for("ready-ok READY 1/1", Duration::from_secs(30), || {
        n.cluster
            .ok(&["get", "pod", "ready-ok"])
            .contains("1/1")
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let row = n.cluster.ok(&["get", "pod", "readiness"]);
    assert!(row.contains("0/1") && row.contains("Running"), "{row}");
}

/// `openssl s_server -www` on 127.0.0.1 with a self-signed certificate, for HTTPS probes; killed
/// on drop.
struct TlsServer {
    child: std::process::Child,
    port: u16,
}

impl TlsServer {
    fn start(dir: &Path) -> TlsServer {
        std::fs::create_dir_all(dir).expect("tls dir");
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args([
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                "/CN=self-signed.invalid",
            ])
            .args(["-days", "1", "-keyout", "key.pem", "-out", "cert.pem"])
            .current_dir(dir)
            .output()
            .expect("running openssl (.ci/install-deps installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = dir.join("s_server.log");
        let child = Command::new("openssl")
            .args([
                "s_server",
                "-accept",
                "127.0.0.1:0",
                "-www",
                "-cert",
                "cert.pem",
                "-key",
                "key.pem",
            ])
            .current_dir(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let mut server = TlsServer { child, port: 0 };
        server.port = wait_for(
            "openssl s_server to listen",
            Duration::from_secs(10),
            || {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                text.lines()
                    .find_map(|l| l.strip_prefix("ACCEPT 127.0.0.1:"))
                    .and_then(|p| p.trim().parse().ok())
            },
        );
        server
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// httpGet probes and hooks with `scheme: HTTPS` speak TLS and, as upstream's prober
/// (InsecureSkipVerify), accept a certificate no CA signed: a TLS server on the node (reached
/// with the handler's `host:`) makes the pod ready and its postStart hook succeed.
#[test]
fn https_probes_and_hooks_skip_certificate_verification() {
    let n = Node::start("kubelet-https");
    let tls = TlsServer::start(&n.cluster.data_dir().join("tls"));
    let port = tls.port;
    n.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: https-probed
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    command: ["sleep", "3600"]
    lifecycle:
      postStart:
        httpGet: {{scheme: HTTPS, host: 127.0.0.1, port: {port}, path: /hook}}
    readinessProbe:
      httpGet: {{scheme: HTTPS, host: 127.0.0.1, port: {port}, path: /ready}}
      periodSeconds: 1
"#
    ));
    wait_for("https-probed READY 1/1", Duration::from_secs(60), || {
        n.cluster
            .ok(&["get", "pod", "https-probed", "--no-headers"])
            .contains("1/1")
            .then_some(())
    });
    let events = n.cluster.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=https-probed",
    ]);
    assert!(!events.contains("FailedPostStartHook"), "{events}");
    assert!(!events.contains("Readiness probe failed"), "{events}");
    assert_eq!(
        n.jsonpath(
            "https-probed",
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );
}

#[test]
fn missing_image_backs_off() {
    let n = Node::start("kubelet-image");
    n.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: missing\nspec:\n  containers:\n  - name: c\n    image: 127.0.0.1:5000/kaji/does-not-exist:1\n");
    wait_for("ErrImagePull", Duration::from_secs(30), || {
        let row = n.cluster.ok(&["get", "pod", "missing"]);
        (row.contains("ErrImagePull") || row.contains("ImagePullBackOff")).then_some(())
    });
    wait_for("ImagePullBackOff", Duration::from_secs(30), || {
        n.cluster
            .ok(&["get", "pod", "missing"])
            .contains("ImagePullBackOff")
            .then_some(())
    });
    let describe = n.cluster.ok(&["describe", "pod", "missing"]);
    assert!(describe.contains("Failed to pull image"), "{describe}");
}

/// Bad input on a node (issue 5): a command that cannot start gives RunContainerError and then
/// CrashLoopBackOff, a container that keeps exiting backs off too, and neither stops the agent
/// or the other pods on the node.
#[test]
fn bad_commands_back_off_without_harming_other_pods() {
    let n = Node::start("kubelet-badcmd");
    n.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: healthy
spec:
  containers:
  - name: web
    image: nginx:1.16
---
apiVersion: v1
kind: Pod
metadata:
  name: nocmd
spec:
  containers:
  - name: c
    image: busybox
    command: ["/bin/no-such-program"]
---
apiVersion: v1
kind: Pod
metadata:
  name: exits
spec:
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "echo bye; exit 1"]
"#,
    );
    n.wait_running("healthy");
    // kubectl's STATUS column shows the waiting reason of the container.
    wait_for(
        "nocmd: RunContainerError or CrashLoopBackOff",
        Duration::from_secs(60),
        || {
            let row = n.cluster.ok(&["get", "pod", "nocmd", "--no-headers"]);
            (row.contains("RunContainerError") || row.contains("CrashLoopBackOff")).then_some(())
        },
    );
    wait_for(
        "exits: CrashLoopBackOff with restarts",
        Duration::from_secs(60),
        || {
            let row = n.cluster.ok(&["get", "pod", "exits", "--no-headers"]);
            let restarts: u32 = n
                .jsonpath("exits", "{.status.containerStatuses[0].restartCount}")
                .parse()
                .unwrap_or(0);
            (row.contains("CrashLoopBackOff") && restarts >= 1).then_some(())
        },
    );
    let describe = n.cluster.ok(&["describe", "pod", "exits"]);
    assert!(
        describe.contains("Back-off restarting failed container"),
        "{describe}"
    );
    // The healthy pod kept running the whole time, with no restarts, and the node stayed Ready.
    let healthy = n.cluster.ok(&["get", "pod", "healthy", "--no-headers"]);
    assert!(
        healthy.contains("Running") && healthy.contains("1/1"),
        "{healthy}"
    );
    assert_eq!(
        n.jsonpath("healthy", "{.status.containerStatuses[0].restartCount}"),
        "0"
    );
    let nodes = n.cluster.ok(&["get", "nodes", "--no-headers"]);
    assert!(nodes.split_whitespace().nth(1) == Some("Ready"), "{nodes}");
}
