//! Wiring: build every component from the settings, run them, shut them down in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use huleedu_contracts::topics;
use huleedu_contracts::Timestamp;
use huleedu_http::metrics::Metrics;
use huleedu_http::probes::Readiness;
use huleedu_http::{HttpListener, HttpServer};
use huleedu_kafka::admin::with_dlq_topics;
use huleedu_kafka::ConsumerStatus;
use huleedu_kafka::{provision_topics, ConsumerRunner, Producer};
use huleedu_service::shutdown::join;
use huleedu_store::{sample_every, OutboxMetrics, OutboxRelay, StateGauges, Store};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::conductor::Conductor;
use crate::core::Core;
use crate::handler::{BosHandler, CONSUMED};
use crate::http::{router, HttpState};
use crate::metrics::{BosMetrics, PipelineGauges};
use crate::scheduler::Scheduler;
use crate::settings::BosSettings;

/// Topics BOS publishes to.
pub const PRODUCED: [&str; 6] = [
    topics::SPELLCHECK_INITIATE_COMMAND,
    topics::NLP_INITIATE_COMMAND,
    topics::CJ_ASSESSMENT_INITIATE_COMMAND,
    topics::AI_FEEDBACK_INITIATE_COMMAND,
    topics::BATCH_PIPELINE_COMPLETED,
    topics::BATCH_PHASE_SKIPPED,
];

/// The orchestrator, built and ready to run: topics exist, the consumer is subscribed, the HTTP
/// port is bound ([`App::http_addr`]).
#[derive(Debug)]
pub struct App {
    core: Core,
    sampled: Sampled,
    runner: ConsumerRunner<BosHandler, BosMetrics>,
    relay: OutboxRelay<OutboxMetrics>,
    scheduler: Scheduler,
    producer: Producer,
    listener: HttpListener,
    router: Router,
    http_addr: SocketAddr,
}

/// The gauges sampled every 10 s: consumer lag, outboxes, pipelines.
#[derive(Debug)]
struct Sampled {
    readiness: Readiness,
    store: Store,
    status: Arc<ConsumerStatus>,
    state: StateGauges,
    pipelines: PipelineGauges,
}

impl Sampled {
    async fn run(self, stop: CancellationToken) {
        sample_every(stop, || async {
            let now = Timestamp::now();
            self.state.set_ready(self.readiness.is_ready().await);
            self.state.set_lag(&self.status.lag());
            self.state.sample_outbox(&self.store, now).await?;
            self.pipelines.sample(&self.store, now).await
        })
        .await;
    }
}

impl App {
    /// Create topics, clients and components, and bind the HTTP address (`HTTP_ADDR`; port 0
    /// picks a free one). Fails if the broker cannot be reached or the address is taken.
    pub async fn build(settings: BosSettings) -> anyhow::Result<Self> {
        let mut all: Vec<String> = with_dlq_topics(&CONSUMED);
        all.extend(PRODUCED.iter().map(|t| t.to_string()));
        let kafka = &settings.kafka;
        provision_topics(kafka, &all)
            .await
            .with_context(|| format!("provisioning topics on {}", kafka.bootstrap_servers))?;

        let metrics = Metrics::new();
        let bos_metrics = BosMetrics::register(&metrics);
        let store = Store::connect(&settings.redis).context("creating the Redis client")?;
        store.check_at_start().await?;
        let producer = Producer::new(&settings.kafka).context("creating the Kafka producer")?;
        let conductor =
            Conductor::with_roots(&settings.bcs_url, settings.bcs_timeout, &settings.bcs_ca);
        let core = Core {
            store: store.clone(),
            limits: settings.limits,
            dedup_ttl: settings.dedup_ttl,
            state_ttl: settings.state_ttl,
            metrics: bos_metrics,
            wake_scheduler: Arc::new(Notify::new()),
            decoded: Default::default(),
        };
        let handler = BosHandler {
            core: core.clone(),
            conductor: conductor.clone(),
        };
        let runner = ConsumerRunner::new(&settings.kafka, &CONSUMED, handler, producer.clone())
            .context("creating the Kafka consumer")?
            .with_observer(core.metrics.clone());
        let status = runner.status();
        let readiness = Readiness::new()
            .kafka_consumer(move || status.is_joined())
            .broker(producer.clone(), |p| async move {
                p.ping(Duration::from_secs(1)).await
            })
            .redis(store.clone(), |s| async move { s.ready().await });
        let outbox_metrics =
            metrics.register_with(|r| OutboxMetrics::register("bos", &PRODUCED, r));
        let state_gauges = metrics.register_with(|r| StateGauges::register("bos", r));
        let pipeline_gauges =
            PipelineGauges::register(&metrics, settings.limits.phase_timeout.num_seconds());
        let sampled = Sampled {
            readiness: readiness.clone(),
            store: store.clone(),
            status: runner.status(),
            state: state_gauges,
            pipelines: pipeline_gauges,
        };
        let relay = OutboxRelay::new(store, producer.clone()).with_observer(outbox_metrics);
        let scheduler = Scheduler::new(core.clone(), conductor);
        let router = router(HttpState {
            core: core.clone(),
            metrics,
            readiness,
            operator_token: settings.operator_token.clone(),
        });
        let listener = HttpListener::from_settings(&settings.common).await?;
        let http_addr = listener.local_addr().context("reading the bound address")?;
        tracing::info!(
            http_addr = %http_addr,
            group = %settings.kafka.consumer_group,
            kafka = %settings.kafka.security.describe(),
            redis = %settings.redis.redacted_url(),
            key_prefix = %settings.redis.key_prefix,
            bcs_url = %settings.bcs_url,
            operator_endpoints = settings.operator_token.is_some(),
            "batch orchestrator built"
        );
        Ok(Self {
            core,
            sampled,
            runner,
            relay,
            scheduler,
            producer,
            listener,
            router,
            http_addr,
        })
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The shared core (tests inspect state through it).
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// Run until `shutdown` is cancelled (or the HTTP server fails), then stop in order: intake
    /// (the consumer commits its offsets), the scheduler, the outbox relay (drains what is
    /// committed), the HTTP server (finishes in-flight requests). Returns an error if the HTTP
    /// server failed.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let intake_stop = CancellationToken::new();
        let relay_stop = CancellationToken::new();
        let consumer = tokio::spawn(self.runner.run(intake_stop.clone()));
        let scheduler = tokio::spawn(self.scheduler.run(intake_stop.clone()));
        let relay = tokio::spawn(self.relay.run(relay_stop.clone()));
        let sampler_stop = CancellationToken::new();
        let sampler = tokio::spawn(self.sampled.run(sampler_stop.clone()));
        let mut http = HttpServer::start(self.listener, self.router);
        tracing::info!(http_addr = %self.http_addr, "batch orchestrator running");
        http.serve_until(&shutdown).await;

        intake_stop.cancel();
        sampler_stop.cancel();
        join(sampler, "gauge sampler").await;
        join(consumer, "consumer").await;
        join(scheduler, "scheduler").await;
        relay_stop.cancel();
        join(relay, "outbox relay").await;
        let served = http.stop().await;
        self.producer.close(Duration::from_secs(5)).await;
        tracing::info!("batch orchestrator stopped");
        Ok(served?)
    }
}
