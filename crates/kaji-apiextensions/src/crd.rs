//! Validation of CustomResourceDefinition objects (upstream's
//! `apiextensions/validation.ValidateCustomResourceDefinition`), on the v1 JSON. Paths and
//! messages are upstream's, which validates the internal type: the webhook conversion's fields
//! are reported as `spec.conversion.webhookClientConfig` and
//! `spec.conversion.conversionReviewVersions`.
//!
//! [`set_defaults`] applies apiextensions.k8s.io/v1's defaults (singular, listKind, conversion
//! strategy, webhook port); [`validate`] applies them to its own copy first, so it accepts a CRD
//! as the user sent it.

use kaji_api::FieldError;
use kaji_api::validation::{dns1035_label, dns1123_subdomain};
use serde_json::{Value, json};

use crate::schema::structural::{self, Ctx};

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// apiextensions.k8s.io/v1 defaulting (`SetDefaults_CustomResourceDefinition...`).
pub fn set_defaults(crd: &mut Value) {
    let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        let kind = names
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if names
            .get("singular")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
            && !kind.is_empty()
        {
            names.insert("singular".into(), Value::String(kind.to_lowercase()));
        }
        if names
            .get("listKind")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
            && !kind.is_empty()
        {
            names.insert("listKind".into(), Value::String(format!("{kind}List")));
        }
    }
    let conversion = spec.entry("conversion").or_insert_with(|| json!({}));
    if let Some(c) = conversion.as_object_mut()
        && c.get("strategy")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        c.insert("strategy".into(), json!("None"));
    }
    if conversion.is_object()
        && let Some(svc) = conversion
            .pointer_mut("/webhook/clientConfig/service")
            .and_then(Value::as_object_mut)
    {
        svc.entry("port").or_insert(json!(443));
    }
}

/// The version marked `storage: true` (for `status.storedVersions` on create, as upstream's
/// PrepareForCreate).
pub fn storage_version(crd: &Value) -> Option<&str> {
    crd.pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .and_then(|v| v.get("name"))
        .and_then(Value::as_str)
}

/// Errors of a CRD on create (field paths as upstream: `spec.versions[0].schema.openAPIV3Schema...`).
pub fn validate(crd: &Value) -> Vec<FieldError> {
    let mut crd = crd.clone();
    set_defaults(&mut crd);
    let mut errs = Vec::new();
    validate_name(&crd, &mut errs);
    validate_spec(&crd, &mut errs);
    stored_versions(&crd, &mut errs);
    errs
}

/// Errors of a CRD update (`validate` plus the rules between old and new: group and plural
/// never change; scope and kind not once the CRD was Established).
pub fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate(new);
    let mut new = new.clone();
    set_defaults(&mut new);
    let established = old
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        });
    if established {
        for (ptr, path) in [
            ("/spec/scope", "spec.scope"),
            ("/spec/names/kind", "spec.names.kind"),
        ] {
            if s(&new, ptr) != s(old, ptr) {
                errs.push(FieldError::invalid(
                    path,
                    &Value::from(s(&new, ptr)),
                    "field is immutable",
                ));
            }
        }
    }
    for (ptr, path) in [
        ("/spec/group", "spec.group"),
        ("/spec/names/plural", "spec.names.plural"),
    ] {
        if s(&new, ptr) != s(old, ptr) {
            errs.push(FieldError::invalid(
                path,
                &Value::from(s(&new, ptr)),
                "field is immutable",
            ));
        }
    }
    errs
}

fn validate_name(crd: &Value, errs: &mut Vec<FieldError>) {
    let name = s(crd, "/metadata/name");
    if name.is_empty() {
        if s(crd, "/metadata/generateName").is_empty() {
            errs.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
        return;
    }
    let mut problems = dns1123_subdomain(name);
    if name != format!("{}.{}", s(crd, "/spec/names/plural"), s(crd, "/spec/group")) {
        problems.push("must be spec.names.plural+\".\"+spec.group".to_string());
    }
    for p in problems {
        errs.push(FieldError::invalid("metadata.name", &Value::from(name), &p));
    }
}

fn validate_spec(crd: &Value, errs: &mut Vec<FieldError>) {
    let spec = crd.get("spec").cloned().unwrap_or(json!({}));
    let group = s(&spec, "/group");
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else if !dns1123_subdomain(group).is_empty() {
        errs.push(FieldError::invalid(
            "spec.group",
            &Value::from(group),
            &dns1123_subdomain(group).join(","),
        ));
    } else if !group.contains('.') {
        errs.push(FieldError::invalid(
            "spec.group",
            &Value::from(group),
            "should be a domain with at least one dot",
        ));
    }
    match s(&spec, "/scope") {
        "" => errs.push(FieldError::required("spec.scope", "")),
        "Cluster" | "Namespaced" => {}
        other => errs.push(FieldError::not_supported(
            "spec.scope",
            other,
            &["Cluster", "Namespaced"],
        )),
    }
    let preserve_unknown = spec
        .get("preserveUnknownFields")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if preserve_unknown {
        errs.push(FieldError::invalid("spec.preserveUnknownFields", &Value::Bool(true), "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead"));
    }

    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut storage = 0;
    let mut names = Vec::new();
    let mut unique = true;
    for (i, v) in versions.iter().enumerate() {
        let path = format!("spec.versions[{i}]");
        if v.get("storage").and_then(Value::as_bool) == Some(true) {
            storage += 1;
        }
        let name = s(v, "/name");
        if names.contains(&name) {
            unique = false;
        }
        names.push(name);
        let e = dns1035_label(name);
        if !e.is_empty() {
            errs.push(FieldError::invalid(
                format!("{path}.name"),
                &Value::from(name),
                &e.join(","),
            ));
        }
        version(v, &path, errs);
    }
    // Upstream shows the Go list of versions; "object" is what FieldError shows for such values.
    let all = json!({});
    if versions.is_empty() {
        errs.push(FieldError::invalid(
            "spec.versions",
            &all,
            "must have exactly one version marked as storage version",
        ));
    } else {
        if !unique {
            errs.push(FieldError::invalid(
                "spec.versions",
                &all,
                "must contain unique version names",
            ));
        }
        if storage != 1 {
            errs.push(FieldError::invalid(
                "spec.versions",
                &all,
                "must have exactly one version marked as storage version",
            ));
        }
    }

    names_rules(&spec, errs);
    conversion(&spec, errs);
}

fn names_rules(spec: &Value, errs: &mut Vec<FieldError>) {
    for k in ["plural", "singular", "kind", "listKind"] {
        if s(spec, &format!("/names/{k}")).is_empty() {
            errs.push(FieldError::required(format!("spec.names.{k}"), ""));
        }
    }
    for k in ["plural", "singular"] {
        let v = s(spec, &format!("/names/{k}"));
        let e = dns1035_label(v);
        if !v.is_empty() && !e.is_empty() {
            errs.push(FieldError::invalid(
                format!("spec.names.{k}"),
                &Value::from(v),
                &e.join(","),
            ));
        }
    }
    for k in ["kind", "listKind"] {
        let v = s(spec, &format!("/names/{k}"));
        let e = dns1035_label(&v.to_lowercase());
        if !v.is_empty() && !e.is_empty() {
            errs.push(FieldError::invalid(
                format!("spec.names.{k}"),
                &Value::from(v),
                &format!(
                    "may have mixed case, but should otherwise match: {}",
                    e.join(",")
                ),
            ));
        }
    }
    for list in ["shortNames", "categories"] {
        for (i, v) in spec
            .pointer(&format!("/names/{list}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let v = v.as_str().unwrap_or("");
            let e = dns1035_label(v);
            if !e.is_empty() {
                errs.push(FieldError::invalid(
                    format!("spec.names.{list}[{i}]"),
                    &Value::from(v),
                    &e.join(","),
                ));
            }
        }
    }
    let kind = s(spec, "/names/kind");
    if !kind.is_empty() && kind == s(spec, "/names/listKind") {
        errs.push(FieldError::invalid(
            "spec.names.listKind",
            &Value::from(kind),
            "kind and listKind may not be the same",
        ));
    }
}

fn version(v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(w) = v.get("deprecationWarning").and_then(Value::as_str) {
        let p = format!("{path}.deprecationWarning");
        if v.get("deprecated").and_then(Value::as_bool) != Some(true) {
            errs.push(FieldError::invalid(
                &p,
                &Value::from(w),
                "can only be set for deprecated versions",
            ));
        } else if w.len() > 256 {
            errs.push(FieldError::invalid(
                &p,
                &Value::from(w),
                "must be <= 256 characters long",
            ));
        } else if let Some(i) = w
            .char_indices()
            .find(|(_, c)| c.is_control())
            .map(|(i, _)| i)
        {
            errs.push(FieldError::invalid(&p, &Value::from(w), &format!("must only contain printable UTF-8 characters; non-printable character found at index {i}")));
        }
    }
    let status_enabled = v
        .pointer("/subresources/status")
        .is_some_and(|s| !s.is_null());
    let schema_path = format!("{path}.schema.openAPIV3Schema");
    match v.pointer("/schema/openAPIV3Schema") {
        None | Some(Value::Null) => {
            errs.push(FieldError::required(&schema_path, "schemas are required"))
        }
        Some(schema) => version_schema(schema, &schema_path, status_enabled, errs),
    }
    if let Some(scale) = v.pointer("/subresources/scale").filter(|s| !s.is_null()) {
        scale_paths(scale, &format!("{path}.subresources"), errs);
    }
    for (j, col) in v
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        printer_column(col, &format!("{path}.additionalPrinterColumns[{j}]"), errs);
    }
    let fields = v
        .get("selectableFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    selectable_fields(
        &fields,
        v.pointer("/schema/openAPIV3Schema"),
        &format!("{path}.selectableFields"),
        errs,
    );
}

/// Fields allowed at the root of a schema when the status subresource is enabled.
const ALLOWED_AT_ROOT: &[&str] = &[
    "description",
    "type",
    "format",
    "title",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "multipleOf",
    "required",
    "items",
    "properties",
    "externalDocs",
    "example",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
];

fn version_schema(schema: &Value, path: &str, status_enabled: bool, errs: &mut Vec<FieldError>) {
    let before = errs.len();
    if status_enabled && let Some(o) = schema.as_object() {
        let ty = o.get("type").and_then(Value::as_str).unwrap_or("");
        if !ty.is_empty() && ty != "object" {
            errs.push(FieldError::invalid(format!("{path}.type"), &Value::from(ty), "only \"object\" is allowed as the type at the root of the schema if the status subresource is enabled"));
        } else if o.iter().any(|(k, v)| {
            !ALLOWED_AT_ROOT.contains(&k.as_str()) && !v.is_null() && v != &Value::Bool(false)
        }) {
            errs.push(FieldError::invalid(path, schema, "only [Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations] fields are allowed at the root of the schema if the status subresource is enabled"));
        }
    }
    if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
        errs.push(FieldError::forbidden(
            format!("{path}.nullable"),
            "nullable cannot be true at the root",
        ));
    }
    let ctx = Ctx {
        allow_defaults: true,
        disallow_reason: String::new(),
        inside_meta: false,
    };
    structural::openapi_schema(schema, path, &ctx, true, errs);
    let structural_errs = structural::structural(schema, path);
    if !structural_errs.is_empty() {
        errs.extend(structural_errs);
    } else {
        let node = crate::Structural::new(schema);
        node.default_errors(path, errs);
    }
    if errs.len() == before {
        rules(schema, path, errs);
    }
}

/// `x-kubernetes-validations` rules must compile.
fn rules(schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(o) = schema.as_object() else { return };
    for (i, r) in o
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let p = format!("{path}.x-kubernetes-validations[{i}]");
        let rule = r.get("rule").and_then(Value::as_str).unwrap_or("");
        if rule.trim().is_empty() {
            errs.push(FieldError::required(format!("{p}.rule"), ""));
        } else if let Err(e) = crate::cel::Program::compile(rule) {
            errs.push(FieldError::invalid(
                format!("{p}.rule"),
                &Value::from(rule),
                &format!("compilation failed: {e}"),
            ));
        }
        if let Some(m) = r.get("messageExpression").and_then(Value::as_str)
            && let Err(e) = crate::cel::Program::compile(m)
        {
            errs.push(FieldError::invalid(
                format!("{p}.messageExpression"),
                &Value::from(m),
                &format!("messageExpression compilation failed: {e}"),
            ));
        }
        if let Some(reason) = r.get("reason").and_then(Value::as_str) {
            const REASONS: &[&str] = &[
                "FieldValueDuplicate",
                "FieldValueForbidden",
                "FieldValueInvalid",
                "FieldValueRequired",
            ];
            if !REASONS.contains(&reason) {
                errs.push(FieldError::not_supported(
                    format!("{p}.reason"),
                    reason,
                    REASONS,
                ));
            }
        }
    }
    for (k, v) in o
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        rules(v, &format!("{path}.properties[{k}]"), errs);
    }
    if let Some(items) = o.get("items") {
        rules(items, &format!("{path}.items"), errs);
    }
    if let Some(ap) = o.get("additionalProperties").filter(|a| a.is_object()) {
        rules(ap, &format!("{path}.additionalProperties"), errs);
    }
}

fn simple_json_path(p: &str, path: &str, errs: &mut Vec<FieldError>) -> bool {
    let msg = if p.is_empty() {
        "must not be empty"
    } else if !p.starts_with('.') {
        "must be a simple json path starting with ."
    } else {
        return true;
    };
    errs.push(FieldError::invalid(path, &Value::from(p), msg));
    false
}

fn scale_paths(scale: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for (k, prefix, under) in [
        ("specReplicasPath", ".spec.", ".spec"),
        ("statusReplicasPath", ".status.", ".status"),
    ] {
        let p = format!("{path}.scale.{k}");
        let v = s(scale, &format!("/{k}"));
        if v.is_empty() {
            errs.push(FieldError::required(p, ""));
        } else if simple_json_path(v, &p, errs) && !v.starts_with(prefix) {
            errs.push(FieldError::invalid(
                p,
                &Value::from(v),
                &format!("should be a json path under {under}"),
            ));
        }
    }
    let v = s(scale, "/labelSelectorPath");
    if !v.is_empty() {
        let p = format!("{path}.scale.labelSelectorPath");
        if simple_json_path(v, &p, errs) && !v.starts_with(".spec.") && !v.starts_with(".status.") {
            errs.push(FieldError::invalid(
                p,
                &Value::from(v),
                "should be a json path under either .spec or .status",
            ));
        }
    }
}

fn printer_column(col: &Value, path: &str, errs: &mut Vec<FieldError>) {
    const TYPES: &str = "boolean,date,integer,number,string";
    const FORMATS: &[&str] = &[
        "byte",
        "date",
        "date-time",
        "double",
        "float",
        "int32",
        "int64",
        "password",
    ];
    if s(col, "/name").is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    }
    match s(col, "/type") {
        "" => errs.push(FieldError::required(
            format!("{path}.type"),
            &format!("must be one of {TYPES}"),
        )),
        "boolean" | "date" | "integer" | "number" | "string" => {}
        t => errs.push(FieldError::invalid(
            format!("{path}.type"),
            &Value::from(t),
            &format!("must be one of {TYPES}"),
        )),
    }
    let f = s(col, "/format");
    if !f.is_empty() && !FORMATS.contains(&f) {
        errs.push(FieldError::invalid(
            format!("{path}.format"),
            &Value::from(f),
            &format!("must be one of {}", FORMATS.join(",")),
        ));
    }
    let jp = s(col, "/jsonPath");
    if jp.is_empty() {
        errs.push(FieldError::required(format!("{path}.JSONPath"), ""));
    } else {
        simple_json_path(jp, &format!("{path}.JSONPath"), errs);
    }
}

/// `selectableFields`: a path to a string, boolean or integer field outside metadata, at most 8.
fn selectable_fields(
    fields: &[Value],
    schema: Option<&Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let mut seen: Vec<String> = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        let p = format!("{path}[{i}].jsonPath");
        let jp = s(f, "/jsonPath");
        if jp.is_empty() {
            errs.push(FieldError::required(p, ""));
            continue;
        }
        let Some(rest) = jp.strip_prefix('.') else {
            errs.push(FieldError::invalid(
                p,
                &Value::from(jp),
                "is an invalid path: must start with '.'",
            ));
            continue;
        };
        let mut node = schema;
        let mut found = true;
        for seg in rest.split('.') {
            match node.and_then(|n| {
                n.pointer(&format!(
                    "/properties/{}",
                    seg.replace('~', "~0").replace('/', "~1")
                ))
            }) {
                Some(n) => node = Some(n),
                None => {
                    found = false;
                    break;
                }
            }
        }
        if !found || rest.is_empty() {
            errs.push(FieldError::invalid(
                p,
                &Value::from(jp),
                "is an invalid path: does not refer to a valid field",
            ));
            continue;
        }
        if rest.split('.').next() == Some("metadata") {
            errs.push(FieldError::invalid(
                &p,
                &Value::from(jp),
                "must not point to fields in metadata",
            ));
        }
        let ty = node.map(|n| s(n, "/type")).unwrap_or("");
        if !matches!(ty, "string" | "boolean" | "integer") {
            errs.push(FieldError::invalid(&p, &Value::from(jp), "must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed."));
        }
        if seen.iter().any(|s| s == rest) {
            errs.push(FieldError::duplicate(&p, &Value::from(jp)));
        } else {
            seen.push(rest.to_string());
        }
    }
    if seen.len() > 8 {
        errs.push(FieldError {
            reason: "FieldValueTooMany",
            field: path.to_string(),
            detail: format!("Too many: {}: must have at most 8 items", seen.len()),
        });
    }
}

fn conversion(spec: &Value, errs: &mut Vec<FieldError>) {
    let Some(c) = spec.get("conversion").filter(|c| !c.is_null()) else {
        return;
    };
    let strategy = s(c, "/strategy");
    match strategy {
        "None" | "Webhook" => {}
        "" => errs.push(FieldError::required("spec.conversion.strategy", "")),
        other => errs.push(FieldError::not_supported(
            "spec.conversion.strategy",
            other,
            &["None", "Webhook"],
        )),
    }
    let client = c.pointer("/webhook/clientConfig").filter(|v| !v.is_null());
    let review = c
        .pointer("/webhook/conversionReviewVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let cc_path = "spec.conversion.webhookClientConfig";
    if strategy == "Webhook" {
        match client {
            None => errs.push(FieldError::required(
                cc_path,
                "required when strategy is set to Webhook",
            )),
            Some(cc) => {
                let url = cc.get("url").and_then(Value::as_str);
                let svc = cc.get("service").filter(|s| !s.is_null());
                match (url, svc) {
                    (Some(_), Some(_)) | (None, None) => errs.push(FieldError::required(
                        cc_path,
                        "exactly one of url or service is required",
                    )),
                    (Some(u), None) => webhook_url(u, &format!("{cc_path}.url"), errs),
                    (None, Some(svc)) => webhook_service(svc, &format!("{cc_path}.service"), errs),
                }
            }
        }
        let rp = "spec.conversion.conversionReviewVersions";
        if review.is_empty() {
            errs.push(FieldError::required(rp, ""));
        }
        let mut seen = Vec::new();
        for (i, v) in review.iter().enumerate() {
            let v = v.as_str().unwrap_or("");
            if seen.contains(&v) {
                errs.push(FieldError::invalid(
                    format!("{rp}[{i}]"),
                    &Value::from(v),
                    "duplicate version",
                ));
                continue;
            }
            seen.push(v);
            let e = dns1035_label(v);
            if !e.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{rp}[{i}]"),
                    &Value::from(v),
                    &e.join(","),
                ));
            }
        }
        if !review.is_empty() && !seen.iter().any(|v| *v == "v1" || *v == "v1beta1") {
            errs.push(FieldError::invalid(
                rp,
                &Value::Array(review.clone()),
                "must include at least one of v1, v1beta1",
            ));
        }
    } else {
        if client.is_some() {
            errs.push(FieldError::forbidden(
                cc_path,
                "should not be set when strategy is not set to Webhook",
            ));
        }
        if !review.is_empty() {
            errs.push(FieldError::forbidden(
                "spec.conversion.conversionReviewVersions",
                "should not be set when strategy is not set to Webhook",
            ));
        }
    }
}

fn webhook_url(u: &str, path: &str, errs: &mut Vec<FieldError>) {
    let (scheme, rest) = u.split_once("://").unwrap_or(("", u));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let mut problems = Vec::new();
    if scheme != "https" {
        problems.push(format!(
            "'https' is the only allowed URL scheme{}",
            if scheme.is_empty() {
                String::new()
            } else {
                format!("; {scheme:?} is not allowed")
            }
        ));
    }
    if host.is_empty() {
        problems.push("host must be specified".to_string());
    }
    if host.contains('@') {
        problems.push("user information is not permitted in the URL".to_string());
    }
    if rest.contains('#') {
        problems.push("fragments are not permitted in the URL".to_string());
    }
    if rest.contains('?') {
        problems.push("query parameters are not permitted in the URL".to_string());
    }
    if !problems.is_empty() {
        errs.push(FieldError::invalid(
            path,
            &Value::from(u),
            &problems.join("; "),
        ));
    }
}

fn webhook_service(svc: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if s(svc, "/name").is_empty() {
        errs.push(FieldError::required(
            format!("{path}.name"),
            "service name is required",
        ));
    }
    if s(svc, "/namespace").is_empty() {
        errs.push(FieldError::required(
            format!("{path}.namespace"),
            "service namespace is required",
        ));
    }
    if let Some(port) = svc.get("port").and_then(Value::as_i64)
        && !(1..=65535).contains(&port)
    {
        errs.push(FieldError::invalid(
            format!("{path}.port"),
            &Value::from(port),
            "port is not valid: must be between 1 and 65535, inclusive",
        ));
    }
    if let Some(p) = svc.get("path").and_then(Value::as_str)
        && !p.starts_with('/')
    {
        errs.push(FieldError::invalid(
            format!("{path}.path"),
            &Value::from(p),
            "must start with a '/'",
        ));
    }
}

fn stored_versions(crd: &Value, errs: &mut Vec<FieldError>) {
    // Upstream's PrepareForCreate fills status.storedVersions before validation; a CRD whose
    // status was not prepared is not judged here.
    let Some(stored) = crd
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
    else {
        return;
    };
    let path = "status.storedVersions";
    if stored.is_empty() {
        errs.push(FieldError::invalid(
            path,
            &Value::Array(Vec::new()),
            "must have at least one stored version",
        ));
        return;
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for v in &versions {
        let name = s(v, "/name");
        if v.get("storage").and_then(Value::as_bool) == Some(true)
            && !stored.iter().any(|s| s == name)
        {
            errs.push(FieldError::invalid(
                path,
                v,
                &format!("must have the storage version {name}"),
            ));
        }
    }
    for (i, sv) in stored.iter().enumerate() {
        if !versions.iter().any(|v| v.get("name") == Some(sv)) {
            errs.push(FieldError::invalid(
                format!("{path}[{i}]"),
                sv,
                "must appear in spec.versions",
            ));
        }
    }
}

#[cfg(test)]
#[path = "crd_tests.rs"]
mod tests;
