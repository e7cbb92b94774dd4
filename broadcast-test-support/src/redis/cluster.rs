//! A Redis Cluster of [`RedisServer`] children, and where its slots live.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fred::prelude::{FromValue, Value};
use tracing::{debug, info};

use super::{Mode, Options, RedisServer, TlsOptions, command};
use crate::env::{current_test_name, locate_binary};
use crate::error::{HarnessError, io_err};
use crate::ports::LOOPBACK;

/// How long `redis-cli --cluster create` plus convergence to `cluster_state:ok` may take.
pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);
/// Number of masters in a [`RedisCluster`].
pub const CLUSTER_MASTERS: usize = 3;

/// A 3-master, no-replica Redis Cluster of [`RedisServer`] children.
///
/// Dropping it stops all nodes.
#[derive(Debug)]
pub struct RedisCluster {
    servers: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts 3 cluster-enabled servers on free ports, joins them with
    /// `redis-cli --cluster create`, and waits until every node reports
    /// `cluster_state:ok`. `Ok(None)`: `redis-server` or `redis-cli` is absent
    /// and not CI (skip message printed).
    pub async fn start() -> Result<Option<RedisCluster>, HarnessError> {
        Self::start_with(None).await
    }

    /// Like [`RedisCluster::start`], serving TLS only: clients, the cluster
    /// bus (`--tls-cluster yes`) and `redis-cli --cluster create` all use
    /// the certificates of `tls`, and [`RedisCluster::urls`] are `rediss://`.
    /// [`cluster_slots`], [`slot_owner`] and [`RedisCluster::command`] speak
    /// plaintext and do not work on it.
    pub async fn start_tls(tls: TlsOptions) -> Result<Option<RedisCluster>, HarnessError> {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<TlsOptions>) -> Result<Option<RedisCluster>, HarnessError> {
        let test_name = current_test_name();
        if locate_binary("redis-server", &test_name)?.is_none() {
            return Ok(None);
        }
        let Some(cli) = locate_binary("redis-cli", &test_name)? else {
            return Ok(None);
        };
        let started = Instant::now();
        let mut servers = Vec::with_capacity(CLUSTER_MASTERS);
        let options = Options {
            args: match tls {
                Some(_) => ["--tls-cluster", "yes", "--tls-replication", "yes"]
                    .map(String::from)
                    .to_vec(),
                None => Vec::new(),
            },
            tls: tls.clone(),
            ..Options::default()
        };
        for _ in 0..CLUSTER_MASTERS {
            match RedisServer::start_mode(Mode::Cluster, options.clone(), &test_name).await? {
                Some(server) => servers.push(server),
                None => return Ok(None),
            }
        }
        let cluster = RedisCluster { servers };
        cluster.create(&cli, tls.as_ref()).await?;
        cluster.wait_ok(CLUSTER_TIMEOUT).await?;
        info!(ports = ?cluster.ports(), elapsed = ?started.elapsed(), "redis cluster ready");
        Ok(Some(cluster))
    }

    async fn create(&self, cli: &Path, tls: Option<&TlsOptions>) -> Result<(), HarnessError> {
        let mut cmd = tokio::process::Command::new(cli);
        if let Some(tls) = tls {
            let c = &tls.certs;
            cmd.arg("--tls")
                .arg("--cacert")
                .arg(c.ca())
                .arg("--cert")
                .arg(c.client_cert())
                .arg("--key")
                .arg(c.client_key());
        }
        cmd.arg("--cluster").arg("create");
        for port in self.ports() {
            cmd.arg(format!("{LOOPBACK}:{port}"));
        }
        cmd.args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(CLUSTER_TIMEOUT, cmd.output())
            .await
            .map_err(|_| HarnessError::Timeout {
                what: "running redis-cli --cluster create".into(),
                timeout: CLUSTER_TIMEOUT,
            })?
            .map_err(io_err(format!(
                "running {} --cluster create",
                cli.display()
            )))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() || stdout.contains("[ERR]") {
            return Err(HarnessError::ClusterCreate {
                status: output.status.to_string(),
                stdout,
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        debug!("redis-cli --cluster create:\n{stdout}");
        Ok(())
    }

    /// Waits until every node's `CLUSTER INFO` reports `cluster_state:ok`, all
    /// 16384 slots assigned and all 3 nodes known (e.g. after restarting a node).
    pub async fn wait_ok(&self, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        for server in &self.servers {
            let port = server.port();
            loop {
                let info: Result<String, _> = server.command(["CLUSTER", "INFO"]).await;
                let last_info = match info {
                    Ok(text) => {
                        let known = format!("cluster_known_nodes:{CLUSTER_MASTERS}");
                        let wanted = ["cluster_state:ok", "cluster_slots_assigned:16384", &known];
                        if wanted
                            .iter()
                            .all(|want| text.lines().any(|l| l.trim() == *want))
                        {
                            break;
                        }
                        text
                    }
                    Err(e) => e.to_string(),
                };
                if Instant::now() >= deadline {
                    return Err(HarnessError::ClusterNotReady {
                        timeout,
                        port,
                        last_info,
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    fn ports(&self) -> Vec<u16> {
        self.servers.iter().map(RedisServer::port).collect()
    }

    /// `("127.0.0.1", port)` of each master.
    pub fn nodes(&self) -> Vec<(String, u16)> {
        self.servers
            .iter()
            .map(|s| (LOOPBACK.to_owned(), s.port()))
            .collect()
    }

    /// `redis://127.0.0.1:{port}` (`rediss://` with TLS) of each master.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(RedisServer::url).collect()
    }

    /// The node servers (to inspect logs or PIDs).
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// The node servers, mutably (to kill or restart a node).
    pub fn servers_mut(&mut self) -> &mut [RedisServer] {
        &mut self.servers
    }

    /// Runs one command on the cluster (fred routes it to the slot's owner and
    /// follows `MOVED` redirects); see [`command()`](super::command()).
    pub async fn command<R, A>(&self, args: impl IntoIterator<Item = A>) -> Result<R, HarnessError>
    where
        R: FromValue,
        A: Into<Value>,
    {
        let args = args.into_iter().map(Into::into).collect();
        command::on_cluster(&self.ports(), args).await
    }
}

/// A range of hash slots and the client port of the master that serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRange {
    /// First slot of the range.
    pub first: i64,
    /// Last slot of the range (inclusive).
    pub last: i64,
    /// Client port of the master.
    pub port: u16,
}

/// The slot ranges of the cluster, as `CLUSTER SLOTS` on node `port` reports them.
pub async fn cluster_slots(port: u16) -> Result<Vec<SlotRange>, HarnessError> {
    let reply: Value = command::on_port(
        port,
        vec!["CLUSTER".into(), "SLOTS".into()],
        command::CMD_TIMEOUT,
    )
    .await?;
    let Value::Array(ranges) = reply else {
        return Err(HarnessError::Protocol(format!(
            "CLUSTER SLOTS is not an array: {reply:?}"
        )));
    };
    ranges
        .iter()
        .map(|range| {
            match range {
                Value::Array(items) => match items.as_slice() {
                    [
                        Value::Integer(first),
                        Value::Integer(last),
                        Value::Array(master),
                        ..,
                    ] => {
                        let port = master
                            .get(1)
                            .and_then(Value::as_i64)
                            .and_then(|p| u16::try_from(p).ok());
                        port.map(|port| SlotRange {
                            first: *first,
                            last: *last,
                            port,
                        })
                    }
                    _ => None,
                },
                _ => None,
            }
            .ok_or_else(|| HarnessError::Protocol(format!("CLUSTER SLOTS range {range:?}")))
        })
        .collect()
}

/// The port of the master that owns `key`, asking node `port` for the key's
/// slot (`CLUSTER KEYSLOT`) and looking it up in `ranges`.
pub async fn slot_owner(port: u16, ranges: &[SlotRange], key: &str) -> Result<u16, HarnessError> {
    let slot: i64 = command::on_port(
        port,
        vec!["CLUSTER".into(), "KEYSLOT".into(), key.into()],
        command::CMD_TIMEOUT,
    )
    .await?;
    ranges
        .iter()
        .find(|r| (r.first..=r.last).contains(&slot))
        .map(|r| r.port)
        .ok_or_else(|| HarnessError::Protocol(format!("slot {slot} has no owner")))
}
