//! The table (stdout) and the JSON file.

use std::path::Path;

use serde::Serialize;

use crate::stats::Dist;
use crate::system::Results;

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub figure: String,
    pub value: Option<f64>,
    pub unit: &'static str,
    /// The floor figure it is compared with.
    pub floor: Option<f64>,
    /// value / floor.
    pub ratio: Option<f64>,
    pub target: Option<String>,
    pub met: Option<bool>,
}

fn row(
    figure: impl Into<String>,
    value: Option<f64>,
    unit: &'static str,
    floor: Option<f64>,
) -> Row {
    let ratio = match (value, floor) {
        (Some(v), Some(f)) if f > 0.0 => Some(v / f),
        _ => None,
    };
    Row {
        figure: figure.into(),
        value,
        unit,
        floor,
        ratio,
        target: None,
        met: None,
    }
}

impl Row {
    fn ratio_at_most(mut self, max: f64) -> Self {
        self.target = Some(format!("ratio <= {max}"));
        self.met = self.ratio.map(|r| r <= max);
        self
    }
    fn ratio_at_least(mut self, min: f64) -> Self {
        self.target = Some(format!("ratio >= {min}"));
        self.met = self.ratio.map(|r| r >= min);
        self
    }
    fn value_at_most(mut self, max: f64, text: &str) -> Self {
        self.target = Some(text.to_owned());
        self.met = self.value.map(|v| v <= max);
        self
    }
    fn value_below(mut self, max: f64, text: &str) -> Self {
        self.target = Some(text.to_owned());
        self.met = self.value.map(|v| v < max);
        self
    }
}

fn some(d: &Dist, f: impl Fn(&Dist) -> f64) -> Option<f64> {
    (d.n > 0).then(|| f(d))
}

/// The table rows of a run.
pub fn rows(r: &Results) -> Vec<Row> {
    let f = &r.floor;
    let hop50 = some(&f.hop_ms, |d| d.p50);
    let hop99 = some(&f.hop_ms, |d| d.p99);
    let rate = Some(f.msgs_per_sec);
    let t = &r.throughput;
    let l = &r.latency_run;
    let mut rows = vec![
        row("floor: relay hop p50 (1 in flight)", hop50, "ms", hop50),
        row("floor: relay hop p99 (1 in flight)", hop99, "ms", hop99),
        row(
            format!("floor: relay msgs/s ({} in flight)", f.inflight),
            rate,
            "1/s",
            rate,
        ),
        row(
            format!(
                "floor: relay msgs/s, one message at a time ({} in flight)",
                r.floor_sequential.inflight
            ),
            Some(r.floor_sequential.msgs_per_sec),
            "1/s",
            rate,
        ),
        row(
            "floor: relay hop p50 (loaded)",
            some(&f.loaded_hop_ms, |d| d.p50),
            "ms",
            None,
        ),
        row(
            "floor: relay hop p99 (loaded)",
            some(&f.loaded_hop_ms, |d| d.p99),
            "ms",
            None,
        ),
        row(
            "floor: relay RSS",
            f.relay_rss_kib.map(|k| k as f64 / 1024.0),
            "MiB",
            None,
        ),
        row(
            "phase transitions/s (loaded)",
            Some(t.transitions_per_sec),
            "1/s",
            rate,
        )
        .ratio_at_least(0.5),
        row(
            "pipelines/s (loaded)",
            Some(t.pipelines_per_sec),
            "1/s",
            rate,
        ),
        row(
            "per-transition overhead p50 (outcome -> next event)",
            some(&l.transition_ms, |d| d.p50),
            "ms",
            hop50,
        )
        .ratio_at_most(1.25),
        row(
            "per-transition overhead p99 (outcome -> next event)",
            some(&l.transition_ms, |d| d.p99),
            "ms",
            hop99,
        )
        .ratio_at_most(2.0),
        row(
            "pipeline handover p50 (last outcome -> next pipeline's command)",
            some(&l.handover_ms, |d| d.p50),
            "ms",
            hop50,
        ),
        row(
            "pipeline handover p99",
            some(&l.handover_ms, |d| d.p99),
            "ms",
            hop99,
        ),
        row(
            "request -> terminal p50 (1 batch at a time)",
            some(&l.request_to_terminal_ms, |d| d.p50),
            "ms",
            hop50,
        ),
        row(
            "request -> terminal p99 (1 batch at a time)",
            some(&l.request_to_terminal_ms, |d| d.p99),
            "ms",
            hop99,
        ),
        row(
            "request -> first command p50",
            some(&l.request_to_first_command_ms, |d| d.p50),
            "ms",
            hop50,
        ),
        row(
            "request -> first command p99",
            some(&l.request_to_first_command_ms, |d| d.p99),
            "ms",
            hop99,
        ),
        row(
            "loaded: per-transition overhead p50",
            some(&t.latencies.transition_ms, |d| d.p50),
            "ms",
            some(&f.loaded_hop_ms, |d| d.p50),
        ),
        row(
            "loaded: per-transition overhead p99",
            some(&t.latencies.transition_ms, |d| d.p99),
            "ms",
            some(&f.loaded_hop_ms, |d| d.p99),
        ),
        row(
            "loaded: request -> terminal p50 (3 queued per batch)",
            some(&t.latencies.request_to_terminal_ms, |d| d.p50),
            "ms",
            None,
        ),
        row(
            "loaded: request -> terminal p99 (3 queued per batch)",
            some(&t.latencies.request_to_terminal_ms, |d| d.p99),
            "ms",
            None,
        ),
        row(
            "conductor resolve p50 (define timed directly)",
            some(&r.resolve_direct_ms, |d| d.p50),
            "ms",
            hop50,
        ),
        row(
            "conductor resolve p99 (define timed directly)",
            some(&r.resolve_direct_ms, |d| d.p99),
            "ms",
            hop99,
        ),
        row(
            "conductor resolve p50 (bcs_resolve_duration_seconds, loaded)",
            t.resolve_hist_p50_ms,
            "ms",
            hop50,
        ),
        row(
            "conductor resolve p99 (bcs_resolve_duration_seconds, loaded)",
            t.resolve_hist_p99_ms,
            "ms",
            hop99,
        ),
    ];
    if let Some(a) = &r.attribution {
        for (svc, per) in &a.per_transition {
            if svc == crate::monitor::INSIDE_SCRIPTS {
                continue;
            }
            rows.push(
                row(
                    format!("Redis round trips per transition: {svc}"),
                    Some(*per),
                    "calls",
                    None,
                )
                .value_at_most(2.0, "<= 2"),
            );
            // What they are, by command (and by script for EVALSHA).
            let n = a.transitions.max(1) as f64;
            for (cmd, calls) in a.calls.get(svc).into_iter().flatten() {
                if cmd != "wait" {
                    rows.push(row(
                        format!("  {cmd}"),
                        Some(*calls as f64 / n),
                        "calls",
                        None,
                    ));
                }
            }
        }
        rows.push(row(
            "Redis round trips per transition: all services",
            Some(a.round_trips_per_transition),
            "calls",
            None,
        ));
        if a.pipelined_waits_per_transition > 0.0 {
            rows.push(row(
                "  (+ WAIT, in the same pipeline as a commit: not round trips)",
                Some(a.pipelined_waits_per_transition),
                "calls",
                None,
            ));
        }
        if let Some(inside) = a.per_transition.get(crate::monitor::INSIDE_SCRIPTS) {
            rows.push(row(
                "  (+ commands run inside scripts, not round trips)",
                Some(*inside),
                "calls",
                None,
            ));
        }
    }
    rows.push(row(
        "INFO commandstats calls per transition (loaded, incl. inside scripts)",
        Some(t.redis_calls_per_transition),
        "calls",
        None,
    ));
    for (cmd, calls) in &t.redis_calls {
        rows.push(row(
            format!("  {cmd}"),
            Some(*calls as f64 / t.latencies.transitions.max(1) as f64),
            "calls",
            None,
        ));
    }
    rows.push(row(
        "broker messages published per transition (loaded; floor: 2 per hop)",
        Some(t.messages_per_transition),
        "msgs",
        Some(2.0),
    ));
    for (name, cores) in &f.cpu_cores {
        rows.push(row(
            format!("CPU, floor throughput: {name}"),
            Some(*cores),
            "cores",
            None,
        ));
    }
    for (name, cores) in &t.cpu_cores {
        rows.push(row(
            format!("CPU, system throughput: {name}"),
            Some(*cores),
            "cores",
            None,
        ));
    }
    if t.transitions_per_sec > 0.0 {
        for (name, cores) in &t.cpu_cores {
            rows.push(row(
                format!("CPU per transition (loaded): {name}"),
                Some(cores / t.transitions_per_sec * 1e6),
                "µs",
                None,
            ));
        }
    }
    // The floor relay's CPU per relayed message at its own throughput, measured before and
    // after the services' throughput run, and each service's CPU per transition against the
    // mean of the two (the goal: at most 1.5 times).
    let relay_cpu_us = |f: &crate::floor::FloorResult| {
        f.cpu_cores
            .get("floor relay")
            .filter(|_| f.msgs_per_sec > 0.0)
            .map(|cores| cores / f.msgs_per_sec * 1e6)
    };
    let relay_before = relay_cpu_us(f);
    let relay_after = r.floor_after.as_ref().and_then(relay_cpu_us);
    let relay_us = match (relay_before, relay_after) {
        (Some(b), Some(a)) => Some((b + a) / 2.0),
        (b, a) => b.or(a),
    };
    if let Some(after) = &r.floor_after {
        rows.push(row(
            format!(
                "floor again after the throughput run: relay msgs/s ({} in flight)",
                after.inflight
            ),
            Some(after.msgs_per_sec),
            "1/s",
            rate,
        ));
        rows.push(row(
            "floor: relay CPU per relayed message, before the services' run",
            relay_before,
            "µs",
            None,
        ));
        rows.push(row(
            "floor: relay CPU per relayed message, after their throughput run",
            relay_after,
            "µs",
            relay_before,
        ));
    }
    rows.push(row(
        "floor: relay CPU per relayed message (loaded; mean of before and after)",
        relay_us,
        "µs",
        relay_us,
    ));
    if t.transitions_per_sec > 0.0 {
        for svc in ["batch-orchestrator", "batch-conductor"] {
            let us = t
                .cpu_cores
                .get(svc)
                .map(|cores| cores / t.transitions_per_sec * 1e6);
            rows.push(
                row(
                    format!("CPU per transition vs relay CPU per message: {svc}"),
                    us,
                    "µs",
                    relay_us,
                )
                .ratio_at_most(1.5),
            );
        }
    }
    if let Some(so) = &r.scale_out {
        let t2 = &so.throughput;
        rows.push(row(
            format!(
                "phase transitions/s, {} replicas each ({} partitions; vs 1 each)",
                so.replicas, so.topic_partitions
            ),
            Some(t2.transitions_per_sec),
            "1/s",
            Some(so.one_replica_transitions_per_sec),
        ));
        if t2.transitions_per_sec > 0.0 {
            for (name, cores) in &t2.cpu_cores {
                rows.push(row(
                    format!("CPU per transition ({} replicas): {name}", so.replicas),
                    Some(cores / t2.transitions_per_sec * 1e6),
                    "µs",
                    None,
                ));
            }
        }
    }
    let relay_mib = f.relay_rss_kib.map(|k| k as f64 / 1024.0);
    if let Some(m) = &r.memory {
        for (svc, kib) in &m.rss_live_kib {
            rows.push(
                row(
                    format!("RSS {svc} ({} live batches)", m.live_batches_bos),
                    kib.map(|k| k as f64 / 1024.0),
                    "MiB",
                    relay_mib,
                )
                .value_at_most(64.0, "<= 64 MiB"),
            );
        }
        for (svc, before) in &m.rss_live_kib {
            let after = m.rss_after_soak_kib.get(svc).copied().flatten();
            let growth = match (before, after) {
                (Some(b), Some(a)) if *b > 0 => Some((a as f64 - *b as f64) / *b as f64 * 100.0),
                _ => None,
            };
            rows.push(
                row(
                    format!("RSS growth {svc} over {}-event soak", m.soak_events),
                    growth,
                    "%",
                    None,
                )
                .value_below(5.0, "< 5 %"),
            );
        }
        // Steady state: from the first soak wave at or past half the soak to its end (the
        // bounded tables are full of soak batches by then).
        let half = m.soak_events / 2;
        if let (Some(mid), Some(last)) = (
            m.rss_series.iter().find(|(events, _, _)| *events >= half),
            m.rss_series.last(),
        ) {
            for (svc, at_mid) in &mid.2 {
                let at_end = last.2.get(svc).copied().flatten();
                let growth = match (at_mid, at_end) {
                    (Some(b), Some(a)) if *b > 0 && last.0 > mid.0 => {
                        Some((a as f64 - *b as f64) / *b as f64 * 100.0)
                    }
                    _ => None,
                };
                rows.push(
                    row(
                        format!(
                            "RSS growth {svc}, soak events {}..{} (steady state)",
                            mid.0, last.0
                        ),
                        growth,
                        "%",
                        None,
                    )
                    .value_below(5.0, "< 5 %"),
                );
            }
        }
    }
    rows
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// `standalone`, or `cluster (3 masters, 3 replicas; REDIS_WAIT_REPLICAS=1)`.
fn redis_setup(r: &crate::system::RedisSetup) -> String {
    let mut s = r.mode.as_str().to_owned();
    if r.mode == crate::redis_nodes::RedisMode::Cluster {
        s += &format!(
            " ({} masters, {} replicas; figures summed over the masters)",
            r.masters.len(),
            r.replicas.len()
        );
    }
    if r.wait_replicas > 0 {
        s += &format!(", REDIS_WAIT_REPLICAS={}", r.wait_replicas);
    }
    s
}

/// Print the table and write `{results, table}` as JSON to `out`.
pub fn print_and_write(r: &Results, out: &Path) -> anyhow::Result<()> {
    let rows = rows(r);
    println!();
    println!(
        "broker: {}{}; Redis: {}; machine: {} CPUs ({}), {} MiB; load average {} at start, {} at end",
        r.machine.broker,
        match r.machine.broker_data.as_str() {
            "" => String::new(),
            "memory" => " (log directory in memory)".to_owned(),
            on => format!(" (log directory on {on})"),
        },
        redis_setup(&r.redis),
        r.machine.cpus,
        r.machine.cpu_model,
        r.machine.mem_total_mib,
        r.machine.loadavg_start,
        r.machine.loadavg_end
    );
    println!(
        "{:<66} {:>10} {:<5} {:>9} {:>8}  {:<12} met",
        "figure", "value", "unit", "floor", "ratio", "target"
    );
    println!("{}", "-".repeat(120));
    for row in &rows {
        println!(
            "{:<66} {:>10} {:<5} {:>9} {:>8}  {:<12} {}",
            row.figure,
            fmt(row.value),
            row.unit,
            fmt(row.floor),
            row.ratio
                .map(|x| format!("{x:.2}x"))
                .unwrap_or_else(|| "-".into()),
            row.target.clone().unwrap_or_default(),
            match row.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            }
        );
    }
    print_sizes(&r.batch_sizes);
    if r.failed_sends > 0 || r.throughput.failed_terminals > 0 {
        println!(
            "warning: {} sends failed, {} terminal events were not completed_successfully",
            r.failed_sends, r.throughput.failed_terminals
        );
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let json = serde_json::json!({ "results": r, "table": rows });
    std::fs::write(out, serde_json::to_string_pretty(&json)?)?;
    println!("\nresults written to {}", out.display());
    Ok(())
}

/// The batch-size table: each size's figures, and the per-transition ones as a multiple of the
/// smallest size's.
fn print_sizes(rows: &[crate::system::SizeRow]) {
    let Some(first) = rows.first() else {
        return;
    };
    println!();
    println!(
        "batch sizes (one batch at a time, 3 pipelines each; x = multiple of the {}-essay row; \
         relay = the floor relay's CPU per message of half the transition's message bytes)",
        first.essays
    );
    println!(
        "{:>6} {:>12} {:>10} {:>16} {:>10} {:>12} {:>10} {:>15} {:>10} {:>13} {:>12} {:>11}",
        "essays",
        "req→term p50",
        "trans p50",
        "BOS CPU/trans",
        "BCS",
        "msg KiB/tr",
        "relay CPU",
        "BOS÷relay",
        "BCS÷relay",
        "Redis in/tr",
        "Redis/batch",
        "largest msg"
    );
    println!("{}", "-".repeat(150));
    let x = |v: f64, base: f64| format!("{:.2}x", v / base);
    for r in rows {
        println!(
            "{:>6} {:>9} ms {:>7} ms {:>8} µs {:>5} {:>7} µs {:>12} {:>7} µs {:>7.1} {:>6} {:>10.1} {:>9} KiB {:>8} KiB {:>11}{}",
            r.essays,
            fmt(Some(r.request_to_terminal_ms.p50)),
            fmt(Some(r.transition_ms.p50)),
            fmt(Some(r.orchestrator_cpu_us)),
            x(r.orchestrator_cpu_us, first.orchestrator_cpu_us),
            fmt(Some(r.conductor_cpu_us)),
            fmt(Some(r.message_bytes_per_transition / 1024.0)),
            fmt(Some(r.relay_cpu_us)),
            r.orchestrator_vs_relay,
            x(r.orchestrator_vs_relay, first.orchestrator_vs_relay),
            r.conductor_vs_relay,
            fmt(Some(r.redis_bytes_in_per_transition / 1024.0)),
            fmt(Some(r.redis_bytes_per_batch / 1024.0)),
            r.largest_message_bytes,
            if r.failed_pipelines > 0 {
                format!("  ({} pipelines not completed_successfully)", r.failed_pipelines)
            } else {
                String::new()
            }
        );
    }
}
