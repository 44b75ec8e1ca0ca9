//! What the Job controller needs to know about a Job's pods, as pure functions (upstream
//! pkg/controller/job: job_controller.go's pod predicates, indexed_job_utils.go,
//! pod_failure_policy.go, backoff_utils.go).

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, PodFailurePolicy};
use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeSet;
use std::time::Duration;

/// The finalizer that keeps a finished pod until the Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The annotation (and, since PodIndexLabel, label) carrying an Indexed Job pod's index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The environment variable an Indexed Job's containers read their index from.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// Upstream `DefaultJobPodFailureBackOff` and `MaxJobPodFailureBackOff` (1.33).
pub const POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(600);

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

pub fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

/// Not finished and not being deleted (upstream `IsPodActive`).
pub fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase(pod), "Succeeded" | "Failed")
}

/// Being deleted but not finished (upstream `CountTerminatingPods`).
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !matches!(phase(pod), "Succeeded" | "Failed")
}

pub fn is_ready(pod: &Pod) -> bool {
    crate::replicaset::pods::is_ready(pod)
}

/// Only failed pods are replaced (podReplacementPolicy Failed, implied by a podFailurePolicy).
pub fn only_replace_failed(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    spec.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
        || spec.is_some_and(|s| s.pod_failure_policy.is_some())
}

/// Upstream `isPodFailed`: Failed, or (unless only failed pods are replaced) deleted before it
/// finished, so that orphans that never reach a phase still count.
pub fn is_failed(pod: &Pod, job: &Job) -> bool {
    if phase(pod) == "Failed" {
        return true;
    }
    if only_replace_failed(job) {
        return false;
    }
    pod.metadata.deletion_timestamp.is_some() && phase(pod) != "Succeeded"
}

/// The pod's completion index, when it has a valid one.
pub fn completion_index(pod: &Pod) -> Option<i32> {
    let v = pod.metadata.annotations.as_ref()?.get(COMPLETION_INDEX)?;
    let i: i32 = v.parse().ok()?;
    (i >= 0 && v == &i.to_string()).then_some(i)
}

/// When the pod finished: its containers' last finish, else when Ready turned False, else its
/// deletion, else now (upstream `getFinishedTime`).
pub fn finished_time(pod: &Pod, now: Timestamp) -> Timestamp {
    let status = pod.status.as_ref();
    let from_containers = status
        .into_iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    if let Some(t) = from_containers {
        return t;
    }
    let ready_false = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "Ready" && c.status == "False")
        })
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0);
    ready_false
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(now)
}

/// The sum of the restart counts of running or pending pods reached the backoff limit
/// (restartPolicy OnFailure only; upstream `pastBackoffLimitOnFailure`).
pub fn past_backoff_limit_on_failure(job: &Job, pods: &[&Pod]) -> bool {
    let Some(spec) = job.spec.as_ref() else {
        return false;
    };
    let restart = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref());
    if restart != Some("OnFailure") {
        return false;
    }
    let restarts: i32 = pods
        .iter()
        .filter(|p| matches!(phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    let limit = spec.backoff_limit.unwrap_or(6);
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

/// The back-off state of one Job (upstream `backoffRecord`): failures since the last success
/// and when the last one happened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackoffRecord {
    pub failures_after_last_success: u32,
    pub last_failure_time: Option<Timestamp>,
}

impl BackoffRecord {
    /// The record after these newly finished pods (upstream `newBackoffRecord`).
    pub fn next(&self, succeeded: &[&Pod], failed: &[&Pod], now: Timestamp) -> BackoffRecord {
        let mut failed_times: Vec<Timestamp> =
            failed.iter().map(|p| finished_time(p, now)).collect();
        failed_times.sort();
        let last_success = succeeded.iter().map(|p| finished_time(p, now)).max();
        match last_success {
            None if failed_times.is_empty() => self.clone(),
            None => BackoffRecord {
                failures_after_last_success: self.failures_after_last_success
                    + u32::try_from(failed_times.len()).unwrap_or(u32::MAX),
                last_failure_time: failed_times.last().copied(),
            },
            Some(success) => {
                let after: Vec<&Timestamp> =
                    failed_times.iter().filter(|t| **t > success).collect();
                BackoffRecord {
                    failures_after_last_success: u32::try_from(after.len()).unwrap_or(u32::MAX),
                    last_failure_time: after.last().map(|t| **t),
                }
            }
        }
    }

    /// How long pod creation must still wait: 10 s doubling per failure since the last
    /// success, capped at 10 min, counted from the last failure (upstream `getRemainingTime`).
    pub fn remaining(&self, now: Timestamp) -> Duration {
        let Some(last) = self.last_failure_time else {
            return Duration::ZERO;
        };
        if self.failures_after_last_success == 0 {
            return Duration::ZERO;
        }
        let mut backoff = POD_FAILURE_BACKOFF;
        for _ in 1..self.failures_after_last_success {
            backoff *= 2;
            if backoff >= MAX_POD_FAILURE_BACKOFF {
                backoff = MAX_POD_FAILURE_BACKOFF;
                break;
            }
        }
        let elapsed = Duration::try_from(now.duration_since(last)).unwrap_or(Duration::ZERO);
        backoff.saturating_sub(elapsed)
    }
}

/// What a pod failure policy says about a failed pod (upstream `matchPodFailurePolicy`):
/// the job failure message when a FailJob rule matched, whether the failure counts towards
/// the backoff limit, and the matching rule's action.
pub fn match_pod_failure_policy(
    policy: &PodFailurePolicy,
    pod: &Pod,
) -> (Option<String>, bool, Option<String>) {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    for (i, rule) in policy.rules.iter().enumerate() {
        let matched = if let Some(on_exit) = &rule.on_exit_codes {
            matching_exit_code(pod, on_exit).map(|(container, code)| {
                format!(
                    "Container {container} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {i}",
                    rule.action
                )
            })
        } else {
            rule.on_pod_conditions.iter().flatten().find_map(|pattern| {
                let want = Some(pattern.status.as_str())
                    .filter(|s| !s.is_empty())
                    .unwrap_or("True");
                let has = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.type_ == pattern.type_ && c.status == want)
                    });
                has.then(|| {
                    format!(
                        "Pod {ns}/{name} has condition {} matching {} rule at index {i}",
                        pattern.type_, rule.action
                    )
                })
            })
        };
        let Some(message) = matched else { continue };
        let action = Some(rule.action.clone());
        return match rule.action.as_str() {
            "FailJob" => (Some(message), true, action),
            "Ignore" => (None, false, action),
            "Count" | "FailIndex" => (None, true, action),
            _ => continue,
        };
    }
    (None, true, None)
}

/// The first container (init containers first) whose non-zero exit code the rule matches.
fn matching_exit_code(
    pod: &Pod,
    rule: &k8s_openapi::api::batch::v1::PodFailurePolicyOnExitCodesRequirement,
) -> Option<(String, i32)> {
    let status = pod.status.as_ref()?;
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .filter(|c| rule.container_name.as_deref().is_none_or(|n| n == c.name))
        .find_map(|c| {
            let code = c.state.as_ref()?.terminated.as_ref()?.exit_code;
            if code == 0 {
                return None;
            }
            let listed = rule.values.contains(&code);
            let hit = match rule.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            };
            hit.then(|| (c.name.clone(), code))
        })
}

/// A set of completion indexes, printed as upstream's `completedIndexes` ("1,3-5").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Indexes(pub BTreeSet<i32>);

impl Indexes {
    /// Parses `completedIndexes`, keeping indexes below `completions`.
    pub fn parse(s: &str, completions: i32) -> Indexes {
        let mut set = BTreeSet::new();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
                None => (part.parse::<i32>(), part.parse::<i32>()),
            };
            if let (Ok(a), Ok(b)) = (a, b) {
                set.extend((a.max(0)..=b.min(completions - 1)).filter(|i| *i >= 0));
            }
        }
        Indexes(set)
    }

    pub fn total(&self) -> i32 {
        i32::try_from(self.0.len()).unwrap_or(i32::MAX)
    }
}

impl std::fmt::Display for Indexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        let mut iter = self.0.iter().copied().peekable();
        while let Some(start) = iter.next() {
            let mut end = start;
            while iter.peek() == Some(&(end + 1)) {
                end += 1;
                iter.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if end == start {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

/// The lowest indexes that have neither succeeded nor an active pod (upstream
/// `firstPendingIndexes`).
pub fn first_pending_indexes(
    succeeded: &Indexes,
    active: &[&Pod],
    count: usize,
    completions: i32,
) -> Vec<i32> {
    let taken: BTreeSet<i32> = active.iter().filter_map(|p| completion_index(p)).collect();
    (0..completions)
        .filter(|i| !succeeded.0.contains(i) && !taken.contains(i))
        .take(count)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("a pod")
    }

    #[test]
    fn indexes_print_and_parse_as_upstream() {
        let ix = Indexes([0, 1, 2, 4, 6, 7].into_iter().collect());
        assert_eq!(ix.to_string(), "0-2,4,6-7");
        assert_eq!(Indexes::parse("0-2,4,6-7", 10), ix);
        assert_eq!(Indexes::parse("0-2,4,6-7", 5).to_string(), "0-2,4");
        assert_eq!(Indexes::default().to_string(), "");
    }

    #[test]
    fn backoff_doubles_from_10s_and_caps_at_10min() {
        let t0: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let rec = |n| BackoffRecord {
            failures_after_last_success: n,
            last_failure_time: Some(t0),
        };
        assert_eq!(rec(0).remaining(t0), Duration::ZERO);
        assert_eq!(rec(1).remaining(t0), Duration::from_secs(10));
        assert_eq!(rec(2).remaining(t0), Duration::from_secs(20));
        assert_eq!(rec(3).remaining(t0), Duration::from_secs(40));
        assert_eq!(rec(20).remaining(t0), Duration::from_secs(600));
        let later: Timestamp = "2024-01-01T00:00:15Z".parse().unwrap();
        assert_eq!(rec(2).remaining(later), Duration::from_secs(5));
        assert_eq!(rec(1).remaining(later), Duration::ZERO);
    }

    #[test]
    fn backoff_record_resets_on_success() {
        let now: Timestamp = "2024-01-01T00:01:00Z".parse().unwrap();
        let failed = |t: &str| {
            pod(
                json!({"metadata": {"name": "f"}, "status": {"phase": "Failed", "containerStatuses": [
                {"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 1, "finishedAt": t}}}]}}),
            )
        };
        let (a, b) = (
            failed("2024-01-01T00:00:10Z"),
            failed("2024-01-01T00:00:30Z"),
        );
        let succeeded = pod(
            json!({"metadata": {"name": "s"}, "status": {"phase": "Succeeded", "containerStatuses": [
            {"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 0, "finishedAt": "2024-01-01T00:00:20Z"}}}]}}),
        );
        let r = BackoffRecord::default().next(&[], &[&a, &b], now);
        assert_eq!(r.failures_after_last_success, 2);
        let r = r.next(&[&succeeded], &[&a, &b], now);
        assert_eq!(
            r.failures_after_last_success, 1,
            "only the failure after the success"
        );
    }

    #[test]
    fn pod_failure_policy_rules() {
        let policy: PodFailurePolicy = serde_json::from_value(json!({"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [42]}},
        ]}))
        .unwrap();
        let failed = |code: i32, cond: bool| {
            let mut p = json!({"metadata": {"name": "p", "namespace": "ns"}, "status": {"phase": "Failed", "containerStatuses": [
                {"name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": code}}}]}});
            if cond {
                p["status"]["conditions"] = json!([{"type": "DisruptionTarget", "status": "True"}]);
            }
            pod(p)
        };
        let (msg, count, action) = match_pod_failure_policy(&policy, &failed(42, false));
        assert_eq!(
            msg.as_deref(),
            Some(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1"
            )
        );
        assert!(count);
        assert_eq!(action.as_deref(), Some("FailJob"));
        assert_eq!(
            match_pod_failure_policy(&policy, &failed(42, true)),
            (None, false, Some("Ignore".into()))
        );
        assert_eq!(
            match_pod_failure_policy(&policy, &failed(1, false)),
            (None, true, Some("Count".into()))
        );
    }

    #[test]
    fn pending_indexes_skip_succeeded_and_active() {
        let active =
            pod(json!({"metadata": {"name": "a", "annotations": {COMPLETION_INDEX: "1"}}}));
        let done = Indexes([0].into_iter().collect());
        assert_eq!(first_pending_indexes(&done, &[&active], 2, 5), vec![2, 3]);
        assert_eq!(first_pending_indexes(&done, &[&active], 9, 3), vec![2]);
    }
}
