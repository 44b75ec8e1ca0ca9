//! PersistentVolumes (upstream `pkg/registry/core/persistentvolume/strategy.go` and
//! `ValidatePersistentVolume*` of `pkg/apis/core/validation`): defaults (reclaim policy Retain,
//! volume mode Filesystem), a new volume starts Pending with its `lastPhaseTransitionTime`, the
//! status subresource stamps that time when the phase changes, and validation with upstream's
//! causes: access modes, a positive `storage` capacity (and nothing else), exactly one volume
//! source (hostPath and local checked in depth; the other in-tree and CSI sources are counted),
//! a local volume needs node affinity, the source is immutable, and so are the volume mode and a
//! node affinity once set. Also the checks shared with claims (`persistentvolumeclaim`).

use crate::registry::{Strategy, immutable, info, str_at};
use kaji_api::{FieldError, ResourceInfo};
use serde_json::{Value, json};

pub struct PersistentVolumeStrategy;

static INFO: ResourceInfo = info(
    "",
    "v1",
    "PersistentVolume",
    "persistentvolumes",
    "persistentvolume",
    false,
    &["pv"],
    &["status"],
);

pub(super) const ACCESS_MODES: [&str; 4] = [
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const RECLAIM_POLICIES: [&str; 3] = ["Delete", "Recycle", "Retain"];
pub(super) const VOLUME_MODES: [&str; 2] = ["Block", "Filesystem"];
const HOST_PATH_TYPES: [&str; 8] = [
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];
/// The volume sources a PersistentVolume may have (`PersistentVolumeSource`), in upstream's order.
const SOURCES: [&str; 22] = [
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "glusterfs",
    "flocker",
    "nfs",
    "rbd",
    "quobyte",
    "cephfs",
    "iscsi",
    "cinder",
    "fc",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];
const NOT_POSITIVE: &str = "must be greater than zero";

/// Upstream `validatePathNoBacksteps`.
fn no_backsteps(path: &str, field: &str) -> Option<FieldError> {
    path.split('/')
        .any(|p| p == "..")
        .then(|| FieldError::invalid(field, &json!(path), "must not contain '..'"))
}

/// A quantity that must be more than zero (upstream `ValidatePositiveQuantityValue`), or is not a
/// quantity at all.
pub(super) fn positive_quantity(q: &Value, field: &str) -> Option<FieldError> {
    let s = q
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| q.to_string());
    match kaji_api::quantity::nanos(&s) {
        None => Some(FieldError::invalid(
            field,
            &json!(s),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        )),
        Some(n) if n <= 0 => Some(FieldError::invalid(field, &json!(s), NOT_POSITIVE)),
        Some(_) => None,
    }
}

/// Upstream's access-mode checks: each mode known, ReadWriteOncePod alone.
pub(super) fn validate_access_modes(modes: &[Value], field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let (mut once_pod, mut other) = (false, false);
    for m in modes {
        let s = m.as_str().unwrap_or_default();
        if !ACCESS_MODES.contains(&s) {
            errs.push(FieldError::not_supported(field, s, &ACCESS_MODES));
        } else if s == "ReadWriteOncePod" {
            once_pod = true;
        } else {
            other = true;
        }
    }
    if once_pod && other {
        errs.push(FieldError::forbidden(
            field,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
    errs
}

/// A storage class name (upstream `ValidateClassName`: a DNS subdomain).
pub(super) fn validate_class_name(name: &str, field: &str) -> Vec<FieldError> {
    kaji_api::validation::dns1123_subdomain(name)
        .iter()
        .map(|m| FieldError::invalid(field, &json!(name), m))
        .collect()
}

/// Upstream `ValidateNodeSelector` (label expressions and the `metadata.name` field).
fn validate_node_selector(sel: &Value, field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let terms = sel
        .get("nodeSelectorTerms")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if terms.is_empty() {
        errs.push(FieldError::required(
            format!("{field}.nodeSelectorTerms"),
            "must have at least one node selector term",
        ));
    }
    for (i, t) in terms.iter().enumerate() {
        let exprs = t
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for (j, e) in exprs.enumerate() {
            let p = format!("{field}.nodeSelectorTerms[{i}].matchExpressions[{j}]");
            let values = e
                .get("values")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let op = e
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match op {
                "In" | "NotIn" if values == 0 => errs.push(FieldError::required(
                    format!("{p}.values"),
                    "must be specified when `operator` is 'In' or 'NotIn'",
                )),
                "Exists" | "DoesNotExist" if values > 0 => errs.push(FieldError::forbidden(
                    format!("{p}.values"),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                )),
                "Gt" | "Lt" if values != 1 => errs.push(FieldError::required(
                    format!("{p}.values"),
                    "must be specified single value when `operator` is 'Lt' or 'Gt'",
                )),
                "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
                other => errs.push(FieldError::invalid(
                    format!("{p}.operator"),
                    &json!(other),
                    "not a valid selector operator",
                )),
            }
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            for m in kaji_api::validation::qualified_name(key) {
                errs.push(FieldError::invalid(format!("{p}.key"), &json!(key), &m));
            }
        }
        let fields = t
            .get("matchFields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for (j, e) in fields.enumerate() {
            let p = format!("{field}.nodeSelectorTerms[{i}].matchFields[{j}]");
            let op = e
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let values = e
                .get("values")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            match op {
                "In" | "NotIn" if values != 1 => errs.push(FieldError::required(format!("{p}.values"), "must be only one value when `operator` is 'In' or 'NotIn' for node field selector")),
                "In" | "NotIn" => {}
                other => errs.push(FieldError::invalid(format!("{p}.operator"), &json!(other), "not a valid selector operator")),
            }
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            if key != "metadata.name" {
                errs.push(FieldError::invalid(
                    format!("{p}.key"),
                    &json!(key),
                    "not a valid field selector key",
                ));
            }
        }
    }
    errs
}

/// `spec.storageClassName` (when set) and `spec.volumeMode`, checked alike for volumes and
/// claims (upstream's ValidatePersistentVolumeSpec and ValidatePersistentVolumeClaimSpec).
pub(super) fn validate_class_and_mode(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(class) = spec
        .get("storageClassName")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
    {
        errs.extend(validate_class_name(class, "spec.storageClassName"));
    }
    if let Some(mode) = spec.get("volumeMode").and_then(Value::as_str)
        && !VOLUME_MODES.contains(&mode)
    {
        errs.push(FieldError::not_supported(
            "spec.volumeMode",
            mode,
            &VOLUME_MODES,
        ));
    }
    errs
}

/// Upstream `ValidatePersistentVolumeSpec` (not inline).
fn validate_spec(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let modes = spec
        .get("accessModes")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if modes.is_empty() {
        errs.push(FieldError::required("spec.accessModes", ""));
    }
    errs.extend(validate_access_modes(modes, "spec.accessModes"));
    let capacity = spec.get("capacity").and_then(Value::as_object);
    let cap_len = capacity.map_or(0, |c| c.len());
    if cap_len == 0 {
        errs.push(FieldError::required("spec.capacity", ""));
    }
    if capacity.is_none_or(|c| !c.contains_key("storage")) || cap_len > 1 {
        let shown: Vec<String> = capacity
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k:?}:{}", v.as_str().unwrap_or_default()))
            .collect();
        errs.push(FieldError {
            reason: "FieldValueNotSupported",
            field: "spec.capacity".into(),
            detail: format!(
                "Unsupported value: core.ResourceList{{{}}}: supported values: \"storage\"",
                shown.join(", ")
            ),
        });
    }
    for (k, q) in capacity.into_iter().flatten() {
        errs.extend(positive_quantity(q, &format!("spec.capacity[{k}]")));
    }
    let policy = spec
        .get("persistentVolumeReclaimPolicy")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !policy.is_empty() && !RECLAIM_POLICIES.contains(&policy) {
        errs.push(FieldError::not_supported(
            "spec.persistentVolumeReclaimPolicy",
            policy,
            &RECLAIM_POLICIES,
        ));
    }
    let mut affinity = false;
    if let Some(na) = spec.get("nodeAffinity").filter(|v| !v.is_null()) {
        affinity = true;
        match na.get("required").filter(|v| !v.is_null()) {
            Some(req) => errs.extend(validate_node_selector(req, "spec.nodeAffinity.required")),
            None => errs.push(FieldError::required(
                "spec.nodeAffinity.required",
                "must specify required node constraints",
            )),
        }
    }
    let mut count = 0;
    for source in SOURCES {
        let Some(src) = spec.get(source).filter(|v| !v.is_null()) else {
            continue;
        };
        // flexVolume is counted without the check, as upstream.
        if count > 0 && source != "flexVolume" {
            errs.push(FieldError::forbidden(
                format!("spec.{source}"),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        count += 1;
        match source {
            "hostPath" | "local" => {
                let path = src.get("path").and_then(Value::as_str).unwrap_or_default();
                if path.is_empty() {
                    errs.push(FieldError::required(format!("spec.{source}.path"), ""));
                } else {
                    errs.extend(no_backsteps(path, &format!("spec.{source}.path")));
                }
                if source == "hostPath"
                    && let Some(t) = src.get("type").and_then(Value::as_str)
                    && !HOST_PATH_TYPES.contains(&t)
                {
                    errs.push(FieldError::not_supported(
                        "spec.hostPath.type",
                        t,
                        &HOST_PATH_TYPES,
                    ));
                }
                if source == "local" && !affinity {
                    errs.push(FieldError::required(
                        "spec.nodeAffinity",
                        "Local volume requires node affinity",
                    ));
                }
            }
            "csi" => {
                for f in ["driver", "volumeHandle"] {
                    if src.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                        errs.push(FieldError::required(format!("spec.csi.{f}"), ""));
                    }
                }
            }
            "nfs" => {
                for f in ["server", "path"] {
                    if src.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                        errs.push(FieldError::required(format!("spec.nfs.{f}"), ""));
                    }
                }
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(FieldError::required("spec", "must specify a volume type"));
    }
    if policy == "Recycle"
        && let Some(p) = spec.pointer("/hostPath/path").and_then(Value::as_str)
        && !p.is_empty()
        && p.trim_end_matches('/').is_empty()
    {
        errs.push(FieldError::forbidden(
            "spec.persistentVolumeReclaimPolicy",
            "may not be 'recycle' for a hostPath mount of '/'",
        ));
    }
    errs.extend(validate_class_and_mode(spec));
    errs
}

/// The volume source of a spec: every source field, for the immutability check.
fn source_of(spec: Option<&Value>) -> Vec<(&'static str, Value)> {
    SOURCES
        .iter()
        .filter_map(|s| {
            spec.and_then(|sp| sp.get(*s))
                .filter(|v| !v.is_null())
                .map(|v| (*s, v.clone()))
        })
        .collect()
}

/// A few lines naming what changed, in the spirit of upstream's `cmp.Diff` of the Go structs.
pub(super) fn diff(
    type_name: &str,
    old: &serde_json::Map<String, Value>,
    new: &serde_json::Map<String, Value>,
) -> String {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = format!("  {type_name}{{\n");
    for k in keys {
        let (a, b) = (old.get(k), new.get(k));
        if a == b {
            continue;
        }
        let go = |k: &str| {
            let mut c = k.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        };
        let show = |v: Option<&Value>| v.map_or_else(|| "nil".to_string(), Value::to_string);
        out.push_str(&format!(
            "- \t{}: {},\n+ \t{}: {},\n",
            go(k),
            show(a),
            go(k),
            show(b)
        ));
    }
    out.push_str("  }\n");
    out
}

impl Strategy for PersistentVolumeStrategy {
    fn info(&self) -> &ResourceInfo {
        &INFO
    }
    fn has_status(&self) -> bool {
        true
    }
    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        if spec
            .get("persistentVolumeReclaimPolicy")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            spec.insert("persistentVolumeReclaimPolicy".into(), json!("Retain"));
        }
        if spec.get("volumeMode").is_none_or(Value::is_null) {
            spec.insert("volumeMode".into(), json!("Filesystem"));
        }
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] =
            json!({"phase": "Pending", "lastPhaseTransitionTime": crate::objects::now_rfc3339()});
    }
    fn prepare_for_status_update(&self, new: &mut Value, old: &Value) {
        let mut status = new.get("status").cloned().unwrap_or_else(|| json!({}));
        let phase = |v: &Value| {
            v.pointer("/phase")
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let old_status = old.get("status").cloned().unwrap_or_else(|| json!({}));
        let given = status
            .get("lastPhaseTransitionTime")
            .filter(|t| !t.is_null())
            .cloned();
        let old_time = old_status.get("lastPhaseTransitionTime").cloned();
        if status.is_object() {
            if phase(&status) == phase(&old_status) {
                if given.is_none()
                    && let Some(t) = old_time
                {
                    status["lastPhaseTransitionTime"] = t;
                }
            } else if given.is_none() || given == old_time {
                status["lastPhaseTransitionTime"] = json!(crate::objects::now_rfc3339());
            }
        }
        let mut merged = old.clone();
        merged["status"] = status;
        *new = merged;
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_spec(obj.get("spec").unwrap_or(&Value::Null))
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let (ns, os) = (source_of(new.get("spec")), source_of(old.get("spec")));
        if ns != os {
            let m = |v: Vec<(&'static str, Value)>| {
                v.into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect::<serde_json::Map<_, _>>()
            };
            let d = diff("core.PersistentVolumeSource", &m(os), &m(ns));
            errs.push(FieldError::forbidden(
                "spec.persistentvolumesource",
                &format!("spec.persistentvolumesource is immutable after creation\n{d}"),
            ));
        }
        errs.extend(immutable(new, old, "/spec/volumeMode", "volumeMode"));
        if old
            .pointer("/spec/nodeAffinity")
            .is_some_and(|a| !a.is_null())
        {
            errs.extend(immutable(new, old, "/spec/nodeAffinity", "nodeAffinity"));
        }
        errs
    }
    fn validate_status_update(&self, _new: &Value, _old: &Value) -> Vec<FieldError> {
        Vec::new()
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        match field {
            "name" => Some(
                str_at(obj, "/metadata/name")
                    .unwrap_or_default()
                    .to_string(),
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(errs: &[FieldError]) -> Vec<String> {
        errs.iter()
            .map(|e| format!("{}: {}", e.field, e.detail))
            .collect()
    }

    #[test]
    fn defaults_and_validation() {
        let s = PersistentVolumeStrategy;
        let mut pv = json!({"metadata": {"name": "v"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/x"}}});
        s.default(&mut pv);
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
        assert!(s.validate(&pv).is_empty(), "{:?}", s.validate(&pv));
        let bad = json!({"spec": {"capacity": {"storage": "0"}, "accessModes": ["Sometimes"], "local": {"path": "/a/../b"}, "nfs": {"server": "x", "path": "/"}}});
        assert_eq!(
            fields(&s.validate(&bad)),
            [
                "spec.accessModes: Unsupported value: \"Sometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"",
                "spec.capacity[storage]: Invalid value: \"0\": must be greater than zero",
                "spec.local: Forbidden: may not specify more than 1 volume type",
            ]
        );
        let bad = json!({"spec": {"local": {"path": "/a/../b"}}});
        assert_eq!(
            fields(&s.validate(&bad)),
            [
                "spec.accessModes: Required value",
                "spec.capacity: Required value",
                "spec.capacity: Unsupported value: core.ResourceList{}: supported values: \"storage\"",
                "spec.local.path: Invalid value: \"/a/../b\": must not contain '..'",
                "spec.nodeAffinity: Required value: Local volume requires node affinity",
            ]
        );
        assert_eq!(
            fields(&s.validate(
                &json!({"spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1"}}})
            )),
            ["spec: Required value: must specify a volume type"]
        );
    }

    #[test]
    fn source_is_immutable_and_phase_changes_are_stamped() {
        let s = PersistentVolumeStrategy;
        let old = json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/x"}},
                         "status": {"phase": "Available", "lastPhaseTransitionTime": "2020-01-01T00:00:00Z"}});
        let mut new = old.clone();
        new["spec"]["hostPath"]["path"] = json!("/tmp/y");
        let errs = s.validate_update(&new, &old);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].detail.starts_with(
                "Forbidden: spec.persistentvolumesource is immutable after creation\n"
            ),
            "{}",
            errs[0].detail
        );
        let mut st = old.clone();
        st["status"]["phase"] = json!("Bound");
        s.prepare_for_status_update(&mut st, &old);
        assert_ne!(
            st["status"]["lastPhaseTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        let mut same = old.clone();
        same["status"]
            .as_object_mut()
            .unwrap()
            .remove("lastPhaseTransitionTime");
        s.prepare_for_status_update(&mut same, &old);
        assert_eq!(
            same["status"]["lastPhaseTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
    }
}
