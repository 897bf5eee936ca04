//! `acceptance.md` scenarios 1–15, each on its own batches.

use std::sync::Arc;

use anyhow::{anyhow, ensure};
use futures::future::try_join_all;
use huleedu_contracts::http::bos::{RetryPhaseAccepted, RetryPhaseRequest};
use huleedu_contracts::{topics, PhaseName};
use huleedu_it::{unique, JsonPayload};
use serde_json::{json, Value};

use crate::ctx::{essays_of, list, Ctx, Submitted, T};

type R = anyhow::Result<()>;

async fn run_pipeline(c: &Ctx, batch: &str, pipeline: &str) -> anyhow::Result<(Submitted, Value)> {
    let s = c.request(batch, pipeline).await?;
    let t = c.terminal(s).await?;
    Ok((s, t))
}

fn expect_phases(t: &Value, completed: &[&str], skipped: &[&str]) -> R {
    ensure!(
        list(t, "completed_phases") == completed,
        "completed_phases {:?} != {completed:?}",
        list(t, "completed_phases")
    );
    ensure!(
        list(t, "skipped_phases") == skipped,
        "skipped_phases {:?} != {skipped:?}",
        list(t, "skipped_phases")
    );
    Ok(())
}

async fn expect_counts(c: &Ctx, batch: &str, want: Value) -> R {
    let got = c.counts(batch).await?;
    ensure!(
        got == want,
        "simulator run counts for {batch}: {got} != {want}"
    );
    Ok(())
}

/// 1. CJ then NLP: spellcheck is pruned (a PhaseSkippedV1), and ran once.
pub async fn s01_cj_then_nlp(c: Arc<Ctx>) -> R {
    let b = unique("s01");
    c.register(&b, 10, json!({}), &[]).await?;
    let (_, t) = run_pipeline(&c, &b, "cj_assessment").await?;
    ensure!(t["final_status"] == "completed_successfully", "{t}");
    expect_phases(&t, &["spellcheck", "cj_assessment"], &[])?;
    ensure!(
        t["successful_essay_count"] == 10 && t["failed_essay_count"] == 0,
        "{t}"
    );
    let (s2, t) = run_pipeline(&c, &b, "nlp").await?;
    expect_phases(&t, &["nlp"], &["spellcheck"])?;
    let skipped = c.on(topics::BATCH_PHASE_SKIPPED, &b);
    ensure!(
        skipped.len() == 1,
        "one PhaseSkippedV1, saw {}",
        skipped.len()
    );
    let sk = skipped[0].json();
    ensure!(
        sk["data"]["phase_name"] == "spellcheck"
            && sk["data"]["skip_reason"] == "already_completed",
        "{sk}"
    );
    ensure!(
        sk["correlation_id"] == s2.correlation_id.to_string().as_str(),
        "skip carries the request's correlation id"
    );
    expect_counts(
        &c,
        &b,
        json!({"spellcheck": 1, "cj_assessment": 1, "nlp": 1}),
    )
    .await
}

/// 2. NLP then CJ.
pub async fn s02_nlp_then_cj(c: Arc<Ctx>) -> R {
    let b = unique("s02");
    c.register(&b, 10, json!({}), &[]).await?;
    let (_, t) = run_pipeline(&c, &b, "nlp").await?;
    expect_phases(&t, &["spellcheck", "nlp"], &[])?;
    let (_, t) = run_pipeline(&c, &b, "cj_assessment").await?;
    expect_phases(&t, &["cj_assessment"], &["spellcheck"])?;
    expect_counts(
        &c,
        &b,
        json!({"spellcheck": 1, "nlp": 1, "cj_assessment": 1}),
    )
    .await
}

/// 3. Full chain: the last runs only ai_feedback; every phase ran once.
pub async fn s03_full_chain(c: Arc<Ctx>) -> R {
    let b = unique("s03");
    c.register(&b, 10, json!({}), &[]).await?;
    run_pipeline(&c, &b, "cj_assessment").await?;
    let (_, t) = run_pipeline(&c, &b, "nlp").await?;
    expect_phases(&t, &["nlp"], &["spellcheck"])?;
    let (_, t) = run_pipeline(&c, &b, "ai_feedback").await?;
    expect_phases(&t, &["ai_feedback"], &["spellcheck", "nlp"])?;
    ensure!(t["final_status"] == "completed_successfully", "{t}");
    expect_counts(
        &c,
        &b,
        json!({"spellcheck": 1, "cj_assessment": 1, "nlp": 1, "ai_feedback": 1}),
    )
    .await
}

/// 4. Comprehensive after nlp runs cj_assessment and ai_feedback only.
pub async fn s04_comprehensive_after_partial(c: Arc<Ctx>) -> R {
    let b = unique("s04");
    c.register(&b, 10, json!({}), &[]).await?;
    run_pipeline(&c, &b, "nlp").await?;
    let (_, t) = run_pipeline(&c, &b, "comprehensive").await?;
    expect_phases(
        &t,
        &["cj_assessment", "ai_feedback"],
        &["spellcheck", "nlp"],
    )?;
    expect_counts(
        &c,
        &b,
        json!({"spellcheck": 1, "nlp": 1, "cj_assessment": 1, "ai_feedback": 1}),
    )
    .await
}

/// 5. Everything already done: an immediate terminal event, nothing dispatched.
pub async fn s05_everything_done(c: Arc<Ctx>) -> R {
    let b = unique("s05");
    c.register(&b, 10, json!({}), &[]).await?;
    run_pipeline(&c, &b, "nlp").await?;
    let (_, t) = run_pipeline(&c, &b, "nlp").await?;
    ensure!(t["final_status"] == "completed_successfully", "{t}");
    expect_phases(&t, &[], &["spellcheck", "nlp"])?;
    expect_counts(&c, &b, json!({"spellcheck": 1, "nlp": 1})).await
}

/// 6. Back-to-back requests: both complete; spellcheck ran once.
pub async fn s06_back_to_back(c: Arc<Ctx>) -> R {
    let b = unique("s06");
    c.register(&b, 10, json!({}), &[]).await?;
    let (a, n) = tokio::join!(c.request(&b, "cj_assessment"), c.request(&b, "nlp"));
    let (ta, tn) = (c.terminal(a?).await?, c.terminal(n?).await?);
    for t in [&ta, &tn] {
        ensure!(t["final_status"] == "completed_successfully", "{t}");
    }
    expect_counts(
        &c,
        &b,
        json!({"spellcheck": 1, "cj_assessment": 1, "nlp": 1}),
    )
    .await
}

/// 7. Many batches at once: 50 batches × 3 sequential pipelines.
pub async fn s07_many_batches(c: Arc<Ctx>) -> R {
    let batches: Vec<String> = (0..50).map(|i| unique(&format!("s07-{i:02}"))).collect();
    try_join_all(batches.iter().map(|b| c.register(b, 10, json!({}), &[]))).await?;
    try_join_all(batches.iter().map(|b| {
        let c = c.clone();
        async move {
            for p in ["cj_assessment", "nlp", "ai_feedback"] {
                let (_, t) = run_pipeline(&c, b, p).await?;
                ensure!(
                    t["final_status"] == "completed_successfully",
                    "{b} {p}: {t}"
                );
            }
            expect_counts(
                &c,
                b,
                json!({"spellcheck": 1, "cj_assessment": 1, "nlp": 1, "ai_feedback": 1}),
            )
            .await
        }
    }))
    .await?;
    Ok(())
}

fn fail_ids(batch: &str, idx: &[usize]) -> Vec<String> {
    idx.iter().map(|i| format!("{batch}-e{i:02}")).collect()
}

/// 8 + 9. Partial failure, and failures carried across pipelines.
pub async fn s08_s09_partial_failure_and_carry_over(c: Arc<Ctx>) -> R {
    let b = unique("s08");
    let failed = fail_ids(&b, &[3, 5, 8]);
    let essays = c
        .register(&b, 10, json!({"spellcheck": failed}), &[])
        .await?;
    ensure!(essays.len() == 10, "10 essays registered");
    let (s, t) = run_pipeline(&c, &b, "cj_assessment").await?;
    ensure!(t["final_status"] == "completed_with_failures", "{t}");
    ensure!(
        t["successful_essay_count"] == 7 && t["failed_essay_count"] == 3,
        "{t}"
    );
    let cj = c.on(topics::CJ_ASSESSMENT_INITIATE_COMMAND, &b);
    ensure!(cj.len() == 1, "one cj command");
    let cj_essays = essays_of(&cj[0]);
    ensure!(
        cj_essays.len() == 7,
        "cj gets the 7 survivors: {cj_essays:?}"
    );
    let outcome = c
        .on(topics::ELS_BATCH_PHASE_OUTCOME, &b)
        .into_iter()
        .map(|m| m.json())
        .find(|v| v["data"]["phase_name"] == "spellcheck")
        .expect("spellcheck outcome");
    let spell_out: Vec<(String, String)> = outcome["data"]["processed_essays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["essay_id"].as_str().unwrap().to_owned(),
                e["text_storage_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    ensure!(
        cj_essays == spell_out,
        "cj uses spellcheck's output text ids"
    );
    ensure!(
        cj_essays.iter().all(|(id, _)| !failed.contains(id)),
        "failed essays stay out"
    );
    // Exactly 3 failed-essay DLQ records for this run.
    let dlq = c
        .wait_count(
            topics::FAILED_ESSAYS_DLQ,
            &b,
            3,
            "3 failed-essay DLQ records",
        )
        .await;
    let mut ids: Vec<String> = dlq
        .iter()
        .map(|m| {
            m.json()["data"]["essay_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    ids.sort();
    ensure!(
        ids == failed,
        "DLQ holds exactly the failed essays once each: {ids:?}"
    );
    let rec = dlq
        .iter()
        .find(|m| m.topic == topics::FAILED_ESSAYS_DLQ && m.key.as_deref() == Some(b.as_str()))
        .unwrap()
        .json();
    ensure!(rec["data"]["phase_name"] == "spellcheck", "{rec}");
    ensure!(
        rec["data"]["pipeline_correlation_id"] == s.correlation_id.to_string().as_str(),
        "{rec}"
    );
    // 9: nlp runs on the same 7 essays with spellcheck's output ids.
    let (_, t) = run_pipeline(&c, &b, "nlp").await?;
    expect_phases(&t, &["nlp"], &["spellcheck"])?;
    let nlp = c.on(topics::NLP_INITIATE_COMMAND, &b);
    ensure!(
        nlp.len() == 1 && essays_of(&nlp[0]) == spell_out,
        "nlp gets the same 7 with spellcheck's ids"
    );
    ensure!(
        t["successful_essay_count"] == 7 && t["failed_essay_count"] == 0,
        "{t}"
    );
    Ok(())
}

/// 10. Critical failure: spellcheck stays complete; a later cj request runs cj only.
pub async fn s10_critical_failure(c: Arc<Ctx>) -> R {
    let b = unique("s10");
    let all: Vec<usize> = (1..=10).collect();
    c.register(&b, 10, json!({"cj_assessment": fail_ids(&b, &all)}), &[])
        .await?;
    let (_, t) = run_pipeline(&c, &b, "cj_assessment").await?;
    ensure!(t["final_status"] == "failed_critically", "{t}");
    expect_phases(&t, &["spellcheck"], &[])?;
    let phases = c.bcs_phases(&b).await?;
    ensure!(
        phases["phases"]["spellcheck"]["status"] == "completed",
        "{phases}"
    );
    ensure!(
        phases["phases"]["cj_assessment"]["status"] == "failed",
        "{phases}"
    );
    c.overrides(&b, json!({}), &[]).await?;
    let (_, t) = run_pipeline(&c, &b, "cj_assessment").await?;
    ensure!(t["final_status"] == "completed_successfully", "{t}");
    expect_phases(&t, &["cj_assessment"], &["spellcheck"])?;
    expect_counts(&c, &b, json!({"spellcheck": 1, "cj_assessment": 2})).await
}

/// 11a. Unknown pipeline: terminal failed_critically with a reason.
pub async fn s11a_unknown_pipeline(c: Arc<Ctx>) -> R {
    let b = unique("s11a");
    c.register(&b, 3, json!({}), &[]).await?;
    let (_, t) = run_pipeline(&c, &b, "no_such_pipeline").await?;
    ensure!(t["final_status"] == "failed_critically", "{t}");
    ensure!(
        t["failure_reason"] == "unknown_pipeline: no_such_pipeline",
        "{t}"
    );
    expect_counts(&c, &b, json!({})).await
}

/// 11b. A request for a batch that becomes ready later is parked, then runs normally.
pub async fn s11b_unknown_batch_parked_until_ready(c: Arc<Ctx>) -> R {
    let b = unique("s11b");
    let s = c.request(&b, "nlp").await?;
    huleedu_it::wait_until(T, "request parked", || async {
        matches!(c.bos_status(&b).await, Ok((200, Some(v))) if v.parked.len() == 1)
    })
    .await;
    c.register(&b, 5, json!({}), &[]).await?;
    let t = c.terminal(s).await?;
    ensure!(t["final_status"] == "completed_successfully", "{t}");
    expect_phases(&t, &["spellcheck", "nlp"], &[])
}

/// 13. Manual mark: with a token nlp then runs nlp only; without a token 401, nothing recorded.
pub async fn s13_manual_mark(c: Arc<Ctx>) -> R {
    let b = unique("s13");
    c.register(&b, 5, json!({}), &[]).await?;
    let (code, _) = c.mark(&b, "spellcheck", true, None).await?;
    ensure!(code == 401, "no token → 401, got {code}");
    let (code, _) = c.mark(&b, "spellcheck", true, Some("wrong-token")).await?;
    ensure!(code == 401, "wrong token → 401, got {code}");
    let phases = c.bcs_phases(&b).await?;
    ensure!(
        phases["phases"].as_object().is_none_or(|m| m.is_empty()),
        "nothing recorded: {phases}"
    );
    let (code, body) = c.mark(&b, "spellcheck", true, Some(c.token())).await?;
    ensure!(code == 200 && body["status"] == "recorded", "{code} {body}");
    let (_, t) = run_pipeline(&c, &b, "nlp").await?;
    expect_phases(&t, &["nlp"], &["spellcheck"])?;
    expect_counts(&c, &b, json!({"nlp": 1})).await
}

/// 14 + 15. Manual invalidate after scenario 1, and the inspection views.
pub async fn s14_s15_invalidate_and_inspect(c: Arc<Ctx>) -> R {
    let b = unique("s14");
    c.register(&b, 6, json!({}), &[]).await?;
    run_pipeline(&c, &b, "cj_assessment").await?;
    let (code, _) = c.mark(&b, "spellcheck", false, Some(c.token())).await?;
    ensure!(code == 200, "invalidate → 200, got {code}");
    let (_, t) = run_pipeline(&c, &b, "nlp").await?;
    expect_phases(&t, &["spellcheck", "nlp"], &[])?;
    expect_counts(
        &c,
        &b,
        json!({"spellcheck": 2, "cj_assessment": 1, "nlp": 1}),
    )
    .await?;
    // 15: BCS shows provenance; BOS shows history with real counts.
    let (code, _) = c.mark(&b, "ai_feedback", true, Some(c.token())).await?;
    ensure!(code == 200, "mark → 200");
    let phases = c.bcs_phases(&b).await?;
    let src = |p: &str| {
        phases["phases"][p]["source"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    ensure!(
        ["event", "pipeline_completed"].contains(&src("nlp").as_str()),
        "nlp recorded from events: {phases}"
    );
    ensure!(
        ["event", "pipeline_completed"].contains(&src("cj_assessment").as_str()),
        "{phases}"
    );
    ensure!(src("ai_feedback") == "operator", "{phases}");
    ensure!(
        phases["phases"]["ai_feedback"]["operator"] == "e2e-operator",
        "operator kept: {phases}"
    );
    let (code, st) = c.bos_status(&b).await?;
    ensure!(code == 200, "BOS status 200");
    let st = st.ok_or_else(|| anyhow!("BOS status 200 without a document"))?;
    ensure!(st.essay_count == Some(6), "{st:?}");
    let hist = &st.history;
    ensure!(hist.len() == 2, "two finished pipelines: {st:?}");
    ensure!(
        hist[0].requested_pipeline == "cj_assessment" && hist[0].successful_essay_count == 6,
        "{st:?}"
    );
    ensure!(
        hist[1].requested_pipeline == "nlp"
            && hist[1].completed_phases == [PhaseName::Spellcheck, PhaseName::Nlp],
        "{st:?}"
    );
    let (code, _) = c.bos_status(&unique("never")).await?;
    ensure!(code == 404, "unknown batch → 404");
    Ok(())
}

/// 12. Phase time-out (runs on a stack with a short PHASE_TIMEOUT_SECS).
pub async fn s12_phase_timeout(c: Arc<Ctx>) -> R {
    let b = unique("s12");
    c.register(&b, 4, json!({}), &["spellcheck"]).await?;
    let (s, t) = run_pipeline(&c, &b, "nlp").await?;
    ensure!(t["final_status"] == "failed_critically", "{t}");
    ensure!(t["failure_reason"] == "phase_timeout: spellcheck", "{t}");
    expect_phases(&t, &[], &[])?;
    // A late outcome for the timed-out phase is ignored: no nlp command follows. (Waiting for
    // the orchestrators to commit past it, not for a counter other scenarios also move.)
    let late = json!({
        "event_id": uuid::Uuid::new_v4(), "event_type": topics::ELS_BATCH_PHASE_OUTCOME,
        "event_timestamp": "2026-01-01T00:00:00Z", "source_service": "e2e", "schema_version": 1,
        "correlation_id": s.correlation_id, "data_schema_uri": null,
        "data": {"batch_id": b, "phase_name": "spellcheck", "phase_status": "completed_successfully",
                 "processed_essays": [{"essay_id": format!("{b}-e01"), "text_storage_id": "x", "spellcheck_metrics": null}],
                 "failed_essay_ids": [], "correlation_id": s.correlation_id},
        "metadata": null});
    let delivered = c
        .publish_raw(
            topics::ELS_BATCH_PHASE_OUTCOME,
            &b,
            serde_json::to_vec(&late)?,
        )
        .await?;
    c.bos_handled(topics::ELS_BATCH_PHASE_OUTCOME, delivered)
        .await?;
    // Had it been taken for real, its effect — an nlp command — would be in the outbox now and
    // published within the relay's 250 ms sweep: none may appear in a second.
    c.none_within(
        topics::NLP_INITIATE_COMMAND,
        &b,
        std::time::Duration::from_secs(1),
        "no nlp command after the time-out",
    )
    .await?;
    let (_, st) = c.bos_status(&b).await?;
    ensure!(
        st.as_ref().is_some_and(|st| st.active_pipeline.is_none()),
        "{st:?}"
    );
    Ok(())
}

/// Essay-level retry (issue 5): re-run spellcheck for the essays that failed; the recovered
/// ones join later pipelines, one that fails again goes to the DLQ again.
pub async fn s_retry_failed_essays(c: Arc<Ctx>) -> R {
    let b = unique("sretry");
    let failed = fail_ids(&b, &[2, 6, 9]);
    c.register(&b, 10, json!({"spellcheck": failed}), &[])
        .await?;
    let (_, t) = run_pipeline(&c, &b, "cj_assessment").await?;
    ensure!(t["successful_essay_count"] == 7, "{t}");
    // The worker is "fixed" for two of the three essays.
    c.overrides(&b, json!({"spellcheck": [failed[2].clone()]}), &[])
        .await?;
    let retry = |reason: &str, operator: Option<&str>| RetryPhaseRequest {
        phase_name: "spellcheck".to_owned(),
        reason: reason.to_owned(),
        essay_ids: None,
        operator: operator.map(str::to_owned),
    };
    let unauth = c
        .http
        .post(format!("{}/v1/batches/{b}/retry-phase", c.bos))
        .json(&retry("x", None))
        .send()
        .await?;
    ensure!(unauth.status().as_u16() == 401, "retry without token → 401");
    let r = c
        .http
        .post(format!("{}/v1/batches/{b}/retry-phase", c.bos))
        .bearer_auth(c.token())
        .json(&retry("spellchecker fixed", Some("e2e-operator")))
        .send()
        .await?;
    ensure!(r.status().as_u16() == 202, "retry accepted: {}", r.status());
    let body: RetryPhaseAccepted = r.json().await?;
    let corr = body.correlation_id;
    let t = c
        .terminal(Submitted {
            correlation_id: corr,
        })
        .await?;
    ensure!(t["requested_pipeline"] == "spellcheck", "{t}");
    ensure!(t["completed_phases"] == json!(["spellcheck"]), "{t}");
    ensure!(
        t["successful_essay_count"] == 2 && t["failed_essay_count"] == 1,
        "{t}"
    );
    let spell_cmds = c.on(topics::SPELLCHECK_INITIATE_COMMAND, &b);
    ensure!(
        spell_cmds.len() == 2 && essays_of(&spell_cmds[1]).len() == 3,
        "the retry ran the 3 failed essays only"
    );
    // The essay that failed again is dead-lettered again (3 + 1 records).
    c.wait_count(topics::FAILED_ESSAYS_DLQ, &b, 4, "4 DLQ records")
        .await;
    // A later pipeline includes the two recovered essays.
    let (_, t) = run_pipeline(&c, &b, "nlp").await?;
    expect_phases(&t, &["nlp"], &["spellcheck"])?;
    let nlp = c.on(topics::NLP_INITIATE_COMMAND, &b);
    ensure!(
        nlp.len() == 1 && essays_of(&nlp[0]).len() == 9,
        "nlp gets 7 + 2 recovered essays"
    );
    let dlq = c.on(topics::FAILED_ESSAYS_DLQ, &b);
    ensure!(dlq.len() == 4, "no extra DLQ records: {}", dlq.len());
    Ok(())
}

/// Scenario 16, duplicates (runs on the stack whose worker sends every outcome twice): the
/// request and the readiness event are also delivered twice; nothing happens twice.
pub async fn s16_duplicates(c: Arc<Ctx>) -> R {
    let b = unique("s16");
    let failed = fail_ids(&b, &[1, 4]);
    c.register(&b, 6, json!({"spellcheck": failed}), &[])
        .await?;
    // Deliver the readiness event a second time, byte for byte.
    let ready = c
        .reader
        .wait_for(T, "readiness event", |all| {
            all.iter().any(|m| {
                m.topic == topics::BATCH_ESSAYS_READY && m.key.as_deref() == Some(b.as_str())
            })
        })
        .await
        .into_iter()
        .find(|m| m.topic == topics::BATCH_ESSAYS_READY && m.key.as_deref() == Some(b.as_str()))
        .unwrap();
    c.publish_raw(topics::BATCH_ESSAYS_READY, &b, ready.payload.clone())
        .await?;
    let s = c.request(&b, "cj_assessment").await?;
    let original = c
        .reader
        .wait_for(T, "request on the topic", |all| {
            all.iter().any(|m| {
                m.topic == topics::CLIENT_BATCH_PIPELINE_REQUEST
                    && m.key.as_deref() == Some(b.as_str())
            })
        })
        .await
        .into_iter()
        .find(|m| {
            m.topic == topics::CLIENT_BATCH_PIPELINE_REQUEST && m.key.as_deref() == Some(b.as_str())
        })
        .unwrap();
    c.publish_raw(
        topics::CLIENT_BATCH_PIPELINE_REQUEST,
        &b,
        original.payload.clone(),
    )
    .await?;
    let t = c.terminal(s).await?;
    ensure!(t["final_status"] == "completed_with_failures", "{t}");
    ensure!(
        t["successful_essay_count"] == 4 && t["failed_essay_count"] == 2,
        "counted once: {t}"
    );
    // A second pipeline behind it proves both duplicates were consumed before we count.
    let (_, t2) = run_pipeline(&c, &b, "nlp").await?;
    expect_phases(&t2, &["nlp"], &["spellcheck"])?;
    // The second copy of the last outcome may reach the topic after the terminal event (the
    // orchestrator ends the pipeline on the first copy): wait for it, with a deadline.
    c.wait_count(
        topics::ELS_BATCH_PHASE_OUTCOME,
        &b,
        6,
        "the worker's two copies of each of the 3 outcomes",
    )
    .await;
    for topic in [
        topics::SPELLCHECK_INITIATE_COMMAND,
        topics::CJ_ASSESSMENT_INITIATE_COMMAND,
        topics::NLP_INITIATE_COMMAND,
    ] {
        let ids: std::collections::BTreeSet<String> = c
            .on(topic, &b)
            .iter()
            .map(|m| m.json()["event_id"].to_string())
            .collect();
        ensure!(ids.len() == 1, "{topic}: one command, saw {}", ids.len());
    }
    let terminals: std::collections::BTreeSet<String> = c
        .on(topics::BATCH_PIPELINE_COMPLETED, &b)
        .iter()
        .map(|m| m.json()["event_id"].to_string())
        .collect();
    ensure!(
        terminals.len() == 2,
        "one terminal per request: {}",
        terminals.len()
    );
    // The conductor dead-letters while the orchestrator goes on: wait for both records.
    let dlq = c
        .wait_count(topics::FAILED_ESSAYS_DLQ, &b, 2, "2 DLQ records")
        .await;
    ensure!(
        dlq.len() == 2,
        "one DLQ record per failed essay: {}",
        dlq.len()
    );
    expect_counts(
        &c,
        &b,
        json!({"spellcheck": 1, "cj_assessment": 1, "nlp": 1}),
    )
    .await
}

/// Scenario 17: poison messages land in `<topic>.DLQ` with headers; the next valid event on
/// the same partition (same key) is processed. (A message over `KAFKA_MAX_MESSAGE_BYTES` cannot
/// reach this stack: the services create their topics with that limit. The consumer's rule is
/// tested where the topic allows more: kafka_plumbing.rs.)
pub async fn s17_poison(c: Arc<Ctx>) -> R {
    let b = unique("s17");
    c.register(&b, 3, json!({}), &[]).await?;
    let request_dlq = topics::dlq_topic(topics::CLIENT_BATCH_PIPELINE_REQUEST);
    let outcome_dlq = topics::dlq_topic(topics::ELS_BATCH_PHASE_OUTCOME);
    let reader = huleedu_it::TopicReader::start_on(&c.kafka, &[&request_dlq, &outcome_dlq]);
    let missing_field = json!({"event_id": uuid::Uuid::new_v4(), "event_type": topics::CLIENT_BATCH_PIPELINE_REQUEST,
        "event_timestamp": "2026-01-01T00:00:00Z", "source_service": "e2e", "schema_version": 1,
        "correlation_id": uuid::Uuid::new_v4(), "data_schema_uri": null,
        "data": {"batch_id": b, "client_correlation_id": uuid::Uuid::new_v4(), "user_id": "u"}, "metadata": null});
    let unknown_phase = json!({"event_id": uuid::Uuid::new_v4(), "event_type": topics::ELS_BATCH_PHASE_OUTCOME,
        "event_timestamp": "2026-01-01T00:00:00Z", "source_service": "e2e", "schema_version": 1,
        "correlation_id": uuid::Uuid::new_v4(), "data_schema_uri": null,
        "data": {"batch_id": b, "phase_name": "grammar_police", "phase_status": "completed_successfully",
                 "processed_essays": [], "failed_essay_ids": [], "correlation_id": uuid::Uuid::new_v4()}, "metadata": null});
    let mut wrong_type = missing_field.clone();
    wrong_type["data"]["requested_pipeline"] = json!("nlp");
    wrong_type["data"]["batch_id"] = json!(12345);
    let mut wrong_version = wrong_type.clone();
    wrong_version["data"]["batch_id"] = json!(b);
    wrong_version["schema_version"] = json!(2);
    for poison in [
        b"{not json".to_vec(),
        serde_json::to_vec(&wrong_type)?,
        serde_json::to_vec(&wrong_version)?,
    ] {
        c.publish_raw(topics::CLIENT_BATCH_PIPELINE_REQUEST, &b, poison)
            .await?;
    }
    c.publish_raw(
        topics::CLIENT_BATCH_PIPELINE_REQUEST,
        &b,
        serde_json::to_vec(&missing_field)?,
    )
    .await?;
    c.publish_raw(
        topics::ELS_BATCH_PHASE_OUTCOME,
        &b,
        serde_json::to_vec(&unknown_phase)?,
    )
    .await?;
    // The next valid request on the same partition still runs.
    let (_, t) = run_pipeline(&c, &b, "spellcheck").await?;
    ensure!(t["final_status"] == "completed_successfully", "{t}");
    let seen = reader
        .wait_for(T, "poison records", |all| {
            let n = |topic: &str| {
                all.iter()
                    .filter(|m| m.topic == topic && m.key.as_deref() == Some(b.as_str()))
                    .count()
            };
            n(&request_dlq) >= 4 && n(&outcome_dlq) >= 2
        })
        .await;
    let mine: Vec<_> = seen
        .iter()
        .filter(|m| m.key.as_deref() == Some(b.as_str()))
        .collect();
    let not_json = mine
        .iter()
        .find(|m| m.payload == b"{not json")
        .expect("invalid JSON dead-lettered byte for byte");
    ensure!(
        not_json.header("dlq.error.kind") == Some("decode"),
        "{:?}",
        not_json.headers
    );
    ensure!(
        not_json.header("dlq.original.topic") == Some(topics::CLIENT_BATCH_PIPELINE_REQUEST),
        "{:?}",
        not_json.headers
    );
    let reasons: Vec<&str> = mine
        .iter()
        .filter(|m| m.topic == request_dlq)
        .filter_map(|m| m.header("dlq.error.message"))
        .collect();
    for needle in ["batch_id", "schema_version"] {
        ensure!(
            reasons.iter().any(|r| r.contains(needle)),
            "a reason names {needle}: {reasons:?}"
        );
    }
    let missing = mine
        .iter()
        .find(|m| {
            m.topic == request_dlq
                && m.header("dlq.error.message")
                    .is_some_and(|e| e.contains("requested_pipeline"))
        })
        .unwrap();
    ensure!(
        missing.header("dlq.error.kind") == Some("validation"),
        "{:?}",
        missing.headers
    );
    ensure!(
        missing
            .header("dlq.error.message")
            .is_some_and(|e| e.contains("requested_pipeline")),
        "names the field: {:?}",
        missing.headers
    );
    // Both consumers of the outcome topic (orchestrator and conductor) dead-letter it.
    let groups: std::collections::BTreeSet<&str> = mine
        .iter()
        .filter(|m| m.topic == outcome_dlq)
        .filter_map(|m| m.header("dlq.consumer.group"))
        .collect();
    ensure!(
        groups.len() == 2,
        "one poison record per consuming service: {groups:?}"
    );
    ensure!(
        mine.iter().filter(|m| m.topic == outcome_dlq).all(|m| m
            .header("dlq.error.message")
            .is_some_and(|e| e.contains("phase_name"))),
        "the reason names phase_name"
    );
    Ok(())
}

/// Re-drive of a poison record: `POST /internal/v1/dlq/redrive` puts the record's original
/// bytes back on the topic they came from with `redrive.*` headers, once; a second re-drive is
/// refused saying when and by whom; the message, still poison, is dead-lettered again naming the
/// record it was re-driven from (the chain).
pub async fn s20_redrive_poison(c: Arc<Ctx>) -> R {
    let b = unique("s20");
    let request_dlq = topics::dlq_topic(topics::CLIENT_BATCH_PIPELINE_REQUEST);
    let reader = huleedu_it::TopicReader::start_on(
        &c.kafka,
        &[&request_dlq, topics::CLIENT_BATCH_PIPELINE_REQUEST],
    );
    let poison = format!("{{not json <script>alert('{b}')</script>");
    c.publish_raw(
        topics::CLIENT_BATCH_PIPELINE_REQUEST,
        &b,
        poison.clone().into_bytes(),
    )
    .await?;
    let mine = |m: &huleedu_it::Seen| {
        m.key.as_deref() == Some(b.as_str()) && m.payload == poison.as_bytes()
    };
    let first = reader
        .wait_for(T, "the poison record", |all| {
            all.iter().any(|m| m.topic == request_dlq && mine(m))
        })
        .await
        .into_iter()
        .find(|m| m.topic == request_dlq && mine(m))
        .unwrap();
    let redrive = |token: Option<&'static str>, operator: &'static str| {
        let mut req = c
            .http
            .post(format!("{}/internal/v1/dlq/redrive", c.bcs))
            .json(
                &json!({"dlq_topic": request_dlq, "partition": first.partition,
                          "offset": first.offset, "operator": operator, "reason": "e2e re-drive"}),
            );
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let r = req.send().await?;
            let code = r.status().as_u16();
            anyhow::Ok((code, r.json::<Value>().await.unwrap_or(Value::Null)))
        }
    };
    let (code, body) = redrive(None, "mallory").await?;
    ensure!(code == 401, "no token, no re-drive: {code} {body}");
    let (code, done) = redrive(Some(c.token()), "e2e-operator").await?;
    ensure!(code == 200, "re-drive answered {code}: {done}");
    ensure!(done["state"] == "published", "{done}");
    ensure!(
        done["topic"] == topics::CLIENT_BATCH_PIPELINE_REQUEST,
        "{done}"
    );
    let (code, again) = redrive(Some(c.token()), "someone-else").await?;
    ensure!(code == 409, "a second re-drive is refused: {code} {again}");
    ensure!(again["error"] == "already_redriven", "{again}");
    ensure!(
        again["detail"]["record"]["operator"] == "e2e-operator",
        "says by whom: {again}"
    );
    ensure!(
        again["detail"]["record"]["at"] == done["at"],
        "says when: {again}"
    );
    // The message is back on its topic, where the record said, byte for byte.
    let seen = reader
        .wait_for(T, "the re-driven message and its second record", |all| {
            all.iter()
                .filter(|m| m.topic == request_dlq && mine(m))
                .count()
                >= 2
                && all.iter().any(|m| {
                    m.topic == topics::CLIENT_BATCH_PIPELINE_REQUEST
                        && mine(m)
                        && m.header("redrive.operator").is_some()
                })
        })
        .await;
    let back = seen
        .iter()
        .find(|m| {
            m.topic == topics::CLIENT_BATCH_PIPELINE_REQUEST
                && mine(m)
                && m.header("redrive.operator").is_some()
        })
        .unwrap();
    ensure!(
        json!(back.partition) == done["partition"] && json!(back.offset) == done["offset"],
        "landed where the answer said: {done} vs {}@{}",
        back.partition,
        back.offset
    );
    ensure!(
        !back.headers.iter().any(|(k, _)| k.starts_with("dlq.")),
        "the old record's dlq.* headers are not sent again: {:?}",
        back.headers
    );
    let second = seen
        .iter()
        .find(|m| m.topic == request_dlq && mine(m) && m.offset != first.offset)
        .unwrap();
    ensure!(
        second.header("redrive.dlq.topic") == Some(request_dlq.as_str())
            && second.header("redrive.dlq.offset") == Some(first.offset.to_string().as_str())
            && second.header("redrive.operator") == Some("e2e-operator"),
        "the second record names the first: {:?}",
        second.headers
    );
    ensure!(
        second.header("dlq.error.kind") == Some("decode"),
        "{:?}",
        second.headers
    );
    // Only one copy went back.
    ensure!(
        seen.iter()
            .filter(|m| m.topic == topics::CLIENT_BATCH_PIPELINE_REQUEST && mine(m))
            .count()
            == 2,
        "the original and one re-drive"
    );
    Ok(())
}

/// The deployment's message size limit (`KAFKA_MAX_MESSAGE_BYTES`; the stacks keep the default).
const LIMIT: usize = huleedu_kafka::settings::DEFAULT_MAX_MESSAGE_BYTES;

/// Scenario 18, a batch at the size limit: 6000 essays whose ids make every message of the batch
/// (readiness, commands, outcomes) close to `KAFKA_MAX_MESSAGE_BYTES`, with failures, through
/// two pipelines; the second skips spellcheck and gets spellcheck's survivors.
pub async fn s18_batch_at_the_size_limit(c: Arc<Ctx>) -> R {
    const N: usize = 6000;
    // A long batch id makes long generated essay ids (`<batch>-eNN`): about 166 bytes per
    // essay in each message, 95 % of the limit for 6000 essays.
    let b = format!("{}-{}", unique("s18"), "x".repeat(50));
    let spell_failed = fail_ids(&b, &[10, 2000, 5999]);
    let nlp_failed = fail_ids(&b, &[20, 4000]);
    let essays = c
        .register(
            &b,
            N,
            json!({"spellcheck": spell_failed, "nlp": nlp_failed}),
            &[],
        )
        .await?;
    ensure!(essays.len() == N, "{N} essays registered");
    let (_, t) = run_pipeline(&c, &b, "cj_assessment").await?;
    ensure!(t["final_status"] == "completed_with_failures", "{t}");
    expect_phases(&t, &["spellcheck", "cj_assessment"], &[])?;
    ensure!(
        t["successful_essay_count"] == N - 3 && t["failed_essay_count"] == 3,
        "{t}"
    );
    let (_, t) = run_pipeline(&c, &b, "nlp").await?;
    ensure!(t["final_status"] == "completed_with_failures", "{t}");
    expect_phases(&t, &["nlp"], &["spellcheck"])?;
    ensure!(
        t["successful_essay_count"] == N - 5 && t["failed_essay_count"] == 2,
        "{t}"
    );
    let nlp = c.on(topics::NLP_INITIATE_COMMAND, &b);
    ensure!(nlp.len() == 1, "one nlp command, saw {}", nlp.len());
    let nlp_essays = essays_of(&nlp[0]);
    ensure!(
        nlp_essays.len() == N - 3 && nlp_essays.iter().all(|(id, _)| !spell_failed.contains(id)),
        "nlp gets spellcheck's {} survivors, got {}",
        N - 3,
        nlp_essays.len()
    );
    // Every message of the batch is within the limit, and the largest close to it.
    let sizes: Vec<(String, usize)> = [
        topics::BATCH_ESSAYS_READY,
        topics::SPELLCHECK_INITIATE_COMMAND,
        topics::CJ_ASSESSMENT_INITIATE_COMMAND,
        topics::NLP_INITIATE_COMMAND,
        topics::ELS_BATCH_PHASE_OUTCOME,
    ]
    .iter()
    .flat_map(|topic| c.on(topic, &b))
    .map(|m| (m.topic.clone(), m.payload.len()))
    .collect();
    ensure!(sizes.len() == 7, "7 messages of the batch: {sizes:?}");
    let largest = sizes.iter().map(|(_, n)| *n).max().unwrap_or(0);
    ensure!(
        largest <= LIMIT && largest * 100 >= LIMIT * 93,
        "largest message {largest} bytes, limit {LIMIT}: {sizes:?}"
    );
    // One failed-essay record per failure.
    let dlq = c
        .reader
        .wait_for(T, "5 failed-essay DLQ records", |all| {
            all.iter()
                .filter(|m| m.topic == topics::FAILED_ESSAYS_DLQ && m.key.as_deref() == Some(&b))
                .count()
                >= 5
        })
        .await;
    let n = dlq
        .iter()
        .filter(|m| m.topic == topics::FAILED_ESSAYS_DLQ && m.key.as_deref() == Some(&b))
        .count();
    ensure!(n == 5, "5 failed-essay records, saw {n}");
    expect_counts(
        &c,
        &b,
        json!({"spellcheck": 1, "cj_assessment": 1, "nlp": 1}),
    )
    .await
}

/// Scenario 19, a batch too large for its commands: its `BatchEssaysReady` fits (just), the spellcheck
/// command would not fit `KAFKA_MAX_MESSAGE_BYTES` less the record overhead. The pipeline ends
/// at once `failed_critically`, the reason naming the size and the limit; nothing is dispatched.
pub async fn s19_batch_over_the_size_limit(c: Arc<Ctx>) -> R {
    use huleedu_contracts::envelope::EventEnvelope;
    use huleedu_contracts::payloads::{
        BatchEssaysReady, EssayProcessingInputRefV1, SystemProcessingMetadata,
    };
    let b = unique("s19");
    let ready = |n: usize| {
        let data = BatchEssaysReady {
            event: "batch.essays.ready".into(),
            batch_id: b.clone(),
            ready_essays: (0..n)
                .map(|i| {
                    EssayProcessingInputRefV1::new(
                        format!("{b}-essay-{i:06}"),
                        format!("{:032x}", i),
                    )
                })
                .collect(),
            metadata: SystemProcessingMetadata::for_batch(b.clone(), Some("batch.essays.ready")),
            course_code: "ENG5".into(),
            course_language: "en".into(),
            student_prompt_ref: None,
            class_type: "REGULAR".into(),
        };
        EventEnvelope::new(
            topics::BATCH_ESSAYS_READY,
            "e2e",
            uuid::Uuid::new_v4(),
            data,
        )
        .to_json_bytes()
    };
    // As many essays as fit 300 bytes under the limit (room for the record's framing).
    let per_essay = ready(2).len() - ready(1).len();
    let mut n = (LIMIT - 300 - ready(0).len()) / per_essay;
    let mut bytes = ready(n);
    while bytes.len() > LIMIT - 300 {
        n -= 1;
        bytes = ready(n);
    }
    c.publish_raw(topics::BATCH_ESSAYS_READY, &b, bytes.clone())
        .await?;
    let (_, t) = run_pipeline(&c, &b, "spellcheck").await?;
    ensure!(t["final_status"] == "failed_critically", "{t}");
    let reason = t["failure_reason"].as_str().unwrap_or_default();
    ensure!(
        reason.starts_with(&format!(
            "command_too_large: the spellcheck command for {n} essays is "
        )) && reason.contains(&format!("over the {}-byte limit", LIMIT - 1024))
            && reason.contains("KAFKA_MAX_MESSAGE_BYTES"),
        "reason {reason:?} (readiness event {} bytes)",
        bytes.len()
    );
    ensure!(
        c.on(topics::SPELLCHECK_INITIATE_COMMAND, &b).is_empty(),
        "nothing dispatched"
    );
    Ok(())
}
