//! A batch's phase state and the decisions that change it (pure: no I/O, no clock).
//!
//! State is batch-level only. It is stored as one Redis hash per batch (through
//! `huleedu-store`), whose fields are:
//!
//! | field | value |
//! |---|---|
//! | `phase:<phase>` | JSON [`PhaseRecord`]: the latest status of that phase and its provenance |
//! | `pipeline:<pipeline id>` | JSON [`PipelineMark`]: the pipeline's `BatchPipelineCompletedV1` was processed |
//!
//! The pipeline id is the `correlation_id` of the `BatchPipelineCompletedV1` envelope, i.e. the
//! correlation id of the client request that started the pipeline (unique per request); BOS
//! passes the same value as `after_pipeline_id`.
//!
//! Decisions take the current [`BatchPhases`] and an input (a phase outcome, a pipeline
//! completion, an operator mark) and return a [`Decision`]: the records to write and the
//! failed-essay DLQ events to append to the outbox. A record never goes back in time: an update
//! older than the record it would replace changes nothing (see [`supersede`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use huleedu_contracts::dlq::FailedEssayDlqRecordV1;
use huleedu_contracts::payloads::{BatchPipelineCompletedV1, ELSBatchPhaseOutcomeV1};
use huleedu_contracts::{source, topics, BatchStatus, EventEnvelope, PhaseName, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// Hash field prefix of phase records.
pub const PHASE_FIELD_PREFIX: &str = "phase:";
/// Hash field prefix of processed-pipeline marks.
pub const PIPELINE_FIELD_PREFIX: &str = "pipeline:";

/// The hash field of a phase's record.
pub fn phase_field(phase: PhaseName) -> String {
    format!("{PHASE_FIELD_PREFIX}{phase}")
}

/// The hash field of a processed pipeline.
pub fn pipeline_field(pipeline_id: &str) -> String {
    format!("{PIPELINE_FIELD_PREFIX}{pipeline_id}")
}

/// A pipeline id as stored: UUIDs are normalised to lowercase hyphenated text, anything else is
/// kept as given (trimmed).
pub fn normalize_pipeline_id(id: &str) -> String {
    let id = id.trim();
    Uuid::parse_str(id)
        .map(|u| u.to_string())
        .unwrap_or_else(|_| id.to_owned())
}

/// Batch-level status of a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhaseStatus {
    /// Done for the batch: pruned from later pipelines.
    Completed,
    /// Failed (or invalidated by an operator): runs again when a pipeline needs it.
    Failed,
}

impl PhaseStatus {
    /// `completed` / `failed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            PhaseStatus::Completed => "completed",
            PhaseStatus::Failed => "failed",
        }
    }
}

/// Where a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordSource {
    /// An `ELSBatchPhaseOutcomeV1`.
    Event,
    /// A `BatchPipelineCompletedV1` listing the phase in `completed_phases`.
    PipelineCompleted,
    /// `POST /internal/v1/phases/complete`.
    Operator,
}

impl RecordSource {
    /// `event` / `pipeline_completed` / `operator`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RecordSource::Event => "event",
            RecordSource::PipelineCompleted => "pipeline_completed",
            RecordSource::Operator => "operator",
        }
    }
}

/// The latest known state of one phase for one batch, with its provenance. Absent values are
/// written as `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PhaseRecord {
    /// `completed` or `failed`.
    pub status: PhaseStatus,
    /// `event`, `pipeline_completed` or `operator`.
    pub source: RecordSource,
    /// Correlation id of the pipeline run that reported it (events only).
    #[schema(value_type = Option<String>, format = Uuid)]
    pub pipeline_correlation_id: Option<Uuid>,
    /// The pipeline id (`pipeline_completed` records only; see the module docs).
    pub pipeline_id: Option<String>,
    /// `event_id` of the event that set it (`null` for operator marks).
    #[schema(value_type = Option<String>, format = Uuid)]
    pub event_id: Option<Uuid>,
    /// Essays the phase processed successfully (phase outcomes only).
    pub processed_count: Option<u64>,
    /// Distinct essays the phase reported as failed (phase outcomes only).
    pub failed_count: Option<u64>,
    /// When it happened: the event's `event_timestamp`, or the time of the operator mark.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// Who marked it (operator marks only, when given).
    pub operator: Option<String>,
    /// Why (operator marks only, when given).
    pub reason: Option<String>,
}

/// A pipeline whose `BatchPipelineCompletedV1` has been processed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineMark {
    /// When the conductor processed it.
    pub processed_at: Timestamp,
    /// The event's `event_id`.
    pub event_id: Uuid,
    /// The pipeline's `final_status`.
    pub final_status: BatchStatus,
    /// The pipeline's `completed_phases`.
    pub completed_phases: Vec<PhaseName>,
}

/// A batch's state as read from its hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchPhases {
    /// Records per phase.
    pub phases: BTreeMap<PhaseName, PhaseRecord>,
    /// Processed pipelines by id.
    pub pipelines: BTreeMap<String, PipelineMark>,
    /// Fields that could not be read (unknown phase, corrupt JSON). They are ignored, and a
    /// later update of the same phase overwrites them; adapters log them.
    pub unreadable: Vec<String>,
}

impl BatchPhases {
    /// Decode the hash fields (the store's version field is not among them).
    pub fn from_fields(fields: &HashMap<String, Arc<str>>) -> Self {
        let mut out = BatchPhases::default();
        for (field, value) in fields {
            if let Some(phase) = field.strip_prefix(PHASE_FIELD_PREFIX) {
                match (phase.parse::<PhaseName>(), serde_json::from_str(value)) {
                    (Ok(p), Ok(record)) => {
                        out.phases.insert(p, record);
                    }
                    _ => out.unreadable.push(field.clone()),
                }
            } else if let Some(id) = field.strip_prefix(PIPELINE_FIELD_PREFIX) {
                match serde_json::from_str(value) {
                    Ok(mark) => {
                        out.pipelines.insert(id.to_owned(), mark);
                    }
                    Err(_) => out.unreadable.push(field.clone()),
                }
            } else {
                out.unreadable.push(field.clone());
            }
        }
        out.unreadable.sort();
        out
    }

    /// Phases whose record says `completed` (what resolution prunes).
    pub fn completed(&self) -> BTreeSet<PhaseName> {
        self.phases
            .iter()
            .filter(|(_, r)| r.status == PhaseStatus::Completed)
            .map(|(p, _)| *p)
            .collect()
    }

    /// Has this pipeline's completion been processed?
    pub fn has_pipeline(&self, pipeline_id: &str) -> bool {
        self.pipelines.contains_key(pipeline_id)
    }
}

/// Whether `update` replaces `existing`; `Some` holds the record to write.
///
/// - An update older than the existing record (`at`) changes nothing: records never go back in
///   time, so a late pipeline-completed event cannot undo a newer operator decision.
/// - A `pipeline_completed` update of a phase already recorded `completed` changes nothing: it
///   only confirms what is known, and the earlier record keeps the richer provenance (counts,
///   outcome event id).
/// - An event never downgrades a `completed` record to `failed` (architecture §5): a
///   `failed_critically` outcome of a later run — e.g. an essay-level retry of a few essays
///   that all fail again — does not undo the phase's completion. Only an operator mark
///   invalidates a completed phase.
/// - Otherwise the update wins (ties included).
pub fn supersede(existing: Option<&PhaseRecord>, update: PhaseRecord) -> Option<PhaseRecord> {
    match existing {
        Some(e) if update.at < e.at => None,
        Some(e)
            if update.source != RecordSource::Operator
                && update.status == PhaseStatus::Failed
                && e.status == PhaseStatus::Completed =>
        {
            None
        }
        Some(e)
            if update.source == RecordSource::PipelineCompleted
                && e.status == PhaseStatus::Completed =>
        {
            None
        }
        _ => Some(update),
    }
}

/// Where a consumed event was read from (goes into the failed-essay DLQ records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// An event that decodes but cannot be applied (dead-lettered as a validation error). The
/// message starts with the field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// What one input changes: records to write, pipelines to remember, DLQ events to emit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// Records that change (only those).
    pub records: Vec<(PhaseName, PhaseRecord)>,
    /// Pipelines to remember as processed.
    pub pipelines: Vec<(String, PipelineMark)>,
    /// Failed-essay DLQ events, one per distinct failed essay.
    pub dlq: Vec<EventEnvelope<FailedEssayDlqRecordV1>>,
    /// Phases the input named whose record stays as it is (older input, or already completed).
    pub kept: Vec<PhaseName>,
}

impl Decision {
    /// The hash fields to write.
    pub fn fields(&self) -> Vec<(String, String)> {
        let records = self.records.iter().map(|(p, r)| {
            (
                phase_field(*p),
                serde_json::to_string(r).expect("phase records serialize"),
            )
        });
        let marks = self.pipelines.iter().map(|(id, m)| {
            (
                pipeline_field(id),
                serde_json::to_string(m).expect("pipeline marks serialize"),
            )
        });
        records.chain(marks).collect()
    }

    fn record(&mut self, current: &BatchPhases, phase: PhaseName, update: PhaseRecord) {
        match supersede(current.phases.get(&phase), update) {
            Some(r) => self.records.push((phase, r)),
            None => self.kept.push(phase),
        }
    }
}

/// The batch-level status an outcome's `phase_status` records.
pub fn outcome_status(status: BatchStatus) -> Result<PhaseStatus, Invalid> {
    match status {
        BatchStatus::CompletedSuccessfully | BatchStatus::CompletedWithFailures => {
            Ok(PhaseStatus::Completed)
        }
        BatchStatus::FailedCritically => Ok(PhaseStatus::Failed),
        other => Err(Invalid(format!(
            "data.phase_status: `{other}` is not a phase outcome; expected completed_successfully, completed_with_failures or failed_critically"
        ))),
    }
}

fn check_batch_id(batch_id: &str) -> Result<(), Invalid> {
    if batch_id.trim().is_empty() {
        return Err(Invalid("data.batch_id: must not be empty".into()));
    }
    Ok(())
}

/// The event id of the failed-essay DLQ record for (`outcome_event_id`, `phase`, `essay_id`):
/// a UUID v5, so the same failure always yields the same id, even if the outcome were handled
/// again after its dedup marker expired.
pub fn failed_essay_event_id(outcome_event_id: Uuid, phase: PhaseName, essay_id: &str) -> Uuid {
    Uuid::new_v5(&outcome_event_id, format!("{phase}/{essay_id}").as_bytes())
}

/// W3C trace context keys copied from a consumed envelope's metadata to what it causes.
fn trace_metadata(metadata: Option<&Map<String, Value>>) -> Option<Map<String, Value>> {
    let m = metadata?;
    let out: Map<String, Value> = ["traceparent", "tracestate"]
        .iter()
        .filter_map(|k| m.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    (!out.is_empty()).then_some(out)
}

/// An `ELSBatchPhaseOutcomeV1`: record the phase (`completed_successfully` /
/// `completed_with_failures` → `completed`, `failed_critically` → `failed`) unless the record
/// is newer, and emit one failed-essay DLQ event per distinct `failed_essay_ids` entry — the
/// DLQ events are emitted even when the record stays as it is.
pub fn decide_outcome(
    current: &BatchPhases,
    event: &EventEnvelope<ELSBatchPhaseOutcomeV1>,
    from: &SourcePosition,
    now: Timestamp,
) -> Result<Decision, Invalid> {
    let data = &event.data;
    check_batch_id(&data.batch_id)?;
    let status = outcome_status(data.phase_status)?;
    let mut failed: Vec<&str> = Vec::new();
    for id in &data.failed_essay_ids {
        if !failed.contains(&id.as_str()) {
            failed.push(id);
        }
    }
    let mut decision = Decision::default();
    let record = PhaseRecord {
        status,
        source: RecordSource::Event,
        pipeline_correlation_id: Some(data.correlation_id),
        pipeline_id: None,
        event_id: Some(event.event_id),
        processed_count: Some(data.processed_essays.len() as u64),
        failed_count: Some(failed.len() as u64),
        at: event.event_timestamp,
        operator: None,
        reason: None,
    };
    decision.record(current, data.phase_name, record);
    let metadata = trace_metadata(event.metadata.as_ref());
    for essay_id in failed {
        let record = FailedEssayDlqRecordV1 {
            batch_id: data.batch_id.clone(),
            essay_id: essay_id.to_owned(),
            phase_name: data.phase_name,
            phase_status: data.phase_status,
            pipeline_correlation_id: data.correlation_id,
            source_event_id: event.event_id,
            source_topic: from.topic.clone(),
            source_partition: from.partition,
            source_offset: from.offset,
            reason: format!(
                "phase {} reported the essay as failed ({})",
                data.phase_name, data.phase_status
            ),
            failed_at: now,
        };
        let mut envelope = EventEnvelope::new(
            topics::FAILED_ESSAYS_DLQ,
            source::BATCH_CONDUCTOR,
            event.correlation_id,
            record,
        );
        envelope.event_id = failed_essay_event_id(event.event_id, data.phase_name, essay_id);
        envelope.event_timestamp = now;
        envelope.metadata = metadata.clone();
        decision.dlq.push(envelope);
    }
    Ok(decision)
}

/// A `BatchPipelineCompletedV1`: record every `completed_phases` entry as `completed` (source
/// `pipeline_completed`, never replacing a newer record) and remember the pipeline id (the
/// envelope's `correlation_id`).
pub fn decide_pipeline_completed(
    current: &BatchPhases,
    event: &EventEnvelope<BatchPipelineCompletedV1>,
    now: Timestamp,
) -> Result<Decision, Invalid> {
    let data = &event.data;
    check_batch_id(&data.batch_id)?;
    let mut phases: Vec<PhaseName> = Vec::new();
    for (i, name) in data.completed_phases.iter().enumerate() {
        let phase = name
            .parse::<PhaseName>()
            .map_err(|e| Invalid(format!("data.completed_phases[{i}]: {e}")))?;
        if !phases.contains(&phase) {
            phases.push(phase);
        }
    }
    let pipeline_id = event.correlation_id.to_string();
    let mut decision = Decision::default();
    for &phase in &phases {
        let record = PhaseRecord {
            status: PhaseStatus::Completed,
            source: RecordSource::PipelineCompleted,
            pipeline_correlation_id: Some(data.correlation_id),
            pipeline_id: Some(pipeline_id.clone()),
            event_id: Some(event.event_id),
            processed_count: None,
            failed_count: None,
            at: event.event_timestamp,
            operator: None,
            reason: None,
        };
        decision.record(current, phase, record);
    }
    if !current.has_pipeline(&pipeline_id) {
        decision.pipelines.push((
            pipeline_id,
            PipelineMark {
                processed_at: now,
                event_id: event.event_id,
                final_status: data.final_status,
                completed_phases: phases,
            },
        ));
    }
    Ok(decision)
}

/// The decision on an operator mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkDecision {
    /// Write this record.
    Write(PhaseRecord),
    /// The existing record is newer than the mark (clock skew between replicas): nothing
    /// changes.
    KeepNewer(PhaseRecord),
}

/// An operator mark made at `now`.
pub fn decide_operator_mark(
    current: &BatchPhases,
    phase: PhaseName,
    success: bool,
    operator: Option<String>,
    reason: Option<String>,
    now: Timestamp,
) -> MarkDecision {
    let record = PhaseRecord {
        status: if success {
            PhaseStatus::Completed
        } else {
            PhaseStatus::Failed
        },
        source: RecordSource::Operator,
        pipeline_correlation_id: None,
        pipeline_id: None,
        event_id: None,
        processed_count: None,
        failed_count: None,
        at: now,
        operator,
        reason,
    };
    let existing = current.phases.get(&phase);
    match (existing, supersede(existing, record.clone())) {
        (Some(e), None) => MarkDecision::KeepNewer(e.clone()),
        _ => MarkDecision::Write(record),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use huleedu_contracts::payloads::{EssayProcessingInputRefV1, SystemProcessingMetadata};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const T1: &str = "2025-11-03T09:00:00Z";
    const T2: &str = "2025-11-03T10:00:00Z";
    const T3: &str = "2025-11-03T11:00:00Z";

    fn from() -> SourcePosition {
        SourcePosition {
            topic: topics::ELS_BATCH_PHASE_OUTCOME.into(),
            partition: 2,
            offset: 41,
        }
    }

    fn outcome(
        phase: PhaseName,
        status: BatchStatus,
        failed: &[&str],
        at: &str,
    ) -> EventEnvelope<ELSBatchPhaseOutcomeV1> {
        let corr = Uuid::new_v4();
        let mut e = EventEnvelope::new(
            topics::ELS_BATCH_PHASE_OUTCOME,
            "els",
            corr,
            ELSBatchPhaseOutcomeV1 {
                batch_id: "b1".into(),
                phase_name: phase,
                phase_status: status,
                processed_essays: vec![
                    EssayProcessingInputRefV1::new("e1", "t1"),
                    EssayProcessingInputRefV1::new("e2", "t2"),
                ],
                failed_essay_ids: failed.iter().map(|s| s.to_string()).collect(),
                correlation_id: corr,
            },
        );
        e.event_timestamp = ts(at);
        e
    }

    fn completed(phases: &[&str], at: &str) -> EventEnvelope<BatchPipelineCompletedV1> {
        let corr = Uuid::new_v4();
        let mut e = EventEnvelope::new(
            topics::BATCH_PIPELINE_COMPLETED,
            source::BATCH_ORCHESTRATOR,
            corr,
            BatchPipelineCompletedV1 {
                event: "batch.pipeline.completed".into(),
                batch_id: "b1".into(),
                completed_phases: phases.iter().map(|s| s.to_string()).collect(),
                final_status: BatchStatus::CompletedSuccessfully,
                processing_duration_seconds: 1.0,
                successful_essay_count: 2,
                failed_essay_count: 0,
                correlation_id: corr,
                metadata: SystemProcessingMetadata::for_batch("b1", None),
                requested_pipeline: None,
                skipped_phases: vec![],
                failure_reason: None,
            },
        );
        e.event_timestamp = ts(at);
        e
    }

    /// Apply a decision to the in-memory state, as the store would.
    fn apply(state: &mut BatchPhases, d: &Decision) {
        for (p, r) in &d.records {
            state.phases.insert(*p, r.clone());
        }
        for (id, m) in &d.pipelines {
            state.pipelines.insert(id.clone(), m.clone());
        }
    }

    impl MarkDecision {
        fn written(self) -> PhaseRecord {
            match self {
                MarkDecision::Write(r) => r,
                other => panic!("expected Write, got {other:?}"),
            }
        }
    }

    fn operator_record(success: bool, at: &str) -> PhaseRecord {
        decide_operator_mark(
            &BatchPhases::default(),
            PhaseName::Spellcheck,
            success,
            Some("ops".into()),
            Some("why".into()),
            ts(at),
        )
        .written()
    }

    #[test]
    fn partial_success_records_completed_and_one_dlq_event_per_failed_essay() {
        let e = outcome(
            PhaseName::Spellcheck,
            BatchStatus::CompletedWithFailures,
            &["x1", "x2", "x3"],
            T1,
        );
        let d = decide_outcome(&BatchPhases::default(), &e, &from(), ts(T2)).unwrap();
        assert_eq!(d.records.len(), 1);
        let (phase, r) = &d.records[0];
        assert_eq!(*phase, PhaseName::Spellcheck);
        assert_eq!(r.status, PhaseStatus::Completed);
        assert_eq!(r.source, RecordSource::Event);
        assert_eq!(r.event_id, Some(e.event_id));
        assert_eq!((r.processed_count, r.failed_count), (Some(2), Some(3)));
        assert_eq!(r.at, ts(T1));
        assert_eq!(d.dlq.len(), 3);
        for (env, id) in d.dlq.iter().zip(["x1", "x2", "x3"]) {
            assert_eq!(env.event_type, topics::FAILED_ESSAYS_DLQ);
            assert_eq!(env.source_service, source::BATCH_CONDUCTOR);
            assert_eq!(env.correlation_id, e.correlation_id);
            assert_eq!(env.data.essay_id, id);
            assert_eq!(env.data.batch_id, "b1");
            assert_eq!(env.data.phase_name, PhaseName::Spellcheck);
            assert_eq!(env.data.phase_status, BatchStatus::CompletedWithFailures);
            assert_eq!(env.data.source_event_id, e.event_id);
            assert_eq!((env.data.source_partition, env.data.source_offset), (2, 41));
            assert_eq!(env.data.source_topic, topics::ELS_BATCH_PHASE_OUTCOME);
            assert_eq!(
                env.data.reason,
                "phase spellcheck reported the essay as failed (completed_with_failures)"
            );
            assert_eq!(env.data.failed_at, ts(T2));
        }
        let ids: BTreeSet<Uuid> = d.dlq.iter().map(|e| e.event_id).collect();
        assert_eq!(ids.len(), 3, "distinct event ids");
        // The same outcome decided again yields the same DLQ event ids.
        let again = decide_outcome(&BatchPhases::default(), &e, &from(), ts(T3)).unwrap();
        assert_eq!(
            again
                .dlq
                .iter()
                .map(|e| e.event_id)
                .collect::<BTreeSet<_>>(),
            ids
        );
    }

    #[test]
    fn n_distinct_failed_ids_give_n_dlq_events() {
        for n in [0usize, 1, 7] {
            let ids: Vec<String> = (0..n).map(|i| format!("essay-{i}")).collect();
            let mut refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            // A repeated id is one failed essay.
            if let Some(first) = refs.first().copied() {
                refs.push(first);
            }
            let e = outcome(
                PhaseName::Nlp,
                BatchStatus::CompletedWithFailures,
                &refs,
                T1,
            );
            let d = decide_outcome(&BatchPhases::default(), &e, &from(), ts(T1)).unwrap();
            assert_eq!(d.dlq.len(), n);
            assert_eq!(d.records[0].1.failed_count, Some(n as u64));
        }
    }

    #[test]
    fn success_and_critical_failure_map_to_completed_and_failed() {
        let ok = outcome(PhaseName::Nlp, BatchStatus::CompletedSuccessfully, &[], T1);
        let d = decide_outcome(&BatchPhases::default(), &ok, &from(), ts(T1)).unwrap();
        assert_eq!(d.records[0].1.status, PhaseStatus::Completed);
        assert!(d.dlq.is_empty());
        let bad = outcome(
            PhaseName::Nlp,
            BatchStatus::FailedCritically,
            &["a", "b"],
            T1,
        );
        let d = decide_outcome(&BatchPhases::default(), &bad, &from(), ts(T1)).unwrap();
        assert_eq!(d.records[0].1.status, PhaseStatus::Failed);
        assert_eq!(d.dlq.len(), 2);
    }

    #[test]
    fn other_statuses_and_empty_batch_ids_are_invalid() {
        for status in [BatchStatus::Cancelled, BatchStatus::ProcessingPipelines] {
            let e = outcome(PhaseName::Nlp, status, &[], T1);
            let err = decide_outcome(&BatchPhases::default(), &e, &from(), ts(T1)).unwrap_err();
            assert!(err.0.starts_with("data.phase_status: "), "{err}");
        }
        let mut e = outcome(PhaseName::Nlp, BatchStatus::CompletedSuccessfully, &[], T1);
        e.data.batch_id = " ".into();
        let err = decide_outcome(&BatchPhases::default(), &e, &from(), ts(T1)).unwrap_err();
        assert!(err.0.starts_with("data.batch_id: "), "{err}");
    }

    #[test]
    fn an_older_outcome_changes_no_record_but_still_emits_its_dlq_events() {
        let mut state = BatchPhases::default();
        let newer = outcome(
            PhaseName::Spellcheck,
            BatchStatus::FailedCritically,
            &[],
            T2,
        );
        let d = decide_outcome(&state, &newer, &from(), ts(T2)).unwrap();
        apply(&mut state, &d);
        let older = outcome(
            PhaseName::Spellcheck,
            BatchStatus::CompletedWithFailures,
            &["x"],
            T1,
        );
        let d = decide_outcome(&state, &older, &from(), ts(T3)).unwrap();
        assert!(d.records.is_empty());
        assert_eq!(d.kept, vec![PhaseName::Spellcheck]);
        assert_eq!(d.dlq.len(), 1);
        assert!(d.fields().is_empty());
    }

    #[test]
    fn a_newer_outcome_replaces_the_record() {
        let mut state = BatchPhases::default();
        let first = outcome(
            PhaseName::Spellcheck,
            BatchStatus::CompletedSuccessfully,
            &[],
            T1,
        );
        let d = decide_outcome(&state, &first, &from(), ts(T1)).unwrap();
        apply(&mut state, &d);
        let second = outcome(
            PhaseName::Spellcheck,
            BatchStatus::CompletedWithFailures,
            &["e9"],
            T2,
        );
        let d = decide_outcome(&state, &second, &from(), ts(T2)).unwrap();
        assert_eq!(d.records[0].1.status, PhaseStatus::Completed);
        assert_eq!(d.records[0].1.failed_count, Some(1));
        assert_eq!(d.records[0].1.event_id, Some(second.event_id));
    }

    #[test]
    fn a_later_failure_event_never_downgrades_a_completed_phase() {
        let mut state = BatchPhases::default();
        let first = outcome(
            PhaseName::Spellcheck,
            BatchStatus::CompletedWithFailures,
            &["e3"],
            T1,
        );
        let d = decide_outcome(&state, &first, &from(), ts(T1)).unwrap();
        apply(&mut state, &d);
        // An essay-level retry of the failed essay fails again, critically.
        let retry = outcome(
            PhaseName::Spellcheck,
            BatchStatus::FailedCritically,
            &["e3"],
            T2,
        );
        let d = decide_outcome(&state, &retry, &from(), ts(T2)).unwrap();
        assert!(d.records.is_empty(), "the phase stays completed");
        assert_eq!(d.dlq.len(), 1, "the essay is dead-lettered again");
        // A phase that never completed does become failed.
        let other = outcome(PhaseName::Nlp, BatchStatus::FailedCritically, &[], T2);
        let d = decide_outcome(&state, &other, &from(), ts(T2)).unwrap();
        assert_eq!(d.records[0].1.status, PhaseStatus::Failed);
    }

    #[test]
    fn pipeline_completed_records_phases_and_remembers_the_pipeline() {
        let e = completed(&["spellcheck", "cj_assessment"], T1);
        let d = decide_pipeline_completed(&BatchPhases::default(), &e, ts(T2)).unwrap();
        let recorded: Vec<PhaseName> = d.records.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            recorded,
            vec![PhaseName::Spellcheck, PhaseName::CjAssessment]
        );
        let pid = e.correlation_id.to_string();
        for (_, r) in &d.records {
            assert_eq!(r.status, PhaseStatus::Completed);
            assert_eq!(r.source, RecordSource::PipelineCompleted);
            assert_eq!(r.pipeline_id.as_deref(), Some(pid.as_str()));
            assert_eq!(r.at, ts(T1));
        }
        assert_eq!(d.pipelines.len(), 1);
        assert_eq!(d.pipelines[0].0, pid);
        assert_eq!(d.pipelines[0].1.event_id, e.event_id);
        assert_eq!(d.pipelines[0].1.processed_at, ts(T2));
        assert!(d.dlq.is_empty());
        let fields: Vec<String> = d.fields().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            vec![
                "phase:spellcheck".to_owned(),
                "phase:cj_assessment".to_owned(),
                format!("pipeline:{pid}")
            ]
        );
    }

    #[test]
    fn pipeline_completed_with_no_phases_still_marks_the_pipeline() {
        let e = completed(&[], T1);
        let d = decide_pipeline_completed(&BatchPhases::default(), &e, ts(T1)).unwrap();
        assert!(d.records.is_empty());
        assert_eq!(d.pipelines.len(), 1);
    }

    #[test]
    fn pipeline_completed_cannot_undo_a_newer_operator_mark() {
        let mut state = BatchPhases::default();
        state
            .phases
            .insert(PhaseName::Spellcheck, operator_record(false, T2));
        let late = completed(&["spellcheck", "nlp"], T1);
        let d = decide_pipeline_completed(&state, &late, ts(T3)).unwrap();
        assert_eq!(d.kept, vec![PhaseName::Spellcheck]);
        assert_eq!(d.records.len(), 1);
        assert_eq!(d.records[0].0, PhaseName::Nlp);
        // The pipeline is still remembered (the causal wait depends on it).
        assert_eq!(d.pipelines.len(), 1);
    }

    #[test]
    fn a_newer_pipeline_completed_overrides_an_older_invalidation() {
        let mut state = BatchPhases::default();
        state
            .phases
            .insert(PhaseName::Spellcheck, operator_record(false, T1));
        let d = decide_pipeline_completed(&state, &completed(&["spellcheck"], T2), ts(T2)).unwrap();
        assert_eq!(d.records[0].1.status, PhaseStatus::Completed);
    }

    #[test]
    fn pipeline_completed_keeps_an_existing_completion_record() {
        let mut state = BatchPhases::default();
        let o = outcome(
            PhaseName::Spellcheck,
            BatchStatus::CompletedWithFailures,
            &["x"],
            T1,
        );
        let d = decide_outcome(&state, &o, &from(), ts(T1)).unwrap();
        apply(&mut state, &d);
        let d = decide_pipeline_completed(&state, &completed(&["spellcheck"], T2), ts(T2)).unwrap();
        assert!(d.records.is_empty());
        assert_eq!(d.kept, vec![PhaseName::Spellcheck]);
    }

    #[test]
    fn pipeline_completed_with_an_unknown_phase_is_invalid() {
        let e = completed(&["spellcheck", "ocr"], T1);
        let err = decide_pipeline_completed(&BatchPhases::default(), &e, ts(T1)).unwrap_err();
        assert!(err.0.starts_with("data.completed_phases[1]: "), "{err}");
    }

    #[test]
    fn a_pipeline_is_remembered_once() {
        let mut state = BatchPhases::default();
        let e = completed(&["spellcheck"], T1);
        let d = decide_pipeline_completed(&state, &e, ts(T1)).unwrap();
        apply(&mut state, &d);
        assert!(state.has_pipeline(&e.correlation_id.to_string()));
        let d = decide_pipeline_completed(&state, &e, ts(T2)).unwrap();
        assert!(d.pipelines.is_empty());
    }

    #[test]
    fn operator_marks_keep_who_and_why_and_can_invalidate() {
        let mut state = BatchPhases::default();
        let o = outcome(
            PhaseName::Spellcheck,
            BatchStatus::CompletedSuccessfully,
            &[],
            T1,
        );
        let d = decide_outcome(&state, &o, &from(), ts(T1)).unwrap();
        apply(&mut state, &d);
        let r = decide_operator_mark(
            &state,
            PhaseName::Spellcheck,
            false,
            Some("alice".into()),
            Some("bad dictionary".into()),
            ts(T2),
        )
        .written();
        assert_eq!(r.status, PhaseStatus::Failed);
        assert_eq!(r.source, RecordSource::Operator);
        assert_eq!(r.operator.as_deref(), Some("alice"));
        assert_eq!(r.reason.as_deref(), Some("bad dictionary"));
        assert_eq!(r.at, ts(T2));
        // A mark older than the record (clock skew) changes nothing.
        let skewed = ts("2025-01-01T00:00:00Z");
        match decide_operator_mark(&state, PhaseName::Spellcheck, true, None, None, skewed) {
            MarkDecision::KeepNewer(existing) => assert_eq!(existing.source, RecordSource::Event),
            other => panic!("expected KeepNewer, got {other:?}"),
        }
    }

    #[test]
    fn records_round_trip_through_the_hash_with_nulls() {
        let r = operator_record(true, T1);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["status"], "completed");
        assert_eq!(json["source"], "operator");
        assert!(json["event_id"].is_null() && json.get("pipeline_id").is_some());
        assert_eq!(json["at"], "2025-11-03T09:00:00Z");
        let mut fields: HashMap<String, Arc<str>> = HashMap::new();
        fields.insert(phase_field(PhaseName::Spellcheck), json.to_string().into());
        fields.insert("phase:ocr".into(), json.to_string().into());
        fields.insert("phase:nlp".into(), "{not json".into());
        let state = BatchPhases::from_fields(&fields);
        assert_eq!(state.phases.get(&PhaseName::Spellcheck), Some(&r));
        assert_eq!(
            state.unreadable,
            vec!["phase:nlp".to_owned(), "phase:ocr".to_owned()]
        );
        assert_eq!(state.completed(), BTreeSet::from([PhaseName::Spellcheck]));
    }

    #[test]
    fn pipeline_ids_are_normalised() {
        assert_eq!(
            normalize_pipeline_id(" 8D3F2A1B-6C5E-4D7F-9A0B-1C2D3E4F5A6B "),
            "8d3f2a1b-6c5e-4d7f-9a0b-1c2d3e4f5a6b"
        );
        assert_eq!(normalize_pipeline_id("run-7"), "run-7");
    }

    #[test]
    fn trace_context_is_propagated_to_dlq_events() {
        let mut e = outcome(
            PhaseName::Nlp,
            BatchStatus::CompletedWithFailures,
            &["x"],
            T1,
        );
        let mut m = Map::new();
        m.insert("traceparent".into(), "00-abc-def-01".into());
        m.insert("user_id".into(), "u".into());
        e.metadata = Some(m);
        let d = decide_outcome(&BatchPhases::default(), &e, &from(), ts(T1)).unwrap();
        let meta = d.dlq[0].metadata.as_ref().unwrap();
        assert_eq!(meta.get("traceparent").unwrap(), "00-abc-def-01");
        assert!(meta.get("user_id").is_none());
    }
}
