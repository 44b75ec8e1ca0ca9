//! The pod spec is shared by pods and every workload template: its defaults
//! (upstream `SetDefaults_PodSpec`, `SetDefaults_Container`, probes, volumes) and validation.

use super::{child, default_key};
use kaji_api::{FieldError, validation};
use serde_json::{Value, json};

/// Applies upstream's defaults to a PodSpec in place.
pub fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    default_key(spec, "restartPolicy", json!("Always"));
    default_key(spec, "terminationGracePeriodSeconds", json!(30));
    default_key(spec, "dnsPolicy", json!("ClusterFirst"));
    default_key(spec, "securityContext", json!({}));
    default_key(spec, "schedulerName", json!("default-scheduler"));
    for key in ["containers", "initContainers"] {
        if let Some(list) = spec.get_mut(key).and_then(Value::as_array_mut) {
            list.iter_mut().for_each(default_container);
        }
    }
    if let Some(vols) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols {
            for src in ["configMap", "secret"] {
                if let Some(s) = v.get_mut(src).filter(|s| s.is_object()) {
                    default_key(s, "defaultMode", json!(420));
                }
            }
            if let Some(s) = v.get_mut("downwardAPI").filter(|s| s.is_object()) {
                default_key(s, "defaultMode", json!(420));
            }
            if let Some(s) = v.get_mut("projected").filter(|s| s.is_object()) {
                default_key(s, "defaultMode", json!(420));
            }
            if let Some(s) = v.get_mut("hostPath").filter(|s| s.is_object()) {
                default_key(s, "type", json!(""));
            }
        }
    }
}

fn default_probe(p: &mut Value) {
    default_key(p, "timeoutSeconds", json!(1));
    default_key(p, "periodSeconds", json!(10));
    default_key(p, "successThreshold", json!(1));
    default_key(p, "failureThreshold", json!(3));
    if let Some(h) = p.get_mut("httpGet").filter(|h| h.is_object()) {
        default_key(h, "path", json!("/"));
        default_key(h, "scheme", json!("HTTP"));
    }
}

fn default_container(c: &mut Value) {
    if !c.is_object() {
        return;
    }
    default_key(c, "terminationMessagePath", json!("/dev/termination-log"));
    default_key(c, "terminationMessagePolicy", json!("File"));
    let image = c.get("image").and_then(Value::as_str).unwrap_or_default().to_string();
    default_key(c, "imagePullPolicy", json!(default_pull_policy(&image)));
    default_key(c, "resources", json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            default_key(p, "protocol", json!("TCP"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).filter(|p| p.is_object()) {
            default_probe(p);
        }
    }
    if let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) {
        for e in env {
            if let Some(f) = e.pointer_mut("/valueFrom/fieldRef").filter(|f| f.is_object()) {
                default_key(f, "apiVersion", json!("v1"));
            }
        }
    }
}

/// `Always` for `:latest` or untagged images, `IfNotPresent` otherwise (digests count as tags).
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// Defaults of a pod template (`spec.template`) inside a workload.
pub fn default_template(spec: &mut Value) {
    if let Some(t) = spec.get_mut("template").filter(|t| t.is_object())
        && let Some(s) = child(t, "spec")
    {
        default_pod_spec(s);
    }
}

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];

/// Validates a PodSpec at `path` (e.g. `spec` or `spec.template.spec`).
pub fn validate_pod_spec(spec: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
        return errs;
    };
    let containers = spec.get("containers").and_then(Value::as_array);
    if containers.is_none_or(Vec::is_empty) {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let mut names: Vec<&str> = Vec::new();
    for key in ["initContainers", "containers"] {
        for (i, c) in spec.get(key).and_then(Value::as_array).into_iter().flatten().enumerate() {
            let p = format!("{path}.{key}[{i}]");
            match c.get("name").and_then(Value::as_str) {
                None | Some("") => errs.push(FieldError::required(format!("{p}.name"), "")),
                Some(n) => {
                    for m in validation::dns1123_label(n) {
                        errs.push(FieldError::invalid(format!("{p}.name"), &json!(n), &m));
                    }
                    if names.contains(&n) {
                        errs.push(FieldError::duplicate(format!("{p}.name"), &json!(n)));
                    }
                    names.push(n);
                }
            }
            if c.get("image").and_then(Value::as_str).is_none_or(|s| s.trim().is_empty()) {
                errs.push(FieldError::required(format!("{p}.image"), ""));
            }
            for (j, port) in c.get("ports").and_then(Value::as_array).into_iter().flatten().enumerate() {
                let cp = port.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
                if !(1..=65535).contains(&cp) {
                    errs.push(FieldError::invalid(
                        format!("{p}.ports[{j}].containerPort"),
                        port.get("containerPort").unwrap_or(&json!(0)),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
                if let Some(proto) = port.get("protocol").and_then(Value::as_str)
                    && !["TCP", "UDP", "SCTP"].contains(&proto)
                {
                    errs.push(FieldError::not_supported(format!("{p}.ports[{j}].protocol"), proto, &["SCTP", "TCP", "UDP"]));
                }
            }
            if let Some(pp) = c.get("imagePullPolicy").and_then(Value::as_str)
                && !["Always", "IfNotPresent", "Never"].contains(&pp)
            {
                errs.push(FieldError::not_supported(format!("{p}.imagePullPolicy"), pp, &["Always", "IfNotPresent", "Never"]));
            }
        }
    }
    if let Some(rp) = spec.get("restartPolicy").and_then(Value::as_str)
        && !RESTART_POLICIES.contains(&rp)
    {
        errs.push(FieldError::not_supported(format!("{path}.restartPolicy"), rp, RESTART_POLICIES));
    }
    let mut vol_names: Vec<&str> = Vec::new();
    for (i, v) in spec.get("volumes").and_then(Value::as_array).into_iter().flatten().enumerate() {
        match v.get("name").and_then(Value::as_str) {
            None | Some("") => errs.push(FieldError::required(format!("{path}.volumes[{i}].name"), "")),
            Some(n) => {
                if vol_names.contains(&n) {
                    errs.push(FieldError::duplicate(format!("{path}.volumes[{i}].name"), &json!(n)));
                }
                vol_names.push(n);
            }
        }
    }
    errs
}

/// Validation shared by workloads with a LabelSelector and a pod template (Deployment,
/// ReplicaSet, StatefulSet, DaemonSet): selector required, non-empty and matching the template.
pub fn validate_selector_and_template(obj: &Value, kind_lower: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let selector = obj.pointer("/spec/selector");
    match selector {
        None | Some(Value::Null) => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => match kaji_api::selector::LabelSelector::from_object(sel) {
            Err(e) => errs.push(FieldError::invalid("spec.selector", sel, &e)),
            Ok(s) if s.is_empty() => errs.push(FieldError::invalid(
                "spec.selector",
                sel,
                &format!("empty selector is invalid for {kind_lower}"),
            )),
            Ok(s) => {
                if !s.matches_object(obj.pointer("/spec/template").unwrap_or(&Value::Null)) {
                    errs.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        obj.pointer("/spec/template/metadata/labels").unwrap_or(&Value::Null),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        },
    }
    if let Some(r) = obj.pointer("/spec/replicas")
        && r.as_i64().is_some_and(|r| r < 0)
    {
        errs.push(FieldError::invalid("spec.replicas", r, "must be greater than or equal to 0"));
    }
    errs.extend(validate_pod_spec(obj.pointer("/spec/template/spec"), "spec.template.spec"));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("nginx:1.16"), "IfNotPresent");
        assert_eq!(default_pull_policy("127.0.0.1:5000/nginx"), "Always");
        assert_eq!(default_pull_policy("127.0.0.1:5000/nginx:1"), "IfNotPresent");
    }
}
