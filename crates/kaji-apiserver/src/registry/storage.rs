//! storage.k8s.io/v1. StorageClasses as upstream (`pkg/apis/storage/validation`, the v1
//! defaults): reclaim policy Delete and binding mode Immediate by default; a provisioner is
//! required and a qualified name; parameters at most 512 and 256 KiB; reclaim policy Delete or
//! Retain; binding mode Immediate or WaitForFirstConsumer; provisioner, parameters, reclaim policy
//! and binding mode are immutable.

use super::{Plain, Strategy, immutable, info};
use kaji_api::{FieldError, ResourceInfo};
use serde_json::{Value, json};
use std::sync::Arc;

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    const G: &str = "storage.k8s.io";
    all.push(Arc::new(StorageClassStrategy));
    all.push(Arc::new(Plain {
        info: info(
            G,
            "v1",
            "CSIDriver",
            "csidrivers",
            "csidriver",
            false,
            &[],
            &[],
        ),
        status: false,
        generation: false,
    }));
    all.push(Arc::new(Plain {
        info: info(G, "v1", "CSINode", "csinodes", "csinode", false, &[], &[]),
        status: false,
        generation: false,
    }));
    all.push(Arc::new(Plain {
        info: info(
            G,
            "v1",
            "VolumeAttachment",
            "volumeattachments",
            "volumeattachment",
            false,
            &[],
            &["status"],
        ),
        status: true,
        generation: false,
    }));
}

pub struct StorageClassStrategy;

static STORAGE_CLASSES: ResourceInfo = info(
    "storage.k8s.io",
    "v1",
    "StorageClass",
    "storageclasses",
    "storageclass",
    false,
    &["sc"],
    &[],
);

const MAX_PARAMETERS: usize = 512;
const MAX_PARAMETERS_SIZE: usize = 256 * 1024;
const RECLAIM_POLICIES: [&str; 2] = ["Delete", "Retain"];
const BINDING_MODES: [&str; 2] = ["Immediate", "WaitForFirstConsumer"];

impl Strategy for StorageClassStrategy {
    fn info(&self) -> &ResourceInfo {
        &STORAGE_CLASSES
    }
    fn default(&self, obj: &mut Value) {
        let Some(m) = obj.as_object_mut() else { return };
        if m.get("reclaimPolicy").is_none_or(Value::is_null) {
            m.insert("reclaimPolicy".into(), json!("Delete"));
        }
        if m.get("volumeBindingMode").is_none_or(Value::is_null) {
            m.insert("volumeBindingMode".into(), json!("Immediate"));
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let provisioner = obj
            .get("provisioner")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if provisioner.is_empty() {
            errs.push(FieldError::required("provisioner", ""));
        } else {
            for m in kaji_api::validation::qualified_name(&provisioner.to_lowercase()) {
                errs.push(FieldError::invalid("provisioner", &json!(provisioner), &m));
            }
        }
        if let Some(params) = obj.get("parameters").and_then(Value::as_object) {
            if params.len() > MAX_PARAMETERS {
                errs.push(FieldError {
                    reason: "FieldValueTooLong",
                    field: "parameters".into(),
                    detail: format!("Too long: may not be more than {MAX_PARAMETERS} items"),
                });
            } else {
                let mut size = 0;
                for (k, v) in params {
                    if k.is_empty() {
                        errs.push(FieldError::invalid(
                            "parameters",
                            &json!(k),
                            "field can not be empty.",
                        ));
                    }
                    size += k.len() + v.as_str().map_or(0, str::len);
                }
                if size > MAX_PARAMETERS_SIZE {
                    errs.push(FieldError::too_long("parameters", MAX_PARAMETERS_SIZE));
                }
            }
        }
        let policy = obj
            .get("reclaimPolicy")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !policy.is_empty() && !RECLAIM_POLICIES.contains(&policy) {
            errs.push(FieldError::not_supported(
                "reclaimPolicy",
                policy,
                &RECLAIM_POLICIES,
            ));
        }
        match obj.get("volumeBindingMode").and_then(Value::as_str) {
            None => errs.push(FieldError::required("volumeBindingMode", "")),
            Some(m) if !BINDING_MODES.contains(&m) => errs.push(FieldError::not_supported(
                "volumeBindingMode",
                m,
                &BINDING_MODES,
            )),
            Some(_) => {}
        }
        for (i, term) in obj
            .get("allowedTopologies")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let exprs = term
                .get("matchLabelExpressions")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for (j, e) in exprs.iter().enumerate() {
                if e.get("values")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
                {
                    errs.push(FieldError::required(
                        format!("allowedTopologies[{i}].matchLabelExpressions[{j}].values"),
                        "must specify as least one value",
                    ));
                }
            }
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let empty = json!({});
        let params = |v: &Value| {
            v.get("parameters")
                .filter(|p| !p.is_null())
                .unwrap_or(&empty)
                .clone()
        };
        if params(new) != params(old) {
            errs.push(FieldError::forbidden(
                "parameters",
                "updates to parameters are forbidden.",
            ));
        }
        if new.get("provisioner") != old.get("provisioner") {
            errs.push(FieldError::forbidden(
                "provisioner",
                "updates to provisioner are forbidden.",
            ));
        }
        if new.get("reclaimPolicy") != old.get("reclaimPolicy") {
            errs.push(FieldError::forbidden(
                "reclaimPolicy",
                "updates to reclaimPolicy are forbidden.",
            ));
        }
        errs.extend(immutable(
            new,
            old,
            "/volumeBindingMode",
            "volumeBindingMode",
        ));
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validation_and_immutability() {
        let s = StorageClassStrategy;
        let mut sc = json!({"metadata": {"name": "fast"}, "provisioner": "rancher.io/local-path"});
        s.default(&mut sc);
        assert_eq!(
            (
                sc["reclaimPolicy"].as_str(),
                sc["volumeBindingMode"].as_str()
            ),
            (Some("Delete"), Some("Immediate"))
        );
        assert!(s.validate(&sc).is_empty());
        let bad = json!({"reclaimPolicy": "Recycle", "volumeBindingMode": "Later"});
        let got: Vec<String> = s
            .validate(&bad)
            .iter()
            .map(|e| format!("{}: {}", e.field, e.detail))
            .collect();
        assert_eq!(
            got,
            [
                "provisioner: Required value",
                "reclaimPolicy: Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\"",
                "volumeBindingMode: Unsupported value: \"Later\": supported values: \"Immediate\", \"WaitForFirstConsumer\"",
            ]
        );
        let mut other = sc.clone();
        other["provisioner"] = json!("example.com/other");
        other["parameters"] = json!({"type": "ssd"});
        let got: Vec<String> = s
            .validate_update(&other, &sc)
            .iter()
            .map(|e| format!("{}: {}", e.field, e.detail))
            .collect();
        assert_eq!(
            got,
            [
                "parameters: Forbidden: updates to parameters are forbidden.",
                "provisioner: Forbidden: updates to provisioner are forbidden."
            ]
        );
    }
}
