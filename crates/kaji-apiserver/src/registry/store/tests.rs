//! The generic store against a real redb store in a temporary directory: create, update and its
//! compare-and-swap, delete with finalizers and grace periods, delete-collection.

use super::*;
use crate::allocator::Allocators;
use crate::registry::{Admission, Registry};
use kaji_store::{RedbOptions, RedbStore, Store as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A redb store in its own temporary directory (removed on drop), the built-in kinds, and
/// the allocators and admission settings the strategies use.
struct Env {
    dir: PathBuf,
    storage: Option<RedbStore>,
    registry: Registry,
    allocators: Allocators,
    admission: Admission,
}

impl Env {
    async fn new() -> Env {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!("kaji-apiserver-store-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let storage = RedbStore::open(&dir.join("store.redb"), RedbOptions::default()).expect("open store");
        let env = Env {
            dir,
            storage: Some(storage),
            registry: Registry::builtin(),
            allocators: Allocators::new(("10.43.0.0".parse().unwrap(), 16), (30000, 32767)),
            // No controller manager makes service accounts here (as `kaji server --disable-controllers`).
            admission: Admission { service_account: false, ..Admission::default() },
        };
        env.store("", "namespaces").create(None, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}), &opts()).await.expect("namespace");
        env
    }

    fn storage(&self) -> &RedbStore {
        self.storage.as_ref().expect("open")
    }

    fn strategy(&self, group: &str, plural: &str) -> &Arc<dyn Strategy> {
        let i = |s: &&Arc<dyn Strategy>| s.info().group == group && s.info().version == "v1" && s.info().plural == plural;
        self.registry.builtin_kinds().iter().find(i).expect("served kind")
    }

    fn store(&self, group: &str, plural: &str) -> Store<'_> {
        Store { storage: self.storage(), strategy: self.strategy(group, plural), registry: &self.registry, allocators: &self.allocators, admission: &self.admission }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        drop(self.storage.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn opts() -> WriteOptions {
    WriteOptions { dry_run: false, field_manager: Some("test".into()) }
}

fn configmap(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default", "labels": labels}, "data": {"a": "1"}})
}

fn rv(obj: &Value) -> i64 {
    meta_str(obj, "resourceVersion").and_then(|s| s.parse().ok()).expect("resourceVersion")
}

#[tokio::test]
async fn create_sets_metadata_and_refuses_duplicates_and_missing_namespaces() {
    let env = Env::new().await;
    let cms = env.store("", "configmaps");
    let created = cms.create(Some("default"), configmap("one", json!({})), &opts()).await.unwrap();
    assert!(meta_str(&created, "uid").is_some_and(|u| !u.is_empty()));
    assert!(meta_str(&created, "creationTimestamp").is_some());
    assert!(created.pointer("/metadata/labels").is_none(), "empty labels are dropped");
    assert_eq!(created.pointer("/metadata/managedFields/0/manager"), Some(&json!("test")));
    let stored = cms.get(Some("default"), "one").await.unwrap();
    assert_eq!(stored, created);

    let again = cms.create(Some("default"), configmap("one", json!({})), &opts()).await.unwrap_err();
    assert_eq!((again.code, again.reason), (409, "AlreadyExists"));

    let mut generated = configmap("", json!({}));
    generated["metadata"] = json!({"generateName": "gen-", "namespace": "default"});
    let generated = cms.create(Some("default"), generated, &opts()).await.unwrap();
    assert!(meta_str(&generated, "name").is_some_and(|n| n.starts_with("gen-") && n.len() == 9));

    let mut elsewhere = configmap("two", json!({}));
    elsewhere["metadata"]["namespace"] = json!("missing");
    let missing = cms.create(Some("missing"), elsewhere, &opts()).await.unwrap_err();
    assert_eq!(missing.code, 404);

    let dry = cms.create(Some("default"), configmap("dry", json!({})), &WriteOptions { dry_run: true, field_manager: None }).await.unwrap();
    assert_eq!(meta_str(&dry, "name"), Some("dry"));
    assert_eq!(cms.get(Some("default"), "dry").await.unwrap_err().code, 404);

    let invalid = cms.create(Some("default"), configmap("Not_A_Name", json!({})), &opts()).await.unwrap_err();
    assert_eq!(invalid.code, 422);
}

#[tokio::test]
async fn update_compares_and_swaps_at_the_given_resource_version() {
    let env = Env::new().await;
    let cms = env.store("", "configmaps");
    let created = cms.create(Some("default"), configmap("cm", json!({})), &opts()).await.unwrap();
    let mut changed = created.clone();
    changed["data"]["a"] = json!("2");
    let (updated, was_created) = cms.update(Some("default"), "cm", changed.clone(), Part::Main, &opts()).await.unwrap();
    assert!(!was_created);
    assert!(rv(&updated) > rv(&created));
    assert_eq!(updated.pointer("/data/a"), Some(&json!("2")));
    assert_eq!(meta_str(&updated, "uid"), meta_str(&created, "uid"));

    // The same change again, still at the first read's resourceVersion: somebody wrote since.
    changed["data"]["a"] = json!("3");
    let stale = cms.update(Some("default"), "cm", changed, Part::Main, &opts()).await.unwrap_err();
    assert_eq!((stale.code, stale.reason), (409, "Conflict"));
    assert_eq!(cms.get(Some("default"), "cm").await.unwrap().pointer("/data/a"), Some(&json!("2")));

    // Unchanged: no write, the revision stays.
    let (same, outcome) = cms.guaranteed_update(Some("default"), "cm", Part::Main, &opts(), |cur| Ok(cur.clone())).await.unwrap();
    assert_eq!(outcome, Outcome::Unchanged);
    assert_eq!(rv(&same), rv(&updated));

    let missing = cms.update(Some("default"), "nope", configmap("nope", json!({})), Part::Main, &opts()).await.unwrap_err();
    assert_eq!(missing.code, 404);
    // Endpoints may be created by an update.
    let eps = env.store("", "endpoints");
    let ep = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "ep"}});
    let (_, was_created) = eps.update(Some("default"), "ep", ep, Part::Main, &opts()).await.unwrap();
    assert!(was_created);
}

#[tokio::test]
async fn guaranteed_update_retries_on_a_concurrent_write() {
    let env = Env::new().await;
    let cms = env.store("", "configmaps");
    cms.create(Some("default"), configmap("cm", json!({})), &opts()).await.unwrap();
    let key = cms.strategy.key(Some("default"), "cm");
    let storage = env.storage();
    let mut calls = 0;
    let (obj, outcome) = cms
        .guaranteed_update(Some("default"), "cm", Part::Main, &opts(), |cur| {
            calls += 1;
            if calls == 1 {
                // Another writer lands between this read and the write.
                let mut other = cur.clone();
                other["data"]["other"] = json!("yes");
                futures::executor::block_on(storage.update(&key, crate::objects::encode(&other), rv(cur))).expect("concurrent write");
            }
            let mut next = cur.clone();
            next["data"]["mine"] = json!("yes");
            Ok(next)
        })
        .await
        .unwrap();
    assert_eq!(calls, 2, "computed again on the fresh object");
    assert_eq!(outcome, Outcome::Updated);
    assert_eq!(obj.pointer("/data/other"), Some(&json!("yes")));
    assert_eq!(obj.pointer("/data/mine"), Some(&json!("yes")));
}

#[tokio::test]
async fn status_updates_change_only_status_and_spec_changes_bump_generation() {
    let env = Env::new().await;
    let deploys = env.store("apps", "deployments");
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"}, "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
    }, "status": {"replicas": 5}});
    let created = deploys.create(Some("default"), d, &opts()).await.unwrap();
    assert_eq!(created.pointer("/metadata/generation"), Some(&json!(1)));
    assert!(created.get("status").is_none(), "status is not set on create");

    let mut scaled = created.clone();
    scaled["spec"]["replicas"] = json!(3);
    scaled["status"] = json!({"replicas": 7});
    let (scaled, _) = deploys.update(Some("default"), "web", scaled, Part::Main, &opts()).await.unwrap();
    assert_eq!(scaled.pointer("/metadata/generation"), Some(&json!(2)));
    assert!(scaled.get("status").is_none(), "an update keeps the stored status");

    let mut status = scaled.clone();
    status["spec"]["replicas"] = json!(9);
    status["status"] = json!({"replicas": 3});
    let (after, _) = deploys.update(Some("default"), "web", status, Part::Status, &opts()).await.unwrap();
    assert_eq!(after.pointer("/status/replicas"), Some(&json!(3)));
    assert_eq!(after.pointer("/spec/replicas"), Some(&json!(3)), "a status update resets spec changes");
    assert_eq!(after.pointer("/metadata/generation"), Some(&json!(2)));
}

#[tokio::test]
async fn delete_waits_for_finalizers_and_checks_preconditions() {
    let env = Env::new().await;
    let cms = env.store("", "configmaps");
    let mut cm = configmap("cm", json!({}));
    cm["metadata"]["finalizers"] = json!(["example.com/hold"]);
    let created = cms.create(Some("default"), cm, &opts()).await.unwrap();

    let wrong_uid = DeleteOptions { preconditions: Preconditions { uid: Some("other".into()), resource_version: None }, ..Default::default() };
    let e = cms.delete(Some("default"), "cm", &wrong_uid).await.unwrap_err();
    assert_eq!(e.code, 409);
    let wrong_rv = DeleteOptions { preconditions: Preconditions { uid: None, resource_version: Some("1".into()) }, ..Default::default() };
    assert_eq!(cms.delete(Some("default"), "cm", &wrong_rv).await.unwrap_err().code, 409);

    let right = DeleteOptions { preconditions: Preconditions { uid: meta_str(&created, "uid").map(str::to_string), resource_version: None }, ..Default::default() };
    let marked = cms.delete(Some("default"), "cm", &right).await.unwrap();
    assert!(!marked.removed);
    assert!(objects::is_deleting(&marked.object));
    assert!(objects::is_deleting(&cms.get(Some("default"), "cm").await.unwrap()));

    // Removing the last finalizer finishes the deletion.
    let (_, outcome) = cms
        .guaranteed_update(Some("default"), "cm", Part::Main, &opts(), |cur| {
            let mut next = cur.clone();
            next["metadata"]["finalizers"] = json!([]);
            Ok(next)
        })
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Deleted);
    assert_eq!(cms.get(Some("default"), "cm").await.unwrap_err().code, 404);
    assert_eq!(cms.delete(Some("default"), "cm", &DeleteOptions::default()).await.unwrap_err().code, 404);

    // Orphan propagation is recorded as the `orphan` finalizer for the garbage collector.
    cms.create(Some("default"), configmap("orphaned", json!({})), &opts()).await.unwrap();
    let orphan = DeleteOptions { propagation_policy: Some("Orphan".into()), ..Default::default() };
    let marked = cms.delete(Some("default"), "orphaned", &orphan).await.unwrap();
    assert!(!marked.removed);
    assert_eq!(objects::finalizers(&marked.object), ["orphan"]);

    // A kind's own delete finalizer (a CRD's cleanup) stays beside the propagation's.
    let crds = env.store("apiextensions.k8s.io", "customresourcedefinitions");
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "hoges.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "hoges", "kind": "Hoge"},
                 "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}}]}});
    crds.create(None, crd, &opts()).await.unwrap();
    let foreground = DeleteOptions { propagation_policy: Some("Foreground".into()), ..Default::default() };
    let marked = crds.delete(None, "hoges.example.com", &foreground).await.unwrap();
    assert!(!marked.removed);
    assert_eq!(objects::finalizers(&marked.object), ["customresourcecleanup.apiextensions.k8s.io", "foregroundDeletion"]);

    // Without finalizers the object goes at once; dry run leaves it.
    cms.create(Some("default"), configmap("plain", json!({})), &opts()).await.unwrap();
    let dry = DeleteOptions { dry_run: true, ..Default::default() };
    assert!(!cms.delete(Some("default"), "plain", &dry).await.unwrap().removed);
    assert!(cms.get(Some("default"), "plain").await.is_ok());
    assert!(cms.delete(Some("default"), "plain", &DeleteOptions::default()).await.unwrap().removed);
    assert_eq!(cms.get(Some("default"), "plain").await.unwrap_err().code, 404);
}

#[tokio::test]
async fn bound_pods_are_deleted_gracefully() {
    let env = Env::new().await;
    let pods = env.store("", "pods");
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "busybox"}]}});
    let created = pods.create(Some("default"), pod, &opts()).await.unwrap();
    assert_eq!(created.pointer("/spec/priority"), Some(&json!(0)), "priority admission ran");

    let marked = pods.delete(Some("default"), "p", &DeleteOptions::default()).await.unwrap();
    assert!(!marked.removed);
    assert_eq!(marked.object.pointer("/metadata/deletionGracePeriodSeconds"), Some(&json!(30)));
    // A shorter grace period shortens the wait; 0 removes the pod.
    let shorter = pods.delete(Some("default"), "p", &DeleteOptions { grace_period_seconds: Some(5), ..Default::default() }).await.unwrap();
    assert_eq!(shorter.object.pointer("/metadata/deletionGracePeriodSeconds"), Some(&json!(5)));
    let now = pods.delete(Some("default"), "p", &DeleteOptions { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    assert!(now.removed);
    assert_eq!(pods.get(Some("default"), "p").await.unwrap_err().code, 404);
}

#[tokio::test]
async fn delete_collection_deletes_what_the_selector_picks() {
    let env = Env::new().await;
    let cms = env.store("", "configmaps");
    for (name, tier) in [("a", "web"), ("b", "web"), ("c", "db")] {
        cms.create(Some("default"), configmap(name, json!({"tier": tier})), &opts()).await.unwrap();
    }
    let web = Filter::parse(cms.strategy.as_ref(), "tier=web", "").unwrap();
    let (deleted, revision) = cms.delete_collection(Some("default"), &web, &ListOptions::default(), &DeleteOptions::default()).await.unwrap();
    let names: Vec<&str> = deleted.iter().filter_map(|o| meta_str(o, "name")).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(revision > 0);
    let left = cms.list(Some("default"), &Filter::everything(), &ListOptions::default()).await.unwrap();
    let names: Vec<&str> = left.items.iter().filter_map(|o| meta_str(o, "name")).collect();
    assert_eq!(names, ["c"]);
    assert!(Filter::parse(cms.strategy.as_ref(), "", "spec.nodeName=x").is_err(), "configmaps have no such field");
}

#[tokio::test]
async fn lists_page_at_one_revision() {
    let env = Env::new().await;
    let cms = env.store("", "configmaps");
    for name in ["a", "b", "c"] {
        cms.create(Some("default"), configmap(name, json!({})), &opts()).await.unwrap();
    }
    let first = cms.list(Some("default"), &Filter::everything(), &ListOptions { limit: Some(2), ..Default::default() }).await.unwrap();
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.remaining, Some(1));
    cms.create(Some("default"), configmap("d", json!({})), &opts()).await.unwrap();
    let rest = cms
        .list(Some("default"), &Filter::everything(), &ListOptions { limit: Some(5), continue_token: first.continue_token.clone(), ..Default::default() })
        .await
        .unwrap();
    let names: Vec<&str> = rest.items.iter().filter_map(|o| meta_str(o, "name")).collect();
    assert_eq!(names, ["c"], "the continuation reads at the first page's revision");
    assert_eq!(rest.revision, first.revision);
}

/// A selector judged from the sparse decode of the stored bytes answers as on the whole object,
/// for direct fields (`spec.nodeName`), computed ones (`spec.hostNetwork`, a PV's `name`) and
/// labels; the sparse decode is used exactly where the field is the member it names.
#[test]
fn stored_objects_match_as_decoded_ones() {
    let registry = Registry::builtin();
    let pods = registry.get("", "v1", "pods").expect("pods").clone();
    let pvs = registry.get("", "v1", "persistentvolumes").expect("pvs").clone();
    let objs = [
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "ns1", "labels": {"app": "web"}}, "spec": {"nodeName": "n1", "hostNetwork": true}, "status": {"phase": "Running"}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b", "namespace": "ns2"}, "spec": {}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "c", "namespace": "ns1", "labels": {"app": "db", "tier": "x"}}, "spec": {"nodeName": ""}, "status": {}}),
    ];
    let cases = [
        ("", "spec.nodeName!=", true),
        ("", "spec.nodeName=n1", true),
        ("app=web", "", true),
        ("app in (web,db),!tier", "metadata.namespace=ns1", true),
        ("", "status.phase=Running,metadata.name!=b", true),
        ("", "spec.hostNetwork=true", false),
        ("", "spec.hostNetwork=false", false),
    ];
    for (labels, fields, sparse) in cases {
        let filter = Filter::parse(pods.as_ref(), labels, fields).expect("selector");
        assert_eq!(filter.sparse.is_some(), sparse, "{labels:?} {fields:?}");
        for (i, obj) in objs.iter().enumerate() {
            let kv = kaji_store::KeyValue { key: format!("/k/{i}"), value: crate::objects::encode(obj), create_revision: 2, mod_revision: 3 };
            assert_eq!(filter.matches_stored(pods.as_ref(), &kv), filter.matches(pods.as_ref(), &pods.decode(&kv)), "{labels:?} {fields:?} {obj}");
        }
    }
    let filter = Filter::parse(pvs.as_ref(), "", "name=pv1").expect("selector");
    assert!(filter.sparse.is_none());
    let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"}, "spec": {}});
    let kv = kaji_store::KeyValue { key: "/k/pv1".into(), value: crate::objects::encode(&pv), create_revision: 2, mod_revision: 3 };
    assert!(filter.matches_stored(pvs.as_ref(), &kv));
}

/// A list with a selector gives what decoding every object and filtering would (it judges the
/// stored bytes and decodes only the matches), and its metadata-only form gives each match's
/// `metadata` exactly as the whole object has it (resourceVersion included).
#[tokio::test]
async fn selected_lists_and_metadata_lists_match_whole_decodes() {
    let env = Env::new().await;
    let cms = env.store("", "configmaps");
    for (name, tier) in [("a", "web"), ("b", "db"), ("c", "web")] {
        cms.create(Some("default"), configmap(name, json!({"tier": tier})), &opts()).await.unwrap();
    }
    let web = Filter::parse(cms.strategy.as_ref(), "tier=web", "metadata.name!=zz").unwrap();
    assert!(web.sparse.is_some());
    let all = cms.list(Some("default"), &Filter::everything(), &ListOptions::default()).await.unwrap();
    let expected: Vec<Value> = all.items.iter().filter(|o| web.matches(cms.strategy.as_ref(), o)).cloned().collect();
    let got = cms.list(Some("default"), &web, &ListOptions::default()).await.unwrap();
    assert_eq!(got.items, expected);
    assert_eq!(got.items.len(), 2);
    let meta = cms.list_metadata(Some("default"), &web, &ListOptions::default()).await.unwrap();
    let want: Vec<Value> = expected.iter().map(|o| json!({"metadata": o["metadata"]})).collect();
    assert_eq!(meta.items, want);
    assert!(meta.items.iter().all(|o| o["metadata"]["resourceVersion"].is_string()));
    let page = cms.list_metadata(None, &Filter::everything(), &ListOptions { limit: Some(1), ..Default::default() }).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(page.continue_token.is_some());
}

/// The text prefilter (values an object's bytes must contain) refuses only what the selector
/// refuses: names, labels and fields with `=`, not `!=`, and not a field's default value.
#[test]
fn text_prefilter_refuses_only_non_matches() {
    let registry = Registry::builtin();
    let pods = registry.get("", "v1", "pods").expect("pods").clone();
    let objs = [
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "prod", "labels": {"tier": "back"}}, "spec": {"nodeName": "node-1"}, "status": {"phase": "Running"}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-2", "namespace": "prod"}, "spec": {"nodeName": "node-10"}, "status": {"phase": "Pending"}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "db-1", "namespace": "test"}, "spec": {}}),
    ];
    let cases = [
        ("", "spec.nodeName=node-1"),
        ("", "spec.nodeName!=node-1"),
        ("", "spec.nodeName==node-10,metadata.namespace=prod"),
        ("tier=back", ""),
        ("tier!=back", "status.phase=Running"),
        ("", "status.phase!=Running"),
        ("", "metadata.name=db-1"),
    ];
    for (labels, fields) in cases {
        let filter = Filter::parse(pods.as_ref(), labels, fields).expect("selector");
        assert!(filter.sparse.is_some());
        for (i, obj) in objs.iter().enumerate() {
            let kv = kaji_store::KeyValue { key: format!("/k/{i}"), value: crate::objects::encode(obj), create_revision: 2, mod_revision: 3 };
            assert_eq!(filter.matches_stored(pods.as_ref(), &kv), filter.matches(pods.as_ref(), &pods.decode(&kv)), "{labels:?} {fields:?} {obj}");
        }
    }
    assert_eq!(Filter::parse(pods.as_ref(), "tier=back", "spec.nodeName=node-1,status.phase!=Failed").unwrap().needles, ["back", "node-1"]);
}

/// A selector list paged with `limit` reads the store in batches, yet every page ends at its
/// last item and the pages together hold every match once.
#[tokio::test]
async fn selected_lists_page_through_every_match_once() {
    let env = Env::new().await;
    let cms = env.store("", "configmaps");
    for i in 0..30 {
        cms.create(Some("default"), configmap(&format!("c{i:02}"), json!({"tier": if i % 3 == 0 { "web" } else { "db" }})), &opts()).await.unwrap();
    }
    let web = Filter::parse(cms.strategy.as_ref(), "tier=web", "").unwrap();
    let (mut names, mut token, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = cms.list_stored(Some("default"), &web, &ListOptions { limit: Some(4), continue_token: token.clone(), ..Default::default() }).await.unwrap();
        assert!(page.items.len() <= 4 && page.remaining.is_none());
        names.extend(page.items.iter().map(|kv| kv.key.rsplit('/').next().unwrap_or_default().to_string()));
        pages += 1;
        token = page.continue_token;
        if token.is_none() {
            break;
        }
    }
    let want: Vec<String> = (0..30).filter(|i| i % 3 == 0).map(|i| format!("c{i:02}")).collect();
    assert_eq!(names, want);
    assert_eq!(pages, 3);
}
