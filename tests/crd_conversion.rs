//! Webhook conversion of custom resources end to end: a CRD with two versions (v1 keeps
//! `spec.size` as a string, v2 stores `spec.replicas` as an integer) names a conversion webhook of
//! the test's own (HTTPS on 127.0.0.1, CA made here, `caBundle`). Stock kubectl then reads and
//! writes either version and sees the webhook's conversion; a list is converted in one review,
//! a watch's events too; a webhook that refuses or cannot be reached gives upstream's 500 texts.

mod support;

use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::webhook::WebhookServer;
use support::{Cluster, KUBECTL_NEW, wait_for};

/// Converts Widgets between v1 (`spec.size`, a string) and v2 (`spec.replicas`, an integer);
/// refuses `size: bad`. Labels every converted object `converted-to=<version>`.
async fn convert(path: String, review: Value) -> (u16, Bytes) {
    if path != "/convert" {
        return (404, Bytes::from_static(b"{}"));
    }
    let request = &review["request"];
    let desired = request["desiredAPIVersion"].as_str().unwrap_or_default().to_string();
    let mut out = Vec::new();
    let mut failure = None;
    for obj in request["objects"].as_array().into_iter().flatten() {
        let mut o = obj.clone();
        match desired.as_str() {
            "conv.example.com/v2" => {
                let size = o["spec"]["size"].as_str().unwrap_or("0").to_string();
                match size.parse::<i64>() {
                    Ok(n) => o["spec"] = json!({"replicas": n}),
                    Err(_) => failure = Some(format!("cannot convert size {size:?} to replicas")),
                }
            }
            _ => {
                let n = o["spec"]["replicas"].as_i64().unwrap_or(0);
                o["spec"] = json!({"size": n.to_string()});
            }
        }
        o["apiVersion"] = json!(desired);
        o["metadata"]["labels"]["converted-to"] = json!(desired.rsplit('/').next().unwrap_or_default());
        out.push(o);
    }
    let result = match failure {
        Some(m) => json!({"status": "Failure", "message": m}),
        None => json!({"status": "Success"}),
    };
    let answer = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview", "response": {"uid": request["uid"], "result": result, "convertedObjects": out}});
    (200, Bytes::from(answer.to_string()))
}

fn crd(url: &str, ca_bundle: &str) -> String {
    format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.conv.example.com
spec:
  group: conv.example.com
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget}}
  conversion:
    strategy: Webhook
    webhook:
      conversionReviewVersions: ["v1"]
      clientConfig:
        url: "{url}"
        caBundle: "{ca_bundle}"
  versions:
  - name: v1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {{type: object, properties: {{size: {{type: string}}}}}}
  - name: v2
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {{type: object, properties: {{replicas: {{type: integer}}}}}}
"#
    )
}

fn widget_v1(name: &str, size: &str) -> String {
    format!("apiVersion: conv.example.com/v1\nkind: Widget\nmetadata: {{name: {name}, namespace: default}}\nspec: {{size: \"{size}\"}}\n")
}

/// The ConversionReview requests the webhook received.
fn reviews(hooks: &WebhookServer) -> Vec<Value> {
    hooks.seen("/convert").into_iter().map(|(_, body)| body["request"].clone()).collect()
}

#[test]
fn custom_resources_are_converted_by_the_crds_webhook() {
    let hooks = WebhookServer::start(Arc::new(|path, review| Box::pin(convert(path, review))));
    let c = Cluster::start("crd-conversion");
    let url = format!("https://127.0.0.1:{}/convert", hooks.port);
    c.apply(KUBECTL_NEW, &crd(&url, &hooks.ca_bundle()));
    wait_for("widgets served in both versions", Duration::from_secs(10), || {
        let v1 = c.kubectl(&["get", "widgets.v1.conv.example.com"]);
        let v2 = c.kubectl(&["get", "widgets.v2.conv.example.com"]);
        (v1.status.success() && v2.status.success()).then_some(())
    });

    // Written as v1, stored as v2: the webhook converts on the way in.
    c.apply(KUBECTL_NEW, &widget_v1("w1", "3"));
    let create = reviews(&hooks);
    assert!(
        create.iter().any(|r| r["desiredAPIVersion"] == "conv.example.com/v2" && r["objects"][0]["spec"]["size"] == "3"),
        "the create was converted to the storage version v2: {create:?}"
    );
    assert!(create.iter().all(|r| r["uid"].as_str().is_some_and(|u| !u.is_empty())), "every review has a uid");
    let query = hooks.seen("/convert")[0].0.clone();
    assert_eq!(query, "timeout=30s", "upstream's conversion timeout is on the URL");

    // Read as v2: the stored object as it is; as v1: converted back by the webhook.
    let v2 = c.json(&["get", "widgets.v2.conv.example.com", "w1"]);
    assert_eq!(v2["apiVersion"], "conv.example.com/v2");
    assert_eq!(v2["spec"], json!({"replicas": 3}), "stored as v2: {v2}");
    assert_eq!(v2["metadata"]["labels"]["converted-to"], "v2", "labels the webhook set are kept: {v2}");
    let v1 = c.json(&["get", "widgets.v1.conv.example.com", "w1"]);
    assert_eq!(v1["apiVersion"], "conv.example.com/v1");
    assert_eq!(v1["spec"], json!({"size": "3"}), "read back as v1: {v1}");
    assert_eq!(v1["metadata"]["uid"], v2["metadata"]["uid"], "the metadata is the stored object's");
    assert_eq!(v1["metadata"]["resourceVersion"], v2["metadata"]["resourceVersion"]);

    // A list as v1 goes to the webhook as one review.
    for (n, size) in [("w2", "4"), ("w3", "5")] {
        c.apply(KUBECTL_NEW, &widget_v1(n, size));
    }
    let before = reviews(&hooks).len();
    let list = c.json(&["get", "widgets.v1.conv.example.com"]);
    let sizes: Vec<&str> = list["items"].as_array().expect("items").iter().filter_map(|o| o["spec"]["size"].as_str()).collect();
    assert_eq!(sizes, ["3", "4", "5"], "{list}");
    let after = reviews(&hooks);
    assert_eq!(after.len(), before + 1, "one review for the whole list");
    assert_eq!(after[before]["objects"].as_array().map(Vec::len), Some(3));
    assert_eq!(after[before]["desiredAPIVersion"], "conv.example.com/v1");

    // Updates through v1 (kubectl patch) land converted in storage.
    c.ok(&["patch", "widgets.v1.conv.example.com", "w2", "--type=merge", "-p", r#"{"spec":{"size":"7"}}"#]);
    let w2 = c.json(&["get", "widgets.v2.conv.example.com", "w2"]);
    assert_eq!(w2["spec"], json!({"replicas": 7}), "{w2}");

    // A watch as v1 sends converted objects (the initial ADDED events, then the stream ends at
    // its timeout).
    let watched = c.ok(&["get", "--raw", "/apis/conv.example.com/v1/namespaces/default/widgets?watch=1&timeoutSeconds=2"]);
    let events: Vec<Value> = watched.lines().map(|l| serde_json::from_str(l).expect("a watch event")).collect();
    assert_eq!(events.len(), 3, "{watched}");
    assert!(events.iter().all(|e| e["type"] == "ADDED" && e["object"]["apiVersion"] == "conv.example.com/v1" && e["object"]["spec"]["size"].is_string()), "{watched}");

    // The webhook refuses: upstream's 500 with its message; nothing is stored.
    let out = c.kubectl_with(KUBECTL_NEW, &["apply", "-f", "-"], Some(&widget_v1("bad", "bad")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("Internal error occurred: conversion webhook for conv.example.com/v1, Kind=Widget failed: cannot convert size \"bad\" to replicas"),
        "{err}"
    );
    let err = c.fails(&["get", "widgets.v2.conv.example.com", "bad"]);
    assert!(err.contains("NotFound"), "{err}");

    // The webhook cannot be reached: reads that need conversion fail with client-go's text;
    // the storage version still reads.
    let dead = format!("https://127.0.0.1:{}/convert", support::free_port());
    c.apply(KUBECTL_NEW, &crd(&dead, &hooks.ca_bundle()));
    let err = wait_for("the CRD's new webhook in use", Duration::from_secs(10), || {
        let out = c.kubectl(&["get", "widgets.v1.conv.example.com", "w1"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (!out.status.success()).then_some(err)
    });
    assert!(
        err.contains("conversion webhook for conv.example.com/v2, Kind=Widget failed: Post \"")
            && err.contains("/convert?timeout=30s\": dial tcp 127.0.0.1:")
            && err.contains("connect: connection refused"),
        "{err}"
    );
    assert_eq!(c.json(&["get", "widgets.v2.conv.example.com", "w1"])["spec"], json!({"replicas": 3}));
}
