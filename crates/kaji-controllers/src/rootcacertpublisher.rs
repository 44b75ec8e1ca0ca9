//! The root CA certificate publisher, as upstream's (pkg/controller/certificates/
//! rootcacertpublisher): every active namespace has a ConfigMap `kube-root-ca.crt` whose `ca.crt`
//! is the CA that verifies the API server's serving certificate, so that pods (the projected
//! `kube-api-access-*` volume) can trust the API server at `kubernetes.default.svc`. A changed or
//! deleted ConfigMap is put back.
//!
//! The CA is the controller manager's root CA file (upstream's `--root-ca-file`), else Kaji's one
//! cluster CA, which signs both the serving certificate and the CSRs (the signer's
//! `--cluster-signing-cert-file`). Without either the publisher does not run.

use crate::Options;
use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kaji_runtime::controller;
use kaji_runtime::informer::Factory;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The ConfigMap's name and key (upstream's `RootCACertConfigMapName`, `ca.crt`).
pub const CONFIG_MAP: &str = "kube-root-ca.crt";
const KEY: &str = "ca.crt";
/// Upstream's `DescriptionAnnotation` and its text.
const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

struct Context {
    client: Client,
    root_ca: String,
    config_maps: Arc<kaji_runtime::informer::Informer<ConfigMap>>,
}

/// Registers the informers (namespaces, ConfigMaps) and returns the loop.
pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let file = opts
        .service_account_tokens
        .as_ref()
        .map(|s| s.root_ca_file.clone())
        .or_else(|| opts.cluster_signing.as_ref().map(|s| s.cert_file.clone()));
    let root_ca = file.map(std::fs::read_to_string);
    let root_ca = match root_ca {
        Some(Ok(pem)) => pem,
        Some(Err(e)) => {
            return Box::pin(async move { Err(anyhow::anyhow!("reading the root CA: {e}")) });
        }
        None => {
            tracing::info!("no root CA file: the kube-root-ca.crt publisher does not run");
            return Box::pin(futures::future::pending());
        }
    };
    // The process's one ConfigMap watch (shared with the garbage collector), as upstream's
    // shared informer; only `kube-root-ca.crt` changes wake a namespace.
    let config_maps = f.informer::<ConfigMap>();
    let changed = config_maps.objects().filter_map(|cm| async move {
        (cm.name_any() == CONFIG_MAP)
            .then(|| cm.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns)))
            .flatten()
    });
    let controller = controller::for_informer(&f.informer::<Namespace>()).reconcile_on(changed);
    let ctx = Arc::new(Context {
        client: f.client(),
        root_ca,
        config_maps,
    });
    controller::run("root-ca-cert-publisher", f, controller, reconcile, ctx)
}

/// The ConfigMap's wanted data.
fn data(root_ca: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(KEY.to_string(), root_ca.to_string())])
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let want = data(&ctx.root_ca);
    let cached = ctx
        .config_maps
        .get(&ObjectRef::new(CONFIG_MAP).within(&name));
    let existing = match cached {
        Some(cm) => Some((*cm).clone()),
        None => api.get_opt(CONFIG_MAP).await?,
    };
    if let Some(mut cm) = existing {
        let described = cm
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(DESCRIPTION_ANNOTATION));
        if cm.data.as_ref() == Some(&want) && cm.binary_data.is_none() && described {
            return Ok(Action::await_change());
        }
        // As upstream: the data is replaced whole, the description added; other metadata kept.
        cm.data = Some(want.clone());
        cm.binary_data = None;
        cm.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
        match api.replace(CONFIG_MAP, &PostParams::default(), &cm).await {
            // A newer version: its event brings the namespace back.
            Ok(_) => return Ok(Action::await_change()),
            Err(kube::Error::Api(e)) if e.code == 409 => return Ok(Action::await_change()),
            // Deleted meanwhile (the cache was behind): made again below.
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIG_MAP.into()),
            annotations: Some(BTreeMap::from([(
                DESCRIPTION_ANNOTATION.to_string(),
                DESCRIPTION.to_string(),
            )])),
            ..Default::default()
        },
        data: Some(want),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &cm).await {
        Ok(_) => {}
        // Made meanwhile, or the namespace began terminating.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
        Err(e) => return Err(e),
    }
    Ok(Action::await_change())
}
