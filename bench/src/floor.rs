//! The floor: a minimal relay with the services' client settings, and its measurement.
//!
//! The relay process consumes `bench.floor[.seq|.after].in`, produces each message unchanged
//! (same key, same bytes) to `bench.floor[.seq|.after].out`, awaits the broker's ack and stores the offset — what every
//! service's consumer runner must do at least once per hop, and nothing else. Both topics have
//! the services' partition count (`TOPIC_PARTITIONS`, default 3) and the relay uses
//! `KafkaSettings::consumer_config` / `producer_config` unchanged. It runs in two modes, each on
//! its own pair of topics: one task per partition (`--lanes`: in order within a partition,
//! partitions side by side, as the orchestrator and the conductor consume — the reference the
//! targets are judged against) and one message at a time overall (as the reference worker
//! consumes). The first mode runs again after the services' throughput run, on topics of its
//! own ([`Stage`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use huleedu_kafka::{provision_topics, KafkaSettings, Producer};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::launch::Proc;
use crate::reader::{now_us, Kind, Reader};
use crate::stats::{Dist, Rss};

/// A stage of the floor measurement. Each has its own pair of topics (and relay log): a relay
/// never sees another stage's messages — a new consumer group starts at the earliest offset, so
/// a stage on an earlier stage's topics would relay that stage's messages again and count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// One task per partition (the services' way): the reference.
    Lanes,
    /// One message at a time overall, for comparison.
    Sequential,
    /// [`Stage::Lanes`] again, after the services' throughput run.
    LanesAfter,
}

impl Stage {
    fn lanes(self) -> bool {
        self != Stage::Sequential
    }
    fn topics(self) -> (&'static str, &'static str) {
        match self {
            Stage::Lanes => ("bench.floor.in", "bench.floor.out"),
            Stage::Sequential => ("bench.floor.seq.in", "bench.floor.seq.out"),
            Stage::LanesAfter => ("bench.floor.after.in", "bench.floor.after.out"),
        }
    }
    fn relay_name(self) -> &'static str {
        match self {
            Stage::Lanes => "floor-relay",
            Stage::Sequential => "floor-relay-sequential",
            Stage::LanesAfter => "floor-relay-after",
        }
    }
}
/// Size of a floor message, close to the services' commands and outcomes for 5 essays.
const PAYLOAD_BYTES: usize = 1000;

/// Kafka settings exactly as a service builds them from this process's environment (so a
/// `KAFKA_FETCH_WAIT_MAX_MS` given to the run applies to the floor and the services alike),
/// with the run's broker and the given client id and group.
pub fn kafka_settings(kafka: &str, client_id: &str, group: &str) -> anyhow::Result<KafkaSettings> {
    let mut s =
        KafkaSettings::from_process(client_id, "bench").map_err(|e| anyhow::anyhow!("{e}"))?;
    s.bootstrap_servers = kafka.to_owned();
    s.consumer_group = group.to_owned();
    Ok(s)
}

/// The relay process's main loop. `lanes`: one task per partition (in order within a
/// partition, partitions side by side — how the orchestrator and the conductor consume);
/// otherwise one message at a time overall (how the reference worker consumes).
pub async fn relay_process(
    kafka: &str,
    input: &str,
    output: &str,
    group: &str,
    lanes: bool,
) -> anyhow::Result<()> {
    let settings = kafka_settings(kafka, "bench-floor-relay", group)?;
    let consumer: Arc<StreamConsumer> = Arc::new(settings.consumer_config().create()?);
    consumer.subscribe(&[input])?;
    let producer = Producer::new(&settings)?;
    let mut lane_of: HashMap<i32, mpsc::UnboundedSender<OwnedMessage>> = HashMap::new();
    loop {
        let m = match consumer.recv().await {
            Ok(m) => m.detach(),
            Err(e) => {
                eprintln!("relay: consumer error {e}");
                continue;
            }
        };
        if !lanes {
            relay_one(&consumer, &producer, output, &m).await?;
            continue;
        }
        let lane = lane_of.entry(m.partition()).or_insert_with(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<OwnedMessage>();
            let (consumer, producer, output) =
                (consumer.clone(), producer.clone(), output.to_owned());
            tokio::spawn(async move {
                while let Some(m) = rx.recv().await {
                    if let Err(e) = relay_one(&consumer, &producer, &output, &m).await {
                        eprintln!("relay: {e}");
                    }
                }
            });
            tx
        });
        lane.send(m).context("relay lane stopped")?;
    }
}

/// Produce `m` unchanged to `output`, await the ack (retrying), then store its offset.
async fn relay_one(
    consumer: &StreamConsumer,
    producer: &Producer,
    output: &str,
    m: &OwnedMessage,
) -> anyhow::Result<()> {
    let payload = m.payload().unwrap_or_default();
    loop {
        match producer.send_parts(output, m.key(), payload, &[]).await {
            Ok(_) => break,
            Err(e) => {
                eprintln!("relay: produce failed {e}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    consumer.store_offset(m.topic(), m.partition(), m.offset())?;
    Ok(())
}

/// Enqueues messages in call order (the idempotent producer keeps that order per partition)
/// and counts failed deliveries in the background.
#[derive(Clone)]
pub struct Sender {
    inner: FutureProducer,
    pub failures: Arc<AtomicU64>,
}

impl Sender {
    pub fn new(kafka: &str) -> anyhow::Result<Self> {
        let settings = kafka_settings(kafka, "bench-driver", "bench-driver")?;
        Ok(Self {
            inner: settings.producer_config().create()?,
            failures: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Enqueue now (waiting while librdkafka's queue is full); the ack is awaited elsewhere.
    pub async fn enqueue(&self, topic: &str, key: &str, payload: &[u8]) {
        let mut record = FutureRecord::<str, [u8]>::to(topic)
            .key(key)
            .payload(payload);
        loop {
            match self.inner.send_result(record) {
                Ok(delivery) => {
                    let failures = self.failures.clone();
                    tokio::spawn(async move {
                        let failed = match delivery.await {
                            Ok(Ok(_)) => return,
                            Ok(Err((e, _))) => e.to_string(),
                            Err(_) => "delivery future cancelled".to_owned(),
                        };
                        // Say why, for the first few: a silent failure only shows as a stall.
                        if failures.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("[bench] a send failed: {failed}");
                        }
                    });
                    return;
                }
                Err((e, r)) => {
                    // A full queue empties; anything else (a message too large) never will.
                    if !matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ) {
                        eprintln!("[bench] a send to {topic} was refused: {e}");
                        self.failures.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    record = r;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
}

fn floor_payload(key: &str, seq: u64) -> Vec<u8> {
    floor_payload_of(key, seq, PAYLOAD_BYTES)
}

/// A floor message of `bytes` bytes (at least its header).
fn floor_payload_of(key: &str, seq: u64, bytes: usize) -> Vec<u8> {
    let head = format!("{{\"k\":\"{key}\",\"s\":{seq},\"t\":{},\"p\":\"", now_us());
    let mut s = head.into_bytes();
    s.resize(bytes.saturating_sub(2).max(s.len()), b'x');
    s.extend_from_slice(b"\"}");
    s
}

/// The floor relay's CPU per relayed message of `bytes` bytes, µs: `count` messages one at a
/// time (the next sent when the previous one was relayed), less the relay's idle CPU over the
/// same wall time. The batch-size stage's reference for a transition moving messages that size.
pub async fn relay_cpu_us(
    kafka: &str,
    bin: &Path,
    run_dir: &Path,
    bytes: usize,
    count: usize,
) -> anyhow::Result<f64> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (input, output) = (
        format!("bench.floor.size.{id}.in"),
        format!("bench.floor.size.{id}.out"),
    );
    let settings = kafka_settings(kafka, "bench", "bench")?;
    provision_topics(&settings, &[input.as_str(), output.as_str()])
        .await
        .context("floor topics")?;
    let group = format!("bench-floor-{id}");
    let args = [
        "relay", "--kafka", kafka, "--input", &input, "--output", &output, "--group", &group,
        "--lanes",
    ];
    let relay = Proc::spawn(&format!("floor-relay-{bytes}"), bin, &args, &[], run_dir)?;
    let mut reader = Reader::start(kafka, &[output.as_str()]).await?;
    let sender = Sender::new(kafka)?;
    // One message relayed at a time: wait for each (the first also waits for the group).
    async fn relay_one(
        sender: &Sender,
        input: &str,
        reader: &mut Reader,
        payload: Vec<u8>,
        within: Duration,
    ) -> anyhow::Result<()> {
        sender.enqueue(input, "size", &payload).await;
        tokio::time::timeout(within, async {
            while let Some(o) = reader.rx.recv().await {
                if o.kind == Kind::Floor && o.bytes == payload.len() {
                    return Ok(());
                }
            }
            anyhow::bail!("the reader stopped")
        })
        .await
        .context("a relayed message did not arrive in time")?
    }
    let message = |seq| floor_payload_of("size", seq, bytes);
    relay_one(
        &sender,
        &input,
        &mut reader,
        message(0),
        Duration::from_secs(60),
    )
    .await?;
    let cpu = |pid| crate::stats::cpu_seconds(pid).context("the relay's CPU time");
    let idle_start = (cpu(relay.pid)?, Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = (cpu(relay.pid)? - idle_start.0) / idle_start.1.elapsed().as_secs_f64();
    let start = (cpu(relay.pid)?, Instant::now());
    for seq in 1..=count as u64 {
        relay_one(
            &sender,
            &input,
            &mut reader,
            message(seq),
            Duration::from_secs(30),
        )
        .await?;
    }
    let used = cpu(relay.pid)? - start.0 - idle * start.1.elapsed().as_secs_f64();
    reader.stop();
    relay.stop().await;
    Ok(used.max(0.0) * 1e6 / count as f64)
}

/// What the floor measured.
#[derive(Debug, Clone, Serialize)]
pub struct FloorResult {
    /// One task per partition (true) or one message at a time overall.
    pub lanes: bool,
    /// Hop latency with one message in flight (ms; none measured when `hops` was 0).
    pub hop_ms: Dist,
    /// Messages/s with `inflight` messages in flight.
    pub msgs_per_sec: f64,
    pub inflight: usize,
    /// Hop latency under that load (ms).
    pub loaded_hop_ms: Dist,
    pub relay_rss_kib: Option<Rss>,
    pub failed_sends: u64,
    /// Cores used on average by each process during the throughput window.
    pub cpu_cores: std::collections::BTreeMap<String, f64>,
}

/// Start the relay, measure it, stop it.
pub async fn measure(
    kafka: &str,
    bin: &Path,
    run_dir: &Path,
    hops: usize,
    inflight: usize,
    secs: u64,
    stage: Stage,
) -> anyhow::Result<FloorResult> {
    let lanes = stage.lanes();
    let (floor_in, floor_out) = stage.topics();
    let settings = kafka_settings(kafka, "bench", "bench")?;
    provision_topics(&settings, &[floor_in, floor_out])
        .await
        .context("floor topics")?;
    let group = format!("bench-floor-{}", uuid::Uuid::new_v4().simple());
    let mut relay_args = vec![
        "relay", "--kafka", kafka, "--input", floor_in, "--output", floor_out, "--group", &group,
    ];
    if lanes {
        relay_args.push("--lanes");
    }
    let name = stage.relay_name();
    let relay = Proc::spawn(name, bin, &relay_args, &[], run_dir)?;
    let mut reader = Reader::start(kafka, &[floor_out]).await?;
    let sender = Sender::new(kafka)?;

    // Warm-up: until the relay has joined its group and relays on every partition.
    let warm_keys: Vec<String> = (0..12).map(|i| format!("warm-{i}")).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pending: std::collections::HashSet<String> = warm_keys.iter().cloned().collect();
    let mut next_send = Instant::now();
    while !pending.is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the floor relay did not start relaying within 60 s (see {}/{name}.log)",
            run_dir.display()
        );
        if Instant::now() >= next_send {
            for k in &pending {
                sender.enqueue(floor_in, k, &floor_payload(k, 0)).await;
            }
            next_send = Instant::now() + Duration::from_secs(2);
        }
        if let Ok(Some(o)) =
            tokio::time::timeout(Duration::from_millis(100), reader.rx.recv()).await
        {
            pending.remove(&o.key);
        }
    }
    // Let stragglers of the warm-up arrive, then drop them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while reader.rx.try_recv().is_ok() {}

    // Latency: one message in flight.
    let mut hop = Vec::with_capacity(hops);
    for seq in 0..hops as u64 {
        sender
            .enqueue(floor_in, "lat", &floor_payload("lat", seq))
            .await;
        loop {
            let o = tokio::time::timeout(Duration::from_secs(10), reader.rx.recv())
                .await
                .context("floor hop did not arrive within 10 s")?
                .context("reader stopped")?;
            if o.kind == Kind::Floor && o.key == "lat" {
                hop.push((o.at_us - o.produced_us) as f64 / 1000.0);
                break;
            }
        }
    }

    // Throughput: `inflight` keys, each sending its next message when the last one arrives.
    let keys: Vec<String> = (0..inflight).map(|i| format!("f{i}")).collect();
    let mut seq: HashMap<String, u64> = HashMap::new();
    for k in &keys {
        sender.enqueue(floor_in, k, &floor_payload(k, 0)).await;
        seq.insert(k.clone(), 0);
    }
    let start = Instant::now();
    let mut pids = crate::stats::infra_pids(true);
    pids.push(("floor relay".to_owned(), relay.pid));
    let cpu = crate::stats::CpuMeter::start(pids);
    let window_start = start + Duration::from_secs(1);
    let window_end = window_start + Duration::from_secs(secs);
    let mut in_window = 0u64;
    let mut loaded = Vec::new();
    while Instant::now() < window_end {
        let Ok(Some(o)) = tokio::time::timeout(Duration::from_millis(200), reader.rx.recv()).await
        else {
            continue;
        };
        let now = Instant::now();
        if now >= window_start && now < window_end {
            in_window += 1;
            loaded.push((o.at_us - o.produced_us) as f64 / 1000.0);
        }
        if let Some(s) = seq.get_mut(&o.key) {
            *s += 1;
            let n = *s;
            sender
                .enqueue(floor_in, &o.key, &floor_payload(&o.key, n))
                .await;
        }
    }
    let msgs_per_sec = in_window as f64 / secs as f64;
    let cpu_cores = cpu.finish();
    let relay_rss_kib = relay.rss();
    // Drain what is still in flight before stopping.
    let drain_until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < drain_until {
        if tokio::time::timeout(Duration::from_millis(500), reader.rx.recv())
            .await
            .is_err()
        {
            break;
        }
    }
    reader.stop();
    relay.stop().await;
    Ok(FloorResult {
        lanes,
        hop_ms: Dist::of(hop),
        msgs_per_sec,
        inflight,
        loaded_hop_ms: Dist::of(loaded),
        relay_rss_kib,
        failed_sends: sender.failures.load(Ordering::Relaxed),
        cpu_cores,
    })
}
