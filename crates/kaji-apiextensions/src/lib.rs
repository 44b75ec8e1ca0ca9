//! CustomResourceDefinitions without I/O (upstream's apiextensions-apiserver, the parts that are
//! pure functions): `crd` validates CRD objects (names, versions, structural schemas), `schema`
//! compiles a version's `openAPIV3Schema` into a [`Structural`] that validates, prunes and
//! defaults custom objects, `cel` evaluates `x-kubernetes-validations` rules.
//! The API server (`kaji-apiserver`'s `apiextensions` module) serves custom resources with it.

pub mod cel;
pub mod crd;
pub mod schema;

pub use schema::Structural;
