//! RFC 6902 JSON Patch (`application/json-patch+json`), with the behaviour and error
//! messages of `evanphx/json-patch` v4, which the upstream API server uses
//! (<https://github.com/evanphx/json-patch/blob/v4.12.0/patch.go>).
//!
//! Upstream quirks we keep on purpose: `replace` of a missing object member adds it;
//! negative array indices count from the end; an operation without `value` uses null;
//! `test` against a missing member passes when the expected value is null.

use serde_json::{Map, Value};

use crate::PatchError;
use crate::gofmt;

/// Upstream's cap on the number of operations in one JSON patch
/// (`maxJSONPatchOperations` in the API server's patch handler).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10000;

/// Applies an RFC 6902 JSON patch (a list of operations) to `doc`.
///
/// # Errors
/// [`PatchError::BadRequest`] when `patch` is not a list of objects,
/// [`PatchError::TooLarge`] beyond [`MAX_JSON_PATCH_OPERATIONS`], and
/// [`PatchError::Unprocessable`] when an operation does not apply (a failed `test`, a
/// missing path, a bad index), with evanphx/json-patch's message.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Array(ops) = patch else {
        return Err(PatchError::BadRequest(format!(
            "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
            gofmt::json_kind(patch)
        )));
    };
    let empty = Map::new();
    let mut decoded = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            Value::Object(m) => decoded.push(m),
            Value::Null => decoded.push(&empty),
            other => {
                return Err(PatchError::BadRequest(format!(
                    "json: cannot unmarshal {} into Go struct field of type jsonpatch.Operation",
                    gofmt::json_kind(other)
                )));
            }
        }
    }
    if decoded.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooLarge(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
            decoded.len()
        )));
    }
    let mut doc = doc.clone();
    for op in decoded {
        apply_op(&mut doc, op).map_err(PatchError::Unprocessable)?;
    }
    Ok(doc)
}

const MISSING: &str = "missing value";
const INVALID_INDEX: &str = "invalid index referenced";
const TEST_FAILED: &str = "test failed";

fn apply_op(doc: &mut Value, op: &Map<String, Value>) -> Result<(), String> {
    let kind = match op.get("op") {
        Some(Value::String(s)) => s.as_str(),
        _ => "unknown",
    };
    match kind {
        "add" => op_add(doc, op),
        "remove" => op_remove(doc, op),
        "replace" => op_replace(doc, op),
        "move" => op_move(doc, op),
        "test" => op_test(doc, op),
        "copy" => op_copy(doc, op),
        other => Err(format!("Unexpected kind: {other}")),
    }
}

/// Reads a string member the way `Operation.Path`/`From` do.
fn string_field(op: &Map<String, Value>, name: &str, missing: &str) -> Result<String, String> {
    match op.get(name) {
        None | Some(Value::Null) => Err(format!("{missing}: {MISSING}")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!(
            "json: cannot unmarshal {} into Go value of type string",
            gofmt::json_kind(other)
        )),
    }
}

fn path_of(op: &Map<String, Value>) -> Result<String, String> {
    string_field(op, "path", "operation missing path field")
}

fn from_of(op: &Map<String, Value>) -> Result<String, String> {
    string_field(op, "from", "operation, missing from field")
}

fn value_of(op: &Map<String, Value>) -> Value {
    op.get("value").cloned().unwrap_or(Value::Null)
}

fn decode_token(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// `findObject`: the container (object or list) holding the last token of `path`, and
/// that token decoded. None when any step is missing or not a container.
fn find_container<'a>(doc: &'a mut Value, path: &str) -> Option<(&'a mut Value, String)> {
    let tokens: Vec<&str> = path.split('/').collect();
    if tokens.len() < 2 {
        return None;
    }
    let mut cur = doc;
    for token in &tokens[1..tokens.len() - 1] {
        let key = decode_token(token);
        cur = match cur {
            Value::Object(m) => m.get_mut(&key)?,
            Value::Array(items) => {
                let idx = parse_index(&key).ok()?;
                let len = items.len();
                let idx = resolve_negative(idx, len).ok()?;
                if idx >= len {
                    return None;
                }
                &mut items[idx]
            }
            _ => return None,
        };
    }
    if !matches!(cur, Value::Object(_) | Value::Array(_)) {
        return None;
    }
    Some((cur, decode_token(tokens[tokens.len() - 1])))
}

/// Go's `strconv.Atoi`, with its error text.
fn parse_index(key: &str) -> Result<i64, String> {
    let digits = key.strip_prefix(['+', '-']).unwrap_or(key);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.Atoi: parsing \"{key}\": invalid syntax"));
    }
    key.parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing \"{key}\": value out of range"))
}

fn invalid_index(idx: i64) -> String {
    format!("Unable to access invalid index: {idx}: {INVALID_INDEX}")
}

/// Negative indices count from the end (`SupportNegativeIndices`, on by default).
fn resolve_negative(idx: i64, len: usize) -> Result<usize, String> {
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    if idx < 0 {
        if idx < -len_i {
            return Err(invalid_index(idx));
        }
        return usize::try_from(idx + len_i).map_err(|_| invalid_index(idx));
    }
    usize::try_from(idx).map_err(|_| invalid_index(idx))
}

/// `container.get`: Ok(None) for a missing object member (not an error upstream).
fn container_get(con: &Value, key: &str) -> Result<Option<Value>, String> {
    match con {
        Value::Object(m) => Ok(m.get(key).cloned()),
        Value::Array(items) => {
            let idx = parse_index(key)?;
            let pos = resolve_negative(idx, items.len())?;
            if pos >= items.len() {
                return Err(invalid_index(idx));
            }
            Ok(Some(items[pos].clone()))
        }
        _ => Err(MISSING.to_string()),
    }
}

fn container_add(con: &mut Value, key: &str, val: Value) -> Result<(), String> {
    match con {
        Value::Object(m) => {
            m.insert(key.to_string(), val);
            Ok(())
        }
        Value::Array(items) => {
            if key == "-" {
                items.push(val);
                return Ok(());
            }
            let idx = parse_index(key)
                .map_err(|e| format!("value was not a proper array index: '{key}': {e}"))?;
            let size = items.len() + 1;
            let pos = resolve_negative(idx, size)?;
            if pos >= size {
                return Err(invalid_index(idx));
            }
            items.insert(pos, val);
            Ok(())
        }
        _ => Err(MISSING.to_string()),
    }
}

fn container_set(con: &mut Value, key: &str, val: Value) -> Result<(), String> {
    match con {
        Value::Object(m) => {
            m.insert(key.to_string(), val);
            Ok(())
        }
        Value::Array(items) => {
            let idx = parse_index(key)?;
            let pos = resolve_negative(idx, items.len())?;
            match items.get_mut(pos) {
                Some(slot) => {
                    *slot = val;
                    Ok(())
                }
                None => Err(invalid_index(idx)),
            }
        }
        _ => Err(MISSING.to_string()),
    }
}

fn container_remove(con: &mut Value, key: &str) -> Result<(), String> {
    match con {
        Value::Object(m) => match m.shift_remove(key) {
            Some(_) => Ok(()),
            None => Err(format!(
                "Unable to remove nonexistent key: {key}: {MISSING}"
            )),
        },
        Value::Array(items) => {
            let idx = parse_index(key)?;
            let pos = resolve_negative(idx, items.len())?;
            if pos >= items.len() {
                return Err(invalid_index(idx));
            }
            items.remove(pos);
            Ok(())
        }
        _ => Err(MISSING.to_string()),
    }
}

fn op_add(doc: &mut Value, op: &Map<String, Value>) -> Result<(), String> {
    let path =
        path_of(op).map_err(|_| format!("add operation failed to decode path: {MISSING}"))?;
    let Some((con, key)) = find_container(doc, &path) else {
        return Err(format!(
            "add operation does not apply: doc is missing path: \"{path}\": {MISSING}"
        ));
    };
    container_add(con, &key, value_of(op))
        .map_err(|e| format!("error in add for path: '{path}': {e}"))
}

fn op_remove(doc: &mut Value, op: &Map<String, Value>) -> Result<(), String> {
    let path =
        path_of(op).map_err(|_| format!("remove operation failed to decode path: {MISSING}"))?;
    let Some((con, key)) = find_container(doc, &path) else {
        return Err(format!(
            "remove operation does not apply: doc is missing path: \"{path}\": {MISSING}"
        ));
    };
    container_remove(con, &key).map_err(|e| format!("error in remove for path: '{path}': {e}"))
}

fn op_replace(doc: &mut Value, op: &Map<String, Value>) -> Result<(), String> {
    let path = path_of(op).map_err(|e| format!("replace operation failed to decode path: {e}"))?;
    let Some((con, key)) = find_container(doc, &path) else {
        return Err(format!(
            "replace operation does not apply: doc is missing path: {path}: {MISSING}"
        ));
    };
    if container_get(con, &key).is_err() {
        return Err(format!(
            "replace operation does not apply: doc is missing key: {path}: {MISSING}"
        ));
    }
    container_set(con, &key, value_of(op))
        .map_err(|e| format!("error in remove for path: '{path}': {e}"))
}

fn op_move(doc: &mut Value, op: &Map<String, Value>) -> Result<(), String> {
    let from = from_of(op).map_err(|e| format!("move operation failed to decode from: {e}"))?;
    let Some((con, key)) = find_container(doc, &from) else {
        return Err(format!(
            "move operation does not apply: doc is missing from path: {from}: {MISSING}"
        ));
    };
    let val = container_get(con, &key)
        .map_err(|e| format!("error in move for path: '{key}': {e}"))?
        .unwrap_or(Value::Null);
    container_remove(con, &key).map_err(|e| format!("error in move for path: '{key}': {e}"))?;
    let path = path_of(op).map_err(|e| format!("move operation failed to decode path: {e}"))?;
    let Some((con, key)) = find_container(doc, &path) else {
        return Err(format!(
            "move operation does not apply: doc is missing destination path: {path}: {MISSING}"
        ));
    };
    container_add(con, &key, val).map_err(|e| format!("error in move for path: '{path}': {e}"))
}

fn op_test(doc: &mut Value, op: &Map<String, Value>) -> Result<(), String> {
    let path = path_of(op).map_err(|e| format!("test operation failed to decode path: {e}"))?;
    let Some((con, key)) = find_container(doc, &path) else {
        return Err(format!(
            "test operation does not apply: is missing path: {path}: {MISSING}"
        ));
    };
    let actual = container_get(con, &key)
        .map_err(|e| format!("error in test for path: '{path}': {e}"))?
        .unwrap_or(Value::Null);
    let failed = || format!("testing value {path} failed: {TEST_FAILED}");
    let expected = op.get("value");
    match (&actual, expected) {
        // A missing or null member matches an absent or null expected value.
        (Value::Null, None | Some(Value::Null)) => Ok(()),
        (_, None | Some(Value::Null)) | (Value::Null, _) => Err(failed()),
        (a, Some(e)) if a == e => Ok(()),
        _ => Err(failed()),
    }
}

fn op_copy(doc: &mut Value, op: &Map<String, Value>) -> Result<(), String> {
    let from = from_of(op).map_err(|e| format!("copy operation failed to decode from: {e}"))?;
    let Some((con, key)) = find_container(doc, &from) else {
        return Err(format!(
            "copy operation does not apply: doc is missing from path: {from}: {MISSING}"
        ));
    };
    let val = container_get(con, &key)
        .map_err(|e| format!("error in copy for from: '{from}': {e}"))?
        .unwrap_or(Value::Null);
    let path =
        path_of(op).map_err(|_| format!("copy operation failed to decode path: {MISSING}"))?;
    let Some((con, key)) = find_container(doc, &path) else {
        return Err(format!(
            "copy operation does not apply: doc is missing destination path: {path}: {MISSING}"
        ));
    };
    container_add(con, &key, val).map_err(|e| format!("error while adding value during copy: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(doc: Value, patch: Value) -> Result<Value, PatchError> {
        json_patch(&doc, &patch)
    }

    fn err(doc: Value, patch: Value) -> String {
        apply(doc, patch).unwrap_err().message().to_string()
    }

    #[test]
    fn add_replace_remove() {
        let doc = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}});
        let out = apply(
            doc,
            json!([
                {"op": "add", "path": "/metadata/labels/b", "value": "2"},
                {"op": "replace", "path": "/spec/replicas", "value": 3},
                {"op": "remove", "path": "/metadata/labels/a"}
            ]),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"b": "2"}}, "spec": {"replicas": 3}})
        );
    }

    #[test]
    fn pointer_escapes() {
        let doc = json!({"metadata": {"annotations": {}}});
        let out = apply(
            doc,
            json!([{"op": "add", "path": "/metadata/annotations/example.com~1a~0b", "value": "x"}]),
        )
        .unwrap();
        assert_eq!(out["metadata"]["annotations"]["example.com/a~b"], "x");
    }

    #[test]
    fn list_indices() {
        let doc = json!({"a": [1, 2, 3]});
        let out = apply(
            doc.clone(),
            json!([
                {"op": "add", "path": "/a/-", "value": 4},
                {"op": "add", "path": "/a/0", "value": 0},
                {"op": "remove", "path": "/a/-1"}
            ]),
        )
        .unwrap();
        assert_eq!(out, json!({"a": [0, 1, 2, 3]}));
        assert_eq!(
            err(
                doc.clone(),
                json!([{"op": "add", "path": "/a/5", "value": 0}])
            ),
            "error in add for path: '/a/5': Unable to access invalid index: 5: invalid index referenced"
        );
        assert_eq!(
            err(doc.clone(), json!([{"op": "remove", "path": "/a/3"}])),
            "error in remove for path: '/a/3': Unable to access invalid index: 3: invalid index referenced"
        );
        assert_eq!(
            err(doc, json!([{"op": "add", "path": "/a/x", "value": 0}])),
            "error in add for path: '/a/x': value was not a proper array index: 'x': strconv.Atoi: parsing \"x\": invalid syntax"
        );
    }

    #[test]
    fn test_op() {
        let doc = json!({"spec": {"replicas": 3, "x": null}});
        assert!(
            apply(
                doc.clone(),
                json!([{"op": "test", "path": "/spec/replicas", "value": 3}])
            )
            .is_ok()
        );
        assert!(
            apply(
                doc.clone(),
                json!([{"op": "test", "path": "/spec/missing", "value": null}])
            )
            .is_ok()
        );
        assert!(
            apply(
                doc.clone(),
                json!([{"op": "test", "path": "/spec/x", "value": null}])
            )
            .is_ok()
        );
        let e = apply(
            doc.clone(),
            json!([{"op": "test", "path": "/spec/replicas", "value": 2}]),
        )
        .unwrap_err();
        assert_eq!(
            e,
            PatchError::Unprocessable("testing value /spec/replicas failed: test failed".into())
        );
        assert_eq!(e.status_code(), 422);
        assert_eq!(
            err(
                doc,
                json!([{"op": "test", "path": "/nope/replicas", "value": 2}])
            ),
            "test operation does not apply: is missing path: /nope/replicas: missing value"
        );
    }

    #[test]
    fn missing_paths() {
        let doc = json!({"spec": {}});
        assert_eq!(
            err(
                doc.clone(),
                json!([{"op": "add", "path": "/status/x", "value": 1}])
            ),
            "add operation does not apply: doc is missing path: \"/status/x\": missing value"
        );
        assert_eq!(
            err(doc.clone(), json!([{"op": "remove", "path": "/spec/x"}])),
            "error in remove for path: '/spec/x': Unable to remove nonexistent key: x: missing value"
        );
        assert_eq!(
            err(
                doc.clone(),
                json!([{"op": "replace", "path": "/status/x", "value": 1}])
            ),
            "replace operation does not apply: doc is missing path: /status/x: missing value"
        );
        assert_eq!(
            err(doc.clone(), json!([{"op": "add", "value": 1}])),
            "add operation failed to decode path: missing value"
        );
        assert_eq!(
            err(doc.clone(), json!([{"op": "frob", "path": "/x"}])),
            "Unexpected kind: frob"
        );
        assert_eq!(
            err(doc, json!([{"path": "/x"}])),
            "Unexpected kind: unknown"
        );
    }

    #[test]
    fn replace_missing_member_adds_it_like_upstream() {
        let out = apply(
            json!({"spec": {}}),
            json!([{"op": "replace", "path": "/spec/x", "value": 1}]),
        )
        .unwrap();
        assert_eq!(out, json!({"spec": {"x": 1}}));
        assert_eq!(
            err(
                json!({"a": []}),
                json!([{"op": "replace", "path": "/a/0", "value": 1}])
            ),
            "replace operation does not apply: doc is missing key: /a/0: missing value"
        );
    }

    #[test]
    fn move_and_copy() {
        let doc = json!({"a": {"x": 1}, "b": [1, 2]});
        let out = apply(
            doc.clone(),
            json!([
                {"op": "move", "from": "/a/x", "path": "/a/y"},
                {"op": "copy", "from": "/b", "path": "/c"},
                {"op": "move", "from": "/b/0", "path": "/b/-"}
            ]),
        )
        .unwrap();
        assert_eq!(out, json!({"a": {"y": 1}, "b": [2, 1], "c": [1, 2]}));
        assert_eq!(
            err(
                doc.clone(),
                json!([{"op": "move", "from": "/a/z", "path": "/a/y"}])
            ),
            "error in move for path: 'z': Unable to remove nonexistent key: z: missing value"
        );
        assert_eq!(
            err(doc, json!([{"op": "copy", "from": "/q/z", "path": "/a/y"}])),
            "copy operation does not apply: doc is missing from path: /q/z: missing value"
        );
    }

    #[test]
    fn malformed_patch_is_bad_request() {
        let e = apply(json!({}), json!({"op": "add"})).unwrap_err();
        assert_eq!(e.status_code(), 400);
        assert_eq!(
            e.message(),
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
        );
    }

    #[test]
    fn failure_leaves_input_untouched() {
        let doc = json!({"a": 1});
        let _ = apply(
            doc.clone(),
            json!([{"op": "add", "path": "/b", "value": 2}, {"op": "test", "path": "/a", "value": 2}]),
        );
        assert_eq!(doc, json!({"a": 1}));
    }
}
