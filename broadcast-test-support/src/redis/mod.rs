//! Real `redis-server` processes on free loopback ports, for integration
//! tests and the end-to-end bench.
//!
//! Tests never touch the Redis on `127.0.0.1:6379`: every [`RedisServer`] is a
//! child process of the test, bound to `127.0.0.1` only, on a free port, with
//! persistence off (`--save ""`, `--appendonly no`), `--daemonize no`, and its
//! working directory and log file in a fresh temp dir. Dropping the handle
//! SIGKILLs and reaps the process and removes the temp dir.
//!
//! # Skipping when `redis-server` is absent
//!
//! [`RedisServer::start`] and [`RedisCluster::start`] return `Ok(None)` when
//! the binary (`redis-server`, and for the cluster also `redis-cli`) is not on
//! `PATH`, under the skip policy of [`crate::env`] (loud skip outside CI, an
//! error in CI). The test then returns early:
//!
//! ```no_run
//! # use broadcast_test_support::redis::{HarnessError, RedisServer};
//! # async fn demo() -> Result<(), HarnessError> {
//! let Some(server) = RedisServer::start().await? else { return Ok(()) };
//! let url = server.url(); // "redis://127.0.0.1:{port}"
//! # let _ = url;
//! # Ok(())
//! # }
//! ```
//!
//! The `<test>` name of the skip line is the current thread's name, which
//! libtest sets to the test's path.
//!
//! # Talking to the servers
//!
//! Through fred, the client broadcast-core uses: [`command`] on a URL,
//! [`RedisServer::command`] and [`RedisCluster::command`] (which follows
//! `MOVED` redirects).
//!
//! # Tokio
//!
//! Needs a tokio runtime (fred's connections and `redis-cli` run on it). The
//! server process itself is a [`std::process::Child`] so that `Drop` can kill
//! *and* reap it synchronously, without a runtime.

mod cluster;
mod command;
mod tls;

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fred::prelude::{FromValue, Value};
use fred::types::config::TlsConfig;
use tracing::{debug, info, warn};

pub use self::cluster::{
    CLUSTER_MASTERS, CLUSTER_TIMEOUT, RedisCluster, SlotRange, cluster_slots, slot_owner,
};
pub use self::command::{CMD_TIMEOUT, command};
pub use self::tls::{AuthClients, TestCerts, TlsOptions};
use crate::env::{TempDir, current_test_name, locate_binary};
pub use crate::error::HarnessError;
use crate::error::io_err;
use crate::ports;
pub use crate::ports::{LOOPBACK, free_port};
use crate::process::die_with_parent;

/// How long a server gets to answer `PING` after being spawned.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Redis cluster bus port offset (`port + 10000`).
const CLUSTER_BUS_OFFSET: u16 = 10_000;
/// Attempts with a fresh port when the chosen one got taken before redis bound it.
const PORT_ATTEMPTS: u32 = 5;
/// Lines of each log file included in error messages.
const LOG_TAIL_LINES: usize = 30;
/// Prefix of the servers' temp dirs.
const DIR_PREFIX: &str = "redis-harness";

/// How to start a [`RedisServer`] beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra `redis-server` arguments, appended (e.g. `["--maxmemory", "64mb"]`).
    pub args: Vec<String>,
    /// Linux: the kernel SIGKILLs the server when the thread that spawned it
    /// exits. For a program that may itself be SIGKILLed before `Drop` runs
    /// (the bench, which spawns from its only runtime thread); not for tests,
    /// whose servers may be spawned from a runtime worker thread that exits
    /// first.
    pub die_with_parent: bool,
    /// Serve TLS only (`--port 0 --tls-port N`): [`RedisServer::url`] is
    /// then `rediss://`, and the harness talks to the server over TLS with
    /// the client certificate. Standalone servers only.
    pub tls: Option<TlsOptions>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Standalone,
    Cluster,
}

impl Mode {
    /// The second port a server of this mode needs, as an offset.
    fn companion_port(self) -> Option<u16> {
        match self {
            Mode::Standalone => None,
            Mode::Cluster => Some(CLUSTER_BUS_OFFSET),
        }
    }
}

/// A `redis-server` child process on a free loopback port.
///
/// Dropping it SIGKILLs and reaps the process, removes its temp dir and frees
/// its port reservation.
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    mode: Mode,
    extra_args: Vec<OsString>,
    die_with_parent: bool,
    tls: Option<TlsOptions>,
    /// The harness's own TLS settings for a TLS server.
    client_tls: Option<TlsConfig>,
    /// `ports[0]` is the client port; in cluster mode `ports[1]` is the bus port.
    ports: Vec<u16>,
    dir: TempDir,
    log_path: PathBuf,
    stdio_path: PathBuf,
    /// Byte offsets of the log files when the current process was spawned.
    log_offsets: (u64, u64),
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a standalone server on a free port and waits until it answers
    /// `PING`. `Ok(None)`: `redis-server` is absent and not CI (skip message
    /// printed), so the caller returns early.
    pub async fn start() -> Result<Option<RedisServer>, HarnessError> {
        Self::start_with_args(&[]).await
    }

    /// Like [`RedisServer::start`], with extra `redis-server` arguments appended
    /// (e.g. `["--maxmemory", "64mb"]`).
    pub async fn start_with_args(extra_args: &[&str]) -> Result<Option<RedisServer>, HarnessError> {
        Self::start_with(Options {
            args: extra_args.iter().map(|a| (*a).to_owned()).collect(),
            ..Options::default()
        })
        .await
    }

    /// Like [`RedisServer::start`], with [`Options`].
    pub async fn start_with(options: Options) -> Result<Option<RedisServer>, HarnessError> {
        Self::start_mode(Mode::Standalone, options, &current_test_name()).await
    }

    async fn start_mode(
        mode: Mode,
        options: Options,
        test_name: &str,
    ) -> Result<Option<RedisServer>, HarnessError> {
        let Some(binary) = locate_binary("redis-server", test_name)? else {
            return Ok(None);
        };
        let mut server = RedisServer::unspawned(binary, mode, options)?;
        let started = Instant::now();
        let mut last = None;
        for attempt in 1..=PORT_ATTEMPTS {
            ports::release(&mut server.ports);
            server.ports = ports::reserve(mode.companion_port())?;
            server.spawn()?;
            match server.await_startup(START_TIMEOUT).await {
                Ok(()) => {
                    info!(
                        port = server.port(),
                        pid = server.pid(),
                        elapsed = ?started.elapsed(),
                        "redis-server ready"
                    );
                    return Ok(Some(server));
                }
                Err(e @ HarnessError::PortInUse { .. }) => {
                    warn!(attempt, "redis-server port was taken, retrying: {e}");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(HarnessError::PortRetriesExhausted {
            attempts: PORT_ATTEMPTS,
            last: Box::new(
                last.unwrap_or_else(|| HarnessError::NoFreePort("no attempt was made".into())),
            ),
        })
    }

    /// A server with its temp dir, no port and no process yet.
    fn unspawned(binary: PathBuf, mode: Mode, options: Options) -> Result<Self, HarnessError> {
        let dir = TempDir::new(DIR_PREFIX)?;
        let client_tls = match &options.tls {
            Some(tls) => Some(tls.certs.client_tls()?),
            None => None,
        };
        Ok(RedisServer {
            binary,
            mode,
            extra_args: options.args.into_iter().map(OsString::from).collect(),
            die_with_parent: options.die_with_parent,
            tls: options.tls,
            client_tls,
            ports: Vec::new(),
            log_path: dir.path().join("redis.log"),
            stdio_path: dir.path().join("stdio.log"),
            dir,
            log_offsets: (0, 0),
            child: None,
        })
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.ports.first().copied().unwrap_or(0)
    }

    /// `redis://127.0.0.1:{port}`, or `rediss://` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://{LOOPBACK}:{}", self.port())
    }

    /// Runs one command on this server; see [`command()`].
    pub async fn command<R, A>(&self, args: impl IntoIterator<Item = A>) -> Result<R, HarnessError>
    where
        R: FromValue,
        A: Into<Value>,
    {
        let args = args.into_iter().map(Into::into).collect();
        command::on_port_tls(self.port(), self.client_tls.as_ref(), args, CMD_TIMEOUT).await
    }

    /// PID of the running process, `None` after [`RedisServer::kill`].
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's temp dir (working dir, logs, `nodes.conf`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of the redis log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the redis log (and of stdout/stderr, if any).
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = format!(
            "--- {} ---\n{}",
            self.log_path.display(),
            last_lines(&read_from(&self.log_path, 0), lines)
        );
        let stdio = read_from(&self.stdio_path, 0);
        if !stdio.trim().is_empty() {
            out.push_str("\n--- stdout/stderr ---\n");
            out.push_str(&last_lines(&stdio, lines));
        }
        out
    }

    fn args(&self) -> Vec<OsString> {
        let mut args = match &self.tls {
            Some(tls) => tls.args(self.port()),
            None => vec!["--port".into(), self.port().to_string().into()],
        };
        args.extend(
            [
                "--bind",
                LOOPBACK,
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ]
            .iter()
            .map(OsString::from),
        );
        args.push("--dir".into());
        args.push(self.dir.path().into());
        args.push("--logfile".into());
        args.push(self.log_path.clone().into());
        if self.mode == Mode::Cluster {
            args.extend(["--cluster-enabled", "yes", "--cluster-config-file"].map(OsString::from));
            args.push(self.dir.path().join("nodes.conf").into());
            args.extend(["--cluster-node-timeout", "5000"].map(OsString::from));
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    fn spawn(&mut self) -> Result<(), HarnessError> {
        self.log_offsets = (file_len(&self.log_path), file_len(&self.stdio_path));
        let stdout = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stdio_path)
            .map_err(io_err(format!("opening {}", self.stdio_path.display())))?;
        let stderr = stdout
            .try_clone()
            .map_err(io_err("duplicating the stdio log handle"))?;
        let mut cmd = Command::new(&self.binary);
        cmd.args(self.args())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        if self.die_with_parent {
            die_with_parent(&mut cmd);
        }
        let child = cmd
            .spawn()
            .map_err(io_err(format!("spawning {}", self.binary.display())))?;
        debug!(port = self.port(), pid = child.id(), dir = %self.dir.path().display(), "spawned redis-server");
        self.child = Some(child);
        Ok(())
    }

    /// Output of the current process since it was spawned.
    fn log_since_spawn(&self) -> String {
        let mut text = read_from(&self.log_path, self.log_offsets.0);
        text.push_str(&read_from(&self.stdio_path, self.log_offsets.1));
        text
    }

    /// Waits until the just-spawned child answers `PING` on our port *and* is
    /// the process answering (so another Redis that grabbed the port does not
    /// count). Classifies an early exit as [`HarnessError::PortInUse`] or
    /// [`HarnessError::ExitedEarly`]; on timeout kills the child.
    async fn await_startup(&mut self, timeout: Duration) -> Result<(), HarnessError> {
        let port = self.port();
        let deadline = Instant::now() + timeout;
        loop {
            let Some(child) = self.child.as_mut() else {
                return Err(HarnessError::ExitedEarly {
                    port,
                    status: "not running".into(),
                    log_tail: self.log_tail(LOG_TAIL_LINES),
                });
            };
            let pid = child.id();
            if let Some(status) = child
                .try_wait()
                .map_err(io_err("polling redis-server for exit"))?
            {
                self.child = None;
                let log_tail = self.log_tail(LOG_TAIL_LINES);
                if self.log_since_spawn().contains("Address already in use") {
                    return Err(HarnessError::PortInUse { port, log_tail });
                }
                return Err(HarnessError::ExitedEarly {
                    port,
                    status: status.to_string(),
                    log_tail,
                });
            }
            if answering_pid(port, self.client_tls.as_ref(), Duration::from_millis(500)).await
                == Some(pid)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.reap_now();
                return Err(HarnessError::NotReady {
                    port,
                    timeout,
                    log_tail: self.log_tail(LOG_TAIL_LINES),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until something answers `PING` on the port.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if ping_once(
                self.port(),
                self.client_tls.as_ref(),
                left.min(Duration::from_millis(500)),
            )
            .await
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::NotReady {
                    port: self.port(),
                    timeout,
                    log_tail: self.log_tail(LOG_TAIL_LINES),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILLs the process and reaps it. The port stays reserved for
    /// [`RedisServer::restart`]. No-op if already killed.
    pub async fn kill(&mut self) -> Result<(), HarnessError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id();
        // Errors only if it already exited, which the reaping below handles.
        let _ = child.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Ok(None) => {
                    child
                        .wait()
                        .map_err(io_err(format!("reaping redis-server pid {pid}")))?;
                    break;
                }
                Err(e) => return Err(io_err(format!("reaping redis-server pid {pid}"))(e)),
            }
        }
        debug!(port = self.port(), pid, "killed redis-server");
        Ok(())
    }

    /// Starts the server again on the same port (killing it first if it is
    /// running) and waits until it answers `PING`. Data is not kept (no
    /// persistence); a cluster node keeps its identity and slots via `nodes.conf`.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill().await?;
        let started = Instant::now();
        let mut last = None;
        for attempt in 1..=PORT_ATTEMPTS {
            self.spawn()?;
            match self.await_startup(START_TIMEOUT).await {
                Ok(()) => {
                    info!(port = self.port(), pid = self.pid(), elapsed = ?started.elapsed(), "redis-server restarted");
                    return Ok(());
                }
                Err(e @ HarnessError::PortInUse { .. }) => {
                    warn!(attempt, "port still in use on restart, retrying: {e}");
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(HarnessError::PortRetriesExhausted {
            attempts: PORT_ATTEMPTS,
            last: Box::new(
                last.unwrap_or_else(|| HarnessError::NoFreePort("no attempt was made".into())),
            ),
        })
    }

    /// Synchronous SIGKILL + reap (for `Drop` and startup timeouts).
    fn reap_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "redis-server on port {} at test failure:\n{}",
                self.port(),
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        self.reap_now();
        // The temp dir goes with the `dir` field, after the process.
        ports::release(&mut self.ports);
    }
}

/// Whether something answers `PING` on the port within `timeout`.
async fn ping_once(port: u16, tls: Option<&TlsConfig>, timeout: Duration) -> bool {
    let reply: Result<String, _> =
        command::on_port_tls(port, tls, vec![Value::from("PING")], timeout).await;
    reply.is_ok_and(|r| r == "PONG")
}

/// `process_id` from `INFO server`, if the server answers within `timeout`:
/// which process answers, so that another Redis that took the port does not
/// pass for the one just spawned.
async fn answering_pid(port: u16, tls: Option<&TlsConfig>, timeout: Duration) -> Option<u32> {
    let args = vec!["INFO".into(), "server".into()];
    let info: String = command::on_port_tls(port, tls, args, timeout).await.ok()?;
    info.lines().find_map(|line| {
        line.strip_prefix("process_id:")
            .and_then(|v| v.trim().parse().ok())
    })
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// Contents of `path` from byte `offset` on (lossy UTF-8), empty if unreadable.
fn read_from(path: &Path, offset: u64) -> String {
    let mut out = Vec::new();
    if let Ok(mut file) = File::open(path)
        && file.seek(SeekFrom::Start(offset)).is_ok()
    {
        let _ = file.read_to_end(&mut out);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn taken_port_is_detected_as_port_in_use() {
        let Some(first) = RedisServer::start().await.unwrap() else {
            return;
        };
        let mut second =
            RedisServer::unspawned(first.binary.clone(), Mode::Standalone, Options::default())
                .unwrap();
        // Spawn on the port `first` holds: `first` answers PING, but with
        // another pid, so this must end as PortInUse, not as "ready". Not
        // reserved: dropping `second` must not free `first`'s port.
        second.ports = vec![first.port()];
        second.spawn().unwrap();
        let err = second.await_startup(START_TIMEOUT).await.unwrap_err();
        second.ports.clear();
        assert!(matches!(err, HarnessError::PortInUse { .. }), "{err}");
        assert!(err.to_string().contains("Address already in use"), "{err}");
        assert!(ports::is_reserved(first.port()));
    }

    #[test]
    fn log_tail_keeps_last_lines() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("a", 5), "a");
    }
}
