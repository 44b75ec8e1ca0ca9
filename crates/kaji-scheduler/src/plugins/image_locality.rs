//! ImageLocality: prefers nodes that already have the pod's images, weighted by image size and
//! by how widely the image is spread (so one node with a popular image is not a magnet).

use crate::cache::{NodeInfo, PodInfo, normalized_image_name};
use crate::framework::{CycleState, MAX_NODE_SCORE, ScorePlugin, Snapshot};

pub struct ImageLocality;

const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

impl ScorePlugin for ImageLocality {
    fn name(&self) -> &'static str {
        "ImageLocality"
    }
    fn weight(&self) -> i64 {
        1
    }
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, snap: &Snapshot<'_>) -> i64 {
        let Some(spec) = pod.pod.spec.as_ref() else {
            return 0;
        };
        if node.images.is_empty() {
            return 0;
        }
        let total = i64::try_from(snap.cache.node_count().max(1)).unwrap_or(1);
        let containers: Vec<_> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .collect();
        let mut sum = 0i64;
        for c in &containers {
            let name = normalized_image_name(c.image.as_deref().unwrap_or(""));
            if let Some(size) = node.images.get(&name) {
                let spread = i64::try_from(snap.cache.image_node_count(&name)).unwrap_or(0);
                sum += size * spread / total;
            }
        }
        let max = MAX_CONTAINER_THRESHOLD * i64::try_from(containers.len().max(1)).unwrap_or(1);
        let sum = sum.clamp(MIN_THRESHOLD, max);
        MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
    }
}
