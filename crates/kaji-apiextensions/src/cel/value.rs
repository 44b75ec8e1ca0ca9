//! CEL runtime values: JSON values as CEL sees them (objects are maps with string keys, whole
//! numbers are ints, others doubles), plus the types JSON lacks (uint, bytes, duration,
//! timestamp, type, optional, quantity, URL). Values live only during one evaluation, so
//! containers share with `Rc`.

use std::cmp::Ordering;
use std::rc::Rc;

use serde_json::Value as Json;

use super::time;

#[derive(Clone, Debug)]
pub(crate) enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Double(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    List(Rc<Vec<Val>>),
    /// Entries in insertion (JSON) order; keys are null-free scalars, unique.
    Map(Rc<Vec<(Val, Val)>>),
    /// Nanoseconds.
    Duration(i64),
    /// Nanoseconds since the Unix epoch (years 1 to 9999).
    Timestamp(i128),
    Type(&'static str),
    Optional(Option<Rc<Val>>),
    /// A resource quantity: its value in billionths, and its text.
    Quantity(i128, Rc<str>),
    Url(Rc<Url>),
}

#[derive(Debug)]
pub(crate) struct Url {
    pub scheme: String,
    pub host: String,
    pub path: String,
    pub query: String,
}

pub(crate) type R = Result<Val, String>;

pub(crate) fn no_overload() -> String {
    "no such overload".to_string()
}

impl Val {
    pub(crate) fn str(s: &str) -> Val {
        Val::Str(Rc::from(s))
    }

    pub(crate) fn list(v: Vec<Val>) -> Val {
        Val::List(Rc::new(v))
    }

    pub(crate) fn from_json(j: &Json) -> Val {
        match j {
            Json::Null => Val::Null,
            Json::Bool(b) => Val::Bool(*b),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Val::Int(i),
                None => Val::Double(n.as_f64().unwrap_or(f64::NAN)),
            },
            Json::String(s) => Val::str(s),
            Json::Array(a) => Val::list(a.iter().map(Val::from_json).collect()),
            Json::Object(o) => Val::Map(Rc::new(
                o.iter()
                    .map(|(k, v)| (Val::str(k), Val::from_json(v)))
                    .collect(),
            )),
        }
    }

    pub(crate) fn to_json(&self) -> Json {
        match self {
            Val::Null | Val::Optional(None) => Json::Null,
            Val::Bool(b) => Json::Bool(*b),
            Val::Int(i) => Json::from(*i),
            Val::Uint(u) => Json::from(*u),
            Val::Double(d) => serde_json::Number::from_f64(*d).map_or(Json::Null, Json::Number),
            Val::Str(s) => Json::String(s.to_string()),
            Val::Bytes(b) => Json::String(String::from_utf8_lossy(b).into_owned()),
            Val::List(l) => Json::Array(l.iter().map(Val::to_json).collect()),
            Val::Map(m) => Json::Object(
                m.iter()
                    .map(|(k, v)| (k.to_display_string(), v.to_json()))
                    .collect(),
            ),
            Val::Optional(Some(v)) => v.to_json(),
            Val::Duration(_)
            | Val::Timestamp(_)
            | Val::Type(_)
            | Val::Quantity(..)
            | Val::Url(_) => Json::String(self.to_display_string()),
        }
    }

    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Val::Null => "null_type",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Uint(_) => "uint",
            Val::Double(_) => "double",
            Val::Str(_) => "string",
            Val::Bytes(_) => "bytes",
            Val::List(_) => "list",
            Val::Map(_) => "map",
            Val::Duration(_) => "google.protobuf.Duration",
            Val::Timestamp(_) => "google.protobuf.Timestamp",
            Val::Type(_) => "type",
            Val::Optional(_) => "optional_type",
            Val::Quantity(..) => "kubernetes.Quantity",
            Val::Url(_) => "kubernetes.URL",
        }
    }

    /// `string(x)` of a scalar; containers print CEL-style.
    pub(crate) fn to_display_string(&self) -> String {
        match self {
            Val::Null => "null".to_string(),
            Val::Bool(b) => b.to_string(),
            Val::Int(i) => i.to_string(),
            Val::Uint(u) => u.to_string(),
            Val::Double(d) => format_double(*d),
            Val::Str(s) => s.to_string(),
            Val::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Val::Duration(d) => time::format_duration(*d),
            Val::Timestamp(t) => time::format_timestamp(*t),
            Val::Type(t) => (*t).to_string(),
            Val::Quantity(_, s) => s.to_string(),
            Val::Url(u) => {
                let mut s = format!("{}://{}{}", u.scheme, u.host, u.path);
                if !u.query.is_empty() {
                    s.push('?');
                    s.push_str(&u.query);
                }
                s
            }
            Val::Optional(None) => "optional.none()".to_string(),
            Val::Optional(Some(v)) => format!("optional.of({})", v.to_display_string()),
            Val::List(l) => {
                let items: Vec<String> = l.iter().map(Val::to_display_string).collect();
                format!("[{}]", items.join(", "))
            }
            Val::Map(m) => {
                let items: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{}: {}", k.to_display_string(), v.to_display_string()))
                    .collect();
                format!("{{{}}}", items.join(", "))
            }
        }
    }
}

/// Go's `strconv.FormatFloat(d, 'g', -1, 64)` for the common cases.
pub(crate) fn format_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".to_string();
    }
    if d.is_infinite() {
        return if d > 0.0 {
            "+Inf".to_string()
        } else {
            "-Inf".to_string()
        };
    }
    let abs = d.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        let s = format!("{d:e}");
        // Rust prints `1e21`, Go `1e+21`.
        return match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{}", pad_exp(e)),
            Some((m, e)) => format!("{m}e-{}", pad_exp(&e[1..])),
            None => s,
        };
    }
    format!("{d}")
}

fn pad_exp(e: &str) -> String {
    if e.len() < 2 {
        format!("0{e}")
    } else {
        e.to_string()
    }
}

/// Numeric value for cross-type comparison.
enum Num {
    I(i64),
    U(u64),
    D(f64),
}

fn num(v: &Val) -> Option<Num> {
    match v {
        Val::Int(i) => Some(Num::I(*i)),
        Val::Uint(u) => Some(Num::U(*u)),
        Val::Double(d) => Some(Num::D(*d)),
        _ => None,
    }
}

fn cmp_num(a: &Num, b: &Num) -> Option<Ordering> {
    match (a, b) {
        (Num::I(x), Num::I(y)) => Some(x.cmp(y)),
        (Num::U(x), Num::U(y)) => Some(x.cmp(y)),
        (Num::I(x), Num::U(y)) => Some(i128::from(*x).cmp(&i128::from(*y))),
        (Num::U(x), Num::I(y)) => Some(i128::from(*x).cmp(&i128::from(*y))),
        (Num::D(x), Num::D(y)) => x.partial_cmp(y),
        (Num::D(x), Num::I(y)) => cmp_f_i(*x, i128::from(*y)),
        (Num::D(x), Num::U(y)) => cmp_f_i(*x, i128::from(*y)),
        (Num::I(x), Num::D(y)) => cmp_f_i(*y, i128::from(*x)).map(Ordering::reverse),
        (Num::U(x), Num::D(y)) => cmp_f_i(*y, i128::from(*x)).map(Ordering::reverse),
    }
}

fn cmp_f_i(f: f64, i: i128) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    // Exact: compare the integer part first, then the fraction.
    let t = f.trunc();
    if t >= 1.7e38 {
        return Some(Ordering::Greater);
    }
    if t <= -1.7e38 {
        return Some(Ordering::Less);
    }
    #[allow(clippy::cast_possible_truncation)] // |t| < 1.7e38 fits in an i128
    let ti = t as i128;
    match ti.cmp(&i) {
        Ordering::Equal => f.fract().partial_cmp(&0.0),
        o => Some(o),
    }
}

/// CEL equality (heterogeneous: values of different types are unequal, numbers compare by
/// value across int, uint and double).
pub(crate) fn equals(a: &Val, b: &Val) -> bool {
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return cmp_num(&x, &y) == Some(Ordering::Equal);
    }
    match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Bytes(x), Val::Bytes(y)) => x == y,
        (Val::List(x), Val::List(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| equals(p, q))
        }
        (Val::Map(x), Val::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| map_get(y, k).is_some_and(|w| equals(v, w)))
        }
        (Val::Duration(x), Val::Duration(y)) => x == y,
        (Val::Timestamp(x), Val::Timestamp(y)) => x == y,
        (Val::Type(x), Val::Type(y)) => x == y,
        (Val::Optional(x), Val::Optional(y)) => match (x, y) {
            (None, None) => true,
            (Some(p), Some(q)) => equals(p, q),
            _ => false,
        },
        (Val::Quantity(x, _), Val::Quantity(y, _)) => x == y,
        (Val::Url(x), Val::Url(y)) => {
            a.to_display_string() == b.to_display_string() && x.host == y.host
        }
        _ => false,
    }
}

/// CEL ordering (`<` and friends): numbers across types, strings, bytes, bools, durations,
/// timestamps; anything else has no overload.
pub(crate) fn compare(a: &Val, b: &Val) -> Result<Ordering, String> {
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        // NaN compares false both ways; callers treat `None` as "not ordered".
        return cmp_num(&x, &y).ok_or_else(|| "NaN".to_string());
    }
    match (a, b) {
        (Val::Str(x), Val::Str(y)) => Ok(x.cmp(y)),
        (Val::Bytes(x), Val::Bytes(y)) => Ok(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Ok(x.cmp(y)),
        (Val::Duration(x), Val::Duration(y)) => Ok(x.cmp(y)),
        (Val::Timestamp(x), Val::Timestamp(y)) => Ok(x.cmp(y)),
        _ => Err(no_overload()),
    }
}

/// Looks a key up in a map's entries (numeric keys match across int and uint).
pub(crate) fn map_get<'a>(m: &'a [(Val, Val)], key: &Val) -> Option<&'a Val> {
    m.iter().find(|(k, _)| equals(k, key)).map(|(_, v)| v)
}

/// Whether a value can be a map key.
pub(crate) fn valid_key(k: &Val) -> bool {
    matches!(k, Val::Bool(_) | Val::Int(_) | Val::Uint(_) | Val::Str(_))
}

/// Whether a value is its type's zero value (for `optional.ofNonZeroValue`).
pub(crate) fn is_zero(v: &Val) -> bool {
    match v {
        Val::Null | Val::Optional(None) => true,
        Val::Bool(b) => !*b,
        Val::Int(i) => *i == 0,
        Val::Uint(u) => *u == 0,
        Val::Double(d) => *d == 0.0,
        Val::Str(s) => s.is_empty(),
        Val::Bytes(b) => b.is_empty(),
        Val::List(l) => l.is_empty(),
        Val::Map(m) => m.is_empty(),
        Val::Duration(d) => *d == 0,
        Val::Timestamp(t) => *t == 0,
        _ => false,
    }
}
