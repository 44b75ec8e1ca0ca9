//! The core ("legacy") group, served under `/api/v1`.

mod event;
mod limitrange;
pub mod namespace;
mod node;
mod persistentvolume;
mod persistentvolumeclaim;
pub mod pod;
mod replicationcontroller;
mod resourcequota;
mod secret;
mod service;
pub mod serviceaccount_token;

pub use event::INFO as EVENT_INFO;
pub use namespace::INFO as NAMESPACE_INFO;

use super::{Plain, Strategy, info};
use std::sync::Arc;

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    all.push(Arc::new(pod::PodStrategy));
    all.push(Arc::new(service::ServiceStrategy));
    all.push(Arc::new(namespace::NamespaceStrategy));
    all.push(Arc::new(node::NodeStrategy));
    all.push(Arc::new(event::EventStrategy));
    all.push(Arc::new(secret::SecretStrategy));
    all.push(Arc::new(replicationcontroller::ReplicationControllerStrategy));
    all.push(Arc::new(Plain { info: info("", "v1", "ConfigMap", "configmaps", "configmap", true, &["cm"], &[]), status: false, generation: false }));
    all.push(Arc::new(Endpoints));
    all.push(Arc::new(Plain { info: info("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true, &["sa"], &["token"]), status: false, generation: false }));
    all.push(Arc::new(persistentvolume::PersistentVolumeStrategy));
    all.push(Arc::new(persistentvolumeclaim::PersistentVolumeClaimStrategy));
    all.push(Arc::new(limitrange::LimitRangeStrategy));
    all.push(Arc::new(resourcequota::ResourceQuotaStrategy));
    all.push(Arc::new(PodTemplate));
}

/// Endpoints may be created by an update (upstream AllowCreateOnUpdate), as the endpoints controller does.
struct Endpoints;
static ENDPOINTS: kaji_api::ResourceInfo = info("", "v1", "Endpoints", "endpoints", "endpoints", true, &["ep"], &[]);
impl Strategy for Endpoints {
    fn info(&self) -> &kaji_api::ResourceInfo {
        &ENDPOINTS
    }
    fn allow_create_on_update(&self) -> bool {
        true
    }
}

struct PodTemplate;
static PODTEMPLATES: kaji_api::ResourceInfo = info("", "v1", "PodTemplate", "podtemplates", "podtemplate", true, &[], &[]);
impl Strategy for PodTemplate {
    fn info(&self) -> &kaji_api::ResourceInfo {
        &PODTEMPLATES
    }
    fn default(&self, obj: &mut serde_json::Value) {
        super::podspec::default_template(obj);
    }
    fn validate(&self, obj: &serde_json::Value) -> Vec<kaji_api::FieldError> {
        super::podspec::validate_pod_spec(obj.pointer("/template/spec"), "template.spec")
    }
}
