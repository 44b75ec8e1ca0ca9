//! The strategy of a custom kind, one per served version of an established CRD (upstream's
//! `registry/customresource/strategy.go` and the handler's per-version `crdInfo`): scope, name
//! rules, generation, the status and scale subresources, selectable fields, pruning, defaulting
//! and validation against the version's structural schema (`kaji_apiextensions::Structural`),
//! deprecation warnings, and conversion to the storage version (`None`, or through the CRD's
//! webhook, which the generic store calls asynchronously: `conversion_webhook`).

use super::conversion;
use super::printer::PrinterColumns;
use crate::registry::{Ctx, ScalePaths, ScaleSpec, Strategy};
use kaji_api::{ApiError, FieldError, ResourceInfo};
use kaji_apiextensions::Structural;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Leaks a string once per distinct value: `ResourceInfo` holds `&'static str`s, and the names
/// of custom kinds come from CRDs at run time. CRDs are few and their names rarely change, so
/// what is leaked stays small (each distinct group, version, kind, plural, ... once).
pub fn intern(s: &str) -> &'static str {
    static STRINGS: Mutex<Option<HashMap<String, &'static str>>> = Mutex::new(None);
    let mut guard = STRINGS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let map = guard.get_or_insert_with(HashMap::new);
    if let Some(s) = map.get(s) {
        return s;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    map.insert(s.to_string(), leaked);
    leaked
}

/// `intern` for a list of strings.
pub fn intern_list(items: &[String]) -> &'static [&'static str] {
    static LISTS: Mutex<Option<HashMap<Vec<String>, &'static [&'static str]>>> = Mutex::new(None);
    let mut guard = LISTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let map = guard.get_or_insert_with(HashMap::new);
    if let Some(l) = map.get(items) {
        return l;
    }
    let list: Vec<&'static str> = items.iter().map(|s| intern(s)).collect();
    let leaked: &'static [&'static str] = Box::leak(list.into_boxed_slice());
    map.insert(items.to_vec(), leaked);
    leaked
}

/// `intern` for a whole resource description (the storage version's, which
/// `Strategy::storage_info` hands out as `&'static`).
fn intern_info(info: &ResourceInfo) -> &'static ResourceInfo {
    type Key = (&'static str, &'static str, &'static str, &'static str, bool);
    static INFOS: Mutex<Option<HashMap<Key, &'static ResourceInfo>>> = Mutex::new(None);
    let key = (info.group, info.version, info.kind, info.plural, info.namespaced);
    let mut guard = INFOS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let map = guard.get_or_insert_with(HashMap::new);
    if let Some(i) = map.get(&key)
        && **i == *info
    {
        return i;
    }
    let leaked: &'static ResourceInfo = Box::leak(Box::new(info.clone()));
    map.insert(key, leaked);
    leaked
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
}

/// A JSON path of a CRD (`.spec.replicas`) as a JSON pointer (`/spec/replicas`).
fn pointer(json_path: &str) -> String {
    json_path.trim_start_matches('.').split('.').filter(|s| !s.is_empty()).fold(String::new(), |mut p, seg| {
        p.push('/');
        p.push_str(seg);
        p
    })
}

/// One served version of a custom kind.
pub struct CustomResource {
    info: ResourceInfo,
    /// The storage version's description, when objects may be stored in another version than
    /// this one (CRDs with several versions); None: stored as served.
    storage: Option<&'static ResourceInfo>,
    /// `/registry/<group>/<plural>/`, upstream's key whatever the version.
    prefix: String,
    schema: Option<Arc<Structural>>,
    status: bool,
    scale: Option<ScalePaths>,
    /// Field selector names of `selectableFields` (`spec.color`).
    selectable: Vec<String>,
    deprecation: Option<&'static str>,
    terminating: bool,
    /// The version's printer columns (Table output).
    printer: PrinterColumns,
    /// The CRD's conversion webhook (several versions, `strategy: Webhook`).
    webhook: Option<Arc<conversion::Webhook>>,
    /// `Strategy::storage_identity`.
    identity: u64,
    /// The version's `openAPIV3Schema`, and what server-side apply makes of it (on first use).
    raw_schema: Option<Value>,
    apply_defs: std::sync::OnceLock<(serde_json::Map<String, Value>, String)>,
}

impl CustomResource {
    /// The strategy of `version` (an entry of `spec.versions`) of `crd`, served under the CRD's
    /// accepted names.
    pub fn new(crd: &Value, version: &Value, storage_version: &str, several_versions: bool, terminating: bool) -> CustomResource {
        let spec = &crd["spec"];
        let names = &crd["status"]["acceptedNames"];
        let group = intern(spec["group"].as_str().unwrap_or_default());
        let plural = names["plural"].as_str().unwrap_or_default();
        let name = version["name"].as_str().unwrap_or_default();
        let namespaced = spec["scope"].as_str() != Some("Cluster");
        let kind = intern(names["kind"].as_str().unwrap_or_default());
        let mut categories = strings(names.get("categories"));
        categories.sort_unstable();
        categories.dedup();
        let subs = &version["subresources"];
        let status = subs.get("status").is_some_and(|s| !s.is_null());
        let scale = subs.get("scale").filter(|s| s.is_object()).map(|s| ScalePaths {
            spec_replicas: pointer(s["specReplicasPath"].as_str().unwrap_or(".spec.replicas")),
            status_replicas: pointer(s["statusReplicasPath"].as_str().unwrap_or(".status.replicas")),
            label_selector: s["labelSelectorPath"].as_str().map(pointer),
        });
        let mut subresources = Vec::new();
        if status {
            subresources.push("status".to_string());
        }
        if scale.is_some() {
            subresources.push("scale".to_string());
        }
        let info = ResourceInfo {
            group,
            version: intern(name),
            kind,
            plural: intern(plural),
            singular: intern(names["singular"].as_str().filter(|s| !s.is_empty()).map(str::to_string).unwrap_or_else(|| kind.to_lowercase()).as_str()),
            namespaced,
            short_names: intern_list(&strings(names.get("shortNames"))),
            categories: intern_list(&categories),
            verbs: kaji_api::ALL_VERBS,
            subresources: intern_list(&subresources),
        };
        let storage = several_versions.then(|| {
            let mut s = info.clone();
            s.version = intern(storage_version);
            intern_info(&s)
        });
        let deprecation = version["deprecated"].as_bool().unwrap_or(false).then(|| {
            let text = version["deprecationWarning"].as_str().map(str::to_string).unwrap_or_else(|| format!("{group}/{name} {kind} is deprecated"));
            intern(&text)
        });
        let schema = version.pointer("/schema/openAPIV3Schema").filter(|s| s.is_object()).map(|s| Arc::new(Structural::new(s)));
        let selectable = version["selectableFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["jsonPath"].as_str())
            .map(|p| p.trim_start_matches('.').to_string())
            .collect();
        CustomResource {
            prefix: crate::registry::keys::custom_resource_prefix(group, plural),
            info,
            storage,
            schema,
            status,
            scale,
            selectable,
            deprecation,
            terminating,
            printer: PrinterColumns::new(version),
            webhook: None,
            identity: {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                crate::objects::meta_str(crd, "uid").unwrap_or_default().hash(&mut h);
                spec.to_string().hash(&mut h);
                names.to_string().hash(&mut h);
                h.finish()
            },
            raw_schema: version.pointer("/schema/openAPIV3Schema").filter(|s| s.is_object()).cloned(),
            apply_defs: std::sync::OnceLock::new(),
        }
    }

    /// Converts between versions through `webhook` (None: `None` conversion).
    pub fn with_webhook(mut self, webhook: Option<Arc<conversion::Webhook>>) -> CustomResource {
        self.webhook = webhook;
        self
    }

    /// Prunes and defaults as upstream's decoder does for a custom kind; the pruned paths.
    fn prune_and_default(&self, obj: &mut Value) -> Vec<String> {
        let Some(schema) = &self.schema else { return Vec::new() };
        let pruned = schema.prune(obj);
        schema.default(obj);
        pruned
    }

    /// The scale paths' values (upstream's `validateScaleSpec`); names and metadata are the
    /// generic store's checks (`validate_name`).
    fn validate_common(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if let Some(scale) = &self.scale
            && let Some(v) = obj.pointer(&scale.spec_replicas).filter(|v| !v.is_null())
        {
            let field = scale.spec_replicas.trim_start_matches('/').replace('/', ".");
            match v.as_i64() {
                Some(n) if n < 0 => errs.push(FieldError::invalid(field, v, "should be a non-negative integer")),
                Some(n) if n > i64::from(i32::MAX) => errs.push(FieldError::invalid(field, v, "should be less than or equal to 2147483647")),
                Some(_) => {}
                None => errs.push(FieldError::invalid(field, v, "should be an integer")),
            }
        }
        errs
    }
}

impl Strategy for CustomResource {
    fn info(&self) -> &ResourceInfo {
        &self.info
    }

    fn has_status(&self) -> bool {
        self.status
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    /// Upstream: any change outside `metadata` bumps the generation (status excluded when the
    /// status subresource is on: the update kept the old one).
    fn bumps_generation(&self, new: &Value, old: &Value) -> bool {
        let strip = |v: &Value| {
            let mut m = v.as_object().cloned().unwrap_or_default();
            m.remove("metadata");
            m
        };
        strip(new) != strip(old)
    }

    fn validate_name(&self, name: &str) -> Vec<String> {
        match name {
            "." => vec!["may not be '.'".into()],
            ".." => vec!["may not be '..'".into()],
            _ => {
                let mut out = Vec::new();
                for c in ['/', '%'] {
                    if name.contains(c) {
                        out.push(format!("may not contain '{c}'"));
                    }
                }
                out
            }
        }
    }

    fn default(&self, obj: &mut Value) {
        self.prune_and_default(obj);
    }

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
        self.prune_and_default(new);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = self.validate_common(obj);
        if let Some(schema) = &self.schema {
            errs.extend(schema.validate(obj));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate_common(new);
        if let Some(schema) = &self.schema {
            errs.extend(schema.validate_update(new, old));
        }
        errs
    }

    fn prune_unknown(&self, obj: &mut Value) -> Option<Vec<String>> {
        Some(self.prune_and_default(obj))
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        if !self.selectable.iter().any(|f| f == field) {
            return None;
        }
        Some(match obj.pointer(&pointer(field)) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        })
    }

    /// Creates are refused while the CRD is being deleted (upstream's handler answers 405).
    fn allocate(&self, _ctx: &Ctx<'_>, _obj: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
        if self.terminating && old.is_none() {
            return Err(ApiError::method_not_allowed("create not allowed while custom resource definition is terminating"));
        }
        Ok(())
    }

    fn scale(&self) -> Option<ScaleSpec> {
        self.scale.as_ref().map(|_| ScaleSpec { selector_is_label_selector: false })
    }

    fn scale_paths(&self) -> Option<&ScalePaths> {
        self.scale.as_ref()
    }

    fn storage_info(&self) -> Option<&'static ResourceInfo> {
        self.storage
    }

    fn storage_prefix(&self) -> Option<&str> {
        Some(&self.prefix)
    }

    fn convert_to_storage(&self, obj: Value) -> Value {
        match self.storage {
            Some(s) => conversion::none(obj, &s.api_version()),
            None => obj,
        }
    }

    fn convert_from_storage(&self, obj: Value) -> Value {
        conversion::none(obj, &self.info.api_version())
    }

    fn deprecation_warning(&self) -> Option<&'static str> {
        self.deprecation
    }

    fn conversion_webhook(&self) -> Option<&Arc<conversion::Webhook>> {
        self.webhook.as_ref()
    }

    fn storage_identity(&self) -> u64 {
        self.identity
    }

    fn apply_definitions(&self) -> Option<(&serde_json::Map<String, Value>, &str)> {
        let (defs, name) = self.apply_defs.get_or_init(|| kaji_openapi::apply_definitions(self.info.group, self.info.version, self.info.kind, self.raw_schema.as_ref()));
        Some((defs, name.as_str()))
    }

    fn table(&self, items: &[Value], now: jiff::Timestamp) -> Option<(Vec<Value>, Vec<Vec<Value>>)> {
        Some((self.printer.definitions(), items.iter().map(|obj| self.printer.cells(obj, now)).collect()))
    }

    fn supports_strategic_merge_patch(&self) -> bool {
        false
    }

    fn is_custom(&self) -> bool {
        true
    }
}
