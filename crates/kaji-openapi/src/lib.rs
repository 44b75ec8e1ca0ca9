//! kaji-openapi
