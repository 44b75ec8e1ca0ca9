//! Durations as Go writes them (`time.Duration.String()`, `time.ParseDuration`): CEL's
//! `duration()`, CronJob's `@every`, metrics' `window`. One parser for all of them.

const NANOS: i128 = 1_000_000_000;

/// Go's `time.ParseDuration`: `1h30m`, `1.5s`, `-300ms`, `0` into nanoseconds; `None` for
/// anything else or beyond an i64 of nanoseconds (about 292 years).
pub fn parse_go(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number = &rest[..n];
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit: i128 = match &rest[..u] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS,
            "m" => 60 * NANOS,
            "h" => 3600 * NANOS,
            _ => return None,
        };
        rest = &rest[u..];
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
            return None;
        }
        let whole: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        total = total.checked_add(whole.checked_mul(unit)?)?;
        if !frac.is_empty() {
            let digits = &frac[..frac.len().min(18)];
            let f: i128 = digits.parse().ok()?;
            total += f * unit / 10i128.pow(u32::try_from(digits.len()).ok()?);
        }
        if total > i128::from(i64::MAX) {
            return None;
        }
    }
    i64::try_from(if neg { -total } else { total }).ok()
}

#[cfg(test)]
mod tests {
    use super::parse_go;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go("0"), Some(0));
        assert_eq!(parse_go("15s"), Some(15_000_000_000));
        assert_eq!(parse_go("1m0.5s"), Some(60_500_000_000));
        assert_eq!(parse_go("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_go("-300ms"), Some(-300_000_000));
        assert_eq!(parse_go("2.001s"), Some(2_001_000_000));
        assert_eq!(parse_go("1µs"), Some(1_000));
        assert_eq!(parse_go(""), None);
        assert_eq!(parse_go("5"), None);
        assert_eq!(parse_go("5x"), None);
        assert_eq!(parse_go("3000000h"), None);
    }
}
