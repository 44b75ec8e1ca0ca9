//! Validation of custom objects against a compiled schema, in upstream's passes and with its
//! messages: kube-openapi's schema validator (`spec.replicas in body must be of type integer`),
//! embedded resources (`objectmeta.Validate`), list-type sets and maps (`listtype`), then the
//! `x-kubernetes-validations` rules. On update, errors inside a value equal to the old one are
//! dropped (ratcheting).

use kaji_api::FieldError;
use serde_json::{Map, Value};

use super::{Additional, ListType, Node, Type};

pub(crate) fn child_path(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

fn index_path(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn key_path(path: &str, k: &str) -> String {
    format!("{path}[{k}]")
}

pub(crate) fn validate(root: &Node, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    schema_node(root, obj, old, "", &mut errs);
    embedded(root, obj, "", &mut errs);
    list_types(root, obj, "", &mut errs);
    rules(root, obj, old, "", &mut errs);
    errs
}

/// Validation of a value (a schema's default) at a path: the schema and list-type passes.
pub(crate) fn validate_at(n: &Node, v: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    schema_node(n, v, None, path, &mut errs);
    embedded(n, v, path, &mut errs);
    list_types(n, v, path, &mut errs);
    errs
}

/// The JSON type name of a value, as kube-openapi reports it (`integer` for whole numbers).
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => {
            if n.as_f64().is_some_and(|f| f.fract() == 0.0) {
                "integer"
            } else {
                "number"
            }
        }
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(ty: Type, actual: &str) -> bool {
    match ty {
        Type::Object => actual == "object",
        Type::Array => actual == "array",
        Type::String => actual == "string",
        Type::Boolean => actual == "boolean",
        Type::Integer => actual == "integer",
        Type::Number => actual == "number" || actual == "integer",
    }
}

fn expected_name(n: &Node) -> Option<&'static str> {
    if n.int_or_string {
        return Some("integer,string");
    }
    n.ty.map(|t| match t {
        Type::Object => "object",
        Type::Array => "array",
        Type::String => "string",
        Type::Integer => "integer",
        Type::Number => "number",
        Type::Boolean => "boolean",
    })
}

/// Go's `%v` of a float64 bound (`1`, `1.5`, `1e+21`).
pub(crate) fn go_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

fn invalid(path: &str, value: &Value, msg: String) -> FieldError {
    FieldError::invalid(path, value, &msg)
}

fn type_invalid(path: &str, actual: &str, expected: &str) -> FieldError {
    FieldError {
        reason: "FieldValueTypeInvalid",
        field: path.to_string(),
        detail: format!(
            "Invalid value: {actual:?}: {path} in body must be of type {expected}: {actual:?}"
        ),
    }
}

fn too_many(path: &str, actual: usize, max: u64, what: &str) -> FieldError {
    FieldError {
        reason: "FieldValueTooMany",
        field: path.to_string(),
        detail: format!("Too many: {actual}: must have at most {max} {what}"),
    }
}

/// An error of a composite (`anyOf`, `oneOf`, `allOf`, `not`): kube-openapi returns these
/// without a field name, so upstream reports them at a nil path.
fn composite(path: &str, msg: &str) -> FieldError {
    FieldError {
        reason: "FieldValueInvalid",
        field: "<nil>".to_string(),
        detail: format!("Invalid value: \"\": {path:?} {msg}"),
    }
}

fn not_supported(path: &str, v: &Value, allowed: &[Value]) -> FieldError {
    let list: Vec<String> = allowed
        .iter()
        .map(|a| match a {
            Value::String(s) => format!("{s:?}"),
            other => format!("{:?}", other.to_string()),
        })
        .collect();
    let shown = match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) | Value::Array(_) => v.to_string(),
        other => other.to_string(),
    };
    FieldError {
        reason: "FieldValueNotSupported",
        field: path.to_string(),
        detail: format!(
            "Unsupported value: {shown}: supported values: {}",
            list.join(", ")
        ),
    }
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// The old item matching a new one, for ratcheting: list-type maps by keys, sets by value
/// (atomic lists do not correlate, as upstream).
fn old_item<'a>(n: &Node, new_item: &Value, old: Option<&'a Value>) -> Option<&'a Value> {
    let old = old?.as_array()?;
    match n.list_type {
        Some(ListType::Map) => old
            .iter()
            .find(|o| n.list_map_keys.iter().all(|k| o.get(k) == new_item.get(k))),
        Some(ListType::Set) => old.iter().find(|o| *o == new_item),
        _ => None,
    }
}

fn schema_node(n: &Node, v: &Value, old: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    // Ratcheting: an unchanged value keeps validating as it did when it was written.
    if old.is_some_and(|o| o == v) {
        return;
    }
    if v.is_null() {
        if !n.nullable
            && let Some(expected) = expected_name(n)
        {
            errs.push(type_invalid(path, "null", expected));
        }
        if let Some(allowed) = &n.enum_values {
            // As kube-openapi: a nullable enum must list null itself.
            if !allowed.iter().any(Value::is_null) {
                errs.push(not_supported(path, v, allowed));
            }
        }
        return;
    }
    let actual = type_name(v);
    if n.int_or_string {
        if actual != "integer" && actual != "string" {
            errs.push(type_invalid(path, actual, "integer,string"));
            return;
        }
    } else if let Some(ty) = n.ty
        && !type_matches(ty, actual)
    {
        errs.push(type_invalid(
            path,
            actual,
            expected_name(n).unwrap_or_default(),
        ));
        return;
    }

    value_validations(n, v, old, path, errs);

    match v {
        Value::String(s) => {
            let chars = s.chars().count() as u64;
            if let Some(min) = n.min_length
                && chars < min
            {
                errs.push(invalid(
                    path,
                    v,
                    format!("{path} in body should be at least {min} chars long"),
                ));
            }
            if let Some(max) = n.max_length
                && chars > max
            {
                errs.push(FieldError::too_long(path, max as usize));
            }
            if let Some((pattern, Some(re))) = &n.pattern
                && !re.is_match(s)
            {
                errs.push(invalid(
                    path,
                    v,
                    format!("{path} in body should match '{pattern}'"),
                ));
            }
            if let Some(f) = n.format
                && !f.is_valid(s)
            {
                errs.push(invalid(
                    path,
                    v,
                    format!("{path} in body must be of type {}: {s:?}", f.name()),
                ));
            }
        }
        Value::Number(num) => {
            let f = num.as_f64().unwrap_or_default();
            if let Some(m) = n.multiple_of
                && m > 0.0
                && ((f / m) - (f / m).round()).abs() > 1e-9
            {
                errs.push(invalid(
                    path,
                    v,
                    format!("{path} in body should be a multiple of {}", go_float(m)),
                ));
            }
            if let Some(max) = n.maximum {
                if n.exclusive_maximum && f >= max {
                    errs.push(invalid(
                        path,
                        v,
                        format!("{path} in body should be less than {}", go_float(max)),
                    ));
                } else if f > max {
                    errs.push(invalid(
                        path,
                        v,
                        format!(
                            "{path} in body should be less than or equal to {}",
                            go_float(max)
                        ),
                    ));
                }
            }
            if let Some(min) = n.minimum {
                if n.exclusive_minimum && f <= min {
                    errs.push(invalid(
                        path,
                        v,
                        format!("{path} in body should be greater than {}", go_float(min)),
                    ));
                } else if f < min {
                    errs.push(invalid(
                        path,
                        v,
                        format!(
                            "{path} in body should be greater than or equal to {}",
                            go_float(min)
                        ),
                    ));
                }
            }
        }
        Value::Array(items) => {
            if let Some(min) = n.min_items
                && (items.len() as u64) < min
            {
                errs.push(invalid(
                    path,
                    &Value::from(items.len()),
                    format!("{path} in body should have at least {min} items"),
                ));
            }
            if let Some(max) = n.max_items
                && items.len() as u64 > max
            {
                errs.push(too_many(path, items.len(), max, "items"));
            }
            if let Some(item_schema) = &n.items {
                for (i, item) in items.iter().enumerate() {
                    schema_node(
                        item_schema,
                        item,
                        old_item(n, item, old),
                        &index_path(path, i),
                        errs,
                    );
                }
            }
        }
        _ => {}
    }

    if let Some(allowed) = &n.enum_values
        && !allowed.iter().any(|a| json_eq(a, v))
    {
        errs.push(not_supported(path, v, allowed));
    }

    if let Value::Object(map) = v {
        object(n, map, old.and_then(Value::as_object), path, errs);
    }
}

fn object(
    n: &Node,
    map: &Map<String, Value>,
    old: Option<&Map<String, Value>>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    if let Some(max) = n.max_properties
        && map.len() as u64 > max
    {
        errs.push(invalid(
            path,
            &Value::from(map.len()),
            format!("{path} in body should have at most {max} properties"),
        ));
    }
    if let Some(min) = n.min_properties
        && (map.len() as u64) < min
    {
        errs.push(invalid(
            path,
            &Value::from(map.len()),
            format!("{path} in body should have at least {min} properties"),
        ));
    }
    for r in &n.required {
        if !map.contains_key(r) {
            errs.push(FieldError::required(child_path(path, r), ""));
        }
    }
    for (k, val) in map {
        let o = old.and_then(|o| o.get(k));
        if let Some(p) = n.properties.get(k) {
            schema_node(p, val, o, &child_path(path, k), errs);
        } else {
            match &n.additional {
                Additional::Schema(a) => schema_node(a, val, o, &child_path(path, k), errs),
                Additional::Bool(false) => {
                    errs.push(invalid(
                        &child_path(path, k),
                        &Value::String(k.clone()),
                        format!("{path}.{k} in body is a forbidden property"),
                    ));
                }
                _ => {}
            }
        }
    }
}

/// `allOf`, `anyOf`, `oneOf` and `not`, whose nodes validate the same value at the same path.
fn value_validations(
    n: &Node,
    v: &Value,
    old: Option<&Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let run = |s: &Node| {
        let mut e = Vec::new();
        schema_node(s, v, old, path, &mut e);
        e
    };
    if !n.any_of.is_empty() {
        let mut best: Option<Vec<FieldError>> = None;
        let mut ok = false;
        for s in &n.any_of {
            let e = run(s);
            if e.is_empty() {
                ok = true;
                break;
            }
            if best.as_ref().is_none_or(|b| e.len() < b.len()) {
                best = Some(e);
            }
        }
        if !ok {
            errs.push(composite(path, "must validate at least one schema (anyOf)"));
            errs.extend(best.unwrap_or_default());
        }
    }
    if !n.one_of.is_empty() {
        let mut best: Option<Vec<FieldError>> = None;
        let mut valid = 0;
        for s in &n.one_of {
            let e = run(s);
            if e.is_empty() {
                valid += 1;
            } else if valid == 0 && best.as_ref().is_none_or(|b| e.len() < b.len()) {
                best = Some(e);
            }
        }
        if valid != 1 {
            let more = if valid == 0 {
                "Found none valid".to_string()
            } else {
                format!("Found {valid} valid alternatives")
            };
            errs.push(composite(
                path,
                &format!("must validate one and only one schema (oneOf). {more}"),
            ));
            if valid == 0 {
                errs.extend(best.unwrap_or_default());
            }
        }
    }
    if !n.all_of.is_empty() {
        let mut valid = 0;
        for s in &n.all_of {
            let e = run(s);
            if e.is_empty() {
                valid += 1;
            }
            errs.extend(e);
        }
        if valid != n.all_of.len() {
            let more = if valid == 0 { ". None validated" } else { "" };
            errs.push(composite(
                path,
                &format!("must validate all the schemas (allOf){more}"),
            ));
        }
    }
    if let Some(not) = &n.not
        && run(not).is_empty()
    {
        errs.push(composite(path, "must not validate the schema (not)"));
    }
}

/// Embedded resources (`x-kubernetes-embedded-resource`): apiVersion and kind required, the
/// metadata's labels and annotations valid (upstream's `objectmeta.Validate`).
fn embedded(n: &Node, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if !n.sub_embedded {
        return;
    }
    match v {
        Value::Object(map) => {
            if n.embedded_resource {
                embedded_resource(map, path, errs);
            }
            for (k, val) in map {
                if let Some(p) = n.properties.get(k) {
                    embedded(p, val, &child_path(path, k), errs);
                } else if let Additional::Schema(a) = &n.additional {
                    embedded(a, val, &key_path(path, k), errs);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &n.items {
                for (i, x) in items.iter().enumerate() {
                    embedded(item, x, &index_path(path, i), errs);
                }
            }
        }
        _ => {}
    }
}

fn embedded_resource(map: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
    for k in ["apiVersion", "kind"] {
        if !map.contains_key(k) {
            errs.push(FieldError::required(
                child_path(path, k),
                "must not be empty",
            ));
        }
    }
    for (k, v) in map {
        let p = child_path(path, k);
        match k.as_str() {
            "apiVersion" => match v.as_str() {
                None => errs.push(FieldError::invalid(p, v, "must be a string")),
                Some("") => errs.push(FieldError::invalid(p, v, "must not be empty")),
                Some(s) if s.matches('/').count() > 1 => {
                    errs.push(FieldError::invalid(
                        p,
                        v,
                        &format!("unexpected GroupVersion string: {s}"),
                    ));
                }
                Some(_) => {}
            },
            "kind" => match v.as_str() {
                None => errs.push(FieldError::invalid(p, v, "must be a string")),
                Some("") => errs.push(FieldError::invalid(p, v, "must not be empty")),
                Some(s) => {
                    let e = kaji_api::validation::dns1035_label(&s.to_lowercase());
                    if !e.is_empty() {
                        errs.push(FieldError::invalid(
                            p,
                            v,
                            &format!(
                                "may have mixed case, but should otherwise match: {}",
                                e.join(",")
                            ),
                        ));
                    }
                }
            },
            "metadata" => object_meta(v, &p, errs),
            _ => {}
        }
    }
}

/// The parts of ObjectMeta validation that apply to embedded objects: names (path segments),
/// label keys and values, annotation keys.
fn object_meta(v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(meta) = v.as_object() else {
        errs.push(FieldError::invalid(path, v, "must be an object"));
        return;
    };
    for k in ["name", "generateName"] {
        if let Some(name) = meta.get(k).and_then(Value::as_str) {
            let e = kaji_api::validation::path_segment_name(name);
            if !e.is_empty() {
                errs.push(FieldError::invalid(
                    child_path(path, k),
                    &Value::String(name.into()),
                    &e.join(", "),
                ));
            }
        }
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        let p = child_path(path, "labels");
        for (k, val) in labels {
            for e in kaji_api::validation::qualified_name(k) {
                errs.push(FieldError::invalid(
                    p.clone(),
                    &Value::String(k.clone()),
                    &e,
                ));
            }
            let s = val.as_str().unwrap_or_default();
            for e in kaji_api::validation::label_value(s) {
                errs.push(FieldError::invalid(key_path(&p, k), val, &e));
            }
        }
    }
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        let p = child_path(path, "annotations");
        for k in annotations.keys() {
            for e in kaji_api::validation::qualified_name(&k.to_lowercase()) {
                errs.push(FieldError::invalid(
                    p.clone(),
                    &Value::String(k.clone()),
                    &e,
                ));
            }
        }
    }
}

/// Go's `%#v` of the duplicate key of a list-type map item, as upstream prints it.
fn go_map(m: &Map<String, Value>) -> String {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    let inner: Vec<String> = keys
        .iter()
        .map(|k| {
            let v = &m[k.as_str()];
            let shown = match v {
                Value::String(s) => format!("{s:?}"),
                other => other.to_string(),
            };
            format!("{k:?}:{shown}")
        })
        .collect();
    format!("map[string]interface {{}}{{{}}}", inner.join(", "))
}

fn duplicate_of(path: String, shown: String) -> FieldError {
    FieldError {
        reason: "FieldValueDuplicate",
        field: path,
        detail: format!("Duplicate value: {shown}"),
    }
}

/// Duplicates in `x-kubernetes-list-type: set` and `map` lists (upstream's `listtype`).
fn list_types(n: &Node, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if !n.sub_list_types {
        return;
    }
    match v {
        Value::Object(map) => {
            for (k, val) in map {
                if let Some(p) = n.properties.get(k) {
                    list_types(p, val, &child_path(path, k), errs);
                } else if let Additional::Schema(a) = &n.additional {
                    list_types(a, val, &key_path(path, k), errs);
                }
            }
        }
        Value::Array(items) => {
            match n.list_type {
                Some(ListType::Set) => {
                    for i in duplicates(items.iter().map(Some).collect()) {
                        errs.push(FieldError::duplicate(index_path(path, i), &items[i]));
                    }
                }
                Some(ListType::Map) => {
                    if let Some((i, x)) = items
                        .iter()
                        .enumerate()
                        .find(|(_, x)| !x.is_object() && !x.is_null())
                    {
                        errs.push(FieldError::invalid(
                            index_path(path, i),
                            x,
                            "must be an object for an array of list-type map",
                        ));
                    } else {
                        let keys: Vec<Map<String, Value>> = items
                            .iter()
                            .map(|x| {
                                n.list_map_keys
                                    .iter()
                                    .filter_map(|k| x.get(k).map(|v| (k.clone(), v.clone())))
                                    .collect()
                            })
                            .collect();
                        let as_values: Vec<Value> =
                            keys.iter().cloned().map(Value::Object).collect();
                        for i in duplicates(as_values.iter().map(Some).collect()) {
                            errs.push(duplicate_of(index_path(path, i), go_map(&keys[i])));
                        }
                    }
                }
                _ => {}
            }
            if let Some(item) = &n.items {
                for (i, x) in items.iter().enumerate() {
                    list_types(item, x, &index_path(path, i), errs);
                }
            }
        }
        _ => {}
    }
}

/// Indices of the second occurrence of each repeated value (as upstream: one error per value).
fn duplicates(items: Vec<Option<&Value>>) -> Vec<usize> {
    let mut seen: std::collections::HashMap<String, usize> =
        std::collections::HashMap::with_capacity(items.len());
    let mut out = Vec::new();
    for (i, x) in items.into_iter().enumerate() {
        let key = x.map(Value::to_string).unwrap_or_default();
        let times = seen.entry(key).or_insert(0);
        *times += 1;
        if *times == 2 {
            out.push(i);
        }
    }
    out
}

/// The schema type a rule's error shows as its value (upstream prints the node's type).
fn rule_type(n: &Node, v: &Value) -> &'static str {
    expected_name(n)
        .map(|t| {
            if t == "integer,string" {
                type_name(v)
            } else {
                t
            }
        })
        .unwrap_or_else(|| type_name(v))
}

/// `x-kubernetes-validations`: each rule with `self` bound to the value at its node; transition
/// rules (`oldSelf`) only where an old value corresponds (or with `optionalOldSelf`).
fn rules(n: &Node, v: &Value, old: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    if !n.sub_rules || old.is_some_and(|o| o == v) || v.is_null() {
        return;
    }
    let shown = if path.is_empty() { "<nil>" } else { path };
    for (rule, (program, message_program)) in n.rules.iter().zip(&n.programs) {
        let Ok(program) = program else { continue };
        if program.uses_old_self() && old.is_none() && !rule.optional_old_self {
            continue;
        }
        let field = match rule.field_path.as_deref() {
            Some(fp) if !fp.is_empty() => {
                let fp = fp.strip_prefix('.').unwrap_or(fp);
                if path.is_empty() {
                    fp.to_string()
                } else {
                    format!("{path}.{fp}")
                }
            }
            _ => shown.to_string(),
        };
        let ty = Value::from(rule_type(n, v));
        match program.eval(v, old) {
            Ok(Value::Bool(true)) => {}
            Ok(_) => {
                let mut msg = rule
                    .message
                    .as_deref()
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map_or_else(
                        || format!("failed rule: {}", rule.rule.trim()),
                        str::to_string,
                    );
                if let Some(mp) = message_program
                    && let Ok(Value::String(m)) = mp.eval(v, old)
                    && !m.trim().is_empty()
                {
                    msg = m;
                }
                errs.push(match rule.reason.as_deref() {
                    Some("FieldValueForbidden") => FieldError::forbidden(field, &msg),
                    Some("FieldValueRequired") => FieldError::required(field, &msg),
                    Some("FieldValueDuplicate") => FieldError::duplicate(field, &ty),
                    _ => FieldError::invalid(field, &ty, &msg),
                });
            }
            Err(e) => {
                // Upstream's runtime error texts (cel-go's error, then the rule or its message).
                let what = rule
                    .message
                    .as_deref()
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .unwrap_or(rule.rule.trim());
                let detail = if e.starts_with("no such overload") {
                    format!(
                        "'{e}': call arguments did not match a supported operator, function or macro signature for rule: {what}"
                    )
                } else if e.starts_with("operation cancelled: actual cost limit exceeded") {
                    format!(
                        "'{e}': no further validation rules will be run due to call cost exceeds limit for rule: {what}"
                    )
                } else {
                    format!("{e} evaluating rule: {what}")
                };
                errs.push(FieldError::invalid(field, &ty, &detail));
            }
        }
    }
    match v {
        Value::Object(map) => {
            for (k, val) in map {
                let o = old.and_then(|o| o.get(k));
                if let Some(p) = n.properties.get(k) {
                    rules(p, val, o, &child_path(path, k), errs);
                } else if let Additional::Schema(a) = &n.additional {
                    rules(a, val, o, &child_path(path, k), errs);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &n.items {
                for (i, x) in items.iter().enumerate() {
                    rules(item, x, old_item(n, x, old), &index_path(path, i), errs);
                }
            }
        }
        _ => {}
    }
}
