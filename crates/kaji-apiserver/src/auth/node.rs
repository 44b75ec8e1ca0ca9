//! The Node authorizer (upstream plugin/pkg/auth/authorizer/node, 1.33 with
//! AuthorizeNodeWithSelectors): requests of kubelets (`system:node:<name>` in `system:nodes`).
//!
//! - Secrets, ConfigMaps, PVCs, PVs, ServiceAccount tokens and ResourceClaims: only those the
//!   pods bound to the node use ([`graph`], kept from the store by a watch of everything, so the
//!   graph knows which store revision it has seen; a request it would refuse first waits until
//!   the graph has caught up with the store, [`NodeAuthorizer::catch_up`]);
//! - its own Node (any node may create, update and patch Nodes: NodeRestriction admission limits
//!   that to its own), its pods (get, list/watch with `spec.nodeName=<node>`), its node Lease;
//! - everything else by upstream's static node rules (bootstrappolicy.NodeRules).
//!
//! Anything not allowed is NoOpinion (RBAC decides next), never Deny, as upstream.

pub mod graph;

use super::authz::{Attributes, Decision};
use graph::{Graph, Kind};
use std::sync::{Arc, RwLock};

pub const NODES_GROUP: &str = "system:nodes";
pub const NODE_USER_PREFIX: &str = "system:node:";

/// The node a user is (upstream's nodeidentifier): `Some(name)` for `system:node:<name>` in
/// `system:nodes`, `Some("")` for a member of `system:nodes` with another name.
pub fn node_identity(user: &super::User) -> Option<&str> {
    if !user.in_group(NODES_GROUP) {
        return None;
    }
    Some(user.name.strip_prefix(NODE_USER_PREFIX).unwrap_or(""))
}

/// One static rule: verbs on resources (`pods/status` names a subresource) of a group.
struct Rule {
    verbs: &'static [&'static str],
    group: &'static str,
    resources: &'static [&'static str],
}

const READ: &[&str] = &["get", "list", "watch"];

/// Upstream's bootstrappolicy.NodeRules() (1.33, DRA and ClusterTrustBundle off).
const NODE_RULES: &[Rule] = &[
    Rule {
        verbs: &["create"],
        group: "authentication.k8s.io",
        resources: &["tokenreviews"],
    },
    Rule {
        verbs: &["create"],
        group: "authorization.k8s.io",
        resources: &["subjectaccessreviews", "localsubjectaccessreviews"],
    },
    Rule {
        verbs: READ,
        group: "",
        resources: &["services"],
    },
    Rule {
        verbs: &["create", "get", "list", "watch"],
        group: "",
        resources: &["nodes"],
    },
    Rule {
        verbs: &["update", "patch"],
        group: "",
        resources: &["nodes/status"],
    },
    Rule {
        verbs: &["update", "patch"],
        group: "",
        resources: &["nodes"],
    },
    Rule {
        verbs: &["create", "update", "patch"],
        group: "",
        resources: &["events"],
    },
    Rule {
        verbs: READ,
        group: "",
        resources: &["pods"],
    },
    Rule {
        verbs: &["create", "delete"],
        group: "",
        resources: &["pods"],
    },
    Rule {
        verbs: &["update", "patch"],
        group: "",
        resources: &["pods/status"],
    },
    Rule {
        verbs: &["create"],
        group: "",
        resources: &["pods/eviction"],
    },
    Rule {
        verbs: READ,
        group: "",
        resources: &["secrets", "configmaps"],
    },
    Rule {
        verbs: &["get"],
        group: "",
        resources: &["persistentvolumeclaims", "persistentvolumes"],
    },
    Rule {
        verbs: &["get"],
        group: "",
        resources: &["endpoints"],
    },
    Rule {
        verbs: &["create", "get", "list", "watch"],
        group: "certificates.k8s.io",
        resources: &["certificatesigningrequests"],
    },
    Rule {
        verbs: &["get", "create", "update", "patch", "delete"],
        group: "coordination.k8s.io",
        resources: &["leases"],
    },
    Rule {
        verbs: &["get"],
        group: "storage.k8s.io",
        resources: &["volumeattachments"],
    },
    Rule {
        verbs: &["create"],
        group: "",
        resources: &["serviceaccounts/token"],
    },
    Rule {
        verbs: &["get", "update", "patch"],
        group: "",
        resources: &["persistentvolumeclaims/status"],
    },
    Rule {
        verbs: &["get", "watch", "list"],
        group: "storage.k8s.io",
        resources: &["csidrivers"],
    },
    Rule {
        verbs: &["get", "create", "update", "patch", "delete"],
        group: "storage.k8s.io",
        resources: &["csinodes"],
    },
    Rule {
        verbs: READ,
        group: "node.k8s.io",
        resources: &["runtimeclasses"],
    },
];

fn rules_allow(a: &Attributes) -> bool {
    if !a.resource_request {
        return false;
    }
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    NODE_RULES.iter().any(|r| {
        r.group == a.api_group
            && r.verbs.contains(&a.verb.as_str())
            && r.resources.contains(&resource.as_str())
    })
}

/// A requirement `field=value` (or `field==value`) of a field selector.
fn selects(field_selector: &str, field: &str, value: &str) -> bool {
    field_selector.split(',').any(|t| {
        let t = t.trim();
        t.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')))
            .is_some_and(|v| v == value)
    })
}

pub struct NodeAuthorizer {
    graph: Arc<RwLock<Graph>>,
    /// The store revision the graph has seen.
    revision: tokio::sync::watch::Sender<i64>,
}

impl Default for NodeAuthorizer {
    fn default() -> Self {
        NodeAuthorizer {
            graph: Arc::default(),
            revision: tokio::sync::watch::Sender::new(-1),
        }
    }
}

type Verdict = (Decision, String);

fn no(reason: impl Into<String>) -> Verdict {
    (Decision::NoOpinion, reason.into())
}

fn allow() -> Verdict {
    (Decision::Allow, String::new())
}

impl NodeAuthorizer {
    /// Keeps the graph from the store: lists pods and PVs, then follows every write (a watch of
    /// the whole key space, so that the graph's revision is the store's).
    pub fn start(server: &Arc<crate::ApiServer>) {
        let server = server.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = follow(&server).await {
                    tracing::warn!(error = %e, "node authorizer graph: starting over");
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        });
    }

    /// Waits (up to 2 s) until the graph has seen the store's current revision, when `a` is a
    /// node's request the graph would refuse now: an object written just before the request
    /// (a pod bound a moment ago) is then known.
    pub async fn catch_up(&self, server: &crate::ApiServer, a: &Attributes) {
        if node_identity(&a.user).is_none_or(str::is_empty)
            || self.authorize(a).0 == Decision::Allow
            || !uses_graph(a)
        {
            return;
        }
        let Ok(want) = server.store.current_revision().await else {
            return;
        };
        let mut rx = self.revision.subscribe();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            rx.wait_for(|r| *r >= want),
        )
        .await;
    }

    pub fn authorize(&self, a: &Attributes) -> (Decision, String) {
        let Some(node) = node_identity(&a.user) else {
            return no("");
        };
        if node.is_empty() {
            return no(format!("unknown node for user {:?}", a.user.name));
        }
        if a.resource_request {
            let verdict = match (a.api_group.as_str(), a.resource.as_str()) {
                ("", "secrets") => Some(self.read_namespaced(node, Kind::Secret, a)),
                ("", "configmaps") => Some(self.read_namespaced(node, Kind::ConfigMap, a)),
                ("", "persistentvolumeclaims") if a.subresource == "status" => {
                    Some(self.status_update(node, Kind::Pvc, a))
                }
                ("", "persistentvolumeclaims") => Some(self.get(node, Kind::Pvc, a)),
                ("", "persistentvolumes") => Some(self.get(node, Kind::Pv, a)),
                ("resource.k8s.io", "resourceclaims") => {
                    Some(self.get(node, Kind::ResourceClaim, a))
                }
                ("", "serviceaccounts") => Some(self.create_token(node, a)),
                ("coordination.k8s.io", "leases") => Some(lease(node, a)),
                ("", "nodes") => Some(node_object(node, a)),
                ("", "pods") => Some(self.pod(node, a)),
                _ => None,
            };
            if let Some(v) = verdict {
                if v.0 != Decision::Allow {
                    tracing::debug!(node, verb = %a.verb, resource = %a.resource, name = %a.name, reason = %v.1, "NODE DENY");
                }
                return v;
            }
        }
        if rules_allow(a) { allow() } else { no("") }
    }

    fn has_path(&self, node: &str, kind: Kind, a: &Attributes) -> Verdict {
        if a.name.is_empty() {
            return no("No Object name found");
        }
        let found = self
            .graph
            .read()
            .map(|g| g.has_path(node, kind, &a.namespace, &a.name));
        match found {
            Ok(Ok(())) => allow(),
            Ok(Err(why)) => {
                tracing::debug!(node, %why, "NODE DENY");
                no(format!(
                    "no relationship found between node '{node}' and this object"
                ))
            }
            Err(_) => no(format!(
                "no relationship found between node '{node}' and this object"
            )),
        }
    }

    fn read_namespaced(&self, node: &str, kind: Kind, a: &Attributes) -> Verdict {
        if !matches!(a.verb.as_str(), "get" | "list" | "watch") {
            return no("can only read resources of this type");
        }
        if !a.subresource.is_empty() {
            return no("cannot read subresource");
        }
        if a.namespace.is_empty() {
            return no("can only read namespaced object of this type");
        }
        self.has_path(node, kind, a)
    }

    fn get(&self, node: &str, kind: Kind, a: &Attributes) -> Verdict {
        if a.verb != "get" {
            return no("can only get individual resources of this type");
        }
        if !a.subresource.is_empty() {
            return no("cannot get subresource");
        }
        self.has_path(node, kind, a)
    }

    fn status_update(&self, node: &str, kind: Kind, a: &Attributes) -> Verdict {
        if !matches!(a.verb.as_str(), "update" | "patch") {
            return no("can only get/update/patch this type");
        }
        self.has_path(node, kind, a)
    }

    fn create_token(&self, node: &str, a: &Attributes) -> Verdict {
        if a.verb != "create" || a.name.is_empty() {
            return no("can only create tokens for individual service accounts");
        }
        if a.subresource != "token" {
            return no("can only create token subresource of serviceaccount");
        }
        self.has_path(node, Kind::ServiceAccount, a)
    }

    fn pod(&self, node: &str, a: &Attributes) -> Verdict {
        match (a.subresource.as_str(), a.verb.as_str()) {
            ("", "get") => self.get(node, Kind::Pod, a),
            ("", "list" | "watch") => {
                if selects(&a.field_selector, "spec.nodeName", node) {
                    allow()
                } else if !a.name.is_empty() {
                    self.has_path(node, Kind::Pod, a)
                } else {
                    no("can only list/watch pods with spec.nodeName field selector")
                }
            }
            // Mirror pods (create/delete), status and evictions of its pods: NodeRestriction
            // admission limits these to pods bound to the node.
            ("", "create" | "delete") | ("status", "update" | "patch") | ("eviction", "create") => {
                allow()
            }
            _ => no(""),
        }
    }
}

/// Whether the graph decides `a` (the kinds a node reaches through its pods).
fn uses_graph(a: &Attributes) -> bool {
    a.resource_request
        && matches!(
            (a.api_group.as_str(), a.resource.as_str()),
            (
                "",
                "secrets"
                    | "configmaps"
                    | "persistentvolumeclaims"
                    | "persistentvolumes"
                    | "serviceaccounts"
                    | "pods"
            ) | ("resource.k8s.io", "resourceclaims")
        )
}

fn lease(node: &str, a: &Attributes) -> Verdict {
    if !matches!(
        a.verb.as_str(),
        "get" | "create" | "update" | "patch" | "delete"
    ) {
        return no("can only get, create, update, patch, or delete a node lease");
    }
    if a.namespace != "kube-node-lease" {
        return no("can only access leases in the \"kube-node-lease\" system namespace");
    }
    // The name of a create is checked by NodeRestriction admission.
    if a.verb != "create" && a.name != node {
        return no("can only access node lease with the same name as the requesting node");
    }
    allow()
}

fn node_object(node: &str, a: &Attributes) -> Verdict {
    match (a.subresource.as_str(), a.verb.as_str()) {
        // NodeRestriction admission limits a node to its own Node object.
        ("", "create" | "update" | "patch") | ("status", "update" | "patch") => allow(),
        ("", "get" | "list" | "watch") => match a.name.as_str() {
            n if n == node => allow(),
            "" => no(format!(
                "node '{node}' cannot read all nodes, only its own Node object"
            )),
            other => no(format!(
                "node '{node}' cannot read '{other}', only its own Node object"
            )),
        },
        _ => no(""),
    }
}

/// The key of a pod or PV in the store, split into (namespace, name) after its prefix.
fn split_key<'k>(key: &'k str, prefix: &str, namespaced: bool) -> Option<(&'k str, &'k str)> {
    let rest = key.strip_prefix(prefix)?;
    if namespaced {
        rest.split_once('/')
    } else {
        Some(("", rest))
    }
}

/// Lists pods and PVs into a fresh graph, then applies every write to it until the watch ends.
async fn follow(server: &Arc<crate::ApiServer>) -> anyhow::Result<()> {
    use futures::StreamExt;
    let pods = server
        .registry
        .get("", "v1", "pods")
        .ok_or_else(|| anyhow::anyhow!("no pods kind"))?
        .clone();
    let pvs = server
        .registry
        .get("", "v1", "persistentvolumes")
        .ok_or_else(|| anyhow::anyhow!("no persistentvolumes kind"))?
        .clone();
    let (pod_prefix, pv_prefix) = (pods.prefix(None), pvs.prefix(None));
    let store = &server.store;
    let mut fresh = Graph::default();
    let mut revision = 0;
    for (prefix, is_pod) in [(&pod_prefix, true), (&pv_prefix, false)] {
        let mut start_after = None;
        loop {
            let opts = kaji_store::ListOptions {
                start_after: start_after.clone(),
                limit: Some(1000),
                revision: (revision > 0).then_some(revision),
            };
            let page = store.list(prefix, opts).await?;
            revision = page.revision;
            for kv in &page.items {
                let obj = crate::objects::decode(kv);
                if is_pod {
                    fresh.set_pod(&obj)
                } else {
                    fresh.set_pv(&obj)
                }
            }
            if !page.more {
                break;
            }
            start_after = page.items.last().map(|kv| kv.key.clone());
        }
    }
    let mut events = store.watch("", revision).await?;
    let node = &server.auth.node;
    *node
        .graph
        .write()
        .map_err(|_| anyhow::anyhow!("graph lock poisoned"))? = fresh;
    node.revision.send_replace(revision);
    tracing::debug!(revision, "node authorizer graph ready");
    while let Some(ev) = events.next().await {
        let ev = ev?;
        let rev = ev.revision();
        let key = ev.kv.key.as_str();
        let put = ev.event_type == kaji_store::EventType::Put;
        if let Some((ns, name)) = split_key(key, &pod_prefix, true) {
            let mut g = node
                .graph
                .write()
                .map_err(|_| anyhow::anyhow!("graph lock poisoned"))?;
            if put {
                match graph::pod_view(&ev.kv.value) {
                    Ok(pod) => g.set_pod(&pod),
                    Err(e) => tracing::error!(key, error = %e, "stored pod is not JSON"),
                }
            } else {
                g.delete_pod(ns, name)
            }
        } else if let Some((_, name)) = split_key(key, &pv_prefix, false) {
            let mut g = node
                .graph
                .write()
                .map_err(|_| anyhow::anyhow!("graph lock poisoned"))?;
            if put {
                g.set_pv(&crate::objects::decode(&ev.kv))
            } else {
                g.delete_pv(name)
            }
        }
        node.revision.send_replace(rev);
    }
    anyhow::bail!("the store's watch ended")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::User;

    fn node_attrs(node: &str, method: http::Method, path: &str, query: Option<&str>) -> Attributes {
        let user = User::new(format!("system:node:{node}"), &["system:nodes"]).authenticated();
        super::super::authz::attributes(&user, &method, path, query)
    }

    #[test]
    fn upstream_node_rules() {
        let na = NodeAuthorizer::default();
        {
            let mut g = na.graph.write().unwrap();
            g.set_pod(&serde_json::json!({"metadata": {"namespace": "ns", "name": "p1"},
                "spec": {"nodeName": "n1", "volumes": [{"name": "s", "secret": {"secretName": "s1"}}]}}));
        }
        let decide = |node: &str, m: http::Method, path: &str, q: Option<&str>| {
            na.authorize(&node_attrs(node, m, path, q))
        };
        use http::Method as M;
        assert_eq!(
            decide("n1", M::GET, "/api/v1/namespaces/ns/secrets/s1", None).0,
            Decision::Allow
        );
        assert_eq!(
            decide("n2", M::GET, "/api/v1/namespaces/ns/secrets/s1", None),
            (
                Decision::NoOpinion,
                "no relationship found between node 'n2' and this object".to_string()
            )
        );
        assert_eq!(
            decide("n1", M::GET, "/api/v1/namespaces/ns/secrets/other", None).0,
            Decision::NoOpinion
        );
        assert_eq!(
            decide(
                "n1",
                M::GET,
                "/api/v1/namespaces/ns/secrets",
                Some("fieldSelector=metadata.name%3Ds1")
            )
            .0,
            Decision::Allow
        );
        assert_eq!(
            decide(
                "n1",
                M::GET,
                "/api/v1/namespaces/ns/secrets",
                Some("fieldSelector=metadata.name=s1&watch=true")
            )
            .0,
            Decision::Allow
        );
        assert_eq!(
            decide("n1", M::GET, "/api/v1/namespaces/ns/secrets", None).1,
            "No Object name found"
        );
        assert_eq!(
            decide("n1", M::PUT, "/api/v1/namespaces/ns/secrets/s1", None).1,
            "can only read resources of this type"
        );
        // Pods: own list by field selector, own pod by name.
        assert_eq!(
            decide(
                "n1",
                M::GET,
                "/api/v1/pods",
                Some("fieldSelector=spec.nodeName=n1")
            )
            .0,
            Decision::Allow
        );
        assert_eq!(
            decide(
                "n1",
                M::GET,
                "/api/v1/pods",
                Some("fieldSelector=spec.nodeName=n2")
            )
            .1,
            "can only list/watch pods with spec.nodeName field selector"
        );
        assert_eq!(
            decide("n1", M::GET, "/api/v1/namespaces/ns/pods/p1", None).0,
            Decision::Allow
        );
        assert_eq!(
            decide("n2", M::GET, "/api/v1/namespaces/ns/pods/p1", None).0,
            Decision::NoOpinion
        );
        assert_eq!(
            decide("n2", M::PATCH, "/api/v1/namespaces/ns/pods/p1/status", None).0,
            Decision::Allow
        );
        // Nodes: read only its own; writes left to NodeRestriction.
        assert_eq!(
            decide("n1", M::GET, "/api/v1/nodes/n1", None).0,
            Decision::Allow
        );
        assert_eq!(
            decide("n1", M::GET, "/api/v1/nodes/n2", None).1,
            "node 'n1' cannot read 'n2', only its own Node object"
        );
        assert_eq!(
            decide("n1", M::GET, "/api/v1/nodes", None).1,
            "node 'n1' cannot read all nodes, only its own Node object"
        );
        assert_eq!(
            decide("n1", M::PATCH, "/api/v1/nodes/n2/status", None).0,
            Decision::Allow
        );
        assert_eq!(
            decide("n1", M::DELETE, "/api/v1/nodes/n1", None).0,
            Decision::NoOpinion
        );
        // Leases, static rules, non-nodes.
        assert_eq!(
            decide(
                "n1",
                M::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
                None
            )
            .0,
            Decision::Allow
        );
        assert_eq!(
            decide(
                "n1",
                M::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n2",
                None
            )
            .1,
            "can only access node lease with the same name as the requesting node"
        );
        assert_eq!(
            decide("n1", M::POST, "/api/v1/namespaces/ns/events", None).0,
            Decision::Allow
        );
        assert_eq!(
            decide("n1", M::GET, "/api/v1/services", None).0,
            Decision::Allow
        );
        assert_eq!(
            decide("n1", M::GET, "/apis/apps/v1/deployments", None).0,
            Decision::NoOpinion
        );
        let admin = User::new("someone", &["system:authenticated"]);
        let a = super::super::authz::attributes(
            &admin,
            &M::GET,
            "/api/v1/namespaces/ns/secrets/s1",
            None,
        );
        assert_eq!(na.authorize(&a), (Decision::NoOpinion, String::new()));
        let odd = User::new("kaji-agent", &["system:nodes"]);
        let a = super::super::authz::attributes(
            &odd,
            &M::GET,
            "/api/v1/namespaces/ns/secrets/s1",
            None,
        );
        assert_eq!(na.authorize(&a).1, "unknown node for user \"kaji-agent\"");
    }
}
