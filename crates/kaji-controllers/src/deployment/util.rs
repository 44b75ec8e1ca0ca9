//! The pure parts of the Deployment controller (upstream pkg/controller/deployment/util):
//! the pod-template hash, maxSurge/maxUnavailable fenceposts, revisions and conditions.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Annotations of a Deployment not copied to its ReplicaSets (upstream annotationsToSkip).
pub fn skip_annotation(key: &str) -> bool {
    matches!(
        key,
        "kubectl.kubernetes.io/last-applied-configuration"
            | REVISION
            | REVISION_HISTORY
            | DESIRED_REPLICAS
            | MAX_REPLICAS
            | "deprecated.deployment.rollback.to"
    )
}

/// The alphabet of upstream's `rand.SafeEncodeString` (no vowels, no look-alikes).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The `pod-template-hash` of a template: FNV-32a over the template (without the hash label)
/// and the collision count, printed in decimal and safe-encoded (upstream ComputeHash; the
/// serialization hashed is JSON rather than Go's spew, so the values differ from upstream's).
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut t = template.clone();
    strip_hash(&mut t);
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(serde_json::to_string(&t).unwrap_or_default().as_bytes());
    if let Some(c) = collision_count {
        feed(&c.to_le_bytes());
    }
    h.to_string()
        .bytes()
        .map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

fn strip_hash(t: &mut PodTemplateSpec) {
    if let Some(meta) = t.metadata.as_mut()
        && let Some(labels) = meta.labels.as_mut()
    {
        labels.remove(POD_TEMPLATE_HASH);
        if labels.is_empty() {
            meta.labels = None;
        }
    }
}

/// Whether two templates are equal but for the hash label (upstream EqualIgnoreHash).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let (mut a, mut b) = (a.clone(), b.clone());
    strip_hash(&mut a);
    strip_hash(&mut b);
    serde_json::to_value(&a).ok() == serde_json::to_value(&b).ok()
}

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn is_rolling_update(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        != Some("Recreate")
}

/// An int-or-percent of `total`, percents rounded up or down (upstream GetScaledValueFromIntOrPercent).
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> i32 {
    match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let Some(p) = s
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<i64>().ok())
            else {
                return 0;
            };
            let scaled = p * i64::from(total);
            let v = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            i32::try_from(v).unwrap_or(0)
        }
    }
}

/// maxSurge and maxUnavailable of a rolling update, both never zero at once (upstream
/// ResolveFenceposts). Defaults 25% each.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let quarter = IntOrString::String("25%".into());
    let surge = ru
        .and_then(|r| r.max_surge.clone())
        .unwrap_or_else(|| quarter.clone());
    let unavailable = ru
        .and_then(|r| r.max_unavailable.clone())
        .unwrap_or(quarter);
    let total = replicas(d);
    let surge = scaled_value(&surge, total, true);
    let mut unavailable = scaled_value(&unavailable, total, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

pub fn max_surge(d: &Deployment) -> i32 {
    if is_rolling_update(d) {
        fenceposts(d).0
    } else {
        0
    }
}

/// maxUnavailable capped at replicas; 0 for Recreate (upstream MaxUnavailable).
pub fn max_unavailable(d: &Deployment) -> i32 {
    let r = replicas(d);
    if !is_rolling_update(d) || r == 0 {
        return 0;
    }
    fenceposts(d).1.min(r)
}

pub fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

pub fn rs_status(rs: &ReplicaSet) -> (i32, i32, i32) {
    let s = rs.status.clone().unwrap_or_default();
    (
        s.replicas,
        s.ready_replicas.unwrap_or(0),
        s.available_replicas.unwrap_or(0),
    )
}

pub fn condition<'a>(d: &'a Deployment, type_: &str) -> Option<&'a DeploymentCondition> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
) -> DeploymentCondition {
    let now = Time(jiff::Timestamp::now());
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// Sets a condition: unchanged if status and reason are the same; the transition time kept if
/// only the reason changed (upstream SetDeploymentCondition).
pub fn set_condition(conds: &mut Vec<DeploymentCondition>, mut c: DeploymentCondition) {
    if let Some(cur) = conds.iter().find(|x| x.type_ == c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time.clone_from(&cur.last_transition_time);
        }
    }
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(v: serde_json::Value) -> Deployment {
        serde_json::from_value(v).expect("a deployment")
    }

    #[test]
    fn fenceposts_round_as_upstream() {
        let d = deploy(
            json!({"metadata": {}, "spec": {"replicas": 3, "selector": {}, "template": {}}}),
        );
        assert_eq!(fenceposts(&d), (1, 0));
        let d = deploy(
            json!({"metadata": {}, "spec": {"replicas": 10, "selector": {}, "template": {},
            "strategy": {"rollingUpdate": {"maxSurge": "30%", "maxUnavailable": "30%"}}}}),
        );
        assert_eq!(fenceposts(&d), (3, 3));
        let d = deploy(
            json!({"metadata": {}, "spec": {"replicas": 1, "selector": {}, "template": {},
            "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "10%"}}}}),
        );
        assert_eq!(fenceposts(&d), (0, 1));
    }

    #[test]
    fn hash_ignores_its_own_label() {
        let a: PodTemplateSpec =
            serde_json::from_value(json!({"metadata": {"labels": {"app": "web"}}}))
                .expect("template");
        let b: PodTemplateSpec = serde_json::from_value(
            json!({"metadata": {"labels": {"app": "web", "pod-template-hash": "x"}}}),
        )
        .expect("template");
        assert_eq!(compute_hash(&a, None), compute_hash(&b, None));
        assert_ne!(compute_hash(&a, None), compute_hash(&a, Some(1)));
        assert!(equal_ignore_hash(&a, &b));
        assert!(
            compute_hash(&a, None)
                .bytes()
                .all(|c| SAFE_ALPHABET.contains(&c))
        );
    }
}
