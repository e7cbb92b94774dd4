//! Test harness that starts and stops real `redis-server` processes on free
//! loopback ports, for integration tests and benchmarks.
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
//! `PATH`, after printing a loud `=== SKIPPING <test>: ... ===` line straight
//! to stderr (not captured by libtest). The test then returns early:
//!
//! ```no_run
//! # use support::redis_server::{HarnessError, RedisServer};
//! # async fn demo() -> Result<(), HarnessError> {
//! let Some(server) = RedisServer::start().await? else { return Ok(()) };
//! let url = server.url(); // "redis://127.0.0.1:{port}"
//! # let _ = url;
//! # Ok(())
//! # }
//! ```
//!
//! When the environment variable `CI` is `true` (or `1`), a missing binary is
//! instead an error ([`HarnessError::MissingBinaryInCi`]), so the test fails.
//! The `<test>` name is the current thread's name, which libtest sets to the
//! test's path; [`redis_available`] takes the name explicitly.
//!
//! # Tokio
//!
//! Needs tokio features `rt`, `time`, `net`, `io-util` and `process` (the
//! latter only for running `redis-cli`); tests use `macros` too. The server
//! process itself is a [`std::process::Child`] so that `Drop` can kill *and*
//! reap it synchronously, without a runtime.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

/// The only address the harness binds servers to.
pub const LOOPBACK: &str = "127.0.0.1";
/// How long a server gets to answer `PING` after being spawned.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `redis-cli --cluster create` plus convergence to `cluster_state:ok` may take.
pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for one [`redis_cmd`] round trip (connect, send, read reply).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(5);
/// Number of masters in a [`RedisCluster`].
pub const CLUSTER_MASTERS: usize = 3;
/// Redis cluster bus port offset (`port + 10000`).
const CLUSTER_BUS_OFFSET: u16 = 10_000;
/// Attempts with a fresh port when the chosen one got taken before redis bound it.
const PORT_ATTEMPTS: u32 = 5;
/// Lines of each log file included in error messages.
const LOG_TAIL_LINES: usize = 30;
/// Ports that must never be handed out (the developer's / CI's shared Redis).
const FORBIDDEN_PORTS: [u16; 2] = [6379, 16379];

/// Errors of the Redis test harness.
///
/// `Debug` prints the same text as `Display`, so a test returning
/// `Result<(), HarnessError>` fails with a readable message and log tail.
#[derive(thiserror::Error)]
pub enum HarnessError {
    /// A required binary is missing from `PATH` while `CI=true`: must fail, not skip.
    #[error(
        "{binary} not found on PATH and CI=true: Redis integration tests must not be skipped in CI; install it (apt-get install redis-server)"
    )]
    MissingBinaryInCi {
        /// The binary that was looked for.
        binary: &'static str,
    },
    /// An I/O operation failed.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The chosen port was taken before `redis-server` could bind it.
    #[error(
        "redis-server could not bind 127.0.0.1:{port}: Address already in use; log tail:\n{log_tail}"
    )]
    PortInUse {
        /// The port that was taken.
        port: u16,
        /// Tail of the server's log files.
        log_tail: String,
    },
    /// Every attempt hit a port that was already in use.
    #[error("gave up starting redis-server after {attempts} attempts; last error: {last}")]
    PortRetriesExhausted {
        /// How many ports were tried.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        last: Box<HarnessError>,
    },
    /// `redis-server` exited while starting, for a reason other than a taken port.
    #[error(
        "redis-server on 127.0.0.1:{port} exited during startup ({status}); log tail:\n{log_tail}"
    )]
    ExitedEarly {
        /// The port it was started on.
        port: u16,
        /// Its exit status.
        status: String,
        /// Tail of the server's log files.
        log_tail: String,
    },
    /// The server did not answer `PING` in time.
    #[error(
        "redis-server on 127.0.0.1:{port} did not answer PING within {timeout:?}; log tail:\n{log_tail}"
    )]
    NotReady {
        /// The server's port.
        port: u16,
        /// How long the harness waited.
        timeout: Duration,
        /// Tail of the server's log files.
        log_tail: String,
    },
    /// An operation did not finish in time.
    #[error("timed out after {timeout:?} while {what}")]
    Timeout {
        /// What the harness was doing.
        what: String,
        /// The bound that was exceeded.
        timeout: Duration,
    },
    /// Malformed or unexpected RESP data.
    #[error("RESP protocol error: {0}")]
    Protocol(String),
    /// No usable free loopback port could be found.
    #[error("no free loopback port found: {0}")]
    NoFreePort(String),
    /// `redis-cli --cluster create` failed.
    #[error("redis-cli --cluster create failed ({status}):\nstdout:\n{stdout}\nstderr:\n{stderr}")]
    ClusterCreate {
        /// Exit status of `redis-cli`.
        status: String,
        /// Its standard output.
        stdout: String,
        /// Its standard error.
        stderr: String,
    },
    /// The cluster did not converge to `cluster_state:ok` in time.
    #[error(
        "cluster did not reach cluster_state:ok within {timeout:?}; last CLUSTER INFO from 127.0.0.1:{port}:\n{last_info}"
    )]
    ClusterNotReady {
        /// How long the harness waited.
        timeout: Duration,
        /// The node that was not ready.
        port: u16,
        /// Its last `CLUSTER INFO` reply (or the error getting it).
        last_info: String,
    },
}

impl std::fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
    let context = context.into();
    move |source| HarnessError::Io { context, source }
}

// ---------------------------------------------------------------------------
// Binary discovery and skip policy
// ---------------------------------------------------------------------------

/// Whether `CI` is set to `true` (case-insensitive) or `1`.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Checks that `redis-server` is on `PATH`.
///
/// `Ok(true)`: present. `Ok(false)`: absent and not CI; a loud
/// `=== SKIPPING {test_name}: ... ===` line was written to stderr and the
/// caller should return early. `Err`: absent and `CI=true`; the test must fail.
pub fn redis_available(test_name: &str) -> Result<bool, HarnessError> {
    Ok(locate_binary("redis-server", test_name)?.is_some())
}

/// Name of the running test (libtest names each test's thread after it).
fn current_test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned()
}

fn locate_binary(binary: &'static str, test_name: &str) -> Result<Option<PathBuf>, HarnessError> {
    locate_binary_in(
        binary,
        std::env::var_os("PATH").as_deref(),
        is_ci(),
        test_name,
    )
}

fn locate_binary_in(
    binary: &'static str,
    path_var: Option<&OsStr>,
    ci: bool,
    test_name: &str,
) -> Result<Option<PathBuf>, HarnessError> {
    if let Some(found) = path_var.and_then(|p| find_on_path(binary, p)) {
        return Ok(Some(found));
    }
    if ci {
        return Err(HarnessError::MissingBinaryInCi { binary });
    }
    let msg = format!(
        "=== SKIPPING {test_name}: {binary} not found on PATH; install it (apt-get install redis-server) ==="
    );
    // Straight to the process's stderr: libtest captures only `eprintln!`.
    let _ = writeln!(io::stderr().lock(), "{msg}");
    warn!("{msg}");
    Ok(None)
}

fn find_on_path(binary: &str, path_var: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path_var)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

// ---------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------

/// Ports held by live harness servers of this process (including killed ones,
/// whose port stays reserved for `restart`).
fn reserved_ports() -> MutexGuard<'static, HashSet<u16>> {
    static RESERVED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    RESERVED
        .get_or_init(|| Mutex::new(HashSet::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn os_free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .map_err(io_err("binding 127.0.0.1:0 to find a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io_err(
            "reading the local address of a 127.0.0.1:0 listener",
        ))?
        .port();
    Ok(port)
}

fn port_is_bindable(port: u16) -> bool {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Returns a currently free port on 127.0.0.1 (bind port 0, read it, drop the
/// listener). Never 6379 and never a port held by a live harness server.
pub fn free_port() -> Result<u16, HarnessError> {
    for _ in 0..64 {
        let port = os_free_port()?;
        if !FORBIDDEN_PORTS.contains(&port) && !reserved_ports().contains(&port) {
            return Ok(port);
        }
    }
    Err(HarnessError::NoFreePort(
        "64 candidates were all reserved".into(),
    ))
}

/// Picks and reserves the ports a server needs: its own port, plus the cluster
/// bus port (`port + 10000`) in cluster mode.
fn reserve_ports(mode: Mode) -> Result<Vec<u16>, HarnessError> {
    for _ in 0..128 {
        let port = free_port()?;
        let mut ports = vec![port];
        if mode == Mode::Cluster {
            let Some(bus) = port.checked_add(CLUSTER_BUS_OFFSET) else {
                continue;
            };
            if FORBIDDEN_PORTS.contains(&bus) || !port_is_bindable(bus) {
                continue;
            }
            ports.push(bus);
        }
        let mut reserved = reserved_ports();
        if ports.iter().any(|p| reserved.contains(p)) {
            continue;
        }
        reserved.extend(ports.iter().copied());
        return Ok(ports);
    }
    Err(HarnessError::NoFreePort(
        "128 candidates were reserved, unusable or had a busy cluster bus port".into(),
    ))
}

fn release_ports(ports: &mut Vec<u16>) {
    if ports.is_empty() {
        return;
    }
    let mut reserved = reserved_ports();
    for port in ports.drain(..) {
        reserved.remove(&port);
    }
}

// ---------------------------------------------------------------------------
// Temp dirs and logs
// ---------------------------------------------------------------------------

fn make_temp_dir() -> Result<PathBuf, HarnessError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    for _ in 0..100 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!(
            "redis-harness-{}-{n}-{nanos:08x}",
            std::process::id()
        ));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(format!("creating {}", dir.display()))(e)),
        }
    }
    Err(HarnessError::Io {
        context: format!("creating a fresh temp dir under {}", base.display()),
        source: io::Error::new(io::ErrorKind::AlreadyExists, "100 names already taken"),
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

// ---------------------------------------------------------------------------
// RedisServer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Standalone,
    Cluster,
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
    /// `ports[0]` is the client port; in cluster mode `ports[1]` is the bus port.
    ports: Vec<u16>,
    dir: PathBuf,
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
        let extra = extra_args.iter().map(OsString::from).collect();
        Self::start_mode(Mode::Standalone, extra, &current_test_name()).await
    }

    async fn start_mode(
        mode: Mode,
        extra_args: Vec<OsString>,
        test_name: &str,
    ) -> Result<Option<RedisServer>, HarnessError> {
        let Some(binary) = locate_binary("redis-server", test_name)? else {
            return Ok(None);
        };
        let dir = make_temp_dir()?;
        let mut server = RedisServer {
            binary,
            mode,
            extra_args,
            ports: Vec::new(),
            log_path: dir.join("redis.log"),
            stdio_path: dir.join("stdio.log"),
            dir,
            log_offsets: (0, 0),
            child: None,
        };
        let started = Instant::now();
        let mut last = None;
        for attempt in 1..=PORT_ATTEMPTS {
            release_ports(&mut server.ports);
            server.ports = reserve_ports(mode)?;
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

    /// The client port.
    pub fn port(&self) -> u16 {
        self.ports.first().copied().unwrap_or(0)
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://{LOOPBACK}:{}", self.port())
    }

    /// PID of the running process, `None` after [`RedisServer::kill`].
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's temp dir (working dir, logs, `nodes.conf`).
    pub fn dir(&self) -> &Path {
        &self.dir
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
        let mut args: Vec<OsString> = [
            "--port",
            &self.port().to_string(),
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
        .map(OsString::from)
        .collect();
        args.push("--dir".into());
        args.push(self.dir.clone().into());
        args.push("--logfile".into());
        args.push(self.log_path.clone().into());
        if self.mode == Mode::Cluster {
            args.extend(["--cluster-enabled", "yes", "--cluster-config-file"].map(OsString::from));
            args.push(self.dir.join("nodes.conf").into());
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
        let child = Command::new(&self.binary)
            .args(self.args())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(io_err(format!("spawning {}", self.binary.display())))?;
        debug!(port = self.port(), pid = child.id(), dir = %self.dir.display(), "spawned redis-server");
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
            if ping_once(port, Duration::from_millis(500)).await
                && server_pid(port).await == Some(pid)
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

    /// Waits until something answers `+PONG` to an inline `PING` on the port.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if ping_once(self.port(), left.min(Duration::from_millis(500))).await {
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
        let _ = fs::remove_dir_all(&self.dir);
        release_ports(&mut self.ports);
    }
}

/// One inline `PING`; true if the reply starts with `+PONG`.
async fn ping_once(port: u16, timeout: Duration) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect((LOOPBACK, port)).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut buf = Vec::with_capacity(64);
        let mut chunk = [0u8; 64];
        while !buf.ends_with(b"\r\n") && buf.len() < 1024 {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<bool, io::Error>(buf.starts_with(b"+PONG"))
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Ok(true)))
}

/// `process_id` from `INFO server`, if the server answers.
async fn server_pid(port: u16) -> Option<u32> {
    let reply = redis_cmd(port, &[b"INFO", b"server"]).await.ok()?;
    reply.as_str()?.lines().find_map(|line| {
        line.strip_prefix("process_id:")
            .and_then(|v| v.trim().parse().ok())
    })
}

// ---------------------------------------------------------------------------
// RedisCluster
// ---------------------------------------------------------------------------

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
        let test_name = current_test_name();
        if locate_binary("redis-server", &test_name)?.is_none() {
            return Ok(None);
        }
        let Some(cli) = locate_binary("redis-cli", &test_name)? else {
            return Ok(None);
        };
        let started = Instant::now();
        let mut servers = Vec::with_capacity(CLUSTER_MASTERS);
        for _ in 0..CLUSTER_MASTERS {
            match RedisServer::start_mode(Mode::Cluster, Vec::new(), &test_name).await? {
                Some(server) => servers.push(server),
                None => return Ok(None),
            }
        }
        let cluster = RedisCluster { servers };
        cluster.create(&cli).await?;
        cluster.wait_ok(CLUSTER_TIMEOUT).await?;
        info!(ports = ?cluster.ports(), elapsed = ?started.elapsed(), "redis cluster ready");
        Ok(Some(cluster))
    }

    async fn create(&self, cli: &Path) -> Result<(), HarnessError> {
        let mut cmd = tokio::process::Command::new(cli);
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
                let last_info = match redis_cmd(port, &[b"CLUSTER", b"INFO"]).await {
                    Ok(reply) => {
                        let text = reply.as_str().unwrap_or_default().to_owned();
                        let known = format!("cluster_known_nodes:{CLUSTER_MASTERS}");
                        let wanted = ["cluster_state:ok", "cluster_slots_assigned:16384", &known];
                        if wanted
                            .iter()
                            .all(|want| text.lines().any(|l| l.trim() == *want))
                        {
                            break;
                        }
                        if text.is_empty() {
                            format!("{reply:?}")
                        } else {
                            text
                        }
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

    /// `redis://127.0.0.1:{port}` of each master.
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

    /// Runs a command on the first node, following `-MOVED` redirects (at most 5).
    pub async fn cmd(&self, args: &[&[u8]]) -> Result<RespReply, HarnessError> {
        let mut port = self
            .servers
            .first()
            .map(RedisServer::port)
            .ok_or_else(|| HarnessError::Protocol("cluster has no nodes".into()))?;
        for _ in 0..5 {
            let reply = redis_cmd(port, args).await?;
            match &reply {
                RespReply::Error(msg) if msg.starts_with("MOVED ") => {
                    port = msg
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.trim().parse().ok())
                        .ok_or_else(|| {
                            HarnessError::Protocol(format!("unparsable redirect: {msg}"))
                        })?;
                }
                _ => return Ok(reply),
            }
        }
        Err(HarnessError::Protocol("too many MOVED redirects".into()))
    }
}

// ---------------------------------------------------------------------------
// Raw RESP2
// ---------------------------------------------------------------------------

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespReply {
    /// `+OK`
    Simple(String),
    /// `-ERR ...` (a Redis error reply is a successful parse, not an `Err`).
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nfoo`
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`
    Nil,
    /// `*2\r\n...`
    Array(Vec<RespReply>),
}

impl RespReply {
    /// Text of a simple string, error, or UTF-8 bulk string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            RespReply::Simple(s) | RespReply::Error(s) => Some(s),
            RespReply::Bulk(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// Bytes of a simple or bulk string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            RespReply::Simple(s) => Some(s.as_bytes()),
            RespReply::Bulk(b) => Some(b),
            _ => None,
        }
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, RespReply::Error(_))
    }
}

const MAX_LINE: usize = 64 * 1024;
const MAX_BULK: i64 = 512 * 1024 * 1024;
const MAX_DEPTH: usize = 32;

/// Encodes a command as a RESP2 array of bulk strings.
pub fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Parses one RESP2 reply from the start of `buf`.
///
/// `Ok(Some((reply, consumed)))`: complete; `Ok(None)`: need more bytes;
/// `Err`: malformed.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(RespReply, usize)>, HarnessError> {
    parse_at(buf, 0, 0)
}

fn parse_at(
    buf: &[u8],
    pos: usize,
    depth: usize,
) -> Result<Option<(RespReply, usize)>, HarnessError> {
    if depth > MAX_DEPTH {
        return Err(HarnessError::Protocol(format!(
            "arrays nested deeper than {MAX_DEPTH}"
        )));
    }
    let Some(&tag) = buf.get(pos) else {
        return Ok(None);
    };
    if !matches!(tag, b'+' | b'-' | b':' | b'$' | b'*') {
        return Err(HarnessError::Protocol(format!(
            "unknown reply type byte {:?} at offset {pos}",
            char::from(tag)
        )));
    }
    let Some((line, next)) = read_line(buf, pos + 1)? else {
        return Ok(None);
    };
    let reply = match tag {
        b'+' => RespReply::Simple(utf8(line)?),
        b'-' => RespReply::Error(utf8(line)?),
        b':' => RespReply::Integer(parse_int(line)?),
        b'$' => {
            let len = parse_int(line)?;
            if len == -1 {
                return Ok(Some((RespReply::Nil, next)));
            }
            if !(0..=MAX_BULK).contains(&len) {
                return Err(HarnessError::Protocol(format!("invalid bulk length {len}")));
            }
            let end = next
                + usize::try_from(len)
                    .map_err(|_| HarnessError::Protocol(format!("bulk length {len} too large")))?;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(HarnessError::Protocol(
                    "bulk string not terminated by CRLF".into(),
                ));
            }
            return Ok(Some((RespReply::Bulk(buf[next..end].to_vec()), end + 2)));
        }
        _ => {
            let count = parse_int(line)?;
            if count == -1 {
                return Ok(Some((RespReply::Nil, next)));
            }
            if !(0..=i64::from(u32::MAX)).contains(&count) {
                return Err(HarnessError::Protocol(format!(
                    "invalid array length {count}"
                )));
            }
            let count = usize::try_from(count)
                .map_err(|_| HarnessError::Protocol(format!("array length {count} too large")))?;
            let mut items = Vec::with_capacity(count.min(1024));
            let mut at = next;
            for _ in 0..count {
                let Some((item, after)) = parse_at(buf, at, depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                at = after;
            }
            return Ok(Some((RespReply::Array(items), at)));
        }
    };
    Ok(Some((reply, next)))
}

/// The line starting at `start` (without CRLF) and the offset after it.
fn read_line(buf: &[u8], start: usize) -> Result<Option<(&[u8], usize)>, HarnessError> {
    let rest = buf.get(start..).unwrap_or_default();
    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
        if rest.len() > MAX_LINE {
            return Err(HarnessError::Protocol(format!(
                "line longer than {MAX_LINE} bytes"
            )));
        }
        return Ok(None);
    };
    if nl == 0 || rest[nl - 1] != b'\r' {
        return Err(HarnessError::Protocol("line not terminated by CRLF".into()));
    }
    let line = &rest[..nl - 1];
    if line.contains(&b'\r') {
        return Err(HarnessError::Protocol("stray CR inside a line".into()));
    }
    Ok(Some((line, start + nl + 1)))
}

fn utf8(line: &[u8]) -> Result<String, HarnessError> {
    String::from_utf8(line.to_vec())
        .map_err(|_| HarnessError::Protocol("simple string is not UTF-8".into()))
}

fn parse_int(line: &[u8]) -> Result<i64, HarnessError> {
    let digits = line.strip_prefix(b"-").unwrap_or(line);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(HarnessError::Protocol(format!(
            "invalid integer {:?}",
            String::from_utf8_lossy(line)
        )));
    }
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            HarnessError::Protocol(format!(
                "integer out of range {:?}",
                String::from_utf8_lossy(line)
            ))
        })
}

/// Sends one RESP2 command to `127.0.0.1:{port}` on a fresh connection and
/// parses one reply. A Redis error reply is `Ok(RespReply::Error(..))`;
/// connection failures, malformed replies and exceeding [`CMD_TIMEOUT`] are `Err`.
pub async fn redis_cmd(port: u16, args: &[&[u8]]) -> Result<RespReply, HarnessError> {
    let name = args
        .first()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .unwrap_or_default();
    if args.is_empty() {
        return Err(HarnessError::Protocol("empty command".into()));
    }
    tokio::time::timeout(CMD_TIMEOUT, redis_cmd_inner(port, args, &name))
        .await
        .map_err(|_| HarnessError::Timeout {
            what: format!("running {name} on {LOOPBACK}:{port}"),
            timeout: CMD_TIMEOUT,
        })?
}

async fn redis_cmd_inner(port: u16, args: &[&[u8]], name: &str) -> Result<RespReply, HarnessError> {
    let ctx = |what: &str| format!("{what} {LOOPBACK}:{port} for {name}");
    let mut stream = TcpStream::connect((LOOPBACK, port))
        .await
        .map_err(io_err(ctx("connecting to")))?;
    stream
        .write_all(&encode_command(args))
        .await
        .map_err(io_err(ctx("writing to")))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((reply, _)) = parse_reply(&buf)? {
            return Ok(reply);
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(io_err(ctx("reading from")))?;
        if n == 0 {
            return Err(HarnessError::Protocol(format!(
                "{LOOPBACK}:{port} closed the connection before a complete reply to {name}"
            )));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> RespReply {
        let (reply, used) = parse_reply(input).unwrap().unwrap();
        assert_eq!(used, input.len(), "consumed all of {input:?}");
        reply
    }

    #[test]
    fn parses_scalars() {
        assert_eq!(parse_all(b"+OK\r\n"), RespReply::Simple("OK".into()));
        assert_eq!(
            parse_all(b"-ERR unknown command\r\n"),
            RespReply::Error("ERR unknown command".into())
        );
        assert_eq!(parse_all(b":-42\r\n"), RespReply::Integer(-42));
        assert_eq!(parse_all(b":0\r\n"), RespReply::Integer(0));
        assert_eq!(
            parse_all(b"$3\r\nfoo\r\n"),
            RespReply::Bulk(b"foo".to_vec())
        );
        assert_eq!(parse_all(b"$0\r\n\r\n"), RespReply::Bulk(Vec::new()));
        assert_eq!(
            parse_all(b"$4\r\na\r\nb\r\n"),
            RespReply::Bulk(b"a\r\nb".to_vec())
        );
        assert_eq!(parse_all(b"$-1\r\n"), RespReply::Nil);
        assert_eq!(parse_all(b"*-1\r\n"), RespReply::Nil);
    }

    #[test]
    fn parses_nested_arrays_and_reports_consumed_bytes() {
        let input = b"*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n+x\r\n+next\r\n";
        let (reply, used) = parse_reply(input).unwrap().unwrap();
        assert_eq!(
            reply,
            RespReply::Array(vec![
                RespReply::Integer(1),
                RespReply::Array(vec![RespReply::Bulk(b"a".to_vec()), RespReply::Nil]),
                RespReply::Simple("x".into()),
            ])
        );
        assert_eq!(&input[used..], b"+next\r\n");
        assert_eq!(parse_all(b"*0\r\n"), RespReply::Array(vec![]));
    }

    #[test]
    fn incomplete_input_needs_more() {
        for partial in [
            &b""[..],
            b"+OK",
            b"+OK\r",
            b"$3\r\nfo",
            b"$3\r\nfoo",
            b"$3\r\nfoo\r",
            b"*2\r\n:1\r\n",
            b"*2\r\n:1\r\n$5\r\nab",
            b":12",
        ] {
            assert!(
                parse_reply(partial).unwrap().is_none(),
                "{partial:?} should be incomplete"
            );
        }
    }

    #[test]
    fn malformed_input_is_err() {
        for bad in [
            &b"?what\r\n"[..],
            b"OK\r\n",
            b"+OK\n",
            b"+O\rK\r\n",
            b":12a\r\n",
            b":\r\n",
            b":-\r\n",
            b":99999999999999999999\r\n",
            b"$abc\r\n",
            b"$-2\r\n",
            b"$3\r\nfooXY",
            b"*-5\r\n",
            b"*x\r\n",
            b"*2\r\n:1\r\n!\r\n",
            b"+\xff\xfe\r\n",
        ] {
            assert!(parse_reply(bad).is_err(), "{bad:?} should be malformed");
        }
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 2);
        assert!(parse_reply(&deep).is_err());
        let long = vec![b'a'; MAX_LINE + 10];
        let mut long_line = b"+".to_vec();
        long_line.extend_from_slice(&long);
        assert!(parse_reply(&long_line).is_err());
    }

    #[test]
    fn encodes_commands() {
        assert_eq!(
            encode_command(&[b"SET", b"k", b""]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n".to_vec()
        );
        let encoded = encode_command(&[b"GET", b"a\r\nb"]);
        assert_eq!(
            parse_all(&encoded),
            RespReply::Array(vec![
                RespReply::Bulk(b"GET".to_vec()),
                RespReply::Bulk(b"a\r\nb".to_vec())
            ])
        );
    }

    #[test]
    fn missing_binary_skips_outside_ci_and_fails_in_ci() {
        let empty = make_temp_dir().unwrap();
        let path = std::env::join_paths([&empty]).unwrap();
        assert!(
            locate_binary_in("redis-server", Some(&path), false, "unit")
                .unwrap()
                .is_none()
        );
        assert!(
            locate_binary_in("redis-server", None, false, "unit")
                .unwrap()
                .is_none()
        );
        let err = locate_binary_in("redis-server", Some(&path), true, "unit").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("redis-server not found on PATH"), "{msg}");
        assert!(msg.contains("CI=true"), "{msg}");
        fs::remove_dir_all(&empty).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn finds_only_executable_files_on_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = make_temp_dir().unwrap();
        let fake = dir.join("redis-server");
        fs::write(&fake, "#!/bin/sh\n").unwrap();
        let path = std::env::join_paths([&dir]).unwrap();
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(find_on_path("redis-server", &path), None);
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_on_path("redis-server", &path), Some(fake.clone()));
        assert_eq!(
            locate_binary_in("redis-server", Some(&path), true, "unit").unwrap(),
            Some(fake)
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn free_port_is_bindable_and_not_6379() {
        let port = free_port().unwrap();
        assert_ne!(port, 6379);
        assert!(port_is_bindable(port));
    }

    #[test]
    fn cluster_ports_leave_room_for_the_bus_port() {
        let mut ports = reserve_ports(Mode::Cluster).unwrap();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[1], ports[0] + CLUSTER_BUS_OFFSET);
        assert!(reserved_ports().contains(&ports[0]));
        let copy = ports.clone();
        release_ports(&mut ports);
        assert!(!reserved_ports().contains(&copy[0]));
    }

    #[tokio::test]
    async fn taken_port_is_detected_as_port_in_use() {
        let Some(first) = RedisServer::start().await.unwrap() else {
            return;
        };
        let dir = make_temp_dir().unwrap();
        let mut second = RedisServer {
            binary: first.binary.clone(),
            mode: Mode::Standalone,
            extra_args: Vec::new(),
            // Not reserved: dropping `second` must not free `first`'s port.
            ports: Vec::new(),
            log_path: dir.join("redis.log"),
            stdio_path: dir.join("stdio.log"),
            dir,
            log_offsets: (0, 0),
            child: None,
        };
        // Spawn on the port `first` holds: `first` answers PING, but with
        // another pid, so this must end as PortInUse, not as "ready".
        second.ports = vec![first.port()];
        second.spawn().unwrap();
        let err = second.await_startup(START_TIMEOUT).await.unwrap_err();
        second.ports.clear();
        assert!(matches!(err, HarnessError::PortInUse { .. }), "{err}");
        assert!(err.to_string().contains("Address already in use"), "{err}");
        assert!(reserved_ports().contains(&first.port()));
    }

    #[test]
    fn log_tail_keeps_last_lines() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("a", 5), "a");
    }
}
