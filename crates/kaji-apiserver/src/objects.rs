//! Object plumbing shared by the verbs: storage keys, stamping resourceVersion on read, metadata
//! accessors, timestamps, generated names.

use kaji_api::ResourceInfo;
use kaji_store::KeyValue;
use serde_json::{Map, Value, json};

/// `/registry/<group|core>/<version>/<plural>/[<namespace>/]<name>`.
pub fn key(info: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    let mut k = prefix(info, namespace);
    k.push_str(name);
    k
}

/// The listing prefix for a kind, in one namespace or in all of them. Always ends with '/'.
pub fn prefix(info: &ResourceInfo, namespace: Option<&str>) -> String {
    let group = if info.group.is_empty() { "core" } else { info.group };
    match namespace.filter(|_| info.namespaced) {
        Some(ns) => format!("/registry/{group}/{}/{}/{ns}/", info.version, info.plural),
        None => format!("/registry/{group}/{}/{}/", info.version, info.plural),
    }
}

/// Decodes a stored value and stamps `metadata.resourceVersion` with its revision.
pub fn decode(kv: &KeyValue) -> Value {
    let mut v: Value = serde_json::from_slice(&kv.value).unwrap_or_else(|e| {
        tracing::error!(key = %kv.key, error = %e, "stored object is not JSON");
        json!({})
    });
    set_rv(&mut v, kv.mod_revision);
    v
}

pub fn set_rv(v: &mut Value, rv: i64) {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
    }
}

/// The bytes to store: the object without its resourceVersion (the store's revision is the truth).
pub fn encode(v: &Value) -> Vec<u8> {
    let mut v = v.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

pub fn meta(v: &Value) -> Option<&Map<String, Value>> {
    v.get("metadata").and_then(Value::as_object)
}

pub fn meta_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.get("metadata").is_some_and(Value::is_object) {
        v["metadata"] = json!({});
    }
    v.get_mut("metadata").and_then(Value::as_object_mut).expect("metadata was just made an object")
}

pub fn meta_str<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    meta(v).and_then(|m| m.get(field)).and_then(Value::as_str)
}

/// Drops empty (or null) `labels`, `annotations`, `finalizers` and `ownerReferences`: upstream
/// stores ObjectMeta through Go types whose `omitempty` makes an empty map or list vanish, so a
/// patch that sets `annotations: {}` leaves no trace.
pub fn drop_empty_meta(v: &mut Value) {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in ["labels", "annotations", "finalizers", "ownerReferences"] {
            let empty = match meta.get(k) {
                Some(Value::Object(m)) => m.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Null) => true,
                _ => false,
            };
            if empty {
                meta.remove(k);
            }
        }
    }
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Upstream's generateName suffix: 5 characters from an alphabet without vowels or look-alikes.
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}

pub fn finalizers(v: &Value) -> Vec<String> {
    meta(v)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|fs| fs.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

pub fn is_deleting(v: &Value) -> bool {
    meta(v).and_then(|m| m.get("deletionTimestamp")).is_some_and(|t| !t.is_null())
}
