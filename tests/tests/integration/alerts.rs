//! The shipped alert rules (`deploy/prometheus/alerts.yml`): valid for Prometheus, each one
//! unit-tested (`deploy/prometheus/alerts_test.yml`, run with `promtool test rules`) and each
//! with a runbook entry in `docs/operations.md`. Needs promtool (Debian's prometheus package;
//! scripts/test.sh installs it).

use std::path::PathBuf;
use std::process::Command;

fn dir() -> PathBuf {
    huleedu_contracts::checkout_root().join("deploy/prometheus")
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir())
        .output()
        .expect("promtool (Debian's prometheus package; scripts/test.sh installs it)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn alert_names() -> Vec<String> {
    let text = std::fs::read_to_string(dir().join("alerts.yml")).unwrap();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_owned())
        .collect()
}

#[test]
fn the_rules_are_valid_for_prometheus() {
    let (ok, out) = promtool(&["check", "rules", "alerts.yml"]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("{} rules found", alert_names().len())),
        "{out}"
    );
}

#[test]
fn every_rule_passes_its_unit_tests() {
    let (ok, out) = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(ok, "{out}");
}

#[test]
fn every_rule_is_tested_and_has_a_runbook_entry() {
    let tests = std::fs::read_to_string(dir().join("alerts_test.yml")).unwrap();
    let ops =
        std::fs::read_to_string(huleedu_contracts::checkout_root().join("docs/operations.md"))
            .unwrap();
    let names = alert_names();
    assert!(names.len() >= 6, "{names:?}");
    for name in names {
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "{name} has no promtool test in alerts_test.yml"
        );
        assert!(
            ops.contains(&format!("### {name}\n")),
            "{name} has no runbook entry (### {name}) in docs/operations.md"
        );
        let rules = std::fs::read_to_string(dir().join("alerts.yml")).unwrap();
        assert!(
            rules.contains(&format!("docs/operations.md#{}", name.to_lowercase())),
            "{name}'s annotations link its runbook entry"
        );
    }
}

#[test]
fn the_compose_monitoring_profile_loads_the_same_rules_and_scrapes_both_services() {
    let (ok, out) = promtool(&["check", "config", "prometheus.yml"]);
    assert!(ok, "{out}");
    let config = std::fs::read_to_string(dir().join("prometheus.yml")).unwrap();
    for target in ["batch-orchestrator:5000", "batch-conductor:4002"] {
        assert!(config.contains(target), "prometheus.yml scrapes {target}");
    }
    let compose =
        std::fs::read_to_string(huleedu_contracts::checkout_root().join("docker-compose.yml"))
            .unwrap();
    for mount in [
        "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro",
        "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro",
        "profiles: [\"monitoring\"]",
    ] {
        assert!(compose.contains(mount), "docker-compose.yml has {mount}");
    }
}
