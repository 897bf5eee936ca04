//! `hulectl demo` end to end: a whole local system (its own broker, of the kind
//! `HULEEDU_TEST_BROKER` names, and Redis, the conductor, the orchestrator and the reference
//! worker as processes, from the test kit's `Stack`), then the demo binary against it.
//!
//! Needs the service binaries next to this test, built from the current sources
//! (`cargo build --workspace --bins`; the suite's `scripts/test.sh` builds them first). Without
//! them the test fails, saying so.

use std::time::Duration;

use huleedu_it::stack::{Stack, StackOptions, OPERATOR_TOKEN};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_hulectl");

async fn hulectl(stack: &Stack, args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        Command::new(BIN)
            .args([
                "--kafka",
                &stack.kafka,
                "--bos-url",
                &stack.bos_url,
                "--bcs-url",
                &stack.bcs_url,
                "--sim-url",
                &stack.sim_url,
            ])
            .args(args)
            .env("NO_COLOR", "1")
            .env("OPERATOR_TOKEN", OPERATOR_TOKEN)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("hulectl finishes in time")
    .expect("hulectl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_runs_three_pipelines_and_reports() {
    // Fails with a message naming the binary when one is missing or older than its sources.
    for service in ["batch-conductor", "batch-orchestrator", "els-simulator"] {
        huleedu_it::stack::binary(service);
    }
    let mut opts = StackOptions::new("hulectl-demo");
    // A little simulated work, so progress is visible as it would be for a person.
    opts.sim_env
        .push(("SIM_ESSAY_LATENCY_MS".into(), "2".into()));
    let stack = Stack::start(opts).await;

    let (code, out, err) = hulectl(
        &stack,
        &[
            "demo",
            "--batch",
            "demo-it",
            "--essays",
            "20",
            "--fail",
            "3",
            "--timeout",
            "60",
        ],
    )
    .await;
    println!("{out}");
    assert_eq!(
        code,
        0,
        "demo failed:\n{out}\nstderr:\n{err}\nBOS log:\n{}",
        stack.log_tail("batch-orchestrator", 30)
    );
    let has = |needle: &str| out.contains(needle);
    // Progress: one line per event of each pipeline.
    assert!(
        has("request           request cj_assessment by hulectl-demo"),
        "{out}"
    );
    assert!(
        has("cmd.spellcheck    spellcheck command → 20 essays"),
        "{out}"
    );
    assert!(has("outcome spellcheck completed_with_failures: 17 ok, 3 failed (demo-it-e04, demo-it-e11, demo-it-e17)"), "{out}");
    assert!(has("skipped spellcheck (already_completed)"), "{out}");
    // The report.
    assert!(has("REPORT  batch demo-it"), "{out}");
    assert!(
        has("1. cj_assessment — completed_with_failures in "),
        "{out}"
    );
    assert!(
        has("   spellcheck     20 → 17          3 failed  completed_with_failures"),
        "{out}"
    );
    assert!(has("2. nlp — completed_successfully in "), "{out}");
    assert!(
        has("   phases skipped   spellcheck (already completed)"),
        "{out}"
    );
    assert!(has("3. ai_feedback — completed_successfully in "), "{out}");
    assert!(
        has("   phases skipped   spellcheck, nlp (already completed)"),
        "{out}"
    );
    assert!(
        has("Failed-essay DLQ (huleedu.pipelines.failed_essays.DLQ): 3 records for this batch"),
        "{out}"
    );
    for e in ["e04", "e11", "e17"] {
        assert!(
            has(&format!(
                "  demo-it-{e}  spellcheck  completed_with_failures"
            )),
            "{out}"
        );
    }
    assert_eq!(
        out.matches("ran once").count(),
        4,
        "every phase exactly once:\n{out}"
    );
    assert!(
        has("RESULT: all 3 pipelines ended; no phase ran twice."),
        "{out}"
    );

    // The other commands on the same batch.
    let (code, out, err) = hulectl(&stack, &["status", "--batch", "demo-it"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("ai_feedback    completed_successfully    17  0       completed"),
        "{out}"
    );
    let (code, out, err) = hulectl(
        &stack,
        &["dlq", "list", "--batch", "demo-it", "--kind", "essays"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3 records of batch demo-it"), "{out}");
    let (code, out, err) = hulectl(
        &stack,
        &[
            "mark",
            "--batch",
            "demo-it",
            "--phase",
            "nlp",
            "--not-complete",
            "--reason",
            "model fixed",
            "--operator",
            "it",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("recorded: nlp of batch demo-it is now failed (source operator)"),
        "{out}"
    );
}
