//! The single writer: group commit.
//!
//! The thread takes every queued request (up to `max_batch`), applies them in order in one
//! write transaction (each compare-and-swap sees the requests before it), commits with
//! immediate durability (fsync), and only then publishes the new revision, broadcasts the
//! events and answers. A request that fails its precondition consumes no revision, as in etcd.
//! If the transaction fails, every request of the batch gets the error and nothing changed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::redb::{Durability, ReadableTable, Table};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::{HISTORY, KV, META, META_COMPACTED, META_CURRENT, RedbOptions, Shared, backend, codec};
use crate::{EventType, KeyValue, Result, Revision, StoreError, WatchEvent};

pub(super) enum Op {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

pub(super) enum Request {
    Write {
        op: Op,
        reply: oneshot::Sender<Result<KeyValue>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<()>>,
    },
}

impl Request {
    fn size(&self) -> usize {
        match self {
            Request::Write {
                op: Op::Create { key, value } | Op::Update { key, value, .. },
                ..
            } => key.len() + value.len(),
            Request::Write {
                op: Op::Delete { key, .. },
                ..
            } => key.len(),
            Request::Compact { .. } => 0,
        }
    }
}

/// Bytes of values in one batch beyond which the batch is closed early.
const MAX_BATCH_BYTES: usize = 32 << 20;

/// How soon after a commit the next write must come for the writer to count as busy.
const BUSY: Duration = Duration::from_millis(1);
/// How long a busy writer's small batch waits for more writes, once.
const LINGER: Duration = Duration::from_micros(500);
/// Batches of at least this many requests commit without waiting.
const LINGER_BELOW: usize = 32;

pub(super) fn run(
    shared: &Shared,
    mut queue: mpsc::Receiver<Request>,
    events: &broadcast::Sender<Arc<WatchEvent>>,
    opts: &RedbOptions,
) {
    let max_batch = opts.max_batch.max(1);
    let mut requests = Vec::with_capacity(max_batch);
    loop {
        let idle = Instant::now();
        let Some(first) = queue.blocking_recv() else {
            break;
        };
        // Under a steady stream of writes (the next one came within BUSY of the last commit) a
        // small batch waits LINGER once for more: every commit costs an fsync and its pages'
        // writes whatever its size. A write that comes alone commits at once.
        let mut linger = idle.elapsed() < BUSY;
        let mut bytes = first.size();
        requests.push(first);
        while requests.len() < max_batch && bytes < MAX_BATCH_BYTES {
            match queue.try_recv() {
                Ok(next) => {
                    bytes += next.size();
                    requests.push(next);
                }
                Err(_) if linger && requests.len() < LINGER_BELOW => {
                    linger = false;
                    std::thread::sleep(LINGER);
                }
                Err(_) => break,
            }
        }
        apply(shared, events, opts, &mut requests);
    }
    tracing::debug!("store writer stopped");
}

/// The answer to one request, sent once the batch is durable.
enum Outcome {
    Write(Result<KeyValue>),
    Compact(Result<()>),
}

/// The running state of one batch: what it will publish once committed.
struct Batch {
    revision: Revision,
    compacted: Revision,
    /// One per request, in order.
    outcomes: Vec<Outcome>,
    events: Vec<WatchEvent>,
}

fn apply(
    shared: &Shared,
    events: &broadcast::Sender<Arc<WatchEvent>>,
    opts: &RedbOptions,
    requests: &mut Vec<Request>,
) {
    let mut batch = Batch {
        revision: shared.revision.load(Ordering::SeqCst),
        compacted: shared.compacted.load(Ordering::SeqCst),
        outcomes: Vec::with_capacity(requests.len()),
        events: Vec::new(),
    };
    let committed = transact(shared, requests, opts, &mut batch);
    if let Err(e) = &committed {
        tracing::error!(error = %e, requests = requests.len(), "store write batch failed");
    } else {
        shared.revision.store(batch.revision, Ordering::SeqCst);
        shared.compacted.store(batch.compacted, Ordering::SeqCst);
        for event in batch.events {
            // No receivers is fine: nobody is watching.
            let _ = events.send(Arc::new(event));
        }
    }
    let outcomes = batch
        .outcomes
        .into_iter()
        .map(Some)
        .chain(std::iter::repeat_with(|| None));
    for (request, outcome) in requests.drain(..).zip(outcomes) {
        let failed = || {
            StoreError::Backend(match &committed {
                Err(e) => e.to_string(),
                Ok(()) => "write was not applied".into(),
            })
        };
        // A caller that stopped waiting is not an error.
        match (request, committed.is_ok(), outcome) {
            (Request::Write { reply, .. }, true, Some(Outcome::Write(result))) => {
                let _ = reply.send(result);
            }
            (Request::Compact { reply, .. }, true, Some(Outcome::Compact(result))) => {
                let _ = reply.send(result);
            }
            (Request::Write { reply, .. }, ..) => {
                let _ = reply.send(Err(failed()));
            }
            (Request::Compact { reply, .. }, ..) => {
                let _ = reply.send(Err(failed()));
            }
        }
    }
}

/// Applies the requests in one transaction and commits it, filling `batch`.
fn transact(
    shared: &Shared,
    requests: &[Request],
    opts: &RedbOptions,
    batch: &mut Batch,
) -> Result<()> {
    let now_ms = unix_ms();
    let mut txn = shared.db.begin_write().map_err(backend("begin write"))?;
    txn.set_durability(Durability::Immediate)
        .map_err(backend("set durability"))?;
    {
        let mut kv = txn.open_table(KV).map_err(backend("open kv table"))?;
        let mut history = txn
            .open_table(HISTORY)
            .map_err(backend("open history table"))?;
        for request in requests {
            let outcome = match request {
                Request::Write { op, .. } => match apply_op(&mut kv, op, batch.revision + 1) {
                    Ok(event) => {
                        batch.revision += 1;
                        let raw = codec::encode_event(&event, now_ms)?;
                        history
                            .insert(batch.revision, raw.as_slice())
                            .map_err(backend("write history"))?;
                        let kv = event.kv.clone();
                        batch.events.push(event);
                        Outcome::Write(Ok(kv))
                    }
                    Err(Failed::Precondition(e)) => Outcome::Write(Err(e)),
                    Err(Failed::Backend(e)) => return Err(e),
                },
                Request::Compact { revision, .. } => {
                    Outcome::Compact(if *revision > batch.revision {
                        Err(StoreError::FutureRevision {
                            requested: *revision,
                            current: batch.revision,
                        })
                    } else if *revision <= batch.compacted {
                        Err(StoreError::Compacted {
                            requested: *revision,
                            compacted: batch.compacted,
                        })
                    } else {
                        drop_history(&mut history, *revision)?;
                        batch.compacted = *revision;
                        Ok(())
                    })
                }
            };
            batch.outcomes.push(outcome);
        }
        let target =
            auto_compaction_target(&history, opts, batch.revision, batch.compacted, now_ms)?;
        if let Some(target) = target {
            drop_history(&mut history, target)?;
            tracing::debug!(compacted = target, "auto-compacted store history");
            batch.compacted = target;
        }
        let mut meta = txn.open_table(META).map_err(backend("open meta table"))?;
        meta.insert(META_CURRENT, batch.revision)
            .map_err(backend("write meta"))?;
        meta.insert(META_COMPACTED, batch.compacted)
            .map_err(backend("write meta"))?;
    }
    txn.commit().map_err(backend("commit"))
}

enum Failed {
    /// The request's own precondition: answered, the batch goes on.
    Precondition(StoreError),
    /// The transaction is unusable: the whole batch fails.
    Backend(StoreError),
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Self {
        Failed::Backend(e)
    }
}

/// Applies one write at `revision`, returning its event.
fn apply_op(
    kv: &mut Table<&'static str, &'static [u8]>,
    op: &Op,
    revision: Revision,
) -> std::result::Result<WatchEvent, Failed> {
    let key = match op {
        Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key.as_str(),
    };
    let existing = kv
        .get(key)
        .map_err(backend("read kv"))?
        .map(|raw| codec::decode_kv(key, raw.value()))
        .transpose()?;
    let event = match (op, existing) {
        (Op::Create { .. }, Some(_)) => {
            return Err(Failed::Precondition(StoreError::AlreadyExists {
                key: key.to_owned(),
            }));
        }
        (Op::Update { .. } | Op::Delete { .. }, None) => {
            return Err(Failed::Precondition(StoreError::NotFound {
                key: key.to_owned(),
            }));
        }
        (Op::Update { expected, .. }, Some(old))
        | (
            Op::Delete {
                expected: Some(expected),
                ..
            },
            Some(old),
        ) if old.mod_revision != *expected => {
            return Err(Failed::Precondition(StoreError::Conflict {
                key: key.to_owned(),
                current: old.mod_revision,
            }));
        }
        (Op::Create { value, .. }, None) => WatchEvent {
            event_type: EventType::Put,
            kv: KeyValue {
                key: key.to_owned(),
                value: value.clone(),
                create_revision: revision,
                mod_revision: revision,
            },
            prev: None,
        },
        (Op::Update { value, .. }, Some(old)) => WatchEvent {
            event_type: EventType::Put,
            kv: KeyValue {
                key: key.to_owned(),
                value: value.clone(),
                create_revision: old.create_revision,
                mod_revision: revision,
            },
            prev: Some(old),
        },
        (Op::Delete { .. }, Some(old)) => WatchEvent {
            event_type: EventType::Delete,
            kv: KeyValue {
                key: key.to_owned(),
                value: old.value.clone(),
                create_revision: old.create_revision,
                mod_revision: revision,
            },
            prev: Some(old),
        },
    };
    match event.event_type {
        EventType::Put => {
            let raw = codec::encode_kv(
                event.kv.create_revision,
                event.kv.mod_revision,
                &event.kv.value,
            );
            kv.insert(key, raw.as_slice())
                .map_err(backend("write kv"))?;
        }
        EventType::Delete => {
            kv.remove(key).map_err(backend("delete kv"))?;
        }
    }
    Ok(event)
}

/// Removes the events at revisions up to and including `through`.
fn drop_history(history: &mut Table<i64, &'static [u8]>, through: Revision) -> Result<()> {
    history
        .retain_in(..=through, |_, _| false)
        .map_err(backend("compact history"))
}

/// Where automatic compaction should cut, if anywhere: the newest revision outside every
/// configured window. Runs only once the count window is exceeded by an eighth, so that the
/// work is done in chunks rather than on every batch.
fn auto_compaction_target(
    history: &Table<i64, &'static [u8]>,
    opts: &RedbOptions,
    revision: Revision,
    compacted: Revision,
    now_ms: i64,
) -> Result<Option<Revision>> {
    if opts.history_revisions.is_none() && opts.history_duration.is_none() {
        return Ok(None);
    }
    let mut target = revision;
    if let Some(keep) = opts.history_revisions {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let slack = (keep / 8).max(1);
        if revision.saturating_sub(compacted) <= keep.saturating_add(slack) {
            return Ok(None);
        }
        target = revision - keep;
    }
    if let Some(window) = opts.history_duration {
        let cutoff = now_ms.saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
        // The first event young enough to keep bounds the cut.
        let mut last_old = compacted;
        for entry in history
            .range(compacted + 1..=target)
            .map_err(backend("read history"))?
        {
            let (at, raw) = entry.map_err(backend("read history"))?;
            let (_, written_ms) = codec::peek_event(at.value(), raw.value())?;
            if written_ms >= cutoff {
                target = last_old;
                break;
            }
            last_old = at.value();
        }
    }
    Ok((target > compacted).then_some(target))
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
