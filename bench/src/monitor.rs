//! Which service sent which Redis commands: a `MONITOR` connection during a short attribution
//! run. Every command a client sends is attributed to the service whose key prefix
//! (`{bos:`, `{bcs:`) its arguments carry; commands without keys (PING) go to the service the
//! same client connection otherwise talks for. Commands run inside Lua scripts (`[0 lua]`) are
//! not round trips: they are counted apart, under [`INSIDE_SCRIPTS`].

use std::collections::{BTreeMap, HashMap};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::redis_nodes::host_port;

/// The pseudo-service of commands run inside Lua scripts.
pub const INSIDE_SCRIPTS: &str = "inside-scripts";

/// Commands per service and command name.
pub type Attribution = BTreeMap<String, BTreeMap<String, u64>>;

/// A running monitor.
pub struct Monitor {
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<Attribution>,
}

/// `"EVALSHA" "sha" "3" "{bos:b01}:state:x"` → the quoted arguments.
fn args(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        // Find the closing quote (skip escaped ones).
        let mut end = None;
        let bytes = after.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => {
                    end = Some(i);
                    break;
                }
                _ => i += 1,
            }
        }
        let Some(end) = end else { break };
        out.push(&after[..end]);
        rest = &after[end + 1..];
    }
    out
}

impl Monitor {
    pub async fn start(redis_url: &str) -> anyhow::Result<Monitor> {
        let mut stream = TcpStream::connect(host_port(redis_url)).await?;
        stream.write_all(b"MONITOR\r\n").await?;
        let mut lines = BufReader::new(stream).lines();
        let first = lines.next_line().await?.unwrap_or_default();
        anyhow::ensure!(first.starts_with("+OK"), "MONITOR answered {first:?}");
        let (stop, mut stopped) = oneshot::channel::<()>();
        let scripts = huleedu_store::script_names();
        let done = tokio::spawn(async move {
            // client address → service; per client, per command counts.
            let mut owner: HashMap<String, String> = HashMap::new();
            let mut per_client: HashMap<String, BTreeMap<String, u64>> = HashMap::new();
            loop {
                let line = tokio::select! {
                    _ = &mut stopped => break,
                    l = lines.next_line() => match l { Ok(Some(l)) => l, _ => break },
                };
                let Some(open) = line.find('[') else { continue };
                let Some(close) = line[open..].find(']') else {
                    continue;
                };
                let client = &line[open + 1..open + close];
                let addr = if client.ends_with("lua") {
                    // Run by a script: not a round trip; counted apart for the cross-check
                    // with INFO commandstats (which counts these too).
                    INSIDE_SCRIPTS.to_owned()
                } else {
                    client.split_whitespace().nth(1).unwrap_or("").to_owned()
                };
                let a = args(&line[open + close..]);
                let Some(cmd) = a.first() else { continue };
                let mut cmd = cmd.to_ascii_lowercase();
                // Which of the store's scripts: `evalsha (commit)`, `evalsha (relay pump)`, ...
                if cmd == "evalsha" {
                    if let Some(name) = a
                        .get(1)
                        .and_then(|sha| scripts.iter().find(|(h, _)| h == sha))
                    {
                        cmd = format!("evalsha ({})", name.1);
                    }
                }
                if matches!(cmd.as_str(), "monitor" | "info" | "scan") {
                    continue;
                }
                if addr != INSIDE_SCRIPTS && !owner.contains_key(&addr) {
                    if let Some(svc) = a.iter().find_map(|x| {
                        if x.starts_with("{bos:") {
                            Some("batch-orchestrator")
                        } else if x.starts_with("{bcs:") {
                            Some("batch-conductor")
                        } else {
                            None
                        }
                    }) {
                        owner.insert(addr.clone(), svc.to_owned());
                    }
                }
                *per_client.entry(addr).or_default().entry(cmd).or_default() += 1;
            }
            let mut out: Attribution = BTreeMap::new();
            for (addr, cmds) in per_client {
                let svc = if addr == INSIDE_SCRIPTS {
                    INSIDE_SCRIPTS.to_owned()
                } else {
                    owner.get(&addr).cloned().unwrap_or_else(|| "other".into())
                };
                let e = out.entry(svc).or_default();
                for (c, n) in cmds {
                    *e.entry(c).or_default() += n;
                }
            }
            out
        });
        Ok(Monitor { stop, done })
    }

    pub async fn finish(self) -> Attribution {
        let _ = self.stop.send(());
        self.done.await.unwrap_or_default()
    }
}

/// One monitor per server (a Redis Cluster's masters), their attributions summed.
pub struct Monitors(Vec<Monitor>);

impl Monitors {
    pub async fn start(redis_urls: &[String]) -> anyhow::Result<Monitors> {
        let mut v = Vec::with_capacity(redis_urls.len());
        for url in redis_urls {
            v.push(Monitor::start(url).await?);
        }
        Ok(Monitors(v))
    }

    pub async fn finish(self) -> Attribution {
        let mut out: Attribution = BTreeMap::new();
        for m in self.0 {
            for (svc, cmds) in m.finish().await {
                let e = out.entry(svc).or_default();
                for (c, n) in cmds {
                    *e.entry(c).or_default() += n;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_arguments() {
        let l = r#"1700000000.1 [0 127.0.0.1:5000] "EVALSHA" "ab\"c" "1" "{bos:b01}:state:x""#;
        let a = args(&l[l.find(']').unwrap()..]);
        assert_eq!(a, vec!["EVALSHA", "ab\\\"c", "1", "{bos:b01}:state:x"]);
    }
}
