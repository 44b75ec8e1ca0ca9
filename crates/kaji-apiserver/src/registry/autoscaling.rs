//! autoscaling/v1 and v2 HorizontalPodAutoscalers (stored per version for now).

use super::{Plain, Strategy, info};
use std::sync::Arc;

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    all.push(Arc::new(Plain {
        info: kaji_api::ResourceInfo { categories: &["all"], ..info("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", true, &["hpa"], &["status"]) },
        status: true,
        generation: false,
    }));
    all.push(Arc::new(Plain {
        info: kaji_api::ResourceInfo { categories: &["all"], ..info("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", true, &["hpa"], &["status"]) },
        status: true,
        generation: false,
    }));
}
