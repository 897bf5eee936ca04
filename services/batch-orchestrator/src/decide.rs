//! The pure core: batch state + input → new state + outgoing events.
//!
//! No I/O here. The adapters (`handler`, `scheduler`) load the state, call one of these
//! functions, and commit the [`Decision`] atomically (state, dedup marker, outbox, indexes).

use std::collections::HashSet;
use std::sync::Arc;

use huleedu_contracts::phase::PhaseName;
use huleedu_contracts::status::BatchStatus;
use huleedu_contracts::timestamp::Timestamp;
use uuid::Uuid;

use crate::essays::essays_for_first_phase;
use crate::events::{self, Outgoing, TerminalFigures};
use crate::model::{
    ActivePipeline, BatchInfo, BatchState, EssayRef, PendingRequest, PhaseResult, PhaseRun,
    PipelineSummary, RunStatus,
};

/// Bounds and time-outs the decisions need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub phase_timeout: chrono::Duration,
    pub pending_batch_timeout: chrono::Duration,
    pub queue_capacity: usize,
    pub history_limit: usize,
    /// Largest command value BOS publishes (`KAFKA_MAX_MESSAGE_BYTES` less the record
    /// overhead): a larger command ends its pipeline `failed_critically` instead.
    pub max_event_bytes: usize,
}

impl Limits {
    /// Default of `PHASE_TIMEOUT_SECS`.
    pub const DEFAULT_PHASE_TIMEOUT_SECS: i64 = 1800;
    /// Default of `PENDING_BATCH_TIMEOUT_SECS`.
    pub const DEFAULT_PENDING_BATCH_TIMEOUT_SECS: i64 = 600;
    /// Default of `QUEUE_CAPACITY`.
    pub const DEFAULT_QUEUE_CAPACITY: usize = 16;
    /// Default of `HISTORY_LIMIT`.
    pub const DEFAULT_HISTORY_LIMIT: usize = 50;
}

/// The limits of a deployment that sets none (the settings' defaults are these constants).
impl Default for Limits {
    fn default() -> Self {
        Self {
            phase_timeout: chrono::Duration::seconds(Self::DEFAULT_PHASE_TIMEOUT_SECS),
            pending_batch_timeout: chrono::Duration::seconds(
                Self::DEFAULT_PENDING_BATCH_TIMEOUT_SECS,
            ),
            queue_capacity: Self::DEFAULT_QUEUE_CAPACITY,
            history_limit: Self::DEFAULT_HISTORY_LIMIT,
            max_event_bytes: huleedu_contracts::topics::DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

/// Something the adapters count or log after the decision is committed.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    Queued,
    Parked,
    PipelineStarted {
        pipeline: String,
    },
    PhaseDispatched {
        phase: PhaseName,
        essays: usize,
    },
    PhaseFinished {
        phase: PhaseName,
        status: RunStatus,
        seconds: f64,
    },
    PipelineFinished {
        pipeline: String,
        status: BatchStatus,
        reason: Option<String>,
    },
    OutcomeIgnored {
        reason: &'static str,
    },
}

/// The result of a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub state: BatchState,
    /// False when nothing changed (nothing to commit but the dedup marker).
    pub changed: bool,
    pub events: Vec<Outgoing>,
    pub notes: Vec<Note>,
}

impl Decision {
    /// Nothing to do.
    pub fn nothing(state: &BatchState) -> Self {
        Self::unchanged(state, None)
    }

    fn unchanged(state: &BatchState, note: Option<Note>) -> Self {
        Self {
            state: state.clone(),
            changed: false,
            events: Vec::new(),
            notes: note.into_iter().collect(),
        }
    }

    fn changed(state: BatchState) -> Self {
        Self {
            state,
            changed: true,
            events: Vec::new(),
            notes: Vec::new(),
        }
    }
}

fn plus(t: Timestamp, d: chrono::Duration) -> Timestamp {
    Timestamp(t.0 + d)
}

fn seconds_between(from: Timestamp, to: Timestamp) -> f64 {
    ((to.0 - from.0).num_microseconds().unwrap_or(0) as f64 / 1e6).max(0.0)
}

/// What the conductor said about a request's pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The conductor does not know the pipeline.
    Unknown { detail: String },
    /// Phases to run (dependency order) and phases pruned as already complete.
    Resolved {
        run: Vec<PhaseName>,
        pruned: Vec<PhaseName>,
    },
}

/// A phase outcome as the core needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeIn {
    pub phase: PhaseName,
    pub status: BatchStatus,
    /// Shared with the phase's recorded result (no copy of a large batch's essays).
    pub processed: Arc<Vec<EssayRef>>,
    pub failed: Vec<String>,
    pub correlation_id: uuid::Uuid,
}

/// Write the terminal event for `request`, add it to the history, remember the pipeline id.
fn finish(
    d: &mut Decision,
    batch_id: &str,
    request: &PendingRequest,
    figures: TerminalFigures,
    runs: Vec<PhaseRun>,
    limits: &Limits,
    now: Timestamp,
) {
    let event = events::pipeline_completed(batch_id, request, &figures, now);
    d.notes.push(Note::PipelineFinished {
        pipeline: request.requested_pipeline.clone(),
        status: figures.final_status,
        reason: figures.failure_reason.clone(),
    });
    let s = &mut d.state;
    s.history.push_back(PipelineSummary {
        pipeline_id: request.correlation_id,
        request_id: request.request_id,
        requested_pipeline: request.requested_pipeline.clone(),
        final_status: figures.final_status,
        completed_phases: figures.completed_phases,
        skipped_phases: figures.skipped_phases,
        successful_essay_count: figures.successful_essay_count,
        failed_essay_count: figures.failed_essay_count,
        processing_duration_seconds: figures.processing_duration_seconds,
        failure_reason: figures.failure_reason,
        received_at: request.received_at,
        finished_at: now,
        runs,
        terminal_event_id: event.event_id,
    });
    while s.history.len() > limits.history_limit.max(1) {
        s.history.pop_front();
    }
    s.last_pipeline_id = Some(request.correlation_id);
    d.events.push(event);
    d.changed = true;
}

/// A request that ends without running anything.
fn reject(
    d: &mut Decision,
    batch_id: &str,
    request: &PendingRequest,
    reason: String,
    limits: &Limits,
    now: Timestamp,
) {
    let figures = TerminalFigures {
        final_status: BatchStatus::FailedCritically,
        completed_phases: vec![],
        skipped_phases: vec![],
        successful_essay_count: 0,
        failed_essay_count: 0,
        processing_duration_seconds: seconds_between(request.received_at, now),
        failure_reason: Some(reason),
    };
    finish(d, batch_id, request, figures, vec![], limits, now);
}

/// The batch became known (or its essay list changed): parked requests join the queue.
pub fn on_batch_known(
    state: &BatchState,
    batch_id: &str,
    info: BatchInfo,
    limits: &Limits,
    now: Timestamp,
) -> Decision {
    let mut s = state.clone();
    s.batch = Some(Arc::new(info));
    let parked = std::mem::take(&mut s.parked);
    let mut d = Decision::changed(s);
    for mut p in parked {
        p.park_deadline = None;
        if d.state.queue.len() >= limits.queue_capacity {
            reject(&mut d, batch_id, &p, "queue_full".into(), limits, now);
        } else {
            d.state.queue.push_back(p);
            d.notes.push(Note::Queued);
        }
    }
    d
}

/// A client request arrived. `pipeline_known` comes from the conductor.
pub fn on_request(
    state: &BatchState,
    batch_id: &str,
    mut request: PendingRequest,
    pipeline_known: bool,
    limits: &Limits,
    now: Timestamp,
) -> Decision {
    let seen = state
        .queue
        .iter()
        .chain(&state.parked)
        .any(|r| r.request_id == request.request_id)
        || state
            .active
            .as_ref()
            .is_some_and(|a| a.request.request_id == request.request_id)
        || state
            .history
            .iter()
            .any(|h| h.request_id == request.request_id);
    if seen {
        return Decision::unchanged(state, None);
    }
    let mut d = Decision::changed(state.clone());
    if !pipeline_known {
        let reason = format!("unknown_pipeline: {}", request.requested_pipeline);
        reject(&mut d, batch_id, &request, reason, limits, now);
    } else if state.batch.is_none() {
        request.park_deadline = Some(plus(now, limits.pending_batch_timeout));
        d.state.parked.push(request);
        d.notes.push(Note::Parked);
    } else if d.state.queue.len() >= limits.queue_capacity {
        reject(&mut d, batch_id, &request, "queue_full".into(), limits, now);
    } else {
        d.state.queue.push_back(request);
        d.notes.push(Note::Queued);
    }
    d
}

/// A request decided as [`on_request`] does and, in the same decision, started with
/// `resolution` when it becomes the head of an idle batch's queue and the batch's last pipeline
/// is still `after` (the one the conductor resolved it after) — one commit instead of two. In
/// any other case (queued behind others, parked, rejected, a pipeline ended meanwhile) it is
/// [`on_request`]'s decision: the scheduler starts the request as usual.
#[allow(clippy::too_many_arguments)]
pub fn on_request_started(
    state: &BatchState,
    batch_id: &str,
    request: PendingRequest,
    pipeline_known: bool,
    after: Option<Uuid>,
    resolution: Resolution,
    limits: &Limits,
    now: Timestamp,
) -> Decision {
    let request_id = request.request_id;
    let mut d = on_request(state, batch_id, request, pipeline_known, limits, now);
    let heads = d
        .state
        .queue
        .front()
        .is_some_and(|h| h.request_id == request_id);
    if !(d.changed && heads && d.state.needs_start() && d.state.last_pipeline_id == after) {
        return d;
    }
    let started = start_next(&d.state, batch_id, resolution, limits, now);
    d.state = started.state;
    d.events.extend(started.events);
    d.notes.extend(started.notes);
    d
}

/// Why an essay-level retry cannot be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryRefused {
    /// `essay_ids` was given, but empty.
    EmptyEssayIds,
    /// No essay was named and the phase's latest run has no failed essay.
    NothingToRetry,
}

/// The essays a retry of `phase` runs: those `named`, or by default the ones that failed the
/// phase's latest run.
pub fn retry_essays(
    state: &BatchState,
    phase: PhaseName,
    named: Option<Vec<String>>,
) -> Result<Vec<String>, RetryRefused> {
    match named {
        Some(ids) if ids.is_empty() => Err(RetryRefused::EmptyEssayIds),
        Some(ids) => Ok(ids),
        None => state
            .phase_results
            .get(&phase)
            .map(|r| r.failed.clone())
            .filter(|failed| !failed.is_empty())
            .ok_or(RetryRefused::NothingToRetry),
    }
}

/// The resolution a request brings itself, if any: an essay-level retry runs exactly its
/// phase — nothing to expand or prune, so the conductor is not asked. `None`: ask it.
pub fn own_resolution(request: &PendingRequest) -> Option<Resolution> {
    request.retry.as_ref().map(|retry| Resolution::Resolved {
        run: vec![retry.phase],
        pruned: vec![],
    })
}

/// Start the request at the head of the queue with the conductor's resolution.
/// Precondition: [`BatchState::needs_start`]; otherwise nothing changes.
pub fn start_next(
    state: &BatchState,
    batch_id: &str,
    resolution: Resolution,
    limits: &Limits,
    now: Timestamp,
) -> Decision {
    if !state.needs_start() {
        return Decision::unchanged(state, None);
    }
    let mut d = Decision::changed(state.clone());
    let request = d.state.queue.pop_front().expect("needs_start");
    let (run, pruned) = match resolution {
        Resolution::Unknown { .. } => {
            let reason = format!("unknown_pipeline: {}", request.requested_pipeline);
            reject(&mut d, batch_id, &request, reason, limits, now);
            return d;
        }
        Resolution::Resolved { run, pruned } => (run, pruned),
    };
    let duration = seconds_between(request.received_at, now);
    let Some(&first) = run.first() else {
        // Everything already done.
        let figures = TerminalFigures {
            final_status: BatchStatus::CompletedSuccessfully,
            completed_phases: vec![],
            skipped_phases: pruned,
            successful_essay_count: 0,
            failed_essay_count: 0,
            processing_duration_seconds: duration,
            failure_reason: None,
        };
        finish(&mut d, batch_id, &request, figures, vec![], limits, now);
        return d;
    };
    let mut essays = essays_for_first_phase(&d.state, first);
    if let Some(retry) = &request.retry {
        let named: HashSet<&str> = retry.essay_ids.iter().map(String::as_str).collect();
        essays.retain(|e| named.contains(e.essay_id.as_str()));
    }
    let info = d.state.batch.clone().expect("needs_start");
    let command = if essays.is_empty() {
        Err(if request.retry.is_some() {
            format!("no_essays_to_retry: {first}")
        } else {
            format!("no_essays_to_process: {first}")
        })
    } else {
        command_for(first, batch_id, &info, &request, &essays, limits, now)
    };
    let essays_in = essays.len();
    let command = match command {
        Ok(c) => c,
        Err(reason) => {
            let figures = TerminalFigures {
                final_status: BatchStatus::FailedCritically,
                completed_phases: vec![],
                skipped_phases: pruned,
                successful_essay_count: 0,
                failed_essay_count: 0,
                processing_duration_seconds: duration,
                failure_reason: Some(reason),
            };
            finish(&mut d, batch_id, &request, figures, vec![], limits, now);
            return d;
        }
    };
    for p in &pruned {
        d.events.push(events::phase_skipped(
            batch_id,
            *p,
            request.correlation_id,
            request.trace.as_ref(),
            now,
        ));
    }
    d.notes.push(Note::PipelineStarted {
        pipeline: request.requested_pipeline.clone(),
    });
    d.notes.push(Note::PhaseDispatched {
        phase: first,
        essays: essays_in,
    });
    d.state.active = Some(ActivePipeline {
        request,
        started_at: now,
        phases: run,
        pruned,
        current: 0,
        deadline: plus(now, limits.phase_timeout),
        runs: vec![PhaseRun {
            phase: first,
            command_id: command.event_id,
            essays_in,
            essays_out: None,
            failed: None,
            status: None,
            started_at: now,
            finished_at: None,
        }],
        failed_essays: Arc::default(),
    });
    d.events.push(command);
    d
}

/// The initiate command of `phase` for `essays`, or why there is none: no worker topic for
/// the phase, or the command would be larger than a message may be.
fn command_for(
    phase: PhaseName,
    batch_id: &str,
    info: &BatchInfo,
    request: &PendingRequest,
    essays: &[&EssayRef],
    limits: &Limits,
    now: Timestamp,
) -> Result<Outgoing, String> {
    let command = events::initiate_command(phase, batch_id, info, request, essays, now)
        .ok_or_else(|| format!("no_worker_for_phase: {phase}"))?;
    if command.payload.len() > limits.max_event_bytes {
        return Err(format!(
            "command_too_large: the {phase} command for {} essays is {} bytes, over the \
             {}-byte limit (KAFKA_MAX_MESSAGE_BYTES less {} bytes of record overhead)",
            essays.len(),
            command.payload.len(),
            limits.max_event_bytes,
            huleedu_contracts::topics::RECORD_OVERHEAD_BYTES,
        ));
    }
    Ok(command)
}

/// How the active pipeline ends.
struct Ending {
    status: BatchStatus,
    /// Essays that succeeded every phase that ran.
    successful: usize,
    /// Failed essays not yet in the active pipeline's failed set (stuck in a timed-out phase).
    extra_failed: usize,
    reason: Option<String>,
}

impl Ending {
    fn failed(reason: String) -> Self {
        Self {
            status: BatchStatus::FailedCritically,
            successful: 0,
            extra_failed: 0,
            reason: Some(reason),
        }
    }
}

/// End the active pipeline with a terminal event.
fn end_active(d: &mut Decision, batch_id: &str, ending: Ending, limits: &Limits, now: Timestamp) {
    let Ending {
        status,
        successful,
        extra_failed,
        reason,
    } = ending;
    let active = d.state.active.take().expect("an active pipeline");
    let completed: Vec<PhaseName> = active
        .runs
        .iter()
        .filter(|r| r.status.is_some_and(RunStatus::completed))
        .map(|r| r.phase)
        .collect();
    let figures = TerminalFigures {
        final_status: status,
        completed_phases: completed,
        skipped_phases: active.pruned.clone(),
        successful_essay_count: successful as i64,
        failed_essay_count: (active.failed_essays.len() + extra_failed) as i64,
        processing_duration_seconds: seconds_between(active.request.received_at, now),
        failure_reason: reason,
    };
    finish(
        d,
        batch_id,
        &active.request,
        figures,
        active.runs,
        limits,
        now,
    );
}

/// A phase outcome arrived.
pub fn on_outcome(
    state: &BatchState,
    batch_id: &str,
    outcome: &OutcomeIn,
    limits: &Limits,
    now: Timestamp,
) -> Decision {
    let Some(active) = &state.active else {
        return Decision::unchanged(
            state,
            Some(Note::OutcomeIgnored {
                reason: "no_active_pipeline",
            }),
        );
    };
    if outcome.phase != active.current_phase() {
        return Decision::unchanged(
            state,
            Some(Note::OutcomeIgnored {
                reason: "not_the_current_phase",
            }),
        );
    }
    if outcome.correlation_id != active.request.correlation_id {
        return Decision::unchanged(
            state,
            Some(Note::OutcomeIgnored {
                reason: "other_pipeline",
            }),
        );
    }
    let status = match outcome.status {
        BatchStatus::CompletedSuccessfully => RunStatus::CompletedSuccessfully,
        BatchStatus::CompletedWithFailures => RunStatus::CompletedWithFailures,
        BatchStatus::FailedCritically => RunStatus::FailedCritically,
        _ => {
            return Decision::unchanged(
                state,
                Some(Note::OutcomeIgnored {
                    reason: "not_a_phase_status",
                }),
            )
        }
    };
    let mut d = Decision::changed(state.clone());
    let a = d.state.active.as_mut().expect("checked above");
    let pipeline_id = a.request.correlation_id;
    let run = a.runs.last_mut().expect("a dispatched run");
    run.essays_out = Some(outcome.processed.len());
    run.failed = Some(outcome.failed.len());
    run.status = Some(status);
    run.finished_at = Some(now);
    let seconds = seconds_between(run.started_at, now);
    if !outcome.failed.is_empty() {
        Arc::make_mut(&mut a.failed_essays).extend(outcome.failed.iter().cloned());
    }
    d.notes.push(Note::PhaseFinished {
        phase: outcome.phase,
        status,
        seconds,
    });
    let is_retry = d
        .state
        .active
        .as_ref()
        .is_some_and(|a| a.request.retry.is_some());
    let previous = d
        .state
        .phase_results
        .get(&outcome.phase)
        .filter(|p| p.status.completed());
    let result = match previous {
        Some(prev) if is_retry => merge_retry(prev, outcome, pipeline_id, now),
        _ => PhaseResult {
            status,
            succeeded: outcome.processed.clone(),
            failed: outcome.failed.clone(),
            pipeline_id,
            at: now,
        },
    };
    d.state
        .phase_results
        .insert(outcome.phase, Arc::new(result));
    if status == RunStatus::FailedCritically {
        let reason = format!("phase_failed: {}", outcome.phase);
        end_active(&mut d, batch_id, Ending::failed(reason), limits, now);
        return d;
    }
    if outcome.processed.is_empty() {
        let reason = format!("no_essays_left: {}", outcome.phase);
        end_active(&mut d, batch_id, Ending::failed(reason), limits, now);
        return d;
    }
    let a = d.state.active.as_ref().expect("still active");
    if a.current + 1 >= a.phases.len() {
        let status = if a.failed_essays.is_empty() {
            BatchStatus::CompletedSuccessfully
        } else {
            BatchStatus::CompletedWithFailures
        };
        let ending = Ending {
            status,
            successful: outcome.processed.len(),
            extra_failed: 0,
            reason: None,
        };
        end_active(&mut d, batch_id, ending, limits, now);
        return d;
    }
    let next = a.phases[a.current + 1];
    let info = d
        .state
        .batch
        .clone()
        .expect("an active pipeline has a batch");
    let essays: Vec<&EssayRef> = outcome.processed.iter().collect();
    let command = match command_for(next, batch_id, &info, &a.request, &essays, limits, now) {
        Ok(c) => c,
        Err(reason) => {
            end_active(&mut d, batch_id, Ending::failed(reason), limits, now);
            return d;
        }
    };
    let a = d.state.active.as_mut().expect("still active");
    a.current += 1;
    a.deadline = plus(now, limits.phase_timeout);
    a.runs.push(PhaseRun {
        phase: next,
        command_id: command.event_id,
        essays_in: outcome.processed.len(),
        essays_out: None,
        failed: None,
        status: None,
        started_at: now,
        finished_at: None,
    });
    d.notes.push(Note::PhaseDispatched {
        phase: next,
        essays: outcome.processed.len(),
    });
    d.events.push(command);
    d
}

/// A retry's outcome merged into the phase's earlier result: new successes join the
/// succeeded essays (replacing an older entry of the same essay), the essays that failed again
/// stay failed, and the status reflects the merged sets.
pub fn merge_retry(
    prev: &PhaseResult,
    outcome: &OutcomeIn,
    pipeline_id: uuid::Uuid,
    now: Timestamp,
) -> PhaseResult {
    let retried: HashSet<&str> = outcome
        .processed
        .iter()
        .map(|n| n.essay_id.as_str())
        .collect();
    let mut succeeded: Vec<EssayRef> = prev
        .succeeded
        .iter()
        .filter(|e| !retried.contains(e.essay_id.as_str()))
        .cloned()
        .collect();
    succeeded.extend(outcome.processed.iter().cloned());
    let mut failed: Vec<String> = prev
        .failed
        .iter()
        .filter(|id| !retried.contains(id.as_str()))
        .cloned()
        .collect();
    let succeeded_ids: HashSet<&str> = succeeded.iter().map(|e| e.essay_id.as_str()).collect();
    let mut known_failed: HashSet<String> = failed.iter().cloned().collect();
    for id in &outcome.failed {
        if !succeeded_ids.contains(id.as_str()) && known_failed.insert(id.clone()) {
            failed.push(id.clone());
        }
    }
    let status = if failed.is_empty() {
        RunStatus::CompletedSuccessfully
    } else {
        RunStatus::CompletedWithFailures
    };
    PhaseResult {
        status,
        succeeded: Arc::new(succeeded),
        failed,
        pipeline_id,
        at: now,
    }
}

/// Time passed: end a timed-out phase, give up on parked requests whose batch never came.
pub fn on_tick(state: &BatchState, batch_id: &str, limits: &Limits, now: Timestamp) -> Decision {
    let mut d = Decision::unchanged(state, None);
    if let Some(a) = d.state.active.as_mut().filter(|a| a.deadline <= now) {
        let phase = a.current_phase();
        let run = a.runs.last_mut().expect("a dispatched run");
        run.status = Some(RunStatus::TimedOut);
        run.finished_at = Some(now);
        // Essays handed to the timed-out phase did not get through it.
        let stuck = run.essays_in;
        let pipeline_id = a.request.correlation_id;
        d.notes.push(Note::PhaseFinished {
            phase,
            status: RunStatus::TimedOut,
            seconds: seconds_between(run.started_at, now),
        });
        d.state.phase_results.insert(
            phase,
            Arc::new(PhaseResult {
                status: RunStatus::TimedOut,
                succeeded: Arc::default(),
                failed: vec![],
                pipeline_id,
                at: now,
            }),
        );
        let reason = format!("phase_timeout: {phase}");
        let ending = Ending {
            extra_failed: stuck,
            ..Ending::failed(reason)
        };
        end_active(&mut d, batch_id, ending, limits, now);
    }
    let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut d.state.parked)
        .into_iter()
        .partition(|p| p.park_deadline.is_some_and(|t| t <= now));
    d.state.parked = waiting;
    for p in expired {
        reject(&mut d, batch_id, &p, "batch_not_ready".into(), limits, now);
    }
    d
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use huleedu_contracts::topics;
    use serde_json::Value;
    use uuid::Uuid;

    const B: &str = "batch-1";

    fn now() -> Timestamp {
        Timestamp::now()
    }

    pub(crate) fn essays(n: usize, text: &str) -> Vec<EssayRef> {
        (0..n)
            .map(|i| EssayRef {
                essay_id: format!("e{i}"),
                text_storage_id: format!("{text}-{i}"),
            })
            .collect()
    }

    pub(crate) fn info(n: usize) -> BatchInfo {
        BatchInfo {
            essays: essays(n, "orig"),
            course_code: "ENG5".into(),
            language: "en".into(),
            class_type: "REGULAR".into(),
            student_prompt_ref: None,
            user_id: None,
            source: "test".into(),
            updated_at: now(),
        }
    }

    pub(crate) fn request(pipeline: &str) -> PendingRequest {
        PendingRequest {
            request_id: Uuid::new_v4(),
            correlation_id: Uuid::new_v4(),
            requested_pipeline: pipeline.into(),
            user_id: "teacher-1".into(),
            prompt: None,
            is_retry: false,
            retry_reason: None,
            received_at: now(),
            park_deadline: None,
            retry: None,
            trace: None,
        }
    }

    fn known(n: usize) -> BatchState {
        on_batch_known(
            &BatchState::default(),
            B,
            info(n),
            &Limits::default(),
            now(),
        )
        .state
    }

    fn data(o: &Outgoing) -> Value {
        serde_json::from_str::<Value>(&o.payload).unwrap()["data"].clone()
    }

    fn terminal(d: &Decision) -> Value {
        let t: Vec<_> = d
            .events
            .iter()
            .filter(|e| e.topic == topics::BATCH_PIPELINE_COMPLETED)
            .collect();
        assert_eq!(t.len(), 1, "exactly one terminal event: {:?}", d.events);
        data(t[0])
    }

    /// Queue `pipeline` on a known batch and start it with the given resolution.
    fn started(
        state: &BatchState,
        pipeline: &str,
        run: &[PhaseName],
        pruned: &[PhaseName],
    ) -> (Decision, PendingRequest) {
        let req = request(pipeline);
        let s = on_request(state, B, req.clone(), true, &Limits::default(), now()).state;
        assert!(s.needs_start());
        let d = start_next(
            &s,
            B,
            Resolution::Resolved {
                run: run.to_vec(),
                pruned: pruned.to_vec(),
            },
            &Limits::default(),
            now(),
        );
        (d, req)
    }

    fn outcome(
        req: &PendingRequest,
        phase: PhaseName,
        status: BatchStatus,
        ok: &[EssayRef],
        failed: &[&str],
    ) -> OutcomeIn {
        OutcomeIn {
            phase,
            status,
            processed: ok.to_vec().into(),
            failed: failed.iter().map(|s| s.to_string()).collect(),
            correlation_id: req.correlation_id,
        }
    }

    #[test]
    fn a_retry_runs_the_named_essays_or_else_the_failed_ones() {
        let mut s = known(4);
        assert_eq!(
            retry_essays(&s, PhaseName::Spellcheck, None),
            Err(RetryRefused::NothingToRetry),
            "no run yet"
        );
        s.phase_results.insert(
            PhaseName::Spellcheck,
            Arc::new(crate::model::PhaseResult {
                status: RunStatus::CompletedWithFailures,
                succeeded: essays(2, "out").into(),
                failed: vec!["e2".into(), "e3".into()],
                pipeline_id: Uuid::new_v4(),
                at: now(),
            }),
        );
        assert_eq!(
            retry_essays(&s, PhaseName::Spellcheck, None),
            Ok(vec!["e2".to_owned(), "e3".to_owned()])
        );
        assert_eq!(
            retry_essays(&s, PhaseName::Spellcheck, Some(vec!["e0".into()])),
            Ok(vec!["e0".to_owned()])
        );
        assert_eq!(
            retry_essays(&s, PhaseName::Spellcheck, Some(vec![])),
            Err(RetryRefused::EmptyEssayIds)
        );
        assert_eq!(
            retry_essays(&s, PhaseName::Nlp, None),
            Err(RetryRefused::NothingToRetry),
            "another phase"
        );
    }

    #[test]
    fn a_retry_runs_exactly_its_phase_and_anything_else_asks_the_conductor() {
        let mut r = request("nlp");
        assert_eq!(own_resolution(&r), None);
        r.retry = Some(crate::model::RetrySpec {
            phase: PhaseName::CjAssessment,
            essay_ids: vec!["e1".into()],
            reason: "texts fixed".into(),
            operator: "ops".into(),
        });
        assert_eq!(
            own_resolution(&r),
            Some(Resolution::Resolved {
                run: vec![PhaseName::CjAssessment],
                pruned: vec![],
            })
        );
    }

    #[test]
    fn a_request_for_an_unknown_batch_is_parked_then_queued_when_ready() {
        let d = on_request(
            &BatchState::default(),
            B,
            request("nlp"),
            true,
            &Limits::default(),
            now(),
        );
        assert_eq!(d.state.parked.len(), 1);
        assert!(d.state.parked[0].park_deadline.is_some());
        assert!(d.events.is_empty());
        assert!(!d.state.needs_start());
        let d = on_batch_known(&d.state, B, info(3), &Limits::default(), now());
        assert!(d.state.parked.is_empty());
        assert_eq!(d.state.queue.len(), 1);
        assert!(d.state.needs_start());
    }

    #[test]
    fn an_unknown_pipeline_ends_at_once_with_a_reason() {
        let d = on_request(
            &known(3),
            B,
            request("nope"),
            false,
            &Limits::default(),
            now(),
        );
        let t = terminal(&d);
        assert_eq!(t["final_status"], "failed_critically");
        assert_eq!(t["failure_reason"], "unknown_pipeline: nope");
        assert_eq!(t["completed_phases"], serde_json::json!([]));
        assert_eq!(d.state.history.len(), 1);
        assert!(d.state.queue.is_empty());
    }

    #[test]
    fn a_full_queue_rejects_with_queue_full() {
        let limits = Limits {
            queue_capacity: 1,
            ..Default::default()
        };
        let s = on_request(&known(2), B, request("nlp"), true, &limits, now()).state;
        let d = on_request(&s, B, request("cj_assessment"), true, &limits, now());
        assert_eq!(terminal(&d)["failure_reason"], "queue_full");
        assert_eq!(d.state.queue.len(), 1, "the first request keeps its place");
    }

    #[test]
    fn the_same_request_twice_changes_nothing() {
        let req = request("nlp");
        let s = on_request(&known(2), B, req.clone(), true, &Limits::default(), now()).state;
        let d = on_request(&s, B, req, true, &Limits::default(), now());
        assert!(!d.changed);
        assert_eq!(d.state.queue.len(), 1);
    }

    #[test]
    fn a_request_that_finds_its_batch_idle_starts_in_the_same_decision() {
        let limits = Limits::default();
        let run = || Resolution::Resolved {
            run: vec![PhaseName::Spellcheck, PhaseName::Nlp],
            pruned: vec![],
        };
        // The request `req` on `state`, resolved after `after`.
        let start = |state: &BatchState, req: PendingRequest, after: Option<Uuid>| {
            on_request_started(state, B, req, true, after, run(), &limits, now())
        };
        // Idle, known batch: queued and started at once, as the two steps would.
        let req = request("nlp");
        let d = start(&known(3), req.clone(), None);
        let (two_steps, _) = started(
            &known(3),
            "nlp",
            &[PhaseName::Spellcheck, PhaseName::Nlp],
            &[],
        );
        assert!(d.changed);
        assert!(d.state.queue.is_empty());
        assert!(!d.state.needs_start());
        let active = d.state.active.as_ref().expect("started");
        assert_eq!(active.request.request_id, req.request_id);
        assert_eq!(d.notes[0], Note::Queued);
        assert_eq!(
            d.events.iter().map(|e| e.topic).collect::<Vec<_>>(),
            two_steps.events.iter().map(|e| e.topic).collect::<Vec<_>>()
        );
        assert_eq!(
            data(&d.events[0])["essays_to_process"],
            data(&two_steps.events[0])["essays_to_process"]
        );

        // Resolved after a pipeline that is no longer the last one: only queued.
        let d = start(&known(3), request("nlp"), Some(Uuid::new_v4()));
        assert!(d.events.is_empty());
        assert!(d.state.needs_start(), "left to the scheduler");

        // A pipeline runs: queued behind it, nothing started.
        let (busy, _) = started(&known(3), "spellcheck", &[PhaseName::Spellcheck], &[]);
        let d = start(&busy.state, request("nlp"), None);
        assert_eq!(d.state.queue.len(), 1);
        assert_eq!(
            d.state.active.as_ref().unwrap().request.request_id,
            busy.state.active.as_ref().unwrap().request.request_id
        );
        assert!(d.events.is_empty());

        // The batch is not known yet: parked.
        let d = start(&BatchState::default(), request("nlp"), None);
        assert_eq!(d.state.parked.len(), 1);
        assert!(d.state.active.is_none() && d.events.is_empty());

        // Seen before: nothing changes.
        let d = start(&known(3), req.clone(), None);
        let again = start(&d.state, req, None);
        assert!(!again.changed && again.events.is_empty());
    }

    #[test]
    fn starting_dispatches_the_first_phase_with_all_essays() {
        let (d, req) = started(
            &known(4),
            "cj_assessment",
            &[PhaseName::Spellcheck, PhaseName::CjAssessment],
            &[],
        );
        assert_eq!(d.events.len(), 1);
        let cmd = &d.events[0];
        assert_eq!(cmd.topic, topics::SPELLCHECK_INITIATE_COMMAND);
        let env: Value = serde_json::from_str(&cmd.payload).unwrap();
        assert_eq!(env["correlation_id"], req.correlation_id.to_string());
        assert_eq!(
            env["data"]["essays_to_process"].as_array().unwrap().len(),
            4
        );
        let a = d.state.active.as_ref().unwrap();
        assert_eq!(a.current_phase(), PhaseName::Spellcheck);
        assert_eq!(a.runs[0].command_id, cmd.event_id);
        assert!(d.state.queue.is_empty());
    }

    #[test]
    fn a_command_larger_than_a_message_may_be_ends_the_pipeline_saying_so() {
        // Room for the spellcheck command of 10 essays, not for the nlp command of 10 essays
        // with their (longer) spellcheck text ids.
        let small = Limits {
            max_event_bytes: 1500,
            ..Limits::default()
        };
        let req = request("nlp");
        let s = on_request(&known(10), B, req.clone(), true, &small, now()).state;
        let run = Resolution::Resolved {
            run: vec![PhaseName::Spellcheck, PhaseName::Nlp],
            pruned: vec![],
        };
        let d = start_next(&s, B, run.clone(), &small, now());
        assert_eq!(d.events[0].topic, topics::SPELLCHECK_INITIATE_COMMAND);
        let long_ids: Vec<EssayRef> = (0..10)
            .map(|i| EssayRef {
                essay_id: format!("e{i}"),
                text_storage_id: format!("spellchecked-text-{i}-{}", "x".repeat(100)),
            })
            .collect();
        let o = outcome(
            &req,
            PhaseName::Spellcheck,
            BatchStatus::CompletedSuccessfully,
            &long_ids,
            &[],
        );
        let d = on_outcome(&d.state, B, &o, &small, now());
        let t = terminal(&d);
        assert_eq!(d.events.len(), 1, "no command, only the terminal event");
        assert_eq!(t["final_status"], "failed_critically");
        assert_eq!(t["completed_phases"], serde_json::json!(["spellcheck"]));
        let reason = t["failure_reason"].as_str().unwrap();
        assert!(
            reason.starts_with("command_too_large: the nlp command for 10 essays is ")
                && reason.contains("over the 1500-byte limit (KAFKA_MAX_MESSAGE_BYTES"),
            "{reason}"
        );
        assert!(d.state.active.is_none());

        // Too large already for the first phase: ends at start, nothing dispatched.
        let tiny = Limits {
            max_event_bytes: 500,
            ..Limits::default()
        };
        let d = start_next(&s, B, run, &tiny, now());
        let t = terminal(&d);
        assert_eq!(d.events.len(), 1);
        assert_eq!(t["final_status"], "failed_critically");
        assert!(t["failure_reason"]
            .as_str()
            .unwrap()
            .starts_with("command_too_large: the spellcheck command for 10 essays"));
    }

    #[test]
    fn partial_failure_feeds_only_survivors_forward_and_counts_honestly() {
        let limits = Limits::default();
        let (d, req) = started(
            &known(10),
            "cj_assessment",
            &[PhaseName::Spellcheck, PhaseName::CjAssessment],
            &[],
        );
        let ok = essays(7, "spell");
        let d = on_outcome(
            &d.state,
            B,
            &outcome(
                &req,
                PhaseName::Spellcheck,
                BatchStatus::CompletedWithFailures,
                &ok,
                &["e7", "e8", "e9"],
            ),
            &limits,
            now(),
        );
        assert_eq!(d.events.len(), 1);
        let cmd = data(&d.events[0]);
        assert_eq!(d.events[0].topic, topics::CJ_ASSESSMENT_INITIATE_COMMAND);
        let ids: Vec<&str> = cmd["essays_to_process"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["text_storage_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 7);
        assert!(
            ids.iter().all(|t| t.starts_with("spell-")),
            "spellcheck's output text ids"
        );
        let cj_ok = essays(7, "cj");
        let d = on_outcome(
            &d.state,
            B,
            &outcome(
                &req,
                PhaseName::CjAssessment,
                BatchStatus::CompletedSuccessfully,
                &cj_ok,
                &[],
            ),
            &limits,
            now(),
        );
        let t = terminal(&d);
        assert_eq!(t["final_status"], "completed_with_failures");
        assert_eq!(t["successful_essay_count"], 7);
        assert_eq!(t["failed_essay_count"], 3);
        assert_eq!(
            t["completed_phases"],
            serde_json::json!(["spellcheck", "cj_assessment"])
        );
        assert_eq!(t["requested_pipeline"], "cj_assessment");
        assert_eq!(t["correlation_id"], req.correlation_id.to_string());
        assert!(d.state.active.is_none());
        assert_eq!(d.state.last_pipeline_id, Some(req.correlation_id));
        assert_eq!(d.state.history[0].successful_essay_count, 7);
    }

    #[test]
    fn a_later_pipeline_skips_pruned_phases_and_reuses_upstream_results() {
        let limits = Limits::default();
        let (d, req) = started(
            &known(5),
            "cj_assessment",
            &[PhaseName::Spellcheck, PhaseName::CjAssessment],
            &[],
        );
        let spell_ok = essays(4, "spell");
        let d = on_outcome(
            &d.state,
            B,
            &outcome(
                &req,
                PhaseName::Spellcheck,
                BatchStatus::CompletedWithFailures,
                &spell_ok,
                &["e4"],
            ),
            &limits,
            now(),
        );
        let d = on_outcome(
            &d.state,
            B,
            &outcome(
                &req,
                PhaseName::CjAssessment,
                BatchStatus::CompletedSuccessfully,
                &essays(4, "cj"),
                &[],
            ),
            &limits,
            now(),
        );
        let (d, req2) = started(&d.state, "nlp", &[PhaseName::Nlp], &[PhaseName::Spellcheck]);
        let skipped: Vec<_> = d
            .events
            .iter()
            .filter(|e| e.topic == topics::BATCH_PHASE_SKIPPED)
            .collect();
        assert_eq!(skipped.len(), 1);
        assert_eq!(data(skipped[0])["phase_name"], "spellcheck");
        assert_eq!(
            data(skipped[0])["correlation_id"],
            req2.correlation_id.to_string()
        );
        let cmd = d
            .events
            .iter()
            .find(|e| e.topic == topics::NLP_INITIATE_COMMAND)
            .unwrap();
        let essays_in = data(cmd)["essays_to_process"].as_array().unwrap().clone();
        assert_eq!(
            essays_in.len(),
            4,
            "the essay that failed spellcheck stays out"
        );
        assert!(essays_in
            .iter()
            .all(|e| e["text_storage_id"].as_str().unwrap().starts_with("spell-")));
    }

    #[test]
    fn nothing_left_to_do_ends_at_once_with_skipped_phases() {
        let (d, _) = started(
            &known(2),
            "nlp",
            &[],
            &[PhaseName::Spellcheck, PhaseName::Nlp],
        );
        let t = terminal(&d);
        assert_eq!(
            d.events.len(),
            1,
            "no skipped events and no command when nothing starts"
        );
        assert_eq!(t["final_status"], "completed_successfully");
        assert_eq!(t["completed_phases"], serde_json::json!([]));
        assert_eq!(
            t["skipped_phases"],
            serde_json::json!(["spellcheck", "nlp"])
        );
        assert!(d.state.active.is_none());
    }

    #[test]
    fn outcomes_of_other_phases_or_pipelines_are_ignored() {
        let limits = Limits::default();
        let (d, req) = started(
            &known(2),
            "nlp",
            &[PhaseName::Spellcheck, PhaseName::Nlp],
            &[],
        );
        let wrong_phase = outcome(
            &req,
            PhaseName::Nlp,
            BatchStatus::CompletedSuccessfully,
            &essays(2, "x"),
            &[],
        );
        let r = on_outcome(&d.state, B, &wrong_phase, &limits, now());
        assert!(!r.changed);
        assert_eq!(
            r.notes,
            vec![Note::OutcomeIgnored {
                reason: "not_the_current_phase"
            }]
        );
        let mut foreign = outcome(
            &req,
            PhaseName::Spellcheck,
            BatchStatus::CompletedSuccessfully,
            &essays(2, "x"),
            &[],
        );
        foreign.correlation_id = Uuid::new_v4();
        assert!(!on_outcome(&d.state, B, &foreign, &limits, now()).changed);
        let idle = known(2);
        assert!(!on_outcome(&idle, B, &foreign, &limits, now()).changed);
    }

    #[test]
    fn a_critical_failure_ends_the_pipeline_and_keeps_earlier_results() {
        let limits = Limits::default();
        let (d, req) = started(
            &known(3),
            "cj_assessment",
            &[PhaseName::Spellcheck, PhaseName::CjAssessment],
            &[],
        );
        let d = on_outcome(
            &d.state,
            B,
            &outcome(
                &req,
                PhaseName::Spellcheck,
                BatchStatus::CompletedSuccessfully,
                &essays(3, "spell"),
                &[],
            ),
            &limits,
            now(),
        );
        let d = on_outcome(
            &d.state,
            B,
            &outcome(
                &req,
                PhaseName::CjAssessment,
                BatchStatus::FailedCritically,
                &[],
                &["e0", "e1", "e2"],
            ),
            &limits,
            now(),
        );
        let t = terminal(&d);
        assert_eq!(t["final_status"], "failed_critically");
        assert_eq!(t["failure_reason"], "phase_failed: cj_assessment");
        assert_eq!(t["completed_phases"], serde_json::json!(["spellcheck"]));
        assert_eq!(t["successful_essay_count"], 0);
        assert_eq!(t["failed_essay_count"], 3);
        assert!(d.state.phase_results[&PhaseName::Spellcheck]
            .status
            .completed());
    }

    #[test]
    fn a_phase_past_its_deadline_times_out_and_its_late_outcome_is_ignored() {
        let limits = Limits::default();
        let (d, req) = started(
            &known(3),
            "nlp",
            &[PhaseName::Spellcheck, PhaseName::Nlp],
            &[],
        );
        assert!(!on_tick(&d.state, B, &limits, now()).changed, "not due yet");
        let later = Timestamp(now().0 + chrono::Duration::seconds(1801));
        let t = on_tick(&d.state, B, &limits, later);
        let ev = terminal(&t);
        assert_eq!(ev["final_status"], "failed_critically");
        assert_eq!(ev["failure_reason"], "phase_timeout: spellcheck");
        assert_eq!(ev["failed_essay_count"], 3);
        let late = outcome(
            &req,
            PhaseName::Spellcheck,
            BatchStatus::CompletedSuccessfully,
            &essays(3, "s"),
            &[],
        );
        assert!(!on_outcome(&t.state, B, &late, &limits, later).changed);
    }

    #[test]
    fn a_parked_request_gives_up_when_the_batch_never_comes() {
        let limits = Limits::default();
        let d = on_request(
            &BatchState::default(),
            B,
            request("nlp"),
            true,
            &limits,
            now(),
        );
        assert_eq!(d.state.next_deadline(), d.state.parked[0].park_deadline);
        let later = Timestamp(now().0 + chrono::Duration::seconds(601));
        let t = on_tick(&d.state, B, &limits, later);
        assert_eq!(terminal(&t)["failure_reason"], "batch_not_ready");
        assert!(t.state.parked.is_empty());
        assert_eq!(t.state.next_deadline(), None);
    }

    #[test]
    fn queued_requests_wait_for_the_active_pipeline() {
        let limits = Limits::default();
        let (d, req) = started(
            &known(2),
            "cj_assessment",
            &[PhaseName::Spellcheck, PhaseName::CjAssessment],
            &[],
        );
        let s = on_request(&d.state, B, request("nlp"), true, &limits, now()).state;
        assert_eq!(s.queue.len(), 1);
        assert!(!s.needs_start(), "waits while a pipeline is active");
        let d = on_outcome(
            &s,
            B,
            &outcome(
                &req,
                PhaseName::Spellcheck,
                BatchStatus::CompletedSuccessfully,
                &essays(2, "s"),
                &[],
            ),
            &limits,
            now(),
        );
        let d = on_outcome(
            &d.state,
            B,
            &outcome(
                &req,
                PhaseName::CjAssessment,
                BatchStatus::CompletedSuccessfully,
                &essays(2, "c"),
                &[],
            ),
            &limits,
            now(),
        );
        assert!(
            d.state.needs_start(),
            "the queued request may start after the terminal event"
        );
    }

    #[test]
    fn history_is_bounded() {
        let limits = Limits {
            history_limit: 3,
            ..Default::default()
        };
        let mut s = known(1);
        for _ in 0..5 {
            s = on_request(&s, B, request("nope"), false, &limits, now()).state;
        }
        assert_eq!(s.history.len(), 3);
    }

    #[test]
    fn a_retry_runs_one_phase_for_the_named_essays_and_merges_its_results() {
        let limits = Limits::default();
        let (d, req) = started(
            &known(5),
            "nlp",
            &[PhaseName::Spellcheck, PhaseName::Nlp],
            &[],
        );
        let d = on_outcome(
            &d.state,
            B,
            &outcome(
                &req,
                PhaseName::Spellcheck,
                BatchStatus::CompletedWithFailures,
                &essays(3, "spell"),
                &["e3", "e4"],
            ),
            &limits,
            now(),
        );
        let d = on_outcome(
            &d.state,
            B,
            &outcome(
                &req,
                PhaseName::Nlp,
                BatchStatus::CompletedSuccessfully,
                &essays(3, "nlp"),
                &[],
            ),
            &limits,
            now(),
        );
        let mut retry = request("spellcheck");
        retry.retry = Some(crate::model::RetrySpec {
            phase: PhaseName::Spellcheck,
            essay_ids: vec!["e3".into(), "e4".into()],
            reason: "worker fixed".into(),
            operator: "ops".into(),
        });
        let s = on_request(&d.state, B, retry.clone(), true, &limits, now()).state;
        let d = start_next(
            &s,
            B,
            Resolution::Resolved {
                run: vec![PhaseName::Spellcheck],
                pruned: vec![],
            },
            &limits,
            now(),
        );
        let cmd = d
            .events
            .iter()
            .find(|e| e.topic == topics::SPELLCHECK_INITIATE_COMMAND)
            .unwrap();
        let ids: Vec<String> = data(cmd)["essays_to_process"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["essay_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, vec!["e3", "e4"], "only the named essays run again");
        // e3 succeeds now, e4 fails again.
        let e3 = EssayRef {
            essay_id: "e3".into(),
            text_storage_id: "spell2-3".into(),
        };
        let d = on_outcome(
            &d.state,
            B,
            &outcome(
                &retry,
                PhaseName::Spellcheck,
                BatchStatus::CompletedWithFailures,
                std::slice::from_ref(&e3),
                &["e4"],
            ),
            &limits,
            now(),
        );
        let t = terminal(&d);
        assert_eq!(t["requested_pipeline"], "spellcheck");
        assert_eq!(t["successful_essay_count"], 1);
        assert_eq!(t["failed_essay_count"], 1);
        let env: Value = serde_json::from_str(&d.events[0].payload).unwrap();
        assert_eq!(env["metadata"]["retry"], true, "the retry is noted: {env}");
        assert_eq!(env["metadata"]["operator"], "ops");
        let merged = &d.state.phase_results[&PhaseName::Spellcheck];
        assert_eq!(merged.succeeded.len(), 4, "three earlier successes plus e3");
        assert!(merged.succeeded.contains(&e3));
        assert_eq!(merged.failed, vec!["e4".to_string()]);
        // A later pipeline includes the recovered essay.
        let (d, _) = started(
            &d.state,
            "cj_assessment",
            &[PhaseName::CjAssessment],
            &[PhaseName::Spellcheck],
        );
        let cmd = d
            .events
            .iter()
            .find(|e| e.topic == topics::CJ_ASSESSMENT_INITIATE_COMMAND)
            .unwrap();
        assert_eq!(data(cmd)["essays_to_process"].as_array().unwrap().len(), 4);
    }
}

/// The orchestrator's state machine under random sequences of requests, the batch becoming
/// known, scheduler starts, phase outcomes (good, partly failed, critically failed, stale,
/// duplicated) and the passing of time: every request ends in exactly one terminal event, and
/// no phase is dispatched twice within a pipeline.
#[cfg(test)]
mod state_machine {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde_json::Value;
    use uuid::Uuid;

    use super::*;
    use huleedu_contracts::topics;

    const B: &str = "batch-p";
    const PIPELINES: [&str; 4] = ["cj_assessment", "nlp", "ai_feedback", "no_such_pipeline"];

    #[derive(Debug, Clone)]
    enum Step {
        /// A client request for `PIPELINES[i]`.
        Request(usize),
        /// `BatchEssaysReady` (the batch's essays become known).
        BatchKnown,
        /// The scheduler starts the queue head with the conductor's answer.
        Start,
        /// An outcome for the running phase: 0 success, 1 with failures, 2 failed critically;
        /// 3 an outcome for another phase; 4 the last outcome delivered again.
        Outcome(u8),
        /// Time passes (seconds).
        Tick(i64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0..PIPELINES.len()).prop_map(Step::Request),
            1 => Just(Step::BatchKnown),
            3 => Just(Step::Start),
            4 => (0u8..5).prop_map(Step::Outcome),
            1 => (1i64..200).prop_map(Step::Tick),
        ]
    }

    /// The conductor, as far as the orchestrator needs it: expand, prune what is completed.
    fn resolve(state: &BatchState, pipeline: &str) -> Resolution {
        use PhaseName::*;
        let phases = match pipeline {
            "cj_assessment" => vec![Spellcheck, CjAssessment],
            "nlp" => vec![Spellcheck, Nlp],
            "ai_feedback" => vec![Spellcheck, Nlp, AiFeedback],
            other => {
                return Resolution::Unknown {
                    detail: format!("no pipeline {other}"),
                }
            }
        };
        let (pruned, run) = phases.into_iter().partition(|p| {
            state
                .phase_results
                .get(p)
                .is_some_and(|r| r.status.completed())
        });
        Resolution::Resolved { run, pruned }
    }

    #[derive(Default)]
    struct World {
        state: BatchState,
        now_s: i64,
        /// Correlation ids of the requests sent.
        requests: Vec<Uuid>,
        /// Terminal events per correlation id.
        terminals: BTreeMap<Uuid, usize>,
        /// Phases dispatched per pipeline (correlation id), in order.
        dispatched: BTreeMap<Uuid, Vec<PhaseName>>,
        /// The last command: its pipeline, phase and essays.
        last_command: Option<(Uuid, PhaseName, Vec<EssayRef>)>,
        last_outcome: Option<OutcomeIn>,
    }

    fn limits() -> Limits {
        Limits {
            phase_timeout: chrono::Duration::seconds(60),
            pending_batch_timeout: chrono::Duration::seconds(120),
            queue_capacity: 3,
            history_limit: 100,
            ..Limits::default()
        }
    }

    impl World {
        fn now(&self) -> Timestamp {
            Timestamp(chrono::DateTime::UNIX_EPOCH + chrono::Duration::seconds(self.now_s))
        }

        fn take(&mut self, d: Decision) {
            for e in &d.events {
                let v: Value = serde_json::from_str(&e.payload).unwrap();
                let correlation: Uuid = v["correlation_id"].as_str().unwrap().parse().unwrap();
                if e.topic == topics::BATCH_PIPELINE_COMPLETED {
                    *self.terminals.entry(correlation).or_default() += 1;
                } else if let Some(phase) = PhaseName::ALL
                    .into_iter()
                    .find(|p| topics::initiate_command_topic(*p) == Some(e.topic))
                {
                    self.dispatched.entry(correlation).or_default().push(phase);
                    let essays = v["data"]["essays_to_process"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| EssayRef {
                            essay_id: x["essay_id"].as_str().unwrap().to_owned(),
                            text_storage_id: x["text_storage_id"].as_str().unwrap().to_owned(),
                        })
                        .collect();
                    self.last_command = Some((correlation, phase, essays));
                }
            }
            self.state = d.state;
        }

        fn run(&mut self, s: &Step) {
            self.now_s += 1;
            let (now, l) = (self.now(), limits());
            let d = match s {
                Step::Request(i) => {
                    let pipeline = PIPELINES[*i];
                    let correlation = Uuid::new_v4();
                    self.requests.push(correlation);
                    let request = PendingRequest {
                        request_id: Uuid::new_v4(),
                        correlation_id: correlation,
                        requested_pipeline: pipeline.into(),
                        user_id: "teacher".into(),
                        prompt: None,
                        is_retry: false,
                        retry_reason: None,
                        received_at: now,
                        park_deadline: None,
                        retry: None,
                        trace: None,
                    };
                    let known =
                        !matches!(resolve(&self.state, pipeline), Resolution::Unknown { .. });
                    on_request(&self.state, B, request, known, &l, now)
                }
                Step::BatchKnown => {
                    let info = BatchInfo {
                        updated_at: now,
                        ..super::tests::info(4)
                    };
                    on_batch_known(&self.state, B, info, &l, now)
                }
                Step::Start => match self.state.queue.front() {
                    Some(head) if self.state.needs_start() => {
                        let r = resolve(&self.state, &head.requested_pipeline);
                        start_next(&self.state, B, r, &l, now)
                    }
                    _ => return,
                },
                Step::Outcome(kind) => {
                    let Some((correlation, phase, essays)) = self.last_command.clone() else {
                        return;
                    };
                    let outcome = match kind {
                        0 => OutcomeIn {
                            phase,
                            status: BatchStatus::CompletedSuccessfully,
                            processed: essays.into(),
                            failed: vec![],
                            correlation_id: correlation,
                        },
                        1 => OutcomeIn {
                            phase,
                            status: BatchStatus::CompletedWithFailures,
                            processed: essays[1..].to_vec().into(),
                            failed: essays.iter().take(1).map(|e| e.essay_id.clone()).collect(),
                            correlation_id: correlation,
                        },
                        2 => OutcomeIn {
                            phase,
                            status: BatchStatus::FailedCritically,
                            processed: vec![].into(),
                            failed: essays.iter().map(|e| e.essay_id.clone()).collect(),
                            correlation_id: correlation,
                        },
                        3 => OutcomeIn {
                            phase: if phase == PhaseName::Spellcheck {
                                PhaseName::Nlp
                            } else {
                                PhaseName::Spellcheck
                            },
                            status: BatchStatus::CompletedSuccessfully,
                            processed: essays.into(),
                            failed: vec![],
                            correlation_id: correlation,
                        },
                        _ => match self.last_outcome.clone() {
                            Some(o) => o,
                            None => return,
                        },
                    };
                    self.last_outcome = Some(outcome.clone());
                    on_outcome(&self.state, B, &outcome, &l, now)
                }
                Step::Tick(secs) => {
                    self.now_s += secs;
                    on_tick(&self.state, B, &l, self.now())
                }
            };
            self.take(d);
        }

        /// Let everything end: start what can start, answer every running phase, then let
        /// time pass beyond every deadline.
        fn drain(&mut self) {
            for _ in 0..100 {
                if self.state.needs_start() {
                    self.run(&Step::Start);
                } else if self.state.active.is_some() {
                    self.run(&Step::Outcome(0));
                } else {
                    break;
                }
            }
            self.run(&Step::Tick(10_000));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn every_request_ends_once_and_no_phase_runs_twice_in_a_pipeline(
            steps in proptest::collection::vec(step(), 1..60)
        ) {
            let mut w = World::default();
            for s in &steps {
                w.run(s);
                for (c, n) in &w.terminals {
                    prop_assert!(*n <= 1, "request {c} got {n} terminal events");
                }
            }
            w.drain();
            for c in &w.requests {
                prop_assert_eq!(
                    w.terminals.get(c).copied().unwrap_or(0), 1,
                    "request {} must end in exactly one terminal event", c
                );
            }
            prop_assert_eq!(w.terminals.len(), w.requests.len(), "no terminal for an unknown request");
            for (c, phases) in &w.dispatched {
                let mut seen = phases.clone();
                seen.sort();
                seen.dedup();
                prop_assert_eq!(seen.len(), phases.len(), "pipeline {} dispatched {:?}", c, phases);
            }
            prop_assert!(w.state.active.is_none() && w.state.queue.is_empty() && w.state.parked.is_empty());
        }
    }
}
