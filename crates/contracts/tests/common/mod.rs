//! Helpers shared by the integration tests: locating `shared/contracts/huleedu`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// `shared/contracts/huleedu`, checked out as a sibling of the repository root.
pub fn contracts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/contracts/huleedu");
    assert!(
        dir.join("INDEX.md").is_file()
            && dir.join("examples").is_dir()
            && dir.join("schemas").is_dir(),
        "platform contracts not found at {}: the `shared/` directory must be checked out as a \
         sibling of the repository root (expected shared/contracts/huleedu with INDEX.md, \
         examples/ and schemas/)",
        dir.display()
    );
    dir
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
