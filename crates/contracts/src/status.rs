//! The platform's `BatchStatus` enum (used for `phase_status` and `final_status`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A batch status, written on the wire as its lowercase snake-case value. Every value of the
/// platform schema's enum is accepted; anything else is a validation error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    /// `awaiting_content_validation`
    AwaitingContentValidation,
    /// `content_ingestion_failed`
    ContentIngestionFailed,
    /// `awaiting_pipeline_configuration`
    AwaitingPipelineConfiguration,
    /// `ready_for_pipeline_execution`
    ReadyForPipelineExecution,
    /// `processing_pipelines`
    ProcessingPipelines,
    /// `awaiting_student_validation`
    AwaitingStudentValidation,
    /// `student_validation_completed`
    StudentValidationCompleted,
    /// `validation_timeout_processed`
    ValidationTimeoutProcessed,
    /// `completed_successfully`
    CompletedSuccessfully,
    /// `completed_with_failures`
    CompletedWithFailures,
    /// `failed_critically`
    FailedCritically,
    /// `cancelled`
    Cancelled,
}

impl BatchStatus {
    /// Every status, in the platform schema's order.
    pub const ALL: [BatchStatus; 12] = [
        BatchStatus::AwaitingContentValidation,
        BatchStatus::ContentIngestionFailed,
        BatchStatus::AwaitingPipelineConfiguration,
        BatchStatus::ReadyForPipelineExecution,
        BatchStatus::ProcessingPipelines,
        BatchStatus::AwaitingStudentValidation,
        BatchStatus::StudentValidationCompleted,
        BatchStatus::ValidationTimeoutProcessed,
        BatchStatus::CompletedSuccessfully,
        BatchStatus::CompletedWithFailures,
        BatchStatus::FailedCritically,
        BatchStatus::Cancelled,
    ];

    /// The wire value (`"completed_with_failures"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            BatchStatus::AwaitingContentValidation => "awaiting_content_validation",
            BatchStatus::ContentIngestionFailed => "content_ingestion_failed",
            BatchStatus::AwaitingPipelineConfiguration => "awaiting_pipeline_configuration",
            BatchStatus::ReadyForPipelineExecution => "ready_for_pipeline_execution",
            BatchStatus::ProcessingPipelines => "processing_pipelines",
            BatchStatus::AwaitingStudentValidation => "awaiting_student_validation",
            BatchStatus::StudentValidationCompleted => "student_validation_completed",
            BatchStatus::ValidationTimeoutProcessed => "validation_timeout_processed",
            BatchStatus::CompletedSuccessfully => "completed_successfully",
            BatchStatus::CompletedWithFailures => "completed_with_failures",
            BatchStatus::FailedCritically => "failed_critically",
            BatchStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for BatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned by `BatchStatus::from_str` for a value that is not a batch status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown batch status `{0}`")]
pub struct ParseBatchStatusError(pub String);

impl FromStr for BatchStatus {
    type Err = ParseBatchStatusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BatchStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| ParseBatchStatusError(s.to_owned()))
    }
}
