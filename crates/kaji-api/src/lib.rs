//! Kaji's object model, with no I/O: where to start reading is [`resource::ResourceInfo`], the
//! description of a served kind that routing, discovery and OpenAPI share.
pub mod resource;

pub use resource::{ALL_VERBS, ResourceInfo};
