//! End-to-end suite: the `acceptance.md` scenarios against real processes.
//!
//! Starts its own stacks (broker, Redis, conductor, orchestrator, simulator — see
//! `huleedu_it::stack`; the broker is Apache Kafka, or tansu with `HULEEDU_TEST_BROKER=tansu`),
//! runs the scenarios concurrently on distinct batches, prints one line per scenario and a
//! `N passed, N failed` summary. Arguments that do not start with `-` filter scenarios by name;
//! `--smoke` runs only the smoke subset ([`SMOKE`], one stack). On Apache Kafka, four scenarios
//! run again (`secure::…`) on a stack in managed-infrastructure mode: the services reach Kafka
//! over SASL_SSL with SCRAM-SHA-512, Redis over TLS as a least-privilege ACL user and the
//! conductor over HTTPS, with every secret read from a file. Set `HULEEDU_KEEP_E2E=1` to keep
//! the stacks' logs.

mod ctx;
mod scenarios;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use huleedu_it::stack::{Stack, StackOptions};

use crate::ctx::Ctx;

type Scenario = fn(Arc<Ctx>) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

macro_rules! scenario {
    ($f:path) => {
        (stringify!($f), (|c| Box::pin($f(c))) as Scenario)
    };
}

async fn run_all(
    ctx: Arc<Ctx>,
    list: Vec<(&'static str, Scenario)>,
) -> Vec<(&'static str, Result<Duration, String>)> {
    let mut tasks = Vec::new();
    for (name, f) in list {
        let ctx = ctx.clone();
        tasks.push((
            name,
            tokio::spawn(async move {
                let start = Instant::now();
                match tokio::time::timeout(Duration::from_secs(240), f(ctx)).await {
                    Ok(Ok(())) => Ok(start.elapsed()),
                    Ok(Err(e)) => Err(format!("{e:#}")),
                    Err(_) => Err("timed out after 240 s".to_owned()),
                }
            }),
        ));
    }
    let mut out = Vec::new();
    for (name, t) in tasks {
        let r = match t.await {
            Ok(r) => r,
            Err(e) => Err(format!("panicked: {e}")),
        };
        out.push((name, r));
    }
    out
}

/// The smoke subset (`--smoke`): one scenario of each kind of behaviour — pruning across
/// pipelines, a full chain, essay failures carried over, a critical failure, an operator mark,
/// poison messages — on one stack. `scripts/test.sh` runs it against tansu to keep that broker
/// working.
const SMOKE: [&str; 6] = [
    "s01_cj_then_nlp",
    "s03_full_chain",
    "s08_s09_partial_failure_and_carry_over",
    "s10_critical_failure",
    "s13_manual_mark",
    "s17_poison",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let wanted = |name: &str| {
        (!smoke || SMOKE.iter().any(|s| name.ends_with(s)))
            && (filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
    };
    let main_list: Vec<(&str, Scenario)> = vec![
        scenario!(scenarios::s01_cj_then_nlp),
        scenario!(scenarios::s02_nlp_then_cj),
        scenario!(scenarios::s03_full_chain),
        scenario!(scenarios::s04_comprehensive_after_partial),
        scenario!(scenarios::s05_everything_done),
        scenario!(scenarios::s06_back_to_back),
        scenario!(scenarios::s07_many_batches),
        scenario!(scenarios::s08_s09_partial_failure_and_carry_over),
        scenario!(scenarios::s10_critical_failure),
        scenario!(scenarios::s11_unknown_pipeline),
        scenario!(scenarios::s11_parked_until_ready),
        scenario!(scenarios::s13_manual_mark),
        scenario!(scenarios::s14_s15_invalidate_and_inspect),
        scenario!(scenarios::s_retry_failed_essays),
        scenario!(scenarios::s17_poison),
    ]
    .into_iter()
    .filter(|(n, _)| wanted(n))
    .collect();
    // Scenarios that need a differently configured stack: short phase time-out, and a worker
    // that sends every outcome twice.
    let special_list: Vec<(&str, Scenario)> = vec![
        scenario!(scenarios::s12_phase_timeout),
        scenario!(scenarios::s16_duplicates),
    ]
    .into_iter()
    .filter(|(n, _)| wanted(n))
    .collect();

    // The same scenarios on a stack in managed-infrastructure mode: Kafka over SASL_SSL, Redis
    // over TLS with an ACL user, the conductor over HTTPS, secrets from files (Apache Kafka
    // only: tansu has no TLS).
    let secure_runs =
        huleedu_it::stack::BrokerKind::from_env() == huleedu_it::stack::BrokerKind::Kafka && !smoke;
    let secure_list: Vec<(&str, Scenario)> = if secure_runs {
        vec![
            scenario!(scenarios::s03_full_chain),
            scenario!(scenarios::s08_s09_partial_failure_and_carry_over),
            scenario!(scenarios::s13_manual_mark),
            scenario!(scenarios::s_retry_failed_essays),
        ]
        .into_iter()
        .filter(|(n, _)| wanted(n))
        .collect()
    } else {
        Vec::new()
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let results = rt.block_on(async {
        let mut results = Vec::new();
        println!(
            "\nrunning {} end-to-end scenarios{} on {}",
            main_list.len() + special_list.len() + secure_list.len(),
            if smoke { " (smoke subset)" } else { "" },
            huleedu_it::stack::BrokerKind::from_env().name()
        );
        if !main_list.is_empty() {
            let stack = Stack::start(StackOptions::new("main")).await;
            let ctx = Arc::new(Ctx::new(&stack).await);
            let r = run_all(ctx, main_list).await;
            report_logs(&stack, &r);
            results.extend(r);
        }
        if !special_list.is_empty() {
            let mut opts = StackOptions::new("special");
            opts.bos_env.push(("PHASE_TIMEOUT_SECS".into(), "3".into()));
            opts.sim_env
                .push(("SIM_DUPLICATE_OUTCOMES".into(), "true".into()));
            let stack = Stack::start(opts).await;
            let ctx = Arc::new(Ctx::new(&stack).await);
            let r = run_all(ctx, special_list).await;
            report_logs(&stack, &r);
            results.extend(r);
        }
        if !secure_list.is_empty() {
            let mut opts = StackOptions::new("secure");
            opts.secure = true;
            let stack = Stack::start(opts).await;
            let ctx = Arc::new(Ctx::new(&stack).await);
            let r = run_all(ctx, secure_list).await;
            report_logs(&stack, &r);
            results.extend(r.into_iter().map(|(n, r)| (secure_name(n), r)));
        }
        results
    });
    let mut failed = 0;
    for (name, r) in &results {
        match r {
            Ok(d) => println!("test {name} ... ok ({:.1} s)", d.as_secs_f64()),
            Err(e) => {
                failed += 1;
                println!("test {name} ... FAILED\n    {e}");
            }
        }
    }
    let passed = results.len() - failed;
    let label = if smoke { "e2e-smoke" } else { "e2e" };
    println!("\n{label}: {passed} passed, {failed} failed");
    rt.shutdown_timeout(Duration::from_secs(5));
    if failed > 0 {
        std::process::exit(1);
    }
}

/// A scenario's name in the managed-infrastructure run (`secure::…`).
fn secure_name(name: &'static str) -> &'static str {
    Box::leak(format!("secure::{}", name.trim_start_matches("scenarios::")).into_boxed_str())
}

fn report_logs(stack: &Stack, results: &[(&str, Result<Duration, String>)]) {
    if results.iter().any(|(_, r)| r.is_err()) {
        for name in ["batch-orchestrator", "batch-conductor", "els-simulator"] {
            eprintln!(
                "---- last lines of {name} ----\n{}",
                stack.log_tail(name, 15)
            );
        }
    }
}
