//! The `kubernetes` Service's endpoints list every live API server, as kube-apiserver's lease
//! endpoint reconciler (`pkg/controlplane/reconcilers/lease.go`, the default
//! `--endpoint-reconciler-type=lease`): every server keeps a master lease under
//! `/registry/masterleases/<ip>` (15 s, renewed every 10 s), and rewrites `default/kubernetes`
//! Endpoints and EndpointSlice from the unexpired ones; a dead server drops out once its lease
//! has expired (within 15 s + one interval).
//!
//! Upstream's master leases are etcd keys with a TTL; the `Store` trait has no TTL, so each
//! holds its renew time and the expired ones are deleted by whichever server sees them first.
//! Beside it, every server keeps its identity Lease `kube-system/apiserver-<id>` (label
//! `apiserver.kubernetes.io/identity=kube-apiserver`, 3600 s, renewed every 10 s, upstream 1.26+),
//! and deletes identity Leases expired for longer than their duration (upstream's
//! apiserver-lease garbage collector).

use crate::ApiServer;
use crate::registry::store::{Filter, Part, Store, WriteOptions};
use k8s_openapi::jiff::Timestamp;
use kaji_api::ApiError;
use kaji_store::ListOptions;
use serde_json::{Value, json};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Upstream `DefaultEndpointReconcilerTTL` and `EndpointInterval` (`--endpoint-reconciler-interval`).
pub const MASTER_LEASE_TTL: Duration = Duration::from_secs(15);
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Where the master leases live (upstream's etcd key).
const MASTER_LEASES: &str = "/registry/masterleases/";
/// The identity Leases' duration (upstream `IdentityLeaseDurationSeconds`).
const IDENTITY_LEASE_SECONDS: i64 = 3600;
const IDENTITY_LABEL: &str = "apiserver.kubernetes.io/identity";

/// This server in the `kubernetes` endpoints: `ip:port` (kube-apiserver's
/// `--advertise-address` and `--secure-port`).
#[derive(Clone, Debug)]
pub struct Advertised {
    pub ip: IpAddr,
    pub port: u16,
}

/// The identity Lease's name: `apiserver-` and a hash of the hostname as upstream, here also of
/// the advertised address so that several servers on one machine (tests) stay apart.
pub fn identity(addr: &Advertised) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    crate::pki::hostname().hash(&mut h);
    addr.ip.hash(&mut h);
    addr.port.hash(&mut h);
    format!("apiserver-{:016x}", h.finish())
}

/// Starts the reconciler: at once, then every [`INTERVAL`].
pub fn start(server: &Arc<ApiServer>, addr: Advertised) -> tokio::task::JoinHandle<()> {
    let server = server.clone();
    tokio::spawn(async move {
        let id = identity(&addr);
        let holder = format!("{id}_{}", uuid::Uuid::new_v4());
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = reconcile(&server, &addr).await {
                tracing::warn!(error = %e, "reconciling the kubernetes endpoints");
            }
            if let Err(e) = renew_identity(&server, &id, &holder).await {
                tracing::debug!(error = %e, "renewing the apiserver identity lease");
            }
        }
    })
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Renews this server's master lease, then writes the endpoints of every live one.
pub async fn reconcile(server: &Arc<ApiServer>, addr: &Advertised) -> anyhow::Result<()> {
    let store = &server.store;
    let key = format!("{MASTER_LEASES}{}", addr.ip);
    let value = serde_json::to_vec(
        &json!({"ip": addr.ip.to_string(), "port": addr.port, "renewTime": now_secs()}),
    )?;
    match store.get(&key).await? {
        Some(kv) => {
            store.update(&key, value, kv.mod_revision).await?;
        }
        None => {
            store.create(&key, value).await?;
        }
    }
    let page = store
        .list(
            MASTER_LEASES,
            ListOptions {
                start_after: None,
                limit: None,
                revision: None,
            },
        )
        .await?;
    let now = now_secs();
    let mut live: Vec<(IpAddr, u16)> = Vec::new();
    for kv in &page.items {
        let lease: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
        let renewed = lease["renewTime"].as_f64().unwrap_or(0.0);
        let ip = lease["ip"].as_str().and_then(|s| s.parse().ok());
        match ip {
            Some(ip) if now - renewed < MASTER_LEASE_TTL.as_secs_f64() => {
                live.push((
                    ip,
                    u16::try_from(lease["port"].as_u64().unwrap_or(0)).unwrap_or(addr.port),
                ));
            }
            // Expired (upstream: etcd's TTL): whoever sees it first removes it.
            _ => {
                let _ = store.delete(&kv.key, Some(kv.mod_revision)).await;
            }
        }
    }
    if !live.iter().any(|(ip, _)| *ip == addr.ip) {
        live.push((addr.ip, addr.port));
    }
    live.sort();
    live.dedup();
    // Upstream assumes one port for every server; this server's is written.
    let ips: Vec<String> = live.iter().map(|(ip, _)| ip.to_string()).collect();
    let ports = json!([{"name": "https", "port": addr.port, "protocol": "TCP"}]);
    let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    put(server, "", "endpoints", "default", "kubernetes", |obj| {
        obj["subsets"] = json!([{"addresses": addresses, "ports": ports}]);
        obj["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"] = json!("true");
    })
    .await?;
    let endpoints: Vec<Value> = ips
        .iter()
        .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
        .collect();
    put(
        server,
        "discovery.k8s.io",
        "endpointslices",
        "default",
        "kubernetes",
        |obj| {
            obj["addressType"] = json!("IPv4");
            obj["endpoints"] = json!(endpoints);
            obj["ports"] = ports.clone();
            obj["metadata"]["labels"]["kubernetes.io/service-name"] = json!("kubernetes");
        },
    )
    .await?;
    Ok(())
}

/// Keeps `kube-system/<id>` renewed and deletes identity Leases expired for a lease duration.
async fn renew_identity(server: &Arc<ApiServer>, id: &str, holder: &str) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let stamp = serde_json::to_value(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        now,
    ))?;
    let host = crate::pki::hostname();
    put(
        server,
        "coordination.k8s.io",
        "leases",
        "kube-system",
        id,
        |obj| {
            obj["metadata"]["labels"][IDENTITY_LABEL] = json!("kube-apiserver");
            obj["metadata"]["labels"]["kubernetes.io/hostname"] = json!(host);
            obj["spec"]["holderIdentity"] = json!(holder);
            obj["spec"]["leaseDurationSeconds"] = json!(IDENTITY_LEASE_SECONDS);
            if obj["spec"]["acquireTime"].is_null() {
                obj["spec"]["acquireTime"] = json!(stamp);
            }
            obj["spec"]["renewTime"] = json!(stamp);
        },
    )
    .await?;
    let Some(strategy) = server.registry.get("coordination.k8s.io", "v1", "leases") else {
        return Ok(());
    };
    let store = Store::of(server, &strategy);
    let filter = Filter::parse(
        strategy.as_ref(),
        &format!("{IDENTITY_LABEL}=kube-apiserver"),
        "",
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let page = store
        .list(Some("kube-system"), &filter, &Default::default())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for lease in page.items {
        let renewed = lease
            .pointer("/spec/renewTime")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Timestamp>().ok());
        let duration = lease
            .pointer("/spec/leaseDurationSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(IDENTITY_LEASE_SECONDS);
        if let Some(renewed) = renewed
            && now.as_second() - renewed.as_second() > 2 * duration
            && let Some(name) = lease.pointer("/metadata/name").and_then(Value::as_str)
        {
            let _ = store
                .delete(Some("kube-system"), name, &Default::default())
                .await;
        }
    }
    Ok(())
}

/// Creates `namespace/name` or updates it (compare-and-swap), `set` making the fields this
/// reconciler owns; nothing is written when they are already so.
async fn put(
    server: &Arc<ApiServer>,
    group: &str,
    plural: &str,
    namespace: &str,
    name: &str,
    set: impl Fn(&mut Value),
) -> anyhow::Result<()> {
    let strategy = server
        .registry
        .get(group, "v1", plural)
        .ok_or_else(|| anyhow::anyhow!("no {plural}"))?;
    let store = Store::of(server, &strategy);
    let opts = WriteOptions {
        dry_run: false,
        field_manager: Some("kube-apiserver".into()),
    };
    let err = |e: ApiError| anyhow::anyhow!("{plural} {namespace}/{name}: {e}");
    match store.get(Some(namespace), name).await {
        Err(e) if e.code == 404 => {
            let kind = strategy.info().kind.to_string();
            let api_version = if group.is_empty() {
                "v1".to_string()
            } else {
                format!("{group}/v1")
            };
            let mut obj = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": namespace, "labels": {}}});
            set(&mut obj);
            match store.create(Some(namespace), obj, &opts).await {
                Ok(_) => Ok(()),
                Err(e) if e.code == 409 => Ok(()),
                Err(e) => Err(err(e)),
            }
        }
        Err(e) => Err(err(e)),
        Ok(_) => store
            .guaranteed_update(Some(namespace), name, Part::Main, &opts, |current| {
                let mut obj = current.clone();
                if !obj["metadata"]["labels"].is_object() {
                    obj["metadata"]["labels"] = json!({});
                }
                if !obj["spec"].is_object() && plural == "leases" {
                    obj["spec"] = json!({});
                }
                set(&mut obj);
                Ok(obj)
            })
            .await
            .map(|_| ())
            .map_err(err),
    }
}
