//! People as users of a cluster under `--authorization-mode=Node,RBAC`: `kaji kubeconfig --user`
//! client certificates, `kaji token create` bearer tokens (the token file, re-read while the
//! server runs), impersonation (`kubectl --as`, `--as-group`) and the audit log
//! (`--audit-log-path`), all with stock kubectl.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::{Cluster, KUBECTL_NEW, wait_for};

fn kaji(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kaji"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running kaji")
}

fn kaji_ok(args: &[&str]) -> String {
    let out = kaji(args);
    assert!(
        out.status.success(),
        "kaji {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// kubectl with its own kubeconfig (a person's, not the admin's).
fn kubectl(c: &Cluster, kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(KUBECTL_NEW)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env("HOME", c.data_dir())
        .env("KUBECACHEDIR", c.data_dir().join("cache-user"))
        .stdin(Stdio::null())
        .output()
        .expect("running kubectl")
}

fn ok(c: &Cluster, kubeconfig: &Path, args: &[&str]) -> String {
    let out = kubectl(c, kubeconfig, args);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(c: &Cluster, kubeconfig: &Path, args: &[&str]) -> String {
    let out = kubectl(c, kubeconfig, args);
    assert!(
        !out.status.success(),
        "kubectl {args:?} should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn start(name: &str) -> (Cluster, PathBuf) {
    let audit = std::env::temp_dir().join(format!(
        "kaji-audit-{name}-{}-{}.log",
        std::process::id(),
        support::free_port()
    ));
    let audit_flag = format!("--audit-log-path={}", audit.display());
    let c = Cluster::start_with(name, &["--authorization-mode=Node,RBAC", &audit_flag]);
    // The log lives in the test's data dir from here on (removed with it).
    let path = c.data_dir().join("audit.log");
    std::fs::hard_link(&audit, &path).expect("linking the audit log");
    let _ = std::fs::remove_file(&audit);
    (c, path)
}

fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("an audit line is JSON"))
        .collect()
}

/// Waits for an audit event matching `f` (the writer thread is asynchronous).
fn audit_event(path: &Path, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, Duration::from_secs(10), || {
        events(path).into_iter().find(|e| f(e))
    })
}

/// A kubeconfig holding only the server and the CA, for `--token`.
fn token_kubeconfig(c: &Cluster) -> PathBuf {
    let admin = std::fs::read_to_string(&c.kubeconfig).unwrap();
    let mut out = String::new();
    for line in admin.lines() {
        if line.starts_with("users:") {
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("users:\n- name: default\n  user: {}\n");
    let path = c.data_dir().join("token.yaml");
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn user_kubeconfig_token_impersonation_and_audit() {
    let (c, audit) = start("users");
    let data = c.data_dir().to_str().unwrap().to_string();
    c.ok(&["create", "namespace", "dev"]);
    c.ok(&["create", "namespace", "other"]);

    // A person's kubeconfig: 403 with upstream's text until a RoleBinding to edit in dev.
    let alice = c.data_dir().join("alice.yaml");
    kaji_ok(&[
        "kubeconfig",
        "--user",
        "alice",
        "--namespace",
        "dev",
        "-d",
        &data,
        "-o",
        alice.to_str().unwrap(),
    ]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&alice).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let err = fails(&c, &alice, &["get", "pods"]);
    assert!(
        err.contains(r#"Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "dev""#),
        "{err}"
    );
    c.ok(&[
        "create",
        "rolebinding",
        "alice-edit",
        "--clusterrole=edit",
        "--user=alice",
        "-n",
        "dev",
    ]);
    wait_for("alice to list pods in dev", Duration::from_secs(10), || {
        kubectl(&c, &alice, &["get", "pods"])
            .status
            .success()
            .then_some(())
    });
    ok(
        &c,
        &alice,
        &["create", "configmap", "cm", "--from-literal=a=b"],
    );
    let err = fails(&c, &alice, &["get", "pods", "-n", "other"]);
    assert!(
        err.contains(
            r#"User "alice" cannot list resource "pods" in API group "" in the namespace "other""#
        ),
        "{err}"
    );
    // edit does not include RBAC objects.
    let err = fails(&c, &alice, &["get", "rolebindings"]);
    assert!(err.contains("Forbidden"), "{err}");

    // Groups of a client certificate: several O attributes.
    let carol = c.data_dir().join("carol.yaml");
    let text = kaji_ok(&[
        "kubeconfig",
        "--user",
        "carol",
        "--group",
        "team-a",
        "--group",
        "team-b",
        "-n",
        "dev",
        "-d",
        &data,
    ]);
    std::fs::write(&carol, text).unwrap();
    c.ok(&[
        "create",
        "rolebinding",
        "team-b-view",
        "--clusterrole=view",
        "--group=team-b",
        "-n",
        "dev",
    ]);
    wait_for(
        "carol (team-b) to list pods",
        Duration::from_secs(10),
        || {
            kubectl(&c, &carol, &["get", "pods"])
                .status
                .success()
                .then_some(())
        },
    );
    let err = fails(&c, &carol, &["create", "configmap", "x"]);
    assert!(
        err.contains(r#"User "carol" cannot create resource "configmaps""#),
        "{err}"
    );

    // A bearer token from `kaji token create`, picked up without a restart.
    let token = kaji_ok(&[
        "token", "create", "--user", "bob", "--group", "devs", "-d", &data,
    ]);
    let token = token.trim().to_string();
    assert!(token.len() >= 32, "{token}");
    let mode = std::fs::metadata(c.data_dir().join("server/cred/users.csv"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let tk = token_kubeconfig(&c);
    let err = wait_for(
        "bob's token to authenticate",
        Duration::from_secs(10),
        || {
            let out = kubectl(&c, &tk, &["--token", &token, "get", "pods", "-n", "dev"]);
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            err.contains("Forbidden").then_some(err)
        },
    );
    assert!(
        err.contains(
            r#"User "bob" cannot list resource "pods" in API group "" in the namespace "dev""#
        ),
        "{err}"
    );
    c.ok(&[
        "create",
        "rolebinding",
        "devs-view",
        "--clusterrole=view",
        "--group=devs",
        "-n",
        "dev",
    ]);
    wait_for(
        "bob (group devs) to list pods",
        Duration::from_secs(10),
        || {
            kubectl(&c, &tk, &["--token", &token, "get", "pods", "-n", "dev"])
                .status
                .success()
                .then_some(())
        },
    );
    // A wrong token is a 401.
    let err = fails(&c, &tk, &["--token", &format!("{token}x"), "get", "pods"]);
    assert!(err.contains("Unauthorized"), "{err}");
    // A token past its --ttl is a 401.
    let short = kaji_ok(&[
        "token", "create", "--user", "dave", "--ttl", "6s", "-d", &data,
    ]);
    let short = short.trim().to_string();
    wait_for(
        "dave's token to authenticate",
        Duration::from_secs(5),
        || {
            let out = kubectl(&c, &tk, &["--token", &short, "get", "pods"]);
            String::from_utf8_lossy(&out.stderr)
                .contains(r#"User "dave" cannot list"#)
                .then_some(())
        },
    );
    wait_for("dave's token to expire", Duration::from_secs(15), || {
        let out = kubectl(&c, &tk, &["--token", &short, "get", "pods"]);
        String::from_utf8_lossy(&out.stderr)
            .contains("Unauthorized")
            .then_some(())
    });

    // Impersonation: the admin may act as alice; alice may not act as bob.
    ok(
        &c,
        &c.kubeconfig,
        &["--as=alice", "get", "pods", "-n", "dev"],
    );
    let err = fails(
        &c,
        &c.kubeconfig,
        &["--as=alice", "get", "pods", "-n", "other"],
    );
    assert!(
        err.contains(
            r#"User "alice" cannot list resource "pods" in API group "" in the namespace "other""#
        ),
        "{err}"
    );
    let err = fails(&c, &alice, &["--as=bob", "get", "pods"]);
    assert!(
        err.contains(r#"users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        "{err}"
    );
    // edit may impersonate the service accounts of its namespace (as upstream's
    // system:aggregate-to-edit), not those of another.
    let err = fails(
        &c,
        &alice,
        &["--as=system:serviceaccount:dev:default", "get", "pods"],
    );
    assert!(
        err.contains(r#"User "system:serviceaccount:dev:default" cannot list resource "pods" in API group "" in the namespace "dev""#),
        "{err}"
    );
    let err = fails(
        &c,
        &alice,
        &[
            "--as=system:serviceaccount:other:default",
            "get",
            "pods",
            "-n",
            "other",
        ],
    );
    assert!(
        err.contains(r#"serviceaccounts "default" is forbidden: User "alice" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "other""#),
        "{err}"
    );
    // --as-group: the impersonated identity is x in y (and system:authenticated).
    let err = fails(
        &c,
        &c.kubeconfig,
        &["--as=x", "--as-group=y", "get", "pods", "-n", "dev"],
    );
    assert!(
        err.contains(r#"User "x" cannot list resource "pods""#),
        "{err}"
    );
    c.ok(&[
        "create",
        "rolebinding",
        "y-view",
        "--clusterrole=view",
        "--group=y",
        "-n",
        "dev",
    ]);
    wait_for("x (group y) to list pods", Duration::from_secs(10), || {
        kubectl(
            &c,
            &c.kubeconfig,
            &["--as=x", "--as-group=y", "get", "pods", "-n", "dev"],
        )
        .status
        .success()
        .then_some(())
    });
    let who = c.ok(&["--as=x", "--as-group=y", "auth", "whoami"]);
    assert!(who.contains("Username    x"), "{who}");
    assert!(
        who.contains("Groups      [y system:authenticated]"),
        "{who}"
    );
    let who = c.ok(&["--as=x", "--as-uid=1234", "auth", "whoami"]);
    assert!(who.contains("UID         1234"), "{who}");
    let who = c.ok(&["--as=system:serviceaccount:dev:default", "auth", "whoami"]);
    assert!(
        who.contains(
            "Groups      [system:serviceaccounts system:serviceaccounts:dev system:authenticated]"
        ),
        "{who}"
    );
    // What a service account may do, asked by impersonating it.
    let sa = "--as=system:serviceaccount:dev:default";
    let list = c.ok(&["auth", "can-i", "--list", sa, "-n", "dev"]);
    assert!(
        list.contains("selfsubjectrulesreviews.authorization.k8s.io"),
        "{list}"
    );
    assert!(!list.lines().any(|l| l.starts_with("pods ")), "{list}");
    c.ok(&[
        "create",
        "rolebinding",
        "sa-view",
        "--clusterrole=view",
        "--serviceaccount=dev:default",
        "-n",
        "dev",
    ]);
    wait_for(
        "the SA's rules to list pods",
        Duration::from_secs(10),
        || {
            let list = c.ok(&["auth", "can-i", "--list", sa, "-n", "dev"]);
            list.lines()
                .any(|l| l.starts_with("pods ") && l.contains("[get list watch]"))
                .then_some(())
        },
    );
    assert_eq!(
        c.ok(&["auth", "can-i", "list", "pods", sa, "-n", "dev"])
            .trim(),
        "yes"
    );
    let out = c.kubectl(&["auth", "can-i", "list", "pods", sa, "-n", "other"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    let who = ok(&c, &tk, &["--token", &token, "auth", "whoami"]);
    assert!(who.contains("Username    bob"), "{who}");
    assert!(
        who.contains("Groups      [devs system:authenticated]"),
        "{who}"
    );
    // Groups without a user: upstream's 400.
    let admin_cert = c.data_dir().join("server/tls/client-admin.crt");
    let admin_key = c.data_dir().join("server/tls/client-admin.key");
    let curl = |extra: &[&str], path: &str| -> String {
        let out = Command::new("curl")
            .args(["-sS", "-i", "-k", "--cert"])
            .arg(&admin_cert)
            .arg("--key")
            .arg(&admin_key)
            .args(extra)
            .arg(format!("https://127.0.0.1:{}{path}", c.port))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let resp = curl(
        &["-H", "Impersonate-Group: g"],
        "/api/v1/namespaces/dev/pods",
    );
    assert!(
        resp.starts_with("HTTP/2 400") || resp.starts_with("HTTP/1.1 400"),
        "{resp}"
    );
    assert!(
        resp.contains(r#"requested [{Group  g    }] without impersonating a user"#),
        "{resp}"
    );
    // The Audit-Id response header names the request's event.
    let resp = curl(&[], "/api/v1/namespaces/dev/configmaps/cm");
    let audit_id = resp
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("audit-id:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Audit-Id header: {resp}"));
    let e = audit_event(&audit, "the curl request's event", |e| {
        e["auditID"] == audit_id.as_str()
    });
    assert_eq!(e["verb"], "get");
    assert_eq!(e["objectRef"]["name"], "cm");
    // A watch: ResponseStarted when it starts, ResponseComplete when it ends.
    let resp = curl(&[], "/api/v1/namespaces/dev/pods?watch=1&timeoutSeconds=1");
    assert!(resp.contains(" 200"), "{resp}");

    // The audit log: who did what, with the decision.
    let e = audit_event(&audit, "alice's forbidden list", |e| {
        e["user"]["username"] == "alice"
            && e["verb"] == "list"
            && e["responseStatus"]["code"] == 403
    });
    assert_eq!(e["kind"], "Event");
    assert_eq!(e["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(e["level"], "Metadata");
    assert_eq!(e["stage"], "ResponseComplete");
    assert_eq!(e["objectRef"]["resource"], "pods");
    assert_eq!(e["objectRef"]["namespace"], "dev");
    assert_eq!(e["objectRef"]["apiVersion"], "v1");
    assert_eq!(e["annotations"]["authorization.k8s.io/decision"], "forbid");
    assert_eq!(e["sourceIPs"][0], "127.0.0.1");
    assert!(
        e["userAgent"].as_str().unwrap().starts_with("kubectl"),
        "{e}"
    );
    assert!(
        e["responseStatus"]["message"]
            .as_str()
            .unwrap()
            .contains(r#"User "alice" cannot list"#),
        "{e}"
    );
    let ts = e["stageTimestamp"].as_str().unwrap();
    assert_eq!(ts.len(), "2025-01-01T00:00:00.000000Z".len(), "{ts}");
    let e = audit_event(&audit, "alice's configmap create", |e| {
        e["user"]["username"] == "alice" && e["verb"] == "create"
    });
    assert_eq!(e["objectRef"]["resource"], "configmaps");
    assert_eq!(e["responseStatus"]["code"], 201);
    assert_eq!(e["annotations"]["authorization.k8s.io/decision"], "allow");
    assert!(
        e["annotations"]["authorization.k8s.io/reason"]
            .as_str()
            .unwrap()
            .contains("alice-edit"),
        "{e}"
    );
    let e = audit_event(&audit, "the admin acting as alice", |e| {
        e["impersonatedUser"]["username"] == "alice" && e["responseStatus"]["code"] == 200
    });
    assert_eq!(e["user"]["username"], "system:admin");
    assert_eq!(
        e["impersonatedUser"]["groups"],
        serde_json::json!(["system:authenticated"])
    );
    let e = audit_event(&audit, "x in y", |e| {
        e["impersonatedUser"]["username"] == "x"
    });
    assert_eq!(
        e["impersonatedUser"]["groups"],
        serde_json::json!(["y", "system:authenticated"])
    );
    let e = audit_event(&audit, "alice's impersonation of bob", |e| {
        e["user"]["username"] == "alice"
            && e["responseStatus"]["reason"] == "Forbidden"
            && e["responseStatus"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("impersonate"))
    });
    assert!(e.get("impersonatedUser").is_none(), "{e}");
    let e = audit_event(&audit, "bob's token request", |e| {
        e["user"]["username"] == "bob" && e["responseStatus"]["code"] == 200
    });
    assert!(
        e["user"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "devs"),
        "{e}"
    );
    let e = audit_event(&audit, "the wrong token's 401", |e| {
        e["responseStatus"]["code"] == 401
    });
    assert_eq!(e["user"], serde_json::json!({}));
    audit_event(&audit, "the watch's ResponseStarted", |e| {
        e["verb"] == "watch" && e["stage"] == "ResponseStarted"
    });
    audit_event(&audit, "the watch's ResponseComplete", |e| {
        e["verb"] == "watch" && e["stage"] == "ResponseComplete"
    });
    // Health probes are not logged.
    assert!(
        !events(&audit).iter().any(|e| e["requestURI"]
            .as_str()
            .is_some_and(|u| u.starts_with("/readyz"))),
        "probes logged"
    );
}

#[test]
fn kubeconfig_and_token_reject_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // Not a server's data dir.
    let out = kaji(&["kubeconfig", "--user", "alice", "-d", d]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ca.crt"));
    let out = kaji(&["token", "create", "--user", "a,b", "-d", d]);
    assert!(!out.status.success());
    let out = kaji(&["token", "create", "--user", "", "-d", d]);
    assert!(!out.status.success());
    assert!(!dir.path().join("server/cred/users.csv").exists());
}
