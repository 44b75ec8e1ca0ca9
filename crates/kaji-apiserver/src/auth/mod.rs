//! Who is asking and what they may do: upstream's authentication, impersonation, authorization
//! and audit filters, run by `server::handle` before a request reaches its handler.
//!
//! - [`authn`]: client certificates (CN user, O groups), bearer tokens (service-account JWTs in
//!   [`serviceaccount`], the node join token), anonymous requests (`system:anonymous`);
//! - [`impersonation`]: `Impersonate-User`/`-Group`/`-Uid`/`-Extra-*` headers, checked with the
//!   `impersonate` verb;
//! - [`authz`]: the request's attributes (verb, resource, ...), the `Authorizer` trait and the
//!   chain upstream's `--authorization-mode=Node,RBAC` builds: `system:masters` always, then the
//!   Node authorizer ([`node`]), then RBAC ([`rbac`]);
//! - [`audit`]: audit.k8s.io/v1 Event lines at Metadata level (`--audit-log-path`).

pub mod audit;
pub mod authn;
pub mod authz;
pub mod bootstrap_policy;
pub mod impersonation;
pub mod node;
pub mod rbac;
pub mod serviceaccount;
pub mod tokenfile;
pub mod usercert;

use serde::Serialize;
use std::collections::BTreeMap;

/// An authenticated user (upstream's user.Info).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct User {
    #[serde(rename = "username")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

pub const ANONYMOUS: &str = "system:anonymous";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
pub const AUTHENTICATED: &str = "system:authenticated";
pub const MASTERS: &str = "system:masters";

impl User {
    pub fn new(name: impl Into<String>, groups: &[&str]) -> User {
        User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..User::default()
        }
    }

    pub fn anonymous() -> User {
        User::new(ANONYMOUS, &[UNAUTHENTICATED])
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// Adds `system:authenticated` as upstream's authenticator union does for every
    /// authenticated user (never for `system:anonymous`).
    pub fn authenticated(mut self) -> User {
        if self.name != ANONYMOUS && !self.in_group(AUTHENTICATED) {
            self.groups.push(AUTHENTICATED.to_string());
        }
        self
    }
}

/// How requests are authenticated and authorized (`kaji server` flags).
#[derive(Clone, Debug)]
pub struct Options {
    /// `--anonymous-auth` (default true): requests without credentials run as
    /// `system:anonymous`; when false they get 401.
    pub anonymous: bool,
    /// `--authorization-mode` (default `Node,RBAC`; `AlwaysAllow` turns authorization off).
    pub modes: Vec<String>,
    /// `--audit-log-path`: where audit Events go (none when unset).
    pub audit_log_path: Option<std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            anonymous: true,
            modes: vec!["Node".to_string(), "RBAC".to_string()],
            audit_log_path: None,
        }
    }
}

/// The API server's authentication and authorization state.
pub struct Auth {
    pub options: Options,
    pub service_accounts: serviceaccount::Tokens,
    pub rbac: rbac::Rbac,
    pub node: node::NodeAuthorizer,
    pub audit: audit::Audit,
    /// Static bearer tokens of people (`kaji token create`).
    pub token_file: tokenfile::TokenFile,
}

impl Auth {
    pub fn new(options: Options, data_dir: &std::path::Path) -> anyhow::Result<Auth> {
        Ok(Auth {
            service_accounts: serviceaccount::Tokens::load_or_create(data_dir)?,
            rbac: rbac::Rbac::default(),
            node: node::NodeAuthorizer::default(),
            audit: audit::Audit::open(options.audit_log_path.as_deref())?,
            token_file: tokenfile::TokenFile::new(data_dir),
            options,
        })
    }

    /// Starts what keeps the authorizers' views of the store current (RBAC objects, the node
    /// graph). Called once the store is open.
    pub fn start(server: &std::sync::Arc<crate::ApiServer>) {
        rbac::Rbac::start(server);
        node::NodeAuthorizer::start(server);
    }
}
