//! HTTPS: TLS with optional client certificates (x509 identities), HTTP/1.1 and HTTP/2, and the
//! top-level routing of a request to health, version, discovery, OpenAPI or the REST handler.

use crate::request::{Route, parse_accept, query_params, route};
use crate::rest::{self, Call, Output, Reply};
use crate::{ApiServer, discovery};
use anyhow::{Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use kaji_api::ApiError;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub type Body = BoxBody<Bytes, Infallible>;

/// Largest request body accepted (upstream's limit is 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

pub use crate::auth::User;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub fn tls_acceptor(server: &ApiServer) -> Result<TlsAcceptor> {
    let provider = Arc::new(serving_provider());
    let pki = &server.pki;
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut pki.serving_cert_pem.as_bytes()).collect::<std::result::Result<_, _>>()?;
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut pki.serving_key_pem.as_bytes())?.context("no serving key")?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut pki.ca_cert_pem.as_bytes()) {
        roots.add(ca?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // The server's order decides, as Go's crypto/tls does for kube-apiserver (rustls' clients and
    // curl list AES-256 first).
    cfg.ignore_client_order = true;
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// ring's suites with TLS 1.3's AES-128-GCM first, as Go's crypto/tls (and so kube-apiserver)
/// prefers on machines with AES instructions: four rounds fewer than AES-256 a block, the
/// encryption of a LIST of 1,000 ConfigMaps took about a quarter less of the server's CPU.
fn serving_provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    let first = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
    provider.cipher_suites.retain(|s| s.suite() != first.suite());
    provider.cipher_suites.insert(0, first);
    provider
}

/// The TLS client configuration towards kubelets: their serving certificates must be signed by
/// the cluster CA (`Pki::issue_kubelet_serving`) for the node's address, and the API server shows
/// its `kube-apiserver-kubelet-client` certificate (upstream's `--kubelet-certificate-authority`
/// and `--kubelet-client-certificate`).
pub fn kubelet_client_config(pki: &crate::pki::Pki) -> Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut pki.ca_cert_pem.as_bytes()) {
        roots.add(ca?)?;
    }
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut pki.kubelet_client_cert_pem.as_bytes()).collect::<std::result::Result<_, _>>()?;
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut pki.kubelet_client_key_pem.as_bytes())?.context("no kubelet client key")?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Where a node agent gets its kubelet serving certificate (as k3s's `/v1-k3s/serving-kubelet.crt`).
pub const KUBELET_SERVING_CERT_PATH: &str = "/v1-kaji/serving-kubelet.crt";

/// `POST /v1-kaji/serving-kubelet.crt` with `{"nodeName": .., "names": [..]}`: a serving
/// certificate for the node's kubelet, signed by the cluster CA, for node agents (the join token)
/// and admins. Answers `{"cert", "key", "ca"}` in PEM.
async fn kubelet_serving_cert(server: &ApiServer, user: &User, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::POST {
        drain(req.into_body()).await;
        return error_response(&ApiError::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource"));
    }
    if !user.groups.iter().any(|g| g == "system:nodes" || g == "system:masters") {
        drain(req.into_body()).await;
        return error_response(&ApiError::new(403, "Forbidden", format!("user \"{}\" cannot get a kubelet serving certificate", user.name)));
    }
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error_response(&ApiError::bad_request(format!("reading the request: {e}"))),
    };
    let want: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error_response(&ApiError::bad_request(format!("the request is not JSON: {e}"))),
    };
    let node = want["nodeName"].as_str().unwrap_or_default();
    let problems = kaji_api::validation::dns1123_subdomain(node);
    if !problems.is_empty() {
        return error_response(&ApiError::bad_request(format!("nodeName {node:?}: {}", problems.join(", "))));
    }
    let names: Vec<String> = want["names"].as_array().into_iter().flatten().filter_map(|n| n.as_str().map(str::to_string)).collect();
    match server.pki.issue_kubelet_serving(node, &names) {
        Ok((cert, key)) => {
            tracing::info!(node, user = %user.name, "issued a kubelet serving certificate");
            json_response(200, &serde_json::json!({"cert": cert, "key": key, "ca": server.pki.ca_cert_pem}), false, &[])
        }
        Err(e) => error_response(&ApiError::bad_request(format!("{e:#}"))),
    }
}

/// Where a node agent, having joined with the token, gets its client certificate
/// (`system:node:<node>` in `system:nodes`; as k3s's `/v1-k3s/client-kubelet.crt`).
pub const KUBELET_CLIENT_CERT_PATH: &str = "/v1-kaji/client-kubelet.crt";

/// The other identities an agent may ask for: the node's proxy, DNS and ingress (as k3s's
/// `client-kube-proxy.crt`) and the hollow nodes' shared reader (simulation).
pub const KUBE_PROXY: &str = "system:kube-proxy";
pub const HOLLOW_READER: &str = "kaji:hollow-nodes";

/// `POST /v1-kaji/client-kubelet.crt` with `{"nodeName": ..}` (or `{"user": ..}`, one of the two above):
/// a client certificate for the node, for the join token's user, admins, and a node renewing its
/// own. Answers `{"cert", "key", "ca"}` in PEM.
async fn kubelet_client_cert(server: &ApiServer, user: &User, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::POST {
        drain(req.into_body()).await;
        return error_response(&ApiError::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource"));
    }
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error_response(&ApiError::bad_request(format!("reading the request: {e}"))),
    };
    let want: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error_response(&ApiError::bad_request(format!("the request is not JSON: {e}"))),
    };
    let (cn, orgs): (String, &[&str]) = match (want["nodeName"].as_str(), want["user"].as_str()) {
        (Some(node), None) => {
            let problems = kaji_api::validation::dns1123_subdomain(node);
            if !problems.is_empty() {
                return error_response(&ApiError::bad_request(format!("nodeName {node:?}: {}", problems.join(", "))));
            }
            (format!("system:node:{node}"), &["system:nodes"])
        }
        (None, Some(u @ (HOLLOW_READER | KUBE_PROXY))) => (u.to_string(), &[]),
        _ => return error_response(&ApiError::bad_request("give nodeName, or user system:kube-proxy or kaji:hollow-nodes")),
    };
    // The join token authenticates as system:node:kaji-agent (auth::authn); a node with its own
    // certificate may only renew that one.
    let allowed = user.in_group("system:masters") || (user.in_group("system:nodes") && (user.name == "system:node:kaji-agent" || user.name == cn));
    if !allowed {
        return error_response(&ApiError::new(403, "Forbidden", format!("user \"{}\" cannot get a client certificate for \"{cn}\"", user.name)));
    }
    match server.pki.issue_client(&cn, orgs) {
        Ok((cert, key)) => {
            tracing::info!(user = %user.name, client = %cn, "issued a client certificate");
            json_response(200, &serde_json::json!({"cert": cert, "key": key, "ca": server.pki.ca_cert_pem}), false, &[])
        }
        Err(e) => error_response(&ApiError::bad_request(format!("{e:#}"))),
    }
}

/// How long an HTTP/1 connection may wait for its next request's headers (upstream's
/// IdleTimeout is 90 s and its ReadHeaderTimeout 32 s; hyper has one timer for both).
const HTTP1_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

/// Accepts connections until the listener fails.
pub async fn serve(server: Arc<ApiServer>, listener: TcpListener) -> Result<()> {
    let acceptor = tls_acceptor(&server)?;
    loop {
        let (tcp, peer) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let server = server.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let user = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| crate::auth::authn::user_from_cert(c));
            let svc = hyper::service::service_fn(move |req| {
                let server = server.clone();
                let user = user.clone();
                // Boxed: hyper keeps a connection's in-flight future in a box sized for it
                // (about 90 KiB for `handle`) for the connection's whole life, idle or not.
                async move { Ok::<_, Infallible>(Box::pin(handle(server, user, peer, req)).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // Idle keep-alive connections are closed, as upstream's http.Server IdleTimeout:
            // kube-rs clients never drop idle pooled connections, so those a burst opened
            // would otherwise stay with their buffers (tens of MiB after a pod burst).
            builder.http1().timer(TokioTimer::new()).header_read_timeout(HTTP1_IDLE_TIMEOUT);
            if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc).await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}

fn json_response(code: u16, body: &Value, yaml: bool, warnings: &[String]) -> Response<Body> {
    let (bytes, ct) = if yaml {
        (serde_yaml::to_string(body).unwrap_or_default().into_bytes(), "application/yaml")
    } else {
        (serde_json::to_vec(body).unwrap_or_default(), "application/json")
    };
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - {w:?}")) {
            resp.headers_mut().append("warning", v);
        }
    }
    resp
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status(), false, &[])
}

fn text(code: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = code;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// Paths served before authorization: `/cacerts` (an agent fetches the CA before it can trust
/// the server, as k3s's) and the kubelet serving certificate, which checks its caller itself.
fn skips_authorization(path: &str) -> bool {
    path == "/cacerts" || path == KUBELET_SERVING_CERT_PATH || path == KUBELET_CLIENT_CERT_PATH
}

/// Reads and drops a request body that will not be used, so that an HTTP/2 client gets the
/// answer rather than a reset stream for a request it is still sending.
async fn drain(body: Incoming) {
    let _ = Limited::new(body, MAX_BODY).collect().await;
}

async fn handle(server: Arc<ApiServer>, cert_user: Option<User>, peer: std::net::SocketAddr, mut req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let received = std::time::SystemTime::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let path = uri.path().to_string();
    let audit_id = crate::auth::audit::request_id(req.headers());
    let user_agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    // A spoke's pages (the dashboard's login page and files) need no credentials.
    if let Some(extra) = server.extra.as_ref().filter(|e| e.serves(&path)) {
        let (parts, body) = req.into_parts();
        if let Some(resp) = (extra.handle)(&parts) {
            drain(body).await;
            let resp = resp.await;
            server.metrics.observe(&method, &path, resp.status().as_u16(), started.elapsed());
            return resp;
        }
        req = Request::from_parts(parts, body);
    }
    // A joining server authenticates with the server token itself (bootstrap::server_bootstrap).
    if path == crate::bootstrap::SERVER_BOOTSTRAP_PATH {
        let (parts, body) = req.into_parts();
        drain(body).await;
        let resp = crate::bootstrap::server_bootstrap(&server, &parts.headers).await;
        server.metrics.observe(&method, &path, resp.status().as_u16(), started.elapsed());
        return resp;
    }
    // Authentication, impersonation and authorization, in upstream's filter order.
    let user = match crate::auth::authn::authenticate(&server, cert_user, req.headers()).await {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(ApiError::unauthorized()),
        Err(e) => Err(e),
    };
    let requestor = user.as_ref().ok().cloned();
    crate::auth::authn::remove_websocket_token(req.headers_mut());
    let user = match user {
        Ok(user) => crate::auth::impersonation::impersonate(&server, user, req.headers_mut()).await,
        Err(e) => Err(e),
    };
    let audit = |attributes: &crate::auth::authz::Attributes, user: &User, code: u16, decision: Option<(bool, &str)>, error: Option<&ApiError>, resp: Response<Body>| {
        let impersonated = (attributes.user != *user).then_some(&attributes.user);
        let r = crate::auth::audit::Record { attributes, user, impersonated, method: &method, uri: &uri, source_ip: peer.ip(), user_agent: &user_agent, code, received, audit_id: &audit_id, decision, error };
        server.auth.audit.finish(&r, resp)
    };
    let user = match user {
        Ok(user) => user,
        Err(e) => {
            drain(req.into_body()).await;
            let resp = error_response(&e);
            server.metrics.observe(&method, &path, resp.status().as_u16(), started.elapsed());
            // Failed impersonation is audited as the authenticated user (upstream's audit filter
            // runs before impersonation); a failed authentication as nobody.
            let who = requestor.unwrap_or_default();
            let attributes = crate::auth::authz::attributes(&who, &method, &path, uri.query());
            return audit(&attributes, &who, resp.status().as_u16(), None, Some(&e), resp);
        }
    };
    let requestor = requestor.unwrap_or_else(|| user.clone());
    let attributes = crate::auth::authz::attributes(&user, &method, &path, uri.query());
    if !skips_authorization(&path) {
        server.auth.node.catch_up(&server, &attributes).await;
    }
    let mut decision = None;
    let allowed = skips_authorization(&path) || {
        let (d, reason) = crate::auth::authz::authorize(&server.auth, &attributes);
        if d != crate::auth::authz::Decision::Allow {
            tracing::debug!(user = %user.name, verb = %attributes.verb, %path, %reason, "forbidden");
            drain(req.into_body()).await;
            let e = crate::auth::authz::forbidden(&attributes, &reason);
            let resp = error_response(&e);
            server.metrics.observe(&method, &path, resp.status().as_u16(), started.elapsed());
            return audit(&attributes, &requestor, resp.status().as_u16(), Some((false, &reason)), Some(&e), resp);
        }
        decision = Some(reason);
        true
    };
    debug_assert!(allowed);
    let resp = if path == KUBELET_SERVING_CERT_PATH {
        kubelet_serving_cert(&server, &user, req).await
    } else if path == KUBELET_CLIENT_CERT_PATH {
        kubelet_client_cert(&server, &user, req).await
    } else {
        crate::registry::certificates::with_user(Some(user.clone()), crate::registry::rbac::with_requester(server.clone(), user.clone(), crate::admission::webhook::in_request(server.clone(), user.clone(), route_request(&server, req)))).await
    };
    server.metrics.observe(&method, &path, resp.status().as_u16(), started.elapsed());
    let code = resp.status().as_u16();
    tracing::debug!(%method, %path, status = code, user = %user.name, elapsed_ms = started.elapsed().as_millis() as u64, "request");
    audit(&attributes, &requestor, code, decision.as_deref().map(|r| (true, r)), None, resp)
}

async fn route_request(server: &Arc<ApiServer>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    // Group/versions of non-local APIServices (and their OpenAPI) go to their extension servers.
    let req = match crate::aggregator::intercept(server, req).await {
        Ok(resp) => return resp,
        Err(req) => req,
    };
    match path.as_str() {
        "/healthz" | "/livez" | "/readyz" => return text(StatusCode::OK, "ok"),
        p if p.starts_with("/healthz/") || p.starts_with("/livez/") || p.starts_with("/readyz/") => return text(StatusCode::OK, "ok"),
        // client-go asks for /version, the Python client for /version/ (both served upstream).
        "/version" | "/version/" => return json_response(200, &crate::version_info(), false, &[]),
        // The cluster CA, for agents that join with a token (they check it against the token's hash).
        "/cacerts" => return text(StatusCode::OK, server.pki.ca_cert_pem.clone()),
        "/metrics" => {
            let mut resp = Response::new(full(server.metrics.render() + &server.aggregator.render_metrics()));
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            return resp;
        }
        // Service-account issuer discovery (upstream's openidmetadata.go).
        "/.well-known/openid-configuration" | "/openid/v1/jwks" => {
            let tokens = &server.auth.service_accounts;
            let (body, ct) = if path == "/openid/v1/jwks" {
                (tokens.jwks(), "application/jwk-set+json")
            } else {
                (tokens.openid_configuration(&server.advertise), "application/json")
            };
            let mut resp = json_response(200, &body, false, &[]);
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
            return resp;
        }
        "/openapi/v2" => return openapi_v2(server, &accept).await,
        "/openapi/v3" => {
            let mut index = server.openapi_v3_index().clone();
            crate::apiextensions::openapi::merge_v3_index(server, &mut index).await;
            crate::aggregator::discovery::merge_openapi_v3_index(&server.aggregator, &mut index);
            return json_response(200, &index, false, &[]);
        }
        p if p.starts_with("/openapi/v3/") => {
            let doc_path = p.trim_start_matches("/openapi/v3/");
            return match crate::apiextensions::openapi::v3_document(server, doc_path).await {
                Some(doc) => json_response(200, &doc, false, &[]),
                None => error_response(&ApiError::no_route(p)),
            };
        }
        _ => {}
    }
    let r = route(&path);
    let aggregated = aggregated_version(&accept);
    let agg = &server.aggregator;
    match r {
        Route::CoreVersions => match aggregated {
            Some(v) => discovery_response(&discovery::aggregated(&server.registry, true, &v), &v),
            None => json_response(200, &discovery::core_versions(&server.advertise), false, &[]),
        },
        Route::Groups => match aggregated {
            Some(v) => {
                let mut doc = discovery::aggregated(&server.registry, false, &v);
                crate::aggregator::discovery::merge_aggregated(agg, &mut doc);
                discovery_response(&doc, &v)
            }
            None => {
                let mut list = discovery::group_list(&server.registry);
                crate::aggregator::discovery::merge_group_list(agg, &mut list);
                json_response(200, &list, false, &[])
            }
        },
        Route::Group(g) => match discovery::group(&server.registry, &g) {
            Some(v) => json_response(200, &v, false, &[]),
            None => error_response(&ApiError::no_route(&path)),
        },
        Route::GroupVersion(g, v) => match discovery::resource_list(&server.registry, &g, &v) {
            Some(v) => json_response(200, &v, false, &[]),
            None => error_response(&ApiError::no_route(&path)),
        },
        Route::Resource(rr) => {
            let deprecated = server.registry.get(&rr.group, &rr.version, &rr.plural).and_then(|s| s.deprecation_warning());
            let mut resp = resource(server, req, rr, &accept).await;
            if let Some(w) = deprecated
                && let Ok(v) = HeaderValue::from_str(&format!("299 - {w:?}"))
            {
                resp.headers_mut().append("warning", v);
            }
            resp
        }
        Route::Other => error_response(&ApiError::no_route(&path)),
    }
}

/// `Some("apidiscovery.k8s.io/v2")` when the client asks for aggregated discovery.
fn aggregated_version(accept: &str) -> Option<String> {
    for m in parse_accept(accept) {
        if m.params.get("as").map(String::as_str) == Some("APIGroupDiscoveryList")
            && m.params.get("g").map(String::as_str) == Some("apidiscovery.k8s.io")
        {
            if let Some(v) = m.params.get("v").filter(|v| *v == "v2" || *v == "v2beta1") {
                return Some(format!("apidiscovery.k8s.io/{v}"));
            }
        } else if m.essence == "application/json" && m.params.is_empty() {
            return None;
        }
    }
    None
}

fn discovery_response(doc: &Value, api_version: &str) -> Response<Body> {
    let mut resp = json_response(200, doc, false, &[]);
    let v = api_version.rsplit('/').next().unwrap_or("v2");
    if let Ok(ct) = HeaderValue::from_str(&format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList")) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp
}

async fn openapi_v2(server: &ApiServer, accept: &str) -> Response<Body> {
    let wants_proto = parse_accept(accept).first().is_some_and(|m| m.essence.contains("protobuf"));
    // The server's own document with the aggregated group/versions' and the custom kinds'.
    let (json, proto) = crate::apiextensions::openapi::v2(server).await;
    if wants_proto {
        let mut resp = Response::new(full(proto));
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/com.github.proto-openapi.spec.v2.v1.0+protobuf"));
        return resp;
    }
    let mut resp = Response::new(full(json));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

async fn resource(server: &Arc<ApiServer>, req: Request<Incoming>, rr: crate::request::ResourceRequest, accept: &str) -> Response<Body> {
    let Some(strategy) = server.registry.get(&rr.group, &rr.version, &rr.plural) else {
        let e = ApiError::no_route(req.uri().path());
        drain(req.into_body()).await;
        return error_response(&e);
    };
    // The proxy subresources stream any method, body and answer to their backend.
    if crate::proxy::subresources::is_proxy(&rr) {
        return crate::proxy::subresources::serve(server, &rr, req).await;
    }
    let params = query_params(req.uri().query());
    let output = match Output::negotiate(accept, params.get("includeObject").map(String::as_str)) {
        Ok(o) => o,
        Err(e) => return error_response(&e),
    };
    let method: Method = req.method().clone();
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let user_agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    // exec, attach and portforward keep the connection: the request itself goes to the proxy.
    if rr.group.is_empty() && rr.plural == "pods" && (matches!(rr.subresource.as_deref(), Some("exec" | "attach" | "portforward")) || (rr.subresource.as_deref() == Some("log") && crate::proxy::log_ws::is_websocket(&req))) {
        let call = Call { server, strategy: &strategy, req: &rr, params: &params, output: &output, content_type: &content_type, user_agent: &user_agent, body: Bytes::new() };
        return rest::connect(call, req).await.unwrap_or_else(|e| error_response(&e));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                return error_response(&ApiError::too_large(format!("Request entity too large: limit is {MAX_BODY}")));
            }
            return error_response(&ApiError::bad_request(format!("reading the request body: {e}")));
        }
    };
    let call = Call {
        server,
        strategy: &strategy,
        req: &rr,
        params: &params,
        output: &output,
        content_type: &content_type,
        user_agent: &user_agent,
        body,
    };
    match rest::dispatch(call, &method).await {
        Ok(Reply::Json { code, body, warnings }) => json_response(code, &body, output.yaml, &warnings),
        Ok(Reply::Chunks { code, body }) => {
            let stream = futures::stream::iter(body.map(|b| Ok::<_, Infallible>(Frame::data(b))));
            let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
            *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Ok(Reply::Stream { head, rest }) => {
            let rest = tokio_stream::wrappers::UnboundedReceiverStream::new(rest);
            let stream = futures::stream::iter([head]).chain(rest).map(|b| Ok::<_, Infallible>(Frame::data(b)));
            let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Ok(Reply::Watch(rx)) => {
            let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b)));
            let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Err(e) => {
            if e.code >= 500 {
                tracing::warn!(error = %e, "request failed");
            }
            error_response(&e)
        }
    }
}

/// (verb, resource, code) -> (count, seconds).
type RequestStats = std::collections::BTreeMap<(String, String, u16), (u64, f64)>;

/// Labels of upstream's `apiserver_longrunning_requests` gauge: verb, group, version, resource,
/// subresource, scope (the component is always `apiserver`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LongRunning {
    pub verb: &'static str,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    /// `resource` (one named object), `namespace` or `cluster`, as upstream's CleanScope.
    pub scope: &'static str,
}

type LongRunningGauges = std::sync::Mutex<std::collections::BTreeMap<LongRunning, i64>>;

/// Counts one long-running request (an open watch) for as long as it lives: the gauge goes up
/// when it is made and down when it is dropped, however the request ends.
pub struct LongRunningGuard {
    gauges: Arc<LongRunningGauges>,
    key: LongRunning,
}

impl Drop for LongRunningGuard {
    fn drop(&mut self) {
        let mut g = self.gauges.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = g.get_mut(&self.key) {
            *n -= 1;
        }
    }
}

/// Prometheus request counters and latency sums, and the gauge of open long-running requests.
#[derive(Default)]
pub struct Metrics {
    inner: std::sync::Mutex<RequestStats>,
    longrunning: Arc<LongRunningGauges>,
}

impl Metrics {
    fn observe(&self, method: &Method, path: &str, code: u16, elapsed: std::time::Duration) {
        let resource = match route(path) {
            Route::Resource(r) => r.plural,
            _ => String::new(),
        };
        let mut m = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = m.entry((method.to_string(), resource, code)).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += elapsed.as_secs_f64();
    }

    /// Starts counting one long-running request; it stops counting when the guard is dropped.
    pub fn long_running(&self, key: LongRunning) -> LongRunningGuard {
        *self.longrunning.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(key.clone()).or_insert(0) += 1;
        LongRunningGuard { gauges: self.longrunning.clone(), key }
    }

    /// How many long-running requests with these labels are open now.
    pub fn long_running_count(&self, key: &LongRunning) -> i64 {
        self.longrunning.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(key).copied().unwrap_or(0)
    }

    pub fn render(&self) -> String {
        let mut out = self.render_requests();
        let g = self.longrunning.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        out.push_str("# HELP apiserver_longrunning_requests Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component. Not all requests are tracked this way.\n# TYPE apiserver_longrunning_requests gauge\n");
        for (k, n) in g.iter() {
            out.push_str(&format!(
                "apiserver_longrunning_requests{{component=\"apiserver\",group=\"{}\",resource=\"{}\",scope=\"{}\",subresource=\"{}\",verb=\"{}\",version=\"{}\"}} {n}\n",
                k.group, k.resource, k.scope, k.subresource, k.verb, k.version
            ));
        }
        out
    }

    fn render_requests(&self) -> String {
        let m = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = String::from("# HELP apiserver_request_total Requests by verb, resource and HTTP code.\n# TYPE apiserver_request_total counter\n");
        for ((verb, res, code), (n, _)) in m.iter() {
            out.push_str(&format!("apiserver_request_total{{verb=\"{verb}\",resource=\"{res}\",code=\"{code}\"}} {n}\n"));
        }
        out.push_str("# HELP apiserver_request_duration_seconds_sum Total seconds spent serving requests.\n# TYPE apiserver_request_duration_seconds_sum counter\n");
        for ((verb, res, code), (_, secs)) in m.iter() {
            out.push_str(&format!("apiserver_request_duration_seconds_sum{{verb=\"{verb}\",resource=\"{res}\",code=\"{code}\"}} {secs}\n"));
        }
        out
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longrunning_gauge_follows_guards() {
        let m = Metrics::default();
        let key = LongRunning { verb: "WATCH", group: String::new(), version: "v1".into(), resource: "pods".into(), subresource: String::new(), scope: "namespace" };
        let a = m.long_running(key.clone());
        let b = m.long_running(key.clone());
        assert_eq!(m.long_running_count(&key), 2);
        let line = r#"apiserver_longrunning_requests{component="apiserver",group="",resource="pods",scope="namespace",subresource="",verb="WATCH",version="v1"} 2"#;
        assert!(m.render().lines().any(|l| l == line), "{}", m.render());
        drop(a);
        drop(b);
        assert_eq!(m.long_running_count(&key), 0);
        assert!(m.render().contains("verb=\"WATCH\",version=\"v1\"} 0\n"));
    }
}
