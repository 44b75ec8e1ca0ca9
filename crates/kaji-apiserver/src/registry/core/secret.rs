//! Secrets: `type` defaults to Opaque and is immutable, data keys are valid config keys and values
//! base64 (checked when decoding), `stringData` is merged into `data` on write.

use crate::registry::{Strategy, immutable, info, str_at};
use base64::Engine;
use kaji_api::{FieldError, ResourceInfo};
use serde_json::{Value, json};

pub struct SecretStrategy;

static INFO: ResourceInfo = info("", "v1", "Secret", "secrets", "secret", true, &[], &[]);

fn is_config_key(k: &str) -> bool {
    !k.is_empty() && k.len() <= 253 && k != "." && k != ".." && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Strategy for SecretStrategy {
    fn info(&self) -> &ResourceInfo {
        &INFO
    }
    fn default(&self, obj: &mut Value) {
        if obj.get("type").is_none_or(Value::is_null) {
            obj["type"] = json!("Opaque");
        }
        // stringData is write-only: fold it into data (upstream does this in conversion).
        if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
            if !obj.get("data").is_some_and(Value::is_object) {
                obj["data"] = json!({});
            }
            for (k, v) in sd {
                let s = v.as_str().unwrap_or_default();
                obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
            }
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let mut total = 0;
        for (k, v) in obj.get("data").and_then(Value::as_object).into_iter().flatten() {
            if !is_config_key(k) {
                errs.push(FieldError::invalid(format!("data[{k}]"), &json!(k), "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
            }
            match v.as_str().map(|s| base64::engine::general_purpose::STANDARD.decode(s)) {
                Some(Ok(bytes)) => total += bytes.len(),
                _ => errs.push(FieldError::invalid(format!("data[{k}]"), &json!("<secret contents redacted>"), "illegal base64 data")),
            }
        }
        if total > 1024 * 1024 {
            errs.push(FieldError::too_long("data", 1024 * 1024));
        }
        if str_at(obj, "/type") == Some("kubernetes.io/service-account-token")
            && str_at(obj, "/metadata/annotations/kubernetes.io~1service-account.name").is_none()
        {
            errs.push(FieldError::required("metadata.annotations[kubernetes.io/service-account.name]", ""));
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        errs.extend(immutable(new, old, "/type", "type"));
        if old.get("immutable").and_then(Value::as_bool) == Some(true) && new.get("data") != old.get("data") {
            errs.push(FieldError::forbidden("data", "field is immutable when `immutable` is set"));
        }
        errs
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        match field {
            "type" => Some(str_at(obj, "/type").unwrap_or_default().to_string()),
            _ => None,
        }
    }
}
