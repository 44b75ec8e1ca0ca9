//! Connections to a kubelet (TLS, the API server's `kube-apiserver-kubelet-client` certificate)
//! and streamed GETs (pods/log).

use bytes::Bytes;
use http_body_util::BodyExt;
use kaji_api::ApiError;
use tokio::sync::mpsc;

/// A TLS connection to a kubelet (HTTP/1.1, for streams and upgrades).
pub async fn connect(server: &crate::ApiServer, ip: &str, port: u16) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, ApiError> {
    let unavailable = |e: String| ApiError::new(503, "ServiceUnavailable", format!("connecting to the kubelet at {ip}:{port}: {e}"));
    let tcp = tokio::net::TcpStream::connect((ip, port)).await.map_err(|e| unavailable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let server_name = rustls::pki_types::ServerName::try_from(ip.to_string()).map_err(|e| unavailable(e.to_string()))?;
    tokio_rustls::TlsConnector::from(server.kubelet_tls.clone()).connect(server_name, tcp).await.map_err(|e| unavailable(e.to_string()))
}

/// An HTTP/1.1 connection to a kubelet, for bodiless requests.
pub type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>;

/// Opens an HTTP/1.1 connection to a kubelet over [`connect`]; it lives while the sender does.
pub async fn open(server: &crate::ApiServer, ip: &str, port: u16) -> Result<Sender, ApiError> {
    let tls = connect(server, ip, port).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| ApiError::new(503, "ServiceUnavailable", format!("connecting to the kubelet at {ip}:{port}: {e}")))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// The request of a GET of `path` from the kubelet at `ip:port`.
pub fn get_request(ip: &str, port: u16, path: &str) -> Result<http::Request<http_body_util::Empty<Bytes>>, http::Error> {
    http::Request::get(path).header(http::header::HOST, format!("{ip}:{port}")).body(http_body_util::Empty::<Bytes>::new())
}

/// GETs `path` from a kubelet and streams the body back (errors keep the kubelet's message).
pub async fn stream(server: &crate::ApiServer, ip: &str, port: u16, path: &str) -> Result<mpsc::Receiver<Bytes>, ApiError> {
    let unavailable = |e: String| ApiError::new(503, "ServiceUnavailable", format!("connecting to the kubelet at {ip}:{port}: {e}"));
    let mut sender = open(server, ip, port).await?;
    let req = get_request(ip, port, path).map_err(|e| unavailable(e.to_string()))?;
    let resp = sender.send_request(req).await.map_err(|e| unavailable(e.to_string()))?;
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let msg = String::from_utf8_lossy(&bytes).trim().to_string();
        return Err(if status.as_u16() == 400 { ApiError::bad_request(msg) } else { ApiError::new(status.as_u16(), "InternalError", msg) });
    }
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Ok(data) = frame.into_data()
                && tx.send(data).await.is_err()
            {
                break;
            }
        }
    });
    Ok(rx)
}
