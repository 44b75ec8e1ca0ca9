//! Quota evaluation (upstream `pkg/quota/v1` and its core evaluators), shared by the
//! ResourceQuota admission plug-in and the ResourceQuota controller: what an object uses
//! ([`usage`]), which of a quota's resources an object's kind is measured by ([`tracks`]), whether
//! a quota's scopes select an object ([`matches_scopes`]), and amounts kept exactly in thousandths
//! ([`ResourceList`]) and written back as quantities ([`format_amount`]).

use crate::quantity::milli_value;
use crate::selector::LabelSelector;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Resource name to amount in thousandths (upstream's `ResourceList`).
pub type ResourceList = BTreeMap<String, i128>;

/// The quota resource names a pod's compute usage may be measured in.
const POD_RESOURCES: &[&str] = &[
    "pods",
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
];

/// The resources a quota on cpu or memory makes every container state (upstream's
/// `validationSet`).
const VALIDATION_SET: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// The kinds counted under a legacy name as well as `count/<plural>`.
const LEGACY_COUNTS: &[&str] = &[
    "secrets",
    "configmaps",
    "replicationcontrollers",
    "resourcequotas",
    "persistentvolumeclaims",
    "services",
    "pods",
];

/// `count/<plural>` for the core group, `count/<plural>.<group>` otherwise.
pub fn object_count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// A `{name: quantity}` map as amounts; quantities that do not parse are left out.
pub fn parse_list(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| Some((k.clone(), milli_value(q.as_str()?)?)))
        .collect()
}

/// An amount of thousandths as upstream prints a quantity: `500m`, `2`, `1k`, or with binary
/// suffixes (`128Mi`) when `binary` (the quota's hard amount was written so).
pub fn format_amount(milli: i128, binary: bool) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let v = milli / 1000;
    if v == 0 {
        return "0".into();
    }
    if binary {
        for (shift, suffix) in [
            (60, "Ei"),
            (50, "Pi"),
            (40, "Ti"),
            (30, "Gi"),
            (20, "Mi"),
            (10, "Ki"),
        ] {
            if v % (1i128 << shift) == 0 {
                return format!("{}{suffix}", v >> shift);
            }
        }
        return v.to_string();
    }
    for (exp, suffix) in [
        (18, "E"),
        (15, "P"),
        (12, "T"),
        (9, "G"),
        (6, "M"),
        (3, "k"),
    ] {
        let d = 10i128.pow(exp);
        if v % d == 0 {
            return format!("{}{suffix}", v / d);
        }
    }
    v.to_string()
}

/// Whether a quantity is written with a binary suffix (`Ki` ... `Ei`).
pub fn is_binary(q: &str) -> bool {
    q.ends_with('i')
}

/// `list` as a `{name: quantity}` object, each amount in the style of `like[name]`.
pub fn to_json(list: &ResourceList, like: Option<&Value>) -> Value {
    let mut out = Map::new();
    for (k, v) in list {
        let binary = like
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
            .is_some_and(is_binary);
        out.insert(k.clone(), json!(format_amount(*v, binary)));
    }
    Value::Object(out)
}

/// `k=v,k=v` sorted by name (upstream's `prettyPrint`), amounts styled after `like`.
pub fn pretty(list: &ResourceList, like: Option<&Value>) -> String {
    list.iter()
        .map(|(k, v)| {
            let binary = like
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
                .is_some_and(is_binary);
            format!("{k}={}", format_amount(*v, binary))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether objects of `group`/`plural` are measured in the quota resource `name` (upstream's
/// evaluators' `MatchingResources`).
pub fn tracks(group: &str, plural: &str, name: &str) -> bool {
    if name == object_count_name(group, plural) {
        return true;
    }
    if !group.is_empty() {
        return false;
    }
    if LEGACY_COUNTS.contains(&plural) && name == plural {
        return true;
    }
    match plural {
        "pods" => {
            POD_RESOURCES.contains(&name)
                || name.starts_with("hugepages-")
                || name.starts_with("requests.hugepages-")
                || (name.starts_with("requests.") && name.contains('/'))
        }
        "services" => matches!(name, "services.nodeports" | "services.loadbalancers"),
        "persistentvolumeclaims" => {
            name == "requests.storage"
                || name.ends_with(".storageclass.storage.k8s.io/requests.storage")
                || name.ends_with(".storageclass.storage.k8s.io/persistentvolumeclaims")
        }
        _ => false,
    }
}

fn add(into: &mut ResourceList, name: &str, amount: i128) {
    *into.entry(name.to_string()).or_insert(0) += amount;
}

/// Whether a pod still counts for compute resources: not Succeeded or Failed, and not deleted
/// past its grace period (the caller says, it knows the time) (upstream `QuotaV1Pod`).
pub fn pod_counts(pod: &Value, past_grace: bool) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    !(matches!(phase, Some("Succeeded" | "Failed")) || past_grace)
}

/// The compute resources one container (or the pod's summed requests and limits) uses (upstream
/// `podComputeUsageHelper`), without `pods`.
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::new();
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(v) = requests.get(r) {
            out.insert(r.to_string(), *v);
            out.insert(format!("requests.{r}"), *v);
        }
        if let Some(v) = limits.get(r) {
            out.insert(format!("limits.{r}"), *v);
        }
    }
    for (r, v) in requests {
        if r.starts_with("hugepages-") {
            out.insert(r.clone(), *v);
            out.insert(format!("requests.{r}"), *v);
        } else if r.contains('/') && !r.starts_with("kubernetes.io/") {
            out.insert(format!("requests.{r}"), *v);
        }
    }
    out
}

fn container_lists(c: &Value) -> (ResourceList, ResourceList) {
    (
        parse_list(c.pointer("/resources/requests")),
        parse_list(c.pointer("/resources/limits")),
    )
}

/// What one object uses (upstream's evaluators' `Usage`): its object count, and for pods,
/// services and claims what they hold. `past_grace` is for pods deleted beyond their grace period.
pub fn usage(group: &str, plural: &str, obj: &Value, past_grace: bool) -> ResourceList {
    let mut out = ResourceList::new();
    add(&mut out, &object_count_name(group, plural), 1000);
    if !group.is_empty() {
        return out;
    }
    match plural {
        "pods" => {
            if !pod_counts(obj, past_grace) {
                return out;
            }
            add(&mut out, "pods", 1000);
            let spec = obj.get("spec");
            let list = |k: &str| {
                spec.and_then(|s| s.get(k))
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            };
            let (mut requests, mut limits) = (ResourceList::new(), ResourceList::new());
            for c in list("containers") {
                let (r, l) = container_lists(&c);
                for (k, v) in r {
                    add(&mut requests, &k, v);
                }
                for (k, v) in l {
                    add(&mut limits, &k, v);
                }
            }
            for c in list("initContainers") {
                let (r, l) = container_lists(&c);
                for (k, v) in r {
                    let e = requests.entry(k).or_insert(v);
                    *e = (*e).max(v);
                }
                for (k, v) in l {
                    let e = limits.entry(k).or_insert(v);
                    *e = (*e).max(v);
                }
            }
            out.extend(compute_usage(&requests, &limits));
        }
        "services" => {
            add(&mut out, "services", 1000);
            let ty = obj
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            let ports = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map_or(0, Vec::len) as i128;
            match ty {
                "NodePort" => add(&mut out, "services.nodeports", ports * 1000),
                "LoadBalancer" => {
                    add(&mut out, "services.loadbalancers", 1000);
                    if obj
                        .pointer("/spec/allocateLoadBalancerNodePorts")
                        .and_then(Value::as_bool)
                        != Some(false)
                    {
                        add(&mut out, "services.nodeports", ports * 1000);
                    }
                }
                _ => {}
            }
        }
        "persistentvolumeclaims" => {
            add(&mut out, "persistentvolumeclaims", 1000);
            let storage = obj
                .pointer("/spec/resources/requests/storage")
                .and_then(Value::as_str)
                .and_then(milli_value);
            if let Some(s) = storage {
                add(&mut out, "requests.storage", s);
            }
            let class = obj
                .pointer("/spec/storageClassName")
                .and_then(Value::as_str)
                .or_else(|| {
                    obj.pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
                        .and_then(Value::as_str)
                })
                .unwrap_or_default();
            if !class.is_empty() {
                add(
                    &mut out,
                    &format!("{class}.storageclass.storage.k8s.io/persistentvolumeclaims"),
                    1000,
                );
                if let Some(s) = storage {
                    add(
                        &mut out,
                        &format!("{class}.storageclass.storage.k8s.io/requests.storage"),
                        s,
                    );
                }
            }
        }
        p if LEGACY_COUNTS.contains(&p) => add(&mut out, p, 1000),
        _ => {}
    }
    out
}

/// The scope selectors of a quota: `spec.scopes` (each as `Exists`) and
/// `spec.scopeSelector.matchExpressions`.
fn scope_selectors(quota: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| json!({"scopeName": s, "operator": "Exists"}))
        .collect();
    out.extend(
        quota
            .pointer("/spec/scopeSelector/matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .cloned(),
    );
    out
}

/// Whether one scope selector selects the object (upstream `podMatchesScopeFunc`; only pods
/// are in any scope).
fn scope_matches(group: &str, plural: &str, obj: &Value, sel: &Value) -> bool {
    if !(group.is_empty() && plural == "pods") {
        return false;
    }
    let spec = obj.get("spec");
    let terminating = spec
        .and_then(|s| s.get("activeDeadlineSeconds"))
        .and_then(Value::as_i64)
        .is_some_and(|d| d >= 0);
    let best_effort = crate::qos::qos_class(spec) == "BestEffort";
    match sel
        .get("scopeName")
        .and_then(Value::as_str)
        .unwrap_or_default()
    {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        "PriorityClass" => {
            let class = spec
                .and_then(|s| s.get("priorityClassName"))
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty());
            let mut expr = sel.clone();
            if let Some(m) = expr.as_object_mut() {
                m.remove("scopeName");
                m.insert("key".into(), json!("PriorityClass"));
            }
            match LabelSelector::from_object(&json!({"matchExpressions": [expr]})) {
                Ok(s) => s.matches_with(|k| if k == "PriorityClass" { class } else { None }),
                Err(_) => false,
            }
        }
        _ => false,
    }
}

/// Whether every scope of `quota` selects the object.
pub fn matches_scopes(group: &str, plural: &str, obj: &Value, quota: &Value) -> bool {
    scope_selectors(quota)
        .iter()
        .all(|s| scope_matches(group, plural, obj, s))
}

/// The resources of `names` the object's kind is measured in.
pub fn matching<'a>(
    group: &str,
    plural: &str,
    names: impl IntoIterator<Item = &'a String>,
) -> Vec<String> {
    names
        .into_iter()
        .filter(|n| tracks(group, plural, n))
        .cloned()
        .collect()
}

/// For a pod under a quota of cpu or memory, the resources some container does not state
/// (upstream's pod evaluator `Constraints`): `must specify limits.cpu for: a,b; memory for: a`.
pub fn pod_constraints(pod: &Value, restricted: &[String]) -> Option<String> {
    let required: Vec<&str> = VALIDATION_SET
        .iter()
        .copied()
        .filter(|r| restricted.iter().any(|x| x == r))
        .collect();
    if required.is_empty() {
        return None;
    }
    let mut missing: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for k in ["containers", "initContainers"] {
        for c in pod
            .pointer(&format!("/spec/{k}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (r, l) = container_lists(c);
            let have = compute_usage(&r, &l);
            for req in &required {
                if !have.contains_key(*req) {
                    missing.entry(req).or_default().push(
                        c.get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
            }
        }
    }
    if missing.is_empty() {
        return None;
    }
    let parts: Vec<String> = missing
        .iter_mut()
        .map(|(r, cs)| {
            cs.sort_unstable();
            cs.dedup();
            format!("{r} for: {}", cs.join(","))
        })
        .collect();
    Some(format!("must specify {}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_amounts_as_quantities() {
        assert_eq!(format_amount(500, false), "500m");
        assert_eq!(format_amount(2000, false), "2");
        assert_eq!(format_amount(1_000_000, false), "1k");
        assert_eq!(format_amount((128 << 20) * 1000, true), "128Mi");
        assert_eq!(format_amount(0, true), "0");
    }

    #[test]
    fn pod_usage_sums_containers_and_maxes_init_containers() {
        let pod = json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m"}}},
                {"name": "b", "resources": {"requests": {"cpu": "300m"}}}],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1"}}}]}});
        let u = usage("", "pods", &pod, false);
        assert_eq!(u["pods"], 1000);
        assert_eq!(u["count/pods"], 1000);
        assert_eq!(u["requests.cpu"], 1000);
        assert_eq!(u["limits.cpu"], 200);
        assert_eq!(u["memory"], (64 << 20) * 1000);
        let done = json!({"status": {"phase": "Succeeded"}});
        assert_eq!(usage("", "pods", &done, false).get("pods"), None);
        assert_eq!(
            pod_constraints(&pod, &["limits.cpu".into(), "pods".into()]).as_deref(),
            Some("must specify limits.cpu for: b,i")
        );
    }

    #[test]
    fn scopes_select_pods_only() {
        let quota = json!({"spec": {"scopes": ["BestEffort"]}});
        let pod = json!({"spec": {"containers": [{"name": "a"}]}});
        assert!(matches_scopes("", "pods", &pod, &quota));
        assert!(!matches_scopes("", "services", &pod, &quota));
        let pc = json!({"spec": {"scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}});
        let high = json!({"spec": {"priorityClassName": "high"}});
        assert!(matches_scopes("", "pods", &high, &pc));
        assert!(!matches_scopes("", "pods", &pod, &pc));
        assert!(tracks("apps", "deployments", "count/deployments.apps"));
        assert!(tracks("", "configmaps", "configmaps"));
        assert!(!tracks("", "configmaps", "pods"));
    }
}
