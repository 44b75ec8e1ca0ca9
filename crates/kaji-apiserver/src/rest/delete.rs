//! delete and deletecollection: preconditions, graceful deletion, finalizers and the propagation
//! policy (recorded as the orphan / foregroundDeletion finalizers for the garbage collector).

use super::read::{Filter, fetch, list_page};
use super::write::{Outcome, Part, guaranteed_update};
use super::{Call, Reply};
use crate::objects::{self, meta_mut, meta_str};
use crate::registry::Ctx;
use kaji_api::ApiError;
use kaji_api::status::success_status;
use serde_json::{Value, json};

struct DeleteOptions {
    grace: Option<i64>,
    propagation: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    /// `orphanDependents: false` given explicitly: the answer for a pending deletion is then
    /// 202 Accepted rather than 200 (upstream keeps 200 otherwise for old clients).
    cascade_requested: bool,
}

fn options(call: &Call<'_>) -> Result<DeleteOptions, ApiError> {
    let body: Value = if call.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else if call.body.starts_with(kaji_protobuf::MAGIC) {
        kaji_protobuf::decode(&call.body).map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    } else {
        serde_json::from_slice(&call.body)
            .or_else(|_| serde_yaml::from_slice(&call.body))
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    let mut grace = body.get("gracePeriodSeconds").and_then(Value::as_i64);
    if let Some(g) = call.param("gracePeriodSeconds").and_then(|g| g.parse().ok()) {
        grace = Some(g);
    }
    let mut propagation = body.get("propagationPolicy").and_then(Value::as_str).map(str::to_string);
    if let Some(p) = call.param("propagationPolicy") {
        propagation = Some(p.to_string());
    }
    let orphan = body.get("orphanDependents").and_then(Value::as_bool).or_else(|| call.param("orphanDependents").map(|o| o == "true"));
    if propagation.is_none()
        && let Some(o) = orphan
    {
        propagation = Some(if o { "Orphan" } else { "Background" }.to_string());
    }
    if let Some(p) = &propagation
        && !["Orphan", "Background", "Foreground"].contains(&p.as_str())
    {
        return Err(ApiError::invalid("meta.k8s.io", "DeleteOptions", "", vec![kaji_api::FieldError::not_supported("propagationPolicy", p, &["Foreground", "Background", "Orphan"])]));
    }
    Ok(DeleteOptions {
        grace,
        propagation,
        cascade_requested: orphan == Some(false),
        uid: body.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_string),
        resource_version: body.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(str::to_string),
    })
}

pub async fn delete(call: Call<'_>) -> Result<Reply, ApiError> {
    let opts = options(&call)?;
    delete_one(&call, &opts).await
}

/// Deletes one object. Like upstream's conditional delete, a write that lands between the read
/// and the removal (a controller's status update) does not fail the delete: it starts again on
/// the fresh object, checking the caller's preconditions against it.
async fn delete_one(call: &Call<'_>, opts: &DeleteOptions) -> Result<Reply, ApiError> {
    // Upstream retries without a bound (the request's timeout ends it); so do we, up to 30 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match delete_attempt(call, opts).await? {
            Some(reply) => return Ok(reply),
            None if std::time::Instant::now() < deadline => tokio::task::yield_now().await,
            None => {
                let info = call.strategy.info();
                return Err(ApiError::stale(info.group, info.plural, call.req.name.as_deref().unwrap_or_default()));
            }
        }
    }
}

/// One try: `None` when the object changed under us before it could be removed.
async fn delete_attempt(call: &Call<'_>, opts: &DeleteOptions) -> Result<Option<Reply>, ApiError> {
    let info = call.strategy.info();
    let name = call.req.name.clone().unwrap_or_default();
    let current = fetch(call).await?;
    let uid = meta_str(&current, "uid").unwrap_or_default().to_string();
    if let Some(want) = &opts.uid
        && *want != uid
    {
        return Err(ApiError::conflict(info.group, info.plural, &name, &format!("Precondition failed: UID in precondition: {want}, UID in object meta: {uid}")));
    }
    let rv = meta_str(&current, "resourceVersion").unwrap_or_default().to_string();
    if let Some(want) = &opts.resource_version
        && *want != rv
    {
        return Err(ApiError::conflict(info.group, info.plural, &name, &format!("Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}")));
    }
    let graceful = call.strategy.graceful_delete(&current).map(|default| opts.grace.unwrap_or(default).max(0));
    let propagation = opts.propagation.clone();
    let strategy = call.strategy.clone();
    let now = jiff::Timestamp::now();
    // First mark the object (finalizers, deletionTimestamp); it goes at once only if nothing waits.
    // A system change: the generic update rules would keep the old (absent) deletionTimestamp.
    let (marked, outcome) = guaranteed_update(call, Part::System, false, |cur| {
        let mut next = cur.clone();
        let already = objects::is_deleting(cur);
        let mut finalizers = objects::finalizers(cur);
        match propagation.as_deref() {
            Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => finalizers.push("orphan".into()),
            Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => finalizers.push("foregroundDeletion".into()),
            _ => {}
        }
        let stays = strategy.prepare_for_delete(&mut next);
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
        return Ok(Some(Reply::ok(success_status(info.group, info.plural, &name, &uid))));
    }
    if objects::is_deleting(&marked) {
        let code = if opts.cascade_requested { 202 } else { 200 };
        return Ok(Some(Reply::Json { code, body: call.output.object(call.strategy.as_ref(), marked), warnings: Vec::new() }));
    }
    if call.dry_run() {
        return Ok(Some(Reply::ok(call.output.object(call.strategy.as_ref(), marked))));
    }
    let key = call.strategy.key(call.namespace(), &name);
    let rev: i64 = meta_str(&marked, "resourceVersion").and_then(|s| s.parse().ok()).unwrap_or(0);
    match call.server.store.delete(&key, Some(rev)).await {
        Ok(_) => {
            call.strategy.release(&Ctx { allocators: &call.server.allocators, admission: &call.server.admission }, &marked, None);
            Ok(Some(Reply::ok(success_status(info.group, info.plural, &name, &uid))))
        }
        Err(kaji_store::StoreError::NotFound { .. }) => Err(ApiError::not_found(info.group, info.plural, &name)),
        Err(kaji_store::StoreError::Conflict { .. }) => Ok(None),
        Err(e) => Err(crate::store_error(e)),
    }
}

pub async fn delete_collection(call: Call<'_>) -> Result<Reply, ApiError> {
    let opts = options(&call)?;
    let filter = Filter::from_call(&call)?;
    let page = list_page(&call, &filter).await?;
    let info = call.strategy.info();
    let mut deleted = Vec::new();
    for obj in page.items {
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let ns = meta_str(&obj, "namespace").map(str::to_string);
        let mut req = call.req.clone();
        req.name = Some(name);
        req.namespace = ns;
        let one = Call {
            server: call.server,
            strategy: call.strategy,
            req: &req,
            params: call.params,
            output: &super::Output::plain(),
            content_type: call.content_type,
            user_agent: call.user_agent,
            body: bytes::Bytes::new(),
        };
        match delete_one(&one, &opts).await {
            Ok(_) => deleted.push(obj),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let meta = json!({"resourceVersion": page.revision.to_string()});
    Ok(Reply::ok(call.output.list(call.strategy.as_ref(), &info.list_kind(), &info.api_version(), meta, deleted)))
}
