//! String formats of custom resource schemas. Upstream keeps kube-openapi's formats that are in
//! its `supportedFormats` list and drops every other `format` (`int32`, `quantity`...), which
//! then validates nothing; the names are normalised without dashes (`date-time` = `datetime`).

use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    BsonObjectId,
    Uri,
    Email,
    Hostname,
    Ipv4,
    Ipv6,
    Cidr,
    Mac,
    Uuid,
    Uuid3,
    Uuid4,
    Uuid5,
    Byte,
    Date,
    DateTime,
    Duration,
    HexColor,
    RgbColor,
    Ssn,
    /// Formats upstream supports that we accept as any string (`password`, `isbn`, `creditcard`).
    Any,
}

impl Format {
    pub(crate) fn parse(s: &str) -> Option<Format> {
        Some(match s.replace('-', "").as_str() {
            "bsonobjectid" => Format::BsonObjectId,
            "uri" => Format::Uri,
            "email" => Format::Email,
            "hostname" => Format::Hostname,
            "ipv4" => Format::Ipv4,
            "ipv6" => Format::Ipv6,
            "cidr" => Format::Cidr,
            "mac" => Format::Mac,
            "uuid" => Format::Uuid,
            "uuid3" => Format::Uuid3,
            "uuid4" => Format::Uuid4,
            "uuid5" => Format::Uuid5,
            "byte" => Format::Byte,
            "date" => Format::Date,
            "datetime" => Format::DateTime,
            "duration" => Format::Duration,
            "hexcolor" => Format::HexColor,
            "rgbcolor" => Format::RgbColor,
            "ssn" => Format::Ssn,
            "password" | "isbn" | "isbn10" | "isbn13" | "creditcard" => Format::Any,
            _ => return None,
        })
    }

    /// The name in messages (`must be of type uuid`), as kube-openapi registers it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::BsonObjectId => "bsonobjectid",
            Format::Uri => "uri",
            Format::Email => "email",
            Format::Hostname => "hostname",
            Format::Ipv4 => "ipv4",
            Format::Ipv6 => "ipv6",
            Format::Cidr => "cidr",
            Format::Mac => "mac",
            Format::Uuid => "uuid",
            Format::Uuid3 => "uuid3",
            Format::Uuid4 => "uuid4",
            Format::Uuid5 => "uuid5",
            Format::Byte => "byte",
            Format::Date => "date",
            Format::DateTime => "date-time",
            Format::Duration => "duration",
            Format::HexColor => "hexcolor",
            Format::RgbColor => "rgbcolor",
            Format::Ssn => "ssn",
            Format::Any => "string",
        }
    }

    pub(crate) fn is_valid(self, s: &str) -> bool {
        match self {
            Format::BsonObjectId => s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()),
            Format::Uri => uri(s),
            Format::Email => email(s),
            Format::Hostname => hostname(s),
            Format::Ipv4 => s.parse::<Ipv4Addr>().is_ok(),
            Format::Ipv6 => s.parse::<Ipv6Addr>().is_ok(),
            Format::Cidr => cidr(s),
            Format::Mac => mac(s),
            Format::Uuid => uuid(s, None),
            Format::Uuid3 => uuid(s, Some(b'3')),
            Format::Uuid4 => uuid(s, Some(b'4')),
            Format::Uuid5 => uuid(s, Some(b'5')),
            Format::Byte => base64(s),
            Format::Date => date(s),
            Format::DateTime => date_time(s),
            Format::Duration => duration(s),
            Format::HexColor => {
                let h = s.strip_prefix('#').unwrap_or(s);
                (h.len() == 3 || h.len() == 6) && h.bytes().all(|b| b.is_ascii_hexdigit())
            }
            Format::RgbColor => rgb(s),
            Format::Ssn => {
                let d: Vec<u8> = s.bytes().filter(|b| !matches!(b, b'-' | b' ')).collect();
                d.len() == 9 && d.iter().all(u8::is_ascii_digit) && s.len() <= 11
            }
            Format::Any => true,
        }
    }
}

fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// RFC 3339 full-date: `2006-01-02`, with a real month and day.
fn date(s: &str) -> bool {
    let mut it = s.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (it.next(), it.next(), it.next()) else {
        return false;
    };
    let (Some(y), Some(m), Some(d)) = (digits(y, 4), digits(m, 2), digits(d, 2)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// RFC 3339 date-time: `2014-12-15T19:30:20.000Z` or with an offset (`t`/`z` and a space are
/// accepted as strfmt does).
fn date_time(s: &str) -> bool {
    if s.len() < 20 || !s.is_ascii() {
        return false;
    }
    let (d, rest) = s.split_at(10);
    if !date(d) {
        return false;
    }
    let mut rest = rest.chars();
    if !matches!(rest.next(), Some('T' | 't' | ' ')) {
        return false;
    }
    let rest = rest.as_str();
    let (time, zone) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, None)
    } else if rest.len() > 6 {
        let (t, z) = rest.split_at(rest.len() - 6);
        (t, Some(z))
    } else {
        return false;
    };
    if let Some(z) = zone {
        let b = z.as_bytes();
        if !matches!(b[0], b'+' | b'-')
            || b[3] != b':'
            || digits(&z[1..3], 2).is_none_or(|h| h > 23)
            || digits(&z[4..6], 2).is_none_or(|m| m > 59)
        {
            return false;
        }
    }
    let (hms, frac) = match time.split_once('.') {
        Some((h, f)) => (h, Some(f)),
        None => (time, None),
    };
    if frac.is_some_and(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    let p: Vec<&str> = hms.split(':').collect();
    p.len() == 3
        && digits(p[0], 2).is_some_and(|h| h < 24)
        && digits(p[1], 2).is_some_and(|m| m < 60)
        && digits(p[2], 2).is_some_and(|s| s < 61)
}

/// Go's `time.ParseDuration` (`1h30m`, `-1.5s`, `300ms`) or the Scala-like `22 ns` form.
fn duration(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    // Scala-like: a number, optional spaces, a unit word.
    let scala = {
        let num_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        num_end > 0 && {
            let unit = s[num_end..].trim_start();
            matches!(
                unit,
                "ns" | "nano"
                    | "nanos"
                    | "nanosecond"
                    | "nanoseconds"
                    | "us"
                    | "µs"
                    | "micro"
                    | "micros"
                    | "microsecond"
                    | "microseconds"
                    | "ms"
                    | "milli"
                    | "millis"
                    | "millisecond"
                    | "milliseconds"
                    | "s"
                    | "sec"
                    | "secs"
                    | "second"
                    | "seconds"
                    | "m"
                    | "min"
                    | "mins"
                    | "minute"
                    | "minutes"
                    | "h"
                    | "hr"
                    | "hour"
                    | "hours"
                    | "d"
                    | "day"
                    | "days"
                    | "w"
                    | "wk"
                    | "week"
                    | "weeks"
            )
        }
    };
    if scala {
        return true;
    }
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..n];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        if !matches!(
            &rest[..u],
            "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h"
        ) {
            return false;
        }
        rest = &rest[u..];
    }
    true
}

fn uuid(s: &str, version: Option<u8>) -> bool {
    let hex: Vec<u8> = s.bytes().filter(|b| *b != b'-').collect();
    let dashes = s.len() - hex.len();
    if hex.len() != 32 || !hex.iter().all(u8::is_ascii_hexdigit) || (dashes != 0 && dashes != 4) {
        return false;
    }
    if dashes == 4 {
        let b = s.as_bytes();
        if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
            return false;
        }
    }
    match version {
        None => true,
        Some(v) => {
            hex[12] == v
                && (v == b'3' || matches!(hex[16].to_ascii_lowercase(), b'8' | b'9' | b'a' | b'b'))
        }
    }
}

fn base64(s: &str) -> bool {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return false;
    }
    let body = s.trim_end_matches('=');
    b.len() - body.len() <= 2
        && body
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

fn hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 255
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

fn email(s: &str) -> bool {
    // net/mail.ParseAddress also takes `Name <a@b>`; the bare form is what schemas meet.
    let addr = match (s.find('<'), s.strip_suffix('>')) {
        (Some(i), Some(inner)) => &inner[i + 1..],
        _ => s,
    };
    match addr.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !local.contains(char::is_whitespace)
                && !domain.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// `net/url.ParseRequestURI`: an absolute URI (`scheme:...`) or an absolute path.
fn uri(s: &str) -> bool {
    if s.is_empty() || s.contains(char::is_whitespace) {
        return false;
    }
    if s.starts_with('/') {
        return true;
    }
    match s.split_once(':') {
        Some((scheme, _)) => {
            let b = scheme.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphabetic()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        }
        None => false,
    }
}

fn cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    (ip.parse::<Ipv4Addr>().is_ok() && bits <= 32)
        || (ip.parse::<Ipv6Addr>().is_ok() && bits <= 128)
}

fn mac(s: &str) -> bool {
    let groups: Vec<&str> = s.split([':', '-']).collect();
    if (groups.len() == 6 || groups.len() == 8 || groups.len() == 20)
        && groups
            .iter()
            .all(|g| g.len() == 2 && g.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return true;
    }
    let dotted: Vec<&str> = s.split('.').collect();
    (dotted.len() == 3 || dotted.len() == 4 || dotted.len() == 10)
        && dotted
            .iter()
            .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn rgb(s: &str) -> bool {
    let Some(inner) = s.strip_prefix("rgb(").and_then(|r| r.strip_suffix(')')) else {
        return false;
    };
    let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
    parts.len() == 3 && parts.iter().all(|p| p.parse::<u8>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let ok = |f: &str, s: &str| Format::parse(f).unwrap().is_valid(s);
        assert!(ok("date-time", "2014-12-15T19:30:20.000Z"));
        assert!(ok("date-time", "2014-12-15T19:30:20+09:00"));
        assert!(!ok("date-time", "2014-12-15"));
        assert!(!ok("date-time", "2014-12-1\u{e9}T19:30:20.000Z\u{e9}"));
        assert!(!ok("date-time", "2014-13-15T19:30:20Z"));
        assert!(ok("date", "2024-02-29"));
        assert!(!ok("date", "2023-02-29"));
        assert!(ok("uuid", "123e4567-e89b-12d3-a456-426614174000"));
        assert!(!ok("uuid", "not-a-uuid"));
        assert!(ok("uuid4", "123e4567-e89b-42d3-a456-426614174000"));
        assert!(!ok("uuid4", "123e4567-e89b-12d3-a456-426614174000"));
        assert!(ok("ipv4", "10.0.0.1"));
        assert!(!ok("ipv4", "10.0.0.256"));
        assert!(ok("ipv6", "::1"));
        assert!(ok("cidr", "10.0.0.0/8"));
        assert!(!ok("cidr", "10.0.0.0/33"));
        assert!(ok("hostname", "example.com"));
        assert!(!ok("hostname", "-bad.com"));
        assert!(ok("email", "a@b.c"));
        assert!(!ok("email", "ab.c"));
        assert!(ok("uri", "https://example.com/x"));
        assert!(!ok("uri", "example com"));
        assert!(ok("byte", "aGVsbG8="));
        assert!(!ok("byte", "aGVsbG8"));
        assert!(ok("duration", "1h30m"));
        assert!(ok("duration", "22 ns"));
        assert!(!ok("duration", "soon"));
        assert!(ok("mac", "00:1a:2b:3c:4d:5e"));
        assert!(ok("password", "anything"));
        assert!(Format::parse("int32").is_none());
        assert!(Format::parse("quantity").is_none());
    }
}
