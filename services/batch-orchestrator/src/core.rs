//! Carrying out decisions: load the batch state, run a pure decision, commit it atomically.

use std::sync::Arc;

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

const STATE_FIELD: &str = "state";

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
}

fn parse_state(batch_id: &str, v: &Versioned) -> Result<BatchState, CoreError> {
    match v.fields.get(STATE_FIELD) {
        None => Ok(BatchState::default()),
        Some(json) => serde_json::from_str(json).map_err(|e| CoreError::CorruptState {
            batch_id: batch_id.to_owned(),
            reason: e.to_string(),
        }),
    }
}

impl Core {
    /// Read a batch's state (default when unknown) and its version.
    pub async fn load(&self, batch_id: &str) -> Result<(BatchState, u64), CoreError> {
        let v = self.store.load(batch_id).await?;
        Ok((parse_state(batch_id, &v)?, v.version))
    }

    /// Like [`Core::load`], but from this process's recent copy when it has one (no round trip).
    /// For deciding what to try next (the scheduler); every commit checks the version.
    pub async fn load_recent(&self, batch_id: &str) -> Result<(BatchState, u64), CoreError> {
        match self.store.cached(batch_id) {
            Some(v) => Ok((parse_state(batch_id, &v)?, v.version)),
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
        let dedup_id = dedup.map(|d| d.to_string());
        let outcome = self
            .store
            .commit(
                batch_id,
                dedup_id.as_deref().map(|id| (id, self.dedup_ttl)),
                |current| {
                    let state = parse_state(batch_id, current)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    let now = Timestamp::now();
                    let d = decide(&state, now);
                    Ok(if d.changed {
                        Decided::Write(self.change(batch_id, &d, now), d)
                    } else {
                        Decided::Nothing(d)
                    })
                },
            )
            .await?;
        match outcome {
            huleedu_store::Committed::Applied { decided: d, .. } => {
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
            huleedu_store::Committed::Unchanged(d) => {
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

    /// What a decision writes: the state, the deadline and start indexes, the outgoing events.
    fn change(&self, batch_id: &str, d: &Decision, now: Timestamp) -> Change {
        let state_json = serde_json::to_string(&d.state).expect("state serializes");
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
        Change {
            set_fields: vec![(STATE_FIELD.to_owned(), state_json)],
            state_ttl: Some(self.state_ttl),
            index_ops: vec![deadline, start],
            outbox: d
                .events
                .iter()
                .map(|e| OutboxEntry::new(e.topic, batch_id, e.payload.clone()))
                .collect(),
        }
    }
}
