//! Operator marks committed: the pure decision ([`decide_operator_mark`]) through the store's
//! one commit path. The HTTP handler (`api.rs`) only parses the request and words the answer.

use std::time::Duration;

use huleedu_contracts::phase::PhaseName;
use huleedu_contracts::timestamp::Timestamp;
use huleedu_store::{Change, Committed, Decided, Store, StoreError};

use crate::state::{decide_operator_mark, phase_field, BatchPhases, MarkDecision, PhaseRecord};

/// A validated operator mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorMark {
    pub batch_id: String,
    pub phase: PhaseName,
    /// `true` records `completed`, `false` records `failed`.
    pub success: bool,
    pub reason: Option<String>,
    pub operator: Option<String>,
}

/// What became of a mark.
#[derive(Debug, Clone, PartialEq)]
pub enum MarkOutcome {
    /// Written: the record now stored.
    Recorded(PhaseRecord),
    /// Nothing written: the phase has a newer record (clock skew between replicas).
    KeptNewer(PhaseRecord),
    /// The batch's state kept changing; try again.
    Contended,
}

/// Record `mark` made at `now` (the batch's records live `state_ttl` after the write).
pub async fn record_mark(
    store: &Store,
    mark: &OperatorMark,
    state_ttl: Duration,
    now: Timestamp,
) -> Result<MarkOutcome, StoreError> {
    let outcome = store
        .commit(&mark.batch_id, None, |current| {
            let phases = BatchPhases::from_fields(&current.fields);
            let decision = decide_operator_mark(
                &phases,
                mark.phase,
                mark.success,
                mark.operator.clone(),
                mark.reason.clone(),
                now,
            );
            Ok(match decision {
                MarkDecision::Write(record) => {
                    let change = Change {
                        set_fields: vec![(
                            phase_field(mark.phase),
                            serde_json::to_string(&record).expect("records serialize"),
                        )],
                        state_ttl: Some(state_ttl),
                        ..Change::default()
                    };
                    Decided::Write(change, record)
                }
                MarkDecision::KeepNewer(newer) => Decided::Nothing(newer),
            })
        })
        .await?;
    Ok(match outcome {
        Committed::Applied { decided, .. } => MarkOutcome::Recorded(decided),
        Committed::Unchanged(newer) => MarkOutcome::KeptNewer(newer),
        // (A mark carries no dedup id, so it is never "already applied".)
        Committed::Contended { .. } | Committed::AlreadyApplied => MarkOutcome::Contended,
    })
}
