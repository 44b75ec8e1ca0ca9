//! Decodes request bodies in the Kubernetes protobuf wire format (what stock kubectl's typed
//! commands send) into the JSON the same object has. Where to start: [`decode`] reads the
//! envelope (`k8s\0` + runtime.Unknown) and picks the message for the envelope's kind;
//! `object.rs` walks a message with the generated table (`schema.rs`, from k8s.io/api's
//! generated.proto files by `scripts/gen_schema.py`); `special.rs` holds the types whose JSON is
//! not their message shape (Time, IntOrString, Quantity, RawExtension, ...).
//! <https://kubernetes.io/docs/reference/using-api/api-concepts/#protobuf-encoding>

mod object;
#[rustfmt::skip]
mod schema;
mod special;
mod table;
mod wire;

use serde_json::{Map, Value};
use wire::{Reader, WireValue};

/// The media type of the Kubernetes protobuf encoding.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// Decodes one Kubernetes protobuf body into the object's JSON, with `apiVersion` and `kind`
/// taken from the envelope.
///
/// # Errors
/// A message naming the problem when the body is malformed (it never panics), names a kind with
/// no schema here, or uses a content encoding other than none.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    decode_nested(body, 0)
}

/// The envelope: `k8s\0`, then runtime.Unknown {typeMeta = 1 {apiVersion = 1, kind = 2},
/// raw = 2, contentEncoding = 3, contentType = 4}.
pub(crate) fn decode_nested(body: &[u8], depth: usize) -> Result<Value, String> {
    let Some(unknown) = body.strip_prefix(MAGIC) else {
        return Err("not a Kubernetes protobuf body (missing the k8s\\0 prefix)".into());
    };
    let (mut api_version, mut kind, mut raw, mut encoding, mut content_type) = (String::new(), String::new(), &[][..], String::new(), String::new());
    let mut r = Reader::new(unknown);
    while let Some((number, value)) = r.field()? {
        match (number, value) {
            (1, WireValue::Bytes(type_meta)) => {
                let mut t = Reader::new(type_meta);
                while let Some((n, v)) = t.field()? {
                    match (n, v) {
                        (1, WireValue::Bytes(b)) => api_version = String::from_utf8_lossy(b).into_owned(),
                        (2, WireValue::Bytes(b)) => kind = String::from_utf8_lossy(b).into_owned(),
                        _ => {}
                    }
                }
            }
            (2, WireValue::Bytes(b)) => raw = b,
            (3, WireValue::Bytes(b)) => encoding = String::from_utf8_lossy(b).into_owned(),
            (4, WireValue::Bytes(b)) => content_type = String::from_utf8_lossy(b).into_owned(),
            _ => {}
        }
    }
    if !encoding.is_empty() {
        return Err(format!("unsupported contentEncoding {encoding:?}"));
    }
    let decoded = if content_type.is_empty() || content_type == MEDIA_TYPE {
        if kind.is_empty() {
            return Err("the protobuf envelope names no kind".into());
        }
        let Some(message) = table::message_for_kind(&api_version, &kind) else {
            return Err(format!("no protobuf schema for kind {kind:?} in version {api_version:?}"));
        };
        object::message(message.name, raw, depth)?
    } else if content_type.starts_with("application/json") {
        serde_json::from_slice(raw).map_err(|e| format!("embedded JSON: {e}"))?
    } else {
        return Err(format!("unsupported contentType {content_type:?}"));
    };
    let Value::Object(fields) = decoded else {
        return Err(format!("{kind} did not decode to an object"));
    };
    let mut obj = Map::new();
    if !api_version.is_empty() {
        obj.insert("apiVersion".into(), Value::String(api_version));
    }
    if !kind.is_empty() {
        obj.insert("kind".into(), Value::String(kind));
    }
    for (k, v) in fields {
        if !obj.contains_key(&k) {
            obj.insert(k, v);
        }
    }
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests;
