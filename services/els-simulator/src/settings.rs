//! Configuration from environment variables: [`SimArgs`] declares every variable the simulator
//! reads (one clap argument each: name, default, range, meaning; the source of `--help` and of
//! the documentation tables), and [`SimSettings`] is made from them. A bad value stops start-up
//! with a [`ConfigError`] naming the variable.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use huleedu_contracts::PhaseName;
use huleedu_kafka::{KafkaArgs, KafkaSettings};
use huleedu_service::settings::{
    args_from_pairs, int_in, CommonArgs, CommonSettings, ConfigError, ServiceSettings, VarPair,
};

use crate::decide::{parse_phase, FailureRules};
use crate::state::MAX_TRACKED_BATCHES;

/// `client.id` and `dlq.service` of this service.
pub const SERVICE_NAME: &str = "els-simulator";
/// Default `KAFKA_CONSUMER_GROUP`.
pub const DEFAULT_GROUP: &str = "els-simulator";
/// Default `HTTP_ADDR`.
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:4010";

/// Longest `SIM_ESSAY_LATENCY_MS` accepted (one minute per essay).
const MAX_ESSAY_LATENCY_MS: u64 = 60_000;

/// Every variable the simulator reads.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "els-simulator",
    about = "reference phase worker (dev/test tool): answers initiate commands with \
             ELSBatchPhaseOutcomeV1, registers demo batches, counts dispatches"
)]
pub struct SimArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub behaviour: BehaviourArgs,
}

/// The `SIM_*` variables.
#[derive(Debug, Clone, clap::Args)]
pub struct BehaviourArgs {
    /// comma-separated phase:essay_id pairs that always fail, e.g. spellcheck:e1,nlp:e2
    /// [default: none]
    #[arg(long, env = "SIM_FAIL", value_parser = parse_fail_list)]
    pub sim_fail: Option<BTreeMap<PhaseName, BTreeSet<String>>>,
    /// share of essays that fail in every phase (0.0..1.0), picked by a stable hash of seed,
    /// phase and essay id
    #[arg(long, env = "SIM_FAIL_RATE", default_value = "0.0", value_parser = parse_rate)]
    pub sim_fail_rate: f64,
    /// seed (u64) of SIM_FAIL_RATE: the same seed fails the same essays
    #[arg(long, env = "SIM_SEED", default_value_t = 0, value_parser = int_in(0, u64::MAX))]
    pub sim_seed: u64,
    /// simulated work per essay: a command waits latency x essays before it is answered
    /// (0..60000)
    #[arg(long, env = "SIM_ESSAY_LATENCY_MS", default_value_t = 0,
        value_parser = int_in::<u64>(0, MAX_ESSAY_LATENCY_MS))]
    pub sim_essay_latency_ms: u64,
    /// true: publish every outcome twice with the same bytes (same event_id)
    #[arg(long, env = "SIM_DUPLICATE_OUTCOMES", default_value = "false",
        value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub sim_duplicate_outcomes: bool,
    /// comma-separated phases never answered (dispatches are still counted), for time-out tests
    /// [default: none]
    #[arg(long, env = "SIM_SILENT_PHASES", value_parser = parse_phase_list)]
    pub sim_silent_phases: Option<BTreeSet<PhaseName>>,
    /// batches whose dispatch counts are kept (the most recently seen; 1..1000000): bounds the
    /// worker's memory (~1 KiB per batch of four phases)
    #[arg(long, env = "SIM_TRACKED_BATCHES", default_value_t = MAX_TRACKED_BATCHES,
        value_parser = int_in::<usize>(1, 1_000_000))]
    pub sim_tracked_batches: usize,
}

/// How the simulated worker behaves.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Behaviour {
    /// `SIM_FAIL`, `SIM_FAIL_RATE`, `SIM_SEED`.
    pub failures: FailureRules,
    /// `SIM_ESSAY_LATENCY_MS`: simulated work per essay before a command is answered.
    pub essay_latency: Duration,
    /// `SIM_DUPLICATE_OUTCOMES`: publish every outcome twice, byte for byte.
    pub duplicate_outcomes: bool,
    /// `SIM_SILENT_PHASES`: phases never answered.
    pub silent_phases: BTreeSet<PhaseName>,
}

/// Everything the simulator is configured with.
#[derive(Debug, Clone)]
pub struct SimSettings {
    /// Broker, consumer group, topic partitions (`KAFKA_*`, `TOPIC_*`).
    pub kafka: KafkaSettings,
    /// `HTTP_ADDR`, `LOG_FORMAT`.
    pub common: CommonSettings,
    /// `SIM_*`.
    pub behaviour: Behaviour,
    /// `SIM_TRACKED_BATCHES`: batches whose dispatch counts are kept.
    pub tracked_batches: usize,
}

impl ServiceSettings for SimSettings {
    type Args = SimArgs;

    const DEFAULTS: &'static [(&'static str, &'static str)] = &[
        ("KAFKA_CONSUMER_GROUP", DEFAULT_GROUP),
        ("HTTP_ADDR", DEFAULT_HTTP_ADDR),
    ];

    fn from_args(args: SimArgs) -> Result<Self, ConfigError> {
        Ok(Self {
            kafka: KafkaSettings::from_args(&args.kafka, SERVICE_NAME)?,
            common: CommonSettings::from_args(&args.common)?,
            tracked_batches: args.behaviour.sim_tracked_batches,
            behaviour: Behaviour::from(args.behaviour),
        })
    }

    fn common(&self) -> &CommonSettings {
        &self.common
    }
}

impl From<BehaviourArgs> for Behaviour {
    fn from(args: BehaviourArgs) -> Self {
        Self {
            failures: FailureRules {
                explicit: args.sim_fail.unwrap_or_default(),
                rate: args.sim_fail_rate,
                seed: args.sim_seed,
            },
            essay_latency: Duration::from_millis(args.sim_essay_latency_ms),
            duplicate_outcomes: args.sim_duplicate_outcomes,
            silent_phases: args.sim_silent_phases.unwrap_or_default(),
        }
    }
}

impl Behaviour {
    /// The `SIM_*` variables from explicit `(variable, value)` pairs (tests).
    pub fn from_pairs(pairs: impl IntoIterator<Item = impl VarPair>) -> Result<Self, ConfigError> {
        args_from_pairs::<BehaviourArgs>(pairs).map(Self::from)
    }
}

/// `SIM_FAIL_RATE`: a share between 0.0 and 1.0.
fn parse_rate(raw: &str) -> Result<f64, String> {
    let rate: f64 = raw
        .parse()
        .map_err(|e: std::num::ParseFloatError| e.to_string())?;
    if !(0.0..=1.0).contains(&rate) {
        return Err("must be between 0.0 and 1.0".to_owned());
    }
    Ok(rate)
}

/// Non-empty, trimmed items of a comma-separated list.
fn items(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// `phase:essay_id,phase:essay_id,...` (the essay id is everything after the first colon).
pub fn parse_fail_list(raw: &str) -> Result<BTreeMap<PhaseName, BTreeSet<String>>, String> {
    let mut out: BTreeMap<PhaseName, BTreeSet<String>> = BTreeMap::new();
    for item in items(raw) {
        let (phase, essay) = item
            .split_once(':')
            .ok_or_else(|| format!("`{item}` is not a phase:essay_id pair"))?;
        let essay = essay.trim();
        if essay.is_empty() {
            return Err(format!("`{item}` has no essay id after the colon"));
        }
        out.entry(parse_phase(phase.trim())?)
            .or_default()
            .insert(essay.to_owned());
    }
    Ok(out)
}

/// `phase,phase,...`.
pub fn parse_phase_list(raw: &str) -> Result<BTreeSet<PhaseName>, String> {
    items(raw).map(parse_phase).collect()
}

fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn behaviour(pairs: &[(&str, &str)]) -> Result<Behaviour, ConfigError> {
        Behaviour::from_pairs(pairs)
    }

    #[test]
    fn defaults_match_the_run_contract() {
        let s = SimSettings::from_defaults().unwrap();
        assert_eq!(s.kafka.consumer_group, "els-simulator");
        assert_eq!(s.kafka.bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(s.kafka.topic_partitions, 3);
        assert_eq!(s.common.http_addr.to_string(), "0.0.0.0:4010");
        assert_eq!(s.behaviour, Behaviour::default());
        assert_eq!(s.behaviour.failures.seed, 0);
        assert!(!s.behaviour.duplicate_outcomes);
    }

    #[test]
    fn the_table_bound_defaults_to_ten_thousand_batches_and_can_be_set() {
        assert_eq!(
            SimSettings::from_pairs(Vec::<(&str, &str)>::new())
                .unwrap()
                .tracked_batches,
            MAX_TRACKED_BATCHES
        );
        let s = SimSettings::from_pairs([("SIM_TRACKED_BATCHES", "2000")]).unwrap();
        assert_eq!(s.tracked_batches, 2000);
    }

    #[test]
    fn group_can_be_overridden() {
        let s = SimSettings::from_pairs([("KAFKA_CONSUMER_GROUP", "mine")]).unwrap();
        assert_eq!(s.kafka.consumer_group, "mine");
    }

    #[test]
    fn every_setting_parses() {
        let b = behaviour(&[
            ("SIM_FAIL", " spellcheck:e1, nlp:e2 ,spellcheck:e3,"),
            ("SIM_FAIL_RATE", "0.25"),
            ("SIM_SEED", "18446744073709551615"),
            ("SIM_ESSAY_LATENCY_MS", "15"),
            ("SIM_DUPLICATE_OUTCOMES", "TRUE"),
            ("SIM_SILENT_PHASES", "cj_assessment, ai_feedback"),
        ])
        .unwrap();
        assert_eq!(
            b.failures.explicit[&PhaseName::Spellcheck],
            BTreeSet::from(["e1".to_owned(), "e3".to_owned()])
        );
        assert_eq!(
            b.failures.explicit[&PhaseName::Nlp],
            BTreeSet::from(["e2".to_owned()])
        );
        assert_eq!(b.failures.rate, 0.25);
        assert_eq!(b.failures.seed, u64::MAX);
        assert_eq!(b.essay_latency, Duration::from_millis(15));
        assert!(b.duplicate_outcomes);
        assert_eq!(
            b.silent_phases,
            BTreeSet::from([PhaseName::CjAssessment, PhaseName::AiFeedback])
        );
    }

    #[test]
    fn essay_ids_may_contain_colons() {
        let b = behaviour(&[("SIM_FAIL", "nlp:urn:essay:1")]).unwrap();
        assert!(b.failures.explicit[&PhaseName::Nlp].contains("urn:essay:1"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("SIM_FAIL_RATE", "1.5"),
            ("SIM_FAIL_RATE", "-0.1"),
            ("SIM_FAIL_RATE", "NaN"),
            ("SIM_FAIL_RATE", "half"),
            ("SIM_SEED", "-1"),
            ("SIM_ESSAY_LATENCY_MS", "-5"),
            ("SIM_ESSAY_LATENCY_MS", "60001"),
            ("SIM_DUPLICATE_OUTCOMES", "maybe"),
            ("SIM_FAIL", "spellcheck"),
            ("SIM_FAIL", "spellcheck:"),
            ("SIM_FAIL", "spelling:e1"),
            ("SIM_FAIL", "student_matching:e1"),
            ("SIM_SILENT_PHASES", "nlp,cj"),
            ("SIM_TRACKED_BATCHES", "0"),
            ("SIM_TRACKED_BATCHES", "1000001"),
        ] {
            let err = behaviour(&[(var, value)]).unwrap_err();
            assert_eq!(err.variable, var, "{var}={value}: {err}");
            assert!(err.to_string().contains(var), "{err}");
        }
        let err = behaviour(&[("SIM_SILENT_PHASES", "nlp,cj")]).unwrap_err();
        assert!(err.reason.contains("`cj`"), "{err}");
    }

    #[test]
    fn docs_list_every_variable() {
        let vars = SimSettings::variables();
        let names: Vec<&str> = vars.iter().map(|d| d.name.as_str()).collect();
        for var in [
            "KAFKA_BOOTSTRAP_SERVERS",
            "KAFKA_CONSUMER_GROUP",
            "TOPIC_PARTITIONS",
            "HTTP_ADDR",
            "LOG_FORMAT",
            "SIM_FAIL",
            "SIM_FAIL_RATE",
            "SIM_SEED",
            "SIM_ESSAY_LATENCY_MS",
            "SIM_DUPLICATE_OUTCOMES",
            "SIM_SILENT_PHASES",
            "SIM_TRACKED_BATCHES",
        ] {
            assert!(
                names.contains(&var),
                "{var} missing from SimSettings::variables()"
            );
        }
    }
}
