//! The QoS class of a pod (upstream `GetPodQOS`), the one function the API server, the kubelet
//! and the scheduler share.

use serde_json::Value;

/// Guaranteed when every container has equal cpu and memory requests and limits, BestEffort when
/// none has any, Burstable otherwise (upstream GetPodQOS).
pub fn qos_class(spec: Option<&Value>) -> &'static str {
    // Upstream's GetPodQOS: requests and limits of cpu and memory summed over all containers,
    // zero amounts ignored; Guaranteed needs cpu and memory limits on every container and the
    // sums of requests equal to those of limits (a request not given is its limit, as defaulting
    // makes it); nothing requested or limited is BestEffort.
    use crate::quantity::scaled;
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec.and_then(|s| s.get(*k)).and_then(Value::as_array))
        .flatten()
        .collect();
    let amount = |m: Option<&serde_json::Map<String, Value>>, r: &str| {
        let scale = if r == "cpu" { 1000 } else { 1 };
        m.and_then(|m| m.get(r))
            .and_then(Value::as_str)
            .and_then(|q| scaled(q, scale))
            .filter(|v| *v != 0)
    };
    let (mut requests, mut limits) = ([0i128; 2], [0i128; 2]);
    let (mut any, mut guaranteed) = (false, true);
    for c in &containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        for (i, r) in ["cpu", "memory"].into_iter().enumerate() {
            let l = amount(lim, r);
            // A request not given is its limit (defaulting); one given as zero counts as none.
            let given = req.is_some_and(|m| m.contains_key(r));
            let q = if given { amount(req, r) } else { l };
            any |= l.is_some() || q.is_some();
            requests[i] += q.unwrap_or(0);
            match l {
                Some(l) => limits[i] += l,
                None => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed && requests == limits {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::qos_class;
    use serde_json::json;

    fn spec(containers: serde_json::Value) -> serde_json::Value {
        json!({"containers": containers})
    }

    #[test]
    fn qos_classes_as_upstream() {
        let res = |r: serde_json::Value| json!({"name": "c", "resources": r});
        assert_eq!(qos_class(Some(&spec(json!([{"name": "c"}])))), "BestEffort");
        // Zero amounts count as none.
        assert_eq!(
            qos_class(Some(&spec(json!([res(json!({"requests": {"cpu": "0"}}))])))),
            "BestEffort"
        );
        // Equal amounts in other spellings are equal.
        let g = res(
            json!({"requests": {"cpu": "0.25", "memory": "64Mi"}, "limits": {"cpu": "250m", "memory": "67108864"}}),
        );
        assert_eq!(qos_class(Some(&spec(json!([g])))), "Guaranteed");
        // Limits alone: requests default to them.
        let l = res(json!({"limits": {"cpu": "1", "memory": "1Gi"}}));
        assert_eq!(qos_class(Some(&spec(json!([l.clone()])))), "Guaranteed");
        // An explicit zero request is not replaced by the limit: Burstable, as upstream.
        let z = res(json!({"requests": {"cpu": "0"}, "limits": {"cpu": "1", "memory": "1Gi"}}));
        assert_eq!(qos_class(Some(&spec(json!([z])))), "Burstable");
        // One container without a memory limit makes the pod Burstable.
        let b = res(json!({"limits": {"cpu": "1"}}));
        assert_eq!(qos_class(Some(&spec(json!([l, b])))), "Burstable");
    }
}
