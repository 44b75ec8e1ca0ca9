//! Authorization (k8s.io/apiserver/pkg/authorization/authorizer): a request's attributes, the
//! `Authorizer` trait, the chain of `--authorization-mode`, and the 403 upstream writes.

use super::User;
use crate::request::ResourceRequest;
use kaji_api::ApiError;
use std::collections::HashMap;

/// What a request asks to do (upstream's AttributesRecord).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub user: User,
    /// get, list, watch, create, update, patch, delete, deletecollection; for non-resource
    /// requests the lower-cased HTTP method (get, post, put, ...); `impersonate`, `bind`,
    /// `escalate`, `use`, ... for checks made on the way.
    pub verb: String,
    pub resource_request: bool,
    pub api_group: String,
    pub api_version: String,
    pub namespace: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// The URL path (what non-resource rules match).
    pub path: String,
    /// The request's raw `fieldSelector` (upstream's GetFieldSelector; the Node authorizer lets a
    /// node list its own pods with `spec.nodeName=<node>`).
    pub field_selector: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    NoOpinion,
}

/// One authorizer of the chain: `Allow` and `Deny` end the chain, `NoOpinion` asks the next.
/// The string is the reason (shown after the 403's message, and in SubjectAccessReviews).
pub trait Authorizer: Send + Sync {
    fn authorize(&self, a: &Attributes) -> (Decision, String);
}

/// Upstream's RequestInfoFactory verb for a resource request.
pub fn resource_verb(
    method: &http::Method,
    rr: &ResourceRequest,
    params: &HashMap<String, String>,
) -> String {
    // As upstream: the `/watch/` prefix makes any GET a watch; `?watch=true` only a GET that
    // names no object (a named GET with it is a get, e.g. through pods/proxy).
    let watch = params.get("watch").is_some_and(|w| w == "true" || w == "1");
    match *method {
        http::Method::GET | http::Method::HEAD if rr.watch_path || (watch && rr.name.is_none()) => "watch",
        http::Method::GET | http::Method::HEAD if rr.name.is_none() => "list",
        http::Method::GET | http::Method::HEAD => "get",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE if rr.name.is_none() => "deletecollection",
        http::Method::DELETE => "delete",
        _ => "",
    }
    .to_string()
}

/// The attributes of a request as upstream's WithAuthorization filter sees them.
pub fn attributes(
    user: &User,
    method: &http::Method,
    path: &str,
    query: Option<&str>,
) -> Attributes {
    match crate::request::route(path) {
        crate::request::Route::Resource(rr) => {
            let params = crate::request::query_params(query);
            let mut name = rr.name.clone().unwrap_or_default();
            // A list or watch narrowed to one object by `metadata.name=` is authorized on the
            // name, as upstream (kubectl get pod x -w, kubectl wait).
            if name.is_empty()
                && let Some(fs) = params.get("fieldSelector")
                && let Some(n) = fs.split(',').find_map(|t| t.strip_prefix("metadata.name="))
            {
                name = n.to_string();
            }
            Attributes {
                user: user.clone(),
                verb: resource_verb(method, &rr, &params),
                resource_request: true,
                api_group: rr.group.clone(),
                api_version: rr.version.clone(),
                // `/api/v1/namespaces/x` is the namespace object itself: upstream authorizes it
                // with namespace x.
                namespace: rr
                    .namespace
                    .clone()
                    .or_else(|| {
                        (rr.plural == "namespaces")
                            .then(|| rr.name.clone())
                            .flatten()
                    })
                    .unwrap_or_default(),
                resource: rr.plural.clone(),
                subresource: rr.subresource.clone().unwrap_or_default(),
                name,
                path: path.to_string(),
                field_selector: params.get("fieldSelector").cloned().unwrap_or_default(),
            }
        }
        _ => Attributes {
            user: user.clone(),
            verb: method.as_str().to_lowercase(),
            path: path.to_string(),
            ..Attributes::default()
        },
    }
}

/// Upstream's responsewriters.forbiddenMessage.
pub fn forbidden_message(a: &Attributes) -> String {
    let user = &a.user.name;
    if !a.resource_request {
        return format!("User {user:?} cannot {} path {:?}", a.verb, a.path);
    }
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    if a.namespace.is_empty() {
        format!(
            "User {user:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
            a.verb, a.api_group
        )
    } else {
        format!(
            "User {user:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
            a.verb, a.api_group, a.namespace
        )
    }
}

/// The 403 of upstream's responsewriters.Forbidden: `pods "x" is forbidden: User ... : reason`.
pub fn forbidden(a: &Attributes, reason: &str) -> ApiError {
    let mut msg = forbidden_message(a);
    if !reason.is_empty() {
        msg = format!("{msg}: {reason}");
    }
    if !a.resource_request {
        return ApiError::forbidden(format!("forbidden: {msg}"));
    }
    let qualified = if a.api_group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.api_group)
    };
    let message = if a.name.is_empty() {
        format!("{qualified} is forbidden: {msg}")
    } else {
        format!("{qualified} {:?} is forbidden: {msg}", a.name)
    };
    let mut e = ApiError::forbidden(message).with_details(&a.api_group, &a.resource, &a.name);
    // Upstream's details carry no `name` for a request that names no object.
    if a.name.is_empty() {
        e.name = None;
    }
    e
}

/// The chain of `--authorization-mode`: members of `system:masters` may do anything (upstream's
/// privileged-group authorizer, ahead of every mode), then each mode in order.
pub fn authorize(auth: &super::Auth, a: &Attributes) -> (Decision, String) {
    if a.user.in_group(super::MASTERS) {
        return (Decision::Allow, String::new());
    }
    let mut reasons = Vec::new();
    for mode in &auth.options.modes {
        let (d, reason) = match mode.as_str() {
            "AlwaysAllow" => (Decision::Allow, String::new()),
            "AlwaysDeny" => (Decision::Deny, String::new()),
            "Node" => auth.node.authorize(a),
            "RBAC" => auth.rbac.authorize(a),
            _ => (Decision::NoOpinion, String::new()),
        };
        match d {
            Decision::NoOpinion => {
                if !reason.is_empty() {
                    reasons.push(reason);
                }
            }
            d => return (d, reason),
        }
    }
    (Decision::NoOpinion, reasons.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_forbidden_messages() {
        let user = User::new("x", &[]);
        let a = attributes(&user, &http::Method::GET, "/api/v1/namespaces/y/pods", None);
        assert_eq!(a.verb, "list");
        assert_eq!(
            forbidden(&a, "").message,
            r#"pods is forbidden: User "x" cannot list resource "pods" in API group "" in the namespace "y""#
        );
        // No name in the details of a request that names no object.
        assert_eq!(forbidden(&a, "").to_status()["details"], serde_json::json!({"kind": "pods"}));
        let a = attributes(
            &user,
            &http::Method::GET,
            "/apis/apps/v1/deployments",
            Some("watch=true"),
        );
        assert_eq!(a.verb, "watch");
        assert_eq!(
            forbidden(&a, "").message,
            r#"deployments.apps is forbidden: User "x" cannot watch resource "deployments" in API group "apps" at the cluster scope"#
        );
        let a = attributes(
            &user,
            &http::Method::POST,
            "/api/v1/namespaces/y/pods/p/eviction",
            None,
        );
        assert_eq!(
            (a.verb.as_str(), a.subresource.as_str(), a.name.as_str()),
            ("create", "eviction", "p")
        );
        assert!(forbidden(&a, "").message.starts_with(
            r#"pods "p" is forbidden: User "x" cannot create resource "pods/eviction""#
        ));
        let a = attributes(&user, &http::Method::GET, "/logs", None);
        assert_eq!(
            forbidden(&a, "").message,
            r#"forbidden: User "x" cannot get path "/logs""#
        );
        let a = attributes(&user, &http::Method::DELETE, "/api/v1/namespaces/y", None);
        assert_eq!((a.namespace.as_str(), a.verb.as_str()), ("y", "delete"));
    }
}
