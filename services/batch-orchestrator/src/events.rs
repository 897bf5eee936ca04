//! Builders of the events BOS emits. Each gets its `event_id` here, when it is decided; the
//! outbox keeps the serialized bytes, so a re-send carries the same id.

use huleedu_contracts::envelope::EventEnvelope;
use huleedu_contracts::events;
use huleedu_contracts::payloads::{
    BatchPipelineCompletedV1, BatchServiceAIFeedbackInitiateCommandDataV1,
    BatchServiceCJAssessmentInitiateCommandDataV1, BatchServiceNLPInitiateCommandDataV2,
    BatchServiceSpellcheckInitiateCommandDataV1, EssayInputRefView, PhaseSkippedV1,
    SystemProcessingMetadata, ENTITY_TYPE_BATCH,
};
use huleedu_contracts::phase::PhaseName;
use huleedu_contracts::source::BATCH_ORCHESTRATOR;
use huleedu_contracts::status::BatchStatus;
use huleedu_contracts::timestamp::Timestamp;
use huleedu_contracts::topics;
use huleedu_contracts::trace::TraceContext;
use serde::Serialize;
use uuid::Uuid;

use crate::model::{BatchInfo, EssayRef, PendingRequest};

/// An event decided by the core, ready for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub topic: &'static str,
    pub event_id: Uuid,
    /// The envelope as JSON text.
    pub payload: String,
}

fn envelope<T: Serialize>(
    topic: &'static str,
    correlation_id: Uuid,
    data: T,
    trace: Option<&TraceContext>,
    now: Timestamp,
) -> Outgoing {
    envelope_with(
        topic,
        correlation_id,
        data,
        serde_json::Map::new(),
        trace,
        now,
    )
}

/// Bytes of a command to start its buffer with: its envelope and context, and each essay's
/// reference ([`EssayInputRefView::json_len`]). Counted rather than guessed: a guess of 128
/// bytes per essay fell 14 KB short of an 8045-essay command with the bench's ids, and the
/// buffer was reallocated to 2 MB and the megabyte copied.
fn command_capacity(essays: &[EssayInputRefView<'_>]) -> usize {
    2048 + essays
        .iter()
        .map(EssayInputRefView::json_len)
        .sum::<usize>()
}

/// An envelope whose `metadata` holds `metadata` and the W3C trace context (`None` when both
/// are empty).
fn envelope_with<T: Serialize>(
    topic: &'static str,
    correlation_id: Uuid,
    data: T,
    metadata: serde_json::Map<String, serde_json::Value>,
    trace: Option<&TraceContext>,
    now: Timestamp,
) -> Outgoing {
    envelope_sized(topic, correlation_id, data, metadata, trace, now, 128)
}

/// [`envelope_with`], its JSON written into a buffer of `capacity` bytes to start with.
fn envelope_sized<T: Serialize>(
    topic: &'static str,
    correlation_id: Uuid,
    data: T,
    mut metadata: serde_json::Map<String, serde_json::Value>,
    trace: Option<&TraceContext>,
    now: Timestamp,
    capacity: usize,
) -> Outgoing {
    let mut env = EventEnvelope::new(topic, BATCH_ORCHESTRATOR, correlation_id, data);
    env.event_timestamp = now;
    if let Some(t) = trace {
        t.write_to(&mut metadata);
    }
    env.metadata = (!metadata.is_empty()).then_some(metadata);
    Outgoing {
        topic,
        event_id: env.event_id,
        payload: String::from_utf8(env.to_json_bytes_sized(capacity))
            .expect("serde_json writes UTF-8"),
    }
}

fn metadata(batch_id: &str, event: &str, now: Timestamp) -> SystemProcessingMetadata {
    let mut m = SystemProcessingMetadata::for_batch(batch_id, Some(event));
    m.timestamp = now;
    m
}

/// The initiate command for `phase`, or `None` when no worker topic exists for it.
pub fn initiate_command(
    phase: PhaseName,
    batch_id: &str,
    info: &BatchInfo,
    request: &PendingRequest,
    essays: &[&EssayRef],
    now: Timestamp,
) -> Option<Outgoing> {
    let topic = topics::initiate_command_topic(phase)?;
    let event_name = events::initiate_command_event_name(phase)?.to_owned();
    // Views of the essays, not copies: a large batch's command is written without copying
    // thousands of ids first.
    let essays_to_process: Vec<EssayInputRefView<'_>> = essays
        .iter()
        .map(|e| EssayInputRefView::new(&e.essay_id, &e.text_storage_id))
        .collect();
    let entity_id = Some(batch_id.to_owned());
    let entity_type = Some(ENTITY_TYPE_BATCH.to_owned());
    let prompt_ref = info.student_prompt_ref.clone().or_else(|| {
        request
            .prompt
            .as_ref()
            .and_then(|p| p.cms_prompt_ref.clone())
    });
    let c = request.correlation_id;
    let capacity = command_capacity(&essays_to_process);
    Some(match phase {
        PhaseName::Spellcheck => envelope_sized(
            topic,
            c,
            BatchServiceSpellcheckInitiateCommandDataV1 {
                event_name,
                entity_id,
                entity_type,
                parent_id: None,
                timestamp: now,
                essays_to_process,
                language: info.language.clone(),
            },
            serde_json::Map::new(),
            request.trace.as_ref(),
            now,
            capacity,
        ),
        PhaseName::Nlp => envelope_sized(
            topic,
            c,
            BatchServiceNLPInitiateCommandDataV2 {
                event_name,
                entity_id,
                entity_type,
                parent_id: None,
                timestamp: now,
                essays_to_process,
                language: info.language.clone(),
                student_prompt_ref: prompt_ref,
            },
            serde_json::Map::new(),
            request.trace.as_ref(),
            now,
            capacity,
        ),
        PhaseName::CjAssessment => envelope_sized(
            topic,
            c,
            BatchServiceCJAssessmentInitiateCommandDataV1 {
                event_name,
                entity_id,
                entity_type,
                parent_id: None,
                timestamp: now,
                essays_to_process,
                language: info.language.clone(),
                course_code: info.course_code.clone(),
                student_prompt_ref: prompt_ref,
                class_type: info.class_type.clone(),
                assignment_id: request
                    .prompt
                    .as_ref()
                    .and_then(|p| p.assignment_id.clone()),
            },
            serde_json::Map::new(),
            request.trace.as_ref(),
            now,
            capacity,
        ),
        PhaseName::AiFeedback => envelope_sized(
            topic,
            c,
            BatchServiceAIFeedbackInitiateCommandDataV1 {
                event_name,
                entity_id,
                entity_type,
                parent_id: None,
                timestamp: now,
                essays_to_process,
                language: info.language.clone(),
                course_code: info.course_code.clone(),
                student_prompt_ref: prompt_ref,
                class_type: info.class_type.clone(),
                owner_user_id: request.user_id.clone(),
            },
            serde_json::Map::new(),
            request.trace.as_ref(),
            now,
            capacity,
        ),
        PhaseName::StudentMatching => return None,
    })
}

/// `PhaseSkippedV1` for a pruned phase.
pub fn phase_skipped(
    batch_id: &str,
    phase: PhaseName,
    correlation_id: Uuid,
    trace: Option<&TraceContext>,
    now: Timestamp,
) -> Outgoing {
    envelope(
        topics::BATCH_PHASE_SKIPPED,
        correlation_id,
        PhaseSkippedV1 {
            event: events::BATCH_PHASE_SKIPPED.to_owned(),
            batch_id: batch_id.to_owned(),
            phase_name: phase.as_str().to_owned(),
            skip_reason: "already_completed".to_owned(),
            storage_id: None,
            correlation_id,
            metadata: metadata(batch_id, events::BATCH_PHASE_SKIPPED, now),
        },
        trace,
        now,
    )
}

/// The numbers of a terminal event.
#[derive(Debug, Clone, PartialEq)]
pub struct TerminalFigures {
    pub final_status: BatchStatus,
    pub completed_phases: Vec<PhaseName>,
    pub skipped_phases: Vec<PhaseName>,
    pub successful_essay_count: i64,
    pub failed_essay_count: i64,
    pub processing_duration_seconds: f64,
    pub failure_reason: Option<String>,
}

/// `BatchPipelineCompletedV1`, with this project's extra keys.
pub fn pipeline_completed(
    batch_id: &str,
    request: &PendingRequest,
    f: &TerminalFigures,
    now: Timestamp,
) -> Outgoing {
    let names = |v: &[PhaseName]| v.iter().map(|p| p.as_str().to_owned()).collect();
    // An essay-level retry is noted in the envelope's free-form metadata.
    let retry = match &request.retry {
        None => serde_json::Map::new(),
        Some(retry) => match serde_json::json!({
            "retry": true,
            "retry_phase": retry.phase,
            "retry_reason": retry.reason,
            "retry_essay_ids": retry.essay_ids,
            "operator": retry.operator,
        }) {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("a JSON object"),
        },
    };
    envelope_with(
        topics::BATCH_PIPELINE_COMPLETED,
        request.correlation_id,
        BatchPipelineCompletedV1 {
            event: events::BATCH_PIPELINE_COMPLETED.to_owned(),
            batch_id: batch_id.to_owned(),
            completed_phases: names(&f.completed_phases),
            final_status: f.final_status,
            processing_duration_seconds: f.processing_duration_seconds,
            successful_essay_count: f.successful_essay_count,
            failed_essay_count: f.failed_essay_count,
            correlation_id: request.correlation_id,
            metadata: metadata(batch_id, events::BATCH_PIPELINE_COMPLETED, now),
            requested_pipeline: Some(request.requested_pipeline.clone()),
            skipped_phases: names(&f.skipped_phases),
            failure_reason: f.failure_reason.clone(),
        },
        retry,
        request.trace.as_ref(),
        now,
    )
}
