//! apiregistration.k8s.io/v1: APIServices, as kube-aggregator's `registry/apiservice` strategy
//! and `apis/apiregistration/validation`. The aggregator (`crate::aggregator`) reads them: a
//! local one (no `spec.service`) names a group/version this server serves itself, any other
//! one sends its group/version to a Service.

use super::{Strategy, info, str_at};
use kaji_api::{FieldError, ResourceInfo};
use serde_json::{Value, json};
use std::sync::Arc;

pub static APISERVICE_INFO: ResourceInfo = ResourceInfo {
    categories: &["api-extensions"],
    ..info(
        "apiregistration.k8s.io",
        "v1",
        "APIService",
        "apiservices",
        "apiservice",
        false,
        &[],
        &["status"],
    )
};

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    all.push(Arc::new(ApiServiceStrategy));
}

/// The Available condition a local APIService is created with (upstream's
/// `NewLocalAvailableAPIServiceCondition`).
pub fn local_available_condition() -> Value {
    json!({
        "type": "Available",
        "status": "True",
        "lastTransitionTime": crate::objects::now_rfc3339(),
        "reason": "Local",
        "message": "Local APIServices are always available",
    })
}

pub struct ApiServiceStrategy;

impl Strategy for ApiServiceStrategy {
    fn info(&self) -> &ResourceInfo {
        &APISERVICE_INFO
    }

    fn has_status(&self) -> bool {
        true
    }

    /// The name is checked as a path segment here; that it is `<version>.<group>` in `validate`.
    fn validate_name(&self, name: &str) -> Vec<String> {
        kaji_api::validation::path_segment_name(name)
    }

    /// v1's SetDefaults_ServiceReference: port 443.
    fn default(&self, obj: &mut Value) {
        if let Some(svc) = obj.pointer_mut("/spec/service").filter(|s| s.is_object()) {
            super::default_key(svc, "port", json!(443));
        }
    }

    /// Status starts empty; a local APIService is available at once.
    fn prepare_for_create(&self, obj: &mut Value) {
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        let local = map
            .get("spec")
            .and_then(|s| s.get("service"))
            .is_none_or(Value::is_null);
        let status = if local {
            json!({"conditions": [local_available_condition()]})
        } else {
            json!({})
        };
        map.insert("status".to_string(), status);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_api_service(obj)
    }

    fn validate_status_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let conditions = new
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, c) in conditions.iter().enumerate() {
            let status = c.get("status").and_then(Value::as_str).unwrap_or_default();
            if !matches!(status, "True" | "False" | "Unknown") {
                errs.push(FieldError::not_supported(
                    format!("status.conditions[{i}].status"),
                    status,
                    &["True", "False", "Unknown"],
                ));
            }
        }
        errs
    }
}

/// Upstream's ValidateAPIService.
pub fn validate_api_service(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_at(obj, "/metadata/name").unwrap_or_default();
    let group = str_at(obj, "/spec/group").unwrap_or_default();
    let version = str_at(obj, "/spec/version").unwrap_or_default();
    let required = format!("{version}.{group}");
    if kaji_api::validation::path_segment_name(name).is_empty()
        && !name.is_empty()
        && name != required
    {
        errs.push(FieldError::invalid(
            "metadata.name",
            &json!(name),
            &format!("must be `spec.version+\".\"+spec.group`: {required:?}"),
        ));
    }
    if group.is_empty() && version != "v1" {
        errs.push(FieldError::required(
            "spec.group",
            "only v1 may have an empty group and it better be legacy kube",
        ));
    }
    if !group.is_empty() {
        for m in kaji_api::validation::dns1123_subdomain(group) {
            errs.push(FieldError::invalid("spec.group", &json!(group), &m));
        }
    }
    for m in kaji_api::validation::dns1035_label(version) {
        errs.push(FieldError::invalid("spec.version", &json!(version), &m));
    }
    let gpm = obj
        .pointer("/spec/groupPriorityMinimum")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if gpm <= 0 || gpm > 20000 {
        errs.push(FieldError::invalid(
            "spec.groupPriorityMinimum",
            &json!(gpm),
            "must be positive and less than 20000",
        ));
    }
    let vp = obj
        .pointer("/spec/versionPriority")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if vp <= 0 || vp > 1000 {
        errs.push(FieldError::invalid(
            "spec.versionPriority",
            &json!(vp),
            "must be positive and less than 1000",
        ));
    }
    let ca_len = ca_bundle(obj).map_or(0, |b| b.len());
    let insecure = obj
        .pointer("/spec/insecureSkipTLSVerify")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let service = obj.pointer("/spec/service").filter(|s| !s.is_null());
    let Some(service) = service else {
        if ca_len != 0 {
            errs.push(FieldError::invalid(
                "spec.caBundle",
                &json!(format!("{ca_len} bytes")),
                "local APIServices may not have a caBundle",
            ));
        }
        if insecure {
            errs.push(FieldError::invalid(
                "spec.insecureSkipTLSVerify",
                &json!(true),
                "local APIServices may not have insecureSkipTLSVerify",
            ));
        }
        return errs;
    };
    if service
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .is_empty()
    {
        errs.push(FieldError::required("spec.service.namespace", ""));
    }
    if service
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .is_empty()
    {
        errs.push(FieldError::required("spec.service.name", ""));
    }
    if insecure && ca_len > 0 {
        errs.push(FieldError::invalid(
            "spec.insecureSkipTLSVerify",
            &json!(true),
            "may not be true if caBundle is present",
        ));
    }
    errs
}

/// `spec.caBundle` decoded (it is base64 in JSON, as every `[]byte`).
pub fn ca_bundle(obj: &Value) -> Option<Vec<u8>> {
    use base64::Engine;
    let s = str_at(obj, "/spec/caBundle").filter(|s| !s.is_empty())?;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, spec: Value) -> Value {
        json!({"metadata": {"name": name}, "spec": spec})
    }

    fn fields(errs: &[FieldError]) -> Vec<String> {
        errs.iter()
            .map(|e| format!("{}: {}", e.field, e.detail))
            .collect()
    }

    #[test]
    fn validates_as_upstream() {
        let ok = svc(
            "v1alpha1.wardle.example.com",
            json!({"group": "wardle.example.com", "version": "v1alpha1", "groupPriorityMinimum": 1000, "versionPriority": 15,
            "service": {"namespace": "wardle", "name": "api", "port": 443}, "caBundle": "QUJD"}),
        );
        assert!(
            validate_api_service(&ok).is_empty(),
            "{:?}",
            validate_api_service(&ok)
        );
        let bad = svc(
            "v1.wardle.example.com",
            json!({"group": "wardle.example.com", "version": "v1alpha1", "service": {}, "caBundle": "QUJD", "insecureSkipTLSVerify": true}),
        );
        assert_eq!(
            fields(&validate_api_service(&bad)),
            [
                "metadata.name: Invalid value: \"v1.wardle.example.com\": must be `spec.version+\".\"+spec.group`: \"v1alpha1.wardle.example.com\"",
                "spec.groupPriorityMinimum: Invalid value: 0: must be positive and less than 20000",
                "spec.versionPriority: Invalid value: 0: must be positive and less than 1000",
                "spec.service.namespace: Required value",
                "spec.service.name: Required value",
                "spec.insecureSkipTLSVerify: Invalid value: true: may not be true if caBundle is present",
            ]
        );
        let local = svc(
            "v2.",
            json!({"version": "v2", "groupPriorityMinimum": 1, "versionPriority": 1, "caBundle": "QUJD"}),
        );
        assert_eq!(
            fields(&validate_api_service(&local)),
            [
                "spec.group: Required value: only v1 may have an empty group and it better be legacy kube",
                "spec.caBundle: Invalid value: \"3 bytes\": local APIServices may not have a caBundle"
            ]
        );
    }

    #[test]
    fn local_ones_are_available_on_create() {
        let s = ApiServiceStrategy;
        let mut local = svc("v1.apps", json!({"group": "apps", "version": "v1"}));
        s.prepare_for_create(&mut local);
        assert_eq!(local["status"]["conditions"][0]["reason"], "Local");
        let mut remote = svc(
            "v1.x.io",
            json!({"group": "x.io", "version": "v1", "service": {"namespace": "a", "name": "b"}}),
        );
        remote["status"] = json!({"conditions": [{"type": "Available", "status": "True"}]});
        s.default(&mut remote);
        s.prepare_for_create(&mut remote);
        assert_eq!(remote["spec"]["service"]["port"], 443);
        assert_eq!(remote["status"], json!({}));
    }
}
