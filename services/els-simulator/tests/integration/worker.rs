//! The worker as the consumer runner drives it, without a broker: messages in, outcomes out
//! through a [`MemoryPublisher`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{
    assert_counted_once, assert_valid_event, command, essays, example, inbound, is_storage_id,
};
use els_simulator::decide::BatchOverrides;
use els_simulator::metrics::SimMetrics;
use els_simulator::publish::MemoryPublisher;
use els_simulator::settings::Behaviour;
use els_simulator::worker::{command_topics, phase_for_topic, Worker};
use els_simulator::{Counts, OverrideStore, PhaseCount};
use huleedu_contracts::payloads::ELSBatchPhaseOutcomeV1;
use huleedu_contracts::{decode_envelope, source, topics, BatchStatus, PhaseName};
use huleedu_http::metrics::Metrics;
use huleedu_kafka::{FailureKind, Handler, HandlerResult};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct Fixture {
    worker: Worker,
    sent: MemoryPublisher,
    counts: Counts,
    overrides: OverrideStore,
    registry: Metrics,
    stop: CancellationToken,
}

fn fixture(env: &[(&str, &str)]) -> Fixture {
    let behaviour = Behaviour::from_pairs(env).unwrap();
    let sent = MemoryPublisher::new();
    let counts = Counts::new();
    let overrides = OverrideStore::new();
    let registry = Metrics::new();
    let stop = CancellationToken::new();
    let worker = Worker::new(
        behaviour,
        counts.clone(),
        overrides.clone(),
        Arc::new(sent.clone()),
        SimMetrics::register(&registry),
        stop.clone(),
    );
    Fixture {
        worker,
        sent,
        counts,
        overrides,
        registry,
        stop,
    }
}

fn outcomes(sent: &MemoryPublisher) -> Vec<(String, ELSBatchPhaseOutcomeV1, Vec<u8>)> {
    sent.sent()
        .into_iter()
        .map(|m| {
            assert_eq!(m.topic, topics::ELS_BATCH_PHASE_OUTCOME);
            let env =
                decode_envelope::<ELSBatchPhaseOutcomeV1>(&m.payload).expect("outcome decodes");
            (m.key, env.data, m.payload)
        })
        .collect()
}

fn topic(phase: PhaseName) -> &'static str {
    topics::initiate_command_topic(phase).unwrap()
}

#[test]
fn consumes_the_four_command_topics() {
    let mut t = command_topics();
    t.sort_unstable();
    let mut want = vec![
        topics::SPELLCHECK_INITIATE_COMMAND,
        topics::NLP_INITIATE_COMMAND,
        topics::CJ_ASSESSMENT_INITIATE_COMMAND,
        topics::AI_FEEDBACK_INITIATE_COMMAND,
    ];
    want.sort_unstable();
    assert_eq!(t, want);
    assert_eq!(
        phase_for_topic(topics::CJ_ASSESSMENT_INITIATE_COMMAND),
        Some(PhaseName::CjAssessment)
    );
    assert_eq!(phase_for_topic(topics::ELS_BATCH_PHASE_OUTCOME), None);
}

#[tokio::test]
async fn an_outcome_too_large_for_a_message_is_answered_failed_critically_without_essays() {
    let mut f = fixture(&[]);
    f.worker = f.worker.with_max_event_bytes(1200);
    let correlation = Uuid::new_v4();
    let (bytes, _) = command(PhaseName::Nlp, Some("b1"), correlation, essays("b1", 40));
    let msg = inbound(topic(PhaseName::Nlp), Some("b1"), bytes, 0);
    assert_eq!(f.worker.handle(&msg).await, HandlerResult::Done);
    let out = outcomes(&f.sent);
    assert_eq!(out.len(), 1, "one answer, no retry loop");
    let (_, outcome, payload) = &out[0];
    assert!(payload.len() <= 1200, "{} bytes", payload.len());
    assert_eq!(outcome.phase_status, BatchStatus::FailedCritically);
    assert!(outcome.processed_essays.is_empty() && outcome.failed_essay_ids.is_empty());
    assert_eq!(outcome.correlation_id, correlation);
    assert_valid_event("ELSBatchPhaseOutcomeV1", payload);
}

#[tokio::test]
async fn answers_with_failures_new_text_ids_and_the_commands_correlation_id() {
    let f = fixture(&[("SIM_FAIL", "spellcheck:b1-e03")]);
    let input = essays("b1", 5);
    let correlation = Uuid::new_v4();
    let (bytes, event_id) = command(
        PhaseName::Spellcheck,
        Some("b1"),
        correlation,
        input.clone(),
    );
    let msg = inbound(topic(PhaseName::Spellcheck), Some("b1"), bytes, 0);
    assert_eq!(f.worker.handle(&msg).await, HandlerResult::Done);

    let out = outcomes(&f.sent);
    assert_eq!(out.len(), 1);
    let (key, outcome, payload) = &out[0];
    assert_eq!(key, "b1");
    assert_valid_event("ELSBatchPhaseOutcomeV1", payload);
    let env = decode_envelope::<ELSBatchPhaseOutcomeV1>(payload).unwrap();
    assert_eq!(env.event_type, topics::ELS_BATCH_PHASE_OUTCOME);
    assert_eq!(env.source_service, source::ELS_SIMULATOR);
    assert_eq!(env.correlation_id, correlation);
    assert_ne!(env.event_id, event_id);
    assert_eq!(outcome.correlation_id, correlation);
    assert_eq!(outcome.batch_id, "b1");
    assert_eq!(outcome.phase_name, PhaseName::Spellcheck);
    assert_eq!(outcome.phase_status, BatchStatus::CompletedWithFailures);
    assert_eq!(outcome.failed_essay_ids, ["b1-e03"]);
    assert_eq!(outcome.processed_essays.len(), 4);
    for out in &outcome.processed_essays {
        let original = input.iter().find(|e| e.essay_id == out.essay_id).unwrap();
        assert_ne!(out.text_storage_id, original.text_storage_id);
        assert!(
            is_storage_id(&out.text_storage_id),
            "{}",
            out.text_storage_id
        );
    }
    assert_eq!(
        f.counts.get("b1", PhaseName::Spellcheck),
        PhaseCount {
            dispatched: 1,
            deliveries: 1
        }
    );
    let metrics = f.registry.render();
    assert_counted_once(&metrics, "spellcheck", "completed_with_failures");
}

#[tokio::test]
async fn a_redelivered_command_is_counted_but_not_answered_again() {
    let f = fixture(&[]);
    let (bytes, _) = command(PhaseName::Nlp, Some("b2"), Uuid::new_v4(), essays("b2", 2));
    let first = inbound(topic(PhaseName::Nlp), Some("b2"), bytes.clone(), 10);
    let again = inbound(topic(PhaseName::Nlp), Some("b2"), bytes, 11);
    assert_eq!(f.worker.handle(&first).await, HandlerResult::Done);
    assert_eq!(f.worker.handle(&again).await, HandlerResult::Done);
    assert_eq!(
        f.counts.get("b2", PhaseName::Nlp),
        PhaseCount {
            dispatched: 1,
            deliveries: 2
        }
    );
    assert_eq!(outcomes(&f.sent).len(), 1);

    // A new command (new event id) for the same phase is a second dispatch, and is answered.
    let (bytes, _) = command(PhaseName::Nlp, Some("b2"), Uuid::new_v4(), essays("b2", 2));
    let other = inbound(topic(PhaseName::Nlp), Some("b2"), bytes, 12);
    assert_eq!(f.worker.handle(&other).await, HandlerResult::Done);
    assert_eq!(f.counts.get("b2", PhaseName::Nlp).dispatched, 2);
    assert_eq!(outcomes(&f.sent).len(), 2);
}

#[tokio::test]
async fn duplicate_outcomes_are_byte_identical() {
    let f = fixture(&[("SIM_DUPLICATE_OUTCOMES", "true")]);
    let (bytes, _) = command(
        PhaseName::CjAssessment,
        Some("b3"),
        Uuid::new_v4(),
        essays("b3", 3),
    );
    let msg = inbound(topic(PhaseName::CjAssessment), Some("b3"), bytes, 0);
    assert_eq!(f.worker.handle(&msg).await, HandlerResult::Done);
    let out = outcomes(&f.sent);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].2, out[1].2, "same bytes, same event_id");
}

#[tokio::test]
async fn silent_phases_are_counted_and_never_answered() {
    let f = fixture(&[("SIM_SILENT_PHASES", "ai_feedback")]);
    let (bytes, _) = command(
        PhaseName::AiFeedback,
        Some("b4"),
        Uuid::new_v4(),
        essays("b4", 2),
    );
    let msg = inbound(topic(PhaseName::AiFeedback), Some("b4"), bytes, 0);
    assert_eq!(f.worker.handle(&msg).await, HandlerResult::Done);
    assert!(f.sent.sent().is_empty());
    assert_eq!(f.counts.get("b4", PhaseName::AiFeedback).dispatched, 1);

    // Other phases still get answers.
    let (bytes, _) = command(PhaseName::Nlp, Some("b4"), Uuid::new_v4(), essays("b4", 2));
    let msg = inbound(topic(PhaseName::Nlp), Some("b4"), bytes, 1);
    assert_eq!(f.worker.handle(&msg).await, HandlerResult::Done);
    assert_eq!(outcomes(&f.sent).len(), 1);
}

#[tokio::test]
async fn batch_overrides_fail_essays_and_silence_phases_for_that_batch_only() {
    let f = fixture(&[]);
    let mut o = BatchOverrides::default();
    o.fail
        .entry(PhaseName::Spellcheck)
        .or_default()
        .extend(["b5-e01".to_owned(), "b5-e02".to_owned()]);
    o.silent_phases.insert(PhaseName::Nlp);
    f.overrides.set("b5", o);

    let (bytes, _) = command(
        PhaseName::Spellcheck,
        Some("b5"),
        Uuid::new_v4(),
        essays("b5", 2),
    );
    f.worker
        .handle(&inbound(topic(PhaseName::Spellcheck), Some("b5"), bytes, 0))
        .await;
    let (bytes, _) = command(PhaseName::Nlp, Some("b5"), Uuid::new_v4(), essays("b5", 2));
    f.worker
        .handle(&inbound(topic(PhaseName::Nlp), Some("b5"), bytes, 1))
        .await;
    let (bytes, _) = command(PhaseName::Nlp, Some("b6"), Uuid::new_v4(), essays("b6", 2));
    f.worker
        .handle(&inbound(topic(PhaseName::Nlp), Some("b6"), bytes, 2))
        .await;

    let out = outcomes(&f.sent);
    assert_eq!(out.len(), 2, "b5 nlp is silent");
    assert_eq!(out[0].1.batch_id, "b5");
    assert_eq!(out[0].1.phase_status, BatchStatus::FailedCritically);
    assert_eq!(out[0].1.failed_essay_ids, ["b5-e01", "b5-e02"]);
    assert_eq!(out[1].1.batch_id, "b6");
    assert_eq!(out[1].1.phase_status, BatchStatus::CompletedSuccessfully);
}

#[tokio::test]
async fn seeded_rate_fails_the_same_essays_every_time() {
    let env = [("SIM_FAIL_RATE", "0.5"), ("SIM_SEED", "99")];
    let input = essays("b7", 40);
    let (a, b) = (fixture(&env), fixture(&env));
    for f in [&a, &b] {
        let (bytes, _) = command(
            PhaseName::Spellcheck,
            Some("b7"),
            Uuid::new_v4(),
            input.clone(),
        );
        f.worker
            .handle(&inbound(topic(PhaseName::Spellcheck), Some("b7"), bytes, 0))
            .await;
    }
    let (fa, fb) = (&outcomes(&a.sent)[0].1, &outcomes(&b.sent)[0].1);
    assert_eq!(fa.failed_essay_ids, fb.failed_essay_ids);
    assert_eq!(fa.processed_essays, fb.processed_essays);
    assert!(!fa.failed_essay_ids.is_empty() && !fa.processed_essays.is_empty());
}

#[tokio::test]
async fn the_batch_id_falls_back_to_the_message_key() {
    let f = fixture(&[]);
    let (bytes, _) = command(PhaseName::Spellcheck, None, Uuid::new_v4(), essays("k1", 1));
    let msg = inbound(topic(PhaseName::Spellcheck), Some("k1"), bytes.clone(), 0);
    assert_eq!(f.worker.handle(&msg).await, HandlerResult::Done);
    let out = outcomes(&f.sent);
    assert_eq!(
        (out[0].0.as_str(), out[0].1.batch_id.as_str()),
        ("k1", "k1")
    );

    // Neither entity_id nor key: nothing to answer to, so it is poison.
    let msg = inbound(topic(PhaseName::Spellcheck), None, bytes, 1);
    let HandlerResult::Permanent { kind, message } = f.worker.handle(&msg).await else {
        panic!("expected a permanent failure");
    };
    assert_eq!(kind, FailureKind::Validation);
    assert!(message.contains("entity_id"), "{message}");
}

#[tokio::test]
async fn undecodable_commands_are_permanent_failures() {
    let f = fixture(&[]);
    let t = topic(PhaseName::Nlp);
    let cases: [(&[u8], FailureKind, &str); 3] = [
        (b"not json", FailureKind::Decode, "JSON"),
        (
            br#"{"event_type":"x","source_service":"y","data":{"event_name":"n"}}"#,
            FailureKind::Validation,
            "essays_to_process",
        ),
        (b"[1,2]", FailureKind::Validation, "object"),
    ];
    for (i, (payload, want_kind, needle)) in cases.into_iter().enumerate() {
        let msg = inbound(t, Some("b8"), payload.to_vec(), i as i64);
        match f.worker.handle(&msg).await {
            HandlerResult::Permanent { kind, message } => {
                assert_eq!(kind, want_kind, "{message}");
                assert!(message.contains(needle), "{message}");
            }
            other => panic!("expected permanent, got {other:?}"),
        }
    }
    assert!(f.counts.all().is_empty(), "poison is not counted");
    assert!(f.sent.sent().is_empty());
}

#[tokio::test]
async fn platform_example_commands_are_answered() {
    let f = fixture(&[]);
    for (i, (file, phase)) in [
        (
            "huleedu.els.spellcheck.initiate.command.v1--guest-eng5.json",
            PhaseName::Spellcheck,
        ),
        (
            "huleedu.batch.nlp.initiate.command.v2--with-prompt-ref.json",
            PhaseName::Nlp,
        ),
        (
            "huleedu.batch.cj_assessment.initiate.command.v1--regular-with-prompt-and-assignment.json",
            PhaseName::CjAssessment,
        ),
        (
            "huleedu.batch.ai_feedback.initiate.command.v1--guest-with-prompt.json",
            PhaseName::AiFeedback,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let msg = inbound(topic(phase), None, example(file), i as i64);
        assert_eq!(f.worker.handle(&msg).await, HandlerResult::Done, "{file}");
    }
    let out = outcomes(&f.sent);
    assert_eq!(out.len(), 4);
    for (_, outcome, payload) in &out {
        assert_valid_event("ELSBatchPhaseOutcomeV1", payload);
        assert_eq!(outcome.phase_status, BatchStatus::CompletedSuccessfully);
        assert!(!outcome.processed_essays.is_empty());
    }
}

#[tokio::test]
async fn a_failed_publish_is_retried_without_counting_again() {
    let f = fixture(&[("SIM_DUPLICATE_OUTCOMES", "true")]);
    let (bytes, _) = command(
        PhaseName::Spellcheck,
        Some("b9"),
        Uuid::new_v4(),
        essays("b9", 2),
    );
    let msg = inbound(topic(PhaseName::Spellcheck), Some("b9"), bytes, 5);
    f.sent.fail_next(1);
    assert!(matches!(
        f.worker.handle(&msg).await,
        HandlerResult::Transient(_)
    ));
    assert!(f.sent.sent().is_empty());
    assert_eq!(f.worker.handle(&msg).await, HandlerResult::Done);
    assert_eq!(
        f.counts.get("b9", PhaseName::Spellcheck),
        PhaseCount {
            dispatched: 1,
            deliveries: 1
        }
    );
    let out = outcomes(&f.sent);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].2, out[1].2);
}

#[tokio::test]
async fn latency_is_per_essay_and_shutdown_abandons_the_work() {
    let f = fixture(&[("SIM_ESSAY_LATENCY_MS", "20")]);
    let (bytes, _) = command(
        PhaseName::Nlp,
        Some("b10"),
        Uuid::new_v4(),
        essays("b10", 5),
    );
    let msg = inbound(topic(PhaseName::Nlp), Some("b10"), bytes, 0);
    let started = Instant::now();
    assert_eq!(f.worker.handle(&msg).await, HandlerResult::Done);
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );

    let slow = fixture(&[("SIM_ESSAY_LATENCY_MS", "60000")]);
    let (bytes, _) = command(
        PhaseName::Nlp,
        Some("b11"),
        Uuid::new_v4(),
        essays("b11", 5),
    );
    let msg = inbound(topic(PhaseName::Nlp), Some("b11"), bytes, 0);
    slow.stop.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), slow.worker.handle(&msg))
        .await
        .expect("shutdown interrupts simulated work");
    assert!(matches!(result, HandlerResult::Transient(_)), "{result:?}");
    assert!(slow.sent.sent().is_empty());
    assert_eq!(slow.counts.get("b11", PhaseName::Nlp).deliveries, 1);
}
