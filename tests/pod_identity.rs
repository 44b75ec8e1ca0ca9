//! End-to-end tests of a pod's identity with real containers: the ServiceAccount admission's
//! `kube-api-access-*` projected volume (a bound token from the kubelet's token manager, the
//! `kube-root-ca.crt` CA and the namespace) lets stock kubectl inside a pod reach the API server
//! through the `kubernetes` Service (the node's service proxy) with in-cluster config, as its
//! service account, limited by RBAC (`--authorization-mode=Node,RBAC`).
//!
//! The pod runs the host's static kubectl 1.33 (mounted with a hostPath volume into a busybox
//! test image) and the test drives it with `kubectl exec`.

mod support;

use serde_json::Value;
use std::process::Output;
use std::time::Duration;
use support::node::Node;
use support::{KUBECTL_NEW, wait_for};

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The test's node with RBAC on and the API server listening on every address (the `kubernetes`
/// Service's endpoint is the node's address, which a pod reaches through the bridge).
fn start(name: &str) -> Node {
    Node::start_with(
        name,
        &[
            "--authorization-mode=Node,RBAC",
            "--bind-address",
            "0.0.0.0",
        ],
    )
}

/// A pod of `default` running as `sa` with the host's kubectl at /usr/local/bin/kubectl.
fn client_pod(name: &str, sa: &str, automount: Option<bool>) -> String {
    let automount = automount
        .map(|a| format!("  automountServiceAccountToken: {a}\n"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  serviceAccountName: {sa}
{automount}  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: ["sleep", "3600"]
    volumeMounts:
    - name: kubectl
      mountPath: /usr/local/bin/kubectl
      readOnly: true
  volumes:
  - name: kubectl
    hostPath:
      path: {KUBECTL_NEW}
      type: File
"#
    )
}

/// Runs `args` in the pod's container.
fn exec(n: &Node, pod: &str, args: &[&str]) -> Output {
    let mut a = vec!["exec", pod, "-c", "c", "--"];
    a.extend_from_slice(args);
    n.cluster.kubectl(&a)
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The in-pod kubectl, stopped after 20 s so that a hung connection fails the poll. (Not
/// `--request-timeout`: any override makes kubectl's config differ from the default, and then it
/// does not fall back to the in-cluster config.)
fn in_pod_kubectl(n: &Node, pod: &str, args: &[&str]) -> Output {
    let mut a = vec!["busybox", "timeout", "20", "kubectl"];
    a.extend_from_slice(args);
    exec(n, pod, &a)
}

/// RFC 4648 base64url without padding (a JWT's parts).
fn base64url(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => panic!("not base64url: {c:?}"),
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        acc = (acc << 6) | u32::from(val(c));
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn claims(token: &str) -> Value {
    let parts: Vec<&str> = token.trim().split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {token}");
    serde_json::from_slice(&base64url(parts[1])).expect("the JWT's claims are JSON")
}

fn token_in(n: &Node, pod: &str) -> String {
    let o = exec(n, pod, &["cat", &format!("{SA_DIR}/token")]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn in_pod_kubectl_is_its_service_account_limited_by_rbac() {
    let mut n = start("pod-identity");
    n.cluster.ok(&["create", "namespace", "other"]);
    n.cluster.ok(&["create", "serviceaccount", "reader"]);
    n.apply(&client_pod("client", "reader", None));
    n.wait_running("client");
    let uid = n.jsonpath("client", "{.metadata.uid}");

    // The admission's volume, mounted where in-cluster clients look.
    let volume = n.jsonpath(
        "client",
        "{.spec.volumes[?(@.projected)].name} {.spec.containers[0].volumeMounts[?(@.mountPath==\"/var/run/secrets/kubernetes.io/serviceaccount\")].readOnly}",
    );
    assert!(
        volume.starts_with("kube-api-access-") && volume.ends_with(" true"),
        "{volume}"
    );
    let o = exec(&n, "client", &["cat", &format!("{SA_DIR}/namespace")]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "default",
        "{}",
        text(&o)
    );
    let o = exec(&n, "client", &["cat", &format!("{SA_DIR}/ca.crt")]);
    let ca = std::fs::read_to_string(n.cluster.data_dir().join("server/tls/ca.crt")).unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), ca, "{}", text(&o));

    // The token is a JWT bound to this pod (and its node) as the service account.
    let token = token_in(&n, "client");
    let c = claims(&token);
    assert_eq!(c["sub"], "system:serviceaccount:default:reader", "{c}");
    assert_eq!(c["kubernetes.io"]["namespace"], "default", "{c}");
    assert_eq!(
        c["kubernetes.io"]["serviceaccount"]["name"], "reader",
        "{c}"
    );
    assert_eq!(c["kubernetes.io"]["pod"]["name"], "client", "{c}");
    assert_eq!(c["kubernetes.io"]["pod"]["uid"], uid.as_str(), "{c}");
    assert_eq!(c["kubernetes.io"]["node"]["name"], "kaji-test-node", "{c}");
    assert!(c["aud"].as_array().is_some_and(|a| !a.is_empty()), "{c}");
    let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
    assert!(exp - iat >= 3607, "{c}");

    // Before any binding: 403 naming the service account (the request reached the API server
    // through the `kubernetes` Service and was authenticated with the projected token).
    let forbidden = |ns: &str| {
        format!(
            "pods is forbidden: User \"system:serviceaccount:default:reader\" cannot list resource \"pods\" in API group \"\" in the namespace \"{ns}\""
        )
    };
    let o = in_pod_kubectl(&n, "client", &["get", "pods"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success()
            && err.contains(&format!(
                "Error from server (Forbidden): {}",
                forbidden("default")
            )),
        "{}\nthe pod's environment:\n{}",
        text(&o),
        String::from_utf8_lossy(&exec(&n, "client", &["env"]).stdout)
    );

    // After a RoleBinding to `view` it lists the pods of its namespace, and still no others.
    n.cluster.ok(&[
        "create",
        "rolebinding",
        "reader-view",
        "--clusterrole=view",
        "--serviceaccount=default:reader",
    ]);
    let listed = wait_for(
        "the in-pod kubectl to list pods",
        Duration::from_secs(30),
        || {
            let o = in_pod_kubectl(&n, "client", &["get", "pods", "-o", "name"]);
            o.status
                .success()
                .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
        },
    );
    assert!(listed.lines().any(|l| l == "pod/client"), "{listed}");
    let o = in_pod_kubectl(&n, "client", &["get", "pods", "-n", "other"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&forbidden("other")),
        "{}",
        text(&o)
    );

    // A new agent (the server restarted, its containers left running) has no cached tokens: it
    // requests a new one and rewrites the file in place; the container is not restarted and
    // the in-pod client goes on with the new token. (The refresh at 80% of a token's life is
    // tested with a moved clock in kaji-kubelet's token_manager: the shortest token the API
    // server issues lives 10 minutes.)
    let container = n.jsonpath("client", "{.status.containerStatuses[0].containerID}");
    n.cluster.kill();
    n.cluster.spawn();
    let rotated = wait_for(
        "the token file to be rewritten",
        Duration::from_secs(60),
        || {
            let o = exec(&n, "client", &["cat", &format!("{SA_DIR}/token")]);
            let t = String::from_utf8_lossy(&o.stdout).into_owned();
            (o.status.success() && t.contains('.') && t != token).then_some(t)
        },
    );
    let c2 = claims(&rotated);
    assert_eq!(c2["kubernetes.io"]["pod"]["uid"], uid.as_str(), "{c2}");
    assert!(c2["iat"].as_i64().unwrap() >= iat, "{c2}");
    let o = in_pod_kubectl(&n, "client", &["get", "pods", "-o", "name"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        n.jsonpath(
            "client",
            "{.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount}"
        ),
        format!("{container} 0")
    );
}

#[test]
fn automount_false_and_a_token_that_cannot_be_had() {
    let n = start("pod-identity-off");
    n.apply(&client_pod("with", "default", None));
    n.apply(&client_pod("without", "default", Some(false)));
    n.wait_running("with");
    n.wait_running("without");
    let o = exec(&n, "with", &["ls", SA_DIR]);
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    for f in ["ca.crt", "namespace", "token"] {
        assert!(listing.lines().any(|l| l == f), "{}", text(&o));
    }
    let o = exec(&n, "without", &["ls", SA_DIR]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        n.jsonpath("without", "{.spec.volumes[*].name}") == "kubectl",
        "no kube-api-access volume"
    );

    // A pod whose service account is deleted before it reaches the node (it waits unschedulable
    // for a label the node gets afterwards): the kubelet's TokenRequest fails, the mount fails
    // with upstream's message and the pod waits in ContainerCreating; once the account exists
    // again the next attempt mounts the token and the pod runs.
    n.cluster.ok(&["create", "serviceaccount", "gone"]);
    n.apply(&client_pod("late", "gone", None).replace(
        "spec:\n",
        "spec:\n  nodeSelector:\n    identity-test: late\n",
    ));
    wait_for(
        "the pod to be unschedulable",
        Duration::from_secs(30),
        || {
            (n.jsonpath(
                "late",
                "{.status.conditions[?(@.type==\"PodScheduled\")].reason}",
            ) == "Unschedulable")
                .then_some(())
        },
    );
    n.cluster.ok(&["delete", "serviceaccount", "gone"]);
    n.cluster
        .ok(&["label", "node", "kaji-test-node", "identity-test=late"]);
    let events = wait_for("a FailedMount event", Duration::from_secs(60), || {
        let e = n.cluster.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=late",
            "-o",
            "jsonpath={range .items[*]}{.type} {.reason} {.message}{\"\\n\"}{end}",
        ]);
        e.contains("FailedMount").then_some(e)
    });
    let volume = n.jsonpath("late", "{.spec.volumes[?(@.projected)].name}");
    assert!(
        events.contains(&format!(
            "Warning FailedMount MountVolume.SetUp failed for volume \"{volume}\" : failed to fetch token: serviceaccounts \"gone\" not found"
        )),
        "{events}"
    );
    assert_eq!(
        n.jsonpath(
            "late",
            "{.status.phase} {.status.containerStatuses[0].state.waiting.reason}"
        ),
        "Pending ContainerCreating"
    );
    n.cluster.ok(&["create", "serviceaccount", "gone"]);
    n.wait_running("late");
    let c = claims(&token_in(&n, "late"));
    assert_eq!(c["kubernetes.io"]["serviceaccount"]["name"], "gone", "{c}");
}

/// The root CA publisher: every namespace has `kube-root-ca.crt` with the cluster CA, put back
/// when deleted or changed.
#[test]
fn kube_root_ca_is_published_and_put_back() {
    let c = support::Cluster::start_with("root-ca", &["--authorization-mode=Node,RBAC"]);
    let ca = std::fs::read_to_string(c.data_dir().join("server/tls/ca.crt")).unwrap();
    c.ok(&["create", "namespace", "team"]);
    let published = || {
        let o = c.kubectl(&[
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-n",
            "team",
            "-o",
            "json",
        ]);
        let cm: Value = serde_json::from_slice(&o.stdout).ok()?;
        (cm["data"]["ca.crt"] == ca.as_str()
            && cm["metadata"]["annotations"]["kubernetes.io/description"]
                .as_str()
                .is_some_and(|d| d.contains("kubernetes.default.svc")))
        .then_some(())
    };
    wait_for(
        "kube-root-ca.crt in a new namespace",
        Duration::from_secs(30),
        published,
    );
    c.ok(&["delete", "configmap", "kube-root-ca.crt", "-n", "team"]);
    wait_for(
        "kube-root-ca.crt made again",
        Duration::from_secs(30),
        published,
    );
    c.ok(&[
        "patch",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        "team",
        "--type=merge",
        "-p",
        r#"{"data":{"ca.crt":"not a CA"}}"#,
    ]);
    wait_for(
        "kube-root-ca.crt put back",
        Duration::from_secs(30),
        published,
    );
}
