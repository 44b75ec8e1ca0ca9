//! Pods: spec defaults and validation, the spec is immutable but for images and a few fields,
//! graceful deletion once bound, field selectors on spec.nodeName and status.phase; the
//! subresources `binding`, `eviction`, and `location` (where log, exec, attach and portforward
//! are served; `crate::proxy` relays them).

pub mod binding;
pub mod eviction;
pub mod location;

use crate::registry::{Ctx, Strategy, info, podspec, str_at};
use kaji_api::{FieldError, ResourceInfo};
use serde_json::{Value, json};

pub struct PodStrategy;

static INFO: ResourceInfo = ResourceInfo {
    categories: &["all"],
    ..info(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        true,
        &["po"],
        &["status", "binding", "eviction", "log", "exec", "attach", "portforward", "proxy"],
    )
};

impl Strategy for PodStrategy {
    fn info(&self) -> &ResourceInfo {
        &INFO
    }
    fn has_status(&self) -> bool {
        true
    }
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec") {
            podspec::default_pod_spec(spec);
            // Upstream SetDefaults_Pod: pods (not templates) get service links by default.
            if spec.is_object() {
                crate::registry::default_key(spec, "enableServiceLinks", json!(true));
            }
        }
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        // Upstream sets phase Pending and QoS class at create.
        obj["status"] = json!({"phase": "Pending", "qosClass": qos_class(obj.get("spec"))});
    }
    /// The mutating admission plug-ins for pods, in upstream's order: ServiceAccount, then
    /// DefaultTolerationSeconds (Priority needs the PriorityClasses: `crate::admission::priority`).
    fn admit(&self, ctx: &Ctx<'_>, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else { return };
        crate::admission::service_account::admit(spec);
        crate::admission::default_toleration_seconds::admit(spec, ctx.admission);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        podspec::validate_pod_spec(obj.get("spec"), "spec")
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        // Only container images (and a few fields) of a pod may change (upstream ValidatePodUpdate).
        let mutable_view = |v: &Value| {
            let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
            for key in ["containers", "initContainers"] {
                if let Some(cs) = spec.get_mut(key).and_then(Value::as_array_mut) {
                    for c in cs {
                        if let Some(m) = c.as_object_mut() {
                            m.remove("image");
                        }
                    }
                }
            }
            if let Some(m) = spec.as_object_mut() {
                for k in ["activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds", "schedulingGates"] {
                    m.remove(k);
                }
            }
            spec
        };
        if mutable_view(new) != mutable_view(old) {
            errs.push(FieldError::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            ));
        }
        errs
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        let ptr = match field {
            "spec.nodeName" => "/spec/nodeName",
            "spec.restartPolicy" => "/spec/restartPolicy",
            "spec.schedulerName" => "/spec/schedulerName",
            "spec.serviceAccountName" => "/spec/serviceAccountName",
            "spec.hostNetwork" => {
                return Some(obj.pointer("/spec/hostNetwork").and_then(Value::as_bool).unwrap_or(false).to_string());
            }
            "status.phase" => "/status/phase",
            "status.podIP" => "/status/podIP",
            "status.nominatedNodeName" => "/status/nominatedNodeName",
            _ => return None,
        };
        Some(str_at(obj, ptr).unwrap_or_default().to_string())
    }
    fn graceful_delete(&self, obj: &Value) -> Option<i64> {
        // Unbound pods go at once; bound ones wait for the kubelet (upstream CheckGracefulDelete).
        str_at(obj, "/spec/nodeName")?;
        if matches!(str_at(obj, "/status/phase"), Some("Succeeded" | "Failed")) {
            return None;
        }
        Some(obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30))
    }
}

pub use kaji_api::qos::qos_class;
