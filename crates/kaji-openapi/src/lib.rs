//! OpenAPI for Kaji's built-in kinds: the documents kubectl reads (`/openapi/v2` as JSON and as
//! gnostic protobuf, `/openapi/v3` and its per-group documents) and the schema walks behind
//! `fieldValidation`.
//!
//! Where to start: [`types`] lists the built-in kinds (add a kind there); [`definitions()`]
//! turns their k8s-openapi schemas into upstream-shaped definitions; `routes` says which
//! operations a served resource has, and [`v2()`] / [`v3_group`] render them. Field validation
//! lives in [`validation`].

mod custom;
mod definitions;
mod patch_facts;
mod protobuf;
mod routes;
pub mod types;
mod v2;
mod v3;
pub mod validation;

pub use custom::{CustomDocuments, CustomResourceVersion, apply_definitions};
pub use definitions::{definition_name, definitions};
pub use protobuf::v2_protobuf;
pub use types::builtin_kinds;
pub use v2::{KUBERNETES_VERSION, v2};
pub use v3::{v3_document, v3_group, v3_index};
pub use validation::{duplicate_fields, prune_unknown_fields, unknown_fields};

#[cfg(test)]
mod test_support;
