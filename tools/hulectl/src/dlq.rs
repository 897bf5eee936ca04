//! `hulectl dlq list`: failed-essay records and poison records, from records read off the
//! broker. Selecting, filtering and rendering are pure.

use huleedu_contracts::{topics, FailedEssayDlqRecordV1};
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::DlqKind;
use crate::event::{decode, is_poison_topic, Body, PoisonRecord, Record};
use crate::render::{short_id, when};
use crate::style::Style;
use crate::table::{Cell, Table};

/// A failed-essay DLQ message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrokenRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub error: String,
}

/// The dead-letter records selected for listing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    pub failed_essays: Vec<FailedEssayDlqRecordV1>,
    pub broken: Vec<BrokenRecord>,
    pub poison: Vec<PoisonRecord>,
}

impl Listing {
    /// Sorts `records` (read from the failed-essay DLQ and the poison topics) into a listing,
    /// keeping those of `batch` (message key, else the record's batch id) when given.
    pub fn from_records(records: &[Record], batch: Option<&str>, kind: DlqKind) -> Self {
        let want_essays = matches!(kind, DlqKind::Essays | DlqKind::All);
        let want_poison = matches!(kind, DlqKind::Poison | DlqKind::All);
        let mut listing = Listing::default();
        let mut ids = std::collections::HashSet::new();
        for r in records {
            let is_essays = r.topic == topics::FAILED_ESSAYS_DLQ;
            if !(is_essays && want_essays || is_poison_topic(&r.topic) && want_poison) {
                continue;
            }
            let e = decode(r);
            if batch.is_some_and(|b| !e.is_for_batch(b)) {
                continue;
            }
            // A re-sent record (same event_id) is the same record.
            if e.event_id.is_some_and(|id| !ids.insert(id)) {
                continue;
            }
            match e.body {
                Body::FailedEssay(f) => listing.failed_essays.push(f),
                Body::Poison(p) => listing.poison.push(p),
                Body::Undecodable(err) => listing.broken.push(BrokenRecord {
                    partition: r.partition,
                    offset: r.offset,
                    key: r.key.clone(),
                    error: err.to_string(),
                }),
                _ => {}
            }
        }
        listing
            .failed_essays
            .sort_by(|a, b| (a.failed_at, &a.essay_id).cmp(&(b.failed_at, &b.essay_id)));
        listing.poison.sort_by(|a, b| {
            (&a.failed_at, &a.dlq_topic, a.dlq_partition, a.dlq_offset).cmp(&(
                &b.failed_at,
                &b.dlq_topic,
                b.dlq_partition,
                b.dlq_offset,
            ))
        });
        listing
    }

    /// `{"failed_essays": [...], "undecodable_failed_essay_records": [...], "poison": [...]}`.
    pub fn to_json(&self, kind: DlqKind) -> Value {
        let mut v = json!({});
        if matches!(kind, DlqKind::Essays | DlqKind::All) {
            v["failed_essays"] = json!(self.failed_essays);
            v["undecodable_failed_essay_records"] = json!(self.broken);
        }
        if matches!(kind, DlqKind::Poison | DlqKind::All) {
            v["poison"] = json!(self.poison);
        }
        v
    }
}

/// The failed-essay records as a table: time, batch, essay, phase, status, reason, pipeline
/// correlation id. `compact` (one batch, for the demo report) leaves out the batch and
/// shortens the pipeline id.
pub fn failed_essays_table(
    records: &[FailedEssayDlqRecordV1],
    indent: usize,
    compact: bool,
) -> Table {
    let mut header = vec![
        "failed at (UTC)",
        "batch",
        "essay",
        "phase",
        "status",
        "reason",
    ];
    header.push(if compact {
        "pipeline"
    } else {
        "pipeline correlation id"
    });
    if compact {
        header.remove(1);
    }
    let mut t = Table::new(indent).header(header);
    for r in records {
        let status = r.phase_status.to_string();
        let mut row = vec![
            Cell::dim(when(&r.failed_at.to_string())),
            Cell::new(r.batch_id.clone()),
            Cell::new(r.essay_id.clone()),
            Cell::new(r.phase_name.to_string()),
            Cell::status(&status),
            Cell::new(r.reason.clone()),
        ];
        if compact {
            row.remove(1);
            row.push(Cell::new(short_id(&r.pipeline_correlation_id)));
        } else {
            row.push(Cell::new(r.pipeline_correlation_id.to_string()));
        }
        t.row(row);
    }
    t
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The listing as text.
pub fn render_listing(l: &Listing, batch: Option<&str>, kind: DlqKind, style: &Style) -> String {
    let scope = batch.map(|b| format!(" of batch {b}")).unwrap_or_default();
    let mut out = Vec::new();
    if matches!(kind, DlqKind::Essays | DlqKind::All) {
        out.push(style.bold(&format!(
            "Failed essays ({}): {}{scope}",
            topics::FAILED_ESSAYS_DLQ,
            plural(l.failed_essays.len(), "record", "records")
        )));
        if !l.failed_essays.is_empty() {
            out.extend(failed_essays_table(&l.failed_essays, 2, false).lines(style));
        }
        for b in &l.broken {
            out.push(style.bad(&format!(
                "  undecodable record [{}@{}] key {}: {}",
                b.partition,
                b.offset,
                b.key.as_deref().unwrap_or("(none)"),
                b.error
            )));
        }
    }
    if matches!(kind, DlqKind::Poison | DlqKind::All) {
        if !out.is_empty() {
            out.push(String::new());
        }
        out.push(style.bold(&format!(
            "Poison messages (<topic>.DLQ): {}{scope}",
            plural(l.poison.len(), "record", "records")
        )));
        for p in &l.poison {
            out.extend(poison_block(p, style));
        }
    }
    out.join("\n")
}

/// One poison record: where it sits, where it came from, why, and the start of its payload.
pub fn poison_block(p: &PoisonRecord, style: &Style) -> Vec<String> {
    let q = |o: &Option<String>| o.clone().unwrap_or_else(|| "?".to_owned());
    let mut lines = vec![format!(
        "  {} [{}@{}] key {}, dead-lettered {}",
        p.dlq_topic,
        p.dlq_partition,
        p.dlq_offset,
        p.key.as_deref().unwrap_or("(none)"),
        p.failed_at
            .as_deref()
            .map(when)
            .unwrap_or_else(|| "?".into())
    )];
    let mut source = format!(
        "{} [{}@{}]",
        q(&p.original_topic),
        q(&p.original_partition),
        q(&p.original_offset)
    );
    let by: Vec<String> = [("group", &p.consumer_group), ("service", &p.service)]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v}")))
        .collect();
    if !by.is_empty() {
        source.push_str(&format!(" ({})", by.join(", ")));
    }
    lines.push(format!("    {:<9} {source}", "original"));
    lines.push(format!(
        "    {:<9} {}",
        "error",
        style.bad(&format!(
            "{}: {}",
            q(&p.error_kind),
            p.error_message.as_deref().unwrap_or("")
        ))
    ));
    lines.push(format!(
        "    {:<9} {} ({} bytes)",
        "payload", p.payload_preview, p.payload_bytes
    ));
    if let Some(from) = &p.redriven_from {
        lines.push(format!("    {:<9} re-driven from {from}", "chain"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures as fx;
    use huleedu_contracts::dlq::headers;

    fn poison(key: &str) -> Record {
        let mut r = Record::new(
            "huleedu.els.batch.phase.outcome.v1.DLQ",
            Some(key),
            &b"not json at all"[..],
        );
        r.offset = 5;
        r.headers = vec![
            (
                headers::ORIGINAL_TOPIC.into(),
                "huleedu.els.batch.phase.outcome.v1".into(),
            ),
            (headers::ORIGINAL_PARTITION.into(), "2".into()),
            (headers::ORIGINAL_OFFSET.into(), "41".into()),
            (headers::CONSUMER_GROUP.into(), "bcs-event-consumer".into()),
            (headers::SERVICE.into(), "batch_conductor_service".into()),
            (headers::ERROR_KIND.into(), "decode".into()),
            (
                headers::ERROR_MESSAGE.into(),
                "message is not valid JSON".into(),
            ),
            (
                headers::FAILED_AT.into(),
                "2026-11-29T12:00:00.000000Z".into(),
            ),
        ];
        r
    }

    fn records() -> Vec<Record> {
        vec![
            Record::new(
                topics::FAILED_ESSAYS_DLQ,
                Some("b1"),
                fx::failed_essay("b1", "b1-e11", fx::PIPELINE),
            ),
            Record::new(
                topics::FAILED_ESSAYS_DLQ,
                Some("b1"),
                fx::failed_essay("b1", "b1-e04", fx::PIPELINE),
            ),
            // Re-sent (same event_id): listed once.
            Record::new(
                topics::FAILED_ESSAYS_DLQ,
                Some("b1"),
                fx::failed_essay("b1", "b1-e04", fx::PIPELINE),
            ),
            Record::new(
                topics::FAILED_ESSAYS_DLQ,
                Some("b2"),
                fx::failed_essay("b2", "b2-e01", fx::PIPELINE),
            ),
            Record::new(topics::FAILED_ESSAYS_DLQ, Some("b1"), &b"garbage"[..]),
            poison("b1"),
            poison("b2"),
            Record::new(
                topics::BATCH_PIPELINE_COMPLETED,
                Some("b1"),
                &b"ignored"[..],
            ),
        ]
    }

    #[test]
    fn filters_by_batch_and_kind() {
        let l = Listing::from_records(&records(), Some("b1"), DlqKind::All);
        let essays: Vec<&str> = l
            .failed_essays
            .iter()
            .map(|r| r.essay_id.as_str())
            .collect();
        assert_eq!(essays, ["b1-e04", "b1-e11"], "sorted by time, then essay");
        assert_eq!(l.broken.len(), 1);
        assert_eq!(l.poison.len(), 1);
        let l = Listing::from_records(&records(), None, DlqKind::Poison);
        assert!(l.failed_essays.is_empty() && l.broken.is_empty());
        assert_eq!(l.poison.len(), 2);
        let l = Listing::from_records(&records(), None, DlqKind::Essays);
        assert_eq!((l.failed_essays.len(), l.poison.len()), (3, 0));
    }

    #[test]
    fn renders_both_kinds() {
        let l = Listing::from_records(&records(), Some("b1"), DlqKind::All);
        let text = render_listing(&l, Some("b1"), DlqKind::All, &Style::plain());
        let expected = "\
Failed essays (huleedu.pipelines.failed_essays.DLQ): 2 records of batch b1
  failed at (UTC)      batch  essay   phase       status                   reason                      pipeline correlation id
  2026-11-29 12:00:02  b1     b1-e04  spellcheck  completed_with_failures  listed in failed_essay_ids  33333333-3333-4333-8333-333333333333
  2026-11-29 12:00:02  b1     b1-e11  spellcheck  completed_with_failures  listed in failed_essay_ids  33333333-3333-4333-8333-333333333333
  undecodable record [0@0] key b1: decode error: message is not valid JSON: expected value at line 1 column 1

Poison messages (<topic>.DLQ): 1 record of batch b1
  huleedu.els.batch.phase.outcome.v1.DLQ [0@5] key b1, dead-lettered 2026-11-29 12:00:00
    original  huleedu.els.batch.phase.outcome.v1 [2@41] (group bcs-event-consumer, service batch_conductor_service)
    error     decode: message is not valid JSON
    payload   not json at all (15 bytes)";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn empty_listing_says_so() {
        let l = Listing::from_records(&[], None, DlqKind::All);
        let text = render_listing(&l, None, DlqKind::All, &Style::plain());
        assert!(
            text.contains("huleedu.pipelines.failed_essays.DLQ): 0 records"),
            "{text}"
        );
        assert!(
            text.contains("Poison messages (<topic>.DLQ): 0 records"),
            "{text}"
        );
    }

    #[test]
    fn json_shape() {
        let l = Listing::from_records(&records(), Some("b1"), DlqKind::Poison);
        let v = l.to_json(DlqKind::Poison);
        assert!(v.get("failed_essays").is_none());
        assert_eq!(v["poison"][0]["original_offset"], "41");
        assert_eq!(v["poison"][0]["error_kind"], "decode");
        assert_eq!(v["poison"][0]["payload_preview"], "not json at all");
    }
}
