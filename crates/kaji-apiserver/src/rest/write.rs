//! create, update and patch: decoding, field validation, the generic metadata rules, the
//! strategy's defaults and validation, managedFields, and the compare-and-swap write loop.

use super::read::fetch;
use super::{Call, Reply};
use crate::objects::{self, meta_mut, meta_str};
use crate::registry::Ctx;
use kaji_api::{ApiError, FieldError};
use kaji_patch::PatchType;
use serde_json::{Value, json};

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

/// Parses the request body as JSON or YAML into an object.
pub fn decode_body(call: &Call<'_>) -> Result<Value, ApiError> {
    let ct = call.content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let parsed: Result<Value, String> = match ct.as_str() {
        "application/yaml" | "application/apply-patch+yaml" | "text/yaml" => {
            serde_yaml::from_slice::<Value>(&call.body).map_err(|e| format!("yaml: {e}"))
        }
        "application/json" | "" | "application/json-patch+json" | "application/merge-patch+json"
        | "application/strategic-merge-patch+json" | "*/*" => {
            serde_json::from_slice::<Value>(&call.body).map_err(|e| format!("json: {e}"))
        }
        // Stock kubectl's typed commands (create deployment, drain's evictions, ...) send protobuf.
        kaji_protobuf::MEDIA_TYPE => kaji_protobuf::decode(&call.body).map_err(|e| format!("protobuf: {e}")),
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    parsed.map_err(|e| {
        let info = call.strategy.info();
        ApiError::bad_request(format!("{} in version {:?} cannot be handled as a {}: {e}", info.kind, info.version, info.kind))
    })
}

/// The body must be an object of this kind; missing apiVersion/kind are filled in.
fn check_kind(call: &Call<'_>, obj: &mut Value) -> Result<(), ApiError> {
    let info = call.strategy.info();
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(format!("{} in version {:?} cannot be handled as a {}: the body is not an object", info.kind, info.version, info.kind)));
    };
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), json!(info.kind));
        }
        Some(k) if k != info.kind => {
            return Err(ApiError::bad_request(format!(
                "{k} in version {:?} cannot be handled as a {}: the object's kind does not match the resource",
                info.version, info.kind
            )));
        }
        _ => {}
    }
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), json!(info.api_version()));
        }
        Some(v) if v != info.api_version() => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({})",
                info.api_version()
            )));
        }
        _ => {}
    }
    if map.get("metadata").is_some_and(|m| !m.is_object() && !m.is_null()) {
        return Err(ApiError::bad_request(format!("{} in version {:?} cannot be handled as a {}: metadata must be an object", info.kind, info.version, info.kind)));
    }
    Ok(())
}

/// fieldValidation=Strict rejects unknown fields, Warn (the default) warns; both then drop them,
/// as decoding into upstream's Go types does.
fn field_validation(call: &Call<'_>, obj: &mut Value) -> Result<Vec<String>, ApiError> {
    let info = call.strategy.info();
    let Some(def) = kaji_openapi::definition_name(info.group, info.version, info.kind) else {
        return Ok(Vec::new());
    };
    let unknown = kaji_openapi::unknown_fields(def, obj);
    let mut texts: Vec<String> = Vec::new();
    let json_body = !call.content_type.contains("yaml");
    if json_body {
        texts.extend(kaji_openapi::duplicate_fields(def, &call.body).iter().map(|d| format!("duplicate field {d:?}")));
    }
    texts.extend(unknown.iter().map(|u| format!("unknown field {u:?}")));
    if let Some(e) = kaji_openapi::types::type_error(info.group, info.version, info.kind, obj) {
        return Err(ApiError::bad_request(format!("{} in version {:?} cannot be handled as a {}: {e}", info.kind, info.version, info.kind)));
    }
    if texts.is_empty() {
        return Ok(Vec::new());
    }
    match call.param("fieldValidation").unwrap_or("Warn") {
        "Strict" => Err(ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: strict decoding error: {}",
            info.kind,
            info.version,
            info.kind,
            texts.join(", ")
        ))),
        "Ignore" => {
            kaji_openapi::prune_unknown_fields(def, obj);
            Ok(Vec::new())
        }
        _ => {
            kaji_openapi::prune_unknown_fields(def, obj);
            Ok(texts)
        }
    }
}

/// Name, ObjectMeta and the kind's own rules.
fn validate(call: &Call<'_>, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let info = call.strategy.info();
    let name = meta_str(obj, "name").unwrap_or_default();
    let mut errs = Vec::new();
    for m in call.strategy.validate_name(name) {
        errs.push(FieldError::invalid("metadata.name", &json!(name), &m));
    }
    errs.extend(crate::registry::meta::validate_object_meta(obj));
    match old {
        None => errs.extend(call.strategy.validate(obj)),
        Some(old) => errs.extend(call.strategy.validate_update(obj, old)),
    }
    if errs.is_empty() { Ok(()) } else { Err(ApiError::invalid(info.group, info.kind, name, errs)) }
}

/// Namespaced objects need their namespace to exist and not be terminating (upstream's
/// NamespaceLifecycle admission).
async fn admit_namespace(call: &Call<'_>, name: &str) -> Result<(), ApiError> {
    let Some(ns) = call.namespace() else { return Ok(()) };
    let ns_info = crate::registry::core_namespace_info();
    let kv = call.server.store.get(&objects::key(ns_info, None, ns)).await.map_err(crate::store_error)?;
    match kv.map(|kv| objects::decode(&kv)) {
        None => Err(ApiError::not_found("", "namespaces", ns)),
        Some(n) if objects::is_deleting(&n) || n.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating") => {
            let info = call.strategy.info();
            let mut e = ApiError::forbidden(format!(
                "{} {name:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                info.qualified_plural()
            ));
            e.name = Some(name.to_string());
            e.kind = Some(info.plural.to_string());
            Err(e)
        }
        Some(_) => Ok(()),
    }
}

/// Priority admission (upstream's `plugin/pkg/admission/priority`), for pods at create: the
/// priority and preemption policy come from the pod's PriorityClass, or from the global default
/// class when it names none (priority 0 without one). A class that does not exist, or a priority
/// in the pod that disagrees with its class, is refused with 403 as upstream.
async fn admit_priority(call: &Call<'_>, obj: &mut Value) -> Result<(), ApiError> {
    let info = call.strategy.info();
    if !(info.group.is_empty() && info.plural == "pods") {
        return Ok(());
    }
    let Some(classes) = call.server.registry.get("scheduling.k8s.io", "v1", "priorityclasses") else { return Ok(()) };
    let pod_name = meta_str(obj, "name").unwrap_or_default().to_string();
    let forbidden = |msg: String| {
        let mut e = ApiError::forbidden(format!("pods {pod_name:?} is forbidden: {msg}"));
        e.name = Some(pod_name.clone());
        e.kind = Some("pods".into());
        e
    };
    let wanted = obj.pointer("/spec/priorityClassName").and_then(Value::as_str).unwrap_or_default().to_string();
    let class = if wanted.is_empty() {
        // The global default: with several, the one of lowest value (upstream).
        let prefix = objects::prefix(classes.info(), None);
        let page = call.server.store.list(&prefix, kaji_store::ListOptions::default()).await.map_err(crate::store_error)?;
        page.items
            .iter()
            .map(objects::decode)
            .filter(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
            .min_by_key(|c| c.get("value").and_then(Value::as_i64).unwrap_or(0))
    } else {
        let kv = call.server.store.get(&objects::key(classes.info(), None, &wanted)).await.map_err(crate::store_error)?;
        match kv {
            Some(kv) => Some(objects::decode(&kv)),
            None => return Err(forbidden(format!("no PriorityClass with name {wanted} was found"))),
        }
    };
    let value = class.as_ref().and_then(|c| c.get("value")).and_then(Value::as_i64).unwrap_or(0);
    let policy = class
        .as_ref()
        .and_then(|c| c.get("preemptionPolicy"))
        .and_then(Value::as_str)
        .unwrap_or("PreemptLowerPriority")
        .to_string();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64)
        && given != value
    {
        return Err(forbidden(format!(
            "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
        )));
    }
    if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
        && given != policy
    {
        return Err(forbidden(format!(
            "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
        )));
    }
    spec.insert("priority".into(), json!(value));
    spec.insert("preemptionPolicy".into(), json!(policy));
    if wanted.is_empty()
        && let Some(name) = class.as_ref().and_then(|c| c.pointer("/metadata/name")).and_then(Value::as_str)
    {
        spec.insert("priorityClassName".into(), json!(name));
    }
    Ok(())
}

fn record_managed_fields(call: &Call<'_>, old: Option<&Value>, new: &mut Value) {
    let info = call.strategy.info();
    if let Some(def) = kaji_openapi::definition_name(info.group, info.version, info.kind) {
        // Managed-fields bookkeeping never fails a write; a problem is logged.
        if let Err(e) = kaji_patch::apply::update_managed_fields(
            old,
            new,
            &call.field_manager(),
            "Update",
            &info.api_version(),
            &objects::now_rfc3339(),
            kaji_openapi::definitions(),
            def,
        ) {
            tracing::warn!(error = %e, "recording managedFields");
        }
    }
}

pub async fn create(call: Call<'_>) -> Result<Reply, ApiError> {
    let mut obj = decode_body(&call)?;
    check_kind(&call, &mut obj)?;
    let warnings = field_validation(&call, &mut obj)?;
    if let Some(ns) = call.namespace() {
        match meta_str(&obj, "namespace") {
            Some(b) if !b.is_empty() && b != ns => {
                return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
            }
            _ => {
                meta_mut(&mut obj).insert("namespace".into(), json!(ns));
            }
        }
    } else {
        meta_mut(&mut obj).remove("namespace");
    }
    create_object(&call, obj, warnings, true).await
}

/// Stores a new object; `record_fields` is false when server-side apply already set managedFields.
pub async fn create_object(call: &Call<'_>, mut obj: Value, warnings: Vec<String>, record_fields: bool) -> Result<Reply, ApiError> {
    let info = call.strategy.info();
    let strategy = call.strategy;
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
        if record_fields {
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
    strategy.admit(&Ctx { allocators: &call.server.allocators, admission: &call.server.admission }, &mut obj);
    admit_priority(call, &mut obj).await?;
    validate(call, &obj, None)?;
    let name = meta_str(&obj, "name").unwrap_or_default().to_string();
    admit_namespace(call, &name).await?;
    if record_fields {
        record_managed_fields(call, None, &mut obj);
    }
    let ctx = Ctx { allocators: &call.server.allocators, admission: &call.server.admission };
    if call.dry_run() {
        return Ok(Reply::Json { code: 201, body: call.output.object(strategy.as_ref(), obj), warnings });
    }
    strategy.allocate(&ctx, &mut obj, None)?;
    let key = strategy.key(call.namespace(), &name);
    match call.server.store.create(&key, strategy.encode(&obj)).await {
        Ok(kv) => {
            objects::set_rv(&mut obj, kv.mod_revision);
            Ok(Reply::Json { code: 201, body: call.output.object(strategy.as_ref(), obj), warnings })
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

/// Turns a desired object into the one to store on update: system metadata and (for `Main`)
/// status are kept from `old`, defaults and the strategy's rules applied, generation bumped when
/// the spec changed. Returns None when nothing would change.
fn prepare_update(call: &Call<'_>, mut new: Value, old: &Value, part: Part) -> Result<Option<Value>, ApiError> {
    let strategy = call.strategy;
    if part == Part::System {
        return Ok((new != *old).then_some(new));
    }
    if part == Part::Status {
        let status = new.get("status").cloned();
        let mut merged = old.clone();
        match status {
            Some(s) => merged["status"] = s,
            None => {
                merged.as_object_mut().map(|m| m.remove("status"));
            }
        }
        new = merged;
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
        if strategy.tracks_generation() && new.get("spec") != old.get("spec") {
            let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
            meta_mut(&mut new).insert("generation".into(), json!(g));
        }
    }
    // The resourceVersion is the store's; compare without it and without managedFields.
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        v
    };
    if strip(&new) == strip(old) {
        return Ok(None);
    }
    validate(call, &new, Some(old))?;
    Ok(Some(new))
}

/// What a guaranteed update did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Updated,
    /// The update finished a deletion (last finalizer gone, no grace period left).
    Deleted,
}

/// The compare-and-swap loop (upstream GuaranteedUpdate): read, compute, write at the read
/// revision, and start again if somebody else wrote in between.
pub async fn guaranteed_update<F>(call: &Call<'_>, part: Part, record_fields: bool, mut mutate: F) -> Result<(Value, Outcome), ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    let info = call.strategy.info();
    let name = call.req.name.as_deref().unwrap_or_default();
    let key = call.strategy.key(call.namespace(), name);
    let ctx = Ctx { allocators: &call.server.allocators, admission: &call.server.admission };
    for _ in 0..32 {
        let current = fetch(call).await?;
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
        let Some(mut next) = prepare_update(call, desired, &current, part)? else {
            return Ok((current, Outcome::Unchanged));
        };
        if record_fields {
            record_managed_fields(call, Some(&current), &mut next);
        }
        if call.dry_run() {
            return Ok((next, Outcome::Unchanged));
        }
        // An object being deleted goes away when its last finalizer is removed.
        let grace_left = next.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0) > 0;
        if objects::is_deleting(&next) && call.strategy.ready_to_remove(&next) && !grace_left {
            match call.server.store.delete(&key, Some(rev)).await {
                Ok(kv) => {
                    call.strategy.release(&ctx, &next, None);
                    objects::set_rv(&mut next, kv.mod_revision);
                    return Ok((next, Outcome::Deleted));
                }
                // Changed or deleted since the read: the next read tells which (404 if gone).
                Err(kaji_store::StoreError::Conflict { .. } | kaji_store::StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(crate::store_error(e)),
            }
        }
        call.strategy.allocate(&ctx, &mut next, Some(&current))?;
        match call.server.store.update(&key, call.strategy.encode(&next), rev).await {
            Ok(kv) => {
                call.strategy.release(&ctx, &current, Some(&next));
                objects::set_rv(&mut next, kv.mod_revision);
                return Ok((next, Outcome::Updated));
            }
            Err(kaji_store::StoreError::Conflict { .. } | kaji_store::StoreError::NotFound { .. }) => {
                call.strategy.release(&ctx, &next, Some(&current));
                continue;
            }
            Err(e) => {
                call.strategy.release(&ctx, &next, Some(&current));
                return Err(crate::store_error(e));
            }
        }
    }
    Err(ApiError::conflict(info.group, info.plural, name, "too many concurrent writers; please try again"))
}

pub async fn update(call: Call<'_>) -> Result<Reply, ApiError> {
    update_part(call, Part::Main).await
}

pub async fn update_part(call: Call<'_>, part: Part) -> Result<Reply, ApiError> {
    let mut body = decode_body(&call)?;
    check_kind(&call, &mut body)?;
    let warnings = field_validation(&call, &mut body)?;
    let info = call.strategy.info();
    let name = call.req.name.clone().unwrap_or_default();
    if let Some(n) = meta_str(&body, "name").filter(|n| *n != name) {
        return Err(ApiError::bad_request(format!("the name of the object ({n}) does not match the name on the URL ({name})")));
    }
    if let Some(ns) = call.namespace()
        && meta_str(&body, "namespace").is_some_and(|b| !b.is_empty() && b != ns)
    {
        return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
    }
    let exists = fetch(&call).await;
    if let Err(e) = &exists
        && e.code == 404
        && part == Part::Main
    {
        if call.strategy.allow_create_on_update() {
            meta_mut(&mut body).insert("name".into(), json!(name));
            if let Some(ns) = call.namespace() {
                meta_mut(&mut body).insert("namespace".into(), json!(ns));
            }
            meta_mut(&mut body).remove("resourceVersion");
            return create_object(&call, body, warnings, true).await;
        }
        return Err(ApiError::not_found(info.group, info.plural, &name));
    }
    let (obj, _) = guaranteed_update(&call, part, true, |_| Ok(body.clone())).await?;
    Ok(Reply::Json { code: 200, body: call.output.object(call.strategy.as_ref(), obj), warnings })
}

pub async fn patch(call: Call<'_>) -> Result<Reply, ApiError> {
    patch_part(call, Part::Main).await
}

/// Applies a JSON, merge, strategic-merge or apply patch to the current object.
pub async fn patch_part(call: Call<'_>, part: Part) -> Result<Reply, ApiError> {
    let ct = call.content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let Some(kind) = PatchType::from_content_type(&ct) else {
        return Err(ApiError::unsupported_media_type(&ct));
    };
    let info = call.strategy.info();
    let def = kaji_openapi::definition_name(info.group, info.version, info.kind).unwrap_or_default();
    let defs = kaji_openapi::definitions();
    let patch = decode_body(&call)?;
    if kind == PatchType::Apply {
        return super::apply::apply(call, part, patch).await;
    }
    let name = call.req.name.clone().unwrap_or_default();
    let mut warnings = Vec::new();
    let (obj, _) = guaranteed_update(&call, part, true, |current| {
        let mut patched = match kind {
            PatchType::Json => kaji_patch::json_patch(current, &patch),
            PatchType::Merge => Ok(kaji_patch::merge_patch(current, &patch)),
            PatchType::StrategicMerge => kaji_patch::strategic_merge_patch(current, &patch, defs, def),
            PatchType::Apply => unreachable!("handled above"),
        }
        .map_err(|e| patch_error(&e.to_string(), info.group, info.kind, &name))?;
        // A patch may not rename the object or move it.
        if meta_str(&patched, "name") != Some(name.as_str()) {
            return Err(ApiError::bad_request("metadata.name: the name of the object may not be changed by a patch"));
        }
        let unknown = kaji_openapi::unknown_fields(def, &patched);
        if !unknown.is_empty() {
            let texts: Vec<String> = unknown.iter().map(|u| format!("unknown field {u:?}")).collect();
            if call.param("fieldValidation") == Some("Strict") {
                return Err(ApiError::bad_request(format!("strict decoding error: {}", texts.join(", "))));
            }
            if call.param("fieldValidation") != Some("Ignore") {
                warnings = texts;
            }
            kaji_openapi::prune_unknown_fields(def, &mut patched);
        }
        Ok(patched)
    })
    .await?;
    Ok(Reply::Json { code: 200, body: call.output.object(call.strategy.as_ref(), obj), warnings })
}

/// Patch failures: a malformed patch is a 400, one that cannot apply to this object a 422.
fn patch_error(msg: &str, group: &str, kind: &str, name: &str) -> ApiError {
    if msg.contains("test") || msg.contains("missing") || msg.contains("path") {
        ApiError::invalid(group, kind, name, vec![FieldError { reason: "FieldValueInvalid", field: String::new(), detail: msg.to_string() }])
    } else {
        ApiError::bad_request(msg.to_string())
    }
}
