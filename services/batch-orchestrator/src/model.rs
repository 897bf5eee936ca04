//! The orchestrator's state of one batch, stored in one Redis hash (versioned): the small part
//! as one JSON value, each per-essay part (the batch's essays, each phase's result, the active
//! pipeline's failed essays) in a field of its own, written only when it changes (see
//! `core::fields`). The per-essay parts are shared (`Arc`): a decision copies a pointer, not
//! the essays, and an unchanged part is recognised by its pointer.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use huleedu_contracts::events;
use huleedu_contracts::json;
use huleedu_contracts::payloads::{
    BatchContentProvisioningCompletedV1, BatchEssaysReady, EssayProcessingInputRefV1,
    PipelinePromptPayload,
};
use huleedu_contracts::phase::PhaseName;
use huleedu_contracts::timestamp::Timestamp;
use huleedu_contracts::trace::TraceContext;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How a run ended, a dispatched phase and a finished pipeline are stored as the status
/// document shows them (`huleedu_contracts::http::bos`).
pub use huleedu_contracts::http::bos::{PhaseRun, PipelineSummary, RunStatus};

/// Everything BOS knows about one batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchState {
    /// Essays and command context; `None` until a readiness event arrived. Stored in its own
    /// field (read from the state field too, as states written before the split have it).
    #[serde(default, skip_serializing)]
    pub batch: Option<Arc<BatchInfo>>,
    /// Per phase, the result of its latest run. Each stored in its own field (likewise).
    #[serde(default, skip_serializing)]
    pub phase_results: BTreeMap<PhaseName, Arc<PhaseResult>>,
    /// The running pipeline.
    pub active: Option<ActivePipeline>,
    /// Accepted requests waiting for the active pipeline to end (FIFO).
    pub queue: VecDeque<PendingRequest>,
    /// Requests that arrived before the batch was known.
    pub parked: Vec<PendingRequest>,
    /// Finished pipelines, newest last (bounded).
    pub history: VecDeque<PipelineSummary>,
    /// Pipeline id (= correlation id) of the last terminal event, for causal pruning.
    pub last_pipeline_id: Option<Uuid>,
}

/// One essay as a phase receives it. Stored as a pair, `["<essay_id>","<text_storage_id>"]`
/// (written by `huleedu_contracts::json`): a large batch's essays and recorded results are
/// thousands of them, and the pair is a third smaller than the object with its two keys. Read
/// in either form — the pair, or `{"essay_id":…,"text_storage_id":…}` as written before
/// (serde's derived `Deserialize` takes both, in this version and the ones before it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct EssayRef {
    pub essay_id: String,
    pub text_storage_id: String,
}

impl Serialize for EssayRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        json::serialize_object(serializer, |out| {
            out.push('[');
            json::push_str(out, &self.essay_id);
            out.push(',');
            json::push_str(out, &self.text_storage_id);
            out.push(']');
        })
    }
}

impl From<&EssayProcessingInputRefV1> for EssayRef {
    fn from(e: &EssayProcessingInputRefV1) -> Self {
        Self {
            essay_id: e.essay_id.clone(),
            text_storage_id: e.text_storage_id.clone(),
        }
    }
}

impl From<EssayProcessingInputRefV1> for EssayRef {
    fn from(e: EssayProcessingInputRefV1) -> Self {
        Self {
            essay_id: e.essay_id,
            text_storage_id: e.text_storage_id,
        }
    }
}

/// The batch's essays and the context the initiate commands need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchInfo {
    pub essays: Vec<EssayRef>,
    pub course_code: String,
    /// `en` or `sv`.
    pub language: String,
    /// `REGULAR` or `GUEST`.
    pub class_type: String,
    pub student_prompt_ref: Option<serde_json::Value>,
    pub user_id: Option<String>,
    /// Which event made it known (`batch.essays.ready` / `batch.content.provisioning.completed`).
    pub source: String,
    pub updated_at: Timestamp,
}

impl BatchInfo {
    /// From a regular batch's `BatchEssaysReady` (the course language and class type as sent).
    pub fn from_essays_ready(d: &BatchEssaysReady, at: Timestamp) -> Self {
        Self {
            essays: d.ready_essays.iter().map(EssayRef::from).collect(),
            course_code: d.course_code.clone(),
            language: d.course_language.clone(),
            class_type: d.class_type.clone(),
            student_prompt_ref: d.student_prompt_ref.clone(),
            user_id: None,
            source: events::BATCH_ESSAYS_READY.to_owned(),
            updated_at: at,
        }
    }

    /// From a guest batch's `BatchContentProvisioningCompletedV1`: a `GUEST` class, the
    /// language told by the course code ([`language_of`]), the user who provisioned it.
    pub fn from_provisioning(d: &BatchContentProvisioningCompletedV1, at: Timestamp) -> Self {
        Self {
            essays: d.essays_for_processing.iter().map(EssayRef::from).collect(),
            course_code: d.course_code.clone(),
            language: language_of(&d.course_code).to_owned(),
            class_type: "GUEST".to_owned(),
            student_prompt_ref: None,
            user_id: Some(d.user_id.clone()),
            source: events::BATCH_CONTENT_PROVISIONING_COMPLETED.to_owned(),
            updated_at: at,
        }
    }
}

/// Language of a batch known only from its course code (`SV…` → `sv`, else `en`).
pub fn language_of(course_code: &str) -> &'static str {
    if course_code.to_ascii_uppercase().starts_with("SV") {
        "sv"
    } else {
        "en"
    }
}

/// The latest run of a phase for this batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseResult {
    pub status: RunStatus,
    /// Essays that succeeded, with the phase's *output* text id (shared with the outcome they
    /// came from: the result is recorded without copying them).
    pub succeeded: Arc<Vec<EssayRef>>,
    pub failed: Vec<String>,
    pub pipeline_id: Uuid,
    pub at: Timestamp,
}

/// An accepted client request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingRequest {
    /// The request event's `event_id`.
    pub request_id: Uuid,
    /// The request's correlation id: the pipeline id of its run and terminal event.
    pub correlation_id: Uuid,
    pub requested_pipeline: String,
    pub user_id: String,
    pub prompt: Option<PipelinePromptPayload>,
    pub is_retry: bool,
    pub retry_reason: Option<String>,
    /// When BOS accepted it (start of `processing_duration_seconds`).
    pub received_at: Timestamp,
    /// For parked requests: when to give up waiting for the batch.
    pub park_deadline: Option<Timestamp>,
    /// Set for an operator's essay-level retry of one phase (`POST .../retry-phase`).
    #[serde(default)]
    pub retry: Option<RetrySpec>,
    /// The W3C trace context every event of this request's pipeline carries (the request's
    /// own, or the orchestrator's span that handled it when spans are exported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
}

/// An operator's request to run one phase again for some essays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrySpec {
    pub phase: PhaseName,
    /// The essays to run again (fixed when the retry is accepted).
    pub essay_ids: Vec<String>,
    pub reason: String,
    pub operator: String,
}

/// The pipeline running now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivePipeline {
    pub request: PendingRequest,
    /// When the pipeline was started (resolution done, first command decided).
    pub started_at: Timestamp,
    /// Phases to run, in order (after pruning).
    pub phases: Vec<PhaseName>,
    /// Phases pruned because they were already complete.
    pub pruned: Vec<PhaseName>,
    /// Index into `phases` of the phase dispatched now.
    pub current: usize,
    /// When the current phase times out.
    pub deadline: Timestamp,
    /// Runs so far (the last one is the current phase).
    pub runs: Vec<PhaseRun>,
    /// Distinct essays that failed any phase so far. Stored in its own field (likewise).
    #[serde(default, skip_serializing)]
    pub failed_essays: Arc<BTreeSet<String>>,
}

impl ActivePipeline {
    pub fn current_phase(&self) -> PhaseName {
        self.phases[self.current]
    }
}

impl BatchState {
    /// The earliest moment something must happen without an event: the active phase's deadline
    /// or a parked request's give-up time.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let active = self.active.as_ref().map(|a| a.deadline);
        let parked = self.parked.iter().filter_map(|p| p.park_deadline);
        active.into_iter().chain(parked).min()
    }

    /// A transition of this batch is expected: a pipeline runs, requests wait, or the batch
    /// is known and no pipeline has run on it yet (its first request is on its way).
    pub fn expects_work(&self) -> bool {
        self.active.is_some()
            || !self.queue.is_empty()
            || (self.batch.is_some() && self.history.is_empty() && self.last_pipeline_id.is_none())
    }

    /// A queued request can start now.
    pub fn needs_start(&self) -> bool {
        self.active.is_none() && self.batch.is_some() && !self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn an_essay_is_stored_as_a_pair_and_read_back_in_either_form(
            essay_id in proptest::prelude::any::<String>(),
            text_storage_id in "[\\x00-\\x7f\u{e5}]{0,40}",
        ) {
            #[derive(Serialize)]
            struct Derived<'a> {
                essay_id: &'a str,
                text_storage_id: &'a str,
            }
            let e = EssayRef {
                essay_id: essay_id.clone(),
                text_storage_id: text_storage_id.clone(),
            };
            let stored = serde_json::to_string(&[&e, &e]).unwrap();
            let pair = serde_json::to_string(&(&essay_id, &text_storage_id)).unwrap();
            proptest::prop_assert_eq!(&stored, &format!("[{pair},{pair}]"));
            let back: Vec<EssayRef> = serde_json::from_str(&stored).unwrap();
            proptest::prop_assert_eq!(&back, &vec![e.clone(), e.clone()]);
            // As stored before the pair: an object with the two keys.
            let object = serde_json::to_string(&Derived {
                essay_id: &essay_id,
                text_storage_id: &text_storage_id,
            })
            .unwrap();
            proptest::prop_assert_eq!(serde_json::from_str::<EssayRef>(&object).unwrap(), e);
        }
    }

    #[test]
    fn language_follows_the_course_code() {
        assert_eq!(language_of("SV1"), "sv");
        assert_eq!(language_of("sv2"), "sv");
        assert_eq!(language_of("ENG5"), "en");
    }

    #[test]
    fn a_provisioned_guest_batch_is_a_guest_class_in_its_course_language() {
        let d = BatchContentProvisioningCompletedV1 {
            event: events::BATCH_CONTENT_PROVISIONING_COMPLETED.to_owned(),
            batch_id: "g1".into(),
            provisioned_count: 1,
            expected_count: 1,
            course_code: "SV1".into(),
            user_id: "teacher-7".into(),
            essays_for_processing: vec![EssayProcessingInputRefV1::new("e1", "t1")],
            correlation_id: Uuid::nil(),
            timestamp: Timestamp::now(),
        };
        let at = Timestamp::now();
        let info = BatchInfo::from_provisioning(&d, at);
        assert_eq!(info.class_type, "GUEST");
        assert_eq!(info.language, "sv");
        assert_eq!(info.user_id.as_deref(), Some("teacher-7"));
        assert_eq!(info.essays.len(), 1);
        assert_eq!(info.source, events::BATCH_CONTENT_PROVISIONING_COMPLETED);
        assert_eq!(info.updated_at, at);
    }
}
