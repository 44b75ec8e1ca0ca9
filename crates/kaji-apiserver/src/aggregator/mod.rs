//! API aggregation, as upstream's kube-aggregator: APIServices (apiregistration.k8s.io/v1,
//! `registry::apiregistration`) name who serves a group/version. Local ones (no
//! `spec.service`) are this server's own groups, made at start for every built-in
//! group/version (`bootstrap`); any other one sends its group/version to a Service in the
//! cluster: `proxy` relays the requests (upstream's `handler_proxy.go`), `discovery` merges the
//! backend's resources into `/apis` (`handler_apis.go` and the aggregated discovery manager), and
//! `available` checks each backend and writes its `Available` condition
//! (`controllers/status/remote`).
//!
//! The controller keeps a snapshot of the non-local APIServices (`Aggregator::remotes`) that
//! the request path reads without touching the store.

pub mod available;
pub mod discovery;
pub mod proxy;

use crate::ApiServer;
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

/// The user the API server's proxy client certificate names (upstream's
/// `--proxy-client-cert-file` is conventionally issued to `front-proxy-client`); extension
/// servers accept the `X-Remote-*` headers only from it (`requestheader-allowed-names`).
pub const PROXY_CLIENT_CN: &str = "front-proxy-client";

/// One non-local APIService as the proxy and discovery need it.
#[derive(Clone, Debug)]
pub struct Remote {
    pub name: String,
    pub group: String,
    pub version: String,
    pub group_priority: i64,
    pub version_priority: i64,
    pub namespace: String,
    pub service: String,
    pub port: u16,
    pub ca_bundle: Option<Vec<u8>>,
    pub insecure: bool,
    /// The `Available` condition is True.
    pub available: bool,
}

impl Remote {
    fn from_object(obj: &Value) -> Option<Remote> {
        let spec = obj.get("spec")?;
        let svc = spec.get("service").filter(|s| s.is_object())?;
        let s = |v: &Value, k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let available = obj
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Available" && c["status"] == "True");
        Some(Remote {
            name: s(&obj["metadata"], "name"),
            group: s(spec, "group"),
            version: s(spec, "version"),
            group_priority: spec["groupPriorityMinimum"].as_i64().unwrap_or(0),
            version_priority: spec["versionPriority"].as_i64().unwrap_or(0),
            namespace: s(svc, "namespace"),
            service: s(svc, "name"),
            port: svc["port"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(443),
            ca_bundle: crate::registry::apiregistration::ca_bundle(obj),
            insecure: spec["insecureSkipTLSVerify"].as_bool().unwrap_or(false),
            available,
        })
    }
}

type TlsClient = (Option<Vec<u8>>, bool, Arc<rustls::ClientConfig>);

/// (backend documents by group/version, JSON, protobuf) of the merged OpenAPI v2 document.
type MergedV2 = (BTreeMap<String, Value>, bytes::Bytes, bytes::Bytes);

/// The aggregator's state in the running API server.
pub struct Aggregator {
    /// Non-local APIServices by name.
    remotes: RwLock<BTreeMap<String, Remote>>,
    /// The backend's APIResourceList of each remote `group/version`, as last fetched.
    resources: RwLock<HashMap<String, Value>>,
    /// The backend's `/openapi/v3` index entry of each remote `group/version`.
    openapi_v3: RwLock<HashMap<String, Value>>,
    /// The TLS client of each remote (by APIService name) with the (caBundle, insecure) it
    /// was made for.
    tls: RwLock<HashMap<String, TlsClient>>,
    /// The backend's `/openapi/v2` document of each remote `group/version`.
    openapi_v2: RwLock<HashMap<String, Value>>,
    /// The merged `/openapi/v2` (JSON, protobuf) and the backend documents it was made of.
    merged_v2: std::sync::Mutex<Option<MergedV2>>,
    /// The availability check's TLS client: the proxy certificate, no server verification.
    check_tls: std::sync::OnceLock<Arc<rustls::ClientConfig>>,
    /// Wakes the availability controller (a proxied request found its backend down).
    pub(crate) wake: tokio::sync::Notify,
    /// The proxy client certificate and key (PEM).
    proxy_cert_pem: String,
    proxy_key_pem: String,
}

impl Aggregator {
    /// Issues the proxy client certificate from the cluster CA (kept in memory; a new one each
    /// start, as a restarted server's backends only check the CA and the name).
    pub fn new(pki: &crate::pki::Pki) -> Result<Aggregator> {
        let (cert, key) = pki
            .issue_client(PROXY_CLIENT_CN, &[])
            .context("issuing the aggregator's proxy client certificate")?;
        Ok(Aggregator {
            remotes: RwLock::default(),
            resources: RwLock::default(),
            openapi_v3: RwLock::default(),
            tls: RwLock::default(),
            check_tls: std::sync::OnceLock::new(),
            openapi_v2: RwLock::default(),
            merged_v2: std::sync::Mutex::default(),
            wake: tokio::sync::Notify::new(),
            proxy_cert_pem: cert,
            proxy_key_pem: key,
        })
    }

    /// The non-local APIService serving `group/version`, if any.
    pub fn remote_for(&self, group: &str, version: &str) -> Option<Remote> {
        let remotes = self
            .remotes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        remotes
            .values()
            .find(|r| r.group == group && r.version == version)
            .cloned()
    }

    /// Whether some non-local APIService serves a version of `group`.
    pub fn serves_group(&self, group: &str) -> bool {
        let remotes = self
            .remotes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        remotes.values().any(|r| r.group == group)
    }

    pub fn remotes(&self) -> Vec<Remote> {
        self.remotes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn set_remotes(&self, remotes: BTreeMap<String, Remote>) {
        let mut cache = self
            .resources
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let served = |gv: &String| {
            remotes
                .values()
                .any(|r| format!("{}/{}", r.group, r.version) == *gv)
        };
        cache.retain(|gv, _| served(gv));
        drop(cache);
        self.openapi_v3
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|gv, _| served(gv));
        self.openapi_v2
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|gv, _| served(gv));
        self.tls
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|name, _| remotes.contains_key(name));
        *self
            .remotes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = remotes;
    }

    pub(crate) fn set_available(&self, name: &str, available: bool) {
        if let Some(r) = self
            .remotes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(name)
        {
            r.available = available;
        }
    }

    pub(crate) fn set_resources(&self, group_version: &str, list: Value) {
        self.resources
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(group_version.to_string(), list);
    }

    pub(crate) fn set_openapi_v3(&self, group_version: &str, entry: Value) {
        self.openapi_v3
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(group_version.to_string(), entry);
    }

    pub(crate) fn set_openapi_v2(&self, group_version: &str, doc: Value) {
        self.openapi_v2
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(group_version.to_string(), doc);
    }

    /// The backends' `/openapi/v2` documents by group/version.
    pub fn openapi_v2_documents(&self) -> BTreeMap<String, Value> {
        self.openapi_v2
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The backend's `/openapi/v3` index entry of a remote `group/version`.
    pub fn openapi_v3(&self, group_version: &str) -> Option<Value> {
        self.openapi_v3
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(group_version)
            .cloned()
    }

    /// The TLS client towards `remote`'s backend, made once per caBundle and
    /// insecureSkipTLSVerify.
    pub(crate) fn client_tls(&self, remote: &Remote) -> Result<Arc<rustls::ClientConfig>, String> {
        let cached = self
            .tls
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&remote.name)
            .filter(|(ca, insecure, _)| *ca == remote.ca_bundle && *insecure == remote.insecure)
            .map(|(_, _, tls)| tls.clone());
        if let Some(tls) = cached {
            return Ok(tls);
        }
        let tls = proxy::tls_config(self, remote.ca_bundle.as_deref(), remote.insecure)?;
        self.tls
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                remote.name.clone(),
                (remote.ca_bundle.clone(), remote.insecure, tls.clone()),
            );
        Ok(tls)
    }

    /// The availability check's TLS client (no server verification, as upstream's).
    pub(crate) fn check_tls(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        if let Some(tls) = self.check_tls.get() {
            return Ok(tls.clone());
        }
        let tls = proxy::tls_config(self, None, true)?;
        Ok(self.check_tls.get_or_init(|| tls).clone())
    }

    /// Upstream's `aggregator_unavailable_apiservice` gauge, for the non-local APIServices
    /// (the local ones, always available, are left out).
    pub fn render_metrics(&self) -> String {
        let mut out = String::from(
            "# HELP aggregator_unavailable_apiservice [ALPHA] Gauge of APIServices which are marked as unavailable broken down by APIService name.\n# TYPE aggregator_unavailable_apiservice gauge\n",
        );
        for r in self.remotes() {
            out.push_str(&format!(
                "aggregator_unavailable_apiservice{{name=\"{}\"}} {}\n",
                r.name,
                u8::from(!r.available)
            ));
        }
        out
    }

    /// The cached APIResourceList of a remote `group/version`.
    pub fn resources(&self, group_version: &str) -> Option<Value> {
        self.resources
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(group_version)
            .cloned()
    }
}

/// Upstream's `apiVersionPriorities` (cmd/kube-apiserver/app/aggregator.go): (group minimum,
/// version) priority of each built-in group/version; groups Kaji serves that upstream
/// aggregates (metrics.k8s.io) get metrics-server's APIService values.
fn builtin_priority(group: &str, version: &str) -> (i64, i64) {
    match (group, version) {
        ("", "v1") => (18000, 1),
        ("apiregistration.k8s.io", _) => (18000, 15),
        ("apps", _) => (17800, 15),
        ("events.k8s.io", _) => (17750, 15),
        ("authentication.k8s.io", _) => (17700, 15),
        ("authorization.k8s.io", _) => (17600, 15),
        ("autoscaling", "v2") => (17500, 30),
        ("autoscaling", _) => (17500, 15),
        ("batch", _) => (17400, 15),
        ("certificates.k8s.io", _) => (17300, 15),
        ("networking.k8s.io", _) => (17200, 15),
        ("policy", _) => (17100, 15),
        ("rbac.authorization.k8s.io", _) => (17000, 15),
        ("storage.k8s.io", _) => (16800, 15),
        ("apiextensions.k8s.io", _) => (16700, 15),
        ("admissionregistration.k8s.io", _) => (16700, 15),
        ("scheduling.k8s.io", _) => (16600, 15),
        ("coordination.k8s.io", _) => (16500, 15),
        ("node.k8s.io", _) => (16300, 15),
        ("discovery.k8s.io", _) => (16200, 15),
        ("flowcontrol.apiserver.k8s.io", _) => (16100, 21),
        _ => (100, 100),
    }
}

/// At start: a local APIService for every group/version this server serves (upstream's
/// autoregister controller: `v1.` for the core group, `v1.apps`, ...), and the
/// `kube-system/extension-apiserver-authentication` ConfigMap extension servers read to trust
/// the proxy's client certificate and headers, with the Role that may read it. Then starts the
/// availability controller.
pub async fn start(server: &Arc<ApiServer>) -> Result<()> {
    let mut local = Vec::new();
    for (group, versions) in crate::discovery::groups(&server.registry) {
        for version in versions {
            let (gpm, vp) = builtin_priority(&group, &version);
            let obj = json!({
                "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                "metadata": {"name": format!("{version}.{group}"), "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
                "spec": {"group": group, "version": version, "groupPriorityMinimum": gpm, "versionPriority": vp},
            });
            local.push(crate::bootstrap::ensure(
                server,
                "apiregistration.k8s.io",
                "apiservices",
                None,
                obj,
            ));
        }
    }
    // Side by side: the store commits them together.
    futures::future::try_join_all(local).await?;
    let ca = &server.pki.ca_cert_pem;
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
        "data": {
            "client-ca-file": ca,
            "requestheader-client-ca-file": ca,
            "requestheader-allowed-names": format!("[\"{PROXY_CLIENT_CN}\"]"),
            "requestheader-username-headers": "[\"X-Remote-User\"]",
            "requestheader-group-headers": "[\"X-Remote-Group\"]",
            "requestheader-extra-headers-prefix": "[\"X-Remote-Extra-\"]",
        },
    });
    crate::bootstrap::ensure(server, "", "configmaps", Some("kube-system"), cm).await?;
    // Who may read it: upstream's bootstrap Role in kube-system, which extension servers'
    // service accounts are bound to (the sample-apiserver's and metrics-server's manifests).
    let reader = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "extension-apiserver-authentication-reader", "namespace": "kube-system",
                     "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                     "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["extension-apiserver-authentication"], "verbs": ["get", "list", "watch"]}],
    });
    crate::bootstrap::ensure(
        server,
        "rbac.authorization.k8s.io",
        "roles",
        Some("kube-system"),
        reader,
    )
    .await?;
    tokio::spawn(available::run(server.clone()));
    Ok(())
}

/// The aggregator's part of routing: a request for a group/version a non-local APIService
/// claims is proxied, `/apis/<group>` of a group only backends serve is answered here. Anything
/// else goes back to the caller.
pub async fn intercept(
    server: &Arc<ApiServer>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<crate::server::Body>, http::Request<hyper::body::Incoming>> {
    let path = req.uri().path();
    // The backend's OpenAPI v3 document of its group/version (listed by
    // `discovery::merge_openapi_v3_index`).
    let (openapi, rest) = match (
        path.strip_prefix("/openapi/v3/apis/"),
        path.strip_prefix("/apis/"),
    ) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => return Err(req),
    };
    let mut parts = rest.split('/');
    let group = parts.next().unwrap_or_default();
    let version = parts.next().unwrap_or_default();
    if group.is_empty() {
        return Err(req);
    }
    let agg = &server.aggregator;
    if openapi {
        return match agg.remote_for(group, version) {
            Some(remote) if parts.next().is_none() => Ok(proxy::serve(server, &remote, req).await),
            _ => Err(req),
        };
    }
    if version.is_empty() {
        let builtin = crate::discovery::groups(&server.registry)
            .iter()
            .any(|(g, _)| g == group);
        if !builtin && agg.serves_group(group) {
            let doc = discovery::api_group(agg, group);
            return Ok(proxy::json(200, &doc));
        }
        return Err(req);
    }
    match agg.remote_for(group, version) {
        Some(remote) => Ok(proxy::serve(server, &remote, req).await),
        None => Err(req),
    }
}
