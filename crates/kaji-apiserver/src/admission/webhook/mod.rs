//! Dynamic admission webhooks (upstream's `admission/plugin/webhook`): the
//! MutatingAdmissionWebhook and ValidatingAdmissionWebhook plug-ins. The generic store calls
//! [`mutate`] after the built-in mutating admission (before the kind's validation) and
//! [`validate`] after the kind's validation, on create, update and delete.
//!
//! - `config`: the Validating/MutatingWebhookConfigurations, read from the store into a cache
//!   that a configuration write (or half a second) makes stale;
//! - `rules`: which webhooks a request matches (rules, scope, namespace and object selectors);
//! - `client`: one AdmissionReview v1 POST over HTTPS, to a URL or through a Service;
//! - `policy`: the ValidatingAdmissionPolicy plug-in (CEL policies and bindings, no webhook).
//!
//! A request knows who asks and collects the webhooks' warnings through [`in_request`], which
//! the HTTP server wraps around every request; writes outside a request (the server's own
//! bootstrap) call no webhooks.

mod client;
mod config;
mod policy;
pub(crate) use client::post_to;
pub(crate) use config::{Target, client_config};
mod rules;

use crate::ApiServer;
use crate::auth::User;
use crate::registry::store::{DeleteOptions, Part, WriteOptions};
use base64::Engine;
use config::Hook;
use kaji_api::{ApiError, ResourceInfo};
use serde_json::{Value, json};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct RequestScope {
    server: Arc<ApiServer>,
    user: User,
    warnings: Mutex<Vec<String>>,
}

tokio::task_local! {
    static SCOPE: Arc<RequestScope>;
}

/// Runs one request's handling with its server and user known to the webhooks; the warnings
/// the webhooks return go on the response as `Warning` headers.
pub async fn in_request<F>(
    server: Arc<ApiServer>,
    user: User,
    f: F,
) -> http::Response<crate::server::Body>
where
    F: Future<Output = http::Response<crate::server::Body>>,
{
    let scope = Arc::new(RequestScope {
        server,
        user,
        warnings: Mutex::new(Vec::new()),
    });
    let mut resp = SCOPE.scope(scope.clone(), f).await;
    let warnings = std::mem::take(
        &mut *scope
            .warnings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    for w in warnings {
        if let Ok(v) = http::HeaderValue::from_str(&format!("299 - {w:?}")) {
            resp.headers_mut().append("warning", v);
        }
    }
    resp
}

/// Adds a `Warning` header to the request's response.
fn warn(scope: &RequestScope, text: String) {
    scope.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(text);
}

fn scope() -> Option<Arc<RequestScope>> {
    SCOPE.try_with(Arc::clone).ok()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// What a webhook is told about a request (upstream's admission.Attributes).
pub struct Attributes<'a> {
    /// None: no webhooks for this write (a change the server computed itself).
    pub operation: Option<Operation>,
    pub info: &'a ResourceInfo,
    pub subresource: &'static str,
    pub namespace: Option<String>,
    pub name: String,
    pub old: Option<&'a Value>,
    pub dry_run: bool,
    /// CreateOptions, UpdateOptions or DeleteOptions.
    pub options: Value,
}

impl<'a> Attributes<'a> {
    pub fn create(
        info: &'a ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        opts: &WriteOptions,
    ) -> Attributes<'a> {
        let mut options = json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"});
        write_options(&mut options, opts);
        Attributes {
            operation: Some(Operation::Create),
            info,
            subresource: "",
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
            old: None,
            dry_run: opts.dry_run,
            options,
        }
    }

    /// An update of `part` (no webhooks for `Part::System`).
    pub fn update(
        info: &'a ResourceInfo,
        part: Part,
        namespace: Option<&str>,
        name: &str,
        old: &'a Value,
        opts: &WriteOptions,
    ) -> Attributes<'a> {
        let mut options = json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"});
        write_options(&mut options, opts);
        let operation = (part != Part::System).then_some(Operation::Update);
        let subresource = if part == Part::Status { "status" } else { "" };
        Attributes {
            operation,
            info,
            subresource,
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
            old: Some(old),
            dry_run: opts.dry_run,
            options,
        }
    }

    pub fn delete(
        info: &'a ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        old: &'a Value,
        opts: &DeleteOptions,
    ) -> Attributes<'a> {
        let mut options = json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"});
        if let Some(g) = opts.grace_period_seconds {
            options["gracePeriodSeconds"] = json!(g);
        }
        if let Some(p) = &opts.propagation_policy {
            options["propagationPolicy"] = json!(p);
        }
        if opts.dry_run {
            options["dryRun"] = json!(["All"]);
        }
        Attributes {
            operation: Some(Operation::Delete),
            info,
            subresource: "",
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
            old: Some(old),
            dry_run: opts.dry_run,
            options,
        }
    }
}

fn write_options(options: &mut Value, opts: &WriteOptions) {
    if opts.dry_run {
        options["dryRun"] = json!(["All"]);
    }
    if let Some(m) = &opts.field_manager {
        options["fieldManager"] = json!(m);
    }
}

/// The webhook configurations themselves (and the admission policies) never go to webhooks,
/// so that a broken webhook can always be removed (upstream's
/// IsExemptAdmissionConfigurationResource).
fn exempt(info: &ResourceInfo) -> bool {
    info.group == crate::registry::admissionregistration::GROUP
}

/// The webhooks of `mutating` kind this request matches, in order, with the server and user.
async fn matching(
    a: &Attributes<'_>,
    obj: Option<&Value>,
    mutating: bool,
) -> Option<(Arc<RequestScope>, Vec<Arc<Hook>>)> {
    a.operation?;
    if exempt(a.info) {
        // A configuration write: the cache reads the store again for the next second.
        if let Some(s) = scope() {
            config::invalidate(&s.server);
        }
        return None;
    }
    let scope = scope()?;
    let hooks = config::hooks(&scope.server).await;
    let mut out = Vec::new();
    let mut ns_labels = None;
    for h in hooks.iter().filter(|h| h.mutating == mutating) {
        if !rules::matches_rules(h, a) || !rules::matches_object(h, obj, a.old) {
            continue;
        }
        if !h.namespace_selector.is_empty() {
            if ns_labels.is_none() {
                ns_labels = Some(rules::namespace_labels(&scope.server, a, obj).await);
            }
            if let Some(Some(labels)) = &ns_labels
                && !h.namespace_selector.matches(Some(labels))
            {
                continue;
            }
        }
        out.push(h.clone());
    }
    (!out.is_empty()).then_some((scope, out))
}

/// Runs the mutating webhooks on `obj` (upstream's MutatingAdmissionWebhook, with one
/// reinvocation round for `reinvocationPolicy: IfNeeded`). Returns whether `obj` changed.
pub async fn mutate(a: &Attributes<'_>, obj: &mut Value) -> Result<bool, ApiError> {
    let Some((scope, hooks)) = matching(a, Some(&*obj), true).await else {
        return Ok(false);
    };
    let mut changed_at: Option<usize> = None;
    let mut invoked: Vec<(usize, &Arc<Hook>)> = Vec::new();
    let mut step = 0;
    for h in &hooks {
        step += 1;
        invoked.push((step, h));
        if call_mutating(&scope, h, a, Some(&mut *obj)).await? {
            changed_at = Some(step);
        }
    }
    let first_round_changed = changed_at;
    // Reinvoke IfNeeded webhooks that ran before a later webhook changed the object.
    if let Some(last) = first_round_changed {
        for (at, h) in invoked {
            if h.reinvoke && at < last {
                step += 1;
                if call_mutating(&scope, h, a, Some(&mut *obj)).await? {
                    changed_at = Some(step);
                }
            }
        }
    }
    Ok(changed_at.is_some())
}

/// DELETE goes to the mutating webhooks too (they may deny it, not change anything), then to
/// the validating ones.
pub async fn admit_delete(a: &Attributes<'_>) -> Result<(), ApiError> {
    if let Some((scope, hooks)) = matching(a, None, true).await {
        for h in &hooks {
            call_mutating(&scope, h, a, None).await?;
        }
    }
    validate(a, None).await
}

/// One mutating webhook: applies its JSON patch to `obj`. Returns whether it changed `obj`.
async fn call_mutating(
    scope: &RequestScope,
    h: &Hook,
    a: &Attributes<'_>,
    obj: Option<&mut Value>,
) -> Result<bool, ApiError> {
    let response = match call(scope, h, a, obj.as_deref()).await? {
        Some(r) => r,
        None => return Ok(false),
    };
    let Some(patch) = response
        .get("patch")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
    else {
        return Ok(false);
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let patch: Value =
        serde_json::from_slice(&raw).map_err(|e| ApiError::internal(e.to_string()))?;
    if patch.as_array().is_some_and(Vec::is_empty) {
        return Ok(false);
    }
    let Some(obj) = obj else {
        return Err(ApiError::internal(format!(
            "admission webhook {:?} attempted to modify the object, which is not supported for this operation",
            h.name
        )));
    };
    let patched =
        kaji_patch::json_patch(obj, &patch).map_err(|e| ApiError::internal(e.to_string()))?;
    if patched == *obj {
        return Ok(false);
    }
    *obj = patched;
    Ok(true)
}

/// Runs the validating webhooks (in parallel, as upstream); the first failure in webhook
/// order is the answer.
pub async fn validate(a: &Attributes<'_>, obj: Option<&Value>) -> Result<(), ApiError> {
    // The ValidatingAdmissionPolicy plug-in runs first, as upstream orders the plug-ins.
    policy::validate(a, obj).await?;
    let Some((scope, hooks)) = matching(a, obj, false).await else {
        return Ok(());
    };
    let results = futures::future::join_all(hooks.iter().map(|h| call(&scope, h, a, obj))).await;
    for r in results {
        r?;
    }
    Ok(())
}

/// Calls one webhook and judges its answer: a denial is the webhook's status; a failed call is
/// an internal error, or nothing with `failurePolicy: Ignore`. Returns the AdmissionReview's
/// `response` of an allowed request (None when the failure was ignored).
async fn call(
    scope: &RequestScope,
    h: &Hook,
    a: &Attributes<'_>,
    obj: Option<&Value>,
) -> Result<Option<Value>, ApiError> {
    if a.dry_run && !matches!(h.side_effects.as_str(), "None" | "NoneOnDryRun") {
        return Err(ApiError::bad_request(format!(
            "admission webhook {:?} does not support dry run",
            h.name
        )));
    }
    let uid = uuid::Uuid::new_v4().to_string();
    let review = review(h, a, &scope.user, &uid, obj);
    let timeout = Duration::from_secs(h.timeout_seconds);
    let result = match client::post(&scope.server, h, &review, timeout).await {
        Ok(body) => verify(&uid, h.mutating, &body),
        Err(e) => Err(format!("failed to call webhook: {e}")),
    };
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            let e = format!("failed calling webhook {:?}: {e}", h.name);
            if h.ignore_failures {
                tracing::warn!(webhook = %h.name, configuration = %h.configuration, error = %e, "failed calling webhook, failing open");
                return Ok(None);
            }
            tracing::warn!(webhook = %h.name, configuration = %h.configuration, error = %e, "failed calling webhook, failing closed");
            return Err(ApiError::internal(e));
        }
    };
    if let Some(ws) = response.get("warnings").and_then(Value::as_array) {
        let mut warnings = scope
            .warnings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        warnings.extend(ws.iter().filter_map(Value::as_str).map(str::to_string));
    }
    if response.get("allowed").and_then(Value::as_bool) != Some(true) {
        return Err(denied(&h.name, response.get("status")));
    }
    Ok(Some(response))
}

/// The AdmissionReview sent (admission.k8s.io/v1, or v1beta1 for a webhook that only takes it).
fn review(h: &Hook, a: &Attributes<'_>, user: &User, uid: &str, obj: Option<&Value>) -> Value {
    let info = a.info;
    let kind = json!({"group": info.group, "version": info.version, "kind": info.kind});
    let resource = json!({"group": info.group, "version": info.version, "resource": info.plural});
    let mut req = json!({
        "uid": uid,
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "name": a.name,
        "operation": a.operation.map_or("", Operation::as_str),
        "userInfo": user,
        "object": with_type(obj, info),
        "oldObject": with_type(a.old, info),
        "dryRun": a.dry_run,
        "options": a.options,
    });
    if !a.subresource.is_empty() {
        req["subResource"] = json!(a.subresource);
        req["requestSubResource"] = json!(a.subresource);
    }
    if let Some(ns) = a.namespace.as_deref().filter(|n| !n.is_empty()) {
        req["namespace"] = json!(ns);
    }
    let version = if h.review_versions.iter().any(|v| v == "v1") {
        "v1"
    } else {
        "v1beta1"
    };
    json!({"apiVersion": format!("admission.k8s.io/{version}"), "kind": "AdmissionReview", "request": req})
}

/// The object with its apiVersion and kind (null when there is none).
fn with_type(obj: Option<&Value>, info: &ResourceInfo) -> Value {
    let Some(obj) = obj else { return Value::Null };
    let mut obj = obj.clone();
    if let Some(m) = obj.as_object_mut() {
        m.entry("apiVersion")
            .or_insert_with(|| json!(info.api_version()));
        m.entry("kind").or_insert_with(|| json!(info.kind));
    }
    obj
}

/// Upstream's VerifyAdmissionResponse: the `response` of the review, checked.
fn verify(uid: &str, mutating: bool, body: &Value) -> Result<Value, String> {
    let Some(r) = body.get("response").filter(|r| r.is_object()) else {
        return Err("received invalid webhook response: webhook response was absent".into());
    };
    let got = r.get("uid").and_then(Value::as_str).unwrap_or_default();
    if got != uid {
        return Err(format!(
            "received invalid webhook response: expected response.uid={uid:?}, got {got:?}"
        ));
    }
    let patch = r.get("patch").is_some_and(|p| !p.is_null());
    let patch_type = r.get("patchType").and_then(Value::as_str);
    if mutating {
        match (patch, patch_type) {
            (true, None) => return Err("received invalid webhook response: webhook returned response.patch but not response.patchType".into()),
            (false, Some(_)) => return Err("received invalid webhook response: webhook returned response.patchType but not response.patch".into()),
            (true, Some(t)) if t != "JSONPatch" => return Err(format!("received invalid webhook response: webhook returned invalid response.patchType of {t:?}")),
            _ => {}
        }
    } else if patch {
        return Err(
            "received invalid webhook response: validating webhook may not return response.patch"
                .into(),
        );
    } else if patch_type.is_some() {
        return Err("received invalid webhook response: validating webhook may not return response.patchType".into());
    }
    Ok(r.clone())
}

/// Upstream's ToStatusErr: the webhook's status, at least 400, with who denied it.
fn denied(webhook: &str, status: Option<&Value>) -> ApiError {
    let status = status.cloned().unwrap_or(Value::Null);
    let code = status
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400)
        .unwrap_or(400);
    let message = status
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let reason = status
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let by = format!("admission webhook {webhook:?} denied the request");
    let text = if !message.is_empty() {
        format!("{by}: {message}")
    } else if !reason.is_empty() {
        format!("{by}: {reason}")
    } else {
        format!("{by} without explanation")
    };
    ApiError::new(code, static_reason(reason), text)
}

/// The status reasons a webhook may give (`metav1.StatusReason`), as the static strings
/// `ApiError` carries; any other is dropped.
fn static_reason(reason: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "AlreadyExists",
        "Conflict",
        "Gone",
        "Invalid",
        "ServerTimeout",
        "Timeout",
        "TooManyRequests",
        "BadRequest",
        "MethodNotAllowed",
        "NotAcceptable",
        "RequestEntityTooLarge",
        "UnsupportedMediaType",
        "InternalError",
        "Expired",
        "ServiceUnavailable",
    ];
    KNOWN.iter().find(|k| **k == reason).copied().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_texts() {
        let e = denied(
            "x.example.com",
            Some(&json!({"code": 403, "message": "no", "reason": "Forbidden"})),
        );
        assert_eq!(
            (e.code, e.reason, e.message.as_str()),
            (
                403,
                "Forbidden",
                "admission webhook \"x.example.com\" denied the request: no"
            )
        );
        let e = denied("x.example.com", Some(&json!({"code": 200})));
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                400,
                "admission webhook \"x.example.com\" denied the request without explanation"
            )
        );
    }

    #[test]
    fn verify_response() {
        let ok = json!({"response": {"uid": "u", "allowed": true}});
        assert!(verify("u", false, &ok).is_ok());
        assert_eq!(
            verify("v", false, &ok).unwrap_err(),
            "received invalid webhook response: expected response.uid=\"v\", got \"u\""
        );
        let p = json!({"response": {"uid": "u", "allowed": true, "patch": "W10="}});
        assert!(
            verify("u", true, &p)
                .unwrap_err()
                .contains("but not response.patchType")
        );
        assert!(
            verify("u", false, &p)
                .unwrap_err()
                .contains("validating webhook may not return response.patch")
        );
    }
}
