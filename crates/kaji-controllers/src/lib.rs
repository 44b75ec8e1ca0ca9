//! The controller manager: reconciliation loops that make the declared state so, each a client
//! of the API server (kube-runtime watchers and controllers), one file per controller.
//! Where to start: [`run`] starts them all; each controller's file opens with what it does.
//! `events` records core/v1 Events with upstream's reasons.

pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod events;
pub mod garbagecollector;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod persistentvolume;
pub mod replicaset;
pub mod serviceaccount;
pub mod servicelb;

use kube::Client;
use std::time::Duration;

/// Settings shared by the controllers, with upstream's defaults.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long a node may go without a heartbeat before it is NotReady/Unknown (upstream 40 s).
    pub node_monitor_grace_period: Duration,
    /// The range node IPAM hands /24s out of (`--cluster-cidr`, default 10.42.0.0/16).
    pub cluster_cidr: (std::net::Ipv4Addr, u8),
    /// Run ServiceLB, k3s's built-in LoadBalancer (`--disable servicelb` turns it off).
    pub servicelb: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            node_monitor_grace_period: Duration::from_secs(40),
            cluster_cidr: nodeipam::CLUSTER_CIDR,
            servicelb: true,
        }
    }
}

/// Runs every controller until one of them fails.
pub async fn run(client: Client, opts: Options) -> anyhow::Result<()> {
    let mut set = tokio::task::JoinSet::new();
    set.spawn(replicaset::run(client.clone(), opts.clone()));
    set.spawn(deployment::run(client.clone(), opts.clone()));
    set.spawn(garbagecollector::run(client.clone(), opts.clone()));
    set.spawn(namespace::run(client.clone(), opts.clone()));
    set.spawn(serviceaccount::run(client.clone(), opts.clone()));
    set.spawn(endpoints::run(client.clone(), opts.clone()));
    set.spawn(endpointslice::run(client.clone(), opts.clone()));
    set.spawn(nodelifecycle::run(client.clone(), opts.clone()));
    set.spawn(nodeipam::run(client.clone(), opts.clone()));
    set.spawn(persistentvolume::run(client.clone(), opts.clone()));
    if opts.servicelb {
        set.spawn(servicelb::run(client.clone(), opts.clone()));
    }
    match set.join_next().await {
        Some(r) => r?,
        None => Ok(()),
    }
}
