//! Typed `metav1.LabelSelector`s (as k8s-openapi's objects carry them) evaluated by the one
//! label-selector implementation, [`kaji_api::selector`], as upstream's
//! `metav1.LabelSelectorAsSelector` then `Selector.Matches`; and node selectors (upstream
//! `nodeaffinity.NodeSelector` / `GetRequiredNodeAffinity`), used by the scheduler, the
//! DaemonSet controller and volume node affinity.

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kaji_api::selector::LabelSelector as Compiled;
use std::collections::BTreeMap;

/// Upstream `LabelSelectorAsSelector` for a present selector: `matchLabels` and
/// `matchExpressions` ANDed (an empty selector matches everything); an unknown operator is an
/// error.
pub fn compile(sel: &LabelSelector) -> Result<Compiled, String> {
    let json = serde_json::to_value(sel).map_err(|e| e.to_string())?;
    Compiled::from_object(&json)
}

/// Whether an object's labels (None: it has none) match a compiled selector.
pub fn matches(sel: &Compiled, labels: Option<&BTreeMap<String, String>>) -> bool {
    sel.matches_with(|k| labels.and_then(|l| l.get(k)).map(String::as_str))
}

/// Whether labels match a typed selector; a selector that does not compile matches nothing.
pub fn label_selector_matches(
    sel: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    compile(sel).is_ok_and(|s| matches(&s, labels))
}

/// One node selector requirement against a label's (or field's) value, if the node has it.
/// `Gt`/`Lt` compare integers; an unknown operator matches nothing.
pub fn node_requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let vals = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| vals.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !vals.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                vals.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// One `nodeSelectorTerm`: every expression (on labels) and field (only `metadata.name`) must
/// match; an empty term matches nothing.
pub fn node_selector_term_matches(
    term: &NodeSelectorTerm,
    labels: &BTreeMap<String, String>,
    node_name: &str,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| node_requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && node_requirement_matches(r, Some(node_name)))
}

/// Upstream `GetRequiredNodeAffinity(pod).Match(node)`: the pod's `nodeSelector` and its
/// required node affinity (terms ORed; an empty list matches nothing).
pub fn required_node_affinity_matches(
    spec: &PodSpec,
    labels: &BTreeMap<String, String>,
    node_name: &str,
) -> bool {
    if let Some(sel) = &spec.node_selector
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    required.is_none_or(|ns| {
        ns.node_selector_terms
            .iter()
            .any(|t| node_selector_term_matches(t, labels, node_name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(v: serde_json::Value) -> LabelSelector {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn typed_selectors_match_as_upstream() {
        let labels: BTreeMap<String, String> = [
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "1".to_string()),
        ]
        .into();
        let s = sel(json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["1", "2"]}]}));
        assert!(label_selector_matches(&s, Some(&labels)));
        assert!(!label_selector_matches(&s, None));
        // Empty: everything, even an object without labels.
        assert!(label_selector_matches(&LabelSelector::default(), None));
        let s = sel(json!({"matchExpressions": [
            {"key": "tier", "operator": "NotIn", "values": ["2"]},
            {"key": "zone", "operator": "DoesNotExist"},
            {"key": "app", "operator": "Exists"}]}));
        assert!(label_selector_matches(&s, Some(&labels)));
        let s = sel(json!({"matchLabels": {"app": "db"}}));
        assert!(!label_selector_matches(&s, Some(&labels)));
        // An invalid operator matches nothing.
        let s =
            sel(json!({"matchExpressions": [{"key": "tier", "operator": "Gt", "values": ["0"]}]}));
        assert!(compile(&s).is_err());
        assert!(!label_selector_matches(&s, Some(&labels)));
    }

    #[test]
    fn node_selectors_match_as_upstream() {
        let labels: BTreeMap<String, String> = [("tier".to_string(), "1".to_string())].into();
        let term =
            |v: serde_json::Value| -> NodeSelectorTerm { serde_json::from_value(v).unwrap() };
        let t =
            term(json!({"matchExpressions": [{"key": "tier", "operator": "Gt", "values": ["0"]}]}));
        assert!(node_selector_term_matches(&t, &labels, "n"));
        let f = term(
            json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]}),
        );
        assert!(node_selector_term_matches(&f, &labels, "n"));
        assert!(!node_selector_term_matches(&f, &labels, "m"));
        assert!(!node_selector_term_matches(&term(json!({})), &labels, "n"));
        let spec: PodSpec = serde_json::from_value(json!({"containers": [],
            "nodeSelector": {"tier": "1"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["m"]}]},
                                      {"matchExpressions": [{"key": "tier", "operator": "Lt", "values": ["1"]}]}]}}}}))
        .unwrap();
        assert!(required_node_affinity_matches(&spec, &labels, "m"));
        assert!(!required_node_affinity_matches(&spec, &labels, "n"));
        assert!(!required_node_affinity_matches(
            &spec,
            &BTreeMap::new(),
            "m"
        ));
    }
}
