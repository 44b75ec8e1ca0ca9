//! End-to-end tests of custom resources in the OpenAPI documents (issue 12): seed 004's CRD, with
//! descriptions, is published in `/openapi/v2` and `/openapi/v3` once Established, so that stock
//! kubectl (1.33 and 1.27) explains its fields and validates objects; deleting the CRD takes the
//! documents away.
mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::{Cluster, KUBECTL_NEW, KUBECTL_OLD, wait_for};

/// Seed 004's CRD (tests/seeds/004-hoges-crd.yaml) with descriptions and a nested field.
const HOGE_CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: hoges.stable.example.com
spec:
  group: stable.example.com
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          description: Hoge is the sample kind of seed 004.
          properties:
            spec:
              type: object
              description: HogeSpec is what the user wants of a hoge.
              properties:
                fuga:
                  type: string
                  description: Fuga names the hoge's fuga.
                piyo:
                  type: object
                  description: Piyo holds the nested settings.
                  properties:
                    size:
                      type: integer
                      description: Size of the piyo, in bytes.
  scope: Namespaced
  names:
    plural: hoges
    singular: hoge
    kind: Hoge
    shortNames:
      - hg
";

fn raw(c: &Cluster, path: &str) -> Value {
    serde_json::from_str(&c.ok(&["get", "--raw", path])).expect("JSON document")
}

fn v2_has_hoge(c: &Cluster) -> bool {
    raw(c, "/openapi/v2")["definitions"].get("com.example.stable.v1.Hoge").is_some()
}

fn v3_lists_hoges(c: &Cluster) -> bool {
    raw(c, "/openapi/v3")["paths"].get("apis/stable.example.com/v1").is_some()
}

fn explain(c: &Cluster, kubectl: &str, args: &[&str]) -> String {
    let mut all = vec!["explain"];
    all.extend(args);
    c.ok_with(kubectl, &all, None)
}

#[test]
fn crd_schemas_in_openapi_for_explain_and_validation() {
    let c = Cluster::start("crd-openapi");
    // Nothing custom before the CRD.
    assert!(!v2_has_hoge(&c) && !v3_lists_hoges(&c));

    c.apply(KUBECTL_NEW, HOGE_CRD);
    let start = Instant::now();
    wait_for("hoges Established", Duration::from_secs(10), || {
        let out = c.kubectl(&["get", "crd", "hoges.stable.example.com", "-o", "jsonpath={.status.conditions[?(@.type==\"Established\")].status}"]);
        (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
    });
    // Published within a second of being Established.
    wait_for("Hoge in /openapi/v2 and /openapi/v3", Duration::from_secs(1), || (v2_has_hoge(&c) && v3_lists_hoges(&c)).then_some(()));
    let published = start.elapsed();

    // The v2 definition as upstream names and builds it.
    let v2 = raw(&c, "/openapi/v2");
    let hoge = &v2["definitions"]["com.example.stable.v1.Hoge"];
    assert_eq!(hoge["x-kubernetes-group-version-kind"][0]["kind"], "Hoge", "{hoge}");
    assert_eq!(hoge["properties"]["metadata"]["$ref"], "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
    assert_eq!(hoge["properties"]["spec"]["properties"]["fuga"]["description"], "Fuga names the hoge's fuga.");
    assert!(v2["definitions"]["com.example.stable.v1.HogeList"].is_object());
    let patch = &v2["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/hoges/{name}"]["patch"];
    assert_eq!(patch["operationId"], "patchStableExampleComV1NamespacedHoge");
    // The per group/version v3 document.
    let url = raw(&c, "/openapi/v3")["paths"]["apis/stable.example.com/v1"]["serverRelativeURL"].as_str().unwrap().to_string();
    assert!(url.starts_with("/openapi/v3/apis/stable.example.com/v1?hash="), "{url}");
    let v3 = raw(&c, &url);
    assert!(v3["components"]["schemas"]["com.example.stable.v1.Hoge"].is_object(), "{v3}");

    // kubectl explain, from OpenAPI v3 (1.33 and 1.27) and v2 (1.33's plaintext-openapiv2).
    for kubectl in [KUBECTL_NEW, KUBECTL_OLD] {
        let out = explain(&c, kubectl, &["hoges.spec"]);
        for want in ["Hoge", "HogeSpec is what the user wants of a hoge.", "fuga", "<string>", "Fuga names the hoge's fuga.", "piyo", "<Object>"] {
            assert!(out.contains(want), "{kubectl} explain hoges.spec: no {want:?} in\n{out}");
        }
        let out = explain(&c, kubectl, &["hg", "--recursive"]);
        for want in ["Hoge is the sample kind of seed 004.", "apiVersion", "metadata", "spec", "fuga", "piyo", "size"] {
            assert!(out.contains(want), "{kubectl} explain hg --recursive: no {want:?} in\n{out}");
        }
        let out = explain(&c, kubectl, &["hoge.spec.piyo.size"]);
        assert!(out.contains("Size of the piyo, in bytes.") && out.contains("<integer>"), "{kubectl}: {out}");
    }
    let out = explain(&c, KUBECTL_NEW, &["hoges.spec", "--output", "plaintext-openapiv2"]);
    assert!(out.contains("Fuga names the hoge's fuga.") && out.contains("RESOURCE: spec <Object>"), "{out}");

    // Validation: the server advertises fieldValidation on the kind's operations, so kubectl
    // leaves strict checking to the server and shows its error.
    let param = |op: &Value| op["parameters"].as_array().is_some_and(|ps| ps.iter().any(|p| p["name"] == "fieldValidation"));
    assert!(param(patch), "{patch}");
    let unknown = "apiVersion: stable.example.com/v1
kind: Hoge
metadata:
  name: strict-hoge
spec:
  fuga: hello
  foo: bar
";
    for kubectl in [KUBECTL_NEW, KUBECTL_OLD] {
        let out = c.kubectl_with(kubectl, &["apply", "--validate=strict", "-f", "-"], Some(unknown));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{kubectl}: an unknown field was accepted");
        assert!(stderr.contains("strict decoding error: unknown field \"spec.foo\""), "{kubectl}: {stderr}");
    }
    // A well-formed object still goes in.
    c.ok_with(KUBECTL_OLD, &["apply", "--validate=strict", "-f", "-"], Some(&unknown.replace("  foo: bar\n", "")));

    // A CRD whose names are not accepted (its singular is taken) is not Established: not published.
    let other = HOGE_CRD
        .replace("hoges.stable.example.com", "others.stable.example.com")
        .replace("plural: hoges", "plural: others")
        .replace("kind: Hoge", "kind: Other")
        .replace("      - hg\n", "      - ot\n");
    c.apply(KUBECTL_NEW, &other);
    wait_for("others NamesAccepted=False", Duration::from_secs(10), || {
        let out = c.kubectl(&["get", "crd", "others.stable.example.com", "-o", "jsonpath={.status.conditions[?(@.type==\"NamesAccepted\")].status}"]);
        (String::from_utf8_lossy(&out.stdout) == "False").then_some(())
    });
    assert!(raw(&c, "/openapi/v2")["definitions"].get("com.example.stable.v1.Other").is_none());
    let v3 = raw(&c, raw(&c, "/openapi/v3")["paths"]["apis/stable.example.com/v1"]["serverRelativeURL"].as_str().unwrap());
    assert!(v3["components"]["schemas"].get("com.example.stable.v1.Other").is_none());
    c.ok(&["delete", "crd", "others.stable.example.com"]);

    // Deleting the CRD takes its documents away.
    c.ok(&["delete", "crd", "hoges.stable.example.com"]);
    assert!(!v2_has_hoge(&c), "Hoge still in /openapi/v2 after the CRD was deleted");
    assert!(!v3_lists_hoges(&c), "stable.example.com/v1 still in the /openapi/v3 index");
    let out = c.kubectl(&["get", "--raw", &url]);
    assert!(!out.status.success(), "the v3 document is still served");
    let out = c.kubectl(&["explain", "hoges"]);
    assert!(!out.status.success(), "explain still knows hoges");
    eprintln!("published {published:?} after the CRD was applied");
}
