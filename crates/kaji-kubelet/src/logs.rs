//! Container log rotation, as upstream's container log manager
//! (`pkg/kubelet/logs/container_log_manager.go`): every 10 s, each running container whose CRI log
//! file has grown past `max_size` gets it renamed to `<log>.<YYYYMMDD-hhmmss>` and the runtime is
//! asked to reopen the log (CRI ReopenContainerLog), so new lines go to a fresh file; rotated
//! files beyond `max_files` (the live one included) are removed, oldest first. The kubelet flags
//! are upstream's `--container-log-max-size` (10Mi) and `--container-log-max-files` (5).
//!
//! Unlike upstream, rotated files are not gzipped: they stay readable with `cat`; kubectl reads
//! only the live file in either case.

use crate::cri::{Cri, api};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct LogRotation {
    /// Rotate a log when it is larger than this many bytes.
    pub max_size: u64,
    /// Files kept per container, the live one included (at least 2).
    pub max_files: usize,
}

impl Default for LogRotation {
    fn default() -> Self {
        LogRotation {
            max_size: 10 << 20,
            max_files: 5,
        }
    }
}

/// How often logs are checked (upstream's monitoring period).
const PERIOD: Duration = Duration::from_secs(10);

/// Rotates the logs of running containers until the process ends.
pub async fn run(cri: Cri, policy: LogRotation) -> Result<()> {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = rotate_all(cri.clone(), policy).await {
            tracing::warn!(error = %format!("{e:#}"), "rotating container logs");
        }
    }
}

async fn rotate_all(mut cri: Cri, policy: LogRotation) -> Result<()> {
    let filter = api::ContainerFilter {
        state: Some(api::ContainerStateValue {
            state: api::ContainerState::ContainerRunning as i32,
        }),
        ..Default::default()
    };
    for c in cri.list_containers(Some(filter)).await? {
        let status = match cri.container_status(&c.id).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(container = %c.id, error = %format!("{e:#}"), "container status for log rotation");
                continue;
            }
        };
        if status.log_path.is_empty() {
            continue;
        }
        let log = PathBuf::from(&status.log_path);
        let size = match tokio::fs::metadata(&log).await {
            Ok(m) => m.len(),
            Err(_) => continue,
        };
        if size < policy.max_size {
            continue;
        }
        if let Err(e) = rotate(&mut cri, &c.id, &log, policy).await {
            tracing::warn!(container = %c.id, log = %log.display(), error = %format!("{e:#}"), "rotating a container log");
        }
    }
    Ok(())
}

/// Rotated files of `log`, oldest first (their names sort by time).
fn rotated(log: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let prefix = format!("{name}.");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

async fn rotate(cri: &mut Cri, id: &str, log: &Path, policy: LogRotation) -> Result<()> {
    // Room for the file about to be rotated: keep max_files - 2 old ones (the live file and the
    // new rotated one make max_files).
    let old = rotated(log);
    let keep = policy.max_files.max(2) - 2;
    for path in &old[..old.len().saturating_sub(keep)] {
        let _ = tokio::fs::remove_file(path).await;
    }
    let stamp = jiff::Zoned::now().strftime("%Y%m%d-%H%M%S").to_string();
    let mut target = PathBuf::from(format!("{}.{stamp}", log.display()));
    // Two rotations within a second (a very chatty container): keep both.
    let mut n = 1;
    while target.exists() {
        target = PathBuf::from(format!("{}.{stamp}.{n}", log.display()));
        n += 1;
    }
    tokio::fs::rename(log, &target)
        .await
        .with_context(|| format!("renaming {} to {}", log.display(), target.display()))?;
    let reopened = cri
        .runtime
        .reopen_container_log(api::ReopenContainerLogRequest {
            container_id: id.to_string(),
        })
        .await;
    if let Err(e) = reopened {
        // As upstream: put the file back so that the container keeps a log kubectl can read.
        let _ = tokio::fs::rename(&target, log).await;
        anyhow::bail!("CRI ReopenContainerLog: {}", e.message());
    }
    tracing::debug!(container = %id, rotated = %target.display(), "rotated a container log");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_files_sort_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        for name in ["0.log", "0.log.20261122-101500", "0.log.20261122-101000", "1.log", "0.logx"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let found: Vec<String> = rotated(&log)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(found, ["0.log.20261122-101000", "0.log.20261122-101500"]);
    }
}
