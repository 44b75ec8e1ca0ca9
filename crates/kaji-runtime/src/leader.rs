//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection`, shared
//! by the scheduler and the controller manager: whoever holds an unexpired lease leads; the
//! leader renews every `retry_period` and steps down if it cannot renew within `renew_deadline`;
//! others take over once the record has not changed for `lease_duration` (judged by their own
//! clock, as upstream, to survive skew). Each change of leader is an Event `LeaderElection` on
//! the Lease ("<identity> became leader", "<identity> stopped leading"), as upstream's
//! `resourcelock.RecordEvent`.

use crate::events::Recorder;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct LeaderElectionConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// The component named as the events' source (`kube-controller-manager`, `default-scheduler`).
    pub component: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// How long a lease lasts and how often it is renewed and retried: upstream's
/// `--leader-elect-lease-duration`, `--leader-elect-renew-deadline`, `--leader-elect-retry-period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for Timing {
    /// Upstream's defaults: 15 s, 10 s, 2 s.
    fn default() -> Timing {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaderElectionConfig {
    /// The same lease with other timing.
    pub fn with_timing(self, t: Timing) -> LeaderElectionConfig {
        LeaderElectionConfig {
            lease_duration: t.lease_duration,
            renew_deadline: t.renew_deadline,
            retry_period: t.retry_period,
            ..self
        }
    }

    /// Upstream's defaults (`--leader-elect-lease-duration` 15 s, `--leader-elect-renew-deadline`
    /// 10 s, `--leader-elect-retry-period` 2 s) for the Lease `kube-system/<name>`.
    pub fn defaults(name: &str, component: &str, identity: &str) -> LeaderElectionConfig {
        LeaderElectionConfig {
            namespace: "kube-system".into(),
            name: name.into(),
            identity: identity.to_string(),
            component: component.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// kube-scheduler's: `kube-system/kube-scheduler`.
    pub fn kube_scheduler(identity: &str) -> LeaderElectionConfig {
        Self::defaults("kube-scheduler", "default-scheduler", identity)
    }

    /// kube-controller-manager's: `kube-system/kube-controller-manager`.
    pub fn kube_controller_manager(identity: &str) -> LeaderElectionConfig {
        Self::defaults(
            "kube-controller-manager",
            "kube-controller-manager",
            identity,
        )
    }
}

/// An identity as upstream's components make one: `<hostname>_<uuid>`, unique per process.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let mut bytes = [0u8; 16];
    // A v4 UUID from the kernel's random source, without a crate for it.
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            ^ u128::from(std::process::id());
        bytes = n.to_le_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{host}_{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

pub struct LeaderElector {
    api: Api<Lease>,
    cfg: LeaderElectionConfig,
    observed: Option<(LeaseSpec, Instant)>,
    /// The Lease as last written by us (the events' involvedObject).
    lease: Option<Lease>,
    recorder: Recorder,
}

impl LeaderElector {
    pub fn new(client: kube::Client, cfg: LeaderElectionConfig) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client.clone(), &cfg.namespace),
            recorder: Recorder::new(client, &cfg.component),
            cfg,
            observed: None,
            lease: None,
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
                Ok(written) => {
                    self.observed = Some((spec, Instant::now()));
                    self.lease = Some(written);
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
            Ok(written) => {
                self.observed = Some((spec, Instant::now()));
                self.lease = Some(written);
                true
            }
            Err(e) => {
                tracing::debug!("updating lease: {e}");
                false
            }
        }
    }

    /// Returns once this process holds the lease (and says so in an Event).
    pub async fn acquire(&mut self) {
        loop {
            if self.try_acquire_or_renew().await {
                tracing::info!(identity = %self.cfg.identity, "successfully acquired lease {}/{}", self.cfg.namespace, self.cfg.name);
                self.event("became leader");
                return;
            }
            tokio::time::sleep(self.cfg.retry_period).await;
        }
    }

    /// Renews until a renewal has not succeeded for `renew_deadline`; then returns (lost, said
    /// in an Event).
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
                tracing::warn!(identity = %self.cfg.identity, "failed to renew lease {}/{}: leader election lost", self.cfg.namespace, self.cfg.name);
                self.event("stopped leading");
                return;
            }
        }
    }

    /// The `LeaderElection` event on the Lease: "<identity> <what>".
    fn event(&self, what: &str) {
        let meta = self.lease.as_ref().map(|l| &l.metadata);
        let object = ObjectReference {
            api_version: Some("coordination.k8s.io/v1".into()),
            kind: Some("Lease".into()),
            namespace: Some(self.cfg.namespace.clone()),
            name: Some(self.cfg.name.clone()),
            uid: meta.and_then(|m| m.uid.clone()),
            resource_version: meta.and_then(|m| m.resource_version.clone()),
            ..ObjectReference::default()
        };
        self.recorder.event(
            &object,
            crate::events::NORMAL,
            "LeaderElection",
            None,
            &format!("{} {what}", self.cfg.identity),
        );
    }

    pub fn identity(&self) -> &str {
        &self.cfg.identity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elector(identity: &str) -> LeaderElector {
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap()))
                .unwrap();
        LeaderElector::new(
            client,
            LeaderElectionConfig::kube_controller_manager(identity),
        )
    }

    #[test]
    fn identities_are_hostname_and_a_v4_uuid() {
        let id = default_identity();
        let (host, uuid) = id.rsplit_once('_').expect("<hostname>_<uuid>");
        assert!(!host.is_empty());
        assert_eq!(uuid.len(), 36, "{uuid}");
        assert_eq!(&uuid[14..15], "4", "{uuid}");
        assert_ne!(default_identity(), id, "unique per call");
    }

    #[tokio::test]
    async fn a_new_holder_counts_a_transition_and_a_renewal_keeps_the_acquire_time() {
        let e = elector("b");
        let first = e.record(None);
        assert_eq!(first.holder_identity.as_deref(), Some("b"));
        assert_eq!(first.lease_transitions, Some(0));
        assert_eq!(first.lease_duration_seconds, Some(15));
        let renewed = e.record(Some(&first));
        assert_eq!(renewed.acquire_time, first.acquire_time);
        assert_eq!(renewed.lease_transitions, Some(0));
        let theirs = LeaseSpec {
            holder_identity: Some("a".into()),
            lease_transitions: Some(3),
            ..first.clone()
        };
        let taken = e.record(Some(&theirs));
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.lease_transitions, Some(4));
    }
}
