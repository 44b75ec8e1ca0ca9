//! kube-proxy's sync metrics in Prometheus text format, served at `/metrics`:
//! `kubeproxy_sync_proxy_rules_duration_seconds` (histogram),
//! `kubeproxy_sync_proxy_rules_last_timestamp_seconds`,
//! `kubeproxy_sync_proxy_rules_nftables_sync_failures_total` (upstream's names) and
//! `kaji_proxy_rules` (rules plus set elements loaded; upstream has no nftables rule count).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// kube-proxy's buckets for the sync duration (exponential from 1 ms).
const BUCKETS: [f64; 15] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384,
];

#[derive(Default)]
struct State {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
    last: f64,
    rules: usize,
    failures: u64,
}

#[derive(Default)]
pub struct Metrics(Mutex<State>);

impl Metrics {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn synced(&self, took: Duration, rules: usize) {
        let secs = took.as_secs_f64();
        let mut s = self.state();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                s.counts[i] += 1;
            }
        }
        s.count += 1;
        s.sum += secs;
        s.rules = rules;
        s.last = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
    }

    pub fn failed(&self) {
        self.state().failures += 1;
    }

    pub fn render(&self) -> String {
        let s = self.state();
        let mut out = String::new();
        let h = "kubeproxy_sync_proxy_rules_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {h} SyncProxyRules latency in seconds\n# TYPE {h} histogram"
        );
        for (b, c) in BUCKETS.iter().zip(s.counts) {
            let _ = writeln!(out, "{h}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{h}_bucket{{le=\"+Inf\"}} {}\n{h}_sum {}\n{h}_count {}",
            s.count, s.sum, s.count
        );
        let g = "kubeproxy_sync_proxy_rules_last_timestamp_seconds";
        let _ = writeln!(
            out,
            "# HELP {g} The last time proxy rules were successfully synced\n# TYPE {g} gauge\n{g} {}",
            s.last
        );
        let f = "kubeproxy_sync_proxy_rules_nftables_sync_failures_total";
        let _ = writeln!(
            out,
            "# HELP {f} Number of times a ruleset failed to load\n# TYPE {f} counter\n{f} {}",
            s.failures
        );
        let r = "kaji_proxy_rules";
        let _ = writeln!(
            out,
            "# HELP {r} Rules and set elements in the proxy's table\n# TYPE {r} gauge\n{r} {}",
            s.rules
        );
        out
    }
}
