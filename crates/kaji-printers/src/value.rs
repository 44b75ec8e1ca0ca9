//! Tolerant accessors over stored objects: a missing field or one of the wrong JSON type reads
//! as Go's zero value, so a printer never panics on odd input.

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::duration;

const NO_VALUES: &[Value] = &[];

/// The value at `path`, if every step is an object field.
pub(crate) fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, key| cur.get(*key))
}

/// Whether `path` holds something other than null (Go: a non-nil pointer).
pub(crate) fn is_set(v: &Value, path: &[&str]) -> bool {
    get(v, path).is_some_and(|x| !x.is_null())
}

pub(crate) fn opt_str<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    opt_str(v, path).unwrap_or("")
}

/// An integer field; floats with no fraction are accepted too.
pub(crate) fn opt_int(v: &Value, path: &[&str]) -> Option<i64> {
    let x = get(v, path)?;
    x.as_i64().or_else(|| {
        x.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
            .map(|f| f as i64)
    })
}

pub(crate) fn int_at(v: &Value, path: &[&str]) -> i64 {
    opt_int(v, path).unwrap_or(0)
}

pub(crate) fn opt_bool(v: &Value, path: &[&str]) -> Option<bool> {
    get(v, path).and_then(Value::as_bool)
}

pub(crate) fn bool_at(v: &Value, path: &[&str]) -> bool {
    opt_bool(v, path).unwrap_or(false)
}

pub(crate) fn arr_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path)
        .and_then(Value::as_array)
        .map_or(NO_VALUES, Vec::as_slice)
}

pub(crate) fn map_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    get(v, path).and_then(Value::as_object)
}

/// Number of entries of a map or list field (Go's `len`).
pub(crate) fn len_at(v: &Value, path: &[&str]) -> i64 {
    let n = match get(v, path) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    };
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `metadata.name` as a cell.
pub(crate) fn name(obj: &Value) -> Value {
    Value::from(str_at(obj, &["metadata", "name"]))
}

/// `metadata.creationTimestamp` as an AGE cell.
pub(crate) fn age(obj: &Value, now: Timestamp) -> Value {
    Value::from(duration::translate_timestamp_since(
        get(obj, &["metadata", "creationTimestamp"]),
        now,
    ))
}

pub(crate) fn is_deleting(obj: &Value) -> bool {
    is_set(obj, &["metadata", "deletionTimestamp"])
}

/// An annotation's value, "" when absent.
pub(crate) fn annotation<'a>(obj: &'a Value, key: &str) -> &'a str {
    map_at(obj, &["metadata", "annotations"])
        .and_then(|m| m.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// An IntOrString field as Go's `IntOrString.String()` prints it.
pub(crate) fn int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "0".to_owned(),
    }
}

/// Container names and images, each comma-joined (upstream's `layoutContainerCells`).
pub(crate) fn container_cells(containers: &[Value]) -> (Value, Value) {
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, &["image"])).collect();
    (Value::from(names.join(",")), Value::from(images.join(",")))
}

/// The group part of an `apiVersion` ("apps/v1" -> "apps", "v1" -> "").
pub(crate) fn api_group(api_version: &str) -> Option<&str> {
    match api_version.split('/').collect::<Vec<_>>().as_slice() {
        [_] => Some(""),
        [group, _] => Some(group),
        _ => None,
    }
}

/// "<none>" for an empty string.
pub(crate) fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_owned()
    } else {
        s.to_owned()
    }
}
