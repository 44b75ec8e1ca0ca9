//! The scheduler's in-memory view of the cluster (upstream `internal/cache`): one [`NodeInfo`]
//! per node with the pods bound or *assumed* to it and their summed requests, kept current from
//! watch events. A pod is assumed on its node the moment the scheduler picks it, before the
//! binding reaches the API server, so a burst of pods cannot overcommit a node.

use crate::resources::{Resource, pod_requests};
use crate::selector::{Labels, Selector};
use indexmap::IndexMap;
use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm, Taint};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// A required or preferred (anti-)affinity term, compiled.
#[derive(Clone, Debug)]
pub struct AffinityTerm {
    pub selector: Selector,
    pub namespaces: BTreeSet<String>,
    /// `namespaceSelector: {}` selects every namespace.
    pub all_namespaces: bool,
    pub topology_key: String,
}

impl AffinityTerm {
    fn new(t: &PodAffinityTerm, pod_ns: &str) -> AffinityTerm {
        let mut namespaces: BTreeSet<String> = t.namespaces.iter().flatten().cloned().collect();
        let all_namespaces = t.namespace_selector.as_ref().is_some_and(|s| {
            s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
        });
        if namespaces.is_empty() && t.namespace_selector.is_none() {
            namespaces.insert(pod_ns.to_string());
        }
        let selector = Selector::new(t.label_selector.as_ref());
        AffinityTerm {
            selector,
            namespaces,
            all_namespaces,
            topology_key: t.topology_key.clone(),
        }
    }

    /// Whether `pod` (in the term's namespaces, with matching labels) is selected by this term.
    pub fn matches(&self, pod: &PodInfo) -> bool {
        (self.all_namespaces || self.namespaces.contains(&pod.namespace))
            && self.selector.matches(&pod.labels)
    }
}

/// A `hostPort` a container asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Two host ports clash when protocol and port agree and either address is the wildcard.
    pub fn conflicts(&self, o: &HostPort) -> bool {
        let wild = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
        self.port == o.port
            && self.protocol == o.protocol
            && (self.ip == o.ip || wild(&self.ip) || wild(&o.ip))
    }
}

/// A pod with everything the plugins need computed once.
#[derive(Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub priority: i32,
    pub requests: Resource,
    /// cpu and memory with container defaults, for scoring.
    pub non_zero: (i64, i64),
    pub host_ports: Vec<HostPort>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<(i32, AffinityTerm)>,
    pub preferred_anti_affinity: Vec<(i32, AffinityTerm)>,
    pub terminating: bool,
}

impl PodInfo {
    /// `priority` is `spec.priority` as admission set it (or the PriorityClass's value).
    pub fn new(pod: Arc<Pod>, priority: i32) -> PodInfo {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_default();
        let (requests, non_zero) = pod_requests(&pod);
        let spec = pod.spec.as_ref();
        let host_ports = spec
            .into_iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.is_some_and(|hp| hp > 0))
            .map(|p| HostPort {
                ip: p.host_ip.clone().unwrap_or_default(),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port: p.host_port.unwrap_or(0),
            })
            .collect();
        let aff = spec.and_then(|s| s.affinity.as_ref());
        let pa = aff.and_then(|a| a.pod_affinity.as_ref());
        let paa = aff.and_then(|a| a.pod_anti_affinity.as_ref());
        let req = |terms: Option<&Vec<PodAffinityTerm>>| {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::new(t, &namespace))
                .collect::<Vec<_>>()
        };
        let required_affinity = req(pa.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let required_anti_affinity = req(paa.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let preferred_affinity = pa
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .map(|w| {
                (
                    w.weight,
                    AffinityTerm::new(&w.pod_affinity_term, &namespace),
                )
            })
            .collect();
        let preferred_anti_affinity = paa
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .map(|w| {
                (
                    w.weight,
                    AffinityTerm::new(&w.pod_affinity_term, &namespace),
                )
            })
            .collect();
        PodInfo {
            uid: meta.uid.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            terminating: meta.deletion_timestamp.is_some(),
            namespace,
            priority,
            requests,
            non_zero,
            host_ports,
            required_affinity,
            required_anti_affinity,
            preferred_affinity,
            preferred_anti_affinity,
            pod,
        }
    }

    pub fn has_affinity(&self) -> bool {
        !(self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty())
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A node and what is placed on it.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    pub name: String,
    pub node: Option<Arc<Node>>,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resource,
    pub requested: Resource,
    pub non_zero_requested: (i64, i64),
    pub pods: Vec<Arc<PodInfo>>,
    pub pods_with_affinity: usize,
    pub pods_with_required_anti_affinity: usize,
    pub used_ports: Vec<HostPort>,
    /// Image name (normalised, with tag) -> size in bytes.
    pub images: HashMap<String, i64>,
}

/// `nginx` means `nginx:latest` (upstream `normalizedImageName`).
pub fn normalized_image_name(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || last.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

impl NodeInfo {
    fn set_node(&mut self, node: Arc<Node>) {
        self.name = node.metadata.name.clone().unwrap_or_default();
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let status = node.status.as_ref();
        self.allocatable = Resource::from_list(
            status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref())),
        );
        self.images.clear();
        for img in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for n in img.names.iter().flatten() {
                self.images
                    .insert(normalized_image_name(n), img.size_bytes.unwrap_or(0));
            }
        }
        self.node = Some(node);
    }

    pub fn add_pod(&mut self, p: Arc<PodInfo>) {
        self.requested.add(&p.requests);
        self.requested.allowed_pod_number += 1;
        self.non_zero_requested.0 += p.non_zero.0;
        self.non_zero_requested.1 += p.non_zero.1;
        if p.has_affinity() {
            self.pods_with_affinity += 1;
        }
        if !p.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.used_ports.extend(p.host_ports.iter().cloned());
        self.pods.push(p);
    }

    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| p.uid == uid)?;
        let p = self.pods.swap_remove(i);
        self.requested.sub(&p.requests);
        self.requested.allowed_pod_number -= 1;
        self.non_zero_requested.0 -= p.non_zero.0;
        self.non_zero_requested.1 -= p.non_zero.1;
        if p.has_affinity() {
            self.pods_with_affinity -= 1;
        }
        if !p.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
        for hp in &p.host_ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(j);
            }
        }
        Some(p)
    }
}

#[derive(Clone, Debug)]
struct PodState {
    node: String,
    assumed: bool,
}

/// Nodes with their pods, plus which pods are only assumed.
#[derive(Default)]
pub struct Cache {
    /// Every node, in the order it was added (the stable order of round-robin filtering), and
    /// entries without a Node that still hold pods (the node was deleted first). The scheduling
    /// cycle walks it by position: at 5,000 nodes a lookup by name per node was most of the
    /// cycle's time.
    nodes: IndexMap<String, NodeInfo>,
    /// How many entries of `nodes` have a Node.
    existing: usize,
    pods: HashMap<String, PodState>,
    /// Image -> how many nodes have it (for ImageLocality's spread factor).
    image_nodes: HashMap<String, usize>,
    /// Placed pods with required anti-affinity terms, over all nodes (upstream's
    /// `HavePodsWithRequiredAntiAffinityList`): while there is none, a pod without affinity
    /// terms need not look at any node in InterPodAffinity's PreFilter.
    pods_with_required_anti_affinity: usize,
}

impl Cache {
    /// How many nodes exist.
    pub fn node_count(&self) -> usize {
        self.existing
    }

    /// How many positions [`Cache::node_at`] takes (nodes, and entries of deleted nodes that
    /// still hold pods).
    pub fn slots(&self) -> usize {
        self.nodes.len()
    }

    /// The node at a position in the stable order, if one exists there.
    pub fn node_at(&self, slot: usize) -> Option<&NodeInfo> {
        self.nodes.get_index(slot).map(|(_, n)| n).filter(|n| n.node.is_some())
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name).filter(|n| n.node.is_some())
    }

    /// Every existing node, in the stable order.
    pub fn node_infos(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values().filter(|n| n.node.is_some())
    }

    /// Whether any placed pod has required anti-affinity terms.
    pub fn has_pods_with_required_anti_affinity(&self) -> bool {
        self.pods_with_required_anti_affinity > 0
    }

    pub fn image_node_count(&self, image: &str) -> usize {
        self.image_nodes.get(image).copied().unwrap_or(0)
    }

    /// Adds or updates a node; returns the previous Node object.
    pub fn set_node(&mut self, node: Arc<Node>) -> Option<Arc<Node>> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let info = self.nodes.entry(name.clone()).or_default();
        for img in info.images.keys() {
            if let Some(c) = self.image_nodes.get_mut(img) {
                *c = c.saturating_sub(1);
            }
        }
        let old = info.node.take();
        info.set_node(node);
        for img in info.images.keys() {
            *self.image_nodes.entry(img.clone()).or_default() += 1;
        }
        if old.is_none() {
            self.existing += 1;
        }
        old
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(info) = self.nodes.get_mut(name) {
            if info.node.is_some() {
                self.existing -= 1;
            }
            for img in info.images.keys() {
                if let Some(c) = self.image_nodes.get_mut(img) {
                    *c = c.saturating_sub(1);
                }
            }
            info.node = None;
            info.images.clear();
            if info.pods.is_empty() {
                self.nodes.shift_remove(name);
            }
        }
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|s| s.assumed)
    }

    pub fn contains_pod(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    fn place(&mut self, p: Arc<PodInfo>, node: &str, assumed: bool) {
        let uid = p.uid.clone();
        self.remove_pod(&uid);
        if !p.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.nodes
            .entry(node.to_string())
            .or_insert_with(|| NodeInfo {
                name: node.to_string(),
                ..NodeInfo::default()
            })
            .add_pod(p);
        self.pods.insert(
            uid,
            PodState {
                node: node.to_string(),
                assumed,
            },
        );
    }

    /// Records a pod the API server says is bound to `node` (confirming an assumed pod).
    pub fn add_bound_pod(&mut self, p: Arc<PodInfo>, node: &str) {
        self.place(p, node, false);
    }

    /// Places a pod the scheduler has just chosen a node for, ahead of the binding.
    pub fn assume_pod(&mut self, p: Arc<PodInfo>, node: &str) {
        self.place(p, node, true);
    }

    /// Undoes [`Cache::assume_pod`] when the binding failed.
    pub fn forget_pod(&mut self, uid: &str) {
        if self.is_assumed(uid) {
            self.remove_pod(uid);
        }
    }

    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let st = self.pods.remove(uid)?;
        let info = self.nodes.get_mut(&st.node)?;
        let p = info.remove_pod(uid);
        if p.as_ref()
            .is_some_and(|p| !p.required_anti_affinity.is_empty())
        {
            self.pods_with_required_anti_affinity -= 1;
        }
        if info.node.is_none() && info.pods.is_empty() {
            self.nodes.shift_remove(&st.node);
        }
        p
    }

    /// Node a pod is on (bound or assumed).
    pub fn pod_node(&self, uid: &str) -> Option<&str> {
        self.pods.get(uid).map(|s| s.node.as_str())
    }
}
