//! Kubernetes resource quantities (`250m`, `1.5Gi`, `1e3`), computed exactly as upstream's
//! `resource.Quantity`: [`scaled`] is `MilliValue` with scale 1000 and `Value` with scale 1.

/// `ceil(a / b)` for integers of either sign (0 when `b` is 0).
pub fn ceil_div(a: i128, b: i128) -> i128 {
    if b == 0 {
        return 0;
    }
    let q = a / b;
    if a % b != 0 && ((a < 0) == (b < 0)) {
        q + 1
    } else {
        q
    }
}

/// A quantity ("250m", "1.5Gi", "1e3") times `scale`, rounded up, exactly (upstream's
/// `MilliValue` with scale 1000, `Value` with scale 1).
pub fn scaled(s: &str, scale: i128) -> Option<i128> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(end);
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let digits = format!("{int}{frac}");
    let mut mantissa: i128 = digits.parse().ok()?;
    let mut exp10: i32 = -i32::try_from(frac.len()).ok()?;
    let mut mult: i128 = 1;
    match suffix {
        "" => {}
        "Ki" => mult = 1 << 10,
        "Mi" => mult = 1 << 20,
        "Gi" => mult = 1 << 30,
        "Ti" => mult = 1 << 40,
        "Pi" => mult = 1 << 50,
        "Ei" => mult = 1 << 60,
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        e if e.starts_with(['e', 'E']) => exp10 += e[1..].parse::<i32>().ok()?,
        _ => return None,
    }
    mantissa = mantissa.checked_mul(mult)?.checked_mul(scale)?;
    let v = if exp10 >= 0 {
        mantissa.checked_mul(10i128.checked_pow(exp10 as u32)?)?
    } else {
        let d = 10i128.checked_pow((-exp10) as u32)?;
        if neg {
            mantissa / d
        } else {
            ceil_div(mantissa, d)
        }
    };
    Some(if neg { -v } else { v })
}

/// A quantity in billionths, the smallest suffix (`n`): exact for every suffixed quantity, so
/// these order as upstream's `Quantity.Cmp` (storage sizes compared and sorted by value).
pub fn nanos(s: &str) -> Option<i128> {
    scaled(s, 1_000_000_000)
}

/// A quantity in thousandths, rounded up (upstream's `MilliValue`: millicores of a cpu amount).
pub fn milli_value(s: &str) -> Option<i128> {
    scaled(s, 1000)
}

/// A quantity in whole units, rounded up (upstream's `Value`: bytes of a memory amount).
pub fn value(s: &str) -> Option<i128> {
    scaled(s, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_exact() {
        assert_eq!(scaled("250m", 1000), Some(250));
        assert_eq!(scaled("0.1", 1000), Some(100));
        assert_eq!(scaled("0.25", 1000), scaled("250m", 1000));
        assert_eq!(scaled("64Mi", 1), Some(64 << 20));
        assert_eq!(scaled("1.5Gi", 1), Some(3 << 29));
        assert_eq!(scaled("1e3", 1), Some(1000));
        assert_eq!(scaled("1m", 1), Some(1), "rounded up");
        assert_eq!(scaled("128M", 1), Some(128_000_000));
        assert_eq!(scaled("1500Ki", 1), Some(1_536_000));
        assert_eq!(scaled("x", 1), None);
        assert_eq!(ceil_div(7, 2), 4);
        assert_eq!(ceil_div(-7, 2), -3);
    }

    #[test]
    fn milli_values_and_values() {
        assert_eq!(milli_value("100m"), Some(100));
        assert_eq!(milli_value("1.5"), Some(1500));
        assert_eq!(milli_value("0.0001"), Some(1), "rounded up");
        assert_eq!(value("64Mi"), Some(64 << 20));
        assert_eq!(value("1G"), Some(1_000_000_000));
        assert_eq!(value("1m"), Some(1), "rounded up");
        assert_eq!(value("x"), None);
    }

    #[test]
    fn nanos_order_as_upstream_cmp() {
        assert_eq!(nanos("1n"), Some(1));
        assert_eq!(nanos("1Gi"), Some((1 << 30) * 1_000_000_000));
        assert!(nanos("1Gi") > nanos("1G"));
        assert!(nanos("1500m") > nanos("1"));
        assert_eq!(nanos("1.5Gi"), nanos("1536Mi"));
        assert_eq!(nanos("1Ei"), Some((1 << 60) * 1_000_000_000));
    }
}
