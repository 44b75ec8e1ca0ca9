//! Object plumbing shared by the verbs: storage keys, stamping resourceVersion on read, metadata
//! accessors, timestamps, generated names.

use kaji_api::ResourceInfo;
use kaji_store::KeyValue;
use serde_json::{Map, Value, json};

/// `/registry/<resource>/[<namespace>/]<name>`: Kubernetes' layout (`registry::keys`).
pub fn key(info: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    crate::registry::keys::key(info, namespace, name)
}

/// The listing prefix for a kind, in one namespace or in all of them. Always ends with '/'.
pub fn prefix(info: &ResourceInfo, namespace: Option<&str>) -> String {
    crate::registry::keys::prefix(info, namespace)
}

/// Decodes a stored value and stamps `metadata.resourceVersion` with its revision.
pub fn decode(kv: &KeyValue) -> Value {
    let mut v: Value = serde_json::from_slice(&kv.value).unwrap_or_else(|e| {
        tracing::error!(key = %kv.key, error = %e, "stored object is not JSON");
        json!({})
    });
    set_rv(&mut v, kv.mod_revision);
    v
}

/// Appends a stored object (JSON as `encode` wrote it, without resourceVersion) to `out` with
/// `metadata.resourceVersion` set to `rv`, without parsing it into a `Value`: the member is
/// spliced in where `set_rv`'s insert puts it (before `metadata.managedFields`, else at the end of
/// `metadata`), so the bytes are those `serde_json::to_vec(&decode(kv))` gives for what `encode`
/// stores. Only the members before `managedFields` are scanned when the bytes hold no
/// `"resourceVersion"` anywhere (one SIMD search; then no such member can follow), not the
/// managedFields after them; otherwise the whole `metadata` is scanned (stored
/// objects come from serde_json: their keys are unique). Answers false, leaving `out` as it was,
/// for anything unexpected (not an object, an escaped key, a resourceVersion already there, bytes
/// that do not scan): the caller then decodes.
pub fn write_stamped(out: &mut Vec<u8>, raw: &[u8], rv: i64) -> bool {
    match splice_of(raw) {
        Some(splice) => {
            stamp(out, raw, rv, splice);
            true
        }
        None => false,
    }
}

/// Where `write_stamped` puts the resourceVersion in `raw`; None for anything unexpected.
fn splice_of(raw: &[u8]) -> Option<Splice> {
    static RV_KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> = std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"resourceVersion\""));
    let quick = RV_KEY.find(raw).is_none();
    metadata_splice(raw, quick)
}

/// Appends `raw` with the resourceVersion `rv` spliced in where `splice` says.
fn stamp(out: &mut Vec<u8>, raw: &[u8], rv: i64, splice: Splice) {
    let member = |out: &mut Vec<u8>| {
        use std::io::Write as _;
        // Formatted in place: no String a member.
        let _ = write!(out, "\"resourceVersion\":\"{rv}\"");
    };
    match splice {
        Splice::Nothing => out.extend_from_slice(raw),
        Splice::At { close, empty } => {
            out.reserve(raw.len() + 40);
            out.extend_from_slice(&raw[..close]);
            if !empty {
                out.push(b',');
            }
            member(out);
            out.extend_from_slice(&raw[close..]);
        }
        Splice::Before { at } => {
            out.reserve(raw.len() + 40);
            out.extend_from_slice(&raw[..at]);
            member(out);
            out.push(b',');
            out.extend_from_slice(&raw[at..]);
        }
    }
}

/// Where the resourceVersion went in the stored objects written out lately, so that the next
/// list of the same (unchanged) objects copies them without scanning for the place, which was
/// about 15 % of the server's CPU in a LIST of 1,000 ConfigMaps. A value stored at a key and
/// revision never changes: an entry is found by the revision and checked against a hash of the
/// key, the value's length and the bytes at the place. One per API server, as revisions are its
/// store's. Bounded: a shard that is full is emptied (`SHARDS` x `PER_SHARD` entries, under
/// 2 MiB).
pub struct StampCache {
    shards: Vec<std::sync::Mutex<std::collections::HashMap<i64, Stamp, std::hash::BuildHasherDefault<RevisionHasher>>>>,
}

const SHARDS: usize = 16;
const PER_SHARD: usize = 2048;

#[derive(Clone, Copy)]
struct Stamp {
    key: u64,
    len: usize,
    splice: Splice,
}

impl Default for StampCache {
    fn default() -> Self {
        StampCache { shards: (0..SHARDS).map(|_| Default::default()).collect() }
    }
}

impl StampCache {
    /// `write_stamped` of the object stored at `key` with revision `rv`, through the cache.
    pub fn write(&self, out: &mut Vec<u8>, key: &str, raw: &[u8], rv: i64) -> bool {
        let shard = &self.shards[rv.rem_euclid(SHARDS as i64) as usize];
        let hash = key_hash(key);
        let known = shard
            .lock()
            .ok()
            .and_then(|m| m.get(&rv).copied())
            .filter(|s| s.key == hash && s.len == raw.len() && s.splice.fits(raw))
            .map(|s| s.splice);
        let splice = match known {
            Some(splice) => splice,
            None => {
                let Some(splice) = splice_of(raw) else { return false };
                if let Ok(mut m) = shard.lock() {
                    if m.len() >= PER_SHARD {
                        m.clear();
                    }
                    m.insert(rv, Stamp { key: hash, len: raw.len(), splice });
                }
                splice
            }
        };
        stamp(out, raw, rv, splice);
        true
    }
}

/// A revision's hash for the cache's maps: revisions are already spread, one multiply does.
#[derive(Default)]
struct RevisionHasher(u64);

impl std::hash::Hasher for RevisionHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = bytes.iter().fold(self.0, |h, b| mix(h, u64::from(*b)));
    }

    fn write_i64(&mut self, v: i64) {
        self.0 = (v as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A 64-bit hash of a key (eight bytes a step), to tell apart keys written in one revision.
fn key_hash(key: &str) -> u64 {
    let mut words = key.as_bytes().chunks_exact(8);
    let h = (&mut words).fold(key.len() as u64, |h, w| mix(h, u64::from_le_bytes(w.try_into().unwrap_or_default())));
    words.remainder().iter().fold(h, |h, b| mix(h, u64::from(*b)))
}

/// One step of an Fx-style hash.
fn mix(h: u64, w: u64) -> u64 {
    (h.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95)
}

/// Where `write_stamped` puts the resourceVersion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Splice {
    /// No `metadata` object: `set_rv` would leave the object as it is.
    Nothing,
    /// Before the `}` at `close` that ends `metadata`; `empty` when it has no members.
    At { close: usize, empty: bool },
    /// Before the member (`managedFields`) whose key starts at `at`.
    Before { at: usize },
}

impl Splice {
    /// Whether `raw` has at the place what the scan found there.
    fn fits(&self, raw: &[u8]) -> bool {
        match *self {
            Splice::Nothing => true,
            Splice::At { close, .. } => raw.get(close) == Some(&b'}'),
            Splice::Before { at } => raw.get(at..).is_some_and(|r| r.starts_with(b"\"managedFields\"")),
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// The string starting at `b[i]` (a quote): the index after its closing quote, and whether it
/// holds escapes.
fn string_end(b: &[u8], i: usize) -> Option<(usize, bool)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        j += memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[j] == b'"' {
            return Some((j + 1, escaped));
        }
        escaped = true;
        j += 2;
    }
}

/// The index after the JSON value starting at `b[i]`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i).map(|(e, _)| e),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?.0;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        b'}' | b']' | b',' | b':' => None,
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                j += 1;
            }
            Some(j)
        }
    }
}

/// The key starting at `b[i]` and the index of its value; None for an escaped key.
fn member(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
    let (end, escaped) = string_end(b, i)?;
    if escaped {
        return None;
    }
    let colon = skip_ws(b, end);
    if b.get(colon) != Some(&b':') {
        return None;
    }
    Some((&b[i + 1..end - 1], skip_ws(b, colon + 1)))
}

/// Where the resourceVersion goes; `quick` when the bytes hold no `"resourceVersion"`, so the
/// scan may stop at `managedFields`.
fn metadata_splice(b: &[u8], quick: bool) -> Option<Splice> {
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Some(Splice::Nothing);
    }
    loop {
        let (key, at) = member(b, i)?;
        if key == b"metadata" {
            if b.get(at) != Some(&b'{') {
                // null or not an object: set_rv leaves it alone.
                value_end(b, at)?;
                return Some(Splice::Nothing);
            }
            let mut j = skip_ws(b, at + 1);
            if b.get(j) == Some(&b'}') {
                return Some(Splice::At { close: j, empty: true });
            }
            let mut managed_fields = None;
            loop {
                let (key, at) = member(b, j)?;
                if key == b"resourceVersion" {
                    return None;
                }
                if key == b"managedFields" {
                    if quick {
                        return Some(Splice::Before { at: j });
                    }
                    managed_fields = Some(j);
                }
                j = skip_ws(b, value_end(b, at)?);
                match b.get(j)? {
                    b',' => j = skip_ws(b, j + 1),
                    b'}' => {
                        return Some(match managed_fields {
                            Some(at) => Splice::Before { at },
                            None => Splice::At { close: j, empty: false },
                        });
                    }
                    _ => return None,
                }
            }
        }
        i = skip_ws(b, value_end(b, at)?);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b'}' => return Some(Splice::Nothing),
            _ => return None,
        }
    }
}

/// Sets `metadata.resourceVersion`; a new member goes before `managedFields` (kept last, as in
/// upstream's ObjectMeta), else at the end. `write_stamped` splices it at the same place.
pub fn set_rv(v: &mut Value, rv: i64) {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        let value = json!(rv.to_string());
        match meta.get_mut("resourceVersion") {
            Some(old) => *old = value,
            None => match meta.keys().position(|k| k == "managedFields") {
                Some(i) => {
                    meta.shift_insert(i, "resourceVersion".into(), value);
                }
                None => {
                    meta.insert("resourceVersion".into(), value);
                }
            },
        }
    }
}

/// The bytes to store: the object without its resourceVersion (the store's revision is the truth).
/// Serialised as it is, leaving that one member out, rather than from a copy without it.
pub fn encode(v: &Value) -> Vec<u8> {
    serde_json::to_vec(&Skipping { v, skip: &["resourceVersion"] }).unwrap_or_default()
}

/// Whether two objects are equal but for `metadata.resourceVersion` and `metadata.managedFields`
/// (an update that changes nothing else is no update), without copying them.
pub fn same_but_bookkeeping(a: &Value, b: &Value) -> bool {
    const BOOKKEEPING: [&str; 2] = ["resourceVersion", "managedFields"];
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let meta_eq = |x: Option<&Value>, y: Option<&Value>| match (x.and_then(Value::as_object), y.and_then(Value::as_object)) {
        (Some(x), Some(y)) => {
            let kept = |m: &'_ Map<String, Value>| m.iter().filter(|(k, _)| !BOOKKEEPING.contains(&k.as_str())).count();
            kept(x) == kept(y) && x.iter().filter(|(k, _)| !BOOKKEEPING.contains(&k.as_str())).all(|(k, v)| y.get(k) == Some(v))
        }
        _ => x == y,
    };
    a.len() == b.len() && a.iter().all(|(k, v)| if k == "metadata" { b.contains_key(k) && meta_eq(Some(v), b.get(k)) } else { b.get(k) == Some(v) })
}

/// Serialises an object with the `skip` members of its top-level `metadata` left out.
struct Skipping<'a> {
    v: &'a Value,
    skip: &'a [&'a str],
}

impl serde::Serialize for Skipping<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Some(obj) = self.v.as_object() else {
            return self.v.serialize(s);
        };
        let mut map = s.serialize_map(Some(obj.len()))?;
        for (k, v) in obj {
            match v.as_object() {
                Some(meta) if k == "metadata" => {
                    map.serialize_entry(k, &MetaSkipping { meta, skip: self.skip })?;
                }
                _ => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

struct MetaSkipping<'a> {
    meta: &'a Map<String, Value>,
    skip: &'a [&'a str],
}

impl serde::Serialize for MetaSkipping<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.meta.iter().filter(|(k, _)| !self.skip.contains(&k.as_str())) {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

pub fn meta(v: &Value) -> Option<&Map<String, Value>> {
    v.get("metadata").and_then(Value::as_object)
}

pub fn meta_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.get("metadata").is_some_and(Value::is_object) {
        v["metadata"] = json!({});
    }
    v.get_mut("metadata").and_then(Value::as_object_mut).expect("metadata was just made an object")
}

pub fn meta_str<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    meta(v).and_then(|m| m.get(field)).and_then(Value::as_str)
}

/// Drops empty (or null) `labels`, `annotations`, `finalizers` and `ownerReferences`: upstream
/// stores ObjectMeta through Go types whose `omitempty` makes an empty map or list vanish, so a
/// patch that sets `annotations: {}` leaves no trace.
pub fn drop_empty_meta(v: &mut Value) {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in ["labels", "annotations", "finalizers", "ownerReferences"] {
            let empty = match meta.get(k) {
                Some(Value::Object(m)) => m.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Null) => true,
                _ => false,
            };
            if empty {
                meta.remove(k);
            }
        }
    }
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Upstream's generateName suffix: 5 characters from an alphabet without vowels or look-alikes.
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}

pub fn finalizers(v: &Value) -> Vec<String> {
    meta(v)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|fs| fs.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

pub fn is_deleting(v: &Value) -> bool {
    meta(v).and_then(|m| m.get("deletionTimestamp")).is_some_and(|t| !t.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `write_stamped` must equal: the stored object decoded, stamped and serialised.
    fn reference(raw: &[u8], rv: i64) -> Vec<u8> {
        let kv = KeyValue { key: "/k".into(), value: raw.to_vec(), create_revision: rv, mod_revision: rv };
        serde_json::to_vec(&decode(&kv)).unwrap()
    }

    fn stamped(raw: &[u8], rv: i64) -> Option<Vec<u8>> {
        let mut out = b"[".to_vec();
        write_stamped(&mut out, raw, rv).then(|| out[1..].to_vec())
    }

    #[test]
    fn splices_resource_version_like_decode_and_serialise() {
        let objects = [
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "default"}, "data": {"k": "v"}}),
            json!({"kind": "X", "metadata": {}}),
            json!({"metadata": {}, "spec": {"metadata": {"name": "inner"}}}),
            json!({"kind": "NoMeta", "spec": {"metadata": {"name": "inner"}}}),
            json!({}),
            json!({"metadata": null, "kind": "Null"}),
            json!({"metadata": "text"}),
            json!({"spec": {"a": [1, 2.5, -3e-7, true, false, null, {"b": "}]{["}]}, "metadata": {"name": "late"}, "status": {}}),
            json!({"metadata": {"name": "ünïcødé-名前", "annotations": {"q": "say \"hi\" \\ \n\t\u{1} }{", "emoji": "🦀"}, "labels": {"a": "b"}}}),
            json!({"metadata": {"managedFields": [{"fieldsV1": {"f:metadata": {"f:labels": {".": {}, "k:{\"name\":\"web\"}": {}}}}}], "uid": "u"}, "data": {"resourceVersion": "not meta"}}),
            json!({"data": {"x": "\"metadata\":{"}, "metadata": {"generation": 3, "deletionGracePeriodSeconds": 0, "finalizers": ["a/b"]}}),
            // managedFields last (what the server writes), and not last; with and without a
            // "resourceVersion" text elsewhere (the quick path and the whole scan).
            json!({"apiVersion": "v1", "data": {"p": "x"}, "kind": "ConfigMap", "metadata": {"name": "a", "uid": "u", "managedFields": [{"manager": "m", "fieldsV1": {"f:data": {}}}]}}),
            json!({"metadata": {"name": "a", "managedFields": [{"manager": "m"}], "labels": {"z": "1"}}, "spec": {}}),
            json!({"metadata": {"name": "a", "managedFields": [], "annotations": {"note": "\"resourceVersion\""}}}),
            json!({"data": {"resourceVersion": "1"}, "metadata": {"managedFields": [{"manager": "m"}]}}),
            json!({"metadata": {"name": "a", "annotations": {"last": "{\"metadata\":{\"resourceVersion\":\"3\"}}"}, "managedFields": [{}]}}),
        ];
        for obj in objects {
            let raw = encode(&obj);
            for rv in [2, 1234567890123] {
                let got = stamped(&raw, rv).unwrap_or_else(|| panic!("no splice for {obj}"));
                assert_eq!(String::from_utf8(got.clone()).unwrap(), String::from_utf8(reference(&raw, rv)).unwrap(), "{obj}");
                let back: Value = serde_json::from_slice(&got).unwrap();
                let mut want = obj.clone();
                set_rv(&mut want, rv);
                assert_eq!(back, want);
            }
        }
    }

    #[test]
    fn the_stamp_cache_writes_what_write_stamped_writes() {
        let cache = StampCache::default();
        let write = |key: &str, obj: &Value, rv: i64| {
            let raw = encode(obj);
            let mut out = Vec::new();
            assert!(cache.write(&mut out, key, &raw, rv));
            assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(reference(&raw, rv)).unwrap(), "{key} {obj}");
        };
        let with_fields = json!({"apiVersion": "v1", "data": {"p": "x"}, "kind": "ConfigMap", "metadata": {"name": "a", "uid": "u", "managedFields": [{"manager": "m"}]}});
        let without = json!({"apiVersion": "v1", "data": {"p": "y"}, "kind": "ConfigMap", "metadata": {"name": "a", "uid": "u"}});
        // First from the scan, then from the cache: the same bytes.
        write("/registry/configmaps/default/a", &with_fields, 7);
        write("/registry/configmaps/default/a", &with_fields, 7);
        let rv = 7i64;
        let shard = &cache.shards[rv.rem_euclid(SHARDS as i64) as usize];
        assert!(shard.lock().unwrap().contains_key(&rv), "remembered");
        // Another key at the same revision, another length, or another place: not taken from the
        // entry of the first (written in one transaction, or by another store).
        write("/registry/configmaps/default/b", &without, 7);
        write("/registry/configmaps/default/b", &with_fields, 7);
        let longer = json!({"apiVersion": "v1", "data": {"p": "x"}, "kind": "ConfigMap", "metadata": {"name": "ab", "uid": "u", "managedFields": [{"manager": "m"}]}});
        write("/registry/configmaps/default/b", &longer, 7);
        let same_length = json!({"apiVersion": "v1", "data": {"p": "x"}, "kind": "ConfigMap", "metadata": {"uid": "u", "name": "a", "managedFields": [{"manager": "m"}]}});
        write("/registry/configmaps/default/b", &same_length, 7);
        let moved = json!({"apiVersion": "v1", "data": {"pp": "x"}, "kind": "ConfigMap", "metadata": {"name": "", "uid": "u", "managedFields": [{"manager": "m"}]}});
        assert_eq!(encode(&moved).len(), encode(&with_fields).len());
        write("/registry/configmaps/default/b", &moved, 7);
        // The same key, revision and length with the place elsewhere (only another store could
        // hold it): the bytes at the remembered place tell.
        let shifted = json!({"apiVersion": "v1", "data": {"ppp": "x"}, "kind": "ConfigMap", "metadata": {"name": "", "uid": "u", "managedFields": [{"manager": ""}]}});
        assert_eq!(encode(&shifted).len(), encode(&moved).len());
        write("/registry/configmaps/default/b", &shifted, 7);
        // Bounded: a full shard is emptied.
        for i in 0..(PER_SHARD as i64 + 10) {
            write("/registry/configmaps/default/c", &without, 1000 + i * SHARDS as i64);
        }
        assert!(cache.shards.iter().all(|s| s.lock().unwrap().len() <= PER_SHARD));
        // Bytes that do not scan are refused, as write_stamped refuses them.
        let mut out = Vec::new();
        assert!(!cache.write(&mut out, "/x", b"[1]", 3));
        assert!(out.is_empty());
    }

    #[test]
    fn encode_and_compare_leave_out_bookkeeping() {
        let obj = json!({"kind": "X", "metadata": {"name": "a", "resourceVersion": "5", "labels": {"resourceVersion": "x"}}, "spec": {"metadata": {"resourceVersion": "in spec"}}});
        let mut want = obj.clone();
        want["metadata"].as_object_mut().unwrap().remove("resourceVersion");
        assert_eq!(encode(&obj), serde_json::to_vec(&want).unwrap());
        for odd in [json!({"metadata": null}), json!({"metadata": "x"}), json!([1]), json!({})] {
            assert_eq!(encode(&odd), serde_json::to_vec(&odd).unwrap());
        }
        let reference = |a: &Value, b: &Value| {
            let strip = |v: &Value| {
                let mut v = v.clone();
                if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                    m.remove("managedFields");
                }
                v
            };
            strip(a) == strip(b)
        };
        let base = json!({"metadata": {"name": "a", "resourceVersion": "1", "managedFields": [1]}, "spec": {"x": 1}});
        let variants = [
            json!({"metadata": {"name": "a", "resourceVersion": "2", "managedFields": [2]}, "spec": {"x": 1}}),
            json!({"metadata": {"name": "a"}, "spec": {"x": 1}}),
            json!({"metadata": {"name": "b", "resourceVersion": "1"}, "spec": {"x": 1}}),
            json!({"metadata": {"name": "a", "uid": "u"}, "spec": {"x": 1}}),
            json!({"metadata": {"name": "a"}, "spec": {"x": 2}}),
            json!({"metadata": {"name": "a"}, "spec": {"x": 1}, "status": {}}),
            json!({"metadata": null, "spec": {"x": 1}}),
            json!({"spec": {"x": 1}}),
            json!({"metadata": {}, "spec": {"x": 1}}),
            json!({"metadata": {"resourceVersion": "3"}, "spec": {"x": 1}}),
            json!([1]),
        ];
        for a in variants.iter().chain([&base]) {
            for b in variants.iter().chain([&base]) {
                assert_eq!(same_but_bookkeeping(a, b), reference(a, b), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn other_stored_forms_keep_their_meaning_or_fall_back() {
        // Whitespace (not what encode writes) is kept; the meaning is the same.
        let raw = br#" { "kind" : "X" , "metadata" : { "name" : "a" } , "n" : 1 } "#;
        let got: Value = serde_json::from_slice(&stamped(raw, 7).unwrap()).unwrap();
        assert_eq!(got, json!({"kind": "X", "metadata": {"name": "a", "resourceVersion": "7"}, "n": 1}));
        // Escaped keys, a resourceVersion already stored, and bytes that are not an object fall
        // back to decoding.
        for raw in [
            &br#"{"metad\u0061ta":{"name":"a"}}"#[..],
            br#"{"metadata":{"n\"ame":"a"}}"#,
            br#"{"metadata":{"name":"a","resourceVersion":"3"}}"#,
            b"[1,2]",
            b"",
            b"{\"metadata\":{\"name\":\"a\"",
            b"{\"metadata\" {}}",
            b"not json",
        ] {
            let mut out = b"keep".to_vec();
            assert!(!write_stamped(&mut out, raw, 7), "{}", String::from_utf8_lossy(raw));
            assert_eq!(out, b"keep");
        }
    }
}
