//! Work that no consumed event triggers directly, driven by two durable Redis indexes:
//!
//! - `starts`: batches whose queue head can start. The scheduler asks the conductor to resolve
//!   it (with `after_pipeline_id`, so it waits for the conductor to have seen the last
//!   terminal event) and commits the start. Conductor errors and lag leave the entry in place:
//!   it is retried, never dropped — after a backoff with jitter that grows with each failure of
//!   that batch and is never shorter than the conductor's `Retry-After` ([`Deferrals`]).
//! - `deadlines`: batches with a phase deadline or a parked request's give-up time; due ones
//!   get a tick (phase time-out, `batch_not_ready`).
//!
//! Both indexes are committed with the state, so they survive restarts; any replica's
//! scheduler may pick an entry up (the version check makes double work harmless).
//!
//! The indexes are swept every [`SWEEP`]. Between sweeps, a start this process's own commits
//! made possible is taken at once from the store's in-process feed of `starts` upserts (no
//! index scan). Each batch's work runs as its own task (at most [`CONCURRENCY`] at a time, one
//! per batch and kind), so a start waiting for the conductor never holds up the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use huleedu_contracts::timestamp::Timestamp;
use huleedu_service::backoff::Backoff;
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::conductor::{Conductor, ConductorError};
use crate::core::{Core, CoreError, BATCHES, DEADLINES, STARTS};
use crate::decide;

/// How often the indexes are swept (due deadlines; starts this process was not told about or
/// that were deferred). Starts made possible by this process's own commits begin at once.
const SWEEP: Duration = Duration::from_secs(1);
/// Batches handled at once.
const CONCURRENCY: usize = 32;
/// Entries taken from each bucket per round.
const PER_ROUND: usize = 256;
/// How often the batch list drops the entries of expired states.
const TRIM: Duration = Duration::from_secs(60);

/// The backoff of a batch whose start failed.
const START_BACKOFF: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));

#[derive(Debug, Clone)]
pub struct Scheduler {
    pub core: Core,
    pub conductor: Conductor,
    deferred: Arc<Mutex<Deferrals>>,
}

/// Batches whose start failed, and when they may be tried again.
#[derive(Debug, Default)]
pub struct Deferrals {
    until: HashMap<String, (Instant, u32)>,
}

impl Deferrals {
    /// A start of `batch_id` failed at `now`; `floor` is the shortest wait asked for (the
    /// conductor's `Retry-After`). Returns the wait chosen.
    pub fn failed(&mut self, batch_id: &str, now: Instant, floor: Duration) -> Duration {
        let attempts = self.until.get(batch_id).map_or(0, |(_, n)| *n) + 1;
        let wait = START_BACKOFF.delay_at_least(attempts, floor);
        self.until
            .insert(batch_id.to_owned(), (now + wait, attempts));
        wait
    }

    /// A start of `batch_id` succeeded (or had nothing to do): no more waiting.
    pub fn succeeded(&mut self, batch_id: &str) {
        self.until.remove(batch_id);
    }

    /// May `batch_id` be tried at `now`?
    pub fn ready(&self, batch_id: &str, now: Instant) -> bool {
        self.until.get(batch_id).is_none_or(|(t, _)| *t <= now)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Job {
    Tick,
    /// Start the queue head. `verify`: found by a sweep, so check on freshly read state before
    /// concluding there is nothing to start (this process's copy may be stale); a start fed by
    /// this process's own commit trusts its copy (a sweep catches anything missed).
    Start {
        verify: bool,
    },
}

/// Batch work in flight: one task per (job, batch); a request for a running one is remembered
/// and run again when it finishes.
struct Jobs {
    running: Arc<Mutex<HashMap<(Job, String), bool>>>,
    slots: Arc<Semaphore>,
    tasks: JoinSet<()>,
}

impl Jobs {
    fn new() -> Self {
        Self {
            running: Arc::default(),
            slots: Arc::new(Semaphore::new(CONCURRENCY)),
            tasks: JoinSet::new(),
        }
    }

    fn dispatch(&mut self, scheduler: &Scheduler, job: Job, batch_id: String) {
        {
            let mut running = self.running.lock();
            if let Some(again) = running.get_mut(&(job, batch_id.clone())) {
                *again = true;
                return;
            }
            running.insert((job, batch_id.clone()), false);
        }
        let scheduler = scheduler.clone();
        let running = self.running.clone();
        let slots = self.slots.clone();
        self.tasks.spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            loop {
                scheduler.run_job(job, &batch_id).await;
                let mut r = running.lock();
                match r.get_mut(&(job, batch_id.clone())) {
                    Some(again) if *again => *again = false,
                    _ => {
                        r.remove(&(job, batch_id.clone()));
                        return;
                    }
                }
            }
        });
        while self.tasks.try_join_next().is_some() {}
    }
}

impl Scheduler {
    pub fn new(core: Core, conductor: Conductor) -> Self {
        Self {
            core,
            conductor,
            deferred: Arc::default(),
        }
    }

    fn ready(&self, batch_id: &str) -> bool {
        self.deferred.lock().ready(batch_id, Instant::now())
    }

    pub async fn run(self, shutdown: CancellationToken) {
        self.core.store.watch_index(STARTS);
        let wake = self.core.wake_scheduler.clone();
        let mut jobs = Jobs::new();
        let mut next_sweep = tokio::time::Instant::now();
        let mut next_trim = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_trim {
                next_trim = tokio::time::Instant::now() + TRIM;
                self.trim_batch_index().await;
            }
            if tokio::time::Instant::now() >= next_sweep {
                next_sweep = tokio::time::Instant::now() + SWEEP;
                match self.due().await {
                    Ok((deadlines, starts)) => {
                        for batch_id in deadlines {
                            jobs.dispatch(&self, Job::Tick, batch_id);
                        }
                        for batch_id in starts.into_iter().filter(|b| self.ready(b)) {
                            jobs.dispatch(&self, Job::Start { verify: true }, batch_id);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "scheduler sweep failed; retrying"),
                }
            }
            for batch_id in self.core.store.take_index_feed(STARTS) {
                if self.ready(&batch_id) {
                    jobs.dispatch(&self, Job::Start { verify: false }, batch_id);
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep_until(next_sweep) => {}
            }
        }
        // Work not done yet stays in the durable indexes for the next start.
        jobs.tasks.shutdown().await;
        tracing::info!("scheduler stopped");
    }

    /// Drop the batch-list entries (`GET /v1/batches`) of states that have expired: a state
    /// lives `state_ttl` after its last change, the entry's score.
    async fn trim_batch_index(&self) {
        let ttl_ms = self.core.state_ttl.as_millis() as f64;
        let below = Timestamp::now().0.timestamp_millis() as f64 - ttl_ms;
        match self.core.store.index_trim(BATCHES, below).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "expired batches left the batch list"),
            Err(e) => tracing::warn!(error = %e, "trimming the batch list failed; retrying later"),
        }
    }

    /// Batches with a due deadline, and batches whose queue head can start.
    async fn due(&self) -> Result<(Vec<String>, Vec<String>), CoreError> {
        let now_ms = Timestamp::now().0.timestamp_millis() as f64;
        let deadlines = self
            .core
            .store
            .index_members_due(DEADLINES, now_ms, PER_ROUND)
            .await?;
        let starts = self
            .core
            .store
            .index_members_due(STARTS, f64::INFINITY, PER_ROUND)
            .await?;
        Ok((
            deadlines.into_iter().map(|(b, _)| b).collect(),
            starts.into_iter().map(|(b, _)| b).collect(),
        ))
    }

    async fn run_job(&self, job: Job, batch_id: &str) {
        match job {
            Job::Tick => {
                if let Err(e) = self.tick(batch_id).await {
                    tracing::warn!(batch_id, error = %e, "deadline handling failed; will retry");
                }
            }
            Job::Start { verify } => {
                let result = self.start(batch_id, verify).await;
                let mut deferred = self.deferred.lock();
                match result {
                    Ok(()) => deferred.succeeded(batch_id),
                    Err(e) => {
                        let floor = match &e {
                            StartError::Conductor(ConductorError::Lagging {
                                retry_after, ..
                            }) => *retry_after,
                            _ => Duration::ZERO,
                        };
                        let wait = deferred.failed(batch_id, Instant::now(), floor);
                        tracing::info!(batch_id, error = %e, retry_in_ms = wait.as_millis() as u64,
                            "pipeline start deferred; will retry");
                    }
                }
            }
        }
    }

    async fn tick(&self, batch_id: &str) -> Result<(), CoreError> {
        let (_, version) = self.core.load_recent(batch_id).await?;
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

    async fn start(&self, batch_id: &str, verify: bool) -> Result<(), StartError> {
        let (mut state, mut version) = self.core.load_recent(batch_id).await?;
        if verify && !state.needs_start() {
            // Doing nothing is decided on freshly read state only (the copy may be stale).
            (state, version) = self.core.load(batch_id).await?;
        }
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
        let resolution = match decide::own_resolution(head) {
            Some(own) => own,
            None => self
                .conductor
                .resolve(
                    batch_id,
                    &head.requested_pipeline,
                    head.correlation_id,
                    after,
                    head.trace.as_ref(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// On tokio's paused clock: time moves only when the test says so.
    #[tokio::test(start_paused = true)]
    async fn a_failed_start_waits_at_least_the_retry_after_and_longer_each_time() {
        let mut d = Deferrals::default();
        assert!(d.ready("b", Instant::now()));

        // The conductor asked for 3 s (longer than the first backoff): at least that.
        let wait = d.failed("b", Instant::now(), Duration::from_secs(3));
        assert!(wait >= Duration::from_secs(3), "{wait:?}");
        tokio::time::advance(wait - Duration::from_millis(1)).await;
        assert!(!d.ready("b", Instant::now()), "not before the wait is over");
        assert!(
            d.ready("other", Instant::now()),
            "other batches are not held up"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(d.ready("b", Instant::now()));

        // Without a Retry-After the waits grow with each failure, up to the cap (with jitter:
        // between half the ceiling and the ceiling).
        let waits: Vec<Duration> = (0..8)
            .map(|_| d.failed("b", Instant::now(), Duration::ZERO))
            .collect();
        // Failures 2, 3, 4 of this batch: ceilings 0.5 s, 1 s, 2 s.
        assert!(waits[0] <= Duration::from_millis(500), "{waits:?}");
        assert!(
            (Duration::from_secs(1)..=Duration::from_secs(2)).contains(&waits[2]),
            "{waits:?}"
        );
        assert!(waits[7] >= Duration::from_secs(5), "{waits:?}");
        assert!(
            waits.iter().all(|w| *w <= Duration::from_secs(10)),
            "{waits:?}"
        );

        d.succeeded("b");
        assert!(d.ready("b", Instant::now()));
        assert!(d.failed("b", Instant::now(), Duration::ZERO) <= Duration::from_millis(250));
    }
}
