//! A batch's pipelines as pictures: one SVG timeline per pipeline, each phase a bar from its
//! command to its outcome, skipped phases marked with the reason. Pure: the views in, markup out
//! (time passed in).

use huleedu_contracts::http::bos::{
    ActivePipelineView, BatchStatusView, PhaseRun, PipelineSummary, RunStatus,
};
use huleedu_contracts::{PhaseName, Timestamp};
use maud::{html, Markup};

/// How a phase's bar is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    Succeeded,
    WithFailures,
    Failed,
    TimedOut,
    Running,
    Skipped,
}

impl BarKind {
    /// The CSS class of the bar (colours in console.css).
    pub fn class(self) -> &'static str {
        match self {
            BarKind::Succeeded => "bar-ok",
            BarKind::WithFailures => "bar-partial",
            BarKind::Failed => "bar-failed",
            BarKind::TimedOut => "bar-timeout",
            BarKind::Running => "bar-running",
            BarKind::Skipped => "bar-skipped",
        }
    }

    fn of(status: Option<RunStatus>) -> Self {
        match status {
            None => BarKind::Running,
            Some(RunStatus::CompletedSuccessfully) => BarKind::Succeeded,
            Some(RunStatus::CompletedWithFailures) => BarKind::WithFailures,
            Some(RunStatus::FailedCritically) => BarKind::Failed,
            Some(RunStatus::TimedOut) => BarKind::TimedOut,
        }
    }
}

/// One row of a timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub phase: PhaseName,
    pub kind: BarKind,
    /// `None` for a skipped phase (drawn across the row).
    pub start: Option<Timestamp>,
    /// `None` while running (drawn up to now).
    pub end: Option<Timestamp>,
    /// What the bar says (its label and tooltip).
    pub text: String,
}

/// One pipeline of the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    pub pipeline: String,
    /// `running`, or the terminal event's `final_status`.
    pub status: String,
    pub from: Timestamp,
    /// `None` while running.
    pub to: Option<Timestamp>,
    pub bars: Vec<Bar>,
}

fn run_text(r: &PhaseRun) -> String {
    match (r.status, r.essays_out, r.failed) {
        (None, _, _) => format!("{}: running, {} essays sent", r.phase, r.essays_in),
        (Some(s), out, failed) => format!(
            "{}: {s}, {} of {} essays ok, {} failed",
            r.phase,
            out.unwrap_or(0),
            r.essays_in,
            failed.unwrap_or(0)
        ),
    }
}

fn bars(
    runs: &[PhaseRun],
    skipped: &[PhaseName],
    skip_reason: &dyn Fn(PhaseName) -> String,
) -> Vec<Bar> {
    let mut out: Vec<Bar> = skipped
        .iter()
        .map(|p| Bar {
            phase: *p,
            kind: BarKind::Skipped,
            start: None,
            end: None,
            text: format!("{p}: skipped — {}", skip_reason(*p)),
        })
        .collect();
    out.extend(runs.iter().map(|r| Bar {
        phase: r.phase,
        kind: BarKind::of(r.status),
        start: Some(r.started_at),
        end: r.finished_at,
        text: run_text(r),
    }));
    out
}

fn finished_lane(p: &PipelineSummary, skip_reason: &dyn Fn(PhaseName) -> String) -> Lane {
    Lane {
        pipeline: p.requested_pipeline.clone(),
        status: p.final_status.as_str().to_owned(),
        from: p.received_at,
        to: Some(p.finished_at),
        bars: bars(&p.runs, &p.skipped_phases, skip_reason),
    }
}

fn active_lane(a: &ActivePipelineView, skip_reason: &dyn Fn(PhaseName) -> String) -> Lane {
    Lane {
        pipeline: a.requested_pipeline.clone(),
        status: "running".to_owned(),
        from: a.received_at,
        to: None,
        bars: bars(&a.runs, &a.pruned_phases, skip_reason),
    }
}

/// The batch's pipelines, the running one first, then the finished ones newest first.
pub fn lanes(view: &BatchStatusView, skip_reason: &dyn Fn(PhaseName) -> String) -> Vec<Lane> {
    let mut out: Vec<Lane> = view
        .active_pipeline
        .iter()
        .map(|a| active_lane(a, skip_reason))
        .collect();
    out.extend(
        view.history
            .iter()
            .rev()
            .map(|p| finished_lane(p, skip_reason)),
    );
    out
}

const WIDTH: f64 = 760.0;
const LABEL: f64 = 130.0;
const ROW: f64 = 26.0;
const AXIS: f64 = 22.0;
/// Room a bar's label needs after the bar.
const LABEL_ROOM: f64 = 130.0;

fn ms(t: Timestamp) -> i64 {
    t.0.timestamp_millis()
}

/// A duration for people: `850 ms`, `4.2 s`, `3 min 5 s`.
pub fn human_duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// The SVG of one lane: a row per phase, bars placed on the pipeline's own time axis (request
/// received → terminal event, or now).
pub fn svg(lane: &Lane, now: Timestamp) -> Markup {
    let t0 = ms(lane.from);
    let t1 = lane.to.map_or(ms(now), ms).max(t0 + 1);
    let span = (t1 - t0) as f64;
    let plot = WIDTH - LABEL - 10.0;
    let x = |t: i64| LABEL + ((t - t0) as f64 / span).clamp(0.0, 1.0) * plot;
    let height = AXIS + ROW * lane.bars.len().max(1) as f64 + 4.0;
    html! {
        svg class="timeline" xmlns="http://www.w3.org/2000/svg" role="img"
            width=(WIDTH) height=(height) viewBox=(format!("0 0 {WIDTH} {height}")) {
            title { (lane.pipeline) " — " (lane.status) }
            line class="axis" x1=(LABEL) y1=(AXIS - 6.0) x2=(WIDTH - 10.0) y2=(AXIS - 6.0) {}
            text class="tick" x=(LABEL) y=(AXIS - 10.0) { "0" }
            text class="tick" x=(WIDTH - 10.0) y=(AXIS - 10.0) text-anchor="end" {
                (human_duration(t1 - t0)) @if lane.to.is_none() { " (running)" }
            }
            @if lane.bars.is_empty() {
                text class="note" x=(LABEL) y=(AXIS + 16.0) { "no phase dispatched" }
            }
            @for (i, bar) in lane.bars.iter().enumerate() {
                @let y = AXIS + ROW * i as f64;
                g class=(format!("row {}", bar.kind.class())) data-phase=(bar.phase.as_str()) {
                    title { (bar.text) }
                    text class="phase" x="4" y=(y + 16.0) { (bar.phase.as_str()) }
                    @match bar.start {
                        None => {
                            rect class=(bar.kind.class()) x=(LABEL) y=(y + 3.0) width=(plot) height=(ROW - 8.0) rx="3" {}
                            text class="in-skipped" x=(LABEL + 8.0) y=(y + 16.0) { "skipped — " (bar.text.split_once(" — ").map_or("", |(_, r)| r)) }
                        }
                        Some(start) => {
                            @let x0 = x(ms(start));
                            @let x1 = x(bar.end.map_or(ms(now), ms)).max(x0 + 3.0);
                            rect class=(bar.kind.class()) x=(x0) y=(y + 3.0) width=(x1 - x0) height=(ROW - 8.0) rx="3" {}
                            @let d = bar.end.map(|e| human_duration(ms(e) - ms(start)));
                            @let label = match &d {
                                Some(d) => format!("{} · {d}", bar.kind.class().trim_start_matches("bar-")),
                                None => bar.kind.class().trim_start_matches("bar-").to_owned(),
                            };
                            // After the bar when there is room, else inside it (white).
                            @if x1 + 4.0 + LABEL_ROOM <= WIDTH {
                                text class="after-bar" x=(x1 + 4.0) y=(y + 16.0) { (label) }
                            } @else {
                                text class="in-bar" x=(x1 - 6.0) y=(y + 16.0) text-anchor="end" { (label) }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use huleedu_contracts::BatchStatus;
    use uuid::Uuid;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn run(
        phase: PhaseName,
        start: &str,
        end: Option<&str>,
        status: Option<RunStatus>,
    ) -> PhaseRun {
        PhaseRun {
            phase,
            command_id: Uuid::nil(),
            essays_in: 4,
            essays_out: end.map(|_| 3),
            failed: end.map(|_| 1),
            status,
            started_at: ts(start),
            finished_at: end.map(ts),
        }
    }

    fn finished() -> PipelineSummary {
        PipelineSummary {
            pipeline_id: Uuid::nil(),
            request_id: Uuid::nil(),
            requested_pipeline: "nlp".into(),
            final_status: BatchStatus::CompletedWithFailures,
            completed_phases: vec![PhaseName::Nlp],
            skipped_phases: vec![PhaseName::Spellcheck],
            successful_essay_count: 3,
            failed_essay_count: 1,
            processing_duration_seconds: 2.0,
            failure_reason: None,
            received_at: ts("2026-12-02T10:00:00Z"),
            finished_at: ts("2026-12-02T10:00:02Z"),
            runs: vec![run(
                PhaseName::Nlp,
                "2026-12-02T10:00:01Z",
                Some("2026-12-02T10:00:02Z"),
                Some(RunStatus::CompletedWithFailures),
            )],
            terminal_event_id: Uuid::nil(),
        }
    }

    #[test]
    fn a_finished_pipeline_draws_skipped_and_executed_phases() {
        let lane = finished_lane(&finished(), &|p| format!("{p} completed earlier"));
        assert_eq!(lane.bars.len(), 2);
        assert_eq!(lane.bars[0].kind, BarKind::Skipped);
        assert_eq!(lane.bars[1].kind, BarKind::WithFailures);
        let svg = svg(&lane, ts("2026-12-02T11:00:00Z")).into_string();
        assert!(
            svg.contains("skipped — spellcheck completed earlier"),
            "{svg}"
        );
        // The nlp bar runs from the middle (1 s of 2) to the end of the plot.
        let plot = WIDTH - LABEL - 10.0;
        assert!(
            svg.contains(&format!("x=\"{}\"", LABEL + plot / 2.0)),
            "{svg}"
        );
        assert!(svg.contains("2.0 s"), "the axis says how long: {svg}");
        assert!(svg.contains("class=\"bar-partial\""), "{svg}");
    }

    #[test]
    fn a_running_phase_reaches_now_and_text_is_escaped() {
        let mut p = finished();
        p.requested_pipeline = "<script>x</script>".into();
        let mut lane = finished_lane(&p, &|_| "a<b".into());
        lane.to = None;
        lane.bars[1].end = None;
        lane.bars[1].kind = BarKind::Running;
        let svg = svg(&lane, ts("2026-12-02T10:00:03Z")).into_string();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;x&lt;/script&gt;"), "{svg}");
        assert!(svg.contains("a&lt;b"), "{svg}");
        assert!(svg.contains("(running)"), "{svg}");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(850), "850 ms");
        assert_eq!(human_duration(4200), "4.2 s");
        assert_eq!(human_duration(185_000), "3 min 5 s");
    }
}
