//! Typed `metav1.LabelSelector`s (as k8s-openapi's objects carry them) evaluated by the one
//! label-selector implementation, [`kaji_api::selector`], as upstream's
//! `metav1.LabelSelectorAsSelector` then `Selector.Matches`.

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
}
