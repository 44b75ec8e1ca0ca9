//! The proxy end to end on 127.0.0.1: a hyper backend, the ingress in front of it (from a
//! snapshot built by hand, no API server), and plain/TLS clients.

use super::*;
use crate::routing::tests::{ingress, service, slice};
use crate::snapshot::{ClusterState, Snapshot};
use crate::tls::tests::{self_signed, tls_secret};
use crate::tls::{CertResolver, DEFAULT_CERT_CN, default_certificate, server_config};
use http_body_util::BodyExt;
use serde_json::json;
use std::collections::BTreeMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A backend that answers with the path and headers it got (`name: value` lines), and accepts
/// any `Upgrade` by echoing the upgraded bytes.
async fn start_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|mut req: Request<Incoming>| async move {
                    if let Some(proto) = req.headers().get(header::UPGRADE).cloned() {
                        let on = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            if let Ok(up) = on.await {
                                let mut io = TokioIo::new(up);
                                let mut buf = [0u8; 1024];
                                while let Ok(n) = io.read(&mut buf).await {
                                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        });
                        let mut resp = Response::new(Full::new(Bytes::new()));
                        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                        resp.headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                        resp.headers_mut().insert(header::UPGRADE, proto);
                        return Ok::<_, Infallible>(resp);
                    }
                    let mut text = format!("path: {}\n", req.uri());
                    for (k, v) in req.headers() {
                        text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
                    }
                    let body = req.into_body().collect().await.map(|b| b.to_bytes());
                    text.push_str(&format!(
                        "body-len: {}\n",
                        body.map(|b| b.len()).unwrap_or(0)
                    ));
                    Ok(Response::new(Full::new(Bytes::from(text))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

struct Setup {
    http: SocketAddr,
    https: SocketAddr,
    /// PEM of the certificate served for `secure.test`.
    secure_cert: String,
}

async fn start_ingress(backend: SocketAddr) -> Setup {
    let (cert, key) = self_signed(&["secure.test"]);
    let ingresses = vec![Arc::new(ingress(
        "default",
        "web",
        "2024-01-01T00:00:00Z",
        json!({
            "ingressClassName": "kaji",
            "tls": [{"hosts": ["secure.test"], "secretName": "secure-tls"}],
            "rules": [
                {"host": "app.test", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"name": "http"}}}},
                    {"path": "/down", "pathType": "Prefix",
                     "backend": {"service": {"name": "down", "port": {"number": 80}}}},
                    {"path": "/gone", "pathType": "Exact",
                     "backend": {"service": {"name": "missing", "port": {"number": 80}}}},
                ]}},
                {"host": "secure.test", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                ]}},
            ],
        }),
    ))];
    let services = vec![
        service("default", "web", json!([{"name": "http", "port": 80}])),
        service("default", "down", json!([{"name": "http", "port": 80}])),
    ];
    let slices = vec![slice(
        "default",
        "web",
        "http",
        i32::from(backend.port()),
        &[("127.0.0.1", true, true, false)],
    )];
    let secrets = vec![tls_secret("default", "secure-tls", &cert, &key)];
    let (snap, problems) = Snapshot::build(&ClusterState {
        class_name: "kaji",
        ingresses: &ingresses,
        ingress_classes: &[],
        services: &services,
        endpoint_slices: &slices,
        secrets: &secrets,
    });
    // `/gone` names a Service on purpose missing; nothing else is wrong.
    let reported: Vec<_> = problems.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(reported, ["Service \"default/missing\" not found"]);
    let handle = SnapshotHandle::new(snap);
    let tls = server_config(Arc::new(CertResolver::new(
        handle.clone(),
        default_certificate().expect("default cert"),
    )))
    .expect("tls config");
    let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
    let https = TcpListener::bind("127.0.0.1:0").await.expect("bind https");
    let setup = Setup {
        http: http.local_addr().expect("addr"),
        https: https.local_addr().expect("addr"),
        secure_cert: cert,
    };
    tokio::spawn(serve(http, handle.clone(), None));
    tokio::spawn(serve(https, handle, Some(tls)));
    setup
}

/// Sends one request over `io` and returns status and body.
async fn request<IO>(
    io: IO,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::builder().uri(path).header(header::HOST, host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(
            req.body(Full::new(Bytes::from_static(b"hello")))
                .expect("request"),
        )
        .await
        .expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn parse_echo(body: &str) -> BTreeMap<String, String> {
    body.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn http_get(addr: SocketAddr, host: &str, path: &str) -> (StatusCode, String) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    request(stream, host, path, &[("x-forwarded-for", "203.0.113.9")]).await
}

#[tokio::test]
async fn routes_with_forwarded_headers_404_and_503() {
    let backend = start_backend().await;
    let s = start_ingress(backend).await;

    let (status, body) = http_get(s.http, "app.test", "/some/path?q=1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got = parse_echo(&body);
    assert_eq!(got["path"], "/some/path?q=1");
    assert_eq!(got["host"], "app.test");
    assert_eq!(got["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(got["x-real-ip"], "127.0.0.1");
    assert_eq!(got["x-forwarded-host"], "app.test");
    assert_eq!(got["x-forwarded-proto"], "http");
    assert_eq!(got["x-forwarded-port"], s.http.port().to_string());
    assert_eq!(got["body-len"], "5");

    let (status, body) = http_get(s.http, "nothing.test", "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body.trim_end(), "404 page not found");

    let (status, body) = http_get(s.http, "app.test", "/down/x").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body.trim_end(), "503 Service Unavailable");

    let (status, _) = http_get(s.http, "app.test", "/gone").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn keep_alive_connection_serves_many_requests() {
    let backend = start_backend().await;
    let s = start_ingress(backend).await;
    let stream = TcpStream::connect(s.http).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    for i in 0..20 {
        let req = Request::builder()
            .uri(format!("/n/{i}"))
            .header(header::HOST, "app.test")
            .body(Empty::<Bytes>::new())
            .expect("request");
        let resp = sender.send_request(req).await.expect("response");
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert!(String::from_utf8_lossy(&body).contains(&format!("path: /n/{i}")));
    }
}

#[tokio::test]
async fn upgrade_is_spliced_both_ways() {
    let backend = start_backend().await;
    let s = start_ingress(backend).await;
    let mut stream = TcpStream::connect(s.http).await.expect("connect");
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .await
        .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("read head");
        assert_eq!(
            n,
            1,
            "connection closed in head: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for msg in [&b"ping"[..], b"second message"] {
        stream.write_all(msg).await.expect("write upgraded");
        let mut buf = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
            .await
            .expect("echo in time")
            .expect("read upgraded");
        assert_eq!(buf, msg);
    }
}

/// Accepts any server certificate, to look at the default one (its name matches nothing).
#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn client_builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
}

#[tokio::test]
async fn https_chooses_the_certificate_by_sni() {
    let backend = start_backend().await;
    let s = start_ingress(backend).await;

    // Trusting only the test certificate: the handshake verifies, so SNI picked it.
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut s.secure_cert.as_bytes()) {
        roots.add(c.expect("pem")).expect("root");
    }
    let config = client_builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(s.https).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("secure.test").expect("name");
    let tls = connector
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the test cert");
    let (status, body) = request(tls, "secure.test", "/hi", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got = parse_echo(&body);
    assert_eq!(got["x-forwarded-proto"], "https");
    assert_eq!(got["x-forwarded-port"], s.https.port().to_string());
    assert_eq!(got["x-forwarded-for"], "127.0.0.1");

    // Another name gets the self-signed default certificate.
    let config = client_builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(s.https).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("app.test").expect("name");
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let leaf = tls.get_ref().1.peer_certificates().expect("certs")[0].to_vec();
    let cn = DEFAULT_CERT_CN.as_bytes();
    assert!(leaf.windows(cn.len()).any(|w| w == cn));
    let (status, _) = request(tls, "app.test", "/", &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn garbage_input_does_not_bring_the_server_down() {
    let backend = start_backend().await;
    let s = start_ingress(backend).await;
    for junk in [
        &b"\x00\x01\x02 not http\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
        b"GET http://app.test:99999999/ HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    ] {
        let mut stream = TcpStream::connect(s.http).await.expect("connect");
        let _ = stream.write_all(junk).await;
        let mut buf = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_millis(500), stream.read_to_end(&mut buf)).await;
    }
    // TLS port: a plaintext request.
    let mut stream = TcpStream::connect(s.https).await.expect("connect");
    let _ = stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(500), stream.read_to_end(&mut buf)).await;

    let (status, _) = http_get(s.http, "app.test", "/").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_refusing_endpoint_is_skipped_for_requests_without_body() {
    let live = start_backend().await;
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr")
        // Dropped here: connecting to it is refused.
    };
    let ing = ingress(
        "default",
        "web",
        "2024-01-01T00:00:00Z",
        json!({"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}),
    );
    let services = vec![service(
        "default",
        "web",
        json!([{"name": "http", "port": 80}]),
    )];
    let mut dead_slice = (*slice(
        "default",
        "web",
        "http",
        i32::from(dead.port()),
        &[("127.0.0.1", true, true, false)],
    ))
    .clone();
    dead_slice.metadata.name = Some("web-dead".into());
    let slices = vec![
        slice(
            "default",
            "web",
            "http",
            i32::from(live.port()),
            &[("127.0.0.1", true, true, false)],
        ),
        Arc::new(dead_slice),
    ];
    let routes = crate::routing::RoutingTable::build(&[&ing], &services, &slices);
    let handle = SnapshotHandle::new(Snapshot {
        routes,
        certs: Default::default(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve(listener, handle, None));
    for i in 0..6 {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let req = Request::builder()
            .uri(format!("/{i}"))
            .header(header::HOST, "x")
            .body(Empty::<Bytes>::new())
            .expect("request");
        let resp = sender.send_request(req).await.expect("response");
        assert_eq!(resp.status(), StatusCode::OK, "request {i}");
    }
}
