//! The at-least-once consumer runner.
//!
//! One runner owns one consumer in one group. By default it handles its messages one at a time,
//! in order (so order per partition is kept by construction). A handler that says so
//! ([`Handler::concurrent_partitions`]) gets one lane per partition instead: messages of one
//! partition are still handled one at a time and in order (so a batch's events, keyed by batch
//! id, keep their order), while different partitions proceed side by side. For each message the
//! [`Handler`] answers:
//!
//! - [`HandlerResult::Done`]: the effects are committed; the offset is stored and auto-committed.
//! - [`HandlerResult::Transient`]: retried with exponential backoff; the offset is not stored and
//!   the partition does not advance. On shutdown during a retry the message is left for the next
//!   owner.
//! - [`HandlerResult::Permanent`]: the original bytes, key and headers go to `<topic>.DLQ` with
//!   the poison headers (see `huleedu_contracts::dlq::headers`), then the offset is stored. If the
//!   DLQ itself cannot be written, that is retried like a transient failure: nothing is lost.
//!
//! Stored offsets are committed synchronously before partitions are revoked and at shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use huleedu_contracts::dlq::headers;
use huleedu_contracts::topics::dlq_topic;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use crate::context::ConsumerStatus;
use crate::context::{commit_stored, RunnerContext};
use crate::{KafkaError, KafkaSettings, Producer};

/// A consumed message, owned, as the handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// Milliseconds since the epoch, when the broker reports one.
    pub timestamp_ms: Option<i64>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Inbound {
    /// Copies a consumed message (key, payload, headers, position, timestamp) into an owned
    /// value. A missing payload or header value becomes empty.
    pub fn from_message<M: Message>(m: &M) -> Self {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            timestamp_ms: m.timestamp().to_millis(),
            headers,
        }
    }

    /// The key as text (batch ids are UTF-8), or "" when absent or not UTF-8.
    pub fn key_str(&self) -> &str {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
            .unwrap_or("")
    }
}

/// A consumed message with its key and header values as text (invalid UTF-8 replaced), for
/// code that shows or compares messages rather than handles them: operator tools and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The key as text; the batch id for every message of the system.
    pub key: Option<String>,
    pub payload: Vec<u8>,
    /// Header values as text.
    pub headers: Vec<(String, String)>,
    /// Milliseconds since the epoch, when the broker reports one.
    pub timestamp_ms: Option<i64>,
}

impl From<Inbound> for TextMessage {
    fn from(m: Inbound) -> Self {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        TextMessage {
            key: m.key.as_deref().map(text),
            headers: m
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), text(v)))
                .collect(),
            topic: m.topic,
            partition: m.partition,
            offset: m.offset,
            payload: m.payload,
            timestamp_ms: m.timestamp_ms,
        }
    }
}

impl TextMessage {
    /// Copies a consumed message (see [`Inbound::from_message`]).
    pub fn from_message<M: Message>(m: &M) -> Self {
        Inbound::from_message(m).into()
    }

    /// A message at partition 0, offset 0, without headers or timestamp (tests, fixtures).
    pub fn new(topic: &str, key: Option<&str>, payload: impl Into<Vec<u8>>) -> Self {
        TextMessage {
            topic: topic.to_owned(),
            partition: 0,
            offset: 0,
            key: key.map(str::to_owned),
            payload: payload.into(),
            headers: Vec::new(),
            timestamp_ms: None,
        }
    }

    /// The value of header `name` (the first, when there are several).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The payload as text, or `<binary>` when it is not UTF-8.
    pub fn payload_str(&self) -> &str {
        std::str::from_utf8(&self.payload).unwrap_or("<binary>")
    }
}

/// Why a message is dead-lettered (`dlq.error.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Not JSON, not UTF-8: cannot be read at all.
    Decode,
    /// JSON of the wrong shape or with invalid values.
    Validation,
    /// Read fine, but handling it failed for good.
    Handler,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decode => "decode",
            Self::Validation => "validation",
            Self::Handler => "handler",
        }
    }
}

/// What the handler made of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerResult {
    /// Effects committed (or nothing to do): move on.
    Done,
    /// Try again later (Redis or broker unavailable, version conflict storm...).
    Transient(String),
    /// Never going to work: dead-letter the original bytes and move on.
    Permanent { kind: FailureKind, message: String },
}

impl HandlerResult {
    pub fn permanent(kind: FailureKind, message: impl Into<String>) -> Self {
        Self::Permanent {
            kind,
            message: message.into(),
        }
    }
}

/// Service code run for each message.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, msg: &Inbound) -> impl Future<Output = HandlerResult> + Send;

    /// May messages of *different* partitions be handled at the same time? Messages of one
    /// partition are always handled one at a time, in offset order. Default: no — one message
    /// at a time overall. Say yes only if concurrent calls are safe (for example, every commit
    /// is checked against a version and decided again on conflict).
    fn concurrent_partitions(&self) -> bool {
        false
    }
}

/// The backoff of transient handler failures (exponential, with jitter).
pub use huleedu_service::backoff::Backoff;

/// Counters a service exports as metrics; called once per message with its final result.
pub trait RunnerObserver: Send + Sync + 'static {
    fn on_result(&self, _topic: &str, _result: &HandlerResult) {}
    fn on_retry(&self, _topic: &str) {}
}

/// The default observer records nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;
impl RunnerObserver for NoObserver {}

/// Concurrent mode: most message bytes fetched ahead and waiting in partition lanes. Within
/// this budget a slow or held partition never holds up the others; beyond it, fetching waits
/// for the lanes to catch up (memory stays bounded).
const LANES_BUDGET_KIB: usize = 16 * 1024;

/// The budget a message takes while it waits in a lane (KiB, rounded up, at least 1).
fn kib_of(msg: &Inbound) -> u32 {
    let bytes = msg.payload.len() + msg.key.as_ref().map_or(0, Vec::len) + 256;
    bytes.div_ceil(1024).min(LANES_BUDGET_KIB) as u32
}

/// A message on its way to a lane, with its share of the budget and its rebalance generation.
type Queued = (Inbound, u64, tokio::sync::OwnedSemaphorePermit);

/// Runs a [`Handler`] over the messages of a set of topics, at least once each.
pub struct ConsumerRunner<H, O = NoObserver> {
    consumer: Arc<StreamConsumer<RunnerContext>>,
    handler: H,
    observer: O,
    dlq: Producer,
    service: String,
    group: String,
    backoff: Backoff,
    status: Arc<ConsumerStatus>,
    /// `KAFKA_MAX_MESSAGE_BYTES`: larger values are dead-lettered as `validation` errors
    /// without reaching the handler.
    max_message_bytes: usize,
}

impl<H, O> std::fmt::Debug for ConsumerRunner<H, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerRunner")
            .field("service", &self.service)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> ConsumerRunner<H, NoObserver> {
    /// Subscribe to `topics` in the settings' consumer group. `dlq` publishes poison messages.
    pub fn new(
        settings: &KafkaSettings,
        topics: &[&str],
        handler: H,
        dlq: Producer,
    ) -> Result<Self, KafkaError> {
        let context = RunnerContext::default();
        let status = context.status.clone();
        let consumer: StreamConsumer<RunnerContext> = settings
            .consumer_config()
            .create_with_context(context)
            .map_err(KafkaError::Client)?;
        consumer
            .subscribe(topics)
            .map_err(|source| KafkaError::Subscribe {
                topics: topics.iter().map(|t| t.to_string()).collect(),
                source,
            })?;
        Ok(Self {
            consumer: Arc::new(consumer),
            handler,
            observer: NoObserver,
            dlq,
            service: settings.client_id.clone(),
            group: settings.consumer_group.clone(),
            backoff: Backoff::default(),
            status,
            max_message_bytes: settings.max_message_bytes,
        })
    }
}

impl<H: Handler, O: RunnerObserver> ConsumerRunner<H, O> {
    /// Report results to `observer` (metrics).
    pub fn with_observer<O2: RunnerObserver>(self, observer: O2) -> ConsumerRunner<H, O2> {
        ConsumerRunner {
            consumer: self.consumer,
            handler: self.handler,
            observer,
            dlq: self.dlq,
            service: self.service,
            group: self.group,
            backoff: self.backoff,
            status: self.status,
            max_message_bytes: self.max_message_bytes,
        }
    }

    /// Change the retry pacing for transient failures.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Assignment state, for readiness probes.
    pub fn status(&self) -> Arc<ConsumerStatus> {
        self.status.clone()
    }

    /// Consume until `shutdown` is cancelled; then commit stored offsets and close.
    ///
    /// A message whose handler is running when shutdown is requested is finished first; one that
    /// is waiting for a transient retry is left unstored for the next owner (and so are messages
    /// fetched ahead in concurrent mode).
    pub async fn run(self, shutdown: CancellationToken) {
        let consumer = self.consumer.clone();
        let service = self.service.clone();
        if self.handler.concurrent_partitions() {
            Arc::new(self).run_lanes(&shutdown).await;
        } else {
            self.run_sequential(&shutdown).await;
        }
        commit_stored(consumer.as_ref(), "shutdown");
        // Closing a consumer blocks while it leaves the group: not on an async worker.
        let _ = tokio::task::spawn_blocking(move || {
            consumer.unsubscribe();
            drop(consumer);
        })
        .await;
        tracing::info!(service = %service, "consumer stopped");
    }

    /// The next message fetched; `None` once shutdown is requested. Consumer errors (broker
    /// down, for example) are logged and polling goes on.
    async fn next(&self, shutdown: &CancellationToken) -> Option<Inbound> {
        loop {
            let msg = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return None,
                m = self.consumer.recv() => m,
            };
            match msg {
                Ok(m) => return Some(Inbound::from_message(&m)),
                Err(e) => tracing::warn!(error = %e, "consumer error; continuing"),
            }
        }
    }

    /// One message at a time, in the order fetched.
    async fn run_sequential(self, shutdown: &CancellationToken) {
        while let Some(inbound) = self.next(shutdown).await {
            if !self.handle_and_store(&inbound, shutdown).await {
                break;
            }
        }
    }

    /// One lane (task) per partition: in order within a partition, partitions side by side.
    /// Handing a message to its lane waits only when [`LANES_BUDGET_KIB`] of messages are
    /// already waiting in the lanes, so a slow partition does not hold up the others.
    async fn run_lanes(self: Arc<Self>, shutdown: &CancellationToken) {
        let budget = Arc::new(tokio::sync::Semaphore::new(LANES_BUDGET_KIB));
        let mut lanes: HashMap<(String, i32), tokio::sync::mpsc::UnboundedSender<Queued>> =
            HashMap::new();
        let mut tasks = Vec::new();
        while let Some(inbound) = self.next(shutdown).await {
            let share = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                p = budget.clone().acquire_many_owned(kib_of(&inbound)) => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            // Messages fetched before a revocation are dropped by their lane: the partition's
            // next owner (possibly this consumer again) fetches them from the committed offset.
            let generation = self.status.revocations();
            let lane = lanes
                .entry((inbound.topic.clone(), inbound.partition))
                .or_insert_with(|| {
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                    tasks.push(tokio::spawn(self.clone().lane(rx, shutdown.clone())));
                    tx
                });
            if lane.send((inbound, generation, share)).is_err() {
                // The lane stopped for shutdown during a retry: nothing more to do.
                break;
            }
        }
        drop(lanes);
        for t in tasks {
            let _ = t.await;
        }
    }

    async fn lane(
        self: Arc<Self>,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<Queued>,
        shutdown: CancellationToken,
    ) {
        while let Some((inbound, generation, _share)) = rx.recv().await {
            if shutdown.is_cancelled() {
                break;
            }
            if generation != self.status.revocations() {
                continue;
            }
            if !self.handle_and_store(&inbound, &shutdown).await {
                break;
            }
        }
    }

    /// Handle one message, then store its offset. False when shutdown interrupted a retry.
    async fn handle_and_store(&self, inbound: &Inbound, shutdown: &CancellationToken) -> bool {
        let span = tracing::info_span!(
            "message",
            topic = %inbound.topic,
            partition = inbound.partition,
            offset = inbound.offset,
            key = %inbound.key_str(),
        );
        if !self.process(inbound, shutdown).instrument(span).await {
            return false;
        }
        if let Err(e) =
            self.consumer
                .store_offset(&inbound.topic, inbound.partition, inbound.offset)
        {
            // The partition was revoked meanwhile; the next owner sees the message again.
            tracing::warn!(error = %e, topic = %inbound.topic, partition = inbound.partition,
                offset = inbound.offset, "could not store offset; message may be redelivered");
        }
        true
    }

    /// Handle one message until it is done or dead-lettered (true), or shutdown interrupts a
    /// retry (false: the offset must not be stored).
    async fn process(&self, msg: &Inbound, shutdown: &CancellationToken) -> bool {
        let mut attempt = 0u32;
        loop {
            let result = if msg.payload.len() > self.max_message_bytes {
                HandlerResult::permanent(
                    FailureKind::Validation,
                    format!(
                        "message of {} bytes exceeds the {}-byte limit",
                        msg.payload.len(),
                        self.max_message_bytes
                    ),
                )
            } else {
                self.handler.handle(msg).await
            };
            let error = match &result {
                HandlerResult::Done => {
                    self.observer.on_result(&msg.topic, &result);
                    return true;
                }
                HandlerResult::Permanent { kind, message } => {
                    match self.dead_letter(msg, *kind, message).await {
                        Ok(()) => {
                            tracing::warn!(kind = kind.as_str(), reason = %message,
                                dlq = %dlq_topic(&msg.topic), "message dead-lettered");
                            self.observer.on_result(&msg.topic, &result);
                            return true;
                        }
                        Err(e) => format!("dead-letter publish failed: {e}"),
                    }
                }
                HandlerResult::Transient(e) => e.clone(),
            };
            attempt += 1;
            self.observer.on_retry(&msg.topic);
            let delay = self.backoff.delay(attempt);
            tracing::warn!(attempt, retry_in_ms = delay.as_millis() as u64, error = %error,
                "transient failure; partition held until it succeeds");
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn dead_letter(
        &self,
        msg: &Inbound,
        kind: FailureKind,
        reason: &str,
    ) -> Result<(), KafkaError> {
        let mut hdrs = msg.headers.clone();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let ts = msg.timestamp_ms.map(|t| t.to_string()).unwrap_or_default();
        for (k, v) in [
            (headers::ORIGINAL_TOPIC, msg.topic.clone()),
            (headers::ORIGINAL_PARTITION, msg.partition.to_string()),
            (headers::ORIGINAL_OFFSET, msg.offset.to_string()),
            (headers::ORIGINAL_TIMESTAMP, ts),
            (headers::CONSUMER_GROUP, self.group.clone()),
            (headers::SERVICE, self.service.clone()),
            (headers::ERROR_KIND, kind.as_str().to_owned()),
            (headers::ERROR_MESSAGE, truncate(reason, 4096).to_owned()),
            (headers::FAILED_AT, now),
        ] {
            hdrs.push((k.to_owned(), v.into_bytes()));
        }
        let topic = dlq_topic(&msg.topic);
        match self
            .dlq
            .send_parts(&topic, msg.key.as_deref(), &msg.payload, &hdrs)
            .await
        {
            Err(e) if e.is_too_large() => {
                // The copy does not fit the DLQ topic (the source topic allows larger messages
                // than the DLQ topic). Record the failure without the value, saying so: the
                // original stays readable at its topic, partition and offset while retained.
                tracing::warn!(bytes = msg.payload.len(), dlq = %topic,
                    "dead-letter copy too large for the DLQ topic; recorded without its value");
                hdrs.push((
                    headers::PAYLOAD_OMITTED.to_owned(),
                    msg.payload.len().to_string().into_bytes(),
                ));
                self.dlq
                    .send_parts(&topic, msg.key.as_deref(), &[], &hdrs)
                    .await
                    .map(|_| ())
            }
            r => r.map(|_| ()),
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumed_message_is_copied_whole() {
        use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "a",
                value: Some(&b"x\xffy"[..]),
            })
            .insert(Header::<&[u8]> {
                key: "empty",
                value: None,
            });
        let m = OwnedMessage::new(
            Some(b"{}".to_vec()),
            Some("b\u{e5}1".as_bytes().to_vec()),
            "t".to_owned(),
            Timestamp::CreateTime(1_700_000_000_123),
            2,
            41,
            Some(headers),
        );
        let inbound = Inbound::from_message(&m);
        assert_eq!(
            inbound,
            Inbound {
                topic: "t".into(),
                partition: 2,
                offset: 41,
                key: Some("b\u{e5}1".as_bytes().to_vec()),
                payload: b"{}".to_vec(),
                timestamp_ms: Some(1_700_000_000_123),
                headers: vec![("a".into(), b"x\xffy".to_vec()), ("empty".into(), vec![])],
            }
        );
        assert_eq!(inbound.key_str(), "b\u{e5}1");
        let text = TextMessage::from_message(&m);
        assert_eq!(
            text,
            TextMessage {
                topic: "t".into(),
                partition: 2,
                offset: 41,
                key: Some("b\u{e5}1".into()),
                payload: b"{}".to_vec(),
                headers: vec![
                    ("a".into(), "x\u{fffd}y".into()),
                    ("empty".into(), String::new())
                ],
                timestamp_ms: Some(1_700_000_000_123),
            }
        );
        assert_eq!(text.header("a"), Some("x\u{fffd}y"));
        assert_eq!(text.header("b"), None);
        assert_eq!(text.payload_str(), "{}");
        let bare = Inbound::from_message(&OwnedMessage::new(
            None,
            None,
            "t".to_owned(),
            Timestamp::NotAvailable,
            0,
            0,
            None,
        ));
        assert_eq!(
            TextMessage::from(bare),
            TextMessage::new("t", None, Vec::new())
        );
        let binary = TextMessage::new("t", Some("k"), vec![0xff]);
        assert_eq!(binary.payload_str(), "<binary>");
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("åäö", 3), "å");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
