//! A consumer-runner process for the "killed mid-handler" test.
//!
//! Env: `PROBE_BOOTSTRAP`, `PROBE_TOPIC`, `PROBE_GROUP`. For each message it prints
//! `HANDLING <payload>`; a payload of `hang` never finishes (the test kills the process there),
//! any other payload prints `DONE <payload>` and completes.

use std::time::Duration;

use huleedu_kafka::{ConsumerRunner, Handler, HandlerResult, Inbound, KafkaSettings, Producer};
use tokio_util::sync::CancellationToken;

struct Probe;

impl Handler for Probe {
    async fn handle(&self, msg: &Inbound) -> HandlerResult {
        let payload = String::from_utf8_lossy(&msg.payload).into_owned();
        println!("HANDLING {payload}");
        if payload == "hang" {
            std::future::pending::<()>().await;
        }
        println!("DONE {payload}");
        HandlerResult::Done
    }
}

#[tokio::main]
async fn main() {
    let var = |n: &str| std::env::var(n).unwrap_or_else(|_| panic!("{n} must be set"));
    let mut settings =
        KafkaSettings::local(&var("PROBE_BOOTSTRAP"), "it-probe", &var("PROBE_GROUP"));
    settings.session_timeout = Duration::from_secs(3);
    let topic = var("PROBE_TOPIC");
    let producer = Producer::new(&settings).expect("producer");
    let runner =
        ConsumerRunner::new(&settings, &[topic.as_str()], Probe, producer).expect("runner");
    runner.run(CancellationToken::new()).await;
}
