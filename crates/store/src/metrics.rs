//! The outbox relay's Prometheus metrics, the same in every service (a [`RelayObserver`]):
//!
//! - `<service>_outbox_published_total{topic}` — entries published;
//! - `<service>_outbox_errors_total` — failed relay rounds or publishes (retried);
//! - `<service>_outbox_parked_total` — entries that can never be published, parked
//!   (an operator must look: docs/operations.md);
//! - `<service>_outbox_handed_off_total` — entries a commit handed straight to the relay
//!   (published without being read back from Redis).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::relay::RelayObserver;

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
