//! A pod's containers and their requests and limits, in upstream's exact units (millicores and
//! bytes, as `kaji_api::quantity` computes them), shared by `pods/` and `volumes/`: the
//! translation to Linux cgroup settings as upstream's `generateLinuxContainerResources` (cpu
//! shares from the request, CFS quota from the limit, memory limit in bytes), and the pod's QoS
//! class (`kaji_api::qos`, the one the API server uses).

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kaji_api::quantity::{milli_value, value};
use std::collections::BTreeMap;

/// A container of the pod (app, init or ephemeral) by name.
pub fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

/// Amounts of the resources the kubelet reads: cpu in millicores, the others in bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Amounts {
    pub cpu_milli: Option<i128>,
    pub memory: Option<i128>,
    pub ephemeral_storage: Option<i128>,
}

impl Amounts {
    /// The amounts in a requests or limits map.
    pub fn of(m: Option<&BTreeMap<String, Quantity>>) -> Amounts {
        let get = |k: &str| m.and_then(|m| m.get(k)).map(|q| q.0.as_str());
        Amounts {
            cpu_milli: get("cpu").and_then(milli_value),
            memory: get("memory").and_then(value),
            ephemeral_storage: get("ephemeral-storage").and_then(value),
        }
    }
}

/// (limits, requests) of a container; a request not given defaults to the limit, as the API's
/// defaulting does.
pub fn amounts(c: &Container) -> (Amounts, Amounts) {
    let r = c.resources.as_ref();
    let limits = Amounts::of(r.and_then(|r| r.limits.as_ref()));
    let q = Amounts::of(r.and_then(|r| r.requests.as_ref()));
    let requests = Amounts {
        cpu_milli: q.cpu_milli.or(limits.cpu_milli),
        memory: q.memory.or(limits.memory),
        ephemeral_storage: q.ephemeral_storage.or(limits.ephemeral_storage),
    };
    (limits, requests)
}

/// CRI Linux resources for a container.
pub fn linux_resources(c: &Container) -> k8s_cri::v1::LinuxContainerResources {
    let (limits, requests) = amounts(c);
    const PERIOD: i64 = 100_000;
    let as_i64 = |v: i128| i64::try_from(v).unwrap_or(i64::MAX);
    // Upstream: shares = milliCPU * 1024 / 1000, at least 2 (the kernel's minimum).
    let shares = requests
        .cpu_milli
        .map_or(2, |m| (as_i64(m).saturating_mul(1024) / 1000).max(2));
    let quota = limits
        .cpu_milli
        .map_or(0, |m| (as_i64(m).saturating_mul(PERIOD) / 1000).max(1000));
    k8s_cri::v1::LinuxContainerResources {
        cpu_period: if quota > 0 { PERIOD } else { 0 },
        cpu_quota: quota,
        cpu_shares: shares,
        memory_limit_in_bytes: limits.memory.map_or(0, as_i64),
        ..Default::default()
    }
}

/// The pod's QoS class (Guaranteed, Burstable, BestEffort), as upstream's GetPodQOS.
pub fn qos_class(pod: &Pod) -> &'static str {
    let spec = pod.spec.as_ref().and_then(|s| serde_json::to_value(s).ok());
    kaji_api::qos::qos_class(spec.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn container(resources: serde_json::Value) -> Container {
        serde_json::from_value(serde_json::json!({"name": "c", "resources": resources})).unwrap()
    }

    /// The cgroup values upstream's generateLinuxContainerResources gives.
    #[test]
    fn cgroup_settings_from_requests_and_limits() {
        use serde_json::json;
        let r = linux_resources(&container(json!({
            "requests": {"cpu": "100m"}, "limits": {"cpu": "250m", "memory": "64Mi"}})));
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.cpu_period),
            (102, 25_000, 100_000)
        );
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
        // A limit alone is also the request; tiny limits get the minimum quota.
        let r = linux_resources(&container(json!({"limits": {"cpu": "1m", "memory": "1G"}})));
        assert_eq!((r.cpu_shares, r.cpu_quota), (2, 1000));
        assert_eq!(r.memory_limit_in_bytes, 1_000_000_000);
        let r = linux_resources(&container(json!({"requests": {"cpu": "1.5"}})));
        assert_eq!((r.cpu_shares, r.cpu_quota, r.cpu_period), (1536, 0, 0));
        let r = linux_resources(&container(json!({})));
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes),
            (2, 0, 0)
        );
        let (limits, requests) = amounts(&container(json!({
            "requests": {"memory": "32Mi"}, "limits": {"cpu": "1250m", "memory": "64Mi",
            "ephemeral-storage": "1Gi"}})));
        assert_eq!(
            limits,
            Amounts {
                cpu_milli: Some(1250),
                memory: Some(64 << 20),
                ephemeral_storage: Some(1 << 30)
            }
        );
        assert_eq!(
            requests,
            Amounts {
                cpu_milli: Some(1250),
                memory: Some(32 << 20),
                ephemeral_storage: Some(1 << 30)
            }
        );
    }
}
