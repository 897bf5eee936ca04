//! The Kafka plumbing against the real broker: producer, provisioning, consumer runner.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use huleedu_contracts::dlq::headers;
use huleedu_contracts::topics::dlq_topic;
use huleedu_it::{kafka_settings, murmur2_partition, unique, wait_until, TopicReader};
use huleedu_kafka::admin::with_dlq_topics;
use huleedu_kafka::consumer::Backoff;
use huleedu_kafka::{
    provision_topics, ConsumerRunner, FailureKind, Handler, HandlerResult, Inbound, KafkaSettings,
    OutgoingMessage, Producer,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(30);

/// Decides a handler result from the payload and the attempt number.
type Rule = Arc<dyn Fn(&str, usize) -> HandlerResult + Send + Sync>;

/// Records payloads; `rule` decides the result per payload and attempt.
#[derive(Clone)]
struct Recorder {
    log: Arc<Mutex<Vec<String>>>,
    attempts: Arc<Mutex<HashMap<String, usize>>>,
    rule: Rule,
}

impl Recorder {
    fn new(rule: impl Fn(&str, usize) -> HandlerResult + Send + Sync + 'static) -> Self {
        Self {
            log: Arc::default(),
            attempts: Arc::default(),
            rule: Arc::new(rule),
        }
    }
    fn done() -> Self {
        Self::new(|_, _| HandlerResult::Done)
    }
    fn handled(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
    fn attempts(&self, payload: &str) -> usize {
        self.attempts
            .lock()
            .unwrap()
            .get(payload)
            .copied()
            .unwrap_or(0)
    }
}

impl Handler for Recorder {
    async fn handle(&self, msg: &Inbound) -> HandlerResult {
        let p = String::from_utf8_lossy(&msg.payload).into_owned();
        let n = {
            let mut a = self.attempts.lock().unwrap();
            let n = a.entry(p.clone()).or_default();
            *n += 1;
            *n
        };
        let r = (self.rule)(&p, n);
        if r == HandlerResult::Done {
            self.log.lock().unwrap().push(p);
        }
        r
    }
}

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn spawn<H: Handler + 'static>(runner: ConsumerRunner<H>) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(runner.run(stop.clone()));
        Running { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(T, self.task)
            .await
            .expect("runner stops")
            .unwrap();
    }
}

fn start(settings: &KafkaSettings, topic: &str, handler: Recorder) -> Running {
    let producer = Producer::new(settings).unwrap();
    let runner = ConsumerRunner::new(settings, &[topic], handler, producer)
        .unwrap()
        .with_backoff(Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
        });
    Running::spawn(runner)
}

async fn setup(partitions: i32) -> (KafkaSettings, String, Producer) {
    let topic = unique("it.plumbing");
    let settings = kafka_settings("it", &unique("grp"), partitions);
    let topics = with_dlq_topics(&[topic.as_str()]);
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    provision_topics(&settings, &refs).await.unwrap();
    let producer = Producer::new(&settings).unwrap();
    (settings, topic, producer)
}

async fn send(p: &Producer, topic: &str, key: &str, payload: &str) -> i32 {
    p.send(&OutgoingMessage::new(topic, key, payload))
        .await
        .unwrap()
        .partition
}

fn committed(settings: &KafkaSettings, topic: &str, partitions: i32) -> Vec<Offset> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.bootstrap_servers)
        .set("group.id", &settings.consumer_group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let r = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    r.elements().iter().map(|e| e.offset()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_keeps_order_and_uses_the_java_partitioner() {
    let (settings, topic, producer) = setup(3).await;
    let handler = Recorder::done();
    let run = start(&settings, &topic, handler.clone());
    let mut expected = Vec::new();
    for key in ["batch-a", "batch-b", "batch-c"] {
        for i in 0..5 {
            let payload = format!("{key}:{i}");
            let partition = send(&producer, &topic, key, &payload).await;
            assert_eq!(partition, murmur2_partition(key.as_bytes(), 3), "key {key}");
            expected.push(payload);
        }
    }
    wait_until(T, "all 15 handled", || async {
        handler.handled().len() >= 15
    })
    .await;
    let got = handler.handled();
    assert_eq!(got.len(), 15, "no duplicates in a clean run: {got:?}");
    for key in ["batch-a", "batch-b", "batch-c"] {
        let per_key: Vec<_> = got.iter().filter(|p| p.starts_with(key)).cloned().collect();
        let want: Vec<_> = expected
            .iter()
            .filter(|p| p.starts_with(key))
            .cloned()
            .collect();
        assert_eq!(per_key, want, "order per batch is kept");
    }
    run.stop().await;
}

/// A consumer that subscribes right after provisioning must find every topic in the metadata,
/// or it is not assigned that topic's partitions until its next metadata refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_topics_are_in_the_metadata_when_provisioning_returns() {
    let settings = kafka_settings("it", &unique("grp"), 2);
    let topics: Vec<String> = (0..8).map(|_| unique("it.listed")).collect();
    provision_topics(&settings, &topics).await.unwrap();
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.bootstrap_servers)
        .create()
        .unwrap();
    for t in &topics {
        // One metadata request each, no retry.
        let md = c.fetch_metadata(Some(t), Duration::from_secs(10)).unwrap();
        let listed = &md.topics()[0];
        assert!(listed.error().is_none(), "{t}: {:?}", listed.error());
        assert_eq!(listed.partitions().len(), 2, "{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_is_idempotent_and_uses_the_partition_count() {
    let (settings, topic, _) = setup(2).await;
    provision_topics(&settings, &[topic.as_str()])
        .await
        .unwrap();
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.bootstrap_servers)
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 2);
    let md = c
        .fetch_metadata(Some(&dlq_topic(&topic)), Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        md.topics()[0].partitions().len(),
        2,
        "the DLQ topic exists too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_hold_the_partition() {
    let (settings, topic, producer) = setup(1).await;
    let handler = Recorder::new(|p, n| {
        if p == "flaky" && n <= 3 {
            HandlerResult::Transient("redis unavailable".into())
        } else {
            HandlerResult::Done
        }
    });
    let run = start(&settings, &topic, handler.clone());
    send(&producer, &topic, "k", "flaky").await;
    send(&producer, &topic, "k", "after").await;
    wait_until(T, "both handled", || async { handler.handled().len() >= 2 }).await;
    assert_eq!(handler.attempts("flaky"), 4, "three failures then success");
    assert_eq!(
        handler.handled(),
        vec!["flaky", "after"],
        "the next message waited"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_message_is_not_committed_and_comes_back() {
    let (settings, topic, producer) = setup(1).await;
    let failing = Recorder::new(|_, _| HandlerResult::Transient("down".into()));
    let run = start(&settings, &topic, failing.clone());
    send(&producer, &topic, "k", "m0").await;
    wait_until(T, "several attempts", || async {
        failing.attempts("m0") >= 3
    })
    .await;
    run.stop().await;
    let offsets = committed(&settings, &topic, 1);
    assert!(
        matches!(offsets[0], Offset::Invalid | Offset::Offset(0)),
        "nothing past m0 committed: {offsets:?}"
    );
    let ok = Recorder::done();
    let run = start(&settings, &topic, ok.clone());
    wait_until(T, "m0 redelivered", || async { ok.handled() == vec!["m0"] }).await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_commits_what_was_handled() {
    let (settings, topic, producer) = setup(1).await;
    let first = Recorder::done();
    let run = start(&settings, &topic, first.clone());
    for i in 0..5 {
        send(&producer, &topic, "k", &format!("m{i}")).await;
    }
    wait_until(T, "5 handled", || async { first.handled().len() == 5 }).await;
    run.stop().await;
    assert_eq!(committed(&settings, &topic, 1), vec![Offset::Offset(5)]);
    let second = Recorder::done();
    let run = start(&settings, &topic, second.clone());
    send(&producer, &topic, "k", "m5").await;
    wait_until(T, "m5 handled", || async { !second.handled().is_empty() }).await;
    assert_eq!(
        second.handled(),
        vec!["m5"],
        "nothing finished was redelivered"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_goes_to_the_dlq_with_bytes_and_headers_and_the_partition_moves_on() {
    let (settings, topic, producer) = setup(1).await;
    let handler = Recorder::new(|p, _| {
        if p.starts_with("{bad") {
            HandlerResult::permanent(FailureKind::Decode, "expected value at line 1 column 2")
        } else {
            HandlerResult::Done
        }
    });
    let reader = TopicReader::start(&[&dlq_topic(&topic)]);
    let run = start(&settings, &topic, handler.clone());
    let mut poison = OutgoingMessage::new(&topic, "batch-9", "{bad json");
    poison
        .headers
        .push(("traceparent".into(), b"00-abc-01".to_vec()));
    let at = producer.send(&poison).await.unwrap();
    send(&producer, &topic, "batch-9", "good").await;
    wait_until(T, "good handled", || async {
        handler.handled() == vec!["good"]
    })
    .await;
    let dlq = reader
        .wait_for(T, "one DLQ record", |s| !s.is_empty())
        .await;
    assert_eq!(dlq.len(), 1);
    let rec = &dlq[0];
    assert_eq!(rec.payload, b"{bad json", "original bytes unchanged");
    assert_eq!(rec.key.as_deref(), Some("batch-9"));
    assert_eq!(
        rec.header("traceparent"),
        Some("00-abc-01"),
        "original headers kept"
    );
    assert_eq!(rec.header(headers::ORIGINAL_TOPIC), Some(topic.as_str()));
    assert_eq!(
        rec.header(headers::ORIGINAL_PARTITION),
        Some(at.partition.to_string().as_str())
    );
    assert_eq!(
        rec.header(headers::ORIGINAL_OFFSET),
        Some(at.offset.to_string().as_str())
    );
    assert!(rec
        .header(headers::ORIGINAL_TIMESTAMP)
        .is_some_and(|t| t.parse::<i64>().is_ok()));
    assert_eq!(
        rec.header(headers::CONSUMER_GROUP),
        Some(settings.consumer_group.as_str())
    );
    assert_eq!(rec.header(headers::SERVICE), Some("it"));
    assert_eq!(rec.header(headers::ERROR_KIND), Some("decode"));
    assert!(rec
        .header(headers::ERROR_MESSAGE)
        .unwrap()
        .contains("expected value"));
    assert!(rec.header(headers::FAILED_AT).unwrap().ends_with('Z'));
    run.stop().await;
    assert_eq!(
        committed(&settings, &topic, 1),
        vec![Offset::Offset(2)],
        "both offsets stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_mid_handler_sees_the_message_again_after_restart() {
    let (settings, topic, producer) = setup(1).await;
    send(&producer, &topic, "k", "first").await;
    send(&producer, &topic, "k", "hang").await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_it-probe-consumer"))
        .env("PROBE_BOOTSTRAP", &settings.bootstrap_servers)
        .env("PROBE_TOPIC", &topic)
        .env("PROBE_GROUP", &settings.consumer_group)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let saw_hang = tokio::time::timeout(T, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line == "HANDLING hang" {
                return true;
            }
        }
        false
    })
    .await
    .expect("probe reached the hanging message");
    assert!(saw_hang);
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();

    let after = Recorder::done();
    let run = start(&settings, &topic, after.clone());
    wait_until(T, "hang redelivered", || async {
        after.handled().contains(&"hang".to_string())
    })
    .await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_in_one_group_share_the_partitions() {
    let (settings, topic, producer) = setup(3).await;
    let count = Arc::new(AtomicUsize::new(0));
    let a = Recorder::done();
    let b = Recorder::done();
    let ra = start(&settings, &topic, a.clone());
    let rb = start(&settings, &topic, b.clone());
    for i in 0..30 {
        send(&producer, &topic, &format!("batch-{i}"), &format!("m{i}")).await;
        count.fetch_add(1, Ordering::Relaxed);
    }
    wait_until(T, "all 30 handled by the group", || async {
        let mut all: Vec<_> = a.handled().into_iter().chain(b.handled()).collect();
        all.sort();
        all.dedup();
        all.len() == 30
    })
    .await;
    ra.stop().await;
    rb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_knows_whether_it_holds_every_partition_of_a_topic() {
    let (settings, topic, producer) = setup(3).await;
    let other = unique("it.plumbing.other");
    provision_topics(&settings, &[other.as_str()])
        .await
        .unwrap();
    let runner = |h: Recorder| {
        ConsumerRunner::new(&settings, &[topic.as_str()], h, producer.clone()).unwrap()
    };
    let a = runner(Recorder::done());
    let status_a = a.status();
    status_a.track_whole(&topic);
    status_a.track_whole(&other);
    let ra = Running::spawn(a);
    wait_until(T, "the only member holds all three partitions", || async {
        status_a.assigned_partitions() == 3 && status_a.holds_every_partition(&topic)
    })
    .await;
    assert!(
        !status_a.holds_every_partition(&other),
        "a topic it does not consume"
    );

    let b = runner(Recorder::done());
    let status_b = b.status();
    status_b.track_whole(&topic);
    let rb = Running::spawn(b);
    wait_until(
        T,
        "the partitions shared by two members, neither holding them all",
        || async {
            let (na, nb) = (
                status_a.assigned_partitions(),
                status_b.assigned_partitions(),
            );
            na > 0
                && nb > 0
                && na + nb == 3
                && !status_a.holds_every_partition(&topic)
                && !status_b.holds_every_partition(&topic)
        },
    )
    .await;

    rb.stop().await;
    wait_until(
        T,
        "the remaining member holds every partition again",
        || async { status_a.holds_every_partition(&topic) },
    )
    .await;
    assert_eq!(status_a.assigned_partitions(), 3);
    ra.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_waits_for_the_broker_then_gives_up_with_an_error() {
    let dead = format!("127.0.0.1:{}", huleedu_it::stack::free_port());
    let settings = KafkaSettings::local(&dead, "it", "grp");
    let start = std::time::Instant::now();
    let r =
        huleedu_kafka::admin::provision_topics_within(&settings, &["t"], Duration::from_secs(3))
            .await;
    assert!(r.is_err(), "no broker → error");
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "it retried for its budget: {:?}",
        start.elapsed()
    );
}

/// A consumer whose `KAFKA_MAX_MESSAGE_BYTES` is `limit`, on a topic created with the default
/// limit (the platform's topic allows larger messages than this service).
fn start_with_limit(settings: &KafkaSettings, limit: usize, topic: &str, h: Recorder) -> Running {
    let mut small = settings.clone();
    small.max_message_bytes = limit;
    start(&small, topic, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_dead_lettered_whole_without_reaching_the_handler() {
    let (settings, topic, producer) = setup(1).await;
    let handler = Recorder::done();
    let reader = TopicReader::start(&[&dlq_topic(&topic)]);
    let limit = 20_000;
    let run = start_with_limit(&settings, limit, &topic, handler.clone());
    let big = "x".repeat(limit + 1);
    let at_limit = "y".repeat(limit);
    send(&producer, &topic, "k", &big).await;
    send(&producer, &topic, "k", &at_limit).await;
    wait_until(T, "the message at the limit handled", || async {
        handler.handled() == vec![at_limit.clone()]
    })
    .await;
    let dlq = reader
        .wait_for(T, "oversized record", |s| !s.is_empty())
        .await;
    assert_eq!(dlq[0].payload, big.as_bytes(), "the original bytes");
    assert_eq!(dlq[0].header(headers::ERROR_KIND), Some("validation"));
    assert_eq!(
        dlq[0].header(headers::ERROR_MESSAGE),
        Some("message of 20001 bytes exceeds the 20000-byte limit")
    );
    assert_eq!(dlq[0].header(headers::PAYLOAD_OMITTED), None);
    assert_eq!(handler.attempts(&big), 0, "the handler never saw it");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_too_large_for_its_dlq_topic_is_recorded_without_its_value() {
    let topic = unique("it.plumbing");
    let settings = kafka_settings("it", &unique("grp"), 1);
    provision_topics(&settings, &[topic.as_str()])
        .await
        .unwrap();
    // The DLQ topic as a service with a 16 KiB limit creates it: 16 KiB + 64 KiB of headroom.
    let mut small = settings.clone();
    small.max_message_bytes = 16 * 1024;
    provision_topics(&small, &[dlq_topic(&topic)])
        .await
        .unwrap();
    let producer = Producer::new(&settings).unwrap();
    let handler = Recorder::done();
    let reader = TopicReader::start(&[&dlq_topic(&topic)]);
    // The runner's DLQ producer allows the copy; the DLQ topic refuses it.
    let runner =
        ConsumerRunner::new(&small, &[topic.as_str()], handler.clone(), producer.clone()).unwrap();
    let run = Running::spawn(runner);
    let huge = "z".repeat(200 * 1024);
    send(&producer, &topic, "k", &huge).await;
    send(&producer, &topic, "k", "after").await;
    wait_until(T, "the next message handled", || async {
        handler.handled() == vec!["after"]
    })
    .await;
    let dlq = reader.wait_for(T, "the record", |s| !s.is_empty()).await;
    assert!(dlq[0].payload.is_empty(), "value left out");
    assert_eq!(dlq[0].header(headers::PAYLOAD_OMITTED), Some("204800"));
    assert_eq!(dlq[0].header(headers::ORIGINAL_OFFSET), Some("0"));
    assert!(dlq[0]
        .header(headers::ERROR_MESSAGE)
        .unwrap()
        .contains("204800 bytes exceeds the 16384-byte limit"));
    run.stop().await;
}

/// Append a message's payload to a test handler's log.
fn record(log: &Mutex<Vec<String>>, msg: &Inbound) {
    log.lock()
        .unwrap()
        .push(String::from_utf8_lossy(&msg.payload).into_owned());
}

/// Handles each message slowly, says partitions may run side by side, and records how many
/// messages were being handled at once.
#[derive(Clone, Default)]
struct SideBySide {
    log: Arc<Mutex<Vec<String>>>,
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

impl Handler for SideBySide {
    fn concurrent_partitions(&self) -> bool {
        true
    }

    async fn handle(&self, msg: &Inbound) -> HandlerResult {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        record(&self.log, msg);
        HandlerResult::Done
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_partitions_run_side_by_side_and_each_keeps_its_order() {
    let (settings, topic, producer) = setup(3).await;
    // One key per partition.
    let mut keys: Vec<String> = Vec::new();
    for i in 0.. {
        let k = format!("batch-{i}");
        let p = murmur2_partition(k.as_bytes(), 3);
        if !keys.iter().any(|o| murmur2_partition(o.as_bytes(), 3) == p) {
            keys.push(k);
        }
        if keys.len() == 3 {
            break;
        }
    }
    let mut expected = Vec::new();
    for i in 0..10 {
        for k in &keys {
            let payload = format!("{k}:{i}");
            send(&producer, &topic, k, &payload).await;
            expected.push(payload);
        }
    }
    let handler = SideBySide::default();
    let runner =
        ConsumerRunner::new(&settings, &[topic.as_str()], handler.clone(), producer).unwrap();
    let running = Running::spawn(runner);
    wait_until(T, "all 30 handled", || async {
        handler.log.lock().unwrap().len() >= 30
    })
    .await;
    let got = handler.log.lock().unwrap().clone();
    assert_eq!(got.len(), 30, "each once: {got:?}");
    for k in &keys {
        let prefix = format!("{k}:");
        let per_key: Vec<_> = got.iter().filter(|p| p.starts_with(&prefix)).collect();
        let want: Vec<_> = expected.iter().filter(|p| p.starts_with(&prefix)).collect();
        assert_eq!(per_key, want, "order within a partition is kept");
    }
    assert!(
        handler.most.load(Ordering::SeqCst) >= 2,
        "partitions were handled side by side"
    );
    running.stop().await;
    assert_eq!(
        committed(&settings, &topic, 3),
        vec![Offset::Offset(10); 3],
        "every partition committed up to its end at shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_ping_tells_whether_the_broker_answers() {
    let live = Producer::new(&kafka_settings("it", "grp", 1)).unwrap();
    assert_eq!(live.ping(Duration::from_secs(5)).await, Ok(()));
    let dead_addr = format!("127.0.0.1:{}", huleedu_it::stack::free_port());
    let dead = Producer::new(&KafkaSettings::local(&dead_addr, "it", "grp")).unwrap();
    let err = dead.ping(Duration::from_millis(500)).await.unwrap_err();
    assert!(err.contains("broker unreachable"), "{err}");
}

/// Holds every message of one key until opened; says partitions may run side by side.
#[derive(Clone)]
struct Held {
    key: String,
    open: Arc<std::sync::atomic::AtomicBool>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Handler for Held {
    fn concurrent_partitions(&self) -> bool {
        true
    }

    async fn handle(&self, msg: &Inbound) -> HandlerResult {
        while msg.key_str() == self.key && !self.open.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        record(&self.log, msg);
        HandlerResult::Done
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_partition_with_a_long_backlog_does_not_hold_up_the_others() {
    let (settings, topic, producer) = setup(2).await;
    let slow = (0..)
        .map(|i| format!("slow-{i}"))
        .find(|k| murmur2_partition(k.as_bytes(), 2) == 0)
        .unwrap();
    let fast = (0..)
        .map(|i| format!("fast-{i}"))
        .find(|k| murmur2_partition(k.as_bytes(), 2) == 1)
        .unwrap();
    let backlog = 300;
    for i in 0..backlog {
        send(&producer, &topic, &slow, &format!("{slow}:{i}")).await;
    }
    let handler = Held {
        key: slow.clone(),
        open: Arc::default(),
        log: Arc::default(),
    };
    let runner = ConsumerRunner::new(
        &settings,
        &[topic.as_str()],
        handler.clone(),
        producer.clone(),
    )
    .unwrap();
    let running = Running::spawn(runner);
    for i in 0..5 {
        send(&producer, &topic, &fast, &format!("{fast}:{i}")).await;
    }
    wait_until(
        T,
        "the other partition handled while one is held",
        || async { handler.log.lock().unwrap().len() >= 5 },
    )
    .await;
    assert!(handler
        .log
        .lock()
        .unwrap()
        .iter()
        .all(|p| p.starts_with(&fast)));
    handler.open.store(true, Ordering::SeqCst);
    wait_until(T, "the held backlog handled after release", || async {
        handler.log.lock().unwrap().len() >= backlog + 5
    })
    .await;
    let got = handler.log.lock().unwrap().clone();
    assert_eq!(got.len(), backlog + 5, "each once");
    let held: Vec<_> = got
        .iter()
        .filter(|p| p.starts_with(&slow))
        .cloned()
        .collect();
    let want: Vec<_> = (0..backlog).map(|i| format!("{slow}:{i}")).collect();
    assert_eq!(
        held, want,
        "in order, none lost while the partition was held"
    );
    running.stop().await;
    assert_eq!(
        committed(&settings, &topic, 2),
        vec![Offset::Offset(backlog as i64), Offset::Offset(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_on_every_partition_is_handled_completely_side_by_side() {
    let (settings, topic, producer) = setup(3).await;
    let total = 1000;
    let sends: Vec<_> = (0..total)
        .map(|i| {
            let (p, t) = (producer.clone(), topic.clone());
            async move { send(&p, &t, &format!("k{}", i % 50), &format!("k{}:{i}", i % 50)).await }
        })
        .collect();
    futures::future::join_all(sends).await;
    let handler = SideBySide::default();
    let runner =
        ConsumerRunner::new(&settings, &[topic.as_str()], handler.clone(), producer).unwrap();
    let running = Running::spawn(runner);
    wait_until(
        Duration::from_secs(60),
        "the whole backlog handled",
        || async { handler.log.lock().unwrap().len() >= total },
    )
    .await;
    assert_eq!(handler.log.lock().unwrap().len(), total, "each once");
    assert!(handler.most.load(Ordering::SeqCst) >= 2, "side by side");
    running.stop().await;
}
