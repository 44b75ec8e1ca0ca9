//! events.k8s.io/v1: Event, printed exactly like a core/v1 Event (see `core::event`).

use jiff::Timestamp;
use serde_json::Value;

use crate::Column;
use crate::core::event;

pub(crate) fn columns(kind: &str) -> Option<&'static [Column]> {
    (kind == "Event").then_some(event::COLUMNS)
}

pub(crate) fn row(kind: &str, obj: &Value, now: Timestamp) -> Option<Vec<Value>> {
    (kind == "Event").then(|| event::row(&event::from_events_v1(obj), now))
}
