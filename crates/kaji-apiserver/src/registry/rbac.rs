//! rbac.authorization.k8s.io/v1: stored now, enforced by a later authorizer. RBAC names are path
//! segments (colons allowed: `system:controller:foo`), not DNS names.

use super::{Strategy, info};
use kaji_api::{ResourceInfo, validation};
use std::sync::Arc;

struct Rbac(ResourceInfo);

impl Strategy for Rbac {
    fn info(&self) -> &ResourceInfo {
        &self.0
    }
    fn validate_name(&self, name: &str) -> Vec<String> {
        validation::path_segment_name(name)
    }
}

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    const G: &str = "rbac.authorization.k8s.io";
    all.push(Arc::new(Rbac(info(G, "v1", "Role", "roles", "role", true, &[], &[]))));
    all.push(Arc::new(Rbac(info(G, "v1", "RoleBinding", "rolebindings", "rolebinding", true, &[], &[]))));
    all.push(Arc::new(Rbac(info(G, "v1", "ClusterRole", "clusterroles", "clusterrole", false, &[], &[]))));
    all.push(Arc::new(Rbac(info(G, "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", false, &[], &[]))));
}
