//! The scheduler (being written): watches unscheduled pods and binds them to nodes.

use kube::Client;

/// Scheduler settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Identity in the leader-election Lease (`kube-system/kube-scheduler`).
    pub identity: String,
}

impl Default for Options {
    fn default() -> Self {
        Options { identity: format!("kaji-scheduler-{}", std::process::id()) }
    }
}

/// Runs the scheduler until the process ends.
pub async fn run(client: Client, opts: Options) -> anyhow::Result<()> {
    let _ = (client, opts);
    std::future::pending::<()>().await;
    Ok(())
}
