//! The shape of the generated message table (`schema.rs`) and lookups into it.

use crate::schema::{GROUPS, MESSAGES};

/// What a field holds on the wire (and so how it turns into JSON).
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // the generator knows every proto scalar; the 1.33 APIs use no uint32/uint64/float
pub(crate) enum Kind {
    Str,
    /// Base64 in JSON, as Go's encoding/json writes `[]byte`.
    Bytes,
    Bool,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Double,
    Float,
    /// The full protobuf name of the message, such as `k8s.io.api.core.v1.PodSpec`.
    Message(&'static str),
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Shape {
    Single,
    Repeated,
    /// `map<string, kind>`: repeated entries with key = 1 and value = 2.
    Map,
}

#[derive(Debug)]
pub(crate) struct Field {
    pub number: u32,
    /// The JSON name from the Go struct tag (which may differ from the proto name).
    pub json: &'static str,
    pub kind: Kind,
    pub shape: Shape,
    /// A non-pointer Go scalar with `omitempty`: its zero value is left out of the JSON.
    pub omit_zero: bool,
    /// A Go field embedded with `json:",inline"`: its fields join the parent object.
    pub inline: bool,
}

#[derive(Debug)]
pub(crate) struct Message {
    pub name: &'static str,
    /// A Go named slice (`type ExtraValue []string`): JSON is the `items` array itself.
    pub array: bool,
    /// Sorted by field number.
    pub fields: &'static [Field],
}

impl Message {
    pub fn field(&self, number: u32) -> Option<&'static Field> {
        let fields: &'static [Field] = self.fields;
        fields.binary_search_by_key(&number, |f| f.number).ok().map(|i| &fields[i])
    }
}

pub(crate) fn message(name: &str) -> Option<&'static Message> {
    MESSAGES.binary_search_by(|m| m.name.cmp(name)).ok().map(|i| &MESSAGES[i])
}

const META_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";

/// The message for `kind` in `apiVersion`. Kinds every group version registers from meta/v1
/// (DeleteOptions, Status, ...) are found there when the group's own package lacks them.
pub(crate) fn message_for_kind(api_version: &str, kind: &str) -> Option<&'static Message> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let own = GROUPS
        .iter()
        .find(|(g, v, _)| *g == group && *v == version)
        .and_then(|(_, _, package)| message(&format!("{package}.{kind}")));
    own.or_else(|| message(&format!("{META_V1}.{kind}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_closed() {
        for pair in MESSAGES.windows(2) {
            assert!(pair[0].name < pair[1].name, "{} before {}", pair[0].name, pair[1].name);
        }
        for m in MESSAGES {
            for pair in m.fields.windows(2) {
                assert!(pair[0].number < pair[1].number, "{} fields out of order", m.name);
            }
            for f in m.fields {
                if let Kind::Message(name) = f.kind {
                    assert!(message(name).is_some(), "{}.{} refers to missing {name}", m.name, f.json);
                }
            }
        }
    }

    #[test]
    fn kinds_resolve() {
        assert_eq!(message_for_kind("apps/v1", "Deployment").map(|m| m.name), Some("k8s.io.api.apps.v1.Deployment"));
        assert_eq!(message_for_kind("v1", "Secret").map(|m| m.name), Some("k8s.io.api.core.v1.Secret"));
        assert_eq!(
            message_for_kind("apps/v1", "DeleteOptions").map(|m| m.name),
            Some("k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions")
        );
        assert_eq!(
            message_for_kind("apiextensions.k8s.io/v1", "CustomResourceDefinition").map(|m| m.name),
            Some("k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition")
        );
        assert!(message_for_kind("example.com/v1", "Widget").is_none());
    }
}
