//! The Job controller, as upstream pkg/controller/job (1.33).
//!
//! For each unfinished Job: claim its pods, create pods from the template until
//! `min(parallelism, completions - succeeded)` are active (slow-start batches, after the
//! exponential pod-failure back-off: 10 s doubling per failure since the last success, capped
//! at 10 min), or delete surplus ones; Indexed Jobs give each pod an index (annotation, label,
//! `JOB_COMPLETION_INDEX`, hostname `<job>-<index>`). Finished pods are counted through the
//! pod finalizer `batch.kubernetes.io/job-tracking`: their UIDs go to
//! `status.uncountedTerminatedPods` first, then the finalizer is removed, then they move to
//! `succeeded`/`failed` (so no pod is counted twice nor lost across restarts).
//!
//! Finishing is two-step as in 1.33: the interim `SuccessCriteriaMet` or `FailureTarget`
//! condition first (remaining pods are deleted), `Complete` or `Failed` once no pod is left
//! terminating. Failure reasons: `BackoffLimitExceeded` (more failures than `backoffLimit`,
//! or container restarts with restartPolicy OnFailure), `DeadlineExceeded`
//! (`activeDeadlineSeconds`), `PodFailurePolicy` (a FailJob rule). `suspend` deletes the active
//! pods and sets the `Suspended` condition.
//!
//! Not done: backoffLimitPerIndex / maxFailedIndexes, successPolicy, managedBy.

pub mod pods;

use crate::Options;
use crate::replicaset::ownership::{self, Claim};
use futures::StreamExt;
use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kaji_runtime::controller;
use kaji_runtime::events::{Recorder, reference};
use kaji_runtime::informer::{Factory, Informer};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use pods::{BackoffRecord, COMPLETION_INDEX, Indexes};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const COMPONENT: &str = "job-controller";
/// Workers (upstream `--concurrent-job-syncs`).
const CONCURRENCY: u16 = 5;
/// Upstream `MaxUncountedPods` and `MaxPodCreateDeletePerSync`.
const MAX_UNCOUNTED_PODS: usize = 500;
const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);
const RESYNC: Duration = Duration::from_secs(300);

/// Pod creations and deletions a Job waits to see in the pod cache.
struct Pending {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    since: Instant,
}

struct Context {
    client: Client,
    pods: Arc<Informer<Pod>>,
    jobs: Store<Job>,
    recorder: Recorder,
    expectations: Mutex<HashMap<ObjectRef<Job>, Pending>>,
    /// Pods (by UID) whose finalizer we removed, per Job UID, until the cache shows it gone
    /// (upstream `finalizerExpectations`).
    removed_finalizers: Mutex<HashMap<String, HashSet<String>>>,
    /// Pod-failure back-off per Job UID (upstream `backoffStore`).
    backoff: Mutex<HashMap<String, BackoffRecord>>,
}

/// Registers the informers (Jobs, pods) and returns the loop.
pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let _ = opts;
    let pods = f.informer::<Pod>();
    let jobs_informer = f.informer::<Job>();
    let controller = controller::for_informer(&jobs_informer)
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY));
    let jobs = jobs_informer.store();
    let triggers = pods.objects().filter_map(|pod| async move { job_of(&pod) });
    let ctx = Arc::new(Context {
        client: f.client(),
        pods: pods.clone(),
        jobs: jobs.clone(),
        recorder: Recorder::new(f.client(), COMPONENT),
        expectations: Mutex::new(HashMap::new()),
        removed_finalizers: Mutex::new(HashMap::new()),
        backoff: Mutex::new(HashMap::new()),
    });
    let main = controller::run(
        COMPONENT,
        f,
        controller.reconcile_on(triggers),
        reconcile,
        ctx.clone(),
    );
    let orphans = release_orphans(f.clone(), pods, ctx);
    Box::pin(async move {
        let (a, b) = tokio::join!(main, orphans);
        a.and(b)
    })
}

/// The Job controlling a pod.
fn job_of(pod: &Pod) -> Option<ObjectRef<Job>> {
    let r = ownership::controller_of(&pod.metadata)?;
    (r.kind == "Job" && r.api_version.starts_with("batch/"))
        .then(|| ObjectRef::new(&r.name).within(pod.metadata.namespace.as_deref().unwrap_or("")))
}

fn condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

fn is_true(status: &JobStatus, type_: &str) -> bool {
    condition(status, type_).is_some_and(|c| c.status == "True")
}

/// Complete or Failed (upstream `IsJobFinished`).
pub fn is_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .is_some_and(|s| is_true(s, "Complete") || is_true(s, "Failed"))
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()).filter(|r: &String| !r.is_empty()),
        message: Some(message.into()).filter(|m: &String| !m.is_empty()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Upstream `ensureJobConditionStatus`: sets or updates the condition; a False one is never
/// added. Returns whether the list changed.
fn ensure_condition(status: &mut JobStatus, c: JobCondition) -> bool {
    let list = status.conditions.get_or_insert_with(Vec::new);
    if let Some(existing) = list.iter_mut().find(|e| e.type_ == c.type_) {
        if existing.status != c.status
            || existing.reason != c.reason
            || existing.message != c.message
        {
            *existing = c;
            return true;
        }
        return false;
    }
    if c.status != "False" {
        list.push(c);
        return true;
    }
    false
}

/// Pods with our finalizer whose Job is gone, finished, or not their controller any more lose
/// the finalizer (upstream's orphan pod handling), so that they can go.
fn release_orphans(
    f: Factory,
    pods: Arc<Informer<Pod>>,
    ctx: Arc<Context>,
) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        f.synced().await;
        let mut changes = pods.objects().boxed();
        while let Some(pod) = changes.next().await {
            if !pods::has_finalizer(&pod) {
                continue;
            }
            let keep = ownership::controller_of(&pod.metadata).is_some_and(|r| {
                let job = job_of(&pod).and_then(|k| ctx.jobs.get(&k));
                job.is_some_and(|j| {
                    j.metadata.uid.as_deref() == Some(r.uid.as_str()) && !is_finished(&j)
                })
            });
            if keep {
                continue;
            }
            let api: Api<Pod> =
                Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
            if let Err(e) = remove_finalizer(&api, &pod).await {
                tracing::debug!(pod = %pod.name_any(), error = %e, "removing the job-tracking finalizer of an orphan");
            }
        }
        Ok(())
    })
}

async fn remove_finalizer(api: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    let patch = serde_json::json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [pods::TRACKING_FINALIZER]}});
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

impl Context {
    fn expectations_met(&self, key: &ObjectRef<Job>, ns: &str) -> bool {
        let Ok(mut map) = self.expectations.lock() else {
            return true;
        };
        let Some(p) = map.get(key) else { return true };
        let seen = |name: &str| self.pods.get(&ObjectRef::new(name).within(ns));
        let created = p.creates.iter().all(|n| seen(n).is_some());
        let deleted = p
            .deletes
            .iter()
            .all(|n| seen(n).is_none_or(|pod| pod.metadata.deletion_timestamp.is_some()));
        if (created && deleted) || p.since.elapsed() > EXPECTATIONS_TIMEOUT {
            map.remove(key);
            return true;
        }
        false
    }

    fn expect(&self, key: &ObjectRef<Job>, creates: HashSet<String>, deletes: HashSet<String>) {
        if creates.is_empty() && deletes.is_empty() {
            return;
        }
        if let Ok(mut map) = self.expectations.lock() {
            let e = map.entry(key.clone()).or_insert_with(|| Pending {
                creates: HashSet::new(),
                deletes: HashSet::new(),
                since: Instant::now(),
            });
            e.creates.extend(creates);
            e.deletes.extend(deletes);
            e.since = Instant::now();
        }
    }

    /// The pods whose finalizer removal the cache has not shown yet.
    fn pending_removals(&self, job_uid: &str, pods: &[Arc<Pod>]) -> HashSet<String> {
        let Ok(mut map) = self.removed_finalizers.lock() else {
            return HashSet::new();
        };
        let Some(set) = map.get_mut(job_uid) else {
            return HashSet::new();
        };
        let still: HashMap<&str, &Pod> = pods
            .iter()
            .filter_map(|p| Some((p.metadata.uid.as_deref()?, p.as_ref())))
            .collect();
        set.retain(|uid| {
            still
                .get(uid.as_str())
                .is_some_and(|p| pods::has_finalizer(p))
        });
        set.clone()
    }

    fn forget(&self, key: &ObjectRef<Job>) {
        if let Ok(mut m) = self.expectations.lock() {
            m.remove(key);
        }
    }
}

/// One sync of a Job (upstream `syncJob`).
async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, controller::Error> {
    let key = ObjectRef::from_obj(job.as_ref());
    let Some(job) = ctx.jobs.get(&key) else {
        ctx.forget(&key);
        return Ok(Action::await_change());
    };
    if is_finished(&job) {
        ctx.forget(&key);
        // Nothing of a finished Job is needed any more (its pods are released by
        // `release_orphans`).
        let uid = job.uid().unwrap_or_default();
        if let Ok(mut m) = ctx.backoff.lock() {
            m.remove(&uid);
        }
        if let Ok(mut m) = ctx.removed_finalizers.lock() {
            m.remove(&uid);
        }
        return Ok(Action::await_change());
    }
    ctx.pods.ready().await;
    let mut job: Job = (*job).clone();
    let ns = job.namespace().unwrap_or_default();
    let uid = job.uid().unwrap_or_default();
    let now = Timestamp::now();
    let satisfied = ctx.expectations_met(&key, &ns);
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let all_pods = claim_pods(&job, &pod_api, &ctx).await;
    let expected_rm = ctx.pending_removals(&uid, &all_pods);
    let pod_refs: Vec<&Pod> = all_pods.iter().map(AsRef::as_ref).collect();

    let spec = job.spec.clone().unwrap_or_default();
    let completions = spec.completions;
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let suspended = spec.suspend == Some(true);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let old_status = job.status.clone().unwrap_or_default();
    let mut status = old_status.clone();
    let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let unc_succeeded: HashSet<String> = uncounted.succeeded.iter().flatten().cloned().collect();
    let unc_failed: HashSet<String> = uncounted.failed.iter().flatten().cloned().collect();

    let active_pods: Vec<&Pod> = pod_refs
        .iter()
        .copied()
        .filter(|p| pods::is_active(p))
        .collect();
    let mut terminating = count(pod_refs.iter().filter(|p| pods::is_terminating(p)));
    let mut ready = count(active_pods.iter().filter(|p| pods::is_ready(p)));
    let valid_index = |p: &Pod| {
        !indexed || pods::completion_index(p).is_some_and(|i| i < completions.unwrap_or(0))
    };
    let uid_of = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
    let counts = |p: &Pod, uncounted: &HashSet<String>| {
        pods::has_finalizer(p)
            && !uncounted.contains(&uid_of(p))
            && !expected_rm.contains(&uid_of(p))
            && valid_index(p)
    };
    let new_succeeded: Vec<&Pod> = pod_refs
        .iter()
        .copied()
        .filter(|p| counts(p, &unc_succeeded) && pods::phase(p) == "Succeeded")
        .collect();
    let new_failed: Vec<&Pod> = pod_refs
        .iter()
        .copied()
        .filter(|p| counts(p, &unc_failed) && pods::is_failed(p, &job))
        .collect();
    let counted_failures = new_failed
        .iter()
        .filter(|p| {
            spec.pod_failure_policy
                .as_ref()
                .is_none_or(|pfp| pods::match_pod_failure_policy(pfp, p).1)
        })
        .count();
    let mut succeeded =
        status.succeeded.unwrap_or(0) + count_n(new_succeeded.len()) + count_n(unc_succeeded.len());
    let failed = status.failed.unwrap_or(0) + count_n(counted_failures) + count_n(unc_failed.len());

    if status.start_time.is_none() && !suspended {
        status.start_time = Some(Time(now));
    }
    let backoff = ctx
        .backoff
        .lock()
        .ok()
        .and_then(|m| m.get(&uid).cloned())
        .unwrap_or_default()
        .next(&new_succeeded, &new_failed, now);

    let mut requeue: Option<Duration> = None;
    let mut finished: Option<JobCondition> = condition(&status, "SuccessCriteriaMet")
        .filter(|c| c.status == "True")
        .cloned();
    if finished.is_none() {
        if let Some(ft) = condition(&status, "FailureTarget").filter(|c| c.status == "True") {
            finished = Some(new_condition(
                "Failed",
                "True",
                ft.reason.as_deref().unwrap_or_default(),
                ft.message.as_deref().unwrap_or_default(),
                now,
            ));
        } else if let Some(pfp) = &spec.pod_failure_policy
            && let Some(msg) = pod_refs
                .iter()
                .filter(|p| pods::is_failed(p, &job))
                .find_map(|p| pods::match_pod_failure_policy(pfp, p).0)
        {
            finished = Some(new_condition(
                "FailureTarget",
                "True",
                "PodFailurePolicy",
                &msg,
                now,
            ));
        }
    }
    if finished.is_none() {
        if failed > backoff_limit || pods::past_backoff_limit_on_failure(&job, &pod_refs) {
            finished = Some(new_condition(
                "FailureTarget",
                "True",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                now,
            ));
        } else if let (Some(deadline), Some(start), false) = (
            spec.active_deadline_seconds,
            status.start_time.as_ref(),
            suspended,
        ) {
            let allowed = Duration::from_secs(u64::try_from(deadline).unwrap_or(0));
            let elapsed = Duration::try_from(now.duration_since(start.0)).unwrap_or(Duration::ZERO);
            if elapsed >= allowed {
                finished = Some(new_condition(
                    "FailureTarget",
                    "True",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                    now,
                ));
            } else {
                requeue = Some(allowed - elapsed);
            }
        }
    }

    let mut succeeded_indexes = Indexes::default();
    if indexed {
        let c = completions.unwrap_or(0);
        succeeded_indexes = Indexes::parse(status.completed_indexes.as_deref().unwrap_or(""), c);
        for p in &pod_refs {
            if pods::phase(p) == "Succeeded"
                && let Some(i) = pods::completion_index(p).filter(|i| *i < c)
            {
                succeeded_indexes.0.insert(i);
            }
        }
        succeeded = succeeded_indexes.total();
    }

    let job_ref = reference(&job);
    let mut suspend_changed = false;
    let mut active = count(active_pods.iter());
    let mut manage_err: Option<anyhow::Error> = None;
    if finished.is_some() {
        let (deleted_ready, deleted, err) = delete_active_pods(&pod_api, &active_pods).await;
        if deleted != active || !satisfied {
            finished = None;
        }
        active -= deleted;
        terminating += deleted;
        ready -= deleted_ready;
        manage_err = err;
    } else {
        let mut manage_called = false;
        if satisfied && job.metadata.deletion_timestamp.is_none() {
            let m = ManageInput {
                key: &key,
                active_pods: &active_pods,
                succeeded,
                succeeded_indexes: &succeeded_indexes,
                terminating,
                backoff: &backoff,
                now,
            };
            let out = manage_job(&job, &m, &pod_api, &ctx, &job_ref).await;
            active = out.active;
            terminating += out.deleted;
            ready -= out.deleted_ready;
            if let Some(d) = out.requeue {
                requeue = Some(requeue.map_or(d, |r| r.min(d)));
            }
            manage_err = out.error;
            manage_called = true;
        }
        let complete = match completions {
            None => succeeded > 0 && active == 0,
            Some(c) => succeeded >= c && active == 0,
        };
        if complete {
            finished = Some(new_condition(
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            ));
        } else if manage_called {
            if suspended {
                if ensure_condition(
                    &mut status,
                    new_condition("Suspended", "True", "JobSuspended", "Job suspended", now),
                ) {
                    suspend_changed = true;
                    ctx.recorder
                        .normal(&job_ref, "Suspended", "Job suspended")
                        .await;
                }
            } else if ensure_condition(
                &mut status,
                new_condition("Suspended", "False", "JobResumed", "Job resumed", now),
            ) {
                suspend_changed = true;
                ctx.recorder
                    .normal(&job_ref, "Resumed", "Job resumed")
                    .await;
                status.start_time = Some(Time(now));
            }
        }
    }

    let needs_flush = suspend_changed
        || Some(active) != old_status.active.or(Some(0))
        || Some(ready) != old_status.ready
        || Some(terminating) != old_status.terminating
        || status.start_time != old_status.start_time;
    status.active = Some(active).filter(|a| *a > 0);
    status.ready = Some(ready);
    status.terminating = Some(terminating);
    job.status = Some(status);
    let tracking = Tracking {
        pods: &pod_refs,
        expected_rm: &expected_rm,
        unc_succeeded: &unc_succeeded,
        unc_failed: &unc_failed,
        finished,
        succeeded_indexes,
        terminating,
        backoff,
    };
    track_status(
        &mut job,
        tracking,
        needs_flush,
        &pod_api,
        &ctx,
        &job_ref,
        now,
    )
    .await?;
    if let Some(e) = manage_err {
        return Err(e.into());
    }
    Ok(match requeue {
        Some(d) => Action::requeue(d.max(Duration::from_millis(100))),
        None => Action::requeue(RESYNC),
    })
}

fn count<'a, T: 'a>(it: impl Iterator<Item = T>) -> i32 {
    count_n(it.count())
}

fn count_n(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The Job's pods: those it controls, plus matching orphans it adopts (upstream
/// `getPodsForJob` with `ClaimPods`).
async fn claim_pods(job: &Job, api: &Api<Pod>, ctx: &Context) -> Vec<Arc<Pod>> {
    let ns = job.namespace().unwrap_or_default();
    let uid = job.uid().unwrap_or_default();
    let Some(sel) = job
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(ownership::selector)
    else {
        return ctx.pods.owned_by(&uid);
    };
    let deleting = job.metadata.deletion_timestamp.is_some();
    let ours = ownership::controller_ref("batch/v1", "Job", &job.metadata);
    let mut claimed = Vec::new();
    for pod in ctx.pods.claimable(&ns, &uid) {
        match ownership::claim(&uid, deleting, &sel, &pod.metadata) {
            Claim::Keep => claimed.push(pod),
            // A pod of ours that stopped matching but still carries our finalizer is still
            // counted (upstream keeps pods with the finalizer).
            Claim::Release if pods::has_finalizer(&pod) => claimed.push(pod),
            Claim::Adopt if !pods::is_active(&pod) => {}
            c => {
                if let Some(p) = ownership::settle(api, pod.as_ref(), c, &ours).await {
                    claimed.push(Arc::new(p));
                }
            }
        }
    }
    claimed
}

/// Deletes pods (keeping their finalizers: the Job counts them first); returns the ready ones
/// deleted, all deleted, and the first error.
async fn delete_active_pods(api: &Api<Pod>, pods: &[&Pod]) -> (i32, i32, Option<anyhow::Error>) {
    let results = futures::future::join_all(pods.iter().map(|p| async move {
        let r = api.delete(&p.name_any(), &DeleteParams::default()).await;
        (pods::is_ready(p), r)
    }))
    .await;
    let (mut ready, mut deleted, mut err) = (0, 0, None);
    for (was_ready, r) in results {
        match r {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                err.get_or_insert_with(|| anyhow::Error::new(e).context("deleting pods"));
                continue;
            }
        }
        deleted += 1;
        if was_ready {
            ready += 1;
        }
    }
    (ready, deleted, err)
}

struct ManageInput<'a> {
    key: &'a ObjectRef<Job>,
    active_pods: &'a [&'a Pod],
    succeeded: i32,
    succeeded_indexes: &'a Indexes,
    terminating: i32,
    backoff: &'a BackoffRecord,
    now: Timestamp,
}

#[derive(Default)]
struct ManageOutput {
    active: i32,
    deleted: i32,
    deleted_ready: i32,
    requeue: Option<Duration>,
    error: Option<anyhow::Error>,
}

/// Creates or deletes pods so that the right number are active (upstream `manageJob`).
async fn manage_job(
    job: &Job,
    m: &ManageInput<'_>,
    api: &Api<Pod>,
    ctx: &Context,
    job_ref: &k8s_openapi::api::core::v1::ObjectReference,
) -> ManageOutput {
    let spec = job.spec.clone().unwrap_or_default();
    let active = count(m.active_pods.iter());
    let mut out = ManageOutput {
        active,
        ..Default::default()
    };
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");

    if spec.suspend == Some(true) {
        let (ready, deleted, err) =
            delete_job_pods(job, m.key, m.active_pods, api, ctx, job_ref).await;
        out.active -= deleted;
        out.deleted = deleted;
        out.deleted_ready = ready;
        out.error = err;
        return out;
    }

    let want_active = match spec.completions {
        None if m.succeeded > 0 => active,
        None => parallelism,
        Some(c) => (c - m.succeeded).clamp(0, parallelism),
    };
    let mut to_delete: Vec<&Pod> = Vec::new();
    if indexed {
        // Duplicated or out-of-range indexes go first (upstream appendDuplicatedIndexPodsForRemoval).
        let mut seen = HashSet::new();
        let completions = spec.completions.unwrap_or(0);
        for p in m.active_pods {
            match pods::completion_index(p) {
                Some(i)
                    if i < completions && !m.succeeded_indexes.0.contains(&i) && seen.insert(i) => {
                }
                _ => to_delete.push(p),
            }
        }
    }
    let rm_at_least = usize::try_from(active - want_active).unwrap_or(0);
    if to_delete.len() < rm_at_least {
        let mut left: Vec<&Pod> = m
            .active_pods
            .iter()
            .copied()
            .filter(|p| !to_delete.iter().any(|d| d.metadata.uid == p.metadata.uid))
            .collect();
        left.sort_by(|a, b| crate::replicaset::pods::deletion_order(a, b));
        let n = rm_at_least - to_delete.len();
        to_delete.extend(left.into_iter().take(n));
    }
    to_delete.truncate(MAX_POD_CREATE_DELETE_PER_SYNC);
    if !to_delete.is_empty() {
        let (ready, deleted, err) =
            delete_job_pods(job, m.key, &to_delete, api, ctx, job_ref).await;
        out.active -= deleted;
        out.deleted = deleted;
        out.deleted_ready = ready;
        out.error = err;
        return out;
    }

    let terminating = if pods::only_replace_failed(job) {
        m.terminating
    } else {
        0
    };
    let diff = want_active - terminating - active;
    if diff <= 0 {
        return out;
    }
    let remaining = m.backoff.remaining(m.now);
    if !remaining.is_zero() {
        out.requeue = Some(remaining);
        return out;
    }
    let mut diff = usize::try_from(diff)
        .unwrap_or(0)
        .min(MAX_POD_CREATE_DELETE_PER_SYNC);
    let mut indexes: Vec<Option<i32>> = vec![None; diff];
    if indexed {
        indexes = pods::first_pending_indexes(
            m.succeeded_indexes,
            m.active_pods,
            diff,
            spec.completions.unwrap_or(0),
        )
        .into_iter()
        .map(Some)
        .collect();
        diff = indexes.len();
    }
    let pp = PostParams::default();
    let mut created = HashSet::new();
    let mut batch = 1;
    let mut queue = indexes.into_iter();
    let mut remaining = diff;
    while remaining > 0 {
        let n = batch.min(remaining);
        let chunk: Vec<Option<i32>> = queue.by_ref().take(n).collect();
        let results = futures::future::join_all(chunk.iter().map(|ix| {
            let pod = pod_for(job, *ix);
            let pp = &pp;
            async move { api.create(pp, &pod).await }
        }))
        .await;
        let mut failed = false;
        for r in results {
            match r {
                Ok(p) => {
                    let name = p.name_any();
                    ctx.recorder
                        .normal(job_ref, "SuccessfulCreate", &format!("Created pod: {name}"))
                        .await;
                    created.insert(name);
                    out.active += 1;
                }
                Err(e) => {
                    ctx.recorder
                        .warning(job_ref, "FailedCreate", &format!("Error creating: {e}"))
                        .await;
                    failed = true;
                    out.error
                        .get_or_insert_with(|| anyhow::Error::new(e).context("creating pods"));
                }
            }
        }
        remaining -= n;
        batch *= 2;
        if failed {
            break;
        }
    }
    ctx.expect(m.key, created, HashSet::new());
    out
}

/// Removes the finalizer, then deletes (pods the Job deletes itself are not failures).
async fn delete_job_pods(
    job: &Job,
    key: &ObjectRef<Job>,
    victims: &[&Pod],
    api: &Api<Pod>,
    ctx: &Context,
    job_ref: &k8s_openapi::api::core::v1::ObjectReference,
) -> (i32, i32, Option<anyhow::Error>) {
    let _ = job;
    let results = futures::future::join_all(victims.iter().map(|p| async move {
        let name = p.name_any();
        if pods::has_finalizer(p) {
            remove_finalizer(api, p).await?;
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok((name, pods::is_ready(p))),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok((name, false)),
            Err(e) => Err(e),
        }
    }))
    .await;
    let (mut ready, mut deleted, mut err) = (0, 0, None);
    let mut names = HashSet::new();
    for r in results {
        match r {
            Ok((name, was_ready)) => {
                ctx.recorder
                    .normal(job_ref, "SuccessfulDelete", &format!("Deleted pod: {name}"))
                    .await;
                names.insert(name);
                deleted += 1;
                ready += i32::from(was_ready);
            }
            Err(e) => {
                ctx.recorder
                    .warning(job_ref, "FailedDelete", &format!("Error deleting: {e}"))
                    .await;
                err.get_or_insert_with(|| anyhow::Error::new(e).context("deleting pods"));
            }
        }
    }
    ctx.expect(key, HashSet::new(), names);
    (ready, deleted, err)
}

/// A pod from the Job's template (upstream `CreatePodsWithGenerateName` plus the Indexed
/// additions): our finalizer and controller reference, and for an index its annotation,
/// label, env var and hostname.
fn pod_for(job: &Job, index: Option<i32>) -> Pod {
    let name = job.name_any();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tm = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    let mut finalizers = tm.finalizers.unwrap_or_default();
    if !finalizers.iter().any(|f| f == pods::TRACKING_FINALIZER) {
        finalizers.push(pods::TRACKING_FINALIZER.into());
    }
    let mut labels = tm.labels.unwrap_or_default();
    let mut annotations = tm.annotations.unwrap_or_default();
    let generate_name = match index {
        Some(i) => {
            annotations.insert(COMPLETION_INDEX.into(), i.to_string());
            labels.insert(COMPLETION_INDEX.into(), i.to_string());
            spec.hostname = Some(format!("{name}-{i}"));
            let env = EnvVar {
                name: pods::COMPLETION_INDEX_ENV.into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: None,
                        field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                    }),
                    ..Default::default()
                }),
            };
            for c in spec
                .containers
                .iter_mut()
                .chain(spec.init_containers.iter_mut().flatten())
            {
                let envs = c.env.get_or_insert_with(Vec::new);
                if !envs.iter().any(|e| e.name == pods::COMPLETION_INDEX_ENV) {
                    envs.push(env.clone());
                }
            }
            let suffix = format!("-{i}-");
            let mut prefix = format!("{name}{suffix}");
            if prefix.len() > 58 {
                prefix = format!(
                    "{}{suffix}",
                    &name[..58usize.saturating_sub(suffix.len()).min(name.len())]
                );
            }
            prefix
        }
        None => format!("{name}-"),
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            labels: Some(labels),
            annotations: Some(annotations).filter(|a| !a.is_empty()),
            finalizers: Some(finalizers),
            owner_references: Some(vec![ownership::controller_ref(
                "batch/v1",
                "Job",
                &job.metadata,
            )]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

struct Tracking<'a> {
    pods: &'a [&'a Pod],
    expected_rm: &'a HashSet<String>,
    unc_succeeded: &'a HashSet<String>,
    unc_failed: &'a HashSet<String>,
    finished: Option<JobCondition>,
    succeeded_indexes: Indexes,
    terminating: i32,
    backoff: BackoffRecord,
}

/// Moves finished pods into the counters through `uncountedTerminatedPods` and the pod
/// finalizer, then adds Complete or Failed when nothing is left to count
/// (upstream `trackJobStatusAndRemoveFinalizers`).
async fn track_status(
    job: &mut Job,
    t: Tracking<'_>,
    mut needs_flush: bool,
    api: &Api<Pod>,
    ctx: &Context,
    job_ref: &k8s_openapi::api::core::v1::ObjectReference,
    now: Timestamp,
) -> Result<(), controller::Error> {
    let spec = job.spec.clone().unwrap_or_default();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions.unwrap_or(0);
    let deleting = job.metadata.deletion_timestamp.is_some();
    let job_uid = job.uid().unwrap_or_default();
    let mut status = job.status.clone().unwrap_or_default();
    let uid_of = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
    let mut with_finalizer: HashSet<String> = t
        .pods
        .iter()
        .filter(|p| pods::has_finalizer(p) && !t.expected_rm.contains(&uid_of(p)))
        .map(|p| uid_of(p))
        .collect();
    let mut unc = status.uncounted_terminated_pods.clone().unwrap_or_default();
    if clean_uncounted(&mut status, &mut unc, &with_finalizer) {
        needs_flush = true;
    }
    let mut ordered: Vec<&Pod> = t.pods.to_vec();
    if indexed {
        ordered.sort_by_key(|p| pods::completion_index(p).unwrap_or(i32::MAX));
    }
    let mut finished = t.finished;
    let success_criteria = finished
        .as_ref()
        .is_some_and(|c| c.type_ == "SuccessCriteriaMet");
    let mut to_remove: Vec<&Pod> = Vec::new();
    let mut reached_max = false;
    let prev_completed = status.completed_indexes.clone().unwrap_or_default();
    for p in ordered {
        let uid = uid_of(p);
        if !pods::has_finalizer(p) || t.expected_rm.contains(&uid) {
            continue;
        }
        let considered_failed = pods::is_failed(p, job);
        let succeeded = pods::phase(p) == "Succeeded";
        if !(deleting || finished.is_some() || succeeded || considered_failed) {
            continue;
        }
        to_remove.push(p);
        let in_range = !indexed || pods::completion_index(p).is_some_and(|i| i < completions);
        if succeeded && !t.unc_failed.contains(&uid) {
            if !indexed && !t.unc_succeeded.contains(&uid) {
                needs_flush = true;
                unc.succeeded.get_or_insert_with(Vec::new).push(uid);
            }
        } else if (considered_failed || (finished.is_some() && !success_criteria))
            && !t.unc_failed.contains(&uid)
            && in_range
        {
            let counted = spec
                .pod_failure_policy
                .as_ref()
                .is_none_or(|pfp| pods::match_pod_failure_policy(pfp, p).1);
            if counted {
                needs_flush = true;
                unc.failed.get_or_insert_with(Vec::new).push(uid);
            }
        }
        let n =
            unc.succeeded.as_ref().map_or(0, Vec::len) + unc.failed.as_ref().map_or(0, Vec::len);
        if n >= MAX_UNCOUNTED_PODS {
            reached_max = true;
            break;
        }
    }
    if indexed {
        let s = t.succeeded_indexes.to_string();
        if s != prev_completed {
            needs_flush = true;
        }
        status.succeeded = Some(t.succeeded_indexes.total()).filter(|n| *n > 0);
        status.completed_indexes = Some(s);
    }
    if let Some(c) = finished.clone() {
        if c.type_ == "FailureTarget" {
            status
                .conditions
                .get_or_insert_with(Vec::new)
                .push(c.clone());
            needs_flush = true;
            finished = Some(new_condition(
                "Failed",
                "True",
                c.reason.as_deref().unwrap_or_default(),
                c.message.as_deref().unwrap_or_default(),
                now,
            ));
        } else if c.type_ == "SuccessCriteriaMet" {
            if condition(&status, "SuccessCriteriaMet").is_none() {
                status
                    .conditions
                    .get_or_insert_with(Vec::new)
                    .push(c.clone());
                needs_flush = true;
            }
            finished = Some(new_condition(
                "Complete",
                "True",
                c.reason.as_deref().unwrap_or_default(),
                c.message.as_deref().unwrap_or_default(),
                now,
            ));
        }
    }
    status.uncounted_terminated_pods = Some(normalized(unc.clone()));
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());

    // 1. Flush the new uncounted UIDs (and interim conditions) before touching finalizers.
    if needs_flush {
        job.status = Some(status.clone());
        *job = jobs
            .replace_status(&job.name_any(), &PostParams::default(), job)
            .await?;
        if let Ok(mut m) = ctx.backoff.lock() {
            m.insert(job_uid.clone(), t.backoff.clone());
        }
        needs_flush = false;
    }
    // 2. Remove the finalizers.
    let mut rm_err = None;
    if !to_remove.is_empty() {
        if let Ok(mut m) = ctx.removed_finalizers.lock() {
            m.entry(job_uid.clone())
                .or_default()
                .extend(to_remove.iter().map(|p| uid_of(p)));
        }
        let results =
            futures::future::join_all(to_remove.iter().map(|p| remove_finalizer(api, p))).await;
        for (p, r) in to_remove.iter().zip(results) {
            match r {
                Ok(()) => {
                    with_finalizer.remove(&uid_of(p));
                }
                Err(e) => {
                    if let Ok(mut m) = ctx.removed_finalizers.lock()
                        && let Some(s) = m.get_mut(&job_uid)
                    {
                        s.remove(&uid_of(p));
                    }
                    rm_err.get_or_insert(e);
                }
            }
        }
    }
    // 3. Count the pods whose finalizer is gone.
    if clean_uncounted(&mut status, &mut unc, &with_finalizer) {
        needs_flush = true;
    }
    status.uncounted_terminated_pods = Some(normalized(unc.clone()));
    if let Some(e) = rm_err {
        if needs_flush {
            job.status = Some(status.clone());
            jobs.replace_status(&job.name_any(), &PostParams::default(), job)
                .await?;
        }
        return Err(anyhow::Error::new(e)
            .context("removing the job-tracking finalizer")
            .into());
    }
    // 4. Finished once nothing is left to count nor terminating.
    let mut job_finished = false;
    if let Some(c) = &finished
        && !reached_max
        && unc.succeeded.as_ref().is_none_or(Vec::is_empty)
        && unc.failed.as_ref().is_none_or(Vec::is_empty)
        && t.terminating == 0
    {
        ensure_condition(&mut status, c.clone());
        if c.type_ == "Complete" {
            status.completion_time = c.last_transition_time.clone();
        }
        job_finished = true;
        needs_flush = true;
    }
    if needs_flush {
        job.status = Some(status.clone());
        *job = jobs
            .replace_status(&job.name_any(), &PostParams::default(), job)
            .await?;
        if job_finished && let Some(c) = &finished {
            if c.type_ == "Complete" {
                let done = status.succeeded.unwrap_or(0);
                if spec.completions.is_some_and(|want| done > want) {
                    ctx.recorder
                        .warning(
                            job_ref,
                            "TooManySucceededPods",
                            "Too many succeeded pods running after completion count reached",
                        )
                        .await;
                }
                ctx.recorder
                    .normal(job_ref, "Completed", "Job completed")
                    .await;
            } else {
                ctx.recorder
                    .warning(
                        job_ref,
                        c.reason.as_deref().unwrap_or_default(),
                        c.message.as_deref().unwrap_or_default(),
                    )
                    .await;
            }
        }
    }
    Ok(())
}

/// Drops empty lists (upstream omits them).
fn normalized(mut u: UncountedTerminatedPods) -> UncountedTerminatedPods {
    if u.succeeded.as_ref().is_some_and(Vec::is_empty) {
        u.succeeded = None;
    }
    if u.failed.as_ref().is_some_and(Vec::is_empty) {
        u.failed = None;
    }
    u
}

/// Moves uncounted pods that no longer carry the finalizer into the counters (upstream
/// `cleanUncountedPodsWithoutFinalizers`). Returns whether anything changed.
fn clean_uncounted(
    status: &mut JobStatus,
    unc: &mut UncountedTerminatedPods,
    with_finalizer: &HashSet<String>,
) -> bool {
    let mut changed = false;
    if let Some(list) = unc.succeeded.as_mut() {
        let before = list.len();
        list.retain(|u| with_finalizer.contains(u));
        if list.len() != before {
            changed = true;
            status.succeeded = Some(status.succeeded.unwrap_or(0) + count_n(before - list.len()));
        }
    }
    if let Some(list) = unc.failed.as_mut() {
        let before = list.len();
        list.retain(|u| with_finalizer.contains(u));
        if list.len() != before {
            changed = true;
            status.failed = Some(status.failed.unwrap_or(0) + count_n(before - list.len()));
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn indexed_pods_get_index_env_and_hostname() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "ix", "namespace": "default", "uid": "u1"},
            "spec": {"completionMode": "Indexed", "completions": 3, "template": {
                "metadata": {"labels": {"job-name": "ix"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
        }))
        .unwrap();
        let pod = pod_for(&job, Some(2));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("ix-2-"));
        assert_eq!(
            pod.metadata.annotations.as_ref().unwrap()[COMPLETION_INDEX],
            "2"
        );
        assert_eq!(pod.metadata.labels.as_ref().unwrap()[COMPLETION_INDEX], "2");
        assert_eq!(
            pod.metadata.finalizers.as_deref(),
            Some(&[pods::TRACKING_FINALIZER.to_string()][..])
        );
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("ix-2"));
        let env = &spec.containers[0].env.as_ref().unwrap()[0];
        assert_eq!(env.name, "JOB_COMPLETION_INDEX");
        assert_eq!(
            env.value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
        let owner = &pod.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("Job", Some(true)));
        assert_eq!(
            pod_for(&job, None).metadata.generate_name.as_deref(),
            Some("ix-")
        );
    }

    #[test]
    fn uncounted_pods_without_finalizer_are_counted() {
        let mut status = JobStatus {
            succeeded: Some(1),
            ..Default::default()
        };
        let mut unc = UncountedTerminatedPods {
            succeeded: Some(vec!["a".into(), "b".into()]),
            failed: Some(vec!["c".into()]),
        };
        let with: HashSet<String> = ["b".to_string()].into_iter().collect();
        assert!(clean_uncounted(&mut status, &mut unc, &with));
        assert_eq!(status.succeeded, Some(2));
        assert_eq!(status.failed, Some(1));
        assert_eq!(unc.succeeded, Some(vec!["b".to_string()]));
        assert!(!clean_uncounted(&mut status, &mut unc, &with));
    }

    #[test]
    fn conditions_false_is_never_added() {
        let now = Timestamp::now();
        let mut s = JobStatus::default();
        assert!(!ensure_condition(
            &mut s,
            new_condition("Suspended", "False", "JobResumed", "Job resumed", now)
        ));
        assert!(ensure_condition(
            &mut s,
            new_condition("Suspended", "True", "JobSuspended", "Job suspended", now)
        ));
        assert!(!ensure_condition(
            &mut s,
            new_condition("Suspended", "True", "JobSuspended", "Job suspended", now)
        ));
        assert!(ensure_condition(
            &mut s,
            new_condition("Suspended", "False", "JobResumed", "Job resumed", now)
        ));
    }
}
