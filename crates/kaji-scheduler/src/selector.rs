//! Label selectors compiled for the scheduler's plugins (merged selectors, matchLabelKeys), as
//! upstream's `labels.Selector`; node selector terms are kaji-runtime's.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use std::collections::BTreeMap;

pub type Labels = BTreeMap<String, String>;

/// A compiled `metav1.LabelSelector`. A missing selector matches nothing, an empty one everything.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    nothing: bool,
    match_labels: Vec<(String, String)>,
    exprs: Vec<LabelSelectorRequirement>,
}

impl Selector {
    pub fn new(sel: Option<&LabelSelector>) -> Selector {
        let Some(sel) = sel else {
            return Selector {
                nothing: true,
                ..Selector::default()
            };
        };
        Selector {
            nothing: false,
            match_labels: sel
                .match_labels
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            exprs: sel.match_expressions.clone().unwrap_or_default(),
        }
    }

    /// A selector from plain `key=value` pairs (a Service's selector); empty matches nothing here,
    /// as upstream's default spreading ignores selector-less services.
    pub fn from_map(m: &BTreeMap<String, String>) -> Selector {
        Selector {
            nothing: m.is_empty(),
            match_labels: m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            exprs: Vec::new(),
        }
    }

    /// Adds `key in (values)` requirements (matchLabelKeys, merged selectors).
    pub fn and_label(&mut self, key: &str, value: &str) {
        self.match_labels.push((key.to_string(), value.to_string()));
    }

    pub fn merge(&mut self, other: &Selector) {
        self.nothing |= other.nothing;
        self.match_labels.extend(other.match_labels.iter().cloned());
        self.exprs.extend(other.exprs.iter().cloned());
    }

    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        if self.nothing {
            return false;
        }
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.exprs.iter().all(|e| {
                let vals = e.values.as_deref().unwrap_or_default();
                match e.operator.as_str() {
                    "In" => labels.get(&e.key).is_some_and(|v| vals.contains(v)),
                    "NotIn" => labels.get(&e.key).is_none_or(|v| !vals.contains(v)),
                    "Exists" => labels.contains_key(&e.key),
                    "DoesNotExist" => !labels.contains_key(&e.key),
                    _ => false,
                }
            })
    }
}

pub use kaji_runtime::selector::node_selector_term_matches;

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSelectorTerm;
    use serde_json::json;

    #[test]
    fn selectors() {
        let labels: Labels = [
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "1".to_string()),
        ]
        .into();
        let s: LabelSelector = serde_json::from_value(json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["1", "2"]}]})).unwrap();
        assert!(Selector::new(Some(&s)).matches(&labels));
        assert!(!Selector::new(None).matches(&labels));
        assert!(Selector::new(Some(&LabelSelector::default())).matches(&labels));
        let t: NodeSelectorTerm = serde_json::from_value(
            json!({"matchExpressions": [{"key": "tier", "operator": "Gt", "values": ["0"]}]}),
        )
        .unwrap();
        assert!(node_selector_term_matches(&t, &labels, "n"));
        let f: NodeSelectorTerm = serde_json::from_value(
            json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]}),
        )
        .unwrap();
        assert!(node_selector_term_matches(&f, &labels, "n"));
        assert!(!node_selector_term_matches(&f, &labels, "m"));
    }
}
