//! End-to-end tests of the API as a raw HTTPS client (kubectl, client-go) sees it: Status errors
//! for bad input, optimistic concurrency, watch, paging and selectors, deletion with finalizers,
//! dry runs, Service allocations, subresources, discovery and tables.
//!
//! Requests go through curl with the admin client certificate from `<data-dir>/server/tls/`, so
//! that status codes, headers and bodies are seen exactly as sent (and a request can go without a
//! certificate at all).
mod support;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{Cluster, tail, wait_for};

/// One HTTP exchange as seen on the wire.
struct Resp {
    code: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Asserts a Kubernetes Status error with this code and reason; returns it.
    fn status(&self, code: u16, reason: &str) -> Value {
        assert_eq!(
            self.code, code,
            "expected HTTP {code} {reason}, got {}: {}",
            self.code, self.body
        );
        let s = self.json();
        assert_eq!(s["kind"], "Status", "error body is not a Status: {s}");
        assert_eq!(s["apiVersion"], "v1", "{s}");
        assert_eq!(s["status"], "Failure", "{s}");
        assert_eq!(s["code"], code, "{s}");
        assert_eq!(s["reason"], reason, "{s}");
        s
    }

    fn ok(&self, code: u16) -> Value {
        assert_eq!(
            self.code, code,
            "expected HTTP {code}, got {}: {}",
            self.code, self.body
        );
        self.json()
    }
}

/// A curl-based HTTPS client authenticated as the cluster admin (or as nobody).
struct Api<'a> {
    cluster: &'a Cluster,
    anonymous: bool,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

impl<'a> Api<'a> {
    fn new(cluster: &'a Cluster) -> Api<'a> {
        Api {
            cluster,
            anonymous: false,
        }
    }

    fn tls_args(&self) -> Vec<String> {
        let tls = self.cluster.data_dir().join("server").join("tls");
        let p = |f: &str| tls.join(f).display().to_string();
        let mut args = vec!["--cacert".to_string(), p("ca.crt")];
        if !self.anonymous {
            args.extend([
                "--cert".to_string(),
                p("client-admin.crt"),
                "--key".to_string(),
                p("client-admin.key"),
            ]);
        }
        args
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.cluster.port)
    }

    fn scratch(&self, what: &str) -> PathBuf {
        self.cluster.data_dir().join(format!(
            "curl-{}-{what}",
            SEQ.fetch_add(1, Ordering::SeqCst)
        ))
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let head_file = self.scratch("head");
        let body_file = self.scratch("body");
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "30", "-X", method, "-o"])
            .arg(&body_file)
            .arg("-D")
            .arg(&head_file);
        cmd.args(["-w", "%{http_code}"]).args(self.tls_args());
        for (k, v) in headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        if let Some(b) = body {
            let req_file = self.scratch("req");
            std::fs::write(&req_file, b).expect("writing the request body");
            cmd.arg("-H")
                .arg(format!("Content-Type: {content_type}"))
                .arg("--data-binary")
                .arg(format!("@{}", req_file.display()));
        }
        cmd.arg(self.url(path));
        let out = cmd.output().expect("running curl");
        let code_text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success(),
            "curl {method} {path} failed: {}\nserver log tail:\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&self.cluster.log(), 30)
        );
        let head = std::fs::read_to_string(&head_file).unwrap_or_default();
        let headers = head
            .lines()
            .filter_map(|l| {
                l.split_once(':')
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            })
            .collect();
        let body = std::fs::read_to_string(&body_file).unwrap_or_default();
        Resp {
            code: code_text.parse().unwrap_or(0),
            headers,
            body,
        }
    }

    fn get(&self, path: &str) -> Resp {
        self.request("GET", path, "", None, &[])
    }

    fn get_accept(&self, path: &str, accept: &str) -> Resp {
        self.request("GET", path, "", None, &[("Accept", accept)])
    }

    fn post(&self, path: &str, body: &Value) -> Resp {
        self.request(
            "POST",
            path,
            "application/json",
            Some(body.to_string().as_bytes()),
            &[],
        )
    }

    fn put(&self, path: &str, body: &Value) -> Resp {
        self.request(
            "PUT",
            path,
            "application/json",
            Some(body.to_string().as_bytes()),
            &[],
        )
    }

    /// Read, change, write back; again on a 409 Conflict (controllers write too), as client-go's
    /// RetryOnConflict. Returns the first answer that is not a conflict.
    fn update(&self, path: &str, change: impl Fn(&mut Value)) -> Resp {
        for _ in 0..20 {
            let mut obj = self.get(path).ok(200);
            change(&mut obj);
            let r = self.put(path, &obj);
            if r.code != 409 {
                return r;
            }
        }
        panic!("{path}: still conflicting after 20 attempts");
    }

    fn merge_patch(&self, path: &str, body: &Value) -> Resp {
        self.request(
            "PATCH",
            path,
            "application/merge-patch+json",
            Some(body.to_string().as_bytes()),
            &[],
        )
    }

    fn delete(&self, path: &str, options: Option<&Value>) -> Resp {
        match options {
            Some(o) => self.request(
                "DELETE",
                path,
                "application/json",
                Some(o.to_string().as_bytes()),
                &[],
            ),
            None => self.request("DELETE", path, "", None, &[]),
        }
    }

    /// Starts a watch; its lines arrive on the returned stream.
    fn watch(&self, path: &str) -> Watch {
        let mut child = Command::new("curl")
            .args(["-sS", "-N", "--max-time", "60"])
            .args(self.tls_args())
            .arg(self.url(path))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("running curl");
        let stdout = child.stdout.take().expect("curl stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(&line).unwrap_or_else(
                    |e| json!({"type": "UNPARSEABLE", "object": line, "error": e.to_string()}),
                );
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Watch { child, rx }
    }
}

struct Watch {
    child: Child,
    rx: mpsc::Receiver<Value>,
}

impl Watch {
    /// The next event, or a panic naming what was awaited.
    fn next(&self, what: &str) -> Value {
        self.rx
            .recv_timeout(Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("no watch event ({e}) while waiting for {what}"))
    }

    /// The next event that is not a bookmark.
    fn next_change(&self, what: &str) -> Value {
        loop {
            let ev = self.next(what);
            if ev["type"] != "BOOKMARK" {
                return ev;
            }
        }
    }

    /// Waits until the server ends the stream; returns the events that came first.
    fn until_closed(&self, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(ev) => seen.push(ev),
                Err(mpsc::RecvTimeoutError::Disconnected) => return seen,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the watch was still open after {within:?}; events: {seen:?}")
                }
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A ConfigMap labelled `by=test` besides `labels`, so that watches and lists can leave out
/// objects that controllers create (such as kube-root-ca.crt).
fn cm(name: &str, labels: Value) -> Value {
    let mut labels = labels;
    labels["by"] = json!("test");
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
}

fn deployment(name: &str, app: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
        },
    })
}

fn names(list: &Value) -> Vec<String> {
    let mut n: Vec<String> = list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|i| {
            i["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    n.sort();
    n
}

fn rv(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no resourceVersion in {obj}"))
        .to_string()
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const PODS: &str = "/api/v1/namespaces/default/pods";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";
const SVCS: &str = "/api/v1/namespaces/default/services";

#[test]
fn bad_input_gives_status_errors_and_writes_nothing() {
    let c = Cluster::start("api-bad-input");
    let api = Api::new(&c);

    // Malformed JSON and YAML: 400 BadRequest, nothing stored.
    let r = api.request(
        "POST",
        CMS,
        "application/json",
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"broken""#),
        &[],
    );
    let s = r.status(400, "BadRequest");
    assert!(
        s["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot be handled as a ConfigMap"),
        "{s}"
    );
    let r = api.request(
        "POST",
        CMS,
        "application/yaml",
        Some(b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\n data: [unclosed\n"),
        &[],
    );
    r.status(400, "BadRequest");
    api.get(&format!("{CMS}/broken")).status(404, "NotFound");

    // Unknown resources and groups: 404 NotFound Status.
    api.get("/api/v1/namespaces/default/widgets")
        .status(404, "NotFound");
    api.post(
        "/apis/nope.example.com/v1/namespaces/default/things",
        &json!({"kind": "Thing"}),
    )
    .status(404, "NotFound");
    api.get("/apis/apps/v9/deployments").status(404, "NotFound");

    // A body of another kind than the resource: 400.
    api.post(CMS, &pod("wrong-kind")).status(400, "BadRequest");
    api.get(&format!("{CMS}/wrong-kind"))
        .status(404, "NotFound");

    // Invalid names: 422 Invalid with causes and the DNS-1123 wording.
    let s = api
        .post(CMS, &cm("Bad_Name", json!({})))
        .status(422, "Invalid");
    let msg = s["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with(
            "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\""
        ),
        "{msg}"
    );
    assert!(msg.contains("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"), "{msg}");
    assert_eq!(s["details"]["kind"], "ConfigMap", "{s}");
    assert_eq!(s["details"]["name"], "Bad_Name", "{s}");
    let causes = s["details"]["causes"]
        .as_array()
        .unwrap_or_else(|| panic!("no causes: {s}"));
    assert!(
        causes
            .iter()
            .any(|c| c["field"] == "metadata.name" && c["reason"] == "FieldValueInvalid"),
        "{s}"
    );
    // A label value that is not a label value is caught too.
    let s = api
        .post(CMS, &cm("bad-label", json!({"app": "no spaces allowed"})))
        .status(422, "Invalid");
    assert!(
        s["message"]
            .as_str()
            .unwrap_or_default()
            .contains("metadata.labels"),
        "{s}"
    );
    api.get(&format!("{CMS}/bad-label")).status(404, "NotFound");

    // Missing required fields: a pod without containers.
    let mut p = pod("no-containers");
    p["spec"]["containers"] = json!([]);
    let s = api.post(PODS, &p).status(422, "Invalid");
    assert!(
        s["message"]
            .as_str()
            .unwrap_or_default()
            .contains("spec.containers: Required value"),
        "{s}"
    );
    assert!(
        s["details"]["causes"].as_array().is_some_and(|c| c
            .iter()
            .any(|c| c["field"] == "spec.containers" && c["reason"] == "FieldValueRequired")),
        "{s}"
    );
    api.get(&format!("{PODS}/no-containers"))
        .status(404, "NotFound");
    // Neither name nor generateName.
    let s = api
        .post(CMS, &json!({"metadata": {}, "data": {}}))
        .status(422, "Invalid");
    assert!(
        s["message"]
            .as_str()
            .unwrap_or_default()
            .contains("metadata.name: Required value"),
        "{s}"
    );

    // Immutable fields: a Deployment's selector.
    let d = api.post(DEPLOYS, &deployment("web", "web")).ok(201);
    let s = api
        .update(&format!("{DEPLOYS}/web"), |changed| {
            changed["spec"]["selector"] = json!({"matchLabels": {"app": "other"}});
            changed["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        })
        .status(422, "Invalid");
    assert!(
        s["message"]
            .as_str()
            .unwrap_or_default()
            .contains("spec.selector"),
        "{s}"
    );
    assert!(
        s["message"]
            .as_str()
            .unwrap_or_default()
            .contains("field is immutable"),
        "{s}"
    );
    let now = api.get(&format!("{DEPLOYS}/web")).ok(200);
    assert_eq!(
        now["spec"]["selector"],
        json!({"matchLabels": {"app": "web"}}),
        "the rejected update was half-applied"
    );
    assert_eq!(now["spec"], d["spec"], "a rejected update changed the spec");
    assert_eq!(now["metadata"]["generation"], 1);

    // Bodies over 3 MiB: 413.
    let big = cm("too-big", json!({}));
    let mut big = big;
    big["data"] = json!({"blob": "x".repeat(3 * 1024 * 1024 + 10)});
    let r = api.request(
        "POST",
        CMS,
        "application/json",
        Some(big.to_string().as_bytes()),
        &[],
    );
    r.status(413, "RequestEntityTooLarge");
    api.get(&format!("{CMS}/too-big")).status(404, "NotFound");
    // Just under the limit of the body still works (the object limit is etcd's 1.5 MiB upstream;
    // a 1 MiB ConfigMap is fine everywhere).
    let mut fits = cm("fits", json!({}));
    fits["data"] = json!({"blob": "y".repeat(1024 * 1024 - 100)});
    api.post(CMS, &fits).ok(201);

    // Unknown fields: Strict rejects, Warn (the default) warns and drops them.
    let mut p = pod("strict");
    p["spec"]["foo"] = json!("bar");
    let s = api
        .post(&format!("{PODS}?fieldValidation=Strict"), &p)
        .status(400, "BadRequest");
    let msg = s["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(r#"strict decoding error: unknown field "spec.foo""#),
        "{msg}"
    );
    api.get(&format!("{PODS}/strict")).status(404, "NotFound");
    let r = api.post(&format!("{PODS}?fieldValidation=Warn"), &p);
    let created = r.ok(201);
    assert!(
        created["spec"].get("foo").is_none(),
        "unknown field was stored: {created}"
    );
    let warnings = r.header("warning");
    assert!(
        warnings.iter().any(|w| w.starts_with("299 ")
            && w.contains(r#"unknown field \"spec.foo\""#)
            || w.contains(r#"unknown field "spec.foo""#)),
        "warning headers: {warnings:?}"
    );
    p["metadata"]["name"] = json!("ignored");
    let r = api.post(&format!("{PODS}?fieldValidation=Ignore"), &p);
    r.ok(201);
    assert!(
        r.header("warning").is_empty(),
        "Ignore still warned: {:?}",
        r.header("warning")
    );

    // Nothing answered with a 5xx, and the server is alive.
    assert!(
        !c.log().contains("panicked"),
        "the server panicked:\n{}",
        tail(&c.log(), 40)
    );
    api.get("/readyz");
}

#[test]
fn conflicts_auth_and_version() {
    let c = Cluster::start("api-conflicts");
    let api = Api::new(&c);

    let first = api.post(CMS, &cm("twice", json!({}))).ok(201);
    let s = api
        .post(CMS, &cm("twice", json!({})))
        .status(409, "AlreadyExists");
    assert_eq!(s["message"], r#"configmaps "twice" already exists"#, "{s}");
    assert_eq!(s["details"]["name"], "twice");
    assert_eq!(s["details"]["kind"], "configmaps");

    // Update at the current revision works; again at the old one is a 409 Conflict.
    let mut next = first.clone();
    next["data"] = json!({"k": "v2"});
    let updated = api.put(&format!("{CMS}/twice"), &next).ok(200);
    assert_ne!(rv(&updated), rv(&first));
    next["data"] = json!({"k": "v3"});
    let s = api
        .put(&format!("{CMS}/twice"), &next)
        .status(409, "Conflict");
    assert_eq!(
        s["message"],
        r#"Operation cannot be fulfilled on configmaps "twice": the object has been modified; please apply your changes to the latest version and try again"#
    );
    assert_eq!(
        api.get(&format!("{CMS}/twice")).ok(200)["data"]["k"],
        "v2",
        "a stale update was applied"
    );
    // A patch carrying a stale resourceVersion is refused too; without one it applies.
    api.merge_patch(
        &format!("{CMS}/twice"),
        &json!({"metadata": {"resourceVersion": rv(&first)}, "data": {"k": "p"}}),
    )
    .status(409, "Conflict");
    api.merge_patch(&format!("{CMS}/twice"), &json!({"data": {"k": "p"}}))
        .ok(200);
    // Update of something that does not exist.
    api.put(&format!("{CMS}/ghost"), &cm("ghost", json!({})))
        .status(404, "NotFound");
    // Names in the URL and the body must agree.
    api.put(&format!("{CMS}/twice"), &cm("other", json!({})))
        .status(400, "BadRequest");

    // The version is public.
    let v = api.get("/version").ok(200);
    let git = v["gitVersion"].as_str().unwrap_or_default();
    assert!(git.starts_with("v1.33"), "gitVersion {git}");
}

/// Anonymous requests under `--authorization-mode=Node,RBAC`, as upstream with anonymous auth
/// on: `system:anonymous` in `system:unauthenticated` reaches what the bootstrap policy's
/// `system:public-info-viewer` allows (health and version) and gets 403 elsewhere; with
/// `--anonymous-auth=false` every request without credentials is 401.
#[test]
fn anonymous_requests_reach_only_public_info() {
    let c = Cluster::start_with("api-anonymous", &["--authorization-mode=Node,RBAC"]);
    let api = Api::new(&c);
    let anon = Api {
        cluster: &c,
        anonymous: true,
    };
    let s = anon.get(CMS).status(403, "Forbidden");
    assert_eq!(
        s["message"],
        r#"configmaps is forbidden: User "system:anonymous" cannot list resource "configmaps" in API group "" in the namespace "default""#
    );
    let s = anon.get("/api").status(403, "Forbidden");
    assert_eq!(s["message"], r#"forbidden: User "system:anonymous" cannot get path "/api""#);
    anon.get("/metrics").status(403, "Forbidden");
    anon.post(CMS, &cm("anon", json!({})))
        .status(403, "Forbidden");
    api.get(&format!("{CMS}/anon")).status(404, "NotFound");
    for p in ["/healthz", "/livez", "/readyz"] {
        let r = anon.get(p);
        assert_eq!((r.code, r.body.as_str()), (200, "ok"), "{p}");
    }
    let v = anon.get("/version").ok(200);
    let git = v["gitVersion"].as_str().unwrap_or_default();
    assert!(git.starts_with("v1.33"), "gitVersion {git}");
    assert_eq!(v["major"], "1");
    assert!(
        v["minor"].as_str().is_some_and(|m| m.starts_with("33")),
        "{v}"
    );
    drop(c);

    let c = Cluster::start_with(
        "api-no-anonymous",
        &["--authorization-mode=Node,RBAC", "--anonymous-auth=false"],
    );
    let anon = Api {
        cluster: &c,
        anonymous: true,
    };
    let s = anon.get(CMS).status(401, "Unauthorized");
    assert_eq!(s["message"], "Unauthorized");
    anon.get("/api").status(401, "Unauthorized");
    anon.get("/healthz").status(401, "Unauthorized");
    anon.get("/version").status(401, "Unauthorized");
    Api::new(&c).get("/version").ok(200);
}

#[test]
fn watch_streams_events_resumes_and_times_out() {
    let c = Cluster::start("api-watch");
    let api = Api::new(&c);
    api.post("/api/v1/namespaces", &json!({"metadata": {"name": "w"}}))
        .ok(201);
    let base = "/api/v1/namespaces/w/configmaps";
    api.post(base, &cm("before", json!({}))).ok(201);
    let list = api.get(base).ok(200);
    let list_rv = rv(&list);

    // From the list's resourceVersion: only what happens afterwards.
    let w = api.watch(&format!(
        "{base}?watch=true&labelSelector=by%3Dtest&resourceVersion={list_rv}"
    ));
    let created = api.post(base, &cm("one", json!({"a": "1"}))).ok(201);
    let ev = w.next_change("ADDED one");
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("one")),
        "{ev}"
    );
    assert_eq!(ev["object"]["kind"], "ConfigMap");
    assert_eq!(ev["object"]["apiVersion"], "v1");
    assert_eq!(rv(&ev["object"]), rv(&created));
    let mut upd = created.clone();
    upd["data"] = json!({"k": "changed"});
    let updated = api.put(&format!("{base}/one"), &upd).ok(200);
    let ev = w.next_change("MODIFIED one");
    assert_eq!(ev["type"], "MODIFIED", "{ev}");
    assert_eq!(ev["object"]["data"]["k"], "changed");
    api.delete(&format!("{base}/one"), None).ok(200);
    let ev = w.next_change("DELETED one");
    assert_eq!(ev["type"], "DELETED", "{ev}");
    assert_eq!(ev["object"]["metadata"]["name"], "one");
    drop(w);

    // Resuming from the ADDED event's resourceVersion replays exactly what came after it.
    let w = api.watch(&format!(
        "{base}?watch=true&labelSelector=by%3Dtest&resourceVersion={}",
        rv(&created)
    ));
    let ev = w.next_change("replayed MODIFIED");
    assert_eq!(
        (ev["type"].as_str(), rv(&ev["object"])),
        (Some("MODIFIED"), rv(&updated)),
        "{ev}"
    );
    assert_eq!(w.next_change("replayed DELETED")["type"], "DELETED");
    drop(w);

    // The legacy /watch/ path, with a label selector: an object that stops matching is DELETED
    // for this watcher, one that starts matching ADDED.
    let w = api.watch(&format!(
        "/api/v1/watch/namespaces/w/configmaps?labelSelector=team%3Dblue&resourceVersion={}",
        rv(&updated)
    ));
    api.post(base, &cm("red", json!({"team": "red"}))).ok(201);
    api.post(base, &cm("blue", json!({"team": "blue"}))).ok(201);
    let ev = w.next_change("ADDED blue");
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("blue")),
        "{ev}"
    );
    api.merge_patch(
        &format!("{base}/red"),
        &json!({"metadata": {"labels": {"team": "blue"}}}),
    )
    .ok(200);
    let ev = w.next_change("red turning blue");
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("red")),
        "{ev}"
    );
    api.merge_patch(
        &format!("{base}/blue"),
        &json!({"metadata": {"labels": {"team": "green"}}}),
    )
    .ok(200);
    let ev = w.next_change("blue turning green");
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["object"]["metadata"]["name"].as_str()
        ),
        (Some("DELETED"), Some("blue")),
        "{ev}"
    );
    drop(w);

    // Without a resourceVersion the current objects come first as ADDED; timeoutSeconds ends
    // the stream from the server side.
    let started = Instant::now();
    let w = api.watch(&format!(
        "{base}?watch=1&labelSelector=by%3Dtest&timeoutSeconds=2"
    ));
    let events = w.until_closed(Duration::from_secs(20));
    let mut added: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "ADDED")
        .filter_map(|e| e["object"]["metadata"]["name"].as_str())
        .collect();
    added.sort_unstable();
    assert_eq!(added, ["before", "blue", "red"], "{events:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "closed before the timeout"
    );

    // Streaming lists: initial events, then a bookmark annotated as their end.
    let w = api.watch(&format!("{base}?watch=true&labelSelector=by%3Dtest&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=10"));
    let mut initial = Vec::new();
    let bookmark = loop {
        let ev = w.next("the initial-events-end bookmark");
        match ev["type"].as_str() {
            Some("ADDED") => initial.push(
                ev["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ),
            Some("BOOKMARK") => break ev,
            _ => panic!("unexpected event {ev}"),
        }
    };
    initial.sort();
    assert_eq!(initial, ["before", "blue", "red"]);
    assert_eq!(
        bookmark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true",
        "{bookmark}"
    );
    assert_eq!(bookmark["object"]["kind"], "ConfigMap", "{bookmark}");
    let bm_rv: i64 = rv(&bookmark["object"])
        .parse()
        .expect("numeric bookmark resourceVersion");
    assert!(
        bm_rv >= rv(&updated).parse::<i64>().unwrap_or(0),
        "{bookmark}"
    );
    drop(w);
}

/// Runs `kaji server` with a short store history so that compaction happens after a few writes;
/// returns once it is ready.
fn start_with_short_history(c: &mut Cluster) -> KillOnDrop {
    let mut server = spawn_with_short_history(c);
    let api = Api::new(c);
    wait_for("the restarted server", Duration::from_secs(30), || {
        if let Ok(Some(st)) = server.0.try_wait() {
            panic!(
                "server exited: {st}\n{}",
                std::fs::read_to_string(c.data_dir().join("server-short.log")).unwrap_or_default()
            );
        }
        let ok = Command::new("curl")
            .args(["-sf", "-o", "/dev/null"])
            .args(api.tls_args())
            .arg(api.url("/readyz"))
            .status()
            .ok()?
            .success();
        ok.then_some(())
    });
    server
}

fn spawn_with_short_history(c: &mut Cluster) -> KillOnDrop {
    c.kill();
    let log = std::fs::File::create(c.data_dir().join("server-short.log")).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_kaji"))
        .args([
            "server",
            "--disable-agent",
            "--bind-address",
            "127.0.0.1",
            "--store-history-revisions",
            "20",
            "--store-history-seconds",
            "0",
        ])
        .arg("--https-listen-port")
        .arg(c.port.to_string())
        .arg("--data-dir")
        .arg(c.data_dir())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting kaji server");
    KillOnDrop(child)
}

/// A server started by a test itself; killed however the test ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn watch_from_a_compacted_revision_is_expired() {
    let mut c = Cluster::start("api-compacted");
    let _server = start_with_short_history(&mut c);
    let api = Api::new(&c);
    let first = api.post(CMS, &cm("gen-0", json!({}))).ok(201);
    api.post(CMS, &cm("gen-00", json!({}))).ok(201);
    let page = api.get(&format!("{CMS}?limit=1")).ok(200);
    let token = page["metadata"]["continue"]
        .as_str()
        .unwrap_or_else(|| panic!("no continue token: {page}"))
        .to_string();
    for i in 1..60 {
        api.post(CMS, &cm(&format!("gen-{i}"), json!({}))).ok(201);
    }
    let w = api.watch(&format!("{CMS}?watch=true&resourceVersion={}", rv(&first)));
    let ev = w.next("the 410 ERROR event");
    assert_eq!(ev["type"], "ERROR", "{ev}");
    let st = &ev["object"];
    assert_eq!(
        (
            st["kind"].as_str(),
            st["code"].as_i64(),
            st["reason"].as_str()
        ),
        (Some("Status"), Some(410), Some("Expired")),
        "{ev}"
    );
    assert!(
        st["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("too old resource version"),
        "{ev}"
    );
    // A list continue token from before the compaction is gone too (410 Expired).
    let s = api
        .get(&format!("{CMS}?limit=1&continue={token}"))
        .status(410, "Expired");
    assert!(
        s["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("The provided continue parameter is too old"),
        "{s}"
    );
    // The current revision still works.
    let now = rv(&api.get(CMS).ok(200));
    let w2 = api.watch(&format!("{CMS}?watch=true&resourceVersion={now}"));
    api.post(CMS, &cm("after", json!({}))).ok(201);
    assert_eq!(
        w2.next_change("ADDED after")["object"]["metadata"]["name"],
        "after"
    );
}

/// A watch of a kind that does not change, while the store goes on with others: its bookmarks
/// carry how far the store has come (as upstream's watch cache's do), so a client resuming from
/// its last bookmark after the history it started in was compacted carries on, instead of being
/// told 410 Gone and listing everything again (a reflector of pods on an idle cluster whose
/// nodes renew their Leases).
#[test]
fn bookmarks_of_a_quiet_watch_follow_the_store_past_compaction() {
    const SECRETS: &str = "/api/v1/namespaces/default/secrets";
    let mut c = Cluster::start("api-bookmarks");
    let _server = start_with_short_history(&mut c);
    let api = Api::new(&c);
    let w = api.watch(&format!("{SECRETS}?watch=true&allowWatchBookmarks=true"));
    let mut last = String::new();
    for i in 0..40 {
        last = rv(&api.post(CMS, &cm(&format!("other-{i}"), json!({}))).ok(201)).to_string();
    }
    let last: i64 = last.parse().expect("numeric resourceVersion");
    // The first bookmark comes after 15 s (the server's bookmark interval).
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut seen = Vec::new();
    let bookmark_rv = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = w
            .rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no bookmark at or after {last} ({e}); events: {seen:?}"));
        if ev["type"] == "BOOKMARK" {
            let at: i64 = rv(&ev["object"]).parse().expect("numeric bookmark resourceVersion");
            if at >= last {
                break at;
            }
        }
        seen.push(ev);
    };
    drop(w);
    // History kept: 20 revisions; the watch started 40 writes ago. Resuming from the bookmark
    // works, and a new Secret arrives.
    let w = api.watch(&format!("{SECRETS}?watch=true&allowWatchBookmarks=true&resourceVersion={bookmark_rv}"));
    api.post(SECRETS, &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "new"}}))
        .ok(201);
    let ev = w.next_change("ADDED new");
    assert_eq!((ev["type"].as_str(), ev["object"]["metadata"]["name"].as_str()), (Some("ADDED"), Some("new")), "{ev}");
}

#[test]
fn lists_page_and_select() {
    let c = Cluster::start("api-lists");
    let api = Api::new(&c);
    for (name, env, tier) in [
        ("a", "prod", Some("web")),
        ("b", "prod", Some("db")),
        ("c", "dev", Some("web")),
        ("d", "test", None),
        ("e", "dev", None),
        ("f", "prod", None),
        ("g", "qa", Some("web")),
    ] {
        let mut labels = json!({"env": env});
        if let Some(t) = tier {
            labels["tier"] = json!(t);
        }
        api.post(CMS, &cm(name, labels)).ok(201);
    }
    // Paging: limit/continue at one revision, remainingItemCount, and the union is the whole list
    // at that revision (compared with an Exact list there: controllers may add objects of their own).
    let mut seen = Vec::new();
    let mut first_remaining = None;
    let mut token = String::new();
    let mut pages = 0;
    let mut page_rv = None;
    loop {
        let path = if token.is_empty() {
            format!("{CMS}?limit=3")
        } else {
            format!("{CMS}?limit=3&continue={token}")
        };
        let page = api.get(&path).ok(200);
        pages += 1;
        let items = names(&page);
        assert!(items.len() <= 3, "{page}");
        seen.extend(items);
        let this_rv = rv(&page);
        assert_eq!(
            page_rv.get_or_insert(this_rv.clone()),
            &this_rv,
            "pages at different revisions"
        );
        // A write between pages does not show up in later pages (a consistent snapshot).
        if pages == 1 {
            api.post(CMS, &cm("zz-late", json!({"env": "late"})))
                .ok(201);
            first_remaining = page["metadata"]["remainingItemCount"].as_u64();
        }
        match page["metadata"]["continue"].as_str() {
            Some(t) if !t.is_empty() => token = t.to_string(),
            _ => break,
        }
    }
    let exact = names(
        &api.get(&format!(
            "{CMS}?resourceVersion={}&resourceVersionMatch=Exact",
            page_rv.unwrap_or_default()
        ))
        .ok(200),
    );
    assert_eq!(seen, exact, "the pages are not the list at their revision");
    for want in ["a", "b", "c", "d", "e", "f", "g"] {
        assert!(
            seen.iter().any(|n| n == want),
            "{want} missing from {seen:?}"
        );
    }
    assert!(
        !seen.iter().any(|n| n == "zz-late"),
        "a write made after the first page showed up: {seen:?}"
    );
    assert_eq!(pages, exact.len().div_ceil(3));
    assert_eq!(
        first_remaining,
        Some(exact.len() as u64 - 3),
        "remainingItemCount"
    );
    api.get(&format!("{CMS}?limit=2&continue=not-a-token"))
        .status(400, "BadRequest");

    // Each selector also requires `env`, so objects that controllers add (no labels) stay out.
    let sel = |s: &str| {
        names(
            &api.get(&format!(
                "{CMS}?labelSelector=env,{}",
                s.replace(' ', "%20")
                    .replace(',', "%2C")
                    .replace('!', "%21")
                    .replace('=', "%3D")
            ))
            .ok(200),
        )
    };
    assert_eq!(sel("env=prod"), ["a", "b", "f"]);
    assert_eq!(sel("env!=prod,env!=late"), ["c", "d", "e", "g"]);
    assert_eq!(sel("env in (dev,qa)"), ["c", "e", "g"]);
    assert_eq!(sel("env notin (prod,dev,late)"), ["d", "g"]);
    assert_eq!(sel("tier"), ["a", "b", "c", "g"]);
    assert_eq!(sel("!tier,env!=late"), ["d", "e", "f"]);
    assert_eq!(sel("tier=web,env in (prod,qa)"), ["a", "g"]);
    api.get(&format!("{CMS}?labelSelector=env%20in%20(unclosed"))
        .status(400, "BadRequest");

    // Field selectors: metadata.name everywhere, and each kind's own fields.
    let by = |path: &str, s: &str| {
        names(
            &api.get(&format!(
                "{path}?fieldSelector={}",
                s.replace('=', "%3D")
                    .replace(',', "%2C")
                    .replace('!', "%21")
            ))
            .ok(200),
        )
    };
    assert_eq!(by(CMS, "metadata.name=c"), ["c"]);
    let not_c = by(CMS, "metadata.name!=c,metadata.namespace=default");
    assert!(
        !not_c.iter().any(|n| n == "c")
            && ["a", "b", "d", "e", "f", "g", "zz-late"]
                .iter()
                .all(|w| not_c.iter().any(|n| n == w)),
        "{not_c:?}"
    );
    let s = api
        .get(&format!("{CMS}?fieldSelector=data.k%3Dv"))
        .status(400, "BadRequest");
    assert!(
        s["message"]
            .as_str()
            .unwrap_or_default()
            .contains("field label not supported: data.k"),
        "{s}"
    );

    api.post(PODS, &pod("p1")).ok(201);
    api.post(PODS, &pod("p2")).ok(201);
    api.post(&format!("{PODS}/p1/binding"), &json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p1"}, "target": {"kind": "Node", "name": "node-a"}})).ok(201);
    assert_eq!(by(PODS, "spec.nodeName=node-a"), ["p1"]);
    assert_eq!(by(PODS, "spec.nodeName="), ["p2"]);
    assert_eq!(by(PODS, "status.phase=Pending"), ["p1", "p2"]);
    assert!(by(PODS, "status.phase=Running").is_empty());
    assert_eq!(
        by(
            "/api/v1/pods",
            "spec.nodeName=node-a,metadata.namespace=default"
        ),
        ["p1"]
    );

    let secret = |name: &str, ty: &str| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": ty, "stringData": {"a": "b"}});
    let secrets = "/api/v1/namespaces/default/secrets";
    api.post(secrets, &secret("opaque", "Opaque")).ok(201);
    api.post(secrets, &json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}})).ok(201);
    assert_eq!(by(secrets, "type=Opaque"), ["opaque"]);
    assert_eq!(by(secrets, "type=kubernetes.io/tls"), ["tls"]);

    let events = "/api/v1/namespaces/default/events";
    let event = |name: &str, about: &str| {
        json!({
            "metadata": {"name": name},
            "involvedObject": {"kind": "Pod", "name": about, "namespace": "default", "uid": "0000"},
            "reason": "Testing", "message": "hello", "type": "Normal",
            "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:00:00Z", "count": 1,
            "source": {"component": "test"},
        })
    };
    api.post(events, &event("e1", "about-1")).ok(201);
    api.post(events, &event("e2", "about-2")).ok(201);
    assert_eq!(by(events, "involvedObject.name=about-1"), ["e1"]);
    assert_eq!(
        by(
            events,
            "involvedObject.kind=Pod,involvedObject.name=about-2"
        ),
        ["e2"]
    );
    assert_eq!(
        by(events, "involvedObject.uid=0000,reason=Testing,type=Normal"),
        ["e1", "e2"]
    );

    // deletecollection with a selector deletes exactly the selected objects.
    let r = api
        .delete(&format!("{CMS}?labelSelector=env%3Dprod"), None)
        .ok(200);
    assert_eq!(r["kind"], "ConfigMapList", "{r}");
    assert_eq!(
        names(&api.get(&format!("{CMS}?labelSelector=env")).ok(200)),
        ["c", "d", "e", "g", "zz-late"]
    );
    api.delete(CMS, None).ok(200);
    assert!(names(&api.get(&format!("{CMS}?labelSelector=env")).ok(200)).is_empty());
}

#[test]
fn deletion_finalizers_propagation_and_dry_run() {
    let c = Cluster::start("api-delete");
    let api = Api::new(&c);

    // A finalizer keeps the object, marked, until it is removed.
    let mut obj = cm("kept", json!({}));
    obj["metadata"]["finalizers"] = json!(["example.com/hold"]);
    api.post(CMS, &obj).ok(201);
    let r = api.delete(&format!("{CMS}/kept"), None);
    let marked = r.ok(200);
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    assert_eq!(
        marked["metadata"]["deletionGracePeriodSeconds"], 0,
        "{marked}"
    );
    let still = api.get(&format!("{CMS}/kept")).ok(200);
    assert_eq!(
        still["metadata"]["deletionTimestamp"],
        marked["metadata"]["deletionTimestamp"]
    );
    // While deleting, new finalizers may not be added but the object can be updated otherwise.
    let mut without = still.clone();
    without["metadata"]["finalizers"] = json!([]);
    api.put(&format!("{CMS}/kept"), &without).ok(200);
    api.get(&format!("{CMS}/kept")).status(404, "NotFound");

    // Graceful deletion: a pod on a node waits its grace period for the kubelet; gracePeriodSeconds=0
    // then removes it at once. A pod on no node goes at once.
    api.post(PODS, &pod("graceful")).ok(201);
    api.post(
        &format!("{PODS}/graceful/binding"),
        &json!({"metadata": {"name": "graceful"}, "target": {"kind": "Node", "name": "node-x"}}),
    )
    .ok(201);
    let r = api.delete(&format!("{PODS}/graceful"), None).ok(200);
    assert_eq!(
        (
            r["kind"].as_str(),
            r["metadata"]["deletionGracePeriodSeconds"].as_i64()
        ),
        (Some("Pod"), Some(30)),
        "{r}"
    );
    assert!(r["metadata"]["deletionTimestamp"].is_string(), "{r}");
    assert_eq!(
        api.get(&format!("{PODS}/graceful")).ok(200)["metadata"]["deletionGracePeriodSeconds"],
        30
    );
    let r = api
        .delete(
            &format!("{PODS}/graceful"),
            Some(&json!({"gracePeriodSeconds": 0})),
        )
        .ok(200);
    assert_eq!(r["kind"], "Status", "{r}");
    api.get(&format!("{PODS}/graceful")).status(404, "NotFound");
    api.post(PODS, &pod("unbound")).ok(201);
    assert_eq!(
        api.delete(&format!("{PODS}/unbound"), None).ok(200)["kind"],
        "Status"
    );
    api.get(&format!("{PODS}/unbound")).status(404, "NotFound");

    // Propagation policies are recorded as finalizers for the garbage collector.
    api.post(CMS, &cm("fg", json!({}))).ok(201);
    let r = api.delete(&format!("{CMS}/fg"), Some(&json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"}))).ok(200);
    assert_eq!(
        r["metadata"]["finalizers"],
        json!(["foregroundDeletion"]),
        "{r}"
    );
    assert!(r["metadata"]["deletionTimestamp"].is_string(), "{r}");
    api.post(CMS, &cm("orphan", json!({}))).ok(201);
    let r = api
        .delete(&format!("{CMS}/orphan?propagationPolicy=Orphan"), None)
        .ok(200);
    assert_eq!(r["metadata"]["finalizers"], json!(["orphan"]), "{r}");
    // orphanDependents=false explicitly asks for cascading: upstream answers 202 Accepted.
    api.post(CMS, &cm("cascade", json!({}))).ok(201);
    let mut fin = cm("cascade2", json!({}));
    fin["metadata"]["finalizers"] = json!(["example.com/hold"]);
    api.post(CMS, &fin).ok(201);
    let r = api.delete(
        &format!("{CMS}/cascade2"),
        Some(&json!({"orphanDependents": false})),
    );
    assert_eq!(r.code, 202, "{}", r.body);
    // Background with no finalizers: gone at once.
    let r = api
        .delete(&format!("{CMS}/cascade?propagationPolicy=Background"), None)
        .ok(200);
    assert_eq!(
        (r["kind"].as_str(), r["status"].as_str()),
        (Some("Status"), Some("Success")),
        "{r}"
    );
    api.get(&format!("{CMS}/cascade")).status(404, "NotFound");
    api.delete(&format!("{CMS}/x?propagationPolicy=Sideways"), None)
        .status(422, "Invalid");
    // Removing the finalizers finishes the deletion (a garbage collector may get there first).
    for name in ["fg", "orphan", "cascade2"] {
        let r = api.merge_patch(
            &format!("{CMS}/{name}"),
            &json!({"metadata": {"finalizers": null}}),
        );
        assert!(r.code == 200 || r.code == 404, "{}", r.body);
        wait_for(
            &format!("{name} to be gone"),
            Duration::from_secs(10),
            || (api.get(&format!("{CMS}/{name}")).code == 404).then_some(()),
        );
    }
    // Preconditions.
    let o = api.post(CMS, &cm("pre", json!({}))).ok(201);
    api.delete(
        &format!("{CMS}/pre"),
        Some(&json!({"preconditions": {"uid": "not-the-uid"}})),
    )
    .status(409, "Conflict");
    api.delete(
        &format!("{CMS}/pre"),
        Some(&json!({"preconditions": {"resourceVersion": "1"}})),
    )
    .status(409, "Conflict");
    api.delete(
        &format!("{CMS}/pre"),
        Some(&json!({"preconditions": {"uid": o["metadata"]["uid"], "resourceVersion": rv(&o)}})),
    )
    .ok(200);
    api.delete(&format!("{CMS}/pre"), None)
        .status(404, "NotFound");

    // dryRun=All: create, update and delete answer as usual but store nothing.
    // A watch from before the dry runs sees only the real writes.
    let before = rv(&api.get(CMS).ok(200));
    let w = api.watch(&format!(
        "{CMS}?watch=true&labelSelector=by%3Dtest&resourceVersion={before}"
    ));
    let r = api
        .post(&format!("{CMS}?dryRun=All"), &cm("dry", json!({})))
        .ok(201);
    assert_eq!(r["metadata"]["name"], "dry");
    assert!(r["metadata"]["uid"].is_string(), "{r}");
    api.get(&format!("{CMS}/dry")).status(404, "NotFound");
    let real = api.post(CMS, &cm("real", json!({}))).ok(201);
    let mut changed = real.clone();
    changed["data"] = json!({"k": "dry"});
    assert_eq!(
        api.put(&format!("{CMS}/real?dryRun=All"), &changed).ok(200)["data"]["k"],
        "dry"
    );
    assert_eq!(api.get(&format!("{CMS}/real")).ok(200)["data"]["k"], "v");
    api.delete(&format!("{CMS}/real?dryRun=All"), None).ok(200);
    let kept = api.get(&format!("{CMS}/real")).ok(200);
    assert_eq!(rv(&kept), rv(&real), "a dry-run changed the object");
    api.post(&format!("{CMS}?dryRun=All"), &cm("Bad_Name", json!({})))
        .status(422, "Invalid");
    // Unknown dryRun values are refused (upstream ValidateDryRun), not taken as real writes.
    let s = api
        .post(&format!("{CMS}?dryRun=Everything"), &cm("dry2", json!({})))
        .status(422, "Invalid");
    let msg = s["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("dryRun: Unsupported value: ")
            && msg.contains("Everything")
            && msg.ends_with(r#"supported values: "All""#),
        "{s}"
    );
    api.get(&format!("{CMS}/dry2")).status(404, "NotFound");
    api.post(CMS, &cm("marker", json!({}))).ok(201);
    let ev = w.next_change("ADDED real");
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("real")),
        "{ev}"
    );
    let ev = w.next_change("ADDED marker");
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("marker")),
        "a dry run reached the store: {ev}"
    );
    drop(w);

    // generateName: a random suffix of five characters.
    let g = api
        .post(
            CMS,
            &json!({"metadata": {"generateName": "gen-"}, "data": {}}),
        )
        .ok(201);
    let name = g["metadata"]["name"].as_str().unwrap_or_default();
    assert!(
        name.starts_with("gen-") && name.len() == "gen-".len() + 5,
        "{name}"
    );
    assert_eq!(g["metadata"]["generateName"], "gen-");
    api.get(&format!("{CMS}/{name}")).ok(200);
    let g2 = api
        .post(
            CMS,
            &json!({"metadata": {"generateName": "gen-"}, "data": {}}),
        )
        .ok(201);
    assert_ne!(g2["metadata"]["name"], g["metadata"]["name"]);
}

#[test]
fn services_allocate_and_subresources() {
    let c = Cluster::start("api-services");
    let api = Api::new(&c);

    // What a new cluster has.
    let ns = names(&api.get("/api/v1/namespaces").ok(200));
    for want in ["default", "kube-node-lease", "kube-public", "kube-system"] {
        assert!(ns.iter().any(|n| n == want), "namespaces: {ns:?}");
    }
    let k = api.get(&format!("{SVCS}/kubernetes")).ok(200);
    assert_eq!(k["spec"]["clusterIP"], "10.43.0.1", "{k}");
    assert_eq!(k["spec"]["ports"][0]["port"], 443, "{k}");

    let svc = |name: &str, spec: Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec});
    let a = api
        .post(
            SVCS,
            &svc(
                "a",
                json!({"selector": {"app": "a"}, "ports": [{"port": 80}]}),
            ),
        )
        .ok(201);
    let ip = a["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        ip.starts_with("10.43.") && ip != "10.43.0.1",
        "clusterIP {ip}"
    );
    assert_eq!(a["spec"]["clusterIPs"], json!([ip]), "{a}");
    assert_eq!(a["spec"]["type"], "ClusterIP");
    assert_eq!(a["spec"]["ports"][0]["targetPort"], 80, "{a}");
    assert_eq!(a["spec"]["ports"][0]["protocol"], "TCP", "{a}");

    // Same IP again: the clash is a 422 naming the field.
    let s = api
        .post(
            SVCS,
            &svc(
                "clash-ip",
                json!({"clusterIP": ip, "ports": [{"port": 80}]}),
            ),
        )
        .status(422, "Invalid");
    assert!(
        s["message"]
            .as_str()
            .unwrap_or_default()
            .contains("provided IP is already allocated"),
        "{s}"
    );
    // NodePort: allocated in 30000-32767; asking for a taken one is refused.
    let n = api
        .post(
            SVCS,
            &svc(
                "np",
                json!({"type": "NodePort", "selector": {"app": "a"}, "ports": [{"port": 80}]}),
            ),
        )
        .ok(201);
    let port = n["spec"]["ports"][0]["nodePort"].as_i64().unwrap_or(0);
    assert!((30000..=32767).contains(&port), "nodePort {port}");
    let s = api
        .post(
            SVCS,
            &svc(
                "np2",
                json!({"type": "NodePort", "ports": [{"port": 81, "nodePort": port}]}),
            ),
        )
        .status(422, "Invalid");
    let msg = s["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("spec.ports[0].nodePort")
            && msg.contains("provided port is already allocated"),
        "{msg}"
    );
    api.get(&format!("{SVCS}/np2")).status(404, "NotFound");
    let s = api
        .post(
            SVCS,
            &svc(
                "np3",
                json!({"type": "NodePort", "ports": [{"port": 81, "nodePort": 80}]}),
            ),
        )
        .status(422, "Invalid");
    assert!(
        s["message"]
            .as_str()
            .unwrap_or_default()
            .contains("spec.ports[0].nodePort"),
        "{s}"
    );
    // Freed on delete: the port can be taken again.
    api.delete(&format!("{SVCS}/np"), None).ok(200);
    let again = api
        .post(
            SVCS,
            &svc(
                "np4",
                json!({"type": "NodePort", "ports": [{"port": 81, "nodePort": port}]}),
            ),
        )
        .ok(201);
    assert_eq!(again["spec"]["ports"][0]["nodePort"], port);

    // clusterIP is immutable.
    let s = api
        .update(&format!("{SVCS}/a"), |changed| {
            changed["spec"]["clusterIP"] = json!("10.43.200.200");
            changed["spec"]["clusterIPs"] = json!(["10.43.200.200"]);
        })
        .status(422, "Invalid");
    assert!(
        s["message"]
            .as_str()
            .unwrap_or_default()
            .contains("spec.clusterIP"),
        "{s}"
    );
    assert_eq!(
        api.get(&format!("{SVCS}/a")).ok(200)["spec"]["clusterIP"],
        json!(ip)
    );

    // Upstream's ValidateService messages, as kubectl prints them (422 Invalid).
    let invalid = |name: &str, spec: Value| -> String {
        let s = api.post(SVCS, &svc(name, spec)).status(422, "Invalid");
        s["message"].as_str().unwrap_or_default().to_string()
    };
    let msg = invalid(
        "dup",
        json!({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}),
    );
    assert!(
        msg.contains("spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80,"),
        "{msg}"
    );
    let msg = invalid("tp", json!({"ports": [{"port": 80, "targetPort": "8080"}]}));
    assert!(msg.contains("spec.ports[0].targetPort: Invalid value: \"8080\": must contain at least one letter (a-z)"), "{msg}");
    let msg = invalid(
        "xn",
        json!({"type": "ExternalName", "externalName": "Bad_Name"}),
    );
    assert!(
        msg.contains(
            "spec.externalName: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"
        ),
        "{msg}"
    );
    let msg = invalid(
        "eip",
        json!({"ports": [{"port": 80}], "externalIPs": ["1.2.3"]}),
    );
    assert!(
        msg.contains("spec.externalIPs[0]: Invalid value: \"1.2.3\": must be a valid IP address"),
        "{msg}"
    );
    let msg = invalid(
        "aff",
        json!({"ports": [{"port": 80}], "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}),
    );
    assert!(
        msg.contains("spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400"),
        "{msg}"
    );
    let msg = invalid(
        "etp",
        json!({"ports": [{"port": 80}], "externalTrafficPolicy": "Local"}),
    );
    assert!(msg.contains("spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set for externally-accessible services"), "{msg}");
    let out = c.kubectl_with(
        support::KUBECTL_NEW,
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Service\nmetadata: {name: np-on-cip}\nspec:\n  ports: [{port: 80, nodePort: 30555}]\n"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("The Service \"np-on-cip\" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"),
        "{stderr}"
    );
    // Turning a NodePort Service into a ClusterIP one drops its node ports and traffic policy.
    api.post(
        SVCS,
        &svc(
            "np-to-cip",
            json!({"type": "NodePort", "ports": [{"port": 80}]}),
        ),
    )
    .ok(201);
    let changed = c.ok(&[
        "patch",
        "svc",
        "np-to-cip",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
        "-o",
        "json",
    ]);
    let changed: Value = serde_json::from_str(&changed).expect("JSON");
    assert_eq!(
        changed["spec"]["ports"][0].get("nodePort"),
        None,
        "{changed}"
    );
    assert_eq!(
        changed["spec"].get("externalTrafficPolicy"),
        None,
        "{changed}"
    );

    // pods/binding sets spec.nodeName once.
    api.post(PODS, &pod("bound")).ok(201);
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "bound"}, "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}});
    let r = api.post(&format!("{PODS}/bound/binding"), &binding).ok(201);
    assert_eq!(r["status"], "Success", "{r}");
    let p = api.get(&format!("{PODS}/bound")).ok(200);
    assert_eq!(p["spec"]["nodeName"], "node-1");
    assert!(
        p["status"]["conditions"].as_array().is_some_and(|c| c
            .iter()
            .any(|c| c["type"] == "PodScheduled" && c["status"] == "True")),
        "{p}"
    );
    let mut other = binding.clone();
    other["target"]["name"] = json!("node-2");
    api.post(&format!("{PODS}/bound/binding"), &other)
        .status(409, "Conflict");
    api.post(&format!("{PODS}/missing/binding"), &binding)
        .status(404, "NotFound");

    // The scale subresource of a Deployment.
    let d = api.post(DEPLOYS, &deployment("web", "web")).ok(201);
    assert_eq!(d["metadata"]["generation"], 1);
    let scale = api.get(&format!("{DEPLOYS}/web/scale")).ok(200);
    assert_eq!(
        (scale["kind"].as_str(), scale["apiVersion"].as_str()),
        (Some("Scale"), Some("autoscaling/v1")),
        "{scale}"
    );
    assert_eq!(scale["spec"]["replicas"], 1);
    assert_eq!(scale["status"]["selector"], "app=web", "{scale}");
    let r = api
        .update(&format!("{DEPLOYS}/web/scale"), |s| {
            s["spec"]["replicas"] = json!(4)
        })
        .ok(200);
    assert_eq!(r["spec"]["replicas"], 4);
    let mut s2 = scale.clone();
    s2["spec"]["replicas"] = json!(3);
    let d2 = api.get(&format!("{DEPLOYS}/web")).ok(200);
    assert_eq!(
        (
            d2["spec"]["replicas"].as_i64(),
            d2["metadata"]["generation"].as_i64()
        ),
        (Some(4), Some(2)),
        "{d2}"
    );
    // A stale Scale is a conflict; a patch needs none.
    api.put(&format!("{DEPLOYS}/web/scale"), &s2)
        .status(409, "Conflict");
    let r = api
        .merge_patch(
            &format!("{DEPLOYS}/web/scale"),
            &json!({"spec": {"replicas": 2}}),
        )
        .ok(200);
    assert_eq!(r["spec"]["replicas"], 2);
    api.update(&format!("{DEPLOYS}/web/scale"), |s| {
        s["spec"]["replicas"] = json!(-1)
    })
    .status(422, "Invalid");
    api.get("/api/v1/namespaces/default/configmaps/x/scale")
        .status(404, "NotFound");
}

#[test]
fn discovery_and_tables() {
    let c = Cluster::start("api-discovery");
    let api = Api::new(&c);
    let aggregated =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    for path in ["/api", "/apis"] {
        let r = api.get_accept(path, aggregated);
        let body = r.ok(200);
        let ct = r.header("content-type");
        assert_eq!(
            ct,
            ["application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"],
            "{path}"
        );
        assert_eq!(
            (body["kind"].as_str(), body["apiVersion"].as_str()),
            (
                Some("APIGroupDiscoveryList"),
                Some("apidiscovery.k8s.io/v2")
            ),
            "{path}"
        );
    }
    let core = api.get_accept("/api", aggregated).json();
    let v1 = &core["items"][0]["versions"][0];
    assert_eq!(v1["version"], "v1");
    let pods = v1["resources"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["resource"] == "pods"))
        .cloned()
        .unwrap_or_else(|| panic!("no pods in {v1}"));
    assert_eq!(pods["responseKind"]["kind"], "Pod");
    assert_eq!(pods["scope"], "Namespaced");
    assert!(
        pods["subresources"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["subresource"] == "binding")),
        "{pods}"
    );
    let groups = api.get_accept("/apis", aggregated).json();
    let apps = groups["items"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["metadata"]["name"] == "apps"))
        .cloned()
        .unwrap_or_else(|| panic!("no apps group"));
    assert_eq!(apps["versions"][0]["version"], "v1");
    // Without the aggregated Accept: the classic documents.
    let plain = api.get("/api");
    assert_eq!(plain.json()["kind"], "APIVersions");
    assert!(plain.header("content-type")[0].starts_with("application/json"));
    assert_eq!(api.get("/apis").ok(200)["kind"], "APIGroupList");
    let rl = api.get("/apis/apps/v1").ok(200);
    assert_eq!(rl["kind"], "APIResourceList");
    assert!(
        rl["resources"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["name"] == "deployments/scale")),
        "{rl}"
    );

    // Table output for pods, as `kubectl get pods` asks for it.
    api.post(PODS, &pod("t1")).ok(201);
    let table_accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    let t = api.get_accept(PODS, table_accept).ok(200);
    assert_eq!(
        (t["kind"].as_str(), t["apiVersion"].as_str()),
        (Some("Table"), Some("meta.k8s.io/v1")),
        "{t}"
    );
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        cols,
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP",
            "Node",
            "Nominated Node",
            "Readiness Gates"
        ]
    );
    let row = &t["rows"][0];
    assert_eq!(row["cells"][0], "t1");
    assert_eq!(row["cells"][1], "0/1");
    assert_eq!(row["cells"][2], "Pending");
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata", "{row}");
    let single = api
        .get_accept(&format!("{PODS}/t1?includeObject=Object"), table_accept)
        .ok(200);
    assert_eq!(single["rows"][0]["object"]["kind"], "Pod");
    api.get_accept(PODS, "application/vnd.unknown")
        .status(406, "NotAcceptable");
}

#[test]
fn pods_get_their_priority_from_priority_classes() {
    let c = Cluster::start("api-priority");
    let api = Api::new(&c);
    const PODS: &str = "/api/v1/namespaces/default/pods";
    const CLASSES: &str = "/apis/scheduling.k8s.io/v1/priorityclasses";
    let with = |name: &str, extra: Value| {
        let mut p = pod(name);
        for (k, v) in extra.as_object().expect("object") {
            p["spec"][k] = v.clone();
        }
        p
    };
    // The built-in classes, as upstream's API server creates them.
    let critical = api.get(&format!("{CLASSES}/system-node-critical")).ok(200);
    assert_eq!(critical["value"], 2_000_001_000);
    assert_eq!(api.get(&format!("{CLASSES}/system-cluster-critical")).ok(200)["value"], 2_000_000_000);

    // No class and no global default: priority 0.
    let p = api.post(PODS, &pod("plain")).ok(201);
    assert_eq!(p["spec"]["priority"], 0, "{p}");
    assert_eq!(p["spec"]["preemptionPolicy"], "PreemptLowerPriority", "{p}");
    assert!(p["spec"].get("priorityClassName").is_none(), "{p}");

    // A class gives its value and preemption policy.
    let class = |name: &str, value: i64, extra: Value| {
        let mut c = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value});
        for (k, v) in extra.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    };
    api.post(CLASSES, &class("batch", 500, json!({"preemptionPolicy": "Never"}))).ok(201);
    let p = api.post(PODS, &with("batchy", json!({"priorityClassName": "batch"}))).ok(201);
    assert_eq!((p["spec"]["priority"].clone(), p["spec"]["preemptionPolicy"].clone()), (json!(500), json!("Never")), "{p}");
    let p = api.post(PODS, &with("critical", json!({"priorityClassName": "system-node-critical"}))).ok(201);
    assert_eq!(p["spec"]["priority"], 2_000_001_000, "{p}");

    // An unknown class, or a priority that disagrees with the class, is forbidden.
    let s = api.post(PODS, &with("ghost", json!({"priorityClassName": "nope"}))).status(403, "Forbidden");
    assert_eq!(s["message"], "pods \"ghost\" is forbidden: no PriorityClass with name nope was found", "{s}");
    let s = api.post(PODS, &with("liar", json!({"priorityClassName": "batch", "priority": 7}))).status(403, "Forbidden");
    assert_eq!(
        s["message"],
        "pods \"liar\" is forbidden: the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 500 from the given PriorityClass name",
        "{s}"
    );
    assert_eq!(api.get(&format!("{PODS}/ghost")).code, 404, "a refused pod was stored");

    // A global default class applies to pods that name none, and is named in them.
    api.post(CLASSES, &class("everyone", 100, json!({"globalDefault": true}))).ok(201);
    let p = api.post(PODS, &pod("defaulted")).ok(201);
    assert_eq!(p["spec"]["priority"], 100, "{p}");
    assert_eq!(p["spec"]["priorityClassName"], "everyone", "{p}");
    // Pods that existed before keep what they were given.
    assert_eq!(api.get(&format!("{PODS}/plain")).ok(200)["spec"]["priority"], 0);
}
