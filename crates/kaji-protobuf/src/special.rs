//! Messages whose JSON is not their field-by-field shape: apimachinery's Time, MicroTime,
//! Duration, FieldsV1, IntOrString, Quantity and RawExtension, and apiextensions' JSON and
//! JSONSchemaPropsOr* unions. Each follows the Go type's MarshalJSON.

use crate::object;
use crate::wire::{Reader, WireValue};
use serde_json::Value;

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";
const EXT: &str = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1";

/// Some(JSON) when `name` is one of the special messages.
pub(crate) fn decode(name: &str, data: &[u8], depth: usize) -> Result<Option<Value>, String> {
    let v = if let Some(meta) = name.strip_prefix(META).and_then(|n| n.strip_prefix('.')) {
        match meta {
            "Time" => time(data, false)?,
            "MicroTime" => time(data, true)?,
            "Duration" => duration(data)?,
            "FieldsV1" => raw_json(data, depth)?,
            _ => return Ok(None),
        }
    } else if let Some(ext) = name.strip_prefix(EXT).and_then(|n| n.strip_prefix('.')) {
        match ext {
            "JSON" => raw_json(data, depth)?,
            "JSONSchemaPropsOrArray" | "JSONSchemaPropsOrBool" | "JSONSchemaPropsOrStringArray" => schema_union(ext, data, depth)?,
            _ => return Ok(None),
        }
    } else {
        match name {
            "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => int_or_string(data)?,
            "k8s.io.apimachinery.pkg.api.resource.Quantity" | "k8s.io.apimachinery.pkg.api.resource.QuantityValue" => {
                Value::String(string_field(data, 1)?.unwrap_or_default())
            }
            "k8s.io.apimachinery.pkg.runtime.RawExtension" => raw_json(data, depth)?,
            _ => return Ok(None),
        }
    };
    Ok(Some(v))
}

/// The last value of string/bytes field `number`, if present.
fn string_field(data: &[u8], number: u32) -> Result<Option<String>, String> {
    let mut out = None;
    let mut r = Reader::new(data);
    while let Some((n, v)) = r.field()? {
        if n == number {
            let WireValue::Bytes(b) = v else {
                return Err(format!("field {n} must be length-delimited"));
            };
            out = Some(String::from_utf8_lossy(b).into_owned());
        }
    }
    Ok(out)
}

/// The varint fields of a small message, by number (1-based, up to `N`).
fn varints<const N: usize>(data: &[u8]) -> Result<[Option<u64>; N], String> {
    let mut out = [None; N];
    let mut r = Reader::new(data);
    while let Some((n, v)) = r.field()? {
        if let (Some(slot), WireValue::Varint(x)) = (out.get_mut((n as usize).wrapping_sub(1)), v) {
            *slot = Some(x);
        }
    }
    Ok(out)
}

/// Time and MicroTime (Timestamp {seconds = 1, nanos = 2}): RFC 3339 in UTC, whole seconds for
/// Time, six fractional digits for MicroTime. An empty message is the zero time: null.
#[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation)] // two's complement int64/int32
fn time(data: &[u8], micro: bool) -> Result<Value, String> {
    if data.is_empty() {
        return Ok(Value::Null);
    }
    let [seconds, nanos] = varints::<2>(data)?;
    let seconds = seconds.unwrap_or(0) as i64;
    let nanos = nanos.unwrap_or(0) as i64 as i32;
    if !(0..1_000_000_000).contains(&nanos) {
        return Err(format!("time nanos {nanos} out of range"));
    }
    let ts = jiff::Timestamp::new(seconds, 0).map_err(|e| format!("time out of range: {e}"))?;
    let base = ts.strftime("%Y-%m-%dT%H:%M:%S");
    Ok(Value::String(if micro { format!("{base}.{:06}Z", nanos / 1000) } else { format!("{base}Z") }))
}

/// metav1.Duration (duration = 1, nanoseconds): Go's time.Duration String form, such as "1h0m0s".
#[allow(clippy::cast_possible_wrap)] // two's complement int64
fn duration(data: &[u8]) -> Result<Value, String> {
    let [d] = varints::<1>(data)?;
    Ok(Value::String(go_duration(d.unwrap_or(0) as i64)))
}

pub(crate) fn go_duration(d: i64) -> String {
    fn with_fraction(v: u64, scale: u64, digits: usize) -> String {
        let (whole, frac) = (v / scale, v % scale);
        if frac == 0 {
            return whole.to_string();
        }
        let frac = format!("{frac:0digits$}");
        format!("{whole}.{}", frac.trim_end_matches('0'))
    }
    if d == 0 {
        return "0s".into();
    }
    let sign = if d < 0 { "-" } else { "" };
    let u = d.unsigned_abs();
    let body = if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        format!("{}µs", with_fraction(u, 1_000, 3))
    } else if u < 1_000_000_000 {
        format!("{}ms", with_fraction(u, 1_000_000, 6))
    } else {
        let (hours, rest) = (u / 3_600_000_000_000, u % 3_600_000_000_000);
        let (minutes, nanos) = (rest / 60_000_000_000, rest % 60_000_000_000);
        let mut out = String::new();
        if hours > 0 {
            out = format!("{hours}h");
        }
        if hours > 0 || minutes > 0 {
            out = format!("{out}{minutes}m");
        }
        format!("{out}{}s", with_fraction(nanos, 1_000_000_000, 9))
    };
    format!("{sign}{body}")
}

/// IntOrString {type = 1 (0 int, 1 string), intVal = 2, strVal = 3}: a JSON number or string.
#[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation)] // two's complement int32
fn int_or_string(data: &[u8]) -> Result<Value, String> {
    let [kind, int_val, _] = varints::<3>(data)?;
    if kind.unwrap_or(0) == 1 {
        return Ok(Value::String(string_field(data, 3)?.unwrap_or_default()));
    }
    Ok(Value::from(int_val.unwrap_or(0) as i64 as i32))
}

/// RawExtension, FieldsV1 and apiextensions' JSON (raw = 1): the embedded JSON itself (or a
/// nested protobuf object). Empty is null.
fn raw_json(data: &[u8], depth: usize) -> Result<Value, String> {
    let mut raw: &[u8] = &[];
    let mut r = Reader::new(data);
    while let Some((n, v)) = r.field()? {
        if let (1, WireValue::Bytes(b)) = (n, v) {
            raw = b;
        }
    }
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    if raw.starts_with(crate::MAGIC) {
        return crate::decode_nested(raw, depth + 1);
    }
    serde_json::from_slice(raw).map_err(|e| format!("embedded JSON: {e}"))
}

/// JSONSchemaPropsOrArray {schema = 1, jSONSchemas = 2}, JSONSchemaPropsOrBool {allows = 1,
/// schema = 2} and JSONSchemaPropsOrStringArray {schema = 1, property = 2}.
fn schema_union(which: &str, data: &[u8], depth: usize) -> Result<Value, String> {
    let props = format!("{EXT}.JSONSchemaProps");
    let (mut schema, mut list, mut allows) = (None, Vec::new(), false);
    let schema_number = if which == "JSONSchemaPropsOrBool" { 2 } else { 1 };
    let mut r = Reader::new(data);
    while let Some((n, v)) = r.field()? {
        match (n, v) {
            (n, WireValue::Bytes(b)) if n == schema_number => schema = Some(object::message(&props, b, depth + 1)?),
            (1, WireValue::Varint(x)) if which == "JSONSchemaPropsOrBool" => allows = x != 0,
            (2, WireValue::Bytes(b)) if which == "JSONSchemaPropsOrArray" => list.push(object::message(&props, b, depth + 1)?),
            (2, WireValue::Bytes(b)) if which == "JSONSchemaPropsOrStringArray" => {
                list.push(Value::String(String::from_utf8_lossy(b).into_owned()));
            }
            _ => {}
        }
    }
    Ok(match which {
        "JSONSchemaPropsOrBool" => schema.unwrap_or(Value::Bool(allows)),
        _ if !list.is_empty() => Value::Array(list),
        _ => schema.unwrap_or(Value::Null),
    })
}
