//! Errors as Kubernetes `Status` objects, worded as kube-apiserver words them, so that kubectl
//! prints `Error from server (NotFound): pods "x" not found` and friends.
//! Upstream: k8s.io/apimachinery/pkg/api/errors and pkg/util/validation/field.

use serde_json::{Value, json};
use std::fmt;

/// One field error of an Invalid (422) response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// `FieldValueRequired`, `FieldValueInvalid`, ...
    pub reason: &'static str,
    /// Path such as `spec.template.spec.containers[0].name`.
    pub field: String,
    /// The full message, e.g. `Required value` or `Invalid value: "x": must be ...`.
    pub detail: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        let detail = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        FieldError { reason: "FieldValueRequired", field: field.into(), detail }
    }

    /// `Invalid value: <value>: <detail>`; strings are quoted, numbers and booleans are not.
    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            Value::Null => "null".to_string(),
            // Go's %#v of a []string, as upstream prints e.g. spec.clusterIPs.
            Value::Array(items) if items.iter().all(Value::is_string) => {
                let quoted: Vec<String> = items.iter().filter_map(Value::as_str).map(|s| format!("{s:?}")).collect();
                format!("[]string{{{}}}", quoted.join(", "))
            }
            Value::Object(_) | Value::Array(_) => "\"object\"".to_string(),
            other => other.to_string(),
        };
        let detail = if detail.is_empty() {
            format!("Invalid value: {shown}")
        } else {
            format!("Invalid value: {shown}: {detail}")
        };
        FieldError { reason: "FieldValueInvalid", field: field.into(), detail }
    }

    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        FieldError {
            reason: "FieldValueNotSupported",
            field: field.into(),
            detail: format!("Unsupported value: {value:?}: supported values: {}", list.join(", ")),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        FieldError { reason: "FieldValueForbidden", field: field.into(), detail: format!("Forbidden: {detail}") }
    }

    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        FieldError { reason: "FieldValueDuplicate", field: field.into(), detail: format!("Duplicate value: {shown}") }
    }

    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        FieldError {
            reason: "FieldValueTooLong",
            field: field.into(),
            detail: format!("Too long: may not be more than {max} bytes"),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.detail)
    }
}

/// An error the API answers with: an HTTP code, a `reason`, a message and optional details.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub name: Option<String>,
    pub group: Option<String>,
    /// `details.kind`: the plural resource for most errors, the Kind for Invalid.
    pub kind: Option<String>,
    pub causes: Vec<FieldError>,
    pub retry_after_seconds: Option<u32>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// Resource names in messages: `pods`, `deployments.apps`.
fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() { plural.to_string() } else { format!("{plural}.{group}") }
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            name: None,
            group: None,
            kind: None,
            causes: Vec::new(),
            retry_after_seconds: None,
        }
    }

    pub fn with_details(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.group = Some(group.to_string());
        self.kind = Some(kind.to_string());
        self.name = Some(name.to_string());
        self
    }

    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        ApiError::new(404, "NotFound", format!("{} {name:?} not found", qualified(group, plural)))
            .with_details(group, plural, name)
    }

    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        ApiError::new(409, "AlreadyExists", format!("{} {name:?} already exists", qualified(group, plural)))
            .with_details(group, plural, name)
    }

    pub fn conflict(group: &str, plural: &str, name: &str, why: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} {name:?}: {why}", qualified(group, plural)),
        )
        .with_details(group, plural, name)
    }

    /// The optimistic-concurrency conflict of an update with a stale resourceVersion.
    pub fn stale(group: &str, plural: &str, name: &str) -> Self {
        Self::conflict(
            group,
            plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 Invalid: `Pod "x" is invalid: spec.containers: Required value` (several errors are
    /// printed as a bracketed list, as upstream's aggregate does).
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<FieldError>) -> Self {
        let joined = match causes.len() {
            1 => causes[0].to_string(),
            _ => format!("[{}]", causes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
        };
        let qualified_kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let mut e = ApiError::new(422, "Invalid", format!("{qualified_kind} {name:?} is invalid: {joined}"))
            .with_details(group, kind, name);
        e.causes = causes;
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(403, "Forbidden", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    /// 404 for a URL that names no resource.
    pub fn no_route(path: &str) -> Self {
        let _ = path;
        ApiError::new(404, "NotFound", "the server could not find the requested resource")
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        ApiError::new(406, "NotAcceptable", message)
    }

    /// 410 for a watch or list from a compacted resourceVersion.
    pub fn gone(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        ApiError::new(413, "RequestEntityTooLarge", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf; got {content_type:?}"))
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, "InternalError", format!("Internal error occurred: {}", message.into()))
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        ApiError::new(504, "Timeout", message)
    }

    /// The `Status` object sent as the response body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if self.name.is_some() || self.kind.is_some() || !self.causes.is_empty() || self.retry_after_seconds.is_some() {
            let mut details = serde_json::Map::new();
            if let Some(name) = &self.name {
                details.insert("name".into(), json!(name));
            }
            if let Some(group) = &self.group
                && !group.is_empty()
            {
                details.insert("group".into(), json!(group));
            }
            if let Some(kind) = &self.kind {
                details.insert("kind".into(), json!(kind));
            }
            if !self.causes.is_empty() {
                let causes: Vec<Value> = self
                    .causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.detail, "field": c.field}))
                    .collect();
                details.insert("causes".into(), Value::Array(causes));
            }
            if let Some(s) = self.retry_after_seconds {
                details.insert("retryAfterSeconds".into(), json!(s));
            }
            status["details"] = Value::Object(details);
        }
        status
    }
}

/// A `Status` of success, as returned by some deletes.
pub fn success_status(group: &str, plural: &str, name: &str, uid: &str) -> Value {
    let mut details = json!({"name": name, "kind": plural, "uid": uid});
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_reads_like_upstream() {
        let e = ApiError::not_found("", "pods", "x");
        assert_eq!(e.message, "pods \"x\" not found");
        let e = ApiError::not_found("apps", "deployments", "web");
        assert_eq!(e.message, "deployments.apps \"web\" not found");
        assert_eq!(e.to_status()["details"]["group"], "apps");
    }

    #[test]
    fn invalid_string_list_is_shown_as_go_prints_it() {
        let e = FieldError::invalid("spec.clusterIPs", &json!(["10.96.0.5"]), "failed");
        assert_eq!(e.detail, "Invalid value: []string{\"10.96.0.5\"}: failed");
    }

    #[test]
    fn invalid_lists_causes() {
        let e = ApiError::invalid(
            "",
            "Pod",
            "x",
            vec![FieldError::required("spec.containers", ""), FieldError::invalid("metadata.name", &json!("A"), "bad")],
        );
        assert_eq!(
            e.message,
            "Pod \"x\" is invalid: [spec.containers: Required value, metadata.name: Invalid value: \"A\": bad]"
        );
        assert_eq!(e.to_status()["details"]["causes"][0]["field"], "spec.containers");
        let one = ApiError::invalid("apps", "Deployment", "d", vec![FieldError::required("spec.selector", "")]);
        assert_eq!(one.message, "Deployment.apps \"d\" is invalid: spec.selector: Required value");
    }
}
