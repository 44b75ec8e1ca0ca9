//! Ages as kubectl shows them: upstream's `duration.HumanDuration`
//! (k8s.io/apimachinery/pkg/util/duration), about two or three significant figures.

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

/// Formats a duration the way `HumanDuration` does: "45s", "3m20s", "15m", "5h10m", "2d3h", "3y45d".
pub fn human_duration(d: SignedDuration) -> String {
    // A clock skew under two seconds still reads as "now".
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Parses a `metav1.Time` / `metav1.MicroTime` field. `None` stands for Go's zero time:
/// absent, null, unparsable, or 0001-01-01T00:00:00Z itself.
pub fn parse_time(v: Option<&Value>) -> Option<Timestamp> {
    let ts: Timestamp = v?.as_str()?.parse().ok()?;
    (ts.as_second() != GO_ZERO_TIME_SECONDS).then_some(ts)
}

/// Unix seconds of Go's zero `time.Time` (year 1, January 1, UTC).
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// Upstream's `translateTimestampSince`: "<unknown>" for a zero time, else the age.
pub fn translate_timestamp_since(v: Option<&Value>, now: Timestamp) -> String {
    since(parse_time(v), now)
}

pub(crate) fn since(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        None => "<unknown>".to_owned(),
        Some(t) => human_duration(now.duration_since(t)),
    }
}

/// A time as Go prints `t.UTC().Format(time.RFC3339)`, the zero time included.
pub(crate) fn rfc3339(v: Option<&Value>) -> String {
    match parse_time(v) {
        None => "0001-01-01T00:00:00Z".to_owned(),
        Some(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(secs: i64) -> String {
        human_duration(SignedDuration::from_secs(secs))
    }

    #[test]
    fn human_duration_boundaries() {
        assert_eq!(h(-3), "<invalid>");
        assert_eq!(h(-2), "<invalid>");
        assert_eq!(human_duration(SignedDuration::from_millis(-1999)), "0s");
        assert_eq!(h(-1), "0s");
        assert_eq!(h(0), "0s");
        assert_eq!(h(5), "5s");
        assert_eq!(h(119), "119s");
        assert_eq!(h(120), "2m");
        assert_eq!(h(200), "3m20s");
        assert_eq!(h(599), "9m59s");
        assert_eq!(h(600), "10m");
        assert_eq!(h(3 * 3600 - 1), "179m");
        assert_eq!(h(3 * 3600), "3h");
        assert_eq!(h(5 * 3600 + 10 * 60 + 59), "5h10m");
        assert_eq!(h(8 * 3600 - 1), "7h59m");
        assert_eq!(h(8 * 3600), "8h");
        assert_eq!(h(48 * 3600 - 1), "47h");
        assert_eq!(h(48 * 3600), "2d");
        assert_eq!(h(51 * 3600), "2d3h");
        assert_eq!(h(8 * 86400 - 1), "7d23h");
        assert_eq!(h(8 * 86400), "8d");
        assert_eq!(h(2 * 365 * 86400 - 1), "729d");
        assert_eq!(h(2 * 365 * 86400), "2y");
        assert_eq!(h((3 * 365 + 45) * 86400), "3y45d");
        assert_eq!(h(8 * 365 * 86400 - 1), "7y364d");
        assert_eq!(h(8 * 365 * 86400), "8y");
        assert_eq!(h(100 * 365 * 86400), "100y");
    }

    #[test]
    fn timestamps() {
        let now: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        let t = Value::from("2024-05-01T11:56:40Z");
        assert_eq!(translate_timestamp_since(Some(&t), now), "3m20s");
        assert_eq!(translate_timestamp_since(None, now), "<unknown>");
        assert_eq!(
            translate_timestamp_since(Some(&Value::Null), now),
            "<unknown>"
        );
        let zero = Value::from("0001-01-01T00:00:00Z");
        assert_eq!(translate_timestamp_since(Some(&zero), now), "<unknown>");
        assert_eq!(
            translate_timestamp_since(Some(&Value::from(7)), now),
            "<unknown>"
        );
        let micro = Value::from("2024-05-01T11:59:59.500000Z");
        assert_eq!(translate_timestamp_since(Some(&micro), now), "0s");
        assert_eq!(
            rfc3339(Some(&Value::from("2024-05-01T14:00:00+02:00"))),
            "2024-05-01T12:00:00Z"
        );
        assert_eq!(rfc3339(None), "0001-01-01T00:00:00Z");
    }
}
