//! certificates.k8s.io/v1 CertificateSigningRequests (upstream pkg/registry/certificates and
//! pkg/apis/certificates/validation): the requestor (`spec.username`, `groups`, `uid`, `extra`)
//! is the authenticated user, never what the client sent; the spec and status never change
//! through the main resource; `/approval` changes only the conditions (Approved, Denied) and
//! `/status` everything in the status but those (the signer's certificate, Failed). Validation
//! refuses a request that is not a PEM CERTIFICATE REQUEST with a valid signature, a malformed
//! signerName, missing, unknown or duplicate usages and an expirationSeconds under 600.
//!
//! The strategy learns who is asking and which subresource is written from two task-locals the
//! request handler sets ([`with_user`], [`approval`]).

use super::{Strategy, info};
use crate::server::User;
use base64::Engine;
use kaji_api::{FieldError, ResourceInfo};
use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;

pub static INFO: ResourceInfo = info(
    "certificates.k8s.io",
    "v1",
    "CertificateSigningRequest",
    "certificatesigningrequests",
    "certificatesigningrequest",
    false,
    &["csr"],
    &["approval", "status"],
);

tokio::task_local! {
    static USER: Option<User>;
    static APPROVAL: bool;
}

/// Runs a request's handling knowing its authenticated user (for `spec.username`).
pub async fn with_user<F: Future>(user: Option<User>, f: F) -> F::Output {
    USER.scope(user, f).await
}

/// Calls `f` with the user of the request being handled (None outside a request).
pub fn current_user<R>(f: impl FnOnce(Option<&User>) -> R) -> R {
    let mut f = Some(f);
    match USER.try_with(|u| f.take().map(|f| f(u.as_ref()))) {
        Ok(Some(r)) => r,
        _ => f.take().map(|f| f(None)).expect("called once"),
    }
}

/// Runs a write as the `approval` subresource (the status strategy otherwise).
pub async fn approval<F: Future>(f: F) -> F::Output {
    APPROVAL.scope(true, f).await
}

fn in_approval() -> bool {
    APPROVAL.try_with(|a| *a).unwrap_or(false)
}

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    all.push(Arc::new(CsrStrategy));
}

struct CsrStrategy;

/// Upstream's allValidUsages.
const USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

/// Decodes a `[]byte` field (base64 in JSON).
fn bytes_at(obj: &Value, ptr: &str) -> Vec<u8> {
    obj.pointer(ptr)
        .and_then(Value::as_str)
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .unwrap_or_default()
}

/// Upstream certificates.ParseCSR plus CheckSignature.
pub fn parse_request(pem_bytes: &[u8]) -> Result<(), String> {
    let block = x509_parser::pem::parse_x509_pem(pem_bytes)
        .ok()
        .map(|(_, p)| p);
    let Some(block) = block.filter(|b| b.label == "CERTIFICATE REQUEST") else {
        return Err("PEM block type must be CERTIFICATE REQUEST".into());
    };
    use x509_parser::prelude::FromDer;
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .map_err(|e| format!("x509: malformed certificate request: {e}"))?;
    csr.verify_signature()
        .map_err(|_| "x509: ECDSA verification failure".to_string())
}

/// Upstream validateCertificate: empty, or only CERTIFICATE blocks that parse.
fn validate_certificate(pem_bytes: &[u8]) -> Result<(), String> {
    if pem_bytes.is_empty() {
        return Ok(());
    }
    let mut blocks = 0;
    for pem in x509_parser::pem::Pem::iter_from_buffer(pem_bytes) {
        let Ok(pem) = pem else { break };
        if pem.label != "CERTIFICATE" {
            return Err(format!(
                "only CERTIFICATE PEM blocks are allowed, found {:?}",
                pem.label
            ));
        }
        blocks += 1;
        pem.parse_x509()
            .map_err(|e| format!("x509: malformed certificate: {e}"))?;
    }
    if blocks == 0 {
        return Err("must contain at least one CERTIFICATE PEM block".into());
    }
    Ok(())
}

/// Upstream ValidateSignerName.
pub fn validate_signer_name(field: &str, name: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if name.is_empty() {
        errs.push(FieldError::required(field, ""));
        return errs;
    }
    let segments: Vec<&str> = name.split('/').collect();
    if segments.len() != 2 {
        errs.push(FieldError::invalid(
            field,
            &json!(name),
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
        return errs;
    }
    let (domain, path) = (segments[0], segments[1]);
    if domain.len() > 253 {
        errs.push(FieldError::too_long(field, 253));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    for l in &labels {
        let bad = kaji_api::validation::dns1123_label(l);
        if !bad.is_empty() {
            for m in bad {
                errs.push(FieldError::invalid(
                    field,
                    &json!(domain),
                    &format!("validating label {l:?}: {m}"),
                ));
            }
            break;
        }
    }
    if labels.len() < 2 {
        errs.push(FieldError::invalid(
            field,
            &json!(domain),
            "should be a domain with at least two segments separated by dots",
        ));
    }
    if path.len() > 253 {
        errs.push(FieldError::too_long(field, 253));
    }
    for m in kaji_api::validation::dns1123_subdomain(path) {
        errs.push(FieldError::invalid(field, &json!(path), &m));
    }
    errs
}

fn conditions(obj: &Value) -> Vec<Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn of_type(obj: &Value, t: &str) -> Vec<Value> {
    conditions(obj)
        .into_iter()
        .filter(|c| c.get("type").and_then(Value::as_str) == Some(t))
        .collect()
}

/// Upstream validateConditions (new objects: no legacy tolerance).
fn validate_conditions(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let old_conds = old.map(conditions).unwrap_or_default();
    let old_has = |t: &str| {
        old_conds
            .iter()
            .any(|c| c.get("type").and_then(Value::as_str) == Some(t))
    };
    let allow_both = old_has("Approved") && old_has("Denied");
    let mut seen = std::collections::HashSet::new();
    let (mut approved, mut denied) = (false, false);
    for (i, c) in conditions(obj).iter().enumerate() {
        let t = c.get("type").and_then(Value::as_str).unwrap_or_default();
        let s = c.get("status").and_then(Value::as_str).unwrap_or_default();
        let at = format!("status.conditions[{i}]");
        if t.is_empty() {
            errs.push(FieldError::required(format!("{at}.type"), ""));
        }
        let allowed: &[&str] = if matches!(t, "Approved" | "Denied" | "Failed") {
            &["True"]
        } else {
            &["False", "True", "Unknown"]
        };
        if s.is_empty() {
            errs.push(FieldError::required(format!("{at}.status"), ""));
        } else if !allowed.contains(&s) {
            errs.push(FieldError::not_supported(
                format!("{at}.status"),
                s,
                allowed,
            ));
        }
        if !allow_both {
            match t {
                "Approved" => {
                    approved = true;
                    if denied {
                        errs.push(FieldError::invalid(
                            "status.conditions",
                            &json!(t),
                            "Approved and Denied conditions are mutually exclusive",
                        ));
                    }
                }
                "Denied" => {
                    denied = true;
                    if approved {
                        errs.push(FieldError::invalid(
                            "status.conditions",
                            &json!(t),
                            "Approved and Denied conditions are mutually exclusive",
                        ));
                    }
                }
                _ => {}
            }
        }
        if !seen.insert(t.to_string()) {
            errs.push(FieldError::duplicate(format!("{at}.type"), &json!(t)));
        }
    }
}

/// Upstream validateCertificateSigningRequest.
fn validate_csr(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let request = bytes_at(obj, "/spec/request");
    if let Err(m) = parse_request(&request) {
        let shown = obj.pointer("/spec/request").cloned().unwrap_or(json!(""));
        errs.push(FieldError::invalid("spec.request", &shown, &m));
    }
    let usages: Vec<&str> = obj
        .pointer("/spec/usages")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if usages.is_empty() {
        errs.push(FieldError::required("spec.usages", ""));
    }
    let old_usages: Vec<&str> = old
        .and_then(|o| o.pointer("/spec/usages"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !old_usages.iter().any(|u| !USAGES.contains(u)) {
        for (i, u) in usages.iter().enumerate() {
            if !USAGES.contains(u) {
                errs.push(FieldError::not_supported(
                    format!("spec.usages[{i}]"),
                    u,
                    USAGES,
                ));
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, u) in usages.iter().enumerate() {
        if !seen.insert(*u) {
            errs.push(FieldError::duplicate(
                format!("spec.usages[{i}]"),
                &json!(u),
            ));
        }
    }
    let signer = obj
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let legacy_old = old
        .and_then(|o| o.pointer("/spec/signerName"))
        .and_then(Value::as_str)
        == Some("kubernetes.io/legacy-unknown");
    if signer == "kubernetes.io/legacy-unknown" && !legacy_old {
        errs.push(FieldError::invalid(
            "spec.signerName",
            &json!(signer),
            "the legacy signerName is not allowed via this API version",
        ));
    } else {
        errs.extend(validate_signer_name("spec.signerName", signer));
    }
    if let Some(e) = obj
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        && e < 600
    {
        errs.push(FieldError::invalid(
            "spec.expirationSeconds",
            &json!(e),
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    validate_conditions(obj, old, &mut errs);
    let cert = bytes_at(obj, "/status/certificate");
    let untouched = old.is_some_and(|o| bytes_at(o, "/status/certificate") == cert);
    if !untouched && let Err(m) = validate_certificate(&cert) {
        errs.push(FieldError::invalid(
            "status.certificate",
            &json!("<certificate data>"),
            &m,
        ));
    }
    errs
}

/// Upstream validateCertificateSigningRequestUpdate with the subresource's permissions.
fn validate_update(
    new: &Value,
    old: &Value,
    setting_certificate: bool,
    setting_approval: bool,
) -> Vec<FieldError> {
    let mut errs = validate_csr(new, Some(old));
    for t in ["Approved", "Denied", "Failed"] {
        if of_type(new, t).len() < of_type(old, t).len() {
            errs.push(FieldError::forbidden(
                "status.conditions",
                &format!("updates may not remove a condition of type {t:?}"),
            ));
        }
    }
    if !setting_approval {
        for t in ["Approved", "Denied"] {
            let (o, n) = (of_type(old, t), of_type(new, t));
            if n.len() > o.len() {
                errs.push(FieldError::forbidden(
                    "status.conditions",
                    &format!("updates may not add a condition of type {t:?}"),
                ));
            } else if n.len() == o.len() && n != o {
                errs.push(FieldError::forbidden(
                    "status.conditions",
                    &format!("updates may not modify a condition of type {t:?}"),
                ));
            }
        }
    }
    let (nc, oc) = (
        bytes_at(new, "/status/certificate"),
        bytes_at(old, "/status/certificate"),
    );
    if nc != oc {
        if !setting_certificate {
            errs.push(FieldError::forbidden(
                "status.certificate",
                "updates may not set certificate content",
            ));
        } else if !oc.is_empty() {
            errs.push(FieldError::forbidden(
                "status.certificate",
                "updates may not modify existing certificate content",
            ));
        }
    }
    errs
}

/// Upstream populateConditionTimestamps: lastUpdateTime now when unset; lastTransitionTime kept
/// from the old condition of the same type and status, else now.
fn populate_condition_timestamps(new: &mut Value, old: Option<&Value>) {
    let now = crate::objects::now_rfc3339();
    let old_conds = old.map(conditions).unwrap_or_default();
    let Some(conds) = new
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for c in conds.iter_mut() {
        let Some(m) = c.as_object_mut() else { continue };
        if m.get("lastUpdateTime").is_none_or(Value::is_null) {
            m.insert("lastUpdateTime".into(), json!(now));
        }
        if m.get("lastTransitionTime").is_none_or(Value::is_null) {
            let same = old_conds
                .iter()
                .find(|o| o.get("type") == m.get("type") && o.get("status") == m.get("status"));
            let t = same
                .and_then(|o| o.get("lastTransitionTime"))
                .filter(|v| !v.is_null())
                .cloned()
                .unwrap_or(json!(now));
            m.insert("lastTransitionTime".into(), t);
        }
    }
}

/// Keeps every instance of conditions of type `t` as in `old` (upstream preserveConditionInstances).
fn preserve_conditions(new: &mut Value, old: &Value, t: &str) {
    let mut conds: Vec<Value> = conditions(new)
        .into_iter()
        .filter(|c| c.get("type").and_then(Value::as_str) != Some(t))
        .collect();
    conds.extend(of_type(old, t));
    if let Some(status) = super::child(new, "status") {
        status["conditions"] = json!(conds);
    }
}

impl Strategy for CsrStrategy {
    fn info(&self) -> &ResourceInfo {
        &INFO
    }
    fn has_status(&self) -> bool {
        true
    }
    fn validate_name(&self, name: &str) -> Vec<String> {
        kaji_api::validation::path_segment_name(name)
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        let user = USER.try_with(Clone::clone).ok().flatten();
        if let Some(spec) = super::child(obj, "spec").and_then(Value::as_object_mut) {
            for k in ["username", "uid", "groups", "extra"] {
                spec.remove(k);
            }
            if let Some(u) = user {
                spec.insert("username".into(), json!(u.name));
                let mut groups = u.groups.clone();
                if !groups.iter().any(|g| g == "system:authenticated")
                    && u.name != "system:anonymous"
                {
                    groups.push("system:authenticated".into());
                }
                spec.insert("groups".into(), json!(groups));
            }
        }
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        new["spec"] = old.get("spec").cloned().unwrap_or(json!({}));
    }
    fn prepare_for_status_update(&self, new: &mut Value, old: &Value) {
        let mut merged = old.clone();
        merged["status"] = new.get("status").cloned().unwrap_or(json!({}));
        if in_approval() {
            // Only the conditions change through /approval.
            let conds = merged.pointer("/status/conditions").cloned();
            merged["status"] = old.get("status").cloned().unwrap_or(json!({}));
            if let Some(status) = super::child(&mut merged, "status") {
                match conds {
                    Some(c) => status["conditions"] = c,
                    None => {
                        status.as_object_mut().map(|m| m.remove("conditions"));
                    }
                }
            }
        } else {
            preserve_conditions(&mut merged, old, "Approved");
            preserve_conditions(&mut merged, old, "Denied");
        }
        populate_condition_timestamps(&mut merged, Some(old));
        *new = merged;
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_csr(obj, None)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        validate_update(new, old, false, false)
    }
    fn validate_status_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        if in_approval() {
            validate_update(new, old, false, true)
        } else {
            validate_update(new, old, true, false)
        }
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "spec.signerName").then(|| {
            obj.pointer("/spec/signerName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signer_names() {
        assert!(validate_signer_name("f", "kubernetes.io/kube-apiserver-client").is_empty());
        assert!(validate_signer_name("f", "example.com/a.b").is_empty());
        assert_eq!(validate_signer_name("f", "").len(), 1);
        assert_eq!(validate_signer_name("f", "nodomain").len(), 1);
        assert!(!validate_signer_name("f", "example/x").is_empty());
        assert!(!validate_signer_name("f", "Example.com/x").is_empty());
    }

    #[test]
    fn refuses_what_is_not_a_certificate_request() {
        assert_eq!(
            parse_request(b"hello").unwrap_err(),
            "PEM block type must be CERTIFICATE REQUEST"
        );
        let key = rcgen::KeyPair::generate().unwrap();
        let csr = rcgen::CertificateParams::new(vec!["a".to_string()])
            .unwrap()
            .serialize_request(&key)
            .unwrap();
        assert_eq!(parse_request(csr.pem().unwrap().as_bytes()), Ok(()));
        let cert_pem = rcgen::CertificateParams::new(vec!["a".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem();
        assert!(parse_request(cert_pem.as_bytes()).is_err());
        assert_eq!(validate_certificate(cert_pem.as_bytes()), Ok(()));
        assert!(validate_certificate(b"junk").is_err());
    }

    #[test]
    fn short_expiration_and_missing_usages() {
        let obj = json!({"metadata": {"name": "c"}, "spec": {"request": "", "signerName": "example.com/s", "expirationSeconds": 10}});
        let fields: Vec<String> = validate_csr(&obj, None)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            ["spec.request", "spec.usages", "spec.expirationSeconds"]
        );
    }

    #[test]
    fn status_may_not_add_approval_and_approval_may_not_set_certificate() {
        let old = json!({"spec": {}, "status": {}});
        let new =
            json!({"spec": {}, "status": {"conditions": [{"type": "Approved", "status": "True"}]}});
        let errs = validate_update(&new, &old, true, false);
        assert!(
            errs.iter().any(|e| e
                .detail
                .contains("may not add a condition of type \"Approved\"")),
            "{errs:?}"
        );
        assert!(
            validate_update(&new, &old, false, true)
                .iter()
                .all(|e| !e.field.starts_with("status.conditions"))
        );
        let back = json!({"spec": {}, "status": {}});
        assert!(
            validate_update(&back, &new, false, true)
                .iter()
                .any(|e| e.detail.contains("may not remove"))
        );
    }
}
