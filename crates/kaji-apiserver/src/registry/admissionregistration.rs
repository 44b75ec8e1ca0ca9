//! admissionregistration.k8s.io/v1: ValidatingWebhookConfigurations and
//! MutatingWebhookConfigurations, as upstream's `registry/admissionregistration` strategies,
//! v1 defaults (`apis/admissionregistration/v1/defaults.go`) and
//! `apis/admissionregistration/validation`. The webhook dispatcher (`crate::admission::webhook`)
//! reads them.

use super::{Strategy, default_key, info};
use kaji_api::{FieldError, ResourceInfo, validation};
use serde_json::{Value, json};
use std::sync::Arc;

pub const GROUP: &str = "admissionregistration.k8s.io";

pub static VALIDATING_INFO: ResourceInfo = ResourceInfo {
    categories: &["api-extensions"],
    ..info(
        GROUP,
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        "validatingwebhookconfiguration",
        false,
        &[],
        &[],
    )
};

pub static MUTATING_INFO: ResourceInfo = ResourceInfo {
    categories: &["api-extensions"],
    ..info(
        GROUP,
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        "mutatingwebhookconfiguration",
        false,
        &[],
        &[],
    )
};

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    all.push(Arc::new(WebhookConfiguration { mutating: false }));
    all.push(Arc::new(WebhookConfiguration { mutating: true }));
}

/// The strategy of the mutating or the validating configurations (the webhook dispatcher reads
/// them through it).
pub fn strategy(mutating: bool) -> Arc<dyn Strategy> {
    Arc::new(WebhookConfiguration { mutating })
}

struct WebhookConfiguration {
    mutating: bool,
}

impl Strategy for WebhookConfiguration {
    fn info(&self) -> &ResourceInfo {
        if self.mutating {
            &MUTATING_INFO
        } else {
            &VALIDATING_INFO
        }
    }

    /// Generation starts at 1 and grows when the webhooks change (upstream's PrepareForUpdate).
    fn tracks_generation(&self) -> bool {
        true
    }

    fn bumps_generation(&self, new: &Value, old: &Value) -> bool {
        new.get("webhooks") != old.get("webhooks")
    }

    fn default(&self, obj: &mut Value) {
        let Some(hooks) = obj.get_mut("webhooks").and_then(Value::as_array_mut) else {
            return;
        };
        for hook in hooks.iter_mut().filter(|h| h.is_object()) {
            default_key(hook, "failurePolicy", json!("Fail"));
            default_key(hook, "matchPolicy", json!("Equivalent"));
            default_key(hook, "namespaceSelector", json!({}));
            default_key(hook, "objectSelector", json!({}));
            default_key(hook, "timeoutSeconds", json!(10));
            if self.mutating {
                default_key(hook, "reinvocationPolicy", json!("Never"));
            }
            if let Some(rules) = hook.get_mut("rules").and_then(Value::as_array_mut) {
                for rule in rules.iter_mut().filter(|r| r.is_object()) {
                    default_key(rule, "scope", json!("*"));
                }
            }
            if let Some(svc) = hook
                .pointer_mut("/clientConfig/service")
                .filter(|s| s.is_object())
            {
                default_key(svc, "port", json!(443));
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_configuration(obj, self.mutating)
    }

    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        validate_configuration(new, self.mutating)
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn validate_configuration(obj: &Value, mutating: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let hooks = obj
        .get("webhooks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut names = std::collections::HashSet::new();
    for (i, hook) in hooks.iter().enumerate() {
        let path = format!("webhooks[{i}]");
        let name = hook.get("name").and_then(Value::as_str).unwrap_or_default();
        if !name.is_empty() && !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(format!("{path}.name"), &json!(name)));
        }
        validate_webhook(hook, &path, mutating, &mut errs);
    }
    errs
}

fn validate_webhook(hook: &Value, path: &str, mutating: bool, errs: &mut Vec<FieldError>) {
    let name = hook.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    } else {
        let bad = validation::dns1123_subdomain(name);
        if !bad.is_empty() {
            errs.push(FieldError::invalid(
                format!("{path}.name"),
                &json!(name),
                &bad.join(","),
            ));
        } else if name.split('.').count() < 3 {
            errs.push(FieldError::invalid(
                format!("{path}.name"),
                &json!(name),
                "should be a domain with at least three segments separated by dots",
            ));
        }
    }
    for (i, rule) in hook
        .get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        validate_rule(rule, &format!("{path}.rules[{i}]"), errs);
    }
    let one_of = |errs: &mut Vec<FieldError>, key: &str, allowed: &[&str]| {
        if let Some(v) = hook.get(key).filter(|v| !v.is_null()) {
            let s = v.as_str().unwrap_or_default();
            if !allowed.contains(&s) {
                errs.push(FieldError::not_supported(
                    format!("{path}.{key}"),
                    s,
                    allowed,
                ));
            }
        }
    };
    one_of(errs, "failurePolicy", &["Fail", "Ignore"]);
    one_of(errs, "matchPolicy", &["Equivalent", "Exact"]);
    if mutating {
        one_of(errs, "reinvocationPolicy", &["IfNeeded", "Never"]);
    }
    if hook.get("sideEffects").is_none_or(Value::is_null) {
        errs.push(FieldError::required(
            format!("{path}.sideEffects"),
            "must specify one of None, NoneOnDryRun",
        ));
    } else {
        one_of(errs, "sideEffects", &["None", "NoneOnDryRun"]);
    }
    if let Some(t) = hook.get("timeoutSeconds").and_then(Value::as_i64)
        && !(1..=30).contains(&t)
    {
        errs.push(FieldError::invalid(
            format!("{path}.timeoutSeconds"),
            &json!(t),
            "the timeout value must be between 1 and 30 seconds",
        ));
    }
    for sel in ["namespaceSelector", "objectSelector"] {
        if let Some(s) = hook.get(sel).filter(|s| !s.is_null())
            && let Err(e) = kaji_api::selector::LabelSelector::from_object(s)
        {
            errs.push(FieldError::invalid(format!("{path}.{sel}"), s, &e));
        }
    }
    let versions = strings(hook.get("admissionReviewVersions"));
    let vpath = format!("{path}.admissionReviewVersions");
    if versions.is_empty() {
        errs.push(FieldError::required(
            vpath,
            "must specify one of v1, v1beta1",
        ));
    } else {
        let mut seen = std::collections::HashSet::new();
        for (i, v) in versions.iter().enumerate() {
            if !seen.insert(v) {
                errs.push(FieldError::invalid(
                    format!("{vpath}[{i}]"),
                    &json!(v),
                    "duplicate version",
                ));
                continue;
            }
            for m in validation::dns1035_label(v) {
                errs.push(FieldError::invalid(format!("{vpath}[{i}]"), &json!(v), &m));
            }
        }
        if !versions.iter().any(|v| v == "v1" || v == "v1beta1") {
            errs.push(FieldError::invalid(
                vpath,
                &json!(versions),
                "must include at least one of v1, v1beta1",
            ));
        }
    }
    let cc = hook.get("clientConfig").cloned().unwrap_or(Value::Null);
    let url = cc.get("url").filter(|v| !v.is_null());
    let svc = cc.get("service").filter(|v| !v.is_null());
    let cpath = format!("{path}.clientConfig");
    match (url, svc) {
        (Some(u), None) => validate_url(
            u.as_str().unwrap_or_default(),
            &format!("{cpath}.url"),
            errs,
        ),
        (None, Some(s)) => validate_service(s, &format!("{cpath}.service"), errs),
        _ => errs.push(FieldError::required(
            cpath,
            "exactly one of url or service is required",
        )),
    }
}

fn validate_rule(rule: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let ops = strings(rule.get("operations"));
    if ops.is_empty() {
        errs.push(FieldError::required(format!("{path}.operations"), ""));
    } else if ops.len() > 1 && ops.iter().any(|o| o == "*") {
        errs.push(FieldError::invalid(
            format!("{path}.operations"),
            &json!(ops),
            "if '*' is present, must not specify other operations",
        ));
    }
    for (i, op) in ops.iter().enumerate() {
        if !["*", "CONNECT", "CREATE", "DELETE", "UPDATE"].contains(&op.as_str()) {
            errs.push(FieldError::not_supported(
                format!("{path}.operations[{i}]"),
                op,
                &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"],
            ));
        }
    }
    for (key, what) in [("apiGroups", "API groups"), ("apiVersions", "API versions")] {
        let list = strings(rule.get(key));
        if list.is_empty() {
            errs.push(FieldError::required(format!("{path}.{key}"), ""));
        } else if list.len() > 1 && list.iter().any(|g| g == "*") {
            errs.push(FieldError::invalid(
                format!("{path}.{key}"),
                &json!(list),
                &format!("if '*' is present, must not specify other {what}"),
            ));
        }
        if key == "apiVersions" {
            for (i, v) in list.iter().enumerate() {
                if v.is_empty() {
                    errs.push(FieldError::required(format!("{path}.{key}[{i}]"), ""));
                }
            }
        }
    }
    validate_resources(
        &strings(rule.get("resources")),
        &format!("{path}.resources"),
        errs,
    );
    if let Some(scope) = rule.get("scope").filter(|s| !s.is_null()) {
        let s = scope.as_str().unwrap_or_default();
        if !["*", "Cluster", "Namespaced"].contains(&s) {
            errs.push(FieldError::not_supported(
                format!("{path}.scope"),
                s,
                &["*", "Cluster", "Namespaced"],
            ));
        }
    }
}

/// Upstream's validateResources: `*`, `*/*`, `x/*` and `*/y` exclude what they cover.
fn validate_resources(resources: &[String], path: &str, errs: &mut Vec<FieldError>) {
    if resources.is_empty() {
        errs.push(FieldError::required(path, ""));
    }
    let mut wildcard_sub = std::collections::HashSet::new();
    let mut wildcard_res = std::collections::HashSet::new();
    let (mut double, mut single, mut plain) = (false, false, false);
    for (i, r) in resources.iter().enumerate() {
        if r.is_empty() {
            errs.push(FieldError::required(format!("{path}[{i}]"), ""));
        }
        match r.as_str() {
            "*/*" => double = true,
            "*" => single = true,
            _ => {}
        }
        let (res, sub) = r.split_once('/').unwrap_or((r, ""));
        if !r.contains('/') {
            plain = true;
        }
        if wildcard_sub.contains(res) {
            errs.push(FieldError::invalid(
                format!("{path}[{i}]"),
                &json!(r),
                &format!("if '{res}/*' is present, must not specify {r}"),
            ));
        }
        if wildcard_res.contains(sub) {
            errs.push(FieldError::invalid(
                format!("{path}[{i}]"),
                &json!(r),
                &format!("if '*/{sub}' is present, must not specify {r}"),
            ));
        }
        if sub == "*" {
            wildcard_sub.insert(res.to_string());
        }
        if res == "*" {
            wildcard_res.insert(sub.to_string());
        }
    }
    if resources.len() > 1 && double {
        errs.push(FieldError::invalid(
            path,
            &json!(resources),
            "if '*/*' is present, must not specify other resources",
        ));
    }
    if single && plain && resources.iter().filter(|r| !r.contains('/')).count() > 1 {
        errs.push(FieldError::invalid(
            path,
            &json!(resources),
            "if '*' is present, must not specify other resources without subresources",
        ));
    }
}

const URL_FORM: &str = "; desired format: https://host[/path]";

fn validate_url(url: &str, path: &str, errs: &mut Vec<FieldError>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        errs.push(FieldError::invalid(
            path,
            &json!(""),
            &format!("'https' is the only allowed URL scheme{URL_FORM}"),
        ));
        errs.push(FieldError::invalid(
            path,
            &json!(""),
            &format!("host must be provided{URL_FORM}"),
        ));
        return;
    };
    if scheme != "https" {
        errs.push(FieldError::invalid(
            path,
            &json!(scheme),
            &format!("'https' is the only allowed URL scheme{URL_FORM}"),
        ));
    }
    let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = rest.split('/').next().unwrap_or_default();
    let (user, host) = authority
        .rsplit_once('@')
        .map_or(("", authority), |(u, h)| (u, h));
    if host.is_empty() {
        errs.push(FieldError::invalid(
            path,
            &json!(host),
            &format!("host must be provided{URL_FORM}"),
        ));
    }
    if !user.is_empty() {
        errs.push(FieldError::invalid(
            path,
            &json!(user),
            "user information is not permitted in the URL",
        ));
    }
    if !fragment.is_empty() {
        errs.push(FieldError::invalid(
            path,
            &json!(fragment),
            "fragments are not permitted in the URL",
        ));
    }
    if !query.is_empty() {
        errs.push(FieldError::invalid(
            path,
            &json!(query),
            "query parameters are not permitted in the URL",
        ));
    }
}

fn validate_service(svc: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if svc
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .is_empty()
    {
        errs.push(FieldError::required(
            format!("{path}.name"),
            "service name is required",
        ));
    }
    if svc
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .is_empty()
    {
        errs.push(FieldError::required(
            format!("{path}.namespace"),
            "service namespace is required",
        ));
    }
    let port = svc.get("port").and_then(Value::as_i64).unwrap_or(443);
    if !(1..=65535).contains(&port) {
        errs.push(FieldError::invalid(
            format!("{path}.port"),
            &json!(port),
            "port is not valid: must be between 1 and 65535, inclusive",
        ));
    }
    let Some(p) = svc.get("path").and_then(Value::as_str) else {
        return;
    };
    if p.is_empty() || p == "/" {
        return;
    }
    let ppath = format!("{path}.path");
    if p == "//" {
        errs.push(FieldError::invalid(
            ppath,
            &json!(p),
            "segment[0] may not be empty",
        ));
        return;
    }
    if !p.starts_with('/') {
        errs.push(FieldError::invalid(
            ppath.clone(),
            &json!(p),
            "must start with a '/'",
        ));
    }
    let trimmed = p.strip_prefix('/').unwrap_or(p);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    for (i, step) in trimmed.split('/').enumerate() {
        if step.is_empty() {
            errs.push(FieldError::invalid(
                ppath.clone(),
                &json!(p),
                &format!("segment[{i}] may not be empty"),
            ));
            continue;
        }
        for m in validation::dns1123_subdomain(step) {
            errs.push(FieldError::invalid(
                ppath.clone(),
                &json!(p),
                &format!("segment[{i}]: {m}"),
            ));
        }
    }
}

// ValidatingAdmissionPolicies and their bindings (upstream's `registry/admissionregistration/
// validatingadmissionpolicy{,binding}`): v1 defaults and the validation users meet most
// (required fields, actions, CEL expressions compiled with the policy's variables). The
// plug-in that enforces them is `crate::admission::webhook::policy`.

pub static POLICY_INFO: ResourceInfo = ResourceInfo {
    categories: &["api-extensions"],
    ..info(GROUP, "v1", "ValidatingAdmissionPolicy", "validatingadmissionpolicies", "validatingadmissionpolicy", false, &[], &["status"])
};

pub static POLICY_BINDING_INFO: ResourceInfo = ResourceInfo {
    categories: &["api-extensions"],
    ..info(GROUP, "v1", "ValidatingAdmissionPolicyBinding", "validatingadmissionpolicybindings", "validatingadmissionpolicybinding", false, &[], &[])
};

/// The variables a policy's expressions may read (upstream's `authorizer` is not offered).
pub const POLICY_VARIABLES: &[&str] = &["object", "oldObject", "request", "params", "namespaceObject", "variables"];

pub fn register_policies(all: &mut Vec<Arc<dyn Strategy>>) {
    all.push(Arc::new(Policy));
    all.push(Arc::new(PolicyBinding));
}

/// The strategies the policy plug-in reads through.
pub fn policy_strategies() -> (Arc<dyn Strategy>, Arc<dyn Strategy>) {
    (Arc::new(Policy), Arc::new(PolicyBinding))
}

struct Policy;
struct PolicyBinding;

/// `matchConstraints` / `matchResources` defaults (v1 SetDefaults_MatchResources).
fn default_match_resources(m: &mut Value) {
    if !m.is_object() {
        return;
    }
    default_key(m, "matchPolicy", json!("Equivalent"));
    default_key(m, "namespaceSelector", json!({}));
    default_key(m, "objectSelector", json!({}));
    for key in ["resourceRules", "excludeResourceRules"] {
        if let Some(rules) = m.get_mut(key).and_then(Value::as_array_mut) {
            for rule in rules.iter_mut().filter(|r| r.is_object()) {
                default_key(rule, "scope", json!("*"));
            }
        }
    }
}

fn validate_match_resources(m: &Value, path: &str, require_rules: bool, errs: &mut Vec<FieldError>) {
    let rules = m.get("resourceRules").and_then(Value::as_array);
    if require_rules && rules.is_none_or(Vec::is_empty) {
        errs.push(FieldError::required(format!("{path}.resourceRules"), ""));
    }
    for key in ["resourceRules", "excludeResourceRules"] {
        for (i, rule) in m.get(key).and_then(Value::as_array).into_iter().flatten().enumerate() {
            validate_rule(rule, &format!("{path}.{key}[{i}]"), errs);
        }
    }
    if let Some(p) = m.get("matchPolicy").and_then(Value::as_str)
        && !["Exact", "Equivalent"].contains(&p)
    {
        errs.push(FieldError::not_supported(format!("{path}.matchPolicy"), p, &["Equivalent", "Exact"]));
    }
}

/// A CEL expression of a policy, compiled as the plug-in will (upstream's
/// `compilation failed: ...`).
fn validate_expression(expr: Option<&Value>, path: String, errs: &mut Vec<FieldError>) {
    match expr.and_then(Value::as_str).filter(|e| !e.trim().is_empty()) {
        None => errs.push(FieldError::required(path, "expression is not specified")),
        Some(e) => {
            if let Err(m) = kaji_apiextensions::cel::Program::compile_with_variables(e, POLICY_VARIABLES) {
                errs.push(FieldError::invalid(path, &json!(e), &format!("compilation failed: {m}")));
            }
        }
    }
}

impl Strategy for Policy {
    fn info(&self) -> &ResourceInfo {
        &POLICY_INFO
    }

    fn has_status(&self) -> bool {
        true
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn bumps_generation(&self, new: &Value, old: &Value) -> bool {
        new.get("spec") != old.get("spec")
    }

    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else { return };
        default_key(spec, "failurePolicy", json!("Fail"));
        if let Some(m) = spec.get_mut("matchConstraints") {
            default_match_resources(m);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = &obj["spec"];
        match spec.get("matchConstraints").filter(|m| m.is_object()) {
            None => errs.push(FieldError::required("spec.matchConstraints", "")),
            Some(m) => validate_match_resources(m, "spec.matchConstraints", true, &mut errs),
        }
        if let Some(f) = spec.get("failurePolicy").and_then(Value::as_str)
            && !["Fail", "Ignore"].contains(&f)
        {
            errs.push(FieldError::not_supported("spec.failurePolicy", f, &["Fail", "Ignore"]));
        }
        let validations = spec.get("validations").and_then(Value::as_array);
        let audits = spec.get("auditAnnotations").and_then(Value::as_array);
        if validations.is_none_or(Vec::is_empty) && audits.is_none_or(Vec::is_empty) {
            errs.push(FieldError::required("spec.validations", "validations or auditAnnotations must contain at least one item"));
        }
        for (i, v) in validations.into_iter().flatten().enumerate() {
            validate_expression(v.get("expression"), format!("spec.validations[{i}].expression"), &mut errs);
            if let Some(m) = v.get("messageExpression").and_then(Value::as_str)
                && let Err(e) = kaji_apiextensions::cel::Program::compile_with_variables(m, POLICY_VARIABLES)
            {
                errs.push(FieldError::invalid(format!("spec.validations[{i}].messageExpression"), &json!(m), &format!("compilation failed: {e}")));
            }
            if let Some(r) = v.get("reason").and_then(Value::as_str) {
                const REASONS: [&str; 4] = ["Unauthorized", "Forbidden", "Invalid", "RequestEntityTooLarge"];
                if !REASONS.contains(&r) {
                    errs.push(FieldError::not_supported(format!("spec.validations[{i}].reason"), r, &REASONS));
                }
            }
        }
        for (key, what) in [("matchConditions", "matchConditions"), ("variables", "variables")] {
            for (i, c) in spec.get(key).and_then(Value::as_array).into_iter().flatten().enumerate() {
                if c.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
                    errs.push(FieldError::required(format!("spec.{what}[{i}].name"), ""));
                }
                validate_expression(c.get("expression"), format!("spec.{what}[{i}].expression"), &mut errs);
            }
        }
        if let Some(p) = spec.get("paramKind").filter(|p| !p.is_null()) {
            for f in ["apiVersion", "kind"] {
                if p.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                    errs.push(FieldError::required(format!("spec.paramKind.{f}"), ""));
                }
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        self.validate(new)
    }
}

impl Strategy for PolicyBinding {
    fn info(&self) -> &ResourceInfo {
        &POLICY_BINDING_INFO
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn bumps_generation(&self, new: &Value, old: &Value) -> bool {
        new.get("spec") != old.get("spec")
    }

    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else { return };
        if let Some(m) = spec.get_mut("matchResources") {
            default_match_resources(m);
        }
        if let Some(p) = spec.get_mut("paramRef").filter(|p| p.is_object()) {
            default_key(p, "parameterNotFoundAction", json!("Deny"));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = &obj["spec"];
        if spec.get("policyName").and_then(Value::as_str).is_none_or(str::is_empty) {
            errs.push(FieldError::required("spec.policyName", ""));
        }
        let actions = strings(spec.get("validationActions"));
        if actions.is_empty() {
            errs.push(FieldError::required("spec.validationActions", "at least one validation action is required"));
        }
        for (i, a) in actions.iter().enumerate() {
            if !["Audit", "Deny", "Warn"].contains(&a.as_str()) {
                errs.push(FieldError::not_supported(format!("spec.validationActions[{i}]"), a, &["Audit", "Deny", "Warn"]));
            }
        }
        if actions.iter().any(|a| a == "Deny") && actions.iter().any(|a| a == "Warn") {
            errs.push(FieldError::invalid("spec.validationActions", &json!(actions), "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)"));
        }
        if let Some(m) = spec.get("matchResources").filter(|m| m.is_object()) {
            validate_match_resources(m, "spec.matchResources", false, &mut errs);
        }
        if let Some(p) = spec.get("paramRef").filter(|p| !p.is_null()) {
            let named = p.get("name").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
            let selected = p.get("selector").is_some_and(|s| !s.is_null());
            if named == selected {
                errs.push(FieldError::forbidden("spec.paramRef", "one of name or selector must be specified"));
            }
            if let Some(a) = p.get("parameterNotFoundAction").and_then(Value::as_str)
                && !["Allow", "Deny"].contains(&a)
            {
                errs.push(FieldError::not_supported("spec.paramRef.parameterNotFoundAction", a, &["Allow", "Deny"]));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        self.validate(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(extra: Value) -> Value {
        let mut h = json!({"name": "x.example.com", "sideEffects": "None", "admissionReviewVersions": ["v1"], "clientConfig": {"url": "https://127.0.0.1:8443/validate"}, "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]});
        for (k, v) in extra.as_object().into_iter().flatten() {
            h[k] = v.clone();
        }
        json!({"webhooks": [h]})
    }

    fn fields(errs: &[FieldError]) -> Vec<String> {
        errs.iter()
            .map(|e| format!("{}: {}", e.field, e.detail))
            .collect()
    }

    #[test]
    fn defaults_and_valid() {
        let s = WebhookConfiguration { mutating: true };
        let mut o = hook(json!({"clientConfig": {"service": {"name": "s", "namespace": "n"}}}));
        s.default(&mut o);
        let h = &o["webhooks"][0];
        assert_eq!(h["failurePolicy"], "Fail");
        assert_eq!(h["matchPolicy"], "Equivalent");
        assert_eq!(h["timeoutSeconds"], 10);
        assert_eq!(h["reinvocationPolicy"], "Never");
        assert_eq!(h["namespaceSelector"], json!({}));
        assert_eq!(h["rules"][0]["scope"], "*");
        assert_eq!(h["clientConfig"]["service"]["port"], 443);
        assert!(s.validate(&o).is_empty(), "{:?}", fields(&s.validate(&o)));
    }

    #[test]
    fn invalid() {
        let s = WebhookConfiguration { mutating: false };
        let o = hook(
            json!({"name": "x", "sideEffects": null, "timeoutSeconds": 31, "clientConfig": {"url": "http://h/p?q=1"}, "admissionReviewVersions": []}),
        );
        let f = fields(&s.validate(&o));
        assert!(f.iter().any(|e| e.contains("webhooks[0].name: Invalid value: \"x\": should be a domain with at least three segments")), "{f:?}");
        assert!(f.iter().any(|e| e == "webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun"), "{f:?}");
        assert!(f.iter().any(|e| e.contains("timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds")), "{f:?}");
        assert!(
            f.iter()
                .any(|e| e.contains("'https' is the only allowed URL scheme")),
            "{f:?}"
        );
        assert!(
            f.iter()
                .any(|e| e.contains("query parameters are not permitted in the URL")),
            "{f:?}"
        );
        assert!(f.iter().any(|e| e == "webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1"), "{f:?}");
        let o = hook(json!({"clientConfig": {}}));
        assert_eq!(
            fields(&s.validate(&o)),
            vec![
                "webhooks[0].clientConfig: Required value: exactly one of url or service is required"
            ]
        );
        let mut o = hook(json!({}));
        let h = o["webhooks"][0].clone();
        o["webhooks"].as_array_mut().unwrap().push(h);
        assert_eq!(
            fields(&s.validate(&o)),
            vec!["webhooks[1].name: Duplicate value: \"x.example.com\""]
        );
    }
}
