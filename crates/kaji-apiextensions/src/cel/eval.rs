//! The tree-walking interpreter: operators with CEL's semantics (`&&`/`||` absorb errors when
//! the other side decides, overflow and division by zero are errors, heterogeneous equality),
//! macros as comprehensions, and a step budget in place of upstream's runtime cost limit.

use std::rc::Rc;

use super::functions;
use super::parser::{BinOp, Expr, Kind, Lit, Macro, TYPE_NAMES};
use super::value::{R, Val, compare, equals, map_get, no_overload, valid_key};

/// Steps (nodes evaluated, elements visited) one evaluation may take; upstream's per-call cost
/// limit is 1e6 cost units, and this counts similarly.
const STEP_LIMIT: u64 = 1_000_000;

pub(crate) struct Env<'a> {
    pub self_: Val,
    pub old_self: Option<Val>,
    vars: Vec<(&'a str, Val)>,
    steps: u64,
}

impl<'a> Env<'a> {
    pub(crate) fn new(self_: Val, old_self: Option<Val>) -> Env<'a> {
        Env {
            self_,
            old_self,
            vars: Vec::new(),
            steps: 0,
        }
    }

    /// Binds a declared variable (`parser::parse_with`) for the evaluation.
    pub(crate) fn bind(&mut self, name: &'a str, value: Val) {
        self.vars.push((name, value));
    }

    /// Charges `n` steps against the budget.
    pub(crate) fn charge(&mut self, n: u64) -> Result<(), String> {
        self.steps = self.steps.saturating_add(n);
        if self.steps > STEP_LIMIT {
            return Err("operation cancelled: actual cost limit exceeded".to_string());
        }
        Ok(())
    }

    pub(crate) fn eval(&mut self, e: &'a Expr) -> R {
        self.charge(1)?;
        match &e.kind {
            Kind::Lit(l) => Ok(match l {
                Lit::Null => Val::Null,
                Lit::Bool(b) => Val::Bool(*b),
                Lit::Int(i) => Val::Int(*i),
                Lit::Uint(u) => Val::Uint(*u),
                Lit::Double(d) => Val::Double(*d),
                Lit::Str(s) => Val::str(s),
                Lit::Bytes(b) => Val::Bytes(Rc::from(b.as_slice())),
            }),
            Kind::Ident(name) => self.lookup(name),
            Kind::Select {
                operand,
                field,
                optional,
            } => {
                let v = self.eval(operand)?;
                select(&v, field, *optional)
            }
            Kind::Has { operand, field } => match self.eval(operand)? {
                Val::Map(m) => Ok(Val::Bool(field_get(&m, field).is_some())),
                Val::Optional(None) => Ok(Val::Bool(false)),
                Val::Optional(Some(v)) => match &*v {
                    Val::Map(m) => Ok(Val::Bool(field_get(m, field).is_some())),
                    _ => Err(no_overload()),
                },
                _ => Err(format!("invalid type for field selection: {field}")),
            },
            Kind::Index {
                operand,
                index,
                optional,
            } => {
                let v = self.eval(operand)?;
                let i = self.eval(index)?;
                index_value(&v, &i, *optional)
            }
            Kind::Call { func, target, args } => {
                let recv = match target {
                    Some(t) => Some(self.eval(t)?),
                    None => None,
                };
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(self.eval(a)?);
                }
                functions::call(self, func, recv, vals)
            }
            Kind::Matches { target, re } => match self.eval(target)? {
                Val::Str(s) => {
                    self.charge(s.len() as u64 / 10)?;
                    Ok(Val::Bool(re.is_match(&s)))
                }
                _ => Err(no_overload()),
            },
            Kind::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (item, optional) in items {
                    let v = self.eval(item)?;
                    if *optional {
                        match v {
                            Val::Optional(Some(inner)) => out.push((*inner).clone()),
                            Val::Optional(None) => {}
                            _ => return Err(no_overload()),
                        }
                    } else {
                        out.push(v);
                    }
                }
                Ok(Val::list(out))
            }
            Kind::Map(entries) => {
                let mut out: Vec<(Val, Val)> = Vec::with_capacity(entries.len());
                for (k, v, optional) in entries {
                    let k = self.eval(k)?;
                    if !valid_key(&k) {
                        return Err(format!("unsupported key type: {}", k.type_name()));
                    }
                    let v = self.eval(v)?;
                    let v = if *optional {
                        match v {
                            Val::Optional(Some(inner)) => (*inner).clone(),
                            Val::Optional(None) => continue,
                            _ => return Err(no_overload()),
                        }
                    } else {
                        v
                    };
                    if map_get(&out, &k).is_some() {
                        return Err(format!(
                            "Failed with repeated key: {}",
                            k.to_display_string()
                        ));
                    }
                    out.push((k, v));
                }
                Ok(Val::Map(Rc::new(out)))
            }
            Kind::Not(x) => match self.eval(x)? {
                Val::Bool(b) => Ok(Val::Bool(!b)),
                _ => Err(no_overload()),
            },
            Kind::Neg(x) => match self.eval(x)? {
                Val::Int(i) => i.checked_neg().map(Val::Int).ok_or_else(overflow),
                Val::Double(d) => Ok(Val::Double(-d)),
                Val::Duration(d) => d.checked_neg().map(Val::Duration).ok_or_else(overflow),
                _ => Err(no_overload()),
            },
            Kind::And(a, b) => self.logic(a, b, false),
            Kind::Or(a, b) => self.logic(a, b, true),
            Kind::Cond(c, a, b) => match self.eval(c)? {
                Val::Bool(true) => self.eval(a),
                Val::Bool(false) => self.eval(b),
                _ => Err(no_overload()),
            },
            Kind::Binary(op, a, b) => {
                let a = self.eval(a)?;
                let b = self.eval(b)?;
                self.binary(*op, &a, &b)
            }
            Kind::Comprehension {
                mac,
                var,
                range,
                body,
                transform,
            } => self.comprehension(*mac, var, range, body, transform.as_deref()),
            Kind::Bind { var, init, body } => {
                let v = self.eval(init)?;
                self.vars.push((var, v));
                let r = self.eval(body);
                self.vars.pop();
                r
            }
        }
    }

    fn lookup(&self, name: &str) -> R {
        if let Some((_, v)) = self.vars.iter().rev().find(|(n, _)| *n == name) {
            return Ok(v.clone());
        }
        match name {
            "self" => Ok(self.self_.clone()),
            "oldSelf" => self
                .old_self
                .clone()
                .ok_or_else(|| "no such attribute: oldSelf".to_string()),
            _ => match TYPE_NAMES.iter().find(|t| **t == name) {
                Some(t) => Ok(Val::Type(t)),
                None => Err(format!("no such attribute: {name}")),
            },
        }
    }

    /// `&&` (`short` false) and `||` (`short` true): the deciding value wins over an error or a
    /// non-bool on the other side, whichever side it is on.
    fn logic(&mut self, a: &'a Expr, b: &'a Expr, short: bool) -> R {
        let left = self.eval(a);
        if let Ok(Val::Bool(v)) = left
            && v == short
        {
            return Ok(Val::Bool(short));
        }
        let right = self.eval(b);
        match (left, right) {
            (_, Ok(Val::Bool(v))) if v == short => Ok(Val::Bool(short)),
            (Ok(Val::Bool(_)), Ok(Val::Bool(_))) => Ok(Val::Bool(!short)),
            (Err(e), _) | (Ok(Val::Bool(_)), Err(e)) => Err(e),
            _ => Err(no_overload()),
        }
    }

    fn binary(&mut self, op: BinOp, a: &Val, b: &Val) -> R {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let ord = |r: Result<std::cmp::Ordering, String>, ok: &[std::cmp::Ordering]| match r {
            Ok(o) => Ok(Val::Bool(ok.contains(&o))),
            Err(e) if e == "NaN" => Ok(Val::Bool(false)),
            Err(e) => Err(e),
        };
        match op {
            BinOp::Eq => Ok(Val::Bool(equals(a, b))),
            BinOp::Ne => Ok(Val::Bool(!equals(a, b))),
            BinOp::Lt => ord(compare(a, b), &[Less]),
            BinOp::Le => ord(compare(a, b), &[Less, Equal]),
            BinOp::Gt => ord(compare(a, b), &[Greater]),
            BinOp::Ge => ord(compare(a, b), &[Greater, Equal]),
            BinOp::In => match b {
                Val::List(l) => {
                    self.charge(l.len() as u64)?;
                    Ok(Val::Bool(l.iter().any(|x| equals(x, a))))
                }
                Val::Map(m) => {
                    self.charge(m.len() as u64)?;
                    Ok(Val::Bool(map_get(m, a).is_some()))
                }
                _ => Err(no_overload()),
            },
            BinOp::Add => self.add(a, b),
            BinOp::Sub => sub(a, b),
            BinOp::Mul => match (a, b) {
                (Val::Int(x), Val::Int(y)) => x.checked_mul(*y).map(Val::Int).ok_or_else(overflow),
                (Val::Uint(x), Val::Uint(y)) => {
                    x.checked_mul(*y).map(Val::Uint).ok_or_else(overflow)
                }
                _ => doubles(a, b).map(|(x, y)| Val::Double(x * y)),
            },
            BinOp::Div => match (a, b) {
                (Val::Int(_), Val::Int(0)) | (Val::Uint(_), Val::Uint(0)) => {
                    Err("division by zero".to_string())
                }
                (Val::Int(x), Val::Int(y)) => x.checked_div(*y).map(Val::Int).ok_or_else(overflow),
                (Val::Uint(x), Val::Uint(y)) => Ok(Val::Uint(x / y)),
                _ => doubles(a, b).map(|(x, y)| Val::Double(x / y)),
            },
            BinOp::Rem => match (a, b) {
                (Val::Int(_), Val::Int(0)) | (Val::Uint(_), Val::Uint(0)) => {
                    Err("modulus by zero".to_string())
                }
                (Val::Int(x), Val::Int(y)) => x.checked_rem(*y).map(Val::Int).ok_or_else(overflow),
                (Val::Uint(x), Val::Uint(y)) => Ok(Val::Uint(x % y)),
                _ => Err(no_overload()),
            },
        }
    }

    fn add(&mut self, a: &Val, b: &Val) -> R {
        match (a, b) {
            (Val::Int(x), Val::Int(y)) => x.checked_add(*y).map(Val::Int).ok_or_else(overflow),
            (Val::Uint(x), Val::Uint(y)) => x.checked_add(*y).map(Val::Uint).ok_or_else(overflow),
            (Val::Str(x), Val::Str(y)) => {
                self.charge((x.len() + y.len()) as u64 / 10)?;
                Ok(Val::str(&format!("{x}{y}")))
            }
            (Val::Bytes(x), Val::Bytes(y)) => Ok(Val::Bytes([&x[..], &y[..]].concat().into())),
            (Val::List(x), Val::List(y)) => {
                self.charge((x.len() + y.len()) as u64)?;
                Ok(Val::list(x.iter().chain(y.iter()).cloned().collect()))
            }
            (Val::Duration(x), Val::Duration(y)) => {
                x.checked_add(*y).map(Val::Duration).ok_or_else(overflow)
            }
            (Val::Timestamp(t), Val::Duration(d)) | (Val::Duration(d), Val::Timestamp(t)) => {
                timestamp(t + i128::from(*d))
            }
            _ => doubles(a, b).map(|(x, y)| Val::Double(x + y)),
        }
    }

    fn comprehension(
        &mut self,
        mac: Macro,
        var: &'a str,
        range: &'a Expr,
        body: &'a Expr,
        transform: Option<&'a Expr>,
    ) -> R {
        let items: Vec<Val> = match self.eval(range)? {
            Val::List(l) => l.iter().cloned().collect(),
            Val::Map(m) => m.iter().map(|(k, _)| k.clone()).collect(),
            _ => return Err(no_overload()),
        };
        self.charge(items.len() as u64)?;
        let mut out = Vec::new();
        let mut count = 0usize;
        // all/exists: the deciding value wins; otherwise the first error.
        let mut pending: Option<String> = None;
        for item in items {
            self.vars.push((var, item.clone()));
            let r = match (self.eval(body), transform) {
                // `map(x, filter, transform)`: the transform of the items the filter keeps.
                (Ok(Val::Bool(true)), Some(t)) => self.eval(t).map(|v| Some(Some(v))),
                (Ok(Val::Bool(false)), Some(_)) => Ok(Some(None)),
                (Ok(_), Some(_)) => Err(no_overload()),
                (Err(e), Some(_)) => Err(e),
                (r, None) => r.map(|v| Some(Some(v))),
            };
            self.vars.pop();
            let r = r.map(|v| v.flatten());
            match mac {
                Macro::All | Macro::Exists => {
                    let decide = mac == Macro::Exists;
                    match r {
                        Ok(Some(Val::Bool(b))) if b == decide => return Ok(Val::Bool(decide)),
                        Ok(Some(Val::Bool(_))) => {}
                        Ok(_) => pending = pending.or_else(|| Some(no_overload())),
                        Err(e) => pending = pending.or(Some(e)),
                    }
                }
                Macro::ExistsOne => match r? {
                    Some(Val::Bool(true)) => count += 1,
                    Some(Val::Bool(false)) => {}
                    _ => return Err(no_overload()),
                },
                Macro::Filter => match r? {
                    Some(Val::Bool(true)) => out.push(item),
                    Some(Val::Bool(false)) => {}
                    _ => return Err(no_overload()),
                },
                Macro::Map => out.extend(r?),
            }
        }
        match mac {
            Macro::All | Macro::Exists => match pending {
                Some(e) => Err(e),
                None => Ok(Val::Bool(mac == Macro::All)),
            },
            Macro::ExistsOne => Ok(Val::Bool(count == 1)),
            Macro::Map | Macro::Filter => Ok(Val::list(out)),
        }
    }
}

pub(crate) fn overflow() -> String {
    "integer overflow".to_string()
}

pub(crate) fn timestamp(nanos: i128) -> R {
    if super::time::in_range(nanos) {
        Ok(Val::Timestamp(nanos))
    } else {
        Err("timestamp out of range".to_string())
    }
}

/// Mixed int/double arithmetic is done in doubles: without the schema's types a `number` field
/// holding `2` reads as an int, where upstream's checker would know it is a double.
fn doubles(a: &Val, b: &Val) -> Result<(f64, f64), String> {
    let f = |v: &Val| match v {
        Val::Double(d) => Some(*d),
        #[allow(clippy::cast_precision_loss)]
        Val::Int(i) => Some(*i as f64),
        _ => None,
    };
    match (a, b) {
        (Val::Double(_), _) | (_, Val::Double(_)) => match (f(a), f(b)) {
            (Some(x), Some(y)) => Ok((x, y)),
            _ => Err(no_overload()),
        },
        _ => Err(no_overload()),
    }
}

fn sub(a: &Val, b: &Val) -> R {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => x.checked_sub(*y).map(Val::Int).ok_or_else(overflow),
        (Val::Uint(x), Val::Uint(y)) => x.checked_sub(*y).map(Val::Uint).ok_or_else(overflow),
        (Val::Duration(x), Val::Duration(y)) => {
            x.checked_sub(*y).map(Val::Duration).ok_or_else(overflow)
        }
        (Val::Timestamp(t), Val::Duration(d)) => timestamp(t - i128::from(*d)),
        (Val::Timestamp(x), Val::Timestamp(y)) => i64::try_from(x - y)
            .map(Val::Duration)
            .map_err(|_| overflow()),
        _ => doubles(a, b).map(|(x, y)| Val::Double(x - y)),
    }
}

/// Kubernetes escapes property names that are not CEL identifiers: `foo-bar` is
/// `self.foo__dash__bar`, `namespace` is `self.__namespace__`.
fn unescape_field(field: &str) -> Option<String> {
    if !field.contains("__") {
        return None;
    }
    if let Some(inner) = field.strip_prefix("__").and_then(|f| f.strip_suffix("__"))
        && matches!(
            inner,
            "true"
                | "false"
                | "null"
                | "in"
                | "as"
                | "break"
                | "const"
                | "continue"
                | "else"
                | "for"
                | "function"
                | "if"
                | "import"
                | "let"
                | "loop"
                | "package"
                | "namespace"
                | "return"
                | "var"
                | "void"
                | "while"
        )
    {
        return Some(inner.to_string());
    }
    let mut out = String::new();
    let mut rest = field;
    while !rest.is_empty() {
        let escapes = [
            ("__underscores__", "__"),
            ("__dot__", "."),
            ("__dash__", "-"),
            ("__slash__", "/"),
        ];
        match escapes.iter().find(|(e, _)| rest.starts_with(e)) {
            Some((e, r)) => {
                out.push_str(r);
                rest = &rest[e.len()..];
            }
            None => {
                let c = rest.chars().next().unwrap_or_default();
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    Some(out)
}

/// A field of an object (a map with string keys), by name or by its escaped name.
fn field_get<'m>(m: &'m [(Val, Val)], field: &str) -> Option<&'m Val> {
    let by = |name: &str| {
        m.iter()
            .find(|(k, _)| matches!(k, Val::Str(s) if &**s == name))
            .map(|(_, v)| v)
    };
    by(field).or_else(|| unescape_field(field).and_then(|f| by(&f)))
}

fn select(v: &Val, field: &str, optional: bool) -> R {
    match v {
        Val::Map(m) => match field_get(m, field) {
            Some(x) if optional => Ok(Val::Optional(Some(Rc::new(x.clone())))),
            Some(x) => Ok(x.clone()),
            None if optional => Ok(Val::Optional(None)),
            None => Err(format!("no such key: {field}")),
        },
        Val::Optional(None) => Ok(Val::Optional(None)),
        Val::Optional(Some(inner)) => match select(inner, field, true)? {
            Val::Optional(x) => Ok(Val::Optional(x)),
            x => Ok(x),
        },
        Val::Url(_) | Val::Quantity(..) => Err(no_overload()),
        _ => Err(format!(
            "type '{}' does not support field selection",
            v.type_name()
        )),
    }
}

fn index_value(v: &Val, i: &Val, optional: bool) -> R {
    let wrap = |r: Option<Val>| -> R {
        if optional {
            Ok(Val::Optional(r.map(Rc::new)))
        } else {
            r.ok_or_else(String::new)
        }
    };
    match v {
        Val::List(l) => {
            let idx = match i {
                Val::Int(n) => Some(*n),
                Val::Uint(n) => i64::try_from(*n).ok(),
                #[allow(clippy::cast_possible_truncation)]
                Val::Double(d) if d.fract() == 0.0 => Some(*d as i64),
                Val::Double(_) => {
                    return Err(format!(
                        "unsupported index value: {}",
                        i.to_display_string()
                    ));
                }
                _ => return Err(no_overload()),
            };
            let got = idx
                .and_then(|n| usize::try_from(n).ok())
                .and_then(|n| l.get(n))
                .cloned();
            if got.is_none() && !optional {
                return Err(format!(
                    "index out of bounds: {}",
                    idx.map_or_else(|| i.to_display_string(), |n| n.to_string())
                ));
            }
            wrap(got)
        }
        Val::Map(m) => {
            if !valid_key(i) && !matches!(i, Val::Double(_)) {
                return Err(format!("unsupported key type: {}", i.type_name()));
            }
            let got = map_get(m, i).cloned();
            if got.is_none() && !optional {
                return Err(format!("no such key: {}", i.to_display_string()));
            }
            wrap(got)
        }
        Val::Optional(None) => Ok(Val::Optional(None)),
        Val::Optional(Some(inner)) => match index_value(inner, i, true)? {
            Val::Optional(x) => Ok(Val::Optional(x)),
            x => Ok(x),
        },
        _ => Err(no_overload()),
    }
}
