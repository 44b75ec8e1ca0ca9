//! Upstream's crash-loop and image-pull back-off (client-go's flowcontrol.Backoff as the kubelet
//! configures it: 10 s doubling to 5 min, no jitter), and the time helpers its messages use.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One key's back-off (a container's crash loop, an image's pulls). Times are wall-clock, as the
/// runtime's finishedAt is.
#[derive(Clone, Debug, Default)]
pub struct Backoff {
    pub delay: Duration,
    /// When the back-off last moved on (upstream's lastUpdate).
    pub last: Option<SystemTime>,
}

pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// How long after `earlier` `later` is (zero when it is not later).
fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}

impl Backoff {
    /// An event more than twice the maximum after the last step starts the back-off over.
    fn expired(&self, event: SystemTime) -> bool {
        self.last.is_none_or(|l| since(event, l) > BACKOFF_MAX * 2)
    }

    /// Whether `now` is still within the back-off window that started at `event` (upstream's
    /// IsInBackOffSince; the crash loop's event is the exited container's finishedAt).
    pub fn in_backoff_since_at(&self, event: SystemTime, now: SystemTime) -> bool {
        !self.expired(event) && since(now, event) < self.delay
    }

    /// What is left at `now` of the window that started at `event`.
    pub fn remaining_since_at(&self, event: SystemTime, now: SystemTime) -> Duration {
        if self.expired(event) {
            return Duration::ZERO;
        }
        self.delay.saturating_sub(since(now, event))
    }

    /// Moves the back-off on for an event at `event`: the first (or the first after a quiet
    /// period of twice the maximum) waits 10 s, then each doubles, up to 5 min.
    pub fn next_at(&mut self, event: SystemTime, now: SystemTime) {
        self.delay = if self.expired(event) {
            BACKOFF_INITIAL
        } else {
            (self.delay * 2).min(BACKOFF_MAX)
        };
        self.last = Some(now);
    }

    /// Whether the last step is younger than the window (upstream's IsInBackOffSinceUpdate with
    /// now as the event: the image pull back-off).
    pub fn in_backoff(&self) -> bool {
        self.last
            .is_some_and(|l| self.in_backoff_since_at(l, SystemTime::now()))
    }
    pub fn remaining(&self) -> Duration {
        self.last.map_or(Duration::ZERO, |l| {
            self.remaining_since_at(l, SystemTime::now())
        })
    }
    /// Records a failure now (image pulls).
    pub fn next(&mut self) {
        let now = SystemTime::now();
        self.next_at(now, now);
    }
}

/// A whole-second duration as Go prints it (`10s`, `1m20s`, `5m0s`), for back-off messages.
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

/// The wall-clock time of a CRI timestamp (nanoseconds since the epoch), or now when unset.
pub fn cri_time(ns: i64) -> SystemTime {
    u64::try_from(ns)
        .ok()
        .filter(|&n| n > 0)
        .map_or_else(SystemTime::now, |n| UNIX_EPOCH + Duration::from_nanos(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    /// The crash-loop window runs from the container's finishedAt (upstream's doBackOff with
    /// IsInBackOffSince), so a container that ran for a while before it crashed is not restarted
    /// any sooner for it: it always waits the full window after it exited.
    #[test]
    fn crash_backoff_is_timed_from_the_finish() {
        let mut b = Backoff::default();
        // First exit (t=5): no entry yet, restarted at once; the window is now 10 s.
        assert!(!b.in_backoff_since_at(at(5), at(5)));
        b.next_at(at(5), at(5));
        assert_eq!(b.delay, Duration::from_secs(10));
        // The restarted container runs 8 s and exits at t=13: it waits until t=23, although
        // the last restart was at t=5 (10 s after the restart would be t=15).
        assert!(b.in_backoff_since_at(at(13), at(16)));
        assert!(b.in_backoff_since_at(at(13), at(22)));
        assert_eq!(b.remaining_since_at(at(13), at(16)), Duration::from_secs(7));
        assert!(!b.in_backoff_since_at(at(13), at(23)));
        b.next_at(at(13), at(23));
        assert_eq!(b.delay, Duration::from_secs(20));
        // Doubling up to 5 min.
        for _ in 0..10 {
            b.next_at(at(30), at(30));
        }
        assert_eq!(b.delay, BACKOFF_MAX);
        assert_eq!(go_duration(b.delay), "5m0s");
        // A container that ran for more than twice the maximum after the last step starts over.
        let exit = at(30 + 601);
        assert!(!b.in_backoff_since_at(exit, exit));
        b.next_at(exit, exit);
        assert_eq!(b.delay, BACKOFF_INITIAL);
    }

    #[test]
    fn image_backoff_is_timed_from_the_failure() {
        let mut b = Backoff::default();
        assert!(!b.in_backoff());
        b.next();
        assert!(b.in_backoff());
        assert!(b.remaining() > Duration::from_secs(9));
        b.next();
        assert_eq!(b.delay, Duration::from_secs(20));
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(160)), "2m40s");
    }
}
