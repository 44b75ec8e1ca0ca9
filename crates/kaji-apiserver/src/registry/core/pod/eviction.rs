//! pods/eviction (upstream's EvictionREST, pkg/registry/core/pod/storage/eviction.go): deletes
//! the pod with the eviction's DeleteOptions unless its PodDisruptionBudget forbids it.
//!
//! - Pods that are Pending, finished or already being deleted go without looking at budgets.
//! - More than one budget selecting the pod: 500, as upstream.
//! - A pod that is not Ready goes without using up the budget when the budget's
//!   `unhealthyPodEvictionPolicy` is AlwaysAllow, or (IfHealthyBudget, the default) when the
//!   budget is met (`currentHealthy >= desiredHealthy > 0`); the delete is then conditional on
//!   the pod's resourceVersion, so a pod that just became ready is not lost.
//! - Otherwise the budget is checked and decremented in one compare-and-swap of its status: not
//!   yet processed for its generation, or no disruption allowed -> 429 TooManyRequests "Cannot
//!   evict pod as it would violate the pod's disruption budget." with a DisruptionBudget cause;
//!   else `disruptionsAllowed` goes down by one (the DisruptionAllowed condition turning False
//!   at zero) and the pod is noted in `disruptedPods`, so that the disruption controller does
//!   not count it as healthy until it is gone.

use crate::objects::meta_str;
use crate::registry::store::{DeleteOptions, Filter, ListOptions, Part, Store, WriteOptions};
use kaji_api::status::success_status;
use kaji_api::{ApiError, FieldError};
use serde_json::{Value, json};

/// Upstream `MaxDisruptedPodSize`.
const MAX_DISRUPTED_PODS: usize = 2000;
const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

/// Upstream `canIgnorePDB`: the pod's disruption has happened already or never counted.
fn can_ignore_budget(pod: &Value) -> bool {
    matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed" | "Pending")) || crate::objects::is_deleting(pod)
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c.get("type").and_then(Value::as_str) == Some("Ready") && c.get("status").and_then(Value::as_str) == Some("True")))
}

fn int(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// 429 with a DisruptionBudget cause (upstream `NewTooManyRequests` plus the cause).
fn too_many_requests(cause: String, retry_after: Option<u32>) -> ApiError {
    let mut e = ApiError::new(429, "TooManyRequests", VIOLATION);
    e.causes = vec![FieldError { reason: "DisruptionBudget", field: String::new(), detail: cause }];
    e.retry_after_seconds = retry_after;
    e
}

fn forbidden(pdb: &str, why: &str) -> ApiError {
    let mut e = ApiError::new(403, "Forbidden", format!("poddisruptionbudget.policy {pdb:?} is forbidden: {why}"));
    e.group = Some("policy".into());
    e.kind = Some("poddisruptionbudget".into());
    e.name = Some(pdb.to_string());
    e
}

/// Upstream `checkAndDecrement` on the stored budget `cur`: the budget with one disruption
/// fewer and `pod` noted as disrupted, or why the eviction is refused.
fn check_and_decrement(cur: &Value, pod: &str, dry_run: bool) -> Result<Value, ApiError> {
    let name = meta_str(cur, "name").unwrap_or_default().to_string();
    let generation = cur.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    if int(cur, "/status/observedGeneration") < generation {
        return Err(too_many_requests(format!("The disruption budget {name} is still being processed by the server."), Some(10)));
    }
    let allowed = int(cur, "/status/disruptionsAllowed");
    if allowed < 0 {
        return Err(forbidden(&name, "pdb disruptions allowed is negative"));
    }
    let disrupted = cur.pointer("/status/disruptedPods").and_then(Value::as_object).map_or(0, |m| m.len());
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(forbidden(&name, "DisruptedPods map too big - too many evictions not confirmed by PDB controller"));
    }
    if allowed == 0 {
        return Err(too_many_requests(
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                int(cur, "/status/desiredHealthy"),
                int(cur, "/status/currentHealthy")
            ),
            None,
        ));
    }
    let mut next = cur.clone();
    next["status"]["disruptionsAllowed"] = json!(allowed - 1);
    if allowed - 1 == 0 {
        set_insufficient(&mut next);
    }
    if !dry_run {
        let status = &mut next["status"];
        if !status.get("disruptedPods").is_some_and(Value::is_object) {
            status["disruptedPods"] = json!({});
        }
        status["disruptedPods"][pod] = json!(crate::objects::now_rfc3339());
    }
    Ok(next)
}

/// Upstream `UpdateDisruptionAllowedCondition` with no disruption left: DisruptionAllowed
/// False, InsufficientPods.
fn set_insufficient(pdb: &mut Value) {
    let observed = pdb.pointer("/status/observedGeneration").cloned();
    let now = crate::objects::now_rfc3339();
    let mut conds = pdb.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    match conds.iter_mut().find(|c| c.get("type").and_then(Value::as_str) == Some("DisruptionAllowed")) {
        Some(c) => {
            if c.get("status").and_then(Value::as_str) != Some("False") {
                c["status"] = json!("False");
                c["lastTransitionTime"] = json!(now);
            }
            c["reason"] = json!("InsufficientPods");
            c["message"] = json!("");
            match observed {
                Some(g) => c["observedGeneration"] = g,
                None => {
                    c.as_object_mut().map(|m| m.remove("observedGeneration"));
                }
            }
        }
        None => {
            let mut c = json!({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods", "message": "", "lastTransitionTime": now});
            if let Some(g) = observed {
                c["observedGeneration"] = g;
            }
            conds.push(c);
        }
    }
    pdb["status"]["conditions"] = json!(conds);
}

/// The budgets of the pod's namespace that select it (upstream `getPodDisruptionBudgets`: a
/// budget without a selector selects nothing, an empty one every pod).
async fn budgets_of(pdbs: &Store<'_>, namespace: Option<&str>, pod: &Value) -> Result<Vec<Value>, ApiError> {
    let page = pdbs.list(namespace, &Filter::everything(), &ListOptions::default()).await?;
    Ok(page
        .items
        .into_iter()
        .filter(|b| {
            b.pointer("/spec/selector")
                .filter(|s| !s.is_null())
                .and_then(|s| kaji_api::selector::LabelSelector::from_object(s).ok())
                .is_some_and(|sel| sel.matches_object(pod))
        })
        .collect())
}

/// What an eviction does once the budgets have been consulted.
enum Verdict {
    /// Delete the pod as asked.
    Delete,
    /// Delete the (unhealthy) pod only if it has not changed since it was read.
    DeleteIfUnchanged(String),
}

/// Evicts pod `name`; the answer is upstream's Status (code 201).
pub async fn evict(store: &Store<'_>, namespace: Option<&str>, name: &str, opts: &DeleteOptions) -> Result<Value, ApiError> {
    let pod = store.get(namespace, name).await?;
    crate::admission::node_restriction::admit_eviction(store.strategy.info(), name, &pod)?;
    let verdict = if can_ignore_budget(&pod) { Verdict::Delete } else { consult_budgets(store, namespace, name, opts).await? };
    let mut opts = opts.clone();
    if let Verdict::DeleteIfUnchanged(rv) = verdict
        && opts.preconditions.resource_version.is_none()
    {
        opts.preconditions.resource_version = Some(rv);
    }
    store.delete(namespace, name, &opts).await?;
    let info = store.strategy.info();
    let mut st = success_status(info.group, info.plural, name, meta_str(&pod, "uid").unwrap_or_default());
    st["code"] = json!(201);
    Ok(st)
}

async fn consult_budgets(store: &Store<'_>, namespace: Option<&str>, name: &str, opts: &DeleteOptions) -> Result<Verdict, ApiError> {
    let Some(pdb_strategy) = store.registry.get("policy", "v1", "poddisruptionbudgets") else {
        return Ok(Verdict::Delete);
    };
    let pdbs = store.with_strategy(&pdb_strategy);
    // Re-read: the pod may have changed since the caller's read.
    let pod = store.get(namespace, name).await?;
    if can_ignore_budget(&pod) {
        return Ok(Verdict::Delete);
    }
    let budgets = budgets_of(&pdbs, namespace, &pod).await?;
    let pdb = match budgets.as_slice() {
        [] => return Ok(Verdict::Delete),
        [one] => one,
        _ => return Err(ApiError::internal("This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.")),
    };
    if !is_ready(&pod) {
        let rv = meta_str(&pod, "resourceVersion").unwrap_or_default().to_string();
        if pdb.pointer("/spec/unhealthyPodEvictionPolicy").and_then(Value::as_str) == Some("AlwaysAllow") {
            return Ok(Verdict::DeleteIfUnchanged(rv));
        }
        let desired = int(pdb, "/status/desiredHealthy");
        if int(pdb, "/status/currentHealthy") >= desired && desired > 0 {
            return Ok(Verdict::DeleteIfUnchanged(rv));
        }
    }
    let pdb_name = meta_str(pdb, "name").unwrap_or_default().to_string();
    let write = WriteOptions { dry_run: opts.dry_run, field_manager: None };
    pdbs.guaranteed_update(namespace, &pdb_name, Part::Status, &write, |cur| check_and_decrement(cur, name, opts.dry_run)).await?;
    Ok(Verdict::Delete)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(allowed: i64, generation: i64, observed: i64) -> Value {
        json!({"metadata": {"name": "web", "generation": generation},
            "status": {"disruptionsAllowed": allowed, "currentHealthy": 2, "desiredHealthy": 2, "expectedPods": 3, "observedGeneration": observed,
                "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods", "message": "", "lastTransitionTime": "2024-01-01T00:00:00Z", "observedGeneration": observed}]}})
    }

    #[test]
    fn a_budget_with_room_is_decremented_and_notes_the_pod() {
        let next = check_and_decrement(&pdb(1, 1, 1), "p1", false).expect("allowed");
        assert_eq!(next.pointer("/status/disruptionsAllowed"), Some(&json!(0)));
        assert!(next.pointer("/status/disruptedPods/p1").is_some_and(Value::is_string));
        assert_eq!(next.pointer("/status/conditions/0/status"), Some(&json!("False")));
        assert_eq!(next.pointer("/status/conditions/0/reason"), Some(&json!("InsufficientPods")));
        let dry = check_and_decrement(&pdb(2, 1, 1), "p1", true).expect("allowed");
        assert_eq!(dry.pointer("/status/disruptionsAllowed"), Some(&json!(1)));
        assert!(dry.pointer("/status/disruptedPods").is_none());
        assert_eq!(dry.pointer("/status/conditions/0/status"), Some(&json!("True")));
    }

    #[test]
    fn refusals_as_upstream() {
        let e = check_and_decrement(&pdb(0, 1, 1), "p1", false).expect_err("refused");
        assert_eq!((e.code, e.reason, e.message.as_str()), (429, "TooManyRequests", VIOLATION));
        assert_eq!(e.causes[0].reason, "DisruptionBudget");
        assert_eq!(e.causes[0].detail, "The disruption budget web needs 2 healthy pods and has 2 currently");
        let e = check_and_decrement(&pdb(1, 2, 1), "p1", false).expect_err("refused");
        assert_eq!(e.code, 429);
        assert_eq!(e.causes[0].detail, "The disruption budget web is still being processed by the server.");
        assert_eq!(e.retry_after_seconds, Some(10));
        let e = check_and_decrement(&pdb(-1, 1, 1), "p1", false).expect_err("refused");
        assert_eq!(e.code, 403);
        assert_eq!(e.message, "poddisruptionbudget.policy \"web\" is forbidden: pdb disruptions allowed is negative");
    }

    #[test]
    fn finished_pending_and_deleting_pods_skip_budgets() {
        assert!(can_ignore_budget(&json!({"status": {"phase": "Pending"}})));
        assert!(can_ignore_budget(&json!({"status": {"phase": "Succeeded"}})));
        assert!(can_ignore_budget(&json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Running"}})));
        assert!(!can_ignore_budget(&json!({"status": {"phase": "Running"}})));
    }
}
