//! Probes and lifecycle hooks, as upstream's prober (pkg/kubelet/prober): one task per probe of
//! a running container; it waits `initialDelaySeconds`, probes every `periodSeconds` with
//! `timeoutSeconds`, and flips its result after `successThreshold` successes or
//! `failureThreshold` failures, waking the pod worker. Liveness and readiness wait for the
//! startup probe. Handlers: exec (CRI ExecSync), httpGet and tcpSocket. Lifecycle hooks
//! (`run_hook`) share the handlers but not the rules: no timeout of their own, and any HTTP
//! response counts as success.

use super::Shared;
use super::events::WARNING;
use k8s_openapi::api::core::v1::{
    Container, ExecAction, HTTPGetAction, LifecycleHandler, Pod, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }
}

/// Probe results by (container id, kind): true = success.
pub type Results = Arc<Mutex<HashMap<(String, Kind), bool>>>;

/// Runs one probe action; Err carries the failure message as upstream words it.
#[allow(clippy::too_many_arguments)] // one argument per handler kind, as the API spells them
pub async fn run_action(
    shared: &Shared,
    pod_ip: &str,
    container: &Container,
    container_id: &str,
    exec: Option<&ExecAction>,
    http: Option<&HTTPGetAction>,
    tcp: Option<&TCPSocketAction>,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(e) = exec {
        let cmd = e.command.clone().unwrap_or_default();
        let mut cri = shared.cri.clone();
        let r = tokio::time::timeout(
            timeout + Duration::from_secs(1),
            cri.exec_sync(container_id, cmd.clone(), timeout.as_secs().max(1) as i64),
        )
        .await;
        return match r {
            Err(_) => Err(format!("command {cmd:?} timed out")),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Ok(Ok(out)) if out.exit_code == 0 => Ok(()),
            Ok(Ok(out)) => {
                let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
                s.push_str(&String::from_utf8_lossy(&out.stderr));
                Err(if s.trim().is_empty() {
                    format!("command {cmd:?} exited with {}", out.exit_code)
                } else {
                    s
                })
            }
        };
    }
    if let Some(h) = http {
        return match http_action(h, pod_ip, container, Some(timeout), "probe").await? {
            code if (200..400).contains(&code) => Ok(()),
            code => Err(format!("HTTP probe failed with statuscode: {code}")),
        };
    }
    if let Some(t) = tcp {
        let host = t
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod_ip.to_string());
        let port =
            resolve_port(&t.port, container).ok_or_else(|| format!("invalid port {:?}", t.port))?;
        return match tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
            Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: connect: {}", io_words(&e))),
            Ok(Ok(_)) => Ok(()),
        };
    }
    Ok(())
}

/// An httpGet action (of a probe or a hook): the status code, or the failed request in the
/// words of Go's HTTP client. `timeout` bounds the request (hooks have none of their own).
async fn http_action(
    h: &HTTPGetAction,
    pod_ip: &str,
    container: &Container,
    timeout: Option<Duration>,
    agent: &str,
) -> Result<u16, String> {
    let host = h
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod_ip.to_string());
    let port =
        resolve_port(&h.port, container).ok_or_else(|| format!("invalid port {:?}", h.port))?;
    let path = h.path.clone().unwrap_or_else(|| "/".into());
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    let url = format!("http://{host}:{port}{path}");
    let headers: Vec<(String, String)> = h
        .http_headers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|x| (x.name, x.value))
        .collect();
    let request = http_get(&host, port, &path, &headers, agent);
    let r = match timeout {
        Some(t) => tokio::time::timeout(t, request).await,
        None => Ok(request.await),
    };
    match r {
        Err(_) => Err(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
        Ok(Err(e)) => Err(format!(
            "Get \"{url}\": dial tcp {host}:{port}: connect: {}",
            io_words(&e)
        )),
        Ok(Ok(code)) => Ok(code),
    }
}

/// `name_namespace(uid)`, as upstream's format.Pod names a pod in messages.
pub fn format_pod(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.clone().unwrap_or_default(),
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.uid.clone().unwrap_or_default()
    )
}

/// Runs a lifecycle hook (postStart or preStop) as upstream's handler runner does: exec in the
/// container (no timeout of its own), an HTTP GET whose status code does not matter (only a
/// request that fails does), or a sleep. Err carries the event message as upstream words it.
/// The caller bounds it (preStop: the grace period; postStart: until the pod is deleted).
pub async fn run_hook(
    shared: &Shared,
    pod: &Pod,
    pod_ip: &str,
    container: &Container,
    container_id: &str,
    hook: &LifecycleHandler,
) -> Result<(), String> {
    let who = format!(
        "for Container {:?} in Pod {:?}",
        container.name,
        format_pod(pod)
    );
    if let Some(e) = &hook.exec {
        let cmd = e.command.clone().unwrap_or_default();
        let mut cri = shared.cri.clone();
        let (error, output) = match cri.exec_sync(container_id, cmd.clone(), 0).await {
            Ok(out) if out.exit_code == 0 => return Ok(()),
            Ok(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
                let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
                output.push_str(&stderr);
                (
                    format!(
                        "command '{}' exited with {}: {stderr}",
                        cmd.join(" "),
                        out.exit_code
                    ),
                    output,
                )
            }
            Err(e) => (format!("{e:#}"), String::new()),
        };
        return Err(format!(
            "Exec lifecycle hook ([{}]) {who} failed - error: {error}, message: {output:?}",
            cmd.join(" ")
        ));
    }
    if let Some(h) = &hook.http_get {
        return match http_action(h, pod_ip, container, None, "lifecycle").await {
            Ok(_) => Ok(()),
            Err(error) => Err(format!(
                "HTTP lifecycle hook ({}) {who} failed - error: {error}",
                h.path.clone().unwrap_or_default()
            )),
        };
    }
    if let Some(s) = &hook.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
        return Ok(());
    }
    Err(format!(
        "Cannot run handler: invalid handler: {}",
        serde_json::to_string(hook).unwrap_or_default()
    ))
}

fn io_words(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => e.to_string(),
    }
}

/// A port number or a named container port.
fn resolve_port(port: &IntOrString, c: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(name) => name.parse().ok().or_else(|| {
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
        }),
    }
}

/// A minimal HTTP/1.1 GET; returns the status code.
async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    agent: &str,
) -> std::io::Result<u16> {
    let mut s = tokio::net::TcpStream::connect((host, port)).await?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-{agent}/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = vec![0u8; 1024];
    let mut got = 0;
    while got < 12 {
        let n = s.read(&mut buf[got..]).await?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response")
        })
}

/// Everything a probe task needs.
pub struct ProbeTask {
    pub shared: Arc<Shared>,
    pub pod: Pod,
    pub container: Container,
    pub container_id: String,
    pub pod_ip: String,
    pub kind: Kind,
    pub probe: Probe,
    pub results: Results,
    pub wake: Arc<Notify>,
}

impl ProbeTask {
    /// Probes until aborted (the container stopped) or, for liveness and startup, until it
    /// reports failure (the worker then restarts the container, with new probe tasks).
    pub async fn run(self) {
        let p = &self.probe;
        let period = Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64);
        let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
        let success_threshold = p.success_threshold.unwrap_or(1).max(1);
        let failure_threshold = p.failure_threshold.unwrap_or(3).max(1);
        let key = (self.container_id.clone(), self.kind);
        // Upstream's initial results: liveness succeeds and readiness fails until probed; a
        // startup probe has no result (the container is not started, nor has it failed) until it
        // succeeds or exhausts its failureThreshold.
        match self.kind {
            Kind::Liveness => self.set(&key, true),
            Kind::Readiness => self.set(&key, false),
            Kind::Startup => {}
        }
        tokio::time::sleep(Duration::from_secs(
            p.initial_delay_seconds.unwrap_or(0).max(0) as u64,
        ))
        .await;
        let (mut successes, mut failures) = (0, 0);
        let field_path = format!("spec.containers{{{}}}", self.container.name);
        loop {
            let startup_pending = self.kind != Kind::Startup
                && self.container.startup_probe.is_some()
                && self
                    .results
                    .lock()
                    .map(|r| r.get(&(self.container_id.clone(), Kind::Startup)) != Some(&true))
                    .unwrap_or(false);
            if !startup_pending {
                let r = run_action(
                    &self.shared,
                    &self.pod_ip,
                    &self.container,
                    &self.container_id,
                    p.exec.as_ref(),
                    p.http_get.as_ref(),
                    p.tcp_socket.as_ref(),
                    timeout,
                )
                .await;
                match r {
                    Ok(()) => {
                        successes += 1;
                        failures = 0;
                        if successes >= success_threshold || self.kind != Kind::Readiness {
                            self.set(&key, true);
                            if self.kind == Kind::Startup {
                                return;
                            }
                        }
                    }
                    Err(msg) => {
                        failures += 1;
                        successes = 0;
                        self.shared.recorder.pod(
                            &self.pod,
                            Some(field_path.clone()),
                            WARNING,
                            "Unhealthy",
                            format!("{} probe failed: {msg}", self.kind.word()),
                        );
                        if failures >= failure_threshold {
                            self.set(&key, false);
                            if self.kind != Kind::Readiness {
                                return;
                            }
                        }
                    }
                }
            }
            tokio::time::sleep(period).await;
        }
    }

    fn set(&self, key: &(String, Kind), v: bool) {
        let changed = self
            .results
            .lock()
            .map(|mut r| r.insert(key.clone(), v) != Some(v))
            .unwrap_or(false);
        if changed {
            self.wake.notify_one();
        }
    }
}
