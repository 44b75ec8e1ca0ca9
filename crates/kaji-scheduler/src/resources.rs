//! Resource quantities and what a pod requests, counted as upstream's `noderesources` plugin
//! and `resourcehelper.PodRequests` do: `max(sum(containers) + sum(sidecars), max(init))`
//! plus the pod overhead.

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// What the scoring plugins assume a container without requests uses (upstream
/// `DefaultMilliCPURequest` / `DefaultMemoryRequest`), so that empty pods still spread.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// A quantity of the named resource in the unit the scheduler counts it in (cpu in millicores,
/// everything else in units; rounded up as upstream's `MilliValue`/`Value`, saturated to i64).
pub fn quantity_value(resource: &str, q: &Quantity) -> i64 {
    let scale = if resource == "cpu" { 1000 } else { 1 };
    kaji_api::quantity::scaled(&q.0, scale)
        .map_or(0, |v| v.clamp(i64::MIN.into(), i64::MAX.into()) as i64)
}

/// A set of resources (upstream `framework.Resource`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub allowed_pod_number: i64,
    /// Extended resources (`example.com/gpu`), hugepages, and anything else by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resource {
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resource {
        let mut r = Resource::default();
        for (name, q) in list.into_iter().flatten() {
            r.set(name, quantity_value(name, q));
        }
        r
    }

    pub fn get(&self, name: &str) -> i64 {
        match name {
            "cpu" => self.milli_cpu,
            "memory" => self.memory,
            "ephemeral-storage" => self.ephemeral_storage,
            "pods" => self.allowed_pod_number,
            other => self.scalar.get(other).copied().unwrap_or(0),
        }
    }

    pub fn set(&mut self, name: &str, v: i64) {
        match name {
            "cpu" => self.milli_cpu = v,
            "memory" => self.memory = v,
            "ephemeral-storage" => self.ephemeral_storage = v,
            "pods" => self.allowed_pod_number = v,
            other => {
                self.scalar.insert(other.to_string(), v);
            }
        }
    }

    pub fn add(&mut self, o: &Resource) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        self.allowed_pod_number += o.allowed_pod_number;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, o: &Resource) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        self.allowed_pod_number -= o.allowed_pod_number;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Per resource, the larger of the two.
    pub fn set_max(&mut self, o: &Resource) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

fn container_requests(c: &Container) -> Resource {
    Resource::from_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
}

/// cpu and memory a container is counted with when scoring: its requests, or the defaults.
fn container_non_zero(c: &Container) -> (i64, i64) {
    let req = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let cpu = req
        .and_then(|r| r.get("cpu"))
        .map_or(DEFAULT_MILLI_CPU_REQUEST, |q| quantity_value("cpu", q));
    let mem = req
        .and_then(|r| r.get("memory"))
        .map_or(DEFAULT_MEMORY_REQUEST, |q| quantity_value("memory", q));
    (cpu, mem)
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The pod's effective requests (upstream `PodRequests`): containers add up; each init
/// container runs alone, next to the sidecars started before it; the larger wins; plus overhead.
/// The second value is the non-zero cpu/memory used by the scoring plugins.
pub fn pod_requests(pod: &Pod) -> (Resource, (i64, i64)) {
    let Some(spec) = pod.spec.as_ref() else {
        return (Resource::default(), (0, 0));
    };
    let mut reqs = Resource::default();
    let (mut nz_cpu, mut nz_mem) = (0, 0);
    for c in &spec.containers {
        reqs.add(&container_requests(c));
        let (c1, m1) = container_non_zero(c);
        nz_cpu += c1;
        nz_mem += m1;
    }
    let mut sidecars = Resource::default();
    let mut init_max = Resource::default();
    let (mut init_nz_cpu, mut init_nz_mem) = (0, 0);
    let (mut side_nz_cpu, mut side_nz_mem) = (0, 0);
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        let (c1, m1) = container_non_zero(c);
        if is_sidecar(c) {
            sidecars.add(&r);
            side_nz_cpu += c1;
            side_nz_mem += m1;
            init_max.set_max(&sidecars);
            init_nz_cpu = init_nz_cpu.max(side_nz_cpu);
            init_nz_mem = init_nz_mem.max(side_nz_mem);
        } else {
            let mut with = sidecars.clone();
            with.add(&r);
            init_max.set_max(&with);
            init_nz_cpu = init_nz_cpu.max(side_nz_cpu + c1);
            init_nz_mem = init_nz_mem.max(side_nz_mem + m1);
        }
    }
    reqs.add(&sidecars);
    reqs.set_max(&init_max);
    nz_cpu = (nz_cpu + side_nz_cpu).max(init_nz_cpu);
    nz_mem = (nz_mem + side_nz_mem).max(init_nz_mem);
    if let Some(overhead) = spec.overhead.as_ref() {
        let o = Resource::from_list(Some(overhead));
        nz_cpu += o.milli_cpu;
        nz_mem += o.memory;
        reqs.add(&o);
    }
    (reqs, (nz_cpu, nz_mem))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        let q = |s: &str| Quantity(s.into());
        assert_eq!(quantity_value("cpu", &q("100m")), 100);
        assert_eq!(quantity_value("cpu", &q("0.1")), 100);
        assert_eq!(quantity_value("cpu", &q("2")), 2000);
        assert_eq!(quantity_value("cpu", &q("1u")), 1);
        assert_eq!(quantity_value("memory", &q("1.5Gi")), 3 << 29);
        assert_eq!(quantity_value("memory", &q("128M")), 128_000_000);
        assert_eq!(quantity_value("example.com/gpu", &q("1e3")), 1000);
        assert_eq!(quantity_value("memory", &q("abc")), 0);
        assert_eq!(quantity_value("memory", &q("100Ei")), i64::MAX);
    }

    #[test]
    fn init_containers_count_as_upstream() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
                    {"name": "b", "resources": {"requests": {"cpu": "500m"}}}
                ],
                "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2", "memory": "512Mi"}}}],
                "overhead": {"cpu": "100m"}
            }
        }))
        .unwrap();
        let (r, nz) = pod_requests(&pod);
        assert_eq!(r.milli_cpu, 2100);
        assert_eq!(r.memory, 1 << 30);
        assert_eq!(nz, (2100, (1 << 30) + DEFAULT_MEMORY_REQUEST));
    }
}
