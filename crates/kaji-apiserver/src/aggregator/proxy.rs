//! The aggregator's proxy (upstream's `handler_proxy.go`): a request for a group/version a
//! non-local APIService claims goes to one endpoint of its Service over TLS (the serving
//! certificate verified with `spec.caBundle` for `<service>.<namespace>.svc`, or not at all with
//! `insecureSkipTLSVerify`), showing the API server's proxy client certificate and carrying the
//! caller's identity in the front-proxy headers (`X-Remote-User`, `X-Remote-Uid`,
//! `X-Remote-Group`, `X-Remote-Extra-*`). Bodies stream both ways (watches included); an upgrade
//! request (WebSocket, SPDY) is answered with the backend's 101 and the connections spliced.

use super::{Aggregator, Remote};
use crate::ApiServer;
use crate::server::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long dialing a backend may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes escaped in an `X-Remote-Extra-` key: all but RFC 9110 token characters.
const HEADER_KEY_ESCAPE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'*')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// Headers of one hop, never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

pub(crate) fn json(code: u16, body: &Value) -> Response<Body> {
    let mut resp =
        Response::new(Full::new(Bytes::from(serde_json::to_vec(body).unwrap_or_default())).boxed());
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Upstream's `proxyError`: Go's `http.Error`, a plain-text 503.
fn unavailable(message: &str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(format!("{message}\n"))).boxed());
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// The TLS client towards a backend: its caBundle (or no verification) and the proxy client
/// certificate.
pub(crate) fn tls_config(
    agg: &Aggregator,
    ca_bundle: Option<&[u8]>,
    insecure: bool,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut agg.proxy_cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut agg.proxy_key_pem.as_bytes())
            .map_err(|e| e.to_string())?
            .ok_or("no proxy client key")?;
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut cfg = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::proxy::upgrade_aware::AnyCertificate(provider)))
            .with_client_auth_cert(certs, key)
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for ca in rustls_pemfile::certs(&mut ca_bundle.unwrap_or_default()) {
            let ca = ca.map_err(|e| format!("reading caBundle: {e}"))?;
            roots
                .add(ca)
                .map_err(|e| format!("reading caBundle: {e}"))?;
        }
        builder
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
    }
    .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Go's wording of a failed dial (`dial tcp 10.0.0.1:443: connect: connection refused`).
fn dial_error(addr: SocketAddr, e: &std::io::Error) -> String {
    let what = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        std::io::ErrorKind::TimedOut => "i/o timeout".to_string(),
        _ => e.to_string(),
    };
    format!("dial tcp {addr}: {what}")
}

/// A TLS connection to `addr`, verified for `<service>.<namespace>.svc` (upstream's
/// ServerName for a service backend).
pub(crate) async fn dial(
    tls: Arc<rustls::ClientConfig>,
    remote: &Remote,
    addr: SocketAddr,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tcp = match tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(dial_error(addr, &e)),
        Err(_) => return Err(format!("dial tcp {addr}: i/o timeout")),
    };
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(format!("{}.{}.svc", remote.service, remote.namespace))
        .map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))
}

/// Sets the front-proxy identity headers of `user` (upstream's `transport.SetAuthProxyHeaders`),
/// after removing any the client sent. No `X-Remote-Uid`: that is behind 1.33's alpha
/// RemoteRequestHeaderUID gate, off by default.
pub(crate) fn set_identity(
    headers: &mut HeaderMap,
    user: &str,
    groups: &[String],
    extra: &std::collections::BTreeMap<String, Vec<String>>,
) {
    let drop: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-remote-"))
        .cloned()
        .collect();
    for k in drop {
        headers.remove(k);
    }
    if let Ok(v) = HeaderValue::from_str(user) {
        headers.insert("x-remote-user", v);
    }
    for g in groups {
        if let Ok(v) = HeaderValue::from_str(g) {
            headers.append("x-remote-group", v);
        }
    }
    for (key, values) in extra {
        // Keys are percent-encoded as upstream's headerKeyEscape: what is not a header token
        // character (and `%` itself).
        let escaped = percent_encoding::utf8_percent_encode(key, HEADER_KEY_ESCAPE).to_string();
        let Ok(name) = HeaderName::from_bytes(format!("x-remote-extra-{escaped}").as_bytes())
        else {
            continue;
        };
        for v in values {
            if let Ok(v) = HeaderValue::from_str(v) {
                headers.append(name.clone(), v);
            }
        }
    }
}

/// The request headers that go on: end-to-end ones without the caller's credentials.
fn forwardable(headers: &HeaderMap, upgrade: bool) -> HeaderMap {
    let connection_named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .filter(|s| s != "upgrade")
        .collect();
    let mut out = HeaderMap::new();
    for (k, v) in headers {
        let n = k.as_str();
        let hop = HOP_BY_HOP.contains(&n)
            || connection_named.iter().any(|c| c == n)
            || (n == "upgrade" && !upgrade);
        if hop || n == "authorization" || n.starts_with("impersonate-") || n == "host" {
            continue;
        }
        out.append(k.clone(), v.clone());
    }
    if upgrade {
        out.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    }
    out
}

/// Proxies one request to `remote`'s Service.
pub async fn serve(
    server: &Arc<ApiServer>,
    remote: &Remote,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let agg = &server.aggregator;
    if !remote.available {
        return unavailable("service unavailable");
    }
    let addr = match super::available::resolve(server, remote, true).await {
        Ok(a) => a,
        Err((_, message)) => {
            agg.wake.notify_one();
            return unavailable(&message);
        }
    };
    let tls = match agg.client_tls(remote) {
        Ok(t) => t,
        Err(e) => return unavailable(&e),
    };
    let user = crate::registry::rbac::requester().unwrap_or_default();
    let upgrade = req
        .headers()
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    let target = req.uri().path_and_query().map_or_else(
        || req.uri().path().to_string(),
        |pq| pq.as_str().to_string(),
    );
    let mut headers = forwardable(req.headers(), upgrade);
    set_identity(&mut headers, &user.name, &user.groups, &user.extra);
    if let Ok(v) = HeaderValue::from_str(&addr.to_string()) {
        headers.insert(header::HOST, v);
    }
    let conn = match dial(tls, remote, addr).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(apiservice = %remote.name, error = %e, "proxying to the aggregated API server failed");
            agg.wake.notify_one();
            return unavailable(&e);
        }
    };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(conn)).await {
            Ok(x) => x,
            Err(e) => return unavailable(&e.to_string()),
        };
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "aggregated connection ended");
        }
    });
    let method = req.method().clone();
    if upgrade {
        let mut out = Request::builder().method(method).uri(&target);
        if let Some(h) = out.headers_mut() {
            *h = headers;
        }
        let empty = http_body_util::Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed();
        let Ok(out) = out.body(empty) else {
            return unavailable("bad request");
        };
        let mut resp = match sender.send_request(out).await {
            Ok(r) => r,
            Err(e) => return unavailable(&format!("error dialing backend: {e}")),
        };
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let (head, body) = resp.into_parts();
            return Response::from_parts(head, crate::proxy::upgrade_aware::Streamed(body).boxed());
        }
        let mut answer = Response::new(Full::new(Bytes::new()).boxed());
        *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *answer.headers_mut() = std::mem::take(resp.headers_mut());
        let client = hyper::upgrade::on(&mut req);
        let backend = hyper::upgrade::on(resp);
        tokio::spawn(async move {
            match tokio::try_join!(client, backend) {
                Ok((c, b)) => {
                    let (mut c, mut b) = (TokioIo::new(c), TokioIo::new(b));
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut b).await;
                }
                Err(e) => tracing::debug!(error = %e, "upgrading an aggregated connection failed"),
            }
        });
        return answer;
    }
    let (_, body) = req.into_parts();
    let mut out = Request::builder().method(method).uri(&target);
    if let Some(h) = out.headers_mut() {
        *h = headers;
    }
    let Ok(out) = out.body(body.boxed()) else {
        return unavailable("bad request");
    };
    match sender.send_request(out).await {
        Ok(resp) => {
            let (mut head, body) = resp.into_parts();
            let keep = forwardable(&head.headers, false);
            head.headers = keep;
            Response::from_parts(head, crate::proxy::upgrade_aware::Streamed(body).boxed())
        }
        Err(e) => unavailable(&e.to_string()),
    }
}

/// A GET of `path` on a backend (the availability check and discovery): status and body.
pub(crate) async fn get(
    agg: &Aggregator,
    remote: &Remote,
    addr: SocketAddr,
    path: &str,
    verify: bool,
) -> Result<(StatusCode, Bytes), String> {
    // The availability check does not verify the serving certificate, as upstream's ("if
    // someone owns the network and messes with your status that's not so bad"); discovery
    // documents are read as the proxy reads, verified.
    let tls = if verify {
        agg.client_tls(remote)?
    } else {
        agg.check_tls()?
    };
    let conn = dial(tls, remote, addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(conn))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut req = Request::builder()
        .method("GET")
        .uri(path)
        .header(header::HOST, addr.to_string())
        .header(header::ACCEPT, "application/json");
    if let Some(h) = req.headers_mut() {
        // The system:masters identity always has access (as upstream's check).
        set_identity(
            h,
            "system:kube-aggregator",
            &["system:masters".to_string()],
            &Default::default(),
        );
    }
    let req = req
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), 8 << 20)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_replace_the_callers() {
        let mut h = HeaderMap::new();
        h.insert("x-remote-user", HeaderValue::from_static("mallory"));
        h.insert("x-remote-extra-evil", HeaderValue::from_static("1"));
        let extra = std::collections::BTreeMap::from([(
            "authentication.kubernetes.io/pod-name".to_string(),
            vec!["p".to_string()],
        )]);
        set_identity(&mut h, "alice", &["a".into(), "b".into()], &extra);
        assert_eq!(h["x-remote-user"], "alice");
        assert_eq!(
            h.get_all("x-remote-group").iter().collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(h.get("x-remote-extra-evil").is_none());
        assert_eq!(
            h["x-remote-extra-authentication.kubernetes.io%2fpod-name"],
            "p"
        );
    }

    #[test]
    fn credentials_and_hop_headers_stay_behind() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer x"),
            ("impersonate-user", "u"),
            ("connection", "keep-alive"),
            ("accept", "application/json"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        assert_eq!(
            forwardable(&h, false)
                .keys()
                .map(|k| k.as_str())
                .collect::<Vec<_>>(),
            ["accept"]
        );
    }
}
