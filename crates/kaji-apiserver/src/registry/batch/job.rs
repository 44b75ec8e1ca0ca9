//! Jobs: upstream defaults (completions/parallelism 1, backoffLimit 6), the generated selector
//! (`batch.kubernetes.io/controller-uid`), restartPolicy OnFailure or Never, immutable template.

use crate::registry::{Strategy, child, default_key, immutable, info, podspec, str_at};
use kaji_api::{FieldError, ResourceInfo};
use serde_json::{Value, json};

pub struct JobStrategy;

static INFO: ResourceInfo = ResourceInfo { categories: &["all"], ..info("batch", "v1", "Job", "jobs", "job", true, &[], &["status"]) };

impl Strategy for JobStrategy {
    fn info(&self) -> &ResourceInfo {
        &INFO
    }
    fn has_status(&self) -> bool {
        true
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn default(&self, obj: &mut Value) {
        // An unlabelled Job takes its template's labels (upstream SetDefaults_Job).
        if obj.pointer("/metadata/labels").and_then(Value::as_object).is_none_or(|l| l.is_empty())
            && let Some(l) = obj.pointer("/spec/template/metadata/labels").filter(|l| l.as_object().is_some_and(|m| !m.is_empty())).cloned()
            && let Some(meta) = child(obj, "metadata")
        {
            meta["labels"] = l;
        }
        let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else { return };
        let completions_missing = spec.get("completions").is_none_or(Value::is_null);
        let parallelism_missing = spec.get("parallelism").is_none_or(Value::is_null);
        if completions_missing && parallelism_missing {
            spec["completions"] = json!(1);
        }
        default_key(spec, "parallelism", json!(1));
        default_key(spec, "backoffLimit", json!(6));
        default_key(spec, "completionMode", json!("NonIndexed"));
        default_key(spec, "suspend", json!(false));
        default_key(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
        podspec::default_template(spec);
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj.as_object_mut().map(|m| m.remove("status"));
        let manual = obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true);
        if manual {
            return;
        }
        let uid = str_at(obj, "/metadata/uid").unwrap_or_default().to_string();
        let name = str_at(obj, "/metadata/name").unwrap_or_default().to_string();
        if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
            if spec.get("selector").is_none_or(Value::is_null) {
                spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
            }
            if let Some(t) = child(spec, "template")
                && let Some(m) = child(t, "metadata")
                && let Some(l) = child(m, "labels")
                && let Some(labels) = l.as_object_mut()
            {
                labels.insert("batch.kubernetes.io/controller-uid".into(), json!(uid));
                labels.insert("batch.kubernetes.io/job-name".into(), json!(name));
                labels.insert("controller-uid".into(), json!(uid));
                labels.insert("job-name".into(), json!(name));
            }
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = podspec::validate_pod_spec(obj.pointer("/spec/template/spec"), "spec.template.spec");
        let rp = str_at(obj, "/spec/template/spec/restartPolicy").unwrap_or("Always");
        if rp != "OnFailure" && rp != "Never" {
            errs.push(FieldError::not_supported("spec.template.spec.restartPolicy", rp, &["OnFailure", "Never"]));
        }
        for f in ["parallelism", "completions", "backoffLimit"] {
            if let Some(v) = obj.pointer(&format!("/spec/{f}"))
                && v.as_i64().is_some_and(|n| n < 0)
            {
                errs.push(FieldError::invalid(format!("spec.{f}"), v, "must be greater than or equal to 0"));
            }
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        errs.extend(immutable(new, old, "/spec/selector", "spec.selector"));
        errs.extend(immutable(new, old, "/spec/completions", "spec.completions"));
        errs.extend(immutable(new, old, "/spec/template", "spec.template"));
        errs
    }
}
