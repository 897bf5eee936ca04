//! `huleedu-bench`: measures the pipeline services against the physical floor.
//!
//! One run, on one broker and one Redis — a server or a Redis Cluster (`--redis-mode`) — both
//! started by `scripts/bench.sh`:
//!
//! 1. **floor** — a minimal relay process (consume a message, produce it to another topic,
//!    await the ack, store the offset; nothing else) with the services' client settings and
//!    partition count, one task per partition: hop latency unloaded (one message in flight)
//!    and messages/s loaded; then the same relay one message at a time (messages/s).
//! 2. **system** — conductor, orchestrator and reference worker as release binaries; batches
//!    run `cj_assessment`, `nlp` and `ai_feedback` one after the other: latency unloaded (one
//!    batch at a time), throughput loaded (all batches at once), Redis calls per transition
//!    from `INFO commandstats`, the conductor's resolve latency.
//! 3. **memory** — each service's RSS with 10,000 live batches and after a 100,000-event soak.
//!
//! Prints a table of every figure with its ratio to the floor and writes the same as JSON.
//! See `docs/performance.md`.

mod floor;
mod launch;
mod monitor;
mod reader;
mod redis_nodes;
mod report;
mod stats;
mod system;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "huleedu-bench",
    about = "Benchmark of the HuleEdu pipeline services against a minimal Kafka relay"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the whole benchmark (what scripts/bench.sh calls).
    Run(RunArgs),
    /// The floor relay process (started by `run`): consume, produce, await ack, store offset.
    Relay {
        #[arg(long)]
        kafka: String,
        #[arg(long)]
        input: String,
        #[arg(long)]
        output: String,
        #[arg(long)]
        group: String,
        /// One task per partition (as the orchestrator and the conductor consume) instead of
        /// one message at a time overall.
        #[arg(long)]
        lanes: bool,
    },
}

/// Settings of one benchmark run.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Broker (bootstrap servers).
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    pub kafka: String,
    /// Redis URL; with `--redis-mode cluster`, the cluster's seed node URLs, comma-separated.
    #[arg(long, env = "REDIS_URL")]
    pub redis: String,
    /// One Redis server, or a Redis Cluster (`scripts/bench.sh --redis-cluster` starts one
    /// and sets this): the services run with `REDIS_MODE` set to it; the Redis figures are
    /// summed over the cluster's masters.
    #[arg(long, value_enum, default_value_t = redis_nodes::RedisMode::Standalone)]
    pub redis_mode: redis_nodes::RedisMode,
    /// Replicas that must confirm every commit (the services' `REDIS_WAIT_REPLICAS`, Redis
    /// WAIT); 0 = not set.
    #[arg(long, default_value_t = 0)]
    pub redis_wait_replicas: u32,
    /// Directory holding the release binaries of the services (default: next to this binary).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Where the JSON results go.
    #[arg(long, default_value = "target/bench/results.json")]
    pub out: PathBuf,
    /// Service logs and the run's scratch files (default: next to --out).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Batches of the throughput run (all in flight at once, 3 pipelines each).
    #[arg(long, default_value_t = 1000)]
    pub batches: usize,
    /// Batches of the latency run (one at a time, 3 pipelines each).
    #[arg(long, default_value_t = 50)]
    pub latency_batches: usize,
    /// Essays per batch.
    #[arg(long, default_value_t = 5)]
    pub essays: usize,
    /// Hops of the floor's latency run (one message in flight).
    #[arg(long, default_value_t = 500)]
    pub floor_hops: usize,
    /// Messages in flight in the floor's throughput run (default: --batches, the system's
    /// concurrency).
    #[arg(long)]
    pub floor_inflight: Option<usize>,
    /// Seconds of the floor's throughput run (after one second of warm-up).
    #[arg(long, default_value_t = 15)]
    pub floor_secs: u64,
    /// Live batches (known, with state in Redis) when the memory is measured.
    #[arg(long, default_value_t = 10_000)]
    pub live_batches: usize,
    /// Events of the soak (messages on the pipeline topics) after the live-batch measurement.
    #[arg(long, default_value_t = 100_000)]
    pub soak_events: u64,
    /// Batches per soak wave (3 pipelines each).
    #[arg(long, default_value_t = 500)]
    pub soak_wave: usize,
    /// The reference worker's table bound (`SIM_TRACKED_BATCHES`) for the run: small enough
    /// that the soak's first half fills the table with soak batches, so its second half shows
    /// the worker's steady state (the service default, 10,000, needs a soak three times longer).
    #[arg(long, default_value_t = 2_000)]
    pub sim_tracked_batches: usize,
    /// Batches of the attribution run (Redis MONITOR: which service sends which command).
    #[arg(long, default_value_t = 200)]
    pub attribution_batches: usize,
    /// Batches of the scale-out stage: the throughput run again with a second orchestrator
    /// and a second conductor (each orchestrator calling its own conductor), every topic with
    /// TOPIC_PARTITIONS=6 for the whole run unless set otherwise; 0 skips the stage
    /// [default: --batches]
    #[arg(long)]
    pub scale_out_batches: Option<usize>,
    /// Essay counts of the batch-size stage (comma-separated; `max` = the largest batch whose
    /// messages fit the default KAFKA_MAX_MESSAGE_BYTES; `none` skips the stage).
    #[arg(long, default_value = "10,100,1000,max")]
    pub batch_sizes: String,
    /// `RUST_LOG` of the services (they log every handled event at `info`, as deployed).
    #[arg(long, default_value = "info,librdkafka=warn")]
    pub service_log: String,
    /// Longest wait for any one stage before the run gives up (seconds).
    #[arg(long, default_value_t = 600)]
    pub stage_timeout: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Relay {
            kafka,
            input,
            output,
            group,
            lanes,
        } => rt.block_on(floor::relay_process(&kafka, &input, &output, &group, lanes)),
        Cmd::Run(args) => rt.block_on(system::run(args)),
    }
}
