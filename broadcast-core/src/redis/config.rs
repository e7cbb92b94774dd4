//! Where Redis is and how the connection behaves.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::{
    Config, ConnectionConfig, PerformanceConfig, ReconnectPolicy, Server, ServerConfig,
};
use fred::types::RespVersion;

use socketioxide::SocketIoBuilder;

use super::RedisAdapter;
use super::error::RedisError;

/// The environment variable [`RedisConfig::from_env`] reads.
///
/// ```
/// assert_eq!(broadcast_core::redis::REDIS_URL_ENV, "REDIS_URL");
/// ```
pub const REDIS_URL_ENV: &str = "REDIS_URL";
/// Default channel prefix; the same as socketioxide-redis, so servers set up
/// without this crate interoperate.
///
/// ```
/// assert_eq!(broadcast_core::redis::DEFAULT_PREFIX, "socket.io");
/// ```
pub const DEFAULT_PREFIX: &str = "socket.io";
/// Default bound on one Redis command (publish, subscribe).
///
/// ```
/// assert_eq!(broadcast_core::redis::DEFAULT_COMMAND_TIMEOUT.as_secs(), 2);
/// ```
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Default capacity of fred's pub/sub broadcast channel (fred's own default
/// is 32, which loses messages under bursts).
///
/// ```
/// assert!(broadcast_core::redis::DEFAULT_PUBSUB_BUFFER > 32);
/// ```
pub const DEFAULT_PUBSUB_BUFFER: usize = 8192;
/// Default capacity of each adapter channel between the Redis reader and a
/// namespace (socketioxide-redis's default is 1024).
///
/// ```
/// assert!(broadcast_core::redis::DEFAULT_ADAPTER_BUFFER > 1024);
/// ```
pub const DEFAULT_ADAPTER_BUFFER: usize = 65_536;
/// Default number of packets buffered per socket before socketioxide refuses
/// to emit to it (socketioxide's default is 128).
///
/// ```
/// assert!(broadcast_core::redis::DEFAULT_SOCKET_BUFFER > 128);
/// ```
pub const DEFAULT_SOCKET_BUFFER: usize = 4096;

/// How to reach Redis and how the connection behaves: servers (one URL, a
/// cluster URL or a list of cluster nodes), the channel prefix, the command
/// timeout, the reconnect policy and the sizes of the buffers between Redis
/// and the sockets.
///
/// Every connection is RESP3 (socketioxide-redis uses sharded pub/sub, which
/// needs it); a `?protocol=` URL parameter is not needed and is ignored.
///
/// ```
/// use std::time::Duration;
/// use broadcast_core::redis::RedisConfig;
///
/// let config = RedisConfig::from_url("redis://127.0.0.1:7000")?
///     .prefix("myapp")
///     .command_timeout(Duration::from_millis(500));
/// assert_eq!(config.prefix_str(), "myapp");
/// assert_eq!(config.servers(), vec!["127.0.0.1:7000".to_string()]);
///
/// // A cluster: a `redis-cluster://` URL, or any of its nodes.
/// let cluster = RedisConfig::from_nodes(["127.0.0.1:7001", "redis://127.0.0.1:7002"])?;
/// assert!(cluster.is_cluster());
/// # Ok::<(), broadcast_core::redis::RedisError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RedisConfig {
    server: ServerConfig,
    username: Option<String>,
    password: Option<String>,
    database: Option<u8>,
    prefix: Cow<'static, str>,
    command_timeout: Duration,
    connect_timeout: Duration,
    reconnect: ReconnectPolicy,
    pubsub_buffer: usize,
    adapter_buffer: usize,
    adapter_buffer_bytes: usize,
    socket_buffer: usize,
    max_payload_bytes: usize,
    socketio: SocketIoSettings,
}

type ConfigureFn =
    dyn Fn(SocketIoBuilder<RedisAdapter>) -> SocketIoBuilder<RedisAdapter> + Send + Sync;

/// Socket.IO settings of the application's own, applied by
/// [`server`](super::server) before it builds the server.
#[derive(Clone, Default)]
struct SocketIoSettings(Option<Arc<ConfigureFn>>);

impl std::fmt::Debug for SocketIoSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "custom"
        } else {
            "default"
        })
    }
}

impl RedisConfig {
    /// Reads the URL from `REDIS_URL`. A comma-separated list is taken as the
    /// nodes of a cluster.
    ///
    /// ```no_run
    /// let config = broadcast_core::redis::RedisConfig::from_env()?;
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn from_env() -> Result<Self, RedisError> {
        let value = std::env::var(REDIS_URL_ENV)
            .map_err(|_| RedisError::MissingEnv { var: REDIS_URL_ENV })?;
        if value.contains(',') {
            Self::from_nodes(value.split(',').map(str::trim).filter(|s| !s.is_empty()))
        } else {
            Self::from_url(value.trim())
        }
    }

    /// A single server (`redis://[user:pass@]host[:port][/db]`) or a cluster
    /// (`redis-cluster://host:port?node=host2:port2&...`).
    ///
    /// ```
    /// let c = broadcast_core::redis::RedisConfig::from_url("redis-cluster://10.0.0.1:7000?node=10.0.0.2:7000")?;
    /// assert!(c.is_cluster());
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Self, RedisError> {
        let parsed = Config::from_url(url).map_err(|source| RedisError::InvalidUrl {
            url: redact(url),
            source,
        })?;
        Ok(Self::with_server(
            parsed.server,
            parsed.username,
            parsed.password,
            parsed.database,
        ))
    }

    /// The nodes of a Redis Cluster, each `host:port` or `redis://host:port`
    /// (credentials, if any, are taken from the first node that has them).
    /// Any subset of the nodes is enough: the rest are discovered.
    ///
    /// ```
    /// let c = broadcast_core::redis::RedisConfig::from_nodes(["10.0.0.1:7000", "10.0.0.2:7000"])?;
    /// assert_eq!(c.servers().len(), 2);
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn from_nodes<I>(nodes: I) -> Result<Self, RedisError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut hosts = Vec::new();
        let (mut username, mut password) = (None, None);
        for node in nodes {
            let node = node.as_ref().trim();
            let url = if node.contains("://") {
                node.to_owned()
            } else {
                format!("redis://{node}")
            };
            let parsed =
                Config::from_url_centralized(&url).map_err(|source| RedisError::InvalidUrl {
                    url: redact(node),
                    source,
                })?;
            if username.is_none() && password.is_none() {
                username = parsed.username;
                password = parsed.password;
            }
            hosts.extend(parsed.server.hosts());
        }
        if hosts.is_empty() {
            return Err(RedisError::InvalidConfig(
                "the list of Redis cluster nodes is empty",
            ));
        }
        let server = ServerConfig::new_clustered(
            hosts
                .into_iter()
                .map(|s: Server| (s.host.to_string(), s.port))
                .collect(),
        );
        Ok(Self::with_server(server, username, password, None))
    }

    fn with_server(
        server: ServerConfig,
        username: Option<String>,
        password: Option<String>,
        database: Option<u8>,
    ) -> Self {
        Self {
            server,
            username,
            password,
            database,
            prefix: Cow::Borrowed(DEFAULT_PREFIX),
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            connect_timeout: Duration::from_secs(5),
            // Forever, 100 ms doubling up to 2 s: a restarted Redis is found
            // again within ~2 s of coming back.
            reconnect: ReconnectPolicy::new_exponential(0, 100, 2000, 2),
            pubsub_buffer: DEFAULT_PUBSUB_BUFFER,
            adapter_buffer: DEFAULT_ADAPTER_BUFFER,
            adapter_buffer_bytes: super::driver::DEFAULT_ADAPTER_BUFFER_BYTES,
            socket_buffer: DEFAULT_SOCKET_BUFFER,
            max_payload_bytes: crate::broadcaster::DEFAULT_MAX_PAYLOAD_BYTES,
            socketio: SocketIoSettings::default(),
        }
    }

    /// Channel prefix (default `socket.io`). Servers and workers of one
    /// application must use the same prefix; different applications sharing
    /// a Redis use different ones.
    ///
    /// ```
    /// # use broadcast_core::redis::RedisConfig;
    /// let c = RedisConfig::from_url("redis://127.0.0.1:7000")?.prefix("shop");
    /// assert_eq!(c.prefix_str(), "shop");
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn prefix(mut self, prefix: impl Into<Cow<'static, str>>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Upper bound on one Redis command (default 2 s). A broadcast while
    /// Redis is unreachable fails once this much time has passed. Fred drops
    /// a command that timed out before it was written, so a failed broadcast
    /// is not delivered late after Redis comes back.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use broadcast_core::redis::RedisConfig;
    /// let c = RedisConfig::from_url("redis://127.0.0.1:7000")?
    ///     .command_timeout(Duration::from_millis(500));
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Upper bound on opening one TCP connection (default 5 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use broadcast_core::redis::RedisConfig;
    /// let c = RedisConfig::from_url("redis://127.0.0.1:7000")?
    ///     .connect_timeout(Duration::from_secs(1));
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How to reconnect after the connection drops (default: forever,
    /// exponential backoff from 100 ms to 2 s).
    ///
    /// ```
    /// use broadcast_core::redis::{RedisConfig, ReconnectPolicy};
    /// let c = RedisConfig::from_url("redis://127.0.0.1:7000")?
    ///     .reconnect_policy(ReconnectPolicy::new_constant(0, 500));
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn reconnect_policy(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// Messages fred holds between the Redis connection and the reader that
    /// hands them to namespaces (default 8192). Overflow loses messages and
    /// is counted in [`RedisStatsSnapshot::lagged`](super::RedisStatsSnapshot::lagged).
    /// Fred allocates this many slots for each of its event channels.
    ///
    /// ```
    /// # use broadcast_core::redis::RedisConfig;
    /// let c = RedisConfig::from_url("redis://127.0.0.1:7000")?.pubsub_buffer(32_768);
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn pubsub_buffer(mut self, messages: usize) -> Self {
        self.pubsub_buffer = messages;
        self
    }

    /// Messages queued per channel between the Redis reader and the
    /// adapter (default 65 536). When full, further messages for that
    /// namespace are dropped and counted in
    /// [`RedisStatsSnapshot::overflowed`](super::RedisStatsSnapshot::overflowed),
    /// so one stuck namespace cannot stall the others. Memory is only used
    /// by messages actually queued.
    ///
    /// ```
    /// # use broadcast_core::redis::RedisConfig;
    /// let c = RedisConfig::from_url("redis://127.0.0.1:7000")?.adapter_buffer(1 << 20);
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn adapter_buffer(mut self, messages: usize) -> Self {
        self.adapter_buffer = messages;
        self
    }

    /// Bytes queued per channel between the Redis reader and the adapter
    /// (default [`DEFAULT_ADAPTER_BUFFER_BYTES`](super::DEFAULT_ADAPTER_BUFFER_BYTES),
    /// 64 MiB); past it messages are dropped and counted as with
    /// [`adapter_buffer`](Self::adapter_buffer). A message larger than the
    /// budget still passes when nothing else is queued.
    ///
    /// ```
    /// # use broadcast_core::redis::RedisConfig;
    /// let c = RedisConfig::from_url("redis://127.0.0.1:7000")?.adapter_buffer_bytes(16 << 20);
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn adapter_buffer_bytes(mut self, bytes: usize) -> Self {
        self.adapter_buffer_bytes = bytes;
        self
    }

    /// Packets buffered per socket before socketioxide refuses to emit to it
    /// (default 4096; socketioxide's own default is 128). A socket whose
    /// buffer is full misses events: on the broadcasting server this is
    /// reported in `Outcome::Delivered::socket_errors`, on the others only
    /// in socketioxide's logs.
    ///
    /// ```
    /// # use broadcast_core::redis::RedisConfig;
    /// let c = RedisConfig::from_url("redis://127.0.0.1:7000")?.socket_buffer(16_384);
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn socket_buffer(mut self, packets: usize) -> Self {
        self.socket_buffer = packets;
        self
    }

    /// Largest serialized payload the server's or worker's broadcaster
    /// accepts, in bytes (default 1 MiB).
    ///
    /// ```
    /// # use broadcast_core::redis::RedisConfig;
    /// let c = RedisConfig::from_url("redis://127.0.0.1:7000")?.max_payload_bytes(64 * 1024);
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn max_payload_bytes(mut self, limit: usize) -> Self {
        self.max_payload_bytes = limit;
        self
    }

    /// Socket.IO settings of your own (ping interval, request path, ...),
    /// applied by [`server`](super::server) to socketioxide's builder after
    /// the framework's (the adapter and the socket buffer).
    ///
    /// ```
    /// use std::time::Duration;
    /// # use broadcast_core::redis::RedisConfig;
    /// let c = RedisConfig::from_url("redis://127.0.0.1:7000")?
    ///     .socketio(|b| b.ping_interval(Duration::from_secs(10)).req_path("/ws"));
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn socketio(
        mut self,
        configure: impl Fn(SocketIoBuilder<RedisAdapter>) -> SocketIoBuilder<RedisAdapter>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.socketio = SocketIoSettings(Some(Arc::new(configure)));
        self
    }

    pub(crate) fn configure_socketio(
        &self,
        builder: SocketIoBuilder<RedisAdapter>,
    ) -> SocketIoBuilder<RedisAdapter> {
        match &self.socketio.0 {
            Some(configure) => configure(builder),
            None => builder,
        }
    }

    pub(crate) fn max_payload_bytes_value(&self) -> usize {
        self.max_payload_bytes
    }

    /// The channel prefix (see the [`prefix`](Self::prefix) example).
    pub fn prefix_str(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn command_timeout_value(&self) -> Duration {
        self.command_timeout
    }

    pub(crate) fn socket_buffer_value(&self) -> usize {
        self.socket_buffer
    }

    pub(crate) fn adapter_buffer_value(&self) -> usize {
        self.adapter_buffer
    }

    pub(crate) fn adapter_buffer_bytes_value(&self) -> usize {
        self.adapter_buffer_bytes
    }

    /// Whether this is a Redis Cluster configuration.
    ///
    /// ```
    /// # use broadcast_core::redis::RedisConfig;
    /// assert!(!RedisConfig::from_url("redis://127.0.0.1:7000")?.is_cluster());
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn is_cluster(&self) -> bool {
        self.server.is_clustered()
    }

    /// The configured servers as `host:port`, without credentials.
    ///
    /// ```
    /// # use broadcast_core::redis::RedisConfig;
    /// let c = RedisConfig::from_url("redis://user:secret@10.0.0.1:7000")?;
    /// assert_eq!(c.servers(), ["10.0.0.1:7000"]);
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn servers(&self) -> Vec<String> {
        self.server
            .hosts()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// The servers as one line for logs and errors.
    pub(crate) fn target(&self) -> String {
        let servers = self.servers().join(",");
        if self.is_cluster() {
            format!("cluster {servers}")
        } else {
            servers
        }
    }

    pub(crate) fn validate(&self) -> Result<(), RedisError> {
        if self.pubsub_buffer == 0 {
            return Err(RedisError::InvalidConfig(
                "pubsub_buffer must be at least 1",
            ));
        }
        if self.adapter_buffer == 0 {
            return Err(RedisError::InvalidConfig(
                "adapter_buffer must be at least 1",
            ));
        }
        if self.adapter_buffer_bytes == 0 {
            return Err(RedisError::InvalidConfig(
                "adapter_buffer_bytes must be at least 1",
            ));
        }
        if self.socket_buffer == 0 {
            return Err(RedisError::InvalidConfig(
                "socket_buffer must be at least 1",
            ));
        }
        if self.command_timeout.is_zero() {
            return Err(RedisError::InvalidConfig(
                "command_timeout must be more than zero (zero would mean no timeout)",
            ));
        }
        Ok(())
    }

    /// A fred builder with every setting applied.
    pub(crate) fn fred_builder(&self) -> fred::prelude::Builder {
        let config = Config {
            server: self.server.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            database: self.database,
            // socketioxide-redis uses SSUBSCRIBE/SPUBLISH, and receiving
            // pushes on a connection that also runs commands needs RESP3.
            version: RespVersion::RESP3,
            // A wrong URL or a Redis that is not there at startup is an error
            // now, not an endless reconnect loop.
            fail_fast: true,
            ..Config::default()
        };
        let performance = PerformanceConfig {
            default_command_timeout: self.command_timeout,
            broadcast_channel_capacity: self.pubsub_buffer,
            ..PerformanceConfig::default()
        };
        let mut connection = ConnectionConfig {
            connection_timeout: self.connect_timeout,
            internal_command_timeout: self.connect_timeout,
            ..ConnectionConfig::default()
        };
        // A peer that stops answering (no RST, e.g. a network partition) is
        // dropped and reconnected instead of holding commands forever.
        connection.unresponsive.max_timeout = Some(self.command_timeout.saturating_mul(2));
        connection.unresponsive.interval =
            (self.command_timeout / 2).max(Duration::from_millis(10));
        let mut builder = fred::prelude::Builder::from_config(config);
        builder
            .set_performance_config(performance)
            .set_connection_config(connection)
            .set_policy(self.reconnect.clone());
        builder
    }
}

/// Hides the password of a URL for logs and errors.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}://***@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(redact("redis://u:secret@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
        assert_eq!(redact("h:1"), "h:1");
    }

    #[test]
    fn bad_url_is_an_error_without_password() {
        let err = RedisConfig::from_url("redis://u:secret@h:notaport").unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains("secret"), "{msg}");
        assert!(msg.contains("***@h:notaport"), "{msg}");
    }

    #[test]
    fn nodes_make_a_cluster_and_keep_credentials() {
        let c = RedisConfig::from_nodes(["redis://:pw@a:1", "b:2"]).unwrap();
        assert!(c.is_cluster());
        assert_eq!(c.servers(), vec!["a:1", "b:2"]);
        assert_eq!(c.password.as_deref(), Some("pw"));
        assert!(RedisConfig::from_nodes(Vec::<String>::new()).is_err());
    }

    #[test]
    fn zero_buffers_are_refused() {
        let c = RedisConfig::from_url("redis://a:1").unwrap();
        assert!(c.clone().validate().is_ok());
        assert!(c.clone().pubsub_buffer(0).validate().is_err());
        assert!(c.clone().adapter_buffer(0).validate().is_err());
        assert!(c.clone().socket_buffer(0).validate().is_err());
        assert!(c.command_timeout(Duration::ZERO).validate().is_err());
    }

    #[test]
    fn fred_config_is_resp3_with_timeouts_and_buffers() {
        let c = RedisConfig::from_url("redis://a:1")
            .unwrap()
            .pubsub_buffer(77)
            .command_timeout(Duration::from_millis(300));
        let b = c.fred_builder();
        assert_eq!(
            b.get_config().map(|c| c.version.clone()),
            Some(RespVersion::RESP3)
        );
        assert_eq!(b.get_performance_config().broadcast_channel_capacity, 77);
        assert_eq!(
            b.get_performance_config().default_command_timeout,
            Duration::from_millis(300)
        );
        assert!(b.get_policy().is_some());
    }
}
