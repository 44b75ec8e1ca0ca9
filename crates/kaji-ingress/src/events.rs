//! What a served Ingress asks for that cannot be honoured (a missing Service, a missing or invalid
//! TLS Secret), found while building a snapshot and reported once as a Warning Event on the
//! Ingress (core/v1, through kaji-runtime's one recorder).

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::networking::v1::Ingress;
use kaji_runtime::events::{Recorder, WARNING};

/// The component name Events carry.
pub const COMPONENT: &str = "kaji-ingress";

pub const REASON_SERVICE_NOT_FOUND: &str = "ServiceNotFound";
pub const REASON_SECRET_NOT_FOUND: &str = "SecretNotFound";
pub const REASON_INVALID_SECRET: &str = "InvalidSecret";

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Problem {
    pub namespace: String,
    pub ingress: String,
    pub reason: &'static str,
    pub message: String,
}

/// The `involvedObject` of an Event about `ing`.
pub fn reference(ing: &Ingress) -> ObjectReference {
    ObjectReference {
        api_version: Some("networking.k8s.io/v1".into()),
        kind: Some("Ingress".into()),
        name: ing.metadata.name.clone(),
        namespace: ing.metadata.namespace.clone(),
        uid: ing.metadata.uid.clone(),
        resource_version: ing.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// Records the Warning for `problem` on `ing` (kaji-runtime's recorder: never blocks, a repeat
/// bumps the count).
pub fn record(recorder: &Recorder, ing: &Ingress, problem: &Problem) {
    recorder.event(
        &reference(ing),
        WARNING,
        problem.reason,
        None,
        &problem.message,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_point_at_the_ingress() {
        let ing: Ingress = serde_json::from_value(json!({"metadata": {
            "namespace": "ns", "name": "web", "uid": "u-1", "resourceVersion": "7"}}))
        .expect("ingress");
        let r = reference(&ing);
        assert_eq!(r.kind.as_deref(), Some("Ingress"));
        assert_eq!(r.api_version.as_deref(), Some("networking.k8s.io/v1"));
        assert_eq!(r.uid.as_deref(), Some("u-1"));
        assert_eq!(r.namespace.as_deref(), Some("ns"));
    }
}
