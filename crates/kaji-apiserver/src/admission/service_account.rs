//! ServiceAccount admission (upstream `plugin/pkg/admission/serviceaccount`), the part Kaji has
//! today: every pod runs as a service account, `default` unless it names one, and both spellings
//! of the field say so. (Token volumes arrive with service-account tokens.)

use serde_json::{Map, Value, json};

/// Sets `serviceAccountName` (and the deprecated `serviceAccount`) of a pod spec.
pub fn admit(spec: &mut Map<String, Value>) {
    let sa = spec.get("serviceAccountName").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or("default").to_string();
    spec.insert("serviceAccountName".into(), json!(sa));
    spec.insert("serviceAccount".into(), json!(sa));
}
