//! k3s's `registries.yaml` turned into containerd's registry host configuration.
//!
//! The format is k3s's (<https://docs.k3s.io/installation/private-registry>):
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["http://127.0.0.1:5000"]
//! configs:
//!   "registry.example.com:5000":
//!     auth: { username: u, password: p }
//!     tls: { ca_file: /etc/ssl/ca.pem, insecure_skip_verify: false }
//! ```
//! Mirrors and TLS settings become `certs.d/<host>/hosts.toml` files (containerd's
//! `config_path`, <https://github.com/containerd/containerd/blob/main/docs/hosts.md>); the mirror
//! `"*"` becomes `certs.d/_default`. Credentials cannot live in hosts.toml with containerd 1.6, so
//! they go to the CRI plugin's `registry.configs."<host>".auth` section, as k3s does. This is
//! pure: text in, files (as strings) out.

use super::toml_str;
use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Debug, Default, Deserialize)]
pub struct Registries {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, RegistryConfig>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RegistryConfig {
    pub auth: Option<AuthConfig>,
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Default, Deserialize)]
pub struct AuthConfig {
    pub username: Option<String>,
    pub password: Option<String>,
    pub auth: Option<String>,
    pub identity_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct TlsConfig {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub ca_file: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

impl Registries {
    pub fn parse(yaml: &str) -> Result<Registries> {
        if yaml.trim().is_empty() {
            return Ok(Registries::default());
        }
        serde_yaml::from_str(yaml).context("parsing registries.yaml (k3s format: mirrors, configs)")
    }

    /// `(directory name under certs.d, hosts.toml text)` for every mirrored or configured host.
    pub fn hosts_files(&self) -> Vec<(String, String)> {
        let mut hosts: Vec<&String> = self.mirrors.keys().chain(self.configs.keys()).collect();
        hosts.sort();
        hosts.dedup();
        let mut files = Vec::new();
        for host in hosts {
            let mut text = String::new();
            let dir = if host == "*" {
                "_default".to_string()
            } else {
                host.clone()
            };
            if host != "*" {
                let _ = writeln!(text, "server = {}", toml_str(&default_server(host)));
            }
            let endpoints = self
                .mirrors
                .get(host)
                .map(|m| m.endpoint.as_slice())
                .unwrap_or_default();
            for endpoint in endpoints {
                let (url, override_path) = endpoint_url(endpoint);
                let _ = writeln!(text, "\n[host.{}]", toml_str(&url));
                let _ = writeln!(text, "  capabilities = [\"pull\", \"resolve\"]");
                if override_path {
                    let _ = writeln!(text, "  override_path = true");
                }
                // TLS settings are keyed by the endpoint's host:port in k3s's format.
                self.write_tls(&mut text, endpoint_host(&url));
            }
            if endpoints.is_empty() && host != "*" {
                // A config without a mirror: the registry itself, with its TLS settings.
                let _ = writeln!(text, "\n[host.{}]", toml_str(&default_server(host)));
                let _ = writeln!(text, "  capabilities = [\"pull\", \"resolve\", \"push\"]");
                self.write_tls(&mut text, host);
            }
            files.push((dir, text));
        }
        files
    }

    fn write_tls(&self, text: &mut String, host: &str) {
        let Some(tls) = self.configs.get(host).and_then(|c| c.tls.as_ref()) else {
            return;
        };
        if tls.insecure_skip_verify {
            let _ = writeln!(text, "  skip_verify = true");
        }
        if let Some(ca) = &tls.ca_file {
            let _ = writeln!(text, "  ca = {}", toml_str(ca));
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            let _ = writeln!(text, "  client = [[{}, {}]]", toml_str(cert), toml_str(key));
        }
    }

    /// The CRI plugin's `registry.configs` auth sections for `config.toml`.
    pub fn auth_toml(&self) -> String {
        let mut text = String::new();
        for (host, config) in &self.configs {
            let Some(auth) = &config.auth else { continue };
            let _ = writeln!(
                text,
                "\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.{}.auth]",
                toml_str(host)
            );
            for (key, value) in [
                ("username", &auth.username),
                ("password", &auth.password),
                ("auth", &auth.auth),
                ("identitytoken", &auth.identity_token),
            ] {
                if let Some(v) = value {
                    let _ = writeln!(text, "  {key} = {}", toml_str(v));
                }
            }
        }
        text
    }
}

/// The upstream server of a registry host (Docker Hub's real endpoint for `docker.io`).
fn default_server(host: &str) -> String {
    if host == "docker.io" {
        "https://registry-1.docker.io".to_string()
    } else {
        format!("https://{host}")
    }
}

/// An endpoint as a hosts.toml host URL. Endpoints without a scheme are HTTPS. containerd appends
/// `/v2` to a bare host; an endpoint with its own path gets `/v2` appended here and
/// `override_path`, as k3s does.
fn endpoint_url(endpoint: &str) -> (String, bool) {
    let url = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("https://{endpoint}")
    };
    let url = url.trim_end_matches('/').to_string();
    let after_scheme = url.split_once("://").map_or("", |(_, rest)| rest);
    match after_scheme.split_once('/') {
        None => (url, false),
        Some((_, "v2")) => (url, false),
        Some(_) => (format!("{url}/v2"), true),
    }
}

/// `host[:port]` of a URL.
fn endpoint_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_to_plain_http_registry() {
        let r = Registries::parse(
            "mirrors:\n  docker.io:\n    endpoint:\n      - \"http://127.0.0.1:5000\"\n",
        )
        .unwrap();
        let files = r.hosts_files();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, "docker.io");
        assert_eq!(
            files[0].1,
            "server = \"https://registry-1.docker.io\"\n\n[host.\"http://127.0.0.1:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        );
        assert_eq!(r.auth_toml(), "");
    }

    #[test]
    fn configs_tls_auth_paths_and_wildcard() {
        let yaml = r#"
mirrors:
  "*":
    endpoint: ["https://mirror.local/cache"]
  quay.io:
    endpoint: ["mirror.local:8443"]
configs:
  "mirror.local:8443":
    tls: { ca_file: /ca.pem, insecure_skip_verify: true }
    auth: { username: "u", password: "p\"w" }
  "private.example:5000":
    tls: { cert_file: /c.pem, key_file: /k.pem }
"#;
        let r = Registries::parse(yaml).unwrap();
        let files: BTreeMap<_, _> = r.hosts_files().into_iter().collect();
        let default = &files["_default"];
        assert!(
            default.contains("[host.\"https://mirror.local/cache/v2\"]\n"),
            "{default}"
        );
        assert!(default.contains("override_path = true"));
        assert!(!default.contains("server ="));
        let quay = &files["quay.io"];
        assert!(quay.contains("server = \"https://quay.io\""));
        assert!(quay.contains("[host.\"https://mirror.local:8443\"]"));
        assert!(
            quay.contains("skip_verify = true\n  ca = \"/ca.pem\""),
            "{quay}"
        );
        let private = &files["private.example:5000"];
        assert!(
            private.contains("client = [[\"/c.pem\", \"/k.pem\"]]"),
            "{private}"
        );
        assert!(files.contains_key("mirror.local:8443"));
        let auth = r.auth_toml();
        assert!(auth.contains("registry.configs.\"mirror.local:8443\".auth]"));
        assert!(auth.contains("password = \"p\\\"w\""), "{auth}");
    }

    #[test]
    fn empty_file_is_no_registries() {
        assert!(Registries::parse("").unwrap().hosts_files().is_empty());
        assert!(Registries::parse("mirrors: [").is_err());
    }
}
