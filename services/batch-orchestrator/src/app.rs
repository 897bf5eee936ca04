//! Wiring: build every component from the settings, run them, shut them down in order.

use std::net::SocketAddr;
use std::sync::Arc;

use huleedu_contracts::topics;
use huleedu_http::metrics::Metrics;
use huleedu_http::probes::Readiness;
use huleedu_http::{harden, HttpLimits};
use huleedu_kafka::admin::with_dlq_topics;
use huleedu_kafka::{provision_topics, ConsumerRunner, Producer};
use huleedu_store::{OutboxMetrics, OutboxRelay, Store};
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

use crate::conductor::Conductor;
use crate::core::Core;
use crate::handler::{BosHandler, CONSUMED};
use crate::http::{router, HttpState};
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

/// The orchestrator, built and ready to run.
pub struct App {
    settings: BosSettings,
    core: Core,
    runner: ConsumerRunner<BosHandler, crate::metrics::BosMetrics>,
    relay: OutboxRelay<OutboxMetrics>,
    scheduler: Scheduler,
    http: HttpState,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl App {
    /// Create topics, clients and components. Fails if the broker cannot be reached.
    pub async fn build(settings: BosSettings) -> anyhow::Result<Self> {
        let mut all: Vec<String> = with_dlq_topics(&CONSUMED);
        all.extend(PRODUCED.iter().map(|t| t.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        provision_topics(&settings.kafka, &refs).await?;

        let metrics = Metrics::new();
        let bos_metrics = crate::metrics::BosMetrics::register(&metrics);
        let store = Store::connect(&settings.redis)?;
        store.check_at_start().await?;
        let producer = Producer::new(&settings.kafka)?;
        let conductor =
            Conductor::with_roots(&settings.bcs_url, settings.bcs_timeout, &settings.bcs_ca);
        tracing::info!(
            group = %settings.kafka.consumer_group,
            kafka = %settings.kafka.security.describe(),
            redis = %settings.redis.redacted_url(),
            key_prefix = %settings.redis.key_prefix,
            bcs_url = %settings.bcs_url,
            operator_endpoints = settings.operator_token.is_some(),
            "batch orchestrator built"
        );
        let core = Core {
            store: store.clone(),
            limits: settings.limits,
            dedup_ttl: settings.dedup_ttl,
            state_ttl: settings.state_ttl,
            metrics: bos_metrics,
            wake_scheduler: Arc::new(Notify::new()),
        };
        let handler = BosHandler {
            core: core.clone(),
            conductor: conductor.clone(),
        };
        let runner = ConsumerRunner::new(&settings.kafka, &CONSUMED, handler, producer.clone())?
            .with_observer(core.metrics.clone());
        let status = runner.status();
        let readiness = Readiness::new()
            .check("kafka", move || {
                let joined = status.is_joined();
                async move {
                    if joined {
                        Ok(())
                    } else {
                        Err("consumer has not joined its group yet".to_owned())
                    }
                }
            })
            .check("broker", {
                let producer = producer.clone();
                move || {
                    let producer = producer.clone();
                    async move { producer.ping(std::time::Duration::from_secs(1)).await }
                }
            })
            .check("redis", {
                let store = store.clone();
                move || {
                    let store = store.clone();
                    async move { store.ready().await }
                }
            });
        let outbox_metrics =
            metrics.register_with(|r| OutboxMetrics::register("bos", &PRODUCED, r));
        let relay = OutboxRelay::new(store, producer).with_observer(outbox_metrics);
        let scheduler = Scheduler {
            core: core.clone(),
            conductor,
        };
        let http = HttpState {
            core: core.clone(),
            metrics,
            readiness,
            operator_token: settings.operator_token.clone(),
        };
        Ok(Self {
            settings,
            core,
            runner,
            relay,
            scheduler,
            http,
        })
    }

    /// The shared core (tests inspect state through it).
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// Run until `shutdown` is cancelled: stop intake (consumer commits its offsets), stop the
    /// scheduler, drain the outbox, then stop HTTP. `bound` receives the HTTP address.
    pub async fn run(
        self,
        shutdown: CancellationToken,
        bound: Option<oneshot::Sender<SocketAddr>>,
    ) -> anyhow::Result<()> {
        let http_stop = CancellationToken::new();
        let router = harden(router(self.http), HttpLimits::default());
        let addr = self.settings.common.http_addr;
        let tls = match &self.settings.common.http_tls {
            Some(f) => Some(huleedu_http::ServerTls::from_settings(&f.cert, &f.key)?),
            None => None,
        };
        let http = tokio::spawn({
            let stop = http_stop.clone();
            async move {
                huleedu_http::serve(addr, tls, router, stop, |a| {
                    if let Some(tx) = bound {
                        let _ = tx.send(a);
                    }
                })
                .await
            }
        });
        let relay_stop = CancellationToken::new();
        let relay = tokio::spawn(self.relay.run(relay_stop.clone()));
        let scheduler_stop = shutdown.child_token();
        let scheduler = tokio::spawn(self.scheduler.run(scheduler_stop));

        self.runner.run(shutdown.clone()).await;
        let _ = scheduler.await;
        relay_stop.cancel();
        let _ = relay.await;
        http_stop.cancel();
        match http.await {
            Ok(r) => r?,
            Err(e) => anyhow::bail!("HTTP server task failed: {e}"),
        }
        tracing::info!("batch orchestrator stopped");
        Ok(())
    }
}
