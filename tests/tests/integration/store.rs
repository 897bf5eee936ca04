//! The Redis plumbing against a real Redis (and the relay against the real broker).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use huleedu_it::{kafka_settings, unique, wait_until, TopicReader};
use huleedu_kafka::{provision_topics, Producer};
use huleedu_store::{
    ApplyOutcome, ApplyRequest, Change, Checked, Committed, Decided, IndexOp, OutboxEntry,
    OutboxRelay, Store, Versioned,
};
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(30);

fn store() -> Store {
    Store::connect(&huleedu_it::redis_settings(&unique("it"))).unwrap()
}

fn req(batch: &str, version: u64, dedup: Option<&str>, fields: &[(&str, &str)]) -> ApplyRequest {
    ApplyRequest {
        batch_id: batch.into(),
        expected_version: version,
        dedup_id: dedup.map(str::to_owned),
        dedup_ttl: Duration::from_secs(3600),
        set_fields: fields
            .iter()
            .map(|(f, v)| (f.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn apply_writes_state_and_bumps_the_version() {
    let s = store();
    let empty = s.load("b1").await.unwrap();
    assert_eq!(empty.version, 0);
    assert!(empty.fields.is_empty());
    let out = s
        .apply(&req("b1", 0, Some("e1"), &[("state", "{\"a\":1}")]))
        .await
        .unwrap();
    assert_eq!(out, ApplyOutcome::Applied { version: 1 });
    let v = s.load("b1").await.unwrap();
    assert_eq!(v.version, 1);
    assert_eq!(v.fields.get("state").map(|s| &**s), Some("{\"a\":1}"));
    assert_eq!(v.fields.len(), 1, "the version field is not a state field");
}

#[tokio::test]
async fn two_concurrent_applies_one_wins_the_other_retries() {
    let s = store();
    s.apply(&req("b2", 0, None, &[("n", "0")])).await.unwrap();
    let (ra, rb) = (
        req("b2", 1, Some("ea"), &[("n", "a")]),
        req("b2", 1, Some("eb"), &[("n", "b")]),
    );
    let (a, b) = tokio::join!(s.apply(&ra), s.apply(&rb));
    let (a, b) = (a.unwrap(), b.unwrap());
    let wins = [a, b]
        .iter()
        .filter(|o| matches!(o, ApplyOutcome::Applied { version: 2 }))
        .count();
    assert_eq!(wins, 1, "exactly one wins: {a:?} {b:?}");
    let loser_id = if matches!(a, ApplyOutcome::Conflict { .. }) {
        "ea"
    } else {
        "eb"
    };
    assert!(
        [a, b].contains(&ApplyOutcome::Conflict { current_version: 2 }),
        "the other is told the version moved"
    );
    assert!(
        !s.is_applied("b2", loser_id).await.unwrap(),
        "the loser left no dedup marker"
    );
    // The loser decides again from fresh state and then applies.
    let fresh = s.load("b2").await.unwrap();
    let retry = s
        .apply(&req("b2", fresh.version, Some(loser_id), &[("n", "ab")]))
        .await
        .unwrap();
    assert_eq!(retry, ApplyOutcome::Applied { version: 3 });
}

#[tokio::test]
async fn the_same_event_twice_is_already_applied_and_adds_no_outbox_entry() {
    let s = store();
    let mut r = req("b3", 0, Some("evt-1"), &[("x", "1")]);
    r.outbox
        .push(OutboxEntry::new("t", "b3", "{\"event_id\":\"1\"}"));
    assert_eq!(
        s.apply(&r).await.unwrap(),
        ApplyOutcome::Applied { version: 1 }
    );
    assert_eq!(s.outbox_len().await.unwrap(), 1);
    let mut again = r.clone();
    again.expected_version = 1;
    assert_eq!(s.apply(&again).await.unwrap(), ApplyOutcome::AlreadyApplied);
    assert_eq!(s.outbox_len().await.unwrap(), 1, "no second outbox entry");
    assert_eq!(s.load("b3").await.unwrap().version, 1, "state unchanged");
}

#[tokio::test]
async fn ttls_are_set_on_state_and_dedup_markers() {
    let prefix = unique("ttl");
    let s = Store::connect(&huleedu_it::redis_settings(&prefix)).unwrap();
    let mut r = req("b4", 0, Some("e4"), &[("x", "1")]);
    r.state_ttl = Some(Duration::from_secs(100));
    r.dedup_ttl = Duration::from_secs(50);
    s.apply(&r).await.unwrap();
    // The keys by the documented layout (crates/store/src/lib.rs): a cluster has no one place
    // to SCAN, and the least-privilege ACL of the TLS run has no KEYS.
    let tag = format!("{{{prefix}:b{:02}}}", huleedu_store::bucket_of("b4"));
    let (state, dedup) = (format!("{tag}:state:b4"), format!("{tag}:dedup:e4"));
    let mut c = s.connection();
    let st: i64 = redis::cmd("PTTL")
        .arg(state)
        .query_async(&mut c)
        .await
        .unwrap();
    let dt: i64 = redis::cmd("PTTL")
        .arg(dedup)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!((90_000..=100_000).contains(&st), "state ttl {st}");
    assert!((40_000..=50_000).contains(&dt), "dedup ttl {dt}");
}

#[tokio::test]
async fn key_prefixes_isolate_deployments() {
    let a = store();
    let b = store();
    a.apply(&req("same-batch", 0, Some("e"), &[("x", "a")]))
        .await
        .unwrap();
    assert_eq!(b.load("same-batch").await.unwrap().version, 0);
    assert!(!b.is_applied("same-batch", "e").await.unwrap());
}

#[tokio::test]
async fn index_ops_commit_with_the_state() {
    let s = store();
    let mut r = req("b5", 0, None, &[("x", "1")]);
    r.index_ops.push(IndexOp::Upsert {
        index: "deadlines".into(),
        member: "b5".into(),
        score: 1000.0,
    });
    s.apply(&r).await.unwrap();
    let mut r = req("b6", 0, None, &[("x", "1")]);
    r.index_ops.push(IndexOp::Upsert {
        index: "deadlines".into(),
        member: "b6".into(),
        score: 5000.0,
    });
    s.apply(&r).await.unwrap();
    let due = s.index_members_due("deadlines", 2000.0, 100).await.unwrap();
    assert_eq!(due, vec![("b5".to_string(), 1000.0)]);
    let mut r = req("b5", 1, None, &[("x", "2")]);
    r.index_ops.push(IndexOp::Remove {
        index: "deadlines".into(),
        member: "b5".into(),
    });
    s.apply(&r).await.unwrap();
    let due = s
        .index_members_due("deadlines", 10_000.0, 100)
        .await
        .unwrap();
    assert_eq!(due, vec![("b6".to_string(), 5000.0)]);
}

#[tokio::test]
async fn the_newest_members_come_from_every_bucket_ties_included_and_old_ones_trim() {
    let s = store();
    // 40 batches (spread over the buckets), scores 100..=139, two more tied at 120.
    let mut all: Vec<(String, f64)> = (0..40)
        .map(|i| (format!("n{i:02}"), 100.0 + i as f64))
        .chain([("t1".to_string(), 120.0), ("t2".to_string(), 120.0)])
        .collect();
    for (b, score) in &all {
        let mut r = req(b, 0, None, &[("x", "1")]);
        r.index_ops.push(IndexOp::Upsert {
            index: "batches".into(),
            member: b.clone(),
            score: *score,
        });
        s.apply(&r).await.unwrap();
    }
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let newest = s.index_newest("batches", None, 5).await.unwrap();
    assert_eq!(newest[..5], all[..5], "the five newest over all buckets");
    // Below a score: every member at exactly that score, then the newest below it.
    let page = s.index_newest("batches", Some(120.0), 3).await.unwrap();
    let at: Vec<&str> = page
        .iter()
        .filter(|(_, sc)| *sc == 120.0)
        .map(|(b, _)| b.as_str())
        .collect();
    assert_eq!(at, ["t2", "t1", "n20"]);
    let below: Vec<(String, f64)> = page.into_iter().filter(|(_, sc)| *sc < 120.0).collect();
    let expected: Vec<(String, f64)> = all
        .iter()
        .filter(|(_, sc)| *sc < 120.0)
        .take(3)
        .cloned()
        .collect();
    assert_eq!(below[..3], expected[..]);
    assert_eq!(s.index_trim("batches", 110.0).await.unwrap(), 10);
    let rest = s.index_newest("batches", None, 100).await.unwrap();
    assert_eq!(rest.len(), 32);
    assert!(rest.iter().all(|(_, sc)| *sc >= 110.0));
}

async fn relay_setup() -> (Store, Producer, String) {
    let topic = unique("it.outbox");
    let settings = kafka_settings("it-relay", &unique("grp"), 3);
    provision_topics(&settings, &[topic.as_str()])
        .await
        .unwrap();
    (store(), Producer::new(&settings).unwrap(), topic)
}

fn entries(topic: &str, batch: &str, n: usize) -> Vec<OutboxEntry> {
    (0..n)
        .map(|i| {
            OutboxEntry::new(
                topic,
                batch,
                format!("{{\"event_id\":\"{}\",\"seq\":{i}}}", uuid::Uuid::new_v4()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_committed_before_a_crash_is_published_after_restart_with_the_same_id() {
    let (s, producer, topic) = relay_setup().await;
    // The process "dies" right after the commit: no relay ran.
    let mut r = req("b7", 0, Some("e7"), &[("x", "1")]);
    r.outbox = entries(&topic, "b7", 3);
    s.apply(&r).await.unwrap();
    let committed: Vec<String> = r.outbox.iter().map(|e| e.payload.clone()).collect();

    // "Restart": a new store handle and relay over the same Redis.
    let restarted = Store::connect(&huleedu_it::redis_settings(&s_prefix(&s))).unwrap();
    let reader = TopicReader::start(&[&topic]);
    let stop = CancellationToken::new();
    let relay = tokio::spawn(OutboxRelay::new(restarted.clone(), producer).run(stop.clone()));
    let seen = reader.wait_for(T, "3 events", |s| s.len() >= 3).await;
    let payloads: Vec<String> = seen.iter().map(|m| m.payload_str().to_owned()).collect();
    assert_eq!(
        payloads, committed,
        "same bytes (same event ids), same order"
    );
    assert!(seen.iter().all(|m| m.key.as_deref() == Some("b7")));
    wait_until(T, "outbox emptied", || async {
        restarted.outbox_len().await.unwrap() == 0
    })
    .await;
    stop.cancel();
    relay.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_lose_nothing_and_keep_each_batch_in_order() {
    let (s, producer, topic) = relay_setup().await;
    let reader = TopicReader::start(&[&topic]);
    let stop = CancellationToken::new();
    // Two replicas: two identities.
    let r1 = tokio::spawn(
        OutboxRelay::new(s.clone(), producer.clone())
            .with_owner("replica-1")
            .run(stop.clone()),
    );
    let r2 = tokio::spawn(
        OutboxRelay::new(s.clone(), producer.clone())
            .with_owner("replica-2")
            .run(stop.clone()),
    );
    let mut want = Vec::new();
    for b in 0..10 {
        let batch = format!("batch-{b}");
        for step in 0..5u64 {
            let mut r = req(
                &batch,
                step,
                Some(&format!("{batch}-{step}")),
                &[("s", "x")],
            );
            r.outbox = entries(&topic, &batch, 2);
            want.extend(r.outbox.iter().map(|e| (batch.clone(), e.payload.clone())));
            assert!(matches!(
                s.apply(&r).await.unwrap(),
                ApplyOutcome::Applied { .. }
            ));
        }
    }
    let seen = reader
        .wait_for(T, "all 100 events", |seen| {
            let mut p: Vec<_> = seen.iter().map(|m| m.payload.clone()).collect();
            p.sort();
            p.dedup();
            p.len() >= 100
        })
        .await;
    for b in 0..10 {
        let batch = format!("batch-{b}");
        let mut got: Vec<String> = Vec::new();
        for m in seen
            .iter()
            .filter(|m| m.key.as_deref() == Some(batch.as_str()))
        {
            if !got.contains(&m.payload_str().to_owned()) {
                got.push(m.payload_str().to_owned());
            }
        }
        let exp: Vec<String> = want
            .iter()
            .filter(|(k, _)| *k == batch)
            .map(|(_, p)| p.clone())
            .collect();
        assert_eq!(
            got, exp,
            "{batch}: every event, first sight in commit order"
        );
    }
    wait_until(T, "outbox emptied", || async {
        s.outbox_len().await.unwrap() == 0
    })
    .await;
    stop.cancel();
    r1.await.unwrap();
    r2.await.unwrap();
}

fn s_prefix(s: &Store) -> String {
    s.key_prefix().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_retries_conflicts_until_every_change_lands() {
    // Ten processes (each its own store) on one batch: their commits meet the version check.
    let prefix = unique("conflicts");
    let mut tasks = Vec::new();
    for i in 0..10 {
        let s = Store::connect(&huleedu_it::redis_settings(&prefix)).unwrap();
        tasks.push(tokio::spawn(async move {
            let id = format!("inc-{i}");
            s.commit("counter", Some((&id, Duration::from_secs(3600))), increment)
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert!(matches!(t.await.unwrap(), Committed::Applied { .. }));
    }
    let s = Store::connect(&huleedu_it::redis_settings(&prefix)).unwrap();
    let v = s.load("counter").await.unwrap();
    assert_eq!(&*v.fields["n"], "10", "no increment lost");
    assert_eq!(v.version, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_of_one_batch_in_one_process_take_turns_instead_of_conflicting() {
    let s = store();
    s.commit("turns", None, increment).await.unwrap(); // this process holds the state
    let decisions = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (s, decisions) = (s.clone(), decisions.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("turn-{i}");
            s.commit("turns", Some((&id, Duration::from_secs(3600))), |cur| {
                decisions.fetch_add(1, Ordering::Relaxed);
                increment(cur)
            })
            .await
            .unwrap()
        }));
    }
    for t in tasks {
        assert!(matches!(t.await.unwrap(), Committed::Applied { .. }));
    }
    assert_eq!(&*s.load("turns").await.unwrap().fields["n"], "11");
    // Each decided once, on the state the one before it committed: no conflict, no re-read.
    assert_eq!(decisions.load(Ordering::Relaxed), 10);
}

#[tokio::test]
async fn a_stale_cached_state_costs_a_conflict_never_a_lost_update() {
    let prefix = unique("cache");
    let connect = || Store::connect(&huleedu_it::redis_settings(&prefix)).unwrap();
    // Two processes on the same batch: each has its own cache.
    let (a, b) = (connect(), connect());
    let inc = |s: Store, id: &'static str| async move {
        s.commit("shared", Some((id, Duration::from_secs(3600))), increment)
            .await
            .unwrap()
    };
    assert!(matches!(
        inc(a.clone(), "a1").await,
        Committed::Applied { version: 1, .. }
    ));
    assert_eq!(
        a.cached("shared").map(|v| v.version),
        Some(1),
        "a remembers what it wrote"
    );
    assert!(matches!(
        inc(b.clone(), "b1").await,
        Committed::Applied { version: 2, .. }
    ));
    // a's copy (version 1) is stale now: its next decision conflicts and is made again.
    assert!(matches!(
        inc(a.clone(), "a2").await,
        Committed::Applied { version: 3, .. }
    ));
    // A redelivered event is answered from its dedup marker: by the read, without deciding, in
    // a process that holds no copy of the state (a third one here)...
    let decided = std::sync::atomic::AtomicUsize::new(0);
    let again = connect()
        .commit("shared", Some(("a2", Duration::from_secs(3600))), |cur| {
            decided.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            increment(cur)
        })
        .await
        .unwrap();
    assert!(matches!(again, Committed::AlreadyApplied));
    assert_eq!(decided.into_inner(), 0);
    // ...and by the commit's own check where a copy was used.
    assert!(matches!(
        inc(b.clone(), "a2").await,
        Committed::AlreadyApplied
    ));
    let v = a.load("shared").await.unwrap();
    assert_eq!(&*v.fields["n"], "3", "no increment lost");
    assert_eq!(a.cached("shared").map(|v| v.version), Some(3));
}

#[tokio::test]
async fn load_checked_reads_state_and_dedup_marker_in_one_go() {
    let s = store();
    assert_eq!(
        s.load_checked("lc", Some("e1")).await.unwrap(),
        Checked::State(Default::default()),
        "unknown batch: empty state, version 0"
    );
    s.apply(&req("lc", 0, Some("e1"), &[("x", "1")]))
        .await
        .unwrap();
    assert_eq!(
        s.load_checked("lc", Some("e1")).await.unwrap(),
        Checked::AlreadyApplied
    );
    match s.load_checked("lc", Some("e2")).await.unwrap() {
        Checked::State(v) => {
            assert_eq!(v.version, 1);
            assert_eq!(&*v.fields["x"], "1");
        }
        other => panic!("expected the state, got {other:?}"),
    }
    assert!(matches!(
        s.load_checked("lc", None).await.unwrap(),
        Checked::State(v) if v.version == 1
    ));
}

#[tokio::test]
async fn the_index_feed_lists_members_upserted_by_this_process() {
    let s = store();
    s.watch_index("starts");
    let mut r = req("f1", 0, None, &[("x", "1")]);
    r.index_ops = vec![
        IndexOp::Upsert {
            index: "starts".into(),
            member: "f1".into(),
            score: 1.0,
        },
        IndexOp::Upsert {
            index: "other".into(),
            member: "f1".into(),
            score: 1.0,
        },
    ];
    s.apply(&r).await.unwrap();
    assert_eq!(s.take_index_feed("starts"), vec!["f1".to_owned()]);
    assert!(s.take_index_feed("starts").is_empty(), "taken once");
    assert!(s.take_index_feed("other").is_empty(), "not watched");
    // The durable index has it regardless.
    let due = s.index_members_due("starts", 10.0, 10).await.unwrap();
    assert_eq!(due, vec![("f1".to_owned(), 1.0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_publishes_each_entry_once_and_removes_the_last_at_the_next_sweep() {
    let (s, producer, topic) = relay_setup().await;
    let reader = TopicReader::start(&[&topic]);
    let stop = CancellationToken::new();
    let relay = tokio::spawn(
        OutboxRelay::new(s.clone(), producer)
            .with_poll_interval(Duration::from_millis(200))
            .run(stop.clone()),
    );
    // One commit at a time, each published before the next: every drain removes what the
    // previous one published (folded into its read), the last one is removed by a sweep.
    let mut want = Vec::new();
    for step in 0..6u64 {
        let mut r = req("once", step, Some(&format!("once-{step}")), &[("s", "x")]);
        r.outbox = entries(&topic, "once", 1);
        want.push(r.outbox[0].payload.clone());
        s.apply(&r).await.unwrap();
        let n = want.len();
        reader
            .wait_for(T, "the entry published", |seen| seen.len() >= n)
            .await;
    }
    wait_until(T, "outbox emptied by the sweep", || async {
        s.outbox_len().await.unwrap() == 0
    })
    .await;
    // Two more sweeps: nothing is published again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got: Vec<String> = reader
        .seen()
        .iter()
        .map(|m| m.payload_str().to_owned())
        .collect();
    assert_eq!(got, want, "each entry exactly once, in commit order");
    stop.cancel();
    relay.await.unwrap();
}

/// Counts what the relay reports.
#[derive(Clone, Default)]
struct Counted {
    published: Arc<AtomicU64>,
    handed_off: Arc<AtomicU64>,
}

impl huleedu_store::relay::RelayObserver for Counted {
    fn on_published(&self, _topic: &str) {
        self.published.fetch_add(1, Ordering::Relaxed);
    }
    fn on_handed_off(&self, entries: u64) {
        self.handed_off.fetch_add(entries, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_hands_its_entries_to_the_relay_which_publishes_them_without_reading_them_back() {
    let (s, producer, topic) = relay_setup().await;
    let reader = TopicReader::start(&[&topic]);
    let stop = CancellationToken::new();
    let counted = Counted::default();
    // Sweeps far apart: only a hand-off can publish an entry promptly.
    let relay = tokio::spawn(
        OutboxRelay::new(s.clone(), producer)
            .with_poll_interval(Duration::from_secs(3600))
            .with_observer(counted.clone())
            .run(stop.clone()),
    );
    // One commit at a time, each published before the next.
    let mut want = Vec::new();
    for step in 0..8u64 {
        let mut r = req("hand", step, Some(&format!("hand-{step}")), &[("s", "x")]);
        r.outbox = entries(&topic, "hand", 2);
        want.extend(r.outbox.iter().map(|e| e.payload.clone()));
        s.apply(&r).await.unwrap();
        let n = want.len();
        reader
            .wait_for(T, "the commit's entries published", |seen| seen.len() >= n)
            .await;
    }
    let got: Vec<String> = reader
        .seen()
        .iter()
        .map(|m| m.payload_str().to_owned())
        .collect();
    assert_eq!(got, want, "each entry exactly once, in commit order");
    // Every commit after the first (which may come before the relay has started) handed its
    // two entries over, and each removed what the relay had published before: the outbox
    // holds just the last commit's entries, waiting for the next script on the bucket.
    let handed = counted.handed_off.load(Ordering::Relaxed);
    assert!(handed >= 14, "entries handed off: {handed} of 16");
    assert_eq!(s.outbox_len().await.unwrap(), 2);
    stop.cancel();
    relay.await.unwrap();
    // The drain at shutdown removed them.
    assert_eq!(s.outbox_len().await.unwrap(), 0);
    assert_eq!(counted.published.load(Ordering::Relaxed), 16);
}

/// A decision that adds one to the field `n`.
fn increment(cur: &Versioned) -> Result<Decided<()>, huleedu_store::StoreError> {
    let n: u64 = cur.fields.get("n").map(|v| v.parse().unwrap()).unwrap_or(0);
    let change = Change {
        set_fields: vec![("n".into(), (n + 1).to_string())],
        ..Change::default()
    };
    Ok(Decided::Write(change, ()))
}

#[tokio::test]
async fn nothing_to_write_is_trusted_only_on_freshly_read_state() {
    let prefix = unique("nothing");
    let connect = || Store::connect(&huleedu_it::redis_settings(&prefix)).unwrap();
    let (a, b) = (connect(), connect());
    a.commit("n-batch", None, increment).await.unwrap(); // a caches version 1
    b.commit("n-batch", None, increment).await.unwrap(); // the stored state moves to 2
                                                         // "Write nothing unless n >= 2": on a's stale copy (n = 1) that looks like "write"...
                                                         // and on the fresh state like "nothing". Asked the other way round: "nothing while n < 2".
    let mut seen = Vec::new();
    let out = a
        .commit("n-batch", None, |cur| {
            seen.push(cur.version);
            Ok(Decided::<u64>::Nothing(cur.version))
        })
        .await
        .unwrap();
    assert_eq!(seen, vec![1, 2], "the cached copy first, then a fresh read");
    assert!(matches!(out, Committed::Unchanged(2)));
}

#[tokio::test]
async fn a_commit_guessing_a_new_batch_decides_without_a_read_and_loses_nothing_when_wrong() {
    let prefix = unique("likely-new");
    let connect = || Store::connect(&huleedu_it::redis_settings(&prefix)).unwrap();
    let (a, b) = (connect(), connect());
    let counting = |seen: &mut Vec<u64>, cur: &Versioned| {
        seen.push(cur.version);
        increment(cur)
    };
    // A new batch: decided once, on the empty state.
    let mut seen = Vec::new();
    let out = a
        .commit_likely_new("new-batch", Some(("e1", Duration::from_secs(60))), |cur| {
            counting(&mut seen, cur)
        })
        .await
        .unwrap();
    assert_eq!(seen, vec![0]);
    assert!(matches!(out, Committed::Applied { version: 1, .. }));
    // The same event again: its dedup marker answers, whatever was guessed.
    let b_out = b
        .commit_likely_new(
            "new-batch",
            Some(("e1", Duration::from_secs(60))),
            increment,
        )
        .await
        .unwrap();
    assert!(matches!(b_out, Committed::AlreadyApplied));
    // A batch that exists (written by another process): the guess costs a conflict, then a
    // read and a decision on the real state — no update lost.
    b.commit("old-batch", None, increment).await.unwrap();
    b.commit("old-batch", None, increment).await.unwrap();
    let mut seen = Vec::new();
    let out = a
        .commit_likely_new("old-batch", None, |cur| counting(&mut seen, cur))
        .await
        .unwrap();
    assert_eq!(
        seen,
        vec![0, 2],
        "the guess, then the state read after the conflict"
    );
    assert!(matches!(out, Committed::Applied { version: 3, .. }));
    assert_eq!(b.load("old-batch").await.unwrap().fields["n"].as_ref(), "3");
    // "Nothing to write" on the guess is not trusted: the state is read and decided again.
    let mut seen = Vec::new();
    let out = a
        .commit_likely_new("quiet-batch", None, |cur| {
            seen.push(cur.version);
            Ok(Decided::<u64>::Nothing(cur.version))
        })
        .await
        .unwrap();
    assert_eq!(
        seen,
        vec![0, 0],
        "the guess, then a fresh read (still nothing there)"
    );
    assert!(matches!(out, Committed::Unchanged(0)));
}

/// The raw key of a batch's bucket outbox (as the store lays it out: crates/store/src/lib.rs).
fn outbox_key(s: &Store, batch: &str) -> String {
    format!(
        "{{{}:b{:02}}}:outbox",
        s.key_prefix(),
        huleedu_store::bucket_of(batch)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_that_can_never_be_published_are_parked_and_the_rest_flow_in_order() {
    let (s, producer, topic) = relay_setup().await;
    let batch = "b-park";
    let ok = entries(&topic, batch, 3);
    // Over the producer's message.max.bytes (1 MB): refused for good.
    let huge = OutboxEntry::new(&topic, batch, "x".repeat(2 * 1024 * 1024));
    let mut r = req(batch, 0, Some("e-park"), &[("x", "1")]);
    r.outbox = vec![ok[0].clone(), huge.clone(), ok[1].clone()];
    s.apply(&r).await.unwrap();
    // An entry that is not an outbox entry at all (a foreign or corrupted write), then one more.
    let mut c = s.connection();
    let _: () = redis::cmd("RPUSH")
        .arg(outbox_key(&s, batch))
        .arg("not an outbox entry")
        .query_async(&mut c)
        .await
        .unwrap();
    let mut r = req(batch, 1, Some("e-park-2"), &[("x", "2")]);
    r.outbox = vec![ok[2].clone()];
    s.apply(&r).await.unwrap();

    let reader = TopicReader::start(&[&topic]);
    let stop = CancellationToken::new();
    let relay = tokio::spawn(OutboxRelay::new(s.clone(), producer).run(stop.clone()));
    let seen = reader
        .wait_for(T, "the three publishable entries", |seen| seen.len() >= 3)
        .await;
    let got: Vec<&str> = seen.iter().map(|m| m.payload_str()).collect();
    let want: Vec<&str> = ok.iter().map(|e| e.payload.as_str()).collect();
    assert_eq!(got, want, "in order, past the two that cannot be published");
    wait_until(T, "outbox emptied, two entries parked", || async {
        s.outbox_len().await.unwrap() == 0 && s.parked_len().await.unwrap() == 2
    })
    .await;
    let parked = s.parked_entries().await.unwrap();
    assert!(parked.iter().any(|p| p == "not an outbox entry"));
    assert!(parked.iter().any(|p| p.contains(&huge.payload[..100])));
    stop.cancel();
    relay.await.unwrap();
}

/// An upgrade: entries an earlier version wrote (one JSON object with the payload escaped in
/// it) are still in the outbox when the new relay starts; they go out as they were, in order
/// with the new layout's entries, and leave the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_of_the_earlier_layout_are_published_and_removed() {
    let (s, producer, topic) = relay_setup().await;
    let batch = "b-layout";
    let all = entries(&topic, batch, 4);
    let mut c = s.connection();
    for old in &all[..2] {
        let _: () = redis::cmd("RPUSH")
            .arg(outbox_key(&s, batch))
            .arg(serde_json::to_string(old).unwrap())
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let mut r = req(batch, 0, Some("e-layout"), &[("x", "1")]);
    r.outbox = all[2..].to_vec();
    s.apply(&r).await.unwrap();

    let reader = TopicReader::start(&[&topic]);
    let stop = CancellationToken::new();
    let relay = tokio::spawn(OutboxRelay::new(s.clone(), producer).run(stop.clone()));
    let seen = reader
        .wait_for(T, "the four entries", |seen| seen.len() >= 4)
        .await;
    let got: Vec<&str> = seen.iter().map(|m| m.payload_str()).collect();
    let want: Vec<&str> = all.iter().map(|e| e.payload.as_str()).collect();
    assert_eq!(got, want, "both layouts, byte for byte, in outbox order");
    wait_until(T, "outbox emptied", || async {
        s.outbox_len().await.unwrap() == 0
    })
    .await;
    assert_eq!(s.parked_len().await.unwrap(), 0);
    stop.cancel();
    relay.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restarted_under_its_identity_takes_its_leases_back_at_once() {
    let (s, producer, topic) = relay_setup().await;
    let reader = TopicReader::start(&[&topic]);
    let batch = "b-lease";
    let first = entries(&topic, batch, 1);
    let mut r = req(batch, 0, Some("e-lease-1"), &[("x", "1")]);
    r.outbox = first.clone();
    s.apply(&r).await.unwrap();

    // First life of replica-a: it takes the bucket's lease (10 s), publishes, and dies without
    // releasing anything.
    let stop = CancellationToken::new();
    let life1 = tokio::spawn(
        OutboxRelay::new(s.clone(), producer.clone())
            .with_owner("replica-a")
            .run(stop.clone()),
    );
    reader
        .wait_for(T, "the first entry", |seen| !seen.is_empty())
        .await;
    life1.abort();
    let _ = life1.await;

    let second = entries(&topic, batch, 1);
    let mut r = req(batch, 1, Some("e-lease-2"), &[("x", "2")]);
    r.outbox = second.clone();
    s.apply(&r).await.unwrap();

    // Another identity finds the dead replica's lease and leaves the bucket alone.
    let other = OutboxRelay::new(s.clone(), producer.clone()).with_owner("replica-b");
    assert_eq!(
        other.round().await.unwrap(),
        0,
        "the lease is not replica-b's"
    );

    // The restarted replica-a takes it back at once, well before the lease would expire.
    let restarted_at = std::time::Instant::now();
    let life2 = tokio::spawn(
        OutboxRelay::new(s.clone(), producer)
            .with_owner("replica-a")
            .run(stop.clone()),
    );
    // (The first entry may come again too — its removal may have died with the first life:
    // same bytes, same event id.)
    reader
        .wait_for(T, "the second entry", |seen| {
            seen.iter().any(|m| m.payload_str() == second[0].payload)
        })
        .await;
    assert!(
        restarted_at.elapsed() < Duration::from_secs(5),
        "published {:?} after the restart: it waited for its own lease",
        restarted_at.elapsed()
    );
    stop.cancel();
    life2.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_never_releases_a_lease_it_does_not_hold() {
    let (s, producer, _topic) = relay_setup().await;
    let mut c = s.connection();
    let lease = |b: u16| format!("{{{}:b{b:02}}}:outbox:lease", s.key_prefix());
    let _: () = redis::cmd("SET")
        .arg(lease(3))
        .arg("someone-else")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut c)
        .await
        .unwrap();
    // A relay that starts and stops releases its leases at shutdown, only its own.
    let stop = CancellationToken::new();
    let relay = tokio::spawn(
        OutboxRelay::new(s.clone(), producer)
            .with_owner("me")
            .run(stop.clone()),
    );
    stop.cancel();
    relay.await.unwrap();
    let holder: Option<String> = redis::cmd("GET")
        .arg(lease(3))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(holder.as_deref(), Some("someone-else"));
}

/// Replicas behind each master of the test Redis: `HULEEDU_TEST_REDIS_REPLICAS` (scripts/test.sh
/// gives its one Redis a replica, the TLS one none, and the clusters one per master), else none
/// for one Redis and one for a cluster.
fn replicas_per_master() -> u32 {
    if let Some(n) = std::env::var("HULEEDU_TEST_REDIS_REPLICAS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    match huleedu_it::redis_mode() {
        huleedu_store::RedisMode::Standalone => 0,
        huleedu_store::RedisMode::Cluster => 1,
    }
}

#[tokio::test]
async fn a_commit_counts_only_once_the_replicas_confirm_it() {
    let replicas = replicas_per_master();
    let prefix = unique("wait");
    let with_wait = |n: u32| {
        let mut settings = huleedu_it::redis_settings(&prefix);
        settings.wait_replicas = n;
        settings.wait_timeout = Duration::from_millis(200);
        Store::connect(&settings).unwrap()
    };
    // More replicas than there are: written on the master, but not confirmed in time.
    let s = with_wait(replicas + 1);
    let mut r = req("b-wait", 0, Some("e-wait"), &[("x", "1")]);
    r.outbox = vec![OutboxEntry::new("t", "b-wait", "payload")];
    let err = s.apply(&r).await.unwrap_err();
    match err {
        huleedu_store::StoreError::Unconfirmed {
            wanted, confirmed, ..
        } => {
            assert_eq!((wanted, confirmed), (replicas + 1, replicas), "{err}");
        }
        other => panic!("expected Unconfirmed, got {other}"),
    }
    assert!(
        err.to_string().contains("REDIS_WAIT_REPLICAS"),
        "the error names the setting: {err}"
    );
    // The redelivery of the same event: its marker is on the master, and still unconfirmed —
    // by the commit path too, which reads the state and the marker first (nothing cached
    // after a failed commit).
    assert!(matches!(
        s.apply(&r).await,
        Err(huleedu_store::StoreError::Unconfirmed { .. })
    ));
    let again = s
        .commit("b-wait", Some(("e-wait", Duration::from_secs(60))), |_| {
            Ok(Decided::<()>::Nothing(()))
        })
        .await;
    assert!(
        matches!(again, Err(huleedu_store::StoreError::Unconfirmed { .. })),
        "{again:?}"
    );
    if replicas > 0 {
        // As many as there are: the same redelivery now counts (handled before).
        let s = with_wait(replicas);
        assert_eq!(s.apply(&r).await.unwrap(), ApplyOutcome::AlreadyApplied);
        let r2 = req("b-wait", 1, Some("e-wait-2"), &[("x", "2")]);
        assert_eq!(
            s.apply(&r2).await.unwrap(),
            ApplyOutcome::Applied { version: 2 }
        );
    }
}
