//! Monitoring against a real Prometheus (Debian's `prometheus` package): it scrapes the stack's
//! orchestrator and conductor with the shipped alert rules (`deploy/prometheus/alerts.yml`, their
//! `for:` durations set to 0 s so the test does not wait minutes), and `promtool check metrics`
//! checks what both services expose.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context};
use huleedu_it::stack::free_port;
use huleedu_it::unique;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use crate::ctx::{Ctx, T};

type R = anyhow::Result<()>;

/// The phase time-out of the monitoring stack: the stuck alert fires at half of it.
/// 120 s leaves the phase 35 s or more to complete after the worker continues (the alert fires
/// 60–72 s after the dispatch), on a loaded machine too.
pub const PHASE_TIMEOUT_SECS: u64 = 120;

fn rules_source() -> PathBuf {
    huleedu_contracts::checkout_root().join("deploy/prometheus/alerts.yml")
}

/// The shipped rules with every `for:` set to 0 s.
fn rules_without_waiting() -> anyhow::Result<String> {
    let text = std::fs::read_to_string(rules_source())?;
    Ok(text
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for:") {
            Some(_) => format!("{}for: 0s", &l[..l.len() - l.trim_start().len()]),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// A Prometheus scraping `targets` (job → base URL) every second with the alert rules.
struct Prometheus {
    url: String,
    _proc: Child,
}

async fn prometheus(dir: &std::path::Path, targets: &[(&str, &str)]) -> anyhow::Result<Prometheus> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("alerts.yml"), rules_without_waiting()?)?;
    let scrapes: Vec<String> = targets
        .iter()
        .map(|(job, url)| {
            format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{}']\n",
                url.trim_start_matches("http://")
            )
        })
        .collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - alerts.yml\nscrape_configs:\n{}",
        scrapes.concat()
    );
    std::fs::write(dir.join("prometheus.yml"), config)?;
    let port = free_port();
    let log = std::fs::File::create(dir.join("prometheus.log"))?;
    let proc = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .context(
            "starting prometheus (Debian's prometheus package; scripts/test.sh installs it)",
        )?;
    let url = format!("http://127.0.0.1:{port}");
    let http = huleedu_it::http_client();
    let start = Instant::now();
    while http
        .get(format!("{url}/-/ready"))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        ensure!(start.elapsed() < T, "prometheus not ready within {T:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(Prometheus { url, _proc: proc })
}

/// The state of alert `name` in Prometheus (`firing`, `pending`), if it is active.
async fn alert_state(c: &Ctx, prom: &str, name: &str) -> anyhow::Result<Option<String>> {
    let v: Value = c
        .http
        .get(format!("{prom}/api/v1/alerts"))
        .send()
        .await?
        .json()
        .await?;
    Ok(v["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["labels"]["alertname"] == name)
        .and_then(|a| a["state"].as_str().map(str::to_owned)))
}

async fn wait_alert(c: &Ctx, prom: &str, name: &str, want: Option<&str>, within: Duration) -> R {
    let start = Instant::now();
    loop {
        let state = alert_state(c, prom, name).await?;
        if state.as_deref() == want {
            return Ok(());
        }
        ensure!(
            start.elapsed() < within,
            "{name} is {state:?}, not {want:?}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn signal(pid: u32, sig: &str) -> R {
    let ok = std::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()?
        .success();
    ensure!(ok, "kill -{sig} {pid} failed");
    Ok(())
}

/// `promtool check metrics` over a service's `/metrics`; the names it exposes.
async fn check_metrics(c: &Ctx, url: &str) -> anyhow::Result<Vec<String>> {
    // The classic text format: promtool reads that one.
    let resp = c
        .http
        .get(format!("{url}/metrics"))
        .header("accept", "text/plain; version=0.0.4")
        .send()
        .await?;
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    ensure!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{url}/metrics answers {content_type} to a text/plain request"
    );
    let text = resp.text().await?;
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("promtool (Debian's prometheus package)")?;
    p.stdin.take().unwrap().write_all(text.as_bytes()).await?;
    let out = p.wait_with_output().await?;
    ensure!(
        out.status.success(),
        "promtool check metrics of {url}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Both services' metrics pass `promtool check metrics`, every metric the alert rules name is
/// exposed, and the stuck-pipeline alert fires in a real Prometheus while the reference worker
/// is stopped (SIGSTOP) mid-pipeline, and resolves once it continues (SIGCONT) and the phase
/// completes.
pub async fn m01_alerts_in_prometheus(c: Arc<Ctx>) -> R {
    let dir = std::env::temp_dir().join(unique("huleedu-prometheus"));
    let prom = prometheus(
        &dir,
        &[("batch-orchestrator", &c.bos), ("batch-conductor", &c.bcs)],
    )
    .await?;
    // Both targets scraped and ready: nothing fires.
    let start = Instant::now();
    loop {
        let v: Value = c
            .http
            .get(format!("{}/api/v1/query", prom.url))
            .query(&[("query", "min(bos_ready) + min(bcs_ready)")])
            .send()
            .await?
            .json()
            .await?;
        if v["data"]["result"][0]["value"][1] == "2" {
            break;
        }
        ensure!(
            start.elapsed() < T,
            "the services never showed ready in prometheus: {v}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ensure!(
        alert_state(&c, &prom.url, "PipelineStuck").await?.is_none(),
        "nothing stuck yet"
    );

    // The worker stops; a pipeline's first phase waits for it.
    let sim = c.sim_pid.ok_or_else(|| anyhow!("no worker pid"))?;
    let b = unique("m01");
    c.register(&b, 3, json!({"spellcheck": [format!("{b}-e02")]}), &[])
        .await?;
    // A poison message, so the DLQ counters have a series.
    c.publish_raw(
        huleedu_contracts::topics::CLIENT_BATCH_PIPELINE_REQUEST,
        &b,
        b"{not json".to_vec(),
    )
    .await?;
    signal(sim, "STOP")?;
    let stopped = Instant::now();
    let r = async {
        let req = c.request(&b, "nlp").await?;
        wait_alert(
            &c,
            &prom.url,
            "PipelineStuck",
            Some("firing"),
            Duration::from_secs(PHASE_TIMEOUT_SECS * 3 / 4),
        )
        .await?;
        let fired_after = stopped.elapsed();
        ensure!(
            fired_after >= Duration::from_secs(PHASE_TIMEOUT_SECS / 2),
            "fired after {fired_after:?}, before half the phase time-out"
        );
        signal(sim, "CONT")?;
        let t = c.terminal(req).await?;
        ensure!(
            t["final_status"] == "completed_with_failures",
            "the pipeline completes once the worker continues: {t}"
        );
        wait_alert(
            &c,
            &prom.url,
            "PipelineStuck",
            None,
            Duration::from_secs(30),
        )
        .await
    }
    .await;
    let _ = signal(sim, "CONT");
    r?;
    // The gauges are there, with their bounded labels. The lag of a partition shows once the
    // group has committed an offset on it and the next statistics report and sample came (up
    // to 20 s after the pipeline): wait for it.
    let needles = [
        "bos_consumer_lag{topic=\"huleedu.els.batch.phase.outcome.v1\",partition=\"",
        "bcs_consumer_lag{topic=\"huleedu.els.batch.phase.outcome.v1\",partition=\"",
        "bos_outbox_entries{bucket=\"00\"}",
        "bos_outbox_oldest_entry_age_seconds{bucket=\"15\"}",
        "bos_dlq_records_total{topic=\"huleedu.commands.batch.pipeline.v1.DLQ\"} 1",
        "bcs_dlq_records_total{topic=\"huleedu.pipelines.failed_essays.DLQ\"} 1",
        "bos_ready 1",
        "bcs_ready 1",
    ];
    let start = Instant::now();
    let text = loop {
        let mut text = String::new();
        for url in [&c.bos, &c.bcs] {
            text.push_str(
                &c.http
                    .get(format!("{url}/metrics"))
                    .send()
                    .await?
                    .text()
                    .await?,
            );
        }
        let missing: Vec<&str> = needles
            .iter()
            .copied()
            .filter(|n| !text.contains(n))
            .collect();
        if missing.is_empty() {
            break text;
        }
        ensure!(
            start.elapsed() < T,
            "the services do not expose {missing:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    ensure!(!text.contains(&b), "no batch-id label");
    // What they expose passes promtool, and holds every metric the rules use (families without
    // a sample are not exposed: checked after the activity above).
    let mut exposed = check_metrics(&c, &c.bos).await?;
    exposed.extend(check_metrics(&c, &c.bcs).await?);
    let rules = std::fs::read_to_string(rules_source())?;
    let used: std::collections::BTreeSet<&str> = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_')))
        .filter(|w| (w.starts_with("bos_") || w.starts_with("bcs_")) && !w.ends_with('_'))
        .collect();
    ensure!(used.len() >= 8, "{used:?}");
    for name in used {
        ensure!(
            exposed.iter().any(|e| e == name),
            "the alert rules use {name}, which no service exposes: {exposed:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
