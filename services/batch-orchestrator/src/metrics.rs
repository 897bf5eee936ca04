//! The orchestrator's Prometheus metrics. Labels are bounded: pipeline names the conductor
//! accepted (unknown names are counted as `unknown`), phases, statuses, topics — never batch ids.

use huleedu_http::metrics::Metrics;
use huleedu_kafka::consumer::RunnerObserver;
use huleedu_kafka::HandlerResult;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use huleedu_contracts::Timestamp;
use huleedu_store::metrics::SecondsGauge;
use huleedu_store::{DlqCounter, Store, StoreError};
use prometheus_client::metrics::gauge::Gauge;

use crate::core::{ACTIVE, PARKED, PHASES, QUEUED};
use crate::decide::Note;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabel {
    pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinishedLabels {
    pipeline: String,
    final_status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumedLabels {
    topic: String,
    outcome: String,
}

/// Handles to every BOS metric (cheap to clone).
#[derive(Clone, Debug)]
pub struct BosMetrics {
    started: Family<PipelineLabel, Counter>,
    finished: Family<FinishedLabels, Counter>,
    phase_duration: Family<PhaseLabels, Histogram>,
    ignored: Family<ReasonLabel, Counter>,
    queued: Counter,
    parked: Counter,
    queue_length: Histogram,
    consumed: Family<ConsumedLabels, Counter>,
    conductor_errors: Counter,
    started_with_request: Counter,
    dlq: DlqCounter,
}

impl BosMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        let m = Self {
            started: Family::default(),
            finished: Family::default(),
            phase_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.5, 14))
            }),
            ignored: Family::default(),
            queued: Counter::default(),
            parked: Counter::default(),
            queue_length: Histogram::new([0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]),
            consumed: Family::default(),
            conductor_errors: Counter::default(),
            started_with_request: Counter::default(),
            dlq: metrics.register_with(|r| DlqCounter::register("bos", r)),
        };
        metrics.register(|r| {
            r.register(
                "bos_pipelines_started",
                "Pipelines started, by requested pipeline",
                m.started.clone(),
            );
            r.register(
                "bos_pipelines_finished",
                "Terminal events, by requested pipeline and final status",
                m.finished.clone(),
            );
            r.register(
                "bos_phase_duration_seconds",
                "Time from a phase's initiate command to its outcome (or time-out)",
                m.phase_duration.clone(),
            );
            r.register(
                "bos_outcomes_ignored",
                "Phase outcomes ignored (late, duplicate, other pipeline), by reason",
                m.ignored.clone(),
            );
            r.register(
                "bos_requests_queued",
                "Requests queued behind an active pipeline or waiting to start",
                m.queued.clone(),
            );
            r.register(
                "bos_requests_parked",
                "Requests parked until their batch becomes ready",
                m.parked.clone(),
            );
            r.register(
                "bos_queue_length",
                "Length of a batch's request queue, observed at every change",
                m.queue_length.clone(),
            );
            r.register(
                "bos_events_consumed",
                "Consumed events by topic and handling outcome",
                m.consumed.clone(),
            );
            r.register(
                "bos_conductor_errors",
                "Failed or lagging resolution calls to the conductor (retried)",
                m.conductor_errors.clone(),
            );
            r.register(
                "bos_pipelines_started_with_request",
                "Pipelines started in the commit of their request (idle batch, conductor answered without a wait)",
                m.started_with_request.clone(),
            );
        });
        m
    }

    /// Record what a committed decision did.
    pub fn observe(&self, notes: &[Note]) {
        for n in notes {
            match n {
                Note::Queued => {
                    self.queued.inc();
                }
                Note::Parked => {
                    self.parked.inc();
                }
                Note::PipelineStarted { pipeline } => {
                    self.started
                        .get_or_create(&PipelineLabel {
                            pipeline: pipeline.clone(),
                        })
                        .inc();
                }
                Note::PhaseDispatched { .. } => {}
                Note::PhaseFinished {
                    phase,
                    status,
                    seconds,
                } => {
                    let status = serde_json::to_value(status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    self.phase_duration
                        .get_or_create(&PhaseLabels {
                            phase: phase.to_string(),
                            status,
                        })
                        .observe(*seconds);
                }
                Note::PipelineFinished {
                    pipeline,
                    status,
                    reason,
                } => {
                    let pipeline = if reason
                        .as_deref()
                        .is_some_and(|r| r.starts_with("unknown_pipeline"))
                    {
                        "unknown".to_owned()
                    } else {
                        pipeline.clone()
                    };
                    self.finished
                        .get_or_create(&FinishedLabels {
                            pipeline,
                            final_status: status.as_str().to_owned(),
                        })
                        .inc();
                }
                Note::OutcomeIgnored { reason } => {
                    self.ignored
                        .get_or_create(&ReasonLabel {
                            reason: (*reason).to_owned(),
                        })
                        .inc();
                }
            }
        }
    }

    pub fn queue_length(&self, len: usize) {
        self.queue_length.observe(len as f64);
    }

    pub fn conductor_error(&self) {
        self.conductor_errors.inc();
    }

    pub fn started_with_request(&self) {
        self.started_with_request.inc();
    }

    fn consumed(&self, topic: &str, outcome: &str) {
        self.consumed
            .get_or_create(&ConsumedLabels {
                topic: topic.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}

/// `bos_events_consumed_total`, counted by the consumer runner: each message once with its
/// final result (`done` or `dead_lettered`, the latter once it is on the DLQ), and each retry
/// after a transient failure (`retry`).
impl RunnerObserver for BosMetrics {
    fn on_result(&self, topic: &str, result: &HandlerResult) {
        let outcome = match result {
            HandlerResult::Done => "done",
            HandlerResult::Permanent { .. } => "dead_lettered",
            HandlerResult::Transient(_) => "retry",
        };
        if outcome == "dead_lettered" {
            self.dlq
                .add(&huleedu_contracts::topics::dlq_topic(topic), 1);
        }
        self.consumed(topic, outcome);
    }

    fn on_retry(&self, topic: &str) {
        self.consumed(topic, "retry");
    }
}

/// What is running and waiting now, across the deployment (from the orchestrator's indexes in
/// Redis, sampled every 10 s; every replica reports the same: aggregate with `max`).
#[derive(Clone, Debug, Default)]
pub struct PipelineGauges {
    active: Gauge,
    oldest_pipeline: SecondsGauge,
    oldest_phase: SecondsGauge,
    queued: Gauge,
    parked: Gauge,
    phase_timeout: Gauge,
}

impl PipelineGauges {
    pub fn register(metrics: &Metrics, phase_timeout_secs: i64) -> Self {
        let g = Self::default();
        g.phase_timeout.set(phase_timeout_secs);
        metrics.register(|r| {
            r.register(
                "bos_active_pipelines",
                "Pipelines running now",
                g.active.clone(),
            );
            r.register(
                "bos_oldest_active_pipeline_age_seconds",
                "How long the longest-running pipeline has been running (0 when none)",
                g.oldest_pipeline.clone(),
            );
            r.register(
                "bos_oldest_active_phase_age_seconds",
                "How long the longest-waiting running phase has waited for its outcome since its command (0 when none)",
                g.oldest_phase.clone(),
            );
            r.register(
                "bos_queued_requests",
                "Requests queued behind a running pipeline now",
                g.queued.clone(),
            );
            r.register(
                "bos_parked_requests",
                "Requests waiting for their batch to become known now",
                g.parked.clone(),
            );
            r.register(
                "bos_phase_timeout_seconds",
                "PHASE_TIMEOUT_SECS: how long a phase may wait for its outcome (the stuck-pipeline alert compares with it)",
                g.phase_timeout.clone(),
            );
        });
        g
    }

    /// Read the indexes and set the gauges.
    pub async fn sample(&self, store: &Store, now: Timestamp) -> Result<(), StoreError> {
        let now_ms = now.0.timestamp_millis() as f64;
        let age = |lowest: Option<f64>| lowest.map_or(0.0, |t| ((now_ms - t) / 1000.0).max(0.0));
        let lowest = |s: &[huleedu_store::IndexSummary]| {
            s.iter().filter_map(|b| b.lowest).min_by(f64::total_cmp)
        };
        let active = store.index_summary(ACTIVE, false).await?;
        self.active.set(active.iter().map(|b| b.count as i64).sum());
        self.oldest_pipeline.set(age(lowest(&active)));
        let phases = store.index_summary(PHASES, false).await?;
        self.oldest_phase.set(age(lowest(&phases)));
        let queued = store.index_summary(QUEUED, true).await?;
        self.queued.set(queued.iter().map(|b| b.sum as i64).sum());
        let parked = store.index_summary(PARKED, true).await?;
        self.parked.set(parked.iter().map(|b| b.sum as i64).sum());
        Ok(())
    }
}
