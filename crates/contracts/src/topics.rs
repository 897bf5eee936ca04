//! Kafka topic names (contracts.md §2). Consumers route on the topic, never on `event_type`.
//!
//! Views of them, for code that needs a set rather than a name: [`ALL`] (every topic of the
//! contract), [`SYSTEM`] (the ones this project's services use), [`PIPELINE`] (the flow of a
//! pipeline request), [`COMMAND_TOPICS`], and the phase ↔ command-topic map both ways
//! ([`initiate_command_topic`], [`phase_of_command_topic`], [`COMMANDS`]).

use crate::phase::PhaseName;

/// Default of `KAFKA_MAX_MESSAGE_BYTES`, the largest message value: Apache Kafka's default
/// `message.max.bytes`.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;
/// Room a produced record needs beside its value: key, headers, record and batch framing.
/// The services produce their own events only up to `KAFKA_MAX_MESSAGE_BYTES` minus this, so
/// a broker whose `message.max.bytes` equals the setting accepts every one of them.
pub const RECORD_OVERHEAD_BYTES: usize = 1024;
/// The largest event value a service produces at the default limit.
pub const DEFAULT_MAX_EVENT_BYTES: usize = DEFAULT_MAX_MESSAGE_BYTES - RECORD_OVERHEAD_BYTES;

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

/// The phases BOS initiates with a command, each with its command topic, in pipeline order. The
/// one table behind [`initiate_command_topic`], [`phase_of_command_topic`] and
/// [`COMMAND_TOPICS`].
pub const COMMANDS: [(PhaseName, &str); 4] = [
    (PhaseName::Spellcheck, SPELLCHECK_INITIATE_COMMAND),
    (PhaseName::Nlp, NLP_INITIATE_COMMAND),
    (PhaseName::CjAssessment, CJ_ASSESSMENT_INITIATE_COMMAND),
    (PhaseName::AiFeedback, AI_FEEDBACK_INITIATE_COMMAND),
];

/// The four initiate-command topics (BOS → workers), in pipeline order.
pub const COMMAND_TOPICS: [&str; 4] = {
    let mut out = [""; 4];
    let mut i = 0;
    while i < COMMANDS.len() {
        out[i] = COMMANDS[i].1;
        i += 1;
    }
    out
};

/// The topics of the pipeline flow, from request to terminal event: the request, the two
/// readiness events, the four initiate commands, the phase outcomes, the terminal events and
/// the skipped phases. Not the failed-essay DLQ (the conductor's report to operators) nor
/// [`PIPELINE_DENIED`]. What the benchmark watches.
pub const PIPELINE: [&str; 10] = [
    CLIENT_BATCH_PIPELINE_REQUEST,
    BATCH_ESSAYS_READY,
    BATCH_CONTENT_PROVISIONING_COMPLETED,
    SPELLCHECK_INITIATE_COMMAND,
    NLP_INITIATE_COMMAND,
    CJ_ASSESSMENT_INITIATE_COMMAND,
    AI_FEEDBACK_INITIATE_COMMAND,
    ELS_BATCH_PHASE_OUTCOME,
    BATCH_PIPELINE_COMPLETED,
    BATCH_PHASE_SKIPPED,
];

/// Every topic this project's services read or write, and so provision at start-up: the
/// [`PIPELINE`] topics plus [`FAILED_ESSAYS_DLQ`]. Everything of a batch's life is visible on
/// them (what `hulectl watch` and the end-to-end tests read). Not [`PIPELINE_DENIED`], which no
/// service of this project uses, and not the poison-message `<topic>.DLQ` topics (see
/// [`dlq_topic`]), which are found on the broker.
pub const SYSTEM: [&str; 11] = with(PIPELINE, FAILED_ESSAYS_DLQ);

/// Every topic of the contract: the [`SYSTEM`] topics plus [`PIPELINE_DENIED`], the platform's
/// topic this crate only decodes. Not the poison-message `<topic>.DLQ` topics.
pub const ALL: [&str; 12] = with(SYSTEM, PIPELINE_DENIED);

/// `list` with `last` appended (`M` must be `N + 1`).
const fn with<const N: usize, const M: usize>(
    list: [&'static str; N],
    last: &'static str,
) -> [&'static str; M] {
    assert!(M == N + 1);
    let mut out = [""; M];
    let mut i = 0;
    while i < N {
        out[i] = list[i];
        i += 1;
    }
    out[N] = last;
    out
}

/// The topic BOS publishes a phase's initiate command on; `None` for phases no pipeline of this
/// project initiates (`student_matching`).
pub fn initiate_command_topic(phase: PhaseName) -> Option<&'static str> {
    COMMANDS
        .iter()
        .find(|(p, _)| *p == phase)
        .map(|(_, topic)| *topic)
}

/// The phase whose initiate commands travel on `topic`; `None` for any other topic.
pub fn phase_of_command_topic(topic: &str) -> Option<PhaseName> {
    COMMANDS
        .iter()
        .find(|(_, t)| *t == topic)
        .map(|(phase, _)| *phase)
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

    #[test]
    fn command_topics_map_back_to_their_phases() {
        for phase in PhaseName::ALL {
            if let Some(topic) = initiate_command_topic(phase) {
                assert_eq!(phase_of_command_topic(topic), Some(phase), "{topic}");
            }
        }
        assert_eq!(
            phase_of_command_topic("huleedu.batch.nlp.initiate.command.v2"),
            Some(PhaseName::Nlp)
        );
        for topic in [
            ELS_BATCH_PHASE_OUTCOME,
            "huleedu.batch.nlp.initiate.command.v2.DLQ",
            "",
        ] {
            assert_eq!(phase_of_command_topic(topic), None, "{topic}");
        }
        assert_eq!(
            COMMAND_TOPICS,
            [
                SPELLCHECK_INITIATE_COMMAND,
                NLP_INITIATE_COMMAND,
                CJ_ASSESSMENT_INITIATE_COMMAND,
                AI_FEEDBACK_INITIATE_COMMAND,
            ]
        );
    }

    #[test]
    fn views_nest_and_hold_each_topic_once() {
        let distinct: std::collections::BTreeSet<&str> = ALL.into_iter().collect();
        assert_eq!(distinct.len(), ALL.len(), "{ALL:?}");
        assert!(ALL.iter().all(|t| t.starts_with("huleedu.")));
        assert_eq!(ALL[..SYSTEM.len()], SYSTEM);
        assert_eq!(SYSTEM[..PIPELINE.len()], PIPELINE);
        assert!(COMMAND_TOPICS.iter().all(|t| PIPELINE.contains(t)));
        assert_eq!(
            ALL.iter()
                .filter(|t| !SYSTEM.contains(t))
                .collect::<Vec<_>>(),
            [&PIPELINE_DENIED]
        );
        assert_eq!(
            SYSTEM
                .iter()
                .filter(|t| !PIPELINE.contains(t))
                .collect::<Vec<_>>(),
            [&FAILED_ESSAYS_DLQ]
        );
        // No poison-message DLQ among them; the failed-essay DLQ is a topic of its own.
        assert!(ALL
            .iter()
            .all(|t| !t.ends_with(DLQ_SUFFIX) || *t == FAILED_ESSAYS_DLQ));
    }

    /// Every topic name this module declares is in [`ALL`] (read from the source, so a new
    /// topic cannot be left out of the views).
    #[test]
    fn all_lists_every_topic_constant() {
        let code = include_str!("topics.rs")
            .split("#[cfg(test)]")
            .next()
            .unwrap();
        let declared: std::collections::BTreeSet<&str> = code
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|s| s.starts_with("huleedu."))
            .collect();
        assert_eq!(declared, ALL.into_iter().collect());
    }
}
