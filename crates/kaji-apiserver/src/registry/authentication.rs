//! authentication.k8s.io/v1: TokenReview (upstream `pkg/registry/authentication/tokenreview`:
//! who a bearer token is, for which audiences) and SelfSubjectReview
//! (`pkg/registry/authentication/selfsubjectreview`: who the caller is, `kubectl auth whoami`).
//! Both are create-only and never stored; `rest::dispatch` hands the group to [`dispatch`].

use super::{Strategy, info};
use crate::rest::{Call, Reply};
use kaji_api::{ApiError, FieldError, ResourceInfo};
use serde_json::{Value, json};
use std::sync::Arc;

pub const GROUP: &str = "authentication.k8s.io";

const CREATE: &[&str] = &["create"];

static TOKEN_REVIEW: ResourceInfo = ResourceInfo {
    verbs: CREATE,
    ..info(
        GROUP,
        "v1",
        "TokenReview",
        "tokenreviews",
        "",
        false,
        &[],
        &[],
    )
};
static SELF_SUBJECT_REVIEW: ResourceInfo = ResourceInfo {
    verbs: CREATE,
    ..info(
        GROUP,
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
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
    all.push(Arc::new(Review(&TOKEN_REVIEW)));
    all.push(Arc::new(Review(&SELF_SUBJECT_REVIEW)));
}

/// POST of a TokenReview or a SelfSubjectReview; every other verb is 405.
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
        "TokenReview" => token_review(&call, body).await?,
        _ => self_subject_review(body),
    };
    Ok(Reply::Json {
        code: 201,
        body: out,
        warnings: Vec::new(),
    })
}

fn user_info(user: &crate::auth::User) -> Value {
    let mut u = json!({"username": user.name});
    if !user.uid.is_empty() {
        u["uid"] = json!(user.uid);
    }
    if !user.groups.is_empty() {
        u["groups"] = json!(user.groups);
    }
    if !user.extra.is_empty() {
        u["extra"] = json!(user.extra);
    }
    u
}

fn stamp(mut obj: Value, kind: &str) -> Value {
    obj["kind"] = json!(kind);
    obj["apiVersion"] = json!("authentication.k8s.io/v1");
    let meta = crate::objects::meta_mut(&mut obj);
    meta.insert(
        "creationTimestamp".into(),
        json!(crate::objects::now_rfc3339()),
    );
    obj
}

/// Upstream's TokenReview REST: `spec.token` is required (422); the answer's status says
/// whether it authenticates, as whom and for which audiences, or the error.
async fn token_review(call: &Call<'_>, body: Value) -> Result<Value, ApiError> {
    let token = body
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if token.is_empty() {
        return Err(ApiError::invalid(
            GROUP,
            "TokenReview",
            "",
            vec![FieldError::required("spec.token", "")],
        ));
    }
    let server = call.server;
    let tokens = &server.auth.service_accounts;
    let requested: Vec<String> = body
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let audiences = if requested.is_empty() {
        tokens.api_audiences.clone()
    } else {
        requested.clone()
    };
    let mut out = stamp(body, "TokenReview");
    if let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("token");
    }
    out["status"] = match tokens.review(server, &token, &audiences).await {
        Ok((info, good_for)) => {
            let user = info.user().authenticated();
            json!({"authenticated": true, "user": user_info(&user), "audiences": good_for})
        }
        // The other bearer-token authenticators know no audiences: only the API server's own.
        Err(e) => match crate::auth::authn::authenticate(server, None, &bearer(&token)).await {
            Ok(Some(user)) if requested.is_empty() && user.name != crate::auth::ANONYMOUS => {
                json!({"authenticated": true, "user": user_info(&user), "audiences": audiences})
            }
            _ => json!({"user": {}, "error": format!("[invalid bearer token, {e}]")}),
        },
    };
    Ok(out)
}

fn bearer(token: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(&format!("Bearer {token}")) {
        h.insert(http::header::AUTHORIZATION, v);
    }
    h
}

/// Upstream's SelfSubjectReview REST: the caller's user info.
fn self_subject_review(body: Value) -> Value {
    let user = crate::registry::certificates::current_user(|u| u.cloned()).unwrap_or_default();
    let mut out = stamp(body, "SelfSubjectReview");
    out["status"] = json!({"userInfo": user_info(&user)});
    out
}
