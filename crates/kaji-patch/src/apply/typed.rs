//! The schema-aware walks of structured-merge-diff's `typed` package over JSON values:
//! the field set of a value, the comparison of two values, merging an applied
//! configuration into a live object, and removing a set of fields.
//!
//! Lists are atomic, sets or maps by `x-kubernetes-list-type` and
//! `x-kubernetes-list-map-keys`, falling back to the patch strategy and merge key as
//! upstream's OpenAPI-to-schema conversion does; maps are granular unless
//! `x-kubernetes-map-type: atomic`. Values the schema does not describe are "deduced":
//! maps granular, lists atomic.

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, PathElement};
use crate::schema::{FieldMeta, Schema};

#[derive(Clone, Copy)]
pub(crate) struct Ty<'a> {
    schema: Schema<'a>,
    meta: FieldMeta<'a>,
}

enum ListKind<'a> {
    Atomic,
    Set,
    Map(Vec<&'a str>),
}

impl<'a> Ty<'a> {
    pub(crate) fn root(schema: Schema<'a>) -> Self {
        Ty {
            schema,
            meta: FieldMeta::default(),
        }
    }

    /// The type of member `key` and whether it is a declared struct field.
    fn field(self, key: &str) -> (Ty<'a>, bool) {
        let (schema, meta) = self.schema.field(key);
        (Ty { schema, meta }, self.schema.has_property(key))
    }

    fn items(self) -> Ty<'a> {
        Ty {
            schema: self.schema.items(),
            meta: FieldMeta::default(),
        }
    }

    fn map_atomic(self) -> bool {
        self.meta.map_type() == Some("atomic") || self.schema.map_type() == Some("atomic")
    }

    fn list_kind(self) -> ListKind<'a> {
        let merge_key = self.meta.patch_merge_key();
        match self.meta.list_type().or_else(|| self.schema.list_type()) {
            Some("map") => {
                let keys = self.meta.list_map_keys();
                if !keys.is_empty() {
                    ListKind::Map(keys)
                } else if !merge_key.is_empty() {
                    ListKind::Map(vec![merge_key])
                } else {
                    ListKind::Atomic
                }
            }
            Some("set") => ListKind::Set,
            Some(_) => ListKind::Atomic,
            None if self.meta.patch_strategies().contains(&"merge") => {
                if merge_key.is_empty() {
                    ListKind::Set
                } else {
                    ListKind::Map(vec![merge_key])
                }
            }
            None => ListKind::Atomic,
        }
    }

    /// The path element of list item `index`.
    fn item_element(
        self,
        kind: &ListKind<'_>,
        index: usize,
        item: &Value,
    ) -> Result<PathElement, String> {
        match kind {
            ListKind::Atomic => Ok(PathElement::Index(i64::try_from(index).unwrap_or(i64::MAX))),
            ListKind::Set => match item {
                Value::Array(_) | Value::Object(_) => {
                    Err("values in a set must be scalars".to_string())
                }
                v => Ok(PathElement::Value(v.clone())),
            },
            ListKind::Map(keys) => {
                let Value::Object(m) = item else {
                    return Err(if item.is_null() {
                        "associative list with keys may not have a null element".to_string()
                    } else {
                        "associative list with keys may not have non-map elements".to_string()
                    });
                };
                let items = self.items();
                let mut fields = Vec::with_capacity(keys.len());
                for key in keys {
                    let value = m
                        .get(*key)
                        .or_else(|| items.schema.property_default(key))
                        .ok_or_else(|| {
                            format!(
                                "associative list with keys has an element that omits key field {key:?} (and doesn't have default value)"
                            )
                        })?;
                    fields.push(((*key).to_string(), value.clone()));
                }
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(PathElement::Key(fields))
            }
        }
    }

    /// The items of a granular list with their path elements; duplicates are errors.
    fn keyed_items<'v>(
        self,
        kind: &ListKind<'_>,
        list: &'v [Value],
        side: &str,
    ) -> Result<Vec<(PathElement, &'v Value)>, String> {
        let mut out: Vec<(PathElement, &Value)> = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            let pe = self
                .item_element(kind, i, item)
                .map_err(|e| format!("{side}: element {i}: {e}"))?;
            if out.iter().any(|(p, _)| *p == pe) {
                return Err(format!("{side}: duplicate entries for key {pe}"));
            }
            out.push((pe, item));
        }
        Ok(out)
    }
}

fn is_empty_container(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    }
}

/// How a node with these two sides is walked.
enum Walk<'a> {
    Leaf,
    Map,
    List(ListKind<'a>),
}

fn walk_kind<'a>(l: Option<&Value>, r: Option<&Value>, ty: Ty<'a>) -> Walk<'a> {
    let both_empty = is_empty_container(l) && is_empty_container(r);
    let sides = [l, r];
    let present = sides.iter().flatten();
    if present.clone().all(|v| v.is_object()) {
        if ty.map_atomic() || both_empty {
            return Walk::Leaf;
        }
        return Walk::Map;
    }
    if present.clone().all(|v| v.is_array()) {
        let kind = ty.list_kind();
        if matches!(kind, ListKind::Atomic) || both_empty {
            return Walk::Leaf;
        }
        return Walk::List(kind);
    }
    Walk::Leaf
}

/// `ToFieldSet`: every leaf, every list item and every map entry of `v`.
pub(crate) fn to_field_set(v: &Value, ty: Ty<'_>) -> Result<FieldSet, String> {
    let mut set = FieldSet::new();
    field_set_walk(v, ty, &mut Vec::new(), &mut set)?;
    Ok(set)
}

fn field_set_walk(
    v: &Value,
    ty: Ty<'_>,
    path: &mut Vec<PathElement>,
    set: &mut FieldSet,
) -> Result<(), String> {
    match v {
        Value::Object(m) => {
            if ty.map_atomic() {
                set.insert(path);
                return Ok(());
            }
            for (k, val) in m {
                let (child, declared) = ty.field(k);
                path.push(PathElement::Field(k.clone()));
                field_set_walk(val, child, path, set)?;
                if !declared {
                    set.insert(path);
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            let kind = ty.list_kind();
            if matches!(kind, ListKind::Atomic) {
                set.insert(path);
                return Ok(());
            }
            for (pe, item) in ty.keyed_items(&kind, items, "value")? {
                path.push(pe);
                field_set_walk(item, ty.items(), path, set)?;
                set.insert(path);
                path.pop();
            }
        }
        _ => set.insert(path),
    }
    Ok(())
}

/// The paths added, modified and removed between two values (`TypedValue.Compare`).
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    pub(crate) added: FieldSet,
    pub(crate) modified: FieldSet,
    pub(crate) removed: FieldSet,
}

pub(crate) fn compare(old: &Value, new: &Value, ty: Ty<'_>) -> Result<Comparison, String> {
    let mut c = Comparison::default();
    compare_walk(Some(old), Some(new), ty, &mut Vec::new(), &mut c)?;
    Ok(c)
}

fn compare_walk(
    l: Option<&Value>,
    r: Option<&Value>,
    ty: Ty<'_>,
    path: &mut Vec<PathElement>,
    c: &mut Comparison,
) -> Result<(), String> {
    match walk_kind(l, r, ty) {
        Walk::Leaf => {
            match (l, r) {
                (None, _) => c.added.insert(path),
                (_, None) => c.removed.insert(path),
                (Some(a), Some(b)) if a != b => c.modified.insert(path),
                _ => {}
            }
            return Ok(());
        }
        // Equal sides hold no difference: skip the walk (most of an object is unchanged by a
        // write: a status update leaves the spec, a binding the status).
        Walk::Map | Walk::List(_) if l.is_some() && l == r => return Ok(()),
        Walk::Map => {
            let empty = Map::new();
            let lm = l.and_then(Value::as_object).unwrap_or(&empty);
            let rm = r.and_then(Value::as_object).unwrap_or(&empty);
            let in_metadata = matches!(path.as_slice(), [PathElement::Field(f)] if f == "metadata");
            for k in lm.keys().chain(rm.keys().filter(|k| !lm.contains_key(*k))) {
                // managedFields are never a managed field: both sides' are ignored, so callers
                // need not copy the objects to strip them.
                if in_metadata && k == "managedFields" {
                    continue;
                }
                path.push(PathElement::Field(k.clone()));
                compare_walk(lm.get(k), rm.get(k), ty.field(k).0, path, c)?;
                path.pop();
            }
        }
        Walk::List(kind) => {
            let empty = Vec::new();
            let la = l.and_then(Value::as_array).unwrap_or(&empty);
            let ra = r.and_then(Value::as_array).unwrap_or(&empty);
            let li = ty.keyed_items(&kind, la, "lhs")?;
            let ri = ty.keyed_items(&kind, ra, "rhs")?;
            for (pe, item) in &li {
                path.push(pe.clone());
                compare_walk(Some(item), find_item(&ri, pe), ty.items(), path, c)?;
                path.pop();
            }
            for (pe, item) in &ri {
                if find_item(&li, pe).is_none() {
                    path.push(pe.clone());
                    compare_walk(None, Some(item), ty.items(), path, c)?;
                    path.pop();
                }
            }
        }
    }
    match (l, r) {
        (None, _) => c.added.insert(path),
        (_, None) => c.removed.insert(path),
        _ => {}
    }
    Ok(())
}

fn find_item<'v>(items: &[(PathElement, &'v Value)], pe: &PathElement) -> Option<&'v Value> {
    items.iter().find(|(p, _)| p == pe).map(|(_, v)| *v)
}

/// `TypedValue.Merge`: `rhs` (the applied configuration) wins at every leaf; granular
/// maps and lists are merged member by member. Live list items keep their order and
/// new ones follow in the configuration's order.
pub(crate) fn merge(lhs: &Value, rhs: &Value, ty: Ty<'_>) -> Result<Value, String> {
    Ok(merge_walk(Some(lhs), Some(rhs), ty)?.unwrap_or(Value::Null))
}

fn merge_walk(l: Option<&Value>, r: Option<&Value>, ty: Ty<'_>) -> Result<Option<Value>, String> {
    match walk_kind(l, r, ty) {
        Walk::Leaf => Ok(r.or(l).cloned()),
        Walk::Map => {
            let empty = Map::new();
            let lm = l.and_then(Value::as_object).unwrap_or(&empty);
            let rm = r.and_then(Value::as_object).unwrap_or(&empty);
            let mut out = Map::new();
            for k in lm.keys().chain(rm.keys().filter(|k| !lm.contains_key(*k))) {
                if let Some(v) = merge_walk(lm.get(k), rm.get(k), ty.field(k).0)? {
                    out.insert(k.clone(), v);
                }
            }
            Ok((!out.is_empty()).then_some(Value::Object(out)))
        }
        Walk::List(kind) => {
            let empty = Vec::new();
            let la = l.and_then(Value::as_array).unwrap_or(&empty);
            let ra = r.and_then(Value::as_array).unwrap_or(&empty);
            let ri = ty.keyed_items(&kind, ra, "rhs")?;
            let li = ty.keyed_items(&kind, la, "lhs")?;
            let mut out = Vec::with_capacity(la.len().max(ra.len()));
            for (pe, item) in &li {
                let rv = ri.iter().find(|(p, _)| p == pe).map(|(_, v)| *v);
                out.extend(merge_walk(Some(item), rv, ty.items())?);
            }
            for (pe, item) in &ri {
                if !li.iter().any(|(p, _)| p == pe) {
                    out.extend(merge_walk(None, Some(item), ty.items())?);
                }
            }
            Ok((!out.is_empty()).then_some(Value::Array(out)))
        }
    }
}

/// `RemoveItems`: `v` without the members of `set`. A map or list left empty goes away
/// (upstream leaves null, which typed decoding drops).
pub(crate) fn remove_items(v: &Value, set: &FieldSet, ty: Ty<'_>) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.is_empty() || ty.map_atomic() {
                return None;
            }
            let mut out = Map::new();
            for (k, val) in m {
                let pe = PathElement::Field(k.clone());
                if set.has(std::slice::from_ref(&pe)) {
                    continue;
                }
                let kept = match set.with_prefix(&pe) {
                    Some(sub) if !sub.is_empty() => remove_items(val, sub, ty.field(k).0),
                    _ => Some(val.clone()),
                };
                if let Some(kept) = kept {
                    out.insert(k.clone(), kept);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(items) => {
            let kind = ty.list_kind();
            if items.is_empty() || matches!(kind, ListKind::Atomic) {
                return None;
            }
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let Ok(pe) = ty.item_element(&kind, i, item) else {
                    out.push(item.clone());
                    continue;
                };
                if set.has(std::slice::from_ref(&pe)) {
                    continue;
                }
                match set.with_prefix(&pe) {
                    Some(sub) if !sub.is_empty() => out.extend(remove_items(item, sub, ty.items())),
                    _ => out.push(item.clone()),
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        other => Some(other.clone()),
    }
}
