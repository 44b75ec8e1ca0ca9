//! The scheduling queue (upstream `internal/queue.PriorityQueue`): an active heap ordered by
//! priority then arrival (the PrioritySort plugin), a backoff set for pods that failed recently
//! (1 s doubling to 10 s), and an unschedulable set that cluster events move back — only the
//! events that could help, judged by which plugins rejected the pod.

use crate::cache::PodInfo;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Unschedulable pods are retried at least this often even if no event moves them.
const MAX_IN_UNSCHEDULABLE: Duration = Duration::from_secs(300);

/// A pod handed out by [`SchedulingQueue::pop`].
#[derive(Clone, Debug)]
pub struct QueuedPod {
    pub info: Arc<PodInfo>,
    pub attempts: u32,
    /// When the pod first entered the queue (for latency figures).
    pub added: Instant,
    /// The queue's move counter when the pod was popped.
    pub cycle: u64,
}

#[derive(Debug, PartialEq)]
enum Place {
    Active,
    Backoff,
    Unschedulable {
        since: Instant,
        plugins: Vec<&'static str>,
    },
    InFlight {
        updated: bool,
    },
}

struct Entry {
    info: Arc<PodInfo>,
    attempts: u32,
    added: Instant,
    last_attempt: Instant,
    seq: u64,
    place: Place,
}

impl Entry {
    /// When a timer moves this pod back to active (None: not parked).
    fn due(&self) -> Option<Instant> {
        match &self.place {
            Place::Backoff => Some(self.backoff_until()),
            Place::Unschedulable { since, .. } => Some(*since + MAX_IN_UNSCHEDULABLE),
            _ => None,
        }
    }

    fn backoff_until(&self) -> Instant {
        let exp = self.attempts.saturating_sub(1).min(10);
        self.last_attempt + (INITIAL_BACKOFF * 2u32.pow(exp)).min(MAX_BACKOFF)
    }
}

#[derive(Default)]
struct Inner {
    pods: HashMap<String, Entry>,
    /// (priority, earlier first, seq) -> uid; stale entries are skipped by seq.
    active: BinaryHeap<(i32, Reverse<u64>, String)>,
    seq: u64,
    moves: u64,
    /// Pods in backoff or unschedulable (the only ones a timer can move).
    parked: HashSet<String>,
    /// No parked pod is due before this: `try_pop` walks `parked` only from then on (a walk
    /// per pop made each pop O(parked pods)).
    next_due: Option<Instant>,
}

impl Inner {
    /// `uid` was parked (or its place changed): the next walk is due no later than its time.
    fn parked_due(&mut self, uid: &str) {
        if let Some(due) = self.pods.get(uid).and_then(Entry::due) {
            self.next_due = Some(self.next_due.map_or(due, |d| d.min(due)));
        }
    }

    fn activate(&mut self, uid: &str) {
        self.seq += 1;
        let seq = self.seq;
        self.parked.remove(uid);
        if let Some(e) = self.pods.get_mut(uid) {
            e.place = Place::Active;
            e.seq = seq;
            self.active
                .push((e.info.priority, Reverse(seq), uid.to_string()));
        }
    }
}

#[derive(Default)]
pub struct SchedulingQueue {
    inner: Mutex<Inner>,
    notify: Notify,
}

impl SchedulingQueue {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new pending pod, or an update of one already queued.
    pub fn add(&self, info: Arc<PodInfo>) {
        let mut q = self.lock();
        let uid = info.uid.clone();
        let now = Instant::now();
        match q.pods.get_mut(&uid) {
            None => {
                q.pods.insert(
                    uid.clone(),
                    Entry {
                        info,
                        attempts: 0,
                        added: now,
                        last_attempt: now,
                        seq: 0,
                        place: Place::Active,
                    },
                );
                q.activate(&uid);
            }
            Some(e) => {
                let priority_changed = e.info.priority != info.priority;
                // Status-only updates (our own PodScheduled condition) do not retry the pod.
                let meaningful = e.info.pod.spec != info.pod.spec
                    || e.info.labels != info.labels
                    || priority_changed;
                e.info = info;
                if !meaningful {
                    return;
                }
                match &mut e.place {
                    Place::InFlight { updated } => *updated = true,
                    Place::Active if !priority_changed => {}
                    // An update may make the pod schedulable (upstream moves it at once).
                    _ => q.activate(&uid),
                }
            }
        }
        drop(q);
        self.notify.notify_one();
    }

    /// Requeues a pod whose binding failed, in backoff as for its `attempts`th try.
    pub fn add_after_error(&self, info: Arc<PodInfo>, attempts: u32) {
        let mut q = self.lock();
        let uid = info.uid.clone();
        let now = Instant::now();
        q.pods.insert(
            uid.clone(),
            Entry {
                info,
                attempts,
                added: now,
                last_attempt: now,
                seq: 0,
                place: Place::Backoff,
            },
        );
        q.parked_due(&uid);
        q.parked.insert(uid);
        drop(q);
        self.notify.notify_one();
    }

    pub fn delete(&self, uid: &str) {
        let mut q = self.lock();
        q.pods.remove(uid);
        q.parked.remove(uid);
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.lock().pods.contains_key(uid)
    }

    pub fn len(&self) -> usize {
        self.lock().pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the highest-priority pod that is ready, or None if none is.
    pub fn try_pop(&self) -> Option<QueuedPod> {
        let mut q = self.lock();
        let now = Instant::now();
        // Backoff that has run out, and unschedulable pods left too long, go back to active.
        if q.next_due.is_some_and(|d| d <= now) {
            let mut due = Vec::new();
            let mut next_due: Option<Instant> = None;
            for k in &q.parked {
                match q.pods.get(k).and_then(Entry::due) {
                    Some(t) if t <= now => due.push(k.clone()),
                    Some(t) => next_due = Some(next_due.map_or(t, |d| d.min(t))),
                    None => {}
                }
            }
            q.next_due = next_due;
            for uid in due {
                q.activate(&uid);
            }
        }
        while let Some((_, Reverse(seq), uid)) = q.active.pop() {
            let moves = q.moves;
            let Some(e) = q.pods.get_mut(&uid) else {
                continue;
            };
            if e.seq != seq || e.place != Place::Active {
                continue;
            }
            e.place = Place::InFlight { updated: false };
            e.attempts += 1;
            e.last_attempt = now;
            return Some(QueuedPod {
                info: e.info.clone(),
                attempts: e.attempts,
                added: e.added,
                cycle: moves,
            });
        }
        None
    }

    /// Waits for the next pod to schedule.
    pub async fn pop(&self) -> QueuedPod {
        loop {
            if let Some(p) = self.try_pop() {
                return p;
            }
            // Wake on new pods, or in time for the earliest backoff to end.
            let wait = self.lock().next_due.map_or(Duration::from_secs(1), |t| {
                t.saturating_duration_since(Instant::now())
            });
            let _ =
                tokio::time::timeout(wait.max(Duration::from_millis(5)), self.notify.notified())
                    .await;
        }
    }

    /// The pod was bound (or its binding is under way): it leaves the queue.
    pub fn done(&self, uid: &str) {
        let mut q = self.lock();
        if q.pods
            .get(uid)
            .is_some_and(|e| matches!(e.place, Place::InFlight { .. }))
        {
            q.pods.remove(uid);
        }
    }

    /// The pod did not fit. It waits for an event that could help, or — if one already came
    /// while it was being scheduled, or the failure was an error — in backoff.
    pub fn add_unschedulable(&self, p: &QueuedPod, plugins: Vec<&'static str>, error: bool) {
        let mut q = self.lock();
        let moved = q.moves != p.cycle;
        let Some(e) = q.pods.get_mut(&p.info.uid) else {
            return;
        };
        let Place::InFlight { updated } = e.place else {
            return;
        };
        e.place = if error || updated || moved {
            Place::Backoff
        } else {
            Place::Unschedulable {
                since: Instant::now(),
                plugins,
            }
        };
        q.parked.insert(p.info.uid.clone());
        q.parked_due(&p.info.uid);
        drop(q);
        self.notify.notify_one();
    }

    /// A cluster event happened; pods rejected by any of `plugins` (None: all pods) retry,
    /// after their backoff.
    pub fn move_all(&self, plugins: Option<&[&str]>) {
        let mut q = self.lock();
        q.moves += 1;
        let Inner {
            pods,
            parked,
            next_due,
            ..
        } = &mut *q;
        for k in parked.iter() {
            let Some(e) = pods.get_mut(k) else { continue };
            if let Place::Unschedulable {
                plugins: failed, ..
            } = &e.place
                && plugins
                    .is_none_or(|ps| failed.is_empty() || failed.iter().any(|f| ps.contains(f)))
            {
                e.place = Place::Backoff;
                let due = e.backoff_until();
                *next_due = Some(next_due.map_or(due, |d| d.min(due)));
            }
        }
        drop(q);
        self.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn pod(name: &str, prio: i32) -> Arc<PodInfo> {
        let p: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": name, "namespace": "default", "uid": name}, "spec": {"containers": []}})).unwrap();
        Arc::new(PodInfo::new(Arc::new(p), prio))
    }

    #[test]
    fn priority_then_fifo() {
        let q = SchedulingQueue::default();
        q.add(pod("a", 0));
        q.add(pod("b", 10));
        q.add(pod("c", 0));
        let order: Vec<String> = std::iter::from_fn(|| q.try_pop())
            .map(|p| p.info.name.clone())
            .collect();
        assert_eq!(order, ["b", "a", "c"]);
    }

    #[test]
    fn unschedulable_waits_for_a_relevant_event() {
        let q = SchedulingQueue::default();
        q.add(pod("a", 0));
        let p = q.try_pop().unwrap();
        q.add_unschedulable(&p, vec!["NodeResourcesFit"], false);
        assert!(q.try_pop().is_none());
        q.move_all(Some(&["InterPodAffinity"]));
        assert!(q.try_pop().is_none());
        q.move_all(Some(&["NodeResourcesFit"]));
        // In backoff for a second after the first attempt.
        assert!(q.try_pop().is_none());
        assert_eq!(q.len(), 1);
    }
}
