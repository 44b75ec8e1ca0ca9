//! Which webhooks a request goes to (upstream's `webhook/predicates`): the rules (operation,
//! group, version, resource/subresource with `*`, scope), the object selector against the new
//! or old object's labels, the namespace selector against the namespace's labels.
//! matchPolicy Equivalent needs no extra work here: each kind is served in one version, or
//! (custom resources) every version is listed by the rules that name them.

use super::Attributes;
use super::config::{Hook, Rule};
use crate::ApiServer;
use crate::registry::store::Store;
use serde_json::{Map, Value};
use std::sync::Arc;

fn any_or(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

fn rule_matches(r: &Rule, a: &Attributes<'_>) -> bool {
    let Some(op) = a.operation else { return false };
    let namespaced = a.namespace.as_deref().is_some_and(|n| !n.is_empty());
    let scope = match r.scope.as_str() {
        "Cluster" => !namespaced,
        "Namespaced" => namespaced,
        _ => true,
    };
    scope
        && any_or(&r.operations, op.as_str())
        && any_or(&r.api_groups, a.info.group)
        && any_or(&r.api_versions, a.info.version)
        && r.resources.iter().any(|res| {
            let (res, sub) = res.split_once('/').unwrap_or((res, ""));
            (res == "*" || res == a.info.plural) && (sub == "*" || sub == a.subresource)
        })
}

pub(super) fn matches_rules(h: &Hook, a: &Attributes<'_>) -> bool {
    h.rules.iter().any(|r| rule_matches(r, a))
}

fn labels(obj: Option<&Value>) -> Option<&Map<String, Value>> {
    obj?.pointer("/metadata/labels")?.as_object()
}

/// The object selector matches the new object's labels or the old one's.
pub(super) fn matches_object(h: &Hook, obj: Option<&Value>, old: Option<&Value>) -> bool {
    if h.object_selector.is_empty() {
        return true;
    }
    (obj.is_some() && h.object_selector.matches(labels(obj)))
        || (old.is_some() && h.object_selector.matches(labels(old)))
}

/// The labels the namespace selector is matched against: the namespace's (a Namespace's own,
/// for a Namespace; none if it is not found). None for a cluster-scoped object, which every
/// namespace selector lets through (as upstream).
pub(super) async fn namespace_labels(
    server: &Arc<ApiServer>,
    a: &Attributes<'_>,
    obj: Option<&Value>,
) -> Option<Map<String, Value>> {
    if a.info.group.is_empty() && a.info.plural == "namespaces" {
        return Some(labels(obj.or(a.old)).cloned().unwrap_or_default());
    }
    let ns = a.namespace.as_deref().filter(|n| !n.is_empty())?;
    let Some(strategy) = server.registry.get("", "v1", "namespaces") else {
        return Some(Map::new());
    };
    let strategy = strategy.clone();
    let namespace = Store::of(server, &strategy).get(None, ns).await.ok();
    Some(labels(namespace.as_ref()).cloned().unwrap_or_default())
}
