//! ServiceAccount admission (upstream `plugin/pkg/admission/serviceaccount`, 1.33), for pods at
//! create: every pod runs as a service account, `default` unless it names one ([`admit`], both
//! spellings of the field); the account must exist (403 `error looking up service account
//! NS/NAME: serviceaccount "NAME" not found`); unless `automountServiceAccountToken` is false on
//! the pod or else on the account, the pod gets the projected `kube-api-access-XXXXX` volume
//! (bound token, `kube-root-ca.crt`'s `ca.crt`, the namespace) mounted read-only at
//! /var/run/secrets/kubernetes.io/serviceaccount in every container that mounts nothing there.
//! Mirror pods may reference no service-account credentials and get none.
//!
//! The `default` account is made by the controller manager right after its namespace: a pod
//! created at once may arrive first. Upstream's plug-in looks a `default` account up again
//! through the API up to 10 times, 100-200 ms apart, before refusing; Kaji reads the store and
//! waits up to [`DEFAULT_SA_WAIT`] for it, a little longer than upstream's ~1.5 s because the
//! controller manager shares two cores with everything else here. A server run without its
//! controller manager (`--disable-controllers`) has no one to make accounts, the root CA
//! ConfigMap or tokens' Secrets: there the plug-in only names the account (as upstream's
//! `--disable-admission-plugins=ServiceAccount` would leave a lone kube-apiserver usable).

use crate::objects::{self, meta_str};
use crate::registry::{Admission, Registry};
use kaji_api::{ApiError, ResourceInfo};
use serde_json::{Map, Value, json};
use std::time::Duration;

/// Upstream's DefaultAPITokenMountPath.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Upstream's ServiceAccountVolumeName (the prefix of the generated name).
pub const VOLUME_PREFIX: &str = "kube-api-access";
/// How long a pod naming the `default` account waits for the controller manager to make it.
pub const DEFAULT_SA_WAIT: Duration = Duration::from_secs(5);
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Sets `serviceAccountName` (and the deprecated `serviceAccount`) of a pod spec.
pub fn admit(spec: &mut Map<String, Value>) {
    let sa = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), json!(sa));
    spec.insert("serviceAccount".into(), json!(sa));
}

/// The store-reading part for a pod at create: the account exists, the token volume.
pub async fn admit_create(
    storage: &dyn kaji_store::Store,
    registry: &Registry,
    info: &ResourceInfo,
    admission: &Admission,
    obj: &mut Value,
) -> Result<(), ApiError> {
    if !(info.group.is_empty() && info.plural == "pods") {
        return Ok(());
    }
    let pod_name = meta_str(obj, "name")
        .or_else(|| meta_str(obj, "generateName"))
        .unwrap_or_default()
        .to_string();
    let namespace = meta_str(obj, "namespace").unwrap_or_default().to_string();
    if obj
        .pointer(&format!(
            "/metadata/annotations/{}",
            MIRROR_ANNOTATION.replace('/', "~1")
        ))
        .is_some()
    {
        return check_mirror_pod(info, &pod_name, obj);
    }
    if !admission.service_account {
        return Ok(());
    }
    let sa_name = obj
        .pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let (Some(accounts), Some(namespaces)) = (
        registry.get("", "v1", "serviceaccounts"),
        registry.get("", "v1", "namespaces"),
    ) else {
        return Ok(());
    };
    // A missing or terminating namespace is NamespaceLifecycle's to refuse (upstream runs it
    // first).
    let ns = storage
        .get(&objects::key(namespaces.info(), None, &namespace))
        .await
        .map_err(crate::store_error)?
        .map(|kv| objects::decode(&kv));
    let active = ns.is_some_and(|ns| {
        meta_str(&ns, "deletionTimestamp").is_none()
            && ns.pointer("/status/phase").and_then(Value::as_str) != Some("Terminating")
    });
    if namespace.is_empty() || !active {
        return Ok(());
    }
    let key = objects::key(accounts.info(), Some(&namespace), &sa_name);
    let deadline = tokio::time::Instant::now()
        + if sa_name == "default" {
            DEFAULT_SA_WAIT
        } else {
            Duration::ZERO
        };
    let sa = loop {
        if let Some(kv) = storage.get(&key).await.map_err(crate::store_error)? {
            break objects::decode(&kv);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(super::forbidden(
                info,
                &pod_name,
                &format!(
                    "error looking up service account {namespace}/{sa_name}: serviceaccount {sa_name:?} not found"
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if should_automount(&sa, obj) {
        mount_token(obj);
    }
    default_pull_secrets(&sa, obj);
    limit_secret_references(&sa, obj).map_err(|e| super::forbidden(info, &pod_name, &e))
}

/// Upstream's shouldAutomount: the pod's setting, else the account's, else true.
fn should_automount(sa: &Value, pod: &Value) -> bool {
    pod.pointer("/spec/automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| {
            sa.get("automountServiceAccountToken")
                .and_then(Value::as_bool)
        })
        .unwrap_or(true)
}

/// The projected volume of upstream's TokenVolumeSource.
pub fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
            "defaultMode": 420,
        },
    })
}

/// Upstream's mountServiceAccountToken: reuse a `kube-api-access-*` volume the pod has, else
/// make one; mount it in every init container and container not already mounting the path.
fn mount_token(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .find(|n| n.starts_with(&format!("{VOLUME_PREFIX}-")))
        .map(str::to_string);
    let name = existing
        .clone()
        .unwrap_or_else(|| format!("{VOLUME_PREFIX}-{}", crate::objects::random_suffix()));
    let mount = json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needed = false;
    for key in ["initContainers", "containers"] {
        for c in spec
            .get_mut(key)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(c) = c.as_object_mut() else { continue };
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            if !mounts.is_array() {
                *mounts = json!([]);
            }
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            if mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH))
            {
                continue;
            }
            mounts.push(mount.clone());
            needed = true;
        }
    }
    if needed && existing.is_none() {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if !volumes.is_array() {
            *volumes = json!([]);
        }
        if let Some(v) = volumes.as_array_mut() {
            v.push(token_volume(&name));
        }
    }
}

/// Upstream: a mirror pod (made by a kubelet from a static pod) may not use service-account
/// credentials (Kaji's pod strategy has named `default` already, which stands for none).
fn check_mirror_pod(info: &ResourceInfo, pod_name: &str, pod: &Value) -> Result<(), ApiError> {
    let sa = pod
        .pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !sa.is_empty() && sa != "default" {
        return Err(super::forbidden(
            info,
            pod_name,
            "a mirror pod may not reference service accounts",
        ));
    }
    if !secret_names(pod).is_empty() {
        return Err(super::forbidden(
            info,
            pod_name,
            "a mirror pod may not reference secrets",
        ));
    }
    let volumes = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    let projected = volumes.flat_map(|v| {
        v.pointer("/projected/sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    });
    if projected
        .into_iter()
        .any(|s| s.get("serviceAccountToken").is_some())
    {
        return Err(super::forbidden(
            info,
            pod_name,
            "a mirror pod may not use ServiceAccountToken volume projections",
        ));
    }
    Ok(())
}

/// Every Secret a pod names (upstream's VisitPodSecretNames): pull secrets, containers' env and
/// envFrom, secret and projected volumes, and the `secretRef`s of other volume sources.
fn secret_names(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |v: Option<&Value>| {
        if let Some(n) = v.and_then(Value::as_str).filter(|n| !n.is_empty()) {
            out.push(n.to_string());
        }
    };
    let list = |p: &str| {
        pod.pointer(p)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for r in list("/spec/imagePullSecrets") {
        add(r.get("name"));
    }
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        for c in list(&format!("/spec/{key}")) {
            for e in c
                .get("envFrom")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                add(e.pointer("/secretRef/name"));
            }
            for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
                add(e.pointer("/valueFrom/secretKeyRef/name"));
            }
        }
    }
    for v in list("/spec/volumes") {
        add(v.pointer("/secret/secretName"));
        for s in v
            .pointer("/projected/sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            add(s.pointer("/secret/name"));
        }
        if let Some(source) = v
            .as_object()
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() != "name").map(|(_, s)| s))
        {
            add(source.pointer("/secretRef/name"));
            add(source.pointer("/nodePublishSecretRef/name"));
        }
    }
    out
}

/// Upstream's imagePullSecrets default: a pod naming none gets its account's.
fn default_pull_secrets(sa: &Value, pod: &mut Value) {
    let has = pod
        .pointer("/spec/imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let from_sa: Vec<Value> = sa
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("name").and_then(Value::as_str))
        .map(|n| json!({"name": n}))
        .collect();
    if !has && !from_sa.is_empty() {
        pod["spec"]["imagePullSecrets"] = json!(from_sa);
    }
}

/// Upstream's limitSecretReferences, for accounts annotated
/// `kubernetes.io/enforce-mountable-secrets: "true"`: a pod may use only the Secrets its account
/// lists (`secrets`, and `imagePullSecrets` for pull secrets).
fn limit_secret_references(sa: &Value, pod: &Value) -> Result<(), String> {
    let enforce = sa
        .pointer("/metadata/annotations/kubernetes.io~1enforce-mountable-secrets")
        .and_then(Value::as_str)
        .is_some_and(|v| matches!(v, "true" | "True" | "TRUE" | "1" | "t" | "T"));
    if !enforce {
        return Ok(());
    }
    let sa_name = meta_str(sa, "name").unwrap_or_default();
    let names = |k: &str| -> Vec<String> {
        sa.get(k)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.get("name").and_then(Value::as_str).map(str::to_string))
            .collect()
    };
    let (mountable, pullable) = (names("secrets"), names("imagePullSecrets"));
    let refused = |what: String| {
        Err(format!(
            "{what} is not allowed because service account {sa_name} does not reference that secret"
        ))
    };
    for v in pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(n) = v.pointer("/secret/secretName").and_then(Value::as_str)
            && !mountable.iter().any(|m| m == n)
        {
            return refused(format!("volume with secret.secretName=\"{n}\""));
        }
    }
    for (key, what) in [
        ("initContainers", "init container"),
        ("containers", "container"),
    ] {
        for c in pod
            .pointer(&format!("/spec/{key}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let cname = c.get("name").and_then(Value::as_str).unwrap_or_default();
            for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
                if let Some(n) = e
                    .pointer("/valueFrom/secretKeyRef/name")
                    .and_then(Value::as_str)
                    && !mountable.iter().any(|m| m == n)
                {
                    let ename = e.get("name").and_then(Value::as_str).unwrap_or_default();
                    return refused(format!(
                        "{what} {cname} with envVar {ename} referencing secret.secretName=\"{n}\""
                    ));
                }
            }
        }
    }
    for (i, r) in pod
        .pointer("/spec/imagePullSecrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let n = r.get("name").and_then(Value::as_str).unwrap_or_default();
        if !pullable.iter().any(|m| m == n) {
            return Err(format!(
                "imagePullSecrets[{i}].name=\"{n}\" is not allowed because service account {sa_name} does not reference that imagePullSecret"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec})
    }

    #[test]
    fn every_container_gets_the_token_mount_once() {
        let mut p = pod(json!({
            "initContainers": [{"name": "i"}],
            "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "own", "mountPath": TOKEN_MOUNT_PATH}]}],
        }));
        mount_token(&mut p);
        let vols = p["spec"]["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 1);
        let name = vols[0]["name"].as_str().unwrap();
        assert!(
            name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5,
            "{name}"
        );
        assert_eq!(vols[0]["projected"]["defaultMode"], 420);
        assert_eq!(
            vols[0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        assert_eq!(
            p["spec"]["initContainers"][0]["volumeMounts"][0],
            json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH})
        );
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"][0]["name"], name);
        assert_eq!(
            p["spec"]["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        // A second pass (an existing kube-api-access volume) adds nothing.
        let before = p.clone();
        mount_token(&mut p);
        assert_eq!(p, before);
    }

    #[test]
    fn no_volume_when_every_container_mounts_the_path() {
        let mut p = pod(
            json!({"containers": [{"name": "a", "volumeMounts": [{"name": "x", "mountPath": TOKEN_MOUNT_PATH}]}]}),
        );
        mount_token(&mut p);
        assert!(p["spec"].get("volumes").is_none());
    }

    #[test]
    fn pull_secrets_come_from_the_account_and_mountable_secrets_are_enforced() {
        let sa = json!({"metadata": {"name": "sa", "annotations": {"kubernetes.io/enforce-mountable-secrets": "true"}},
            "secrets": [{"name": "ok"}], "imagePullSecrets": [{"name": "reg"}]});
        let mut p = pod(
            json!({"containers": [{"name": "c", "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "ok", "key": "k"}}}]}]}),
        );
        default_pull_secrets(&sa, &mut p);
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "reg"}]));
        assert_eq!(limit_secret_references(&sa, &p), Ok(()));
        let bad = pod(
            json!({"containers": [{"name": "c", "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "no", "key": "k"}}}]}]}),
        );
        assert_eq!(
            limit_secret_references(&sa, &bad).unwrap_err(),
            r#"container c with envVar E referencing secret.secretName="no" is not allowed because service account sa does not reference that secret"#
        );
        let vol = pod(json!({"volumes": [{"name": "v", "secret": {"secretName": "no"}}]}));
        assert!(
            limit_secret_references(&sa, &vol)
                .unwrap_err()
                .starts_with(r#"volume with secret.secretName="no" is not allowed"#)
        );
        let pull = pod(json!({"imagePullSecrets": [{"name": "other"}]}));
        assert!(
            limit_secret_references(&sa, &pull)
                .unwrap_err()
                .starts_with(r#"imagePullSecrets[0].name="other" is not allowed"#)
        );
        // Without the annotation anything goes.
        assert_eq!(
            limit_secret_references(&json!({"metadata": {"name": "sa"}}), &bad),
            Ok(())
        );
        assert_eq!(secret_names(&vol), vec!["no"]);
    }

    #[test]
    fn automount_pod_setting_wins_over_the_account() {
        let sa_off = json!({"automountServiceAccountToken": false});
        assert!(!should_automount(&sa_off, &pod(json!({}))));
        assert!(should_automount(
            &sa_off,
            &pod(json!({"automountServiceAccountToken": true}))
        ));
        assert!(!should_automount(
            &json!({}),
            &pod(json!({"automountServiceAccountToken": false}))
        ));
        assert!(should_automount(&json!({}), &pod(json!({}))));
    }
}
