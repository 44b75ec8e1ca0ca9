//! The applier: loads a [`Ruleset`] with `nft -f -` in one transaction (the kernel takes all of
//! it or none of it), remembers what it loaded, and checks that the table is still there (someone
//! may `nft flush ruleset`). A failed load leaves the last good table in place.

use crate::ruleset::Ruleset;
use anyhow::{Context, Result, bail};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// Runs `nft -f -` with `script` on stdin.
pub async fn load(script: &str) -> Result<()> {
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running nft (the nftables package)")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "nft -f failed: {}",
            err.lines().take(6).collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}

/// Whether our table is loaded as we left it: the prerouting hook still jumps to `services`.
pub async fn present(table: &str) -> bool {
    let out = tokio::process::Command::new("nft")
        .args(["list", "chain", "inet", table, "nat-prerouting"])
        .stdin(Stdio::null())
        .output()
        .await;
    matches!(out, Ok(o) if o.status.success() && String::from_utf8_lossy(&o.stdout).contains("jump services"))
}

/// Removes the table (`kaji killall`, tests).
pub async fn delete_table(table: &str) -> Result<()> {
    load(&format!(
        "add table inet {table}\ndelete table inet {table}\n"
    ))
    .await
}

/// The table the kernel has, as far as the applier knows.
#[derive(Default)]
pub struct Applier {
    loaded: Option<Ruleset>,
}

impl Applier {
    /// Loads `want` unless it is what the kernel already has. Returns whether nft ran.
    pub async fn apply(&mut self, want: &Ruleset) -> Result<bool> {
        if self.loaded.as_ref() == Some(want) {
            return Ok(false);
        }
        let incremental = want.transaction(self.loaded.as_ref());
        let r = load(&incremental).await;
        if let Err(e) = r {
            // The in-place form can fail when the kernel's table is not what we think (someone
            // edited it): replace it whole before giving up.
            if self.loaded.is_none() {
                return Err(e);
            }
            tracing::debug!(error = %format!("{e:#}"), "in-place sync failed; replacing the table");
            self.loaded = None;
            load(&want.transaction(None)).await?;
        }
        self.loaded = Some(want.clone());
        Ok(true)
    }

    /// Forgets what was loaded: the next apply replaces the table whole.
    pub fn invalidate(&mut self) {
        self.loaded = None;
    }
}
