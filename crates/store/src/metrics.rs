//! The outbox relay's Prometheus metrics, the same in every service (a [`RelayObserver`]):
//!
//! - `<service>_outbox_published_total{topic}` — entries published;
//! - `<service>_outbox_errors_total` — failed relay rounds or publishes (retried);
//! - `<service>_outbox_parked_total` — entries that can never be published, parked
//!   (an operator must look: docs/operations.md);
//! - `<service>_outbox_handed_off_total` — entries a commit handed straight to the relay
//!   (published without being read back from Redis).
//!
//! And [`StateGauges`], what is true now, sampled every [`SAMPLE_EVERY`] by the service:
//!
//! - `<service>_ready` — 1 when every readiness check passes (`GET /readyz` answers 200);
//! - `<service>_consumer_lag{topic,partition}` — messages between the group's committed offset
//!   and the broker's high watermark, for each partition this replica holds;
//! - `<service>_outbox_entries{bucket}` and `<service>_outbox_oldest_entry_age_seconds{bucket}`
//!   — entries waiting in each outbox bucket and how old the oldest is (0 when empty). Every
//!   replica reports the whole deployment's outboxes (they live in Redis): aggregate with
//!   `max`, not `sum`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use huleedu_contracts::Timestamp;
use huleedu_kafka::context::PartitionLag;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::relay::RelayObserver;
use crate::{Store, StoreError};

/// How often the services sample their [`StateGauges`] (and their own gauges).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TopicLabel {
    topic: String,
}

/// Handles to the relay's counters (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct OutboxMetrics {
    published: Family<TopicLabel, Counter>,
    errors: Counter,
    parked: Counter,
    handed_off: Counter,
}

impl OutboxMetrics {
    /// Register the counters as `<service>_outbox_*`; `topics` get their published series at 0
    /// from the start (so `rate()` works before the first publish).
    pub fn register(service: &str, topics: &[&str], registry: &mut Registry) -> Self {
        let m = Self::default();
        for topic in topics {
            drop(m.published.get_or_create(&TopicLabel {
                topic: (*topic).to_owned(),
            }));
        }
        registry.register(
            format!("{service}_outbox_published"),
            "Outbox entries published, by topic",
            m.published.clone(),
        );
        registry.register(
            format!("{service}_outbox_errors"),
            "Outbox relay rounds or publishes that failed (retried)",
            m.errors.clone(),
        );
        registry.register(
            format!("{service}_outbox_parked"),
            "Outbox entries that can never be published (undecodable or refused by the broker for good), parked for an operator",
            m.parked.clone(),
        );
        registry.register(
            format!("{service}_outbox_handed_off"),
            "Outbox entries a commit handed straight to the relay (published without being read back from Redis)",
            m.handed_off.clone(),
        );
        m
    }
}

impl RelayObserver for OutboxMetrics {
    fn on_published(&self, topic: &str) {
        self.published
            .get_or_create(&TopicLabel {
                topic: topic.to_owned(),
            })
            .inc();
    }

    fn on_error(&self) {
        self.errors.inc();
    }

    fn on_parked(&self) {
        self.parked.inc();
    }

    fn on_handed_off(&self, entries: u64) {
        self.handed_off.inc_by(entries);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LagLabels {
    topic: String,
    partition: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BucketLabel {
    bucket: String,
}

/// A gauge of seconds (or any fraction).
pub type SecondsGauge = Gauge<f64, AtomicU64>;

/// Gauges every service has: consumer lag, outbox depth and age (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct StateGauges {
    ready: Gauge,
    lag: Family<LagLabels, Gauge>,
    outbox_entries: Family<BucketLabel, Gauge>,
    outbox_age: Family<BucketLabel, SecondsGauge>,
}

impl StateGauges {
    /// Register the gauges as `<service>_ready`, `<service>_consumer_lag`,
    /// `<service>_outbox_entries` and `<service>_outbox_oldest_entry_age_seconds`.
    pub fn register(service: &str, registry: &mut Registry) -> Self {
        let g = Self::default();
        registry.register(
            format!("{service}_ready"),
            "1 when every readiness check passes (what GET /readyz answers 200 for), else 0",
            g.ready.clone(),
        );
        registry.register(
            format!("{service}_consumer_lag"),
            "Messages between the consumer group's committed offset and the broker's high watermark, per partition this replica holds (librdkafka statistics, every 10 s)",
            g.lag.clone(),
        );
        registry.register(
            format!("{service}_outbox_entries"),
            "Entries waiting in each outbox bucket (the whole deployment's: aggregate with max)",
            g.outbox_entries.clone(),
        );
        registry.register(
            format!("{service}_outbox_oldest_entry_age_seconds"),
            "Age of the oldest entry waiting in each outbox bucket (its event time; 0 when empty)",
            g.outbox_age.clone(),
        );
        g
    }

    /// Whether the service is ready now.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// The lag of the partitions this replica holds now (others leave the metric).
    pub fn set_lag(&self, lag: &[PartitionLag]) {
        self.lag.clear();
        for p in lag {
            self.lag
                .get_or_create(&LagLabels {
                    topic: p.topic.clone(),
                    partition: p.partition.to_string(),
                })
                .set(p.lag);
        }
    }

    /// Read every outbox bucket's depth and oldest entry from Redis.
    pub async fn sample_outbox(&self, store: &Store, now: Timestamp) -> Result<(), StoreError> {
        for head in store.outbox_heads().await? {
            let label = BucketLabel {
                bucket: format!("{:02}", head.bucket),
            };
            self.outbox_entries
                .get_or_create(&label)
                .set(head.entries as i64);
            let age = match (head.entries, head.oldest) {
                (0, _) | (_, None) => 0.0,
                (_, Some(t)) => ((now.0 - t.0).num_milliseconds().max(0) as f64) / 1000.0,
            };
            self.outbox_age.get_or_create(&label).set(age);
        }
        Ok(())
    }
}

/// `<service>_dlq_records_total{topic}`: records this service wrote to dead-letter topics, by
/// DLQ topic (poison messages and, in the conductor, failed essays).
#[derive(Debug, Clone, Default)]
pub struct DlqCounter(Family<TopicLabel, Counter>);

impl DlqCounter {
    pub fn register(service: &str, registry: &mut Registry) -> Self {
        let c = Self::default();
        registry.register(
            format!("{service}_dlq_records"),
            "Records written to dead-letter topics, by DLQ topic",
            c.0.clone(),
        );
        c
    }

    /// `n` records written to `dlq_topic`.
    pub fn add(&self, dlq_topic: &str, n: u64) {
        self.0
            .get_or_create(&TopicLabel {
                topic: dlq_topic.to_owned(),
            })
            .inc_by(n);
    }
}

/// Run `sample` every [`SAMPLE_EVERY`] (first at once) until `shutdown`; a failed sample is
/// logged and the gauges keep their last values.
pub async fn sample_every<F, Fut>(shutdown: tokio_util::sync::CancellationToken, mut sample: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = sample().await {
                    tracing::debug!(error = %e, "sampling the state gauges failed; keeping the last values");
                }
            }
        }
    }
}
