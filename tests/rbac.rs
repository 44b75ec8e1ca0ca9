//! RBAC under `--authorization-mode=Node,RBAC` with stock kubectl: upstream's 403 for a user
//! without bindings, a RoleBinding to `view` taking effect at once and only in its namespace,
//! `kubectl auth can-i` (and `--list`), SubjectAccessReview, escalation prevention (roles and
//! bindings), validation (roleRef immutable, 422 causes), ClusterRole aggregation, and the
//! bootstrap policy reconciled when the server restarts.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::{Cluster, KUBECTL_NEW, wait_for};

fn start(name: &str) -> Cluster {
    Cluster::start_with(name, &["--authorization-mode=Node,RBAC"])
}

/// A kubeconfig for a person (a client certificate from the cluster CA: CN user, O groups).
fn user_kubeconfig(c: &Cluster, user: &str, groups: &[&str], namespace: &str) -> PathBuf {
    let path = c.data_dir().join(format!("{user}.yaml"));
    let data = c.data_dir().to_str().unwrap().to_string();
    let mut args = vec![
        "kubeconfig",
        "--user",
        user,
        "--namespace",
        namespace,
        "-d",
        &data,
        "-o",
    ];
    args.push(path.to_str().unwrap());
    for g in groups {
        args.extend(["--group", g]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_kaji"))
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .expect("running kaji kubeconfig");
    assert!(
        out.status.success(),
        "kaji kubeconfig: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

fn kubectl(c: &Cluster, kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(KUBECTL_NEW)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env("HOME", c.data_dir())
        .env(
            "KUBECACHEDIR",
            c.data_dir()
                .join(format!("cache-{}", kubeconfig.display()).replace('/', "_")),
        )
        .stdin(Stdio::null())
        .output()
        .expect("running kubectl")
}

fn ok(c: &Cluster, kc: &Path, args: &[&str]) -> String {
    let out = kubectl(c, kc, args);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}\nserver log tail:\n{}",
        String::from_utf8_lossy(&out.stderr),
        support::tail(&c.log(), 20)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(c: &Cluster, kc: &Path, args: &[&str]) -> String {
    let out = kubectl(c, kc, args);
    assert!(
        !out.status.success(),
        "kubectl {args:?} should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A table's lines with runs of spaces folded (kubectl pads columns).
fn folded(s: &str) -> Vec<String> {
    s.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn user_is_forbidden_until_a_rolebinding_and_only_in_its_namespace() {
    let c = start("rbac-user");
    c.ok(&["create", "namespace", "dev"]);
    c.ok(&["create", "namespace", "other"]);
    let alice = user_kubeconfig(&c, "alice", &[], "dev");

    let err = fails(&c, &alice, &["get", "pods"]);
    assert_eq!(
        err.trim(),
        r#"Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "dev""#
    );
    assert_eq!(
        fails_stdout(&c, &alice, &["auth", "can-i", "list", "pods"]),
        "no"
    );

    // The binding counts for the very next request (no waiting).
    c.ok(&[
        "create",
        "rolebinding",
        "alice-view",
        "--clusterrole=view",
        "--user=alice",
        "-n",
        "dev",
    ]);
    assert_eq!(ok(&c, &alice, &["get", "pods"]).trim(), "");
    assert_eq!(
        ok(&c, &alice, &["auth", "can-i", "list", "pods"]).trim(),
        "yes"
    );
    assert_eq!(
        ok(&c, &alice, &["auth", "can-i", "get", "pods/log"]).trim(),
        "yes"
    );
    assert_eq!(
        fails_stdout(&c, &alice, &["auth", "can-i", "delete", "pods"]),
        "no"
    );
    assert_eq!(
        fails_stdout(&c, &alice, &["auth", "can-i", "get", "secrets"]),
        "no"
    );
    let err = fails(&c, &alice, &["get", "pods", "-n", "other"]);
    assert!(
        err.contains(
            r#"User "alice" cannot list resource "pods" in API group "" in the namespace "other""#
        ),
        "{err}"
    );
    let err = fails(&c, &alice, &["create", "configmap", "x"]);
    assert!(
        err.contains(r#"configmaps is forbidden: User "alice" cannot create resource "configmaps" in API group "" in the namespace "dev""#),
        "{err}"
    );

    // can-i --list: upstream's table of the rules of the user in the namespace.
    let list = folded(&ok(&c, &alice, &["auth", "can-i", "--list"]));
    assert_eq!(list[0], "Resources Non-Resource URLs Resource Names Verbs");
    for want in [
        "selfsubjectaccessreviews.authorization.k8s.io [] [] [create]",
        "selfsubjectrulesreviews.authorization.k8s.io [] [] [create]",
        "pods [] [] [get list watch]",
        "pods/log [] [] [get list watch]",
        "deployments.apps [] [] [get list watch]",
        "[/healthz] [] [get]",
        "[/version] [] [get]",
        "[/apis/*] [] [get]",
    ] {
        assert!(
            list.iter().any(|l| l == want),
            "{want:?} missing from {list:#?}"
        );
    }
    assert!(!list.iter().any(|l| l.starts_with("secrets ")), "{list:#?}");
    let other = folded(&ok(&c, &alice, &["auth", "can-i", "--list", "-n", "other"]));
    assert!(!other.iter().any(|l| l.starts_with("pods ")), "{other:#?}");

    // The same for a service account, asked by the admin impersonating it.
    c.ok(&["create", "serviceaccount", "robot", "-n", "dev"]);
    c.ok(&[
        "create",
        "rolebinding",
        "robot-view",
        "--clusterrole=view",
        "--serviceaccount=dev:robot",
        "-n",
        "dev",
    ]);
    let sa = "--as=system:serviceaccount:dev:robot";
    let list = folded(&c.ok(&["auth", "can-i", "--list", sa, "-n", "dev"]));
    for want in [
        "pods [] [] [get list watch]",
        "[/.well-known/openid-configuration] [] [get]",
        "[/healthz] [] [get]",
    ] {
        assert!(
            list.iter().any(|l| l == want),
            "{want:?} missing from {list:#?}"
        );
    }
    assert_eq!(
        c.ok(&["auth", "can-i", "watch", "pods", sa, "-n", "dev"])
            .trim(),
        "yes"
    );
    let out = c.kubectl(&["auth", "can-i", "list", "pods", sa, "-n", "other"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");

    // SubjectAccessReview (the admin asks about alice) names the binding that allows.
    let sar = r#"{"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "metadata": {},
        "spec": {"user": "alice", "resourceAttributes": {"namespace": "dev", "verb": "watch", "resource": "pods"}}}"#;
    let out: Value = serde_json::from_str(&c.ok_with(
        KUBECTL_NEW,
        &["create", "-f", "-", "-o", "json"],
        Some(sar),
    ))
    .unwrap();
    assert_eq!(out["status"]["allowed"], true);
    assert_eq!(
        out["status"]["reason"],
        r#"RBAC: allowed by RoleBinding "alice-view/dev" of ClusterRole "view" to User "alice""#
    );
    let sar = r#"{"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "metadata": {},
        "spec": {"user": "alice", "nonResourceAttributes": {"path": "/metrics", "verb": "get"}}}"#;
    let out: Value = serde_json::from_str(&c.ok_with(
        KUBECTL_NEW,
        &["create", "-f", "-", "-o", "json"],
        Some(sar),
    ))
    .unwrap();
    assert_eq!(out["status"]["allowed"], false);
    // A binding to a missing role is named in the reason, as upstream.
    c.ok(&[
        "create",
        "rolebinding",
        "dangling",
        "--clusterrole=no-such-role",
        "--user=bob",
        "-n",
        "dev",
    ]);
    let sar = r#"{"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "metadata": {},
        "spec": {"user": "bob", "resourceAttributes": {"namespace": "dev", "verb": "get", "resource": "pods"}}}"#;
    let out: Value = serde_json::from_str(&c.ok_with(
        KUBECTL_NEW,
        &["create", "-f", "-", "-o", "json"],
        Some(sar),
    ))
    .unwrap();
    assert_eq!(out["status"]["allowed"], false);
    assert_eq!(
        out["status"]["reason"],
        r#"RBAC: clusterrole.rbac.authorization.k8s.io "no-such-role" not found"#
    );
    let bad = r#"{"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "metadata": {}, "spec": {"resourceAttributes": {"verb": "get"}}}"#;
    let out = c.kubectl_with(KUBECTL_NEW, &["create", "-f", "-"], Some(bad));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "spec.user: Invalid value: \"\": at least one of user or group must be specified"
        ),
        "{err}"
    );

    // Deleting the binding takes the rights away at once.
    c.ok(&["delete", "rolebinding", "alice-view", "-n", "dev"]);
    let err = fails(&c, &alice, &["get", "pods"]);
    assert!(err.contains("Forbidden"), "{err}");

    // A group binding: a member of the group gets the rights.
    let carol = user_kubeconfig(&c, "carol", &["team-a"], "dev");
    c.ok(&[
        "create",
        "clusterrolebinding",
        "team-a-view",
        "--clusterrole=view",
        "--group=team-a",
    ]);
    assert_eq!(ok(&c, &carol, &["get", "pods", "-n", "other"]).trim(), "");
}

/// kubectl auth can-i answering "no" exits 1 with "no" on stdout.
fn fails_stdout(c: &Cluster, kc: &Path, args: &[&str]) -> String {
    let out = kubectl(c, kc, args);
    assert!(!out.status.success(), "kubectl {args:?} should have failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn escalation_is_refused_and_bindings_are_validated() {
    let c = start("rbac-escalation");
    c.ok(&["create", "namespace", "dev"]);
    let alice = user_kubeconfig(&c, "alice", &[], "dev");
    c.ok(&[
        "create",
        "rolebinding",
        "alice-admin",
        "--clusterrole=admin",
        "--user=alice",
        "-n",
        "dev",
    ]);
    // admin aggregates edit and view (the aggregation controller fills them in).
    wait_for(
        "admin to aggregate its rules",
        Duration::from_secs(20),
        || {
            kubectl(&c, &alice, &["get", "pods"])
                .status
                .success()
                .then_some(())
        },
    );

    // A Role granting what alice holds is fine; more than that is upstream's 403.
    ok(
        &c,
        &alice,
        &[
            "create",
            "role",
            "pod-reader",
            "--verb=get,list",
            "--resource=pods",
        ],
    );
    let err = fails(
        &c,
        &alice,
        &[
            "create",
            "role",
            "quota-writer",
            "--verb=create,delete",
            "--resource=resourcequotas,pods",
        ],
    );
    assert_eq!(
        err.trim(),
        "Error from server (Forbidden): roles.rbac.authorization.k8s.io \"quota-writer\" is forbidden: user \"alice\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"resourcequotas\"], Verbs:[\"create\" \"delete\"]}"
    );
    // Binding a role alice holds (view is within admin) is fine; cluster-admin is not.
    ok(
        &c,
        &alice,
        &[
            "create",
            "rolebinding",
            "bob-view",
            "--clusterrole=view",
            "--user=bob",
        ],
    );
    let err = fails(
        &c,
        &alice,
        &[
            "create",
            "rolebinding",
            "bob-admin",
            "--clusterrole=cluster-admin",
            "--user=bob",
        ],
    );
    assert!(
        err.contains("rolebindings.rbac.authorization.k8s.io \"bob-admin\" is forbidden: user \"alice\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}"),
        "{err}"
    );
    // Cluster-scoped objects are out of reach of a namespaced admin.
    let err = fails(
        &c,
        &alice,
        &[
            "create",
            "clusterrole",
            "x",
            "--verb=get",
            "--resource=pods",
        ],
    );
    assert!(
        err.contains(r#"User "alice" cannot create resource "clusterroles""#),
        "{err}"
    );
    // The `bind` verb on a role lets a user bind it without holding its rules; `escalate`
    // lets one write a role granting more.
    c.ok(&[
        "create",
        "clusterrole",
        "binder",
        "--verb=bind,escalate",
        "--resource=clusterroles,roles",
    ]);
    c.ok(&[
        "create",
        "rolebinding",
        "alice-binder",
        "--clusterrole=binder",
        "--user=alice",
        "-n",
        "dev",
    ]);
    ok(
        &c,
        &alice,
        &[
            "create",
            "rolebinding",
            "bob-admin",
            "--clusterrole=cluster-admin",
            "--user=bob",
        ],
    );
    ok(
        &c,
        &alice,
        &[
            "create",
            "role",
            "quota-writer",
            "--verb=create,delete",
            "--resource=resourcequotas",
        ],
    );

    // roleRef never changes (422), whoever asks.
    let out = c.kubectl(&[
        "patch",
        "rolebinding",
        "alice-admin",
        "-n",
        "dev",
        "--type=merge",
        "-p",
        r#"{"roleRef":{"name":"edit"}}"#,
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        r#"The RoleBinding "alice-admin" is invalid: roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", Name:"edit"}: cannot change roleRef"#
    );
    // Malformed objects: upstream's causes.
    let role = r#"{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "bad", "namespace": "dev"},
        "rules": [{"resources": ["pods"]}, {"verbs": ["get"], "nonResourceURLs": ["/x"]}]}"#;
    let out = c.kubectl_with(KUBECTL_NEW, &["create", "-f", "-"], Some(role));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "The Role \"bad\" is invalid: \n* rules[0].verbs: Required value: verbs must contain at least one value\n* rules[0].apiGroups: Required value: resource rules must supply at least one api group\n* rules[1].nonResourceURLs: Invalid value: []string{\"/x\"}: namespaced rules cannot apply to non-resource URLs"
    );
    let crb = r#"{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "bad"},
        "roleRef": {"kind": "Role", "name": "x"}, "subjects": [{"kind": "ServiceAccount", "name": "x"}, {"kind": "Robot", "name": "r"}]}"#;
    let out = c.kubectl_with(KUBECTL_NEW, &["create", "-f", "-"], Some(crb));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "The ClusterRoleBinding \"bad\" is invalid: \n* roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"\n* subjects[0].namespace: Required value\n* subjects[1].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\""
    );
}

fn rules_of(c: &Cluster, role: &str) -> Vec<Value> {
    c.json(&["get", "clusterrole", role])["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn grants_widgets(rules: &[Value]) -> bool {
    rules
        .iter()
        .any(|r| r["apiGroups"][0] == "example.com" && r["resources"][0] == "widgets")
}

#[test]
fn aggregation_extends_view_edit_and_admin() {
    let c = start("rbac-aggregation");
    let role = r#"{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "widget-reader", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "list", "watch"]}]}"#;
    c.ok_with(KUBECTL_NEW, &["create", "-f", "-"], Some(role));
    for r in ["view", "edit", "admin"] {
        wait_for(
            &format!("{r} to include the widget rule"),
            Duration::from_secs(20),
            || grants_widgets(&rules_of(&c, r)).then_some(()),
        );
    }
    // A user bound to view may read widgets (the authorizer follows the aggregated role).
    c.ok(&["create", "namespace", "dev"]);
    c.ok(&[
        "create",
        "rolebinding",
        "v",
        "--clusterrole=view",
        "--user=dave",
        "-n",
        "dev",
    ]);
    let sar = r#"{"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "metadata": {},
        "spec": {"user": "dave", "resourceAttributes": {"namespace": "dev", "verb": "list", "group": "example.com", "resource": "widgets"}}}"#;
    let out: Value = serde_json::from_str(&c.ok_with(
        KUBECTL_NEW,
        &["create", "-f", "-", "-o", "json"],
        Some(sar),
    ))
    .unwrap();
    assert_eq!(
        out["status"]["reason"],
        r#"RBAC: allowed by RoleBinding "v/dev" of ClusterRole "view" to User "dave""#
    );
    // Removing the label takes the rules away again.
    c.ok(&[
        "label",
        "clusterrole",
        "widget-reader",
        "rbac.authorization.k8s.io/aggregate-to-view-",
    ]);
    wait_for(
        "view to drop the widget rule",
        Duration::from_secs(20),
        || (!grants_widgets(&rules_of(&c, "view"))).then_some(()),
    );
    // An aggregated role's own rules are the controller's: an edit is put back.
    c.ok(&[
        "patch",
        "clusterrole",
        "view",
        "--type=merge",
        "-p",
        r#"{"rules":[]}"#,
    ]);
    wait_for(
        "view's rules to be aggregated again",
        Duration::from_secs(20),
        || {
            rules_of(&c, "view")
                .iter()
                .any(|r| {
                    r["resources"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x == "pods"))
                })
                .then_some(())
        },
    );
}

#[test]
fn bootstrap_policy_is_created_and_reconciled_at_restart() {
    let mut c = start("rbac-bootstrap");
    let basic = c.json(&["get", "clusterrole", "system:basic-user"]);
    assert_eq!(
        basic["metadata"]["annotations"]["rbac.authorization.k8s.io/autoupdate"],
        "true"
    );
    assert_eq!(
        basic["metadata"]["labels"]["kubernetes.io/bootstrapping"],
        "rbac-defaults"
    );
    let crb = c.json(&["get", "clusterrolebinding", "system:public-info-viewer"]);
    let groups: Vec<&str> = crb["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(groups, ["system:authenticated", "system:unauthenticated"]);
    for name in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:discovery",
        "system:node",
        "system:kube-scheduler",
        "system:controller:deployment-controller",
    ] {
        c.ok(&["get", "clusterrole", name]);
    }

    // A user strips a bootstrap role and a binding; a role opting out keeps its edit.
    c.ok(&["patch", "clusterrole", "system:basic-user", "--type=merge", "-p", r#"{"rules":[{"apiGroups":["authorization.k8s.io"],"resources":["selfsubjectrulesreviews"],"verbs":["create"]}]}"#]);
    c.ok(&[
        "patch",
        "clusterrolebinding",
        "system:discovery",
        "--type=merge",
        "-p",
        r#"{"subjects":null}"#,
    ]);
    c.ok(&[
        "annotate",
        "--overwrite",
        "clusterrole",
        "system:monitoring",
        "rbac.authorization.k8s.io/autoupdate=false",
    ]);
    c.ok(&[
        "patch",
        "clusterrole",
        "system:monitoring",
        "--type=merge",
        "-p",
        r#"{"rules":[{"nonResourceURLs":["/metrics"],"verbs":["get"]}]}"#,
    ]);
    c.ok(&["delete", "clusterrole", "system:public-info-viewer"]);
    c.kill();
    c.spawn();

    let rules = rules_of(&c, "system:basic-user");
    let has = |res: &str| {
        rules.iter().any(|r| {
            r["resources"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == res))
        })
    };
    assert!(
        has("selfsubjectaccessreviews") && has("selfsubjectrulesreviews"),
        "{rules:#?}"
    );
    let crb = c.json(&["get", "clusterrolebinding", "system:discovery"]);
    assert_eq!(crb["subjects"][0]["name"], "system:authenticated");
    assert_eq!(rules_of(&c, "system:monitoring").len(), 1);
    c.ok(&["get", "clusterrole", "system:public-info-viewer"]);
}
