//! Kaji's object model, with no I/O. Where to start: [`resource::ResourceInfo`] describes a served
//! kind (routing, discovery and OpenAPI share it); [`status::ApiError`] is every error the API
//! answers with; [`selector`] holds label and field selectors; [`validation`] upstream's name rules.
pub mod cidr;
pub mod duration;
pub mod jwt;
pub mod qos;
pub mod quota;
pub mod quantity;
pub mod resource;
pub mod selector;
pub mod status;
pub mod validation;

pub use resource::{ALL_VERBS, ResourceInfo};
pub use status::{ApiError, FieldError};
