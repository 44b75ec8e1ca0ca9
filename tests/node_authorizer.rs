//! The Node authorizer and NodeRestriction with `--authorization-mode=Node,RBAC`, stock kubectl,
//! hollow nodes: a node's credentials (a client certificate the server issues through
//! `/v1-kaji/client-kubelet.crt`, as an agent gets it) reach only what the pods bound to it use,
//! and write only its own Node and its own pods' status; the in-process spokes act as their own
//! identities (the audit log names them).

mod support;

use std::time::Duration;
use support::{Cluster, KUBECTL_NEW, wait_for};

/// A kubeconfig for node `node`, from the certificate the server issues to agents.
fn node_kubeconfig(c: &Cluster, node: &str) -> std::path::PathBuf {
    let dir = c.data_dir().join(format!("as-{node}"));
    std::fs::create_dir_all(&dir).unwrap();
    let request = dir.join("request.json");
    std::fs::write(&request, format!(r#"{{"nodeName": "{node}"}}"#)).unwrap();
    let answer: serde_json::Value = serde_json::from_str(&c.ok(&[
        "create",
        "--raw",
        "/v1-kaji/client-kubelet.crt",
        "-f",
        request.to_str().unwrap(),
    ]))
    .expect("JSON");
    for (field, file) in [
        ("cert", "client.crt"),
        ("key", "client.key"),
        ("ca", "ca.crt"),
    ] {
        std::fs::write(dir.join(file), answer[field].as_str().expect("PEM")).unwrap();
    }
    let server = format!("https://127.0.0.1:{}", c.port);
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: {d}/ca.crt\n    server: {server}\n  name: c\ncontexts:\n- context:\n    cluster: c\n    user: u\n  name: c\ncurrent-context: c\nusers:\n- name: u\n  user:\n    client-certificate: {d}/client.crt\n    client-key: {d}/client.key\n",
            d = dir.display()
        ),
    )
    .unwrap();
    kubeconfig
}

/// Runs kubectl with `kubeconfig`: (success, stdout, stderr).
fn kubectl_as(c: &Cluster, kubeconfig: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(KUBECTL_NEW)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env("HOME", c.data_dir())
        .env("KUBECACHEDIR", c.data_dir().join("cache-node"))
        .output()
        .expect("kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pod_with_secret(name: &str, node: &str, secret: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}", "namespace": "default"}},
            "spec": {{"nodeName": "{node}", "containers": [{{"name": "c", "image": "busybox"}}],
                     "volumes": [{{"name": "s", "secret": {{"secretName": "{secret}"}}}}]}}}}"#
    )
}

#[test]
fn a_node_reaches_only_what_its_pods_use() {
    let audit_dir = tempfile::tempdir().unwrap();
    let audit = audit_dir.path().join("audit.log");
    let c = Cluster::start_with(
        "node-authorizer",
        &[
            "--hollow-nodes",
            "2",
            "--authorization-mode=Node,RBAC",
            "--audit-log-path",
            audit.to_str().unwrap(),
        ],
    );
    for s in ["s0", "s1", "unrelated"] {
        c.ok(&["create", "secret", "generic", s, "--from-literal=k=v"]);
    }
    // The ServiceAccount admission needs the default ServiceAccount (made by the controller).
    wait_for(
        "the default ServiceAccount",
        Duration::from_secs(30),
        || {
            c.kubectl(&["get", "sa", "default"])
                .status
                .success()
                .then_some(())
        },
    );
    c.ok_with(
        KUBECTL_NEW,
        &["create", "-f", "-"],
        Some(&pod_with_secret("p0", "hollow-node-0", "s0")),
    );
    c.ok_with(
        KUBECTL_NEW,
        &["create", "-f", "-"],
        Some(&pod_with_secret("p1", "hollow-node-1", "s1")),
    );

    // Hollow nodes act as themselves: their pods turn Running under Node,RBAC.
    wait_for("the hollow pods Running", Duration::from_secs(60), || {
        let phases = c.ok(&["get", "pods", "-o", "jsonpath={.items[*].status.phase}"]);
        (phases.trim() == "Running Running").then_some(())
    });

    let node0 = node_kubeconfig(&c, "hollow-node-0");
    let (ok, who, err) = kubectl_as(
        &c,
        &node0,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        who.starts_with("system:node:hollow-node-0 ") && who.contains("system:nodes"),
        "{who}"
    );

    // Its pod's secret: yes. Another node's pod's secret, an unrelated one: 403, upstream's text.
    let (ok, out, err) = kubectl_as(
        &c,
        &node0,
        &["get", "secret", "s0", "-o", "jsonpath={.data.k}"],
    );
    assert!(ok && out == "dg==", "{out} {err}");
    for s in ["s1", "unrelated"] {
        let (ok, _, err) = kubectl_as(&c, &node0, &["get", "secret", s]);
        assert!(!ok);
        assert!(
            err.contains(&format!(
                r#"secrets "{s}" is forbidden: User "system:node:hollow-node-0" cannot get resource "secrets" in API group "" in the namespace "default": no relationship found between node 'hollow-node-0' and this object"#
            )),
            "{err}"
        );
    }
    let (ok, _, err) = kubectl_as(&c, &node0, &["get", "secrets"]);
    assert!(
        !ok && err.contains("cannot list resource \"secrets\""),
        "{err}"
    );
    // Its own pods by field selector, not all pods.
    let (ok, out, err) = kubectl_as(
        &c,
        &node0,
        &[
            "get",
            "pods",
            "-A",
            "--field-selector",
            "spec.nodeName=hollow-node-0",
            "-o",
            "name",
        ],
    );
    assert!(ok && out.trim() == "pod/p0", "{out} {err}");
    let (ok, _, err) = kubectl_as(&c, &node0, &["get", "pods", "-A"]);
    assert!(
        !ok && err.contains("can only list/watch pods with spec.nodeName field selector"),
        "{err}"
    );

    // A pod bound later becomes reachable at once (the graph catches up before refusing).
    c.ok(&["create", "configmap", "later", "--from-literal=a=b"]);
    let later = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p-later", "namespace": "default"},
        "spec": {"nodeName": "hollow-node-0", "containers": [{"name": "c", "image": "busybox", "envFrom": [{"configMapRef": {"name": "later"}}]}]}}"#;
    let (ok, _, _) = kubectl_as(&c, &node0, &["get", "configmap", "later"]);
    assert!(!ok, "no pod uses the configmap yet");
    c.ok_with(KUBECTL_NEW, &["create", "-f", "-"], Some(later));
    let (ok, _, err) = kubectl_as(&c, &node0, &["get", "configmap", "later"]);
    assert!(ok, "{err}");
    c.ok(&["delete", "pod", "p-later", "--wait=false"]);
    wait_for("p-later gone", Duration::from_secs(30), || {
        (!c.kubectl(&["get", "pod", "p-later"]).status.success()).then_some(())
    });
    let (ok, _, err) = kubectl_as(&c, &node0, &["get", "configmap", "later"]);
    assert!(
        !ok && err.contains("no relationship found between node 'hollow-node-0'"),
        "{err}"
    );

    // NodeRestriction: its own Node only, and not its taints or restricted labels.
    // kubectl label/patch read the node first (refused by the authorizer): PUT it as it is.
    let mut other = c.json(&["get", "node", "hollow-node-1"]);
    other["metadata"]["labels"]["example.com/x"] = "y".into();
    let other_file = c.data_dir().join("node1.json");
    std::fs::write(&other_file, other.to_string()).unwrap();
    let (ok, _, err) = kubectl_as(
        &c,
        &node0,
        &[
            "replace",
            "--raw",
            "/api/v1/nodes/hollow-node-1",
            "-f",
            other_file.to_str().unwrap(),
        ],
    );
    assert!(!ok && err.contains(r#"nodes "hollow-node-1" is forbidden: node "hollow-node-0" is not allowed to modify node "hollow-node-1""#), "{err}");
    let (ok, _, err) = kubectl_as(
        &c,
        &node0,
        &["label", "node", "hollow-node-0", "example.com/x=y"],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = kubectl_as(
        &c,
        &node0,
        &[
            "label",
            "node",
            "hollow-node-0",
            "node-restriction.kubernetes.io/trusted=yes",
        ],
    );
    assert!(
        !ok && err
            .contains("is not allowed to modify labels: node-restriction.kubernetes.io/trusted"),
        "{err}"
    );
    let (ok, _, err) = kubectl_as(
        &c,
        &node0,
        &["taint", "node", "hollow-node-0", "k=v:NoSchedule"],
    );
    assert!(
        !ok && err.contains(r#"node "hollow-node-0" is not allowed to modify taints"#),
        "{err}"
    );
    let (ok, _, err) = kubectl_as(&c, &node0, &["get", "node", "hollow-node-1"]);
    assert!(
        !ok && err
            .contains("node 'hollow-node-0' cannot read 'hollow-node-1', only its own Node object"),
        "{err}"
    );

    // Pods: status only of its own, no creating pods, deleting only its own.
    // (kubectl patch reads pods/status first, which a node may not: PUT the status as a kubelet does.)
    let put_status = |pod: &str| {
        let mut obj = c.json(&["get", "pod", pod]);
        obj["status"]["message"] = "from node 0".into();
        let file = c.data_dir().join(format!("{pod}-status.json"));
        std::fs::write(&file, obj.to_string()).unwrap();
        kubectl_as(
            &c,
            &node0,
            &[
                "replace",
                "--raw",
                &format!("/api/v1/namespaces/default/pods/{pod}/status"),
                "-f",
                file.to_str().unwrap(),
            ],
        )
    };
    let (ok, _, err) = put_status("p1");
    assert!(!ok && err.contains(r#"pods "p1" is forbidden: node "hollow-node-0" can only update pod status for pods with spec.nodeName set to itself"#), "{err}");
    let (ok, _, err) = put_status("p0");
    assert!(ok, "{err}");
    assert_eq!(
        c.ok(&["get", "pod", "p0", "-o", "jsonpath={.status.message}"]),
        "from node 0"
    );
    let (ok, _, err) = kubectl_as(&c, &node0, &["run", "sneaky", "--image=busybox"]);
    assert!(!ok && err.contains(r#"pod does not have "kubernetes.io/config.mirror" annotation, node "hollow-node-0" can only create mirror pods"#), "{err}");
    let (ok, _, err) = kubectl_as(&c, &node0, &["delete", "pod", "p1", "--wait=false"]);
    assert!(
        !ok && err.contains(
            r#"node "hollow-node-0" can only delete pods with spec.nodeName set to itself"#
        ),
        "{err}"
    );
    // Evictions only of its own pods; Leases only its own.
    let raw_post = |name: &str, path: &str, body: &str| {
        let file = c.data_dir().join(name);
        std::fs::write(&file, body).unwrap();
        kubectl_as(
            &c,
            &node0,
            &["create", "--raw", path, "-f", file.to_str().unwrap()],
        )
    };
    let (ok, _, err) = raw_post(
        "evict.json",
        "/api/v1/namespaces/default/pods/p1/eviction",
        r#"{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p1", "namespace": "default"}}"#,
    );
    assert!(!ok && err.contains(r#"pods "p1" is forbidden: node hollow-node-0 can only evict pods with spec.nodeName set to itself"#), "{err}");
    let (ok, _, err) = raw_post(
        "lease.json",
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
        r#"{"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "hollow-node-9"}, "spec": {"holderIdentity": "x"}}"#,
    );
    assert!(!ok && err.contains(r#"leases.coordination.k8s.io "hollow-node-9" is forbidden: can only access node lease with the same name as the requesting node"#), "{err}");
    let (ok, _, err) = kubectl_as(
        &c,
        &node0,
        &["get", "lease", "-n", "kube-node-lease", "hollow-node-1"],
    );
    assert!(
        !ok && err.contains("can only access node lease with the same name as the requesting node"),
        "{err}"
    );
    let (ok, _, err) = kubectl_as(
        &c,
        &node0,
        &["get", "lease", "-n", "kube-node-lease", "hollow-node-0"],
    );
    assert!(ok, "{err}");
    // TokenRequests: only for the service accounts of its pods, bound to a pod on itself.
    let uid = |pod: &str| c.ok(&["get", "pod", pod, "-o", "jsonpath={.metadata.uid}"]);
    let (ok, out, err) = kubectl_as(
        &c,
        &node0,
        &[
            "create",
            "token",
            "default",
            "--bound-object-kind=Pod",
            "--bound-object-name=p0",
            &format!("--bound-object-uid={}", uid("p0")),
        ],
    );
    assert!(ok && out.starts_with("ey"), "{err}");
    let (ok, _, err) = kubectl_as(
        &c,
        &node0,
        &[
            "create",
            "token",
            "default",
            "--bound-object-kind=Pod",
            "--bound-object-name=p1",
            &format!("--bound-object-uid={}", uid("p1")),
        ],
    );
    assert!(!ok && err.contains(r#"serviceaccounts "default" is forbidden: node requested token bound to a pod scheduled on a different node"#), "{err}");
    let (ok, _, err) = kubectl_as(&c, &node0, &["create", "token", "default"]);
    assert!(
        !ok && err.contains("node requested token not bound to a pod"),
        "{err}"
    );
    c.ok(&["create", "serviceaccount", "unused"]);
    let (ok, _, err) = kubectl_as(&c, &node0, &["create", "token", "unused"]);
    assert!(
        !ok && err.contains("no relationship found between node 'hollow-node-0' and this object"),
        "{err}"
    );
    // A node may renew its own client certificate, not get another node's.
    let (ok, _, err) = kubectl_as(
        &c,
        &node0,
        &[
            "create",
            "--raw",
            "/v1-kaji/client-kubelet.crt",
            "-f",
            c.data_dir()
                .join("as-hollow-node-0/request.json")
                .to_str()
                .unwrap(),
        ],
    );
    assert!(ok, "its own: {err}");
    let other = c.data_dir().join("other.json");
    std::fs::write(&other, r#"{"nodeName": "hollow-node-1"}"#).unwrap();
    let (ok, _, err) = kubectl_as(
        &c,
        &node0,
        &[
            "create",
            "--raw",
            "/v1-kaji/client-kubelet.crt",
            "-f",
            other.to_str().unwrap(),
        ],
    );
    assert!(
        !ok && err.contains("cannot get a client certificate for"),
        "{err}"
    );

    // The spokes act as their own identities: the audit log names who bound, created and
    // reported the pods.
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "--replicas=1",
    ]);
    wait_for(
        "the deployment's pod Running",
        Duration::from_secs(60),
        || {
            let phases = c.ok(&[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={.items[*].status.phase}",
            ]);
            (phases.trim() == "Running").then_some(())
        },
    );
    let log = wait_for("audit lines", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&audit).ok()?;
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let did = |user: &str, verb: &str, resource: &str, sub: &str| {
            lines.iter().any(|e| {
                e["user"]["username"] == user
                    && e["verb"] == verb
                    && e["objectRef"]["resource"] == resource
                    && e["objectRef"]["subresource"].as_str().unwrap_or_default() == sub
                    && e["responseStatus"]["code"]
                        .as_i64()
                        .is_some_and(|c| c < 300)
            })
        };
        (did("system:kube-controller-manager", "create", "pods", "")
            && did("system:kube-scheduler", "create", "pods", "binding")
            && lines.iter().any(|e| {
                e["user"]["username"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("system:node:hollow-node-"))
                    && e["objectRef"]["subresource"] == "status"
                    && e["objectRef"]["resource"] == "pods"
            }))
        .then_some(lines.len())
    });
    assert!(log > 0);

    // An RBAC denial shows in the spoke: without its ClusterRoleBinding the scheduler (as
    // system:kube-scheduler) cannot bind, and the pod stays Pending until the binding is back.
    c.ok(&["delete", "clusterrolebinding", "system:kube-scheduler"]);
    c.ok(&["run", "waits", "--image=busybox"]);
    wait_for("the scheduler's 403", Duration::from_secs(30), || {
        c.log()
            .contains(r#"User "system:kube-scheduler" cannot create resource "pods/binding" in API group "" in the namespace "default""#)
            .then_some(())
    });
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "waits",
            "-o",
            "jsonpath={.status.phase}/{.spec.nodeName}"
        ]),
        "Pending/"
    );
    c.ok(&[
        "create",
        "clusterrolebinding",
        "system:kube-scheduler",
        "--clusterrole=system:kube-scheduler",
        "--user=system:kube-scheduler",
    ]);
    wait_for(
        "the pod bound once the binding is back",
        Duration::from_secs(60),
        || {
            (c.ok(&["get", "pod", "waits", "-o", "jsonpath={.status.phase}"]) == "Running")
                .then_some(())
        },
    );
}
