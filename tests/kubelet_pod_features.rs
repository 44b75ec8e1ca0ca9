//! End-to-end tests of the kubelet's pod features on the real node agent (`kaji server` with
//! its in-process kubelet and a managed containerd, stock kubectl): termination messages,
//! activeDeadlineSeconds, the kubelet-managed /etc/hosts, subPath and subPathExpr, and the
//! security context. Each test asserts what a user sees through kubectl.

mod support;

use std::time::Duration;
use support::node::Node;
use support::wait_for;

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

fn exec(n: &Node, pod: &str, container: &str, script: &str) -> std::process::Output {
    n.cluster
        .kubectl(&["exec", pod, "-c", container, "--", "sh", "-c", script])
}

fn exec_ok(n: &Node, pod: &str, container: &str, script: &str) -> String {
    let out = exec(n, pod, container, script);
    assert!(
        out.status.success(),
        "exec {script:?} in {pod}/{container}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The waiting reason and message of container `c` once it has one.
fn wait_waiting(n: &Node, pod: &str, c: &str, reason: &str) -> String {
    wait_for(
        &format!("{pod}/{c} waiting with {reason}"),
        Duration::from_secs(60),
        || {
            let s = n.jsonpath(
                pod,
                &format!(
                    "{{.status.containerStatuses[?(@.name==\"{c}\")].state.waiting.reason}}|{{.status.containerStatuses[?(@.name==\"{c}\")].state.waiting.message}}"
                ),
            );
            let (r, m) = s.split_once('|')?;
            (r == reason).then(|| m.to_string())
        },
    )
}

fn terminated_message(n: &Node, pod: &str, c: &str) -> String {
    n.jsonpath(
        pod,
        &format!("{{.status.containerStatuses[?(@.name==\"{c}\")].state.terminated.message}}"),
    )
}

/// A container's termination message is the file it wrote at terminationMessagePath (the
/// default /dev/termination-log or its own path); with FallbackToLogsOnError a failed
/// container that wrote none gets the end of its log, a succeeded one nothing.
#[test]
fn termination_messages() {
    let n = Node::start("pf-term");
    n.apply(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: term
spec:
  restartPolicy: Never
  containers:
  - name: file
    image: busybox:latest
    command: ["sh", "-c", "echo -n 'bye from the file' > /dev/termination-log"]
  - name: own-path
    image: busybox:latest
    terminationMessagePath: /tmp/last-words
    command: ["sh", "-c", "echo -n 'custom path' > /tmp/last-words; exit 2"]
  - name: fallback
    image: busybox:latest
    terminationMessagePolicy: FallbackToLogsOnError
    command: ["sh", "-c", "for i in $(seq 1 100); do echo line $i; done; exit 3"]
  - name: fallback-ok
    image: busybox:latest
    terminationMessagePolicy: FallbackToLogsOnError
    command: ["sh", "-c", "echo all good"]
  - name: fallback-file-wins
    image: busybox:latest
    terminationMessagePolicy: FallbackToLogsOnError
    command: ["sh", "-c", "echo noise; echo -n 'from file' > /dev/termination-log; exit 1"]
"#,
    );
    n.wait_phase("term", "Failed");
    assert_eq!(terminated_message(&n, "term", "file"), "bye from the file");
    assert_eq!(terminated_message(&n, "term", "own-path"), "custom path");
    let fallback = terminated_message(&n, "term", "fallback");
    // The last 80 lines of the log.
    assert!(fallback.starts_with("line 21\n"), "{fallback:?}");
    assert!(fallback.ends_with("line 100\n"), "{fallback:?}");
    assert_eq!(terminated_message(&n, "term", "fallback-ok"), "");
    assert_eq!(
        terminated_message(&n, "term", "fallback-file-wins"),
        "from file"
    );
    // kubectl describe shows it too.
    let d = n.cluster.ok(&["describe", "pod", "term"]);
    assert!(d.contains("bye from the file"), "{d}");
}

/// A pod that outlives its activeDeadlineSeconds is killed and Failed with DeadlineExceeded;
/// lowering the deadline of a running pod takes effect.
#[test]
fn active_deadline_seconds() {
    let n = Node::start("pf-deadline");
    n.apply(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: short
spec:
  activeDeadlineSeconds: 3
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:latest
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: lowered
spec:
  activeDeadlineSeconds: 3600
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:latest
    command: ["sleep", "3600"]
"#,
    );
    n.wait_running("lowered");
    n.wait_phase("short", "Failed");
    assert_eq!(
        n.jsonpath("short", "{.status.reason}|{.status.message}"),
        "DeadlineExceeded|Pod was active on the node longer than the specified deadline"
    );
    let row = n.cluster.ok(&["get", "pod", "short", "--no-headers"]);
    assert!(row.contains("DeadlineExceeded"), "{row}");
    // The container is stopped (after the status said Failed, as upstream).
    wait_for("the container stopped", Duration::from_secs(30), || {
        n.jsonpath(
            "short",
            "{.status.containerStatuses[0].state.terminated.exitCode}",
        )
        .parse::<i32>()
        .ok()
    });
    let e = events(&n, "short");
    assert!(
        e.contains(
            "Normal DeadlineExceeded: Pod was active on the node longer than the specified deadline"
        ),
        "{e}"
    );
    // Still running well before its hour; lowering the deadline fails it.
    assert_eq!(n.jsonpath("lowered", "{.status.phase}"), "Running");
    n.cluster.ok(&[
        "patch",
        "pod",
        "lowered",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"activeDeadlineSeconds":1}}"#,
    ]);
    n.wait_phase("lowered", "Failed");
    assert_eq!(
        n.jsonpath("lowered", "{.status.reason}"),
        "DeadlineExceeded"
    );
}

/// The kubelet-managed /etc/hosts, exactly as upstream writes it: localhost lines, the pod's
/// IP with its FQDN under a subdomain, and the hostAliases under their header.
#[test]
fn managed_etc_hosts() {
    let n = Node::start("pf-hosts");
    n.apply(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: hosts
spec:
  hostname: web
  subdomain: sub
  hostAliases:
  - ip: "127.0.0.1"
    hostnames: ["foo.local", "bar.local"]
  - ip: "10.1.2.3"
    hostnames: ["foo.remote"]
  containers:
  - name: main
    image: busybox:latest
    command: ["sleep", "3600"]
  - name: second
    image: busybox:latest
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: host-net
spec:
  hostNetwork: true
  hostAliases:
  - ip: "127.0.0.1"
    hostnames: ["alias.local"]
  containers:
  - name: main
    image: busybox:latest
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: plain
spec:
  containers:
  - name: main
    image: busybox:latest
    command: ["sleep", "3600"]
"#,
    );
    let ip = n.wait_running("hosts");
    let want = format!(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{ip}\tweb.sub.default.svc.cluster.local\tweb\n\n# Entries added by HostAliases.\n127.0.0.1\tfoo.local\tbar.local\n10.1.2.3\tfoo.remote\n"
    );
    assert_eq!(exec_ok(&n, "hosts", "main", "cat /etc/hosts"), want);
    assert_eq!(exec_ok(&n, "hosts", "second", "cat /etc/hosts"), want);
    assert_eq!(exec_ok(&n, "hosts", "main", "hostname"), "web\n");
    let ip = n.wait_running("plain");
    let plain = exec_ok(&n, "plain", "main", "cat /etc/hosts");
    assert!(
        plain.ends_with(&format!("ip6-allrouters\n{ip}\tplain\n")),
        "{plain}"
    );
    // A host-network pod: the node's hosts file under upstream's header, plus its aliases.
    n.wait_running("host-net");
    let node_hosts = std::fs::read_to_string("/etc/hosts").expect("the node's /etc/hosts");
    assert_eq!(
        exec_ok(&n, "host-net", "main", "cat /etc/hosts"),
        format!(
            "# Kubernetes-managed hosts file (host network).\n{node_hosts}\n# Entries added by HostAliases.\n127.0.0.1\talias.local\n"
        )
    );
}

/// subPath and subPathExpr (expanded with the container's environment) mount a directory of
/// the volume; an absolute path or `..` is refused with CreateContainerConfigError and an
/// event, and the container starts once the pod is fixed (here: the annotation its variable
/// comes from).
#[test]
fn sub_paths() {
    let n = Node::start("pf-subpath");
    n.apply(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: sub
spec:
  volumes:
  - name: data
    emptyDir: {}
  containers:
  - name: writer
    image: busybox:latest
    command: ["sh", "-c", "echo plain > /plain/f; echo expr > /expr/f; sleep 3600"]
    env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    volumeMounts:
    - name: data
      mountPath: /plain
      subPath: a/b
    - name: data
      mountPath: /expr
      subPathExpr: logs/$(POD_NAME)
  - name: reader
    image: busybox:latest
    command: ["sleep", "3600"]
    volumeMounts:
    - name: data
      mountPath: /all
---
apiVersion: v1
kind: Pod
metadata:
  name: absolute
spec:
  volumes:
  - name: data
    emptyDir: {}
  containers:
  - name: main
    image: busybox:latest
    command: ["sleep", "3600"]
    env:
    - name: DIR
      value: /tmp
    volumeMounts:
    - name: data
      mountPath: /x
      subPathExpr: $(DIR)
---
apiVersion: v1
kind: Pod
metadata:
  name: backsteps
  annotations:
    dir: ".."
spec:
  volumes:
  - name: data
    emptyDir: {}
  containers:
  - name: main
    image: busybox:latest
    command: ["sleep", "3600"]
    env:
    - name: DIR
      valueFrom:
        fieldRef:
          fieldPath: metadata.annotations['dir']
    volumeMounts:
    - name: data
      mountPath: /x
      subPathExpr: $(DIR)
"#,
    );
    n.wait_running("sub");
    wait_for("the writer's files", Duration::from_secs(30), || {
        let out = exec(&n, "sub", "reader", "cat /all/a/b/f /all/logs/sub/f");
        (String::from_utf8_lossy(&out.stdout) == "plain\nexpr\n").then_some(())
    });
    let m = wait_waiting(&n, "absolute", "main", "CreateContainerConfigError");
    assert_eq!(m, "error SubPath `/tmp` must not be an absolute path");
    let m = wait_waiting(&n, "backsteps", "main", "CreateContainerConfigError");
    assert_eq!(m, "unable to provision SubPath `..`: must not contain '..'");
    let e = events(&n, "backsteps");
    assert!(
        e.contains(
            "Warning Failed: Error: unable to provision SubPath `..`: must not contain '..'"
        ),
        "{e}"
    );
    n.cluster
        .ok(&["annotate", "pod", "backsteps", "--overwrite", "dir=fixed"]);
    n.wait_running("backsteps");
    exec_ok(&n, "backsteps", "main", "echo ok > /x/f");
}

/// The security context: users and groups (`id`), fsGroup on an emptyDir, a read-only root
/// filesystem, no_new_privs, capabilities, seccomp RuntimeDefault, and runAsNonRoot refusing a
/// root image.
#[test]
fn security_context() {
    let n = Node::start("pf-security");
    n.apply(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: sec
spec:
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
    fsGroup: 2000
    supplementalGroups: [4000]
    sysctls:
    - name: net.ipv4.ip_unprivileged_port_start
      value: "42"
  volumes:
  - name: data
    emptyDir: {}
  - name: info
    downwardAPI:
      items:
      - path: name
        fieldRef:
          fieldPath: metadata.name
  containers:
  - name: main
    image: busybox:latest
    command: ["sleep", "3600"]
    volumeMounts:
    - name: data
      mountPath: /data
    - name: info
      mountPath: /info
  - name: privileged
    image: busybox:latest
    command: ["sleep", "3600"]
    securityContext:
      runAsUser: 0
      privileged: true
  - name: locked
    image: busybox:latest
    command: ["sleep", "3600"]
    securityContext:
      runAsUser: 0
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities:
        drop: ["ALL"]
      seccompProfile:
        type: RuntimeDefault
---
apiVersion: v1
kind: Pod
metadata:
  name: nonroot
spec:
  securityContext:
    runAsNonRoot: true
  containers:
  - name: main
    image: busybox:latest
    command: ["sleep", "3600"]
"#,
    );
    n.wait_running("sec");
    let id = exec_ok(&n, "sec", "main", "id");
    assert!(id.starts_with("uid=1000 gid=3000 groups="), "{id}");
    let groups = id.trim().rsplit('=').next().unwrap_or_default().to_string();
    let mut groups: Vec<&str> = groups.split(',').collect();
    groups.sort_unstable();
    assert_eq!(groups, ["2000", "3000", "4000"], "{id}");
    // fsGroup owns the emptyDir (setgid), so files written there belong to it.
    let ls = exec_ok(
        &n,
        "sec",
        "main",
        "echo x > /data/f && ls -ldn /data /data/f",
    );
    for line in ls.lines() {
        assert_eq!(line.split_whitespace().nth(3), Some("2000"), "{ls}");
    }
    assert!(ls.starts_with("drwxrwsrwx"), "{ls}");
    // ... and the files of a downwardAPI volume, readable by the group.
    let info = exec_ok(&n, "sec", "main", "ls -lnL /info/name && cat /info/name");
    assert_eq!(info.split_whitespace().nth(3), Some("2000"), "{info}");
    assert!(info.ends_with("\nsec"), "{info}");
    // readOnlyRootFilesystem refuses a write.
    let out = exec(&n, "sec", "locked", "echo x > /x");
    assert!(!out.status.success(), "the root filesystem is writable");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Read-only file system"), "{err}");
    let status = exec_ok(&n, "sec", "locked", "cat /proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(field("NoNewPrivs"), "1", "{status}");
    assert_eq!(field("CapEff"), "0000000000000000", "{status}");
    assert_eq!(field("Seccomp"), "2", "{status}");
    // The pod's sysctls, and a privileged container with every capability and /proc/sys writable.
    assert_eq!(
        exec_ok(
            &n,
            "sec",
            "main",
            "cat /proc/sys/net/ipv4/ip_unprivileged_port_start"
        ),
        "42\n"
    );
    let privileged = exec_ok(
        &n,
        "sec",
        "privileged",
        "grep CapEff /proc/self/status; echo 43 > /proc/sys/net/ipv4/ip_unprivileged_port_start && echo written",
    );
    assert!(
        !privileged.contains("CapEff:\t0000000000000000"),
        "{privileged}"
    );
    assert!(privileged.ends_with("written\n"), "{privileged}");
    let out = exec(
        &n,
        "sec",
        "locked",
        "echo 44 > /proc/sys/net/ipv4/ip_unprivileged_port_start",
    );
    assert!(
        !out.status.success(),
        "/proc/sys is writable without privileges"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Read-only file system"), "/proc/sys: {err}");
    // The unrestricted container keeps the default capabilities.
    let main_status = exec_ok(&n, "sec", "main", "cat /proc/self/status");
    assert!(main_status.contains("NoNewPrivs:\t0"), "{main_status}");
    // runAsNonRoot with an image that runs as root.
    let m = wait_waiting(&n, "nonroot", "main", "CreateContainerConfigError");
    let uid = n.jsonpath("nonroot", "{.metadata.uid}");
    assert_eq!(
        m,
        format!(
            "container has runAsNonRoot and image will run as root (pod: \"nonroot_default({uid})\", container: main)"
        )
    );
    let e = events(&n, "nonroot");
    assert!(
        e.contains("Warning Failed: Error: container has runAsNonRoot and image will run as root"),
        "{e}"
    );
}

/// Init containers' statuses as upstream reports them: a completed one is ready (not started),
/// terminated Completed; under restartPolicy Never a failed one fails the pod, is not ready,
/// and the app container waits PodInitializing with Initialized False.
#[test]
fn init_container_statuses() {
    let n = Node::start("pf-init");
    n.apply(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: init-ok
spec:
  initContainers:
  - name: setup
    image: busybox:latest
    command: ["true"]
  containers:
  - name: main
    image: busybox:latest
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: init-fails
spec:
  restartPolicy: Never
  initContainers:
  - name: setup
    image: busybox:latest
    command: ["sh", "-c", "exit 7"]
  containers:
  - name: main
    image: busybox:latest
    command: ["sleep", "3600"]
"#,
    );
    n.wait_running("init-ok");
    let init = "{.status.initContainerStatuses[0]}";
    let st: serde_json::Value =
        serde_json::from_str(&n.jsonpath("init-ok", init)).expect("init status");
    assert_eq!(st["ready"], true, "{st}");
    assert_eq!(st["started"], false, "{st}");
    assert_eq!(st["state"]["terminated"]["reason"], "Completed", "{st}");
    assert_eq!(
        n.jsonpath(
            "init-ok",
            "{.status.conditions[?(@.type==\"Initialized\")].status}"
        ),
        "True"
    );
    n.wait_phase("init-fails", "Failed");
    let st: serde_json::Value =
        serde_json::from_str(&n.jsonpath("init-fails", init)).expect("init status");
    assert_eq!(st["ready"], false, "{st}");
    assert_eq!(st["state"]["terminated"]["exitCode"], 7, "{st}");
    assert_eq!(st["state"]["terminated"]["reason"], "Error", "{st}");
    assert_eq!(
        n.jsonpath(
            "init-fails",
            "{.status.containerStatuses[0].state.waiting.reason}|{.status.conditions[?(@.type==\"Initialized\")].reason}"
        ),
        "PodInitializing|ContainersNotInitialized"
    );
    let row = n.cluster.ok(&["get", "pod", "init-fails", "--no-headers"]);
    assert!(row.contains("Init:Error"), "{row}");
}

/// Sidecars (init containers with restartPolicy Always): they start before the next init
/// container and keep running beside the app containers, count in READY, are restarted when
/// they exit whatever the pod's policy, and do not keep a Never pod from Succeeding.
#[test]
fn sidecar_containers() {
    let n = Node::start("pf-sidecar");
    n.apply(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: with-sidecar
spec:
  initContainers:
  - name: side
    image: busybox:latest
    restartPolicy: Always
    command: ["sh", "-c", "sleep 4; exit 1"]
  - name: setup
    image: busybox:latest
    command: ["true"]
  containers:
  - name: main
    image: busybox:latest
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: job-like
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: side
    image: busybox:latest
    restartPolicy: Always
    command: ["sleep", "3600"]
  containers:
  - name: main
    image: busybox:latest
    command: ["sh", "-c", "sleep 2"]
"#,
    );
    n.wait_running("with-sidecar");
    wait_for("READY 2/2", Duration::from_secs(30), || {
        let row = n
            .cluster
            .ok(&["get", "pod", "with-sidecar", "--no-headers"]);
        (row.split_whitespace().nth(1) == Some("2/2")).then_some(())
    });
    let side = "{.status.initContainerStatuses[?(@.name==\"side\")]";
    // The sidecar exits after 4 s and is restarted; the app container is not touched.
    wait_for("the sidecar restarted", Duration::from_secs(60), || {
        let r = n.jsonpath("with-sidecar", &format!("{side}.restartCount}}"));
        (r.parse::<u32>().unwrap_or(0) >= 1).then_some(())
    });
    assert_eq!(
        n.jsonpath(
            "with-sidecar",
            "{.status.phase} {.status.containerStatuses[0].restartCount} {.status.initContainerStatuses[?(@.name==\"setup\")].state.terminated.reason}"
        ),
        "Running 0 Completed"
    );
    n.wait_phase("job-like", "Succeeded");
    wait_for("the sidecar stopped", Duration::from_secs(30), || {
        n.jsonpath("job-like", &format!("{side}.state.terminated.exitCode}}"))
            .parse::<i32>()
            .ok()
    });
}

/// A preStop hook's httpGet with a `host` calls that host (here another pod) before the
/// container is stopped.
#[test]
fn pre_stop_http_hook_calls_another_pod() {
    let n = Node::start("pf-hook");
    n.apply(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: target
spec:
  containers:
  - name: web
    image: busybox:latest
    command:
    - sh
    - -c
    - |
      mkdir -p /tmp/www/cgi-bin
      printf '#!/bin/sh\necho hit >> /tmp/hits\necho Content-Type: text/plain\necho\necho ok\n' > /tmp/www/cgi-bin/hook
      /bin/busybox chmod +x /tmp/www/cgi-bin/hook
      exec httpd -f -p 8080 -h /tmp/www
"#,
    );
    let ip = n.wait_running("target");
    wait_for("the target's hook script", Duration::from_secs(30), || {
        exec(&n, "target", "web", "test -x /tmp/www/cgi-bin/hook")
            .status
            .success()
            .then_some(())
    });
    n.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: hooked
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: busybox:latest
    command: ["sleep", "3600"]
    lifecycle:
      preStop:
        httpGet:
          host: "{ip}"
          port: 8080
          path: /cgi-bin/hook
"#
    ));
    n.wait_running("hooked");
    assert!(!exec(&n, "target", "web", "cat /tmp/hits").status.success());
    n.cluster
        .ok(&["delete", "pod", "hooked", "--wait=true", "--timeout=60s"]);
    assert_eq!(exec_ok(&n, "target", "web", "cat /tmp/hits"), "hit\n");
}
