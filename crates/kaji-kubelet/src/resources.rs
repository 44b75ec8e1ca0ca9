//! Requests and limits: quantities, and their translation to Linux cgroup settings as upstream's
//! `generateLinuxContainerResources` (cpu shares from the request, CFS quota from the limit,
//! memory limit in bytes), and the pod's QoS class.

use k8s_openapi::api::core::v1::{Container, Pod};

/// Parses a Kubernetes quantity ("100m", "1.5", "64Mi", "1G", "1e3") to base units.
pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let idx = s
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(idx);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    Some(n * mult)
}

#[derive(Default, Debug, Clone, Copy)]
pub struct Amounts {
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    pub ephemeral_storage: Option<f64>,
}

/// (limits, requests) of a container; a request defaults to the limit, as API defaulting does.
pub fn resource_limits(c: &Container) -> (Amounts, Amounts) {
    let get =
        |m: Option<
            &std::collections::BTreeMap<
                String,
                k8s_openapi::apimachinery::pkg::api::resource::Quantity,
            >,
        >,
         k: &str| { m.and_then(|m| m.get(k)).and_then(|q| parse_quantity(&q.0)) };
    let r = c.resources.as_ref();
    let limits = r.and_then(|r| r.limits.as_ref());
    let requests = r.and_then(|r| r.requests.as_ref());
    let l = Amounts {
        cpu: get(limits, "cpu"),
        memory: get(limits, "memory"),
        ephemeral_storage: get(limits, "ephemeral-storage"),
    };
    let q = Amounts {
        cpu: get(requests, "cpu").or(l.cpu),
        memory: get(requests, "memory").or(l.memory),
        ephemeral_storage: get(requests, "ephemeral-storage").or(l.ephemeral_storage),
    };
    (l, q)
}

/// CRI Linux resources for a container.
pub fn linux_resources(c: &Container) -> k8s_cri::v1::LinuxContainerResources {
    let (limits, requests) = resource_limits(c);
    const PERIOD: i64 = 100_000;
    // Upstream: shares = milliCPU * 1024 / 1000, at least 2 (the kernel's minimum).
    let shares = requests.cpu.map_or(2, |cpu| {
        ((cpu * 1000.0).round() as i64 * 1024 / 1000).max(2)
    });
    let quota = limits.cpu.map_or(0, |cpu| {
        ((cpu * 1000.0).round() as i64 * PERIOD / 1000).max(1000)
    });
    k8s_cri::v1::LinuxContainerResources {
        cpu_period: if quota > 0 { PERIOD } else { 0 },
        cpu_quota: quota,
        cpu_shares: shares,
        memory_limit_in_bytes: limits.memory.map_or(0, |m| m as i64),
        ..Default::default()
    }
}

/// The pod's QoS class (Guaranteed, Burstable, BestEffort), as upstream's GetPodQOS: only
/// positive CPU and memory amounts count; Guaranteed needs CPU and memory limits on every
/// container (init containers included) and the pod's summed requests equal to its limits.
pub fn qos_class(pod: &Pod) -> &'static str {
    let containers = pod.spec.iter().flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
    });
    let positive = |v: Option<f64>| v.filter(|v| *v > 0.0);
    let add = |sum: &mut Option<f64>, v: Option<f64>| {
        if let Some(v) = positive(v) {
            *sum = Some(sum.unwrap_or(0.0) + v);
        }
    };
    let (mut requests, mut limits) = (Amounts::default(), Amounts::default());
    let mut guaranteed = true;
    for c in containers {
        let (l, r) = resource_limits(c);
        add(&mut requests.cpu, r.cpu);
        add(&mut requests.memory, r.memory);
        add(&mut limits.cpu, l.cpu);
        add(&mut limits.memory, l.memory);
        if positive(l.cpu).is_none() || positive(l.memory).is_none() {
            guaranteed = false;
        }
    }
    let none = |a: &Amounts| a.cpu.is_none() && a.memory.is_none();
    // Sums of decimal quantities in floating point: equal up to rounding.
    let same = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()),
        (None, None) => true,
        _ => false,
    };
    if none(&requests) && none(&limits) {
        "BestEffort"
    } else if guaranteed && same(requests.cpu, limits.cpu) && same(requests.memory, limits.memory) {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("100m"), Some(0.1));
        assert_eq!(parse_quantity("64Mi"), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
    }

    fn pod(resources: &[serde_json::Value]) -> Pod {
        let containers: Vec<serde_json::Value> = resources
            .iter()
            .enumerate()
            .map(|(i, r)| serde_json::json!({"name": format!("c{i}"), "resources": r}))
            .collect();
        serde_json::from_value(serde_json::json!({"spec": {"containers": containers}})).unwrap()
    }

    #[test]
    fn qos_classes_as_upstream() {
        use serde_json::json;
        let g = json!({"limits": {"cpu": "250m", "memory": "64Mi"}});
        assert_eq!(qos_class(&pod(std::slice::from_ref(&g))), "Guaranteed");
        assert_eq!(qos_class(&pod(&[g.clone(), g.clone()])), "Guaranteed");
        let a = json!({"requests": {"cpu": "100m", "memory": "1Mi"}, "limits": {"cpu": "0.1", "memory": "1Mi"}});
        let b = json!({"requests": {"cpu": "200m", "memory": "1Mi"}, "limits": {"cpu": "0.2", "memory": "1Mi"}});
        assert_eq!(qos_class(&pod(&[a, b])), "Guaranteed");
        // Requests that equal the limits, spelled differently.
        let same = json!({"requests": {"cpu": "0.25", "memory": "67108864"},
                          "limits": {"cpu": "250m", "memory": "64Mi"}});
        assert_eq!(qos_class(&pod(&[same])), "Guaranteed");
        assert_eq!(
            qos_class(&pod(&[json!({"limits": {"memory": "64Mi"}})])),
            "Burstable"
        );
        assert_eq!(qos_class(&pod(&[g, json!({})])), "Burstable");
        let less = json!({"requests": {"cpu": "100m", "memory": "64Mi"},
                          "limits": {"cpu": "250m", "memory": "64Mi"}});
        assert_eq!(qos_class(&pod(&[less])), "Burstable");
        assert_eq!(qos_class(&pod(&[json!({})])), "BestEffort");
        // Zero amounts do not count.
        assert_eq!(
            qos_class(&pod(&[json!({"requests": {"cpu": "0"}})])),
            "BestEffort"
        );
    }
}
