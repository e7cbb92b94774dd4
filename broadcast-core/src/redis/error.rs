//! Errors of the Redis setup and of publishing.

use std::time::Duration;

/// Setting up a Redis server or worker failed.
///
/// ```
/// use broadcast_core::redis::{RedisConfig, RedisError};
/// let err = RedisConfig::from_url("redis://h:notaport").unwrap_err();
/// assert!(matches!(err, RedisError::InvalidUrl { .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// The environment variable holding the URL is not set.
    #[error(
        "environment variable `{var}` is not set (expected a Redis URL or a comma-separated list of cluster nodes)"
    )]
    MissingEnv {
        /// The variable.
        var: &'static str,
    },
    /// A URL or node address could not be parsed.
    #[error("invalid Redis URL `{url}`: {source}")]
    InvalidUrl {
        /// The URL, password hidden.
        url: String,
        /// fred's parse error.
        source: fred::error::Error,
    },
    /// A URL or node address asks for something the framework does not
    /// honour (another scheme, an unknown parameter, ...): refused rather
    /// than ignored.
    #[error("unsupported Redis URL `{url}`: {part}")]
    UnsupportedUrl {
        /// The URL, password hidden.
        url: String,
        /// What is not supported.
        part: String,
    },
    /// The TLS settings could not be used (a CA file, client certificate or
    /// key that is missing or not PEM, no system root certificates).
    #[error("Redis TLS setup failed while {what}: {source}")]
    Tls {
        /// What was being done, with the file's path.
        what: String,
        /// The cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A setting is out of range.
    #[error("invalid Redis configuration: {0}")]
    InvalidConfig(&'static str),
    /// The first connection failed.
    #[error("connecting to Redis at {target} failed: {source}")]
    Connect {
        /// The servers, without credentials.
        target: String,
        /// fred's error.
        source: fred::error::Error,
    },
    /// Closing the connection failed.
    #[error("closing the Redis connection to {target} failed: {source}")]
    Shutdown {
        /// The servers, without credentials.
        target: String,
        /// fred's error.
        source: fred::error::Error,
    },
}

/// Publishing one broadcast request to Redis failed. Carried inside
/// [`TransportError`](crate::TransportError) (`RemoteFailed` on a server,
/// `Adapter` on a worker); the enclosing
/// [`BroadcastError`](crate::BroadcastError) names the event and namespace.
///
/// ```
/// use std::time::Duration;
/// use broadcast_core::redis::PublishError;
/// let e = PublishError::Timeout {
///     channel: "socket.io-request#/#".into(),
///     timeout: Duration::from_secs(2),
/// };
/// assert_eq!(
///     e.to_string(),
///     "publishing to Redis channel `socket.io-request#/#` got no answer within 2s"
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Redis did not answer within the command timeout (it is down,
    /// restarting or unreachable).
    #[error("publishing to Redis channel `{channel}` got no answer within {timeout:?}")]
    Timeout {
        /// The sharded pub/sub channel.
        channel: String,
        /// The configured command timeout.
        timeout: Duration,
    },
    /// Redis or the connection returned an error.
    #[error("publishing to Redis channel `{channel}` failed: {source}")]
    Redis {
        /// The sharded pub/sub channel.
        channel: String,
        /// fred's error.
        source: fred::error::Error,
    },
}

impl PublishError {
    pub(crate) fn from_fred(
        channel: String,
        timeout: Duration,
        source: fred::error::Error,
    ) -> Self {
        if *source.kind() == fred::error::ErrorKind::Timeout {
            Self::Timeout { channel, timeout }
        } else {
            Self::Redis { channel, source }
        }
    }

    /// The channel the request was for.
    pub fn channel(&self) -> &str {
        match self {
            Self::Timeout { channel, .. } | Self::Redis { channel, .. } => channel,
        }
    }
}
