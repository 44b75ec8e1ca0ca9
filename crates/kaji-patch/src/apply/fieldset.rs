//! Field sets, as `sigs.k8s.io/structured-merge-diff/v4/fieldpath` has them, and their
//! FieldsV1 encoding in `metadata.managedFields[].fieldsV1`:
//! `{"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers":
//! {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}}}}}}}` — `f:` a field, `k:` a
//! list item by its keys, `v:` a set item by value, `i:` an item by index, and `.` the
//! node itself when it has children too.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathElement {
    /// A member of an object (`f:name`).
    Field(String),
    /// An item of a keyed list by its key fields, sorted by name (`k:{"name":"x"}`).
    Key(Vec<(String, Value)>),
    /// An item of a set-list by its value (`v:"x"`).
    Value(Value),
    /// An item of an atomic list by position (`i:0`).
    Index(i64),
}

/// structured-merge-diff's total order of values: numbers, strings, bools, lists, maps,
/// then null.
fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.partial_cmp(&y).unwrap_or(Ordering::Equal)
            }
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (l, r) in x.iter().zip(y.iter()) {
                let c = compare_values(l, r);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xk: Vec<&String> = x.keys().collect();
            let mut yk: Vec<&String> = y.keys().collect();
            xk.sort();
            yk.sort();
            for (l, r) in xk.iter().zip(yk.iter()) {
                let c = l
                    .cmp(r)
                    .then_with(|| compare_values(&x[l.as_str()], &y[r.as_str()]));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xk.len().cmp(&yk.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        use PathElement::{Field, Index, Key, Value as V};
        match (self, other) {
            (Field(a), Field(b)) => a.cmp(b),
            (Field(_), _) => Ordering::Less,
            (_, Field(_)) => Ordering::Greater,
            (Key(a), Key(b)) => {
                for ((an, av), (bn, bv)) in a.iter().zip(b.iter()) {
                    let c = an.cmp(bn).then_with(|| compare_values(av, bv));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (Key(_), _) => Ordering::Less,
            (_, Key(_)) => Ordering::Greater,
            (V(a), V(b)) => compare_values(a, b),
            (V(_), _) => Ordering::Less,
            (_, V(_)) => Ordering::Greater,
            (Index(a), Index(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PathElement {
    /// The FieldsV1 key of this element.
    #[must_use]
    pub fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let m: Map<String, Value> = fields.iter().cloned().collect();
                format!("k:{}", Value::Object(m))
            }
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a FieldsV1 key; None for an unknown element type (upstream skips those).
    ///
    /// # Errors
    /// A message when the key is malformed.
    pub fn decode(s: &str) -> Result<Option<PathElement>, String> {
        let Some((kind, rest)) = s.split_once(':') else {
            return Err(format!("missing colon: {s}"));
        };
        match kind {
            "f" => Ok(Some(PathElement::Field(rest.to_string()))),
            "v" => serde_json::from_str(rest)
                .map(|v| Some(PathElement::Value(v)))
                .map_err(|e| e.to_string()),
            "k" => match serde_json::from_str::<Value>(rest).map_err(|e| e.to_string())? {
                Value::Object(m) => {
                    let mut fields: Vec<(String, Value)> = m.into_iter().collect();
                    fields.sort_by(|a, b| a.0.cmp(&b.0));
                    Ok(Some(PathElement::Key(fields)))
                }
                _ => Err(format!("expected an object of keys in {s}")),
            },
            "i" => rest
                .parse()
                .map(|i| Some(PathElement::Index(i)))
                .map_err(|e| format!("{e}")),
            _ => Ok(None),
        }
    }
}

impl std::fmt::Display for PathElement {
    /// As in conflict messages: `.name`, `[name="x"]`, `[="v"]`, `[0]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={v}]"),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A field path, printed as upstream prints it (`.spec.containers[name="x"].image`).
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// A set of field paths, as a tree: `members` are the paths ending here, `children`
/// the subtrees below. Children are never empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds a path; the empty path (the root) is never a member.
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    #[must_use]
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// The subtree below `pe`.
    #[must_use]
    pub fn with_prefix(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    #[must_use]
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    /// Adds every path of `other`, copying only what this set lacks.
    pub fn union_with(&mut self, other: &FieldSet) {
        for m in &other.members {
            if !self.members.contains(m) {
                self.members.insert(m.clone());
            }
        }
        for (pe, child) in &other.children {
            match self.children.get_mut(pe) {
                Some(mine) => mine.union_with(child),
                None => {
                    self.children.insert(pe.clone(), child.clone());
                }
            }
        }
    }

    /// Adds every path of `other`, taking its elements rather than copying them.
    pub fn absorb(&mut self, other: FieldSet) {
        if self.is_empty() {
            *self = other;
            return;
        }
        self.members.extend(other.members);
        for (pe, child) in other.children {
            match self.children.get_mut(&pe) {
                Some(mine) => mine.absorb(child),
                None => {
                    self.children.insert(pe, child);
                }
            }
        }
    }

    /// Removes every path of `other` (in place: nothing is copied).
    pub fn subtract(&mut self, other: &FieldSet) {
        if !other.members.is_empty() {
            self.members.retain(|m| !other.members.contains(m));
        }
        for (pe, o) in &other.children {
            if let Some(mine) = self.children.get_mut(pe) {
                mine.subtract(o);
                if mine.is_empty() {
                    self.children.remove(pe);
                }
            }
        }
    }

    #[must_use]
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, c)| {
                let both = c.intersection(other.children.get(pe)?);
                (!both.is_empty()).then(|| (pe.clone(), both))
            })
            .collect();
        FieldSet { members, children }
    }

    /// Whether the two sets share a path (no set is built).
    #[must_use]
    pub fn intersects(&self, other: &FieldSet) -> bool {
        self.members.iter().any(|m| other.members.contains(m))
            || self
                .children
                .iter()
                .any(|(pe, c)| other.children.get(pe).is_some_and(|o| c.intersects(o)))
    }

    /// Whether every path of `other` is in this set (no set is built).
    #[must_use]
    pub fn contains_all(&self, other: &FieldSet) -> bool {
        other.members.iter().all(|m| self.members.contains(m))
            && other
                .children
                .iter()
                .all(|(pe, o)| self.children.get(pe).is_some_and(|c| c.contains_all(o)))
    }

    #[must_use]
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, c)| {
                let rest = match other.children.get(pe) {
                    Some(o) => c.difference(o),
                    None => c.clone(),
                };
                (!rest.is_empty()).then(|| (pe.clone(), rest))
            })
            .collect();
        FieldSet { members, children }
    }

    /// Every member path, in order.
    #[must_use]
    pub fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        // Members and children interleave in element order, as upstream iterates.
        let mut keys: BTreeSet<&PathElement> = self.members.iter().collect();
        keys.extend(self.children.keys());
        for pe in keys {
            prefix.push(pe.clone());
            if self.members.contains(pe) {
                out.push(prefix.clone());
            }
            if let Some(child) = self.children.get(pe) {
                child.collect_paths(prefix, out);
            }
            prefix.pop();
        }
    }

    /// The FieldsV1 JSON of this set.
    #[must_use]
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.encode(false))
    }

    fn encode(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self && !self.is_empty() {
            out.insert(".".to_string(), Value::Object(Map::new()));
        }
        let mut keys: BTreeSet<&PathElement> = self.members.iter().collect();
        keys.extend(self.children.keys());
        for pe in keys {
            let body = match self.children.get(pe) {
                Some(child) => child.encode(self.members.contains(pe)),
                None => Map::new(),
            };
            out.insert(pe.encode(), Value::Object(body));
        }
        out
    }

    /// Parses FieldsV1 JSON.
    ///
    /// # Errors
    /// A message when a key is not a valid path element or a value is not an object.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, String> {
        let Value::Object(m) = v else {
            return Err("FieldsV1 must be an object".to_string());
        };
        Ok(Self::decode(m)?.0.unwrap_or_default())
    }

    /// Returns the children set (None when there were no children) and whether the
    /// node itself is a member.
    fn decode(m: &Map<String, Value>) -> Result<(Option<FieldSet>, bool), String> {
        let mut set: Option<FieldSet> = None;
        let mut is_member = false;
        for (k, v) in m {
            if k == "." {
                is_member = true;
                continue;
            }
            let Some(pe) = PathElement::decode(k)? else {
                continue;
            };
            let Value::Object(inner) = v else {
                return Err(format!("value of {k} must be an object"));
            };
            let (grandchildren, child_is_member) = Self::decode(inner)?;
            let s = set.get_or_insert_with(FieldSet::new);
            if child_is_member {
                s.members.insert(pe.clone());
            }
            if let Some(g) = grandchildren {
                s.children.insert(pe, g);
            }
        }
        if set.is_none() {
            is_member = true;
        }
        Ok((set, is_member))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.to_string())
    }

    #[test]
    fn fields_v1_round_trip() {
        let v = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}},
                "f:finalizers": {"v:\"a\"": {}}}
        });
        let set = FieldSet::from_fields_v1(&v).unwrap();
        let nginx = PathElement::Key(vec![("name".into(), json!("nginx"))]);
        assert!(set.has(&[f("spec"), f("replicas")]));
        assert!(set.has(&[f("metadata"), f("labels")]));
        assert!(!set.has(&[f("metadata")]));
        assert!(set.has(&[
            f("spec"),
            f("template"),
            f("spec"),
            f("containers"),
            nginx.clone()
        ]));
        assert!(set.has(&[
            f("spec"),
            f("template"),
            f("spec"),
            f("containers"),
            nginx,
            f("image")
        ]));
        assert_eq!(set.to_fields_v1(), v);
        let paths: Vec<String> = set.paths().iter().map(|p| path_string(p)).collect();
        assert!(
            paths.contains(&".spec.template.spec.containers[name=\"nginx\"].image".to_string())
        );
        assert!(paths.contains(&".spec.finalizers[=\"a\"]".to_string()));
    }

    #[test]
    fn set_algebra() {
        let mut a = FieldSet::new();
        a.insert(&[f("spec"), f("replicas")]);
        a.insert(&[f("spec"), f("paused")]);
        let mut b = FieldSet::new();
        b.insert(&[f("spec"), f("replicas")]);
        b.insert(&[f("status")]);
        assert_eq!(
            a.intersection(&b).paths(),
            vec![vec![f("spec"), f("replicas")]]
        );
        assert_eq!(a.difference(&b).paths(), vec![vec![f("spec"), f("paused")]]);
        assert_eq!(a.union(&b).paths().len(), 3);
        assert!(a.difference(&a).is_empty());
        // The in-place forms agree with the copying ones, and leave no empty subtree behind.
        let mut u = a.clone();
        u.union_with(&b);
        assert_eq!(u, a.union(&b));
        let mut u = a.clone();
        u.absorb(b.clone());
        assert_eq!(u, a.union(&b));
        let mut d = a.clone();
        d.subtract(&b);
        assert_eq!(d, a.difference(&b));
        let mut d = b.clone();
        d.subtract(&a);
        assert_eq!(d, b.difference(&a));
        assert_eq!(d.paths(), vec![vec![f("status")]]);
        let mut gone = a.clone();
        gone.subtract(&a.union(&b));
        assert!(gone.is_empty());
        assert_eq!(gone, FieldSet::new());
    }

    #[test]
    fn element_order_and_strings() {
        let k = PathElement::Key(vec![
            ("containerPort".into(), json!(80)),
            ("protocol".into(), json!("TCP")),
        ]);
        assert_eq!(k.encode(), "k:{\"containerPort\":80,\"protocol\":\"TCP\"}");
        assert_eq!(k.to_string(), "[containerPort=80,protocol=\"TCP\"]");
        assert!(f("z") < k);
        assert!(PathElement::Value(json!(1)) < PathElement::Value(json!("a")));
        assert_eq!(PathElement::decode("x:1").unwrap(), None);
        assert!(PathElement::decode("nocolon").is_err());
    }
}
