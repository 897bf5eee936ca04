//! The Redis the services run against, as the benchmark measures it: one server
//! (`--redis-mode standalone`) or a Redis Cluster (`--redis-mode cluster`, `--redis` = the seed
//! URLs, comma-separated). Server-wide figures (`INFO`, `SCAN`) are the sum over the cluster's
//! masters, where the data and the clients' commands are; a key's `MEMORY USAGE` is asked of the
//! master that owns it.

use std::collections::BTreeMap;

use anyhow::Context;
use redis::aio::MultiplexedConnection;

/// `--redis-mode`: the store's own mode type.
pub use huleedu_store::RedisMode;

/// One Redis server (a cluster node).
pub struct Node {
    /// `host:port`.
    pub addr: String,
    /// Its URL (the seed's scheme and credentials).
    pub url: String,
    conn: MultiplexedConnection,
}

impl Node {
    async fn connect(url: String) -> anyhow::Result<Node> {
        let conn = redis::Client::open(url.as_str())?
            .get_multiplexed_async_connection()
            .await
            .with_context(|| format!("connect to Redis at {url}"))?;
        Ok(Node {
            addr: host_port(&url),
            url,
            conn,
        })
    }

    async fn info(&self, section: &str) -> anyhow::Result<String> {
        let mut c = self.conn.clone();
        Ok(redis::cmd("INFO").arg(section).query_async(&mut c).await?)
    }
}

/// The Redis of the run and connections to each of its servers that hold data.
pub struct RedisNodes {
    pub mode: RedisMode,
    /// Standalone: the server; cluster: every master (not failed, by its own `INFO` role).
    pub masters: Vec<Node>,
    /// Cluster: every replica (not failed); empty in standalone mode.
    pub replicas: Vec<Node>,
}

/// `redis://[user:pw@]host:port[/db]` → `host:port`.
pub fn host_port(redis_url: &str) -> String {
    let rest = redis_url
        .split_once("://")
        .map_or(redis_url, |(_, r)| r)
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:6379");
    rest.rsplit('@').next().unwrap_or(rest).to_owned()
}

/// `seed` with its host and port replaced by `addr` (scheme and credentials kept, no db).
fn url_for(seed: &str, addr: &str) -> String {
    let (scheme, rest) = seed.split_once("://").unwrap_or(("redis", seed));
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once('@') {
        Some((creds, _)) => format!("{scheme}://{creds}@{addr}"),
        None => format!("{scheme}://{addr}"),
    }
}

/// The nodes of `CLUSTER NODES` output, `host:port`, that are not flagged `fail` (or without an
/// address, or in handshake).
pub fn parse_cluster_nodes(text: &str) -> Vec<String> {
    let mut nodes = vec![];
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(addr), Some(flags)) = (f.get(1), f.get(2)) else {
            continue;
        };
        let flags: Vec<&str> = flags.split(',').collect();
        if flags
            .iter()
            .any(|x| matches!(*x, "fail" | "noaddr" | "handshake"))
        {
            continue;
        }
        if flags.contains(&"master") || flags.contains(&"slave") {
            // `ip:port@cport[,hostname]`
            nodes.push(addr.split('@').next().unwrap_or(addr).to_owned());
        }
    }
    nodes.sort();
    nodes
}

fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// `INFO commandstats`: calls per command.
pub fn parse_commandstats(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cmdstat_") else {
            continue;
        };
        let Some((name, fields)) = rest.split_once(':') else {
            continue;
        };
        let calls = fields
            .split(',')
            .find_map(|f| f.strip_prefix("calls="))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        out.insert(name.to_owned(), calls);
    }
    out
}

impl RedisNodes {
    /// Connect to the server, or to every node of the cluster (found with `CLUSTER NODES` on
    /// the first seed that answers).
    pub async fn connect(mode: RedisMode, url: &str) -> anyhow::Result<RedisNodes> {
        match mode {
            RedisMode::Standalone => Ok(RedisNodes {
                mode,
                masters: vec![Node::connect(url.to_owned()).await?],
                replicas: vec![],
            }),
            RedisMode::Cluster => {
                let seeds: Vec<&str> = url
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                let mut last_err = None;
                for seed in &seeds {
                    match Self::from_seed(seed).await {
                        Ok(n) => return Ok(n),
                        Err(e) => last_err = Some(e),
                    }
                }
                Err(last_err.unwrap_or_else(|| anyhow::anyhow!("--redis: no seed URL")))
            }
        }
    }

    async fn from_seed(seed: &str) -> anyhow::Result<RedisNodes> {
        let node = Node::connect(seed.to_owned()).await?;
        let mut c = node.conn.clone();
        let text: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut c)
            .await
            .with_context(|| format!("CLUSTER NODES at {seed} (is it a cluster node?)"))?;
        let mut out = RedisNodes {
            mode: RedisMode::Cluster,
            masters: vec![],
            replicas: vec![],
        };
        // Each node's role as the node itself gives it (`INFO replication`): the seed's view
        // may lag just after the cluster was made (a replica still flagged master there), and
        // a replica counted as a master would add the replication stream to every figure.
        for a in parse_cluster_nodes(&text) {
            let node = Node::connect(url_for(seed, &a)).await?;
            let info = node.info("replication").await?;
            match info_field(&info, "role") {
                Some("master") => out.masters.push(node),
                Some("slave") => out.replicas.push(node),
                other => anyhow::bail!("Redis at {a}: role {other:?}"),
            }
        }
        anyhow::ensure!(
            !out.masters.is_empty(),
            "CLUSTER NODES at {seed}: no master"
        );
        Ok(out)
    }

    /// Fail unless every master has at least `n` replicas connected (`--redis-wait-replicas`:
    /// otherwise every commit would time out).
    pub async fn ensure_replicas(&self, n: u32) -> anyhow::Result<()> {
        if n == 0 {
            return Ok(());
        }
        for m in &self.masters {
            let info = m.info("replication").await?;
            let connected: u32 = info_field(&info, "connected_slaves")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            anyhow::ensure!(
                connected >= n,
                "--redis-wait-replicas {n}: Redis at {} has {connected} replica(s) connected",
                m.addr
            );
        }
        Ok(())
    }

    /// `INFO commandstats`, calls per command, summed over the masters.
    pub async fn commandstats(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for m in &self.masters {
            for (cmd, calls) in parse_commandstats(&m.info("commandstats").await?) {
                *out.entry(cmd).or_default() += calls;
            }
        }
        Ok(out)
    }

    /// A numeric `INFO <section>` field, summed over the masters (0 where missing).
    pub async fn info_sum(&self, section: &str, field: &str) -> anyhow::Result<u64> {
        let mut total = 0;
        for m in &self.masters {
            total += info_field(&m.info(section).await?, field)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
        Ok(total)
    }

    /// Keys matching `pattern`, over the masters.
    pub async fn count_keys(&self, pattern: &str) -> anyhow::Result<u64> {
        let mut n = 0u64;
        for m in &self.masters {
            let mut conn = m.conn.clone();
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(5000)
                    .query_async(&mut conn)
                    .await?;
                n += keys.len() as u64;
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(n)
    }

    /// `MEMORY USAGE key SAMPLES 0` on the master that owns `key` (the others answer `MOVED`).
    pub async fn memory_usage(&self, key: &str) -> anyhow::Result<Option<u64>> {
        for m in &self.masters {
            let mut conn = m.conn.clone();
            let r: redis::RedisResult<Option<u64>> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(0)
                .query_async(&mut conn)
                .await;
            match r {
                Err(e) if e.redirect_node().is_some() => continue,
                other => return Ok(other?),
            }
        }
        anyhow::bail!("MEMORY USAGE {key}: no master owns it")
    }

    /// The URLs to run `MONITOR` on: the server, or every master.
    pub fn monitor_urls(&self) -> Vec<String> {
        self.masters.iter().map(|m| m.url.clone()).collect()
    }

    /// Cluster mode: the redis-server processes (`INFO server` `process_id`), named by role
    /// (masters and replicas are each summed under one name). Empty in standalone mode: the
    /// server's pid is `REDIS_PID` ([`crate::stats::infra_pids`]).
    pub async fn cluster_pids(&self) -> anyhow::Result<Vec<(String, u32)>> {
        let mut out = Vec::new();
        if self.mode != RedisMode::Cluster {
            return Ok(out);
        }
        let roles = [
            (
                format!("redis-server (cluster: {} masters)", self.masters.len()),
                &self.masters,
            ),
            (
                format!("redis-server (cluster: {} replicas)", self.replicas.len()),
                &self.replicas,
            ),
        ];
        for (name, nodes) in roles {
            for n in nodes.iter() {
                let info = n.info("server").await?;
                let pid = info_field(&info, "process_id")
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("INFO server of {}: no process_id", n.addr))?;
                out.push((name.clone(), pid));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes() {
        let text = "\
07c3 127.0.0.1:30004@31004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@31003,host master - 0 1426238318243 3 connected 10923-16383
6ec2 127.0.0.1:30005@31005 slave,fail 67ed 0 1426238316232 5 connected
e7d1 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
aaaa 127.0.0.1:30006@31006 master,fail - 0 0 1 disconnected
";
        assert_eq!(
            parse_cluster_nodes(text),
            vec![
                "127.0.0.1:30001",
                "127.0.0.1:30002",
                "127.0.0.1:30003",
                "127.0.0.1:30004"
            ]
        );
    }

    #[test]
    fn urls() {
        assert_eq!(host_port("redis://127.0.0.1:6380"), "127.0.0.1:6380");
        assert_eq!(host_port("redis://u:p@h:1/0"), "h:1");
        assert_eq!(url_for("redis://u:p@h:1/0", "x:2"), "redis://u:p@x:2");
        assert_eq!(url_for("rediss://h:1", "x:2"), "rediss://x:2");
    }

    #[test]
    fn commandstats() {
        let t =
            "# Commandstats\r\ncmdstat_evalsha:calls=12,usec=3\r\ncmdstat_wait:calls=4,usec=1\r\n";
        let c = parse_commandstats(t);
        assert_eq!(c.get("evalsha"), Some(&12));
        assert_eq!(c.get("wait"), Some(&4));
    }
}
