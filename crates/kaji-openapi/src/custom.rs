//! Custom resources in the documents: the definitions and paths of each served version of a
//! CustomResourceDefinition, as upstream's apiextensions-apiserver builds them
//! (`pkg/controller/openapi/builder`): the kind `<reversed group>.<version>.<Kind>` and its List,
//! the schema from `openAPIV3Schema` with `apiVersion`, `kind` and `metadata` added, in OpenAPI v2
//! stripped of what kubectl's v2 parser cannot read (`pkg/controller/openapi/v2`).
//!
//! Start at [`CustomResourceVersion::from_crd`] and [`CustomDocuments::new`]; the API server merges
//! the result into its own `/openapi/v2` and serves the v3 documents of custom group/versions.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, OnceLock};

use kaji_api::ResourceInfo;
use serde_json::{Map, Value, json};

use crate::definitions::{GVK_EXTENSION, REF_PREFIX, definitions};
use crate::routes::{Operation, PathItem, resource_paths_of};

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
/// PartialObjectMetadata's and PartialObjectMetadataList's `metadata` docs, which upstream uses.
const METADATA_DOC: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const LIST_METADATA_DOC: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const EMBEDDED_API_VERSION_DOC: &str = "apiVersion defines the versioned schema of this representation of an object. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const EMBEDDED_KIND_DOC: &str = "kind is a string value representing the type of this object. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
/// Custom resources take no strategic merge patch.
const CUSTOM_PATCH_CONSUMES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
];

/// One served version of a CustomResourceDefinition, as the documents describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomResourceVersion {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub list_kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    /// The status and scale subresources.
    pub status: bool,
    pub scale: bool,
    /// The version's `schema.openAPIV3Schema`.
    pub schema: Option<Value>,
    /// The CRD's `spec.preserveUnknownFields`.
    pub preserve_unknown_fields: bool,
}

impl CustomResourceVersion {
    /// The served versions of a CRD (an apiextensions.k8s.io/v1 object), in its order.
    pub fn from_crd(crd: &Value) -> Vec<CustomResourceVersion> {
        let spec = &crd["spec"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let names = &spec["names"];
        let kind = text(&names["kind"]);
        let list_kind = match names["listKind"].as_str() {
            Some(l) if !l.is_empty() => l.to_owned(),
            _ => format!("{kind}List"),
        };
        let singular = match names["singular"].as_str() {
            Some(s) if !s.is_empty() => s.to_owned(),
            _ => kind.to_lowercase(),
        };
        let versions = spec["versions"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        versions
            .iter()
            .filter(|v| v["served"].as_bool() == Some(true))
            .map(|v| CustomResourceVersion {
                group: text(&spec["group"]),
                version: text(&v["name"]),
                kind: kind.clone(),
                list_kind: list_kind.clone(),
                plural: text(&names["plural"]),
                singular: singular.clone(),
                namespaced: spec["scope"].as_str() != Some("Cluster"),
                status: v
                    .pointer("/subresources/status")
                    .is_some_and(Value::is_object),
                scale: v
                    .pointer("/subresources/scale")
                    .is_some_and(Value::is_object),
                schema: v
                    .pointer("/schema/openAPIV3Schema")
                    .filter(|s| s.is_object())
                    .cloned(),
                preserve_unknown_fields: spec["preserveUnknownFields"].as_bool() == Some(true),
            })
            .collect()
    }

    /// The definition name upstream gives the kind: `com.example.stable.v1.Hoge`.
    pub fn definition_name(&self) -> String {
        rest_friendly_name(&self.group, &self.version, &self.kind)
    }

    fn list_definition_name(&self) -> String {
        rest_friendly_name(&self.group, &self.version, &self.list_kind)
    }

    fn gvk(&self, kind: &str) -> Value {
        json!([{"group": self.group, "kind": kind, "version": self.version}])
    }

    /// The kind's schema (upstream's `buildKubeNative`), for OpenAPI v2 or v3; refs in v2 form.
    pub fn kind_schema(&self, v2: bool) -> Value {
        let opaque = match &self.schema {
            None => true,
            Some(s) => {
                v2 && (self.preserve_unknown_fields
                    || is_true(s, "x-kubernetes-preserve-unknown-fields"))
            }
        };
        // Without a usable schema, only "an object": kubectl would otherwise refuse every field
        // but apiVersion, kind and metadata.
        let mut out = if opaque {
            json!({"type": "object"})
        } else {
            let mut s = structural(self.schema.as_ref().unwrap_or(&Value::Null));
            unfold(&mut s);
            if v2 {
                to_v2(&mut s);
            }
            let props = properties_mut(&mut s);
            props.insert(
                "metadata".into(),
                json!({"$ref": format!("{REF_PREFIX}{OBJECT_META}"), "description": METADATA_DOC}),
            );
            let (api_version, kind) = type_meta();
            props.insert("apiVersion".into(), api_version);
            props.insert("kind".into(), kind);
            add_embedded_properties(&mut s, v2);
            s
        };
        out[GVK_EXTENSION] = self.gvk(&self.kind);
        out
    }

    /// The List kind's schema (upstream's `buildListSchema`).
    pub fn list_schema(&self) -> Value {
        let (api_version, kind) = type_meta();
        json!({
            "description": format!("{} is a list of {}", self.list_kind, self.kind),
            "required": ["items"],
            "properties": {
                "items": {
                    "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md", self.plural),
                    "type": "array",
                    "items": {"$ref": format!("{REF_PREFIX}{}", self.definition_name())}
                },
                "metadata": {"$ref": format!("{REF_PREFIX}{LIST_META}"), "description": LIST_METADATA_DOC},
                "apiVersion": api_version,
                "kind": kind
            },
            GVK_EXTENSION: self.gvk(&self.list_kind)
        })
    }

    /// The resource's operations, spelled as the built-ins' (`routes`).
    fn paths(&self) -> Vec<PathItem> {
        const SUBRESOURCES: [&[&str]; 4] = [&[], &["status"], &["scale"], &["status", "scale"]];
        let info = ResourceInfo {
            group: intern(&self.group),
            version: intern(&self.version),
            kind: intern(&self.kind),
            plural: intern(&self.plural),
            singular: intern(&self.singular),
            namespaced: self.namespaced,
            short_names: &[],
            categories: &[],
            verbs: kaji_api::resource::ALL_VERBS,
            subresources: SUBRESOURCES[usize::from(self.status) + 2 * usize::from(self.scale)],
        };
        let mut items = resource_paths_of(
            &info,
            intern(&self.definition_name()),
            Some(intern(&self.list_definition_name())),
        );
        for op in items.iter_mut().flat_map(|i| i.operations.iter_mut()) {
            custom_operation(op);
        }
        items
    }
}

fn custom_operation(op: &mut Operation) {
    if op.method == "patch" {
        op.consumes = CUSTOM_PATCH_CONSUMES;
    }
    op.produces = match op.action {
        "list" | "watch" | "watchlist" => &[
            "application/json",
            "application/yaml",
            "application/json;stream=watch",
        ],
        _ => &["application/json", "application/yaml"],
    };
}

/// `util.ToRESTFriendlyName` of `<group>/<version>.<kind>`: the group's DNS labels reversed.
fn rest_friendly_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// Routes take `&'static str` names (the built-ins' are static); custom names are interned so
/// each distinct name is allocated once for the life of the process, however often the
/// documents are rebuilt.
fn intern(s: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(found) = names.get(s) {
        return found;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// TypeMeta's `apiVersion` and `kind` properties, as every built-in kind has them.
fn type_meta() -> (Value, Value) {
    let props = &definitions()["io.k8s.api.core.v1.ConfigMap"]["properties"];
    (props["apiVersion"].clone(), props["kind"].clone())
}

fn is_true(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool) == Some(true)
}

fn properties_mut(s: &mut Value) -> &mut Map<String, Value> {
    if !s.get("properties").is_some_and(Value::is_object) {
        s["properties"] = json!({});
    }
    match s.get_mut("properties") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("properties was just made an object"),
    }
}

/// What upstream's structural schema keeps of a CRD schema (`NewStructural` then `ToKubeOpenAPI`):
/// types, docs, defaults, value validations, the Kubernetes extensions; drops `example`,
/// `externalDocs` and the like, and extensions set to false.
fn structural(s: &Value) -> Value {
    let Value::Object(map) = s else {
        return s.clone();
    };
    let mut out = Map::new();
    for (k, v) in map {
        let kept = match k.as_str() {
            "properties" => v.as_object().map(|p| {
                Value::Object(p.iter().map(|(n, s)| (n.clone(), structural(s))).collect())
            }),
            "items" | "not" => Some(structural(v)),
            "additionalProperties" => Some(if v.is_object() {
                structural(v)
            } else {
                v.clone()
            }),
            "allOf" | "anyOf" | "oneOf" => v
                .as_array()
                .map(|a| Value::Array(a.iter().map(structural).collect())),
            "x-kubernetes-preserve-unknown-fields"
            | "x-kubernetes-embedded-resource"
            | "x-kubernetes-int-or-string" => (v.as_bool() == Some(true)).then(|| v.clone()),
            "nullable" | "uniqueItems" | "exclusiveMaximum" | "exclusiveMinimum" => {
                (v.as_bool() == Some(true)).then(|| v.clone())
            }
            "type"
            | "format"
            | "title"
            | "description"
            | "default"
            | "maximum"
            | "minimum"
            | "maxLength"
            | "minLength"
            | "pattern"
            | "maxItems"
            | "minItems"
            | "multipleOf"
            | "enum"
            | "maxProperties"
            | "minProperties"
            | "required"
            | "x-kubernetes-list-map-keys"
            | "x-kubernetes-list-type"
            | "x-kubernetes-map-type"
            | "x-kubernetes-validations" => Some(v.clone()),
            _ => None,
        };
        if let Some(v) = kept {
            out.insert(k.clone(), v);
        }
    }
    Value::Object(out)
}

/// Upstream's `Unfold`: `x-kubernetes-int-or-string` spelled out as `anyOf: [integer, string]`.
fn unfold(s: &mut Value) {
    let Value::Object(map) = s else { return };
    if map
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
    {
        let pattern = json!([{"type": "integer"}, {"type": "string"}]);
        let any_of_pattern = map.get("anyOf") == Some(&pattern);
        let all_of_pattern = map
            .get("allOf")
            .and_then(|a| a.get(0))
            .and_then(|a| a.get("anyOf"))
            == Some(&pattern);
        if !any_of_pattern && !all_of_pattern {
            if !map.contains_key("anyOf") {
                map.insert("anyOf".into(), pattern);
            } else {
                let mut all_of = vec![json!({"anyOf": pattern})];
                if let Some(Value::Array(rest)) = map.remove("allOf") {
                    all_of.extend(rest);
                }
                map.insert("allOf".into(), Value::Array(all_of));
            }
        }
    }
    for_each_child(s, unfold);
}

fn for_each_child(s: &mut Value, f: fn(&mut Value)) {
    if let Some(Value::Object(props)) = s.get_mut("properties") {
        props.values_mut().for_each(f);
    }
    if let Some(items @ Value::Object(_)) = s.get_mut("items") {
        f(items);
    }
    if let Some(additional @ Value::Object(_)) = s.get_mut("additionalProperties") {
        f(additional);
    }
}

/// Upstream's `ToStructuralOpenAPIV2`: no junctors; nullable and preserve-unknown-fields nodes
/// lose their type, properties and items (kubectl's v2 parser would reject their values); arrays
/// without items lose their type; a nullable field is not required.
fn to_v2(s: &mut Value) {
    let Value::Object(map) = s else { return };
    for junctor in ["allOf", "oneOf", "anyOf", "not"] {
        map.remove(junctor);
    }
    let flag =
        |map: &Map<String, Value>, key: &str| map.get(key).and_then(Value::as_bool) == Some(true);
    if flag(map, "nullable") {
        for key in ["type", "nullable", "items", "properties"] {
            map.remove(key);
        }
    }
    let preserve = flag(map, "x-kubernetes-preserve-unknown-fields");
    if preserve {
        map.remove("items");
        map.remove("properties");
    }
    let ty = map.get("type").and_then(Value::as_str).map(str::to_owned);
    if (ty.as_deref() == Some("array") && !map.contains_key("items"))
        || (preserve && ty.as_deref() == Some("object"))
    {
        map.remove("type");
    }
    let nullable_props: Vec<String> = map
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| {
            p.iter()
                .filter(|(_, s)| flag_of(s, "nullable"))
                .map(|(n, _)| n.clone())
                .collect()
        })
        .unwrap_or_default();
    if let Some(Value::Array(required)) = map.get_mut("required") {
        required.retain(|r| {
            !r.as_str()
                .is_some_and(|r| nullable_props.iter().any(|n| n == r))
        });
        if required.is_empty() {
            map.remove("required");
        }
    }
    if map
        .get("additionalProperties")
        .is_some_and(|a| flag_of(a, "nullable"))
    {
        map.remove("required");
    }
    for_each_child(s, to_v2);
}

fn flag_of(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool) == Some(true)
}

/// Upstream's `addEmbeddedProperties`: objects marked `x-kubernetes-embedded-resource` get
/// apiVersion, kind and metadata (not in v2 under preserve-unknown-fields, where kubectl would
/// then refuse unknown fields).
fn add_embedded_properties(s: &mut Value, v2: bool) {
    if !s.is_object() {
        return;
    }
    for_each_child(s, if v2 { embedded_v2 } else { embedded_v3 });
    if v2 && flag_of(s, "x-kubernetes-preserve-unknown-fields") {
        return;
    }
    if flag_of(s, "x-kubernetes-embedded-resource") {
        let (mut api_version, mut kind) = type_meta();
        api_version["description"] = EMBEDDED_API_VERSION_DOC.into();
        kind["description"] = EMBEDDED_KIND_DOC.into();
        let props = properties_mut(s);
        props.insert("apiVersion".into(), api_version);
        props.insert("kind".into(), kind);
        props.insert(
            "metadata".into(),
            json!({"$ref": format!("{REF_PREFIX}{OBJECT_META}"), "description": METADATA_DOC}),
        );
        if !s.get("required").is_some_and(Value::is_array) {
            s["required"] = json!([]);
        }
        if let Some(Value::Array(required)) = s.get_mut("required") {
            for field in ["kind", "apiVersion"] {
                if !required.iter().any(|r| r == field) {
                    required.push(field.into());
                }
            }
        }
    }
}

fn embedded_v2(s: &mut Value) {
    add_embedded_properties(s, true);
}

fn embedded_v3(s: &mut Value) {
    add_embedded_properties(s, false);
}

/// The custom resources' part of the documents, built once per set of CRDs.
#[derive(Debug, Clone, Default)]
pub struct CustomDocuments {
    /// v2 path items and definitions.
    v2_paths: Map<String, Value>,
    v2_definitions: Map<String, Value>,
    /// The v3 document of each custom `apis/<group>/<version>`, and its hash.
    v3: BTreeMap<String, (Value, String)>,
}

impl CustomDocuments {
    pub fn new(resources: &[CustomResourceVersion]) -> CustomDocuments {
        let mut docs = CustomDocuments::default();
        let mut by_gv: BTreeMap<String, (Vec<PathItem>, Map<String, Value>)> = BTreeMap::new();
        for r in resources {
            let items = r.paths();
            for item in &items {
                docs.v2_paths
                    .entry(item.path.clone())
                    .or_insert_with(|| crate::v2::path_item(item));
            }
            docs.v2_definitions
                .entry(r.definition_name())
                .or_insert_with(|| r.kind_schema(true));
            docs.v2_definitions
                .entry(r.list_definition_name())
                .or_insert_with(|| r.list_schema());
            let (gv_items, gv_defs) = by_gv
                .entry(format!("apis/{}/{}", r.group, r.version))
                .or_default();
            gv_items.extend(items);
            gv_defs
                .entry(r.definition_name())
                .or_insert_with(|| r.kind_schema(false));
            gv_defs
                .entry(r.list_definition_name())
                .or_insert_with(|| r.list_schema());
        }
        for (path, (mut items, defs)) in by_gv {
            items.sort_by(|a, b| a.path.cmp(&b.path));
            items.dedup_by(|a, b| a.path == b.path);
            let doc = crate::v3::document_with(&items, &defs);
            let hash = hash(&doc);
            docs.v3.insert(path, (doc, hash));
        }
        docs
    }

    pub fn is_empty(&self) -> bool {
        self.v2_definitions.is_empty()
    }

    /// Adds the custom paths and definitions to a `/openapi/v2` document; what the document
    /// already has stays (a built-in never gives way to a custom resource).
    pub fn merge_v2(&self, doc: &mut Value) {
        if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
            for (path, item) in &self.v2_paths {
                paths.entry(path.clone()).or_insert_with(|| item.clone());
            }
        }
        if let Some(defs) = doc.get_mut("definitions").and_then(Value::as_object_mut) {
            for (name, schema) in &self.v2_definitions {
                defs.entry(name.clone()).or_insert_with(|| schema.clone());
            }
        }
    }

    /// Lists the custom group/versions' documents in a `/openapi/v3` index.
    pub fn merge_v3_index(&self, index: &mut Value) {
        let Some(paths) = index.get_mut("paths").and_then(Value::as_object_mut) else {
            return;
        };
        for (path, (_, hash)) in &self.v3 {
            paths.entry(path.clone()).or_insert_with(
                || json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
            );
        }
    }

    /// The v3 document at `/openapi/v3/<path>` (`apis/<group>/<version>`) of custom resources.
    pub fn v3_document(&self, path: &str) -> Option<&Value> {
        self.v3.get(path.trim_matches('/')).map(|(doc, _)| doc)
    }

    /// The v2 definitions (by name), for tests and callers that look one up.
    pub fn v2_definitions(&self) -> &Map<String, Value> {
        &self.v2_definitions
    }
}

/// A hash of a document for the index's `?hash=` (clients cache documents by it): two FNV-1a
/// passes over its JSON, 128 bits in upper-case hex as upstream's.
fn hash(doc: &Value) -> String {
    let bytes = doc.to_string();
    let fnv = |seed: u64| {
        bytes.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    let a = fnv(0xcbf2_9ce4_8422_2325);
    let b = fnv(a ^ 0x9e37_79b9_7f4a_7c15);
    format!("{a:016X}{b:016X}")
}

/// The definitions server-side apply walks for a custom kind (upstream builds its type from the
/// CRD's structural schema): the version's `openAPIV3Schema` as `<reversed group>.<version>.<kind>`,
/// its `metadata` as ObjectMeta, and ObjectMeta's definitions (copied from the built-in ones),
/// so list types and map keys of the schema (`x-kubernetes-list-type: map`) and of the
/// metadata (ownerReferences by uid, finalizers as a set) decide what each manager owns.
/// Returns the definitions and the root's name.
pub fn apply_definitions(group: &str, version: &str, kind: &str, schema: Option<&Value>) -> (Map<String, Value>, String) {
    const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
    let name = rest_friendly_name(group, version, kind);
    let mut root = schema.cloned().unwrap_or_else(|| serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    if let Some(props) = root.as_object_mut().map(|r| r.entry("properties").or_insert_with(|| serde_json::json!({}))).and_then(Value::as_object_mut) {
        props.insert("metadata".into(), serde_json::json!({"$ref": format!("#/definitions/{OBJECT_META}")}));
    }
    let all = crate::definitions();
    let mut defs = Map::new();
    let mut todo = vec![OBJECT_META.to_string()];
    while let Some(n) = todo.pop() {
        if defs.contains_key(&n) {
            continue;
        }
        let Some(d) = all.get(&n) else { continue };
        collect_refs(d, &mut todo);
        defs.insert(n, d.clone());
    }
    defs.insert(name.clone(), root);
    (defs, name)
}

/// The definition names `v` refers to (`$ref: #/definitions/NAME`).
fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                out.push(r.trim_start_matches("#/definitions/").trim_start_matches("#/components/schemas/").to_string());
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hoge_crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "hoges.stable.example.com"},
            "spec": {
                "group": "stable.example.com", "scope": "Namespaced",
                "names": {"plural": "hoges", "singular": "hoge", "kind": "Hoge", "shortNames": ["hg"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true,
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                     "schema": {"openAPIV3Schema": {
                        "type": "object", "description": "Hoge is a sample.",
                        "properties": {
                            "spec": {"type": "object", "description": "The desired hoge.", "required": ["fuga", "maybe"],
                                     "properties": {
                                        "fuga": {"type": "string", "description": "Fuga of the hoge.", "example": "x"},
                                        "replicas": {"type": "integer", "minimum": 0},
                                        "port": {"x-kubernetes-int-or-string": true},
                                        "maybe": {"type": "string", "nullable": true},
                                        "anything": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                                                     "properties": {"a": {"type": "string"}}},
                                        "choice": {"type": "string", "oneOf": [{"enum": ["a"]}, {"enum": ["b"]}]},
                                        "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                                                     "properties": {"spec": {"type": "object"}}}
                                     }},
                            "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
                        }}}},
                    {"name": "v0", "served": false, "storage": false}
                ]
            }
        })
    }

    fn hoge() -> CustomResourceVersion {
        let mut versions = CustomResourceVersion::from_crd(&hoge_crd());
        assert_eq!(versions.len(), 1, "only served versions");
        versions.remove(0)
    }

    #[test]
    fn names_and_versions_from_the_crd() {
        let h = hoge();
        assert_eq!(
            (h.group.as_str(), h.version.as_str(), h.kind.as_str()),
            ("stable.example.com", "v1", "Hoge")
        );
        assert_eq!(h.list_kind, "HogeList");
        assert!(h.namespaced && h.status && h.scale);
        assert_eq!(h.definition_name(), "com.example.stable.v1.Hoge");
        assert_eq!(rest_friendly_name("foo", "v2", "Bar"), "foo.v2.Bar");
    }

    #[test]
    fn v2_schema_as_upstream_converts_it() {
        let s = hoge().kind_schema(true);
        assert_eq!(
            s[GVK_EXTENSION],
            json!([{"group": "stable.example.com", "kind": "Hoge", "version": "v1"}])
        );
        assert_eq!(s["description"], "Hoge is a sample.");
        assert_eq!(
            s["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert!(
            s["properties"]["apiVersion"]["description"]
                .as_str()
                .unwrap()
                .starts_with("APIVersion defines")
        );
        assert_eq!(s["properties"]["kind"]["type"], "string");
        let spec = &s["properties"]["spec"];
        assert_eq!(
            spec["properties"]["fuga"],
            json!({"type": "string", "description": "Fuga of the hoge."})
        );
        // nullable: no type, and not required in v2
        assert_eq!(spec["properties"]["maybe"], json!({}));
        assert_eq!(spec["required"], json!(["fuga"]));
        // int-or-string: no anyOf in v2
        assert_eq!(
            spec["properties"]["port"],
            json!({"x-kubernetes-int-or-string": true})
        );
        // preserve-unknown-fields: no type, no properties
        assert_eq!(
            spec["properties"]["anything"],
            json!({"x-kubernetes-preserve-unknown-fields": true})
        );
        assert_eq!(spec["properties"]["choice"], json!({"type": "string"}));
        let template = &spec["properties"]["template"];
        assert_eq!(template["required"], json!(["kind", "apiVersion"]));
        assert!(template["properties"]["metadata"]["$ref"].is_string());
        assert!(
            template["properties"]["kind"]["description"]
                .as_str()
                .unwrap()
                .starts_with("kind is a string value")
        );
    }

    #[test]
    fn v3_schema_keeps_nullable_and_junctors() {
        let s = hoge().kind_schema(false);
        let spec = &s["properties"]["spec"];
        assert_eq!(
            spec["properties"]["maybe"],
            json!({"type": "string", "nullable": true})
        );
        assert_eq!(spec["required"], json!(["fuga", "maybe"]));
        assert_eq!(
            spec["properties"]["port"]["anyOf"],
            json!([{"type": "integer"}, {"type": "string"}])
        );
        assert_eq!(
            spec["properties"]["anything"]["properties"]["a"]["type"],
            "string"
        );
    }

    #[test]
    fn preserve_unknown_fields_at_the_root_is_an_opaque_object_in_v2() {
        let mut h = hoge();
        h.schema = Some(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
        assert_eq!(
            h.kind_schema(true),
            json!({"type": "object", GVK_EXTENSION: [{"group": "stable.example.com", "kind": "Hoge", "version": "v1"}]})
        );
        assert!(h.kind_schema(false)["properties"]["metadata"].is_object());
        h.schema = None;
        assert_eq!(h.kind_schema(false)["type"], "object");
    }

    #[test]
    fn v2_paths_and_definitions_merge_into_a_document() {
        let docs = CustomDocuments::new(&[hoge()]);
        let mut doc = json!({"paths": {"/api/v1/pods": {}}, "definitions": {"keep": {}}});
        docs.merge_v2(&mut doc);
        let paths = &doc["paths"];
        let list = &paths["/apis/stable.example.com/v1/namespaces/{namespace}/hoges"];
        assert_eq!(
            list["get"]["operationId"],
            "listStableExampleComV1NamespacedHoge"
        );
        assert_eq!(
            list["get"]["responses"]["200"]["schema"]["$ref"],
            "#/definitions/com.example.stable.v1.HogeList"
        );
        assert_eq!(
            list["post"]["parameters"][0]["schema"]["$ref"],
            "#/definitions/com.example.stable.v1.Hoge"
        );
        let item = &paths["/apis/stable.example.com/v1/namespaces/{namespace}/hoges/{name}"];
        assert_eq!(
            item["patch"][GVK_EXTENSION],
            json!({"group": "stable.example.com", "kind": "Hoge", "version": "v1"})
        );
        assert!(
            !item["patch"]["consumes"]
                .as_array()
                .unwrap()
                .contains(&json!("application/strategic-merge-patch+json"))
        );
        assert!(
            item["patch"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        assert!(paths["/apis/stable.example.com/v1/hoges"]["get"].is_object());
        assert!(
            paths["/apis/stable.example.com/v1/namespaces/{namespace}/hoges/{name}/status"]["put"]
                .is_object()
        );
        let scale = &paths["/apis/stable.example.com/v1/namespaces/{namespace}/hoges/{name}/scale"];
        assert_eq!(
            scale["get"]["responses"]["200"]["schema"]["$ref"],
            "#/definitions/io.k8s.api.autoscaling.v1.Scale"
        );
        assert!(
            paths["/apis/stable.example.com/v1/watch/namespaces/{namespace}/hoges/{name}"]["get"]
                .is_object()
        );
        assert!(doc["definitions"]["com.example.stable.v1.Hoge"].is_object());
        assert_eq!(
            doc["definitions"]["com.example.stable.v1.HogeList"]["required"],
            json!(["items"])
        );
        assert!(doc["definitions"]["keep"].is_object());
        // and the protobuf form takes it
        assert!(!crate::v2_protobuf(&doc).is_empty());
    }

    #[test]
    fn v3_documents_per_group_version_with_reachable_schemas() {
        let docs = CustomDocuments::new(&[hoge()]);
        let mut index =
            json!({"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=1"}}});
        docs.merge_v3_index(&mut index);
        let url = index["paths"]["apis/stable.example.com/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(
            url.starts_with("/openapi/v3/apis/stable.example.com/v1?hash="),
            "{url}"
        );
        let doc = docs.v3_document("apis/stable.example.com/v1").unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let kind = &schemas["com.example.stable.v1.Hoge"];
        assert_eq!(
            kind["properties"]["metadata"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert_eq!(
            kind["properties"]["spec"]["properties"]["fuga"]["description"],
            "Fuga of the hoge."
        );
        for name in [
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "com.example.stable.v1.HogeList",
            "io.k8s.api.autoscaling.v1.Scale",
        ] {
            assert!(schemas.contains_key(name), "{name}");
        }
        let mut refs = Vec::new();
        crate::definitions::collect_refs(doc, "#/components/schemas/", &mut refs);
        for r in refs {
            assert!(schemas.contains_key(r), "{r}");
        }
        assert!(docs.v3_document("apis/stable.example.com/v2").is_none());
        // the hash follows the document
        let mut other = hoge();
        other.schema = None;
        let mut index2 = json!({"paths": {}});
        CustomDocuments::new(&[other]).merge_v3_index(&mut index2);
        assert_ne!(
            index2["paths"]["apis/stable.example.com/v1"],
            index["paths"]["apis/stable.example.com/v1"]
        );
    }
}
