//! From the metrics' proposal to the replica count, as upstream's horizontal.go: stabilization
//! (recent recommendations) and the rate limits, either the fixed rules of an HPA without
//! `behavior` (scale-up at most max(2x, 4); scale-down stabilized over
//! `--horizontal-pod-autoscaler-downscale-stabilization`) or its `behavior` policies. Each step
//! also says which condition (AbleToScale, ScalingLimited) it sets, with upstream's reasons.

use std::time::Duration;

/// A recommendation or a scale event at a time (ms since an arbitrary origin).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stamped {
    pub at_ms: i64,
    pub replicas: i32,
}

/// What the controller remembers of one HPA between syncs.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub recommendations: Vec<Stamped>,
    /// Replicas added (scale-up) or removed (scale-down) by each rescale.
    pub scale_up_events: Vec<Stamped>,
    pub scale_down_events: Vec<Stamped>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyType {
    Pods,
    Percent,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    pub kind: PolicyType,
    pub value: i32,
    pub period_seconds: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    Max,
    Min,
    Disabled,
}

/// One direction's `HPAScalingRules`, defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub stabilization_window_seconds: i32,
    pub select: Select,
    pub policies: Vec<Policy>,
}

impl Rules {
    /// Upstream's default scale-up: no stabilization, the larger of 100% and 4 pods per 15 s.
    pub fn default_up() -> Rules {
        Rules {
            stabilization_window_seconds: 0,
            select: Select::Max,
            policies: vec![
                Policy {
                    kind: PolicyType::Percent,
                    value: 100,
                    period_seconds: 15,
                },
                Policy {
                    kind: PolicyType::Pods,
                    value: 4,
                    period_seconds: 15,
                },
            ],
        }
    }

    /// Upstream's default scale-down: 100% per 15 s after the stabilization window.
    pub fn default_down(window: Duration) -> Rules {
        Rules {
            stabilization_window_seconds: i32::try_from(window.as_secs()).unwrap_or(i32::MAX),
            select: Select::Max,
            policies: vec![Policy {
                kind: PolicyType::Percent,
                value: 100,
                period_seconds: 15,
            }],
        }
    }
}

/// A condition set by a step: (type, status, reason, message).
pub type Condition = (&'static str, &'static str, &'static str, String);

/// Result of normalizing: the replicas and the AbleToScale and ScalingLimited conditions.
pub struct Normalized {
    pub replicas: i32,
    pub able_to_scale: Condition,
    pub scaling_limited: Condition,
}

fn limited(desired: i32, stabilized: i32, reason: &'static str, message: &str) -> Condition {
    let status = if desired == stabilized {
        "False"
    } else {
        "True"
    };
    ("ScalingLimited", status, reason, message.to_string())
}

/// An HPA without `behavior` (upstream normalizeDesiredReplicas).
pub fn without_behavior(
    h: &mut History,
    now_ms: i64,
    downscale_window: Duration,
    current: i32,
    proposal: i32,
    min: i32,
    max: i32,
) -> Normalized {
    // stabilizeRecommendation: the highest recommendation of the window.
    let cutoff = now_ms - downscale_window.as_millis() as i64;
    let mut stabilized = proposal;
    for r in h.recommendations.iter().filter(|r| r.at_ms > cutoff) {
        stabilized = stabilized.max(r.replicas);
    }
    record(
        &mut h.recommendations,
        cutoff,
        Stamped {
            at_ms: now_ms,
            replicas: proposal,
        },
    );
    let able_to_scale = if stabilized != proposal {
        ("AbleToScale", "True", "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation".to_string())
    } else {
        (
            "AbleToScale",
            "True",
            "ReadyForNewScale",
            "recommended size matches current size".to_string(),
        )
    };
    // convertDesiredReplicasWithRules.
    let scale_up_limit = (2 * current).max(4);
    let (max_allowed, reason, message) = if max > scale_up_limit {
        (
            scale_up_limit,
            "ScaleUpLimit",
            "the desired replica count is increasing faster than the maximum scale rate",
        )
    } else {
        (
            max,
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count",
        )
    };
    let (replicas, reason, message) = if stabilized < min {
        (
            min,
            "TooFewReplicas",
            "the desired replica count is less than the minimum replica count",
        )
    } else if stabilized > max_allowed {
        (max_allowed, reason, message)
    } else {
        (
            stabilized,
            "DesiredWithinRange",
            "the desired count is within the acceptable range",
        )
    };
    Normalized {
        replicas,
        able_to_scale,
        scaling_limited: limited(replicas, stabilized, reason, message),
    }
}

/// Keeps the recommendations inside the window (replacing one that fell out, as upstream).
fn record(recs: &mut Vec<Stamped>, cutoff: i64, new: Stamped) {
    match recs.iter().position(|r| r.at_ms <= cutoff) {
        Some(i) => recs[i] = new,
        None => recs.push(new),
    }
    recs.retain(|r| r.at_ms > cutoff || *r == new);
}

/// Replicas changed by the events of the last `period_seconds`.
fn changed_in_period(events: &[Stamped], now_ms: i64, period_seconds: i32) -> i32 {
    let cutoff = now_ms - i64::from(period_seconds) * 1000;
    events
        .iter()
        .filter(|e| e.at_ms > cutoff)
        .map(|e| e.replicas)
        .sum()
}

fn scale_up_limit(h: &History, now_ms: i64, current: i32, rules: &Rules) -> i32 {
    let mut result: Option<i32> = None;
    if rules.select == Select::Disabled {
        return current;
    }
    for p in &rules.policies {
        let start = current - changed_in_period(&h.scale_up_events, now_ms, p.period_seconds)
            + changed_in_period(&h.scale_down_events, now_ms, p.period_seconds);
        let proposed = match p.kind {
            PolicyType::Pods => start + p.value,
            PolicyType::Percent => {
                (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32
            }
        };
        result = Some(match (result, rules.select) {
            (None, _) => proposed,
            (Some(r), Select::Min) => r.min(proposed),
            (Some(r), _) => r.max(proposed),
        });
    }
    result.unwrap_or(current)
}

fn scale_down_limit(h: &History, now_ms: i64, current: i32, rules: &Rules) -> i32 {
    let mut result: Option<i32> = None;
    if rules.select == Select::Disabled {
        return current;
    }
    for p in &rules.policies {
        let start = current - changed_in_period(&h.scale_up_events, now_ms, p.period_seconds)
            + changed_in_period(&h.scale_down_events, now_ms, p.period_seconds);
        let proposed = match p.kind {
            PolicyType::Pods => start - p.value,
            PolicyType::Percent => (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32,
        };
        result = Some(match (result, rules.select) {
            (None, _) => proposed,
            (Some(r), Select::Min) => r.max(proposed),
            (Some(r), _) => r.min(proposed),
        });
    }
    result.unwrap_or(current)
}

/// An HPA with `behavior` (upstream normalizeDesiredReplicasWithBehaviors).
#[allow(clippy::too_many_arguments)]
pub fn with_behavior(
    h: &mut History,
    now_ms: i64,
    up: &Rules,
    down: &Rules,
    current: i32,
    proposal: i32,
    min: i32,
    max: i32,
) -> Normalized {
    // stabilizeRecommendationWithBehaviors.
    let up_cutoff = now_ms - i64::from(up.stabilization_window_seconds) * 1000;
    let down_cutoff = now_ms - i64::from(down.stabilization_window_seconds) * 1000;
    let (mut up_rec, mut down_rec) = (proposal, proposal);
    for r in &h.recommendations {
        if r.at_ms > up_cutoff {
            up_rec = up_rec.min(r.replicas);
        }
        if r.at_ms > down_cutoff {
            down_rec = down_rec.max(r.replicas);
        }
    }
    let stabilized = current.max(up_rec).min(down_rec);
    record(
        &mut h.recommendations,
        up_cutoff.min(down_cutoff),
        Stamped {
            at_ms: now_ms,
            replicas: proposal,
        },
    );
    let able_to_scale = if stabilized != proposal {
        if proposal >= current {
            ("AbleToScale", "True", "ScaleUpStabilized", "recent recommendations were lower than current one, applying the lowest recent recommendation".to_string())
        } else {
            ("AbleToScale", "True", "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation".to_string())
        }
    } else {
        (
            "AbleToScale",
            "True",
            "ReadyForNewScale",
            "recommended size matches current size".to_string(),
        )
    };
    // convertDesiredReplicasWithBehaviorRate.
    let (mut replicas, mut reason, mut message) = (
        stabilized,
        "DesiredWithinRange",
        "the desired count is within the acceptable range",
    );
    if stabilized > current {
        let limit = scale_up_limit(h, now_ms, current, up).max(current);
        let (allowed, r, m) = if max > limit {
            (
                limit,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            )
        } else {
            (
                max,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )
        };
        if stabilized > allowed {
            (replicas, reason, message) = (allowed, r, m);
        }
    } else if stabilized < current {
        let limit = scale_down_limit(h, now_ms, current, down).min(current);
        let (allowed, r, m) = if min < limit {
            (
                limit,
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            )
        } else {
            (
                min,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        };
        if stabilized < allowed {
            (replicas, reason, message) = (allowed, r, m);
        }
    }
    Normalized {
        replicas,
        able_to_scale,
        scaling_limited: limited(replicas, stabilized, reason, message),
    }
}

/// Remembers a rescale for the rate policies (upstream storeScaleEvent; only with `behavior`).
pub fn store_scale_event(
    h: &mut History,
    now_ms: i64,
    longest_period_seconds: i32,
    prev: i32,
    new: i32,
) {
    let cutoff = now_ms - i64::from(longest_period_seconds) * 1000;
    h.scale_up_events.retain(|e| e.at_ms > cutoff);
    h.scale_down_events.retain(|e| e.at_ms > cutoff);
    if new > prev {
        h.scale_up_events.push(Stamped {
            at_ms: now_ms,
            replicas: new - prev,
        });
    } else if new < prev {
        h.scale_down_events.push(Stamped {
            at_ms: now_ms,
            replicas: prev - new,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_behavior_limits_scale_up_and_stabilizes_down() {
        let mut h = History::default();
        let w = Duration::from_secs(300);
        let n = without_behavior(&mut h, 0, w, 1, 10, 1, 20);
        assert_eq!(n.replicas, 4);
        assert_eq!(n.scaling_limited.2, "ScaleUpLimit");
        assert_eq!(n.scaling_limited.1, "True");
        // Lower proposals within the window keep the highest recent one (10), capped by the
        // scale-up limit max(2 * 4, 4).
        let n = without_behavior(&mut h, 60_000, w, 4, 2, 1, 20);
        assert_eq!((n.replicas, n.able_to_scale.2), (8, "ScaleDownStabilized"));
        // After the window, the proposal goes through.
        let n = without_behavior(&mut h, 400_000, w, 8, 2, 1, 20);
        assert_eq!(
            (n.replicas, n.able_to_scale.2, n.scaling_limited.2),
            (2, "ReadyForNewScale", "DesiredWithinRange")
        );
        let n = without_behavior(&mut h, 800_000, w, 2, 30, 1, 5);
        assert_eq!((n.replicas, n.scaling_limited.2), (4, "ScaleUpLimit"));
        let n = without_behavior(&mut h, 1_200_000, w, 4, 0, 2, 5);
        assert_eq!((n.replicas, n.scaling_limited.2), (2, "TooFewReplicas"));
    }

    #[test]
    fn default_behavior_scales_up_by_max_of_100_percent_and_4_pods_per_15s() {
        let mut h = History::default();
        let (up, down) = (
            Rules::default_up(),
            Rules::default_down(Duration::from_secs(300)),
        );
        let n = with_behavior(&mut h, 0, &up, &down, 1, 20, 1, 50);
        assert_eq!(n.replicas, 5);
        store_scale_event(&mut h, 0, 15, 1, 5);
        // Within the same 15 s period: the period started at 1 replica, so 5 is the limit.
        let n = with_behavior(&mut h, 5_000, &up, &down, 5, 20, 1, 50);
        assert_eq!((n.replicas, n.scaling_limited.2), (5, "ScaleUpLimit"));
        // Next period: 5 -> 10.
        let n = with_behavior(&mut h, 20_000, &up, &down, 5, 20, 1, 50);
        assert_eq!(n.replicas, 10);
    }

    #[test]
    fn behavior_stabilizes_scale_down_over_its_window() {
        let mut h = History::default();
        let up = Rules::default_up();
        let down = Rules {
            stabilization_window_seconds: 10,
            ..Rules::default_down(Duration::ZERO)
        };
        assert_eq!(
            with_behavior(&mut h, 0, &up, &down, 4, 4, 1, 10).replicas,
            4
        );
        let n = with_behavior(&mut h, 5_000, &up, &down, 4, 1, 1, 10);
        assert_eq!((n.replicas, n.able_to_scale.2), (4, "ScaleDownStabilized"));
        assert_eq!(
            with_behavior(&mut h, 16_000, &up, &down, 4, 1, 1, 10).replicas,
            1
        );
    }
}
