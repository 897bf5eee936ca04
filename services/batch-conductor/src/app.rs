//! Wiring: topics, Redis, consumer, outbox relay and HTTP server, and the shutdown order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use huleedu_contracts::{topics, Timestamp};
use huleedu_http::probes::Readiness;
use huleedu_http::{HttpListener, HttpServer};
use huleedu_kafka::admin::with_dlq_topics;
use huleedu_kafka::{provision_topics, ConsumerRunner, Producer};
use huleedu_service::shutdown::join;
use huleedu_store::{OutboxMetrics, OutboxRelay, Store};
use tokio_util::sync::CancellationToken;

use crate::api::{redis_ready, router, ApiConfig, AppState};
use crate::consumer::{EventHandler, CONSUMED_TOPICS};
use crate::metrics::{BcsMetrics, ConsumerObserver};
use crate::settings::BcsSettings;

/// The topics the conductor provisions at start-up: the consumed topics, their `.DLQ`, and the
/// failed-essay DLQ.
pub fn provisioned_topics() -> Vec<String> {
    let mut t = with_dlq_topics(&CONSUMED_TOPICS);
    t.push(topics::FAILED_ESSAYS_DLQ.to_owned());
    t
}

/// A built conductor, ready to run: topics exist, the consumer is subscribed, the HTTP port is
/// bound ([`App::http_addr`]).
#[derive(Debug)]
pub struct App {
    consumer: ConsumerRunner<EventHandler, ConsumerObserver>,
    relay: OutboxRelay<OutboxMetrics>,
    producer: Producer,
    listener: HttpListener,
    router: Router,
    state: AppState,
    http_addr: SocketAddr,
}

impl App {
    /// Provision topics, create the Redis store, the consumer, the relay and the HTTP server
    /// (bound to `HTTP_ADDR`; port 0 picks a free port).
    pub async fn build(settings: BcsSettings) -> anyhow::Result<Self> {
        let kafka = &settings.kafka;
        provision_topics(kafka, &provisioned_topics())
            .await
            .with_context(|| format!("provisioning topics on {}", kafka.bootstrap_servers))?;
        let store = Store::connect(&settings.redis).context("creating the Redis client")?;
        store.check_at_start().await?;
        let registry = huleedu_http::metrics::Metrics::new();
        let metrics = BcsMetrics::register(&registry);
        let pipelines_seen = crate::consumer::PipelinesSeen::default();
        let producer = Producer::new(&settings.kafka).context("creating the Kafka producer")?;

        let handler = EventHandler::new(
            store.clone(),
            metrics.clone(),
            pipelines_seen.clone(),
            settings.state_ttl,
            settings.dedup_ttl,
        );
        let consumer =
            ConsumerRunner::new(&settings.kafka, &CONSUMED_TOPICS, handler, producer.clone())
                .context("creating the Kafka consumer")?
                .with_observer(ConsumerObserver(metrics.clone()));
        let relay =
            OutboxRelay::new(store.clone(), producer.clone()).with_observer(metrics.outbox.clone());

        let status = consumer.status();
        let readiness = Readiness::new()
            .kafka_consumer(move || status.is_joined())
            .broker(producer.clone(), |p| async move {
                p.ping(Duration::from_secs(1)).await
            })
            .redis(store.clone(), redis_ready);
        let state = AppState::from_parts(
            store,
            ApiConfig {
                definitions: Arc::new(settings.pipelines.clone()),
                operator_token: settings.operator_token.clone(),
                resolve_wait: settings.resolve_wait,
                state_ttl: settings.state_ttl,
            },
            registry,
            metrics,
            readiness,
            pipelines_seen,
        )
        .with_redriver(crate::redrive::Redriver {
            kafka: settings.kafka.clone(),
            producer: producer.clone(),
        })
        .with_consumer(consumer.status());
        let listener = HttpListener::from_settings(&settings.common).await?;
        let http_addr = listener.local_addr().context("reading the bound address")?;
        tracing::info!(
            http_addr = %http_addr,
            group = %settings.kafka.consumer_group,
            kafka = %settings.kafka.security.describe(),
            redis = %settings.redis.redacted_url(),
            key_prefix = %settings.redis.key_prefix,
            pipelines = %settings.pipelines.source(),
            operator_endpoint = settings.operator_token.is_some(),
            "batch conductor built"
        );
        Ok(Self {
            consumer,
            relay,
            producer,
            listener,
            router: router(state.clone()),
            state,
            http_addr,
        })
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Run until `shutdown` is cancelled, then stop in order: the consumer (finishes the
    /// current event, commits offsets), the outbox relay (drains what is committed), the HTTP
    /// server (finishes in-flight requests). Returns an error if the HTTP server failed.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let consumer_stop = CancellationToken::new();
        let relay_stop = CancellationToken::new();
        let status = self.consumer.status();
        let sampler_stop = CancellationToken::new();
        let (store, metrics) = (self.state.store().clone(), self.state.metrics().clone());
        let readiness = self.state.readiness().clone();
        let sampler = tokio::spawn(huleedu_store::sample_every(
            sampler_stop.clone(),
            move || {
                let (store, metrics, status) = (store.clone(), metrics.clone(), status.clone());
                let readiness = readiness.clone();
                async move {
                    metrics.state.set_ready(readiness.is_ready().await);
                    metrics.state.set_lag(&status.lag());
                    metrics.state.sample_outbox(&store, Timestamp::now()).await
                }
            },
        ));
        let consumer = tokio::spawn(self.consumer.run(consumer_stop.clone()));
        let relay = tokio::spawn(self.relay.run(relay_stop.clone()));
        let mut http = HttpServer::start(self.listener, self.router);
        tracing::info!(http_addr = %self.http_addr, "batch conductor running");
        http.serve_until(&shutdown).await;

        consumer_stop.cancel();
        sampler_stop.cancel();
        join(sampler, "gauge sampler").await;
        join(consumer, "consumer").await;
        self.state.consumer_stopped();
        relay_stop.cancel();
        join(relay, "outbox relay").await;
        let served = http.stop().await;
        self.producer.close(Duration::from_secs(5)).await;
        tracing::info!("batch conductor stopped");
        Ok(served?)
    }
}
