//! Kubernetes strategic merge patch (`application/strategic-merge-patch+json`), applied
//! on the server as upstream's `StrategicMergeMapPatch` does
//! (<https://github.com/kubernetes/apimachinery/blob/master/pkg/util/strategicpatch/patch.go>,
//! `mergeMap` / `mergeSlice` with `MergeParallelList` and `IgnoreUnmatchedNulls` on).
//!
//! In short: maps merge key by key and null deletes a key; a list whose field has patch
//! strategy "merge" merges its items by the field's merge key (lists of primitives are
//! unioned); other lists are replaced. Directives: `$patch` (replace / delete / merge),
//! `$retainKeys`, `$setElementOrder/<field>`, `$deleteFromPrimitiveList/<field>`.
//!
//! Values that land where the original had nothing are cleaned as newer upstream does
//! (`discardNullValuesFromPatch` and `removeDirectives`): null members dropped, maps
//! carrying `$patch` dropped. We also drop leftover directive keys, which upstream's
//! typed decoding would drop, since Kaji stores the JSON as it is.

use serde_json::{Map, Value};

use crate::PatchError;
use crate::gofmt;
use crate::schema::{FieldMeta, Schema};

const DIRECTIVE_MARKER: &str = "$patch";
const DELETE_DIRECTIVE: &str = "delete";
const REPLACE_DIRECTIVE: &str = "replace";
const MERGE_DIRECTIVE: &str = "merge";
const RETAIN_KEYS_STRATEGY: &str = "retainKeys";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";

// Upstream's sentinel errors (k8s.io/apimachinery/pkg/util/mergepatch), which the API
// server answers with 400 or 422.
const ERR_BAD_JSON_DOC: &str = "invalid JSON document";
const ERR_NO_LIST_OF_LISTS: &str = "lists of lists are not supported";
const ERR_BAD_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";
const ERR_BAD_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
const ERR_BAD_SET_ELEMENT_ORDER: &str = "invalid patch format of setElementOrder list";

type Result<T> = std::result::Result<T, PatchError>;

/// Applies a strategic merge patch to `doc`. `defs` maps OpenAPI definition names to
/// schemas and `root` names the schema of `doc` (e.g. `io.k8s.api.apps.v1.Deployment`);
/// fields the schema does not know merge as plain maps and replaced lists.
///
/// # Errors
/// A [`PatchError`] with upstream's message: `BadRequest` for a malformed patch or
/// directive, `Unprocessable` for lists of lists, `Internal` for the rest (such as a
/// merge list item without its merge key), as upstream classifies them.
pub fn strategic_merge_patch(
    doc: &Value,
    patch: &Value,
    defs: &Map<String, Value>,
    root: &str,
) -> Result<Value> {
    let Value::Object(original) = doc else {
        return Err(PatchError::BadRequest(ERR_BAD_JSON_DOC.to_string()));
    };
    let patch = match patch {
        Value::Object(p) => p.clone(),
        other => {
            return Err(PatchError::BadRequest(format!(
                "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                gofmt::json_kind(other)
            )));
        }
    };
    merge_map(original.clone(), patch, Schema::root(defs, root)).map(Value::Object)
}

fn internal(msg: impl Into<String>) -> PatchError {
    PatchError::Internal(msg.into())
}

fn bad_arg_type(expected: &str, actual: &Value) -> PatchError {
    internal(format!(
        "expected a {expected}, but received a {}",
        gofmt::type_name(actual)
    ))
}

fn no_merge_key(m: &Map<String, Value>, key: &str) -> PatchError {
    internal(format!(
        "map: {} does not contain declared merge key: {key}",
        gofmt::v(&Value::Object(m.clone()))
    ))
}

fn bad_patch_type(t: &Value, m: &Map<String, Value>) -> PatchError {
    internal(format!(
        "unknown patch type: {} in map: {}",
        gofmt::v(t),
        gofmt::v(&Value::Object(m.clone()))
    ))
}

fn is_directive_key(k: &str) -> bool {
    k == DIRECTIVE_MARKER
        || k == RETAIN_KEYS_DIRECTIVE
        || k.starts_with(SET_ELEMENT_ORDER_PREFIX)
        || k.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
}

/// A patch value placed where the original had nothing: null members and directive
/// keys dropped, and None for a map carrying `$patch` (which is not kept at all).
fn fresh(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE_MARKER) {
                return None;
            }
            Some(Value::Object(clean_map(m)))
        }
        Value::Array(items) => Some(Value::Array(
            items
                .into_iter()
                .filter_map(|i| if i.is_null() { Some(i) } else { fresh(i) })
                .collect(),
        )),
        other => Some(other),
    }
}

fn clean_map(m: Map<String, Value>) -> Map<String, Value> {
    m.into_iter()
        .filter(|(k, v)| !v.is_null() && !is_directive_key(k))
        .filter_map(|(k, v)| fresh(v).map(|v| (k, v)))
        .collect()
}

/// `extractRetainKeysPatchStrategy`: the strategy other than retainKeys.
fn other_strategy(meta: FieldMeta<'_>) -> Result<&str> {
    let strategies = meta.patch_strategies();
    match strategies.as_slice() {
        [] | [RETAIN_KEYS_STRATEGY] => Ok(""),
        [one] => Ok(one),
        [RETAIN_KEYS_STRATEGY, other] | [other, RETAIN_KEYS_STRATEGY] => Ok(other),
        _ => Err(internal(format!(
            "unexpected patch strategy: [{}]",
            strategies.join(" ")
        ))),
    }
}

/// `extractKey`: the field name after a `$directive/` prefix.
fn extract_key<'k>(s: &'k str, prefix: &str) -> Result<&'k str> {
    match s.split_once('/') {
        Some((p, rest)) if p == prefix => Ok(rest),
        _ if prefix == DELETE_FROM_PRIMITIVE_LIST_PREFIX => {
            Err(PatchError::BadRequest(ERR_BAD_PRIMITIVE_LIST.to_string()))
        }
        _ => Err(PatchError::BadRequest(
            ERR_BAD_SET_ELEMENT_ORDER.to_string(),
        )),
    }
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Schema<'_>,
) -> Result<Map<String, Value>> {
    if let Some(directive) = patch.get(DIRECTIVE_MARKER) {
        return match directive.as_str() {
            Some(REPLACE_DIRECTIVE) => {
                patch.shift_remove(DIRECTIVE_MARKER);
                Ok(clean_map(patch))
            }
            Some(DELETE_DIRECTIVE) => Ok(Map::new()),
            _ => Err(bad_patch_type(directive, &patch)),
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    merge_set_element_order(&mut original, &mut patch, schema)?;

    for (k, patch_v) in patch {
        let (key, is_delete_list) = if k.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
            (
                extract_key(&k, DELETE_FROM_PRIMITIVE_LIST_PREFIX)?.to_string(),
                true,
            )
        } else {
            (k, false)
        };
        if patch_v.is_null() {
            original.shift_remove(&key);
            continue;
        }
        let Some(orig_v) = original.get_mut(&key) else {
            if !is_delete_list && let Some(v) = fresh(patch_v) {
                original.insert(key, v);
            }
            continue;
        };
        match (orig_v, patch_v) {
            (Value::Object(o), Value::Object(p)) => {
                let (sub, meta) = schema.field(&key);
                if other_strategy(meta)? == REPLACE_DIRECTIVE {
                    *o = clean_map(p);
                } else {
                    *o = merge_map(std::mem::take(o), p, sub)?;
                }
            }
            (Value::Array(o), Value::Array(p)) => {
                let (sub, meta) = schema.list_field(&key);
                let strategy = other_strategy(meta)?;
                *o = merge_slice_handler(
                    std::mem::take(o),
                    p,
                    sub,
                    strategy,
                    meta.patch_merge_key(),
                    is_delete_list,
                )?;
            }
            (orig_v, patch_v) => {
                if is_delete_list {
                    continue;
                }
                match fresh(patch_v) {
                    Some(v) => *orig_v = v,
                    None => {
                        original.shift_remove(&key);
                    }
                }
            }
        }
    }
    Ok(original)
}

/// `$retainKeys`: drop the original's keys missing from the list, after checking that
/// every key the patch sets is in it.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<()> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS_DIRECTIVE) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::BadRequest(ERR_BAD_RETAIN_KEYS.to_string()));
    };
    let keeps = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
            || k.starts_with(SET_ELEMENT_ORDER_PREFIX)
        {
            continue;
        }
        if !keeps(k) {
            return Err(PatchError::BadRequest(ERR_BAD_RETAIN_KEYS.to_string()));
        }
    }
    original.retain(|k, _| keeps(k));
    Ok(())
}

fn list_at<'v>(m: &'v Map<String, Value>, key: &str) -> Result<Option<&'v Vec<Value>>> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(other) => Err(bad_arg_type("[]interface {}", other)),
    }
}

/// `mergePatchIntoOriginal`: merges each list that has a `$setElementOrder/<field>`
/// directive and orders it by the directive, then the patch, then the live list.
/// See <https://git.k8s.io/design-proposals-archive/cli/preserve-order-in-strategic-merge-patch.md>.
fn merge_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: Schema<'_>,
) -> Result<()> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER_PREFIX))
        .cloned()
        .collect();
    for key in keys {
        let Some(order) = patch.shift_remove(&key) else {
            continue;
        };
        let Value::Array(order) = order else {
            return Err(bad_arg_type("[]interface {}", &order));
        };
        let field = extract_key(&key, SET_ELEMENT_ORDER_PREFIX)?.to_string();
        let orig_list = list_at(original, &field)?.cloned();
        let patch_list = list_at(patch, &field)?.cloned();
        let (sub, meta) = schema.list_field(&field);
        let strategy = other_strategy(meta)?;
        let merge_key = meta.patch_merge_key();
        validate_patch_with_set_order_list(
            patch_list.as_deref().unwrap_or_default(),
            &order,
            merge_key,
        )?;
        let merged = match (&orig_list, patch_list.clone()) {
            (Some(o), None) => o.clone(),
            (None, Some(p)) => match fresh(Value::Array(p)) {
                Some(Value::Array(p)) => p,
                _ => Vec::new(),
            },
            (Some(o), Some(p)) => {
                merge_slice_handler(o.clone(), p, sub, strategy, merge_key, false)?
            }
            (None, None) => continue,
        };
        let (patch_items, server_only) = partition(merged, &order, merge_key)?;
        let orig_list = orig_list.unwrap_or_default();
        let is_map =
            slice_element_is_map(&[&orig_list, patch_list.as_deref().unwrap_or_default()])?;
        let both = normalize_element_order(
            patch_items,
            server_only,
            &order,
            &orig_list,
            merge_key,
            is_map,
        )?;
        original.insert(field.clone(), Value::Array(both));
        patch.shift_remove(&field);
    }
    Ok(())
}

/// The patch list's items (deletions aside) must appear in the `$setElementOrder` list,
/// in the same relative order.
fn validate_patch_with_set_order_list(
    patch_list: &[Value],
    order: &[Value],
    merge_key: &str,
) -> Result<()> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let non_delete = if merge_key.is_empty() {
        patch_list.to_vec()
    } else {
        extract_to_delete_items(patch_list.to_vec())?.0
    };
    let (mut pi, mut si) = (0, 0);
    while pi < non_delete.len() && si < order.len() {
        if non_delete[pi]
            .as_object()
            .is_some_and(|m| m.contains_key(DIRECTIVE_MARKER))
        {
            pi += 1;
            continue;
        }
        if merge_key_value_equal(&non_delete[pi], &order[si], merge_key)? {
            pi += 1;
        }
        si += 1;
    }
    if pi < non_delete.len() && si >= order.len() {
        return Err(internal(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER_PREFIX} list:\n{}\n",
            gofmt::v(&Value::Array(patch_list.to_vec())),
            gofmt::v(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

fn merge_key_value_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool> {
    if merge_key.is_empty() {
        return Ok(left == right);
    }
    let l = left
        .as_object()
        .ok_or_else(|| bad_arg_type("map[string]interface {}", left))?;
    let r = right
        .as_object()
        .ok_or_else(|| bad_arg_type("map[string]interface {}", right))?;
    let lv = l.get(merge_key).ok_or_else(|| no_merge_key(l, merge_key))?;
    let rv = r.get(merge_key).ok_or_else(|| no_merge_key(r, merge_key))?;
    Ok(lv == rv)
}

/// Splits list items into those to keep and those marked `$patch: delete`.
fn extract_to_delete_items(list: Vec<Value>) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut keep = Vec::new();
    let mut delete = Vec::new();
    for item in list {
        let Some(m) = item.as_object() else {
            return Err(bad_arg_type("map[string]interface {}", &item));
        };
        if m.get(DIRECTIVE_MARKER).and_then(Value::as_str) == Some(DELETE_DIRECTIVE) {
            delete.push(item);
        } else {
            keep.push(item);
        }
    }
    Ok((keep, delete))
}

fn merge_slice_handler(
    original: Vec<Value>,
    patch: Vec<Value>,
    schema: Schema<'_>,
    strategy: &str,
    merge_key: &str,
    is_delete_list: bool,
) -> Result<Vec<Value>> {
    if strategy == MERGE_DIRECTIVE {
        return merge_slice(original, patch, schema, merge_key, is_delete_list);
    }
    match fresh(Value::Array(patch)) {
        Some(Value::Array(p)) => Ok(p),
        _ => Ok(Vec::new()),
    }
}

/// `sliceElementType`: all items of all lists must have one Go type, not a list.
/// Returns whether that type is a map.
fn slice_element_is_map(lists: &[&[Value]]) -> Result<bool> {
    let mut first: Option<&Value> = None;
    for item in lists.iter().flat_map(|l| l.iter()) {
        match first {
            None => {
                if item.is_array() {
                    return Err(PatchError::Unprocessable(ERR_NO_LIST_OF_LISTS.to_string()));
                }
                first = Some(item);
            }
            Some(f) if gofmt::type_name(f) != gofmt::type_name(item) => {
                let all: Vec<Value> = lists.iter().map(|l| Value::Array(l.to_vec())).collect();
                return Err(internal(format!(
                    "list element types are not identical: {}",
                    gofmt::v(&Value::Array(all))
                )));
            }
            Some(_) => {}
        }
    }
    match first {
        Some(f) => Ok(f.is_object()),
        None => Err(internal("no elements in any of the given slices")),
    }
}

fn merge_slice(
    original: Vec<Value>,
    patch: Vec<Value>,
    schema: Schema<'_>,
    merge_key: &str,
    is_delete_list: bool,
) -> Result<Vec<Value>> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let is_map = slice_element_is_map(&[&original, &patch])?;
    let (merged, server_order, patch_order) = if is_map {
        if merge_key.is_empty() {
            return Err(internal(format!(
                "cannot merge lists without merge key for {}",
                schema.name()
            )));
        }
        let (original, patch) = merge_slice_with_special_elements(original, patch, merge_key)?;
        let merged =
            merge_slice_without_special_elements(original.clone(), &patch, merge_key, schema)?;
        (merged, original, patch)
    } else {
        if is_delete_list {
            return Ok(original
                .into_iter()
                .filter(|v| !patch.contains(v))
                .collect());
        }
        let both: Vec<Value> = original.iter().chain(patch.iter()).cloned().collect();
        (deduplicate_scalars(both), original, patch)
    };
    let (patch_items, server_only) = partition(merged, &patch_order, merge_key)?;
    normalize_element_order(
        patch_items,
        server_only,
        &patch_order,
        &server_order,
        merge_key,
        is_map,
    )
}

/// Handles the list items carrying `$patch`: `delete` removes the original items with
/// that merge key, `replace` makes the patch's other items the whole list.
fn merge_slice_with_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut plain = Vec::new();
    let mut replace = false;
    for item in patch {
        let Some(m) = item.as_object() else {
            return Err(bad_arg_type("map[string]interface {}", &item));
        };
        let Some(directive) = m.get(DIRECTIVE_MARKER) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some(DELETE_DIRECTIVE) => {
                let Some(value) = m.get(merge_key) else {
                    return Err(no_merge_key(m, merge_key));
                };
                let mut kept = Vec::with_capacity(original.len());
                for (i, o) in original.into_iter().enumerate() {
                    let Some(om) = o.as_object() else {
                        return Err(internal(format!("value for key {i} is not a map")));
                    };
                    if om.get(merge_key) != Some(value) {
                        kept.push(o);
                    }
                }
                original = kept;
            }
            Some(REPLACE_DIRECTIVE) => replace = true,
            Some(MERGE_DIRECTIVE) => {
                return Err(internal(
                    "merging lists cannot yet be specified in the patch",
                ));
            }
            _ => return Err(bad_patch_type(directive, m)),
        }
    }
    if replace {
        let items = plain.into_iter().filter_map(fresh).collect::<Vec<Value>>();
        return Ok((items, Vec::new()));
    }
    Ok((original, plain))
}

fn find_by_merge_key(list: &[Value], merge_key: &str, value: &Value) -> Result<Option<usize>> {
    for (i, item) in list.iter().enumerate() {
        let Some(m) = item.as_object() else {
            return Err(internal(format!("value for key {i} is not a map")));
        };
        if m.get(merge_key) == Some(value) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

fn merge_slice_without_special_elements(
    mut original: Vec<Value>,
    patch: &[Value],
    merge_key: &str,
    schema: Schema<'_>,
) -> Result<Vec<Value>> {
    for item in patch {
        let Some(m) = item.as_object() else {
            return Err(bad_arg_type("map[string]interface {}", item));
        };
        let Some(value) = m.get(merge_key) else {
            return Err(no_merge_key(m, merge_key));
        };
        match find_by_merge_key(&original, merge_key, value)? {
            Some(i) => {
                let Value::Object(o) = std::mem::take(&mut original[i]) else {
                    return Err(internal(format!("value for key {i} is not a map")));
                };
                original[i] = Value::Object(merge_map(o, m.clone(), schema)?);
            }
            None => {
                if let Some(v) = fresh(item.clone()) {
                    original.push(v);
                }
            }
        }
    }
    Ok(original)
}

/// Upstream's in-place deduplication (it moves the last item into each duplicate's
/// slot); the order is normalized afterwards anyway.
fn deduplicate_scalars(mut s: Vec<Value>) -> Vec<Value> {
    let mut i = 0;
    while i + 1 < s.len() {
        let mut j = i + 1;
        while j < s.len() {
            if s[i] == s[j] {
                let last = s.len() - 1;
                s.swap(j, last);
                s.truncate(last);
            } else {
                j += 1;
            }
        }
        i += 1;
    }
    s
}

/// Splits `merged` into the items present in `by` and the server-only rest.
fn partition(
    merged: Vec<Value>,
    by: &[Value],
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut in_patch = Vec::with_capacity(merged.len());
    let mut server_only = Vec::with_capacity(merged.len());
    for item in merged {
        let found = if merge_key.is_empty() {
            by.contains(&item)
        } else {
            let Some(m) = item.as_object() else {
                return Err(bad_arg_type("map[string]interface {}", &item));
            };
            let Some(value) = m.get(merge_key) else {
                return Err(no_merge_key(m, merge_key));
            };
            find_by_merge_key(by, merge_key, value)?.is_some()
        };
        if found {
            in_patch.push(item);
        } else {
            server_only.push(item);
        }
    }
    Ok((in_patch, server_only))
}

/// The position of `item` in `list`, by merge key for maps and by value otherwise.
fn index_of(list: &[Value], item: &Value, merge_key: &str, is_map: bool) -> Option<usize> {
    let key = |v: &'_ Value| -> Option<Value> {
        if is_map {
            v.as_object().and_then(|m| m.get(merge_key)).cloned()
        } else {
            Some(v.clone())
        }
    };
    let wanted = key(item);
    list.iter().position(|v| key(v) == wanted)
}

/// Sorts the patch items by the patch order and the server-only items by the live
/// order, then interleaves them keeping both relative orders.
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    is_map: bool,
) -> Result<Vec<Value>> {
    let patch_items = normalize_slice_order(patch_items, patch_order, merge_key, is_map)?;
    let server_only = normalize_slice_order(server_only, server_order, merge_key, is_map)?;
    Ok(merge_sorted_slice(
        server_only,
        patch_items,
        server_order,
        merge_key,
        is_map,
    ))
}

fn normalize_slice_order(
    to_sort: Vec<Value>,
    order: &[Value],
    merge_key: &str,
    is_map: bool,
) -> Result<Vec<Value>> {
    let (mut to_sort, to_delete) = if is_map {
        for item in to_sort.iter().chain(order.iter()) {
            let Some(m) = item.as_object() else {
                return Err(bad_arg_type("map[string]interface {}", item));
            };
            if !m.contains_key(merge_key) {
                return Err(no_merge_key(m, merge_key));
            }
        }
        extract_to_delete_items(to_sort)?
    } else {
        (to_sort, Vec::new())
    };
    // Every item is in `order` on the paths upstream takes; unknown ones go last.
    to_sort.sort_by_cached_key(|v| index_of(order, v, merge_key, is_map).unwrap_or(usize::MAX));
    to_sort.extend(to_delete);
    Ok(to_sort)
}

/// `mergeSortedSlice`: inserts each server-only item (`left`) before the first patch
/// item (`right`) that comes after it in the live order.
fn merge_sorted_slice(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: &str,
    is_map: bool,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                let li = index_of(server_order, l, merge_key, is_map);
                let ri = index_of(server_order, r, merge_key, is_map);
                matches!((li, ri), (Some(li), Some(ri)) if li < ri)
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::testdefs;
    use serde_json::json;

    fn smp(doc: Value, patch: Value) -> Result<Value> {
        strategic_merge_patch(&doc, &patch, &testdefs::defs(), "test.Deployment")
    }

    fn pod(containers: Value) -> Value {
        json!({"spec": {"template": {"spec": {"containers": containers}}}})
    }

    fn containers(v: &Value) -> &Value {
        &v["spec"]["template"]["spec"]["containers"]
    }

    #[test]
    fn maps_merge_and_null_deletes() {
        let doc = json!({"metadata": {"name": "d", "labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 1}});
        let out = smp(
            doc,
            json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"replicas": 3}}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"name": "d", "labels": {"b": "2", "c": "3"}}, "spec": {"replicas": 3}})
        );
    }

    #[test]
    fn containers_merge_by_name() {
        let doc = pod(json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]));
        let out = smp(
            doc,
            pod(json!([{"name": "b", "image": "b:2"}, {"name": "c", "image": "c:1"}])),
        )
        .unwrap();
        assert_eq!(
            containers(&out),
            &json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}, {"name": "c", "image": "c:1"}])
        );
    }

    #[test]
    fn nested_merge_lists_ports_and_env() {
        let doc = pod(
            json!([{"name": "a", "ports": [{"containerPort": 80, "name": "http"}],
            "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}]),
        );
        let patch = pod(json!([{"name": "a", "ports": [{"containerPort": 443}],
            "env": [{"name": "Y", "value": null, "valueFrom": {"fieldRef": {}}}]}]));
        let out = smp(doc, patch).unwrap();
        assert_eq!(
            containers(&out),
            &json!([{"name": "a",
                "ports": [{"containerPort": 443}, {"containerPort": 80, "name": "http"}],
                "env": [{"name": "X", "value": "1"}, {"name": "Y", "valueFrom": {"fieldRef": {}}}]}])
        );
    }

    #[test]
    fn non_merge_lists_are_replaced() {
        let doc = pod(json!([{"name": "a", "args": ["x", "y"]}]));
        let out = smp(doc, pod(json!([{"name": "a", "args": ["z"]}]))).unwrap();
        assert_eq!(containers(&out), &json!([{"name": "a", "args": ["z"]}]));
    }

    #[test]
    fn unknown_fields_merge_plainly() {
        let doc = json!({"extra": {"a": 1, "list": [{"name": "x"}]}});
        let out = smp(doc, json!({"extra": {"b": 2, "list": [{"name": "y"}]}})).unwrap();
        assert_eq!(
            out,
            json!({"extra": {"a": 1, "list": [{"name": "y"}], "b": 2}})
        );
    }

    #[test]
    fn primitive_merge_lists_union_and_delete() {
        let doc = json!({"metadata": {"finalizers": ["a", "b"]}});
        let out = smp(doc.clone(), json!({"metadata": {"finalizers": ["c", "a"]}})).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "a", "b"]));
        let out = smp(
            doc.clone(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "z"]}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        let out = smp(
            doc,
            json!({"metadata": {"$setElementOrder/finalizers": ["b", "c"], "finalizers": ["c"],
                "$deleteFromPrimitiveList/finalizers": ["a"]}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
        // Deleting from a list that is not there adds nothing.
        let out = smp(
            json!({"metadata": {}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        )
        .unwrap();
        assert_eq!(out, json!({"metadata": {}}));
    }

    #[test]
    fn patch_delete_in_list_item() {
        let doc = pod(json!([{"name": "a"}, {"name": "b"}, {"name": "a", "image": "dup"}]));
        let out = smp(doc, pod(json!([{"name": "a", "$patch": "delete"}]))).unwrap();
        assert_eq!(containers(&out), &json!([{"name": "b"}]));
    }

    #[test]
    fn patch_replace_in_list() {
        let doc = pod(json!([{"name": "a"}, {"name": "b"}]));
        let out = smp(
            doc,
            pod(json!([{"name": "c", "image": "c"}, {"$patch": "replace"}])),
        )
        .unwrap();
        assert_eq!(containers(&out), &json!([{"name": "c", "image": "c"}]));
    }

    #[test]
    fn patch_directives_in_maps() {
        let doc = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}});
        let out = smp(
            doc.clone(),
            json!({"metadata": {"labels": {"b": "2", "$patch": "replace"}}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        let out = smp(
            doc.clone(),
            json!({"metadata": {"labels": {"$patch": "delete"}}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({}));
        let e = smp(
            doc.clone(),
            json!({"metadata": {"labels": {"$patch": "frob"}}}),
        )
        .unwrap_err();
        assert_eq!(
            e.message(),
            "unknown patch type: frob in map: map[$patch:frob]"
        );
        let e = smp(
            pod(json!([{"name": "a"}])),
            pod(json!([{"name": "a", "$patch": "merge"}])),
        )
        .unwrap_err();
        assert_eq!(
            e.message(),
            "merging lists cannot yet be specified in the patch"
        );
        // A new map carrying $patch is dropped, as newer upstream does.
        let out = smp(doc, json!({"status": {"$patch": "delete"}})).unwrap();
        assert!(out.get("status").is_none());
    }

    #[test]
    fn missing_merge_key_errors() {
        let doc = pod(json!([{"name": "a"}]));
        let e = smp(doc, pod(json!([{"image": "x"}]))).unwrap_err();
        assert_eq!(
            e,
            PatchError::Internal(
                "map: map[image:x] does not contain declared merge key: name".into()
            )
        );
    }

    #[test]
    fn set_element_order_reorders_with_server_only_items() {
        // Upstream case "set elements order in a list with server-only items".
        let doc = pod(
            json!([{"name": "1", "other": "a"}, {"name": "3", "value": 3},
            {"name": "4", "value": 4}, {"name": "2", "value": 2}, {"name": "9"}]),
        );
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "4"}, {"name": "2"}, {"name": "3"}, {"name": "1"}]}}}});
        let out = smp(doc, patch).unwrap();
        let names: Vec<&str> = containers(&out)
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["4", "2", "3", "1", "9"]);
        assert_eq!(containers(&out)[3], json!({"name": "1", "other": "a"}));
    }

    #[test]
    fn set_element_order_with_patch_items_and_deletes() {
        let doc = pod(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]));
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "new"}, {"name": "a"}],
            "containers": [{"name": "new", "image": "n"}, {"name": "b", "$patch": "delete"}]}}}});
        let out = smp(doc, patch).unwrap();
        assert_eq!(
            containers(&out),
            &json!([{"name": "c"}, {"name": "new", "image": "n"}, {"name": "a"}])
        );
    }

    #[test]
    fn set_element_order_mismatch_errors() {
        let doc = pod(json!([{"name": "a"}]));
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "b"}]}}}});
        let e = smp(doc, patch).unwrap_err();
        assert!(e.message().starts_with("The order in patch list:"), "{e}");
    }

    #[test]
    fn merged_items_keep_patch_order_among_server_items() {
        // Upstream case "add an item in a list and preserve order": new items go where the
        // patch puts them relative to the items it names.
        let doc = pod(json!([{"name": "1"}, {"name": "2"}, {"name": "3"}]));
        let out = smp(
            doc,
            pod(json!([{"name": "2", "image": "x"}, {"name": "new"}])),
        )
        .unwrap();
        let names: Vec<&str> = containers(&out)
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["1", "2", "new", "3"]);
    }

    #[test]
    fn retain_keys_clears_other_fields() {
        let doc = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}}});
        let out = smp(
            doc.clone(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        )
        .unwrap();
        assert_eq!(out, json!({"spec": {"strategy": {"type": "Recreate"}}}));
        let e = smp(
            doc.clone(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
        )
        .unwrap_err();
        assert_eq!(
            e,
            PatchError::BadRequest("invalid patch format of retainKeys".into())
        );
        let e = smp(doc, json!({"spec": {"strategy": {"$retainKeys": "type"}}})).unwrap_err();
        assert_eq!(e.status_code(), 400);
    }

    #[test]
    fn retain_keys_in_merge_list_items() {
        // volumes are "merge,retainKeys": switching a volume's source.
        let doc = json!({"spec": {"template": {"spec": {"volumes": [
            {"name": "v", "emptyDir": {}}, {"name": "w", "hostPath": {"path": "/x"}}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"volumes": [
            {"name": "v", "$retainKeys": ["configMap", "name"], "configMap": {"name": "cm"}}]}}}});
        let out = smp(doc, patch).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "v", "configMap": {"name": "cm"}}, {"name": "w", "hostPath": {"path": "/x"}}])
        );
    }

    #[test]
    fn image_pull_secrets_and_owner_references_merge() {
        let doc = json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]},
            "spec": {"template": {"spec": {"imagePullSecrets": [{"name": "s1"}]}}}});
        let out = smp(
            doc,
            json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]},
            "spec": {"template": {"spec": {"imagePullSecrets": [{"name": "s2"}]}}}}),
        )
        .unwrap();
        // Items the live list does not have go first, as upstream puts them.
        assert_eq!(
            out["metadata"]["ownerReferences"],
            json!([{"uid": "2", "name": "b"}, {"uid": "1", "name": "a"}])
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["imagePullSecrets"],
            json!([{"name": "s2"}, {"name": "s1"}])
        );
    }

    #[test]
    fn new_values_lose_nulls_and_directives() {
        let doc = json!({"spec": {}});
        let out = smp(
            doc,
            json!({"spec": {"template": {"metadata": {"labels": {"a": null, "b": "x"}},
            "spec": {"containers": [{"name": "c", "image": null}]}}}}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"spec": {"template": {"metadata": {"labels": {"b": "x"}},
            "spec": {"containers": [{"name": "c"}]}}}})
        );
    }

    #[test]
    fn type_changes_replace() {
        let out = smp(
            json!({"spec": {"replicas": {"a": 1}}}),
            json!({"spec": {"replicas": 2}}),
        )
        .unwrap();
        assert_eq!(out, json!({"spec": {"replicas": 2}}));
        let out = smp(json!({"extra": [1]}), json!({"extra": {"a": null, "b": 1}})).unwrap();
        assert_eq!(out, json!({"extra": {"b": 1}}));
    }

    #[test]
    fn lists_of_lists_and_mixed_types() {
        let doc = json!({"metadata": {"finalizers": ["a"]}});
        let e = smp(
            json!({"metadata": {"finalizers": []}}),
            json!({"metadata": {"finalizers": [["x"]]}}),
        )
        .unwrap_err();
        assert_eq!(
            e,
            PatchError::Unprocessable("lists of lists are not supported".into())
        );
        let e = smp(doc, json!({"metadata": {"finalizers": [1]}})).unwrap_err();
        assert_eq!(
            e.message(),
            "list element types are not identical: [[a] [1]]"
        );
    }

    #[test]
    fn bad_directive_keys() {
        let doc = json!({"metadata": {"finalizers": ["a"]}});
        let e = smp(
            doc.clone(),
            json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}}),
        )
        .unwrap_err();
        assert_eq!(
            e,
            PatchError::BadRequest("invalid patch format of primitive list".into())
        );
        let e = smp(
            doc,
            json!({"metadata": {"$setElementOrderfinalizers": ["a"]}}),
        )
        .unwrap_err();
        assert_eq!(
            e,
            PatchError::BadRequest("invalid patch format of setElementOrder list".into())
        );
    }

    #[test]
    fn scalar_union_dedups() {
        let out = smp(
            json!({"metadata": {"finalizers": ["a", "b", "a"]}}),
            json!({"metadata": {"finalizers": ["b", "c"]}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
    }

    #[test]
    fn root_must_be_object() {
        let e = strategic_merge_patch(&json!({}), &json!([]), &Map::new(), "x").unwrap_err();
        assert_eq!(e.status_code(), 400);
    }
}
