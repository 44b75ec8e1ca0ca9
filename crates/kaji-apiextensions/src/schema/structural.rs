//! The checks a CRD version's `openAPIV3Schema` must pass, on the raw JSON, with upstream's
//! paths (`...openAPIV3Schema.properties[spec].type`) and messages:
//! `openapi_schema` is `ValidateCustomResourceDefinitionOpenAPISchema` (forbidden keywords,
//! list and map types), `invariants` is `schema.ValidateStructural`, `defaults` is
//! `defaulting.ValidateDefaults` (defaults valid and already pruned).

use kaji_api::FieldError;
use serde_json::{Map, Value};

use super::{Node, pruning, validation};

fn prop(path: &str, k: &str) -> String {
    format!("{path}.properties[{k}]")
}

fn child(path: &str, k: &str) -> String {
    format!("{path}.{k}")
}

fn str_of<'a>(s: &'a Map<String, Value>, k: &str) -> &'a str {
    s.get(k).and_then(Value::as_str).unwrap_or("")
}

fn bool_of(s: &Map<String, Value>, k: &str) -> bool {
    s.get(k).and_then(Value::as_bool).unwrap_or(false)
}

fn props(s: &Map<String, Value>) -> Option<&Map<String, Value>> {
    s.get("properties")
        .and_then(Value::as_object)
        .filter(|p| !p.is_empty())
}

const OPENAPI_V3_TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

#[derive(Clone)]
pub(crate) struct Ctx {
    pub allow_defaults: bool,
    pub disallow_reason: String,
    pub inside_meta: bool,
}

/// `ValidateCustomResourceDefinitionOpenAPISchema`.
pub(crate) fn openapi_schema(
    schema: &Value,
    path: &str,
    ctx: &Ctx,
    is_root: bool,
    errs: &mut Vec<FieldError>,
) {
    let Some(s) = schema.as_object() else { return };
    standard(s, path, ctx, errs);
    if bool_of(s, "uniqueItems") {
        errs.push(FieldError::forbidden(
            child(path, "uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    if let Some(ap) = s.get("additionalProperties") {
        if props(s).is_some() && (ap == &Value::Bool(false) || ap.is_object()) {
            errs.push(FieldError::forbidden(
                child(path, "additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        let mut sub = ctx.clone();
        if ctx.inside_meta {
            sub.allow_defaults = false;
            sub.disallow_reason = "inside additionalProperties applying to object metadata".into();
        }
        openapi_schema(ap, &child(path, "additionalProperties"), &sub, false, errs);
    }
    if let Some(p) = props(s) {
        for (k, v) in p {
            let mut sub = ctx.clone();
            if (is_root || bool_of(s, "x-kubernetes-embedded-resource"))
                && matches!(k.as_str(), "metadata" | "kind" | "apiVersion")
            {
                sub.inside_meta = true;
                if is_root {
                    sub.allow_defaults = false;
                    sub.disallow_reason = format!("in top-level {k}");
                }
            }
            openapi_schema(v, &prop(path, k), &sub, false, errs);
        }
    }
    if let Some(not) = s.get("not") {
        openapi_schema(not, &child(path, "not"), ctx, false, errs);
    }
    for junctor in ["allOf", "oneOf", "anyOf"] {
        if let Some(list) = s.get(junctor).and_then(Value::as_array) {
            for (i, v) in list.iter().enumerate() {
                openapi_schema(v, &format!("{path}.{junctor}[{i}]"), ctx, false, errs);
            }
        }
    }
    if let Some(items) = s.get("items") {
        openapi_schema(items, &child(path, "items"), ctx, false, errs);
    }
    if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
        errs.push(FieldError::invalid(
            child(path, "x-kubernetes-preserve-unknown-fields"),
            &Value::Bool(false),
            "must be true or undefined",
        ));
    }
    let ty = str_of(s, "type");
    let type_path = child(path, "type");
    if let Some(mt) = s.get("x-kubernetes-map-type") {
        if ty != "object" {
            if ty.is_empty() {
                errs.push(FieldError::required(
                    &type_path,
                    "must be object if x-kubernetes-map-type is specified",
                ));
            } else {
                errs.push(FieldError::invalid(
                    &type_path,
                    &Value::from(ty),
                    "must be object if x-kubernetes-map-type is specified",
                ));
            }
        }
        let mt = mt.as_str().unwrap_or_default();
        if mt != "atomic" && mt != "granular" {
            errs.push(FieldError::not_supported(
                child(path, "x-kubernetes-map-type"),
                mt,
                &["atomic", "granular"],
            ));
        }
    }
    let list_type = s
        .get("x-kubernetes-list-type")
        .map(|v| v.as_str().unwrap_or_default());
    let items = s.get("items").and_then(Value::as_object);
    if let Some(lt) = list_type {
        if ty != "array" {
            if ty.is_empty() {
                errs.push(FieldError::required(
                    &type_path,
                    "must be array if x-kubernetes-list-type is specified",
                ));
            } else {
                errs.push(FieldError::invalid(
                    &type_path,
                    &Value::from(ty),
                    "must be array if x-kubernetes-list-type is specified",
                ));
            }
        } else if lt == "set"
            && let Some(is) = items
        {
            match str_of(is, "type") {
                "array"
                    if is
                        .get("x-kubernetes-list-type")
                        .is_some_and(|v| v != "atomic") =>
                {
                    errs.push(FieldError::invalid(
                        child(path, "items.x-kubernetes-list-type"),
                        &is["x-kubernetes-list-type"],
                        "must be atomic as item of a list with x-kubernetes-list-type=set",
                    ));
                }
                "object"
                    if is
                        .get("x-kubernetes-map-type")
                        .is_none_or(|v| v != "atomic") =>
                {
                    errs.push(FieldError::invalid(
                        child(path, "items.x-kubernetes-map-type"),
                        &Value::from(lt),
                        "must be atomic as item of a list with x-kubernetes-list-type=set",
                    ));
                }
                _ => {}
            }
        }
        if !matches!(lt, "atomic" | "set" | "map") {
            errs.push(FieldError::not_supported(
                child(path, "x-kubernetes-list-type"),
                lt,
                &["atomic", "set", "map"],
            ));
        }
    }
    let map_keys: Vec<&str> = s
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let keys_value = s
        .get("x-kubernetes-list-map-keys")
        .cloned()
        .unwrap_or(Value::Null);
    if !map_keys.is_empty() {
        match list_type {
            None => errs.push(FieldError::required(
                child(path, "x-kubernetes-list-type"),
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
            Some(lt) if lt != "map" => errs.push(FieldError::invalid(
                child(path, "x-kubernetes-list-type"),
                &Value::from(lt),
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
            _ => {}
        }
    }
    if list_type == Some("map") {
        if map_keys.is_empty() {
            errs.push(FieldError::required(
                child(path, "x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        match s.get("items") {
            None => errs.push(FieldError::required(
                child(path, "items"),
                "must have a schema if x-kubernetes-list-type is map",
            )),
            Some(Value::Object(is)) => {
                let ity = str_of(is, "type");
                if ity != "object" {
                    errs.push(FieldError::invalid(
                        child(path, "items.type"),
                        &Value::from(ity),
                        "must be object if parent array's x-kubernetes-list-type is map",
                    ));
                } else {
                    let iprops = is.get("properties").and_then(Value::as_object);
                    let mut seen = Vec::new();
                    for k in &map_keys {
                        match iprops.and_then(|p| p.get(*k)).and_then(Value::as_object) {
                            Some(ks) => {
                                if matches!(str_of(ks, "type"), "array" | "object") {
                                    errs.push(FieldError::invalid(format!("{path}.items.properties[{k}].type"), &Value::from(ity), "must be a scalar type if parent array's x-kubernetes-list-type is map"));
                                }
                            }
                            None => errs.push(FieldError::invalid(
                                child(path, "x-kubernetes-list-map-keys"),
                                &keys_value,
                                "entries must all be names of item properties",
                            )),
                        }
                        if seen.contains(k) {
                            errs.push(FieldError::invalid(
                                child(path, "x-kubernetes-list-map-keys"),
                                &keys_value,
                                "must not contain duplicate entries",
                            ));
                        }
                        seen.push(*k);
                    }
                }
            }
            Some(other) => errs.push(FieldError::invalid(
                child(path, "items"),
                other,
                "must only have a single schema if x-kubernetes-list-type is map",
            )),
        }
    }
    // validateMapListKeysMapSet
    if let (Some(lt @ ("set" | "map")), Some(is)) = (list_type, items) {
        if bool_of(is, "nullable") {
            errs.push(FieldError::forbidden(
                child(path, "items.nullable"),
                &format!("cannot be nullable when x-kubernetes-list-type is {lt}"),
            ));
        }
        if lt == "map" {
            let required: Vec<&str> = is
                .get("required")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for k in &map_keys {
                let Some(ks) = is
                    .get("properties")
                    .and_then(|p| p.get(*k))
                    .and_then(Value::as_object)
                else {
                    continue;
                };
                if !required.contains(k) && !ks.contains_key("default") {
                    errs.push(FieldError::required(format!("{path}.items.properties[{k}].default"), "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"));
                }
                if bool_of(ks, "nullable") {
                    errs.push(FieldError::forbidden(
                        format!("{path}.items.properties[{k}].nullable"),
                        "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                    ));
                }
            }
        }
    }
}

/// `specStandardValidatorV3.validate`: keywords CRD schemas do not support.
fn standard(s: &Map<String, Value>, path: &str, ctx: &Ctx, errs: &mut Vec<FieldError>) {
    let ty = str_of(s, "type");
    if ty == "null" {
        errs.push(FieldError::forbidden(
            child(path, "type"),
            "type cannot be set to null, use nullable as an alternative",
        ));
    } else if !ty.is_empty() && !OPENAPI_V3_TYPES.contains(&ty) {
        errs.push(FieldError::not_supported(
            child(path, "type"),
            ty,
            OPENAPI_V3_TYPES,
        ));
    }
    if s.contains_key("default") && !ctx.allow_defaults {
        let mut detail = "must not be set".to_string();
        if !ctx.disallow_reason.is_empty() {
            detail = format!("{detail} {}", ctx.disallow_reason);
        }
        errs.push(FieldError::forbidden(child(path, "default"), &detail));
    }
    for (k, what) in [
        ("id", "id is not supported"),
        ("additionalItems", "additionalItems is not supported"),
        ("patternProperties", "patternProperties is not supported"),
        ("definitions", "definitions is not supported"),
        ("dependencies", "dependencies is not supported"),
        ("$ref", "$ref is not supported"),
    ] {
        if s.get(k)
            .is_some_and(|v| !v.is_null() && v != "" && v.as_object().is_none_or(|o| !o.is_empty()))
        {
            errs.push(FieldError::forbidden(child(path, k), what));
        }
    }
    if s.get("items").is_some_and(Value::is_array) {
        errs.push(FieldError::forbidden(
            child(path, "items"),
            "items must be a schema object and not an array",
        ));
    }
    if ctx.inside_meta && bool_of(s, "x-kubernetes-embedded-resource") {
        errs.push(FieldError::forbidden(
            child(path, "x-kubernetes-embedded-resource"),
            "must not be used inside of resource meta",
        ));
    }
    if let Some(p) = s.get("pattern").and_then(Value::as_str)
        && let Err(e) = regex::Regex::new(p)
    {
        let first = e
            .to_string()
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string();
        errs.push(FieldError::invalid(
            child(path, "pattern"),
            &Value::from(p),
            &format!("must be a valid regular expression, but isn't: {first}"),
        ));
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Root,
    Item,
    Field,
}

/// `schema.ValidateStructural`: types everywhere, metadata restricted, value validations free
/// of anything structural. Errors are sorted as upstream sorts them.
pub(crate) fn structural(schema: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    invariants(schema, Level::Root, path, &mut errs);
    completeness(schema, path, &mut errs);
    errs.sort_by_key(ToString::to_string);
    errs
}

fn is_int_or_string_pair(v: Option<&Value>) -> bool {
    let Some(list) = v.and_then(Value::as_array) else {
        return false;
    };
    let only = |x: &Value, t: &str| {
        x.as_object()
            .is_some_and(|o| o.len() == 1 && str_of(o, "type") == t)
    };
    list.len() == 2 && only(&list[0], "integer") && only(&list[1], "string")
}

fn invariants(schema: &Value, lvl: Level, path: &str, errs: &mut Vec<FieldError>) {
    let Some(s) = schema.as_object() else { return };
    let ty = str_of(s, "type");
    let embedded = bool_of(s, "x-kubernetes-embedded-resource");
    let int_or_string = bool_of(s, "x-kubernetes-int-or-string");
    let preserve = bool_of(s, "x-kubernetes-preserve-unknown-fields");
    if ty == "array" && !s.contains_key("items") {
        errs.push(FieldError::required(
            child(path, "items"),
            "must be specified",
        ));
    }
    if let Some(items) = s.get("items") {
        invariants(items, Level::Item, &child(path, "items"), errs);
    }
    if let Some(p) = s.get("properties").and_then(Value::as_object) {
        for (k, v) in p {
            invariants(v, Level::Field, &prop(path, k), errs);
        }
    }
    if let Some(ap) = s.get("additionalProperties") {
        if lvl == Level::Root {
            errs.push(FieldError::forbidden(
                child(path, "additionalProperties"),
                "must not be used at the root",
            ));
        }
        if ap.is_object() {
            invariants(ap, Level::Field, &child(path, "additionalProperties"), errs);
        }
    }
    if int_or_string && preserve {
        errs.push(FieldError::invalid(
            child(path, "x-kubernetes-preserve-unknown-fields"),
            &Value::Bool(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if int_or_string && embedded {
        errs.push(FieldError::invalid(
            child(path, "x-kubernetes-embedded-resource"),
            &Value::Bool(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    let skip_any_of = is_int_or_string_pair(s.get("anyOf"));
    let skip_first_all_of_any_of = s
        .get("allOf")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .is_some_and(|f| is_int_or_string_pair(f.get("anyOf")));
    value_validation(s, skip_any_of, skip_first_all_of_any_of, path, errs);

    if embedded && ty != "object" {
        if ty.is_empty() {
            errs.push(FieldError::required(
                child(path, "type"),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        } else {
            errs.push(FieldError::invalid(
                child(path, "type"),
                &Value::from(ty),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        }
    } else if ty.is_empty() && !int_or_string && !preserve {
        let detail = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errs.push(FieldError::required(child(path, "type"), detail));
    }
    if embedded && s.contains_key("additionalProperties") {
        errs.push(FieldError::forbidden(
            child(path, "additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if lvl == Level::Root && !ty.is_empty() && ty != "object" {
        errs.push(FieldError::invalid(
            child(path, "type"),
            &Value::from(ty),
            "must be object at the root",
        ));
    }
    let check_metadata = lvl == Level::Root || embedded;
    let p = s.get("properties").and_then(Value::as_object);
    if check_metadata {
        for (k, want) in [
            ("kind", "string"),
            ("apiVersion", "string"),
            ("metadata", "object"),
        ] {
            if let Some(f) = p.and_then(|p| p.get(k)).and_then(Value::as_object) {
                let t = str_of(f, "type");
                if t != want {
                    errs.push(FieldError::invalid(
                        format!("{}.type", prop(path, k)),
                        &Value::from(t),
                        &format!("must be {want}"),
                    ));
                }
            }
        }
    }
    if lvl == Level::Root
        && let Some(meta) = p.and_then(|p| p.get("metadata")).and_then(Value::as_object)
    {
        // Only `type`, `properties` naming name/generateName (and a default, checked
        // elsewhere) may be said about metadata.
        let mut ok = true;
        for (k, v) in meta {
            match k.as_str() {
                "type" | "default" => {}
                "properties" => {
                    let names = v
                        .as_object()
                        .map(|o| o.keys().all(|k| k == "name" || k == "generateName"))
                        .unwrap_or(false);
                    ok &= names;
                }
                _ => ok = false,
            }
        }
        if !ok {
            errs.push(FieldError::forbidden(prop(path, "metadata"), "must not specify anything other than name and generateName, but metadata is implicitly specified"));
        }
    }
    if embedded && !preserve && p.is_none_or(Map::is_empty) {
        errs.push(FieldError::required(child(path, "properties"), "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"));
    }
}

fn value_validation(
    s: &Map<String, Value>,
    skip_any_of: bool,
    skip_first_all_of_any_of: bool,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    if !skip_any_of {
        for (i, v) in s
            .get("anyOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            nested(v, false, &format!("{path}.anyOf[{i}]"), errs);
        }
    }
    for (i, v) in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        nested(
            v,
            skip_first_all_of_any_of && i == 0,
            &format!("{path}.allOf[{i}]"),
            errs,
        );
    }
    for (i, v) in s
        .get("oneOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        nested(v, false, &format!("{path}.oneOf[{i}]"), errs);
    }
    if let Some(not) = s.get("not") {
        nested(not, false, &child(path, "not"), errs);
    }
}

/// A schema under `allOf`/`anyOf`/`oneOf`/`not`: value validations only.
fn nested(v: &Value, skip_any_of: bool, path: &str, errs: &mut Vec<FieldError>) {
    let Some(s) = v.as_object() else { return };
    value_validation(s, skip_any_of, false, path, errs);
    if let Some(items) = s.get("items") {
        nested(items, false, &child(path, "items"), errs);
    }
    if let Some(p) = s.get("properties").and_then(Value::as_object) {
        for (k, v) in p {
            nested(v, false, &prop(path, k), errs);
        }
    }
    let set = |k: &str| {
        s.get(k).is_some_and(|v| {
            !v.is_null()
                && v != &Value::Bool(false)
                && v != ""
                && v.as_array().is_none_or(|a| !a.is_empty())
        })
    };
    for (k, msg) in [
        ("type", "must be empty to be structural"),
        ("additionalProperties", "must be undefined to be structural"),
        ("default", "must be undefined to be structural"),
        ("title", "must be empty to be structural"),
        ("description", "must be empty to be structural"),
        ("nullable", "must be false to be structural"),
        (
            "x-kubernetes-preserve-unknown-fields",
            "must be false to be structural",
        ),
        (
            "x-kubernetes-embedded-resource",
            "must be false to be structural",
        ),
        (
            "x-kubernetes-int-or-string",
            "must be false to be structural",
        ),
        (
            "x-kubernetes-list-map-keys",
            "must be empty to be structural",
        ),
        (
            "x-kubernetes-list-type",
            "must be undefined to be structural",
        ),
        (
            "x-kubernetes-map-type",
            "must be undefined to be structural",
        ),
    ] {
        let present = if k == "additionalProperties" || k == "default" {
            s.contains_key(k)
        } else {
            set(k)
        };
        if present {
            errs.push(FieldError::forbidden(child(path, k), msg));
        }
    }
    if s.get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| p.contains_key("metadata"))
    {
        errs.push(FieldError::forbidden(
            prop(path, "metadata"),
            "must not be specified in a nested context",
        ));
    }
}

/// `validateStructuralCompleteness`: fields and items named in value validations must also be
/// specified in the structural part of the schema.
fn completeness(schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(s) = schema.as_object() else { return };
    if bool_of(s, "x-kubernetes-preserve-unknown-fields") {
        return;
    }
    if let Some(p) = s.get("properties").and_then(Value::as_object) {
        for (k, v) in p {
            completeness(v, &prop(path, k), errs);
        }
    }
    if let Some(items) = s.get("items") {
        completeness(items, &child(path, "items"), errs);
    }
    if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
        completeness(ap, &child(path, "additionalProperties"), errs);
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        for (i, v) in s
            .get(junctor)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            nested_completeness(s, v, path, &format!("{path}.{junctor}[{i}]"), errs);
        }
    }
    if let Some(not) = s.get("not") {
        nested_completeness(s, not, path, &child(path, "not"), errs);
    }
}

fn nested_completeness(
    s: &Map<String, Value>,
    v: &Value,
    path: &str,
    vpath: &str,
    errs: &mut Vec<FieldError>,
) {
    let Some(v) = v.as_object() else { return };
    if let Some(vp) = v.get("properties").and_then(Value::as_object) {
        let sp = s.get("properties").and_then(Value::as_object);
        for (k, sub) in vp {
            match sp.and_then(|p| p.get(k)).and_then(Value::as_object) {
                Some(known) => {
                    nested_completeness(known, sub, &prop(path, k), &prop(vpath, k), errs)
                }
                None if s.get("additionalProperties").is_some_and(Value::is_object) => {}
                None => errs.push(FieldError::required(
                    prop(path, k),
                    &format!("because it is defined in {}", prop(vpath, k)),
                )),
            }
        }
    }
    if let Some(vi) = v.get("items") {
        match s.get("items").and_then(Value::as_object) {
            Some(known) => nested_completeness(
                known,
                vi,
                &child(path, "items"),
                &child(vpath, "items"),
                errs,
            ),
            None => errs.push(FieldError::required(
                child(path, "items"),
                &format!("because it is defined in {}", child(vpath, "items")),
            )),
        }
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        for (i, sub) in v
            .get(junctor)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            nested_completeness(s, sub, path, &format!("{vpath}.{junctor}[{i}]"), errs);
        }
    }
    if let Some(not) = v.get("not") {
        nested_completeness(s, not, path, &child(vpath, "not"), errs);
    }
}

/// `defaulting.ValidateDefaults`: every default outside metadata validates against its own
/// schema and is not changed by pruning.
pub(crate) fn defaults(
    node: &Node,
    path: &str,
    embedded_root: bool,
    inside_meta: bool,
    errs: &mut Vec<FieldError>,
) {
    let resource = embedded_root || node.embedded_resource;
    let inside_meta = inside_meta && !node.embedded_resource;
    if let (Some(d), false) = (&node.default, inside_meta) {
        let dpath = child(path, "default");
        let mut pruned = d.clone();
        let mut dropped = Vec::new();
        pruning::prune_with(node, &mut pruned, resource, &mut dropped);
        if &pruned != d {
            errs.push(FieldError::invalid(
                &dpath,
                d,
                "must not have unknown fields",
            ));
        }
        errs.extend(validation::validate_at(node, d, &dpath));
    }
    if let Some(items) = &node.items {
        defaults(items, &child(path, "items"), false, inside_meta, errs);
    }
    for (k, p) in &node.properties {
        let meta =
            inside_meta || (resource && matches!(k.as_str(), "metadata" | "apiVersion" | "kind"));
        defaults(p, &prop(path, k), false, meta, errs);
    }
}
