//! Kubernetes' storage key layout: what `etcdctl get --prefix /registry --keys-only` shows on a
//! kubeadm cluster, `/registry/<resource>/[<namespace>/]<name>`, one storage version per kind
//! (the version is not in the key).
//!
//! What upstream does (kubernetes 1.20 source, unchanged through 1.33):
//! - kube-apiserver's storage factory (`pkg/kubeapiserver/default_storage_factory_builder.go`,
//!   `apiserver/pkg/server/storage/storage_factory.go` `ResourcePrefix`): the lower-cased
//!   resource, without its group, except `SpecialDefaultResourcePrefixes`:
//!   replicationcontrollers -> `controllers`, endpoints -> `services/endpoints`, nodes ->
//!   `minions`, services -> `services/specs`, ingresses (networking.k8s.io and extensions) ->
//!   `ingress`, podsecuritypolicies -> `podsecuritypolicy`.
//! - Cohabiting resources share one storage: core and events.k8s.io Events (`events`),
//!   apps and extensions deployments/daemonsets/replicasets, networking and extensions
//!   ingresses/networkpolicies. Kaji stores events.k8s.io Events as core Events, HPA
//!   autoscaling/v1 as v2 and batch/v1beta1 CronJobs as v1 (`Strategy::storage_info`), so each
//!   has one key whatever the version it is served in.
//! - apiextensions-apiserver and kube-aggregator use the generic `SimpleRestOptionsFactory`:
//!   `<group>/<resource>`, so CRDs are under `/registry/apiextensions.k8s.io/customresourcedefinitions/`,
//!   APIServices under `/registry/apiregistration.k8s.io/apiservices/`, and custom resources
//!   under `/registry/<group>/<plural>/` (a CRD's group has a dot, a built-in plural none, so
//!   the two never meet).
//! - metrics.k8s.io is not stored upstream (metrics-server serves it); Kaji's kinds of it read
//!   other kinds' keys and are given `<group>/<resource>` so they could never collide with core
//!   pods and nodes.
//!
//! Before this layout Kaji used `/registry/<group|core>/<version>/<plural>/...`
//! ([`legacy_prefix`]); `crate::migrate` moves such keys at start.

use kaji_api::ResourceInfo;

/// Where every object lives.
pub const ROOT: &str = "/registry/";

/// Groups whose kinds are stored as `<group>/<resource>` (served by upstream's generic storage
/// factory, or not stored at all).
const QUALIFIED_GROUPS: &[&str] = &[
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "metrics.k8s.io",
];

/// The key root of a built-in resource: `/registry/<root>/`, always ending in '/'.
pub fn resource_prefix(group: &str, plural: &str) -> String {
    let special = match (group, plural) {
        ("", "replicationcontrollers") => Some("controllers"),
        ("", "endpoints") => Some("services/endpoints"),
        ("", "nodes") => Some("minions"),
        ("", "services") => Some("services/specs"),
        ("networking.k8s.io" | "extensions", "ingresses") => Some("ingress"),
        ("policy" | "extensions", "podsecuritypolicies") => Some("podsecuritypolicy"),
        _ => None,
    };
    match special {
        Some(root) => format!("{ROOT}{root}/"),
        None if QUALIFIED_GROUPS.contains(&group) => custom_resource_prefix(group, plural),
        None => format!("{ROOT}{plural}/"),
    }
}

/// The key root of a custom resource: `/registry/<group>/<plural>/`.
pub fn custom_resource_prefix(group: &str, plural: &str) -> String {
    format!("{ROOT}{group}/{plural}/")
}

/// The listing prefix of a built-in kind (pass its storage description), in one namespace or in
/// all of them. Always ends with '/'.
pub fn prefix(info: &ResourceInfo, namespace: Option<&str>) -> String {
    let mut p = resource_prefix(info.group, info.plural);
    if let Some(ns) = namespace.filter(|_| info.namespaced) {
        p.push_str(ns);
        p.push('/');
    }
    p
}

/// The key of one object of a built-in kind.
pub fn key(info: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    let mut k = prefix(info, namespace);
    k.push_str(name);
    k
}

/// Kaji's layout before Kubernetes': `/registry/<group|core>/<version>/<plural>/` (of the
/// storage version), for the migration.
pub fn legacy_prefix(info: &ResourceInfo) -> String {
    let group = if info.group.is_empty() {
        "core"
    } else {
        info.group
    };
    format!("{ROOT}{group}/{}/{}/", info.version, info.plural)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    fn stored_prefix(group: &str, version: &str, plural: &str) -> String {
        Registry::builtin()
            .get(group, version, plural)
            .expect("a built-in kind")
            .prefix(None)
    }

    #[test]
    fn upstream_layout_of_builtin_kinds() {
        for (group, version, plural, want) in [
            ("", "v1", "namespaces", "/registry/namespaces/"),
            ("", "v1", "pods", "/registry/pods/"),
            ("", "v1", "services", "/registry/services/specs/"),
            ("", "v1", "endpoints", "/registry/services/endpoints/"),
            ("", "v1", "nodes", "/registry/minions/"),
            ("", "v1", "replicationcontrollers", "/registry/controllers/"),
            ("", "v1", "events", "/registry/events/"),
            ("events.k8s.io", "v1", "events", "/registry/events/"),
            ("apps", "v1", "deployments", "/registry/deployments/"),
            (
                "autoscaling",
                "v1",
                "horizontalpodautoscalers",
                "/registry/horizontalpodautoscalers/",
            ),
            (
                "autoscaling",
                "v2",
                "horizontalpodautoscalers",
                "/registry/horizontalpodautoscalers/",
            ),
            ("batch", "v1beta1", "cronjobs", "/registry/cronjobs/"),
            ("networking.k8s.io", "v1", "ingresses", "/registry/ingress/"),
            (
                "rbac.authorization.k8s.io",
                "v1",
                "clusterroles",
                "/registry/clusterroles/",
            ),
            ("coordination.k8s.io", "v1", "leases", "/registry/leases/"),
            (
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                "/registry/apiextensions.k8s.io/customresourcedefinitions/",
            ),
            (
                "apiregistration.k8s.io",
                "v1",
                "apiservices",
                "/registry/apiregistration.k8s.io/apiservices/",
            ),
        ] {
            assert_eq!(
                stored_prefix(group, version, plural),
                want,
                "{group}/{version} {plural}"
            );
        }
        let pods = Registry::builtin().get("", "v1", "pods").unwrap();
        assert_eq!(
            pods.key(Some("default"), "nginx"),
            "/registry/pods/default/nginx"
        );
        let nodes = Registry::builtin().get("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(Some("ignored"), "n1"), "/registry/minions/n1");
    }

    /// Two kinds share a key root only when they share storage (same storage description), and
    /// no root is inside another's.
    #[test]
    fn roots_are_distinct() {
        let registry = Registry::builtin();
        let mut roots: Vec<(String, String)> = Vec::new();
        for s in registry.builtin_kinds() {
            let stored = s.storage_info().unwrap_or_else(|| s.info());
            let who = format!("{}/{}/{}", stored.group, stored.version, stored.plural);
            roots.push((s.prefix(None), who));
        }
        for (a, who_a) in &roots {
            assert!(a.starts_with(ROOT) && a.ends_with('/'), "{a}");
            assert!(!a.starts_with("/registry/core/"), "{a}");
            for (b, who_b) in &roots {
                if who_a != who_b {
                    assert!(
                        !b.starts_with(a.as_str()),
                        "{who_a} at {a} and {who_b} at {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn legacy_layout() {
        let registry = Registry::builtin();
        let pods = registry.get("", "v1", "pods").unwrap();
        assert_eq!(legacy_prefix(pods.info()), "/registry/core/v1/pods/");
        let deployments = registry.get("apps", "v1", "deployments").unwrap();
        assert_eq!(
            legacy_prefix(deployments.info()),
            "/registry/apps/v1/deployments/"
        );
    }
}
