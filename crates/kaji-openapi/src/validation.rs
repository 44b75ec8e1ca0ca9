//! Field validation (`fieldValidation=Strict|Warn`): which fields of an object its schema does
//! not declare, and which fields appear twice, with paths spelt as upstream's strict decoder
//! spells them (`spec.template.spec.containers[0].imagePullPolicyX`; map keys are not part of
//! a path, as they are not in Go's decoder). `prune_unknown_fields` does what decoding into Go
//! structs does under `Ignore`/`Warn`: drop them.

use serde_json::Value;

use crate::definitions::{REF_PREFIX, definitions};

/// The schema a `$ref` points at (following chains), or the schema itself.
fn resolve(mut schema: &Value) -> &Value {
    let defs = definitions();
    for _ in 0..16 {
        let Some(name) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(REF_PREFIX))
        else {
            break;
        };
        match defs.get(name) {
            Some(target) => schema = target,
            None => break,
        }
    }
    schema
}

/// How a schema treats the keys of an object value.
enum Fields<'a> {
    /// A struct: these properties, and for other keys this schema (or none: unknown).
    Struct(&'a serde_json::Map<String, Value>, Option<&'a Value>),
    /// A map: every value has this schema.
    Map(&'a Value),
    /// Anything goes (`x-kubernetes-preserve-unknown-fields`, free-form objects, raw JSON).
    Free,
}

fn fields_of(schema: &Value) -> Fields<'_> {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return Fields::Free;
    }
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    match (
        schema.get("properties").and_then(Value::as_object),
        additional,
    ) {
        (Some(props), additional) => Fields::Struct(props, additional),
        (None, Some(additional)) => Fields::Map(additional),
        (None, None) => Fields::Free,
    }
}

fn items_of(schema: &Value) -> Option<&Value> {
    schema.get("items").filter(|i| i.is_object())
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// Paths of the fields of `obj` that the schema of `root_definition` does not declare, e.g.
/// `spec.foo`; upstream reports each as `unknown field "spec.foo"`. Empty for an unknown
/// definition.
pub fn unknown_fields(root_definition: &str, obj: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(schema) = definitions().get(root_definition) {
        collect_unknown(schema, obj, "", &mut out);
    }
    out
}

fn collect_unknown(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let schema = resolve(schema);
    match value {
        Value::Object(map) => match fields_of(schema) {
            Fields::Struct(props, additional) => {
                for (key, v) in map {
                    match props.get(key).or(additional) {
                        Some(sub) => collect_unknown(sub, v, &join(path, key), out),
                        None => out.push(join(path, key)),
                    }
                }
            }
            Fields::Map(sub) => map
                .values()
                .for_each(|v| collect_unknown(sub, v, path, out)),
            Fields::Free => {}
        },
        Value::Array(items) => {
            if let Some(sub) = items_of(schema) {
                for (i, v) in items.iter().enumerate() {
                    collect_unknown(sub, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Removes from `obj` every field the schema of `root_definition` does not declare.
pub fn prune_unknown_fields(root_definition: &str, obj: &mut Value) {
    if let Some(schema) = definitions().get(root_definition) {
        prune(schema, obj);
    }
}

fn prune(schema: &Value, value: &mut Value) {
    let schema = resolve(schema);
    match value {
        Value::Object(map) => match fields_of(schema) {
            Fields::Struct(props, additional) => {
                map.retain(|key, _| props.contains_key(key) || additional.is_some());
                for (key, v) in map.iter_mut() {
                    if let Some(sub) = props.get(key).or(additional) {
                        prune(sub, v);
                    }
                }
            }
            Fields::Map(sub) => map.values_mut().for_each(|v| prune(sub, v)),
            Fields::Free => {}
        },
        Value::Array(items) => {
            if let Some(sub) = items_of(schema) {
                items.iter_mut().for_each(|v| prune(sub, v));
            }
        }
        _ => {}
    }
}

/// Paths of the fields that appear more than once in one JSON object of the raw request body
/// `json` (a parsed `Value` keeps only the last); upstream reports each as
/// `duplicate field "metadata.name"`. Returns nothing for a body that is not valid JSON.
pub fn duplicate_fields(root_definition: &str, json: &[u8]) -> Vec<String> {
    let mut scanner = Scanner {
        bytes: json,
        pos: 0,
        depth: 0,
        duplicates: Vec::new(),
    };
    let root = definitions().get(root_definition);
    let mut segments = Vec::new();
    if scanner.value(root, &mut segments).is_none() {
        return Vec::new();
    }
    scanner.duplicates
}

/// A minimal JSON reader that walks the document alongside its schema, noting repeated keys.
struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Nesting depth, bounded so a hostile body cannot exhaust the stack.
    depth: usize,
    duplicates: Vec<String>,
}

impl Scanner<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.bytes.len() && self.bytes[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes.get(self.pos).copied()
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.pos += 1)
    }

    fn string(&mut self) -> Option<String> {
        self.expect(b'"')?;
        let start = self.pos;
        while self.pos < self.bytes.len() {
            match self.bytes[self.pos] {
                b'\\' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    let quoted = &self.bytes[start - 1..self.pos];
                    return serde_json::from_slice(quoted).ok();
                }
                _ => self.pos += 1,
            }
        }
        None
    }

    /// Reads one value; `schema` is its schema when known, `path` the current field path.
    fn value(&mut self, schema: Option<&Value>, path: &mut Vec<String>) -> Option<()> {
        // deeper than serde_json (128) accepts anyway
        const MAX_DEPTH: usize = 256;
        self.depth += 1;
        let read = if self.depth > MAX_DEPTH {
            None
        } else {
            self.value_inner(schema, path)
        };
        self.depth -= 1;
        read
    }

    fn value_inner(&mut self, schema: Option<&Value>, path: &mut Vec<String>) -> Option<()> {
        let schema = schema.map(resolve);
        match self.peek()? {
            b'{' => {
                self.pos += 1;
                let mut seen: Vec<String> = Vec::new();
                if self.peek()? == b'}' {
                    self.pos += 1;
                    return Some(());
                }
                loop {
                    let key = self.string()?;
                    self.expect(b':')?;
                    let (sub, is_field) = match schema.map(fields_of) {
                        Some(Fields::Struct(props, additional)) => {
                            (props.get(&key).or(additional), true)
                        }
                        Some(Fields::Map(sub)) => (Some(sub), false),
                        _ => (None, true),
                    };
                    let pushed = if is_field {
                        let mut joined = path.last().cloned().unwrap_or_default();
                        joined = join(&joined, &key);
                        path.push(joined);
                        true
                    } else {
                        false
                    };
                    if seen.contains(&key) {
                        let current = if is_field {
                            path.last().cloned()
                        } else {
                            path.last().cloned().map(|p| join(&p, &key))
                        };
                        let current = current.unwrap_or_else(|| key.clone());
                        if !self.duplicates.contains(&current) {
                            self.duplicates.push(current);
                        }
                    } else {
                        seen.push(key);
                    }
                    self.value(sub, path)?;
                    if pushed {
                        path.pop();
                    }
                    match self.peek()? {
                        b',' => self.pos += 1,
                        b'}' => {
                            self.pos += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.pos += 1;
                if self.peek()? == b']' {
                    self.pos += 1;
                    return Some(());
                }
                let items = schema.and_then(items_of);
                let base = path.last().cloned().unwrap_or_default();
                for i in 0.. {
                    path.push(format!("{base}[{i}]"));
                    let read = self.value(items, path);
                    path.pop();
                    read?;
                    match self.peek()? {
                        b',' => self.pos += 1,
                        b']' => {
                            self.pos += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
                None
            }
            b'"' => self.string().map(|_| ()),
            _ => {
                // number, true, false, null
                let start = self.pos;
                while self.pos < self.bytes.len()
                    && !matches!(self.bytes[self.pos], b',' | b'}' | b']')
                    && !self.bytes[self.pos].is_ascii_whitespace()
                {
                    self.pos += 1;
                }
                (self.pos > start).then_some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "labels": {"app": "web", "tier": "frontend"},
                "annotations": {"deployment.kubernetes.io/revision": "1"},
                "managedFields": [{
                    "manager": "kubectl-client-side-apply",
                    "operation": "Update",
                    "apiVersion": "apps/v1",
                    "time": "2024-01-01T00:00:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {"f:replicas": {}}}
                }]
            },
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "nginx",
                            "image": "nginx:1.27",
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": 0.25}},
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
                            "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
                        }],
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}]
                    }
                }
            },
            "status": {"replicas": 3, "conditions": [{"type": "Available", "status": "True"}]}
        })
    }

    #[test]
    fn a_valid_deployment_has_no_unknown_fields() {
        assert_eq!(
            unknown_fields(DEPLOYMENT, &deployment()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn unknown_fields_are_reported_with_upstream_paths() {
        let mut d = deployment();
        d["spec"]["foo"] = json!(1);
        d["spec"]["template"]["spec"]["containers"][0]["bogus"] = json!(true);
        d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["hostPortX"] = json!(1);
        d["metadata"]["labelz"] = json!({});
        assert_eq!(
            unknown_fields(DEPLOYMENT, &d),
            // in document order, as the decoder meets them
            vec![
                "metadata.labelz",
                "spec.template.spec.containers[0].ports[0].hostPortX",
                "spec.template.spec.containers[0].bogus",
                "spec.foo",
            ]
        );
    }

    #[test]
    fn crd_schemas_and_preserved_fields_are_free_form() {
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"kind": "Widget", "plural": "widgets"},
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {
                        "type": "object",
                        "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                            "items": {"type": "string"}, "default": {"a": 1}}}
                    }}
                }]
            }
        });
        let name =
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition";
        assert_eq!(unknown_fields(name, &crd), Vec::<String>::new());
    }

    #[test]
    fn pruning_drops_exactly_the_unknown_fields() {
        let mut d = deployment();
        d["spec"]["foo"] = json!(1);
        d["spec"]["template"]["spec"]["containers"][0]["bogus"] = json!(true);
        prune_unknown_fields(DEPLOYMENT, &mut d);
        assert_eq!(d, deployment());
    }

    #[test]
    fn duplicate_fields_are_found_in_the_raw_body() {
        let body = br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a","name":"b",
            "labels":{"x":"1","x":"2"}},"spec":{"template":{"spec":{"containers":[{"name":"c","image":"i","image":"j"}]}}}}"#;
        assert_eq!(
            duplicate_fields(DEPLOYMENT, body),
            vec![
                "metadata.name",
                "metadata.labels.x",
                "spec.template.spec.containers[0].image"
            ]
        );
        let clean = serde_json::to_vec(&deployment()).unwrap();
        assert_eq!(duplicate_fields(DEPLOYMENT, &clean), Vec::<String>::new());
        assert_eq!(
            duplicate_fields(DEPLOYMENT, b"{\"a\":"),
            Vec::<String>::new()
        );
        let deep = "[".repeat(100_000);
        assert!(duplicate_fields(DEPLOYMENT, deep.as_bytes()).is_empty());
    }
}
