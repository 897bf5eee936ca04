//! Helpers shared by the integration tests: the platform contract fixtures (`tests/platform`).

#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

/// The platform's contract fixtures (examples and schemas), kept in the repository under
/// `crates/contracts/tests/platform`.
pub fn contracts_dir() -> PathBuf {
    huleedu_contracts::platform_fixtures_dir()
}

/// Every example file, sorted by name.
pub fn example_files() -> Vec<PathBuf> {
    let dir = contracts_dir().join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// The raw bytes of `examples/<name>`.
pub fn example_bytes(name: &str) -> Vec<u8> {
    let path = contracts_dir().join("examples").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `examples/<name>` parsed as JSON.
pub fn example_value(name: &str) -> Value {
    serde_json::from_slice(&example_bytes(name))
        .unwrap_or_else(|e| panic!("example {name} is not JSON: {e}"))
}

/// `schemas/<model>.schema.json` parsed as JSON.
pub fn schema(model: &str) -> Value {
    let path = contracts_dir()
        .join("schemas")
        .join(format!("{model}.schema.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}
