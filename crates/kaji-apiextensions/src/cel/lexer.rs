//! Tokens of CEL source text (the lexical grammar of the CEL spec: decimal and hex ints, `u`
//! suffixed uints, doubles, quoted/triple-quoted/raw/bytes strings with escapes, `//` comments).

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    /// An integer literal's magnitude (the parser applies a leading `-`).
    Int(u64),
    Uint(u64),
    Double(f64),
    Str(String),
    Bytes(Vec<u8>),
    Ident(String),
    /// A backquoted field name (`` self.`foo-bar` ``).
    Quoted(String),
    Punct(&'static str),
    Eof,
}

impl Tok {
    /// The token as ANTLR's messages quote it (`mismatched input ')'`).
    pub(crate) fn display(&self, src: &str, start: usize, end: usize) -> String {
        match self {
            Tok::Eof => "<EOF>".to_string(),
            _ => src[start..end].to_string(),
        }
    }
}

/// A token with its byte span in the source.
#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub tok: Tok,
    pub start: usize,
    pub end: usize,
}

/// A lexical error at a byte offset.
pub(crate) struct LexError {
    pub pos: usize,
    pub msg: String,
}

const PUNCTS: [&str; 24] = [
    "==", "!=", "<=", ">=", "&&", "||", "+", "-", "*", "/", "%", "!", "<", ">", "?", ":", ".", ",",
    "(", ")", "[", "]", "{", "}",
];

pub(crate) fn lex(src: &str) -> Result<Vec<Token>, LexError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0c) {
            i += 1;
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        // String prefixes: r, b, rb, br (any case) directly before a quote.
        let mut j = i;
        let (mut raw, mut bytes) = (false, false);
        while j < b.len() && j - i < 2 {
            match b[j] {
                b'r' | b'R' if !raw => raw = true,
                b'b' | b'B' if !bytes => bytes = true,
                _ => break,
            }
            j += 1;
        }
        if j < b.len() && (b[j] == b'"' || b[j] == b'\'') && (raw || bytes || j == i) {
            let (tok, end) = lex_string(src, j, raw, bytes)?;
            out.push(Token { tok, start, end });
            i = end;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let mut j = i + 1;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            out.push(Token {
                tok: Tok::Ident(src[i..j].to_string()),
                start,
                end: j,
            });
            i = j;
            continue;
        }
        if c == b'`' {
            let Some(len) = src[i + 1..].find('`') else {
                return Err(token_error(src, i));
            };
            let name = &src[i + 1..i + 1 + len];
            if name.is_empty() || name.contains(['\n', '\r']) {
                return Err(token_error(src, i));
            }
            out.push(Token {
                tok: Tok::Quoted(name.to_string()),
                start,
                end: i + len + 2,
            });
            i += len + 2;
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let (tok, end) = lex_number(src, i)?;
            out.push(Token { tok, start, end });
            i = end;
            continue;
        }
        match PUNCTS.iter().find(|p| src[i..].starts_with(**p)) {
            Some(p) => {
                out.push(Token {
                    tok: Tok::Punct(p),
                    start,
                    end: i + p.len(),
                });
                i += p.len();
            }
            None => return Err(token_error(src, i)),
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        start: b.len(),
        end: b.len(),
    });
    Ok(out)
}

fn token_error(src: &str, pos: usize) -> LexError {
    let ch = src[pos..].chars().next().unwrap_or(' ');
    LexError {
        pos,
        msg: format!("Syntax error: token recognition error at: '{ch}'"),
    }
}

fn lex_number(src: &str, start: usize) -> Result<(Tok, usize), LexError> {
    let b = src.as_bytes();
    let digits = |mut j: usize| {
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        j
    };
    let invalid = |what: &str| LexError {
        pos: start,
        msg: format!("invalid {what} literal"),
    };
    if b[start] == b'0' && matches!(b.get(start + 1), Some(b'x' | b'X')) {
        let mut j = start + 2;
        while j < b.len() && b[j].is_ascii_hexdigit() {
            j += 1;
        }
        let v = u64::from_str_radix(&src[start + 2..j], 16).map_err(|_| invalid("int"))?;
        if matches!(b.get(j), Some(b'u' | b'U')) {
            return Ok((Tok::Uint(v), j + 1));
        }
        return Ok((Tok::Int(v), j));
    }
    let mut j = digits(start);
    let mut float = false;
    if b.get(j) == Some(&b'.') && b.get(j + 1).is_some_and(u8::is_ascii_digit) {
        float = true;
        j = digits(j + 1);
    }
    if matches!(b.get(j), Some(b'e' | b'E')) {
        let mut k = j + 1;
        if matches!(b.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        if b.get(k).is_some_and(u8::is_ascii_digit) {
            float = true;
            j = digits(k);
        }
    }
    let text = &src[start..j];
    if float {
        let v: f64 = text.parse().map_err(|_| invalid("double"))?;
        return Ok((Tok::Double(v), j));
    }
    let v: u64 = text.parse().map_err(|_| invalid("int"))?;
    if matches!(b.get(j), Some(b'u' | b'U')) {
        return Ok((Tok::Uint(v), j + 1));
    }
    Ok((Tok::Int(v), j))
}

/// A quoted literal starting at the quote `q`; returns the token and the end offset.
fn lex_string(src: &str, q: usize, raw: bool, bytes: bool) -> Result<(Tok, usize), LexError> {
    let b = src.as_bytes();
    let quote = b[q];
    let triple = b.get(q + 1) == Some(&quote) && b.get(q + 2) == Some(&quote);
    let delim_len = if triple { 3 } else { 1 };
    let mut i = q + delim_len;
    let mut out: Vec<u8> = Vec::new();
    let unterminated = || token_error(src, q);
    loop {
        if i >= b.len() {
            return Err(unterminated());
        }
        let c = b[i];
        if c == quote && (!triple || (b.get(i + 1) == Some(&quote) && b.get(i + 2) == Some(&quote)))
        {
            i += delim_len;
            break;
        }
        if !triple && (c == b'\n' || c == b'\r') {
            return Err(unterminated());
        }
        if c == b'\\' && !raw {
            let (consumed, piece) = escape(src, i, bytes)?;
            out.extend_from_slice(&piece);
            i += consumed;
            continue;
        }
        if c == b'\\' && raw && b.get(i + 1) == Some(&quote) && !triple {
            // A raw string still cannot end at an escaped quote.
            out.extend_from_slice(&b[i..i + 2]);
            i += 2;
            continue;
        }
        out.push(c);
        i += 1;
    }
    if bytes {
        return Ok((Tok::Bytes(out), i));
    }
    match String::from_utf8(out) {
        Ok(s) => Ok((Tok::Str(s), i)),
        Err(_) => Err(LexError {
            pos: q,
            msg: "invalid UTF-8 in string literal".to_string(),
        }),
    }
}

/// One escape sequence at `i` (the backslash): bytes consumed and the bytes it stands for.
fn escape(src: &str, i: usize, bytes: bool) -> Result<(usize, Vec<u8>), LexError> {
    let b = src.as_bytes();
    let bad = || LexError {
        pos: i,
        msg: "Syntax error: invalid escape sequence".to_string(),
    };
    let Some(&e) = b.get(i + 1) else {
        return Err(bad());
    };
    let simple = match e {
        b'a' => Some(7),
        b'b' => Some(8),
        b'f' => Some(12),
        b'n' => Some(b'\n'),
        b'r' => Some(b'\r'),
        b't' => Some(b'\t'),
        b'v' => Some(11),
        b'\\' | b'\'' | b'"' | b'`' | b'?' => Some(e),
        _ => None,
    };
    if let Some(v) = simple {
        return Ok((2, vec![v]));
    }
    let hex = |from: usize, n: usize| -> Result<u32, LexError> {
        let s = src.get(from..from + n).ok_or_else(bad)?;
        if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        u32::from_str_radix(s, 16).map_err(|_| bad())
    };
    let (consumed, code, is_byte) = match e {
        b'x' | b'X' => (4, hex(i + 2, 2)?, true),
        b'u' => (6, hex(i + 2, 4)?, false),
        b'U' => (10, hex(i + 2, 8)?, false),
        b'0'..=b'3' => {
            let s = src.get(i + 1..i + 4).ok_or_else(bad)?;
            if !s.bytes().all(|c| (b'0'..=b'7').contains(&c)) {
                return Err(bad());
            }
            (4, u32::from_str_radix(s, 8).map_err(|_| bad())?, true)
        }
        _ => return Err(bad()),
    };
    if bytes && is_byte {
        return Ok((consumed, vec![u8::try_from(code).map_err(|_| bad())?]));
    }
    let ch = char::from_u32(code).ok_or_else(bad)?;
    let mut buf = [0u8; 4];
    Ok((consumed, ch.encode_utf8(&mut buf).as_bytes().to_vec()))
}
