//! The kubelet's service-account token manager, as upstream's pkg/kubelet/token/token_manager.go:
//! bound tokens for projected `serviceAccountToken` sources come from the TokenRequest API
//! (`POST /api/v1/namespaces/<ns>/serviceaccounts/<sa>/token`) and are cached per service
//! account, audiences, requested expiration and bound object. A cached token is handed out until
//! it is older than 80% of its life or older than 24 hours (each less a random jitter of up to
//! 10 s, so that many pods do not refresh together); a failed refresh keeps the old token until it
//! expires. Tokens of a removed pod are dropped, and expired ones once a minute.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Upstream's `maxTTL`: a token is refreshed after a day even when it would live longer.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Upstream's `maxJitter`.
const MAX_JITTER: Duration = Duration::from_secs(10);
/// Upstream's `gcPeriod`: expired tokens are forgotten this often.
const GC_PERIOD: Duration = Duration::from_secs(60);

/// What a cached token is looked up by (upstream's `keyFunc`: name, namespace, audiences,
/// expirationSeconds and boundObjectRef of the request).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    namespace: String,
    service_account: String,
    audiences: Vec<String>,
    expiration_seconds: Option<i64>,
    /// The bound object as (apiVersion, kind, name, uid).
    bound: Option<(String, String, String, String)>,
}

impl Key {
    fn new(namespace: &str, service_account: &str, spec: &TokenRequestSpec) -> Key {
        Key {
            namespace: namespace.into(),
            service_account: service_account.into(),
            audiences: spec.audiences.clone(),
            expiration_seconds: spec.expiration_seconds,
            bound: spec.bound_object_ref.as_ref().map(|r| {
                (
                    r.api_version.clone().unwrap_or_default(),
                    r.kind.clone().unwrap_or_default(),
                    r.name.clone().unwrap_or_default(),
                    r.uid.clone().unwrap_or_default(),
                )
            }),
        }
    }

    fn bound_uid(&self) -> Option<&str> {
        self.bound.as_ref().map(|b| b.3.as_str())
    }
}

/// A token as the API server issued it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub token: String,
    /// `spec.expirationSeconds` of the answer (the API server may have changed the request's).
    pub expiration_seconds: Option<i64>,
    /// `status.expirationTimestamp`.
    pub expires: SystemTime,
}

impl Token {
    fn from_response(tr: &TokenRequest) -> Result<Token, String> {
        let status = tr
            .status
            .as_ref()
            .ok_or_else(|| "the TokenRequest answer has no status".to_string())?;
        let expires = SystemTime::from(status.expiration_timestamp.0);
        Ok(Token {
            token: status.token.clone(),
            expiration_seconds: tr.spec.expiration_seconds,
            expires,
        })
    }

    /// Upstream's `requiresRefresh`: older than 24 h, or within 20% of its life of expiring
    /// (each less `jitter`). A token whose answer names no lifetime is never refreshed.
    pub fn requires_refresh(&self, now: SystemTime, jitter: Duration) -> bool {
        let Some(secs) = self.expiration_seconds.and_then(|s| u64::try_from(s).ok()) else {
            tracing::error!("expiration seconds was nil for a token request");
            return false;
        };
        let ttl = Duration::from_secs(secs);
        let issued = self
            .expires
            .checked_sub(ttl)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let too_old = issued + MAX_TTL.saturating_sub(jitter);
        if now > too_old {
            return true;
        }
        let refresh_at = self
            .expires
            .checked_sub(Duration::from_secs(secs * 20 / 100) + jitter)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        now > refresh_at
    }

    fn expired(&self, now: SystemTime) -> bool {
        now > self.expires
    }
}

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The cache of a node's service-account tokens (one per agent, shared by its pod workers).
pub struct TokenManager {
    cache: Mutex<Cache>,
    clock: Clock,
}

#[derive(Default)]
struct Cache {
    tokens: HashMap<Key, Token>,
    last_gc: Option<SystemTime>,
}

impl Default for TokenManager {
    fn default() -> Self {
        TokenManager::with_clock(Arc::new(SystemTime::now))
    }
}

impl TokenManager {
    /// A manager reading the time from `clock` (tests move it forward).
    pub fn with_clock(clock: Clock) -> TokenManager {
        TokenManager {
            cache: Mutex::default(),
            clock,
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A token for `spec`: the cached one while it is fresh, else a new one from the API server
    /// (upstream's `GetServiceAccountToken`).
    pub async fn get(
        &self,
        client: &kube::Client,
        namespace: &str,
        service_account: &str,
        spec: TokenRequestSpec,
    ) -> Result<Token, String> {
        self.get_with(namespace, service_account, spec, |ns, sa, spec| {
            request(client, ns, sa, spec)
        })
        .await
    }

    /// [`get`](Self::get) with the TokenRequest call given (tests stand in for the API server).
    pub async fn get_with<F, Fut>(
        &self,
        namespace: &str,
        service_account: &str,
        spec: TokenRequestSpec,
        fetch: F,
    ) -> Result<Token, String>
    where
        F: FnOnce(String, String, TokenRequestSpec) -> Fut,
        Fut: Future<Output = Result<Token, String>>,
    {
        let now = (self.clock)();
        self.collect_garbage(now);
        let key = Key::new(namespace, service_account, &spec);
        let cached = self.cache().tokens.get(&key).cloned();
        if let Some(t) = &cached
            && !t.requires_refresh(now, jitter())
        {
            return Ok(t.clone());
        }
        match fetch(namespace.into(), service_account.into(), spec).await {
            Ok(t) => {
                self.cache().tokens.insert(key, t.clone());
                Ok(t)
            }
            Err(e) => match cached {
                None => Err(format!("failed to fetch token: {e}")),
                Some(t) if t.expired((self.clock)()) => Err(format!(
                    "token {namespace}/{service_account} expired and refresh failed: {e}"
                )),
                Some(t) => {
                    tracing::warn!(namespace, service_account, error = %e, "couldn't update token");
                    Ok(t)
                }
            },
        }
    }

    /// Forgets the tokens bound to the pod `uid` (upstream's `DeleteServiceAccountToken`).
    pub fn delete_pod_tokens(&self, uid: &str) {
        self.cache()
            .tokens
            .retain(|k, _| k.bound_uid() != Some(uid));
    }

    /// How many tokens are cached (for tests and metrics).
    pub fn len(&self) -> usize {
        self.cache().tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops expired tokens, at most once per `GC_PERIOD` (upstream's `cleanup`).
    fn collect_garbage(&self, now: SystemTime) {
        let mut c = self.cache();
        if c.last_gc
            .is_some_and(|t| now.duration_since(t).unwrap_or_default() < GC_PERIOD)
        {
            return;
        }
        c.last_gc = Some(now);
        c.tokens.retain(|_, t| !t.expired(now));
    }
}

/// Up to `MAX_JITTER`, whole seconds as upstream.
fn jitter() -> Duration {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 1];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    Duration::from_secs(u64::from(b[0]) * MAX_JITTER.as_secs() / 256)
}

/// The TokenRequest call (authentication.k8s.io/v1).
async fn request(
    client: &kube::Client,
    namespace: String,
    service_account: String,
    spec: TokenRequestSpec,
) -> Result<Token, String> {
    let body = TokenRequest {
        metadata: Default::default(),
        spec,
        status: None,
    };
    let url = format!("/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token");
    let mut v = serde_json::to_value(&body).map_err(|e| e.to_string())?;
    if let Some(o) = v.as_object_mut() {
        o.insert("apiVersion".into(), "authentication.k8s.io/v1".into());
        o.insert("kind".into(), "TokenRequest".into());
    }
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&v).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let tr: TokenRequest = client.request(req).await.map_err(|e| match e {
        kube::Error::Api(s) => s.message,
        e => e.to_string(),
    })?;
    Token::from_response(&tr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::BoundObjectReference;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn spec(uid: &str, secs: i64) -> TokenRequestSpec {
        TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(secs),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some("p".into()),
                uid: Some(uid.into()),
            }),
        }
    }

    const T0: u64 = 1_800_000_000;

    /// A manager whose clock reads `T0 + offset` seconds.
    fn manager() -> (TokenManager, Arc<AtomicU64>) {
        let offset = Arc::new(AtomicU64::new(0));
        let o = offset.clone();
        let m = TokenManager::with_clock(Arc::new(move || {
            SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + o.load(Ordering::SeqCst))
        }));
        (m, offset)
    }

    /// An API server that issues `token-<n>` living as long as asked, or fails.
    struct Issuer {
        issued: AtomicU64,
        offset: Arc<AtomicU64>,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Issuer {
        fn new(offset: Arc<AtomicU64>) -> Issuer {
            Issuer {
                issued: AtomicU64::new(0),
                offset,
                fail: false.into(),
            }
        }

        fn issue(&self, spec: &TokenRequestSpec) -> Result<Token, String> {
            if self.fail.load(Ordering::SeqCst) {
                return Err("the server is currently unable to handle the request".into());
            }
            let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
            let secs = spec.expiration_seconds.unwrap_or(3600);
            let now = T0 + self.offset.load(Ordering::SeqCst);
            Ok(Token {
                token: format!("token-{n}"),
                expiration_seconds: Some(secs),
                expires: SystemTime::UNIX_EPOCH + Duration::from_secs(now + secs as u64),
            })
        }
    }

    async fn get(m: &TokenManager, issuer: &Issuer, s: TokenRequestSpec) -> Result<String, String> {
        m.get_with("ns", "sa", s, |_, _, s| async move { issuer.issue(&s) })
            .await
            .map(|t| t.token)
    }

    #[test]
    fn refresh_rule_is_80_percent_of_life_or_a_day() {
        let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + s);
        let t = Token {
            token: "t".into(),
            expiration_seconds: Some(600),
            expires: at(600),
        };
        let none = Duration::ZERO;
        assert!(!t.requires_refresh(at(0), none));
        assert!(!t.requires_refresh(at(480), none));
        assert!(t.requires_refresh(at(481), none));
        // The jitter brings the refresh forward by up to 10 s.
        assert!(t.requires_refresh(at(471), Duration::from_secs(10)));
        assert!(!t.requires_refresh(at(470), Duration::from_secs(10)));
        // A year-long token is refreshed after a day.
        let year = Token {
            token: "t".into(),
            expiration_seconds: Some(365 * 86400),
            expires: at(365 * 86400),
        };
        assert!(!year.requires_refresh(at(86400), none));
        assert!(year.requires_refresh(at(86401), none));
        assert!(year.requires_refresh(at(86391), Duration::from_secs(10)));
        // No lifetime in the answer: never refreshed (upstream logs it).
        let odd = Token {
            expiration_seconds: None,
            ..t
        };
        assert!(!odd.requires_refresh(at(10_000), none));
    }

    #[tokio::test]
    async fn caches_until_the_refresh_point_then_rotates() {
        let (m, offset) = manager();
        let issuer = Issuer::new(offset.clone());
        assert_eq!(get(&m, &issuer, spec("u1", 600)).await.unwrap(), "token-1");
        offset.store(400, Ordering::SeqCst);
        assert_eq!(get(&m, &issuer, spec("u1", 600)).await.unwrap(), "token-1");
        // Another pod, or another expiration, is another token.
        assert_eq!(get(&m, &issuer, spec("u2", 600)).await.unwrap(), "token-2");
        assert_eq!(get(&m, &issuer, spec("u1", 3600)).await.unwrap(), "token-3");
        // Past 80% of 600 s (and the jitter of at most 10 s), the token is renewed once.
        offset.store(481, Ordering::SeqCst);
        assert_eq!(get(&m, &issuer, spec("u1", 600)).await.unwrap(), "token-4");
        assert_eq!(get(&m, &issuer, spec("u1", 600)).await.unwrap(), "token-4");
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_token_until_it_expires() {
        let (m, offset) = manager();
        let issuer = Issuer::new(offset.clone());
        assert!(get(&m, &issuer, spec("u1", 600)).await.is_ok());
        issuer.fail.store(true, Ordering::SeqCst);
        offset.store(550, Ordering::SeqCst);
        assert_eq!(get(&m, &issuer, spec("u1", 600)).await.unwrap(), "token-1");
        offset.store(601, Ordering::SeqCst);
        let e = get(&m, &issuer, spec("u1", 600)).await.unwrap_err();
        assert!(e.contains("expired and refresh failed"), "{e}");
        let e = get(&m, &issuer, spec("u9", 600)).await.unwrap_err();
        assert!(e.starts_with("failed to fetch token: "), "{e}");
    }

    #[tokio::test]
    async fn tokens_of_removed_pods_and_expired_tokens_are_dropped() {
        let (m, offset) = manager();
        let issuer = Issuer::new(offset.clone());
        get(&m, &issuer, spec("u1", 600)).await.unwrap();
        get(&m, &issuer, spec("u2", 3600)).await.unwrap();
        get(&m, &issuer, spec("u3", 3600)).await.unwrap();
        assert_eq!(m.len(), 3);
        m.delete_pod_tokens("u2");
        assert_eq!(m.len(), 2);
        // After 601 s the 600-s token has expired and goes at the next collection.
        offset.store(601, Ordering::SeqCst);
        get(&m, &issuer, spec("u3", 3600)).await.unwrap();
        assert_eq!(m.len(), 1);
    }
}
