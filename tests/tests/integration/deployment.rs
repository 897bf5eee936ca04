//! The deployment files agree with the code: every service uses only environment variables
//! its binary knows, ports match `HTTP_ADDR`, health checks hit routes that exist, and the
//! Dockerfile builds binaries that exist. These checks need no Docker engine; the image build
//! and the running stack are proved by `scripts/deploy-check.sh` (docs/deployment.md).

use std::collections::BTreeSet;
use std::path::PathBuf;

use huleedu_service::settings::ServiceSettings;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    huleedu_contracts::checkout_root()
}

fn compose() -> Yaml {
    let text =
        std::fs::read_to_string(root().join("docker-compose.yml")).expect("docker-compose.yml");
    YamlLoader::load_from_str(&text)
        .expect("valid YAML")
        .remove(0)
}

/// A service's mapping with `<<` merge keys applied.
fn merged(node: &Yaml) -> yaml_rust2::yaml::Hash {
    let mut out = yaml_rust2::yaml::Hash::new();
    if let Some(h) = node.as_hash() {
        if let Some(base) = h.get(&Yaml::String("<<".into())) {
            out.extend(merged(base));
        }
        for (k, v) in h {
            if k.as_str() != Some("<<") {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

fn get<'a>(h: &'a yaml_rust2::yaml::Hash, key: &str) -> Option<&'a Yaml> {
    h.get(&Yaml::String(key.into()))
}

/// The strings of the list under `key` (a missing key or a non-list fails the test).
fn strings<'a>(h: &'a yaml_rust2::yaml::Hash, key: &str) -> Vec<&'a str> {
    get(h, key)
        .and_then(Yaml::as_vec)
        .unwrap_or_else(|| panic!("{key} is not a list"))
        .iter()
        .filter_map(Yaml::as_str)
        .collect()
}

fn known_vars(binary: &str) -> BTreeSet<String> {
    let docs = match binary {
        "batch-orchestrator" => batch_orchestrator::BosSettings::variables(),
        "batch-conductor" => batch_conductor::BcsSettings::variables(),
        "els-simulator" => els_simulator::SimSettings::variables(),
        "pipeline-console" => pipeline_console::ConsoleSettings::variables(),
        other => panic!("unknown binary {other}"),
    };
    let mut names: BTreeSet<String> = docs.into_iter().map(|d| d.name).collect();
    names.insert("RUST_LOG".to_owned());
    names
}

fn service_paths(binary: &str) -> BTreeSet<String> {
    let doc = match binary {
        "batch-orchestrator" => batch_orchestrator::http::openapi_document(),
        "batch-conductor" => batch_conductor::api::openapi_document(),
        "els-simulator" | "pipeline-console" => {
            // The simulator (a dev tool) and the console (HTML pages) have no OpenAPI document;
            // read their route tables.
            let file = match binary {
                "els-simulator" => "services/els-simulator/src/api.rs",
                _ => "services/pipeline-console/src/app.rs",
            };
            let src = std::fs::read_to_string(root().join(file)).unwrap();
            return ["/readyz", "/healthz", "/metrics"]
                .iter()
                .filter(|p| src.contains(&format!("\"{p}\"")))
                .map(|p| p.to_string())
                .collect();
        }
        other => panic!("unknown binary {other}"),
    };
    doc.paths.paths.keys().cloned().collect()
}

const APP_SERVICES: [&str; 4] = [
    "batch-orchestrator",
    "batch-conductor",
    "els-simulator",
    "pipeline-console",
];

#[test]
fn the_console_reaches_both_services_where_they_listen_and_publishes_on_loopback_only() {
    let c = compose();
    let services = c["services"].as_hash().unwrap();
    let console = merged(&services[&Yaml::String("pipeline-console".into())]);
    let env = get(&console, "environment")
        .and_then(Yaml::as_hash)
        .unwrap();
    for (var, service) in [
        ("BOS_URL", "batch-orchestrator"),
        ("BCS_URL", "batch-conductor"),
    ] {
        let url = env[&Yaml::String(var.into())].as_str().unwrap();
        let svc = merged(&services[&Yaml::String(service.into())]);
        let addr = get(&svc, "environment").unwrap()["HTTP_ADDR"]
            .as_str()
            .unwrap();
        let port = addr.rsplit(':').next().unwrap();
        assert_eq!(url, format!("http://{service}:{port}"), "{var}");
    }
    let ports = strings(&console, "ports");
    assert!(
        ports.iter().all(|p| p.starts_with("127.0.0.1:")),
        "the console is published on the host's loopback only: {ports:?}"
    );
}

#[test]
fn every_app_service_uses_only_variables_its_binary_knows() {
    let c = compose();
    let services = c["services"].as_hash().expect("services");
    for name in APP_SERVICES {
        let svc = merged(&services[&Yaml::String(name.into())]);
        let command = get(&svc, "command")
            .and_then(|c| c[0].as_str())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(command, name, "{name} runs its own binary");
        let env = get(&svc, "environment")
            .and_then(Yaml::as_hash)
            .unwrap_or_else(|| panic!("{name} has an environment map"));
        let known = known_vars(name);
        for k in env.keys() {
            let k = k.as_str().unwrap();
            assert!(
                known.contains(k),
                "{name} sets {k}, which the binary does not read (known: {known:?})"
            );
        }
    }
}

#[test]
fn ports_and_health_checks_match_the_code() {
    let c = compose();
    let services = c["services"].as_hash().unwrap();
    for name in APP_SERVICES {
        let svc = merged(&services[&Yaml::String(name.into())]);
        let env = get(&svc, "environment").and_then(Yaml::as_hash).unwrap();
        let addr = env[&Yaml::String("HTTP_ADDR".into())]
            .as_str()
            .expect("HTTP_ADDR set");
        let port = addr.rsplit(':').next().unwrap();
        let ports = strings(&svc, "ports");
        assert!(
            ports.iter().any(|p| p.ends_with(&format!(":{port}"))),
            "{name} publishes its HTTP port {port}: {ports:?}"
        );
        let test: Vec<&str> = get(&svc, "healthcheck")
            .and_then(|h| h["test"].as_vec())
            .unwrap()
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        let url = test
            .iter()
            .find(|t| t.starts_with("http://"))
            .unwrap_or_else(|| panic!("{name} health check calls HTTP"));
        let (hostport, path) = url.trim_start_matches("http://").split_once('/').unwrap();
        assert!(
            hostport.ends_with(&format!(":{port}")),
            "{name} health check uses port {port}: {url}"
        );
        let paths = service_paths(name);
        assert!(
            paths.contains(&format!("/{path}")),
            "{name} has route /{path}: {paths:?}"
        );
    }
}

#[test]
fn orchestrator_reaches_the_conductor_where_it_listens() {
    let c = compose();
    let services = c["services"].as_hash().unwrap();
    let bos = merged(&services[&Yaml::String("batch-orchestrator".into())]);
    let bcs = merged(&services[&Yaml::String("batch-conductor".into())]);
    let bcs_url = get(&bos, "environment").unwrap()["BCS_URL"]
        .as_str()
        .unwrap()
        .to_owned();
    let bcs_port = get(&bcs, "environment").unwrap()["HTTP_ADDR"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(bcs_url, format!("http://batch-conductor:{bcs_port}"));
    assert!(
        services.contains_key(&Yaml::String("kafka".into()))
            && services.contains_key(&Yaml::String("redis".into()))
    );
    let redis = merged(&services[&Yaml::String("redis".into())]);
    let cmd = strings(&redis, "command");
    assert!(
        cmd.windows(2).any(|w| w == ["--appendfsync", "everysec"]),
        "Redis runs AOF everysec: {cmd:?}"
    );
    let sim = merged(&services[&Yaml::String("els-simulator".into())]);
    let profiles = strings(&sim, "profiles");
    assert_eq!(
        profiles,
        vec!["demo"],
        "the reference worker runs only in the demo profile"
    );
}

#[test]
fn the_dockerfile_builds_binaries_that_exist_and_runs_as_non_root() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let bins: BTreeSet<String> = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1].trim_end_matches('\\').to_owned())
        .collect();
    assert!(bins.len() >= 3, "{bins:?}");
    let meta = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout).expect("metadata JSON");
    let workspace_bins: BTreeSet<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    for b in &bins {
        assert!(
            workspace_bins.contains(b),
            "Dockerfile builds {b}, which is not a binary of the workspace"
        );
    }
    for name in APP_SERVICES {
        assert!(bins.contains(name), "the image contains {name}");
    }
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("USER ") && !l.contains("root")),
        "the runtime image runs as a non-root user"
    );
}
