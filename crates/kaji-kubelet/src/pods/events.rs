//! Events about pods, as the kubelet records them (source component `kubelet`, host = the node),
//! through kaji-runtime's one recorder (repeats bump `count`, similar events are aggregated, as
//! upstream's event correlator does).

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::Client;

pub use kaji_runtime::events::{NORMAL, WARNING};

#[derive(Clone)]
pub struct Recorder {
    inner: kaji_runtime::events::Recorder,
}

impl Recorder {
    pub fn new(client: Client, host: String) -> Recorder {
        Recorder {
            inner: kaji_runtime::events::Recorder::with_source(
                client,
                "kubelet",
                Some(host.clone()),
                &host,
            ),
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
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: meta.name.clone(),
            namespace: Some(meta.namespace.clone().unwrap_or_else(|| "default".into())),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            field_path,
        };
        self.inner.event(&reference, type_, reason, None, &message);
    }
}
