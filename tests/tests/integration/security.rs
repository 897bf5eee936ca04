//! Managed infrastructure, against real components that `scripts/test.sh` starts
//! (`infra_start --secure`, docs/infrastructure.md): Apache Kafka's SSL, mutual-TLS and
//! SASL_SSL listeners, a Redis that speaks only TLS and knows one ACL user, and the conductor
//! serving HTTPS to the orchestrator's client. Every setting goes through the services' own
//! settings types, read from environment pairs as a service reads them. Certificates are made
//! for the run (scripts/lib/certs.sh, `HULEEDU_TEST_TLS_DIR`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use huleedu_it::{kafka_bootstrap, redis_url, unique, wait_until};
use huleedu_kafka::admin::provision_topics_within;
use huleedu_kafka::{
    ConsumerRunner, Handler, HandlerResult, Inbound, KafkaError, KafkaSettings, OutgoingMessage,
    Producer,
};
use huleedu_service::settings::ServiceSettings;
use huleedu_store::{ApplyRequest, RedisProblem, RedisSettings, Store};
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(30);

/// tansu has no TLS listener: `BROKER=tansu scripts/test.sh` runs without the secured
/// components, and says so here instead of failing. The default run (Apache Kafka) always has
/// them, and a missing variable fails the test.
/// The conductor's resolution of an `nlp` pipeline for a fresh batch.
async fn resolve_nlp(
    conductor: &batch_orchestrator::conductor::Conductor,
) -> Result<batch_orchestrator::decide::Resolution, batch_orchestrator::conductor::ConductorError> {
    conductor
        .resolve(
            &unique("https-batch"),
            "nlp",
            uuid::Uuid::new_v4(),
            None,
            None,
        )
        .await
}

fn without_secure_infra() -> bool {
    let tansu = huleedu_it::stack::BrokerKind::from_env() == huleedu_it::stack::BrokerKind::Tansu;
    if tansu {
        eprintln!("SKIPPED: the security tests need Apache Kafka's TLS listeners (HULEEDU_TEST_BROKER=tansu)");
    }
    tansu
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite with scripts/test.sh, which starts Apache Kafka with TLS and SASL listeners and a TLS Redis")
    })
}

fn tls(file: &str) -> String {
    PathBuf::from(var("HULEEDU_TEST_TLS_DIR"))
        .join(file)
        .display()
        .to_string()
}

/// `user:password` from a variable.
fn user(name: &str) -> (String, String) {
    let v = var(name);
    let (u, p) = v.split_once(':').expect("user:password");
    (u.to_owned(), p.to_owned())
}

/// Kafka settings read from `pairs` the way a service reads its environment.
fn kafka(
    pairs: &[(&str, String)],
) -> Result<KafkaSettings, huleedu_service::settings::ConfigError> {
    let mut all: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    all.push(("KAFKA_CONSUMER_GROUP".into(), unique("sec-grp")));
    all.push(("KAFKA_SESSION_TIMEOUT_MS".into(), "6000".into()));
    KafkaSettings::from_pairs(all, "it-security", "unused")
}

fn a_file(name: &str, content: &str) -> String {
    let dir = std::env::temp_dir().join(unique("huleedu-sec"));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.display().to_string()
}

/// Collects the payloads it is given.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<String>>>);

impl Handler for Collect {
    async fn handle(&self, msg: &Inbound) -> HandlerResult {
        self.0
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&msg.payload).into_owned());
        HandlerResult::Done
    }
}

/// Through `settings`: create a topic, publish three messages, and consume them with the
/// services' consumer runner in a consumer group.
async fn round_trip(settings: &KafkaSettings) {
    let topic = unique("it.security");
    provision_topics_within(settings, &[topic.as_str()], T)
        .await
        .unwrap_or_else(|e| panic!("provisioning over {}: {e}", settings.security.describe()));
    let producer = Producer::new(settings).unwrap();
    producer.ping(Duration::from_secs(10)).await.unwrap();
    let sent: Vec<String> = (0..3).map(|i| format!("message-{i}")).collect();
    for m in &sent {
        producer
            .send(&OutgoingMessage::new(&topic, "k", m.as_bytes()))
            .await
            .unwrap();
    }
    let seen = Collect::default();
    let runner =
        ConsumerRunner::new(settings, &[topic.as_str()], seen.clone(), producer.clone()).unwrap();
    let status = runner.status();
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner.run(stop.clone()));
    wait_until(
        T,
        "the consumer group to deliver the three messages",
        || {
            let got = seen.0.lock().unwrap().clone();
            let sent = sent.clone();
            async move { got == sent }
        },
    )
    .await;
    assert!(status.is_joined(), "the consumer joined its group");
    stop.cancel();
    tokio::time::timeout(T, task).await.unwrap().unwrap();
    tokio::task::spawn_blocking(move || drop(producer));
}

/// Provisioning through `settings` must fail at once with a refusal that names what to check.
async fn refused(settings: &KafkaSettings) -> String {
    let start = std::time::Instant::now();
    let err = provision_topics_within(settings, &[unique("it.refused").as_str()], T)
        .await
        .expect_err("the broker refuses the client");
    assert!(
        matches!(err, KafkaError::Refused { .. }),
        "a refusal, not a wait for the broker: {err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "refused in {:?}, without waiting the whole budget",
        start.elapsed()
    );
    err.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_verifies_the_broker_with_a_private_ca() {
    if without_secure_infra() {
        return;
    }
    let s = kafka(&[
        ("KAFKA_BOOTSTRAP_SERVERS", var("HULEEDU_TEST_KAFKA_SSL")),
        ("KAFKA_SECURITY_PROTOCOL", "ssl".into()),
        ("KAFKA_SSL_CA_LOCATION", tls("ca.pem")),
    ])
    .unwrap();
    round_trip(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_client_certificate() {
    if without_secure_infra() {
        return;
    }
    let with_cert = kafka(&[
        ("KAFKA_BOOTSTRAP_SERVERS", var("HULEEDU_TEST_KAFKA_MTLS")),
        ("KAFKA_SECURITY_PROTOCOL", "ssl".into()),
        ("KAFKA_SSL_CA_LOCATION", tls("ca.pem")),
        ("KAFKA_SSL_CERTIFICATE_LOCATION", tls("client.pem")),
        ("KAFKA_SSL_KEY_LOCATION", tls("client.key")),
    ])
    .unwrap();
    round_trip(&with_cert).await;

    // The listener requires a client certificate: without one the handshake is refused.
    let without = kafka(&[
        ("KAFKA_BOOTSTRAP_SERVERS", var("HULEEDU_TEST_KAFKA_MTLS")),
        ("KAFKA_SECURITY_PROTOCOL", "ssl".into()),
        ("KAFKA_SSL_CA_LOCATION", tls("ca.pem")),
    ])
    .unwrap();
    let msg = refused(&without).await;
    assert!(msg.contains("SSL"), "{msg}");
}

async fn sasl_ssl(mechanism: &str, user_var: &str) {
    let (u, p) = user(user_var);
    let s = kafka(&[
        (
            "KAFKA_BOOTSTRAP_SERVERS",
            var("HULEEDU_TEST_KAFKA_SASL_SSL"),
        ),
        ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl".into()),
        ("KAFKA_SASL_MECHANISM", mechanism.into()),
        ("KAFKA_SASL_USERNAME", u),
        ("KAFKA_SASL_PASSWORD", p),
        ("KAFKA_SSL_CA_LOCATION", tls("ca.pem")),
    ])
    .unwrap();
    round_trip(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_with_scram_sha_512() {
    if without_secure_infra() {
        return;
    }
    sasl_ssl("SCRAM-SHA-512", "HULEEDU_TEST_KAFKA_SCRAM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_with_scram_sha_256() {
    if without_secure_infra() {
        return;
    }
    sasl_ssl("SCRAM-SHA-256", "HULEEDU_TEST_KAFKA_SCRAM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_with_plain() {
    if without_secure_infra() {
        return;
    }
    sasl_ssl("PLAIN", "HULEEDU_TEST_KAFKA_PLAIN").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_from_a_java_properties_file_and_a_password_file() {
    if without_secure_infra() {
        return;
    }
    let (u, p) = user("HULEEDU_TEST_KAFKA_SCRAM");
    let props = a_file(
        "client.properties",
        &format!(
            "# as the platform's Java clients keep it\n\
             bootstrap.servers={}\n\
             security.protocol=SASL_SSL\n\
             sasl.mechanism=SCRAM-SHA-512\n\
             sasl.username={u}\n\
             ssl.ca.location={}\n\
             socket.keepalive.enable=true\n",
            var("HULEEDU_TEST_KAFKA_SASL_SSL"),
            tls("ca.pem")
        ),
    );
    let password = a_file("kafka-password", &format!("{p}\n"));
    let s = kafka(&[
        ("KAFKA_PROPERTIES_FILE", props),
        ("KAFKA_SASL_PASSWORD_FILE", password),
    ])
    .unwrap();
    assert_eq!(s.bootstrap_servers, var("HULEEDU_TEST_KAFKA_SASL_SSL"));
    round_trip(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_clearly_and_never_shown() {
    if without_secure_infra() {
        return;
    }
    let (u, _) = user("HULEEDU_TEST_KAFKA_SCRAM");
    let wrong = "not-the-password-1234";
    let s = kafka(&[
        (
            "KAFKA_BOOTSTRAP_SERVERS",
            var("HULEEDU_TEST_KAFKA_SASL_SSL"),
        ),
        ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl".into()),
        ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".into()),
        ("KAFKA_SASL_USERNAME", u),
        ("KAFKA_SASL_PASSWORD", wrong.into()),
        ("KAFKA_SSL_CA_LOCATION", tls("ca.pem")),
    ])
    .unwrap();
    let msg = refused(&s).await;
    assert!(msg.contains("uthentication"), "{msg}");
    assert!(
        msg.contains("KAFKA_SASL_PASSWORD"),
        "names what to check: {msg}"
    );
    assert!(!msg.contains(wrong), "{msg}");

    // Readiness says the same.
    let producer = Producer::new(&s).unwrap();
    let ping = producer.ping(Duration::from_secs(3)).await.unwrap_err();
    assert!(ping.contains("refused"), "{ping}");
    assert!(!ping.contains(wrong), "{ping}");
    tokio::task::spawn_blocking(move || drop(producer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_broker_certificate_is_refused_clearly() {
    if without_secure_infra() {
        return;
    }
    let s = kafka(&[
        ("KAFKA_BOOTSTRAP_SERVERS", var("HULEEDU_TEST_KAFKA_SSL")),
        ("KAFKA_SECURITY_PROTOCOL", "ssl".into()),
        ("KAFKA_SSL_CA_LOCATION", tls("other-ca.pem")),
    ])
    .unwrap();
    let msg = refused(&s).await;
    assert!(msg.contains("certificate"), "{msg}");
    assert!(msg.contains("KAFKA_SSL_CA_LOCATION"), "{msg}");
}

// ---- Redis over TLS with an ACL user ----

fn redis(pairs: &[(&str, String)]) -> RedisSettings {
    let mut pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    pairs.insert(0, ("REDIS_KEY_PREFIX".into(), unique("sec")));
    RedisSettings::from_pairs(pairs, "unused").unwrap()
}

async fn store_round_trip(settings: &RedisSettings) {
    let store = Store::connect(settings).unwrap();
    store.check(Duration::from_secs(5)).await.unwrap();
    let batch = unique("tls-batch");
    let req = ApplyRequest {
        batch_id: batch.clone(),
        expected_version: 0,
        dedup_id: Some(unique("event")),
        dedup_ttl: Duration::from_secs(60),
        set_fields: vec![("status".into(), "over-tls".into())],
        state_ttl: Some(Duration::from_secs(60)),
        index_ops: vec![],
        outbox: vec![],
    };
    store.apply(&req).await.unwrap();
    let loaded = store.load(&batch).await.unwrap();
    assert_eq!(loaded.version, 1);
    assert_eq!(&*loaded.fields["status"], "over-tls");
}

#[tokio::test]
async fn the_store_works_over_tls_with_an_acl_user() {
    if without_secure_infra() {
        return;
    }
    let url = var("HULEEDU_TEST_REDIS_TLS");
    assert!(url.starts_with("rediss://"), "{url}");
    store_round_trip(&redis(&[
        ("REDIS_URL", url),
        ("REDIS_TLS_CA_FILE", tls("ca.pem")),
    ]))
    .await;
}

#[tokio::test]
async fn the_redis_password_comes_from_a_file() {
    if without_secure_infra() {
        return;
    }
    let url = var("HULEEDU_TEST_REDIS_TLS");
    let (before, host) = url.rsplit_once('@').unwrap();
    let (user_part, password) = before.rsplit_once(':').unwrap();
    let file = a_file("redis-password", &format!("{password}\n"));
    store_round_trip(&redis(&[
        ("REDIS_URL", format!("{user_part}@{host}")),
        ("REDIS_PASSWORD_FILE", file),
        ("REDIS_TLS_CA_FILE", tls("ca.pem")),
    ]))
    .await;
}

#[tokio::test]
async fn a_wrong_redis_password_or_ca_is_a_clear_refusal() {
    if without_secure_infra() {
        return;
    }
    let url = var("HULEEDU_TEST_REDIS_TLS");
    let (before, host) = url.rsplit_once('@').unwrap();
    let (user_part, _) = before.rsplit_once(':').unwrap();
    let wrong = "wrong-redis-password-987";

    let s = redis(&[
        ("REDIS_URL", format!("{user_part}:{wrong}@{host}")),
        ("REDIS_TLS_CA_FILE", tls("ca.pem")),
    ]);
    let store = Store::connect(&s).unwrap();
    match store.check(Duration::from_secs(5)).await {
        Err(RedisProblem::Refused(msg)) => {
            assert!(msg.contains("authentication failed"), "{msg}");
            assert!(msg.contains("REDIS_URL"), "{msg}");
            assert!(!msg.contains(wrong), "{msg}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let ready = store.ready().await.unwrap_err();
    assert!(
        ready.contains("authentication failed") && !ready.contains(wrong),
        "{ready}"
    );

    let s = redis(&[
        ("REDIS_URL", url.clone()),
        ("REDIS_TLS_CA_FILE", tls("other-ca.pem")),
    ]);
    let store = Store::connect(&s).unwrap();
    match store.check(Duration::from_secs(5)).await {
        Err(RedisProblem::Refused(msg)) => {
            assert!(msg.contains("REDIS_TLS_CA_FILE"), "{msg}");
            let password = before.rsplit_once(':').unwrap().1;
            assert!(!msg.contains(password), "{msg}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

// ---- BOS → BCS over HTTPS ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orchestrator_reaches_the_conductor_over_https_with_a_private_ca() {
    if without_secure_infra() {
        return;
    }
    let settings = batch_conductor::BcsSettings::from_pairs([
        ("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap()),
        ("KAFKA_CONSUMER_GROUP", unique("bcs-https")),
        ("REDIS_URL", redis_url()),
        ("REDIS_KEY_PREFIX", unique("bcs-https")),
        ("HTTP_ADDR", "127.0.0.1:0".into()),
        ("HTTP_TLS_CERT_FILE", tls("server.pem")),
        ("HTTP_TLS_KEY_FILE", tls("server.key")),
    ])
    .unwrap();
    let app = batch_conductor::App::build(settings).await.unwrap();
    let addr = app.http_addr();
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run(stop.clone()));

    // The orchestrator's settings and client, as BOS builds them.
    let bos = batch_orchestrator::settings::BosSettings::from_pairs([
        ("BCS_URL", format!("https://127.0.0.1:{}", addr.port())),
        ("BCS_CA_FILE", tls("ca.pem")),
    ])
    .unwrap();
    let conductor = batch_orchestrator::conductor::Conductor::with_roots(
        &bos.bcs_url,
        Duration::from_secs(10),
        &bos.bcs_ca,
    );
    let resolution = resolve_nlp(&conductor).await.expect("resolved over HTTPS");
    assert!(
        format!("{resolution:?}").contains("Spellcheck"),
        "nlp needs spellcheck: {resolution:?}"
    );

    // Without the private CA the conductor's certificate is not trusted, and the error says so.
    let untrusting =
        batch_orchestrator::conductor::Conductor::new(&bos.bcs_url, Duration::from_secs(10));
    let err = resolve_nlp(&untrusting)
        .await
        .expect_err("an untrusted certificate is refused");
    assert!(err.to_string().contains("certificate"), "{err}");

    // Plain HTTP to the HTTPS port gets nowhere either.
    let plain = batch_orchestrator::conductor::Conductor::new(
        &format!("http://127.0.0.1:{}", addr.port()),
        Duration::from_secs(5),
    );
    assert!(plain
        .resolve(
            &unique("https-batch"),
            "nlp",
            uuid::Uuid::new_v4(),
            None,
            None
        )
        .await
        .is_err());

    stop.cancel();
    tokio::time::timeout(T, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
