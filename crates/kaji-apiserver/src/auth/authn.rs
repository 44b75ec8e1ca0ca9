//! Authentication (k8s.io/apiserver/pkg/authentication): client certificates first, then a
//! bearer token (the node join token, service-account JWTs), then, when `--anonymous-auth` is on,
//! `system:anonymous`. A bearer token that nothing accepts is a 401, as upstream.

use super::User;
use crate::ApiServer;
use kaji_api::ApiError;

/// The user of a client certificate: CN is the name, each O a group.
pub fn user_from_cert(der: &[u8]) -> Option<User> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(User {
        name,
        groups,
        ..User::default()
    })
}

/// The bearer token of an `Authorization` header, if any.
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A bearer token equal to the join token (or its `node:<secret>` part) authenticates a node
/// agent before it has node credentials of its own.
fn join_token_user(server: &ApiServer, token: &str) -> Option<User> {
    let secret = server.pki.token_secret();
    let ok = !secret.is_empty() && (token == secret || token == server.pki.token);
    ok.then(|| User::new("system:node:kaji-agent", &["system:nodes"]))
}

/// Who sent a request: `Ok(None)` when it carries no credentials and anonymous requests are
/// off (the caller answers 401), `Err` (401) for credentials that are wrong.
pub async fn authenticate(
    server: &ApiServer,
    cert_user: Option<User>,
    headers: &http::HeaderMap,
) -> Result<Option<User>, ApiError> {
    if let Some(user) = cert_user {
        return Ok(Some(user.authenticated()));
    }
    if let Some(token) = bearer_token(headers) {
        if let Some(user) = join_token_user(server, token) {
            return Ok(Some(user.authenticated()));
        }
        if let Some(user) = server.auth.token_file.authenticate(token) {
            return Ok(Some(user.authenticated()));
        }
        if let Some(user) = server
            .auth
            .service_accounts
            .authenticate(server, token)
            .await
        {
            return Ok(Some(user.authenticated()));
        }
        return Err(ApiError::unauthorized());
    }
    Ok(server.auth.options.anonymous.then(User::anonymous))
}
