//! Percentiles, Redis command statistics, Prometheus scrapes and `/proc` memory.

use std::collections::BTreeMap;

use serde::Serialize;

/// RSS in KiB.
pub type Rss = u64;

/// `VmRSS` of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// A latency distribution (milliseconds).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Dist {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
    pub max: f64,
}

impl Dist {
    pub fn of(mut v: Vec<f64>) -> Dist {
        if v.is_empty() {
            return Dist::default();
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| {
            // Nearest rank.
            let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
            v[rank - 1]
        };
        Dist {
            n: v.len(),
            p50: q(0.50),
            p99: q(0.99),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            max: *v.last().unwrap(),
        }
    }
}

/// `after - before`, per command, without the bench's own commands (`info`, `scan`) and a
/// cluster's replication traffic (`replconf`: replicas' acknowledgements, not clients' calls).
pub fn delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "info" | "scan" | "dbsize" | "client|list" | "replconf"
            )
        })
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// The text of `GET {url}/metrics`.
pub async fn scrape(http: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    Ok(http
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// Sum of every sample of `metric` whose labels contain all of `labels` (`k="v"` pairs).
pub fn sample_sum(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name_labels, value) = l.rsplit_once(' ')?;
            let name = name_labels.split('{').next()?;
            (name == metric && labels.iter().all(|lb| name_labels.contains(lb)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// Cumulative buckets `(le, count)` of histogram `metric`.
pub fn buckets(text: &str, metric: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{metric}_bucket{{");
    let mut out: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let le = rest.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = l.rsplit_once(' ')?.1.parse().ok()?;
            Some((le, count))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Quantile `q` of the observations between two scrapes of a histogram, interpolated linearly
/// inside its bucket (as Prometheus' `histogram_quantile` does). In the histogram's unit.
pub fn histogram_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let d: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, c)| {
            let b = before
                .iter()
                .find(|(l, _)| l == le)
                .map(|(_, c)| *c)
                .unwrap_or(0.0);
            (*le, c - b)
        })
        .collect();
    let total = d.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev_le = 0.0;
    let mut prev_c = 0.0;
    for (le, c) in d {
        if c >= rank {
            if le.is_infinite() {
                return Some(prev_le);
            }
            let in_bucket = c - prev_c;
            let frac = if in_bucket > 0.0 {
                (rank - prev_c) / in_bucket
            } else {
                1.0
            };
            return Some(prev_le + (le - prev_le) * frac);
        }
        prev_le = le;
        prev_c = c;
    }
    None
}

/// CPU time (user + system, all threads) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "(comm) ": state is the first; utime and stime are the 12th and 13th.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(ticks / 100.0)
}

/// Cores each process used on average over a window (CPU seconds / wall seconds).
#[derive(Debug)]
pub struct CpuMeter {
    start: Vec<(String, u32, Option<f64>)>,
    t0: std::time::Instant,
}

impl CpuMeter {
    pub fn start(pids: Vec<(String, u32)>) -> Self {
        CpuMeter {
            start: pids
                .into_iter()
                .map(|(n, p)| (n, p, cpu_seconds(p)))
                .collect(),
            t0: std::time::Instant::now(),
        }
    }

    pub fn finish(self) -> BTreeMap<String, f64> {
        let wall = self.t0.elapsed().as_secs_f64().max(1e-6);
        // Processes of the same name (the nodes of a Redis Cluster by role) are summed.
        let mut out = BTreeMap::new();
        for (n, p, s) in self.start {
            if let (Some(end), Some(s)) = (cpu_seconds(p), s) {
                *out.entry(n).or_default() += (end - s) / wall;
            }
        }
        out
    }
}

/// The broker's, Redis' and this process's pids (from `scripts/bench.sh`), named. Without
/// `standalone_redis` (the services use a Redis Cluster), not the standalone server's
/// (`REDIS_PID`), which idles.
pub fn infra_pids(standalone_redis: bool) -> Vec<(String, u32)> {
    let mut v = vec![(
        "huleedu-bench (driver + reader)".to_owned(),
        std::process::id(),
    )];
    let broker = format!(
        "{} (broker)",
        std::env::var("BROKER").unwrap_or_else(|_| "kafka".to_owned())
    );
    let mut vars = vec![(broker.as_str(), "BROKER_PID")];
    if standalone_redis {
        vars.push(("redis-server", "REDIS_PID"));
    }
    for (name, var) in vars {
        if let Some(pid) = std::env::var(var).ok().and_then(|p| p.parse().ok()) {
            v.push((name.to_owned(), pid));
        }
    }
    v
}
