//! Shutdown is a tree: one root [`CancellationToken`] cancelled by SIGTERM or Ctrl-C.
//!
//! Each component takes a child token, stops its intake when cancelled and drains its in-flight
//! work. A second signal while draining exits the process at once (exit code 130).

use tokio_util::sync::CancellationToken;

/// Spawn the signal listener and return the root token it cancels.
pub fn install() -> CancellationToken {
    let root = CancellationToken::new();
    let token = root.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: stopping intake and draining in-flight work");
        token.cancel();
        wait_for_signal().await;
        tracing::warn!("second shutdown signal: exiting now");
        std::process::exit(130);
    });
    root
}

/// Wait for a component's task to end after its stop was requested; a panic is logged, naming
/// `what`, and shutdown goes on.
pub async fn join<T>(task: tokio::task::JoinHandle<T>, what: &str) -> Option<T> {
    match task.await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "{what} task failed");
            None
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
