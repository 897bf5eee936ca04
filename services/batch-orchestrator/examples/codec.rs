//! What the orchestrator's JSON work costs per transition, by batch size, without a broker or
//! Redis: the CPU time of decoding a phase outcome, writing the next command and writing the
//! recorded result — the per-byte part of a transition (see docs/performance.md, "Codec").
//!
//! ```text
//! cargo run --release -p batch-orchestrator --example codec -- [SIZES] [ROUNDS]
//! ```
//!
//! `SIZES` comma-separated (default `10,100,1000,8045`), `ROUNDS` per figure (default 200; the
//! median is printed). The ids are the benchmark's (`size-<run>-NNNNN-NN-e<i>`, 32 hex text ids),
//! the allocator the service's (jemalloc). Beside each figure, two floors for the same bytes: a
//! copy, and serde_json reading them without building anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use batch_orchestrator::events::initiate_command;
use batch_orchestrator::model::{BatchInfo, EssayRef, PendingRequest, PhaseResult, RunStatus};
use huleedu_contracts::decode::decode_envelope;
use huleedu_contracts::envelope::EventEnvelope;
use huleedu_contracts::payloads::{ELSBatchPhaseOutcomeV1, EssayProcessingInputRefV1};
use huleedu_contracts::phase::PhaseName;
use huleedu_contracts::status::BatchStatus;
use huleedu_contracts::timestamp::Timestamp;
use huleedu_contracts::topics;
use uuid::Uuid;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Median time of `rounds` runs of `f`.
fn median(rounds: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[rounds / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let sizes: Vec<usize> = args
        .next()
        .unwrap_or_else(|| "10,100,1000,8045".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("SIZES: comma-separated essay counts")
        })
        .collect();
    let rounds: usize = args
        .next()
        .map_or(200, |s| s.parse().expect("ROUNDS: a number"))
        .max(1);
    println!(
        "{:>6} {:>10} | {:>22} {:>9} {:>9} | {:>22} | {:>22}",
        "essays", "outcome", "decode outcome", "copy", "scan", "write command", "write result"
    );
    for n in sizes {
        // As long as the bench's batch ids (`size-<run>-NNNNN-NN`, the run a timestamp).
        let batch = format!("size-20261203T120000-{n:05}-00");
        let essays: Vec<EssayRef> = (0..n)
            .map(|i| EssayRef {
                essay_id: format!("{batch}-e{i}"),
                text_storage_id: Uuid::new_v4().simple().to_string(),
            })
            .collect();
        let outcome = EventEnvelope::new(
            topics::ELS_BATCH_PHASE_OUTCOME,
            "bench",
            Uuid::new_v4(),
            ELSBatchPhaseOutcomeV1 {
                batch_id: batch.clone(),
                phase_name: PhaseName::Spellcheck,
                phase_status: BatchStatus::CompletedSuccessfully,
                processed_essays: essays
                    .iter()
                    .map(|e| EssayProcessingInputRefV1::new(&e.essay_id, &e.text_storage_id))
                    .collect(),
                failed_essay_ids: Vec::new(),
                correlation_id: Uuid::new_v4(),
            },
        )
        .to_json_bytes();
        let info = BatchInfo {
            essays: essays.clone(),
            course_code: "ENG5".into(),
            language: "en".into(),
            class_type: "GUEST".into(),
            student_prompt_ref: None,
            user_id: None,
            source: "bench".into(),
            updated_at: Timestamp::now(),
        };
        let request = PendingRequest {
            request_id: Uuid::new_v4(),
            correlation_id: Uuid::new_v4(),
            requested_pipeline: "nlp".into(),
            user_id: "teacher-1".into(),
            prompt: None,
            is_retry: false,
            retry_reason: None,
            received_at: Timestamp::now(),
            park_deadline: None,
            retry: None,
            trace: None,
        };
        let result = PhaseResult {
            status: RunStatus::CompletedSuccessfully,
            succeeded: Arc::new(essays.clone()),
            failed: Vec::new(),
            pipeline_id: Uuid::new_v4(),
            at: Timestamp::now(),
        };
        let refs: Vec<&EssayRef> = essays.iter().collect();

        // As the handler does: decode, then the essays moved into the orchestrator's type.
        let decode = median(rounds, || {
            let mut env = decode_envelope::<ELSBatchPhaseOutcomeV1>(&outcome).expect("decodes");
            let processed: Vec<EssayRef> = std::mem::take(&mut env.data.processed_essays)
                .into_iter()
                .map(EssayRef::from)
                .collect();
            assert_eq!(processed.len(), n);
        });
        let copy = median(rounds, || {
            std::hint::black_box(outcome.to_vec());
        });
        let scan = median(rounds, || {
            let _: serde::de::IgnoredAny = serde_json::from_slice(&outcome).expect("JSON");
        });
        let mut command_bytes = 0;
        let command = median(rounds, || {
            let c = initiate_command(
                PhaseName::Nlp,
                &batch,
                &info,
                &request,
                &refs,
                Timestamp::now(),
            )
            .expect("nlp has a command");
            command_bytes = c.payload.len();
        });
        let mut result_bytes = 0;
        let written = median(rounds, || {
            result_bytes = serde_json::to_string(&result).expect("serializes").len();
        });
        let rate = |bytes: usize, t: Duration| bytes as f64 / t.as_secs_f64() / 1e6;
        let us = |t: Duration| t.as_secs_f64() * 1e6;
        println!(
            "{n:>6} {:>8} B | {:>8.1} µs {:>6.0} MB/s {:>6.1} µs {:>6.1} µs | {:>8.1} µs {:>8} B | {:>8.1} µs {:>8} B",
            outcome.len(),
            us(decode),
            rate(outcome.len(), decode),
            us(copy),
            us(scan),
            us(command),
            command_bytes,
            us(written),
            result_bytes
        );
    }
}
