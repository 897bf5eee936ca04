//! rdkafka client contexts: logs to `tracing`, commit before revoke, assignment tracking.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::TopicPartitionList;

/// Routes librdkafka's log lines and errors to `tracing` (target `librdkafka`), and remembers
/// the last refusal (see [`Refusals`]).
#[derive(Debug, Clone, Default)]
pub struct LogContext {
    pub(crate) refusals: Arc<Refusals>,
}

/// The last time the broker refused this client for a reason a retry will not fix: failed
/// authentication, a TLS handshake that failed (untrusted certificate, no client certificate),
/// or a security protocol the listener does not speak. Start-up stops on it and readiness
/// reports it, instead of waiting for a broker that will never accept the client.
#[derive(Debug, Default)]
pub struct Refusals {
    last: Mutex<Option<(std::time::Instant, String)>>,
}

impl Refusals {
    /// The last refusal's reason, if any since the last call.
    pub fn take(&self) -> Option<String> {
        self.last.lock().take().map(|(_, r)| r)
    }

    /// The last refusal's reason if it happened within `within` (kept).
    pub fn recent(&self, within: std::time::Duration) -> Option<String> {
        self.last
            .lock()
            .clone()
            .filter(|(at, _)| at.elapsed() <= within)
            .map(|(_, r)| r)
    }

    fn note(&self, error: &KafkaError, reason: &str) -> bool {
        let code = error.rdkafka_error_code();
        let refused = matches!(
            code,
            Some(
                RDKafkaErrorCode::Authentication
                    | RDKafkaErrorCode::SSL
                    | RDKafkaErrorCode::SaslAuthenticationFailed
            )
        ) || Self::is_refusal(reason);
        if refused {
            self.remember(reason);
        }
        refused
    }

    /// A log line of librdkafka (they arrive on its own threads, also for clients whose error
    /// events nobody polls, such as the admin client's).
    fn note_log(&self, level: RDKafkaLogLevel, message: &str) {
        let serious = matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
                | RDKafkaLogLevel::Warning
        );
        if serious && Self::is_refusal(message) {
            self.remember(message);
        }
    }

    fn is_refusal(text: &str) -> bool {
        text.contains("SSL handshake failed")
            || text.contains("SASL authentication")
            || text.contains("Authentication failed")
            || text.contains("certificate verify failed")
            // The broker rejected the client's certificate, or wanted one (mutual TLS).
            || text.contains("SSL alert")
            || text.contains("security.protocol")
    }

    /// A log line of librdkafka: noted if it is a refusal, then logged.
    fn on_log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.note_log(level, message);
        log_line(level, fac, message);
    }

    /// An error of librdkafka: noted if it is a refusal, then logged (as an error if so).
    fn on_error(&self, error: KafkaError, reason: &str) {
        let refused = self.note(&error, reason);
        log_error(error, reason, refused);
    }

    fn remember(&self, reason: &str) {
        *self.last.lock() = Some((std::time::Instant::now(), reason.to_owned()));
    }
}

fn log_line(level: RDKafkaLogLevel, fac: &str, msg: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", facility = fac, "{msg}"),
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility = fac, "{msg}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility = fac, "{msg}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility = fac, "{msg}"),
    }
}

fn log_error(error: KafkaError, reason: &str, refused: bool) {
    if refused {
        tracing::error!(target: "librdkafka", error = %error, "the broker refused the connection: {reason}");
    } else {
        // Transport errors during a broker restart are expected and retried by librdkafka.
        tracing::warn!(target: "librdkafka", error = %error, "{reason}");
    }
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.refusals.on_log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.refusals.on_error(error, reason);
    }
}

/// For consumers that assign partitions by hand (tools): no rebalance handling needed.
impl ConsumerContext for LogContext {}

impl LogContext {
    /// The broker's last refusal of this client within `within` (see [`Refusals`]).
    pub fn recent_refusal(&self, within: std::time::Duration) -> Option<String> {
        self.refusals.recent(within)
    }
}

/// What readiness probes and metrics need to know about a consumer.
#[derive(Debug, Default)]
pub struct ConsumerStatus {
    joined: AtomicBool,
    assigned: AtomicUsize,
    revocations: AtomicU64,
    /// Consumer lag of each assigned partition, from librdkafka's latest statistics.
    lag: parking_lot::Mutex<Vec<PartitionLag>>,
    /// Topics whose "every partition held here" is tracked ([`ConsumerStatus::track_whole`]).
    tracked: parking_lot::Mutex<Vec<String>>,
    /// The tracked topics every partition of which this consumer holds (set at each
    /// assignment, cleared when partitions are revoked).
    whole: parking_lot::Mutex<Vec<String>>,
}

/// How far behind the group's committed offset is on one partition this consumer holds: the
/// broker's high watermark less the committed offset (librdkafka's `consumer_lag`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
}

/// The lag of every partition this consumer wants (assigned), from a statistics report;
/// partitions whose lag is not known yet (-1) are left out.
pub fn lag_of(stats: &rdkafka::statistics::Statistics) -> Vec<PartitionLag> {
    let mut out: Vec<PartitionLag> = stats
        .topics
        .iter()
        .flat_map(|(topic, t)| {
            t.partitions
                .values()
                .filter(|p| p.partition >= 0 && p.desired && p.consumer_lag >= 0)
                .map(move |p| PartitionLag {
                    topic: topic.clone(),
                    partition: p.partition,
                    lag: p.consumer_lag,
                })
        })
        .collect();
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    out
}

impl ConsumerStatus {
    /// The consumer has joined its group and received an assignment (possibly empty, when there
    /// are more replicas than partitions).
    pub fn is_joined(&self) -> bool {
        self.joined.load(Ordering::Relaxed)
    }

    /// Partitions currently assigned.
    pub fn assigned_partitions(&self) -> usize {
        self.assigned.load(Ordering::Relaxed)
    }

    /// The consumer lag of each partition this consumer holds, as of librdkafka's latest
    /// statistics report (every `STATS_INTERVAL`); empty before the first report.
    pub fn lag(&self) -> Vec<PartitionLag> {
        self.lag.lock().clone()
    }

    /// Track whether this consumer holds every partition of `topic`
    /// ([`ConsumerStatus::holds_every_partition`]): from the next assignment on, each one reads
    /// the topic's partition count from the broker (one metadata request, in the rebalance
    /// callback).
    pub fn track_whole(&self, topic: &str) {
        let mut t = self.tracked.lock();
        if !t.iter().any(|x| x == topic) {
            t.push(topic.to_owned());
        }
    }

    /// Whether this consumer holds every partition of `topic`, a tracked one
    /// ([`ConsumerStatus::track_whole`]) — no other member of its group consumes any of it.
    /// Known from the latest assignment and the topic's partition count in the broker's
    /// metadata at that moment; false while unknown (untracked, before the first assignment,
    /// after a revocation, when the metadata could not be read, with an incremental assignment
    /// strategy). Partitions added to the topic later are seen at the next rebalance (the
    /// consumer's metadata refresh triggers one).
    pub fn holds_every_partition(&self, topic: &str) -> bool {
        self.whole.lock().iter().any(|t| t == topic)
    }

    /// How many times partitions were revoked (messages fetched before are stale).
    pub(crate) fn revocations(&self) -> u64 {
        self.revocations.load(Ordering::SeqCst)
    }
}

/// Consumer context: logging, plus a synchronous commit of stored offsets before partitions are
/// revoked, so the next owner starts exactly after the last committed effect.
#[derive(Debug, Clone, Default)]
pub struct RunnerContext {
    pub(crate) status: Arc<ConsumerStatus>,
    pub(crate) refusals: Arc<Refusals>,
}

impl ClientContext for RunnerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.refusals.on_log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.refusals.on_error(error, reason);
    }

    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        *self.status.lag.lock() = lag_of(&statistics);
    }
}

impl ConsumerContext for RunnerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // Every stored offset belongs to a committed effect. A sequential runner handles
            // messages only between polls, so nothing is in flight here; in concurrent mode a
            // handler still running finishes after this commit and its offset may not store
            // (the next owner sees that message again: at least once). Messages fetched before
            // this point are dropped by their lanes.
            self.status.revocations.fetch_add(1, Ordering::SeqCst);
            commit_stored(consumer, "revoke");
            tracing::info!(partitions = tpl.count(), "partitions revoked");
            self.status.assigned.store(0, Ordering::Relaxed);
            self.status.lag.lock().clear();
            self.status.whole.lock().clear();
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let tracked = self.status.tracked.lock().clone();
                *self.status.whole.lock() = whole_topics(consumer, tpl, &tracked);
                self.status.assigned.store(tpl.count(), Ordering::Relaxed);
                self.status.joined.store(true, Ordering::Relaxed);
                let parts: Vec<String> = tpl
                    .elements()
                    .iter()
                    .map(|e| format!("{}[{}]", e.topic(), e.partition()))
                    .collect();
                tracing::info!(partitions = ?parts, "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

/// How long an assignment waits for a topic's partition count.
const METADATA_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The topics of `tracked` of which `assigned` holds every partition the broker lists (one
/// metadata request per tracked topic assigned; a topic whose metadata cannot be read is left
/// out).
fn whole_topics(
    consumer: &BaseConsumer<RunnerContext>,
    assigned: &TopicPartitionList,
    tracked: &[String],
) -> Vec<String> {
    let mut held: Vec<(String, usize)> = Vec::new();
    for e in assigned.elements() {
        if !tracked.iter().any(|t| t == e.topic()) {
            continue;
        }
        match held.iter_mut().find(|(t, _)| t == e.topic()) {
            Some((_, n)) => *n += 1,
            None => held.push((e.topic().to_owned(), 1)),
        }
    }
    held.into_iter()
        .filter(
            |(topic, n)| match consumer.fetch_metadata(Some(topic), METADATA_WAIT) {
                Ok(m) => m
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic && t.error().is_none())
                    .is_some_and(|t| !t.partitions().is_empty() && t.partitions().len() == *n),
                Err(e) => {
                    tracing::debug!(topic, error = %e, "partition count unknown");
                    false
                }
            },
        )
        .map(|(t, _)| t)
        .collect()
}

/// Commit stored offsets synchronously; "nothing stored" is success.
pub(crate) fn commit_stored<C: Consumer<RunnerContext>>(consumer: &C, when: &str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => tracing::debug!(when, "offsets committed"),
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => {
            tracing::warn!(when, error = %e, "offset commit failed; the broker may redeliver")
        }
    }
}
