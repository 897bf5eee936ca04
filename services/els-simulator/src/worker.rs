//! The Kafka side: decode an initiate command, count it, let [`crate::decide`] choose the
//! answer, simulate the work, publish the outcome and wait for the broker's ack.
//!
//! Delivery semantics, per command `event_id`:
//! - every delivery is counted (`deliveries`), each distinct event id once (`dispatched`);
//! - the first delivery is answered; a redelivery of an already answered (or silenced) command
//!   is counted and skipped, as the platform's idempotent ELS consumer does;
//! - a publish that fails is retried by the consumer runner (the partition waits) with the
//!   same outcome bytes, so a retry is neither counted again nor given a new event id.

use huleedu_contracts::trace::TraceContext;
use std::collections::HashMap;
use std::sync::Arc;

use huleedu_contracts::payloads::{
    BatchServiceAIFeedbackInitiateCommandDataV1, BatchServiceCJAssessmentInitiateCommandDataV1,
    BatchServiceNLPInitiateCommandDataV2, BatchServiceSpellcheckInitiateCommandDataV1,
    ELSBatchPhaseOutcomeV1, EssayProcessingInputRefV1,
};
use huleedu_contracts::{
    decode_envelope, source, topics, BatchStatus, DecodeError, DecodeErrorKind, EventEnvelope,
    PhaseName, Validate,
};
use huleedu_kafka::{FailureKind, Handler, HandlerResult, Inbound, OutgoingMessage};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::decide::{decide, Command, Decision, HANDLED_PHASES};
use crate::metrics::SimMetrics;
use crate::publish::Publisher;
use crate::settings::Behaviour;
use crate::state::{Counts, OverrideStore};

/// The initiate-command topics this worker consumes.
pub fn command_topics() -> Vec<&'static str> {
    HANDLED_PHASES
        .iter()
        .filter_map(|p| topics::initiate_command_topic(*p))
        .collect()
}

/// The phase whose initiate commands arrive on `topic`, when this worker handles it.
pub fn phase_for_topic(topic: &str) -> Option<PhaseName> {
    topics::phase_of_command_topic(topic).filter(|p| HANDLED_PHASES.contains(p))
}

/// The fields every initiate command shares that the worker needs.
trait CommandData: DeserializeOwned + Validate {
    fn into_parts(self) -> (Option<String>, Vec<EssayProcessingInputRefV1>);
}

macro_rules! command_data {
    ($($t:ty),+) => {$(
        impl CommandData for $t {
            fn into_parts(self) -> (Option<String>, Vec<EssayProcessingInputRefV1>) {
                (self.entity_id, self.essays_to_process)
            }
        }
    )+};
}

command_data!(
    BatchServiceSpellcheckInitiateCommandDataV1,
    BatchServiceNLPInitiateCommandDataV2,
    BatchServiceCJAssessmentInitiateCommandDataV1,
    BatchServiceAIFeedbackInitiateCommandDataV1
);

fn decode_as<T: CommandData>(phase: PhaseName, msg: &Inbound) -> Result<Command, DecodeError> {
    let envelope: EventEnvelope<T> = decode_envelope(&msg.payload)?;
    let (entity_id, essays) = envelope.data.into_parts();
    let batch_id = entity_id
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
        .or_else(|| Some(msg.key_str().trim().to_owned()).filter(|k| !k.is_empty()))
        .ok_or_else(|| {
            DecodeError::validation("data.entity_id: no batch id, and the message has no key")
        })?;
    Ok(Command {
        event_id: envelope.event_id,
        batch_id,
        phase,
        correlation_id: envelope.correlation_id,
        essays,
        trace: TraceContext::from_metadata(envelope.metadata.as_ref()),
    })
}

/// Decodes an initiate command of `phase` (the type is chosen by the phase, i.e. the topic).
/// The batch id is `entity_id`, or the message key when `entity_id` is absent.
pub fn decode_command(phase: PhaseName, msg: &Inbound) -> Result<Command, DecodeError> {
    match phase {
        PhaseName::Spellcheck => {
            decode_as::<BatchServiceSpellcheckInitiateCommandDataV1>(phase, msg)
        }
        PhaseName::Nlp => decode_as::<BatchServiceNLPInitiateCommandDataV2>(phase, msg),
        PhaseName::CjAssessment => {
            decode_as::<BatchServiceCJAssessmentInitiateCommandDataV1>(phase, msg)
        }
        PhaseName::AiFeedback => {
            decode_as::<BatchServiceAIFeedbackInitiateCommandDataV1>(phase, msg)
        }
        PhaseName::StudentMatching => Err(DecodeError::validation(
            "student_matching commands are not handled by this worker",
        )),
    }
}

/// Where a message sits in the log: a runner retry re-presents the same position.
type Position = (String, i32, i64);

fn position(msg: &Inbound) -> Position {
    (msg.topic.clone(), msg.partition, msg.offset)
}

/// An answer that could not be published yet, kept so that the retry sends the same bytes.
#[derive(Debug)]
struct Pending {
    at: Position,
    prepared: Option<Prepared>,
}

#[derive(Debug, Clone)]
struct Prepared {
    message: OutgoingMessage,
    status: BatchStatus,
    /// How many copies are still to be acknowledged (2 with duplicate outcomes).
    copies_left: usize,
}

/// An outcome's envelope as published.
/// It carries `trace` (W3C trace context) in its `metadata`.
fn outcome_bytes(outcome: &ELSBatchPhaseOutcomeV1, trace: Option<&TraceContext>) -> Vec<u8> {
    let mut env = EventEnvelope::new(
        topics::ELS_BATCH_PHASE_OUTCOME,
        source::ELS_SIMULATOR,
        outcome.correlation_id,
        outcome,
    );
    if let Some(t) = trace {
        let mut m = serde_json::Map::new();
        t.write_to(&mut m);
        env.metadata = Some(m);
    }
    env.to_json_bytes()
}

/// The [`Handler`] of the initiate-command topics.
pub struct Worker {
    behaviour: Behaviour,
    counts: Counts,
    overrides: OverrideStore,
    publisher: Arc<dyn Publisher>,
    metrics: SimMetrics,
    shutdown: CancellationToken,
    /// Per partition (topic, partition): the message the runner will present again after a
    /// transient failure. Partitions are handled side by side, each in order.
    pending: Mutex<HashMap<(String, i32), Pending>>,
    /// Largest outcome value published.
    max_event_bytes: usize,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("behaviour", &self.behaviour)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker that counts into `counts`, reads per-batch `overrides`, publishes through
    /// `publisher`, and gives up simulated work when `shutdown` is cancelled.
    pub fn new(
        behaviour: Behaviour,
        counts: Counts,
        overrides: OverrideStore,
        publisher: Arc<dyn Publisher>,
        metrics: SimMetrics,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            behaviour,
            counts,
            overrides,
            publisher,
            metrics,
            shutdown,
            pending: Mutex::default(),
            max_event_bytes: huleedu_contracts::topics::DEFAULT_MAX_EVENT_BYTES,
        }
    }

    /// Answer with outcomes of at most `bytes` (the Kafka settings' `max_event_bytes()`).
    pub fn with_max_event_bytes(mut self, bytes: usize) -> Self {
        self.max_event_bytes = bytes;
        self
    }

    /// The outcome message for a decision to answer. An outcome larger than a message may be
    /// (`KAFKA_MAX_MESSAGE_BYTES` less the record overhead) is answered `failed_critically`
    /// without its essay lists instead: the pipeline ends rather than waiting on a publish
    /// that can never succeed.
    fn prepare(&self, outcome: ELSBatchPhaseOutcomeV1, trace: Option<&TraceContext>) -> Prepared {
        let key = outcome.batch_id.clone();
        let trace = huleedu_service::telemetry::outgoing(&tracing::Span::current(), trace);
        let mut bytes = outcome_bytes(&outcome, trace.as_ref());
        let mut status = outcome.phase_status;
        if bytes.len() > self.max_event_bytes {
            tracing::warn!(
                bytes = bytes.len(),
                limit = self.max_event_bytes,
                essays = outcome.processed_essays.len() + outcome.failed_essay_ids.len(),
                "outcome too large for one message; answering failed_critically without essays"
            );
            status = BatchStatus::FailedCritically;
            bytes = outcome_bytes(
                &ELSBatchPhaseOutcomeV1 {
                    phase_status: status,
                    processed_essays: Vec::new(),
                    failed_essay_ids: Vec::new(),
                    ..outcome
                },
                trace.as_ref(),
            );
        }
        Prepared {
            message: OutgoingMessage::new(topics::ELS_BATCH_PHASE_OUTCOME, key, bytes),
            status,
            copies_left: if self.behaviour.duplicate_outcomes {
                2
            } else {
                1
            },
        }
    }

    /// Publishes what is left of `prepared`; on failure remembers it for the retry.
    async fn publish(
        &self,
        at: Position,
        mut prepared: Prepared,
        phase: PhaseName,
    ) -> HandlerResult {
        while prepared.copies_left > 0 {
            if let Err(e) = self.publisher.publish(&prepared.message).await {
                tracing::warn!(error = %e, cause = ?std::error::Error::source(&e),
                    "outcome not acknowledged; will retry");
                let reason = e.to_string();
                self.pending.lock().insert(
                    (at.0.clone(), at.1),
                    Pending {
                        at,
                        prepared: Some(prepared),
                    },
                );
                return HandlerResult::Transient(reason);
            }
            prepared.copies_left -= 1;
            self.metrics.outcome_published(phase, prepared.status);
        }
        HandlerResult::Done
    }

    async fn handle_command(&self, msg: &Inbound, command: Command) -> HandlerResult {
        let at = position(msg);
        let lane = (at.0.clone(), at.1);
        let pending = self.pending.lock().remove(&lane).filter(|p| p.at == at);
        if pending.is_none() {
            self.counts
                .record(&command.batch_id, command.phase, command.event_id);
            self.metrics.command_received(command.phase);
        }
        if let Some(prepared) = pending.and_then(|p| p.prepared) {
            return self.finish(at, &command, prepared).await;
        }
        if self
            .counts
            .is_answered(&command.batch_id, command.phase, command.event_id)
        {
            tracing::info!("redelivered command already answered or silenced; skipped");
            return HandlerResult::Done;
        }
        let overrides = self.overrides.get(&command.batch_id);
        let b = &self.behaviour;
        let outcome = match decide(&command, &b.failures, &b.silent_phases, overrides.as_ref()) {
            Decision::Silent => {
                tracing::info!("phase is silent: command not answered");
                self.counts
                    .mark_answered(&command.batch_id, command.phase, command.event_id);
                return HandlerResult::Done;
            }
            Decision::Answer(outcome) => outcome,
        };
        let work = b.essay_latency.saturating_mul(command.essays.len() as u32);
        if !work.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(work) => {}
                _ = self.shutdown.cancelled() => {
                    self.pending.lock().insert(lane, Pending { at, prepared: None });
                    return HandlerResult::Transient("shutdown during simulated work".into());
                }
            }
        }
        let prepared = self.prepare(outcome, command.trace.as_ref());
        self.finish(at, &command, prepared).await
    }

    async fn finish(&self, at: Position, command: &Command, prepared: Prepared) -> HandlerResult {
        let status = prepared.status;
        let result = self.publish(at, prepared, command.phase).await;
        if result == HandlerResult::Done {
            self.counts
                .mark_answered(&command.batch_id, command.phase, command.event_id);
            tracing::info!(phase_status = %status, essays = command.essays.len(), "outcome published");
        }
        result
    }
}

impl Handler for Worker {
    /// Commands of different partitions are answered side by side (each partition in order):
    /// a worker busy with one batch's simulated work does not hold up the others.
    fn concurrent_partitions(&self) -> bool {
        true
    }

    async fn handle(&self, msg: &Inbound) -> HandlerResult {
        let Some(phase) = phase_for_topic(&msg.topic) else {
            return HandlerResult::permanent(
                FailureKind::Handler,
                format!("{} is not an initiate-command topic", msg.topic),
            );
        };
        let command = match decode_command(phase, msg) {
            Ok(c) => c,
            Err(e) => {
                let kind = match e.kind {
                    DecodeErrorKind::Decode => FailureKind::Decode,
                    DecodeErrorKind::Validation => FailureKind::Validation,
                };
                return HandlerResult::permanent(kind, e.to_string());
            }
        };
        let span = tracing::info_span!(
            "command",
            phase = %phase,
            batch_id = %command.batch_id,
            correlation_id = %command.correlation_id,
            event_id = %command.event_id,
        );
        huleedu_service::telemetry::continue_trace(&span, command.trace.as_ref());
        self.handle_command(msg, command).instrument(span).await
    }
}
