//! `pipeline-console`: settings from the environment, telemetry, shutdown on SIGTERM, run the
//! console (exit codes: `huleedu_service::run`).

use std::process::ExitCode;

use pipeline_console::{App, ConsoleSettings};

#[tokio::main]
async fn main() -> ExitCode {
    huleedu_service::run::<ConsoleSettings, _, _>(|settings, shutdown| async move {
        Ok(App::build(settings).await?.run(shutdown).await?)
    })
    .await
}
