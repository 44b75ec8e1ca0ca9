//! Discovery, legacy (`/api`, `/apis`, `/apis/<g>`, resource lists) and aggregated
//! (apidiscovery.k8s.io v2 and v2beta1, which kubectl 1.27+ asks for first).

use crate::registry::Registry;
use kaji_api::ResourceInfo;
use serde_json::{Value, json};

/// Groups in the order they are served, each with its versions (preferred first).
pub fn groups(registry: &Registry) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for s in registry.all() {
        let i = s.info();
        match out.iter_mut().find(|(g, _)| g == i.group) {
            Some((_, versions)) => {
                if !versions.iter().any(|v| v == i.version) {
                    versions.push(i.version.to_string());
                }
            }
            None => out.push((i.group.to_string(), vec![i.version.to_string()])),
        }
    }
    out
}

pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_object(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
    json!({"name": name, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(json!({}))})
}

pub fn group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> = groups(registry).iter().filter(|(g, _)| !g.is_empty()).map(|(g, v)| group_object(g, v)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(registry: &Registry, name: &str) -> Option<Value> {
    let (g, v) = groups(registry).into_iter().find(|(g, _)| g == name && !g.is_empty())?;
    let mut obj = group_object(&g, &v);
    obj["kind"] = json!("APIGroup");
    obj["apiVersion"] = json!("v1");
    Some(obj)
}

/// The subresources the API server serves (`rest::subresource`, `rest::connect`,
/// `proxy::subresources`); a kind advertises only these (upstream serves `ephemeralcontainers`
/// and `resize` too; Kaji does not, so neither discovery nor OpenAPI names them).
pub const SERVED_SUBRESOURCES: &[&str] = &["status", "scale", "binding", "eviction", "log", "exec", "attach", "portforward", "proxy", "finalize", "approval", "token"];

/// (verbs, response kind as (group, version, kind)) of a subresource.
fn subresource_shape(info: &ResourceInfo, sub: &str) -> (Vec<&'static str>, (String, String, String)) {
    let own = (info.group.to_string(), info.version.to_string(), info.kind.to_string());
    let gvk = |g: &str, v: &str, k: &str| (g.to_string(), v.to_string(), k.to_string());
    match sub {
        "status" | "approval" => (vec!["get", "patch", "update"], own),
        "scale" => (vec!["get", "patch", "update"], gvk("autoscaling", "v1", "Scale")),
        "binding" => (vec!["create"], gvk("", "v1", "Binding")),
        "eviction" => (vec!["create"], gvk("policy", "v1", "Eviction")),
        "log" => (vec!["get"], gvk("", "v1", "Pod")),
        "exec" => (vec!["create", "get"], gvk("", "v1", "PodExecOptions")),
        "attach" => (vec!["create", "get"], gvk("", "v1", "PodAttachOptions")),
        "portforward" => (vec!["create", "get"], gvk("", "v1", "PodPortForwardOptions")),
        // Any method is proxied; upstream names the verbs of GET, POST, PUT, PATCH and DELETE.
        "proxy" => (vec!["create", "delete", "get", "patch", "update"], gvk("", "v1", &format!("{}ProxyOptions", info.kind))),
        "finalize" => (vec!["update"], own),
        "token" => (vec!["create"], gvk("authentication.k8s.io", "v1", "TokenRequest")),
        _ => (vec!["get"], own),
    }
}

pub fn resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let infos: Vec<ResourceInfo> = registry.infos().into_iter().filter(|i| i.group == group && i.version == version).collect();
    if infos.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for i in &infos {
        let mut r = json!({
            "name": i.plural,
            "singularName": i.singular,
            "namespaced": i.namespaced,
            "kind": i.kind,
            "verbs": i.verbs,
        });
        if !i.short_names.is_empty() {
            r["shortNames"] = json!(i.short_names);
        }
        if !i.categories.is_empty() {
            r["categories"] = json!(i.categories);
        }
        resources.push(r);
        for sub in i.subresources {
            let (verbs, (g, v, k)) = subresource_shape(i, sub);
            let mut r = json!({"name": format!("{}/{sub}", i.plural), "singularName": "", "namespaced": i.namespaced, "kind": k, "verbs": verbs});
            if g != i.group || v != i.version {
                r["group"] = json!(g);
                r["version"] = json!(v);
            }
            resources.push(r);
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

/// The aggregated discovery document for `/api` (core) or `/apis` (all named groups).
pub fn aggregated(registry: &Registry, core: bool, api_version: &str) -> Value {
    let mut items = Vec::new();
    for (g, versions) in groups(registry) {
        if g.is_empty() != core {
            continue;
        }
        let vs: Vec<Value> = versions
            .iter()
            .map(|v| {
                let resources: Vec<Value> = registry
                    .infos()
                    .into_iter()
                    .filter(|i| i.group == g && i.version == v)
                    .map(|i| {
                        let subs: Vec<Value> = i
                            .subresources
                            .iter()
                            .map(|sub| {
                                let (verbs, (sg, sv, sk)) = subresource_shape(&i, sub);
                                json!({"subresource": sub, "responseKind": {"group": sg, "version": sv, "kind": sk}, "verbs": verbs})
                            })
                            .collect();
                        let mut r = json!({
                            "resource": i.plural,
                            "responseKind": {"group": i.group, "version": i.version, "kind": i.kind},
                            "scope": if i.namespaced { "Namespaced" } else { "Cluster" },
                            "singularResource": i.singular,
                            "verbs": i.verbs,
                        });
                        if !i.short_names.is_empty() {
                            r["shortNames"] = json!(i.short_names);
                        }
                        if !i.categories.is_empty() {
                            r["categories"] = json!(i.categories);
                        }
                        if !subs.is_empty() {
                            r["subresources"] = json!(subs);
                        }
                        r
                    })
                    .collect();
                json!({"version": v, "resources": resources, "freshness": "Current"})
            })
            .collect();
        let mut meta = json!({"creationTimestamp": null});
        if !g.is_empty() {
            meta["name"] = json!(g);
        }
        items.push(json!({"metadata": meta, "versions": vs}));
    }
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertises_only_served_subresources() {
        let registry = Registry::builtin();
        for i in registry.infos() {
            for sub in i.subresources {
                assert!(SERVED_SUBRESOURCES.contains(sub), "{}/{sub} is advertised but not served", i.plural);
            }
        }
        let core = resource_list(&registry, "", "v1").unwrap();
        let names: Vec<&str> = core["resources"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
        assert!(names.contains(&"pods/exec") && names.contains(&"namespaces/finalize"));
        assert!(names.contains(&"pods/proxy") && names.contains(&"services/proxy") && names.contains(&"nodes/proxy"), "{names:?}");
        assert!(!names.iter().any(|n| n.ends_with("/ephemeralcontainers") || n.ends_with("/resize")), "{names:?}");
        let aggregated = aggregated(&registry, true, "apidiscovery.k8s.io/v2").to_string();
        assert!(aggregated.contains("\"subresource\":\"portforward\""));
        assert!(aggregated.contains(r#"{"subresource":"proxy","responseKind":{"group":"","version":"v1","kind":"ServiceProxyOptions"},"verbs":["create","delete","get","patch","update"]}"#), "{aggregated}");
    }
}
