//! An HTTPS server of the test's own for webhooks (admission, CRD conversion): 127.0.0.1 with a
//! certificate for `127.0.0.1` and `webhook.hooks.svc` from a CA made here, on a tokio runtime
//! of its own; every JSON request is recorded with its path and handed to the test's handler.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// What the handler answers: a status code and a body (sent as application/json).
pub type Answer = Pin<Box<dyn Future<Output = (u16, Bytes)> + Send>>;
/// The test's handler: the path (without the query) and the decoded JSON body (Null if none).
pub type Handler = Arc<dyn Fn(String, Value) -> Answer + Send + Sync>;

pub struct WebhookServer {
    rt: Option<tokio::runtime::Runtime>,
    pub port: u16,
    /// The CA that signed the serving certificate (PEM), for a `caBundle`.
    pub ca_pem: String,
    /// Every request received: its path, query and body.
    seen: Arc<Mutex<Vec<(String, String, Value)>>>,
}

impl WebhookServer {
    pub fn start(handler: Handler) -> WebhookServer {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::default();
        ca.distinguished_name.push(DnType::CommonName, "webhook-ca");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = ca.self_signed(&ca_key).expect("CA certificate").pem();
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).expect("issuer");
        let key = KeyPair::generate().expect("serving key");
        let serving = CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "webhook.hooks.svc".to_string(),
        ])
        .expect("serving params");
        let cert = serving
            .signed_by(&key, &issuer)
            .expect("serving certificate");
        let certs = rustls_pemfile::certs(&mut cert.pem().as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("certs");
        let key = rustls_pemfile::private_key(&mut key.serialize_pem().as_bytes())
            .expect("key")
            .expect("a key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("binding the webhook server");
        let port = listener.local_addr().expect("address").port();
        let seen: Arc<Mutex<Vec<(String, String, Value)>>> = Arc::default();
        let s = seen.clone();
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let (seen, handler) = (s.clone(), handler.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let (seen, handler) = (seen.clone(), handler.clone());
                            async move {
                                let path = req.uri().path().to_string();
                                let query = req.uri().query().unwrap_or_default().to_string();
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let body: Value =
                                    serde_json::from_slice(&body).unwrap_or(Value::Null);
                                seen.lock().expect("lock").push((
                                    path.clone(),
                                    query,
                                    body.clone(),
                                ));
                                let (code, body) = handler(path, body).await;
                                Ok::<_, Infallible>(reply(code, body))
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        WebhookServer {
            rt: Some(rt),
            port,
            ca_pem,
            seen,
        }
    }

    /// The requests a path received: (query, body).
    pub fn seen(&self, path: &str) -> Vec<(String, Value)> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, q, b)| (q.clone(), b.clone()))
            .collect()
    }

    /// The CA as a `caBundle` value.
    pub fn ca_bundle(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn reply(code: u16, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = StatusCode::from_u16(code).expect("status");
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}
