//! The TTL-after-finished controller, as upstream pkg/controller/ttlafterfinished: a Job with
//! `ttlSecondsAfterFinished` is deleted (background propagation, so its pods go through the
//! garbage collector) that many seconds after its Complete or Failed condition was set. The
//! Job is read again from the API server before the delete, so a TTL changed meanwhile counts.

use crate::Options;
use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kaji_runtime::controller;
use kaji_runtime::informer::Factory;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

const COMPONENT: &str = "ttl-after-finished-controller";

struct Context {
    client: Client,
    jobs: Store<Job>,
}

pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let _ = opts;
    let informer = f.informer::<Job>();
    let ctx = Arc::new(Context {
        client: f.client(),
        jobs: informer.store(),
    });
    controller::run(
        COMPONENT,
        f,
        controller::for_informer(&informer),
        reconcile,
        ctx,
    )
}

/// When the Job finished (its Complete or Failed condition's transition), if it did.
pub fn finish_time(job: &Job) -> Option<Timestamp> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// How long until the Job expires: None when it has no TTL or has not finished; zero when due.
pub fn time_left(job: &Job, now: Timestamp) -> Option<Duration> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = finish_time(job)?;
    let expire = finished.as_second() + i64::from(ttl);
    let left = expire - now.as_second();
    Some(Duration::from_secs(u64::try_from(left).unwrap_or(0)))
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, controller::Error> {
    let key = ObjectRef::from_obj(job.as_ref());
    let Some(job) = ctx.jobs.get(&key) else {
        return Ok(Action::await_change());
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    match time_left(&job, Timestamp::now()) {
        None => Ok(Action::await_change()),
        Some(d) if !d.is_zero() => Ok(Action::requeue(d)),
        Some(_) => {
            let api: Api<Job> =
                Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
            // The cache may be stale: check the TTL on the newest copy.
            let fresh = match api.get(&job.name_any()).await {
                Ok(j) => j,
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::await_change()),
                Err(e) => return Err(e.into()),
            };
            match time_left(&fresh, Timestamp::now()) {
                Some(d) if d.is_zero() => {}
                Some(d) => return Ok(Action::requeue(d)),
                None => return Ok(Action::await_change()),
            }
            tracing::info!(job = %key, "deleting a finished Job whose TTL expired");
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                preconditions: Some(Preconditions {
                    uid: fresh.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&fresh.name_any(), &dp).await {
                Ok(_) => Ok(Action::await_change()),
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                    Ok(Action::await_change())
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expires_ttl_seconds_after_the_finish_condition() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "j"},
            "spec": {"ttlSecondsAfterFinished": 30, "template": {}},
            "status": {"conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}
        }))
        .unwrap();
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(
            time_left(&job, at("2024-01-01T00:00:10Z")),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            time_left(&job, at("2024-01-01T00:01:00Z")),
            Some(Duration::ZERO)
        );
        let mut running = job.clone();
        running.status = None;
        assert_eq!(time_left(&running, at("2024-01-01T00:01:00Z")), None);
    }
}
