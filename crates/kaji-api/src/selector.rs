//! Label selectors (equality- and set-based, as in `?labelSelector=` and in `spec.selector`) and
//! field selectors (`?fieldSelector=`). Upstream: k8s.io/apimachinery/pkg/labels and pkg/fields.

use serde_json::{Map, Value};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
    /// Matches nothing (a LabelSelector with an unknown operator, or `nil` selector semantics).
    Nothing,
}

/// A conjunction of requirements; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Parses the string form: `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(LabelSelector { requirements })
    }

    /// Builds a selector from a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`).
    pub fn from_object(sel: &Value) -> Result<Self, String> {
        let mut requirements = Vec::new();
        if let Some(labels) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                requirements.push(Requirement::Equals(k.clone(), v.as_str().unwrap_or_default().to_string()));
            }
        }
        if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default().to_string();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|vs| vs.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                let op = e.get("operator").and_then(Value::as_str).unwrap_or_default();
                requirements.push(match op {
                    "In" => Requirement::In(key, values),
                    "NotIn" => Requirement::NotIn(key, values),
                    "Exists" => Requirement::Exists(key),
                    "DoesNotExist" => Requirement::DoesNotExist(key),
                    other => return Err(format!("{other:?} is not a valid label selector operator")),
                });
            }
        }
        Ok(LabelSelector { requirements })
    }

    /// Builds an equality selector from a plain map (a Service's or RC's `spec.selector`).
    pub fn from_map(map: &Map<String, Value>) -> Self {
        LabelSelector {
            requirements: map
                .iter()
                .map(|(k, v)| Requirement::Equals(k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
        }
    }

    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.matches_with(|k| labels.and_then(|l| l.get(k)).and_then(Value::as_str))
    }

    /// Whether labels read through `get` match: for callers holding labels in another shape
    /// (typed objects keep them in a `BTreeMap<String, String>`).
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
            Requirement::Nothing => false,
        })
    }

    /// Whether an object's `metadata.labels` match.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches(obj.pointer("/metadata/labels").and_then(Value::as_object))
    }
}

impl std::fmt::Display for LabelSelector {
    /// The string form kubectl prints (`app=web,tier in (a,b)`), as upstream's `String()`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match r {
                Requirement::Equals(k, v) => format!("{k}={v}"),
                Requirement::NotEquals(k, v) => format!("{k}!={v}"),
                Requirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
                Requirement::Exists(k) => k.clone(),
                Requirement::DoesNotExist(k) => format!("!{k}"),
                Requirement::Nothing => String::new(),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        validate_key(key)?;
        return Ok(Requirement::DoesNotExist(key.to_string()));
    }
    for (op, ctor) in [(" notin ", true), (" in ", false)] {
        if let Some(idx) = part.find(op) {
            let key = part[..idx].trim();
            validate_key(key)?;
            let rest = part[idx + op.len()..].trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("unable to parse requirement: found '{rest}', expected: '('"))?;
            let values: Vec<String> =
                inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect();
            return Ok(if ctor { Requirement::NotIn(key.to_string(), values) } else { Requirement::In(key.to_string(), values) });
        }
    }
    if let Some((k, v)) = part.split_once("!=") {
        validate_key(k.trim())?;
        return Ok(Requirement::NotEquals(k.trim().to_string(), v.trim().to_string()));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        validate_key(k.trim())?;
        return Ok(Requirement::Equals(k.trim().to_string(), v.trim().to_string()));
    }
    validate_key(part)?;
    Ok(Requirement::Exists(part.to_string()))
}

fn validate_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= 317
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok { Ok(()) } else { Err(format!("unable to parse requirement: invalid label key {key:?}")) }
}

/// A field selector term: `field=value` or `field!=value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub negated: bool,
}

/// A parsed `fieldSelector`; which fields are allowed is decided per kind by its strategy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, value, negated) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, v, false)
            } else {
                return Err(format!("invalid selector: '{part}'; can't understand '{part}'"));
            };
            requirements.push(FieldRequirement { field: field.trim().to_string(), value: value.trim().to_string(), negated });
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether the object matches, given a function that reads a field's value from it.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let v = get(&r.field).unwrap_or_default();
            (v == r.value) != r.negated
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn parses_and_matches_set_based() {
        let s = LabelSelector::parse("app=web,tier in (front, back),!canary,env notin (prod),track").unwrap();
        assert!(s.matches(Some(&labels(json!({"app":"web","tier":"front","env":"dev","track":"x"})))));
        assert!(!s.matches(Some(&labels(json!({"app":"web","tier":"front","env":"prod","track":"x"})))));
        assert!(!s.matches(Some(&labels(json!({"app":"web","tier":"front","canary":"1","track":"x"})))));
        assert!(!s.matches(Some(&labels(json!({"app":"web","tier":"mid","track":"x"})))));
        assert_eq!(s.to_string(), "app=web,tier in (front,back),!canary,env notin (prod),track");
    }

    #[test]
    fn object_selector() {
        let s = LabelSelector::from_object(&json!({"matchLabels":{"app":"a"},"matchExpressions":[{"key":"v","operator":"Exists"}]})).unwrap();
        assert!(s.matches(Some(&labels(json!({"app":"a","v":"1"})))));
        assert!(!s.matches(Some(&labels(json!({"app":"a"})))));
        assert!(LabelSelector::from_object(&json!({"matchExpressions":[{"key":"v","operator":"Bogus"}]})).is_err());
        assert!(LabelSelector::parse("a b=c").is_err());
    }

    #[test]
    fn field_selector() {
        let f = FieldSelector::parse("metadata.name=x,status.phase!=Running").unwrap();
        assert!(f.matches(|k| match k { "metadata.name" => Some("x".into()), _ => Some("Pending".into()) }));
        assert!(!f.matches(|k| match k { "metadata.name" => Some("x".into()), _ => Some("Running".into()) }));
    }
}
