//! Structural schemas (upstream's `apiextensions-apiserver/pkg/apiserver/schema`): one CRD
//! version's `openAPIV3Schema`, compiled once into a tree of [`Node`]s, validates, prunes and
//! defaults custom objects.
//!
//! - `validation.rs`: object validation (kube-openapi's validator with upstream's messages, list
//!   types, embedded resources) and ratcheting on update;
//! - `formats.rs`: the string formats upstream keeps (`uuid`, `date-time`, `ipv4`...);
//! - `pruning.rs`: pruning of unknown fields and defaulting;
//! - `structural.rs`: the checks that make a schema structural (used by CRD validation).

mod formats;
mod pruning;
pub(crate) mod structural;
mod validation;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use kaji_api::FieldError;

use crate::cel::Program;
use regex::Regex;
use serde_json::Value;

/// A version's compiled `openAPIV3Schema`. Cheap to clone (the tree is shared).
#[derive(Clone, Debug, Default)]
pub struct Structural {
    root: Arc<Node>,
}

/// The `type` of a schema node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Type {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
}

impl Type {
    fn parse(s: &str) -> Option<Type> {
        Some(match s {
            "object" => Type::Object,
            "array" => Type::Array,
            "string" => Type::String,
            "integer" => Type::Integer,
            "number" => Type::Number,
            "boolean" => Type::Boolean,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListType {
    Atomic,
    Set,
    Map,
}

/// `additionalProperties`: absent, a boolean, or a schema.
#[derive(Debug, Default)]
pub(crate) enum Additional {
    #[default]
    None,
    Bool(bool),
    Schema(Box<Node>),
}

/// One `x-kubernetes-validations` rule (evaluated by `cel`).
#[derive(Clone, Debug, Default)]
pub struct Rule {
    pub rule: String,
    pub message: Option<String>,
    pub message_expression: Option<String>,
    pub reason: Option<String>,
    pub field_path: Option<String>,
    pub optional_old_self: bool,
}

/// One compiled schema node. Value validations (`allOf`, `anyOf`, `oneOf`, `not`) are nodes too.
#[derive(Debug, Default)]
pub(crate) struct Node {
    pub ty: Option<Type>,
    pub format: Option<formats::Format>,
    pub properties: BTreeMap<String, Node>,
    pub items: Option<Box<Node>>,
    pub additional: Additional,
    pub enum_values: Option<Vec<Value>>,
    pub pattern: Option<(String, Option<Regex>)>,
    pub maximum: Option<f64>,
    pub exclusive_maximum: bool,
    pub minimum: Option<f64>,
    pub exclusive_minimum: bool,
    pub max_length: Option<u64>,
    pub min_length: Option<u64>,
    pub max_items: Option<u64>,
    pub min_items: Option<u64>,
    pub max_properties: Option<u64>,
    pub min_properties: Option<u64>,
    pub multiple_of: Option<f64>,
    pub required: Vec<String>,
    pub nullable: bool,
    pub default: Option<Value>,
    pub int_or_string: bool,
    pub preserve_unknown_fields: bool,
    pub embedded_resource: bool,
    pub list_type: Option<ListType>,
    pub list_map_keys: Vec<String>,
    pub all_of: Vec<Node>,
    pub any_of: Vec<Node>,
    pub one_of: Vec<Node>,
    pub not: Option<Box<Node>>,
    pub rules: Vec<Rule>,
    /// Whether this node or one below it has an embedded resource, a set/map list, rules:
    /// the passes after schema validation skip the subtrees that have none.
    pub sub_embedded: bool,
    pub sub_list_types: bool,
    pub sub_rules: bool,
    /// The rules compiled once: the rule, and its `messageExpression` if it compiles.
    pub programs: Vec<(Result<Program, String>, Option<Program>)>,
}

fn u64_of(s: &serde_json::Map<String, Value>, k: &str) -> Option<u64> {
    s.get(k).and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
    })
}

fn bool_of(s: &serde_json::Map<String, Value>, k: &str) -> bool {
    s.get(k).and_then(Value::as_bool).unwrap_or(false)
}

impl Node {
    fn compile(schema: &Value) -> Node {
        let Some(s) = schema.as_object() else {
            return Node::default();
        };
        let mut n = Node {
            ty: s.get("type").and_then(Value::as_str).and_then(Type::parse),
            format: s
                .get("format")
                .and_then(Value::as_str)
                .and_then(formats::Format::parse),
            enum_values: s.get("enum").and_then(Value::as_array).cloned(),
            pattern: s
                .get("pattern")
                .and_then(Value::as_str)
                .map(|p| (p.to_string(), Regex::new(p).ok())),
            maximum: s.get("maximum").and_then(Value::as_f64),
            exclusive_maximum: bool_of(s, "exclusiveMaximum"),
            minimum: s.get("minimum").and_then(Value::as_f64),
            exclusive_minimum: bool_of(s, "exclusiveMinimum"),
            max_length: u64_of(s, "maxLength"),
            min_length: u64_of(s, "minLength"),
            max_items: u64_of(s, "maxItems"),
            min_items: u64_of(s, "minItems"),
            max_properties: u64_of(s, "maxProperties"),
            min_properties: u64_of(s, "minProperties"),
            multiple_of: s.get("multipleOf").and_then(Value::as_f64),
            required: s
                .get("required")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            nullable: bool_of(s, "nullable"),
            default: s.get("default").cloned(),
            int_or_string: bool_of(s, "x-kubernetes-int-or-string"),
            preserve_unknown_fields: bool_of(s, "x-kubernetes-preserve-unknown-fields"),
            embedded_resource: bool_of(s, "x-kubernetes-embedded-resource"),
            list_type: match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("atomic") => Some(ListType::Atomic),
                Some("set") => Some(ListType::Set),
                Some("map") => Some(ListType::Map),
                _ => None,
            },
            list_map_keys: s
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            ..Node::default()
        };
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            n.properties = props
                .iter()
                .map(|(k, v)| (k.clone(), Node::compile(v)))
                .collect();
        }
        // `items` may only be a schema in structural schemas (an array is refused by CRD validation).
        if let Some(items) = s.get("items").filter(|i| i.is_object()) {
            n.items = Some(Box::new(Node::compile(items)));
        }
        n.additional = match s.get("additionalProperties") {
            Some(Value::Bool(b)) => Additional::Bool(*b),
            Some(v @ Value::Object(_)) => Additional::Schema(Box::new(Node::compile(v))),
            _ => Additional::None,
        };
        let list = |k: &str| -> Vec<Node> {
            s.get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter().map(Node::compile).collect())
                .unwrap_or_default()
        };
        n.all_of = list("allOf");
        n.any_of = list("anyOf");
        n.one_of = list("oneOf");
        n.not = s
            .get("not")
            .filter(|v| v.is_object())
            .map(|v| Box::new(Node::compile(v)));
        if let Some(rules) = s.get("x-kubernetes-validations").and_then(Value::as_array) {
            let text = |r: &Value, k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
            n.rules = rules
                .iter()
                .map(|r| Rule {
                    rule: text(r, "rule").unwrap_or_default(),
                    message: text(r, "message"),
                    message_expression: text(r, "messageExpression"),
                    reason: text(r, "reason"),
                    field_path: text(r, "fieldPath"),
                    optional_old_self: r
                        .get("optionalOldSelf")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                })
                .collect();
            n.programs = n
                .rules
                .iter()
                .map(|r| {
                    (
                        Program::compile(&r.rule),
                        r.message_expression
                            .as_deref()
                            .and_then(|m| Program::compile(m).ok()),
                    )
                })
                .collect();
        }
        let below: Vec<&Node> = n
            .properties
            .values()
            .chain(n.items.as_deref())
            .chain(match &n.additional {
                Additional::Schema(a) => Some(a.as_ref()),
                _ => None,
            })
            .collect();
        n.sub_embedded = n.embedded_resource || below.iter().any(|c| c.sub_embedded);
        n.sub_list_types = matches!(n.list_type, Some(ListType::Set | ListType::Map))
            || below.iter().any(|c| c.sub_list_types);
        n.sub_rules = !n.rules.is_empty() || below.iter().any(|c| c.sub_rules);
        n
    }

    /// The schema of a property: declared, else `additionalProperties`'s.
    pub(crate) fn child(&self, k: &str) -> Option<&Node> {
        self.properties.get(k).or(match &self.additional {
            Additional::Schema(s) => Some(s),
            _ => None,
        })
    }
}

impl Structural {
    /// Compiles a schema the CRD validation accepted (patterns are compiled here, once).
    pub fn new(schema: &Value) -> Structural {
        Structural {
            root: Arc::new(Node::compile(schema)),
        }
    }

    /// Removes what the schema does not know (upstream pruning; `metadata` beyond the
    /// ObjectMeta fields, `apiVersion` and `kind` are kept, at the root and in embedded
    /// resources). Returns the removed fields' paths in document order, as upstream names them
    /// in `unknown field "spec.foo"` (`spec.list[0].foo`, `spec.map[key].foo`, `metadata.foo`).
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        let mut pruned = Vec::new();
        pruning::prune_root(&self.root, obj, &mut pruned);
        pruned
    }

    /// Applies the schema's `default`s (upstream structural defaulting: a default fills an
    /// absent field or a `null` in a non-nullable one; then non-nullable `null`s without a
    /// default are dropped). Call after `prune`.
    pub fn default(&self, obj: &mut Value) {
        pruning::default(&self.root, obj);
        pruning::prune_non_nullable_nulls(Some(&self.root), obj);
    }

    /// Errors of an object against the schema: types, formats, enums, bounds, required fields,
    /// embedded resources, list-type sets and maps, and `x-kubernetes-validations` rules.
    pub fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validation::validate(&self.root, obj, None)
    }

    /// Errors of an update: `validate(new)` with ratcheting (errors inside a value equal to the
    /// old one are dropped, as upstream's CRDValidationRatcheting) plus transition rules.
    pub fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        validation::validate(&self.root, new, Some(old))
    }

    /// Errors of the schema's `default`s (CRD validation): each must validate against its
    /// schema and survive pruning unchanged.
    pub(crate) fn default_errors(&self, path: &str, errs: &mut Vec<FieldError>) {
        structural::defaults(&self.root, path, true, false, errs);
    }

    /// The `x-kubernetes-validations` rules anywhere in the schema, with the schema path of the
    /// node that declares them (`spec.items`...). For CRD validation and for callers that
    /// precompile the rules.
    pub fn rules(&self) -> Vec<(String, Rule)> {
        let mut out = Vec::new();
        fn walk(n: &Node, path: &str, out: &mut Vec<(String, Rule)>) {
            for r in &n.rules {
                out.push((path.to_string(), r.clone()));
            }
            for (k, c) in &n.properties {
                walk(c, &validation::child_path(path, k), out);
            }
            if let Some(i) = &n.items {
                walk(i, &format!("{path}[*]"), out);
            }
            if let Additional::Schema(a) = &n.additional {
                walk(a, &format!("{path}[*]"), out);
            }
        }
        walk(&self.root, "", &mut out);
        out
    }
}
