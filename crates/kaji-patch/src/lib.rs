//! kaji-patch
