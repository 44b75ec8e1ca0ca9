//! CronJob schedules as pure functions: parsing (a standard 5-field cron line or a macro, via
//! croner; `@every <duration>` as robfig/cron's constant delay; the zone from `timeZone` or a
//! `TZ=`/`CRON_TZ=` prefix, else the machine's), the next activation, and upstream's
//! `mostRecentScheduleTime` (the latest missed activation, and how many were missed).

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};

/// More missed activations than this are not caught up on one by one (upstream's 100).
pub const MAX_MISSED: i64 = 100;

#[derive(Clone, Debug)]
pub enum Schedule {
    Cron(Box<Cron>, TimeZone),
    /// `@every <duration>`: activations that far apart (robfig/cron's ConstantDelaySchedule).
    Every(SignedDuration),
}

/// How many activations were missed (upstream `missedSchedules`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    Many,
}

/// Parses `schedule` in the zone `time_zone` (None: a TZ= prefix, else the machine's zone).
pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Schedule, String> {
    let mut spec = schedule.trim();
    let mut zone: Option<String> = time_zone.map(str::to_string);
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let (tz, rest) = spec.split_once(' ').unwrap_or((spec, ""));
        let name = tz.split_once('=').map_or("", |(_, n)| n);
        if zone.is_none() {
            zone = Some(name.to_string());
        }
        spec = rest.trim();
    }
    let tz = match zone.as_deref() {
        None | Some("") => TimeZone::system(),
        Some(name) => jiff::tz::db()
            .get(name)
            .map_err(|_| format!("unknown time zone {name}"))?,
    };
    if let Some(every) = spec.strip_prefix("@every ") {
        let d = parse_go_duration(every.trim()).ok_or_else(|| {
            format!(
                "failed to parse duration {spec}: time: invalid duration \"{}\"",
                every.trim()
            )
        })?;
        // robfig/cron rounds to whole seconds, at least one.
        let secs = d.as_secs().max(1);
        return Ok(Schedule::Every(SignedDuration::from_secs(secs)));
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .sloppy_ranges(true)
        .build();
    let cron = parser.parse(spec).map_err(|e| e.to_string())?;
    Ok(Schedule::Cron(Box::new(cron), tz))
}

/// A Go duration such as `1h30m`, `90s`, `1.5h`.
fn parse_go_duration(s: &str) -> Option<SignedDuration> {
    kaji_api::duration::parse_go(s).map(SignedDuration::from_nanos)
}

impl Schedule {
    /// The first activation strictly after `t` (robfig/cron's `Next`), if there is one.
    pub fn next(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Every(d) => {
                let whole = Timestamp::from_second(t.as_second()).ok()?;
                whole.checked_add(*d).ok()
            }
            Schedule::Cron(cron, tz) => {
                let z: Zoned = t.to_zoned(tz.clone());
                cron.find_next_occurrence(&z, false)
                    .ok()
                    .map(|z| z.timestamp())
            }
        }
    }
}

/// Upstream `mostRecentScheduleTime`: from the last schedule (or creation), bounded by the
/// starting deadline when asked, the earliest time looked at, the latest activation not after
/// `now` (None if none is due), and how many activations were missed.
pub fn most_recent(
    schedule: &Schedule,
    created: Timestamp,
    last_schedule: Option<Timestamp>,
    starting_deadline_seconds: Option<i64>,
    now: Timestamp,
) -> Result<(Timestamp, Option<Timestamp>, Missed), String> {
    let mut earliest = last_schedule.unwrap_or(created);
    if let Some(d) = starting_deadline_seconds {
        let deadline = now - SignedDuration::from_secs(d);
        if deadline > earliest {
            earliest = deadline;
        }
    }
    let Some(t1) = schedule.next(earliest) else {
        return Ok((earliest, None, Missed::None));
    };
    if now < t1 {
        return Ok((earliest, None, Missed::None));
    }
    let Some(t2) = schedule.next(t1) else {
        return Ok((earliest, Some(t1), Missed::None));
    };
    if now < t2 {
        return Ok((earliest, Some(t1), Missed::None));
    }
    let between = t2.duration_since(t1).as_secs();
    if between < 1 {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    let elapsed = now.duration_since(t1).as_secs();
    let missed = elapsed / between + 1;
    let potential = t1 + SignedDuration::from_secs((missed - 2) * between);
    let mut most_recent = None;
    let mut t = schedule.next(potential);
    while let Some(cur) = t {
        if cur > now {
            break;
        }
        most_recent = Some(cur);
        t = schedule.next(cur);
    }
    let kind = if missed > MAX_MISSED {
        Missed::Many
    } else if missed > 0 {
        Missed::Few
    } else {
        Missed::None
    };
    Ok((earliest, most_recent, kind))
}

/// The CronJob's Job name for an activation: `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn next_activation_of_standard_lines_and_macros() {
        let s = parse("*/15 * * * *", Some("UTC")).unwrap();
        assert_eq!(
            s.next(at("2024-01-01T00:07:30Z")),
            Some(at("2024-01-01T00:15:00Z"))
        );
        assert_eq!(
            s.next(at("2024-01-01T00:15:00Z")),
            Some(at("2024-01-01T00:30:00Z"))
        );
        let h = parse("@hourly", Some("UTC")).unwrap();
        assert_eq!(
            h.next(at("2024-01-01T00:07:30Z")),
            Some(at("2024-01-01T01:00:00Z"))
        );
        let e = parse("@every 90s", None).unwrap();
        assert_eq!(
            e.next(at("2024-01-01T00:00:00.5Z")),
            Some(at("2024-01-01T00:01:30Z"))
        );
        assert!(parse("99 * * * *", Some("UTC")).is_err());
        assert!(parse("* * * * *", Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn time_zones_shift_activations() {
        let s = parse("0 9 * * *", Some("Asia/Tokyo")).unwrap();
        assert_eq!(
            s.next(at("2024-01-01T00:30:00Z")),
            Some(at("2024-01-02T00:00:00Z"))
        );
        let p = parse("TZ=Asia/Tokyo 0 9 * * *", None).unwrap();
        assert_eq!(
            p.next(at("2024-01-01T00:30:00Z")),
            Some(at("2024-01-02T00:00:00Z"))
        );
    }

    #[test]
    fn most_recent_missed_activation_and_count() {
        let s = parse("* * * * *", Some("UTC")).unwrap();
        let created = at("2024-01-01T00:00:30Z");
        // Nothing due yet.
        let (_, t, m) = most_recent(&s, created, None, None, at("2024-01-01T00:00:50Z")).unwrap();
        assert_eq!((t, m), (None, Missed::None));
        // One due.
        let (_, t, m) = most_recent(&s, created, None, None, at("2024-01-01T00:01:10Z")).unwrap();
        assert_eq!((t, m), (Some(at("2024-01-01T00:01:00Z")), Missed::None));
        // A few missed: the latest one is returned.
        let (_, t, m) = most_recent(&s, created, None, None, at("2024-01-01T00:05:10Z")).unwrap();
        assert_eq!((t, m), (Some(at("2024-01-01T00:05:00Z")), Missed::Few));
        // A controller down for three hours: too many.
        let (_, t, m) = most_recent(&s, created, None, None, at("2024-01-01T03:00:10Z")).unwrap();
        assert_eq!((t, m), (Some(at("2024-01-01T03:00:00Z")), Missed::Many));
        // A starting deadline bounds how far back is looked at.
        let (_, t, m) =
            most_recent(&s, created, None, Some(30), at("2024-01-01T03:00:10Z")).unwrap();
        assert_eq!((t, m), (Some(at("2024-01-01T03:00:00Z")), Missed::None));
        // After the last schedule.
        let (_, t, _) = most_recent(
            &s,
            created,
            Some(at("2024-01-01T03:00:00Z")),
            None,
            at("2024-01-01T03:00:10Z"),
        )
        .unwrap();
        assert_eq!(t, None);
    }

    #[test]
    fn job_names_count_minutes() {
        assert_eq!(
            job_name("hello", at("2024-01-01T00:01:00Z")),
            "hello-28401121"
        );
    }
}
