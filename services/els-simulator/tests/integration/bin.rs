//! The `els-simulator` binary: `--help`, refusing bad settings, and a clean stop on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use els_simulator::SimSettings;
use huleedu_service::settings::ServiceSettings;

const BIN: &str = env!("CARGO_BIN_EXE_els-simulator");

#[test]
fn help_lists_every_setting() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for doc in SimSettings::variables() {
        assert!(
            text.contains(&doc.name),
            "--help lacks {}:\n{text}",
            doc.name
        );
    }
}

#[test]
fn bad_settings_exit_2_naming_the_variable() {
    for (var, value) in [
        ("SIM_FAIL_RATE", "1.5"),
        ("SIM_FAIL", "spellcheck"),
        ("SIM_SILENT_PHASES", "nlp,spelling"),
        ("HTTP_ADDR", "nowhere"),
    ] {
        let out = Command::new(BIN).env(var, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{var}={value}: {err}");
    }
    let out = Command::new(BIN).arg("--frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_readme_documents_every_setting() {
    let readme = include_str!("../../README.md");
    for doc in SimSettings::variables() {
        assert!(
            readme.contains(&format!("`{}`", doc.name)),
            "README.md lacks {}",
            doc.name
        );
    }
}

/// Starts the binary against the test broker, waits until it is ready, sends SIGTERM and
/// expects a clean exit.
#[test]
fn stops_cleanly_on_sigterm() {
    let _turn = crate::common::ONE_APP_AT_A_TIME.blocking_lock();
    let broker = huleedu_it::kafka_bootstrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .env("KAFKA_BOOTSTRAP_SERVERS", &broker)
        .env(
            "KAFKA_CONSUMER_GROUP",
            huleedu_it::unique("els-simulator-bin"),
        )
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("KAFKA_SESSION_TIMEOUT_MS", "3000")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/readyz");
    loop {
        let ready = rt.block_on(async {
            client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        });
        if ready {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the simulator exited early: {status}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the simulator did not become ready");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the simulator did not stop after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
}
