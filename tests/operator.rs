//! End-to-end test of seed 004's operator pattern: the example operator written with kube-rs
//! (examples/hoge-operator) runs in a pod, from an image made of its host binary
//! (support::images), as its own ServiceAccount with a ClusterRole (RBAC on), reaching the API
//! server through the `kubernetes` Service. For each `Hoge` (the seed's custom resource) it keeps
//! a Deployment and a Service owned by the Hoge and writes the Hoge's status; deleting the Hoge
//! lets the garbage collector delete them.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::node::Node;
use support::{images, wait_for};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/hoge-operator");

/// Builds the operator with the cargo running the tests (same target directory and profile, so a
/// built tree makes this a no-op) and returns the binary's path.
fn build_operator() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let out = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--message-format=json",
            "--manifest-path",
        ])
        .arg(Path::new(DEPLOY).join("Cargo.toml"))
        // The workspace's feature unification, as `cargo build` of the workspace has it, so that
        // the dependencies are those already built rather than a second copy for this package.
        .args(["--workspace", "--bin", "hoge-operator"])
        .output()
        .expect("running cargo build -p hoge-operator");
    assert!(
        out.status.success(),
        "cargo build -p hoge-operator failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|m| {
            (m["reason"] == "compiler-artifact" && m["target"]["name"] == "hoge-operator")
                .then(|| m["executable"].as_str().map(PathBuf::from))
                .flatten()
        })
        .expect("cargo named the hoge-operator executable")
}

fn manifest(file: &str) -> String {
    std::fs::read_to_string(Path::new(DEPLOY).join("deploy").join(file))
        .unwrap_or_else(|e| panic!("reading deploy/{file}: {e}"))
}

fn get(node: &Node, args: &[&str], path: &str) -> String {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    let p = format!("jsonpath={path}");
    a.extend(["-o", p.as_str()]);
    let out = node.cluster.kubectl(&a);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `kubectl get <what>` says NotFound.
fn gone(node: &Node, what: &[&str]) -> bool {
    let mut a = vec!["get"];
    a.extend_from_slice(what);
    let out = node.cluster.kubectl(&a);
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound")
}

#[test]
fn operator_reconciles_hoges_into_deployments_and_services() {
    let start = Instant::now();
    let t = Instant::now();
    let binary = build_operator();
    let built = t.elapsed();
    let t = Instant::now();
    let image = images::binary_image("hoge-operator", &[binary.as_path()]);
    eprintln!(
        "hoge-operator built in {built:?}, image {image} in {:?}",
        t.elapsed()
    );

    let node = Node::start_with(
        "operator",
        &[
            "--authorization-mode=Node,RBAC",
            "--bind-address",
            "0.0.0.0",
        ],
    );
    let kubectl = |args: &[&str]| node.cluster.ok(args);

    eprintln!("{:?}: cluster up", start.elapsed());
    // The CRD, served before the operator starts watching it.
    node.apply(&manifest("crd.yaml"));
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/hoges.stable.example.com",
        "--timeout=30s",
    ]);

    eprintln!("{:?}: CRD established", start.elapsed());
    // The operator: its namespace, ServiceAccount, ClusterRole, binding and Deployment.
    node.apply(&manifest("operator.yaml").replace("HOGE_OPERATOR_IMAGE", &image));
    let operator_pod = wait_for(
        "the operator's pod Running",
        Duration::from_secs(90),
        || {
            let s = get(
                &node,
                &[
                    "pods",
                    "-n",
                    "hoge-system",
                    "-l",
                    "app.kubernetes.io/name=hoge-operator",
                ],
                "{range .items[*]}{.metadata.name} {.status.phase}{\"\\n\"}{end}",
            );
            s.lines()
                .find_map(|l| l.strip_suffix(" Running").map(str::to_string))
        },
    );

    eprintln!("{:?}: operator running", start.elapsed());
    // The seed's Hoge (with two replicas): a Deployment and a Service, both controlled by it.
    node.apply(&manifest("hoge.yaml"));
    let uid = get(&node, &["hoge", "test-hoge"], "{.metadata.uid}");
    assert!(!uid.is_empty());
    let owner = "{.metadata.ownerReferences[0].apiVersion} {.metadata.ownerReferences[0].kind} \
                 {.metadata.ownerReferences[0].name} {.metadata.ownerReferences[0].uid} \
                 {.metadata.ownerReferences[0].controller}";
    let want_owner = format!("stable.example.com/v1 Hoge test-hoge {uid} true");
    let logs = || node.logs(&["-n", "hoge-system", &operator_pod]);
    for kind in ["deployment", "service"] {
        let got = wait_for(
            &format!("the operator to create the {kind}"),
            Duration::from_secs(60),
            || {
                let s = get(&node, &[kind, "test-hoge"], owner);
                (!s.is_empty()).then_some(s)
            },
        );
        assert_eq!(got, want_owner, "{kind}; operator log:\n{}", logs());
    }
    let d = get(
        &node,
        &["deployment", "test-hoge"],
        "{.spec.replicas} {.spec.template.spec.containers[0].image} \
         {.spec.template.spec.containers[0].env[?(@.name==\"FUGA\")].value}",
    );
    assert_eq!(d, "2 nginx:1.18.0-alpine hugahuga");

    eprintln!("{:?}: deployment and service created", start.elapsed());
    // Its pods run real containers, the Service's endpoints are those pods, and the Hoge's status
    // says so.
    let selector = "app.kubernetes.io/instance=test-hoge";
    let ips = wait_for("two Running pods", Duration::from_secs(90), || {
        let s = get(
            &node,
            &["pods", "-l", selector],
            "{range .items[*]}{.status.phase} {.status.podIP}{\"\\n\"}{end}",
        );
        let mut ips: Vec<String> = s
            .lines()
            .filter_map(|l| l.strip_prefix("Running "))
            .filter(|ip| !ip.is_empty())
            .map(str::to_string)
            .collect();
        ips.sort();
        (ips.len() == 2).then_some(ips)
    });
    wait_for(
        "the Service's endpoints to be the pods",
        Duration::from_secs(60),
        || {
            let s = get(
                &node,
                &[
                    "endpointslices",
                    "-l",
                    "kubernetes.io/service-name=test-hoge",
                ],
                "{range .items[*].endpoints[*]}{.addresses[0]}{\"\\n\"}{end}",
            );
            let mut got: Vec<&str> = s.lines().collect();
            got.sort();
            (got == ips).then_some(())
        },
    );
    let status = "{.status.replicas} {.status.availableReplicas} {.status.observedGeneration}";
    let generation = get(&node, &["hoge", "test-hoge"], "{.metadata.generation}");
    wait_for(
        "the Hoge's status: 2 available",
        Duration::from_secs(60),
        || {
            (get(&node, &["hoge", "test-hoge"], status) == format!("2 2 {generation}"))
                .then_some(())
        },
    );

    eprintln!("{:?}: pods running, status written", start.elapsed());
    // `kubectl get hg` (the seed's short name) with the CRD's printer columns.
    let table = kubectl(&["get", "hg"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert_eq!(
        rows[0],
        ["NAME", "FUGA", "REPLICAS", "AVAILABLE", "AGE"],
        "{table}"
    );
    assert_eq!(rows[1][..4], ["test-hoge", "hugahuga", "2", "2"], "{table}");

    // The control loop: a change to the Hoge reaches the Deployment, and a Deployment deleted
    // by hand comes back.
    kubectl(&[
        "patch",
        "hoge",
        "test-hoge",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":1}}"#,
    ]);
    wait_for(
        "the Deployment scaled to 1 and the Hoge's status following",
        Duration::from_secs(60),
        || {
            let d = get(&node, &["deployment", "test-hoge"], "{.spec.replicas}");
            let s = get(&node, &["hoge", "test-hoge"], "{.status.availableReplicas}");
            (d == "1" && s == "1").then_some(())
        },
    );
    let old = get(&node, &["deployment", "test-hoge"], "{.metadata.uid}");
    kubectl(&["delete", "deployment", "test-hoge", "--wait=false"]);
    wait_for(
        "the operator to recreate the Deployment",
        Duration::from_secs(60),
        || {
            let u = get(&node, &["deployment", "test-hoge"], "{.metadata.uid}");
            (!u.is_empty() && u != old).then_some(())
        },
    );

    eprintln!("{:?}: scaled and recreated", start.elapsed());
    // Deleting the Hoge deletes what it owns (the garbage collector, through ownerReferences).
    kubectl(&["delete", "hoge", "test-hoge"]);
    // (The pods go through their grace period: busybox httpd as PID 1 ignores SIGTERM.)
    wait_for(
        "the Deployment, its ReplicaSet and the Service to be garbage-collected and the pods deleted",
        Duration::from_secs(60),
        || {
            let pods = get(
                &node,
                &["pods", "-l", selector],
                "{range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
            );
            (gone(&node, &["deployment", "test-hoge"])
                && gone(&node, &["service", "test-hoge"])
                && get(&node, &["rs", "-l", selector], "{.items[*].metadata.name}").is_empty()
                && pods.lines().all(|l| !l.ends_with(' ')))
            .then_some(())
        },
    );
    eprintln!("{:?}: garbage-collected", start.elapsed());
    assert!(logs().contains("reconciled"), "operator log:\n{}", logs());

    // The operator's own pods go before the node (its drop cleans up the default namespace).
    kubectl(&["delete", "namespace", "hoge-system", "--wait=false"]);
    wait_for(
        "the operator's pods to be deleted",
        Duration::from_secs(60),
        || {
            get(
                &node,
                &["pods", "-n", "hoge-system"],
                "{.items[*].metadata.name}",
            )
            .is_empty()
            .then_some(())
        },
    );
}
