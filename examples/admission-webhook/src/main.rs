//! An example admission webhook server: HTTPS with a certificate and key read from files (a
//! Secret mounted in the pod), answering AdmissionReview v1 requests:
//! - `POST /validate`: denies an object labelled `forbidden=true` (403, with a message),
//!   allows anything else;
//! - `POST /mutate`: allows, with a JSON patch that adds the label `mutated=true`.
//!
//! Usage: `admission-webhook --cert tls.crt --key tls.key [--port 8443]`.

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let cert = arg(&args, "--cert").ok_or("--cert is required")?;
    let key = arg(&args, "--key").ok_or("--key is required")?;
    let port: u16 = arg(&args, "--port").map_or(Ok(8443), |p| p.parse())?;
    let certs = rustls_pemfile::certs(&mut std::fs::read(&cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut std::fs::read(&key)?.as_slice())?
        .ok_or("no private key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    eprintln!("admission-webhook: serving on :{port}");
    loop {
        let (tcp, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc =
                hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                    Ok::<_, Infallible>(handle(req).await)
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

async fn handle(req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return reply(
                StatusCode::BAD_REQUEST,
                &json!({"message": "reading the body"}),
            );
        }
    };
    let Ok(review) = serde_json::from_slice::<Value>(&body) else {
        return reply(
            StatusCode::BAD_REQUEST,
            &json!({"message": "not an AdmissionReview"}),
        );
    };
    let request = &review["request"];
    let uid = request["uid"].clone();
    let object = &request["object"];
    let response = match path.as_str() {
        "/validate" => {
            if object
                .pointer("/metadata/labels/forbidden")
                .and_then(Value::as_str)
                == Some("true")
            {
                json!({"uid": uid, "allowed": false, "status": {"code": 403, "reason": "Forbidden", "message": "objects labelled forbidden=true are not allowed"}})
            } else {
                json!({"uid": uid, "allowed": true})
            }
        }
        "/mutate" => {
            let patch = if object
                .pointer("/metadata/labels")
                .is_some_and(Value::is_object)
            {
                json!([{"op": "add", "path": "/metadata/labels/mutated", "value": "true"}])
            } else {
                json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated": "true"}}])
            };
            let patch = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
            json!({"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": patch})
        }
        _ => return reply(StatusCode::NOT_FOUND, &json!({"message": "no such path"})),
    };
    eprintln!(
        "admission-webhook: {path} {} {} -> allowed={}",
        request["operation"].as_str().unwrap_or_default(),
        request["name"].as_str().unwrap_or_default(),
        response["allowed"]
    );
    reply(
        StatusCode::OK,
        &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}),
    )
}

fn reply(code: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}
