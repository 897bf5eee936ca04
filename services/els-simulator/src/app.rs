//! Wiring: topics, producer, consumer runner, HTTP server; [`App::build`] then [`App::run`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use huleedu_contracts::topics;
use huleedu_http::metrics::Metrics;
use huleedu_http::probes::Readiness;
use huleedu_http::{HttpListener, HttpServer, ListenError, ServeError};
use huleedu_kafka::admin::with_dlq_topics;
use huleedu_kafka::{provision_topics, ConsumerRunner, KafkaError, Producer};
use tokio_util::sync::CancellationToken;

use crate::api::{router, AppState};
use crate::metrics::SimMetrics;
use crate::settings::SimSettings;
use crate::state::{Counts, OverrideStore};
use crate::worker::{command_topics, Worker};

/// Why the simulator could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("could not create the topics")]
    Provision(#[source] KafkaError),
    #[error("could not set up the kafka clients")]
    Kafka(#[source] KafkaError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("the consumer task failed")]
    Consumer(#[source] tokio::task::JoinError),
}

/// Every topic the simulator uses: the command topics with their `.DLQ`s, and the two topics
/// it publishes to.
pub fn provisioned_topics() -> Vec<String> {
    let mut all = with_dlq_topics(&command_topics());
    all.push(topics::ELS_BATCH_PHASE_OUTCOME.to_owned());
    all.push(topics::BATCH_ESSAYS_READY.to_owned());
    all
}

/// A built simulator: topics exist, clients are created, the HTTP port is bound.
#[derive(Debug)]
pub struct App {
    runner: ConsumerRunner<Worker>,
    producer: Producer,
    listener: HttpListener,
    http_addr: SocketAddr,
    state: AppState,
    /// Cancelled when `run`'s shutdown token is (or the HTTP server fails): intake stops and the
    /// worker gives up simulated work.
    stop: CancellationToken,
}

impl App {
    /// Creates missing topics, the producer and the consumer (subscribed, not yet polling), and
    /// binds the HTTP address (port 0 picks a free one; see [`App::http_addr`]).
    pub async fn build(settings: SimSettings) -> Result<Self, AppError> {
        provision_topics(&settings.kafka, &provisioned_topics())
            .await
            .map_err(AppError::Provision)?;

        let producer = Producer::new(&settings.kafka).map_err(AppError::Kafka)?;
        let metrics = Metrics::new();
        let sim_metrics = SimMetrics::register(&metrics);
        let counts = Counts::with_max_batches(settings.tracked_batches);
        let overrides = OverrideStore::new();
        let stop = CancellationToken::new();
        let worker = Worker::new(
            settings.behaviour.clone(),
            counts.clone(),
            overrides.clone(),
            Arc::new(producer.clone()),
            sim_metrics,
            stop.clone(),
        )
        .with_max_event_bytes(settings.kafka.max_event_bytes());
        let runner =
            ConsumerRunner::new(&settings.kafka, &command_topics(), worker, producer.clone())
                .map_err(AppError::Kafka)?;
        let status = runner.status();
        let readiness = Readiness::new().kafka_consumer(move || status.is_joined());

        let listener = HttpListener::from_settings(&settings.common).await?;
        let http_addr = listener.local_addr().map_err(|source| ListenError::Bind {
            addr: settings.common.http_addr,
            source,
        })?;

        tracing::info!(
            group = %settings.kafka.consumer_group,
            behaviour = ?settings.behaviour,
            "els-simulator built"
        );
        Ok(Self {
            runner,
            listener,
            http_addr,
            state: AppState {
                counts,
                overrides,
                publisher: Arc::new(producer.clone()),
                metrics,
                readiness,
                max_event_bytes: settings.kafka.max_event_bytes(),
            },
            producer,
            stop,
        })
    }

    /// The address the HTTP server is bound to.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// A handle to the dispatch counts (the same table `GET /v1/counts` serves).
    pub fn counts(&self) -> Counts {
        self.state.counts.clone()
    }

    /// A handle to the per-batch overrides (the same table the HTTP API writes).
    pub fn overrides(&self) -> OverrideStore {
        self.state.overrides.clone()
    }

    /// Consumes commands and serves HTTP until `shutdown` is cancelled; then stops intake,
    /// lets the command in hand finish (simulated work is abandoned and left for redelivery),
    /// commits offsets, drains HTTP and flushes the producer.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let consumer = tokio::spawn(self.runner.run(self.stop.clone()));
        let mut http = HttpServer::start(self.listener, router(self.state));
        tracing::info!(http_addr = %self.http_addr, "els-simulator running");
        http.serve_until(&shutdown).await;

        self.stop.cancel();
        let consumed = consumer.await;
        let served = http.stop().await;
        self.producer.close(Duration::from_secs(5)).await;
        tracing::info!("els-simulator stopped");
        served?;
        consumed.map_err(AppError::Consumer)
    }
}
