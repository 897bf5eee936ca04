//! The documentation agrees with the code.
//!
//! - `docs/configuration.md` holds, between generated markers, the settings table of every
//!   binary made from its clap arguments (`ServiceSettings::variables()`); regenerate with
//!   `HULEEDU_BLESS=1 cargo test -p huleedu-it --test integration -- docs::`.
//! - `docs/events.md` names every topic of the contracts crate and no other `huleedu.*` topic.

use std::collections::BTreeSet;
use std::path::PathBuf;

use huleedu_contracts::topics;
use huleedu_service::settings::{ServiceSettings, Variable};

fn root() -> PathBuf {
    huleedu_contracts::checkout_root()
}

fn table(docs: &[Variable]) -> String {
    let mut out = String::from("| variable | default | meaning |\n|---|---|---|\n");
    for d in docs {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            d.name,
            d.default.replace('|', "\\|"),
            d.meaning.replace('|', "\\|")
        ));
    }
    out
}

fn generated() -> String {
    let mut out = String::new();
    for (bin, docs) in [
        (
            "batch-orchestrator",
            batch_orchestrator::BosSettings::variables(),
        ),
        ("batch-conductor", batch_conductor::BcsSettings::variables()),
        ("els-simulator", els_simulator::SimSettings::variables()),
        (
            "pipeline-console",
            pipeline_console::ConsoleSettings::variables(),
        ),
    ] {
        out.push_str(&format!("### `{bin}`\n\n{}\n", table(&docs)));
    }
    out
}

const BEGIN: &str = "<!-- BEGIN GENERATED: settings tables (tests/tests/integration/docs.rs) -->\n";
const END: &str = "<!-- END GENERATED -->";

#[test]
fn configuration_doc_lists_every_variable_of_every_binary() {
    let path = root().join("docs/configuration.md");
    let text = std::fs::read_to_string(&path).expect("docs/configuration.md");
    let (head, rest) = text.split_once(BEGIN).expect("begin marker");
    let (_, tail) = rest.split_once(END).expect("end marker");
    let want = format!("{head}{BEGIN}{}{END}{tail}", generated());
    if std::env::var_os("HULEEDU_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    assert!(
        text == want,
        "docs/configuration.md is out of date with the settings in the code; regenerate with HULEEDU_BLESS=1 cargo test -p huleedu-it --test integration -- docs::"
    );
}

#[test]
fn event_catalogue_names_exactly_the_contract_topics() {
    let text = std::fs::read_to_string(root().join("docs/events.md")).expect("docs/events.md");
    let known: BTreeSet<&str> = topics::ALL.into_iter().collect();
    for t in &known {
        assert!(
            text.contains(&format!("`{t}`")),
            "docs/events.md does not describe {t}"
        );
    }
    for word in text.split(|c: char| c == '`' || c.is_whitespace() || c == '|') {
        if word.starts_with("huleedu.") && !word.ends_with(".DLQ") {
            assert!(
                known.contains(word),
                "docs/events.md names {word}, which is not a topic of the contracts crate"
            );
        }
    }
}
