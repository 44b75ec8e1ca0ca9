//! pods/log over a WebSocket, as older clients (the Python client's `stream()`, older dashboards)
//! open it: a real container's log read with the `binary.k8s.io` subprotocol (binary messages),
//! with `base64.binary.k8s.io` (text messages of base64) and with none; `follow=true` carries a
//! line written after the WebSocket opened; a missing pod refuses the upgrade with a 404 Status.
//! The client is a small stdlib-only Python WebSocket client speaking TLS with the admin
//! certificate.

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use support::node::Node;

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: talker
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:latest
    command: ["sh", "-c", "echo one; echo two; while [ ! -e /tmp/go ]; do sleep 0.2; done; echo later; sleep 3600"]
"#;

/// A WebSocket client: `ws.py PORT TLSDIR PATH PROTOCOLS WAITFOR UNTIL`. Prints the answer's
/// status line and headers, `READY` once the log holds WAITFOR, then one JSON line:
/// {"status", "protocol", "opcodes", "text", "closed", "body"}; it reads until the server
/// closes or the text holds UNTIL.
const CLIENT: &str = r#"
import base64, json, os, socket, ssl, sys
port, tls, path, protocols, wait_for, until = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=os.path.join(tls, "ca.crt"))
ctx.load_cert_chain(os.path.join(tls, "client-admin.crt"), os.path.join(tls, "client-admin.key"))
ctx.check_hostname = False
sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port)), timeout=60))
key = base64.b64encode(os.urandom(16)).decode()
head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
if protocols:
    head += f"Sec-WebSocket-Protocol: {protocols}\r\n"
sock.sendall((head + "\r\n").encode())
buf = b""
while b"\r\n\r\n" not in buf:
    d = sock.recv(65536)
    if not d:
        break
    buf += d
header, _, buf = buf.partition(b"\r\n\r\n")
lines = header.decode().split("\r\n")
status = int(lines[0].split()[1])
headers = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
out = {"status": status, "protocol": headers.get("sec-websocket-protocol"), "opcodes": [], "text": "", "closed": False, "body": ""}
if status != 101:
    n = int(headers.get("content-length", "0"))
    while len(buf) < n:
        d = sock.recv(65536)
        if not d:
            break
        buf += d
    out["body"] = buf.decode(errors="replace")
    print(json.dumps(out), flush=True)
    sys.exit(0)
def need(n):
    global buf
    while len(buf) < n:
        d = sock.recv(65536)
        if not d:
            raise EOFError
        buf += d
    v, buf = buf[:n], buf[n:]
    return v
ready = False
try:
    while True:
        b0, b1 = need(2)
        op, n = b0 & 0x0F, b1 & 0x7F
        if n == 126:
            n = int.from_bytes(need(2), "big")
        elif n == 127:
            n = int.from_bytes(need(8), "big")
        payload = need(n)
        out["opcodes"].append(op)
        if op == 8:
            out["closed"] = True
            break
        if op == 1:
            out["text"] += base64.b64decode(payload).decode()
        elif op == 2:
            out["text"] += payload.decode()
        if wait_for and not ready and wait_for in out["text"]:
            ready = True
            print("READY", flush=True)
        if until and until in out["text"]:
            break
except (EOFError, socket.timeout):
    pass
print(json.dumps(out), flush=True)
"#;

struct Ws<'a> {
    node: &'a Node,
    script: std::path::PathBuf,
}

impl Ws<'_> {
    fn command(&self, path: &str, protocols: &str, wait_for: &str, until: &str) -> Command {
        let tls = self.node.cluster.data_dir().join("server").join("tls");
        let mut cmd = Command::new("python3");
        cmd.arg(&self.script)
            .arg(self.node.cluster.port.to_string())
            .arg(tls)
            .args([path, protocols, wait_for, until]);
        cmd
    }

    /// Opens `path` and reads until the server closes (or `until` shows).
    fn read(&self, path: &str, protocols: &str, until: &str) -> Value {
        let out = self
            .command(path, protocols, "", until)
            .output()
            .expect("running python3");
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text.lines().last().unwrap_or_default();
        serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("{e}: {text}\n{}", String::from_utf8_lossy(&out.stderr)))
    }
}

#[test]
fn pod_log_over_websocket_binary_base64_and_follow() {
    let node = Node::start("log-websocket");
    let script = node.cluster.data_dir().join("ws.py");
    std::fs::write(&script, CLIENT).expect("writing the client");
    let ws = Ws {
        node: &node,
        script,
    };
    node.apply(POD);
    node.wait_running("talker");
    node.wait_logs(&["talker"], "two");
    let path = "/api/v1/namespaces/default/pods/talker/log";

    // binary.k8s.io: binary messages, then the close when the log ends.
    let v = ws.read(path, "binary.k8s.io", "");
    assert_eq!(v["status"], 101, "{v}");
    assert_eq!(v["protocol"], "binary.k8s.io", "{v}");
    assert_eq!(v["text"], "one\ntwo\n", "{v}");
    assert_eq!(v["closed"], true, "{v}");
    let ops: Vec<u64> = v["opcodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert!(
        ops.len() >= 2 && ops[..ops.len() - 1].iter().all(|o| *o == 2),
        "{v}"
    );

    // base64.binary.k8s.io (offered first): text messages holding base64.
    let v = ws.read(path, "base64.binary.k8s.io, binary.k8s.io", "");
    assert_eq!(v["status"], 101, "{v}");
    assert_eq!(v["protocol"], "base64.binary.k8s.io", "{v}");
    assert_eq!(v["text"], "one\ntwo\n", "{v}");
    let ops: Vec<u64> = v["opcodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert!(
        ops.len() >= 2 && ops[..ops.len() - 1].iter().all(|o| *o == 1),
        "{v}"
    );

    // No subprotocol: binary, and no protocol in the answer. Options pass through (tailLines).
    let v = ws.read(&format!("{path}?container=main&tailLines=1"), "", "");
    assert_eq!(v["status"], 101, "{v}");
    assert_eq!(v["protocol"], Value::Null, "{v}");
    assert_eq!(v["text"], "two\n", "{v}");

    // follow: the WebSocket stays open and carries a line written after it opened.
    let mut child = ws
        .command(
            &format!("{path}?follow=true"),
            "binary.k8s.io",
            "two",
            "later",
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("running python3");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(
        first, "READY",
        "the followed log never showed its first lines"
    );
    node.cluster
        .ok(&["exec", "talker", "--", "sh", "-c", ": > /tmp/go"]);
    let last = lines.next().and_then(Result::ok).unwrap_or_default();
    let _ = child.wait();
    let v: Value = serde_json::from_str(&last).unwrap_or_else(|e| panic!("{e}: {last}"));
    assert_eq!(v["text"], "one\ntwo\nlater\n", "{v}");
    assert_eq!(v["closed"], false, "{v}");

    // An unknown subprotocol only: 400; a missing pod: the upgrade refused with a 404 Status.
    let v = ws.read(path, "v4.channel.k8s.io", "");
    assert_eq!(v["status"], 400, "{v}");
    let v = ws.read(
        "/api/v1/namespaces/default/pods/nope/log?follow=true",
        "binary.k8s.io",
        "",
    );
    assert_eq!(v["status"], 404, "{v}");
    let status: Value =
        serde_json::from_str(v["body"].as_str().unwrap()).unwrap_or_else(|e| panic!("{e}: {v}"));
    assert_eq!(status["kind"], "Status", "{status}");
    assert_eq!(status["reason"], "NotFound", "{status}");
    assert_eq!(status["message"], "pods \"nope\" not found", "{status}");
}
