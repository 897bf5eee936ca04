//! `els-simulator`: settings from the environment, telemetry, shutdown on SIGTERM, run the app.

use els_simulator::{settings_docs, App, SimSettings};
use huleedu_service::settings::{handle_args, Env};
use huleedu_service::{shutdown, telemetry};

const ABOUT: &str = "reference phase worker (dev/test tool): answers initiate commands with \
ELSBatchPhaseOutcomeV1, registers demo batches, counts dispatches";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    handle_args("els-simulator", ABOUT, &settings_docs());
    let settings = match SimSettings::from_env(&Env::from_process()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("els-simulator: {e}");
            std::process::exit(2);
        }
    };
    telemetry::init(settings.common.log_format);
    let shutdown = shutdown::install();
    let app = App::build(settings).await?;
    app.run(shutdown).await?;
    Ok(())
}
