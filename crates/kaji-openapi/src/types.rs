//! The built-in kinds the API server serves, each mapped to its k8s-openapi type. This list is the
//! one place to touch when Kaji starts serving another built-in kind: its schema, its List
//! schema and its `x-kubernetes-group-version-kind` follow from here.

use std::borrow::Cow;
use std::sync::OnceLock;

use k8s_openapi::Resource;
use k8s_openapi::api::{
    admissionregistration, apps, authentication, authorization, autoscaling, batch, certificates, coordination, core,
    discovery, events, networking, policy, rbac, scheduling, storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration;
use schemars::{JsonSchema, SchemaGenerator};

/// One built-in kind at one group/version.
#[derive(Clone, Copy, Debug)]
pub struct BuiltinKind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Upstream definition name, e.g. "io.k8s.api.apps.v1.Deployment".
    pub definition: &'static str,
    /// Whether upstream publishes a `<Kind>List` (false for Binding, Scale, Eviction, reviews).
    pub has_list: bool,
    /// Decodes an object into its k8s-openapi type, reporting type mismatches (a string where
    /// an integer belongs, ...) as upstream's Go decoder would reject them.
    pub decode: fn(&serde_json::Value) -> Result<(), String>,
}

fn static_name(name: Cow<'static, str>) -> &'static str {
    match name {
        Cow::Borrowed(name) => name,
        // k8s-openapi names are literals; this arm only runs for a generic type's computed name.
        Cow::Owned(name) => Box::leak(name.into_boxed_str()),
    }
}

macro_rules! builtin_kinds {
    (listed: [$($listed:ty),* $(,)?], single: [$($single:ty),* $(,)?] $(,)?) => {
        /// Adds the schema of every built-in kind (and of everything it refers to) to `generator`.
        pub(crate) fn generate_kind_schemas(generator: &mut SchemaGenerator) {
            $( generator.subschema_for::<$listed>(); )*
            $( generator.subschema_for::<$single>(); )*
        }

        fn table() -> Vec<BuiltinKind> {
            vec![
                $( BuiltinKind {
                    group: <$listed as Resource>::GROUP,
                    version: <$listed as Resource>::VERSION,
                    kind: <$listed as Resource>::KIND,
                    definition: static_name(<$listed as JsonSchema>::schema_name()),
                    has_list: true,
                    decode: |v| serde_json::from_value::<$listed>(v.clone()).map(|_| ()).map_err(|e| e.to_string()),
                }, )*
                $( BuiltinKind {
                    group: <$single as Resource>::GROUP,
                    version: <$single as Resource>::VERSION,
                    kind: <$single as Resource>::KIND,
                    definition: static_name(<$single as JsonSchema>::schema_name()),
                    has_list: false,
                    decode: |v| serde_json::from_value::<$single>(v.clone()).map(|_| ()).map_err(|e| e.to_string()),
                }, )*
            ]
        }
    };
}

builtin_kinds! {
    listed: [
        core::v1::Pod,
        core::v1::Service,
        core::v1::Endpoints,
        core::v1::Namespace,
        core::v1::Node,
        core::v1::ConfigMap,
        core::v1::Secret,
        core::v1::Event,
        core::v1::ServiceAccount,
        core::v1::PersistentVolume,
        core::v1::PersistentVolumeClaim,
        core::v1::ReplicationController,
        core::v1::LimitRange,
        core::v1::ResourceQuota,
        core::v1::PodTemplate,
        core::v1::ComponentStatus,
        apps::v1::Deployment,
        apps::v1::ReplicaSet,
        apps::v1::StatefulSet,
        apps::v1::DaemonSet,
        apps::v1::ControllerRevision,
        batch::v1::Job,
        batch::v1::CronJob,
        autoscaling::v1::HorizontalPodAutoscaler,
        autoscaling::v2::HorizontalPodAutoscaler,
        networking::v1::Ingress,
        networking::v1::IngressClass,
        networking::v1::NetworkPolicy,
        policy::v1::PodDisruptionBudget,
        rbac::v1::Role,
        rbac::v1::RoleBinding,
        rbac::v1::ClusterRole,
        rbac::v1::ClusterRoleBinding,
        storage::v1::StorageClass,
        storage::v1::CSIDriver,
        storage::v1::CSINode,
        storage::v1::VolumeAttachment,
        coordination::v1::Lease,
        discovery::v1::EndpointSlice,
        events::v1::Event,
        scheduling::v1::PriorityClass,
        apiextensions::v1::CustomResourceDefinition,
        apiregistration::v1::APIService,
        admissionregistration::v1::ValidatingWebhookConfiguration,
        admissionregistration::v1::MutatingWebhookConfiguration,
        admissionregistration::v1::ValidatingAdmissionPolicy,
        admissionregistration::v1::ValidatingAdmissionPolicyBinding,
        certificates::v1::CertificateSigningRequest,
    ],
    single: [
        core::v1::Binding,
        autoscaling::v1::Scale,
        policy::v1::Eviction,
        authentication::v1::TokenRequest,
        authentication::v1::TokenReview,
        authentication::v1::SelfSubjectReview,
        authorization::v1::SubjectAccessReview,
        authorization::v1::SelfSubjectAccessReview,
        authorization::v1::SelfSubjectRulesReview,
        authorization::v1::LocalSubjectAccessReview,
    ],
}

/// Every built-in kind, in the order of the list above.
pub fn kinds() -> &'static [BuiltinKind] {
    static KINDS: OnceLock<Vec<BuiltinKind>> = OnceLock::new();
    KINDS.get_or_init(table)
}

/// `(group, version, kind, definition name)` of every built-in kind.
pub fn builtin_kinds() -> &'static [(&'static str, &'static str, &'static str, &'static str)] {
    static TUPLES: OnceLock<Vec<(&str, &str, &str, &str)>> = OnceLock::new();
    TUPLES.get_or_init(|| {
        kinds()
            .iter()
            .map(|k| (k.group, k.version, k.kind, k.definition))
            .collect()
    })
}

/// Looks a built-in kind up by group, version and kind.
pub fn find(group: &str, version: &str, kind: &str) -> Option<&'static BuiltinKind> {
    kinds()
        .iter()
        .find(|k| k.group == group && k.version == version && k.kind == kind)
}

/// Type errors in an object of a built-in kind (`None` when it decodes). Missing fields are left
/// to validation, which words them as upstream does (422 `Required value`).
pub fn type_error(group: &str, version: &str, kind: &str, obj: &serde_json::Value) -> Option<String> {
    let k = find(group, version, kind)?;
    match (k.decode)(obj) {
        Ok(()) => None,
        Err(e) if e.starts_with("missing field") => None,
        Err(e) => Some(e),
    }
}
