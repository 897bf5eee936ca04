//! In-memory state shared by the worker and the HTTP API: dispatch counts per (batch, phase)
//! and per-batch overrides. Nothing here survives a restart (this is a dev/test tool). The
//! counts are kept for the [`MAX_TRACKED_BATCHES`] most recently seen batches, so memory stays
//! bounded however long the worker runs.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use huleedu_contracts::PhaseName;
use parking_lot::Mutex;
use serde::Serialize;
use uuid::Uuid;

use crate::decide::BatchOverrides;

/// How often one (batch, phase) reached this worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PhaseCount {
    /// Distinct command `event_id`s received: how many times the phase was dispatched.
    pub dispatched: u64,
    /// Every delivery of a decodable command, redeliveries of the same event included.
    pub deliveries: u64,
}

#[derive(Debug, Default)]
struct Tally {
    event_ids: HashSet<Uuid>,
    deliveries: u64,
    /// Command event ids answered (or silenced) already.
    answered: HashSet<Uuid>,
}

/// Batches whose counts (and answered commands) are kept by default (`SIM_TRACKED_BATCHES`);
/// beyond this the batch seen longest ago is forgotten (its counts read as zeros, a redelivery
/// of its command is answered again).
pub const MAX_TRACKED_BATCHES: usize = 10_000;

#[derive(Debug)]
struct Table {
    by_batch: BTreeMap<String, BTreeMap<PhaseName, Tally>>,
    /// Batches in the order first seen (oldest first).
    order: VecDeque<String>,
    max: usize,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            by_batch: BTreeMap::new(),
            order: VecDeque::new(),
            max: MAX_TRACKED_BATCHES,
        }
    }
}

impl Table {
    fn tally(&mut self, batch_id: &str, phase: PhaseName) -> &mut Tally {
        if !self.by_batch.contains_key(batch_id) {
            self.order.push_back(batch_id.to_owned());
            while self.order.len() > self.max {
                if let Some(old) = self.order.pop_front() {
                    self.by_batch.remove(&old);
                }
            }
        }
        self.by_batch
            .entry(batch_id.to_owned())
            .or_default()
            .entry(phase)
            .or_default()
    }
}

/// Dispatch counts; a cheap-to-clone handle to one shared table.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    inner: Arc<Mutex<Table>>,
}

impl Counts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts that keep at most `max` batches (`SIM_TRACKED_BATCHES`).
    pub fn with_max_batches(max: usize) -> Self {
        let counts = Self::default();
        counts.inner.lock().max = max.max(1);
        counts
    }

    /// Records one delivery of command `event_id` for (batch, phase). True when the event id is
    /// new for that pair (a dispatch), false for a redelivery.
    pub fn record(&self, batch_id: &str, phase: PhaseName, event_id: Uuid) -> bool {
        let mut table = self.inner.lock();
        let tally = table.tally(batch_id, phase);
        tally.deliveries += 1;
        tally.event_ids.insert(event_id)
    }

    /// Was command `event_id` of (batch, phase) answered (or silenced) already?
    pub fn is_answered(&self, batch_id: &str, phase: PhaseName, event_id: Uuid) -> bool {
        self.inner
            .lock()
            .by_batch
            .get(batch_id)
            .and_then(|phases| phases.get(&phase))
            .is_some_and(|t| t.answered.contains(&event_id))
    }

    /// Remember that command `event_id` of (batch, phase) was answered (or silenced).
    pub fn mark_answered(&self, batch_id: &str, phase: PhaseName, event_id: Uuid) {
        self.inner
            .lock()
            .tally(batch_id, phase)
            .answered
            .insert(event_id);
    }

    /// The count of one (batch, phase); zeros when never seen.
    pub fn get(&self, batch_id: &str, phase: PhaseName) -> PhaseCount {
        self.batch(batch_id)
            .get(&phase)
            .copied()
            .unwrap_or_default()
    }

    /// The counts of one batch, by phase; empty for an unknown batch.
    pub fn batch(&self, batch_id: &str) -> BTreeMap<PhaseName, PhaseCount> {
        self.inner
            .lock()
            .by_batch
            .get(batch_id)
            .map(summarize)
            .unwrap_or_default()
    }

    /// Every batch's counts.
    pub fn all(&self) -> BTreeMap<String, BTreeMap<PhaseName, PhaseCount>> {
        self.inner
            .lock()
            .by_batch
            .iter()
            .map(|(batch, phases)| (batch.clone(), summarize(phases)))
            .collect()
    }
}

fn summarize(phases: &BTreeMap<PhaseName, Tally>) -> BTreeMap<PhaseName, PhaseCount> {
    phases
        .iter()
        .map(|(phase, t)| {
            (
                *phase,
                PhaseCount {
                    dispatched: t.event_ids.len() as u64,
                    deliveries: t.deliveries,
                },
            )
        })
        .collect()
}

/// Per-batch overrides registered over HTTP; a cheap-to-clone handle to one shared table.
#[derive(Debug, Clone, Default)]
pub struct OverrideStore {
    inner: Arc<Mutex<HashMap<String, BatchOverrides>>>,
}

impl OverrideStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the overrides of `batch_id`.
    pub fn set(&self, batch_id: &str, overrides: BatchOverrides) {
        self.inner.lock().insert(batch_id.to_owned(), overrides);
    }

    /// The overrides of `batch_id`, if any were registered.
    pub fn get(&self, batch_id: &str) -> Option<BatchOverrides> {
        self.inner.lock().get(batch_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatches_are_distinct_event_ids_deliveries_are_all() {
        let counts = Counts::new();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert!(counts.record("b1", PhaseName::Spellcheck, a));
        assert!(!counts.record("b1", PhaseName::Spellcheck, a));
        assert!(counts.record("b1", PhaseName::Spellcheck, b));
        assert!(counts.record("b1", PhaseName::Nlp, a));
        assert_eq!(
            counts.get("b1", PhaseName::Spellcheck),
            PhaseCount {
                dispatched: 2,
                deliveries: 3
            }
        );
        assert_eq!(counts.get("b1", PhaseName::Nlp).dispatched, 1);
        assert_eq!(counts.get("b2", PhaseName::Nlp), PhaseCount::default());
        assert!(counts.batch("b2").is_empty());
        assert_eq!(counts.all().len(), 1);
    }

    #[test]
    fn only_the_most_recent_batches_are_kept() {
        let counts = Counts::with_max_batches(2);
        let id = Uuid::from_u128(1);
        counts.record("b1", PhaseName::Spellcheck, id);
        counts.mark_answered("b1", PhaseName::Spellcheck, id);
        counts.record("b2", PhaseName::Spellcheck, id);
        assert!(counts.is_answered("b1", PhaseName::Spellcheck, id));
        assert!(!counts.is_answered("b2", PhaseName::Spellcheck, id));
        // A known batch seen again does not push anything out.
        counts.record("b1", PhaseName::Nlp, id);
        assert_eq!(counts.all().len(), 2);
        counts.record("b3", PhaseName::Spellcheck, id);
        assert_eq!(
            counts.all().keys().collect::<Vec<_>>(),
            ["b2", "b3"],
            "the batch seen longest ago is forgotten"
        );
        assert!(!counts.is_answered("b1", PhaseName::Spellcheck, id));
        assert_eq!(
            counts.get("b1", PhaseName::Spellcheck),
            PhaseCount::default()
        );
    }

    #[test]
    fn overrides_are_replaced() {
        let store = OverrideStore::new();
        assert!(store.get("b").is_none());
        let mut o = BatchOverrides::default();
        o.silent_phases.insert(PhaseName::Nlp);
        store.set("b", o.clone());
        assert_eq!(store.get("b"), Some(o));
        store.set("b", BatchOverrides::default());
        assert_eq!(store.get("b"), Some(BatchOverrides::default()));
    }
}
