//! Test kit for the integration and end-to-end tests of the HuleEdu pipeline services.
//!
//! The tests talk to a real Kafka-protocol broker and a real Redis, started on free ports by
//! `scripts/test.sh`, which passes their addresses in `HULEEDU_TEST_KAFKA` and
//! `HULEEDU_TEST_REDIS`. Every test uses its own topics, consumer groups and Redis key prefix
//! ([`unique`]), so tests run in parallel without sharing state. Waiting is always for a
//! condition with a deadline ([`wait_until`], [`TopicReader::wait_for`]), never a fixed sleep.

pub mod observer;
pub mod stack;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use huleedu_kafka::{KafkaSettings, TextMessage};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;

/// Broker address from `HULEEDU_TEST_KAFKA`.
pub fn kafka_bootstrap() -> String {
    std::env::var("HULEEDU_TEST_KAFKA").unwrap_or_else(|_| {
        panic!("HULEEDU_TEST_KAFKA is not set: run the suite with scripts/test.sh, which starts a broker and Redis")
    })
}

/// Redis URL from `HULEEDU_TEST_REDIS`.
pub fn redis_url() -> String {
    std::env::var("HULEEDU_TEST_REDIS").unwrap_or_else(|_| {
        panic!("HULEEDU_TEST_REDIS is not set: run the suite with scripts/test.sh, which starts a broker and Redis")
    })
}

/// The test Redis's mode: `HULEEDU_TEST_REDIS_MODE=cluster` when `HULEEDU_TEST_REDIS` lists the
/// seed nodes of a Redis Cluster (scripts/test.sh runs the store tests and the end-to-end
/// scenarios a second time on one that way); standalone otherwise.
pub fn redis_mode() -> huleedu_store::RedisMode {
    match std::env::var("HULEEDU_TEST_REDIS_MODE").as_deref() {
        Ok("cluster") => huleedu_store::RedisMode::Cluster,
        _ => huleedu_store::RedisMode::Standalone,
    }
}

/// Settings of the test Redis with key prefix `prefix`: `HULEEDU_TEST_REDIS` in the mode of
/// [`redis_mode`], and the CA in `HULEEDU_TEST_REDIS_CA` when the URL is `rediss://`
/// (scripts/test.sh runs the store tests a second time over TLS that way).
pub fn redis_settings(prefix: &str) -> huleedu_store::RedisSettings {
    let mut s = huleedu_store::RedisSettings::local(&redis_url(), prefix);
    s.mode = redis_mode();
    s.tls_ca_file = std::env::var_os("HULEEDU_TEST_REDIS_CA").map(Into::into);
    s
}

/// The throw-away certificates of this run (`HULEEDU_TEST_TLS_DIR`, made by
/// scripts/lib/certs.sh), if any.
pub fn tls_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("HULEEDU_TEST_TLS_DIR").map(Into::into)
}

/// An HTTP client for the services of a test stack: trusts the run's private CA, so stacks
/// whose conductor serves HTTPS are reachable too.
pub fn http_client() -> reqwest::Client {
    let mut b = reqwest::Client::builder();
    if let Some(dir) = tls_dir() {
        if let Ok(pem) = std::fs::read(dir.join("ca.pem")) {
            if let Ok(ca) = reqwest::Certificate::from_pem(&pem) {
                b = b.add_root_certificate(ca);
            }
        }
    }
    b.build().expect("HTTP client")
}

/// `name` plus a random suffix: topics, groups, prefixes and batch ids of one test.
pub fn unique(name: &str) -> String {
    format!(
        "{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// Kafka settings for a test: the test broker, a unique group, `partitions` partitions, a short
/// session timeout so a killed member's partitions move on quickly.
pub fn kafka_settings(client_id: &str, group: &str, partitions: i32) -> KafkaSettings {
    let mut s = KafkaSettings::local(&kafka_bootstrap(), client_id, group);
    s.topic_partitions = partitions;
    s.session_timeout = Duration::from_secs(3);
    s
}

/// The offsets consumer group `group` has committed for `partitions` (0 where it has none), as
/// the broker has them now.
pub async fn committed_offsets(
    kafka: &str,
    group: &str,
    partitions: Vec<(String, i32)>,
) -> anyhow::Result<std::collections::BTreeMap<(String, i32), i64>> {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("broker.address.family", "v4")
        .create()?;
    tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in &partitions {
            tpl.add_partition(t, *p);
        }
        let got = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
        let mut out = std::collections::BTreeMap::new();
        for e in got.elements() {
            let o = match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            };
            out.insert((e.topic().to_owned(), e.partition()), o);
        }
        Ok(out)
    })
    .await?
}

/// The runtime of the libtest-mimic harnesses (e2e, chaos): two workers, shared by every
/// scenario of the run; hand it back to [`shut_down`] at the end.
pub fn harness_runtime() -> std::sync::Arc<tokio::runtime::Runtime> {
    std::sync::Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime"),
    )
}

/// Ends a harness's runtime, giving its tasks 5 s (when no scenario holds it any more).
pub fn shut_down(rt: std::sync::Arc<tokio::runtime::Runtime>) {
    if let Ok(rt) = std::sync::Arc::try_unwrap(rt) {
        rt.shutdown_timeout(Duration::from_secs(5));
    }
}

/// Poll `cond` every 20 ms until it is true; panic with `what` after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A message as a test saw it: key and header values as text, payload as bytes.
pub type Seen = TextMessage;

/// A seen message's payload as JSON.
pub trait JsonPayload {
    /// The payload parsed as JSON; panics when it is not JSON.
    fn json(&self) -> serde_json::Value;
}

impl JsonPayload for Seen {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("payload is JSON")
    }
}

/// Reads topics from the beginning in the background (its own group, no commits) and keeps
/// everything it saw, for assertions.
#[derive(Debug)]
pub struct TopicReader {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: CancellationToken,
    bootstrap: String,
    topics: Vec<String>,
}

impl TopicReader {
    pub fn start(topics: &[&str]) -> Self {
        Self::start_on(&kafka_bootstrap(), topics)
    }

    /// Like [`TopicReader::start`], on the broker at `bootstrap`.
    pub fn start_on(bootstrap: &str, topics: &[&str]) -> Self {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", unique("reader"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "5")
            .set("session.timeout.ms", "6000")
            .create()
            .expect("reader consumer");
        consumer.subscribe(topics).expect("subscribe");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (s, t) = (seen.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let m = tokio::select! {
                    _ = t.cancelled() => break,
                    m = consumer.recv() => m,
                };
                let Ok(m) = m else { continue };
                let seen = Seen::from_message(&m);
                s.lock().unwrap().push(seen);
            }
            tokio::task::spawn_blocking(move || drop(consumer));
        });
        Self {
            seen,
            stop,
            bootstrap: bootstrap.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    /// Wait (deadline `timeout`) until the reader has seen every message its topics held when
    /// this was called. The reader consumes each partition on its own, so having seen one
    /// message says nothing about another topic's messages published before it: call this
    /// before asserting on a snapshot of what was published earlier.
    pub async fn caught_up(&self, timeout: Duration) -> anyhow::Result<()> {
        let (bootstrap, topics) = (self.bootstrap.clone(), self.topics.clone());
        let ends = tokio::task::spawn_blocking(move || end_offsets(&bootstrap, &topics)).await??;
        let start = Instant::now();
        loop {
            let behind: Vec<String> = {
                // The highest offset seen per partition, in one pass.
                let mut highest: HashMap<(&str, i32), i64> = HashMap::new();
                let seen = self.seen.lock().unwrap();
                for m in seen.iter() {
                    let h = highest.entry((m.topic.as_str(), m.partition)).or_insert(-1);
                    *h = (*h).max(m.offset);
                }
                ends.iter()
                    .filter(|((t, p), high)| {
                        highest.get(&(t.as_str(), *p)).copied().unwrap_or(-1) < *high - 1
                    })
                    .map(|((t, p), high)| format!("{t}[{p}] < {high}"))
                    .collect()
            };
            if behind.is_empty() {
                return Ok(());
            }
            anyhow::ensure!(
                start.elapsed() < timeout,
                "reader not caught up after {timeout:?}: {}",
                behind.join(", ")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Messages seen so far on `topic`.
    pub fn on(&self, topic: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|m| m.topic == topic)
            .collect()
    }

    /// Wait until `pred` holds for the messages seen (deadline `timeout`), and return them.
    pub async fn wait_for<F>(&self, timeout: Duration, what: &str, pred: F) -> Vec<Seen>
    where
        F: Fn(&[Seen]) -> bool,
    {
        let start = Instant::now();
        loop {
            let seen = self.seen();
            if pred(&seen) {
                return seen;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; saw {} messages: {:#?}",
                    seen.len(),
                    seen.iter()
                        .map(|m| format!(
                            "{} [{}@{}] {}",
                            m.topic,
                            m.partition,
                            m.offset,
                            m.payload_str()
                        ))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The end offset of every partition of `topics` that holds messages.
fn end_offsets(bootstrap: &str, topics: &[String]) -> anyhow::Result<Vec<((String, i32), i64)>> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let timeout = Duration::from_secs(10);
    let mut out = Vec::new();
    for topic in topics {
        let meta = client.fetch_metadata(Some(topic), timeout)?;
        for t in meta.topics() {
            for p in t.partitions() {
                let (_, high) = client.fetch_watermarks(topic, p.id(), timeout)?;
                if high > 0 {
                    out.push(((topic.clone(), p.id()), high));
                }
            }
        }
    }
    Ok(out)
}

impl Drop for TopicReader {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Kafka's murmur2 partitioner (Java client `Utils.murmur2`, `toPositive(h) % partitions`): the
/// partition a key must land on for the platform's Java/Python clients to agree with ours.
pub fn murmur2_partition(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions as u32) as i32
}

/// Kafka's murmur2 hash of a key.
pub fn murmur2(key: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = key.len();
    let mut h: u32 = SEED ^ (len as u32);
    let chunks = len / 4;
    for i in 0..chunks {
        let mut k = u32::from_le_bytes(key[i * 4..i * 4 + 4].try_into().unwrap());
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = &key[chunks * 4..];
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Reference values from the Java client's UtilsTest.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (key, want) in cases {
            assert_eq!(
                murmur2(key) as i32,
                want,
                "{}",
                String::from_utf8_lossy(key)
            );
        }
    }
}
