//! ControllerRevisions, as upstream pkg/controller/history: the snapshots of a workload's pod
//! template that StatefulSets and DaemonSets keep, so that `kubectl rollout history` can list
//! them and `kubectl rollout undo` can patch an old template back.
//!
//! How a controller uses this module (StatefulSet's `getStatefulSetRevisions`, DaemonSet's
//! `constructHistory` follow the same steps):
//! 1. [`template_patch`] turns the object into the revision's `data`: a strategic-merge patch
//!    `{"spec":{"template":{..., "$patch":"replace"}}}` with its keys sorted (as Go's
//!    `json.Marshal` of a map writes them). kubectl applies exactly this patch on undo.
//! 2. [`History::claim`] lists the revisions the object controls (from the informer's owner
//!    index, adopting matching orphans and releasing its own that stopped matching), sorted by
//!    [`sort_revisions`].
//! 3. [`new_revision`] builds the candidate with [`next_revision`]; [`History::find_or_create`]
//!    re-uses the newest equal revision (bumping its `revision` when it is not the newest: a
//!    rollback) or creates it with [`History::create`], which resolves name collisions by
//!    bumping `status.collisionCount` (the caller writes it back to the status).
//! 4. [`History::truncate`] deletes the oldest revisions that are not live beyond
//!    `revisionHistoryLimit`.
//!
//! Names are `<owner>-<hash>` ([`revision_name`]); the hash ([`hash_revision`]) is upstream's:
//! FNV-1 (32 bit) over the data's bytes and the collision count, printed in decimal and passed
//! through `rand.SafeEncodeString`.

use crate::replicaset::ownership;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kaji_api::selector::LabelSelector as Selector;
use kaji_runtime::informer::{Factory, Informer};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The label `NewControllerRevision` puts on a revision with its hash (upstream
/// `history.ControllerRevisionHashLabel`); StatefulSet revisions carry it.
pub const CONTROLLER_REVISION_HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// The label on pods naming the revision they were made from (upstream
/// `apps.ControllerRevisionHashLabelKey`): a StatefulSet's pods carry the revision's *name*, a
/// DaemonSet's pods (and its revisions) carry the *hash*.
pub const POD_REVISION_LABEL: &str = "controller-revision-hash";

/// The revision `data` of a StatefulSet or DaemonSet (upstream `getPatch` of both
/// controllers): `{"spec":{"template":<spec.template>}}` with `"$patch":"replace"` in the
/// template, every object's keys sorted.
pub fn template_patch(obj: &impl Serialize) -> anyhow::Result<Value> {
    let raw = serde_json::to_value(obj)?;
    let Some(mut template) = raw.get("spec").and_then(|s| s.get("template")).cloned() else {
        anyhow::bail!("the object has no spec.template");
    };
    let Some(t) = template.as_object_mut() else {
        anyhow::bail!("spec.template is not an object");
    };
    t.insert("$patch".into(), json!("replace"));
    Ok(sorted(json!({ "spec": { "template": template } })))
}

/// `v` with the keys of every object in sorted order (serde_json keeps insertion order here).
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let tree: BTreeMap<String, Value> = m.into_iter().collect();
            Value::Object(
                tree.into_iter()
                    .map(|(k, v)| (k, sorted(v)))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// FNV-1, 32 bit (Go's `hash/fnv.New32`).
fn fnv1_32(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for part in parts {
        for b in *part {
            h = h.wrapping_mul(0x0100_0193);
            h ^= u32::from(*b);
        }
    }
    h
}

/// Upstream `rand.SafeEncodeString`: every byte mapped into an alphabet without vowels (so
/// that hashes never spell words).
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// Upstream `HashControllerRevision`: the hash of `data` (as serialized) and, when given, the
/// collision count.
pub fn hash_revision(data: &Value, collision_count: Option<i32>) -> String {
    let bytes = serde_json::to_vec(data).unwrap_or_default();
    let probe = collision_count.map(|c| c.to_string()).unwrap_or_default();
    safe_encode(&fnv1_32(&[&bytes, probe.as_bytes()]).to_string())
}

/// Upstream `ControllerRevisionName`: `<prefix>-<hash>`, the prefix cut to 223 bytes.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let mut end = prefix.len().min(223);
    while !prefix.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{hash}", &prefix[..end])
}

/// Upstream `NewControllerRevision`: a revision of `parent` (of `kind`, apps/v1) with the
/// template's labels plus [`CONTROLLER_REVISION_HASH_LABEL`], controlled by the parent, named
/// `<parent>-<hash>`. Not yet created: see [`History::create`].
pub fn new_revision(
    parent: &ObjectMeta,
    kind: &str,
    template_labels: Option<&BTreeMap<String, String>>,
    data: Value,
    revision: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let hash = hash_revision(&data, collision_count);
    let mut labels = template_labels.cloned().unwrap_or_default();
    labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(
                parent.name.as_deref().unwrap_or_default(),
                &hash,
            )),
            namespace: parent.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![ownership::controller_ref("apps/v1", kind, parent)]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

fn data(r: &ControllerRevision) -> &Value {
    static NULL: Value = Value::Null;
    r.data.as_ref().map_or(&NULL, |d| &d.0)
}

/// Upstream `EqualRevision`: the same data. (Upstream also compares the hash labels, but only
/// when they parse as numbers, which safe-encoded hashes never do.)
pub fn equal_revision(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    data(a) == data(b)
}

/// Upstream `FindEqualRevisions`: the revisions with the same data as `needle`, in the order
/// given.
pub fn find_equal_revisions<'a>(
    revisions: &'a [ControllerRevision],
    needle: &ControllerRevision,
) -> Vec<&'a ControllerRevision> {
    revisions
        .iter()
        .filter(|r| equal_revision(r, needle))
        .collect()
}

/// Upstream `SortControllerRevisions`: by `revision`, then creation time, then name.
pub fn sort_revisions(revisions: &mut [ControllerRevision]) {
    revisions.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let t =
                    |r: &ControllerRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
                t(a).cmp(&t(b))
            })
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
}

/// Upstream `nextRevision`: one more than the last of the sorted `revisions`, or 1.
pub fn next_revision(sorted_revisions: &[ControllerRevision]) -> i64 {
    sorted_revisions.last().map_or(1, |r| r.revision + 1)
}

/// The ControllerRevisions of the process (one informer) and the API to change them.
#[derive(Clone)]
pub struct History {
    client: Client,
    revisions: Arc<Informer<ControllerRevision>>,
}

impl History {
    /// Registers the ControllerRevision informer with the factory (no I/O).
    pub fn new(f: &Factory) -> Self {
        History {
            client: f.client(),
            revisions: f.informer::<ControllerRevision>(),
        }
    }

    /// The informer (to trigger syncs on revision changes).
    pub fn informer(&self) -> &Arc<Informer<ControllerRevision>> {
        &self.revisions
    }

    fn api(&self, ns: &str) -> Api<ControllerRevision> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// The revisions `parent` (a `kind` of apps/v1) controls, sorted: those it controls already,
    /// plus orphans matching `selector` (adopted), less its own that stopped matching (released),
    /// as upstream's `ControllerRevisionControllerRefManager`.
    pub async fn claim(
        &self,
        parent: &ObjectMeta,
        kind: &str,
        selector: &Selector,
    ) -> Vec<ControllerRevision> {
        let ns = parent.namespace.clone().unwrap_or_default();
        let uid = parent.uid.clone().unwrap_or_default();
        let deleting = parent.deletion_timestamp.is_some();
        let ours = ownership::controller_ref("apps/v1", kind, parent);
        let api = self.api(&ns);
        let mut out = Vec::new();
        for r in self.revisions.claimable(&ns, &uid) {
            let claim = ownership::claim(&uid, deleting, selector, &r.metadata);
            if let Some(r) = ownership::settle(&api, r.as_ref(), claim, &ours).await {
                out.push(r);
            }
        }
        sort_revisions(&mut out);
        out
    }

    /// Upstream `CreateControllerRevision`: creates `revision` named `<parent_name>-<hash>`
    /// with the hash of its data and `*collision_count`. When the name is taken by a revision
    /// with the same data, that one is returned; by another, `*collision_count` is bumped and
    /// the next name tried (the caller stores the count in the object's status).
    pub async fn create(
        &self,
        parent_name: &str,
        revision: &ControllerRevision,
        collision_count: &mut i32,
    ) -> Result<ControllerRevision, kube::Error> {
        let ns = revision.metadata.namespace.clone().unwrap_or_default();
        let api = self.api(&ns);
        loop {
            let hash = hash_revision(data(revision), Some(*collision_count));
            let mut clone = revision.clone();
            clone.metadata.name = Some(revision_name(parent_name, &hash));
            match api.create(&PostParams::default(), &clone).await {
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let name = clone.name_any();
                    let existing = api.get(&name).await?;
                    if data(&existing) == data(&clone) {
                        return Ok(existing);
                    }
                    *collision_count = collision_count.saturating_add(1);
                }
                other => return other,
            }
        }
    }

    /// Upstream `UpdateControllerRevision`: sets `revision.revision` to `new_revision` (a
    /// rollback re-uses an old revision as the newest).
    pub async fn update_revision(
        &self,
        revision: &ControllerRevision,
        new_revision: i64,
    ) -> Result<ControllerRevision, kube::Error> {
        if revision.revision == new_revision {
            return Ok(revision.clone());
        }
        let api = self.api(&revision.namespace().unwrap_or_default());
        api.patch(
            &revision.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "revision": new_revision })),
        )
        .await
    }

    /// Deletes a revision (gone already counts as done).
    pub async fn delete(&self, revision: &ControllerRevision) -> Result<(), kube::Error> {
        let api = self.api(&revision.namespace().unwrap_or_default());
        match api
            .delete(&revision.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The update revision of an object (upstream StatefulSet `getStatefulSetRevisions`, the
    /// update half): `candidate` (from [`new_revision`] with [`next_revision`]) compared with
    /// the sorted `revisions` the object controls. The newest equal one is the answer when it
    /// is also the newest revision (nothing changed); an older equal one gets the candidate's
    /// revision number (a rollback); with none equal the candidate is created.
    pub async fn find_or_create(
        &self,
        parent_name: &str,
        revisions: &[ControllerRevision],
        candidate: ControllerRevision,
        collision_count: &mut i32,
    ) -> Result<ControllerRevision, kube::Error> {
        let equal = find_equal_revisions(revisions, &candidate);
        match (equal.last(), revisions.last()) {
            (Some(e), Some(newest)) if equal_revision(newest, e) => Ok(newest.clone()),
            (Some(e), _) => self.update_revision(e, candidate.revision).await,
            (None, _) => self.create(parent_name, &candidate, collision_count).await,
        }
    }

    /// Upstream `truncateHistory` / `cleanupHistory`: deletes the oldest of the sorted
    /// `revisions` that are not live (`is_live`: the current and update revisions and those
    /// pods still name) until at most `limit` non-live ones remain.
    pub async fn truncate(
        &self,
        revisions: &[ControllerRevision],
        is_live: impl Fn(&ControllerRevision) -> bool,
        limit: i32,
    ) -> Result<(), kube::Error> {
        let history: Vec<&ControllerRevision> = revisions.iter().filter(|r| !is_live(r)).collect();
        let limit = usize::try_from(limit).unwrap_or(0);
        if history.len() <= limit {
            return Ok(());
        }
        for r in &history[..history.len() - limit] {
            self.delete(r).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1_matches_go() {
        // Go: fnv.New32() over "" and "a".
        assert_eq!(fnv1_32(&[b""]), 0x811c_9dc5);
        assert_eq!(fnv1_32(&[b"a"]), 0x050c_5d7e);
        assert_eq!(fnv1_32(&[b"fo", b"o"]), fnv1_32(&[b"foo"]));
    }

    #[test]
    fn safe_encoding_uses_no_vowels() {
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
        assert!(
            hash_revision(&json!({"a": 1}), None)
                .chars()
                .all(|c| !"aeiou".contains(c))
        );
    }

    #[test]
    fn data_is_the_replacing_template_patch_with_sorted_keys() {
        let sts = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "template": {
            "spec": {"containers": [{"name": "c", "image": "x"}]}, "metadata": {"labels": {"app": "web"}}}}});
        let p = template_patch(&sts).expect("patch");
        assert_eq!(
            serde_json::to_string(&p).expect("json"),
            r#"{"spec":{"template":{"$patch":"replace","metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"image":"x","name":"c"}]}}}}"#
        );
    }

    #[test]
    fn collision_count_changes_the_name() {
        let meta = ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("u".into()),
            ..Default::default()
        };
        let d = json!({"spec": {"template": {"$patch": "replace"}}});
        let a = new_revision(&meta, "StatefulSet", None, d.clone(), 1, None);
        let b = new_revision(&meta, "StatefulSet", None, d.clone(), 1, Some(1));
        assert_ne!(a.metadata.name, b.metadata.name);
        assert!(a.name_any().starts_with("web-"));
        assert!(equal_revision(&a, &b));
        let mut revs = vec![
            new_revision(&meta, "StatefulSet", None, json!(2), 2, None),
            new_revision(&meta, "StatefulSet", None, d, 1, None),
        ];
        sort_revisions(&mut revs);
        assert_eq!(revs[0].revision, 1);
        assert_eq!(next_revision(&revs), 3);
        assert_eq!(next_revision(&[]), 1);
        assert_eq!(find_equal_revisions(&revs, &a).len(), 1);
    }
}
