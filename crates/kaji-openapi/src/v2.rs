//! The Swagger 2.0 document of `GET /openapi/v2`.

use kaji_api::ResourceInfo;
use serde_json::{Map, Value, json};

use crate::definitions::{GVK_EXTENSION, REF_PREFIX, definitions};
use crate::routes::{Operation, Param, PathItem, Response, resource_paths};

/// The Kubernetes version the documents claim to describe.
pub const KUBERNETES_VERSION: &str = "v1.33.0";

/// Swagger 2.0 document: info, every resource's paths, all definitions.
pub fn v2(resources: &[ResourceInfo]) -> Value {
    let mut items: Vec<PathItem> = resources.iter().flat_map(resource_paths).collect();
    items.sort_by(|a, b| a.path.cmp(&b.path));
    let mut paths = Map::new();
    for item in &items {
        paths.insert(item.path.clone(), path_item(item));
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "definitions": definitions(),
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication",
                "in": "header",
                "name": "authorization",
                "type": "apiKey"
            }
        },
        "security": [{"BearerToken": []}]
    })
}

pub(crate) fn path_item(item: &PathItem) -> Value {
    let mut out = Map::new();
    for op in &item.operations {
        out.insert(op.method.into(), operation(op));
    }
    out.insert("parameters".into(), item.params.iter().map(param).collect());
    Value::Object(out)
}

fn param(p: &Param) -> Value {
    let mut out = json!({
        "description": p.description,
        "in": p.location,
        "name": p.name,
        "type": p.ty,
        "uniqueItems": true
    });
    if p.required {
        out["required"] = true.into();
    }
    out
}

pub(crate) fn response_description(code: &str) -> &'static str {
    match code {
        "200" => "OK",
        "201" => "Created",
        "202" => "Accepted",
        "401" => "Unauthorized",
        _ => "",
    }
}

fn operation(op: &Operation) -> Value {
    let mut params = Vec::new();
    if let Some((definition, required)) = op.body {
        let mut body = json!({"in": "body", "name": "body", "schema": {"$ref": format!("{REF_PREFIX}{definition}")}});
        if required {
            body["required"] = true.into();
        }
        params.push(body);
    }
    params.extend(op.params.iter().map(param));
    let mut responses = Map::new();
    for (code, response) in &op.responses {
        let mut r = json!({"description": response_description(code)});
        match response {
            Response::Definition(d) => r["schema"] = json!({"$ref": format!("{REF_PREFIX}{d}")}),
            Response::String => r["schema"] = json!({"type": "string"}),
            Response::None => {}
        }
        responses.insert((*code).into(), r);
    }
    let (group, version, kind) = &op.gvk;
    let mut out = json!({
        "consumes": op.consumes,
        "description": op.description,
        "operationId": op.operation_id,
        "produces": op.produces,
        "responses": responses,
        "schemes": ["https"],
        "tags": [op.tag],
        "x-kubernetes-action": op.action,
        GVK_EXTENSION: {"group": group, "kind": kind, "version": version}
    });
    if !params.is_empty() {
        out["parameters"] = Value::Array(params);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::resources;

    #[test]
    fn paths_follow_upstream() {
        let doc = v2(&resources());
        let paths = &doc["paths"];
        let pods = &paths["/api/v1/namespaces/{namespace}/pods"];
        assert_eq!(pods["get"]["operationId"], "listCoreV1NamespacedPod");
        assert_eq!(pods["get"]["x-kubernetes-action"], "list");
        assert_eq!(pods["post"]["operationId"], "createCoreV1NamespacedPod");
        assert_eq!(
            pods["delete"]["operationId"],
            "deleteCoreV1CollectionNamespacedPod"
        );
        assert_eq!(
            paths["/api/v1/pods"]["get"]["operationId"],
            "listCoreV1PodForAllNamespaces"
        );
        assert_eq!(
            paths["/api/v1/watch/namespaces/{namespace}/pods/{name}"]["get"]["x-kubernetes-action"],
            "watch"
        );
        assert_eq!(
            paths["/api/v1/namespaces/{name}/finalize"]["put"]["operationId"],
            "replaceCoreV1NamespaceFinalize"
        );
        let role = &paths["/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}"];
        assert_eq!(
            role["patch"]["operationId"],
            "patchRbacAuthorizationV1ClusterRole"
        );
        assert_eq!(role["patch"]["tags"], json!(["rbacAuthorization_v1"]));
        assert_eq!(
            role["patch"]["consumes"],
            json!([
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
                "application/apply-patch+yaml"
            ])
        );
        let binding = &paths["/api/v1/namespaces/{namespace}/bindings"];
        assert!(binding.get("get").is_none() && binding.get("post").is_some());
        let create = &pods["post"]["parameters"];
        let names: Vec<&str> = create
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(names, ["body", "dryRun", "fieldManager", "fieldValidation"]);
        assert_eq!(doc["info"]["title"], "Kubernetes");
    }
}
