//! JSON bodies of the orchestrator's (BOS) own HTTP API: the status document of a batch
//! (`GET /v1/batches/{batch_id}/status`), the list of batches (`GET /v1/batches`) and the operators' essay-level retry
//! (`POST /v1/batches/{batch_id}/retry-phase`). The service writes them; `hulectl` and the
//! tests read them with the same types.
//!
//! Fields are written in declaration order, and nullable fields as `null` (never left out),
//! except the optional fields of [`RetryPhaseRequest`], which are left out when `None`. Unknown
//! keys are ignored on input.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::phase::PhaseName;
use crate::status::BatchStatus;
use crate::timestamp::Timestamp;

/// How a phase's run ended (`status` of [`PhaseRun`] and [`PhaseResultView`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    CompletedSuccessfully,
    CompletedWithFailures,
    FailedCritically,
    /// No outcome arrived before the phase's deadline.
    TimedOut,
}

impl RunStatus {
    /// Whether the phase completed (with or without failed essays).
    pub fn completed(self) -> bool {
        matches!(
            self,
            Self::CompletedSuccessfully | Self::CompletedWithFailures
        )
    }

    /// The wire value (`"completed_with_failures"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CompletedSuccessfully => "completed_successfully",
            Self::CompletedWithFailures => "completed_with_failures",
            Self::FailedCritically => "failed_critically",
            Self::TimedOut => "timed_out",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One dispatched phase of a pipeline (`active_pipeline.runs[]`, `history[].runs[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PhaseRun {
    pub phase: PhaseName,
    /// `event_id` of the initiate command.
    pub command_id: Uuid,
    pub essays_in: usize,
    /// `null` until the outcome arrived.
    pub essays_out: Option<usize>,
    pub failed: Option<usize>,
    pub status: Option<RunStatus>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// A finished pipeline (`history[]`, oldest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PipelineSummary {
    pub pipeline_id: Uuid,
    pub request_id: Uuid,
    pub requested_pipeline: String,
    pub final_status: BatchStatus,
    pub completed_phases: Vec<PhaseName>,
    pub skipped_phases: Vec<PhaseName>,
    pub successful_essay_count: i64,
    pub failed_essay_count: i64,
    pub processing_duration_seconds: f64,
    pub failure_reason: Option<String>,
    pub received_at: Timestamp,
    pub finished_at: Timestamp,
    pub runs: Vec<PhaseRun>,
    /// Id of the terminal event.
    pub terminal_event_id: Uuid,
}

/// 200 answer of `GET /v1/batches/{batch_id}/status`: a batch as the orchestrator sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchStatusView {
    pub batch_id: String,
    /// Whether a readiness event made the batch known (requests before it are parked).
    pub known: bool,
    /// `null` until the batch is known.
    pub essay_count: Option<usize>,
    pub course_code: Option<String>,
    /// The running pipeline, or `null`.
    pub active_pipeline: Option<ActivePipelineView>,
    /// Accepted requests waiting for the active pipeline to end, first to run first.
    pub queue: Vec<QueuedRequestView>,
    /// Requests that arrived before the batch was known.
    pub parked: Vec<QueuedRequestView>,
    /// Per phase, the latest run's result (in phase order).
    pub phase_results: BTreeMap<PhaseName, PhaseResultView>,
    /// Finished pipelines, oldest first (bounded).
    pub history: Vec<PipelineSummary>,
    /// Pipeline id of the last terminal event.
    pub last_pipeline_id: Option<Uuid>,
}

/// The running pipeline (`active_pipeline`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActivePipelineView {
    pub requested_pipeline: String,
    pub correlation_id: Uuid,
    pub request_id: Uuid,
    /// Phases to run, in order, after pruning.
    pub phases: Vec<PhaseName>,
    /// Phases left out because already completed.
    pub pruned_phases: Vec<PhaseName>,
    pub current_phase: PhaseName,
    /// When the current phase times out.
    pub current_phase_deadline: Timestamp,
    pub received_at: Timestamp,
    pub started_at: Timestamp,
    /// Runs so far (the last one is the current phase).
    pub runs: Vec<PhaseRun>,
    /// Distinct essays that failed any phase so far.
    pub failed_essay_count: usize,
}

/// A request waiting to run (`queue[]`, `parked[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueuedRequestView {
    pub requested_pipeline: String,
    pub correlation_id: Uuid,
    pub request_id: Uuid,
    pub received_at: Timestamp,
    /// Parked requests: when the orchestrator stops waiting for the batch; otherwise `null`.
    pub gives_up_at: Option<Timestamp>,
}

/// The latest run of a phase (`phase_results.<phase>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PhaseResultView {
    pub status: RunStatus,
    pub succeeded_count: usize,
    pub failed_count: usize,
    pub failed_essay_ids: Vec<String>,
    pub pipeline_id: Uuid,
    pub at: Timestamp,
}

/// Where a batch stands (`status` of [`BatchListItem`], and the `status` filter of
/// `GET /v1/batches`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BatchActivity {
    /// A pipeline is running, or requests are queued to start.
    Active,
    /// Requests wait for the batch to become known (its readiness event).
    Waiting,
    /// Known, nothing running, no pipeline finished yet.
    Idle,
    /// Nothing running; the last pipeline ended `completed_successfully`.
    CompletedSuccessfully,
    /// Nothing running; the last pipeline ended `completed_with_failures`.
    CompletedWithFailures,
    /// Nothing running; the last pipeline ended `failed_critically` (or another non-success
    /// status).
    FailedCritically,
}

impl BatchActivity {
    /// Every value, in the order above.
    pub const ALL: [BatchActivity; 6] = [
        BatchActivity::Active,
        BatchActivity::Waiting,
        BatchActivity::Idle,
        BatchActivity::CompletedSuccessfully,
        BatchActivity::CompletedWithFailures,
        BatchActivity::FailedCritically,
    ];

    /// The wire value (`"active"`, `"completed_with_failures"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Waiting => "waiting",
            Self::Idle => "idle",
            Self::CompletedSuccessfully => "completed_successfully",
            Self::CompletedWithFailures => "completed_with_failures",
            Self::FailedCritically => "failed_critically",
        }
    }

    /// The value named `s` (its wire value), if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for BatchActivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One batch of `GET /v1/batches` (a summary of its [`BatchStatusView`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchListItem {
    pub batch_id: String,
    pub status: BatchActivity,
    /// When the orchestrator last changed the batch's state.
    pub updated_at: Timestamp,
    pub known: bool,
    pub essay_count: Option<usize>,
    /// The running pipeline's name, or `null`.
    pub active_pipeline: Option<String>,
    /// The running pipeline's current phase, or `null`.
    pub current_phase: Option<PhaseName>,
    /// Requests queued behind the running pipeline.
    pub queue_length: usize,
    /// Requests waiting for the batch to become known.
    pub parked: usize,
    /// The last finished pipeline's name, status and end, or `null`.
    pub last_pipeline: Option<String>,
    pub last_final_status: Option<BatchStatus>,
    pub last_finished_at: Option<Timestamp>,
}

/// 200 answer of `GET /v1/batches`: most recently changed first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchListPage {
    pub batches: Vec<BatchListItem>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Body of `POST /v1/batches/{batch_id}/retry-phase` (operators): run one phase again for
/// some essays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetryPhaseRequest {
    /// The phase to run again.
    pub phase_name: String,
    /// Why (recorded with the retry); must not be blank.
    pub reason: String,
    /// Essays to run again; when left out, those that failed the phase's latest run. Must not
    /// be empty when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub essay_ids: Option<Vec<String>>,
    /// Who asks (recorded with the retry); the orchestrator uses `operator` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
}

/// 202 answer of `POST /v1/batches/{batch_id}/retry-phase`: the retry is queued like any
/// request and ends with its own terminal event (correlation id `correlation_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetryPhaseAccepted {
    /// `accepted`.
    pub status: String,
    pub batch_id: String,
    pub phase_name: PhaseName,
    /// The retry's pipeline id: its terminal event carries it.
    pub correlation_id: Uuid,
    pub request_id: Uuid,
}

impl RetryPhaseAccepted {
    /// The answer for an accepted retry (`status` = `accepted`).
    pub fn new(
        batch_id: &str,
        phase_name: PhaseName,
        correlation_id: Uuid,
        request_id: Uuid,
    ) -> Self {
        RetryPhaseAccepted {
            status: "accepted".to_owned(),
            batch_id: batch_id.to_owned(),
            phase_name,
            correlation_id,
            request_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn retry_request_leaves_out_what_is_not_given() {
        let bare = RetryPhaseRequest {
            phase_name: "spellcheck".into(),
            reason: "fixed".into(),
            essay_ids: None,
            operator: None,
        };
        assert_eq!(
            serde_json::to_string(&bare).unwrap(),
            r#"{"phase_name":"spellcheck","reason":"fixed"}"#
        );
        let full = RetryPhaseRequest {
            essay_ids: Some(vec!["e1".into()]),
            operator: Some("ann".into()),
            ..bare.clone()
        };
        assert_eq!(
            serde_json::to_string(&full).unwrap(),
            r#"{"phase_name":"spellcheck","reason":"fixed","essay_ids":["e1"],"operator":"ann"}"#
        );
        // Null and absent read the same; an empty list stays an empty list (the orchestrator
        // refuses it).
        let read: RetryPhaseRequest = serde_json::from_value(
            json!({"phase_name": "spellcheck", "reason": "fixed", "essay_ids": null, "operator": null}),
        )
        .unwrap();
        assert_eq!(read, bare);
        let empty: RetryPhaseRequest = serde_json::from_value(
            json!({"essay_ids": [], "phase_name": "spellcheck", "reason": "fixed"}),
        )
        .unwrap();
        assert_eq!(empty.essay_ids, Some(vec![]));
    }

    #[test]
    fn retry_answer_shape() {
        let id = |n: u8| Uuid::from_bytes([n; 16]);
        let a = RetryPhaseAccepted::new("b1", PhaseName::CjAssessment, id(1), id(2));
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"status":"accepted","batch_id":"b1","phase_name":"cj_assessment","correlation_id":"01010101-0101-0101-0101-010101010101","request_id":"02020202-0202-0202-0202-020202020202"}"#
        );
        assert_eq!(
            serde_json::from_str::<RetryPhaseAccepted>(&serde_json::to_string(&a).unwrap())
                .unwrap(),
            a
        );
    }

    #[test]
    fn run_status_wire_values() {
        for (s, text, completed) in [
            (
                RunStatus::CompletedSuccessfully,
                "completed_successfully",
                true,
            ),
            (
                RunStatus::CompletedWithFailures,
                "completed_with_failures",
                true,
            ),
            (RunStatus::FailedCritically, "failed_critically", false),
            (RunStatus::TimedOut, "timed_out", false),
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(text));
            assert_eq!(s.to_string(), text);
            assert_eq!(s.completed(), completed);
        }
    }
}
