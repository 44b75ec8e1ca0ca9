//! Conversion between the versions of a custom kind. `None` (upstream's `nopConverter`): the
//! object is the same in every version, only its `apiVersion` changes. Webhook conversion is not
//! served.

use serde_json::{Value, json};

/// The object as `api_version` (`<group>/<version>`), with nothing else changed.
pub fn none(mut obj: Value, api_version: &str) -> Value {
    if let Some(m) = obj.as_object_mut()
        && m.get("apiVersion").and_then(Value::as_str) != Some(api_version)
    {
        m.insert("apiVersion".into(), json!(api_version));
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_rewrites_only_the_api_version() {
        let obj = json!({"apiVersion": "example.com/v1", "kind": "Hoge", "spec": {"a": 1}});
        assert_eq!(none(obj, "example.com/v2"), json!({"apiVersion": "example.com/v2", "kind": "Hoge", "spec": {"a": 1}}));
    }
}
