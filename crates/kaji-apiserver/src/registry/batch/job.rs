//! Jobs: upstream defaults (completions/parallelism 1, backoffLimit 6, completionMode
//! NonIndexed, suspend false, podReplacementPolicy TerminatingOrFailed or, with a
//! podFailurePolicy, Failed), the generated selector (`batch.kubernetes.io/controller-uid`,
//! unless `manualSelector`) and pod labels, validation as pkg/apis/batch/validation (negative
//! counts, Indexed mode, restartPolicy OnFailure or Never, podFailurePolicy rules), and an
//! immutable selector, completions and template.

use crate::registry::{Strategy, child, default_key, immutable, info, podspec, str_at};
use kaji_api::{FieldError, ResourceInfo};
use serde_json::{Value, json};

pub struct JobStrategy;

static INFO: ResourceInfo = ResourceInfo { categories: &["all"], ..info("batch", "v1", "Job", "jobs", "job", true, &[], &["status"]) };

/// Upstream `maxParallelismForIndexedJob`.
const MAX_PARALLELISM_INDEXED: i64 = 100_000;
const ACTIONS: &[&str] = &["Count", "FailIndex", "FailJob", "Ignore"];

/// Upstream `SetDefaults_Job` on a JobSpec.
pub fn default_job_spec(spec: &mut Value) {
    let completions_missing = spec.get("completions").is_none_or(Value::is_null);
    let parallelism_missing = spec.get("parallelism").is_none_or(Value::is_null);
    if completions_missing && parallelism_missing {
        spec["completions"] = json!(1);
    }
    default_key(spec, "parallelism", json!(1));
    default_key(spec, "backoffLimit", json!(6));
    default_key(spec, "completionMode", json!("NonIndexed"));
    default_key(spec, "suspend", json!(false));
    let replacement = if spec.get("podFailurePolicy").is_some_and(|p| !p.is_null()) { "Failed" } else { "TerminatingOrFailed" };
    default_key(spec, "podReplacementPolicy", json!(replacement));
    if let Some(rules) = spec.pointer_mut("/podFailurePolicy/rules").and_then(Value::as_array_mut) {
        for rule in rules {
            if let Some(patterns) = rule.get_mut("onPodConditions").and_then(Value::as_array_mut) {
                for p in patterns {
                    default_key(p, "status", json!("True"));
                }
            }
        }
    }
    podspec::default_template(spec);
}

fn non_negative(spec: &Value, path: &str, field: &str, errs: &mut Vec<FieldError>) {
    if let Some(v) = spec.get(field)
        && v.as_i64().is_some_and(|n| n < 0)
    {
        errs.push(FieldError::invalid(format!("{path}.{field}"), v, "must be greater than or equal to 0"));
    }
}

/// Upstream `validateJobSpec` (what a Job and a CronJob's jobTemplate share); `path` is the
/// spec's field path.
pub fn validate_job_spec(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for f in ["parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished", "backoffLimitPerIndex", "maxFailedIndexes"] {
        non_negative(spec, path, f, &mut errs);
    }
    if let Some(v) = spec.get("maxFailedIndexes").filter(|v| !v.is_null())
        && spec.get("backoffLimitPerIndex").is_none_or(Value::is_null)
    {
        let _ = v;
        errs.push(FieldError::required(format!("{path}.backoffLimitPerIndex"), "when maxFailedIndexes is specified"));
    }
    let mode = spec.get("completionMode").and_then(Value::as_str);
    if let Some(m) = mode {
        if m != "NonIndexed" && m != "Indexed" {
            errs.push(FieldError::not_supported(format!("{path}.completionMode"), m, &["NonIndexed", "Indexed"]));
        }
        if m == "Indexed" {
            if spec.get("completions").is_none_or(Value::is_null) {
                errs.push(FieldError::required(format!("{path}.completions"), "when completion mode is Indexed"));
            }
            if let Some(p) = spec.get("parallelism")
                && p.as_i64().is_some_and(|p| p > MAX_PARALLELISM_INDEXED)
            {
                errs.push(FieldError::invalid(
                    format!("{path}.parallelism"),
                    p,
                    &format!("must be less than or equal to {MAX_PARALLELISM_INDEXED} when completion mode is Indexed"),
                ));
            }
        }
    }
    if mode != Some("Indexed") {
        for f in ["backoffLimitPerIndex", "maxFailedIndexes"] {
            if let Some(v) = spec.get(f).filter(|v| !v.is_null()) {
                errs.push(FieldError::invalid(format!("{path}.{f}"), v, "requires indexed completion mode"));
            }
        }
    }
    let has_pfp = spec.get("podFailurePolicy").is_some_and(|p| !p.is_null());
    if has_pfp {
        errs.extend(validate_pod_failure_policy(spec, &format!("{path}.podFailurePolicy")));
    }
    if let Some(r) = spec.get("podReplacementPolicy").and_then(Value::as_str) {
        if has_pfp && r != "Failed" {
            errs.push(FieldError::not_supported(format!("{path}.podReplacementPolicy"), r, &["Failed"]));
        } else if !has_pfp && r != "Failed" && r != "TerminatingOrFailed" {
            errs.push(FieldError::not_supported(format!("{path}.podReplacementPolicy"), r, &["Failed", "TerminatingOrFailed"]));
        }
    }
    errs.extend(podspec::validate_pod_spec(spec.pointer("/template/spec"), &format!("{path}.template.spec")));
    let rp_path = format!("{path}.template.spec.restartPolicy");
    match spec.pointer("/template/spec/restartPolicy").and_then(Value::as_str).unwrap_or("") {
        "" | "Always" => errs.push(FieldError::required(rp_path, "valid values: \"OnFailure\", \"Never\"")),
        "OnFailure" if has_pfp => {
            errs.push(FieldError::invalid(rp_path, &json!("OnFailure"), "only \"Never\" is supported when podFailurePolicy is specified"));
        }
        "OnFailure" | "Never" => {}
        other => errs.push(FieldError::not_supported(rp_path, other, &["OnFailure", "Never"])),
    }
    errs
}

fn validate_pod_failure_policy(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let containers: Vec<&str> = ["/template/spec/containers", "/template/spec/initContainers"]
        .iter()
        .filter_map(|p| spec.pointer(p).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let rules = spec.pointer("/podFailurePolicy/rules").and_then(Value::as_array).cloned().unwrap_or_default();
    if rules.len() > 20 {
        errs.push(FieldError {
            reason: "FieldValueTooMany",
            field: format!("{path}.rules"),
            detail: format!("Too many: {}: must have at most 20 items", rules.len()),
        });
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = format!("{path}.rules[{i}]");
        match rule.get("action").and_then(Value::as_str).unwrap_or("") {
            "" => errs.push(FieldError::required(format!("{rp}.action"), "valid values: [\"Count\" \"FailIndex\" \"FailJob\" \"Ignore\"]")),
            "FailIndex" if spec.get("backoffLimitPerIndex").is_none_or(Value::is_null) => {
                errs.push(FieldError::invalid(format!("{rp}.action"), &json!("FailIndex"), "requires the backoffLimitPerIndex to be set"));
            }
            a if !ACTIONS.contains(&a) => errs.push(FieldError::not_supported(format!("{rp}.action"), a, ACTIONS)),
            _ => {}
        }
        let on_exit = rule.get("onExitCodes").filter(|v| !v.is_null());
        let on_conds = rule.get("onPodConditions").and_then(Value::as_array).filter(|a| !a.is_empty());
        if let Some(oe) = on_exit {
            let ep = format!("{rp}.onExitCodes");
            if let Some(name) = oe.get("containerName").and_then(Value::as_str)
                && !containers.contains(&name)
            {
                errs.push(FieldError::invalid(
                    format!("{ep}.containerName"),
                    &json!(name),
                    "must be one of the container or initContainer names in the pod template",
                ));
            }
            match oe.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" | "NotIn" => {}
                "" => errs.push(FieldError::required(format!("{ep}.operator"), "valid values: [\"In\" \"NotIn\"]")),
                o => errs.push(FieldError::not_supported(format!("{ep}.operator"), o, &["In", "NotIn"])),
            }
            let values = oe.get("values").and_then(Value::as_array).cloned().unwrap_or_default();
            if values.is_empty() {
                errs.push(FieldError::required(format!("{ep}.values"), "at least one value is required"));
            }
            let op = oe.get("operator").and_then(Value::as_str).unwrap_or("");
            let mut prev: Option<i64> = None;
            for (j, v) in values.iter().enumerate() {
                let n = v.as_i64().unwrap_or(0);
                if op == "In" && n == 0 {
                    errs.push(FieldError::invalid(format!("{ep}.values[{j}]"), v, "must not be 0 for the In operator"));
                }
                if let Some(p) = prev {
                    if p == n {
                        errs.push(FieldError::duplicate(format!("{ep}.values[{j}]"), v));
                    } else if p > n {
                        errs.push(FieldError::invalid(format!("{ep}.values[{j}]"), v, "must be ordered"));
                    }
                }
                prev = Some(n);
            }
        }
        if let Some(conds) = on_conds {
            for (j, c) in conds.iter().enumerate() {
                let st = c.get("status").and_then(Value::as_str).unwrap_or("");
                if !["True", "False", "Unknown"].contains(&st) {
                    errs.push(FieldError::not_supported(format!("{rp}.onPodConditions[{j}].status"), st, &["False", "True", "Unknown"]));
                }
            }
        }
        if on_exit.is_some() && on_conds.is_some() {
            errs.push(FieldError { reason: "FieldValueInvalid", field: rp.clone(), detail: "Invalid value: specifying both OnExitCodes and OnPodConditions is not supported".into() });
        }
        if on_exit.is_none() && on_conds.is_none() {
            errs.push(FieldError { reason: "FieldValueInvalid", field: rp.clone(), detail: "Invalid value: specifying one of OnExitCodes and OnPodConditions is required".into() });
        }
    }
    errs
}

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
        default_job_spec(spec);
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
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let mut errs = validate_generated_selector(obj);
        errs.extend(validate_job_spec(spec, "spec"));
        match spec.get("selector").filter(|s| !s.is_null()) {
            None => errs.push(FieldError::required("spec.selector", "")),
            Some(sel) => match kaji_api::selector::LabelSelector::from_object(sel) {
                Err(e) => errs.push(FieldError::invalid("spec.selector", sel, &e)),
                Ok(s) => {
                    if !s.matches_object(spec.get("template").unwrap_or(&null)) {
                        errs.push(FieldError::invalid(
                            "spec.template.metadata.labels",
                            spec.pointer("/template/metadata/labels").unwrap_or(&null),
                            "`selector` does not match template `labels`",
                        ));
                    }
                }
            },
        }
        // An Indexed pod's hostname is `<job>-<index>`: it must be a DNS label.
        if spec.get("completionMode").and_then(Value::as_str) == Some("Indexed")
            && let Some(c) = spec.get("completions").and_then(Value::as_i64).filter(|c| *c > 0)
        {
            let name = str_at(obj, "/metadata/name").unwrap_or_default();
            let host = format!("{name}-{}", c - 1);
            if !kaji_api::validation::dns1123_label(&host).is_empty() {
                errs.push(FieldError::invalid(
                    "metadata.name",
                    &json!(name),
                    &format!("will not able to create pod with invalid DNS label: {host}"),
                ));
            }
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        errs.extend(immutable(new, old, "/spec/selector", "spec.selector"));
        errs.extend(immutable(new, old, "/spec/completions", "spec.completions"));
        errs.extend(immutable(new, old, "/spec/completionMode", "spec.completionMode"));
        errs.extend(immutable(new, old, "/spec/podFailurePolicy", "spec.podFailurePolicy"));
        // A suspended Job that never started may change its scheduling directives (upstream
        // AllowMutableSchedulingDirectives); anything else in the template is immutable.
        let never_started = old.pointer("/status/startTime").is_none_or(Value::is_null);
        let suspended = new.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
        if never_started && suspended {
            let strip = |v: &Value| {
                let mut t = v.pointer("/spec/template").cloned().unwrap_or(Value::Null);
                if let Some(s) = t.get_mut("spec").and_then(Value::as_object_mut) {
                    for f in ["nodeSelector", "affinity", "tolerations", "schedulingGates"] {
                        s.remove(f);
                    }
                }
                if let Some(m) = t.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("labels");
                    m.remove("annotations");
                }
                t
            };
            if strip(new) != strip(old) {
                errs.push(FieldError::invalid("spec.template", new.pointer("/spec/template").unwrap_or(&Value::Null), "field is immutable"));
            }
        } else {
            errs.extend(immutable(new, old, "/spec/template", "spec.template"));
        }
        errs
    }
}

/// Upstream `validateGeneratedSelector`: unless `manualSelector`, the template carries the
/// generated labels and the selector matches them.
fn validate_generated_selector(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return errs;
    }
    let Some(sel) = obj.pointer("/spec/selector").filter(|s| !s.is_null()) else { return errs };
    let uid = str_at(obj, "/metadata/uid").unwrap_or_default();
    let name = str_at(obj, "/metadata/name").unwrap_or_default();
    if uid.is_empty() {
        errs.push(FieldError::required("metadata.uid", ""));
    }
    let labels = obj.pointer("/spec/template/metadata/labels");
    let mut expected = serde_json::Map::new();
    for (k, v) in [("controller-uid", uid), ("job-name", name), ("batch.kubernetes.io/controller-uid", uid), ("batch.kubernetes.io/job-name", name)] {
        let has = labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        match has {
            None => errs.push(FieldError::required(format!("spec.template.metadata.labels[{k}]"), &format!("must be '{v}'"))),
            Some(h) if h != v => errs.push(FieldError::invalid(format!("spec.template.metadata.labels[{k}]"), &json!(h), &format!("must be '{v}'"))),
            _ => {}
        }
        expected.insert(k.into(), json!(v));
    }
    if let Ok(s) = kaji_api::selector::LabelSelector::from_object(sel)
        && !s.matches_object(&json!({"metadata": {"labels": expected}}))
    {
        errs.push(FieldError::invalid("spec.selector", sel, "`selector` not auto-generated"));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(spec: Value) -> Value {
        let mut j = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "uid": "u1"}, "spec": spec});
        JobStrategy.default(&mut j);
        JobStrategy.prepare_for_create(&mut j);
        j
    }

    fn template() -> Value {
        json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}})
    }

    #[test]
    fn defaults_and_generated_selector() {
        let j = job(json!({"template": template()}));
        assert_eq!(j["spec"]["completions"], 1);
        assert_eq!(j["spec"]["parallelism"], 1);
        assert_eq!(j["spec"]["backoffLimit"], 6);
        assert_eq!(j["spec"]["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"], "u1");
        assert_eq!(j["spec"]["template"]["metadata"]["labels"]["job-name"], "pi");
        assert_eq!(JobStrategy.validate(&j), vec![]);
        let p = job(json!({"parallelism": 3, "template": template()}));
        assert!(p["spec"].get("completions").is_none(), "only parallelism: completions stay unset");
    }

    #[test]
    fn negative_counts_and_restart_policy_are_refused() {
        let j = job(json!({"completions": -1, "parallelism": -2, "template": template()}));
        let errs = JobStrategy.validate(&j);
        let fields: Vec<(&str, &str)> = errs.iter().map(|e| (e.field.as_str(), e.detail.as_str())).collect();
        assert!(fields.contains(&("spec.completions", "Invalid value: -1: must be greater than or equal to 0")), "{fields:?}");
        assert!(fields.contains(&("spec.parallelism", "Invalid value: -2: must be greater than or equal to 0")), "{fields:?}");
        let mut t = template();
        t["spec"]["restartPolicy"] = json!("Always");
        let errs = JobStrategy.validate(&job(json!({"template": t})));
        assert!(errs.iter().any(|e| e.field == "spec.template.spec.restartPolicy"
            && e.detail == "Required value: valid values: \"OnFailure\", \"Never\""), "{errs:?}");
    }

    #[test]
    fn indexed_needs_completions_and_manual_selector_must_match() {
        let errs = JobStrategy.validate(&job(json!({"completionMode": "Indexed", "parallelism": 2, "template": template()})));
        assert!(errs.iter().any(|e| e.field == "spec.completions"), "{errs:?}");
        let j = job(json!({"selector": {"matchLabels": {"app": "x"}}, "template": template()}));
        let errs = JobStrategy.validate(&j);
        assert!(errs.iter().any(|e| e.field == "spec.selector" && e.detail.ends_with("`selector` not auto-generated")), "{errs:?}");
    }
}
