//! The ValidatingAdmissionPolicy plug-in (upstream's `plugin/policy/validating`): CEL policies
//! and their bindings, enforced in the API server without a webhook. It runs where upstream's
//! does, just before the validating webhooks, and shares their request scope (user, warnings),
//! rule matching and namespace lookup.
//!
//! For each binding whose policy exists: the policy's `matchConstraints` and the binding's
//! `matchResources` must match the request (rules, excluded rules, namespace and object
//! selectors); the params object is read (`paramKind` + the binding's `paramRef`); every
//! `matchConditions` expression must be true; then each `validations` expression must be
//! true, or the binding's `validationActions` apply: `Deny` refuses the request with upstream's
//! text and the validation's reason, `Warn` adds a warning, `Audit` is logged. An expression
//! that fails to evaluate follows the policy's `failurePolicy`. Variables (`variables.x`) are
//! evaluated in order before the validations. Not offered: `authorizer`, `auditAnnotations`
//! (accepted, not written to the audit log), type checking into `status.typeChecking`.

use super::config::{Hook, Rule, Target};
use super::{Attributes, RequestScope, exempt, rules, scope};
use crate::ApiServer;
use crate::registry::store::{Filter, ListOptions, Store};
use kaji_api::selector::LabelSelector;
use kaji_api::{ApiError, FieldError};
use kaji_apiextensions::cel::Program;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// How long a read of the policies and bindings is used (re-read at once after a write).
const FRESH_FOR: Duration = Duration::from_millis(500);
const REREAD_AFTER_WRITE: Duration = Duration::from_secs(1);

/// One expression, compiled (or the compile error, which makes the policy fail as upstream's
/// type checking would).
struct Expr {
    text: String,
    program: Result<Program, String>,
}

impl Expr {
    fn new(text: &str) -> Expr {
        Expr { text: text.to_string(), program: Program::compile_with_variables(text, crate::registry::admissionregistration::POLICY_VARIABLES) }
    }

    fn eval(&self, vars: &[(&str, &Value)]) -> Result<Value, String> {
        match &self.program {
            Ok(p) => p.eval_with(vars),
            Err(e) => Err(format!("compilation failed: {e}")),
        }
    }
}

struct Validation {
    expr: Expr,
    message: Option<String>,
    message_expr: Option<Expr>,
    reason: String,
}

/// A binding with its policy, ready to evaluate.
struct Bound {
    policy: String,
    binding: String,
    ignore_failures: bool,
    /// The policy's constraints and the binding's resources, as webhook matchers.
    matchers: Vec<Matcher>,
    param_kind: Option<(String, String)>,
    param_ref: Option<Value>,
    conditions: Vec<(String, Expr)>,
    variables: Vec<(String, Expr)>,
    validations: Vec<Validation>,
    actions: Vec<String>,
}

/// A `matchResources`: the rules as a hook (for `rules::matches_*`) and the excluded rules.
struct Matcher {
    hook: Hook,
    exclude: Hook,
}

#[derive(Default)]
struct Cache {
    read_at: Option<Instant>,
    reread_until: Option<Instant>,
    bound: Arc<Vec<Arc<Bound>>>,
}

static CACHES: LazyLock<Mutex<HashMap<usize, Cache>>> = LazyLock::new(Mutex::default);

fn with_cache<R>(server: &ApiServer, f: impl FnOnce(&mut Cache) -> R) -> R {
    let key = Arc::as_ptr(&server.store).cast::<()>() as usize;
    let mut caches = CACHES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    f(caches.entry(key).or_default())
}

/// A policy or binding is being written: read them again for the next second.
pub(super) fn invalidate(server: &ApiServer) {
    with_cache(server, |c| c.reread_until = Some(Instant::now() + REREAD_AFTER_WRITE));
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect()
}

fn rules_of(v: Option<&Value>) -> Vec<Rule> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|r| Rule {
            operations: strings(r.get("operations")),
            api_groups: strings(r.get("apiGroups")),
            api_versions: strings(r.get("apiVersions")),
            resources: strings(r.get("resources")),
            scope: r.get("scope").and_then(Value::as_str).unwrap_or("*").to_string(),
        })
        .collect()
}

fn selector(v: Option<&Value>) -> LabelSelector {
    v.filter(|v| !v.is_null()).and_then(|s| LabelSelector::from_object(s).ok()).unwrap_or_default()
}

fn matcher(name: &str, m: &Value) -> Matcher {
    let hook = |rules: Vec<Rule>| Hook {
        configuration: String::new(),
        mutating: false,
        name: name.to_string(),
        rules,
        ignore_failures: false,
        namespace_selector: selector(m.get("namespaceSelector")),
        object_selector: selector(m.get("objectSelector")),
        side_effects: String::new(),
        timeout_seconds: 0,
        reinvoke: false,
        review_versions: Vec::new(),
        target: Target::Url(String::new()),
        ca_bundle: None,
    };
    Matcher { hook: hook(rules_of(m.get("resourceRules"))), exclude: hook(rules_of(m.get("excludeResourceRules"))) }
}

fn bind(policy: &Value, binding: &Value) -> Bound {
    let p = &policy["spec"];
    let b = &binding["spec"];
    let name = |o: &Value| crate::objects::meta_str(o, "name").unwrap_or_default().to_string();
    let mut matchers = vec![matcher(&name(policy), p.get("matchConstraints").unwrap_or(&Value::Null))];
    if let Some(m) = b.get("matchResources").filter(|m| m.is_object()) {
        // A binding's matchResources without rules narrows by its selectors only.
        let mut narrowed = matcher(&name(binding), m);
        if narrowed.hook.rules.is_empty() {
            narrowed.hook.rules = vec![Rule { operations: vec!["*".into()], api_groups: vec!["*".into()], api_versions: vec!["*".into()], resources: vec!["*/*".into()], scope: "*".into() }];
        }
        matchers.push(narrowed);
    }
    let named = |key: &str| -> Vec<(String, Expr)> {
        p.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| (c["name"].as_str().unwrap_or_default().to_string(), Expr::new(c["expression"].as_str().unwrap_or_default())))
            .collect()
    };
    Bound {
        policy: name(policy),
        binding: name(binding),
        ignore_failures: p.get("failurePolicy").and_then(Value::as_str) == Some("Ignore"),
        matchers,
        param_kind: p.get("paramKind").filter(|k| k.is_object()).map(|k| (k["apiVersion"].as_str().unwrap_or_default().to_string(), k["kind"].as_str().unwrap_or_default().to_string())),
        param_ref: b.get("paramRef").filter(|r| r.is_object()).cloned(),
        conditions: named("matchConditions"),
        variables: named("variables"),
        validations: p
            .get("validations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|v| Validation {
                expr: Expr::new(v["expression"].as_str().unwrap_or_default()),
                message: v.get("message").and_then(Value::as_str).filter(|m| !m.is_empty()).map(str::to_string),
                message_expr: v.get("messageExpression").and_then(Value::as_str).filter(|m| !m.is_empty()).map(Expr::new),
                reason: v.get("reason").and_then(Value::as_str).unwrap_or("Invalid").to_string(),
            })
            .collect(),
        actions: strings(b.get("validationActions")),
    }
}

/// The bindings with their policies (cached like the webhook configurations).
async fn bound(server: &Arc<ApiServer>) -> Arc<Vec<Arc<Bound>>> {
    let now = Instant::now();
    let cached = with_cache(server, |c| {
        let fresh = c.read_at.is_some_and(|t| now.duration_since(t) < FRESH_FOR) && c.reread_until.is_none_or(|t| now >= t);
        fresh.then(|| c.bound.clone())
    });
    if let Some(b) = cached {
        return b;
    }
    let (policies, bindings) = crate::registry::admissionregistration::policy_strategies();
    let list = |s: Arc<dyn crate::registry::Strategy>| {
        let server = server.clone();
        async move { Store::of(&server, &s).list(None, &Filter::everything(), &ListOptions::default()).await.map(|p| p.items) }
    };
    let (policies, bindings) = match (list(policies).await, list(bindings).await) {
        (Ok(p), Ok(b)) => (p, b),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "reading admission policies");
            (Vec::new(), Vec::new())
        }
    };
    let by_name: HashMap<&str, &Value> = policies.iter().map(|p| (crate::objects::meta_str(p, "name").unwrap_or_default(), p)).collect();
    let mut out = Vec::new();
    for b in &bindings {
        let Some(policy) = b.pointer("/spec/policyName").and_then(Value::as_str).and_then(|n| by_name.get(n)) else { continue };
        out.push(Arc::new(bind(policy, b)));
    }
    let out = Arc::new(out);
    with_cache(server, |c| {
        c.read_at = Some(now);
        c.bound = out.clone();
    });
    out
}

/// Whether a matcher takes the request (its rules and selectors, not its excluded rules).
async fn matches(scope: &RequestScope, m: &Matcher, a: &Attributes<'_>, obj: Option<&Value>) -> bool {
    if !rules::matches_rules(&m.hook, a) || rules::matches_rules(&m.exclude, a) || !rules::matches_object(&m.hook, obj, a.old) {
        return false;
    }
    if m.hook.namespace_selector.is_empty() {
        return true;
    }
    match rules::namespace_labels(&scope.server, a, obj).await {
        Some(labels) => m.hook.namespace_selector.matches(Some(&labels)),
        None => true,
    }
}

/// The params object of a binding: None when the policy takes none; Err(message) when it is
/// missing and the binding says Deny.
async fn params(scope: &RequestScope, b: &Bound, a: &Attributes<'_>) -> Result<Option<Value>, String> {
    let Some((api_version, kind)) = &b.param_kind else { return Ok(None) };
    let Some(r) = &b.param_ref else { return Ok(None) };
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let strategy = scope.server.registry.all().into_iter().find(|s| s.info().group == group && s.info().version == version && s.info().kind == kind);
    let deny = r.get("parameterNotFoundAction").and_then(Value::as_str) != Some("Allow");
    let missing = || if deny { Err("no params found for policy binding with `Deny` parameterNotFoundAction".to_string()) } else { Ok(None) };
    let Some(strategy) = strategy else { return missing() };
    let namespace = if strategy.info().namespaced {
        r.get("namespace").and_then(Value::as_str).map(str::to_string).or_else(|| a.namespace.clone())
    } else {
        None
    };
    let store = Store::of(&scope.server, &strategy);
    if let Some(name) = r.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        return match store.get(namespace.as_deref(), name).await {
            Ok(p) => Ok(Some(p)),
            Err(_) => missing(),
        };
    }
    let sel = selector(r.get("selector"));
    let items = store.list(namespace.as_deref(), &Filter::everything(), &ListOptions::default()).await.map(|p| p.items).unwrap_or_default();
    // Upstream evaluates the policy once per matching params object; the first is used here.
    match items.into_iter().find(|p| sel.matches(p.pointer("/metadata/labels").and_then(Value::as_object))) {
        Some(p) => Ok(Some(p)),
        None => missing(),
    }
}

/// The request as CEL sees it (the AdmissionRequest's fields).
fn request(scope: &RequestScope, a: &Attributes<'_>) -> Value {
    let info = a.info;
    let kind = json!({"group": info.group, "version": info.version, "kind": info.kind});
    let resource = json!({"group": info.group, "version": info.version, "resource": info.plural});
    let mut req = json!({
        "kind": kind, "resource": resource, "requestKind": kind, "requestResource": resource,
        "name": a.name, "operation": a.operation.map_or("", super::Operation::as_str),
        "userInfo": scope.user, "dryRun": a.dry_run, "options": a.options,
    });
    if !a.subresource.is_empty() {
        req["subResource"] = json!(a.subresource);
    }
    if let Some(ns) = a.namespace.as_deref().filter(|n| !n.is_empty()) {
        req["namespace"] = json!(ns);
    }
    req
}

/// Runs the policies bound to this request; Err with the first denial.
pub(super) async fn validate(a: &Attributes<'_>, obj: Option<&Value>) -> Result<(), ApiError> {
    if a.operation.is_none() {
        return Ok(());
    }
    if exempt(a.info) {
        if let Some(s) = scope() {
            invalidate(&s.server);
        }
        return Ok(());
    }
    let Some(scope) = scope() else { return Ok(()) };
    let all = bound(&scope.server).await;
    if all.is_empty() {
        return Ok(());
    }
    let mut request_value = None;
    let mut namespace_object = None;
    for b in all.iter() {
        let mut take = true;
        for m in &b.matchers {
            if !matches(&scope, m, a, obj).await {
                take = false;
                break;
            }
        }
        if !take {
            continue;
        }
        let request_value = request_value.get_or_insert_with(|| request(&scope, a)).clone();
        if namespace_object.is_none() {
            let ns = match a.namespace.as_deref().filter(|n| !n.is_empty()) {
                Some(ns) => match scope.server.registry.get("", "v1", "namespaces") {
                    Some(s) => Store::of(&scope.server, &s).get(None, ns).await.unwrap_or(Value::Null),
                    None => Value::Null,
                },
                None => Value::Null,
            };
            namespace_object = Some(ns);
        }
        let header = format!("ValidatingAdmissionPolicy '{}' with binding '{}'", b.policy, b.binding);
        let params = match params(&scope, b, a).await {
            Ok(p) => p.unwrap_or(Value::Null),
            Err(m) => return Err(ApiError::forbidden(format!("policy '{}' with binding '{}' denied request: failed to configure binding: {m}", b.policy, b.binding))),
        };
        let object = super::with_type(obj, a.info);
        let old_object = super::with_type(a.old, a.info);
        let mut variables = Map::new();
        let vars_value = |variables: &Map<String, Value>| Value::Object(variables.clone());
        let failure = |e: String| -> Result<(), ApiError> {
            if b.ignore_failures {
                tracing::warn!(policy = %b.policy, binding = %b.binding, error = %e, "admission policy failed, failing open");
                Ok(())
            } else {
                Err(ApiError::forbidden(format!("{header} denied request: {e}")))
            }
        };
        let mut failed = false;
        for (name, e) in &b.variables {
            let vars = vars_value(&variables);
            let env = [("object", &object), ("oldObject", &old_object), ("request", &request_value), ("params", &params), ("namespaceObject", namespace_object.as_ref().unwrap_or(&Value::Null)), ("variables", &vars)];
            // A variable that cannot be evaluated is absent; an expression reading it fails.
            if let Ok(v) = e.eval(&env) {
                variables.insert(name.clone(), v);
            }
        }
        let vars = vars_value(&variables);
        let env = [("object", &object), ("oldObject", &old_object), ("request", &request_value), ("params", &params), ("namespaceObject", namespace_object.as_ref().unwrap_or(&Value::Null)), ("variables", &vars)];
        for (name, c) in &b.conditions {
            match c.eval(&env) {
                Ok(Value::Bool(true)) => {}
                Ok(Value::Bool(false)) => {
                    take = false;
                    break;
                }
                Ok(other) => {
                    failure(format!("matchCondition '{name}': expression must evaluate to bool, got {other}"))?;
                    failed = true;
                    break;
                }
                Err(err) => {
                    failure(format!("failed to evaluate matchCondition '{name}': {err}"))?;
                    failed = true;
                    break;
                }
            }
        }
        if !take || failed {
            continue;
        }
        for v in &b.validations {
            let message = match v.expr.eval(&env) {
                Ok(Value::Bool(true)) => continue,
                Ok(Value::Bool(false)) => match (&v.message_expr, &v.message) {
                    (Some(me), fallback) => match me.eval(&env) {
                        Ok(Value::String(m)) if !m.trim().is_empty() => m,
                        _ => fallback.clone().unwrap_or_else(|| format!("failed expression: {}", v.expr.text)),
                    },
                    (None, Some(m)) => m.clone(),
                    (None, None) => format!("failed expression: {}", v.expr.text),
                },
                Ok(other) => {
                    failure(format!("expression '{}' resulted in error: expression must evaluate to bool, got {other}", v.expr.text))?;
                    continue;
                }
                Err(err) => {
                    failure(format!("expression '{}' resulted in error: {err}", v.expr.text))?;
                    continue;
                }
            };
            if b.actions.iter().any(|x| x == "Warn") {
                super::warn(&scope, format!("Validation failed for {header}: {message}"));
            }
            if b.actions.iter().any(|x| x == "Audit") {
                tracing::info!(policy = %b.policy, binding = %b.binding, %message, "admission policy audit");
            }
            if b.actions.iter().any(|x| x == "Deny") {
                let text = format!("{header} denied request: {message}");
                return Err(match v.reason.as_str() {
                    "Forbidden" => ApiError::forbidden(text),
                    "Unauthorized" => ApiError::new(401, "Unauthorized", text),
                    "RequestEntityTooLarge" => ApiError::too_large(text),
                    // Upstream names the resource here (kubectl: `The deployments "x" is invalid`).
                    _ => ApiError::invalid(a.info.group, a.info.plural, &a.name, vec![FieldError { reason: "FieldValueInvalid", field: String::new(), detail: text }]),
                });
            }
        }
    }
    Ok(())
}
