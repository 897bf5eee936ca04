//! The consumer side: each consumed event becomes one committed decision.

use std::sync::Arc;

use huleedu_contracts::decode::{decode_envelope, DecodeError, DecodeErrorKind};
use huleedu_contracts::envelope::EventEnvelope;
use huleedu_contracts::payloads::{
    BatchContentProvisioningCompletedV1, BatchEssaysReady, ClientBatchPipelineRequestV1,
    ELSBatchPhaseOutcomeV1,
};
use huleedu_contracts::timestamp::Timestamp;
use huleedu_contracts::topics;
use huleedu_contracts::trace::TraceContext;
use huleedu_kafka::{FailureKind, Handler, HandlerResult, Inbound};
use huleedu_service::telemetry::continue_trace;
use tracing::Instrument;

use crate::conductor::Conductor;
use crate::core::{Committed, Core, CoreError};
use crate::decide::{self, OutcomeIn, Resolution};
use crate::model::{BatchInfo, EssayRef, PendingRequest};

/// Topics BOS consumes.
pub const CONSUMED: [&str; 4] = [
    topics::CLIENT_BATCH_PIPELINE_REQUEST,
    topics::BATCH_ESSAYS_READY,
    topics::BATCH_CONTENT_PROVISIONING_COMPLETED,
    topics::ELS_BATCH_PHASE_OUTCOME,
];

/// Handles every consumed topic.
#[derive(Debug, Clone)]
pub struct BosHandler {
    pub core: Core,
    pub conductor: Conductor,
}

fn poison(e: DecodeError) -> HandlerResult {
    let kind = match e.kind {
        DecodeErrorKind::Decode => FailureKind::Decode,
        DecodeErrorKind::Validation => FailureKind::Validation,
    };
    HandlerResult::permanent(kind, e.message)
}

fn transient(e: CoreError) -> HandlerResult {
    HandlerResult::Transient(e.to_string())
}

fn done(r: Result<Committed, CoreError>) -> HandlerResult {
    match r {
        Ok(_) => HandlerResult::Done,
        Err(e) => transient(e),
    }
}

impl Handler for BosHandler {
    /// Every commit is version-checked and decided again on conflict, so partitions (and with
    /// them different batches) are handled side by side; one partition stays in order.
    fn concurrent_partitions(&self) -> bool {
        true
    }

    async fn handle(&self, msg: &Inbound) -> HandlerResult {
        match msg.topic.as_str() {
            topics::CLIENT_BATCH_PIPELINE_REQUEST => {
                match decode_envelope::<ClientBatchPipelineRequestV1>(&msg.payload) {
                    Ok(env) => self.on_request(env).await,
                    Err(e) => poison(e),
                }
            }
            topics::BATCH_ESSAYS_READY => match decode_envelope::<BatchEssaysReady>(&msg.payload) {
                Ok(env) => {
                    let info = BatchInfo::from_essays_ready(&env.data, env.event_timestamp);
                    self.on_batch_known(&env, &env.data.batch_id, info).await
                }
                Err(e) => poison(e),
            },
            topics::BATCH_CONTENT_PROVISIONING_COMPLETED => {
                match decode_envelope::<BatchContentProvisioningCompletedV1>(&msg.payload) {
                    Ok(env) => {
                        let info = BatchInfo::from_provisioning(&env.data, env.event_timestamp);
                        self.on_batch_known(&env, &env.data.batch_id, info).await
                    }
                    Err(e) => poison(e),
                }
            }
            topics::ELS_BATCH_PHASE_OUTCOME => {
                match decode_envelope::<ELSBatchPhaseOutcomeV1>(&msg.payload) {
                    Ok(env) => self.on_outcome(env).await,
                    Err(e) => poison(e),
                }
            }
            other => HandlerResult::permanent(
                FailureKind::Handler,
                format!("no handler for topic {other}"),
            ),
        }
    }
}

impl BosHandler {
    async fn on_batch_known<T>(
        &self,
        env: &EventEnvelope<T>,
        batch_id: &str,
        info: BatchInfo,
    ) -> HandlerResult {
        let span = tracing::info_span!("batch_known", batch_id, event_id = %env.event_id, correlation_id = %env.correlation_id);
        continue_trace(
            &span,
            TraceContext::from_metadata(env.metadata.as_ref()).as_ref(),
        );
        let limits = self.core.limits;
        let r = self
            .core
            // Usually the batch's first event: decided without a read when it is new.
            .commit_likely_new(batch_id, Some(env.event_id), |s, now| {
                decide::on_batch_known(s, batch_id, info.clone(), &limits, now)
            })
            .instrument(span)
            .await;
        done(r)
    }

    async fn on_request(&self, env: EventEnvelope<ClientBatchPipelineRequestV1>) -> HandlerResult {
        let d = &env.data;
        let batch_id = d.batch_id.as_str();
        let span = tracing::info_span!("pipeline_request", batch_id, event_id = %env.event_id,
            correlation_id = %env.correlation_id, pipeline = %d.requested_pipeline);
        let incoming = TraceContext::from_metadata(env.metadata.as_ref());
        continue_trace(&span, incoming.as_ref());
        async {
            // A redelivered request is recognised by the commit below (dedup marker), in the
            // same round trip that reads the state.
            // Is the pipeline known? A quick question to the conductor (answered from its
            // definitions, no batch read) so unknown names end at once. If the conductor
            // cannot answer now, the request is accepted unverified: the start (which resolves
            // it anyway) rejects an unknown name then. Waiting here would hold this consumer,
            // and with it the phase outcomes of every batch.
            let trace =
                huleedu_service::telemetry::outgoing(&tracing::Span::current(), incoming.as_ref());
            let (known, answered) = match self
                .conductor
                .check_pipeline(&d.requested_pipeline, trace.as_ref())
                .await
            {
                Ok(Resolution::Unknown { .. }) => (false, true),
                Ok(Resolution::Resolved { .. }) => (true, true),
                Err(e) => {
                    self.core.metrics.conductor_error();
                    tracing::warn!(error = %e, "pipeline name not verified now; verified at start");
                    (true, false)
                }
            };
            // A request that finds its batch idle is started in its own commit when the
            // conductor can resolve it at once (one commit and one scheduler round fewer).
            let resolved = if known && answered {
                self.resolve_now(
                    batch_id,
                    &d.requested_pipeline,
                    env.correlation_id,
                    trace.as_ref(),
                )
                .await
            } else {
                None
            };
            let request = PendingRequest {
                request_id: env.event_id,
                correlation_id: env.correlation_id,
                requested_pipeline: d.requested_pipeline.clone(),
                user_id: d.user_id.clone(),
                prompt: d.prompt_payload.clone(),
                is_retry: d.is_retry,
                retry_reason: d.retry_reason.clone(),
                received_at: Timestamp::now(),
                park_deadline: None,
                retry: None,
                trace: huleedu_service::telemetry::outgoing(
                    &tracing::Span::current(),
                    incoming.as_ref(),
                ),
            };
            let limits = self.core.limits;
            let r = self
                .core
                .commit(batch_id, Some(env.event_id), |s, now| {
                    let mut req = request.clone();
                    req.received_at = now;
                    match &resolved {
                        Some((after, resolution)) => decide::on_request_started(
                            s,
                            batch_id,
                            req,
                            known,
                            *after,
                            resolution.clone(),
                            &limits,
                            now,
                        ),
                        None => decide::on_request(s, batch_id, req, known, &limits, now),
                    }
                })
                .await;
            if let Ok(Committed::Done { notes, .. }) = &r {
                if notes
                    .iter()
                    .any(|n| matches!(n, decide::Note::PipelineStarted { .. }))
                {
                    self.core.metrics.started_with_request();
                }
                tracing::info!(?notes, "pipeline request handled");
            }
            done(r)
        }
        .instrument(span)
        .await
    }

    /// The conductor's resolution of a request that will find its batch idle — judged from
    /// this process's copy of the state (no read; none, busy, unknown or queued: `None`) —
    /// asked without a causal wait, with the batch's last pipeline it was resolved after.
    /// `None` when the conductor lags behind that pipeline or fails: the scheduler then starts
    /// the request after its commit, waiting as long as it takes.
    async fn resolve_now(
        &self,
        batch_id: &str,
        pipeline: &str,
        correlation_id: uuid::Uuid,
        trace: Option<&TraceContext>,
    ) -> Option<(Option<uuid::Uuid>, Resolution)> {
        let state = self.core.recent_copy(batch_id)?;
        if state.active.is_some() || state.batch.is_none() || !state.queue.is_empty() {
            return None;
        }
        let after = state.last_pipeline_id;
        match self
            .conductor
            .resolve_now(batch_id, pipeline, correlation_id, after, trace)
            .await
        {
            Ok(resolution) => Some((after, resolution)),
            Err(e) => {
                tracing::debug!(error = %e, "not resolved at once; the scheduler starts the request");
                None
            }
        }
    }

    async fn on_outcome(&self, mut env: EventEnvelope<ELSBatchPhaseOutcomeV1>) -> HandlerResult {
        // Moved out, not copied: a large batch's outcome holds thousands of essays.
        let processed: Vec<EssayRef> = std::mem::take(&mut env.data.processed_essays)
            .into_iter()
            .map(EssayRef::from)
            .collect();
        let d = &env.data;
        let batch_id = d.batch_id.as_str();
        let span = tracing::info_span!("phase_outcome", batch_id, event_id = %env.event_id,
            correlation_id = %d.correlation_id, phase = %d.phase_name, status = d.phase_status.as_str());
        continue_trace(
            &span,
            TraceContext::from_metadata(env.metadata.as_ref()).as_ref(),
        );
        let outcome = OutcomeIn {
            phase: d.phase_name,
            status: d.phase_status,
            processed: Arc::new(processed),
            failed: d.failed_essay_ids.clone(),
            correlation_id: d.correlation_id,
        };
        let limits = self.core.limits;
        let r = self
            .core
            .commit(batch_id, Some(env.event_id), |s, now| {
                decide::on_outcome(s, batch_id, &outcome, &limits, now)
            })
            .instrument(span.clone())
            .await;
        if let Ok(Committed::Done { notes, .. }) = &r {
            span.in_scope(|| tracing::info!(?notes, "phase outcome handled"));
        }
        done(r)
    }
}
