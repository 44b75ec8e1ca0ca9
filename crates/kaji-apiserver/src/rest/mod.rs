//! The generic REST handler: every verb for every kind. It decodes a request (body, query,
//! content type) into calls of the generic store (`registry::store`) and encodes what comes
//! back (`output`: objects, tables, partial metadata; `watch`: event streams).
//! Reading order: `dispatch` picks the verb; `read` (get, list), `write` (create, update, patch),
//! `apply`, `delete`, `watch` and `subresource` (status, scale, binding, eviction, finalize, log;
//! `connect` hands exec, attach and portforward to `crate::proxy`).

mod apply;
mod delete;
mod output;
mod read;
mod subresource;
mod watch;
mod write;

pub use output::Output;
pub use subresource::connect;
pub use write::decode_body;
pub use watch::WatchBody;

use crate::ApiServer;
use crate::registry::Strategy;
use crate::request::ResourceRequest;
use bytes::Bytes;
use http::Method;
use kaji_api::ApiError;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// What a handler answers with, before it becomes an HTTP response.
pub enum Reply {
    Json { code: u16, body: Value, warnings: Vec<String> },
    Watch(WatchBody),
    /// A JSON body made piece by piece while it is sent (a list, from the stored bytes).
    Chunks { code: u16, body: Box<dyn Iterator<Item = Bytes> + Send + Sync> },
    /// A 200 JSON body whose first piece is made and the rest still being made (a whole list,
    /// written inside the store's read while the first pieces are sent).
    Stream { head: Bytes, rest: tokio::sync::mpsc::UnboundedReceiver<Bytes> },
}

impl Reply {
    pub fn ok(body: Value) -> Reply {
        Reply::Json { code: 200, body, warnings: Vec::new() }
    }
}

/// The parts of a request the verbs need.
pub struct Call<'a> {
    pub server: &'a Arc<ApiServer>,
    pub strategy: &'a Arc<dyn Strategy>,
    pub req: &'a ResourceRequest,
    pub params: &'a HashMap<String, String>,
    pub output: &'a Output,
    pub content_type: &'a str,
    pub user_agent: &'a str,
    pub body: Bytes,
}

impl Call<'_> {
    pub fn param(&self, k: &str) -> Option<&str> {
        self.params.get(k).map(String::as_str)
    }

    pub fn dry_run(&self) -> bool {
        self.params.get("dryRun").is_some_and(|v| v == "All")
    }

    /// The field manager: `?fieldManager=`, else the user agent's program name (upstream default).
    pub fn field_manager(&self) -> String {
        match self.param("fieldManager") {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => self.user_agent.split('/').next().filter(|s| !s.is_empty()).unwrap_or("unknown").to_string(),
        }
    }

    pub fn namespace(&self) -> Option<&str> {
        if self.strategy.info().namespaced { self.req.namespace.as_deref() } else { None }
    }

    /// The generic store of the kind the URL names.
    pub fn store(&self) -> crate::registry::store::Store<'_> {
        crate::registry::store::Store::of(self.server, self.strategy)
    }

    /// dryRun and the field manager of a create, update or patch.
    pub fn write_options(&self) -> crate::registry::store::WriteOptions {
        crate::registry::store::WriteOptions { dry_run: self.dry_run(), field_manager: Some(self.field_manager()) }
    }

    /// dryRun of a change the server computes (binding, scale, finalize): no managedFields entry.
    pub fn system_write_options(&self) -> crate::registry::store::WriteOptions {
        crate::registry::store::WriteOptions { dry_run: self.dry_run(), field_manager: None }
    }
}

pub async fn dispatch(call: Call<'_>, method: &Method) -> Result<Reply, ApiError> {
    let info = call.strategy.info();
    if info.namespaced && call.req.namespace.is_none() && call.req.name.is_some() {
        return Err(ApiError::no_route(""));
    }
    if !info.namespaced && call.req.namespace.is_some() {
        return Err(ApiError::no_route(""));
    }
    // metrics.k8s.io is not stored: its provider answers (crate::metrics).
    if info.group == crate::metrics::GROUP {
        return crate::metrics::dispatch(call, method).await;
    }
    // authentication.k8s.io's reviews are not stored either (registry::authentication).
    if info.group == crate::registry::authentication::GROUP {
        return crate::registry::authentication::dispatch(call, method).await;
    }
    // authorization.k8s.io's reviews are not stored either (registry::authorization).
    if info.group == crate::registry::authorization::GROUP {
        return crate::registry::authorization::dispatch(call, method).await;
    }
    if let Some(sub) = call.req.subresource.clone() {
        return subresource::dispatch(call, method, &sub).await;
    }
    // Upstream ValidateDryRun: "All" is the only value; anything else must not become a real write.
    if let Some(v) = call.param("dryRun").filter(|v| !v.is_empty() && *v != "All") {
        let options = match method.as_str() {
            "POST" => "CreateOptions",
            "PUT" => "UpdateOptions",
            "PATCH" => "PatchOptions",
            "DELETE" => "DeleteOptions",
            _ => "ListOptions",
        };
        if options != "ListOptions" {
            return Err(ApiError::invalid("meta.k8s.io", options, "", vec![kaji_api::FieldError::not_supported("dryRun", v, &["All"])]));
        }
    }
    let watch = call.req.watch_path || call.param("watch").is_some_and(|w| w == "true" || w == "1");
    match (method.as_str(), call.req.name.is_some()) {
        ("GET", _) if watch => watch::watch(call).await,
        ("GET", true) => read::get(call).await,
        ("GET", false) => read::list(call).await,
        ("POST", false) => write::create(call).await,
        ("PUT", true) => write::update(call).await,
        ("PATCH", true) => write::patch(call).await,
        ("DELETE", true) => delete::delete(call).await,
        ("DELETE", false) => delete::delete_collection(call).await,
        _ => Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource")),
    }
}
