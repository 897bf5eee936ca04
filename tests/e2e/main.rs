//! End-to-end suite: the `acceptance.md` scenarios against real processes.
//!
//! Starts its own stacks (broker, Redis, conductor, orchestrator, simulator — see
//! `huleedu_it::stack`; the broker is Apache Kafka, or tansu with `HULEEDU_TEST_BROKER=tansu`)
//! and runs the scenarios as standard tests (`libtest-mimic`: the usual `test … ok` lines, a
//! `test result:` line, filters, `--list`, `--exact`, `--skip`). Scenarios of one stack run
//! side by side on distinct batches; the stacks run one after the other, each started by the
//! first scenario that needs it and stopped when its scenarios are done:
//!
//! - `scenarios::…` — the main stack;
//! - `scenarios::s12…`, `scenarios::s16…` — a stack with a 3 s phase time-out and a worker that
//!   sends every outcome twice;
//! - `secure::…` (Apache Kafka only) — four scenarios again on a stack in managed-infrastructure
//!   mode: the services reach Kafka over SASL_SSL with SCRAM-SHA-512, Redis over TLS as a
//!   least-privilege ACL user and the conductor over HTTPS, with every secret read from a file.
//!
//! With `HULEEDU_TEST_REDIS_MODE=cluster` every stack runs a Redis Cluster of its own (three
//! masters, one replica each) and the services `REDIS_MODE=cluster`; the main stack then also
//! sets `REDIS_WAIT_REPLICAS=1`, and the `secure::` group (one TLS Redis) is left out.
//!
//! `--smoke` runs only the smoke subset ([`SMOKE`], the main stack). Set `HULEEDU_KEEP_E2E=1` to
//! keep the stacks' logs.

mod console;
mod ctx;
mod monitoring;
mod scenarios;
mod traces;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use huleedu_it::stack::{BrokerKind, Stack, StackOptions};
use libtest_mimic::{Arguments, Conclusion, Failed, Trial};
use tokio::runtime::Runtime;

use crate::ctx::Ctx;

type Scenario = fn(Arc<Ctx>) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

macro_rules! scenario {
    ($f:path) => {
        (stringify!($f), (|c| Box::pin($f(c))) as Scenario)
    };
}

/// Longest a scenario may take.
const SCENARIO_BOUND: Duration = Duration::from_secs(240);

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

/// Scenarios sharing one stack.
struct Group {
    /// Prefix of the scenarios' test names (`scenarios::`, `secure::`).
    prefix: &'static str,
    opts: StackOptions,
    scenarios: Vec<(&'static str, Scenario)>,
}

/// The stack of a group, started by the first scenario that runs (or why it did not start).
type Started = tokio::sync::OnceCell<Result<(Stack, Arc<Ctx>), String>>;

/// Start a stack; a failure (the stack panics with what went wrong) becomes a message.
async fn start(opts: StackOptions) -> Result<(Stack, Arc<Ctx>), String> {
    let started = tokio::spawn(async move {
        let stack = Stack::start(opts).await;
        let ctx = Arc::new(Ctx::new(&stack).await);
        (stack, ctx)
    })
    .await;
    started.map_err(|e| match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "the stack panicked".to_owned()),
        Err(e) => e.to_string(),
    })
}

fn groups(smoke: bool) -> Vec<Group> {
    let mut main = vec![
        scenario!(scenarios::s01_cj_then_nlp),
        scenario!(scenarios::s02_nlp_then_cj),
        scenario!(scenarios::s03_full_chain),
        scenario!(scenarios::s04_comprehensive_after_partial),
        scenario!(scenarios::s05_everything_done),
        scenario!(scenarios::s06_back_to_back),
        scenario!(scenarios::s07_many_batches),
        scenario!(scenarios::s08_s09_partial_failure_and_carry_over),
        scenario!(scenarios::s10_critical_failure),
        scenario!(scenarios::s11a_unknown_pipeline),
        scenario!(scenarios::s11b_unknown_batch_parked_until_ready),
        scenario!(scenarios::s13_manual_mark),
        scenario!(scenarios::s14_s15_invalidate_and_inspect),
        scenario!(scenarios::s_retry_failed_essays),
        scenario!(scenarios::s17_poison),
        scenario!(scenarios::s20_redrive_poison),
        scenario!(console::s21_console_in_a_browser),
        scenario!(scenarios::s18_batch_at_the_size_limit),
        scenario!(scenarios::s19_batch_over_the_size_limit),
    ];
    if smoke {
        main.retain(|(name, _)| SMOKE.iter().any(|s| name.ends_with(s)));
        return vec![Group {
            prefix: "scenarios::",
            opts: StackOptions::new("smoke"),
            scenarios: main,
        }];
    }
    let mut special = StackOptions::new("special");
    special
        .bos_env
        .push(("PHASE_TIMEOUT_SECS".into(), "3".into()));
    special
        .sim_env
        .push(("SIM_DUPLICATE_OUTCOMES".into(), "true".into()));
    let mut main_opts = StackOptions::new("main");
    main_opts.console = true;
    if main_opts.redis_cluster {
        // Every acceptance scenario with commits confirmed by a replica.
        main_opts.redis_wait_replicas = 1;
    }
    let cluster = main_opts.redis_cluster;
    let mut watched = StackOptions::new("monitoring");
    watched.bos_env.push((
        "PHASE_TIMEOUT_SECS".into(),
        monitoring::PHASE_TIMEOUT_SECS.to_string(),
    ));
    let otlp_port = *traces::OTLP_PORT.get_or_init(huleedu_it::stack::free_port);
    let mut traced = StackOptions::new("traced");
    for env in [
        &mut traced.bos_env,
        &mut traced.bcs_env,
        &mut traced.sim_env,
    ] {
        env.extend([
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
                format!("http://127.0.0.1:{otlp_port}"),
            ),
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(),
                "http/json".to_owned(),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned()),
        ]);
    }
    let mut groups = vec![
        Group {
            prefix: "traces::",
            opts: traced,
            scenarios: vec![scenario!(traces::t01_one_trace_through_the_pipeline)],
        },
        Group {
            prefix: "monitoring::",
            opts: watched,
            scenarios: vec![scenario!(monitoring::m01_alerts_in_prometheus)],
        },
        Group {
            prefix: "scenarios::",
            opts: main_opts,
            scenarios: main,
        },
        Group {
            prefix: "scenarios::",
            opts: special,
            scenarios: vec![
                scenario!(scenarios::s12_phase_timeout),
                scenario!(scenarios::s16_duplicates),
            ],
        },
    ];
    // The secure stack runs one TLS Redis: on a cluster run it would repeat the standalone run.
    if BrokerKind::from_env() == BrokerKind::Kafka && !cluster {
        let mut secure = StackOptions::new("secure");
        secure.secure = true;
        groups.push(Group {
            prefix: "secure::",
            opts: secure,
            scenarios: vec![
                scenario!(scenarios::s03_full_chain),
                scenario!(scenarios::s08_s09_partial_failure_and_carry_over),
                scenario!(scenarios::s13_manual_mark),
                scenario!(scenarios::s_retry_failed_essays),
            ],
        });
    }
    groups
}

/// Run one group's scenarios as tests (side by side), then stop its stack.
fn run_group(rt: &Arc<Runtime>, args: &Arguments, group: Group) -> Conclusion {
    let started: Arc<Started> = Arc::new(tokio::sync::OnceCell::new());
    let opts = group.opts;
    let trials = group
        .scenarios
        .into_iter()
        .map(|(name, scenario)| {
            let test_name = format!("{}{}", group.prefix, name.trim_start_matches("scenarios::"));
            let (rt, started, opts) = (rt.clone(), started.clone(), opts.clone());
            Trial::test(test_name, move || {
                rt.block_on(async {
                    let ctx = match started.get_or_init(|| start(opts)).await {
                        Ok((_, ctx)) => ctx,
                        Err(why) => {
                            return Err(Failed::from(format!("the stack did not start: {why}")))
                        }
                    };
                    match tokio::time::timeout(SCENARIO_BOUND, scenario(ctx.clone())).await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(Failed::from(format!("{e:#}"))),
                        Err(_) => Err(Failed::from(format!("timed out after {SCENARIO_BOUND:?}"))),
                    }
                })
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(args, trials);
    // Every trial is done and dropped: the stack is this function's alone now.
    if let Some(Ok((stack, ctx))) = Arc::into_inner(started).and_then(|s| s.into_inner()) {
        if conclusion.has_failed() {
            for name in ["batch-orchestrator", "batch-conductor", "els-simulator"] {
                eprintln!(
                    "---- last lines of {name} ({} stack) ----\n{}",
                    group.prefix.trim_end_matches("::"),
                    stack.log_tail(name, 15)
                );
            }
        }
        drop(ctx);
        // Dropping the stack kills its processes (inside the runtime: the reader's consumer).
        rt.block_on(async move { drop(stack) });
    }
    conclusion
}

fn main() {
    let raw: Vec<String> = std::env::args().collect();
    let smoke = raw.iter().any(|a| a == "--smoke");
    let mut args = Arguments::from_iter(raw.into_iter().filter(|a| a != "--smoke"));
    // The scenarios of a stack wait on the system far more than they compute: run them all at
    // once unless told otherwise.
    if args.test_threads.is_none() {
        args.test_threads = Some(32);
    }
    let rt = huleedu_it::harness_runtime();
    println!(
        "\nend-to-end scenarios{} on {}",
        if smoke { " (smoke subset)" } else { "" },
        BrokerKind::from_env().name()
    );
    let mut failed = false;
    for group in groups(smoke) {
        failed |= run_group(&rt, &args, group).has_failed();
    }
    huleedu_it::shut_down(rt);
    if failed {
        std::process::exit(101);
    }
}
