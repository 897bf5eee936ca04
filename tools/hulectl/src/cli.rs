//! The command line (clap derive). Parsing only; [`crate::commands`] carries the commands out.

use clap::{Args, Parser, Subcommand};
use huleedu_contracts::PhaseName;
use uuid::Uuid;

use crate::style::ColorChoice;

/// Operate the HuleEdu pipeline services: submit pipelines, follow a batch's events, inspect
/// orchestrator and conductor state, mark phases, read the dead-letter queues, retry failed
/// essays, and run the newcomer's demonstration.
///
/// The operator token for `mark` and `retry` is read from the environment variable
/// OPERATOR_TOKEN (or the file named by OPERATOR_TOKEN_FILE) only; it is never a flag and never
/// printed.
///
/// A secured broker is reached with the services' variables: KAFKA_SECURITY_PROTOCOL,
/// KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD (or _FILE),
/// KAFKA_SSL_CA_LOCATION, KAFKA_SSL_CERTIFICATE_LOCATION, KAFKA_SSL_KEY_LOCATION,
/// KAFKA_PROPERTIES_FILE (docs/configuration.md). HTTPS service URLs are verified against the
/// system's trust store plus --ca-file.
#[derive(Debug, Parser)]
#[command(
    name = "hulectl",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the services are; every option has an environment fallback and a local default.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Kafka bootstrap servers (comma-separated host:port) [default: bootstrap.servers of
    /// KAFKA_PROPERTIES_FILE, or 127.0.0.1:9092].
    #[arg(long, global = true, env = "KAFKA_BOOTSTRAP_SERVERS", value_parser = parse_bootstrap)]
    pub kafka: Option<String>,
    /// Base URL of the batch orchestrator (BOS).
    #[arg(long, global = true, env = "BOS_URL", default_value = "http://127.0.0.1:5000", value_parser = parse_url)]
    pub bos_url: String,
    /// Base URL of the batch conductor (BCS).
    #[arg(long, global = true, env = "BCS_URL", default_value = "http://127.0.0.1:4002", value_parser = parse_url)]
    pub bcs_url: String,
    /// Base URL of the reference phase worker (els-simulator).
    #[arg(long, global = true, env = "SIM_URL", default_value = "http://127.0.0.1:4010", value_parser = parse_url)]
    pub sim_url: String,
    /// Extra CA certificate(s) (PEM) trusted for https:// service URLs.
    #[arg(long, global = true, env = "HULECTL_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Colour the output: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish a pipeline request for a batch (ClientBatchPipelineRequestV1).
    Submit(SubmitArgs),
    /// Follow a batch's events on every topic, one line each, until its pipeline ends.
    Watch(WatchArgs),
    /// Show the orchestrator's and the conductor's view of a batch.
    Status(StatusArgs),
    /// Mark a phase of a batch complete (or not) by hand, on the conductor.
    Mark(MarkArgs),
    /// Dead-letter queues.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Run one phase again for the essays that failed it (or the ones named).
    Retry(RetryArgs),
    /// Demonstration against a running local stack: a batch of essays, some of which fail
    /// spellcheck, through cj_assessment, then nlp, then ai_feedback; ends with a report.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The batch.
    #[arg(long)]
    pub batch: String,
    /// The pipeline to run (spellcheck, nlp, cj_assessment, ai_feedback, comprehensive, ...).
    #[arg(long)]
    pub pipeline: String,
    /// The requesting user (`user_id` of the request).
    #[arg(long, env = "USER", default_value = "hulectl")]
    pub user: String,
    /// Wait for the pipeline's terminal event and print it.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds.
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The batch (messages keyed by this batch id).
    #[arg(long)]
    pub batch: String,
    /// Stop at the terminal event of this pipeline (its correlation id) instead of the first.
    #[arg(long, value_name = "CORRELATION_ID")]
    pub correlation: Option<Uuid>,
    /// Give up after this many seconds (default: wait until the pipeline ends).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Read every topic from its beginning instead of from now on (shows the batch's history).
    #[arg(long)]
    pub from_beginning: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The batch.
    #[arg(long)]
    pub batch: String,
    /// Print both services' raw documents as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MarkArgs {
    /// The batch.
    #[arg(long)]
    pub batch: String,
    /// The phase.
    #[arg(long)]
    pub phase: PhaseName,
    /// Record the phase as failed (it runs again when a pipeline needs it) instead of completed.
    #[arg(long)]
    pub not_complete: bool,
    /// Why (recorded with the mark).
    #[arg(long)]
    pub reason: String,
    /// Who (recorded with the mark).
    #[arg(long, env = "USER")]
    pub operator: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List failed-essay records and poison records (reads each DLQ topic to its end).
    List(DlqListArgs),
    /// Re-drive a poison record: its original bytes go back to the topic they came from, once
    /// (the conductor records it; a second re-drive of the same record is refused and says
    /// when and by whom). Needs OPERATOR_TOKEN.
    Redrive(DlqRedriveArgs),
}

#[derive(Debug, Args)]
pub struct DlqRedriveArgs {
    /// The DLQ topic holding the record (`<topic>.DLQ`, as `dlq list` shows it).
    #[arg(long)]
    pub topic: String,
    /// The record's partition.
    #[arg(long)]
    pub partition: i32,
    /// The record's offset.
    #[arg(long)]
    pub offset: i64,
    /// Why (recorded, and sent in the `redrive.reason` header).
    #[arg(long)]
    pub reason: String,
    /// Who (recorded, and sent in the `redrive.operator` header).
    #[arg(long, env = "USER")]
    pub operator: Option<String>,
}

/// Which dead-letter records to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DlqKind {
    /// Failed essays (huleedu.pipelines.failed_essays.DLQ).
    Essays,
    /// Poison messages (`<topic>.DLQ`).
    Poison,
    /// Both.
    #[default]
    All,
}

#[derive(Debug, Args)]
pub struct DlqListArgs {
    /// Only records of this batch (message key).
    #[arg(long)]
    pub batch: Option<String>,
    /// Which records.
    #[arg(long, value_enum, default_value_t = DlqKind::All)]
    pub kind: DlqKind,
    /// Print the records as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The batch.
    #[arg(long)]
    pub batch: String,
    /// The phase to run again.
    #[arg(long)]
    pub phase: PhaseName,
    /// Essays to run again (repeatable; default: those that failed the phase's latest run).
    #[arg(long = "essay", value_name = "ID", num_args = 1..)]
    pub essays: Vec<String>,
    /// Why (recorded with the retry).
    #[arg(long)]
    pub reason: String,
    /// Who (recorded with the retry).
    #[arg(long, env = "USER")]
    pub operator: Option<String>,
    /// Wait for the retry's terminal event, showing its events meanwhile.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds.
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Essays in the batch (1..1000).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub essays: u32,
    /// How many of them fail spellcheck (spread evenly, e.g. 04, 11, 17 of 20).
    #[arg(long, default_value_t = 3)]
    pub fail: u32,
    /// Batch id (default: `demo-<random>`).
    #[arg(long)]
    pub batch: Option<String>,
    /// Seconds each pipeline may take before the demo gives up on it.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub timeout: u64,
    /// The operator console's base URL: the report ends with the batch's page there.
    #[arg(long, env = "CONSOLE_URL")]
    pub console_url: Option<String>,
}

/// `host:port[,host:port...]`.
pub fn parse_bootstrap(s: &str) -> Result<String, String> {
    let ok = !s.trim().is_empty()
        && s.split(',').all(|part| {
            part.trim()
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        });
    if ok {
        Ok(s.trim().to_owned())
    } else {
        Err(format!(
            "expected comma-separated host:port pairs, e.g. 127.0.0.1:9092, got {s:?}"
        ))
    }
}

/// An `http://` or `https://` base URL, without a trailing slash.
pub fn parse_url(s: &str) -> Result<String, String> {
    let t = s.trim().trim_end_matches('/');
    let rest = t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() => Ok(t.to_owned()),
        _ => Err(format!(
            "expected a base URL like http://127.0.0.1:5000, got {s:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        let mut v = vec!["hulectl"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn submit_with_wait() {
        let cli = parse(&[
            "submit",
            "--batch",
            "b1",
            "--pipeline",
            "nlp",
            "--user",
            "ann",
            "--wait",
        ]);
        let Command::Submit(a) = cli.command else {
            panic!("not submit")
        };
        assert_eq!(
            (a.batch.as_str(), a.pipeline.as_str(), a.user.as_str()),
            ("b1", "nlp", "ann")
        );
        assert!(a.wait);
        assert_eq!(a.timeout, 600);
    }

    #[test]
    fn submit_requires_batch_and_pipeline() {
        assert!(Cli::try_parse_from(["hulectl", "submit", "--batch", "b1"]).is_err());
        assert!(Cli::try_parse_from(["hulectl", "submit", "--pipeline", "nlp"]).is_err());
    }

    #[test]
    fn global_options_anywhere() {
        let cli = parse(&[
            "status",
            "--batch",
            "b1",
            "--bos-url",
            "http://10.0.0.1:5000/",
            "--kafka",
            "127.0.0.1:49092",
            "--json",
        ]);
        assert_eq!(cli.global.bos_url, "http://10.0.0.1:5000");
        assert_eq!(cli.global.kafka.as_deref(), Some("127.0.0.1:49092"));
        let Command::Status(a) = cli.command else {
            panic!("not status")
        };
        assert!(a.json);
    }

    #[test]
    fn defaults_when_environment_is_silent() {
        let cli = parse(&["status", "--batch", "b"]);
        let expect = |var: &str, default: &str, got: &str| {
            if std::env::var_os(var).is_none() {
                assert_eq!(got, default, "{var}");
            }
        };
        if std::env::var_os("KAFKA_BOOTSTRAP_SERVERS").is_none() {
            assert_eq!(
                cli.global.kafka, None,
                "the Kafka settings' default applies"
            );
        }
        expect("BOS_URL", "http://127.0.0.1:5000", &cli.global.bos_url);
        expect("BCS_URL", "http://127.0.0.1:4002", &cli.global.bcs_url);
        expect("SIM_URL", "http://127.0.0.1:4010", &cli.global.sim_url);
    }

    #[test]
    fn bad_addresses_are_usage_errors() {
        assert!(
            Cli::try_parse_from(["hulectl", "--kafka", "kafka", "status", "--batch", "b"]).is_err()
        );
        assert!(Cli::try_parse_from([
            "hulectl",
            "--bos-url",
            "localhost:5000",
            "status",
            "--batch",
            "b"
        ])
        .is_err());
    }

    #[test]
    fn watch_options() {
        let c = "4f9a4e0e-8f8e-4c59-9b7a-2f7f0c1d2e3f";
        let cli = parse(&[
            "watch",
            "--batch",
            "b",
            "--correlation",
            c,
            "--timeout",
            "30",
        ]);
        let Command::Watch(a) = cli.command else {
            panic!("not watch")
        };
        assert_eq!(a.correlation, Some(c.parse().unwrap()));
        assert_eq!(a.timeout, Some(30));
        assert!(!a.from_beginning);
        assert!(
            Cli::try_parse_from(["hulectl", "watch", "--batch", "b", "--correlation", "nope"])
                .is_err()
        );
    }

    #[test]
    fn mark_parses_phase_and_flags() {
        let cli = parse(&[
            "mark",
            "--batch",
            "b",
            "--phase",
            "cj_assessment",
            "--not-complete",
            "--reason",
            "redo",
            "--operator",
            "ops",
        ]);
        let Command::Mark(a) = cli.command else {
            panic!("not mark")
        };
        assert_eq!(a.phase, PhaseName::CjAssessment);
        assert!(a.not_complete);
        assert_eq!(a.operator.as_deref(), Some("ops"));
        assert!(Cli::try_parse_from([
            "hulectl", "mark", "--batch", "b", "--phase", "bogus", "--reason", "r"
        ])
        .is_err());
        assert!(
            Cli::try_parse_from(["hulectl", "mark", "--batch", "b", "--phase", "nlp"]).is_err(),
            "reason is required"
        );
    }

    #[test]
    fn there_is_no_token_flag() {
        for cmd in ["mark", "retry"] {
            let r = Cli::try_parse_from([
                "hulectl", cmd, "--batch", "b", "--phase", "nlp", "--reason", "r", "--token", "t",
            ]);
            assert!(r.is_err(), "{cmd} must not accept --token");
        }
    }

    #[test]
    fn dlq_list_filters() {
        let cli = parse(&["dlq", "list", "--batch", "b", "--kind", "poison"]);
        let Command::Dlq(DlqCommand::List(a)) = cli.command else {
            panic!("not dlq list")
        };
        assert_eq!(a.batch.as_deref(), Some("b"));
        assert_eq!(a.kind, DlqKind::Poison);
        let cli = parse(&["dlq", "list"]);
        let Command::Dlq(DlqCommand::List(a)) = cli.command else {
            panic!("not dlq list")
        };
        assert_eq!((a.batch, a.kind), (None, DlqKind::All));
    }

    #[test]
    fn retry_takes_several_essays() {
        let cli = parse(&[
            "retry",
            "--batch",
            "b",
            "--phase",
            "spellcheck",
            "--essay",
            "e1",
            "--essay",
            "e2",
            "e3",
            "--reason",
            "fixed",
        ]);
        let Command::Retry(a) = cli.command else {
            panic!("not retry")
        };
        assert_eq!(a.essays, ["e1", "e2", "e3"]);
        assert_eq!(a.phase, PhaseName::Spellcheck);
        let cli = parse(&["retry", "--batch", "b", "--phase", "nlp", "--reason", "r"]);
        let Command::Retry(a) = cli.command else {
            panic!("not retry")
        };
        assert!(a.essays.is_empty());
    }

    #[test]
    fn demo_defaults_and_bounds() {
        let cli = parse(&["demo"]);
        let Command::Demo(a) = cli.command else {
            panic!("not demo")
        };
        assert_eq!((a.essays, a.fail, a.batch), (20, 3, None));
        assert!(Cli::try_parse_from(["hulectl", "demo", "--essays", "0"]).is_err());
        assert!(Cli::try_parse_from(["hulectl", "demo", "--essays", "1001"]).is_err());
    }

    #[test]
    fn url_and_bootstrap_parsers() {
        assert_eq!(parse_url("http://h:1/").unwrap(), "http://h:1");
        assert!(parse_url("http://").is_err());
        assert!(parse_bootstrap("a:1,b:2").is_ok());
        assert!(parse_bootstrap("a:x").is_err());
        assert!(parse_bootstrap("").is_err());
    }
}
