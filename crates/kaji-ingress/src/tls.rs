//! HTTPS: certificates from the Ingresses' `spec.tls` (host -> `kubernetes.io/tls` Secret in the
//! Ingress's namespace), chosen by SNI; a self-signed default certificate for everything else
//! (as ingress-nginx's "Kubernetes Ingress Controller Fake Certificate").

use crate::events::{Problem, REASON_INVALID_SECRET, REASON_SECRET_NOT_FOUND};
use crate::routing::{normalize_host, oldest_first};
use crate::snapshot::SnapshotHandle;
use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

pub const SECRET_TYPE_TLS: &str = "kubernetes.io/tls";
pub const DEFAULT_CERT_CN: &str = "Kaji Ingress Default Certificate";

/// SNI host -> certificate, from every served Ingress's `spec.tls`.
#[derive(Clone, Debug, Default)]
pub struct CertTable {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the part after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl CertTable {
    /// Builds the table; the oldest Ingress wins a host claimed twice. Entries whose Secret is
    /// missing or invalid are reported (their hosts get the default certificate).
    pub fn build(ingresses: &[&Ingress], secrets: &[Arc<Secret>]) -> (Self, Vec<Problem>) {
        let by_name: HashMap<(&str, &str), &Secret> = secrets
            .iter()
            .filter_map(|s| {
                Some((
                    (
                        s.metadata.namespace.as_deref()?,
                        s.metadata.name.as_deref()?,
                    ),
                    &**s,
                ))
            })
            .collect();
        type Parsed = Result<Arc<CertifiedKey>, (&'static str, String)>;
        let mut parsed: HashMap<(String, String), Parsed> = HashMap::new();
        let mut table = CertTable::default();
        let mut problems = Vec::new();
        for ing in oldest_first(ingresses) {
            let ns = ing.metadata.namespace.as_deref().unwrap_or("default");
            let name = ing.metadata.name.as_deref().unwrap_or("");
            for tls in ing.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
                let Some(secret_name) = tls.secret_name.as_deref().filter(|s| !s.is_empty()) else {
                    continue;
                };
                let key = (ns.to_string(), secret_name.to_string());
                let cert = parsed
                    .entry(key)
                    .or_insert_with(|| match by_name.get(&(ns, secret_name)) {
                        None => Err((
                            REASON_SECRET_NOT_FOUND,
                            format!(
                                "Secret \"{ns}/{secret_name}\" not found; using the default certificate"
                            ),
                        )),
                        Some(s) => certified_key_from_secret(s).map(Arc::new).map_err(|e| {
                            (
                                REASON_INVALID_SECRET,
                                format!(
                                    "Secret \"{ns}/{secret_name}\" is not a valid TLS secret ({e:#}); using the default certificate"
                                ),
                            )
                        }),
                    })
                    .clone();
                let cert = match cert {
                    Ok(c) => c,
                    Err((reason, message)) => {
                        problems.push(Problem {
                            namespace: ns.to_string(),
                            ingress: name.to_string(),
                            reason,
                            message,
                        });
                        continue;
                    }
                };
                for host in tls.hosts.iter().flatten() {
                    let host = normalize_host(host);
                    if host.is_empty() {
                        continue;
                    }
                    let (map, key) = match host.strip_prefix("*.") {
                        Some(suffix) => (&mut table.wildcard, suffix.to_string()),
                        None => (&mut table.exact, host),
                    };
                    map.entry(key).or_insert_with(|| cert.clone());
                }
            }
        }
        (table, problems)
    }

    /// The certificate for an SNI name: an exact host first, then a `*.` wildcard one label up.
    pub fn lookup(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        let host = normalize_host(server_name);
        if let Some(c) = self.exact.get(&host) {
            return Some(c.clone());
        }
        let (label, suffix) = host.split_once('.')?;
        if label.is_empty() {
            return None;
        }
        self.wildcard.get(suffix).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }
}

/// Loads `tls.crt` / `tls.key` of a `kubernetes.io/tls` Secret.
pub fn certified_key_from_secret(secret: &Secret) -> anyhow::Result<CertifiedKey> {
    let ty = secret.type_.as_deref().unwrap_or("Opaque");
    if ty != SECRET_TYPE_TLS {
        bail!("type is {ty:?}, not {SECRET_TYPE_TLS:?}");
    }
    let data = secret.data.as_ref();
    let get = |k: &str| {
        data.and_then(|d| d.get(k))
            .map(|b| b.0.as_slice())
            .with_context(|| format!("no {k}"))
    };
    certified_key_from_pem(get("tls.crt")?, get("tls.key")?)
}

/// A certificate chain and its private key, both PEM; checks that they belong together.
pub fn certified_key_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<CertifiedKey> {
    let chain = rustls_pemfile::certs(&mut &*cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("reading tls.crt")?;
    if chain.is_empty() {
        bail!("tls.crt holds no certificate");
    }
    let key = rustls_pemfile::private_key(&mut &*key_pem)
        .context("reading tls.key")?
        .context("tls.key holds no private key")?;
    let signing_key =
        rustls::crypto::ring::sign::any_supported_type(&key).context("unsupported private key")?;
    let ck = CertifiedKey::new(chain, signing_key);
    ck.keys_match()
        .context("tls.key does not match the certificate in tls.crt")?;
    Ok(ck)
}

/// The self-signed certificate served when no Ingress's Secret fits, made fresh at start.
pub fn default_certificate() -> anyhow::Result<Arc<CertifiedKey>> {
    let mut params = rcgen::CertificateParams::new(vec!["ingress.local".to_string()])
        .context("default certificate parameters")?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, DEFAULT_CERT_CN);
    let key = rcgen::KeyPair::generate().context("generating the default certificate key")?;
    let cert = params
        .self_signed(&key)
        .context("signing the default certificate")?;
    certified_key_from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
        .map(Arc::new)
        .context("loading the default certificate")
}

/// rustls's hook: SNI -> the current snapshot's certificate, else the default one.
#[derive(Debug)]
pub struct CertResolver {
    snapshot: SnapshotHandle,
    default: Arc<CertifiedKey>,
}

impl CertResolver {
    pub fn new(snapshot: SnapshotHandle, default: Arc<CertifiedKey>) -> Self {
        Self { snapshot, default }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = client_hello
            .server_name()
            .and_then(|sni| self.snapshot.load().certs.lookup(sni));
        Some(chosen.unwrap_or_else(|| self.default.clone()))
    }
}

/// The HTTPS server configuration (HTTP/1.1 over TLS 1.2/1.3, ring).
pub fn server_config(resolver: Arc<CertResolver>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::routing::tests::ingress;
    use serde_json::json;

    /// A self-signed certificate for `names`: (cert PEM, key PEM).
    pub fn self_signed(names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names).expect("rcgen");
        (ck.cert.pem(), ck.signing_key.serialize_pem())
    }

    pub fn tls_secret(ns: &str, name: &str, cert: &str, key: &str) -> Arc<Secret> {
        let mut s = Secret::default();
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        s.type_ = Some(SECRET_TYPE_TLS.into());
        s.data = Some(
            [
                (
                    "tls.crt".to_string(),
                    k8s_openapi::ByteString(cert.as_bytes().to_vec()),
                ),
                (
                    "tls.key".to_string(),
                    k8s_openapi::ByteString(key.as_bytes().to_vec()),
                ),
            ]
            .into_iter()
            .collect(),
        );
        Arc::new(s)
    }

    fn leaf(ck: &CertifiedKey) -> Vec<u8> {
        ck.cert[0].to_vec()
    }

    #[test]
    fn chooses_by_sni_exact_then_wildcard() {
        let (c1, k1) = self_signed(&["a.example.com"]);
        let (c2, k2) = self_signed(&["*.example.com"]);
        let secrets = vec![
            tls_secret("ns", "a", &c1, &k1),
            tls_secret("ns", "wild", &c2, &k2),
        ];
        let ing = ingress(
            "ns",
            "i",
            "2024-01-01T00:00:00Z",
            json!({"tls": [
                {"hosts": ["a.example.com"], "secretName": "a"},
                {"hosts": ["*.example.com"], "secretName": "wild"},
            ]}),
        );
        let (t, problems) = CertTable::build(&[&ing], &secrets);
        assert!(problems.is_empty(), "{problems:?}");
        let a = t.lookup("A.example.com").expect("a");
        let w = t.lookup("b.example.com").expect("wild");
        assert_ne!(leaf(&a), leaf(&w));
        let expected = certified_key_from_pem(c1.as_bytes(), k1.as_bytes()).expect("pem");
        assert_eq!(leaf(&a), leaf(&expected));
        assert!(t.lookup("x.b.example.com").is_none());
        assert!(t.lookup("example.com").is_none());
        assert!(t.lookup("other.org").is_none());
    }

    #[test]
    fn missing_wrong_type_or_invalid_secret_is_a_problem() {
        let (c1, k1) = self_signed(&["a"]);
        let (_, k2) = self_signed(&["b"]);
        let mut opaque = (*tls_secret("ns", "opaque", &c1, &k1)).clone();
        opaque.type_ = Some("Opaque".into());
        let secrets = vec![
            Arc::new(opaque),
            tls_secret("ns", "mismatch", &c1, &k2),
            tls_secret("ns", "garbage", "not pem", "neither"),
            // Same name, other namespace: must not be used.
            tls_secret("other", "missing", &c1, &k1),
        ];
        let ing = ingress(
            "ns",
            "i",
            "2024-01-01T00:00:00Z",
            json!({"tls": [
                {"hosts": ["m"], "secretName": "missing"},
                {"hosts": ["o"], "secretName": "opaque"},
                {"hosts": ["x"], "secretName": "mismatch"},
                {"hosts": ["g"], "secretName": "garbage"},
            ]}),
        );
        let (t, problems) = CertTable::build(&[&ing], &secrets);
        assert!(t.is_empty());
        let msgs: Vec<_> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(msgs.len(), 4, "{msgs:?}");
        let reasons: Vec<_> = problems.iter().map(|p| p.reason).collect();
        assert_eq!(
            reasons,
            [
                REASON_SECRET_NOT_FOUND,
                REASON_INVALID_SECRET,
                REASON_INVALID_SECRET,
                REASON_INVALID_SECRET
            ]
        );
        assert!(msgs[0].contains("not found"));
        assert!(msgs[1].contains("Opaque"));
        assert!(msgs[2].contains("does not match"), "{}", msgs[2]);
        assert!(msgs[3].contains("no certificate"), "{}", msgs[3]);
    }

    #[test]
    fn oldest_ingress_keeps_a_contested_host() {
        let (c1, k1) = self_signed(&["h"]);
        let (c2, k2) = self_signed(&["h"]);
        let secrets = vec![
            tls_secret("a", "s", &c1, &k1),
            tls_secret("b", "s", &c2, &k2),
        ];
        let newer = ingress(
            "b",
            "i",
            "2024-02-01T00:00:00Z",
            json!({"tls": [{"hosts": ["h"], "secretName": "s"}]}),
        );
        let older = ingress(
            "a",
            "i",
            "2024-01-01T00:00:00Z",
            json!({"tls": [{"hosts": ["h"], "secretName": "s"}]}),
        );
        let (t, _) = CertTable::build(&[&newer, &older], &secrets);
        let expected = certified_key_from_pem(c1.as_bytes(), k1.as_bytes()).expect("pem");
        assert_eq!(leaf(&t.lookup("h").expect("h")), leaf(&expected));
    }

    #[test]
    fn default_certificate_is_self_signed_with_our_cn() {
        let ck = default_certificate().expect("default cert");
        assert!(ck.keys_match().is_ok());
        let der = leaf(&ck);
        let cn = DEFAULT_CERT_CN.as_bytes();
        assert!(der.windows(cn.len()).any(|w| w == cn));
    }
}
