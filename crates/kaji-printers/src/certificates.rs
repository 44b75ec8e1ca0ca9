//! certificates.k8s.io: CertificateSigningRequest.

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::Column;
use crate::duration::human_duration;
use crate::value::{age, arr_at, name, opt_int, or_none, str_at};

pub(crate) fn columns(kind: &str) -> Option<&'static [Column]> {
    (kind == "CertificateSigningRequest").then_some(CSR)
}

pub(crate) fn row(kind: &str, obj: &Value, now: Timestamp) -> Option<Vec<Value>> {
    (kind == "CertificateSigningRequest").then(|| {
        let requested = opt_int(obj, &["spec", "expirationSeconds"]).map_or_else(
            || "<none>".to_owned(),
            |s| human_duration(SignedDuration::from_secs(s)),
        );
        vec![
            name(obj),
            age(obj, now),
            or_none(str_at(obj, &["spec", "signerName"])).into(),
            str_at(obj, &["spec", "username"]).into(),
            requested.into(),
            condition(obj).into(),
        ]
    })
}

const CSR: &[Column] = &[
    Column::NAME,
    Column::AGE,
    Column::new("SignerName", "string", "Requested signer for the request."),
    Column::new("Requestor", "string", "The user that created the request."),
    Column::new(
        "RequestedDuration",
        "string",
        "The requested duration of validity of the issued certificate.",
    ),
    Column::new(
        "Condition",
        "string",
        "The conditions of the request: Approved, Denied, Failed, Issued.",
    ),
];

/// "Approved,Issued", "Denied", "Pending", ...
fn condition(obj: &Value) -> String {
    let has = |t: &str| {
        arr_at(obj, &["status", "conditions"])
            .iter()
            .any(|c| str_at(c, &["type"]) == t)
    };
    let mut status = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_owned();
    if has("Failed") {
        status.push_str(",Failed");
    }
    if !str_at(obj, &["status", "certificate"]).is_empty() {
        status.push_str(",Issued");
    }
    status
}

#[cfg(test)]
mod tests {
    use crate::testutil::{cells, headers};
    use serde_json::json;

    #[test]
    fn csr() {
        let g = "certificates.k8s.io";
        assert_eq!(
            headers(g, "CertificateSigningRequest"),
            [
                "Name",
                "Age",
                "SignerName",
                "Requestor",
                "RequestedDuration",
                "Condition"
            ]
        );
        let csr = json!({"metadata": {"name": "csr-abc", "creationTimestamp": "2024-05-01T11:59:00Z"},
            "spec": {"signerName": "kubernetes.io/kube-apiserver-client-kubelet", "username": "system:node:n1", "expirationSeconds": 86400},
            "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "LS0t"}});
        assert_eq!(
            cells(g, "CertificateSigningRequest", &csr),
            [
                json!("csr-abc"),
                json!("60s"),
                json!("kubernetes.io/kube-apiserver-client-kubelet"),
                json!("system:node:n1"),
                json!("24h"),
                json!("Approved,Issued")
            ]
        );
        assert_eq!(
            cells(g, "CertificateSigningRequest", &json!({}))[2..6],
            [
                json!("<none>"),
                json!(""),
                json!("<none>"),
                json!("Pending")
            ]
        );
    }
}
