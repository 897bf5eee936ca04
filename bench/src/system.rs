//! The whole run: floor, services, latency, throughput, Redis calls, memory, report.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use huleedu_contracts::payloads::{
    BatchEssaysReady, ClientBatchPipelineRequestV1, EssayProcessingInputRefV1,
    SystemProcessingMetadata,
};
use huleedu_contracts::{events, topics, EventEnvelope};
use serde::Serialize;
use uuid::Uuid;

use crate::floor::{self, FloorResult, Sender};
use crate::launch::{free_port, wait_ready, Proc};
use crate::monitor::Monitors;
use crate::reader::{now_us, Kind, Obs, Reader};
use crate::redis_nodes::{RedisMode, RedisNodes};
use crate::report;
use crate::stats::{self, Dist, Rss};
use crate::RunArgs;

mod sizes;
pub use sizes::SizeRow;

/// The three sequential pipelines of every batch (cj_assessment runs spellcheck first; nlp and
/// ai_feedback then find spellcheck, resp. spellcheck + nlp, completed and prune them).
pub const PIPELINES: [&str; 3] = ["cj_assessment", "nlp", "ai_feedback"];

const SERVICES: [&str; 3] = ["batch-conductor", "batch-orchestrator", "els-simulator"];

/// The machine the run was on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// The broker the run used (`BROKER` from scripts/bench.sh: kafka, tansu or external).
    pub broker: String,
    /// Where Apache Kafka kept its log directory (`INFRA_KAFKA_DATA_ON` from
    /// scripts/lib/infra.sh: `memory` or `disk`; empty for another broker).
    pub broker_data: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub mem_total_mib: u64,
    pub loadavg_start: String,
    pub loadavg_end: String,
}

fn read_first(path: &str, key: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        l.strip_prefix(key)
            .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Observations of the pipeline topics, by batch, and the terminal events seen.
#[derive(Default)]
struct Book {
    record: bool,
    by_batch: HashMap<String, Vec<Obs>>,
    terminals: HashSet<Uuid>,
    failed_terminals: u64,
    /// Arrival of the latest terminal event.
    last_terminal_us: Option<i64>,
}

impl Book {
    fn add(&mut self, o: Obs) {
        if o.kind == Kind::Terminal {
            if let Some(c) = o.correlation {
                self.terminals.insert(c);
            }
            self.last_terminal_us = Some(self.last_terminal_us.unwrap_or(0).max(o.at_us));
            if !o.ok {
                self.failed_terminals += 1;
            }
        }
        if self.record {
            self.by_batch.entry(o.key.clone()).or_default().push(o);
        }
    }
}

/// The running services and what the stages share.
struct Ctx {
    args: RunArgs,
    http: reqwest::Client,
    sender: Sender,
    reader: Reader,
    book: Book,
    redis: RedisNodes,
    procs: Vec<Proc>,
    bos_url: String,
    bcs_url: String,
    run: String,
    deadline: Duration,
    /// Orchestrator replicas besides the first (scale-out stage).
    more_bos_urls: Vec<String>,
    /// Each service's environment, for starting more replicas (scale-out stage).
    envs: BTreeMap<String, Vec<(String, String)>>,
    bin_dir: PathBuf,
    run_dir: PathBuf,
}

impl Ctx {
    /// Feed the book until `cond` holds (or the stage time-out passes).
    async fn pump_until(&mut self, what: &str, cond: impl Fn(&Book) -> bool) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if cond(&self.book) {
                return Ok(());
            }
            if start.elapsed() > self.deadline {
                anyhow::bail!("timed out after {:?} waiting for {what}", self.deadline);
            }
            match tokio::time::timeout(Duration::from_millis(100), self.reader.rx.recv()).await {
                Ok(Some(o)) => {
                    self.book.add(o);
                    while let Ok(o) = self.reader.rx.try_recv() {
                        self.book.add(o);
                    }
                }
                Ok(None) => anyhow::bail!("the reader stopped"),
                Err(_) => {
                    for p in &mut self.procs {
                        anyhow::ensure!(p.alive(), "{} exited (see its log)", p.name);
                    }
                }
            }
        }
    }

    /// Feed the book for `d` (late events of a finished stage).
    async fn pump_for(&mut self, d: Duration) {
        let until = tokio::time::Instant::now() + d;
        while let Ok(Some(o)) = tokio::time::timeout_at(until, self.reader.rx.recv()).await {
            self.book.add(o);
        }
    }

    /// Readiness events the orchestrators have handled (every replica running now).
    async fn ready_handled(&self) -> anyhow::Result<f64> {
        let mut sum = 0.0;
        for url in std::iter::once(&self.bos_url).chain(&self.more_bos_urls) {
            let text = stats::scrape(&self.http, url).await?;
            sum += stats::sample_sum(
                &text,
                "bos_events_consumed_total",
                &[&format!("topic=\"{}\"", topics::BATCH_ESSAYS_READY)],
            );
        }
        Ok(sum)
    }

    /// Publish `BatchEssaysReady` for `batches` (`--essays` each) and wait until the
    /// orchestrator handled them.
    async fn register(&mut self, batches: &[String]) -> anyhow::Result<()> {
        self.register_sized(batches, self.args.essays).await
    }

    /// [`Ctx::register`] with `essays` essays per batch.
    async fn register_sized(&mut self, batches: &[String], essays: usize) -> anyhow::Result<()> {
        let before = self.ready_handled().await?;
        for b in batches {
            let ready = ready_event(b, essays);
            self.sender
                .enqueue(topics::BATCH_ESSAYS_READY, b, &ready)
                .await;
        }
        let want = before + batches.len() as f64;
        let start = Instant::now();
        loop {
            if self.ready_handled().await? >= want {
                break;
            }
            anyhow::ensure!(
                start.elapsed() < self.deadline,
                "readiness events not handled in time"
            );
            // Keep the reader's queue short meanwhile.
            self.pump_for(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Publish a pipeline request; returns its correlation id.
    async fn request(&mut self, batch: &str, pipeline: &str) -> Uuid {
        let c = Uuid::new_v4();
        let env = EventEnvelope::new(
            topics::CLIENT_BATCH_PIPELINE_REQUEST,
            "bench",
            c,
            ClientBatchPipelineRequestV1 {
                batch_id: batch.to_owned(),
                requested_pipeline: pipeline.to_owned(),
                client_correlation_id: c,
                user_id: "bench".to_owned(),
                is_retry: false,
                retry_reason: None,
                prompt_payload: None,
            },
        );
        self.sender
            .enqueue(
                topics::CLIENT_BATCH_PIPELINE_REQUEST,
                batch,
                &env.to_json_bytes(),
            )
            .await;
        c
    }

    /// Request the three pipelines of every batch at once (the orchestrator queues them) and
    /// wait for every terminal event. Returns (first request µs, last terminal µs, ids).
    async fn run_pipelines(&mut self, batches: &[String]) -> anyhow::Result<(i64, i64, Vec<Uuid>)> {
        let t0 = now_us();
        let mut expected = Vec::with_capacity(batches.len() * PIPELINES.len());
        for b in batches {
            for p in PIPELINES {
                expected.push(self.request(b, p).await);
            }
        }
        self.pump_until("terminal events", |book| {
            expected.iter().all(|c| book.terminals.contains(c))
        })
        .await?;
        let t_end = self.book.last_terminal_us.unwrap_or_else(now_us);
        Ok((t0, t_end, expected))
    }

    /// The pid of service `name`.
    fn pid(&self, name: &str) -> anyhow::Result<u32> {
        self.procs
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.pid)
            .with_context(|| format!("{name} is not running"))
    }

    fn rss(&self) -> BTreeMap<String, Option<Rss>> {
        self.procs
            .iter()
            .map(|p| (p.name.clone(), p.rss()))
            .collect()
    }

    /// Batch state keys in Redis (orchestrator, conductor).
    async fn live_batches(&mut self) -> anyhow::Result<(u64, u64)> {
        let bos = self.redis.count_keys("{bos:*}:state:*").await?;
        let bcs = self.redis.count_keys("{bcs:*}:state:*").await?;
        Ok((bos, bcs))
    }
}

/// A `BatchEssaysReady` for batch `b` with `n` essays (`<b>-e<i>`, random 32-hex text ids).
fn ready_event(b: &str, n: usize) -> Vec<u8> {
    let essays: Vec<EssayProcessingInputRefV1> = (0..n)
        .map(|i| {
            EssayProcessingInputRefV1::new(format!("{b}-e{i}"), Uuid::new_v4().simple().to_string())
        })
        .collect();
    let data = BatchEssaysReady {
        event: events::BATCH_ESSAYS_READY.to_owned(),
        batch_id: b.to_owned(),
        ready_essays: essays,
        metadata: SystemProcessingMetadata::for_batch(
            b.to_owned(),
            Some(events::BATCH_ESSAYS_READY),
        ),
        course_code: "ENG5".to_owned(),
        course_language: "en".to_owned(),
        student_prompt_ref: None,
        class_type: "GUEST".to_owned(),
    };
    EventEnvelope::new(topics::BATCH_ESSAYS_READY, "bench", Uuid::new_v4(), data).to_json_bytes()
}

/// Latencies of a set of batches, from the book.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latencies {
    /// Phase outcome produced → the orchestrator's next event for that pipeline (next phase's
    /// command or the terminal event) observed: one orchestrator hop.
    pub transition_ms: Dist,
    /// Phase outcome produced → the batch's next initiate command observed, for the outcomes of a
    /// pipeline's last phase when another pipeline is queued (terminal event, conductor records
    /// the completion, orchestrator resolves with `after_pipeline_id` and starts the next one).
    pub handover_ms: Dist,
    /// Request produced → terminal event observed.
    pub request_to_terminal_ms: Dist,
    /// Request produced → the pipeline's first initiate command observed.
    pub request_to_first_command_ms: Dist,
    /// Commands + terminal events observed.
    pub transitions: u64,
    pub commands: u64,
    pub terminals: u64,
    pub outcomes: u64,
}

fn ms(us: i64) -> f64 {
    us as f64 / 1000.0
}

fn latencies(book: &Book, batches: &[String]) -> Latencies {
    let (mut transition, mut handover, mut r2t, mut r2c) = (vec![], vec![], vec![], vec![]);
    let mut l = Latencies::default();
    for b in batches {
        let Some(obs) = book.by_batch.get(b) else {
            continue;
        };
        let commands: Vec<&Obs> = obs
            .iter()
            .filter(|o| matches!(o.kind, Kind::Command(_)))
            .collect();
        let bos_out: Vec<&Obs> = obs
            .iter()
            .filter(|o| matches!(o.kind, Kind::Command(_) | Kind::Terminal))
            .collect();
        l.commands += commands.len() as u64;
        l.terminals += obs.iter().filter(|o| o.kind == Kind::Terminal).count() as u64;
        for o in obs.iter().filter(|o| matches!(o.kind, Kind::Outcome(_))) {
            l.outcomes += 1;
            let next = bos_out
                .iter()
                .filter(|x| x.correlation == o.correlation && x.produced_us >= o.produced_us)
                .min_by_key(|x| x.produced_us);
            if let Some(n) = next {
                transition.push(ms(n.at_us - o.produced_us));
                if n.kind == Kind::Terminal {
                    let next_cmd = commands
                        .iter()
                        .filter(|x| {
                            x.correlation != o.correlation && x.produced_us >= o.produced_us
                        })
                        .min_by_key(|x| x.produced_us);
                    if let Some(c) = next_cmd {
                        handover.push(ms(c.at_us - o.produced_us));
                    }
                }
            }
        }
        for r in obs.iter().filter(|o| o.kind == Kind::Request) {
            if let Some(t) = obs
                .iter()
                .find(|x| x.kind == Kind::Terminal && x.correlation == r.correlation)
            {
                r2t.push(ms(t.at_us - r.produced_us));
            }
            if let Some(c) = commands
                .iter()
                .filter(|x| x.correlation == r.correlation)
                .min_by_key(|x| x.produced_us)
            {
                r2c.push(ms(c.at_us - r.produced_us));
            }
        }
    }
    l.transitions = l.commands + l.terminals;
    l.transition_ms = Dist::of(transition);
    l.handover_ms = Dist::of(handover);
    l.request_to_terminal_ms = Dist::of(r2t);
    l.request_to_first_command_ms = Dist::of(r2c);
    l
}

/// Results of the loaded run.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub batches: usize,
    pub pipelines: usize,
    pub seconds: f64,
    pub pipelines_per_sec: f64,
    pub transitions_per_sec: f64,
    pub failed_terminals: u64,
    pub latencies: Latencies,
    /// Redis calls during the run, by command (`INFO commandstats` delta).
    pub redis_calls: BTreeMap<String, u64>,
    pub redis_calls_total: u64,
    pub redis_calls_per_transition: f64,
    /// `bcs_resolve_duration_seconds` between the run's start and end, in ms (interpolated
    /// within the histogram's buckets).
    pub resolve_hist_p50_ms: Option<f64>,
    pub resolve_hist_p99_ms: Option<f64>,
    pub resolve_calls: f64,
    /// Cores used on average by each process during the run.
    pub cpu_cores: BTreeMap<String, f64>,
    /// Messages published on the pipeline topics during the run, per transition (the floor
    /// publishes 2 per hop: the driver's and the relay's).
    pub messages_per_transition: f64,
}

/// Redis commands by service (MONITOR), from the attribution run.
#[derive(Debug, Clone, Serialize)]
pub struct Attributed {
    pub batches: usize,
    pub transitions: u64,
    /// Calls of the same window by `INFO commandstats` (cross-check of the attribution).
    pub commandstats_total: u64,
    /// Every command MONITOR saw, inside scripts included (should equal the above).
    pub monitor_total: u64,
    /// Commands sent by clients (each EVALSHA is one; what runs inside it is not) per
    /// transition, all services; WAIT is not counted (it shares the script's round trip).
    pub round_trips_per_transition: f64,
    /// WAIT commands per transition (`--redis-wait-replicas`), each pipelined with a commit's
    /// script.
    pub pipelined_waits_per_transition: f64,
    /// Every command MONITOR saw, by service and command (WAIT included).
    pub calls: crate::monitor::Attribution,
    /// Round trips per transition by service (WAIT not counted); `inside-scripts`: commands
    /// run inside scripts.
    pub per_transition: BTreeMap<String, f64>,
}

/// Memory figures.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub live_batches_bos: u64,
    pub live_batches_bcs: u64,
    /// KiB per service with the live batches.
    pub rss_live_kib: BTreeMap<String, Option<Rss>>,
    pub soak_events: u64,
    pub soak_batches: usize,
    pub soak_seconds: f64,
    pub rss_after_soak_kib: BTreeMap<String, Option<Rss>>,
    /// (events so far, seconds so far, KiB per service) after each soak wave.
    pub rss_series: Vec<(u64, f64, BTreeMap<String, Option<Rss>>)>,
    pub live_batches_after_soak_bos: u64,
}

/// The Redis the services ran against.
#[derive(Debug, Clone, Serialize)]
pub struct RedisSetup {
    /// `standalone` or `cluster` (the services' `REDIS_MODE`).
    pub mode: RedisMode,
    /// The services' `REDIS_WAIT_REPLICAS` (0: not set, commits are not waited for).
    pub wait_replicas: u32,
    /// Servers holding data (the cluster's masters; 1 standalone), `host:port`.
    pub masters: Vec<String>,
    /// The cluster's replicas, `host:port` (empty standalone).
    pub replicas: Vec<String>,
}

/// Everything the run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub machine: Machine,
    pub redis: RedisSetup,
    pub args: BTreeMap<String, String>,
    /// The floor relay with one task per partition (the services' way): the reference.
    pub floor: FloorResult,
    /// The same relay one message at a time (throughput only), for comparison.
    pub floor_sequential: FloorResult,
    /// The floor relay's throughput measured again right after the system's throughput run
    /// (no hops): the machine's speed drifts over minutes, so the relay's CPU per message the
    /// services are compared with is the mean of the two measurements around their run.
    pub floor_after: Option<FloorResult>,
    pub latency_run: Latencies,
    /// Direct timing of `POST /internal/v1/pipelines/define` (no causal wait), ms.
    pub resolve_direct_ms: Dist,
    pub throughput: Throughput,
    pub attribution: Option<Attributed>,
    pub rss_idle_kib: BTreeMap<String, Option<Rss>>,
    pub memory: Option<Memory>,
    /// The batch-size stage (`--batch-sizes`).
    pub batch_sizes: Vec<SizeRow>,
    /// The scale-out stage (`--scale-out-batches`).
    pub scale_out: Option<ScaleOut>,
    pub failed_sends: u64,
}

/// The throughput run with two replicas of the orchestrator and of the conductor.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleOut {
    pub replicas: usize,
    /// `TOPIC_PARTITIONS` of the services (every topic of the run).
    pub topic_partitions: String,
    /// The same run's throughput with one replica each (stage 2c), transitions/s.
    pub one_replica_transitions_per_sec: f64,
    pub throughput: Throughput,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("binary directory")?
            .to_path_buf(),
    };
    let run = chrono::Utc::now().format("%Y%m%dT%H%M%S").to_string();
    let out_dir = args.out.parent().map(Path::to_path_buf).unwrap_or_default();
    let run_dir = args
        .run_dir
        .clone()
        .unwrap_or_else(|| out_dir.join(format!("run-{run}")));
    std::fs::create_dir_all(&run_dir)?;
    let machine_start = loadavg();
    eprintln!(
        "[bench] run {run}: logs in {}, load average {machine_start}",
        run_dir.display()
    );
    let redis = RedisNodes::connect(args.redis_mode, &args.redis).await?;
    redis.ensure_replicas(args.redis_wait_replicas).await?;
    let redis_setup = RedisSetup {
        mode: args.redis_mode,
        wait_replicas: args.redis_wait_replicas,
        masters: redis.masters.iter().map(|n| n.addr.clone()).collect(),
        replicas: redis.replicas.iter().map(|n| n.addr.clone()).collect(),
    };
    eprintln!(
        "[bench] Redis: {}, {} master(s), {} replica(s), REDIS_WAIT_REPLICAS={}",
        args.redis_mode.as_str(),
        redis_setup.masters.len(),
        redis_setup.replicas.len(),
        args.redis_wait_replicas
    );

    // 1. The floor: one task per partition (latency and throughput), then one at a time.
    let inflight = args.floor_inflight.unwrap_or(args.batches).max(1);
    eprintln!(
        "[bench] floor: relay latency ({} hops, 1 in flight), then throughput ({inflight} in flight, {} s)",
        args.floor_hops, args.floor_secs
    );
    let relay_bin = bin_dir.join("huleedu-bench");
    // Every floor stage: the same relay, settings and load; `hops` latency hops first.
    let measure_floor = |hops: usize, stage: floor::Stage| {
        floor::measure(
            &args.kafka,
            &relay_bin,
            &run_dir,
            hops,
            inflight,
            args.floor_secs,
            stage,
        )
    };
    let floor = measure_floor(args.floor_hops, floor::Stage::Lanes).await?;
    eprintln!(
        "[bench] floor: hop p50 {:.2} ms p99 {:.2} ms; {:.0} msgs/s",
        floor.hop_ms.p50, floor.hop_ms.p99, floor.msgs_per_sec
    );
    let floor_sequential = measure_floor(0, floor::Stage::Sequential).await?;
    eprintln!(
        "[bench] floor, one message at a time: {:.0} msgs/s",
        floor_sequential.msgs_per_sec
    );

    // 2. The services.
    let mut ctx = start_services(&args, &bin_dir, &run_dir, run.clone(), redis).await?;
    let rss_idle = ctx.rss();

    // 2a. Latency: one batch at a time, each pipeline requested when the previous one ended.
    eprintln!(
        "[bench] latency run: {} batches, one at a time",
        args.latency_batches
    );
    ctx.book.record = true;
    let lat_batches: Vec<String> = (0..args.latency_batches)
        .map(|i| format!("lat-{}-{i}", ctx.run))
        .collect();
    for b in &lat_batches {
        ctx.register(std::slice::from_ref(b)).await?;
        for p in PIPELINES {
            let c = ctx.request(b, p).await;
            ctx.pump_until("a latency-run terminal event", |book| {
                book.terminals.contains(&c)
            })
            .await?;
        }
    }
    ctx.pump_for(Duration::from_millis(500)).await;
    let latency_run = latencies(&ctx.book, &lat_batches);
    eprintln!(
        "[bench] latency run: transition p50 {:.2} ms p99 {:.2} ms; request→terminal p50 {:.1} ms",
        latency_run.transition_ms.p50,
        latency_run.transition_ms.p99,
        latency_run.request_to_terminal_ms.p50
    );

    // 2b. The conductor's resolve latency, timed directly.
    let resolve_direct = time_define(&ctx, &lat_batches, 300).await?;

    // 2c. Throughput: every batch at once, all three requests queued up front.
    eprintln!(
        "[bench] throughput run: {} batches × 3 pipelines",
        args.batches
    );
    let thr_batches: Vec<String> = (0..args.batches)
        .map(|i| format!("thr-{}-{i}", ctx.run))
        .collect();
    ctx.register(&thr_batches).await?;
    ctx.pump_for(Duration::from_millis(500)).await;
    let throughput = measure_throughput(&mut ctx, &thr_batches).await?;
    eprintln!(
        "[bench] throughput run: {:.1} s, {:.1} pipelines/s, {:.1} transitions/s, {:.2} Redis calls/transition",
        throughput.seconds,
        throughput.pipelines_per_sec,
        throughput.transitions_per_sec,
        throughput.redis_calls_per_transition
    );
    // The floor again, right after: the services' CPU is judged against the relay's measured
    // on both sides of their run (the machine's speed drifts over minutes).
    let floor_after = if args.floor_secs > 0 {
        let f = measure_floor(0, floor::Stage::LanesAfter).await?;
        eprintln!(
            "[bench] floor again, after the throughput run: {:.0} msgs/s",
            f.msgs_per_sec
        );
        Some(f)
    } else {
        None
    };

    // 2d. Which service sends which Redis commands (MONITOR slows Redis, so a separate run).
    let attribution = if args.attribution_batches > 0 {
        eprintln!(
            "[bench] attribution run: {} batches × 3 pipelines with Redis MONITOR",
            args.attribution_batches
        );
        let batches: Vec<String> = (0..args.attribution_batches)
            .map(|i| format!("attr-{}-{i}", ctx.run))
            .collect();
        ctx.register(&batches).await?;
        ctx.pump_for(Duration::from_millis(500)).await;
        let before = ctx.redis.commandstats().await?;
        let monitor = Monitors::start(&ctx.redis.monitor_urls()).await?;
        ctx.run_pipelines(&batches).await?;
        let calls = monitor.finish().await;
        let after = ctx.redis.commandstats().await?;
        ctx.pump_for(Duration::from_millis(500)).await;
        let transitions = latencies(&ctx.book, &batches).transitions;
        // WAIT (`--redis-wait-replicas`) goes in the same pipeline as the commit's script:
        // not a round trip of its own.
        let round_trip_calls = |cmds: &BTreeMap<String, u64>| -> u64 {
            cmds.iter()
                .filter(|(c, _)| c.as_str() != "wait")
                .map(|(_, n)| n)
                .sum()
        };
        let per_transition = calls
            .iter()
            .map(|(svc, cmds)| {
                (
                    svc.clone(),
                    round_trip_calls(cmds) as f64 / transitions.max(1) as f64,
                )
            })
            .collect();
        let round_trips: u64 = calls
            .iter()
            .filter(|(svc, _)| svc.as_str() != crate::monitor::INSIDE_SCRIPTS)
            .map(|(_, cmds)| round_trip_calls(cmds))
            .sum();
        let waits: u64 = calls.values().filter_map(|cmds| cmds.get("wait")).sum();
        Some(Attributed {
            batches: batches.len(),
            transitions,
            commandstats_total: stats::delta(&before, &after).values().sum(),
            monitor_total: calls.values().flat_map(|c| c.values()).sum(),
            round_trips_per_transition: round_trips as f64 / transitions.max(1) as f64,
            pipelined_waits_per_transition: waits as f64 / transitions.max(1) as f64,
            calls,
            per_transition,
        })
    } else {
        None
    };
    // 2e. Batch sizes: the same pipelines on batches of 10 essays up to the largest that fits.
    let sizes = sizes::parse_sizes(&args.batch_sizes, &ctx.run)?;
    let batch_sizes = sizes::measure(&mut ctx, &sizes, &relay_bin, &run_dir).await?;

    // 2f. Scale-out: the throughput run again with a second orchestrator and conductor.
    let scale_out_batches = args.scale_out_batches.unwrap_or(args.batches);
    let scale_out = if scale_out_batches > 0 {
        Some(scale_out(&mut ctx, scale_out_batches, throughput.transitions_per_sec).await?)
    } else {
        None
    };
    ctx.book.record = false;
    ctx.book.by_batch.clear();

    // 3. Memory with the live batches, then the soak.
    let memory = if args.live_batches > 0 || args.soak_events > 0 {
        Some(memory(&mut ctx, lat_batches.len() + thr_batches.len()).await?)
    } else {
        None
    };

    let results = Results {
        machine: Machine {
            broker: std::env::var("BROKER").unwrap_or_else(|_| "kafka".to_owned()),
            broker_data: std::env::var("INFRA_KAFKA_DATA_ON").unwrap_or_default(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            cpu_model: read_first("/proc/cpuinfo", "model name").unwrap_or_default(),
            mem_total_mib: read_first("/proc/meminfo", "MemTotal")
                .and_then(|v| {
                    v.split_whitespace()
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                })
                .map(|kib| kib / 1024)
                .unwrap_or(0),
            loadavg_start: machine_start,
            loadavg_end: loadavg(),
        },
        redis: redis_setup,
        args: args_map(&args),
        failed_sends: ctx
            .sender
            .failures
            .load(std::sync::atomic::Ordering::Relaxed)
            + floor.failed_sends
            + floor_sequential.failed_sends
            + floor_after.as_ref().map_or(0, |f| f.failed_sends),
        floor,
        floor_sequential,
        floor_after,
        latency_run,
        resolve_direct_ms: resolve_direct,
        throughput,
        attribution,
        rss_idle_kib: rss_idle,
        memory,
        batch_sizes,
        scale_out,
    };
    for p in ctx.procs.drain(..) {
        p.stop().await;
    }
    ctx.reader.stop();
    report::print_and_write(&results, &args.out)?;
    Ok(())
}

fn args_map(a: &RunArgs) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("batches".into(), a.batches.to_string());
    m.insert("latency_batches".into(), a.latency_batches.to_string());
    m.insert("essays".into(), a.essays.to_string());
    m.insert("floor_hops".into(), a.floor_hops.to_string());
    m.insert(
        "floor_inflight".into(),
        a.floor_inflight.unwrap_or(a.batches).to_string(),
    );
    m.insert("floor_secs".into(), a.floor_secs.to_string());
    m.insert("live_batches".into(), a.live_batches.to_string());
    m.insert("soak_events".into(), a.soak_events.to_string());
    m.insert("soak_wave".into(), a.soak_wave.to_string());
    m.insert(
        "sim_tracked_batches".into(),
        a.sim_tracked_batches.to_string(),
    );
    m.insert(
        "attribution_batches".into(),
        a.attribution_batches.to_string(),
    );
    m.insert("service_log".into(), a.service_log.clone());
    m.insert("batch_sizes".into(), a.batch_sizes.clone());
    m.insert("redis_mode".into(), a.redis_mode.as_str().to_owned());
    m.insert(
        "redis_wait_replicas".into(),
        a.redis_wait_replicas.to_string(),
    );
    for var in ["KAFKA_FETCH_WAIT_MAX_MS", "TOPIC_PARTITIONS"] {
        if let Ok(v) = std::env::var(var) {
            m.insert(var.to_owned(), v);
        }
    }
    m
}

async fn start_services(
    args: &RunArgs,
    bin_dir: &Path,
    run_dir: &Path,
    run: String,
    redis: RedisNodes,
) -> anyhow::Result<Ctx> {
    let (bcs_port, bos_port, sim_port) = (free_port()?, free_port()?, free_port()?);
    let common = |group: &str, port: u16| -> Vec<(String, String)> {
        vec![
            ("KAFKA_BOOTSTRAP_SERVERS".into(), args.kafka.clone()),
            ("KAFKA_CONSUMER_GROUP".into(), group.into()),
            ("REDIS_MODE".into(), args.redis_mode.as_str().into()),
            ("REDIS_URL".into(), args.redis.clone()),
            ("LOG_FORMAT".into(), "json".into()),
            ("RUST_LOG".into(), args.service_log.clone()),
            ("OPERATOR_TOKEN".into(), "bench-operator-token".into()),
            ("HTTP_ADDR".into(), format!("127.0.0.1:{port}")),
            // As the image sets it (Dockerfile; docs/operations.md, "Memory").
            (
                "MALLOC_MMAP_THRESHOLD_".into(),
                std::env::var("MALLOC_MMAP_THRESHOLD_").unwrap_or_else(|_| "262144".into()),
            ),
        ]
    };
    let bcs_url = format!("http://127.0.0.1:{bcs_port}");
    let bos_url = format!("http://127.0.0.1:{bos_port}");
    let sim_url = format!("http://127.0.0.1:{sim_port}");
    let mut bos_env = common("batch-orchestrator-consumers", bos_port);
    bos_env.push(("BCS_URL".into(), bcs_url.clone()));
    let mut sim_env = common("els-simulator", sim_port);
    sim_env.push((
        "SIM_TRACKED_BATCHES".into(),
        args.sim_tracked_batches.to_string(),
    ));
    let mut envs = [common("bcs-event-consumer", bcs_port), bos_env, sim_env];
    if args.redis_wait_replicas > 0 {
        for env in &mut envs {
            env.push((
                "REDIS_WAIT_REPLICAS".into(),
                args.redis_wait_replicas.to_string(),
            ));
        }
    }
    // The scale-out stage compares one and two replicas on the same topics: enough partitions
    // for two from the start.
    if args.scale_out_batches != Some(0) && std::env::var_os("TOPIC_PARTITIONS").is_none() {
        for env in &mut envs {
            env.push(("TOPIC_PARTITIONS".into(), SCALE_OUT_PARTITIONS.into()));
        }
    }
    let service_envs: BTreeMap<String, Vec<(String, String)>> = SERVICES
        .iter()
        .map(|s| s.to_string())
        .zip(envs.iter().cloned())
        .collect();
    let mut procs = Vec::new();
    for (name, env) in SERVICES.iter().zip(envs) {
        let bin: PathBuf = bin_dir.join(name);
        anyhow::ensure!(
            bin.exists(),
            "{} not found: build with cargo build --release (scripts/bench.sh does)",
            bin.display()
        );
        procs.push(Proc::spawn(name, &bin, &[], &env, run_dir)?);
    }
    let http = reqwest::Client::new();
    for url in [&bcs_url, &bos_url, &sim_url] {
        wait_ready(&http, url, Duration::from_secs(120)).await?;
    }
    eprintln!(
        "[bench] services ready: conductor {bcs_url}, orchestrator {bos_url}, worker {sim_url}"
    );
    let reader = Reader::start(&args.kafka, &topics::PIPELINE).await?;
    Ok(Ctx {
        args: args.clone(),
        http,
        sender: Sender::new(&args.kafka)?,
        reader,
        book: Book::default(),
        redis,
        procs,
        bos_url,
        bcs_url,
        run,
        deadline: Duration::from_secs(args.stage_timeout),
        more_bos_urls: Vec::new(),
        envs: service_envs,
        bin_dir: bin_dir.to_path_buf(),
        run_dir: run_dir.to_path_buf(),
    })
}

/// `TOPIC_PARTITIONS` of a run with the scale-out stage (unless set in the environment).
const SCALE_OUT_PARTITIONS: &str = "6";

/// Start a second conductor and a second orchestrator (calling the second conductor) in the
/// same consumer groups, let a warm-up run spread the partitions, measure throughput with
/// `batches` batches, then stop the two (SIGTERM) so the later stages run as before.
async fn scale_out(
    ctx: &mut Ctx,
    batches: usize,
    one_replica_transitions_per_sec: f64,
) -> anyhow::Result<ScaleOut> {
    let (bcs_port, bos_port) = (free_port()?, free_port()?);
    let bcs2_url = format!("http://127.0.0.1:{bcs_port}");
    let with = |svc: &str, port: u16, extra: &[(&str, String)]| {
        let mut env: Vec<(String, String)> = ctx.envs[svc]
            .iter()
            .filter(|(k, _)| k != "HTTP_ADDR" && k != "BCS_URL")
            .cloned()
            .collect();
        env.push(("HTTP_ADDR".into(), format!("127.0.0.1:{port}")));
        env.push(("REPLICA_ID".into(), format!("{svc}-2")));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        env
    };
    let bcs_env = with("batch-conductor", bcs_port, &[]);
    let bos_env = with(
        "batch-orchestrator",
        bos_port,
        &[("BCS_URL", bcs2_url.clone())],
    );
    let mut added = Vec::new();
    for (name, env) in [
        ("batch-conductor", bcs_env),
        ("batch-orchestrator", bos_env),
    ] {
        let proc_name = format!("{name}-2");
        added.push(proc_name.clone());
        ctx.procs.push(Proc::spawn(
            &proc_name,
            &ctx.bin_dir.join(name),
            &[],
            &env,
            &ctx.run_dir,
        )?);
    }
    let bos2_url = format!("http://127.0.0.1:{bos_port}");
    for url in [&bcs2_url, &bos2_url] {
        wait_ready(&ctx.http, url, Duration::from_secs(120)).await?;
    }
    ctx.more_bos_urls.push(bos2_url);
    // A warm-up through both replicas: the groups have rebalanced once it has finished.
    let warm: Vec<String> = (0..50)
        .map(|i| format!("scale-warm-{}-{i}", ctx.run))
        .collect();
    ctx.register(&warm).await?;
    ctx.run_pipelines(&warm).await?;
    eprintln!(
        "[bench] scale-out run: {batches} batches × 3 pipelines, 2 orchestrators + 2 conductors"
    );
    let names: Vec<String> = (0..batches)
        .map(|i| format!("scale-{}-{i}", ctx.run))
        .collect();
    ctx.register(&names).await?;
    ctx.pump_for(Duration::from_millis(500)).await;
    let throughput = measure_throughput(ctx, &names).await?;
    eprintln!(
        "[bench] scale-out run: {:.1} transitions/s with 2 replicas each (1 replica: {:.1})",
        throughput.transitions_per_sec, one_replica_transitions_per_sec
    );
    let (stop, keep): (Vec<Proc>, Vec<Proc>) = std::mem::take(&mut ctx.procs)
        .into_iter()
        .partition(|p| added.contains(&p.name));
    ctx.procs = keep;
    ctx.more_bos_urls.clear();
    for p in stop {
        p.terminate(Duration::from_secs(20)).await;
    }
    Ok(ScaleOut {
        replicas: 2,
        topic_partitions: std::env::var("TOPIC_PARTITIONS")
            .unwrap_or_else(|_| SCALE_OUT_PARTITIONS.to_owned()),
        one_replica_transitions_per_sec,
        throughput,
    })
}

/// Run three pipelines on each of `batches` (registered, all requests queued up front) and
/// measure throughput, CPU and Redis calls.
async fn measure_throughput(ctx: &mut Ctx, thr_batches: &[String]) -> anyhow::Result<Throughput> {
    let redis_before = ctx.redis.commandstats().await?;
    let bcs_before = stats::scrape(&ctx.http, &ctx.bcs_url).await?;
    let failed_before = ctx.book.failed_terminals;
    let mut pids = stats::infra_pids(ctx.redis.mode == RedisMode::Standalone);
    pids.extend(ctx.redis.cluster_pids().await?);
    pids.extend(ctx.procs.iter().map(|p| (p.name.clone(), p.pid)));
    let cpu = stats::CpuMeter::start(pids);
    let (t0, t_end, expected) = ctx.run_pipelines(thr_batches).await?;
    let cpu_cores = cpu.finish();
    let redis_after = ctx.redis.commandstats().await?;
    let bcs_after = stats::scrape(&ctx.http, &ctx.bcs_url).await?;
    ctx.pump_for(Duration::from_millis(500)).await;
    let lat = latencies(&ctx.book, thr_batches);
    let messages: usize = thr_batches
        .iter()
        .filter_map(|b| ctx.book.by_batch.get(b))
        .map(|obs| obs.iter().filter(|o| o.kind != Kind::Ready).count())
        .sum();
    let seconds = (t_end - t0) as f64 / 1e6;
    let redis_calls = stats::delta(&redis_before, &redis_after);
    let redis_calls_total: u64 = redis_calls.values().sum();
    let hist = "bcs_resolve_duration_seconds";
    let (hb, ha) = (
        stats::buckets(&bcs_before, hist),
        stats::buckets(&bcs_after, hist),
    );
    let throughput = Throughput {
        batches: thr_batches.len(),
        pipelines: expected.len(),
        seconds,
        pipelines_per_sec: expected.len() as f64 / seconds,
        transitions_per_sec: lat.transitions as f64 / seconds,
        failed_terminals: ctx.book.failed_terminals - failed_before,
        redis_calls_per_transition: redis_calls_total as f64 / lat.transitions.max(1) as f64,
        redis_calls,
        redis_calls_total,
        resolve_hist_p50_ms: stats::histogram_quantile(&hb, &ha, 0.5).map(|s| s * 1000.0),
        resolve_hist_p99_ms: stats::histogram_quantile(&hb, &ha, 0.99).map(|s| s * 1000.0),
        resolve_calls: ha.last().map(|b| b.1).unwrap_or(0.0)
            - hb.last().map(|b| b.1).unwrap_or(0.0),
        messages_per_transition: messages as f64 / lat.transitions.max(1) as f64,
        latencies: lat,
        cpu_cores,
    };
    Ok(throughput)
}

/// Time `n` define calls (no `after_pipeline_id`: read and resolve only).
async fn time_define(ctx: &Ctx, batches: &[String], n: usize) -> anyhow::Result<Dist> {
    let url = format!("{}/internal/v1/pipelines/define", ctx.bcs_url);
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let batch = batches
            .get(i % batches.len().max(1))
            .cloned()
            .unwrap_or_else(|| "none".into());
        let body = serde_json::json!({
            "batch_id": batch,
            "requested_pipeline": "ai_feedback",
            "correlation_id": Uuid::new_v4().to_string(),
        });
        let start = Instant::now();
        let r = ctx.http.post(&url).json(&body).send().await?;
        let ok = r.status().is_success();
        let _ = r.bytes().await?;
        v.push(start.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(ok, "define answered an error");
    }
    Ok(Dist::of(v))
}

async fn memory(ctx: &mut Ctx, batches_so_far: usize) -> anyhow::Result<Memory> {
    let fill = ctx.args.live_batches.saturating_sub(batches_so_far);
    if fill > 0 {
        eprintln!("[bench] memory: {fill} more live batches (one spellcheck pipeline each)");
        let fill_batches: Vec<String> =
            (0..fill).map(|i| format!("live-{}-{i}", ctx.run)).collect();
        for chunk in fill_batches.chunks(2000) {
            ctx.register(chunk).await?;
            let mut expected = Vec::with_capacity(chunk.len());
            for b in chunk {
                expected.push(ctx.request(b, "spellcheck").await);
            }
            ctx.pump_until("the live batches' terminal events", |book| {
                expected.iter().all(|c| book.terminals.contains(c))
            })
            .await?;
        }
    }
    ctx.pump_for(Duration::from_secs(2)).await;
    let (live_bos, live_bcs) = ctx.live_batches().await?;
    let rss_live = ctx.rss();
    eprintln!("[bench] memory: {live_bos} live batches in the orchestrator, RSS {rss_live:?}");

    let soak_start = ctx.reader.seen.load(std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let mut series = Vec::new();
    let mut soak_batches = 0usize;
    let mut wave = 0usize;
    while ctx.reader.seen.load(std::sync::atomic::Ordering::Relaxed) - soak_start
        < ctx.args.soak_events
    {
        let batches: Vec<String> = (0..ctx.args.soak_wave.max(1))
            .map(|i| format!("soak-{}-{wave}-{i}", ctx.run))
            .collect();
        ctx.register(&batches).await?;
        let (_, _, expected) = ctx.run_pipelines(&batches).await?;
        // Terminal ids are not needed any more (keeps the bench's own memory flat).
        for c in &expected {
            ctx.book.terminals.remove(c);
        }
        soak_batches += batches.len();
        wave += 1;
        let events = ctx.reader.seen.load(std::sync::atomic::Ordering::Relaxed) - soak_start;
        let secs = started.elapsed().as_secs_f64();
        series.push((events, secs, ctx.rss()));
        eprintln!("[bench] soak: {events} events in {secs:.0} s");
    }
    ctx.pump_for(Duration::from_secs(2)).await;
    let soak_events = ctx.reader.seen.load(std::sync::atomic::Ordering::Relaxed) - soak_start;
    let (live_after, _) = ctx.live_batches().await?;
    Ok(Memory {
        live_batches_bos: live_bos,
        live_batches_bcs: live_bcs,
        rss_live_kib: rss_live,
        soak_events,
        soak_batches,
        soak_seconds: started.elapsed().as_secs_f64(),
        rss_after_soak_kib: ctx.rss(),
        rss_series: series,
        live_batches_after_soak_bos: live_after,
    })
}
