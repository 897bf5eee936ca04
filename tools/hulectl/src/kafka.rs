//! Reading and writing topics.
//!
//! - [`read_to_end`] reads topics from their beginning up to the high watermark each partition
//!   had when the call started, then stops (`dlq list`).
//! - [`Follower`] reads topics from *now* on (or from the beginning) in a background thread and
//!   hands the records over a channel (`watch`, `submit --wait`, `demo`). Its start positions
//!   are the high watermarks fetched before [`Follower::start`] returns, so anything published
//!   after that is seen — no consumer-group join to wait for, no race.
//! - [`publish`] sends one message with the system's producer (acks=all, key = batch id).
//!
//! Readers assign partitions explicitly under a unique group id and never commit, so they
//! change nothing on the broker.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use huleedu_kafka::context::LogContext;
use huleedu_kafka::producer::Delivered;
use huleedu_kafka::{KafkaSettings, OutgoingMessage, Producer};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::event::{is_poison_topic, Record};

/// How long a metadata or watermark request may take.
const META_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one poll waits (also the follower's reaction time to being stopped).
const POLL: Duration = Duration::from_millis(100);

/// Which topics to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSet {
    /// Topics by name.
    pub names: Vec<String>,
    /// Also every poison dead-letter topic (`<topic>.DLQ`) that exists on the broker.
    pub poison_dlqs: bool,
}

impl TopicSet {
    pub fn new<S: AsRef<str>>(names: &[S], poison_dlqs: bool) -> Self {
        TopicSet {
            names: names.iter().map(|s| s.as_ref().to_owned()).collect(),
            poison_dlqs,
        }
    }

    fn wants(&self, topic: &str) -> bool {
        self.names.iter().any(|n| n == topic) || (self.poison_dlqs && is_poison_topic(topic))
    }
}

/// One partition to read and its watermarks when resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    topic: String,
    partition: i32,
    low: i64,
    high: i64,
}

/// The partitions of a topic set, and the named topics that do not exist (yet).
#[derive(Debug, Clone, Default)]
struct Resolved {
    parts: Vec<Part>,
    missing: Vec<String>,
}

type ToolConsumer = BaseConsumer<LogContext>;

fn consumer(settings: &KafkaSettings) -> anyhow::Result<ToolConsumer> {
    settings
        .base()
        // A throw-away group: partitions are assigned by hand and nothing is committed.
        .set(
            "group.id",
            format!("hulectl-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // Show events as they happen.
        .set("fetch.wait.max.ms", "50")
        .create_with_context(LogContext::default())
        .context("could not create a Kafka consumer")
}

fn unreachable(
    c: &ToolConsumer,
    settings: &KafkaSettings,
    e: impl std::fmt::Display,
) -> anyhow::Error {
    // This consumer's events are not polled yet: ask a client that polls them why.
    let refusal = c
        .context()
        .recent_refusal(Duration::from_secs(60))
        .map(|reason| format!("{reason} (check {})", settings.security.hint()))
        .or_else(
            || match huleedu_kafka::admin::check_broker_blocking(settings, META_TIMEOUT) {
                Err(e @ huleedu_kafka::KafkaError::Refused { .. }) => Some(e.to_string()),
                _ => None,
            },
        );
    if let Some(why) = refusal {
        return anyhow!("the Kafka broker at {}: {why}", settings.bootstrap_servers);
    }
    anyhow!(
        "cannot reach the Kafka broker at {} ({e}); is the stack running? \
         (set --kafka or KAFKA_BOOTSTRAP_SERVERS)",
        settings.bootstrap_servers
    )
}

fn resolve(c: &ToolConsumer, settings: &KafkaSettings, set: &TopicSet) -> anyhow::Result<Resolved> {
    let md = c
        .fetch_metadata(None, META_TIMEOUT)
        .map_err(|e| unreachable(c, settings, e))?;
    let mut r = Resolved::default();
    let mut seen = Vec::new();
    for t in md.topics() {
        if !set.wants(t.name()) || t.error().is_some() || t.partitions().is_empty() {
            continue;
        }
        seen.push(t.name().to_owned());
        for p in t.partitions() {
            let (low, high) = c
                .fetch_watermarks(t.name(), p.id(), META_TIMEOUT)
                .map_err(|e| {
                    anyhow!(
                        "could not read the offsets of {} [{}]: {e}",
                        t.name(),
                        p.id()
                    )
                })?;
            r.parts.push(Part {
                topic: t.name().to_owned(),
                partition: p.id(),
                low,
                high,
            });
        }
    }
    r.parts
        .sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    r.missing = set
        .names
        .iter()
        .filter(|n| !seen.contains(n))
        .cloned()
        .collect();
    Ok(r)
}

/// Checks that the broker answers (metadata within a few seconds).
pub fn check_broker(settings: &KafkaSettings) -> anyhow::Result<Vec<String>> {
    let c = consumer(settings)?;
    let md = c
        .fetch_metadata(None, META_TIMEOUT)
        .map_err(|e| unreachable(&c, settings, e))?;
    Ok(md.topics().iter().map(|t| t.name().to_owned()).collect())
}

/// What [`read_to_end`] read.
#[derive(Debug, Clone, Default)]
pub struct ReadAll {
    pub records: Vec<Record>,
    /// Named topics that do not exist on the broker.
    pub missing: Vec<String>,
    /// Topics actually read.
    pub topics: Vec<String>,
}

/// Reads every partition of `set` from its low to its high watermark (as of the start of the
/// call) and stops. Blocking; fails after `timeout`.
pub fn read_to_end(
    settings: &KafkaSettings,
    set: &TopicSet,
    timeout: Duration,
) -> anyhow::Result<ReadAll> {
    let c = consumer(settings)?;
    let resolved = resolve(&c, settings, set)?;
    let mut topics: Vec<String> = resolved.parts.iter().map(|p| p.topic.clone()).collect();
    topics.dedup();
    let mut pending: HashMap<(String, i32), i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in resolved.parts.iter().filter(|p| p.high > p.low) {
        tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.low))
            .context("building the assignment")?;
        pending.insert((p.topic.clone(), p.partition), p.high);
    }
    let mut out = ReadAll {
        records: Vec::new(),
        missing: resolved.missing,
        topics,
    };
    if pending.is_empty() {
        return Ok(out);
    }
    c.assign(&tpl).context("could not assign partitions")?;
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    let mut reached: HashSet<(String, i32)> = HashSet::new();
    loop {
        match c.poll(POLL) {
            Some(Ok(m)) => {
                let key = (m.topic().to_owned(), m.partition());
                if let Some(&high) = pending.get(&key) {
                    out.records.push(Record::from_message(&m));
                    if m.offset() + 1 >= high {
                        reached.insert(key);
                    }
                }
            }
            Some(Err(e)) => last_error = Some(e.to_string()),
            None => {
                // Offsets can have gaps (transaction markers, compaction): the position tells
                // whether a partition is read to its end even when its last offset is no message.
                if let Ok(pos) = c.position() {
                    for e in pos.elements() {
                        if let Offset::Offset(next) = e.offset() {
                            let key = (e.topic().to_owned(), e.partition());
                            if pending.get(&key).is_some_and(|&high| next >= high) {
                                reached.insert(key);
                            }
                        }
                    }
                }
                // Every partition reached its high watermark and nothing more is queued
                // locally. (Not stopping at the watermark itself: some brokers, tansu among
                // them, report a high watermark inside the last record batch, whose other
                // records are then already in the local queue.)
                if reached.len() == pending.len() {
                    break;
                }
            }
        }
        if Instant::now() > deadline {
            let mut left: Vec<String> = pending
                .keys()
                .filter(|k| !reached.contains(*k))
                .map(|(t, p)| format!("{t} [{p}]"))
                .collect();
            left.sort();
            bail!(
                "timed out after {timeout:?} reading {}{}",
                left.join(", "),
                last_error
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            );
        }
    }
    out.records
        .sort_by(|a, b| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));
    Ok(out)
}

/// Where a [`Follower`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// At each partition's high watermark: only what is published from now on.
    Now,
    /// At each partition's beginning.
    Beginning,
}

/// Follows topics in a background thread. Dropping it stops the thread.
#[derive(Debug)]
pub struct Follower {
    rx: mpsc::UnboundedReceiver<Result<Record, String>>,
    stop: Arc<AtomicBool>,
    /// Topics followed.
    pub topics: Vec<String>,
    /// Named topics that do not exist on the broker (not followed).
    pub missing: Vec<String>,
}

impl Follower {
    /// Resolves the partitions of `set`, fixes the start offsets, and starts reading. Blocking
    /// (metadata requests); call it from `spawn_blocking` in async code.
    pub fn start(
        settings: &KafkaSettings,
        set: &TopicSet,
        at: StartAt,
    ) -> anyhow::Result<Follower> {
        let c = consumer(settings)?;
        let resolved = resolve(&c, settings, set)?;
        let mut tpl = TopicPartitionList::new();
        for p in &resolved.parts {
            let offset = match at {
                StartAt::Now => p.high,
                StartAt::Beginning => p.low,
            };
            tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(offset))
                .context("building the assignment")?;
        }
        c.assign(&tpl).context("could not assign partitions")?;
        let mut topics: Vec<String> = resolved.parts.iter().map(|p| p.topic.clone()).collect();
        topics.dedup();
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("hulectl-follower".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    let item = match c.poll(POLL) {
                        None => continue,
                        Some(Ok(m)) => Ok(Record::from_message(&m)),
                        Some(Err(e)) => Err(e.to_string()),
                    };
                    if tx.send(item).is_err() {
                        break;
                    }
                }
            })
            .context("could not start the reader thread")?;
        Ok(Follower {
            rx,
            stop,
            topics,
            missing: resolved.missing,
        })
    }

    /// The next record (or a consumer error to report); `None` when the reader stopped.
    pub async fn next(&mut self) -> Option<Result<Record, String>> {
        self.rx.recv().await
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Publishes one message and waits for the broker's acknowledgement.
pub async fn publish(settings: &KafkaSettings, msg: &OutgoingMessage) -> anyhow::Result<Delivered> {
    let producer = Producer::new(settings).context("could not create a Kafka producer")?;
    let delivered = producer
        .send(msg)
        .await
        .with_context(|| format!("could not publish to {}", msg.topic))?;
    // Dropping a producer joins librdkafka threads; keep that off the async workers.
    tokio::task::spawn_blocking(move || drop(producer));
    Ok(delivered)
}
