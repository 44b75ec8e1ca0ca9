//! rbac.authorization.k8s.io/v1 (upstream pkg/registry/rbac and pkg/apis/rbac/validation).
//! RBAC names are path segments (colons allowed: `system:controller:foo`), not DNS names.
//!
//! Validation: rules need verbs, resource rules an apiGroup and a resource, non-resource URLs
//! only in ClusterRoles and never with resources; a binding's roleRef is Role or ClusterRole of
//! this group (ClusterRole only for ClusterRoleBindings) and never changes; subjects are a
//! User, Group (of this group) or ServiceAccount (with a namespace in ClusterRoleBindings).
//!
//! Escalation prevention (upstream's policybased storages): writing a Role or ClusterRole needs
//! the `escalate` verb on it or holding every rule it grants; writing a binding needs `bind` on
//! its role or holding the role's rules. `system:masters` and the server itself (no requester)
//! are exempt. The check runs in `allocate`, the last step before the write, on the object
//! as it will be stored; the requester and the server come from [`with_requester`].

use super::{Ctx, Strategy, info};
use crate::ApiServer;
use crate::auth::User;
use crate::auth::authz::{Attributes, Decision};
use crate::auth::rbac::{GROUP, PolicyRule, parse_binding, parse_rules};
use kaji_api::{ApiError, FieldError, ResourceInfo, validation};
use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;

tokio::task_local! {
    static REQUESTER: (Arc<ApiServer>, User);
}

/// Runs a request's handling knowing the server and who asks (for the escalation checks).
pub async fn with_requester<F: Future>(server: Arc<ApiServer>, user: User, f: F) -> F::Output {
    REQUESTER.scope((server, user), f).await
}

/// The user of the request being handled (None for the server's own writes).
pub fn requester() -> Option<User> {
    REQUESTER.try_with(|r| r.1.clone()).ok()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
}

struct Rbac(ResourceInfo, Kind);

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    all.push(Arc::new(Rbac(
        info(GROUP, "v1", "Role", "roles", "role", true, &[], &[]),
        Kind::Role,
    )));
    all.push(Arc::new(Rbac(
        info(
            GROUP,
            "v1",
            "RoleBinding",
            "rolebindings",
            "rolebinding",
            true,
            &[],
            &[],
        ),
        Kind::RoleBinding,
    )));
    all.push(Arc::new(Rbac(
        info(
            GROUP,
            "v1",
            "ClusterRole",
            "clusterroles",
            "clusterrole",
            false,
            &[],
            &[],
        ),
        Kind::ClusterRole,
    )));
    all.push(Arc::new(Rbac(
        info(
            GROUP,
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            "clusterrolebinding",
            false,
            &[],
            &[],
        ),
        Kind::ClusterRoleBinding,
    )));
}

fn strings(v: Option<&Value>) -> usize {
    v.and_then(Value::as_array).map_or(0, Vec::len)
}

/// Upstream's ValidatePolicyRule.
fn validate_rule(rule: &Value, namespaced: bool, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if strings(rule.get("verbs")) == 0 {
        errs.push(FieldError::required(
            format!("{path}.verbs"),
            "verbs must contain at least one value",
        ));
    }
    if strings(rule.get("nonResourceURLs")) > 0 {
        let urls = rule.get("nonResourceURLs").cloned().unwrap_or(Value::Null);
        if namespaced {
            errs.push(FieldError::invalid(
                format!("{path}.nonResourceURLs"),
                &urls,
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if strings(rule.get("apiGroups")) > 0
            || strings(rule.get("resources")) > 0
            || strings(rule.get("resourceNames")) > 0
        {
            errs.push(FieldError::invalid(
                format!("{path}.nonResourceURLs"),
                &urls,
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return errs;
    }
    if strings(rule.get("apiGroups")) == 0 {
        errs.push(FieldError::required(
            format!("{path}.apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if strings(rule.get("resources")) == 0 {
        errs.push(FieldError::required(
            format!("{path}.resources"),
            "resource rules must supply at least one resource",
        ));
    }
    errs
}

fn validate_role(obj: &Value, namespaced: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, rule) in obj
        .get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        errs.extend(validate_rule(rule, namespaced, &format!("rules[{i}]")));
    }
    if !namespaced && let Some(agg) = obj.get("aggregationRule").filter(|a| !a.is_null()) {
        if strings(agg.get("clusterRoleSelectors")) == 0 {
            errs.push(FieldError::required(
                "aggregationRule.clusterRoleSelectors",
                "at least one clusterRoleSelector required if aggregationRule is non-nil",
            ));
        }
        for (i, sel) in agg
            .get("clusterRoleSelectors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if kaji_api::selector::LabelSelector::from_object(sel).is_err() {
                errs.push(FieldError::invalid(
                    format!("aggregationRule.clusterRoleSelectors[{i}]"),
                    sel,
                    "invalid label selector.",
                ));
            }
        }
    }
    errs
}

/// Upstream's ValidateRoleBindingSubject.
fn validate_subject(s: &Value, namespaced: bool, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let get = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or_default();
    let (name, kind, group) = (get("name"), get("kind"), get("apiGroup"));
    if name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    }
    match kind {
        "ServiceAccount" => {
            if !name.is_empty() {
                for m in validation::dns1123_subdomain(name) {
                    errs.push(FieldError::invalid(
                        format!("{path}.name"),
                        &json!(name),
                        &m,
                    ));
                }
            }
            if !group.is_empty() {
                errs.push(FieldError::not_supported(
                    format!("{path}.apiGroup"),
                    group,
                    &[""],
                ));
            }
            if !namespaced && get("namespace").is_empty() {
                errs.push(FieldError::required(format!("{path}.namespace"), ""));
            }
        }
        "User" | "Group" => {
            if group != GROUP {
                errs.push(FieldError::not_supported(
                    format!("{path}.apiGroup"),
                    group,
                    &[GROUP],
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            format!("{path}.kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        )),
    }
    errs
}

fn validate_binding(obj: &Value, namespaced: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let get = |k: &str| {
        obj.pointer(&format!("/roleRef/{k}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    if get("apiGroup") != GROUP {
        errs.push(FieldError::not_supported(
            "roleRef.apiGroup",
            get("apiGroup"),
            &[GROUP],
        ));
    }
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&get("kind")) {
        errs.push(FieldError::not_supported(
            "roleRef.kind",
            get("kind"),
            kinds,
        ));
    }
    let name = get("name");
    if name.is_empty() {
        errs.push(FieldError::required("roleRef.name", ""));
    } else {
        for m in validation::path_segment_name(name) {
            errs.push(FieldError::invalid("roleRef.name", &json!(name), &m));
        }
    }
    for (i, s) in obj
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        errs.extend(validate_subject(s, namespaced, &format!("subjects[{i}]")));
    }
    errs
}

/// Go's `%#v` of an rbac.RoleRef, as upstream shows it in `cannot change roleRef`.
fn role_ref_go(obj: &Value) -> String {
    let get = |k: &str| {
        obj.pointer(&format!("/roleRef/{k}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    format!(
        "rbac.RoleRef{{APIGroup:{:?}, Kind:{:?}, Name:{:?}}}",
        get("apiGroup"),
        get("kind"),
        get("name")
    )
}

/// Upstream's IsOnlyMutatingGCFields: only ownerReferences and finalizers changed.
fn only_gc_fields(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in [
                "ownerReferences",
                "finalizers",
                "managedFields",
                "resourceVersion",
                "generation",
            ] {
                m.remove(k);
            }
        }
        v
    };
    strip(new) == strip(old)
}

fn go_quoted_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(" "))
}

/// Upstream's ConfirmNoEscalation: the requester must hold every rule of `rules` in `namespace`.
pub fn confirm_no_escalation(
    server: &ApiServer,
    user: &User,
    namespace: &str,
    rules: &[PolicyRule],
) -> Result<(), String> {
    let (owner, errors) = server.auth.rbac.rules_for(user, namespace);
    let (ok, missing) = crate::auth::rbac::covers(&owner, rules);
    if ok {
        return Ok(());
    }
    let mut lines: Vec<String> = crate::auth::rbac::rules::compact(missing)
        .iter()
        .map(crate::auth::rbac::rules::compact_string)
        .collect();
    lines.sort();
    lines.dedup();
    let mut msg = format!(
        "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        go_quoted_list(&user.groups),
        lines.join("\n")
    );
    if !errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", errors.join(" ")));
    }
    Err(msg)
}

/// Whether the authorizer chain allows `verb` on an RBAC resource (escalate, bind).
fn authorized(
    server: &ApiServer,
    user: &User,
    verb: &str,
    resource: &str,
    namespace: &str,
    name: &str,
) -> bool {
    let a = Attributes {
        user: user.clone(),
        verb: verb.into(),
        resource_request: true,
        api_group: GROUP.into(),
        api_version: "v1".into(),
        namespace: namespace.into(),
        resource: resource.into(),
        name: name.into(),
        ..Attributes::default()
    };
    crate::auth::authz::authorize(&server.auth, &a).0 == Decision::Allow
}

impl Rbac {
    fn forbidden(&self, name: &str, reason: &str) -> ApiError {
        ApiError::forbidden(format!(
            "{}.{GROUP} {name:?} is forbidden: {reason}",
            self.0.plural
        ))
        .with_details(GROUP, self.0.plural, name)
    }

    /// The escalation check of upstream's policybased storages for a write of `obj`.
    fn check_escalation(&self, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
        let Ok((server, user)) = REQUESTER.try_with(|r| r.clone()) else {
            return Ok(());
        };
        if user.in_group(crate::auth::MASTERS) || old.is_some_and(|o| only_gc_fields(obj, o)) {
            return Ok(());
        }
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let namespace = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let namespace = if self.0.namespaced { namespace } else { "" };
        match self.1 {
            Kind::Role | Kind::ClusterRole => {
                if authorized(&server, &user, "escalate", self.0.plural, namespace, name) {
                    return Ok(());
                }
                confirm_no_escalation(&server, &user, namespace, &parse_rules(obj))
                    .map_err(|e| self.forbidden(name, &e))?;
                // Only a cluster admin may aggregate (the aggregated rules are anyone's).
                let aggregates =
                    |o: &Value| strings(o.pointer("/aggregationRule/clusterRoleSelectors")) > 0;
                if self.1 == Kind::ClusterRole && (aggregates(obj) || old.is_some_and(aggregates)) {
                    let full = [
                        PolicyRule {
                            verbs: vec!["*".into()],
                            api_groups: vec!["*".into()],
                            resources: vec!["*".into()],
                            ..PolicyRule::default()
                        },
                        PolicyRule {
                            verbs: vec!["*".into()],
                            non_resource_urls: vec!["*".into()],
                            ..PolicyRule::default()
                        },
                    ];
                    if confirm_no_escalation(&server, &user, "", &full).is_err() {
                        return Err(self.forbidden(
                            name,
                            "must have cluster-admin privileges to use the aggregationRule",
                        ));
                    }
                }
                Ok(())
            }
            Kind::RoleBinding | Kind::ClusterRoleBinding => {
                let b = parse_binding(obj);
                let resource = if b.role_ref.kind == "Role" {
                    "roles"
                } else {
                    "clusterroles"
                };
                if authorized(
                    &server,
                    &user,
                    "bind",
                    resource,
                    namespace,
                    &b.role_ref.name,
                ) {
                    return Ok(());
                }
                let rules = {
                    let index = server.auth.rbac.read();
                    match b.role_ref.kind.as_str() {
                        "Role" => index
                            .role(namespace, &b.role_ref.name)
                            .map(<[PolicyRule]>::to_vec),
                        _ => index
                            .cluster_role(&b.role_ref.name)
                            .map(<[PolicyRule]>::to_vec),
                    }
                };
                let Some(rules) = rules else {
                    let what = if b.role_ref.kind == "Role" {
                        "role"
                    } else {
                        "clusterrole"
                    };
                    return Err(self.forbidden(
                        name,
                        &format!("{what}.{GROUP} {:?} not found", b.role_ref.name),
                    ));
                };
                confirm_no_escalation(&server, &user, namespace, &rules)
                    .map_err(|e| self.forbidden(name, &e))
            }
        }
    }
}

impl Strategy for Rbac {
    fn info(&self) -> &ResourceInfo {
        &self.0
    }

    fn validate_name(&self, name: &str) -> Vec<String> {
        validation::path_segment_name(name)
    }

    /// rbac/v1 defaults: a roleRef's and a User/Group subject's apiGroup.
    fn default(&self, obj: &mut Value) {
        if matches!(self.1, Kind::RoleBinding | Kind::ClusterRoleBinding) {
            if let Some(r) = obj.get_mut("roleRef").and_then(Value::as_object_mut)
                && r.get("apiGroup")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .is_empty()
            {
                r.insert("apiGroup".into(), json!(GROUP));
            }
            for s in obj
                .get_mut("subjects")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                let Some(s) = s.as_object_mut() else { continue };
                let kind = s.get("kind").and_then(Value::as_str).unwrap_or_default();
                let empty = s
                    .get("apiGroup")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .is_empty();
                if empty && (kind == "User" || kind == "Group") {
                    s.insert("apiGroup".into(), json!(GROUP));
                }
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        match self.1 {
            Kind::Role => validate_role(obj, true),
            Kind::ClusterRole => validate_role(obj, false),
            Kind::RoleBinding => validate_binding(obj, true),
            Kind::ClusterRoleBinding => validate_binding(obj, false),
        }
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if matches!(self.1, Kind::RoleBinding | Kind::ClusterRoleBinding)
            && new.get("roleRef") != old.get("roleRef")
        {
            errs.push(FieldError {
                reason: "FieldValueInvalid",
                field: "roleRef".into(),
                detail: format!("Invalid value: {}: cannot change roleRef", role_ref_go(new)),
            });
        }
        errs
    }

    fn allocate(
        &self,
        _ctx: &Ctx<'_>,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        self.check_escalation(obj, old)
    }
}
