//! Dead-letter records of this project.
//!
//! * Failed essays: BCS publishes a [`FailedEssayDlqRecordV1`] (wrapped in an
//!   [`EventEnvelope`](crate::envelope::EventEnvelope) whose `event_type` is the DLQ topic) on
//!   [`FAILED_ESSAYS_DLQ`](crate::topics::FAILED_ESSAYS_DLQ) for each failed essay of a phase
//!   outcome.
//! * Poison messages: a consumer that cannot decode or handle a message republishes its original
//!   bytes and key, unchanged, on `<topic>.DLQ` ([`crate::topics::dlq_topic`]) with the
//!   [`headers`] below (a value too large for the DLQ topic is left out and
//!   [`headers::PAYLOAD_OMITTED`] says so).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::decode::Validate;
use crate::phase::PhaseName;
use crate::status::BatchStatus;
use crate::timestamp::Timestamp;

/// One essay that failed a phase, as recorded by BCS.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailedEssayDlqRecordV1 {
    /// The batch.
    pub batch_id: String,
    /// The failed essay.
    pub essay_id: String,
    /// The phase it failed in.
    pub phase_name: PhaseName,
    /// The phase outcome's status.
    pub phase_status: BatchStatus,
    /// Correlation id of the pipeline run.
    pub pipeline_correlation_id: Uuid,
    /// `event_id` of the phase outcome that reported the failure.
    pub source_event_id: Uuid,
    /// Topic of that outcome.
    pub source_topic: String,
    /// Partition of that outcome.
    pub source_partition: i32,
    /// Offset of that outcome.
    pub source_offset: i64,
    /// Why the essay is recorded (e.g. listed in `failed_essay_ids`).
    pub reason: String,
    /// When the record was made.
    pub failed_at: Timestamp,
}

impl Validate for FailedEssayDlqRecordV1 {}

/// Kafka header names of a poison-message DLQ record. Values are UTF-8 strings.
pub mod headers {
    /// The topic the message was consumed from.
    pub const ORIGINAL_TOPIC: &str = "dlq.original.topic";
    /// Its partition (decimal).
    pub const ORIGINAL_PARTITION: &str = "dlq.original.partition";
    /// Its offset (decimal).
    pub const ORIGINAL_OFFSET: &str = "dlq.original.offset";
    /// Its Kafka message timestamp, when it had one.
    pub const ORIGINAL_TIMESTAMP: &str = "dlq.original.timestamp";
    /// The consumer group that failed to process it.
    pub const CONSUMER_GROUP: &str = "dlq.consumer.group";
    /// The service that failed to process it.
    pub const SERVICE: &str = "dlq.service";
    /// `decode`, `validation` or `handler` (see [`ERROR_KIND_HANDLER`]).
    pub const ERROR_KIND: &str = "dlq.error.kind";
    /// Human-readable error message.
    pub const ERROR_MESSAGE: &str = "dlq.error.message";
    /// When it was dead-lettered (wire timestamp format).
    pub const FAILED_AT: &str = "dlq.failed_at";
    /// Present only when the original value did not fit the DLQ topic and was left out: the
    /// original value's size in bytes (decimal). The message stays readable at its original
    /// topic, partition and offset for as long as that topic retains it.
    pub const PAYLOAD_OMITTED: &str = "dlq.payload.omitted";

    /// `dlq.error.kind` for a message that was not UTF-8/JSON
    /// (= [`DecodeErrorKind::Decode`](crate::decode::DecodeErrorKind::Decode)`.as_str()`).
    pub const ERROR_KIND_DECODE: &str = "decode";
    /// `dlq.error.kind` for valid JSON of the wrong shape.
    pub const ERROR_KIND_VALIDATION: &str = "validation";
    /// `dlq.error.kind` for a message the handler rejected permanently.
    pub const ERROR_KIND_HANDLER: &str = "handler";
}
