//! Just enough of the CNI protocol to tear a sandbox's network down without containerd: DEL
//! through every plugin of a conflist in reverse order (the CNI spec's rule for lists,
//! <https://github.com/containernetworking/cni/blob/main/SPEC.md#delete-attachment>).

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// The interface name containerd's CRI gives the pod's end of the veth.
const IFNAME: &str = "eth0";

/// `CNI_COMMAND=DEL` for sandbox `id` with every plugin of `conflist` (JSON text). An empty
/// `netns` is allowed: plugins then release what they can (host-local still frees the IP).
pub async fn delete(conflist: &str, bin_dir: &Path, id: &str, netns: &str) -> Result<()> {
    let list: Value = serde_json::from_str(conflist).context("parsing the CNI conflist")?;
    let name = list["name"].clone();
    let version = list["cniVersion"].clone();
    let plugins = list["plugins"]
        .as_array()
        .context("conflist without plugins")?;
    for plugin in plugins.iter().rev() {
        let mut conf = plugin.clone();
        let Some(obj) = conf.as_object_mut() else {
            continue;
        };
        let kind = obj
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        obj.insert("name".into(), name.clone());
        obj.insert("cniVersion".into(), version.clone());
        if obj.contains_key("capabilities") {
            obj.insert(
                "runtimeConfig".into(),
                serde_json::json!({ "portMappings": [] }),
            );
        }
        let mut child = tokio::process::Command::new(bin_dir.join(&kind))
            .env("CNI_COMMAND", "DEL")
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", IFNAME)
            .env("CNI_PATH", bin_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("running CNI plugin {kind} from {}", bin_dir.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&serde_json::to_vec(&conf)?).await?;
        }
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            bail!(
                "CNI {kind} DEL: {}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}
