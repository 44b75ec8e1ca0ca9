//! `kaji dashboard --kubeconfig F --listen 127.0.0.1:PORT`: the dashboard for a remote cluster.
//! The same embedded files over plain HTTP, and a reverse proxy of the API's paths (`/api`,
//! `/apis`, `/version`, `/openapi`) to the cluster of the kubeconfig (trusting its CA), so the
//! page talks to the API same-origin as it does when `kaji server` serves it. The browser's own
//! `Authorization` header (and WebSocket bearer subprotocol) goes through untouched and the
//! kubeconfig's credentials are never used: the viewer acts as themself, under RBAC.
//!
//! Each proxied request gets its own HTTP/1.1 connection to the API server: any method and
//! body streamed both ways (watches flow as the server writes them), and upgrades (exec, attach,
//! port-forward, log WebSockets) answered with the server's 101 and the two connections spliced.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

type Body = BoxBody<Bytes, hyper::Error>;

/// The API paths proxied to the cluster.
const PROXIED: [&str; 4] = ["/api", "/apis", "/version", "/openapi"];

/// How long connecting to the API server may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Headers of one hop (RFC 9110 7.6.1), and those a browser sends that the cluster has no use
/// for (its cookies for this origin).
const NOT_FORWARDED: [&str; 10] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "host",
    "cookie",
];

/// Where the cluster is and how to trust it.
pub struct Upstream {
    /// `host:port` to connect to.
    pub authority: String,
    host: String,
    port: u16,
    /// The name its serving certificate is checked against (`tls-server-name` or the host).
    server_name: rustls::pki_types::ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
}

impl Upstream {
    /// The cluster of the kubeconfig's current context: its server and CA (only `https`).
    pub fn from_kubeconfig(path: &Path) -> Result<Upstream> {
        use base64::Engine as _;
        let kc = kube::config::Kubeconfig::read_from(path)
            .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
        let url = crate::login::server_url(&kc)?;
        let context = kc.current_context.clone().unwrap_or_default();
        let cluster_name = kc
            .contexts
            .iter()
            .find(|c| c.name == context)
            .and_then(|c| c.context.as_ref())
            .map(|c| c.cluster.clone())
            .unwrap_or_default();
        let cluster = kc
            .clusters
            .iter()
            .find(|c| c.name == cluster_name)
            .and_then(|c| c.cluster.clone())
            .context("the kubeconfig's cluster is missing")?;
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("the kubeconfig's server {url:?} is not a URL"))?;
        if uri.scheme_str() != Some("https") {
            bail!("the kubeconfig's server {url:?} is not https");
        }
        let host = uri
            .host()
            .context("the kubeconfig's server names no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        if cluster.insecure_skip_tls_verify == Some(true) {
            bail!(
                "the kubeconfig's cluster skips TLS verification (insecure-skip-tls-verify); the dashboard proxy needs its certificate-authority"
            );
        }
        let ca_pem = if let Some(data) = &cluster.certificate_authority_data {
            base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .context("the kubeconfig's certificate-authority-data is not base64")?
        } else if let Some(file) = &cluster.certificate_authority {
            std::fs::read(file)
                .with_context(|| format!("reading the certificate authority {file}"))?
        } else {
            bail!(
                "the kubeconfig's cluster names no certificate-authority(-data) to trust its server with"
            );
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut ca_pem.as_slice()) {
            roots.add(cert.context("the certificate authority is not PEM")?)?;
        }
        if roots.is_empty() {
            bail!("the kubeconfig's certificate authority holds no certificate");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Upgrades need HTTP/1.1.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = cluster
            .tls_server_name
            .clone()
            .unwrap_or_else(|| host.clone());
        let server_name = rustls::pki_types::ServerName::try_from(name.clone())
            .with_context(|| format!("{name:?} is not a server name"))?;
        Ok(Upstream {
            authority: format!("{}:{port}", uri.host().unwrap_or_default()),
            host,
            port,
            server_name,
            tls: Arc::new(tls),
        })
    }
}

fn boxed(b: crate::assets::Body) -> Body {
    b.map_err(|never| match never {}).boxed()
}

fn status(code: u16, reason: &str, message: String) -> Response<Body> {
    let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code});
    let mut r = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        && headers.get(header::UPGRADE).is_some_and(|v| !v.is_empty())
}

/// The request's headers for the next hop: hop-by-hop ones dropped (but an upgrade's own),
/// `Authorization` kept, `Host` the cluster's.
fn forwarded(from: &HeaderMap, upstream: &Upstream) -> HeaderMap {
    let upgrade = is_upgrade(from);
    let named: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::new();
    for (k, v) in from {
        let name = k.as_str();
        let keep_for_upgrade = upgrade && (name == "connection" || name == "upgrade");
        if !keep_for_upgrade
            && (NOT_FORWARDED.contains(&name)
                || name == "upgrade"
                || named.iter().any(|n| n == name))
        {
            continue;
        }
        out.append(k.clone(), v.clone());
    }
    if let Ok(h) = HeaderValue::from_str(&upstream.authority) {
        out.insert(header::HOST, h);
    }
    out
}

/// A fresh HTTP/1.1 connection to the API server (TLS checked against the kubeconfig's CA).
async fn dial<B>(upstream: &Upstream) -> Result<hyper::client::conn::http1::SendRequest<B>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = match tokio::time::timeout(
        DIAL_TIMEOUT,
        tokio::net::TcpStream::connect((upstream.host.as_str(), upstream.port)),
    )
    .await
    {
        Err(_) => return Err("dial timeout".into()),
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(t)) => t,
    };
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(
        DIAL_TIMEOUT,
        tokio_rustls::TlsConnector::from(upstream.tls.clone())
            .connect(upstream.server_name.clone(), tcp),
    )
    .await
    {
        Err(_) => return Err("TLS handshake timeout".into()),
        Ok(Err(e)) => return Err(format!("tls: {e}")),
        Ok(Ok(t)) => t,
    };
    let (sender, conn) = hyper::client::conn::http1::handshake::<_, B>(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "connection to the API server ended");
        }
    });
    Ok(sender)
}

/// `GET path` on the API server with the viewer's `Authorization`: the status and body.
pub(crate) async fn get_as(
    upstream: &Upstream,
    path: &str,
    authorization: &HeaderValue,
) -> Result<(StatusCode, Bytes), String> {
    let mut sender = dial::<Full<Bytes>>(upstream).await?;
    let req = Request::get(path)
        .header(header::HOST, upstream.authority.as_str())
        .header(header::AUTHORIZATION, authorization.clone())
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let code = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), 16 << 20)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((code, body))
}

/// Sends one request on to the cluster and streams its answer back.
async fn proxy(upstream: &Upstream, mut req: Request<Incoming>) -> Response<Body> {
    let unavailable = |e: String| {
        status(
            503,
            "ServiceUnavailable",
            format!(
                "the dashboard cannot reach the API server at {}: {e}",
                upstream.authority
            ),
        )
    };
    let mut sender = match dial::<Incoming>(upstream).await {
        Ok(s) => s,
        Err(e) => return unavailable(e),
    };
    let upgrade = is_upgrade(req.headers());
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut out = Request::new(body);
    *out.method_mut() = parts.method.clone();
    *out.uri_mut() = match path_and_query.parse() {
        Ok(u) => u,
        Err(e) => return status(400, "BadRequest", format!("the request's path: {e}")),
    };
    *out.headers_mut() = forwarded(&parts.headers, upstream);
    let mut resp = match sender.send_request(out).await {
        Ok(r) => r,
        Err(e) => return unavailable(e.to_string()),
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client) = client_upgrade else {
            return status(
                502,
                "BadGateway",
                "the API server switched protocols unasked".into(),
            );
        };
        let server = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::try_join!(client, server) {
                Ok((client, server)) => {
                    let (mut client, mut server) = (TokioIo::new(client), TokioIo::new(server));
                    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut server).await {
                        tracing::debug!(error = %e, "proxied stream ended");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "upgrading a proxied connection failed"),
            }
        });
        let (parts, _) = resp.into_parts();
        return Response::from_parts(
            parts,
            Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed(),
        );
    }
    let (mut parts, body) = resp.into_parts();
    for h in [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "trailer",
        "proxy-connection",
    ] {
        parts.headers.remove(h);
    }
    Response::from_parts(parts, body.boxed())
}

fn proxied(path: &str) -> bool {
    PROXIED.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

async fn handle(
    upstream: Arc<Upstream>,
    dashboard: Arc<crate::Dashboard>,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    if proxied(&path) {
        return proxy(&upstream, req).await;
    }
    if path.starts_with(crate::service::HISTORY) {
        let (parts, _) = req.into_parts();
        if let Some(r) = dashboard.respond(&parts) {
            return r.await.map(boxed);
        }
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
        );
    }
    if path == "/" {
        let mut r = Response::new(
            Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed(),
        );
        *r.status_mut() = StatusCode::FOUND;
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/dashboard/"));
        return r;
    }
    let (parts, _) = req.into_parts();
    match crate::assets::respond(&parts) {
        Some(r) => r.map(boxed),
        None => status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
        ),
    }
}

/// A client with the kubeconfig's own credentials, for the metrics sampler.
pub async fn sampler_client(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading the kubeconfig {}", kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .with_context(|| format!("loading the kubeconfig {}", kubeconfig.display()))?;
    Ok(kube::Client::try_from(config)?)
}

/// Serves until the listener fails; `ready` is told the bound address.
pub async fn run(
    kubeconfig: &Path,
    listen: SocketAddr,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let upstream = Arc::new(Upstream::from_kubeconfig(kubeconfig)?);
    // The history is sampled with the kubeconfig's own credentials (the viewers' are not kept);
    // each viewer still needs the right to read those metrics to see it.
    let dashboard = crate::Dashboard::new();
    dashboard.set_api(Upstream::from_kubeconfig(kubeconfig)?);
    match sampler_client(kubeconfig).await {
        Ok(client) => {
            tokio::spawn(crate::history::run_sampler(
                dashboard.history.clone(),
                client,
                None,
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, "no CPU and memory history: the kubeconfig's credentials cannot be used")
        }
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, cluster = %upstream.authority, "dashboard serving");
    ready(addr);
    loop {
        let (tcp, peer) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let upstream = upstream.clone();
        let dashboard = dashboard.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let upstream = upstream.clone();
                let dashboard = dashboard.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(upstream, dashboard, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_only_the_api_paths() {
        for p in [
            "/api",
            "/api/v1/namespaces",
            "/apis/apps/v1",
            "/version",
            "/openapi/v2",
        ] {
            assert!(proxied(p), "{p}");
        }
        for p in ["/", "/dashboard/", "/apiary", "/healthz", "/metrics"] {
            assert!(!proxied(p), "{p}");
        }
    }
}
