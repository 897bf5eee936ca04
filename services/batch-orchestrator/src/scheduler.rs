//! Work that no consumed event triggers directly, driven by two durable Redis indexes:
//!
//! - `starts`: batches whose queue head can start. The scheduler asks the conductor to resolve
//!   it (with `after_pipeline_id`, so it waits for the conductor to have seen the last
//!   terminal event) and commits the start. Conductor errors and lag leave the entry in place:
//!   it is retried on the next round, never dropped.
//! - `deadlines`: batches with a phase deadline or a parked request's give-up time; due ones
//!   get a tick (phase time-out, `batch_not_ready`).
//!
//! Both indexes are committed with the state, so they survive restarts; any replica's
//! scheduler may pick an entry up (the version check makes double work harmless).

use std::time::Duration;

use futures::StreamExt;
use huleedu_contracts::timestamp::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::conductor::{Conductor, ConductorError};
use crate::core::{Core, CoreError, DEADLINES, STARTS};
use crate::decide::{self, Resolution};

/// How often the indexes are swept when nothing wakes the scheduler.
const SWEEP: Duration = Duration::from_millis(200);
/// Batches handled at once.
const CONCURRENCY: usize = 32;
/// Entries taken from each bucket per round.
const PER_ROUND: usize = 256;

#[derive(Debug, Clone)]
pub struct Scheduler {
    pub core: Core,
    pub conductor: Conductor,
}

impl Scheduler {
    pub async fn run(self, shutdown: CancellationToken) {
        let wake = self.core.wake_scheduler.clone();
        loop {
            if let Err(e) = self.round().await {
                tracing::warn!(error = %e, "scheduler round failed; retrying");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(SWEEP) => {}
            }
        }
        tracing::info!("scheduler stopped");
    }

    /// One pass: due deadlines first, then starts.
    pub async fn round(&self) -> Result<(), CoreError> {
        let now_ms = Timestamp::now().0.timestamp_millis() as f64;
        let due = self
            .core
            .store
            .index_members_due(DEADLINES, now_ms, PER_ROUND)
            .await?;
        futures::stream::iter(due)
            .for_each_concurrent(CONCURRENCY, |(batch_id, _)| async move {
                if let Err(e) = self.tick(&batch_id).await {
                    tracing::warn!(batch_id, error = %e, "deadline handling failed; will retry");
                }
            })
            .await;
        let starts = self
            .core
            .store
            .index_members_due(STARTS, f64::INFINITY, PER_ROUND)
            .await?;
        futures::stream::iter(starts)
            .for_each_concurrent(CONCURRENCY, |(batch_id, _)| async move {
                if let Err(e) = self.start(&batch_id).await {
                    tracing::info!(batch_id, error = %e, "pipeline start deferred; will retry");
                }
            })
            .await;
        Ok(())
    }

    async fn tick(&self, batch_id: &str) -> Result<(), CoreError> {
        let (_, version) = self.core.load(batch_id).await?;
        if version == 0 {
            // The state expired; drop the stale entry.
            return Ok(self.core.store.index_remove(batch_id, DEADLINES).await?);
        }
        let limits = self.core.limits;
        let r = self
            .core
            .commit(batch_id, None, |s, now| {
                decide::on_tick(s, batch_id, &limits, now)
            })
            .await?;
        tracing::debug!(batch_id, ?r, "deadline tick");
        Ok(())
    }

    async fn start(&self, batch_id: &str) -> Result<(), StartError> {
        let (state, version) = self.core.load(batch_id).await?;
        if version == 0 {
            return Ok(self
                .core
                .store
                .index_remove(batch_id, STARTS)
                .await
                .map_err(CoreError::from)?);
        }
        let Some(head) = state.queue.front().filter(|_| state.needs_start()) else {
            return Ok(()); // the next commit of this batch refreshes the index
        };
        let after = state.last_pipeline_id;
        let resolution = match &head.retry {
            // An essay-level retry runs exactly its phase: nothing to resolve or prune.
            Some(retry) => Resolution::Resolved {
                run: vec![retry.phase],
                pruned: vec![],
            },
            None => self
                .conductor
                .resolve(
                    batch_id,
                    &head.requested_pipeline,
                    head.correlation_id,
                    after,
                )
                .await
                .inspect_err(|_| self.core.metrics.conductor_error())?,
        };
        let head_id = head.request_id;
        let limits = self.core.limits;
        self.core
            .commit(batch_id, None, |s, now| {
                let same_head = s.queue.front().is_some_and(|h| h.request_id == head_id);
                if same_head && s.last_pipeline_id == after {
                    decide::start_next(s, batch_id, resolution.clone(), &limits, now)
                } else {
                    // Something changed meanwhile: resolve again next round.
                    decide::Decision::nothing(s)
                }
            })
            .await?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error(transparent)]
    Conductor(#[from] ConductorError),
}
