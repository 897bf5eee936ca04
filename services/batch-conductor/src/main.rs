//! `batch-conductor`: the Batch Conductor Service binary. See the library docs; exit codes:
//! `huleedu_service::run`.

use std::process::ExitCode;

use batch_conductor::{App, BcsSettings};

/// jemalloc rather than glibc's malloc, as the whole process's `malloc` (librdkafka's buffers
/// too: the workspace enables `unprefixed_malloc_on_supported_platforms`): it reuses the pages
/// of freed large blocks (a large batch's messages are megabytes) instead of mapping them
/// afresh for every message, and returns unused memory to the system on its own, 10 s after
/// its last use (`MALLOC_CONF` changes that; docs/performance.md, "Allocator").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    huleedu_service::run::<BcsSettings, _, _>(|settings, shutdown| async move {
        App::build(settings).await?.run(shutdown).await
    })
    .await
}
