//! Conversion between the versions of a custom kind (apiextensions-apiserver's `conversion`).
//!
//! - `None` (upstream's `nopConverter`): the object is the same in every version, only its
//!   `apiVersion` changes ([`none`]).
//! - `Webhook` (upstream's `webhookConverter`, [`Webhook`]): a ConversionReview (v1, or v1beta1
//!   when that is all the CRD lists) is posted over TLS to the CRD's `spec.conversion.webhook`
//!   client config, through the admission webhooks' client (a URL, or a Service's endpoint
//!   verified as `<name>.<namespace>.svc` with the caBundle). Objects already in the desired
//!   version are not sent; a list goes as one review. The answer is checked as upstream does
//!   (uid, result, count, apiVersion, kind, name/namespace/uid kept) and the converted objects
//!   keep the original metadata but for labels and annotations. Failures are upstream's texts,
//!   answered as 500 Internal errors.
//!
//! The generic store converts on the way in (to the storage version) and out (to the served
//! version) with the async functions of `dyn Strategy` (`registry::convert_stored`,
//! `encode_for_storage`), so a webhook call never blocks a thread.

use crate::ApiServer;
use crate::admission::webhook::{Target, client_config, post_to};
use kaji_api::ApiError;
use serde_json::{Map, Value, json};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The object as `api_version` (`<group>/<version>`), with nothing else changed.
pub fn none(mut obj: Value, api_version: &str) -> Value {
    if let Some(m) = obj.as_object_mut()
        && m.get("apiVersion").and_then(Value::as_str) != Some(api_version)
    {
        m.insert("apiVersion".into(), json!(api_version));
    }
    obj
}

/// Upstream's webhook conversion timeout (not configurable for conversion webhooks).
const TIMEOUT: Duration = Duration::from_secs(30);

/// A CRD's conversion webhook.
pub struct Webhook {
    server: Weak<ApiServer>,
    /// `<plural>.<group>`, for logs.
    crd: String,
    target: Target,
    ca_bundle: Option<Vec<u8>>,
    /// Send a v1 review (else v1beta1: the CRD lists only that).
    v1: bool,
}

impl Webhook {
    /// The webhook of `crd` when its `spec.conversion.strategy` is `Webhook`.
    pub fn of(server: &Arc<ApiServer>, crd: &Value) -> Option<Arc<Webhook>> {
        let conversion = crd.pointer("/spec/conversion")?;
        if conversion.get("strategy").and_then(Value::as_str) != Some("Webhook") {
            return None;
        }
        let hook = conversion.get("webhook")?;
        let (target, ca_bundle) = client_config(hook.get("clientConfig").unwrap_or(&Value::Null));
        let versions: Vec<&str> = hook.get("conversionReviewVersions").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        Some(Arc::new(Webhook {
            server: Arc::downgrade(server),
            crd: crate::objects::meta_str(crd, "name").unwrap_or_default().to_string(),
            target,
            ca_bundle,
            v1: versions.contains(&"v1") || !versions.contains(&"v1beta1"),
        }))
    }

    /// Converts `objects` to `desired` (`<group>/<version>`): those already there are kept as they
    /// are, the others go to the webhook in one review. Boxed: posting reads Services and
    /// endpoints through the generic store, which converts through here (for other kinds), so
    /// the future's type would otherwise contain itself.
    pub fn convert<'a>(&'a self, objects: Vec<Value>, desired: &'a str) -> Pin<Box<dyn Future<Output = Result<Vec<Value>, ApiError>> + Send + 'a>> {
        Box::pin(self.convert_now(objects, desired))
    }

    async fn convert_now(&self, mut objects: Vec<Value>, desired: &str) -> Result<Vec<Value>, ApiError> {
        let todo: Vec<usize> = (0..objects.len()).filter(|&i| objects[i].get("apiVersion").and_then(Value::as_str) != Some(desired)).collect();
        if todo.is_empty() {
            return Ok(objects);
        }
        // Upstream names the kind of what it converts: the first object's group/version, kind.
        let gvk = {
            let o = &objects[todo[0]];
            let av = o.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
            let kind = o.get("kind").and_then(Value::as_str).unwrap_or_default();
            format!("{av}, Kind={kind}")
        };
        let failed = |e: String| ApiError::internal(format!("conversion webhook for {gvk} failed: {e}"));
        let server = self.server.upgrade().ok_or_else(|| failed("the API server is shutting down".into()))?;
        let uid = uuid::Uuid::new_v4().to_string();
        let sent: Vec<Value> = todo.iter().map(|&i| objects[i].clone()).collect();
        let api_version = if self.v1 { "apiextensions.k8s.io/v1" } else { "apiextensions.k8s.io/v1beta1" };
        let review = json!({
            "kind": "ConversionReview",
            "apiVersion": api_version,
            "request": {"uid": uid, "desiredAPIVersion": desired, "objects": sent},
        });
        tracing::debug!(crd = %self.crd, objects = sent.len(), desired, "calling the conversion webhook");
        let answer = post_to(&server, &self.crd, &self.target, self.ca_bundle.as_deref(), &review, TIMEOUT).await.map_err(failed)?;
        let converted = response_objects(&answer, api_version, &uid).map_err(failed)?;
        if converted.len() != sent.len() {
            return Err(ApiError::internal(format!("conversion webhook for {gvk} returned {} objects, expected {}", converted.len(), sent.len())));
        }
        let (group_version, kind) = (desired, sent[0].get("kind").and_then(Value::as_str).unwrap_or_default());
        for (n, (&i, mut out)) in todo.iter().zip(converted).enumerate() {
            let invalid = |e: String| ApiError::internal(format!("conversion webhook for {gvk} returned invalid converted object at index {n}: {e}"));
            let got_av = out.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
            if got_av != group_version {
                return Err(invalid(format!("invalid groupVersion (expected {group_version}, received {got_av})")));
            }
            let got_kind = out.get("kind").and_then(Value::as_str).unwrap_or_default();
            if got_kind != kind {
                return Err(invalid(format!("invalid kind (expected {kind}, received {got_kind})")));
            }
            let original = &objects[i];
            for (field, what) in [("name", "name"), ("namespace", "namespace"), ("uid", "UID")] {
                let (e, a) = (crate::objects::meta_str(original, field).unwrap_or_default(), crate::objects::meta_str(&out, field).unwrap_or_default());
                if e != a {
                    return Err(invalid(format!("must have the same {what}: {e} != {a}")));
                }
            }
            restore_object_meta(original, &mut out).map_err(|e| ApiError::internal(format!("conversion webhook for {gvk} returned invalid metadata in object at index {n}: {e}")))?;
            objects[i] = out;
        }
        Ok(objects)
    }
}

/// The converted objects of a ConversionReview answer (upstream's
/// `getConvertedObjectsFromResponse`).
fn response_objects(answer: &Value, api_version: &str, uid: &str) -> Result<Vec<Value>, String> {
    let (av, kind) = (answer.get("apiVersion").and_then(Value::as_str).unwrap_or_default(), answer.get("kind").and_then(Value::as_str).unwrap_or_default());
    if av != api_version || kind != "ConversionReview" {
        let version = api_version.rsplit('/').next().unwrap_or_default();
        return Err(format!("expected webhook response of apiextensions.k8s.io/{version}, Kind=ConversionReview, got {av}, Kind={kind}"));
    }
    let response = answer.get("response").filter(|r| r.is_object()).ok_or("no response provided")?;
    let got = response.get("uid").and_then(Value::as_str).unwrap_or_default();
    if got != uid {
        return Err(format!("expected response.uid={uid:?}, got {got:?}"));
    }
    let status = response.pointer("/result/status").and_then(Value::as_str).unwrap_or_default();
    if status != "Success" {
        if let Some(m) = response.pointer("/result/message").and_then(Value::as_str).filter(|m| !m.is_empty()) {
            return Err(m.to_string());
        }
        return Err(format!("response.result.status was '{status}', not 'Success'"));
    }
    Ok(response.get("convertedObjects").and_then(Value::as_array).cloned().unwrap_or_default())
}

/// Upstream's `restoreObjectMeta`: the converted object gets the original's metadata, but the
/// labels and annotations the webhook returned (string values, valid keys).
fn restore_object_meta(original: &Value, converted: &mut Value) -> Result<(), String> {
    let returned = match converted.get("metadata") {
        None => return Err("missing metadata in converted object".into()),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => return Err(format!("invalid metadata of type {} in converted object", type_name(other))),
    };
    let mut meta: Map<String, Value> = original.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    for field in ["labels", "annotations"] {
        match returned.get(field) {
            None | Some(Value::Null) => {
                meta.remove(field);
            }
            Some(Value::Object(m)) => {
                if let Some((k, v)) = m.iter().find(|(_, v)| !v.is_string()) {
                    return Err(format!("metadata.{field}[{k}] must be a string, but is {} in converted object", type_name(v)));
                }
                meta.insert(field.to_string(), Value::Object(m.clone()));
            }
            Some(other) => return Err(format!("invalid metadata.{field} of type {} in converted object", type_name(other))),
        }
    }
    let check = json!({"metadata": {"labels": meta.get("labels").cloned().unwrap_or(json!({})), "annotations": meta.get("annotations").cloned().unwrap_or(json!({}))}});
    let errs: Vec<String> = crate::registry::meta::validate_object_meta(&check)
        .into_iter()
        .filter(|e| e.field.starts_with("metadata.labels") || e.field.starts_with("metadata.annotations"))
        .map(|e| format!("{}: {}", e.field, e.detail))
        .collect();
    if !errs.is_empty() {
        return Err(if errs.len() == 1 { errs[0].clone() } else { format!("[{}]", errs.join(", ")) });
    }
    if let Some(m) = converted.as_object_mut() {
        m.insert("metadata".into(), Value::Object(meta));
    }
    Ok(())
}

/// Go's type names in upstream's messages.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_rewrites_only_the_api_version() {
        let obj = json!({"apiVersion": "example.com/v1", "kind": "Hoge", "spec": {"a": 1}});
        assert_eq!(none(obj, "example.com/v2"), json!({"apiVersion": "example.com/v2", "kind": "Hoge", "spec": {"a": 1}}));
    }

    #[test]
    fn answers_are_checked_as_upstream() {
        let ok = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview", "response": {"uid": "u1", "result": {"status": "Success"}, "convertedObjects": [{"a": 1}]}});
        assert_eq!(response_objects(&ok, "apiextensions.k8s.io/v1", "u1").unwrap(), vec![json!({"a": 1})]);
        assert_eq!(response_objects(&ok, "apiextensions.k8s.io/v1", "u2").unwrap_err(), "expected response.uid=\"u2\", got \"u1\"");
        let failed = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview", "response": {"uid": "u1", "result": {"status": "Failure", "message": "cannot convert"}}});
        assert_eq!(response_objects(&failed, "apiextensions.k8s.io/v1", "u1").unwrap_err(), "cannot convert");
        let silent = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview", "response": {"uid": "u1", "result": {}}});
        assert_eq!(response_objects(&silent, "apiextensions.k8s.io/v1", "u1").unwrap_err(), "response.result.status was '', not 'Success'");
        let empty = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview"});
        assert_eq!(response_objects(&empty, "apiextensions.k8s.io/v1", "u1").unwrap_err(), "no response provided");
        assert_eq!(
            response_objects(&json!({"hello": 1}), "apiextensions.k8s.io/v1", "u1").unwrap_err(),
            "expected webhook response of apiextensions.k8s.io/v1, Kind=ConversionReview, got , Kind="
        );
    }

    #[test]
    fn metadata_is_the_original_but_labels_and_annotations() {
        let original = json!({"metadata": {"name": "a", "uid": "x", "labels": {"l": "1"}, "annotations": {"n": "1"}, "generation": 3}});
        let mut converted = json!({"metadata": {"name": "a", "uid": "x", "labels": {"l": "2", "m": "3"}, "generation": 9, "finalizers": ["f"]}});
        restore_object_meta(&original, &mut converted).unwrap();
        assert_eq!(converted, json!({"metadata": {"name": "a", "uid": "x", "labels": {"l": "2", "m": "3"}, "generation": 3}}));
        let mut bad = json!({"metadata": {"labels": {"l": 1}}});
        assert_eq!(restore_object_meta(&original, &mut bad).unwrap_err(), "metadata.labels[l] must be a string, but is float64 in converted object");
        let mut none = json!({"spec": {}});
        assert_eq!(restore_object_meta(&original, &mut none).unwrap_err(), "missing metadata in converted object");
    }
}
