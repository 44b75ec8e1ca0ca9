//! The ClusterRole aggregation controller, as upstream pkg/controller/clusterroleaggregation: a
//! ClusterRole with an `aggregationRule` gets as its rules the union of the rules of the
//! ClusterRoles its selectors match (in name order, each rule once). Any ClusterRole change
//! re-syncs the aggregated roles, so a new role labelled
//! `rbac.authorization.k8s.io/aggregate-to-view: "true"` extends `view` (and through it `edit`
//! and `admin`).

use crate::Options;
use futures::future::BoxFuture;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kaji_runtime::informer::Factory;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const COMPONENT: &str = "clusterrole-aggregation-controller";

pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let _ = opts;
    let changed = Arc::new(Notify::new());
    let roles = kaji_runtime::watch::reflect::<ClusterRole>(f, Default::default(), changed.clone());
    let client = f.client();
    let factory = f.clone();
    Box::pin(async move {
        factory.synced().await;
        let api: Api<ClusterRole> = Api::all(client);
        loop {
            // One pass over every aggregated role at a time (no two writers of one role); a
            // pass that lost a race is repeated once the cache has the winner's write.
            if let Some(after) = sync_all(&api, &roles.state()).await {
                tokio::time::sleep(after).await;
                continue;
            }
            changed.notified().await;
        }
    })
}

/// Brings every aggregated role's rules up to date; when a write must be retried, after how long.
async fn sync_all(api: &Api<ClusterRole>, all: &[Arc<ClusterRole>]) -> Option<Duration> {
    let mut retry = None;
    for role in all.iter().filter(|r| r.aggregation_rule.is_some()) {
        let Some(rules) = aggregated_rules(role, all) else {
            continue;
        };
        let current: Vec<PolicyRule> = role.rules.iter().flatten().map(normalize).collect();
        if current == rules {
            continue;
        }
        tracing::info!(clusterrole = %role.name_any(), rules = rules.len(), "aggregating ClusterRole rules");
        let mut next = (**role).clone();
        next.rules = Some(rules);
        let pp = PostParams {
            field_manager: Some(COMPONENT.into()),
            ..Default::default()
        };
        match api.replace(&role.name_any(), &pp, &next).await {
            Ok(_) => {}
            // Changed or gone meanwhile: the informer brings the news.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
                retry = retry.or(Some(Duration::from_millis(50)));
            }
            Err(e) => {
                tracing::warn!(controller = COMPONENT, clusterrole = %role.name_any(), error = %e, "sync failed");
                retry = Some(Duration::from_secs(5));
            }
        }
    }
    retry
}

/// Empty lists and absent ones are the same rule (upstream compares semantically).
fn normalize(r: &PolicyRule) -> PolicyRule {
    let n = |v: &Option<Vec<String>>| v.clone().filter(|v| !v.is_empty());
    PolicyRule {
        api_groups: n(&r.api_groups),
        non_resource_urls: n(&r.non_resource_urls),
        resource_names: n(&r.resource_names),
        resources: n(&r.resources),
        verbs: r.verbs.clone(),
    }
}

/// The rules `role` aggregates from `all`, or None when it has no aggregationRule.
pub fn aggregated_rules(role: &ClusterRole, all: &[Arc<ClusterRole>]) -> Option<Vec<PolicyRule>> {
    let selectors = role
        .aggregation_rule
        .as_ref()?
        .cluster_role_selectors
        .clone()
        .unwrap_or_default();
    let mut matched: BTreeMap<String, &ClusterRole> = BTreeMap::new();
    for sel in &selectors {
        let Ok(sel) = kaji_runtime::selector::compile(sel) else {
            continue;
        };
        for other in all {
            if other.name_any() != role.name_any()
                && kaji_runtime::selector::matches(&sel, other.metadata.labels.as_ref())
            {
                matched.insert(other.name_any(), other);
            }
        }
    }
    let mut rules: Vec<PolicyRule> = Vec::new();
    for other in matched.values() {
        for r in other.rules.iter().flatten() {
            let r = normalize(r);
            if !rules.contains(&r) {
                rules.push(r);
            }
        }
    }
    Some(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn role(v: serde_json::Value) -> Arc<ClusterRole> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn unions_matching_roles_in_name_order_once() {
        let view = role(json!({"metadata": {"name": "view"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "view"}}]}}));
        let b = role(json!({"metadata": {"name": "b", "labels": {"agg": "view"}},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]}));
        let a = role(json!({"metadata": {"name": "a", "labels": {"agg": "view"}},
            "rules": [{"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]},
                      {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": []}]}));
        let other = role(json!({"metadata": {"name": "c"},
            "rules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]}));
        let all = vec![view.clone(), b, a, other.clone()];
        let rules = aggregated_rules(&view, &all).unwrap();
        let verbs: Vec<&str> = rules.iter().map(|r| r.verbs[0].as_str()).collect();
        assert_eq!(verbs, ["list", "get"]);
        assert!(aggregated_rules(&other, &all).is_none());
    }
}
