//! The etcd v3 backend: [`Store`] over etcd's gRPC API, as kube-apiserver's `storage/etcd3`.
//!
//! Revisions are etcd's own (a list's revision, an object's resourceVersion and a watch's
//! starting point are etcd revisions), keys are stored as given (the API server's
//! `/registry/pods/ns/name`, what `etcdctl get --prefix /registry/` shows), and every
//! write is one etcd transaction whose comparison is the precondition:
//! - create: `create_revision(key) == 0` then put, else [`StoreError::AlreadyExists`];
//! - update: `mod_revision(key) == expected && create_revision(key) > 0` then put, else a get
//!   that tells [`StoreError::NotFound`] from [`StoreError::Conflict`];
//! - delete: the same comparison, then delete with `prev_kv`: the deleted value comes back with
//!   the transaction's header revision as its `mod_revision`.
//!
//! etcd does not report its compacted revision on request. [`EtcdStore`] remembers the highest
//! revision it compacted to or saw in a compaction error; when a range at that revision fails
//! with "required revision has been compacted", someone compacted further, and a watch from
//! revision 1 of a key nobody writes is answered by etcd with the exact compacted revision.
//!
//! Errors map as kube-apiserver's do: a request that gets no answer within
//! [`EtcdOptions::request_timeout`] fails with `etcdserver: request timed out`; etcd's own
//! errors keep their text (`etcdserver: ...`). After such a timeout etcd is taken as
//! unresponsive: further requests fail at once with the same text, while one probe at a time
//! asks etcd for its revision, until an answer comes back. So an API request whose path reads the store several times fails after one timeout,
//! not one per read.

mod compactor;
mod pb;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Status, Streaming};
use tonic_prost::ProstCodec;

use crate::{
    EventType, KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError, WatchEvent,
    WatchStream,
};

pub use compactor::spawn_compactor;

/// etcd's text for a request that timed out (kube-apiserver passes it through).
const REQUEST_TIMED_OUT: &str = "etcdserver: request timed out";
/// etcd's error texts (gRPC status messages) that map to store errors.
const ERR_COMPACTED: &str = "required revision has been compacted";
const ERR_FUTURE_REV: &str = "required revision is a future revision";

/// How to reach etcd (k3s's `--datastore-endpoint`, `--datastore-cafile/certfile/keyfile`).
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// `http://host:port` or `https://host:port`; requests are balanced over all of them.
    pub endpoints: Vec<String>,
    /// CA bundle that signed etcd's serving certificates (required for `https://`).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for etcd's client-cert authentication.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Put in front of every key (etcd namespacing, as kube-apiserver's `--etcd-prefix`; Kaji's
    /// keys already start with `/registry/`, so empty by default).
    pub key_prefix: String,
    /// How long [`EtcdStore::connect`] waits for etcd to answer (kube-apiserver's dial timeout).
    pub dial_timeout: Duration,
    /// How long a unary request may take before it fails with `etcdserver: request timed out`.
    pub request_timeout: Duration,
}

impl EtcdOptions {
    /// Plain endpoints, default timeouts, no key prefix.
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        EtcdOptions {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            key_prefix: String::new(),
            dial_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(15),
        }
    }
}

/// [`Store`] on an etcd v3 cluster.
pub struct EtcdStore {
    channel: Channel,
    prefix: Vec<u8>,
    request_timeout: Duration,
    /// The highest revision known to be compacted (a lower bound of etcd's).
    compacted: AtomicI64,
    /// Set by a request that timed out, cleared by the next answer (see the module docs).
    unresponsive: Arc<AtomicBool>,
}

/// A failed etcd request: the two errors whose store error needs more context, or any other.
enum Failure {
    Compacted,
    FutureRevision,
    Other(StoreError),
}

impl From<Status> for Failure {
    fn from(status: Status) -> Self {
        let message = status.message();
        if message.contains(ERR_COMPACTED) {
            Failure::Compacted
        } else if message.contains(ERR_FUTURE_REV) {
            Failure::FutureRevision
        } else if status.code() == tonic::Code::DeadlineExceeded {
            Failure::Other(StoreError::Backend(REQUEST_TIMED_OUT.into()))
        } else if message.is_empty() {
            Failure::Other(StoreError::Backend(format!("etcd: {:?}", status.code())))
        } else if message.starts_with("etcdserver:") {
            Failure::Other(StoreError::Backend(message.to_string()))
        } else {
            Failure::Other(StoreError::Backend(format!("etcd: {message}")))
        }
    }
}

type Call<T> = std::result::Result<T, Failure>;

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        StoreError::Backend(format!("reading the etcd {what} {}: {e}", path.display()))
    })
}

fn tls_config(opts: &EtcdOptions) -> Result<ClientTlsConfig> {
    let ca = opts.ca_file.as_ref().ok_or_else(|| {
        StoreError::Backend("an https etcd endpoint needs a CA file (--datastore-cafile)".into())
    })?;
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca, "CA file")?));
    match (&opts.cert_file, &opts.key_file) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(
                read(cert, "client certificate")?,
                read(key, "client key")?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(StoreError::Backend(
                "an etcd client certificate needs both --datastore-certfile and --datastore-keyfile"
                    .into(),
            ));
        }
    }
    Ok(tls)
}

/// The end of the key range of everything starting with `prefix` (etcd's `--prefix`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xff {
            *last += 1;
            return end;
        }
        end.pop();
    }
    // Every byte was 0xff (or the prefix is empty): to the end of the keyspace.
    vec![0]
}

impl EtcdStore {
    /// Connects to etcd and waits (up to [`EtcdOptions::dial_timeout`]) until it answers.
    pub async fn connect(opts: EtcdOptions) -> Result<EtcdStore> {
        if opts.endpoints.is_empty() {
            return Err(StoreError::Backend("no etcd endpoint given".into()));
        }
        let mut endpoints = Vec::new();
        for url in &opts.endpoints {
            let bad = |e: &dyn std::fmt::Display| {
                StoreError::Backend(format!("etcd endpoint {url:?}: {e}"))
            };
            let https = url.starts_with("https://");
            if !https && !url.starts_with("http://") {
                return Err(bad(&"expected http://host:port or https://host:port"));
            }
            let mut endpoint = Endpoint::from_shared(url.clone())
                .map_err(|e| bad(&e))?
                .connect_timeout(opts.dial_timeout)
                // As kube-apiserver's etcd client: notice a dead member within ~40 s.
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(10))
                .keep_alive_while_idle(true);
            if https {
                endpoint = endpoint
                    .tls_config(tls_config(&opts)?)
                    .map_err(|e| bad(&e))?;
            }
            endpoints.push(endpoint);
        }
        let channel = if endpoints.len() == 1 {
            endpoints.remove(0).connect_lazy()
        } else {
            Channel::balance_list(endpoints.into_iter())
        };
        let store = EtcdStore {
            channel,
            prefix: opts.key_prefix.clone().into_bytes(),
            request_timeout: opts.request_timeout,
            compacted: AtomicI64::new(0),
            unresponsive: Arc::new(AtomicBool::new(false)),
        };
        let deadline = tokio::time::Instant::now() + opts.dial_timeout;
        loop {
            match store.current_revision().await {
                Ok(_) => break,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(StoreError::Backend(format!(
                        "etcd at {} did not answer within {:?}: {e}",
                        opts.endpoints.join(","),
                        opts.dial_timeout
                    )));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "waiting for etcd");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        Ok(store)
    }

    fn key(&self, key: &str) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(key.as_bytes());
        k
    }

    /// The key range `[start, end)` of everything under `prefix`.
    fn range(&self, prefix: &str) -> (Vec<u8>, Vec<u8>) {
        let start = self.key(prefix);
        if start.is_empty() {
            (vec![0], vec![0])
        } else {
            let end = prefix_end(&start);
            (start, end)
        }
    }

    fn decode(&self, kv: pb::KeyValue) -> KeyValue {
        let key = kv
            .key
            .strip_prefix(self.prefix.as_slice())
            .unwrap_or(&kv.key);
        KeyValue {
            key: String::from_utf8_lossy(key).into_owned(),
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
        }
    }

    async fn unary<Req, Resp>(&self, path: &'static str, request: Req) -> Call<Resp>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        if self.unresponsive.load(Ordering::Acquire) {
            return Err(Failure::Other(StoreError::Backend(
                REQUEST_TIMED_OUT.into(),
            )));
        }
        match call(&self.channel, self.request_timeout, path, request).await {
            Err(status) if status.code() == tonic::Code::DeadlineExceeded => {
                if !self.unresponsive.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        timeout = ?self.request_timeout,
                        "etcd did not answer: failing requests at once until it does"
                    );
                    tokio::spawn(probe(
                        self.channel.clone(),
                        self.request_timeout,
                        self.unresponsive.clone(),
                    ));
                }
                Err(status.into())
            }
            Err(status) => Err(status.into()),
            Ok(response) => Ok(response),
        }
    }

    async fn txn(&self, txn: pb::TxnRequest) -> Result<pb::TxnResponse> {
        self.unary(pb::TXN, txn).await.map_err(|f| self.plain(f))
    }

    async fn range_request(&self, request: pb::RangeRequest) -> Call<pb::RangeResponse> {
        self.unary(pb::RANGE, request).await
    }

    /// A failure of a request that names no revision.
    fn plain(&self, failure: Failure) -> StoreError {
        match failure {
            Failure::Other(e) => e,
            Failure::Compacted => StoreError::Backend(format!("etcdserver: mvcc: {ERR_COMPACTED}")),
            Failure::FutureRevision => {
                StoreError::Backend(format!("etcdserver: mvcc: {ERR_FUTURE_REV}"))
            }
        }
    }

    /// The store error for a request at `requested` that failed.
    async fn at_revision(&self, failure: Failure, requested: Revision) -> StoreError {
        match failure {
            Failure::Compacted => match self.compacted_revision().await {
                Ok(compacted) => StoreError::Compacted {
                    requested,
                    compacted,
                },
                Err(e) => e,
            },
            Failure::FutureRevision => match self.current_revision().await {
                Ok(current) => StoreError::FutureRevision { requested, current },
                Err(e) => e,
            },
            Failure::Other(e) => e,
        }
    }

    fn compare(
        &self,
        key: &[u8],
        target: i32,
        result: i32,
        value: pb::CompareTarget,
    ) -> pb::Compare {
        pb::Compare {
            result,
            target,
            key: key.to_vec(),
            target_union: Some(value),
        }
    }

    /// The precondition of an update or delete: the key exists (and has `expected` as its
    /// `mod_revision`, when given).
    fn exists(&self, key: &[u8], expected: Option<Revision>) -> Vec<pb::Compare> {
        let mut compare = vec![self.compare(
            key,
            pb::TARGET_CREATE,
            pb::COMPARE_GREATER,
            pb::CompareTarget::CreateRevision(0),
        )];
        if let Some(expected) = expected {
            compare.push(self.compare(
                key,
                pb::TARGET_MOD,
                pb::COMPARE_EQUAL,
                pb::CompareTarget::ModRevision(expected),
            ));
        }
        compare
    }

    fn get_op(key: &[u8]) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(pb::Request::Range(pb::RangeRequest {
                key: key.to_vec(),
                ..Default::default()
            })),
        }
    }

    /// Why a conditional write's comparison failed, from the failure branch's get.
    fn precondition_failed(key: &str, response: pb::TxnResponse) -> StoreError {
        let current = response
            .responses
            .into_iter()
            .find_map(|op| match op.response {
                Some(pb::Response::Range(range)) => range.kvs.into_iter().next(),
                _ => None,
            });
        match current {
            None => StoreError::NotFound { key: key.into() },
            Some(kv) => StoreError::Conflict {
                key: key.into(),
                current: kv.mod_revision,
            },
        }
    }

    /// Opens an etcd watch and waits for etcd to confirm it.
    async fn open_watch(
        &self,
        create: pb::WatchCreateRequest,
    ) -> Call<(Streaming<pb::WatchResponse>, pb::WatchResponse)> {
        let request = pb::WatchRequest {
            request_union: Some(pb::WatchRequestUnion::Create(create)),
        };
        // The request stream stays open: closing it would be a half-close of the gRPC stream.
        // Dropping the response stream resets the HTTP/2 stream, which cancels the watch.
        let requests =
            futures::stream::once(async move { request }).chain(futures::stream::pending());
        let open = async {
            let mut grpc = Grpc::new(self.channel.clone()).max_decoding_message_size(usize::MAX);
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(format!("connecting: {e}")))?;
            let mut stream = grpc
                .streaming(
                    tonic::Request::new(requests),
                    PathAndQuery::from_static(pb::WATCH),
                    ProstCodec::<pb::WatchRequest, pb::WatchResponse>::default(),
                )
                .await?
                .into_inner();
            match stream.message().await? {
                Some(first) => Ok((stream, first)),
                None => Err(Status::unavailable("etcd closed the watch stream")),
            }
        };
        match tokio::time::timeout(self.request_timeout, open).await {
            Err(_) => Err(Failure::Other(StoreError::Backend(
                REQUEST_TIMED_OUT.into(),
            ))),
            Ok(Err(status)) => Err(status.into()),
            Ok(Ok(opened)) => Ok(opened),
        }
    }

    /// Asks etcd for its compacted revision: a watch from revision 1 is cancelled with it.
    async fn probe_compacted_revision(&self) -> Result<Revision> {
        let create = pb::WatchCreateRequest {
            key: b"/kaji.io/compaction-probe".to_vec(),
            start_revision: 1,
            ..Default::default()
        };
        let (mut stream, mut response) =
            self.open_watch(create).await.map_err(|f| self.plain(f))?;
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        loop {
            if response.compact_revision > 0 {
                self.compacted
                    .fetch_max(response.compact_revision, Ordering::Relaxed);
                return Ok(response.compact_revision);
            }
            if response.canceled {
                return Err(StoreError::Backend(format!(
                    "etcd cancelled the compaction probe: {}",
                    response.cancel_reason
                )));
            }
            response = match tokio::time::timeout_at(deadline, stream.message()).await {
                // No compaction reported: nothing beyond what is known was compacted.
                Err(_) => return Ok(self.compacted.load(Ordering::Relaxed)),
                Ok(Err(status)) => return Err(self.plain(status.into())),
                Ok(Ok(None)) => {
                    return Err(StoreError::Backend("etcd closed the watch stream".into()));
                }
                Ok(Ok(Some(response))) => response,
            };
        }
    }
}

/// One unary gRPC call that gives up after `timeout` (as `DeadlineExceeded`).
async fn call<Req, Resp>(
    channel: &Channel,
    timeout: Duration,
    path: &'static str,
    request: Req,
) -> std::result::Result<Resp, Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let call = async {
        // A list of many objects is one response: no 4 MiB cap (kube-apiserver's etcd client
        // takes up to 2 GiB).
        let mut grpc = Grpc::new(channel.clone()).max_decoding_message_size(usize::MAX);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(format!("connecting: {e}")))?;
        grpc.unary(
            tonic::Request::new(request),
            PathAndQuery::from_static(path),
            ProstCodec::<Req, Resp>::default(),
        )
        .await
    };
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err(Status::deadline_exceeded(REQUEST_TIMED_OUT)),
        Ok(result) => result.map(tonic::Response::into_inner),
    }
}

/// Asks an unresponsive etcd for its revision until it answers, then lets requests through.
async fn probe(channel: Channel, timeout: Duration, unresponsive: Arc<AtomicBool>) {
    loop {
        let request = pb::RangeRequest {
            key: vec![0],
            count_only: true,
            ..Default::default()
        };
        let answer = call::<_, pb::RangeResponse>(&channel, timeout, pb::RANGE, request).await;
        // Any answer (even an error status) is etcd answering; only silence keeps the gate.
        let silent = matches!(&answer, Err(s) if s.code() == tonic::Code::DeadlineExceeded
            || s.code() == tonic::Code::Unavailable);
        if !silent {
            unresponsive.store(false, Ordering::Release);
            tracing::info!("etcd answers again");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The state of one watch stream handed to a caller.
struct WatchState {
    stream: Streaming<pb::WatchResponse>,
    pending: VecDeque<Result<WatchEvent>>,
    done: bool,
    /// The last revision delivered (for the Compacted error of a watcher that fell behind).
    last: Revision,
    prefix: Vec<u8>,
}

impl WatchState {
    fn decode(&self, kv: pb::KeyValue) -> KeyValue {
        let key = kv
            .key
            .strip_prefix(self.prefix.as_slice())
            .unwrap_or(&kv.key);
        KeyValue {
            key: String::from_utf8_lossy(key).into_owned(),
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
        }
    }

    fn event(&self, event: pb::Event) -> WatchEvent {
        let kv = self.decode(event.kv.unwrap_or_default());
        let prev = event.prev_kv.map(|p| self.decode(p));
        if event.r#type == pb::EVENT_DELETE {
            // etcd's delete event has an empty value; the store's carries the last value at
            // the delete's revision.
            let kv = match &prev {
                Some(prev) => KeyValue {
                    mod_revision: kv.mod_revision,
                    ..prev.clone()
                },
                None => kv,
            };
            WatchEvent {
                event_type: EventType::Delete,
                kv,
                prev,
            }
        } else {
            WatchEvent {
                event_type: EventType::Put,
                kv,
                prev,
            }
        }
    }

    /// Takes in one response of etcd's watch stream.
    fn receive(&mut self, response: pb::WatchResponse) {
        if response.compact_revision > 0 {
            self.finish(StoreError::Compacted {
                requested: self.last,
                compacted: response.compact_revision,
            });
        } else if response.canceled {
            self.finish(StoreError::Backend(format!(
                "etcd cancelled the watch: {}",
                response.cancel_reason
            )));
        } else {
            for event in response.events {
                let event = self.event(event);
                self.last = event.revision();
                self.pending.push_back(Ok(event));
            }
        }
    }

    fn finish(&mut self, error: StoreError) {
        self.pending.push_back(Err(error));
        self.done = true;
    }

    /// Reads etcd's stream as fast as it comes, whatever the pace of the consumer: all of a
    /// client's streams share one HTTP/2 connection, whose flow-control window a stream left
    /// unread would fill, stalling every other request (grpc-go's transport buffers the same way).
    async fn run(mut self, events: tokio::sync::mpsc::UnboundedSender<Result<WatchEvent>>) {
        loop {
            while let Some(item) = self.pending.pop_front() {
                if events.send(item).is_err() {
                    return;
                }
            }
            if self.done {
                return;
            }
            tokio::select! {
                // The consumer dropped the stream: dropping etcd's cancels the watch.
                () = events.closed() => return,
                message = self.stream.message() => match message {
                    Ok(Some(response)) => self.receive(response),
                    Ok(None) => self.finish(StoreError::Backend("etcd closed the watch stream".into())),
                    Err(status) => {
                        let error = match Failure::from(status) {
                            Failure::Other(e) => e,
                            _ => StoreError::Backend("etcd watch failed".into()),
                        };
                        self.finish(error);
                    }
                },
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let k = self.key(key);
        let response = self
            .txn(pb::TxnRequest {
                compare: vec![self.compare(
                    &k,
                    pb::TARGET_CREATE,
                    pb::COMPARE_EQUAL,
                    pb::CompareTarget::CreateRevision(0),
                )],
                success: vec![pb::RequestOp {
                    request: Some(pb::Request::Put(pb::PutRequest {
                        key: k,
                        value: value.clone(),
                        ..Default::default()
                    })),
                }],
                failure: vec![],
            })
            .await?;
        if !response.succeeded {
            return Err(StoreError::AlreadyExists { key: key.into() });
        }
        let revision = response.header.unwrap_or_default().revision;
        Ok(KeyValue {
            key: key.into(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        let k = self.key(key);
        let response = self
            .txn(pb::TxnRequest {
                compare: self.exists(&k, Some(expected_mod_revision)),
                success: vec![pb::RequestOp {
                    request: Some(pb::Request::Put(pb::PutRequest {
                        key: k.clone(),
                        value: value.clone(),
                        prev_kv: true,
                        ..Default::default()
                    })),
                }],
                failure: vec![Self::get_op(&k)],
            })
            .await?;
        if !response.succeeded {
            return Err(Self::precondition_failed(key, response));
        }
        let revision = response.header.unwrap_or_default().revision;
        let create_revision = response
            .responses
            .into_iter()
            .find_map(|op| match op.response {
                Some(pb::Response::Put(put)) => put.prev_kv.map(|kv| kv.create_revision),
                _ => None,
            })
            .ok_or_else(|| StoreError::Backend("etcd put returned no previous value".into()))?;
        Ok(KeyValue {
            key: key.into(),
            value,
            create_revision,
            mod_revision: revision,
        })
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<KeyValue> {
        let k = self.key(key);
        let response = self
            .txn(pb::TxnRequest {
                compare: self.exists(&k, expected_mod_revision),
                success: vec![pb::RequestOp {
                    request: Some(pb::Request::DeleteRange(pb::DeleteRangeRequest {
                        key: k.clone(),
                        prev_kv: true,
                        ..Default::default()
                    })),
                }],
                failure: vec![Self::get_op(&k)],
            })
            .await?;
        if !response.succeeded {
            return Err(Self::precondition_failed(key, response));
        }
        let revision = response.header.unwrap_or_default().revision;
        let prev = response
            .responses
            .into_iter()
            .find_map(|op| match op.response {
                Some(pb::Response::DeleteRange(deleted)) => deleted.prev_kvs.into_iter().next(),
                _ => None,
            })
            .ok_or_else(|| StoreError::Backend("etcd delete returned no previous value".into()))?;
        Ok(KeyValue {
            mod_revision: revision,
            ..self.decode(prev)
        })
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let response = self
            .range_request(pb::RangeRequest {
                key: self.key(key),
                ..Default::default()
            })
            .await
            .map_err(|f| self.plain(f))?;
        Ok(response.kvs.into_iter().next().map(|kv| self.decode(kv)))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let (mut start, end) = self.range(prefix);
        if let Some(after) = &opts.start_after {
            let mut after = self.key(after);
            if after >= start {
                after.push(0);
                start = after;
            }
        }
        let revision = opts.revision.filter(|r| *r > 0).unwrap_or(0);
        let limit = opts
            .limit
            .filter(|l| *l > 0)
            .map_or(0, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let response = match self
            .range_request(pb::RangeRequest {
                key: start,
                range_end: end,
                limit,
                revision,
                ..Default::default()
            })
            .await
        {
            Ok(response) => response,
            Err(failure) => return Err(self.at_revision(failure, revision).await),
        };
        let items: Vec<KeyValue> = response.kvs.into_iter().map(|kv| self.decode(kv)).collect();
        let remaining = u64::try_from(response.count)
            .unwrap_or(0)
            .saturating_sub(items.len() as u64);
        Ok(ListResult {
            revision: if revision > 0 {
                revision
            } else {
                response.header.unwrap_or_default().revision
            },
            more: response.more,
            remaining,
            items,
        })
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<WatchStream> {
        if from_revision > 0 {
            // etcd replays from a start revision that is itself kept (compacted + 1 at worst),
            // the store contract from one after a kept revision: ask etcd whether
            // `from_revision` is still there.
            let check = pb::RangeRequest {
                key: vec![0],
                revision: from_revision,
                count_only: true,
                ..Default::default()
            };
            match self.range_request(check).await {
                Ok(_) | Err(Failure::FutureRevision) => {}
                Err(failure) => return Err(self.at_revision(failure, from_revision).await),
            }
        }
        let (key, range_end) = self.range(prefix);
        let create = pb::WatchCreateRequest {
            key,
            range_end,
            // 0: etcd starts at its current revision + 1.
            start_revision: if from_revision > 0 {
                from_revision + 1
            } else {
                0
            },
            prev_kv: true,
            ..Default::default()
        };
        let (stream, created) = self.open_watch(create).await.map_err(|f| self.plain(f))?;
        let mut state = WatchState {
            stream,
            pending: VecDeque::new(),
            done: false,
            last: from_revision.max(0),
            prefix: self.prefix.clone(),
        };
        if created.compact_revision > 0 {
            return Err(StoreError::Compacted {
                requested: from_revision,
                compacted: created.compact_revision,
            });
        }
        if created.canceled {
            return Err(StoreError::Backend(format!(
                "etcd refused the watch: {}",
                created.cancel_reason
            )));
        }
        if state.last == 0 {
            state.last = created.header.as_ref().map_or(0, |h| h.revision);
        }
        state.receive(created);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(state.run(tx));
        Ok(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed())
    }

    async fn current_revision(&self) -> Result<Revision> {
        let response = self
            .range_request(pb::RangeRequest {
                key: vec![0],
                count_only: true,
                ..Default::default()
            })
            .await
            .map_err(|f| self.plain(f))?;
        Ok(response.header.unwrap_or_default().revision)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let request = pb::CompactionRequest {
            revision,
            physical: false,
        };
        match self
            .unary::<_, pb::CompactionResponse>(pb::COMPACT, request)
            .await
        {
            Ok(_) => {
                self.compacted.fetch_max(revision, Ordering::Relaxed);
                Ok(())
            }
            Err(failure) => Err(self.at_revision(failure, revision).await),
        }
    }

    fn sees_every_revision(&self) -> bool {
        self.prefix.is_empty()
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        let known = self.compacted.load(Ordering::Relaxed);
        // A range at the known compacted revision succeeds unless someone compacted further.
        let check = pb::RangeRequest {
            key: vec![0],
            revision: known.max(1),
            count_only: true,
            ..Default::default()
        };
        match self.range_request(check).await {
            Ok(_) => Ok(known),
            Err(Failure::Compacted) => self.probe_compacted_revision().await,
            Err(failure) => Err(self.plain(failure)),
        }
    }
}
