//! The CEL grammar (spec's `Expr` .. `Primary`) as a recursive-descent parser, with the
//! macros (`has`, `all`, `exists`, `exists_one`, `map`, `filter`, `cel.bind`) expanded and
//! references checked (only `self`, `oldSelf`, macro variables, type names and known functions),
//! so a misspelt rule fails at CRD creation as upstream's checker makes it.

use super::lexer::{LexError, Tok, Token, lex};

/// Deepest expression tree accepted (cel-go's default recursion limit).
const MAX_DEPTH: u32 = 100;

#[derive(Clone, Debug)]
pub(crate) struct Expr {
    pub kind: Kind,
    /// Byte offset of the node in the source (for compile errors).
    pub pos: usize,
    depth: u32,
}

#[derive(Clone, Debug)]
pub(crate) enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Double(f64),
    Str(String),
    Bytes(Vec<u8>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Macro {
    All,
    Exists,
    ExistsOne,
    Map,
    Filter,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    Lit(Lit),
    Ident(String),
    Select {
        operand: Box<Expr>,
        field: String,
        optional: bool,
    },
    Has {
        operand: Box<Expr>,
        field: String,
    },
    Index {
        operand: Box<Expr>,
        index: Box<Expr>,
        optional: bool,
    },
    Call {
        func: String,
        target: Option<Box<Expr>>,
        args: Vec<Expr>,
    },
    /// `s.matches('<literal>')` with its regex compiled once.
    Matches {
        target: Box<Expr>,
        re: regex::Regex,
    },
    List(Vec<(Expr, bool)>),
    Map(Vec<(Expr, Expr, bool)>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    Comprehension {
        mac: Macro,
        var: String,
        range: Box<Expr>,
        body: Box<Expr>,
        /// `map(x, filter, transform)`: `body` is the filter.
        transform: Option<Box<Expr>>,
    },
    Bind {
        var: String,
        init: Box<Expr>,
        body: Box<Expr>,
    },
}

impl Expr {
    pub(crate) fn depth(&self) -> u32 {
        self.depth
    }

    fn new(kind: Kind, pos: usize) -> Expr {
        let mut e = Expr {
            kind,
            pos,
            depth: 0,
        };
        e.depth = 1 + e.children().iter().map(|c| c.depth).max().unwrap_or(0);
        e
    }

    pub(crate) fn children(&self) -> Vec<&Expr> {
        match &self.kind {
            Kind::Lit(_) | Kind::Ident(_) => vec![],
            Kind::Select { operand, .. } | Kind::Has { operand, .. } => vec![operand],
            Kind::Index { operand, index, .. } => vec![operand, index],
            Kind::Call { target, args, .. } => target.iter().map(|t| &**t).chain(args).collect(),
            Kind::Matches { target, .. } => vec![target],
            Kind::List(items) => items.iter().map(|(e, _)| e).collect(),
            Kind::Map(entries) => entries.iter().flat_map(|(k, v, _)| [k, v]).collect(),
            Kind::Not(e) | Kind::Neg(e) => vec![e],
            Kind::Binary(_, a, b) | Kind::And(a, b) | Kind::Or(a, b) => vec![a, b],
            Kind::Cond(a, b, c) => vec![a, b, c],
            Kind::Comprehension {
                range,
                body,
                transform,
                ..
            } => {
                let mut v: Vec<&Expr> = vec![range, body];
                v.extend(transform.iter().map(|t| &**t));
                v
            }
            Kind::Bind { init, body, .. } => vec![init, body],
        }
    }
}

/// A compile error: byte offset and message (formatted by `cel::compile_error`).
pub(crate) struct SyntaxError {
    pub pos: usize,
    pub msg: String,
}

impl From<LexError> for SyntaxError {
    fn from(e: LexError) -> Self {
        SyntaxError {
            pos: e.pos,
            msg: e.msg,
        }
    }
}

pub(crate) fn parse(src: &str) -> Result<Expr, SyntaxError> {
    parse_with(src, &[])
}

/// `parse` in an environment that declares `variables` besides `self` and `oldSelf` (an
/// admission policy's `object`, `request`, `params`, ...).
pub(crate) fn parse_with(src: &str, variables: &[&str]) -> Result<Expr, SyntaxError> {
    let toks = lex(src)?;
    let mut p = Parser {
        src,
        toks,
        i: 0,
        nesting: 0,
    };
    let e = p.expr()?;
    if p.peek() != &Tok::Eof {
        return Err(p.mismatched("<EOF>"));
    }
    check(&e, &mut variables.iter().map(|v| v.to_string()).collect(), 0)?;
    Ok(e)
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    i: usize,
    nesting: u32,
}

const RESERVED: [&str; 18] = [
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
    "in",
];

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].tok
    }

    fn pos(&self) -> usize {
        self.toks[self.i].start
    }

    fn is(&self, p: &str) -> bool {
        matches!(self.peek(), Tok::Punct(q) if *q == p)
    }

    fn eat(&mut self, p: &str) -> bool {
        if self.is(p) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, p: &str) -> Result<(), SyntaxError> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(self.mismatched(&format!("'{p}'")))
        }
    }

    fn mismatched(&self, expecting: &str) -> SyntaxError {
        let t = &self.toks[self.i];
        let shown = t.tok.display(self.src, t.start, t.end);
        SyntaxError {
            pos: t.start,
            msg: format!("Syntax error: mismatched input '{shown}' expecting {expecting}"),
        }
    }

    fn deeper(&mut self) -> Result<(), SyntaxError> {
        self.nesting += 1;
        if self.nesting > MAX_DEPTH {
            return Err(SyntaxError {
                pos: self.pos(),
                msg: format!("expression recursion limit exceeded: {MAX_DEPTH}"),
            });
        }
        Ok(())
    }

    fn node(&self, kind: Kind, pos: usize) -> Result<Expr, SyntaxError> {
        let e = Expr::new(kind, pos);
        if e.depth > MAX_DEPTH {
            return Err(SyntaxError {
                pos,
                msg: format!("expression recursion limit exceeded: {MAX_DEPTH}"),
            });
        }
        Ok(e)
    }

    fn expr(&mut self) -> Result<Expr, SyntaxError> {
        self.deeper()?;
        let pos = self.pos();
        let cond = self.or()?;
        let e = if self.eat("?") {
            let a = self.or()?;
            self.expect(":")?;
            let b = self.expr()?;
            self.node(Kind::Cond(Box::new(cond), Box::new(a), Box::new(b)), pos)?
        } else {
            cond
        };
        self.nesting -= 1;
        Ok(e)
    }

    fn or(&mut self) -> Result<Expr, SyntaxError> {
        let mut e = self.and()?;
        while self.is("||") {
            let pos = self.pos();
            self.i += 1;
            let r = self.and()?;
            e = self.node(Kind::Or(Box::new(e), Box::new(r)), pos)?;
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, SyntaxError> {
        let mut e = self.relation()?;
        while self.is("&&") {
            let pos = self.pos();
            self.i += 1;
            let r = self.relation()?;
            e = self.node(Kind::And(Box::new(e), Box::new(r)), pos)?;
        }
        Ok(e)
    }

    fn relation(&mut self) -> Result<Expr, SyntaxError> {
        let mut e = self.addition()?;
        loop {
            let op = match self.peek() {
                Tok::Punct("<") => BinOp::Lt,
                Tok::Punct("<=") => BinOp::Le,
                Tok::Punct(">") => BinOp::Gt,
                Tok::Punct(">=") => BinOp::Ge,
                Tok::Punct("==") => BinOp::Eq,
                Tok::Punct("!=") => BinOp::Ne,
                Tok::Ident(s) if s == "in" => BinOp::In,
                _ => return Ok(e),
            };
            let pos = self.pos();
            self.i += 1;
            let r = self.addition()?;
            e = self.node(Kind::Binary(op, Box::new(e), Box::new(r)), pos)?;
        }
    }

    fn addition(&mut self) -> Result<Expr, SyntaxError> {
        let mut e = self.multiplication()?;
        loop {
            let op = match self.peek() {
                Tok::Punct("+") => BinOp::Add,
                Tok::Punct("-") => BinOp::Sub,
                _ => return Ok(e),
            };
            let pos = self.pos();
            self.i += 1;
            let r = self.multiplication()?;
            e = self.node(Kind::Binary(op, Box::new(e), Box::new(r)), pos)?;
        }
    }

    fn multiplication(&mut self) -> Result<Expr, SyntaxError> {
        let mut e = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Punct("*") => BinOp::Mul,
                Tok::Punct("/") => BinOp::Div,
                Tok::Punct("%") => BinOp::Rem,
                _ => return Ok(e),
            };
            let pos = self.pos();
            self.i += 1;
            let r = self.unary()?;
            e = self.node(Kind::Binary(op, Box::new(e), Box::new(r)), pos)?;
        }
    }

    fn unary(&mut self) -> Result<Expr, SyntaxError> {
        let pos = self.pos();
        if self.eat("!") {
            self.deeper()?;
            let e = self.unary()?;
            self.nesting -= 1;
            return self.node(Kind::Not(Box::new(e)), pos);
        }
        if self.eat("-") {
            // `-9223372036854775808` is an int literal, not the negation of one.
            if let Tok::Int(v) = *self.peek() {
                let after = &self.toks[self.i + 1].tok;
                if !matches!(after, Tok::Punct(".") | Tok::Punct("[")) {
                    self.i += 1;
                    let n = 0i128 - i128::from(v);
                    let n = i64::try_from(n).map_err(|_| SyntaxError {
                        pos,
                        msg: "invalid int literal".to_string(),
                    })?;
                    return self.node(Kind::Lit(Lit::Int(n)), pos);
                }
            }
            if let Tok::Double(v) = *self.peek() {
                let after = &self.toks[self.i + 1].tok;
                if !matches!(after, Tok::Punct(".") | Tok::Punct("[")) {
                    self.i += 1;
                    return self.node(Kind::Lit(Lit::Double(-v)), pos);
                }
            }
            self.deeper()?;
            let e = self.unary()?;
            self.nesting -= 1;
            return self.node(Kind::Neg(Box::new(e)), pos);
        }
        self.member()
    }

    fn member(&mut self) -> Result<Expr, SyntaxError> {
        let mut e = self.primary()?;
        loop {
            let pos = self.pos();
            if self.eat(".") {
                let optional = self.eat("?");
                let field = match self.peek().clone() {
                    Tok::Ident(s) if s != "in" => s,
                    Tok::Quoted(s) if !optional || !s.is_empty() => s,
                    _ => return Err(self.mismatched("IDENTIFIER")),
                };
                let field_pos = self.pos();
                self.i += 1;
                if !optional && self.is("(") {
                    self.i += 1;
                    let args = self.args(")")?;
                    e = self.call(field, Some(e), args, field_pos)?;
                } else {
                    e = self.node(
                        Kind::Select {
                            operand: Box::new(e),
                            field,
                            optional,
                        },
                        pos,
                    )?;
                }
            } else if self.eat("[") {
                let optional = self.eat("?");
                let index = self.expr()?;
                self.expect("]")?;
                e = self.node(
                    Kind::Index {
                        operand: Box::new(e),
                        index: Box::new(index),
                        optional,
                    },
                    pos,
                )?;
            } else {
                return Ok(e);
            }
        }
    }

    /// Comma-separated expressions up to `close` (trailing comma allowed).
    fn args(&mut self, close: &str) -> Result<Vec<Expr>, SyntaxError> {
        let mut args = Vec::new();
        while !self.eat(close) {
            args.push(self.expr()?);
            if !self.eat(",") {
                self.expect(close)?;
                break;
            }
        }
        Ok(args)
    }

    fn primary(&mut self) -> Result<Expr, SyntaxError> {
        let pos = self.pos();
        let tok = self.peek().clone();
        self.i += 1;
        let lit = |l| Kind::Lit(l);
        match tok {
            Tok::Int(v) => {
                let v = i64::try_from(v).map_err(|_| SyntaxError {
                    pos,
                    msg: "invalid int literal".to_string(),
                })?;
                self.node(lit(Lit::Int(v)), pos)
            }
            Tok::Uint(v) => self.node(lit(Lit::Uint(v)), pos),
            Tok::Double(v) => self.node(lit(Lit::Double(v)), pos),
            Tok::Str(s) => self.node(lit(Lit::Str(s)), pos),
            Tok::Bytes(b) => self.node(lit(Lit::Bytes(b)), pos),
            Tok::Ident(name) => match name.as_str() {
                "true" => self.node(lit(Lit::Bool(true)), pos),
                "false" => self.node(lit(Lit::Bool(false)), pos),
                "null" => self.node(lit(Lit::Null), pos),
                _ if RESERVED.contains(&name.as_str()) => {
                    self.i -= 1;
                    Err(SyntaxError {
                        pos,
                        msg: format!("reserved identifier: {name}"),
                    })
                }
                _ => {
                    if self.eat("(") {
                        let args = self.args(")")?;
                        return self.call(name, None, args, pos);
                    }
                    self.node(Kind::Ident(name), pos)
                }
            },
            Tok::Punct(".") => {
                // A leading dot names the root scope: `.self` is `self`.
                match self.peek().clone() {
                    Tok::Ident(name) if !RESERVED.contains(&name.as_str()) => {
                        self.i += 1;
                        if self.eat("(") {
                            let args = self.args(")")?;
                            return self.call(name, None, args, pos);
                        }
                        self.node(Kind::Ident(name), pos)
                    }
                    _ => Err(self.mismatched("IDENTIFIER")),
                }
            }
            Tok::Punct("(") => {
                let e = self.expr()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Punct("[") => {
                let mut items = Vec::new();
                while !self.eat("]") {
                    let optional = self.eat("?");
                    items.push((self.expr()?, optional));
                    if !self.eat(",") {
                        self.expect("]")?;
                        break;
                    }
                }
                self.node(Kind::List(items), pos)
            }
            Tok::Punct("{") => {
                let mut entries = Vec::new();
                while !self.eat("}") {
                    let optional = self.eat("?");
                    let k = self.expr()?;
                    self.expect(":")?;
                    let v = self.expr()?;
                    entries.push((k, v, optional));
                    if !self.eat(",") {
                        self.expect("}")?;
                        break;
                    }
                }
                self.node(Kind::Map(entries), pos)
            }
            _ => {
                self.i -= 1;
                Err(self.mismatched(
                    "{'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, \
                     NUM_UINT, STRING, BYTES, IDENTIFIER}",
                ))
            }
        }
    }

    /// A call, with macros expanded and namespaced functions (`optional.of`) named in full.
    fn call(
        &mut self,
        func: String,
        target: Option<Expr>,
        mut args: Vec<Expr>,
        pos: usize,
    ) -> Result<Expr, SyntaxError> {
        let err = |msg: &str| {
            Err(SyntaxError {
                pos,
                msg: msg.to_string(),
            })
        };
        // `optional.of(x)`, `math.greatest(...)`, `cel.bind(...)`: a namespace, not a receiver.
        let (func, target) = match target {
            Some(Expr {
                kind: Kind::Ident(ns),
                ..
            }) if matches!(
                ns.as_str(),
                "optional" | "math" | "sets" | "strings" | "cel" | "lists"
            ) =>
            {
                (format!("{ns}.{func}"), None)
            }
            t => (func, t),
        };
        match (func.as_str(), target, args.len()) {
            ("has", None, 1) => match args.pop().map(|a| a.kind) {
                Some(Kind::Select {
                    operand,
                    field,
                    optional: false,
                }) => self.node(Kind::Has { operand, field }, pos),
                _ => err("invalid argument to has() macro"),
            },
            ("cel.bind", None, 3) => {
                let body = args.pop().expect("three args");
                let init = args.pop().expect("three args");
                let Some(Kind::Ident(var)) = args.pop().map(|a| a.kind) else {
                    return err("cel.bind() variable name must be a simple identifier");
                };
                self.node(
                    Kind::Bind {
                        var,
                        init: Box::new(init),
                        body: Box::new(body),
                    },
                    pos,
                )
            }
            (
                name @ ("all" | "exists" | "exists_one" | "existsOne" | "map" | "filter"),
                Some(range),
                n,
            ) if n == 2 || (n == 3 && name == "map") => {
                let mac = match name {
                    "all" => Macro::All,
                    "exists" => Macro::Exists,
                    "exists_one" | "existsOne" => Macro::ExistsOne,
                    "map" => Macro::Map,
                    _ => Macro::Filter,
                };
                let transform = if n == 3 {
                    args.pop().map(Box::new)
                } else {
                    None
                };
                let body = args.pop().expect("macro body");
                let var = match args.pop().map(|a| a.kind) {
                    Some(Kind::Ident(v)) => v,
                    _ => return err("argument must be a simple name"),
                };
                self.node(
                    Kind::Comprehension {
                        mac,
                        var,
                        range: Box::new(range),
                        body: Box::new(body),
                        transform,
                    },
                    pos,
                )
            }
            ("matches", Some(target), 1) if matches!(args[0].kind, Kind::Lit(Lit::Str(_))) => {
                let Kind::Lit(Lit::Str(pattern)) = &args[0].kind else {
                    unreachable!()
                };
                match regex::Regex::new(pattern) {
                    Ok(re) => self.node(
                        Kind::Matches {
                            target: Box::new(target),
                            re,
                        },
                        pos,
                    ),
                    Err(e) => Err(SyntaxError {
                        pos: args[0].pos,
                        msg: format!(
                            "invalid matches argument: {}",
                            e.to_string().lines().last().unwrap_or("invalid regex")
                        ),
                    }),
                }
            }
            (_, target, _) => self.node(
                Kind::Call {
                    func,
                    target: target.map(Box::new),
                    args,
                },
                pos,
            ),
        }
    }
}

/// Type names usable as values (`type(self) == string`).
pub(crate) const TYPE_NAMES: [&str; 10] = [
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
];

/// Global functions and their accepted argument counts.
const GLOBALS: &[(&str, &[usize])] = &[
    ("size", &[1]),
    ("int", &[1]),
    ("uint", &[1]),
    ("double", &[1]),
    ("string", &[1]),
    ("bool", &[1]),
    ("bytes", &[1]),
    ("type", &[1]),
    ("dyn", &[1]),
    ("duration", &[1]),
    ("timestamp", &[1]),
    ("matches", &[2]),
    ("url", &[1]),
    ("isURL", &[1]),
    ("quantity", &[1]),
    ("isQuantity", &[1]),
    ("isIP", &[1]),
    ("isCIDR", &[1]),
    ("optional.of", &[1]),
    ("optional.ofNonZeroValue", &[1]),
    ("optional.none", &[0]),
    ("math.greatest", &[1, 2, 3, 4, 5, 6, 7, 8]),
    ("math.least", &[1, 2, 3, 4, 5, 6, 7, 8]),
    ("math.abs", &[1]),
    ("math.ceil", &[1]),
    ("math.floor", &[1]),
    ("math.round", &[1]),
    ("math.trunc", &[1]),
    ("math.sign", &[1]),
    ("math.isNaN", &[1]),
    ("math.isInf", &[1]),
    ("math.isFinite", &[1]),
    ("sets.contains", &[2]),
    ("sets.equivalent", &[2]),
    ("sets.intersects", &[2]),
    ("strings.quote", &[1]),
    ("lists.range", &[1]),
];

/// Receiver-style functions and their accepted argument counts (not counting the receiver).
const MEMBERS: &[(&str, &[usize])] = &[
    ("size", &[0]),
    ("contains", &[1]),
    ("startsWith", &[1]),
    ("endsWith", &[1]),
    ("matches", &[1]),
    ("lowerAscii", &[0]),
    ("upperAscii", &[0]),
    ("trim", &[0]),
    ("split", &[1, 2]),
    ("join", &[0, 1]),
    ("substring", &[1, 2]),
    ("charAt", &[1]),
    ("indexOf", &[1, 2]),
    ("lastIndexOf", &[1, 2]),
    ("replace", &[2, 3]),
    ("reverse", &[0]),
    ("format", &[1]),
    ("find", &[1]),
    ("findAll", &[1, 2]),
    ("isSorted", &[0]),
    ("sum", &[0]),
    ("min", &[0]),
    ("max", &[0]),
    ("slice", &[2]),
    ("flatten", &[0, 1]),
    ("distinct", &[0]),
    ("sort", &[0]),
    ("hasValue", &[0]),
    ("value", &[0]),
    ("orValue", &[1]),
    ("or", &[1]),
    // Timestamps and durations.
    ("getFullYear", &[0, 1]),
    ("getMonth", &[0, 1]),
    ("getDate", &[0, 1]),
    ("getDayOfMonth", &[0, 1]),
    ("getDayOfWeek", &[0, 1]),
    ("getDayOfYear", &[0, 1]),
    ("getHours", &[0, 1]),
    ("getMinutes", &[0, 1]),
    ("getSeconds", &[0, 1]),
    ("getMilliseconds", &[0, 1]),
    // URLs.
    ("getScheme", &[0]),
    ("getHost", &[0]),
    ("getHostname", &[0]),
    ("getPort", &[0]),
    ("getEscapedPath", &[0]),
    ("getQuery", &[0]),
    // Quantities.
    ("compareTo", &[1]),
    ("isLessThan", &[1]),
    ("isGreaterThan", &[1]),
    ("add", &[1]),
    ("sub", &[1]),
    ("asInteger", &[0]),
    ("asApproximateFloat", &[0]),
    ("sign", &[0]),
    ("isInteger", &[0]),
];

/// Resolves every reference: variables in scope, type names, known functions with their arity.
fn check(e: &Expr, scope: &mut Vec<String>, depth: u32) -> Result<(), SyntaxError> {
    if depth > MAX_DEPTH {
        return Err(SyntaxError {
            pos: e.pos,
            msg: format!("expression recursion limit exceeded: {MAX_DEPTH}"),
        });
    }
    let undeclared = |name: &str| SyntaxError {
        pos: e.pos,
        msg: format!("undeclared reference to '{name}' (in container '')"),
    };
    match &e.kind {
        Kind::Ident(name) => {
            if name == "self"
                || name == "oldSelf"
                || TYPE_NAMES.contains(&name.as_str())
                || scope.iter().any(|v| v == name)
            {
                return Ok(());
            }
            return Err(undeclared(name));
        }
        Kind::Call { func, target, args } => {
            let table = if target.is_some() { MEMBERS } else { GLOBALS };
            match table.iter().find(|(f, _)| f == func) {
                Some((_, arities)) if arities.contains(&args.len()) => {}
                Some(_) => {
                    return Err(SyntaxError {
                        pos: e.pos,
                        msg: format!(
                            "found no matching overload for '{func}' applied to {} argument(s)",
                            args.len()
                        ),
                    });
                }
                None => return Err(undeclared(func)),
            }
        }
        Kind::Comprehension {
            var,
            range,
            body,
            transform,
            ..
        } => {
            check(range, scope, depth + 1)?;
            scope.push(var.clone());
            let r = check(body, scope, depth + 1).and_then(|()| {
                transform
                    .as_ref()
                    .map_or(Ok(()), |t| check(t, scope, depth + 1))
            });
            scope.pop();
            return r;
        }
        Kind::Bind { var, init, body } => {
            check(init, scope, depth + 1)?;
            scope.push(var.clone());
            let r = check(body, scope, depth + 1);
            scope.pop();
            return r;
        }
        _ => {}
    }
    for c in e.children() {
        check(c, scope, depth + 1)?;
    }
    Ok(())
}

/// Whether the expression reads `oldSelf` (a transition rule).
pub(crate) fn uses_ident(e: &Expr, name: &str) -> bool {
    match &e.kind {
        Kind::Ident(n) => n == name,
        Kind::Comprehension {
            var,
            range,
            body,
            transform,
            ..
        } => {
            uses_ident(range, name)
                || (var != name
                    && (uses_ident(body, name)
                        || transform.as_ref().is_some_and(|t| uses_ident(t, name))))
        }
        Kind::Bind { var, init, body } => {
            uses_ident(init, name) || (var != name && uses_ident(body, name))
        }
        _ => e.children().into_iter().any(|c| uses_ident(c, name)),
    }
}
