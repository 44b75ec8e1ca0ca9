//! One strategy per kind (as upstream's `pkg/registry/<group>/<kind>/strategy.go`): what is special
//! about a kind lives in its file here; the generic store (`store`, upstream's
//! `genericregistry.Store`) does create, update and delete for all of them and knows nothing of
//! Deployments (nor of HTTP: `crate::rest` decodes requests into its calls).

pub mod admissionregistration;
pub mod apiextensions;
pub mod apiregistration;
pub mod apps;
pub mod authorization;
pub mod authentication;
pub mod autoscaling;
pub mod batch;
pub mod certificates;
pub mod coordination;
pub mod core;
pub mod discovery;
pub mod events;
pub mod keys;
pub mod meta;
pub mod networking;
pub mod podspec;
pub mod policy;
pub mod rbac;
pub mod scheduling;
pub mod storage;
pub mod store;

use crate::allocator::Allocators;
use kaji_api::{ApiError, FieldError, ResourceInfo};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// What strategies may use beyond the object: cluster-wide allocators and admission settings.
pub struct Ctx<'a> {
    pub allocators: &'a Allocators,
    pub admission: &'a Admission,
}

/// Settings of the admission steps run on create (upstream admission plugins).
#[derive(Clone, Debug)]
pub struct Admission {
    /// DefaultTolerationSeconds: how long pods tolerate `node.kubernetes.io/not-ready` (300 s).
    pub default_not_ready_toleration_seconds: i64,
    /// DefaultTolerationSeconds: how long pods tolerate `node.kubernetes.io/unreachable` (300 s).
    pub default_unreachable_toleration_seconds: i64,
    /// ServiceAccount: the account must exist and the token volume is mounted (off when the
    /// server runs without its controller manager, which makes the accounts).
    pub service_account: bool,
}

impl Default for Admission {
    fn default() -> Self {
        Admission { default_not_ready_toleration_seconds: 300, default_unreachable_toleration_seconds: 300, service_account: true }
    }
}

/// Where the scale subresource reads and writes replicas.
#[derive(Clone, Copy, Debug)]
pub struct ScaleSpec {
    /// `spec.selector` is a LabelSelector object (apps) rather than a plain map (RC).
    pub selector_is_label_selector: bool,
}

/// Where the scale subresource of a custom kind reads and writes (the CRD's
/// `subresources.scale`), as JSON pointers: `/spec/replicas`, `/status/replicas`, and the
/// selector string (upstream's `labelSelectorPath`).
#[derive(Clone, Debug)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// How a kind differs from a plain stored object. Every method has the common default.
pub trait Strategy: Send + Sync + 'static {
    fn info(&self) -> &ResourceInfo;

    /// The kind has a `status` that only the status subresource writes.
    fn has_status(&self) -> bool {
        false
    }

    /// `metadata.generation` starts at 1 and grows when `bumps_generation` says so.
    fn tracks_generation(&self) -> bool {
        false
    }

    /// Whether an update (not a status update) bumps `metadata.generation` (when
    /// `tracks_generation`): upstream's PrepareForUpdate bumps it when the spec changes.
    fn bumps_generation(&self, new: &Value, old: &Value) -> bool {
        new.get("spec") != old.get("spec")
    }

    /// Which name rule applies (most kinds: RFC 1123 subdomain).
    fn validate_name(&self, name: &str) -> Vec<String> {
        kaji_api::validation::dns1123_subdomain(name)
    }

    /// Upstream's `SetDefaults_*` for the kind, applied on every create and update.
    fn default(&self, _obj: &mut Value) {}

    /// Called once on create, after the generic metadata is set.
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// Admission on create (mutating plugins such as DefaultTolerationSeconds), before validation.
    fn admit(&self, _ctx: &Ctx<'_>, _obj: &mut Value) {}

    /// Called on update; the generic part already kept status (if `has_status`) and metadata.
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}

    /// The status strategy's PrepareForUpdate (the status subresource): only status changes,
    /// the rest of `new` (spec, metadata) is reset to `old`'s.
    fn prepare_for_status_update(&self, new: &mut Value, old: &Value) {
        let status = new.get("status").cloned();
        let mut merged = old.clone();
        match status {
            Some(s) => merged["status"] = s,
            None => {
                merged.as_object_mut().map(|m| m.remove("status"));
            }
        }
        *new = merged;
    }

    fn validate(&self, _obj: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Update validation: by default the create validation plus nothing else.
    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        self.validate(new)
    }

    /// The status strategy's validation (upstream ValidateUpdate of the status strategy): by
    /// default the update validation of the whole object, whose spec is the stored one.
    fn validate_status_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        self.validate_update(new, old)
    }

    /// Fields a field selector may name beyond metadata.name / metadata.namespace, and how to read them.
    fn field_value(&self, _obj: &Value, _field: &str) -> Option<String> {
        None
    }

    /// Allocate cluster resources (service IPs, node ports) for a new or changed object.
    fn allocate(&self, _ctx: &Ctx<'_>, _obj: &mut Value, _old: Option<&Value>) -> Result<(), ApiError> {
        Ok(())
    }

    /// Give back what `allocate` took, when an object is deleted or its create failed.
    fn release(&self, _ctx: &Ctx<'_>, _obj: &Value, _keep: Option<&Value>) {}

    fn scale(&self) -> Option<ScaleSpec> {
        None
    }

    /// The scale subresource's paths when they are not the workloads' (`spec.replicas`,
    /// `status.replicas`, `spec.selector`): custom kinds.
    fn scale_paths(&self) -> Option<&ScalePaths> {
        None
    }

    /// Kinds with a schema of their own (custom kinds): prunes what it does not know (and
    /// defaults) and returns the pruned fields' paths, which server-side field validation
    /// reports. None: the kind is checked against its OpenAPI definition (built-in kinds).
    fn prune_unknown(&self, _obj: &mut Value) -> Option<Vec<String>> {
        None
    }

    /// The storage key prefix (cluster-wide, ending in '/') when it is not
    /// `objects::prefix`'s: custom kinds are stored under `/registry/<group>/<plural>/` as
    /// upstream, whatever the version.
    fn storage_prefix(&self) -> Option<&str> {
        None
    }

    /// Table output of kinds whose columns are not kaji-printers' (custom kinds' printer
    /// columns): the column definitions and the cells of each item.
    fn table(&self, _items: &[Value], _now: jiff::Timestamp) -> Option<(Vec<Value>, Vec<Vec<Value>>)> {
        None
    }

    /// A custom kind (served from a CRD): no OpenAPI definition of Kaji's describes it.
    fn is_custom(&self) -> bool {
        false
    }

    /// Whether PATCH takes strategic merge patches (custom kinds do not: upstream's 415).
    fn supports_strategic_merge_patch(&self) -> bool {
        true
    }

    /// Deleting waits `gracePeriodSeconds` (pods on a node): returns the default grace period.
    fn graceful_delete(&self, _obj: &Value) -> Option<i64> {
        None
    }

    /// On delete: whether the object must stay, marked with a deletionTimestamp, until something
    /// finalizes it (beyond `metadata.finalizers`, which the generic code handles). May mark it.
    fn prepare_for_delete(&self, _obj: &mut Value) -> bool {
        false
    }

    /// Whether an object being deleted may now go (its finalizers are done).
    fn ready_to_remove(&self, obj: &Value) -> bool {
        crate::objects::finalizers(obj).is_empty()
    }

    /// The served version whose storage this kind shares, when several versions are one set of
    /// objects (autoscaling/v1 and v2 HPAs, core/v1 and events.k8s.io/v1 Events). None: its own.
    fn storage_info(&self) -> Option<&'static ResourceInfo> {
        None
    }

    /// Converts an object of this version to the storage version (see `storage_info`).
    fn convert_to_storage(&self, obj: Value) -> Value {
        obj
    }

    /// Converts a stored object to this version.
    fn convert_from_storage(&self, obj: Value) -> Value {
        obj
    }

    /// The definitions server-side apply walks for this kind and the root's name, when they are
    /// not the built-in OpenAPI definitions (custom kinds: their CRD's schema).
    fn apply_definitions(&self) -> Option<(&serde_json::Map<String, Value>, &str)> {
        None
    }

    /// What a custom kind's storage is made of (its CRD's uid, spec and accepted names, as a
    /// hash): upstream tears a CRD's storage down, ending its watches, when these change or the
    /// CRD goes. 0 for the built-in kinds.
    fn storage_identity(&self) -> u64 {
        0
    }

    /// A custom kind's conversion webhook (a CRD with `spec.conversion.strategy: Webhook` and
    /// several versions): the generic store converts through it with `convert_stored` and
    /// `encode_for_storage`. None: `convert_*_storage` do all conversion.
    fn conversion_webhook(&self) -> Option<&Arc<crate::apiextensions::conversion::Webhook>> {
        None
    }

    /// The `Warning` header every request to this version gets (upstream's deprecated APIs).
    fn deprecation_warning(&self) -> Option<&'static str> {
        None
    }

    /// Update may create the object when it does not exist (upstream AllowCreateOnUpdate).
    fn allow_create_on_update(&self) -> bool {
        false
    }
}

/// A kind with no special rules beyond its resource description.
pub struct Plain {
    pub info: ResourceInfo,
    pub status: bool,
    pub generation: bool,
}

impl Strategy for Plain {
    fn info(&self) -> &ResourceInfo {
        &self.info
    }
    fn has_status(&self) -> bool {
        self.status
    }
    fn tracks_generation(&self) -> bool {
        self.generation
    }
}

type ByPath = HashMap<(String, String, String), Arc<dyn Strategy>>;

/// Every served kind, looked up by (group, version, plural): the built-in kinds, fixed at
/// start, and the custom kinds of established CustomResourceDefinitions, a snapshot the CRD
/// controller (`crate::apiextensions::controller`) swaps whole when a CRD changes.
pub struct Registry {
    by_path: ByPath,
    ordered: Vec<Arc<dyn Strategy>>,
    custom: RwLock<Arc<CustomKinds>>,
    /// Bumped whenever the custom kinds are replaced (watches of custom kinds look whether
    /// theirs is still served the same way).
    custom_changes: tokio::sync::watch::Sender<u64>,
}

/// One snapshot of the custom kinds (one strategy per served version of each established CRD).
#[derive(Default)]
pub struct CustomKinds {
    by_path: ByPath,
    ordered: Vec<Arc<dyn Strategy>>,
}

impl CustomKinds {
    /// The kinds in discovery's order (each CRD's versions by preference).
    pub fn new(ordered: Vec<Arc<dyn Strategy>>) -> CustomKinds {
        let mut by_path = HashMap::new();
        for s in &ordered {
            let i = s.info();
            by_path.insert((i.group.to_string(), i.version.to_string(), i.plural.to_string()), s.clone());
        }
        CustomKinds { by_path, ordered }
    }
}

impl Registry {
    pub fn builtin() -> Registry {
        let mut all: Vec<Arc<dyn Strategy>> = Vec::new();
        core::register(&mut all);
        apps::register(&mut all);
        batch::register(&mut all);
        autoscaling::register(&mut all);
        networking::register(&mut all);
        policy::register(&mut all);
        rbac::register(&mut all);
        authorization::register(&mut all);
        storage::register(&mut all);
        coordination::register(&mut all);
        discovery::register(&mut all);
        events::register(&mut all);
        certificates::register(&mut all);
        scheduling::register(&mut all);
        admissionregistration::register(&mut all);
        admissionregistration::register_policies(&mut all);
        apiextensions::register(&mut all);
        apiregistration::register(&mut all);
        authentication::register(&mut all);
        crate::metrics::register(&mut all);
        let mut by_path = HashMap::new();
        for s in &all {
            let i = s.info();
            by_path.insert((i.group.to_string(), i.version.to_string(), i.plural.to_string()), s.clone());
        }
        Registry { by_path, ordered: all, custom: RwLock::default(), custom_changes: tokio::sync::watch::channel(0).0 }
    }

    fn custom(&self) -> Arc<CustomKinds> {
        self.custom.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Replaces the custom kinds (the CRD controller, after any CRD changed).
    pub fn set_custom(&self, kinds: CustomKinds) {
        *self.custom.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(kinds);
        self.custom_changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes when the custom kinds have been replaced.
    pub fn custom_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.custom_changes.subscribe()
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<dyn Strategy>> {
        let key = (group.to_string(), version.to_string(), plural.to_string());
        if let Some(s) = self.by_path.get(&key) {
            return Some(s.clone());
        }
        self.custom().by_path.get(&key).cloned()
    }

    /// The built-in kinds, then the custom ones.
    pub fn all(&self) -> Vec<Arc<dyn Strategy>> {
        let custom = self.custom();
        self.ordered.iter().chain(custom.ordered.iter()).cloned().collect()
    }

    /// Only the built-in kinds.
    pub fn builtin_kinds(&self) -> &[Arc<dyn Strategy>] {
        &self.ordered
    }

    /// Only the custom kinds.
    pub fn custom_kinds(&self) -> Vec<Arc<dyn Strategy>> {
        self.custom().ordered.clone()
    }

    pub fn infos(&self) -> Vec<ResourceInfo> {
        let custom = self.custom();
        self.ordered.iter().chain(custom.ordered.iter()).map(|s| s.info().clone()).collect()
    }

    /// The strategy for a kind in a group (any version), e.g. for ownerReference lookups.
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<Arc<dyn Strategy>> {
        let custom = self.custom();
        self.ordered.iter().chain(custom.ordered.iter()).find(|s| s.info().group == group && s.info().kind == kind).cloned()
    }
}

/// Shorthand for a resource description with every verb (one positional line per kind reads
/// best in the registry tables).
#[allow(clippy::too_many_arguments)]
pub const fn info(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    subresources: &'static [&'static str],
) -> ResourceInfo {
    ResourceInfo {
        group,
        version,
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        categories: &[],
        verbs: kaji_api::ALL_VERBS,
        subresources,
    }
}

/// Reads a string at a JSON pointer.
pub fn str_at<'a>(obj: &'a Value, ptr: &str) -> Option<&'a str> {
    obj.pointer(ptr).and_then(Value::as_str)
}

/// Sets `obj[key] = value` if `obj` is an object and the key is absent or null.
pub fn default_key(obj: &mut Value, key: &str, value: Value) {
    if let Some(map) = obj.as_object_mut() {
        let missing = map.get(key).is_none_or(Value::is_null);
        if missing {
            map.insert(key.to_string(), value);
        }
    }
}

/// The object at `obj[key]`, created as `{}` when missing.
pub fn child<'a>(obj: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    let map = obj.as_object_mut()?;
    let entry = map.entry(key.to_string()).or_insert_with(|| Value::Object(Default::default()));
    if entry.is_null() {
        *entry = Value::Object(Default::default());
    }
    Some(entry)
}

/// Errors for a field that may not change after creation (upstream `ValidateImmutableField`).
pub fn immutable(new: &Value, old: &Value, ptr: &str, field: &str) -> Option<FieldError> {
    let a = new.pointer(ptr);
    let b = old.pointer(ptr);
    if a != b {
        Some(FieldError::invalid(field, a.unwrap_or(&Value::Null), "field is immutable"))
    } else {
        None
    }
}

/// The Namespace kind's description, for the namespace checks every namespaced write makes.
pub fn core_namespace_info() -> &'static ResourceInfo {
    &core::NAMESPACE_INFO
}

/// Storage access through a kind's strategy: keys of its storage version, conversion on the way
/// in and out.
impl dyn Strategy {
    fn stored_as(&self) -> &ResourceInfo {
        self.storage_info().unwrap_or_else(|| self.info())
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        let mut k = self.prefix(namespace);
        k.push_str(name);
        k
    }

    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match (self.storage_prefix(), namespace.filter(|_| self.info().namespaced)) {
            (Some(p), Some(ns)) => format!("{p}{ns}/"),
            (Some(p), None) => p.to_string(),
            (None, _) => crate::objects::prefix(self.stored_as(), namespace),
        }
    }

    pub fn decode(&self, kv: &kaji_store::KeyValue) -> Value {
        let obj = crate::objects::decode(kv);
        if self.storage_info().is_some() { self.convert_from_storage(obj) } else { obj }
    }

    /// Appends the object `kv` holds to `out` as JSON, exactly as `serde_json::to_vec` of
    /// `decode(kv)` would: spliced from the stored bytes when the kind is stored as served, else
    /// decoded and serialised.
    pub fn write_json(&self, kv: &kaji_store::KeyValue, out: &mut Vec<u8>) {
        if self.storage_info().is_none() && crate::objects::write_stamped(out, &kv.value, kv.mod_revision) {
            return;
        }
        // serde_json cannot fail to write a Value into a Vec.
        let _ = serde_json::to_writer(&mut *out, &self.decode(kv));
    }

    /// `write_json` of an item read in place (`kaji_store::Store::list_into`) or listed, the place
    /// of its resourceVersion remembered in `stamps` for the next list. Not for objects a
    /// conversion webhook rewrote: they keep the stored key and revision, not the stored bytes.
    pub fn write_json_item(&self, item: kaji_store::ItemRef<'_>, stamps: &crate::objects::StampCache, out: &mut Vec<u8>) {
        if self.storage_info().is_none() {
            let stamped = if self.conversion_webhook().is_none() {
                stamps.write(out, item.key, item.value, item.mod_revision)
            } else {
                crate::objects::write_stamped(out, item.value, item.mod_revision)
            };
            if stamped {
                return;
            }
        }
        let _ = serde_json::to_writer(&mut *out, &self.decode(&item.to_key_value()));
    }

    /// Stored objects made this version's where a conversion webhook is needed (one call for
    /// all of those stored in another version); the values are re-encoded, so `decode` and
    /// `write_json` then read them as they are. Without a webhook: unchanged.
    pub async fn convert_stored(&self, mut kvs: Vec<kaji_store::KeyValue>) -> Result<Vec<kaji_store::KeyValue>, ApiError> {
        let Some(webhook) = self.conversion_webhook() else { return Ok(kvs) };
        let desired = self.info().api_version();
        let objs: Vec<Value> = kvs.iter().map(crate::objects::decode).collect();
        let converted = webhook.convert(objs, &desired).await?;
        for (kv, obj) in kvs.iter_mut().zip(converted) {
            kv.value = crate::objects::encode(&obj);
        }
        Ok(kvs)
    }

    /// `convert_stored` of one object.
    pub async fn convert_one(&self, kv: kaji_store::KeyValue) -> Result<kaji_store::KeyValue, ApiError> {
        if self.conversion_webhook().is_none() {
            return Ok(kv);
        }
        Ok(self.convert_stored(vec![kv]).await?.remove(0))
    }

    /// `encode`, converting through the kind's conversion webhook when it has one.
    pub async fn encode_for_storage(&self, obj: &Value) -> Result<Vec<u8>, ApiError> {
        match (self.conversion_webhook(), self.storage_info()) {
            (Some(webhook), Some(storage)) => {
                let converted = webhook.convert(vec![obj.clone()], &storage.api_version()).await?;
                Ok(crate::objects::encode(converted.first().unwrap_or(obj)))
            }
            _ => Ok(self.encode(obj)),
        }
    }

    pub fn encode(&self, obj: &Value) -> Vec<u8> {
        if self.storage_info().is_some() {
            crate::objects::encode(&self.convert_to_storage(obj.clone()))
        } else {
            crate::objects::encode(obj)
        }
    }
}
