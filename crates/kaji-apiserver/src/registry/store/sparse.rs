//! Sparse decoding for selectors: a stored object parsed into a `Value` that holds only the
//! members a label or field selector reads (`metadata.labels`, `metadata.name`, `spec.nodeName`,
//! ...); everything else is skipped while scanning, without allocating. A watch or list with a
//! selector decides each object this way instead of building the whole object (a pod's spec,
//! status and managedFields) for three strings.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// The members to keep: a tree of keys; a leaf keeps the member whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Paths {
    children: BTreeMap<String, Paths>,
}

impl Paths {
    /// Adds the member at `path` (keys from the root), kept whole.
    pub fn add(&mut self, path: &[&str]) {
        let Some((first, rest)) = path.split_first() else { return };
        let leaf = rest.is_empty();
        let child = self.children.entry((*first).to_string()).or_default();
        if leaf {
            // Whole: drop any narrower paths under it.
            child.children.clear();
            child.children.insert(String::new(), Paths::default());
        } else if !child.is_whole() {
            child.add(rest);
        }
    }

    fn is_whole(&self) -> bool {
        self.children.len() == 1 && self.children.contains_key("")
    }

    /// `raw` (a JSON object) with only these members; None if it does not parse.
    pub fn decode(&self, raw: &[u8]) -> Option<Value> {
        let mut de = serde_json::Deserializer::from_slice(raw);
        let v = Sparse(self).deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(v)
    }
}

struct Sparse<'p>(&'p Paths);

impl<'de> DeserializeSeed<'de> for Sparse<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0.is_whole() { serde::Deserialize::deserialize(d) } else { d.deserialize_any(self) }
    }
}

/// A map key, borrowed from the input when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

impl<'de> Visitor<'de> for Sparse<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(Key)? {
            match self.0.children.get(key.as_ref()) {
                Some(child) => {
                    let v = map.next_value_seed(Sparse(child))?;
                    out.insert(key.into_owned(), v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }

    // A path that meets something other than an object keeps it whole.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_only_the_paths() {
        let obj = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "namespace": "default", "labels": {"app": "web", "t\"x": "1"}, "managedFields": [{"manager": "m"}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}], "hostNetwork": true},
            "status": {"phase": "Running", "conditions": [{"type": "Ready"}]},
        });
        let raw = serde_json::to_vec(&obj).unwrap();
        let mut p = Paths::default();
        p.add(&["metadata", "labels"]);
        p.add(&["metadata", "name"]);
        p.add(&["spec", "nodeName"]);
        p.add(&["spec", "hostNetwork"]);
        p.add(&["status", "phase", "deeper"]);
        assert_eq!(
            p.decode(&raw).unwrap(),
            json!({"metadata": {"name": "a", "labels": {"app": "web", "t\"x": "1"}}, "spec": {"nodeName": "n1", "hostNetwork": true}, "status": {"phase": "Running"}})
        );
        // A whole member wins over narrower paths, whichever comes first.
        let mut q = Paths::default();
        q.add(&["spec", "nodeName"]);
        q.add(&["spec"]);
        q.add(&["spec", "hostNetwork"]);
        assert_eq!(q.decode(&raw).unwrap(), json!({"spec": obj["spec"].clone()}));
        assert_eq!(Paths::default().decode(&raw).unwrap(), json!({}));
        assert!(p.decode(b"{\"metadata\":").is_none());
        assert!(p.decode(b"{} x").is_none());
    }
}
