//! The cluster's certificates, made on first start like k3s does: a CA, the API server's serving
//! certificate, an admin client certificate (O=system:masters), the API server's client
//! certificate for kubelets (`kube-apiserver-kubelet-client`), and the admin kubeconfig.
//! Everything lives under `<data-dir>/server/tls`; later starts reuse what is there. Kubelets get
//! serving certificates signed by the same CA (`issue_kubelet_serving`), so that the API server
//! can verify them and they can verify the API server's client certificate.

use anyhow::{Context, Result};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType, date_time_ymd,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// PEM files of the cluster's PKI.
#[derive(Clone, Debug)]
pub struct Pki {
    pub dir: PathBuf,
    pub ca_cert_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    /// The API server's client certificate towards kubelets (O=system:masters).
    pub kubelet_client_cert_pem: String,
    pub kubelet_client_key_pem: String,
    ca_key_pem: String,
    /// The join token (k3s format `K10<sha256 of the CA>::node:<secret>`), in `<data-dir>/token`.
    pub token: String,
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
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
    f.sync_all()?;
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn params(cn: &str, org: Option<&str>) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.not_before = date_time_ymd(2025, 1, 1);
    p.not_after = date_time_ymd(2125, 1, 1);
    p
}

/// The addresses of this host (from the kernel's local routing table), for the serving SANs.
pub fn host_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
        let mut last: Option<IpAddr> = None;
        for line in trie.lines() {
            let t = line.trim_start_matches([' ', '|', '-', '+']).trim();
            if let Ok(ip) = t.parse::<IpAddr>() {
                last = Some(ip);
            } else if t.contains("host LOCAL")
                && let Some(ip) = last
                && !out.contains(&ip)
            {
                out.push(ip);
            }
        }
    }
    out
}

/// The address the API server advertises to pods (the `kubernetes` Service's endpoint), as
/// kube-apiserver's default `--advertise-address`: the source address of the default route, which
/// a UDP `connect` reveals without sending anything; else the first non-loopback IPv4 address.
/// Not simply the first local address: that may be a CNI bridge of another cluster on the same
/// machine (tests run several), which goes away with it.
pub fn advertise_ip() -> IpAddr {
    let by_route = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified() && !ip.is_loopback());
    by_route
        .or_else(|| host_addresses().into_iter().find(|ip| ip.is_ipv4() && !ip.is_loopback()))
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "localhost".into())
}

impl Pki {
    /// Loads the PKI under `<data_dir>/server/tls`, creating whatever is missing.
    pub fn load_or_create(data_dir: &Path, kubernetes_service_ip: std::net::Ipv4Addr) -> Result<Pki> {
        let dir = data_dir.join("server").join("tls");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca_key_path = dir.join("ca.key");
        let ca_cert_path = dir.join("ca.crt");
        if !ca_key_path.exists() || !ca_cert_path.exists() {
            let key = KeyPair::generate()?;
            let mut p = params("kaji-ca", None);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
            let cert = p.self_signed(&key)?;
            write_private(&ca_key_path, &key.serialize_pem())?;
            write_private(&ca_cert_path, &cert.pem())?;
        }
        let ca_key = KeyPair::from_pem(&read(&ca_key_path)?)?;
        let ca_cert_pem = read(&ca_cert_path)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key).context("parsing the cluster CA")?;

        let serving = dir.join("serving");
        if !serving.with_extension("crt").exists() || !serving.with_extension("key").exists() {
            let key = KeyPair::generate()?;
            let mut p = params("kube-apiserver", None);
            let mut sans: Vec<SanType> = Vec::new();
            for name in [
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ] {
                sans.push(SanType::DnsName(name.try_into()?));
            }
            if let Ok(h) = hostname().as_str().try_into() {
                sans.push(SanType::DnsName(h));
            }
            let mut ips: Vec<IpAddr> = vec!["127.0.0.1".parse()?, IpAddr::V4(kubernetes_service_ip)];
            for ip in host_addresses() {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
            sans.extend(ips.into_iter().map(SanType::IpAddress));
            p.subject_alt_names = sans;
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let cert = p.signed_by(&key, &issuer)?;
            write_private(&serving.with_extension("key"), &key.serialize_pem())?;
            write_private(&serving.with_extension("crt"), &cert.pem())?;
        }

        let admin = dir.join("client-admin");
        if !admin.with_extension("crt").exists() || !admin.with_extension("key").exists() {
            let key = KeyPair::generate()?;
            let mut p = params("system:admin", Some("system:masters"));
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let cert = p.signed_by(&key, &issuer)?;
            write_private(&admin.with_extension("key"), &key.serialize_pem())?;
            write_private(&admin.with_extension("crt"), &cert.pem())?;
        }

        let kubelet_client = dir.join("client-kube-apiserver-kubelet");
        if !kubelet_client.with_extension("crt").exists() || !kubelet_client.with_extension("key").exists() {
            let key = KeyPair::generate()?;
            let mut p = params("kube-apiserver-kubelet-client", Some("system:masters"));
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let cert = p.signed_by(&key, &issuer)?;
            write_private(&kubelet_client.with_extension("key"), &key.serialize_pem())?;
            write_private(&kubelet_client.with_extension("crt"), &cert.pem())?;
        }

        let token_path = data_dir.join("token");
        if !token_path.exists() {
            let secret: String = (0..32).map(|_| format!("{:x}", rand::random::<u8>() & 0xf)).collect();
            write_private(&token_path, &format!("K10{}::node:{secret}\n", ca_hash(&ca_cert_pem)))?;
        }
        let token = read(&token_path)?.trim().to_string();
        Ok(Pki {
            token,
            ca_cert_pem,
            serving_cert_pem: read(&serving.with_extension("crt"))?,
            serving_key_pem: read(&serving.with_extension("key"))?,
            admin_cert_pem: read(&admin.with_extension("crt"))?,
            admin_key_pem: read(&admin.with_extension("key"))?,
            kubelet_client_cert_pem: read(&kubelet_client.with_extension("crt"))?,
            kubelet_client_key_pem: read(&kubelet_client.with_extension("key"))?,
            ca_key_pem: read(&ca_key_path)?,
            dir,
        })
    }

    /// A serving certificate and key (PEM) for a node's kubelet, for its names and addresses
    /// (CN `system:node:<node>`, O `system:nodes`, as upstream's kubelet serving certificates).
    pub fn issue_kubelet_serving(&self, node: &str, names: &[String]) -> Result<(String, String)> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, ca_key).context("parsing the cluster CA")?;
        let key = KeyPair::generate()?;
        let mut p = params(&format!("system:node:{node}"), Some("system:nodes"));
        let mut sans = Vec::new();
        for n in names.iter().map(String::as_str).chain([node]) {
            let san = match n.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(n.try_into().with_context(|| format!("{n:?} is not a DNS name"))?),
            };
            if !sans.contains(&san) {
                sans.push(san);
            }
        }
        p.subject_alt_names = sans;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = p.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A client certificate and key (PEM) from the cluster CA for user `cn` in groups `orgs`
    /// (what k3s keeps as `client-*.crt`, and `/v1-kaji/client-kubelet.crt` hands to agents).
    pub fn issue_client(&self, cn: &str, orgs: &[&str]) -> Result<(String, String)> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, ca_key).context("parsing the cluster CA")?;
        let key = KeyPair::generate()?;
        let mut p = params(cn, None);
        let mut dn = DistinguishedName::new();
        for o in orgs {
            dn.push(DnType::OrganizationName, *o);
        }
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A spoke's kubeconfig: its client certificate under `<dir>/client-<name>.crt|key` (made
    /// once, kept) for user `cn` in `orgs`, written with the CA and `server` to `kubeconfig`.
    pub fn write_client_kubeconfig(&self, name: &str, cn: &str, orgs: &[&str], server: &str, kubeconfig: &Path) -> Result<()> {
        let base = self.dir.join(format!("client-{name}"));
        let (crt, key) = (base.with_extension("crt"), base.with_extension("key"));
        let wanted = format!("{cn}/{}", orgs.join(","));
        let subject = base.with_extension("subject");
        let current = std::fs::read_to_string(&subject).unwrap_or_default();
        if !crt.exists() || !key.exists() || current != wanted {
            let (c, k) = self.issue_client(cn, orgs)?;
            write_private(&key, &k)?;
            write_private(&crt, &c)?;
            write_private(&subject, &wanted)?;
        }
        if let Some(parent) = kubeconfig.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        write_private(kubeconfig, &kubeconfig_for(server, &self.ca_cert_pem, &read(&crt)?, &read(&key)?))
    }

    /// An admin kubeconfig for `server` (e.g. `https://127.0.0.1:6443`), with the certificates embedded.
    pub fn admin_kubeconfig(&self, server: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: default\ncontexts:\n- context:\n    cluster: default\n    user: default\n  name: default\ncurrent-context: default\npreferences: {{}}\nusers:\n- name: default\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
            ca = b64(&self.ca_cert_pem),
            cert = b64(&self.admin_cert_pem),
            key = b64(&self.admin_key_pem),
        )
    }

    /// Writes the admin kubeconfig to `path` (mode 0600).
    pub fn write_admin_kubeconfig(&self, path: &Path, server: &str) -> Result<()> {
        write_private(path, &self.admin_kubeconfig(server))
    }
}

/// A kubeconfig for `server` with the CA and a client certificate embedded.
pub fn kubeconfig_for(server: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: default\ncontexts:\n- context:\n    cluster: default\n    user: default\n  name: default\ncurrent-context: default\npreferences: {{}}\nusers:\n- name: default\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
        ca = b64(ca_pem),
        cert = b64(cert_pem),
        key = b64(key_pem),
    )
}

/// Hex sha256 of the CA certificate PEM, as k3s puts it in join tokens so an agent can check the
/// CA it downloads from `/cacerts` before trusting it.
pub fn ca_hash(ca_pem: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, ca_pem.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Pki {
    /// The secret part of the join token (`node:<secret>`), which agents send as a bearer token.
    pub fn token_secret(&self) -> &str {
        self.token.split_once("::").map_or(self.token.as_str(), |(_, s)| s)
    }
}

/// Where the server token lives (k3s's `server/token`).
pub fn server_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("token")
}

/// The password of a token as k3s reads it: `K10<hash>::server:<password>`, `K10<hash>::<password>`
/// or the bare password.
pub fn token_password(token: &str) -> &str {
    let token = token.trim();
    let rest = token.strip_prefix("K10").and_then(|t| t.split_once("::")).map_or(token, |(_, s)| s);
    rest.strip_prefix("server:").unwrap_or(rest)
}

/// The server token (k3s's `<data-dir>/server/token`, `K10<sha256 of the CA>::server:<password>`),
/// which further servers join with. Made once, from `given` (`--token`: a full token or the
/// bare password) or at random; a later `given` must carry the same password. The agent token
/// (`<data-dir>/token`, `::node:`) is separate and unchanged.
pub fn load_or_create_server_token(data_dir: &Path, ca_cert_pem: &str, given: Option<&str>) -> Result<String> {
    let path = server_token_path(data_dir);
    if path.exists() {
        let token = read(&path)?.trim().to_string();
        if let Some(given) = given
            && token_password(given) != token_password(&token)
        {
            anyhow::bail!("--token does not match the server token in {} (the cluster's token cannot be changed here)", path.display());
        }
        return Ok(token);
    }
    let password = match given.map(token_password) {
        Some(p) if !p.is_empty() => p.to_string(),
        Some(_) => anyhow::bail!("--token is empty"),
        None => (0..32).map(|_| format!("{:x}", rand::random::<u8>() & 0xf)).collect(),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let token = format!("K10{}::server:{password}", ca_hash(ca_cert_pem));
    write_private(&path, &format!("{token}\n"))?;
    Ok(token)
}

/// Writes a private file (mode 0600), for material a joining server receives.
pub fn write_private_file(path: &Path, contents: &str) -> Result<()> {
    write_private(path, contents)
}

#[cfg(test)]
mod token_tests {
    use super::token_password;

    #[test]
    fn passwords_of_every_token_spelling() {
        assert_eq!(token_password("K10abc::server:s3cret\n"), "s3cret");
        assert_eq!(token_password("K10abc::s3cret"), "s3cret");
        assert_eq!(token_password("s3cret"), "s3cret");
        assert_eq!(token_password("server:s3cret"), "s3cret");
    }
}
