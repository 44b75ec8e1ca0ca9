//! The proxy of pods/proxy, services/proxy and nodes/proxy, as upstream's
//! `apimachinery/pkg/util/proxy` UpgradeAwareHandler with its wrapping transport: any method
//! is sent on to one backend address with the path and query, the request body and the answer
//! streamed (never buffered, but for HTML pages); upgrade requests (WebSocket, SPDY) are
//! answered with the backend's 101 and the two connections spliced. As upstream's
//! `proxy.Transport`, the backend's redirects to itself are rewritten to go through the API
//! path, and the links of its HTML pages alike (`html`), the CORS headers of the backend dropped,
//! `X-Forwarded-Uri` set, and a request for the bare `.../proxy` (GET, HEAD) redirected to
//! `.../proxy/`. A backend that cannot be reached answers 503 quickly (a connect timeout).

use crate::server::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use kaji_api::ApiError;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// How long a connection to a backend may take (a closed port fails at once; an address that
/// never answers must not hold the client).
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest HTML page whose links are rewritten (it is read whole); a larger one passes as
/// it is.
const MAX_REWRITTEN_PAGE: usize = 16 << 20;

/// Headers of one hop (RFC 9110 7.6.1, Go's httputil.ReverseProxy list).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Response headers of the backend that the API server's own CORS handling owns (upstream's
/// `removeCORSHeaders`).
const CORS: [&str; 4] = [
    "access-control-allow-credentials",
    "access-control-allow-headers",
    "access-control-allow-methods",
    "access-control-allow-origin",
];

/// Where a proxied request goes.
pub struct Location {
    /// `http` or `https`.
    pub scheme: &'static str,
    pub ip: std::net::IpAddr,
    pub port: u16,
    /// The TLS client for `https` (the kubelet's client certificate, or no verification as
    /// upstream's proxy transport).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// A path on the backend before the client's (a hollow node's `/hollow/<node>`).
    pub base: String,
    /// The backend path: empty when the request named no path after `/proxy`.
    pub path: String,
    /// The API path up to and including `/proxy` (upstream's PathPrepend).
    pub prefix: String,
}

impl Location {
    /// A backend address; the paths are filled in by the caller.
    pub fn new(
        scheme: &'static str,
        ip: std::net::IpAddr,
        port: u16,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Location {
        Location {
            scheme,
            ip,
            port,
            tls,
            base: String::new(),
            path: String::new(),
            prefix: String::new(),
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.ip, self.port)
    }
}

/// Anything a backend connection can be (TCP, TLS over TCP).
trait Conn: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Conn for T {}

/// A Status answer, as the REST handler writes them.
pub fn status_response(e: &ApiError) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(
            serde_json::to_vec(&e.to_status()).unwrap_or_default(),
        ))
        .boxed(),
    );
    *resp.status_mut() = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Upstream's answer when a backend cannot be reached or fails mid-request.
fn unreachable(message: String) -> ApiError {
    ApiError::new(503, "ServiceUnavailable", message)
}

/// An I/O error in Go's words (`connect: connection refused`), as upstream's messages carry it.
fn go_error(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = s.split(" (os error").next().unwrap_or(&s).to_string();
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => s,
    }
}

/// Connects to the backend: `dial tcp <addr>: ...` errors as Go's dialer words them.
async fn dial(loc: &Location) -> Result<Box<dyn Conn>, String> {
    let addr = loc.addr();
    let tcp = match tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Err(_) => return Err(format!("dial tcp {addr}: i/o timeout")),
        Ok(Err(e)) => return Err(format!("dial tcp {addr}: connect: {}", go_error(&e))),
        Ok(Ok(tcp)) => tcp,
    };
    let _ = tcp.set_nodelay(true);
    let Some(tls) = &loc.tls else {
        return Ok(Box::new(tcp));
    };
    let name = rustls::pki_types::ServerName::IpAddress(loc.ip.into());
    match tokio::time::timeout(
        DIAL_TIMEOUT,
        tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp),
    )
    .await
    {
        Err(_) => Err("net/http: TLS handshake timeout".to_string()),
        Ok(Err(e)) => Err(tls_error(&e)),
        Ok(Ok(stream)) => Ok(Box::new(stream)),
    }
}

/// A failed TLS handshake in Go's words where they differ much (a plain HTTP backend).
fn tls_error(e: &std::io::Error) -> String {
    let not_tls = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(inner) if *inner == not_tls => {
            "tls: first record does not look like a TLS handshake".to_string()
        }
        Some(inner) => format!("tls: {inner}"),
        None => format!("tls: {}", go_error(e)),
    }
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    let connection_upgrade = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade
        && req
            .headers()
            .get(header::UPGRADE)
            .is_some_and(|v| !v.is_empty())
}

/// Headers the API server consumed (authentication, impersonation) and never passes on.
fn consumed(name: &str) -> bool {
    name == "authorization" || name.starts_with("impersonate-")
}

/// Copies the headers worth passing on from one hop to the next: without the hop-by-hop ones
/// (and those the `Connection` header names) unless `upgrade` keeps the upgrade's own.
fn forwardable(from: &HeaderMap, upgrade: bool) -> HeaderMap {
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
        let hop = HOP_BY_HOP.contains(&name) || named.iter().any(|n| n == name);
        let keep_for_upgrade = upgrade && (name == "connection" || name == "upgrade");
        if (hop && !keep_for_upgrade) || consumed(name) || name == "host" {
            continue;
        }
        out.append(k.clone(), v.clone());
    }
    out
}

/// The Host the client asked for (its Host header, or the authority of an HTTP/2 request).
fn request_host<B>(req: &Request<B>) -> String {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

/// Go's `path.Join` for the two parts of a proxied path: one slash between them.
fn join(prefix: &str, path: &str) -> String {
    match (prefix.ends_with('/'), path.starts_with('/')) {
        (true, true) => format!("{prefix}{}", &path[1..]),
        (false, false) if !path.is_empty() => format!("{prefix}/{path}"),
        _ => format!("{prefix}{path}"),
    }
}

/// Upstream's `Transport.rewriteURL`: a redirect to the backend itself (or to the host the
/// client used), by absolute path, is made to go through the proxy path; anything else
/// (another host, a relative path) is left alone.
pub fn rewrite_location(
    target: &str,
    backend_host: &str,
    request_host: &str,
    prefix: &str,
) -> String {
    // Split scheme://host from the rest.
    let (scheme, rest) = match target.split_once("://") {
        Some((s, r))
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            (Some(s), r)
        }
        _ => (None, target),
    };
    let (host, rest) = match (scheme, rest.strip_prefix("//")) {
        (Some(_), _) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        }
        (None, Some(r)) => {
            let end = r.find(['/', '?', '#']).unwrap_or(r.len());
            (&r[..end], &r[end..])
        }
        (None, None) => ("", rest),
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (path, tail) = (&rest[..end], &rest[end..]);
    let different_host = !host.is_empty() && host != backend_host && host != request_host;
    if different_host || !path.starts_with('/') {
        return target.to_string();
    }
    // The API server's own request URL carries no scheme and host, so an absolute URL becomes
    // a path; a URL already naming the client's host keeps it.
    let origin = if !host.is_empty() && host == request_host {
        format!("{}://{host}", scheme.unwrap_or("http"))
    } else {
        String::new()
    };
    if path.starts_with(prefix) {
        return format!("{origin}{path}{tail}");
    }
    format!("{origin}{}{tail}", join(prefix, path))
}

/// A backend's response body handed to the client as it arrives; an error from the backend
/// ends it (the client sees a truncated body, as from upstream's reverse proxy).
pub(crate) struct Streamed(pub(crate) Incoming);

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.0).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(e))) => {
                tracing::debug!(error = %e, "proxied response body ended early");
                Poll::Ready(None)
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

/// Serves one proxied request.
pub async fn serve(loc: Location, req: Request<Incoming>) -> Response<Body> {
    if is_upgrade(&req) {
        return upgrade(&loc, req)
            .await
            .unwrap_or_else(|e| status_response(&e));
    }
    let mut path = loc.path.clone();
    // A request ending in '/' keeps it on the backend (`.../proxy/` is the backend's `/`).
    if !path.ends_with('/') && req.uri().path().ends_with('/') {
        path.push('/');
    }
    if path.is_empty() && (req.method() == Method::GET || req.method() == Method::HEAD) {
        let query = req
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        let mut resp = Response::new(Full::new(Bytes::new()).boxed());
        *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
        if let Ok(v) = HeaderValue::from_str(&format!("{}/{query}", req.uri().path())) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        return resp;
    }
    match forward(&loc, &path, req).await {
        Ok(resp) => resp,
        Err(e) => status_response(&e),
    }
}

/// The request line's target on the backend: path (at least `/`) and the client's query.
fn backend_target(path: &str, query: Option<&str>) -> String {
    let path = if path.is_empty() { "/" } else { path };
    match query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}

async fn forward(
    loc: &Location,
    path: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let reach = |e: String| unreachable(format!("error trying to reach service: {e}"));
    let client_host = request_host(&req);
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let mut out = Request::builder()
        .method(parts.method.clone())
        .uri(backend_target(
            &format!("{}{path}", loc.base),
            parts.uri.query(),
        ));
    if let Some(h) = out.headers_mut() {
        *h = forwardable(&parts.headers, false);
        // The Host the client used, as Go's reverse proxy keeps it.
        let host = if client_host.is_empty() {
            loc.addr().to_string()
        } else {
            client_host.clone()
        };
        if let Ok(v) = HeaderValue::from_str(&host) {
            h.insert(header::HOST, v);
        }
        let uri = if path.is_empty() {
            loc.prefix.clone()
        } else {
            join(&loc.prefix, path)
        };
        if let Ok(v) = HeaderValue::from_str(&uri) {
            h.insert("x-forwarded-uri", v);
        }
        // An HTTP/2 request's length lives in its frames: tell the HTTP/1.1 backend (many, as
        // busybox httpd, read no chunked bodies), as Go's proxy does from ContentLength.
        if !h.contains_key(header::CONTENT_LENGTH)
            && let Some(n) = hyper::body::Body::size_hint(&body).exact()
            && (n > 0
                || !matches!(
                    parts.method,
                    Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS
                ))
        {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
    let out = out.body(body).map_err(|e| reach(e.to_string()))?;
    let conn = dial(loc).await.map_err(reach)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(conn))
        .await
        .map_err(|e| reach(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "proxied connection ended");
        }
    });
    let resp = sender
        .send_request(out)
        .await
        .map_err(|e| reach(e.to_string()))?;
    let (mut head, body) = resp.into_parts();
    let mut headers = forwardable(&head.headers, false);
    for h in CORS {
        headers.remove(h);
    }
    let backend_host = loc.addr().to_string();
    if let Some(target) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) {
        let rewritten = rewrite_location(target, &backend_host, &client_host, &loc.prefix);
        if let Ok(v) = HeaderValue::from_str(&rewritten) {
            headers.insert(header::LOCATION, v);
        }
        head.headers = headers;
        return Ok(Response::from_parts(head, Streamed(body).boxed()));
    }
    // An HTML page (not compressed: Kaji carries no inflater) has its links rewritten as the
    // redirects are, read whole as upstream's rewriteResponse does.
    let html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/html"));
    let encoded = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.is_empty());
    let small = hyper::body::Body::size_hint(&body)
        .upper()
        .is_none_or(|n| n <= MAX_REWRITTEN_PAGE as u64);
    if html && !encoded && small && method != Method::HEAD {
        let page = Limited::new(body, MAX_REWRITTEN_PAGE)
            .collect()
            .await
            .map_err(|e| reach(e.to_string()))?
            .to_bytes();
        let page = super::html::rewrite(&page, |u| {
            rewrite_location(u, &backend_host, &client_host, &loc.prefix)
        });
        headers.remove(header::CONTENT_LENGTH);
        head.headers = headers;
        return Ok(Response::from_parts(
            head,
            Full::new(Bytes::from(page)).boxed(),
        ));
    }
    head.headers = headers;
    Ok(Response::from_parts(head, Streamed(body).boxed()))
}

/// An upgrade (WebSocket, SPDY): the request goes to the backend as it is; its 101 goes back to
/// the client and the connections are spliced; any other answer goes back as it is.
async fn upgrade(loc: &Location, mut req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let failed = |e: String| unreachable(format!("error dialing backend: {e}"));
    let client_host = request_host(&req);
    let mut path = loc.path.clone();
    if !path.ends_with('/') && req.uri().path().ends_with('/') {
        path.push('/');
    }
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(backend_target(
            &format!("{}{path}", loc.base),
            req.uri().query(),
        ));
    if let Some(h) = out.headers_mut() {
        *h = forwardable(req.headers(), true);
        if let Ok(v) = HeaderValue::from_str(if client_host.is_empty() {
            "localhost"
        } else {
            &client_host
        }) {
            h.insert(header::HOST, v);
        }
    }
    let out = out
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| failed(e.to_string()))?;
    let conn = dial(loc).await.map_err(failed)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(conn))
        .await
        .map_err(|e| failed(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "proxied upgrade connection ended");
        }
    });
    let mut resp = sender
        .send_request(out)
        .await
        .map_err(|e| failed(e.to_string()))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        if resp.status().as_u16() < 400 {
            return Err(ApiError::new(
                500,
                "InternalError",
                format!(
                    "invalid upgrade response: status code {}",
                    resp.status().as_u16()
                ),
            ));
        }
        let (head, body) = resp.into_parts();
        let body = Limited::new(body, 1 << 20)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Ok(Response::from_parts(head, Full::new(body).boxed()));
    }
    let mut answer = Response::new(Full::new(Bytes::new()).boxed());
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *answer.headers_mut() = std::mem::take(resp.headers_mut());
    let client = hyper::upgrade::on(&mut req);
    let backend = hyper::upgrade::on(resp);
    tokio::spawn(async move {
        match tokio::try_join!(client, backend) {
            Ok((client, backend)) => {
                let (mut client, mut backend) = (TokioIo::new(client), TokioIo::new(backend));
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
                    tracing::debug!(error = %e, "proxied upgraded stream ended");
                }
            }
            Err(e) => tracing::debug!(error = %e, "upgrading a proxied connection failed"),
        }
    });
    Ok(answer)
}

/// A TLS client that accepts any server certificate, as upstream's proxy transport
/// (`InsecureSkipVerify`) for `https:` pods and services.
pub fn insecure_tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(cfg)
        })
        .clone()
}

/// Accepts any server certificate (upstream's `insecureSkipTLSVerify`; also the aggregator's
/// APIServices with `insecureSkipTLSVerify: true`); signatures are still checked.
#[derive(Debug)]
pub(crate) struct AnyCertificate(pub(crate) Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "/api/v1/namespaces/default/services/web:80/proxy";

    #[test]
    fn rewrites_redirects_to_the_backend_through_the_proxy() {
        let r = |t: &str| rewrite_location(t, "10.42.0.5:80", "127.0.0.1:8001", PREFIX);
        assert_eq!(r("/login"), format!("{PREFIX}/login"));
        assert_eq!(r("/dir/"), format!("{PREFIX}/dir/"));
        assert_eq!(
            r("http://10.42.0.5:80/a?b=c#d"),
            format!("{PREFIX}/a?b=c#d")
        );
        assert_eq!(
            r("http://127.0.0.1:8001/a"),
            format!("http://127.0.0.1:8001{PREFIX}/a")
        );
        // Already through the proxy, another host, a relative path: left alone.
        assert_eq!(r(&format!("{PREFIX}/x")), format!("{PREFIX}/x"));
        assert_eq!(r("https://example.com/a"), "https://example.com/a");
        assert_eq!(r("other/page"), "other/page");
    }

    #[test]
    fn joins_paths_with_one_slash() {
        assert_eq!(join("/p/proxy", "/index.html"), "/p/proxy/index.html");
        assert_eq!(join("/p/proxy", "/"), "/p/proxy/");
        assert_eq!(join("/p/proxy/", "/a"), "/p/proxy/a");
        assert_eq!(backend_target("", Some("a=1")), "/?a=1");
        assert_eq!(backend_target("/x", Some("")), "/x");
    }

    #[test]
    fn forwards_end_to_end_headers_only() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("authorization", "Bearer t"),
            ("impersonate-user", "u"),
            ("content-type", "text/plain"),
            ("upgrade", "websocket"),
            ("host", "h"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        let out = forwardable(&h, false);
        assert_eq!(
            out.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["content-type"]
        );
        let up = forwardable(&h, true);
        assert!(
            up.contains_key("upgrade")
                && up.contains_key("connection")
                && !up.contains_key("authorization")
        );
    }

    #[test]
    fn words_io_errors_as_go_does() {
        let e = std::io::Error::from_raw_os_error(111);
        assert_eq!(go_error(&e), "connection refused");
    }
}
