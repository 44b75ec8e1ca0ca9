//! The RBAC authorizer (upstream plugin/pkg/auth/authorizer/rbac and
//! pkg/registry/rbac/validation's rule resolver) over an in-memory view of the Roles,
//! ClusterRoles, RoleBindings and ClusterRoleBindings.
//!
//! [`Rbac::load`] creates or reconciles the bootstrap policy and reads every RBAC object before
//! the server answers its first request; [`Rbac::start`] then follows the store's watch of the
//! `rbac.authorization.k8s.io` keys (the store publishes an event before it answers the writer,
//! so a binding just created is in the view before its creator hears back). Bindings are indexed
//! by subject (user name, group name; a ServiceAccount subject under the user name it stands
//! for), so a check visits only the bindings of the asking user and its groups.
//!
//! As upstream the authorizer never denies: no matching rule is `NoOpinion`, with an empty
//! reason unless a binding of the user points to a missing role.

pub mod rules;

use super::User;
use super::authz::{Attributes, Decision};
use crate::ApiServer;
use futures::StreamExt;
pub use rules::{PolicyRule, covers, rule_allows};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

pub const GROUP: &str = "rbac.authorization.k8s.io";
/// The store keeps the four kinds under `/registry/<plural>/` (`registry::keys`): no common
/// prefix of their own, so keys are matched below the root.
const PREFIX: &str = crate::registry::keys::ROOT;
const KINDS: [&str; 4] = ["roles", "rolebindings", "clusterroles", "clusterrolebindings"];

/// The key root of each of the four kinds.
fn kind_prefixes() -> [String; 4] {
    KINDS.map(|plural| crate::registry::keys::resource_prefix(GROUP, plural))
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct RoleRef {
    pub api_group: String,
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Subject {
    pub kind: String,
    pub api_group: String,
    pub name: String,
    pub namespace: String,
}

/// A RoleBinding (namespace set) or ClusterRoleBinding.
#[derive(Clone, Debug, Default)]
pub struct Binding {
    pub name: String,
    pub namespace: String,
    pub role_ref: RoleRef,
    pub subjects: Vec<Subject>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct BindingObject {
    role_ref: RoleRef,
    subjects: Vec<Subject>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RoleObject {
    rules: Option<Vec<PolicyRule>>,
}

pub fn parse_rules(obj: &Value) -> Vec<PolicyRule> {
    serde_json::from_value::<RoleObject>(obj.clone())
        .ok()
        .and_then(|r| r.rules)
        .unwrap_or_default()
}

pub fn parse_binding(obj: &Value) -> Binding {
    let b: BindingObject = serde_json::from_value(obj.clone()).unwrap_or_default();
    let meta = |k: &str| {
        obj.pointer(&format!("/metadata/{k}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Binding {
        name: meta("name"),
        namespace: meta("namespace"),
        role_ref: b.role_ref,
        subjects: b.subjects,
    }
}

/// The user name a ServiceAccount authenticates as.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// Which user name or group a subject of a binding in `namespace` stands for (upstream's
/// appliesToUser, turned into index keys; a ServiceAccount is its user name).
enum SubjectKey {
    User(String),
    Group(String),
}

fn subject_key(s: &Subject, namespace: &str) -> Option<SubjectKey> {
    match s.kind.as_str() {
        "User" => Some(SubjectKey::User(s.name.clone())),
        "Group" => Some(SubjectKey::Group(s.name.clone())),
        "ServiceAccount" => {
            let ns = if s.namespace.is_empty() {
                namespace
            } else {
                &s.namespace
            };
            (!ns.is_empty()).then(|| SubjectKey::User(service_account_user(ns, &s.name)))
        }
        _ => None,
    }
}

fn applies(user: &User, s: &Subject, namespace: &str) -> bool {
    match s.kind.as_str() {
        "User" => user.name == s.name,
        "Group" => user.in_group(&s.name),
        "ServiceAccount" => {
            let ns = if s.namespace.is_empty() {
                namespace
            } else {
                &s.namespace
            };
            !ns.is_empty()
                && user
                    .name
                    .strip_prefix("system:serviceaccount:")
                    .and_then(|r| r.split_once(':'))
                    .is_some_and(|(n, sa)| n == ns && sa == s.name)
        }
        _ => false,
    }
}

fn describe_subject(s: &Subject, namespace: &str) -> String {
    if s.kind == "ServiceAccount" {
        let ns = if s.namespace.is_empty() {
            namespace
        } else {
            &s.namespace
        };
        return format!("{} {:?}", s.kind, format!("{}/{ns}", s.name));
    }
    format!("{} {:?}", s.kind, s.name)
}

/// The RBAC objects of one namespace ("" for the cluster scope: ClusterRoles and
/// ClusterRoleBindings), with the bindings indexed by subject.
#[derive(Default)]
struct Scope {
    roles: HashMap<String, Arc<[PolicyRule]>>,
    bindings: HashMap<String, Arc<Binding>>,
    /// User name -> names of the bindings naming it.
    users: HashMap<String, BTreeSet<String>>,
    /// Group name -> names of the bindings naming it.
    groups: HashMap<String, BTreeSet<String>>,
}

impl Scope {
    fn index(&mut self, key: SubjectKey) -> (&mut HashMap<String, BTreeSet<String>>, String) {
        match key {
            SubjectKey::User(u) => (&mut self.users, u),
            SubjectKey::Group(g) => (&mut self.groups, g),
        }
    }
}

/// The in-memory view of the RBAC objects.
#[derive(Default)]
pub struct Index {
    scopes: HashMap<String, Scope>,
    /// The store revision the view reflects.
    pub revision: i64,
}

/// Where a rule came from (upstream's clusterRoleBindingDescriber / roleBindingDescriber).
pub struct Source<'a> {
    pub binding: &'a Binding,
    pub subject: &'a Subject,
}

impl std::fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.binding;
        if b.namespace.is_empty() {
            write!(
                f,
                "ClusterRoleBinding {:?} of {} {:?} to {}",
                b.name,
                b.role_ref.kind,
                b.role_ref.name,
                describe_subject(self.subject, "")
            )
        } else {
            write!(
                f,
                "RoleBinding {:?} of {} {:?} to {}",
                format!("{}/{}", b.name, b.namespace),
                b.role_ref.kind,
                b.role_ref.name,
                describe_subject(self.subject, &b.namespace)
            )
        }
    }
}

impl Index {
    fn scope(&mut self, namespace: &str) -> &mut Scope {
        self.scopes.entry(namespace.to_string()).or_default()
    }

    pub fn put_role(&mut self, namespace: &str, name: &str, rules: Vec<PolicyRule>) {
        self.scope(namespace)
            .roles
            .insert(name.to_string(), rules.into());
    }

    pub fn put_cluster_role(&mut self, name: &str, rules: Vec<PolicyRule>) {
        self.put_role("", name, rules);
    }

    pub fn remove_role(&mut self, namespace: &str, name: &str) {
        self.scope(namespace).roles.remove(name);
    }

    pub fn remove_cluster_role(&mut self, name: &str) {
        self.remove_role("", name);
    }

    /// Adds or replaces a binding (a ClusterRoleBinding when its namespace is empty).
    pub fn put_binding(&mut self, b: Binding) {
        self.remove_binding(&b.namespace, &b.name);
        let scope = self.scope(&b.namespace);
        for s in &b.subjects {
            if let Some(k) = subject_key(s, &b.namespace) {
                let (map, key) = scope.index(k);
                map.entry(key).or_default().insert(b.name.clone());
            }
        }
        scope.bindings.insert(b.name.clone(), Arc::new(b));
    }

    pub fn remove_binding(&mut self, namespace: &str, name: &str) {
        let scope = self.scope(namespace);
        let Some(old) = scope.bindings.remove(name) else {
            return;
        };
        for s in &old.subjects {
            if let Some(k) = subject_key(s, namespace) {
                let (map, key) = scope.index(k);
                if let Some(set) = map.get_mut(&key) {
                    set.remove(name);
                    if set.is_empty() {
                        map.remove(&key);
                    }
                }
            }
        }
    }

    /// The rules a binding's roleRef names, or upstream's error.
    fn role_rules(&self, role_ref: &RoleRef, namespace: &str) -> Result<&[PolicyRule], String> {
        match role_ref.kind.as_str() {
            "Role" => self
                .role(namespace, &role_ref.name)
                .ok_or_else(|| format!("role.{GROUP} {:?} not found", role_ref.name)),
            "ClusterRole" => self
                .cluster_role(&role_ref.name)
                .ok_or_else(|| format!("clusterrole.{GROUP} {:?} not found", role_ref.name)),
            k => Err(format!("unsupported role reference kind: {k:?}")),
        }
    }

    /// The rules of a ClusterRole, if it exists.
    pub fn cluster_role(&self, name: &str) -> Option<&[PolicyRule]> {
        self.role("", name)
    }

    /// The rules of a Role, if it exists.
    pub fn role(&self, namespace: &str, name: &str) -> Option<&[PolicyRule]> {
        self.scopes.get(namespace)?.roles.get(name).map(|r| &r[..])
    }

    /// Upstream's VisitRulesFor: every rule that applies to `user` in `namespace` (cluster-wide
    /// bindings first, then the namespace's), with errors for bindings whose role is missing.
    /// The visitor returns false to stop.
    pub fn visit_rules(
        &self,
        user: &User,
        namespace: &str,
        mut visit: impl FnMut(Option<(&Source<'_>, &PolicyRule)>, Option<String>) -> bool,
    ) {
        let scopes: &[&str] = if namespace.is_empty() {
            &[""]
        } else {
            &["", namespace]
        };
        for ns in scopes {
            let Some(scope) = self.scopes.get(*ns) else {
                continue;
            };
            // The bindings naming the user or one of its groups, each once, in name order.
            let mut names: Vec<&String> = Vec::new();
            let groups = user.groups.iter().filter_map(|g| scope.groups.get(g));
            for set in scope.users.get(&user.name).into_iter().chain(groups) {
                names.extend(set.iter());
            }
            names.sort_unstable();
            names.dedup();
            for name in names {
                let Some(b) = scope.bindings.get(name) else {
                    continue;
                };
                if !self.visit_binding(user, b, ns, &mut visit) {
                    return;
                }
            }
        }
    }

    fn visit_binding(
        &self,
        user: &User,
        b: &Binding,
        namespace: &str,
        visit: &mut impl FnMut(Option<(&Source<'_>, &PolicyRule)>, Option<String>) -> bool,
    ) -> bool {
        let Some(subject) = b.subjects.iter().find(|s| applies(user, s, namespace)) else {
            return true;
        };
        match self.role_rules(&b.role_ref, namespace) {
            Err(e) => visit(None, Some(e)),
            Ok(rules) => {
                let source = Source {
                    binding: b,
                    subject,
                };
                rules.iter().all(|r| visit(Some((&source, r)), None))
            }
        }
    }

    /// Upstream's RulesFor: every rule of `user` in `namespace`, and the resolution errors.
    pub fn rules_for(&self, user: &User, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        self.visit_rules(user, namespace, |r, e| {
            if let Some((_, r)) = r {
                rules.push(r.clone());
            }
            errors.extend(e);
            true
        });
        (rules, errors)
    }

    pub fn authorize(&self, a: &Attributes) -> (Decision, String) {
        let mut allowed = None;
        let mut errors: Vec<String> = Vec::new();
        self.visit_rules(&a.user, &a.namespace, |r, e| {
            if let Some((source, rule)) = r
                && rule_allows(a, rule)
            {
                allowed = Some(format!("RBAC: allowed by {source}"));
                return false;
            }
            if let Some(e) = e
                && !errors.contains(&e)
            {
                errors.push(e);
            }
            true
        });
        if let Some(reason) = allowed {
            return (Decision::Allow, reason);
        }
        (Decision::NoOpinion, aggregate_reason(&errors))
    }

    /// Applies a stored object under `key` (or its removal).
    fn apply(&mut self, key: &str, obj: Option<&Value>) {
        let Some(rest) = key.strip_prefix(PREFIX) else {
            return;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        match (parts.as_slice(), obj) {
            (["roles", ns, name], Some(o)) => self.put_role(ns, name, parse_rules(o)),
            (["roles", ns, name], None) => self.remove_role(ns, name),
            (["clusterroles", name], Some(o)) => self.put_cluster_role(name, parse_rules(o)),
            (["clusterroles", name], None) => self.remove_cluster_role(name),
            (["rolebindings", ns, name], Some(o)) => {
                let mut b = parse_binding(o);
                b.namespace = ns.to_string();
                b.name = name.to_string();
                self.put_binding(b)
            }
            (["rolebindings", ns, name], None) => self.remove_binding(ns, name),
            (["clusterrolebindings", name], Some(o)) => {
                let mut b = parse_binding(o);
                b.namespace.clear();
                b.name = name.to_string();
                self.put_binding(b)
            }
            (["clusterrolebindings", name], None) => self.remove_binding("", name),
            _ => {}
        }
    }
}

/// `RBAC: <errors>` as upstream prints its aggregate of resolution errors, or nothing.
fn aggregate_reason(errors: &[String]) -> String {
    match errors {
        [] => String::new(),
        [one] => format!("RBAC: {one}"),
        many => format!("RBAC: [{}]", many.join(", ")),
    }
}

/// The RBAC authorizer: a shared, current view of the RBAC objects.
#[derive(Default, Clone)]
pub struct Rbac {
    index: Arc<RwLock<Index>>,
}

impl Rbac {
    /// Creates or reconciles the bootstrap policy and loads every RBAC object (before the
    /// server serves; upstream's rbac/bootstrap-roles PostStartHook and informer sync).
    pub async fn load(server: &Arc<ApiServer>) -> anyhow::Result<()> {
        super::bootstrap_policy::reconcile(server).await?;
        let index = list_all(server).await?;
        *server
            .auth
            .rbac
            .index
            .write()
            .unwrap_or_else(|e| e.into_inner()) = index;
        Ok(())
    }

    /// Follows the store's changes of RBAC objects from the revision `load` read.
    pub fn start(server: &Arc<ApiServer>) {
        let store = server.store.clone();
        let rbac = server.auth.rbac.clone();
        tokio::spawn(async move { rbac.follow(store).await });
    }

    async fn follow(&self, store: Arc<dyn kaji_store::Store>) {
        let prefixes = kind_prefixes();
        loop {
            let from = self.read().revision;
            match store.watch(PREFIX, from).await {
                Ok(mut stream) => {
                    while let Some(ev) = stream.next().await {
                        match ev {
                            Ok(ev) if !prefixes.iter().any(|p| ev.kv.key.starts_with(p.as_str())) => {
                                self.write().revision = ev.revision();
                            }
                            Ok(ev) => {
                                let mut index = self.write();
                                let obj = match ev.event_type {
                                    kaji_store::EventType::Put => {
                                        serde_json::from_slice::<Value>(&ev.kv.value).ok()
                                    }
                                    kaji_store::EventType::Delete => None,
                                };
                                index.apply(&ev.kv.key, obj.as_ref());
                                index.revision = ev.revision();
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "RBAC watch ended");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "RBAC watch"),
            }
            // Relist (the history may be compacted) and watch again.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            match list_store(&*store).await {
                Ok(index) => *self.write() = index,
                Err(e) => tracing::warn!(error = %e, "RBAC relist"),
            }
        }
    }

    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn authorize(&self, a: &Attributes) -> (Decision, String) {
        self.read().authorize(a)
    }

    /// Every rule of `user` in `namespace`, with the resolution errors.
    pub fn rules_for(&self, user: &User, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
        self.read().rules_for(user, namespace)
    }
}

async fn list_all(server: &Arc<ApiServer>) -> anyhow::Result<Index> {
    list_store(&*server.store).await
}

async fn list_store(store: &dyn kaji_store::Store) -> anyhow::Result<Index> {
    let mut index = Index::default();
    // The four kinds at one revision: the first page's.
    for prefix in kind_prefixes() {
        let mut start_after = None;
        loop {
            let res = store
                .list(
                    &prefix,
                    kaji_store::ListOptions {
                        start_after: start_after.clone(),
                        limit: Some(1000),
                        revision: index.revision.checked_add(0).filter(|r| *r > 0),
                    },
                )
                .await?;
            index.revision = res.revision;
            start_after = res.items.last().map(|kv| kv.key.clone());
            for kv in &res.items {
                if let Ok(obj) = serde_json::from_slice::<Value>(&kv.value) {
                    index.apply(&kv.key, Some(&obj));
                }
            }
            if !res.more {
                break;
            }
        }
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(user: &User, verb: &str, ns: &str, resource: &str) -> Attributes {
        Attributes {
            user: user.clone(),
            verb: verb.into(),
            resource_request: true,
            namespace: ns.into(),
            resource: resource.into(),
            ..Attributes::default()
        }
    }

    fn index() -> Index {
        let mut ix = Index::default();
        let view = json!({"rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]});
        ix.apply(&format!("{PREFIX}clusterroles/view"), Some(&view));
        ix.apply(
            &format!("{PREFIX}rolebindings/ns1/alice-view"),
            Some(&json!({"roleRef": {"kind": "ClusterRole", "name": "view"},
                         "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "sa"}]})),
        );
        ix.apply(
            &format!("{PREFIX}clusterrolebindings/devs"),
            Some(&json!({"roleRef": {"kind": "ClusterRole", "name": "view"},
                         "subjects": [{"kind": "Group", "name": "devs"}]})),
        );
        ix.apply(
            &format!("{PREFIX}rolebindings/ns2/broken"),
            Some(&json!({"roleRef": {"kind": "ClusterRole", "name": "gone"},
                         "subjects": [{"kind": "User", "name": "alice"}]})),
        );
        ix
    }

    #[test]
    fn authorizes_by_binding_with_upstream_reasons() {
        let ix = index();
        let alice = User::new("alice", &[]);
        assert_eq!(
            ix.authorize(&attrs(&alice, "list", "ns1", "pods")),
            (
                Decision::Allow,
                r#"RBAC: allowed by RoleBinding "alice-view/ns1" of ClusterRole "view" to User "alice""#.into()
            )
        );
        assert_eq!(
            ix.authorize(&attrs(&alice, "delete", "ns1", "pods")),
            (Decision::NoOpinion, String::new())
        );
        assert_eq!(
            ix.authorize(&attrs(&alice, "list", "ns3", "pods")),
            (Decision::NoOpinion, String::new())
        );
        assert_eq!(
            ix.authorize(&attrs(&alice, "list", "ns2", "pods")),
            (
                Decision::NoOpinion,
                r#"RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found"#.into()
            )
        );
        let sa = User::new("system:serviceaccount:ns1:sa", &["system:serviceaccounts"]);
        assert_eq!(
            ix.authorize(&attrs(&sa, "get", "ns1", "pods")).1,
            r#"RBAC: allowed by RoleBinding "alice-view/ns1" of ClusterRole "view" to ServiceAccount "sa/ns1""#
        );
        let dev = User::new("bob", &["devs"]);
        assert_eq!(
            ix.authorize(&attrs(&dev, "get", "any", "pods")).1,
            r#"RBAC: allowed by ClusterRoleBinding "devs" of ClusterRole "view" to Group "devs""#
        );
        let mut ix = ix;
        ix.apply(&format!("{PREFIX}clusterrolebindings/devs"), None);
        ix.apply(&format!("{PREFIX}rolebindings/ns1/alice-view"), None);
        assert_eq!(
            ix.authorize(&attrs(&dev, "get", "any", "pods")).0,
            Decision::NoOpinion
        );
        assert_eq!(
            ix.authorize(&attrs(&alice, "get", "ns1", "pods")).0,
            Decision::NoOpinion
        );
        assert!(ix.scopes[""].users.is_empty() && ix.scopes[""].groups.is_empty());
    }
}
