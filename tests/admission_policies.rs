//! ValidatingAdmissionPolicies end to end with stock kubectl: upstream's documented example
//! (a replica limit for Deployments in namespaces labelled `environment=test`, denied with
//! upstream's text), params from a ConfigMap with a messageExpression, the Warn action,
//! matchConditions, variables, failurePolicy on an expression that cannot be evaluated, and bad
//! policies refused with upstream's causes.

mod support;

use std::time::Duration;
use support::{Cluster, KUBECTL_NEW, KUBECTL_OLD, wait_for};

const POLICY: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: demo-policy.example.com
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: ["apps"]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["deployments"]
  validations:
  - expression: "object.spec.replicas <= 5"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: demo-binding-test.example.com
spec:
  policyName: demo-policy.example.com
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels:
        environment: test
"#;

fn deployment(ns: &str, name: &str, replicas: u32, labels: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: c, image: busybox}}]}}\n"
    )
}

/// `kubectl create -f -`: (success, stdout, stderr).
fn create(c: &Cluster, kubectl: &str, manifest: &str) -> (bool, String, String) {
    let out = c.kubectl_with(kubectl, &["create", "-f", "-"], Some(manifest));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Waits until creating `manifest` gives `want` (policies apply within a second of their write).
fn until_denied(c: &Cluster, manifest: &str, want: &str) -> String {
    wait_for(&format!("a denial containing {want:?}"), Duration::from_secs(10), || {
        let (ok, _, err) = create(c, KUBECTL_NEW, manifest);
        assert!(!ok || !err.contains("denied") || err.contains(want), "unexpected denial: {err}");
        if ok {
            // Created before the policy applied: remove it and try again.
            c.kubectl_with(KUBECTL_NEW, &["delete", "-f", "-", "--wait=false"], Some(manifest));
            return None;
        }
        err.contains(want).then_some(err)
    })
}

#[test]
fn validating_admission_policies() {
    let c = Cluster::start("admission-policies");
    c.ok(&["create", "namespace", "test"]);
    c.ok(&["label", "namespace", "test", "environment=test"]);
    c.apply(KUBECTL_NEW, POLICY);

    // Upstream's documented denial, as kubectl prints it.
    let err = until_denied(&c, &deployment("test", "big", 6, ""), "denied request");
    assert!(
        err.contains("The deployments \"big\" is invalid: : ValidatingAdmissionPolicy 'demo-policy.example.com' with binding 'demo-binding-test.example.com' denied request: failed expression: object.spec.replicas <= 5"),
        "{err}"
    );
    let (ok, _, err) = create(&c, KUBECTL_OLD, &deployment("test", "small", 3, ""));
    assert!(ok, "within the limit: {err}");
    // Updates are checked too.
    let err = c.fails(&["patch", "deployment", "small", "-n", "test", "--type=merge", "-p", r#"{"spec":{"replicas":9}}"#]);
    assert!(err.contains("failed expression: object.spec.replicas <= 5"), "{err}");
    // Other namespaces are not bound.
    let (ok, _, err) = create(&c, KUBECTL_NEW, &deployment("default", "big", 6, ""));
    assert!(ok, "namespace default is not selected: {err}");
    let got = c.ok(&["get", "validatingadmissionpolicies"]);
    assert!(got.starts_with("NAME") && got.contains("demo-policy.example.com") && got.contains("VALIDATIONS"), "{got}");
    let got = c.ok(&["get", "validatingadmissionpolicybindings"]);
    assert!(got.contains("demo-binding-test.example.com") && got.contains("demo-policy.example.com"), "{got}");

    // Params from a ConfigMap, a message expression, variables and a match condition; Warn.
    c.ok(&["create", "configmap", "limits", "-n", "default", "--from-literal=max=2"]);
    c.apply(
        KUBECTL_NEW,
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: param-limit}
spec:
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - {apiGroups: ["apps"], apiVersions: ["v1"], operations: ["CREATE"], resources: ["deployments"]}
  matchConditions:
  - name: only-limited
    expression: "has(object.metadata.labels) && 'limited' in object.metadata.labels"
  variables:
  - name: max
    expression: "int(params.data.max)"
  validations:
  - expression: "object.spec.replicas <= variables.max"
    messageExpression: "'replicas ' + string(object.spec.replicas) + ' is more than ' + params.data.max"
    reason: Forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: param-limit-warn}
spec:
  policyName: param-limit
  validationActions: [Warn]
  paramRef: {name: limits, namespace: default, parameterNotFoundAction: Deny}
"#,
    );
    let warned = wait_for("the Warn binding's warning", Duration::from_secs(10), || {
        let (ok, _, err) = create(&c, KUBECTL_NEW, &deployment("default", "warned", 3, "limited: \"yes\""));
        assert!(ok, "Warn does not deny: {err}");
        c.kubectl(&["delete", "deployment", "warned", "--wait=false"]);
        err.contains("Warning:").then_some(err)
    });
    assert!(
        warned.contains("Warning: Validation failed for ValidatingAdmissionPolicy 'param-limit' with binding 'param-limit-warn': replicas 3 is more than 2"),
        "{warned}"
    );
    // Not labelled `limited`: the match condition leaves it alone.
    let (ok, _, err) = create(&c, KUBECTL_NEW, &deployment("default", "unlimited", 3, ""));
    assert!(ok && !err.contains("param-limit"), "{err}");

    // An expression that cannot be evaluated: failurePolicy Fail denies, Ignore lets it through.
    c.apply(
        KUBECTL_NEW,
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: broken}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["configmaps"]}
  validations:
  - expression: "object.data.missing == 'x'"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: broken}
spec:
  policyName: broken
  validationActions: [Deny]
  matchResources:
    objectSelector: {matchLabels: {check: "yes"}}
"#,
    );
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: checked, labels: {check: \"yes\"}}\ndata: {a: b}\n";
    let err = until_denied(&c, cm, "resulted in error");
    assert!(
        err.contains("ValidatingAdmissionPolicy 'broken' with binding 'broken' denied request: expression 'object.data.missing == 'x'' resulted in error: no such key: missing"),
        "{err}"
    );
    c.ok(&["patch", "validatingadmissionpolicy", "broken", "--type=merge", "-p", r#"{"spec":{"failurePolicy":"Ignore"}}"#]);
    wait_for("failurePolicy Ignore in effect", Duration::from_secs(10), || {
        let (ok, _, _) = create(&c, KUBECTL_NEW, cm);
        ok.then_some(())
    });

    // Bad policies and bindings: upstream's causes.
    let (ok, _, err) = create(
        &c,
        KUBECTL_NEW,
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata: {name: bad}\nspec:\n  matchConstraints: {resourceRules: [{apiGroups: [\"\"], apiVersions: [v1], operations: [CREATE], resources: [pods]}]}\n  validations: [{expression: \"object.spec.replicas <=\"}]\n",
    );
    assert!(!ok);
    assert!(err.contains("spec.validations[0].expression: Invalid value: \"object.spec.replicas <=\": compilation failed: ERROR: <input>:1:"), "{err}");
    let (ok, _, err) = create(
        &c,
        KUBECTL_NEW,
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata: {name: bad}\nspec: {policyName: demo-policy.example.com, validationActions: [Deny, Warn]}\n",
    );
    assert!(!ok);
    assert!(err.contains("spec.validationActions: Invalid value: []string{\"Deny\", \"Warn\"}: must not contain both Deny and Warn"), "{err}");
    let (ok, _, err) = create(&c, KUBECTL_NEW, "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata: {name: bad}\nspec: {policyName: x}\n");
    assert!(!ok);
    assert!(err.contains("spec.validationActions: Required value: at least one validation action is required"), "{err}");
}
