//! pods/exec, pods/attach and pods/portforward: the API server checks the request as upstream's
//! `ExecLocation` / `AttachLocation` / `PortForwardLocation` do, then opens an HTTP/1.1 upgrade
//! to the node's kubelet (`/exec/<ns>/<pod>/<container>`, `/attach/...`,
//! `/portForward/<ns>/<pod>`) and, once it answers `101 Switching Protocols`, relays between the
//! client and the kubelet in one of three ways:
//!
//! - SPDY/3.1 (kubectl up to 1.29) and WebSockets with the older channel protocols: the upgrade
//!   is forwarded as it is and the two connections spliced byte for byte (upstream's
//!   UpgradeAwareHandler); the runtime's streaming server speaks those itself.
//! - exec and attach over a `v5.channel.k8s.io` WebSocket (kubectl 1.30+): the WebSocket ends
//!   here and the kubelet is spoken to in SPDY (`translator`, on `spdy`), as upstream's
//!   StreamTranslatorProxy does; the runtime knows no v5.
//! - port-forward's WebSocket tunnel (`SPDY/3.1+portforward.k8s.io`, kubectl 1.31+): the
//!   WebSocket ends here and its binary messages carry the client's SPDY bytes (`wstunnel`).
//!
//! When the kubelet refuses an upgrade its status goes back to the client as it is: client-go
//! treats any non-101 answer to a WebSocket handshake as an upgrade failure and falls back to
//! SPDY (`transport/websocket/roundtripper.go`, `remotecommand/fallback.go`).

mod spdy;
mod translator;

use super::wstunnel;
use crate::ApiServer;
use crate::registry::core::pod::location::{self, StreamOptions};
use crate::server::Body;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use kaji_api::ApiError;

/// Headers that describe the client's hop to the API server, not the kubelet's.
const NOT_FORWARDED: [&str; 4] = ["host", "authorization", "content-length", "transfer-encoding"];

/// Serves an exec, attach or portforward request (`sub`) on `pod`.
pub async fn upgrade(server: &ApiServer, pod: &serde_json::Value, sub: &str, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let pairs = query_pairs(req.uri().query());
    let values = |k: &str| pairs.iter().filter(|(key, _)| key == k).map(|(_, v)| v.clone()).collect::<Vec<_>>();
    let flag = |k: &str| values(k).last().is_some_and(|v| v == "true" || v == "1");
    let mut relay = Relay::Splice;
    let path = if sub == "portforward" {
        if offers_websocket(&req, wstunnel::TUNNEL_PROTOCOL) {
            relay = Relay::Tunnel;
        }
        location::port_forward_path(pod, &values("ports"))
    } else {
        let opts = StreamOptions {
            stdin: flag("stdin"),
            stdout: flag("stdout"),
            stderr: flag("stderr"),
            tty: flag("tty"),
            container: values("container").last().cloned(),
            command: if sub == "exec" { values("command") } else { Vec::new() },
        };
        let path = location::exec_path(pod, sub, &opts)?;
        if offers_websocket(&req, translator::PROTOCOL) {
            relay = Relay::Translate(translator::Streams { stdin: opts.stdin, stdout: opts.stdout, stderr: opts.stderr, tty: opts.tty });
        }
        path
    };
    let (ip, port) = location::kubelet_address(&*server.store, pod).await?;
    proxy_upgrade(server, req, &ip, port, &path, relay).await
}

/// How the client's upgraded connection and the kubelet's are joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Relay {
    /// The client's upgrade goes to the kubelet as it is; bytes are copied both ways.
    Splice,
    /// Port-forward's WebSocket tunnel: SPDY inside WebSocket messages (`wstunnel`).
    Tunnel,
    /// exec/attach over a v5 WebSocket, spoken to the kubelet in SPDY (`translator`).
    Translate(translator::Streams),
}

impl Relay {
    /// The WebSocket subprotocol answered to the client, when the WebSocket ends here.
    fn protocol(self) -> Option<&'static str> {
        match self {
            Relay::Splice => None,
            Relay::Tunnel => Some(wstunnel::TUNNEL_PROTOCOL),
            Relay::Translate(_) => Some(translator::PROTOCOL),
        }
    }
}

/// A WebSocket upgrade offering the subprotocol `protocol`.
fn offers_websocket<B>(req: &Request<B>, protocol: &str) -> bool {
    let websocket = req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    websocket && req.headers().get_all(header::SEC_WEBSOCKET_PROTOCOL).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|p| p.trim() == protocol)
}

/// Sends the upgrade request to the kubelet; on 101 answers the client and joins the two
/// upgraded connections as `relay` says until the session ends. When the client's WebSocket
/// ends here (tunnel, translation) the kubelet is asked for SPDY instead.
async fn proxy_upgrade(server: &ApiServer, mut req: Request<Incoming>, ip: &str, port: u16, path: &str, relay: Relay) -> Result<Response<Body>, ApiError> {
    if !is_upgrade(&req) {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let failed = |e: String| ApiError::new(503, "ServiceUnavailable", format!("proxying to the kubelet at {ip}:{port}: {e}"));
    let tls = super::kubelet::connect(server, ip, port).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| failed(e.to_string()))?;
    tokio::spawn(conn.with_upgrades());
    let mut out = Request::builder().method(req.method().clone()).uri(path);
    match relay {
        Relay::Splice => {
            for (k, v) in req.headers() {
                if !NOT_FORWARDED.contains(&k.as_str()) {
                    out = out.header(k, v);
                }
            }
        }
        Relay::Tunnel => {
            out = out.header(header::CONNECTION, "Upgrade").header(header::UPGRADE, "SPDY/3.1").header("X-Stream-Protocol-Version", "portforward.k8s.io");
        }
        Relay::Translate(_) => {
            // As an SPDY client (and upstream's translator) would ask.
            out = out.method(http::Method::POST);
            for (k, v) in translator::kubelet_upgrade_headers() {
                out = out.header(k, v);
            }
        }
    }
    let out = out.header(header::HOST, format!("{ip}:{port}")).body(Empty::<Bytes>::new()).map_err(|e| failed(e.to_string()))?;
    let mut resp = sender.send_request(out).await.map_err(|e| failed(e.to_string()))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The kubelet's own words, as a Status the client can print.
        let code = resp.status().as_u16();
        let bytes = Limited::new(resp.into_body(), 64 * 1024).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let msg = String::from_utf8_lossy(&bytes).trim().to_string();
        return Err(match code {
            400 => ApiError::bad_request(msg),
            404 => ApiError::new(404, "NotFound", msg),
            _ => ApiError::new(code, "InternalError", msg),
        });
    }
    let mut answer = Response::new(Full::new(Bytes::new()).boxed());
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    if let Some(protocol) = relay.protocol() {
        let key = req.headers().get(header::SEC_WEBSOCKET_KEY).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let h = answer.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
        h.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&wstunnel::accept_key(key)).map_err(|e| failed(e.to_string()))?);
    } else {
        *answer.headers_mut() = std::mem::take(resp.headers_mut());
    }
    let client = hyper::upgrade::on(&mut req);
    let kubelet = hyper::upgrade::on(resp);
    tokio::spawn(async move {
        match (tokio::try_join!(client, kubelet), relay) {
            (Ok((client, kubelet)), Relay::Tunnel) => wstunnel::splice(TokioIo::new(client), TokioIo::new(kubelet)).await,
            (Ok((client, kubelet)), Relay::Translate(streams)) => translator::run(TokioIo::new(client), TokioIo::new(kubelet), streams).await,
            (Ok((client, kubelet)), Relay::Splice) => {
                let (mut client, mut kubelet) = (TokioIo::new(client), TokioIo::new(kubelet));
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
                    tracing::debug!(error = %e, "stream to the kubelet ended");
                }
            }
            (Err(e), _) => tracing::debug!(error = %e, "upgrading a stream to the kubelet failed"),
        }
    });
    Ok(answer)
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    let has = |h: header::HeaderName, want: &str| {
        req.headers().get_all(h).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case(want))
    };
    has(header::CONNECTION, "upgrade") && req.headers().get(header::UPGRADE).is_some_and(|v: &HeaderValue| !v.is_empty())
}

/// Query pairs in order, repeated keys kept (`command=sh&command=-c&...`).
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let dec = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (dec(k), dec(v))
        })
        .collect()
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_repeated_commands_in_order() {
        let q = query_pairs(Some("command=sh&command=-c&command=echo+a%20b&stdin=true"));
        let cmds: Vec<&str> = q.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.as_str()).collect();
        assert_eq!(cmds, ["sh", "-c", "echo a b"]);
    }

    #[test]
    fn recognises_upgrades() {
        let req = Request::get("/").header("connection", "keep-alive, Upgrade").header("upgrade", "SPDY/3.1").body(()).unwrap();
        assert!(is_upgrade(&req));
        let req = Request::get("/").header("upgrade", "websocket").body(()).unwrap();
        assert!(!is_upgrade(&req));
    }

    #[test]
    fn recognises_offered_subprotocols() {
        let req = Request::get("/").header("upgrade", "websocket").header("sec-websocket-protocol", "v5.channel.k8s.io, v4.channel.k8s.io").body(()).unwrap();
        assert!(offers_websocket(&req, translator::PROTOCOL));
        assert!(!offers_websocket(&req, wstunnel::TUNNEL_PROTOCOL));
        let v4 = Request::get("/").header("upgrade", "websocket").header("sec-websocket-protocol", "v4.channel.k8s.io").body(()).unwrap();
        assert!(!offers_websocket(&v4, translator::PROTOCOL));
        let spdy = Request::get("/").header("upgrade", "SPDY/3.1").header("sec-websocket-protocol", "v5.channel.k8s.io").body(()).unwrap();
        assert!(!offers_websocket(&spdy, translator::PROTOCOL));
    }
}
