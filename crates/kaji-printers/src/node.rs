//! node.k8s.io: RuntimeClass.

use jiff::Timestamp;
use serde_json::Value;

use crate::Column;
use crate::value::{age, name, str_at};

pub(crate) fn columns(kind: &str) -> Option<&'static [Column]> {
    (kind == "RuntimeClass").then_some(RUNTIME_CLASS)
}

pub(crate) fn row(kind: &str, obj: &Value, now: Timestamp) -> Option<Vec<Value>> {
    (kind == "RuntimeClass")
        .then(|| vec![name(obj), str_at(obj, &["handler"]).into(), age(obj, now)])
}

// Upstream looks the HANDLER description up under a key ObjectMeta does not have: it is empty.
const RUNTIME_CLASS: &[Column] = &[
    Column::NAME,
    Column::new("Handler", "string", ""),
    Column::AGE,
];

#[cfg(test)]
mod tests {
    use crate::testutil::{cells, headers};
    use serde_json::json;

    #[test]
    fn runtime_class() {
        assert_eq!(
            headers("node.k8s.io", "RuntimeClass"),
            ["Name", "Handler", "Age"]
        );
        let rc = json!({"metadata": {"name": "gvisor"}, "handler": "runsc"});
        assert_eq!(
            cells("node.k8s.io", "RuntimeClass", &rc),
            [json!("gvisor"), json!("runsc"), json!("<unknown>")]
        );
    }
}
