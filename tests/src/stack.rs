//! A whole local system for end-to-end tests: its own tansu broker and Redis on free ports,
//! then the conductor, the orchestrator and the reference worker as separate processes.
//!
//! Everything runs as child processes that are killed when the [`Stack`] is dropped. Each
//! stack has its own broker, so stacks never see each other's events.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Where cargo put this workspace's binaries (next to the running test executable).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

fn binary(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not found: build the binaries first (cargo build --workspace --bins; scripts/test.sh does)",
        p.display()
    );
    p
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
    /// Use SQLite for the broker and AOF for Redis (restartable without loss).
    pub durable: bool,
}

impl StackOptions {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            bos_env: vec![],
            bcs_env: vec![],
            sim_env: vec![],
            durable: false,
        }
    }
}

/// The operator token every test stack's conductor and orchestrator accept.
pub const OPERATOR_TOKEN: &str = "e2e-operator-token";

/// A running system.
#[derive(Debug)]
pub struct Stack {
    pub kafka: String,
    pub redis: String,
    pub bos_url: String,
    pub bcs_url: String,
    pub sim_url: String,
    pub dir: PathBuf,
    procs: HashMap<&'static str, Child>,
    envs: HashMap<&'static str, Vec<(String, String)>>,
}

async fn wait_port(port: u16, what: &str, timeout: Duration) {
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < timeout,
            "{what} did not open port {port} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file")
}

impl Stack {
    /// Start broker, Redis, conductor, orchestrator and simulator; wait until all are ready.
    pub async fn start(opts: StackOptions) -> Stack {
        let dir = std::env::temp_dir().join(crate::unique(&format!("huleedu-e2e-{}", opts.name)));
        std::fs::create_dir_all(&dir).unwrap();
        let kport = free_port();
        let rport = free_port();
        let kafka = format!("127.0.0.1:{kport}");
        let redis = format!("redis://127.0.0.1:{rport}");
        let mut procs = HashMap::new();

        let storage = if opts.durable {
            "sqlite://tansu.db"
        } else {
            "memory://tansu/"
        };
        let tansu = Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://{kafka}"),
                "--advertised-listener-url",
                &format!("tcp://{kafka}"),
                "--storage-engine",
                storage,
            ])
            .current_dir(&dir)
            .stdout(log_file(&dir, "tansu"))
            .stderr(Stdio::from(log_file(&dir, "tansu.err")))
            .kill_on_drop(true)
            .spawn()
            .expect("tansu is installed (scripts/test.sh installs it)");
        procs.insert("tansu", tansu);
        let aof: &[&str] = if opts.durable {
            &["--appendonly", "yes", "--appendfsync", "everysec"]
        } else {
            &["--appendonly", "no"]
        };
        let redis_proc = Command::new("redis-server")
            .args([
                "--port",
                &rport.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(aof)
            .arg("--dir")
            .arg(&dir)
            .stdout(log_file(&dir, "redis"))
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed");
        procs.insert("redis", redis_proc);
        wait_port(kport, "tansu", Duration::from_secs(30)).await;
        wait_port(rport, "redis", Duration::from_secs(30)).await;

        let (bcs_port, bos_port, sim_port) = (free_port(), free_port(), free_port());
        let common = |group: &str| -> Vec<(String, String)> {
            vec![
                ("KAFKA_BOOTSTRAP_SERVERS".into(), kafka.clone()),
                ("KAFKA_CONSUMER_GROUP".into(), group.into()),
                ("KAFKA_SESSION_TIMEOUT_MS".into(), "6000".into()),
                ("REDIS_URL".into(), redis.clone()),
                ("LOG_FORMAT".into(), "json".into()),
                ("RUST_LOG".into(), "info,librdkafka=warn".into()),
                ("OPERATOR_TOKEN".into(), OPERATOR_TOKEN.into()),
            ]
        };
        let mut bcs_env = common("bcs-event-consumer");
        bcs_env.push(("HTTP_ADDR".into(), format!("127.0.0.1:{bcs_port}")));
        bcs_env.extend(opts.bcs_env.clone());
        let mut bos_env = common("batch-orchestrator-consumers");
        bos_env.push(("HTTP_ADDR".into(), format!("127.0.0.1:{bos_port}")));
        bos_env.push(("BCS_URL".into(), format!("http://127.0.0.1:{bcs_port}")));
        bos_env.extend(opts.bos_env.clone());
        let mut sim_env = common("els-simulator");
        sim_env.push(("HTTP_ADDR".into(), format!("127.0.0.1:{sim_port}")));
        sim_env.extend(opts.sim_env.clone());

        let mut stack = Stack {
            kafka,
            redis,
            bos_url: format!("http://127.0.0.1:{bos_port}"),
            bcs_url: format!("http://127.0.0.1:{bcs_port}"),
            sim_url: format!("http://127.0.0.1:{sim_port}"),
            dir,
            procs,
            envs: HashMap::from([
                ("batch-conductor", bcs_env),
                ("batch-orchestrator", bos_env),
                ("els-simulator", sim_env),
            ]),
        };
        for name in ["batch-conductor", "batch-orchestrator", "els-simulator"] {
            stack.spawn_service(name);
        }
        for url in [&stack.bcs_url, &stack.bos_url, &stack.sim_url] {
            wait_ready(url, Duration::from_secs(60)).await;
        }
        stack
    }

    /// (Re)start one of the three services with its stack environment.
    pub fn spawn_service(&mut self, name: &'static str) {
        let env = self.envs[name].clone();
        let child = Command::new(binary(name))
            .envs(env)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join(format!("{name}.log")))
                    .unwrap(),
            ))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        self.procs.insert(name, child);
    }

    /// SIGKILL one process of the stack.
    pub async fn kill(&mut self, name: &str) {
        if let Some(mut c) = self.procs.remove(name) {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
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
        for (_, c) in self.procs.iter_mut() {
            let _ = c.start_kill();
        }
        if std::env::var_os("HULEEDU_KEEP_E2E").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Wait until `GET {url}/readyz` answers 200.
pub async fn wait_ready(url: &str, timeout: Duration) {
    let client = reqwest::Client::new();
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
