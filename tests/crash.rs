//! Crash safety: `kill -9` of the server while several clients write; after a restart on the same
//! data directory every acknowledged write is there, whole, and the server carries on from a
//! later revision.
mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Cluster, tail};

const WRITERS: usize = 6;

async fn client_for(c: &Cluster) -> Client {
    let kubeconfig = Kubeconfig::read_from(&c.kubeconfig).expect("reading the kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    Client::try_from(config).expect("kube client")
}

/// What each object holds, derived from its name, so a torn or mixed-up write shows.
fn payload(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("name".to_string(), name.to_string()),
        ("blob".to_string(), name.repeat(64)),
    ])
}

/// Writers create ConfigMaps as fast as the server acknowledges them until the server dies;
/// returns every acknowledged (201) name and the highest acknowledged resourceVersion.
async fn write_until_killed(c: &mut Cluster, round: usize) -> (BTreeSet<String>, i64) {
    let client = client_for(c).await;
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let max_rv = Arc::new(Mutex::new(0i64));
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let (acked, max_rv, stop, refused) =
            (acked.clone(), max_rv.clone(), stop.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let mut failures = 0;
            for i in 0.. {
                if stop.load(Ordering::SeqCst) || failures > 20 {
                    break;
                }
                let name = format!("r{round}-w{w}-{i}");
                let mut cm: ConfigMap = serde_json::from_value(
                    json!({"metadata": {"name": name, "labels": {"round": round.to_string()}}}),
                )
                .expect("configmap");
                cm.data = Some(payload(&name));
                match api.create(&PostParams::default(), &cm).await {
                    Ok(created) => {
                        let rv: i64 = created
                            .metadata
                            .resource_version
                            .as_deref()
                            .and_then(|r| r.parse().ok())
                            .expect("numeric resourceVersion");
                        acked.lock().expect("lock").insert(name);
                        let mut m = max_rv.lock().expect("lock");
                        *m = (*m).max(rv);
                    }
                    // Once the server is gone every call fails; a few failures end the writer.
                    Err(_) => {
                        failures += 1;
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    // Kill in the middle of the stream of writes, once enough have been acknowledged.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().expect("lock").len() < 400 {
        assert!(
            Instant::now() < deadline,
            "writers made no progress: {} acknowledged\n{}",
            acked.lock().expect("lock").len(),
            tail(&c.log(), 30)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.kill();
    let killed_at = acked.lock().expect("lock").len();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("writers stop once the server is gone")
            .expect("writer task");
    }
    stop.store(true, Ordering::SeqCst);
    let acked = acked.lock().expect("lock").clone();
    // Writes were in flight at the kill: answers that came after it were still acknowledged.
    assert!(acked.len() >= killed_at);
    // Every writer was still writing when the server died.
    assert!(
        refused.load(Ordering::SeqCst) >= WRITERS,
        "the writers stopped before the kill"
    );
    let rv = *max_rv.lock().expect("lock");
    eprintln!(
        "round {round}: {} writes acknowledged ({killed_at} before the kill), highest resourceVersion {rv}",
        acked.len()
    );
    (acked, rv)
}

/// Lists every ConfigMap in pages and checks each is whole; returns the names and the list's revision.
async fn stored(c: &Cluster) -> (BTreeSet<String>, i64) {
    let client = client_for(c).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut names = BTreeSet::new();
    let mut lp = ListParams::default().limit(250);
    let revision = loop {
        let page = api
            .list(&lp)
            .await
            .expect("listing configmaps after the restart");
        for cm in &page.items {
            let name = cm.metadata.name.clone().expect("name");
            if !name.starts_with('r') || !name.contains("-w") {
                continue;
            }
            assert_eq!(
                cm.data.as_ref(),
                Some(&payload(&name)),
                "{name} is not whole after the crash"
            );
            assert!(
                cm.metadata.uid.is_some() && cm.metadata.creation_timestamp.is_some(),
                "{name}: metadata lost: {:?}",
                cm.metadata
            );
            names.insert(name);
        }
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(t) => lp = lp.continue_token(&t),
            None => {
                break page
                    .metadata
                    .resource_version
                    .and_then(|r| r.parse::<i64>().ok())
                    .expect("list resourceVersion");
            }
        }
    };
    (names, revision)
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut c = Cluster::start("crash");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut all_acked = BTreeSet::new();
    for round in 0..2 {
        let (acked, max_rv) = rt.block_on(write_until_killed(&mut c, round));
        all_acked.extend(acked.iter().cloned());
        c.spawn();
        let (names, revision) = rt.block_on(stored(&c));
        let lost: Vec<&String> = all_acked.difference(&names).collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} of {} acknowledged writes are gone after kill -9, e.g. {:?}\nserver log tail:\n{}",
            lost.len(),
            all_acked.len(),
            &lost[..lost.len().min(10)],
            tail(&c.log(), 30)
        );
        assert!(
            revision >= max_rv,
            "round {round}: the store went back in time: revision {revision} < acknowledged {max_rv}"
        );
        eprintln!(
            "round {round}: {} objects after the restart, {} acknowledged so far",
            names.len(),
            all_acked.len()
        );
        // Unacknowledged writes may or may not have landed (the client never heard back).
        for n in names.difference(&all_acked) {
            assert!(
                (0..=round).any(|r| n.starts_with(&format!("r{r}-w"))),
                "unexpected object {n}"
            );
        }
        // The restarted server takes writes at later revisions.
        let after = rt.block_on(async {
            let api: Api<ConfigMap> = Api::namespaced(client_for(&c).await, "default");
            let mut cm = ConfigMap::default();
            cm.metadata.name = Some(format!("after-{round}"));
            api.create(&PostParams::default(), &cm)
                .await
                .expect("writing after the restart")
        });
        let rv: i64 = after
            .metadata
            .resource_version
            .as_deref()
            .and_then(|r| r.parse().ok())
            .expect("resourceVersion");
        assert!(
            rv > revision,
            "a write after the restart got revision {rv}, not after {revision}"
        );
    }
}
