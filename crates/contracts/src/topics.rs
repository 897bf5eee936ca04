//! Kafka topic names (contracts.md §2). Consumers route on the topic, never on `event_type`.

use crate::phase::PhaseName;

/// Client / API gateway → BOS: `ClientBatchPipelineRequestV1`.
pub const CLIENT_BATCH_PIPELINE_REQUEST: &str = "huleedu.commands.batch.pipeline.v1";
/// ELS → BOS: `BatchEssaysReady`.
pub const BATCH_ESSAYS_READY: &str = "huleedu.els.batch.essays.ready.v1";
/// ELS → BOS: `BatchContentProvisioningCompletedV1`.
pub const BATCH_CONTENT_PROVISIONING_COMPLETED: &str =
    "huleedu.batch.content.provisioning.completed.v1";
/// BOS → workers: `BatchServiceSpellcheckInitiateCommandDataV1` (note the `els` segment).
pub const SPELLCHECK_INITIATE_COMMAND: &str = "huleedu.els.spellcheck.initiate.command.v1";
/// BOS → workers: `BatchServiceNLPInitiateCommandDataV2`.
pub const NLP_INITIATE_COMMAND: &str = "huleedu.batch.nlp.initiate.command.v2";
/// BOS → workers: `BatchServiceCJAssessmentInitiateCommandDataV1`.
pub const CJ_ASSESSMENT_INITIATE_COMMAND: &str = "huleedu.batch.cj_assessment.initiate.command.v1";
/// BOS → workers: `BatchServiceAIFeedbackInitiateCommandDataV1`.
pub const AI_FEEDBACK_INITIATE_COMMAND: &str = "huleedu.batch.ai_feedback.initiate.command.v1";
/// Workers (ELS) → BOS, BCS: `ELSBatchPhaseOutcomeV1`.
pub const ELS_BATCH_PHASE_OUTCOME: &str = "huleedu.els.batch.phase.outcome.v1";
/// BOS → BCS, clients: `BatchPipelineCompletedV1`.
pub const BATCH_PIPELINE_COMPLETED: &str = "huleedu.batch.pipeline.completed.v1";
/// BOS → clients, monitoring: `PhaseSkippedV1`.
pub const BATCH_PHASE_SKIPPED: &str = "huleedu.batch.phase.skipped.v1";
/// BOS → clients: `PipelineDeniedV1` (platform topic; this project only decodes it).
pub const PIPELINE_DENIED: &str = "huleedu.pipeline.denied.v1";
/// BCS → operators: `FailedEssayDlqRecordV1` (this project's).
pub const FAILED_ESSAYS_DLQ: &str = "huleedu.pipelines.failed_essays.DLQ";

/// Suffix of the poison-message dead-letter topic of a consumed topic.
pub const DLQ_SUFFIX: &str = ".DLQ";

/// The poison-message dead-letter topic for `topic`: `<topic>.DLQ`.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}{DLQ_SUFFIX}")
}

/// The topic BOS publishes a phase's initiate command on; `None` for phases no pipeline of this
/// project initiates (`student_matching`).
pub fn initiate_command_topic(phase: PhaseName) -> Option<&'static str> {
    match phase {
        PhaseName::Spellcheck => Some(SPELLCHECK_INITIATE_COMMAND),
        PhaseName::Nlp => Some(NLP_INITIATE_COMMAND),
        PhaseName::CjAssessment => Some(CJ_ASSESSMENT_INITIATE_COMMAND),
        PhaseName::AiFeedback => Some(AI_FEEDBACK_INITIATE_COMMAND),
        PhaseName::StudentMatching => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dlq_topic_appends_suffix() {
        assert_eq!(
            dlq_topic(ELS_BATCH_PHASE_OUTCOME),
            "huleedu.els.batch.phase.outcome.v1.DLQ"
        );
    }

    #[test]
    fn every_initiated_phase_has_a_topic() {
        for phase in PhaseName::ALL {
            let topic = initiate_command_topic(phase);
            assert_eq!(topic.is_none(), phase == PhaseName::StudentMatching);
        }
        assert_eq!(
            initiate_command_topic(PhaseName::Spellcheck),
            Some("huleedu.els.spellcheck.initiate.command.v1")
        );
    }
}
