//! authorization.k8s.io/v1 (upstream pkg/registry/authorization): SubjectAccessReview (may a
//! user do something), SelfSubjectAccessReview (may I: `kubectl auth can-i`),
//! LocalSubjectAccessReview (a SubjectAccessReview bound to the URL's namespace) and
//! SelfSubjectRulesReview (what may I do in a namespace: `kubectl auth can-i --list`). All are
//! create-only and never stored; `rest::dispatch` hands the group to [`dispatch`]. Decisions
//! come from the whole authorizer chain of `--authorization-mode`.

use super::{Strategy, info};
use crate::auth::User;
use crate::auth::authz::{Attributes, Decision};
use crate::rest::{Call, Reply};
use kaji_api::{ApiError, FieldError, ResourceInfo};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const GROUP: &str = "authorization.k8s.io";

const CREATE: &[&str] = &["create"];

static SAR: ResourceInfo = ResourceInfo {
    verbs: CREATE,
    ..info(
        GROUP,
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        "",
        false,
        &[],
        &[],
    )
};
static SELF_SAR: ResourceInfo = ResourceInfo {
    verbs: CREATE,
    ..info(
        GROUP,
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        "",
        false,
        &[],
        &[],
    )
};
static LOCAL_SAR: ResourceInfo = ResourceInfo {
    verbs: CREATE,
    ..info(
        GROUP,
        "v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        "",
        true,
        &[],
        &[],
    )
};
static SELF_RULES: ResourceInfo = ResourceInfo {
    verbs: CREATE,
    ..info(
        GROUP,
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        "",
        false,
        &[],
        &[],
    )
};

struct Review(&'static ResourceInfo);

impl Strategy for Review {
    fn info(&self) -> &ResourceInfo {
        self.0
    }
}

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    for info in [&SAR, &SELF_SAR, &LOCAL_SAR, &SELF_RULES] {
        all.push(Arc::new(Review(info)));
    }
}

/// The requester, as the request handler recorded it.
fn requester() -> User {
    crate::registry::rbac::requester().unwrap_or_else(User::anonymous)
}

/// POST of one of the reviews; every other verb is 405.
pub async fn dispatch(call: Call<'_>, method: &http::Method) -> Result<Reply, ApiError> {
    if method != http::Method::POST || call.req.name.is_some() || call.req.subresource.is_some() {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let body = crate::rest::decode_body(&call)?;
    let info = call.strategy.info();
    if !body.is_object() {
        return Err(ApiError::bad_request(format!(
            "{} in version \"v1\" cannot be handled as a {}: the body is not an object",
            info.kind, info.kind
        )));
    }
    let out = match info.kind {
        "SelfSubjectRulesReview" => rules_review(&call, body)?,
        kind => access_review(&call, kind, body)?,
    };
    Ok(Reply::Json {
        code: 201,
        body: out,
        warnings: Vec::new(),
    })
}

fn stamp(mut obj: Value, kind: &str) -> Value {
    obj["kind"] = json!(kind);
    obj["apiVersion"] = json!("authorization.k8s.io/v1");
    let meta = crate::objects::meta_mut(&mut obj);
    meta.insert("creationTimestamp".into(), Value::Null);
    obj
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn strings_at(v: &Value, ptr: &str) -> Vec<String> {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The attributes a review's spec asks about (upstream's ResourceAttributesFrom /
/// NonResourceAttributesFrom).
pub fn attributes_of(user: User, spec: &Value) -> Attributes {
    if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        Attributes {
            user,
            verb: str_at(r, "/verb").into(),
            resource_request: true,
            api_group: str_at(r, "/group").into(),
            api_version: str_at(r, "/version").into(),
            namespace: str_at(r, "/namespace").into(),
            resource: str_at(r, "/resource").into(),
            subresource: str_at(r, "/subresource").into(),
            name: str_at(r, "/name").into(),
            ..Attributes::default()
        }
    } else {
        Attributes {
            user,
            verb: str_at(spec, "/nonResourceAttributes/verb").into(),
            path: str_at(spec, "/nonResourceAttributes/path").into(),
            ..Attributes::default()
        }
    }
}

fn access_review(call: &Call<'_>, kind: &str, body: Value) -> Result<Value, ApiError> {
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let resource = spec.get("resourceAttributes").is_some_and(Value::is_object);
    let non_resource = spec
        .get("nonResourceAttributes")
        .is_some_and(Value::is_object);
    let mut errs = Vec::new();
    if resource && non_resource {
        errs.push(FieldError::invalid(
            "spec.nonResourceAttributes",
            &json!("object"),
            "cannot be specified in combination with resourceAttributes",
        ));
    } else if !resource && !non_resource {
        errs.push(FieldError::invalid(
            "spec.resourceAttributes",
            &Value::Null,
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    }
    let user = match kind {
        "SelfSubjectAccessReview" => requester(),
        _ => {
            let name = str_at(&spec, "/user").to_string();
            let groups = strings_at(&spec, "/groups");
            if name.is_empty() && groups.is_empty() {
                errs.push(FieldError::invalid(
                    "spec.user",
                    &json!(""),
                    "at least one of user or group must be specified",
                ));
            }
            let extra: BTreeMap<String, Vec<String>> = spec
                .get("extra")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), strings_at(v, "")))
                        .collect()
                })
                .unwrap_or_default();
            User {
                name,
                uid: str_at(&spec, "/uid").into(),
                groups,
                extra,
            }
        }
    };
    if kind == "LocalSubjectAccessReview" {
        let ns = call.req.namespace.clone().unwrap_or_default();
        if non_resource {
            errs.push(FieldError::invalid(
                "spec.nonResourceAttributes",
                &json!("object"),
                "disallowed on this kind of request",
            ));
        }
        if resource && str_at(&spec, "/resourceAttributes/namespace") != ns {
            return Err(ApiError::bad_request(format!(
                "spec.resourceAttributes.namespace must match namespace: {ns}"
            )));
        }
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid(GROUP, kind, "", errs));
    }
    let mut out = stamp(body, kind);
    let attrs = attributes_of(user, &spec);
    let (decision, reason) = crate::auth::authz::authorize(&call.server.auth, &attrs);
    let mut status = json!({"allowed": decision == Decision::Allow});
    if decision == Decision::Deny {
        status["denied"] = json!(true);
    }
    if !reason.is_empty() {
        status["reason"] = json!(reason);
    }
    out["status"] = status;
    Ok(out)
}

/// Upstream's SelfSubjectRulesReview: the requester's rules in `spec.namespace`, split into
/// resource and non-resource rules.
fn rules_review(call: &Call<'_>, body: Value) -> Result<Value, ApiError> {
    let namespace = str_at(&body, "/spec/namespace").to_string();
    let user = requester();
    let auth = &call.server.auth;
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    let mut incomplete = false;
    let all = || crate::auth::rbac::PolicyRule {
        verbs: vec!["*".into()],
        api_groups: vec!["*".into()],
        resources: vec!["*".into()],
        ..Default::default()
    };
    let all_urls = || crate::auth::rbac::PolicyRule {
        verbs: vec!["*".into()],
        non_resource_urls: vec!["*".into()],
        ..Default::default()
    };
    for mode in &auth.options.modes {
        match mode.as_str() {
            "AlwaysAllow" => {
                rules.push(all());
                rules.push(all_urls());
            }
            "RBAC" => {
                let (r, e) = auth.rbac.rules_for(&user, &namespace);
                rules.extend(r);
                errors.extend(e);
            }
            // The Node authorizer does not list a node's rules (upstream: incomplete).
            "Node" if user.in_group("system:nodes") && user.name.starts_with("system:node:") => {
                incomplete = true;
                errors.push("node authorizer does not support user rule resolution".to_string());
            }
            _ => {}
        }
    }
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for r in rules {
        if !r.resources.is_empty() {
            let mut v =
                json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
            if !r.resource_names.is_empty() {
                v["resourceNames"] = json!(r.resource_names);
            }
            resource_rules.push(v);
        }
        if !r.non_resource_urls.is_empty() {
            non_resource_rules
                .push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
        }
    }
    let mut out = stamp(body, "SelfSubjectRulesReview");
    let mut status = json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": incomplete});
    if !errors.is_empty() {
        status["evaluationError"] = json!(errors.join(", "));
    }
    out["status"] = status;
    Ok(out)
}
