//! The CronJob controller, as upstream pkg/controller/cronjob (cronjob_controllerv2): each
//! CronJob is synced when it or one of its Jobs changes, and again just after its next
//! activation (no polling of every CronJob).
//!
//! A sync reconciles `status.active` with the Jobs it owns (`SawCompletedJob`, `MissingJob`,
//! `lastSuccessfulTime`), then, unless suspended, looks for the latest activation due since
//! the last schedule (`schedule::most_recent`; more than 100 missed: `TooManyMissedTimes`),
//! skips it when it is older than `startingDeadlineSeconds` (`MissSchedule`), applies the
//! concurrency policy (Forbid: `JobAlreadyActive`; Replace: the active Jobs are deleted) and
//! creates the Job `<cronjob>-<minutes since the epoch>` with the annotation
//! `batch.kubernetes.io/cronjob-scheduled-timestamp`. Finished Jobs beyond the history limits
//! are deleted, oldest first.

pub mod schedule;

use crate::Options;
use crate::replicaset::ownership;
use futures::StreamExt;
use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kaji_runtime::controller;
use kaji_runtime::events::{Recorder, reference};
use kaji_runtime::informer::{Factory, Informer};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use schedule::Missed;
use std::sync::Arc;
use std::time::Duration;

const COMPONENT: &str = "cronjob-controller";
/// The annotation with the activation a Job was created for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Upstream `nextScheduleDelta`: wake up just after the activation.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

struct Context {
    client: Client,
    cronjobs: Store<CronJob>,
    jobs: Arc<Informer<Job>>,
    recorder: Recorder,
}

pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let _ = opts;
    let cronjobs = f.informer::<CronJob>();
    let jobs = f.informer::<Job>();
    let triggers = jobs.objects().filter_map(|job| async move {
        let r = ownership::controller_of(&job.metadata)?;
        (r.kind == "CronJob").then(|| {
            ObjectRef::new(&r.name).within(job.metadata.namespace.as_deref().unwrap_or(""))
        })
    });
    let ctx = Arc::new(Context {
        client: f.client(),
        cronjobs: cronjobs.store(),
        jobs,
        recorder: Recorder::new(f.client(), COMPONENT),
    });
    controller::run(
        COMPONENT,
        f,
        controller::for_informer(&cronjobs).reconcile_on(triggers),
        reconcile,
        ctx,
    )
}

fn finished_condition(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

fn ts(t: &Time) -> Timestamp {
    t.0
}

/// The Job for one activation (upstream `getJobFromTemplate2`).
fn job_for(cj: &CronJob, scheduled: Timestamp, tz: Option<&str>) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tm = template.metadata.unwrap_or_default();
    let mut annotations = tm.annotations.unwrap_or_default();
    let zone = tz
        .and_then(|n| jiff::tz::db().get(n).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        scheduled
            .to_zoned(zone)
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
            .replace("+00:00", "Z"),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(schedule::job_name(&cj.name_any(), scheduled)),
            labels: tm.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![ownership::controller_ref(
                "batch/v1",
                "CronJob",
                &cj.metadata,
            )]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action, controller::Error> {
    let key = ObjectRef::from_obj(cj.as_ref());
    let Some(cj) = ctx.cronjobs.get(&key) else {
        return Ok(Action::await_change());
    };
    ctx.jobs.ready().await;
    let mut cj: CronJob = (*cj).clone();
    let ns = cj.namespace().unwrap_or_default();
    let uid = cj.uid().unwrap_or_default();
    let now = Timestamp::now();
    let cj_ref = reference(&cj);
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let old_status = cj.status.clone().unwrap_or_default();
    let mut status = old_status.clone();
    let children: Vec<Arc<Job>> = ctx
        .jobs
        .owned_by(&uid)
        .into_iter()
        .filter(|j| ownership::controller_of(&j.metadata).is_some_and(|r| r.uid == uid))
        .collect();

    // Reconcile the active list with the Jobs.
    let in_active = |status: &k8s_openapi::api::batch::v1::CronJobStatus, job: &Job| {
        status
            .active
            .iter()
            .flatten()
            .any(|r| r.uid == job.metadata.uid)
    };
    for j in &children {
        let finished = finished_condition(j);
        if in_active(&status, j)
            && let Some(cond) = finished
        {
            if let Some(a) = status.active.as_mut() {
                a.retain(|r| r.uid != j.metadata.uid);
            }
            ctx.recorder
                .normal(
                    &cj_ref,
                    "SawCompletedJob",
                    &format!("Saw completed job: {}, condition: {cond}", j.name_any()),
                )
                .await;
        } else if !in_active(&status, j) && finished.is_none() {
            ctx.recorder
                .warning(
                    &cj_ref,
                    "UnexpectedJob",
                    &format!(
                        "Saw a job that the controller did not create or forgot: {}",
                        j.name_any()
                    ),
                )
                .await;
        }
        if finished == Some("Complete")
            && let Some(done) = j.status.as_ref().and_then(|s| s.completion_time.as_ref())
            && status
                .last_successful_time
                .as_ref()
                .is_none_or(|last| ts(done) > ts(last))
        {
            status.last_successful_time = Some(done.clone());
        }
    }
    // Active Jobs that are gone.
    let mut missing = Vec::new();
    for r in status.active.iter().flatten() {
        if children.iter().any(|j| j.metadata.uid == r.uid) {
            continue;
        }
        let name = r.name.clone().unwrap_or_default();
        match jobs_api.get_opt(&name).await? {
            Some(j) if j.metadata.uid == r.uid => {}
            _ => missing.push(r.clone()),
        }
    }
    for r in missing {
        if let Some(a) = status.active.as_mut() {
            a.retain(|x| x.uid != r.uid);
        }
        ctx.recorder
            .normal(
                &cj_ref,
                "MissingJob",
                &format!(
                    "Active job went missing: {}",
                    r.name.clone().unwrap_or_default()
                ),
            )
            .await;
    }

    let mut requeue: Option<Duration> = None;
    let spec = cj.spec.clone().unwrap_or_default();
    if cj.metadata.deletion_timestamp.is_none() {
        requeue = schedule_next(&cj, &spec, &mut status, &jobs_api, &ctx, &cj_ref, now).await?;
        cleanup_finished(&spec, &children, &mut status, &jobs_api, &ctx, &cj_ref).await;
    }

    if status.active.as_ref().is_some_and(Vec::is_empty) {
        status.active = None;
    }
    if status != old_status {
        cj.status = Some(status);
        let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
        api.replace_status(&cj.name_any(), &PostParams::default(), &cj)
            .await?;
    }
    Ok(match requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// Creates the Job of the latest due activation, if any; returns when to look again.
async fn schedule_next(
    cj: &CronJob,
    spec: &k8s_openapi::api::batch::v1::CronJobSpec,
    status: &mut k8s_openapi::api::batch::v1::CronJobStatus,
    jobs_api: &Api<Job>,
    ctx: &Context,
    cj_ref: &ObjectReference,
    now: Timestamp,
) -> Result<Option<Duration>, controller::Error> {
    let tz = spec.time_zone.as_deref();
    if let Some(name) = tz
        && jiff::tz::db().get(name).is_err()
    {
        ctx.recorder
            .warning(
                cj_ref,
                "UnknownTimeZone",
                &format!("invalid timeZone: {name:?}: unknown time zone {name}"),
            )
            .await;
        return Ok(None);
    }
    if spec.suspend == Some(true) {
        return Ok(None);
    }
    if spec.schedule.contains("TZ") && tz.is_none() {
        ctx.recorder
            .warning(cj_ref, "UnsupportedSchedule", &format!("CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details", spec.schedule))
            .await;
    }
    let sched = match schedule::parse(&spec.schedule, tz) {
        Ok(s) => s,
        Err(e) => {
            ctx.recorder
                .warning(
                    cj_ref,
                    "UnparseableSchedule",
                    &format!("unparseable schedule: {:?} : {e}", spec.schedule),
                )
                .await;
            return Ok(None);
        }
    };
    let created = cj.metadata.creation_timestamp.as_ref().map_or(now, ts);
    let last = status.last_schedule_time.as_ref().map(ts);
    let deadline = spec.starting_deadline_seconds;
    // When to look again: just after the activation following the latest one.
    let next_wake = |last: Option<Timestamp>| -> Option<Duration> {
        let base = match schedule::most_recent(&sched, created, last, None, now) {
            Ok((earliest, recent, _)) => recent.unwrap_or(earliest),
            Err(_) => return None,
        };
        let next = sched.next(base)?;
        let d = Duration::try_from(next.duration_since(now)).unwrap_or(Duration::ZERO);
        Some(d + NEXT_SCHEDULE_DELTA)
    };
    let scheduled = match schedule::most_recent(&sched, created, last, deadline, now) {
        Err(e) => {
            ctx.recorder
                .warning(
                    cj_ref,
                    "InvalidSchedule",
                    &format!("invalid schedule: {} : {e}", spec.schedule),
                )
                .await;
            return Ok(None);
        }
        Ok((_, None, _)) => return Ok(next_wake(last)),
        Ok((_, Some(t), missed)) => {
            if missed == Missed::Many {
                ctx.recorder
                    .warning(cj_ref, "TooManyMissedTimes", "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew")
                    .await;
            }
            t
        }
    };
    if let Some(d) = deadline
        && scheduled + jiff::SignedDuration::from_secs(d) < now
    {
        let when = scheduled.strftime("%a, %d %b %Y %H:%M:%S %z").to_string();
        ctx.recorder
            .warning(
                cj_ref,
                "MissSchedule",
                &format!("Missed scheduled time to start a job: {when}"),
            )
            .await;
        return Ok(next_wake(last));
    }
    let name = schedule::job_name(&cj.name_any(), scheduled);
    let already = status
        .active
        .iter()
        .flatten()
        .any(|r| r.name.as_deref() == Some(name.as_str()))
        || status
            .last_schedule_time
            .as_ref()
            .is_some_and(|t| t.0 == scheduled);
    if already {
        return Ok(next_wake(Some(scheduled)));
    }
    let active = status.active.as_ref().map_or(0, Vec::len);
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if active > 0 => {
            ctx.recorder
                .normal(cj_ref, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid")
                .await;
            return Ok(next_wake(last));
        }
        Some("Replace") => {
            for r in status.active.clone().into_iter().flatten() {
                let jname = r.name.clone().unwrap_or_default();
                delete_job(jobs_api, &jname, ctx, cj_ref).await?;
                if let Some(a) = status.active.as_mut() {
                    a.retain(|x| x.uid != r.uid);
                }
            }
        }
        _ => {}
    }
    let job = job_for(cj, scheduled, spec.time_zone.as_deref());
    let created_job = match jobs_api.create(&PostParams::default(), &job).await {
        Ok(j) => j,
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // Created by an earlier sync whose status write was lost: take it if it is ours.
            let existing = jobs_api.get(&name).await?;
            let ours = ownership::controller_of(&existing.metadata)
                .is_some_and(|r| Some(&r.uid) == cj.metadata.uid.as_ref());
            if !ours {
                return Err(anyhow::anyhow!(
                    "job {name} exists and is not controlled by the CronJob"
                )
                .into());
            }
            status.last_schedule_time = Some(Time(scheduled));
            return Ok(next_wake(Some(scheduled)));
        }
        Err(e) => {
            ctx.recorder
                .warning(cj_ref, "FailedCreate", &format!("Error creating job: {e}"))
                .await;
            return Err(e.into());
        }
    };
    ctx.recorder
        .normal(
            cj_ref,
            "SuccessfulCreate",
            &format!("Created job {}", created_job.name_any()),
        )
        .await;
    status
        .active
        .get_or_insert_with(Vec::new)
        .push(job_ref(&created_job));
    status.last_schedule_time = Some(Time(scheduled));
    Ok(next_wake(Some(scheduled)))
}

async fn delete_job(
    api: &Api<Job>,
    name: &str,
    ctx: &Context,
    cj_ref: &ObjectReference,
) -> Result<(), controller::Error> {
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => {
            ctx.recorder
                .normal(cj_ref, "SuccessfulDelete", &format!("Deleted job {name}"))
                .await;
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => {
            ctx.recorder
                .warning(cj_ref, "FailedDelete", &format!("Deleted job: {e}"))
                .await;
            Err(e.into())
        }
    }
}

/// Deletes the oldest finished Jobs beyond the history limits (upstream `cleanupFinishedJobs`).
async fn cleanup_finished(
    spec: &k8s_openapi::api::batch::v1::CronJobSpec,
    children: &[Arc<Job>],
    status: &mut k8s_openapi::api::batch::v1::CronJobStatus,
    api: &Api<Job>,
    ctx: &Context,
    cj_ref: &ObjectReference,
) {
    if spec.successful_jobs_history_limit.is_none() && spec.failed_jobs_history_limit.is_none() {
        return;
    }
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut done: Vec<&Arc<Job>> = children
            .iter()
            .filter(|j| {
                j.metadata.deletion_timestamp.is_none() && finished_condition(j) == Some(kind)
            })
            .collect();
        let keep = usize::try_from(limit).unwrap_or(0);
        if done.len() <= keep {
            continue;
        }
        // Oldest start first; Jobs that never started last (upstream `byJobStartTime`).
        done.sort_by(|a, b| {
            let start = |j: &Job| {
                j.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0)
            };
            match (start(a), start(b)) {
                (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.name_any().cmp(&b.name_any())),
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, None) => a.name_any().cmp(&b.name_any()),
            }
        });
        let n = done.len() - keep;
        for j in done.into_iter().take(n) {
            if let Err(e) = delete_job(api, &j.name_any(), ctx, cj_ref).await {
                tracing::info!(job = %j.name_any(), error = %e, "deleting an old finished job");
                continue;
            }
            if let Some(a) = status.active.as_mut() {
                a.retain(|r| r.uid != j.metadata.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn job_from_template_is_named_by_minute_and_annotated() {
        let cj: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "hello", "namespace": "default", "uid": "u1"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {"metadata": {"labels": {"a": "b"}},
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}
        }))
        .unwrap();
        let t: Timestamp = "2024-01-01T00:01:00Z".parse().unwrap();
        let job = job_for(&cj, t, None);
        assert_eq!(job.metadata.name.as_deref(), Some("hello-28401121"));
        assert_eq!(
            job.metadata.annotations.as_ref().unwrap()[SCHEDULED_TIMESTAMP],
            "2024-01-01T00:01:00Z"
        );
        assert_eq!(job.metadata.labels.as_ref().unwrap()["a"], "b");
        let owner = &job.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("CronJob", "u1"));
        let tokyo = job_for(&cj, t, Some("Asia/Tokyo"));
        assert_eq!(
            tokyo.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP],
            "2024-01-01T09:01:00+09:00"
        );
    }
}
