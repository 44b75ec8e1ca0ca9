//! Client certificates for people (`kaji kubeconfig --user NAME --group G`): CN is the user, each
//! O a group, as upstream's x509 authenticator reads them, signed by the cluster CA.
//!
//! rcgen keeps one value per attribute type in a subject, and a user may have several groups
//! (several O attributes), so the certificate is made by rcgen with a plain subject, then its
//! subject is replaced by one with every O (in Go's pkix order: O before CN) and the
//! to-be-signed part is signed again with the CA key.

use anyhow::{Context, Result, bail};
use base64::Engine;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose, SigningKey,
};
use std::time::SystemTime;

/// One DER element: tag, content and the whole element's length.
fn element(d: &[u8]) -> Result<(u8, &[u8], usize)> {
    let (&tag, rest) = d.split_first().context("DER: empty")?;
    let (&first, rest) = rest.split_first().context("DER: no length")?;
    let (len, head) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            bail!("DER: bad length");
        }
        let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        (len, 2 + n)
    };
    let content = d.get(head..head + len).context("DER: truncated")?;
    Ok((tag, content, head + len))
}

fn children(mut d: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !d.is_empty() {
        let (_, _, n) = element(d)?;
        out.push(&d[..n]);
        d = &d[n..];
    }
    Ok(out)
}

fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const BIT_STRING: u8 = 0x03;
const OID_CN: [u8; 3] = [0x55, 0x04, 0x03];
const OID_O: [u8; 3] = [0x55, 0x04, 0x0a];

/// The subject Name: one RDN per O, then CN.
fn subject(cn: &str, groups: &[String]) -> Vec<u8> {
    let rdn = |oid: &[u8], v: &str| {
        let mut atv = encode(OID, oid);
        atv.extend(encode(UTF8_STRING, v.as_bytes()));
        encode(SET, &encode(SEQUENCE, &atv))
    };
    let mut name = Vec::new();
    for g in groups {
        name.extend(rdn(&OID_O, g));
    }
    name.extend(rdn(&OID_CN, cn));
    encode(SEQUENCE, &name)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A client certificate and its key (PEM) for user `cn` in `groups`, valid until `not_after`.
pub fn issue(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    cn: &str,
    groups: &[String],
    not_after: SystemTime,
) -> Result<(String, String)> {
    if cn.is_empty() {
        bail!("the user name must not be empty");
    }
    let ca_key = KeyPair::from_pem(ca_key_pem).context("parsing the CA key")?;
    let issuer =
        Issuer::from_ca_cert_pem(ca_cert_pem, &ca_key).context("parsing the cluster CA")?;
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    // A little slack for clocks that are behind, as upstream's certificate helpers allow.
    p.not_before = (SystemTime::now() - std::time::Duration::from_secs(300)).into();
    p.not_after = not_after.into();
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p.signed_by(&key, &issuer)?;

    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    let (_, outer, _) = element(cert.der())?;
    let parts = children(outer)?;
    let [tbs, algorithm, _signature] = parts.as_slice() else {
        bail!("unexpected certificate structure");
    };
    // TBSCertificate: [0] version, serial, signature, issuer, validity, subject, spki, ...
    let (_, tbs_content, _) = element(tbs)?;
    let mut fields = children(tbs_content)?;
    if fields.len() < 7 {
        bail!("unexpected TBSCertificate structure");
    }
    let new_subject = subject(cn, groups);
    fields[5] = &new_subject;
    let tbs = encode(SEQUENCE, &fields.concat());
    let signature = ca_key.sign(&tbs)?;
    let mut bits = vec![0u8];
    bits.extend(signature);
    let mut body = tbs;
    body.extend_from_slice(algorithm);
    body.extend(encode(BIT_STRING, &bits));
    let der = encode(SEQUENCE, &body);
    Ok((pem("CERTIFICATE", &der), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_groups_verify_against_the_ca() {
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kaji-ca");
        p.distinguished_name = dn;
        let ca = p.self_signed(&ca_key).unwrap();
        let groups = vec![
            "dev".to_string(),
            "ops".to_string(),
            "a longer group name".repeat(10),
        ];
        let (cert, _key) = issue(
            &ca.pem(),
            &ca_key.serialize_pem(),
            "alice",
            &groups,
            SystemTime::now() + std::time::Duration::from_secs(3600),
        )
        .unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap();
        let user = crate::auth::authn::user_from_cert(&block.contents).unwrap();
        assert_eq!(user.name, "alice");
        assert_eq!(user.groups, groups);
        let parsed = block.parse_x509().unwrap();
        let ca_der = ca.der().to_vec();
        let (_, ca_parsed) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        parsed
            .verify_signature(Some(ca_parsed.public_key()))
            .expect("signed by the CA");
    }
}
