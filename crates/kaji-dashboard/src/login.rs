//! `kaji dashboard` on the server's machine, as `minikube dashboard`: with the admin kubeconfig
//! of the data dir, makes sure of a ServiceAccount `kube-system/kaji-dashboard-admin` bound to
//! `cluster-admin` (idempotent), asks TokenRequest for a token valid one hour, and gives the URL
//! that carries it in its fragment (`/dashboard/#token=...`: a fragment never reaches a server
//! or a log; the page reads it and forgets it).

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::Path;

pub const NAMESPACE: &str = "kube-system";
pub const SERVICE_ACCOUNT: &str = "kaji-dashboard-admin";
pub const CLUSTER_ROLE_BINDING: &str = "kaji-dashboard-admin";
/// How long the login lasts.
pub const TOKEN_SECONDS: i64 = 3600;

/// A URL carrying a login, and when the login ends.
pub struct Login {
    pub url: String,
    pub expires: String,
}

fn api_error(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

async fn send(
    client: &kube::Client,
    method: http::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, kube::Error> {
    let mut req = http::Request::builder().method(method).uri(path);
    if body.is_some() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap_or_default())
        .unwrap_or_default();
    let req = req.body(bytes).map_err(kube::Error::HttpError)?;
    client.request::<Value>(req).await
}

/// Makes the ServiceAccount and its binding if they are missing; `say` reports each step.
async fn ensure_admin(client: &kube::Client, say: &mut dyn FnMut(String)) -> Result<()> {
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE,
        "labels": {"app.kubernetes.io/managed-by": "kaji-dashboard"}}});
    match send(
        client,
        http::Method::POST,
        &format!("/api/v1/namespaces/{NAMESPACE}/serviceaccounts"),
        Some(&sa),
    )
    .await
    {
        Ok(_) => say(format!(
            "serviceaccount/{SERVICE_ACCOUNT} created in {NAMESPACE}"
        )),
        Err(e) if api_error(&e) == Some(409) => {}
        Err(e) => {
            return Err(e).context(format!(
                "creating the ServiceAccount {NAMESPACE}/{SERVICE_ACCOUNT}"
            ));
        }
    }
    let subject =
        json!({"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE});
    let role_ref = json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"});
    let crb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": CLUSTER_ROLE_BINDING, "labels": {"app.kubernetes.io/managed-by": "kaji-dashboard"}},
        "roleRef": role_ref, "subjects": [subject]});
    let path = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";
    match send(client, http::Method::POST, path, Some(&crb)).await {
        Ok(_) => say(format!(
            "clusterrolebinding/{CLUSTER_ROLE_BINDING} created (cluster-admin)"
        )),
        Err(e) if api_error(&e) == Some(409) => {
            // Someone's binding of that name: it must be ours (roleRef cannot change).
            let mut existing = send(
                client,
                http::Method::GET,
                &format!("{path}/{CLUSTER_ROLE_BINDING}"),
                None,
            )
            .await?;
            if existing["roleRef"]["name"] != "cluster-admin"
                || existing["roleRef"]["kind"] != "ClusterRole"
            {
                bail!(
                    "clusterrolebinding/{CLUSTER_ROLE_BINDING} exists but binds {} {}, not ClusterRole cluster-admin; delete it and run `kaji dashboard` again",
                    existing["roleRef"]["kind"],
                    existing["roleRef"]["name"]
                );
            }
            let subjects = existing["subjects"].as_array().cloned().unwrap_or_default();
            let ours = subjects.iter().any(|s| {
                s["kind"] == "ServiceAccount"
                    && s["name"] == SERVICE_ACCOUNT
                    && s["namespace"] == NAMESPACE
            });
            if !ours {
                let mut subjects = subjects;
                subjects.push(subject);
                existing["subjects"] = Value::Array(subjects);
                send(client, http::Method::PUT, &format!("{path}/{CLUSTER_ROLE_BINDING}"), Some(&existing))
                    .await
                    .context(format!("adding {NAMESPACE}/{SERVICE_ACCOUNT} to clusterrolebinding/{CLUSTER_ROLE_BINDING}"))?;
                say(format!("clusterrolebinding/{CLUSTER_ROLE_BINDING} updated"));
            }
        }
        Err(e) => {
            return Err(e).context(format!(
                "creating the ClusterRoleBinding {CLUSTER_ROLE_BINDING}"
            ));
        }
    }
    Ok(())
}

/// The cluster's URL in a kubeconfig (its current context's cluster).
pub fn server_url(kubeconfig: &kube::config::Kubeconfig) -> Result<String> {
    let context = kubeconfig
        .current_context
        .as_deref()
        .context("the kubeconfig has no current-context")?;
    let cluster = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .with_context(|| format!("the kubeconfig has no context {context:?}"))?;
    kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == cluster)
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .with_context(|| format!("the kubeconfig's cluster {cluster:?} has no server"))
}

/// Logs in with the admin kubeconfig at `path`: the URL of the dashboard with a fresh token.
pub async fn login(path: &Path, say: &mut dyn FnMut(String)) -> Result<Login> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
    let server = server_url(&kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("loading the kubeconfig {}", path.display()))?;
    let client = kube::Client::try_from(config)?;
    // Is the server up, and does it serve the dashboard?
    let probe = http::Request::get(format!("{}/", crate::PREFIX)).body(Vec::new())?;
    match client.request_text(probe).await {
        Ok(_) => {}
        Err(e) if api_error(&e) == Some(404) => {
            bail!("{server} serves no dashboard (was it started with --disable dashboard?)")
        }
        Err(e) => return Err(e).context(format!("reaching the API server at {server}")),
    }
    ensure_admin(&client, say).await?;
    let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": TOKEN_SECONDS}});
    let answer = send(
        &client,
        http::Method::POST,
        &format!("/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{SERVICE_ACCOUNT}/token"),
        Some(&request),
    )
    .await
    .context(format!(
        "asking for a token of {NAMESPACE}/{SERVICE_ACCOUNT}"
    ))?;
    let token = answer["status"]["token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .context("the TokenRequest answer carries no token")?;
    let expires = answer["status"]["expirationTimestamp"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok(Login {
        url: format!(
            "{}{}/#token={token}",
            server.trim_end_matches('/'),
            crate::PREFIX
        ),
        expires,
    })
}
