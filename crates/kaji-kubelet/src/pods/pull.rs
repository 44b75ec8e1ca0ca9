//! Images for containers, as upstream's image manager (pkg/kubelet/images): the pull policy
//! decides whether to pull, failures back off per image (ErrImagePull, then ImagePullBackOff),
//! and imagePullSecrets of type kubernetes.io/dockerconfigjson give registry credentials.

use super::Shared;
use super::events::{NORMAL, WARNING};
use crate::cri::api;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use std::time::Instant;

/// Why a container's image is not there (the container's waiting reason and message).
pub struct PullError {
    pub reason: &'static str,
    pub message: String,
}

/// The effective pull policy: the spec's, or upstream's default (Always for `:latest` or no tag).
pub fn pull_policy(c: &Container) -> String {
    if let Some(p) = c.image_pull_policy.as_deref().filter(|p| !p.is_empty()) {
        return p.to_string();
    }
    let image = c.image.clone().unwrap_or_default();
    let last = image.rsplit('/').next().unwrap_or_default();
    if image.contains('@') {
        "IfNotPresent".into()
    } else if !last.contains(':') || last.ends_with(":latest") {
        "Always".into()
    } else {
        "IfNotPresent".into()
    }
}

/// Makes sure the container's image is on the node; returns its reference.
pub async fn ensure_image(
    shared: &Shared,
    pod: &Pod,
    c: &Container,
    field_path: &str,
) -> Result<String, PullError> {
    let image = c.image.clone().unwrap_or_default();
    let mut cri = shared.cri.clone();
    let policy = pull_policy(c);
    let present = cri.image_status(&image).await.ok().flatten();
    let event = |t: &str, reason: &str, msg: String| {
        shared
            .recorder
            .pod(pod, Some(field_path.to_string()), t, reason, msg)
    };
    if policy != "Always"
        && let Some(img) = &present
    {
        event(
            NORMAL,
            "Pulled",
            format!("Container image \"{image}\" already present on machine"),
        );
        return Ok(img.id.clone());
    }
    if policy == "Never" {
        let message =
            format!("Container image \"{image}\" is not present with pull policy of Never");
        event(WARNING, "ErrImageNeverPull", message.clone());
        return Err(PullError {
            reason: "ErrImageNeverPull",
            message,
        });
    }
    let key = image.clone();
    let in_backoff = shared
        .image_backoff
        .lock()
        .ok()
        .and_then(|m| m.get(&key).map(|b| b.in_backoff()));
    if in_backoff == Some(true) {
        event(
            NORMAL,
            "BackOff",
            format!("Back-off pulling image \"{image}\""),
        );
        return Err(PullError {
            reason: "ImagePullBackOff",
            message: format!("Back-off pulling image \"{image}\""),
        });
    }
    event(NORMAL, "Pulling", format!("Pulling image \"{image}\""));
    let started = Instant::now();
    let auth = pull_auth(shared, pod, &image).await;
    match cri.pull_image(&image, auth).await {
        Ok(image_ref) => {
            if let Ok(mut m) = shared.image_backoff.lock() {
                m.remove(&key);
            }
            let took = started.elapsed();
            let size = cri
                .image_status(&image_ref)
                .await
                .ok()
                .flatten()
                .map_or(0, |i| i.size);
            event(
                NORMAL,
                "Pulled",
                format!(
                    "Successfully pulled image \"{image}\" in {took:.3?} ({took:.3?} including waiting). Image size: {size} bytes."
                ),
            );
            Ok(image_ref)
        }
        Err(e) => {
            if let Ok(mut m) = shared.image_backoff.lock() {
                m.entry(key).or_default().next();
            }
            let message = format!("Failed to pull image \"{image}\": {e:#}");
            event(WARNING, "Failed", message.clone());
            event(WARNING, "Failed", "Error: ErrImagePull".into());
            Err(PullError {
                reason: "ErrImagePull",
                message,
            })
        }
    }
}

/// The registry host of an image reference, as the docker config keys name it.
fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".into(),
    }
}

/// Credentials from the pod's imagePullSecrets for the image's registry.
async fn pull_auth(shared: &Shared, pod: &Pod, image: &str) -> Option<api::AuthConfig> {
    let secrets = pod.spec.as_ref()?.image_pull_secrets.clone()?;
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let registry = registry_of(image);
    let api: kube::Api<Secret> = kube::Api::namespaced(shared.client.clone(), &ns);
    for r in secrets {
        let Ok(Some(s)) = api.get_opt(&r.name).await else {
            continue;
        };
        let data = s.data.unwrap_or_default();
        let Some(raw) = data
            .get(".dockerconfigjson")
            .or_else(|| data.get(".dockercfg"))
        else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&raw.0) else {
            continue;
        };
        let auths = v.get("auths").unwrap_or(&v);
        let Some(map) = auths.as_object() else {
            continue;
        };
        for (key, entry) in map {
            let host = key
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or_default();
            let host = if host == "index.docker.io" || host == "registry-1.docker.io" {
                "docker.io"
            } else {
                host
            };
            if host != registry {
                continue;
            }
            let s = |k: &str| {
                entry
                    .get(k)
                    .and_then(|x| x.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            return Some(api::AuthConfig {
                username: s("username"),
                password: s("password"),
                auth: s("auth"),
                ..Default::default()
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_and_registries() {
        let c = |image: &str| Container {
            image: Some(image.into()),
            ..Default::default()
        };
        assert_eq!(pull_policy(&c("nginx")), "Always");
        assert_eq!(pull_policy(&c("nginx:latest")), "Always");
        assert_eq!(pull_policy(&c("nginx:1.15")), "IfNotPresent");
        assert_eq!(pull_policy(&c("127.0.0.1:5000/x")), "Always");
        assert_eq!(registry_of("127.0.0.1:5000/x"), "127.0.0.1:5000");
        assert_eq!(registry_of("library/nginx"), "docker.io");
    }
}
