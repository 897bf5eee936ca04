//! Graceful shutdown under load (issue 6, item 5): SIGTERM stops intake, finishes the message in
//! hand, commits offsets and flushes the outbox; the restarted instance redelivers nothing that
//! was finished.
//!
//! How "nothing finished is redelivered" is observed, for each service:
//!
//! 1. Right after the process exited, the group's committed offsets are read from the broker
//!    (the instance was the group's only member, so its successor starts exactly there).
//! 2. Every message on the service's consumed topics at or after a committed offset is looked up
//!    in the service's Redis: an event whose effects were committed has its dedup marker. None
//!    may have one — otherwise the successor would receive an event that was already finished.
//! 3. After the run, the restarted instance's consumption counter must equal the number of
//!    messages at or after those offsets (it started at the committed offsets, not earlier), and
//!    the conductor's `duplicate` counter must be 0.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use huleedu_it::observer::{Expectations, Observer};
use huleedu_it::stack::{Stack, StackOptions, BCS, BOS};
use huleedu_it::unique;
use huleedu_store::Store;
use serde_json::Value;

use crate::workload::{self, Client, Mode};
use crate::{dump_logs, metric_sum, ready_within, Log};

/// Upper bound for a graceful stop: the outbox drain is bounded at 10 s, the rest is quick.
const STOP_BOUND: Duration = Duration::from_secs(15);

/// One service's stop and restart, as measured.
#[derive(Debug)]
struct Restarted {
    name: &'static str,
    took: Duration,
    exit_code: Option<i32>,
    outbox_left: u64,
    after_committed: usize,
    ready_after: Duration,
    committed: BTreeMap<(String, i32), i64>,
    topics: Vec<&'static str>,
}

pub async fn run() -> anyhow::Result<()> {
    let log = Log::new("shutdown");
    let mut so = StackOptions::new("shutdown");
    // Some simulated work per essay, so that the stop lands while phases are in flight.
    so.sim_env
        .push(("SIM_ESSAY_LATENCY_MS".into(), "20".into()));
    let mut stack = Stack::start(so).await;
    let r = scenario(&mut stack, &log).await;
    if r.is_err() {
        dump_logs(&stack);
    }
    r
}

fn terminals(observer: &Observer) -> usize {
    let mut ids = std::collections::BTreeSet::new();
    for m in observer.on(huleedu_contracts::topics::BATCH_PIPELINE_COMPLETED) {
        if let Ok(v) = serde_json::from_slice::<Value>(&m.payload) {
            ids.insert(v["event_id"].to_string());
        }
    }
    ids.len()
}

async fn wait_terminals(observer: &Observer, n: usize, timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    while terminals(observer) < n {
        ensure!(
            start.elapsed() < timeout,
            "fewer than {n} terminal events after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn scenario(stack: &mut Stack, log: &Log) -> anyhow::Result<()> {
    let observer = Arc::new(Observer::start(&stack.kafka).await?);
    let client = Client::new(&stack.kafka, &stack.sim_url, observer.clone())?;
    let run = unique("sd");
    let batches: Vec<String> = (0..16).map(|i| format!("{run}-b{i:02}")).collect();
    for (i, b) in batches.iter().enumerate() {
        client.register(b, &workload::failures(i)).await?;
    }
    let total = batches.len() * workload::PIPELINES.len();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut tasks = Vec::new();
    for b in &batches {
        let client = client.clone();
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            client.run_batch(&b, Mode::Queued, deadline).await
        }));
    }
    log.say(format!(
        "{} batches registered, {total} requests queued at once",
        batches.len()
    ));

    wait_terminals(&observer, total / 5, Duration::from_secs(60)).await?;
    log.say(format!(
        "under load ({} of {total} terminal events so far)",
        terminals(&observer)
    ));
    let bos = stop_and_restart(
        stack,
        &observer,
        log,
        BOS,
        "batch-orchestrator-consumers",
        "bos",
        batch_orchestrator::handler::CONSUMED.to_vec(),
    )
    .await?;

    wait_terminals(&observer, total / 2, Duration::from_secs(60)).await?;
    log.say(format!(
        "under load ({} of {total} terminal events so far)",
        terminals(&observer)
    ));
    let bcs = stop_and_restart(
        stack,
        &observer,
        log,
        BCS,
        "bcs-event-consumer",
        "bcs",
        batch_conductor::consumer::CONSUMED_TOPICS.to_vec(),
    )
    .await?;

    let mut errors = Vec::new();
    for t in tasks {
        let (_, r) = t.await?;
        if let Err(e) = r {
            errors.push(format!("{e:#}"));
        }
    }
    ensure!(
        errors.is_empty(),
        "requests without terminal event: {}",
        errors.join("; ")
    );
    log.say(format!("all {total} requests have their terminal event"));

    // The restarted instances consumed exactly what lay at or after the committed offsets.
    observer.wait_caught_up(Duration::from_secs(30)).await?;
    let bos_expected = count_from(&observer, &bos).await?;
    let bos_url = stack.url(BOS).to_owned();
    let bos_seen = settle(
        || async {
            let done = metric_sum(
                &bos_url,
                "bos_events_consumed_total",
                &[("outcome", "done")],
            )
            .await?;
            let dl = metric_sum(
                &bos_url,
                "bos_events_consumed_total",
                &[("outcome", "dead_lettered")],
            )
            .await?;
            Ok(done + dl)
        },
        bos_expected,
    )
    .await?;
    log.say(format!(
        "restarted {BOS} consumed {bos_seen} events = the {bos_expected} messages at or after its predecessor's committed offsets"
    ));
    let bcs_expected = count_from(&observer, &bcs).await?;
    let bcs_url = stack.url(BCS).to_owned();
    let bcs_seen = settle(
        || async {
            let mut n = 0.0;
            for o in ["applied", "duplicate", "dead_lettered"] {
                n += metric_sum(&bcs_url, "bcs_events_consumed_total", &[("outcome", o)]).await?;
            }
            Ok(n)
        },
        bcs_expected,
    )
    .await?;
    let bcs_dups = metric_sum(
        &bcs_url,
        "bcs_events_consumed_total",
        &[("outcome", "duplicate")],
    )
    .await?;
    log.say(format!(
        "restarted {BCS} consumed {bcs_seen} events = the {bcs_expected} messages at or after its predecessor's committed offsets; duplicates {bcs_dups}"
    ));
    ensure!(
        bos_seen == bos_expected as f64,
        "restarted orchestrator consumed {bos_seen} events, {bos_expected} lay after the committed offsets"
    );
    ensure!(
        bcs_seen == bcs_expected as f64,
        "restarted conductor consumed {bcs_seen} events, {bcs_expected} lay after the committed offsets"
    );
    ensure!(
        bcs_dups == 0.0,
        "the restarted conductor saw {bcs_dups} duplicates"
    );

    let report = observer
        .check(
            &stack.bcs_url,
            Expectations {
                each_phase_once: true,
                allow_poison: false,
            },
        )
        .await;
    print!("{report}");
    ensure!(
        report.ok(),
        "{} invariant violations",
        report.violations.len()
    );
    ensure!(
        report.requests_with_one_terminal == total,
        "{} of {total} requests with exactly one terminal event",
        report.requests_with_one_terminal
    );
    for r in [&bos, &bcs] {
        println!(
            "SHUTDOWN SUMMARY {}: SIGTERM under load -> exit code {:?} after {:.2} s, outbox left {}, {} messages after the committed offsets, none of them finished before the stop; restart -> ready {:.2} s",
            r.name,
            r.exit_code,
            r.took.as_secs_f64(),
            r.outbox_left,
            r.after_committed,
            r.ready_after.as_secs_f64()
        );
    }
    Ok(())
}

/// Poll `read` until it reaches `expected` (deadline 30 s); fail at once if it goes beyond.
async fn settle<F, Fut>(read: F, expected: usize) -> anyhow::Result<f64>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<f64>>,
{
    let start = Instant::now();
    loop {
        let v = read().await?;
        if v > expected as f64 {
            bail!(
                "consumed {v} events, only {expected} lay after the committed offsets: redelivery"
            );
        }
        if v == expected as f64 || start.elapsed() > Duration::from_secs(30) {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Messages on the service's topics at or after its committed offsets (now).
async fn count_from(observer: &Observer, r: &Restarted) -> anyhow::Result<usize> {
    Ok(observer
        .records()
        .iter()
        .filter(|m| r.topics.contains(&m.topic.as_str()))
        .filter(|m| {
            m.offset
                >= *r
                    .committed
                    .get(&(m.topic.clone(), m.partition))
                    .unwrap_or(&0)
        })
        .count())
}

#[allow(clippy::too_many_arguments)]
async fn stop_and_restart(
    stack: &mut Stack,
    observer: &Observer,
    log: &Log,
    name: &'static str,
    group: &str,
    prefix: &str,
    topics: Vec<&'static str>,
) -> anyhow::Result<Restarted> {
    let pid = stack.pid(name).unwrap_or(0);
    log.say(format!("SIGTERM {name} (pid {pid})"));
    let stopped = stack.terminate(name, Duration::from_secs(30)).await;
    let exit_code = stopped.status.and_then(|s| s.code());
    log.say(format!(
        "{name} exited with {:?} {:.2} s after SIGTERM",
        stopped.status,
        stopped.took.as_secs_f64()
    ));
    ensure!(
        stopped.clean(),
        "{name} did not exit 0 after SIGTERM: {:?}",
        stopped.status
    );
    ensure!(
        stopped.took < STOP_BOUND,
        "{name} took {:?} to stop (bound {STOP_BOUND:?})",
        stopped.took
    );

    let store = Store::connect(&stack.redis_settings(prefix))?;
    let outbox_left = store.outbox_len().await?;
    ensure!(
        outbox_left == 0,
        "{name} left {outbox_left} outbox entries unpublished"
    );

    let partitions: Vec<(String, i32)> = observer
        .partitions()
        .iter()
        .filter(|(t, _)| topics.contains(&t.as_str()))
        .cloned()
        .collect();
    let committed = huleedu_it::committed_offsets(&stack.kafka, group, partitions)
        .await
        .context("reading committed offsets")?;
    observer.wait_caught_up(Duration::from_secs(30)).await?;
    let mut after = 0;
    let mut finished = Vec::new();
    for m in observer.records() {
        if !topics.contains(&m.topic.as_str()) {
            continue;
        }
        if m.offset < *committed.get(&(m.topic.clone(), m.partition)).unwrap_or(&0) {
            continue;
        }
        after += 1;
        let Ok(v) = serde_json::from_slice::<Value>(&m.payload) else {
            continue;
        };
        let id = v["event_id"].as_str().unwrap_or_default();
        let batch = v["data"]["batch_id"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| m.key.clone())
            .unwrap_or_default();
        if store.is_applied(&batch, id).await? {
            finished.push(format!("{}[{}]@{} {id}", m.topic, m.partition, m.offset));
        }
    }
    log.say(format!(
        "{name}: outbox empty, offsets committed {:?}; {after} messages lie after them, {} of them were finished before the stop",
        committed.values().collect::<Vec<_>>(),
        finished.len()
    ));
    ensure!(
        finished.is_empty(),
        "{name} finished these events but did not commit their offsets (they would be redelivered): {finished:?}"
    );

    stack.spawn_service(name);
    let url = stack.url(name).to_owned();
    let Some(ready_after) = ready_within(&url, Duration::from_secs(60)).await else {
        bail!("{name} not ready within 60 s of its restart");
    };
    log.say(format!(
        "{name} restarted, ready {:.2} s after start",
        ready_after.as_secs_f64()
    ));
    Ok(Restarted {
        name,
        took: stopped.took,
        exit_code,
        outbox_left,
        after_committed: after,
        ready_after,
        committed,
        topics,
    })
}
