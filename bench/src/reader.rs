//! A reader that timestamps arrivals: assigned to every partition of the watched topics from
//! their current end, it stamps each message with the wall clock the moment it arrives and
//! passes a small parsed summary on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use huleedu_contracts::{topics, PhaseName, Timestamp};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Wall clock in microseconds since the epoch (the services' envelopes use the same clock).
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// What a message is, by its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Command(PhaseName),
    Outcome(PhaseName),
    Terminal,
    Skipped,
    Request,
    Ready,
    Floor,
    Other,
}

/// One observed message.
#[derive(Debug, Clone)]
pub struct Obs {
    pub kind: Kind,
    /// The message key (the batch id; the floor's key).
    pub key: String,
    /// When the reader received it (wall clock, µs).
    pub at_us: i64,
    /// When its producer made it: the envelope's `event_timestamp` (µs; set right before the
    /// produce call by the worker and the bench, at decision time by the orchestrator), or the
    /// floor message's send time.
    pub produced_us: i64,
    pub correlation: Option<Uuid>,
    /// Terminal events: `final_status == completed_successfully`.
    pub ok: bool,
    /// The message value's size.
    pub bytes: usize,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    correlation_id: Option<Uuid>,
    #[serde(default)]
    event_timestamp: Option<Timestamp>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    phase_name: Option<PhaseName>,
    #[serde(default)]
    final_status: Option<String>,
}

#[derive(Deserialize)]
struct FloorPayload {
    t: i64,
}

fn kind_of(topic: &str) -> Kind {
    if let Some(p) = topics::phase_of_command_topic(topic) {
        return Kind::Command(p);
    }
    match topic {
        topics::ELS_BATCH_PHASE_OUTCOME => Kind::Outcome(PhaseName::Spellcheck),
        topics::BATCH_PIPELINE_COMPLETED => Kind::Terminal,
        topics::BATCH_PHASE_SKIPPED => Kind::Skipped,
        topics::CLIENT_BATCH_PIPELINE_REQUEST => Kind::Request,
        topics::BATCH_ESSAYS_READY => Kind::Ready,
        t if t.starts_with("bench.floor.") => Kind::Floor,
        _ => Kind::Other,
    }
}

fn summarize(kind: Kind, key: String, payload: &[u8], at_us: i64) -> Obs {
    let mut obs = Obs {
        kind,
        key,
        at_us,
        produced_us: at_us,
        correlation: None,
        ok: false,
        bytes: payload.len(),
    };
    if kind == Kind::Floor {
        if let Ok(f) = serde_json::from_slice::<FloorPayload>(payload) {
            obs.produced_us = f.t;
        }
        return obs;
    }
    if let Ok(env) = serde_json::from_slice::<Envelope>(payload) {
        obs.correlation = env.correlation_id;
        if let Some(t) = env.event_timestamp {
            obs.produced_us = t.0.timestamp_micros();
        }
        if let Some(d) = env.data {
            if let (Kind::Outcome(_), Some(p)) = (kind, d.phase_name) {
                obs.kind = Kind::Outcome(p);
            }
            obs.ok = d.final_status.as_deref() == Some("completed_successfully");
        }
    }
    obs
}

/// A running reader.
pub struct Reader {
    pub rx: mpsc::UnboundedReceiver<Obs>,
    /// Messages seen so far.
    pub seen: Arc<AtomicU64>,
    stop: tokio::sync::oneshot::Sender<()>,
}

/// The high watermark of `topic[partition]`. A partition created moments ago may have no
/// leader yet (Apache Kafka answers `NotLeaderForPartition` until its election is done): asked
/// again every 100 ms for up to 30 s. Blocking.
fn high_watermark(consumer: &StreamConsumer, topic: &str, partition: i32) -> anyhow::Result<i64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Ok((_, high)) => return Ok(high),
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl Reader {
    /// Start reading `watched` from their current end (the reader sees only what is produced
    /// after this returns).
    pub async fn start(kafka: &str, watched: &[&str]) -> anyhow::Result<Reader> {
        let group = format!("bench-reader-{}", Uuid::new_v4().simple());
        let settings = crate::floor::kafka_settings(kafka, "bench-reader", &group)?;
        let consumer: StreamConsumer = settings
            .consumer_config()
            .create()
            .context("reader consumer")?;
        let topics: Vec<String> = watched.iter().map(|t| t.to_string()).collect();
        let consumer = tokio::task::spawn_blocking(move || -> anyhow::Result<StreamConsumer> {
            let mut tpl = TopicPartitionList::new();
            for t in &topics {
                // A topic created a moment ago may be listed without partitions for a while.
                let until = std::time::Instant::now() + Duration::from_secs(15);
                let parts = loop {
                    let md = consumer
                        .fetch_metadata(Some(t), Duration::from_secs(10))
                        .with_context(|| format!("metadata of {t}"))?;
                    let parts = md
                        .topics()
                        .first()
                        .map(|m| m.partitions().len())
                        .unwrap_or(0);
                    if parts > 0 || std::time::Instant::now() > until {
                        break parts;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                };
                anyhow::ensure!(parts > 0, "topic {t} has no partitions (not created?)");
                for p in 0..parts as i32 {
                    let high = high_watermark(&consumer, t, p)
                        .with_context(|| format!("watermarks of {t}[{p}]"))?;
                    tpl.add_partition_offset(t, p, Offset::Offset(high))?;
                }
            }
            consumer.assign(&tpl)?;
            Ok(consumer)
        })
        .await??;
        let (tx, rx) = mpsc::unbounded_channel();
        let seen = Arc::new(AtomicU64::new(0));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let counter = seen.clone();
        tokio::spawn(async move {
            let mut kinds: HashMap<String, Kind> = HashMap::new();
            loop {
                let m = tokio::select! {
                    _ = &mut stopped => break,
                    m = consumer.recv() => m,
                };
                let at_us = now_us();
                let Ok(m) = m else { continue };
                let kind = *kinds
                    .entry(m.topic().to_owned())
                    .or_insert_with(|| kind_of(m.topic()));
                let key = m
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                let obs = summarize(kind, key, m.payload().unwrap_or_default(), at_us);
                counter.fetch_add(1, Ordering::Relaxed);
                if tx.send(obs).is_err() {
                    break;
                }
            }
            let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
        });
        Ok(Reader { rx, seen, stop })
    }

    /// Stop the reader.
    pub fn stop(self) {
        let _ = self.stop.send(());
    }
}
