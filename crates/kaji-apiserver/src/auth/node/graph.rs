//! The Node authorizer's graph (upstream plugin/pkg/auth/authorizer/node/graph.go and
//! graph_populator.go): which objects each node may reach through the pods bound to it.
//!
//! Upstream keeps a general graph (pod -> node, secret -> pod, pvc -> pod, pv -> pvc, secret ->
//! pv, ...) and walks it. The edges all lead from an object to a pod, from a PVC's volume to the
//! PVC, or from a PV's secrets to the PV, so the same answers come from two tables: what each
//! pod bound to a node refers to (counted per node, as several pods may share a Secret), and what
//! each PersistentVolume refers to (its claim, its secrets).

use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// The kinds of objects a node may reach through its pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Pod,
    Secret,
    ConfigMap,
    Pvc,
    Pv,
    ServiceAccount,
    ResourceClaim,
}

/// One namespaced (or, for PVs, cluster-scoped: empty namespace) object.
type Ref = (Kind, String, String);

/// What one pod bound to a node refers to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PodRefs {
    node: String,
    refs: Vec<Ref>,
}

/// What one PersistentVolume refers to: the claim bound to it, the secrets its source names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PvRefs {
    claim: Option<(String, String)>,
    secrets: Vec<(String, String)>,
}

#[derive(Default)]
pub struct Graph {
    /// Pods bound to a node, by (namespace, name).
    pods: HashMap<(String, String), PodRefs>,
    /// How many bound pods of a node refer to an object: (node, object) -> count.
    reached: HashMap<(String, Ref), usize>,
    pvs: HashMap<String, PvRefs>,
    /// Secrets named by PVs: (namespace, name) -> PV names.
    pv_secrets: HashMap<(String, String), HashSet<String>>,
    /// Nodes some bound pod names (upstream's node vertices).
    nodes: HashMap<String, usize>,
}

fn s(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

fn meta(obj: &Value, field: &str) -> String {
    obj.pointer(&format!("/metadata/{field}"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The parts of a stored pod the graph reads (name, namespace, spec, claim statuses), decoded
/// from its bytes while skipping the rest: the graph follows every pod write, and a pod's
/// managedFields and status are most of its bytes.
pub fn pod_view(bytes: &[u8]) -> serde_json::Result<Value> {
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(default)]
        name: Value,
        #[serde(default)]
        namespace: Value,
    }
    #[derive(serde::Deserialize)]
    struct Status {
        #[serde(default, rename = "resourceClaimStatuses")]
        resource_claim_statuses: Value,
    }
    #[derive(serde::Deserialize)]
    struct View {
        metadata: Meta,
        #[serde(default)]
        spec: Value,
        status: Option<Status>,
    }
    let v: View = serde_json::from_slice(bytes)?;
    let claims = v.status.map_or(Value::Null, |s| s.resource_claim_statuses);
    Ok(serde_json::json!({
        "metadata": {"name": v.metadata.name, "namespace": v.metadata.namespace},
        "spec": v.spec,
        "status": {"resourceClaimStatuses": claims},
    }))
}

/// The objects a pod refers to (upstream's VisitPodSecretNames, VisitPodConfigmapNames, its
/// PVC and ephemeral volumes, service account and resource claims).
fn pod_refs(pod: &Value) -> Vec<Ref> {
    let ns = meta(pod, "namespace");
    let name = meta(pod, "name");
    let spec = &pod["spec"];
    let mut out: Vec<Ref> = Vec::new();
    let mut add = |kind: Kind, n: Option<String>| {
        if let Some(n) = n {
            let r = (kind, ns.clone(), n);
            if !out.contains(&r) {
                out.push(r);
            }
        }
    };
    add(Kind::Pod, Some(name.clone()));
    add(Kind::ServiceAccount, s(&spec["serviceAccountName"]));
    for p in spec["imagePullSecrets"].as_array().into_iter().flatten() {
        add(Kind::Secret, s(&p["name"]));
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in spec[list].as_array().into_iter().flatten() {
            for e in c["env"].as_array().into_iter().flatten() {
                add(Kind::Secret, s(&e["valueFrom"]["secretKeyRef"]["name"]));
                add(
                    Kind::ConfigMap,
                    s(&e["valueFrom"]["configMapKeyRef"]["name"]),
                );
            }
            for e in c["envFrom"].as_array().into_iter().flatten() {
                add(Kind::Secret, s(&e["secretRef"]["name"]));
                add(Kind::ConfigMap, s(&e["configMapRef"]["name"]));
            }
        }
    }
    for v in spec["volumes"].as_array().into_iter().flatten() {
        add(Kind::Secret, s(&v["secret"]["secretName"]));
        add(Kind::ConfigMap, s(&v["configMap"]["name"]));
        for src in v["projected"]["sources"].as_array().into_iter().flatten() {
            add(Kind::Secret, s(&src["secret"]["name"]));
            add(Kind::ConfigMap, s(&src["configMap"]["name"]));
        }
        add(Kind::Secret, s(&v["azureFile"]["secretName"]));
        for src in [
            "cephfs",
            "cinder",
            "flexVolume",
            "iscsi",
            "rbd",
            "scaleIO",
            "storageos",
        ] {
            add(Kind::Secret, s(&v[src]["secretRef"]["name"]));
        }
        add(Kind::Secret, s(&v["csi"]["nodePublishSecretRef"]["name"]));
        add(Kind::Pvc, s(&v["persistentVolumeClaim"]["claimName"]));
        if v.get("ephemeral").is_some_and(|e| !e.is_null())
            && let Some(vol) = s(&v["name"])
        {
            add(Kind::Pvc, Some(format!("{name}-{vol}")));
        }
    }
    for c in pod
        .pointer("/status/resourceClaimStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        add(Kind::ResourceClaim, s(&c["resourceClaimName"]));
    }
    out
}

/// The kinds of objects a pod refers to (for NodeRestriction's mirror pods).
pub fn kinds_used(pod: &Value) -> Vec<Kind> {
    pod_refs(pod)
        .into_iter()
        .map(|(k, _, _)| k)
        .filter(|k| *k != Kind::Pod)
        .collect()
}

/// What a PV refers to (upstream's AddPV: the claim, and the secrets of its source).
fn pv_refs(pv: &Value) -> PvRefs {
    let spec = &pv["spec"];
    let claim = s(&spec["claimRef"]["name"]).map(|n| {
        (
            spec["claimRef"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            n,
        )
    });
    let mut secrets = Vec::new();
    let mut add = |r: &Value, default_ns: &str| {
        if let Some(n) = s(&r["name"]) {
            let ns = s(&r["namespace"]).unwrap_or_else(|| default_ns.to_string());
            if !secrets.contains(&(ns.clone(), n.clone())) {
                secrets.push((ns, n));
            }
        }
    };
    let claim_ns = claim.as_ref().map(|c| c.0.clone()).unwrap_or_default();
    for r in [
        "nodePublishSecretRef",
        "nodeStageSecretRef",
        "controllerPublishSecretRef",
        "controllerExpandSecretRef",
        "nodeExpandSecretRef",
    ] {
        add(&spec["csi"][r], "");
    }
    for src in [
        "cephfs",
        "cinder",
        "flexVolume",
        "iscsi",
        "rbd",
        "scaleIO",
        "storageos",
    ] {
        add(&spec[src]["secretRef"], &claim_ns);
    }
    if let Some(n) = s(&spec["azureFile"]["secretName"]) {
        let ns = s(&spec["azureFile"]["secretNamespace"]).unwrap_or_else(|| "default".into());
        secrets.push((ns, n));
    }
    PvRefs { claim, secrets }
}

impl Graph {
    /// A pod was stored (created or changed): its edges replace those it had.
    pub fn set_pod(&mut self, pod: &Value) {
        let key = (meta(pod, "namespace"), meta(pod, "name"));
        let node = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if node.is_empty() {
            self.delete_pod(&key.0, &key.1);
            return;
        }
        let next = PodRefs {
            node,
            refs: pod_refs(pod),
        };
        if self.pods.get(&key) == Some(&next) {
            return;
        }
        self.delete_pod(&key.0, &key.1);
        for r in &next.refs {
            *self
                .reached
                .entry((next.node.clone(), r.clone()))
                .or_default() += 1;
        }
        *self.nodes.entry(next.node.clone()).or_default() += 1;
        self.pods.insert(key, next);
    }

    pub fn delete_pod(&mut self, namespace: &str, name: &str) {
        let Some(old) = self.pods.remove(&(namespace.to_string(), name.to_string())) else {
            return;
        };
        for r in old.refs {
            let k = (old.node.clone(), r);
            if let Some(n) = self.reached.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    self.reached.remove(&k);
                }
            }
        }
        if let Some(n) = self.nodes.get_mut(&old.node) {
            *n -= 1;
            if *n == 0 {
                self.nodes.remove(&old.node);
            }
        }
    }

    pub fn set_pv(&mut self, pv: &Value) {
        let name = meta(pv, "name");
        self.delete_pv(&name);
        let refs = pv_refs(pv);
        for sref in &refs.secrets {
            self.pv_secrets
                .entry(sref.clone())
                .or_default()
                .insert(name.clone());
        }
        self.pvs.insert(name, refs);
    }

    pub fn delete_pv(&mut self, name: &str) {
        let Some(old) = self.pvs.remove(name) else {
            return;
        };
        for sref in old.secrets {
            if let Some(set) = self.pv_secrets.get_mut(&sref) {
                set.remove(name);
                if set.is_empty() {
                    self.pv_secrets.remove(&sref);
                }
            }
        }
    }

    fn direct(&self, node: &str, kind: Kind, namespace: &str, name: &str) -> bool {
        self.reached.contains_key(&(
            node.to_string(),
            (kind, namespace.to_string(), name.to_string()),
        ))
    }

    fn pv_reached(&self, node: &str, pv: &str) -> bool {
        self.pvs
            .get(pv)
            .and_then(|p| p.claim.as_ref())
            .is_some_and(|(ns, claim)| self.direct(node, Kind::Pvc, ns, claim))
    }

    /// Whether `node` has a path to the object (upstream's hasPathFrom): an error says why not,
    /// in upstream's words (logged; the client sees "no relationship found").
    pub fn has_path(
        &self,
        node: &str,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<(), String> {
        let what = match kind {
            Kind::Pod => "pod",
            Kind::Secret => "secret",
            Kind::ConfigMap => "configmap",
            Kind::Pvc => "pvc",
            Kind::Pv => "pv",
            Kind::ServiceAccount => "serviceAccount",
            Kind::ResourceClaim => "resourceclaim",
        };
        if !self.nodes.contains_key(node) {
            return Err(format!(
                "unknown node '{node}' cannot get {what} {namespace}/{name}"
            ));
        }
        let found = match kind {
            Kind::Pv => self.pv_reached(node, name),
            Kind::Secret => {
                self.direct(node, kind, namespace, name)
                    || self
                        .pv_secrets
                        .get(&(namespace.to_string(), name.to_string()))
                        .is_some_and(|pvs| pvs.iter().any(|pv| self.pv_reached(node, pv)))
            }
            _ => self.direct(node, kind, namespace, name),
        };
        if found {
            Ok(())
        } else {
            Err(format!(
                "node '{node}' cannot get {what} {namespace}/{name}, no relationship to this object was found in the node authorizer graph"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str) -> Value {
        json!({"metadata": {"namespace": "ns", "name": name}, "spec": {
        "nodeName": node, "serviceAccountName": "sa",
        "imagePullSecrets": [{"name": "pull"}],
        "containers": [{"name": "c", "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}}],
                        "envFrom": [{"configMapRef": {"name": "env-cm"}}]}],
        "volumes": [
            {"name": "s", "secret": {"secretName": "vol-secret"}},
            {"name": "p", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}]}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "claim"}},
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
        ]}})
    }

    #[test]
    fn the_pod_view_refers_to_what_the_whole_pod_does() {
        let mut whole = pod("p1", "n1");
        whole["metadata"]["managedFields"] = json!([{"manager": "m", "fieldsV1": {"f:spec": {}}}]);
        whole["metadata"]["labels"] = json!({"app": "a"});
        whole["status"] = json!({"phase": "Running",
            "resourceClaimStatuses": [{"name": "gpu", "resourceClaimName": "p1-gpu"}]});
        let view = pod_view(&serde_json::to_vec(&whole).unwrap()).unwrap();
        assert_eq!(pod_refs(&view), pod_refs(&whole));
        assert!(pod_refs(&view).contains(&(Kind::ResourceClaim, "ns".into(), "p1-gpu".into())));
        assert_eq!(view["spec"]["nodeName"], "n1");
        // A pod without status, or without a namespace, still reads.
        let bare = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n"}});
        let view = pod_view(&serde_json::to_vec(&bare).unwrap()).unwrap();
        assert_eq!(pod_refs(&view), pod_refs(&bare));
    }

    #[test]
    fn a_node_reaches_what_its_pods_use() {
        let mut g = Graph::default();
        g.set_pod(&pod("p1", "n1"));
        g.set_pod(
            &json!({"metadata": {"namespace": "ns", "name": "p2"}, "spec": {"nodeName": "n2",
            "volumes": [{"name": "s", "secret": {"secretName": "other"}}]}}),
        );
        for (kind, name) in [
            (Kind::Pod, "p1"),
            (Kind::Secret, "pull"),
            (Kind::Secret, "env-secret"),
            (Kind::Secret, "vol-secret"),
            (Kind::ConfigMap, "env-cm"),
            (Kind::ConfigMap, "kube-root-ca.crt"),
            (Kind::Pvc, "claim"),
            (Kind::Pvc, "p1-scratch"),
            (Kind::ServiceAccount, "sa"),
        ] {
            assert!(
                g.has_path("n1", kind, "ns", name).is_ok(),
                "{kind:?} {name}"
            );
        }
        assert!(g.has_path("n1", Kind::Secret, "ns", "other").is_err());
        assert!(g.has_path("n2", Kind::Secret, "ns", "vol-secret").is_err());
        assert!(
            g.has_path("n1", Kind::Secret, "other-ns", "vol-secret")
                .is_err()
        );
        assert!(
            g.has_path("n3", Kind::Secret, "ns", "vol-secret")
                .unwrap_err()
                .starts_with("unknown node 'n3'")
        );

        // PV bound to the claim, and the PV's secret.
        g.set_pv(&json!({"metadata": {"name": "pv1"}, "spec": {"claimRef": {"namespace": "ns", "name": "claim"},
            "csi": {"driver": "d", "volumeHandle": "h", "nodePublishSecretRef": {"namespace": "csi", "name": "csi-secret"}}}}));
        assert!(g.has_path("n1", Kind::Pv, "", "pv1").is_ok());
        assert!(g.has_path("n1", Kind::Secret, "csi", "csi-secret").is_ok());
        assert!(g.has_path("n2", Kind::Pv, "", "pv1").is_err());

        // Two pods share a secret: it stays reachable until both are gone.
        g.set_pod(
            &json!({"metadata": {"namespace": "ns", "name": "p3"}, "spec": {"nodeName": "n1",
            "volumes": [{"name": "s", "secret": {"secretName": "vol-secret"}}]}}),
        );
        g.delete_pod("ns", "p1");
        assert!(g.has_path("n1", Kind::Secret, "ns", "vol-secret").is_ok());
        assert!(g.has_path("n1", Kind::Secret, "ns", "pull").is_err());
        assert!(g.has_path("n1", Kind::Pv, "", "pv1").is_err());
        g.delete_pod("ns", "p3");
        assert!(g.has_path("n1", Kind::Secret, "ns", "vol-secret").is_err());
        g.delete_pv("pv1");

        // A pod that moves (unbound, rebound) moves its edges.
        g.set_pod(
            &json!({"metadata": {"namespace": "ns", "name": "p2"}, "spec": {"nodeName": "n1",
            "volumes": [{"name": "s", "secret": {"secretName": "other"}}]}}),
        );
        assert!(g.has_path("n1", Kind::Secret, "ns", "other").is_ok());
        assert!(g.has_path("n2", Kind::Secret, "ns", "other").is_err());
        assert!(g.reached.values().all(|n| *n > 0));
    }
}
