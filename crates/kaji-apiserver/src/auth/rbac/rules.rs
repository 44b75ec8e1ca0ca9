//! Policy rules: whether a rule allows a request (upstream's RuleAllows and the
//! evaluation helpers of pkg/apis/rbac/v1), whether one set of rules covers another (the
//! escalation check, component-helpers' policy_comparator), and the compact form upstream prints
//! in escalation errors.

use super::super::authz::Attributes;
use serde::{Deserialize, Serialize};

/// rbac/v1 PolicyRule.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicyRule {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verbs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    #[serde(rename = "nonResourceURLs", skip_serializing_if = "Vec::is_empty")]
    pub non_resource_urls: Vec<String>,
}

fn verb_matches(r: &PolicyRule, verb: &str) -> bool {
    r.verbs.iter().any(|v| v == "*" || v == verb)
}

fn group_matches(r: &PolicyRule, group: &str) -> bool {
    r.api_groups.iter().any(|g| g == "*" || g == group)
}

/// `resource` or `resource/subresource` against the rule's resources (`*`, exact,
/// `*/subresource`).
fn resource_matches(r: &PolicyRule, resource: &str, subresource: &str) -> bool {
    r.resources.iter().any(|rr| {
        if rr == "*" {
            return true;
        }
        if subresource.is_empty() {
            return rr == resource;
        }
        if let Some((res, sub)) = rr.split_once('/') {
            sub == subresource && (res == resource || res == "*")
        } else {
            false
        }
    })
}

fn name_matches(r: &PolicyRule, name: &str) -> bool {
    r.resource_names.is_empty() || r.resource_names.iter().any(|n| n == name)
}

fn url_matches(r: &PolicyRule, path: &str) -> bool {
    r.non_resource_urls.iter().any(|u| {
        u == "*" || u == path || (u.ends_with('*') && path.starts_with(u.trim_end_matches('*')))
    })
}

/// Upstream's RuleAllows.
pub fn rule_allows(a: &Attributes, r: &PolicyRule) -> bool {
    if a.resource_request {
        verb_matches(r, &a.verb)
            && group_matches(r, &a.api_group)
            && resource_matches(r, &a.resource, &a.subresource)
            && name_matches(r, &a.name)
    } else {
        verb_matches(r, &a.verb) && url_matches(r, &a.path)
    }
}

fn has(set: &[String], s: &str) -> bool {
    set.iter().any(|x| x == s)
}

fn has_all(set: &[String], contains: &[String]) -> bool {
    contains.iter().all(|c| has(set, c))
}

/// One (group, resource, verb[, name]) or (url, verb) tuple of a rule (upstream BreakdownRule).
pub fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |s: &String| vec![s.clone()];
    let mut out = Vec::new();
    for g in &rule.api_groups {
        for res in &rule.resources {
            for v in &rule.verbs {
                if rule.resource_names.is_empty() {
                    out.push(PolicyRule {
                        api_groups: one(g),
                        resources: one(res),
                        verbs: one(v),
                        ..PolicyRule::default()
                    });
                } else {
                    for n in &rule.resource_names {
                        out.push(PolicyRule {
                            api_groups: one(g),
                            resources: one(res),
                            verbs: one(v),
                            resource_names: one(n),
                            ..PolicyRule::default()
                        });
                    }
                }
            }
        }
    }
    for u in &rule.non_resource_urls {
        for v in &rule.verbs {
            out.push(PolicyRule {
                non_resource_urls: one(u),
                verbs: one(v),
                ..PolicyRule::default()
            });
        }
    }
    out
}

fn resources_cover(owner: &[String], wanted: &[String]) -> bool {
    if has(owner, "*") || has_all(owner, wanted) {
        return true;
    }
    wanted.iter().all(|p| {
        has(owner, p)
            || p.split_once('/')
                .is_some_and(|(_, sub)| has(owner, &format!("*/{sub}")))
    })
}

fn url_covers(owner: &str, sub: &str) -> bool {
    owner == sub || (owner.ends_with('*') && sub.starts_with(owner.trim_end_matches('*')))
}

fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, "*") || has_all(&owner.verbs, &sub.verbs);
    let groups = has(&owner.api_groups, "*") || has_all(&owner.api_groups, &sub.api_groups);
    let resources = resources_cover(&owner.resources, &sub.resources);
    let urls = sub
        .non_resource_urls
        .iter()
        .all(|p| owner.non_resource_urls.iter().any(|o| url_covers(o, p)));
    let names = if sub.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &sub.resource_names)
    };
    verbs && groups && resources && names && urls
}

/// Upstream's Covers: whether `owner` holds every rule of `servant`, and the tuples it lacks.
pub fn covers(owner: &[PolicyRule], servant: &[PolicyRule]) -> (bool, Vec<PolicyRule>) {
    let missing: Vec<PolicyRule> = servant
        .iter()
        .flat_map(breakdown)
        .filter(|s| !owner.iter().any(|o| rule_covers(o, s)))
        .collect();
    (missing.is_empty(), missing)
}

/// Upstream's CompactRules: simple rules (one group, one resource, at most one name) that differ
/// only in verbs become one.
pub fn compact(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    let mut simple: Vec<PolicyRule> = Vec::new();
    for r in rules {
        let is_simple = r.resource_names.len() <= 1
            && r.non_resource_urls.is_empty()
            && r.api_groups.len() == 1
            && r.resources.len() == 1;
        if !is_simple {
            out.push(r);
            continue;
        }
        match simple.iter_mut().find(|s| {
            s.api_groups == r.api_groups
                && s.resources == r.resources
                && s.resource_names == r.resource_names
        }) {
            Some(s) => s.verbs.extend(r.verbs),
            None => simple.push(r),
        }
    }
    out.extend(simple);
    out
}

/// Go's `%q` of a []string: `["a" "b"]`.
fn go_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(" "))
}

/// Upstream's CompactString: `{APIGroups:[""], Resources:["pods"], Verbs:["get"]}`.
pub fn compact_string(r: &PolicyRule) -> String {
    let mut parts = Vec::new();
    if !r.api_groups.is_empty() {
        parts.push(format!("APIGroups:{}", go_list(&r.api_groups)));
    }
    if !r.resources.is_empty() {
        parts.push(format!("Resources:{}", go_list(&r.resources)));
    }
    if !r.non_resource_urls.is_empty() {
        parts.push(format!("NonResourceURLs:{}", go_list(&r.non_resource_urls)));
    }
    if !r.resource_names.is_empty() {
        parts.push(format!("ResourceNames:{}", go_list(&r.resource_names)));
    }
    if !r.verbs.is_empty() {
        parts.push(format!("Verbs:{}", go_list(&r.verbs)));
    }
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::User;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        PolicyRule {
            verbs: v(verbs),
            api_groups: v(groups),
            resources: v(resources),
            ..PolicyRule::default()
        }
    }

    fn req(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            user: User::new("u", &[]),
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            namespace: "ns".into(),
            ..Attributes::default()
        }
    }

    #[test]
    fn resource_rules_match_as_upstream() {
        let pods = rule(&["get", "list"], &[""], &["pods"]);
        assert!(rule_allows(&req("get", "", "pods", "", "p"), &pods));
        assert!(!rule_allows(&req("delete", "", "pods", "", "p"), &pods));
        assert!(!rule_allows(&req("get", "apps", "pods", "", "p"), &pods));
        // A subresource needs its own rule.
        assert!(!rule_allows(&req("get", "", "pods", "log", "p"), &pods));
        let log = rule(&["get"], &[""], &["pods/log"]);
        assert!(rule_allows(&req("get", "", "pods", "log", "p"), &log));
        assert!(!rule_allows(&req("get", "", "pods", "", "p"), &log));
        let scale = rule(&["get"], &["*"], &["*/scale"]);
        assert!(rule_allows(
            &req("get", "apps", "deployments", "scale", "d"),
            &scale
        ));
        assert!(!rule_allows(
            &req("get", "apps", "deployments", "", "d"),
            &scale
        ));
        assert!(!rule_allows(
            &req("get", "apps", "deployments", "status", "d"),
            &scale
        ));
        let all = rule(&["*"], &["*"], &["*"]);
        assert!(rule_allows(
            &req("escalate", "x.io", "things", "sub", "n"),
            &all
        ));
        let mut named = rule(&["get", "update"], &["coordination.k8s.io"], &["leases"]);
        named.resource_names = vec!["kube-scheduler".into()];
        assert!(rule_allows(
            &req("get", "coordination.k8s.io", "leases", "", "kube-scheduler"),
            &named
        ));
        assert!(!rule_allows(
            &req("get", "coordination.k8s.io", "leases", "", "other"),
            &named
        ));
        // A list has no name: a rule with resourceNames does not allow it.
        assert!(!rule_allows(
            &req("list", "coordination.k8s.io", "leases", "", ""),
            &named
        ));
    }

    #[test]
    fn non_resource_rules_match_as_upstream() {
        let r = PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: vec!["/healthz*".into(), "/version".into()],
            ..PolicyRule::default()
        };
        let path = |p: &str| Attributes {
            verb: "get".into(),
            path: p.into(),
            ..Attributes::default()
        };
        assert!(rule_allows(&path("/healthz"), &r));
        assert!(rule_allows(&path("/healthz/etcd"), &r));
        assert!(rule_allows(&path("/version"), &r));
        assert!(!rule_allows(&path("/version/"), &r));
        assert!(!rule_allows(&path("/metrics"), &r));
        // A resource rule never matches a path.
        assert!(!rule_allows(&path("/api"), &rule(&["*"], &["*"], &["*"])));
    }

    #[test]
    fn covers_breaks_rules_down() {
        let owner = vec![
            rule(&["get", "list", "watch"], &[""], &["pods", "pods/log"]),
            rule(&["get"], &["*"], &["*/scale"]),
        ];
        assert!(covers(&owner, &[rule(&["get"], &[""], &["pods", "pods/log"])]).0);
        assert!(covers(&owner, &[rule(&["get"], &["apps"], &["deployments/scale"])]).0);
        let (ok, missing) = covers(
            &owner,
            &[rule(&["get", "delete"], &[""], &["pods", "secrets"])],
        );
        assert!(!ok);
        assert_eq!(missing.len(), 3);
        let compacted = compact(missing);
        let text: Vec<String> = compacted.iter().map(compact_string).collect();
        assert_eq!(
            text,
            [
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#,
                r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "delete"]}"#
            ]
        );
        let admin = vec![rule(&["*"], &["*"], &["*"])];
        assert!(covers(&admin, &owner).0);
        // Named owner rules do not cover unnamed ones.
        let mut named = rule(&["get"], &[""], &["pods"]);
        named.resource_names = vec!["a".into()];
        assert!(
            !covers(
                std::slice::from_ref(&named),
                &[rule(&["get"], &[""], &["pods"])]
            )
            .0
        );
        assert!(covers(&[rule(&["get"], &[""], &["pods"])], &[named]).0);
    }
}
