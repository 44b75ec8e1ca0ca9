//! LimitRanger (upstream `plugin/pkg/admission/limitranger`), on create of pods and claims, for
//! every LimitRange of the namespace: a container (or init container) lacking a limit or request
//! the range's `Container` item defaults gets it (`default`, `defaultRequest`), and the pod is
//! annotated `kubernetes.io/limit-ranger: LimitRanger plugin set: ...` saying what was set;
//! then `min`, `max` and `maxLimitRequestRatio` of the `Container` and `Pod` items are enforced,
//! and `min`/`max` of `PersistentVolumeClaim` items on a claim's storage request, each refusal a
//! 403 with upstream's text (several joined as `[a, b]`).

use crate::objects::meta_str;
use crate::registry::Registry;
use kaji_api::quantity::milli_value;
use kaji_api::{ApiError, ResourceInfo};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

const ANNOTATION: &str = "kubernetes.io/limit-ranger";

type List = BTreeMap<String, String>;

fn list(v: Option<&Value>) -> List {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| Some((k.clone(), q.as_str()?.to_string())))
        .collect()
}

fn amount(q: &str) -> i128 {
    milli_value(q).unwrap_or(0)
}

pub async fn admit(storage: &dyn kaji_store::Store, registry: &Registry, info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    let is_pod = info.plural == "pods";
    if !(info.group.is_empty() && (is_pod || info.plural == "persistentvolumeclaims")) {
        return Ok(());
    }
    let Some(ns) = meta_str(obj, "namespace").map(str::to_string) else { return Ok(()) };
    let Some(ranges) = registry.get("", "v1", "limitranges") else { return Ok(()) };
    let page = storage.list(&ranges.prefix(Some(&ns)), kaji_store::ListOptions::default()).await.map_err(crate::store_error)?;
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    for kv in &page.items {
        let range = ranges.decode(kv);
        let items: Vec<Value> = range.pointer("/spec/limits").and_then(Value::as_array).cloned().unwrap_or_default();
        let errs = if is_pod {
            for item in items.iter().filter(|i| i["type"] == "Container") {
                default_pod(obj, &list(item.get("defaultRequest")), &list(item.get("default")));
            }
            validate_pod(obj, &items)
        } else {
            validate_claim(obj, &items)
        };
        if !errs.is_empty() {
            let msg = if errs.len() == 1 { errs[0].clone() } else { format!("[{}]", errs.join(", ")) };
            return Err(super::forbidden(info, &name, &msg));
        }
    }
    Ok(())
}

/// Sets the defaults a container lacks; what was set, as upstream's annotation words it.
fn default_container(c: &mut Value, requests: &List, limits: &List, prefix: &str, notes: &mut Vec<String>) {
    let cname = c.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    let Some(m) = c.as_object_mut() else { return };
    let res = m.entry("resources").or_insert_with(|| json!({}));
    let Some(res) = res.as_object_mut() else { return };
    let mut set = |key: &str, defaults: &List| -> Vec<String> {
        let mut done = Vec::new();
        if defaults.is_empty() {
            return done;
        }
        let target = res.entry(key).or_insert_with(|| json!({}));
        if !target.is_object() {
            *target = json!({});
        }
        if let Some(t) = target.as_object_mut() {
            for (k, v) in defaults {
                if !t.contains_key(k) {
                    t.insert(k.clone(), json!(v));
                    done.push(k.clone());
                }
            }
        }
        done
    };
    let set_limits = set("limits", limits);
    let set_requests = set("requests", requests);
    if !set_requests.is_empty() {
        notes.push(format!("{} request for {prefix} {cname}", set_requests.join(", ")));
    }
    if !set_limits.is_empty() {
        notes.push(format!("{} limit for {prefix} {cname}", set_limits.join(", ")));
    }
}

fn default_pod(pod: &mut Value, requests: &List, limits: &List) {
    if requests.is_empty() && limits.is_empty() {
        return;
    }
    let mut notes = Vec::new();
    for (key, prefix) in [("containers", "container"), ("initContainers", "init container")] {
        if let Some(cs) = pod.pointer_mut(&format!("/spec/{key}")).and_then(Value::as_array_mut) {
            for c in cs {
                default_container(c, requests, limits, prefix, &mut notes);
            }
        }
    }
    if notes.is_empty() {
        return;
    }
    let meta = crate::objects::meta_mut(pod);
    let ann = meta.entry("annotations").or_insert_with(|| Value::Object(Map::new()));
    if let Some(a) = ann.as_object_mut() {
        a.insert(ANNOTATION.into(), json!(format!("LimitRanger plugin set: {}", notes.join("; "))));
    }
}

fn min_constraint(ty: &str, r: &str, enforced: &str, req: &List, lim: &List) -> Option<String> {
    let Some(rq) = req.get(r) else {
        return Some(format!("minimum {r} usage per {ty} is {enforced}.  No request is specified"));
    };
    if amount(rq) < amount(enforced) {
        return Some(format!("minimum {r} usage per {ty} is {enforced}, but request is {rq}"));
    }
    match lim.get(r) {
        Some(l) if amount(l) < amount(enforced) => Some(format!("minimum {r} usage per {ty} is {enforced}, but limit is {l}")),
        _ => None,
    }
}

fn max_constraint(ty: &str, r: &str, enforced: &str, req: &List, lim: &List) -> Option<String> {
    let Some(l) = lim.get(r) else {
        return Some(format!("maximum {r} usage per {ty} is {enforced}.  No limit is specified"));
    };
    if amount(l) > amount(enforced) {
        return Some(format!("maximum {r} usage per {ty} is {enforced}, but limit is {l}"));
    }
    match req.get(r) {
        Some(q) if amount(q) > amount(enforced) => Some(format!("maximum {r} usage per {ty} is {enforced}, but request is {q}")),
        _ => None,
    }
}

fn max_request_constraint(ty: &str, r: &str, enforced: &str, req: &List) -> Option<String> {
    match req.get(r) {
        None => Some(format!("maximum {r} usage per {ty} is {enforced}.  No request is specified")),
        Some(q) if amount(q) > amount(enforced) => Some(format!("maximum {r} usage per {ty} is {enforced}, but request is {q}")),
        _ => None,
    }
}

fn ratio_constraint(ty: &str, r: &str, enforced: &str, req: &List, lim: &List) -> Option<String> {
    let q = req.get(r).map(|q| amount(q)).unwrap_or(0);
    if q == 0 {
        return Some(format!("{r} max limit to request ratio per {ty} is {enforced}, but no request is specified or request is 0"));
    }
    let l = lim.get(r).map(|l| amount(l)).unwrap_or(0);
    if l == 0 {
        return Some(format!("{r} max limit to request ratio per {ty} is {enforced}, but no limit is specified or limit is 0"));
    }
    // limit / request > enforced, exactly: limit * 1000 > enforced(milli) * request.
    if l * 1000 > amount(enforced) * q {
        return Some(format!("{r} max limit to request ratio per {ty} is {enforced}, but provided ratio is {:.6}", l as f64 / q as f64));
    }
    None
}

fn check(item: &Value, ty: &str, req: &List, lim: &List, errs: &mut Vec<String>) {
    for (r, v) in list(item.get("min")) {
        errs.extend(min_constraint(ty, &r, &v, req, lim));
    }
    for (r, v) in list(item.get("max")) {
        errs.extend(max_constraint(ty, &r, &v, req, lim));
    }
    for (r, v) in list(item.get("maxLimitRequestRatio")) {
        errs.extend(ratio_constraint(ty, &r, &v, req, lim));
    }
}

fn validate_pod(pod: &Value, items: &[Value]) -> Vec<String> {
    let mut errs = Vec::new();
    let containers = |k: &str| pod.pointer(&format!("/spec/{k}")).and_then(Value::as_array).cloned().unwrap_or_default();
    let (regular, init) = (containers("containers"), containers("initContainers"));
    let lists = |c: &Value| (list(c.pointer("/resources/requests")), list(c.pointer("/resources/limits")));
    for item in items {
        match item.get("type").and_then(Value::as_str) {
            Some("Container") => {
                for c in regular.iter().chain(&init) {
                    let (req, lim) = lists(c);
                    check(item, "Container", &req, &lim, &mut errs);
                }
            }
            Some("Pod") => {
                // Sums over the containers (a resource some container lacks is left out), then
                // the larger of that and any init container's.
                let sum = |which: usize| -> List {
                    let all: Vec<List> = regular.iter().map(|c| if which == 0 { lists(c).0 } else { lists(c).1 }).collect();
                    let mut out = List::new();
                    let keys: std::collections::BTreeSet<&String> = all.iter().flat_map(|l| l.keys()).collect();
                    for k in keys {
                        if all.iter().all(|l| l.contains_key(k)) {
                            let total: i128 = all.iter().map(|l| amount(&l[k])).sum();
                            out.insert(k.clone(), kaji_api::quota::format_amount(total, all.iter().any(|l| kaji_api::quota::is_binary(&l[k]))));
                        }
                    }
                    for c in &init {
                        let l = if which == 0 { lists(c).0 } else { lists(c).1 };
                        for (k, v) in l {
                            if out.get(&k).is_none_or(|cur| amount(&v) > amount(cur)) {
                                out.insert(k, v);
                            }
                        }
                    }
                    out
                };
                check(item, "Pod", &sum(0), &sum(1), &mut errs);
            }
            _ => {}
        }
    }
    errs
}

fn validate_claim(pvc: &Value, items: &[Value]) -> Vec<String> {
    let mut errs = Vec::new();
    let req = list(pvc.pointer("/spec/resources/requests"));
    for item in items.iter().filter(|i| i["type"] == "PersistentVolumeClaim") {
        for (r, v) in list(item.get("min")) {
            errs.extend(min_constraint("PersistentVolumeClaim", &r, &v, &req, &List::new()));
        }
        for (r, v) in list(item.get("max")) {
            errs.extend(max_request_constraint("PersistentVolumeClaim", &r, &v, &req));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_containers_and_annotates() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a"}, {"name": "b", "resources": {"limits": {"cpu": "1"}}}]}});
        let req: List = [("cpu".to_string(), "100m".to_string()), ("memory".to_string(), "64Mi".to_string())].into();
        let lim: List = [("cpu".to_string(), "500m".to_string())].into();
        default_pod(&mut pod, &req, &lim);
        assert_eq!(pod.pointer("/spec/containers/0/resources/limits/cpu"), Some(&json!("500m")));
        assert_eq!(pod.pointer("/spec/containers/1/resources/limits/cpu"), Some(&json!("1")));
        assert_eq!(
            pod.pointer("/metadata/annotations/kubernetes.io~1limit-ranger"),
            Some(&json!("LimitRanger plugin set: cpu, memory request for container a; cpu limit for container a; cpu, memory request for container b"))
        );
    }

    #[test]
    fn enforces_max_and_ratio_as_upstream_words_it() {
        let item = json!({"type": "Container", "max": {"cpu": "1"}, "maxLimitRequestRatio": {"memory": "2"}});
        let pod = json!({"spec": {"containers": [{"name": "a", "resources": {
            "requests": {"cpu": "1", "memory": "100Mi"}, "limits": {"cpu": "2", "memory": "300Mi"}}}]}});
        assert_eq!(
            validate_pod(&pod, &[item]),
            vec![
                "maximum cpu usage per Container is 1, but limit is 2".to_string(),
                "memory max limit to request ratio per Container is 2, but provided ratio is 3.000000".to_string()
            ]
        );
    }
}
