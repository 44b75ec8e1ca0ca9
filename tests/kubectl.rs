//! End-to-end tests (kubectl): stock kubectl 1.33 and 1.27 against `kaji server`, doing what the
//! seed documents do (tests/seeds/ holds their manifests) and checking what a user would see.
//! Each test starts its own cluster; every test runs once per kubectl version.
mod support;

/// These tests are about the API as kubectl sees it, so they run the hub alone: with no
/// controller or scheduler, objects stay exactly as written (as the hub issue specifies), and
/// what kubectl prints depends on nothing else.
fn api_only(name: &str) -> support::Cluster {
    support::Cluster::start_with(name, &["--disable-controllers", "--disable-scheduler"])
}

use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Cluster, KUBECTL_NEW, KUBECTL_OLD, wait_for};

const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/seeds");

/// Fixtures that change an object another fixture creates (the seeds rewrite a file and re-apply).
const UPDATES: [&str; 2] = ["000-nginx-service-nodeport.yaml", "003-sample-static-clusterip-externalips.yaml"];

// ---------------------------------------------------------------------------------------------
// helpers

/// Runs kubectl with extra environment variables and optional stdin.
fn run(c: &Cluster, kubectl: &str, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(kubectl);
    cmd.arg("--kubeconfig").arg(&c.kubeconfig).args(args);
    cmd.env("HOME", c.data_dir()).env("KUBECACHEDIR", c.data_dir().join("cache"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.current_dir(c.data_dir());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("running {kubectl}: {e}"));
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("writing stdin");
    }
    child.wait_with_output().expect("kubectl output")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs kubectl (in the cluster's directory, where the tests write their files) expecting success.
fn ok(c: &Cluster, k: &str, args: &[&str]) -> String {
    let out = run(c, k, args, &[], None);
    assert!(out.status.success(), "{k} {args:?} failed: {}\nstdout: {}\nserver log tail:\n{}", stderr(&out), stdout(&out), support::tail(&c.log(), 30));
    stdout(&out)
}

/// Runs kubectl expecting it to fail; returns stderr.
fn fails(c: &Cluster, k: &str, args: &[&str]) -> String {
    let out = run(c, k, args, &[], None);
    assert!(!out.status.success(), "{k} {args:?} should have failed; stdout: {}", stdout(&out));
    stderr(&out)
}

fn json(c: &Cluster, k: &str, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    let out = ok(c, k, &a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
}

fn seed(name: &str) -> String {
    std::fs::read_to_string(Path::new(SEEDS).join(name)).unwrap_or_else(|e| panic!("reading seed {name}: {e}"))
}

/// All fixture file names, sorted.
fn seed_files() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(SEEDS)
        .expect("tests/seeds")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    v.sort();
    v
}

fn manifest(name: &str) -> Value {
    serde_yaml::from_str(&seed(name)).unwrap_or_else(|e| panic!("{name} is not YAML: {e}"))
}

/// `deployment.apps/nginx-deployment`, as kubectl names an object in its messages.
fn kubectl_name(m: &Value) -> String {
    let api_version = m["apiVersion"].as_str().unwrap_or_default();
    let kind = m["kind"].as_str().unwrap_or_default().to_lowercase();
    let name = m["metadata"]["name"].as_str().unwrap_or_default();
    match api_version.rsplit_once('/') {
        Some((group, _)) => format!("{kind}.{group}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

/// Writes `content` into the cluster's directory and returns the path.
fn write_file(c: &Cluster, name: &str, content: &str) -> PathBuf {
    let p = c.data_dir().join(name);
    std::fs::write(&p, content).expect("writing a file");
    p
}

/// Every value of `want` is in `got` (objects key by key, lists item by item): the server kept
/// what the manifest said and only added defaults.
fn assert_subset(want: &Value, got: &Value, path: &str) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, v) in w {
                let sub = format!("{path}.{k}");
                let Some(gv) = g.get(k) else { panic!("{sub} is missing; object: {got}") };
                assert_subset(v, gv, &sub);
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            assert_eq!(w.len(), g.len(), "{path}: list length differs: {got}");
            for (i, (a, b)) in w.iter().zip(g).enumerate() {
                assert_subset(a, b, &format!("{path}[{i}]"));
            }
        }
        (w, g) => assert_eq!(w, g, "{path} differs"),
    }
}

/// Table cells: kubectl separates columns by at least three spaces.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split("  ").map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
        .collect()
}

fn row<'a>(table: &'a [Vec<String>], name: &str) -> &'a [String] {
    table.iter().find(|r| r.first().is_some_and(|n| n == name)).unwrap_or_else(|| panic!("no row {name} in {table:?}"))
}

/// An AGE cell as kubectl prints a fresh object's age (`0s`, `12s`, `2m3s`).
fn is_age(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()) && s.ends_with(['s', 'm', 'h', 'd'])
}

/// describe output with each line's runs of whitespace collapsed, for `Key: value` lookups.
fn normalized(text: &str) -> Vec<String> {
    text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

fn assert_lines(text: &str, want: &[&str]) {
    let lines = normalized(text);
    for w in want {
        assert!(lines.iter().any(|l| l == w), "line {w:?} missing from:\n{text}");
    }
}

fn b64(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &x)| acc | (u32::from(x) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn ns_manifest(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

// ---------------------------------------------------------------------------------------------
// apply every seed fixture: created, unchanged, configured, a removed field is removed

fn seeds_apply(k: &str) {
    let c = api_only("seeds-apply");
    let files = seed_files();
    assert!(files.len() >= 20, "the seed fixtures are there: {files:?}");
    // One namespace per seed document: two seeds each have their own `nginx-deployment`.
    for prefix in ["000", "003", "004"] {
        assert_eq!(c.apply(k, &ns_manifest(&format!("seed-{prefix}"))), format!("namespace/seed-{prefix} created\n"));
    }
    let ns_of = |f: &str| format!("seed-{}", &f[..3]);
    let base: Vec<&String> = files.iter().filter(|f| !UPDATES.contains(&f.as_str())).collect();

    let apply_all = |list: &[&String], verb: &str| {
        for prefix in ["000", "003", "004"] {
            let mine: Vec<&&String> = list.iter().filter(|f| f.starts_with(prefix)).collect();
            if mine.is_empty() {
                continue;
            }
            let ns = format!("seed-{prefix}");
            let mut args: Vec<String> = vec!["apply".into(), "-n".into(), ns];
            for f in &mine {
                args.push("-f".into());
                args.push(format!("{SEEDS}/{f}"));
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = ok(&c, k, &args);
            let want: String = mine.iter().map(|f| format!("{} {verb}\n", kubectl_name(&manifest(f)))).collect();
            assert_eq!(out, want, "apply of seed {prefix} fixtures");
        }
    };
    apply_all(&base, "created");
    apply_all(&base, "unchanged");

    // What each manifest says is what the server kept.
    for f in &base {
        let m = manifest(f);
        let kind = m["kind"].as_str().unwrap();
        let name = m["metadata"]["name"].as_str().unwrap();
        let live = json(&c, k, &["get", kind, name, "-n", &ns_of(f)]);
        for key in ["spec", "data", "type"] {
            if let Some(w) = m.get(key) {
                assert_subset(w, &live[key], &format!("{f}: .{key}"));
            }
        }
        if let Some(labels) = m["metadata"].get("labels") {
            assert_subset(labels, &live["metadata"]["labels"], &format!("{f}: .metadata.labels"));
        }
        let last = live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].as_str().unwrap_or_default();
        assert!(last.contains(&format!("\"name\":\"{name}\"")), "{f}: last-applied-configuration recorded: {last:?}");
    }

    // The seeds' rewritten files: the same objects, configured.
    let updates: Vec<String> = UPDATES.iter().map(|s| s.to_string()).collect();
    let updates: Vec<&String> = updates.iter().collect();
    apply_all(&updates, "configured");
    apply_all(&updates, "unchanged");
    let svc = json(&c, k, &["get", "service", "my-first-service", "-n", "seed-000"]);
    assert_eq!(svc["spec"]["type"], "NodePort");
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30000);
    let svc = json(&c, k, &["get", "service", "sample-static-clusterip", "-n", "seed-003"]);
    assert_eq!(svc["spec"]["clusterIP"], "10.43.253.80");
    assert_eq!(svc["spec"]["externalIPs"], serde_json::json!(["192.168.99.101"]));
    let table = rows(&ok(&c, k, &["get", "services", "-n", "seed-000"]));
    assert_eq!(table[0], ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
    assert_eq!(row(&table, "my-first-service")[1..5], ["NodePort".to_string(), svc_ip(&c, k, "my-first-service", "seed-000"), "<none>".into(), "80:30000/TCP".into()]);

    // Remove a field from the file and apply it again: the field is gone from the object.
    let removals: [(&str, &str, &str, &str); 7] = [
        ("000-nginx-deployment.yaml", "  labels:\n    component: nginx\nspec:", "spec:", "/metadata/labels"),
        ("000-nginx-pod.yaml", "  labels:\n    component: nginx\n", "", "/metadata/labels"),
        ("003-sample-configmap.yaml", "  thread: \"16\"\n", "", "/data/thread"),
        ("003-sample-yaml-auth.yaml", "  password: cm9vdHBhc3N3b3Jk\n", "", "/data/password"),
        ("003-sample-cronjob.yaml", "  startingDeadlineSeconds: 30\n", "", "/spec/startingDeadlineSeconds"),
        ("003-sample-static-clusterip-externalips.yaml", "  externalIPs:\n    - 192.168.99.101\n", "", "/spec/externalIPs"),
        ("000-nginx-service-nodeport.yaml", "    nodePort: 30000\n  type: NodePort\n", "", "/spec/ports/0/nodePort"),
    ];
    for (f, cut, with, pointer) in removals {
        let text = seed(f);
        assert!(text.contains(cut), "{f} has {cut:?}");
        let edited = write_file(&c, f, &text.replacen(cut, with, 1));
        let m = manifest(f);
        let out = ok(&c, k, &["apply", "-n", &ns_of(f), "-f", edited.to_str().unwrap()]);
        assert_eq!(out, format!("{} configured\n", kubectl_name(&m)));
        let live = json(&c, k, &["get", m["kind"].as_str().unwrap(), m["metadata"]["name"].as_str().unwrap(), "-n", &ns_of(f)]);
        assert!(live.pointer(pointer).is_none(), "{f}: {pointer} should be gone: {live}");
    }
    // The service went back to ClusterIP and freed its node port.
    let svc = json(&c, k, &["get", "service", "my-first-service", "-n", "seed-000"]);
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    // The CRD of seed 004 is served as an object of its own.
    let crds = rows(&ok(&c, k, &["get", "crd"]));
    assert_eq!(crds[0], ["NAME", "CREATED AT"]);
    assert_eq!(row(&crds, "hoges.stable.example.com").len(), 2);
}

fn svc_ip(c: &Cluster, k: &str, name: &str, ns: &str) -> String {
    ok(c, k, &["get", "service", name, "-n", ns, "-o", "jsonpath={.spec.clusterIP}"])
}

#[test]
fn seeds_apply_kubectl_1_33() {
    seeds_apply(KUBECTL_NEW);
}

#[test]
fn seeds_apply_kubectl_1_27() {
    seeds_apply(KUBECTL_OLD);
}

// ---------------------------------------------------------------------------------------------
// get: plain, wide, yaml, json, jsonpath, custom-columns, watch

fn get_formats(k: &str) {
    let c = api_only("get");
    for f in ["000-nginx-pod.yaml", "000-bastion.yaml", "000-nginx-service.yaml", "000-nginx-replicaset.yaml", "000-nginx-deployment.yaml"] {
        c.apply(k, &seed(f));
    }

    // The seed's `kubectl get pod` (000, line 85): the same header, to the space.
    let out = ok(&c, k, &["get", "pod"]);
    assert_eq!(out.lines().next(), Some("NAME           READY   STATUS    RESTARTS   AGE"), "{out}");
    let t = rows(&out);
    assert_eq!(t.len(), 3, "{out}");
    for name in ["bastion", "my-first-pod"] {
        let r = row(&t, name);
        assert_eq!(r[1..4], ["0/1", "Pending", "0"], "{out}");
        assert!(is_age(&r[4]), "{out}");
    }
    assert_eq!(t[1][0], "bastion", "sorted by name: {out}");

    let t = rows(&ok(&c, k, &["get", "pod", "-o", "wide"]));
    assert_eq!(t[0], ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"]);
    assert_eq!(row(&t, "bastion")[5..], ["<none>", "<none>", "<none>", "<none>"]);

    let t = rows(&ok(&c, k, &["get", "replicaset", "-o", "wide"]));
    assert_eq!(t[0], ["NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]);
    let r = row(&t, "nginx-replicaset");
    assert_eq!(r[1..4], ["3", "0", "0"]);
    assert_eq!(r[5..], ["nginx", "nginx:latest", "component=nginx"]);

    let t = rows(&ok(&c, k, &["get", "deployments"]));
    assert_eq!(t[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert_eq!(row(&t, "nginx-deployment")[1..4], ["0/3", "0", "0"]);

    let t = rows(&ok(&c, k, &["get", "service"]));
    assert_eq!(t[0], ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
    assert_eq!(row(&t, "kubernetes")[1..5], ["ClusterIP", "10.43.0.1", "<none>", "443/TCP"]);
    let ip = svc_ip(&c, k, "my-first-service", "default");
    assert!(ip.starts_with("10.43."), "{ip}");
    assert_eq!(row(&t, "my-first-service")[1..5], ["ClusterIP".to_string(), ip, "<none>".into(), "80/TCP".into()]);

    // -o yaml and -o json print the stored object.
    let y: Value = serde_yaml::from_str(&ok(&c, k, &["get", "pod", "my-first-pod", "-o", "yaml"])).expect("YAML");
    assert_eq!(y["kind"], "Pod");
    assert_eq!(y["metadata"]["labels"]["component"], "nginx");
    assert_eq!(y["spec"]["containers"][0]["image"], "nginx:latest");
    assert_eq!(y["spec"]["containers"][0]["imagePullPolicy"], "Always", "defaulted as upstream for :latest");
    assert_eq!(y["spec"]["enableServiceLinks"], true, "SetDefaults_Pod");
    assert_eq!(y["status"]["phase"], "Pending");
    assert!(y["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36));
    let list = json(&c, k, &["get", "pods"]);
    assert_eq!(list["kind"], "List");
    let names: Vec<&str> = list["items"].as_array().unwrap().iter().filter_map(|i| i["metadata"]["name"].as_str()).collect();
    assert_eq!(names, ["bastion", "my-first-pod"]);
    assert_eq!(list["items"][0]["spec"]["containers"][0]["command"], serde_json::json!(["sleep", "infinity"]));

    assert_eq!(ok(&c, k, &["get", "pods", "-o", "jsonpath={.items[*].metadata.name}"]), "bastion my-first-pod");
    assert_eq!(ok(&c, k, &["get", "pod", "my-first-pod", "-o", "jsonpath={.metadata.labels.component}"]), "nginx");
    assert_eq!(
        ok(&c, k, &["get", "pods", "-o", r#"jsonpath={range .items[*]}{.metadata.name}={.spec.containers[0].image}{"\n"}{end}"#]),
        "bastion=debian:stretch\nmy-first-pod=nginx:latest\n"
    );

    // The seed's custom columns (000, line 320).
    let out = ok(&c, k, &["get", "pod", "-o", "custom-columns=NAME:.metadata.name,IMAGE:.spec.containers[*].image,PHASE:.status.phase"]);
    let t = rows(&out);
    assert_eq!(t, [["NAME", "IMAGE", "PHASE"], ["bastion", "debian:stretch", "Pending"], ["my-first-pod", "nginx:latest", "Pending"]], "{out}");
    assert_eq!(out.lines().next(), Some("NAME           IMAGE            PHASE"), "{out}");

    let err = fails(&c, k, &["get", "pod", "x"]);
    assert_eq!(err.trim_end(), r#"Error from server (NotFound): pods "x" not found"#);

    // -w: the list, then each change as a new line.
    let mut child = Command::new(k)
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(["get", "pods", "-w"])
        .env("HOME", c.data_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let seen = Arc::new(Mutex::new(String::new()));
    let mut pipe = child.stdout.take().expect("stdout");
    let sink = Arc::clone(&seen);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let text = || seen.lock().unwrap().clone();
    wait_for("the watch to list the pods", Duration::from_secs(10), || text().contains("my-first-pod").then_some(()));
    c.apply(k, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: watched\nspec:\n  containers:\n  - name: c\n    image: nginx\n");
    wait_for("the watch to show the new pod", Duration::from_secs(10), || {
        text()
            .lines()
            .any(|l| {
                let cells: Vec<&str> = l.split_whitespace().collect();
                cells.len() == 5 && cells[..4] == ["watched", "0/1", "Pending", "0"] && is_age(cells[4])
            })
            .then_some(())
    });
    ok(&c, k, &["label", "pod", "bastion", "watched=yes"]);
    wait_for("the watch to show the modified pod", Duration::from_secs(10), || {
        (text().lines().filter(|l| l.starts_with("bastion ")).count() == 2).then_some(())
    });
    let _ = child.kill();
    let _ = child.wait();
    reader.join().expect("reader thread");
    let all = text();
    assert_eq!(all.lines().next(), Some("NAME           READY   STATUS    RESTARTS   AGE"), "{all}");
}

#[test]
fn get_formats_kubectl_1_33() {
    get_formats(KUBECTL_NEW);
}

#[test]
fn get_formats_kubectl_1_27() {
    get_formats(KUBECTL_OLD);
}

// ---------------------------------------------------------------------------------------------
// describe

fn describe(k: &str) {
    let c = api_only("describe");
    for f in ["003-sample-2pod.yaml", "003-sample-rs.yaml", "003-sample-deployment.yaml", "003-sample-clusterip.yaml"] {
        c.apply(k, &seed(f));
    }
    let out = ok(&c, k, &["describe", "pod", "sample-2pod"]);
    assert_lines(
        &out,
        &[
            "Name: sample-2pod",
            "Namespace: default",
            "Node: <none>",
            "Labels: <none>",
            "Status: Pending",
            "Containers:",
            "nginx-container:",
            "Image: nginx:1.12",
            "Port: 80/TCP",
            "Host Port: 0/TCP",
            "redis-container:",
            "Image: redis:5.0.5",
            "Port: 6379/TCP",
            "QoS Class: BestEffort",
            "Events: <none>",
        ],
    );

    // The seed's `kubectl describe replicaset sample-rs` (003, lines 330-353), less what the
    // controllers and kubelet (not there yet) would have done.
    let out = ok(&c, k, &["describe", "replicaset", "sample-rs"]);
    assert_lines(
        &out,
        &[
            "Name: sample-rs",
            "Namespace: default",
            "Selector: app=sample-app",
            "Labels: <none>",
            "Replicas: 0 current / 3 desired",
            "Pods Status: 0 Running / 0 Waiting / 0 Succeeded / 0 Failed",
            "Pod Template:",
            "Labels: app=sample-app",
            "nginx-container:",
            "Image: nginx:1.12",
            "Port: 80/TCP",
            "Host Port: 0/TCP",
            "Environment: <none>",
            "Mounts: <none>",
        ],
    );

    // 003, lines 393-426.
    let out = ok(&c, k, &["describe", "deployment", "sample-deployment"]);
    assert_lines(
        &out,
        &[
            "Name: sample-deployment",
            "Namespace: default",
            "Selector: app=sample-app",
            "Replicas: 3 desired | 0 updated | 0 total | 0 available | 0 unavailable",
            "StrategyType: RollingUpdate",
            "MinReadySeconds: 0",
            "RollingUpdateStrategy: 25% max unavailable, 25% max surge",
            "Labels: app=sample-app",
            "Image: nginx:1.12",
            "Port: 80/TCP",
        ],
    );
    assert!(out.lines().any(|l| l.starts_with("CreationTimestamp:") && l.ends_with("+0000")), "{out}");

    // 003, lines 586-598.
    let ip = svc_ip(&c, k, "sample-clusterip", "default");
    let out = ok(&c, k, &["describe", "services", "sample-clusterip"]);
    assert_lines(
        &out,
        &[
            "Name: sample-clusterip",
            "Namespace: default",
            "Labels: <none>",
            "Selector: app=sample-app",
            "Type: ClusterIP",
            &format!("IP: {ip}"),
            "Port: http-port 8080/TCP",
            "TargetPort: 80/TCP",
            "Endpoints: <none>",
            "Session Affinity: None",
        ],
    );

    // The seed's secret (003, lines 691-702; the values of its `-o json`, lines 712-713),
    // created without apply so that it has no annotation, as `create secret` makes it.
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: sample-db-auth\ntype: Opaque\ndata:\n  password: UEBzc3cwcmQ=\n  username: dXNlci1uYW1l\n";
    assert_eq!(c.ok_with(k, &["create", "-f", "-"], Some(secret)), "secret/sample-db-auth created\n");
    // kubectl prints the data keys in Go map order, which varies from run to run.
    let described = ok(&c, k, &["describe", "secrets", "sample-db-auth"]);
    let (head, data) = described.split_once("====\n").expect("a Data section");
    assert_eq!(head, "Name:         sample-db-auth\nNamespace:    default\nLabels:       <none>\nAnnotations:  <none>\n\nType:  Opaque\n\nData\n");
    let mut data: Vec<&str> = data.lines().collect();
    data.sort_unstable();
    assert_eq!(data, ["password:  8 bytes", "username:  9 bytes"]);
    let err = fails(&c, k, &["describe", "pod", "nope"]);
    assert_eq!(err.trim_end(), r#"Error from server (NotFound): pods "nope" not found"#);
}

#[test]
fn describe_kubectl_1_33() {
    describe(KUBECTL_NEW);
}

#[test]
fn describe_kubectl_1_27() {
    describe(KUBECTL_OLD);
}

// ---------------------------------------------------------------------------------------------
// delete, label, annotate, edit, scale, set image

fn change_objects(k: &str) {
    let c = api_only("change");
    for f in ["000-nginx-pod.yaml", "000-bastion.yaml", "000-nginx-replicaset.yaml", "000-nginx-deployment.yaml", "003-sample-rs.yaml"] {
        c.apply(k, &seed(f));
    }

    // label and annotate
    assert_eq!(ok(&c, k, &["label", "pod", "bastion", "tier=web"]), "pod/bastion labeled\n");
    let err = fails(&c, k, &["label", "pod", "bastion", "tier=db"]);
    assert_eq!(err.trim_end(), "error: 'tier' already has a value (web), and --overwrite is false");
    assert_eq!(ok(&c, k, &["label", "pod", "bastion", "tier=db", "--overwrite"]), "pod/bastion labeled\n");
    let t = rows(&ok(&c, k, &["get", "pods", "-l", "tier=db", "--show-labels"]));
    assert_eq!(t[0], ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "LABELS"]);
    assert_eq!(t.len(), 2);
    assert_eq!(row(&t, "bastion")[5], "tier=db");
    assert_eq!(ok(&c, k, &["label", "pod", "bastion", "tier-"]), "pod/bastion unlabeled\n");
    assert!(json(&c, k, &["get", "pod", "bastion"])["metadata"].get("labels").is_none());
    // kubectl 1.27 itself words it `annotate` (its print flags' operation; the server has no say).
    let annotated = if k == KUBECTL_OLD { "deployment.apps/nginx-deployment annotate\n" } else { "deployment.apps/nginx-deployment annotated\n" };
    assert_eq!(ok(&c, k, &["annotate", "deployment", "nginx-deployment", "note=hello world"]), annotated);
    assert_eq!(ok(&c, k, &["get", "deployment", "nginx-deployment", "-o", "jsonpath={.metadata.annotations.note}"]), "hello world");
    assert_eq!(ok(&c, k, &["annotate", "deployment", "nginx-deployment", "note-"]), annotated);
    assert_eq!(ok(&c, k, &["get", "deployment", "nginx-deployment", "-o", "jsonpath={.metadata.annotations.note}"]), "");

    // edit with an editor that changes replicas (seed 004 edits replicas to 5)
    let editor = write_file(&c, "editor.sh", "#!/bin/sh\nsed -i 's/replicas: 3/replicas: 5/' \"$1\"\n");
    let noop = write_file(&c, "noop.sh", "#!/bin/sh\nexit 0\n");
    for p in [&editor, &noop] {
        Command::new("chmod").arg("+x").arg(p).status().expect("chmod");
    }
    let out = run(&c, k, &["edit", "deployment", "nginx-deployment"], &[("KUBE_EDITOR", editor.to_str().unwrap())], None);
    assert!(out.status.success(), "edit: {}", stderr(&out));
    assert_eq!(stdout(&out), "deployment.apps/nginx-deployment edited\n");
    let d = json(&c, k, &["get", "deployment", "nginx-deployment"]);
    assert_eq!(d["spec"]["replicas"], 5);
    // Upstream's Deployment strategy bumps the generation on spec and on annotation changes
    // (annotations are copied to the ReplicaSets): two annotates and one edit.
    assert_eq!(d["metadata"]["generation"], 4, "annotation and spec changes bump generation");
    let out = run(&c, k, &["edit", "deployment", "nginx-deployment"], &[("KUBE_EDITOR", noop.to_str().unwrap())], None);
    assert!(out.status.success(), "edit: {}", stderr(&out));
    assert_eq!(format!("{}{}", stdout(&out), stderr(&out)), "Edit cancelled, no changes made.\n");

    // scale (003, line 358) and set image (003, line 430)
    assert_eq!(ok(&c, k, &["scale", "replicaset", "sample-rs", "--replicas", "5"]), "replicaset.apps/sample-rs scaled\n");
    assert_eq!(row(&rows(&ok(&c, k, &["get", "replicaset", "sample-rs"])), "sample-rs")[1], "5");
    assert_eq!(ok(&c, k, &["scale", "deployment", "nginx-deployment", "--replicas=0"]), "deployment.apps/nginx-deployment scaled\n");
    assert_eq!(row(&rows(&ok(&c, k, &["get", "deployment", "nginx-deployment"])), "nginx-deployment")[1], "0/0");
    let err = fails(&c, k, &["scale", "deployment", "nginx-deployment", "--replicas=1", "--current-replicas=3"]);
    assert!(err.contains("Expected replicas to be 3, was 0"), "{err}");
    assert_eq!(ok(&c, k, &["set", "image", "deployment", "nginx-deployment", "nginx=nginx:1.16"]), "deployment.apps/nginx-deployment image updated\n");
    let t = rows(&ok(&c, k, &["get", "deployment", "nginx-deployment", "-o", "wide"]));
    assert_eq!(t[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]);
    assert_eq!(row(&t, "nginx-deployment")[5..], ["nginx", "nginx:1.16", "component=nginx"]);
    let err = fails(&c, k, &["set", "image", "deployment", "nginx-deployment", "nope=nginx:1.16"]);
    assert!(err.contains("unable to find container named \"nope\""), "{err}");

    // delete (000, lines 248 and 287)
    assert_eq!(ok(&c, k, &["delete", "pod", "my-first-pod"]), "pod \"my-first-pod\" deleted\n");
    let err = fails(&c, k, &["get", "pod", "my-first-pod"]);
    assert_eq!(err.trim_end(), r#"Error from server (NotFound): pods "my-first-pod" not found"#);
    assert_eq!(ok(&c, k, &["delete", "replicaset", "nginx-replicaset"]), "replicaset.apps \"nginx-replicaset\" deleted\n");
    let err = fails(&c, k, &["delete", "replicaset", "nginx-replicaset"]);
    assert_eq!(err.trim_end(), r#"Error from server (NotFound): replicasets.apps "nginx-replicaset" not found"#);
    assert_eq!(ok(&c, k, &["delete", "-f", &format!("{SEEDS}/000-bastion.yaml")]), "pod \"bastion\" deleted\n");
    let t = ok(&c, k, &["get", "pods"]);
    assert_eq!(t, "", "no pods left");
}

#[test]
fn change_objects_kubectl_1_33() {
    change_objects(KUBECTL_NEW);
}

#[test]
fn change_objects_kubectl_1_27() {
    change_objects(KUBECTL_OLD);
}

// ---------------------------------------------------------------------------------------------
// create deployment|secret generic|configmap (typed clients)

fn create_typed(k: &str) {
    let c = api_only("create");
    // 003, line 23
    assert_eq!(
        ok(&c, k, &["create", "deployment", "hello-node", "--image=gcr.io/hello-minikube-zero-install/hello-node"]),
        "deployment.apps/hello-node created\n"
    );
    let d = json(&c, k, &["get", "deployment", "hello-node"]);
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "hello-node");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["name"], "hello-node");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "gcr.io/hello-minikube-zero-install/hello-node");

    // 003, lines 661-687
    write_file(&c, "username", "root");
    write_file(&c, "password", "rootpassword");
    write_file(&c, "env_secret", "username=root\npassword=rootpassword\n");
    write_file(&c, "sample.conf", "config=true\n");
    let sets: [(&[&str], &str); 3] = [
        (&["--from-file=./username", "--from-file=./password"], "sample-db-auth"),
        (&["--from-literal=username=root", "--from-literal=password=rootpassword"], "sample-cli-auth"),
        (&["--from-env-file", "./env_secret"], "sample-env-file"),
    ];
    for (flags, name) in sets {
        let mut args = vec!["create", "secret", "generic", name];
        args.extend(flags);
        assert_eq!(ok(&c, k, &args), format!("secret/{name} created\n"));
        let s = json(&c, k, &["get", "secret", name]);
        assert_eq!(s["type"], "Opaque");
        assert_eq!(s["data"], serde_json::json!({"username": b64("root"), "password": b64("rootpassword")}), "{name}");
        let out = ok(&c, k, &["describe", "secret", name]);
        // kubectl ranges over a Go map here, so the two lines come in either order.
        let data = out.split("Data\n====\n").nth(1).unwrap_or_default();
        let mut lines: Vec<&str> = data.lines().collect();
        lines.sort_unstable();
        assert_eq!(lines, ["password:  12 bytes", "username:  4 bytes"], "{out}");
    }
    let err = fails(&c, k, &["create", "secret", "generic", "sample-cli-auth", "--from-literal=a=b"]);
    // kubectl wraps the server's AlreadyExists in its own words: `error: failed to create secret <message>`.
    assert_eq!(err.trim_end(), r#"error: failed to create secret secrets "sample-cli-auth" already exists"#);

    // 003, lines 782-810
    assert_eq!(ok(&c, k, &["create", "configmap", "sample-config", "--from-file=./sample.conf"]), "configmap/sample-config created\n");
    assert_eq!(json(&c, k, &["get", "configmap", "sample-config"])["data"], serde_json::json!({"sample.conf": "config=true\n"}));
    assert_eq!(
        ok(&c, k, &["create", "configmap", "web-config", "--from-literal=connection.max=100", "--from-literal=connection.min=10"]),
        "configmap/web-config created\n"
    );
    assert_eq!(json(&c, k, &["get", "configmap", "web-config"])["data"], serde_json::json!({"connection.max": "100", "connection.min": "10"}));
    let t = rows(&ok(&c, k, &["get", "configmaps"]));
    assert_eq!(t[0], ["NAME", "DATA", "AGE"]);
    assert_eq!(row(&t, "web-config")[1], "2");
}

#[test]
fn create_typed_kubectl_1_33() {
    create_typed(KUBECTL_NEW);
}

#[test]
fn create_typed_kubectl_1_27() {
    create_typed(KUBECTL_OLD);
}

// ---------------------------------------------------------------------------------------------
// expose, run

fn expose_and_run(k: &str) {
    let c = api_only("expose");
    c.apply(k, &seed("004-nginx-deployment.yaml"));
    // 003, line 69
    assert_eq!(ok(&c, k, &["expose", "deployment", "nginx-deployment", "--type=LoadBalancer", "--port=8080"]), "service/nginx-deployment exposed\n");
    let s = json(&c, k, &["get", "service", "nginx-deployment"]);
    assert_eq!(s["spec"]["selector"], serde_json::json!({"app": "nginx"}));
    assert_eq!(s["spec"]["ports"][0]["port"], 8080);
    assert_eq!(s["spec"]["ports"][0]["targetPort"], 8080);
    let node_port = s["spec"]["ports"][0]["nodePort"].as_u64().expect("a node port is allocated");
    assert!((30000..=32767).contains(&node_port), "{node_port}");
    let t = rows(&ok(&c, k, &["get", "service"]));
    let ip = svc_ip(&c, k, "nginx-deployment", "default");
    assert_eq!(row(&t, "nginx-deployment")[1..5], ["LoadBalancer".to_string(), ip, "<pending>".into(), format!("8080:{node_port}/TCP")]);
    let err = fails(&c, k, &["expose", "deployment", "nginx-deployment", "--port=8080"]);
    assert_eq!(err.trim_end(), r#"Error from server (AlreadyExists): services "nginx-deployment" already exists"#);

    // 003, line 604 (without --rm -ti: there is no kubelet to attach to yet)
    assert_eq!(ok(&c, k, &["run", "testpod", "--image=centos:7", "--restart=Never", "--", "curl", "-s", "http://sample-clusterip:8080"]), "pod/testpod created\n");
    let p = json(&c, k, &["get", "pod", "testpod"]);
    assert_eq!(p["metadata"]["labels"], serde_json::json!({"run": "testpod"}));
    assert_eq!(p["spec"]["restartPolicy"], "Never");
    assert_eq!(p["spec"]["containers"][0]["image"], "centos:7");
    assert_eq!(p["spec"]["containers"][0]["args"], serde_json::json!(["curl", "-s", "http://sample-clusterip:8080"]));
    assert_eq!(row(&rows(&ok(&c, k, &["get", "pods"])), "testpod")[1..4], ["0/1", "Pending", "0"]);
}

#[test]
fn expose_and_run_kubectl_1_33() {
    expose_and_run(KUBECTL_NEW);
}

#[test]
fn expose_and_run_kubectl_1_27() {
    expose_and_run(KUBECTL_OLD);
}

// ---------------------------------------------------------------------------------------------
// api-resources, explain, config view

fn discovery_and_config(k: &str) {
    let c = api_only("discovery");
    let t = rows(&ok(&c, k, &["api-resources"]));
    assert_eq!(t[0], ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]);
    assert_eq!(row(&t, "pods")[1..], ["po", "v1", "true", "Pod"]);
    assert_eq!(row(&t, "deployments")[1..], ["deploy", "apps/v1", "true", "Deployment"]);
    assert_eq!(row(&t, "services")[1..], ["svc", "v1", "true", "Service"]);
    assert_eq!(row(&t, "cronjobs")[1..], ["cj", "batch/v1", "true", "CronJob"]);
    assert_eq!(row(&t, "customresourcedefinitions")[1..], ["crd,crds", "apiextensions.k8s.io/v1", "false", "CustomResourceDefinition"]);
    assert_eq!(row(&t, "namespaces")[1..], ["ns", "v1", "false", "Namespace"]);
    assert_eq!(row(&t, "jobs")[1..], ["batch/v1", "true", "Job"], "jobs have no short name");
    let names = ok(&c, k, &["api-resources", "--namespaced=false", "-o", "name"]);
    assert!(names.lines().any(|l| l == "nodes"), "{names}");
    assert!(!names.lines().any(|l| l == "pods"), "{names}");

    let out = ok(&c, k, &["explain", "deployment.spec"]);
    let head: Vec<&str> = out.lines().take(5).collect();
    assert_eq!(normalized(&head.join("\n")), ["GROUP: apps", "KIND: Deployment", "VERSION: v1", "", "FIELD: spec <DeploymentSpec>"], "{out}");
    for field in ["replicas\t<integer>", "selector\t<LabelSelector> -required-", "template\t<PodTemplateSpec> -required-", "strategy\t<DeploymentStrategy>"] {
        assert!(out.lines().any(|l| l.trim() == field), "{field:?} in:\n{out}");
    }
    let err = fails(&c, k, &["explain", "deployment.nope"]);
    assert!(err.contains("field \"nope\" does not exist"), "{err}");

    let out = ok(&c, k, &["config", "view"]);
    let cfg: Value = serde_yaml::from_str(&out).expect("config view prints YAML");
    assert_eq!(cfg["kind"], "Config");
    assert_eq!(cfg["clusters"][0]["cluster"]["server"], format!("https://127.0.0.1:{}", c.port));
    assert_eq!(cfg["clusters"][0]["cluster"]["certificate-authority-data"], "DATA+OMITTED");
    assert_eq!(cfg["users"][0]["user"]["client-certificate-data"], "DATA+OMITTED");
    assert_eq!(cfg["users"][0]["user"]["client-key-data"], "DATA+OMITTED");
    let ctx = cfg["current-context"].as_str().expect("a current context");
    assert!(cfg["contexts"].as_array().unwrap().iter().any(|x| x["name"] == ctx), "{out}");
    let raw = ok(&c, k, &["config", "view", "--raw", "-o", "jsonpath={.users[0].user.client-certificate-data}"]);
    assert!(raw.len() > 100 && !raw.contains("OMITTED"), "--raw shows the certificate");
}

#[test]
fn discovery_and_config_kubectl_1_33() {
    discovery_and_config(KUBECTL_NEW);
}

#[test]
fn discovery_and_config_kubectl_1_27() {
    discovery_and_config(KUBECTL_OLD);
}

// ---------------------------------------------------------------------------------------------
// apply --server-side (conflicts, --force-conflicts) and diff

fn server_side_and_diff(k: &str) {
    let c = api_only("ssa");
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa-cm\ndata:\n  a: \"1\"\n  b: \"2\"\n";
    let file = write_file(&c, "cm.yaml", cm);
    let file = file.to_str().unwrap();
    assert_eq!(ok(&c, k, &["apply", "--server-side", "-f", file]), "configmap/ssa-cm serverside-applied\n");
    assert_eq!(ok(&c, k, &["apply", "--server-side", "-f", file]), "configmap/ssa-cm serverside-applied\n");
    let live = json(&c, k, &["get", "configmap", "ssa-cm", "--show-managed-fields"]);
    let mf = live["metadata"]["managedFields"].as_array().expect("managedFields");
    assert_eq!(mf.len(), 1, "{mf:?}");
    assert_eq!(mf[0]["manager"], "kubectl");
    assert_eq!(mf[0]["operation"], "Apply");
    assert_eq!(mf[0]["fieldsV1"], serde_json::json!({"f:data": {"f:a": {}, "f:b": {}}}));

    // Another manager changing a field kubectl owns conflicts; --force-conflicts takes it over.
    let other = write_file(&c, "cm2.yaml", &cm.replace("a: \"1\"", "a: \"x\""));
    let other = other.to_str().unwrap();
    let err = fails(&c, k, &["apply", "--server-side", "--field-manager=other", "-f", other]);
    assert!(err.starts_with("error: Apply failed with 1 conflict: conflict with \"kubectl\": .data.a\n"), "{err}");
    assert!(err.contains("--force-conflicts"), "{err}");
    assert_eq!(ok(&c, k, &["get", "configmap", "ssa-cm", "-o", "jsonpath={.data.a}"]), "1");
    assert_eq!(ok(&c, k, &["apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", other]), "configmap/ssa-cm serverside-applied\n");
    let live = json(&c, k, &["get", "configmap", "ssa-cm", "--show-managed-fields"]);
    assert_eq!(live["data"], serde_json::json!({"a": "x", "b": "2"}));
    let fields = |m: &str| {
        live["metadata"]["managedFields"].as_array().unwrap().iter().find(|e| e["manager"] == m).map(|e| e["fieldsV1"].clone())
    };
    assert_eq!(fields("other"), Some(serde_json::json!({"f:data": {"f:a": {}, "f:b": {}}})));
    assert_eq!(fields("kubectl"), Some(serde_json::json!({"f:data": {"f:b": {}}})), "kubectl keeps the shared field only");

    // diff: exit 0 and nothing when the file matches, 1 and a unified diff when it does not.
    let out = run(&c, k, &["diff", "-f", other], &[], None);
    assert_eq!(out.status.code(), Some(0), "diff of an equal object: {}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), "");
    let dep = write_file(&c, "dep.yaml", &seed("000-nginx-deployment.yaml"));
    let dep = dep.to_str().unwrap();
    let out = run(&c, k, &["diff", "-f", dep], &[], None);
    assert_eq!(out.status.code(), Some(1), "diff of a new object: {}", stderr(&out));
    assert!(stdout(&out).contains("+  name: nginx-deployment\n"), "{}", stdout(&out));
    ok(&c, k, &["apply", "-f", dep]);
    let out = run(&c, k, &["diff", "-f", dep], &[], None);
    assert_eq!(out.status.code(), Some(0), "diff after apply: {}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), "");
    write_file(&c, "dep.yaml", &seed("000-nginx-deployment.yaml").replace("nginx:1.15", "nginx:1.16"));
    let out = run(&c, k, &["diff", "-f", dep], &[], None);
    assert_eq!(out.status.code(), Some(1), "diff of a changed file: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("diff -u -N "), "{text}");
    let changed: Vec<&str> = text.lines().filter(|l| (l.starts_with('-') || l.starts_with('+')) && !l.starts_with("---") && !l.starts_with("+++")).collect();
    assert_eq!(changed, ["-  generation: 1", "+  generation: 2", "-      - image: nginx:1.15", "+      - image: nginx:1.16"], "{text}");
    // diff changes nothing.
    assert_eq!(ok(&c, k, &["get", "deployment", "nginx-deployment", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]), "nginx:1.15");
}

#[test]
fn server_side_and_diff_kubectl_1_33() {
    server_side_and_diff(KUBECTL_NEW);
}

#[test]
fn server_side_and_diff_kubectl_1_27() {
    server_side_and_diff(KUBECTL_OLD);
}
