//! The aggregated groups in discovery (upstream's `handler_apis.go` and the aggregated
//! discovery manager): every non-local APIService's group in `/apis` (versions by
//! `versionPriority`, groups by `groupPriorityMinimum` after the built-in ones), `/apis/<group>`
//! answered by the aggregator, and in the apidiscovery.k8s.io/v2 document the backend's
//! resources as its `/apis/<group>/<version>` last listed them (fetched by the availability
//! check; `Stale` while the backend is unavailable, left out until it was seen once).

use super::{Aggregator, Remote};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Remote groups, highest priority first, each with its remotes by version priority.
fn remote_groups(agg: &Aggregator) -> Vec<(String, Vec<Remote>)> {
    let mut groups: Vec<(String, Vec<Remote>)> = Vec::new();
    for r in agg.remotes() {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, rs)) => rs.push(r),
            None => groups.push((r.group.clone(), vec![r])),
        }
    }
    for (_, rs) in &mut groups {
        // Upstream's ByVersionPriority: priority, then the Kubernetes version order.
        rs.sort_by(|a, b| {
            b.version_priority
                .cmp(&a.version_priority)
                .then_with(|| a.version.cmp(&b.version))
        });
    }
    let top = |rs: &[Remote]| rs.iter().map(|r| r.group_priority).max().unwrap_or(0);
    groups.sort_by(|(ga, a), (gb, b)| top(b).cmp(&top(a)).then_with(|| ga.cmp(gb)));
    groups
}

fn group_object(name: &str, remotes: &[Remote]) -> Value {
    let vs: Vec<Value> = remotes
        .iter()
        .map(|r| json!({"groupVersion": format!("{name}/{}", r.version), "version": r.version}))
        .collect();
    json!({"name": name, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(json!({}))})
}

/// `/apis/<group>` of a group only backends serve.
pub fn api_group(agg: &Aggregator, group: &str) -> Value {
    let remotes = remote_groups(agg)
        .into_iter()
        .find(|(g, _)| g == group)
        .map(|(_, rs)| rs)
        .unwrap_or_default();
    let mut obj = group_object(group, &remotes);
    obj["kind"] = json!("APIGroup");
    obj["apiVersion"] = json!("v1");
    obj
}

/// Adds the remote groups to a legacy APIGroupList (`/apis`).
pub fn merge_group_list(agg: &Aggregator, list: &mut Value) {
    let Some(groups) = list.get_mut("groups").and_then(Value::as_array_mut) else {
        return;
    };
    for (name, remotes) in remote_groups(agg) {
        // A group the server serves too (another version of it is remote): the remote
        // versions join its list.
        if let Some(g) = groups.iter_mut().find(|g| g["name"] == name.as_str()) {
            if let Some(versions) = g["versions"].as_array_mut() {
                for r in &remotes {
                    if !versions.iter().any(|v| v["version"] == r.version.as_str()) {
                        versions.push(json!({"groupVersion": format!("{name}/{}", r.version), "version": r.version}));
                    }
                }
            }
            continue;
        }
        groups.push(group_object(&name, &remotes));
    }
}

/// One version entry of the aggregated document from a backend's APIResourceList.
fn version_entry(remote: &Remote, list: &Value) -> Value {
    let all = list["resources"].as_array().cloned().unwrap_or_default();
    let mut resources: Vec<Value> = Vec::new();
    for r in all
        .iter()
        .filter(|r| !r["name"].as_str().unwrap_or_default().contains('/'))
    {
        let name = r["name"].as_str().unwrap_or_default();
        let gvk = |r: &Value| {
            json!({
                "group": r["group"].as_str().unwrap_or(&remote.group),
                "version": r["version"].as_str().unwrap_or(&remote.version),
                "kind": r["kind"],
            })
        };
        let mut entry = json!({
            "resource": name,
            "responseKind": gvk(r),
            "scope": if r["namespaced"].as_bool().unwrap_or(false) { "Namespaced" } else { "Cluster" },
            "singularResource": r["singularName"],
            "verbs": r["verbs"],
        });
        for key in ["shortNames", "categories"] {
            if r[key].as_array().is_some_and(|a| !a.is_empty()) {
                entry[key] = r[key].clone();
            }
        }
        let subs: Vec<Value> = all
            .iter()
            .filter_map(|s| {
                let sub = s["name"].as_str()?.strip_prefix(name)?.strip_prefix('/')?;
                Some(json!({"subresource": sub, "responseKind": gvk(s), "verbs": s["verbs"]}))
            })
            .collect();
        if !subs.is_empty() {
            entry["subresources"] = json!(subs);
        }
        resources.push(entry);
    }
    json!({"version": remote.version, "resources": resources, "freshness": if remote.available { "Current" } else { "Stale" }})
}

/// Adds the remote groups to an aggregated APIGroupDiscoveryList (`/apis`).
pub fn merge_aggregated(agg: &Aggregator, doc: &mut Value) {
    let Some(items) = doc.get_mut("items").and_then(Value::as_array_mut) else {
        return;
    };
    for (name, remotes) in remote_groups(agg) {
        let versions: Vec<Value> = remotes
            .iter()
            .filter_map(|r| {
                agg.resources(&format!("{name}/{}", r.version))
                    .map(|list| version_entry(r, &list))
            })
            .collect();
        if versions.is_empty() {
            continue;
        }
        // A group the server serves too: a remote version replaces the server's own (the
        // requests go to the backend) or joins the group.
        if let Some(item) = items
            .iter_mut()
            .find(|i| i["metadata"]["name"] == name.as_str())
        {
            if let Some(have) = item["versions"].as_array_mut() {
                for v in versions {
                    match have.iter_mut().find(|h| h["version"] == v["version"]) {
                        Some(h) => *h = v,
                        None => have.push(v),
                    }
                }
            }
            continue;
        }
        items.push(
            json!({"metadata": {"name": name, "creationTimestamp": null}, "versions": versions}),
        );
    }
}

/// Adds the remote group/versions' OpenAPI v3 documents to the `/openapi/v3` index (served by
/// the backends through `intercept`).
pub fn merge_openapi_v3_index(agg: &Aggregator, index: &mut Value) {
    let Some(paths) = index.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for r in agg.remotes() {
        let key = format!("apis/{}/{}", r.group, r.version);
        if paths.contains_key(&key) {
            continue;
        }
        if let Some(entry) = agg.openapi_v3(&format!("{}/{}", r.group, r.version)) {
            paths.insert(key, entry);
        }
    }
}

/// The served `/openapi/v2` (JSON, protobuf): the server's own document, with each backend's
/// paths under its group/version and the definitions it brings (upstream's OpenAPI v2
/// aggregation; the server's own definitions win a name clash). Merged again only when a
/// backend's document changed.
pub fn openapi_v2(server: &crate::ApiServer) -> (bytes::Bytes, bytes::Bytes) {
    let agg = &server.aggregator;
    let docs = agg.openapi_v2_documents();
    if docs.is_empty() {
        return (
            server.openapi_v2_json().clone(),
            server.openapi_v2_protobuf().clone(),
        );
    }
    let mut merged = agg
        .merged_v2
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((made_of, json, proto)) = merged.as_ref()
        && *made_of == docs
    {
        return (json.clone(), proto.clone());
    }
    let mut doc: Value =
        serde_json::from_slice(server.openapi_v2_json()).unwrap_or_else(|_| json!({}));
    merge_v2(&mut doc, &docs);
    let json = bytes::Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
    let proto = bytes::Bytes::from(kaji_openapi::v2_protobuf(&doc));
    *merged = Some((docs, json.clone(), proto.clone()));
    (json, proto)
}

fn merge_v2(doc: &mut Value, backends: &BTreeMap<String, Value>) {
    for (gv, backend) in backends {
        let prefix = format!("/apis/{gv}");
        if let (Some(paths), Some(theirs)) = (
            doc.get_mut("paths").and_then(Value::as_object_mut),
            backend["paths"].as_object(),
        ) {
            for (path, item) in theirs {
                if (path == &prefix || path.starts_with(&format!("{prefix}/")))
                    && !paths.contains_key(path)
                {
                    paths.insert(path.clone(), item.clone());
                }
            }
        }
        if let (Some(defs), Some(theirs)) = (
            doc.get_mut("definitions").and_then(Value::as_object_mut),
            backend["definitions"].as_object(),
        ) {
            for (name, def) in theirs {
                if !defs.contains_key(name) {
                    defs.insert(name.clone(), def.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_v2_takes_the_backends_group_paths_and_new_definitions() {
        let mut doc = json!({"paths": {"/api/v1/pods": {}}, "definitions": {"Meta": {"description": "ours"}}});
        let backend = json!({"paths": {"/apis/x.io/v1/things": {"get": {}}, "/apis/x.io/v1": {}, "/apis/x.iox/v1": {}, "/version": {}},
            "definitions": {"Meta": {"description": "theirs"}, "Thing": {"type": "object"}}});
        merge_v2(
            &mut doc,
            &BTreeMap::from([("x.io/v1".to_string(), backend)]),
        );
        let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
        assert_eq!(
            paths,
            ["/api/v1/pods", "/apis/x.io/v1/things", "/apis/x.io/v1"]
        );
        assert_eq!(doc["definitions"]["Meta"]["description"], "ours");
        assert_eq!(doc["definitions"]["Thing"]["type"], "object");
    }

    fn aggregator_with(remotes: &[Remote]) -> Aggregator {
        let agg = Aggregator {
            remotes: Default::default(),
            resources: Default::default(),
            openapi_v3: Default::default(),
            tls: Default::default(),
            openapi_v2: Default::default(),
            merged_v2: Default::default(),
            check_tls: Default::default(),
            wake: tokio::sync::Notify::new(),
            proxy_cert_pem: String::new(),
            proxy_key_pem: String::new(),
        };
        agg.set_remotes(
            remotes
                .iter()
                .map(|r| (r.name.clone(), r.clone()))
                .collect(),
        );
        agg
    }

    #[test]
    fn remote_versions_join_or_replace_a_served_group() {
        let remote = |version: &str, priority: i64| Remote {
            name: format!("{version}.metrics.k8s.io"),
            group: "metrics.k8s.io".into(),
            version: version.into(),
            group_priority: 100,
            version_priority: priority,
            namespace: "kube-system".into(),
            service: "metrics-server".into(),
            port: 443,
            ca_bundle: None,
            insecure: true,
            available: true,
        };
        let agg = aggregator_with(&[remote("v1beta1", 100), remote("v1", 200)]);
        let list = |kind: &str| json!({"kind": "APIResourceList", "resources": [{"name": "nodes", "namespaced": false, "kind": kind, "verbs": ["get"]}]});
        agg.set_resources("metrics.k8s.io/v1beta1", list("Backend"));
        agg.set_resources("metrics.k8s.io/v1", list("BackendV1"));
        let mut legacy = json!({"groups": [{"name": "metrics.k8s.io", "versions": [{"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}]}]});
        merge_group_list(&agg, &mut legacy);
        let versions: Vec<&str> = legacy["groups"][0]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["version"].as_str())
            .collect();
        assert_eq!(versions, ["v1beta1", "v1"]);
        let mut doc = json!({"items": [{"metadata": {"name": "metrics.k8s.io"}, "versions": [{"version": "v1beta1", "resources": [{"resource": "pods"}]}]}]});
        merge_aggregated(&agg, &mut doc);
        let versions = doc["items"][0]["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 2, "{doc}");
        assert_eq!(
            versions[0]["resources"][0]["responseKind"]["kind"],
            "Backend"
        );
        assert_eq!(versions[1]["version"], "v1");
        assert_eq!(doc["items"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn resource_lists_become_aggregated_entries() {
        let remote = Remote {
            name: "v1alpha1.wardle.example.com".into(),
            group: "wardle.example.com".into(),
            version: "v1alpha1".into(),
            group_priority: 1000,
            version_priority: 15,
            namespace: "wardle".into(),
            service: "api".into(),
            port: 443,
            ca_bundle: None,
            insecure: false,
            available: true,
        };
        let list = json!({"kind": "APIResourceList", "groupVersion": "wardle.example.com/v1alpha1", "resources": [
            {"name": "flunders", "singularName": "flunder", "namespaced": true, "kind": "Flunder", "verbs": ["get", "list", "create"], "shortNames": ["fl"]},
            {"name": "flunders/status", "singularName": "", "namespaced": true, "kind": "Flunder", "verbs": ["get"]},
        ]});
        let v = version_entry(&remote, &list);
        assert_eq!(v["resources"].as_array().unwrap().len(), 1);
        let r = &v["resources"][0];
        assert_eq!(r["scope"], "Namespaced");
        assert_eq!(
            r["responseKind"],
            json!({"group": "wardle.example.com", "version": "v1alpha1", "kind": "Flunder"})
        );
        assert_eq!(r["shortNames"], json!(["fl"]));
        assert_eq!(r["subresources"][0]["subresource"], "status");
        assert_eq!(v["freshness"], "Current");
    }
}
