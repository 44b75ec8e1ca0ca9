//! A container's environment, as upstream's `makeEnvironmentVariables`
//! (pkg/kubelet/kubelet_pods.go): service links first, then `envFrom` (keys that are not valid
//! names are skipped and reported), then `env` with `$(VAR)` expansion over what came before.

use crate::volumes::downward_api::{self, Allocatable};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::Api;

/// Why a container's configuration could not be built (CreateContainerConfigError).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

pub use crate::volumes::downward_api::PodFacts;

/// The value of a downward API `fieldRef` path: the metadata paths as the downwardAPI volume
/// has them (Go quoting of label and annotation maps), plus the ones only env offers.
pub fn field_value(pod: &Pod, path: &str, facts: &PodFacts) -> Result<String, ConfigError> {
    let spec = pod.spec.as_ref();
    Ok(match path {
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => facts.pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.to_string(),
        other => downward_api::field_value(pod, other).map_err(ConfigError)?,
    })
}

/// Whether `name` is a valid environment variable name (upstream's IsEnvVarName: no '=' and
/// only [-._a-zA-Z0-9], not starting with a digit).
pub fn is_env_var_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Expands `$(VAR)` references against `env` (`$$` escapes; unknown references stay as written).
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let lookup = |k: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'('
                && let Some(end) = s[i + 2..].find(')')
            {
                let name = &s[i + 2..i + 2 + end];
                if let Some(v) = lookup(name) {
                    out.push_str(&v);
                } else {
                    out.push_str(&s[i..i + 3 + end]);
                }
                i += 3 + end;
                continue;
            }
        }
        let ch = s[i..].chars().next().unwrap_or('?');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The variable names `$(VAR)` references in `s` name (`$$` escapes one).
pub fn references(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            rest = r;
        } else if let Some(r) = after.strip_prefix('(')
            && let Some(end) = r.find(')')
        {
            out.push(r[..end].to_string());
            rest = &r[end + 1..];
        } else {
            rest = after;
        }
    }
    out
}

/// Everything `make_env` needs from the API, fetched once per container start.
pub struct EnvSources {
    /// The Services of the pod's namespace and `default/kubernetes`, listed from the API server
    /// at each container start (upstream reads an informer cache; a list per start is cheap at
    /// Kaji's scale and never stale).
    pub services: Vec<Service>,
}

/// Builds the environment of `container`. Returns the variables and the names skipped as invalid.
pub async fn make_env(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
    facts: &PodFacts<'_>,
    sources: &EnvSources,
) -> Result<(Vec<(String, String)>, Vec<String>), ConfigError> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut env: Vec<(String, String)> = Vec::new();
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    // Service variables come first so that envFrom and env override them and `$(VAR)` can
    // refer to them (upstream's MappingFuncFor(tmpEnv, serviceEnv)).
    env.extend(super::service_env::service_env(
        &ns,
        links,
        &sources.services,
    ));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut skipped = Vec::new();
    for from in container.env_from.clone().unwrap_or_default() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            let name = r.name.clone();
            match cms
                .get_opt(&name)
                .await
                .map_err(|e| ConfigError(e.to_string()))?
            {
                Some(cm) => {
                    for (k, v) in cm.data.unwrap_or_default() {
                        let key = format!("{prefix}{k}");
                        if is_env_var_name(&key) {
                            env.push((key, v));
                        } else {
                            skipped.push(key);
                        }
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(ConfigError(format!("configmap \"{name}\" not found"))),
            }
        }
        if let Some(r) = &from.secret_ref {
            let name = r.name.clone();
            match secrets
                .get_opt(&name)
                .await
                .map_err(|e| ConfigError(e.to_string()))?
            {
                Some(s) => {
                    for (k, v) in s.data.unwrap_or_default() {
                        let key = format!("{prefix}{k}");
                        if is_env_var_name(&key) {
                            env.push((key, String::from_utf8_lossy(&v.0).into_owned()));
                        } else {
                            skipped.push(key);
                        }
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(ConfigError(format!("secret \"{name}\" not found"))),
            }
        }
    }
    for var in container.env.clone().unwrap_or_default() {
        let value = if let Some(from) = &var.value_from {
            if let Some(r) = &from.config_map_key_ref {
                match cms
                    .get_opt(&r.name)
                    .await
                    .map_err(|e| ConfigError(e.to_string()))?
                {
                    Some(cm) => match cm.data.unwrap_or_default().remove(&r.key) {
                        Some(v) => v,
                        None if r.optional == Some(true) => continue,
                        None => {
                            return Err(ConfigError(format!(
                                "couldn't find key {} in ConfigMap {ns}/{}",
                                r.key, r.name
                            )));
                        }
                    },
                    None if r.optional == Some(true) => continue,
                    None => return Err(ConfigError(format!("configmap \"{}\" not found", r.name))),
                }
            } else if let Some(r) = &from.secret_key_ref {
                match secrets
                    .get_opt(&r.name)
                    .await
                    .map_err(|e| ConfigError(e.to_string()))?
                {
                    Some(s) => match s.data.unwrap_or_default().remove(&r.key) {
                        Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                        None if r.optional == Some(true) => continue,
                        None => {
                            return Err(ConfigError(format!(
                                "couldn't find key {} in Secret {ns}/{}",
                                r.key, r.name
                            )));
                        }
                    },
                    None if r.optional == Some(true) => continue,
                    None => return Err(ConfigError(format!("secret \"{}\" not found", r.name))),
                }
            } else if let Some(r) = &from.field_ref {
                field_value(pod, &r.field_path, facts)?
            } else if let Some(r) = &from.resource_field_ref {
                let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                    Some(n) => crate::resources::find_container(pod, n).unwrap_or(container),
                    None => container,
                };
                // Limits not set are the node's allocatable, as for the downwardAPI volume.
                let allocatable = Allocatable::read(client, pod, facts).await;
                downward_api::resource_value(
                    target,
                    &r.resource,
                    r.divisor.as_ref().map(|q| q.0.as_str()),
                    &allocatable,
                )
                .map_err(ConfigError)?
            } else {
                String::new()
            }
        } else {
            expand(var.value.as_deref().unwrap_or(""), &env)
        };
        env.push((var.name, value));
    }
    // Later definitions win, as in a shell; keep the last of each name in first-seen order.
    let mut dedup: Vec<(String, String)> = Vec::new();
    for (k, v) in env {
        if let Some(e) = dedup.iter_mut().find(|(n, _)| *n == k) {
            e.1 = v;
        } else {
            dedup.push((k, v));
        }
    }
    Ok((dedup, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_references() {
        let env = vec![("A".to_string(), "x".to_string())];
        assert_eq!(expand("$(A)-$(B)-$$(A)", &env), "x-$(B)-$(A)");
    }

    #[test]
    fn env_names() {
        assert!(is_env_var_name("A_b.c-d"));
        assert!(!is_env_var_name("1A"));
        assert!(!is_env_var_name("a=b"));
    }
}
