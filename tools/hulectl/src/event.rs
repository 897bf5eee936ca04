//! Kafka records as read from the broker, and what they mean: the topics the system uses and
//! the decoding of each message into an [`Event`]. Pure: no I/O.

use std::collections::HashSet;

use chrono::{DateTime, TimeZone, Utc};
use huleedu_contracts::dlq::{headers, redrive_headers};
use huleedu_contracts::payloads::{
    BatchContentProvisioningCompletedV1, BatchEssaysReady, BatchPipelineCompletedV1,
    BatchServiceAIFeedbackInitiateCommandDataV1, BatchServiceCJAssessmentInitiateCommandDataV1,
    BatchServiceNLPInitiateCommandDataV2, BatchServiceSpellcheckInitiateCommandDataV1,
    ClientBatchPipelineRequestV1, ELSBatchPhaseOutcomeV1, PhaseSkippedV1,
};
use huleedu_contracts::{
    decode_envelope, topics, DecodeError, EventEnvelope, FailedEssayDlqRecordV1, PhaseName,
    Validate,
};
use huleedu_kafka::TextMessage;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

/// One Kafka message as read: key (the batch id for every message of the system) and header
/// values as text, the broker/producer timestamp in milliseconds since the epoch.
pub type Record = TextMessage;

/// Whether `topic` is a poison-message dead-letter topic (`<topic>.DLQ`, not the failed-essay
/// DLQ).
pub fn is_poison_topic(topic: &str) -> bool {
    topic.ends_with(topics::DLQ_SUFFIX) && topic != topics::FAILED_ESSAYS_DLQ
}

/// What a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    Request,
    Ready,
    Provisioned,
    Command(PhaseName),
    Outcome,
    Completed,
    Skipped,
    FailedEssays,
    Poison,
    Other,
}

/// The kind of `topic`.
pub fn topic_kind(topic: &str) -> TopicKind {
    if let Some(phase) = topics::phase_of_command_topic(topic) {
        return TopicKind::Command(phase);
    }
    match topic {
        topics::CLIENT_BATCH_PIPELINE_REQUEST => TopicKind::Request,
        topics::BATCH_ESSAYS_READY => TopicKind::Ready,
        topics::BATCH_CONTENT_PROVISIONING_COMPLETED => TopicKind::Provisioned,
        topics::ELS_BATCH_PHASE_OUTCOME => TopicKind::Outcome,
        topics::BATCH_PIPELINE_COMPLETED => TopicKind::Completed,
        topics::BATCH_PHASE_SKIPPED => TopicKind::Skipped,
        topics::FAILED_ESSAYS_DLQ => TopicKind::FailedEssays,
        t if is_poison_topic(t) => TopicKind::Poison,
        _ => TopicKind::Other,
    }
}

/// A short, readable name of a topic for event lines (`request`, `cmd.nlp`, `outcome`, ...).
pub fn short_topic(topic: &str) -> String {
    match topic_kind(topic) {
        TopicKind::Request => "request".into(),
        TopicKind::Ready => "ready".into(),
        TopicKind::Provisioned => "provisioned".into(),
        TopicKind::Command(p) => format!("cmd.{p}"),
        TopicKind::Outcome => "outcome".into(),
        TopicKind::Completed => "completed".into(),
        TopicKind::Skipped => "skipped".into(),
        TopicKind::FailedEssays => "failed.DLQ".into(),
        TopicKind::Poison => {
            let original = topic.strip_suffix(topics::DLQ_SUFFIX).unwrap_or(topic);
            format!("{}.DLQ", short_topic(original))
        }
        TopicKind::Other => topic.to_owned(),
    }
}

/// A poison record: the original message's bytes plus the `dlq.*` headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoisonRecord {
    pub dlq_topic: String,
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    /// The original key (the batch id).
    pub key: Option<String>,
    pub original_topic: Option<String>,
    pub original_partition: Option<String>,
    pub original_offset: Option<String>,
    pub consumer_group: Option<String>,
    pub service: Option<String>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub failed_at: Option<String>,
    /// The first 80 characters of the payload (control characters escaped).
    pub payload_preview: String,
    pub payload_bytes: usize,
    /// When the message was itself a re-drive: the record it was re-driven from, by whom
    /// (`<dlq topic> [<partition>@<offset>] by <operator> at <time>`, from its `redrive.*`
    /// headers).
    pub redriven_from: Option<String>,
}

/// How many payload characters a poison preview shows.
pub const PREVIEW_CHARS: usize = 80;

/// The first `max` characters of `payload` as text, control characters escaped, `…` when cut.
pub fn preview(payload: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(payload);
    let mut out = String::new();
    let mut chars = text.chars();
    for c in chars.by_ref().take(max) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

impl PoisonRecord {
    /// Reads the headers and a preview of the payload.
    pub fn from_record(r: &Record) -> Self {
        let h = |name: &str| r.header(name).map(str::to_owned);
        PoisonRecord {
            dlq_topic: r.topic.clone(),
            dlq_partition: r.partition,
            dlq_offset: r.offset,
            key: r.key.clone(),
            original_topic: h(headers::ORIGINAL_TOPIC),
            original_partition: h(headers::ORIGINAL_PARTITION),
            original_offset: h(headers::ORIGINAL_OFFSET),
            consumer_group: h(headers::CONSUMER_GROUP),
            service: h(headers::SERVICE),
            error_kind: h(headers::ERROR_KIND),
            error_message: h(headers::ERROR_MESSAGE),
            failed_at: h(headers::FAILED_AT),
            payload_preview: preview(&r.payload, PREVIEW_CHARS),
            payload_bytes: r.payload.len(),
            redriven_from: h(redrive_headers::DLQ_TOPIC).map(|t| {
                let q = |n: &str| h(n).unwrap_or_else(|| "?".to_owned());
                format!(
                    "{t} [{}@{}] by {} at {}",
                    q(redrive_headers::DLQ_PARTITION),
                    q(redrive_headers::DLQ_OFFSET),
                    q(redrive_headers::OPERATOR),
                    q(redrive_headers::AT)
                )
            }),
        }
    }
}

/// What a message says.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Request(ClientBatchPipelineRequestV1),
    Ready(BatchEssaysReady),
    Provisioned(BatchContentProvisioningCompletedV1),
    /// An initiate command: the phase and how many essays it carries.
    Command {
        phase: PhaseName,
        batch_id: Option<String>,
        essays: usize,
    },
    Outcome(ELSBatchPhaseOutcomeV1),
    Completed(BatchPipelineCompletedV1),
    Skipped(PhaseSkippedV1),
    FailedEssay(FailedEssayDlqRecordV1),
    Poison(PoisonRecord),
    /// A message on a system topic that does not decode.
    Undecodable(DecodeError),
    /// A topic this tool does not know.
    Other,
}

/// A decoded message with its envelope's common fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    /// The envelope's `event_timestamp`, else the Kafka timestamp.
    pub time: Option<DateTime<Utc>>,
    pub event_id: Option<Uuid>,
    /// The envelope's `correlation_id`.
    pub correlation_id: Option<Uuid>,
    /// The envelope's `metadata`.
    pub metadata: Option<Map<String, Value>>,
    pub body: Body,
}

struct Header {
    time: Option<DateTime<Utc>>,
    event_id: Option<Uuid>,
    correlation_id: Option<Uuid>,
    metadata: Option<Map<String, Value>>,
}

fn envelope<T: DeserializeOwned + Validate>(
    payload: &[u8],
    wrap: impl FnOnce(T) -> Body,
) -> (Option<Header>, Body) {
    match decode_envelope::<T>(payload) {
        Ok(EventEnvelope {
            event_id,
            event_timestamp,
            correlation_id,
            metadata,
            data,
            ..
        }) => (
            Some(Header {
                time: Some(event_timestamp.into()),
                event_id: Some(event_id),
                correlation_id: Some(correlation_id),
                metadata,
            }),
            wrap(data),
        ),
        Err(e) => (None, Body::Undecodable(e)),
    }
}

fn command<T: DeserializeOwned + Validate>(
    payload: &[u8],
    phase: PhaseName,
    parts: impl FnOnce(&T) -> (Option<String>, usize),
) -> (Option<Header>, Body) {
    envelope::<T>(payload, |d| {
        let (batch_id, essays) = parts(&d);
        Body::Command {
            phase,
            batch_id,
            essays,
        }
    })
}

/// Decodes a record by its topic. Never fails: what does not decode is [`Body::Undecodable`].
pub fn decode(r: &Record) -> Event {
    let p = &r.payload;
    let (header, body) = match topic_kind(&r.topic) {
        TopicKind::Request => envelope(p, Body::Request),
        TopicKind::Ready => envelope(p, Body::Ready),
        TopicKind::Provisioned => envelope(p, Body::Provisioned),
        TopicKind::Command(phase @ PhaseName::Spellcheck) => {
            command::<BatchServiceSpellcheckInitiateCommandDataV1>(p, phase, |d| {
                (d.entity_id.clone(), d.essays_to_process.len())
            })
        }
        TopicKind::Command(phase @ PhaseName::Nlp) => {
            command::<BatchServiceNLPInitiateCommandDataV2>(p, phase, |d| {
                (d.entity_id.clone(), d.essays_to_process.len())
            })
        }
        TopicKind::Command(phase @ PhaseName::CjAssessment) => {
            command::<BatchServiceCJAssessmentInitiateCommandDataV1>(p, phase, |d| {
                (d.entity_id.clone(), d.essays_to_process.len())
            })
        }
        TopicKind::Command(phase) => {
            command::<BatchServiceAIFeedbackInitiateCommandDataV1>(p, phase, |d| {
                (d.entity_id.clone(), d.essays_to_process.len())
            })
        }
        TopicKind::Outcome => envelope(p, Body::Outcome),
        TopicKind::Completed => envelope(p, Body::Completed),
        TopicKind::Skipped => envelope(p, Body::Skipped),
        TopicKind::FailedEssays => envelope(p, Body::FailedEssay),
        TopicKind::Poison => (None, Body::Poison(PoisonRecord::from_record(r))),
        TopicKind::Other => (None, Body::Other),
    };
    let kafka_time = r
        .timestamp_ms
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single());
    let poison_time = match &body {
        Body::Poison(p) => p
            .failed_at
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc)),
        _ => None,
    };
    let (time, event_id, correlation_id, metadata) = match header {
        Some(h) => (h.time, h.event_id, h.correlation_id, h.metadata),
        None => (poison_time.or(kafka_time), None, None, None),
    };
    Event {
        topic: r.topic.clone(),
        partition: r.partition,
        offset: r.offset,
        key: r.key.clone(),
        time,
        event_id,
        correlation_id,
        metadata,
        body,
    }
}

impl Event {
    /// The batch the message is about: its key, else the batch id in its payload.
    pub fn batch_id(&self) -> Option<&str> {
        if let Some(k) = self.key.as_deref() {
            return Some(k);
        }
        match &self.body {
            Body::Request(d) => Some(&d.batch_id),
            Body::Ready(d) => Some(&d.batch_id),
            Body::Provisioned(d) => Some(&d.batch_id),
            Body::Command { batch_id, .. } => batch_id.as_deref(),
            Body::Outcome(d) => Some(&d.batch_id),
            Body::Completed(d) => Some(&d.batch_id),
            Body::Skipped(d) => Some(&d.batch_id),
            Body::FailedEssay(d) => Some(&d.batch_id),
            Body::Poison(_) | Body::Undecodable(_) | Body::Other => None,
        }
    }

    /// Whether the message is about `batch`.
    pub fn is_for_batch(&self, batch: &str) -> bool {
        self.batch_id() == Some(batch)
    }

    /// The pipeline run (correlation id) the message belongs to; for a failed-essay record,
    /// its `pipeline_correlation_id`.
    pub fn pipeline_correlation(&self) -> Option<Uuid> {
        match &self.body {
            Body::FailedEssay(d) => Some(d.pipeline_correlation_id),
            Body::Request(d) => self.correlation_id.or(Some(d.client_correlation_id)),
            _ => self.correlation_id,
        }
    }

    /// The terminal event, if this is one.
    pub fn terminal(&self) -> Option<&BatchPipelineCompletedV1> {
        match &self.body {
            Body::Completed(c) => Some(c),
            _ => None,
        }
    }

    /// Whether the envelope metadata marks an essay-level retry.
    pub fn is_retry(&self) -> bool {
        self.metadata
            .as_ref()
            .and_then(|m| m.get("retry"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// What has been seen of one pipeline run (one correlation id), to tell when its picture is
/// complete: events on different topics arrive in any order, so the terminal event can come
/// before the last phase outcome or the failed-essay records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    commanded: Vec<PhaseName>,
    outcomes: Vec<PhaseName>,
    failed_reported: usize,
    dlq_records: HashSet<Uuid>,
    terminal: bool,
}

impl Trace {
    /// Takes note of an event of the pipeline.
    pub fn observe(&mut self, e: &Event) {
        match &e.body {
            Body::Command { phase, .. } => self.commanded.push(*phase),
            Body::Outcome(o) => {
                self.outcomes.push(o.phase_name);
                self.failed_reported += o.failed_essay_ids.len();
            }
            Body::FailedEssay(_) => {
                if let Some(id) = e.event_id {
                    self.dlq_records.insert(id);
                }
            }
            Body::Completed(_) => self.terminal = true,
            _ => {}
        }
    }

    /// The terminal event arrived, every dispatched phase's outcome arrived, and a
    /// failed-essay record for every essay reported failed.
    pub fn complete(&self) -> bool {
        self.terminal
            && self.commanded.iter().all(|p| self.outcomes.contains(p))
            && self.dlq_records.len() >= self.failed_reported
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{env, CORR};
    use serde_json::json;

    #[test]
    fn short_names() {
        assert_eq!(
            short_topic(topics::SPELLCHECK_INITIATE_COMMAND),
            "cmd.spellcheck"
        );
        assert_eq!(short_topic(topics::BATCH_PIPELINE_COMPLETED), "completed");
        assert_eq!(
            short_topic(&topics::dlq_topic(topics::ELS_BATCH_PHASE_OUTCOME)),
            "outcome.DLQ"
        );
        assert_eq!(short_topic(topics::FAILED_ESSAYS_DLQ), "failed.DLQ");
        assert_eq!(short_topic("x.y"), "x.y");
        assert!(is_poison_topic("huleedu.els.batch.phase.outcome.v1.DLQ"));
        assert!(!is_poison_topic(topics::FAILED_ESSAYS_DLQ));
    }

    #[test]
    fn decodes_a_command_and_counts_essays() {
        let data = json!({
            "event_name": "batch.spellcheck.initiate.command", "entity_id": "b1",
            "entity_type": "batch", "parent_id": null, "timestamp": "2026-11-29T12:00:00Z",
            "essays_to_process": [
                {"essay_id": "e1", "text_storage_id": "t1", "spellcheck_metrics": null},
                {"essay_id": "e2", "text_storage_id": "t2", "spellcheck_metrics": null}],
            "language": "en"});
        let r = Record::new(
            topics::SPELLCHECK_INITIATE_COMMAND,
            None,
            env(topics::SPELLCHECK_INITIATE_COMMAND, CORR, data),
        );
        let e = decode(&r);
        assert_eq!(
            e.body,
            Body::Command {
                phase: PhaseName::Spellcheck,
                batch_id: Some("b1".into()),
                essays: 2
            }
        );
        assert_eq!(
            e.batch_id(),
            Some("b1"),
            "falls back to entity_id without a key"
        );
        assert_eq!(e.correlation_id, Some(CORR.parse().unwrap()));
        assert_eq!(
            e.time.unwrap().to_rfc3339(),
            "2026-11-29T12:00:01.250+00:00"
        );
    }

    #[test]
    fn undecodable_message_is_kept() {
        let r = Record::new(
            topics::ELS_BATCH_PHASE_OUTCOME,
            Some("b1"),
            &b"not json"[..],
        );
        let e = decode(&r);
        assert!(matches!(e.body, Body::Undecodable(_)));
        assert!(e.is_for_batch("b1"));
        assert!(!e.is_for_batch("b2"));
    }

    #[test]
    fn poison_record_reads_headers() {
        let mut r = Record::new(
            "huleedu.els.batch.phase.outcome.v1.DLQ",
            Some("b1"),
            "{\"broken\":\n".repeat(10),
        );
        r.headers = vec![
            (
                headers::ORIGINAL_TOPIC.into(),
                "huleedu.els.batch.phase.outcome.v1".into(),
            ),
            (headers::ORIGINAL_PARTITION.into(), "2".into()),
            (headers::ORIGINAL_OFFSET.into(), "41".into()),
            (headers::ERROR_KIND.into(), "decode".into()),
            (
                headers::ERROR_MESSAGE.into(),
                "message is not valid JSON".into(),
            ),
            (headers::FAILED_AT.into(), "2026-11-29T12:00:00Z".into()),
        ];
        let e = decode(&r);
        let Body::Poison(p) = &e.body else {
            panic!("not poison")
        };
        assert_eq!(p.original_offset.as_deref(), Some("41"));
        assert_eq!(p.error_kind.as_deref(), Some("decode"));
        assert!(p.payload_preview.starts_with("{\"broken\":\\n{"));
        assert!(p.payload_preview.ends_with('…'));
        assert_eq!(p.payload_bytes, 110);
        assert_eq!(e.time.unwrap().to_rfc3339(), "2026-11-29T12:00:00+00:00");
        assert!(e.is_for_batch("b1"));
    }

    #[test]
    fn preview_counts_characters() {
        assert_eq!(preview("åäö".as_bytes(), 2), "åä…");
        assert_eq!(preview(b"ab", 2), "ab");
        assert_eq!(preview(b"a\tb", 80), "a\\tb");
    }

    #[test]
    fn failed_essay_record_belongs_to_its_pipeline() {
        let pipeline = "33333333-3333-4333-8333-333333333333";
        let data = json!({
            "batch_id": "b1", "essay_id": "b1-e04", "phase_name": "spellcheck",
            "phase_status": "completed_with_failures", "pipeline_correlation_id": pipeline,
            "source_event_id": "44444444-4444-4444-8444-444444444444",
            "source_topic": topics::ELS_BATCH_PHASE_OUTCOME, "source_partition": 1,
            "source_offset": 7, "reason": "listed in failed_essay_ids",
            "failed_at": "2026-11-29T12:00:02Z"});
        let r = Record::new(
            topics::FAILED_ESSAYS_DLQ,
            Some("b1"),
            env(topics::FAILED_ESSAYS_DLQ, CORR, data),
        );
        let e = decode(&r);
        assert!(matches!(e.body, Body::FailedEssay(_)));
        assert_eq!(e.pipeline_correlation(), Some(pipeline.parse().unwrap()));
    }

    #[test]
    fn a_trace_is_complete_with_every_outcome_and_dlq_record() {
        use crate::fixtures as fx;
        let ev = |topic: &str, p: Vec<u8>| decode(&Record::new(topic, Some("b1"), p));
        let mut t = Trace::default();
        t.observe(&ev(
            topics::SPELLCHECK_INITIATE_COMMAND,
            fx::command("b1", 3),
        ));
        t.observe(&ev(
            topics::BATCH_PIPELINE_COMPLETED,
            fx::completed(
                "b1",
                "spellcheck",
                "completed_with_failures",
                &["spellcheck"],
                &[],
                2,
                1,
                1.0,
                None,
            ),
        ));
        assert!(!t.complete(), "the outcome is missing");
        t.observe(&ev(
            topics::ELS_BATCH_PHASE_OUTCOME,
            fx::outcome("b1", "spellcheck", 2, &["b1-e03"]),
        ));
        assert!(!t.complete(), "the failed-essay record is missing");
        let dlq = ev(
            topics::FAILED_ESSAYS_DLQ,
            fx::failed_essay("b1", "b1-e03", fx::PIPELINE),
        );
        t.observe(&dlq);
        assert!(t.complete());
        let mut again = t.clone();
        again.observe(&dlq);
        assert_eq!(again, t, "a re-sent record counts once");
    }
}
