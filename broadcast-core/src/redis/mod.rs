//! Delivery across processes through Redis (feature `redis`).
//!
//! Several server processes and background workers share one Redis (or Redis
//! Cluster). A broadcast from any of them reaches the matching sockets on
//! every server:
//!
//! - **Servers** call [`server`] once: it builds a socketioxide [`SocketIo`]
//!   with the socketioxide-redis adapter on fred (sharded pub/sub, RESP3,
//!   reconnect policy, command timeout, key prefix) and returns the tower
//!   layer, the io handle and a [`Broadcaster`] whose transport delivers to
//!   local sockets even while Redis is down.
//! - **Workers** (no Socket.IO server) call [`worker`]: broadcasts are
//!   published as socketioxide-redis requests, so the servers deliver them.
//!
//! # Guarantees and limits
//!
//! - *Bursts*: the buffers between Redis and the sockets are sized
//!   ([`RedisConfig::pubsub_buffer`], [`RedisConfig::adapter_buffer`],
//!   [`RedisConfig::socket_buffer`]); a message lost to an overflow anyway
//!   is counted in [`RedisStatsSnapshot::lagged`] or
//!   [`RedisStatsSnapshot::overflowed`] and logged at `error`.
//! - *Redis restart*: fred reconnects with the configured policy and the
//!   server re-subscribes its shard channels by itself
//!   ([`RedisStatsSnapshot::reconnects`]). Messages published while a
//!   server is disconnected are not replayed (Redis pub/sub keeps nothing).
//! - *Redis down*: `broadcast()` fails within the command timeout (default
//!   2 s) with a [`TransportError`](crate::TransportError); on a server the
//!   local sockets still get the event (`RemoteFailed`).
//! - *What arrives on the channels*: only broadcasts of text events, the
//!   one request this framework publishes, reach socketioxide; anything
//!   else (binary or Connect packets, joins, disconnects, garbage, oversize
//!   data) is dropped, counted in [`RedisStatsSnapshot::rejected`] and
//!   logged at `warn` at most once a second. Redis is still trusted: see
//!   the README's security model.
//! - *Memory*: each channel's queue is bounded in messages and bytes
//!   ([`RedisConfig::adapter_buffer_bytes`]); past it that namespace's
//!   messages are dropped and counted ([`RedisStatsSnapshot::overflowed`]),
//!   and the other namespaces are not held up.
//! - *Cluster*: socketioxide-redis uses one request channel per namespace
//!   (`{prefix}-request#{namespace}#`), so load spreads over shards by
//!   namespace, not by room.
//! - Redis itself disconnects subscribers whose output buffer grows past
//!   `client-output-buffer-limit pubsub` (32 MB hard by default); raise it
//!   for very large bursts.
//!
//! ```no_run
//! use broadcast_core::redis::{RedisAdapter, RedisConfig};
//! use socketioxide::extract::SocketRef;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let parts = broadcast_core::redis::server(RedisConfig::from_env()?).await?;
//! // Remote adapters subscribe when the namespace is created: await it.
//! parts.io.ns("/", async |socket: SocketRef<RedisAdapter>| {
//!     socket.join("lobby");
//! }).await?;
//! broadcast_core::install(parts.broadcaster.clone())?;
//! // Serve it: `axum::Router::new().layer(parts.layer)`.
//! # let _layer = parts.layer;
//! # Ok(()) }
//! ```
//!
//! [`SocketIo`]: socketioxide::SocketIo
//! [`Broadcaster`]: crate::Broadcaster

use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::{ClientLike, EventInterface};
use socketioxide::SocketIo;
use socketioxide::layer::SocketIoLayer;
use socketioxide_redis::{CustomRedisAdapter, RedisAdapterConfig, RedisAdapterCtr};
use tokio::sync::{broadcast, watch};

use crate::broadcaster::Broadcaster;

mod config;
mod driver;
mod error;
mod inbound;
mod publish;
mod stats;

pub use config::{
    DEFAULT_ADAPTER_BUFFER, DEFAULT_COMMAND_TIMEOUT, DEFAULT_PREFIX, DEFAULT_PUBSUB_BUFFER,
    DEFAULT_SOCKET_BUFFER, REDIS_URL_ENV, RedisConfig,
};
pub use driver::{DEFAULT_ADAPTER_BUFFER_BYTES, MeteredFredDriver};
pub use error::{PublishError, RedisError};
/// The fred version the driver is built on, to name its types.
pub use fred;
pub use fred::prelude::ReconnectPolicy;
use publish::{RedisServerTransport, RedisTransport};
/// The socketioxide-redis version the adapter comes from.
pub use socketioxide_redis;
pub use stats::{RedisStats, RedisStatsSnapshot};

/// The socketioxide adapter of a server set up by [`server`]: socketioxide-redis
/// on fred. Name it in handlers: `SocketRef<RedisAdapter>`.
pub type RedisAdapter = CustomRedisAdapter<socketioxide::adapter::Emitter, MeteredFredDriver>;

/// What [`server`] builds.
#[non_exhaustive]
pub struct RedisSocketIo {
    /// The tower layer to add to an axum router (or any tower stack).
    pub layer: SocketIoLayer<RedisAdapter>,
    /// The socketioxide handle: declare namespaces with
    /// `io.ns(path, handler).await?`.
    pub io: SocketIo<RedisAdapter>,
    /// A broadcaster delivering to this server's sockets and, through Redis,
    /// to every other server's.
    pub broadcaster: Broadcaster,
    /// Stats and shutdown of the Redis connection.
    pub connection: RedisConnection,
}

impl std::fmt::Debug for RedisSocketIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSocketIo")
            .field("server_id", &self.io.config().server_id)
            .field("broadcaster", &self.broadcaster)
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

/// What [`worker`] builds.
#[derive(Debug)]
#[non_exhaustive]
pub struct RedisWorker {
    /// A broadcaster publishing to every server through Redis.
    pub broadcaster: Broadcaster,
    /// Stats and shutdown of the Redis connection.
    pub connection: RedisConnection,
}

/// Sets up a Socket.IO server whose broadcasts reach the sockets of every
/// server sharing the Redis: see the [module docs](self). Socket.IO
/// settings of your own (ping interval, request path, ...) go in
/// [`RedisConfig::socketio`].
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use broadcast_core::redis::{RedisConfig, server};
/// let parts = server(RedisConfig::from_url("redis://127.0.0.1:6379")?).await?;
/// println!("{:?}", parts.connection.stats());
/// # Ok(()) }
/// ```
pub async fn server(config: RedisConfig) -> Result<RedisSocketIo, RedisError> {
    let (driver, connection) = MeteredFredDriver::connect(&config).await?;
    let adapter_config = RedisAdapterConfig::new()
        .with_prefix(config.prefix_str().to_owned())
        .with_stream_buffer(config.adapter_buffer_value());
    let ctr = RedisAdapterCtr::new_with_driver(driver.clone(), adapter_config);
    let builder = SocketIo::builder()
        .max_buffer_size(config.socket_buffer_value())
        .with_adapter::<RedisAdapter>(ctr);
    let (layer, io) = config.configure_socketio(builder).build_layer();
    let transport = RedisServerTransport::new(io.clone(), &driver, &config);
    tracing::info!(
        server_id = %io.config().server_id,
        prefix = config.prefix_str(),
        "Socket.IO server on Redis ready"
    );
    Ok(RedisSocketIo {
        layer,
        io,
        broadcaster: Broadcaster::builder(transport)
            .max_payload_bytes(config.max_payload_bytes_value())
            .build(),
        connection,
    })
}

/// Connects a worker: a [`Broadcaster`] for a process without a Socket.IO
/// server, publishing to every server through Redis.
///
/// ```no_run
/// use broadcast_core::{BroadcastEvent, redis::{RedisConfig, worker}};
///
/// #[derive(serde::Serialize, BroadcastEvent)]
/// #[broadcast(on = "chat|{chat_id}")]
/// struct MessagePosted { chat_id: u64, text: String }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let w = worker(RedisConfig::from_env()?).await?;
/// w.broadcaster.broadcast(MessagePosted { chat_id: 1, text: "hi".into() }).await?;
/// w.connection.shutdown().await?;
/// # Ok(()) }
/// ```
pub async fn worker(config: RedisConfig) -> Result<RedisWorker, RedisError> {
    let transport = RedisTransport::connect(&config).await?;
    let connection = transport.connection();
    Ok(RedisWorker {
        broadcaster: Broadcaster::builder(transport)
            .max_payload_bytes(config.max_payload_bytes_value())
            .build(),
        connection,
    })
}

#[derive(Clone)]
pub(crate) enum Client {
    Plain(fred::clients::Client),
    Subscriber(fred::clients::SubscriberClient),
}

impl Client {
    fn is_connected(&self) -> bool {
        match self {
            Self::Plain(c) => c.is_connected(),
            Self::Subscriber(c) => c.is_connected(),
        }
    }

    async fn quit(&self) -> Result<(), fred::error::Error> {
        match self {
            Self::Plain(c) => c.quit().await,
            Self::Subscriber(c) => c.quit().await,
        }
    }

    fn reconnect_rx(&self) -> broadcast::Receiver<fred::prelude::Server> {
        match self {
            Self::Plain(c) => c.reconnect_rx(),
            Self::Subscriber(c) => c.reconnect_rx(),
        }
    }
}

/// A handle on one Redis connection (a server's or a worker's): its stats,
/// its state, and [`shutdown`](Self::shutdown). Cheap to clone; dropping it
/// does not close anything.
///
/// ```no_run
/// # async fn run(connection: broadcast_core::redis::RedisConnection) {
/// let s = connection.stats();
/// tracing::info!(published = s.published, lagged = s.lagged, reconnects = s.reconnects);
/// # }
/// ```
#[derive(Clone)]
pub struct RedisConnection {
    client: Client,
    stats: RedisStats,
    closed: Arc<watch::Sender<bool>>,
    target: Arc<str>,
    timeout: Duration,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("target", &self.target)
            .field("connected", &self.is_connected())
            .field("stats", &self.stats())
            .finish()
    }
}

impl RedisConnection {
    pub(crate) fn new(
        client: Client,
        stats: RedisStats,
        closed: Arc<watch::Sender<bool>>,
        target: String,
        timeout: Duration,
    ) -> Self {
        Self {
            client,
            stats,
            closed,
            target: target.into(),
            timeout,
        }
    }

    /// Counts reconnections of a plain client (the subscriber's are counted
    /// by its re-subscriber).
    pub(crate) fn spawn_reconnect_counter(&self) {
        let mut reconnects = self.client.reconnect_rx();
        let mut closed = self.closed.subscribe();
        let stats = self.stats.clone();
        let target = self.target.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    biased;
                    _ = closed.wait_for(|closed| *closed) => return,
                    event = reconnects.recv() => event,
                };
                match event {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        stats::Counters::add(&stats.counters().reconnects, 1);
                        tracing::info!(target = %target, "reconnected to Redis");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// The counters now.
    ///
    /// ```no_run
    /// # fn f(connection: &broadcast_core::redis::RedisConnection) {
    /// assert_eq!(connection.stats().lagged, 0, "clients missed events");
    /// # }
    /// ```
    pub fn stats(&self) -> RedisStatsSnapshot {
        self.stats.snapshot()
    }

    /// The live counters, to read later or export.
    ///
    /// ```no_run
    /// # fn f(connection: &broadcast_core::redis::RedisConnection) {
    /// let stats = connection.stats_handle();
    /// tokio::spawn(async move {
    ///     loop {
    ///         tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    ///         tracing::info!(stats = ?stats.snapshot(), "redis");
    ///     }
    /// });
    /// # }
    /// ```
    pub fn stats_handle(&self) -> RedisStats {
        self.stats.clone()
    }

    /// Whether every underlying connection is up (e.g. for a health check).
    ///
    /// ```no_run
    /// # fn f(connection: &broadcast_core::redis::RedisConnection) -> &'static str {
    /// if connection.is_connected() { "ok" } else { "redis down" }
    /// # }
    /// ```
    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    /// Stops the background tasks and closes the connection. Broadcasts
    /// after this fail. Waits at most the command timeout for Redis.
    ///
    /// ```no_run
    /// # async fn f(connection: broadcast_core::redis::RedisConnection) {
    /// if let Err(e) = connection.shutdown().await {
    ///     tracing::warn!("{e}");
    /// }
    /// # }
    /// ```
    pub async fn shutdown(&self) -> Result<(), RedisError> {
        self.closed.send_replace(true);
        let quit = tokio::time::timeout(self.timeout, self.client.quit()).await;
        match quit {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(RedisError::Shutdown {
                target: self.target.to_string(),
                source,
            }),
            Err(_) => Err(RedisError::Shutdown {
                target: self.target.to_string(),
                source: fred::error::Error::new(
                    fred::error::ErrorKind::Timeout,
                    "QUIT got no answer",
                ),
            }),
        }
    }
}
