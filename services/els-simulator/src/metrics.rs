//! The simulator's metrics (served at `/metrics`). Labels are bounded: phase and status only.

use huleedu_contracts::{BatchStatus, PhaseName};
use huleedu_http::metrics::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    phase: &'static str,
    status: &'static str,
}

/// Counters updated by the worker.
#[derive(Debug, Clone, Default)]
pub struct SimMetrics {
    commands_received: Family<PhaseLabels, Counter>,
    outcomes_published: Family<OutcomeLabels, Counter>,
}

impl SimMetrics {
    /// Creates the counters and registers them in `registry`.
    pub fn register(registry: &Metrics) -> Self {
        let m = Self::default();
        registry.register(|r| {
            r.register(
                "commands_received",
                "Initiate commands received (every delivery of a decodable command)",
                m.commands_received.clone(),
            );
            r.register(
                "outcomes_published",
                "ELSBatchPhaseOutcomeV1 messages published and acknowledged (a duplicate counts)",
                m.outcomes_published.clone(),
            );
        });
        m
    }

    /// One decodable command delivered for `phase`.
    pub fn command_received(&self, phase: PhaseName) {
        self.commands_received
            .get_or_create(&PhaseLabels {
                phase: phase.as_str(),
            })
            .inc();
    }

    /// One outcome message acknowledged by the broker.
    pub fn outcome_published(&self, phase: PhaseName, status: BatchStatus) {
        self.outcomes_published
            .get_or_create(&OutcomeLabels {
                phase: phase.as_str(),
                status: status.as_str(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_their_labels() {
        let registry = Metrics::new();
        let m = SimMetrics::register(&registry);
        m.command_received(PhaseName::Nlp);
        m.outcome_published(PhaseName::Nlp, BatchStatus::CompletedWithFailures);
        let text = registry.render();
        assert!(
            text.contains(r#"commands_received_total{phase="nlp"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"outcomes_published_total{phase="nlp",status="completed_with_failures"} 1"#
            ),
            "{text}"
        );
    }
}
