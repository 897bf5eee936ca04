//! An independent observer: reads every topic of a stack from the beginning and checks the
//! invariants of `architecture.md` §3 from the outside, without asking the services anything
//! but the conductor's read-only phase records.
//!
//! The observer assigns itself every partition of every `huleedu.*` topic (no consumer group, so
//! no rebalance can make it skip anything) and keeps each message once by its position
//! (topic, partition, offset): a broker restart that makes it read a partition again changes
//! nothing. [`Observer::check`] then verifies:
//!
//! 1. **One terminal event per request.** Every distinct request `event_id` on the request topic
//!    has exactly one distinct `BatchPipelineCompletedV1` `event_id` with the request's
//!    `correlation_id` (re-sends with the same id are allowed and counted), for the same batch
//!    and pipeline; no terminal event belongs to no request.
//! 2. **No redundant processing.** Within one pipeline run (batch, phase, correlation id) a phase
//!    is dispatched by one distinct command id; a phase is never dispatched after a terminal
//!    event listed it completed for the batch; with [`Expectations::each_phase_once`], every
//!    (batch, phase) is dispatched by exactly one command id over the whole run.
//! 3. **Failed essays reach the DLQ once.** Per (batch, phase, essay, pipeline correlation id)
//!    exactly one distinct failed-essay DLQ `event_id`, for every essay an outcome reported
//!    failed, and none for an essay no outcome reported.
//! 4. **Nothing doubled elsewhere.** One distinct `PhaseSkippedV1` per (request, phase); no
//!    poison records unless the run sends poison ([`Expectations::allow_poison`]).
//! 5. **The conductor agrees.** For every batch, `GET /internal/v1/batches/{id}/phases` shows
//!    every phase that completed per the outcomes (or per a terminal event) as `completed`, a
//!    phase that only ever failed as `failed`, and nothing completed without an event saying so.
//!
//! The checks assume that requests reach the system only through the request topic and that no
//! operator marks or essay-level retries happen during the run (both legitimately re-run
//! phases).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use huleedu_contracts::topics;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::Seen;

/// What a run is expected to look like beyond the invariants that always hold.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expectations {
    /// Every (batch, phase) is dispatched by exactly one distinct command id over the whole run
    /// (true for sequential pipelines whose phases never fail critically).
    pub each_phase_once: bool,
    /// The run sends poison messages on purpose, so `<topic>.DLQ` records are expected.
    pub allow_poison: bool,
}

/// What the observer found.
#[derive(Debug, Clone, Default)]
pub struct ObserverReport {
    /// Messages read (each position once), and per topic.
    pub messages: usize,
    pub per_topic: BTreeMap<String, usize>,
    /// Distinct request `event_id`s, and messages carrying an id seen before.
    pub requests: usize,
    pub request_resends: usize,
    /// Terminal events: messages, distinct `event_id`s, re-sends (same id again).
    pub terminal_messages: usize,
    pub distinct_terminals: usize,
    pub terminal_resends: usize,
    /// Requests with exactly one terminal event / with none.
    pub requests_with_one_terminal: usize,
    pub missing_terminals: usize,
    /// Initiate commands: distinct ids, re-sends, distinct (batch, phase, pipeline) runs.
    pub commands: usize,
    pub command_resends: usize,
    pub phase_runs: usize,
    /// Phase outcomes: distinct ids, re-sends.
    pub outcomes: usize,
    pub outcome_resends: usize,
    /// Failed-essay DLQ: messages, distinct ids, re-sends; failed essays reported by outcomes.
    pub dlq_messages: usize,
    pub dlq_records: usize,
    pub dlq_resends: usize,
    pub failed_essays_reported: usize,
    /// Distinct `PhaseSkippedV1` events.
    pub skipped_events: usize,
    /// Records on poison DLQ topics (`<topic>.DLQ`).
    pub poison_records: usize,
    /// Effects doubled under distinct ids: extra terminals, commands, DLQ records, skip events.
    pub duplicates_found: usize,
    /// Batches whose conductor records were compared with the outcomes.
    pub batches_checked: usize,
    /// Every broken invariant, one line each.
    pub violations: Vec<String>,
}

impl ObserverReport {
    /// No invariant broken.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for ObserverReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "observer: {} messages on {} topics",
            self.messages,
            self.per_topic.len()
        )?;
        writeln!(
            f,
            "  requests {} (re-sent {}) | terminal events {} messages, {} distinct, {} re-sends | requests with exactly one terminal {}, without {}",
            self.requests,
            self.request_resends,
            self.terminal_messages,
            self.distinct_terminals,
            self.terminal_resends,
            self.requests_with_one_terminal,
            self.missing_terminals
        )?;
        writeln!(
            f,
            "  commands {} distinct ({} re-sends) in {} phase runs | outcomes {} ({} re-sends) | phase-skipped {}",
            self.commands,
            self.command_resends,
            self.phase_runs,
            self.outcomes,
            self.outcome_resends,
            self.skipped_events
        )?;
        writeln!(
            f,
            "  failed-essay DLQ {} messages, {} distinct records ({} re-sends) for {} failed essays reported | poison records {}",
            self.dlq_messages,
            self.dlq_records,
            self.dlq_resends,
            self.failed_essays_reported,
            self.poison_records
        )?;
        writeln!(
            f,
            "  conductor records checked for {} batches | duplicates found {} | violations {}",
            self.batches_checked,
            self.duplicates_found,
            self.violations.len()
        )?;
        for v in self.violations.iter().take(40) {
            writeln!(f, "    VIOLATION {v}")?;
        }
        if self.violations.len() > 40 {
            writeln!(f, "    ... and {} more", self.violations.len() - 40)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Record {
    seen: Seen,
    timestamp_ms: i64,
}

#[derive(Debug, Default)]
struct Collected {
    records: BTreeMap<(String, i32, i64), Record>,
    /// Terminal events by correlation id: their distinct event ids.
    terminals: HashMap<String, BTreeSet<String>>,
}

/// Reads every topic of a broker from the beginning, in the background, until dropped.
pub struct Observer {
    state: Arc<Mutex<Collected>>,
    partitions: Vec<(String, i32)>,
    meta: Arc<BaseConsumer>,
    stop: CancellationToken,
}

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", crate::unique("observer"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .set("broker.address.family", "v4");
    c
}

impl Observer {
    /// Observe every `huleedu.*` topic that exists on the broker now.
    pub async fn start(bootstrap: &str) -> anyhow::Result<Self> {
        Self::start_on(bootstrap, None).await
    }

    /// Observe `topics` (all `huleedu.*` topics when `None`). The topics must exist.
    pub async fn start_on(bootstrap: &str, topics: Option<&[&str]>) -> anyhow::Result<Self> {
        let meta: Arc<BaseConsumer> = Arc::new(client_config(bootstrap).create()?);
        let wanted: Option<Vec<String>> = topics.map(|t| t.iter().map(|s| s.to_string()).collect());
        let m = meta.clone();
        let partitions = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let md = m.fetch_metadata(None, Duration::from_secs(10))?;
            let mut out = Vec::new();
            for t in md.topics() {
                let keep = match &wanted {
                    Some(w) => w.iter().any(|x| x == t.name()),
                    None => t.name().starts_with("huleedu."),
                };
                if keep {
                    for p in t.partitions() {
                        out.push((t.name().to_owned(), p.id()));
                    }
                }
            }
            Ok(out)
        })
        .await??;
        anyhow::ensure!(
            !partitions.is_empty(),
            "no topics to observe on {bootstrap}"
        );
        let mut tpl = TopicPartitionList::new();
        for (t, p) in &partitions {
            tpl.add_partition_offset(t, *p, Offset::Beginning)?;
        }
        let consumer: StreamConsumer = client_config(bootstrap).create()?;
        consumer.assign(&tpl)?;
        let state = Arc::new(Mutex::new(Collected::default()));
        let stop = CancellationToken::new();
        let (st, token) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let m = tokio::select! {
                    _ = token.cancelled() => break,
                    m = consumer.recv() => m,
                };
                let Ok(m) = m else { continue };
                let seen = Seen::from_message(&m);
                let rec = Record {
                    timestamp_ms: seen.timestamp_ms.unwrap_or(0),
                    seen,
                };
                let mut c = st.lock().unwrap();
                if rec.seen.topic == topics::BATCH_PIPELINE_COMPLETED {
                    if let Ok(v) = serde_json::from_slice::<Value>(&rec.seen.payload) {
                        c.terminals
                            .entry(text(&v["correlation_id"]))
                            .or_default()
                            .insert(text(&v["event_id"]));
                    }
                }
                let pos = (rec.seen.topic.clone(), rec.seen.partition, rec.seen.offset);
                c.records.entry(pos).or_insert(rec);
            }
            tokio::task::spawn_blocking(move || drop(consumer));
        });
        Ok(Self {
            state,
            partitions,
            meta,
            stop,
        })
    }

    /// The partitions observed.
    pub fn partitions(&self) -> &[(String, i32)] {
        &self.partitions
    }

    /// Everything read so far, in position order, each position once.
    pub fn records(&self) -> Vec<Seen> {
        let c = self.state.lock().unwrap();
        c.records.values().map(|r| r.seen.clone()).collect()
    }

    /// Messages read so far on `topic`.
    pub fn on(&self, topic: &str) -> Vec<Seen> {
        let c = self.state.lock().unwrap();
        c.records
            .values()
            .filter(|r| r.seen.topic == topic)
            .map(|r| r.seen.clone())
            .collect()
    }

    /// Messages read so far.
    pub fn count(&self) -> usize {
        self.state.lock().unwrap().records.len()
    }

    /// Distinct terminal event ids seen for a correlation id.
    pub fn terminals_for(&self, correlation_id: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .terminals
            .get(correlation_id)
            .map_or(0, BTreeSet::len)
    }

    /// The latest end offset of every observed partition.
    pub async fn end_offsets(&self) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
        let meta = self.meta.clone();
        let parts = self.partitions.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = BTreeMap::new();
            for (t, p) in parts {
                let (_, high) = meta.fetch_watermarks(&t, p, Duration::from_secs(5))?;
                out.insert((t, p), high);
            }
            Ok(out)
        })
        .await?
    }

    /// Wait until everything published so far has been read (deadline `timeout`).
    pub async fn wait_caught_up(&self, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let behind = match self.end_offsets().await {
                Ok(ends) => {
                    let c = self.state.lock().unwrap();
                    let mut max: HashMap<(&str, i32), i64> = HashMap::new();
                    for (t, p, o) in c.records.keys() {
                        let e = max.entry((t.as_str(), *p)).or_insert(-1);
                        *e = (*e).max(*o);
                    }
                    ends.iter()
                        .filter(|((t, p), high)| {
                            **high > 0
                                && max.get(&(t.as_str(), *p)).copied().unwrap_or(-1) < **high - 1
                        })
                        .map(|((t, p), high)| format!("{t}[{p}] < {high}"))
                        .collect::<Vec<_>>()
                }
                Err(e) => vec![format!("watermarks unavailable: {e}")],
            };
            if behind.is_empty() {
                return Ok(());
            }
            anyhow::ensure!(
                start.elapsed() < timeout,
                "observer not caught up after {timeout:?}: {}",
                behind.join(", ")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Check every invariant against what was read and the conductor at `bcs_url`.
    pub async fn check(&self, bcs_url: &str, expect: Expectations) -> ObserverReport {
        let records: Vec<Record> = {
            let c = self.state.lock().unwrap();
            c.records.values().cloned().collect()
        };
        let mut report = analyse(&records, expect);
        conductor_agrees(&records, bcs_url, &mut report).await;
        report
    }
}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observer")
            .field("partitions", &self.partitions.len())
            .field("messages", &self.count())
            .finish_non_exhaustive()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default()
}

/// Distinct ids and re-sends (messages beyond the first per id).
fn distinct_and_resends<'a>(ids: impl Iterator<Item = &'a String>) -> (usize, usize) {
    let mut n = 0;
    let mut set = BTreeSet::new();
    for id in ids {
        n += 1;
        set.insert(id);
    }
    (set.len(), n - set.len())
}

struct Parsed<'a> {
    rec: &'a Record,
    v: Value,
}

impl Parsed<'_> {
    fn id(&self) -> String {
        text(&self.v["event_id"])
    }
    fn corr(&self) -> String {
        text(&self.v["correlation_id"])
    }
    fn batch(&self) -> String {
        let b = text(&self.v["data"]["batch_id"]);
        if !b.is_empty() {
            return b;
        }
        let e = text(&self.v["data"]["entity_id"]);
        if !e.is_empty() {
            return e;
        }
        self.rec.seen.key.clone().unwrap_or_default()
    }
}

fn analyse(records: &[Record], expect: Expectations) -> ObserverReport {
    let mut r = ObserverReport {
        messages: records.len(),
        ..Default::default()
    };
    let mut by_topic: HashMap<&str, Vec<Parsed<'_>>> = HashMap::new();
    for rec in records {
        *r.per_topic.entry(rec.seen.topic.clone()).or_default() += 1;
        let t = rec.seen.topic.as_str();
        if t.ends_with(topics::DLQ_SUFFIX) && t != topics::FAILED_ESSAYS_DLQ {
            r.poison_records += 1;
            if !expect.allow_poison {
                r.violations.push(format!(
                    "poison record on {t} (from {} offset {}): {}",
                    rec.seen.header("dlq.original.topic").unwrap_or("?"),
                    rec.seen.header("dlq.original.offset").unwrap_or("?"),
                    rec.seen.header("dlq.error.message").unwrap_or("?")
                ));
            }
            continue;
        }
        match serde_json::from_slice::<Value>(&rec.seen.payload) {
            Ok(v) if v.is_object() => by_topic.entry(t).or_default().push(Parsed { rec, v }),
            _ => {
                if !expect.allow_poison {
                    r.violations.push(format!(
                        "undecodable message on {t} [{}@{}]",
                        rec.seen.partition, rec.seen.offset
                    ));
                }
            }
        }
    }
    let empty = Vec::new();
    let on = |t: &str| by_topic.get(t).unwrap_or(&empty);

    // 1. One terminal event per request.
    let requests = on(topics::CLIENT_BATCH_PIPELINE_REQUEST);
    let (n, resends) =
        distinct_and_resends(requests.iter().map(|p| p.id()).collect::<Vec<_>>().iter());
    r.requests = n;
    r.request_resends = resends;
    let mut request_by_id: BTreeMap<String, &Parsed<'_>> = BTreeMap::new();
    for p in requests {
        request_by_id.entry(p.id()).or_insert(p);
    }
    let mut requests_by_corr: HashMap<String, Vec<&Parsed<'_>>> = HashMap::new();
    for p in request_by_id.values() {
        requests_by_corr.entry(p.corr()).or_default().push(p);
    }
    let terminals = on(topics::BATCH_PIPELINE_COMPLETED);
    r.terminal_messages = terminals.len();
    let (n, resends) =
        distinct_and_resends(terminals.iter().map(|p| p.id()).collect::<Vec<_>>().iter());
    r.distinct_terminals = n;
    r.terminal_resends = resends;
    let mut terminal_by_corr: HashMap<String, BTreeMap<String, &Parsed<'_>>> = HashMap::new();
    for p in terminals {
        terminal_by_corr
            .entry(p.corr())
            .or_default()
            .entry(p.id())
            .or_insert(p);
    }
    for (corr, reqs) in &requests_by_corr {
        if reqs.len() > 1 {
            r.violations.push(format!(
                "{} distinct requests share correlation id {corr}",
                reqs.len()
            ));
        }
        let req = reqs[0];
        let batch = req.batch();
        let pipeline = text(&req.v["data"]["requested_pipeline"]);
        match terminal_by_corr.get(corr) {
            None => {
                r.missing_terminals += 1;
                r.violations.push(format!(
                    "request {} ({pipeline} for batch {batch}, correlation {corr}) has no terminal event",
                    req.id()
                ));
            }
            Some(ts) => {
                if ts.len() == 1 {
                    r.requests_with_one_terminal += 1;
                } else {
                    r.duplicates_found += ts.len() - 1;
                    r.violations.push(format!(
                        "request {} ({pipeline} for batch {batch}) has {} distinct terminal events: {:?}",
                        req.id(),
                        ts.len(),
                        ts.keys().collect::<Vec<_>>()
                    ));
                }
                for t in ts.values() {
                    let tb = t.batch();
                    let tp = text(&t.v["data"]["requested_pipeline"]);
                    if tb != batch || (!tp.is_empty() && tp != pipeline) {
                        r.violations.push(format!(
                            "terminal {} for correlation {corr} names batch {tb} / pipeline {tp}, the request {batch} / {pipeline}",
                            t.id()
                        ));
                    }
                }
            }
        }
    }
    for (corr, ts) in &terminal_by_corr {
        if !requests_by_corr.contains_key(corr) {
            r.violations.push(format!(
                "terminal event(s) {:?} with correlation id {corr} answer no request",
                ts.keys().collect::<Vec<_>>()
            ));
        }
    }

    // 2. Commands: once per phase run; never after a terminal event listed the phase completed.
    // (batch, phase) → correlation → distinct command ids with their first timestamp.
    let mut runs: BTreeMap<(String, String), BTreeMap<String, BTreeMap<String, i64>>> =
        BTreeMap::new();
    let mut command_ids = Vec::new();
    for (phase, topic) in topics::COMMANDS {
        for p in on(topic) {
            command_ids.push(p.id());
            let ts = runs
                .entry((p.batch(), phase.to_string()))
                .or_default()
                .entry(p.corr())
                .or_default()
                .entry(p.id())
                .or_insert(i64::MAX);
            *ts = (*ts).min(p.rec.timestamp_ms);
        }
    }
    let (n, resends) = distinct_and_resends(command_ids.iter());
    r.commands = n;
    r.command_resends = resends;
    // When each (batch, phase) was first reported completed by a terminal event.
    let mut completed_at: HashMap<(String, String), (i64, String)> = HashMap::new();
    for ts in terminal_by_corr.values() {
        for t in ts.values() {
            for phase in strings(&t.v["data"]["completed_phases"]) {
                let e = completed_at
                    .entry((t.batch(), phase))
                    .or_insert((i64::MAX, String::new()));
                if t.rec.timestamp_ms < e.0 {
                    *e = (t.rec.timestamp_ms, t.corr());
                }
            }
        }
    }
    for ((batch, phase), by_corr) in &runs {
        r.phase_runs += by_corr.len();
        for (corr, ids) in by_corr {
            if ids.len() > 1 {
                r.duplicates_found += ids.len() - 1;
                r.violations.push(format!(
                    "{phase} of batch {batch} dispatched {} times (distinct command ids) in pipeline {corr}",
                    ids.len()
                ));
            }
            if let Some((done_ts, done_corr)) = completed_at.get(&(batch.clone(), phase.clone())) {
                let first = ids.values().min().copied().unwrap_or(i64::MAX);
                if done_corr != corr && first > *done_ts {
                    r.violations.push(format!(
                        "{phase} of batch {batch} dispatched again in pipeline {corr} after pipeline {done_corr} completed it"
                    ));
                }
            }
        }
        let total: usize = by_corr.values().map(BTreeMap::len).sum();
        if expect.each_phase_once && by_corr.len() > 1 {
            r.duplicates_found += by_corr.len() - 1;
            r.violations.push(format!(
                "{phase} of batch {batch} dispatched by {total} distinct commands in {} pipelines",
                by_corr.len()
            ));
        }
    }

    // 3. Failed essays: one DLQ record each per phase run, none extra.
    let outcomes = on(topics::ELS_BATCH_PHASE_OUTCOME);
    let (n, resends) =
        distinct_and_resends(outcomes.iter().map(|p| p.id()).collect::<Vec<_>>().iter());
    r.outcomes = n;
    r.outcome_resends = resends;
    let mut failed: BTreeSet<(String, String, String, String)> = BTreeSet::new();
    let mut seen_outcome = BTreeSet::new();
    for p in outcomes {
        if !seen_outcome.insert(p.id()) {
            continue;
        }
        let d = &p.v["data"];
        let mut corr = text(&d["correlation_id"]);
        if corr.is_empty() {
            corr = p.corr();
        }
        for essay in strings(&d["failed_essay_ids"]) {
            failed.insert((p.batch(), text(&d["phase_name"]), essay, corr.clone()));
        }
    }
    r.failed_essays_reported = failed.len();
    let dlq = on(topics::FAILED_ESSAYS_DLQ);
    r.dlq_messages = dlq.len();
    let (n, resends) = distinct_and_resends(dlq.iter().map(|p| p.id()).collect::<Vec<_>>().iter());
    r.dlq_records = n;
    r.dlq_resends = resends;
    let mut dlq_by_key: BTreeMap<(String, String, String, String), BTreeSet<String>> =
        BTreeMap::new();
    for p in dlq {
        let d = &p.v["data"];
        dlq_by_key
            .entry((
                p.batch(),
                text(&d["phase_name"]),
                text(&d["essay_id"]),
                text(&d["pipeline_correlation_id"]),
            ))
            .or_default()
            .insert(p.id());
    }
    for key in &failed {
        match dlq_by_key.get(key) {
            None => r.violations.push(format!(
                "failed essay {} ({} of batch {}, pipeline {}) has no failed-essay DLQ record",
                key.2, key.1, key.0, key.3
            )),
            Some(ids) if ids.len() > 1 => {
                r.duplicates_found += ids.len() - 1;
                r.violations.push(format!(
                    "failed essay {} ({} of batch {}, pipeline {}) has {} DLQ records",
                    key.2,
                    key.1,
                    key.0,
                    key.3,
                    ids.len()
                ));
            }
            Some(_) => {}
        }
    }
    for key in dlq_by_key.keys() {
        if !failed.contains(key) {
            r.violations.push(format!(
                "DLQ record for essay {} ({} of batch {}, pipeline {}) that no outcome reported failed",
                key.2, key.1, key.0, key.3
            ));
        }
    }

    // 4. Skip events once per (request, phase).
    let mut skips: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for p in on(topics::BATCH_PHASE_SKIPPED) {
        skips
            .entry((p.corr(), text(&p.v["data"]["phase_name"])))
            .or_default()
            .insert(p.id());
    }
    for ((corr, phase), ids) in &skips {
        r.skipped_events += ids.len();
        if ids.len() > 1 {
            r.duplicates_found += ids.len() - 1;
            r.violations.push(format!(
                "{} distinct PhaseSkippedV1 for {phase} in pipeline {corr}",
                ids.len()
            ));
        }
    }
    r
}

/// 5. The conductor's records agree with the outcomes and terminal events.
async fn conductor_agrees(records: &[Record], bcs_url: &str, r: &mut ObserverReport) {
    // (batch, phase) → (completed seen, failed seen)
    let mut evidence: BTreeMap<String, BTreeMap<String, (bool, bool)>> = BTreeMap::new();
    for rec in records {
        let t = rec.seen.topic.as_str();
        if t != topics::ELS_BATCH_PHASE_OUTCOME && t != topics::BATCH_PIPELINE_COMPLETED {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<Value>(&rec.seen.payload) else {
            continue;
        };
        let d = &v["data"];
        let batch = text(&d["batch_id"]);
        if batch.is_empty() {
            continue;
        }
        let phases = evidence.entry(batch).or_default();
        if t == topics::ELS_BATCH_PHASE_OUTCOME {
            let e = phases.entry(text(&d["phase_name"])).or_default();
            match text(&d["phase_status"]).as_str() {
                "completed_successfully" | "completed_with_failures" => e.0 = true,
                "failed_critically" => e.1 = true,
                _ => {}
            }
        } else {
            for p in strings(&d["completed_phases"]) {
                phases.entry(p).or_default().0 = true;
            }
        }
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client");
    for (batch, phases) in &evidence {
        let url = format!("{bcs_url}/internal/v1/batches/{batch}/phases");
        let mut body = None;
        for _ in 0..20 {
            match http.get(&url).send().await {
                Ok(resp) if resp.status().is_success() => {
                    body = resp.json::<Value>().await.ok();
                    if body.is_some() {
                        break;
                    }
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        let Some(body) = body else {
            r.violations
                .push(format!("conductor records of batch {batch} unavailable"));
            continue;
        };
        r.batches_checked += 1;
        let recorded = |p: &str| text(&body["phases"][p]["status"]);
        for (phase, (completed, failed)) in phases {
            let status = recorded(phase);
            if *completed && status != "completed" {
                r.violations.push(format!(
                    "conductor shows {phase} of batch {batch} as {status:?}, the events say completed"
                ));
            } else if !*completed && *failed && status != "failed" {
                r.violations.push(format!(
                    "conductor shows {phase} of batch {batch} as {status:?}, the events say failed"
                ));
            }
        }
        if let Some(map) = body["phases"].as_object() {
            for (phase, rec) in map {
                let completed = phases.get(phase).is_some_and(|e| e.0);
                if text(&rec["status"]) == "completed"
                    && !completed
                    && text(&rec["source"]) != "operator"
                {
                    r.violations.push(format!(
                        "conductor shows {phase} of batch {batch} completed without an event saying so"
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Builds a run of records the way the broker would hand them to the observer.
    #[derive(Default)]
    struct Run {
        records: Vec<Record>,
        clock: i64,
    }

    impl Run {
        fn push(&mut self, topic: &str, key: &str, v: Value) -> &mut Self {
            self.clock += 10;
            let offset = self
                .records
                .iter()
                .filter(|r| r.seen.topic == topic)
                .count() as i64;
            self.records.push(Record {
                seen: Seen {
                    offset,
                    timestamp_ms: Some(self.clock),
                    ..Seen::new(topic, Some(key), serde_json::to_vec(&v).unwrap())
                },
                timestamp_ms: self.clock,
            });
            self
        }
        fn request(&mut self, id: &str, corr: &str, batch: &str, pipeline: &str) -> &mut Self {
            self.push(
                topics::CLIENT_BATCH_PIPELINE_REQUEST,
                batch,
                json!({"event_id": id, "correlation_id": corr,
                       "data": {"batch_id": batch, "requested_pipeline": pipeline}}),
            )
        }
        fn command(&mut self, id: &str, corr: &str, batch: &str, phase: &str) -> &mut Self {
            let topic = topics::initiate_command_topic(phase.parse().unwrap()).unwrap();
            self.push(
                topic,
                batch,
                json!({"event_id": id, "correlation_id": corr, "data": {"entity_id": batch}}),
            )
        }
        fn outcome(
            &mut self,
            id: &str,
            corr: &str,
            batch: &str,
            phase: &str,
            failed: &[&str],
        ) -> &mut Self {
            let status = if failed.is_empty() {
                "completed_successfully"
            } else {
                "completed_with_failures"
            };
            self.push(
                topics::ELS_BATCH_PHASE_OUTCOME,
                batch,
                json!({"event_id": id, "correlation_id": corr,
                       "data": {"batch_id": batch, "phase_name": phase, "phase_status": status,
                                "failed_essay_ids": failed, "correlation_id": corr}}),
            )
        }
        fn dlq(
            &mut self,
            id: &str,
            corr: &str,
            batch: &str,
            phase: &str,
            essay: &str,
        ) -> &mut Self {
            self.push(
                topics::FAILED_ESSAYS_DLQ,
                batch,
                json!({"event_id": id, "correlation_id": corr,
                       "data": {"batch_id": batch, "phase_name": phase, "essay_id": essay,
                                "pipeline_correlation_id": corr}}),
            )
        }
        fn terminal(
            &mut self,
            id: &str,
            corr: &str,
            batch: &str,
            pipeline: &str,
            done: &[&str],
        ) -> &mut Self {
            self.push(
                topics::BATCH_PIPELINE_COMPLETED,
                batch,
                json!({"event_id": id, "correlation_id": corr,
                       "data": {"batch_id": batch, "requested_pipeline": pipeline,
                                "completed_phases": done, "correlation_id": corr}}),
            )
        }
        /// A clean cj_assessment pipeline with one failed essay in spellcheck.
        fn clean() -> Self {
            let mut r = Run::default();
            r.request("r1", "c1", "b", "cj_assessment")
                .command("k1", "c1", "b", "spellcheck")
                .outcome("o1", "c1", "b", "spellcheck", &["e1"])
                .dlq("d1", "c1", "b", "spellcheck", "e1")
                .command("k2", "c1", "b", "cj_assessment")
                .outcome("o2", "c1", "b", "cj_assessment", &[])
                .terminal(
                    "t1",
                    "c1",
                    "b",
                    "cj_assessment",
                    &["spellcheck", "cj_assessment"],
                );
            r
        }
        fn check(&self) -> ObserverReport {
            analyse(
                &self.records,
                Expectations {
                    each_phase_once: true,
                    allow_poison: false,
                },
            )
        }
    }

    #[test]
    fn a_clean_run_has_no_violations_and_resends_are_counted() {
        let mut run = Run::clean();
        // Re-sends of the same ids are allowed.
        run.terminal(
            "t1",
            "c1",
            "b",
            "cj_assessment",
            &["spellcheck", "cj_assessment"],
        )
        .command("k2", "c1", "b", "cj_assessment")
        .dlq("d1", "c1", "b", "spellcheck", "e1");
        let r = run.check();
        assert!(r.ok(), "{r}");
        assert_eq!(
            (r.requests, r.distinct_terminals, r.terminal_resends),
            (1, 1, 1)
        );
        assert_eq!((r.commands, r.command_resends, r.phase_runs), (2, 1, 2));
        assert_eq!(
            (r.dlq_records, r.dlq_resends, r.failed_essays_reported),
            (1, 1, 1)
        );
        assert_eq!(r.duplicates_found, 0);
    }

    #[test]
    fn a_request_without_terminal_is_lost() {
        let mut run = Run::clean();
        run.request("r2", "c2", "b", "nlp");
        let r = run.check();
        assert_eq!(r.missing_terminals, 1, "{r}");
        assert!(r.violations[0].contains("no terminal event"), "{r}");
    }

    #[test]
    fn two_distinct_terminals_are_a_duplicate() {
        let mut run = Run::clean();
        run.terminal(
            "t2",
            "c1",
            "b",
            "cj_assessment",
            &["spellcheck", "cj_assessment"],
        );
        let r = run.check();
        assert_eq!(r.duplicates_found, 1, "{r}");
        assert!(!r.ok());
    }

    #[test]
    fn a_terminal_for_no_request_is_reported() {
        let mut run = Run::clean();
        run.terminal("t9", "c9", "b", "nlp", &[]);
        assert!(run
            .check()
            .violations
            .iter()
            .any(|v| v.contains("answer no request")));
    }

    #[test]
    fn a_phase_dispatched_twice_in_one_pipeline_is_reported() {
        let mut run = Run::clean();
        run.command("k3", "c1", "b", "cj_assessment");
        let r = run.check();
        assert_eq!(r.duplicates_found, 1, "{r}");
        assert!(
            r.violations
                .iter()
                .any(|v| v.contains("dispatched 2 times")),
            "{r}"
        );
    }

    #[test]
    fn a_completed_phase_dispatched_by_a_later_pipeline_is_reported() {
        let mut run = Run::clean();
        run.request("r2", "c2", "b", "nlp")
            .command("k3", "c2", "b", "spellcheck")
            .outcome("o3", "c2", "b", "spellcheck", &[])
            .command("k4", "c2", "b", "nlp")
            .outcome("o4", "c2", "b", "nlp", &[])
            .terminal("t2", "c2", "b", "nlp", &["spellcheck", "nlp"]);
        // Also without the each-phase-once expectation.
        let r = analyse(&run.records, Expectations::default());
        assert!(
            r.violations
                .iter()
                .any(|v| v.contains("dispatched again in pipeline c2")),
            "{r}"
        );
    }

    #[test]
    fn failed_essays_need_exactly_one_dlq_record() {
        let mut missing = Run::default();
        missing
            .request("r1", "c1", "b", "spellcheck")
            .command("k1", "c1", "b", "spellcheck")
            .outcome("o1", "c1", "b", "spellcheck", &["e1", "e2"])
            .dlq("d1", "c1", "b", "spellcheck", "e1")
            .terminal("t1", "c1", "b", "spellcheck", &["spellcheck"]);
        let r = missing.check();
        assert!(
            r.violations
                .iter()
                .any(|v| v.contains("e2") && v.contains("no failed-essay DLQ record")),
            "{r}"
        );

        let mut doubled = Run::clean();
        doubled.dlq("d2", "c1", "b", "spellcheck", "e1");
        let r = doubled.check();
        assert_eq!(r.duplicates_found, 1, "{r}");

        let mut stray = Run::clean();
        stray.dlq("d3", "c1", "b", "spellcheck", "e7");
        assert!(stray
            .check()
            .violations
            .iter()
            .any(|v| v.contains("no outcome reported")));
    }

    #[test]
    fn poison_records_are_violations_unless_expected() {
        let mut run = Run::clean();
        run.push(
            "huleedu.els.batch.phase.outcome.v1.DLQ",
            "b",
            json!({"x": 1}),
        );
        let r = run.check();
        assert_eq!(r.poison_records, 1);
        assert!(!r.ok());
        let r = analyse(
            &run.records,
            Expectations {
                each_phase_once: true,
                allow_poison: true,
            },
        );
        assert!(r.ok(), "{r}");
    }
}
