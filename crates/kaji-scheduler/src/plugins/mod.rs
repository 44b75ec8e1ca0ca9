//! The default plugins, one file each, named as upstream's (`pkg/scheduler/framework/plugins`).

pub mod balanced_allocation;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;
pub mod volume_binding;

use crate::framework::Framework;
use std::sync::Arc;
use volume_binding::{VolumeBinding, VolumeStores};

/// The default profile with no PersistentVolumeClaims in sight (benchmarks, tests).
pub fn default_framework() -> Framework {
    framework_with(Arc::new(VolumeBinding::new(VolumeStores::empty())))
}

/// The default profile: filters in upstream's order (the first that rejects a node names the
/// reason), scores with upstream's weights. Upstream's VolumeRestrictions and NodeVolumeLimits
/// (before VolumeBinding) and VolumeZone (after it) are not here.
pub fn framework_with(volume_binding: Arc<VolumeBinding>) -> Framework {
    Framework {
        filters: vec![
            Box::new(node_unschedulable::NodeUnschedulable),
            Box::new(node_name::NodeName),
            Box::new(taint_toleration::TaintToleration),
            Box::new(node_affinity::NodeAffinity),
            Box::new(node_ports::NodePorts),
            Box::new(node_resources_fit::NodeResourcesFit),
            Box::new(volume_binding),
            Box::new(pod_topology_spread::PodTopologySpread),
            Box::new(inter_pod_affinity::InterPodAffinity),
        ],
        scores: vec![
            Box::new(taint_toleration::TaintToleration),
            Box::new(node_affinity::NodeAffinity),
            Box::new(node_resources_fit::NodeResourcesFit),
            Box::new(pod_topology_spread::PodTopologySpread),
            Box::new(inter_pod_affinity::InterPodAffinity),
            Box::new(balanced_allocation::BalancedAllocation),
            Box::new(image_locality::ImageLocality),
        ],
    }
}
