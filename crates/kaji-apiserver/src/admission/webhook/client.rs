//! One AdmissionReview POST to a webhook over HTTPS (upstream's webhook client: `url`, or a
//! Service reached through one of its endpoints and verified as `<name>.<namespace>.svc`, with
//! the configuration's caBundle). The aggregator's pieces do the Service part: endpoint
//! resolution (`aggregator::available::resolve`), the TLS client and the dial.
//! Errors read as client-go's (`Post "https://...?timeout=10s": ...`).

use super::config::{Hook, Target};
use crate::ApiServer;
use crate::aggregator::Remote;
use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The largest answer read (upstream reads up to 3 MiB of a webhook's response... and more;
/// this bounds a garbage one).
const MAX_RESPONSE: usize = 8 << 20;

/// Posts `review` and returns the decoded answer, within `timeout` (all of it: resolving,
/// dialing, TLS, the answer).
pub(super) async fn post(
    server: &Arc<ApiServer>,
    h: &Hook,
    review: &Value,
    timeout: Duration,
) -> Result<Value, String> {
    post_to(server, &h.name, &h.target, h.ca_bundle.as_deref(), review, timeout).await
}

/// `post` to any webhook (`name` is for logs and errors): also a CRD's conversion webhook.
pub(crate) async fn post_to(
    server: &Arc<ApiServer>,
    name: &str,
    target: &Target,
    ca_bundle: Option<&[u8]>,
    review: &Value,
    timeout: Duration,
) -> Result<Value, String> {
    let secs = timeout.as_secs();
    let (url, host, path) = match target {
        Target::Url(u) => {
            let rest = u.strip_prefix("https://").unwrap_or(u);
            let (authority, path) = rest
                .find('/')
                .map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
            (u.clone(), authority.to_string(), path.to_string())
        }
        Target::Service {
            namespace,
            name: service,
            port,
            path,
        } => {
            let path = if path.is_empty() {
                "/".to_string()
            } else {
                path.clone()
            };
            (
                format!("https://{service}.{namespace}.svc:{port}{path}"),
                format!("{service}.{namespace}.svc:{port}"),
                path,
            )
        }
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let shown = format!("{url}{sep}timeout={secs}s");
    let request_target = format!("{path}{sep}timeout={secs}s");
    let body = serde_json::to_vec(review).map_err(|e| e.to_string())?;
    let exchange = async {
        let conn = connect(server, name, target, ca_bundle, &host)
            .await
            .map_err(|e| format!("Post {shown:?}: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(conn))
            .await
            .map_err(|e| format!("Post {shown:?}: {e}"))?;
        // One request per connection: it goes when the answer is read, or a second after the
        // timeout (a webhook that never answers keeps no task alive). The margin lets the
        // request's own timeout below fire first, so the caller reads upstream's "context
        // deadline exceeded" rather than hyper's "dispatch task is gone".
        tokio::spawn(async move {
            let _ = tokio::time::timeout(timeout + Duration::from_secs(1), connection).await;
        });
        let req = Request::builder()
            .method("POST")
            .uri(&request_target)
            .header(header::HOST, &host)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, */*")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("Post {shown:?}: {e}"))?;
        let status = resp.status();
        let bytes = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| format!("Post {shown:?}: {e}"))?
            .to_bytes();
        if !status.is_success() {
            // client-go: the Status the server sent, or a generic line.
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string));
            return Err(message.unwrap_or_else(|| format!("the server responded with the status code {} but did not return more information", status.as_u16())));
        }
        serde_json::from_slice::<Value>(&bytes)
            .map_err(|e| format!("couldn't get version/kind; json parse error: {e}"))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(format!("Post {shown:?}: context deadline exceeded")),
    }
}

/// A TLS connection to the webhook.
async fn connect(
    server: &Arc<ApiServer>,
    name: &str,
    target: &Target,
    ca_bundle: Option<&[u8]>,
    authority: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tls = super::config::tls(server, ca_bundle)?;
    match target {
        Target::Service {
            namespace,
            name: service,
            port,
            ..
        } => {
            let remote = Remote {
                name: format!("webhook {name}"),
                group: String::new(),
                version: String::new(),
                group_priority: 0,
                version_priority: 0,
                namespace: namespace.clone(),
                service: service.clone(),
                port: *port,
                ca_bundle: ca_bundle.map(<[u8]>::to_vec),
                insecure: false,
                available: true,
            };
            let addr = crate::aggregator::available::resolve(server, &remote, true)
                .await
                .map_err(|(_, m)| m)?;
            crate::aggregator::proxy::dial(tls, &remote, addr).await
        }
        Target::Url(_) => {
            let (host, port) = split_host_port(authority);
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| format!("dial tcp: lookup {host}: {e}"))?
                .collect();
            let addr = *addrs
                .first()
                .ok_or_else(|| format!("dial tcp: lookup {host}: no such host"))?;
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::ConnectionRefused => {
                        format!("dial tcp {addr}: connect: connection refused")
                    }
                    _ => format!("dial tcp {addr}: {e}"),
                })?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
            tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls: {e}"))
        }
    }
}

/// `host[:port]` (an IPv6 host in brackets); the port defaults to 443.
fn split_host_port(authority: &str) -> (String, u16) {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        let port = after
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
            .unwrap_or(443);
        return (host.to_string(), port);
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse().unwrap_or(443)),
        _ => (authority.to_string(), 443),
    }
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn host_port() {
        assert_eq!(
            split_host_port("127.0.0.1:8443"),
            ("127.0.0.1".to_string(), 8443)
        );
        assert_eq!(
            split_host_port("example.com"),
            ("example.com".to_string(), 443)
        );
        assert_eq!(split_host_port("[::1]:9"), ("::1".to_string(), 9));
    }
}
