//! The webhook configurations as the dispatcher uses them: read from the store, kept half a
//! second (re-read at once for a second after any configuration write, so a new one applies
//! within the second), ordered as upstream (configurations by name, webhooks in order).

use crate::ApiServer;
use crate::registry::store::{Filter, ListOptions, Store};
use base64::Engine;
use kaji_api::selector::LabelSelector;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// How long a read of the configurations is used.
const FRESH_FOR: Duration = Duration::from_millis(500);
/// After a configuration write, every request reads them again for this long.
const REREAD_AFTER_WRITE: Duration = Duration::from_secs(1);

pub(super) struct Rule {
    pub operations: Vec<String>,
    pub api_groups: Vec<String>,
    pub api_versions: Vec<String>,
    pub resources: Vec<String>,
    pub scope: String,
}

/// Where a webhook is.
pub(crate) enum Target {
    Url(String),
    Service {
        namespace: String,
        name: String,
        port: u16,
        path: String,
    },
}

/// One webhook of a configuration.
pub(super) struct Hook {
    pub configuration: String,
    pub mutating: bool,
    pub name: String,
    pub rules: Vec<Rule>,
    pub ignore_failures: bool,
    pub namespace_selector: LabelSelector,
    pub object_selector: LabelSelector,
    pub side_effects: String,
    pub timeout_seconds: u64,
    pub reinvoke: bool,
    pub review_versions: Vec<String>,
    pub target: Target,
    pub ca_bundle: Option<Vec<u8>>,
}

#[derive(Default)]
struct Cache {
    read_at: Option<Instant>,
    reread_until: Option<Instant>,
    hooks: Arc<Vec<Arc<Hook>>>,
    tls: HashMap<Option<Vec<u8>>, Arc<rustls::ClientConfig>>,
}

/// One cache per API server (keyed by its store's address: tests run several in a process).
static CACHES: LazyLock<Mutex<HashMap<usize, Cache>>> = LazyLock::new(Mutex::default);

fn key(server: &ApiServer) -> usize {
    Arc::as_ptr(&server.store).cast::<()>() as usize
}

fn with_cache<R>(server: &ApiServer, f: impl FnOnce(&mut Cache) -> R) -> R {
    let mut caches = CACHES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(caches.entry(key(server)).or_default())
}

/// A configuration is being written: read them again for the next second.
pub(super) fn invalidate(server: &ApiServer) {
    with_cache(server, |c| {
        c.reread_until = Some(Instant::now() + REREAD_AFTER_WRITE)
    });
}

/// The webhooks of every configuration, mutating and validating.
pub(super) async fn hooks(server: &Arc<ApiServer>) -> Arc<Vec<Arc<Hook>>> {
    let now = Instant::now();
    let cached = with_cache(server, |c| {
        let fresh = c.read_at.is_some_and(|t| now.duration_since(t) < FRESH_FOR)
            && c.reread_until.is_none_or(|t| now >= t);
        fresh.then(|| c.hooks.clone())
    });
    if let Some(h) = cached {
        return h;
    }
    let mut all = Vec::new();
    for mutating in [true, false] {
        let strategy = crate::registry::admissionregistration::strategy(mutating);
        let page = match Store::of(server, &strategy)
            .list(None, &Filter::everything(), &ListOptions::default())
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "reading webhook configurations");
                continue;
            }
        };
        let mut configs = page.items;
        configs.sort_by(|a, b| {
            crate::objects::meta_str(a, "name").cmp(&crate::objects::meta_str(b, "name"))
        });
        for c in &configs {
            let cname = crate::objects::meta_str(c, "name").unwrap_or_default();
            for h in c
                .get("webhooks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                all.push(Arc::new(parse(cname, mutating, h)));
            }
        }
    }
    let hooks = Arc::new(all);
    with_cache(server, |c| {
        c.read_at = Some(now);
        c.hooks = hooks.clone();
    });
    hooks
}

/// The TLS client configuration for a caBundle (cached: parsing certificates is not free).
pub(super) fn tls(
    server: &ApiServer,
    ca_bundle: Option<&[u8]>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let key_bundle = ca_bundle.map(<[u8]>::to_vec);
    if let Some(t) = with_cache(server, |c| c.tls.get(&key_bundle).cloned()) {
        return Ok(t);
    }
    let t = crate::aggregator::proxy::tls_config(&server.aggregator, ca_bundle, false)?;
    with_cache(server, |c| {
        if c.tls.len() > 64 {
            c.tls.clear();
        }
        c.tls.insert(key_bundle, t.clone());
    });
    Ok(t)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn selector(v: Option<&Value>) -> LabelSelector {
    // Validation refused bad selectors.
    v.filter(|v| !v.is_null())
        .and_then(|s| LabelSelector::from_object(s).ok())
        .unwrap_or_default()
}

fn parse(configuration: &str, mutating: bool, h: &Value) -> Hook {
    let s = |k: &str| {
        h.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let rules = h
        .get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|r| Rule {
            operations: strings(r.get("operations")),
            api_groups: strings(r.get("apiGroups")),
            api_versions: strings(r.get("apiVersions")),
            resources: strings(r.get("resources")),
            scope: r
                .get("scope")
                .and_then(Value::as_str)
                .unwrap_or("*")
                .to_string(),
        })
        .collect();
    let (target, ca_bundle) = client_config(h.get("clientConfig").unwrap_or(&Value::Null));
    Hook {
        configuration: configuration.to_string(),
        mutating,
        name: s("name"),
        rules,
        ignore_failures: s("failurePolicy") == "Ignore",
        namespace_selector: selector(h.get("namespaceSelector")),
        object_selector: selector(h.get("objectSelector")),
        side_effects: s("sideEffects"),
        timeout_seconds: h
            .get("timeoutSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(10)
            .clamp(1, 30),
        reinvoke: s("reinvocationPolicy") == "IfNeeded",
        review_versions: strings(h.get("admissionReviewVersions")),
        target,
        ca_bundle,
    }
}

/// A `clientConfig` (admission webhooks, and a CRD's conversion webhook): where to post and the
/// caBundle to trust. Validation has refused configurations without `url` or `service`.
pub(crate) fn client_config(cc: &Value) -> (Target, Option<Vec<u8>>) {
    let target = match cc.get("url").and_then(Value::as_str) {
        Some(u) => Target::Url(u.to_string()),
        None => {
            let svc = cc.get("service").cloned().unwrap_or(Value::Null);
            let g = |k: &str| {
                svc.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            Target::Service {
                namespace: g("namespace"),
                name: g("name"),
                port: svc
                    .get("port")
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(443),
                path: g("path"),
            }
        }
    };
    let ca_bundle = cc
        .get("caBundle")
        .and_then(Value::as_str)
        .filter(|b| !b.is_empty())
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    (target, ca_bundle)
}
