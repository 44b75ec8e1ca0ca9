//! What the proxy serves from: an immutable routing table and certificate table, rebuilt whole
//! on every change and swapped in behind a short read lock.

use crate::class;
use crate::events::Problem;
use crate::routing::RoutingTable;
use crate::tls::CertTable;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use std::sync::{Arc, RwLock};

#[derive(Debug, Default)]
pub struct Snapshot {
    pub routes: RoutingTable,
    pub certs: CertTable,
}

/// The objects a snapshot is built from (the reflectors' contents).
pub struct ClusterState<'a> {
    pub class_name: &'a str,
    pub ingresses: &'a [Arc<Ingress>],
    pub ingress_classes: &'a [Arc<IngressClass>],
    pub services: &'a [Arc<Service>],
    pub endpoint_slices: &'a [Arc<EndpointSlice>],
    pub secrets: &'a [Arc<Secret>],
}

impl ClusterState<'_> {
    /// The Ingresses this controller serves.
    pub fn served(&self) -> Vec<&Ingress> {
        let ours = self
            .ingress_classes
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(self.class_name));
        let default = class::is_default_class(ours.map(|c| &**c));
        self.ingresses
            .iter()
            .map(|i| &**i)
            .filter(|i| class::serves(i, self.class_name, default))
            .collect()
    }
}

impl Snapshot {
    /// A pure function of the cluster state; also returns what served Ingresses ask for that
    /// does not exist (Services, TLS Secrets).
    pub fn build(state: &ClusterState<'_>) -> (Self, Vec<Problem>) {
        let served = state.served();
        let (routes, mut problems) =
            RoutingTable::build_reporting(&served, state.services, state.endpoint_slices);
        let (certs, tls_problems) = CertTable::build(&served, state.secrets);
        problems.extend(tls_problems);
        (Self { routes, certs }, problems)
    }
}

/// Shared by the proxy, the TLS resolver and the controller that rebuilds.
#[derive(Clone, Debug, Default)]
pub struct SnapshotHandle(Arc<RwLock<Arc<Snapshot>>>);

impl SnapshotHandle {
    pub fn new(snapshot: Snapshot) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(snapshot))))
    }

    /// The current snapshot (the lock is held only to clone the `Arc`).
    pub fn load(&self) -> Arc<Snapshot> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn store(&self, snapshot: Snapshot) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(snapshot);
    }
}
