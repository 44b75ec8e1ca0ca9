//! Table output of custom resources: a CRD version's `additionalPrinterColumns` (JSONPath,
//! types and formats), as upstream's `tableconvertor`
//! (apiextensions-apiserver/pkg/registry/customresource/tableconvertor).
//!
//! The JSONPath dialect is kubectl's (`k8s.io/client-go/util/jsonpath`): fields, `['key']`,
//! indexes and slices, `[*]`, `..`, unions and `[?(@.a == "x")]` filters. As upstream, a column
//! shows the first value its path finds; a path that finds nothing (or fails) gives a null cell.

use std::borrow::Cow;

use jiff::Timestamp;
use serde_json::{Value, json};

/// The Table columns of one version of a CRD.
#[derive(Debug, Clone)]
pub struct PrinterColumns {
    /// Column definitions, "Name" first.
    headers: Vec<Value>,
    /// The columns after "Name": their type and parsed path.
    columns: Vec<(String, JsonPath)>,
}

impl PrinterColumns {
    /// Columns of `crd_version`, one entry of a CRD's `spec.versions[]`. A version without
    /// `additionalPrinterColumns` gets upstream's default: Age (date of creation). As upstream,
    /// a column whose path does not parse ends the list (the CRD's validation refuses it anyway).
    pub fn new(crd_version: &Value) -> PrinterColumns {
        let defaults = kaji_printers::columns("", "");
        let name_doc = defaults.first().map_or("", |c| c.description);
        let created_doc = defaults.get(1).map_or("", |c| c.description);
        let mut headers = vec![
            json!({"name": "Name", "type": "string", "format": "name", "description": name_doc, "priority": 0}),
        ];
        let mut columns = Vec::new();
        let declared = crd_version
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty());
        let default_age = [
            json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "description": created_doc}),
        ];
        for col in declared.map_or(&default_age[..], Vec::as_slice) {
            let text = |key: &str| col.get(key).and_then(Value::as_str).unwrap_or("");
            let path_text = text("jsonPath");
            let Ok(path) = JsonPath::parse(path_text) else {
                tracing::debug!(
                    path = path_text,
                    "unrecognized column definition; later columns dropped"
                );
                break;
            };
            let description = match text("description") {
                "" => {
                    format!("Custom resource definition column (in JSONPath format): {path_text}")
                }
                d => d.to_owned(),
            };
            let priority = col.get("priority").and_then(Value::as_i64).unwrap_or(0);
            headers.push(json!({"name": text("name"), "type": text("type"), "format": text("format"), "description": description, "priority": priority}));
            columns.push((text("type").to_owned(), path));
        }
        PrinterColumns { headers, columns }
    }

    /// The Table's `columnDefinitions`.
    pub fn definitions(&self) -> Vec<Value> {
        self.headers.clone()
    }

    /// One row's cells for `obj`: its name, then one cell per column (null when the path finds
    /// nothing); dates as ages relative to `now`, as kubectl shows them.
    pub fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let mut cells = Vec::with_capacity(1 + self.columns.len());
        cells.push(Value::from(name));
        for (type_, path) in &self.columns {
            let cell = match path.first(obj) {
                None => Value::Null,
                Some(v) if type_ == "string" => Value::from(print_value(&v)),
                Some(v) => cell_for_json_value(type_, &v, now),
            };
            cells.push(cell);
        }
        cells
    }
}

/// Upstream's `cellForJSONValue`: the value as the column's type, or null when it does not fit.
fn cell_for_json_value(type_: &str, value: &Value, now: Timestamp) -> Value {
    match (type_, value) {
        ("integer", Value::Number(n)) => n
            .as_i64()
            // Go converts a float to int64 by truncation (saturating here).
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, Value::from),
        ("boolean", Value::Bool(b)) => Value::Bool(*b),
        ("date", Value::String(s)) => Value::from(age(s, now)),
        _ => Value::Null,
    }
}

/// A `date` cell: `metav1.Time`'s query-parameter parsing, then `HumanDuration` since then.
fn age(s: &str, now: Timestamp) -> String {
    if s.is_empty() || s == "null" {
        return "<unknown>".to_owned();
    }
    match s.parse::<Timestamp>() {
        Ok(t) => kaji_printers::duration::translate_timestamp_since(
            Some(&Value::from(t.to_string())),
            now,
        ),
        Err(_) => "<invalid>".to_owned(),
    }
}

/// How jsonpath's `PrintResults` writes one value: maps and lists as compact JSON, scalars as Go's
/// `fmt.Print` does, JSON null as `<no value>`.
fn print_value(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => match n.as_u64() {
                Some(u) => u.to_string(),
                None => go_float(n.as_f64().unwrap_or(0.0)),
            },
        },
        Value::Array(_) | Value::Object(_) => go_json(v),
    }
}

/// Go's `encoding/json` output: sorted keys, compact, `<`, `>` and `&` escaped for HTML.
fn go_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string(&sorted(v))
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// A float as Go's `fmt.Print` writes it (`%v`, i.e. `%g` with the shortest precision): plain
/// digits for exponents from -4 to 5, else `1e+06` / `1e-05`.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.2345e6", "-5e-7".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    // strconv's 'g' with the shortest precision decides as if the precision were 6.
    if (-4..6).contains(&exp) {
        return f.to_string();
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// A parsed kubectl JSONPath expression.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// `.name` or `['name']`.
    Field(String),
    /// `.*` (every value of a map or list).
    Wildcard,
    /// `..` (the value and everything beneath it).
    Recursive,
    /// `[i]`, `[a:b]`, `[a:b:c]`, `[*]`.
    Array(Slice),
    /// `[?(@.a == "x")]`; `op` is "exists" for `[?(@.a)]`.
    Filter {
        left: Vec<Node>,
        op: String,
        right: Vec<Node>,
    },
    /// `[a,b]`.
    Union(Vec<Vec<Node>>),
    /// A quoted string literal.
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Slice {
    start: Option<i64>,
    end: Option<i64>,
    step: Option<i64>,
    /// `[i]` (the end derived from the start): `[-1]` is the last element.
    single: bool,
}

/// A JSONPath that does not parse, with jsonpath's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

impl JsonPath {
    /// Parses a column's path as upstream does (`{` + path + `}`); surrounding braces are allowed.
    pub fn parse(path: &str) -> Result<JsonPath, ParseError> {
        let inner = path
            .strip_prefix('{')
            .and_then(|p| p.strip_suffix('}'))
            .unwrap_or(path);
        let mut parser = Parser {
            input: inner,
            pos: 0,
        };
        let nodes = parser.action()?;
        Ok(JsonPath { nodes })
    }

    /// The first value the path finds in `obj`, missing keys allowed; `None` when it finds
    /// nothing or the evaluation fails (an index out of range, a filter over a non-list...).
    pub fn first<'a>(&self, obj: &'a Value) -> Option<Cow<'a, Value>> {
        eval_list(vec![Cow::Borrowed(obj)], &self.nodes)
            .ok()?
            .into_iter()
            .next()
    }

    /// Every value the path finds (jsonpath's `FindResults` of a single expression).
    pub fn find<'a>(&self, obj: &'a Value) -> Result<Vec<Cow<'a, Value>>, String> {
        eval_list(vec![Cow::Borrowed(obj)], &self.nodes)
    }
}

struct Parser<'s> {
    input: &'s str,
    pos: usize,
}

impl<'s> Parser<'s> {
    fn rest(&self) -> &'s str {
        &self.input[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    /// The inside of an action: a sequence of nodes until the end of the input.
    fn action(&mut self) -> Result<Vec<Node>, ParseError> {
        let mut nodes = Vec::new();
        loop {
            let rest = self.rest();
            if rest.starts_with("[?(") {
                nodes.push(self.filter()?);
                continue;
            }
            if rest.starts_with("..") {
                if nodes.last() == Some(&Node::Recursive) {
                    return err("invalid multiple recursive descent");
                }
                self.pos += 2;
                nodes.push(Node::Recursive);
                if self.peek().is_some_and(is_alphanumeric) {
                    nodes.push(self.field()?);
                }
                continue;
            }
            let Some(c) = self.peek() else {
                return Ok(nodes);
            };
            match c {
                '}' => return err("unexpected right delimiter"),
                ' ' | '@' | '$' => self.pos += 1,
                '[' => nodes.push(self.array()?),
                '"' | '\'' => nodes.push(self.quote(c)?),
                '.' => {
                    self.pos += 1;
                    nodes.push(self.field()?);
                }
                '+' | '-' | '0'..='9' => nodes.push(self.number()?),
                c if is_alphanumeric(c) => nodes.push(self.identifier()?),
                '\r' | '\n' => return err("unclosed action"),
                c => return err(format!("unrecognized character in action: {}", go_rune(c))),
            }
        }
    }

    /// A field name up to the next unescaped terminator; `\` escapes the next character.
    fn field(&mut self) -> Result<Node, ParseError> {
        let mut value = String::new();
        let mut chars = self.rest().char_indices();
        let mut end = self.rest().len();
        while let Some((i, c)) = chars.next() {
            if c == '\\' {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
                continue;
            }
            if is_terminator(c) {
                end = i;
                break;
            }
            value.push(c);
        }
        self.pos += end;
        Ok(if value == "*" {
            Node::Wildcard
        } else {
            Node::Field(value)
        })
    }

    fn identifier(&mut self) -> Result<Node, ParseError> {
        let end = self.rest().find(is_terminator).unwrap_or(self.rest().len());
        let word = &self.rest()[..end];
        self.pos += end;
        match word {
            "true" => Ok(Node::Bool(true)),
            "false" => Ok(Node::Bool(false)),
            // range/end only make sense in templates, not in a column.
            other => err(format!("unrecognized identifier {other}")),
        }
    }

    fn number(&mut self) -> Result<Node, ParseError> {
        let rest = self.rest();
        let mut end = 0;
        for (i, c) in rest.char_indices() {
            let sign = i == 0 && (c == '+' || c == '-');
            if !(sign || c == '.' || c.is_ascii_digit()) {
                break;
            }
            end = i + c.len_utf8();
        }
        let text = &rest[..end];
        self.pos += end;
        if let Ok(i) = text.parse::<i64>() {
            return Ok(Node::Int(i));
        }
        match text.parse::<f64>() {
            Ok(f) => Ok(Node::Float(f)),
            Err(_) => err(format!("cannot parse number {text}")),
        }
    }

    fn quote(&mut self, quote: char) -> Result<Node, ParseError> {
        let rest = self.rest();
        let mut prev = '\0';
        for (i, c) in rest.char_indices().skip(1) {
            if c == '\n' {
                break;
            }
            if c == quote && prev != '\\' {
                let literal = &rest[..i + 1];
                self.pos += i + 1;
                return unquote(literal).map(Node::Text);
            }
            prev = c;
        }
        err("unterminated quoted string")
    }

    fn array(&mut self) -> Result<Node, ParseError> {
        let rest = self.rest();
        let Some(close) = rest
            .find([']', '\n'])
            .filter(|&i| rest.as_bytes()[i] == b']')
        else {
            return err("unterminated array");
        };
        let mut text = &rest[1..close];
        self.pos += close + 1;
        if text == "*" {
            text = ":";
        }
        if text.contains(',') {
            let mut union = Vec::new();
            for part in text.split(',') {
                let mut p = Parser {
                    input: &format!("[{}]", part.trim_matches(' ')),
                    pos: 0,
                };
                union.push(p.action()?);
            }
            return Ok(Node::Union(union));
        }
        if let Some(key) = text
            .strip_prefix('\'')
            .and_then(|t| t.strip_suffix('\''))
            .filter(|k| !k.contains('\''))
        {
            // As upstream, `['a.b']` is read as the path `.a.b`.
            let field_path = format!(".{key}");
            let mut p = Parser {
                input: &field_path,
                pos: 0,
            };
            let nodes = p.action()?;
            return Ok(match <[Node; 1]>::try_from(nodes) {
                Ok([node]) => node,
                Err(nodes) => Node::Union(vec![nodes]),
            });
        }
        slice(text).map(Node::Array)
    }

    fn filter(&mut self) -> Result<Node, ParseError> {
        self.pos += 3;
        let rest = self.rest();
        let (mut in_quote, mut closed) = (false, false);
        let mut pair = '\0';
        let mut prev = '\0';
        let mut end = None;
        for (i, c) in rest.char_indices() {
            match c {
                '\n' => break,
                '"' | '\'' if !in_quote => {
                    in_quote = true;
                    pair = c;
                }
                c if in_quote && c == pair && prev != '\\' => closed = true,
                ')' if in_quote == closed => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
            prev = c;
        }
        let Some(end) = end else {
            return err("unterminated filter");
        };
        if !rest[end + 1..].starts_with(']') {
            return err("unclosed array expect ]");
        }
        let text = &rest[..end];
        self.pos += end + 2;
        let parse = |t: &str| Parser { input: t, pos: 0 }.action();
        // `left op right`, op made of ! < > =; no operator means "exists".
        let op_start = text.find(['!', '<', '>', '=']);
        match op_start {
            Some(s) if s > 0 => {
                let op_len = text[s..]
                    .find(|c| !matches!(c, '!' | '<' | '>' | '='))
                    .unwrap_or(text.len() - s);
                let (left, op, right) = (&text[..s], &text[s..s + op_len], &text[s + op_len..]);
                if right.is_empty() {
                    return Ok(Node::Filter {
                        left: parse(text)?,
                        op: "exists".into(),
                        right: Vec::new(),
                    });
                }
                Ok(Node::Filter {
                    left: parse(left)?,
                    op: op.to_owned(),
                    right: parse(right)?,
                })
            }
            _ => Ok(Node::Filter {
                left: parse(text)?,
                op: "exists".into(),
                right: Vec::new(),
            }),
        }
    }
}

/// `[start:end:step]` as jsonpath's slice syntax; `[i]` alone is `[i:i+1]`.
fn slice(text: &str) -> Result<Slice, ParseError> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() > 3 {
        return err(format!("invalid array index {text}"));
    }
    let num = |s: &str| -> Result<Option<i64>, ParseError> {
        if s.is_empty() {
            return Ok(None);
        }
        let digits = s.strip_prefix('-').unwrap_or(s);
        if !digits.chars().all(|c| c.is_ascii_digit()) {
            return err(format!("invalid array index {text}"));
        }
        if digits.is_empty() {
            // "-" alone: Go's Atoi fails on it.
            return err(format!("array index {s} is not a number"));
        }
        s.parse::<i64>()
            .map(Some)
            .map_err(|_| ParseError(format!("array index {s} is not a number")))
    };
    let start = num(parts[0])?;
    let end = match parts.get(1) {
        Some(e) => num(e)?,
        // `[i]`: the one element at i.
        None => Some(start.unwrap_or(0) + 1),
    };
    let step = match parts.get(2) {
        Some(s) => num(s)?,
        None => None,
    };
    Ok(Slice {
        start,
        end,
        step,
        single: parts.len() == 1,
    })
}

/// Go's `strconv.Unquote`, extended to single quotes.
fn unquote(literal: &str) -> Result<String, ParseError> {
    let bad = || ParseError(format!("unquote string {literal} error invalid syntax"));
    let inner = &literal[1..literal.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next().ok_or_else(bad)? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            e @ ('\\' | '"' | '\'') => out.push(e),
            'u' | 'U' | 'x' => {
                let digits: String = chars
                    .clone()
                    .take_while(char::is_ascii_hexdigit)
                    .take(8)
                    .collect();
                let code = u32::from_str_radix(&digits, 16).map_err(|_| bad())?;
                out.push(char::from_u32(code).ok_or_else(bad)?);
                for _ in 0..digits.len() {
                    chars.next();
                }
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

fn go_rune(c: char) -> String {
    format!("U+{:04X} '{c}'", c as u32)
}

fn is_alphanumeric(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

fn is_terminator(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\r' | '\n' | '.' | ',' | '[' | ']' | '$' | '@' | '{' | '}'
    )
}

type Values<'a> = Vec<Cow<'a, Value>>;

/// Walks `nodes` from `input`, with missing keys allowed (a column's paths are evaluated so).
fn eval_list<'a>(input: Values<'a>, nodes: &[Node]) -> Result<Values<'a>, String> {
    let mut cur = input;
    for node in nodes {
        cur = walk(cur, node)?;
    }
    Ok(cur)
}

/// Borrows a child of a value that may itself be borrowed or owned.
fn child<'a>(v: &Cow<'a, Value>, get: impl Fn(&Value) -> Option<&Value>) -> Option<Cow<'a, Value>> {
    match v {
        Cow::Borrowed(b) => get(b).map(Cow::Borrowed),
        Cow::Owned(o) => get(o).cloned().map(Cow::Owned),
    }
}

fn children<'a>(v: &Cow<'a, Value>) -> Values<'a> {
    let len = match v.as_ref() {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        Value::String(s) => {
            // jsonpath ranges over a string's bytes; values we only print, so give them as numbers.
            return s.bytes().map(|b| Cow::Owned(Value::from(b))).collect();
        }
        _ => 0,
    };
    (0..len)
        .filter_map(|i| {
            child(v, |x| match x {
                Value::Object(m) => m.values().nth(i),
                Value::Array(a) => a.get(i),
                _ => None,
            })
        })
        .collect()
}

fn walk<'a>(input: Values<'a>, node: &Node) -> Result<Values<'a>, String> {
    match node {
        Node::Text(s) => Ok(vec![Cow::Owned(Value::from(s.clone()))]),
        Node::Int(i) => Ok(input.iter().map(|_| Cow::Owned(Value::from(*i))).collect()),
        Node::Float(f) => Ok(input.iter().map(|_| Cow::Owned(Value::from(*f))).collect()),
        Node::Bool(b) => Ok(input.iter().map(|_| Cow::Owned(Value::from(*b))).collect()),
        Node::Field(name) => Ok(input
            .iter()
            .filter_map(|v| child(v, |x| x.as_object().and_then(|m| m.get(name))))
            .collect()),
        Node::Wildcard => Ok(input.iter().flat_map(children).collect()),
        Node::Recursive => {
            fn descend<'a>(v: Cow<'a, Value>, out: &mut Values<'a>) {
                let kids = children(&v);
                if kids.is_empty() {
                    return;
                }
                out.push(v);
                for k in kids {
                    descend(k, out);
                }
            }
            let mut out = Vec::new();
            for v in input {
                descend(v, &mut out);
            }
            Ok(out)
        }
        Node::Union(parts) => {
            let mut out = Vec::new();
            for part in parts {
                out.extend(eval_list(input.clone(), part)?);
            }
            Ok(out)
        }
        Node::Array(slice) => {
            let mut out = Vec::new();
            for v in &input {
                let len = match v.as_ref() {
                    Value::Null => continue,
                    Value::Array(a) => a.len() as i64,
                    other => return Err(format!("{} is not array or slice", go_type(other))),
                };
                let mut start = slice.start.unwrap_or(0);
                if start < 0 {
                    start += len;
                }
                let mut end = slice.end.unwrap_or(len);
                if end < 0 || (end == 0 && slice.single) {
                    end += len;
                }
                if end != start {
                    if start >= len {
                        return Err(format!(
                            "array index out of bounds: index {start}, length {len}"
                        ));
                    }
                    if end > len {
                        return Err(format!(
                            "array index out of bounds: index {}, length {len}",
                            end - 1
                        ));
                    }
                }
                if start < 0 || end < start {
                    return Err("slice bounds out of range".to_owned());
                }
                let step = slice.step.unwrap_or(1).max(1) as usize;
                for i in (start as usize..end as usize).step_by(step) {
                    out.extend(child(v, |x| x.as_array().and_then(|a| a.get(i))));
                }
            }
            Ok(out)
        }
        Node::Filter { left, op, right } => {
            let mut out = Vec::new();
            for v in &input {
                let Value::Array(items) = v.as_ref() else {
                    return Err("value is not array or slice and cannot be filtered".to_owned());
                };
                for i in 0..items.len() {
                    let Some(item) = child(v, |x| x.as_array().and_then(|a| a.get(i))) else {
                        continue;
                    };
                    let lefts = eval_list(vec![item.clone()], left);
                    if op == "exists" {
                        if lefts.is_ok_and(|l| !l.is_empty()) {
                            out.push(item);
                        }
                        continue;
                    }
                    let lefts = lefts?;
                    let rights = eval_list(vec![item.clone()], right)?;
                    let ([l], [r]) = (lefts.as_slice(), rights.as_slice()) else {
                        return Err("can only compare one element at a time".to_owned());
                    };
                    if compare(l, op, r)? {
                        out.push(item);
                    }
                }
            }
            Ok(out)
        }
    }
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// The text/template comparisons jsonpath filters use: same basic kind on both sides (an
/// integer is not a float), ordering only for numbers and strings.
fn compare(l: &Value, op: &str, r: &Value) -> Result<bool, String> {
    use std::cmp::Ordering;
    let incompatible = || "incompatible types for comparison".to_owned();
    let ord: Option<Ordering> = match (l, r) {
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => {
            return match op {
                "==" => Ok(a == b),
                "!=" => Ok(a != b),
                "<" | ">" | "<=" | ">=" => Err("invalid type for comparison".to_owned()),
                other => Err(format!("unrecognized filter operator {other}")),
            };
        }
        (Value::Number(a), Value::Number(b)) => match (a.is_f64(), b.is_f64()) {
            (false, false) => match (a.as_i64(), b.as_i64()) {
                (Some(x), Some(y)) => Some(x.cmp(&y)),
                _ => a
                    .as_u64()
                    .zip(b.as_u64())
                    .map(|(x, y)| x.cmp(&y))
                    .or(Some(Ordering::Less)),
            },
            (true, true) => a
                .as_f64()
                .zip(b.as_f64())
                .and_then(|(x, y)| x.partial_cmp(&y)),
            _ => return Err(incompatible()),
        },
        _ => return Err(incompatible()),
    };
    Ok(match op {
        "==" => ord == Some(Ordering::Equal),
        "!=" => ord != Some(Ordering::Equal),
        "<" => ord == Some(Ordering::Less),
        ">" => ord == Some(Ordering::Greater),
        "<=" => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        ">=" => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        other => return Err(format!("unrecognized filter operator {other}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    fn first(path: &str, obj: &Value) -> Option<Value> {
        JsonPath::parse(path)
            .unwrap()
            .first(obj)
            .map(Cow::into_owned)
    }

    fn hoge() -> Value {
        json!({
            "apiVersion": "stable.example.com/v1", "kind": "Hoge",
            "metadata": {"name": "my-hoge", "creationTimestamp": "2024-05-01T11:55:00Z",
                         "labels": {"app": "web", "app.kubernetes.io/name": "hoge"}},
            "spec": {"replicas": 3, "ratio": 0.5, "big": 1.5e21, "paused": false, "image": "nginx:1.27",
                     "items": [{"name": "a", "n": 1}, {"name": "b", "n": 2}],
                     "selector": {"b": "2", "a": "<1>"}},
            "status": {"conditions": [
                {"type": "Progressing", "status": "True"},
                {"type": "Ready", "status": "False", "lastTransitionTime": "2024-04-29T12:00:00Z"}]}
        })
    }

    #[test]
    fn paths_find_what_kubectl_finds() {
        let o = hoge();
        assert_eq!(first(".spec.replicas", &o), Some(json!(3)));
        assert_eq!(
            first(r#".status.conditions[?(@.type=="Ready")].status"#, &o),
            Some(json!("False"))
        );
        assert_eq!(
            first(".status.conditions[?(@.type == 'Ready')].status", &o),
            Some(json!("False"))
        );
        assert_eq!(
            first(r#".status.conditions[?(@.type!="Ready")].type"#, &o),
            Some(json!("Progressing"))
        );
        assert_eq!(first(".spec.items[?(@.n>1)].name", &o), Some(json!("b")));
        assert_eq!(first(".spec.items[?(@.name)].n", &o), Some(json!(1)));
        assert_eq!(first(".spec.items[*].name", &o), Some(json!("a")));
        assert_eq!(first(".spec.items[1].name", &o), Some(json!("b")));
        assert_eq!(first(".spec.items[-1].name", &o), Some(json!("b")));
        assert_eq!(first(".spec.items[0:1].name", &o), Some(json!("a")));
        assert_eq!(first(".metadata.labels.app", &o), Some(json!("web")));
        assert_eq!(
            first(r".metadata.labels.app\.kubernetes\.io/name", &o),
            Some(json!("hoge"))
        );
        assert_eq!(first(".metadata.labels['app']", &o), Some(json!("web")));
        assert_eq!(first("{.spec.image}", &o), Some(json!("nginx:1.27")));
        assert_eq!(first("$.spec.image", &o), Some(json!("nginx:1.27")));
        assert_eq!(first("..image", &o), Some(json!("nginx:1.27")));
        assert_eq!(first(".spec.items[0,1].name", &o), Some(json!("a")));
        let all = JsonPath::parse(".spec.items[*].name").unwrap();
        assert_eq!(all.find(&o).unwrap().len(), 2);
        // Missing keys give nothing; errors too.
        assert_eq!(first(".spec.missing.deeper", &o), None);
        assert_eq!(first(".spec.items[5].name", &o), None);
        assert_eq!(first(".spec.replicas[0]", &o), None);
        assert_eq!(
            first(r#".status.missing[?(@.type=="Ready")].status"#, &o),
            None
        );
        // Comparing an integer with a string fails the whole path.
        assert_eq!(first(r#".spec.items[?(@.n=="1")].name"#, &o), None);
    }

    #[test]
    fn bad_paths_do_not_parse() {
        for bad in [
            ".spec[",
            ".spec.items[?(@.a==\"x\"]",
            ".spec.items[a]",
            ".spec.items[1:2:3:4]",
            ".spec.items[?(@.a=='x)]",
            "range",
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn default_columns_are_name_and_age() {
        let cols = PrinterColumns::new(&json!({"name": "v1", "served": true, "storage": true}));
        let defs = cols.definitions();
        assert_eq!(defs.len(), 2);
        assert_eq!(defs[0]["name"], "Name");
        assert_eq!(defs[0]["format"], "name");
        assert!(
            defs[0]["description"]
                .as_str()
                .unwrap()
                .starts_with("Name must be unique")
        );
        assert_eq!(defs[1]["name"], "Age");
        assert_eq!(defs[1]["type"], "date");
        assert_eq!(defs[1]["format"], "");
        assert!(
            defs[1]["description"]
                .as_str()
                .unwrap()
                .starts_with("CreationTimestamp is")
        );
        assert_eq!(
            cols.cells(&hoge(), now()),
            vec![json!("my-hoge"), json!("5m")]
        );
    }

    #[test]
    fn declared_columns_in_order_with_types() {
        let version = json!({"name": "v1", "additionalPrinterColumns": [
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status", "description": "Whether it is ready"},
            {"name": "Image", "type": "string", "priority": 1, "jsonPath": ".spec.image"},
            {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio"},
            {"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused"},
            {"name": "Since", "type": "date", "jsonPath": ".status.conditions[1].lastTransitionTime"},
            {"name": "Missing", "type": "string", "jsonPath": ".spec.nothing"},
            {"name": "AsInt", "type": "integer", "jsonPath": ".spec.ratio"},
            {"name": "Wrong", "type": "integer", "jsonPath": ".spec.image"},
            {"name": "Selector", "type": "string", "jsonPath": ".spec.selector"},
            {"name": "Items", "type": "string", "jsonPath": ".spec.items"},
            {"name": "Count", "type": "string", "jsonPath": ".spec.replicas"},
            {"name": "Big", "type": "string", "jsonPath": ".spec.big"},
        ]});
        let cols = PrinterColumns::new(&version);
        let defs = cols.definitions();
        assert_eq!(defs.len(), 14);
        assert_eq!(
            defs[1],
            json!({"name": "Replicas", "type": "integer", "format": "", "description": "Custom resource definition column (in JSONPath format): .spec.replicas", "priority": 0})
        );
        assert_eq!(defs[2]["description"], "Whether it is ready");
        assert_eq!(defs[3]["priority"], 1);
        assert_eq!(
            cols.cells(&hoge(), now()),
            vec![
                json!("my-hoge"),
                json!(3),
                json!("False"),
                json!("nginx:1.27"),
                json!(0.5),
                json!(false),
                json!("2d"),
                Value::Null,
                json!(0),
                Value::Null,
                json!(r#"{"a":"\u003c1\u003e","b":"2"}"#),
                json!(r#"[{"n":1,"name":"a"},{"n":2,"name":"b"}]"#),
                json!("3"),
                json!("1.5e+21"),
            ]
        );
    }

    #[test]
    fn dates_as_kubectl_shows_them() {
        let version =
            json!({"additionalPrinterColumns": [{"name": "T", "type": "date", "jsonPath": ".t"}]});
        let cols = PrinterColumns::new(&version);
        let cell =
            |t: Value| cols.cells(&json!({"metadata": {"name": "x"}, "t": t}), now())[1].clone();
        assert_eq!(cell(json!("2024-05-01T11:59:30Z")), json!("30s"));
        assert_eq!(cell(json!("2024-05-01T11:59:30.5Z")), json!("29s"));
        assert_eq!(cell(json!("yesterday")), json!("<invalid>"));
        assert_eq!(cell(json!("")), json!("<unknown>"));
        assert_eq!(cell(json!("0001-01-01T00:00:00Z")), json!("<unknown>"));
        assert_eq!(cell(json!(12)), Value::Null);
        assert_eq!(cell(Value::Null), Value::Null);
    }

    #[test]
    fn an_unparsable_column_ends_the_list() {
        let version = json!({"additionalPrinterColumns": [
            {"name": "A", "type": "string", "jsonPath": ".a"},
            {"name": "B", "type": "string", "jsonPath": ".b["},
            {"name": "C", "type": "string", "jsonPath": ".c"}]});
        let cols = PrinterColumns::new(&version);
        assert_eq!(cols.definitions().len(), 2);
        assert_eq!(
            cols.cells(&json!({"a": null}), now()),
            vec![json!(""), json!("<no value>")]
        );
    }

    #[test]
    fn floats_print_as_go() {
        assert_eq!(go_float(0.5), "0.5");
        assert_eq!(go_float(3.0), "3");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(1234567.0), "1.234567e+06");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(-2.5e-7), "-2.5e-07");
    }
}
