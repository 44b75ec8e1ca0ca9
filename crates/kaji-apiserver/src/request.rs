//! Turning a request line into what it asks for (upstream's RequestInfoFactory): which group,
//! version, resource, namespace, name and subresource, and which verb.

use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceRequest {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The legacy `/watch/` path prefix was used.
    pub watch_path: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/api`: the core group's versions.
    CoreVersions,
    /// `/apis`: all groups.
    Groups,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`: the resource list.
    GroupVersion(String, String),
    Resource(ResourceRequest),
    Other,
}

/// Namespace subresources that are not resources in their own right (`/namespaces/x/status`).
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

pub fn route(path: &str) -> Route {
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return Route::CoreVersions,
        ["apis"] => return Route::Groups,
        ["apis", g] => return Route::Group((*g).to_string()),
        ["api", v] => return Route::GroupVersion(String::new(), (*v).to_string()),
        ["apis", g, v] => return Route::GroupVersion((*g).to_string(), (*v).to_string()),
        ["api", v, rest @ ..] => (String::new(), (*v).to_string(), rest),
        ["apis", g, v, rest @ ..] => ((*g).to_string(), (*v).to_string(), rest),
        _ => return Route::Other,
    };
    let mut rest: Vec<&str> = rest.to_vec();
    let watch_path = rest.first() == Some(&"watch");
    if watch_path {
        rest.remove(0);
    }
    let mut namespace = None;
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        namespace = Some(rest[1].to_string());
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            rest.drain(..2);
        }
    }
    if rest.is_empty() {
        return Route::Other;
    }
    // For `/namespaces/<name>[/status]` the namespace is the object itself.
    let is_namespace_object = rest[0] == "namespaces";
    let req = ResourceRequest {
        group,
        version,
        plural: rest[0].to_string(),
        namespace: if is_namespace_object { None } else { namespace },
        name: rest.get(1).map(|s| (*s).to_string()),
        subresource: rest.get(2).map(|s| (*s).to_string()),
        watch_path,
    };
    // Only `proxy` takes a path after the subresource (`pods/NAME/proxy/PATH`).
    if rest.len() > 3 && rest[2] != "proxy" {
        return Route::Other;
    }
    Route::Resource(req)
}

/// Query parameters, percent-decoded.
pub fn query_params(query: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in query.unwrap_or_default().split('&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
        out.insert(dec(k), dec(v));
    }
    out
}

/// One entry of an Accept header: media type and its parameters (`as`, `g`, `v`, ...).
#[derive(Clone, Debug, Default)]
pub struct MediaType {
    pub essence: String,
    pub params: HashMap<String, String>,
}

pub fn parse_accept(accept: &str) -> Vec<MediaType> {
    accept
        .split(',')
        .filter_map(|entry| {
            let mut it = entry.split(';');
            let essence = it.next()?.trim().to_ascii_lowercase();
            if essence.is_empty() {
                return None;
            }
            let params = it
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                })
                .collect();
            Some(MediaType { essence, params })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourceRequest {
        match route(path) {
            Route::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn routes() {
        let r = res("/api/v1/namespaces/default/pods/nginx/log");
        assert_eq!((r.plural.as_str(), r.namespace.as_deref(), r.name.as_deref(), r.subresource.as_deref()), ("pods", Some("default"), Some("nginx"), Some("log")));
        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!((r.plural.as_str(), r.namespace, r.name.as_deref()), ("namespaces", None, Some("kube-system")));
        let r = res("/api/v1/namespaces/x/finalize");
        assert_eq!((r.plural.as_str(), r.name.as_deref(), r.subresource.as_deref()), ("namespaces", Some("x"), Some("finalize")));
        let r = res("/apis/apps/v1/watch/namespaces/a/deployments");
        assert!(r.watch_path);
        assert_eq!((r.group.as_str(), r.plural.as_str(), r.namespace.as_deref()), ("apps", "deployments", Some("a")));
        let r = res("/api/v1/nodes/n1/status");
        assert_eq!(r.subresource.as_deref(), Some("status"));
        assert_eq!(route("/apis/apps"), Route::Group("apps".into()));
        assert_eq!(route("/api/v1"), Route::GroupVersion(String::new(), "v1".into()));
    }

    #[test]
    fn accept() {
        let a = parse_accept("application/json;as=Table;v=v1;g=meta.k8s.io,application/json");
        assert_eq!(a[0].params.get("as").map(String::as_str), Some("Table"));
        assert_eq!(a[1].essence, "application/json");
    }
}
