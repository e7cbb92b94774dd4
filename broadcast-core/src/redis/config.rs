//! Where Redis is and how the connection behaves.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fred::prelude::{
    Config, ConnectionConfig, PerformanceConfig, ReconnectPolicy, Server, ServerConfig,
};
use fred::rustls;
use fred::rustls::pki_types::pem::PemObject;
use fred::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use fred::types::RespVersion;
use fred::types::config::{TlsConfig, TlsConnector, TlsHostMapping};

use socketioxide::SocketIoBuilder;

use super::RedisAdapter;
use super::error::RedisError;

/// The environment variable [`RedisConfig::from_env`] reads.
///
/// ```
/// assert_eq!(broadcast_core::redis::REDIS_URL_ENV, "REDIS_URL");
/// ```
pub const REDIS_URL_ENV: &str = "REDIS_URL";
/// The environment variable [`RedisConfig::from_env`] reads a CA file from
/// (see [`RedisConfig::ca_file`]).
///
/// ```
/// assert_eq!(broadcast_core::redis::REDIS_CA_FILE_ENV, "REDIS_CA_FILE");
/// ```
pub const REDIS_CA_FILE_ENV: &str = "REDIS_CA_FILE";
/// The environment variable [`RedisConfig::from_env`] reads a client
/// certificate from (see [`RedisConfig::client_cert`]).
///
/// ```
/// assert_eq!(broadcast_core::redis::REDIS_CLIENT_CERT_ENV, "REDIS_CLIENT_CERT");
/// ```
pub const REDIS_CLIENT_CERT_ENV: &str = "REDIS_CLIENT_CERT";
/// The environment variable [`RedisConfig::from_env`] reads the client
/// certificate's private key from (see [`RedisConfig::client_cert`]).
///
/// ```
/// assert_eq!(broadcast_core::redis::REDIS_CLIENT_KEY_ENV, "REDIS_CLIENT_KEY");
/// ```
pub const REDIS_CLIENT_KEY_ENV: &str = "REDIS_CLIENT_KEY";
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
/// Default capacity of fred's pub/sub broadcast channel on a server's
/// subscriber connection (fred's own default is 32, which loses messages
/// under bursts).
///
/// fred's router, once it has a backlog to read (the process was stopped
/// for a while: a CPU quota's throttling, a paused VM), decodes up to 128
/// reads of 8 KiB before it yields: with the smallest adapter messages
/// (about 90 bytes) that is about 11,600 messages, all put in this buffer
/// before the reader behind it can run on the same thread: more than 8,192
/// slots hold; 16,384 hold a whole turn.
///
/// ```
/// assert!(broadcast_core::redis::DEFAULT_PUBSUB_BUFFER >= 128 * 8192 / 90);
/// ```
pub const DEFAULT_PUBSUB_BUFFER: usize = 16_384;
/// Capacity of the event channels of the connections that receive no
/// pub/sub messages (publishing, presence): fred allocates every channel of
/// a client with one capacity, and these only carry rare events
/// (reconnections, errors). Sized like the pub/sub buffer, each such
/// connection held 5.9 MB of empty slots at 8,192 and would hold 12 MB at
/// [`DEFAULT_PUBSUB_BUFFER`].
const EVENT_BUFFER: usize = 64;
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
/// Default size of each websocket's read buffer, in bytes (engineioxide's
/// own default is 4096). The buffer is allocated and zero-filled for every
/// connection, so it is resident memory per connection; what a server reads
/// from its clients is small (pings, joins, acks), and a larger frame still
/// arrives whole: the buffer grows for it.
///
/// ```
/// assert!(broadcast_core::redis::DEFAULT_WS_READ_BUFFER < 4096);
/// ```
pub const DEFAULT_WS_READ_BUFFER: usize = 1024;

/// How to reach Redis and how the connection behaves: servers (one URL, a
/// cluster URL or a list of cluster nodes), the channel prefix, the command
/// timeout, the reconnect policy and the sizes of the buffers between Redis
/// and the sockets.
///
/// Every connection is RESP3 (socketioxide-redis uses sharded pub/sub, which
/// needs it); a `?protocol=` URL parameter may only say so (`resp3`).
///
/// # TLS
///
/// A `rediss://` or `rediss-cluster://` URL connects over TLS (rustls), with
/// the server's certificate verified against the system's root certificates,
/// or only against [`ca_file`](Self::ca_file) when one is given. A server that
/// requires client certificates gets [`client_cert`](Self::client_cert). A
/// TLS failure (handshake, verification) is an error of the first connect,
/// never a fallback to plaintext. In a cluster, the nodes' certificates must
/// be valid for the addresses the cluster announces (`CLUSTER SLOTS`).
///
/// # What is refused
///
/// Anything the framework would not honour is an error rather than ignored:
/// another scheme (`http://`, `redis-sentinel://`, `unix://`), an unknown
/// URL parameter, a fragment, a database in a cluster URL, `node=` in a
/// single-server URL, and TLS files on a plaintext URL.
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
#[derive(Clone)]
pub struct RedisConfig {
    server: ServerConfig,
    username: Option<String>,
    password: Option<String>,
    database: Option<u8>,
    tls: Option<TlsSettings>,
    prefix: Cow<'static, str>,
    command_timeout: Duration,
    connect_timeout: Duration,
    reconnect: ReconnectPolicy,
    pubsub_buffer: usize,
    adapter_buffer: usize,
    adapter_buffer_bytes: usize,
    socket_buffer: usize,
    ws_read_buffer: usize,
    max_payload_bytes: usize,
    socketio: SocketIoSettings,
    room_channels: bool,
    room_channel_idle: Duration,
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

// By hand: the password must never reach a log line or an error message.
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("target", &self.target())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("database", &self.database)
            .field("tls", &self.tls)
            .field("prefix", &self.prefix)
            .field("command_timeout", &self.command_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect", &self.reconnect)
            .field("pubsub_buffer", &self.pubsub_buffer)
            .field("adapter_buffer", &self.adapter_buffer)
            .field("socket_buffer", &self.socket_buffer)
            .field("ws_read_buffer", &self.ws_read_buffer)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("socketio", &self.socketio)
            .field("room_channels", &self.room_channels)
            .field("room_channel_idle", &self.room_channel_idle)
            .finish()
    }
}

/// The TLS settings of a `rediss://` configuration.
#[derive(Clone, Default)]
struct TlsSettings {
    /// The URL says `rediss`; without it, files given are an error.
    wanted: bool,
    ca_file: Option<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
    /// Built by [`RedisConfig::validate`], where a bad file is an error, and
    /// reused by [`RedisConfig::fred_builder`], which cannot fail. Emptied
    /// by every setter.
    built: OnceLock<TlsConfig>,
}

impl TlsSettings {
    fn wanted() -> Self {
        Self {
            wanted: true,
            ..Self::default()
        }
    }

    /// The rustls client configuration: the roots (the CA file, else the
    /// system's), the client certificate if any, ring as the provider.
    fn build(&self) -> Result<TlsConfig, RedisError> {
        let roots = match &self.ca_file {
            Some(path) => ca_roots(path)?,
            None => system_roots()?,
        };
        // An explicit provider: `ClientConfig::builder()` panics when another
        // crate of the application enables a second rustls provider.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("choosing the TLS protocol versions", e))?
            .with_root_certificates(roots);
        let config = match &self.client_cert {
            Some((cert, key)) => {
                let chain = read_certs(cert, "client certificate")?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    tls_error(format!("reading the client key {}", key.display()), e)
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| tls_error("using the client certificate and key", e))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(TlsConfig {
            connector: TlsConnector::from(config),
            hostnames: TlsHostMapping::None,
        })
    }
}

fn tls_error(
    what: impl Into<String>,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> RedisError {
    RedisError::Tls {
        what: what.into(),
        source: source.into(),
    }
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, RedisError> {
    let context = || format!("reading the {what} {}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(context(), e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(context(), e))?;
    if certs.is_empty() {
        return Err(tls_error(context(), "the file holds no PEM certificate"));
    }
    Ok(certs)
}

fn ca_roots(path: &Path) -> Result<rustls::RootCertStore, RedisError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(path, "CA file")? {
        roots
            .add(cert)
            .map_err(|e| tls_error(format!("adding a CA certificate of {}", path.display()), e))?;
    }
    Ok(roots)
}

fn system_roots() -> Result<rustls::RootCertStore, RedisError> {
    let found = fred::rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "a system root certificate could not be loaded");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(tls_error(
            "loading the system's root certificates",
            "none found; give the CA with RedisConfig::ca_file or REDIS_CA_FILE",
        ));
    }
    Ok(roots)
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("wanted", &self.wanted)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .finish_non_exhaustive()
    }
}

impl RedisConfig {
    /// Reads the URL from `REDIS_URL`. A comma-separated list is taken as the
    /// nodes of a cluster. For `rediss://`, `REDIS_CA_FILE` names a CA file
    /// and `REDIS_CLIENT_CERT` with `REDIS_CLIENT_KEY` a client certificate
    /// (an empty variable counts as unset).
    ///
    /// ```no_run
    /// let config = broadcast_core::redis::RedisConfig::from_env()?;
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn from_env() -> Result<Self, RedisError> {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// [`from_env`](Self::from_env) on any source of variables.
    fn from_vars(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<Self, RedisError> {
        let value = var(REDIS_URL_ENV)
            .and_then(|v| v.into_string().ok())
            .ok_or(RedisError::MissingEnv { var: REDIS_URL_ENV })?;
        let mut config = if value.contains(',') {
            Self::from_nodes(value.split(',').map(str::trim).filter(|s| !s.is_empty()))?
        } else {
            Self::from_url(value.trim())?
        };
        let path = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(ca) = path(REDIS_CA_FILE_ENV) {
            config = config.ca_file(ca);
        }
        match (path(REDIS_CLIENT_CERT_ENV), path(REDIS_CLIENT_KEY_ENV)) {
            (Some(cert), Some(key)) => config = config.client_cert(cert, key),
            (None, None) => {}
            (Some(_), None) => {
                return Err(RedisError::InvalidConfig(
                    "REDIS_CLIENT_CERT is set but REDIS_CLIENT_KEY is not",
                ));
            }
            (None, Some(_)) => {
                return Err(RedisError::InvalidConfig(
                    "REDIS_CLIENT_KEY is set but REDIS_CLIENT_CERT is not",
                ));
            }
        }
        Ok(config)
    }

    /// A single server (`redis://[user:pass@]host[:port][/db]`) or a cluster
    /// (`redis-cluster://host:port?node=host2:port2&...`); `rediss://` and
    /// `rediss-cluster://` for TLS.
    ///
    /// ```
    /// use broadcast_core::redis::{RedisConfig, RedisError};
    /// let c = RedisConfig::from_url("redis-cluster://10.0.0.1:7000?node=10.0.0.2:7000")?;
    /// assert!(c.is_cluster());
    /// assert!(RedisConfig::from_url("rediss://10.0.0.1:6380")?.is_tls());
    /// let err = RedisConfig::from_url("redis://10.0.0.1?foo=1").unwrap_err();
    /// assert!(matches!(err, RedisError::UnsupportedUrl { .. }));
    /// # Ok::<(), RedisError>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Self, RedisError> {
        let parsed = StrictUrl::parse(url)?;
        let fred_config = if parsed.cluster {
            Config::from_url_clustered(&parsed.plain)
        } else {
            Config::from_url_centralized(&parsed.plain)
        };
        let fred_config = fred_config.map_err(|source| RedisError::InvalidUrl {
            url: redact(url),
            source,
        })?;
        let mut config = Self::with_server(
            fred_config.server,
            fred_config.username,
            fred_config.password,
            fred_config.database,
        );
        if parsed.tls {
            config.tls = Some(TlsSettings::wanted());
        }
        Ok(config)
    }

    /// The nodes of a Redis Cluster, each `host:port`, `redis://host:port`
    /// or `rediss://host:port` (credentials, if any, are taken from the first
    /// node that has them). Any subset of the nodes is enough: the rest are
    /// discovered. One `rediss://` node makes the whole cluster TLS; mixing
    /// `redis://` and `rediss://` is an error.
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
        let (mut plain_seen, mut tls_seen) = (false, false);
        for node in nodes {
            let node = node.as_ref().trim();
            let url = if node.contains("://") {
                node.to_owned()
            } else {
                format!("redis://{node}")
            };
            let parsed = StrictUrl::parse(&url)?;
            if parsed.has_query || parsed.has_path {
                return Err(RedisError::UnsupportedUrl {
                    url: redact(node),
                    part: "a cluster node is `host:port` with no path or parameter".into(),
                });
            }
            if node.contains("://") {
                plain_seen |= !parsed.tls;
                tls_seen |= parsed.tls;
            }
            if plain_seen && tls_seen {
                return Err(RedisError::UnsupportedUrl {
                    url: redact(node),
                    part: "the cluster nodes mix redis:// and rediss://".into(),
                });
            }
            let fred_config = Config::from_url_centralized(&parsed.plain).map_err(|source| {
                RedisError::InvalidUrl {
                    url: redact(node),
                    source,
                }
            })?;
            if username.is_none() && password.is_none() {
                username = fred_config.username;
                password = fred_config.password;
            }
            hosts.extend(fred_config.server.hosts());
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
        let mut config = Self::with_server(server, username, password, None);
        if tls_seen {
            config.tls = Some(TlsSettings::wanted());
        }
        Ok(config)
    }

    /// Verify the servers' certificates against the CA certificates (PEM) in
    /// this file instead of the system's root certificates. Only for a
    /// `rediss://` URL: on a plaintext one, connecting fails. The file is read
    /// when the server or worker connects; a missing or unreadable file is an
    /// error then.
    ///
    /// ```
    /// # use broadcast_core::redis::RedisConfig;
    /// let c = RedisConfig::from_url("rediss://10.0.0.1:6380")?.ca_file("/etc/redis/ca.crt");
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        let tls = self.tls_settings();
        tls.ca_file = Some(path.into());
        self
    }

    /// Present this client certificate (PEM, with its chain) and private key
    /// (PEM: PKCS#8, PKCS#1 or SEC1) to servers that ask for one
    /// (`tls-auth-clients yes`). Only for a `rediss://` URL, like
    /// [`ca_file`](Self::ca_file); the files are read when connecting.
    ///
    /// ```
    /// # use broadcast_core::redis::RedisConfig;
    /// let c = RedisConfig::from_url("rediss://10.0.0.1:6380")?
    ///     .ca_file("/etc/redis/ca.crt")
    ///     .client_cert("/etc/redis/client.crt", "/etc/redis/client.key");
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        let tls = self.tls_settings();
        tls.client_cert = Some((cert.into(), key.into()));
        self
    }

    /// Whether the connections use TLS (`rediss://`).
    ///
    /// ```
    /// # use broadcast_core::redis::RedisConfig;
    /// assert!(!RedisConfig::from_url("redis://10.0.0.1:6379")?.is_tls());
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn is_tls(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wanted)
    }

    /// The TLS settings to change, created for a plaintext URL too so that
    /// [`validate`](Self::validate) can refuse them there.
    fn tls_settings(&mut self) -> &mut TlsSettings {
        let tls = self.tls.get_or_insert_with(|| TlsSettings {
            wanted: false,
            ..TlsSettings::default()
        });
        tls.built = OnceLock::new();
        tls
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
            tls: None,
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
            ws_read_buffer: DEFAULT_WS_READ_BUFFER,
            max_payload_bytes: crate::broadcaster::DEFAULT_MAX_PAYLOAD_BYTES,
            socketio: SocketIoSettings::default(),
            room_channels: true,
            room_channel_idle: super::rooms::IDLE,
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

    /// Whether broadcasts to a typed room go on the room's own channel
    /// (default `true`), so that only servers with a socket in the room
    /// receive them, or, with `false`, on the namespace's channel that
    /// every server reads, as socketioxide-redis does.
    ///
    /// With room channels a server subscribes to a room's channel before
    /// the join protocol (or [`Handshake::join`](crate::join::Handshake::join))
    /// puts a socket in it, and drops the subscription once the room has
    /// had no local socket for a while, so its cost per broadcast stays
    /// flat as servers are added. Rooms that keep history have channels
    /// of their own either way; broadcasts with a delivery id (the outbox),
    /// to a whole namespace, or to rooms that are not a registered room
    /// type (a socket's own id room, names an application joined with
    /// socketioxide directly) stay on the namespace channel.
    ///
    /// Servers read both kinds, whatever this says, so a server accepts
    /// either from workers; a process that publishes on room channels
    /// needs servers that subscribe to them (this version or later).
    ///
    /// ```
    /// # use broadcast_core::redis::RedisConfig;
    /// let c = RedisConfig::from_url("redis://127.0.0.1:7000")?.room_channels(false);
    /// assert!(!c.uses_room_channels());
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn room_channels(mut self, enabled: bool) -> Self {
        self.room_channels = enabled;
        self
    }

    /// How long a server keeps a room channel after the room's last local
    /// socket left (default 30 s): a room that empties and fills again
    /// meanwhile costs no unsubscribe and subscribe.
    ///
    /// ```
    /// # use broadcast_core::redis::RedisConfig;
    /// # use std::time::Duration;
    /// let c = RedisConfig::from_url("redis://127.0.0.1:7000")?.room_channel_idle(Duration::from_secs(5));
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn room_channel_idle(mut self, idle: Duration) -> Self {
        self.room_channel_idle = idle;
        self
    }

    pub(crate) fn room_channel_idle_value(&self) -> Duration {
        self.room_channel_idle
    }

    /// Whether broadcasts to typed rooms go on room channels; see
    /// [`room_channels`](Self::room_channels).
    ///
    /// ```
    /// # use broadcast_core::redis::RedisConfig;
    /// assert!(RedisConfig::from_url("redis://127.0.0.1:7000")?.uses_room_channels());
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn uses_room_channels(&self) -> bool {
        self.room_channels
    }

    /// Messages fred holds between the Redis connection and the reader that
    /// hands them to namespaces (default [`DEFAULT_PUBSUB_BUFFER`], 16,384).
    /// Overflow loses messages and is counted in
    /// [`RedisStatsSnapshot::lagged`](super::RedisStatsSnapshot::lagged).
    /// Fred allocates this many slots for each of the subscriber
    /// connection's event channels (about 0.65 KB per unit in all).
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

    /// Bytes of each websocket connection's read buffer (default
    /// [`DEFAULT_WS_READ_BUFFER`], 1 KiB; engineioxide's own is 4 KiB). It
    /// is memory per connection; raise it for clients that send large
    /// messages often (fewer reads per message).
    ///
    /// ```
    /// # use broadcast_core::redis::RedisConfig;
    /// let c = RedisConfig::from_url("redis://127.0.0.1:7000")?.ws_read_buffer(4096);
    /// # Ok::<(), broadcast_core::redis::RedisError>(())
    /// ```
    pub fn ws_read_buffer(mut self, bytes: usize) -> Self {
        self.ws_read_buffer = bytes;
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
    /// the framework's (the adapter, the socket buffer and the websocket
    /// read buffer), so they override those.
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

    pub(crate) fn ws_read_buffer_value(&self) -> usize {
        self.ws_read_buffer
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

    /// The servers as one line for logs and errors, without credentials.
    pub(crate) fn target(&self) -> String {
        let servers = self.servers().join(",");
        let tls = if self.is_tls() { " (TLS)" } else { "" };
        if self.is_cluster() {
            format!("cluster {servers}{tls}")
        } else {
            format!("{servers}{tls}")
        }
    }

    /// The TLS configuration for fred, built once: `None` for plaintext.
    fn fred_tls(&self) -> Result<Option<TlsConfig>, RedisError> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        if !tls.wanted {
            return Err(RedisError::InvalidConfig(
                "a CA file or client certificate is set but the URL is plaintext redis://; use rediss:// for TLS",
            ));
        }
        if let Some(built) = tls.built.get() {
            return Ok(Some(built.clone()));
        }
        let built = tls.build()?;
        Ok(Some(tls.built.get_or_init(|| built).clone()))
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
        self.fred_tls()?;
        Ok(())
    }

    /// Builds and connects a plain fred client (RESP3, reconnect policy,
    /// command timeout); a failure names the target.
    pub(crate) async fn connect_plain(&self) -> Result<fred::clients::Client, RedisError> {
        use fred::interfaces::ClientLike;
        let target = self.target();
        let client = self
            .fred_builder()
            .build()
            .map_err(|source| RedisError::Connect {
                target: target.clone(),
                source,
            })?;
        client
            .init()
            .await
            .map_err(|source| RedisError::Connect { target, source })?;
        Ok(client)
    }

    /// A fred builder with every setting applied, for a connection that
    /// receives no pub/sub messages. Call [`validate`](Self::validate)
    /// first: it reports bad TLS files.
    pub(crate) fn fred_builder(&self) -> fred::prelude::Builder {
        self.builder(EVENT_BUFFER)
    }

    /// [`fred_builder`](Self::fred_builder) for the subscriber connection,
    /// whose pub/sub channel holds [`pubsub_buffer`](Self::pubsub_buffer)
    /// messages.
    pub(crate) fn subscriber_builder(&self) -> fred::prelude::Builder {
        self.builder(self.pubsub_buffer)
    }

    fn builder(&self, event_buffer: usize) -> fred::prelude::Builder {
        let tls = match self.fred_tls() {
            Ok(tls) => tls,
            Err(error) => {
                // Only if `validate` was skipped. A builder without a config
                // fails to build any client: never a plaintext fallback.
                tracing::error!(%error, target = %self.target(), "Redis TLS settings unusable");
                return fred::prelude::Builder::default();
            }
        };
        let config = Config {
            tls,
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
            broadcast_channel_capacity: event_buffer,
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

/// A URL checked for what the framework honours, with its plaintext twin
/// for fred's parser: given `rediss`, fred would set up TLS by itself, with
/// none of the settings of [`RedisConfig`].
struct StrictUrl {
    tls: bool,
    cluster: bool,
    plain: String,
    has_query: bool,
    has_path: bool,
}

impl StrictUrl {
    fn parse(raw: &str) -> Result<Self, RedisError> {
        let unsupported = |part: String| RedisError::UnsupportedUrl {
            url: redact(raw),
            part,
        };
        let url = url::Url::parse(raw).map_err(|e| RedisError::InvalidUrl {
            url: redact(raw),
            source: fred::error::Error::new(fred::error::ErrorKind::Config, e.to_string()),
        })?;
        let (tls, cluster) = match url.scheme() {
            "redis" => (false, false),
            "rediss" => (true, false),
            "redis-cluster" => (false, true),
            "rediss-cluster" => (true, true),
            other => {
                return Err(unsupported(format!(
                    "scheme `{other}://` (expected redis://, rediss://, redis-cluster:// or rediss-cluster://)"
                )));
            }
        };
        // Values are not quoted back: a mistyped URL may have a piece of
        // the password there.
        if url.fragment().is_some() {
            return Err(unsupported("a fragment (`#...`)".into()));
        }
        for (key, value) in url.query_pairs() {
            match &*key {
                "node" if cluster => {}
                "node" => {
                    return Err(unsupported(
                        "parameter `node` needs a cluster URL (redis-cluster:// or rediss-cluster://)"
                            .into(),
                    ));
                }
                "protocol" if value.eq_ignore_ascii_case("resp3") || value == "3" => {}
                "protocol" => {
                    return Err(unsupported(
                        "parameter `protocol`: every connection is RESP3 (protocol=resp3)".into(),
                    ));
                }
                other => return Err(unsupported(format!("unknown parameter `{other}`"))),
            }
        }
        let has_path = !matches!(url.path(), "" | "/");
        if cluster && has_path {
            return Err(unsupported(
                "a database path in a cluster URL (a cluster has only database 0)".into(),
            ));
        }
        let Some(scheme_end) = raw.find("://") else {
            return Err(unsupported("no `//` after the scheme".into()));
        };
        let plain_scheme = if cluster { "redis-cluster" } else { "redis" };
        Ok(Self {
            tls,
            cluster,
            plain: format!("{plain_scheme}{}", &raw[scheme_end..]),
            has_query: url.query().is_some(),
            has_path,
        })
    }
}

/// Hides the credentials of a URL or node address for logs and errors:
/// everything before the last `@`, so that a password holding `/`, `?`, `#`
/// or `@` is hidden whole.
pub(crate) fn redact(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    match rest.rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
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
        assert_eq!(redact("u:secret@h:1"), "***@h:1");
        assert_eq!(redact("rediss://u:se/c?r#e@t@h:1"), "rediss://***@h:1");
    }

    fn unsupported(url: &str) -> String {
        match RedisConfig::from_url(url) {
            Err(e @ RedisError::UnsupportedUrl { .. }) => e.to_string(),
            other => panic!("{url}: expected UnsupportedUrl, got {other:?}"),
        }
    }

    #[test]
    fn what_is_not_honoured_is_refused_naming_the_url_and_the_part() {
        let msg = unsupported("redis://u:secret@h:1?foo=1");
        assert!(msg.contains("`redis://***@h:1?foo=1`"), "{msg}");
        assert!(msg.contains("unknown parameter `foo`"), "{msg}");
        assert!(!msg.contains("secret"), "{msg}");
        let msg = unsupported("http://u:secret@h:1");
        assert!(msg.contains("scheme `http://`"), "{msg}");
        assert!(!msg.contains("secret"), "{msg}");
        for url in [
            "redis-sentinel://h:1?sentinelServiceName=m",
            "valkey://h:1",
            "redis+unix:///tmp/r.sock",
        ] {
            assert!(unsupported(url).contains("scheme"), "{url}");
        }
        assert!(unsupported("rediss://h:1?node=b:2").contains("`node` needs a cluster URL"));
        assert!(unsupported("redis://h:1?protocol=resp2").contains("RESP3"));
        assert!(unsupported("redis://h:1#x").contains("fragment"));
        assert!(unsupported("redis-cluster://h:1/2").contains("database"));
        assert!(RedisConfig::from_url("redis://h:1/2?protocol=resp3").is_ok());
        let nodes = RedisConfig::from_nodes(["rediss://a:1", "redis://b:2"]).unwrap_err();
        assert!(nodes.to_string().contains("mix"), "{nodes}");
        let nodes = RedisConfig::from_nodes(["a:1?foo=1"]).unwrap_err();
        assert!(
            matches!(nodes, RedisError::UnsupportedUrl { .. }),
            "{nodes}"
        );
    }

    #[test]
    fn rediss_schemes_and_nodes_ask_for_tls() {
        let c = RedisConfig::from_url("rediss://h:1").unwrap();
        assert!(c.is_tls() && !c.is_cluster());
        assert_eq!(c.target(), "h:1 (TLS)");
        let c = RedisConfig::from_url("rediss-cluster://h:1?node=g:2").unwrap();
        assert!(c.is_tls() && c.is_cluster());
        assert_eq!(c.servers(), ["g:2", "h:1"]);
        let c = RedisConfig::from_nodes(["rediss://a:1", "b:2"]).unwrap();
        assert!(c.is_tls() && c.is_cluster());
        assert!(!RedisConfig::from_url("redis://h:1").unwrap().is_tls());
    }

    #[test]
    fn tls_files_on_a_plaintext_url_are_refused() {
        let c = RedisConfig::from_url("redis://h:1")
            .unwrap()
            .ca_file("/x/ca.crt");
        assert!(!c.is_tls());
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("rediss://"), "{err}");
        let c = RedisConfig::from_url("redis://h:1")
            .unwrap()
            .client_cert("/x/c.crt", "/x/c.key");
        assert!(c.validate().is_err());
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_an_error_naming_it() {
        let c = RedisConfig::from_url("rediss://h:1")
            .unwrap()
            .ca_file("/nonexistent/ca.crt");
        let err = c.validate().unwrap_err();
        assert!(matches!(err, RedisError::Tls { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/ca.crt"), "{err}");
        // The builder never falls back to plaintext: it builds no client.
        assert!(c.fred_builder().get_config().is_none());
        let dir = std::env::temp_dir().join(format!("broadcast-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.crt");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = RedisConfig::from_url("rediss://h:1")
            .unwrap()
            .ca_file(&empty)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_environment_gives_the_url_and_the_tls_files() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| std::ffi::OsString::from(*v))
            }
        };
        let c = RedisConfig::from_vars(vars(&[
            ("REDIS_URL", "rediss://h:1"),
            ("REDIS_CA_FILE", "/x/ca.crt"),
            ("REDIS_CLIENT_CERT", "/x/c.crt"),
            ("REDIS_CLIENT_KEY", "/x/c.key"),
        ]))
        .unwrap();
        let tls = c.tls.as_ref().unwrap();
        assert!(tls.wanted);
        assert_eq!(tls.ca_file.as_deref(), Some(Path::new("/x/ca.crt")));
        assert!(tls.client_cert.is_some());
        let c = RedisConfig::from_vars(vars(&[
            ("REDIS_URL", "rediss://a:1, b:2"),
            ("REDIS_CA_FILE", ""),
        ]))
        .unwrap();
        assert!(c.is_cluster() && c.is_tls());
        assert!(c.tls.as_ref().unwrap().ca_file.is_none());
        let half = RedisConfig::from_vars(vars(&[
            ("REDIS_URL", "rediss://h:1"),
            ("REDIS_CLIENT_CERT", "/x/c.crt"),
        ]));
        assert!(matches!(half, Err(RedisError::InvalidConfig(_))));
        let plain = RedisConfig::from_vars(vars(&[
            ("REDIS_URL", "redis://h:1"),
            ("REDIS_CA_FILE", "/x/ca.crt"),
        ]))
        .unwrap();
        assert!(plain.validate().is_err());
        assert!(matches!(
            RedisConfig::from_vars(vars(&[])),
            Err(RedisError::MissingEnv { .. })
        ));
    }

    #[test]
    fn the_password_is_never_printed() {
        let c = RedisConfig::from_url("rediss://user:hunter2secret@h:1/0")
            .unwrap()
            .ca_file("/x/ca.crt");
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2secret"), "{debug}");
        assert!(debug.contains("password: Some(\"***\")"), "{debug}");
        let c = RedisConfig::from_nodes(["redis://:hunter2secret@a:1", "b:2"]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2secret"));
        for bad in [
            "redis://u:hunter2secret@h:notaport",
            "redis://u:hunter2secret@h:1?foo=1",
            "ftp://u:hunter2secret@h:1",
        ] {
            let err = RedisConfig::from_url(bad).unwrap_err();
            for text in [err.to_string(), format!("{err:?}")] {
                assert!(!text.contains("hunter2secret"), "{text}");
            }
        }
        let err = RedisConfig::from_nodes(["u:hunter2secret@h:1?x=1"]).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("hunter2secret"), "{err}");
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
        let b = c.subscriber_builder();
        assert_eq!(
            b.get_config().map(|c| c.version.clone()),
            Some(RespVersion::RESP3)
        );
        assert_eq!(b.get_performance_config().broadcast_channel_capacity, 77);
        assert_eq!(
            c.fred_builder()
                .get_performance_config()
                .broadcast_channel_capacity,
            EVENT_BUFFER
        );
        assert_eq!(
            b.get_performance_config().default_command_timeout,
            Duration::from_millis(300)
        );
        assert!(b.get_policy().is_some());
    }
}
