//! Joining a cluster with a k3s-style token (`K10<sha256 of CA>::node:<secret>`): download the
//! CA from `/cacerts`, check it against the token's hash, then talk TLS with the secret as a
//! bearer token, only to get the node's own client certificate (`system:node:<name>` in
//! `system:nodes`, from `/v1-kaji/client-kubelet.crt`, as k3s's `/v1-k3s/client-kubelet.crt`),
//! which the agent then uses for everything.

use anyhow::{Context, Result, bail};
use kube::Client;

/// A client for the API server at `server` (https://host:port) authenticated by `token`.
pub async fn client(server: &str, token: &str) -> Result<Client> {
    Ok(join(server, token).await?.0)
}

/// Where the node's client certificate comes from.
pub const CLIENT_CERT_PATH: &str = "/v1-kaji/client-kubelet.crt";

/// A client certificate (cert, key, CA; PEM) from the server for `{field: value}`
/// (`nodeName`, or `user` for the node's proxy and the hollow nodes' reader), asked with
/// `client` (the join token, or an admin).
pub async fn client_certificate(
    client: &Client,
    field: &str,
    value: &str,
) -> Result<(String, String, String)> {
    let request = &serde_json::json!({ field: value });
    let req = http::Request::post(CLIENT_CERT_PATH)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(request)?)?;
    let answer: serde_json::Value = client
        .request(req)
        .await
        .with_context(|| format!("asking for a client certificate ({request})"))?;
    let field = |k: &str| {
        answer[k]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("no {k} in the answer"))
    };
    Ok((field("cert")?, field("key")?, field("ca")?))
}

/// A kubeconfig for `server` with the CA and client certificate embedded.
pub fn kubeconfig(server: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: default\ncontexts:\n- context:\n    cluster: default\n    user: default\n  name: default\ncurrent-context: default\nusers:\n- name: default\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(ca_pem),
        b64(cert_pem),
        b64(key_pem)
    )
}

/// A client from a kubeconfig's text, named `component` in its User-Agent as upstream's
/// binaries are (`kubelet/v1.33.0 (linux/amd64) kaji/0.1.0`).
pub async fn client_from_kubeconfig_text(text: &str, component: &str) -> Result<Client> {
    let kc = kube::config::Kubeconfig::from_yaml(text)?;
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    cfg.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_str(&user_agent(component))?,
    ));
    Ok(Client::try_from(cfg)?)
}

/// Joins with `token`, gets the node's client certificate, keeps it as
/// `<agent_dir>/kubelet.kubeconfig`, and returns a client that uses it.
pub async fn node_client(
    server: &str,
    token: &str,
    node: &str,
    agent_dir: &std::path::Path,
) -> Result<Client> {
    let (joined, _) = join(server, token).await?;
    let mut delay = std::time::Duration::from_millis(200);
    let (cert, key, ca) = loop {
        match client_certificate(&joined, "nodeName", node).await {
            Ok(c) => break c,
            Err(e) if delay < std::time::Duration::from_secs(5) => {
                tracing::debug!(error = %format!("{e:#}"), "node client certificate");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(e),
        }
    };
    let text = kubeconfig(server, &ca, &cert, &key);
    std::fs::create_dir_all(agent_dir)
        .with_context(|| format!("creating {}", agent_dir.display()))?;
    write_private(&agent_dir.join("kubelet.kubeconfig"), &text)?;
    client_from_kubeconfig_text(&text, "kubelet").await
}

/// Writes a file only its owner reads (keys, kubeconfigs).
pub fn write_private(path: &std::path::Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

fn user_agent(component: &str) -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    format!(
        "{component}/v1.33.0 ({}/{arch}) kaji/{}",
        std::env::consts::OS,
        env!("CARGO_PKG_VERSION")
    )
}

/// The token client and the cluster CA (PEM).
async fn join(server: &str, token: &str) -> Result<(Client, String)> {
    let token = token.trim();
    let (ca_hash, secret) = match token.strip_prefix("K10").and_then(|t| t.split_once("::")) {
        Some((hash, secret)) => (Some(hash.to_string()), secret.to_string()),
        None => (None, token.to_string()),
    };
    let url: http::Uri = server
        .parse()
        .with_context(|| format!("server URL {server:?}"))?;
    // First fetch the CA without trusting anyone; it is accepted only if it matches the hash.
    let mut probe = kube::Config::new(url.clone());
    probe.accept_invalid_certs = true;
    let probe = Client::try_from(probe)?;
    let req = http::Request::get("/cacerts").body(Vec::new())?;
    let ca_pem = probe
        .request_text(req)
        .await
        .context("downloading the cluster CA from /cacerts")?;
    if let Some(want) = ca_hash {
        let got = sha256_hex(ca_pem.as_bytes());
        if got != want {
            bail!("the server's CA does not match the token (sha256 {got}, token says {want})");
        }
    }
    let der = pem_to_der(&ca_pem).context("parsing the cluster CA")?;
    let mut cfg = kube::Config::new(url);
    cfg.root_cert = Some(vec![der]);
    cfg.auth_info.token = Some(secret.into());
    // Named as upstream's kubelet, so its writes show under "kubelet" in managedFields.
    cfg.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_str(&user_agent("kubelet"))?,
    ));
    Ok((Client::try_from(cfg)?, ca_pem))
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
