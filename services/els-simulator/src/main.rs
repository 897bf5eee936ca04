//! `els-simulator`: settings from the environment, telemetry, shutdown on SIGTERM, run the app
//! (exit codes: `huleedu_service::run`).

use std::process::ExitCode;

use els_simulator::{App, SimSettings};

#[tokio::main]
async fn main() -> ExitCode {
    huleedu_service::run::<SimSettings, _, _>(|settings, shutdown| async move {
        Ok(App::build(settings).await?.run(shutdown).await?)
    })
    .await
}
