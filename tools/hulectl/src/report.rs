//! The demo's final report: what each pipeline did, the failed-essay DLQ records, the
//! conductor's records and the worker's dispatch counts, and the verdict. Built from what the
//! demo observed plus the services' documents; pure.

use std::collections::BTreeMap;

use huleedu_contracts::http::bos::{BatchStatusView, PhaseRun, PipelineSummary};
use huleedu_contracts::payloads::BatchPipelineCompletedV1;
use huleedu_contracts::{FailedEssayDlqRecordV1, PhaseName};
use serde_json::Value;
use uuid::Uuid;

use crate::dlq::failed_essays_table;
use crate::event::{Body, Event};
use crate::render::{duration, list_or_dash};
use crate::status::{conductor_table, run_cells, View};
use crate::style::Style;
use crate::table::{Cell, Table};

/// The essays of a demo batch that fail spellcheck: `fail` of `essays`, spread evenly and
/// deterministically (04, 11, 17 of 20).
pub fn failing_essays(batch: &str, essays: u32, fail: u32) -> Vec<String> {
    let fail = fail.min(essays);
    (0..fail)
        .map(|i| {
            let index = (u64::from(2 * i + 1) * u64::from(essays)) / (2 * u64::from(fail));
            essay_id(batch, index as u32 + 1)
        })
        .collect()
}

/// `<batch>-e01`: the simulator's name of essay `n` (1-based, at least two digits).
pub fn essay_id(batch: &str, n: u32) -> String {
    format!("{batch}-e{n:02}")
}

/// What the demo saw of one pipeline it submitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub requested: String,
    pub correlation_id: Uuid,
    /// The pipeline's events (its correlation id), in arrival order.
    pub events: Vec<Event>,
    /// How long the demo waited before giving up, when it did.
    pub gave_up_after: Option<u64>,
}

impl Observed {
    pub fn new(requested: &str, correlation_id: Uuid) -> Self {
        Observed {
            requested: requested.to_owned(),
            correlation_id,
            events: Vec::new(),
            gave_up_after: None,
        }
    }

    /// The terminal event, if it arrived.
    pub fn terminal(&self) -> Option<&BatchPipelineCompletedV1> {
        self.events
            .iter()
            .filter_map(Event::terminal)
            .find(|t| t.correlation_id == self.correlation_id)
    }

    /// Essays reported failed in this pipeline's phase outcomes (one DLQ record each).
    pub fn failed_essay_reports(&self) -> usize {
        self.events
            .iter()
            .map(|e| match &e.body {
                Body::Outcome(o) => o.failed_essay_ids.len(),
                _ => 0,
            })
            .sum()
    }

    /// Phases dispatched (initiate commands seen).
    pub fn commanded(&self) -> Vec<PhaseName> {
        self.events
            .iter()
            .filter_map(|e| match e.body {
                Body::Command { phase, .. } => Some(phase),
                _ => None,
            })
            .collect()
    }

    /// Phase runs reconstructed from the commands and outcomes seen (when the orchestrator's
    /// history is not available).
    fn runs_from_events(&self) -> Vec<Vec<Cell>> {
        let mut rows = Vec::new();
        for (i, e) in self.events.iter().enumerate() {
            let Body::Command { phase, essays, .. } = &e.body else {
                continue;
            };
            let outcome = self.events[i..].iter().find_map(|o| match &o.body {
                Body::Outcome(out) if out.phase_name == *phase => Some((o, out)),
                _ => None,
            });
            let mut row = vec![Cell::new(phase.to_string())];
            match outcome {
                Some((o, out)) => {
                    let status = out.phase_status.to_string();
                    let took = match (e.time, o.time) {
                        (Some(a), Some(b)) => (b - a)
                            .num_microseconds()
                            .map(|us| duration(us as f64 / 1e6))
                            .unwrap_or_default(),
                        _ => String::new(),
                    };
                    row.extend([
                        Cell::new(format!("{essays} → {}", out.processed_essays.len())),
                        Cell::new(match out.failed_essay_ids.len() {
                            0 => String::new(),
                            n => format!("{n} failed"),
                        }),
                        Cell::status(&status),
                        Cell::new(took),
                    ]);
                }
                None => row.extend([
                    Cell::new(format!("{essays} → …")),
                    Cell::new(""),
                    Cell::dim("no outcome"),
                    Cell::new(""),
                ]),
            }
            rows.push(row);
        }
        rows
    }
}

/// Everything the report shows.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoReport {
    pub batch_id: String,
    pub essays: u32,
    pub failing: Vec<String>,
    pub pipelines: Vec<Observed>,
    /// The orchestrator's status document (its history has the runs).
    pub bos: View<BatchStatusView>,
    /// The conductor's phase records.
    pub bcs: View,
    /// The simulator's dispatch counts (`GET /v1/counts/{batch}`).
    pub counts: View,
    /// Failed-essay DLQ records of the batch seen during the demo.
    pub dlq: Vec<FailedEssayDlqRecordV1>,
}

/// Dispatch counts per phase: (dispatched, deliveries).
pub fn dispatch_counts(counts: &Value) -> BTreeMap<String, (u64, u64)> {
    counts
        .get("phases")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(phase, c)| {
                    let n = |k: &str| c.get(k).and_then(Value::as_u64).unwrap_or(0);
                    (phase.clone(), (n("dispatched"), n("deliveries")))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Did the demo succeed?
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Pipelines without a terminal event.
    pub not_ended: Vec<String>,
    /// Phases dispatched more than once for the batch, with how often.
    pub ran_twice: Vec<(String, u64)>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.not_ended.is_empty() && self.ran_twice.is_empty()
    }
}

/// The verdict: every pipeline ended, no phase ran twice (by the simulator's counts and by the
/// commands seen on the broker).
pub fn verdict(r: &DemoReport) -> Verdict {
    let not_ended = r
        .pipelines
        .iter()
        .filter(|p| p.terminal().is_none())
        .map(|p| p.requested.clone())
        .collect();
    let mut runs: BTreeMap<String, u64> = BTreeMap::new();
    for p in &r.pipelines {
        for phase in p.commanded() {
            *runs.entry(phase.to_string()).or_default() += 1;
        }
    }
    if let Some(c) = r.counts.doc() {
        for (phase, (dispatched, _)) in dispatch_counts(c) {
            let n = runs.entry(phase).or_default();
            *n = (*n).max(dispatched);
        }
    }
    let ran_twice = runs.into_iter().filter(|(_, n)| *n > 1).collect();
    Verdict {
        not_ended,
        ran_twice,
    }
}

fn history_of<'a>(
    bos: &'a View<BatchStatusView>,
    correlation: &Uuid,
) -> Option<&'a PipelineSummary> {
    bos.doc()?
        .history
        .iter()
        .find(|h| h.pipeline_id == *correlation)
}

fn pipeline_section(
    n: usize,
    p: &Observed,
    bos: &View<BatchStatusView>,
    style: &Style,
) -> Vec<String> {
    let mut out = Vec::new();
    let terminal = p.terminal();
    let history = history_of(bos, &p.correlation_id);
    let head = match terminal {
        Some(t) => {
            let status = t.final_status.to_string();
            format!(
                "{n}. {} — {} in {}",
                p.requested,
                style.status(&status, &status),
                duration(t.processing_duration_seconds)
            )
        }
        None => format!(
            "{n}. {} — {}",
            p.requested,
            style.bad(&match p.gave_up_after {
                Some(s) => format!("did NOT end within {s} s"),
                None => "did NOT end".to_owned(),
            })
        ),
    };
    out.push(style.bold(&head));
    let field = |name: &str, value: String| format!("   {name:<16} {value}");
    out.push(field("correlation id", p.correlation_id.to_string()));
    let runs: &[PhaseRun] = history.map_or(&[], |h| &h.runs);
    let executed: Vec<String> = if !runs.is_empty() {
        runs.iter().map(|r| r.phase.to_string()).collect()
    } else if let Some(t) = terminal {
        t.completed_phases.clone()
    } else {
        p.commanded().iter().map(|p| p.to_string()).collect()
    };
    let skipped: Vec<String> = match terminal {
        Some(t) => t.skipped_phases.clone(),
        None => p
            .events
            .iter()
            .filter_map(|e| match &e.body {
                Body::Skipped(s) => Some(s.phase_name.clone()),
                _ => None,
            })
            .collect(),
    };
    out.push(field("phases executed", list_or_dash(&executed)));
    out.push(field(
        "phases skipped",
        if skipped.is_empty() {
            "—".to_owned()
        } else {
            format!("{} (already completed)", skipped.join(", "))
        },
    ));
    if let Some(t) = terminal {
        out.push(field(
            "essays",
            format!(
                "{} successful, {} failed",
                t.successful_essay_count, t.failed_essay_count
            ),
        ));
        if let Some(reason) = &t.failure_reason {
            out.push(field("failure reason", style.bad(reason)));
        }
    }
    let mut t = Table::new(3).header(["phase", "essays in → out", "failed", "status", "took"]);
    if runs.is_empty() {
        for row in p.runs_from_events() {
            t.row(row);
        }
    } else {
        for r in runs {
            t.row(run_cells(r));
        }
    }
    if t.is_empty() {
        out.push("   no phase ran: everything was already completed".to_owned());
    } else {
        out.extend(t.lines(style));
    }
    out
}

fn counts_section(r: &DemoReport, style: &Style) -> Vec<String> {
    let mut out = vec![style
        .bold("Simulator dispatch counts (initiate commands the worker received for this batch)")];
    let doc = match &r.counts {
        View::Doc(d) => d,
        View::Unknown => {
            out.push("  the simulator has no counts for this batch".to_owned());
            return out;
        }
        View::Error(e) => {
            out.push(format!(
                "  {}",
                style.bad(&format!("could not read them: {e}"))
            ));
            return out;
        }
    };
    let counts = dispatch_counts(doc);
    let mut t = Table::new(2).header(["phase", "dispatched", "deliveries", ""]);
    let order = PhaseName::ALL
        .iter()
        .map(|p| p.to_string())
        .filter(|p| p != "student_matching" || counts.contains_key(p));
    for phase in order {
        let (dispatched, deliveries) = counts.get(&phase).copied().unwrap_or((0, 0));
        let verdict = match dispatched {
            0 => Cell::dim("never dispatched"),
            1 => Cell::good("ran once"),
            n => Cell::bad(format!("RAN {n} TIMES")),
        };
        t.row([
            Cell::new(phase),
            Cell::new(dispatched.to_string()),
            Cell::new(deliveries.to_string()),
            verdict,
        ]);
    }
    out.extend(t.lines(style));
    out
}

/// The report as text.
pub fn render_report(r: &DemoReport, style: &Style) -> String {
    let rule = "=".repeat(78);
    let mut out = vec![
        rule.clone(),
        style.bold(&format!("REPORT  batch {}", r.batch_id)),
        rule.clone(),
        format!(
            "{} essays; {} set to fail spellcheck{}",
            r.essays,
            r.failing.len(),
            if r.failing.is_empty() {
                String::new()
            } else {
                format!(": {}", r.failing.join(", "))
            }
        ),
        String::new(),
        style.bold("Pipelines (in the order they were submitted)"),
    ];
    for (i, p) in r.pipelines.iter().enumerate() {
        out.extend(pipeline_section(i + 1, p, &r.bos, style));
        out.push(String::new());
    }
    if let View::Error(e) = &r.bos {
        out.push(style.bad(&format!(
            "(the orchestrator's history could not be read: {e}; runs above are from the events)"
        )));
        out.push(String::new());
    }
    out.push(style.bold(&format!(
        "Failed-essay DLQ (huleedu.pipelines.failed_essays.DLQ): {} record{} for this batch",
        r.dlq.len(),
        if r.dlq.len() == 1 { "" } else { "s" }
    )));
    if !r.dlq.is_empty() {
        out.extend(failed_essays_table(&r.dlq, 2, true).lines(style));
    }
    out.push(String::new());
    out.push(
        style.bold("Conductor phase records (batch-level completion, with where each came from)"),
    );
    match &r.bcs {
        View::Doc(d) => {
            let t = conductor_table(d, 2);
            if t.is_empty() {
                out.push("  no records".to_owned());
            } else {
                out.extend(t.lines(style));
            }
        }
        View::Unknown => out.push("  no records".to_owned()),
        View::Error(e) => out.push(format!(
            "  {}",
            style.bad(&format!("could not read them: {e}"))
        )),
    }
    out.push(String::new());
    out.extend(counts_section(r, style));
    out.push(String::new());
    let v = verdict(r);
    let ended = r.pipelines.len() - v.not_ended.len();
    if v.ok() {
        out.push(style.good(&style.bold(&format!(
            "RESULT: all {ended} pipelines ended; no phase ran twice."
        ))));
    } else {
        let mut problems = Vec::new();
        if !v.not_ended.is_empty() {
            problems.push(format!("did not end: {}", v.not_ended.join(", ")));
        }
        for (phase, n) in &v.ran_twice {
            problems.push(format!("{phase} ran {n} times"));
        }
        out.push(style.bad(&style.bold(&format!("RESULT: FAILED — {}.", problems.join("; ")))));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{decode, Record};
    use crate::fixtures as fx;
    use huleedu_contracts::topics;
    use serde_json::json;

    #[test]
    fn failing_essays_are_spread_evenly() {
        assert_eq!(failing_essays("b", 20, 3), ["b-e04", "b-e11", "b-e17"]);
        assert_eq!(failing_essays("b", 20, 0), Vec::<String>::new());
        assert_eq!(
            failing_essays("b", 2, 5),
            ["b-e01", "b-e02"],
            "at most every essay"
        );
        assert_eq!(failing_essays("b", 1000, 1), ["b-e501"]);
        let all = failing_essays("b", 7, 7);
        assert_eq!(all.len(), 7);
        assert_eq!(all.last().map(String::as_str), Some("b-e07"));
    }

    fn ev(topic: &str, payload: Vec<u8>) -> Event {
        decode(&Record::new(topic, Some("b1"), payload))
    }

    fn with_corr(payload: Vec<u8>, corr: &str) -> Vec<u8> {
        let mut v: Value = serde_json::from_slice(&payload).unwrap();
        v["correlation_id"] = json!(corr);
        if v["data"].get("correlation_id").is_some() {
            v["data"]["correlation_id"] = json!(corr);
        }
        v.to_string().into_bytes()
    }

    fn cj_observed() -> Observed {
        let c = fx::CJ_PIPELINE;
        let mut o = Observed::new("cj_assessment", c.parse().unwrap());
        o.events = vec![
            ev(
                topics::SPELLCHECK_INITIATE_COMMAND,
                with_corr(fx::command("b1", 20), c),
            ),
            ev(
                topics::ELS_BATCH_PHASE_OUTCOME,
                with_corr(
                    fx::outcome("b1", "spellcheck", 17, &["b1-e04", "b1-e11", "b1-e17"]),
                    c,
                ),
            ),
            ev(
                topics::BATCH_PIPELINE_COMPLETED,
                with_corr(
                    fx::completed(
                        "b1",
                        "cj_assessment",
                        "completed_with_failures",
                        &["spellcheck", "cj_assessment"],
                        &[],
                        17,
                        3,
                        2.31,
                        None,
                    ),
                    c,
                ),
            ),
        ];
        o
    }

    fn nlp_observed() -> Observed {
        let c = fx::NLP_PIPELINE;
        let mut o = Observed::new("nlp", c.parse().unwrap());
        o.events = vec![
            ev(
                topics::BATCH_PHASE_SKIPPED,
                with_corr(fx::skipped("b1", "spellcheck"), c),
            ),
            ev(
                topics::BATCH_PIPELINE_COMPLETED,
                with_corr(
                    fx::completed(
                        "b1",
                        "nlp",
                        "completed_successfully",
                        &["nlp"],
                        &["spellcheck"],
                        17,
                        0,
                        1.2,
                        None,
                    ),
                    c,
                ),
            ),
        ];
        o
    }

    fn report() -> DemoReport {
        let mut ai = Observed::new(
            "ai_feedback",
            "cccccccc-0000-4000-8000-000000000003".parse().unwrap(),
        );
        ai.gave_up_after = Some(120);
        let dlq = (["b1-e04", "b1-e11", "b1-e17"])
            .iter()
            .map(|e| {
                match ev(
                    topics::FAILED_ESSAYS_DLQ,
                    fx::failed_essay("b1", e, fx::CJ_PIPELINE),
                )
                .body
                {
                    Body::FailedEssay(f) => f,
                    _ => unreachable!(),
                }
            })
            .collect();
        DemoReport {
            batch_id: "b1".into(),
            essays: 20,
            failing: failing_essays("b1", 20, 3),
            pipelines: vec![cj_observed(), nlp_observed(), ai],
            bos: View::Doc(fx::bos_status()),
            bcs: View::Doc(fx::bcs_phases()),
            counts: View::Doc(json!({"batch_id": "b1", "phases": {
                "spellcheck": {"dispatched": 1, "deliveries": 1},
                "cj_assessment": {"dispatched": 1, "deliveries": 2},
                "nlp": {"dispatched": 1, "deliveries": 1},
                "ai_feedback": {"dispatched": 1, "deliveries": 1}}})),
            dlq,
        }
    }

    #[test]
    fn full_report() {
        let text = render_report(&report(), &Style::plain());
        let expected = "\
==============================================================================
REPORT  batch b1
==============================================================================
20 essays; 3 set to fail spellcheck: b1-e04, b1-e11, b1-e17

Pipelines (in the order they were submitted)
1. cj_assessment — completed_with_failures in 2.3 s
   correlation id   aaaaaaaa-0000-4000-8000-000000000001
   phases executed  spellcheck, cj_assessment
   phases skipped   —
   essays           17 successful, 3 failed
   phase          essays in → out  failed    status                   took
   spellcheck     20 → 17          3 failed  completed_with_failures  1.0 s
   cj_assessment  17 → 17                    completed_successfully   1.0 s

2. nlp — completed_successfully in 1.2 s
   correlation id   bbbbbbbb-0000-4000-8000-000000000002
   phases executed  nlp
   phases skipped   spellcheck (already completed)
   essays           17 successful, 0 failed
   phase  essays in → out  failed  status                  took
   nlp    17 → 17                  completed_successfully  1.0 s

3. ai_feedback — did NOT end within 120 s
   correlation id   cccccccc-0000-4000-8000-000000000003
   phases executed  —
   phases skipped   —
   no phase ran: everything was already completed

Failed-essay DLQ (huleedu.pipelines.failed_essays.DLQ): 3 records for this batch
  failed at (UTC)      essay   phase       status                   reason                      pipeline
  2026-11-29 12:00:02  b1-e04  spellcheck  completed_with_failures  listed in failed_essay_ids  aaaaaaaa
  2026-11-29 12:00:02  b1-e11  spellcheck  completed_with_failures  listed in failed_essay_ids  aaaaaaaa
  2026-11-29 12:00:02  b1-e17  spellcheck  completed_with_failures  listed in failed_essay_ids  aaaaaaaa

Conductor phase records (batch-level completion, with where each came from)
  phase          status     source              at (UTC)             detail
  spellcheck     completed  event               2026-11-29 12:00:02  17 ok, 3 failed
  nlp            completed  operator            2026-11-29 12:10:00  by ann, \"ran offline\"
  cj_assessment  completed  pipeline_completed  2026-11-29 12:00:03

Simulator dispatch counts (initiate commands the worker received for this batch)
  phase          dispatched  deliveries
  spellcheck     1           1           ran once
  nlp            1           1           ran once
  cj_assessment  1           2           ran once
  ai_feedback    1           1           ran once

RESULT: FAILED — did not end: ai_feedback.";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn verdicts() {
        let mut r = report();
        r.pipelines.pop();
        let v = verdict(&r);
        assert!(v.ok(), "{v:?}");
        assert!(render_report(&r, &Style::plain())
            .ends_with("RESULT: all 2 pipelines ended; no phase ran twice."));
        r.counts = View::Doc(json!({"phases": {"spellcheck": {"dispatched": 2, "deliveries": 2}}}));
        let v = verdict(&r);
        assert_eq!(v.ran_twice, [("spellcheck".to_owned(), 2)]);
        let text = render_report(&r, &Style::plain());
        assert!(text.contains("RAN 2 TIMES"), "{text}");
        assert!(
            text.ends_with("RESULT: FAILED — spellcheck ran 2 times."),
            "{text}"
        );
    }

    #[test]
    fn a_phase_commanded_twice_on_the_broker_counts_without_the_simulator() {
        let mut r = report();
        r.pipelines.pop();
        r.counts = View::Error("connection refused".into());
        let twice = r.pipelines[0].events[0].clone();
        r.pipelines[1].events.insert(0, twice);
        assert_eq!(verdict(&r).ran_twice, [("spellcheck".to_owned(), 2)]);
    }

    #[test]
    fn runs_come_from_events_without_the_orchestrator() {
        let mut r = report();
        r.bos = View::Error("connection refused".into());
        let text = render_report(&r, &Style::plain());
        assert!(
            text.contains("   spellcheck  20 → 17          3 failed  completed_with_failures"),
            "{text}"
        );
        assert!(text.contains("runs above are from the events"), "{text}");
    }

    #[test]
    fn failed_essay_reports_count_dlq_records_to_expect() {
        assert_eq!(cj_observed().failed_essay_reports(), 3);
        assert_eq!(nlp_observed().failed_essay_reports(), 0);
    }
}
