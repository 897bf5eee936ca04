//! The one `main` of every service binary, and its exit convention:
//!
//! | what happens | output | exit code |
//! |---|---|---|
//! | `--help` | the variables, their defaults and meanings (stdout) | 0 |
//! | any other argument | `<binary>: unknown argument ...` (stderr) | 2 |
//! | a bad setting | `<binary>: invalid setting NAME="value": reason` (stderr) | 2 |
//! | start-up or run fails | the error with its causes, logged | 1 |
//! | stopped by SIGTERM / Ctrl-C, cleanly | | 0 |
//!
//! (A second signal while draining exits at once with 130, see [`crate::shutdown`].)

use std::future::Future;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::settings::{help_text, ServiceSettings};
use crate::{shutdown, telemetry};

/// A settings error, or an argument that is not `--help`.
const EXIT_SETTINGS: u8 = 2;
/// Start-up or run failed.
const EXIT_FAILED: u8 = 1;

/// Read the settings `S` from the process environment, start logging and the signal handler,
/// then run `service` until it returns. Every exit follows the module's convention.
pub async fn run<S, F, Fut>(service: F) -> ExitCode
where
    S: ServiceSettings,
    F: FnOnce(S, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let command = S::command();
    let binary = command.get_name().to_owned();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{}", help_text(&command));
        return ExitCode::SUCCESS;
    }
    if let Some(other) = args.first() {
        eprintln!("{binary}: unknown argument {other:?}; configuration comes from environment variables, see --help");
        return ExitCode::from(EXIT_SETTINGS);
    }
    let settings = match S::from_process() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{binary}: {e}");
            return ExitCode::from(EXIT_SETTINGS);
        }
    };
    let common = settings.common();
    let _telemetry = telemetry::init(
        common.log_format,
        &telemetry::TraceExport {
            endpoint: common.otlp_endpoint.clone(),
            service_name: common
                .otel_service_name
                .clone()
                .unwrap_or_else(|| binary.clone()),
            json: common.otlp_json,
        },
    );
    let stop = shutdown::install();
    match service(settings, stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{binary} failed");
            ExitCode::from(EXIT_FAILED)
        }
    }
}
