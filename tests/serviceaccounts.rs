//! Service-account tokens end to end (stock kubectl, `--authorization-mode=Node,RBAC`):
//! `kubectl create token` and the token used as a bearer credential (`kubectl auth whoami`,
//! RBAC's 403 for an authenticated account), TokenReview of good, expired, wrong-audience,
//! deleted-pod and deleted-account tokens (and 401 for them), TokenRequest's 422 and binding
//! errors, the ServiceAccount admission's projected volume, legacy token Secrets, and the OIDC
//! discovery documents with a key that survives a restart.
mod support;

use base64::Engine;
use serde_json::{Value, json};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::{Cluster, KUBECTL_NEW, wait_for};

const WAIT: Duration = Duration::from_secs(30);
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

fn cluster(name: &str) -> Cluster {
    let c = Cluster::start_with(name, &["--authorization-mode=Node,RBAC"]);
    wait_for("the default service account", WAIT, || {
        c.kubectl(&["get", "serviceaccount", "default"])
            .status
            .success()
            .then_some(())
    });
    c
}

/// kubectl with nothing but `token` as credentials (an empty kubeconfig, the cluster CA).
fn as_token(c: &Cluster, token: &str, args: &[&str]) -> Output {
    let empty = c.data_dir().join("empty-kubeconfig");
    std::fs::write(&empty, "").expect("empty kubeconfig");
    Command::new(KUBECTL_NEW)
        .arg("--kubeconfig")
        .arg(&empty)
        .arg(format!("--server=https://127.0.0.1:{}", c.port))
        .arg(format!(
            "--certificate-authority={}",
            c.data_dir().join("server/tls/ca.crt").display()
        ))
        .arg(format!("--token={token}"))
        .args(args)
        .env("HOME", c.data_dir())
        .env("KUBECACHEDIR", c.data_dir().join("token-cache"))
        .stdin(Stdio::null())
        .output()
        .expect("kubectl runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn whoami(c: &Cluster, token: &str) -> Value {
    let out = as_token(c, token, &["auth", "whoami", "-o", "json"]);
    assert!(
        out.status.success(),
        "whoami failed: {}\n{}",
        stderr(&out),
        support::tail(&c.log(), 20)
    );
    serde_json::from_slice::<Value>(&out.stdout).expect("whoami JSON")["status"]["userInfo"].clone()
}

fn unauthorized(c: &Cluster, token: &str) -> bool {
    let out = as_token(c, token, &["auth", "whoami"]);
    !out.status.success() && stderr(&out).contains("Unauthorized")
}

fn create_token(c: &Cluster, args: &[&str]) -> String {
    let mut a = vec!["create", "token"];
    a.extend(args);
    c.ok(&a).trim().to_string()
}

/// A TokenReview by the admin: its status.
fn review(c: &Cluster, token: &str, audiences: &[&str]) -> Value {
    let mut spec = json!({"token": token});
    if !audiences.is_empty() {
        spec["audiences"] = json!(audiences);
    }
    // (metadata only because kaji-openapi marks it required, which upstream's schema does not)
    let tr = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "metadata": {}, "spec": spec});
    let out = c.ok_with(
        KUBECTL_NEW,
        &["create", "-f", "-", "-o", "json"],
        Some(&tr.to_string()),
    );
    serde_json::from_str::<Value>(&out).expect("TokenReview JSON")["status"].clone()
}

fn claims(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .expect("base64url"),
    )
    .expect("claims JSON")
}

fn raw(c: &Cluster, path: &str) -> Value {
    serde_json::from_str(&c.ok(&["get", "--raw", path])).expect("JSON")
}

fn uid(c: &Cluster, args: &[&str]) -> String {
    c.json(args)["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string()
}

#[test]
fn create_token_authenticates_as_the_service_account() {
    let c = cluster("sa-token-whoami");
    c.ok(&["create", "serviceaccount", "robot"]);
    let sa_uid = uid(&c, &["get", "serviceaccount", "robot"]);
    let token = create_token(&c, &["robot"]);
    let cl = claims(&token);
    assert_eq!(cl["iss"], ISSUER);
    assert_eq!(cl["aud"], json!([ISSUER]));
    assert_eq!(cl["sub"], "system:serviceaccount:default:robot");
    assert_eq!(
        cl["kubernetes.io"]["serviceaccount"],
        json!({"name": "robot", "uid": sa_uid})
    );
    assert_eq!(
        cl["exp"].as_i64().unwrap() - cl["iat"].as_i64().unwrap(),
        3600
    );
    assert_eq!(cl["nbf"], cl["iat"]);

    let user = whoami(&c, &token);
    assert_eq!(user["username"], "system:serviceaccount:default:robot");
    assert_eq!(user["uid"], sa_uid.as_str());
    assert_eq!(
        user["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ])
    );
    let jti = cl["jti"].as_str().expect("jti");
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/credential-id"],
        json!([format!("JTI={jti}")])
    );
    // The table kubectl prints.
    let table =
        String::from_utf8_lossy(&as_token(&c, &token, &["auth", "whoami"]).stdout).into_owned();
    assert!(table.starts_with("ATTRIBUTE"), "{table}");
    assert!(
        table.lines().any(
            |l| l.starts_with("Username") && l.ends_with("system:serviceaccount:default:robot")
        ),
        "{table}"
    );

    // Authenticated, then refused by RBAC with upstream's message.
    let denied = as_token(&c, &token, &["get", "pods"]);
    assert!(
        stderr(&denied).contains(r#"User "system:serviceaccount:default:robot" cannot list resource "pods" in API group "" in the namespace "default""#),
        "{}",
        stderr(&denied)
    );

    // --duration, --audience.
    let long = create_token(
        &c,
        &[
            "robot",
            "--duration=2h",
            "--audience=vault",
            "--audience",
            ISSUER,
        ],
    );
    let lc = claims(&long);
    assert_eq!(
        lc["exp"].as_i64().unwrap() - lc["iat"].as_i64().unwrap(),
        7200
    );
    assert_eq!(lc["aud"], json!(["vault", ISSUER]));
    assert_eq!(
        whoami(&c, &long)["username"],
        "system:serviceaccount:default:robot"
    );

    // A changed signature, and a token of an account deleted since: 401.
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert!(unauthorized(&c, &forged));
    assert!(unauthorized(&c, "not-a-token"));
    c.ok(&["delete", "serviceaccount", "robot"]);
    wait_for("the deleted account's token to be refused", WAIT, || {
        unauthorized(&c, &token).then_some(())
    });
    c.ok(&["create", "serviceaccount", "robot"]);
    assert!(
        unauthorized(&c, &token),
        "a token of the old account (another UID) is refused"
    );

    // A missing account is a 404.
    assert!(
        c.fails(&["create", "token", "ghost"])
            .contains(r#"serviceaccounts "ghost" not found"#)
    );
    // Discovery lists the subresource.
    let core = raw(&c, "/api/v1");
    let token_sub = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "serviceaccounts/token")
        .expect("serviceaccounts/token")
        .clone();
    assert_eq!(token_sub["verbs"], json!(["create"]));
    assert_eq!(token_sub["kind"], "TokenRequest");
    assert_eq!(token_sub["group"], "authentication.k8s.io");
}

#[test]
fn token_review_and_bearer_checks_refuse_expired_wrong_audience_and_unbound_tokens() {
    let c = cluster("sa-token-review");
    c.ok(&["create", "serviceaccount", "robot"]);
    let sa_uid = uid(&c, &["get", "serviceaccount", "robot"]);

    let good = create_token(&c, &["robot"]);
    let st = review(&c, &good, &[]);
    assert_eq!(st["authenticated"], true, "{st}");
    assert_eq!(
        st["user"]["username"],
        "system:serviceaccount:default:robot"
    );
    assert_eq!(st["audiences"], json!([ISSUER]));

    // Expired beyond the minute of leeway: signed here with the server's own key.
    let pem = std::fs::read_to_string(c.data_dir().join("server/tls/service-account.key"))
        .expect("the signing key");
    let key = kaji_api::jwt::SigningKey::from_pem(&pem).expect("PKCS#8 key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expired = key
        .sign(&json!({"aud": [ISSUER], "exp": now - 120, "iat": now - 800, "nbf": now - 800, "iss": ISSUER, "jti": "x",
            "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "robot", "uid": sa_uid}},
            "sub": "system:serviceaccount:default:robot"}))
        .unwrap();
    let st = review(&c, &expired, &[]);
    assert_ne!(st["authenticated"], true, "{st}");
    assert!(
        st["error"].as_str().unwrap_or_default().contains("expired"),
        "{st}"
    );
    assert!(unauthorized(&c, &expired));
    // Another key's signature.
    let stranger = kaji_api::jwt::SigningKey::generate()
        .unwrap()
        .sign(&claims(&good))
        .unwrap();
    assert_ne!(review(&c, &stranger, &[])["authenticated"], true);
    assert!(unauthorized(&c, &stranger));

    // Wrong audience: refused by the API server, good for the audience it names.
    let vault = create_token(&c, &["robot", "--audience=vault"]);
    let st = review(&c, &vault, &[]);
    assert_ne!(st["authenticated"], true, "{st}");
    assert!(
        st["error"]
            .as_str()
            .unwrap_or_default()
            .contains("audiences"),
        "{st}"
    );
    assert!(unauthorized(&c, &vault));
    let st = review(&c, &vault, &["vault", "other"]);
    assert_eq!(st["authenticated"], true, "{st}");
    assert_eq!(st["audiences"], json!(["vault"]));

    // Bound to a pod: good while the pod lives, 401 once it is gone.
    c.apply(KUBECTL_NEW, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  serviceAccountName: robot\n  containers:\n  - name: c\n    image: nginx\n");
    let pod_uid = uid(&c, &["get", "pod", "p"]);
    let bound = create_token(
        &c,
        &["robot", "--bound-object-kind=Pod", "--bound-object-name=p"],
    );
    assert_eq!(
        claims(&bound)["kubernetes.io"]["pod"],
        json!({"name": "p", "uid": pod_uid})
    );
    let st = review(&c, &bound, &[]);
    assert_eq!(st["authenticated"], true, "{st}");
    assert_eq!(
        st["user"]["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["p"])
    );
    assert_eq!(
        st["user"]["extra"]["authentication.kubernetes.io/pod-uid"],
        json!([pod_uid])
    );
    assert_eq!(
        whoami(&c, &bound)["extra"]["authentication.kubernetes.io/pod-uid"],
        json!([pod_uid])
    );
    // The kubelet's 3607 s request for a pod gets a year, with a warning time at 3607 s
    // (upstream's --service-account-extend-token-expiration).
    let kubelets = claims(&create_token(
        &c,
        &[
            "robot",
            "--duration=3607s",
            "--bound-object-kind=Pod",
            "--bound-object-name=p",
        ],
    ));
    let iat = kubelets["iat"].as_i64().unwrap();
    assert_eq!(kubelets["exp"].as_i64().unwrap() - iat, 365 * 24 * 3600);
    assert_eq!(
        kubelets["kubernetes.io"]["warnafter"].as_i64().unwrap() - iat,
        3607
    );
    let unbound = claims(&create_token(&c, &["robot", "--duration=3607s"]));
    assert_eq!(
        unbound["exp"].as_i64().unwrap() - unbound["iat"].as_i64().unwrap(),
        3607
    );
    c.ok(&["delete", "pod", "p", "--wait=true"]);
    let st = review(&c, &bound, &[]);
    assert_ne!(st["authenticated"], true, "{st}");
    assert!(unauthorized(&c, &bound));

    // Bound to a Secret, or to a Node (with its name and UID in the user's extra).
    c.ok(&[
        "create",
        "secret",
        "generic",
        "anchor",
        "--from-literal=a=b",
    ]);
    let to_secret = create_token(
        &c,
        &[
            "robot",
            "--bound-object-kind=Secret",
            "--bound-object-name=anchor",
        ],
    );
    assert_eq!(review(&c, &to_secret, &[])["authenticated"], true);
    c.apply(
        KUBECTL_NEW,
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n",
    );
    let node_uid = uid(&c, &["get", "node", "n1"]);
    let to_node = create_token(
        &c,
        &[
            "robot",
            "--bound-object-kind=Node",
            "--bound-object-name=n1",
        ],
    );
    let st = review(&c, &to_node, &[]);
    assert_eq!(
        st["user"]["extra"]["authentication.kubernetes.io/node-name"],
        json!(["n1"]),
        "{st}"
    );
    assert_eq!(
        st["user"]["extra"]["authentication.kubernetes.io/node-uid"],
        json!([node_uid]),
        "{st}"
    );
    c.ok(&["delete", "secret", "anchor"]);
    c.ok(&["delete", "node", "n1"]);
    assert!(unauthorized(&c, &to_secret));
    assert!(unauthorized(&c, &to_node));

    // TokenRequest's own checks.
    let short = c.fails(&["create", "token", "robot", "--duration=10s"]);
    assert!(
        short.contains(r#"TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 10: may not specify a duration less than 10 minutes"#),
        "{short}"
    );
    let body = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","metadata":{"name":"other"},"spec":{}}"#;
    let out = c.kubectl_with(
        KUBECTL_NEW,
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/serviceaccounts/robot/token",
            "-f",
            "-",
        ],
        Some(body),
    );
    assert!(
        stderr(&out).contains(r#"The TokenRequest "robot" is invalid: metadata.name: Invalid value: "other": must match the service account name if specified"#),
        "{}",
        stderr(&out)
    );
    let raw_token: Value = serde_json::from_str(&c.ok_with(
        KUBECTL_NEW,
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/serviceaccounts/robot/token",
            "-f",
            "-",
        ],
        Some(r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{}}"#),
    ))
    .unwrap();
    assert_eq!(raw_token["kind"], "TokenRequest");
    assert_eq!(raw_token["metadata"]["name"], "robot");
    assert_eq!(raw_token["spec"]["expirationSeconds"], 3600);
    assert_eq!(raw_token["spec"]["audiences"], json!([ISSUER]));
    assert!(
        raw_token["status"]["expirationTimestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    c.apply(KUBECTL_NEW, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: other\nspec:\n  containers:\n  - name: c\n    image: nginx\n");
    let wrong = c.fails(&[
        "create",
        "token",
        "robot",
        "--bound-object-kind=Pod",
        "--bound-object-name=other",
    ]);
    assert!(wrong.contains(r#"cannot bind token for serviceaccount "robot" to pod running with different serviceaccount name."#), "{wrong}");
    let gone = c.fails(&[
        "create",
        "token",
        "robot",
        "--bound-object-kind=Pod",
        "--bound-object-name=nope",
    ]);
    assert!(gone.contains(r#"pods "nope" not found"#), "{gone}");
    let stale = c.fails(&[
        "create",
        "token",
        "robot",
        "--bound-object-kind=Secret",
        "--bound-object-name=nope",
    ]);
    assert!(stale.contains(r#"secrets "nope" not found"#), "{stale}");
}

#[test]
fn admission_mounts_the_projected_token_volume_unless_told_not_to() {
    let c = cluster("sa-admission");
    let pod = |name: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: \"{name}\"\nspec:\n{extra}  initContainers:\n  - name: init\n    image: busybox\n  containers:\n  - name: c\n    image: nginx\n  - name: own\n    image: nginx\n    volumeMounts:\n    - name: mine\n      mountPath: /var/run/secrets/kubernetes.io/serviceaccount\n  volumes:\n  - name: mine\n    emptyDir: {{}}\n"
        )
    };
    c.apply(KUBECTL_NEW, &pod("mounted", ""));
    let p = c.json(&["get", "pod", "mounted"]);
    let vols = p["spec"]["volumes"].as_array().unwrap();
    let api = vols
        .iter()
        .find(|v| v["name"].as_str().unwrap().starts_with("kube-api-access-"))
        .expect("the kube-api-access volume");
    let name = api["name"].as_str().unwrap();
    let suffix = &name["kube-api-access-".len()..];
    assert!(
        suffix.len() == 5
            && suffix
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit()),
        "{name}"
    );
    assert_eq!(
        api["projected"],
        json!({"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]})
    );
    let mount = json!({"name": name, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"});
    assert_eq!(
        p["spec"]["initContainers"][0]["volumeMounts"],
        json!([mount])
    );
    assert_eq!(p["spec"]["containers"][0]["volumeMounts"], json!([mount]));
    assert_eq!(
        p["spec"]["containers"][1]["volumeMounts"],
        json!([{"name": "mine", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}])
    );
    assert_eq!(p["spec"]["serviceAccountName"], "default");

    // automountServiceAccountToken: false on the pod, or on its account.
    c.apply(
        KUBECTL_NEW,
        &pod("off", "  automountServiceAccountToken: false\n"),
    );
    let p = c.json(&["get", "pod", "off"]);
    assert_eq!(
        p["spec"]["volumes"].as_array().unwrap().len(),
        1,
        "{}",
        p["spec"]
    );
    assert!(p["spec"]["containers"][0].get("volumeMounts").is_none());
    c.apply(KUBECTL_NEW, "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: quiet\nautomountServiceAccountToken: false\n");
    c.apply(KUBECTL_NEW, &pod("quiet", "  serviceAccountName: quiet\n"));
    assert_eq!(
        c.json(&["get", "pod", "quiet"])["spec"]["volumes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // ... unless the pod asks for it.
    c.apply(
        KUBECTL_NEW,
        &pod(
            "loud",
            "  serviceAccountName: quiet\n  automountServiceAccountToken: true\n",
        ),
    );
    assert_eq!(
        c.json(&["get", "pod", "loud"])["spec"]["volumes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A missing account: 403 as upstream.
    let out = c.kubectl_with(
        KUBECTL_NEW,
        &["apply", "-f", "-"],
        Some(&pod("lost", "  serviceAccountName: ghost\n")),
    );
    assert!(
        stderr(&out).contains(r#"pods "lost" is forbidden: error looking up service account default/ghost: serviceaccount "ghost" not found"#),
        "{}",
        stderr(&out)
    );

    // The account's pull secrets, and the Secrets an enforcing account allows.
    c.apply(
        KUBECTL_NEW,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: strict\n  annotations:\n    kubernetes.io/enforce-mountable-secrets: \"true\"\nsecrets:\n- name: allowed\nimagePullSecrets:\n- name: registry\n",
    );
    c.apply(KUBECTL_NEW, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pulls\nspec:\n  serviceAccountName: strict\n  containers:\n  - name: c\n    image: nginx\n");
    assert_eq!(
        c.json(&["get", "pod", "pulls"])["spec"]["imagePullSecrets"],
        json!([{"name": "registry"}])
    );
    let out = c.kubectl_with(
        KUBECTL_NEW,
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata:\n  name: sneaky\nspec:\n  serviceAccountName: strict\n  containers:\n  - name: c\n    image: nginx\n  volumes:\n  - name: s\n    secret:\n      secretName: other\n"),
    );
    assert!(
        stderr(&out).contains(r#"pods "sneaky" is forbidden: volume with secret.secretName="other" is not allowed because service account strict does not reference that secret"#),
        "{}",
        stderr(&out)
    );

    // In a terminating namespace (its default account deleted) the namespace's refusal comes,
    // not a wait for the account.
    c.ok(&["create", "namespace", "closing"]);
    c.apply(KUBECTL_NEW, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: closing\n  finalizers:\n  - kaji.test/hold\n");
    c.ok(&["delete", "namespace", "closing", "--wait=false"]);
    wait_for("the namespace to terminate", WAIT, || {
        let ns = c.json(&["get", "namespace", "closing"]);
        (ns["status"]["phase"] == "Terminating").then_some(())
    });
    let started = std::time::Instant::now();
    let refused = c.fails(&[
        "-n",
        "closing",
        "run",
        "late",
        "--image=nginx",
        "--restart=Never",
    ]);
    assert!(
        refused.contains("because it is being terminated"),
        "{refused}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "refused at once: {:?}",
        started.elapsed()
    );
    c.ok(&[
        "-n",
        "closing",
        "patch",
        "configmap",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);

    // A pod created right after its namespace waits for the default account, and the namespace
    // gets the root CA its volume reads.
    c.ok(&["create", "namespace", "fresh"]);
    c.ok(&[
        "-n",
        "fresh",
        "run",
        "early",
        "--image=nginx",
        "--restart=Never",
    ]);
    let p = c.json(&["-n", "fresh", "get", "pod", "early"]);
    assert!(
        p["spec"]["volumes"][0]["name"]
            .as_str()
            .unwrap()
            .starts_with("kube-api-access-"),
        "{}",
        p["spec"]
    );
    wait_for("kube-root-ca.crt in the new namespace", WAIT, || {
        let o = c.kubectl(&[
            "-n",
            "fresh",
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-o",
            "json",
        ]);
        let cm: Value = serde_json::from_slice(&o.stdout).ok()?;
        cm["data"]["ca.crt"]
            .as_str()
            .filter(|s| s.contains("BEGIN CERTIFICATE"))
            .map(|_| ())
    });
}

#[test]
fn legacy_token_secrets_are_filled_and_go_with_their_account() {
    let c = cluster("sa-legacy");
    c.ok(&["create", "serviceaccount", "builder"]);
    let sa_uid = uid(&c, &["get", "serviceaccount", "builder"]);
    c.apply(
        KUBECTL_NEW,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: builder-token\n  annotations:\n    kubernetes.io/service-account.name: builder\ntype: kubernetes.io/service-account-token\n",
    );
    let secret = wait_for("the token Secret to be filled", WAIT, || {
        let s = c.json(&["get", "secret", "builder-token"]);
        s["data"]["token"].is_string().then_some(s)
    });
    let b64 = |k: &str| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(secret["data"][k].as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(b64("namespace"), "default");
    assert_eq!(
        b64("ca.crt"),
        std::fs::read_to_string(c.data_dir().join("server/tls/ca.crt")).unwrap()
    );
    assert_eq!(
        secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"],
        sa_uid.as_str()
    );
    let token = b64("token");
    let cl = claims(&token);
    assert_eq!(cl["iss"], "kubernetes/serviceaccount");
    assert_eq!(
        cl["kubernetes.io/serviceaccount/secret.name"],
        "builder-token"
    );
    assert!(cl.get("exp").is_none());
    let user = whoami(&c, &token);
    assert_eq!(user["username"], "system:serviceaccount:default:builder");
    assert_eq!(user["uid"], sa_uid.as_str());
    assert_eq!(review(&c, &token, &[])["authenticated"], true);
    // Its use is recorded on the Secret; a Secret marked invalid stops it.
    let labels = c.json(&["get", "secret", "builder-token"])["metadata"]["labels"].clone();
    let today = String::from_utf8(
        Command::new("date")
            .args(["-u", "+%Y-%m-%d"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        labels["kubernetes.io/legacy-token-last-used"],
        today.trim(),
        "{labels}"
    );
    c.ok(&[
        "label",
        "secret",
        "builder-token",
        "kubernetes.io/legacy-token-invalid-since=2026-01-01",
    ]);
    assert!(unauthorized(&c, &token));
    c.ok(&[
        "label",
        "secret",
        "builder-token",
        "kubernetes.io/legacy-token-invalid-since-",
    ]);
    assert_eq!(
        whoami(&c, &token)["username"],
        "system:serviceaccount:default:builder"
    );

    // A Secret for an account that does not exist is deleted; so is the account's when it goes,
    // and its token stops working.
    c.apply(
        KUBECTL_NEW,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: orphan\n  annotations:\n    kubernetes.io/service-account.name: nobody\ntype: kubernetes.io/service-account-token\n",
    );
    wait_for("the orphan token Secret to be deleted", WAIT, || {
        (!c.kubectl(&["get", "secret", "orphan"]).status.success()).then_some(())
    });
    c.ok(&["delete", "serviceaccount", "builder"]);
    wait_for("the account's token Secret to be deleted", WAIT, || {
        (!c.kubectl(&["get", "secret", "builder-token"])
            .status
            .success())
        .then_some(())
    });
    assert!(unauthorized(&c, &token));
}

#[test]
fn oidc_discovery_serves_the_signing_key_which_survives_a_restart() {
    let mut c = cluster("sa-oidc");
    let conf = raw(&c, "/.well-known/openid-configuration");
    assert_eq!(conf["issuer"], ISSUER);
    assert_eq!(
        conf["jwks_uri"],
        format!("https://127.0.0.1:{}/openid/v1/jwks", c.port)
    );
    assert_eq!(conf["response_types_supported"], json!(["id_token"]));
    assert_eq!(conf["subject_types_supported"], json!(["public"]));
    assert_eq!(
        conf["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    let jwks = raw(&c, "/openid/v1/jwks");
    let key = &jwks["keys"][0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["crv"].as_str(),
            key["alg"].as_str(),
            key["use"].as_str()
        ),
        (Some("EC"), Some("P-256"), Some("ES256"), Some("sig"))
    );
    let token = create_token(&c, &["default"]);
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], key["kid"]);
    assert_eq!(header["alg"], "ES256");
    // Service accounts may read the issuer documents (system:service-account-issuer-discovery).
    let out = as_token(&c, &token, &["get", "--raw", "/openid/v1/jwks"]);
    assert!(out.status.success(), "{}", stderr(&out));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(c.data_dir().join("server/tls/service-account.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The key is kept: the same JWKS and the token still good after a restart.
    c.kill();
    c.spawn();
    assert_eq!(raw(&c, "/openid/v1/jwks"), jwks);
    assert_eq!(
        whoami(&c, &token)["username"],
        "system:serviceaccount:default:default"
    );
}
