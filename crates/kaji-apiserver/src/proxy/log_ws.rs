//! pods/log over a WebSocket, as older clients ask for it (the Python client's `stream()`, older
//! dashboards): a GET of `/log` with `Upgrade: websocket` is answered as upstream's
//! `apiserver/pkg/util/wsstream` `Reader` does. The subprotocols are `binary.k8s.io` (each chunk
//! of the log one binary message), `base64.binary.k8s.io` (each chunk a text message holding
//! its base64) or none (binary); the first one the client offers that is known wins, and
//! offering only unknown ones is a 400. The log itself is the kubelet's stream, as for a plain
//! GET; when it ends the WebSocket is closed. Errors before the upgrade (a missing pod, a
//! container that is not there) are the usual Status answers.

use super::wstunnel::{accept_key, frame, read_frame};
use crate::ApiServer;
use crate::registry::core::pod::location;
use crate::server::Body;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use kaji_api::ApiError;
use std::collections::HashMap;
use tokio::io::AsyncWriteExt;

/// The subprotocols served, in upstream's words.
const BINARY: &str = "binary.k8s.io";
const BASE64: &str = "base64.binary.k8s.io";

/// The log options passed on to the kubelet, as for a plain GET.
const OPTIONS: [&str; 7] = [
    "follow",
    "previous",
    "timestamps",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "limitBytes",
];

/// A GET asking to be upgraded to a WebSocket.
pub fn is_websocket<B>(req: &Request<B>) -> bool {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let connection = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    req.method() == http::Method::GET && upgrade && connection
}

/// The subprotocol chosen among those offered: `Ok(None)` when none is offered.
fn negotiate<B>(req: &Request<B>) -> Result<Option<&'static str>, ApiError> {
    let offered: Vec<String> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok(None);
    }
    for p in &offered {
        match p.as_str() {
            BINARY => return Ok(Some(BINARY)),
            BASE64 => return Ok(Some(BASE64)),
            _ => {}
        }
    }
    Err(ApiError::bad_request(format!(
        "requested protocol(s) are not supported: {offered:?}; supports [\"\" {BINARY:?} {BASE64:?}]"
    )))
}

/// Serves the log of `pod` over the client's WebSocket.
pub async fn serve(
    server: &ApiServer,
    pod: &serde_json::Value,
    params: &HashMap<String, String>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let protocol = negotiate(&req)?;
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(key) = key else {
        return Err(ApiError::bad_request("missing Sec-WebSocket-Key"));
    };
    let options: Vec<(&str, &str)> = OPTIONS
        .iter()
        .filter_map(|k| params.get(*k).map(|v| (*k, v.as_str())))
        .collect();
    let path = location::log_path(pod, params.get("container").map(String::as_str), &options)?;
    let (ip, port) = location::kubelet_address(&*server.store, pod).await?;
    let mut log = super::kubelet::stream(server, &ip, port, &path).await?;

    let mut answer = Response::new(Full::new(Bytes::new()).boxed());
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = answer.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Some(p) = protocol {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
    }
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept_key(&key)).map_err(|e| ApiError::internal(e.to_string()))?,
    );
    let upgraded = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let ws = match upgraded.await {
            Ok(ws) => TokioIo::new(ws),
            Err(e) => {
                tracing::debug!(error = %e, "upgrading a log stream failed");
                return;
            }
        };
        let (mut ws_read, ws_write) = tokio::io::split(ws);
        let ws_write = std::sync::Arc::new(tokio::sync::Mutex::new(ws_write));
        let to_client = {
            let ws_write = ws_write.clone();
            async move {
                while let Some(chunk) = log.recv().await {
                    let message = if protocol == Some(BASE64) {
                        frame(
                            0x1,
                            base64::engine::general_purpose::STANDARD
                                .encode(&chunk)
                                .as_bytes(),
                        )
                    } else {
                        frame(0x2, &chunk)
                    };
                    let mut w = ws_write.lock().await;
                    if w.write_all(&message).await.is_err() || w.flush().await.is_err() {
                        return;
                    }
                }
                let mut w = ws_write.lock().await;
                let _ = w.write_all(&frame(0x8, &1000u16.to_be_bytes())).await;
                let _ = w.flush().await;
                let _ = w.shutdown().await;
            }
        };
        // The client says nothing but pings and its close.
        let from_client = async move {
            loop {
                match read_frame(&mut ws_read).await {
                    Ok((0x9, payload)) => {
                        let mut w = ws_write.lock().await;
                        let _ = w.write_all(&frame(0xA, &payload)).await;
                        let _ = w.flush().await;
                    }
                    Ok((0x8, _)) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::select! {
            () = to_client => {}
            () = from_client => {}
        }
    });
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(protocols: Option<&str>) -> Request<()> {
        let mut b = Request::get("/")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket");
        if let Some(p) = protocols {
            b = b.header("sec-websocket-protocol", p);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn negotiates_upstream_protocols() {
        assert!(is_websocket(&req(None)));
        assert_eq!(negotiate(&req(None)).unwrap(), None);
        assert_eq!(
            negotiate(&req(Some("base64.binary.k8s.io, binary.k8s.io"))).unwrap(),
            Some(BASE64)
        );
        assert_eq!(
            negotiate(&req(Some("v4.channel.k8s.io, binary.k8s.io"))).unwrap(),
            Some(BINARY)
        );
        assert_eq!(
            negotiate(&req(Some("v4.channel.k8s.io"))).unwrap_err().code,
            400
        );
        let plain = Request::get("/").body(()).unwrap();
        assert!(!is_websocket(&plain));
    }
}
