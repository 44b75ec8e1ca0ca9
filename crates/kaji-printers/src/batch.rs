//! batch/v1: Job, CronJob.

use jiff::Timestamp;
use serde_json::Value;

use crate::Column;
use crate::docs;
use crate::duration::{human_duration, parse_time};
use crate::selectors::format_label_selector;
use crate::value::{
    age, arr_at, container_cells, get, int_at, is_deleting, opt_bool, opt_int, opt_str, str_at,
};

pub(crate) fn columns(kind: &str) -> Option<&'static [Column]> {
    Some(match kind {
        "Job" => JOB,
        "CronJob" => CRON_JOB,
        _ => return None,
    })
}

pub(crate) fn row(kind: &str, obj: &Value, now: Timestamp) -> Option<Vec<Value>> {
    Some(match kind {
        "Job" => job(obj, now),
        "CronJob" => cron_job(obj, now),
        _ => return None,
    })
}

const JOB: &[Column] = &[
    Column::NAME,
    Column::new("Status", "string", "Status of the job."),
    Column::new("Completions", "string", docs::JOB_STATUS_SUCCEEDED),
    Column::new("Duration", "string", "Time required to complete the job."),
    Column::AGE,
    Column::CONTAINERS,
    Column::IMAGES,
    Column::wide("Selector", "string", docs::JOB_SPEC_SELECTOR),
];

fn job(obj: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = int_at(obj, &["status", "succeeded"]);
    let completions = match opt_int(obj, &["spec", "completions"]) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match opt_int(obj, &["spec", "parallelism"]).unwrap_or(0) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        parse_time(get(obj, &["status", "startTime"])),
        parse_time(get(obj, &["status", "completionTime"])),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.duration_since(start)),
        (Some(start), Some(end)) => human_duration(end.duration_since(start)),
    };
    let conditions = arr_at(obj, &["status", "conditions"]);
    let status = if condition_is_true(conditions, "Complete") {
        "Complete"
    } else if condition_is_true(conditions, "Failed") {
        "Failed"
    } else if is_deleting(obj) {
        "Terminating"
    } else if condition_is_true(conditions, "Suspended") {
        "Suspended"
    } else if condition_is_true(conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = container_cells(arr_at(obj, &["spec", "template", "spec", "containers"]));
    vec![
        crate::value::name(obj),
        status.into(),
        completions.into(),
        duration.into(),
        age(obj, now),
        names,
        images,
        format_label_selector(get(obj, &["spec", "selector"])).into(),
    ]
}

/// The first condition of this type decides.
fn condition_is_true(conditions: &[Value], type_: &str) -> bool {
    conditions
        .iter()
        .find(|c| str_at(c, &["type"]) == type_)
        .is_some_and(|c| str_at(c, &["status"]) == "True")
}

const CRON_JOB: &[Column] = &[
    Column::NAME,
    Column::new("Schedule", "string", docs::CRONJOB_SPEC_SCHEDULE),
    Column::new("Timezone", "string", docs::CRONJOB_SPEC_TIME_ZONE),
    Column::new("Suspend", "boolean", docs::CRONJOB_SPEC_SUSPEND),
    Column::new("Active", "integer", docs::CRONJOB_STATUS_ACTIVE),
    Column::new(
        "Last Schedule",
        "string",
        docs::CRONJOB_STATUS_LAST_SCHEDULE,
    ),
    Column::AGE,
    Column::CONTAINERS,
    Column::IMAGES,
    Column::wide("Selector", "string", docs::JOB_SPEC_SELECTOR),
];

fn cron_job(obj: &Value, now: Timestamp) -> Vec<Value> {
    let last_schedule = if crate::value::is_set(obj, &["status", "lastScheduleTime"]) {
        crate::duration::translate_timestamp_since(get(obj, &["status", "lastScheduleTime"]), now)
    } else {
        "<none>".to_owned()
    };
    // `suspend` defaults to false upstream, so it always prints as True or False.
    let suspend = if opt_bool(obj, &["spec", "suspend"]).unwrap_or(false) {
        "True"
    } else {
        "False"
    };
    let job_spec = get(obj, &["spec", "jobTemplate", "spec"]).unwrap_or(&Value::Null);
    let (names, images) = container_cells(arr_at(job_spec, &["template", "spec", "containers"]));
    vec![
        crate::value::name(obj),
        str_at(obj, &["spec", "schedule"]).into(),
        opt_str(obj, &["spec", "timeZone"])
            .unwrap_or("<none>")
            .into(),
        suspend.into(),
        crate::value::len_at(obj, &["status", "active"]).into(),
        last_schedule.into(),
        age(obj, now),
        names,
        images,
        format_label_selector(get(job_spec, &["selector"])).into(),
    ]
}

#[cfg(test)]
mod tests {
    use crate::testutil::{cells, headers};
    use serde_json::json;

    #[test]
    fn job() {
        assert_eq!(
            headers("batch", "Job"),
            [
                "Name",
                "Status",
                "Completions",
                "Duration",
                "Age",
                "Containers*",
                "Images*",
                "Selector*"
            ]
        );
        let done = json!({"metadata": {"name": "pi", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"completions": 1, "parallelism": 1,
                     "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}},
                     "template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}]}}},
            "status": {"succeeded": 1, "startTime": "2024-05-01T11:00:05Z", "completionTime": "2024-05-01T11:03:25Z",
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}});
        assert_eq!(
            cells("batch", "Job", &done),
            [
                json!("pi"),
                json!("Complete"),
                json!("1/1"),
                json!("3m20s"),
                json!("60m"),
                json!("pi"),
                json!("perl:5.34"),
                json!("batch.kubernetes.io/controller-uid=abc")
            ]
        );
        let running = json!({"spec": {"parallelism": 3}, "status": {"succeeded": 1, "startTime": "2024-05-01T11:59:50Z"}});
        assert_eq!(
            cells("batch", "Job", &running)[1..4],
            [json!("Running"), json!("1/1 of 3"), json!("10s")]
        );
        let failed = json!({"spec": {"completions": 5}, "status": {"conditions": [{"type": "Failed", "status": "True"}]}});
        assert_eq!(
            cells("batch", "Job", &failed)[1..4],
            [json!("Failed"), json!("0/5"), json!("")]
        );
        let suspended =
            json!({"status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
        assert_eq!(
            cells("batch", "Job", &suspended)[1..3],
            [json!("Suspended"), json!("0/1")]
        );
        let deleting = json!({"metadata": {"deletionTimestamp": "2024-05-01T12:00:00Z"},
            "status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
        assert_eq!(cells("batch", "Job", &deleting)[1], json!("Terminating"));
        let failing =
            json!({"status": {"conditions": [{"type": "FailureTarget", "status": "True"}]}});
        assert_eq!(cells("batch", "Job", &failing)[1], json!("FailureTarget"));
    }

    #[test]
    fn cron_job() {
        assert_eq!(
            headers("batch", "CronJob"),
            [
                "Name",
                "Schedule",
                "Timezone",
                "Suspend",
                "Active",
                "Last Schedule",
                "Age",
                "Containers*",
                "Images*",
                "Selector*"
            ]
        );
        let cj = json!({"metadata": {"name": "hello", "creationTimestamp": "2024-04-28T12:00:00Z"},
            "spec": {"schedule": "*/5 * * * *", "timeZone": "Etc/UTC", "suspend": false,
                     "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "hello", "image": "busybox:1.36"}]}}}}},
            "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": "2024-05-01T11:55:00Z"}});
        assert_eq!(
            cells("batch", "CronJob", &cj),
            [
                json!("hello"),
                json!("*/5 * * * *"),
                json!("Etc/UTC"),
                json!("False"),
                json!(1),
                json!("5m"),
                json!("3d"),
                json!("hello"),
                json!("busybox:1.36"),
                json!("<none>")
            ]
        );
        let never = json!({"spec": {"schedule": "@daily", "suspend": true}});
        assert_eq!(
            cells("batch", "CronJob", &never)[1..6],
            [
                json!("@daily"),
                json!("<none>"),
                json!("True"),
                json!(0),
                json!("<none>")
            ]
        );
    }
}
