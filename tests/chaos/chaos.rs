//! Acceptance scenarios 18 and 19 at scale: SIGKILL of replicas at random moments, broker and
//! Redis restarts, one replica of each service killed for good — and afterwards every request
//! has exactly one terminal event and every invariant holds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use huleedu_contracts::topics;
use huleedu_it::observer::{Expectations, Observer, ObserverReport};
use huleedu_it::stack::{BrokerKind, Stack, StackOptions, BCS, BOS};
use huleedu_it::unique;
use serde_json::Value;

use crate::workload::{self, Client, Mode, Submitted};
use crate::{dump_logs, ready_within, Log, Rng};

/// Consumer session time-out of the orchestrators and conductors in the chaos stack.
const SESSION_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a SIGKILLed replica stays down.
///
/// On Apache Kafka, anything from a moment to twice the session time-out: a replica often comes
/// back while the group still counts its dead predecessor as a member, and the coordinator must
/// evict that member when its session expires.
///
/// On tansu, longer than the session time-out: tansu 0.6's group coordinator can hand
/// partitions to a dead member that has not yet timed out when a new member joins, and never
/// rebalance them again (see docs/reliability.md). A tansu-only workaround.
fn down_time(broker: BrokerKind, rng: &mut Rng) -> Duration {
    match broker {
        BrokerKind::Kafka => rng.millis(100, 2 * SESSION_TIMEOUT.as_millis() as u64),
        BrokerKind::Tansu => SESSION_TIMEOUT + rng.millis(1500, 3500),
    }
}

/// The Redis of a chaos run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisKind {
    /// One Redis with an append-only file; its faults are SIGKILL and restart.
    Standalone,
    /// A Redis Cluster (three masters, one replica each) with the services' commits confirmed
    /// by `wait_replicas` replicas; its faults are a master's SIGKILL, the failover to its
    /// replica, then the old master's restart (it rejoins as a replica).
    Cluster { wait_replicas: u32 },
}

/// How a chaos run is sized.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub redis: RedisKind,
    /// `Some(d)`: soak mode, chaos for `d`.
    pub soak: Option<Duration>,
    pub batches: usize,
    /// Delay between the starts of consecutive batches (spreads the load over the chaos).
    pub stagger: Duration,
}

impl Options {
    pub fn new(seed: u64, soak: Option<Duration>) -> Self {
        match soak {
            None => Self {
                seed,
                redis: RedisKind::Standalone,
                soak,
                batches: 40,
                stagger: Duration::from_millis(2000),
            },
            Some(d) => {
                let batches = (d.as_secs() as usize / 2).max(60);
                Self {
                    seed,
                    redis: RedisKind::Standalone,
                    soak,
                    batches,
                    stagger: d.mul_f64(0.9) / batches as u32,
                }
            }
        }
    }

    /// Hard bound of the whole scenario.
    pub fn bound(&self) -> Duration {
        match self.soak {
            None => Duration::from_secs(240),
            Some(d) => d + Duration::from_secs(360),
        }
    }

    /// Deadline for every request's terminal event, from the start of the load.
    fn workload_deadline(&self) -> Duration {
        match self.soak {
            None => Duration::from_secs(190),
            Some(d) => d + Duration::from_secs(240),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// SIGKILL one live replica of the service, restart it after a random pause.
    KillRestart(&'static str),
    /// SIGKILL one orchestrator and one conductor at the same moment, restart both.
    KillBoth,
    /// SIGKILL the broker, start it again on the same port and data (tansu: its SQLite file).
    RestartBroker,
    /// SIGKILL Redis, start it again on the same port and AOF directory; on a cluster, SIGKILL a
    /// master, wait for its replica's promotion, then start the old master again.
    RestartRedis,
    /// SIGKILL one replica of each service and never restart it.
    KillForGood,
    /// Cluster only: move a third of the slots of one master to another while the load runs.
    Reshard,
}

/// What the chaos did.
#[derive(Debug, Default)]
struct Tally {
    service_kills: usize,
    service_restarts: usize,
    broker_restarts: usize,
    redis_restarts: usize,
    reshards: usize,
    killed_for_good: Vec<String>,
    ready_after: Vec<Duration>,
    /// When each fault was injected.
    faults_at: Vec<Instant>,
}

struct Chaos<'a> {
    stack: &'a mut Stack,
    rng: Rng,
    log: &'a Log,
    tally: Tally,
    dead: BTreeSet<String>,
}

impl Chaos<'_> {
    fn alive(&mut self, service: &str) -> Vec<String> {
        let names = self.stack.replicas(service);
        names
            .into_iter()
            .filter(|n| !self.dead.contains(n))
            .collect()
    }

    async fn kill(&mut self, name: &str, why: &str) {
        let pid = self.stack.pid(name).unwrap_or(0);
        self.stack.kill(name).await;
        self.tally.service_kills += 1;
        self.log.say(format!("SIGKILL {name} (pid {pid}){why}"));
    }

    /// tansu only: wait until the consumer group of `service` has been quiet (no partitions
    /// revoked or assigned in any of `alive`) for twice the session time-out, at most 40 s.
    /// tansu 0.6 can keep assigning partitions to a member killed during or right after a
    /// rebalance and never evict it (docs/reliability.md), which strands those partitions for
    /// good. Under chaos tansu rebalances every few seconds, so the 40 s bound usually ends the
    /// wait: a workaround that makes the failure rarer, not impossible. On Apache Kafka a
    /// replica is killed for good at any moment, mid-rebalance included.
    async fn group_settled(&mut self, service: &str, alive: &[String]) {
        if self.stack.broker != BrokerKind::Tansu {
            return;
        }
        let quiet = SESSION_TIMEOUT * 2;
        let started = Instant::now();
        let group_events = |stack: &Stack| -> usize {
            alive
                .iter()
                .map(|name| {
                    stack
                        .log_tail(name, usize::MAX)
                        .lines()
                        .filter(|l| {
                            l.contains("partitions assigned") || l.contains("partitions revoked")
                        })
                        .count()
                })
                .sum()
        };
        let mut seen = group_events(self.stack);
        let mut since = Instant::now();
        while since.elapsed() < quiet {
            if started.elapsed() > Duration::from_secs(40) {
                self.log.say(format!(
                    "group of {service} still rebalancing after 40 s; killing anyway"
                ));
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = group_events(self.stack);
            if now != seen {
                seen = now;
                since = Instant::now();
            }
        }
        self.log.say(format!(
            "group of {service} quiet for {:.0} s (waited {:.1} s)",
            quiet.as_secs_f64(),
            started.elapsed().as_secs_f64()
        ));
    }

    async fn restart(&mut self, name: &str) -> anyhow::Result<()> {
        self.stack.spawn_service(name);
        self.tally.service_restarts += 1;
        let pid = self.stack.pid(name).unwrap_or(0);
        self.log.say(format!("restarted {name} (pid {pid})"));
        let url = self.stack.url(name).to_owned();
        match ready_within(&url, Duration::from_secs(60)).await {
            Some(d) => {
                self.tally.ready_after.push(d);
                self.log.say(format!(
                    "{name} ready {:.2} s after its restart",
                    d.as_secs_f64()
                ));
                Ok(())
            }
            None => bail!("{name} not ready within 60 s of its restart"),
        }
    }

    async fn all_ready(&mut self, what: &str) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut names = self.alive(BCS);
        names.extend(self.alive(BOS));
        for n in &names {
            let url = self.stack.url(n).to_owned();
            if ready_within(&url, Duration::from_secs(60)).await.is_none() {
                bail!("{n} not ready within 60 s after the {what} restart");
            }
        }
        self.log.say(format!(
            "every live replica ready {:.2} s after the {what} came back",
            start.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    async fn act(&mut self, action: Action) -> anyhow::Result<()> {
        self.tally.faults_at.push(Instant::now());
        match action {
            Action::KillRestart(service) => {
                let alive = self.alive(service);
                let name = self.rng.pick(&alive).clone();
                self.kill(&name, "").await;
                let down = down_time(self.stack.broker, &mut self.rng);
                tokio::time::sleep(down).await;
                self.restart(&name).await?;
            }
            Action::KillBoth => {
                let (bos_alive, bcs_alive) = (self.alive(BOS), self.alive(BCS));
                let bos = self.rng.pick(&bos_alive).clone();
                let bcs = self.rng.pick(&bcs_alive).clone();
                self.kill(&bos, " together with").await;
                self.kill(&bcs, "").await;
                let down = down_time(self.stack.broker, &mut self.rng);
                tokio::time::sleep(down).await;
                self.restart(&bcs).await?;
                self.restart(&bos).await?;
            }
            Action::RestartBroker => {
                let pid = self.stack.pid(huleedu_it::stack::BROKER).unwrap_or(0);
                self.stack.kill_broker().await;
                self.log.say(format!(
                    "SIGKILL broker ({} pid {pid})",
                    self.stack.broker.name()
                ));
                let down = self.rng.millis(300, 3000);
                tokio::time::sleep(down).await;
                let t = Instant::now();
                self.stack.start_broker().await;
                self.tally.broker_restarts += 1;
                self.log.say(format!(
                    "broker restarted on the same port and data after {:.2} s down (listening {:.2} s after start)",
                    down.as_secs_f64(),
                    t.elapsed().as_secs_f64()
                ));
                self.all_ready("broker").await?;
            }
            Action::RestartRedis if !self.stack.redis_cluster_ports().is_empty() => {
                self.fail_over_a_master().await?;
            }
            Action::RestartRedis => {
                let pid = self.stack.pid(huleedu_it::stack::REDIS).unwrap_or(0);
                self.stack.kill_redis().await;
                self.log.say(format!("SIGKILL redis (pid {pid})"));
                let down = self.rng.millis(300, 3000);
                tokio::time::sleep(down).await;
                let t = Instant::now();
                self.stack.start_redis().await;
                self.tally.redis_restarts += 1;
                self.log.say(format!(
                    "redis restarted on the same port and AOF after {:.2} s down (listening {:.2} s after start)",
                    down.as_secs_f64(),
                    t.elapsed().as_secs_f64()
                ));
                self.all_ready("redis").await?;
            }
            Action::Reshard => {
                let masters = self.stack.redis_cluster_masters().await?;
                ensure!(
                    masters.len() >= 2,
                    "two masters to reshard between: {masters:?}"
                );
                let from = *self.rng.pick(&masters);
                let others: Vec<u16> = masters.into_iter().filter(|p| *p != from).collect();
                let to = *self.rng.pick(&others);
                self.log.say(format!(
                    "resharding 1820 slots from the master on port {from} to the one on {to}"
                ));
                // The services' buckets (default key prefixes): which of their slots move.
                let tags: Vec<String> = ["bos", "bcs"]
                    .iter()
                    .flat_map(|p| {
                        (0..huleedu_store::BUCKETS).map(move |b| format!("{{{p}:b{b:02}}}"))
                    })
                    .collect();
                let before = self.stack.redis_slot_owners(&tags).await?;
                let took = self.stack.redis_cluster_reshard(from, to, 1820).await?;
                let after = self.stack.redis_slot_owners(&tags).await?;
                let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
                self.tally.reshards += 1;
                self.log.say(format!(
                    "resharding done in {:.2} s; {moved} of the services' {} bucket slots moved",
                    took.as_secs_f64(),
                    tags.len()
                ));
            }
            Action::KillForGood => {
                for service in [BOS, BCS] {
                    let alive = self.alive(service);
                    if alive.len() < 2 {
                        continue;
                    }
                    self.group_settled(service, &alive).await;
                    let name = self.rng.pick(&alive).clone();
                    self.kill(&name, " for good").await;
                    self.dead.insert(name.clone());
                    self.tally.killed_for_good.push(name);
                }
            }
        }
        Ok(())
    }
}

impl Chaos<'_> {
    /// SIGKILL one master of the cluster (picked at random), wait until the cluster has
    /// promoted its replica, then start the old master again after a random pause: it rejoins
    /// as the new master's replica.
    async fn fail_over_a_master(&mut self) -> anyhow::Result<()> {
        let masters = self.stack.redis_cluster_masters().await?;
        ensure!(
            masters.len() == 3,
            "three masters before the kill: {masters:?}"
        );
        let port = *self.rng.pick(&masters);
        self.stack.kill_redis_node(port).await;
        let killed = Instant::now();
        self.log
            .say(format!("SIGKILL redis cluster master on port {port}"));
        // Until the replica takes over, the services say they are not ready (a master does not
        // answer): watch one orchestrator's /readyz meanwhile.
        let watched = self.alive(BOS)[0].clone();
        let watched_url = self.stack.url(&watched).to_owned();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let mut not_ready_seen = 0;
        let promoted = loop {
            if let Ok(now) = self.stack.redis_cluster_masters().await {
                if now.len() == 3 && !now.contains(&port) {
                    break now;
                }
            }
            ensure!(
                killed.elapsed() < Duration::from_secs(30),
                "no replica promoted within 30 s of the master's kill"
            );
            if let Ok(r) = http.get(format!("{watched_url}/readyz")).send().await {
                if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                    not_ready_seen += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        self.log.say(format!(
            "replica promoted {:.2} s after the kill: masters now {promoted:?}; {watched} answered /readyz 503 {not_ready_seen} times meanwhile",
            killed.elapsed().as_secs_f64()
        ));
        // Ready again on the new topology alone, before the old master comes back.
        self.all_ready("redis cluster failover").await?;
        tokio::time::sleep(self.rng.millis(300, 3000)).await;
        self.stack.start_redis_node(port).await;
        self.tally.redis_restarts += 1;
        self.log.say(format!(
            "old master on port {port} started again {:.2} s after its kill (rejoins as a replica)",
            killed.elapsed().as_secs_f64()
        ));
        self.all_ready("redis cluster node").await
    }
}

/// The planned faults of a normal run, in a seeded random order.
fn plan(rng: &mut Rng) -> Vec<Action> {
    let mut p = vec![
        Action::KillRestart(BOS),
        Action::KillRestart(BCS),
        Action::KillBoth,
        Action::RestartBroker,
        Action::RestartRedis,
        Action::KillForGood,
        Action::KillRestart(BOS),
        Action::KillRestart(BCS),
        Action::RestartBroker,
        Action::RestartRedis,
    ];
    for i in (1..p.len()).rev() {
        let j = rng.range(0, i as u64) as usize;
        p.swap(i, j);
    }
    p
}

fn random_action(rng: &mut Rng) -> Action {
    *rng.pick(&[
        Action::KillRestart(BOS),
        Action::KillRestart(BCS),
        Action::KillRestart(BOS),
        Action::KillRestart(BCS),
        Action::KillBoth,
        Action::RestartBroker,
        Action::RestartRedis,
    ])
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    let log = Log::new("chaos");
    let mut rng = Rng::new(opts.seed);
    log.say(format!(
        "seed {} | {} batches × {} sequential pipelines | 2 orchestrators + 2 conductors, durable broker ({}) and {}{}",
        opts.seed,
        opts.batches,
        workload::PIPELINES.len(),
        match BrokerKind::from_env() {
            BrokerKind::Kafka => "Apache Kafka",
            BrokerKind::Tansu => "tansu on SQLite",
        },
        match opts.redis {
            RedisKind::Standalone => "Redis (AOF, fsync always)".to_owned(),
            RedisKind::Cluster { wait_replicas } => format!(
                "a Redis Cluster (3 masters + 3 replicas, AOF fsync always; REDIS_WAIT_REPLICAS={wait_replicas})"
            ),
        },
        match opts.soak {
            Some(d) => format!(" | soak for {} s", d.as_secs()),
            None => String::new(),
        }
    ));
    let mut so = StackOptions::new("chaos");
    so.durable = true;
    match opts.redis {
        RedisKind::Standalone => so.redis_cluster = false,
        RedisKind::Cluster { wait_replicas } => {
            so.redis_cluster = true;
            so.redis_wait_replicas = wait_replicas;
        }
    }
    so.bos_replicas = 2;
    so.bcs_replicas = 2;
    // A killed replica's partitions move after the session time-out; keep it short.
    for env in [&mut so.bos_env, &mut so.bcs_env] {
        env.push((
            "KAFKA_SESSION_TIMEOUT_MS".into(),
            SESSION_TIMEOUT.as_millis().to_string(),
        ));
    }
    // Some simulated work per essay, so that kills land while phases are in flight.
    so.sim_env
        .push(("SIM_ESSAY_LATENCY_MS".into(), "15".into()));
    let mut stack = Stack::start(so).await;
    log.say(format!(
        "stack up: broker {}, redis {}, {:?} + {:?}, conductors behind {}",
        stack.kafka,
        stack.redis,
        stack.replicas(BOS),
        stack.replicas(BCS),
        stack.bcs_url
    ));
    let result = scenario(&opts, &mut stack, &mut rng, &log).await;
    if result.is_err() {
        dump_logs(&stack);
    }
    result
}

async fn scenario(
    opts: &Options,
    stack: &mut Stack,
    rng: &mut Rng,
    log: &Log,
) -> anyhow::Result<()> {
    let observer = Arc::new(Observer::start(&stack.kafka).await?);
    let client = Client::new(&stack.kafka, &stack.sim_url, observer.clone())?;
    let run = unique("chaos");
    let batches: Vec<String> = (0..opts.batches)
        .map(|i| format!("{run}-b{i:03}"))
        .collect();
    for (i, b) in batches.iter().enumerate() {
        client.register(b, &workload::failures(i)).await?;
    }
    log.say(format!(
        "registered {} batches of {} essays ({} with failing essays)",
        batches.len(),
        workload::ESSAYS,
        (0..batches.len())
            .filter(|i| !workload::failures(*i).is_empty())
            .count()
    ));

    // The load: batch i starts after i × stagger; even batches submit their pipelines one
    // after the other, odd ones all three at once.
    let load_start = Instant::now();
    let deadline = load_start + opts.workload_deadline();
    let mut tasks = Vec::new();
    for (i, b) in batches.iter().enumerate() {
        let client = client.clone();
        let b = b.clone();
        let delay = opts.stagger * i as u32;
        let mode = if i % 2 == 0 {
            Mode::Sequential
        } else {
            Mode::Queued
        };
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            client.run_batch(&b, mode, deadline).await
        }));
    }
    let load_span = opts.stagger * batches.len() as u32;

    // The chaos, while the load runs.
    let mut chaos = Chaos {
        stack,
        rng: rng.clone(),
        log,
        tally: Tally::default(),
        dead: BTreeSet::new(),
    };
    let mut planned = plan(&mut chaos.rng);
    if opts.redis != RedisKind::Standalone {
        // Two reshards at seeded places among the other faults.
        for _ in 0..2 {
            let at = chaos.rng.range(0, planned.len() as u64) as usize;
            planned.insert(at, Action::Reshard);
        }
    }
    log.say(format!("planned faults: {planned:?}"));
    tokio::time::sleep(chaos.rng.millis(2000, 4000)).await;
    for action in planned {
        chaos.act(action).await?;
        tokio::time::sleep(chaos.rng.millis(1500, 4500)).await;
    }
    if let Some(d) = opts.soak {
        while load_start.elapsed() < d {
            let a = random_action(&mut chaos.rng);
            chaos.act(a).await?;
            tokio::time::sleep(chaos.rng.millis(2000, 8000)).await;
        }
    }
    log.say(format!(
        "chaos over ({} service kills, {} restarts, {} broker restarts, {} redis restarts, killed for good {:?}); load spread over {:.0} s",
        chaos.tally.service_kills,
        chaos.tally.service_restarts,
        chaos.tally.broker_restarts,
        chaos.tally.redis_restarts,
        chaos.tally.killed_for_good,
        load_span.as_secs_f64()
    ));
    let tally = std::mem::take(&mut chaos.tally);

    // Every request must end.
    let mut submitted: Vec<Submitted> = Vec::new();
    let mut errors = Vec::new();
    for t in tasks {
        let (s, r) = t.await?;
        submitted.extend(s);
        if let Err(e) = r {
            errors.push(format!("{e:#}"));
        }
    }
    if !errors.is_empty() {
        // Still show what the observer sees, for the diagnosis.
        let _ = observer.wait_caught_up(Duration::from_secs(10)).await;
        let r = observer
            .check(&chaos.stack.bcs_url.clone(), Expectations::default())
            .await;
        print!("{r}");
        bail!(
            "{} batches did not finish: {}",
            errors.len(),
            errors.join("; ")
        );
    }
    let last_done = submitted
        .iter()
        .map(|s| s.done_at)
        .max()
        .unwrap_or(load_start);
    let under_load = tally.faults_at.iter().filter(|t| **t < last_done).count();
    log.say(format!(
        "all {} requests have their terminal event; the last one {:.1} s after the load started; {under_load} of {} faults were injected while requests were open",
        submitted.len(),
        (last_done - load_start).as_secs_f64(),
        tally.faults_at.len()
    ));

    // The observer's verdict. The conductor may still be consuming the last terminal events:
    // check again (deadline) until its records agree or time runs out.
    observer.wait_caught_up(Duration::from_secs(60)).await?;
    let expect = Expectations {
        each_phase_once: true,
        allow_poison: false,
    };
    let bcs_url = chaos.stack.bcs_url.clone();
    let check_start = Instant::now();
    let report: ObserverReport = loop {
        let r = observer.check(&bcs_url, expect).await;
        if r.ok() || check_start.elapsed() > Duration::from_secs(30) {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        observer.wait_caught_up(Duration::from_secs(30)).await?;
    };
    print!("{report}");
    let statuses = final_statuses(&observer);
    log.say(format!("terminal final statuses: {statuses:?}"));
    let sim_problems = workload::simulator_counts(&chaos.stack.sim_url, &batches).await?;
    // Redeliveries the conductors dropped by their dedup markers (only the processes alive at
    // the end report: a restarted process starts its counters at 0).
    let mut conductor_duplicates = 0.0;
    for name in chaos.alive(BCS) {
        let url = chaos.stack.url(&name).to_owned();
        conductor_duplicates += crate::metric_sum(
            &url,
            "bcs_events_consumed_total",
            &[("outcome", "duplicate")],
        )
        .await
        .unwrap_or(0.0);
    }
    log.say(format!(
        "redelivered events dropped as duplicates by the conductor processes alive at the end: {conductor_duplicates}"
    ));

    let mut took: Vec<Duration> = submitted.iter().map(|s| s.took).collect();
    took.sort();
    let pct = |q: f64| {
        took.get(((took.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, Duration::as_secs_f64)
    };
    let mut ready = tally.ready_after.clone();
    ready.sort();
    let lost = report.missing_terminals;
    let doubled = report.duplicates_found;
    println!(
        "CHAOS SUMMARY broker={} redis={} seed={} batches={} requests={} terminal_events={} (distinct {}, re-sends {}) commands={} outcomes={} dlq_records={} skipped_events={} messages={} | service SIGKILLs={} restarts={} broker_restarts={} redis_restarts={} reshards={} killed_for_good={:?} faults_while_requests_open={}/{} | restart-to-ready min/median/max = {:.2}/{:.2}/{:.2} s | request-to-terminal p50={:.2} s p95={:.2} s max={:.2} s | lost={} doubled={} violations={} | {:.1} s",
        chaos.stack.broker.name(),
        match opts.redis {
            RedisKind::Standalone => "standalone".to_owned(),
            RedisKind::Cluster { wait_replicas } => format!("cluster(wait={wait_replicas})"),
        },
        opts.seed,
        batches.len(),
        report.requests,
        report.terminal_messages,
        report.distinct_terminals,
        report.terminal_resends,
        report.commands,
        report.outcomes,
        report.dlq_records,
        report.skipped_events,
        report.messages,
        tally.service_kills,
        tally.service_restarts,
        tally.broker_restarts,
        tally.redis_restarts,
        tally.reshards,
        tally.killed_for_good,
        under_load,
        tally.faults_at.len(),
        ready.first().map_or(0.0, Duration::as_secs_f64),
        ready.get(ready.len() / 2).map_or(0.0, Duration::as_secs_f64),
        ready.last().map_or(0.0, Duration::as_secs_f64),
        pct(0.5),
        pct(0.95),
        pct(1.0),
        lost,
        doubled,
        report.violations.len(),
        log.elapsed().as_secs_f64()
    );

    ensure!(
        report.ok(),
        "{} invariant violations",
        report.violations.len()
    );
    ensure!(
        sim_problems.is_empty(),
        "simulator counts: {}",
        sim_problems.join("; ")
    );
    ensure!(
        report.requests == submitted.len() && report.requests_with_one_terminal == submitted.len(),
        "{} requests submitted, observer saw {} with exactly one terminal event",
        submitted.len(),
        report.requests_with_one_terminal
    );
    ensure!(
        !statuses.contains_key("failed_critically"),
        "no pipeline may fail critically under chaos: {statuses:?}"
    );
    ensure!(
        report.dlq_records > 0 && report.dlq_records == report.failed_essays_reported,
        "every failed essay once on the DLQ: {} records for {} failed essays",
        report.dlq_records,
        report.failed_essays_reported
    );
    if opts.soak.is_none() {
        ensure!(
            tally.broker_restarts >= 2
                && tally.redis_restarts >= 2
                && tally.killed_for_good.len() == 2
                && (opts.redis == RedisKind::Standalone || tally.reshards == 2),
            "the planned faults all happened"
        );
    }
    Ok(())
}

/// Terminal events by `final_status` (distinct event ids).
fn final_statuses(observer: &Observer) -> BTreeMap<String, usize> {
    let mut seen = BTreeSet::new();
    let mut out = BTreeMap::new();
    for m in observer.on(topics::BATCH_PIPELINE_COMPLETED) {
        let Ok(v) = serde_json::from_slice::<Value>(&m.payload) else {
            continue;
        };
        if seen.insert(v["event_id"].to_string()) {
            *out.entry(v["data"]["final_status"].as_str().unwrap_or("?").to_owned())
                .or_insert(0) += 1;
        }
    }
    out
}
