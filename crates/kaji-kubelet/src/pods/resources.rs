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

/// The pod's QoS class (Guaranteed, Burstable, BestEffort), as upstream's GetPodQOS.
pub fn qos_class(pod: &Pod) -> &'static str {
    let containers: Vec<&Container> = pod
        .spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let (l, r) = resource_limits(c);
        if r.cpu.is_some() || r.memory.is_some() || l.cpu.is_some() || l.memory.is_some() {
            any = true;
        }
        let eq = |a: Option<f64>, b: Option<f64>| matches!((a, b), (Some(x), Some(y)) if x == y);
        if !(eq(l.cpu, r.cpu) && eq(l.memory, r.memory)) {
            guaranteed = false;
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
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
}
