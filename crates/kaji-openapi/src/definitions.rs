//! The definitions section shared by every document: schemars output of the k8s-openapi types,
//! plus what upstream adds that the Rust types don't carry (List kinds, group-version-kind tags,
//! patch/list extensions) and the few schemas upstream spells differently.

use std::collections::HashMap;
use std::sync::OnceLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::patch_facts::PATCH_FACTS;
use crate::types;

pub(crate) const REF_PREFIX: &str = "#/definitions/";
pub(crate) const GVK_EXTENSION: &str = "x-kubernetes-group-version-kind";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
pub(crate) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(crate) const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
pub(crate) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(crate) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";

/// All definitions, built on first use.
pub fn definitions() -> &'static Map<String, Value> {
    static DEFINITIONS: OnceLock<Map<String, Value>> = OnceLock::new();
    DEFINITIONS.get_or_init(build)
}

/// Definition name for a kind the documents describe: built-in kinds, their Lists, and the meta
/// kinds (Status, DeleteOptions, WatchEvent, APIResourceList, ...).
pub fn definition_name(group: &str, version: &str, kind: &str) -> Option<&'static str> {
    static BY_GVK: OnceLock<HashMap<(String, String, String), &'static str>> = OnceLock::new();
    let by_gvk = BY_GVK.get_or_init(|| {
        let mut by_gvk = HashMap::new();
        for (name, schema) in definitions() {
            for gvk in gvks_of(schema) {
                // The first definition claiming a GVK wins; upstream never has two.
                by_gvk.entry(gvk).or_insert(name.as_str());
            }
        }
        by_gvk
    });
    by_gvk
        .get(&(group.to_string(), version.to_string(), kind.to_string()))
        .copied()
}

/// The `(group, version, kind)` triples a definition's `x-kubernetes-group-version-kind` names.
pub(crate) fn gvks_of(schema: &Value) -> Vec<(String, String, String)> {
    let Some(list) = schema.get(GVK_EXTENSION).and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|gvk| {
            let field = |k| gvk.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            (field("group"), field("version"), field("kind"))
        })
        .collect()
}

pub(crate) fn gvk_value(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

fn build() -> Map<String, Value> {
    let settings = SchemaSettings::draft07().with(|s| {
        s.meta_schema = None;
        // Keep `description` beside `$ref` as upstream's swagger does (no allOf wrapping).
        s.transforms.clear();
    });
    let mut generator = settings.into_generator();
    types::generate_kind_schemas(&mut generator);
    generator.subschema_for::<meta::Status>();
    generator.subschema_for::<meta::DeleteOptions>();
    generator.subschema_for::<meta::WatchEvent<meta::Status>>();
    generator.subschema_for::<meta::APIResourceList>();
    generator.subschema_for::<meta::APIGroupList>();
    generator.subschema_for::<meta::APIGroup>();
    generator.subschema_for::<meta::APIVersions>();
    generator.subschema_for::<meta::Patch>();
    generator.subschema_for::<k8s_openapi::apimachinery::pkg::version::Info>();
    let mut defs = generator.take_definitions(false);

    upstream_spellings(&mut defs);
    metadata_not_required(&mut defs);
    add_lists_and_gvks(&mut defs);
    add_patch_extensions(&mut defs);
    add_key_defaults(&mut defs);

    let mut names: Vec<String> = defs.keys().cloned().collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| defs.remove(&name).map(|schema| (name, schema)))
        .collect()
}

/// Where k8s-openapi's schema says the same thing as upstream's in other words, use upstream's:
/// kubectl's v2 parser and `kubectl explain` read these literally.
fn upstream_spellings(defs: &mut Map<String, Value>) {
    let mut set = |name: &str, extra: Value| {
        if let Some(Value::Object(schema)) = defs.get_mut(name) {
            let description = schema.remove("description");
            schema.clear();
            if let Some(description) = description {
                schema.insert("description".into(), description);
            }
            if let Value::Object(extra) = extra {
                schema.extend(extra);
            }
        }
    };
    set(
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
        json!({"type": "string", "format": "int-or-string"}),
    );
    set(
        "io.k8s.apimachinery.pkg.api.resource.Quantity",
        json!({"type": "string"}),
    );
    // Arbitrary JSON: upstream publishes these with no type, which clients read as "anything".
    for name in [
        "JSON",
        "JSONSchemaPropsOrArray",
        "JSONSchemaPropsOrBool",
        "JSONSchemaPropsOrStringArray",
    ] {
        set(
            &format!("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.{name}"),
            json!({}),
        );
    }
}

/// k8s-openapi's kinds hold a non-optional `metadata`, which schemars lists as required;
/// upstream's never require it (kubectl's client-side validation then refuses e.g. a TokenReview
/// or SubjectAccessReview written without `metadata:`).
fn metadata_not_required(defs: &mut Map<String, Value>) {
    for schema in defs.values_mut() {
        let Some(required) = schema.get_mut("required").and_then(Value::as_array_mut) else {
            continue;
        };
        required.retain(|r| r != "metadata");
        if required.is_empty()
            && let Some(o) = schema.as_object_mut()
        {
            o.remove("required");
        }
    }
}

fn add_lists_and_gvks(defs: &mut Map<String, Value>) {
    let kinds = types::kinds();
    for k in kinds {
        if let Some(Value::Object(schema)) = defs.get_mut(k.definition) {
            schema.insert(
                GVK_EXTENSION.into(),
                json!([gvk_value(k.group, k.version, k.kind)]),
            );
        }
        if k.has_list {
            defs.insert(format!("{}List", k.definition), list_schema(k));
        }
    }

    // Meta kinds: DeleteOptions and WatchEvent are registered in every group/version.
    let mut group_versions: Vec<(&str, &str)> = vec![("", "v1")];
    for k in kinds {
        if !group_versions.contains(&(k.group, k.version)) {
            group_versions.push((k.group, k.version));
        }
    }
    group_versions.sort_unstable();
    for (name, kind) in [
        (DELETE_OPTIONS, "DeleteOptions"),
        (WATCH_EVENT, "WatchEvent"),
    ] {
        let tags: Vec<Value> = group_versions
            .iter()
            .map(|(g, v)| gvk_value(g, v, kind))
            .collect();
        if let Some(Value::Object(schema)) = defs.get_mut(name) {
            schema.insert(GVK_EXTENSION.into(), Value::Array(tags));
        }
    }
    for kind in [
        "Status",
        "APIResourceList",
        "APIGroupList",
        "APIGroup",
        "APIVersions",
    ] {
        let name = format!("io.k8s.apimachinery.pkg.apis.meta.v1.{kind}");
        if let Some(Value::Object(schema)) = defs.get_mut(&name) {
            schema.insert(GVK_EXTENSION.into(), json!([gvk_value("", "v1", kind)]));
        }
    }
}

fn list_schema(k: &types::BuiltinKind) -> Value {
    let list_kind = format!("{}List", k.kind);
    json!({
        "description": format!("{list_kind} is a list of {} objects.", k.kind),
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                "type": "string"
            },
            "items": {
                "description": format!("items is the list of {} objects.", k.kind),
                "type": "array",
                "items": {"$ref": format!("{REF_PREFIX}{}", k.definition)}
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "type": "string"
            },
            "metadata": {
                "$ref": format!("{REF_PREFIX}{LIST_META}"),
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
            }
        },
        "required": ["items"],
        GVK_EXTENSION: [gvk_value(k.group, k.version, &list_kind)]
    })
}

fn add_patch_extensions(defs: &mut Map<String, Value>) {
    for &(definition, property, strategy, merge_key, list_type, map_keys) in PATCH_FACTS {
        let Some(Value::Object(prop)) = defs
            .get_mut(definition)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(property))
        else {
            continue;
        };
        if !strategy.is_empty() {
            prop.insert("x-kubernetes-patch-strategy".into(), strategy.into());
        }
        if !merge_key.is_empty() {
            prop.insert("x-kubernetes-patch-merge-key".into(), merge_key.into());
        }
        if !list_type.is_empty() {
            prop.insert("x-kubernetes-list-type".into(), list_type.into());
        }
        if !map_keys.is_empty() {
            prop.insert("x-kubernetes-list-map-keys".into(), json!(map_keys));
        }
    }
}

/// Every `$ref` target (definition name) mentioned anywhere inside `value`.
pub(crate) fn collect_refs<'a>(value: &'a Value, prefix: &str, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    if let Some(name) = v.as_str().and_then(|r| r.strip_prefix(prefix)) {
                        out.push(name);
                    }
                } else {
                    collect_refs(v, prefix, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, prefix, out)),
        _ => {}
    }
}

/// Defaults that upstream's published schemas carry on list-map key fields (`protocol` of ports
/// is "TCP"): server-side apply keys list items by them even when a manifest leaves them out.
fn add_key_defaults(defs: &mut Map<String, Value>) {
    for (def, field) in [
        ("io.k8s.api.core.v1.ContainerPort", "protocol"),
        ("io.k8s.api.core.v1.ServicePort", "protocol"),
        ("io.k8s.api.core.v1.EndpointPort", "protocol"),
        ("io.k8s.api.discovery.v1.EndpointPort", "protocol"),
        ("io.k8s.api.networking.v1.NetworkPolicyPort", "protocol"),
    ] {
        if let Some(prop) = defs
            .get_mut(def)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(field))
            .and_then(Value::as_object_mut)
        {
            prop.insert("default".into(), Value::String("TCP".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn property<'a>(definition: &str, property: &str) -> &'a Value {
        &definitions()[definition]["properties"][property]
    }

    #[test]
    fn metadata_is_never_required_as_upstream() {
        let defs = definitions();
        assert_eq!(
            defs["io.k8s.api.authentication.v1.TokenReview"]["required"],
            json!(["spec"])
        );
        assert!(defs["io.k8s.api.core.v1.Pod"].get("required").is_none());
    }

    #[test]
    fn pod_containers_carry_the_upstream_patch_extensions() {
        let containers = property("io.k8s.api.core.v1.PodSpec", "containers");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
        let volumes = property("io.k8s.api.core.v1.PodSpec", "volumes");
        assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
        let ports = property("io.k8s.api.core.v1.Container", "ports");
        assert_eq!(
            ports["x-kubernetes-list-map-keys"],
            json!(["containerPort", "protocol"])
        );
        let finalizers = property(
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "finalizers",
        );
        assert_eq!(finalizers["x-kubernetes-list-type"], "set");
    }

    #[test]
    fn kinds_and_lists_carry_their_group_version_kind() {
        let defs = definitions();
        assert_eq!(
            defs["io.k8s.api.apps.v1.Deployment"][GVK_EXTENSION],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        assert_eq!(
            defs["io.k8s.api.core.v1.PodList"][GVK_EXTENSION],
            json!([{"group": "", "kind": "PodList", "version": "v1"}])
        );
        assert_eq!(
            defs["io.k8s.api.core.v1.PodList"]["properties"]["items"]["items"]["$ref"],
            "#/definitions/io.k8s.api.core.v1.Pod"
        );
        assert!(gvks_of(&defs[DELETE_OPTIONS]).contains(&(
            "apps".into(),
            "v1".into(),
            "DeleteOptions".into()
        )));
        assert_eq!(
            definition_name("apps", "v1", "Deployment"),
            Some("io.k8s.api.apps.v1.Deployment")
        );
        assert_eq!(
            definition_name("apps", "v1", "DeploymentList"),
            Some("io.k8s.api.apps.v1.DeploymentList")
        );
        assert_eq!(
            definition_name("events.k8s.io", "v1", "Event"),
            Some("io.k8s.api.events.v1.Event")
        );
        assert_eq!(definition_name("", "v1", "Status"), Some(STATUS));
        assert_eq!(definition_name("apps", "v1", "Nope"), None);
    }

    #[test]
    fn every_reference_resolves_and_upstream_spellings_hold() {
        let defs = definitions();
        let mut refs = Vec::new();
        for schema in defs.values() {
            collect_refs(schema, REF_PREFIX, &mut refs);
        }
        for name in refs {
            assert!(defs.contains_key(name), "dangling reference to {name}");
        }
        assert_eq!(
            defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"],
            "int-or-string"
        );
        assert_eq!(
            defs["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"],
            "string"
        );
        // kubectl's v2 parser rejects arrays without exactly one item schema and `$ref`s with a type.
        fn check(schema: &Value, at: &str) {
            let Some(map) = schema.as_object() else {
                return;
            };
            if map.contains_key("$ref") {
                assert!(
                    !map.contains_key("type") && !map.contains_key("properties"),
                    "{at}"
                );
            }
            if map.get("type").and_then(Value::as_str) == Some("array") {
                assert!(map.get("items").is_some_and(Value::is_object), "{at}");
            }
            assert!(!map.get("type").is_some_and(Value::is_array), "{at}");
            for (k, v) in map {
                if k.starts_with("x-") || k == "enum" || k == "default" {
                    continue;
                }
                if k == "properties" {
                    for (p, s) in v.as_object().into_iter().flatten() {
                        check(s, &format!("{at}.{p}"));
                    }
                } else {
                    check(v, &format!("{at}/{k}"));
                }
            }
        }
        for (name, schema) in defs {
            check(schema, name);
        }
    }

    #[test]
    fn builtin_kinds_agree_with_k8s_openapi() {
        let kinds = crate::builtin_kinds();
        assert!(kinds.contains(&("", "v1", "Pod", "io.k8s.api.core.v1.Pod")));
        assert!(kinds.contains(&(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler"
        )));
        assert!(kinds.contains(&(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"
        )));
        for (_, _, _, definition) in kinds {
            assert!(definitions().contains_key(*definition), "{definition}");
        }
    }
}
