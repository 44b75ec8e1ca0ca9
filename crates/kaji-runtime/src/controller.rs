//! The controller harness: kube-runtime's `Controller` fed by the process's shared informers,
//! with client-go's default per-key rate limiter (exponential back-off from 5 ms to 1000 s,
//! forgotten after a success) and failures logged at `warn` with the object's key.

use futures::StreamExt;
use futures::future::BoxFuture;
use kube::Resource;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::informer::{Factory, Informer};

/// client-go's `ItemExponentialFailureRateLimiter(5ms, 1000s)`.
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(5), Duration::from_secs(1000))
    }
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The delay before the next try of `key`, which just failed: base * 2^(failures so far).
    pub fn next(&self, key: &str) -> Duration {
        let mut f = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = f.entry(key.to_string()).or_insert(0);
        let exp = (*n).min(30);
        *n += 1;
        self.base.saturating_mul(1u32 << exp).min(self.max)
    }

    /// `key` succeeded: its next failure starts again from the base delay.
    pub fn forget(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }
}

struct Harness<C> {
    name: &'static str,
    ctx: Arc<C>,
    backoff: Backoff,
}

/// A kube-runtime controller over `informer`'s cache and changes (no watch of its own).
pub fn for_informer<K>(informer: &Informer<K>) -> Controller<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    Controller::for_shared_stream(informer.objects(), informer.store())
}

/// The loop that runs `controller` with `reconcile` once the factory's informers have their
/// first lists (client-go's `WaitForCacheSync`), until its triggers end: a failed reconcile is
/// retried after the key's back-off and logged at `warn`; a success forgets the key's failures.
pub fn run<K, C, E, F, Fut>(
    name: &'static str,
    factory: &Factory,
    controller: Controller<K>,
    reconcile: F,
    ctx: Arc<C>,
) -> BoxFuture<'static, anyhow::Result<()>>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    C: Send + Sync + 'static,
    E: std::error::Error + Send + 'static,
    F: Fn(Arc<K>, Arc<C>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
{
    let factory = factory.clone();
    Box::pin(async move {
        factory.synced().await;
        let harness = Arc::new(Harness {
            name,
            ctx,
            backoff: Backoff::default(),
        });
        let reconcile = Arc::new(reconcile);
        controller
        .run(
            move |obj: Arc<K>, h: Arc<Harness<C>>| {
                let key = ObjectRef::from_obj(obj.as_ref()).to_string();
                let fut = reconcile(obj, h.ctx.clone());
                async move {
                    let r = fut.await;
                    if r.is_ok() {
                        h.backoff.forget(&key);
                    }
                    r
                }
            },
            |obj: Arc<K>, err: &E, h: Arc<Harness<C>>| {
                let key = ObjectRef::from_obj(obj.as_ref()).to_string();
                let delay = h.backoff.next(&key);
                tracing::warn!(controller = h.name, %key, error = %err, retry_in = ?delay, "sync failed");
                Action::requeue(delay)
            },
            harness,
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(controller = name, error = %e, "controller");
            }
        })
        .await;
        Ok(())
    })
}

/// A reconcile error of any cause (the API, or the controller's own checks), shown with its
/// chain of causes.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct Error(anyhow::Error);

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        Error(e)
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_5ms_to_1000s_per_key_and_forgets_on_success() {
        let b = Backoff::default();
        let ms = |d: Duration| d.as_millis();
        assert_eq!(ms(b.next("a")), 5);
        assert_eq!(ms(b.next("a")), 10);
        assert_eq!(ms(b.next("a")), 20);
        assert_eq!(ms(b.next("b")), 5);
        for _ in 0..30 {
            b.next("a");
        }
        assert_eq!(b.next("a"), Duration::from_secs(1000));
        b.forget("a");
        assert_eq!(ms(b.next("a")), 5);
    }
}
