//! A whole local system for end-to-end tests: its own broker and Redis on free ports, then the
//! conductor, the orchestrator and the reference worker as separate processes.
//!
//! The broker is Apache Kafka (KRaft, one node in combined mode, started by
//! `scripts/lib/kafka-broker.sh` from the jars `scripts/test.sh` installs) or tansu, chosen by
//! `HULEEDU_TEST_BROKER=kafka|tansu` (default `kafka`; see [`BrokerKind`]).
//!
//! Everything runs as child processes that are killed when the [`Stack`] is dropped. Each
//! stack has its own broker, so stacks never see each other's events.
//!
//! A stack can run several replicas of the orchestrator and of the conductor
//! ([`StackOptions::bos_replicas`], [`StackOptions::bcs_replicas`]): each replica is a separate
//! process with its own HTTP port, in the service's one consumer group. Replica 1 of a service is
//! named like the binary (`batch-orchestrator`), replica *n* `batch-orchestrator#n`. With more
//! than one conductor, the orchestrators reach them through a small TCP balancer in the test
//! process ([`Stack::bcs_url`]), as they would through a Kubernetes service.
//!
//! Fault injection: [`Stack::kill`] (SIGKILL), [`Stack::terminate`] (SIGTERM, timed),
//! [`Stack::spawn_service`] (restart a replica), [`Stack::restart_broker`] and
//! [`Stack::restart_redis`] (SIGKILL and start again on the same port and data directory; Apache
//! Kafka always keeps its topics, messages and group offsets on disk; with
//! [`StackOptions::durable`] tansu keeps them in SQLite and Redis its data in an append-only
//! file fsynced on every write).

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// A TCP port on 127.0.0.1 that nothing listens on, never handed out before by this process.
///
/// Picked at random **below the kernel's ephemeral range** (`ip_local_port_range`, from 32768 on
/// Linux) and checked with a bind. Not `bind(127.0.0.1:0)`: the kernel hands out ports of the
/// ephemeral range, where (1) a port released by the check can come back from the next call —
/// two servers of one stack were given the same port (a broker and a Redis node), and (2) while
/// a server the chaos tests killed is down, any outgoing connection can take its port as its
/// local port, and the restart on that port fails for as long as that connection lives.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let below = ephemeral_start();
    let low = below.saturating_sub(20_000).max(10_000);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..10_000 {
        let port = if low < below {
            low + (uuid::Uuid::new_v4().as_u128() % u128::from(below - low)) as u16
        } else {
            // An unusual ephemeral range (starting below 10000): let the kernel pick.
            TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port")
        };
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port found on 127.0.0.1 in {low}..{below}");
}

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// Where cargo put this workspace's binaries (next to the running test executable).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// The newest source file (`.rs`, `.lua`) under `dir`, with its modification time.
fn newest_source(dir: &Path) -> Option<(std::time::SystemTime, PathBuf)> {
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let found = if path.is_dir() {
            newest_source(&path)
        } else if path.extension().is_some_and(|e| e == "rs" || e == "lua") {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .map(|t| (t, path))
        } else {
            None
        };
        newest = newest.max(found);
    }
    newest
}

/// A workspace binary, built and not older than the code it is built from (its crate's `src`
/// and the `src` of the workspace crates it depends on — `huleedu-*` in its manifest: a change
/// there makes cargo rebuild and relink it): a test must not run yesterday's binary.
pub fn binary(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    let built = std::fs::metadata(&p).and_then(|m| m.modified());
    let Ok(built) = built else {
        panic!(
            "{} not found: build the binaries first (cargo build --workspace --bins; scripts/test.sh does)",
            p.display()
        );
    };
    let root = huleedu_contracts::checkout_root();
    let crate_dir = match name {
        "hulectl" => root.join("tools").join(name),
        _ => root.join("services").join(name),
    };
    let mut sources = vec![newest_source(&crate_dir.join("src"))];
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap_or_default();
    for line in manifest.lines() {
        if line.trim_start().starts_with("hulectl ") {
            sources.push(newest_source(&root.join("tools/hulectl/src")));
        }
        if let Some(dep) = line.trim_start().strip_prefix("huleedu-") {
            let dep: String = dep
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            sources.push(newest_source(&root.join("crates").join(dep).join("src")));
        }
    }
    if let Some((newest, file)) = sources.into_iter().flatten().max() {
        assert!(
            built >= newest,
            "{} is older than {}: rebuild it first (cargo build --workspace --bins; scripts/test.sh does)",
            p.display(),
            file.display()
        );
    }
    p
}

/// The orchestrator's binary (and the name of its first replica).
pub const BOS: &str = "batch-orchestrator";
/// The conductor's binary (and the name of its first replica).
pub const BCS: &str = "batch-conductor";
/// The orchestrators' consumer group in a stack.
pub const BOS_GROUP: &str = "batch-orchestrator-consumers";
/// The conductors' consumer group in a stack.
pub const BCS_GROUP: &str = "bcs-event-consumer";
/// The reference worker's binary.
pub const SIM: &str = "els-simulator";
/// The operator console's binary.
pub const CONSOLE: &str = "pipeline-console";
/// The broker process (its log is `broker.log`).
pub const BROKER: &str = "broker";
/// The Redis process.
pub const REDIS: &str = "redis";

/// The name of replica `n` (1-based) of `service`: `service` itself for the first.
pub fn replica_name(service: &str, n: usize) -> String {
    if n <= 1 {
        service.to_owned()
    } else {
        format!("{service}#{n}")
    }
}

/// The binary a replica name runs (`batch-orchestrator#2` → `batch-orchestrator`).
pub fn service_of(name: &str) -> &str {
    name.split('#').next().unwrap_or(name)
}

/// Which Kafka-protocol broker a stack runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// Apache Kafka (what production runs).
    Kafka,
    /// tansu 0.6, a Kafka-compatible broker in Rust (lighter, with known defects:
    /// `docs/reliability.md`).
    Tansu,
}

impl BrokerKind {
    /// From `HULEEDU_TEST_BROKER` (`kafka`, the default, or `tansu`); panics on anything else.
    pub fn from_env() -> Self {
        match std::env::var("HULEEDU_TEST_BROKER").as_deref() {
            Err(_) | Ok("") | Ok("kafka") => BrokerKind::Kafka,
            Ok("tansu") => BrokerKind::Tansu,
            Ok(other) => panic!("HULEEDU_TEST_BROKER={other}: expected kafka or tansu"),
        }
    }

    /// `kafka` or `tansu`.
    pub fn name(self) -> &'static str {
        match self {
            BrokerKind::Kafka => "kafka",
            BrokerKind::Tansu => "tansu",
        }
    }

    /// How long one start of the broker may take to accept connections before it is started
    /// again, and all attempts together: a JVM that formats its storage or recovers its logs
    /// after a SIGKILL needs seconds, tansu a moment.
    fn start_timeouts(self) -> (Duration, Duration) {
        match self {
            BrokerKind::Kafka => (Duration::from_secs(60), Duration::from_secs(120)),
            BrokerKind::Tansu => (Duration::from_secs(5), Duration::from_secs(30)),
        }
    }
}

/// The script that runs one Apache Kafka broker in the foreground.
fn kafka_broker_script() -> PathBuf {
    huleedu_contracts::checkout_root().join("scripts/lib/kafka-broker.sh")
}

/// Settings of one stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub name: String,
    /// Extra environment for the orchestrator.
    pub bos_env: Vec<(String, String)>,
    /// Extra environment for the conductor.
    pub bcs_env: Vec<(String, String)>,
    /// Extra environment for the simulator.
    pub sim_env: Vec<(String, String)>,
    /// Redis with an append-only file fsynced on every write (`appendfsync always`) and tansu
    /// on SQLite, so either survives a SIGKILL without losing anything it acknowledged (Apache
    /// Kafka keeps its data on disk anyway). `always`, not the `everysec` of
    /// docker-compose.yml: with `everysec`, Redis postpones its AOF writes while an fsync takes
    /// longer than a second and keeps answering, so even a process crash can lose up to ~2 s of
    /// acknowledged writes on a busy disk (seen in the chaos test: docs/reliability.md).
    pub durable: bool,
    /// The broker (default: [`BrokerKind::from_env`]).
    pub broker: BrokerKind,
    /// Managed-infrastructure mode: the services reach Apache Kafka over SASL_SSL
    /// (SCRAM-SHA-512), a TLS-only Redis with a least-privilege ACL user, and the conductor over
    /// HTTPS, with every secret read from a `_FILE`. Needs Apache Kafka and the run's
    /// certificates (`HULEEDU_TEST_TLS_DIR`, made by scripts/test.sh). Test clients keep using
    /// the broker's plaintext listener ([`Stack::kafka`]).
    pub secure: bool,
    /// Orchestrator processes in one consumer group (at least 1).
    pub bos_replicas: usize,
    /// Conductor processes in one consumer group (at least 1).
    pub bcs_replicas: usize,
    /// A Redis Cluster (three masters, one replica each: `scripts/lib/redis-cluster.sh`) instead
    /// of one Redis, the services in `REDIS_MODE=cluster` (default: [`crate::redis_mode`], so
    /// `HULEEDU_TEST_REDIS_MODE=cluster` runs every scenario on a cluster).
    pub redis_cluster: bool,
    /// `REDIS_WAIT_REPLICAS` of the orchestrators and conductors (0: not set).
    pub redis_wait_replicas: u32,
    /// Also run the operator console (`pipeline-console`) against the stack ([`Stack::console_url`];
    /// not with `secure`).
    pub console: bool,
}

impl StackOptions {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            bos_env: vec![],
            bcs_env: vec![],
            sim_env: vec![],
            durable: false,
            broker: BrokerKind::from_env(),
            secure: false,
            bos_replicas: 1,
            bcs_replicas: 1,
            redis_cluster: crate::redis_mode() == huleedu_store::RedisMode::Cluster,
            redis_wait_replicas: 0,
            console: false,
        }
    }
}

/// Nodes of a stack's Redis Cluster: three masters and their replicas.
pub const REDIS_CLUSTER_NODES: usize = 6;

fn redis_cluster_script() -> PathBuf {
    huleedu_contracts::checkout_root().join("scripts/lib/redis-cluster.sh")
}

/// The process name of the cluster node on `port`.
pub fn redis_node_name(port: u16) -> String {
    format!("redis-node-{port}")
}

/// The Redis ACL rules of the services' user (after `on >password`): every key, no pub/sub
/// channel, the read, write, scripting and connection commands but none of the dangerous ones.
/// docs/managed-services.md recommends the same.
pub const REDIS_SERVICE_ACL: &[&str] = &[
    "~*",
    "resetchannels",
    "-@all",
    "+@read",
    "+@write",
    "+@scripting",
    "+@connection",
    "-@dangerous",
];

/// The operator token every test stack's conductor and orchestrator accept.
pub const OPERATOR_TOKEN: &str = "e2e-operator-token";

/// The secured parts of a stack in managed-infrastructure mode.
#[derive(Debug, Clone)]
struct Secure {
    tls: PathBuf,
    ssl_port: u16,
    mtls_port: u16,
    sasl_port: u16,
    kafka_user: String,
    kafka_password: String,
    redis_user: String,
    redis_password: String,
}

/// One service process the stack can (re)start.
#[derive(Debug, Clone)]
struct Instance {
    env: Vec<(String, String)>,
    url: String,
}

/// How a process ended after [`Stack::terminate`].
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    /// The exit status; `None` when it did not exit within the bound and was killed.
    pub status: Option<ExitStatus>,
    /// From the signal to the exit (or to the bound).
    pub took: Duration,
}

impl Stopped {
    /// Exited by itself with code 0.
    pub fn clean(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// A running system.
#[derive(Debug)]
pub struct Stack {
    pub kafka: String,
    pub redis: String,
    /// The first orchestrator replica.
    pub bos_url: String,
    /// The conductor: its only replica, or the balancer in front of all replicas.
    pub bcs_url: String,
    pub sim_url: String,
    /// The operator console, when [`StackOptions::console`] (else empty).
    pub console_url: String,
    pub dir: PathBuf,
    /// The broker this stack runs.
    pub broker: BrokerKind,
    kafka_port: u16,
    /// Apache Kafka's KRaft controller listener (the same across restarts).
    controller_port: u16,
    redis_port: u16,
    /// The cluster's nodes (client port, cluster-bus port), when the stack runs one.
    cluster_ports: Vec<(u16, u16)>,
    durable: bool,
    secure: Option<Secure>,
    procs: HashMap<String, Child>,
    instances: BTreeMap<String, Instance>,
    balancer: Option<CancellationToken>,
}

async fn port_open(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

/// A log file of the stack, appended to (restarts keep the earlier lines).
fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .expect("log file")
}

impl Stack {
    /// Start broker, Redis, conductor(s), orchestrator(s) and simulator; wait until all are
    /// ready.
    pub async fn start(opts: StackOptions) -> Stack {
        let dir = std::env::temp_dir().join(crate::unique(&format!("huleedu-e2e-{}", opts.name)));
        std::fs::create_dir_all(&dir).unwrap();
        let kport = free_port();
        let rport = free_port();
        let cport = free_port();
        let kafka = format!("127.0.0.1:{kport}");
        let secure = opts.secure.then(|| {
            assert_eq!(
                opts.broker,
                BrokerKind::Kafka,
                "a secure stack needs Apache Kafka (tansu has no TLS)"
            );
            Secure {
                tls: crate::tls_dir().expect(
                    "HULEEDU_TEST_TLS_DIR is not set: scripts/test.sh makes the certificates",
                ),
                ssl_port: free_port(),
                mtls_port: free_port(),
                sasl_port: free_port(),
                kafka_user: "huleedu-services".into(),
                kafka_password: crate::unique("kafka-pw"),
                redis_user: "huleedu".into(),
                redis_password: crate::unique("redis-pw"),
            }
        });
        assert!(
            !(opts.redis_cluster && secure.is_some()),
            "a secure stack runs one TLS Redis, not a cluster: set redis_cluster = false"
        );
        let cluster_ports: Vec<(u16, u16)> = if opts.redis_cluster {
            (0..REDIS_CLUSTER_NODES)
                .map(|_| (free_port(), free_port()))
                .collect()
        } else {
            vec![]
        };
        let redis = match &secure {
            None if opts.redis_cluster => cluster_ports
                .iter()
                .map(|(p, _)| format!("redis://127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(","),
            None => format!("redis://127.0.0.1:{rport}"),
            Some(s) => format!(
                "rediss://{}:{}@127.0.0.1:{rport}",
                s.redis_user, s.redis_password
            ),
        };

        let mut stack = Stack {
            kafka: kafka.clone(),
            redis: redis.clone(),
            bos_url: String::new(),
            bcs_url: String::new(),
            sim_url: String::new(),
            console_url: String::new(),
            dir,
            broker: opts.broker,
            kafka_port: kport,
            controller_port: cport,
            redis_port: rport,
            cluster_ports,
            durable: opts.durable,
            secure: secure.clone(),
            procs: HashMap::new(),
            instances: BTreeMap::new(),
            balancer: None,
        };
        if opts.redis_cluster {
            stack.start_redis_cluster().await;
        } else {
            stack.start_redis().await;
        }
        stack.start_broker().await;

        // In managed-infrastructure mode every secret comes from a file.
        let secret_file = |name: &str, value: &str| -> String {
            let path = stack.dir.join(name);
            std::fs::write(&path, format!("{value}\n")).expect("secret file");
            path.display().to_string()
        };
        let secure_env: Vec<(String, String)> = match &secure {
            None => vec![
                ("KAFKA_BOOTSTRAP_SERVERS".into(), kafka.clone()),
                ("REDIS_URL".into(), redis.clone()),
                (
                    "REDIS_MODE".into(),
                    if opts.redis_cluster {
                        "cluster"
                    } else {
                        "standalone"
                    }
                    .into(),
                ),
                ("OPERATOR_TOKEN".into(), OPERATOR_TOKEN.into()),
            ],
            Some(s) => {
                let ca = s.tls.join("ca.pem").display().to_string();
                vec![
                    (
                        "KAFKA_BOOTSTRAP_SERVERS".into(),
                        format!("127.0.0.1:{}", s.sasl_port),
                    ),
                    ("KAFKA_SECURITY_PROTOCOL".into(), "sasl_ssl".into()),
                    ("KAFKA_SASL_MECHANISM".into(), "SCRAM-SHA-512".into()),
                    ("KAFKA_SASL_USERNAME".into(), s.kafka_user.clone()),
                    (
                        "KAFKA_SASL_PASSWORD_FILE".into(),
                        secret_file("kafka-password", &s.kafka_password),
                    ),
                    ("KAFKA_SSL_CA_LOCATION".into(), ca.clone()),
                    (
                        "REDIS_URL".into(),
                        format!("rediss://{}@127.0.0.1:{rport}", s.redis_user),
                    ),
                    (
                        "REDIS_PASSWORD_FILE".into(),
                        secret_file("redis-password", &s.redis_password),
                    ),
                    ("REDIS_TLS_CA_FILE".into(), ca),
                    (
                        "OPERATOR_TOKEN_FILE".into(),
                        secret_file("operator-token", OPERATOR_TOKEN),
                    ),
                ]
            }
        };
        let common = |group: &str| -> Vec<(String, String)> {
            let mut env = secure_env.clone();
            if opts.redis_wait_replicas > 0 {
                env.push((
                    "REDIS_WAIT_REPLICAS".into(),
                    opts.redis_wait_replicas.to_string(),
                ));
            }
            env.extend([
                ("KAFKA_CONSUMER_GROUP".into(), group.into()),
                ("KAFKA_SESSION_TIMEOUT_MS".into(), "6000".into()),
                ("LOG_FORMAT".into(), "json".into()),
                ("RUST_LOG".into(), "info,librdkafka=warn".into()),
            ]);
            env
        };
        // One process: the common settings, its address, then its own (`own`) and the test's
        // (`overrides`, which win).
        let instance = |group: &str,
                        scheme: &str,
                        port: u16,
                        own: Vec<(String, String)>,
                        overrides: &[(String, String)]| {
            let mut env = common(group);
            env.push(("HTTP_ADDR".into(), format!("127.0.0.1:{port}")));
            env.extend(own);
            env.extend(overrides.iter().cloned());
            Instance {
                env,
                url: format!("{scheme}://127.0.0.1:{port}"),
            }
        };
        let tls_file = |name: &str| {
            let s = secure.as_ref().expect("secure");
            s.tls.join(name).display().to_string()
        };
        let bcs_scheme = if secure.is_some() { "https" } else { "http" };
        let bcs_ports: Vec<u16> = (0..opts.bcs_replicas.max(1)).map(|_| free_port()).collect();
        for (i, port) in bcs_ports.iter().enumerate() {
            let name = replica_name(BCS, i + 1);
            // Replicas on one host need identities of their own (their outbox leases).
            let mut own = vec![("REPLICA_ID".to_owned(), name.clone())];
            if secure.is_some() {
                own.push(("HTTP_TLS_CERT_FILE".into(), tls_file("server.pem")));
                own.push(("HTTP_TLS_KEY_FILE".into(), tls_file("server.key")));
            }
            let bcs = instance(BCS_GROUP, bcs_scheme, *port, own, &opts.bcs_env);
            stack.instances.insert(name, bcs);
        }
        stack.bcs_url = if bcs_ports.len() > 1 {
            let (port, stop) = start_balancer(bcs_ports.clone()).await;
            stack.balancer = Some(stop);
            format!("{bcs_scheme}://127.0.0.1:{port}")
        } else {
            format!("{bcs_scheme}://127.0.0.1:{}", bcs_ports[0])
        };
        for i in 0..opts.bos_replicas.max(1) {
            let name = replica_name(BOS, i + 1);
            let mut own = vec![
                ("REPLICA_ID".to_owned(), name.clone()),
                ("BCS_URL".to_owned(), stack.bcs_url.clone()),
            ];
            if secure.is_some() {
                own.push(("BCS_CA_FILE".into(), tls_file("ca.pem")));
            }
            let bos = instance(BOS_GROUP, "http", free_port(), own, &opts.bos_env);
            stack.instances.insert(name, bos);
        }
        let sim = instance("els-simulator", "http", free_port(), vec![], &opts.sim_env);
        stack.instances.insert(SIM.to_owned(), sim);
        stack.bos_url = stack.instances[BOS].url.clone();
        stack.sim_url = stack.instances[SIM].url.clone();

        if opts.console {
            assert!(
                secure.is_none(),
                "the test console runs on plain stacks only"
            );
            let port = free_port();
            let console = Instance {
                env: vec![
                    ("KAFKA_BOOTSTRAP_SERVERS".into(), kafka.clone()),
                    ("KAFKA_CONSUMER_GROUP".into(), "pipeline-console".into()),
                    ("BOS_URL".into(), stack.bos_url.clone()),
                    ("BCS_URL".into(), stack.bcs_url.clone()),
                    ("OPERATOR_TOKEN".into(), OPERATOR_TOKEN.into()),
                    ("HTTP_ADDR".into(), format!("127.0.0.1:{port}")),
                    ("LOG_FORMAT".into(), "json".into()),
                    ("RUST_LOG".into(), "info,librdkafka=warn".into()),
                ],
                url: format!("http://127.0.0.1:{port}"),
            };
            stack.console_url = console.url.clone();
            stack.instances.insert(CONSOLE.to_owned(), console);
        }

        // Conductors first (the orchestrators call them), then the rest.
        let mut order = stack.replicas(BCS);
        order.extend(stack.replicas(BOS));
        order.push(SIM.to_owned());
        if opts.console {
            order.push(CONSOLE.to_owned());
        }
        for name in &order {
            stack.spawn_service(name);
        }
        for name in &order {
            wait_ready(stack.url(name), Duration::from_secs(60)).await;
        }
        stack
    }

    /// The replica names of `service` (`batch-orchestrator`, `batch-orchestrator#2`, ...).
    pub fn replicas(&self, service: &str) -> Vec<String> {
        self.instances
            .keys()
            .filter(|n| service_of(n) == service)
            .cloned()
            .collect()
    }

    /// The HTTP base URL of one replica.
    pub fn url(&self, name: &str) -> &str {
        &self
            .instances
            .get(name)
            .unwrap_or_else(|| panic!("no service instance named {name}"))
            .url
    }

    /// Whether a process of the stack is running (started and not exited).
    pub fn is_running(&mut self, name: &str) -> bool {
        self.procs
            .get_mut(name)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The process id of a running process of the stack.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.procs.get(name).and_then(Child::id)
    }

    /// (Re)start one service replica with its stack environment. Its log is appended to
    /// `<dir>/<name>.log`.
    pub fn spawn_service(&mut self, name: &str) {
        let env = self
            .instances
            .get(name)
            .unwrap_or_else(|| panic!("no service instance named {name}"))
            .env
            .clone();
        let child = Command::new(binary(service_of(name)))
            .envs(env)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file(&self.dir, name)))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        self.procs.insert(name.to_owned(), child);
    }

    /// SIGKILL one process of the stack and reap it.
    pub async fn kill(&mut self, name: &str) {
        if let Some(mut c) = self.procs.remove(name) {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// SIGTERM one process and wait up to `bound` for it to exit; SIGKILL it after that.
    pub async fn terminate(&mut self, name: &str, bound: Duration) -> Stopped {
        let Some(mut c) = self.procs.remove(name) else {
            return Stopped {
                status: None,
                took: Duration::ZERO,
            };
        };
        let start = Instant::now();
        if let Some(pid) = c.id() {
            // The workspace forbids unsafe code, so no libc::kill: the `kill` command will do.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        match tokio::time::timeout(bound, c.wait()).await {
            Ok(Ok(status)) => Stopped {
                status: Some(status),
                took: start.elapsed(),
            },
            _ => {
                let _ = c.start_kill();
                let _ = c.wait().await;
                Stopped {
                    status: None,
                    took: start.elapsed(),
                }
            }
        }
    }

    fn spawn_broker(&mut self) {
        let log = log_file(&self.dir, BROKER);
        let mut cmd = match self.broker {
            BrokerKind::Kafka => {
                let mut c = Command::new(kafka_broker_script());
                c.arg("--dir")
                    .arg(self.dir.join("kafka"))
                    .args(["--port", &self.kafka_port.to_string()])
                    .args(["--controller-port", &self.controller_port.to_string()]);
                if let Some(s) = &self.secure {
                    c.arg("--tls-dir")
                        .arg(&s.tls)
                        .args(["--ssl-port", &s.ssl_port.to_string()])
                        .args(["--mtls-port", &s.mtls_port.to_string()])
                        .args(["--sasl-ssl-port", &s.sasl_port.to_string()])
                        .args([
                            "--scram-user",
                            &format!("{}:{}", s.kafka_user, s.kafka_password),
                        ])
                        .args(["--plain-user", "unused:unused"]);
                }
                c
            }
            BrokerKind::Tansu => {
                let storage = if self.durable {
                    // Relative to the working directory (tansu does not take an absolute path).
                    "sqlite://tansu.db"
                } else {
                    "memory://tansu/"
                };
                let url = format!("tcp://{}", self.kafka);
                let mut c = Command::new("tansu");
                c.args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                    "--storage-engine",
                    storage,
                ]);
                c
            }
        };
        let child = cmd
            .current_dir(&self.dir)
            .stdout(log.try_clone().expect("log file"))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start the {} broker: {e} (scripts/test.sh installs it)",
                    self.broker.name()
                )
            });
        self.procs.insert(BROKER.to_owned(), child);
    }

    fn spawn_redis(&mut self) {
        let aof: &[&str] = if self.durable {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        let mut cmd = Command::new("redis-server");
        match &self.secure {
            None => {
                cmd.args(["--port", &self.redis_port.to_string()]);
            }
            // TLS only, the default user off, one least-privilege ACL user (the same ACL as
            // docs/managed-services.md recommends).
            Some(s) => {
                cmd.args(["--port", "0", "--tls-port", &self.redis_port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(s.tls.join("server.pem"))
                    .arg("--tls-key-file")
                    .arg(s.tls.join("server.key"))
                    .arg("--tls-ca-cert-file")
                    .arg(s.tls.join("ca.pem"))
                    .args(["--tls-auth-clients", "no", "--user", "default", "off"])
                    .args(["--user", &s.redis_user, "on"])
                    .arg(format!(">{}", s.redis_password))
                    .args(REDIS_SERVICE_ACL);
            }
        }
        let redis = cmd
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(aof)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(log_file(&self.dir, "redis"))
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed");
        self.procs.insert(REDIS.to_owned(), redis);
    }

    /// Start the broker or Redis on its port (again, after a kill), retrying while the port is
    /// not yet free (the old listener may linger for a moment); panics with the process's log
    /// when it does not come up within its time-out.
    async fn respawn_infra(&mut self, name: &str, port: u16) {
        // One attempt may take this long before the process is restarted; all of them, `timeout`.
        let (attempt_bound, timeout) = if name == BROKER {
            self.broker.start_timeouts()
        } else {
            (Duration::from_secs(5), Duration::from_secs(30))
        };
        let start = Instant::now();
        loop {
            if name == BROKER {
                self.spawn_broker();
            } else {
                self.spawn_redis();
            }
            let attempt = Instant::now();
            while attempt.elapsed() < attempt_bound {
                if port_open(port).await {
                    return;
                }
                if !self.is_running(name) {
                    break; // exited (e.g. the port was still taken): start it again
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            self.kill(name).await;
            assert!(
                start.elapsed() < timeout,
                "{name} did not come up on port {port} within {timeout:?}; its log ends:\n{}",
                self.log_tail(name, 30)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Store settings for this stack's Redis (either mode) with key prefix `prefix`, as a test
    /// client (not the services' TLS settings of a secure stack).
    pub fn redis_settings(&self, prefix: &str) -> huleedu_store::RedisSettings {
        let mut s = huleedu_store::RedisSettings::local(&self.redis, prefix);
        if !self.cluster_ports.is_empty() {
            s.mode = huleedu_store::RedisMode::Cluster;
        }
        s
    }

    fn spawn_redis_node(&mut self, port: u16) {
        let bus = self
            .cluster_ports
            .iter()
            .find(|(p, _)| *p == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
            .1;
        let aof: &[&str] = if self.durable {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &[]
        };
        let name = redis_node_name(port);
        let child = Command::new(redis_cluster_script())
            .arg("node")
            .arg(self.dir.join(&name))
            .args([port.to_string(), bus.to_string()])
            .args(aof)
            .stdout(log_file(&self.dir, &name))
            .stderr(log_file(&self.dir, &name))
            .kill_on_drop(true)
            .spawn()
            .expect("scripts/lib/redis-cluster.sh runs redis-server");
        self.procs.insert(name, child);
    }

    /// Start the cluster's nodes and join them (scripts/lib/redis-cluster.sh create).
    async fn start_redis_cluster(&mut self) {
        let ports: Vec<u16> = self.cluster_ports.iter().map(|(p, _)| *p).collect();
        for &port in &ports {
            self.start_redis_node(port).await;
        }
        let out = Command::new(redis_cluster_script())
            .arg("create")
            .args(ports.iter().map(u16::to_string))
            .output()
            .await
            .expect("scripts/lib/redis-cluster.sh create");
        assert!(
            out.status.success(),
            "the Redis Cluster did not form: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start the cluster node on `port` (again, after a kill) with its old identity (its
    /// nodes.conf); returns when it accepts connections. A master that was failed over
    /// meanwhile rejoins as a replica of its successor.
    pub async fn start_redis_node(&mut self, port: u16) {
        let name = redis_node_name(port);
        let start = Instant::now();
        loop {
            self.spawn_redis_node(port);
            let attempt = Instant::now();
            while attempt.elapsed() < Duration::from_secs(5) {
                if port_open(port).await {
                    return;
                }
                if !self.is_running(&name) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            self.kill(&name).await;
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{name} did not come up within 30 s; its log ends:\n{}",
                self.log_tail(&name, 30)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGKILL the cluster node on `port`.
    pub async fn kill_redis_node(&mut self, port: u16) {
        self.kill(&redis_node_name(port)).await;
    }

    /// The cluster's nodes as the node on one live port sees them: (port, is master, flags
    /// say failed), from `CLUSTER NODES`.
    pub async fn redis_cluster_nodes(&self) -> anyhow::Result<Vec<(u16, bool, bool)>> {
        let mut last = None;
        for (port, _) in &self.cluster_ports {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
            let text: redis::RedisResult<String> = async {
                let mut c = client.get_multiplexed_async_connection().await?;
                redis::cmd("CLUSTER").arg("NODES").query_async(&mut c).await
            }
            .await;
            match text {
                Ok(text) => {
                    return Ok(text
                        .lines()
                        .filter_map(|l| {
                            let f: Vec<&str> = l.split_whitespace().collect();
                            let addr = f.get(1)?;
                            let port = addr.split(['@', ':']).nth(1)?.parse().ok()?;
                            let flags = f.get(2)?;
                            Some((port, flags.contains("master"), flags.contains("fail")))
                        })
                        .collect())
                }
                Err(e) => last = Some(e),
            }
        }
        Err(anyhow::anyhow!("no cluster node answers: {last:?}"))
    }

    /// The ports of the cluster's masters that are up, as the cluster sees them now.
    pub async fn redis_cluster_masters(&self) -> anyhow::Result<Vec<u16>> {
        Ok(self
            .redis_cluster_nodes()
            .await?
            .into_iter()
            .filter(|(_, master, failed)| *master && !failed)
            .map(|(p, _, _)| p)
            .collect())
    }

    /// Move `slots` hash slots from the master on `from` to the master on `to` while everything
    /// runs (`redis-cli --cluster reshard`: keys move with `MIGRATE`, clients meanwhile get
    /// `ASK` redirects and `TRYAGAIN`); returns how long it took.
    pub async fn redis_cluster_reshard(
        &self,
        from: u16,
        to: u16,
        slots: u32,
    ) -> anyhow::Result<Duration> {
        let id = |port: u16| async move {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
            let mut c = client.get_multiplexed_async_connection().await?;
            let id: String = redis::cmd("CLUSTER")
                .arg("MYID")
                .query_async(&mut c)
                .await?;
            anyhow::Ok(id)
        };
        let (from_id, to_id) = (id(from).await?, id(to).await?);
        let start = Instant::now();
        let out = Command::new("redis-cli")
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
            .args(["--cluster-from", &from_id, "--cluster-to", &to_id])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "redis-cli --cluster reshard failed: {}{}",
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join("\n"),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(start.elapsed())
    }

    /// The port of the master that owns the slot of each key, as the cluster says now
    /// (`CLUSTER KEYSLOT`, `CLUSTER SLOTS`).
    pub async fn redis_slot_owners(&self, keys: &[String]) -> anyhow::Result<Vec<u16>> {
        let port = self.redis_cluster_masters().await?[0];
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
        let mut c = client.get_multiplexed_async_connection().await?;
        let ranges: Vec<(u16, u16, (String, u16))> = {
            let raw: Vec<redis::Value> = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async(&mut c)
                .await?;
            raw.into_iter()
                .filter_map(|r| {
                    let redis::Value::Array(items) = r else {
                        return None;
                    };
                    let start: u16 = redis::from_redis_value(items.first()?.clone()).ok()?;
                    let end: u16 = redis::from_redis_value(items.get(1)?.clone()).ok()?;
                    let redis::Value::Array(master) = items.get(2)?.clone() else {
                        return None;
                    };
                    let host: String = redis::from_redis_value(master.first()?.clone()).ok()?;
                    let port: u16 = redis::from_redis_value(master.get(1)?.clone()).ok()?;
                    Some((start, end, (host, port)))
                })
                .collect()
        };
        let mut owners = Vec::new();
        for key in keys {
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query_async(&mut c)
                .await?;
            let owner = ranges
                .iter()
                .find(|(a, b, _)| (*a..=*b).contains(&slot))
                .map(|(_, _, (_, p))| *p)
                .ok_or_else(|| anyhow::anyhow!("no master owns slot {slot}"))?;
            owners.push(owner);
        }
        Ok(owners)
    }

    /// Ports of the cluster's nodes (empty without a cluster).
    pub fn redis_cluster_ports(&self) -> Vec<u16> {
        self.cluster_ports.iter().map(|(p, _)| *p).collect()
    }

    /// SIGKILL the broker.
    pub async fn kill_broker(&mut self) {
        self.kill(BROKER).await;
    }

    /// Start the broker (again) on the same port and data directory; returns when it accepts
    /// connections.
    pub async fn start_broker(&mut self) {
        self.respawn_infra(BROKER, self.kafka_port).await;
    }

    /// SIGKILL Redis.
    pub async fn kill_redis(&mut self) {
        self.kill(REDIS).await;
    }

    /// Start Redis again on the same port and directory (it reloads its append-only file when
    /// the stack is durable); returns when it accepts connections.
    pub async fn start_redis(&mut self) {
        self.respawn_infra(REDIS, self.redis_port).await;
    }

    /// SIGKILL the broker, wait `down`, start it again.
    pub async fn restart_broker(&mut self, down: Duration) {
        self.kill_broker().await;
        tokio::time::sleep(down).await;
        self.start_broker().await;
    }

    /// SIGKILL Redis, wait `down`, start it again.
    pub async fn restart_redis(&mut self, down: Duration) {
        self.kill_redis().await;
        tokio::time::sleep(down).await;
        self.start_redis().await;
    }

    /// The tail of a process's log (for failure messages).
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let text =
            std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(stop) = &self.balancer {
            stop.cancel();
        }
        for (_, c) in self.procs.iter_mut() {
            let _ = c.start_kill();
        }
        if std::env::var_os("HULEEDU_KEEP_E2E").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A TCP balancer on a free port of 127.0.0.1: each connection goes to the next backend (round
/// robin) that accepts it. Stops accepting when the token is cancelled.
async fn start_balancer(backends: Vec<u16>) -> (u16, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("balancer port");
    let port = listener.local_addr().expect("balancer address").port();
    let stop = CancellationToken::new();
    let next = Arc::new(AtomicUsize::new(0));
    let token = stop.clone();
    tokio::spawn(async move {
        loop {
            let (mut client, _) = tokio::select! {
                _ = token.cancelled() => break,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(_) => continue,
                },
            };
            let first = next.fetch_add(1, Ordering::Relaxed);
            let backends = backends.clone();
            let token = token.clone();
            tokio::spawn(async move {
                for i in 0..backends.len() {
                    let port = backends[(first + i) % backends.len()];
                    let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
                    if let Ok(Ok(mut server)) =
                        tokio::time::timeout(Duration::from_secs(1), connect).await
                    {
                        tokio::select! {
                            _ = token.cancelled() => {}
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        }
                        return;
                    }
                }
                // No backend is up: closing the connection makes the caller retry.
            });
        }
    });
    (port, stop)
}

/// Wait until `GET {url}/readyz` answers 200.
pub async fn wait_ready(url: &str, timeout: Duration) {
    let client = crate::http_client();
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{url}/readyz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            start.elapsed() < timeout,
            "{url} not ready within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
