//! Custom resources served from CustomResourceDefinitions (upstream's apiextensions-apiserver):
//! the CRD controller that establishes names and versions, the strategy of a custom kind
//! (schema validation, pruning and defaulting from `kaji_apiextensions`), printer columns and
//! the custom kinds' OpenAPI.

pub mod openapi;
pub mod printer;
pub mod controller;
pub mod conversion;
pub mod strategy;
