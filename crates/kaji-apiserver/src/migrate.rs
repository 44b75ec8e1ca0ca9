//! Moves objects stored under Kaji's former key layout (`/registry/<group|core>/<version>/<plural>/...`)
//! to Kubernetes' (`registry::keys`), before the API server serves: a data dir or an etcd written
//! by an older Kaji comes up with its objects.
//!
//! Through the `Store` trait, so the same on redb and etcd: each kind's old prefix is read a page
//! at a time, each object created under its new key and then deleted from its old one (at the
//! revision read). Idempotent: an object already at its new key (a move interrupted between the
//! two writes, or done by another server on the same etcd) keeps the new one, the old is dropped.
//! Objects get new resourceVersions, as after an etcd restore.

use std::collections::BTreeSet;

use kaji_store::{ListOptions, Store, StoreError};

use crate::registry::Registry;
use crate::registry::keys;

/// Objects moved per page.
const BATCH: usize = 500;

/// Moves every object of a built-in kind from its old key to its new one; returns how many moved.
pub async fn legacy_keys(store: &dyn Store, registry: &Registry) -> anyhow::Result<u64> {
    // One (old, new) pair per stored kind: kinds served in several versions share storage.
    let mut pairs = BTreeSet::new();
    for strategy in registry.builtin_kinds() {
        let stored = strategy.storage_info().unwrap_or_else(|| strategy.info());
        pairs.insert((keys::legacy_prefix(stored), strategy.prefix(None)));
    }
    let mut moved = 0u64;
    for (old, new) in &pairs {
        let n = move_prefix(store, old, new).await?;
        if n > 0 {
            tracing::info!(from = %old, to = %new, objects = n, "moved objects to Kubernetes' key layout");
        }
        moved += n;
    }
    if moved > 0 {
        tracing::info!(
            objects = moved,
            "storage keys migrated to Kubernetes' layout"
        );
    }
    Ok(moved)
}

async fn move_prefix(store: &dyn Store, old: &str, new: &str) -> anyhow::Result<u64> {
    let mut moved = 0;
    let mut start_after = None;
    loop {
        let opts = ListOptions {
            start_after: start_after.clone(),
            limit: Some(BATCH),
            revision: None,
        };
        let page = store
            .list(old, opts)
            .await
            .map_err(|e| anyhow::anyhow!("listing {old}: {e}"))?;
        for kv in &page.items {
            let Some(rest) = kv.key.strip_prefix(old) else {
                continue;
            };
            let key = format!("{new}{rest}");
            match store.create(&key, kv.value.clone()).await {
                Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => anyhow::bail!("moving {} to {key}: {e}", kv.key),
            }
            match store.delete(&kv.key, Some(kv.mod_revision)).await {
                // Gone or changed meanwhile: someone else (another server) moved it.
                Ok(_) | Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
                Err(e) => anyhow::bail!("removing {} after the move: {e}", kv.key),
            }
            moved += 1;
        }
        if !page.more {
            return Ok(moved);
        }
        start_after = page.items.last().map(|kv| kv.key.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kaji_store::{RedbOptions, RedbStore};

    #[tokio::test]
    async fn moves_old_keys_once() {
        let dir =
            std::env::temp_dir().join(format!("kaji-apiserver-migrate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let store =
            RedbStore::open(&dir.join("store.redb"), RedbOptions::default()).expect("open store");
        let registry = Registry::builtin();
        let old = [
            (
                "/registry/core/v1/namespaces/default",
                "/registry/namespaces/default",
            ),
            (
                "/registry/core/v1/services/default/kubernetes",
                "/registry/services/specs/default/kubernetes",
            ),
            ("/registry/core/v1/nodes/n1", "/registry/minions/n1"),
            (
                "/registry/apps/v1/deployments/default/web",
                "/registry/deployments/default/web",
            ),
            (
                "/registry/autoscaling/v2/horizontalpodautoscalers/default/web",
                "/registry/horizontalpodautoscalers/default/web",
            ),
            (
                "/registry/apiextensions.k8s.io/v1/customresourcedefinitions/hoges.example.com",
                "/registry/apiextensions.k8s.io/customresourcedefinitions/hoges.example.com",
            ),
        ];
        for (key, _) in &old {
            store
                .create(key, format!("{{\"k\":\"{key}\"}}").into_bytes())
                .await
                .expect("old key");
        }
        // More than a page of one kind.
        for i in 0..(BATCH + 7) {
            store
                .create(
                    &format!("/registry/core/v1/configmaps/ns/c{i:04}"),
                    b"{}".to_vec(),
                )
                .await
                .expect("old key");
        }
        // A custom resource is already where upstream keeps it; a half-done move keeps the new.
        store
            .create("/registry/example.com/hoges/default/h", b"{}".to_vec())
            .await
            .expect("cr");
        store
            .create("/registry/configmaps/ns/c0000", b"{\"new\":true}".to_vec())
            .await
            .expect("moved before");

        let moved = legacy_keys(&store, &registry).await.expect("migration");
        assert_eq!(moved, (old.len() + BATCH + 7) as u64);
        for (key, new) in &old {
            assert!(store.get(key).await.unwrap().is_none(), "{key} left");
            let kv = store
                .get(new)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{new} missing"));
            assert_eq!(kv.value, format!("{{\"k\":\"{key}\"}}").into_bytes());
        }
        let cms = store
            .list("/registry/configmaps/ns/", ListOptions::default())
            .await
            .unwrap();
        assert_eq!(cms.items.len(), BATCH + 7);
        assert_eq!(cms.items[0].value, b"{\"new\":true}");
        assert!(
            store
                .list("/registry/core/", ListOptions::default())
                .await
                .unwrap()
                .items
                .is_empty()
        );
        assert!(
            store
                .get("/registry/example.com/hoges/default/h")
                .await
                .unwrap()
                .is_some()
        );

        assert_eq!(legacy_keys(&store, &registry).await.expect("again"), 0);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
