//! Configuration from environment variables: defaults → environment → validation.
//!
//! [`SimSettings::from_env`] reads every variable listed by [`settings_docs`] (the source of
//! `--help` and of the README table). A bad value stops start-up with a [`ConfigError`] naming
//! the variable.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use huleedu_contracts::PhaseName;
use huleedu_kafka::KafkaSettings;
use huleedu_service::settings::{CommonSettings, ConfigError, Env, SettingDoc};

use crate::decide::{parse_phase, FailureRules};

/// `client.id` and `dlq.service` of this service.
pub const SERVICE_NAME: &str = "els-simulator";
/// Default `KAFKA_CONSUMER_GROUP`.
pub const DEFAULT_GROUP: &str = "els-simulator";
/// Default `HTTP_ADDR`.
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:4010";

/// Longest `SIM_ESSAY_LATENCY_MS` accepted (one minute per essay).
const MAX_ESSAY_LATENCY_MS: u64 = 60_000;

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
}

impl SimSettings {
    /// Defaults for a local run, overridden by `env`, validated.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let kafka = KafkaSettings::from_env(env, SERVICE_NAME, DEFAULT_GROUP)?;
        let common = CommonSettings::from_env(env, DEFAULT_HTTP_ADDR)?;
        Ok(Self {
            kafka,
            common,
            behaviour: Behaviour::from_env(env)?,
        })
    }
}

impl Behaviour {
    /// The `SIM_*` variables.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let explicit = match env.get("SIM_FAIL") {
            None => BTreeMap::new(),
            Some(raw) => parse_fail_list(raw).map_err(|e| ConfigError::new("SIM_FAIL", raw, e))?,
        };
        let rate = env.parse("SIM_FAIL_RATE", 0.0f64)?;
        if !(0.0..=1.0).contains(&rate) {
            return Err(ConfigError::new(
                "SIM_FAIL_RATE",
                &rate.to_string(),
                "must be between 0.0 and 1.0",
            ));
        }
        let seed = env.parse("SIM_SEED", 0u64)?;
        let latency_ms = env.int_in("SIM_ESSAY_LATENCY_MS", 0, 0, MAX_ESSAY_LATENCY_MS)?;
        let duplicate_outcomes = match env.get("SIM_DUPLICATE_OUTCOMES") {
            None => false,
            Some(raw) => parse_bool(raw).ok_or_else(|| {
                ConfigError::new("SIM_DUPLICATE_OUTCOMES", raw, "expected true or false")
            })?,
        };
        let silent_phases = match env.get("SIM_SILENT_PHASES") {
            None => BTreeSet::new(),
            Some(raw) => {
                parse_phase_list(raw).map_err(|e| ConfigError::new("SIM_SILENT_PHASES", raw, e))?
            }
        };
        Ok(Self {
            failures: FailureRules {
                explicit,
                rate,
                seed,
            },
            essay_latency: Duration::from_millis(latency_ms),
            duplicate_outcomes,
            silent_phases,
        })
    }
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

fn parse_bool(raw: &str) -> Option<bool> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Every environment variable the simulator reads (for `--help` and the docs).
pub fn settings_docs() -> Vec<SettingDoc> {
    let mut docs = KafkaSettings::docs(DEFAULT_GROUP);
    docs.extend(CommonSettings::docs(DEFAULT_HTTP_ADDR));
    docs.extend([
        SettingDoc {
            name: "SIM_FAIL",
            default: "none",
            meaning: "comma-separated phase:essay_id pairs that always fail, e.g. spellcheck:e1,nlp:e2",
        },
        SettingDoc {
            name: "SIM_FAIL_RATE",
            default: "0.0",
            meaning: "share of essays that fail in every phase (0.0..1.0), picked by a stable hash of seed, phase and essay id",
        },
        SettingDoc {
            name: "SIM_SEED",
            default: "0",
            meaning: "seed (u64) of SIM_FAIL_RATE: the same seed fails the same essays",
        },
        SettingDoc {
            name: "SIM_ESSAY_LATENCY_MS",
            default: "0",
            meaning: "simulated work per essay: a command waits latency x essays before it is answered (0..60000)",
        },
        SettingDoc {
            name: "SIM_DUPLICATE_OUTCOMES",
            default: "false",
            meaning: "true: publish every outcome twice with the same bytes (same event_id)",
        },
        SettingDoc {
            name: "SIM_SILENT_PHASES",
            default: "none",
            meaning: "comma-separated phases never answered (dispatches are still counted), for time-out tests",
        },
    ]);
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn behaviour(pairs: &[(&str, &str)]) -> Result<Behaviour, ConfigError> {
        Behaviour::from_env(&Env::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn defaults_match_the_run_contract() {
        let s = SimSettings::from_env(&Env::default()).unwrap();
        assert_eq!(s.kafka.consumer_group, "els-simulator");
        assert_eq!(s.kafka.bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(s.kafka.topic_partitions, 3);
        assert_eq!(s.common.http_addr.to_string(), "0.0.0.0:4010");
        assert_eq!(s.behaviour, Behaviour::default());
        assert_eq!(s.behaviour.failures.seed, 0);
        assert!(!s.behaviour.duplicate_outcomes);
    }

    #[test]
    fn group_can_be_overridden() {
        let env = Env::from_pairs([("KAFKA_CONSUMER_GROUP", "mine")]);
        assert_eq!(
            SimSettings::from_env(&env).unwrap().kafka.consumer_group,
            "mine"
        );
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
        let names: Vec<&str> = settings_docs().iter().map(|d| d.name).collect();
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
        ] {
            assert!(names.contains(&var), "{var} missing from settings_docs");
        }
    }
}
