//! `hulectl status`: the orchestrator's status document and the conductor's phase records of a
//! batch as text. Pure. The orchestrator's document is read as its contract type
//! ([`BatchStatusView`]); the conductor's records leniently (a missing field shows as `—`).
//! Unknown fields are ignored, so a newer service with more fields still renders.

use huleedu_contracts::http::bos::{BatchStatusView, PhaseRun, PipelineSummary, QueuedRequestView};
use huleedu_contracts::PhaseName;
use serde_json::Value;

use crate::render::{duration, list_or_dash, seconds_between, text_of, when};
use crate::style::Style;
use crate::table::{Cell, Table};

/// What was learnt from one service: its document, "does not know the batch", or an error.
#[derive(Debug, Clone, PartialEq)]
pub enum View<T = Value> {
    Doc(T),
    /// The service answered that it does not know the batch (BOS 404).
    Unknown,
    /// The service could not be asked (unreachable, 5xx, an answer of another shape, ...).
    Error(String),
}

impl<T> View<T> {
    pub fn doc(&self) -> Option<&T> {
        match self {
            View::Doc(v) => Some(v),
            _ => None,
        }
    }

    /// The error, when the service could not be asked.
    pub fn error(&self) -> Option<&str> {
        match self {
            View::Error(e) => Some(e),
            _ => None,
        }
    }
}

fn s(v: &Value, key: &str) -> String {
    v.get(key).map(text_of).unwrap_or_default()
}

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "—".to_owned()
    } else {
        s
    }
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    arr(v, key).iter().map(text_of).collect()
}

fn names(phases: &[PhaseName]) -> Vec<String> {
    phases.iter().map(PhaseName::to_string).collect()
}

fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

/// Phases in dependency order, then any others the documents name.
fn phase_order<'a>(names: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut all: Vec<String> = PhaseName::ALL.iter().map(|p| p.to_string()).collect();
    let known = all.clone();
    let mut extra: Vec<String> = names.filter(|n| !known.contains(n)).cloned().collect();
    extra.sort();
    extra.dedup();
    all.extend(extra);
    all
}

/// One phase run (`history[].runs[]`, `active_pipeline.runs[]`) as table cells: phase,
/// `in → out`, failed, status, duration.
pub fn run_cells(run: &PhaseRun) -> Vec<Cell> {
    let took = run
        .finished_at
        .and_then(|end| seconds_between(&run.started_at.to_string(), &end.to_string()))
        .map(duration)
        .unwrap_or_default();
    vec![
        Cell::new(run.phase.to_string()),
        Cell::new(format!(
            "{} → {}",
            run.essays_in,
            run.essays_out
                .map_or_else(|| "…".to_owned(), |n| n.to_string())
        )),
        Cell::new(match run.failed {
            None | Some(0) => String::new(),
            Some(n) => format!("{n} failed"),
        }),
        match run.status {
            None => Cell::dim("running"),
            Some(status) => Cell::status(status.as_str()),
        },
        Cell::new(took),
    ]
}

/// The conductor's record of a phase as cells: status, source, time, details.
pub fn record_cells(record: &Value) -> Vec<Cell> {
    let mut detail = Vec::new();
    let (ok, failed) = (s(record, "processed_count"), s(record, "failed_count"));
    if !ok.is_empty() || !failed.is_empty() {
        detail.push(format!("{} ok, {} failed", or_dash(ok), or_dash(failed)));
    }
    let corr = s(record, "pipeline_correlation_id");
    let pipeline = s(record, "pipeline_id");
    if !corr.is_empty() {
        detail.push(format!("pipeline {}", short(&corr)));
    } else if !pipeline.is_empty() {
        detail.push(format!("pipeline {}", short(&pipeline)));
    }
    let operator = s(record, "operator");
    if !operator.is_empty() {
        detail.push(format!("by {operator}"));
    }
    let reason = s(record, "reason");
    if !reason.is_empty() {
        detail.push(format!("{reason:?}"));
    }
    vec![
        Cell::status(&s(record, "status")),
        Cell::new(s(record, "source")),
        Cell::dim(when(&s(record, "at"))),
        Cell::new(detail.join(", ")),
    ]
}

/// The conductor's records as a table (phase, status, source, at, detail).
pub fn conductor_table(bcs: &Value, indent: usize) -> Table {
    let mut t = Table::new(indent).header(["phase", "status", "source", "at (UTC)", "detail"]);
    let phases = bcs.get("phases").and_then(Value::as_object);
    if let Some(phases) = phases {
        for name in phase_order(phases.keys()) {
            if let Some(r) = phases.get(&name) {
                let mut row = vec![Cell::new(name.clone())];
                row.extend(record_cells(r));
                t.row(row);
            }
        }
    }
    t
}

fn pending_line(r: &QueuedRequestView) -> String {
    format!(
        "{} (correlation {}, received {})",
        r.requested_pipeline,
        short(&r.correlation_id.to_string()),
        when(&r.received_at.to_string())
    )
}

fn phases_side_by_side(bos: &View<BatchStatusView>, bcs: &View, style: &Style) -> Vec<String> {
    let results = bos.doc().map(|d| &d.phase_results);
    let records = bcs
        .doc()
        .and_then(|d| d.get("phases"))
        .and_then(Value::as_object);
    let run_phases: Vec<String> = results
        .into_iter()
        .flat_map(|m| m.keys().map(PhaseName::to_string))
        .collect();
    let names = run_phases
        .iter()
        .chain(records.into_iter().flat_map(|m| m.keys()));
    let mut t = Table::new(2).header([
        "phase",
        "orchestrator: latest run",
        "ok",
        "failed",
        "conductor: record",
        "source",
        "at (UTC)",
    ]);
    for name in phase_order(names) {
        let result = results.and_then(|m| m.get(&name.parse::<PhaseName>().ok()?));
        let record = records.and_then(|m| m.get(&name));
        if result.is_none() && record.is_none() {
            continue;
        }
        let mut row = vec![Cell::new(name.clone())];
        match result {
            Some(r) => row.extend([
                Cell::status(r.status.as_str()),
                Cell::new(r.succeeded_count.to_string()),
                Cell::new(r.failed_count.to_string()),
            ]),
            None => row.extend([Cell::dim("—"), Cell::new(""), Cell::new("")]),
        }
        match record {
            Some(r) => row.extend([
                Cell::status(&s(r, "status")),
                Cell::new(s(r, "source")),
                Cell::dim(when(&s(r, "at"))),
            ]),
            None => row.extend([Cell::dim("—"), Cell::new(""), Cell::new("")]),
        }
        t.row(row);
    }
    if t.is_empty() {
        vec!["  no phase has run or been recorded for this batch".to_owned()]
    } else {
        t.lines(style)
    }
}

fn orchestrator_section(bos: &View<BatchStatusView>, url: &str, style: &Style) -> Vec<String> {
    let mut out = vec![style.bold(&format!("Orchestrator (BOS, {url})"))];
    let d = match bos {
        View::Doc(d) => d,
        View::Unknown => {
            out.push("  the orchestrator does not know this batch (no readiness event and no request yet)".to_owned());
            return out;
        }
        View::Error(e) => {
            out.push(format!(
                "  {}",
                style.bad(&format!("could not read its status: {e}"))
            ));
            return out;
        }
    };
    let field = |name: &str, value: String| format!("  {name:<16} {value}");
    out.push(field(
        "essays",
        match d.essay_count {
            None => "batch not ready yet (requests are parked until it is)".to_owned(),
            Some(n) => format!(
                "{n} ({})",
                or_dash(d.course_code.clone().unwrap_or_default())
            ),
        },
    ));
    match &d.active_pipeline {
        None => out.push(field("active pipeline", "none".to_owned())),
        Some(a) => {
            let current = a.current_phase;
            let pos = a
                .phases
                .iter()
                .position(|p| *p == current)
                .map_or(0, |i| i + 1);
            out.push(field(
                "active pipeline",
                format!(
                    "{} (correlation {}), started {}",
                    a.requested_pipeline,
                    a.correlation_id,
                    when(&a.started_at.to_string())
                ),
            ));
            out.push(field(
                "current phase",
                format!(
                    "{current} ({pos} of {}), times out {}",
                    a.phases.len(),
                    when(&a.current_phase_deadline.to_string())
                ),
            ));
            out.push(field("phases", list_or_dash(&names(&a.phases))));
            out.push(field("pruned", list_or_dash(&names(&a.pruned_phases))));
            let mut t = Table::new(19);
            for r in &a.runs {
                t.row(run_cells(r));
            }
            out.extend(t.lines(style));
        }
    }
    for (items, name) in [(&d.queue, "queue"), (&d.parked, "parked")] {
        if items.is_empty() {
            out.push(field(name, "empty".to_owned()));
        } else {
            for (i, r) in items.iter().enumerate() {
                let label = if i == 0 { name } else { "" };
                out.push(field(label, format!("{}. {}", i + 1, pending_line(r))));
            }
        }
    }
    if d.history.is_empty() {
        out.push(field("history", "no pipeline has finished".to_owned()));
    } else {
        out.push(field("history", "(oldest first)".to_owned()));
        for (i, h) in d.history.iter().enumerate() {
            out.extend(history_entry(i + 1, h, style));
        }
    }
    out
}

/// One finished pipeline from the orchestrator's history, with its runs.
pub fn history_entry(n: usize, h: &PipelineSummary, style: &Style) -> Vec<String> {
    let status = h.final_status.to_string();
    let mut out = vec![format!(
        "    {n}. {} {}: {} ok / {} failed in {}, finished {} (correlation {})",
        h.requested_pipeline,
        style.status(&status, &status),
        h.successful_essay_count,
        h.failed_essay_count,
        duration(h.processing_duration_seconds),
        when(&h.finished_at.to_string()),
        short(&h.pipeline_id.to_string()),
    )];
    let mut t = Table::new(8);
    for r in &h.runs {
        t.row(run_cells(r));
    }
    out.extend(t.lines(style));
    if !h.skipped_phases.is_empty() {
        out.push(format!(
            "        skipped: {}",
            names(&h.skipped_phases).join(", ")
        ));
    }
    if let Some(reason) = h.failure_reason.as_deref().filter(|r| !r.is_empty()) {
        out.push(format!("        failure: {}", style.bad(reason)));
    }
    out
}

fn conductor_section(bcs: &View, url: &str, style: &Style) -> Vec<String> {
    let mut out = vec![style.bold(&format!("Conductor (BCS, {url})"))];
    let d = match bcs {
        View::Doc(d) => d,
        View::Unknown => {
            out.push("  no records for this batch".to_owned());
            return out;
        }
        View::Error(e) => {
            out.push(format!(
                "  {}",
                style.bad(&format!("could not read its records: {e}"))
            ));
            return out;
        }
    };
    let t = conductor_table(d, 2);
    if t.is_empty() {
        out.push("  no phase records for this batch".to_owned());
    } else {
        out.extend(t.lines(style));
    }
    let processed = arr(d, "processed_pipelines");
    if processed.is_empty() {
        out.push("  processed pipelines: none".to_owned());
    } else {
        out.push("  processed pipelines (oldest first):".to_owned());
        let mut t = Table::new(4);
        for p in processed {
            let status = s(p, "final_status");
            t.row([
                Cell::new(s(p, "pipeline_id")),
                Cell::status(&status),
                Cell::new(list_or_dash(&strings(p, "completed_phases"))),
                Cell::dim(when(&s(p, "processed_at"))),
            ]);
        }
        out.extend(t.lines(style));
    }
    out
}

/// The whole `status` text: both views of each phase side by side, then each service's
/// details.
pub fn render_status(
    batch: &str,
    bos: &View<BatchStatusView>,
    bos_url: &str,
    bcs: &View,
    bcs_url: &str,
    style: &Style,
) -> String {
    let mut out = vec![style.bold(&format!("Batch {batch}")), String::new()];
    out.push(style.bold("Phases"));
    out.extend(phases_side_by_side(bos, bcs, style));
    out.push(String::new());
    out.extend(orchestrator_section(bos, bos_url, style));
    out.push(String::new());
    out.extend(conductor_section(bcs, bcs_url, style));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures as fx;

    fn plain(bos: View<BatchStatusView>, bcs: View) -> String {
        render_status(
            "b1",
            &bos,
            "http://bos",
            &bcs,
            "http://bcs",
            &Style::plain(),
        )
    }

    #[test]
    fn full_status() {
        let text = plain(View::Doc(fx::bos_status()), View::Doc(fx::bcs_phases()));
        let expected = "\
Batch b1

Phases
  phase          orchestrator: latest run  ok  failed  conductor: record  source              at (UTC)
  spellcheck     completed_with_failures   17  3       completed          event               2026-11-29 12:00:02
  nlp            completed_successfully    17  0       completed          operator            2026-11-29 12:10:00
  cj_assessment  completed_successfully    17  0       completed          pipeline_completed  2026-11-29 12:00:03

Orchestrator (BOS, http://bos)
  essays           20 (ENG5)
  active pipeline  ai_feedback (correlation cccccccc-0000-4000-8000-000000000003), started 2026-11-29 12:00:05
  current phase    ai_feedback (1 of 1), times out 2026-11-29 12:30:05
  phases           ai_feedback
  pruned           spellcheck, nlp
                   ai_feedback  17 → …    running
  queue            1. spellcheck (correlation eeeeeeee, received 2026-11-29 12:00:06)
  parked           empty
  history          (oldest first)
    1. cj_assessment completed_with_failures: 17 ok / 3 failed in 2.3 s, finished 2026-11-29 12:00:03 (correlation aaaaaaaa)
        spellcheck     20 → 17  3 failed  completed_with_failures  1.0 s
        cj_assessment  17 → 17            completed_successfully   1.0 s
    2. nlp completed_successfully: 17 ok / 0 failed in 1.2 s, finished 2026-11-29 12:00:04 (correlation bbbbbbbb)
        nlp  17 → 17    completed_successfully  1.0 s
        skipped: spellcheck

Conductor (BCS, http://bcs)
  phase          status     source              at (UTC)             detail
  spellcheck     completed  event               2026-11-29 12:00:02  17 ok, 3 failed
  nlp            completed  operator            2026-11-29 12:10:00  by ann, \"ran offline\"
  cj_assessment  completed  pipeline_completed  2026-11-29 12:00:03
  processed pipelines (oldest first):
    aaaaaaaa-0000-4000-8000-000000000001  completed_with_failures  spellcheck, cj_assessment  2026-11-29 12:00:03";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn unknown_batch_and_unreachable_conductor() {
        let text = plain(View::Unknown, View::Error("connection refused".into()));
        assert!(
            text.contains("no phase has run or been recorded for this batch"),
            "{text}"
        );
        assert!(
            text.contains("the orchestrator does not know this batch"),
            "{text}"
        );
        assert!(
            text.contains("could not read its records: connection refused"),
            "{text}"
        );
    }

    #[test]
    fn phase_order_keeps_unknown_names() {
        let names = ["zeta".to_string(), "nlp".to_string()];
        let order = phase_order(names.iter());
        assert_eq!(order.first().map(String::as_str), Some("spellcheck"));
        assert_eq!(order.last().map(String::as_str), Some("zeta"));
    }
}
