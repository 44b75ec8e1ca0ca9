//! `serviceaccounts/token` (upstream `pkg/registry/core/serviceaccount/storage/token.go`): a
//! TokenRequest (authentication.k8s.io/v1) gets a bound JWT for the ServiceAccount, for
//! `spec.audiences` (default: the API server's), `spec.expirationSeconds` (default 3600, at
//! least 600), optionally bound to a Pod, Secret or Node whose deletion invalidates it. Nothing
//! is stored.

use crate::ApiServer;
use crate::auth::serviceaccount::{EXTENDED_EXPIRATION_SECONDS, WARN_ONLY_EXPIRATION_SECONDS, get};
use kaji_api::{ApiError, FieldError, jwt};
use serde_json::{Value, json};

/// Upstream's SetDefaults_TokenRequestSpec.
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// Upstream's ValidateTokenRequest.
fn validate(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let secs = spec
        .get("expirationSeconds")
        .cloned()
        .unwrap_or(json!(DEFAULT_EXPIRATION_SECONDS));
    match secs.as_i64() {
        Some(s) if s < 600 => errs.push(FieldError::invalid(
            "spec.expirationSeconds",
            &secs,
            "may not specify a duration less than 10 minutes",
        )),
        Some(s) if s > 1 << 32 => errs.push(FieldError::invalid(
            "spec.expirationSeconds",
            &secs,
            "may not specify a duration larger than 2^32 seconds",
        )),
        Some(_) => {}
        None => errs.push(FieldError::invalid(
            "spec.expirationSeconds",
            &secs,
            "must be an integer",
        )),
    }
    if let Some(a) = spec.get("audiences").filter(|a| !a.is_null())
        && !a.as_array().is_some_and(|a| a.iter().all(Value::is_string))
    {
        errs.push(FieldError::invalid(
            "spec.audiences",
            a,
            "must be a list of strings",
        ));
    }
    errs
}

/// POST `/api/v1/namespaces/NS/serviceaccounts/NAME/token`.
pub async fn create(
    server: &ApiServer,
    namespace: &str,
    name: &str,
    body: &Value,
) -> Result<Value, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: the body is not an object",
        ));
    }
    let mut req = body.clone();
    if !req.get("spec").is_some_and(Value::is_object) {
        req["spec"] = json!({});
    }
    // Upstream's order: the body's name and namespace, the account, then validation.
    for (field, want) in [("name", name), ("namespace", namespace)] {
        if let Some(given) =
            crate::objects::meta_str(&req, field).filter(|g| !g.is_empty() && *g != want)
        {
            let detail = format!("must match the service account {field} if specified");
            let e = FieldError::invalid(format!("metadata.{field}"), &json!(given), &detail);
            return Err(ApiError::invalid(
                "authentication.k8s.io",
                "TokenRequest",
                name,
                vec![e],
            ));
        }
    }
    let sa = get(server, "serviceaccounts", Some(namespace), name)
        .await
        .ok_or_else(|| ApiError::not_found("", "serviceaccounts", name))?;
    let errs = validate(&req["spec"]);
    if !errs.is_empty() {
        return Err(ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            "",
            errs,
        ));
    }
    // NodeRestriction: a node may only ask for tokens bound to a pod on itself.
    if let Some(accounts) = server.registry.get("", "v1", "serviceaccounts") {
        crate::admission::node_restriction::admit_token_request(accounts.info(), name, &req, |pod| async move {
            get(server, "pods", Some(namespace), &pod).await.ok_or_else(|| ApiError::not_found("", "pods", &pod))
        })
        .await?;
    }
    let uid_of = |o: &Value| {
        crate::objects::meta_str(o, "uid")
            .unwrap_or_default()
            .to_string()
    };

    let mut bound = serde_json::Map::new();
    if let Some(r) = req
        .pointer("/spec/boundObjectRef")
        .filter(|r| r.is_object())
    {
        let s = |k: &str| {
            r.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (api_version, kind, rname, ruid) = (s("apiVersion"), s("kind"), s("name"), s("uid"));
        let group = api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or_default();
        let obj = match (group, kind.as_str()) {
            ("", "Pod") => {
                let pod = get(server, "pods", Some(namespace), &rname)
                    .await
                    .ok_or_else(|| ApiError::not_found("", "pods", &rname))?;
                if pod
                    .pointer("/spec/serviceAccountName")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    != name
                {
                    return Err(ApiError::bad_request(format!(
                        "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
                    )));
                }
                bound.insert("pod".into(), json!({"name": rname, "uid": uid_of(&pod)}));
                // ServiceAccountTokenPodNodeInfo: the pod's node, with its UID when it exists.
                if let Some(node) = pod
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                {
                    let mut r = json!({"name": node});
                    if let Some(n) = get(server, "nodes", None, node).await {
                        r["uid"] = json!(uid_of(&n));
                    }
                    bound.insert("node".into(), r);
                }
                pod
            }
            ("", "Secret") => {
                let secret = get(server, "secrets", Some(namespace), &rname)
                    .await
                    .ok_or_else(|| ApiError::not_found("", "secrets", &rname))?;
                bound.insert(
                    "secret".into(),
                    json!({"name": rname, "uid": uid_of(&secret)}),
                );
                secret
            }
            ("", "Node") => {
                let node = get(server, "nodes", None, &rname)
                    .await
                    .ok_or_else(|| ApiError::not_found("", "nodes", &rname))?;
                bound.insert("node".into(), json!({"name": rname, "uid": uid_of(&node)}));
                node
            }
            _ => {
                let version = api_version.rsplit('/').next().unwrap_or_default();
                return Err(ApiError::bad_request(format!(
                    "cannot bind token to object of type {group}/{version}, Kind={kind}"
                )));
            }
        };
        if !ruid.is_empty() && uid_of(&obj) != ruid {
            return Err(ApiError::conflict(
                "",
                &kind,
                &rname,
                &format!(
                    "the UID in the bound object reference ({ruid}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ));
        }
    }

    let tokens = &server.auth.service_accounts;
    let audiences: Vec<String> = match req.pointer("/spec/audiences").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => tokens.api_audiences.clone(),
    };
    let requested = req
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    // The kubelet's 3607 s request for a pod, for the API server's own audiences, gets a year
    // with a `warnafter` at 3607 s (upstream's --service-account-extend-token-expiration).
    let extend = requested == WARN_ONLY_EXPIRATION_SECONDS
        && bound.contains_key("pod")
        && audiences.iter().all(|a| tokens.api_audiences.contains(a));
    let lifetime = if extend {
        EXTENDED_EXPIRATION_SECONDS
    } else {
        requested
    };
    let now = jiff::Timestamp::now();
    let now_s = now.as_second();
    let mut k8s =
        json!({"namespace": namespace, "serviceaccount": {"name": name, "uid": uid_of(&sa)}});
    for (key, v) in bound {
        k8s[key] = v;
    }
    if extend {
        k8s["warnafter"] = json!(now_s + requested);
    }
    let claims = json!({
        "aud": audiences,
        "exp": now_s + lifetime,
        "iat": now_s,
        "iss": tokens.issuer,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": k8s,
        "nbf": now_s,
        "sub": jwt::username(namespace, name),
    });
    let token = tokens.sign(&claims)?;
    let expires = jiff::Timestamp::from_second(now_s + requested).unwrap_or(now);
    tracing::debug!(namespace, name, requested, "issued a service-account token");
    req["kind"] = json!("TokenRequest");
    req["apiVersion"] = json!("authentication.k8s.io/v1");
    let meta = crate::objects::meta_mut(&mut req);
    meta.insert("name".into(), json!(name));
    meta.insert("namespace".into(), json!(namespace));
    meta.insert(
        "creationTimestamp".into(),
        json!(now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
    );
    req["spec"]["audiences"] = json!(audiences);
    req["spec"]["expirationSeconds"] = json!(requested);
    req["status"] = json!({"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()});
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_seconds_as_upstream_validation() {
        assert!(validate(&json!({})).is_empty());
        assert!(validate(&json!({"expirationSeconds": 600})).is_empty());
        let e = validate(&json!({"expirationSeconds": 10}));
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].to_string(),
            "spec.expirationSeconds: Invalid value: 10: may not specify a duration less than 10 minutes"
        );
        assert_eq!(
            validate(&json!({"expirationSeconds": 1_i64 << 33})).len(),
            1
        );
    }
}
