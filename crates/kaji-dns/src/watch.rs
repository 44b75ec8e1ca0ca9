//! Keeps the [`SharedIndex`] current: reflectors on Services, EndpointSlices and Namespaces
//! (all namespaces), and a builder that rebuilds the index shortly after any change.
//!
//! Changes are coalesced: a rollout touching many slices in a burst costs one rebuild per
//! [`DEBOUNCE`], not one per event.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kaji_runtime::informer::Factory;
use kaji_runtime::watch::reflect;
use kube::runtime::watcher;
use tokio::sync::{Notify, oneshot};

use crate::index::{Index, SharedIndex};

/// How long the builder waits after a change for more to arrive.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// Starts the reflectors and the builder; `synced` fires once the first full index is in place.
pub fn spawn(factory: &Factory, index: SharedIndex, synced: oneshot::Sender<()>) {
    let changed = Arc::new(Notify::new());
    let all = watcher::Config::default;
    let services = reflect::<Service>(factory, all(), changed.clone());
    let slices = reflect::<EndpointSlice>(factory, all(), changed.clone());
    let namespaces = reflect::<Namespace>(factory, all(), changed.clone());
    tokio::spawn(async move {
        services.ready().await;
        slices.ready().await;
        namespaces.ready().await;
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

fn unix_seconds() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}
