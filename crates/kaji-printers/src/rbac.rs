//! rbac.authorization.k8s.io: RoleBinding, ClusterRoleBinding. Role and ClusterRole have no
//! printer upstream and get the default table.

use jiff::Timestamp;
use serde_json::Value;

use crate::Column;
use crate::docs;
use crate::value::{age, arr_at, name, str_at};

pub(crate) fn columns(kind: &str) -> Option<&'static [Column]> {
    Some(match kind {
        "RoleBinding" => ROLE_BINDING,
        "ClusterRoleBinding" => CLUSTER_ROLE_BINDING,
        _ => return None,
    })
}

pub(crate) fn row(kind: &str, obj: &Value, now: Timestamp) -> Option<Vec<Value>> {
    matches!(kind, "RoleBinding" | "ClusterRoleBinding").then(|| binding(obj, now))
}

const ROLE_BINDING: &[Column] = &[
    Column::NAME,
    Column::new("Role", "string", docs::ROLE_BINDING_ROLE_REF),
    Column::AGE,
    Column::wide("Users", "string", "Users in the roleBinding"),
    Column::wide("Groups", "string", "Groups in the roleBinding"),
    Column::wide(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the roleBinding",
    ),
];

const CLUSTER_ROLE_BINDING: &[Column] = &[
    Column::NAME,
    Column::new("Role", "string", docs::CLUSTER_ROLE_BINDING_ROLE_REF),
    Column::AGE,
    Column::wide("Users", "string", "Users in the clusterRoleBinding"),
    Column::wide("Groups", "string", "Groups in the clusterRoleBinding"),
    Column::wide(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the clusterRoleBinding",
    ),
];

fn binding(obj: &Value, now: Timestamp) -> Vec<Value> {
    let role = format!(
        "{}/{}",
        str_at(obj, &["roleRef", "kind"]),
        str_at(obj, &["roleRef", "name"])
    );
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut service_accounts = Vec::new();
    for subject in arr_at(obj, &["subjects"]) {
        let subject_name = str_at(subject, &["name"]);
        match str_at(subject, &["kind"]) {
            "ServiceAccount" => service_accounts.push(format!(
                "{}/{subject_name}",
                str_at(subject, &["namespace"])
            )),
            "User" => users.push(subject_name.to_owned()),
            "Group" => groups.push(subject_name.to_owned()),
            _ => {}
        }
    }
    vec![
        name(obj),
        role.into(),
        age(obj, now),
        users.join(", ").into(),
        groups.join(", ").into(),
        service_accounts.join(", ").into(),
    ]
}

#[cfg(test)]
mod tests {
    use crate::testutil::{cells, headers};
    use serde_json::json;

    #[test]
    fn bindings() {
        let want = [
            "Name",
            "Role",
            "Age",
            "Users*",
            "Groups*",
            "ServiceAccounts*",
        ];
        assert_eq!(headers("rbac.authorization.k8s.io", "RoleBinding"), want);
        assert_eq!(
            headers("rbac.authorization.k8s.io", "ClusterRoleBinding"),
            want
        );
        let rb = json!({"metadata": {"name": "read-pods", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "User", "name": "jane"}, {"kind": "User", "name": "joe"},
                         {"kind": "Group", "name": "devs"}, {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}]});
        assert_eq!(
            cells("rbac.authorization.k8s.io", "RoleBinding", &rb),
            [
                json!("read-pods"),
                json!("Role/pod-reader"),
                json!("60m"),
                json!("jane, joe"),
                json!("devs"),
                json!("tools/ci")
            ]
        );
        let crb = json!({"metadata": {"name": "cluster-admin"}, "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "Group", "name": "system:masters"}]});
        assert_eq!(
            cells("rbac.authorization.k8s.io", "ClusterRoleBinding", &crb)[1..6],
            [
                json!("ClusterRole/cluster-admin"),
                json!("<unknown>"),
                json!(""),
                json!("system:masters"),
                json!("")
            ]
        );
    }

    #[test]
    fn roles_use_the_default_table() {
        assert_eq!(
            headers("rbac.authorization.k8s.io", "Role"),
            ["Name", "Created At"]
        );
        assert_eq!(
            headers("rbac.authorization.k8s.io", "ClusterRole"),
            ["Name", "Created At"]
        );
        let role = json!({"metadata": {"name": "pod-reader", "creationTimestamp": "2024-05-01T11:00:00Z"}});
        assert_eq!(
            cells("rbac.authorization.k8s.io", "Role", &role),
            [json!("pod-reader"), json!("2024-05-01T11:00:00Z")]
        );
    }
}
