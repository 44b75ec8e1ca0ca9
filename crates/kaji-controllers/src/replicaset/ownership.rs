//! Selectors and controller references: which objects a controller claims, adopts and
//! releases (upstream pkg/controller/controller_ref_manager.go).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kaji_api::selector::{LabelSelector as Selector, Requirement};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// The selector of a `metav1.LabelSelector`; `None` when it cannot be parsed (matches nothing).
pub fn selector(sel: &LabelSelector) -> Option<Selector> {
    let v = serde_json::to_value(sel).ok()?;
    Selector::from_object(&v).ok()
}

/// The selector of a plain map (a ReplicationController's `spec.selector`).
pub fn map_selector(map: &BTreeMap<String, String>) -> Selector {
    Selector {
        requirements: map
            .iter()
            .map(|(k, v)| Requirement::Equals(k.clone(), v.clone()))
            .collect(),
    }
}

pub fn matches(sel: &Selector, labels: Option<&BTreeMap<String, String>>) -> bool {
    sel.matches_with(|k| labels.and_then(|l| l.get(k)).map(String::as_str))
}

/// The controller reference of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// The reference a controller puts on what it creates or adopts.
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// How a controller stands to an object it may claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Ours and matching: keep.
    Keep,
    /// An orphan that matches: adopt.
    Adopt,
    /// Ours but no longer matching: release.
    Release,
    /// Not ours.
    Ignore,
}

/// Upstream `ClaimObject`: whether `owner_uid` (whose selector is `sel`) keeps, adopts or
/// releases an object with metadata `meta`. A controller being deleted adopts and releases
/// nothing.
pub fn claim(owner_uid: &str, owner_deleting: bool, sel: &Selector, meta: &ObjectMeta) -> Claim {
    let matching = !sel.is_empty() && matches(sel, meta.labels.as_ref());
    match controller_of(meta) {
        Some(r) if r.uid == owner_uid => {
            if matching || owner_deleting {
                Claim::Keep
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None if matching && !owner_deleting && meta.deletion_timestamp.is_none() => Claim::Adopt,
        None => Claim::Ignore,
    }
}

/// The merge patch that adopts an object: its owner references plus ours, guarded by its
/// resourceVersion so that a concurrent change is not lost.
pub fn adopt_patch(meta: &ObjectMeta, ours: OwnerReference) -> serde_json::Value {
    let mut refs = meta.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != ours.uid);
    refs.push(ours);
    serde_json::json!({"metadata": {"ownerReferences": refs, "resourceVersion": meta.resource_version, "uid": meta.uid}})
}

/// The merge patch that releases an object (drops our owner reference).
pub fn release_patch(meta: &ObjectMeta, owner_uid: &str) -> serde_json::Value {
    let refs: Vec<OwnerReference> = meta
        .owner_references
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.uid != owner_uid)
        .collect();
    let refs = if refs.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::json!(refs)
    };
    serde_json::json!({"metadata": {"ownerReferences": refs, "resourceVersion": meta.resource_version, "uid": meta.uid}})
}

/// Carries out a claim through the API (upstream ControllerRefManager): an object to adopt is
/// patched with `ours` and returned; one to release loses the reference; kept objects are
/// returned as they are, ignored ones are not ours.
pub async fn settle<K>(api: &Api<K>, obj: &K, claim: Claim, ours: &OwnerReference) -> Option<K>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = match claim {
        Claim::Keep => return Some(obj.clone()),
        Claim::Ignore => return None,
        Claim::Adopt => adopt_patch(obj.meta(), ours.clone()),
        Claim::Release => release_patch(obj.meta(), &ours.uid),
    };
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(patched) => matches!(claim, Claim::Adopt).then_some(patched),
        Err(e) => {
            tracing::info!(kind = %K::kind(&()), name = %obj.name_any(), ?claim, error = %e, "could not update the controller reference");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(labels: &[(&str, &str)], owner: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            owner_references: owner.map(|u| {
                vec![OwnerReference {
                    uid: u.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn claims_as_upstream() {
        let sel = map_selector(
            &[("app".to_string(), "web".to_string())]
                .into_iter()
                .collect(),
        );
        assert_eq!(
            claim("u1", false, &sel, &meta(&[("app", "web")], None)),
            Claim::Adopt
        );
        assert_eq!(
            claim("u1", true, &sel, &meta(&[("app", "web")], None)),
            Claim::Ignore
        );
        assert_eq!(
            claim("u1", false, &sel, &meta(&[("app", "web")], Some("u1"))),
            Claim::Keep
        );
        assert_eq!(
            claim("u1", false, &sel, &meta(&[("app", "db")], Some("u1"))),
            Claim::Release
        );
        assert_eq!(
            claim("u1", false, &sel, &meta(&[("app", "web")], Some("u2"))),
            Claim::Ignore
        );
    }
}
