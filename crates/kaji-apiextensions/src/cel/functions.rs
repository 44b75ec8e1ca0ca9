//! CEL's standard functions plus the libraries Kubernetes adds to `x-kubernetes-validations`:
//! cel-go's strings, sets, math and optional extensions, and Kubernetes' lists, regex, URL and
//! quantity libraries (k8s.io/apiserver/pkg/cel/library).

use std::cmp::Ordering;
use std::rc::Rc;

use super::eval::{Env, overflow, timestamp};
use super::time;
use super::value::{R, Url, Val, compare, equals, is_zero, no_overload};

fn string_arg(v: &Val) -> Result<&str, String> {
    match v {
        Val::Str(s) => Ok(s),
        _ => Err(no_overload()),
    }
}

fn int_arg(v: &Val) -> Result<i64, String> {
    match v {
        Val::Int(i) => Ok(*i),
        _ => Err(no_overload()),
    }
}

fn list_arg(v: &Val) -> Result<&Rc<Vec<Val>>, String> {
    match v {
        Val::List(l) => Ok(l),
        _ => Err(no_overload()),
    }
}

fn len_val(n: usize) -> Val {
    Val::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

pub(crate) fn call(env: &mut Env<'_>, func: &str, recv: Option<Val>, args: Vec<Val>) -> R {
    match recv {
        Some(r) => member(env, func, &r, &args),
        None => global(env, func, &args),
    }
}

fn global(env: &mut Env<'_>, func: &str, args: &[Val]) -> R {
    let a = &args[0..];
    match func {
        "size" => member(env, "size", &a[0], &[]),
        "matches" => member(env, "matches", &a[0], &a[1..]),
        "dyn" => Ok(a[0].clone()),
        "type" => Ok(Val::Type(a[0].type_name())),
        "int" => to_int(&a[0]),
        "uint" => to_uint(&a[0]),
        "double" => to_double(&a[0]),
        "string" => to_string(&a[0]),
        "bool" => match &a[0] {
            Val::Bool(b) => Ok(Val::Bool(*b)),
            Val::Str(s) => match &**s {
                "true" | "True" | "TRUE" | "t" | "1" => Ok(Val::Bool(true)),
                "false" | "False" | "FALSE" | "f" | "0" => Ok(Val::Bool(false)),
                _ => Err("type conversion error from 'string' to 'bool'".to_string()),
            },
            _ => Err(no_overload()),
        },
        "bytes" => match &a[0] {
            Val::Bytes(b) => Ok(Val::Bytes(b.clone())),
            Val::Str(s) => Ok(Val::Bytes(Rc::from(s.as_bytes()))),
            _ => Err(no_overload()),
        },
        "duration" => match &a[0] {
            Val::Duration(d) => Ok(Val::Duration(*d)),
            Val::Str(s) => time::parse_duration(s).map(Val::Duration).ok_or_else(|| {
                "type conversion error from 'string' to 'google.protobuf.Duration'".to_string()
            }),
            _ => Err(no_overload()),
        },
        "timestamp" => match &a[0] {
            Val::Timestamp(t) => Ok(Val::Timestamp(*t)),
            Val::Str(s) => time::parse_timestamp(s).map(Val::Timestamp).ok_or_else(|| {
                "type conversion error from 'string' to 'google.protobuf.Timestamp'".to_string()
            }),
            Val::Int(i) => timestamp(i128::from(*i) * 1_000_000_000),
            _ => Err(no_overload()),
        },
        "url" => parse_url(string_arg(&a[0])?)
            .map(|u| Val::Url(Rc::new(u)))
            .ok_or_else(|| {
                format!(
                    "URL parse error during conversion from string: {}",
                    a[0].to_display_string()
                )
            }),
        "isURL" => Ok(Val::Bool(parse_url(string_arg(&a[0])?).is_some())),
        "quantity" => {
            let s = string_arg(&a[0])?;
            parse_quantity(s)
                .map(|n| Val::Quantity(n, Rc::from(s)))
                .ok_or_else(|| "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'".to_string())
        }
        "isIP" => Ok(Val::Bool(parse_ip(string_arg(&a[0])?).is_some())),
        "isCIDR" => Ok(Val::Bool(is_cidr(string_arg(&a[0])?))),
        "isQuantity" => Ok(Val::Bool(parse_quantity(string_arg(&a[0])?).is_some())),
        "optional.of" => Ok(Val::Optional(Some(Rc::new(a[0].clone())))),
        "optional.ofNonZeroValue" => Ok(Val::Optional(
            (!is_zero(&a[0])).then(|| Rc::new(a[0].clone())),
        )),
        "optional.none" => Ok(Val::Optional(None)),
        "math.greatest" | "math.least" => {
            let items: Vec<Val> = match a {
                [Val::List(l)] => l.to_vec(),
                _ => a.to_vec(),
            };
            let want = if func == "math.greatest" {
                Ordering::Greater
            } else {
                Ordering::Less
            };
            let mut best: Option<Val> = None;
            for v in items {
                if !matches!(v, Val::Int(_) | Val::Uint(_) | Val::Double(_)) {
                    return Err(no_overload());
                }
                best = match best {
                    Some(b) if compare(&v, &b).unwrap_or(Ordering::Equal) != want => Some(b),
                    _ => Some(v),
                };
            }
            best.ok_or_else(|| format!("{func}(list) argument must not be empty"))
        }
        "math.abs" => match &a[0] {
            Val::Int(i) => i.checked_abs().map(Val::Int).ok_or_else(overflow),
            Val::Uint(u) => Ok(Val::Uint(*u)),
            Val::Double(d) => Ok(Val::Double(d.abs())),
            _ => Err(no_overload()),
        },
        "math.sign" => match &a[0] {
            Val::Int(i) => Ok(Val::Int(i.signum())),
            Val::Uint(u) => Ok(Val::Uint(u64::from(*u > 0))),
            Val::Double(d) if d.is_nan() || *d == 0.0 => Ok(Val::Double(*d)),
            Val::Double(d) => Ok(Val::Double(d.signum())),
            _ => Err(no_overload()),
        },
        "math.ceil" | "math.floor" | "math.round" | "math.trunc" | "math.isNaN" | "math.isInf"
        | "math.isFinite" => {
            let Val::Double(d) = a[0] else {
                return Err(no_overload());
            };
            Ok(match func {
                "math.ceil" => Val::Double(d.ceil()),
                "math.floor" => Val::Double(d.floor()),
                "math.round" => Val::Double(d.round()),
                "math.trunc" => Val::Double(d.trunc()),
                "math.isNaN" => Val::Bool(d.is_nan()),
                "math.isInf" => Val::Bool(d.is_infinite()),
                _ => Val::Bool(d.is_finite()),
            })
        }
        "sets.contains" | "sets.equivalent" | "sets.intersects" => {
            let (x, y) = (list_arg(&a[0])?, list_arg(&a[1])?);
            env.charge((x.len() * y.len()) as u64 / 10)?;
            let contains = |p: &[Val], q: &[Val]| q.iter().all(|e| p.iter().any(|f| equals(e, f)));
            Ok(Val::Bool(match func {
                "sets.contains" => contains(x, y),
                "sets.equivalent" => contains(x, y) && contains(y, x),
                _ => x.iter().any(|e| y.iter().any(|f| equals(e, f))),
            }))
        }
        "strings.quote" => Ok(Val::str(&quote(string_arg(&a[0])?))),
        "lists.range" => {
            let n = int_arg(&a[0])?;
            env.charge(u64::try_from(n).unwrap_or(0))?;
            Ok(Val::list((0..n.max(0)).map(Val::Int).collect()))
        }
        _ => Err(format!("no such overload: {func}")),
    }
}

fn to_int(v: &Val) -> R {
    match v {
        Val::Int(i) => Ok(Val::Int(*i)),
        Val::Uint(u) => i64::try_from(*u).map(Val::Int).map_err(|_| overflow()),
        Val::Double(d) => {
            // Exclusive bounds: 2^63 itself does not fit.
            if d.is_nan() || *d <= -9.223_372_036_854_776e18 || *d >= 9.223_372_036_854_776e18 {
                return Err(overflow());
            }
            #[allow(clippy::cast_possible_truncation)]
            Ok(Val::Int(d.trunc() as i64))
        }
        Val::Str(s) => s
            .parse()
            .map(Val::Int)
            .map_err(|_| "type conversion error from 'string' to 'int'".to_string()),
        Val::Bool(b) => Ok(Val::Int(i64::from(*b))),
        Val::Timestamp(t) => i64::try_from(t.div_euclid(1_000_000_000))
            .map(Val::Int)
            .map_err(|_| overflow()),
        Val::Duration(d) => Ok(Val::Int(*d)),
        _ => Err(no_overload()),
    }
}

fn to_uint(v: &Val) -> R {
    match v {
        Val::Uint(u) => Ok(Val::Uint(*u)),
        Val::Int(i) => u64::try_from(*i)
            .map(Val::Uint)
            .map_err(|_| "unsigned integer overflow".to_string()),
        Val::Double(d) => {
            if d.is_nan() || *d < 0.0 || *d >= 1.844_674_407_370_955_2e19 {
                return Err("unsigned integer overflow".to_string());
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(Val::Uint(d.trunc() as u64))
        }
        Val::Str(s) => s
            .parse()
            .map(Val::Uint)
            .map_err(|_| "type conversion error from 'string' to 'uint'".to_string()),
        _ => Err(no_overload()),
    }
}

#[allow(clippy::cast_precision_loss)]
fn to_double(v: &Val) -> R {
    match v {
        Val::Double(d) => Ok(Val::Double(*d)),
        Val::Int(i) => Ok(Val::Double(*i as f64)),
        Val::Uint(u) => Ok(Val::Double(*u as f64)),
        Val::Str(s) => s
            .parse()
            .map(Val::Double)
            .map_err(|_| "type conversion error from 'string' to 'double'".to_string()),
        _ => Err(no_overload()),
    }
}

fn to_string(v: &Val) -> R {
    match v {
        Val::Str(_) => Ok(v.clone()),
        Val::Bytes(b) => std::str::from_utf8(b)
            .map(Val::str)
            .map_err(|_| "invalid UTF-8 in bytes, cannot convert to string".to_string()),
        Val::Int(_)
        | Val::Uint(_)
        | Val::Double(_)
        | Val::Bool(_)
        | Val::Duration(_)
        | Val::Timestamp(_)
        | Val::Type(_)
        | Val::Quantity(..)
        | Val::Url(_) => Ok(Val::str(&v.to_display_string())),
        _ => Err(no_overload()),
    }
}

fn member(env: &mut Env<'_>, func: &str, recv: &Val, a: &[Val]) -> R {
    match (recv, func) {
        (Val::Str(s), "size") => Ok(len_val(s.chars().count())),
        (Val::Bytes(b), "size") => Ok(len_val(b.len())),
        (Val::List(l), "size") => Ok(len_val(l.len())),
        (Val::Map(m), "size") => Ok(len_val(m.len())),
        (Val::Str(s), _) => {
            env.charge(s.len() as u64 / 10)?;
            string_member(env, func, s, a)
        }
        (Val::List(l), _) => {
            env.charge(l.len() as u64)?;
            list_member(env, func, l, a)
        }
        (Val::Optional(o), "hasValue") => Ok(Val::Bool(o.is_some())),
        (Val::Optional(o), "value") => o
            .as_ref()
            .map(|v| (**v).clone())
            .ok_or_else(|| "optional.none() dereference".to_string()),
        (Val::Optional(o), "orValue") => {
            Ok(o.as_ref().map_or_else(|| a[0].clone(), |v| (**v).clone()))
        }
        (Val::Optional(o), "or") => match (o, &a[0]) {
            (Some(_), _) => Ok(recv.clone()),
            (None, Val::Optional(_)) => Ok(a[0].clone()),
            _ => Err(no_overload()),
        },
        (Val::Timestamp(t), _) => {
            let tz = match a.first() {
                Some(v) => Some(string_arg(v)?),
                None => None,
            };
            time::timestamp_part(*t, func, tz).map(Val::Int)
        }
        (Val::Duration(d), _) if a.is_empty() => time::duration_part(*d, func).map(Val::Int),
        (Val::Url(u), _) => url_member(func, u),
        (Val::Quantity(n, _), _) => quantity_member(func, *n, a),
        _ => Err(no_overload()),
    }
}

fn string_member(env: &mut Env<'_>, func: &str, s: &str, a: &[Val]) -> R {
    let arg_str = |i: usize| string_arg(&a[i]);
    match func {
        "contains" => Ok(Val::Bool(s.contains(arg_str(0)?))),
        "startsWith" => Ok(Val::Bool(s.starts_with(arg_str(0)?))),
        "endsWith" => Ok(Val::Bool(s.ends_with(arg_str(0)?))),
        "matches" => {
            let re = regex::Regex::new(arg_str(0)?).map_err(|e| {
                format!(
                    "invalid regular expression: {}",
                    e.to_string().lines().last().unwrap_or("")
                )
            })?;
            Ok(Val::Bool(re.is_match(s)))
        }
        "find" | "findAll" => {
            let re = regex::Regex::new(arg_str(0)?).map_err(|e| {
                format!(
                    "invalid regular expression: {}",
                    e.to_string().lines().last().unwrap_or("")
                )
            })?;
            if func == "find" {
                return Ok(Val::str(re.find(s).map_or("", |m| m.as_str())));
            }
            let limit = match a.get(1) {
                Some(v) => int_arg(v)?,
                None => -1,
            };
            let all = re.find_iter(s).map(|m| Val::str(m.as_str()));
            Ok(Val::list(match usize::try_from(limit) {
                Ok(n) => all.take(n).collect(),
                Err(_) => all.collect(),
            }))
        }
        "lowerAscii" => Ok(Val::str(&s.to_ascii_lowercase())),
        "upperAscii" => Ok(Val::str(&s.to_ascii_uppercase())),
        "trim" => Ok(Val::str(s.trim())),
        "reverse" => Ok(Val::str(&s.chars().rev().collect::<String>())),
        "charAt" => {
            let i = int_arg(&a[0])?;
            let n = s.chars().count();
            match usize::try_from(i) {
                Ok(i) if i < n => Ok(Val::str(&s.chars().nth(i).unwrap_or_default().to_string())),
                Ok(i) if i == n => Ok(Val::str("")),
                _ => Err(format!("index out of range: {i}")),
            }
        }
        "indexOf" | "lastIndexOf" => {
            let sub = arg_str(0)?;
            let chars: Vec<char> = s.chars().collect();
            let n = chars.len();
            let start = match a.get(1) {
                Some(v) => {
                    let i = int_arg(v)?;
                    match usize::try_from(i) {
                        Ok(i) if i <= n => Some(i),
                        _ => return Err(format!("index out of range: {i}")),
                    }
                }
                None => None,
            };
            let sub_chars: Vec<char> = sub.chars().collect();
            let matches_at = |i: usize| chars[i..].starts_with(&sub_chars);
            let found = if func == "indexOf" {
                (start.unwrap_or(0)..=n.saturating_sub(sub_chars.len()).max(start.unwrap_or(0)))
                    .find(|&i| i + sub_chars.len() <= n && matches_at(i))
            } else {
                let last = start.unwrap_or(n).min(n.saturating_sub(sub_chars.len()));
                if sub_chars.len() > n {
                    None
                } else {
                    (0..=last).rev().find(|&i| matches_at(i))
                }
            };
            Ok(found.map_or(Val::Int(-1), len_val))
        }
        "replace" => {
            let (from, to) = (arg_str(0)?, arg_str(1)?);
            let n = match a.get(2) {
                Some(v) => int_arg(v)?,
                None => -1,
            };
            Ok(Val::str(&match usize::try_from(n) {
                Ok(n) => s.replacen(from, to, n),
                Err(_) => s.replace(from, to),
            }))
        }
        "split" => {
            let sep = arg_str(0)?;
            let n = match a.get(1) {
                Some(v) => int_arg(v)?,
                None => -1,
            };
            if n == 0 {
                return Ok(Val::list(Vec::new()));
            }
            let parts: Vec<Val> = if sep.is_empty() {
                let chars: Vec<String> = s.chars().map(String::from).collect();
                match usize::try_from(n) {
                    Ok(n) if n < chars.len() => {
                        let mut v: Vec<Val> = chars[..n - 1].iter().map(|c| Val::str(c)).collect();
                        v.push(Val::str(&chars[n - 1..].concat()));
                        v
                    }
                    _ => chars.iter().map(|c| Val::str(c)).collect(),
                }
            } else {
                match usize::try_from(n) {
                    Ok(n) => s.splitn(n, sep).map(Val::str).collect(),
                    Err(_) => s.split(sep).map(Val::str).collect(),
                }
            };
            env.charge(parts.len() as u64)?;
            Ok(Val::list(parts))
        }
        "substring" => {
            let n = s.chars().count();
            let bound = |v: &Val| -> Result<usize, String> {
                let i = int_arg(v)?;
                usize::try_from(i)
                    .ok()
                    .filter(|i| *i <= n)
                    .ok_or_else(|| format!("index out of range: {i}"))
            };
            let start = bound(&a[0])?;
            let end = match a.get(1) {
                Some(v) => bound(v)?,
                None => n,
            };
            if end < start {
                return Err(format!(
                    "invalid substring range. start: {start}, end: {end}"
                ));
            }
            Ok(Val::str(
                &s.chars().skip(start).take(end - start).collect::<String>(),
            ))
        }
        "format" => format(s, list_arg(&a[0])?),
        _ => Err(no_overload()),
    }
}

fn list_member(env: &mut Env<'_>, func: &str, l: &Rc<Vec<Val>>, a: &[Val]) -> R {
    match func {
        "join" => {
            let sep = match a.first() {
                Some(v) => string_arg(v)?,
                None => "",
            };
            let parts: Result<Vec<&str>, String> = l.iter().map(string_arg).collect();
            Ok(Val::str(&parts?.join(sep)))
        }
        "isSorted" => {
            for w in l.windows(2) {
                if compare(&w[0], &w[1])? == Ordering::Greater {
                    return Ok(Val::Bool(false));
                }
            }
            Ok(Val::Bool(true))
        }
        "sum" => {
            let mut acc = match l.first() {
                None => return Ok(Val::Int(0)),
                Some(Val::Duration(_)) => Val::Duration(0),
                Some(Val::Double(_)) => Val::Double(0.0),
                Some(Val::Uint(_)) => Val::Uint(0),
                Some(_) => Val::Int(0),
            };
            for v in l.iter() {
                acc = match (&acc, v) {
                    (Val::Int(x), Val::Int(y)) => Val::Int(x.checked_add(*y).ok_or_else(overflow)?),
                    (Val::Uint(x), Val::Uint(y)) => {
                        Val::Uint(x.checked_add(*y).ok_or_else(overflow)?)
                    }
                    (Val::Double(x), Val::Double(y)) => Val::Double(x + y),
                    (Val::Duration(x), Val::Duration(y)) => {
                        Val::Duration(x.checked_add(*y).ok_or_else(overflow)?)
                    }
                    _ => return Err(no_overload()),
                };
            }
            Ok(acc)
        }
        "min" | "max" => {
            let want = if func == "max" {
                Ordering::Greater
            } else {
                Ordering::Less
            };
            let mut best = l
                .first()
                .ok_or_else(|| format!("{func} called on empty list"))?;
            for v in l.iter().skip(1) {
                if compare(v, best)? == want {
                    best = v;
                }
            }
            Ok(best.clone())
        }
        "indexOf" => Ok(l
            .iter()
            .position(|v| equals(v, &a[0]))
            .map_or(Val::Int(-1), len_val)),
        "lastIndexOf" => Ok(l
            .iter()
            .rposition(|v| equals(v, &a[0]))
            .map_or(Val::Int(-1), len_val)),
        "slice" => {
            let (s, e) = (int_arg(&a[0])?, int_arg(&a[1])?);
            let (Ok(su), Ok(eu)) = (usize::try_from(s), usize::try_from(e)) else {
                return Err(format!(
                    "cannot slice(-1, {e}), negative indexes not supported"
                ));
            };
            if su > eu {
                return Err(format!(
                    "cannot slice({s}, {e}), start index must be less than or equal to end index"
                ));
            }
            if eu > l.len() {
                return Err(format!(
                    "cannot slice({s}, {e}), list is length {}",
                    l.len()
                ));
            }
            Ok(Val::list(l[su..eu].to_vec()))
        }
        "flatten" => {
            let depth = match a.first() {
                Some(v) => int_arg(v)?,
                None => 1,
            };
            if depth < 0 {
                return Err("level must be non-negative".to_string());
            }
            fn flat(l: &[Val], depth: i64, out: &mut Vec<Val>) {
                for v in l {
                    match v {
                        Val::List(inner) if depth > 0 => flat(inner, depth - 1, out),
                        _ => out.push(v.clone()),
                    }
                }
            }
            let mut out = Vec::new();
            flat(l, depth.min(64), &mut out);
            env.charge(out.len() as u64)?;
            Ok(Val::list(out))
        }
        "distinct" => {
            let mut out: Vec<Val> = Vec::new();
            for v in l.iter() {
                if !out.iter().any(|o| equals(o, v)) {
                    out.push(v.clone());
                }
            }
            Ok(Val::list(out))
        }
        "sort" => {
            let mut out = l.to_vec();
            let mut err = None;
            out.sort_by(|x, y| {
                compare(x, y).unwrap_or_else(|e| {
                    err = Some(e);
                    Ordering::Equal
                })
            });
            match err {
                Some(_) => Err(no_overload()),
                None => Ok(Val::list(out)),
            }
        }
        "reverse" => Ok(Val::list(l.iter().rev().cloned().collect())),
        _ => Err(no_overload()),
    }
}

/// `"%s is %d".format([a, b])`: cel-go's string formatting for the common verbs.
fn format(fmt: &str, args: &[Val]) -> R {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut next = args.iter();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut precision: Option<usize> = None;
        if it.peek() == Some(&'.') {
            it.next();
            let mut digits = String::new();
            while let Some(d) = it.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                it.next();
            }
            precision = digits.parse().ok();
        }
        let verb = it
            .next()
            .ok_or_else(|| "unexpected end of format string".to_string())?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let arg = next
            .next()
            .ok_or_else(|| "index 0 out of range".to_string())?;
        match (verb, arg) {
            ('s', Val::Str(s)) => out.push_str(s),
            ('s', v) => out.push_str(&v.to_display_string()),
            ('d', Val::Int(_) | Val::Uint(_)) => out.push_str(&arg.to_display_string()),
            ('f' | 'e', Val::Double(_) | Val::Int(_) | Val::Uint(_)) => {
                let Val::Double(d) = to_double(arg)? else {
                    return Err(no_overload());
                };
                let p = precision.unwrap_or(6);
                if verb == 'f' {
                    out.push_str(&format!("{d:.p$}"));
                } else {
                    out.push_str(&format!("{d:.p$e}"));
                }
            }
            ('x' | 'X', Val::Int(i)) => {
                let s = if *i < 0 {
                    format!("-{:x}", i.unsigned_abs())
                } else {
                    format!("{i:x}")
                };
                out.push_str(&if verb == 'X' { s.to_uppercase() } else { s });
            }
            ('x' | 'X', Val::Uint(u)) => out.push_str(&if verb == 'X' {
                format!("{u:X}")
            } else {
                format!("{u:x}")
            }),
            ('x' | 'X', Val::Str(s)) => {
                let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
                out.push_str(&if verb == 'X' { hex.to_uppercase() } else { hex });
            }
            ('o', Val::Int(i)) => out.push_str(&format!("{i:o}")),
            ('b', Val::Int(i)) => out.push_str(&format!("{i:b}")),
            _ => {
                return Err(format!(
                    "error during formatting: unrecognized formatting clause \"{verb}\""
                ));
            }
        }
    }
    Ok(Val::str(&out))
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `url.ParseRequestURI` for what CRD rules check: an absolute URL with a scheme and a
/// host, or an absolute path.
fn parse_url(s: &str) -> Option<Url> {
    if s.is_empty() || s.contains([' ', '\n', '\t']) {
        return None;
    }
    let (rest, query) = s.split_once('?').unwrap_or((s, ""));
    if rest.starts_with('/') {
        return Some(Url {
            scheme: String::new(),
            host: String::new(),
            path: rest.to_string(),
            query: query.to_string(),
        });
    }
    let (scheme, after) = rest.split_once(':')?;
    let mut chars = scheme.chars();
    if !chars.next()?.is_ascii_alphabetic()
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    let after = after.strip_prefix("//")?;
    let (host, path) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, ""),
    };
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    Some(Url {
        scheme: scheme.to_string(),
        host: host.to_string(),
        path: path.to_string(),
        query: query.to_string(),
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn url_member(func: &str, u: &Url) -> R {
    let (hostname, port) = if let Some(rest) = u.host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, p)) => (h.to_string(), p.strip_prefix(':').unwrap_or("").to_string()),
            None => (rest.to_string(), String::new()),
        }
    } else {
        match u.host.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.to_string()),
            None => (u.host.clone(), String::new()),
        }
    };
    match func {
        "getScheme" => Ok(Val::str(&u.scheme)),
        "getHost" => Ok(Val::str(&u.host)),
        "getHostname" => Ok(Val::str(&hostname)),
        "getPort" => Ok(Val::str(&port)),
        "getEscapedPath" => Ok(Val::str(&u.path)),
        "getQuery" => {
            let mut m: Vec<(Val, Val)> = Vec::new();
            for pair in u.query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let (k, v) = (Val::str(&percent_decode(k)), Val::str(&percent_decode(v)));
                match m.iter_mut().find(|(x, _)| equals(x, &k)) {
                    Some((_, Val::List(l))) => Rc::make_mut(l).push(v),
                    _ => m.push((k, Val::list(vec![v]))),
                }
            }
            Ok(Val::Map(Rc::new(m)))
        }
        _ => Err(no_overload()),
    }
}

/// Kubernetes' `ip()` parsing: no zones, no IPv4-mapped IPv6 (`::ffff:1.2.3.4`).
fn parse_ip(s: &str) -> Option<std::net::IpAddr> {
    let ip: std::net::IpAddr = s.parse().ok()?;
    match ip {
        std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && s.contains('.') => None,
        _ => Some(ip),
    }
}

fn is_cidr(s: &str) -> bool {
    let Some((addr, prefix)) = s.split_once('/') else {
        return false;
    };
    let Some(ip) = parse_ip(addr) else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    !prefix.is_empty()
        && prefix.bytes().all(|c| c.is_ascii_digit())
        && (prefix == "0" || !prefix.starts_with('0'))
        && prefix.parse::<u32>().is_ok_and(|p| p <= max)
}

fn parse_quantity(s: &str) -> Option<i128> {
    let t = s.trim();
    if t.is_empty() || t != s {
        return None;
    }
    kaji_api::quantity::nanos(s)
}

const NANO: i128 = 1_000_000_000;

/// A quantity's text for a value in billionths (the result of `add`/`sub`).
fn quantity_text(n: i128) -> String {
    for (div, suffix) in [(NANO, ""), (1_000_000, "m"), (1000, "u")] {
        if n % div == 0 {
            return format!("{}{suffix}", n / div);
        }
    }
    format!("{n}n")
}

fn quantity_member(func: &str, n: i128, a: &[Val]) -> R {
    let other = || -> Result<i128, String> {
        match a.first() {
            Some(Val::Quantity(m, _)) => Ok(*m),
            Some(Val::Int(i)) => Ok(i128::from(*i) * NANO),
            _ => Err(no_overload()),
        }
    };
    match func {
        "compareTo" => Ok(Val::Int(match n.cmp(&other()?) {
            Ordering::Less => -1,
            Ordering::Equal => 0,
            Ordering::Greater => 1,
        })),
        "isLessThan" => Ok(Val::Bool(n < other()?)),
        "isGreaterThan" => Ok(Val::Bool(n > other()?)),
        "add" | "sub" => {
            let m = other()?;
            let r = if func == "add" {
                n.checked_add(m)
            } else {
                n.checked_sub(m)
            }
            .ok_or_else(overflow)?;
            Ok(Val::Quantity(r, Rc::from(quantity_text(r))))
        }
        "asInteger" => {
            if n % NANO != 0 {
                return Err("cannot convert value to integer".to_string());
            }
            i64::try_from(n / NANO)
                .map(Val::Int)
                .map_err(|_| "cannot convert value to integer".to_string())
        }
        #[allow(clippy::cast_precision_loss)]
        "asApproximateFloat" => Ok(Val::Double(n as f64 / 1e9)),
        "sign" => Ok(Val::Int(i64::try_from(n.signum()).unwrap_or(0))),
        "isInteger" => Ok(Val::Bool(n % NANO == 0 && i64::try_from(n / NANO).is_ok())),
        _ => Err(no_overload()),
    }
}
