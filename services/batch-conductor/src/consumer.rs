//! The Kafka adapter: decodes consumed events, runs the pure decision against the batch's
//! stored state and commits the result atomically (records + failed-essay DLQ events in the
//! outbox + dedup marker on the event id) through `huleedu-store`.
//!
//! Answers to the consumer runner: [`HandlerResult::Done`] once committed (or already
//! committed: a redelivery), [`HandlerResult::Permanent`] for an undecodable or invalid event
//! (poison DLQ with the reason naming the field), [`HandlerResult::Transient`] when Redis fails.

use std::sync::Arc;
use std::time::Duration;

use huleedu_contracts::payloads::{BatchPipelineCompletedV1, ELSBatchPhaseOutcomeV1};
use huleedu_contracts::{
    decode_envelope, topics, DecodeError, DecodeErrorKind, EventEnvelope, Timestamp,
};
use huleedu_kafka::{FailureKind, Handler, HandlerResult, Inbound};
use huleedu_store::{Change, Committed, Decided, OutboxEntry, Store, StoreError, Versioned};
use tracing::Instrument;

use crate::metrics::BcsMetrics;
use crate::state::{
    decide_outcome, decide_pipeline_completed, BatchPhases, Decision, Invalid, SourcePosition,
};

/// The topics the conductor consumes.
pub const CONSUMED_TOPICS: [&str; 2] = [
    topics::ELS_BATCH_PHASE_OUTCOME,
    topics::BATCH_PIPELINE_COMPLETED,
];

/// Handles the conductor's consumed events.
#[derive(Debug, Clone)]
pub struct EventHandler {
    store: Store,
    metrics: Arc<BcsMetrics>,
    pipelines_seen: PipelinesSeen,
    state_ttl: Duration,
    dedup_ttl: Duration,
}

/// A pipeline completion this process committed (or found handled before): the batch, and its
/// state right after the commit when the store holds it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub batch_id: Arc<str>,
    pub state: Option<Arc<Versioned>>,
}

/// The feed of pipeline completions this process commits, for define requests waiting for one
/// (causal pruning): a waiter is answered from the state the commit wrote, without reading
/// Redis again. Completions committed by another replica are not in it (the waiter's own
/// polling finds those).
#[derive(Debug, Clone)]
pub struct PipelinesSeen {
    tx: tokio::sync::broadcast::Sender<Seen>,
}

impl Default for PipelinesSeen {
    fn default() -> Self {
        // A waiter that falls this far behind reads the state instead (`Lagged`). Small: the
        // channel keeps the last states it carried.
        Self {
            tx: tokio::sync::broadcast::channel(64).0,
        }
    }
}

impl PipelinesSeen {
    /// Completions from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Seen> {
        self.tx.subscribe()
    }

    /// Tell the waiters (if any) that `batch_id` has a new completion, in `state`.
    pub fn announce(&self, batch_id: &str, state: Option<Arc<Versioned>>) {
        let _ = self.tx.send(Seen {
            batch_id: batch_id.into(),
            state,
        });
    }
}

impl EventHandler {
    /// `pipelines_seen` is told of every pipeline completion committed (define requests
    /// waiting for it are answered at once).
    pub fn new(
        store: Store,
        metrics: Arc<BcsMetrics>,
        pipelines_seen: PipelinesSeen,
        state_ttl: Duration,
        dedup_ttl: Duration,
    ) -> Self {
        Self {
            store,
            metrics,
            pipelines_seen,
            state_ttl,
            dedup_ttl,
        }
    }

    async fn on_outcome(&self, msg: &Inbound) -> HandlerResult {
        let event = match decode_envelope::<ELSBatchPhaseOutcomeV1>(&msg.payload) {
            Ok(e) => e,
            Err(e) => return rejected(e),
        };
        let from = SourcePosition {
            topic: msg.topic.clone(),
            partition: msg.partition,
            offset: msg.offset,
        };
        let now = Timestamp::now();
        let span = event_span(&event, &event.data.batch_id);
        span.record("phase", event.data.phase_name.as_str());
        self.commit(msg, &event, &event.data.batch_id, |state| {
            decide_outcome(state, &event, &from, now)
        })
        .instrument(span)
        .await
    }

    async fn on_pipeline_completed(&self, msg: &Inbound) -> HandlerResult {
        let event = match decode_envelope::<BatchPipelineCompletedV1>(&msg.payload) {
            Ok(e) => e,
            Err(e) => return rejected(e),
        };
        let now = Timestamp::now();
        let span = event_span(&event, &event.data.batch_id);
        let result = self
            .commit(msg, &event, &event.data.batch_id, |state| {
                decide_pipeline_completed(state, &event, now)
            })
            .instrument(span)
            .await;
        if result == HandlerResult::Done {
            // Also after a duplicate: a waiter may have started between the two deliveries.
            let batch_id = &event.data.batch_id;
            self.pipelines_seen
                .announce(batch_id, self.store.cached(batch_id));
        }
        result
    }

    /// Validate, then read → decide → apply (retrying on version conflicts).
    async fn commit<T, F>(
        &self,
        msg: &Inbound,
        event: &EventEnvelope<T>,
        batch_id: &str,
        decide: F,
    ) -> HandlerResult
    where
        F: Fn(&BatchPhases) -> Result<Decision, Invalid> + Send + Sync,
    {
        // Validation does not depend on the state: check it once, up front.
        if let Err(Invalid(message)) = decide(&BatchPhases::default()) {
            return HandlerResult::permanent(FailureKind::Validation, message);
        }
        let event_id = event.event_id.to_string();
        let outcome = self
            .store
            .commit(batch_id, Some((&event_id, self.dedup_ttl)), |current| {
                let state = BatchPhases::from_fields(&current.fields);
                if !state.unreadable.is_empty() {
                    tracing::warn!(fields = ?state.unreadable, "ignoring unreadable state fields");
                }
                let decision = decide(&state).unwrap_or_default();
                // Written even when nothing changes: the dedup marker records the event.
                let change = Change {
                    set_fields: decision.fields(),
                    state_ttl: Some(self.state_ttl),
                    index_ops: Vec::new(),
                    outbox: outbox_entries(batch_id, &decision),
                };
                Ok(Decided::Write(change, decision))
            })
            .await;
        match outcome {
            Ok(Committed::Applied {
                version,
                decided: decision,
            }) => {
                for (phase, record) in &decision.records {
                    self.metrics.recorded(record.source, record.status);
                    tracing::info!(phase = %phase, status = record.status.as_str(),
                        source = record.source.as_str(), "phase recorded");
                }
                if !decision.kept.is_empty() {
                    tracing::info!(phases = ?decision.kept,
                        "records kept: newer or already completed");
                }
                if !decision.dlq.is_empty() {
                    self.metrics
                        .failed_essay_dlq_records
                        .inc_by(decision.dlq.len() as u64);
                    self.metrics.dlq.add(
                        huleedu_contracts::topics::FAILED_ESSAYS_DLQ,
                        decision.dlq.len() as u64,
                    );
                    tracing::info!(count = decision.dlq.len(), "failed essays sent to the DLQ");
                }
                for (pipeline_id, _) in &decision.pipelines {
                    tracing::info!(pipeline_id = %pipeline_id, "pipeline completion processed");
                }
                tracing::debug!(version, "event applied");
                self.metrics.consumed(&msg.topic, "applied");
                HandlerResult::Done
            }
            Ok(Committed::AlreadyApplied) => {
                tracing::info!("duplicate event: already applied, nothing changes");
                self.metrics.consumed(&msg.topic, "duplicate");
                HandlerResult::Done
            }
            Ok(Committed::Contended { current_version }) => HandlerResult::Transient(format!(
                "state of batch {batch_id} kept changing (version {current_version}); retrying"
            )),
            // Every decision here writes (at least the dedup marker).
            Ok(Committed::Unchanged(_)) => HandlerResult::Done,
            Err(e) => HandlerResult::Transient(describe_store_error(&e)),
        }
    }
}

impl Handler for EventHandler {
    /// Every commit is version-checked and decided again on conflict, so partitions are
    /// handled side by side; one partition (and so one batch) stays in order.
    fn concurrent_partitions(&self) -> bool {
        true
    }

    async fn handle(&self, msg: &Inbound) -> HandlerResult {
        match msg.topic.as_str() {
            topics::ELS_BATCH_PHASE_OUTCOME => self.on_outcome(msg).await,
            topics::BATCH_PIPELINE_COMPLETED => self.on_pipeline_completed(msg).await,
            other => HandlerResult::permanent(
                FailureKind::Handler,
                format!("topic {other} is not consumed by the batch conductor"),
            ),
        }
    }
}

/// A span for one event, with the ids every log line about it carries.
/// It continues the event's trace (its `metadata.traceparent`) when spans are exported.
fn event_span<T>(event: &EventEnvelope<T>, batch_id: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "event",
        event_id = %event.event_id,
        batch_id = %batch_id,
        correlation_id = %event.correlation_id,
        phase = tracing::field::Empty,
    );
    huleedu_service::telemetry::continue_trace(
        &span,
        huleedu_contracts::trace::TraceContext::from_metadata(event.metadata.as_ref()).as_ref(),
    );
    span
}

fn rejected(e: DecodeError) -> HandlerResult {
    let kind = match e.kind {
        DecodeErrorKind::Decode => FailureKind::Decode,
        DecodeErrorKind::Validation => FailureKind::Validation,
    };
    HandlerResult::permanent(kind, e.message)
}

/// The failed-essay DLQ events of a decision as outbox entries (key: the batch id).
pub fn outbox_entries(batch_id: &str, decision: &Decision) -> Vec<OutboxEntry> {
    decision
        .dlq
        .iter()
        .map(|e| {
            let payload = serde_json::to_string(e).expect("DLQ envelopes serialize");
            OutboxEntry::new(topics::FAILED_ESSAYS_DLQ, batch_id, payload)
        })
        .collect()
}

/// A store error with its cause chain (for logs and retry messages, never HTTP bodies).
pub fn describe_store_error(e: &StoreError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
