//! Keeps the [`SharedIndex`] current: reflectors on Services, EndpointSlices and Namespaces
//! (all namespaces), and a builder that rebuilds the index shortly after any change.
//!
//! Changes are coalesced: a rollout touching many slices in a burst costs one rebuild per
//! [`DEBOUNCE`], not one per event.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{Notify, oneshot};

use crate::index::{Index, SharedIndex};

/// How long the builder waits after a change for more to arrive.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// Starts the reflectors and the builder; `synced` fires once the first full index is in place.
pub fn spawn(client: kube::Client, index: SharedIndex, synced: oneshot::Sender<()>) {
    let changed = Arc::new(Notify::new());
    let services = reflect::<Service>(Api::all(client.clone()), changed.clone());
    let slices = reflect::<EndpointSlice>(Api::all(client.clone()), changed.clone());
    let namespaces = reflect::<Namespace>(Api::all(client), changed.clone());
    tokio::spawn(async move {
        let ready = async {
            services.wait_until_ready().await.is_ok()
                && slices.wait_until_ready().await.is_ok()
                && namespaces.wait_until_ready().await.is_ok()
        };
        if !ready.await {
            tracing::warn!("DNS: a reflector stopped before its first list");
            return;
        }
        let mut synced = Some(synced);
        loop {
            let built = Index::build(
                namespaces
                    .state()
                    .iter()
                    .filter_map(|ns| ns.metadata.name.clone()),
                services.state(),
                slices.state(),
                unix_seconds(),
            );
            tracing::debug!(services = built.service_count(), "DNS index rebuilt");
            index.store(built);
            if let Some(tx) = synced.take() {
                let _ = tx.send(());
            }
            changed.notified().await;
            tokio::time::sleep(DEBOUNCE).await;
        }
    });
}

/// A reflector for `K` whose every event pokes `changed`.
fn reflect<K>(api: Api<K>, changed: Arc<Notify>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    tokio::spawn(drive(stream, changed, K::kind(&())));
    store
}

async fn drive<S, K, E>(stream: S, changed: Arc<Notify>, kind: std::borrow::Cow<'static, str>)
where
    S: Stream<Item = Result<watcher::Event<K>, E>>,
    E: std::fmt::Display,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            // The initial list is reported once, at its end.
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
            Ok(_) => changed.notify_one(),
            Err(e) => tracing::warn!(%kind, error = %e, "DNS: watch failed; retrying"),
        }
    }
}

fn unix_seconds() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}
