//! The controller manager: reconciliation loops that make the declared state so, each a client
//! of the API server (kube-runtime watchers and controllers), one file per controller.
//! Where to start: [`run`] elects a leader (the Lease `kube-system/kube-controller-manager`,
//! kaji-runtime's elector) and, while this process leads, runs them all; each controller's file
//! opens with what it does.
//! Controllers are built on kaji-runtime: one informer factory per controller manager (one watch
//! per kind), the controller harness (per-key back-off) and the one event recorder.

pub mod certificates;
pub mod clusterroleaggregation;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod garbagecollector;
pub mod job;
pub mod history;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod persistentvolume;
pub mod podautoscaler;
pub mod pod_control;
pub mod podgc;
pub mod replicaset;
pub mod resourcequota;
pub mod rootcacertpublisher;
pub mod serviceaccount;
pub mod serviceaccount_tokens;
pub mod servicelb;
pub mod ttlafterfinished;
pub mod statefulset;

use kaji_runtime::informer::Factory;
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
    /// The HPA controller's `--horizontal-pod-autoscaler-*` settings.
    pub horizontal_pod_autoscaler: podautoscaler::Settings,
    /// The pod garbage collector's settings (`--terminated-pod-gc-threshold`).
    pub pod_gc: podgc::Settings,
    /// The CSR signer's CA (`--cluster-signing-cert-file`/`--cluster-signing-key-file`); None: off.
    pub cluster_signing: Option<certificates::Signing>,
    /// The tokens controller's key and CA (`--service-account-private-key-file`,
    /// `--root-ca-file`); None: off.
    pub service_account_tokens: Option<serviceaccount_tokens::Settings>,
    /// Take part in leader election (upstream `--leader-elect`, default true).
    pub leader_elect: bool,
    /// Identity in the Lease (upstream: `<hostname>_<uuid>`).
    pub identity: String,
    /// Lease duration, renew deadline and retry period of the election.
    pub leader_election: kaji_runtime::leader::Timing,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            node_monitor_grace_period: Duration::from_secs(40),
            cluster_cidr: nodeipam::CLUSTER_CIDR,
            servicelb: true,
            horizontal_pod_autoscaler: podautoscaler::Settings::default(),
            pod_gc: podgc::Settings::default(),
            cluster_signing: None,
            service_account_tokens: None,
            leader_elect: true,
            identity: kaji_runtime::leader::default_identity(),
            leader_election: kaji_runtime::leader::Timing::default(),
        }
    }
}

/// Runs the controller manager until a controller fails: with `leader_elect`, only while this
/// process holds the Lease `kube-system/kube-controller-manager` (others stand by).
///
/// A leader that cannot renew stops leading. Upstream's process exits then; here the controllers
/// run in a term of their own (a runtime on its own thread) that is shut down, every task it
/// spawned with it, and the process campaigns again: exiting would take down the API server
/// and the node that share the process, and nothing of the old term keeps writing.
/// The informers belong to the factory, not to a term: they run on the runtime the factory was
/// made on and keep their caches warm while the process stands by, as the scheduler's do.
pub async fn run(client: Client, opts: Options) -> anyhow::Result<()> {
    run_on(Factory::new(client), opts).await
}

/// [`run`] on the informers of `factory` (shared with the other components of the process),
/// writing with `factory`'s client.
pub async fn run_on(factory: Factory, opts: Options) -> anyhow::Result<()> {
    let client = factory.client();
    if !opts.leader_elect {
        return run_controllers(factory, opts).await;
    }
    let mut elector = kaji_runtime::leader::LeaderElector::new(
        client.clone(),
        kaji_runtime::leader::LeaderElectionConfig::kube_controller_manager(&opts.identity)
            .with_timing(opts.leader_election),
    );
    loop {
        elector.acquire().await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let (f, o) = (factory.clone(), opts.clone());
        std::thread::Builder::new()
            .name("controllers".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("controllers")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = done_tx.send(Err(e.into()));
                        return;
                    }
                };
                let result = rt.block_on(async move {
                    tokio::select! {
                        r = run_controllers(f, o) => Some(r),
                        _ = stopped => None,
                    }
                });
                // Every task of the term (watches, workers, event writers) ends here.
                rt.shutdown_timeout(Duration::from_secs(5));
                if let Some(r) = result {
                    let _ = done_tx.send(r);
                }
            })?;
        tokio::select! {
            () = elector.keep_renewing() => {
                let _ = stop.send(());
            }
            r = done => return r.unwrap_or(Ok(())),
        }
    }
}

/// Runs every controller until one of them fails. Each controller registers the informers it
/// needs with one factory first, then the factory starts them, one watch per kind for the whole
/// controller manager.
async fn run_controllers(f: Factory, opts: Options) -> anyhow::Result<()> {
    let mut loops = vec![
        ("replicaset", replicaset::run(&f, opts.clone())),
        ("deployment", deployment::run(&f, opts.clone())),
        ("daemonset", daemonset::run(&f, opts.clone())),
        ("disruption", disruption::run(&f, opts.clone())),
        ("job", job::run(&f, opts.clone())),
        ("cronjob", cronjob::run(&f, opts.clone())),
        ("ttlafterfinished", ttlafterfinished::run(&f, opts.clone())),
        ("namespace", namespace::run(&f, opts.clone())),
        ("serviceaccount", serviceaccount::run(&f, opts.clone())),
        ("serviceaccount-token", serviceaccount_tokens::run(&f, opts.clone())),
        ("endpoints", endpoints::run(&f, opts.clone())),
        ("endpointslice", endpointslice::run(&f, opts.clone())),
        ("nodelifecycle", nodelifecycle::run(&f, opts.clone())),
        ("nodeipam", nodeipam::run(&f, opts.clone())),
        ("persistentvolume", persistentvolume::run(&f, opts.clone())),
        ("horizontalpodautoscaler", podautoscaler::run(&f, opts.clone())),
        ("statefulset", statefulset::run(&f, opts.clone())),
        ("podgc", podgc::run(&f, opts.clone())),
        ("resourcequota", resourcequota::run(&f, opts.clone())),
        ("csrsigning", certificates::run(&f, opts.clone())),
        ("root-ca-cert-publisher", rootcacertpublisher::run(&f, opts.clone())),
        ("clusterrole-aggregation", clusterroleaggregation::run(&f, opts.clone())),
    ];
    if opts.servicelb {
        loops.push(("servicelb", servicelb::run(&f, opts.clone())));
    }
    // Last: the garbage collector shares the typed informers registered above.
    loops.push(("garbagecollector", garbagecollector::run(&f, opts.clone())));
    f.start();
    let mut set = tokio::task::JoinSet::new();
    for (name, l) in loops {
        set.spawn(async move { (name, l.await) });
    }
    match set.join_next().await {
        Some(Ok((name, r))) => {
            tracing::error!(controller = name, result = ?r, "a controller stopped; stopping the controller manager");
            r
        }
        Some(Err(e)) => Err(e.into()),
        None => Ok(()),
    }
}
