//! What the end-to-end benches share: a process's CPU and memory from /proc, a child process
//! that is killed and reaped when dropped, percentiles, and a pool of concurrent workers.

use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `kaji` binary to run: `KAJI_BENCH_BIN` (another build, e.g. a saved binary for
/// before/after runs), else this build's.
pub fn kaji_bin() -> String {
    std::env::var("KAJI_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_kaji").to_string())
}

/// The `p` quantile (0..=1) of sorted latencies.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs `n` operations with `conc` concurrent workers; returns wall time and per-op latencies.
pub async fn run<F, Fut>(n: usize, conc: usize, op: F) -> (Duration, Vec<Duration>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let op = op.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return lat;
                }
                let t = Instant::now();
                op(i).await;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("worker"));
    }
    (start.elapsed(), all)
}

/// (CPU seconds used so far, RSS in MiB) of a process, from /proc.
pub fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat; after the ')' they are at 11 and 12.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    (cpu, rss / 1024.0)
}

/// A child process that is killed and reaped when dropped, whatever path the bench takes.
pub struct Proc(pub Child);

impl Proc {
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The admin client of a `kaji server` just spawned with `--data-dir` holding `kubeconfig`,
/// once the kubeconfig is written and the server answers (at most 60 s: a server that starts
/// its own containerd takes longer).
pub async fn ready_client(kubeconfig: &std::path::Path) -> anyhow::Result<kube::Client> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let start = Instant::now();
    loop {
        if kubeconfig.exists()
            && let Ok(kc) = Kubeconfig::read_from(kubeconfig)
            && let Ok(cfg) = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await
            && let Ok(c) = kube::Client::try_from(cfg)
            && c.apiserver_version().await.is_ok()
        {
            return Ok(c);
        }
        anyhow::ensure!(start.elapsed() < Duration::from_secs(60), "server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
