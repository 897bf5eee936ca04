//! Carrying out the commands: Kafka and HTTP calls around the pure parts ([`crate::render`],
//! [`crate::status`], [`crate::dlq`]). Each command returns the process exit code.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use huleedu_contracts::http::bos::{BatchStatusView, RetryPhaseAccepted, RetryPhaseRequest};
use huleedu_contracts::http::redrive::{RedriveRecord, RedriveRequest};
use huleedu_contracts::payloads::ClientBatchPipelineRequestV1;
use huleedu_contracts::{topics, BatchStatus, EventEnvelope, Validate};
use huleedu_kafka::{KafkaSettings, OutgoingMessage};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::cli::{
    Cli, Command, DlqCommand, DlqKind, DlqListArgs, DlqRedriveArgs, MarkArgs, RetryArgs,
    StatusArgs, SubmitArgs, WatchArgs,
};
use crate::dlq::{render_listing, Listing};
use crate::event::{decode, Event, Trace};
use crate::http::{segment, Api, HttpError, OperatorToken, Service};
use crate::kafka::{self, Follower, StartAt, TopicSet};
use crate::render::{completed_summary, retry_accepted, Lines};
use crate::status::{render_status, View};
use crate::style::Style;

/// Success.
pub const EXIT_OK: u8 = 0;
/// A failure: an error, a pipeline that failed critically or did not end, a phase that ran twice.
pub const EXIT_FAILED: u8 = 1;

/// `source_service` of the envelopes this tool publishes.
pub const SOURCE_SERVICE: &str = "hulectl";

/// What every command needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The broker and how to reach it (`--kafka` or `KAFKA_BOOTSTRAP_SERVERS`, plus the
    /// services' `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*`,
    /// `KAFKA_PROPERTIES_FILE`).
    pub kafka: KafkaSettings,
    pub api: Api,
    pub style: Style,
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let mut kafka = KafkaSettings::from_process("hulectl", "hulectl")?;
    if let Some(bootstrap) = &cli.global.kafka {
        kafka.bootstrap_servers = bootstrap.clone();
    }
    let ctx = Ctx {
        kafka,
        api: Api::new(&cli.global)?,
        style: Style::detect(cli.global.color),
    };
    match cli.command {
        Command::Submit(a) => submit(&ctx, a).await,
        Command::Watch(a) => watch(&ctx, a).await,
        Command::Status(a) => status(&ctx, a).await,
        Command::Mark(a) => mark(&ctx, a).await,
        Command::Dlq(DlqCommand::List(a)) => dlq_list(&ctx, a).await,
        Command::Dlq(DlqCommand::Redrive(a)) => dlq_redrive(&ctx, a).await,
        Command::Retry(a) => retry(&ctx, a).await,
        Command::Demo(a) => crate::demo::demo(&ctx, a).await,
    }
}

/// A pipeline request for `batch`: the envelope (correlation id = client correlation id =
/// `correlation`) and the message to publish (key = batch id). Checked like BOS checks it.
pub fn pipeline_request(
    batch: &str,
    pipeline: &str,
    user: &str,
    correlation: Uuid,
) -> anyhow::Result<(EventEnvelope<ClientBatchPipelineRequestV1>, OutgoingMessage)> {
    let data = ClientBatchPipelineRequestV1 {
        batch_id: batch.trim().to_owned(),
        requested_pipeline: pipeline.trim().to_owned(),
        client_correlation_id: correlation,
        user_id: user.trim().to_owned(),
        is_retry: false,
        retry_reason: None,
        prompt_payload: None,
    };
    data.validate()
        .map_err(|e| anyhow!("invalid pipeline request: {e}"))?;
    let envelope = EventEnvelope::new(
        topics::CLIENT_BATCH_PIPELINE_REQUEST,
        SOURCE_SERVICE,
        correlation,
        data,
    );
    let msg = OutgoingMessage::new(
        topics::CLIENT_BATCH_PIPELINE_REQUEST,
        envelope.data.batch_id.clone(),
        envelope.to_json_bytes(),
    );
    Ok((envelope, msg))
}

/// The body of `POST /v1/batches/{batch}/retry-phase`; `essay_ids` is left out when none are
/// named (the orchestrator then retries the essays that failed the phase's latest run).
pub fn retry_body(
    phase: &str,
    essays: &[String],
    reason: &str,
    operator: Option<&str>,
) -> RetryPhaseRequest {
    RetryPhaseRequest {
        phase_name: phase.to_owned(),
        reason: reason.to_owned(),
        essay_ids: (!essays.is_empty()).then(|| essays.to_vec()),
        operator: operator.map(str::to_owned),
    }
}

/// The body of `POST /internal/v1/phases/complete`.
pub fn mark_body(
    batch: &str,
    phase: &str,
    success: bool,
    reason: &str,
    operator: Option<&str>,
) -> Value {
    json!({
        "batch_id": batch,
        "phase_name": phase,
        "success": success,
        "reason": reason,
        "operator": operator,
    })
}

/// Exit code for a terminal event: failure only when the pipeline failed critically.
pub fn exit_for(status: BatchStatus) -> u8 {
    if status == BatchStatus::FailedCritically {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

/// Starts a [`Follower`] off the async workers.
pub async fn follower(ctx: &Ctx, set: TopicSet, at: StartAt) -> anyhow::Result<Follower> {
    let kafka = ctx.kafka.clone();
    tokio::task::spawn_blocking(move || Follower::start(&kafka, &set, at))
        .await
        .context("reader start-up panicked")?
}

/// Every topic a batch's events can be on ([`topics::SYSTEM`]), plus the poison DLQs on the
/// broker.
pub fn all_topics() -> TopicSet {
    TopicSet::new(&topics::SYSTEM, true)
}

/// Why [`follow_until`] stopped.
#[derive(Debug)]
pub enum Followed {
    /// The callback asked to stop at this event.
    Stopped(Box<Event>),
    /// The deadline passed.
    TimedOut,
    /// The reader thread ended.
    ReaderGone,
}

/// Feeds decoded events to `on_event` until it breaks, the deadline passes or the reader ends.
/// Consumer errors are reported on stderr once each.
pub async fn follow_until<F>(
    f: &mut Follower,
    deadline: Option<Instant>,
    mut on_event: F,
) -> Followed
where
    F: FnMut(Event) -> ControlFlow<Event>,
{
    let mut last_error: Option<String> = None;
    let sleep = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return Followed::TimedOut,
            item = f.next() => match item {
                None => return Followed::ReaderGone,
                Some(Err(e)) => {
                    if last_error.as_deref() != Some(e.as_str()) {
                        eprintln!("kafka: {e}");
                        last_error = Some(e);
                    }
                }
                Some(Ok(record)) => {
                    if let ControlFlow::Break(ev) = on_event(decode(&record)) {
                        return Followed::Stopped(Box::new(ev));
                    }
                }
            }
        }
    }
}

fn deadline_in(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

async fn submit(ctx: &Ctx, a: SubmitArgs) -> anyhow::Result<u8> {
    let correlation = Uuid::new_v4();
    let (envelope, msg) = pipeline_request(&a.batch, &a.pipeline, &a.user, correlation)?;
    let kafka = ctx.kafka.clone();
    let existing = tokio::task::spawn_blocking(move || kafka::check_broker(&kafka)).await??;
    if !existing
        .iter()
        .any(|t| t == topics::CLIENT_BATCH_PIPELINE_REQUEST)
    {
        eprintln!(
            "note: topic {} does not exist yet (the orchestrator creates it at start-up)",
            topics::CLIENT_BATCH_PIPELINE_REQUEST
        );
    }
    // Follow before publishing, so the terminal event cannot slip past.
    let mut waiting = if a.wait {
        Some(
            follower(
                ctx,
                TopicSet::new(&[topics::BATCH_PIPELINE_COMPLETED], false),
                StartAt::Now,
            )
            .await?,
        )
    } else {
        None
    };
    let delivered = kafka::publish(&ctx.kafka, &msg).await?;
    let batch = &envelope.data.batch_id;
    crate::say!(
        "submitted pipeline {} for batch {batch} (event {}, {} [{}@{}])",
        envelope.data.requested_pipeline,
        envelope.event_id,
        topics::CLIENT_BATCH_PIPELINE_REQUEST,
        delivered.partition,
        delivered.offset
    );
    crate::say!("correlation id: {correlation}");
    let Some(f) = waiting.as_mut() else {
        crate::say!("follow it:      hulectl watch --batch {batch} --correlation {correlation}");
        return Ok(EXIT_OK);
    };
    eprintln!("waiting up to {} s for its terminal event…", a.timeout);
    let end = follow_until(f, Some(deadline_in(a.timeout)), |ev| match ev.terminal() {
        Some(t) if t.correlation_id == correlation => ControlFlow::Break(ev),
        _ => ControlFlow::Continue(()),
    })
    .await;
    finish_wait(ctx, end, a.timeout, batch)
}

/// After a pipeline's terminal event, how long to keep reading for its events that travel on
/// other topics and may arrive later (the last phase outcome, the failed-essay records).
pub const LINGER: Duration = Duration::from_secs(5);

/// Prints the events of a batch (optionally of one pipeline only), one line each, and keeps a
/// [`Trace`] per pipeline.
#[derive(Debug)]
pub struct Printer {
    batch: String,
    only: Option<Uuid>,
    style: Style,
    lines: Lines,
    traces: HashMap<Uuid, Trace>,
}

impl Printer {
    pub fn new(batch: &str, only: Option<Uuid>, style: Style) -> Self {
        Printer {
            batch: batch.to_owned(),
            only,
            style,
            lines: Lines::default(),
            traces: HashMap::new(),
        }
    }

    /// Prints `ev` when it is of the batch (and of the pipeline `only`); says whether it did.
    pub fn handle(&mut self, ev: &Event) -> bool {
        let pipeline = ev.pipeline_correlation();
        if !ev.is_for_batch(&self.batch) || (self.only.is_some() && pipeline != self.only) {
            return false;
        }
        crate::say!("{}", self.lines.line(ev, &self.style));
        if let Some(c) = pipeline {
            self.traces.entry(c).or_default().observe(ev);
        }
        true
    }

    /// Whether everything of pipeline `c` has been seen (see [`Trace::complete`]).
    pub fn complete(&self, c: Uuid) -> bool {
        self.traces.get(&c).is_some_and(Trace::complete)
    }
}

/// Keeps printing until pipeline `c`'s picture is complete, for at most [`LINGER`] (and not
/// past `deadline`).
async fn linger(f: &mut Follower, p: &mut Printer, c: Uuid, deadline: Option<Instant>) {
    if p.complete(c) {
        return;
    }
    let until = Instant::now() + LINGER;
    let until = deadline.map_or(until, |d| d.min(until));
    follow_until(f, Some(until), |ev| {
        p.handle(&ev);
        if p.complete(c) {
            ControlFlow::Break(ev)
        } else {
            ControlFlow::Continue(())
        }
    })
    .await;
}

fn finish_wait(ctx: &Ctx, end: Followed, timeout: u64, batch: &str) -> anyhow::Result<u8> {
    match end {
        Followed::Stopped(ev) => {
            let t = ev.terminal().expect("stopped at a terminal event");
            crate::say!("{}", completed_summary(t, ev.is_retry(), &ctx.style));
            Ok(exit_for(t.final_status))
        }
        Followed::TimedOut => {
            eprintln!(
                "no terminal event within {timeout} s; the pipeline may still be queued or running \
                 (see: hulectl status --batch {batch})"
            );
            Ok(EXIT_FAILED)
        }
        Followed::ReaderGone => Err(anyhow!("the Kafka reader stopped unexpectedly")),
    }
}

/// Where a message sits: (topic, partition, offset).
type Position = (String, i32, i64);

fn position(e: &Event) -> Position {
    (e.topic.clone(), e.partition, e.offset)
}

/// The batch's events already on the broker, oldest first (by event time).
async fn history(ctx: &Ctx, batch: &str) -> anyhow::Result<Vec<Event>> {
    let kafka = ctx.kafka.clone();
    let read = tokio::task::spawn_blocking(move || {
        kafka::read_to_end(&kafka, &all_topics(), Duration::from_secs(60))
    })
    .await??;
    let mut events: Vec<Event> = read
        .records
        .iter()
        .map(decode)
        .filter(|e| e.is_for_batch(batch))
        .collect();
    events.sort_by_key(|e| (e.time.is_none(), e.time));
    Ok(events)
}

async fn watch(ctx: &Ctx, a: WatchArgs) -> anyhow::Result<u8> {
    // Follow first, then read the history: nothing published in between can be missed (what
    // both see is shown once).
    let mut f = follower(ctx, all_topics(), StartAt::Now).await?;
    eprintln!(
        "following batch {} on {} topics {}; until {}{} (Ctrl-C to stop)",
        a.batch,
        f.topics.len(),
        if a.from_beginning {
            "after its history"
        } else {
            "from now on"
        },
        match a.correlation {
            Some(c) => format!("pipeline {c} ends"),
            None if a.from_beginning => "the next pipeline ends".to_owned(),
            None => "its pipeline ends".to_owned(),
        },
        a.timeout
            .map(|s| format!(" or {s} s pass"))
            .unwrap_or_default()
    );
    if !f.missing.is_empty() {
        eprintln!(
            "note: not on the broker yet, so not followed: {}",
            f.missing.join(", ")
        );
    }
    let deadline = a.timeout.map(deadline_in);
    let mut p = Printer::new(&a.batch, None, ctx.style);
    let mut shown: HashSet<Position> = HashSet::new();
    if a.from_beginning {
        let mut ended = None;
        for ev in history(ctx, &a.batch).await? {
            shown.insert(position(&ev));
            p.handle(&ev);
            if let (Some(t), Some(c)) = (ev.terminal(), a.correlation) {
                if t.correlation_id == c {
                    ended = Some(exit_for(t.final_status));
                }
            }
        }
        if let Some(code) = ended {
            // The pipeline asked for is in the history (with its trailing events).
            return Ok(code);
        }
    }
    let end = follow_until(&mut f, deadline, |ev| {
        if !shown.is_empty() && shown.contains(&position(&ev)) {
            return ControlFlow::Continue(());
        }
        if !p.handle(&ev) {
            return ControlFlow::Continue(());
        }
        match (ev.terminal(), a.correlation) {
            (Some(t), Some(c)) if t.correlation_id != c => ControlFlow::Continue(()),
            (Some(_), _) => ControlFlow::Break(ev),
            (None, _) => ControlFlow::Continue(()),
        }
    })
    .await;
    if let Followed::Stopped(ev) = &end {
        if let Some(t) = ev.terminal() {
            linger(&mut f, &mut p, t.correlation_id, deadline).await;
        }
    }
    match end {
        Followed::Stopped(ev) => Ok(ev.terminal().map_or(EXIT_OK, |t| exit_for(t.final_status))),
        Followed::TimedOut => {
            eprintln!(
                "stopped after {} s without the pipeline's terminal event",
                a.timeout.unwrap_or_default()
            );
            Ok(EXIT_FAILED)
        }
        Followed::ReaderGone => Err(anyhow!("the Kafka reader stopped unexpectedly")),
    }
}

/// A service's answer as a [`View`] (404 = does not know the batch).
pub fn view_of<T>(r: Result<T, HttpError>) -> View<T> {
    match r {
        Ok(v) => View::Doc(v),
        Err(e) if e.status() == Some(404) => View::Unknown,
        Err(e) => View::Error(e.to_string()),
    }
}

fn has_records(v: &View) -> bool {
    v.doc().is_some_and(|d| {
        ["phases", "processed_pipelines"]
            .iter()
            .any(|k| match d.get(*k) {
                Some(Value::Object(m)) => !m.is_empty(),
                Some(Value::Array(a)) => !a.is_empty(),
                _ => false,
            })
    })
}

async fn status(ctx: &Ctx, a: StatusArgs) -> anyhow::Result<u8> {
    let b = segment(&a.batch);
    let (bos_path, bcs_path) = (
        format!("/v1/batches/{b}/status"),
        format!("/internal/v1/batches/{b}/phases"),
    );
    let (bos, bcs) = tokio::join!(
        ctx.api
            .get::<BatchStatusView>(Service::Orchestrator, &bos_path),
        ctx.api.get::<Value>(Service::Conductor, &bcs_path),
    );
    let (bos, bcs) = (view_of(bos), view_of(bcs));
    let failed = matches!(bos, View::Error(_))
        || matches!(bcs, View::Error(_))
        || (bos == View::Unknown && !has_records(&bcs));
    if a.json {
        for e in [bos.error(), bcs.error()].into_iter().flatten() {
            eprintln!("error: {e}");
        }
        let doc = json!({"orchestrator": bos.doc(), "conductor": bcs.doc()});
        crate::say!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        crate::say!(
            "{}",
            render_status(&a.batch, &bos, &ctx.api.bos, &bcs, &ctx.api.bcs, &ctx.style)
        );
    }
    Ok(if failed { EXIT_FAILED } else { EXIT_OK })
}

async fn mark(ctx: &Ctx, a: MarkArgs) -> anyhow::Result<u8> {
    let token = OperatorToken::from_env()?;
    let body = mark_body(
        &a.batch,
        a.phase.as_str(),
        !a.not_complete,
        &a.reason,
        a.operator.as_deref(),
    );
    let answer: Value = ctx
        .api
        .post(
            Service::Conductor,
            "/internal/v1/phases/complete",
            &body,
            Some(&token),
        )
        .await?;
    crate::say!("{}", crate::render::mark_recorded(&answer, &ctx.style));
    Ok(EXIT_OK)
}

/// Body of the conductor's `POST /internal/v1/dlq/redrive`.
pub fn redrive_body(a: &DlqRedriveArgs) -> RedriveRequest {
    RedriveRequest {
        dlq_topic: a.topic.trim().to_owned(),
        partition: a.partition,
        offset: a.offset,
        operator: a
            .operator
            .clone()
            .filter(|o| !o.trim().is_empty())
            .unwrap_or_else(|| "operator".to_owned()),
        reason: a.reason.clone(),
    }
}

async fn dlq_redrive(ctx: &Ctx, a: DlqRedriveArgs) -> anyhow::Result<u8> {
    let token = OperatorToken::from_env()?;
    let body = serde_json::to_value(redrive_body(&a))?;
    let done: RedriveRecord = ctx
        .api
        .post(
            Service::Conductor,
            "/internal/v1/dlq/redrive",
            &body,
            Some(&token),
        )
        .await?;
    crate::say!("{} {}", ctx.style.good("✓"), done.summary());
    Ok(EXIT_OK)
}

async fn dlq_list(ctx: &Ctx, a: DlqListArgs) -> anyhow::Result<u8> {
    let set = match a.kind {
        DlqKind::Essays => TopicSet::new(&[topics::FAILED_ESSAYS_DLQ], false),
        DlqKind::Poison => TopicSet::new::<&str>(&[], true),
        DlqKind::All => TopicSet::new(&[topics::FAILED_ESSAYS_DLQ], true),
    };
    let kafka = ctx.kafka.clone();
    let read = tokio::task::spawn_blocking(move || {
        kafka::read_to_end(&kafka, &set, Duration::from_secs(60))
    })
    .await??;
    let listing = Listing::from_records(&read.records, a.batch.as_deref(), a.kind);
    if a.json {
        crate::say!(
            "{}",
            serde_json::to_string_pretty(&listing.to_json(a.kind))?
        );
    } else {
        crate::say!(
            "{}",
            render_listing(&listing, a.batch.as_deref(), a.kind, &ctx.style)
        );
        if !read.missing.is_empty() {
            crate::say!(
                "{}",
                ctx.style.dim(&format!(
                    "(not on the broker yet: {})",
                    read.missing.join(", ")
                ))
            );
        }
    }
    Ok(EXIT_OK)
}

async fn retry(ctx: &Ctx, a: RetryArgs) -> anyhow::Result<u8> {
    let token = OperatorToken::from_env()?;
    let body = retry_body(
        a.phase.as_str(),
        &a.essays,
        &a.reason,
        a.operator.as_deref(),
    );
    // Follow before asking, so none of the retry's events can slip past.
    let mut waiting = if a.wait {
        Some(follower(ctx, all_topics(), StartAt::Now).await?)
    } else {
        None
    };
    let path = format!("/v1/batches/{}/retry-phase", segment(&a.batch));
    let answer: RetryPhaseAccepted = ctx
        .api
        .post(Service::Orchestrator, &path, &body, Some(&token))
        .await?;
    crate::say!("{}", retry_accepted(&answer, &a.essays));
    let Some(f) = waiting.as_mut() else {
        return Ok(EXIT_OK);
    };
    let correlation = answer.correlation_id;
    let deadline = deadline_in(a.timeout);
    let mut p = Printer::new(&a.batch, Some(correlation), ctx.style);
    let end = follow_until(f, Some(deadline), |ev| {
        if p.handle(&ev) && ev.terminal().is_some() {
            ControlFlow::Break(ev)
        } else {
            ControlFlow::Continue(())
        }
    })
    .await;
    if matches!(end, Followed::Stopped(_)) {
        linger(f, &mut p, correlation, Some(deadline)).await;
    }
    finish_wait(ctx, end, a.timeout, &a.batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use huleedu_contracts::decode_envelope;

    #[test]
    fn request_is_what_bos_expects() {
        let c = Uuid::new_v4();
        let (env, msg) = pipeline_request(" b1 ", "nlp", "ann", c).unwrap();
        assert_eq!(msg.topic, topics::CLIENT_BATCH_PIPELINE_REQUEST);
        assert_eq!(msg.key, "b1");
        let back = decode_envelope::<ClientBatchPipelineRequestV1>(&msg.payload).unwrap();
        assert_eq!(back, env);
        assert_eq!(back.correlation_id, c);
        assert_eq!(back.data.client_correlation_id, c);
        assert_eq!(back.event_type, topics::CLIENT_BATCH_PIPELINE_REQUEST);
        assert_eq!(back.source_service, "hulectl");
        assert!(!back.data.is_retry);
    }

    #[test]
    fn invalid_request_is_refused_before_publishing() {
        let err = pipeline_request("", "nlp", "ann", Uuid::new_v4()).unwrap_err();
        assert!(err.to_string().contains("batch_id"), "{err}");
        assert!(pipeline_request("b", "nlp", "", Uuid::new_v4()).is_err());
    }

    #[test]
    fn retry_body_omits_essays_when_none_named() {
        let body = |b: RetryPhaseRequest| serde_json::to_value(b).unwrap();
        assert_eq!(
            body(retry_body("spellcheck", &[], "fixed", None)),
            json!({"phase_name": "spellcheck", "reason": "fixed"})
        );
        assert_eq!(
            body(retry_body("nlp", &["e1".into()], "r", Some("ann"))),
            json!({"phase_name": "nlp", "reason": "r", "essay_ids": ["e1"], "operator": "ann"})
        );
    }

    #[test]
    fn mark_body_shape() {
        assert_eq!(
            mark_body("b1", "nlp", false, "redo", None),
            json!({"batch_id": "b1", "phase_name": "nlp", "success": false, "reason": "redo", "operator": null})
        );
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_for(BatchStatus::CompletedWithFailures), EXIT_OK);
        assert_eq!(exit_for(BatchStatus::FailedCritically), EXIT_FAILED);
    }

    #[test]
    fn views() {
        let not_found = HttpError::Status {
            service: Service::Orchestrator,
            status: 404,
            message: String::new(),
            hint: None,
        };
        assert_eq!(view_of::<Value>(Err(not_found)), View::Unknown);
        assert!(!has_records(&View::Doc(
            json!({"phases": {}, "processed_pipelines": []})
        )));
        assert!(has_records(&View::Doc(json!({"phases": {"nlp": {}}}))));
    }
}
