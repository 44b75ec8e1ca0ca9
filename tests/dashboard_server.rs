//! The dashboard's server side, end to end against a real `kaji server` (curl as the browser,
//! stock kubectl): `/dashboard/` serves the embedded front end without credentials (even with
//! `--anonymous-auth=false`), assets with their types and caching, the single-page app's
//! fallback; `kaji dashboard` prints a URL whose token is a cluster-admin's bearer token; a
//! WebSocket exec authenticated by upstream's bearer subprotocol (what a browser can send) is
//! judged as the token's user; `kaji dashboard --kubeconfig F --listen ADDR` serves the files and
//! proxies the API with the viewer's own token, never the kubeconfig's credentials; both keep
//! an hour of CPU and memory from the metrics API and give it only to viewers RBAC lets read
//! those metrics.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{Cluster, KUBECTL_NEW};

/// What curl saw: status, headers (lower-case names), body.
struct Seen {
    code: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// One request with curl (HTTP/1.1, the cluster's CA, no client certificate).
fn curl(cluster: &Cluster, url: &str, headers: &[(&str, &str)]) -> Seen {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--http1.1", "--max-time", "20", "-D", "-"]);
    cmd.arg("--cacert")
        .arg(cluster.data_dir().join("server/tls/ca.crt"));
    for (k, v) in headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    let out = cmd.arg(url).output().expect("running curl");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Seen {
        code,
        headers,
        body: body.to_string(),
    }
}

fn https(cluster: &Cluster, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", cluster.port)
}

/// Runs `kaji dashboard` for the cluster's data dir: the URL it printed.
fn login_url(cluster: &Cluster) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kaji"))
        .arg("dashboard")
        .arg("--data-dir")
        .arg(cluster.data_dir())
        .env_remove("KUBECONFIG")
        .output()
        .expect("running kaji dashboard");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "kaji dashboard failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn token_of(url: &str) -> String {
    url.split_once("#token=")
        .map(|(_, t)| t.to_string())
        .unwrap_or_else(|| panic!("no token in {url:?}"))
}

/// A kubeconfig with only the cluster's CA and a bearer token.
fn token_kubeconfig(cluster: &Cluster, name: &str, token: &str) -> std::path::PathBuf {
    let path = cluster.data_dir().join(format!("{name}.kubeconfig"));
    let ca = cluster.data_dir().join("server/tls/ca.crt");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
        cluster.port,
        ca.display()
    );
    std::fs::write(&path, text).expect("writing a kubeconfig");
    path
}

fn kubectl_as(kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(KUBECTL_NEW)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("running kubectl");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn dashboard_files_are_served_without_credentials() {
    // No anonymous requests: the API wants credentials, the dashboard's page does not.
    let cluster = Cluster::start_with("dash-files", &["--anonymous-auth=false"]);
    assert_eq!(
        curl(&cluster, &https(&cluster, "/api/v1/namespaces"), &[]).code,
        401
    );
    let index = curl(&cluster, &https(&cluster, "/dashboard/"), &[]);
    assert_eq!(index.code, 200, "{}", index.body);
    assert_eq!(index.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(index.header("cache-control"), "no-cache");
    assert!(
        index.body.contains("<title>Kaji dashboard</title>"),
        "{}",
        index.body
    );
    assert!(
        index
            .header("content-security-policy")
            .contains("default-src 'self'")
    );
    // The bare prefix redirects; an unknown route of the single-page app gets the page.
    let bare = curl(&cluster, &https(&cluster, "/dashboard"), &[]);
    assert_eq!((bare.code, bare.header("location")), (301, "/dashboard/"));
    let route = curl(
        &cluster,
        &https(&cluster, "/dashboard/namespaces/default/pods/web-1"),
        &[],
    );
    assert_eq!(route.code, 200);
    assert_eq!(route.body, index.body);
    // The script the page loads, with its type and long caching (Vite hashes its name).
    let script = index
        .body
        .split(['"', '\''])
        .find(|s| s.contains("assets/") && s.ends_with(".js"))
        .expect("a script under assets/")
        .to_string();
    let script = script
        .trim_start_matches("./")
        .trim_start_matches("/dashboard/");
    let js = curl(
        &cluster,
        &https(&cluster, &format!("/dashboard/{script}")),
        &[],
    );
    assert_eq!(js.code, 200);
    assert_eq!(js.header("content-type"), "text/javascript; charset=utf-8");
    assert!(
        js.header("cache-control").contains("immutable"),
        "{:?}",
        js.headers
    );
    assert_eq!(js.header("content-length"), js.body.len().to_string());
    // Its gzip copy, when the build made one, for a browser that takes gzip.
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../kaji-dashboard/ui/dist");
    if dist.join(format!("{script}.gz")).exists() {
        let gz = curl(
            &cluster,
            &https(&cluster, &format!("/dashboard/{script}")),
            &[("Accept-Encoding", "gzip, deflate, br")],
        );
        assert_eq!(gz.code, 200);
        assert_eq!(
            (gz.header("content-encoding"), gz.header("vary")),
            ("gzip", "Accept-Encoding")
        );
        assert_eq!(gz.header("content-type"), "text/javascript; charset=utf-8");
        assert!(
            gz.header("content-length")
                .parse::<usize>()
                .unwrap_or(usize::MAX)
                < js.body.len()
        );
    }
    assert_eq!(
        curl(
            &cluster,
            &https(&cluster, "/dashboard/assets/missing-00000000.js"),
            &[]
        )
        .code,
        404
    );
    // Revalidation of the page answers 304.
    let etag = index.header("etag").to_string();
    assert_eq!(
        curl(
            &cluster,
            &https(&cluster, "/dashboard/"),
            &[("If-None-Match", &etag)]
        )
        .code,
        304
    );
}

#[test]
fn disabled_dashboard_is_not_served() {
    let cluster = Cluster::start_with("dash-off", &["--disable", "dashboard"]);
    // Anonymous may not read /dashboard/ as an API path; the admin finds nothing there.
    assert_eq!(
        curl(&cluster, &https(&cluster, "/dashboard/"), &[]).code,
        403
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kaji"))
        .arg("dashboard")
        .arg("--data-dir")
        .arg(cluster.data_dir())
        .env_remove("KUBECONFIG")
        .output()
        .expect("running kaji dashboard");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("serves no dashboard"), "{stderr}");
}

#[test]
fn kaji_dashboard_prints_a_cluster_admin_login() {
    let cluster = Cluster::start("dash-login");
    let started = std::time::Instant::now();
    let url = login_url(&cluster);
    eprintln!("kaji dashboard took {:?}", started.elapsed());
    assert!(
        url.starts_with(&format!(
            "https://127.0.0.1:{}/dashboard/#token=",
            cluster.port
        )),
        "{url}"
    );
    let token = token_of(&url);
    // Idempotent: a second run gives another working login.
    let again = token_of(&login_url(&cluster));
    let crb = cluster.json(&["get", "clusterrolebinding", "kaji-dashboard-admin"]);
    assert_eq!(crb["roleRef"]["name"], "cluster-admin");
    assert_eq!(crb["subjects"].as_array().map(Vec::len), Some(1));
    // The token is a bearer token for the API...
    for t in [&token, &again] {
        let list = curl(
            &cluster,
            &https(&cluster, "/api/v1/namespaces"),
            &[("Authorization", &format!("Bearer {t}"))],
        );
        assert_eq!(list.code, 200, "{}", list.body);
        assert!(
            list.body.contains("\"kind\":\"NamespaceList\""),
            "{}",
            list.body
        );
    }
    // ... of the dashboard's ServiceAccount, a cluster-admin.
    let kc = token_kubeconfig(&cluster, "dashboard", &token);
    let who = kubectl_as(
        &kc,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(
        who.trim(),
        "system:serviceaccount:kube-system:kaji-dashboard-admin"
    );
    assert_eq!(
        kubectl_as(&kc, &["auth", "can-i", "*", "*", "--all-namespaces"]).trim(),
        "yes"
    );
}

/// A WebSocket upgrade for pods/exec as a browser sends it: the token in a subprotocol.
fn websocket_exec(base: &str, cluster: &Cluster, protocols: &str) -> Seen {
    let url = format!(
        "{base}/api/v1/namespaces/default/pods/web/exec?command=sh&stdin=true&stdout=true&tty=true"
    );
    curl(
        cluster,
        &url,
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Protocol", protocols),
        ],
    )
}

fn bearer_protocol(token: &str) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = token.as_bytes();
    let mut out = String::from("base64url.bearer.authorization.k8s.io.");
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn websocket_bearer_subprotocol_is_authenticated() {
    let cluster = Cluster::start("dash-ws");
    let admin = token_of(&login_url(&cluster));
    cluster.ok(&["create", "serviceaccount", "viewer"]);
    cluster.ok(&[
        "create",
        "rolebinding",
        "viewer",
        "--clusterrole=view",
        "--serviceaccount=default:viewer",
    ]);
    let viewer = cluster
        .ok(&["create", "token", "viewer"])
        .trim()
        .to_string();
    let base = https(&cluster, "");
    let offer = |token: &str| format!("v4.channel.k8s.io, {}", bearer_protocol(token));
    // The viewer is recognised, and may not exec.
    let denied = websocket_exec(&base, &cluster, &offer(&viewer));
    assert_eq!(denied.code, 403, "{}", denied.body);
    assert!(
        denied.body.contains("system:serviceaccount:default:viewer")
            && denied.body.contains("pods/exec"),
        "{}",
        denied.body
    );
    // The admin gets through authentication and authorization to the (missing) pod.
    let admitted = websocket_exec(&base, &cluster, &offer(&admin));
    assert_eq!(admitted.code, 404, "{}", admitted.body);
    assert!(
        admitted.body.contains("pods \\\"web\\\" not found"),
        "{}",
        admitted.body
    );
    // A wrong token, or the token with no protocol to answer: 401; no token: anonymous, 403.
    assert_eq!(
        websocket_exec(&base, &cluster, &offer("not-a-token")).code,
        401
    );
    assert_eq!(
        websocket_exec(&base, &cluster, &bearer_protocol(&admin)).code,
        401
    );
    let anonymous = websocket_exec(&base, &cluster, "v4.channel.k8s.io");
    assert_eq!(anonymous.code, 403);
    assert!(
        anonymous.body.contains("system:anonymous"),
        "{}",
        anonymous.body
    );
    // Not a WebSocket upgrade: the subprotocol header means nothing (anonymous).
    let plain = curl(
        &cluster,
        &https(&cluster, "/api/v1/namespaces"),
        &[("Sec-WebSocket-Protocol", &offer(&admin))],
    );
    assert_eq!(plain.code, 403, "{}", plain.body);
}

/// `kaji dashboard --listen`, stopped on drop.
struct Standalone(Child);

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `kaji dashboard --listen 127.0.0.1:0` for the cluster: the process and its
/// `http://host:port`, from the URL it prints.
fn start_standalone(cluster: &Cluster) -> (Standalone, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kaji"))
        .args(["dashboard", "--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(&cluster.kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting kaji dashboard --listen");
    let stdout = child.stdout.take().expect("stdout");
    let standalone = Standalone(child);
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("reading the dashboard's URL");
    let url = first.trim().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/dashboard/"),
        "{url:?}"
    );
    (standalone, url.trim_end_matches("/dashboard/").to_string())
}

#[test]
fn standalone_dashboard_proxies_as_the_viewer() {
    let cluster = Cluster::start("dash-standalone");
    let admin = token_of(&login_url(&cluster));
    let (standalone, base) = start_standalone(&cluster);
    let url = format!("{base}/dashboard/");
    let index = curl(&cluster, &url, &[]);
    assert_eq!(index.code, 200);
    assert!(index.body.contains("<title>Kaji dashboard</title>"));
    // The viewer's token goes through; without one the cluster sees nobody (the kubeconfig's
    // admin certificate is not lent to the browser).
    let list = curl(
        &cluster,
        &format!("{base}/api/v1/namespaces"),
        &[("Authorization", &format!("Bearer {admin}"))],
    );
    assert_eq!(list.code, 200, "{}", list.body);
    assert!(list.body.contains("\"kind\":\"NamespaceList\""));
    let nobody = curl(&cluster, &format!("{base}/api/v1/namespaces"), &[]);
    assert_eq!(nobody.code, 403, "{}", nobody.body);
    assert!(nobody.body.contains("system:anonymous"), "{}", nobody.body);
    assert_eq!(
        curl(
            &cluster,
            &format!("{base}/api/v1/namespaces"),
            &[("Authorization", "Bearer wrong")]
        )
        .code,
        401
    );
    let version = curl(&cluster, &format!("{base}/version"), &[]);
    assert!(version.body.contains("gitVersion"), "{}", version.body);
    // A watch streams through: the event for a namespace comes as it happens, long before the
    // watch's end (whether it was made before or after the watch started, it is ADDED).
    let watch_url = format!(
        "{base}/api/v1/namespaces?watch=1&timeoutSeconds=15&fieldSelector=metadata.name%3Dlate"
    );
    let started = std::time::Instant::now();
    let mut watch = Command::new("curl")
        .args(["-sS", "-N", "--max-time", "30", "-H"])
        .arg(format!("Authorization: Bearer {admin}"))
        .arg(&watch_url)
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl watch");
    let events = watch.stdout.take().expect("stdout");
    cluster.ok(&["create", "namespace", "late"]);
    let mut line = String::new();
    BufReader::new(events)
        .read_line(&mut line)
        .expect("a watch event");
    let waited = started.elapsed();
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(
        line.contains("\"type\":\"ADDED\"") && line.contains("\"name\":\"late\""),
        "{line}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "the event took {waited:?}: the watch was not streamed"
    );
    // Upgrades go through too: the exec WebSocket with the bearer subprotocol reaches the API.
    let offer = format!("v4.channel.k8s.io, {}", bearer_protocol(&admin));
    let ws = websocket_exec(&base, &cluster, &offer);
    assert_eq!(ws.code, 404, "{}", ws.body);
    // Other paths are not the cluster's.
    assert_eq!(curl(&cluster, &format!("{base}/metrics"), &[]).code, 404);
    drop(standalone);
}

/// A WebSocket client as a browser's: TLS to the API server, the upgrade with the token in a
/// subprotocol, masked binary frames out, the server's frames in.
struct BrowserSocket {
    io: Box<dyn ReadWrite>,
    /// The upgrade answer's head.
    head: String,
}

trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

impl BrowserSocket {
    /// To the API server, over TLS trusting the cluster's CA.
    fn to_cluster(cluster: &Cluster, path: &str, protocols: &str) -> BrowserSocket {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let ca =
            std::fs::read(cluster.data_dir().join("server/tls/ca.crt")).expect("the cluster CA");
        for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
            roots
                .add(cert.expect("a PEM certificate"))
                .expect("a CA certificate");
        }
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("a server name");
        let conn =
            rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("a TLS client");
        let host = format!("127.0.0.1:{}", cluster.port);
        let tcp = std::net::TcpStream::connect(&host).expect("connecting");
        tcp.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("a read timeout");
        BrowserSocket::open(
            Box::new(rustls::StreamOwned::new(conn, tcp)),
            &format!("https://{host}"),
            path,
            protocols,
        )
    }

    /// To a plain HTTP origin (`kaji dashboard --listen`), `base` as `http://host:port`.
    fn to_plain(base: &str, path: &str, protocols: &str) -> BrowserSocket {
        let host = base.trim_start_matches("http://");
        let tcp = std::net::TcpStream::connect(host).expect("connecting");
        tcp.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("a read timeout");
        BrowserSocket::open(Box::new(tcp), base, path, protocols)
    }

    fn open(
        mut io: Box<dyn ReadWrite>,
        origin: &str,
        path: &str,
        protocols: &str,
    ) -> BrowserSocket {
        let host = origin.split_once("://").map_or(origin, |(_, h)| h);
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: {protocols}\r\n\r\n"
        );
        io.write_all(request.as_bytes())
            .expect("sending the upgrade");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            io.read_exact(&mut byte)
                .expect("reading the upgrade's answer");
            head.push(byte[0]);
        }
        BrowserSocket {
            io,
            head: String::from_utf8_lossy(&head).into_owned(),
        }
    }

    /// Sends a binary message on a channel (browsers mask every frame).
    fn send(&mut self, channel: u8, data: &[u8]) {
        use std::io::Write;
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let len = data.len() + 1;
        let mut frame = vec![0x82];
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        frame.extend_from_slice(&mask);
        frame.extend(
            std::iter::once(channel)
                .chain(data.iter().copied())
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4]),
        );
        self.io.write_all(&frame).expect("sending a message");
        self.io.flush().expect("flushing");
    }

    /// The next message: (opcode, payload); None when the connection ends.
    fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        use std::io::Read;
        let mut h = [0u8; 2];
        self.io.read_exact(&mut h).ok()?;
        let mut len = u64::from(h[1] & 0x7f);
        if len == 126 {
            let mut b = [0u8; 2];
            self.io.read_exact(&mut b).ok()?;
            len = u64::from(u16::from_be_bytes(b));
        } else if len == 127 {
            let mut b = [0u8; 8];
            self.io.read_exact(&mut b).ok()?;
            len = u64::from_be_bytes(b);
        }
        let mut payload = vec![0u8; usize::try_from(len).ok()?];
        self.io.read_exact(&mut payload).ok()?;
        Some((h[0] & 0x0f, payload))
    }
}

/// What the dashboard's terminal does: exec over `v4.channel.k8s.io` with a tty and stdin, the
/// token in the bearer subprotocol, a resize, a line typed; through the API server to a real
/// container (the upgrade is spliced to the kubelet and the runtime, which speak v4).
#[test]
fn browser_exec_terminal_over_websocket() {
    let n = support::node::Node::start("dash-exec");
    n.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: shell\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: sh\n    image: busybox:latest\n    command: [\"sleep\", \"3600\"]\n");
    n.wait_running("shell");
    let token = token_of(&login_url(&n.cluster));
    // The runtime applies a resize asynchronously: `stty size` fails while the terminal is
    // still 0x0 (busybox prints nothing then), so the script polls it (5 s at most) before printing it.
    let script = "test -t 0 && echo IS-A-TTY; read line; i=0; until s=$(stty size 2>/dev/null); [ -n \"$s\" ] || [ $i -ge 25 ]; do i=$((i+1)); sleep 0.2; done; echo $s; echo got-$line; exit 3";
    let query: String = script
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let path = format!(
        "/api/v1/namespaces/default/pods/shell/exec?command=sh&command=-c&command={query}&stdin=true&stdout=true&tty=true"
    );
    let protocols = format!("v4.channel.k8s.io, {}", bearer_protocol(&token));
    let started = std::time::Instant::now();
    terminal_session(
        BrowserSocket::to_cluster(&n.cluster, &path, &protocols),
        "v4.channel.k8s.io",
    );
    eprintln!(
        "browser exec session through the API server: {:?}",
        started.elapsed()
    );
    // A browser offering v5 first gets the API server's translation to the kubelet's SPDY.
    let v5 = format!(
        "v5.channel.k8s.io, v4.channel.k8s.io, {}",
        bearer_protocol(&token)
    );
    terminal_session(
        BrowserSocket::to_cluster(&n.cluster, &path, &v5),
        "v5.channel.k8s.io",
    );
    // The same through the standalone dashboard: its proxy splices the upgraded connection.
    let (standalone, base) = start_standalone(&n.cluster);
    let started = std::time::Instant::now();
    terminal_session(
        BrowserSocket::to_plain(&base, &path, &protocols),
        "v4.channel.k8s.io",
    );
    eprintln!(
        "browser exec session through kaji dashboard --listen: {:?}",
        started.elapsed()
    );
    drop(standalone);
}

/// The terminal's session: the upgrade accepted with `protocol` (and never the token's), a
/// resize, a line typed, the output and the exit code.
fn terminal_session(mut ws: BrowserSocket, protocol: &str) {
    assert!(ws.head.starts_with("HTTP/1.1 101"), "{}", ws.head);
    let head = ws.head.to_ascii_lowercase();
    assert!(
        head.contains(&format!("sec-websocket-protocol: {protocol}\r\n")),
        "{}",
        ws.head
    );
    assert!(
        !head.contains("bearer"),
        "the token's protocol was echoed: {}",
        ws.head
    );
    // The terminal's size (channel 4), then a line typed (channel 0).
    ws.send(4, br#"{"Width":91,"Height":33}"#);
    ws.send(0, b"hello\r");
    let (mut stdout, mut status) = (String::new(), String::new());
    while let Some((opcode, payload)) = ws.next() {
        match (opcode, payload.split_first()) {
            (0x8, _) => break,
            (0x2, Some((1, data))) => stdout.push_str(&String::from_utf8_lossy(data)),
            (0x2, Some((3, data))) => status.push_str(&String::from_utf8_lossy(data)),
            _ => {}
        }
    }
    assert!(stdout.contains("IS-A-TTY"), "{stdout:?}");
    assert!(stdout.contains("33 91"), "no resize: {stdout:?}");
    assert!(stdout.contains("got-hello"), "{stdout:?}");
    // The exit code, as upstream's v4 error channel carries it.
    assert!(
        status.contains("NonZeroExitCode") && status.contains("\"message\":\"3\""),
        "{status}"
    );
}

/// The history's points (`[ms, cores, bytes]`) in an answer, with `key` (None: `points`).
fn history_points(body: &str, key: Option<&str>) -> Vec<(i64, f64, f64)> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let points = match key {
        Some(k) => &v["items"][k],
        None => &v["points"],
    };
    points
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p[0].as_i64().unwrap_or(0),
                        p[1].as_f64().unwrap_or(-1.0),
                        p[2].as_f64().unwrap_or(-1.0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn metrics_history_is_kept_by_the_dashboard_and_given_by_rbac() {
    let cluster = Cluster::start_with(
        "dash-history",
        &["--hollow-nodes", "1", "--metric-resolution", "1s"],
    );
    let admin = token_of(&login_url(&cluster));
    let bearer = |t: &str| format!("Bearer {t}");
    // A hollow pod using 250m and 64 MiB (the hollow kubelet reports what it is told).
    cluster.ok(&[
        "run",
        "busy",
        "--image=nginx",
        "--annotations=kaji.io/hollow-cpu-millicores=250",
        "--annotations=kaji.io/hollow-memory-bytes=67108864",
    ]);
    let pod_url = https(&cluster, "/dashboard/api/history/namespaces/default/pods/busy");
    let nodes_url = https(&cluster, "/dashboard/api/history/nodes");
    // Samples accumulate in the server while no page is open.
    let points = support::wait_for(
        "five samples of the pod in the dashboard's history",
        Duration::from_secs(90),
        || {
            let seen = curl(&cluster, &pod_url, &[("Authorization", &bearer(&admin))]);
            assert_eq!(seen.code, 200, "{}", seen.body);
            let p = history_points(&seen.body, None);
            (p.iter().filter(|(_, cpu, _)| *cpu > 0.2).count() >= 5).then_some(p)
        },
    );
    let last = points.last().copied().expect("a sample");
    assert!(
        (last.1 - 0.25).abs() < 0.01 && (last.2 - 67_108_864.0).abs() < 67_108_864.0 / 500.0,
        "the pod's last sample: {last:?}"
    );
    assert!(points.windows(2).all(|w| w[0].0 < w[1].0), "{points:?}");
    // `since` gives only what came after.
    let later = curl(
        &cluster,
        &format!("{pod_url}?since={}", last.0),
        &[("Authorization", &bearer(&admin))],
    );
    assert!(history_points(&later.body, None).iter().all(|p| p.0 > last.0));
    let nodes = curl(&cluster, &nodes_url, &[("Authorization", &bearer(&admin))]);
    assert_eq!(nodes.code, 200, "{}", nodes.body);
    let node = history_points(&nodes.body, Some("hollow-node-0"));
    assert!(
        node.len() >= 3 && node.last().is_some_and(|p| p.1 >= 0.2),
        "{}",
        nodes.body
    );

    // RBAC decides, as for the metrics themselves: nobody without credentials, a service
    // account without rights gets the API server's own 403, one that may read pod metrics in
    // the pod's namespace reads the pod's history but not the nodes'.
    assert_eq!(curl(&cluster, &pod_url, &[]).code, 401);
    cluster.ok(&["create", "serviceaccount", "nometrics"]);
    cluster.ok(&["create", "serviceaccount", "viewer"]);
    cluster.ok(&[
        "create",
        "role",
        "pod-metrics",
        "--verb=get,list",
        "--resource=pods.metrics.k8s.io",
    ]);
    cluster.ok(&[
        "create",
        "rolebinding",
        "viewer-pod-metrics",
        "--role=pod-metrics",
        "--serviceaccount=default:viewer",
    ]);
    let nometrics = cluster.ok(&["create", "token", "nometrics"]);
    let viewer = cluster.ok(&["create", "token", "viewer"]);
    let refused = curl(&cluster, &pod_url, &[("Authorization", &bearer(&nometrics))]);
    assert_eq!(refused.code, 403, "{}", refused.body);
    let message = serde_json::from_str::<serde_json::Value>(&refused.body).unwrap_or_default()
        ["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        message,
        "pods.metrics.k8s.io \"busy\" is forbidden: User \"system:serviceaccount:default:nometrics\" cannot get resource \"pods\" in API group \"metrics.k8s.io\" in the namespace \"default\"",
        "{}",
        refused.body
    );
    assert!(!refused.body.contains("points"));
    let nodes_refused = curl(&cluster, &nodes_url, &[("Authorization", &bearer(&nometrics))]);
    assert_eq!(nodes_refused.code, 403, "{}", nodes_refused.body);
    let wrong = curl(&cluster, &pod_url, &[("Authorization", "Bearer wrong")]);
    assert_eq!(wrong.code, 401, "{}", wrong.body);
    support::wait_for(
        "the viewer's rights to apply",
        Duration::from_secs(30),
        || {
            let seen = curl(&cluster, &pod_url, &[("Authorization", &bearer(&viewer))]);
            (seen.code == 200 && !history_points(&seen.body, None).is_empty()).then_some(())
        },
    );
    let viewer_nodes = curl(&cluster, &nodes_url, &[("Authorization", &bearer(&viewer))]);
    assert_eq!(viewer_nodes.code, 403, "{}", viewer_nodes.body);

    // `kaji dashboard --listen` keeps its own history, sampled with the kubeconfig's
    // credentials, and asks the cluster about each viewer the same way.
    let (_standalone, base) = start_standalone(&cluster);
    let url = format!("{base}/dashboard/api/history/namespaces/default/pods/busy");
    support::wait_for(
        "three samples in the standalone dashboard's history",
        Duration::from_secs(60),
        || {
            let seen = curl(&cluster, &url, &[("Authorization", &bearer(&admin))]);
            assert_eq!(seen.code, 200, "{}", seen.body);
            (history_points(&seen.body, None).len() >= 3).then_some(())
        },
    );
    let refused = curl(&cluster, &url, &[("Authorization", &bearer(&nometrics))]);
    assert_eq!(refused.code, 403, "{}", refused.body);
    assert_eq!(curl(&cluster, &url, &[]).code, 401);
}
