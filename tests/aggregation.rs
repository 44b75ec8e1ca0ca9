//! API aggregation end to end, as upstream's sample-apiserver e2e test: an extension API server
//! of the test's own (`wardle.example.com/v1alpha1` with an in-memory `flunders` resource,
//! HTTPS with its own CA, trusting only the front-proxy client certificate named in
//! `kube-system/extension-apiserver-authentication`) runs in the test process on 127.0.0.1; a
//! selector-less Service with a hand-made EndpointSlice points at it, and an APIService with its
//! caBundle registers it. Stock kubectl then lists, creates and discovers flunders through the
//! aggregator; the backend sees the caller's identity; a stopped backend turns the APIService
//! `False (FailedDiscoveryCheck)` and its group 503 while the rest of the API carries on. Bad
//! APIServices are refused with upstream's 422 causes.

mod support;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Cluster, KUBECTL_NEW, KUBECTL_OLD, wait_for};

const GV: &str = "wardle.example.com/v1alpha1";

type RespBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// One request as the backend saw it: X-Remote-User, X-Remote-Group values, method, path.
type Seen = (String, Vec<String>, String, String);

/// What the extension server keeps and saw.
struct State {
    /// (namespace, name) -> Flunder.
    flunders: Mutex<BTreeMap<(String, String), Value>>,
    /// (X-Remote-User, X-Remote-Group values, method, path) of every request.
    seen: Mutex<Vec<Seen>>,
    next_rv: std::sync::atomic::AtomicU64,
    /// Watch events of created flunders.
    events: tokio::sync::broadcast::Sender<Value>,
}

impl Default for State {
    fn default() -> State {
        State {
            flunders: Mutex::default(),
            seen: Mutex::default(),
            next_rv: std::sync::atomic::AtomicU64::new(0),
            events: tokio::sync::broadcast::channel(16).0,
        }
    }
}

/// The extension API server: a tokio runtime of its own, stopped by `stop`.
struct Backend {
    rt: Option<tokio::runtime::Runtime>,
    port: u16,
    ca_pem: String,
    state: Arc<State>,
}

impl Backend {
    /// Serves on 127.0.0.1 with a serving certificate for `wardle-api.wardle.svc` from a CA of
    /// its own, requiring a client certificate from `client_ca_pem` (the requestheader CA).
    fn start(client_ca_pem: &str) -> Backend {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::default();
        ca.distinguished_name.push(DnType::CommonName, "wardle-ca");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let ca_pem = ca_cert.pem();
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).expect("issuer");
        let key = KeyPair::generate().expect("serving key");
        let mut serving = CertificateParams::new(vec!["wardle-api.wardle.svc".to_string()])
            .expect("serving params");
        serving
            .distinguished_name
            .push(DnType::CommonName, "wardle-api.wardle.svc");
        let cert = serving
            .signed_by(&key, &issuer)
            .expect("serving certificate");

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut client_ca_pem.as_bytes()) {
            roots
                .add(c.expect("client CA"))
                .expect("adding the client CA");
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .expect("client verifier");
        let certs = rustls_pemfile::certs(&mut cert.pem().as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("certs");
        let key = rustls_pemfile::private_key(&mut key.serialize_pem().as_bytes())
            .expect("key")
            .expect("a key");
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_client_cert_verifier(verifier)
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
            .expect("binding the backend");
        let port = listener.local_addr().expect("address").port();
        let state = Arc::new(State::default());
        let st = state.clone();
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let state = st.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let cn = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| {
                            let (_, cert) = x509_parser::parse_x509_certificate(c).ok()?;
                            cert.subject()
                                .iter_common_name()
                                .next()?
                                .as_str()
                                .ok()
                                .map(str::to_string)
                        });
                    let svc = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        let cn = cn.clone();
                        async move { Ok::<_, Infallible>(handle(&state, cn.as_deref(), req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Backend {
            rt: Some(rt),
            port,
            ca_pem,
            state,
        }
    }

    /// Stops serving: the listener and every connection go away.
    fn stop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").clone()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn respond(code: u16, body: &Value) -> Response<RespBody> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *resp.status_mut() = StatusCode::from_u16(code).expect("status");
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn status(code: u16, reason: &str, message: &str) -> Response<RespBody> {
    respond(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}),
    )
}

/// The generic API server's default table (NAME, CREATED AT) or a FlunderList.
fn list(items: Vec<Value>, accept: &str) -> Response<RespBody> {
    if accept.contains("as=Table") {
        let rows: Vec<Value> = items
            .iter()
            .map(|f| {
                json!({"cells": [f["metadata"]["name"], f["metadata"]["creationTimestamp"]],
                       "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": f["metadata"]}})
            })
            .collect();
        return respond(
            200,
            &json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "1"},
                "columnDefinitions": [
                    {"name": "Name", "type": "string", "format": "name", "description": "Name of the flunder", "priority": 0},
                    {"name": "Created At", "type": "date", "format": "", "description": "When it was created", "priority": 0}],
                "rows": rows}),
        );
    }
    respond(
        200,
        &json!({"kind": "FlunderList", "apiVersion": GV, "metadata": {"resourceVersion": "1"}, "items": items}),
    )
}

/// The sample-apiserver's flunders: list, get, create; discovery of the group/version.
async fn handle(
    state: &State,
    cn: Option<&str>,
    mut req: Request<hyper::body::Incoming>,
) -> Response<RespBody> {
    // Only the aggregator's front-proxy certificate may assert identities.
    if cn != Some("front-proxy-client") {
        return status(401, "Unauthorized", "Unauthorized");
    }
    let header = |k: &str| {
        req.headers()
            .get_all(k)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let user = header("x-remote-user")
        .into_iter()
        .next()
        .unwrap_or_default();
    let groups = header("x-remote-group");
    let accept = header("accept").join(",");
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let watch = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let upgrade = header("upgrade").first().cloned();
    state
        .seen
        .lock()
        .expect("lock")
        .push((user, groups, method.to_string(), path.clone()));
    // OpenAPI v3 (what `kubectl explain` reads): the index and the group/version's document.
    if path == "/openapi/v3" {
        let url = format!("/openapi/v3/apis/{GV}?hash=0123456789ABCDEF");
        return respond(
            200,
            &json!({"paths": {format!("apis/{GV}"): {"serverRelativeURL": url}}}),
        );
    }
    if path == "/openapi/v2" {
        return respond(200, &openapi_v2());
    }
    if path == format!("/openapi/v3/apis/{GV}") {
        return respond(200, &openapi_v3());
    }
    let Some(rest) = path.strip_prefix(&format!("/apis/{GV}")) else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    match (method, parts.as_slice()) {
        (Method::GET, []) => respond(
            200,
            &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GV, "resources": [
                {"name": "flunders", "singularName": "flunder", "namespaced": true, "kind": "Flunder",
                 "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]},
                {"name": "flunders/status", "singularName": "", "namespaced": true, "kind": "Flunder", "verbs": ["get", "patch", "update"]}]}),
        ),
        (Method::GET, ["flunders"]) => list(
            state
                .flunders
                .lock()
                .expect("lock")
                .values()
                .cloned()
                .collect(),
            &accept,
        ),
        (Method::GET, ["namespaces", ns, "flunders"]) if watch => watch_flunders(state, ns),
        // An upgraded connection (as exec and port-forward are): echoes what it gets.
        (Method::GET, ["namespaces", _, "flunders", _, "echo"])
            if upgrade.as_deref() == Some("echo") =>
        {
            let upgrading = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(io) = upgrading.await {
                    let (mut r, mut w) = tokio::io::split(TokioIo::new(io));
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
            let mut resp = Response::new(Full::new(Bytes::new()).boxed());
            *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            resp.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("Upgrade"),
            );
            resp.headers_mut().insert(
                http::header::UPGRADE,
                http::HeaderValue::from_static("echo"),
            );
            resp
        }
        (Method::GET, ["namespaces", ns, "flunders"]) => {
            let items = state
                .flunders
                .lock()
                .expect("lock")
                .iter()
                .filter(|((n, _), _)| n == ns)
                .map(|(_, f)| f.clone())
                .collect();
            list(items, &accept)
        }
        (Method::GET, ["namespaces", ns, "flunders", name]) => match state
            .flunders
            .lock()
            .expect("lock")
            .get(&(ns.to_string(), name.to_string()))
        {
            Some(f) => respond(200, f),
            None => status(
                404,
                "NotFound",
                &format!("flunders.wardle.example.com \"{name}\" not found"),
            ),
        },
        (Method::POST, ["namespaces", ns, "flunders"]) => {
            let ns = ns.to_string();
            let Ok(body) = req.into_body().collect().await else {
                return status(400, "BadRequest", "reading the body");
            };
            let Ok(mut f) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
                return status(400, "BadRequest", "not JSON");
            };
            let name = f["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let rv = state
                .next_rv
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                + 1;
            f["metadata"]["namespace"] = json!(ns);
            f["metadata"]["uid"] = json!(format!("00000000-0000-0000-0000-{rv:012}"));
            f["metadata"]["resourceVersion"] = json!(rv.to_string());
            f["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
            let mut all = state.flunders.lock().expect("lock");
            if all.contains_key(&(ns.clone(), name.clone())) {
                return status(
                    409,
                    "AlreadyExists",
                    &format!("flunders.wardle.example.com \"{name}\" already exists"),
                );
            }
            all.insert((ns, name), f.clone());
            let _ = state.events.send(f.clone());
            respond(201, &f)
        }
        _ => status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
    }
}

/// A watch of a namespace's flunders: ADDED for those there, then for each one created, one
/// JSON line each, the response never ending.
fn watch_flunders(state: &State, ns: &str) -> Response<RespBody> {
    use futures::StreamExt;
    let events = state.events.subscribe();
    let line = |f: &Value| {
        Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(format!(
            "{}\n",
            json!({"type": "ADDED", "object": f})
        ))))
    };
    let existing: Vec<_> = state
        .flunders
        .lock()
        .expect("lock")
        .iter()
        .filter(|((n, _), _)| n == ns)
        .map(|(_, f)| line(f))
        .collect();
    let ns = ns.to_string();
    let live = futures::stream::unfold(events, move |mut events| {
        let ns = ns.clone();
        async move {
            loop {
                match events.recv().await {
                    Ok(f) if f["metadata"]["namespace"] == ns.as_str() => {
                        return Some((line(&f), events));
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return None,
                }
            }
        }
    });
    let body = http_body_util::StreamBody::new(futures::stream::iter(existing).chain(live));
    let mut resp = Response::new(BodyExt::boxed(body));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// An upgrade request through the aggregator, as a client with the admin's certificate makes
/// it (kubectl's exec and port-forward do the same): the backend's 101 comes back and the
/// connection then carries bytes both ways.
fn echo_through_an_upgrade(c: &Cluster) -> String {
    use base64::Engine;
    use std::io::{Read, Write};
    let kc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&c.kubeconfig).expect("kubeconfig"))
            .expect("YAML");
    let data = |v: &serde_yaml::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("data"))
            .expect("base64")
    };
    let ca = data(&kc["clusters"][0]["cluster"]["certificate-authority-data"]);
    let cert = data(&kc["users"][0]["user"]["client-certificate-data"]);
    let key = data(&kc["users"][0]["user"]["client-key-data"]);
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(c.expect("CA")).expect("adding the CA");
    }
    let certs = rustls_pemfile::certs(&mut cert.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .expect("cert");
    let key = rustls_pemfile::private_key(&mut key.as_slice())
        .expect("key")
        .expect("a key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .expect("client config");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).expect("TLS client");
    let tcp = std::net::TcpStream::connect(("127.0.0.1", c.port)).expect("connecting");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let path = format!("/apis/{GV}/namespaces/default/flunders/my-flunder/echo");
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
    )
    .expect("request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).expect("reading the answer");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tls.write_all(b"ping through the aggregator\n")
        .expect("writing");
    let mut echoed = vec![0u8; 28];
    tls.read_exact(&mut echoed).expect("reading the echo");
    String::from_utf8_lossy(&echoed).into_owned()
}

/// The sample-apiserver's OpenAPI v2 document (trimmed): its paths, the Flunder, and a
/// definition the API server has already (which stays the server's).
fn openapi_v2() -> Value {
    json!({"swagger": "2.0", "info": {"title": "Wardle", "version": "v1alpha1"},
        "paths": {
            format!("/apis/{GV}/namespaces/{{namespace}}/flunders"): {"get": {
                "operationId": "listWardleV1alpha1NamespacedFlunder",
                "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/com.example.wardle.v1alpha1.FlunderList"}}},
                "x-kubernetes-action": "list",
                "x-kubernetes-group-version-kind": {"group": "wardle.example.com", "kind": "Flunder", "version": "v1alpha1"}}},
            "/version/": {"get": {"operationId": "getCodeVersion", "responses": {"200": {"description": "OK"}}}}},
        "definitions": {
            "com.example.wardle.v1alpha1.Flunder": {
                "description": "A flunder of the sample API server.", "type": "object",
                "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                    "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
                    "spec": {"type": "object", "properties": {"reference": {"type": "string", "description": "The name of a fischer this flunder refers to."}}}},
                "x-kubernetes-group-version-kind": [{"group": "wardle.example.com", "kind": "Flunder", "version": "v1alpha1"}]},
            "com.example.wardle.v1alpha1.FlunderList": {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/definitions/com.example.wardle.v1alpha1.Flunder"}}}},
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"description": "the backend's copy", "type": "object"}}})
}

/// The Flunder's schema, as the sample-apiserver publishes it (trimmed).
fn openapi_v3() -> Value {
    let gvk = json!({"group": "wardle.example.com", "kind": "Flunder", "version": "v1alpha1"});
    let flunder = json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/com.example.wardle.v1alpha1.Flunder"}}}});
    json!({"openapi": "3.0.0", "info": {"title": "Wardle", "version": "v1alpha1"},
        "paths": {format!("/apis/{GV}/namespaces/{{namespace}}/flunders/{{name}}"): {"get": {
            "operationId": "readWardleV1alpha1NamespacedFlunder", "x-kubernetes-action": "get",
            "x-kubernetes-group-version-kind": gvk, "responses": {"200": flunder}}}},
        "components": {"schemas": {"com.example.wardle.v1alpha1.Flunder": {
            "type": "object",
            "description": "A flunder of the sample API server.",
            "properties": {
                "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
                "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
                "metadata": {"type": "object", "description": "Standard object's metadata."},
                "spec": {"type": "object", "description": "What the flunder is.",
                         "properties": {"reference": {"type": "string", "description": "The name of a fischer this flunder refers to."}}}},
            "x-kubernetes-group-version-kind": [{"group": "wardle.example.com", "kind": "Flunder", "version": "v1alpha1"}]}}}})
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The Service, its hand-made EndpointSlice (no pods: the backend is this process) and the
/// APIService.
fn manifest(port: u16, ca_pem: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: wardle
---
apiVersion: v1
kind: Service
metadata:
  name: wardle-api
  namespace: wardle
spec:
  ports:
  - name: https
    port: 443
    targetPort: {port}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: wardle-api-1
  namespace: wardle
  labels:
    kubernetes.io/service-name: wardle-api
addressType: IPv4
endpoints:
- addresses: ["127.0.0.1"]
  conditions:
    ready: true
ports:
- name: https
  port: {port}
  protocol: TCP
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1alpha1.wardle.example.com
spec:
  group: wardle.example.com
  version: v1alpha1
  groupPriorityMinimum: 1000
  versionPriority: 15
  caBundle: {}
  service:
    namespace: wardle
    name: wardle-api
"#,
        b64(ca_pem)
    )
}

/// `status reason` of an APIService's Available condition.
fn availability(c: &Cluster, name: &str) -> String {
    let out = c.kubectl(&["get", "apiservice", name, "-o", r#"jsonpath={.status.conditions[?(@.type=="Available")].status} {.status.conditions[?(@.type=="Available")].reason}"#]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The `kubectl get apiservices` line of `name`, its columns split.
fn apiservice_row(c: &Cluster, name: &str) -> Vec<String> {
    let out = c.ok(&["get", "apiservices", name]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "SERVICE", "AVAILABLE", "AGE"], "{out}");
    // AVAILABLE may hold a space ("False (Reason)"): split on runs of two or more spaces.
    let line = lines.next().unwrap_or_default();
    line.split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn extension_api_server_through_the_aggregator() {
    // RBAC on, so that the API server's authorization is seen to apply before the proxy.
    let c = Cluster::start_with("aggregation", &["--authorization-mode=Node,RBAC"]);
    // The front-proxy trust an extension server reads (as the sample-apiserver does).
    let auth = c.json(&[
        "get",
        "configmap",
        "-n",
        "kube-system",
        "extension-apiserver-authentication",
    ]);
    assert_eq!(
        auth["data"]["requestheader-allowed-names"],
        "[\"front-proxy-client\"]"
    );
    assert_eq!(
        auth["data"]["requestheader-username-headers"],
        "[\"X-Remote-User\"]"
    );
    let client_ca = auth["data"]["requestheader-client-ca-file"]
        .as_str()
        .expect("requestheader CA")
        .to_string();
    // An extension server's service account reads it through upstream's bootstrap Role.
    c.ok(&[
        "create",
        "rolebinding",
        "wardle-auth-reader",
        "-n",
        "kube-system",
        "--role=extension-apiserver-authentication-reader",
        "--serviceaccount=wardle:apiserver",
    ]);
    let can_i = |what: &str| {
        let out = c.kubectl(&[
            "auth",
            "can-i",
            "get",
            what,
            "-n",
            "kube-system",
            "--as=system:serviceaccount:wardle:apiserver",
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(can_i("configmap/extension-apiserver-authentication"), "yes");
    assert_eq!(can_i("configmap/kube-proxy"), "no");
    let mut backend = Backend::start(&client_ca);
    c.apply(KUBECTL_NEW, &manifest(backend.port, &backend.ca_pem));
    wait_for(
        "the APIService to become available",
        Duration::from_secs(60),
        || (availability(&c, "v1alpha1.wardle.example.com") == "True Passed").then_some(()),
    );

    // kubectl get apiservices: local ones for the built-in groups, the new one by its Service.
    assert_eq!(
        apiservice_row(&c, "v1.apps")[..3],
        ["v1.apps", "Local", "True"]
    );
    assert_eq!(apiservice_row(&c, "v1.")[..3], ["v1.", "Local", "True"]);
    assert_eq!(
        apiservice_row(&c, "v1alpha1.wardle.example.com")[..3],
        ["v1alpha1.wardle.example.com", "wardle/wardle-api", "True"]
    );
    let local = c.json(&["get", "apiservice", "v2.autoscaling"]);
    assert_eq!(
        local["spec"],
        json!({"group": "autoscaling", "version": "v2", "groupPriorityMinimum": 17500, "versionPriority": 30})
    );
    assert_eq!(
        local["status"]["conditions"][0]["message"],
        "Local APIServices are always available"
    );

    // Discovery: the group in /apis (legacy and aggregated, which kubectl uses), its own
    // resource list proxied from the backend.
    let resources: Value =
        serde_json::from_str(&c.ok(&["get", "--raw", "/apis/wardle.example.com/v1alpha1"]))
            .expect("JSON");
    assert_eq!(resources["groupVersion"], GV);
    assert_eq!(resources["resources"][0]["name"], "flunders");
    let groups: Value = serde_json::from_str(&c.ok(&["get", "--raw", "/apis"])).expect("JSON");
    let wardle = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["name"] == "wardle.example.com")
        .cloned()
        .expect("wardle in /apis");
    assert_eq!(wardle["preferredVersion"]["groupVersion"], GV);
    let group: Value =
        serde_json::from_str(&c.ok(&["get", "--raw", "/apis/wardle.example.com"])).expect("JSON");
    assert_eq!(
        (
            group["kind"].as_str(),
            group["versions"][0]["version"].as_str()
        ),
        (Some("APIGroup"), Some("v1alpha1"))
    );
    let api_resources = c.ok(&["api-resources", "--api-group", "wardle.example.com"]);
    let line = api_resources
        .lines()
        .find(|l| l.starts_with("flunders"))
        .unwrap_or_else(|| panic!("flunders in api-resources:\n{api_resources}"));
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>(),
        ["flunders", GV, "true", "Flunder"]
    );

    // The backend's OpenAPI v3 document through the aggregator: kubectl explain.
    let explain = c.ok(&["explain", "flunders"]);
    assert!(
        explain
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["KIND:", "Flunder"]),
        "{explain}"
    );
    assert!(
        explain.contains("A flunder of the sample API server."),
        "{explain}"
    );
    let explain = c.ok(&["explain", "flunders.spec.reference"]);
    assert!(
        explain.contains("The name of a fischer this flunder refers to."),
        "{explain}"
    );

    // OpenAPI v2: the backend's paths and definitions merged into the server's document.
    let v2: Value = serde_json::from_str(&c.ok(&["get", "--raw", "/openapi/v2"])).expect("JSON");
    assert_eq!(
        v2["definitions"]["com.example.wardle.v1alpha1.Flunder"]["description"],
        "A flunder of the sample API server."
    );
    assert!(v2["paths"][format!("/apis/{GV}/namespaces/{{namespace}}/flunders")].is_object());
    assert!(v2["paths"]["/api/v1/namespaces/{namespace}/pods"].is_object());
    assert!(
        v2["paths"]["/version/"].is_null(),
        "only the backend's group/version paths"
    );
    assert_ne!(
        v2["definitions"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["description"],
        "the backend's copy"
    );
    // kubectl's OpenAPI v2 explain reads the protobuf form.
    let explain = c.ok_with(
        KUBECTL_OLD,
        &["explain", "flunders.spec", "--output=plaintext-openapiv2"],
        None,
    );
    assert!(
        explain.contains("The name of a fischer this flunder refers to."),
        "{explain}"
    );

    // Flunders through the aggregator with stock kubectl.
    let created = c.ok_with(KUBECTL_NEW, &["create", "-f", "-"], Some("apiVersion: wardle.example.com/v1alpha1\nkind: Flunder\nmetadata:\n  name: my-flunder\n  namespace: default\n"));
    assert_eq!(
        created.trim(),
        "flunder.wardle.example.com/my-flunder created"
    );
    let table = c.ok(&["get", "flunders"]);
    assert_eq!(
        table
            .lines()
            .next()
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["NAME", "CREATED", "AT"]),
        "{table}"
    );
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("my-flunder ")),
        "{table}"
    );
    // kubectl 1.27 reads the aggregated discovery as apidiscovery.k8s.io/v2beta1.
    let old = c.ok_with(KUBECTL_OLD, &["get", "flunders", "-o", "name"], None);
    assert_eq!(old.trim(), "flunder.wardle.example.com/my-flunder");
    let one = c.json(&["get", "flunder", "my-flunder"]);
    assert_eq!(
        (one["kind"].as_str(), one["metadata"]["namespace"].as_str()),
        (Some("Flunder"), Some("default"))
    );
    let missing = c.fails(&["get", "flunder", "nope"]);
    assert!(
        missing.contains(r#"flunders.wardle.example.com "nope" not found"#),
        "{missing}"
    );

    // The backend sees who asks, as front-proxy headers: the admin, and an impersonated user
    // that RBAC allows to list flunders.
    let seen = backend.seen();
    let admin = seen
        .iter()
        .find(|(_, _, m, p)| {
            m == "POST" && p == "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders"
        })
        .expect("the create reached the backend");
    assert_eq!(admin.0, "system:admin");
    assert!(admin.1.contains(&"system:masters".to_string()), "{admin:?}");
    c.ok(&[
        "create",
        "clusterrole",
        "flunder-reader",
        "--verb=get,list",
        "--resource=flunders.wardle.example.com",
    ]);
    c.ok(&[
        "create",
        "clusterrolebinding",
        "alice-flunders",
        "--clusterrole=flunder-reader",
        "--user=alice",
    ]);
    let as_alice = c.ok(&[
        "get",
        "flunders",
        "--as=alice",
        "--as-group=wardlers",
        "-o",
        "name",
    ]);
    assert_eq!(as_alice.trim(), "flunder.wardle.example.com/my-flunder");
    let seen = backend.seen();
    let alice = seen
        .iter()
        .rev()
        .find(|(u, ..)| u == "alice")
        .expect("alice's request reached the backend");
    assert_eq!(alice.1, ["wardlers", "system:authenticated"], "{alice:?}");
    // RBAC of the API server still applies before the proxy.
    let denied = c.fails(&["delete", "flunder", "my-flunder", "--as=alice"]);
    assert!(
        denied.contains("Error from server (Forbidden)"),
        "{denied}; the backend saw {:?}",
        &backend.seen()[seen.len()..]
    );

    // Streaming both ways: a watch's events arrive as they happen; an upgraded connection.
    let mut watch = std::process::Command::new(KUBECTL_NEW)
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(["get", "flunders", "--watch", "-o", "name"])
        .env("HOME", c.data_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl get --watch");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)).ok().as_deref(),
        Some("flunder.wardle.example.com/my-flunder")
    );
    c.ok_with(
        KUBECTL_NEW,
        &["create", "-f", "-"],
        Some("apiVersion: wardle.example.com/v1alpha1\nkind: Flunder\nmetadata:\n  name: second\n"),
    );
    wait_for(
        "the watch to show the new flunder",
        Duration::from_secs(20),
        || {
            rx.try_recv()
                .ok()
                .filter(|l| l == "flunder.wardle.example.com/second")
                .map(|_| ())
        },
    );
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(echo_through_an_upgrade(&c), "ping through the aggregator\n");

    // A caBundle that does not match the backend: still available (upstream's check does not
    // verify), but the proxy refuses to talk to it.
    let wrong_ca = format!(r#"{{"spec":{{"caBundle":"{}"}}}}"#, b64(&client_ca));
    c.ok(&[
        "patch",
        "apiservice",
        "v1alpha1.wardle.example.com",
        "--type=merge",
        "-p",
        &wrong_ca,
    ]);
    let raw = "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders";
    wait_for(
        "the proxy to refuse the backend's certificate",
        Duration::from_secs(30),
        || {
            let out = c.kubectl(&["get", "--raw", raw]);
            String::from_utf8_lossy(&out.stderr)
                .contains("ServiceUnavailable")
                .then_some(())
        },
    );
    assert_eq!(
        availability(&c, "v1alpha1.wardle.example.com"),
        "True Passed"
    );

    // The backend goes away: only its group fails.
    backend.stop();
    wait_for(
        "the APIService to become unavailable",
        Duration::from_secs(60),
        || {
            (availability(&c, "v1alpha1.wardle.example.com") == "False FailedDiscoveryCheck")
                .then_some(())
        },
    );
    let svc = c.json(&["get", "apiservice", "v1alpha1.wardle.example.com"]);
    let message = svc["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let url = format!(
        "https://127.0.0.1:{}/apis/wardle.example.com/v1alpha1",
        backend.port
    );
    assert!(
        message.starts_with(&format!("failing or missing response from {url}: "))
            && message.ends_with("connect: connection refused"),
        "{message}"
    );
    assert_eq!(
        apiservice_row(&c, "v1alpha1.wardle.example.com")[1..3],
        ["wardle/wardle-api", "False (FailedDiscoveryCheck)"]
    );
    let unavailable = c.fails(&[
        "get",
        "--raw",
        "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders",
    ]);
    assert!(
        unavailable.contains("ServiceUnavailable")
            || unavailable.contains("unable to handle the request"),
        "{unavailable}"
    );
    let metrics = c.ok(&["get", "--raw", "/metrics"]);
    assert!(
        metrics
            .lines()
            .any(|l| l
                == r#"aggregator_unavailable_apiservice{name="v1alpha1.wardle.example.com"} 1"#),
        "{metrics}"
    );
    c.ok(&["get", "pods", "-A"]);
    c.ok(&["get", "apiservices"]);
    c.ok(&["api-resources", "--api-group", "apps"]);
}

#[test]
fn bad_apiservices_are_refused_and_reported() {
    let c = Cluster::start("aggregation-bad");
    let create = |yaml: &str| {
        let out = c.kubectl_with(KUBECTL_NEW, &["create", "-f", "-"], Some(yaml));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = create(
        "apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata:\n  name: v1.wardle.example.com\nspec:\n  group: wardle.example.com\n  version: v1alpha1\n  caBundle: QUJD\n  insecureSkipTLSVerify: true\n  service:\n    namespace: wardle\n    name: api\n",
    );
    assert!(!ok);
    for want in [
        r#"The APIService "v1.wardle.example.com" is invalid"#,
        r#"metadata.name: Invalid value: "v1.wardle.example.com": must be `spec.version+"."+spec.group`: "v1alpha1.wardle.example.com""#,
        "spec.groupPriorityMinimum: Invalid value: 0: must be positive and less than 20000",
        "spec.versionPriority: Invalid value: 0: must be positive and less than 1000",
        "spec.insecureSkipTLSVerify: Invalid value: true: may not be true if caBundle is present",
    ] {
        assert!(err.contains(want), "missing {want:?} in {err}");
    }
    let (ok, err) = create(
        "apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata:\n  name: v1.\nspec:\n  version: v1\n  groupPriorityMinimum: 1\n  versionPriority: 1\n  insecureSkipTLSVerify: true\n",
    );
    assert!(!ok && err.contains("spec.insecureSkipTLSVerify: Invalid value: true: local APIServices may not have insecureSkipTLSVerify"), "{err}");

    // Valid APIServices whose backends cannot work: the reason says why, other groups carry on.
    let svc = |name: &str, service: &str| {
        format!(
            "apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata:\n  name: v1.{name}.example.com\nspec:\n  group: {name}.example.com\n  version: v1\n  groupPriorityMinimum: 100\n  versionPriority: 10\n  insecureSkipTLSVerify: true\n  service:\n    namespace: default\n    name: {service}\n"
        )
    };
    c.ok_with(
        KUBECTL_NEW,
        &["create", "-f", "-"],
        Some(&svc("nosvc", "missing")),
    );
    c.ok_with(KUBECTL_NEW, &["create", "-f", "-"], Some("apiVersion: v1\nkind: Service\nmetadata:\n  name: empty\nspec:\n  ports:\n  - port: 443\n"));
    c.ok_with(
        KUBECTL_NEW,
        &["create", "-f", "-"],
        Some(&svc("noeps", "empty")),
    );
    wait_for("ServiceNotFound", Duration::from_secs(30), || {
        (availability(&c, "v1.nosvc.example.com") == "False ServiceNotFound").then_some(())
    });
    wait_for("EndpointsNotFound", Duration::from_secs(30), || {
        (availability(&c, "v1.noeps.example.com") == "False EndpointsNotFound").then_some(())
    });
    let nosvc = c.json(&["get", "apiservice", "v1.nosvc.example.com"]);
    assert_eq!(
        nosvc["status"]["conditions"][0]["message"],
        r#"service/missing in "default" is not present"#
    );
    assert_eq!(nosvc["spec"]["service"]["port"], 443);
    let unavailable = c.fails(&["get", "--raw", "/apis/nosvc.example.com/v1"]);
    assert!(
        unavailable.contains("ServiceUnavailable")
            || unavailable.contains("unable to handle the request"),
        "{unavailable}"
    );
    c.ok(&["get", "pods", "-A"]);
    c.ok(&["get", "deployments", "-A"]);

    // A deleted APIService's group leaves discovery and its paths are the server's own again.
    let in_apis = |group: &str| {
        c.ok(&["get", "--raw", "/apis"])
            .contains(&format!("\"name\":\"{group}\""))
    };
    assert!(in_apis("nosvc.example.com"));
    c.ok(&["delete", "apiservice", "v1.nosvc.example.com"]);
    wait_for("the group to leave /apis", Duration::from_secs(30), || {
        (!in_apis("nosvc.example.com")).then_some(())
    });
    let gone = c.fails(&["get", "--raw", "/apis/nosvc.example.com/v1"]);
    assert!(gone.contains("NotFound"), "{gone}");
}
