//! ObjectMeta rules every kind shares (upstream `ValidateObjectMeta`): labels, annotations,
//! ownerReferences, finalizers.

use kaji_api::{FieldError, validation};
use serde_json::{Value, json};

const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

pub fn validate_object_meta(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(meta) = obj.get("metadata") else { return errs };
    if let Some(labels) = meta.get("labels") {
        match labels.as_object() {
            Some(map) => {
                for (k, v) in map {
                    for m in validation::qualified_name(k) {
                        errs.push(FieldError::invalid("metadata.labels", &json!(k), &m));
                    }
                    match v.as_str() {
                        Some(s) => {
                            for m in validation::label_value(s) {
                                errs.push(FieldError::invalid("metadata.labels", v, &m));
                            }
                        }
                        None if !v.is_null() => errs.push(FieldError::invalid("metadata.labels", v, "must be a string")),
                        None => {}
                    }
                }
            }
            None if !labels.is_null() => errs.push(FieldError::invalid("metadata.labels", labels, "must be a map")),
            None => {}
        }
    }
    if let Some(ann) = meta.get("annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (k, v) in ann {
            for m in validation::qualified_name(&k.to_ascii_lowercase()) {
                errs.push(FieldError::invalid("metadata.annotations", &json!(k), &m));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > TOTAL_ANNOTATION_SIZE_LIMIT {
            errs.push(FieldError::too_long("metadata.annotations", TOTAL_ANNOTATION_SIZE_LIMIT));
        }
    }
    for (i, r) in meta.get("ownerReferences").and_then(Value::as_array).into_iter().flatten().enumerate() {
        for f in ["apiVersion", "kind", "name", "uid"] {
            if r.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                errs.push(FieldError::invalid(format!("metadata.ownerReferences[{i}].{f}"), r.get(f).unwrap_or(&json!("")), &format!("{f} must not be empty")));
            }
        }
    }
    let controllers = meta
        .get("ownerReferences")
        .and_then(Value::as_array)
        .map_or(0, |rs| rs.iter().filter(|r| r.get("controller").and_then(Value::as_bool) == Some(true)).count());
    if controllers > 1 {
        errs.push(FieldError::invalid("metadata.ownerReferences", &json!("object"), "Only one reference can have Controller set to true"));
    }
    for (i, f) in meta.get("finalizers").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let s = f.as_str().unwrap_or_default();
        for m in validation::qualified_name(s) {
            errs.push(FieldError::invalid(format!("metadata.finalizers[{i}]"), f, &m));
        }
    }
    errs
}
