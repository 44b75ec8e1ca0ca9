//! The namespace controller, as upstream's (pkg/controller/namespace): a namespace being deleted
//! (phase Terminating) is emptied, every namespaced resource that discovery lists, and once
//! nothing is left its `kubernetes` finalizer is removed through `namespaces/<name>/finalize`,
//! which lets the API server remove it. While content remains the namespace carries upstream's
//! conditions (NamespaceDeletionDiscoveryFailure, NamespaceDeletionContentFailure,
//! NamespaceContentRemaining, NamespaceFinalizersRemaining).

use crate::Options;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use kaji_runtime::controller;
use kaji_runtime::informer::Factory;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, PartialObjectMeta, Patch, PatchParams,
    PostParams, PropagationPolicy,
};
use kube::discovery::{Discovery, Scope};
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The finalizer the namespace controller owns (spec.finalizers).
const FINALIZER_KUBERNETES: &str = "kubernetes";

/// Registers the namespace informer and returns the loop.
pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let _ = opts;
    let controller = controller::for_informer(&f.informer::<Namespace>());
    let client = Arc::new(f.client());
    controller::run("namespace-controller", f, controller, reconcile, client)
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// What deleting a namespace's content found.
#[derive(Default)]
struct Sweep {
    discovery_failed: Option<String>,
    delete_failures: Vec<String>,
    /// Remaining objects by resource.
    remaining: BTreeMap<String, usize>,
    /// Remaining finalizers and how many objects carry each.
    finalizers: BTreeMap<String, usize>,
}

async fn reconcile(ns: Arc<Namespace>, client: Arc<Client>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let has_ours = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER_KUBERNETES));
    if !has_ours {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let sweep = delete_content(&client, &name).await;
    if sweep.discovery_failed.is_none()
        && sweep.delete_failures.is_empty()
        && sweep.remaining.is_empty()
    {
        let mut next = (*ns).clone();
        if let Some(spec) = next.spec.as_mut() {
            spec.finalizers = Some(
                spec.finalizers
                    .take()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|f| f != FINALIZER_KUBERNETES)
                    .collect(),
            );
        }
        let api: Api<Namespace> = Api::all((*client).clone());
        match api
            .replace_subresource("finalize", &name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => tracing::info!(namespace = %name, "namespace emptied; finalized"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(Action::await_change());
    }
    set_conditions(&client, &ns, &sweep).await;
    // Upstream estimates the wait from the pods' grace periods; a short poll does as well here.
    Ok(Action::requeue(Duration::from_secs(1)))
}

async fn delete_content(client: &Client, namespace: &str) -> Sweep {
    let mut sweep = Sweep::default();
    let discovery = match Discovery::new(client.clone()).run().await {
        Ok(d) => d,
        Err(e) => {
            sweep.discovery_failed = Some(e.to_string());
            return sweep;
        }
    };
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation("list")
                || !caps.supports_operation("delete")
            {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..Default::default()
            };
            let what = format!("{}.{}", ar.plural, ar.group)
                .trim_end_matches('.')
                .to_string();
            if caps.supports_operation("deletecollection")
                && let Err(e) = api.delete_collection(&dp, &ListParams::default()).await
            {
                sweep.delete_failures.push(format!("{what}: {e}"));
                continue;
            }
            let meta: Api<PartialObjectMeta<DynamicObject>> =
                Api::namespaced_with(client.clone(), namespace, &ar);
            let list = match meta.list(&ListParams::default()).await {
                Ok(l) => l,
                Err(e) => {
                    sweep.delete_failures.push(format!("{what}: {e}"));
                    continue;
                }
            };
            for item in &list.items {
                if !caps.supports_operation("deletecollection")
                    && item.metadata.deletion_timestamp.is_none()
                    && let Err(e) = api.delete(&item.name_any(), &dp).await
                    && !matches!(&e, kube::Error::Api(s) if s.code == 404)
                {
                    sweep.delete_failures.push(format!("{what}: {e}"));
                }
                for f in item.metadata.finalizers.iter().flatten() {
                    *sweep.finalizers.entry(f.clone()).or_default() += 1;
                }
            }
            if !list.items.is_empty() {
                sweep.remaining.insert(what, list.items.len());
            }
        }
    }
    sweep
}

async fn set_conditions(client: &Client, ns: &Namespace, sweep: &Sweep) {
    let namespace = ns.name_any();
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let cond = |ty: &str, ok_reason: &str, ok_msg: &str, problem: Option<(String, String)>| {
        match problem {
            Some((reason, message)) => {
                json!({"type": ty, "status": "True", "reason": reason, "message": message, "lastTransitionTime": now})
            }
            None => {
                json!({"type": ty, "status": "False", "reason": ok_reason, "message": ok_msg, "lastTransitionTime": now})
            }
        }
    };
    let join = |m: &BTreeMap<String, usize>, unit: &str| {
        m.iter()
            .map(|(k, v)| format!("{k} has {v} {unit}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let conditions = json!([
        cond(
            "NamespaceDeletionDiscoveryFailure",
            "ResourcesDiscovered",
            "All resources successfully discovered",
            sweep
                .discovery_failed
                .clone()
                .map(|m| ("DiscoveryFailed".to_string(), m))
        ),
        cond(
            "NamespaceDeletionGroupVersionParsingFailure",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
            None
        ),
        cond(
            "NamespaceDeletionContentFailure",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
            (!sweep.delete_failures.is_empty()).then(|| (
                "ContentDeletionFailed".to_string(),
                sweep.delete_failures.join("; ")
            ))
        ),
        cond(
            "NamespaceContentRemaining",
            "ContentRemoved",
            "All content successfully removed",
            (!sweep.remaining.is_empty()).then(|| (
                "SomeResourcesRemain".to_string(),
                format!(
                    "Some resources are remaining: {}",
                    join(&sweep.remaining, "resource instances")
                )
            ))
        ),
        cond(
            "NamespaceFinalizersRemaining",
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished",
            (!sweep.finalizers.is_empty()).then(|| (
                "SomeFinalizersRemain".to_string(),
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    join(&sweep.finalizers, "resource instances")
                )
            ))
        ),
    ]);
    // Write only when something other than the time changed.
    let key = |c: &serde_json::Value| {
        ["type", "status", "reason", "message"].map(|k| c.get(k).cloned().unwrap_or_default())
    };
    let old: Vec<_> = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .iter()
        .filter_map(|c| serde_json::to_value(c).ok())
        .map(|c| key(&c))
        .collect();
    let new: Vec<_> = conditions
        .as_array()
        .into_iter()
        .flatten()
        .map(key)
        .collect();
    if old == new {
        return;
    }
    let api: Api<Namespace> = Api::all(client.clone());
    let patch = json!({"status": {"conditions": conditions}});
    if let Err(e) = api
        .patch_status(&namespace, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::debug!(%namespace, error = %e, "setting namespace deletion conditions");
    }
}
