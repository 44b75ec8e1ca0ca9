//! configMap, secret, downwardAPI and projected volumes: files computed from API objects (with
//! `items`, `defaultMode` and per-item `mode`) and written atomically, so that a change to the
//! object reaches the mounted files at the next resync, as upstream.
//! A projected volume combines its sources in one directory (later sources win on a shared
//! path); each failing source is reported and the errors come back together, as upstream's
//! `collectData`.

use super::atomic_writer::{self, Payload};
use super::downward_api::PodFacts;
use super::downward_api::{self, Allocatable};
use crate::token_manager::TokenManager;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, KeyToPath, Pod, Secret, ServiceAccountTokenProjection, Volume,
};
use kube::Api;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub async fn set_up(
    client: &kube::Client,
    tokens: &TokenManager,
    root: &Path,
    pod: &Pod,
    v: &Volume,
    facts: &PodFacts<'_>,
) -> Result<PathBuf, String> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let (plugin, payload) = if let Some(src) = &v.config_map {
        let data = config_map_data(client, &ns, &src.name, src.optional == Some(true)).await?;
        (
            "kubernetes.io~configmap",
            project(
                data,
                src.items.as_deref(),
                mode(src.default_mode),
                CONFIG_MAP,
                src.optional == Some(true),
            )?,
        )
    } else if let Some(src) = &v.secret {
        let name = src.secret_name.clone().unwrap_or_default();
        let data = secret_data(client, &ns, &name, src.optional == Some(true)).await?;
        (
            "kubernetes.io~secret",
            project(
                data,
                src.items.as_deref(),
                mode(src.default_mode),
                SECRET,
                src.optional == Some(true),
            )?,
        )
    } else if let Some(src) = &v.downward_api {
        let items = src.items.as_deref().unwrap_or_default();
        let alloc = allocatable(client, pod, facts, downward_api::needs_allocatable(items)).await;
        (
            "kubernetes.io~downward-api",
            downward_api::collect(pod, items, mode(src.default_mode), &alloc)?,
        )
    } else if let Some(src) = &v.projected {
        let default_mode = mode(src.default_mode);
        let sources = src.sources.clone().unwrap_or_default();
        let needs = sources.iter().any(|s| {
            s.downward_api.as_ref().is_some_and(|d| {
                downward_api::needs_allocatable(d.items.as_deref().unwrap_or_default())
            })
        });
        let alloc = allocatable(client, pod, facts, needs).await;
        let mut all = Payload::new();
        let mut errors: Vec<String> = Vec::new();
        for s in sources {
            let part = if let Some(cm) = &s.config_map {
                let optional = cm.optional == Some(true);
                match config_map_data(client, &ns, &cm.name, optional).await {
                    Ok(data) => project(
                        data,
                        cm.items.as_deref(),
                        default_mode,
                        CONFIG_MAP,
                        optional,
                    ),
                    Err(e) => Err(e),
                }
            } else if let Some(sec) = &s.secret {
                let optional = sec.optional == Some(true);
                match secret_data(client, &ns, &sec.name, optional).await {
                    Ok(data) => project(data, sec.items.as_deref(), default_mode, SECRET, optional),
                    Err(e) => Err(e),
                }
            } else if let Some(d) = &s.downward_api {
                downward_api::collect(
                    pod,
                    d.items.as_deref().unwrap_or_default(),
                    default_mode,
                    &alloc,
                )
            } else if let Some(t) = &s.service_account_token {
                service_account_token(client, tokens, pod, t, default_mode).await
            } else {
                Ok(Payload::new())
            };
            match part {
                Ok(part) => all.extend(part),
                Err(e) => errors.push(e),
            }
        }
        match errors.len() {
            0 => {}
            1 => return Err(errors.remove(0)),
            _ => return Err(format!("[{}]", errors.join(", "))),
        }
        ("kubernetes.io~projected", all)
    } else {
        return Err("not a projected volume".into());
    };
    let dir = root.join(plugin).join(&v.name);
    atomic_writer::write(&dir, &payload).map_err(|e| format!("{e:#}"))?;
    Ok(dir)
}

fn mode(m: Option<i32>) -> u32 {
    m.map_or(0o644, |m| (m as u32) & 0o777)
}

/// The node's allocatable resources, read only when a resourceFieldRef needs them.
async fn allocatable(
    client: &kube::Client,
    pod: &Pod,
    facts: &PodFacts<'_>,
    needed: bool,
) -> Allocatable {
    if needed {
        Allocatable::read(client, pod, facts).await
    } else {
        Allocatable::default()
    }
}

/// How a missing key is reported (upstream's configmap and secret `MakePayload`).
const CONFIG_MAP: &str = "configmap references non-existent config key";
const SECRET: &str = "references non-existent secret key";

async fn config_map_data(
    client: &kube::Client,
    ns: &str,
    name: &str,
    optional: bool,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    match Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(cm) => {
            let mut out: BTreeMap<String, Vec<u8>> = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            out.extend(
                cm.binary_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0)),
            );
            Ok(Some(out))
        }
        None if optional => Ok(None),
        None => Err(format!("configmap \"{name}\" not found")),
    }
}

async fn secret_data(
    client: &kube::Client,
    ns: &str,
    name: &str,
    optional: bool,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    match Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(s) => {
            let mut out: BTreeMap<String, Vec<u8>> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            out.extend(
                s.string_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes())),
            );
            Ok(Some(out))
        }
        None if optional => Ok(None),
        None => Err(format!("secret \"{name}\" not found")),
    }
}

/// Keys to files: all keys, or only `items` (a missing key is an error unless optional).
fn project(
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    missing_key: &str,
    optional: bool,
) -> Result<Payload, String> {
    let data = data.unwrap_or_default();
    let mut out = Payload::new();
    match items {
        Some(items) if !items.is_empty() => {
            for it in items {
                match data.get(&it.key) {
                    Some(v) => {
                        out.insert(
                            it.path.clone(),
                            (
                                v.clone(),
                                it.mode.map_or(default_mode, |m| m as u32 & 0o777),
                            ),
                        );
                    }
                    None if optional => {}
                    None => return Err(format!("{missing_key}: {}", it.key)),
                }
            }
        }
        _ => {
            for (k, v) in data {
                out.insert(k, (v, default_mode));
            }
        }
    }
    Ok(out)
}

/// A `serviceAccountToken` source: a token bound to the pod from the node's token manager, as
/// upstream's projected volume (audiences = [audience] or the API server's default; with an
/// fsGroup, readable by the owner and the group only). A token that cannot be had fails the mount.
async fn service_account_token(
    client: &kube::Client,
    tokens: &TokenManager,
    pod: &Pod,
    source: &ServiceAccountTokenProjection,
    mode: u32,
) -> Result<Payload, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let sa = spec
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    let has_fs_group = spec
        .and_then(|s| s.security_context.as_ref())
        .is_some_and(|s| s.fs_group.is_some());
    let request = TokenRequestSpec {
        audiences: source
            .audience
            .clone()
            .into_iter()
            .filter(|a| !a.is_empty())
            .collect(),
        expiration_seconds: Some(source.expiration_seconds.unwrap_or(3600)),
        bound_object_ref: Some(BoundObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
        }),
    };
    let token = tokens.get(client, &ns, &sa, request).await?;
    let mut out = Payload::new();
    out.insert(
        source.path.clone(),
        (
            token.token.into_bytes(),
            // Upstream writes 0600 and lets the fsGroup ownership make it 0640; written as 0640
            // at once, the file is not rewritten at every resync (the writer compares modes).
            if has_fs_group { 0o640 } else { mode },
        ),
    );
    Ok(out)
}
