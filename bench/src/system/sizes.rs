//! The batch-size stage: the same three pipelines on batches of 10, 100, 1000 essays and the
//! largest batch whose messages fit `KAFKA_MAX_MESSAGE_BYTES`, one batch at a time, with the
//! cost per transition of each size.
//!
//! A transition of a batch of n essays handles messages of O(n) bytes whatever the services do
//! (an outcome listing the essays in, a command listing them out), so the figures are given
//! both per transition and per KiB of the transition's own messages: the second is what stays
//! flat when a transition reads and writes what it changes, not the whole batch.

use std::time::{Duration, Instant};

use anyhow::Context;

use huleedu_contracts::topics::DEFAULT_MAX_EVENT_BYTES;
use serde::Serialize;

use super::{latencies, ready_event, Ctx, PIPELINES};
use crate::reader::Kind;
use crate::stats::{self, Dist};

/// Room kept below the limit for the commands' and outcomes' envelopes, which differ from the
/// readiness event's by a few hundred bytes.
const MARGIN_BYTES: usize = 2048;

/// One batch size's figures.
#[derive(Debug, Clone, Serialize)]
pub struct SizeRow {
    pub essays: usize,
    pub batches: usize,
    /// Transitions (commands and terminal events) of these batches.
    pub transitions: u64,
    /// Pipelines not `completed_successfully` (expected 0).
    pub failed_pipelines: u64,
    pub request_to_terminal_ms: Dist,
    /// Phase outcome produced → the orchestrator's next event, ms.
    pub transition_ms: Dist,
    /// CPU time per transition, µs, per service, less the service's idle CPU (its timers,
    /// sweeps and client polling: the mean of 3 s measured right before this size's batches
    /// were registered and 3 s right after its last terminal event) over the same wall time.
    pub orchestrator_cpu_us: f64,
    pub conductor_cpu_us: f64,
    /// That idle CPU, core-seconds per second (before, after), per service.
    pub orchestrator_idle: (f64, f64),
    pub conductor_idle: (f64, f64),
    /// Bytes of the transition's own messages (the outcome in, the command or terminal event
    /// out), per transition.
    pub message_bytes_per_transition: f64,
    /// CPU per KiB of those messages, µs (orchestrator, conductor).
    pub orchestrator_cpu_us_per_kib: f64,
    pub conductor_cpu_us_per_kib: f64,
    /// Bytes sent to Redis (`total_net_input_bytes`) per transition, all services: state
    /// fields, outbox entries (the outgoing messages themselves), markers.
    pub redis_bytes_in_per_transition: f64,
    /// Redis memory per batch after its pipelines (`MEMORY USAGE` of its keys, both services).
    pub redis_bytes_per_batch: f64,
    /// Largest message of these batches.
    pub largest_message_bytes: usize,
    /// The floor for such a transition: the relay's CPU per relayed message of half the
    /// transition's message bytes (a relay hop moves one message in and one out), µs.
    pub relay_message_bytes: usize,
    pub relay_cpu_us: f64,
    /// Each service's CPU per transition as a multiple of that floor.
    pub orchestrator_vs_relay: f64,
    pub conductor_vs_relay: f64,
}

/// Batch `i` of the stage's batches of `essays` essays (fixed width: the largest batch is
/// computed with the same id length).
fn batch_id(run: &str, essays: usize, i: usize) -> String {
    format!("size-{run}-{essays:05}-{i:02}")
}

/// The essay counts of `spec` (`10,100,1000,max`); `max` is the largest batch that fits.
pub fn parse_sizes(spec: &str, run: &str) -> anyhow::Result<Vec<usize>> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "none")
        .map(|s| match s {
            "max" => Ok(largest_batch(run)),
            n => n.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                anyhow::anyhow!("--batch-sizes: `{n}` is not a positive count or `max`")
            }),
        })
        .collect()
}

/// The most essays whose readiness event (and so, within [`MARGIN_BYTES`], commands and
/// outcomes) fits the default `KAFKA_MAX_MESSAGE_BYTES` less the record overhead.
pub fn largest_batch(run: &str) -> usize {
    let budget = DEFAULT_MAX_EVENT_BYTES - MARGIN_BYTES;
    let id = &batch_id(run, 99_999, 99);
    let base = ready_event(id, 0).len();
    let per_essay = ready_event(id, 10_000).len().saturating_sub(base) / 10_000 + 1;
    let mut n = (budget - base) / per_essay;
    while ready_event(id, n + 1).len() <= budget {
        n += 1;
    }
    while n > 1 && ready_event(id, n).len() > budget {
        n -= 1;
    }
    n
}

/// Batches run per size: more of the small ones, so each size's services use many of /proc's
/// 10 ms CPU ticks (20 batches of 10 essays were ~12 ticks, one tick either way moved the
/// flatness ratio by 8 %): 100 batches of 10 and 100 essays, 60 of 1000, 30 of the largest
/// (10 until 2026-12-03: six rows of 8040–8045 essays in one run spread from 4.3 to 6.9 ms).
fn batches_for(essays: usize) -> usize {
    (60_000 / essays).clamp(30, 100)
}

/// Bytes clients sent to Redis so far (`total_net_input_bytes`; summed over a cluster's
/// masters).
async fn net_input_bytes(ctx: &mut Ctx) -> anyhow::Result<u64> {
    ctx.redis.info_sum("stats", "total_net_input_bytes").await
}

/// Redis memory of a batch's keys (its state hashes in both services).
async fn batch_bytes(ctx: &mut Ctx, batch: &str) -> anyhow::Result<u64> {
    let mut total = 0;
    for service in ["bos", "bcs"] {
        let bucket = huleedu_store::bucket_of(batch);
        let key = format!("{{{service}:b{bucket:02}}}:state:{batch}");
        total += ctx.redis.memory_usage(&key).await?.unwrap_or(0);
    }
    Ok(total)
}

fn cpu(pid: u32) -> anyhow::Result<f64> {
    stats::cpu_seconds(pid).with_context(|| format!("CPU time of process {pid}"))
}

/// Run the stage for each size.
pub async fn measure(
    ctx: &mut Ctx,
    sizes: &[usize],
    relay_bin: &std::path::Path,
    run_dir: &std::path::Path,
) -> anyhow::Result<Vec<SizeRow>> {
    let mut rows = Vec::new();
    let bos_pid = ctx.pid("batch-orchestrator")?;
    let bcs_pid = ctx.pid("batch-conductor")?;
    // Idle CPU per wall second (timers, sweeps, client polling): one batch at a time leaves
    // the services idle between events, and that would be charged to the transitions. Measured
    // around each size's batches, not once for the stage: the machine's speed drifts over the
    // minutes the stage takes, and idle CPU is a large part of the 10-essay row — the
    // flatness figure's denominator.
    async fn idle(ctx: &mut Ctx, bos_pid: u32, bcs_pid: u32) -> anyhow::Result<(f64, f64)> {
        ctx.pump_for(Duration::from_millis(500)).await;
        let start = (cpu(bos_pid)?, cpu(bcs_pid)?, Instant::now());
        ctx.pump_for(Duration::from_secs(3)).await;
        let wall = start.2.elapsed().as_secs_f64();
        Ok((
            (cpu(bos_pid)? - start.0) / wall,
            (cpu(bcs_pid)? - start.1) / wall,
        ))
    }
    for &essays in sizes {
        let idle_before = idle(ctx, bos_pid, bcs_pid).await?;
        let n = batches_for(essays);
        eprintln!("[bench] batch sizes: {n} batches of {essays} essays, one at a time");
        let batches: Vec<String> = (0..n).map(|i| batch_id(&ctx.run, essays, i)).collect();
        ctx.register_sized(&batches, essays).await?;
        ctx.pump_for(Duration::from_millis(300)).await;
        let failed_before = ctx.book.failed_terminals;
        let redis_before = net_input_bytes(ctx).await?;
        let cpu_before = (cpu(bos_pid)?, cpu(bcs_pid)?, Instant::now());
        for b in &batches {
            for p in PIPELINES {
                let c = ctx.request(b, p).await;
                ctx.pump_until("a batch-size terminal event", |book| {
                    book.terminals.contains(&c)
                })
                .await?;
            }
        }
        let cpu_after = (cpu(bos_pid)?, cpu(bcs_pid)?);
        let wall = cpu_before.2.elapsed().as_secs_f64();
        let redis_after = net_input_bytes(ctx).await?;
        let idle_after = idle(ctx, bos_pid, bcs_pid).await?;
        let idle = (
            (idle_before.0 + idle_after.0) / 2.0,
            (idle_before.1 + idle_after.1) / 2.0,
        );
        let lat = latencies(&ctx.book, &batches);
        let transitions = lat.transitions.max(1);
        let obs = batches
            .iter()
            .filter_map(|b| ctx.book.by_batch.get(b))
            .flatten();
        let (mut message_bytes, mut largest) = (0usize, 0usize);
        for o in obs {
            largest = largest.max(o.bytes);
            if matches!(o.kind, Kind::Outcome(_) | Kind::Command(_) | Kind::Terminal) {
                message_bytes += o.bytes;
            }
        }
        let mut memory = 0;
        for b in &batches {
            memory += batch_bytes(ctx, b).await?;
        }
        let per = |before: f64, after: f64, idle: f64| {
            (after - before - idle * wall).max(0.0) * 1e6 / transitions as f64
        };
        let bos_us = per(cpu_before.0, cpu_after.0, idle.0);
        let bcs_us = per(cpu_before.1, cpu_after.1, idle.1);
        let kib = message_bytes as f64 / transitions as f64 / 1024.0;
        let relay_message_bytes = (message_bytes as f64 / transitions as f64 / 2.0) as usize;
        // Enough messages that the relay's CPU is many of /proc's 10 ms ticks, and the large
        // ones enough to average out the broker's pauses (with 250, six rows of ~600 KB
        // messages in one run gave 521–1032 µs per message).
        let relay_count = match relay_message_bytes {
            0..=16_384 => 1500,
            16_385..=131_072 => 500,
            _ => 1000,
        };
        let relay_cpu_us = crate::floor::relay_cpu_us(
            &ctx.args.kafka,
            relay_bin,
            run_dir,
            relay_message_bytes,
            relay_count,
        )
        .await?;
        let row = SizeRow {
            essays,
            batches: n,
            transitions: lat.transitions,
            failed_pipelines: ctx.book.failed_terminals - failed_before,
            request_to_terminal_ms: lat.request_to_terminal_ms.clone(),
            transition_ms: lat.transition_ms.clone(),
            orchestrator_cpu_us: bos_us,
            conductor_cpu_us: bcs_us,
            orchestrator_idle: (idle_before.0, idle_after.0),
            conductor_idle: (idle_before.1, idle_after.1),
            message_bytes_per_transition: message_bytes as f64 / transitions as f64,
            orchestrator_cpu_us_per_kib: bos_us / kib,
            conductor_cpu_us_per_kib: bcs_us / kib,
            redis_bytes_in_per_transition: (redis_after - redis_before) as f64 / transitions as f64,
            redis_bytes_per_batch: memory as f64 / n as f64,
            largest_message_bytes: largest,
            relay_message_bytes,
            relay_cpu_us,
            orchestrator_vs_relay: bos_us / relay_cpu_us,
            conductor_vs_relay: bcs_us / relay_cpu_us,
        };
        eprintln!(
            "[bench] batch sizes: {essays} essays: request→terminal p50 {:.1} ms, orchestrator {:.0} µs/transition, {:.0} KiB of messages/transition, relay {:.0} µs per {} KiB message",
            row.request_to_terminal_ms.p50, row.orchestrator_cpu_us, kib, relay_cpu_us, relay_message_bytes / 1024
        );
        rows.push(row);
    }
    Ok(rows)
}
