//! End-to-end tests of the resource metrics pipeline and the HorizontalPodAutoscaler: the
//! kubelet's `/metrics/resource` and `/stats/summary`, `metrics.k8s.io` served by the API server
//! (`kubectl top`), and the HPA controller scaling Deployments, with stock kubectl.
//!
//! Windows are shortened through the documented flags: `--metric-resolution` (metrics-server's,
//! 15 s upstream), `--horizontal-pod-autoscaler-sync-period` (15 s) and
//! `--horizontal-pod-autoscaler-downscale-stabilization` (5 min).

mod support;

use std::time::{Duration, Instant};
use support::node::Node;
use support::{Cluster, wait_for};

const FAST: &[&str] = &[
    "--metric-resolution",
    "2s",
    "--horizontal-pod-autoscaler-sync-period",
    "2s",
    "--horizontal-pod-autoscaler-downscale-stabilization",
    "10s",
];

/// Parses kubectl top's CPU cell (`250m`, `1`) into millicores.
fn millicores(cell: &str) -> Option<u64> {
    match cell.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => cell.parse::<u64>().ok().map(|c| c * 1000),
    }
}

fn replicas(c: &Cluster, deployment: &str) -> i64 {
    let out = c.kubectl(&[
        "get",
        "deployment",
        deployment,
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(-1)
}

/// GETs `url` from a kubelet (or the hollow kubelet endpoint) as the API server does: with the
/// admin client certificate of the kubeconfig, verifying the kubelet against the cluster CA.
fn kubelet_get(c: &Cluster, url: &str) -> String {
    let kubeconfig = std::fs::read_to_string(&c.kubeconfig).expect("kubeconfig");
    let field = |k: &str| {
        let b64 = kubeconfig
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{k}: ")))
            .unwrap_or_else(|| panic!("{k} in the kubeconfig"));
        let mut child = std::process::Command::new("base64")
            .arg("-d")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("running base64");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), b64.trim().as_bytes())
            .expect("writing to base64");
        child.wait_with_output().expect("base64 output").stdout
    };
    let dir = c.data_dir().join("curl");
    std::fs::create_dir_all(&dir).expect("curl dir");
    for (file, k) in [
        ("ca.crt", "certificate-authority-data"),
        ("client.crt", "client-certificate-data"),
        ("client.key", "client-key-data"),
    ] {
        std::fs::write(dir.join(file), field(k)).expect("writing a certificate");
    }
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(dir.join("ca.crt"))
        .arg("--cert")
        .arg(dir.join("client.crt"))
        .arg("--key")
        .arg(dir.join("client.key"))
        .arg(url)
        .output()
        .expect("running curl");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn hpa_events(c: &Cluster) -> String {
    c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=HorizontalPodAutoscaler",
        "-o",
        "custom-columns=REASON:.reason,MESSAGE:.message",
    ])
}

#[test]
fn kubectl_top_shows_real_usage_of_a_container_and_404s_a_pod_without_stats() {
    let n = Node::start_with("metrics-top", FAST);
    n.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: burner
  labels: {app: burner}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: burn
    image: busybox:latest
    command: ["sh", "-c", "while :; do :; done"]
    resources:
      requests: {cpu: 50m}
      limits: {cpu: 300m}
"#,
    );
    n.wait_running("burner");
    let c = &n.cluster;
    let started = Instant::now();
    let node_line = wait_for(
        "kubectl top node to show the node",
        Duration::from_secs(60),
        || {
            let out = c.kubectl(&["top", "node", "--no-headers"]);
            let s = String::from_utf8_lossy(&out.stdout).into_owned();
            s.lines()
                .find(|l| l.starts_with("kaji-test-node"))
                .map(str::to_string)
        },
    );
    eprintln!(
        "kubectl top node after {:?}: {node_line}",
        started.elapsed()
    );
    let cells: Vec<&str> = node_line.split_whitespace().collect();
    assert!(
        millicores(cells[1]).is_some_and(|m| m > 0),
        "node CPU: {node_line}"
    );
    assert!(
        cells[3].ends_with("Mi") || cells[3].ends_with("Gi"),
        "node memory: {node_line}"
    );
    let line = wait_for(
        "kubectl top pod --containers to show the burning container",
        Duration::from_secs(60),
        || {
            let out = c.kubectl(&["top", "pod", "burner", "--containers", "--no-headers"]);
            let s = String::from_utf8_lossy(&out.stdout).into_owned();
            // The loop runs against a 300m limit: well above 100m once two samples exist.
            s.lines()
                .find(|l| l.split_whitespace().nth(1) == Some("burn"))
                .filter(|l| {
                    l.split_whitespace()
                        .nth(2)
                        .and_then(millicores)
                        .is_some_and(|m| m >= 100)
                })
                .map(str::to_string)
        },
    );
    eprintln!("kubectl top pod --containers: {line}");
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells[0], "burner");
    assert!(
        millicores(cells[2]).is_some_and(|m| m <= 400),
        "a 300m limit caps the usage: {line}"
    );
    assert!(
        cells[3].ends_with("Mi") || cells[3].ends_with("Ki"),
        "memory: {line}"
    );
    // The metrics API object, as metrics-server serves it.
    let raw = c.ok(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/burner",
    ]);
    eprintln!("PodMetrics: {raw}");
    let pm: serde_json::Value = serde_json::from_str(&raw).expect("PodMetrics JSON");
    assert_eq!(pm["kind"], "PodMetrics");
    assert_eq!(pm["metadata"]["labels"]["app"], "burner");
    assert!(
        pm["window"].as_str().is_some_and(|w| w.ends_with('s')),
        "{pm}"
    );
    let cpu = pm["containers"][0]["usage"]["cpu"]
        .as_str()
        .unwrap_or_default();
    assert!(
        cpu.ends_with('n') || cpu.ends_with('u') || cpu.ends_with('m'),
        "cpu in nano-cores: {pm}"
    );
    // Discovery lists the group.
    let groups = c.ok(&["api-versions"]);
    assert!(
        groups.lines().any(|l| l == "metrics.k8s.io/v1beta1"),
        "{groups}"
    );
    // The kubelet's own endpoints, read as metrics-server and kubectl get --raw .../proxy would.
    let node = c.json(&["get", "node", "kaji-test-node"]);
    let ip = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .expect("node InternalIP")
        .to_string();
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .expect("kubelet port");
    let text = kubelet_get(c, &format!("https://{ip}:{port}/metrics/resource"));
    assert!(
        text.contains("container_cpu_usage_seconds_total{container=\"burn\",namespace=\"default\",pod=\"burner\"}"),
        "{text}"
    );
    for metric in [
        "node_cpu_usage_seconds_total ",
        "node_memory_working_set_bytes ",
        "container_memory_working_set_bytes{",
        "container_start_time_seconds{",
        "pod_cpu_usage_seconds_total{",
        "pod_memory_working_set_bytes{",
        "\nscrape_error 0",
    ] {
        assert!(text.contains(metric), "{metric} in {text}");
    }
    // Two summaries a second apart: the second has usageNanoCores from the first's counters.
    kubelet_get(c, &format!("https://{ip}:{port}/stats/summary"));
    std::thread::sleep(Duration::from_millis(1100));
    let summary: serde_json::Value =
        serde_json::from_str(&kubelet_get(c, &format!("https://{ip}:{port}/stats/summary")))
            .expect("summary JSON");
    assert_eq!(summary["node"]["nodeName"], "kaji-test-node");
    assert!(summary["node"]["cpu"]["usageNanoCores"].as_u64().is_some_and(|n| n > 0), "{summary}");
    assert!(summary["node"]["memory"]["workingSetBytes"].as_u64().is_some_and(|n| n > 0));
    let pod = summary["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["podRef"]["name"] == "burner")
        .cloned()
        .expect("the burner in the summary");
    let container = &pod["containers"][0];
    assert_eq!(container["name"], "burn");
    // Half a core or less (the 300m limit), more than 100m (the loop).
    let nano = container["cpu"]["usageNanoCores"].as_u64().unwrap_or(0);
    assert!((100_000_000..=400_000_000).contains(&nano), "{container}");
    assert!(container["cpu"]["usageCoreNanoSeconds"].as_u64().is_some_and(|n| n > 0));
    assert!(container["memory"]["workingSetBytes"].as_u64().is_some_and(|n| n > 0), "{container}");
    assert!(pod["cpu"]["usageCoreNanoSeconds"].as_u64().is_some_and(|n| n > 0), "{pod}");
    // A pod that never ran has no stats: metrics-server's 404.
    n.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: pending\nspec:\n  nodeSelector: {nowhere: \"true\"}\n  containers:\n  - name: c\n    image: busybox:latest\n");
    let err = c.fails(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/pending",
    ]);
    assert!(
        err.contains(
            "Error from server (NotFound): podmetrics.metrics.k8s.io \"default/pending\" not found"
        ),
        "{err}"
    );
    let err = c.fails(&["top", "pod", "pending"]);
    assert!(
        err.contains("podmetrics.metrics.k8s.io \"default/pending\" not found"),
        "{err}"
    );
}

#[test]
fn hpa_scales_a_deployment_on_hollow_nodes_up_and_back_down() {
    let mut flags = vec!["--hollow-nodes", "2"];
    flags.extend_from_slice(FAST);
    let c = Cluster::start_with("metrics-hpa-hollow", &flags);
    wait_for("hollow nodes", Duration::from_secs(60), || {
        let out = c.kubectl(&["get", "nodes", "--no-headers"]);
        (String::from_utf8_lossy(&out.stdout)
            .matches(" Ready")
            .count()
            == 2)
            .then_some(())
    });
    // Synthetic usage (simulation): each pod uses 90m of its 100m request.
    c.apply(
        support::KUBECTL_NEW,
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {kaji.io/hollow-cpu-millicores: "90", kaji.io/hollow-memory-bytes: "8388608"}
    spec:
      containers:
      - name: web
        image: nginx
        resources: {requests: {cpu: 100m, memory: 16Mi}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 5
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
"#,
    );
    // kubectl top works for hollow pods too.
    let top = wait_for(
        "kubectl top pod on a hollow node",
        Duration::from_secs(60),
        || {
            let out = c.kubectl(&["top", "pod", "-l", "app=web", "--no-headers"]);
            let s = String::from_utf8_lossy(&out.stdout).into_owned();
            s.contains("90m").then_some(s)
        },
    );
    assert!(top.contains("8Mi"), "{top}");
    // The hollow kubelet endpoint (simulation) serves the same endpoints.
    let node = c.json(&["get", "node", "hollow-node-0"]);
    let endpoint = node["metadata"]["annotations"]["kaji.io/hollow-kubelet-endpoint"]
        .as_str()
        .expect("the hollow kubelet endpoint annotation")
        .to_string();
    let text = kubelet_get(&c, &format!("https://{endpoint}/hollow/hollow-node-0/metrics/resource"));
    assert!(text.contains("node_cpu_usage_seconds_total "), "{text}");
    let summary = kubelet_get(&c, &format!("https://{endpoint}/hollow/hollow-node-0/stats/summary"));
    assert!(summary.contains("\"nodeName\":\"hollow-node-0\""), "{summary}");
    let started = Instant::now();
    wait_for(
        "the HPA to scale web to its maximum of 5",
        Duration::from_secs(90),
        || (replicas(&c, "web") == 5).then_some(()),
    );
    eprintln!("1 -> 5 replicas in {:?}", started.elapsed());
    let events = hpa_events(&c);
    assert!(
        events.contains(
            "New size: 2; reason: cpu resource utilization (percentage of request) above target"
        ),
        "{events}"
    );
    let hpa = wait_for("the HPA status", Duration::from_secs(30), || {
        let h = c.json(&["get", "horizontalpodautoscalers.v2.autoscaling", "web"]);
        (h["status"]["currentReplicas"] == 5
            && h["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"] == 90)
            .then_some(h)
    });
    let cond = |h: &serde_json::Value, ty: &str| {
        h["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == ty)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        cond(&hpa, "ScalingActive")["reason"],
        "ValidMetricFound",
        "{hpa}"
    );
    assert_eq!(cond(&hpa, "AbleToScale")["status"], "True", "{hpa}");
    let limited = wait_for(
        "ScalingLimited TooManyReplicas",
        Duration::from_secs(30),
        || {
            let h = c.json(&["get", "horizontalpodautoscalers.v2.autoscaling", "web"]);
            let l = cond(&h, "ScalingLimited");
            (l["reason"] == "TooManyReplicas").then_some(l)
        },
    );
    assert_eq!(limited["status"], "True");
    assert!(hpa["status"]["lastScaleTime"].is_string());
    // The v1 view keeps the CPU target and shows the current utilization.
    let v1 = c.json(&["get", "horizontalpodautoscalers.v1.autoscaling", "web"]);
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
    assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 90);
    let table = c.ok(&["get", "hpa", "web"]);
    assert!(table.contains("cpu: 90%/50%"), "{table}");
    // Usage drops to 10%: after the stabilization window, back to 1 (ceil(0.2 * 5)).
    c.ok(&[
        "annotate",
        "pods",
        "-l",
        "app=web",
        "--overwrite",
        "kaji.io/hollow-cpu-millicores=10",
    ]);
    let started = Instant::now();
    wait_for(
        "the HPA to scale web back down to 1",
        Duration::from_secs(90),
        || (replicas(&c, "web") == 1).then_some(()),
    );
    let took = started.elapsed();
    eprintln!("5 -> 1 replicas in {took:?} (downscale stabilization 10 s)");
    assert!(
        took >= Duration::from_secs(8),
        "the stabilization window holds the scale-down: {took:?}"
    );
    let events = hpa_events(&c);
    assert!(
        events.contains("New size: 1; reason: All metrics below target"),
        "{events}"
    );
}

#[test]
fn hpa_validation_and_missing_targets() {
    let c = Cluster::start_with(
        "metrics-hpa-bad",
        &["--horizontal-pod-autoscaler-sync-period", "1s"],
    );
    let out = c.kubectl_with(
        support::KUBECTL_NEW,
        &["create", "-f", "-"],
        Some("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: bad}\nspec:\n  scaleTargetRef: {name: web}\n  minReplicas: 5\n  maxReplicas: 2\n"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("spec.scaleTargetRef.kind: Required value"),
        "{err}"
    );
    assert!(
        err.contains(
            "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"
        ),
        "{err}"
    );
    // An HPA whose target does not exist: AbleToScale False, FailedGetScale, no hot loop.
    c.apply(
        support::KUBECTL_NEW,
        "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: ghost}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: ghost}\n  maxReplicas: 5\n  targetCPUUtilizationPercentage: 50\n",
    );
    let h = wait_for("AbleToScale False", Duration::from_secs(30), || {
        let h = c.json(&["get", "horizontalpodautoscalers.v2.autoscaling", "ghost"]);
        h["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "AbleToScale" && c["status"] == "False")
            .cloned()
    });
    assert_eq!(h["reason"], "FailedGetScale");
    assert!(
        h["message"]
            .as_str()
            .unwrap_or_default()
            .contains("deployments.apps \"ghost\" not found"),
        "{h}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let ev = c.json(&["get", "events", "--field-selector", "reason=FailedGetScale"]);
    let items = ev["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "one aggregated event: {ev}");
}

#[test]
fn a_cpu_burning_pod_behind_an_hpa_scales_up_and_after_the_load_stops_back_down() {
    let n = Node::start_with("metrics-hpa-burn", FAST);
    let c = &n.cluster;
    n.apply(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: burn
spec:
  replicas: 1
  selector: {matchLabels: {app: burn}}
  template:
    metadata:
      labels: {app: burn}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: burn
        image: busybox:latest
        command: ["sh", "-c", "while :; do :; done"]
        resources:
          requests: {cpu: 50m}
          limits: {cpu: 150m}
"#,
    );
    wait_for("the burner Running", Duration::from_secs(60), || {
        let out = c.kubectl(&[
            "get",
            "pods",
            "-l",
            "app=burn",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ]);
        (String::from_utf8_lossy(&out.stdout) == "Running").then_some(())
    });
    c.ok(&[
        "autoscale",
        "deployment",
        "burn",
        "--cpu-percent=50",
        "--min=1",
        "--max=3",
    ]);
    let started = Instant::now();
    wait_for(
        "the HPA to scale burn up to 3",
        Duration::from_secs(120),
        || (replicas(c, "burn") == 3).then_some(()),
    );
    eprintln!(
        "HPA reaction: 1 -> 3 replicas {:?} after kubectl autoscale",
        started.elapsed()
    );
    let events = hpa_events(c);
    assert!(
        events.contains("reason: cpu resource utilization (percentage of request) above target"),
        "{events}"
    );
    // The load stops: the pods are replaced by idle ones.
    c.ok(&["patch", "deployment", "burn", "--type=json", "-p", r#"[{"op":"replace","path":"/spec/template/spec/containers/0/command","value":["sleep","3600"]}]"#]);
    let started = Instant::now();
    wait_for(
        "the HPA to scale burn back down to 1",
        Duration::from_secs(150),
        || (replicas(c, "burn") == 1).then_some(()),
    );
    eprintln!(
        "load stopped: 3 -> 1 replicas in {:?} (downscale stabilization 10 s)",
        started.elapsed()
    );
    let events = hpa_events(c);
    assert!(
        events.contains("New size: 1; reason: All metrics below target"),
        "{events}"
    );
    c.ok(&["delete", "hpa", "burn"]);
    c.ok(&["delete", "deployment", "burn"]);
}
