//! End-to-end tests of Jobs and CronJobs with stock kubectl: the Job, CronJob and
//! TTL-after-finished controllers, the API server's batch defaults and validation, batch/v1beta1
//! CronJobs, kubectl's columns and `kubectl create job --from=cronjob/...`.
//!
//! Most tests run on hollow nodes (`--hollow-nodes`), whose containers "exit" as the pod's
//! `kaji.io/hollow-exit-code` / `kaji.io/hollow-run-seconds` annotations say; the seed test runs
//! seed 003's Job and CronJob (batch/v1beta1, as the seed wrote it) with real containers.

mod support;

use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{Cluster, KUBECTL_NEW, wait_for};

/// A Job whose hollow containers exit with `code` after `run` seconds.
fn hollow_job(name: &str, spec_extra: &str, code: i32, run: f64) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
{spec_extra}
  template:
    metadata:
      annotations:
        kaji.io/hollow-exit-code: "{code}"
        kaji.io/hollow-run-seconds: "{run}"
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox:latest
        command: ["sh", "-c", "exit {code}"]
"#
    )
}

fn job(c: &Cluster, name: &str) -> Value {
    c.json(&["get", "job", name])
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

fn wait_condition(c: &Cluster, name: &str, type_: &str, timeout: Duration) -> Value {
    wait_for(&format!("job {name} {type_}"), timeout, || {
        let j = job(c, name);
        condition(&j, type_).is_some().then_some(j)
    })
}

/// Event reasons (with messages) about an object.
fn events(c: &Cluster, name: &str) -> Vec<(String, String)> {
    let list = c.json(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={name}"),
    ]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_string(),
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn pods_of(c: &Cluster, job: &str) -> Vec<Value> {
    let list = c.json(&[
        "get",
        "pods",
        "-l",
        &format!("batch.kubernetes.io/job-name={job}"),
    ]);
    list["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn completions_5_parallelism_2_completes_on_hollow_nodes() {
    let c = Cluster::start_with("jobs-complete", &["--hollow-nodes", "2"]);
    c.apply(
        KUBECTL_NEW,
        &hollow_job("five", "  completions: 5\n  parallelism: 2", 0, 1.0),
    );
    let mut most_active = 0;
    let j = wait_for("job five Complete", Duration::from_secs(60), || {
        let j = job(&c, "five");
        most_active = most_active.max(j["status"]["active"].as_i64().unwrap_or(0));
        condition(&j, "Complete").is_some().then_some(j)
    });
    assert!(
        most_active <= 2,
        "at most parallelism pods at once, saw {most_active}"
    );
    let s = &j["status"];
    assert_eq!(s["succeeded"], 5, "{s}");
    assert!(s.get("failed").is_none(), "{s}");
    assert_eq!(s["ready"], 0);
    assert_eq!(s["terminating"], 0);
    assert!(
        s["completionTime"].is_string() && s["startTime"].is_string(),
        "{s}"
    );
    assert_eq!(s["uncountedTerminatedPods"], serde_json::json!({}));
    let complete = condition(&j, "Complete").unwrap();
    assert_eq!(complete["reason"], "CompletionsReached");
    assert_eq!(
        complete["message"],
        "Reached expected number of succeeded pods"
    );
    assert!(
        condition(&j, "SuccessCriteriaMet").is_some(),
        "1.33 sets SuccessCriteriaMet first"
    );
    // The pods: labels, owner, and no finalizer left once counted.
    let pods = pods_of(&c, "five");
    assert_eq!(pods.len(), 5);
    let uid = j["metadata"]["uid"].as_str().unwrap();
    for p in &pods {
        let labels = &p["metadata"]["labels"];
        assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid);
        assert_eq!(labels["controller-uid"], uid);
        assert_eq!(labels["job-name"], "five");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Job");
        assert!(
            p["metadata"]
                .get("finalizers")
                .is_none_or(|f| f.as_array().is_some_and(Vec::is_empty)),
            "{}",
            p["metadata"]
        );
        assert_eq!(p["status"]["phase"], "Succeeded");
    }
    let ev = events(&c, "five");
    assert_eq!(
        ev.iter().filter(|(r, _)| r == "SuccessfulCreate").count(),
        5,
        "{ev:?}"
    );
    assert!(
        ev.contains(&("Completed".into(), "Job completed".into())),
        "{ev:?}"
    );
    // kubectl 1.33's columns come from the server's Table.
    let out = c.ok(&["get", "jobs"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["five", "Complete", "5/5"], "{out}");
}

#[test]
fn failing_job_stops_at_backoff_limit() {
    let c = Cluster::start_with("jobs-backoff", &["--hollow-nodes", "1"]);
    let started = Instant::now();
    c.apply(
        KUBECTL_NEW,
        &hollow_job("fails", "  backoffLimit: 1", 1, 0.0),
    );
    let j = wait_condition(&c, "fails", "Failed", Duration::from_secs(60));
    let took = started.elapsed();
    let s = &j["status"];
    assert_eq!(
        s["failed"], 2,
        "backoffLimit 1: the second failure fails the Job: {s}"
    );
    assert!(s.get("active").is_none(), "{s}");
    let failed = condition(&j, "Failed").unwrap();
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert_eq!(
        failed["message"],
        "Job has reached the specified backoff limit"
    );
    assert_eq!(
        condition(&j, "FailureTarget").unwrap()["reason"],
        "BackoffLimitExceeded"
    );
    // The second pod waited for the 10 s back-off after the first failure.
    assert!(
        took >= Duration::from_secs(10),
        "replaced after the back-off, took {took:?}"
    );
    let ev = events(&c, "fails");
    assert!(
        ev.contains(&(
            "BackoffLimitExceeded".into(),
            "Job has reached the specified backoff limit".into()
        )),
        "{ev:?}"
    );
    assert_eq!(pods_of(&c, "fails").len(), 2, "no pod after the limit");
    let out = c.ok(&["get", "job", "fails"]);
    assert!(
        out.lines().nth(1).unwrap().split_whitespace().nth(1) == Some("Failed"),
        "{out}"
    );
}

#[test]
fn indexed_jobs_and_pod_failure_policy() {
    let c = Cluster::start_with("jobs-indexed", &["--hollow-nodes", "2"]);
    c.apply(
        KUBECTL_NEW,
        &hollow_job(
            "ix",
            "  completions: 3\n  parallelism: 3\n  completionMode: Indexed",
            0,
            0.5,
        ),
    );
    let j = wait_condition(&c, "ix", "Complete", Duration::from_secs(60));
    assert_eq!(j["status"]["completedIndexes"], "0-2");
    assert_eq!(j["status"]["succeeded"], 3);
    let mut indexes: Vec<String> = Vec::new();
    for p in pods_of(&c, "ix") {
        let ix = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"],
            ix.as_str()
        );
        assert_eq!(p["spec"]["hostname"], format!("ix-{ix}"));
        assert!(
            p["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("ix-{ix}-"))
        );
        let env = &p["spec"]["containers"][0]["env"][0];
        assert_eq!(env["name"], "JOB_COMPLETION_INDEX");
        assert_eq!(
            env["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
        indexes.push(ix);
    }
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);

    // A FailJob rule fails the Job at the first matching exit code, whatever the backoffLimit.
    let pfp = "  backoffLimit: 6\n  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes:\n        containerName: main\n        operator: In\n        values: [42]";
    c.apply(KUBECTL_NEW, &hollow_job("pfp", pfp, 42, 0.0));
    let j = wait_condition(&c, "pfp", "Failed", Duration::from_secs(30));
    assert_eq!(
        j["spec"]["podReplacementPolicy"], "Failed",
        "defaulted by the podFailurePolicy"
    );
    let failed = condition(&j, "Failed").unwrap();
    assert_eq!(failed["reason"], "PodFailurePolicy");
    let msg = failed["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Container main for pod default/pfp-")
            && msg.ends_with("failed with exit code 42 matching FailJob rule at index 0"),
        "{msg}"
    );
    assert_eq!(j["status"]["failed"], 1);
}

#[test]
fn suspend_deadline_and_ttl_after_finished() {
    let c = Cluster::start_with("jobs-suspend", &["--hollow-nodes", "1"]);
    // Created suspended: no pod, no startTime, the Suspended condition.
    c.apply(
        KUBECTL_NEW,
        &hollow_job(
            "sus",
            "  suspend: true\n  parallelism: 2\n  completions: 2",
            0,
            30.0,
        ),
    );
    let j = wait_condition(&c, "sus", "Suspended", Duration::from_secs(20));
    assert!(j["status"].get("startTime").is_none(), "{}", j["status"]);
    assert_eq!(
        condition(&j, "Suspended").unwrap()["reason"],
        "JobSuspended"
    );
    assert!(pods_of(&c, "sus").is_empty());
    assert_eq!(
        c.ok(&["get", "job", "sus", "--no-headers"])
            .split_whitespace()
            .nth(1),
        Some("Suspended")
    );
    // Resumed: pods come; suspended again: they go, not counted as failures.
    c.ok(&[
        "patch",
        "job",
        "sus",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    wait_for("two active pods", Duration::from_secs(20), || {
        (job(&c, "sus")["status"]["active"] == 2).then_some(())
    });
    c.ok(&[
        "patch",
        "job",
        "sus",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    let j = wait_for(
        "pods of the suspended job gone",
        Duration::from_secs(30),
        || {
            let j = job(&c, "sus");
            (pods_of(&c, "sus").is_empty()
                && j["status"].get("active").is_none()
                && condition(&j, "Suspended").is_some())
            .then_some(j)
        },
    );
    assert!(
        j["status"].get("failed").is_none(),
        "suspension is no failure: {}",
        j["status"]
    );
    let ev = events(&c, "sus");
    for reason in ["Suspended", "Resumed", "SuccessfulDelete"] {
        assert!(ev.iter().any(|(r, _)| r == reason), "{reason} in {ev:?}");
    }

    // activeDeadlineSeconds: the running pod is stopped and the Job fails.
    c.apply(
        KUBECTL_NEW,
        &hollow_job("late", "  activeDeadlineSeconds: 3", 0, 60.0),
    );
    let j = wait_condition(&c, "late", "Failed", Duration::from_secs(30));
    assert_eq!(
        condition(&j, "Failed").unwrap()["reason"],
        "DeadlineExceeded"
    );
    assert_eq!(
        condition(&j, "Failed").unwrap()["message"],
        "Job was active longer than specified deadline"
    );
    assert!(
        events(&c, "late")
            .iter()
            .any(|(r, _)| r == "DeadlineExceeded")
    );

    // ttlSecondsAfterFinished: the finished Job and its pods are deleted.
    c.apply(
        KUBECTL_NEW,
        &hollow_job("ttl", "  ttlSecondsAfterFinished: 2", 0, 0.0),
    );
    wait_condition(&c, "ttl", "Complete", Duration::from_secs(30));
    wait_for(
        "the Job deleted after its TTL",
        Duration::from_secs(30),
        || {
            let out = c.kubectl(&["get", "job", "ttl"]);
            (!out.status.success()).then_some(())
        },
    );
    wait_for("its pods collected", Duration::from_secs(30), || {
        pods_of(&c, "ttl").is_empty().then_some(())
    });
}

#[test]
fn bad_jobs_and_schedules_are_refused_as_upstream() {
    let c = Cluster::start("jobs-invalid");
    let err = c
        .kubectl_with(
            KUBECTL_NEW,
            &["apply", "-f", "-"],
            Some(&hollow_job(
                "neg",
                "  completions: -1\n  parallelism: -2",
                0,
                0.0,
            )),
        )
        .stderr;
    let err = String::from_utf8_lossy(&err);
    assert!(err.contains("The Job \"neg\" is invalid"), "{err}");
    assert!(
        err.contains("spec.completions: Invalid value: -1: must be greater than or equal to 0"),
        "{err}"
    );
    assert!(
        err.contains("spec.parallelism: Invalid value: -2: must be greater than or equal to 0"),
        "{err}"
    );
    let always =
        hollow_job("always", "", 0, 0.0).replace("restartPolicy: Never", "restartPolicy: Always");
    let err = String::from_utf8_lossy(
        &c.kubectl_with(KUBECTL_NEW, &["apply", "-f", "-"], Some(&always))
            .stderr,
    )
    .into_owned();
    assert!(err.contains("spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""), "{err}");
    // The template of a Job is immutable.
    c.apply(KUBECTL_NEW, &hollow_job("imm", "  suspend: true", 0, 0.0));
    let err = c.fails(&[
        "patch",
        "job",
        "imm",
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"main","image":"busybox:1"}]}}}}"#,
    ]);
    assert!(
        err.contains("spec.template: Invalid value") && err.contains("field is immutable"),
        "{err}"
    );

    let cronjob = |schedule: &str, tz: &str| {
        format!(
            "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: cj\nspec:\n  schedule: \"{schedule}\"\n{tz}  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers:\n          - name: c\n            image: busybox:latest\n"
        )
    };
    let err = String::from_utf8_lossy(
        &c.kubectl_with(
            KUBECTL_NEW,
            &["apply", "-f", "-"],
            Some(&cronjob("99 * * * *", "")),
        )
        .stderr,
    )
    .into_owned();
    assert!(
        err.contains("The CronJob \"cj\" is invalid: spec.schedule: Invalid value: \"99 * * * *\": end of range (99) above maximum (59): 99"),
        "{err}"
    );
    let err = String::from_utf8_lossy(
        &c.kubectl_with(
            KUBECTL_NEW,
            &["apply", "-f", "-"],
            Some(&cronjob("0 9 * * *", "  timeZone: Europe/Pariss\n")),
        )
        .stderr,
    )
    .into_owned();
    assert!(
        err.contains(
            "spec.timeZone: Invalid value: \"Europe/Pariss\": unknown time zone Europe/Pariss"
        ),
        "{err}"
    );
    c.apply(KUBECTL_NEW, &cronjob("@hourly", "  timeZone: Asia/Tokyo\n"));
    let out = c.ok(&["get", "cronjob", "cj"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"
        ]
    );
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..6],
        ["cj", "@hourly", "Asia/Tokyo", "False", "0", "<none>"],
        "{out}"
    );
}

#[test]
fn v1beta1_cronjobs_are_served_with_a_warning_and_create_job_from_cronjob_runs() {
    let c = Cluster::start_with("jobs-v1beta1", &["--hollow-nodes", "1"]);
    let manifest = "apiVersion: batch/v1beta1\nkind: CronJob\nmetadata:\n  name: old\nspec:\n  schedule: \"*/1 * * * *\"\n  suspend: true\n  jobTemplate:\n    spec:\n      template:\n        metadata:\n          annotations:\n            kaji.io/hollow-exit-code: \"0\"\n        spec:\n          restartPolicy: Never\n          containers:\n          - name: c\n            image: busybox:latest\n";
    let out = c.kubectl_with(KUBECTL_NEW, &["apply", "-f", "-"], Some(manifest));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Warning: batch/v1beta1 CronJob is deprecated in v1.21+, unavailable in v1.25+; use batch/v1 CronJob"),
        "{stderr}"
    );
    // Stored once, read in both versions.
    let v1 = c.json(&["get", "cronjobs.v1.batch", "old"]);
    assert_eq!(v1["apiVersion"], "batch/v1");
    assert_eq!(v1["spec"]["concurrencyPolicy"], "Allow");
    let beta = c.json(&["get", "cronjobs.v1beta1.batch", "old"]);
    assert_eq!(beta["apiVersion"], "batch/v1beta1");
    assert_eq!(beta["metadata"]["uid"], v1["metadata"]["uid"]);
    let groups = c.ok(&["api-versions"]);
    assert!(
        groups.lines().any(|l| l == "batch/v1beta1") && groups.lines().any(|l| l == "batch/v1"),
        "{groups}"
    );
    // kubectl builds the Job from the CronJob on the client side; it runs to completion.
    c.ok(&["create", "job", "manual", "--from=cronjob/old"]);
    let j = wait_condition(&c, "manual", "Complete", Duration::from_secs(30));
    assert_eq!(j["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    assert_eq!(
        j["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    // Suspended: nothing was scheduled.
    assert!(
        c.json(&["get", "cronjob", "old"])["status"]
            .get("lastScheduleTime")
            .is_none()
    );
}

fn seed(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/seeds")
            .join(name),
    )
    .expect("seed manifest")
}

/// Seed 003's Job (as written: centos:latest, sleep 60) and CronJob (as the seed wrote it,
/// batch/v1beta1, every minute, Forbid), with real containers.
#[test]
fn seed_job_and_v1beta1_cronjob_run_real_containers() {
    let n = support::node::Node::start("jobs-seed");
    let c = &n.cluster;
    let started = Instant::now();
    n.apply(&seed("003-sample-job.yaml"));
    let cronjob = seed("003-sample-cronjob.yaml");
    assert!(cronjob.starts_with("apiVersion: batch/v1beta1"));
    n.apply(&cronjob);
    // Within a minute and a bit, the CronJob has scheduled a Job that runs a real container.
    let cj = wait_for("the CronJob's first Job", Duration::from_secs(75), || {
        let cj = c.json(&["get", "cronjob", "sample-cronjob"]);
        cj["status"]["lastScheduleTime"].is_string().then_some(cj)
    });
    let active = cj["status"]["active"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(active.len(), 1, "{}", cj["status"]);
    let name = active[0]["name"].as_str().unwrap().to_string();
    let minutes: i64 = name
        .strip_prefix("sample-cronjob-")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        minutes > 28_000_000,
        "<cronjob>-<minutes since the epoch>: {name}"
    );
    let scheduled = cj["status"]["lastScheduleTime"].as_str().unwrap();
    let job = c.json(&["get", "job", &name]);
    assert_eq!(
        job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"],
        scheduled
    );
    wait_for(
        "the scheduled Job's pod running",
        Duration::from_secs(60),
        || {
            pods_of(c, &name)
                .iter()
                .any(|p| p["status"]["phase"] == "Running")
                .then_some(())
        },
    );
    let ev = events(c, "sample-cronjob");
    assert!(
        ev.iter()
            .any(|(r, m)| r == "SuccessfulCreate" && m == &format!("Created job {name}")),
        "{ev:?}"
    );
    // The seed's Job: one pod sleeping 60 s, then Complete, 1/1.
    let j = wait_condition(c, "sample-job", "Complete", Duration::from_secs(120));
    assert!(
        started.elapsed() >= Duration::from_secs(60),
        "the container slept 60 s"
    );
    assert_eq!(j["status"]["succeeded"], 1);
    let row = c.ok(&["get", "job", "sample-job", "--no-headers"]);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..3], ["sample-job", "Complete", "1/1"], "{row}");
    // The CronJob's Job completes too (sleep 30) and is seen completed.
    wait_condition(c, &name, "Complete", Duration::from_secs(90));
    wait_for("SawCompletedJob", Duration::from_secs(30), || {
        events(c, "sample-cronjob")
            .iter()
            .any(|(r, _)| r == "SawCompletedJob")
            .then_some(())
    });
}
