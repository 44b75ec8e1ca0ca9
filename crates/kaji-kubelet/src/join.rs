//! Joining a cluster with a k3s-style token (`K10<sha256 of CA>::node:<secret>`): download the
//! CA from `/cacerts`, check it against the token's hash, then talk TLS with the secret as a
//! bearer token.

use anyhow::{Context, Result, bail};
use kube::Client;

/// A client for the API server at `server` (https://host:port) authenticated by `token`.
pub async fn client(server: &str, token: &str) -> Result<Client> {
    let token = token.trim();
    let (ca_hash, secret) = match token.strip_prefix("K10").and_then(|t| t.split_once("::")) {
        Some((hash, secret)) => (Some(hash.to_string()), secret.to_string()),
        None => (None, token.to_string()),
    };
    let url: http::Uri = server.parse().with_context(|| format!("server URL {server:?}"))?;
    // First fetch the CA without trusting anyone; it is accepted only if it matches the hash.
    let mut probe = kube::Config::new(url.clone());
    probe.accept_invalid_certs = true;
    let probe = Client::try_from(probe)?;
    let req = http::Request::get("/cacerts").body(Vec::new())?;
    let ca_pem = probe.request_text(req).await.context("downloading the cluster CA from /cacerts")?;
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
    Ok(Client::try_from(cfg)?)
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
