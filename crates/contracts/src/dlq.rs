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

/// Kafka header names a re-driven message carries (`POST /internal/v1/dlq/redrive` of the
/// conductor): which dead-letter record it came from, who re-drove it and when. A re-driven
/// message that fails again is dead-lettered with these headers, so each record names the one
/// before it. Values are UTF-8 strings.
pub mod redrive_headers {
    /// The DLQ topic of the record it was re-driven from.
    pub const DLQ_TOPIC: &str = "redrive.dlq.topic";
    /// That record's partition (decimal).
    pub const DLQ_PARTITION: &str = "redrive.dlq.partition";
    /// That record's offset (decimal).
    pub const DLQ_OFFSET: &str = "redrive.dlq.offset";
    /// The operator who re-drove it.
    pub const OPERATOR: &str = "redrive.operator";
    /// Why.
    pub const REASON: &str = "redrive.reason";
    /// When (wire timestamp format).
    pub const AT: &str = "redrive.at";
}

/// Where a dead-letter record's message goes back to when re-driven: its
/// [`headers::ORIGINAL_TOPIC`], else the DLQ topic's name less `.DLQ`. `None` for a topic that
/// is not a poison-message DLQ (the failed-essays DLQ holds records, not messages).
pub fn redrive_target(dlq_topic: &str, record_headers: &[(String, Vec<u8>)]) -> Option<String> {
    if dlq_topic == crate::topics::FAILED_ESSAYS_DLQ {
        return None;
    }
    let base = dlq_topic.strip_suffix(".DLQ").filter(|b| !b.is_empty())?;
    let named = record_headers
        .iter()
        .rev()
        .find(|(k, _)| k == headers::ORIGINAL_TOPIC)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .filter(|t| !t.is_empty());
    Some(named.unwrap_or(base).to_owned())
}

/// The headers of a re-driven message: the dead-letter record's headers without its `dlq.*`
/// and `redrive.*` ones (the message's own headers, e.g. `traceparent`, stay), then the
/// [`redrive_headers`] naming this record.
pub fn redrive_message_headers(
    record_headers: &[(String, Vec<u8>)],
    dlq_topic: &str,
    partition: i32,
    offset: i64,
    operator: &str,
    reason: &str,
    at: crate::timestamp::Timestamp,
) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = record_headers
        .iter()
        .filter(|(k, _)| !k.starts_with("dlq.") && !k.starts_with("redrive."))
        .cloned()
        .collect();
    for (k, v) in [
        (redrive_headers::DLQ_TOPIC, dlq_topic.to_owned()),
        (redrive_headers::DLQ_PARTITION, partition.to_string()),
        (redrive_headers::DLQ_OFFSET, offset.to_string()),
        (redrive_headers::OPERATOR, operator.to_owned()),
        (redrive_headers::REASON, reason.to_owned()),
        (redrive_headers::AT, at.to_wire_string()),
    ] {
        out.push((k.to_owned(), v.into_bytes()));
    }
    out
}

#[cfg(test)]
mod redrive_tests {
    use super::*;

    fn h(k: &str, v: &str) -> (String, Vec<u8>) {
        (k.to_owned(), v.as_bytes().to_vec())
    }

    #[test]
    fn a_record_goes_back_to_its_original_topic() {
        let hs = [h(headers::ORIGINAL_TOPIC, "huleedu.a.v1")];
        assert_eq!(
            redrive_target("huleedu.b.v1.DLQ", &hs).as_deref(),
            Some("huleedu.a.v1")
        );
        assert_eq!(
            redrive_target("huleedu.b.v1.DLQ", &[]).as_deref(),
            Some("huleedu.b.v1")
        );
        assert_eq!(redrive_target("huleedu.b.v1", &hs), None, "not a DLQ");
        assert_eq!(redrive_target(".DLQ", &[]), None);
        assert_eq!(redrive_target(crate::topics::FAILED_ESSAYS_DLQ, &hs), None);
    }

    #[test]
    fn a_redriven_message_keeps_its_own_headers_and_names_the_record() {
        let record = [
            h("traceparent", "00-abc-def-01"),
            h(headers::ORIGINAL_TOPIC, "t"),
            h(headers::ERROR_MESSAGE, "bad"),
            h(redrive_headers::DLQ_OFFSET, "3"),
        ];
        let at = crate::timestamp::Timestamp::parse("2026-12-02T03:00:00Z").unwrap();
        let out = redrive_message_headers(&record, "t.DLQ", 1, 7, "ann", "fixed", at);
        let text: Vec<(String, String)> = out
            .iter()
            .map(|(k, v)| (k.clone(), String::from_utf8(v.clone()).unwrap()))
            .collect();
        let names: Vec<&str> = text.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "traceparent",
                redrive_headers::DLQ_TOPIC,
                redrive_headers::DLQ_PARTITION,
                redrive_headers::DLQ_OFFSET,
                redrive_headers::OPERATOR,
                redrive_headers::REASON,
                redrive_headers::AT
            ]
        );
        assert_eq!(text[3].1, "7");
        assert_eq!(text[6].1, "2026-12-02T03:00:00Z");
    }
}
