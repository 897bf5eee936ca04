//! `hulectl demo`: the newcomer's demonstration against a running local stack.
//!
//! 1. Checks that the broker and the three services answer (waits for them to be ready).
//! 2. Starts following every topic, then registers a batch with the reference worker, some of
//!    whose essays fail spellcheck.
//! 3. Runs `cj_assessment`, `nlp` and `ai_feedback` one after the other: submits each, shows its
//!    events as they happen, waits for its terminal event.
//! 4. Waits (bounded) for the conductor to catch up: every failed essay on the DLQ, every
//!    pipeline processed.
//! 5. Prints the report ([`crate::report`]) and exits non-zero when a pipeline did not end or a
//!    phase ran twice.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use huleedu_contracts::http::bos::BatchStatusView;
use huleedu_contracts::FailedEssayDlqRecordV1;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::cli::DemoArgs;
use crate::commands::{
    all_topics, follow_until, follower, pipeline_request, view_of, Ctx, Followed, EXIT_FAILED,
    EXIT_OK, LINGER,
};
use crate::event::{decode, Body, Event, Record, Trace};
use crate::http::{segment, HttpError, Service};
use crate::kafka::{self, Follower, StartAt};
use crate::render::Lines;
use crate::report::{failing_essays, render_report, verdict, DemoReport, Observed};
use crate::style::Style;

/// The pipelines the demo runs, in order.
pub const PIPELINES: [&str; 3] = ["cj_assessment", "nlp", "ai_feedback"];

/// `user_id` of the demo's requests.
const DEMO_USER: &str = "hulectl-demo";

/// How long the demo waits for services to become ready.
const READY_WAIT: Duration = Duration::from_secs(60);
/// How long an unreachable service may stay unreachable before the demo gives up.
const REACH_WAIT: Duration = Duration::from_secs(5);
/// How long the demo waits for the conductor to catch up after the last pipeline.
const SETTLE_WAIT: Duration = Duration::from_secs(20);

/// Waits until the broker answers and every service reports ready.
async fn preflight(ctx: &Ctx) -> anyhow::Result<()> {
    let kafka = ctx.kafka.clone();
    tokio::task::spawn_blocking(move || kafka::check_broker(&kafka)).await??;
    for service in [
        Service::Conductor,
        Service::Orchestrator,
        Service::Simulator,
    ] {
        let start = Instant::now();
        let mut said = false;
        loop {
            match ctx.api.ready(service).await {
                Ok(true) => break,
                Ok(false) if start.elapsed() < READY_WAIT => {}
                Ok(false) => bail!(
                    "{} at {} did not become ready within {} s (see its /readyz)",
                    service.name(),
                    ctx.api.url(service, ""),
                    READY_WAIT.as_secs()
                ),
                // Just started? Give it a moment to open its port.
                Err(_) if start.elapsed() < REACH_WAIT => {}
                Err(e) => return Err(e.into()),
            }
            if !said {
                crate::say!("waiting for {} to be ready…", service.name());
                said = true;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(())
}

/// The pipeline ids the conductor has processed for the batch.
async fn processed_pipelines(ctx: &Ctx, batch: &str) -> Result<Vec<Uuid>, HttpError> {
    let doc: Value = ctx
        .api
        .get(
            Service::Conductor,
            &format!("/internal/v1/batches/{}/phases", segment(batch)),
        )
        .await?;
    Ok(doc
        .get("processed_pipelines")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| p.get("pipeline_id").and_then(Value::as_str))
                .filter_map(|s| s.parse().ok())
                .collect()
        })
        .unwrap_or_default())
}

/// The failed-essay records among `events`, each once (a re-sent record has the same
/// `event_id`).
fn dlq_records(events: &[Event]) -> Vec<FailedEssayDlqRecordV1> {
    let mut ids = std::collections::HashSet::new();
    events
        .iter()
        .filter(|e| e.event_id.is_none_or(|id| ids.insert(id)))
        .filter_map(|e| match &e.body {
            Body::FailedEssay(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

/// Waits until the conductor has written every expected failed-essay record and processed
/// every pipeline that ended, collecting the batch's events meanwhile. Bounded.
async fn settle(
    ctx: &Ctx,
    f: &mut Follower,
    batch: &str,
    observed: &[Observed],
    seen: &mut Vec<Event>,
) {
    let expected_dlq: usize = observed.iter().map(Observed::failed_essay_reports).sum();
    let ended: Vec<Uuid> = observed
        .iter()
        .filter(|o| o.terminal().is_some())
        .map(|o| o.correlation_id)
        .collect();
    let ours: Vec<Uuid> = observed.iter().map(|o| o.correlation_id).collect();
    let deadline = Instant::now() + SETTLE_WAIT;
    loop {
        let dlq_seen = seen
            .iter()
            .filter(|e| matches!(e.body, Body::FailedEssay(_)))
            .filter(|e| e.pipeline_correlation().is_some_and(|c| ours.contains(&c)))
            .filter_map(|e| e.event_id)
            .collect::<std::collections::HashSet<_>>()
            .len();
        let processed = processed_pipelines(ctx, batch).await.unwrap_or_default();
        let caught_up = ended.iter().all(|c| processed.contains(c));
        if dlq_seen >= expected_dlq && caught_up {
            return;
        }
        if Instant::now() > deadline {
            crate::say!(
                "note: after {} s the conductor has written {dlq_seen} of {expected_dlq} failed-essay \
                 records and processed {} of {} pipelines; reporting what is there",
                SETTLE_WAIT.as_secs(),
                ended.iter().filter(|c| processed.contains(c)).count(),
                ended.len()
            );
            return;
        }
        let slice = Instant::now() + Duration::from_millis(200);
        follow_until(f, Some(slice), |ev| {
            if ev.is_for_batch(batch) {
                seen.push(ev);
            }
            ControlFlow::Continue(())
        })
        .await;
    }
}

/// The progress of one pipeline of the demo: prints its events (and the batch's readiness),
/// remembers every event of the batch, and what it saw of the pipeline.
struct Run<'a> {
    batch: &'a str,
    obs: Observed,
    trace: Trace,
    seen: &'a mut Vec<Event>,
    lines: &'a mut Lines,
    style: Style,
}

impl Run<'_> {
    /// Takes an event; true when it is the pipeline's terminal event.
    fn handle(&mut self, ev: Event) -> bool {
        if !ev.is_for_batch(self.batch) {
            return false;
        }
        let mine = ev.pipeline_correlation() == Some(self.obs.correlation_id);
        let shown = match ev.body {
            // Shown when it was published (see the caller).
            Body::Request(_) => false,
            Body::Ready(_) | Body::Provisioned(_) => true,
            _ => mine,
        };
        if shown {
            crate::say!("  {}", self.lines.line(&ev, &self.style));
        }
        self.seen.push(ev.clone());
        if !mine {
            return false;
        }
        self.trace.observe(&ev);
        let terminal = ev
            .terminal()
            .is_some_and(|t| t.correlation_id == self.obs.correlation_id);
        self.obs.events.push(ev);
        terminal
    }
}

/// What to try next on the demo batch.
pub fn explore(batch: &str, sim_url: &str) -> String {
    [
        "Explore this batch further:".to_owned(),
        format!("  hulectl status --batch {batch}                  # both services' view of it"),
        format!("  hulectl dlq list --batch {batch}                # its failed essays"),
        format!("  hulectl submit --batch {batch} --pipeline comprehensive --wait   # all done already: nothing runs again"),
        "To retry the failed essays, first make the reference worker stop failing them:".to_owned(),
        format!("  curl -s -X POST {sim_url}/v1/batches/{batch}/overrides -H 'content-type: application/json' -d '{{}}'"),
        format!("  hulectl retry --batch {batch} --phase spellcheck --reason \"texts fixed\" --wait   # needs OPERATOR_TOKEN"),
    ]
    .join("\n")
}

/// The report's last line: the batch's page in the operator console.
pub fn console_line(console_url: &str, batch: &str) -> String {
    format!(
        "Console: {}/batches/{}   (its pipelines as timelines, records, dead letters, actions)",
        console_url.trim_end_matches('/'),
        crate::http::segment(batch)
    )
}

/// Runs the demonstration; the exit code says whether every pipeline ended and no phase ran
/// twice.
pub async fn demo(ctx: &Ctx, a: DemoArgs) -> anyhow::Result<u8> {
    if a.fail > a.essays {
        bail!(
            "--fail ({}) cannot be more than --essays ({})",
            a.fail,
            a.essays
        );
    }
    let s = ctx.style;
    let batch = a
        .batch
        .clone()
        .unwrap_or_else(|| format!("demo-{}", &Uuid::new_v4().simple().to_string()[..8]));
    let failing = failing_essays(&batch, a.essays, a.fail);
    crate::say!(
        "{}",
        s.bold(&format!(
            "HuleEdu demo: batch {batch}, {} essays, {} of which fail spellcheck",
            a.essays, a.fail
        ))
    );
    crate::say!(
        "Pipelines {} run one after the other on the same batch; phases already completed are skipped.",
        PIPELINES.join(", then ")
    );
    crate::say!("Event lines: time (UTC), pipeline correlation id, topic, what happened.");
    crate::say!();

    preflight(ctx).await?;
    let mut f = follower(ctx, all_topics(), StartAt::Now).await?;
    if !f.missing.is_empty() {
        crate::say!(
            "note: not on the broker yet, so not followed: {}",
            f.missing.join(", ")
        );
    }

    let registered: Value = ctx
        .api
        .post(
            Service::Simulator,
            "/v1/batches",
            &json!({"batch_id": batch, "essay_count": a.essays, "fail": {"spellcheck": failing}}),
            None,
        )
        .await
        .context("registering the demo batch with the reference worker")?;
    let essay_count = registered
        .get("essays")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    crate::say!(
        "registered batch {batch} with the reference worker: {essay_count} essays; it publishes BatchEssaysReady"
    );

    let mut seen: Vec<Event> = Vec::new();
    let mut observed: Vec<Observed> = Vec::new();
    let mut lines = Lines::default();
    for pipeline in PIPELINES {
        let correlation = Uuid::new_v4();
        let (_, msg) = pipeline_request(&batch, pipeline, DEMO_USER, correlation)?;
        crate::say!();
        crate::say!(
            "{}",
            s.bold(&format!(
                "▶ pipeline {pipeline} (correlation id {correlation})"
            ))
        );
        kafka::publish(&ctx.kafka, &msg).await?;
        // Show the request as published: its copy on the broker may reach this reader after
        // the orchestrator's first answers (different topics), which would read backwards.
        let request_record = Record::new(&msg.topic, Some(&msg.key), msg.payload.clone());
        crate::say!("  {}", lines.line(&decode(&request_record), &s));
        let mut run = Run {
            batch: &batch,
            obs: Observed::new(pipeline, correlation),
            trace: Trace::default(),
            seen: &mut seen,
            lines: &mut lines,
            style: s,
        };
        let deadline = Instant::now() + Duration::from_secs(a.timeout);
        let end = follow_until(&mut f, Some(deadline), |ev| {
            if run.handle(ev) {
                ControlFlow::Break(run.obs.events.last().cloned().expect("just added"))
            } else {
                ControlFlow::Continue(())
            }
        })
        .await;
        if matches!(end, Followed::Stopped(_)) && !run.trace.complete() {
            // The last outcome and the failed-essay records travel on other topics and may
            // arrive after the terminal event: show them under this pipeline.
            let until = deadline.min(Instant::now() + LINGER);
            follow_until(&mut f, Some(until), |ev| {
                run.handle(ev);
                if run.trace.complete() {
                    ControlFlow::Break(run.obs.events.last().cloned().expect("complete"))
                } else {
                    ControlFlow::Continue(())
                }
            })
            .await;
        }
        let mut obs = run.obs;
        match end {
            Followed::Stopped(_) => observed.push(obs),
            Followed::TimedOut => {
                crate::say!(
                    "  {}",
                    s.bad(&format!(
                        "no terminal event within {} s: giving up (later pipelines would queue behind it)",
                        a.timeout
                    ))
                );
                obs.gave_up_after = Some(a.timeout);
                observed.push(obs);
                break;
            }
            Followed::ReaderGone => bail!("the Kafka reader stopped unexpectedly"),
        }
    }

    crate::say!();
    crate::say!("waiting for the conductor to record everything…");
    settle(ctx, &mut f, &batch, &observed, &mut seen).await;
    drop(f);

    let b = segment(&batch);
    let paths = (
        format!("/v1/batches/{b}/status"),
        format!("/internal/v1/batches/{b}/phases"),
        format!("/v1/counts/{b}"),
    );
    let (bos, bcs, counts) = tokio::join!(
        ctx.api
            .get::<BatchStatusView>(Service::Orchestrator, &paths.0),
        ctx.api.get::<Value>(Service::Conductor, &paths.1),
        ctx.api.get::<Value>(Service::Simulator, &paths.2),
    );
    let report = DemoReport {
        batch_id: batch.clone(),
        essays: a.essays,
        failing,
        pipelines: observed,
        bos: view_of(bos),
        bcs: view_of(bcs),
        counts: view_of(counts),
        dlq: dlq_records(&seen),
    };
    crate::say!();
    crate::say!("{}", render_report(&report, &s));
    crate::say!();
    crate::say!("{}", explore(&batch, &ctx.api.sim));
    if let Some(console) = &a.console_url {
        crate::say!();
        crate::say!("{}", console_line(console, &batch));
    }
    Ok(if verdict(&report).ok() {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_line_links_the_batch_page() {
        assert_eq!(
            console_line("http://127.0.0.1:8080/", "demo 1"),
            "Console: http://127.0.0.1:8080/batches/demo%201   (its pipelines as timelines, records, dead letters, actions)"
        );
    }

    #[test]
    fn explore_names_the_batch_and_the_worker() {
        let text = explore("demo-1", "http://127.0.0.1:4010");
        assert!(text.contains("  hulectl status --batch demo-1 "), "{text}");
        assert!(
            text.contains("curl -s -X POST http://127.0.0.1:4010/v1/batches/demo-1/overrides -H 'content-type: application/json' -d '{}'"),
            "{text}"
        );
        assert!(
            text.contains(
                "hulectl retry --batch demo-1 --phase spellcheck --reason \"texts fixed\" --wait"
            ),
            "{text}"
        );
    }
}
