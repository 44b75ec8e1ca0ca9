//! Events the scheduler records (`Scheduled`, `FailedScheduling`, `Preempted`), as core/v1
//! Events from `default-scheduler`, written by one background task so a burst of pods never
//! waits on them (when the buffer is full, events are dropped, as client-go's broadcaster does).

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc};

pub const COMPONENT: &str = "default-scheduler";

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Event>,
    identity: String,
}

impl Recorder {
    /// Starts the writer task; it ends when every recorder is dropped.
    pub fn start(client: kube::Client, identity: &str) -> (Recorder, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Event>(4096);
        let task = tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(8));
            while let Some(ev) = rx.recv().await {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let api: Api<Event> = Api::namespaced(
                    client.clone(),
                    ev.metadata.namespace.as_deref().unwrap_or("default"),
                );
                tokio::spawn(async move {
                    if let Err(e) = api.create(&PostParams::default(), &ev).await {
                        tracing::debug!("recording event: {e}");
                    }
                    drop(permit);
                });
            }
        });
        (
            Recorder {
                tx,
                identity: identity.to_string(),
            },
            task,
        )
    }

    pub fn pod_event(&self, pod: &Pod, type_: &str, reason: &str, action: &str, message: String) {
        let now = Timestamp::now();
        let meta = &pod.metadata;
        let name = meta.name.clone().unwrap_or_default();
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(format!("{name}.{:x}", now.as_nanosecond())),
                namespace: meta.namespace.clone(),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name),
                namespace: meta.namespace.clone(),
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
                ..ObjectReference::default()
            },
            reason: Some(reason.into()),
            message: Some(message),
            type_: Some(type_.into()),
            action: Some(action.into()),
            source: Some(EventSource {
                component: Some(COMPONENT.into()),
                host: None,
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some(COMPONENT.into()),
            reporting_instance: Some(self.identity.clone()),
            ..Event::default()
        };
        let _ = self.tx.try_send(ev);
    }
}
