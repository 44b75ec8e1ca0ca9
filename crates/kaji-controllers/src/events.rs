//! Recording core/v1 Events (what `kubectl describe` shows), with upstream's reasons and its
//! aggregation of repeats into a count (being written).
