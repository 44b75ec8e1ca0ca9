//! The custom kinds' schemas in `/openapi/v2` and `/openapi/v3` (upstream's
//! `controller/openapi`), so `kubectl explain` and client-side validation know them.
//!
//! Every served version of every Established CRD becomes a kind definition and its paths
//! (`kaji_openapi::CustomDocuments`). The documents are rebuilt only when the stored CRDs change:
//! each request lists the CRD keys with their revisions (no decoding) and compares them with
//! those the documents were built from, so a new CRD shows as soon as it is Established and a
//! deleted one is gone at once.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::Bytes;
use kaji_api::ResourceInfo;
use kaji_openapi::{CustomDocuments, CustomResourceVersion};
use serde_json::{Value, json};

use crate::ApiServer;
use crate::registry::Registry;

/// The CRDs the documents were built from: each key with its last revision.
type Key = Vec<(String, i64)>;

/// (custom documents, the document they were merged into, JSON, protobuf) of `/openapi/v2`.
type MergedV2 = (Arc<CustomDocuments>, Bytes, Bytes, Bytes);

/// The custom documents and the merged `/openapi/v2`, cached in the API server.
#[derive(Default)]
pub struct CustomOpenApi {
    docs: Mutex<(Option<Key>, Arc<CustomDocuments>)>,
    v2: tokio::sync::Mutex<Option<MergedV2>>,
}

/// The built-in kinds only (the registry also serves the custom ones): the cached documents of
/// `kaji_openapi` describe them, custom kinds are added here.
pub fn builtin_infos() -> &'static [ResourceInfo] {
    static BUILTIN: OnceLock<Vec<ResourceInfo>> = OnceLock::new();
    BUILTIN.get_or_init(|| Registry::builtin().infos())
}

/// The custom documents for the CRDs stored now; rebuilt only when they changed. A store error
/// leaves the last documents in place.
async fn documents(server: &ApiServer) -> Arc<CustomDocuments> {
    let cache = &server.custom_openapi;
    let Some(crds) = server
        .registry
        .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    else {
        return Arc::default();
    };
    let page = match server
        .store
        .list(&crds.prefix(None), kaji_store::ListOptions::default())
        .await
    {
        Ok(page) => page,
        Err(e) => {
            tracing::debug!(error = %e, "listing CRDs for OpenAPI");
            return cache
                .docs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .1
                .clone();
        }
    };
    let key: Key = page
        .items
        .iter()
        .map(|kv| (kv.key.clone(), kv.mod_revision))
        .collect();
    let mut docs = cache.docs.lock().unwrap_or_else(PoisonError::into_inner);
    if docs.0.as_ref() == Some(&key) {
        return docs.1.clone();
    }
    let versions: Vec<CustomResourceVersion> = page
        .items
        .iter()
        .map(|kv| crds.decode(kv))
        .filter(established)
        .flat_map(|crd| CustomResourceVersion::from_crd(&crd))
        .collect();
    let built = Arc::new(CustomDocuments::new(&versions));
    *docs = (Some(key), built.clone());
    built
}

/// `/openapi/v2` (JSON, protobuf): the server's own document with the aggregated APIs', and the
/// custom kinds' paths and definitions. Merged again only when either side changed.
pub async fn v2(server: &ApiServer) -> (Bytes, Bytes) {
    let custom = documents(server).await;
    let (json, proto) = crate::aggregator::discovery::openapi_v2(server);
    if custom.is_empty() {
        return (json, proto);
    }
    // An async lock: a request arriving during a merge waits without holding a worker thread.
    let mut merged = server.custom_openapi.v2.lock().await;
    // The base is held in the cache, so the same pointer is the same document.
    if let Some((docs, base, merged_json, merged_proto)) = merged.as_ref()
        && Arc::ptr_eq(docs, &custom)
        && base.as_ptr() == json.as_ptr()
        && base.len() == json.len()
    {
        return (merged_json.clone(), merged_proto.clone());
    }
    // Parsing, merging and encoding the whole document takes a while: off the async workers.
    let (base, docs) = (json.clone(), custom.clone());
    let work = tokio::task::spawn_blocking(move || {
        let mut doc: Value = serde_json::from_slice(&base).unwrap_or_else(|_| json!({}));
        docs.merge_v2(&mut doc);
        let json = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
        (json, Bytes::from(kaji_openapi::v2_protobuf(&doc)))
    });
    let Ok((merged_json, merged_proto)) = work.await else {
        return (json, proto);
    };
    *merged = Some((custom, json, merged_json.clone(), merged_proto.clone()));
    (merged_json, merged_proto)
}

/// Adds the custom group/versions' documents to a `/openapi/v3` index.
pub async fn merge_v3_index(server: &ApiServer, index: &mut Value) {
    documents(server).await.merge_v3_index(index);
}

/// The document at `/openapi/v3/<path>`: a built-in one, else a custom group/version's.
pub async fn v3_document(server: &ApiServer, path: &str) -> Option<Value> {
    if let Some(doc) = kaji_openapi::v3_document(builtin_infos(), path) {
        return Some(doc);
    }
    documents(server).await.v3_document(path).cloned()
}

/// Upstream publishes a CRD's schemas once it is Established (names accepted, served).
fn established(crd: &Value) -> bool {
    let conditions = crd.pointer("/status/conditions").and_then(Value::as_array);
    conditions
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Established" && c["status"] == "True")
}
