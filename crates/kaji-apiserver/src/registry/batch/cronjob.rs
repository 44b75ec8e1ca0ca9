//! CronJobs: upstream defaults (concurrencyPolicy Allow, suspend false, history limits 3 and
//! 1, the jobTemplate's Job defaults) and validation as pkg/apis/batch/validation (the
//! schedule with robfig/cron's messages, no TZ= in a new schedule, an existing IANA
//! `timeZone`, non-negative deadlines and limits, the jobTemplate as a Job spec without a
//! selector).
//!
//! Served as batch/v1 (stored) and batch/v1beta1 (converted on the way in and out; upstream
//! removed it in 1.25, Kaji keeps it so that older manifests apply) with upstream's
//! deprecation warning.

use super::job::{default_job_spec, validate_job_spec};
use crate::registry::{Strategy, default_key, info, str_at};
use kaji_api::{FieldError, ResourceInfo};
use serde_json::{Value, json};

pub struct CronJobStrategy;
pub struct CronJobV1beta1Strategy;

static INFO: ResourceInfo = ResourceInfo { categories: &["all"], ..info("batch", "v1", "CronJob", "cronjobs", "cronjob", true, &["cj"], &["status"]) };
static INFO_V1BETA1: ResourceInfo =
    ResourceInfo { categories: &["all"], ..info("batch", "v1beta1", "CronJob", "cronjobs", "cronjob", true, &["cj"], &["status"]) };

/// What upstream's API server said for batch/v1beta1 CronJobs (1.21-1.24).
pub const V1BETA1_DEPRECATION: &str = "batch/v1beta1 CronJob is deprecated in v1.21+, unavailable in v1.25+; use batch/v1 CronJob";

const POLICIES: &[&str] = &["Allow", "Forbid", "Replace"];

fn default_cronjob(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else { return };
    default_key(spec, "concurrencyPolicy", json!("Allow"));
    default_key(spec, "suspend", json!(false));
    default_key(spec, "successfulJobsHistoryLimit", json!(3));
    default_key(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(jt) = spec.get_mut("jobTemplate").and_then(|j| j.get_mut("spec")).filter(|s| s.is_object()) {
        default_job_spec(jt);
    }
}

/// Upstream `validateTimeZone`.
fn validate_time_zone(tz: &Value, errs: &mut Vec<FieldError>) {
    let Some(name) = tz.as_str() else { return };
    let path = "spec.timeZone";
    if name.is_empty() {
        errs.push(FieldError::invalid(path, tz, "timeZone must be nil or non-empty string"));
        return;
    }
    let valid_part = |p: &str| {
        !p.is_empty()
            && p.len() <= 14
            && p != "."
            && p != ".."
            && !p.starts_with('-')
            && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
    };
    if !name.split('/').all(valid_part) {
        errs.push(FieldError::invalid(path, tz, &format!("unknown time zone {name}")));
        return;
    }
    if name.eq_ignore_ascii_case("Local") {
        errs.push(FieldError::invalid(path, tz, "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"));
    }
    if name != "UTC" && jiff::tz::db().get(name).is_err() {
        errs.push(FieldError::invalid(path, tz, &format!("unknown time zone {name}")));
    }
}

/// Upstream `validateCronJobSpec` (old: the stored object on update).
fn validate_cronjob(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let null = Value::Null;
    let spec = obj.get("spec").unwrap_or(&null);
    let tz = spec.get("timeZone").filter(|t| !t.is_null());
    match str_at(obj, "/spec/schedule") {
        None | Some("") => errs.push(FieldError::required("spec.schedule", "")),
        Some(s) => {
            if let Err(e) = super::cron::parse_standard(s) {
                errs.push(FieldError::invalid("spec.schedule", &json!(s), &e));
            }
            let allow_tz = old.and_then(|o| str_at(o, "/spec/schedule")).is_some_and(|o| o.contains("TZ"));
            if allow_tz && s.contains("TZ") && tz.is_some() {
                errs.push(FieldError::invalid("spec.schedule", &json!(s), "cannot use both timeZone field and TZ or CRON_TZ in schedule"));
            } else if !allow_tz && s.contains("TZ") {
                errs.push(FieldError::invalid("spec.schedule", &json!(s), "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"));
            }
        }
    }
    for f in ["startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        if let Some(v) = spec.get(f)
            && v.as_i64().is_some_and(|n| n < 0)
        {
            errs.push(FieldError::invalid(format!("spec.{f}"), v, "must be greater than or equal to 0"));
        }
    }
    let old_tz = old.and_then(|o| o.pointer("/spec/timeZone")).filter(|t| !t.is_null());
    if let Some(tz) = tz
        && old_tz != Some(tz)
    {
        validate_time_zone(tz, &mut errs);
    }
    match str_at(obj, "/spec/concurrencyPolicy") {
        Some("") => errs.push(FieldError::required("spec.concurrencyPolicy", "")),
        Some(p) if !POLICIES.contains(&p) => errs.push(FieldError::not_supported("spec.concurrencyPolicy", p, POLICIES)),
        _ => {}
    }
    let jt = spec.pointer("/jobTemplate/spec").unwrap_or(&null);
    errs.extend(validate_job_spec(jt, "spec.jobTemplate.spec"));
    if let Some(sel) = jt.get("selector").filter(|s| !s.is_null()) {
        errs.push(FieldError::invalid("spec.jobTemplate.spec.selector", sel, "`selector` will be auto-generated"));
    }
    if jt.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        errs.push(FieldError::not_supported("spec.jobTemplate.spec.manualSelector", "true", &["nil", "false"]));
    }
    // The Job names `<name>-<minutes>` must stay within 63 characters (upstream: 52 for the
    // CronJob's name).
    if let Some(name) = str_at(obj, "/metadata/name")
        && name.len() > 52
    {
        errs.push(FieldError::invalid("metadata.name", &json!(name), "must be no more than 52 characters"));
    }
    errs
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
        default_cronjob(obj);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_cronjob(obj, None)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        validate_cronjob(new, Some(old))
    }
}

/// batch/v1beta1: the same object as batch/v1 (the versions differ in nothing Kaji stores).
impl Strategy for CronJobV1beta1Strategy {
    fn info(&self) -> &ResourceInfo {
        &INFO_V1BETA1
    }
    fn has_status(&self) -> bool {
        true
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn default(&self, obj: &mut Value) {
        default_cronjob(obj);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_cronjob(obj, None)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        validate_cronjob(new, Some(old))
    }
    fn storage_info(&self) -> Option<&'static ResourceInfo> {
        Some(&INFO)
    }
    fn convert_to_storage(&self, mut obj: Value) -> Value {
        obj["apiVersion"] = json!("batch/v1");
        obj
    }
    fn convert_from_storage(&self, mut obj: Value) -> Value {
        obj["apiVersion"] = json!("batch/v1beta1");
        obj
    }
    fn deprecation_warning(&self) -> Option<&'static str> {
        Some(V1BETA1_DEPRECATION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cj(schedule: &str) -> Value {
        let mut o = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"}, "spec": {"schedule": schedule,
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}});
        CronJobStrategy.default(&mut o);
        o
    }

    #[test]
    fn schedules_are_validated_as_upstream() {
        assert_eq!(CronJobStrategy.validate(&cj("*/1 * * * *")), vec![]);
        assert_eq!(CronJobStrategy.validate(&cj("@hourly")), vec![]);
        let errs = CronJobStrategy.validate(&cj("99 * * * *"));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec.schedule");
        assert_eq!(errs[0].detail, "Invalid value: \"99 * * * *\": end of range (99) above maximum (59): 99");
        let errs = CronJobStrategy.validate(&cj("TZ=UTC * * * * *"));
        assert!(errs.iter().any(|e| e.detail.ends_with("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")), "{errs:?}");
    }

    #[test]
    fn time_zones_must_exist() {
        let mut o = cj("0 9 * * *");
        o["spec"]["timeZone"] = json!("Asia/Tokyo");
        assert_eq!(CronJobStrategy.validate(&o), vec![]);
        o["spec"]["timeZone"] = json!("Europe/Pariss");
        let errs = CronJobStrategy.validate(&o);
        assert_eq!(errs[0].detail, "Invalid value: \"Europe/Pariss\": unknown time zone Europe/Pariss");
    }

    #[test]
    fn v1beta1_converts_both_ways() {
        let o = json!({"apiVersion": "batch/v1beta1", "kind": "CronJob", "spec": {"schedule": "* * * * *"}});
        let stored = CronJobV1beta1Strategy.convert_to_storage(o.clone());
        assert_eq!(stored["apiVersion"], "batch/v1");
        assert_eq!(CronJobV1beta1Strategy.convert_from_storage(stored), o);
    }
}
