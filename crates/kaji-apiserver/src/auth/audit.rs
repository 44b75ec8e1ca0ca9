//! The audit log (`--audit-log-path`): one audit.k8s.io/v1 `Event` JSON line per request at
//! level Metadata, as upstream's log backend writes them (k8s.io/apiserver/pkg/audit).
//!
//! Policy: kaji has no `--audit-policy-file`; it logs every request at Metadata level except the
//! health probes (`/healthz`, `/livez`, `/readyz` and their sub-paths), as the policies upstream
//! ships for its own clusters do (GCE's configure-helper.sh: `level: None` for `/healthz*`):
//! probes come every few seconds from every prober, carry no identity worth recording and would
//! drown the requests people read the log for. Stage `RequestReceived` is omitted as those
//! policies do (`omitStages: [RequestReceived]`); every request gets `ResponseComplete`, watches
//! and the other long-running requests (exec, attach, logs, port-forward, proxy) also
//! `ResponseStarted` when their headers go out, and `ResponseComplete` when the stream ends.
//!
//! Lines go through a bounded channel to one writer thread, so a slow disk never holds a
//! request; when the queue is full (the disk cannot keep up) events are dropped and counted, as
//! upstream's non-blocking mode does.

use super::User;
use super::authz::Attributes;
use crate::server::Body;
use http_body_util::BodyExt;
use kaji_api::ApiError;
use serde_json::{Map, Value, json};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

/// Events waiting for the writer thread before new ones are dropped.
const QUEUE: usize = 10_000;

/// The response header carrying the request's audit ID (upstream's `Audit-Id`).
pub const AUDIT_ID_HEADER: &str = "audit-id";

pub struct Audit {
    tx: Option<SyncSender<Vec<u8>>>,
    dropped: Arc<AtomicU64>,
}

/// What the audit log records about one request.
pub struct Record<'a> {
    /// The request's attributes; `attributes.user` is the user it acts as.
    pub attributes: &'a Attributes,
    /// The authenticated user (`user` of the Event).
    pub user: &'a User,
    /// The user impersonated, when the request carried impersonation headers.
    pub impersonated: Option<&'a User>,
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    pub source_ip: std::net::IpAddr,
    pub user_agent: &'a str,
    pub code: u16,
    pub received: std::time::SystemTime,
    pub audit_id: &'a str,
    /// The authorizer's decision (`Some(true)` allow, `Some(false)` forbid) and reason, when
    /// authorization ran.
    pub decision: Option<(bool, &'a str)>,
    /// The error answered, for responseStatus's status/message/reason.
    pub error: Option<&'a ApiError>,
}

/// RFC 3339 with microseconds, as upstream's metav1.MicroTime.
pub fn micro_time(t: std::time::SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// The audit ID of a request: the client's `Audit-ID` header when it sent one (as upstream),
/// else a new UUID.
pub fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get(AUDIT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Upstream's long-running request check (`watch` and `proxy` verbs; the attach, exec, proxy,
/// log and portforward subresources): these get a ResponseStarted event when their headers go
/// out and ResponseComplete when their stream ends.
fn long_running(a: &Attributes) -> bool {
    a.resource_request
        && (matches!(a.verb.as_str(), "watch" | "proxy")
            || matches!(
                a.subresource.as_str(),
                "attach" | "exec" | "proxy" | "log" | "portforward"
            ))
}

fn skipped(path: &str) -> bool {
    ["/healthz", "/livez", "/readyz"]
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

/// The Event of a request (stage and stageTimestamp set by the caller).
pub fn event(r: &Record<'_>) -> Map<String, Value> {
    let a = r.attributes;
    let mut e = Map::new();
    e.insert("kind".into(), json!("Event"));
    e.insert("apiVersion".into(), json!("audit.k8s.io/v1"));
    e.insert("level".into(), json!("Metadata"));
    e.insert("auditID".into(), json!(r.audit_id));
    e.insert("stage".into(), json!("ResponseComplete"));
    // The path and query, as Go's Request.RequestURI (an HTTP/2 request's URI also has the
    // scheme and authority).
    let uri = r.uri.path_and_query().map_or("/", |p| p.as_str());
    e.insert("requestURI".into(), json!(uri));
    e.insert("verb".into(), json!(a.verb));
    // A request that failed authentication has nobody: `{}` as upstream.
    let user = if r.user.name.is_empty() {
        json!({})
    } else {
        json!(r.user)
    };
    e.insert("user".into(), user);
    if let Some(u) = r.impersonated {
        e.insert("impersonatedUser".into(), json!(u));
    }
    e.insert("sourceIPs".into(), json!([r.source_ip.to_string()]));
    if !r.user_agent.is_empty() {
        e.insert("userAgent".into(), json!(r.user_agent));
    }
    if a.resource_request {
        let mut o = Map::new();
        for (k, v) in [
            ("resource", &a.resource),
            ("namespace", &a.namespace),
            ("name", &a.name),
            ("apiGroup", &a.api_group),
            ("apiVersion", &a.api_version),
            ("subresource", &a.subresource),
        ] {
            if !v.is_empty() {
                o.insert(k.into(), json!(v));
            }
        }
        e.insert("objectRef".into(), Value::Object(o));
    }
    let mut status = Map::new();
    status.insert("metadata".into(), json!({}));
    if let Some(err) = r.error {
        status.insert("status".into(), json!("Failure"));
        status.insert("message".into(), json!(err.message));
        status.insert("reason".into(), json!(err.reason));
    }
    status.insert("code".into(), json!(r.code));
    e.insert("responseStatus".into(), Value::Object(status));
    e.insert(
        "requestReceivedTimestamp".into(),
        json!(micro_time(r.received)),
    );
    e.insert(
        "stageTimestamp".into(),
        json!(micro_time(std::time::SystemTime::now())),
    );
    if let Some((allow, reason)) = r.decision {
        e.insert(
            "annotations".into(),
            json!({
                "authorization.k8s.io/decision": if allow { "allow" } else { "forbid" },
                "authorization.k8s.io/reason": reason,
            }),
        );
    }
    e
}

/// Writes the ResponseComplete event of a watch when its response body is dropped (the stream
/// ended or the client went away).
struct Completion {
    audit: Arc<Sender>,
    event: Map<String, Value>,
}

struct Sender {
    tx: SyncSender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

impl Sender {
    fn send(&self, e: &Map<String, Value>) {
        let mut line = serde_json::to_vec(e).unwrap_or_default();
        line.push(b'\n');
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    tracing::warn!(dropped = n + 1, "audit log queue full: events dropped");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.event.insert("stage".into(), json!("ResponseComplete"));
        self.event.insert(
            "stageTimestamp".into(),
            json!(micro_time(std::time::SystemTime::now())),
        );
        self.audit.send(&self.event);
    }
}

fn writer(rx: Receiver<Vec<u8>>, mut out: Box<dyn Write + Send>) {
    while let Ok(line) = rx.recv() {
        let mut ok = out.write_all(&line).is_ok();
        // Whatever else is queued goes out in the same flush.
        while let Ok(line) = rx.try_recv() {
            ok &= out.write_all(&line).is_ok();
        }
        ok &= out.flush().is_ok();
        if !ok {
            tracing::warn!("writing the audit log failed");
        }
    }
}

impl Audit {
    /// Opens the log (`-` is stdout, as upstream) and starts its writer thread; no path, no log.
    pub fn open(path: Option<&std::path::Path>) -> anyhow::Result<Audit> {
        let dropped = Arc::new(AtomicU64::new(0));
        let Some(path) = path else {
            return Ok(Audit { tx: None, dropped });
        };
        let out: Box<dyn Write + Send> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            use std::os::unix::fs::OpenOptionsExt;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| anyhow::anyhow!("opening the audit log {}: {e}", path.display()))?;
            Box::new(std::io::BufWriter::new(f))
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || writer(rx, out))?;
        Ok(Audit {
            tx: Some(tx),
            dropped,
        })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Events dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn sender(&self) -> Option<Sender> {
        Some(Sender {
            tx: self.tx.clone()?,
            dropped: self.dropped.clone(),
        })
    }

    /// Records a finished request (stage ResponseComplete).
    pub fn record(&self, r: &Record<'_>) {
        if let Some(s) = self.sender()
            && !skipped(r.uri.path())
        {
            s.send(&event(r));
        }
    }

    /// Sets the `Audit-Id` response header and records the request: ResponseComplete now, or
    /// for a watch that started streaming ResponseStarted now and ResponseComplete when its
    /// body is dropped.
    pub fn finish(&self, r: &Record<'_>, mut resp: http::Response<Body>) -> http::Response<Body> {
        if let Ok(v) = http::HeaderValue::from_str(r.audit_id) {
            resp.headers_mut().insert(AUDIT_ID_HEADER, v);
        }
        let Some(s) = self.sender().filter(|_| !skipped(r.uri.path())) else {
            return resp;
        };
        if !long_running(r.attributes) || !resp.status().is_success() {
            s.send(&event(r));
            return resp;
        }
        let mut e = event(r);
        e.insert("stage".into(), json!("ResponseStarted"));
        s.send(&e);
        let guard = Completion {
            audit: Arc::new(s),
            event: e,
        };
        resp.map(move |body| {
            body.map_frame(move |f| {
                let _ = &guard;
                f
            })
            .boxed()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_time_format() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(micro_time(t), "2023-11-14T22:13:20.123456Z");
    }

    #[test]
    fn health_paths_skipped() {
        assert!(skipped("/readyz"));
        assert!(skipped("/healthz/etcd"));
        assert!(!skipped("/readyzz"));
        assert!(!skipped("/api/v1/pods"));
    }

    #[test]
    fn event_fields() {
        let user = User::new("alice", &["system:authenticated"]);
        let attrs = super::super::authz::attributes(
            &user,
            &http::Method::GET,
            "/api/v1/namespaces/dev/pods/p",
            None,
        );
        let uri: http::Uri = "https://127.0.0.1:6443/api/v1/namespaces/dev/pods/p?x=1"
            .parse()
            .unwrap();
        let err = ApiError::forbidden("no");
        let r = Record {
            attributes: &attrs,
            user: &user,
            impersonated: None,
            method: &http::Method::GET,
            uri: &uri,
            source_ip: "127.0.0.1".parse().unwrap(),
            user_agent: "kubectl",
            code: 403,
            received: std::time::SystemTime::now(),
            audit_id: "id",
            decision: Some((false, "")),
            error: Some(&err),
        };
        let e = Value::Object(event(&r));
        assert_eq!(e["verb"], "get");
        assert_eq!(e["requestURI"], "/api/v1/namespaces/dev/pods/p?x=1");
        assert_eq!(
            e["objectRef"],
            json!({"resource": "pods", "namespace": "dev", "name": "p", "apiVersion": "v1"})
        );
        assert_eq!(e["responseStatus"]["code"], 403);
        assert_eq!(e["responseStatus"]["reason"], "Forbidden");
        assert_eq!(e["annotations"]["authorization.k8s.io/decision"], "forbid");
        assert_eq!(e["user"]["username"], "alice");
    }
}
