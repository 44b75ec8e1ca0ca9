//! The kubelet's streaming endpoints, as upstream's (`pkg/kubelet/server/server.go`):
//! `/exec/<ns>/<pod>/<container>?command=..&input=1&output=1&error=1&tty=1`, `/attach/...` and
//! `/portForward/<ns>/<pod>`. Each asks the CRI for a URL on the runtime's streaming server
//! (Exec, Attach, PortForward) and proxies the HTTP/1.1 upgrade there, SPDY/3.1 or WebSocket,
//! then splices bytes both ways: what upstream's kubelet does since it stopped redirecting
//! clients to the runtime (`proxy.NewUpgradeAwareHandler`).
//!
//! containerd 1.6's streaming server speaks SPDY and the WebSocket protocols up to
//! `v4.channel.k8s.io`; a WebSocket asking only for newer ones (kubectl 1.30+'s
//! `v5.channel.k8s.io`, or the `SPDY/3.1+portforward.k8s.io` tunnel) is refused here with 400,
//! which client-go takes as an upgrade failure and retries over SPDY. Through the API server
//! neither reaches the kubelet: the API server ends those WebSockets itself and speaks SPDY here
//! (kaji-apiserver's `rest::streaming`).

use crate::cri::{self, Cri, api};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;

type Body = BoxBody<Bytes, Infallible>;

/// WebSocket subprotocols the runtime's streaming server accepts ("" is a client that names
/// none).
const RUNTIME_WEBSOCKET_PROTOCOLS: [&str; 5] = [
    "",
    "channel.k8s.io",
    "base64.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
];

/// Which stream a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Attach,
    PortForward,
}

fn text(code: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(msg.into())).boxed());
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Serves one streaming request; `container` is None for port-forward.
pub async fn serve(
    cri: Cri,
    kind: Kind,
    ns: &str,
    pod: &str,
    container: Option<&str>,
    req: Request<Incoming>,
) -> Response<Body> {
    if let Some(offered) = websocket_protocols(&req)
        && !offered
            .iter()
            .any(|p| RUNTIME_WEBSOCKET_PROTOCOLS.contains(&p.as_str()))
    {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "the container runtime's streaming server does not serve the WebSocket protocol(s) {offered:?}; use SPDY/3.1"
            ),
        );
    }
    let url = match runtime_url(cri, kind, ns, pod, container, req.uri().query()).await {
        Ok(u) => u,
        Err((code, msg)) => return text(code, msg),
    };
    match proxy_upgrade(req, &url).await {
        Ok(r) => r,
        Err(msg) => text(StatusCode::INTERNAL_SERVER_ERROR, msg),
    }
}

/// The subprotocols a WebSocket upgrade offers; None when it is not a WebSocket request.
fn websocket_protocols<B>(req: &Request<B>) -> Option<Vec<String>> {
    let ws = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    ws.then(|| {
        let mut offered: Vec<String> = req
            .headers()
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        if offered.is_empty() {
            offered.push(String::new());
        }
        offered
    })
}

/// Query pairs in order, repeated keys kept.
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let dec = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
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

/// Asks the CRI where to stream: the running container (or the pod's ready sandbox) by the
/// labels the kubelet put on it.
async fn runtime_url(
    mut cri: Cri,
    kind: Kind,
    ns: &str,
    pod: &str,
    container: Option<&str>,
    query: Option<&str>,
) -> Result<String, (StatusCode, String)> {
    let internal = |e: anyhow::Error| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"));
    let grpc = |e: tonic::Status| (StatusCode::INTERNAL_SERVER_ERROR, e.message().to_string());
    let pairs = query_pairs(query);
    let values = |k: &str| {
        pairs
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    let flag = |k: &str| values(k).last().is_some_and(|v| v == "1" || v == "true");
    let mut labels = HashMap::from([
        (cri::POD_NAME_LABEL.to_string(), pod.to_string()),
        (cri::POD_NAMESPACE_LABEL.to_string(), ns.to_string()),
    ]);
    if kind == Kind::PortForward {
        let filter = api::PodSandboxFilter {
            label_selector: labels,
            state: Some(api::PodSandboxStateValue {
                state: api::PodSandboxState::SandboxReady as i32,
            }),
            ..Default::default()
        };
        let sandboxes = cri.list_sandboxes(Some(filter)).await.map_err(internal)?;
        let sandbox = sandboxes
            .first()
            .ok_or_else(|| (StatusCode::NOT_FOUND, format!("pod {pod} not found")))?;
        let port = values("port")
            .iter()
            .flat_map(|p| p.split(','))
            .filter_map(|p| p.trim().parse().ok())
            .collect();
        let resp = cri
            .runtime
            .port_forward(api::PortForwardRequest {
                pod_sandbox_id: sandbox.id.clone(),
                port,
            })
            .await
            .map_err(grpc)?;
        return Ok(resp.into_inner().url);
    }
    let container = container.unwrap_or_default();
    labels.insert(cri::CONTAINER_NAME_LABEL.to_string(), container.to_string());
    let filter = api::ContainerFilter {
        label_selector: labels,
        state: Some(api::ContainerStateValue {
            state: api::ContainerState::ContainerRunning as i32,
        }),
        ..Default::default()
    };
    let running = cri.list_containers(Some(filter)).await.map_err(internal)?;
    let id = running.first().map(|c| c.id.clone()).ok_or_else(|| {
        (
            StatusCode::NOT_FOUND,
            format!("container not found ({container:?})"),
        )
    })?;
    let (stdin, stdout, tty) = (flag("input"), flag("output"), flag("tty"));
    // A terminal merges stderr into stdout (the CRI refuses both).
    let stderr = flag("error") && !tty;
    if !stdin && !stdout && !stderr {
        return Err((
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 of stdin, stdout, stderr".to_string(),
        ));
    }
    let url = if kind == Kind::Exec {
        let cmd = values("command");
        if cmd.is_empty() {
            return Err((
                StatusCode::BAD_REQUEST,
                "you must specify at least one command for the container".to_string(),
            ));
        }
        let req = api::ExecRequest {
            container_id: id,
            cmd,
            tty,
            stdin,
            stdout,
            stderr,
        };
        cri.runtime.exec(req).await.map_err(grpc)?.into_inner().url
    } else {
        let req = api::AttachRequest {
            container_id: id,
            stdin,
            tty,
            stdout,
            stderr,
        };
        cri.runtime
            .attach(req)
            .await
            .map_err(grpc)?
            .into_inner()
            .url
    };
    Ok(url)
}

/// Sends the upgrade to the runtime's URL (plain HTTP on the node); on 101 answers with the
/// runtime's headers and splices the connections until both sides close.
async fn proxy_upgrade(mut req: Request<Incoming>, url: &str) -> Result<Response<Body>, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("the runtime's streaming URL {url:?}: {e}"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| format!("the runtime's streaming URL {url:?} has no host"))?
        .to_string();
    let tcp = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .map_err(|e| format!("connecting to the runtime's streaming server {authority}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn.with_upgrades());
    // The original query goes along: a WebSocket port-forward names its ports there.
    let target = match req.uri().query() {
        Some(q) if !q.is_empty() => format!("{}?{q}", uri.path()),
        _ => uri.path().to_string(),
    };
    let mut out = Request::builder().method(req.method().clone()).uri(target);
    for (k, v) in req.headers() {
        if k != header::HOST && k != header::CONTENT_LENGTH && k != header::TRANSFER_ENCODING {
            out = out.header(k, v);
        }
    }
    let out = out
        .header(header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let mut resp = sender.send_request(out).await.map_err(|e| e.to_string())?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let code = resp.status();
        let body = Limited::new(resp.into_body(), 64 * 1024)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Ok(text(
            code,
            String::from_utf8_lossy(&body).trim().to_string(),
        ));
    }
    let mut answer = Response::new(Full::new(Bytes::new()).boxed());
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *answer.headers_mut() = std::mem::take(resp.headers_mut());
    let client = hyper::upgrade::on(&mut req);
    let runtime = hyper::upgrade::on(resp);
    tokio::spawn(async move {
        match tokio::try_join!(client, runtime) {
            Ok((client, runtime)) => {
                let (mut client, mut runtime) = (TokioIo::new(client), TokioIo::new(runtime));
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut runtime).await {
                    tracing::debug!(error = %e, "stream to the runtime ended");
                }
            }
            Err(e) => tracing::debug!(error = %e, "upgrading a stream to the runtime failed"),
        }
    });
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_protocols_offered() {
        let req = Request::get("/")
            .header("upgrade", "websocket")
            .header(
                "sec-websocket-protocol",
                "v5.channel.k8s.io, v4.channel.k8s.io",
            )
            .body(())
            .unwrap();
        assert_eq!(
            websocket_protocols(&req),
            Some(vec![
                "v5.channel.k8s.io".to_string(),
                "v4.channel.k8s.io".to_string()
            ])
        );
        let spdy = Request::get("/")
            .header("upgrade", "SPDY/3.1")
            .body(())
            .unwrap();
        assert_eq!(websocket_protocols(&spdy), None);
        let bare = Request::get("/")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert_eq!(websocket_protocols(&bare), Some(vec![String::new()]));
    }

    #[test]
    fn repeated_commands_keep_their_order() {
        let q = query_pairs(Some("command=sh&command=-c&command=exit%203&input=1"));
        let cmd: Vec<&str> = q
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(cmd, ["sh", "-c", "exit 3"]);
    }
}
