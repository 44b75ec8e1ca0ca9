//! The generic store (upstream's `genericregistry.Store`): create, get, list, update (guaranteed
//! update: read, compute, compare-and-swap at the read revision, retry), delete (preconditions,
//! graceful deletion, finalizers, the propagation policy) and delete-collection of any kind, over
//! the `kaji_store::Store` trait, driven by the kind's `Strategy` and the admission plug-ins.
//! It knows nothing of HTTP: inputs are objects, mutation functions and typed options; outputs
//! are objects or `kaji_api` errors. `crate::rest` decodes requests into these calls and encodes
//! what they return.

pub(crate) mod sparse;
#[cfg(test)]
mod tests;

use crate::admission::node_restriction::{Operation as NodeOp, Request as NodeRequest};
use crate::allocator::Allocators;
use crate::objects::{self, meta_mut, meta_str};
use crate::registry::{Admission, Ctx, Registry, Strategy};
use base64::Engine;
use kaji_api::selector::{FieldSelector, LabelSelector};
use kaji_api::{ApiError, FieldError};
use serde_json::{Value, json};
use std::sync::Arc;

/// Which part of the object a write may change.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Part {
    /// Everything but status (when the kind has a status subresource) and system metadata.
    Main,
    /// Only status (the status subresource).
    Status,
    /// A change the server itself computed (binding, scale): stored as given, no strategy rules.
    System,
}

/// What a guaranteed update did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Updated,
    /// The update finished a deletion (last finalizer gone, no grace period left).
    Deleted,
}

/// Options of a create or update (upstream's CreateOptions / UpdateOptions / PatchOptions).
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// dryRun=All: everything but the write itself.
    pub dry_run: bool,
    /// The manager whose change this is, recorded in managedFields (operation Update). None when
    /// the caller computed managedFields itself (server-side apply) or for system changes.
    pub field_manager: Option<String>,
}

/// Preconditions of a delete (upstream's `metav1.Preconditions`).
#[derive(Clone, Debug, Default)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

/// Options of a delete (upstream's DeleteOptions, already checked).
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    /// `Orphan`, `Background` or `Foreground`.
    pub propagation_policy: Option<String>,
    pub preconditions: Preconditions,
    pub dry_run: bool,
}

/// What a delete did.
#[derive(Clone, Debug)]
pub struct Deleted {
    /// The object as last stored (when removed) or as marked for deletion.
    pub object: Value,
    /// The object is gone; otherwise it stays, marked, until finalizers or the grace period end.
    pub removed: bool,
}

/// Label and field selectors of a list (upstream's SelectionPredicate), checked against what the
/// kind supports.
pub struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
    /// The members the selectors read, when a sparse decode of a stored object is enough to
    /// judge it (`matches_stored`); None: decode it whole.
    sparse: Option<sparse::Paths>,
    /// Texts any matching object's stored bytes must contain (the values of `=` requirements
    /// judged on the sparse decode): an object without one is refused before any parse.
    needles: Vec<String>,
}

/// A selector value whose JSON text is itself (nothing to escape), worth searching for.
fn plain_text(v: &str) -> bool {
    v.len() >= 3 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._/:@+".contains(&b))
}

impl Filter {
    pub fn parse(strategy: &dyn Strategy, label_selector: &str, field_selector: &str) -> Result<Filter, ApiError> {
        let labels = LabelSelector::parse(label_selector).map_err(ApiError::bad_request)?;
        let fields = FieldSelector::parse(field_selector).map_err(ApiError::bad_request)?;
        for r in &fields.requirements {
            let generic = matches!(r.field.as_str(), "metadata.name" | "metadata.namespace");
            if !generic && strategy.field_value(&json!({}), &r.field).is_none() {
                return Err(ApiError::bad_request(format!("field label not supported: {}", r.field)));
            }
        }
        let sparse = sparse_paths(strategy, &fields);
        let mut needles = Vec::new();
        if sparse.is_some() {
            for r in &labels.requirements {
                if let kaji_api::selector::Requirement::Equals(_, v) = r {
                    needles.push(v.clone());
                }
            }
            // A field the strategy defaults when absent may match without its text stored.
            for r in fields.requirements.iter().filter(|r| !r.negated) {
                let generic = matches!(r.field.as_str(), "metadata.name" | "metadata.namespace");
                if generic || strategy.field_value(&json!({}), &r.field).as_deref() != Some(r.value.as_str()) {
                    needles.push(r.value.clone());
                }
            }
            needles.retain(|v| plain_text(v));
        }
        Ok(Filter { labels, fields, sparse, needles })
    }

    /// Everything.
    pub fn everything() -> Filter {
        Filter { labels: LabelSelector::default(), fields: FieldSelector::default(), sparse: None, needles: Vec::new() }
    }

    pub fn matches(&self, strategy: &dyn Strategy, obj: &Value) -> bool {
        self.labels.matches_object(obj)
            && self.fields.matches(|f| match f {
                "metadata.name" => Some(meta_str(obj, "name").unwrap_or_default().to_string()),
                "metadata.namespace" => Some(meta_str(obj, "namespace").unwrap_or_default().to_string()),
                other => strategy.field_value(obj, other),
            })
    }

    /// `matches` of a stored object, reading only the members the selectors need when it can.
    pub fn matches_stored(&self, strategy: &dyn Strategy, kv: &kaji_store::KeyValue) -> bool {
        if self.is_everything() {
            return true;
        }
        // std's substring search (optimised even in a debug build) before any parse.
        if !self.needles.is_empty() {
            let Ok(text) = std::str::from_utf8(&kv.value) else { return self.matches(strategy, &strategy.decode(kv)) };
            if !self.needles.iter().all(|n| text.contains(n.as_str())) {
                return false;
            }
        }
        match self.sparse.as_ref().and_then(|p| p.decode(&kv.value)) {
            Some(obj) => self.matches(strategy, &obj),
            None => self.matches(strategy, &strategy.decode(kv)),
        }
    }

    pub fn is_everything(&self) -> bool {
        self.labels.is_empty() && self.fields.requirements.is_empty()
    }
}

/// The members `fields` (and any label selector) read, if each field selector's value is the
/// member its name spells (`spec.nodeName` is `/spec/nodeName`), found by asking the strategy
/// about a probe object. Kinds stored in another version are converted first: None for them.
fn sparse_paths(strategy: &dyn Strategy, fields: &FieldSelector) -> Option<sparse::Paths> {
    if strategy.storage_info().is_some() {
        return None;
    }
    let mut paths = sparse::Paths::default();
    paths.add(&["metadata", "labels"]);
    paths.add(&["metadata", "name"]);
    paths.add(&["metadata", "namespace"]);
    const PROBE: &str = "\u{1}kaji-probe";
    for r in &fields.requirements {
        if matches!(r.field.as_str(), "metadata.name" | "metadata.namespace") {
            continue;
        }
        let path: Vec<&str> = r.field.split('.').collect();
        let mut probe = json!(PROBE);
        for key in path.iter().rev() {
            probe = json!({ *key: probe });
        }
        if strategy.field_value(&probe, &r.field).as_deref() != Some(PROBE) {
            return None;
        }
        paths.add(&path);
    }
    Some(paths)
}

/// How many stored objects a selector list reads at a time when it pages (`limit`).
const LIST_BATCH: usize = 1000;

/// Paging of a list (upstream's ListOptions: limit, continue, resourceVersionMatch=Exact).
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    /// resourceVersionMatch=Exact with this resourceVersion.
    pub exact_revision: Option<i64>,
}

/// One page of matching objects at one revision (decoded, or as stored: `Page<KeyValue>`).
pub struct Page<T = Value> {
    pub items: Vec<T>,
    pub revision: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

const CONTINUE_TOO_OLD: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

fn encode_continue(rv: i64, start_after: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start_after});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(s: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(s))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?.to_string();
    Ok((rv, start))
}

/// One kind's store: the storage, the kind's strategy, and what strategies and admission use.
#[derive(Clone, Copy)]
pub struct Store<'a> {
    pub storage: &'a dyn kaji_store::Store,
    pub strategy: &'a Arc<dyn Strategy>,
    /// The served kinds (admission reads PriorityClasses through it).
    pub registry: &'a Registry,
    pub allocators: &'a Allocators,
    pub admission: &'a Admission,
}

impl<'a> Store<'a> {
    /// The store of `strategy`'s kind in a running API server.
    pub fn of(server: &'a crate::ApiServer, strategy: &'a Arc<dyn Strategy>) -> Store<'a> {
        Store { storage: &*server.store, strategy, registry: &server.registry, allocators: &server.allocators, admission: &server.admission }
    }

    /// The same store for another kind (a subresource that writes a different object).
    pub fn with_strategy(self, strategy: &'a Arc<dyn Strategy>) -> Store<'a> {
        Store { strategy, ..self }
    }

    fn ctx(&self) -> Ctx<'a> {
        Ctx { allocators: self.allocators, admission: self.admission }
    }

    /// `namespace` if the kind is namespaced.
    fn ns<'n>(&self, namespace: Option<&'n str>) -> Option<&'n str> {
        if self.strategy.info().namespaced { namespace } else { None }
    }

    /// The store prefix of the kind's objects (in `namespace`, for a namespaced kind).
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        self.strategy.prefix(self.ns(namespace))
    }

    /// Reads one object, or 404.
    pub async fn get(&self, namespace: Option<&str>, name: &str) -> Result<Value, ApiError> {
        let info = self.strategy.info();
        let key = self.strategy.key(self.ns(namespace), name);
        match self.storage.get(&key).await.map_err(crate::store_error)? {
            Some(kv) => Ok(self.strategy.decode(&self.strategy.convert_one(kv).await?)),
            None => Err(ApiError::not_found(info.group, info.plural, name)),
        }
    }

    /// One page of the objects (in `namespace`, or all) that `filter` selects, at one revision.
    pub async fn list(&self, namespace: Option<&str>, filter: &Filter, opts: &ListOptions) -> Result<Page, ApiError> {
        let strategy = self.strategy.as_ref();
        if strategy.conversion_webhook().is_some() {
            // Selected on the stored objects (labels and metadata are the same in every
            // version), then converted in one webhook call.
            let page = self.list_stored(namespace, filter, opts).await?;
            return Ok(Page { items: page.items.iter().map(|kv| strategy.decode(kv)).collect(), revision: page.revision, continue_token: page.continue_token, remaining: page.remaining });
        }
        // Judged on a light parse of the stored bytes (only what the selectors read) when it
        // can be, so only the objects that match are decoded.
        let light = filter.is_everything() || filter.sparse.is_some();
        self.list_with(namespace, filter, opts, |kv| {
            if light {
                return filter.matches_stored(strategy, &kv).then(|| strategy.decode(&kv));
            }
            let obj = strategy.decode(&kv);
            filter.matches(strategy, &obj).then_some(obj)
        })
        .await
    }

    /// `list`, with the objects as stored (`Strategy::write_json` encodes them): nothing is
    /// decoded unless a selector needs it.
    pub async fn list_stored(&self, namespace: Option<&str>, filter: &Filter, opts: &ListOptions) -> Result<Page<kaji_store::KeyValue>, ApiError> {
        let strategy = self.strategy.as_ref();
        let mut page = self.list_with(namespace, filter, opts, |kv| filter.matches_stored(strategy, &kv).then_some(kv)).await?;
        page.items = strategy.convert_stored(page.items).await?;
        Ok(page)
    }

    /// `list` with each object reduced to its `metadata` (for PartialObjectMetadata): read from
    /// the stored bytes without building the rest of the object, when the kind is stored as
    /// served; else decoded whole.
    pub async fn list_metadata(&self, namespace: Option<&str>, filter: &Filter, opts: &ListOptions) -> Result<Page, ApiError> {
        let strategy = self.strategy.as_ref();
        if strategy.storage_info().is_some() || strategy.conversion_webhook().is_some() {
            return self.list(namespace, filter, opts).await;
        }
        let mut metadata = sparse::Paths::default();
        metadata.add(&["metadata"]);
        self.list_with(namespace, filter, opts, |kv| {
            if !filter.matches_stored(strategy, &kv) {
                return None;
            }
            let mut obj = metadata.decode(&kv.value).unwrap_or_else(|| strategy.decode(&kv));
            crate::objects::set_rv(&mut obj, kv.mod_revision);
            Some(obj)
        })
        .await
    }

    /// The paging loop of `list`: `keep` turns a stored object into an item, or drops it.
    async fn list_with<T>(&self, namespace: Option<&str>, filter: &Filter, opts: &ListOptions, mut keep: impl FnMut(kaji_store::KeyValue) -> Option<T>) -> Result<Page<T>, ApiError> {
        let prefix = self.prefix(namespace);
        let limit = opts.limit.filter(|l| *l > 0);
        let continuing = opts.continue_token.as_deref().filter(|c| !c.is_empty());
        let (mut revision, mut start_after) = match continuing {
            Some(c) => {
                let (rv, start) = decode_continue(c)?;
                (Some(rv), Some(start))
            }
            None => (None, None),
        };
        if revision.is_none() {
            revision = opts.exact_revision;
        }
        let mut items = Vec::new();
        loop {
            let want = limit.map(|l| l - items.len());
            // With a selector most objects are passed over: read batches, not only as many as
            // are missing (each store read also counts what remains after it).
            let batch = if filter.is_everything() { want } else { want.map(|w| w.max(LIST_BATCH)) };
            let store_opts = kaji_store::ListOptions { start_after: start_after.clone(), limit: batch, revision };
            let res = self.storage.list(&prefix, store_opts).await.map_err(|e| match e {
                kaji_store::StoreError::Compacted { .. } if opts.continue_token.is_some() => ApiError::gone(CONTINUE_TOO_OLD),
                other => crate::store_error(other),
            })?;
            revision = Some(res.revision);
            let read = res.items.len();
            let mut last_key = None;
            // The page filled before the batch's end: the rest is the next page's.
            let mut stopped_early = false;
            for (i, kv) in res.items.into_iter().enumerate() {
                // The key is kept only where a page can end (a copy per object otherwise).
                let key = (limit.is_some() || i + 1 == read).then(|| kv.key.clone());
                if let Some(item) = keep(kv) {
                    items.push(item);
                }
                last_key = key;
                if limit.is_some_and(|l| items.len() >= l) {
                    stopped_early = i + 1 < read;
                    break;
                }
            }
            let full = limit.is_some_and(|l| items.len() >= l);
            if !res.more && !stopped_early {
                return Ok(Page { items, revision: res.revision, continue_token: None, remaining: None });
            }
            if full || limit.is_none() {
                let token = last_key.map(|k| encode_continue(res.revision, &k));
                let remaining = filter.is_everything().then_some(res.remaining);
                return Ok(Page { items, revision: res.revision, continue_token: token, remaining });
            }
            start_after = last_key;
        }
    }

    /// Name, ObjectMeta and the kind's own rules (for an update: of the part written).
    fn validate(&self, obj: &Value, old: Option<(&Value, Part)>) -> Result<(), ApiError> {
        let strategy = self.strategy;
        let info = strategy.info();
        let name = meta_str(obj, "name").unwrap_or_default();
        let mut errs = Vec::new();
        for m in strategy.validate_name(name) {
            errs.push(FieldError::invalid("metadata.name", &json!(name), &m));
        }
        errs.extend(crate::registry::meta::validate_object_meta(obj));
        match old {
            None => errs.extend(strategy.validate(obj)),
            Some((old, Part::Status)) => errs.extend(strategy.validate_status_update(obj, old)),
            Some((old, _)) => errs.extend(strategy.validate_update(obj, old)),
        }
        if errs.is_empty() { Ok(()) } else { Err(ApiError::invalid(info.group, info.kind, name, errs)) }
    }

    /// Upstream (1.22+) records a write through the status subresource as the manager's
    /// `subresource: status` entry, apart from its writes of the main resource.
    fn record_managed_fields(&self, manager: &str, part: Part, old: Option<&Value>, new: &mut Value) {
        let info = self.strategy.info();
        // Custom kinds: the definitions made from their CRD's schema.
        let (defs, def) = match self.strategy.apply_definitions() {
            Some((defs, def)) => (defs, Some(def)),
            None => (kaji_openapi::definitions(), kaji_openapi::definition_name(info.group, info.version, info.kind)),
        };
        if let Some(def) = def {
            // Managed-fields bookkeeping never fails a write; a problem is logged.
            if let Err(e) = kaji_patch::apply::update_managed_fields(
                old,
                new,
                manager,
                "Update",
                &info.api_version(),
                (part == Part::Status).then_some("status"),
                &objects::now_rfc3339(),
                defs,
                def,
            ) {
                tracing::warn!(error = %e, "recording managedFields");
            }
        }
    }

    /// Stores a new object (upstream Store.Create): the generic metadata (name from
    /// generateName, uid, creationTimestamp, generation), the strategy's defaults and
    /// PrepareForCreate, admission, validation, managedFields, allocation, then the write.
    /// `metadata.namespace` is taken as given; the object goes under `namespace`.
    pub async fn create(&self, namespace: Option<&str>, mut obj: Value, opts: &WriteOptions) -> Result<Value, ApiError> {
        let strategy = self.strategy;
        let info = strategy.info();
        {
            let meta = meta_mut(&mut obj);
            let name = meta.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            if name.is_empty() {
                let generate = meta.get("generateName").and_then(Value::as_str).unwrap_or_default().to_string();
                if generate.is_empty() {
                    return Err(ApiError::invalid(info.group, info.kind, "", vec![FieldError::required("metadata.name", "name or generateName is required")]));
                }
                let base: String = generate.chars().take(58).collect();
                meta.insert("name".into(), json!(format!("{base}{}", objects::random_suffix())));
            }
            if meta.get("resourceVersion").and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
                return Err(ApiError::bad_request("resourceVersion should not be set on objects to be created"));
            }
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), json!(objects::now_rfc3339()));
            meta.remove("deletionTimestamp");
            meta.remove("deletionGracePeriodSeconds");
            // Server-side apply has just computed the managedFields of the object it creates.
            if opts.field_manager.is_some() {
                meta.remove("managedFields");
            }
            meta.remove("selfLink");
            if strategy.tracks_generation() {
                meta.insert("generation".into(), json!(1));
            } else {
                meta.remove("generation");
            }
        }
        if strategy.has_status()
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        objects::drop_empty_meta(&mut obj);
        strategy.default(&mut obj);
        strategy.prepare_for_create(&mut obj);
        strategy.admit(&self.ctx(), &mut obj);
        crate::admission::admit_create(self.storage, self.registry, info, self.ctx().admission, &mut obj).await?;
        let hook = crate::admission::webhook::Attributes::create(info, self.ns(namespace), meta_str(&obj, "name").unwrap_or_default(), opts);
        crate::admission::webhook::mutate(&hook, &mut obj).await?;
        self.validate(&obj, None)?;
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let namespace = self.ns(namespace);
        crate::admission::webhook::validate(&hook, Some(&obj)).await?;
        crate::admission::validate_create(self.storage, self.registry, info, namespace, &obj, opts.dry_run).await?;
        crate::admission::node_restriction::admit(self.storage, self.registry, &NodeRequest { operation: NodeOp::Create, info, subresource: "", namespace: namespace.unwrap_or_default(), name: meta_str(&obj, "name").unwrap_or_default(), object: Some(&obj), old: None }).await?;
        if let Some(manager) = &opts.field_manager {
            self.record_managed_fields(manager, Part::Main, None, &mut obj);
        }
        if opts.dry_run {
            return Ok(obj);
        }
        let ctx = self.ctx();
        strategy.allocate(&ctx, &mut obj, None)?;
        let key = strategy.key(namespace, &name);
        let value = match strategy.encode_for_storage(&obj).await {
            Ok(v) => v,
            Err(e) => {
                strategy.release(&ctx, &obj, None);
                return Err(e);
            }
        };
        match self.storage.create(&key, value).await {
            Ok(kv) => {
                objects::set_rv(&mut obj, kv.mod_revision);
                Ok(obj)
            }
            Err(e) => {
                strategy.release(&ctx, &obj, None);
                Err(match e {
                    kaji_store::StoreError::AlreadyExists { .. } => ApiError::already_exists(info.group, info.plural, &name),
                    other => crate::store_error(other),
                })
            }
        }
    }

    /// Replaces an object with `obj` (upstream Store.Update with the object as given): `part`
    /// says what may change. A missing object is created when the kind allows create on update
    /// (`Main` only); the bool says it was.
    pub async fn update(&self, namespace: Option<&str>, name: &str, mut obj: Value, part: Part, opts: &WriteOptions) -> Result<(Value, bool), ApiError> {
        let info = self.strategy.info();
        let exists = self.get(namespace, name).await;
        if let Err(e) = &exists
            && e.code == 404
            && part == Part::Main
        {
            if self.strategy.allow_create_on_update() {
                meta_mut(&mut obj).insert("name".into(), json!(name));
                if let Some(ns) = self.ns(namespace) {
                    meta_mut(&mut obj).insert("namespace".into(), json!(ns));
                }
                meta_mut(&mut obj).remove("resourceVersion");
                return Ok((self.create(namespace, obj, opts).await?, true));
            }
            return Err(ApiError::not_found(info.group, info.plural, name));
        }
        let (obj, _) = self.guaranteed_update(namespace, name, part, opts, |_| Ok(obj.clone())).await?;
        Ok((obj, false))
    }

    /// Turns a desired object into the one to store on update: system metadata and (for `Main`)
    /// status are kept from `old`, defaults and the strategy's rules applied, generation bumped
    /// as the strategy says. Returns None when nothing would change.
    fn prepare_update(&self, mut new: Value, old: &Value, part: Part) -> Result<Option<Value>, ApiError> {
        let strategy = self.strategy;
        if part == Part::System {
            return Ok((new != *old).then_some(new));
        }
        if part == Part::Status {
            strategy.prepare_for_status_update(&mut new, old);
        } else {
            {
                let old_meta = objects::meta(old).cloned().unwrap_or_default();
                let meta = meta_mut(&mut new);
                for k in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "namespace", "selfLink"] {
                    match old_meta.get(k) {
                        Some(v) => meta.insert(k.into(), v.clone()),
                        None => meta.remove(k),
                    };
                }
                if !meta.contains_key("managedFields")
                    && let Some(mf) = old_meta.get("managedFields")
                {
                    meta.insert("managedFields".into(), mf.clone());
                }
            }
            if strategy.has_status() {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        new.as_object_mut().map(|m| m.remove("status"));
                    }
                }
            }
            objects::drop_empty_meta(&mut new);
            strategy.default(&mut new);
            strategy.prepare_for_update(&mut new, old);
            if strategy.tracks_generation() && strategy.bumps_generation(&new, old) {
                let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
                meta_mut(&mut new).insert("generation".into(), json!(g));
            }
        }
        // The resourceVersion is the store's; compare without it and without managedFields.
        if objects::same_but_bookkeeping(&new, old) {
            return Ok(None);
        }
        self.validate(&new, Some((old, part)))?;
        Ok(Some(new))
    }

    /// The compare-and-swap loop (upstream GuaranteedUpdate): read, compute with `mutate`, write
    /// at the read revision, and start again if somebody else wrote in between. A
    /// resourceVersion in the computed object must be the one read (else 409).
    pub async fn guaranteed_update<F>(&self, namespace: Option<&str>, name: &str, part: Part, opts: &WriteOptions, mut mutate: F) -> Result<(Value, Outcome), ApiError>
    where
        F: FnMut(&Value) -> Result<Value, ApiError>,
    {
        let strategy = self.strategy;
        let info = strategy.info();
        let namespace = self.ns(namespace);
        let key = strategy.key(namespace, name);
        let ctx = self.ctx();
        for _ in 0..32 {
            let current = self.get(namespace, name).await?;
            let rev: i64 = meta_str(&current, "resourceVersion").and_then(|s| s.parse().ok()).unwrap_or(0);
            let desired = mutate(&current)?;
            if let Some(want) = meta_str(&desired, "resourceVersion").filter(|s| !s.is_empty())
                && want != rev.to_string()
            {
                return Err(ApiError::stale(info.group, info.plural, name));
            }
            if meta_str(&desired, "name").is_some_and(|n| n != name) {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    meta_str(&desired, "name").unwrap_or_default()
                )));
            }
            let Some(mut next) = self.prepare_update(desired, &current, part)? else {
                return Ok((current, Outcome::Unchanged));
            };
            let hook = crate::admission::webhook::Attributes::update(info, part, namespace, name, &current, opts);
            if crate::admission::webhook::mutate(&hook, &mut next).await? {
                self.validate(&next, Some((&current, part)))?;
            }
            crate::admission::webhook::validate(&hook, Some(&next)).await?;
            if part != Part::System {
                let subresource = if part == Part::Status { "status" } else { "" };
                let r = NodeRequest { operation: NodeOp::Update, info, subresource, namespace: namespace.unwrap_or_default(), name, object: Some(&next), old: Some(&current) };
                crate::admission::node_restriction::admit(self.storage, self.registry, &r).await?;
            }
            if part == Part::Main {
                crate::admission::resource_quota::validate_update(self.storage, self.registry, info, namespace, &current, &next, opts.dry_run).await?;
            }
            if let Some(manager) = &opts.field_manager {
                self.record_managed_fields(manager, part, Some(&current), &mut next);
            }
            if opts.dry_run {
                return Ok((next, Outcome::Unchanged));
            }
            // An object being deleted goes away when its last finalizer is removed.
            let grace_left = next.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0) > 0;
            if objects::is_deleting(&next) && strategy.ready_to_remove(&next) && !grace_left {
                match self.storage.delete(&key, Some(rev)).await {
                    Ok(kv) => {
                        strategy.release(&ctx, &next, None);
                        objects::set_rv(&mut next, kv.mod_revision);
                        return Ok((next, Outcome::Deleted));
                    }
                    // Changed or deleted since the read: the next read tells which (404 if gone).
                    Err(kaji_store::StoreError::Conflict { .. } | kaji_store::StoreError::NotFound { .. }) => continue,
                    Err(e) => return Err(crate::store_error(e)),
                }
            }
            strategy.allocate(&ctx, &mut next, Some(&current))?;
            let value = match strategy.encode_for_storage(&next).await {
                Ok(v) => v,
                Err(e) => {
                    strategy.release(&ctx, &next, Some(&current));
                    return Err(e);
                }
            };
            match self.storage.update(&key, value, rev).await {
                Ok(kv) => {
                    strategy.release(&ctx, &current, Some(&next));
                    objects::set_rv(&mut next, kv.mod_revision);
                    return Ok((next, Outcome::Updated));
                }
                Err(kaji_store::StoreError::Conflict { .. } | kaji_store::StoreError::NotFound { .. }) => {
                    strategy.release(&ctx, &next, Some(&current));
                    continue;
                }
                Err(e) => {
                    strategy.release(&ctx, &next, Some(&current));
                    return Err(crate::store_error(e));
                }
            }
        }
        Err(ApiError::conflict(info.group, info.plural, name, "too many concurrent writers; please try again"))
    }

    /// Deletes one object (upstream Store.Delete). Like upstream's conditional delete, a write
    /// that lands between the read and the removal (a controller's status update) does not fail
    /// the delete: it starts again on the fresh object, checking the preconditions against it.
    pub async fn delete(&self, namespace: Option<&str>, name: &str, opts: &DeleteOptions) -> Result<Deleted, ApiError> {
        // Upstream retries without a bound (the request's timeout ends it); so do we, up to 30 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match self.delete_attempt(namespace, name, opts).await? {
                Some(done) => return Ok(done),
                None if std::time::Instant::now() < deadline => tokio::task::yield_now().await,
                None => {
                    let info = self.strategy.info();
                    return Err(ApiError::stale(info.group, info.plural, name));
                }
            }
        }
    }

    /// One try: `None` when the object changed under us before it could be removed.
    async fn delete_attempt(&self, namespace: Option<&str>, name: &str, opts: &DeleteOptions) -> Result<Option<Deleted>, ApiError> {
        let strategy = self.strategy;
        let info = strategy.info();
        let current = self.get(namespace, name).await?;
        let r = NodeRequest { operation: NodeOp::Delete, info, subresource: "", namespace: namespace.unwrap_or_default(), name, object: None, old: Some(&current) };
        crate::admission::node_restriction::admit(self.storage, self.registry, &r).await?;
        crate::admission::webhook::admit_delete(&crate::admission::webhook::Attributes::delete(info, self.ns(namespace), name, &current, opts)).await?;
        let uid = meta_str(&current, "uid").unwrap_or_default().to_string();
        if let Some(want) = &opts.preconditions.uid
            && *want != uid
        {
            return Err(ApiError::conflict(info.group, info.plural, name, &format!("Precondition failed: UID in precondition: {want}, UID in object meta: {uid}")));
        }
        let rv = meta_str(&current, "resourceVersion").unwrap_or_default().to_string();
        if let Some(want) = &opts.preconditions.resource_version
            && *want != rv
        {
            return Err(ApiError::conflict(
                info.group,
                info.plural,
                name,
                &format!("Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"),
            ));
        }
        let graceful = strategy.graceful_delete(&current).map(|default| opts.grace_period_seconds.unwrap_or(default).max(0));
        let propagation = opts.propagation_policy.clone();
        let now = jiff::Timestamp::now();
        // First mark the object (finalizers, deletionTimestamp); it goes at once only if nothing waits.
        // A system change: the generic update rules would keep the old (absent) deletionTimestamp.
        let mark = WriteOptions { dry_run: opts.dry_run, field_manager: None };
        let (marked, outcome) = self
            .guaranteed_update(namespace, name, Part::System, &mark, |cur| {
                let mut next = cur.clone();
                let already = objects::is_deleting(cur);
                // The kind's own finalizers first (a CRD's cleanup), then the propagation's.
                let stays = strategy.prepare_for_delete(&mut next);
                let mut finalizers = objects::finalizers(&next);
                match propagation.as_deref() {
                    Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => finalizers.push("orphan".into()),
                    Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => finalizers.push("foregroundDeletion".into()),
                    _ => {}
                }
                let wait = graceful.unwrap_or(0);
                let meta = meta_mut(&mut next);
                if !finalizers.is_empty() {
                    meta.insert("finalizers".into(), json!(finalizers));
                }
                if already {
                    // A shorter grace period on a second delete shortens the wait (upstream BeforeDelete);
                    // shortened to 0 with no finalizers left, the object goes now.
                    let old = meta.get("deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(i64::MAX);
                    if graceful.is_some() && wait < old {
                        let at = now.checked_add(jiff::SignedDuration::from_secs(wait)).unwrap_or(now);
                        meta.insert("deletionTimestamp".into(), json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()));
                        meta.insert("deletionGracePeriodSeconds".into(), json!(wait));
                    }
                } else if !finalizers.is_empty() || stays || wait > 0 {
                    let at = now.checked_add(jiff::SignedDuration::from_secs(wait)).unwrap_or(now);
                    meta.insert("deletionTimestamp".into(), json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()));
                    meta.insert("deletionGracePeriodSeconds".into(), json!(wait));
                }
                Ok(next)
            })
            .await?;
        if outcome == Outcome::Deleted {
            return Ok(Some(Deleted { object: marked, removed: true }));
        }
        if objects::is_deleting(&marked) || opts.dry_run {
            return Ok(Some(Deleted { object: marked, removed: false }));
        }
        let key = strategy.key(self.ns(namespace), name);
        let rev: i64 = meta_str(&marked, "resourceVersion").and_then(|s| s.parse().ok()).unwrap_or(0);
        match self.storage.delete(&key, Some(rev)).await {
            Ok(_) => {
                strategy.release(&self.ctx(), &marked, None);
                Ok(Some(Deleted { object: marked, removed: true }))
            }
            Err(kaji_store::StoreError::NotFound { .. }) => Err(ApiError::not_found(info.group, info.plural, name)),
            Err(kaji_store::StoreError::Conflict { .. }) => Ok(None),
            Err(e) => Err(crate::store_error(e)),
        }
    }

    /// Deletes every object of one list page (upstream Store.DeleteCollection): returns those
    /// deleted (or marked) as they were listed, and the list's revision. Objects already gone
    /// are skipped.
    pub async fn delete_collection(&self, namespace: Option<&str>, filter: &Filter, list: &ListOptions, opts: &DeleteOptions) -> Result<(Vec<Value>, i64), ApiError> {
        let page = self.list(namespace, filter, list).await?;
        let mut deleted = Vec::new();
        for obj in page.items {
            let name = meta_str(&obj, "name").unwrap_or_default().to_string();
            let ns = meta_str(&obj, "namespace").map(str::to_string);
            match self.delete(ns.as_deref(), &name, opts).await {
                Ok(_) => deleted.push(obj),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok((deleted, page.revision))
    }
}
