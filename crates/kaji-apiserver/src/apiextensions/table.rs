//! Table output of a custom kind: the version's printer columns (`printer::PrinterColumns`).

use serde_json::{Value, json};

/// (column definitions, the cells of each item) of `items` for a CRD version.
pub fn table(version: &Value, items: &[Value], now: jiff::Timestamp) -> (Vec<Value>, Vec<Vec<Value>>) {
    let printer = Fallback::new(version);
    (printer.definitions(), items.iter().map(|obj| printer.cells(obj, now)).collect())
}

/// NAME and AGE only, until `printer` serves additionalPrinterColumns.
struct Fallback;

impl Fallback {
    fn new(_version: &Value) -> Fallback {
        Fallback
    }

    fn definitions(&self) -> Vec<Value> {
        vec![
            json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names", "priority": 0}),
            json!({"name": "Age", "type": "date", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata", "priority": 0}),
        ]
    }

    fn cells(&self, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
        vec![obj.pointer("/metadata/name").cloned().unwrap_or(json!("")), obj.pointer("/metadata/creationTimestamp").cloned().unwrap_or(Value::Null)]
    }
}
