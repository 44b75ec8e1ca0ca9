//! What the API server knows about a kind before it sees any object of it: where it lives in the
//! URL space and which verbs and subresources it serves. Discovery, OpenAPI and routing all read
//! these descriptions; each kind's strategy file in `kaji-apiserver` provides one.

/// One served resource (a kind at one group/version), as discovery describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; "" for the core ("legacy") group served under `/api/v1`.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Lower-case plural used in URLs, e.g. "deployments".
    pub plural: &'static str,
    /// Lower-case singular, e.g. "deployment".
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Verbs of the main resource, as discovery lists them ("create", "delete", "deletecollection",
    /// "get", "list", "patch", "update", "watch").
    pub verbs: &'static [&'static str],
    /// Subresources served ("status", "scale", "binding", "eviction", ...).
    pub subresources: &'static [&'static str],
}

/// The verbs of an ordinary read-write resource.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceInfo {
    /// `group/version`, or just `version` for the core group (the `apiVersion` field's value).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The list kind, e.g. "PodList".
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// URL prefix of the group/version: `/api/v1` or `/apis/<group>/<version>`.
    pub fn group_version_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// Resource name as it appears in a Status error's `details.group`/`kind` and in messages:
    /// `pods`, `deployments.apps`.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}
