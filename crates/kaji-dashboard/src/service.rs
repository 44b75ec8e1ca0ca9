//! What the dashboard serves beside its files: `GET /dashboard/api/history/...`, the kept hour
//! of CPU and memory ([`crate::history`]), as JSON for the page.
//!
//! - `nodes`: every node's samples (`{"items": {"NAME": [[ms, cores, bytes], ...]}}`);
//! - `nodes/NAME`, `namespaces/NS/pods/NAME`: one object's (`{"points": [...]}`);
//! - `?since=MS`: only the samples after that time (the page appends live samples so).
//!
//! RBAC decides as for the metrics API itself: before answering, the dashboard makes the
//! viewer's own request for the same metrics (their `Authorization` header, to the API server)
//! and answers with the API server's 401 or 403 when it refuses; an allowed viewer is
//! remembered for a few seconds.

use crate::assets::Body;
use crate::history::{History, Kind};
use crate::standalone::Upstream;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A response to come.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// Where the history is served.
pub const HISTORY: &str = "/dashboard/api/history/";

/// How long an allowed viewer is remembered.
const ALLOWED_FOR: Duration = Duration::from_secs(10);

/// The dashboard's state: the history and how to ask the API server about a viewer.
#[derive(Default)]
pub struct Dashboard {
    pub history: Arc<History>,
    api: OnceLock<Upstream>,
    /// (Authorization, metrics path) -> allowed until.
    allowed: Mutex<HashMap<(HeaderValue, String), Instant>>,
}

fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}),
    )
}

/// What a history path names: the kind, the object (None: every node), and the metrics API
/// path whose reading decides the viewer's right.
fn parse(rest: &str) -> Option<(Kind, Option<String>, String)> {
    const M: &str = "/apis/metrics.k8s.io/v1beta1";
    let parts: Vec<&str> = rest.split('/').collect();
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    match parts.as_slice() {
        ["nodes"] => Some((Kind::Nodes, None, format!("{M}/nodes?limit=1"))),
        ["nodes", name] if ok(name) => Some((
            Kind::Nodes,
            Some(name.to_string()),
            format!("{M}/nodes/{name}"),
        )),
        ["namespaces", ns, "pods", name] if ok(ns) && ok(name) => Some((
            Kind::Pods,
            Some(format!("{ns}/{name}")),
            format!("{M}/namespaces/{ns}/pods/{name}"),
        )),
        _ => None,
    }
}

impl Dashboard {
    pub fn new() -> Arc<Dashboard> {
        Arc::new(Dashboard::default())
    }

    /// The API server viewers' rights are checked against (set once; before, history requests
    /// are answered 503).
    pub fn set_api(&self, upstream: Upstream) {
        let _ = self.api.set(upstream);
    }

    /// Answers a request for `/dashboard` or under it (the files, and the history); None for
    /// any other path.
    pub fn respond(self: &Arc<Self>, req: &http::request::Parts) -> Option<ResponseFuture> {
        let Some(rest) = req.uri.path().strip_prefix(HISTORY) else {
            let r = crate::assets::respond(req)?;
            return Some(Box::pin(std::future::ready(r)));
        };
        let this = self.clone();
        let rest = rest.to_string();
        let query = req.uri.query().unwrap_or_default().to_string();
        let authorization = req.headers.get(header::AUTHORIZATION).cloned();
        let get = req.method == http::Method::GET;
        Some(Box::pin(async move {
            if !get {
                return status(405, "MethodNotAllowed", "the history is read with GET");
            }
            this.history_response(&rest, &query, authorization).await
        }))
    }

    async fn history_response(
        &self,
        rest: &str,
        query: &str,
        authorization: Option<HeaderValue>,
    ) -> Response<Body> {
        let Some((kind, key, check)) = parse(rest) else {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            );
        };
        let Some(authorization) = authorization else {
            return status(401, "Unauthorized", "Unauthorized");
        };
        let Some(api) = self.api.get() else {
            return status(503, "ServiceUnavailable", "the dashboard is starting");
        };
        if let Err(refused) = self.check(api, &authorization, &check).await {
            return refused;
        }
        let since = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("since="))
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(i64::MIN);
        let points = |p: Vec<crate::history::Point>| {
            p.into_iter()
                .map(|(t, c, m)| json!([t, c, m]))
                .collect::<Vec<_>>()
        };
        let resolution = self.history.resolution().as_secs_f64();
        let body = match key {
            None => {
                let items: serde_json::Map<String, Value> = self
                    .history
                    .all(kind, since)
                    .into_iter()
                    .map(|(k, p)| (k, Value::Array(points(p))))
                    .collect();
                json!({"kind": "MetricsHistory", "resolutionSeconds": resolution, "items": items})
            }
            Some(key) => {
                let p = self.history.points(kind, &key, since).unwrap_or_default();
                json!({"kind": "MetricsHistory", "resolutionSeconds": resolution, "points": points(p)})
            }
        };
        json_response(StatusCode::OK, &body)
    }

    /// Whether the viewer may read the metrics at `path`: the API server's own answer to them.
    /// A 404 (no metrics for it now) is allowed: the right was granted, the history may exist.
    async fn check(
        &self,
        api: &Upstream,
        authorization: &HeaderValue,
        path: &str,
    ) -> Result<(), Response<Body>> {
        let key = (authorization.clone(), path.to_string());
        {
            let mut allowed = self
                .allowed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            if allowed.get(&key).is_some_and(|until| *until > now) {
                return Ok(());
            }
            // Bounded: a remembered viewer is a token (up to a few KiB) and a path; the expired
            // go once there are a few, and a flood of viewers empties it.
            if allowed.len() > 256 {
                allowed.retain(|_, until| *until > now);
                if allowed.len() > 1024 {
                    allowed.clear();
                }
                allowed.shrink_to_fit();
            }
        }
        match crate::standalone::get_as(api, path, authorization).await {
            Ok((code, _)) if code.is_success() || code == StatusCode::NOT_FOUND => {
                let mut allowed = self
                    .allowed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                allowed.insert(key, Instant::now() + ALLOWED_FOR);
                Ok(())
            }
            Ok((code, body)) => {
                // The API server's own Status (401, 403, ...), passed on as it is.
                let mut r = Response::new(Full::new(body).boxed());
                *r.status_mut() = code;
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Err(r)
            }
            Err(e) => Err(status(
                503,
                "ServiceUnavailable",
                &format!("the dashboard cannot reach the API server: {e}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            parse("nodes").unwrap().2,
            "/apis/metrics.k8s.io/v1beta1/nodes?limit=1"
        );
        let (k, key, check) = parse("namespaces/default/pods/web-1").unwrap();
        assert_eq!((k, key.as_deref()), (Kind::Pods, Some("default/web-1")));
        assert_eq!(
            check,
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web-1"
        );
        assert!(parse("nodes/a%2Fb").is_none());
        assert!(parse("namespaces/x/pods").is_none());
        assert!(parse("secrets").is_none());
    }
}
