//! Response shapes chosen by the Accept header: the object itself, a meta.k8s.io/v1 Table (what
//! kubectl asks for when printing), or PartialObjectMetadata (metadata-only clients).

use crate::objects::StampCache;
use crate::registry::Strategy;
use crate::request::parse_accept;
use bytes::Bytes;
use kaji_store::KeyValue;
use std::sync::Arc;
use kaji_api::ApiError;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Object,
    Table(IncludeObject),
    PartialMetadata,
}

#[derive(Clone, Copy, Debug)]
pub struct Output {
    pub shape: Shape,
    pub yaml: bool,
}

impl Output {
    pub fn plain() -> Output {
        Output { shape: Shape::Object, yaml: false }
    }

    /// Picks the first Accept entry the server can produce, as upstream's negotiation does.
    pub fn negotiate(accept: &str, include_object: Option<&str>) -> Result<Output, ApiError> {
        if accept.trim().is_empty() {
            return Ok(Output::plain());
        }
        let include = match include_object {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        };
        for m in parse_accept(accept) {
            let yaml = m.essence == "application/yaml";
            let json_like = m.essence == "application/json" || yaml || m.essence == "*/*" || m.essence == "application/*";
            if !json_like {
                continue;
            }
            let group = m.params.get("g").map(String::as_str);
            match (m.params.get("as").map(String::as_str), group) {
                (None, _) => return Ok(Output { shape: Shape::Object, yaml }),
                (Some("Table"), Some("meta.k8s.io")) => return Ok(Output { shape: Shape::Table(include), yaml }),
                (Some("PartialObjectMetadata" | "PartialObjectMetadataList"), Some("meta.k8s.io")) => {
                    return Ok(Output { shape: Shape::PartialMetadata, yaml });
                }
                _ => continue,
            }
        }
        Err(ApiError::not_acceptable(format!(
            "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf; got {accept:?}"
        )))
    }

    pub fn object(&self, strategy: &dyn Strategy, obj: Value) -> Value {
        match self.shape {
            Shape::Object => obj,
            Shape::PartialMetadata => partial(&obj),
            Shape::Table(include) => {
                let rv = obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""));
                table(strategy, json!({"resourceVersion": rv}), &[obj], include)
            }
        }
    }

    pub fn list(&self, strategy: &dyn Strategy, list_kind: &str, api_version: &str, meta: Value, items: Vec<Value>) -> Value {
        match self.shape {
            Shape::Object => json!({"kind": list_kind, "apiVersion": api_version, "metadata": meta, "items": items}),
            Shape::PartialMetadata => json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
                "items": items.iter().map(partial).collect::<Vec<_>>(),
            }),
            Shape::Table(include) => table(strategy, meta, &items, include),
        }
    }
}

/// Bytes per chunk of a streamed list. 256 KiB rather than 64: a LIST of 1,000 ConfigMaps (930 KB)
/// took about 8 % less of the server's CPU, with fewer hand-offs to the connection's task.
pub const CHUNK: usize = 256 * 1024;

/// Chunk buffers come from a small pool and go back to it when the connection has written them.
/// A fresh buffer a chunk meant a page fault per 4 KiB written: the allocator hands freed memory
/// back to the kernel (glibc the tops of its heaps at once, jemalloc after about a second), so
/// lists touched new pages (10 % of the server's CPU in a LIST of 1,000 ConfigMaps, measured
/// with glibc). The pool is bounded (`POOLED` buffers, 2.5 MiB).
mod pool {
    use super::CHUNK;
    use bytes::Bytes;
    use std::sync::Mutex;

    const POOLED: usize = 8;
    const CAPACITY: usize = CHUNK + CHUNK / 4;
    static CHUNKS: Pool = Pool::new();

    /// An empty buffer of at least `CAPACITY` bytes.
    pub fn take() -> Vec<u8> {
        CHUNKS.take()
    }

    /// `buf` as `Bytes` that give the buffer back to the pool when dropped.
    pub fn freeze(buf: Vec<u8>) -> Bytes {
        CHUNKS.freeze(buf)
    }

    pub struct Pool {
        free: Mutex<Vec<Vec<u8>>>,
    }

    impl Pool {
        pub const fn new() -> Pool {
            Pool { free: Mutex::new(Vec::new()) }
        }

        pub fn take(&self) -> Vec<u8> {
            let pooled = self.free.lock().ok().and_then(|mut free| free.pop());
            pooled.unwrap_or_else(|| Vec::with_capacity(CAPACITY))
        }

        pub fn freeze(&'static self, buf: Vec<u8>) -> Bytes {
            Bytes::from_owner(Returned { buf, pool: self })
        }

        fn give_back(&self, mut buf: Vec<u8>) {
            // Buffers that grew for one big object are not kept.
            if buf.capacity() < CAPACITY || buf.capacity() > 2 * CAPACITY {
                return;
            }
            buf.clear();
            if let Ok(mut free) = self.free.lock()
                && free.len() < POOLED
            {
                free.push(buf);
            }
        }
    }

    struct Returned {
        buf: Vec<u8>,
        pool: &'static Pool,
    }

    impl AsRef<[u8]> for Returned {
        fn as_ref(&self) -> &[u8] {
            &self.buf
        }
    }

    impl Drop for Returned {
        fn drop(&mut self) {
            self.pool.give_back(std::mem::take(&mut self.buf));
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn buffers_come_back_once_their_bytes_are_dropped() {
            let pool: &'static Pool = Box::leak(Box::new(Pool::new()));
            let mut buf = pool.take();
            assert!(buf.is_empty() && buf.capacity() >= CAPACITY);
            buf.extend_from_slice(b"{\"items\":[]}");
            let at = buf.as_ptr();
            let bytes = pool.freeze(buf);
            let copy = bytes.clone();
            assert_eq!(&copy[..], b"{\"items\":[]}");
            drop(bytes);
            // Still held by `copy`: a new buffer.
            let other = pool.take();
            assert_ne!(other.as_ptr(), at);
            drop(copy);
            let again = pool.take();
            assert_eq!(again.as_ptr(), at, "the same buffer, given back");
            assert!(again.is_empty(), "given back empty");
            // Grown past twice the size: not kept.
            let mut big = again;
            big.reserve(4 * CAPACITY);
            drop(pool.freeze(big));
            assert!(pool.free.lock().unwrap().is_empty());
            // At most POOLED are kept.
            let many: Vec<Vec<u8>> = (0..POOLED + 5).map(|_| Vec::with_capacity(CAPACITY)).collect();
            for b in many {
                drop(pool.freeze(b));
            }
            assert_eq!(pool.free.lock().unwrap().len(), POOLED);
        }
    }
}

/// A list as JSON, in chunks of about `CHUNK` bytes made as they are sent: `envelope` (kind,
/// apiVersion, metadata and an empty `items`, the last member) with the stored objects spliced
/// into `items`, each stamped with its resourceVersion (`Strategy::write_json_item`). The bytes are
/// those of serialising the envelope with the decoded objects as items.
pub fn list_chunks(strategy: Arc<dyn Strategy>, stamps: Arc<StampCache>, envelope: &Value, items: Vec<KeyValue>) -> impl Iterator<Item = Bytes> + Send + Sync + use<> {
    let mut items = items.into_iter();
    let mut next = Some(open_items(envelope, pool::take()));
    let mut first = true;
    std::iter::from_fn(move || {
        let mut out = next.take()?;
        while out.len() < CHUNK {
            let Some(kv) = items.next() else {
                out.extend_from_slice(b"]}");
                return Some(pool::freeze(out));
            };
            if !first {
                out.push(b',');
            }
            first = false;
            strategy.write_json_item(kv.as_item(), &stamps, &mut out);
        }
        next = Some(pool::take());
        Some(pool::freeze(out))
    })
}

/// `envelope` serialised into `head` up to its (last, empty) `items` opened: `..."items":[`.
fn open_items(envelope: &Value, mut head: Vec<u8>) -> Vec<u8> {
    let _ = serde_json::to_writer(&mut head, envelope);
    debug_assert!(head.ends_with(b"[]}"), "items must be the envelope's last member");
    head.truncate(head.len().saturating_sub(2));
    head
}

/// A whole list as JSON, written as the store reads it (`kaji_store::Store::list_into`): the
/// envelope (kind, apiVersion, metadata with the list's revision) is sent as soon as the revision
/// is known, then the stored objects, stamped (`Strategy::write_json_item`), in chunks of about
/// `CHUNK` bytes as they fill; the same bytes as `list_chunks`. A list that fails midway stops the body short.
pub struct JsonListSink {
    strategy: Arc<dyn Strategy>,
    stamps: Arc<StampCache>,
    /// kind and apiVersion.
    kind: (String, String),
    out: Vec<u8>,
    first: bool,
    tx: tokio::sync::mpsc::UnboundedSender<Bytes>,
}

impl JsonListSink {
    pub fn new(strategy: Arc<dyn Strategy>, stamps: Arc<StampCache>, tx: tokio::sync::mpsc::UnboundedSender<Bytes>) -> JsonListSink {
        let info = strategy.info();
        let kind = (info.list_kind(), info.api_version());
        JsonListSink { strategy, stamps, kind, out: pool::take(), first: true, tx }
    }

    fn send(&mut self) {
        let full = std::mem::replace(&mut self.out, pool::take());
        // A client that went away is not an error here: the read just finishes.
        let _ = self.tx.send(pool::freeze(full));
    }
}

impl kaji_store::ListSink for JsonListSink {
    fn start(&mut self, revision: i64) {
        let envelope = json!({"kind": self.kind.0, "apiVersion": self.kind.1, "metadata": {"resourceVersion": revision.to_string()}, "items": []});
        self.out = open_items(&envelope, std::mem::take(&mut self.out));
        self.send();
    }

    fn item(&mut self, item: kaji_store::ItemRef<'_>) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.strategy.write_json_item(item, &self.stamps, &mut self.out);
        if self.out.len() >= CHUNK {
            self.send();
        }
    }

    fn end(&mut self, _summary: &kaji_store::ListSummary) {
        let mut last = std::mem::take(&mut self.out);
        last.extend_from_slice(b"]}");
        let _ = self.tx.send(pool::freeze(last));
    }
}

fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

/// A meta.k8s.io/v1 Table of `items`, with the kind's columns from `kaji-printers`.
pub fn table(strategy: &dyn Strategy, meta: Value, items: &[Value], include: IncludeObject) -> Value {
    let info = strategy.info();
    let now = jiff::Timestamp::now();
    // Custom kinds print their CRD's columns.
    let (columns, mut cells) = match strategy.table(items, now) {
        Some((columns, cells)) => (columns, Some(cells.into_iter())),
        None => {
            let columns = kaji_printers::columns(info.group, info.kind)
                .iter()
                .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}))
                .collect();
            (columns, None)
        }
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let row_cells = match cells.as_mut() {
                Some(c) => json!(c.next().unwrap_or_default()),
                None => json!(kaji_printers::row(info.group, info.kind, obj, now)),
            };
            let mut row = json!({"cells": row_cells});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = partial(obj),
                IncludeObject::Object => row["object"] = obj.clone(),
            }
            row
        })
        .collect();
    let columns: Vec<Value> = columns;
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": columns, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` stored ConfigMaps with escapes and multi-byte characters in their data.
    fn configmaps(strategy: &dyn Strategy, n: usize) -> Vec<KeyValue> {
        (0..n)
            .map(|i| {
                let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("c{i}"), "namespace": "default"}, "data": {"k": "é\"".repeat(200)}});
                KeyValue { key: strategy.key(Some("default"), &format!("c{i}")), value: crate::objects::encode(&obj), create_revision: 2, mod_revision: 2 + i as i64 }
            })
            .collect()
    }

    #[test]
    fn list_chunks_are_the_serialised_list() {
        let registry = crate::registry::Registry::builtin();
        let strategy = registry.get("", "v1", "configmaps").unwrap().clone();
        for n in [0usize, 1, 2, 300] {
            let items = configmaps(strategy.as_ref(), n);
            let meta = json!({"resourceVersion": "400", "continue": "abc"});
            let envelope = json!({"kind": "ConfigMapList", "apiVersion": "v1", "metadata": meta.clone(), "items": []});
            let chunks: Vec<Bytes> = list_chunks(strategy.clone(), Arc::default(), &envelope, items.clone()).collect();
            assert!(chunks.iter().all(|c| c.len() < 2 * CHUNK));
            assert_eq!(chunks.len() > 1, n == 300);
            let body: Vec<u8> = chunks.concat();
            let decoded: Vec<Value> = items.iter().map(|kv| strategy.decode(kv)).collect();
            let want = serde_json::to_vec(&json!({"kind": "ConfigMapList", "apiVersion": "v1", "metadata": meta, "items": decoded})).unwrap();
            assert_eq!(String::from_utf8(body).unwrap(), String::from_utf8(want).unwrap());
        }
    }

    #[test]
    fn a_streamed_list_is_the_serialised_list() {
        use kaji_store::ListSink;
        let registry = crate::registry::Registry::builtin();
        let strategy = registry.get("", "v1", "configmaps").unwrap().clone();
        for n in [0usize, 1, 2, 300] {
            let items = configmaps(strategy.as_ref(), n);
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let mut sink = JsonListSink::new(strategy.clone(), Arc::default(), tx);
            sink.start(400);
            // The envelope goes out before any item.
            let head = rx.try_recv().expect("the envelope, sent at start");
            assert!(head.ends_with(b"\"items\":["));
            for kv in &items {
                sink.item(kv.as_item());
            }
            sink.end(&kaji_store::ListSummary { revision: 400, more: false, remaining: 0 });
            drop(sink);
            let mut chunks = Vec::new();
            while let Ok(chunk) = rx.try_recv() {
                chunks.push(chunk);
            }
            assert!(chunks.iter().all(|c| c.len() < 2 * CHUNK));
            assert_eq!(chunks.len() > 1, n == 300);
            let body: Vec<u8> = [head].into_iter().chain(chunks).collect::<Vec<_>>().concat();
            let decoded: Vec<Value> = items.iter().map(|kv| strategy.decode(kv)).collect();
            let want = serde_json::to_vec(&json!({"kind": "ConfigMapList", "apiVersion": "v1", "metadata": {"resourceVersion": "400"}, "items": decoded})).unwrap();
            assert_eq!(String::from_utf8(body).unwrap(), String::from_utf8(want).unwrap());
        }
    }
}
