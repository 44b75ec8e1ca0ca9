//! CronJobs: upstream defaults (Allow, history limits 3 and 1) and schedule validation.

use crate::registry::{Strategy, default_key, info, podspec, str_at};
use kaji_api::{FieldError, ResourceInfo};
use serde_json::{Value, json};

pub struct CronJobStrategy;

static INFO: ResourceInfo = ResourceInfo { categories: &["all"], ..info("batch", "v1", "CronJob", "cronjobs", "cronjob", true, &["cj"], &["status"]) };

const POLICIES: &[&str] = &["Allow", "Forbid", "Replace"];

/// A standard 5-field cron expression or one of the @-macros.
fn valid_schedule(s: &str) -> bool {
    let s = s.trim();
    let s = match s.strip_prefix("TZ=").or_else(|| s.strip_prefix("CRON_TZ=")) {
        Some(rest) => rest.split_once(' ').map_or("", |(_, r)| r.trim()),
        None => s,
    };
    if let Some(m) = s.strip_prefix('@') {
        return ["yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly"].contains(&m) || m.starts_with("every ");
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    fields.len() == 5
        && fields.iter().all(|f| f.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | '/' | ',' | '-' | '?')))
}

impl Strategy for CronJobStrategy {
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
        let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else { return };
        default_key(spec, "concurrencyPolicy", json!("Allow"));
        default_key(spec, "suspend", json!(false));
        default_key(spec, "successfulJobsHistoryLimit", json!(3));
        default_key(spec, "failedJobsHistoryLimit", json!(1));
        if let Some(jt) = spec.get_mut("jobTemplate").and_then(|j| j.get_mut("spec")) {
            default_key(jt, "backoffLimit", json!(6));
            default_key(jt, "completionMode", json!("NonIndexed"));
            default_key(jt, "suspend", json!(false));
            podspec::default_template(jt);
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        match str_at(obj, "/spec/schedule") {
            None | Some("") => errs.push(FieldError::required("spec.schedule", "")),
            Some(s) if !valid_schedule(s) => errs.push(FieldError::invalid("spec.schedule", &json!(s), "unparseable schedule")),
            _ => {}
        }
        if let Some(p) = str_at(obj, "/spec/concurrencyPolicy")
            && !POLICIES.contains(&p)
        {
            errs.push(FieldError::not_supported("spec.concurrencyPolicy", p, POLICIES));
        }
        errs.extend(podspec::validate_pod_spec(obj.pointer("/spec/jobTemplate/spec/template/spec"), "spec.jobTemplate.spec.template.spec"));
        let rp = str_at(obj, "/spec/jobTemplate/spec/template/spec/restartPolicy").unwrap_or("Always");
        if rp != "OnFailure" && rp != "Never" {
            errs.push(FieldError::not_supported("spec.jobTemplate.spec.template.spec.restartPolicy", rp, &["OnFailure", "Never"]));
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn schedules() {
        assert!(super::valid_schedule("*/1 * * * *"));
        assert!(super::valid_schedule("@hourly"));
        assert!(!super::valid_schedule("every minute"));
    }
}
