//! Dotted platform event names (`ProcessingEvent` values) carried *inside* payloads, in `event`
//! (outcome-style events) or `event_name` (commands). These are not topic names.

use crate::phase::PhaseName;

/// `BatchEssaysReady.event`.
pub const BATCH_ESSAYS_READY: &str = "batch.essays.ready";
/// `BatchContentProvisioningCompletedV1.event`.
pub const BATCH_CONTENT_PROVISIONING_COMPLETED: &str = "batch.content.provisioning.completed";
/// `BatchPipelineCompletedV1.event`; BOS also uses it as the envelope `event_type` (INDEX note 7).
pub const BATCH_PIPELINE_COMPLETED: &str = "batch.pipeline.completed";
/// `PhaseSkippedV1.event`.
pub const BATCH_PHASE_SKIPPED: &str = "batch.phase.skipped";
/// `event_name` of the spellcheck initiate command.
pub const BATCH_SPELLCHECK_INITIATE_COMMAND: &str = "batch.spellcheck.initiate.command";
/// `event_name` of the NLP (v2) initiate command.
pub const BATCH_NLP_INITIATE_COMMAND_V2: &str = "batch.nlp.initiate.command.v2";
/// `event_name` of the CJ assessment initiate command.
pub const BATCH_CJ_ASSESSMENT_INITIATE_COMMAND: &str = "batch.cj_assessment.initiate.command";
/// `event_name` of the AI feedback initiate command.
pub const BATCH_AI_FEEDBACK_INITIATE_COMMAND: &str = "batch.ai_feedback.initiate.command";
/// `PipelineDeniedV1.event_name`.
pub const PIPELINE_DENIED: &str = "pipeline.denied";
/// `ELSBatchPhaseOutcomeV1` has no `event` key; this is its `ProcessingEvent` value.
pub const ELS_BATCH_PHASE_OUTCOME: &str = "els.batch.phase.outcome";

/// The `event_name` of a phase's initiate command, as the platform's BOS writes it.
pub fn initiate_command_event_name(phase: PhaseName) -> Option<&'static str> {
    match phase {
        PhaseName::Spellcheck => Some(BATCH_SPELLCHECK_INITIATE_COMMAND),
        PhaseName::Nlp => Some(BATCH_NLP_INITIATE_COMMAND_V2),
        PhaseName::CjAssessment => Some(BATCH_CJ_ASSESSMENT_INITIATE_COMMAND),
        PhaseName::AiFeedback => Some(BATCH_AI_FEEDBACK_INITIATE_COMMAND),
        PhaseName::StudentMatching => None,
    }
}
