//! The tokens controller, as upstream's (pkg/controller/serviceaccount/tokens_controller.go):
//! a Secret of type `kubernetes.io/service-account-token` naming a ServiceAccount in its
//! `kubernetes.io/service-account.name` annotation gets `data.token` (a legacy token, signed with
//! the service-account key, `--service-account-private-key-file`), `data.ca.crt` (the root CA)
//! and `data.namespace`, and the account's UID in `kubernetes.io/service-account.uid`. A Secret
//! whose account is gone (or was made again with another UID) is deleted, and so are an
//! account's Secrets when it is deleted. Since 1.24 nothing makes these Secrets by itself: only
//! the ones users ask for exist.

use crate::Options;
use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kaji_api::jwt::{self, SigningKey};
use kaji_runtime::controller;
use kaji_runtime::informer::{Factory, Informer};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use std::sync::Arc;

/// Where the controller gets its key and CA (the controller manager's flags).
#[derive(Clone, Debug)]
pub struct Settings {
    /// `--service-account-private-key-file` (PKCS#8 PEM, the API server's signing key).
    pub private_key_file: std::path::PathBuf,
    /// `--root-ca-file`: what goes in `ca.crt`.
    pub root_ca_file: std::path::PathBuf,
}

struct Context {
    client: Client,
    key: SigningKey,
    ca: String,
    accounts: Arc<Informer<ServiceAccount>>,
}

/// Registers the informers (token Secrets, service accounts) and returns the loop; nothing to do
/// without a key.
pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let Some(settings) = opts.service_account_tokens.clone() else {
        return Box::pin(futures::future::pending());
    };
    let loaded = std::fs::read_to_string(&settings.private_key_file)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", settings.private_key_file.display()))
        .and_then(|pem| {
            SigningKey::from_pem(&pem)
                .map_err(|e| anyhow::anyhow!("{}: {e}", settings.private_key_file.display()))
        })
        .and_then(|key| {
            let ca = std::fs::read_to_string(&settings.root_ca_file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", settings.root_ca_file.display()))?;
            Ok((key, ca))
        });
    let (key, ca) = match loaded {
        Ok(l) => l,
        Err(e) => return Box::pin(async move { Err(e) }),
    };
    // Every Secret, as upstream's tokens controller reads the shared Secret informer (one watch
    // on Secrets for the process; the garbage collector and the ingress controller read it too);
    // the reconciler passes over other types.
    let secrets = f.informer::<Secret>();
    let accounts = f.informer::<ServiceAccount>();
    // An account's change (its deletion above all) syncs the Secrets that name it.
    let by_account = {
        let secrets = secrets.clone();
        accounts.objects().flat_map(move |sa| {
            let (ns, name) = (sa.namespace().unwrap_or_default(), sa.name_any());
            let refs: Vec<ObjectRef<Secret>> = secrets
                .in_namespace(&ns)
                .iter()
                .filter(|s| {
                    s.type_.as_deref() == Some(jwt::SECRET_TYPE)
                        && s.annotations().get(jwt::SA_NAME_ANNOTATION) == Some(&name)
                })
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect();
            futures::stream::iter(refs)
        })
    };
    let controller = controller::for_informer(&secrets).reconcile_on(by_account);
    let ctx = Arc::new(Context {
        client: f.client(),
        key,
        ca,
        accounts,
    });
    controller::run(
        "serviceaccount-tokens-controller",
        f,
        controller,
        reconcile,
        ctx,
    )
}

async fn reconcile(secret: Arc<Secret>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    if secret.type_.as_deref() != Some(jwt::SECRET_TYPE)
        || secret.metadata.deletion_timestamp.is_some()
    {
        return Ok(Action::await_change());
    }
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let annotations = secret.annotations();
    let sa_name = annotations
        .get(jwt::SA_NAME_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    let sa_uid = annotations
        .get(jwt::SA_UID_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    let account = match ctx
        .accounts
        .get(&ObjectRef::new(&sa_name).within(&namespace))
    {
        Some(sa) => Some(sa),
        // Not in the cache yet (made just now?): ask the API server, as upstream's fetchFromAPI.
        None if !sa_name.is_empty() => {
            Api::<ServiceAccount>::namespaced(ctx.client.clone(), &namespace)
                .get_opt(&sa_name)
                .await?
                .map(Arc::new)
        }
        None => None,
    };
    let account =
        account.filter(|sa| sa_uid.is_empty() || sa.uid().as_deref() == Some(sa_uid.as_str()));
    let Some(account) = account else {
        // Upstream deleteToken: the account is gone, so is its token (precondition: this Secret).
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: secret.uid(),
                resource_version: None,
            }),
            ..Default::default()
        };
        return match api.delete(&name, &dp).await {
            Ok(_) => {
                tracing::info!(%namespace, secret = %name, account = %sa_name, "deleted the token Secret of a missing service account");
                Ok(Action::await_change())
            }
            Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => Ok(Action::await_change()),
            Err(e) => Err(e),
        };
    };
    let data = secret.data.clone().unwrap_or_default();
    let has = |k: &str| data.get(k).is_some_and(|v| !v.0.is_empty());
    let uid = account.uid().unwrap_or_default();
    if has("token") && has("ca.crt") && has("namespace") && sa_uid == uid {
        return Ok(Action::await_change());
    }
    // Upstream generateTokenIfNeeded: fill what is missing, keep a token that is there.
    let mut next = (*secret).clone();
    next.metadata.managed_fields = None;
    let d = next.data.get_or_insert_with(Default::default);
    if !has("ca.crt") {
        d.insert("ca.crt".into(), ByteString(ctx.ca.clone().into_bytes()));
    }
    if !has("namespace") {
        d.insert(
            "namespace".into(),
            ByteString(namespace.clone().into_bytes()),
        );
    }
    if !has("token") {
        let claims = jwt::legacy_claims(&namespace, &sa_name, &uid, &name);
        let token = ctx
            .key
            .sign(&claims)
            .map_err(|e| kube::Error::Service(Box::new(e)))?;
        d.insert("token".into(), ByteString(token.into_bytes()));
    }
    let ann = next
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    ann.insert(jwt::SA_NAME_ANNOTATION.into(), sa_name.clone());
    ann.insert(jwt::SA_UID_ANNOTATION.into(), uid);
    match api.replace(&name, &PostParams::default(), &next).await {
        Ok(_) => {
            tracing::info!(%namespace, secret = %name, account = %sa_name, "populated a service-account token Secret");
            Ok(Action::await_change())
        }
        // Changed meanwhile: the informer brings the new version.
        Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => Ok(Action::await_change()),
        Err(e) => Err(e),
    }
}
