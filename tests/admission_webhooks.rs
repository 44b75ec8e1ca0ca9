//! Dynamic admission webhooks end to end: a webhook server of the test's own (HTTPS on
//! 127.0.0.1 with a CA made here) is registered with Validating/MutatingWebhookConfigurations,
//! by `clientConfig.url` and through a Service (a selector-less Service with a hand-made
//! EndpointSlice pointing at this process); stock kubectl then sees denials with the webhook's
//! message and status, a label added by a JSON patch, failurePolicy Ignore and Fail on a webhook
//! that times out or answers garbage, namespace and object selectors, warnings, dry runs, and a
//! configuration's removal taking effect. Bad configurations are refused with upstream's causes.

mod support;

use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::webhook::WebhookServer;
use support::{Cluster, wait_for};

/// The test's webhook server (support::webhook) answering with `handle`.
fn start_hooks() -> WebhookServer {
    WebhookServer::start(Arc::new(|path, review| Box::pin(handle(path, review))))
}

/// The AdmissionReview requests a path received, each with its query and review apiVersion.
fn seen(hooks: &WebhookServer, path: &str) -> Vec<Value> {
    hooks
        .seen(path)
        .into_iter()
        .map(|(query, review)| {
            let mut recorded = review["request"].clone();
            recorded["query"] = json!(query);
            recorded["apiVersion"] = review["apiVersion"].clone();
            recorded
        })
        .collect()
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `/deny`: denies objects labelled forbidden=true (403, a message), allows others with a
/// warning. `/mutate`: adds `mutated=true`. `/slow`: answers after 3 s. `/garbage`: not JSON.
async fn handle(path: String, review: Value) -> (u16, Bytes) {
    let request = &review["request"];
    let uid = request["uid"].clone();
    let response = match path.as_str() {
        "/deny" => {
            let object = if request["operation"] == "DELETE" {
                &request["oldObject"]
            } else {
                &request["object"]
            };
            if object
                .pointer("/metadata/labels/forbidden")
                .and_then(Value::as_str)
                == Some("true")
            {
                json!({"uid": uid, "allowed": false, "status": {"code": 403, "reason": "Forbidden", "message": "the label forbidden=true is not allowed here"}})
            } else {
                json!({"uid": uid, "allowed": true, "warnings": ["deny.example.com looked at this object"]})
            }
        }
        "/mutate" => {
            let patch = json!([{"op": "add", "path": "/metadata/labels/mutated", "value": "true"}]);
            json!({"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": b64(&patch.to_string())})
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            json!({"uid": uid, "allowed": true})
        }
        "/garbage" => {
            return (
                200,
                Bytes::from_static(b"<html>this is not an AdmissionReview</html>"),
            );
        }
        _ => return (404, Bytes::from_static(b"{}")),
    };
    (200, Bytes::from(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}).to_string()))
}

/// A webhook of a configuration, by URL path on the test server.
fn webhook(name: &str, server: &WebhookServer, path: &str, extra: &str) -> String {
    format!(
        r#"- name: {name}
  clientConfig:
    url: https://127.0.0.1:{port}{path}
    caBundle: {ca}
  rules:
  - operations: ["CREATE", "UPDATE", "DELETE"]
    apiGroups: [""]
    apiVersions: ["v1"]
    resources: ["configmaps"]
  sideEffects: None
  admissionReviewVersions: ["v1"]
{extra}"#,
        port = server.port,
        ca = b64(&server.ca_pem),
    )
}

fn configuration(kind: &str, name: &str, webhooks: &[String]) -> String {
    format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: {kind}\nmetadata:\n  name: {name}\nwebhooks:\n{}",
        webhooks.concat()
    )
}

fn configmap(ns: &str, name: &str, labels: &[(&str, &str)]) -> String {
    let labels: String = labels
        .iter()
        .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
        .collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n{labels}    app: test\ndata:\n  a: b\n"
    )
}

/// kubectl create -f - ; (success, stdout, stderr).
fn create(c: &Cluster, manifest: &str, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["create", "-f", "-"];
    args.extend(extra);
    let out = c.kubectl_with(support::KUBECTL_NEW, &args, Some(manifest));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn webhooks_by_url_and_service() {
    let c = Cluster::start("admission-webhooks");
    let hooks = start_hooks();
    c.ok(&["create", "namespace", "hooked"]);
    c.ok(&["label", "namespace", "hooked", "webhooks=on"]);
    c.ok(&["create", "namespace", "plain"]);

    // Bad configurations: upstream's causes.
    let bad = "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata:\n  name: bad\nwebhooks:\n- name: bad\n  clientConfig:\n    url: http://127.0.0.1/x?y=1\n  timeoutSeconds: 31\n  rules:\n  - operations: [\"CREATE\", \"*\"]\n    apiGroups: [\"\"]\n    apiVersions: [\"v1\"]\n    resources: [\"pods\"]\n  admissionReviewVersions: [\"v1\"]\n";
    let (ok, _, err) = create(&c, bad, &[]);
    assert!(!ok);
    for want in [
        r#"The ValidatingWebhookConfiguration "bad" is invalid"#,
        r#"webhooks[0].name: Invalid value: "bad": should be a domain with at least three segments separated by dots"#,
        "webhooks[0].rules[0].operations: Invalid value:",
        "if '*' is present, must not specify other operations",
        "webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun",
        "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
        "'https' is the only allowed URL scheme; desired format: https://host[/path]",
        "query parameters are not permitted in the URL",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }

    // A validating webhook for namespaces labelled webhooks=on; defaults filled in.
    let deny = webhook(
        "deny.example.com",
        &hooks,
        "/deny",
        "  namespaceSelector:\n    matchLabels:\n      webhooks: \"on\"\n",
    );
    c.apply(
        support::KUBECTL_NEW,
        &configuration("ValidatingWebhookConfiguration", "deny", &[deny]),
    );
    let got = c.json(&["get", "validatingwebhookconfiguration", "deny"]);
    let h = &got["webhooks"][0];
    assert_eq!(
        (
            h["failurePolicy"].as_str(),
            h["matchPolicy"].as_str(),
            h["timeoutSeconds"].as_i64(),
            h["rules"][0]["scope"].as_str()
        ),
        (Some("Fail"), Some("Equivalent"), Some(10), Some("*"))
    );
    assert_eq!(h["objectSelector"], json!({}));
    let table = c.ok(&["get", "validatingwebhookconfigurations"]);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "WEBHOOKS", "AGE"], "{table}");
    assert_eq!(&lines[1][..2], ["deny", "1"], "{table}");

    // Denied with the webhook's message and status, within a second of the configuration.
    let started = Instant::now();
    let err = wait_for("the webhook to deny", Duration::from_secs(5), || {
        let (ok, _, err) = create(
            &c,
            &configmap("hooked", "bad", &[("forbidden", "true")]),
            &[],
        );
        (!ok).then_some(err)
    });
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        err.trim(),
        r#"Error from server (Forbidden): error when creating "STDIN": admission webhook "deny.example.com" denied the request: the label forbidden=true is not allowed here"#
    );
    // The same object in a namespace the selector leaves out.
    let (ok, _, err) = create(
        &c,
        &configmap("plain", "bad", &[("forbidden", "true")]),
        &[],
    );
    assert!(ok, "{err}");
    // An allowed object, with the webhook's warning shown by kubectl.
    let (ok, _, err) = create(&c, &configmap("hooked", "good", &[]), &[]);
    assert!(ok, "{err}");
    assert!(
        err.contains("Warning: deny.example.com looked at this object"),
        "{err}"
    );
    // What the webhook was sent.
    let sent = seen(&hooks, "/deny");
    let r = sent
        .iter()
        .find(|r| r["operation"] == "CREATE" && r["name"] == "good")
        .expect("the CREATE of good");
    assert_eq!(r["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(
        r["kind"],
        json!({"group": "", "version": "v1", "kind": "ConfigMap"})
    );
    assert_eq!(
        r["resource"],
        json!({"group": "", "version": "v1", "resource": "configmaps"})
    );
    assert_eq!(r["namespace"], "hooked");
    assert_eq!(r["dryRun"], false);
    assert_eq!(r["query"], "timeout=10s");
    assert_eq!(r["object"]["data"], json!({"a": "b"}));
    assert_eq!(r["oldObject"], Value::Null);
    assert_eq!(r["options"]["kind"], "CreateOptions");
    assert!(
        r["userInfo"]["username"]
            .as_str()
            .is_some_and(|u| !u.is_empty()),
        "{r}"
    );
    assert!(r["uid"].as_str().is_some_and(|u| u.len() == 36), "{r}");
    // Updates (a label through a patch) and dry runs go to the webhook too.
    let err = c.fails(&[
        "label",
        "configmap",
        "good",
        "-n",
        "hooked",
        "forbidden=true",
    ]);
    assert!(err.contains(r#"admission webhook "deny.example.com" denied the request: the label forbidden=true is not allowed here"#), "{err}");
    let r = seen(&hooks, "/deny")
        .into_iter()
        .rev()
        .find(|r| r["operation"] == "UPDATE")
        .expect("the UPDATE");
    assert_eq!(r["oldObject"]["metadata"]["name"], "good");
    assert_eq!(r["options"]["kind"], "UpdateOptions");
    let (ok, _, err) = create(
        &c,
        &configmap("hooked", "dry", &[("forbidden", "true")]),
        &["--dry-run=server"],
    );
    assert!(!ok && err.contains("denied the request"), "{err}");
    assert!(
        seen(&hooks, "/deny")
            .iter()
            .any(|r| r["name"] == "dry" && r["dryRun"] == true)
    );
    c.ok(&["delete", "configmap", "good", "-n", "hooked"]);
    assert!(
        seen(&hooks, "/deny")
            .iter()
            .any(|r| r["operation"] == "DELETE"
                && r["name"] == "good"
                && r["oldObject"]["metadata"]["name"] == "good")
    );

    // A mutating webhook for objects labelled mutate=yes adds mutated=true.
    let mutate = webhook(
        "mutate.example.com",
        &hooks,
        "/mutate",
        "  reinvocationPolicy: IfNeeded\n  objectSelector:\n    matchLabels:\n      mutate: \"yes\"\n",
    );
    c.apply(
        support::KUBECTL_NEW,
        &configuration("MutatingWebhookConfiguration", "mutate", &[mutate]),
    );
    let table = c.ok(&["get", "mutatingwebhookconfigurations"]);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("mutate ")),
        "{table}"
    );
    let mut attempt = 0;
    wait_for("the mutating webhook", Duration::from_secs(5), || {
        attempt += 1;
        let name = format!("m-{attempt}");
        let (ok, _, err) = create(&c, &configmap("plain", &name, &[("mutate", "yes")]), &[]);
        assert!(ok, "{err}");
        let labels =
            c.json(&["get", "configmap", &name, "-n", "plain"])["metadata"]["labels"].clone();
        (labels["mutated"] == "true").then_some(())
    });
    c.ok(&["create", "configmap", "untouched", "-n", "plain"]);
    let labels =
        c.json(&["get", "configmap", "untouched", "-n", "plain"])["metadata"]["labels"].clone();
    assert!(labels.get("mutated").is_none(), "{labels}");

    // Slow and garbage webhooks: Ignore lets the write through, Fail refuses it.
    let slow = |name: &str, policy: &str| {
        webhook(
            name,
            &hooks,
            "/slow",
            &format!(
                "  timeoutSeconds: 1\n  failurePolicy: {policy}\n  objectSelector:\n    matchLabels:\n      test: {name}\n"
            ),
        )
    };
    let garbage = webhook(
        "garbage.example.com",
        &hooks,
        "/garbage",
        "  objectSelector:\n    matchLabels:\n      test: garbage.example.com\n",
    );
    c.apply(
        support::KUBECTL_NEW,
        &configuration(
            "ValidatingWebhookConfiguration",
            "broken",
            &[
                slow("slow-ignore.example.com", "Ignore"),
                slow("slow-fail.example.com", "Fail"),
                garbage,
            ],
        ),
    );
    let err = wait_for("the failing webhook", Duration::from_secs(10), || {
        let (ok, _, err) = create(
            &c,
            &configmap("plain", "slow-fail", &[("test", "slow-fail.example.com")]),
            &[],
        );
        (!ok).then_some(err)
    });
    let want = format!(
        r#"Error from server (InternalError): error when creating "STDIN": Internal error occurred: failed calling webhook "slow-fail.example.com": failed to call webhook: Post "https://127.0.0.1:{}/slow?timeout=1s": context deadline exceeded"#,
        hooks.port
    );
    assert_eq!(err.trim(), want);
    let started = Instant::now();
    let (ok, _, err) = create(
        &c,
        &configmap(
            "plain",
            "slow-ignore",
            &[("test", "slow-ignore.example.com")],
        ),
        &[],
    );
    assert!(ok, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the 1 s timeout was not honoured: {:?}",
        started.elapsed()
    );
    let (ok, _, err) = create(
        &c,
        &configmap("plain", "garbage", &[("test", "garbage.example.com")]),
        &[],
    );
    assert!(!ok);
    assert!(err.contains(r#"Internal error occurred: failed calling webhook "garbage.example.com": failed to call webhook: "#), "{err}");

    // Through a Service: the webhook's own endpoint, verified as webhook.hooks.svc.
    let svc = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: hooks\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: webhook\n  namespace: hooks\nspec:\n  ports:\n  - name: https\n    port: 443\n    targetPort: {port}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: webhook-1\n  namespace: hooks\n  labels:\n    kubernetes.io/service-name: webhook\naddressType: IPv4\nendpoints:\n- addresses: [\"127.0.0.1\"]\n  conditions:\n    ready: true\nports:\n- name: https\n  port: {port}\n  protocol: TCP\n",
        port = hooks.port
    );
    c.apply(support::KUBECTL_NEW, &svc);
    let by_service = format!(
        "- name: service.example.com\n  clientConfig:\n    service:\n      namespace: hooks\n      name: webhook\n      path: /deny\n    caBundle: {}\n  rules:\n  - operations: [\"CREATE\"]\n    apiGroups: [\"\"]\n    apiVersions: [\"v1\"]\n    resources: [\"secrets\"]\n    scope: Namespaced\n  sideEffects: NoneOnDryRun\n  admissionReviewVersions: [\"v1beta1\", \"v1\"]\n",
        b64(&hooks.ca_pem)
    );
    c.apply(
        support::KUBECTL_NEW,
        &configuration(
            "ValidatingWebhookConfiguration",
            "by-service",
            &[by_service],
        ),
    );
    let got = c.json(&["get", "validatingwebhookconfiguration", "by-service"]);
    assert_eq!(got["webhooks"][0]["clientConfig"]["service"]["port"], 443);
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: plain\n  labels:\n    forbidden: \"true\"\n";
    let err = wait_for(
        "the webhook behind the Service",
        Duration::from_secs(5),
        || {
            let (ok, _, err) = create(&c, secret, &[]);
            (!ok).then_some(err)
        },
    );
    assert!(err.contains(r#"admission webhook "service.example.com" denied the request: the label forbidden=true is not allowed here"#), "{err}");

    // Custom resources go through the same webhooks.
    c.apply(
        support::KUBECTL_NEW,
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: hoges.stable.example.com\nspec:\n  group: stable.example.com\n  scope: Namespaced\n  names:\n    plural: hoges\n    singular: hoge\n    kind: Hoge\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        properties:\n          spec:\n            type: object\n            x-kubernetes-preserve-unknown-fields: true\n",
    );
    c.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/hoges.stable.example.com",
        "--timeout=30s",
    ]);
    let for_hoges = |w: String| {
        w.replace("apiGroups: [\"\"]", "apiGroups: [\"stable.example.com\"]")
            .replace("apiVersions: [\"v1\"]", "apiVersions: [\"*\"]")
            .replace("resources: [\"configmaps\"]", "resources: [\"hoges\"]")
    };
    c.apply(
        support::KUBECTL_NEW,
        &configuration(
            "ValidatingWebhookConfiguration",
            "hoges",
            &[for_hoges(webhook("hoges.example.com", &hooks, "/deny", ""))],
        ),
    );
    c.apply(
        support::KUBECTL_NEW,
        &configuration(
            "MutatingWebhookConfiguration",
            "hoges",
            &[for_hoges(webhook(
                "label-hoges.example.com",
                &hooks,
                "/mutate",
                "",
            ))],
        ),
    );
    let hoge = |name: &str, label: &str| {
        format!(
            "apiVersion: stable.example.com/v1\nkind: Hoge\nmetadata:\n  name: {name}\n  namespace: plain\n  labels:\n    {label}\nspec:\n  a: 1\n"
        )
    };
    let err = wait_for(
        "the webhook on a custom resource",
        Duration::from_secs(5),
        || {
            let (ok, _, err) = create(&c, &hoge("bad", "forbidden: \"true\""), &[]);
            (!ok).then_some(err)
        },
    );
    assert!(err.contains(r#"admission webhook "hoges.example.com" denied the request: the label forbidden=true is not allowed here"#), "{err}");
    let (ok, _, err) = create(&c, &hoge("good", "app: test"), &[]);
    assert!(ok, "{err}");
    assert_eq!(
        c.json(&["get", "hoge", "good", "-n", "plain"])["metadata"]["labels"]["mutated"],
        "true"
    );
    let r = seen(&hooks, "/deny")
        .into_iter()
        .rev()
        .find(|r| r["name"] == "good")
        .expect("the Hoge's review");
    assert_eq!(
        r["kind"],
        json!({"group": "stable.example.com", "version": "v1", "kind": "Hoge"})
    );
    c.ok(&["delete", "validatingwebhookconfiguration", "hoges"]);
    c.ok(&["delete", "mutatingwebhookconfiguration", "hoges"]);

    // Removing a configuration takes effect within a second.
    c.ok(&["delete", "validatingwebhookconfiguration", "deny"]);
    let started = Instant::now();
    wait_for(
        "the removed webhook to stop denying",
        Duration::from_secs(5),
        || {
            create(
                &c,
                &configmap("hooked", "bad", &[("forbidden", "true")]),
                &[],
            )
            .0
            .then_some(())
        },
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // The configurations themselves never go to webhooks (a broken one can always be removed).
    c.ok(&[
        "delete",
        "validatingwebhookconfiguration",
        "broken",
        "by-service",
    ]);
    c.ok(&["delete", "mutatingwebhookconfiguration", "mutate"]);
}

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/admission-webhook"
);

/// Builds examples/admission-webhook with the cargo running the tests (same target directory,
/// so a built tree makes this a no-op) and returns the binary's path.
fn build_example() -> std::path::PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let out = std::process::Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--message-format=json",
            "--manifest-path",
        ])
        .arg(std::path::Path::new(EXAMPLE).join("Cargo.toml"))
        .args(["-p", "admission-webhook", "--bin", "admission-webhook"])
        .output()
        .expect("running cargo build -p admission-webhook");
    assert!(
        out.status.success(),
        "cargo build -p admission-webhook failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|m| {
            (m["reason"] == "compiler-artifact" && m["target"]["name"] == "admission-webhook")
                .then(|| m["executable"].as_str().map(std::path::PathBuf::from))
                .flatten()
        })
        .expect("cargo named the admission-webhook executable")
}

/// The issue's "done when": a validating webhook served by a pod (behind a Service, TLS from a
/// mounted Secret) denies a forbidden object, and a mutating one adds a label.
#[test]
fn webhook_served_by_a_pod() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let binary = build_example();
    let image = support::images::binary_image_with(
        "admission-webhook",
        &[binary.as_path()],
        &[
            "/usr/local/bin/admission-webhook",
            "--cert",
            "/tls/tls.crt",
            "--key",
            "/tls/tls.key",
            "--port",
            "8443",
        ],
    );
    let node = support::node::Node::start("webhook-pod");
    let c = &node.cluster;

    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "webhook-demo-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).expect("CA certificate").pem();
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).expect("issuer");
    let key = KeyPair::generate().expect("serving key");
    let cert = CertificateParams::new(vec!["admission-webhook.webhook-demo.svc".to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("serving certificate");

    node.apply(&format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: webhook-demo
---
apiVersion: v1
kind: Secret
metadata:
  name: admission-webhook-tls
  namespace: webhook-demo
type: kubernetes.io/tls
data:
  tls.crt: {crt}
  tls.key: {key}
---
apiVersion: v1
kind: Pod
metadata:
  name: admission-webhook
  namespace: webhook-demo
  labels:
    app: admission-webhook
spec:
  containers:
  - name: server
    image: {image}
    ports:
    - containerPort: 8443
    volumeMounts:
    - name: tls
      mountPath: /tls
      readOnly: true
  volumes:
  - name: tls
    secret:
      secretName: admission-webhook-tls
---
apiVersion: v1
kind: Service
metadata:
  name: admission-webhook
  namespace: webhook-demo
spec:
  selector:
    app: admission-webhook
  ports:
  - port: 443
    targetPort: 8443
"#,
        crt = b64(&cert.pem()),
        key = b64(&key.serialize_pem()),
    ));
    wait_for("the webhook pod to serve", Duration::from_secs(90), || {
        let out = c.kubectl(&["logs", "-n", "webhook-demo", "admission-webhook"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("serving on :8443")
            .then_some(())
    });

    let hook = |kind: &str, name: &str, path: &str| {
        format!(
            "apiVersion: admissionregistration.k8s.io/v1\nkind: {kind}\nmetadata:\n  name: {name}\nwebhooks:\n- name: {name}.webhook-demo.example.com\n  clientConfig:\n    service:\n      namespace: webhook-demo\n      name: admission-webhook\n      path: {path}\n    caBundle: {ca}\n  rules:\n  - operations: [\"CREATE\", \"UPDATE\"]\n    apiGroups: [\"\"]\n    apiVersions: [\"v1\"]\n    resources: [\"configmaps\"]\n  namespaceSelector:\n    matchLabels:\n      webhook-demo: \"on\"\n  sideEffects: None\n  admissionReviewVersions: [\"v1\"]\n",
            ca = b64(&ca_pem)
        )
    };
    node.apply(&hook(
        "ValidatingWebhookConfiguration",
        "deny-forbidden",
        "/validate",
    ));
    node.apply(&hook(
        "MutatingWebhookConfiguration",
        "add-label",
        "/mutate",
    ));
    c.ok(&["create", "namespace", "target"]);
    c.ok(&["label", "namespace", "target", "webhook-demo=on"]);

    let err = wait_for("the pod's webhook to deny", Duration::from_secs(10), || {
        let (ok, _, err) = create(
            c,
            &configmap("target", "forbidden", &[("forbidden", "true")]),
            &[],
        );
        (!ok).then_some(err)
    });
    assert_eq!(
        err.trim(),
        r#"Error from server (Forbidden): error when creating "STDIN": admission webhook "deny-forbidden.webhook-demo.example.com" denied the request: objects labelled forbidden=true are not allowed"#
    );
    let (ok, _, err) = create(c, &configmap("target", "allowed", &[]), &[]);
    assert!(ok, "{err}");
    let labels =
        c.json(&["get", "configmap", "allowed", "-n", "target"])["metadata"]["labels"].clone();
    assert_eq!(labels["mutated"], "true", "{labels}");
    let logs = String::from_utf8_lossy(
        &c.kubectl(&["logs", "-n", "webhook-demo", "admission-webhook"])
            .stdout,
    )
    .into_owned();
    assert!(
        logs.contains("/validate CREATE forbidden -> allowed=false"),
        "{logs}"
    );
    assert!(
        logs.contains("/mutate CREATE allowed -> allowed=true"),
        "{logs}"
    );
    c.ok(&["delete", "validatingwebhookconfiguration", "deny-forbidden"]);
    c.ok(&["delete", "mutatingwebhookconfiguration", "add-label"]);
}
