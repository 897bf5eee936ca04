//! Child processes of the benchmark (the floor relay and the three services), with their logs
//! in the run directory and their memory read from `/proc`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::{Child, Command};

use crate::stats::{rss_kib, Rss};

/// A running child process, killed when dropped.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub pid: u32,
    child: Child,
}

impl Proc {
    /// Start `program args…` with extra `env`; stdout and stderr go to `<run_dir>/<name>.log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(String, String)],
        run_dir: &Path,
    ) -> anyhow::Result<Proc> {
        let log = std::fs::File::create(run_dir.join(format!("{name}.log")))?;
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {} ({})", name, program.display()))?;
        let pid = child.id().context("child pid")?;
        Ok(Proc {
            name: name.to_owned(),
            pid,
            child,
        })
    }

    /// Resident set size now (`VmRSS`).
    pub fn rss(&self) -> Option<Rss> {
        rss_kib(self.pid)
    }

    /// Is it still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kill it and reap it.
    /// SIGTERM, and wait (at most `bound`) for the process to exit; SIGKILL after that.
    pub async fn terminate(mut self, bound: Duration) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        if tokio::time::timeout(bound, self.child.wait())
            .await
            .is_err()
        {
            self.stop().await;
        }
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// Wait until `GET {url}/readyz` answers 200.
pub async fn wait_ready(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{url}/readyz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        anyhow::ensure!(
            start.elapsed() < timeout,
            "{url} not ready within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A free TCP port on 127.0.0.1 (`huleedu_it::stack::free_port`: never the same twice, never
/// one an outgoing connection could take while its server restarts).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(huleedu_it::stack::free_port())
}
