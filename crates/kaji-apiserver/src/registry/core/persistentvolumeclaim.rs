//! PersistentVolumeClaims (upstream `pkg/registry/core/persistentvolumeclaim/strategy.go` and
//! `ValidatePersistentVolumeClaim*`): the volume mode defaults to Filesystem, a new claim starts
//! Pending, and validation gives upstream's causes: at least one access mode, a positive
//! `storage` request, a valid class name, volume mode and data source. After creation the spec is
//! immutable except `volumeName` (set once, by the binder), a class given where none was (the
//! upgrade paths from the beta annotation and from nil) and, for a bound claim, a growing
//! `resources.requests.storage`. The default class and the pvc-protection finalizer are set by
//! admission (`admission::storage_class`, `admission::storage_object_in_use_protection`).

use super::persistentvolume::{
    diff, positive_quantity, validate_access_modes, validate_class_and_mode,
};
use crate::registry::{Strategy, immutable, info};
use kaji_api::{FieldError, ResourceInfo};
use serde_json::{Map, Value, json};

pub struct PersistentVolumeClaimStrategy;

static INFO: ResourceInfo = info(
    "",
    "v1",
    "PersistentVolumeClaim",
    "persistentvolumeclaims",
    "persistentvolumeclaim",
    true,
    &["pvc"],
    &["status"],
);

const BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

fn beta_class(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(BETA_CLASS))
        .and_then(Value::as_str)
}

/// Upstream `ValidatePersistentVolumeClaimSpec`.
fn validate_spec(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let modes = spec
        .get("accessModes")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if modes.is_empty() {
        errs.push(FieldError::required(
            "spec.accessModes",
            "at least 1 access mode is required",
        ));
    }
    if let Some(sel) = spec.get("selector").filter(|s| !s.is_null())
        && let Err(e) = kaji_api::selector::LabelSelector::from_object(sel)
    {
        errs.push(FieldError::invalid("spec.selector", sel, &e));
    }
    errs.extend(validate_access_modes(modes, "spec.accessModes"));
    match spec.pointer("/resources/requests/storage") {
        None => errs.push(FieldError::required("spec.resources[storage]", "")),
        Some(q) => errs.extend(positive_quantity(q, "spec.resources[storage]")),
    }
    errs.extend(validate_class_and_mode(spec));
    for (key, p) in [
        ("dataSource", "spec.dataSource"),
        ("dataSourceRef", "spec.dataSourceRef"),
    ] {
        let Some(ds) = spec.get(key).filter(|d| !d.is_null()) else {
            continue;
        };
        let name = ds.get("name").and_then(Value::as_str).unwrap_or_default();
        let kind = ds.get("kind").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        }
        if kind.is_empty() {
            errs.push(FieldError::required(format!("{p}.kind"), ""));
        }
        if ds
            .get("apiGroup")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
            && kind != "PersistentVolumeClaim"
        {
            let msg = if key == "dataSource" {
                ""
            } else {
                "must be 'PersistentVolumeClaim' when referencing the default apiGroup"
            };
            errs.push(FieldError::invalid(p, &json!(kind), msg));
        }
    }
    errs
}

fn storage_nanos(v: Option<&Value>) -> i128 {
    v.and_then(Value::as_str)
        .and_then(kaji_api::quantity::nanos)
        .unwrap_or(0)
}

impl Strategy for PersistentVolumeClaimStrategy {
    fn info(&self) -> &ResourceInfo {
        &INFO
    }
    fn has_status(&self) -> bool {
        true
    }
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
            && spec.get("volumeMode").is_none_or(Value::is_null)
        {
            spec.insert("volumeMode".into(), json!("Filesystem"));
        }
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending"});
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_spec(obj.get("spec").unwrap_or(&Value::Null))
    }
    /// Upstream `ValidatePersistentVolumeClaimUpdate`.
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let obj = |v: Option<&Value>| v.and_then(Value::as_object).cloned().unwrap_or_default();
        let mut old_spec: Map<String, Value> = obj(old.get("spec"));
        let mut new_spec: Map<String, Value> = obj(new.get("spec"));
        // The binder sets volumeName once.
        if old_spec
            .get("volumeName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
        {
            match new_spec.get("volumeName") {
                Some(v) => old_spec.insert("volumeName".into(), v.clone()),
                None => old_spec.remove("volumeName"),
            };
        }
        let old_class = old_spec
            .get("storageClassName")
            .filter(|c| !c.is_null())
            .and_then(Value::as_str)
            .map(str::to_string);
        let new_class = new_spec
            .get("storageClassName")
            .filter(|c| !c.is_null())
            .and_then(Value::as_str)
            .map(str::to_string);
        let (old_beta, new_beta) = (beta_class(old), beta_class(new));
        let from_annotation = old_beta.is_some()
            && old_class.is_none()
            && new_class.as_deref() == old_beta
            && (new_beta.is_none() || new_beta == old_beta);
        if from_annotation {
            new_spec.remove("storageClassName");
        } else {
            if new_beta != old_beta {
                errs.push(FieldError::invalid(
                    format!("metadata.annotations[{BETA_CLASS}]"),
                    &json!(new_beta.unwrap_or_default()),
                    "field is immutable",
                ));
            }
            // A class may be given to a claim that had none.
            if new_class.is_some()
                && old_class.is_none()
                && old_beta.is_none_or(|b| Some(b) == new_class.as_deref())
            {
                new_spec.remove("storageClassName");
                old_spec.remove("storageClassName");
            }
        }
        let bound = new.pointer("/status/phase").and_then(Value::as_str) == Some("Bound");
        if bound
            && let Some(req) = new_spec
                .get_mut("resources")
                .and_then(|r| r.get_mut("requests"))
                .and_then(Value::as_object_mut)
        {
            match old.pointer("/spec/resources/requests/storage") {
                Some(s) => req.insert("storage".into(), s.clone()),
                None => req.remove("storage"),
            };
        }
        match old_spec.get("volumeAttributesClassName") {
            Some(v) => new_spec.insert("volumeAttributesClassName".into(), v.clone()),
            None => new_spec.remove("volumeAttributesClassName"),
        };
        if old_spec != new_spec {
            let d = diff("core.PersistentVolumeClaimSpec", &old_spec, &new_spec);
            errs.push(FieldError::forbidden(
                "spec",
                &format!("spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{d}"),
            ));
        }
        // RecoverVolumeExpansionFailure (on by default since 1.32): a request may shrink, but not
        // to the capacity the claim already has.
        let new_size = storage_nanos(new.pointer("/spec/resources/requests/storage"));
        let old_size = storage_nanos(old.pointer("/spec/resources/requests/storage"));
        if new_size < old_size && new_size <= storage_nanos(old.pointer("/status/capacity/storage"))
        {
            errs.push(FieldError::forbidden(
                "spec.resources.requests.storage",
                "field can not be less than status.capacity",
            ));
        }
        errs.extend(immutable(new, old, "/spec/volumeMode", "volumeMode"));
        errs
    }
    fn validate_status_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if new
            .pointer("/spec/accessModes")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        {
            errs.push(FieldError::required("Spec.accessModes", ""));
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(extra: Value) -> Value {
        let mut c = json!({"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "local-path", "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}});
        merge(&mut c, extra);
        c
    }

    fn merge(into: &mut Value, from: Value) {
        match (into, from) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }

    fn details(errs: &[FieldError]) -> Vec<String> {
        errs.iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.field,
                    e.detail.lines().next().unwrap_or_default()
                )
            })
            .collect()
    }

    #[test]
    fn create_validation() {
        let s = PersistentVolumeClaimStrategy;
        assert!(s.validate(&claim(json!({}))).is_empty());
        let bad = json!({"spec": {"resources": {"requests": {"storage": "-1"}}, "volumeMode": "Disk", "storageClassName": "No_Such"}});
        assert_eq!(
            details(&s.validate(&bad)),
            [
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Invalid value: \"-1\": must be greater than zero",
                "spec.storageClassName: Invalid value: \"No_Such\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                "spec.volumeMode: Unsupported value: \"Disk\": supported values: \"Block\", \"Filesystem\"",
            ]
        );
        assert_eq!(
            details(&s.validate(&json!({"spec": {"accessModes": ["ReadWriteOnce"]}}))),
            ["spec.resources[storage]: Required value"]
        );
    }

    #[test]
    fn update_rules() {
        let s = PersistentVolumeClaimStrategy;
        let old = claim(json!({}));
        // volumeName once, then fixed.
        let named = claim(json!({"spec": {"volumeName": "pv-1"}}));
        assert!(s.validate_update(&named, &old).is_empty());
        let renamed = claim(json!({"spec": {"volumeName": "pv-2"}}));
        assert_eq!(
            details(&s.validate_update(&renamed, &named)),
            [
                "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"
            ]
        );
        // Requests grow only when bound.
        let bigger = claim(json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}}));
        assert_eq!(s.validate_update(&bigger, &old).len(), 1);
        let bound_old =
            claim(json!({"status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}}));
        let bound_bigger = claim(
            json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}, "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}}),
        );
        assert!(s.validate_update(&bound_bigger, &bound_old).is_empty());
        let bound_smaller = claim(
            json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}, "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}}),
        );
        assert_eq!(
            details(&s.validate_update(&bound_smaller, &bound_bigger)),
            [
                "spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"
            ]
        );
        // A class for a claim without one; not another class.
        let mut classless = claim(json!({}));
        classless["spec"]
            .as_object_mut()
            .unwrap()
            .remove("storageClassName");
        assert!(s.validate_update(&old, &classless).is_empty());
        let other = claim(json!({"spec": {"storageClassName": "fast"}}));
        assert_eq!(s.validate_update(&other, &old).len(), 1);
        let block = claim(json!({"spec": {"volumeMode": "Block"}}));
        assert_eq!(
            details(&s.validate_update(&block, &old)),
            [
                "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
                "volumeMode: Invalid value: \"Block\": field is immutable",
            ]
        );
    }
}
