//! kaji-api
