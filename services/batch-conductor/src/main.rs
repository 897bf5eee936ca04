//! `batch-conductor`: the Batch Conductor Service binary. See the library docs; exit codes:
//! `huleedu_service::run`.

use std::process::ExitCode;

use batch_conductor::{App, BcsSettings};

#[tokio::main]
async fn main() -> ExitCode {
    huleedu_service::run::<BcsSettings, _, _>(|settings, shutdown| async move {
        App::build(settings).await?.run(shutdown).await
    })
    .await
}
