//! Served resources as the API server describes them, for the tests of this crate.

use kaji_api::{ALL_VERBS, ResourceInfo};

const fn resource(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    verbs: &'static [&'static str],
    subresources: &'static [&'static str],
) -> ResourceInfo {
    ResourceInfo {
        group,
        version,
        kind,
        plural,
        singular: "",
        namespaced,
        short_names: &[],
        categories: &[],
        verbs,
        subresources,
    }
}

pub(crate) fn resources() -> Vec<ResourceInfo> {
    vec![
        resource(
            "",
            "v1",
            "Pod",
            "pods",
            true,
            ALL_VERBS,
            &[
                "status",
                "binding",
                "eviction",
                "log",
                "exec",
                "attach",
                "portforward",
                "proxy",
                "ephemeralcontainers",
                "resize",
            ],
        ),
        resource(
            "",
            "v1",
            "Namespace",
            "namespaces",
            false,
            ALL_VERBS,
            &["status", "finalize"],
        ),
        resource(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            true,
            ALL_VERBS,
            &["token"],
        ),
        resource("", "v1", "Binding", "bindings", true, &["create"], &[]),
        resource("", "v1", "ConfigMap", "configmaps", true, ALL_VERBS, &[]),
        resource(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            true,
            ALL_VERBS,
            &["status", "scale"],
        ),
        resource(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            true,
            ALL_VERBS,
            &["status", "scale"],
        ),
        resource(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
            ALL_VERBS,
            &[],
        ),
        resource(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            ALL_VERBS,
            &["status"],
        ),
        resource(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
            &["create"],
            &[],
        ),
    ]
}
