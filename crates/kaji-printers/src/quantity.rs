//! Resource quantities printed in canonical form, as Go's `resource.Quantity.String()` does
//! ("1.5Gi" -> "1536Mi", "1000m" -> "1", "0.5" -> "500m"). Values are kept in nano units;
//! anything that does not parse, or is too large, is printed as given.

use serde_json::Value;

#[derive(Clone, Copy, PartialEq)]
enum Format {
    DecimalSi,
    BinarySi,
    DecimalExponent,
}

const NANO: i128 = 1_000_000_000;

/// A quantity field as a string: canonical for a valid quantity, "0" when absent.
pub(crate) fn format_quantity(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => canonical(s),
        Some(Value::Number(n)) => canonical(&n.to_string()),
        _ => "0".to_owned(),
    }
}

/// Go's `(*Quantity).String()` on a pointer field: "<nil>" when absent.
pub(crate) fn format_quantity_ptr(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "<nil>".to_owned(),
        some => format_quantity(some),
    }
}

pub(crate) fn canonical(s: &str) -> String {
    parse(s).map_or_else(|| s.to_owned(), |(nanos, format)| render(nanos, format))
}

fn parse(s: &str) -> Option<(i128, Format)> {
    let s = s.trim();
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
        return None;
    }
    let mut mantissa: i128 = 0;
    for c in int_part.bytes().chain(frac_part.bytes()) {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(i128::from(c - b'0'))?;
    }
    let frac_digits = i32::try_from(frac_part.len()).ok()?;
    let (format, exp10, pow1024) = match suffix {
        "" => (Format::DecimalSi, 0, 0),
        "n" => (Format::DecimalSi, -9, 0),
        "u" => (Format::DecimalSi, -6, 0),
        "m" => (Format::DecimalSi, -3, 0),
        "k" => (Format::DecimalSi, 3, 0),
        "M" => (Format::DecimalSi, 6, 0),
        "G" => (Format::DecimalSi, 9, 0),
        "T" => (Format::DecimalSi, 12, 0),
        "P" => (Format::DecimalSi, 15, 0),
        "E" => (Format::DecimalSi, 18, 0),
        "Ki" => (Format::BinarySi, 0, 1),
        "Mi" => (Format::BinarySi, 0, 2),
        "Gi" => (Format::BinarySi, 0, 3),
        "Ti" => (Format::BinarySi, 0, 4),
        "Pi" => (Format::BinarySi, 0, 5),
        "Ei" => (Format::BinarySi, 0, 6),
        _ => {
            let exp = suffix.strip_prefix(['e', 'E'])?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (Format::DecimalExponent, exp.parse::<i32>().ok()?, 0)
        }
    };
    let mut value = mantissa.checked_mul(1024i128.checked_pow(pow1024)?)?;
    // value * 10^(shift) nano units; fractions of a nano round up, away from zero.
    let shift = exp10 + 9 - frac_digits;
    if shift >= 0 {
        value = value.checked_mul(10i128.checked_pow(u32::try_from(shift).ok()?)?)?;
    } else {
        let div = 10i128
            .checked_pow(u32::try_from(-shift).ok()?)
            .unwrap_or(i128::MAX);
        let rounded_up = value % div != 0;
        value = value / div + i128::from(rounded_up);
    }
    Some((if negative { -value } else { value }, format))
}

fn render(nanos: i128, format: Format) -> String {
    if nanos == 0 {
        return "0".to_owned();
    }
    let format = match format {
        Format::BinarySi if nanos.abs() < 1024 * NANO || nanos % NANO != 0 => Format::DecimalSi,
        f => f,
    };
    if format == Format::BinarySi {
        let mut n = nanos / NANO;
        let mut exp = 0;
        while exp < 6 && n % 1024 == 0 {
            n /= 1024;
            exp += 1;
        }
        let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp];
        return format!("{n}{suffix}");
    }
    let mut n = nanos;
    let mut exp: i32 = -9;
    while n % 10 == 0 {
        n /= 10;
        exp += 1;
    }
    let extra = exp.rem_euclid(3);
    exp -= extra;
    for _ in 0..extra {
        n *= 10;
    }
    let suffix = match (format, exp) {
        (Format::DecimalExponent, 0) => String::new(),
        (Format::DecimalExponent, e) => format!("e{e}"),
        (_, -9) => "n".to_owned(),
        (_, -6) => "u".to_owned(),
        (_, -3) => "m".to_owned(),
        (_, 0) => String::new(),
        (_, 3) => "k".to_owned(),
        (_, 6) => "M".to_owned(),
        (_, 9) => "G".to_owned(),
        (_, 12) => "T".to_owned(),
        (_, 15) => "P".to_owned(),
        (_, 18) => "E".to_owned(),
        (_, e) => format!("e{e}"),
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        for (input, want) in [
            ("10Gi", "10Gi"),
            ("1.5Gi", "1536Mi"),
            ("1024Mi", "1Gi"),
            ("1000Mi", "1000Mi"),
            ("512", "512"),
            ("100Ki", "100Ki"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("1000m", "1"),
            ("0.5", "500m"),
            ("100m", "100m"),
            ("0.1m", "100u"),
            ("1e3", "1e3"),
            ("1.5e3", "1500"),
            ("0", "0"),
            ("0Gi", "0"),
            ("-2Gi", "-2Gi"),
            ("2.5k", "2500"),
            ("0.0000000001", "1n"),
            ("1G", "1G"),
            ("12Mi", "12Mi"),
            ("bogus", "bogus"),
            ("1.2.3", "1.2.3"),
        ] {
            assert_eq!(canonical(input), want, "{input}");
        }
        assert_eq!(format_quantity(None), "0");
        assert_eq!(format_quantity_ptr(None), "<nil>");
    }
}
