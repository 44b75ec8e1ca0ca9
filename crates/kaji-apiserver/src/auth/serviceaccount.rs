//! Service-account tokens (upstream `pkg/serviceaccount`): the signing key kept at
//! `<data-dir>/server/tls/service-account.key` (ES256, made at first start), the claims of bound
//! tokens that TokenRequest issues (`registry::core::serviceaccount_token`), and the bearer-token
//! authenticator for them and for legacy Secret tokens: signature, `exp`/`nbf` (one minute of
//! leeway, as go-jose), audiences, and that the ServiceAccount, and the Pod, Secret or Node a
//! token is bound to, still exist with the UIDs the token names.

use super::User;
use crate::ApiServer;
use kaji_api::jwt::{self, SigningKey};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// go-jose's DefaultLeeway: clock skew tolerated on `exp`, `nbf` and deletion times.
const LEEWAY_SECONDS: i64 = 60;
/// Upstream's WarnOnlyBoundTokenExpirationSeconds: the kubelet's request that gets extended.
pub const WARN_ONLY_EXPIRATION_SECONDS: i64 = 3607;
/// Upstream's ExpirationExtensionSeconds (one year).
pub const EXTENDED_EXPIRATION_SECONDS: i64 = 24 * 365 * 3600;
const EXTRA: &str = "authentication.kubernetes.io/";

/// Where the signing key lives (upstream's `--service-account-key-file` and
/// `--service-account-signing-key-file`, one key pair).
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir
        .join("server")
        .join("tls")
        .join("service-account.key")
}

/// The service-account token signer and verifier.
pub struct Tokens {
    key: SigningKey,
    /// `--service-account-issuer`.
    pub issuer: String,
    /// `--api-audiences` (default: the issuer).
    pub api_audiences: Vec<String>,
}

/// What a valid token says about its holder (upstream's ServiceAccountInfo).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Info {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub pod: Option<(String, String)>,
    pub node: Option<(String, String)>,
    pub jti: Option<String>,
}

impl Info {
    pub fn user(&self) -> User {
        let mut user = User::new(
            jwt::username(&self.namespace, &self.name),
            &[
                "system:serviceaccounts",
                &format!("system:serviceaccounts:{}", self.namespace),
            ],
        );
        user.uid = self.uid.clone();
        let mut extra = |k: &str, v: &str| {
            user.extra
                .insert(format!("{EXTRA}{k}"), vec![v.to_string()]);
        };
        if let Some((name, uid)) = &self.pod {
            extra("pod-name", name);
            extra("pod-uid", uid);
        }
        if let Some((name, uid)) = &self.node {
            extra("node-name", name);
            if !uid.is_empty() {
                extra("node-uid", uid);
            }
        }
        if let Some(jti) = &self.jti {
            extra("credential-id", &format!("JTI={jti}"));
        }
        user
    }
}

impl Tokens {
    /// Loads the signing key, or makes one (0600) at first start.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Tokens> {
        use anyhow::Context;
        let path = key_path(data_dir);
        let key = if path.exists() {
            let pem = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            SigningKey::from_pem(&pem).with_context(|| format!("loading {}", path.display()))?
        } else {
            let key = SigningKey::generate()?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            write_private(&path, &key.to_pem())
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(path = %path.display(), kid = key.key_id(), "created the service-account signing key");
            key
        };
        Ok(Tokens {
            key,
            issuer: jwt::ISSUER.to_string(),
            api_audiences: vec![jwt::ISSUER.to_string()],
        })
    }

    pub fn sign(&self, claims: &Value) -> Result<String, kaji_api::ApiError> {
        self.key
            .sign(claims)
            .map_err(|e| kaji_api::ApiError::internal(format!("failed to generate token: {e}")))
    }

    /// `/openid/v1/jwks`.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.key.jwk()]})
    }

    /// `/.well-known/openid-configuration` (upstream's openidmetadata.go); `external` is the
    /// API server's address, where the JWKS is served.
    pub fn openid_configuration(&self, external: &str) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("https://{external}/openid/v1/jwks"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }

    /// The user of a service-account token, if `token` is one that is valid now for the API
    /// server's audiences.
    pub async fn authenticate(&self, server: &ApiServer, token: &str) -> Option<User> {
        match self.review(server, token, &self.api_audiences).await {
            Ok((info, _)) => Some(info.user()),
            Err(e) => {
                tracing::debug!(error = %e, "service-account token rejected");
                None
            }
        }
    }

    /// Checks a token for `audiences` (TokenReview's `spec.audiences`, else the API audiences):
    /// who it is and which of the audiences it is good for, or why not (TokenReview's
    /// `status.error`).
    pub async fn review(
        &self,
        server: &ApiServer,
        token: &str,
        audiences: &[String],
    ) -> Result<(Info, Vec<String>), String> {
        if !jwt::looks_like_jwt(token) {
            return Err("not a JWT".into());
        }
        let claims = self.key.verify(token).map_err(|e| match e {
            // What upstream's JOSE library says of a signature that does not verify.
            jwt::JwtError::Signature => {
                "go-jose/go-jose: error in cryptographic primitive".to_string()
            }
            e => e.to_string(),
        })?;
        let issuer = claims
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let token_audiences: Vec<String> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            // Legacy tokens carry none: they are good for the API server's own audiences.
            _ => self.api_audiences.clone(),
        };
        let good_for: Vec<String> = audiences
            .iter()
            .filter(|a| token_audiences.contains(a))
            .cloned()
            .collect();
        if good_for.is_empty() {
            return Err(format!(
                "token audiences {token_audiences:?} is invalid for the target audiences {audiences:?}"
            ));
        }
        let info = if issuer == jwt::LEGACY_ISSUER {
            self.validate_legacy(server, token, &claims).await?
        } else if issuer == self.issuer {
            self.validate_bound(server, &claims).await?
        } else {
            return Err(format!("token issuer {issuer:?} is not accepted"));
        };
        Ok((info, good_for))
    }

    async fn validate_bound(&self, server: &ApiServer, claims: &Value) -> Result<Info, String> {
        let now = jiff::Timestamp::now().as_second();
        let num = |k: &str| claims.get(k).and_then(Value::as_i64);
        // A bound token without `exp` is refused as expired (upstream's validateSATimes).
        if num("exp").is_none_or(|exp| now > exp + LEEWAY_SECONDS) {
            return Err("service account token has expired".into());
        }
        if num("nbf").is_some_and(|nbf| now + LEEWAY_SECONDS < nbf) {
            return Err("service account token is not valid yet".into());
        }
        let k = claims
            .get("kubernetes.io")
            .ok_or("service account token claims could not be validated")?;
        let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
        let namespace = s(k.get("namespace"));
        let name = s(k.pointer("/serviceaccount/name"));
        let uid = s(k.pointer("/serviceaccount/uid"));
        if namespace.is_empty() || name.is_empty() {
            return Err("service account token claims could not be validated".into());
        }
        check_service_account(server, &namespace, &name, &uid, now).await?;
        let mut info = Info {
            namespace: namespace.clone(),
            name,
            uid,
            jti: claims
                .get("jti")
                .and_then(Value::as_str)
                .map(str::to_string),
            ..Info::default()
        };
        for (kind, plural, namespaced) in [
            ("secret", "secrets", true),
            ("pod", "pods", true),
            ("node", "nodes", false),
        ] {
            let Some(r) = k.get(kind) else { continue };
            let (rname, ruid) = (s(r.get("name")), s(r.get("uid")));
            // A pod-bound token's node claims are information only (upstream validates the
            // node of node-bound tokens alone).
            if kind == "node" && info.pod.is_some() {
                info.node = Some((rname, ruid));
                continue;
            }
            let obj = get(
                server,
                plural,
                namespaced.then_some(namespace.as_str()),
                &rname,
            )
            .await;
            let live = obj
                .as_ref()
                .filter(|o| !deleted_before(o, now - LEEWAY_SECONDS));
            match live {
                None => return Err("service account token has been invalidated".into()),
                Some(o) if crate::objects::meta_str(o, "uid").unwrap_or_default() != ruid => {
                    return Err(format!(
                        "{kind} UID ({}) does not match service account {kind} ref claim ({ruid})",
                        crate::objects::meta_str(o, "uid").unwrap_or_default()
                    ));
                }
                Some(_) => {}
            }
            match kind {
                "pod" => info.pod = Some((rname, ruid)),
                "node" => info.node = Some((rname, ruid)),
                _ => {}
            }
        }
        Ok(info)
    }

    /// Upstream's legacyValidator: the Secret still exists, still holds this token, and its
    /// ServiceAccount still exists with the same UID.
    async fn validate_legacy(
        &self,
        server: &ApiServer,
        token: &str,
        claims: &Value,
    ) -> Result<Info, String> {
        let c = |k: &str| {
            claims
                .get(format!("kubernetes.io/serviceaccount/{k}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (namespace, secret_name, name, uid) = (
            c("namespace"),
            c("secret.name"),
            c("service-account.name"),
            c("service-account.uid"),
        );
        if namespace.is_empty() || secret_name.is_empty() || name.is_empty() {
            return Err("service account token claims could not be validated".into());
        }
        let now = jiff::Timestamp::now().as_second();
        let secret = get(server, "secrets", Some(&namespace), &secret_name)
            .await
            .ok_or("service account token has been invalidated")?;
        if deleted_before(&secret, now - LEEWAY_SECONDS) {
            return Err("service account token has been invalidated".into());
        }
        let stored = secret
            .pointer("/data/token")
            .and_then(Value::as_str)
            .unwrap_or_default();
        use base64::Engine;
        let stored = base64::engine::general_purpose::STANDARD
            .decode(stored)
            .unwrap_or_default();
        if stored != token.as_bytes() {
            return Err("service account token has been invalidated".into());
        }
        if secret.pointer(&label(INVALID_SINCE_LABEL)).is_some() {
            return Err(format!(
                "the token in secret {namespace}/{secret_name} for service account {namespace}/{name} has been marked invalid. Use tokens from the TokenRequest API or manually created secret-based tokens, or remove the '{INVALID_SINCE_LABEL}' label from the secret to regain access"
            ));
        }
        check_service_account(server, &namespace, &name, &uid, now).await?;
        mark_used(server, &namespace, &secret_name, &secret).await;
        Ok(Info {
            namespace,
            name,
            uid,
            ..Info::default()
        })
    }
}

/// Upstream's legacy-token tracking labels (LegacyServiceAccountTokenTracking, CleanUp).
const LAST_USED_LABEL: &str = "kubernetes.io/legacy-token-last-used";
const INVALID_SINCE_LABEL: &str = "kubernetes.io/legacy-token-invalid-since";

fn label(key: &str) -> String {
    format!("/metadata/labels/{}", key.replace('/', "~1"))
}

/// Records the day a legacy token was last used on its Secret (at most one write a day).
async fn mark_used(server: &ApiServer, namespace: &str, name: &str, secret: &Value) {
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    if secret
        .pointer(&label(LAST_USED_LABEL))
        .and_then(Value::as_str)
        == Some(today.as_str())
    {
        return;
    }
    let Some(strategy) = server.registry.get("", "v1", "secrets") else {
        return;
    };
    let store = crate::registry::store::Store::of(server, &strategy);
    let opts = crate::registry::store::WriteOptions {
        dry_run: false,
        field_manager: None,
    };
    let r = store
        .guaranteed_update(
            Some(namespace),
            name,
            crate::registry::store::Part::System,
            &opts,
            |cur| {
                let mut next = cur.clone();
                let labels = crate::objects::meta_mut(&mut next)
                    .entry("labels")
                    .or_insert_with(|| json!({}));
                if !labels.is_object() {
                    *labels = json!({});
                }
                if let Some(labels) = labels.as_object_mut() {
                    labels.insert(LAST_USED_LABEL.into(), json!(today));
                }
                Ok(next)
            },
        )
        .await;
    if let Err(e) = r {
        tracing::debug!(namespace, name, error = %e, "could not record a legacy token's use");
    }
}

async fn check_service_account(
    server: &ApiServer,
    namespace: &str,
    name: &str,
    uid: &str,
    now: i64,
) -> Result<(), String> {
    let sa = get(server, "serviceaccounts", Some(namespace), name)
        .await
        .ok_or_else(|| format!("serviceaccounts {name:?} not found"))?;
    if deleted_before(&sa, now - LEEWAY_SECONDS) {
        return Err(format!(
            "service account {namespace}/{name} has been deleted"
        ));
    }
    let live_uid = crate::objects::meta_str(&sa, "uid").unwrap_or_default();
    if live_uid != uid {
        return Err(format!(
            "service account UID ({live_uid}) does not match claim ({uid})"
        ));
    }
    Ok(())
}

/// Whether the object's deletionTimestamp is before `t` (Unix seconds).
fn deleted_before(obj: &Value, t: i64) -> bool {
    crate::objects::meta_str(obj, "deletionTimestamp")
        .and_then(|d| d.parse::<jiff::Timestamp>().ok())
        .is_some_and(|d| d.as_second() < t)
}

/// A core/v1 object straight from the store.
pub async fn get(
    server: &ApiServer,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Option<Value> {
    if name.is_empty() {
        return None;
    }
    let strategy = server.registry.get("", "v1", plural)?;
    let kv = server
        .store
        .get(&strategy.key(namespace, name))
        .await
        .ok()??;
    Some(strategy.decode(&kv))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_made_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("kaji-sa-key-{}", uuid::Uuid::new_v4()));
        let a = Tokens::load_or_create(&dir).unwrap();
        let meta = std::fs::metadata(key_path(&dir)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let b = Tokens::load_or_create(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(a.jwks(), b.jwks());
        let t = a.sign(&json!({"x": 1})).unwrap();
        assert_eq!(b.key.verify(&t).unwrap(), json!({"x": 1}));
    }

    #[test]
    fn user_of_a_pod_bound_token_as_upstream() {
        let info = Info {
            namespace: "ns".into(),
            name: "sa".into(),
            uid: "u".into(),
            pod: Some(("p".into(), "pu".into())),
            node: Some(("n".into(), "nu".into())),
            jti: Some("j".into()),
        };
        let u = info.user();
        assert_eq!(u.name, "system:serviceaccount:ns:sa");
        assert_eq!(
            u.groups,
            vec!["system:serviceaccounts", "system:serviceaccounts:ns"]
        );
        assert_eq!(u.extra["authentication.kubernetes.io/pod-uid"], vec!["pu"]);
        assert_eq!(u.extra["authentication.kubernetes.io/node-name"], vec!["n"]);
        assert_eq!(
            u.extra["authentication.kubernetes.io/credential-id"],
            vec!["JTI=j"]
        );
    }
}
