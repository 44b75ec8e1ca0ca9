//! Impersonation headers (`kubectl --as`, `--as-group`, `--as-uid`), as upstream's
//! k8s.io/apiserver/pkg/endpoints/filters/impersonation.go: each requested identity piece is
//! authorized on the verb `impersonate` (users, groups, serviceaccounts, uids and
//! userextras/<key>); the request then runs as the impersonated user, and the headers are
//! removed so that nothing behind the filter (proxies) sees them.

use super::authz::{self, Attributes, Decision};
use super::{ANONYMOUS, AUTHENTICATED, UNAUTHENTICATED, User};
use crate::ApiServer;
use kaji_api::ApiError;
use std::collections::BTreeMap;

pub const USER_HEADER: &str = "impersonate-user";
pub const GROUP_HEADER: &str = "impersonate-group";
pub const UID_HEADER: &str = "impersonate-uid";
pub const EXTRA_PREFIX: &str = "impersonate-extra-";

const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";
const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";

/// One thing a request asks to act as (upstream's ObjectReference of buildImpersonationRequests).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Request {
    User(String),
    ServiceAccount { namespace: String, name: String },
    Group(String),
    Extra { key: String, value: String },
    Uid(String),
}

impl Request {
    /// Go's `%v` of the ObjectReference (Kind Namespace Name UID APIVersion ResourceVersion
    /// FieldPath), as upstream's 400 message prints them.
    fn go_value(&self) -> String {
        let (kind, ns, name, api_version, field_path) = match self {
            Request::User(n) => ("User", "", n.as_str(), "", ""),
            Request::ServiceAccount { namespace, name } => {
                ("ServiceAccount", namespace.as_str(), name.as_str(), "", "")
            }
            Request::Group(g) => ("Group", "", g.as_str(), "", ""),
            Request::Extra { key, value } => (
                "UserExtra",
                "",
                value.as_str(),
                "authentication.k8s.io/v1",
                key.as_str(),
            ),
            Request::Uid(u) => ("UID", "", u.as_str(), "authentication.k8s.io/v1", ""),
        };
        format!("{{{kind} {ns} {name}  {api_version}  {field_path}}}")
    }

    /// The attributes checked for this piece: verb `impersonate` on the piece's resource.
    fn attributes(&self, requestor: &User) -> Attributes {
        let mut a = Attributes {
            user: requestor.clone(),
            verb: "impersonate".to_string(),
            resource_request: true,
            ..Attributes::default()
        };
        match self {
            Request::User(name) => {
                a.resource = "users".into();
                a.api_version = "v1".into();
                a.name = name.clone();
            }
            Request::ServiceAccount { namespace, name } => {
                a.resource = "serviceaccounts".into();
                a.api_version = "v1".into();
                a.namespace = namespace.clone();
                a.name = name.clone();
            }
            Request::Group(name) => {
                a.resource = "groups".into();
                a.api_version = "v1".into();
                a.name = name.clone();
            }
            Request::Extra { key, value } => {
                a.resource = "userextras".into();
                a.subresource = key.clone();
                a.api_group = AUTHENTICATION_GROUP.into();
                a.api_version = "v1".into();
                a.name = value.clone();
            }
            Request::Uid(uid) => {
                a.resource = "uids".into();
                a.api_group = AUTHENTICATION_GROUP.into();
                a.api_version = "v1".into();
                a.name = uid.clone();
            }
        }
        a
    }
}

/// Upstream's serviceaccount.SplitUsername: `system:serviceaccount:<namespace>:<name>` with a
/// valid namespace (DNS label) and name (DNS subdomain).
pub fn split_service_account(username: &str) -> Option<(String, String)> {
    let rest = username.strip_prefix(SERVICE_ACCOUNT_PREFIX)?;
    let parts: Vec<&str> = rest.split(':').collect();
    let [ns, name] = parts.as_slice() else {
        return None;
    };
    (dns_label(ns) && dns_subdomain(name)).then(|| (ns.to_string(), name.to_string()))
}

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(dns_label)
}

/// Go's url.PathUnescape, keeping the key as is when it is malformed (as upstream).
fn unescape_extra_key(key: &str) -> String {
    let b = key.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                None => return key.to_string(),
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| key.to_string())
}

/// Upstream's buildImpersonationRequests: the pieces in upstream's order (user, groups, extras,
/// uid); groups, extras or a uid without a user are a 400.
fn requests(headers: &http::HeaderMap) -> Result<Vec<Request>, ApiError> {
    let mut out = Vec::new();
    let user = headers
        .get(USER_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let has_user = !user.is_empty();
    if has_user {
        out.push(match split_service_account(user) {
            Some((namespace, name)) => Request::ServiceAccount { namespace, name },
            None => Request::User(user.to_string()),
        });
    }
    let mut has_other = false;
    for g in headers.get_all(GROUP_HEADER) {
        has_other = true;
        out.push(Request::Group(
            String::from_utf8_lossy(g.as_bytes()).into_owned(),
        ));
    }
    let mut extra_names: Vec<&str> = headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with(EXTRA_PREFIX))
        .collect();
    extra_names.sort_unstable();
    for name in extra_names {
        has_other = true;
        let key = unescape_extra_key(&name[EXTRA_PREFIX.len()..]);
        for v in headers.get_all(name) {
            out.push(Request::Extra {
                key: key.clone(),
                value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
            });
        }
    }
    let uid = headers
        .get(UID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !uid.is_empty() {
        has_other = true;
        out.push(Request::Uid(uid.to_string()));
    }
    if has_other && !has_user {
        let list: Vec<String> = out.iter().map(Request::go_value).collect();
        return Err(ApiError::bad_request(format!(
            "requested [{}] without impersonating a user",
            list.join(" ")
        )));
    }
    Ok(out)
}

/// Whether a request carries any impersonation header.
pub fn requested(headers: &http::HeaderMap) -> bool {
    headers
        .keys()
        .any(|k| k.as_str().starts_with("impersonate-"))
}

/// The user a request acts as: `user` itself unless it carries `Impersonate-*` headers that
/// `user` may use (403 with upstream's text for the first piece it may not). The headers are
/// removed from the request once used.
pub async fn impersonate(
    server: &ApiServer,
    user: User,
    headers: &mut http::HeaderMap,
) -> Result<User, ApiError> {
    let requests = requests(headers)?;
    if requests.is_empty() {
        return Ok(user);
    }
    let groups_specified = headers.contains_key(GROUP_HEADER);
    let mut name = String::new();
    let mut uid = String::new();
    let mut groups: Vec<String> = Vec::new();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &requests {
        let attrs = r.attributes(&user);
        let (decision, reason) = if hollow_node_piece(&user, r) {
            (Decision::Allow, String::new())
        } else {
            authz::authorize(&server.auth, &attrs)
        };
        if decision != Decision::Allow {
            tracing::debug!(user = %user.name, piece = ?r, %reason, "impersonation forbidden");
            return Err(authz::forbidden(&attrs, &reason));
        }
        match r {
            Request::User(n) => name = n.clone(),
            Request::ServiceAccount {
                namespace,
                name: sa,
            } => {
                name = format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{sa}");
                if !groups_specified {
                    groups = vec![
                        "system:serviceaccounts".to_string(),
                        format!("system:serviceaccounts:{namespace}"),
                    ];
                }
            }
            Request::Group(g) => groups.push(g.clone()),
            Request::Extra { key, value } => {
                extra.entry(key.clone()).or_default().push(value.clone())
            }
            Request::Uid(u) => uid = u.clone(),
        }
    }
    if name != ANONYMOUS {
        if !groups
            .iter()
            .any(|g| g == AUTHENTICATED || g == UNAUTHENTICATED)
        {
            groups.push(AUTHENTICATED.to_string());
        }
    } else if !groups.iter().any(|g| g == UNAUTHENTICATED) {
        groups.push(UNAUTHENTICATED.to_string());
    }
    strip(headers);
    let new = User {
        name,
        uid,
        groups,
        extra,
    };
    tracing::debug!(requestor = %user.name, as_user = %new.name, groups = ?new.groups, "impersonating");
    Ok(new)
}

/// The hollow nodes (a simulation, `--hollow-nodes`) write as their nodes, each as
/// `system:node:<name>` in `system:nodes` so that the Node authorizer and NodeRestriction judge
/// them as kubelets, through their shared reader's connections (`kaji:hollow-nodes` with
/// impersonation headers) instead of a client certificate and TLS connections per node: 5,000
/// nodes made 5,000 handshakes and kept thousands of connections open. The reader may act as
/// those users and that group and nothing else; it gains no right it lacked, since whoever runs
/// hollow nodes is issued every node's certificate anyway. Kaji-specific: upstream has no such
/// rule (kubemark's hollow nodes are separate processes with their own credentials).
fn hollow_node_piece(user: &User, piece: &Request) -> bool {
    user.name == crate::server::HOLLOW_READER
        && match piece {
            Request::User(name) => name.strip_prefix("system:node:").is_some_and(dns_subdomain),
            Request::Group(g) => g == "system:nodes",
            _ => false,
        }
}

/// Removes the impersonation headers (upstream clears them before the request goes on).
pub fn strip(headers: &mut http::HeaderMap) {
    headers.remove(USER_HEADER);
    headers.remove(GROUP_HEADER);
    headers.remove(UID_HEADER);
    let extras: Vec<http::HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(EXTRA_PREFIX))
        .cloned()
        .collect();
    for k in extras {
        headers.remove(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hollow_reader_may_act_as_nodes_only() {
        let user = |name: &str| User {
            name: name.into(),
            uid: String::new(),
            groups: vec![],
            extra: Default::default(),
        };
        let reader = user(crate::server::HOLLOW_READER);
        let node = Request::User("system:node:hollow-node-7".into());
        let nodes = Request::Group("system:nodes".into());
        assert!(hollow_node_piece(&reader, &node));
        assert!(hollow_node_piece(&reader, &nodes));
        for other in [
            Request::User("system:admin".into()),
            Request::User("system:kube-controller-manager".into()),
            Request::User("system:node:".into()),
            Request::User("system:node:Bad_Name".into()),
            Request::Group("system:masters".into()),
            Request::Uid("x".into()),
        ] {
            assert!(!hollow_node_piece(&reader, &other), "{other:?}");
        }
        assert!(!hollow_node_piece(&user("alice"), &node));
        assert!(!hollow_node_piece(&user("alice"), &nodes));
    }

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn pieces_in_upstream_order() {
        let h = headers(&[
            ("Impersonate-Uid", "u1"),
            ("Impersonate-Group", "g1"),
            ("Impersonate-User", "system:serviceaccount:ns:sa"),
            ("Impersonate-Group", "g2"),
            ("Impersonate-Extra-Scopes%2Fx", "a"),
        ]);
        assert_eq!(
            requests(&h).unwrap(),
            vec![
                Request::ServiceAccount {
                    namespace: "ns".into(),
                    name: "sa".into()
                },
                Request::Group("g1".into()),
                Request::Group("g2".into()),
                Request::Extra {
                    key: "scopes/x".into(),
                    value: "a".into()
                },
                Request::Uid("u1".into()),
            ]
        );
        assert_eq!(
            requests(&headers(&[(
                "Impersonate-User",
                "system:serviceaccount:a:b:c"
            )]))
            .unwrap(),
            vec![Request::User("system:serviceaccount:a:b:c".into())]
        );
    }

    #[test]
    fn groups_without_user_is_400() {
        let e = requests(&headers(&[
            ("Impersonate-Group", "g"),
            ("Impersonate-Uid", "1"),
        ]))
        .unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "requested [{Group  g    } {UID  1  authentication.k8s.io/v1  }] without impersonating a user"
        );
    }

    #[test]
    fn forbidden_texts() {
        let me = User::new("y", &[]);
        let a = Request::User("x".into()).attributes(&me);
        assert_eq!(
            authz::forbidden(&a, "").message,
            r#"users "x" is forbidden: User "y" cannot impersonate resource "users" in API group "" at the cluster scope"#
        );
        let a = Request::ServiceAccount {
            namespace: "ns".into(),
            name: "sa".into(),
        }
        .attributes(&me);
        assert_eq!(
            authz::forbidden(&a, "").message,
            r#"serviceaccounts "sa" is forbidden: User "y" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "ns""#
        );
        let a = Request::Extra {
            key: "scopes".into(),
            value: "v".into(),
        }
        .attributes(&me);
        assert_eq!(
            authz::forbidden(&a, "").message,
            r#"userextras.authentication.k8s.io "v" is forbidden: User "y" cannot impersonate resource "userextras/scopes" in API group "authentication.k8s.io" at the cluster scope"#
        );
    }

    #[test]
    fn strip_removes_all() {
        let mut h = headers(&[
            ("Impersonate-User", "a"),
            ("Impersonate-Group", "g"),
            ("Impersonate-Extra-k", "v"),
            ("Accept", "x"),
        ]);
        strip(&mut h);
        assert_eq!(h.len(), 1);
        assert!(!requested(&h));
    }
}
