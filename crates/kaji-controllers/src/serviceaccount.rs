//! The service account controller, as upstream's (pkg/controller/serviceaccount): every active
//! namespace has a `default` ServiceAccount; one deleted is made again.

use crate::Options;
use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kaji_runtime::controller;
use kaji_runtime::informer::Factory;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use std::sync::Arc;

/// The service accounts every namespace gets.
const DEFAULT_SERVICE_ACCOUNTS: &[&str] = &["default"];

/// Registers the informers (namespaces, service accounts) and returns the loop.
pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let _ = opts;
    let accounts = f
        .informer::<ServiceAccount>()
        .objects()
        .filter_map(|sa| async move {
            let ns = sa
                .namespace()
                .filter(|_| DEFAULT_SERVICE_ACCOUNTS.contains(&sa.name_any().as_str()));
            ns.map(|ns| ObjectRef::<Namespace>::new(&ns))
        });
    let controller = controller::for_informer(&f.informer::<Namespace>()).reconcile_on(accounts);
    let client = Arc::new(f.client());
    controller::run(
        "serviceaccount-controller",
        f,
        controller,
        reconcile,
        client,
    )
}

async fn reconcile(ns: Arc<Namespace>, client: Arc<Client>) -> Result<Action, kube::Error> {
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating {
        return Ok(Action::await_change());
    }
    let api: Api<ServiceAccount> = Api::namespaced((*client).clone(), &ns.name_any());
    for name in DEFAULT_SERVICE_ACCOUNTS {
        if api.get_opt(name).await?.is_some() {
            continue;
        }
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some((*name).to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => tracing::info!(namespace = %ns.name_any(), name, "created service account"),
            // Exists already, or the namespace began terminating meanwhile.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Action::await_change())
}
