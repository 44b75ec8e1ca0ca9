//! An operator for seed 004's `Hoge` kind (`hoges.stable.example.com/v1`, deploy/crd.yaml),
//! written with kube-rs as the seed describes an operator: a control loop that reads each Hoge
//! and makes the cluster match it. For every Hoge it keeps
//! - a Deployment of the same name running `spec.image` (`nginx:1.18.0-alpine` by default) with
//!   `spec.replicas` pods (1 by default), `spec.fuga` in their `FUGA` environment variable;
//! - a Service of the same name in front of those pods (port 80);
//!
//! both owned by the Hoge (`ownerReferences` with `controller: true`), so that deleting the Hoge
//! lets the garbage collector delete them. The Hoge's `status` (replicas, readyReplicas,
//! availableReplicas, observedGeneration) is written through the status subresource, or with a
//! merge patch of the object when its CRD has no status subresource.
//!
//! The Deployment and Service are written with server-side apply (field manager
//! `hoge-operator`), so a reconcile is the same request whether they exist or not, and a change
//! someone else makes to a field the operator owns is put back. Changes to the Deployments and
//! Services it owns wake the Hoge up (`Controller::owns`). Run in a pod it uses its service
//! account (in-cluster config); outside, the current kubeconfig context. `RUST_LOG` sets the log
//! filter (default `info`).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{info, warn};

/// The field manager of the operator's server-side applies.
const MANAGER: &str = "hoge-operator";
const DEFAULT_IMAGE: &str = "nginx:1.18.0-alpine";

/// What a Hoge asks for; every field may be absent (the seed's CRD has only `fuga`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct HogeSpec {
    fuga: Option<String>,
    image: Option<String>,
    replicas: Option<i32>,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("Hoge has no {0}")]
    Missing(&'static str),
    #[error("spec: {0}")]
    Spec(#[source] serde_json::Error),
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

struct Context {
    client: Client,
    hoges: ApiResource,
}

fn hoge_resource() -> ApiResource {
    ApiResource {
        group: "stable.example.com".into(),
        version: "v1".into(),
        api_version: "stable.example.com/v1".into(),
        kind: "Hoge".into(),
        plural: "hoges".into(),
    }
}

/// The labels of a Hoge's Deployment, pods and Service; the selector is all of them.
fn labels(name: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "hoge",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": MANAGER,
    })
}

/// The Deployment a Hoge asks for, as an apply configuration.
fn deployment(name: &str, namespace: &str, owner: &Value, spec: &HogeSpec) -> Value {
    let image = spec.image.as_deref().unwrap_or(DEFAULT_IMAGE);
    let fuga = spec.fuga.as_deref().unwrap_or("");
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels(name),
            "ownerReferences": [owner],
        },
        "spec": {
            "replicas": spec.replicas.unwrap_or(1),
            "selector": {"matchLabels": labels(name)},
            "template": {
                "metadata": {"labels": labels(name)},
                "spec": {
                    "containers": [{
                        "name": "hoge",
                        "image": image,
                        "env": [{"name": "FUGA", "value": fuga}],
                        "ports": [{"name": "http", "containerPort": 80}],
                    }],
                },
            },
        },
    })
}

/// The Service in front of a Hoge's pods, as an apply configuration.
fn service(name: &str, namespace: &str, owner: &Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels(name),
            "ownerReferences": [owner],
        },
        "spec": {
            "selector": labels(name),
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    })
}

/// The Hoge's status from its Deployment's.
fn status(hoge: &DynamicObject, deployment: &Deployment) -> Value {
    let s = deployment.status.clone().unwrap_or_default();
    json!({
        "replicas": s.replicas.unwrap_or(0),
        "readyReplicas": s.ready_replicas.unwrap_or(0),
        "availableReplicas": s.available_replicas.unwrap_or(0),
        "observedGeneration": hoge.metadata.generation,
    })
}

async fn reconcile(hoge: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = hoge.metadata.name.clone().ok_or(Error::Missing("name"))?;
    let namespace = hoge.namespace().ok_or(Error::Missing("namespace"))?;
    if hoge.metadata.deletion_timestamp.is_some() {
        // Its dependents go with it (the garbage collector follows the ownerReferences).
        return Ok(Action::await_change());
    }
    let spec: HogeSpec = match hoge.data.get("spec") {
        Some(v) if !v.is_null() => serde_json::from_value(v.clone()).map_err(Error::Spec)?,
        _ => HogeSpec::default(),
    };
    let owner = hoge
        .controller_owner_ref(&ctx.hoges)
        .ok_or(Error::Missing("uid"))?;
    let owner = serde_json::to_value(&owner).expect("an OwnerReference serialises");
    let apply = PatchParams::apply(MANAGER).force();

    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let d = deployments
        .patch(
            &name,
            &apply,
            &Patch::Apply(deployment(&name, &namespace, &owner, &spec)),
        )
        .await?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    services
        .patch(
            &name,
            &apply,
            &Patch::Apply(service(&name, &namespace, &owner)),
        )
        .await?;

    let want = status(&hoge, &d);
    if hoge.data.get("status") != Some(&want) {
        let hoges: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &namespace, &ctx.hoges);
        let patch = Patch::Merge(json!({ "status": want }));
        let params = PatchParams::default();
        match hoges.patch_status(&name, &params, &patch).await {
            // No status subresource in this CRD: status is part of the object.
            Err(kube::Error::Api(s)) if s.code == 404 => {
                hoges.patch(&name, &params, &patch).await?;
            }
            r => {
                r?;
            }
        }
        info!(hoge = %format!("{namespace}/{name}"), status = %want, "status updated");
    }
    // Changes to the Hoge, its Deployment or its Service wake it up; a slow resync besides.
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn error_policy(hoge: Arc<DynamicObject>, error: &Error, _: Arc<Context>) -> Action {
    warn!(hoge = %hoge.name_any(), %error, "reconcile failed; retrying in 5 s");
    Action::requeue(Duration::from_secs(5))
}

#[tokio::main]
async fn main() -> Result<(), kube::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let client = Client::try_default().await?;
    let hoges = hoge_resource();
    let ctx = Arc::new(Context {
        client: client.clone(),
        hoges: hoges.clone(),
    });
    info!("hoge-operator watching hoges.stable.example.com/v1 in every namespace");
    Controller::new_with(
        Api::<DynamicObject>::all_with(client.clone(), &hoges),
        watcher::Config::default(),
        hoges,
    )
    .owns(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Service>::all(client), watcher::Config::default())
    .shutdown_on_signal()
    .run(reconcile, error_policy, ctx)
    .for_each(|r| async move {
        match r {
            Ok((hoge, _)) => info!(hoge = %hoge, "reconciled"),
            Err(e) => warn!(error = %e, "controller"),
        }
    })
    .await;
    info!("hoge-operator stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_defaults_and_owner() {
        let owner = json!({"apiVersion": "stable.example.com/v1", "kind": "Hoge", "name": "h",
            "uid": "u", "controller": true, "blockOwnerDeletion": true});
        let d = deployment("h", "ns", &owner, &HogeSpec::default());
        assert_eq!(d["spec"]["replicas"], 1);
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], DEFAULT_IMAGE);
        assert_eq!(c["env"][0], json!({"name": "FUGA", "value": ""}));
        assert_eq!(d["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(d["spec"]["selector"]["matchLabels"], labels("h"));

        let spec: HogeSpec =
            serde_json::from_value(json!({"fuga": "hugahuga", "image": "x:1", "replicas": 3}))
                .expect("spec");
        let d = deployment("h", "ns", &owner, &spec);
        assert_eq!(d["spec"]["replicas"], 3);
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "x:1");
        assert_eq!(c["env"][0]["value"], "hugahuga");
    }

    #[test]
    fn service_selects_the_pods() {
        let s = service("h", "ns", &json!({}));
        assert_eq!(s["spec"]["selector"], labels("h"));
        assert_eq!(s["spec"]["ports"][0]["targetPort"], "http");
    }
}
