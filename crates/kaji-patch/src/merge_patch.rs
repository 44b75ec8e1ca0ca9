//! RFC 7386 JSON merge patch (`application/merge-patch+json`), as `evanphx/json-patch`'s
//! `MergePatch` does it (<https://github.com/evanphx/json-patch/blob/v4.12.0/merge.go>).
//!
//! One upstream detail beyond the RFC: a value that lands where there was nothing (or
//! something that is not an object) has its nulls pruned, including null list items.

use serde_json::{Map, Value};

/// Applies a JSON merge patch to `doc`: members of `patch` replace those of `doc`,
/// objects merge recursively, and null removes a member.
///
/// A patch that is not an object replaces the document (for a list, without its null
/// items), as upstream does; the API server rejects such results when decoding.
#[must_use]
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    match (doc, patch) {
        (Value::Object(d), Value::Object(p)) => {
            let mut out = d.clone();
            merge_docs(&mut out, p);
            Value::Object(out)
        }
        (_, p) => {
            let mut out = p.clone();
            prune_nulls(&mut out);
            out
        }
    }
}

fn merge_docs(doc: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        if v.is_null() {
            doc.shift_remove(k);
            continue;
        }
        match doc.get_mut(k) {
            Some(cur) if !cur.is_null() => merge_value(cur, v),
            _ => {
                let mut v = v.clone();
                prune_nulls(&mut v);
                doc.insert(k.clone(), v);
            }
        }
    }
}

fn merge_value(cur: &mut Value, patch: &Value) {
    match (&mut *cur, patch) {
        (Value::Object(c), Value::Object(p)) => merge_docs(c, p),
        // An object replaced by a non-object keeps the patch value as it is.
        (Value::Object(_), p) => *cur = p.clone(),
        (_, p) => {
            let mut p = p.clone();
            prune_nulls(&mut p);
            *cur = p;
        }
    }
}

fn prune_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(prune_nulls);
        }
        Value::Array(items) => {
            items.retain(|v| !v.is_null());
            items.iter_mut().for_each(prune_nulls);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc7386_examples() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (doc, patch, want) in cases {
            assert_eq!(merge_patch(&doc, &patch), want, "{doc} + {patch}");
        }
    }

    #[test]
    fn lists_are_replaced_and_new_values_lose_nulls() {
        let doc = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let patch = json!({"spec": {"containers": [{"name": "c", "x": null}, null]}});
        assert_eq!(
            merge_patch(&doc, &patch),
            json!({"spec": {"containers": [{"name": "c"}]}})
        );
    }

    #[test]
    fn keeps_member_order() {
        let doc = json!({"b": 1, "a": 2, "c": 3});
        let out = merge_patch(&doc, &json!({"a": null, "d": 4}));
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["b", "c", "d"]);
    }
}
