//! Periodic compaction of etcd's history, as kube-apiserver's compactor: every `interval`, compact
//! to the revision seen at the previous tick, so that watchers and paged lists always have at
//! least one interval of history (kube-apiserver's `--etcd-compaction-interval`, 5 minutes).
//!
//! Unlike kube-apiserver, several Kaji servers do not coordinate through a `compact_rev_key`
//! yet: each compacts on its own schedule, and a compaction that someone else already did (etcd
//! answers "required revision has been compacted") is fine.

use std::sync::Arc;
use std::time::Duration;

use crate::{Store, StoreError};

/// Starts the compactor; it stops when the returned handle is aborted or dropped with the runtime.
pub fn spawn_compactor(store: Arc<dyn Store>, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut previous = None;
        loop {
            ticks.tick().await;
            if let Some(revision) = previous {
                match store.compact(revision).await {
                    Ok(()) => tracing::debug!(revision, "compacted etcd"),
                    Err(StoreError::Compacted { .. }) => {}
                    Err(e) => tracing::warn!(revision, error = %e, "compacting etcd"),
                }
            }
            match store.current_revision().await {
                Ok(revision) => previous = Some(revision),
                Err(e) => tracing::warn!(error = %e, "reading etcd's revision for compaction"),
            }
        }
    })
}
