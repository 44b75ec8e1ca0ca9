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
        return token_user(server, token).await.map(Some);
    }
    if let Some(token) = websocket_token(headers)? {
        return token_user(server, &token).await.map(Some);
    }
    Ok(server.auth.options.anonymous.then(User::anonymous))
}

/// The user of a bearer token: the join token, the token file, service-account JWTs; 401 for a
/// token nothing accepts.
async fn token_user(server: &ApiServer, token: &str) -> Result<User, ApiError> {
    if let Some(user) = join_token_user(server, token) {
        return Ok(user.authenticated());
    }
    if let Some(user) = server.auth.token_file.authenticate(token) {
        return Ok(user.authenticated());
    }
    if let Some(user) = server
        .auth
        .service_accounts
        .authenticate(server, token)
        .await
    {
        return Ok(user.authenticated());
    }
    Err(ApiError::unauthorized())
}

/// The WebSocket subprotocol that carries a bearer token for clients that cannot set headers
/// (browsers): `base64url.bearer.authorization.k8s.io.<base64url(token), no padding>`.
pub const BEARER_PROTOCOL_PREFIX: &str = "base64url.bearer.authorization.k8s.io.";

fn is_websocket(headers: &http::HeaderMap) -> bool {
    let has = |name: http::HeaderName, want: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(want))
    };
    has(http::header::CONNECTION, "upgrade") && has(http::header::UPGRADE, "websocket")
}

/// The offered subprotocols: (the bearer protocols, the others), in order.
fn split_protocols(headers: &http::HeaderMap) -> (Vec<&str>, Vec<&str>) {
    headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .partition(|p| p.starts_with(BEARER_PROTOCOL_PREFIX))
}

/// The bearer token of a WebSocket upgrade's subprotocols (upstream's `websocket` protocol
/// authenticator, `authentication/request/websocket/protocol.go`): only for WebSocket upgrades,
/// one token at most, and another subprotocol beside it to be echoed back.
pub fn websocket_token(headers: &http::HeaderMap) -> Result<Option<String>, ApiError> {
    use base64::Engine as _;
    if !is_websocket(headers) {
        return Ok(None);
    }
    let (tokens, others) = split_protocols(headers);
    let encoded = match tokens.as_slice() {
        [] => return Ok(None),
        [one] => &one[BEARER_PROTOCOL_PREFIX.len()..],
        _ => return Err(unauthorized("multiple base64.bearer.authorization tokens specified")),
    };
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| unauthorized("invalid base64.bearer.authorization token encoding"))?;
    let token = String::from_utf8(token).map_err(|_| unauthorized("invalid base64.bearer.authorization token"))?;
    if token.is_empty() {
        return Ok(None);
    }
    if others.is_empty() {
        return Err(unauthorized("missing additional subprotocol"));
    }
    Ok(Some(token))
}

/// Removes the token's subprotocol from a WebSocket upgrade once the request is authenticated,
/// as upstream does: it is never echoed back nor passed on to a kubelet.
pub fn remove_websocket_token(headers: &mut http::HeaderMap) {
    if !is_websocket(headers) {
        return;
    }
    let (tokens, others) = split_protocols(headers);
    if tokens.is_empty() {
        return;
    }
    let kept = others.join(", ");
    headers.remove(http::header::SEC_WEBSOCKET_PROTOCOL);
    if let Ok(v) = http::HeaderValue::from_str(&kept)
        && !kept.is_empty()
    {
        headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, v);
    }
}

/// A 401 whose reason is logged (upstream logs the authenticator's error and answers the bare
/// `Unauthorized`).
fn unauthorized(why: &str) -> ApiError {
    tracing::debug!(reason = why, "WebSocket bearer token refused");
    ApiError::unauthorized()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(protocols: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
        h.insert(http::header::UPGRADE, http::HeaderValue::from_static("websocket"));
        h.insert(http::header::SEC_WEBSOCKET_PROTOCOL, http::HeaderValue::from_str(protocols).unwrap());
        h
    }

    #[test]
    fn websocket_bearer_protocol() {
        // base64url("my.token-1") without padding.
        let h = ws("v4.channel.k8s.io, base64url.bearer.authorization.k8s.io.bXkudG9rZW4tMQ");
        assert_eq!(websocket_token(&h).unwrap().as_deref(), Some("my.token-1"));
        let mut stripped = h.clone();
        remove_websocket_token(&mut stripped);
        assert_eq!(stripped[http::header::SEC_WEBSOCKET_PROTOCOL], "v4.channel.k8s.io");
        // Alone, twice, badly encoded: 401; no token protocol or not a WebSocket: no token.
        assert_eq!(websocket_token(&ws("base64url.bearer.authorization.k8s.io.bXkudG9rZW4tMQ")).unwrap_err().code, 401);
        let twice = ws("v4.channel.k8s.io, base64url.bearer.authorization.k8s.io.YQ, base64url.bearer.authorization.k8s.io.Yg");
        assert_eq!(websocket_token(&twice).unwrap_err().code, 401);
        assert_eq!(websocket_token(&ws("v4.channel.k8s.io, base64url.bearer.authorization.k8s.io.***")).unwrap_err().code, 401);
        assert_eq!(websocket_token(&ws("v4.channel.k8s.io")).unwrap(), None);
        let mut plain = h.clone();
        plain.remove(http::header::UPGRADE);
        assert_eq!(websocket_token(&plain).unwrap(), None);
    }
}
