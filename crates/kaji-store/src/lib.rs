//! kaji-store
