//! Pruning (upstream's `schema/pruning`) and defaulting (`schema/defaulting`).
//!
//! Pruning drops every field the schema does not specify, except under
//! `x-kubernetes-preserve-unknown-fields`; at the root and in embedded resources `apiVersion`,
//! `kind` and `metadata` are kept, and `metadata` keeps only ObjectMeta's fields.

use serde_json::{Map, Value};

use super::{Additional, Node};

/// ObjectMeta's fields (metadata.k8s.io/v1): everything else under `metadata` is dropped.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

fn field(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

/// Prunes a whole object: the root is a resource (its type meta and metadata are kept).
pub(crate) fn prune_root(root: &Node, obj: &mut Value, pruned: &mut Vec<String>) {
    prune(Some(root), obj, "", true, pruned);
}

/// Prunes a value with a node's schema (a default value: `resource` when the node is an
/// embedded resource).
pub(crate) fn prune_with(node: &Node, x: &mut Value, resource: bool, pruned: &mut Vec<String>) {
    prune(Some(node), x, "", resource, pruned);
}

fn prune_metadata(meta: &mut Value, path: &str, pruned: &mut Vec<String>) {
    if let Value::Object(m) = meta {
        m.retain(|k, _| {
            let keep = OBJECT_META_FIELDS.contains(&k.as_str());
            if !keep {
                pruned.push(field(path, k));
            }
            keep
        });
    }
}

fn prune(s: Option<&Node>, x: &mut Value, path: &str, resource: bool, pruned: &mut Vec<String>) {
    if let Some(s) = s.filter(|s| s.preserve_unknown_fields) {
        return skip_prune(s, x, path, resource, pruned);
    }
    match x {
        Value::Object(map) => {
            let Some(s) = s else {
                // No schema (under `additionalProperties: true`): nothing is known.
                for k in map.keys() {
                    pruned.push(field(path, k));
                }
                map.clear();
                return;
            };
            prune_object(s, map, path, resource || s.embedded_resource, false, pruned);
        }
        Value::Array(items) => {
            let item = s.and_then(|s| s.items.as_deref());
            for (i, v) in items.iter_mut().enumerate() {
                prune(item, v, &format!("{path}[{i}]"), false, pruned);
            }
        }
        _ => {}
    }
}

/// Under `x-kubernetes-preserve-unknown-fields`: unknown fields stay, known ones are pruned
/// by their schema (and so are the items of a preserved array).
fn skip_prune(s: &Node, x: &mut Value, path: &str, resource: bool, pruned: &mut Vec<String>) {
    match x {
        Value::Object(map) => {
            prune_object(s, map, path, resource || s.embedded_resource, true, pruned)
        }
        Value::Array(items) => {
            if let Some(item) = s.items.as_deref() {
                for (i, v) in items.iter_mut().enumerate() {
                    skip_prune(item, v, &format!("{path}[{i}]"), false, pruned);
                }
            }
        }
        _ => {}
    }
}

fn prune_object(
    s: &Node,
    map: &mut Map<String, Value>,
    path: &str,
    resource: bool,
    preserve: bool,
    pruned: &mut Vec<String>,
) {
    let mut drop = Vec::new();
    for (k, v) in map.iter_mut() {
        if resource && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            if k == "metadata" {
                prune_metadata(v, &field(path, k), pruned);
            }
            continue;
        }
        if let Some(p) = s.properties.get(k) {
            prune(Some(p), v, &field(path, k), false, pruned);
        } else {
            match &s.additional {
                Additional::Schema(a) => prune(Some(a), v, &format!("{path}[{k}]"), false, pruned),
                // A boolean `additionalProperties` has no schema: upstream prunes inside with none.
                Additional::Bool(_) => prune(None, v, &format!("{path}[{k}]"), false, pruned),
                _ if preserve => {}
                _ => {
                    pruned.push(field(path, k));
                    drop.push(k.clone());
                }
            }
        }
    }
    for k in drop {
        map.shift_remove(&k);
    }
}

fn is_non_nullable_null(x: &Value, s: Option<&Node>) -> bool {
    x.is_null() && s.is_some_and(|s| !s.nullable)
}

/// Applies defaults: absent fields, and `null` in non-nullable ones, get the schema's default;
/// defaulted values are themselves defaulted (the recursion follows the result).
pub(crate) fn default(s: &Node, x: &mut Value) {
    match x {
        Value::Object(map) => {
            for (k, prop) in &s.properties {
                let Some(d) = &prop.default else { continue };
                match map.get(k) {
                    None => {
                        map.insert(k.clone(), d.clone());
                    }
                    Some(v) if is_non_nullable_null(v, Some(prop)) => {
                        map.insert(k.clone(), d.clone());
                    }
                    _ => {}
                }
            }
            for (k, v) in map.iter_mut() {
                if let Some(p) = s.properties.get(k) {
                    default(p, v);
                } else if let Additional::Schema(a) = &s.additional {
                    if let (true, Some(d)) = (is_non_nullable_null(v, Some(a)), &a.default) {
                        *v = d.clone();
                    }
                    default(a, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &s.items {
                for v in items.iter_mut() {
                    if let (true, Some(d)) = (is_non_nullable_null(v, Some(item)), &item.default) {
                        *v = d.clone();
                    }
                    default(item, v);
                }
            }
        }
        _ => {}
    }
}

/// Drops `null`s of non-nullable fields that have no default (upstream's
/// `PruneNonNullableNullsWithoutDefaults`, run after defaulting).
pub(crate) fn prune_non_nullable_nulls(s: Option<&Node>, x: &mut Value) {
    match x {
        Value::Object(map) => {
            map.retain(|k, v| {
                let c = s.and_then(|s| s.child(k));
                !(v.is_null() && c.is_some_and(|c| !c.nullable && c.default.is_none()))
            });
            for (k, v) in map.iter_mut() {
                prune_non_nullable_nulls(s.and_then(|s| s.child(k)), v);
            }
        }
        Value::Array(items) => {
            let item = s.and_then(|s| s.items.as_deref());
            for v in items.iter_mut() {
                prune_non_nullable_nulls(item, v);
            }
        }
        _ => {}
    }
}
