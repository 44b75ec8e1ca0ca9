//! NodeRestriction (upstream plugin/pkg/admission/noderestriction): what a kubelet
//! (`system:node:<name>` in `system:nodes`) may write, past the Node authorizer.
//!
//! - Node: only its own, not its taints, not `node-restriction.kubernetes.io/` labels nor
//!   kubernetes.io/k8s.io labels outside the kubelet's own set;
//! - pods: create only mirror pods bound to itself (Kaji has no static pods, so in practice
//!   none), delete, evict and update the status only of pods bound to itself;
//! - PVC status: only status.capacity and status.conditions;
//! - TokenRequests: only bound to a pod on itself; Leases: only its own in `kube-node-lease`.
//!
//! The generic store calls [`admit`] on create, update (after the update is computed, with the
//! old object) and delete, and the eviction and TokenRequest handlers call theirs; the user comes
//! from the request's task-local (`registry::certificates::with_user`).

use crate::auth::node::node_identity;
use kaji_api::{ApiError, ResourceInfo};
use serde_json::Value;
use std::collections::BTreeSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    fn upstream(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// What is being admitted.
pub struct Request<'a> {
    pub operation: Operation,
    pub info: &'a ResourceInfo,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    /// The object as it would be stored (create, update).
    pub object: Option<&'a Value>,
    /// The object as stored now (update, delete).
    pub old: Option<&'a Value>,
}

/// The requesting node, when the request comes from one: `Some("")` for a member of
/// `system:nodes` whose name names no node.
fn requesting_node() -> Option<(String, String)> {
    crate::registry::certificates::current_user(|u| {
        let u = u?;
        node_identity(u).map(|n| (n.to_string(), u.name.clone()))
    })
}

fn forbidden(r: &Request<'_>, msg: impl AsRef<str>) -> ApiError {
    super::forbidden(r.info, r.name, msg.as_ref())
}

fn labels(obj: Option<&Value>) -> Vec<(String, String)> {
    obj.and_then(|o| o.pointer("/metadata/labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn node_name_of(pod: Option<&Value>) -> &str {
    pod.and_then(|p| p.pointer("/spec/nodeName"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Upstream's getModifiedLabels: keys added, removed or changed.
fn modified_labels(new: &[(String, String)], old: &[(String, String)]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (k, v) in new {
        if !old.iter().any(|(k2, v2)| k2 == k && v2 == v) {
            out.insert(k.clone());
        }
    }
    for (k, v) in old {
        if !new.iter().any(|(k2, v2)| k2 == k && v2 == v) {
            out.insert(k.clone());
        }
    }
    out
}

/// The labels a kubelet sets itself (k8s.io/kubelet/pkg/apis IsKubeletLabel).
fn is_kubelet_label(key: &str) -> bool {
    const LABELS: &[&str] = &[
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
    ];
    if LABELS.contains(&key) {
        return true;
    }
    let ns = key.split_once('/').map_or("", |(ns, _)| ns);
    ["kubelet.kubernetes.io", "node.kubernetes.io"]
        .iter()
        .any(|allowed| ns == *allowed || ns.ends_with(&format!(".{allowed}")))
}

/// Upstream's getForbiddenLabels.
fn forbidden_labels(modified: BTreeSet<String>) -> Vec<String> {
    modified
        .into_iter()
        .filter(|l| {
            let ns = l.split_once('/').map_or("", |(ns, _)| ns);
            let restricted = ns == "node-restriction.kubernetes.io"
                || ns.ends_with(".node-restriction.kubernetes.io");
            let kubernetes = ns == "kubernetes.io"
                || ns.ends_with(".kubernetes.io")
                || ns == "k8s.io"
                || ns.ends_with(".k8s.io");
            restricted || (kubernetes && !is_kubelet_label(l))
        })
        .collect()
}

/// Runs the plug-in on a create, update or delete made by the generic store.
pub async fn admit(
    storage: &dyn kaji_store::Store,
    registry: &crate::registry::Registry,
    r: &Request<'_>,
) -> Result<(), ApiError> {
    let Some((node, user)) = requesting_node() else {
        return Ok(());
    };
    if !matches!(
        (r.info.group, r.info.plural),
        ("", "pods" | "nodes" | "persistentvolumeclaims") | ("coordination.k8s.io", "leases")
    ) {
        return Ok(());
    }
    if node.is_empty() {
        return Err(forbidden(
            r,
            format!("could not determine node from user {user:?}"),
        ));
    }
    let node = node.as_str();
    match (r.info.group, r.info.plural) {
        ("", "pods") => admit_pod(storage, registry, node, r).await,
        ("", "nodes") => admit_node(node, r),
        ("", "persistentvolumeclaims") => admit_pvc(node, r),
        _ => admit_lease(node, r),
    }
}

async fn admit_pod(
    storage: &dyn kaji_store::Store,
    registry: &crate::registry::Registry,
    node: &str,
    r: &Request<'_>,
) -> Result<(), ApiError> {
    match (r.subresource, r.operation) {
        ("", Operation::Create) => admit_mirror_pod(storage, registry, node, r).await,
        ("", Operation::Delete) => {
            if node_name_of(r.old) != node {
                return Err(forbidden(
                    r,
                    format!("node {node:?} can only delete pods with spec.nodeName set to itself"),
                ));
            }
            Ok(())
        }
        ("", op) => Err(forbidden(
            r,
            format!(
                "unexpected operation {:?}, node {node:?} can only create and delete mirror pods",
                op.upstream()
            ),
        )),
        ("status", Operation::Update) => {
            if node_name_of(r.old) != node {
                return Err(forbidden(
                    r,
                    format!(
                        "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
                    ),
                ));
            }
            let sorted = |o| {
                let mut l = labels(o);
                l.sort();
                l
            };
            if sorted(r.object) != sorted(r.old) {
                return Err(forbidden(
                    r,
                    format!("node {node:?} cannot update labels through pod status"),
                ));
            }
            let claims = |o: Option<&Value>| {
                o.and_then(|p| p.pointer("/status/resourceClaimStatuses"))
                    .cloned()
            };
            if claims(r.object) != claims(r.old) {
                return Err(forbidden(
                    r,
                    format!("node {node:?} cannot update resource claim statues"),
                ));
            }
            Ok(())
        }
        ("status", op) => Err(forbidden(
            r,
            format!("unexpected operation {:?}", op.upstream()),
        )),
        (sub, _) => Err(forbidden(
            r,
            format!("unexpected pod subresource {sub:?}, only 'status' and 'eviction' are allowed"),
        )),
    }
}

/// A mirror pod (the only pods a node may create): bound to itself, owned by its Node, using no
/// service account, secret, configmap or claim.
async fn admit_mirror_pod(
    storage: &dyn kaji_store::Store,
    registry: &crate::registry::Registry,
    node: &str,
    r: &Request<'_>,
) -> Result<(), ApiError> {
    let pod = r.object.cloned().unwrap_or_default();
    if pod
        .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_none()
    {
        return Err(forbidden(
            r,
            format!(
                "pod does not have \"kubernetes.io/config.mirror\" annotation, node {node:?} can only create mirror pods"
            ),
        ));
    }
    if node_name_of(Some(&pod)) != node {
        return Err(forbidden(
            r,
            format!("node {node:?} can only create pods with spec.nodeName set to itself"),
        ));
    }
    let owners = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if owners.len() > 1 {
        return Err(forbidden(
            r,
            format!(
                "node {node:?} can only create pods with a single owner reference set to itself"
            ),
        ));
    }
    let Some(owner) = owners.first() else {
        return Err(forbidden(
            r,
            format!("node {node:?} can only create pods with an owner reference set to itself"),
        ));
    };
    if owner["apiVersion"] != "v1" || owner["kind"] != "Node" || owner["name"] != node {
        return Err(forbidden(
            r,
            format!("node {node:?} can only create pods with an owner reference set to itself"),
        ));
    }
    if owner["controller"] != true {
        return Err(forbidden(
            r,
            format!(
                "node {node:?} can only create pods with a controller owner reference set to itself"
            ),
        ));
    }
    if owner["blockOwnerDeletion"] == true {
        return Err(forbidden(
            r,
            format!("node {node:?} must not set blockOwnerDeletion on an owner reference"),
        ));
    }
    let nodes = registry
        .get("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("no nodes kind"))?;
    let existing = match storage
        .get(&nodes.key(None, node))
        .await
        .map_err(crate::store_error)?
    {
        Some(kv) => nodes.decode(&kv),
        None => return Err(ApiError::not_found("", "nodes", node)),
    };
    let want = owner["uid"].as_str().unwrap_or_default();
    let have = existing
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if want != have {
        return Err(forbidden(
            r,
            format!("node {node} UID mismatch: expected {want} got {have}"),
        ));
    }
    use crate::auth::node::graph::Kind;
    let uses = crate::auth::node::graph::kinds_used(&pod);
    if pod
        .pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return Err(forbidden(
            r,
            format!("node {node:?} can not create pods that reference a service account"),
        ));
    }
    for (kind, what) in [(Kind::Secret, "secrets"), (Kind::ConfigMap, "configmaps")] {
        if uses.contains(&kind) {
            return Err(forbidden(
                r,
                format!("node {node:?} can not create pods that reference {what}"),
            ));
        }
    }
    if pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|v| v.get("persistentVolumeClaim").is_some_and(|c| !c.is_null()))
    {
        return Err(forbidden(
            r,
            format!("node {node:?} can not create pods that reference persistentvolumeclaims"),
        ));
    }
    Ok(())
}

fn admit_node(node: &str, r: &Request<'_>) -> Result<(), ApiError> {
    if r.name != node {
        return Err(forbidden(
            r,
            format!("node {node:?} is not allowed to modify node {:?}", r.name),
        ));
    }
    let config_source = |o: Option<&Value>| {
        o.and_then(|n| n.pointer("/spec/configSource"))
            .filter(|c| !c.is_null())
            .cloned()
    };
    match r.operation {
        Operation::Create => {
            if config_source(r.object).is_some() {
                return Err(forbidden(
                    r,
                    format!(
                        "node {node:?} is not allowed to create pods with a non-nil configSource"
                    ),
                ));
            }
            let bad = forbidden_labels(modified_labels(&labels(r.object), &[]));
            if !bad.is_empty() {
                return Err(forbidden(
                    r,
                    format!(
                        "node {node:?} is not allowed to set the following labels: {}",
                        bad.join(", ")
                    ),
                ));
            }
        }
        Operation::Update => {
            if let Some(cs) = config_source(r.object)
                && Some(cs) != config_source(r.old)
            {
                return Err(forbidden(
                    r,
                    format!(
                        "node {node:?} is not allowed to update configSource to a new non-nil configSource"
                    ),
                ));
            }
            let taints = |o: Option<&Value>| {
                o.and_then(|n| n.pointer("/spec/taints"))
                    .filter(|t| t.as_array().is_some_and(|a| !a.is_empty()))
                    .cloned()
            };
            if taints(r.object) != taints(r.old) {
                return Err(forbidden(
                    r,
                    format!("node {node:?} is not allowed to modify taints"),
                ));
            }
            let bad = forbidden_labels(modified_labels(&labels(r.object), &labels(r.old)));
            if !bad.is_empty() {
                return Err(forbidden(
                    r,
                    format!("is not allowed to modify labels: {}", bad.join(", ")),
                ));
            }
        }
        Operation::Delete => {}
    }
    Ok(())
}

fn admit_pvc(node: &str, r: &Request<'_>) -> Result<(), ApiError> {
    if r.subresource != "status" {
        return Err(forbidden(r, "may only update PVC status"));
    }
    if r.operation != Operation::Update {
        return Err(forbidden(
            r,
            format!("unexpected operation {:?}", r.operation.upstream()),
        ));
    }
    let strip = |o: Option<&Value>| {
        let mut o = o.cloned().unwrap_or_default();
        if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        if let Some(s) = o.get_mut("status").and_then(Value::as_object_mut) {
            s.remove("capacity");
            s.remove("conditions");
        }
        o
    };
    if strip(r.object) != strip(r.old) {
        return Err(forbidden(
            r,
            format!(
                "node {node:?} is not allowed to update fields other than status.capacity and status.conditions"
            ),
        ));
    }
    Ok(())
}

fn admit_lease(node: &str, r: &Request<'_>) -> Result<(), ApiError> {
    if r.namespace != "kube-node-lease" {
        return Err(forbidden(
            r,
            "can only access leases in the \"kube-node-lease\" system namespace",
        ));
    }
    if r.name != node {
        return Err(forbidden(
            r,
            "can only access node lease with the same name as the requesting node",
        ));
    }
    Ok(())
}

/// pods/eviction by a node: only of pods bound to itself (`pod` as stored).
pub fn admit_eviction(info: &ResourceInfo, name: &str, pod: &Value) -> Result<(), ApiError> {
    let Some((node, user)) = requesting_node() else {
        return Ok(());
    };
    if node.is_empty() {
        return Err(super::forbidden(
            info,
            name,
            &format!("could not determine node from user {user:?}"),
        ));
    }
    if node_name_of(Some(pod)) != node {
        return Err(super::forbidden(
            info,
            name,
            &format!("node {node} can only evict pods with spec.nodeName set to itself"),
        ));
    }
    Ok(())
}

/// serviceaccounts/token by a node: the TokenRequest must be bound to a pod (with its uid) on
/// the node. `pod` looks the bound pod up (namespace, name) -> the stored pod.
pub async fn admit_token_request<F, Fut>(
    info: &ResourceInfo,
    sa_name: &str,
    token_request: &Value,
    pod: F,
) -> Result<(), ApiError>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<Value, ApiError>>,
{
    let Some((node, user)) = requesting_node() else {
        return Ok(());
    };
    let deny = |msg: &str| super::forbidden(info, sa_name, msg);
    if node.is_empty() {
        return Err(deny(&format!(
            "could not determine node from user {user:?}"
        )));
    }
    let r = &token_request["spec"]["boundObjectRef"];
    let pod_name = r["name"].as_str().unwrap_or_default();
    if r.is_null() || r["apiVersion"] != "v1" || r["kind"] != "Pod" || pod_name.is_empty() {
        return Err(deny("node requested token not bound to a pod"));
    }
    let uid = r["uid"].as_str().unwrap_or_default();
    if uid.is_empty() {
        return Err(deny(
            "node requested token with a pod binding without a uid",
        ));
    }
    let stored = pod(pod_name.to_string()).await?;
    if stored.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid) {
        return Err(deny(&format!(
            "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
        )));
    }
    if node_name_of(Some(&stored)) != node {
        return Err(deny(
            "node requested token bound to a pod scheduled on a different node",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_a_kubelet_may_not_touch() {
        let new = vec![
            ("kubernetes.io/hostname".to_string(), "n1".to_string()),
            (
                "node-restriction.kubernetes.io/secure".to_string(),
                "true".to_string(),
            ),
            (
                "node-role.kubernetes.io/control-plane".to_string(),
                "".to_string(),
            ),
            ("example.com/mine".to_string(), "x".to_string()),
            (
                "node.kubernetes.io/exclude-from-external-load-balancers".to_string(),
                "".to_string(),
            ),
        ];
        assert_eq!(
            forbidden_labels(modified_labels(&new, &[])),
            vec![
                "node-restriction.kubernetes.io/secure".to_string(),
                "node-role.kubernetes.io/control-plane".to_string()
            ]
        );
        assert!(forbidden_labels(modified_labels(&new, &new)).is_empty());
    }
}
