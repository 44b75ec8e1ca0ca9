//! kaji-patch: the four PATCH flavours of the Kubernetes API server, as pure functions over
//! `serde_json::Value`. No I/O.
//!
//! Where to start:
//! - [`PatchType::from_content_type`] maps a request's `Content-Type` to the flavour.
//! - [`json_patch`] (RFC 6902, `json_patch.rs`) and [`merge_patch`] (RFC 7386,
//!   `merge_patch.rs`) behave like `evanphx/json-patch` v4, which upstream uses.
//! - [`strategic_merge_patch`] (`strategic.rs`) follows
//!   `k8s.io/apimachinery/pkg/util/strategicpatch`; it reads the patch strategy and merge
//!   key of each field from OpenAPI definitions through `schema.rs`.
//! - [`apply`] is server-side apply: the `managedFields` bookkeeping of
//!   `sigs.k8s.io/structured-merge-diff` (field sets in `apply/fieldset.rs`).
//!
//! Errors are [`PatchError`]s whose variant says which HTTP status upstream answers with.

pub mod apply;
mod gofmt;
mod json_patch;
mod merge_patch;
mod schema;
mod strategic;

pub use json_patch::json_patch;
pub use merge_patch::merge_patch;
pub use strategic::strategic_merge_patch;

/// The patch flavours the API server accepts, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`.
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// The patch type for a `Content-Type` header value; parameters such as
    /// `; charset=utf-8` are ignored.
    #[must_use]
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let media = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }

    /// The canonical `Content-Type` of this patch type.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Why a patch could not be applied. The message is upstream's, word for word where we
/// know it; the variant tells the API server which Status to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch body is malformed (400 `BadRequest`), e.g. a JSON patch that is not a
    /// list, or a strategic merge patch with a bad `$retainKeys` list.
    #[error("{0}")]
    BadRequest(String),
    /// The patch is well formed but does not apply to this object (422, reason
    /// `Invalid` without causes), e.g. a failed JSON patch `test`.
    #[error("{0}")]
    Unprocessable(String),
    /// More JSON patch operations than upstream allows (413).
    #[error("{0}")]
    TooLarge(String),
    /// Any other strategic merge patch error. Upstream does not classify these and
    /// answers 500 with the message, e.g. a list item without its merge key.
    #[error("{0}")]
    Internal(String),
}

impl PatchError {
    /// The HTTP status code upstream answers with.
    #[must_use]
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::BadRequest(_) => 400,
            PatchError::Unprocessable(_) => 422,
            PatchError::TooLarge(_) => 413,
            PatchError::Internal(_) => 500,
        }
    }

    /// The message for the Status.
    #[must_use]
    pub fn message(&self) -> &str {
        match self {
            PatchError::BadRequest(m)
            | PatchError::Unprocessable(m)
            | PatchError::TooLarge(m)
            | PatchError::Internal(m) => m,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            PatchType::from_content_type("application/json-patch+json"),
            Some(PatchType::Json)
        );
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::from_content_type("Application/Strategic-Merge-Patch+JSON"),
            Some(PatchType::StrategicMerge)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml"),
            Some(PatchType::Apply)
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
        for t in [
            PatchType::Json,
            PatchType::Merge,
            PatchType::StrategicMerge,
            PatchType::Apply,
        ] {
            assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
        }
    }

    #[test]
    fn error_status() {
        assert_eq!(PatchError::BadRequest("x".into()).status_code(), 400);
        assert_eq!(PatchError::Unprocessable("x".into()).status_code(), 422);
        assert_eq!(PatchError::Internal("y".into()).message(), "y");
    }
}
