//! The one error type of the harness: every helper of this crate that can
//! fail returns it, so a test can use `?` on all of them.

use std::io;
use std::time::Duration;

/// Errors of the test support: Redis processes, ports, binaries, temp dirs.
///
/// `Debug` prints the same text as `Display`, so a test returning
/// `Result<(), HarnessError>` fails with a readable message and log tail.
#[derive(thiserror::Error)]
pub enum HarnessError {
    /// A required binary is missing from `PATH` while `CI=true`: must fail, not skip.
    #[error(
        "{binary} not found on PATH and CI=true: integration tests must not be skipped in CI; install it (apt-get install {package})",
        package = crate::env::debian_package(binary)
    )]
    MissingBinaryInCi {
        /// The binary that was looked for.
        binary: &'static str,
    },
    /// PostgreSQL cannot be reached while `CI=true`: must fail, not skip.
    #[error(
        "PostgreSQL not reachable at {url} and CI=true: integration tests must not be skipped in CI; install and start it (apt-get install postgresql; pg_ctlcluster <version> main start), or set DATABASE_URL: {reason}"
    )]
    MissingPostgresInCi {
        /// The server URL tried (without a password).
        url: String,
        /// Why the connection failed.
        reason: String,
    },
    /// A statement of the Postgres helpers failed.
    #[error("PostgreSQL error while {context}: {reason}")]
    Postgres {
        /// What the harness was doing.
        context: String,
        /// The driver's message.
        reason: String,
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
    /// Redis answered with an error, or could not be reached, while the
    /// harness was doing `what`.
    #[error("redis error while {what}: {source}")]
    Redis {
        /// What the harness was doing.
        what: String,
        /// fred's error (for an error reply, the server's message).
        source: fred::error::Error,
    },
    /// `openssl` failed while making the test certificates.
    #[error("openssl {step} failed ({status}):\n{stderr}")]
    Openssl {
        /// What was being made.
        step: String,
        /// Exit status of `openssl`.
        status: String,
        /// Its standard error.
        stderr: String,
    },
    /// A test certificate or key could not be loaded for the harness's own
    /// TLS connections.
    #[error("loading {what} for TLS: {reason}")]
    Tls {
        /// The file.
        what: String,
        /// Why.
        reason: String,
    },
    /// A reply of an unexpected shape.
    #[error("unexpected reply: {0}")]
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

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
    let context = context.into();
    move |source| HarnessError::Io { context, source }
}
