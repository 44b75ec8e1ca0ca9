//! `timestamp()` and `duration()`: RFC 3339 timestamps and Go duration strings, without a date
//! library (the civil-date arithmetic is Howard Hinnant's days-from-civil algorithm).

const NANOS: i128 = 1_000_000_000;
const DAY: i128 = 86_400;
/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z, CEL's timestamp range.
const MIN_SECS: i128 = -62_135_596_800;
const MAX_SECS: i128 = 253_402_300_799;

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

pub(crate) fn in_range(nanos: i128) -> bool {
    (MIN_SECS * NANOS..(MAX_SECS + 1) * NANOS).contains(&nanos)
}

/// Parses `2006-01-02T15:04:05.999999999Z07:00` into nanoseconds since the epoch.
pub(crate) fn parse_timestamp(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let t = s.get(from..from + len)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (
        num(0, 4)?,
        num(5, 2)?,
        num(8, 2)?,
        num(11, 2)?,
        num(14, 2)?,
        num(17, 2)?,
    );
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59
    {
        return None;
    }
    let mut i = 19;
    let mut frac: i128 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        frac = digits.parse::<i128>().ok()? * 10i128.pow(9 - u32::try_from(digits.len()).ok()?);
    }
    let offset: i128 = match &s[i..] {
        "Z" | "z" => 0,
        tz if tz.len() == 6
            && matches!(tz.as_bytes()[0], b'+' | b'-')
            && tz.as_bytes()[3] == b':' =>
        {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = i128::from(oh * 3600 + om * 60);
            if tz.starts_with('-') { -o } else { o }
        }
        _ => return None,
    };
    let secs =
        i128::from(days_from_civil(y, mo, d)) * DAY + i128::from(h * 3600 + mi * 60 + sec) - offset;
    let nanos = secs * NANOS + frac;
    in_range(nanos).then_some(nanos)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// RFC 3339 with nanoseconds, trailing zeros trimmed (Go's `time.RFC3339Nano`), in UTC.
pub(crate) fn format_timestamp(nanos: i128) -> String {
    let secs = nanos.div_euclid(NANOS);
    let frac = nanos.rem_euclid(NANOS);
    let days = i64::try_from(secs.div_euclid(DAY)).unwrap_or(0);
    let sod = secs.rem_euclid(DAY);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if frac != 0 {
        let f = format!("{frac:09}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Parses a Go duration string (`1h30m`, `1.5s`, `-300ms`) into nanoseconds.
pub(crate) fn parse_duration(s: &str) -> Option<i64> {
    kaji_api::duration::parse_go(s)
}

/// A duration as protobuf JSON prints it: seconds with a fraction (`90s`, `1.5s`).
pub(crate) fn format_duration(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = i128::from(nanos).abs();
    let (secs, frac) = (n / NANOS, n % NANOS);
    if frac == 0 {
        return format!("{sign}{secs}s");
    }
    let f = format!("{frac:09}");
    format!("{sign}{secs}.{}s", f.trim_end_matches('0'))
}

/// A fixed offset in seconds for a time zone argument (`UTC`, `+05:30`, `-08:00`).
fn zone_offset(tz: Option<&str>) -> Result<i128, String> {
    let Some(tz) = tz else { return Ok(0) };
    if tz == "UTC" || tz == "Z" || tz.is_empty() {
        return Ok(0);
    }
    let b = tz.as_bytes();
    let (sign, rest) = match b.first() {
        Some(b'-') => (-1, &tz[1..]),
        Some(b'+') => (1, &tz[1..]),
        _ => (1, tz),
    };
    let (h, m) = rest
        .split_once(':')
        .ok_or_else(|| format!("unknown time zone {tz}"))?;
    let h: i128 = h.parse().map_err(|_| format!("unknown time zone {tz}"))?;
    let m: i128 = m.parse().map_err(|_| format!("unknown time zone {tz}"))?;
    Ok(sign * (h * 3600 + m * 60))
}

/// A timestamp getter (`getFullYear`, `getMonth`, ...) in a time zone.
pub(crate) fn timestamp_part(nanos: i128, part: &str, tz: Option<&str>) -> Result<i64, String> {
    let local = nanos + zone_offset(tz)? * NANOS;
    let secs = local.div_euclid(NANOS);
    let days =
        i64::try_from(secs.div_euclid(DAY)).map_err(|_| "timestamp out of range".to_string())?;
    let sod = i64::try_from(secs.rem_euclid(DAY)).unwrap_or(0);
    let (y, m, d) = civil_from_days(days);
    Ok(match part {
        "getFullYear" => y,
        "getMonth" => m - 1,
        "getDate" => d,
        "getDayOfMonth" => d - 1,
        "getDayOfWeek" => (days + 4).rem_euclid(7),
        "getDayOfYear" => days - days_from_civil(y, 1, 1),
        "getHours" => sod / 3600,
        "getMinutes" => sod / 60 % 60,
        "getSeconds" => sod % 60,
        "getMilliseconds" => i64::try_from(local.rem_euclid(NANOS) / 1_000_000).unwrap_or(0),
        _ => return Err("no such overload".to_string()),
    })
}

/// A duration getter: whole hours, minutes, seconds or milliseconds.
pub(crate) fn duration_part(nanos: i64, part: &str) -> Result<i64, String> {
    Ok(match part {
        "getHours" => nanos / 3_600_000_000_000,
        "getMinutes" => nanos / 60_000_000_000,
        "getSeconds" => nanos / 1_000_000_000,
        "getMilliseconds" => nanos / 1_000_000,
        _ => return Err("no such overload".to_string()),
    })
}
