//! apiextensions.k8s.io/v1: CustomResourceDefinitions are stored now; serving their custom
//! resources is a later piece.

use super::{Plain, Strategy, info};
use std::sync::Arc;

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    all.push(Arc::new(Plain {
        info: kaji_api::ResourceInfo { categories: &["api-extensions"], ..info("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", "customresourcedefinition", false, &["crd", "crds"], &["status"]) },
        status: true,
        generation: true,
    }));
}
