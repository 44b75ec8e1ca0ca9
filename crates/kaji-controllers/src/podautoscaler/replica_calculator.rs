//! Upstream's replica calculator (pkg/controller/podautoscaler/replica_calculator.go), pure:
//! pods grouped into ready, unready, missing (no metrics) and ignored, then the proposal from
//! the usage ratio, with the missing pods assumed at 100% (or 0%) and the unready ones at 0% so
//! that neither direction overshoots, and no change inside the tolerance.

use std::collections::{HashMap, HashSet};

/// What the calculator needs of a pod.
#[derive(Clone, Debug)]
pub struct PodInfo {
    pub name: String,
    pub phase: String,
    pub deleting: bool,
    /// The Ready condition: (status is True, lastTransitionTime ms).
    pub ready: Option<(bool, i64)>,
    pub start_time_ms: Option<i64>,
    /// The pod's request of the resource in milli-units, or the error of a missing one.
    pub request_milli: Result<i64, String>,
}

/// A pod's usage (milli-units) from the metrics API.
#[derive(Clone, Copy, Debug)]
pub struct PodMetric {
    pub value_milli: i64,
    pub timestamp_ms: i64,
    pub window_ms: i64,
}

/// The controller's settings (upstream flags).
#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub tolerance: f64,
    /// `--horizontal-pod-autoscaler-cpu-initialization-period` (5 min).
    pub cpu_initialization_period_ms: i64,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay` (30 s).
    pub initial_readiness_delay_ms: i64,
    pub now_ms: i64,
    pub cpu: bool,
}

struct Groups {
    ready_count: i32,
    unready: HashSet<String>,
    missing: HashSet<String>,
    ignored: HashSet<String>,
}

fn group_pods(pods: &[PodInfo], metrics: &HashMap<String, PodMetric>, p: &Params) -> Groups {
    let mut g = Groups {
        ready_count: 0,
        unready: HashSet::new(),
        missing: HashSet::new(),
        ignored: HashSet::new(),
    };
    for pod in pods {
        if pod.deleting || pod.phase == "Failed" {
            g.ignored.insert(pod.name.clone());
            continue;
        }
        if pod.phase == "Pending" {
            g.unready.insert(pod.name.clone());
            continue;
        }
        let Some(metric) = metrics.get(&pod.name) else {
            g.missing.insert(pod.name.clone());
            continue;
        };
        if p.cpu {
            let unready = match (pod.ready, pod.start_time_ms) {
                (Some((ready, transition)), Some(start)) => {
                    if start + p.cpu_initialization_period_ms > p.now_ms {
                        // Still initialising: unready, or its metric predates readiness.
                        !ready || metric.timestamp_ms < transition + metric.window_ms
                    } else {
                        !ready && start + p.initial_readiness_delay_ms > transition
                    }
                }
                _ => true,
            };
            if unready {
                g.unready.insert(pod.name.clone());
                continue;
            }
        }
        g.ready_count += 1;
    }
    g
}

/// (ratio, utilization %, raw average) of the metrics against the requests.
fn utilization_ratio(
    metrics: &HashMap<String, PodMetric>,
    requests: &HashMap<String, i64>,
    target: i32,
) -> Result<(f64, i32, i64), String> {
    let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
    for (pod, m) in metrics {
        let Some(r) = requests.get(pod) else { continue };
        used += m.value_milli;
        requested += r;
        n += 1;
    }
    if requested == 0 {
        return Err("no metrics returned matched known pods".into());
    }
    let utilization = (used * 100 / requested) as i32;
    Ok((
        f64::from(utilization) / f64::from(target),
        utilization,
        used / n,
    ))
}

fn usage_ratio(metrics: &HashMap<String, PodMetric>, target: i64) -> (f64, i64) {
    let total: i64 = metrics.values().map(|m| m.value_milli).sum();
    let avg = total / (metrics.len().max(1) as i64);
    (avg as f64 / target as f64, avg)
}

fn ceil(x: f64) -> i32 {
    x.ceil() as i32
}

/// Upstream GetResourceReplicas: (replicas, utilization %, raw average milli) for a
/// utilization target.
pub fn resource_replicas(
    current: i32,
    target_utilization: i32,
    resource: &str,
    pods: &[PodInfo],
    mut metrics: HashMap<String, PodMetric>,
    p: &Params,
) -> Result<(i32, i32, i64), String> {
    if metrics.is_empty() {
        return Err(format!(
            "unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        ));
    }
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let g = group_pods(pods, &metrics, p);
    metrics.retain(|k, _| !g.ignored.contains(k) && !g.unready.contains(k));
    if metrics.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let mut requests = HashMap::new();
    for pod in pods {
        requests.insert(pod.name.clone(), pod.request_milli.clone()?);
    }
    let (ratio, utilization, raw) = utilization_ratio(&metrics, &requests, target_utilization)?;
    let scale_up_with_unready = !g.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && g.missing.is_empty() {
        if (1.0 - ratio).abs() <= p.tolerance {
            return Ok((current, utilization, raw));
        }
        return Ok((ceil(ratio * f64::from(g.ready_count)), utilization, raw));
    }
    for pod in &g.missing {
        // Missing pods are assumed at 100% of their request when scaling down, 0% when up.
        let value = if ratio < 1.0 {
            requests.get(pod).copied().unwrap_or(0)
        } else {
            0
        };
        metrics.insert(
            pod.clone(),
            PodMetric {
                value_milli: value,
                timestamp_ms: 0,
                window_ms: 0,
            },
        );
    }
    if scale_up_with_unready {
        for pod in &g.unready {
            metrics.insert(
                pod.clone(),
                PodMetric {
                    value_milli: 0,
                    timestamp_ms: 0,
                    window_ms: 0,
                },
            );
        }
    }
    let (new_ratio, _, _) = utilization_ratio(&metrics, &requests, target_utilization)?;
    Ok((
        settle(current, ratio, new_ratio, metrics.len(), p),
        utilization,
        raw,
    ))
}

/// Upstream's end of both calculations: no change inside the tolerance or when the assumed
/// values flip the direction.
fn settle(current: i32, ratio: f64, new_ratio: f64, n: usize, p: &Params) -> i32 {
    if (1.0 - new_ratio).abs() <= p.tolerance
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return current;
    }
    let proposal = ceil(new_ratio * n as f64);
    if (new_ratio < 1.0 && proposal > current) || (new_ratio > 1.0 && proposal < current) {
        return current;
    }
    proposal
}

/// Upstream GetRawResourceReplicas: (replicas, average usage milli) for an average-value target.
pub fn raw_resource_replicas(
    current: i32,
    target_milli: i64,
    resource: &str,
    pods: &[PodInfo],
    mut metrics: HashMap<String, PodMetric>,
    p: &Params,
) -> Result<(i32, i64), String> {
    if metrics.is_empty() {
        return Err(format!(
            "unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        ));
    }
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let target = target_milli.max(1);
    let g = group_pods(pods, &metrics, p);
    metrics.retain(|k, _| !g.ignored.contains(k) && !g.unready.contains(k));
    if metrics.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let (ratio, usage) = usage_ratio(&metrics, target);
    let scale_up_with_unready = !g.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && g.missing.is_empty() {
        if (1.0 - ratio).abs() <= p.tolerance {
            return Ok((current, usage));
        }
        return Ok((ceil(ratio * f64::from(g.ready_count)), usage));
    }
    for pod in &g.missing {
        let value = if ratio < 1.0 { target } else { 0 };
        metrics.insert(
            pod.clone(),
            PodMetric {
                value_milli: value,
                timestamp_ms: 0,
                window_ms: 0,
            },
        );
    }
    if scale_up_with_unready {
        for pod in &g.unready {
            metrics.insert(
                pod.clone(),
                PodMetric {
                    value_milli: 0,
                    timestamp_ms: 0,
                    window_ms: 0,
                },
            );
        }
    }
    let (new_ratio, _) = usage_ratio(&metrics, target);
    Ok((settle(current, ratio, new_ratio, metrics.len(), p), usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 10_000_000;

    fn params() -> Params {
        Params {
            tolerance: 0.1,
            cpu_initialization_period_ms: 300_000,
            initial_readiness_delay_ms: 30_000,
            now_ms: NOW,
            cpu: true,
        }
    }

    fn pod(name: &str) -> PodInfo {
        PodInfo {
            name: name.into(),
            phase: "Running".into(),
            deleting: false,
            ready: Some((true, NOW - 1_000_000)),
            start_time_ms: Some(NOW - 2_000_000),
            request_milli: Ok(1000),
        }
    }

    fn metric(v: i64) -> PodMetric {
        PodMetric {
            value_milli: v,
            timestamp_ms: NOW,
            window_ms: 15_000,
        }
    }

    #[test]
    fn scales_up_on_high_utilization() {
        let pods = vec![pod("a"), pod("b"), pod("c")];
        let metrics = HashMap::from([
            ("a".into(), metric(900)),
            ("b".into(), metric(800)),
            ("c".into(), metric(700)),
        ]);
        // 80% against 50%: ceil(1.6 * 3) = 5.
        assert_eq!(
            resource_replicas(3, 50, "cpu", &pods, metrics, &params()),
            Ok((5, 80, 800))
        );
    }

    #[test]
    fn stays_within_tolerance() {
        let pods = vec![pod("a")];
        let metrics = HashMap::from([("a".into(), metric(540))]);
        assert_eq!(
            resource_replicas(1, 50, "cpu", &pods, metrics, &params())
                .unwrap()
                .0,
            1
        );
    }

    #[test]
    fn missing_pods_count_as_full_when_scaling_down() {
        let pods = vec![pod("a"), pod("b"), pod("c"), pod("d")];
        // Two pods at 10%, two without metrics (assumed at 100%): (10+10+100+100)/4 = 55% of a 50% target
        // is up, the opposite direction: no change.
        let metrics = HashMap::from([("a".into(), metric(100)), ("b".into(), metric(100))]);
        assert_eq!(
            resource_replicas(4, 50, "cpu", &pods, metrics, &params())
                .unwrap()
                .0,
            4
        );
        let metrics = HashMap::from([
            ("a".into(), metric(0)),
            ("b".into(), metric(0)),
            ("c".into(), metric(0)),
        ]);
        // (0+0+0+100)/4 = 25% of 50%: ceil(0.5 * 4) = 2.
        assert_eq!(
            resource_replicas(4, 50, "cpu", &pods, metrics, &params())
                .unwrap()
                .0,
            2
        );
    }

    #[test]
    fn unready_pods_count_as_idle_when_scaling_up() {
        let mut b = pod("b");
        b.ready = Some((false, NOW - 1000));
        b.start_time_ms = Some(NOW - 2000);
        let pods = vec![pod("a"), b];
        let metrics = HashMap::from([("a".into(), metric(1000)), ("b".into(), metric(1000))]);
        // a at 100% of 50%; b unready counts as 0: 50% -> within tolerance, stays at 2.
        assert_eq!(
            resource_replicas(2, 50, "cpu", &pods, metrics, &params())
                .unwrap()
                .0,
            2
        );
    }

    #[test]
    fn errors_read_as_upstream() {
        assert_eq!(
            resource_replicas(1, 50, "cpu", &[pod("a")], HashMap::new(), &params()).unwrap_err(),
            "unable to get metrics for resource cpu: no metrics returned from resource metrics API"
        );
        let mut a = pod("a");
        a.request_milli = Err("missing request for cpu in container c of Pod a".into());
        assert_eq!(
            resource_replicas(
                1,
                50,
                "cpu",
                &[a],
                HashMap::from([("a".into(), metric(1))]),
                &params()
            )
            .unwrap_err(),
            "missing request for cpu in container c of Pod a"
        );
    }

    #[test]
    fn average_value_targets() {
        let pods = vec![pod("a"), pod("b")];
        let metrics = HashMap::from([("a".into(), metric(300)), ("b".into(), metric(300))]);
        assert_eq!(
            raw_resource_replicas(
                2,
                100,
                "memory",
                &pods,
                metrics,
                &Params {
                    cpu: false,
                    ..params()
                }
            ),
            Ok((6, 300))
        );
    }
}
