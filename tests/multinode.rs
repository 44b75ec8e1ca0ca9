//! A real 3-node cluster on one machine (`kaji server` in the root namespace, two `kaji agent`s in
//! network namespaces on a test underlay, see support/multinode.rs), real containers, the pod
//! network across nodes: pods spread over the nodes, reach each other by pod IP with their own
//! source IP (no masquerade), and reach a Service whose only endpoint is on another node.

#[path = "support/multinode.rs"]
#[allow(dead_code)]
mod multinode;
mod support;

use multinode::MultiNode;
use std::collections::BTreeMap;
use std::time::Duration;

/// Polls `f` until it returns Some; on timeout fails with the pods, events and node logs.
fn wait_for<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    support::wait_for(what, timeout, f)
}

fn wait_on<T>(mn: &MultiNode, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if std::time::Instant::now() > deadline {
            let pods = mn.cluster.kubectl(&["get", "pods", "-o", "wide"]);
            let events = mn.cluster.kubectl(&["get", "events"]);
            panic!(
                "timed out after {WAIT:?} waiting for {what}\n{}\n{}\n{}",
                String::from_utf8_lossy(&pods.stdout),
                String::from_utf8_lossy(&events.stdout),
                mn.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

const WAIT: Duration = Duration::from_secs(90);

/// A busybox web server on port 8080 whose `/cgi-bin/ip` answers `peer=<the client's IP>`.
fn web_pod(name: &str, node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  containers:
  - name: web
    image: busybox:latest
    command: ["sh", "-c", "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho peer=$REMOTE_ADDR\\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 8080 -h /www"]
"#
    )
}

fn sleeper(name: &str, node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  containers:
  - name: c
    image: busybox:latest
    command: ["sleep", "3600"]
"#
    )
}

fn apply(mn: &MultiNode, manifest: &str) {
    mn.cluster.apply(support::KUBECTL_NEW, manifest);
}

fn jsonpath(mn: &MultiNode, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let jp = format!("jsonpath={path}");
    args.extend(["-o", jp.as_str()]);
    String::from_utf8_lossy(&mn.cluster.kubectl(&args).stdout).into_owned()
}

fn running_ip(mn: &MultiNode, pod: &str) -> String {
    wait_on(mn, &format!("pod {pod} Running"), || {
        let s = jsonpath(mn, &["pod", pod], "{.status.phase} {.status.podIP}");
        match s.split_once(' ') {
            Some(("Running", ip)) if !ip.is_empty() => Some(ip.to_string()),
            _ => None,
        }
    })
}

/// `kubectl exec pod -- cmd`: (success, stdout + stderr).
fn exec(mn: &MultiNode, pod: &str, cmd: &[&str]) -> (bool, String) {
    let mut args = vec!["exec", pod, "--"];
    args.extend_from_slice(cmd);
    let out = mn.cluster.kubectl(&args);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The client address a `/cgi-bin/ip` page names (busybox httpd writes IPv4 peers as
/// `[::ffff:a.b.c.d]`).
fn peer(page: &str) -> String {
    let p = page.trim().trim_start_matches("peer=");
    p.trim_start_matches("[::ffff:")
        .trim_end_matches(']')
        .to_string()
}

/// The page at `url` fetched from inside `pod`, retried until it answers.
fn fetch(mn: &MultiNode, pod: &str, url: &str) -> String {
    wait_for(
        &format!("{pod} to fetch {url}"),
        Duration::from_secs(30),
        || {
            let (ok, out) = exec(mn, pod, &["wget", "-q", "-O", "-", url]);
            ok.then_some(out)
        },
    )
}

/// `GET path` from `addr` (HTTP/1.0); the body of a 200.
fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: web\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    // busybox httpd passes a CGI's own header lines (ending in \n) through.
    let (head, body) = out
        .split_once("\r\n\r\n")
        .or_else(|| out.split_once("\n\n"))?;
    head.contains(" 200 ").then(|| body.to_string())
}

/// The average RTT of `busybox ping -c 20` from `pod` to `ip`, in ms.
fn ping_avg(mn: &MultiNode, pod: &str, ip: &str) -> f64 {
    let (ok, out) = exec(mn, pod, &["busybox", "ping", "-c", "20", "-i", "0.2", ip]);
    assert!(ok, "ping {ip} from {pod}: {out}");
    // "round-trip min/avg/max = 0.071/0.094/0.166 ms"
    out.lines()
        .find_map(|l| {
            l.split_once(" = ")
                .filter(|(k, _)| k.contains("min/avg/max"))
        })
        .and_then(|(_, v)| v.split('/').nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no RTT in {out}"))
}

#[test]
fn three_nodes_share_one_pod_network_over_vxlan() {
    let mut mn = MultiNode::start("multinode-vxlan", 3);

    // Each node published flannel's annotations and got its own /24 of the cluster CIDR.
    let nodes = jsonpath(
        &mn,
        &["nodes"],
        "{range .items[*]}{.metadata.name} {.spec.podCIDR} {.metadata.annotations.flannel\\.alpha\\.coreos\\.com/public-ip} {.metadata.annotations.flannel\\.alpha\\.coreos\\.com/backend-data}{\"\\n\"}{end}",
    );
    assert_eq!(nodes.lines().count(), 3, "{nodes}");
    for (i, line) in nodes.lines().enumerate() {
        let f: Vec<&str> = line.splitn(4, ' ').collect();
        assert_eq!(f[0], format!("node-{}", i + 1), "{nodes}");
        assert_eq!(f[2], format!("{}.{}", mn.underlay_prefix, i + 1), "{nodes}");
        assert!(f[3].contains("\"VtepMAC\""), "{nodes}");
    }

    // 1. A Deployment of 6 spreads over the 3 nodes (maxSkew 1: two each).
    apply(
        &mn,
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: spread
spec:
  replicas: 6
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        labelSelector: {matchLabels: {app: spread}}
      containers:
      - name: c
        image: busybox:latest
        command: ["sleep", "3600"]
"#,
    );
    let per_node = wait_on(&mn, "6 spread pods Running", || {
        let text = jsonpath(
            &mn,
            &["pods", "-l", "app=spread"],
            "{range .items[*]}{.spec.nodeName} {.status.phase}{\"\\n\"}{end}",
        );
        let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
        for l in text.lines() {
            if let Some((node, "Running")) = l.split_once(' ') {
                *per_node.entry(node.to_string()).or_default() += 1;
            }
        }
        (per_node.values().sum::<usize>() == 6).then_some(per_node)
    });
    assert_eq!(
        per_node,
        BTreeMap::from([
            ("node-1".into(), 2),
            ("node-2".into(), 2),
            ("node-3".into(), 2)
        ]),
        "the Deployment's pods per node"
    );

    // 2. A pod on node 1 reaches a pod on node 3 by pod IP, and the server sees the client's
    //    own pod IP (pod-to-pod traffic is not masqueraded). Same from node 2 (namespace to
    //    namespace).
    apply(&mn, &web_pod("web", "node-3"));
    apply(&mn, &sleeper("client1", "node-1"));
    apply(&mn, &sleeper("client2", "node-2"));
    apply(&mn, &sleeper("near", "node-1"));
    let web_ip = running_ip(&mn, "web");
    let client1_ip = running_ip(&mn, "client1");
    let client2_ip = running_ip(&mn, "client2");
    let near_ip = running_ip(&mn, "near");
    // The overlay: VNI 1 on the test's UDP port over eth0, MTU 50 below the underlay's, and
    // the pods' MTU below the overlay's.
    let dev = mn.on_node(3, &["ip", "-d", "link", "show", "kaji.vxlan"]);
    let dev = String::from_utf8_lossy(&dev.stdout).into_owned();
    assert!(dev.contains("mtu 1450 "), "{dev}");
    assert!(
        dev.contains(&format!(
            "vxlan id 1 local {}.3 dev eth0",
            mn.underlay_prefix
        )) && dev.contains(&format!("dstport {}", mn.vxlan_port)),
        "{dev}"
    );
    let (_, link) = exec(&mn, "client2", &["ip", "link", "show", "eth0"]);
    assert!(link.contains("mtu 1450 "), "{link}");

    let page = fetch(&mn, "client1", &format!("http://{web_ip}:8080/cgi-bin/ip"));
    assert_eq!(peer(&page), client1_ip, "{page}");
    let page = fetch(&mn, "client2", &format!("http://{web_ip}:8080/cgi-bin/ip"));
    assert_eq!(peer(&page), client2_ip, "{page}");

    // 3. A Service whose only endpoint is on node 3, from node 1 through its proxy.
    apply(
        &mn,
        r#"apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
"#,
    );
    let cluster_ip = wait_for("the Service's ClusterIP", WAIT, || {
        Some(jsonpath(&mn, &["service", "web"], "{.spec.clusterIP}")).filter(|s| !s.is_empty())
    });
    wait_for("the Service's endpoint", WAIT, || {
        let eps = jsonpath(
            &mn,
            &["endpointslices", "-l", "kubernetes.io/service-name=web"],
            "{.items[*].endpoints[*].addresses[*]}",
        );
        (eps == web_ip).then_some(())
    });
    let page = fetch(&mn, "client1", &format!("http://{cluster_ip}/cgi-bin/ip"));
    assert_eq!(peer(&page), client1_ip, "{page}");
    // ... and by name, through the cluster DNS of node 2.
    let page = fetch(
        &mn,
        "client2",
        "http://web.default.svc.cluster.local/cgi-bin/ip",
    );
    assert_eq!(peer(&page), client2_ip, "{page}");

    // 4. A NodePort, from node 2's address (the test runs in the root namespace, on the
    //    underlay): node 2's proxy sends it over the overlay to the pod on node 3.
    apply(
        &mn,
        r#"apiVersion: v1
kind: Service
metadata:
  name: web-np
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
"#,
    );
    let node_port = wait_for("the NodePort", WAIT, || {
        Some(jsonpath(
            &mn,
            &["service", "web-np"],
            "{.spec.ports[0].nodePort}",
        ))
        .filter(|s| !s.is_empty())
    });
    let node2 = format!("{}.2:{node_port}", mn.underlay_prefix);
    let page = wait_for(
        &format!("a page from {node2}"),
        Duration::from_secs(30),
        || http_get(&node2, "/cgi-bin/ip"),
    );
    // Masqueraded by node 2's proxy (externalTrafficPolicy Cluster) to its address on the
    // overlay, the .0 of its podCIDR, as flannel's nodes do.
    let node2_cidr = jsonpath(&mn, &["node", "node-2"], "{.spec.podCIDR}");
    assert_eq!(format!("{}/24", peer(&page)), node2_cidr, "{page}");

    // externalTrafficPolicy Local: node 3 (the endpoint's node) answers with the client's own
    // address kept; node 2 (no local endpoint) does not forward it to node 3.
    apply(
        &mn,
        r#"apiVersion: v1
kind: Service
metadata:
  name: web-local
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
"#,
    );
    let local_port = wait_for("the Local NodePort", WAIT, || {
        Some(jsonpath(
            &mn,
            &["service", "web-local"],
            "{.spec.ports[0].nodePort}",
        ))
        .filter(|s| !s.is_empty())
    });
    let node3 = format!("{}.3:{local_port}", mn.underlay_prefix);
    let page = wait_for(
        &format!("a page from {node3}"),
        Duration::from_secs(30),
        || http_get(&node3, "/cgi-bin/ip"),
    );
    assert_eq!(peer(&page), format!("{}.1", mn.underlay_prefix), "{page}");
    let node2 = format!("{}.2:{local_port}", mn.underlay_prefix);
    assert_eq!(
        http_get(&node2, "/cgi-bin/ip"),
        None,
        "node 2 has no local endpoint"
    );

    // 5. Leaving the pod network, a pod's traffic is masqueraded to its node's address: a
    //    host-network server on node 2 sees node 1's underlay address.
    apply(
        &mn,
        &web_pod("hostweb", "node-2")
            .replace("spec:\n", "spec:\n  hostNetwork: true\n")
            .replace("-p 8080", "-p 18080"),
    );
    running_ip(&mn, "hostweb");
    let page = fetch(
        &mn,
        "client1",
        &format!("http://{}.2:18080/cgi-bin/ip", mn.underlay_prefix),
    );
    assert_eq!(peer(&page), format!("{}.1", mn.underlay_prefix), "{page}");

    // 6. A restarted agent keeps its VXLAN device (the MAC the other nodes know) and the
    //    overlay carries traffic again.
    let vtep = |mn: &MultiNode| {
        jsonpath(
            mn,
            &["node", "node-2"],
            "{.metadata.annotations.flannel\\.alpha\\.coreos\\.com/backend-data}",
        )
    };
    let before = vtep(&mn);
    mn.restart_agent(2);
    wait_on(&mn, "node-2's agent to log its pod network again", || {
        mn.agents[0]
            .log()
            .contains("pod network ready")
            .then_some(())
    });
    assert_eq!(vtep(&mn), before);
    let page = fetch(&mn, "client2", &format!("http://{web_ip}:8080/cgi-bin/ip"));
    assert_eq!(peer(&page), client2_ip, "{page}");

    // Figures: pod-to-pod RTT across the VXLAN overlay and on the same node.
    let across = ping_avg(&mn, "client1", &web_ip);
    let same = ping_avg(&mn, "client1", &near_ip);
    let ns_to_ns = ping_avg(&mn, "client2", &web_ip);
    eprintln!(
        "pod-to-pod RTT (busybox ping -c 20, avg): same node {same:.3} ms, node 1 -> node 3 over VXLAN {across:.3} ms, node 2 -> node 3 {ns_to_ns:.3} ms"
    );
}

#[test]
fn host_gw_routes_pods_between_nodes_on_one_segment() {
    let mn = MultiNode::start_with("multinode-hostgw", 3, "host-gw", &[]);
    apply(&mn, &web_pod("web", "node-3"));
    apply(&mn, &sleeper("client", "node-1"));
    let web_ip = running_ip(&mn, "web");
    let client_ip = running_ip(&mn, "client");
    let page = fetch(&mn, "client", &format!("http://{web_ip}:8080/cgi-bin/ip"));
    assert_eq!(peer(&page), client_ip, "{page}");
    // Plain routes via the other nodes' underlay addresses, no VXLAN device.
    let routes = mn.on_node(1, &["ip", "route", "show", "dev", &mn.underlay]);
    let routes = String::from_utf8_lossy(&routes.stdout);
    let node3_cidr = jsonpath(&mn, &["node", "node-3"], "{.spec.podCIDR}");
    assert!(
        routes.contains(&format!("{node3_cidr} via {}.3", mn.underlay_prefix)),
        "{routes}"
    );
    let links = mn.on_node(2, &["ip", "-br", "link"]);
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains("kaji.vxlan"),
        "host-gw makes no VXLAN device"
    );
}

/// Issue 14's "killing node 2's agent and containerd makes its pods Running elsewhere within
/// the configured eviction time"; node 2 coming back cleans up its stale pods; `kubectl drain`
/// moves node 3's pods; then the deleted Node's routes go from the other nodes.
#[test]
fn a_dead_nodes_pods_run_elsewhere_and_its_routes_go() {
    let mn_flags = [
        "--node-monitor-grace-period",
        "20s",
        "--default-unreachable-toleration-seconds",
        "5",
        "--default-not-ready-toleration-seconds",
        "5",
    ];
    let mut mn = MultiNode::start_with("multinode-evict", 3, "vxlan", &mn_flags);
    apply(
        &mn,
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: spread
spec:
  replicas: 3
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: ScheduleAnyway
        labelSelector: {matchLabels: {app: spread}}
      containers:
      - name: c
        image: busybox:latest
        command: ["sleep", "3600"]
"#,
    );
    let running = |mn: &MultiNode| -> Vec<(String, String)> {
        jsonpath(
            mn,
            &["pods", "-l", "app=spread"],
            "{range .items[*]}{.metadata.name} {.spec.nodeName} {.status.phase} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
        )
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() >= 3 && f[2] == "Running" && f.get(3).is_none_or(|d| d.is_empty()))
                .then(|| (f[0].to_string(), f[1].to_string()))
        })
        .collect()
    };
    let before = wait_on(&mn, "3 spread pods Running", || {
        let r = running(&mn);
        (r.len() == 3).then_some(r)
    });
    let on_node2: Vec<String> = before
        .iter()
        .filter(|(_, n)| n == "node-2")
        .map(|(p, _)| p.clone())
        .collect();
    assert!(!on_node2.is_empty(), "a pod on node-2: {before:?}");

    let killed = std::time::Instant::now();
    mn.kill_node(2);
    let after = wait_for(
        "3 Running pods, none on node-2",
        Duration::from_secs(120),
        || {
            let r = running(&mn);
            (r.len() == 3 && r.iter().all(|(_, n)| n != "node-2")).then_some(r)
        },
    );
    eprintln!(
        "node-2 killed: its pods Running elsewhere after {:.1} s (grace period 20 s + toleration 5 s): {after:?}",
        killed.elapsed().as_secs_f64()
    );
    assert!(
        killed.elapsed() < Duration::from_secs(60),
        "{:?}",
        killed.elapsed()
    );

    // Node 2 comes back: the pods the cluster gave up on (Terminating, bound to node-2) are
    // cleaned up by its kubelet, and it is Ready again.
    let stale_on_node2 = |mn: &MultiNode| -> Vec<String> {
        jsonpath(
            mn,
            &[
                "pods",
                "-l",
                "app=spread",
                "--field-selector",
                "spec.nodeName=node-2",
            ],
            "{range .items[*]}{.metadata.name}{\"\\n\"}{end}",
        )
        .lines()
        .map(str::to_string)
        .collect()
    };
    assert!(
        !stale_on_node2(&mn).is_empty(),
        "node-2's pods are still in the API (Terminating) while it is down"
    );
    mn.restart_agent(2);
    wait_on(&mn, "node-2 back and its stale pods gone", || {
        let ready = jsonpath(
            &mn,
            &["node", "node-2"],
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        );
        (ready == "True" && stale_on_node2(&mn).is_empty()).then_some(())
    });

    // `kubectl drain` moves node 3's real pods to the other nodes.
    let drained = mn.cluster.ok(&[
        "drain",
        "node-3",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=90s",
    ]);
    assert!(drained.contains("node/node-3 drained"), "{drained}");
    let moved = wait_on(
        &mn,
        "3 Running spread pods, none on the drained node-3",
        || {
            let r = running(&mn);
            (r.len() == 3 && r.iter().all(|(_, n)| n != "node-3")).then_some(r)
        },
    );
    eprintln!("after draining node-3: {moved:?}");
    let unschedulable = jsonpath(&mn, &["node", "node-3"], "{.spec.unschedulable}");
    assert_eq!(unschedulable, "true");

    // The dead Node deleted: node 1 and node 3 drop its route, neighbour and FDB entries.
    mn.kill_node(2);
    let node2_cidr = jsonpath(&mn, &["node", "node-2"], "{.spec.podCIDR}");
    assert!(!node2_cidr.is_empty());
    mn.cluster.ok(&["delete", "node", "node-2"]);
    let device = format!("kv{:03}-1", mn.n);
    for (i, dev) in [(1, device.as_str()), (3, "kaji.vxlan")] {
        wait_for(
            &format!("node-{i} to drop node-2's route"),
            Duration::from_secs(30),
            || {
                let out = mn.on_node(i, &["ip", "route", "show", "dev", dev]);
                let routes = String::from_utf8_lossy(&out.stdout).into_owned();
                (out.status.success() && !routes.contains(&node2_cidr)).then_some(())
            },
        );
    }
}
