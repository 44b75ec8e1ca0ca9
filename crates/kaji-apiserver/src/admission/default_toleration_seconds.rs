//! DefaultTolerationSeconds admission (upstream
//! `plugin/pkg/admission/defaulttolerationseconds`): pods ride out a NotReady or unreachable node
//! for a while (`--default-not-ready-toleration-seconds`, `--default-unreachable-toleration-seconds`,
//! 300 s each) before the node lifecycle controller evicts them, unless they tolerate those
//! taints themselves.

use crate::registry::Admission;
use serde_json::{Map, Value, json};

/// Adds the two NoExecute tolerations a pod spec does not already have.
pub fn admit(spec: &mut Map<String, Value>, cfg: &Admission) {
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else { return };
    for (key, secs) in [
        ("node.kubernetes.io/not-ready", cfg.default_not_ready_toleration_seconds),
        ("node.kubernetes.io/unreachable", cfg.default_unreachable_toleration_seconds),
    ] {
        let tolerated = list.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str);
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (k == Some(key) || (k.is_none_or(str::is_empty) && t.get("operator").and_then(Value::as_str) == Some("Exists")))
                && (effect.is_empty() || effect == "NoExecute")
        });
        if !tolerated {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": secs}));
        }
    }
}
