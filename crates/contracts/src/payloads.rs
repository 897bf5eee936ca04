//! Event payloads: the envelope's `data` object, one struct per platform model
//! (contracts.md §3, exact shapes from the platform's JSON Schemas).
//!
//! Field order follows the platform schemas, so serialization reproduces the platform's bytes.
//! Nullable fields are always written (as `null`). On input, fields the platform model gives a
//! default (`event`, `timestamp`, `correlation_id`, ...) may be absent and get the same default;
//! unknown keys are ignored.
//!
//! Enumerations that drive this project's logic are typed ([`PhaseName`], [`BatchStatus`]);
//! other platform enums (`course_code`, `event_name`, `processing_stage`) are kept as strings and
//! passed through unchanged.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::decode::{check_len, check_opt_len, check_opt_object, Validate};
use crate::events;
use crate::phase::PhaseName;
use crate::status::BatchStatus;
use crate::timestamp::{NaiveTimestamp, Timestamp};

/// Deserializers that strip surrounding whitespace, as the platform's request models do
/// (`str_strip_whitespace=True`).
pub(crate) mod trim {
    use serde::{Deserialize, Deserializer};

    /// A required string, trimmed.
    pub(crate) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let s = String::deserialize(d)?;
        Ok(trimmed(s))
    }

    /// A nullable string, trimmed.
    pub(crate) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(trimmed))
    }

    fn trimmed(s: String) -> String {
        let t = s.trim();
        if t.len() == s.len() {
            s
        } else {
            t.to_owned()
        }
    }
}

fn default_event_batch_essays_ready() -> String {
    events::BATCH_ESSAYS_READY.to_owned()
}
fn default_event_content_provisioning_completed() -> String {
    events::BATCH_CONTENT_PROVISIONING_COMPLETED.to_owned()
}
fn default_event_pipeline_completed() -> String {
    events::BATCH_PIPELINE_COMPLETED.to_owned()
}
fn default_event_phase_skipped() -> String {
    events::BATCH_PHASE_SKIPPED.to_owned()
}
fn default_event_pipeline_denied() -> String {
    events::PIPELINE_DENIED.to_owned()
}
fn default_skip_reason() -> String {
    "already_completed".to_owned()
}

/// Entity type of batch-level events.
pub const ENTITY_TYPE_BATCH: &str = "batch";

// ---------------------------------------------------------------------------------------------
// Shared building blocks
// ---------------------------------------------------------------------------------------------

/// A reference to one essay's text in the Content Service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EssayProcessingInputRefV1 {
    /// Essay id (uuid4 text in practice).
    pub essay_id: String,
    /// Content Service storage id of the text (32 hex characters in practice).
    pub text_storage_id: String,
    /// Untyped at runtime; `null` in every flow of this project.
    #[serde(default)]
    pub spellcheck_metrics: Option<Value>,
}

impl EssayProcessingInputRefV1 {
    /// A reference with `spellcheck_metrics: null`.
    pub fn new(essay_id: impl Into<String>, text_storage_id: impl Into<String>) -> Self {
        EssayProcessingInputRefV1 {
            essay_id: essay_id.into(),
            text_storage_id: text_storage_id.into(),
            spellcheck_metrics: None,
        }
    }
}

/// An [`EssayProcessingInputRefV1`] with `spellcheck_metrics: null`, borrowing its ids: a
/// command for thousands of essays is written from the essays its writer holds without copying
/// each id first. Serializes to exactly the same JSON (tests below hold it to that), written by
/// [`crate::json`] rather than field by field: serde_json's own escape scan was the largest
/// single cost of writing a large command.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EssayInputRefView<'a> {
    /// Essay id.
    pub essay_id: &'a str,
    /// Content Service storage id of the text.
    pub text_storage_id: &'a str,
    /// `null` from [`EssayInputRefView::new`], as in every command of this project.
    pub spellcheck_metrics: Option<&'a Value>,
}

impl<'a> EssayInputRefView<'a> {
    /// The view of an essay reference with `spellcheck_metrics: null`.
    pub fn new(essay_id: &'a str, text_storage_id: &'a str) -> Self {
        Self {
            essay_id,
            text_storage_id,
            spellcheck_metrics: None,
        }
    }
}

/// The constant parts of an essay reference's JSON, in order (see its `Serialize`).
const VIEW_OPEN: &str = "{\"essay_id\":";
const VIEW_TEXT: &str = ",\"text_storage_id\":";
const VIEW_METRICS: &str = ",\"spellcheck_metrics\":";
/// The constant bytes of a reference with `spellcheck_metrics: null`, its ids' quotes and the
/// comma that follows it in a list.
const VIEW_FIXED_LEN: usize =
    VIEW_OPEN.len() + VIEW_TEXT.len() + VIEW_METRICS.len() + "\"\"\"\"null},".len();

impl EssayInputRefView<'_> {
    /// Bytes this reference takes in a list's JSON (its comma included) when its ids need no
    /// escaping and `spellcheck_metrics` is null: what a writer sizes its buffer with.
    pub fn json_len(&self) -> usize {
        VIEW_FIXED_LEN + self.essay_id.len() + self.text_storage_id.len()
    }
}

impl Serialize for EssayInputRefView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        crate::json::serialize_object(serializer, |out| {
            out.push_str(VIEW_OPEN);
            crate::json::push_str(out, self.essay_id);
            out.push_str(VIEW_TEXT);
            crate::json::push_str(out, self.text_storage_id);
            out.push_str(VIEW_METRICS);
            match self.spellcheck_metrics {
                None => out.push_str("null"),
                Some(v) => out.push_str(&v.to_string()),
            }
            out.push('}');
        })
    }
}

/// The platform's `SystemProcessingMetadata`, nested as `metadata` in several payloads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SystemProcessingMetadata {
    /// Id of the entity (the batch id for batch events).
    pub entity_id: String,
    /// `"batch"` for batch events.
    pub entity_type: String,
    /// Parent entity id or `null`.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// When the metadata was created.
    #[serde(default = "Timestamp::now")]
    pub timestamp: Timestamp,
    /// A platform `ProcessingStage` value (`pending`, `processing`, ...) or `null`.
    #[serde(default)]
    pub processing_stage: Option<String>,
    /// Optional start time.
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    /// Optional completion time.
    #[serde(default)]
    pub completed_at: Option<Timestamp>,
    /// The dotted event name or `null`.
    #[serde(default)]
    pub event: Option<String>,
    /// Free-form error details; `{}` when there are none.
    #[serde(default)]
    pub error_info: Map<String, Value>,
}

impl SystemProcessingMetadata {
    /// Metadata for a batch-level event: `entity_type` `"batch"`, timestamp now, no parent or
    /// stage, `error_info` `{}`.
    pub fn for_batch(batch_id: impl Into<String>, event: Option<&str>) -> Self {
        SystemProcessingMetadata {
            entity_id: batch_id.into(),
            entity_type: ENTITY_TYPE_BATCH.to_owned(),
            parent_id: None,
            timestamp: Timestamp::now(),
            processing_stage: None,
            started_at: None,
            completed_at: None,
            event: event.map(str::to_owned),
            error_info: Map::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client request
// ---------------------------------------------------------------------------------------------

/// The optional prompt attached to a pipeline request. Exactly one of `assignment_id` and
/// `cms_prompt_ref` must be set (platform validator, INDEX note 10).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PipelinePromptPayload {
    /// Canonical assignment id (at most 100 characters).
    #[serde(default, deserialize_with = "trim::opt_string")]
    pub assignment_id: Option<String>,
    /// A `StorageReferenceMetadata` object (`{"references": {...}}`), passed through unchanged.
    #[serde(default)]
    pub cms_prompt_ref: Option<Value>,
}

impl PipelinePromptPayload {
    /// The platform's rules, with field paths under `path` (empty for the payload itself).
    fn check(&self, path: &str) -> Result<(), String> {
        let field = |name: &str| {
            if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            }
        };
        check_opt_len(
            &field("assignment_id"),
            self.assignment_id.as_deref(),
            0,
            100,
        )?;
        check_opt_object(&field("cms_prompt_ref"), self.cms_prompt_ref.as_ref())?;
        if self.assignment_id.is_some() == self.cms_prompt_ref.is_some() {
            let subject = if path.is_empty() {
                field("assignment_id")
            } else {
                path.to_owned()
            };
            return Err(format!(
                "{subject}: exactly one of `assignment_id` and `cms_prompt_ref` must be set"
            ));
        }
        Ok(())
    }
}

impl Validate for PipelinePromptPayload {
    fn validate(&self) -> Result<(), String> {
        self.check("")
    }
}

/// `huleedu.commands.batch.pipeline.v1`: a client asks BOS to run a pipeline on a batch.
/// Strings are trimmed while decoding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientBatchPipelineRequestV1 {
    /// Batch id, 1..=255 characters.
    #[serde(deserialize_with = "trim::string")]
    pub batch_id: String,
    /// Requested pipeline (a final phase name), 1..=100 characters.
    #[serde(deserialize_with = "trim::string")]
    pub requested_pipeline: String,
    /// The client's correlation id (a new uuid4 when absent, as in the platform).
    #[serde(default = "Uuid::new_v4")]
    pub client_correlation_id: Uuid,
    /// Requesting user, 1..=255 characters.
    #[serde(deserialize_with = "trim::string")]
    pub user_id: String,
    /// Whether this is a retry.
    #[serde(default)]
    pub is_retry: bool,
    /// Why it is retried (at most 500 characters) or `null`.
    #[serde(default, deserialize_with = "trim::opt_string")]
    pub retry_reason: Option<String>,
    /// Prompt attached to the request or `null`.
    #[serde(default)]
    pub prompt_payload: Option<PipelinePromptPayload>,
}

impl Validate for ClientBatchPipelineRequestV1 {
    fn validate(&self) -> Result<(), String> {
        check_len("batch_id", &self.batch_id, 1, 255)?;
        check_len("requested_pipeline", &self.requested_pipeline, 1, 100)?;
        check_len("user_id", &self.user_id, 1, 255)?;
        check_opt_len("retry_reason", self.retry_reason.as_deref(), 0, 500)?;
        if let Some(prompt) = &self.prompt_payload {
            prompt.check("prompt_payload")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// ELS → BOS
// ---------------------------------------------------------------------------------------------

/// `huleedu.els.batch.essays.ready.v1`: every essay of a batch has content (REGULAR flow).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchEssaysReady {
    /// `"batch.essays.ready"`.
    #[serde(default = "default_event_batch_essays_ready")]
    pub event: String,
    /// The batch.
    pub batch_id: String,
    /// The essays ready for processing.
    pub ready_essays: Vec<EssayProcessingInputRefV1>,
    /// Processing metadata.
    pub metadata: SystemProcessingMetadata,
    /// Platform `CourseCode` (`ENG5`, `SV1`, ...).
    pub course_code: String,
    /// `en` or `sv`.
    pub course_language: String,
    /// A `StorageReferenceMetadata` object or `null`.
    #[serde(default)]
    pub student_prompt_ref: Option<Value>,
    /// `GUEST` or `REGULAR`.
    pub class_type: String,
}

/// `huleedu.batch.content.provisioning.completed.v1`: content provisioning finished (GUEST flow,
/// or REGULAR after validation failures).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchContentProvisioningCompletedV1 {
    /// `"batch.content.provisioning.completed"`.
    #[serde(default = "default_event_content_provisioning_completed")]
    pub event: String,
    /// The batch.
    pub batch_id: String,
    /// How many essays got content.
    pub provisioned_count: i64,
    /// How many were expected.
    pub expected_count: i64,
    /// Platform `CourseCode`.
    pub course_code: String,
    /// Owner of the batch.
    pub user_id: String,
    /// The essays to process.
    pub essays_for_processing: Vec<EssayProcessingInputRefV1>,
    /// Correlation id (a new uuid4 when absent, as in the platform).
    #[serde(default = "Uuid::new_v4")]
    pub correlation_id: Uuid,
    /// When provisioning completed.
    #[serde(default = "Timestamp::now")]
    pub timestamp: Timestamp,
}

// ---------------------------------------------------------------------------------------------
// Workers (ELS) → BOS, BCS
// ---------------------------------------------------------------------------------------------

/// `huleedu.els.batch.phase.outcome.v1`: a phase finished for a batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ELSBatchPhaseOutcomeV1 {
    /// The batch.
    pub batch_id: String,
    /// The phase that finished.
    pub phase_name: PhaseName,
    /// `completed_successfully`, `completed_with_failures` or `failed_critically` in practice;
    /// every `BatchStatus` value decodes.
    pub phase_status: BatchStatus,
    /// The essays that succeeded, carrying the phase's output text id.
    pub processed_essays: Vec<EssayProcessingInputRefV1>,
    /// Ids of the essays that failed.
    pub failed_essay_ids: Vec<String>,
    /// Same as the envelope's (a new uuid4 when absent, as in the platform).
    #[serde(default = "Uuid::new_v4")]
    pub correlation_id: Uuid,
}

// ---------------------------------------------------------------------------------------------
// BOS → workers: initiate commands
// ---------------------------------------------------------------------------------------------

/// `huleedu.els.spellcheck.initiate.command.v1`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchServiceSpellcheckInitiateCommandDataV1<E = EssayProcessingInputRefV1> {
    /// `"batch.spellcheck.initiate.command"` (see [`events`]).
    pub event_name: String,
    /// The batch id.
    #[serde(default)]
    pub entity_id: Option<String>,
    /// `"batch"`.
    #[serde(default)]
    pub entity_type: Option<String>,
    /// `null` in practice.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// When the command was created.
    #[serde(default = "Timestamp::now")]
    pub timestamp: Timestamp,
    /// The essays to process ([`EssayProcessingInputRefV1`]; a writer may use
    /// [`EssayInputRefView`], the same JSON without copying the ids).
    pub essays_to_process: Vec<E>,
    /// `en` or `sv`.
    pub language: String,
}

/// `huleedu.batch.nlp.initiate.command.v2`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchServiceNLPInitiateCommandDataV2<E = EssayProcessingInputRefV1> {
    /// `"batch.nlp.initiate.command.v2"` (see [`events`]).
    pub event_name: String,
    /// The batch id.
    #[serde(default)]
    pub entity_id: Option<String>,
    /// `"batch"`.
    #[serde(default)]
    pub entity_type: Option<String>,
    /// `null` in practice.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// When the command was created.
    #[serde(default = "Timestamp::now")]
    pub timestamp: Timestamp,
    /// The essays to process ([`EssayProcessingInputRefV1`]; a writer may use
    /// [`EssayInputRefView`], the same JSON without copying the ids).
    pub essays_to_process: Vec<E>,
    /// `en` or `sv`.
    pub language: String,
    /// A `StorageReferenceMetadata` object or `null`.
    #[serde(default)]
    pub student_prompt_ref: Option<Value>,
}

/// `huleedu.batch.cj_assessment.initiate.command.v1`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchServiceCJAssessmentInitiateCommandDataV1<E = EssayProcessingInputRefV1> {
    /// `"batch.cj_assessment.initiate.command"` (see [`events`]).
    pub event_name: String,
    /// The batch id.
    #[serde(default)]
    pub entity_id: Option<String>,
    /// `"batch"`.
    #[serde(default)]
    pub entity_type: Option<String>,
    /// `null` in practice.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// When the command was created.
    #[serde(default = "Timestamp::now")]
    pub timestamp: Timestamp,
    /// The essays to process ([`EssayProcessingInputRefV1`]; a writer may use
    /// [`EssayInputRefView`], the same JSON without copying the ids).
    pub essays_to_process: Vec<E>,
    /// `en` or `sv`.
    pub language: String,
    /// Platform `CourseCode`.
    pub course_code: String,
    /// A `StorageReferenceMetadata` object or `null`.
    #[serde(default)]
    pub student_prompt_ref: Option<Value>,
    /// `GUEST` or `REGULAR`.
    pub class_type: String,
    /// Canonical assignment id (at most 100 characters) or `null`.
    #[serde(default)]
    pub assignment_id: Option<String>,
}

impl Validate for BatchServiceCJAssessmentInitiateCommandDataV1 {
    fn validate(&self) -> Result<(), String> {
        check_opt_object("student_prompt_ref", self.student_prompt_ref.as_ref())?;
        check_opt_len("assignment_id", self.assignment_id.as_deref(), 0, 100)
    }
}

/// `huleedu.batch.ai_feedback.initiate.command.v1`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchServiceAIFeedbackInitiateCommandDataV1<E = EssayProcessingInputRefV1> {
    /// `"batch.ai_feedback.initiate.command"` (see [`events`]).
    pub event_name: String,
    /// The batch id.
    #[serde(default)]
    pub entity_id: Option<String>,
    /// `"batch"`.
    #[serde(default)]
    pub entity_type: Option<String>,
    /// `null` in practice.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// When the command was created.
    #[serde(default = "Timestamp::now")]
    pub timestamp: Timestamp,
    /// The essays to process ([`EssayProcessingInputRefV1`]; a writer may use
    /// [`EssayInputRefView`], the same JSON without copying the ids).
    pub essays_to_process: Vec<E>,
    /// `en` or `sv`.
    pub language: String,
    /// Platform `CourseCode`.
    pub course_code: String,
    /// A `StorageReferenceMetadata` object or `null`.
    #[serde(default)]
    pub student_prompt_ref: Option<Value>,
    /// `GUEST` or `REGULAR`.
    pub class_type: String,
    /// Owner of the batch.
    pub owner_user_id: String,
}

// ---------------------------------------------------------------------------------------------
// BOS → BCS, clients
// ---------------------------------------------------------------------------------------------

/// `huleedu.batch.pipeline.completed.v1`: a pipeline reached a terminal state.
///
/// The last three fields are this project's additions (the platform ignores unknown keys). They
/// are always written (`null` / `[]`) and may be absent on input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchPipelineCompletedV1 {
    /// `"batch.pipeline.completed"`.
    #[serde(default = "default_event_pipeline_completed")]
    pub event: String,
    /// The batch.
    pub batch_id: String,
    /// Phases that ran and completed, in order (phase names).
    pub completed_phases: Vec<String>,
    /// `completed_successfully`, `completed_with_failures` or `failed_critically` in practice.
    pub final_status: BatchStatus,
    /// Wall time of the pipeline run.
    pub processing_duration_seconds: f64,
    /// Essays that made it through every phase.
    pub successful_essay_count: i64,
    /// Essays that failed in some phase.
    pub failed_essay_count: i64,
    /// Correlation id of the pipeline request.
    pub correlation_id: Uuid,
    /// Processing metadata.
    pub metadata: SystemProcessingMetadata,
    /// This project's: the pipeline the client requested.
    #[serde(default)]
    pub requested_pipeline: Option<String>,
    /// This project's: phases skipped because they were already done.
    #[serde(default)]
    pub skipped_phases: Vec<String>,
    /// This project's: why the pipeline failed, if it did.
    #[serde(default)]
    pub failure_reason: Option<String>,
}

/// `huleedu.batch.phase.skipped.v1`: a phase was left out because it had already completed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseSkippedV1 {
    /// `"batch.phase.skipped"`.
    #[serde(default = "default_event_phase_skipped")]
    pub event: String,
    /// The batch.
    pub batch_id: String,
    /// The skipped phase (a free string in the platform model).
    pub phase_name: String,
    /// `"already_completed"`.
    #[serde(default = "default_skip_reason")]
    pub skip_reason: String,
    /// Storage id of the earlier result or `null`.
    #[serde(default)]
    pub storage_id: Option<String>,
    /// Correlation id of the pipeline request.
    pub correlation_id: Uuid,
    /// Processing metadata.
    pub metadata: SystemProcessingMetadata,
}

/// `huleedu.pipeline.denied.v1`: BOS refused a pipeline request (credits, rate limit).
/// This project only decodes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PipelineDeniedV1 {
    /// `"pipeline.denied"`.
    #[serde(default = "default_event_pipeline_denied")]
    pub event_name: String,
    /// The batch id.
    #[serde(default)]
    pub entity_id: Option<String>,
    /// `"batch"`.
    #[serde(default)]
    pub entity_type: Option<String>,
    /// `null` in practice.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// When the event was created.
    #[serde(default = "Timestamp::now")]
    pub timestamp: Timestamp,
    /// The batch.
    pub batch_id: String,
    /// Requesting user.
    pub user_id: String,
    /// Organisation or `null`.
    #[serde(default)]
    pub org_id: Option<String>,
    /// The pipeline that was denied.
    pub requested_pipeline: String,
    /// `insufficient_credits`, `rate_limit_exceeded`, ...
    pub denial_reason: String,
    /// Credits the pipeline needs.
    pub required_credits: i64,
    /// Credits available.
    pub available_credits: i64,
    /// Credits per resource or `null`.
    #[serde(default)]
    pub resource_breakdown: Option<Map<String, Value>>,
    /// Naive UTC time without offset (INDEX note 3).
    #[serde(default = "NaiveTimestamp::now")]
    pub denied_at: NaiveTimestamp,
}

impl Validate for EssayProcessingInputRefV1 {}
impl Validate for SystemProcessingMetadata {}
impl Validate for BatchContentProvisioningCompletedV1 {}
impl Validate for ELSBatchPhaseOutcomeV1 {}
impl Validate for BatchServiceSpellcheckInitiateCommandDataV1 {}
impl Validate for BatchPipelineCompletedV1 {}
impl Validate for PhaseSkippedV1 {}
impl Validate for PipelineDeniedV1 {}

impl Validate for BatchEssaysReady {
    fn validate(&self) -> Result<(), String> {
        check_opt_object("student_prompt_ref", self.student_prompt_ref.as_ref())
    }
}

impl Validate for BatchServiceNLPInitiateCommandDataV2 {
    fn validate(&self) -> Result<(), String> {
        check_opt_object("student_prompt_ref", self.student_prompt_ref.as_ref())
    }
}

impl Validate for BatchServiceAIFeedbackInitiateCommandDataV1 {
    fn validate(&self) -> Result<(), String> {
        check_opt_object("student_prompt_ref", self.student_prompt_ref.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_essay_view_writes_the_same_json_as_the_owned_reference() {
        // Plain ids, and ids that need escaping (quote, backslash, control, non-ASCII).
        for (id, text) in [
            (
                "3f0c2a9e-1d4b-4f8a-9c61-2b7e5d8a0f13",
                "0123456789abcdef0123456789abcdef",
            ),
            ("e\"1\\", "t\n\u{1}\u{e5}\u{1F600}"),
            ("", ""),
        ] {
            let owned = EssayProcessingInputRefV1::new(id, text);
            let view = EssayInputRefView::new(id, text);
            assert_eq!(
                serde_json::to_string(&view).unwrap(),
                serde_json::to_string(&owned).unwrap()
            );
        }
    }

    #[test]
    fn an_essay_views_json_len_is_its_place_in_a_list() {
        let view = EssayInputRefView::new(
            "3f0c2a9e-1d4b-4f8a-9c61-2b7e5d8a0f13",
            "0123456789abcdef0123456789abcdef",
        );
        let one = serde_json::to_string(&[view]).unwrap().len();
        let two = serde_json::to_string(&[view, view]).unwrap().len();
        assert_eq!(view.json_len(), two - one);
    }

    #[test]
    fn an_essay_view_with_metrics_writes_them_as_the_owned_reference_does() {
        let metrics = serde_json::json!({"z": 1, "a": [true, null, "x\"y"], "m": {"k": 1.5}});
        let mut owned = EssayProcessingInputRefV1::new("e1", "t1");
        owned.spellcheck_metrics = Some(metrics.clone());
        let view = EssayInputRefView {
            spellcheck_metrics: Some(&metrics),
            ..EssayInputRefView::new("e1", "t1")
        };
        assert_eq!(
            serde_json::to_string(&view).unwrap(),
            serde_json::to_string(&owned).unwrap()
        );
    }

    proptest::proptest! {
        #[test]
        fn an_essay_view_of_any_ids_writes_the_owned_references_json(
            id in proptest::prelude::any::<String>(),
            text in "[\\x00-\\x7f\u{e5}]{0,40}",
        ) {
            let owned = EssayProcessingInputRefV1::new(id.clone(), text.clone());
            let view = EssayInputRefView::new(&id, &text);
            proptest::prop_assert_eq!(
                serde_json::to_vec(&[view, view]).unwrap(),
                serde_json::to_vec(&[&owned, &owned]).unwrap()
            );
        }
    }

    #[test]
    fn a_command_of_views_writes_the_same_json_as_one_of_owned_references() {
        let ids = [("e1", "t1"), ("e2", "t2")];
        let owned = BatchServiceSpellcheckInitiateCommandDataV1 {
            event_name: events::BATCH_SPELLCHECK_INITIATE_COMMAND.to_owned(),
            entity_id: Some("b1".into()),
            entity_type: Some("batch".into()),
            parent_id: None,
            timestamp: Timestamp::now(),
            essays_to_process: ids
                .iter()
                .map(|(e, t)| EssayProcessingInputRefV1::new(*e, *t))
                .collect(),
            language: "en".into(),
        };
        let view = BatchServiceSpellcheckInitiateCommandDataV1 {
            essays_to_process: ids
                .iter()
                .map(|(e, t)| EssayInputRefView::new(e, t))
                .collect(),
            event_name: owned.event_name.clone(),
            entity_id: owned.entity_id.clone(),
            entity_type: owned.entity_type.clone(),
            parent_id: None,
            timestamp: owned.timestamp,
            language: owned.language.clone(),
        };
        assert_eq!(
            serde_json::to_string(&view).unwrap(),
            serde_json::to_string(&owned).unwrap()
        );
    }
}
