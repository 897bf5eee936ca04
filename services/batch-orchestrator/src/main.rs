//! `batch-orchestrator`: settings from the environment, telemetry, run until SIGTERM.

use batch_orchestrator::settings::{settings_docs, BosSettings};
use batch_orchestrator::App;
use huleedu_service::settings::{handle_args, Env};
use huleedu_service::{shutdown, telemetry};

#[tokio::main]
async fn main() {
    handle_args(
        "batch-orchestrator",
        "runs HuleEdu essay-processing pipelines phase by phase",
        &settings_docs(),
    );
    let settings = match BosSettings::from_env(&Env::from_process()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("batch-orchestrator: {e}");
            std::process::exit(2);
        }
    };
    telemetry::init(settings.common.log_format);
    let shutdown = shutdown::install();
    let result = match App::build(settings).await {
        Ok(app) => app.run(shutdown, None).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::error!(error = format!("{e:#}"), "batch-orchestrator failed");
        std::process::exit(1);
    }
}
