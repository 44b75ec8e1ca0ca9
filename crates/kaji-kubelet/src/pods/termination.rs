//! Termination messages, as upstream's getTerminationMessage and
//! readLastStringFromContainerLogs (pkg/kubelet/kuberuntime/kuberuntime_container.go): an
//! exited container's message is the file mounted at its terminationMessagePath (at most
//! 4096 bytes, the end of it); with `FallbackToLogsOnError`, a failed container that wrote
//! none gets the last 80 lines of its log (at most 2048 bytes).

use super::container::{
    TERMINATION_MESSAGE_PATH_ANNOTATION, TERMINATION_MESSAGE_POLICY_ANNOTATION,
};
use crate::cri::api;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// upstream kubecontainer.MaxContainerTerminationMessageLength.
const MAX_MESSAGE: u64 = 4096;
/// upstream kubecontainer.MaxContainerTerminationMessageLogLength and ...LogLines.
const MAX_LOG_BYTES: usize = 2048;
const MAX_LOG_LINES: usize = 80;

/// The last `max` bytes of a file.
fn read_at_most(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len > max {
        f.seek(SeekFrom::Start(len - max))?;
    }
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The last lines of a CRI log file (`<time> <stream> <P|F> <text>`), joined partial lines
/// included, as `kubectl logs --tail=80 --limit-bytes=2048` would print them.
pub fn log_tail(path: &Path) -> String {
    let Ok(raw) = read_at_most(path, 256 * 1024) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&raw);
    let mut lines: Vec<String> = Vec::new();
    let mut partial = String::new();
    for l in text.lines() {
        let mut parts = l.splitn(4, ' ');
        let (Some(_), Some(_), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        partial.push_str(parts.next().unwrap_or_default());
        if tag != "P" {
            lines.push(std::mem::take(&mut partial) + "\n");
        }
    }
    let start = lines.len().saturating_sub(MAX_LOG_LINES);
    let mut out = lines[start..].concat();
    if out.len() > MAX_LOG_BYTES {
        let mut cut = MAX_LOG_BYTES;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// Adds the termination message to an exited container's CRI status (after the runtime's own
/// message, separated by ": ").
pub fn fill(st: &mut api::ContainerStatus) {
    if st.state != api::ContainerState::ContainerExited as i32 {
        return;
    }
    let tm_path = st
        .annotations
        .get(TERMINATION_MESSAGE_PATH_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    let fallback = st
        .annotations
        .get(TERMINATION_MESSAGE_POLICY_ANNOTATION)
        .is_some_and(|p| p == "FallbackToLogsOnError")
        && st.exit_code != 0
        && st.reason != "ContainerCannotRun";
    let mut check_logs = fallback;
    let mut message = String::new();
    if !tm_path.is_empty()
        && let Some(m) = st.mounts.iter().find(|m| m.container_path == tm_path)
    {
        match read_at_most(Path::new(&m.host_path), MAX_MESSAGE) {
            Ok(data) => {
                check_logs = fallback && data.is_empty();
                message = String::from_utf8_lossy(&data).into_owned();
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                check_logs = false;
                message = format!("Error on reading termination log {}: {e}", m.host_path);
            }
        }
    }
    if check_logs {
        message = log_tail(Path::new(&st.log_path));
    }
    if !message.is_empty() {
        if !st.message.is_empty() {
            st.message.push_str(": ");
        }
        st.message.push_str(&message);
    }
}

/// Removes the termination-log file of a removed container instance (it lives in the pod's
/// directory, under `containers/`).
pub fn remove_file(st: &api::ContainerStatus, pod_dir: &Path) {
    let Some(tm_path) = st.annotations.get(TERMINATION_MESSAGE_PATH_ANNOTATION) else {
        return;
    };
    if let Some(m) = st.mounts.iter().find(|m| &m.container_path == tm_path)
        && Path::new(&m.host_path).starts_with(pod_dir.join("containers"))
    {
        let _ = std::fs::remove_file(&m.host_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_joins_partials_and_keeps_the_last_lines() {
        let dir = std::env::temp_dir().join(format!("kaji-tm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("0.log");
        let mut s = String::new();
        for i in 0..100 {
            s.push_str(&format!("2024-01-01T00:00:00Z stdout F line {i}\n"));
        }
        s.push_str("2024-01-01T00:00:00Z stderr P part\n2024-01-01T00:00:00Z stderr F ial\n");
        std::fs::write(&log, s).unwrap();
        let t = log_tail(&log);
        assert!(t.starts_with("line 21\n"), "{t}");
        assert!(t.ends_with("line 99\npartial\n"), "{t}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
