//! Recording core/v1 Events (what `kubectl describe` shows), with upstream's reasons and its
//! aggregation of repeats into a count.
//!
//! Like client-go's `record.EventRecorder`: an event names the object it is about
//! (`involvedObject` with uid and resourceVersion) and the component that saw it
//! (`source.component`, `reportingComponent`); the same reason and message for the same object
//! bumps `count` and `lastTimestamp` of the event already written instead of writing a new one.
//! Recording never fails the caller: an event that cannot be written is logged and dropped.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;

/// Event types (`type` field).
pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

/// Remembered events, as client-go's cache (an LRU of 4096; here cleared when full).
const CACHE_SIZE: usize = 4096;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Key {
    uid: String,
    kind: String,
    namespace: String,
    name: String,
    event_type: String,
    reason: String,
    message: String,
}

#[derive(Clone, Debug)]
struct Seen {
    name: String,
    count: i32,
}

/// Writes Events on behalf of one component (`replicaset-controller`, `deployment-controller`).
pub struct EventRecorder {
    client: Client,
    component: String,
    seen: Mutex<HashMap<Key, Seen>>,
}

/// The `involvedObject` reference of an object (kind, apiVersion, uid, resourceVersion).
pub fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    obj.object_ref(&())
}

impl EventRecorder {
    pub fn new(client: Client, component: &str) -> Self {
        EventRecorder {
            client,
            component: component.to_string(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub async fn normal(&self, obj: &ObjectReference, reason: &str, message: &str) {
        self.record(obj, NORMAL, reason, message).await;
    }

    pub async fn warning(&self, obj: &ObjectReference, reason: &str, message: &str) {
        self.record(obj, WARNING, reason, message).await;
    }

    pub async fn record(
        &self,
        obj: &ObjectReference,
        event_type: &str,
        reason: &str,
        message: &str,
    ) {
        let namespace = obj
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let key = Key {
            uid: obj.uid.clone().unwrap_or_default(),
            kind: obj.kind.clone().unwrap_or_default(),
            namespace: namespace.clone(),
            name: obj.name.clone().unwrap_or_default(),
            event_type: event_type.into(),
            reason: reason.into(),
            message: message.into(),
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let now = Time(jiff::Timestamp::now());
        let previous = self
            .seen
            .lock()
            .map(|m| m.get(&key).cloned())
            .unwrap_or_default();
        if let Some(prev) = previous {
            // A repeat: bump the count of the event already written (client-go's EventCorrelator).
            let count = prev.count + 1;
            let patch = json!({"count": count, "lastTimestamp": now, "message": message});
            match api
                .patch(&prev.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    self.remember(
                        key,
                        Seen {
                            name: prev.name,
                            count,
                        },
                    );
                    return;
                }
                Err(e) => {
                    tracing::debug!(event = %prev.name, error = %e, "event gone; writing a new one")
                }
            }
        }
        let name = format!("{}.{:x}", key.name, jiff::Timestamp::now().as_nanosecond());
        let event = Event {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace),
                ..Default::default()
            },
            involved_object: obj.clone(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(event_type.into()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            event_time: None::<MicroTime>,
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => self.remember(key, Seen { name, count: 1 }),
            Err(e) => tracing::warn!(reason, error = %e, "could not write an event"),
        }
    }

    fn remember(&self, key: Key, seen: Seen) {
        if let Ok(mut m) = self.seen.lock() {
            if m.len() >= CACHE_SIZE {
                m.clear();
            }
            m.insert(key, seen);
        }
    }
}
