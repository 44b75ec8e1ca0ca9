//! Events about pods, as the kubelet records them (source component `kubelet`, host = the node).
//! Repeats of the same reason and message on the same object bump `count` on one Event, as
//! upstream's event correlator does, instead of creating a new object each time.

use k8s_openapi::api::core::v1::{Event, ObjectReference, Pod};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// (object uid, reason, message) -> (event name, count).
type Seen = HashMap<(String, String, String), (String, u32)>;

#[derive(Clone)]
pub struct Recorder {
    client: Client,
    host: String,
    seen: Arc<Mutex<Seen>>,
}

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

impl Recorder {
    pub fn new(client: Client, host: String) -> Recorder {
        Recorder {
            client,
            host,
            seen: Arc::default(),
        }
    }

    /// Records an event about `pod` (optionally about one of its containers, by field path).
    pub fn pod(
        &self,
        pod: &Pod,
        field_path: Option<String>,
        type_: &str,
        reason: &str,
        message: String,
    ) {
        let meta = &pod.metadata;
        let ns = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: meta.name.clone(),
            namespace: Some(ns.clone()),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            field_path,
        };
        let key = (
            meta.uid.clone().unwrap_or_default(),
            reason.to_string(),
            message.clone(),
        );
        let this = self.clone();
        let type_ = type_.to_string();
        let reason = reason.to_string();
        let pod_name = meta.name.clone().unwrap_or_default();
        tokio::spawn(async move {
            let api: Api<Event> = Api::namespaced(this.client.clone(), &ns);
            let now = jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            let existing = this.seen.lock().ok().and_then(|mut m| {
                let e = m.get_mut(&key)?;
                e.1 += 1;
                Some(e.clone())
            });
            if let Some((name, count)) = existing {
                let patch = json!({"count": count, "lastTimestamp": now});
                if api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            let name = format!("{pod_name}.{:x}", rand::random::<u64>());
            let ev: Event = match serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": reference,
                "reason": reason,
                "message": message,
                "type": type_,
                "source": {"component": "kubelet", "host": this.host},
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
                "reportingComponent": "kubelet",
                "reportingInstance": this.host,
            })) {
                Ok(ev) => ev,
                Err(_) => return,
            };
            match api.create(&PostParams::default(), &ev).await {
                Ok(_) => {
                    if let Ok(mut m) = this.seen.lock() {
                        if m.len() > 10_000 {
                            m.clear();
                        }
                        m.insert(key, (name, 1));
                    }
                }
                Err(e) => tracing::debug!(error = %e, "recording an event"),
            }
        });
    }
}
