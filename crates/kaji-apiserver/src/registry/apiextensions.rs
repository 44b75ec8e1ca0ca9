//! apiextensions.k8s.io/v1 CustomResourceDefinitions (upstream's
//! `registry/customresourcedefinition/strategy.go`): defaults, validation (the rules are
//! `kaji_apiextensions::crd`'s), storedVersions kept in step with the storage version, and the
//! cleanup finalizer added on delete. The CRD controller (`crate::apiextensions::controller`)
//! establishes names and serves the custom kinds.

use super::{Strategy, info};
use crate::objects::{meta_mut, meta_str};
use kaji_api::{FieldError, ResourceInfo};
use serde_json::{Value, json};
use std::sync::Arc;

/// The finalizer that holds a CRD until its custom objects are deleted.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

pub const CRD_INFO: ResourceInfo = ResourceInfo {
    categories: &["api-extensions"],
    ..info(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        "customresourcedefinition",
        false,
        &["crd", "crds"],
        &["status"],
    )
};

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    all.push(Arc::new(CustomResourceDefinitions));
}

pub struct CustomResourceDefinitions;

/// Sets (or replaces) the condition `type_` of a CRD's status; `lastTransitionTime` changes
/// only with the status (upstream `SetCRDCondition`). Returns whether anything changed.
pub fn set_condition(crd: &mut Value, type_: &str, status: &str, reason: &str, message: &str) -> bool {
    let now = crate::objects::now_rfc3339();
    let Some(st) = super::child(crd, "status") else { return false };
    let Some(conds) = super::child(st, "conditions") else { return false };
    if !conds.is_array() {
        *conds = json!([]);
    }
    let Some(list) = conds.as_array_mut() else { return false };
    match list.iter_mut().find(|c| c["type"] == type_) {
        Some(c) => {
            let mut changed = false;
            if c["status"] != status {
                c["status"] = json!(status);
                c["lastTransitionTime"] = json!(now);
                changed = true;
            }
            for (k, v) in [("reason", reason), ("message", message)] {
                if c[k] != v {
                    c[k] = json!(v);
                    changed = true;
                }
            }
            changed
        }
        None => {
            list.push(json!({"type": type_, "status": status, "lastTransitionTime": now, "reason": reason, "message": message}));
            true
        }
    }
}

/// Whether condition `type_` is True.
pub fn condition_true(crd: &Value, type_: &str) -> bool {
    crd.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten().any(|c| c["type"] == type_ && c["status"] == "True")
}

/// The name of the version with `storage: true`.
pub fn storage_version(crd: &Value) -> Option<&str> {
    crd.pointer("/spec/versions")?.as_array()?.iter().find(|v| v["storage"] == true).and_then(|v| v["name"].as_str())
}

/// Adds the storage version to `status.storedVersions` (upstream's PrepareForCreate/Update).
fn record_stored_version(crd: &mut Value) {
    let Some(v) = storage_version(crd).map(str::to_string) else { return };
    let Some(st) = super::child(crd, "status") else { return };
    let Some(map) = st.as_object_mut() else { return };
    let stored = map.entry("storedVersions").or_insert_with(|| json!([]));
    if !stored.is_array() {
        *stored = json!([]);
    }
    if let Some(list) = stored.as_array_mut()
        && !list.iter().any(|s| s == v.as_str())
    {
        list.push(json!(v));
    }
}

impl Strategy for CustomResourceDefinitions {
    fn info(&self) -> &ResourceInfo {
        &CRD_INFO
    }

    fn has_status(&self) -> bool {
        true
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    /// Upstream's `SetDefaults_CustomResourceDefinition(Spec)` and `SetDefaults_ServiceReference`.
    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else { return };
        if spec.get("conversion").is_none_or(Value::is_null) {
            spec["conversion"] = json!({"strategy": "None"});
        }
        if let Some(kind) = spec.pointer("/names/kind").and_then(Value::as_str).map(str::to_string) {
            let names = &mut spec["names"];
            if names.get("singular").and_then(Value::as_str).is_none_or(str::is_empty) {
                names["singular"] = json!(kind.to_lowercase());
            }
            if names.get("listKind").and_then(Value::as_str).is_none_or(str::is_empty) && !kind.is_empty() {
                names["listKind"] = json!(format!("{kind}List"));
            }
        }
        if let Some(svc) = spec.pointer_mut("/conversion/webhook/clientConfig/service").filter(|s| s.is_object())
            && svc.get("port").is_none_or(Value::is_null)
        {
            svc["port"] = json!(443);
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({}));
        }
        record_stored_version(obj);
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        record_stored_version(new);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = kaji_apiextensions::crd::validate(obj);
        name_rule(obj, &mut errs);
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = kaji_apiextensions::crd::validate_update(new, old);
        name_rule(new, &mut errs);
        errs
    }

    /// The status is the CRD controller's.
    fn validate_status_update(&self, _new: &Value, _old: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Upstream's REST Delete: the first delete adds the cleanup finalizer and says the custom
    /// objects will go; the CRD stays until the controller has deleted them.
    fn prepare_for_delete(&self, obj: &mut Value) -> bool {
        if crate::objects::is_deleting(obj) {
            return true;
        }
        let mut finalizers = crate::objects::finalizers(obj);
        if !finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
            finalizers.push(CLEANUP_FINALIZER.to_string());
        }
        meta_mut(obj).insert("finalizers".into(), json!(finalizers));
        set_condition(
            obj,
            "Terminating",
            "True",
            "InstanceDeletionPending",
            "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
        );
        true
    }
}

/// `metadata.name` must be `<spec.names.plural>.<spec.group>`.
fn name_rule(obj: &Value, errs: &mut Vec<FieldError>) {
    let name = meta_str(obj, "name").unwrap_or_default();
    let plural = obj.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or_default();
    let group = obj.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default();
    let detail = "must be spec.names.plural+\".\"+spec.group";
    if name != format!("{plural}.{group}") && !errs.iter().any(|e| e.field == "metadata.name" && e.detail.contains(detail)) {
        errs.push(FieldError::invalid("metadata.name", &json!(name), detail));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_stored_versions() {
        let s = CustomResourceDefinitions;
        let mut crd = json!({"metadata": {"name": "hoges.stable.example.com"}, "spec": {"group": "stable.example.com", "names": {"plural": "hoges", "kind": "Hoge"}, "scope": "Namespaced", "versions": [{"name": "v1", "served": true, "storage": true}]}});
        s.default(&mut crd);
        s.prepare_for_create(&mut crd);
        assert_eq!(crd["spec"]["conversion"], json!({"strategy": "None"}));
        assert_eq!(crd["spec"]["names"]["singular"], "hoge");
        assert_eq!(crd["spec"]["names"]["listKind"], "HogeList");
        assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
        assert!(!s.validate(&crd).iter().any(|e| e.field == "metadata.name"));
        crd["metadata"]["name"] = json!("other.stable.example.com");
        assert_eq!(s.validate(&crd).iter().filter(|e| e.field == "metadata.name").count(), 1);
    }

    #[test]
    fn delete_adds_the_finalizer() {
        let mut crd = json!({"metadata": {"name": "a.b"}, "spec": {}});
        assert!(CustomResourceDefinitions.prepare_for_delete(&mut crd));
        assert_eq!(crd["metadata"]["finalizers"], json!([CLEANUP_FINALIZER]));
        assert!(condition_true(&crd, "Terminating"));
    }
}
