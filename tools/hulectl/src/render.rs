//! Readable text for people: one line per event, the summary of a terminal event, the answers
//! of the operator endpoints. Pure functions; times are shown in UTC.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use huleedu_contracts::http::bos::RetryPhaseAccepted;
use huleedu_contracts::payloads::BatchPipelineCompletedV1;
use serde_json::Value;
use uuid::Uuid;

use crate::event::{short_topic, Body, Event};
use crate::style::Style;

/// How many failed essay ids an outcome line names before it abbreviates.
const NAMED_FAILURES: usize = 5;

/// `12:00:01.250` (UTC), or dashes when unknown.
pub fn clock(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| "--:--:--.---".to_owned())
}

/// A wire timestamp (`2026-11-29T12:00:01.250000Z`) as `2026-11-29 12:00:01`; anything that does
/// not parse is shown as given.
pub fn when(ts: &str) -> String {
    DateTime::parse_from_rfc3339(ts)
        .map(|t| {
            t.with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| ts.to_owned())
}

/// Seconds between two wire timestamps, when both parse.
pub fn seconds_between(start: &str, end: &str) -> Option<f64> {
    let a = DateTime::parse_from_rfc3339(start).ok()?;
    let b = DateTime::parse_from_rfc3339(end).ok()?;
    Some((b - a).num_microseconds()? as f64 / 1e6)
}

/// `0.42 s`, `2.3 s`, `4 m 05 s`.
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "?".to_owned();
    }
    if secs < 1.0 {
        format!("{secs:.2} s")
    } else if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        let total = secs.round() as u64;
        format!("{} m {:02} s", total / 60, total % 60)
    }
}

/// The first 8 characters of a uuid (enough to tell pipelines apart on screen).
pub fn short_id(id: &Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}

/// `a, b, c` or `—` for none.
pub fn list_or_dash<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        "—".to_owned()
    } else {
        items
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `e1, e2, e3` or `e1, e2, e3, e4, e5 and 7 more`.
fn named(ids: &[String]) -> String {
    if ids.len() <= NAMED_FAILURES {
        ids.join(", ")
    } else {
        format!(
            "{} and {} more",
            ids[..NAMED_FAILURES].join(", "),
            ids.len() - NAMED_FAILURES
        )
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `pipeline nlp completed_with_failures: 17 ok / 3 failed in 2.3 s (ran spellcheck, nlp;
/// skipped —)` plus the failure reason when there is one.
pub fn completed_line(c: &BatchPipelineCompletedV1, retry: bool, style: &Style) -> String {
    let pipeline = c.requested_pipeline.as_deref().unwrap_or("?");
    let status = c.final_status.to_string();
    let mut s = format!(
        "pipeline {pipeline}{} {}: {} ok / {} failed in {} (ran {}; skipped {})",
        if retry { " (retry)" } else { "" },
        style.status(&status, &status),
        c.successful_essay_count,
        c.failed_essay_count,
        duration(c.processing_duration_seconds),
        if c.completed_phases.is_empty() {
            "nothing".to_owned()
        } else {
            c.completed_phases.join(", ")
        },
        list_or_dash(&c.skipped_phases),
    );
    if let Some(reason) = &c.failure_reason {
        s.push_str(&format!(" — {}", style.bad(reason)));
    }
    s
}

/// What an event says, without time or topic.
pub fn event_text(e: &Event, style: &Style) -> String {
    match &e.body {
        Body::Request(r) => format!(
            "request {} by {}{}",
            r.requested_pipeline,
            r.user_id,
            match (&r.is_retry, &r.retry_reason) {
                (true, Some(why)) => format!(" (retry: {why})"),
                (true, None) => " (retry)".to_owned(),
                _ => String::new(),
            }
        ),
        Body::Ready(r) => format!(
            "batch ready: {} ({}, {}, {})",
            plural(r.ready_essays.len(), "essay", "essays"),
            r.course_code,
            r.course_language,
            r.class_type
        ),
        Body::Provisioned(p) => format!(
            "content provisioned: {}/{} essays",
            p.provisioned_count, p.expected_count
        ),
        Body::Command { phase, essays, .. } => {
            format!("{phase} command → {}", plural(*essays, "essay", "essays"))
        }
        Body::Outcome(o) => {
            let status = o.phase_status.to_string();
            let mut s = format!(
                "outcome {} {}: {} ok, {} failed",
                o.phase_name,
                style.status(&status, &status),
                o.processed_essays.len(),
                o.failed_essay_ids.len()
            );
            if !o.failed_essay_ids.is_empty() {
                s.push_str(&format!(" ({})", named(&o.failed_essay_ids)));
            }
            s
        }
        Body::Completed(c) => completed_line(c, e.is_retry(), style),
        Body::Skipped(s) => format!("skipped {} ({})", s.phase_name, s.skip_reason),
        Body::FailedEssay(f) => format!(
            "failed essay {} in {} ({}): {}",
            f.essay_id, f.phase_name, f.phase_status, f.reason
        ),
        Body::Poison(p) => format!(
            "poison message from {} [{}@{}]: {}: {}",
            p.original_topic.as_deref().unwrap_or("?"),
            p.original_partition.as_deref().unwrap_or("?"),
            p.original_offset.as_deref().unwrap_or("?"),
            p.error_kind.as_deref().unwrap_or("?"),
            p.error_message.as_deref().unwrap_or("")
        ),
        Body::Undecodable(err) => style.bad(&format!(
            "undecodable message [{}@{}]: {err}",
            e.partition, e.offset
        )),
        Body::Other => format!("message on {} [{}@{}]", e.topic, e.partition, e.offset),
    }
}

/// One line per event: `time  correlation  topic  text`.
pub fn event_line(e: &Event, style: &Style) -> String {
    let corr = e
        .pipeline_correlation()
        .map(|c| short_id(&c))
        .unwrap_or_else(|| " ".repeat(8));
    format!(
        "{}  {}  {:<17} {}",
        style.dim(&clock(e.time)),
        style.dim(&corr),
        short_topic(&e.topic),
        event_text(e, style)
    )
}

/// Event lines for a stream of events: an event whose `event_id` was shown before (a re-send
/// or redelivery; consumers drop it) is marked as such instead of passing for a new one.
#[derive(Debug, Default)]
pub struct Lines {
    shown: HashSet<Uuid>,
}

impl Lines {
    /// The line of `e`, marked when its `event_id` was shown before.
    pub fn line(&mut self, e: &Event, style: &Style) -> String {
        let mut line = event_line(e, style);
        if e.event_id.is_some_and(|id| !self.shown.insert(id)) {
            line.push_str(&style.dim("  (again: same event_id, a re-send)"));
        }
        line
    }
}

/// The multi-line summary of a terminal event (`submit --wait`, `retry --wait`).
pub fn completed_summary(c: &BatchPipelineCompletedV1, retry: bool, style: &Style) -> String {
    let status = c.final_status.to_string();
    let mut lines = vec![format!(
        "pipeline {}{} for batch {}: {}",
        c.requested_pipeline.as_deref().unwrap_or("?"),
        if retry { " (retry)" } else { "" },
        c.batch_id,
        style.bold(&style.status(&status, &status))
    )];
    let mut field = |name: &str, value: String| lines.push(format!("  {name:<16} {value}"));
    field("correlation id", c.correlation_id.to_string());
    field("phases run", list_or_dash(&c.completed_phases));
    field("phases skipped", list_or_dash(&c.skipped_phases));
    field(
        "essays",
        format!(
            "{} successful, {} failed",
            c.successful_essay_count, c.failed_essay_count
        ),
    );
    field("duration", duration(c.processing_duration_seconds));
    if let Some(reason) = &c.failure_reason {
        field("failure reason", style.bad(reason));
    }
    lines.join("\n")
}

/// A JSON value as short text: strings bare, `null` as empty, others compact JSON.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The answer of the conductor's operator endpoint (`{status, batch_id, phase_name, record}`).
pub fn mark_recorded(answer: &Value, style: &Style) -> String {
    let get = |k: &str| answer.get(k).map(text_of).unwrap_or_default();
    let record = answer.get("record").cloned().unwrap_or(Value::Null);
    let r = |k: &str| record.get(k).map(text_of).unwrap_or_default();
    let status = r("status");
    let mut lines = vec![format!(
        "recorded: {} of batch {} is now {} (source {})",
        get("phase_name"),
        get("batch_id"),
        style.bold(&style.status(&status, &status)),
        r("source")
    )];
    let at = r("at");
    if !at.is_empty() {
        lines.push(format!("  {:<10} {}", "at", when(&at)));
    }
    for key in ["operator", "reason"] {
        let v = r(key);
        if !v.is_empty() {
            lines.push(format!("  {key:<10} {v}"));
        }
    }
    if status == "failed" {
        lines.push("  the phase will run again the next time a pipeline needs it".to_owned());
    }
    lines.join("\n")
}

/// The answer of the orchestrator's retry endpoint and how to follow it.
pub fn retry_accepted(answer: &RetryPhaseAccepted, essays: &[String]) -> String {
    let which = if essays.is_empty() {
        "the essays that failed its latest run".to_owned()
    } else {
        plural(essays.len(), "essay", "essays")
    };
    let batch = &answer.batch_id;
    let corr = answer.correlation_id;
    [
        format!(
            "retry of {} for batch {batch} accepted ({which})",
            answer.phase_name
        ),
        format!("correlation id: {corr}"),
        format!("follow it:      hulectl watch --batch {batch} --correlation {corr}"),
    ]
    .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{decode, Record};
    use crate::fixtures as fx;
    use huleedu_contracts::topics;
    use serde_json::json;

    fn line_of(topic: &str, payload: Vec<u8>) -> String {
        let e = decode(&Record::new(topic, Some("b1"), payload));
        event_line(&e, &Style::plain())
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0.4234), "0.42 s");
        assert_eq!(duration(2.31), "2.3 s");
        assert_eq!(duration(245.0), "4 m 05 s");
        assert_eq!(duration(f64::NAN), "?");
    }

    #[test]
    fn times() {
        assert_eq!(when("2026-11-29T12:00:01.250000Z"), "2026-11-29 12:00:01");
        assert_eq!(when("2026-11-29T13:00:01+01:00"), "2026-11-29 12:00:01");
        assert_eq!(when("soon"), "soon");
        assert_eq!(
            seconds_between("2026-11-29T12:00:01.250000Z", "2026-11-29T12:00:03.750000Z"),
            Some(2.5)
        );
        assert_eq!(clock(None), "--:--:--.---");
    }

    #[test]
    fn command_line() {
        let l = line_of(topics::SPELLCHECK_INITIATE_COMMAND, fx::command("b1", 20));
        assert_eq!(
            l,
            "12:00:01.250  22222222  cmd.spellcheck    spellcheck command → 20 essays"
        );
    }

    #[test]
    fn outcome_line_names_failures() {
        let l = line_of(
            topics::ELS_BATCH_PHASE_OUTCOME,
            fx::outcome("b1", "spellcheck", 17, &["b1-e04", "b1-e11", "b1-e17"]),
        );
        assert!(
            l.ends_with(
                "outcome           outcome spellcheck completed_with_failures: 17 ok, 3 failed (b1-e04, b1-e11, b1-e17)"
            ),
            "{l}"
        );
        let many: Vec<String> = (1..=8).map(|i| format!("e{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let l = line_of(
            topics::ELS_BATCH_PHASE_OUTCOME,
            fx::outcome("b1", "nlp", 0, &many),
        );
        assert!(
            l.ends_with(
                "outcome nlp failed_critically: 0 ok, 8 failed (e1, e2, e3, e4, e5 and 3 more)"
            ),
            "{l}"
        );
    }

    #[test]
    fn skipped_and_completed_lines() {
        let l = line_of(topics::BATCH_PHASE_SKIPPED, fx::skipped("b1", "spellcheck"));
        assert!(
            l.ends_with("skipped           skipped spellcheck (already_completed)"),
            "{l}"
        );
        let l = line_of(
            topics::BATCH_PIPELINE_COMPLETED,
            fx::completed(
                "b1",
                "nlp",
                "completed_with_failures",
                &["spellcheck", "nlp"],
                &[],
                17,
                3,
                2.31,
                None,
            ),
        );
        assert!(
            l.ends_with(
                "completed         pipeline nlp completed_with_failures: 17 ok / 3 failed in 2.3 s (ran spellcheck, nlp; skipped —)"
            ),
            "{l}"
        );
    }

    #[test]
    fn request_ready_and_failed_essay_lines() {
        let l = line_of(
            topics::CLIENT_BATCH_PIPELINE_REQUEST,
            fx::request("b1", "cj_assessment"),
        );
        assert!(
            l.ends_with("request           request cj_assessment by ann"),
            "{l}"
        );
        let l = line_of(topics::BATCH_ESSAYS_READY, fx::ready("b1", 20));
        assert!(
            l.ends_with("batch ready: 20 essays (ENG5, en, GUEST)"),
            "{l}"
        );
        let l = line_of(
            topics::FAILED_ESSAYS_DLQ,
            fx::failed_essay("b1", "b1-e04", fx::PIPELINE),
        );
        assert!(
            l.contains("  33333333  failed.DLQ"),
            "DLQ lines carry the pipeline's id: {l}"
        );
        assert!(
            l.ends_with("failed essay b1-e04 in spellcheck (completed_with_failures): listed in failed_essay_ids"),
            "{l}"
        );
    }

    #[test]
    fn repeats_are_marked() {
        let e = decode(&Record::new(
            topics::BATCH_PHASE_SKIPPED,
            Some("b1"),
            fx::skipped("b1", "nlp"),
        ));
        let mut lines = Lines::default();
        let first = lines.line(&e, &Style::plain());
        assert!(!first.contains("again"));
        assert_eq!(
            lines.line(&e, &Style::plain()),
            format!("{first}  (again: same event_id, a re-send)")
        );
    }

    #[test]
    fn undecodable_line_says_why() {
        let l = line_of(topics::ELS_BATCH_PHASE_OUTCOME, b"{}".to_vec());
        assert!(
            l.contains("undecodable message [0@0]: validation error: "),
            "{l}"
        );
    }

    #[test]
    fn retry_terminal_is_marked() {
        let mut v: Value = serde_json::from_slice(&fx::completed(
            "b1",
            "spellcheck",
            "completed_successfully",
            &["spellcheck"],
            &[],
            3,
            0,
            0.5,
            None,
        ))
        .unwrap();
        v["metadata"] = json!({"retry": true, "retry_phase": "spellcheck"});
        let l = line_of(topics::BATCH_PIPELINE_COMPLETED, v.to_string().into_bytes());
        assert!(
            l.contains(
                "pipeline spellcheck (retry) completed_successfully: 3 ok / 0 failed in 0.50 s"
            ),
            "{l}"
        );
    }

    #[test]
    fn summary_of_a_failed_pipeline() {
        let e = decode(&Record::new(
            topics::BATCH_PIPELINE_COMPLETED,
            Some("b1"),
            fx::completed(
                "b1",
                "nlp",
                "failed_critically",
                &["spellcheck"],
                &[],
                0,
                20,
                1800.2,
                Some("phase_timeout: nlp"),
            ),
        ));
        let s = completed_summary(e.terminal().unwrap(), false, &Style::plain());
        assert_eq!(
            s,
            "pipeline nlp for batch b1: failed_critically\n\
             \x20 correlation id   22222222-2222-4222-8222-222222222222\n\
             \x20 phases run       spellcheck\n\
             \x20 phases skipped   —\n\
             \x20 essays           0 successful, 20 failed\n\
             \x20 duration         30 m 00 s\n\
             \x20 failure reason   phase_timeout: nlp"
        );
    }

    #[test]
    fn mark_answer() {
        let answer = json!({"status": "recorded", "batch_id": "b1", "phase_name": "nlp",
            "record": {"status": "failed", "source": "operator", "pipeline_correlation_id": null,
                "pipeline_id": null, "event_id": null, "processed_count": null, "failed_count": null,
                "at": "2026-11-29T12:05:00.000001Z", "operator": "ann", "reason": "bad model"}});
        assert_eq!(
            mark_recorded(&answer, &Style::plain()),
            "recorded: nlp of batch b1 is now failed (source operator)\n\
             \x20 at         2026-11-29 12:05:00\n\
             \x20 operator   ann\n\
             \x20 reason     bad model\n\
             \x20 the phase will run again the next time a pipeline needs it"
        );
    }

    #[test]
    fn retry_answer() {
        let answer: RetryPhaseAccepted = serde_json::from_value(
            json!({"status": "accepted", "batch_id": "b1", "phase_name": "spellcheck",
            "correlation_id": "55555555-5555-4555-8555-555555555555",
            "request_id": "66666666-6666-4666-8666-666666666666"}),
        )
        .unwrap();
        let s = retry_accepted(&answer, &[]);
        assert_eq!(
            s,
            "retry of spellcheck for batch b1 accepted (the essays that failed its latest run)\n\
             correlation id: 55555555-5555-4555-8555-555555555555\n\
             follow it:      hulectl watch --batch b1 --correlation 55555555-5555-4555-8555-555555555555"
        );
        assert!(retry_accepted(&answer, &["e1".into()]).contains("(1 essay)"));
    }
}
