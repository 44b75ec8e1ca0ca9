//! Which nodes a DaemonSet's pod belongs on, and what a daemon pod looks like before the
//! scheduler binds it (upstream pkg/controller/daemon `NodeShouldRunDaemonPod` and
//! pkg/controller/daemon/util). Pure functions, table-tested.

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};
use std::collections::BTreeMap;

/// Upstream `NodeShouldRunDaemonPod`'s answer for one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fit {
    /// A daemon pod should be created there.
    pub should_run: bool,
    /// A daemon pod already there may stay (an untolerated NoSchedule taint keeps it).
    pub should_continue_running: bool,
}

/// The tolerations upstream's `AddOrUpdateDaemonPodTolerations` gives every daemon pod: they
/// stay on not-ready and unreachable nodes and are created despite pressure, cordoning and, on
/// the host network, a missing network.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let t = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        // Upstream's AddOrUpdateTolerationInPodSpec: an equal toleration (same key, operator,
        // value, effect) is replaced, others are kept.
        let same = |o: &Toleration| {
            o.key == t.key
                && o.operator.as_deref().unwrap_or("Equal") == "Exists"
                && o.effect == t.effect
                && o.value.as_deref().unwrap_or("").is_empty()
        };
        if let Some(i) = tolerations.iter().position(same) {
            tolerations[i] = t;
        } else {
            tolerations.push(t);
        }
    }
}

/// Upstream `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    if t.key.as_deref().is_some_and(|k| !k.is_empty()) && t.key.as_deref() != Some(&taint.key) {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// Upstream `GetRequiredNodeAffinity(pod).Match(node)`: the node selector and the required
/// node affinity (terms ORed).
pub fn node_affinity_matches(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let name = node.metadata.name.as_deref().unwrap_or_default();
    kaji_runtime::selector::required_node_affinity_matches(spec, labels, name)
}

/// Upstream `NodeShouldRunDaemonPod` for a daemon pod spec (the template with the daemon
/// tolerations added): node name, node affinity, then NoSchedule/NoExecute taints.
pub fn node_should_run(spec: &PodSpec, node: &Node) -> Fit {
    let no = Fit {
        should_run: false,
        should_continue_running: false,
    };
    let name = node.metadata.name.as_deref().unwrap_or_default();
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name)
    {
        return no;
    }
    if !node_affinity_matches(spec, node) {
        return no;
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let untolerated = taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)));
    match untolerated {
        None => Fit {
            should_run: true,
            should_continue_running: true,
        },
        Some(t) if t.effect == "NoExecute" => no,
        Some(_) => Fit {
            should_run: false,
            should_continue_running: true,
        },
    }
}

/// Upstream `ReplaceDaemonSetPodNodeNameNodeAffinity`: the pod's required node affinity becomes
/// the one term `metadata.name In [node]` (other affinity kept), so that the scheduler binds
/// it there.
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let selector = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
            match_expressions: None,
        }],
    };
    let mut affinity = affinity.unwrap_or_default();
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(selector);
    affinity
}

/// Upstream `GetTargetNodeName`: the node a daemon pod is bound to, or the one its affinity
/// pins it to while it waits for the scheduler.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.as_deref()?.iter().find_map(|r| {
            (r.key == "metadata.name" && r.operator == "In")
                .then(|| r.values.as_deref()?.first().cloned())
                .flatten()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).expect("a node")
    }

    fn spec(v: serde_json::Value) -> PodSpec {
        let mut s: PodSpec = serde_json::from_value(v).expect("a pod spec");
        add_daemon_tolerations(&mut s);
        s
    }

    #[test]
    fn daemon_pods_tolerate_what_upstream_adds() {
        let s = spec(json!({"containers": [], "hostNetwork": true,
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]}));
        let keys: Vec<_> = s
            .tolerations
            .iter()
            .flatten()
            .map(|t| t.key.clone().unwrap_or_default())
            .collect();
        // The template's own not-ready toleration is replaced (upstream's
        // AddOrUpdateTolerationInPodSpec matches on key, operator, value and effect).
        assert_eq!(keys.len(), 7, "{keys:?}");
        assert!(
            s.tolerations
                .iter()
                .flatten()
                .all(|t| t.toleration_seconds.is_none())
        );
        assert!(keys.contains(&"node.kubernetes.io/network-unavailable".to_string()));
        let s = spec(json!({"containers": []}));
        assert_eq!(s.tolerations.as_ref().map(Vec::len), Some(6));
        // Daemon pods go onto cordoned and not-ready nodes.
        let n = node(
            json!({"metadata": {"name": "a"}, "spec": {"unschedulable": true, "taints": [
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]}}),
        );
        assert!(node_should_run(&s, &n).should_run);
    }

    #[test]
    fn taints_selectors_and_affinity_decide_as_upstream() {
        let s = spec(json!({"containers": [], "nodeSelector": {"disk": "ssd"}}));
        let ssd = node(json!({"metadata": {"name": "a", "labels": {"disk": "ssd"}}}));
        let hdd = node(json!({"metadata": {"name": "b", "labels": {"disk": "hdd"}}}));
        assert!(node_should_run(&s, &ssd).should_run);
        assert_eq!(
            node_should_run(&s, &hdd),
            Fit {
                should_run: false,
                should_continue_running: false
            }
        );
        let s = spec(
            json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]},
                                  {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}]}}}}),
        );
        assert!(node_should_run(&s, &ssd).should_run, "by name");
        assert!(node_should_run(&s, &hdd).should_run, "by label");
        let s = spec(json!({"containers": []}));
        let no_schedule = node(
            json!({"metadata": {"name": "c"}, "spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(
            node_should_run(&s, &no_schedule),
            Fit {
                should_run: false,
                should_continue_running: true
            }
        );
        let no_execute = node(
            json!({"metadata": {"name": "c"}, "spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoExecute"}]}}),
        );
        assert!(!node_should_run(&s, &no_execute).should_continue_running);
        let prefer = node(
            json!({"metadata": {"name": "c"}, "spec": {"taints": [{"key": "dedicated", "effect": "PreferNoSchedule"}]}}),
        );
        assert!(node_should_run(&s, &prefer).should_run);
        let s = spec(
            json!({"containers": [], "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db"}]}),
        );
        assert!(node_should_run(&s, &no_execute).should_run);
    }

    #[test]
    fn pods_are_pinned_by_a_name_field_and_found_again() {
        let a = pin_to_node(None, "n1");
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
            "spec": {"containers": [], "affinity": a}}))
        .expect("pod");
        assert_eq!(target_node(&pod).as_deref(), Some("n1"));
        let n1 = node(json!({"metadata": {"name": "n1"}}));
        let n2 = node(json!({"metadata": {"name": "n2"}}));
        let spec = pod.spec.clone().expect("spec");
        assert!(node_affinity_matches(&spec, &n1));
        assert!(!node_affinity_matches(&spec, &n2));
        let bound: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
            "spec": {"containers": [], "nodeName": "n2", "affinity": pin_to_node(None, "n1")}}))
        .expect("pod");
        assert_eq!(target_node(&bound).as_deref(), Some("n2"));
    }
}
