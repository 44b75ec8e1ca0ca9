//! The data path: HTTP/1.1 (and HTTPS) servers on hyper that route each request with the current
//! [`Snapshot`](crate::snapshot::Snapshot) and forward it to an endpoint, streaming both bodies.
//! Upgrades (WebSocket) get a dedicated backend connection and the two upgraded streams spliced.

use crate::headers::{Forwarded, remove_hop_by_hop, set_forwarded_headers, upgrade_protocol};
use crate::routing::{Backend, Route};
use crate::snapshot::SnapshotHandle;
use anyhow::Context;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as _, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// Bodies in both directions: the peer's streamed body, or a small generated one.
pub type Body = BoxBody<Bytes, hyper::Error>;

pub const NOT_FOUND_BODY: &str = "404 page not found\n";
pub const UNAVAILABLE_BODY: &str = "503 Service Unavailable\n";
pub const BAD_GATEWAY_BODY: &str = "502 Bad Gateway\n";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Endpoints tried for a request without body when connecting fails (as ingress-nginx's
/// `proxy_next_upstream error`).
const MAX_CONNECT_ATTEMPTS: usize = 3;

/// Serves HTTP (or HTTPS with `tls`) on `listener` from `snapshot` until the listener fails.
pub async fn serve(
    listener: TcpListener,
    snapshot: SnapshotHandle,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> anyhow::Result<()> {
    let proxy = Proxy::new(snapshot);
    match tls {
        Some(tls) => proxy.serve_https(listener, tls).await,
        None => proxy.serve_http(listener).await,
    }
}

/// The proxy: a snapshot to route with and a pooled client to the endpoints.
#[derive(Clone, Debug)]
pub struct Proxy {
    snapshot: SnapshotHandle,
    client: Client<HttpConnector, Body>,
}

/// What the proxy knows of the client's connection.
#[derive(Clone, Copy, Debug)]
struct Conn {
    peer: SocketAddr,
    local_port: u16,
    proto: &'static str,
}

impl Proxy {
    pub fn new(snapshot: SnapshotHandle) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_timer(TokioTimer::new())
            .set_host(false)
            .build(connector);
        Self { snapshot, client }
    }

    pub async fn serve_http(self, listener: TcpListener) -> anyhow::Result<()> {
        loop {
            let (stream, peer) = accept(&listener).await;
            let this = self.clone();
            tokio::spawn(async move {
                let conn = Conn {
                    peer,
                    local_port: local_port(&stream),
                    proto: "http",
                };
                this.serve_connection(stream, conn).await;
            });
        }
    }

    pub async fn serve_https(
        self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
    ) -> anyhow::Result<()> {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        loop {
            let (stream, peer) = accept(&listener).await;
            let this = self.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let conn = Conn {
                    peer,
                    local_port: local_port(&stream),
                    proto: "https",
                };
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => this.serve_connection(tls, conn).await,
                    Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    }

    async fn serve_connection<IO>(self, io: IO, conn: Conn)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = hyper::service::service_fn(move |req| {
            let this = self.clone();
            async move { Ok::<_, Infallible>(this.handle(req, conn).await) }
        });
        let served = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
            .await;
        if let Err(e) = served {
            tracing::debug!(peer = %conn.peer, "connection ended: {e}");
        }
    }

    async fn handle(&self, req: Request<Incoming>, conn: Conn) -> Response<Body> {
        let host = request_host(&req).unwrap_or_default();
        let route = self.snapshot.load().routes.route(&host, req.uri().path());
        match route {
            Route::NotFound => text(StatusCode::NOT_FOUND, NOT_FOUND_BODY),
            Route::Unavailable(why) => {
                tracing::debug!(host, path = req.uri().path(), "503: {why}");
                text(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE_BODY)
            }
            Route::Backend(backend) => {
                if let Some(proto) = upgrade_protocol(req.headers()) {
                    self.forward_upgrade(req, &backend, proto, conn).await
                } else {
                    self.forward(req, &backend, conn).await
                }
            }
        }
    }

    /// Forwards a plain request through the pool; a body-less request moves on to another
    /// endpoint when connecting fails.
    async fn forward(
        &self,
        req: Request<Incoming>,
        backend: &Backend,
        conn: Conn,
    ) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        prepare_headers(&mut parts, conn, None);
        let retryable = body.is_end_stream();
        let mut body = Some(body.boxed());
        let attempts = if retryable {
            MAX_CONNECT_ATTEMPTS.min(backend.endpoints().len())
        } else {
            1
        };
        for attempt in 1..=attempts {
            let Some(endpoint) = backend.pick() else {
                break;
            };
            let out = match outbound_request(&parts, endpoint, body.take().unwrap_or_else(empty)) {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!("unforwardable request: {e:#}");
                    return text(StatusCode::BAD_REQUEST, "400 Bad Request\n");
                }
            };
            match self.client.request(out).await {
                Ok(resp) => return downstream_response(resp, None),
                Err(e) if e.is_connect() && attempt < attempts => {
                    tracing::debug!(backend = backend.name, %endpoint, "connect failed, retrying: {e}");
                }
                Err(e) => {
                    tracing::warn!(backend = backend.name, %endpoint, "proxying failed: {e}");
                    return text(StatusCode::BAD_GATEWAY, BAD_GATEWAY_BODY);
                }
            }
        }
        text(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE_BODY)
    }

    /// Forwards a protocol switch on its own connection, then splices the client's upgraded
    /// connection with the backend's.
    async fn forward_upgrade(
        &self,
        mut req: Request<Incoming>,
        backend: &Backend,
        proto: HeaderValue,
        conn: Conn,
    ) -> Response<Body> {
        let Some(endpoint) = backend.pick() else {
            return text(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE_BODY);
        };
        let client_upgrade = hyper::upgrade::on(&mut req);
        let (mut parts, body) = req.into_parts();
        prepare_headers(&mut parts, conn, Some(&proto));
        let result = async {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(endpoint))
                .await
                .context("connect timed out")?
                .context("connect")?;
            let _ = stream.set_nodelay(true);
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .context("handshake")?;
            tokio::spawn(async move {
                if let Err(e) = connection.with_upgrades().await {
                    tracing::debug!("upgrade backend connection: {e}");
                }
            });
            let mut out = outbound_request(&parts, endpoint, body.boxed())?;
            // A dedicated connection takes the origin form.
            *out.uri_mut() = origin_form(&parts.uri);
            sender.send_request(out).await.context("sending request")
        }
        .await;
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(backend = backend.name, %endpoint, "upgrade failed: {e:#}");
                return text(StatusCode::BAD_GATEWAY, BAD_GATEWAY_BODY);
            }
        };
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return downstream_response(resp, None);
        }
        let backend_upgrade = hyper::upgrade::on(&mut resp);
        let name = backend.name.clone();
        tokio::spawn(async move {
            match tokio::join!(client_upgrade, backend_upgrade) {
                (Ok(client), Ok(upstream)) => {
                    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await
                    {
                        tracing::debug!(backend = name, "upgraded connection ended: {e}");
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!(backend = name, "upgrade did not complete: {e}");
                }
            }
        });
        let upgrade = upgrade_protocol(resp.headers()).unwrap_or(proto);
        downstream_response(resp, Some(&upgrade))
    }
}

async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            Err(e) => {
                // Usually out of file descriptors: back off rather than spin.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn local_port(stream: &TcpStream) -> u16 {
    stream.local_addr().map(|a| a.port()).unwrap_or(0)
}

/// The host a request is for: the absolute-form authority, else the Host header.
fn request_host<B>(req: &Request<B>) -> Option<String> {
    if let Some(a) = req.uri().authority() {
        return Some(a.as_str().to_string());
    }
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
}

/// Hop-by-hop headers out, forwarding headers in, `Host` kept (filled from the authority when
/// an absolute-form request left it out).
fn prepare_headers(parts: &mut http::request::Parts, conn: Conn, upgrade: Option<&HeaderValue>) {
    let host = request_host_parts(parts);
    remove_hop_by_hop(&mut parts.headers, upgrade);
    if !parts.headers.contains_key(header::HOST)
        && let Some(h) = host.as_deref().and_then(|h| HeaderValue::from_str(h).ok())
    {
        parts.headers.insert(header::HOST, h);
    }
    set_forwarded_headers(
        &mut parts.headers,
        &Forwarded {
            client_ip: conn.peer.ip(),
            host: host.as_deref(),
            proto: conn.proto,
            port: conn.local_port,
        },
    );
}

fn request_host_parts(parts: &http::request::Parts) -> Option<String> {
    if let Some(a) = parts.uri.authority() {
        return Some(a.as_str().to_string());
    }
    parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
}

fn origin_form(uri: &Uri) -> Uri {
    uri.path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/")
        .parse()
        .unwrap_or_else(|_| Uri::from_static("/"))
}

/// The request to send to `endpoint` (absolute form, which the pooled client needs).
fn outbound_request(
    parts: &http::request::Parts,
    endpoint: SocketAddr,
    body: Body,
) -> anyhow::Result<Request<Body>> {
    let pq = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let uri: Uri = format!("http://{endpoint}{pq}")
        .parse()
        .context("building the backend URI")?;
    let mut out = Request::new(body);
    *out.method_mut() = parts.method.clone();
    *out.uri_mut() = uri;
    *out.version_mut() = Version::HTTP_11;
    *out.headers_mut() = parts.headers.clone();
    Ok(out)
}

fn downstream_response(resp: Response<Incoming>, upgrade: Option<&HeaderValue>) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    remove_hop_by_hop(&mut parts.headers, upgrade);
    Response::from_parts(parts, body.boxed())
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests;
