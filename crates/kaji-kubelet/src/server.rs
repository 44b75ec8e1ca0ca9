//! The kubelet's HTTPS server (upstream port 10250): today `GET /containerLogs/<ns>/<pod>/<container>`
//! with `follow`, `tailLines`, `sinceSeconds`, `sinceTime`, `timestamps`, `previous` and
//! `limitBytes`, read from the CRI log files (`<RFC3339Nano> stdout|stderr F|P <text>`),
//! `/exec`, `/attach` and `/portForward` (see `streaming`), `/stats/summary` and
//! `/metrics/resource` (see `stats`), and `/healthz`. The API server proxies `pods/<p>/log`,
//! `exec`, `attach` and `portforward` here, and scrapes `/metrics/resource` for the metrics API.
//!
//! Its certificate is self-signed (generated at start, kept under the agent directory); the API
//! server does not verify it yet, and this server does not authenticate its callers yet: both
//! are the next step (a serving certificate signed by the cluster CA, client-certificate auth).

use crate::cri::{self, Cri, api};
use crate::streaming::{self, Kind};
use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};

type Body = BoxBody<Bytes, Infallible>;

pub struct KubeletServer {
    pub cri: Cri,
    /// The node's name (for `/stats/summary`).
    pub node_name: String,
    /// Previous CPU samples, for `usageNanoCores`.
    pub rates: crate::stats::Rates,
}

/// The kubelet's TLS material: a serving certificate signed by the cluster CA, and that CA,
/// which also signs the clients the kubelet accepts (the API server's
/// `kube-apiserver-kubelet-client` certificate, admins).
#[derive(Clone, Debug)]
pub struct ServingCerts {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
    /// The node the certificate was issued for.
    pub node_name: String,
}

/// Asks the API server for a serving certificate for `node` and its `names` (k3s's
/// `/v1-k3s/serving-kubelet.crt`, here `/v1-kaji/serving-kubelet.crt`), and keeps a copy in `dir`.
pub async fn serving_certificate(
    client: &kube::Client,
    node: &str,
    names: &[String],
    dir: &Path,
) -> Result<ServingCerts> {
    let certs = request_serving_certificate(client, node, names).await?;
    std::fs::create_dir_all(dir)?;
    for (name, text, mode) in [
        ("kubelet.crt", &certs.cert_pem, 0o644),
        ("kubelet.key", &certs.key_pem, 0o600),
        ("ca.crt", &certs.ca_pem, 0o644),
    ] {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(dir.join(name))?;
        f.write_all(text.as_bytes())?;
    }
    Ok(certs)
}

/// The serving certificate of `serving_certificate`, kept in memory only (hollow nodes).
pub async fn request_serving_certificate(
    client: &kube::Client,
    node: &str,
    names: &[String],
) -> Result<ServingCerts> {
    let body = serde_json::to_vec(&serde_json::json!({"nodeName": node, "names": names}))?;
    let req = Request::post("/v1-kaji/serving-kubelet.crt")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)?;
    let text = client
        .request_text(req)
        .await
        .context("asking the API server for the kubelet's serving certificate")?;
    let v: serde_json::Value = serde_json::from_str(&text).context("the certificate answer")?;
    let field = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .with_context(|| format!("no {k} in the certificate answer"))
    };
    let certs = ServingCerts {
        cert_pem: field("cert")?,
        key_pem: field("key")?,
        ca_pem: field("ca")?,
        node_name: node.to_string(),
    };
    Ok(certs)
}

fn tls_config(certs: &ServingCerts) -> Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain =
        rustls_pemfile::certs(&mut certs.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key =
        rustls_pemfile::private_key(&mut certs.key_pem.as_bytes())?.context("no private key")?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut certs.ca_pem.as_bytes()) {
        roots.add(ca?)?;
    }
    // Clients without a certificate get through the handshake and a 401, as upstream's kubelet
    // with anonymous auth off; a certificate from another CA fails the handshake.
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Binds the server; returns the port (useful with port 0) and the serving task.
pub async fn bind(
    cri: Cri,
    port: u16,
    certs: &ServingCerts,
) -> Result<(
    u16,
    impl std::future::Future<Output = Result<()>> + Send + use<>,
)> {
    let server = Arc::new(KubeletServer {
        cri,
        node_name: certs.node_name.clone(),
        rates: crate::stats::Rates::default(),
    });
    serve_tls(("0.0.0.0", port), certs, move |req| {
        let server = server.clone();
        async move { server.handle(req).await }
    })
    .await
}

/// The hollow nodes' kubelet endpoint (simulation): one HTTPS server on 127.0.0.1 for all of a
/// hollow agent's nodes, serving `/hollow/<node>/metrics/resource` and
/// `/hollow/<node>/stats/summary` from their synthetic usage. Each hollow node names it in the
/// `kaji.io/hollow-kubelet-endpoint` annotation, where the API server's metrics scraper finds it
/// (hollow nodes' addresses are fake).
pub async fn bind_hollow(
    usage: Arc<crate::stats::Synthetic>,
    certs: &ServingCerts,
) -> Result<(
    u16,
    impl std::future::Future<Output = Result<()>> + Send + use<>,
)> {
    let rates = Arc::new(crate::stats::Rates::default());
    serve_tls(("127.0.0.1", 0), certs, move |req| {
        let (usage, rates) = (usage.clone(), rates.clone());
        async move {
            let path = req.uri().path().to_string();
            let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            match parts.as_slice() {
                ["hollow", node, "metrics", "resource"] => {
                    prometheus_text(crate::stats::resource_metrics(&usage.sample(node)))
                }
                ["hollow", node, "stats", "summary"] => {
                    json_body(&crate::stats::summary(&usage.sample(node), &rates))
                }
                ["healthz"] => text(StatusCode::OK, "ok"),
                _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
            }
        }
    })
    .await
}

/// Accepts TLS connections on `addr` (clients need a certificate of the cluster CA) and answers
/// each request with `handle`.
async fn serve_tls<F, Fut>(
    addr: (&str, u16),
    certs: &ServingCerts,
    handle: F,
) -> Result<(
    u16,
    impl std::future::Future<Output = Result<()>> + Send + use<F, Fut>,
)>
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    let cfg = tls_config(certs)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the kubelet port {}", addr.1))?;
    let port = listener.local_addr()?.port();
    let handle = Arc::new(handle);
    let serve = async move {
        loop {
            let (tcp, _) = listener.accept().await?;
            let acceptor = acceptor.clone();
            let handle = handle.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                // Only the cluster CA's client certificates get here with one: the API server's
                // (and admins', O=system:masters); the CA signs no other client certificates.
                let authenticated = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|c| !c.is_empty());
                let svc = hyper::service::service_fn(move |req| {
                    let handle = handle.clone();
                    async move {
                        if !authenticated {
                            return Ok::<_, Infallible>(text(
                                StatusCode::UNAUTHORIZED,
                                "Unauthorized\n",
                            ));
                        }
                        Ok::<_, Infallible>(handle(req).await)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
            });
        }
    };
    Ok((port, serve))
}

fn text(code: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(msg.into())).boxed());
    *r.status_mut() = code;
    r
}

/// A `/metrics/resource` answer (the Prometheus text format, version 0.0.4).
pub fn prometheus_text(body: String) -> Response<Body> {
    let mut r = text(StatusCode::OK, body);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// A JSON answer (`/stats/summary`).
pub fn json_body(v: &serde_json::Value) -> Response<Body> {
    let mut r = text(StatusCode::OK, serde_json::to_string(v).unwrap_or_default());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

/// What `containerLogs` was asked for.
#[derive(Debug, Default, Clone)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub since: Option<jiff::Timestamp>,
    pub limit_bytes: Option<usize>,
}

impl LogOptions {
    fn from_query(q: &HashMap<String, String>) -> LogOptions {
        let flag = |k: &str| {
            q.get(k)
                .is_some_and(|v| v == "true" || v == "1" || v.is_empty())
        };
        let since = q
            .get("sinceSeconds")
            .and_then(|s| s.parse::<i64>().ok())
            .and_then(|s| {
                jiff::Timestamp::now()
                    .checked_sub(jiff::SignedDuration::from_secs(s))
                    .ok()
            })
            .or_else(|| q.get("sinceTime").and_then(|t| t.parse().ok()));
        LogOptions {
            follow: flag("follow"),
            previous: flag("previous"),
            timestamps: flag("timestamps"),
            tail_lines: q.get("tailLines").and_then(|s| s.parse().ok()),
            since,
            limit_bytes: q.get("limitBytes").and_then(|s| s.parse().ok()),
        }
    }
}

/// One line of a CRI log file.
pub struct LogLine<'a> {
    pub time: &'a str,
    pub partial: bool,
    pub text: &'a str,
}

pub fn parse_line(line: &str) -> Option<LogLine<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or("");
    Some(LogLine {
        time,
        partial: tag.starts_with('P'),
        text,
    })
}

fn render(line: &str, opts: &LogOptions, out: &mut Vec<u8>) -> bool {
    let Some(l) = parse_line(line) else {
        return false;
    };
    if let Some(since) = opts.since
        && l.time.parse::<jiff::Timestamp>().is_ok_and(|t| t < since)
    {
        return false;
    }
    if opts.timestamps {
        out.extend_from_slice(l.time.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(l.text.as_bytes());
    if !l.partial {
        out.push(b'\n');
    }
    true
}

impl KubeletServer {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        if path == "/healthz" {
            return text(StatusCode::OK, "ok");
        }
        if path == "/metrics/resource" {
            let sample = crate::stats::collect(&self.cri, &self.node_name).await;
            return prometheus_text(crate::stats::resource_metrics(&sample));
        }
        if path == "/stats/summary" || path == "/stats/summary/" {
            let sample = crate::stats::collect(&self.cri, &self.node_name).await;
            let live = sample
                .pods
                .iter()
                .flat_map(|p| {
                    std::iter::once(p.uid.clone()).chain(p.containers.iter().map(|c| c.id.clone()))
                })
                .collect();
            self.rates.retain(&live);
            return json_body(&crate::stats::summary(&sample, &self.rates));
        }
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if let ["containerLogs", ns, pod, container] = parts.as_slice() {
            let opts = LogOptions::from_query(&query(&req));
            return match self.container_logs(ns, pod, container, opts).await {
                Ok(r) => r,
                Err((code, msg)) => text(code, msg),
            };
        }
        let stream = match parts.as_slice() {
            ["exec", ns, pod, container] => Some((Kind::Exec, *ns, *pod, Some(*container))),
            ["attach", ns, pod, container] => Some((Kind::Attach, *ns, *pod, Some(*container))),
            ["portForward", ns, pod] => Some((Kind::PortForward, *ns, *pod, None)),
            _ => None,
        };
        if let Some((kind, ns, pod, container)) = stream {
            let (ns, pod) = (ns.to_string(), pod.to_string());
            let container = container.map(str::to_string);
            let cri = self.cri.clone();
            return streaming::serve(cri, kind, &ns, &pod, container.as_deref(), req).await;
        }
        text(StatusCode::NOT_FOUND, "404 page not found\n")
    }

    async fn container_logs(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        opts: LogOptions,
    ) -> Result<Response<Body>, (StatusCode, String)> {
        let mut cri = self.cri.clone();
        let filter = api::ContainerFilter {
            label_selector: HashMap::from([
                (cri::POD_NAME_LABEL.to_string(), pod.to_string()),
                (cri::POD_NAMESPACE_LABEL.to_string(), ns.to_string()),
                (cri::CONTAINER_NAME_LABEL.to_string(), container.to_string()),
            ]),
            ..Default::default()
        };
        let list = cri
            .list_containers(Some(filter))
            .await
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
        let chosen = if opts.previous {
            list.get(1)
        } else {
            list.first()
        };
        let Some(c) = chosen else {
            let msg = if opts.previous {
                format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
            } else {
                format!(
                    "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
                )
            };
            return Err((StatusCode::BAD_REQUEST, msg));
        };
        let status = cri
            .container_status(&c.id)
            .await
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
        let path = PathBuf::from(&status.log_path);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
        let id = c.id.clone();
        let follow = opts.follow && status.state == api::ContainerState::ContainerRunning as i32;
        tokio::spawn(stream_log(cri, id, path, opts, follow, tx));
        let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        let mut r = Response::new(BodyExt::boxed(body));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        Ok(r)
    }
}

/// Sends the log (the tail first), then, when following, new lines until the container stops.
async fn stream_log(
    mut cri: Cri,
    id: String,
    path: PathBuf,
    opts: LogOptions,
    follow: bool,
    tx: tokio::sync::mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
) {
    let Ok(file) = tokio::fs::File::open(&path).await else {
        return;
    };
    let mut reader = BufReader::new(file);
    let budget = std::sync::atomic::AtomicUsize::new(opts.limit_bytes.unwrap_or(usize::MAX));
    let send = |mut chunk: Vec<u8>| {
        let left = budget.load(std::sync::atomic::Ordering::Relaxed);
        if chunk.len() > left {
            chunk.truncate(left);
        }
        budget.store(left - chunk.len(), std::sync::atomic::Ordering::Relaxed);
        let tx = tx.clone();
        async move { chunk.is_empty() || tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.is_ok() }
    };
    // The existing content, with tailLines applied to complete lines.
    let mut lines = Vec::new();
    let mut buf = String::new();
    while reader.read_line(&mut buf).await.unwrap_or(0) > 0 {
        if !buf.ends_with('\n') {
            break;
        }
        lines.push(std::mem::take(&mut buf));
    }
    let start = opts.tail_lines.map_or(0, |n| lines.len().saturating_sub(n));
    let mut out = Vec::new();
    for l in &lines[start..] {
        render(l.trim_end_matches('\n'), &opts, &mut out);
    }
    if !send(out).await || !follow {
        return;
    }
    let mut last_check = tokio::time::Instant::now();
    loop {
        let n = reader.read_line(&mut buf).await.unwrap_or(0);
        if n > 0 && buf.ends_with('\n') {
            let mut out = Vec::new();
            render(buf.trim_end_matches('\n'), &opts, &mut out);
            buf.clear();
            if !send(out).await || budget.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                return;
            }
            continue;
        }
        if tx.is_closed() {
            return;
        }
        if last_check.elapsed() > Duration::from_secs(1) {
            last_check = tokio::time::Instant::now();
            let running = cri
                .container_status(&id)
                .await
                .is_ok_and(|s| s.state == api::ContainerState::ContainerRunning as i32);
            // Rotated (logs.rs): the old file is read to its end above; go on with the new one.
            if running && rotated_away(&path, reader.get_ref()).await {
                // Lines written to the old file after our last read, before the runtime reopened.
                while reader.read_line(&mut buf).await.unwrap_or(0) > 0 {
                    if buf.ends_with('\n') {
                        let mut out = Vec::new();
                        render(buf.trim_end_matches('\n'), &opts, &mut out);
                        buf.clear();
                        if !send(out).await {
                            return;
                        }
                    }
                }
                buf.clear();
                match tokio::fs::File::open(&path).await {
                    Ok(f) => {
                        reader = BufReader::new(f);
                        continue;
                    }
                    Err(_) => return,
                }
            }
            if !running {
                // One last read for lines written just before the exit.
                let _ = reader.seek(std::io::SeekFrom::Current(0)).await;
                while reader.read_line(&mut buf).await.unwrap_or(0) > 0 {
                    if buf.ends_with('\n') {
                        let mut out = Vec::new();
                        render(buf.trim_end_matches('\n'), &opts, &mut out);
                        buf.clear();
                        if !send(out).await {
                            return;
                        }
                    }
                }
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether `path` now names another file than `open` (the log was rotated).
async fn rotated_away(path: &Path, open: &tokio::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (tokio::fs::metadata(path).await, open.metadata().await) {
        (Ok(now), Ok(ours)) => now.ino() != ours.ino() || now.dev() != ours.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cri_lines() {
        let opts = LogOptions {
            timestamps: true,
            ..Default::default()
        };
        let mut out = Vec::new();
        render(
            "2024-01-01T00:00:00.123456789Z stdout F hello world",
            &opts,
            &mut out,
        );
        render(
            "2024-01-01T00:00:01Z stderr P part",
            &LogOptions::default(),
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2024-01-01T00:00:00.123456789Z hello world\npart"
        );
    }
}
