//! End-to-end tests of certificates.k8s.io/v1 CertificateSigningRequests with stock kubectl and
//! openssl: the requestor is the authenticated user, `kubectl certificate approve` gets a
//! certificate signed by the cluster CA that then works as a client credential, `deny` leaves the
//! request unsigned, a malformed request is refused with upstream's 422 causes, expirationSeconds
//! sets the certificate's life, the kubelet client signer refuses a subject that is not a node.
//! Also the smaller hub behaviours of the same issue: `/version`'s fields.
mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::{Cluster, wait_for};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("running a command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A P-256 key and a CSR for `subject` (e.g. `/CN=alice/O=devs`) in `dir`; returns (key, csr) paths.
fn key_and_csr(dir: &Path, name: &str, subject: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    run(Command::new("openssl")
        .args([
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-noout",
            "-out",
        ])
        .arg(&key));
    run(Command::new("openssl")
        .args(["req", "-new", "-key"])
        .arg(&key)
        .args(["-subj", subject, "-out"])
        .arg(&csr));
    (key, csr)
}

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unb64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= u32::from(val(*c)) << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

fn csr_manifest(
    name: &str,
    request_pem: &[u8],
    signer: &str,
    usages: &[&str],
    expiration: Option<i64>,
) -> String {
    let mut spec =
        serde_json::json!({"request": b64(request_pem), "signerName": signer, "usages": usages});
    if let Some(e) = expiration {
        spec["expirationSeconds"] = e.into();
    }
    serde_json::json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name}, "spec": spec}).to_string()
}

fn conditions(csr: &Value) -> Vec<(String, String)> {
    csr.pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["type"].as_str().unwrap_or("").to_string(),
                        c["reason"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits for the CSR's certificate and writes it to `<dir>/<name>.crt`.
fn wait_issued(c: &Cluster, name: &str) -> PathBuf {
    let cert = wait_for(
        &format!("CSR {name} to be issued"),
        Duration::from_secs(30),
        || {
            let csr = c.json(&["get", "csr", name]);
            csr.pointer("/status/certificate")
                .and_then(Value::as_str)
                .map(unb64)
        },
    );
    let path = c.data_dir().join(format!("{name}.crt"));
    std::fs::write(&path, cert).expect("writing the certificate");
    path
}

/// A kubeconfig for the test's server with a client certificate and key.
fn kubeconfig_for(c: &Cluster, name: &str, cert: &Path, key: &Path) -> PathBuf {
    let path = c.data_dir().join(format!("{name}.kubeconfig"));
    let ca = c.data_dir().join("server/tls/ca.crt");
    let kc = |args: &[&str]| {
        run(Command::new(support::KUBECTL_NEW)
            .arg("--kubeconfig")
            .arg(&path)
            .args(args));
    };
    kc(&[
        "config",
        "set-cluster",
        "k",
        &format!("--server=https://127.0.0.1:{}", c.port),
        &format!("--certificate-authority={}", ca.display()),
    ]);
    kc(&[
        "config",
        "set-credentials",
        name,
        &format!("--client-certificate={}", cert.display()),
        &format!("--client-key={}", key.display()),
    ]);
    kc(&[
        "config",
        "set-context",
        "k",
        "--cluster=k",
        &format!("--user={name}"),
    ]);
    kc(&["config", "use-context", "k"]);
    path
}

#[test]
fn csr_approve_signs_with_the_cluster_ca_and_the_certificate_authenticates() {
    let c = Cluster::start("csr-approve");
    let dir = c.data_dir().to_path_buf();
    let (key, csr) = key_and_csr(&dir, "alice", "/CN=alice/O=devs");
    let pem = std::fs::read(&csr).unwrap();
    c.apply(
        support::KUBECTL_NEW,
        &csr_manifest(
            "alice",
            &pem,
            "kubernetes.io/kube-apiserver-client",
            &["client auth"],
            Some(3600),
        ),
    );

    // The requestor is who asked (the admin certificate), not what the manifest could claim.
    let got = c.json(&["get", "csr", "alice"]);
    assert_eq!(got["spec"]["username"], "system:admin");
    assert_eq!(
        got["spec"]["groups"],
        serde_json::json!(["system:masters", "system:authenticated"])
    );
    let table = c.ok(&["get", "csr", "alice"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "AGE",
            "SIGNERNAME",
            "REQUESTOR",
            "REQUESTEDDURATION",
            "CONDITION"
        ]
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[0], "alice");
    assert_eq!(
        &row[2..],
        [
            "kubernetes.io/kube-apiserver-client",
            "system:admin",
            "60m",
            "Pending"
        ],
        "{table}"
    );

    // Not signed before approval; the spec does not change through the main resource.
    c.ok(&[
        "patch",
        "csr",
        "alice",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"signerName":"example.com/other"}}"#,
    ]);
    assert_eq!(
        c.json(&["get", "csr", "alice"])["spec"]["signerName"],
        "kubernetes.io/kube-apiserver-client"
    );
    assert!(
        c.json(&["get", "csr", "alice"])
            .pointer("/status/certificate")
            .is_none()
    );

    let out = c.ok(&["certificate", "approve", "alice"]);
    assert!(
        out.contains("certificatesigningrequest.certificates.k8s.io/alice approved"),
        "{out}"
    );
    let cert = wait_issued(&c, "alice");
    let row = c.ok(&["get", "csr", "alice", "--no-headers"]);
    assert!(row.trim_end().ends_with("Approved,Issued"), "{row}");
    let approved = c.json(&["get", "csr", "alice"]);
    assert_eq!(
        conditions(&approved),
        [("Approved".to_string(), "KubectlApprove".to_string())]
    );

    // Signed by the cluster CA, for alice of devs, a client certificate living expirationSeconds.
    let ca = dir.join("server/tls/ca.crt");
    let verify = run(Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(&ca)
        .arg(&cert));
    assert!(verify.contains(": OK"), "{verify}");
    let subject = run(Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-nameopt", "compat", "-in"])
        .arg(&cert));
    assert!(
        subject.contains("CN=alice") && subject.contains("O=devs"),
        "{subject}"
    );
    let end = run(Command::new("openssl")
        .args(["x509", "-noout", "-checkend", "3300", "-in"])
        .arg(&cert));
    assert!(
        end.contains("will not expire"),
        "lives at least ~55 min: {end}"
    );
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-checkend", "3900", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "expires within ~65 min (expirationSeconds 3600)"
    );

    // The certificate is a working kubectl credential: requests as alice are alice's.
    let alice = kubeconfig_for(&c, "alice", &cert, &key);
    let api = run(Command::new(support::KUBECTL_NEW)
        .arg("--kubeconfig")
        .arg(&alice)
        .args(["get", "--raw", "/api"]));
    assert!(api.contains("APIVersions"), "{api}");
    let (_, csr2) = key_and_csr(&dir, "alice2", "/CN=alice-laptop");
    let m = csr_manifest(
        "alice2",
        &std::fs::read(&csr2).unwrap(),
        "kubernetes.io/kube-apiserver-client",
        &["client auth"],
        None,
    );
    let mf = dir.join("alice2.json");
    std::fs::write(&mf, m).unwrap();
    // Upstream's default policy lets no user create CSRs: alice's group needs a grant first.
    let refused = Command::new(support::KUBECTL_NEW)
        .arg("--kubeconfig")
        .arg(&alice)
        .arg("create")
        .arg("-f")
        .arg(&mf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(r#"User "alice" cannot create resource "certificatesigningrequests" in API group "certificates.k8s.io" at the cluster scope"#),
        "{err}"
    );
    c.ok(&["create", "clusterrole", "csr-creator", "--verb=create", "--resource=certificatesigningrequests"]);
    c.ok(&["create", "clusterrolebinding", "devs-csr", "--clusterrole=csr-creator", "--group=devs"]);
    run(Command::new(support::KUBECTL_NEW)
        .arg("--kubeconfig")
        .arg(&alice)
        .arg("create")
        .arg("-f")
        .arg(&mf));
    let got = c.json(&["get", "csr", "alice2"]);
    assert_eq!(got["spec"]["username"], "alice");
    assert_eq!(
        got["spec"]["groups"],
        serde_json::json!(["devs", "system:authenticated"])
    );
}

#[test]
fn csr_deny_malformed_and_refused_requests() {
    let c = Cluster::start("csr-deny");
    let dir = c.data_dir().to_path_buf();

    // A malformed request and a too short life: 422 with upstream's causes, nothing stored.
    let bad = csr_manifest(
        "bad",
        b"not a certificate request",
        "kubernetes.io/kube-apiserver-client",
        &["client auth"],
        Some(100),
    );
    let out = c.kubectl_with(support::KUBECTL_NEW, &["create", "-f", "-"], Some(&bad));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("is invalid"), "{err}");
    assert!(
        err.contains("spec.request: Invalid value")
            && err.contains("PEM block type must be CERTIFICATE REQUEST"),
        "{err}"
    );
    assert!(err.contains("spec.expirationSeconds: Invalid value: 100: may not specify a duration less than 600 seconds (10 minutes)"), "{err}");
    let (_, csr) = key_and_csr(&dir, "x", "/CN=x");
    let pem = std::fs::read(&csr).unwrap();
    let out = c.kubectl_with(
        support::KUBECTL_NEW,
        &["create", "-f", "-"],
        Some(&csr_manifest("nosigner", &pem, "nodomain", &[], None)),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.usages: Required value"), "{err}");
    assert!(err.contains("spec.signerName: Invalid value: \"nodomain\": must be a fully qualified domain and path of the form 'example.com/signer-name'"), "{err}");
    assert!(c.fails(&["get", "csr", "bad"]).contains("NotFound"));

    // Denied: a condition, never a certificate.
    c.apply(
        support::KUBECTL_NEW,
        &csr_manifest(
            "bob",
            &pem,
            "kubernetes.io/kube-apiserver-client",
            &["client auth"],
            None,
        ),
    );
    c.ok(&["certificate", "deny", "bob"]);
    let denied = c.json(&["get", "csr", "bob"]);
    assert_eq!(
        conditions(&denied),
        [("Denied".to_string(), "KubectlDeny".to_string())]
    );
    // Approving a denied request is refused: by kubectl, and by the server.
    assert!(
        c.fails(&["certificate", "approve", "bob"])
            .contains("is already Denied")
    );
    let mut both = denied.clone();
    both["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "Approved", "status": "True", "reason": "Forced"}));
    let file = dir.join("both.json");
    std::fs::write(&file, both.to_string()).unwrap();
    let err = c.fails(&[
        "replace",
        "--raw",
        "/apis/certificates.k8s.io/v1/certificatesigningrequests/bob/approval",
        "-f",
        file.to_str().unwrap(),
    ]);
    assert!(
        err.contains("Approved and Denied conditions are mutually exclusive"),
        "{err}"
    );

    // The kubelet client signer signs only node subjects: Failed with upstream's reason.
    c.apply(
        support::KUBECTL_NEW,
        &csr_manifest(
            "notanode",
            &pem,
            "kubernetes.io/kube-apiserver-client-kubelet",
            &["digital signature", "client auth"],
            None,
        ),
    );
    c.ok(&["certificate", "approve", "notanode"]);
    let failed = wait_for(
        "the kubelet signer to refuse",
        Duration::from_secs(30),
        || {
            let csr = c.json(&["get", "csr", "notanode"]);
            conditions(&csr)
                .iter()
                .any(|(t, _)| t == "Failed")
                .then_some(csr)
        },
    );
    let f = failed["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .unwrap()
        .clone();
    assert_eq!(f["reason"], "SignerValidationFailure");
    assert_eq!(f["message"], "subject organization is not system:nodes");
    assert!(failed.pointer("/status/certificate").is_none());

    // A node's request is signed by the same signer.
    let (_, node_csr) = key_and_csr(&dir, "node", "/O=system:nodes/CN=system:node:n1");
    c.apply(
        support::KUBECTL_NEW,
        &csr_manifest(
            "node-n1",
            &std::fs::read(&node_csr).unwrap(),
            "kubernetes.io/kube-apiserver-client-kubelet",
            &["digital signature", "client auth"],
            Some(600),
        ),
    );
    c.ok(&["certificate", "approve", "node-n1"]);
    let cert = wait_issued(&c, "node-n1");
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-checkend", "900", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a 600 s certificate expires within 15 min"
    );
    // Meanwhile the denied request stayed unsigned.
    assert!(
        c.json(&["get", "csr", "bob"])
            .pointer("/status/certificate")
            .is_none()
    );

    // The status subresource may not approve; /approval may not set the certificate.
    let body = serde_json::json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "node-n1"}, "spec": {}, "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "AAAA"}});
    let file = dir.join("approval.json");
    std::fs::write(&file, body.to_string()).unwrap();
    let out = c.kubectl(&[
        "replace",
        "--raw",
        "/apis/certificates.k8s.io/v1/certificatesigningrequests/node-n1/approval",
        "-f",
        file.to_str().unwrap(),
    ]);
    let after = c.json(&["get", "csr", "node-n1"]);
    assert_eq!(
        after["status"]["certificate"].as_str().map(unb64),
        Some(std::fs::read(&cert).unwrap()),
        "{out:?}"
    );
}

#[test]
fn version_carries_every_field() {
    let c = Cluster::start("csr-version");
    let v: Value = serde_json::from_str(&c.ok(&["version", "-o", "json"])).unwrap();
    let sv = &v["serverVersion"];
    for k in [
        "major",
        "minor",
        "emulationMajor",
        "emulationMinor",
        "minCompatibilityMajor",
        "minCompatibilityMinor",
        "gitVersion",
        "gitCommit",
        "gitTreeState",
        "buildDate",
        "goVersion",
        "compiler",
        "platform",
    ] {
        assert!(
            sv.get(k)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty()),
            "serverVersion.{k} missing: {sv}"
        );
    }
    assert_eq!(sv["major"], "1");
    assert_eq!(sv["minor"], "33");
    assert_eq!(sv["emulationMinor"], "33");
}

#[test]
fn garbage_collector_breaks_an_ownership_cycle_under_foreground_deletion() {
    let c = Cluster::start("gc-cycle");
    c.ok(&["create", "configmap", "a"]);
    c.ok(&["create", "configmap", "b"]);
    let uid = |n: &str| {
        c.json(&["get", "configmap", n])["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (ua, ub) = (uid("a"), uid("b"));
    let owned_by = |owner: &str, owner_uid: &str| {
        serde_json::json!({"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": owner_uid, "blockOwnerDeletion": true}]}}).to_string()
    };
    c.ok(&[
        "patch",
        "configmap",
        "a",
        "--type",
        "merge",
        "-p",
        &owned_by("b", &ub),
    ]);
    c.ok(&[
        "patch",
        "configmap",
        "b",
        "--type",
        "merge",
        "-p",
        &owned_by("a", &ua),
    ]);
    c.ok(&[
        "delete",
        "configmap",
        "a",
        "--cascade=foreground",
        "--wait=false",
    ]);
    wait_for(
        "both objects of the cycle to go",
        Duration::from_secs(60),
        || {
            let out = c.ok(&["get", "configmaps", "-o", "name"]);
            (!out.contains("configmap/a") && !out.contains("configmap/b")).then_some(())
        },
    );
}

#[test]
fn events_k8s_io_v1_get_patch_list_delete_with_series() {
    let c = Cluster::start("events-v1");
    let ev = serde_json::json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "e1", "namespace": "default"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "example.com/ctl", "reportingInstance": "ctl-1",
        "action": "Sync", "reason": "Synced", "type": "Normal", "note": "all good",
        "regarding": {"kind": "ConfigMap", "namespace": "default", "name": "x", "apiVersion": "v1"},
        "series": {"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"}
    });
    c.ok_with(
        support::KUBECTL_NEW,
        &["create", "-f", "-"],
        Some(&ev.to_string()),
    );
    let got = c.json(&["get", "events.v1.events.k8s.io", "e1"]);
    assert_eq!(got["apiVersion"], "events.k8s.io/v1");
    assert_eq!(got["series"]["count"], 2);
    assert_eq!(got["note"], "all good");
    assert_eq!(got["regarding"]["name"], "x");
    // The same object through core/v1.
    let core = c.json(&["get", "events.v1.", "e1"]);
    assert_eq!(core["message"], "all good");
    assert_eq!(core["series"]["count"], 2);
    c.ok(&[
        "patch",
        "events.v1.events.k8s.io",
        "e1",
        "--type",
        "merge",
        "-p",
        r#"{"series":{"count":3,"lastObservedTime":"2026-01-01T00:02:00.000000Z"}}"#,
    ]);
    let got = c.json(&["get", "events.v1.events.k8s.io", "e1"]);
    assert_eq!(got["series"]["count"], 3);
    assert_eq!(
        got["series"]["lastObservedTime"],
        "2026-01-01T00:02:00.000000Z"
    );
    let list = c.json(&[
        "get",
        "events.v1.events.k8s.io",
        "--field-selector",
        "reason=Synced",
    ]);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["series"]["count"], 3);
    // What identifies the event may not change; a new one needs upstream's fields.
    let err = c.fails(&[
        "patch",
        "events.v1.events.k8s.io",
        "e1",
        "--type",
        "merge",
        "-p",
        r#"{"reason":"Other"}"#,
    ]);
    assert!(
        err.contains("reason: Invalid value: \"Other\": field is immutable"),
        "{err}"
    );
    let mut bad = ev.clone();
    bad["metadata"]["name"] = "e2".into();
    bad.as_object_mut().unwrap().remove("reportingController");
    bad["series"]["count"] = 1.into();
    let out = c.kubectl_with(
        support::KUBECTL_NEW,
        &["create", "-f", "-"],
        Some(&bad.to_string()),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reportingController: Required value"), "{err}");
    assert!(
        err.contains("series.count: Invalid value: \"\": should be at least 2"),
        "{err}"
    );
    c.ok(&["delete", "events.v1.events.k8s.io", "e1"]);
    assert!(
        c.fails(&["get", "events.v1.events.k8s.io", "e1"])
            .contains("NotFound")
    );
}

#[test]
fn every_resource_answers_a_table_request_and_other_shapes_are_not_acceptable() {
    let c = Cluster::start("table-406");
    let tls = c.data_dir().join("server/tls");
    let curl = |path: &str, accept: &str| {
        let out = Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}", "--cacert"])
            .arg(tls.join("ca.crt"))
            .arg("--cert")
            .arg(tls.join("client-admin.crt"))
            .arg("--key")
            .arg(tls.join("client-admin.key"))
            .args(["-H", &format!("Accept: {accept}")])
            .arg(format!("https://127.0.0.1:{}{path}", c.port))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.to_string(), body.to_string())
    };
    // Upstream serves a Table (the kind's columns, else NAME and CREATED AT) for every resource.
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io";
    for path in [
        "/apis/coordination.k8s.io/v1/leases",
        "/apis/certificates.k8s.io/v1/certificatesigningrequests",
        "/apis/events.k8s.io/v1/events",
    ] {
        let (code, body) = curl(path, table);
        assert_eq!(code, "200", "{path}: {body}");
        assert!(body.contains("\"kind\":\"Table\""), "{path}: {body}");
    }
    // A shape the server cannot produce, with no fallback: 406.
    let (code, body) = curl(
        "/apis/coordination.k8s.io/v1/leases",
        "application/json;as=Foo;v=v1;g=meta.k8s.io",
    );
    assert_eq!(code, "406", "{body}");
    assert!(body.contains("NotAcceptable"), "{body}");
}
