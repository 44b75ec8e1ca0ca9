//! Hollow nodes: a simulation (stub; being written).

use kube::Client;
use std::time::Duration;

/// How hollow nodes look and behave.
#[derive(Clone, Debug)]
pub struct HollowOptions {
    /// How many nodes; named `<name_prefix>-<i>`.
    pub nodes: usize,
    pub name_prefix: String,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    /// How long a bound pod takes to turn Running and Ready.
    pub ready_delay: Duration,
    /// Heartbeat (Lease renewal) interval.
    pub heartbeat: Duration,
}

impl Default for HollowOptions {
    fn default() -> Self {
        HollowOptions {
            nodes: 1,
            name_prefix: "hollow-node".into(),
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: 110,
            ready_delay: Duration::from_millis(500),
            heartbeat: Duration::from_secs(10),
        }
    }
}

/// Runs the hollow nodes until the process ends.
pub async fn run(client: Client, opts: HollowOptions) -> anyhow::Result<()> {
    let _ = (client, opts);
    std::future::pending::<()>().await;
    Ok(())
}
