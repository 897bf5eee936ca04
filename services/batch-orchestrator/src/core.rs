//! Carrying out decisions: load the batch state, run a pure decision, commit it atomically.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use huleedu_contracts::timestamp::Timestamp;
use huleedu_store::{Change, Decided, IndexOp, OutboxEntry, Store, StoreError, Versioned};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::decide::{Decision, Limits, Note};
use crate::metrics::BosMetrics;
use crate::model::BatchState;

/// Redis index of batches with a time-based duty (phase deadline, parked request give-up).
pub const DEADLINES: &str = "deadlines";
/// Redis index of batches whose queue head can start.
pub const STARTS: &str = "starts";
/// Index of every batch by the time of its last change (ms): `GET /v1/batches` pages through it.
pub const BATCHES: &str = "batches";
/// Index of the batches with a running pipeline, by the time it started (ms): the
/// active-pipeline gauges.
pub const ACTIVE: &str = "active";
/// Index of the batches with a running pipeline, by the time its current phase was dispatched
/// (ms): the oldest-phase gauge (the stuck-pipeline alert).
pub const PHASES: &str = "phases";
/// Index of the batches with queued requests, scored by how many.
pub const QUEUED: &str = "queued";
/// Index of the batches with parked requests (waiting for the batch), scored by how many.
pub const PARKED: &str = "parked";

/// What a commit ended as.
#[derive(Debug, Clone, PartialEq)]
pub enum Committed {
    /// The decision was committed (or there was nothing to commit).
    Done { notes: Vec<Note>, changed: bool },
    /// This event was handled before.
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored state of batch {batch_id} is unreadable: {reason}")]
    CorruptState { batch_id: String, reason: String },
    #[error("batch {0} kept changing; giving up for now")]
    Contention(String),
}

/// Shared by the consumer handler, the scheduler and HTTP.
#[derive(Debug, Clone)]
pub struct Core {
    pub store: Store,
    pub limits: Limits,
    pub dedup_ttl: std::time::Duration,
    pub state_ttl: std::time::Duration,
    pub metrics: BosMetrics,
    /// Wakes the scheduler when a batch can start a queued request.
    pub wake_scheduler: Arc<Notify>,
    /// Decoded copies of recently read or committed states.
    pub decoded: DecodedStates,
}

/// The hash fields of a batch's state. The small part (`state`) is written by every commit;
/// each per-essay part only when it changed (a new `Arc`), so a transition of a large batch
/// writes its own result and the small state, not the batch's essays and earlier results.
pub mod fields {
    /// The small part: queue, active pipeline (without its failed essays), history.
    pub const STATE: &str = "state";
    /// The batch's essays and command context ([`crate::model::BatchInfo`]).
    pub const BATCH: &str = "batch";
    /// Prefix of each phase's latest result (`result:<phase>`).
    pub const RESULT_PREFIX: &str = "result:";
    /// The active pipeline's failed essays.
    pub const FAILED: &str = "failed";
}

fn corrupt(batch_id: &str, field: &str, e: serde_json::Error) -> CoreError {
    CoreError::CorruptState {
        batch_id: batch_id.to_owned(),
        reason: format!("field {field}: {e}"),
    }
}

/// A batch's state from its hash fields (the default when nothing is stored).
fn parse_state(batch_id: &str, v: &Versioned) -> Result<BatchState, CoreError> {
    let mut state: BatchState = match v.fields.get(fields::STATE) {
        None => BatchState::default(),
        Some(json) => {
            serde_json::from_str(json).map_err(|e| corrupt(batch_id, fields::STATE, e))?
        }
    };
    for (field, json) in &v.fields {
        if field == fields::BATCH {
            state.batch =
                Some(serde_json::from_str(json).map_err(|e| corrupt(batch_id, field, e))?);
        } else if let Some(phase) = field.strip_prefix(fields::RESULT_PREFIX) {
            let phase = phase.parse().map_err(|_| CoreError::CorruptState {
                batch_id: batch_id.to_owned(),
                reason: format!("field {field}: not a phase"),
            })?;
            let result = serde_json::from_str(json).map_err(|e| corrupt(batch_id, field, e))?;
            state.phase_results.insert(phase, result);
        }
    }
    if let (Some(a), Some(json)) = (state.active.as_mut(), v.fields.get(fields::FAILED)) {
        a.failed_essays =
            serde_json::from_str(json).map_err(|e| corrupt(batch_id, fields::FAILED, e))?;
    }
    Ok(state)
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    json_sized(value, 128)
}

/// [`json`] into a buffer of `capacity` bytes to start with (a per-essay part of a large batch
/// is megabytes: written once instead of regrown and copied as it fills).
fn json_sized<T: serde::Serialize + ?Sized>(value: &T, capacity: usize) -> String {
    let mut out = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut out, value).expect("state serializes");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Starting capacity for the JSON of `essays` essay references (two ids each).
fn essays_capacity(essays: usize) -> usize {
    256 + 96 * essays
}

/// The fields to write for the change from `old` to `new`: the small state always, each
/// per-essay part that is not the same `Arc` as before.
fn changed_fields(old: &BatchState, new: &BatchState) -> Vec<(String, String)> {
    let mut out = vec![(fields::STATE.to_owned(), json(new))];
    if let Some(b) = &new.batch {
        if !old.batch.as_ref().is_some_and(|o| Arc::ptr_eq(o, b)) {
            let capacity = essays_capacity(b.essays.len());
            out.push((fields::BATCH.to_owned(), json_sized(&**b, capacity)));
        }
    }
    for (phase, r) in &new.phase_results {
        if !old
            .phase_results
            .get(phase)
            .is_some_and(|o| Arc::ptr_eq(o, r))
        {
            let capacity = essays_capacity(r.succeeded.len()) + 48 * r.failed.len();
            out.push((
                format!("{}{phase}", fields::RESULT_PREFIX),
                json_sized(&**r, capacity),
            ));
        }
    }
    if let Some(a) = &new.active {
        let same = old
            .active
            .as_ref()
            .is_some_and(|o| Arc::ptr_eq(&o.failed_essays, &a.failed_essays));
        if !same {
            out.push((fields::FAILED.to_owned(), json(&*a.failed_essays)));
        }
    }
    out
}

/// Decoded states this process read or committed last, by batch, with the version and the
/// small state's text they were decoded from: a transition starts from the decoded copy
/// instead of parsing the per-essay fields again. Bounded by entries and by essay references.
/// Shared by the clones of a [`Core`]; start with `DecodedStates::default()`.
#[derive(Debug, Clone, Default)]
pub struct DecodedStates(Arc<parking_lot::Mutex<Decoded>>);

#[derive(Debug)]
struct Decoded {
    copies: huleedu_store::Recent<DecodedEntry>,
    /// Large states that ended their work, oldest first: (batch, version, since).
    idle_large: VecDeque<(String, u64, Instant)>,
}

#[derive(Debug)]
struct DecodedEntry {
    version: u64,
    small: Arc<str>,
    state: BatchState,
}

/// Most decoded states kept, and their total weight (essay references, about 150 bytes each).
/// Kept while the batch expects work ([`BatchState::expects_work`]: a pipeline runs or waits,
/// or none has run yet) — its next transition is coming: parsing small states on every
/// transition was 6–8 % of the orchestrator's CPU under load, and a large state is megabytes.
/// An idle small state's copy is let go at once (thousands of them held ~40 MiB for nothing);
/// an idle large one after [`IDLE_LARGE_GRACE`], with the store's text of it (they kept the
/// orchestrator's RSS near 100 MiB for a minute after large batches; docs/performance.md).
const DECODED_ENTRIES: usize = 4096;
/// Essay references from which a state is large.
const DECODED_LARGE: usize = 256;
const DECODED_WEIGHT: usize = 400_000;
/// A decoded copy older than this is decoded again (as the store's copies).
const DECODED_MAX_AGE: Duration = Duration::from_secs(60);
/// How long a large state's copies outlive the end of its work: a follow-up request that comes
/// right away (a client that runs its pipelines one after another) does not read and parse
/// megabytes again; after that the memory is let go.
pub const IDLE_LARGE_GRACE: Duration = Duration::from_secs(10);

fn weight_of(s: &BatchState) -> usize {
    1 + s.batch.as_ref().map_or(0, |b| b.essays.len())
        + s.phase_results
            .values()
            .map(|r| r.succeeded.len() + r.failed.len())
            .sum::<usize>()
        + s.active.as_ref().map_or(0, |a| a.failed_essays.len())
}

impl Default for Decoded {
    fn default() -> Self {
        Self {
            copies: huleedu_store::Recent::new(DECODED_ENTRIES, DECODED_WEIGHT, DECODED_MAX_AGE),
            idle_large: VecDeque::new(),
        }
    }
}

impl Decoded {
    fn get(&mut self, batch_id: &str, v: &Versioned) -> Option<BatchState> {
        let e = self.copies.get(batch_id)?;
        let small = v.fields.get(fields::STATE)?;
        (e.version == v.version && e.small == *small).then(|| e.state.clone())
    }

    /// Keep `state` as the decoded copy of `batch_id` at `version` (`now`) unless it is small
    /// and idle; a large idle one is let go by [`Decoded::sweep`] after [`IDLE_LARGE_GRACE`].
    fn put(
        &mut self,
        batch_id: &str,
        version: u64,
        small: Arc<str>,
        state: &BatchState,
        now: Instant,
    ) {
        let weight = weight_of(state);
        if !state.expects_work() {
            if weight < DECODED_LARGE {
                self.copies.remove(batch_id);
                return;
            }
            if self.idle_large.len() >= DECODED_ENTRIES {
                self.idle_large.pop_front();
            }
            self.idle_large
                .push_back((batch_id.to_owned(), version, now));
        }
        let entry = DecodedEntry {
            version,
            small,
            state: state.clone(),
        };
        self.copies.put(batch_id, entry, weight);
    }

    /// Let go of the large states idle since [`IDLE_LARGE_GRACE`] before `now` (unless their
    /// copy has changed since: the batch has work again). Returns their batch ids, whose text
    /// the store need not keep either.
    fn sweep(&mut self, now: Instant) -> Vec<String> {
        let mut gone = Vec::new();
        while let Some((_, _, at)) = self.idle_large.front() {
            if now.duration_since(*at) < IDLE_LARGE_GRACE {
                break;
            }
            let (batch_id, version, _) = self.idle_large.pop_front().expect("front");
            if self
                .copies
                .peek(&batch_id)
                .is_some_and(|e| e.version == version)
            {
                self.copies.remove(&batch_id);
                gone.push(batch_id);
            }
        }
        gone
    }
}

impl Core {
    /// Read a batch's state (default when unknown) and its version.
    pub async fn load(&self, batch_id: &str) -> Result<(BatchState, u64), CoreError> {
        let v = self.store.load(batch_id).await?;
        Ok((self.decode(batch_id, &v)?, v.version))
    }

    /// The decoded state of `v`: this process's decoded copy when it has that version, else
    /// parsed from the fields (and kept).
    fn decode(&self, batch_id: &str, v: &Versioned) -> Result<BatchState, CoreError> {
        if let Some(state) = self.decoded.0.lock().get(batch_id, v) {
            return Ok(state);
        }
        let state = parse_state(batch_id, v)?;
        if let Some(small) = v.fields.get(fields::STATE) {
            self.keep(batch_id, v.version, small.clone(), &state);
        }
        Ok(state)
    }

    /// Keep the decoded copy of a state just read or committed (or let it go, with the store's
    /// text of a large idle state).
    fn keep(&self, batch_id: &str, version: u64, small: Arc<str>, state: &BatchState) {
        let now = Instant::now();
        let gone = {
            let mut decoded = self.decoded.0.lock();
            decoded.put(batch_id, version, small, state, now);
            decoded.sweep(now)
        };
        for batch_id in gone {
            self.store.forget(&batch_id);
        }
    }

    /// This process's recent copy of a batch's state, if it has one (never a read). A guess:
    /// every commit checks the version.
    pub fn recent_copy(&self, batch_id: &str) -> Option<BatchState> {
        let v = self.store.cached(batch_id)?;
        self.decode(batch_id, &v).ok()
    }

    /// Like [`Core::load`], but from this process's recent copy when it has one (no round trip).
    /// For deciding what to try next (the scheduler); every commit checks the version.
    pub async fn load_recent(&self, batch_id: &str) -> Result<(BatchState, u64), CoreError> {
        match self.store.cached(batch_id) {
            Some(v) => Ok((self.decode(batch_id, &v)?, v.version)),
            None => self.load(batch_id).await,
        }
    }

    /// Load → decide → commit, deciding again on a version conflict. `dedup` is the id of the
    /// event being handled: committed with the change, so a redelivery is a `Duplicate`.
    ///
    /// Round trips: one (the commit) when this process holds the batch's current state (it
    /// committed or read it last); otherwise one more to read the state together with the
    /// dedup check. A stale copy only costs a version conflict and a fresh read; a decision
    /// that changes nothing is trusted only when made on freshly read state.
    pub async fn commit<F>(
        &self,
        batch_id: &str,
        dedup: Option<Uuid>,
        decide: F,
    ) -> Result<Committed, CoreError>
    where
        F: Fn(&BatchState, Timestamp) -> Decision,
    {
        self.commit_with(batch_id, dedup, false, decide).await
    }

    /// [`Core::commit`] for an event that usually comes first for its batch (it becoming
    /// known): without a copy of the state in this process, the first decision is made on the
    /// unknown batch instead of a read ([`huleedu_store::Store::commit_likely_new`]) — one
    /// round trip for a new batch, one more than [`Core::commit`] when the guess is wrong.
    pub async fn commit_likely_new<F>(
        &self,
        batch_id: &str,
        dedup: Option<Uuid>,
        decide: F,
    ) -> Result<Committed, CoreError>
    where
        F: Fn(&BatchState, Timestamp) -> Decision,
    {
        self.commit_with(batch_id, dedup, true, decide).await
    }

    async fn commit_with<F>(
        &self,
        batch_id: &str,
        dedup: Option<Uuid>,
        likely_new: bool,
        decide: F,
    ) -> Result<Committed, CoreError>
    where
        F: Fn(&BatchState, Timestamp) -> Decision,
    {
        let dedup_id = dedup.map(|d| d.to_string());
        let dedup = dedup_id.as_deref().map(|id| (id, self.dedup_ttl));
        let decide = |current: &Versioned| {
            let state = self
                .decode(batch_id, current)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let now = Timestamp::now();
            let mut d = decide(&state, now);
            Ok(if d.changed {
                // Moved into the outbox, not copied: a large batch's command is a megabyte.
                // The decision's notes and state are what is used after the commit.
                let events = std::mem::take(&mut d.events);
                let change = self.change(batch_id, &state, &d, events, now);
                let small: Arc<str> = change.set_fields[0].1.as_str().into();
                Decided::Write(change, (d, Some(small)))
            } else {
                Decided::Nothing((d, None))
            })
        };
        let outcome = if likely_new {
            self.store
                .commit_likely_new(batch_id, dedup, decide)
                .await?
        } else {
            self.store.commit(batch_id, dedup, decide).await?
        };
        match outcome {
            huleedu_store::Committed::Applied {
                version,
                decided: (d, small),
            } => {
                if let Some(small) = small {
                    self.keep(batch_id, version, small, &d.state);
                }
                if d.state.needs_start() {
                    self.wake_scheduler.notify_one();
                }
                self.metrics.observe(&d.notes);
                self.metrics.queue_length(d.state.queue.len());
                Ok(Committed::Done {
                    notes: d.notes,
                    changed: true,
                })
            }
            huleedu_store::Committed::Unchanged((d, _)) => {
                self.metrics.observe(&d.notes);
                Ok(Committed::Done {
                    notes: d.notes,
                    changed: false,
                })
            }
            huleedu_store::Committed::AlreadyApplied => Ok(Committed::Duplicate),
            huleedu_store::Committed::Contended { .. } => {
                Err(CoreError::Contention(batch_id.to_owned()))
            }
        }
    }

    /// What a decision writes: the changed state fields (the small state first), the deadline
    /// and start indexes, the outgoing events (the decision's, taken out of it).
    fn change(
        &self,
        batch_id: &str,
        old: &BatchState,
        d: &Decision,
        events: Vec<crate::events::Outgoing>,
        now: Timestamp,
    ) -> Change {
        let deadline = match d.state.next_deadline() {
            Some(t) => IndexOp::Upsert {
                index: DEADLINES.into(),
                member: batch_id.into(),
                score: t.0.timestamp_millis() as f64,
            },
            None => IndexOp::Remove {
                index: DEADLINES.into(),
                member: batch_id.into(),
            },
        };
        let start = if d.state.needs_start() {
            IndexOp::Upsert {
                index: STARTS.into(),
                member: batch_id.into(),
                score: now.0.timestamp_millis() as f64,
            }
        } else {
            IndexOp::Remove {
                index: STARTS.into(),
                member: batch_id.into(),
            }
        };
        let recent = IndexOp::Upsert {
            index: BATCHES.into(),
            member: batch_id.into(),
            score: now.0.timestamp_millis() as f64,
        };
        let mut index_ops = vec![deadline, start, recent];
        index_ops.extend(gauge_index_ops(batch_id, old, &d.state));
        Change {
            set_fields: changed_fields(old, &d.state),
            state_ttl: Some(self.state_ttl),
            index_ops,
            outbox: events
                .into_iter()
                .map(|e| OutboxEntry::new(e.topic, batch_id, e.payload))
                .collect(),
        }
    }
}

/// The changes to the gauges' indexes ([`ACTIVE`], [`PHASES`], [`QUEUED`], [`PARKED`]) from
/// `old` to `new`: only what changed (the indexes always match the committed state, as they are
/// written in the same script).
pub fn gauge_index_ops(batch_id: &str, old: &BatchState, new: &BatchState) -> Vec<IndexOp> {
    let ms = |t: Timestamp| t.0.timestamp_millis() as f64;
    let started = |s: &BatchState| s.active.as_ref().map(|a| ms(a.started_at));
    let phase = |s: &BatchState| {
        s.active
            .as_ref()
            .map(|a| ms(a.runs.last().map_or(a.started_at, |r| r.started_at)))
    };
    let waiting = |n: usize| (n > 0).then_some(n as f64);
    let mut ops = Vec::new();
    for (index, before, after) in [
        (ACTIVE, started(old), started(new)),
        (PHASES, phase(old), phase(new)),
        (QUEUED, waiting(old.queue.len()), waiting(new.queue.len())),
        (PARKED, waiting(old.parked.len()), waiting(new.parked.len())),
    ] {
        match (before, after) {
            (b, Some(score)) if b != Some(score) => ops.push(IndexOp::Upsert {
                index: index.into(),
                member: batch_id.into(),
                score,
            }),
            (Some(_), None) => ops.push(IndexOp::Remove {
                index: index.into(),
                member: batch_id.into(),
            }),
            _ => {}
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use huleedu_contracts::phase::PhaseName;
    use huleedu_contracts::status::BatchStatus;

    use super::*;
    use crate::decide::tests::{essays, info, request};
    use crate::decide::{
        on_batch_known, on_outcome, on_request, start_next, OutcomeIn, Resolution,
    };

    const B: &str = "b1";

    /// The stored hash after writing `set` over `v`, as the store merges it.
    fn written(v: &Versioned, set: &[(String, String)]) -> Versioned {
        let mut next = v.clone();
        next.version += 1;
        for (f, s) in set {
            next.fields.insert(f.clone(), s.as_str().into());
        }
        next
    }

    fn names(set: &[(String, String)]) -> Vec<&str> {
        set.iter().map(|(f, _)| f.as_str()).collect()
    }

    #[test]
    fn a_transition_writes_the_small_state_and_only_the_parts_it_changed() {
        let limits = Limits::default();
        let now = Timestamp::now();
        let mut stored = Versioned::default();
        let mut step = |old: &BatchState, new: &BatchState| {
            let set = changed_fields(old, new);
            stored = written(&stored, &set);
            assert_eq!(
                &parse_state(B, &stored).unwrap(),
                new,
                "the fields read back"
            );
            set
        };
        let s0 = BatchState::default();
        let s1 = on_batch_known(&s0, B, info(500), &limits, now).state;
        assert_eq!(names(&step(&s0, &s1)), ["state", "batch"]);

        let req = request("nlp");
        let s2 = on_request(&s1, B, req.clone(), true, &limits, now).state;
        assert_eq!(
            names(&step(&s1, &s2)),
            ["state"],
            "the essays are not rewritten"
        );

        let run = Resolution::Resolved {
            run: vec![PhaseName::Spellcheck, PhaseName::Nlp],
            pruned: vec![],
        };
        let s3 = start_next(&s2, B, run, &limits, now).state;
        assert_eq!(names(&step(&s2, &s3)), ["state", "failed"]);

        let outcome = OutcomeIn {
            phase: PhaseName::Spellcheck,
            status: BatchStatus::CompletedWithFailures,
            processed: essays(499, "spell").into(),
            failed: vec!["e499".into()],
            correlation_id: req.correlation_id,
        };
        let s4 = on_outcome(&s3, B, &outcome, &limits, now).state;
        let set = step(&s3, &s4);
        assert_eq!(names(&set), ["state", "result:spellcheck", "failed"]);
        let small = set[0].1.len();
        assert!(
            small < 2_000,
            "the small state does not grow with the batch: {small} bytes"
        );
    }

    /// The index entries a change writes for the gauges.
    fn ops(old: &BatchState, new: &BatchState) -> Vec<String> {
        gauge_index_ops(B, old, new)
            .into_iter()
            .map(|op| match op {
                IndexOp::Upsert { index, .. } => format!("+{index}"),
                IndexOp::Remove { index, .. } => format!("-{index}"),
            })
            .collect()
    }

    #[test]
    fn the_gauge_indexes_follow_the_running_pipeline_and_the_waiting_requests() {
        let limits = Limits::default();
        let now = Timestamp::now();
        let s0 = BatchState::default();
        let waiting = on_request(&s0, B, request("nlp"), true, &limits, now).state;
        assert_eq!(
            ops(&s0, &waiting),
            ["+parked"],
            "a request before the batch is known"
        );
        let s1 = on_batch_known(&waiting, B, info(3), &limits, now).state;
        assert_eq!(
            ops(&waiting, &s1),
            ["+queued", "-parked"],
            "known: it queues"
        );
        let run = Resolution::Resolved {
            run: vec![PhaseName::Spellcheck, PhaseName::Nlp],
            pruned: vec![],
        };
        let s2 = start_next(&s1, B, run, &limits, now).state;
        assert_eq!(ops(&s1, &s2), ["+active", "+phases", "-queued"]);
        assert_eq!(
            ops(&s2, &s2),
            Vec::<String>::new(),
            "nothing changed, nothing written"
        );
        let later = Timestamp(now.0 + chrono::Duration::seconds(5));
        let outcome = OutcomeIn {
            phase: PhaseName::Spellcheck,
            status: BatchStatus::CompletedSuccessfully,
            processed: essays(3, "spell").into(),
            failed: vec![],
            correlation_id: s2.active.as_ref().unwrap().request.correlation_id,
        };
        let s3 = on_outcome(&s2, B, &outcome, &limits, later).state;
        assert_eq!(
            ops(&s2, &s3),
            ["+phases"],
            "the next phase's dispatch moves the phase entry"
        );
        let mut done = s3.clone();
        done.active = None;
        assert_eq!(ops(&s3, &done), ["-active", "-phases"]);
    }

    #[test]
    fn a_state_written_before_the_split_still_reads() {
        let limits = Limits::default();
        let now = Timestamp::now();
        let s = on_batch_known(&BatchState::default(), B, info(3), &limits, now).state;
        // The old layout: everything in the one state field.
        let mut whole = serde_json::to_value(&s).unwrap();
        whole["batch"] = serde_json::to_value(&**s.batch.as_ref().unwrap()).unwrap();
        let v = Versioned {
            version: 7,
            fields: HashMap::from([(fields::STATE.to_owned(), whole.to_string().into())]),
        };
        assert_eq!(parse_state(B, &v).unwrap(), s);
    }

    /// The state of batch `B` once known with `essays` essays.
    fn known(essays: usize) -> BatchState {
        on_batch_known(
            &BatchState::default(),
            B,
            info(essays),
            &Limits::default(),
            Timestamp::now(),
        )
        .state
    }

    #[test]
    fn a_decoded_copy_serves_only_the_same_version_and_small_state() {
        let mut d = Decoded::default();
        let t0 = Instant::now();
        let s = known(300);
        let set = changed_fields(&BatchState::default(), &s);
        let v = written(&Versioned::default(), &set);
        d.put(B, v.version, v.fields[fields::STATE].clone(), &s, t0);
        assert_eq!(d.get(B, &v), Some(s.clone()));
        let newer = Versioned {
            version: v.version + 1,
            ..v.clone()
        };
        assert_eq!(d.get(B, &newer), None, "another version");
        let mut other = v.clone();
        other
            .fields
            .insert(fields::STATE.to_owned(), "{\"queue\":[]}".into());
        assert_eq!(
            d.get(B, &other),
            None,
            "another small state at that version"
        );
        assert_eq!(d.get("b2", &v), None);
        assert!(d.sweep(t0 + IDLE_LARGE_GRACE).is_empty(), "nothing idle");
        let small = known(3);
        assert!(small.expects_work(), "known, no pipeline yet");
        d.put("b3", 1, "{}".into(), &idle(small.clone()), t0);
        assert!(
            d.copies.peek("b3").is_none(),
            "a small idle state is parsed, not kept"
        );
        let limits = Limits::default();
        let running = on_request(
            &small,
            "b3",
            request("nlp"),
            true,
            &limits,
            Timestamp::now(),
        )
        .state;
        assert!(running.active.is_some() || !running.queue.is_empty());
        d.put("b3", 2, "{}".into(), &running, t0);
        let v3 = Versioned {
            version: 2,
            fields: HashMap::from([(fields::STATE.to_owned(), "{}".into())]),
        };
        assert_eq!(
            d.get("b3", &v3),
            Some(running),
            "kept while a pipeline runs"
        );
    }

    /// A pipeline has run on `s`, none runs or waits.
    fn idle(mut s: BatchState) -> BatchState {
        s.last_pipeline_id = Some(Uuid::new_v4());
        assert!(!s.expects_work());
        s
    }

    #[test]
    fn a_large_idle_state_is_let_go_after_its_grace_unless_it_has_work_again() {
        let mut d = Decoded::default();
        let t0 = Instant::now();
        let large = idle(known(300));
        d.put(B, 2, "{}".into(), &large, t0);
        d.put("b2", 2, "{}".into(), &large, t0);
        let v = Versioned {
            version: 2,
            fields: HashMap::from([(fields::STATE.to_owned(), "{}".into())]),
        };
        let almost = t0 + IDLE_LARGE_GRACE - Duration::from_millis(1);
        assert!(d.sweep(almost).is_empty());
        assert_eq!(
            d.get(B, &v),
            Some(large.clone()),
            "a request right after the end"
        );
        // b2 has work again (a newer version): its copy stays.
        d.put("b2", 3, "{}".into(), &known(300), almost);
        assert_eq!(d.sweep(t0 + IDLE_LARGE_GRACE), vec![B.to_owned()]);
        assert!(d.copies.peek(B).is_none(), "let go after the grace");
        assert_eq!(d.copies.peek("b2").map(|e| e.version), Some(3));
        assert!(d.sweep(t0 + 10 * IDLE_LARGE_GRACE).is_empty());
    }

    #[test]
    fn decoded_copies_stay_within_their_weight() {
        let mut d = Decoded::default();
        let s = known(20_000);
        let now = Instant::now();
        for i in 0..40 {
            d.put(&format!("b{i}"), 1, "{}".into(), &s, now);
            assert!(d.copies.weight() <= DECODED_WEIGHT, "{}", d.copies.weight());
        }
        assert!(d.copies.len() < 40, "older copies let go");
        let huge = known(DECODED_WEIGHT / 3);
        d.put("huge", 1, "{}".into(), &huge, now);
        assert!(d.copies.peek("huge").is_none(), "too heavy to keep");
    }
}
