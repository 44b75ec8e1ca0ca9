//! The built-in ingress controller end to end, with real containers: two hosts and two paths
//! routed to two Deployments, a 404 for what no rule takes, HTTPS with a Secret's certificate
//! chosen by SNI, and the Ingress's ADDRESS. Each test node serves ingress on its own free ports
//! (tests/support/node.rs). Needs root, containerd, CNI, nftables and openssl (.ci/install-deps).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::node::Node;
use support::wait_for;

/// GET `path` with `Host: host` from the ingress's HTTP port: the whole response.
fn get(port: u16, host: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn deployment(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: web
        image: {image}
        # The page under /v1/ and /v2/ too, so that paths pass through to the backend unchanged.
        command: [sh, -c, 'for d in v1 v2; do mkdir -p /www/$d; cp /www/index.html /www/$d/; done; exec httpd -f -p 80 -h /www']
        ports:
        - {{name: http, containerPort: 80}}
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: {name}}}
  ports:
  - {{name: http, port: 8080, targetPort: http}}
"
    )
}

#[test]
fn an_ingress_routes_hosts_and_paths_and_serves_https_with_the_secrets_certificate() {
    let node = Node::start("ingress-routes");
    node.apply(&deployment("web-a", "nginx:1.16"));
    node.apply(&deployment("web-b", "nginx:1.17"));
    // A certificate for a.example.test, in a kubernetes.io/tls Secret.
    let dir = node.cluster.data_dir().to_path_buf();
    let (crt, key) = (dir.join("a.crt"), dir.join("a.key"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=a.example.test"])
        .args(["-addext", "subjectAltName=DNS:a.example.test", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    node.cluster.ok(&["create", "secret", "tls", "a-tls", "--cert", crt.to_str().unwrap_or_default(), "--key", key.to_str().unwrap_or_default()]);
    node.apply(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: routes
spec:
  tls:
  - hosts: [a.example.test]
    secretName: a-tls
  rules:
  - host: a.example.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web-a, port: {number: 8080}}}}
  - host: b.example.test
    http:
      paths:
      - {path: /v1, pathType: Prefix, backend: {service: {name: web-a, port: {name: http}}}}
      - {path: /v2, pathType: Prefix, backend: {service: {name: web-b, port: {number: 8080}}}}
",
    );
    node.cluster.ok(&["rollout", "status", "deployment/web-a", "--timeout=120s"]);
    node.cluster.ok(&["rollout", "status", "deployment/web-b", "--timeout=120s"]);
    let port = node.ingress_http_port;
    for (host, path, want) in [
        ("a.example.test", "/", "nginx 1.16"),
        ("b.example.test", "/v1/", "nginx 1.16"),
        ("b.example.test", "/v2/", "nginx 1.17"),
    ] {
        let resp = wait_for(&format!("http://{host}{path} through the ingress"), Duration::from_secs(60), || {
            get(port, host, path).filter(|r| r.contains(want))
        });
        assert!(resp.starts_with("HTTP/1.1 200"), "{host}{path}: {resp}");
    }
    let resp = get(port, "b.example.test", "/v3").expect("a response");
    assert!(resp.starts_with("HTTP/1.1 404"), "no rule takes /v3: {resp}");
    let resp = get(port, "c.example.test", "/").expect("a response");
    assert!(resp.starts_with("HTTP/1.1 404"), "no rule takes host c: {resp}");

    // HTTPS: SNI picks the Secret's certificate.
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{}", node.ingress_https_port), "-servername", "a.example.test", "-ign_eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"GET / HTTP/1.1\r\nHost: a.example.test\r\nConnection: close\r\n\r\n")
        .expect("request");
    let out = child.wait_with_output().expect("s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("subject=CN = a.example.test") || text.contains("subject=CN=a.example.test"), "certificate: {text}");
    assert!(text.contains("nginx 1.16"), "HTTPS response: {text}");

    // The Ingress shows where it is served.
    let node_ip = node.cluster.ok(&["get", "node", "kaji-test-node", "-o", "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}"]);
    wait_for("the Ingress's ADDRESS", Duration::from_secs(30), || {
        let out = node.cluster.ok(&["get", "ingress", "routes", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}"]);
        (out == node_ip).then_some(())
    });
    let class = node.cluster.ok(&["get", "ingressclass", "kaji", "-o", "jsonpath={.metadata.annotations.ingressclass\\.kubernetes\\.io/is-default-class}"]);
    assert_eq!(class, "true");
}
