//! End-to-end tests with client libraries: the official Python client (tests/clients/*.py) and
//! kube-rs do create, read, list, update, patch, delete, watch and meet optimistic concurrency,
//! against a real `kaji server`, each with the kubeconfig the server wrote.
mod support;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Config};
use serde_json::json;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;
use support::{Cluster, tail};

/// The Python client: CRUD, watch and optimistic concurrency on built-in kinds.
#[test]
fn python_client_crud_watch_and_conflict() {
    python_script("clients-python", "python_crud.py");
}

/// Runs one of tests/clients/*.py against a fresh cluster; the script prints `OK` at the end.
fn python_script(cluster_name: &str, script: &str) {
    let probe = Command::new("python3").args(["-c", "import kubernetes"]).output();
    match probe {
        Err(e) => panic!("python3 is needed for this test and could not run: {e}"),
        Ok(o) if !o.status.success() => panic!(
            "the Python module `kubernetes` is missing (`pip install kubernetes`); python3 said:\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Ok(_) => {}
    }
    let c = Cluster::start(cluster_name);
    let path = format!("{}/../../tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(&path)
        .arg(&c.kubeconfig)
        .arg("python")
        .env("HOME", c.data_dir())
        .output()
        .expect("running python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "{script} failed ({}):\nstdout: {stdout}\nstderr: {}\nserver log tail:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        tail(&c.log(), 30)
    );
}

/// The Python client's dynamic client and CustomObjectsApi on custom resources.
#[test]
fn python_client_custom_resources() {
    python_script("clients-python-crd", "python_crd.py");
}

async fn client_for(c: &Cluster) -> Client {
    let kubeconfig = Kubeconfig::read_from(&c.kubeconfig).expect("reading the kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    Client::try_from(config).expect("kube client")
}

/// The API's error Status of a failed call.
fn status_of<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}},
        },
    }))
    .expect("a Deployment")
}

#[test]
fn kube_rs_crud_watch_and_conflict() {
    let c = Cluster::start("clients-kube-rs");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = client_for(&c).await;
        let info = client.apiserver_version().await.expect("/version");
        assert!(info.git_version.starts_with("v1.33"), "{info:?}");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "rs"}})).expect("namespace");
        namespaces.create(&PostParams::default(), &ns).await.expect("creating the namespace");

        // ConfigMaps: create, conflict on create, get, list, replace, stale replace, patch, delete.
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "rs");
        let pp = PostParams::default();
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("rs-cm".into());
        cm.metadata.labels = Some(BTreeMap::from([("from".to_string(), "rust".to_string())]));
        cm.data = Some(BTreeMap::from([("a".to_string(), "1".to_string())]));

        // A watch opened before the writes sees all of them, in order.
        let start_rv = cms.list(&Default::default()).await.expect("list").metadata.resource_version.expect("list resourceVersion");
        let mut raw_watch = cms.watch(&WatchParams::default().timeout(30), &start_rv).await.expect("watch").boxed();

        let created = cms.create(&pp, &cm).await.expect("create");
        assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some(), "{created:?}");
        let s = status_of(cms.create(&pp, &cm).await);
        assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"), "{s:?}");

        let got = cms.get("rs-cm").await.expect("get");
        assert_eq!(got.data, cm.data);
        let listed = cms.list(&kube::api::ListParams::default().labels("from=rust")).await.expect("list");
        assert_eq!(listed.items.len(), 1);

        let mut fresh = got.clone();
        fresh.data.get_or_insert_default().insert("b".into(), "2".into());
        let replaced = cms.replace("rs-cm", &pp, &fresh).await.expect("replace");
        assert_ne!(replaced.metadata.resource_version, got.metadata.resource_version);
        let mut stale = got.clone();
        stale.data.get_or_insert_default().insert("c".into(), "3".into());
        let s = status_of(cms.replace("rs-cm", &pp, &stale).await);
        assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"), "{s:?}");
        assert!(s.message.contains("the object has been modified"), "{s:?}");

        let patched = cms
            .patch("rs-cm", &PatchParams::default(), &Patch::Merge(json!({"data": {"c": "3"}})))
            .await
            .expect("merge patch");
        assert_eq!(patched.data.as_ref().map(BTreeMap::len), Some(3));
        let applied = cms
            .patch("rs-cm", &PatchParams::apply("kaji-test").force(), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rs-cm"}, "data": {"d": "4"}})))
            .await
            .expect("server-side apply");
        assert_eq!(applied.data.as_ref().and_then(|d| d.get("d")).map(String::as_str), Some("4"));
        cms.delete("rs-cm", &DeleteParams::default()).await.expect("delete");
        let s = status_of(cms.get("rs-cm").await);
        assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"), "{s:?}");

        let mut seen = Vec::new();
        while seen.last().map(String::as_str) != Some("DELETED") {
            let ev = tokio::time::timeout(Duration::from_secs(15), raw_watch.next())
                .await
                .unwrap_or_else(|_| panic!("no watch event in 15s; saw {seen:?}"))
                .unwrap_or_else(|| panic!("the watch ended; saw {seen:?}"))
                .expect("a watch event");
            let (kind, obj) = match ev {
                WatchEvent::Added(o) => ("ADDED", o),
                WatchEvent::Modified(o) => ("MODIFIED", o),
                WatchEvent::Deleted(o) => ("DELETED", o),
                WatchEvent::Bookmark(_) => continue,
                WatchEvent::Error(e) => panic!("watch error {e:?}"),
            };
            // Controllers may publish objects of their own here (kube-root-ca.crt).
            if obj.metadata.name.as_deref() == Some("rs-cm") {
                seen.push(kind.to_string());
            }
        }
        assert_eq!(seen, ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED", "DELETED"]);

        // Deployments: defaults, generation, conflict, scale; and kube-runtime's watcher (list,
        // then watch with bookmarks) sees the changes.
        let deploys: Api<Deployment> = Api::namespaced(client.clone(), "rs");
        let mut stream = watcher(deploys.clone(), watcher::Config::default().timeout(20)).boxed();
        let mut init_done = false;
        while !init_done {
            match tokio::time::timeout(Duration::from_secs(15), stream.try_next()).await {
                Ok(Ok(Some(watcher::Event::InitDone))) => init_done = true,
                Ok(Ok(Some(_))) => {}
                other => panic!("watcher did not finish its initial list: {other:?}"),
            }
        }
        let d = deploys.create(&pp, &deployment("rs-deploy")).await.expect("create deployment");
        assert_eq!(d.metadata.generation, Some(1));
        let spec = d.spec.as_ref().expect("spec");
        assert_eq!(spec.strategy.as_ref().and_then(|s| s.type_.as_deref()), Some("RollingUpdate"), "defaults");
        assert_eq!(spec.revision_history_limit, Some(10));
        let s = status_of(deploys.create(&pp, &deployment("rs-deploy")).await);
        assert_eq!(s.code, 409);

        let stale = deploys.get("rs-deploy").await.expect("get deployment");
        // The deployment controller writes status too: read-modify-write again on a conflict.
        let mut attempts = 0;
        let updated = loop {
            let mut fresh = deploys.get("rs-deploy").await.expect("get deployment");
            fresh.spec.as_mut().expect("spec").replicas = Some(3);
            match deploys.replace("rs-deploy", &pp, &fresh).await {
                Err(kube::Error::Api(s)) if s.code == 409 && attempts < 20 => attempts += 1,
                other => break other.expect("replace deployment"),
            }
        };
        assert_eq!(updated.metadata.generation, Some(2));
        let s = status_of(deploys.replace("rs-deploy", &pp, &stale).await);
        assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"), "{s:?}");
        let scale = deploys.get_scale("rs-deploy").await.expect("get scale");
        assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));
        deploys
            .patch_scale("rs-deploy", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 5}})))
            .await
            .expect("patch scale");
        deploys.delete("rs-deploy", &DeleteParams::default()).await.expect("delete deployment");

        let mut replicas_seen = Vec::new();
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(15), stream.try_next())
                .await
                .unwrap_or_else(|_| panic!("watcher: no event in 15s; saw replicas {replicas_seen:?}"))
                .expect("watcher event")
                .expect("watcher stream open");
            match ev {
                // Status updates by the controller repeat a value; record each change once.
                watcher::Event::Apply(d) => {
                    let r = d.spec.and_then(|s| s.replicas).unwrap_or_default();
                    if replicas_seen.last() != Some(&r) {
                        replicas_seen.push(r);
                    }
                }
                watcher::Event::Delete(d) => {
                    assert_eq!(d.metadata.name.as_deref(), Some("rs-deploy"));
                    break;
                }
                _ => {}
            }
        }
        assert_eq!(replicas_seen, [1, 3, 5]);
    });
}

/// A delete without preconditions succeeds while other clients keep writing the object (as
/// upstream's conditional delete retries on a changed object); with a stale resourceVersion
/// precondition it is a 409.
#[test]
fn deletes_win_over_concurrent_writes() {
    let c = Cluster::start_with("clients-delete-race", &["--disable-controllers", "--disable-scheduler"]);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let client = client_for(&c).await;
            let cms: Api<ConfigMap> = Api::namespaced(client, "default");
            for i in 0..20 {
                let name = format!("busy-{i}");
                let mut cm = ConfigMap::default();
                cm.metadata.name = Some(name.clone());
                let created = cms.create(&PostParams::default(), &cm).await.expect("create");
                // Four writers change the object as fast as they can until it is gone.
                let writers: Vec<_> = (0..4)
                    .map(|w| {
                        let (cms, name) = (cms.clone(), name.clone());
                        tokio::spawn(async move {
                            let mut n = 0u64;
                            loop {
                                n += 1;
                                // (n only makes each write a change)
                                let patch = json!({"metadata": {"labels": {format!("w{w}"): n.to_string()}}});
                                match cms.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                                    Ok(_) => {}
                                    Err(kube::Error::Api(s)) if s.code == 404 => return,
                                    Err(e) => panic!("writer {w}: {e}"),
                                }
                            }
                        })
                    })
                    .collect();
                // Let the writers get going: wait until the object has moved on.
                let start = created.metadata.resource_version.clone();
                loop {
                    let now = cms.get(&name).await.expect("get").metadata.resource_version;
                    if now != start {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                if i % 5 == 0 {
                    let stale = DeleteParams { preconditions: Some(kube::api::Preconditions { resource_version: start, uid: None }), ..Default::default() };
                    let s = status_of(cms.delete(&name, &stale).await);
                    assert_eq!(s.code, 409, "{s:?}");
                }
                cms.delete(&name, &DeleteParams::default()).await.unwrap_or_else(|e| panic!("delete {name} under concurrent writes: {e}"));
                // Every writer stops with a clean 404 once the object is gone.
                for w in writers {
                    w.await.expect("writer");
                }
            }
        });
}
