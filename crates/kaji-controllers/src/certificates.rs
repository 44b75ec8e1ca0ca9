//! The CSR signing controller, as upstream pkg/controller/certificates/signer: approved
//! CertificateSigningRequests for the built-in signers `kubernetes.io/kube-apiserver-client`,
//! `kubernetes.io/kube-apiserver-client-kubelet` and `kubernetes.io/kubelet-serving` are signed
//! with the cluster CA (`--cluster-signing-cert-file`/`--cluster-signing-key-file`) and the
//! certificate written through `/status`. The certificate lives `expirationSeconds` (at least 10
//! minutes, at most `--cluster-signing-duration`, one year, and never past the CA), backdated 5
//! minutes, with the key usages and extended key usages of `spec.usages`. A request the signer
//! refuses (usages or subject not allowed for it) gets `Failed` with reason
//! `SignerValidationFailure`, as upstream; denied, failed, pending and foreign requests are left alone.

use crate::Options;
use futures::future::BoxFuture;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kaji_runtime::controller;
use kaji_runtime::informer::Factory;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use rcgen::{
    CertificateSigningRequestParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const COMPONENT: &str = "csrsigning-controller";

pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
pub const KUBE_APISERVER_CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";

/// The signing CA and how long certificates live (upstream `--cluster-signing-*`).
#[derive(Clone, Debug)]
pub struct Signing {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// `--cluster-signing-duration` (8760h).
    pub duration: Duration,
}

struct Context {
    client: Client,
    signing: Signing,
}

pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let Some(signing) = opts.cluster_signing else {
        tracing::info!(
            "no --cluster-signing-cert-file/--cluster-signing-key-file: the CSR signer is off"
        );
        return Box::pin(futures::future::pending());
    };
    let informer = f.informer::<CertificateSigningRequest>();
    let ctx = Arc::new(Context {
        client: f.client(),
        signing,
    });
    controller::run(
        COMPONENT,
        f,
        controller::for_informer(&informer),
        reconcile,
        ctx,
    )
}

fn has_true(csr: &CertificateSigningRequest, t: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == t && c.status == "True"))
}

/// The request's subject and alternative names, as the signers check them.
#[derive(Debug, Default, PartialEq)]
pub struct Request {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: usize,
    pub ip_addresses: usize,
    pub emails: usize,
    pub uris: usize,
}

/// Parses a PEM CSR (signature checked) into what the signer checks and rcgen's params.
fn parse(pem: &[u8]) -> anyhow::Result<(Request, CertificateSigningRequestParams)> {
    use x509_parser::prelude::FromDer;
    let (_, block) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|e| anyhow::anyhow!("unable to parse csr: {e}"))?;
    anyhow::ensure!(
        block.label == "CERTIFICATE REQUEST",
        "PEM block type must be CERTIFICATE REQUEST"
    );
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .map_err(|e| anyhow::anyhow!("unable to parse csr: {e}"))?;
    let subject = &csr.certification_request_info.subject;
    let mut r = Request {
        common_name: subject
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .unwrap_or_default()
            .to_string(),
        organizations: subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect(),
        ..Request::default()
    };
    let params = CertificateSigningRequestParams::from_der(&block.contents.as_slice().into())?;
    for san in &params.params.subject_alt_names {
        match san {
            SanType::DnsName(_) => r.dns_names += 1,
            SanType::IpAddress(_) => r.ip_addresses += 1,
            SanType::Rfc822Name(_) => r.emails += 1,
            SanType::URI(_) => r.uris += 1,
            _ => {}
        }
    }
    Ok((r, params))
}

fn same_set(usages: &[String], want: &[&str]) -> bool {
    let mut a: Vec<&str> = usages.iter().map(String::as_str).collect();
    a.sort_unstable();
    a.dedup();
    let mut b = want.to_vec();
    b.sort_unstable();
    a == b
}

/// Upstream's isRequestForSignerFn checks: Err is the Failed condition's message.
pub fn check(signer: &str, req: &Request, usages: &[String]) -> Result<(), String> {
    match signer {
        KUBE_APISERVER_CLIENT => {
            let mut client_auth = false;
            for u in usages {
                match u.as_str() {
                    "digital signature" | "key encipherment" => {}
                    "client auth" => client_auth = true,
                    other => return Err(format!("invalid usage for client certificate: {other}")),
                }
            }
            if !client_auth {
                return Err("missing required usage for client certificate: client auth".into());
            }
            Ok(())
        }
        KUBE_APISERVER_CLIENT_KUBELET => {
            if req.organizations != ["system:nodes"] {
                return Err("subject organization is not system:nodes".into());
            }
            if req.dns_names > 0 {
                return Err("DNS subjectAltNames are not allowed".into());
            }
            if req.emails > 0 {
                return Err("Email subjectAltNames are not allowed".into());
            }
            if req.ip_addresses > 0 {
                return Err("IP subjectAltNames are not allowed".into());
            }
            if req.uris > 0 {
                return Err("URI subjectAltNames are not allowed".into());
            }
            if !req.common_name.starts_with("system:node:") {
                return Err("subject common name does not begin with system:node:".into());
            }
            if !same_set(
                usages,
                &["digital signature", "key encipherment", "client auth"],
            ) && !same_set(usages, &["digital signature", "client auth"])
            {
                return Err(
                    "usages did not match [client auth digital signature key encipherment]".into(),
                );
            }
            Ok(())
        }
        KUBELET_SERVING => {
            if req.organizations != ["system:nodes"] {
                return Err("subject organization is not system:nodes".into());
            }
            if req.dns_names == 0 && req.ip_addresses == 0 {
                return Err("DNS or IP subjectAltName is required".into());
            }
            if req.emails > 0 {
                return Err("Email subjectAltNames are not allowed".into());
            }
            if req.uris > 0 {
                return Err("URI subjectAltNames are not allowed".into());
            }
            if !same_set(
                usages,
                &["digital signature", "key encipherment", "server auth"],
            ) && !same_set(usages, &["digital signature", "server auth"])
            {
                return Err(
                    "usages did not match [digital signature key encipherment server auth]".into(),
                );
            }
            if !req.common_name.starts_with("system:node:") {
                return Err("subject common name does not begin with system:node:".into());
            }
            Ok(())
        }
        _ => Err(String::new()),
    }
}

/// Upstream signer.duration: expirationSeconds between 10 minutes and the signing duration.
pub fn duration(expiration_seconds: Option<i32>, max: Duration) -> Duration {
    match expiration_seconds {
        None => max,
        Some(s) => Duration::from_secs(u64::try_from(s).unwrap_or(0))
            .clamp(Duration::from_secs(600), max.max(Duration::from_secs(600))),
    }
}

/// Signs the request with the CA: subject and SANs from the request, usages from the spec.
fn sign(
    signing: &Signing,
    mut params: CertificateSigningRequestParams,
    usages: &[String],
    ttl: Duration,
) -> anyhow::Result<String> {
    let ca_pem = std::fs::read_to_string(&signing.cert_file)?;
    let key = KeyPair::from_pem(&std::fs::read_to_string(&signing.key_file)?)?;
    let (_, ca_block) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("parsing the CA: {e}"))?;
    let ca_not_after = ca_block
        .parse_x509()
        .map_err(|e| anyhow::anyhow!("parsing the CA: {e}"))?
        .validity()
        .not_after
        .timestamp();
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, key)?;
    let now = time::OffsetDateTime::now_utc();
    anyhow::ensure!(
        now.unix_timestamp() < ca_not_after,
        "the signer has expired: NotAfter={ca_not_after}"
    );
    let p = &mut params.params;
    p.is_ca = IsCa::ExplicitNoCa;
    p.not_before = now - time::Duration::minutes(5);
    let ttl = time::Duration::try_from(ttl).unwrap_or(time::Duration::days(365));
    let ca_end = time::OffsetDateTime::from_unix_timestamp(ca_not_after)?;
    p.not_after = (now + ttl).min(ca_end);
    p.serial_number = Some(SerialNumber::from_slice(
        &rand::random::<[u8; 16]>().map(|b| b & 0x7f),
    ));
    p.key_usages.clear();
    p.extended_key_usages.clear();
    for u in usages {
        match u.as_str() {
            "signing" | "digital signature" => p.key_usages.push(KeyUsagePurpose::DigitalSignature),
            "content commitment" => p.key_usages.push(KeyUsagePurpose::ContentCommitment),
            "key encipherment" => p.key_usages.push(KeyUsagePurpose::KeyEncipherment),
            "key agreement" => p.key_usages.push(KeyUsagePurpose::KeyAgreement),
            "data encipherment" => p.key_usages.push(KeyUsagePurpose::DataEncipherment),
            "cert sign" => p.key_usages.push(KeyUsagePurpose::KeyCertSign),
            "crl sign" => p.key_usages.push(KeyUsagePurpose::CrlSign),
            "encipher only" => p.key_usages.push(KeyUsagePurpose::EncipherOnly),
            "decipher only" => p.key_usages.push(KeyUsagePurpose::DecipherOnly),
            "any" => p.extended_key_usages.push(ExtendedKeyUsagePurpose::Any),
            "server auth" => p
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth),
            "client auth" => p
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth),
            "code signing" => p
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::CodeSigning),
            "email protection" | "s/mime" => p
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::EmailProtection),
            "timestamping" => p
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::TimeStamping),
            "ocsp signing" => p
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::OcspSigning),
            _ => {}
        }
    }
    Ok(params.signed_by(&issuer)?.pem())
}

async fn reconcile(
    csr: Arc<CertificateSigningRequest>,
    ctx: Arc<Context>,
) -> Result<Action, controller::Error> {
    let key = ObjectRef::from_obj(csr.as_ref());
    let spec = &csr.spec;
    if !matches!(
        spec.signer_name.as_str(),
        KUBE_APISERVER_CLIENT | KUBE_APISERVER_CLIENT_KUBELET | KUBELET_SERVING
    ) {
        return Ok(Action::await_change());
    }
    let issued = csr
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    if !has_true(&csr, "Approved") || has_true(&csr, "Denied") || has_true(&csr, "Failed") || issued
    {
        return Ok(Action::await_change());
    }
    let usages = spec.usages.clone().unwrap_or_default();
    let (req, params) = parse(&spec.request.0)
        .map_err(|e| anyhow::anyhow!("unable to parse csr {:?}: {e:#}", csr.name_any()))?;
    let mut updated = (*csr).clone();
    let status = updated.status.get_or_insert_with(Default::default);
    match check(&spec.signer_name, &req, &usages) {
        Err(message) => {
            tracing::info!(csr = %key, %message, "refusing to sign");
            status.conditions.get_or_insert_with(Vec::new).push(
                CertificateSigningRequestCondition {
                    type_: "Failed".into(),
                    status: "True".into(),
                    reason: Some("SignerValidationFailure".into()),
                    message: Some(message),
                    last_update_time: Some(Time(jiff::Timestamp::now())),
                    ..Default::default()
                },
            );
        }
        Ok(()) => {
            let ttl = duration(spec.expiration_seconds, ctx.signing.duration);
            let pem = sign(&ctx.signing, params, &usages, ttl)
                .map_err(|e| anyhow::anyhow!("error auto signing csr: {e:#}"))?;
            status.certificate = Some(k8s_openapi::ByteString(pem.into_bytes()));
            tracing::info!(csr = %key, signer = %spec.signer_name, "signed");
        }
    }
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    match api
        .replace_status(&csr.name_any(), &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(Action::await_change()),
        Err(e) => Err(anyhow::Error::from(e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usages(u: &[&str]) -> Vec<String> {
        u.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn client_signer_requires_client_auth() {
        let r = Request::default();
        assert_eq!(
            check(
                KUBE_APISERVER_CLIENT,
                &r,
                &usages(&["client auth", "digital signature"])
            ),
            Ok(())
        );
        assert_eq!(
            check(KUBE_APISERVER_CLIENT, &r, &usages(&["digital signature"])).unwrap_err(),
            "missing required usage for client certificate: client auth"
        );
        assert_eq!(
            check(
                KUBE_APISERVER_CLIENT,
                &r,
                &usages(&["client auth", "server auth"])
            )
            .unwrap_err(),
            "invalid usage for client certificate: server auth"
        );
    }

    #[test]
    fn kubelet_client_signer_requires_a_node_subject() {
        let node = Request {
            common_name: "system:node:n1".into(),
            organizations: vec!["system:nodes".into()],
            ..Request::default()
        };
        let u = usages(&["digital signature", "client auth"]);
        assert_eq!(check(KUBE_APISERVER_CLIENT_KUBELET, &node, &u), Ok(()));
        let other = Request {
            common_name: "alice".into(),
            organizations: vec!["system:nodes".into()],
            ..Request::default()
        };
        assert_eq!(
            check(KUBE_APISERVER_CLIENT_KUBELET, &other, &u).unwrap_err(),
            "subject common name does not begin with system:node:"
        );
        let no_org = Request {
            common_name: "system:node:n1".into(),
            ..Request::default()
        };
        assert_eq!(
            check(KUBE_APISERVER_CLIENT_KUBELET, &no_org, &u).unwrap_err(),
            "subject organization is not system:nodes"
        );
        assert!(
            check(
                KUBE_APISERVER_CLIENT_KUBELET,
                &node,
                &usages(&["client auth"])
            )
            .is_err()
        );
    }

    #[test]
    fn duration_is_clamped() {
        let year = Duration::from_secs(8760 * 3600);
        assert_eq!(duration(None, year), year);
        assert_eq!(duration(Some(60), year), Duration::from_secs(600));
        assert_eq!(duration(Some(3600), year), Duration::from_secs(3600));
        assert_eq!(duration(Some(i32::MAX), year), year);
    }
}
