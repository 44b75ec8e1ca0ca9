//! Probes and lifecycle hooks, as upstream's prober (pkg/kubelet/prober): one task per probe of
//! a running container; it waits `initialDelaySeconds`, probes every `periodSeconds` with
//! `timeoutSeconds`, and flips its result after `successThreshold` successes or
//! `failureThreshold` failures, waking the pod worker. Liveness and readiness wait for the
//! startup probe. Handlers: exec (CRI ExecSync), httpGet (HTTP, or HTTPS without certificate
//! verification, as upstream) and tcpSocket. Lifecycle hooks
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
    // As upstream, HTTPS skips certificate verification (InsecureSkipVerify): the prober
    // cannot know the pod's CA, and a probe only asks whether the server answers.
    let tls = h
        .scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"));
    let url = format!(
        "{}://{}{path}",
        if tls { "https" } else { "http" },
        host_port(&host, port)
    );
    let headers: Vec<(String, String)> = h
        .http_headers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|x| (x.name, x.value))
        .collect();
    let request = http_get(&host, port, &path, &headers, agent, tls);
    let r = match timeout {
        Some(t) => tokio::time::timeout(t, request).await,
        None => Ok(request.await),
    };
    match r {
        Err(_) => Err(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
        Ok(Err(HttpError::Connect(e))) => Err(format!(
            "Get \"{url}\": dial tcp {}: connect: {}",
            host_port(&host, port),
            io_words(&e)
        )),
        Ok(Err(HttpError::Exchange(e))) => Err(format!("Get \"{url}\": {e}")),
        Ok(Ok(code)) => Ok(code),
    }
}

/// `host:port`, with an IPv6 address in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
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

/// Why an HTTP GET failed: the connection could not be made, or the exchange on it failed.
#[derive(Debug)]
enum HttpError {
    Connect(std::io::Error),
    Exchange(std::io::Error),
}

/// A minimal HTTP/1.1 GET, over TLS for `tls`; returns the status code.
async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    agent: &str,
    tls: bool,
) -> Result<u16, HttpError> {
    let s = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(HttpError::Connect)?;
    // A Host header among the probe's headers replaces the URL's host, as upstream.
    let host_header = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map_or_else(|| host_port(host, port), |(_, v)| v.clone());
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: kube-{agent}/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        if !k.eq_ignore_ascii_case("host") {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    req.push_str("\r\n");
    let code = if tls {
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| {
            HttpError::Exchange(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        })?;
        let s = tokio_rustls::TlsConnector::from(insecure_tls())
            .connect(name, s)
            .await
            .map_err(HttpError::Exchange)?;
        exchange(s, &req).await
    } else {
        exchange(s, &req).await
    };
    code.map_err(HttpError::Exchange)
}

/// Sends the request and reads the status code of the response.
async fn exchange<S>(mut s: S, req: &str) -> std::io::Result<u16>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    s.write_all(req.as_bytes()).await?;
    s.flush().await?;
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

/// The TLS client of HTTPS probes and hooks: any certificate is accepted (upstream's prober
/// sets InsecureSkipVerify), but the handshake's signatures are still checked against it.
fn insecure_tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::HTTPHeader;

    /// A TLS server on 127.0.0.1 with a self-signed certificate: answers one request per
    /// connection with `204`, and sends each request's head to the returned channel.
    async fn tls_server() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let ck = rcgen::generate_simple_self_signed(vec!["not-the-probed-host".to_string()])
            .expect("certificate");
        let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
        let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der())
            .expect("key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(s).await else {
                        let _ = tx.send("(no TLS handshake)".into());
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 512];
                    while !head.ends_with(b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                    let _ = s
                        .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                        .await;
                    let _ = s.shutdown().await;
                });
            }
        });
        (port, rx)
    }

    fn get(scheme: &str, port: u16) -> HTTPGetAction {
        HTTPGetAction {
            scheme: Some(scheme.into()),
            host: Some("127.0.0.1".into()),
            port: IntOrString::Int(i32::from(port)),
            path: Some("healthz".into()),
            http_headers: Some(vec![HTTPHeader {
                name: "X-Probe".into(),
                value: "yes".into(),
            }]),
        }
    }

    /// `scheme: HTTPS` speaks TLS and accepts a certificate that no CA signed and that names
    /// another host (upstream's InsecureSkipVerify); the request inside is the usual GET.
    #[tokio::test]
    async fn https_probes_use_tls_without_verifying_the_certificate() {
        let (port, mut seen) = tls_server().await;
        let c = Container::default();
        let got = http_action(
            &get("HTTPS", port),
            "10.0.0.1",
            &c,
            Some(Duration::from_secs(5)),
            "probe",
        )
        .await;
        assert_eq!(got, Ok(204));
        let head = seen.recv().await.expect("a request");
        assert!(head.starts_with("GET /healthz HTTP/1.1\r\n"), "{head}");
        assert!(
            head.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
            "{head}"
        );
        assert!(head.contains("\r\nX-Probe: yes\r\n"), "{head}");
        assert!(
            head.contains("\r\nUser-Agent: kube-probe/1.33\r\n"),
            "{head}"
        );

        // Plain HTTP to the same server fails (this is what HTTPS probes used to do).
        let plain = http_action(
            &get("HTTP", port),
            "10.0.0.1",
            &c,
            Some(Duration::from_secs(5)),
            "probe",
        )
        .await;
        let err = plain.expect_err("plain HTTP to a TLS server");
        assert!(
            err.starts_with(&format!("Get \"http://127.0.0.1:{port}/healthz\": ")),
            "{err}"
        );
        assert_eq!(seen.recv().await.as_deref(), Some("(no TLS handshake)"));
    }

    /// A refused connection keeps Go's words, with the scheme of the URL.
    #[tokio::test]
    async fn a_refused_https_probe_reads_as_upstream() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let err = http_action(
            &get("HTTPS", port),
            "10.0.0.1",
            &Container::default(),
            Some(Duration::from_secs(5)),
            "probe",
        )
        .await
        .expect_err("nothing listens");
        assert_eq!(
            err,
            format!(
                "Get \"https://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: connection refused"
            )
        );
    }
}
