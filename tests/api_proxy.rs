//! End-to-end tests of the API server's proxy subresources with real containers:
//! `pods/NAME[:PORT]/proxy/PATH`, `services/NAME:PORT/proxy/PATH` and
//! `nodes/NAME/proxy/PATH`, through `kubectl get/create --raw` and through `kubectl proxy`
//! (plain HTTP on 127.0.0.1, as its users reach it): pages, a POST body and query through to a
//! CGI script, HEAD and other methods passed on, the backend's redirects and the links of its
//! HTML pages rewritten into the proxy path, the bare `.../proxy` redirected to `.../proxy/`,
//! an upgraded connection relayed, and upstream's 503s (a closed port, a service without
//! endpoints), fast.

mod support;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::node::Node;
use support::{KUBECTL_NEW, free_port, wait_for};

const MANIFEST: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: busybox:latest
    ports:
    - name: http
      containerPort: 80
    command:
    - sh
    - -c
    - |
      mkdir -p /srv/cgi-bin /srv/sub
      echo 'hello from web' > /srv/index.html
      echo 'sub page' > /srv/sub/index.html
      head -c 20000000 /dev/zero > /srv/big.bin
      echo '<html><body><a href="/sub/">sub</a> <img src="rel.png"> <a href="http://example.invalid/x">out</a></body></html>' > /srv/links.html
      cat > /srv/cgi-bin/echo <<'EOF'
      #!/bin/sh
      echo "Content-Type: text/plain"
      echo ""
      echo "method=$REQUEST_METHOD query=$QUERY_STRING length=$CONTENT_LENGTH"
      [ -n "$CONTENT_LENGTH" ] && head -c "$CONTENT_LENGTH"
      [ -n "$HTTP_TRANSFER_ENCODING" ] && echo "chunked body"
      EOF
      busybox chmod +x /srv/cgi-bin/echo
      exec httpd -f -p 80 -h /srv
  - name: upgrade
    image: busybox:latest
    ports:
    - name: echo
      containerPort: 8080
    command:
    - sh
    - -c
    - |
      cat > /up.sh <<'EOF'
      while read -r line; do [ ${#line} -le 1 ] && break; done
      printf 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n'
      exec cat
      EOF
      while true; do nc -l -p 8080 -e sh /up.sh; done
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: empty
spec:
  selector:
    app: nothing
  ports:
  - port: 80
"#;

/// Kills a background kubectl when the test ends, whatever happens.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 answer: status code, head (lower-cased header lines), body.
struct Answer {
    code: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// A request to `kubectl proxy` on 127.0.0.1:port (the connection closed after one answer).
fn http(port: u16, method: &str, path: &str, body: &str) -> Option<Answer> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    // kubectl proxy answers in chunks when the length is not known; join them.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some(Answer {
        code,
        head: head.to_string(),
        body,
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn raw(n: &Node, args: &[&str]) -> std::process::Output {
    n.cluster.kubectl(args)
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn pod_service_and_node_proxy_with_kubectl_and_kubectl_proxy() {
    let n = Node::start("api-proxy");
    n.apply(MANIFEST);
    let pod_ip = n.wait_running("web");

    // Discovery advertises what is now served, with upstream's verbs and kinds.
    let core = n.cluster.ok(&["get", "--raw", "/api/v1"]);
    for (sub, kind) in [
        ("pods/proxy", "PodProxyOptions"),
        ("services/proxy", "ServiceProxyOptions"),
        ("nodes/proxy", "NodeProxyOptions"),
    ] {
        let want = format!(
            r#""name":"{sub}","singularName":"","namespaced":{},"kind":"{kind}","verbs":["create","delete","get","patch","update"]"#,
            sub != "nodes/proxy"
        );
        assert!(core.contains(&want), "{want} not in {core}");
    }
    // And OpenAPI names the connect operations.
    let openapi = n.cluster.ok(&["get", "--raw", "/openapi/v3/api/v1"]);
    for path in [
        "/api/v1/namespaces/{namespace}/pods/{name}/proxy/{path}",
        "/api/v1/namespaces/{namespace}/services/{name}/proxy",
        "/api/v1/nodes/{name}/proxy/{path}",
    ] {
        assert!(
            openapi.contains(&format!("\"{path}\"")),
            "{path} not in OpenAPI"
        );
    }

    // pods/NAME:PORT/proxy/PATH, by number and by the container port's name.
    let page = wait_for(
        "the pod's page through pods/proxy",
        Duration::from_secs(30),
        || {
            let o = raw(
                &n,
                &[
                    "get",
                    "--raw",
                    "/api/v1/namespaces/default/pods/web:80/proxy/index.html",
                ],
            );
            o.status.success().then(|| stdout(&o))
        },
    );
    assert_eq!(page, "hello from web\n");
    let named = n.cluster.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/web:http/proxy/sub/",
    ]);
    assert_eq!(named, "sub page\n");
    // No port: the first container port (80).
    let first = n
        .cluster
        .ok(&["get", "--raw", "/api/v1/namespaces/default/pods/web/proxy/"]);
    assert_eq!(first, "hello from web\n");

    // A POST's body and query pass through to a CGI script.
    let body_file = n.cluster.data_dir().join("post-body.txt");
    std::fs::write(&body_file, "posted through the API server").unwrap();
    let posted = n.cluster.ok(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/pods/web:80/proxy/cgi-bin/echo?a=1&b=two",
        "-f",
        body_file.to_str().unwrap(),
    ]);
    // kubectl streams the file over HTTP/2 without a length, so the backend gets it chunked
    // (as from upstream's proxy; busybox's CGI reads no chunked bodies). The length-carrying
    // POST through kubectl proxy below shows the body itself arriving.
    assert!(
        posted.contains("method=POST query=a=1&b=two length=\nchunked body"),
        "{posted}"
    );

    // A closed port: 503 at once with upstream's words.
    let started = Instant::now();
    let closed = raw(
        &n,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/default/pods/web:81/proxy/",
            "-v=6",
        ],
    );
    let elapsed = started.elapsed();
    assert!(!closed.status.success());
    let err = stderr(&closed);
    assert!(
        err.contains(&format!(
            "error trying to reach service: dial tcp {pod_ip}:81: connect: connection refused"
        )),
        "{err}"
    );
    assert!(err.contains("503 Service Unavailable"), "{err}");
    eprintln!("a closed pod port answered 503 after {elapsed:?} (kubectl included)");
    assert!(
        elapsed < Duration::from_secs(5),
        "a closed port took {elapsed:?}"
    );

    // https: to a plain HTTP server: the TLS handshake fails, upstream's 503 again.
    let not_tls = raw(
        &n,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/default/pods/https:web:80/proxy/",
        ],
    );
    assert!(
        stderr(&not_tls).contains(
            "error trying to reach service: tls: first record does not look like a TLS handshake"
        ),
        "{}",
        stderr(&not_tls)
    );

    // A service without endpoints: upstream's 503.
    let none = raw(
        &n,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/default/services/empty:80/proxy/",
        ],
    );
    assert!(!none.status.success());
    assert!(
        stderr(&none).contains(r#"no endpoints available for service \"empty\""#)
            || stderr(&none).contains(r#"no endpoints available for service "empty""#),
        "{}",
        stderr(&none)
    );
    // A service port that does not exist.
    let no_port = raw(
        &n,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/default/services/web:81/proxy/",
        ],
    );
    assert!(
        stderr(&no_port).contains("no service port 81 found for service"),
        "{}",
        stderr(&no_port)
    );

    // kubectl proxy, then plain HTTP to it (the issue's "done when").
    let port = free_port();
    let log_path = n.cluster.data_dir().join("kubectl-proxy.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let _proxy = Background(
        Command::new(KUBECTL_NEW)
            .arg("--kubeconfig")
            .arg(&n.cluster.kubeconfig)
            .args(["proxy", &format!("--port={port}")])
            .env("HOME", n.cluster.data_dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("kubectl proxy"),
    );
    let svc = "/api/v1/namespaces/default/services/web:80/proxy";
    let page = wait_for(
        "the service's page through kubectl proxy",
        Duration::from_secs(60),
        || http(port, "GET", &format!("{svc}/"), "").filter(|a| a.code == 200),
    );
    assert_eq!(page.body, "hello from web\n");
    // By the service port's name.
    let by_name = http(
        port,
        "GET",
        "/api/v1/namespaces/default/services/web:http/proxy/",
        "",
    )
    .unwrap();
    assert_eq!(
        (by_name.code, by_name.body.as_str()),
        (200, "hello from web\n")
    );

    // The bare `.../proxy` is redirected to `.../proxy/`, keeping the query.
    let bare = http(port, "GET", &format!("{svc}?x=1"), "").unwrap();
    assert_eq!(bare.code, 301, "{}", bare.head);
    assert_eq!(
        bare.header("location").as_deref(),
        Some(format!("{svc}/?x=1").as_str())
    );
    // The backend's redirect to its own path is rewritten into the proxy path.
    let moved = http(port, "GET", &format!("{svc}/sub"), "").unwrap();
    assert!(
        (300..400).contains(&moved.code),
        "{} {}",
        moved.head,
        moved.body
    );
    assert_eq!(
        moved.header("location").as_deref(),
        Some(format!("{svc}/sub/").as_str()),
        "{}",
        moved.head
    );

    // An HTML page's links to the backend's own paths are rewritten alike; others are left.
    let links = http(port, "GET", &format!("{svc}/links.html"), "").unwrap();
    assert_eq!(
        links.body,
        format!(
            "<html><body><a href=\"{svc}/sub/\">sub</a> <img src=\"rel.png\"> <a href=\"http://example.invalid/x\">out</a></body></html>\n"
        )
    );

    // A large answer comes through whole.
    let big = http(port, "GET", &format!("{svc}/big.bin"), "").unwrap();
    assert_eq!(
        (big.code, big.body.len()),
        (200, 20_000_000),
        "{}",
        big.head
    );

    // HEAD: the headers without a body; other methods reach the backend as they are.
    let head = http(port, "HEAD", &format!("{svc}/index.html"), "").unwrap();
    assert_eq!((head.code, head.body.as_str()), (200, ""), "{}", head.head);
    let posted = http(
        port,
        "POST",
        &format!("{svc}/cgi-bin/echo?via=proxy"),
        "a body",
    )
    .unwrap();
    assert_eq!(posted.code, 200, "{}", posted.body);
    assert_eq!(
        posted.body, "method=POST query=via=proxy length=6\na body",
        "{}",
        posted.head
    );
    // busybox httpd implements no DELETE: its own answer comes back, not the API server's.
    let deleted = http(port, "DELETE", &format!("{svc}/index.html"), "").unwrap();
    assert_eq!(deleted.code, 501, "{} {}", deleted.head, deleted.body);
    assert!(
        !deleted.body.contains("\"kind\":\"Status\""),
        "{}",
        deleted.body
    );

    // Errors through kubectl proxy keep their status code and Status body.
    let closed = http(
        port,
        "GET",
        "/api/v1/namespaces/default/pods/web:81/proxy/",
        "",
    )
    .unwrap();
    assert_eq!(closed.code, 503, "{}", closed.body);
    let status: serde_json::Value = serde_json::from_str(&closed.body).expect("a Status");
    assert_eq!(status["reason"], "ServiceUnavailable");
    assert_eq!(
        status["message"],
        format!("error trying to reach service: dial tcp {pod_ip}:81: connect: connection refused")
    );
    let empty = http(
        port,
        "GET",
        "/api/v1/namespaces/default/services/empty:80/proxy/",
        "",
    )
    .unwrap();
    assert_eq!(empty.code, 503, "{}", empty.body);
    assert!(
        empty
            .body
            .contains(r#"no endpoints available for service \"empty\""#),
        "{}",
        empty.body
    );

    // An upgraded connection is relayed both ways (kubectl proxy -> API server -> pod).
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET /api/v1/namespaces/default/pods/web:8080/proxy/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let k = s.read(&mut buf).unwrap();
        assert!(
            k > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..k]);
    }
    let head = String::from_utf8_lossy(&got).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping over the upgrade\n").unwrap();
    let mut echoed = Vec::new();
    while !String::from_utf8_lossy(&echoed).contains("ping over the upgrade") {
        let k = s.read(&mut buf).unwrap();
        assert!(
            k > 0,
            "upgrade closed: {}",
            String::from_utf8_lossy(&echoed)
        );
        echoed.extend_from_slice(&buf[..k]);
    }
    drop(s);

    // nodes/NAME/proxy/PATH: the node's kubelet over TLS.
    let healthz = n
        .cluster
        .ok(&["get", "--raw", "/api/v1/nodes/kaji-test-node/proxy/healthz"]);
    assert_eq!(healthz.trim(), "ok");
    let summary: serde_json::Value = serde_json::from_str(&n.cluster.ok(&[
        "get",
        "--raw",
        "/api/v1/nodes/kaji-test-node/proxy/stats/summary",
    ]))
    .unwrap();
    assert_eq!(summary["node"]["nodeName"], "kaji-test-node");
    let metrics = n.cluster.ok(&[
        "get",
        "--raw",
        "/api/v1/nodes/kaji-test-node/proxy/metrics/resource",
    ]);
    assert!(
        metrics.contains("node_cpu_usage_seconds_total"),
        "{metrics}"
    );
    let missing = raw(&n, &["get", "--raw", "/api/v1/nodes/nowhere/proxy/healthz"]);
    assert!(
        stderr(&missing).contains(r#"nodes "nowhere" not found"#),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn node_proxy_on_hollow_nodes_and_bad_requests() {
    let c = support::Cluster::start_with("api-proxy-hollow", &["--hollow-nodes", "1"]);
    wait_for("the hollow node", Duration::from_secs(60), || {
        let o = c.kubectl(&["get", "node", "hollow-node-0", "-o", "name"]);
        o.status.success().then_some(())
    });
    // A hollow node's simulated kubelet answers for it, as it does to the metrics scraper.
    let summary = wait_for("the hollow node's summary", Duration::from_secs(30), || {
        let o = c.kubectl(&[
            "get",
            "--raw",
            "/api/v1/nodes/hollow-node-0/proxy/stats/summary",
        ]);
        o.status.success().then(|| stdout(&o))
    });
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["node"]["nodeName"], "hollow-node-0");

    // A pod without an address, a malformed name, a missing pod: upstream's 400s and 404.
    c.apply(
        KUBECTL_NEW,
        r#"apiVersion: v1
kind: Pod
metadata:
  name: nowhere
spec:
  nodeSelector:
    no-such-label: "x"
  containers:
  - name: c
    image: busybox:latest
"#,
    );
    let fails = |path: &str| {
        let o = c.kubectl(&["get", "--raw", path, "-v=6"]);
        assert!(!o.status.success(), "{path}: {}", stdout(&o));
        stderr(&o)
    };
    let err = fails("/api/v1/namespaces/default/pods/nowhere:80/proxy/");
    assert!(
        err.contains("address not allowed") && err.contains("400 Bad Request"),
        "{err}"
    );
    let err = fails("/api/v1/namespaces/default/pods/a:b:c:d/proxy/");
    assert!(
        err.contains(r#"invalid pod request \"a:b:c:d\""#)
            || err.contains(r#"invalid pod request "a:b:c:d""#),
        "{err}"
    );
    let err = fails("/api/v1/namespaces/default/pods/ftp:web:21/proxy/");
    assert!(err.contains("invalid pod request"), "{err}");
    let err = fails("/api/v1/namespaces/default/pods/missing:80/proxy/");
    assert!(
        err.contains(r#"pods \"missing\" not found"#)
            || err.contains(r#"pods "missing" not found"#),
        "{err}"
    );
    assert!(err.contains("404 Not Found"), "{err}");
    let err = fails("/api/v1/namespaces/default/services/missing/proxy/");
    assert!(err.contains("not found"), "{err}");
}
