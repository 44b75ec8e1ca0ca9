//! What a served Ingress asks for that cannot be honoured (a missing Service, a missing or invalid
//! TLS Secret), found while building a snapshot and reported once as a Warning Event on the
//! Ingress (core/v1, as controllers record them).

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

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

/// The Event for `problem` on `ing` (built apart from posting, for tests).
pub fn warning_event(ing: &Ingress, problem: &Problem, now: Timestamp) -> Event {
    let name = ing.metadata.name.clone().unwrap_or_default();
    let mut ev = Event::default();
    ev.metadata.generate_name = Some(format!("{name}."));
    ev.metadata.namespace = Some(problem.namespace.clone());
    ev.involved_object = ObjectReference {
        api_version: Some("networking.k8s.io/v1".into()),
        kind: Some("Ingress".into()),
        name: Some(name),
        namespace: Some(problem.namespace.clone()),
        uid: ing.metadata.uid.clone(),
        resource_version: ing.metadata.resource_version.clone(),
        field_path: None,
    };
    ev.reason = Some(problem.reason.into());
    ev.message = Some(problem.message.clone());
    ev.type_ = Some("Warning".into());
    ev.count = Some(1);
    ev.source = Some(EventSource {
        component: Some(COMPONENT.into()),
        host: None,
    });
    ev.reporting_component = Some(COMPONENT.into());
    ev.reporting_instance = Some(COMPONENT.into());
    ev.first_timestamp = Some(Time(now));
    ev.last_timestamp = Some(Time(now));
    ev.event_time = Some(MicroTime(now));
    ev
}

/// Posts the Event, best effort: a failure is only logged.
pub async fn record(client: kube::Client, ing: &Ingress, problem: &Problem) {
    let ev = warning_event(ing, problem, Timestamp::now());
    let api: Api<Event> = Api::namespaced(client, &problem.namespace);
    if let Err(e) = api.create(&PostParams::default(), &ev).await {
        tracing::debug!(ingress = problem.ingress, "recording event: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn warning_event_points_at_the_ingress() {
        let ing: Ingress = serde_json::from_value(json!({"metadata": {
            "namespace": "ns", "name": "web", "uid": "u-1", "resourceVersion": "7"}}))
        .expect("ingress");
        let p = Problem {
            namespace: "ns".into(),
            ingress: "web".into(),
            reason: REASON_SERVICE_NOT_FOUND,
            message: "Service \"ns/api\" not found".into(),
        };
        let ev = warning_event(&ing, &p, Timestamp::UNIX_EPOCH);
        assert_eq!(ev.metadata.generate_name.as_deref(), Some("web."));
        assert_eq!(ev.involved_object.kind.as_deref(), Some("Ingress"));
        assert_eq!(ev.involved_object.uid.as_deref(), Some("u-1"));
        assert_eq!(ev.type_.as_deref(), Some("Warning"));
        assert_eq!(ev.reason.as_deref(), Some("ServiceNotFound"));
    }
}
