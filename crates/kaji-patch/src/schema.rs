//! Patch metadata from OpenAPI definitions, like upstream's `NewPatchMetaFromOpenAPI`:
//! walk `properties`, `items` and `additionalProperties`, following `$ref`
//! (`#/definitions/NAME` or `#/components/schemas/NAME`) and `allOf: [{$ref}]` wrappers.
//! A field without a schema is "unknown": its maps merge plainly and its lists are
//! replaced, as upstream does for unstructured data.

use serde_json::{Map, Value};

/// A position in the schema tree; `node` is None where the schema knows nothing.
#[derive(Clone, Copy)]
pub(crate) struct Schema<'a> {
    defs: &'a Map<String, Value>,
    node: Option<&'a Value>,
    name: &'a str,
}

/// The extensions on one property: how its value is patched and applied.
#[derive(Clone, Copy, Default)]
pub(crate) struct FieldMeta<'a> {
    node: Option<&'a Value>,
}

const MAX_REF_DEPTH: usize = 64;

impl<'a> Schema<'a> {
    pub(crate) fn root(defs: &'a Map<String, Value>, name: &'a str) -> Self {
        Schema {
            defs,
            node: defs.get(name),
            name,
        }
        .resolve()
    }

    fn at(self, node: Option<&'a Value>) -> Self {
        Schema {
            defs: self.defs,
            node,
            name: self.name,
        }
        .resolve()
    }

    /// Follows `$ref` and single-reference `allOf` wrappers to the schema itself.
    fn resolve(mut self) -> Self {
        for _ in 0..MAX_REF_DEPTH {
            let Some(node) = self.node else { return self };
            if let Some(r) = node.get("$ref").and_then(Value::as_str) {
                let name = r
                    .strip_prefix("#/definitions/")
                    .or_else(|| r.strip_prefix("#/components/schemas/"))
                    .unwrap_or(r);
                match self.defs.get_key_value(name) {
                    Some((k, v)) => {
                        self.node = Some(v);
                        self.name = k.as_str();
                    }
                    None => self.node = None,
                }
                continue;
            }
            if let Some(Value::Array(all)) = node.get("allOf") {
                if let Some(inner) = all.iter().find(|s| s.get("$ref").is_some()) {
                    self.node = Some(inner);
                    continue;
                }
                if all.len() == 1 {
                    self.node = all.first();
                    continue;
                }
            }
            return self;
        }
        self.node = None;
        self
    }

    /// The definition name this schema came from, for error messages.
    pub(crate) fn name(self) -> &'a str {
        self.name
    }

    #[cfg(test)]
    pub(crate) fn is_known(self) -> bool {
        self.node.is_some()
    }

    /// The schema of member `key` of an object (a declared property, else the
    /// `additionalProperties` value schema) and the property's extensions.
    pub(crate) fn field(self, key: &str) -> (Schema<'a>, FieldMeta<'a>) {
        let Some(node) = self.node else {
            return (self, FieldMeta::default());
        };
        if let Some(prop) = node.get("properties").and_then(|p| p.get(key)) {
            return (self.at(Some(prop)), FieldMeta { node: Some(prop) });
        }
        match node.get("additionalProperties") {
            Some(ap @ Value::Object(_)) => (self.at(Some(ap)), FieldMeta::default()),
            _ => (self.at(None), FieldMeta::default()),
        }
    }

    /// Whether `key` is a declared property (a struct field, not a map entry).
    pub(crate) fn has_property(self, key: &str) -> bool {
        self.node
            .and_then(|n| n.get("properties"))
            .is_some_and(|p| p.get(key).is_some())
    }

    /// The `default` of property `key`, used for list-map keys an item omits.
    pub(crate) fn property_default(self, key: &str) -> Option<&'a Value> {
        let prop = self.node?.get("properties")?.get(key)?;
        prop.get("default")
            .or_else(|| self.at(Some(prop)).node?.get("default"))
    }

    /// The schema of the items of a list.
    pub(crate) fn items(self) -> Schema<'a> {
        let items = self.node.and_then(|n| n.get("items"));
        self.at(items)
    }

    /// `field` then `items`: the element schema of list member `key`.
    pub(crate) fn list_field(self, key: &str) -> (Schema<'a>, FieldMeta<'a>) {
        let (list, meta) = self.field(key);
        (list.items(), meta)
    }

    /// `x-kubernetes-list-type` of this (list) schema, if declared on the schema itself.
    pub(crate) fn list_type(self) -> Option<&'a str> {
        self.node?.get("x-kubernetes-list-type")?.as_str()
    }

    /// `x-kubernetes-map-type` of this schema ("atomic" or "granular").
    pub(crate) fn map_type(self) -> Option<&'a str> {
        self.node?.get("x-kubernetes-map-type")?.as_str()
    }
}

impl<'a> FieldMeta<'a> {
    fn ext(self, name: &str) -> Option<&'a Value> {
        let node = self.node?;
        if let Some(v) = node.get(name) {
            return Some(v);
        }
        // OpenAPI v3 puts extensions beside an `allOf: [{$ref}]`; v2 beside `$ref`. Both
        // land on the property node; look one level into allOf just in case.
        node.get("allOf")?
            .as_array()?
            .iter()
            .find_map(|s| s.get(name))
    }

    /// `x-kubernetes-patch-strategy`, split on commas ("merge,retainKeys").
    pub(crate) fn patch_strategies(self) -> Vec<&'a str> {
        match self
            .ext("x-kubernetes-patch-strategy")
            .and_then(Value::as_str)
        {
            Some(s) if !s.is_empty() => s.split(',').collect(),
            _ => Vec::new(),
        }
    }

    /// `x-kubernetes-patch-merge-key`, or "".
    pub(crate) fn patch_merge_key(self) -> &'a str {
        self.ext("x-kubernetes-patch-merge-key")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// `x-kubernetes-list-type` on the property.
    pub(crate) fn list_type(self) -> Option<&'a str> {
        self.ext("x-kubernetes-list-type").and_then(Value::as_str)
    }

    /// `x-kubernetes-list-map-keys` on the property.
    pub(crate) fn list_map_keys(self) -> Vec<&'a str> {
        self.ext("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|keys| keys.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// `x-kubernetes-map-type` on the property.
    pub(crate) fn map_type(self) -> Option<&'a str> {
        self.ext("x-kubernetes-map-type").and_then(Value::as_str)
    }
}

#[cfg(test)]
pub(crate) mod testdefs {
    //! A small Deployment/Pod-like schema shared by the tests of every patch flavour.
    use serde_json::{Map, Value, json};

    pub(crate) fn defs() -> Map<String, Value> {
        let v = json!({
            "test.Deployment": {"type": "object", "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"$ref": "#/definitions/test.ObjectMeta"},
                "spec": {"$ref": "#/definitions/test.DeploymentSpec"},
                "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
            }},
            "test.ObjectMeta": {"type": "object", "properties": {
                "name": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                "finalizers": {"type": "array", "items": {"type": "string"},
                    "x-kubernetes-patch-strategy": "merge", "x-kubernetes-list-type": "set"},
                "ownerReferences": {"type": "array",
                    "items": {"$ref": "#/definitions/test.OwnerReference"},
                    "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "uid",
                    "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"]},
                "managedFields": {"type": "array", "items": {"type": "object"},
                    "x-kubernetes-list-type": "atomic"}
            }},
            "test.OwnerReference": {"type": "object", "properties": {
                "uid": {"type": "string"}, "name": {"type": "string"}, "kind": {"type": "string"}
            }},
            "test.DeploymentSpec": {"type": "object", "properties": {
                "replicas": {"type": "integer"},
                "selector": {"type": "object", "x-kubernetes-map-type": "atomic"},
                "strategy": {"allOf": [{"$ref": "#/components/schemas/test.DeploymentStrategy"}],
                    "x-kubernetes-patch-strategy": "retainKeys"},
                "template": {"$ref": "#/definitions/test.PodTemplateSpec"}
            }},
            "test.DeploymentStrategy": {"type": "object", "properties": {
                "type": {"type": "string"},
                "rollingUpdate": {"type": "object", "properties": {
                    "maxSurge": {"type": "string"}, "maxUnavailable": {"type": "string"}
                }}
            }},
            "test.PodTemplateSpec": {"type": "object", "properties": {
                "metadata": {"$ref": "#/definitions/test.ObjectMeta"},
                "spec": {"$ref": "#/definitions/test.PodSpec"}
            }},
            "test.PodSpec": {"type": "object", "properties": {
                "containers": {"type": "array", "items": {"$ref": "#/definitions/test.Container"},
                    "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "name",
                    "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
                "volumes": {"type": "array", "items": {"$ref": "#/definitions/test.Volume"},
                    "x-kubernetes-patch-strategy": "merge,retainKeys",
                    "x-kubernetes-patch-merge-key": "name",
                    "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
                "imagePullSecrets": {"type": "array",
                    "items": {"type": "object", "properties": {"name": {"type": "string"}}},
                    "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "name"},
                "tolerations": {"type": "array", "items": {"type": "object"},
                    "x-kubernetes-list-type": "atomic"},
                "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}}
            }},
            "test.Container": {"type": "object", "properties": {
                "name": {"type": "string"},
                "image": {"type": "string"},
                "args": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "atomic"},
                "ports": {"type": "array", "items": {"$ref": "#/definitions/test.ContainerPort"},
                    "x-kubernetes-patch-strategy": "merge",
                    "x-kubernetes-patch-merge-key": "containerPort",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["containerPort", "protocol"]},
                "env": {"type": "array", "items": {"$ref": "#/definitions/test.EnvVar"},
                    "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "name",
                    "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
                "resources": {"type": "object", "properties": {
                    "limits": {"type": "object", "additionalProperties": {"type": "string"}}
                }}
            }},
            "test.ContainerPort": {"type": "object", "properties": {
                "containerPort": {"type": "integer"}, "protocol": {"type": "string", "default": "TCP"},
                "name": {"type": "string"}
            }},
            "test.EnvVar": {"type": "object", "properties": {
                "name": {"type": "string"}, "value": {"type": "string"},
                "valueFrom": {"type": "object"}
            }},
            "test.Volume": {"type": "object", "properties": {
                "name": {"type": "string"},
                "emptyDir": {"type": "object", "properties": {"medium": {"type": "string"}}},
                "hostPath": {"type": "object", "properties": {"path": {"type": "string"}}},
                "configMap": {"type": "object", "properties": {"name": {"type": "string"}}}
            }}
        });
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_refs_items_and_extensions() {
        let defs = testdefs::defs();
        let root = Schema::root(&defs, "test.Deployment");
        let (spec, _) = root.field("spec");
        assert_eq!(spec.name(), "test.DeploymentSpec");
        let (_, strategy) = spec.field("strategy");
        assert_eq!(strategy.patch_strategies(), ["retainKeys"]);
        let (tmpl, _) = spec.field("template");
        let (pod, _) = tmpl.field("spec");
        let (container, meta) = pod.list_field("containers");
        assert_eq!(meta.patch_strategies(), ["merge"]);
        assert_eq!(meta.patch_merge_key(), "name");
        assert_eq!(container.name(), "test.Container");
        let (_, ports) = container.field("ports");
        assert_eq!(ports.list_map_keys(), ["containerPort", "protocol"]);
        let (labels, _) = root.field("metadata").0.field("labels");
        assert!(labels.field("app").0.is_known());
        assert!(!root.field("nope").0.is_known());
    }
}
