//! The OpenAPI 3.0 documents of `GET /openapi/v3` (an index) and `GET /openapi/v3/<group path>`
//! (one per group/version, plus the discovery documents `api`, `apis` and `apis/<group>`).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use kaji_api::ResourceInfo;
use serde_json::{Map, Value, json};

use crate::definitions::{GVK_EXTENSION, REF_PREFIX, collect_refs, definitions};
use crate::routes::{Operation, Param, PathItem, Response, resource_paths};
use crate::v2::{KUBERNETES_VERSION, response_description};

const V3_REF_PREFIX: &str = "#/components/schemas/";

/// `GET /openapi/v3`: every document path with its `serverRelativeURL`, whose `hash` changes
/// whenever the document does (clients cache documents by it).
pub fn v3_index(resources: &[ResourceInfo]) -> Value {
    let mut names: BTreeSet<String> = BTreeSet::new();
    names.insert("api".into());
    names.insert("apis".into());
    for r in resources {
        if r.group.is_empty() {
            names.insert(format!("api/{}", r.version));
        } else {
            names.insert(format!("apis/{}", r.group));
            names.insert(format!("apis/{}/{}", r.group, r.version));
        }
    }
    let mut paths = Map::new();
    for name in names {
        let hash = document_hash(resources, &name);
        paths.insert(
            name.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{name}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

/// The document of one group/version (`""`/`"v1"` for `api/v1`).
pub fn v3_group(resources: &[ResourceInfo], group: &str, version: &str) -> Option<Value> {
    let path = if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    };
    v3_document(resources, &path)
}

/// The document at `/openapi/v3/<path>`, for any path [`v3_index`] lists.
pub fn v3_document(resources: &[ResourceInfo], path: &str) -> Option<Value> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let items: Vec<PathItem> = match segments.as_slice() {
        ["api"] => vec![discovery_item(
            "/api/",
            "getCoreAPIVersions",
            "core",
            "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions",
        )],
        ["apis"] => vec![discovery_item(
            "/apis/",
            "getAPIVersions",
            "apis",
            "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList",
        )],
        ["apis", group] => {
            if !resources.iter().any(|r| r.group == *group) {
                return None;
            }
            let camel = crate::routes::group_camel(group);
            let id = format!("get{}APIGroup", capitalize(&camel));
            vec![discovery_item(
                &format!("/apis/{group}/"),
                &id,
                &camel,
                "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup",
            )]
        }
        ["api", version] | ["apis", "", version] => group_items(resources, "", version)?,
        ["apis", group, version] => group_items(resources, group, version)?,
        _ => return None,
    };
    Some(document(&items))
}

fn group_items(resources: &[ResourceInfo], group: &str, version: &str) -> Option<Vec<PathItem>> {
    let served: Vec<&ResourceInfo> = resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut items: Vec<PathItem> = served.into_iter().flat_map(resource_paths).collect();
    let (gv_path, camel) = if group.is_empty() {
        (format!("/api/{version}/"), "core".to_string())
    } else {
        (
            format!("/apis/{group}/{version}/"),
            crate::routes::group_camel(group),
        )
    };
    let id = format!(
        "get{}{}APIResources",
        capitalize(&camel),
        capitalize(version)
    );
    items.push(discovery_item(
        &gv_path,
        &id,
        &format!("{camel}_{version}"),
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList",
    ));
    Some(items)
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// A discovery endpoint (`GET /api/`, `/apis/<group>/<version>/`, ...).
fn discovery_item(path: &str, operation_id: &str, tag: &str, definition: &'static str) -> PathItem {
    PathItem {
        path: path.into(),
        params: Vec::new(),
        operations: vec![Operation {
            method: "get",
            action: "",
            operation_id: operation_id.into(),
            description: "get available resources".into(),
            tag: tag.into(),
            gvk: (String::new(), String::new(), String::new()),
            params: Vec::new(),
            body: None,
            responses: vec![
                ("200", Response::Definition(definition)),
                ("401", Response::None),
            ],
            consumes: &[
                "application/json",
                "application/yaml",
                "application/vnd.kubernetes.protobuf",
            ],
            produces: &[
                "application/json",
                "application/yaml",
                "application/vnd.kubernetes.protobuf",
            ],
        }],
    }
}

fn document(items: &[PathItem]) -> Value {
    document_with(items, &Map::new())
}

/// A document of `items` whose schemas come from `extra` (v2 form) before the built-in
/// definitions (custom resources bring their own).
pub(crate) fn document_with(items: &[PathItem], extra: &Map<String, Value>) -> Value {
    let mut sorted: Vec<&PathItem> = items.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut paths = Map::new();
    for item in sorted {
        paths.insert(item.path.clone(), path_item(item));
    }
    let schemas = reachable_schemas(&Value::Object(paths.clone()), extra);
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "BearerToken": {
                    "type": "apiKey",
                    "description": "Bearer Token authentication",
                    "name": "authorization",
                    "in": "header"
                }
            }
        },
        "security": [{"BearerToken": []}]
    })
}

/// The definitions the paths refer to, and everything they refer to, in v3 form.
fn reachable_schemas(paths: &Value, extra: &Map<String, Value>) -> Map<String, Value> {
    let defs = definitions();
    let lookup = |name: &str| extra.get_key_value(name).or_else(|| defs.get_key_value(name));
    let mut pending = Vec::new();
    collect_refs(paths, V3_REF_PREFIX, &mut pending);
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    while let Some(name) = pending.pop() {
        let Some((name, schema)) = lookup(name) else {
            continue;
        };
        if seen.insert(name.as_str()) {
            collect_refs(schema, REF_PREFIX, &mut pending);
        }
    }
    seen.into_iter()
        .filter_map(|name| lookup(name).map(|(_, s)| (name.to_string(), to_v3_schema(s))))
        .collect()
}

/// A v2 schema in v3 form: refs point into components, and a `$ref` with siblings (description)
/// becomes `allOf: [{$ref}]` beside them, since v3 ignores a `$ref`'s siblings.
pub(crate) fn to_v3_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = Map::new();
            let mut reference = None;
            for (k, v) in map {
                if k == "$ref" {
                    let name = v
                        .as_str()
                        .unwrap_or_default()
                        .trim_start_matches(REF_PREFIX);
                    reference = Some(format!("{V3_REF_PREFIX}{name}"));
                } else if k.starts_with("x-") || k == "enum" || k == "default" || k == "example" {
                    // values, not schemas
                    out.insert(k.clone(), v.clone());
                } else if k == "properties" {
                    let props = v
                        .as_object()
                        .map(|p| {
                            p.iter()
                                .map(|(n, s)| (n.clone(), to_v3_schema(s)))
                                .collect()
                        })
                        .unwrap_or_default();
                    out.insert(k.clone(), Value::Object(props));
                } else {
                    out.insert(k.clone(), to_v3_schema(v));
                }
            }
            match reference {
                Some(r) if out.is_empty() => json!({"$ref": r}),
                Some(r) => {
                    out.insert("allOf".into(), json!([{"$ref": r}]));
                    Value::Object(out)
                }
                None => Value::Object(out),
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(to_v3_schema).collect()),
        other => other.clone(),
    }
}

fn path_item(item: &PathItem) -> Value {
    let mut out = Map::new();
    for op in &item.operations {
        out.insert(op.method.into(), operation(op));
    }
    if !item.params.is_empty() {
        out.insert("parameters".into(), item.params.iter().map(param).collect());
    }
    Value::Object(out)
}

fn param(p: &Param) -> Value {
    let mut out = json!({
        "name": p.name,
        "in": p.location,
        "description": p.description,
        "schema": {"type": p.ty, "uniqueItems": true}
    });
    if p.required {
        out["required"] = true.into();
    }
    out
}

fn content(types: &[&str], schema: &Value) -> Value {
    Value::Object(
        types
            .iter()
            .map(|t| ((*t).to_string(), json!({"schema": schema})))
            .collect(),
    )
}

fn operation(op: &Operation) -> Value {
    let mut out = json!({
        "tags": [op.tag],
        "description": op.description,
        "operationId": op.operation_id,
    });
    if !op.params.is_empty() {
        out["parameters"] = op.params.iter().map(param).collect();
    }
    if let Some((definition, required)) = op.body {
        let schema = json!({"$ref": format!("{V3_REF_PREFIX}{definition}")});
        out["requestBody"] =
            json!({"content": content(op.consumes, &schema), "required": required});
    }
    let mut responses = Map::new();
    for (code, response) in &op.responses {
        let mut r = json!({"description": response_description(code)});
        let schema = match response {
            Response::Definition(d) => Some(json!({"$ref": format!("{V3_REF_PREFIX}{d}")})),
            Response::String => Some(json!({"type": "string"})),
            Response::None => None,
        };
        if let Some(schema) = schema {
            r["content"] = content(op.produces, &schema);
        }
        responses.insert((*code).into(), r);
    }
    out["responses"] = Value::Object(responses);
    if !op.action.is_empty() {
        out["x-kubernetes-action"] = op.action.into();
        let (group, version, kind) = &op.gvk;
        out[GVK_EXTENSION] = json!({"group": group, "kind": kind, "version": version});
    }
    out
}

/// A stable hash of the document at `path` for the given resources. The documents are a pure
/// function of the resources of that path and of the definitions, so hash those instead of
/// rendering every document for the index.
fn document_hash(resources: &[ResourceInfo], path: &str) -> String {
    static DEFINITIONS_HASH: OnceLock<u64> = OnceLock::new();
    let defs_hash = *DEFINITIONS_HASH.get_or_init(|| {
        fnv1a(
            0xcbf2_9ce4_8422_2325,
            Value::Object(definitions().clone()).to_string().as_bytes(),
        )
    });
    let mut input = format!("{KUBERNETES_VERSION}\n{path}\n{defs_hash:016x}\n");
    for r in resources {
        let gv_path = r.group_version_path();
        let gv_path = gv_path.trim_start_matches('/');
        let group_path = format!("apis/{}", r.group);
        if gv_path == path || (!r.group.is_empty() && group_path == path) {
            input.push_str(&format!("{r:?}\n"));
        }
    }
    let a = fnv1a(0xcbf2_9ce4_8422_2325, input.as_bytes());
    let b = fnv1a(a ^ 0x9e37_79b9_7f4a_7c15, input.as_bytes());
    format!("{a:016X}{b:016X}")
}

fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(seed, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::resources;

    /// What kubectl's query-param verifier does: find a PATCH operation for the GVK, look for
    /// the parameter among its own parameters.
    fn patch_supports(doc: &Value, gvk: Value, param: &str) -> bool {
        let paths = doc["paths"].as_object().unwrap();
        let patch = paths
            .values()
            .filter_map(|item| item.get("patch"))
            .find(|op| op[GVK_EXTENSION] == gvk)
            .expect("a PATCH operation for the GVK");
        patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == param && p["in"] == "query")
    }

    #[test]
    fn apps_v1_has_deployments_with_field_validation() {
        let doc = v3_group(&resources(), "apps", "v1").unwrap();
        assert_eq!(doc["openapi"], "3.0.0");
        let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        for method in ["put", "patch"] {
            let params = item[method]["parameters"].as_array().unwrap();
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"),
                "{method}"
            );
        }
        let create = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"];
        assert!(
            create["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        let gvk = json!({"group": "apps", "kind": "Deployment", "version": "v1"});
        assert!(patch_supports(&doc, gvk, "fieldValidation"));
        // scale's operations are Scale's, as upstream tags them
        let scale =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
        assert_eq!(scale[GVK_EXTENSION]["kind"], "Scale");
        assert!(
            doc["paths"]
                .get("/api/v1/namespaces/{namespace}/pods")
                .is_none()
        );
        assert!(v3_group(&resources(), "apps", "v2").is_none());
    }

    /// What `kubectl explain deployment.spec` does with the document: take the GVK from the
    /// resource's operations, find the schema carrying it, follow `spec` through allOf/$ref.
    #[test]
    fn explain_finds_the_kind_and_its_fields() {
        let doc = v3_group(&resources(), "apps", "v1").unwrap();
        let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"];
        let gvk = &item["get"][GVK_EXTENSION];
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let (name, kind) = schemas
            .iter()
            .find(|(_, s)| s[GVK_EXTENSION].as_array().is_some_and(|l| l.contains(gvk)))
            .expect("a schema with the GVK");
        assert_eq!(name, "io.k8s.api.apps.v1.Deployment");
        let spec = &kind["properties"]["spec"];
        assert!(
            spec["description"]
                .as_str()
                .unwrap()
                .contains("desired behavior")
        );
        let reference = spec["allOf"][0]["$ref"].as_str().unwrap();
        let target = reference.strip_prefix(V3_REF_PREFIX).unwrap();
        let spec_schema = &schemas[target];
        assert!(spec_schema["properties"]["replicas"].is_object());
        assert_eq!(spec_schema["required"], json!(["selector", "template"]));
        // every reference in the document resolves within it
        let mut refs = Vec::new();
        collect_refs(&doc, V3_REF_PREFIX, &mut refs);
        for r in refs {
            assert!(schemas.contains_key(r), "{r}");
        }
    }

    #[test]
    fn core_v1_crds_and_the_namespace_fallback() {
        let rs = resources();
        let core = v3_group(&rs, "", "v1").unwrap();
        let gvk = json!({"group": "", "kind": "Namespace", "version": "v1"});
        assert!(patch_supports(&core, gvk, "fieldValidation"));
        let log = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"];
        assert_eq!(log["x-kubernetes-action"], "get");
        let eviction =
            &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"];
        assert_eq!(eviction[GVK_EXTENSION]["group"], "policy");
        assert!(
            core["components"]["schemas"]
                .get("io.k8s.api.policy.v1.Eviction")
                .is_some()
        );
        let exec = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/exec"];
        assert_eq!(exec["post"]["x-kubernetes-action"], "connect");
        assert!(v3_document(&rs, "apis/apiextensions.k8s.io/v1").is_some());
        assert!(v3_document(&rs, "apis").is_some());
        assert!(v3_document(&rs, "apis/apps").is_some());
        assert!(v3_document(&rs, "apis/nope").is_none());
    }

    #[test]
    fn the_index_lists_every_document_with_a_stable_hash() {
        let rs = resources();
        let index = v3_index(&rs);
        let paths = index["paths"].as_object().unwrap();
        for name in [
            "api",
            "apis",
            "api/v1",
            "apis/apps",
            "apis/apps/v1",
            "apis/rbac.authorization.k8s.io/v1",
        ] {
            let url = paths[name]["serverRelativeURL"].as_str().unwrap();
            assert!(
                url.starts_with(&format!("/openapi/v3/{name}?hash=")),
                "{url}"
            );
            assert!(v3_document(&rs, name).is_some(), "{name}");
        }
        assert_eq!(index, v3_index(&rs));
        let fewer = &rs[..rs.len() - 1];
        let other = v3_index(fewer);
        assert_eq!(
            other["paths"]["apis/apps/v1"],
            index["paths"]["apis/apps/v1"]
        );
        assert!(other["paths"].get("apis/authorization.k8s.io/v1").is_none());
    }
}
