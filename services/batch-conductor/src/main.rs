//! `batch-conductor`: the Batch Conductor Service binary. See the library docs.

use std::process::ExitCode;

use batch_conductor::{settings_docs, App, BcsSettings};
use huleedu_service::settings::{handle_args, Env};
use huleedu_service::{shutdown, telemetry};

const ABOUT: &str = "Batch Conductor Service: records batch-level phase completion from events, \
resolves pipelines with causal pruning, routes failed essays to the DLQ, offers operator marks";

#[tokio::main]
async fn main() -> ExitCode {
    handle_args("batch-conductor", ABOUT, &settings_docs());
    let settings = match BcsSettings::from_env(&Env::from_process()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("batch-conductor: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.common.log_format);
    let shutdown = shutdown::install();
    let result = match App::build(settings).await {
        Ok(app) => app.run(shutdown).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::error!(error = format!("{e:#}"), "batch conductor failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
