//! The binary's command line: `--help` lists every variable; a bad setting exits 2 naming it.

use std::process::Command;

use batch_conductor::BcsSettings;
use huleedu_service::settings::ServiceSettings;

const BIN: &str = env!("CARGO_BIN_EXE_batch-conductor");

#[test]
fn help_lists_every_setting() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for doc in BcsSettings::variables() {
        assert!(
            text.contains(&doc.name),
            "{} missing from --help:\n{text}",
            doc.name
        );
    }
}

#[test]
fn a_bad_setting_exits_2_naming_the_variable() {
    let out = Command::new(BIN)
        .env("RESOLVE_WAIT_MS", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("RESOLVE_WAIT_MS"), "{err}");
}

#[test]
fn a_bad_pipelines_file_exits_2_naming_file_and_entry() {
    let path = std::env::temp_dir().join(format!("bcs-cli-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(
        &path,
        r#"{"phases":[{"name":"nlp","depends_on":["spellcheck"]}],"pipelines":[{"name":"nlp","phases":["nlp"]}]}"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .env("PIPELINES_FILE", &path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("PIPELINES_FILE"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(
        err.contains("phase `nlp`") && err.contains("spellcheck"),
        "{err}"
    );
}

#[test]
fn the_readme_documents_every_setting() {
    let readme = std::fs::read_to_string(
        huleedu_contracts::checkout_root().join("services/batch-conductor/README.md"),
    )
    .unwrap();
    for doc in BcsSettings::variables() {
        assert!(
            readme.contains(&format!("| `{}` |", doc.name)),
            "{} missing from the README's configuration table",
            doc.name
        );
    }
}
