//! The scheduler: watches unscheduled pods of `default-scheduler` and binds them to nodes
//! through pods/binding, with upstream kube-scheduler's semantics.
//!
//! Where to start: [`run`] elects a leader ([`leader`]) and runs [`scheduler::Scheduler`], whose
//! loop pops pods from the [`queue`], runs one cycle of [`schedule_one`] over the in-memory
//! [`cache`] with the [`plugins`] of the [`framework`], tries [`preemption`] when nothing fits,
//! and records events (kaji-runtime's recorder). The cache and queue are fed by [`informers`]
//! (handlers on kaji-runtime's shared informers).

pub mod cache;
pub mod framework;
pub mod informers;
pub mod leader;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod schedule_one;
pub mod scheduler;
pub mod selector;

use kube::Client;

/// Scheduler settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Identity in the leader-election Lease (`kube-system/kube-scheduler`).
    pub identity: String,
    /// Take part in leader election (upstream `--leader-elect`, default true).
    pub leader_elect: bool,
    /// Lease duration, renew deadline and retry period of the election.
    pub leader_election: kaji_runtime::leader::Timing,
    /// Percentage of nodes to find feasible before scoring; 0 = upstream's adaptive default.
    pub percentage_of_nodes_to_score: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            identity: leader::default_identity(),
            leader_elect: true,
            leader_election: kaji_runtime::leader::Timing::default(),
            percentage_of_nodes_to_score: 0,
        }
    }
}

/// Runs the scheduler until the process ends: while this process holds the lease it
/// schedules; if it loses the lease it stops and campaigns again.
pub async fn run(client: Client, opts: Options) -> anyhow::Result<()> {
    run_on(kaji_runtime::informer::Factory::new(client), opts).await
}

/// [`run`] on the informers of `factory` (shared with the other components of the process),
/// writing with `factory`'s client.
pub async fn run_on(factory: kaji_runtime::informer::Factory, opts: Options) -> anyhow::Result<()> {
    let client = factory.client();
    // As upstream, the informers start before leader election: a standby's caches are warm.
    let informers = informers::Informers::register(&factory);
    factory.start();
    if !opts.leader_elect {
        return scheduler::Scheduler::run(client, opts, &factory, &informers).await;
    }
    let mut elector = leader::LeaderElector::new(
        client.clone(),
        leader::LeaderElectionConfig::kube_scheduler(&opts.identity)
            .with_timing(opts.leader_election),
    );
    loop {
        elector.acquire().await;
        let mut sched = {
            let (client, opts, factory, informers) = (
                client.clone(),
                opts.clone(),
                factory.clone(),
                informers.clone(),
            );
            tokio::spawn(async move {
                scheduler::Scheduler::run(client, opts, &factory, &informers).await
            })
        };
        tokio::select! {
            () = elector.keep_renewing() => {}
            r = &mut sched => match r {
                Ok(Err(e)) => tracing::error!("scheduler stopped: {e:#}"),
                Ok(Ok(())) => {}
                Err(e) => tracing::error!("scheduler task: {e}"),
            },
        }
        sched.abort();
    }
}
