//! Every metric of the conductor, in one place. Labels are bounded (topic, outcome, source,
//! status, phase); never a batch id.

use std::sync::Arc;

use huleedu_contracts::{topics, PhaseName};
use huleedu_kafka::consumer::RunnerObserver;
use huleedu_kafka::HandlerResult;
use huleedu_store::{DlqCounter, OutboxMetrics, StateGauges};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::state::{PhaseStatus, RecordSource};

/// `bcs_events_consumed_total` labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct EventLabels {
    /// The consumed topic.
    pub topic: String,
    /// `applied`, `duplicate`, `dead_lettered` or `retried`.
    pub outcome: &'static str,
}

/// `bcs_phases_recorded_total` labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RecordLabels {
    /// `event`, `pipeline_completed`, `operator`.
    pub source: &'static str,
    /// `completed`, `failed`.
    pub status: &'static str,
}

/// Labels with one phase name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PhaseLabels {
    /// The phase.
    pub phase: &'static str,
}

/// The conductor's metrics, registered once into the service registry.
#[derive(Debug)]
pub struct BcsMetrics {
    /// `bcs_events_consumed_total{topic,outcome}`.
    pub events_consumed: Family<EventLabels, Counter>,
    /// `bcs_phases_recorded_total{source,status}`: phase records written.
    pub phases_recorded: Family<RecordLabels, Counter>,
    /// `bcs_phases_pruned_total{phase}`: phases left out of a resolution.
    pub phases_pruned: Family<PhaseLabels, Counter>,
    /// `bcs_failed_essay_dlq_records_total`: failed-essay records committed to the outbox.
    pub failed_essay_dlq_records: Counter,
    /// `bcs_resolve_duration_seconds`: define requests, wait included.
    pub resolve_duration: Histogram,
    /// `bcs_resolve_lagging_total`: define requests answered 503 conductor_lagging after the full
    /// `RESOLVE_WAIT_MS` (not those that asked for a shorter wait).
    pub resolve_lagging: Counter,
    /// `bcs_resolve_waiting`: define requests currently waiting for their after_pipeline_id.
    pub resolve_waiting: Gauge,
    /// `bcs_outbox_*`: the outbox relay's counters.
    pub outbox: OutboxMetrics,
    /// `bcs_dlq_records_total{topic}`: records written to DLQ topics (poison and failed essays).
    pub dlq: DlqCounter,
    /// `bcs_consumer_lag`, `bcs_outbox_entries`, `bcs_outbox_oldest_entry_age_seconds`.
    pub state: StateGauges,
}

impl BcsMetrics {
    /// Create the metrics and register them in `registry`.
    pub fn register(registry: &huleedu_http::metrics::Metrics) -> Arc<Self> {
        let outbox = registry
            .register_with(|r| OutboxMetrics::register("bcs", &[topics::FAILED_ESSAYS_DLQ], r));
        let m = Arc::new(Self {
            events_consumed: Family::default(),
            phases_recorded: Family::default(),
            phases_pruned: Family::default(),
            failed_essay_dlq_records: Counter::default(),
            resolve_duration: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            resolve_lagging: Counter::default(),
            resolve_waiting: Gauge::default(),
            outbox,
            dlq: registry.register_with(|r| DlqCounter::register("bcs", r)),
            state: registry.register_with(|r| StateGauges::register("bcs", r)),
        });
        m.zero_series();
        registry.register(|r| {
            r.register(
                "bcs_events_consumed",
                "Events consumed, by topic and outcome (applied, duplicate, dead_lettered, retried)",
                m.events_consumed.clone(),
            );
            r.register(
                "bcs_phases_recorded",
                "Phase records written, by source and status",
                m.phases_recorded.clone(),
            );
            r.register(
                "bcs_phases_pruned",
                "Phases pruned from resolved pipelines because already completed",
                m.phases_pruned.clone(),
            );
            r.register(
                "bcs_failed_essay_dlq_records",
                "Failed-essay DLQ records committed to the outbox",
                m.failed_essay_dlq_records.clone(),
            );
            r.register(
                "bcs_resolve_duration_seconds",
                "Time to answer a pipeline define request, causal wait included",
                m.resolve_duration.clone(),
            );
            r.register(
                "bcs_resolve_lagging",
                "Define requests answered 503 conductor_lagging after the full RESOLVE_WAIT_MS",
                m.resolve_lagging.clone(),
            );
            r.register(
                "bcs_resolve_waiting",
                "Define requests currently waiting for their after_pipeline_id",
                m.resolve_waiting.clone(),
            );
        });
        m
    }

    /// Create every label combination at 0, so each series exists (and `rate()` works) from
    /// the start. All label values are bounded: consumed topics, outcomes, sources, statuses,
    /// phase names.
    fn zero_series(&self) {
        for topic in crate::consumer::CONSUMED_TOPICS {
            for outcome in ["applied", "duplicate", "dead_lettered", "retried"] {
                drop(self.events_consumed.get_or_create(&EventLabels {
                    topic: topic.to_owned(),
                    outcome,
                }));
            }
        }
        for source in [
            RecordSource::Event,
            RecordSource::PipelineCompleted,
            RecordSource::Operator,
        ] {
            for status in [PhaseStatus::Completed, PhaseStatus::Failed] {
                drop(self.phases_recorded.get_or_create(&RecordLabels {
                    source: source.as_str(),
                    status: status.as_str(),
                }));
            }
        }
        for phase in PhaseName::ALL {
            drop(self.phases_pruned.get_or_create(&PhaseLabels {
                phase: phase.as_str(),
            }));
        }
    }

    /// Count one consumed event.
    pub fn consumed(&self, topic: &str, outcome: &'static str) {
        self.events_consumed
            .get_or_create(&EventLabels {
                topic: topic.to_owned(),
                outcome,
            })
            .inc();
    }

    /// Count one phase record written.
    pub fn recorded(&self, source: RecordSource, status: PhaseStatus) {
        self.phases_recorded
            .get_or_create(&RecordLabels {
                source: source.as_str(),
                status: status.as_str(),
            })
            .inc();
    }
}

/// Reports the consumer runner's dead-letters and retries.
#[derive(Debug, Clone)]
pub struct ConsumerObserver(pub Arc<BcsMetrics>);

impl RunnerObserver for ConsumerObserver {
    fn on_result(&self, topic: &str, result: &HandlerResult) {
        // Done results are counted by the handler, which knows applied from duplicate.
        if matches!(result, HandlerResult::Permanent { .. }) {
            self.0.consumed(topic, "dead_lettered");
            self.0.dlq.add(&topics::dlq_topic(topic), 1);
        }
    }

    fn on_retry(&self, topic: &str) {
        self.0.consumed(topic, "retried");
    }
}
