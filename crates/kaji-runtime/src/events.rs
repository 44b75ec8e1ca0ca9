//! Recording core/v1 Events (what `kubectl describe` shows), one recorder for the controllers,
//! the scheduler and the kubelet, behaving as client-go's `record.EventRecorder` with its
//! `EventCorrelator`:
//! - an event names the object it is about (`involvedObject` with uid and resourceVersion, and a
//!   field path for a container) and who saw it (`source.component`/`host`,
//!   `reportingComponent`/`reportingInstance`);
//! - the same event again (same object, type, reason and message) bumps `count` and
//!   `lastTimestamp` of the Event already written instead of writing another;
//! - similar events (same object, type and reason, different messages) are aggregated: from the
//!   10th distinct message within 10 minutes they are recorded as one event whose message starts
//!   with `(combined from similar events): ` and whose count grows;
//! - recording never blocks nor fails the caller: events are written by background writers (8,
//!   events of one object always by the same one, in order); when the buffer is full an event is
//!   dropped, as client-go's broadcaster does, and a failed write is logged at debug.
//!
//! Not done: client-go's spam filter (a token bucket of 25 per object and source).

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Event types (`type` field).
pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

/// Remembered events, as client-go's LRU of 4096 (here cleared when full).
const CACHE_SIZE: usize = 4096;
/// Distinct messages of similar events before they are aggregated (upstream
/// `defaultAggregateMaxEvents`), within this window (`defaultAggregateIntervalInSeconds`).
const AGGREGATE_MAX_EVENTS: usize = 10;
const AGGREGATE_INTERVAL: Duration = Duration::from_secs(600);
const AGGREGATE_PREFIX: &str = "(combined from similar events): ";
const WRITERS: usize = 8;
const QUEUE: usize = 4096;

/// The `involvedObject` reference of an object (kind, apiVersion, uid, resourceVersion).
pub fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    obj.object_ref(&())
}

/// One event to write.
struct Pending {
    object: ObjectReference,
    event_type: String,
    reason: String,
    action: Option<String>,
    message: String,
}

/// Same object, type and reason (client-go's aggregate key, less the source, which is the
/// recorder's own).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct SimilarKey {
    uid: String,
    kind: String,
    namespace: String,
    name: String,
    field_path: String,
    event_type: String,
    reason: String,
}

#[derive(Clone, Debug)]
struct Seen {
    name: String,
    count: i32,
}

#[derive(Default)]
struct Similar {
    messages: HashSet<String>,
    since: Option<Instant>,
}

struct Shared {
    client: Client,
    component: String,
    host: Option<String>,
    instance: String,
    /// (similar key, message) -> the event written for it.
    seen: Mutex<HashMap<(SimilarKey, String), Seen>>,
    similar: Mutex<HashMap<SimilarKey, Similar>>,
}

/// Writes Events on behalf of one component (`replicaset-controller`, `default-scheduler`,
/// `kubelet`). Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    writers: Arc<Vec<mpsc::Sender<Pending>>>,
}

impl Recorder {
    /// A recorder for `component` (also the reporting instance).
    pub fn new(client: Client, component: &str) -> Self {
        Self::with_source(client, component, None, component)
    }

    /// A recorder with a host (the kubelet's node name) and a reporting instance.
    pub fn with_source(
        client: Client,
        component: &str,
        host: Option<String>,
        instance: &str,
    ) -> Self {
        let shared = Arc::new(Shared {
            client,
            component: component.to_string(),
            host,
            instance: instance.to_string(),
            seen: Mutex::new(HashMap::new()),
            similar: Mutex::new(HashMap::new()),
        });
        let writers = (0..WRITERS)
            .map(|_| {
                let (tx, mut rx) = mpsc::channel::<Pending>(QUEUE / WRITERS);
                let shared = shared.clone();
                tokio::spawn(async move {
                    while let Some(p) = rx.recv().await {
                        shared.write(p).await;
                    }
                });
                tx
            })
            .collect();
        Recorder {
            writers: Arc::new(writers),
        }
    }

    pub async fn normal(&self, obj: &ObjectReference, reason: &str, message: &str) {
        self.event(obj, NORMAL, reason, None, message);
    }

    pub async fn warning(&self, obj: &ObjectReference, reason: &str, message: &str) {
        self.event(obj, WARNING, reason, None, message);
    }

    pub async fn record(
        &self,
        obj: &ObjectReference,
        event_type: &str,
        reason: &str,
        message: &str,
    ) {
        self.event(obj, event_type, reason, None, message);
    }

    /// Queues an event (never blocks; dropped when the queue is full).
    pub fn event(
        &self,
        obj: &ObjectReference,
        event_type: &str,
        reason: &str,
        action: Option<&str>,
        message: &str,
    ) {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        obj.uid.hash(&mut h);
        obj.name.hash(&mut h);
        let i = (h.finish() as usize) % self.writers.len();
        let pending = Pending {
            object: obj.clone(),
            event_type: event_type.to_string(),
            reason: reason.to_string(),
            action: action.map(str::to_string),
            message: message.to_string(),
        };
        if self.writers[i].try_send(pending).is_err() {
            tracing::debug!(reason, "event queue full; dropping an event");
        }
    }
}

impl Shared {
    /// The message to record: the event's own, or the aggregate's once similar events pile up.
    fn correlate(&self, key: &SimilarKey, message: &str) -> String {
        let Ok(mut similar) = self.similar.lock() else {
            return message.to_string();
        };
        if similar.len() >= CACHE_SIZE {
            similar.clear();
        }
        let s = similar.entry(key.clone()).or_default();
        let now = Instant::now();
        if s.since
            .is_none_or(|t| now.duration_since(t) > AGGREGATE_INTERVAL)
        {
            *s = Similar {
                messages: HashSet::new(),
                since: Some(now),
            };
        }
        s.messages.insert(message.to_string());
        if s.messages.len() >= AGGREGATE_MAX_EVENTS {
            format!("{AGGREGATE_PREFIX}{message}")
        } else {
            message.to_string()
        }
    }

    async fn write(&self, p: Pending) {
        let obj = &p.object;
        let namespace = obj
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let key = SimilarKey {
            uid: obj.uid.clone().unwrap_or_default(),
            kind: obj.kind.clone().unwrap_or_default(),
            namespace: namespace.clone(),
            name: obj.name.clone().unwrap_or_default(),
            field_path: obj.field_path.clone().unwrap_or_default(),
            event_type: p.event_type.clone(),
            reason: p.reason.clone(),
        };
        let message = self.correlate(&key, &p.message);
        // Aggregated events are one event per similar key, whatever the message.
        let dedup = if message.starts_with(AGGREGATE_PREFIX) {
            String::new()
        } else {
            message.clone()
        };
        let seen_key = (key.clone(), dedup);
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let previous = self
            .seen
            .lock()
            .ok()
            .and_then(|m| m.get(&seen_key).cloned());
        if let Some(prev) = previous {
            let count = prev.count + 1;
            let patch = json!({"count": count, "lastTimestamp": now, "message": message});
            let request = kube::core::Request::new(api.resource_url()).patch(
                &prev.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            );
            match self.send(request).await {
                Ok(_) => {
                    self.remember(
                        seen_key,
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
        let name = format!(
            "{}.{:x}",
            key.name,
            k8s_openapi::jiff::Timestamp::now().as_nanosecond()
        );
        let event = Event {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace),
                ..Default::default()
            },
            involved_object: obj.clone(),
            reason: Some(p.reason.clone()),
            message: Some(message),
            type_: Some(p.event_type.clone()),
            action: p.action.clone(),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: self.host.clone(),
            }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        let request = serde_json::to_vec(&event)
            .map_err(kube::core::request::Error::SerializeBody)
            .and_then(|body| {
                kube::core::Request::new(api.resource_url()).create(&PostParams::default(), body)
            });
        match self.send(request).await {
            Ok(()) => self.remember(seen_key, Seen { name, count: 1 }),
            Err(e) => tracing::debug!(reason = %p.reason, error = %e, "could not write an event"),
        }
    }

    /// Sends a write; its answer (the whole event) is read as text, not decoded.
    async fn send(
        &self,
        request: Result<::http::Request<Vec<u8>>, kube::core::request::Error>,
    ) -> kube::Result<()> {
        let request = request.map_err(kube::Error::BuildRequest)?;
        self.client.request_text(request).await.map(drop)
    }

    fn remember(&self, key: (SimilarKey, String), seen: Seen) {
        if let Ok(mut m) = self.seen.lock() {
            if m.len() >= CACHE_SIZE {
                m.clear();
            }
            m.insert(key, seen);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SimilarKey {
        SimilarKey {
            uid: "u".into(),
            kind: "Pod".into(),
            namespace: "default".into(),
            name: "p".into(),
            field_path: String::new(),
            event_type: WARNING.into(),
            reason: "Failed".into(),
        }
    }

    #[tokio::test]
    async fn similar_events_are_combined_from_the_tenth_message() {
        // A client that is never used: correlate is pure.
        let cfg = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let shared = Shared {
            client: Client::try_from(cfg).unwrap(),
            component: "test".into(),
            host: None,
            instance: "test".into(),
            seen: Mutex::default(),
            similar: Mutex::default(),
        };
        for i in 0..9 {
            assert_eq!(shared.correlate(&key(), &format!("m{i}")), format!("m{i}"));
        }
        // The same message again does not count twice.
        assert_eq!(shared.correlate(&key(), "m0"), "m0");
        assert_eq!(
            shared.correlate(&key(), "m9"),
            "(combined from similar events): m9"
        );
        assert_eq!(
            shared.correlate(&key(), "m10"),
            "(combined from similar events): m10"
        );
        // Another reason is another group.
        let mut other = key();
        other.reason = "BackOff".into();
        assert_eq!(shared.correlate(&other, "m0"), "m0");
    }
}
