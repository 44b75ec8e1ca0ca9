//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection`:
//! whoever holds an unexpired lease leads; the leader renews every `retry_period` and steps
//! down if it cannot renew within `renew_deadline`; others take over once the record has not
//! changed for `lease_duration` (judged by their own clock, as upstream, to survive skew).

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct LeaderElectionConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// kube-scheduler's defaults: `kube-system/kube-scheduler`, 15 s / 10 s / 2 s.
    pub fn kube_scheduler(identity: &str) -> LeaderElectionConfig {
        LeaderElectionConfig {
            namespace: "kube-system".into(),
            name: "kube-scheduler".into(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

pub struct LeaderElector {
    api: Api<Lease>,
    cfg: LeaderElectionConfig,
    observed: Option<(LeaseSpec, Instant)>,
}

impl LeaderElector {
    pub fn new(client: kube::Client, cfg: LeaderElectionConfig) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: None,
        }
    }

    fn record(&self, old: Option<&LeaseSpec>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        let ours =
            old.is_some_and(|o| o.holder_identity.as_deref() == Some(self.cfg.identity.as_str()));
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(15),
            ),
            acquire_time: if ours {
                old.and_then(|o| o.acquire_time.clone())
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(
                old.and_then(|o| o.lease_transitions).unwrap_or(0)
                    + i32::from(old.is_some() && !ours),
            ),
            ..LeaseSpec::default()
        }
    }

    /// One attempt to take or keep the lease (upstream `tryAcquireOrRenew`).
    pub async fn try_acquire_or_renew(&mut self) -> bool {
        let lease = match self.api.get_opt(&self.cfg.name).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!("getting lease: {e}");
                return false;
            }
        };
        let Some(mut lease) = lease else {
            let spec = self.record(None);
            let new = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec.clone()),
            };
            return match self.api.create(&PostParams::default(), &new).await {
                Ok(_) => {
                    self.observed = Some((spec, Instant::now()));
                    true
                }
                Err(_) => false,
            };
        };
        let current = lease.spec.clone().unwrap_or_default();
        if self.observed.as_ref().is_none_or(|(o, _)| *o != current) {
            self.observed = Some((current.clone(), Instant::now()));
        }
        let observed_at = self
            .observed
            .as_ref()
            .map_or_else(Instant::now, |(_, t)| *t);
        let holder = current.holder_identity.as_deref().unwrap_or("");
        let duration = Duration::from_secs(
            u64::try_from(current.lease_duration_seconds.unwrap_or(15)).unwrap_or(15),
        );
        if !holder.is_empty() && holder != self.cfg.identity && observed_at.elapsed() < duration {
            return false;
        }
        let spec = self.record(Some(&current));
        lease.spec = Some(spec.clone());
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                self.observed = Some((spec, Instant::now()));
                true
            }
            Err(e) => {
                tracing::debug!("updating lease: {e}");
                false
            }
        }
    }

    /// Returns once this process holds the lease.
    pub async fn acquire(&mut self) {
        loop {
            if self.try_acquire_or_renew().await {
                return;
            }
            tokio::time::sleep(self.cfg.retry_period).await;
        }
    }

    /// Renews until a renewal has not succeeded for `renew_deadline`; then returns (lost).
    pub async fn keep_renewing(&mut self) {
        let mut last = Instant::now();
        loop {
            tokio::time::sleep(self.cfg.retry_period).await;
            let ok = tokio::time::timeout(self.cfg.renew_deadline, self.try_acquire_or_renew())
                .await
                .unwrap_or(false);
            if ok {
                last = Instant::now();
            } else if last.elapsed() >= self.cfg.renew_deadline {
                return;
            }
        }
    }

    pub fn identity(&self) -> &str {
        &self.cfg.identity
    }
}
