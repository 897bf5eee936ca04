//! The console's pages, rendered on the server with maud: every value from outside (batch and
//! essay ids, reasons, payloads, headers) is escaped by construction. Pure: data in, markup out
//! (time passed in).

use hulectl::event::PoisonRecord;
use hulectl::http::segment;
use huleedu_contracts::http::bos::{BatchListPage, BatchStatusView};
use huleedu_contracts::{FailedEssayDlqRecordV1, PhaseName, Timestamp};
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

use crate::timeline;

/// The statuses the batch list can be filtered by (`GET /v1/batches?status=`).
pub const STATUSES: [&str; 6] = [
    "active",
    "waiting",
    "idle",
    "completed_successfully",
    "completed_with_failures",
    "failed_critically",
];

/// Link to a batch's page.
pub fn batch_href(batch: &str) -> String {
    format!("/batches/{}", segment(batch))
}

fn when(t: &Timestamp) -> String {
    t.0.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// The frame of every page: title, navigation, the content.
pub fn layout(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · HuleEdu pipeline console" }
                link rel="stylesheet" href="/static/console.css";
            }
            body {
                header {
                    a.brand href="/batches" { "HuleEdu pipelines" }
                    nav {
                        a href="/batches" { "Batches" }
                        a href="/dead-letters" { "Dead letters" }
                        a href="/submit" { "Submit" }
                    }
                }
                main { (content) }
            }
        }
    }
}

fn status_badge(status: &str) -> Markup {
    html! { span class=(format!("badge st-{status}")) { (status) } }
}

/// The operator fields every action form carries: who, and the token typed each time (never
/// stored: no cookie, no autofill).
fn operator_fields() -> Markup {
    html! {
        label { "Operator " input type="text" name="operator" required maxlength="100" autocomplete="off"; }
        label { "Token " input type="password" name="token" required autocomplete="off"; }
    }
}

/// A shown error (an upstream that failed).
pub fn problem(text: &str) -> Markup {
    html! { p.problem role="alert" { (text) } }
}

/// *Batches*: recent and active batches, filterable by status, a page at a time.
pub fn batches(page: Result<&BatchListPage, String>, status: Option<&str>) -> Markup {
    let body = html! {
        h1 { "Batches" }
        form.filters method="get" action="/batches" {
            label { "Status "
                select name="status" {
                    option value="" selected[status.is_none()] { "any" }
                    @for s in STATUSES {
                        option value=(s) selected[status == Some(s)] { (s) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        @match page {
            Err(e) => (problem(&e)),
            Ok(page) => {
                @if page.batches.is_empty() {
                    p.empty { "No batches" @if let Some(s) = status { " with status " (s) } "." }
                } @else {
                    table.batches {
                        thead { tr {
                            th { "Batch" } th { "Status" } th { "Active pipeline" } th { "Phase" }
                            th { "Queued" } th { "Last pipeline" } th { "Last result" } th { "Essays" } th { "Changed (UTC)" }
                        } }
                        tbody {
                            @for b in &page.batches {
                                tr data-batch=(b.batch_id) {
                                    td { a href=(batch_href(&b.batch_id)) { (b.batch_id) } }
                                    td { (status_badge(b.status.as_str())) }
                                    td { (b.active_pipeline.as_deref().unwrap_or("—")) }
                                    td { (b.current_phase.map_or("—", |p| p.as_str())) }
                                    td { (b.queue_length) @if b.parked > 0 { " (+" (b.parked) " waiting)" } }
                                    td { (b.last_pipeline.as_deref().unwrap_or("—")) }
                                    td { @if let Some(s) = b.last_final_status { (status_badge(s.as_str())) } @else { "—" } }
                                    td { @if let Some(n) = b.essay_count { (n) } @else { "—" } }
                                    td { (when(&b.updated_at)) }
                                }
                            }
                        }
                    }
                    @if let Some(c) = &page.next_cursor {
                        @let href = format!("/batches?cursor={}{}", segment(c), status.map(|s| format!("&status={}", segment(s))).unwrap_or_default());
                        p { a.next href=(href) { "Next page →" } }
                    }
                }
            }
        }
    };
    layout("Batches", body)
}

/// One line of a batch's event log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub at: Timestamp,
    /// `request`, `skip`, `command`, `outcome`, `terminal`, `queued`, `waiting`.
    pub kind: &'static str,
    pub text: String,
}

/// The batch's events as the orchestrator recorded them: requests, skips, commands, outcomes,
/// terminal events (and requests still waiting), oldest first.
pub fn event_log(v: &BatchStatusView) -> Vec<LogLine> {
    let mut out = Vec::new();
    let runs = |runs: &[huleedu_contracts::http::bos::PhaseRun], out: &mut Vec<LogLine>| {
        for r in runs {
            out.push(LogLine {
                at: r.started_at,
                kind: "command",
                text: format!(
                    "initiate {} for {} essays (command {})",
                    r.phase, r.essays_in, r.command_id
                ),
            });
            if let (Some(s), Some(at)) = (r.status, r.finished_at) {
                out.push(LogLine {
                    at,
                    kind: "outcome",
                    text: format!(
                        "{}: {s}, {} essays ok, {} failed",
                        r.phase,
                        r.essays_out.unwrap_or(0),
                        r.failed.unwrap_or(0)
                    ),
                });
            }
        }
    };
    for p in &v.history {
        out.push(LogLine {
            at: p.received_at,
            kind: "request",
            text: format!(
                "pipeline {} requested (request {})",
                p.requested_pipeline, p.request_id
            ),
        });
        for s in &p.skipped_phases {
            out.push(LogLine {
                at: p.runs.first().map_or(p.received_at, |r| r.started_at),
                kind: "skip",
                text: format!("{s} skipped: already completed for this batch"),
            });
        }
        runs(&p.runs, &mut out);
        out.push(LogLine {
            at: p.finished_at,
            kind: "terminal",
            text: format!(
                "{} ended {}: {} essays ok, {} failed{}",
                p.requested_pipeline,
                p.final_status,
                p.successful_essay_count,
                p.failed_essay_count,
                p.failure_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
        });
    }
    if let Some(a) = &v.active_pipeline {
        out.push(LogLine {
            at: a.received_at,
            kind: "request",
            text: format!(
                "pipeline {} requested (request {})",
                a.requested_pipeline, a.request_id
            ),
        });
        for s in &a.pruned_phases {
            out.push(LogLine {
                at: a.started_at,
                kind: "skip",
                text: format!("{s} skipped: already completed for this batch"),
            });
        }
        runs(&a.runs, &mut out);
    }
    for q in &v.queue {
        out.push(LogLine {
            at: q.received_at,
            kind: "queued",
            text: format!(
                "pipeline {} queued behind the running one",
                q.requested_pipeline
            ),
        });
    }
    for q in &v.parked {
        out.push(LogLine {
            at: q.received_at,
            kind: "waiting",
            text: format!(
                "pipeline {} waits for the batch to become known",
                q.requested_pipeline
            ),
        });
    }
    out.sort_by_key(|l| l.at.0);
    out
}

/// Why a phase was skipped, from the conductor's record of it.
fn skip_reason(records: Option<&Value>, phase: PhaseName) -> String {
    let r = records
        .and_then(|r| r.get("phases"))
        .and_then(|p| p.get(phase.as_str()));
    match r {
        Some(r) if r["source"] == "operator" => format!(
            "marked completed by operator {}{}",
            r["operator"].as_str().unwrap_or("?"),
            r["reason"]
                .as_str()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default()
        ),
        Some(r) if r["status"] == "completed" => format!(
            "completed earlier for this batch ({})",
            r["source"].as_str().unwrap_or("event")
        ),
        _ => "completed earlier for this batch".to_owned(),
    }
}

/// Failed essay ids shown per phase before "and N more".
const FAILED_SHOWN: usize = 50;

/// *Batch*: its pipelines as timelines, phase results with failed essays, the conductor's
/// records with provenance, the event log, and the actions.
pub fn batch(
    id: &str,
    bos: Result<Option<&BatchStatusView>, String>,
    bcs: Result<&Value, String>,
    now: Timestamp,
) -> Markup {
    let records = bcs.as_ref().ok().copied();
    let phases: Vec<PhaseName> = PhaseName::ALL.to_vec();
    let body = html! {
        h1 { "Batch " code { (id) } }
        @match &bos {
            Err(e) => (problem(e)),
            Ok(None) => p.empty { "The orchestrator does not know this batch." },
            Ok(Some(v)) => {
                p.summary {
                    @if v.known { "Known, " (v.essay_count.unwrap_or(0)) " essays" @if let Some(c) = &v.course_code { ", course " (c) } "." }
                    @else { "Not known yet: requests wait for its readiness event." }
                    @if !v.queue.is_empty() { " " (v.queue.len()) " request(s) queued." }
                }
                h2 { "Pipelines" }
                @let lanes = timeline::lanes(v, &|p| skip_reason(records, p));
                @if lanes.is_empty() { p.empty { "No pipeline has run yet." } }
                @for lane in &lanes {
                    section.lane data-pipeline=(lane.pipeline) {
                        h3 { (lane.pipeline) " " (status_badge(&lane.status)) " "
                             small { "requested " (when(&lane.from)) } }
                        (timeline::svg(lane, now))
                    }
                }
                p.legend {
                    span.bar-ok { "ok" } span.bar-partial { "with failures" } span.bar-failed { "failed" }
                    span.bar-timeout { "timed out" } span.bar-running { "running" } span.bar-skipped { "skipped" }
                }
                h2 { "Phase results" }
                @if v.phase_results.is_empty() { p.empty { "No phase has finished yet." } }
                @else {
                    table.results {
                        thead { tr { th { "Phase" } th { "Status" } th { "Succeeded" } th { "Failed" } th { "Failed essays" } th { "At (UTC)" } } }
                        tbody {
                            @for (phase, r) in &v.phase_results {
                                tr data-phase=(phase.as_str()) {
                                    td { (phase.as_str()) }
                                    td { (status_badge(r.status.as_str())) }
                                    td { (r.succeeded_count) }
                                    td { (r.failed_count) }
                                    td.essays {
                                        @for e in r.failed_essay_ids.iter().take(FAILED_SHOWN) { code { (e) } " " }
                                        @if r.failed_essay_ids.len() > FAILED_SHOWN { "and " (r.failed_essay_ids.len() - FAILED_SHOWN) " more" }
                                    }
                                    td { (when(&r.at)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Conductor records" }
        @match &bcs {
            Err(e) => (problem(e)),
            Ok(r) => {
                @let recs = r.get("phases").and_then(Value::as_object);
                @if recs.is_none_or(|m| m.is_empty()) { p.empty { "The conductor has no phase record for this batch." } }
                @else {
                    table.records {
                        thead { tr { th { "Phase" } th { "Status" } th { "Source" } th { "At (UTC)" } th { "Operator" } th { "Reason" } th { "Pipeline" } } }
                        tbody {
                            @for (phase, rec) in recs.into_iter().flatten() {
                                tr data-phase=(phase) {
                                    td { (phase) }
                                    td { (status_badge(rec["status"].as_str().unwrap_or("?"))) }
                                    td { (rec["source"].as_str().unwrap_or("?")) }
                                    td { (rec["at"].as_str().unwrap_or("")) }
                                    td { (rec["operator"].as_str().unwrap_or("")) }
                                    td { (rec["reason"].as_str().unwrap_or("")) }
                                    td { code { (rec["pipeline_correlation_id"].as_str().or(rec["pipeline_id"].as_str()).unwrap_or("")) } }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Ok(Some(v)) = &bos {
            h2 { "Events" }
            p.note { "As the orchestrator recorded them (requests, skips, commands, outcomes, terminal events)." }
            table.events {
                thead { tr { th { "At (UTC)" } th { "Kind" } th { "What" } } }
                tbody {
                    @for l in event_log(v) {
                        tr class=(format!("ev-{}", l.kind)) { td { (when(&l.at)) } td { (l.kind) } td { (l.text) } }
                    }
                }
            }
        }
        h2 { "Actions" }
        p.note { "Each action needs the operator token; it is sent to the service as a bearer token and never stored." }
        div.actions {
            form method="post" action="/actions/mark" {
                h3 { "Mark a phase" }
                input type="hidden" name="batch" value=(id);
                label { "Phase " select name="phase" { @for p in &phases { option value=(p.as_str()) { (p.as_str()) } } } }
                label { "As "
                    select name="mark" { option value="complete" { "completed" } option value="invalidate" { "not completed (runs again)" } } }
                label { "Reason " input type="text" name="reason" required maxlength="500"; }
                (operator_fields())
                button type="submit" { "Mark" }
            }
            form method="post" action="/actions/retry" {
                h3 { "Retry a phase for its failed essays" }
                input type="hidden" name="batch" value=(id);
                label { "Phase " select name="phase" { @for p in &phases { option value=(p.as_str()) { (p.as_str()) } } } }
                label { "Reason " input type="text" name="reason" required maxlength="500"; }
                (operator_fields())
                button type="submit" { "Retry" }
            }
            (submit_form(Some(id)))
        }
        p { a href=(format!("/dead-letters?batch={}", segment(id))) { "Dead letters of this batch →" } }
    };
    layout(&format!("Batch {id}"), body)
}

/// The form that publishes a pipeline request.
pub fn submit_form(batch: Option<&str>) -> Markup {
    html! {
        form method="post" action="/actions/submit" {
            h3 { "Submit a pipeline" }
            label { "Batch " input type="text" name="batch" required maxlength="255" value=(batch.unwrap_or("")); }
            label { "Pipeline " input type="text" name="pipeline" required maxlength="100" list="pipelines"; }
            datalist id="pipelines" { @for p in PhaseName::ALL { option value=(p.as_str()) {} } }
            (operator_fields())
            button type="submit" { "Submit" }
        }
    }
}

/// *Submit*: the submit form on its own.
pub fn submit_page() -> Markup {
    layout(
        "Submit",
        html! { h1 { "Submit a pipeline" } div.actions { (submit_form(None)) } },
    )
}

/// A poison record and its headers, as read from its DLQ topic.
#[derive(Debug, Clone)]
pub struct PoisonRow {
    pub record: PoisonRecord,
    pub headers: Vec<(String, String)>,
}

/// *Dead letters*: poison records (with a re-drive form each) and failed-essay records (with a
/// retry form per batch and phase), filterable by batch and topic.
pub fn dead_letters(
    data: Result<(&[PoisonRow], &[FailedEssayDlqRecordV1]), String>,
    topics: &[String],
    batch: Option<&str>,
    topic: Option<&str>,
) -> Markup {
    let body = html! {
        h1 { "Dead letters" }
        form.filters method="get" action="/dead-letters" {
            label { "Batch " input type="text" name="batch" value=(batch.unwrap_or("")); }
            label { "Topic "
                select name="topic" {
                    option value="" selected[topic.is_none()] { "any" }
                    @for t in topics { option value=(t) selected[topic == Some(t.as_str())] { (t) } }
                }
            }
            button type="submit" { "Filter" }
        }
        @match data {
            Err(e) => (problem(&e)),
            Ok((poison, essays)) => {
                h2 { "Poison records (" (poison.len()) ")" }
                @if poison.is_empty() { p.empty { "None." } }
                @for row in poison {
                    @let p = &row.record;
                    section.poison data-dlq=(format!("{}/{}/{}", p.dlq_topic, p.dlq_partition, p.dlq_offset)) {
                        h3 { code { (p.dlq_topic) " [" (p.dlq_partition) "@" (p.dlq_offset) "]" } }
                        dl {
                            dt { "Batch (key)" } dd { @if let Some(k) = &p.key { a href=(batch_href(k)) { (k) } } @else { "—" } }
                            dt { "Original" } dd { (p.original_topic.as_deref().unwrap_or("?")) " [" (p.original_partition.as_deref().unwrap_or("?")) "@" (p.original_offset.as_deref().unwrap_or("?")) "]" }
                            dt { "Dead-lettered by" } dd { (p.service.as_deref().unwrap_or("?")) " (" (p.consumer_group.as_deref().unwrap_or("?")) ") at " (p.failed_at.as_deref().unwrap_or("?")) }
                            dt { "Error" } dd.error { (p.error_kind.as_deref().unwrap_or("?")) ": " (p.error_message.as_deref().unwrap_or("")) }
                            @if let Some(from) = &p.redriven_from { dt { "Chain" } dd { "re-driven from " (from) } }
                            dt { "Payload" } dd { code.payload { (p.payload_preview) } " (" (p.payload_bytes) " bytes)" }
                        }
                        details {
                            summary { "Headers (" (row.headers.len()) ")" }
                            table.headers { @for (k, v) in &row.headers { tr { td { code { (k) } } td { code { (v) } } } } }
                        }
                        form method="post" action="/actions/redrive" {
                            input type="hidden" name="dlq_topic" value=(p.dlq_topic);
                            input type="hidden" name="partition" value=(p.dlq_partition);
                            input type="hidden" name="offset" value=(p.dlq_offset);
                            label { "Reason " input type="text" name="reason" required maxlength="500"; }
                            (operator_fields())
                            button type="submit" { "Re-drive" }
                        }
                    }
                }
                h2 { "Failed essays (" (essays.len()) ")" }
                @if essays.is_empty() { p.empty { "None." } }
                @else {
                    table.failed {
                        thead { tr { th { "Failed at (UTC)" } th { "Batch" } th { "Essay" } th { "Phase" } th { "Status" } th { "Reason" } th { "Pipeline" } } }
                        tbody {
                            @for f in essays {
                                tr {
                                    td { (when(&f.failed_at)) }
                                    td { a href=(batch_href(&f.batch_id)) { (f.batch_id) } }
                                    td { code { (f.essay_id) } }
                                    td { (f.phase_name.as_str()) }
                                    td { (f.phase_status.as_str()) }
                                    td { (f.reason) }
                                    td { code { (f.pipeline_correlation_id) } }
                                }
                            }
                        }
                    }
                    h3 { "Retry failed essays" }
                    p.note { "Runs the phase again for the essays these records name (the orchestrator's retry)." }
                    @for (b, phase, ids) in retry_groups(essays) {
                        form.retry-group method="post" action="/actions/retry" {
                            input type="hidden" name="batch" value=(b);
                            input type="hidden" name="phase" value=(phase.as_str());
                            input type="hidden" name="essays" value=(ids.join(","));
                            span { code { (b) } " · " (phase.as_str()) " · " (ids.len()) " essay(s)" }
                            label { "Reason " input type="text" name="reason" required maxlength="500"; }
                            (operator_fields())
                            button type="submit" { "Retry these" }
                        }
                    }
                }
            }
        }
    };
    layout("Dead letters", body)
}

/// Failed-essay records grouped by batch and phase (distinct essays, in record order).
pub fn retry_groups(records: &[FailedEssayDlqRecordV1]) -> Vec<(String, PhaseName, Vec<String>)> {
    let mut out: Vec<(String, PhaseName, Vec<String>)> = Vec::new();
    for r in records {
        match out
            .iter_mut()
            .find(|(b, p, _)| *b == r.batch_id && *p == r.phase_name)
        {
            Some((_, _, ids)) => {
                if !ids.contains(&r.essay_id) {
                    ids.push(r.essay_id.clone());
                }
            }
            None => out.push((r.batch_id.clone(), r.phase_name, vec![r.essay_id.clone()])),
        }
    }
    out
}

/// What an action ended in.
pub fn outcome(action: &str, result: Result<String, String>, back: &str) -> Markup {
    let body = html! {
        h1 { (action) }
        @match &result {
            Ok(text) => p.done role="status" { (text) },
            Err(text) => (problem(text)),
        }
        p { a href=(back) { "← Back" } }
    };
    layout(action, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use huleedu_contracts::http::bos::{BatchActivity, BatchListItem};

    const HOSTILE: &str = "<img src=x onerror=alert(1)>\"'&";

    fn item(id: &str) -> BatchListItem {
        BatchListItem {
            batch_id: id.into(),
            status: BatchActivity::Active,
            updated_at: Timestamp::parse("2026-12-02T10:00:00Z").unwrap(),
            known: true,
            essay_count: Some(3),
            active_pipeline: Some(HOSTILE.into()),
            current_phase: Some(PhaseName::Nlp),
            queue_length: 0,
            parked: 0,
            last_pipeline: None,
            last_final_status: None,
            last_finished_at: None,
        }
    }

    #[test]
    fn hostile_values_are_escaped_on_the_batch_list() {
        let page = BatchListPage {
            batches: vec![item(HOSTILE)],
            next_cursor: Some("1:<b>".into()),
        };
        let html = batches(Ok(&page), None).into_string();
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("&lt;img src=x onerror=alert(1)&gt;&quot;'&amp;"),
            "{html}"
        );
        // The link to the batch is percent-encoded; the cursor too.
        assert!(html.contains("href=\"/batches/%3Cimg%20src"), "{html}");
        assert!(html.contains("cursor=1%3A%3Cb%3E"), "{html}");
    }

    #[test]
    fn hostile_values_are_escaped_on_the_dead_letter_page() {
        let record = PoisonRecord {
            dlq_topic: "t.DLQ".into(),
            dlq_partition: 0,
            dlq_offset: 1,
            key: Some(HOSTILE.into()),
            original_topic: Some("t".into()),
            original_partition: None,
            original_offset: None,
            consumer_group: None,
            service: None,
            error_kind: Some("decode".into()),
            error_message: Some(HOSTILE.into()),
            failed_at: None,
            payload_preview: HOSTILE.into(),
            payload_bytes: 9,
            redriven_from: None,
        };
        let rows = [PoisonRow {
            record,
            headers: vec![(HOSTILE.into(), HOSTILE.into())],
        }];
        let html = dead_letters(Ok((&rows, &[])), &[], Some(HOSTILE), None).into_string();
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("name=\"token\" required autocomplete=\"off\""),
            "{html}"
        );
    }

    #[test]
    fn failed_essays_group_by_batch_and_phase() {
        let rec = |b: &str, e: &str, p: PhaseName| FailedEssayDlqRecordV1 {
            batch_id: b.into(),
            essay_id: e.into(),
            phase_name: p,
            phase_status: huleedu_contracts::BatchStatus::CompletedWithFailures,
            pipeline_correlation_id: uuid::Uuid::nil(),
            source_event_id: uuid::Uuid::nil(),
            source_topic: "t".into(),
            source_partition: 0,
            source_offset: 0,
            reason: "r".into(),
            failed_at: Timestamp::parse("2026-12-02T10:00:00Z").unwrap(),
        };
        let groups = retry_groups(&[
            rec("b1", "e1", PhaseName::Spellcheck),
            rec("b1", "e2", PhaseName::Spellcheck),
            rec("b1", "e1", PhaseName::Spellcheck),
            rec("b1", "e1", PhaseName::Nlp),
        ]);
        assert_eq!(
            groups,
            vec![
                (
                    "b1".to_string(),
                    PhaseName::Spellcheck,
                    vec!["e1".to_string(), "e2".to_string()]
                ),
                ("b1".to_string(), PhaseName::Nlp, vec!["e1".to_string()]),
            ]
        );
    }
}
