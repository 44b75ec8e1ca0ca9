//! One message to JSON, driven by the generated table.

use crate::special;
use crate::table::{self, Field, Kind, Shape};
use crate::wire::{Reader, WireValue};
use base64::Engine;
use serde_json::{Map, Number, Value};

/// Deeper nesting than any built-in kind has (JSONSchemaProps recurse, but not this far).
const MAX_DEPTH: usize = 100;

/// Decodes the message `name` from `data`.
pub(crate) fn message(name: &str, data: &[u8], depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("messages nested deeper than {MAX_DEPTH}"));
    }
    if let Some(v) = special::decode(name, data, depth)? {
        return Ok(v);
    }
    let Some(schema) = table::message(name) else {
        return Err(format!("no schema for message {name}"));
    };
    let mut obj = Map::new();
    let mut r = Reader::new(data);
    while let Some((number, wire)) = r.field()? {
        let Some(field) = schema.field(number) else {
            continue; // unknown fields are skipped, as proto decoders do
        };
        let at = || format!("{}.{}", short(name), field.json);
        match field.shape {
            Shape::Single => {
                let v = value(field.kind, wire, depth).map_err(|e| format!("{}: {e}", at()))?;
                if field.inline {
                    if let Value::Object(inner) = v {
                        obj.extend(inner);
                    }
                } else if v.is_null() || (field.omit_zero && is_zero(&v)) {
                    obj.remove(field.json);
                } else {
                    obj.insert(field.json.to_string(), v);
                }
            }
            Shape::Repeated => {
                let items = repeated(field, wire, depth).map_err(|e| format!("{}: {e}", at()))?;
                let slot = obj.entry(field.json).or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = slot {
                    list.extend(items);
                }
            }
            Shape::Map => {
                let WireValue::Bytes(entry) = wire else {
                    return Err(format!("{}: a map entry must be length-delimited", at()));
                };
                let (k, v) = map_entry(field.kind, entry, depth).map_err(|e| format!("{}: {e}", at()))?;
                let slot = obj.entry(field.json).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = slot {
                    m.insert(k, v);
                }
            }
        }
    }
    if schema.array {
        return Ok(obj.remove("items").unwrap_or_else(|| Value::Array(Vec::new())));
    }
    Ok(Value::Object(obj))
}

fn short(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

/// A repeated field's values: one per occurrence, or several packed into one for scalars.
fn repeated(field: &Field, wire: WireValue<'_>, depth: usize) -> Result<Vec<Value>, String> {
    let packable = !matches!(field.kind, Kind::Str | Kind::Bytes | Kind::Message(_));
    match wire {
        WireValue::Bytes(packed) if packable => {
            let mut r = Reader::new(packed);
            let mut out = Vec::new();
            while !r.is_empty() {
                let item = match field.kind {
                    Kind::Double => WireValue::Fixed64(r.fixed64()?),
                    Kind::Float => WireValue::Fixed32(r.fixed32()?),
                    _ => WireValue::Varint(r.varint()?),
                };
                out.push(value(field.kind, item, depth)?);
            }
            Ok(out)
        }
        _ => Ok(vec![value(field.kind, wire, depth)?]),
    }
}

/// A map entry message: key = 1 (string), value = 2. A missing value is the kind's zero value.
fn map_entry(kind: Kind, entry: &[u8], depth: usize) -> Result<(String, Value), String> {
    let mut r = Reader::new(entry);
    let (mut key, mut val) = (String::new(), None);
    while let Some((number, wire)) = r.field()? {
        match (number, wire) {
            (1, WireValue::Bytes(b)) => key = String::from_utf8_lossy(b).into_owned(),
            (1, _) => return Err("a map key must be a string".into()),
            (2, w) => val = Some(value(kind, w, depth)?),
            _ => {}
        }
    }
    let val = match val {
        Some(v) => v,
        None => match kind {
            Kind::Message(_) => value(kind, WireValue::Bytes(&[]), depth)?,
            Kind::Str | Kind::Bytes => Value::String(String::new()),
            Kind::Bool => Value::Bool(false),
            _ => Value::from(0),
        },
    };
    Ok((key, val))
}

/// One value of `kind` from its wire form.
#[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)] // proto's int32/int64 are two's complement in a u64 varint
fn value(kind: Kind, wire: WireValue<'_>, depth: usize) -> Result<Value, String> {
    Ok(match (kind, wire) {
        (Kind::Str, WireValue::Bytes(b)) => Value::String(String::from_utf8_lossy(b).into_owned()),
        (Kind::Bytes, WireValue::Bytes(b)) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        (Kind::Message(name), WireValue::Bytes(b)) => message(name, b, depth + 1)?,
        (Kind::Bool, WireValue::Varint(v)) => Value::Bool(v != 0),
        (Kind::Int32, WireValue::Varint(v)) => Value::from(v as i64 as i32),
        (Kind::Int64, WireValue::Varint(v)) => Value::from(v as i64),
        (Kind::Uint32, WireValue::Varint(v)) => Value::from(v as u32),
        (Kind::Uint64, WireValue::Varint(v)) => Value::from(v),
        (Kind::Double, WireValue::Fixed64(v)) => float(f64::from_bits(v))?,
        (Kind::Float, WireValue::Fixed32(v)) => float(f64::from(f32::from_bits(v)))?,
        (kind, wire) => return Err(format!("a {} value does not fit a field of kind {kind:?}", wire.type_name())),
    })
}

fn float(f: f64) -> Result<Value, String> {
    // Whole numbers print as integers, as Go's encoding/json does for float64.
    if f.fract() == 0.0 && f.abs() < 1e15 {
        #[allow(clippy::cast_possible_truncation)] // checked whole and in range just above
        return Ok(Value::from(f as i64));
    }
    Number::from_f64(f).map(Value::Number).ok_or_else(|| format!("{f} is not a JSON number"))
}
