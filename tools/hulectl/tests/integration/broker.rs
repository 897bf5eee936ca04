//! `hulectl` against a real broker (`HULEEDU_TEST_KAFKA`): what `submit` publishes, what
//! `dlq list` reads, and `watch` / `submit --wait` following events published after they
//! started.
//!
//! The system's topics have fixed names, so every test uses its own batch ids and looks only
//! at messages keyed by them. No phase worker may consume the test broker's command topics
//! meanwhile (it would answer the commands these tests publish). Waiting is for a condition
//! with a deadline, never a fixed sleep.

use std::process::Stdio;
use std::time::Duration;

use hulectl::cli::DlqKind;
use hulectl::dlq::Listing;
use hulectl::kafka::{read_to_end, Follower, StartAt, TopicSet};
use huleedu_contracts::dlq::headers;
use huleedu_contracts::payloads::{
    BatchPipelineCompletedV1, BatchServiceSpellcheckInitiateCommandDataV1,
    ClientBatchPipelineRequestV1, ELSBatchPhaseOutcomeV1, EssayProcessingInputRefV1,
    PhaseSkippedV1, SystemProcessingMetadata,
};
use huleedu_contracts::{
    decode_envelope, events, topics, BatchStatus, EventEnvelope, FailedEssayDlqRecordV1, PhaseName,
    Timestamp,
};
use huleedu_it::{kafka_bootstrap, kafka_settings, unique};
use huleedu_kafka::{provision_topics, OutgoingMessage, Producer};
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

const T: Duration = Duration::from_secs(60);
const BIN: &str = env!("CARGO_BIN_EXE_hulectl");

fn poison_topic() -> String {
    topics::dlq_topic(topics::ELS_BATCH_PHASE_OUTCOME)
}

/// Creates the system's topics and one poison DLQ topic (3 partitions), once per test.
async fn setup() -> (String, Producer) {
    let bootstrap = kafka_bootstrap();
    let settings = kafka_settings("hulectl-it", &unique("hulectl-it"), 3);
    let poison = poison_topic();
    let mut all: Vec<&str> = topics::SYSTEM.to_vec();
    all.push(&poison);
    provision_topics(&settings, &all).await.expect("topics");
    (bootstrap, Producer::new(&settings).expect("producer"))
}

async fn send<T: Serialize>(p: &Producer, topic: &str, key: &str, env: &EventEnvelope<T>) {
    p.send(&OutgoingMessage::new(topic, key, env.to_json_bytes()))
        .await
        .expect("published");
}

fn hulectl(bootstrap: &str, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--kafka")
        .arg(bootstrap)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

async fn finish(child: Child) -> (i32, String, String) {
    let out = tokio::time::timeout(T, child.wait_with_output())
        .await
        .expect("hulectl finishes in time")
        .expect("hulectl ran");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn essays(batch: &str, n: usize) -> Vec<EssayProcessingInputRefV1> {
    (1..=n)
        .map(|i| EssayProcessingInputRefV1::new(format!("{batch}-e{i:02}"), format!("{i:032x}")))
        .collect()
}

fn command_event(
    batch: &str,
    corr: Uuid,
    n: usize,
) -> EventEnvelope<BatchServiceSpellcheckInitiateCommandDataV1> {
    EventEnvelope::new(
        topics::SPELLCHECK_INITIATE_COMMAND,
        "test",
        corr,
        BatchServiceSpellcheckInitiateCommandDataV1 {
            event_name: events::BATCH_SPELLCHECK_INITIATE_COMMAND.into(),
            entity_id: Some(batch.into()),
            entity_type: Some("batch".into()),
            parent_id: None,
            timestamp: Timestamp::now(),
            essays_to_process: essays(batch, n),
            language: "en".into(),
        },
    )
}

fn outcome_event(
    batch: &str,
    corr: Uuid,
    ok: usize,
    failed: &[String],
) -> EventEnvelope<ELSBatchPhaseOutcomeV1> {
    EventEnvelope::new(
        topics::ELS_BATCH_PHASE_OUTCOME,
        "test",
        corr,
        ELSBatchPhaseOutcomeV1 {
            batch_id: batch.into(),
            phase_name: PhaseName::Spellcheck,
            phase_status: if failed.is_empty() {
                BatchStatus::CompletedSuccessfully
            } else {
                BatchStatus::CompletedWithFailures
            },
            processed_essays: essays(batch, ok),
            failed_essay_ids: failed.to_vec(),
            correlation_id: corr,
        },
    )
}

fn skipped_event(batch: &str, corr: Uuid, phase: &str) -> EventEnvelope<PhaseSkippedV1> {
    EventEnvelope::new(
        topics::BATCH_PHASE_SKIPPED,
        "test",
        corr,
        PhaseSkippedV1 {
            event: events::BATCH_PHASE_SKIPPED.into(),
            batch_id: batch.into(),
            phase_name: phase.into(),
            skip_reason: "already_completed".into(),
            storage_id: None,
            correlation_id: corr,
            metadata: SystemProcessingMetadata::for_batch(batch, Some(events::BATCH_PHASE_SKIPPED)),
        },
    )
}

fn completed_event(
    batch: &str,
    corr: Uuid,
    pipeline: &str,
    status: BatchStatus,
    ok: i64,
    failed: i64,
) -> EventEnvelope<BatchPipelineCompletedV1> {
    EventEnvelope::new(
        events::BATCH_PIPELINE_COMPLETED,
        "test",
        corr,
        BatchPipelineCompletedV1 {
            event: events::BATCH_PIPELINE_COMPLETED.into(),
            batch_id: batch.into(),
            completed_phases: if pipeline == "spellcheck" {
                vec![pipeline.into()]
            } else {
                vec!["spellcheck".into(), pipeline.into()]
            },
            final_status: status,
            processing_duration_seconds: 2.31,
            successful_essay_count: ok,
            failed_essay_count: failed,
            correlation_id: corr,
            metadata: SystemProcessingMetadata::for_batch(
                batch,
                Some(events::BATCH_PIPELINE_COMPLETED),
            ),
            requested_pipeline: Some(pipeline.into()),
            skipped_phases: vec![],
            failure_reason: None,
        },
    )
}

fn failed_essay_event(
    batch: &str,
    essay: &str,
    pipeline: Uuid,
) -> EventEnvelope<FailedEssayDlqRecordV1> {
    EventEnvelope::new(
        topics::FAILED_ESSAYS_DLQ,
        "test",
        pipeline,
        FailedEssayDlqRecordV1 {
            batch_id: batch.into(),
            essay_id: essay.into(),
            phase_name: PhaseName::Spellcheck,
            phase_status: BatchStatus::CompletedWithFailures,
            pipeline_correlation_id: pipeline,
            source_event_id: Uuid::new_v4(),
            source_topic: topics::ELS_BATCH_PHASE_OUTCOME.into(),
            source_partition: 1,
            source_offset: 7,
            reason: "listed in failed_essay_ids".into(),
            failed_at: Timestamp::now(),
        },
    )
}

async fn poison(p: &Producer, batch: &str) {
    let h = |k: &str, v: &str| (k.to_owned(), v.as_bytes().to_vec());
    let hs = vec![
        h(headers::ORIGINAL_TOPIC, topics::ELS_BATCH_PHASE_OUTCOME),
        h(headers::ORIGINAL_PARTITION, "2"),
        h(headers::ORIGINAL_OFFSET, "41"),
        h(headers::ORIGINAL_TIMESTAMP, "1790000000000"),
        h(headers::CONSUMER_GROUP, "bcs-event-consumer"),
        h(headers::SERVICE, "batch_conductor_service"),
        h(headers::ERROR_KIND, headers::ERROR_KIND_DECODE),
        h(
            headers::ERROR_MESSAGE,
            "message is not valid JSON: expected value at line 1 column 1",
        ),
        h(headers::FAILED_AT, &Timestamp::now().to_string()),
    ];
    let payload = format!("not json {}", "x".repeat(100));
    p.send_parts(
        &poison_topic(),
        Some(batch.as_bytes()),
        payload.as_bytes(),
        &hs,
    )
    .await
    .expect("poison published");
}

#[tokio::test]
async fn submit_publishes_a_valid_request_keyed_by_batch() {
    let (bootstrap, _p) = setup().await;
    let batch = unique("submit");
    let (code, out, err) = finish(
        hulectl(
            &bootstrap,
            &[
                "submit",
                "--batch",
                &batch,
                "--pipeline",
                "cj_assessment",
                "--user",
                "ann",
            ],
        )
        .spawn()
        .unwrap(),
    )
    .await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let corr: Uuid = out
        .lines()
        .find_map(|l| l.strip_prefix("correlation id: "))
        .expect("prints the correlation id")
        .trim()
        .parse()
        .unwrap();
    assert!(
        out.contains(&format!(
            "hulectl watch --batch {batch} --correlation {corr}"
        )),
        "{out}"
    );

    let read = tokio::task::spawn_blocking({
        let b = huleedu_kafka::KafkaSettings::local(&bootstrap, "hulectl-test", "hulectl-test");
        move || {
            read_to_end(
                &b,
                &TopicSet::new(&[topics::CLIENT_BATCH_PIPELINE_REQUEST], false),
                T,
            )
        }
    })
    .await
    .unwrap()
    .expect("read");
    let mine: Vec<_> = read
        .records
        .iter()
        .filter(|r| r.key.as_deref() == Some(batch.as_str()))
        .collect();
    assert_eq!(mine.len(), 1, "exactly one request for the batch");
    let env = decode_envelope::<ClientBatchPipelineRequestV1>(&mine[0].payload)
        .expect("decodes as BOS decodes it");
    assert_eq!(env.correlation_id, corr);
    assert_eq!(env.event_type, topics::CLIENT_BATCH_PIPELINE_REQUEST);
    assert_eq!(env.data.batch_id, batch);
    assert_eq!(env.data.requested_pipeline, "cj_assessment");
    assert_eq!(env.data.user_id, "ann");
    assert_eq!(env.data.client_correlation_id, corr);
}

#[tokio::test]
async fn dlq_list_reads_failed_essays_and_poison_records_of_a_batch() {
    let (bootstrap, p) = setup().await;
    let batch = unique("dlq");
    let other = unique("dlq-other");
    let pipeline = Uuid::new_v4();
    // Published together, so they share one record batch (tansu then reports a high
    // watermark inside that batch; every record must still be read).
    let (e04, e11) = (
        failed_essay_event(&batch, &format!("{batch}-e04"), pipeline),
        failed_essay_event(&batch, &format!("{batch}-e11"), pipeline),
    );
    tokio::join!(
        send(&p, topics::FAILED_ESSAYS_DLQ, &batch, &e04),
        send(&p, topics::FAILED_ESSAYS_DLQ, &batch, &e11)
    );
    send(
        &p,
        topics::FAILED_ESSAYS_DLQ,
        &other,
        &failed_essay_event(&other, "x", pipeline),
    )
    .await;
    poison(&p, &batch).await;
    poison(&p, &other).await;

    // The library: everything up to the high watermarks, then stop.
    let read = tokio::task::spawn_blocking({
        let b = huleedu_kafka::KafkaSettings::local(&bootstrap, "hulectl-test", "hulectl-test");
        move || read_to_end(&b, &TopicSet::new(&[topics::FAILED_ESSAYS_DLQ], true), T)
    })
    .await
    .unwrap()
    .expect("read");
    assert!(
        read.topics.contains(&poison_topic()),
        "finds the poison topics: {:?}",
        read.topics
    );
    let l = Listing::from_records(&read.records, Some(&batch), DlqKind::All);
    let essays: Vec<&str> = l
        .failed_essays
        .iter()
        .map(|r| r.essay_id.as_str())
        .collect();
    assert_eq!(essays, [format!("{batch}-e04"), format!("{batch}-e11")]);
    assert_eq!(l.poison.len(), 1);
    let pr = &l.poison[0];
    assert_eq!(
        pr.original_topic.as_deref(),
        Some(topics::ELS_BATCH_PHASE_OUTCOME)
    );
    assert_eq!(pr.original_offset.as_deref(), Some("41"));
    assert_eq!(pr.error_kind.as_deref(), Some("decode"));
    assert_eq!(
        pr.payload_preview.chars().count(),
        81,
        "80 characters and an ellipsis"
    );

    // The command.
    let (code, out, err) = finish(
        hulectl(&bootstrap, &["dlq", "list", "--batch", &batch])
            .spawn()
            .unwrap(),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("2 records of batch {batch}")),
        "{out}"
    );
    assert!(out.contains(&format!("{batch}-e11  spellcheck  completed_with_failures  listed in failed_essay_ids  {pipeline}")), "{out}");
    assert!(
        out.contains("Poison messages (<topic>.DLQ): 1 record of batch"),
        "{out}"
    );
    assert!(out.contains("original  huleedu.els.batch.phase.outcome.v1 [2@41] (group bcs-event-consumer, service batch_conductor_service)"), "{out}");
    assert!(
        out.contains("error     decode: message is not valid JSON"),
        "{out}"
    );
    assert!(
        !out.contains(&other),
        "other batches are filtered out:\n{out}"
    );

    let (code, out, _) = finish(
        hulectl(
            &bootstrap,
            &[
                "dlq", "list", "--batch", &batch, "--kind", "poison", "--json",
            ],
        )
        .spawn()
        .unwrap(),
    )
    .await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert!(v.get("failed_essays").is_none());
    assert_eq!(v["poison"].as_array().unwrap().len(), 1);
    assert_eq!(v["poison"][0]["key"], batch.as_str());
}

#[tokio::test]
async fn follower_sees_only_what_is_published_after_it_started() {
    let (bootstrap, p) = setup().await;
    let batch = unique("follow");
    // Earlier events, published together so they share one record batch: a broker that
    // reports the high watermark inside it (tansu) must not make them reappear.
    let before: Vec<_> = (0..3)
        .map(|_| skipped_event(&batch, Uuid::new_v4(), "spellcheck"))
        .collect();
    tokio::join!(
        send(&p, topics::BATCH_PHASE_SKIPPED, &batch, &before[0]),
        send(&p, topics::BATCH_PHASE_SKIPPED, &batch, &before[1]),
        send(&p, topics::BATCH_PHASE_SKIPPED, &batch, &before[2])
    );
    let mut f = tokio::task::spawn_blocking({
        let b = huleedu_kafka::KafkaSettings::local(&bootstrap, "hulectl-test", "hulectl-test");
        move || {
            Follower::start(
                &b,
                &TopicSet::new(&[topics::BATCH_PHASE_SKIPPED], false),
                StartAt::Now,
            )
        }
    })
    .await
    .unwrap()
    .expect("follower");
    let after = Uuid::new_v4();
    send(
        &p,
        topics::BATCH_PHASE_SKIPPED,
        &batch,
        &skipped_event(&batch, after, "nlp"),
    )
    .await;
    let seen = tokio::time::timeout(T, async {
        loop {
            let r = f
                .next()
                .await
                .expect("reader alive")
                .expect("no consumer error");
            if r.key.as_deref() == Some(batch.as_str()) {
                return hulectl::event::decode(&r);
            }
        }
    })
    .await
    .expect("the event published after start arrives");
    assert_eq!(
        seen.correlation_id,
        Some(after),
        "the earlier event is not replayed"
    );
}

/// Reads stderr until the tool says it is following (its start offsets are fixed by then).
async fn wait_until_following(child: &mut Child) {
    let stderr = child.stderr.take().expect("stderr piped");
    let mut lines = BufReader::new(stderr).lines();
    tokio::time::timeout(T, async {
        while let Some(line) = lines.next_line().await.expect("stderr") {
            if line.starts_with("following batch") || line.starts_with("waiting up to") {
                // Keep draining stderr in the background so the tool never blocks on it.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return;
            }
        }
        panic!("hulectl ended before following");
    })
    .await
    .expect("hulectl starts following in time");
}

#[tokio::test]
async fn watch_prints_a_line_per_event_until_the_pipeline_ends() {
    let (bootstrap, p) = setup().await;
    let batch = unique("watch");
    let corr = Uuid::new_v4();
    let mut child = hulectl(
        &bootstrap,
        &[
            "watch",
            "--batch",
            &batch,
            "--correlation",
            &corr.to_string(),
            "--timeout",
            "60",
        ],
    )
    .spawn()
    .unwrap();
    wait_until_following(&mut child).await;
    let failed = vec![format!("{batch}-e02")];
    send(
        &p,
        topics::SPELLCHECK_INITIATE_COMMAND,
        &batch,
        &command_event(&batch, corr, 3),
    )
    .await;
    send(
        &p,
        topics::ELS_BATCH_PHASE_OUTCOME,
        &batch,
        &outcome_event(&batch, corr, 2, &failed),
    )
    .await;
    send(
        &p,
        topics::FAILED_ESSAYS_DLQ,
        &batch,
        &failed_essay_event(&batch, &failed[0], corr),
    )
    .await;
    // Another batch's events and another pipeline's terminal event do not end the watch.
    send(
        &p,
        topics::BATCH_PIPELINE_COMPLETED,
        &unique("watch-other"),
        &completed_event("x", corr, "nlp", BatchStatus::CompletedSuccessfully, 1, 0),
    )
    .await;
    send(
        &p,
        topics::BATCH_PIPELINE_COMPLETED,
        &batch,
        &completed_event(
            &batch,
            Uuid::new_v4(),
            "spellcheck",
            BatchStatus::CompletedSuccessfully,
            3,
            0,
        ),
    )
    .await;
    send(
        &p,
        topics::BATCH_PHASE_SKIPPED,
        &batch,
        &skipped_event(&batch, corr, "cj_assessment"),
    )
    .await;
    // Events on different topics may arrive in any order: publish the terminal event only
    // once the five before it are on screen.
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut lines: Vec<String> = Vec::new();
    tokio::time::timeout(T, async {
        while lines.len() < 5 {
            lines.push(out.next_line().await.unwrap().expect("watch still running"));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("five lines in time, got {lines:#?}"));
    send(
        &p,
        topics::BATCH_PIPELINE_COMPLETED,
        &batch,
        &completed_event(
            &batch,
            corr,
            "nlp",
            BatchStatus::CompletedWithFailures,
            2,
            1,
        ),
    )
    .await;
    tokio::time::timeout(T, async {
        while let Some(l) = out.next_line().await.unwrap() {
            lines.push(l);
        }
    })
    .await
    .expect("watch ends");
    let (code, _, _) = finish(child).await;
    let text = lines.join("\n");
    assert_eq!(code, 0, "{text}");
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(
        has("cmd.spellcheck    spellcheck command → 3 essays"),
        "{text}"
    );
    assert!(
        has(&format!(
            "outcome spellcheck completed_with_failures: 2 ok, 1 failed ({batch}-e02)"
        )),
        "{text}"
    );
    assert!(
        has(&format!("failed essay {batch}-e02 in spellcheck")),
        "{text}"
    );
    assert!(has("skipped cj_assessment (already_completed)"), "{text}");
    assert!(
        has("pipeline spellcheck completed_successfully: 3 ok / 0 failed"),
        "another pipeline's end is shown: {text}"
    );
    assert!(
        lines.last().unwrap().contains("pipeline nlp completed_with_failures: 2 ok / 1 failed in 2.3 s (ran spellcheck, nlp; skipped —)"),
        "ends at the terminal event of the pipeline asked for:\n{text}"
    );
    // One line per event of the batch. (A produce retry that the test broker stores twice
    // shows up again, marked as a re-send.)
    let new = lines
        .iter()
        .filter(|l| !l.ends_with("(again: same event_id, a re-send)"))
        .count();
    assert_eq!(new, 6, "one line per event of the batch:\n{text}");
}

#[tokio::test]
async fn watch_from_the_beginning_shows_the_history_in_time_order() {
    let (bootstrap, p) = setup().await;
    let batch = unique("history");
    let corr = Uuid::new_v4();
    // Created in time order, published in reverse (on different topics).
    let command = command_event(&batch, corr, 2);
    let done = completed_event(
        &batch,
        corr,
        "spellcheck",
        BatchStatus::CompletedSuccessfully,
        2,
        0,
    );
    send(&p, topics::BATCH_PIPELINE_COMPLETED, &batch, &done).await;
    send(&p, topics::SPELLCHECK_INITIATE_COMMAND, &batch, &command).await;
    let (code, out, err) = finish(
        hulectl(
            &bootstrap,
            &[
                "watch",
                "--batch",
                &batch,
                "--from-beginning",
                "--correlation",
                &corr.to_string(),
            ],
        )
        .spawn()
        .unwrap(),
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains("spellcheck command → 2 essays"), "{out}");
    assert!(
        lines[1].contains("pipeline spellcheck completed_successfully: 2 ok / 0 failed"),
        "{out}"
    );
}

#[tokio::test]
async fn submit_wait_prints_the_terminal_event_of_its_request() {
    let (bootstrap, p) = setup().await;
    let batch = unique("wait");
    let mut child = hulectl(
        &bootstrap,
        &[
            "submit",
            "--batch",
            &batch,
            "--pipeline",
            "nlp",
            "--wait",
            "--timeout",
            "60",
        ],
    )
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let corr: Uuid = tokio::time::timeout(T, async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if let Some(c) = l.strip_prefix("correlation id: ") {
                return c.trim().parse().unwrap();
            }
        }
        panic!("no correlation id printed");
    })
    .await
    .unwrap();
    // The request is published after the tool started following, so the answer cannot be
    // missed. Another pipeline's terminal event first: it must not end the wait.
    send(
        &p,
        topics::BATCH_PIPELINE_COMPLETED,
        &batch,
        &completed_event(
            &batch,
            Uuid::new_v4(),
            "cj_assessment",
            BatchStatus::FailedCritically,
            0,
            3,
        ),
    )
    .await;
    send(
        &p,
        topics::BATCH_PIPELINE_COMPLETED,
        &batch,
        &completed_event(
            &batch,
            corr,
            "nlp",
            BatchStatus::CompletedWithFailures,
            17,
            3,
        ),
    )
    .await;
    let rest = tokio::time::timeout(T, async {
        let mut rest = String::new();
        while let Some(l) = lines.next_line().await.unwrap() {
            rest.push_str(&l);
            rest.push('\n');
        }
        rest
    })
    .await
    .unwrap();
    let (code, _, err) = finish(child).await;
    assert_eq!(code, 0, "{rest}\n{err}");
    assert!(
        rest.starts_with(&format!(
            "pipeline nlp for batch {batch}: completed_with_failures\n"
        )),
        "{rest}"
    );
    assert!(
        rest.contains(&format!("  correlation id   {corr}")),
        "{rest}"
    );
    assert!(
        rest.contains("  essays           17 successful, 3 failed"),
        "{rest}"
    );
}
