//! The CRD controller, inside the API server (upstream's naming, establishing and finalizer
//! controllers, and the handler's view of which CRDs are served, in one loop): it watches the
//! stored CRDs and
//! - accepts names (`status.acceptedNames`, condition `NamesAccepted`, with upstream's
//!   `PluralConflict`, `SingularConflict`, `ShortNamesConflict`, `KindConflict` and
//!   `ListKindConflict` when another CRD of the group holds a name) and sets `Established`;
//! - keeps `status.storedVersions` holding the storage version;
//! - serves the established CRDs' versions: one `CustomResource` strategy per served version in
//!   the registry's custom kinds, which discovery, routing and tables read;
//! - on delete (the strategy added `customresourcecleanup.apiextensions.k8s.io`), deletes every
//!   object of the CRD, then removes the finalizer.

use super::strategy::CustomResource;
use crate::ApiServer;
use crate::objects::{self, meta_str};
use crate::registry::apiextensions::{CLEANUP_FINALIZER, condition_true, set_condition, storage_version};
use crate::registry::store::{DeleteOptions, Filter, ListOptions, Part, Store, WriteOptions};
use crate::registry::{CustomKinds, Strategy};
use futures::StreamExt;
use kaji_api::ApiError;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How often the controller looks again while custom objects of a deleted CRD remain.
const CLEANUP_RETRY: Duration = Duration::from_millis(500);
const RESYNC: Duration = Duration::from_secs(60);

/// Serves the stored CRDs now, then keeps doing so as they change.
pub async fn start(server: &Arc<ApiServer>) -> anyhow::Result<()> {
    let wake = Arc::new(Notify::new());
    let prefix = crds(server).prefix(None);
    // Watch first so that no change between the first sync and the watch is missed.
    let events = server.store.watch(&prefix, 0).await.map_err(|e| anyhow::anyhow!("watching CRDs: {e}"))?;
    tokio::spawn(watch(server.clone(), prefix, wake.clone(), Some(events)));
    let pending = sync(server).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "serving CustomResourceDefinitions");
        true
    });
    tokio::spawn(run(server.clone(), wake, pending));
    Ok(())
}

fn crds(server: &ApiServer) -> Arc<dyn Strategy> {
    server.registry.get("apiextensions.k8s.io", "v1", "customresourcedefinitions").expect("CRDs are a built-in kind")
}

async fn watch(server: Arc<ApiServer>, prefix: String, wake: Arc<Notify>, mut first: Option<kaji_store::WatchStream>) {
    loop {
        let events = match first.take() {
            Some(e) => Ok(e),
            None => server.store.watch(&prefix, 0).await,
        };
        match events {
            Ok(mut events) => {
                wake.notify_one();
                while let Some(ev) = events.next().await {
                    if let Err(e) = ev {
                        tracing::debug!(error = %e, "CRD watch ended");
                        break;
                    }
                    wake.notify_one();
                }
            }
            Err(e) => tracing::debug!(error = %e, "CRD watch failed"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn run(server: Arc<ApiServer>, wake: Arc<Notify>, mut pending: bool) {
    loop {
        let wait = if pending { CLEANUP_RETRY } else { RESYNC };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        pending = match sync(&server).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "serving CustomResourceDefinitions");
                true
            }
        };
    }
}

/// One round over every CRD. Returns whether a deletion is still under way.
async fn sync(server: &Arc<ApiServer>) -> Result<bool, ApiError> {
    let crd_strategy = crds(server);
    let store = Store::of(server, &crd_strategy);
    let mut items = store.list(None, &Filter::everything(), &ListOptions::default()).await?.items;
    // Older CRDs keep their names against newer ones (the order upstream's queue usually sees).
    items.sort_by(|a, b| {
        let key = |o: &Value| (meta_str(o, "creationTimestamp").unwrap_or_default().to_string(), meta_str(o, "name").unwrap_or_default().to_string());
        key(a).cmp(&key(b))
    });
    let mut pending = false;
    for i in 0..items.len() {
        let crd = &items[i];
        if objects::is_deleting(crd) {
            if objects::finalizers(crd).iter().any(|f| f == CLEANUP_FINALIZER) {
                match cleanup(server, &store, crd).await {
                    Ok(true) => {}
                    Ok(false) => pending = true,
                    Err(e) => {
                        tracing::warn!(crd = meta_str(crd, "name").unwrap_or_default(), error = %e, "deleting custom objects");
                        pending = true;
                    }
                }
            }
            continue;
        }
        let mut next = crd.clone();
        accept_names(&mut next, &items, i);
        if next != *crd {
            let name = meta_str(crd, "name").unwrap_or_default().to_string();
            let status = next["status"].clone();
            let opts = WriteOptions::default();
            match store
                .guaranteed_update(None, &name, Part::Status, &opts, |cur| {
                    let mut n = cur.clone();
                    n["status"] = status.clone();
                    Ok(n)
                })
                .await
            {
                Ok((stored, _)) => items[i] = stored,
                // Changed meanwhile: the watch brings it round again.
                Err(e) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
    }
    serve(server, &items);
    if let Err(e) = register_api_services(server, &items).await {
        tracing::warn!(error = %e, "registering the custom groups' APIServices");
        pending = true;
    }
    Ok(pending)
}

const AUTOMANAGED: &str = "kube-aggregator.kubernetes.io/automanaged";

/// Upstream's crdregistration controller: a local APIService `<version>.<group>` for every
/// group/version an established CRD serves (so `kubectl get apiservices` lists them), removed
/// when no CRD serves it any more.
async fn register_api_services(server: &Arc<ApiServer>, crds: &[Value]) -> Result<(), ApiError> {
    let mut served: std::collections::BTreeSet<(String, String)> = std::collections::BTreeSet::new();
    for crd in crds.iter().filter(|c| condition_true(c, "Established") && !objects::is_deleting(c)) {
        let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default();
        for v in crd.pointer("/spec/versions").and_then(Value::as_array).into_iter().flatten().filter(|v| v["served"] == true) {
            served.insert((group.to_string(), v["name"].as_str().unwrap_or_default().to_string()));
        }
    }
    let Some(strategy) = server.registry.get("apiregistration.k8s.io", "v1", "apiservices") else { return Ok(()) };
    let store = Store::of(server, &strategy);
    let existing = store.list(None, &Filter::everything(), &ListOptions::default()).await?.items;
    let mut have = std::collections::BTreeSet::new();
    for svc in &existing {
        let group = svc.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default().to_string();
        let version = svc.pointer("/spec/version").and_then(Value::as_str).unwrap_or_default().to_string();
        let ours = svc.pointer("/metadata/labels").and_then(|l| l.get(AUTOMANAGED)).and_then(Value::as_str) == Some("true");
        let key = (group, version);
        if ours && !served.contains(&key) {
            let name = meta_str(svc, "name").unwrap_or_default();
            match store.delete(None, name, &DeleteOptions::default()).await {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        have.insert(key);
    }
    for (group, version) in served.iter().filter(|k| !have.contains(*k)) {
        let obj = json!({
            "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": format!("{version}.{group}"), "labels": {AUTOMANAGED: "true"}},
            "spec": {"group": group, "version": version, "groupPriorityMinimum": 1000, "versionPriority": 100},
        });
        crate::bootstrap::ensure(server, "apiregistration.k8s.io", "apiservices", None, obj).await.map_err(|e| ApiError::internal(e.to_string()))?;
    }
    Ok(())
}

/// Upstream's `calculateNamesAndConditions`, then `Established` (at once: one API server).
fn accept_names(crd: &mut Value, all: &[Value], me: usize) {
    let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default().to_string();
    let mut resources: HashSet<String> = HashSet::new();
    let mut kinds: HashSet<String> = HashSet::new();
    for (j, other) in all.iter().enumerate() {
        if j == me || other.pointer("/spec/group").and_then(Value::as_str) != Some(group.as_str()) {
            continue;
        }
        let names = &other["status"]["acceptedNames"];
        for k in ["plural", "singular"] {
            if let Some(s) = names[k].as_str() {
                resources.insert(s.to_string());
            }
        }
        for s in names["shortNames"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            resources.insert(s.to_string());
        }
        for k in ["kind", "listKind"] {
            if let Some(s) = names[k].as_str() {
                kinds.insert(s.to_string());
            }
        }
    }
    let requested = crd["spec"]["names"].clone();
    let accepted = crd.pointer("/status/acceptedNames").cloned().unwrap_or(json!({}));
    let mut new_names = accepted.clone();
    if !new_names.is_object() {
        new_names = json!({});
    }
    let mut problem: Option<(&str, String)> = None;
    let fresh = |req: &Value, acc: &Value, used: &HashSet<String>| -> Result<(), String> {
        let r = req.as_str().unwrap_or_default();
        if r == acc.as_str().unwrap_or_default() || !used.contains(r) { Ok(()) } else { Err(format!("{r:?} is already in use")) }
    };
    for (field, reason, used) in [("plural", "PluralConflict", &resources), ("singular", "SingularConflict", &resources)] {
        match fresh(&requested[field], &accepted[field], used) {
            Ok(()) => set_name(&mut new_names, field, &requested[field]),
            Err(m) => problem = Some((reason, m)),
        }
    }
    if requested["shortNames"] != accepted["shortNames"] {
        let mine: Vec<&str> = accepted["shortNames"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let errs: Vec<String> = requested["shortNames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|s| !mine.contains(s) && resources.contains(*s))
            .map(|s| format!("{s:?} is already in use"))
            .collect();
        match errs.len() {
            0 => set_name(&mut new_names, "shortNames", &requested["shortNames"]),
            1 => problem = Some(("ShortNamesConflict", errs[0].clone())),
            _ => problem = Some(("ShortNamesConflict", format!("[{}]", errs.join(", ")))),
        }
    }
    for (field, reason) in [("kind", "KindConflict"), ("listKind", "ListKindConflict")] {
        match fresh(&requested[field], &accepted[field], &kinds) {
            Ok(()) => set_name(&mut new_names, field, &requested[field]),
            Err(m) => problem = Some((reason, m)),
        }
    }
    set_name(&mut new_names, "categories", &requested["categories"]);
    if let Some(st) = crate::registry::child(crd, "status") {
        st["acceptedNames"] = new_names;
    }
    let accepted_ok = problem.is_none();
    match problem {
        None => set_condition(crd, "NamesAccepted", "True", "NoConflicts", "no conflicts found"),
        Some((reason, message)) => set_condition(crd, "NamesAccepted", "False", reason, &message),
    };
    if !condition_true(crd, "Established") {
        if accepted_ok {
            set_condition(crd, "Established", "True", "InitialNamesAccepted", "the initial names have been accepted");
        } else {
            set_condition(crd, "Established", "False", "NotAccepted", "not all names are accepted");
        }
    }
    // storedVersions always holds the storage version (the strategy adds it on writes too).
    if let Some(v) = storage_version(crd).map(str::to_string)
        && let Some(st) = crate::registry::child(crd, "status")
    {
        let stored = st.as_object_mut().map(|m| m.entry("storedVersions").or_insert_with(|| json!([])));
        if let Some(list) = stored.and_then(Value::as_array_mut)
            && !list.iter().any(|s| s == v.as_str())
        {
            list.push(json!(v));
        }
    }
}

fn set_name(names: &mut Value, field: &str, value: &Value) {
    if let Some(m) = names.as_object_mut() {
        if value.is_null() || value.as_array().is_some_and(Vec::is_empty) || value.as_str().is_some_and(str::is_empty) {
            m.remove(field);
        } else {
            m.insert(field.to_string(), value.clone());
        }
    }
}

/// The strategies of a CRD's served versions, preferred version first (upstream's version
/// priority: GA, then beta, then alpha, higher numbers first, other names last, by name);
/// `webhook` is its conversion webhook, if it has one.
pub fn strategies(crd: &Value, webhook: Option<Arc<super::conversion::Webhook>>) -> Vec<Arc<dyn Strategy>> {
    let Some(storage) = storage_version(crd) else { return Vec::new() };
    let versions: Vec<&Value> = crd.pointer("/spec/versions").and_then(Value::as_array).into_iter().flatten().collect();
    let several = versions.len() > 1;
    let terminating = objects::is_deleting(crd);
    let mut served: Vec<&Value> = versions.into_iter().filter(|v| v["served"] == true).collect();
    served.sort_by(|a, b| version_order(a["name"].as_str().unwrap_or_default(), b["name"].as_str().unwrap_or_default()));
    let webhook = webhook.filter(|_| several);
    served.into_iter().map(|v| Arc::new(CustomResource::new(crd, v, storage, several, terminating).with_webhook(webhook.clone())) as Arc<dyn Strategy>).collect()
}

/// The strategy of a CRD's storage version (served or not), for the cleanup.
fn storage_strategy(crd: &Value) -> Option<Arc<dyn Strategy>> {
    let storage = storage_version(crd)?;
    let versions = crd.pointer("/spec/versions")?.as_array()?;
    let v = versions.iter().find(|v| v["name"] == storage)?;
    Some(Arc::new(CustomResource::new(crd, v, storage, versions.len() > 1, true)))
}

/// Upstream's `version.CompareKubeAwareVersionStrings`, as an ordering (preferred first).
pub fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn parse(v: &str) -> Option<(u8, u64, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: u64 = digits.parse().ok()?;
        if major == 0 {
            return None;
        }
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((0, major, 0));
        }
        for (stage, word) in [(1u8, "beta"), (2u8, "alpha")] {
            if let Some(n) = tail.strip_prefix(word) {
                let minor: u64 = n.parse().ok()?;
                return Some((stage, major, minor));
            }
        }
        None
    }
    match (parse(a), parse(b)) {
        (Some((sa, ma, na)), Some((sb, mb, nb))) => sa.cmp(&sb).then(mb.cmp(&ma)).then(nb.cmp(&na)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// Replaces the registry's custom kinds with the established CRDs' served versions.
fn serve(server: &Arc<ApiServer>, crds: &[Value]) {
    let mut kinds = Vec::new();
    for crd in crds.iter().filter(|c| condition_true(c, "Established")) {
        kinds.extend(strategies(crd, super::conversion::Webhook::of(server, crd)));
    }
    server.registry.set_custom(CustomKinds::new(kinds));
}

/// The finalizer's work for a CRD being deleted: delete every custom object, then remove the
/// finalizer. Returns whether it is done (false: objects remain, finalizers of their own).
async fn cleanup(server: &Arc<ApiServer>, crds: &Store<'_>, crd: &Value) -> Result<bool, ApiError> {
    let name = meta_str(crd, "name").unwrap_or_default().to_string();
    let established = condition_true(crd, "Established");
    let (status, reason, message, done) = if !established {
        ("False", "NeverEstablished", "resource was never established".to_string(), true)
    } else {
        set_terminating(crds, &name, "True", "InstanceDeletionInProgress", "CustomResource deletion is in progress").await?;
        match delete_objects(server, crd).await {
            Ok(0) => ("False", "InstanceDeletionCompleted", "removed all instances".to_string(), true),
            Ok(n) => ("True", "InstanceDeletionCheck", format!("could not confirm zero CustomResources remaining: {n} remain"), false),
            Err(e) => ("True", "InstanceDeletionFailed", format!("could not issue all deletes: {}", e.message), false),
        }
    };
    if !done {
        set_terminating(crds, &name, status, reason, &message).await?;
        return Ok(false);
    }
    let opts = WriteOptions::default();
    let r = crds
        .guaranteed_update(None, &name, Part::System, &opts, |cur| {
            let mut next = cur.clone();
            set_condition(&mut next, "Terminating", status, reason, &message);
            let finalizers: Vec<String> = objects::finalizers(cur).into_iter().filter(|f| f != CLEANUP_FINALIZER).collect();
            objects::meta_mut(&mut next).insert("finalizers".into(), json!(finalizers));
            Ok(next)
        })
        .await;
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.code == 404 => Ok(true),
        Err(e) => Err(e),
    }
}

async fn set_terminating(crds: &Store<'_>, name: &str, status: &str, reason: &str, message: &str) -> Result<(), ApiError> {
    let r = crds
        .guaranteed_update(None, name, Part::Status, &WriteOptions::default(), |cur| {
            let mut next = cur.clone();
            set_condition(&mut next, "Terminating", status, reason, message);
            Ok(next)
        })
        .await;
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes the CRD's objects in every namespace; returns how many are still there.
async fn delete_objects(server: &Arc<ApiServer>, crd: &Value) -> Result<usize, ApiError> {
    let Some(strategy) = storage_strategy(crd) else { return Ok(0) };
    let store = Store::of(server, &strategy);
    let items = store.list(None, &Filter::everything(), &ListOptions::default()).await?.items;
    let mut remaining = 0;
    for obj in &items {
        let name = meta_str(obj, "name").unwrap_or_default();
        let ns = meta_str(obj, "namespace");
        match store.delete(ns, name, &DeleteOptions::default()).await {
            Ok(d) if d.removed => {}
            Ok(_) => remaining += 1,
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(remaining)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(name: &str, plural: &str, kind: &str, short: &[&str]) -> Value {
        json!({"metadata": {"name": name}, "spec": {"group": "g.io", "scope": "Namespaced", "names": {"plural": plural, "singular": plural.trim_end_matches('s'), "kind": kind, "listKind": format!("{kind}List"), "shortNames": short}, "versions": [{"name": "v1", "served": true, "storage": true}]}})
    }

    #[test]
    fn names_conflict_as_upstream() {
        let mut a = crd("hoges.g.io", "hoges", "Hoge", &["hg"]);
        let all = [a.clone()];
        accept_names(&mut a, &all, 0);
        assert!(condition_true(&a, "NamesAccepted") && condition_true(&a, "Established"));
        assert_eq!(a["status"]["acceptedNames"]["shortNames"], json!(["hg"]));
        assert_eq!(a["status"]["storedVersions"], json!(["v1"]));
        let mut b = crd("fugas.g.io", "fugas", "Fuga", &["hg"]);
        let all = vec![a.clone(), b.clone()];
        accept_names(&mut b, &all, 1);
        let cond = b["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "NamesAccepted").unwrap().clone();
        assert_eq!(cond["status"], "False");
        assert_eq!(cond["reason"], "ShortNamesConflict");
        assert_eq!(cond["message"], "\"hg\" is already in use");
        assert!(!condition_true(&b, "Established"));
        assert_eq!(b["status"]["acceptedNames"]["plural"], "fugas");
        assert!(b["status"]["acceptedNames"].get("shortNames").is_none());
        let mut c = crd("hoges2.g.io", "hoges2", "Hoge", &[]);
        let all = [a.clone(), c.clone()];
        accept_names(&mut c, &all, 1);
        let cond = c["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "NamesAccepted").unwrap().clone();
        // As upstream, the last conflict found is the one reported.
        assert_eq!((cond["reason"].as_str(), cond["message"].as_str()), (Some("ListKindConflict"), Some("\"HogeList\" is already in use")));
    }

    #[test]
    fn versions_by_priority() {
        let mut v = vec!["v1alpha1", "foo", "v1", "v2beta1", "v1beta2", "v2", "v1beta1", "v10"];
        v.sort_by(|a, b| version_order(a, b));
        assert_eq!(v, ["v10", "v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }
}
