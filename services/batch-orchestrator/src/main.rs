//! `batch-orchestrator`: settings from the environment, telemetry, run until SIGTERM (exit codes:
//! `huleedu_service::run`).

use std::process::ExitCode;

use batch_orchestrator::settings::BosSettings;
use batch_orchestrator::App;

#[tokio::main]
async fn main() -> ExitCode {
    huleedu_service::run::<BosSettings, _, _>(|settings, shutdown| async move {
        App::build(settings).await?.run(shutdown).await
    })
    .await
}
