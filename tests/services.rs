//! Service networking end to end, with real containers: the proxy's nftables table, the cluster
//! DNS and NodePorts, driven by stock kubectl as a reader of the seeds would. Each test has its own
//! service range (`--service-cidr`, a /24), proxy table and DNS address (tests/support/node.rs).
//! Needs root, containerd, CNI and nftables (.ci/install-deps).

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;
use support::node::Node;
use support::wait_for;

fn nft(args: &[&str]) -> String {
    let out = Command::new("nft").args(args).output().expect("running nft");
    assert!(out.status.success(), "nft {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The interface of the default route: the machine's uplink.
fn uplink() -> String {
    let routes = std::fs::read_to_string("/proc/net/route").expect("/proc/net/route");
    routes
        .lines()
        .skip(1)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&"00000000")).then(|| f[0].to_string())
        })
        .expect("a default route")
}

/// Counts packets for the service range leaving through the uplink, in a table of the test's own
/// (removed on drop).
struct UplinkCounter {
    table: String,
}

impl UplinkCounter {
    fn new(name: &str, service_cidr: &str) -> UplinkCounter {
        let table = format!("kaji-test-{name}");
        let script = format!(
            "add table inet {table}\ndelete table inet {table}\nadd table inet {table}\n\
             add chain inet {table} out {{ type filter hook postrouting priority 300; policy accept; }}\n\
             add rule inet {table} out oifname \"{}\" ip daddr {service_cidr} counter\n",
            uplink()
        );
        let mut child = Command::new("nft").args(["-f", "-"]).stdin(std::process::Stdio::piped()).spawn().expect("nft");
        child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("writing the counter");
        assert!(child.wait().expect("nft").success(), "loading the uplink counter");
        UplinkCounter { table }
    }

    fn packets(&self) -> u64 {
        let out = nft(&["list", "chain", "inet", &self.table, "out"]);
        let after = out.split("counter packets ").nth(1).expect("a counter");
        after.split_whitespace().next().and_then(|n| n.parse().ok()).expect("a packet count")
    }
}

impl Drop for UplinkCounter {
    fn drop(&mut self) {
        let _ = Command::new("nft").args(["delete", "table", "inet", &self.table]).output();
    }
}

/// `kubectl exec POD -- sh -c CMD`: (success, stdout, stderr).
fn exec(node: &Node, pod: &str, cmd: &str) -> (bool, String, String) {
    let out = node.cluster.kubectl(&["exec", pod, "--", "sh", "-c", cmd]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr, Duration::from_secs(3))
}

/// A plain HTTP GET from the test process; the body.
fn http_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn cluster_ip(node: &Node, svc: &str) -> Ipv4Addr {
    let ip = node.cluster.ok(&["get", "svc", svc, "-o", "jsonpath={.spec.clusterIP}"]);
    ip.parse().unwrap_or_else(|_| panic!("service {svc} has no clusterIP: {ip:?}"))
}

const CLIENT_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: busybox:latest
    command: [sleep, '3600']
";

#[test]
fn the_service_range_is_refused_on_the_node_and_nothing_for_it_leaves() {
    let node = Node::start("svc-refuse");
    let counter = UplinkCounter::new("svc-refuse", &node.service_cidr);
    let unused: Ipv4Addr = format!("{}.99", node.service_prefix).parse().expect("an address");
    // From the node itself: an address no Service holds answers with a reset at once.
    wait_for("the proxy to refuse an unused service address", Duration::from_secs(30), || {
        match connect(SocketAddr::from((unused, 80))) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        }
    });
    // UDP too: the node's own datagram is refused as it is sent (the reject in the output hook
    // reports EPERM to a local sender; a pod gets ICMP port unreachable, below).
    let udp = UdpSocket::bind("0.0.0.0:0").expect("udp socket");
    udp.connect((unused, 53)).expect("connect");
    udp.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
    let err = udp.send(b"hello").and_then(|_| udp.recv(&mut [0u8; 16])).expect_err("nothing answers");
    assert!(
        matches!(err.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ConnectionRefused),
        "UDP to an unused service address: {err}"
    );

    // A Service whose selector matches nothing: refused too, from the node and from a pod.
    node.apply(
        "apiVersion: v1
kind: Service
metadata:
  name: empty
spec:
  selector:
    app: nothing-here
  ports:
  - port: 80
",
    );
    let empty = cluster_ip(&node, "empty");
    wait_for("the empty service to be refused", Duration::from_secs(30), || {
        match connect(SocketAddr::from((empty, 80))) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        }
    });
    node.apply(CLIENT_POD);
    node.wait_running("client");
    for ip in [unused, empty] {
        let (ok, _, err) = exec(&node, "client", &format!("wget -O- http://{ip}/"));
        assert!(!ok && err.contains("Connection refused"), "wget to {ip} from a pod: {err}");
    }
    assert_eq!(counter.packets(), 0, "packets for the service range left through {}", uplink());
}

#[test]
fn seed_000_the_bastion_reaches_my_first_service_by_name_and_the_node_port_answers() {
    let node = Node::start("svc-seed000");
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/seeds");
    let read = |f: &str| std::fs::read_to_string(seeds.join(f)).expect("seed manifest");
    node.apply(&read("000-nginx-deployment.yaml"));
    node.apply(&read("000-nginx-service.yaml"));
    node.apply(&read("000-bastion.yaml"));
    node.wait_running("bastion");
    wait_for("3 ready endpoints behind my-first-service", Duration::from_secs(90), || {
        let out = node.cluster.kubectl(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=my-first-service",
            "-o",
            "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}",
        ]);
        (String::from_utf8_lossy(&out.stdout).split_whitespace().count() == 3).then_some(())
    });
    // What the seed has the reader type in the bastion (busybox wget stands in for curl).
    let page = wait_for("the bastion to reach http://my-first-service/", Duration::from_secs(30), || {
        let (ok, out, _) = exec(&node, "bastion", "wget -qO- http://my-first-service/");
        ok.then_some(out)
    });
    assert!(page.contains("nginx 1.15"), "{page}");
    // The full name and the ClusterIP answer too, several times over the three pods.
    for _ in 0..5 {
        let (ok, out, err) = exec(&node, "bastion", "wget -qO- http://my-first-service.default.svc.cluster.local/");
        assert!(ok && out.contains("nginx 1.15"), "{out}{err}");
    }
    // NodePort (seed 000's second Service form): on the node's address and on 127.0.0.1.
    node.apply(&read("000-nginx-service-nodeport.yaml"));
    let node_ip: Ipv4Addr = node
        .cluster
        .ok(&["get", "node", "kaji-test-node", "-o", "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}"])
        .parse()
        .expect("the node's InternalIP");
    for ip in [node_ip, Ipv4Addr::LOCALHOST] {
        let body = wait_for(&format!("NodePort 30000 on {ip}"), Duration::from_secs(30), || {
            http_get(SocketAddr::from((ip, 30000))).ok().filter(|b| b.contains("nginx 1.15"))
        });
        assert!(body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"), "{body}");
    }
    // kubectl port-forward to the Service.
    let local = support::free_port();
    let mut pf = Command::new(support::KUBECTL_NEW)
        .arg("--kubeconfig")
        .arg(&node.cluster.kubeconfig)
        .args(["port-forward", "svc/my-first-service", &format!("{local}:80")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl port-forward");
    let body = wait_for("port-forward to svc/my-first-service", Duration::from_secs(30), || {
        http_get(SocketAddr::from(([127, 0, 0, 1], local))).ok().filter(|b| b.contains("nginx 1.15"))
    });
    let _ = pf.kill();
    let _ = pf.wait();
    assert!(body.contains("nginx 1.15"));
}

#[test]
fn the_proxy_reloads_its_table_when_someone_removes_it() {
    let node = Node::start("svc-resync");
    wait_for("the proxy's table", Duration::from_secs(30), || {
        Command::new("nft").args(["list", "table", "inet", &node.proxy_table]).output().ok().filter(|o| o.status.success()).map(|_| ())
    });
    // `nft flush ruleset` would also wipe the other tests' tables; deleting ours is the same
    // event for the proxy.
    nft(&["delete", "table", "inet", &node.proxy_table]);
    let table = wait_for("the proxy to load its table again", Duration::from_secs(30), || {
        let out = Command::new("nft").args(["list", "table", "inet", &node.proxy_table]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert!(table.contains(&format!("ip daddr {} meta l4proto tcp reject with tcp reset", node.service_cidr)), "{table}");
}

/// Seed 000's rolling update, watched from inside the cluster: a pod requests the Service by
/// name in a tight loop while `kubectl set image` and `kubectl rollout undo` replace every pod.
/// Readiness gates new endpoints, terminating ones leave the rules, and the preStop pause (the
/// usual practice on upstream too: it covers the moment between the pod's deletion and every
/// node's rules forgetting it) lets in-flight requests finish: no request may fail.
#[test]
fn a_rollout_and_its_undo_lose_no_request() {
    let node = Node::start("svc-rollout");
    node.apply(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: web
        image: nginx:1.16
        readinessProbe:
          httpGet: {path: /, port: 80}
          periodSeconds: 1
        lifecycle:
          preStop:
            exec:
              command: [sleep, '3']
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
",
    );
    node.apply(CLIENT_POD);
    node.wait_running("client");
    node.cluster.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    wait_for("the client to reach the service", Duration::from_secs(30), || {
        let (ok, out, _) = exec(&node, "client", "wget -qO- http://web/");
        (ok && out.contains("nginx 1.16")).then_some(())
    });
    let kubeconfig = node.cluster.kubeconfig.clone();
    let home = node.cluster.data_dir().to_path_buf();
    let looper = std::thread::spawn(move || {
        let out = Command::new(support::KUBECTL_NEW)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .env("HOME", &home)
            .args([
                "exec",
                "client",
                "--",
                "sh",
                "-c",
                "ok=0; failed=0; while [ ! -e /tmp/stop ]; do \
                 if wget -q -O /tmp/page http://web/; then ok=$((ok+1)); else failed=$((failed+1)); fi; done; \
                 echo \"$ok $failed\"",
            ])
            .output()
            .expect("kubectl exec");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    });
    node.cluster.ok(&["set", "image", "deployment/web", "web=nginx:1.17"]);
    node.cluster.ok(&["rollout", "status", "deployment/web", "--timeout=180s"]);
    let (_, page, _) = exec(&node, "client", "wget -qO- http://web/");
    assert!(page.contains("nginx 1.17"), "after the rollout: {page}");
    node.cluster.ok(&["rollout", "undo", "deployment/web"]);
    node.cluster.ok(&["rollout", "status", "deployment/web", "--timeout=180s"]);
    // The old pods are gone only after their preStop pause: wait until every endpoint is 1.16.
    wait_for("only nginx 1.16 pods behind the service", Duration::from_secs(60), || {
        let out = node.cluster.kubectl(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.containers[0].image}"]);
        let images = String::from_utf8_lossy(&out.stdout).into_owned();
        (images.split_whitespace().count() == 3 && images.split_whitespace().all(|i| i == "nginx:1.16")).then_some(())
    });
    exec(&node, "client", "touch /tmp/stop");
    let result = looper.join().expect("the request loop");
    let mut counts = result.split_whitespace().filter_map(|n| n.parse::<u64>().ok());
    let (ok, failed) = (counts.next(), counts.next());
    assert_eq!(failed, Some(0), "requests failed during the rollout: {result}");
    assert!(ok.unwrap_or(0) > 50, "too few requests made during the rollout: {result}");
}

/// Seed 003's Services with its Deployment behind them, looked at as the seed does: DNS A and SRV
/// records and the Docker-link environment from a pod, a static ClusterIP with externalIPs, a
/// LoadBalancer whose EXTERNAL-IP answers, a headless Service with per-pod names, and an
/// ExternalName (pointing inside the cluster: no lookup may leave the machine).
#[test]
fn seed_003_services_answer_by_name_address_and_environment() {
    let node = Node::start("svc-seed003");
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/seeds");
    let read = |f: &str| std::fs::read_to_string(seeds.join(f)).expect("seed manifest");
    let node_ip: Ipv4Addr = node
        .cluster
        .ok(&["get", "node", "kaji-test-node", "-o", "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}"])
        .parse()
        .expect("the node's InternalIP");
    node.apply(&read("003-sample-deployment.yaml"));
    node.apply(&read("003-sample-clusterip.yaml"));
    // The seed's static address, moved into this test's service range; its externalIP is the
    // node's own address, so that nothing is sent off the machine.
    let static_ip = format!("{}.80", node.service_prefix);
    node.apply(&read("003-sample-static-clusterip-externalips.yaml").replace("10.43.253.80", &static_ip).replace("192.168.99.101", &node_ip.to_string()));
    node.apply(
        "apiVersion: v1
kind: Service
metadata:
  name: sample-headless
spec:
  clusterIP: None
  selector:
    app: sample-app
  ports:
  - name: http-port
    port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: sample-externalname
spec:
  type: ExternalName
  externalName: sample-clusterip.default.svc.cluster.local
---
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  labels:
    app: sample-app
spec:
  hostname: web-0
  subdomain: sample-headless
  containers:
  - name: nginx
    image: nginx:1.12
",
    );
    node.cluster.ok(&["rollout", "status", "deployment/sample-deployment", "--timeout=120s"]);
    let web0 = node.wait_running("web-0");
    // Created after the Services, so the kubelet gives it their Docker-link variables.
    node.apply(CLIENT_POD);
    node.wait_running("client");
    let ip = cluster_ip(&node, "sample-clusterip");

    // busybox nslookup tries every search domain and exits non-zero when any of them is
    // NXDOMAIN (as they are on upstream too): the answer is what counts.
    let (_, out, err) = exec(&node, "client", "nslookup sample-clusterip");
    assert!(out.contains("Name:\tsample-clusterip.default.svc.cluster.local") && out.contains(&format!("Address: {ip}")), "{out}{err}");
    let (_, out, err) = exec(&node, "client", "nslookup -type=srv _http-port._tcp.sample-clusterip.default.svc.cluster.local");
    assert!(out.contains("8080 sample-clusterip.default.svc.cluster.local"), "SRV: {out}{err}");
    let headless = wait_for("4 addresses for the headless service", Duration::from_secs(30), || {
        let (_, out, _) = exec(&node, "client", "nslookup sample-headless.default.svc.cluster.local");
        (out.matches("Address: 10.").count() == 4).then_some(out)
    });
    assert!(headless.contains(&format!("Address: {web0}")), "{headless}");
    let (_, out, err) = exec(&node, "client", "nslookup web-0.sample-headless.default.svc.cluster.local");
    assert!(out.contains(&format!("Address: {web0}")), "per-pod name: {out}{err}");
    let (_, out, err) = exec(&node, "client", "nslookup sample-externalname.default.svc.cluster.local");
    assert!(out.contains("canonical name = sample-clusterip.default.svc.cluster.local") && out.contains(&format!("Address: {ip}")), "ExternalName: {out}{err}");
    let (_, out, err) = exec(&node, "client", "nslookup does-not-exist.default.svc.cluster.local");
    assert!(out.contains("NXDOMAIN") || err.contains("NXDOMAIN"), "a missing name: {out}{err}");

    let (ok, env, _) = exec(&node, "client", "env | grep SERVICE");
    assert!(ok && env.contains(&format!("SAMPLE_CLUSTERIP_SERVICE_HOST={ip}")), "{env}");
    assert!(env.contains("SAMPLE_CLUSTERIP_SERVICE_PORT_HTTP_PORT=8080"), "{env}");

    let (ok, page, err) = exec(&node, "client", "wget -qO- http://sample-clusterip:8080/");
    assert!(ok && page.contains("nginx 1.12"), "{page}{err}");
    let (ok, page, err) = exec(&node, "client", &format!("wget -qO- http://{static_ip}:8080/"));
    assert!(ok && page.contains("nginx 1.12"), "static clusterIP: {page}{err}");
    let body = wait_for("the externalIP to answer", Duration::from_secs(30), || {
        http_get(SocketAddr::from((node_ip, 8080))).ok().filter(|b| b.contains("nginx 1.12"))
    });
    assert!(body.contains("200"), "{body}");

    // LoadBalancer (ServiceLB): the node's address as EXTERNAL-IP, answering on the Service port.
    node.cluster.ok(&["delete", "svc", "sample-static-clusterip"]);
    node.apply(&read("003-sample-lb.yaml"));
    let lb_ip = wait_for("sample-lb's EXTERNAL-IP", Duration::from_secs(30), || {
        let out = node.cluster.ok(&["get", "svc", "sample-lb", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"]);
        (!out.is_empty()).then_some(out)
    });
    assert_eq!(lb_ip, node_ip.to_string());
    let table = node.cluster.ok(&["get", "svc", "sample-lb"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(row.get(3..5), Some(&[lb_ip.as_str(), "8080:30082/TCP"][..]), "{table}");
    wait_for("the LoadBalancer address to answer", Duration::from_secs(30), || {
        http_get(SocketAddr::from((node_ip, 8080))).ok().filter(|b| b.contains("nginx 1.12"))
    });
}
