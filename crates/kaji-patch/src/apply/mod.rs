//! Server-side apply and `metadata.managedFields`, after structured-merge-diff's
//! `merge.Updater` (`Apply`, `Update`, `prune`) and the API server's field manager
//! (`k8s.io/apiserver/pkg/endpoints/handlers/fieldmanager`).
//!
//! - [`server_side_apply`] merges an applied configuration into the live object, drops
//!   the fields this manager applied last time and no longer applies (unless another
//!   manager owns them), and reports conflicts with other managers' fields whose values
//!   it would change, unless forced.
//! - [`update_managed_fields`] records what an ordinary create/update/patch changed
//!   under its manager (operation "Update"), taking those fields from other managers.
//!
//! Field sets and their FieldsV1 encoding live in [`fieldset`]; the schema-aware walks in
//! `typed.rs`.
//!
//! Not done (upstream has them): converting field sets between API versions (we
//! compare every manager at the object's version), capping Update managers at ten
//! ("ancient-changes"), the client-side-apply annotation upgrade (`lastAppliedManager`
//! / `lastAppliedUpdater`), unions, and per-resource reset fields such as status.

pub mod fieldset;
mod typed;

use serde_json::{Map, Value};

use crate::schema::Schema;
use fieldset::{FieldSet, PathElement, path_string};
use typed::{Ty, compare, merge, remove_items, to_field_set};

/// The manager upstream invents to own everything of an object that had no managed
/// fields when first applied to.
pub const BEFORE_FIRST_APPLY_MANAGER: &str = "before-first-apply";

/// One conflict: another manager owns a field the apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager's name.
    pub manager: String,
    /// Its operation, "Apply" or "Update".
    pub operation: String,
    /// The API version it managed the field at.
    pub api_version: String,
    /// The field, as upstream prints it: `.spec.replicas`.
    pub path: String,
}

impl Conflict {
    /// Upstream's `printManager`: `"kubectl" using apps/v1` for Update managers, the
    /// quoted name for appliers.
    #[must_use]
    pub fn manager_description(&self) -> String {
        if self.operation == "Update" {
            format!("{:?} using {}", self.manager, self.api_version)
        } else {
            format!("{:?}", self.manager)
        }
    }
}

/// Why an apply or managed-fields update failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Other managers own fields the apply would change (409 Conflict, reason
    /// `Conflict`, one cause of type `FieldManagerConflict` per conflict).
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The applied configuration or the object does not fit its schema (duplicate list
    /// keys, list items without their keys, managedFields in the configuration...);
    /// upstream answers 400 or 500 with this message.
    #[error("{0}")]
    Invalid(String),
}

/// Upstream's 409 message: `Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas`.
#[must_use]
pub fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager_description(),
            c.path
        );
    }
    let mut managers: Vec<String> = Vec::new();
    for c in conflicts {
        let d = c.manager_description();
        if !managers.contains(&d) {
            managers.push(d);
        }
    }
    managers.sort();
    let mut lines = Vec::new();
    for m in &managers {
        lines.push(format!("conflicts with {m}:"));
        for c in conflicts.iter().filter(|c| &c.manager_description() == m) {
            lines.push(format!("- {}", c.path));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// One `managedFields` entry, decoded.
#[derive(Debug, Clone, PartialEq)]
struct Manager {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<Value>,
    subresource: Option<String>,
    fields: FieldSet,
    /// The `fieldsV1` this entry was decoded from, while `fields` is unchanged: most writes
    /// change one manager's fields, and the others are written back as they were read.
    encoded: Option<Value>,
}

impl Manager {
    /// `BuildManagerIdentifier`: appliers are one manager whatever their version.
    fn same_identity(&self, other: &Manager) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == "Apply" || self.api_version == other.api_version)
    }

    fn encode(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), Value::String(self.manager.clone()));
        m.insert("operation".into(), Value::String(self.operation.clone()));
        m.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(t) = &self.time {
            m.insert("time".into(), t.clone());
        }
        m.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        let fields = self.encoded.clone();
        m.insert("fieldsV1".into(), fields.unwrap_or_else(|| self.fields.to_fields_v1()));
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), Value::String(s.clone()));
        }
        Value::Object(m)
    }
}

fn str_field(m: &Map<String, Value>, k: &str) -> String {
    m.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Decodes `metadata.managedFields`; upstream resets them when they do not decode.
fn decode_managers(obj: &Value) -> Vec<Manager> {
    let Some(Value::Array(entries)) = obj.pointer("/metadata/managedFields") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries {
        let Value::Object(m) = e else {
            return Vec::new();
        };
        if m.get("fieldsType").and_then(Value::as_str) != Some("FieldsV1") {
            return Vec::new();
        }
        let fields = match m.get("fieldsV1").map(FieldSet::from_fields_v1) {
            Some(Ok(f)) => f,
            None => FieldSet::new(),
            Some(Err(_)) => return Vec::new(),
        };
        out.push(Manager {
            manager: str_field(m, "manager"),
            operation: str_field(m, "operation"),
            api_version: str_field(m, "apiVersion"),
            time: m.get("time").cloned(),
            subresource: m
                .get("subresource")
                .and_then(Value::as_str)
                .map(String::from),
            fields,
            encoded: m.get("fieldsV1").cloned(),
        });
    }
    out
}

/// Writes the managers into `metadata.managedFields`, sorted as upstream sorts them
/// (Apply before Update, then by time, manager and version); none removes the field.
fn encode_managers(obj: &mut Value, mut managers: Vec<Manager>) {
    managers.retain(|m| !m.fields.is_empty());
    managers.sort_by(|p, q| {
        p.operation
            .cmp(&q.operation)
            .then_with(|| time_key(p).cmp(&time_key(q)))
            .then_with(|| p.manager.cmp(&q.manager))
            .then_with(|| p.api_version.cmp(&q.api_version))
    });
    let Value::Object(root) = obj else { return };
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(meta) = meta else { return };
    if managers.is_empty() {
        meta.shift_remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            Value::Array(managers.iter().map(Manager::encode).collect()),
        );
    }
}

fn time_key(m: &Manager) -> String {
    m.time
        .as_ref()
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The fields no manager may own (`stripMetaManager`).
fn strip_set() -> &'static FieldSet {
    static STRIP: std::sync::LazyLock<FieldSet> = std::sync::LazyLock::new(strip_set_build);
    &STRIP
}

fn strip_set_build() -> FieldSet {
    let mut s = FieldSet::new();
    let f = |n: &str| PathElement::Field(n.to_string());
    s.insert(&[f("apiVersion")]);
    s.insert(&[f("kind")]);
    s.insert(&[f("metadata")]);
    for n in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        s.insert(&[f("metadata"), f(n)]);
    }
    s
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
        meta.shift_remove("managedFields");
    }
    obj
}

/// Drops null members: an applied null means "not set" once typed.
fn drop_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), drop_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(drop_nulls).collect()),
        other => other.clone(),
    }
}

/// `Updater.update`: other managers lose the fields this change modifies or adds (a
/// conflict unless `force`) and the fields it removes.
fn take_ownership(
    old: &Value,
    new: &Value,
    ty: Ty<'_>,
    managers: &mut Vec<Manager>,
    acting: Option<&Manager>,
    force: bool,
) -> Result<Changes, ApplyError> {
    let cmp = compare(old, new, ty).map_err(ApplyError::Invalid)?;
    let mut changed = cmp.modified;
    changed.absorb(cmp.added);
    let removed = cmp.removed;
    let mut conflicts = Vec::new();
    for m in managers.iter() {
        // Forced, the conflicts are not reported.
        if force || acting.is_some_and(|a| a.same_identity(m)) {
            continue;
        }
        for p in m.fields.intersection(&changed).paths() {
            conflicts.push(Conflict {
                manager: m.manager.clone(),
                operation: m.operation.clone(),
                api_version: m.api_version.clone(),
                path: path_string(&p),
            });
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(ApplyError::Conflicts(conflicts));
    }
    for m in managers.iter_mut() {
        if acting.is_some_and(|a| a.same_identity(m)) {
            continue;
        }
        if m.fields.intersects(&changed) || m.fields.intersects(&removed) {
            m.fields.subtract(&changed);
            m.fields.subtract(&removed);
            m.encoded = None;
        }
    }
    managers.retain(|m| !m.fields.is_empty());
    Ok(Changes { changed, removed })
}

/// What a write changed: the paths added or modified, and the paths removed.
struct Changes {
    changed: FieldSet,
    removed: FieldSet,
}

/// Server-side apply of `applied` (the body of an `application/apply-patch+yaml`
/// request, already parsed) by `manager` onto `live` (None when creating). Returns the
/// new object with `metadata.managedFields` updated; the applier's entry gets
/// operation "Apply", the applied `apiVersion`, and `time: now`.
///
/// # Errors
/// [`ApplyError::Conflicts`] when, without `force`, the apply would change fields other
/// managers own; [`ApplyError::Invalid`] when the configuration does not fit the
/// schema or carries `metadata.managedFields`.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    defs: &Map<String, Value>,
    root: &str,
    now: &str,
) -> Result<Value, ApplyError> {
    if !applied.is_object() {
        return Err(ApplyError::Invalid(
            "the applied configuration must be an object".into(),
        ));
    }
    if applied
        .pointer("/metadata/managedFields")
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApplyError::Invalid(
            "metadata.managedFields must be nil".into(),
        ));
    }
    let ty = Ty::root(Schema::root(defs, root));
    let api_version = str_field(applied.as_object().unwrap_or(&Map::new()), "apiVersion");
    let live_obj = live.map_or_else(|| Value::Object(Map::new()), without_managed_fields);
    let config = drop_nulls(applied);

    let mut managers = live.map(decode_managers).unwrap_or_default();
    if managers.is_empty() && live.is_some() {
        // Whatever the object had before anyone applied belongs to someone else.
        let fields = to_field_set(&live_obj, ty)
            .map_err(ApplyError::Invalid)?
            .difference(strip_set());
        let live_version = live
            .and_then(|l| l.get("apiVersion"))
            .and_then(Value::as_str)
            .unwrap_or(&api_version)
            .to_string();
        managers.push(Manager {
            manager: BEFORE_FIRST_APPLY_MANAGER.into(),
            operation: "Update".into(),
            api_version: live_version,
            time: None,
            subresource: None,
            fields,
            encoded: None,
        });
    }

    let mut me = Manager {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version,
        time: Some(Value::String(now.to_string())),
        subresource: None,
        fields: to_field_set(&config, ty).map_err(ApplyError::Invalid)?,
        encoded: None,
    };
    let merged = merge(&live_obj, &config, ty).map_err(ApplyError::Invalid)?;
    let last = managers
        .iter()
        .position(|m| m.same_identity(&me))
        .map(|i| managers.remove(i));
    let last_set = last.as_ref().map(|m| m.fields.clone()).unwrap_or_default();

    // prune: what this manager applied last time and not now, unless someone owns it.
    let new_obj = if last_set.is_empty() {
        merged
    } else {
        let pruned =
            remove_items(&merged, &last_set, ty).unwrap_or_else(|| Value::Object(Map::new()));
        let merged_set = to_field_set(&merged, ty).map_err(ApplyError::Invalid)?;
        let pruned_set = to_field_set(&pruned, ty).map_err(ApplyError::Invalid)?;
        let owned = managers
            .iter()
            .fold(me.fields.clone(), |acc, m| acc.union(&m.fields));
        // Add back what others (or this apply) own.
        let pruned = remove_items(
            &merged,
            &merged_set.difference(&pruned_set.union(&owned)),
            ty,
        )
        .unwrap_or_else(|| Value::Object(Map::new()));
        // Add back items that only dangled below a removed field of the last apply.
        let pruned_set = to_field_set(&pruned, ty).map_err(ApplyError::Invalid)?;
        remove_items(
            &merged,
            &merged_set.difference(&pruned_set).intersection(&last_set),
            ty,
        )
        .unwrap_or_else(|| Value::Object(Map::new()))
    };

    take_ownership(&live_obj, &new_obj, ty, &mut managers, Some(&me), force)?;
    me.fields = me.fields.difference(strip_set());
    if last.as_ref().is_some_and(|l| l.fields == me.fields) {
        me.time = last.and_then(|l| l.time).or(me.time);
    }
    let mut new_obj = new_obj;
    managers.push(me);
    encode_managers(&mut new_obj, managers);
    Ok(new_obj)
}

/// Records an ordinary write (create when `old` is None, update, or a non-apply patch)
/// by `manager` with `operation` (normally "Update") at `api_version`: the fields it
/// changed become this manager's and leave everyone else's; removed fields leave all
/// managers. Writes the result into `new`'s `metadata.managedFields`.
///
/// When the request itself changed `metadata.managedFields`, upstream keeps what the
/// client sent (an empty list clears them) and tracks nothing; so do we.
///
/// # Errors
/// [`ApplyError::Invalid`] when the objects do not fit the schema (for instance a keyed
/// list with duplicate keys).
#[allow(clippy::too_many_arguments)] // the brief's signature: who, what, when and the schema
pub fn update_managed_fields(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    operation: &str,
    api_version: &str,
    subresource: Option<&str>,
    now: &str,
    defs: &Map<String, Value>,
    root: &str,
) -> Result<(), ApplyError> {
    let old_mf = old.and_then(|o| o.pointer("/metadata/managedFields"));
    let new_mf = new.pointer("/metadata/managedFields");
    if new_mf.is_some() && new_mf != old_mf {
        let user = decode_managers(new);
        encode_managers(new, user);
        return Ok(());
    }
    let ty = Ty::root(Schema::root(defs, root));
    // The comparison ignores managedFields, so neither object is copied.
    let empty = Value::Object(Map::new());
    let old_obj = old.unwrap_or(&empty);
    if let Some(Value::Object(meta)) = new.get_mut("metadata") {
        meta.shift_remove("managedFields");
    }
    let mut managers = old.map(decode_managers).unwrap_or_default();
    let me = Manager {
        manager: manager.to_string(),
        operation: operation.to_string(),
        api_version: api_version.to_string(),
        time: Some(Value::String(now.to_string())),
        subresource: subresource.map(String::from),
        fields: FieldSet::new(),
        encoded: None,
    };
    // Like upstream's "current-operation": every manager, this one included, loses what
    // changed; then this manager gets it back together with what it had. Its own entry ends
    // as (what it had - what was removed) + what changed, so it is not stripped first: an
    // update of fields the manager already owns (a Lease renewal, a status report) leaves
    // its entry as it was read.
    let Changes { changed: mut current, removed } =
        take_ownership(old_obj, new, ty, &mut managers, Some(&me), true)?;
    current.subtract(&removed);
    current.subtract(strip_set());
    // The entry keeps its time while its set stays the same (upstream's
    // managedFieldsUpdater); an entry left empty is dropped by `encode_managers`.
    let (mut entry, mut set_changed) = match managers.iter().position(|m| m.same_identity(&me)) {
        Some(i) => (managers.remove(i), false),
        None => (me, true),
    };
    if entry.fields.intersects(&removed) {
        entry.fields.subtract(&removed);
        set_changed = true;
    }
    if !entry.fields.contains_all(&current) {
        entry.fields.absorb(current);
        set_changed = true;
    }
    if set_changed {
        entry.encoded = None;
        entry.time = Some(Value::String(now.to_string()));
    }
    managers.push(entry);
    encode_managers(new, managers);
    Ok(())
}

#[cfg(test)]
mod tests;
