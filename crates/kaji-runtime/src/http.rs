//! A minimal HTTP/1.1 responder: one request per connection, answered by a function of the
//! path. Enough for `/metrics` and health-check ports, without a server stack.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What a handler answers.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
        }
    }

    pub fn not_found() -> Response {
        Response::new(404, "text/plain; charset=utf-8", "404 page not found\n")
    }
}

/// The content type of Prometheus' text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Serves `GET` requests on `listener` until the process ends: `handler` gets the path (without
/// the query string). Other methods get 405; a request head that is not complete within 5 s or
/// 8 KiB is dropped.
pub async fn serve<F>(listener: TcpListener, handler: F)
where
    F: Fn(&str) -> Response + Send + Sync + 'static,
{
    let handler = std::sync::Arc::new(handler);
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            let read = async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                true
            };
            if !matches!(
                tokio::time::timeout(Duration::from_secs(5), read).await,
                Ok(true)
            ) {
                return;
            }
            let line =
                String::from_utf8_lossy(head.split(|b| *b == b'\r').next().unwrap_or_default())
                    .into_owned();
            let mut parts = line.split(' ');
            let resp = match (parts.next(), parts.next()) {
                (Some("GET"), Some(target)) => handler(target.split('?').next().unwrap_or(target)),
                _ => Response::new(405, "text/plain; charset=utf-8", "method not allowed\n"),
            };
            let reply = format!(
                "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                resp.status,
                reason(resp.status),
                resp.content_type,
                resp.body.len(),
                resp.body
            );
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fetch(addr: std::net::SocketAddr, request: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn answers_by_path_and_refuses_other_methods() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, |path| match path {
            "/metrics" => Response::new(200, PROMETHEUS_TEXT, "up 1\n"),
            _ => Response::not_found(),
        }));
        let ok = fetch(addr, "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(
            ok.starts_with("HTTP/1.1 200 OK\r\n") && ok.ends_with("\r\n\r\nup 1\n"),
            "{ok}"
        );
        assert!(ok.contains("Content-Length: 5\r\n"));
        assert!(
            fetch(addr, "GET /other HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 404 Not Found")
        );
        assert!(
            fetch(addr, "POST /metrics HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 405")
        );
    }
}
