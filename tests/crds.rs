//! End-to-end tests of custom resources (issue 12): CRDs established and served from a real
//! `kaji server`, driven by stock kubectl 1.33 and 1.27 and by kube-rs's `DynamicObject`.
mod support;

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{Cluster, KUBECTL_NEW, KUBECTL_OLD, wait_for};

const HOGE_CRD: &str = include_str!("seeds/004-hoges-crd.yaml");

const HOGE: &str = "apiVersion: stable.example.com/v1
kind: Hoge
metadata:
  name: test-hoge
spec:
  fuga: hello
";

/// Waits until the CRD says Established=True; returns how long it took.
fn established(c: &Cluster, crd: &str) -> Duration {
    let start = Instant::now();
    wait_for(&format!("{crd} Established"), Duration::from_secs(10), || {
        let out = c.kubectl(&["get", "crd", crd, "-o", "jsonpath={.status.conditions[?(@.type==\"Established\")].status}"]);
        (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
    });
    start.elapsed()
}

/// The `kubectl api-resources` line of a resource, once discovery lists it.
fn discovered(c: &Cluster, group: &str, plural: &str) -> Option<String> {
    let out = c.kubectl(&["api-resources", "--api-group", group, "--no-headers"]);
    String::from_utf8_lossy(&out.stdout).lines().find(|l| l.split_whitespace().next() == Some(plural)).map(str::to_string)
}

fn stderr_of(c: &Cluster, kubectl: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let out = c.kubectl_with(kubectl, args, stdin);
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn seed_004_hoges_with_kubectl() {
    let c = Cluster::start("crds-hoges");
    let created = Instant::now();
    c.apply(KUBECTL_NEW, HOGE_CRD);
    established(&c, "hoges.stable.example.com");
    // Discovery (aggregated, as kubectl 1.33 reads it) lists the new kind within a second or so.
    let line = wait_for("hoges in discovery", Duration::from_secs(5), || discovered(&c, "stable.example.com", "hoges"));
    let took = created.elapsed();
    eprintln!("CRD applied -> listed by kubectl api-resources: {took:?}");
    assert!(took < Duration::from_secs(3), "discovery took {took:?}");
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols, ["hoges", "hg", "stable.example.com/v1", "true", "Hoge"], "{line}");
    // The CRD's status as upstream writes it.
    let crd = c.json(&["get", "crd", "hoges.stable.example.com"]);
    assert_eq!(crd["status"]["acceptedNames"]["plural"], "hoges");
    assert_eq!(crd["status"]["acceptedNames"]["shortNames"], json!(["hg"]));
    assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
    assert_eq!(crd["spec"]["conversion"]["strategy"], "None");
    let names_accepted = crd["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "NamesAccepted").cloned().unwrap();
    assert_eq!((names_accepted["status"].as_str(), names_accepted["reason"].as_str()), (Some("True"), Some("NoConflicts")));

    // The group/version is registered as a local APIService, as upstream's crdregistration does.
    let svc = wait_for("the APIService v1.stable.example.com", Duration::from_secs(5), || {
        let out = c.kubectl(&["get", "apiservice", "v1.stable.example.com", "-o", "json"]);
        out.status.success().then(|| serde_json::from_slice::<Value>(&out.stdout).expect("json"))
    });
    assert_eq!(svc["metadata"]["labels"]["kube-aggregator.kubernetes.io/automanaged"], "true");
    assert_eq!((svc["spec"]["groupPriorityMinimum"].as_i64(), svc["spec"]["versionPriority"].as_i64()), (Some(1000), Some(100)));

    // The seed's object, as in the seed: apply, then get by plural, singular and short name.
    assert!(c.apply(KUBECTL_NEW, HOGE).contains("hoge.stable.example.com/test-hoge created"));
    for kubectl in [KUBECTL_NEW, KUBECTL_OLD] {
        for what in ["hoges", "hoge", "hg"] {
            let out = c.ok_with(kubectl, &["get", what], None);
            let lines: Vec<&str> = out.lines().collect();
            assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["NAME", "AGE"], "{kubectl} get {what}: {out}");
            assert!(lines[1].starts_with("test-hoge "), "{out}");
        }
        let wide = c.ok_with(kubectl, &["get", "hoges", "-o", "wide"], None);
        assert!(wide.lines().nth(1).is_some_and(|l| l.starts_with("test-hoge")), "{wide}");
    }
    let obj = c.json(&["get", "hoge", "test-hoge"]);
    assert_eq!((obj["apiVersion"].as_str(), obj["kind"].as_str()), (Some("stable.example.com/v1"), Some("Hoge")));
    assert_eq!(obj["spec"]["fuga"], "hello");
    assert_eq!(obj["metadata"]["generation"], 1);

    // Patches: merge and JSON change the spec (and the generation); strategic merge is refused.
    c.ok(&["patch", "hoge", "test-hoge", "--type", "merge", "-p", r#"{"spec":{"fuga":"merged"}}"#]);
    c.ok(&["patch", "hoge", "test-hoge", "--type", "json", "-p", r#"[{"op":"replace","path":"/spec/fuga","value":"json"}]"#]);
    let obj = c.json(&["get", "hoge", "test-hoge"]);
    assert_eq!((obj["spec"]["fuga"].as_str(), obj["metadata"]["generation"].as_i64()), (Some("json"), Some(3)));
    let err = c.fails(&["patch", "hoge", "test-hoge", "-p", r#"{"spec":{"fuga":"strategic"}}"#]);
    assert!(
        err.contains("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"),
        "{err}"
    );
    // Updates are recorded in managedFields, as upstream does for custom objects.
    let managers: Vec<String> = c.json(&["get", "hoge", "test-hoge", "--show-managed-fields"])["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| format!("{}/{}", m["manager"].as_str().unwrap_or_default(), m["operation"].as_str().unwrap_or_default()))
        .collect();
    assert!(managers.contains(&"kubectl-patch/Update".to_string()), "{managers:?}");
    // A label change leaves the generation alone.
    c.ok(&["label", "hoge", "test-hoge", "tier=gold"]);
    assert_eq!(c.json(&["get", "hoge", "test-hoge"])["metadata"]["generation"], 3);
    // Server-side apply creates and updates.
    let applied = c.ok_with(KUBECTL_NEW, &["apply", "--server-side", "-f", "-"], Some(&HOGE.replace("test-hoge", "ssa-hoge")));
    assert!(applied.contains("serverside-applied"), "{applied}");
    c.ok_with(KUBECTL_NEW, &["apply", "--server-side", "-f", "-"], Some(&HOGE.replace("test-hoge", "ssa-hoge").replace("hello", "again")));
    assert_eq!(c.json(&["get", "hoge", "ssa-hoge"])["spec"]["fuga"], "again");
    // kubectl 1.27 applies client-side.
    c.apply(KUBECTL_OLD, &HOGE.replace("test-hoge", "old-hoge"));

    // Field and label selectors.
    let out = c.ok(&["get", "hoges", "-l", "tier=gold", "-o", "name"]);
    assert_eq!(out.trim(), "hoge.stable.example.com/test-hoge");
    let out = c.ok(&["get", "hoges", "--field-selector", "metadata.name=ssa-hoge", "-o", "name"]);
    assert_eq!(out.trim(), "hoge.stable.example.com/ssa-hoge");
    let err = c.fails(&["get", "hoges", "--field-selector", "spec.fuga=x"]);
    assert!(err.contains("field label not supported: spec.fuga"), "{err}");

    // Unknown fields: Warn by default, an error with --validate=strict.
    let with_unknown = HOGE.replace("test-hoge", "unknown-hoge").replace("  fuga: hello\n", "  fuga: hello\n  foo: bar\n");
    let (ok, _, stderr) = stderr_of(&c, KUBECTL_NEW, &["apply", "--server-side", "--validate=warn", "-f", "-"], Some(&with_unknown));
    assert!(ok && stderr.contains("unknown field \"spec.foo\""), "{stderr}");
    assert!(c.json(&["get", "hoge", "unknown-hoge"])["spec"].get("foo").is_none());
    let (ok, _, stderr) = stderr_of(&c, KUBECTL_NEW, &["create", "--validate=strict", "-f", "-"], Some(&with_unknown.replace("unknown-hoge", "strict-hoge")));
    assert!(!ok && stderr.contains("strict decoding error: unknown field \"spec.foo\""), "{stderr}");

    // A watch sees a new object.
    let mut watch = Command::new(KUBECTL_NEW)
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(["get", "hoges", "--watch", "-o", "name"])
        .env("HOME", c.data_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl --watch");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The initial list first, then the new one.
    wait_for("the watch's initial list", Duration::from_secs(10), || rx.try_recv().ok().filter(|l| l.contains("test-hoge")));
    c.apply(KUBECTL_NEW, &HOGE.replace("test-hoge", "watched-hoge"));
    wait_for("the watch to see watched-hoge", Duration::from_secs(10), || rx.try_recv().ok().filter(|l| l.contains("watched-hoge")));
    let _ = watch.kill();
    let _ = watch.wait();

    // Deleting the namespace deletes its custom objects.
    c.ok(&["create", "namespace", "scratch"]);
    c.ok_with(KUBECTL_NEW, &["apply", "-n", "scratch", "-f", "-"], Some(&HOGE.replace("test-hoge", "ns-hoge")));
    c.ok(&["delete", "namespace", "scratch", "--wait=false"]);
    wait_for("namespace scratch gone", Duration::from_secs(30), || {
        let out = c.kubectl(&["get", "namespace", "scratch"]);
        (!out.status.success()).then_some(())
    });
    let raw = c.kubectl(&["get", "--raw", "/apis/stable.example.com/v1/namespaces/scratch/hoges"]);
    let list: Value = serde_json::from_slice(&raw.stdout).unwrap_or(json!({}));
    assert_eq!(list["items"], json!([]), "{list}");

    // Deleting the CRD deletes its objects, then the CRD, and discovery forgets the kind; an
    // open watch sees the objects' DELETED events and then ends (upstream destroys the storage).
    let mut raw_watch = std::process::Command::new(KUBECTL_NEW)
        .args(["--kubeconfig", c.kubeconfig.to_str().expect("path"), "get", "--raw", "/apis/stable.example.com/v1/hoges?watch=1&timeoutSeconds=120"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl get --raw ?watch");
    let watch_out = raw_watch.stdout.take().expect("stdout");
    let (wtx, wrx) = std::sync::mpsc::channel::<Option<String>>();
    std::thread::spawn(move || {
        for line in BufReader::new(watch_out).lines().map_while(Result::ok) {
            let _ = wtx.send(Some(line));
        }
        let _ = wtx.send(None);
    });
    wait_for("the raw watch's initial events", Duration::from_secs(10), || wrx.recv_timeout(Duration::from_millis(100)).ok().flatten().filter(|l| l.contains("ADDED")));
    let start = Instant::now();
    c.ok(&["delete", "crd", "hoges.stable.example.com", "--timeout=30s"]);
    let mut seen = Vec::new();
    wait_for("the watch to end after the CRD's deletion", Duration::from_secs(10), || match wrx.recv_timeout(Duration::from_millis(100)) {
        Ok(Some(line)) => {
            seen.push(line);
            None
        }
        Ok(None) => Some(()),
        Err(_) => None,
    });
    let _ = raw_watch.wait();
    assert!(seen.iter().any(|l| l.contains("\"DELETED\"") && l.contains("watched-hoge")), "the watch saw the objects deleted: {seen:?}");
    wait_for("hoges gone from discovery", Duration::from_secs(5), || discovered(&c, "stable.example.com", "hoges").is_none().then_some(()));
    assert!(start.elapsed() < Duration::from_secs(10), "deleting the CRD took {:?}", start.elapsed());
    let err = c.fails(&["get", "hoges"]);
    assert!(err.contains("the server doesn't have a resource type \"hoges\""), "{err}");
    wait_for("the APIService gone", Duration::from_secs(5), || (!c.kubectl(&["get", "apiservice", "v1.stable.example.com"]).status.success()).then_some(()));
    // Made again, the CRD has no objects: they were deleted with the old one.
    c.apply(KUBECTL_NEW, HOGE_CRD);
    established(&c, "hoges.stable.example.com");
    wait_for("hoges back in discovery", Duration::from_secs(5), || discovered(&c, "stable.example.com", "hoges"));
    let raw = c.ok(&["get", "--raw", "/apis/stable.example.com/v1/hoges"]);
    let list: Value = serde_json::from_str(&raw).expect("a list");
    assert_eq!(list["items"], json!([]), "{list}");
}

const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd], categories: [all]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              replicas: {type: integer}
              color: {type: string}
          status:
            type: object
            properties:
              replicas: {type: integer}
              selector: {type: string}
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas, labelSelectorPath: .status.selector}
    selectableFields:
    - jsonPath: .spec.color
    additionalPrinterColumns:
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Color, type: string, jsonPath: .spec.color, priority: 1}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
  - name: v1beta1
    served: true
    storage: false
    deprecated: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
    subresources:
      status: {}
  - name: v1alpha1
    served: false
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

const WIDGET: &str = "apiVersion: example.com/v1
kind: Widget
metadata:
  name: w1
  labels: {size: big}
spec:
  replicas: 1
  color: red
";

#[test]
fn subresources_versions_selectors_and_conflicts() {
    let c = Cluster::start("crds-widgets");
    c.apply(KUBECTL_NEW, WIDGET_CRD);
    established(&c, "widgets.example.com");
    wait_for("widgets in discovery", Duration::from_secs(5), || discovered(&c, "example.com", "widgets"));
    c.apply(KUBECTL_NEW, WIDGET);
    c.apply(KUBECTL_NEW, &WIDGET.replace("w1", "w2").replace("red", "blue").replace("big", "small"));

    // Discovery: the preferred version first, subresources, the unserved version absent.
    let group: Value = serde_json::from_str(&c.ok(&["get", "--raw", "/apis/example.com"])).expect("APIGroup");
    assert_eq!(group["preferredVersion"]["version"], "v1", "{group}");
    let versions: Vec<&str> = group["versions"].as_array().unwrap().iter().filter_map(|v| v["version"].as_str()).collect();
    assert_eq!(versions, ["v1", "v1beta1"]);
    let list: Value = serde_json::from_str(&c.ok(&["get", "--raw", "/apis/example.com/v1"])).expect("APIResourceList");
    let names: Vec<&str> = list["resources"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["widgets", "widgets/status", "widgets/scale"]);
    assert_eq!(list["resources"][0]["categories"], json!(["all"]));
    assert_eq!(list["resources"][0]["singularName"], "widget");
    let err = c.fails(&["get", "--raw", "/apis/example.com/v1alpha1/namespaces/default/widgets"]);
    assert!(err.contains("NotFound") || err.contains("the server could not find the requested resource"), "{err}");

    // Printer columns, the priority one with -o wide (both kubectl versions).
    for kubectl in [KUBECTL_NEW, KUBECTL_OLD] {
        let out = c.ok_with(kubectl, &["get", "widgets"], None);
        let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows[0], ["NAME", "REPLICAS", "AGE"], "{out}");
        assert_eq!(rows[1][..2], ["w1", "1"], "{out}");
        let out = c.ok_with(kubectl, &["get", "widgets", "-o", "wide"], None);
        let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows[0], ["NAME", "REPLICAS", "COLOR", "AGE"], "{out}");
        assert_eq!(rows[2][..3], ["w2", "1", "blue"], "{out}");
    }

    // The deprecated version: same objects, its own apiVersion, upstream's warning.
    for kubectl in [KUBECTL_NEW, KUBECTL_OLD] {
        let (ok, stdout, stderr) = stderr_of(&c, kubectl, &["get", "widgets.v1beta1.example.com", "w1", "-o", "json"], None);
        assert!(ok, "{stderr}");
        assert!(stderr.contains("Warning: example.com/v1beta1 Widget is deprecated"), "{stderr}");
        let obj: Value = serde_json::from_str(&stdout).expect("json");
        assert_eq!(obj["apiVersion"], "example.com/v1beta1");
        assert_eq!(obj["spec"]["color"], "red");
    }
    // Written through v1beta1, read through v1.
    c.ok(&["patch", "widgets.v1beta1.example.com", "w2", "--type", "merge", "-p", r#"{"spec":{"color":"green"}}"#]);
    let w2 = c.json(&["get", "widgets.v1.example.com", "w2"]);
    assert_eq!((w2["apiVersion"].as_str(), w2["spec"]["color"].as_str()), (Some("example.com/v1"), Some("green")));

    // Status subresource: a main write ignores status, /status writes only status.
    c.ok(&[
        "patch",
        "widget",
        "w1",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"replicas":2,"selector":"app=w1"},"spec":{"color":"ignored"}}"#,
    ]);
    c.ok(&["patch", "widget", "w1", "--type", "merge", "-p", r#"{"status":{"replicas":9}}"#]);
    let w1 = c.json(&["get", "widget", "w1"]);
    assert_eq!(w1["status"]["replicas"], 2, "{w1}");
    assert_eq!(w1["spec"]["color"], "red");
    assert_eq!(w1["metadata"]["generation"], 1);

    // Scale subresource, with kubectl scale.
    let scale: Value = serde_json::from_str(&c.ok(&["get", "--raw", "/apis/example.com/v1/namespaces/default/widgets/w1/scale"])).expect("Scale");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!((scale["spec"]["replicas"].as_i64(), scale["status"]["replicas"].as_i64()), (Some(1), Some(2)));
    assert_eq!(scale["status"]["selector"], "app=w1");
    for (kubectl, n) in [(KUBECTL_NEW, 3), (KUBECTL_OLD, 4)] {
        let out = c.ok_with(kubectl, &["scale", "widget", "w1", "--replicas", &n.to_string()], None);
        assert!(out.contains("widget.example.com/w1 scaled"), "{out}");
        assert_eq!(c.json(&["get", "widget", "w1"])["spec"]["replicas"], n);
    }
    assert_eq!(c.json(&["get", "widget", "w1"])["metadata"]["generation"], 3);

    // Selectable fields, metadata fields and labels.
    assert_eq!(c.ok(&["get", "widgets", "--field-selector", "spec.color=red", "-o", "name"]).trim(), "widget.example.com/w1");
    assert_eq!(c.ok(&["get", "widgets", "--field-selector", "spec.color!=red", "-o", "name"]).trim(), "widget.example.com/w2");
    assert_eq!(c.ok(&["get", "widgets", "--field-selector", "metadata.namespace=default,metadata.name=w2", "-o", "name"]).trim(), "widget.example.com/w2");
    assert_eq!(c.ok(&["get", "wd", "-l", "size=small", "-o", "name"]).trim(), "widget.example.com/w2");
    let err = c.fails(&["get", "widgets", "--field-selector", "spec.replicas=1"]);
    assert!(err.contains("field label not supported: spec.replicas"), "{err}");

    // Category `all`.
    for kubectl in [KUBECTL_NEW, KUBECTL_OLD] {
        let out = c.ok_with(kubectl, &["get", "all"], None);
        assert!(out.contains("widget.example.com/w1") && out.contains("widget.example.com/w2"), "{out}");
    }

    // A second CRD of the group asking for a taken short name is not established.
    c.apply(
        KUBECTL_NEW,
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, kind: Gadget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object}}
",
    );
    let cond = wait_for("gadgets' NamesAccepted", Duration::from_secs(10), || {
        let crd = c.json(&["get", "crd", "gadgets.example.com"]);
        crd["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "NamesAccepted").cloned())
    });
    assert_eq!((cond["status"].as_str(), cond["reason"].as_str()), (Some("False"), Some("ShortNamesConflict")), "{cond}");
    assert_eq!(cond["message"], "\"wd\" is already in use");
    let crd = c.json(&["get", "crd", "gadgets.example.com"]);
    let est = crd["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Established").cloned().unwrap();
    assert_eq!((est["status"].as_str(), est["reason"].as_str()), (Some("False"), Some("NotAccepted")));
    assert!(discovered(&c, "example.com", "gadgets").is_none());
    // A CRD named other than <plural>.<group> is refused.
    let (ok, _, stderr) = stderr_of(&c, KUBECTL_NEW, &["apply", "-f", "-"], Some(&WIDGET_CRD.replace("name: widgets.example.com", "name: other.example.com")));
    assert!(!ok && stderr.contains("must be spec.names.plural+\".\"+spec.group"), "{stderr}");

    // A cluster-scoped kind.
    c.apply(
        KUBECTL_NEW,
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: clusterthings.example.com}
spec:
  group: example.com
  scope: Cluster
  names: {plural: clusterthings, singular: clusterthing, kind: ClusterThing}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
",
    );
    established(&c, "clusterthings.example.com");
    let line = wait_for("clusterthings in discovery", Duration::from_secs(5), || discovered(&c, "example.com", "clusterthings"));
    assert!(line.contains(" false "), "{line}");
    c.apply(KUBECTL_NEW, "apiVersion: example.com/v1\nkind: ClusterThing\nmetadata: {name: one}\ndata: {x: 1}\n");
    let out = c.ok(&["get", "clusterthings"]);
    assert!(out.lines().nth(1).is_some_and(|l| l.starts_with("one")), "{out}");
    let one = c.json(&["get", "clusterthing", "one"]);
    assert!(one["metadata"].get("namespace").is_none(), "{one}");
    assert_eq!(one["data"]["x"], 1);
    let raw = c.kubectl(&["get", "--raw", "/apis/example.com/v1/namespaces/default/clusterthings/one"]);
    assert!(!raw.status.success());

    // After a restart the custom kinds are served from the first request on.
    let mut c = c;
    c.kill();
    c.spawn();
    let out = c.ok(&["get", "widgets", "-o", "name"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["widget.example.com/w1", "widget.example.com/w2"]);
}

async fn client_for(c: &Cluster) -> Client {
    let kubeconfig = Kubeconfig::read_from(&c.kubeconfig).expect("reading the kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("kube config");
    Client::try_from(config).expect("kube client")
}

#[test]
fn kube_rs_dynamic_objects() {
    let c = Cluster::start("crds-kube-rs");
    c.apply(KUBECTL_NEW, HOGE_CRD);
    established(&c, "hoges.stable.example.com");
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime").block_on(async {
        let client = client_for(&c).await;
        let ar = ApiResource {
            group: "stable.example.com".into(),
            version: "v1".into(),
            api_version: "stable.example.com/v1".into(),
            kind: "Hoge".into(),
            plural: "hoges".into(),
        };
        let hoges: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
        let start_rv = hoges.list(&Default::default()).await.expect("list").metadata.resource_version.expect("resourceVersion");
        let mut events = hoges.watch(&WatchParams::default().timeout(30), &start_rv).await.expect("watch").boxed();

        let obj: DynamicObject =
            serde_json::from_value(json!({"apiVersion": "stable.example.com/v1", "kind": "Hoge", "metadata": {"name": "rs"}, "spec": {"fuga": "a"}}))
                .expect("object");
        let created = hoges.create(&PostParams::default(), &obj).await.expect("create");
        assert!(created.metadata.uid.is_some());
        match hoges.create(&PostParams::default(), &obj).await {
            Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists")),
            other => panic!("expected 409, got {other:?}"),
        }
        let mut got = hoges.get("rs").await.expect("get");
        assert_eq!(got.data["spec"]["fuga"], "a");
        got.data["spec"]["fuga"] = json!("b");
        let replaced = hoges.replace("rs", &PostParams::default(), &got).await.expect("replace");
        assert_eq!(replaced.metadata.generation, Some(2));
        // A replace with the old resourceVersion conflicts.
        match hoges.replace("rs", &PostParams::default(), &got).await {
            Err(kube::Error::Api(s)) => assert_eq!(s.code, 409),
            other => panic!("expected 409, got {other:?}"),
        }
        let patched = hoges.patch("rs", &PatchParams::default(), &Patch::Merge(json!({"spec": {"fuga": "c"}}))).await.expect("merge patch");
        assert_eq!(patched.data["spec"]["fuga"], "c");
        let applied = hoges
            .patch(
                "rs",
                &PatchParams::apply("kube-rs-test").force(),
                &Patch::Apply(json!({"apiVersion": "stable.example.com/v1", "kind": "Hoge", "metadata": {"name": "rs"}, "spec": {"fuga": "d"}})),
            )
            .await
            .expect("apply");
        assert_eq!(applied.data["spec"]["fuga"], "d");
        assert_eq!(hoges.list(&Default::default()).await.expect("list").items.len(), 1);
        hoges.delete("rs", &DeleteParams::default()).await.expect("delete");

        let mut seen = Vec::new();
        while seen.last().map(String::as_str) != Some("DELETED") {
            let ev = tokio::time::timeout(Duration::from_secs(10), events.try_next())
                .await
                .unwrap_or_else(|_| panic!("no watch event in 10s; saw {seen:?}"))
                .expect("watch event")
                .expect("watch open");
            match &ev {
                WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => assert_eq!(o.metadata.name.as_deref(), Some("rs")),
                _ => {}
            }
            let kind = match ev {
                WatchEvent::Added(_) => "ADDED",
                WatchEvent::Modified(_) => "MODIFIED",
                WatchEvent::Deleted(_) => "DELETED",
                WatchEvent::Bookmark(_) => continue,
                WatchEvent::Error(e) => panic!("watch error {e:?}"),
            };
            seen.push(kind.to_string());
        }
        assert_eq!(seen, ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED", "DELETED"]);
    });
}

const GADGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.ssa.example.com
spec:
  group: ssa.example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    port: {type: integer}
              tags:
                type: array
                x-kubernetes-list-type: set
                items: {type: string}
"#;

fn gadget(spec: &str) -> String {
    format!("apiVersion: ssa.example.com/v1\nkind: Gadget\nmetadata: {{name: g, namespace: default}}\nspec: {spec}\n")
}

fn apply_as(c: &Cluster, manager: &str, manifest: &str) -> std::process::Output {
    c.kubectl_with(KUBECTL_NEW, &["apply", "--server-side", "--field-manager", manager, "-f", "-"], Some(manifest))
}

/// Server-side apply of custom objects follows the CRD schema's list types: each manager owns
/// its entries of a `map` list (by key) and of a `set`, and conflicts name the entry's field.
#[test]
fn server_side_apply_follows_the_schemas_list_types() {
    let c = Cluster::start("crd-ssa");
    c.apply(KUBECTL_NEW, GADGET_CRD);
    established(&c, "gadgets.ssa.example.com");
    wait_for("gadgets served", Duration::from_secs(10), || c.kubectl(&["get", "gadgets"]).status.success().then_some(()));
    let out = apply_as(&c, "a", &gadget("{ports: [{name: http, port: 80}], tags: [red]}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = apply_as(&c, "b", &gadget("{ports: [{name: https, port: 443}], tags: [blue]}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let g = c.json(&["get", "gadget", "g", "--show-managed-fields"]);
    assert_eq!(g["spec"]["ports"], json!([{"name": "http", "port": 80}, {"name": "https", "port": 443}]), "{g}");
    assert_eq!(g["spec"]["tags"], json!(["red", "blue"]), "{g}");
    let managers: Vec<&str> = g["metadata"]["managedFields"].as_array().expect("managedFields").iter().filter_map(|m| m["manager"].as_str()).collect();
    assert_eq!(managers, ["a", "b"]);

    // b changing a's entry conflicts, naming the entry by its key.
    let out = apply_as(&c, "b", &gadget("{ports: [{name: https, port: 443}, {name: http, port: 8080}], tags: [blue]}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("Apply failed with 1 conflict: conflict with \"a\": .spec.ports[name=\"http\"].port"), "{err}");

    // a dropping its entry and tag removes them; b's stay.
    let out = apply_as(&c, "a", &gadget("{}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let g = c.json(&["get", "gadget", "g"]);
    assert_eq!(g["spec"]["ports"], json!([{"name": "https", "port": 443}]), "{g}");
    assert_eq!(g["spec"]["tags"], json!(["blue"]), "{g}");
}
