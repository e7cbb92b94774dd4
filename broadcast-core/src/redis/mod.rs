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
//!   server is disconnected or not yet re-subscribed are not replayed
//!   (Redis pub/sub keeps nothing); they are not silent either: the
//!   publisher's outcome says how many other servers received each
//!   publish ([`Outcome::remote_receivers`](crate::Outcome::remote_receivers),
//!   [`RedisStatsSnapshot::no_receivers`]) and the missing server's
//!   [`RedisConnection::is_ready`] is false until it has re-subscribed.
//! - *Redis down*: `broadcast()` fails within the command timeout (default
//!   2 s) with a [`TransportError`](crate::TransportError); on a server the
//!   local sockets still get the event (`RemoteFailed`,
//!   [`BroadcastError::delivered_locally`](crate::BroadcastError::delivered_locally)):
//!   retry with [`RedisSocketIo::remote`], not the usual broadcaster, or
//!   they get it twice.
//! - *What arrives on the channels*: a packet reaches socketioxide only if
//!   its parser can serialize it (a text event); binary or Connect packets,
//!   garbage and oversize data, which would stop the namespace's adapter or
//!   cost memory, are dropped, counted in [`RedisStatsSnapshot::rejected`]
//!   and logged at `warn` at most once a second. Requests without a packet
//!   (socketioxide's own fetches, joins, leaves, disconnects) pass. Redis
//!   is still trusted: see the README's security model.
//! - *Memory*: each channel's queue is bounded in messages and bytes
//!   ([`RedisConfig::adapter_buffer_bytes`]); past it that namespace's
//!   messages are dropped and counted ([`RedisStatsSnapshot::overflowed`]),
//!   and the other namespaces are not held up.
//! - *Cluster*: socketioxide-redis uses one request channel per namespace
//!   (`{prefix}-request#{namespace}#`), so load spreads over shards by
//!   namespace, not by room.
//! - *TLS*: `rediss://` connects through rustls with certificate
//!   verification on (see [`RedisConfig`]'s TLS section); a handshake or
//!   verification failure fails [`server`] and [`worker`] at startup.
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
use crate::history::{Feed, HistoryRooms, HistoryTransport, Store};
use crate::presence::Presence;
use crate::transport::{CompactRequestLayer, Transport};
pub use history::HISTORY_SHARDS;
use history::RedisStore;

mod append;
mod config;
mod driver;
mod error;
mod history;
mod inbound;
mod presence;
mod publish;
mod rooms;
mod script;
mod stats;

pub use config::{
    DEFAULT_ADAPTER_BUFFER, DEFAULT_COMMAND_TIMEOUT, DEFAULT_PREFIX, DEFAULT_PUBSUB_BUFFER,
    DEFAULT_SOCKET_BUFFER, DEFAULT_WS_READ_BUFFER, REDIS_CA_FILE_ENV, REDIS_CLIENT_CERT_ENV,
    REDIS_CLIENT_KEY_ENV, REDIS_URL_ENV, RedisConfig,
};
pub use driver::{DEFAULT_ADAPTER_BUFFER_BYTES, MeteredFredDriver};
pub use error::{PublishError, RedisError};
/// The fred version the driver is built on, to name its types.
pub use fred;
pub use fred::prelude::ReconnectPolicy;
use presence::RedisPresenceStore;
pub use presence::{ALIVE_TTL, HEARTBEAT, SWEEP};
pub use publish::IDEMPOTENCY_TTL;
use publish::{RedisServerTransport, RedisTransport};
use rooms::RoomChannels;

use crate::join::subscriptions::RoomSubscriber;
/// The socketioxide-redis version the adapter comes from.
pub use socketioxide_redis;
pub use stats::{RedisStats, RedisStatsSnapshot};

/// The socketioxide adapter of a server set up by [`server`]: socketioxide-redis
/// on fred. Name it in handlers: `SocketRef<RedisAdapter>`.
pub type RedisAdapter = CustomRedisAdapter<socketioxide::adapter::Emitter, MeteredFredDriver>;

/// What [`server`] builds.
#[non_exhaustive]
pub struct RedisSocketIo {
    /// The tower layer to add to an axum router (or any tower stack):
    /// socketioxide's, behind a [`CompactRequestLayer`] (see there why).
    pub layer: CompactRequestLayer<SocketIoLayer<RedisAdapter>>,
    /// The socketioxide handle: declare namespaces with
    /// `io.ns(path, handler).await?`.
    pub io: SocketIo<RedisAdapter>,
    /// A broadcaster delivering to this server's sockets and, through Redis,
    /// to every other server's.
    pub broadcaster: Broadcaster,
    /// A broadcaster publishing to the other servers only, not to this
    /// server's sockets: the retry of a broadcast that failed with
    /// [`BroadcastError::delivered_locally`](crate::BroadcastError::delivered_locally),
    /// which would otherwise reach the local sockets twice.
    ///
    /// ```no_run
    /// # use broadcast_core::BroadcastEvent;
    /// # #[derive(Clone, serde::Serialize, BroadcastEvent)]
    /// # struct Ping;
    /// # async fn run(parts: broadcast_core::redis::RedisSocketIo) -> Result<(), broadcast_core::BroadcastError> {
    /// if let Err(e) = parts.broadcaster.broadcast(Ping).await {
    ///     if e.delivered_locally() {
    ///         parts.remote.broadcast(Ping).await?;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub remote: Broadcaster,
    /// Stats and shutdown of the Redis connection.
    pub connection: RedisConnection,
    /// The presence of rooms, shared by every server and worker (see
    /// [`presence`](crate::presence)).
    pub presence: Presence,
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
    /// The presence of rooms, as the servers record it (queries only).
    pub presence: Presence,
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
        .ws_read_buffer_size(config.ws_read_buffer_value())
        .with_adapter::<RedisAdapter>(ctr);
    let (layer, io) = config.configure_socketio(builder).build_layer();
    let layer = CompactRequestLayer::new(layer);
    let transport = RedisServerTransport::new(io.clone(), &driver, &config);
    let remote = transport.remote_only();
    if config.uses_room_channels() {
        let channels = Arc::new(RoomChannels::new(driver.clone(), &config, io.clone()));
        let subscriber: Arc<dyn RoomSubscriber> = channels.clone();
        crate::join::subscriptions::register(io.config().server_id, &subscriber);
        // The sweep's task holds it (the registry only refers to it) until
        // the connection is shut down.
        channels.spawn_sweep(driver.closed());
    }
    let rooms = Arc::new(HistoryRooms::from_registry());
    let (broadcaster, remote) = if rooms.is_empty() {
        (config.broadcaster(transport), config.broadcaster(remote))
    } else {
        let feed = Feed::new(io.clone());
        let store: Arc<dyn Store> = Arc::new(RedisStore::new(
            driver.client().clone(),
            &config,
            driver.stats().clone(),
        ));
        history::subscribe(&driver, &config, &feed)
            .await
            .map_err(|source| RedisError::Connect {
                target: config.target(),
                source,
            })?;
        feed.serve(io.config().server_id, rooms.clone(), store.clone());
        let remote = HistoryTransport::new(
            remote,
            rooms.clone(),
            store.clone(),
            None::<Arc<Feed<RedisAdapter>>>,
        );
        let transport = HistoryTransport::new(transport, rooms, store, Some(feed));
        (config.broadcaster(transport), config.broadcaster(remote))
    };
    let server_id = io.config().server_id.to_string();
    let store = Arc::new(RedisPresenceStore::connect(&config, server_id.clone()).await?);
    let service = crate::presence::registry::register(&server_id, store.clone());
    // Heartbeats and sweeps only where some room has presence: a program
    // without it sends Redis nothing for presence.
    if crate::registry::rooms().any(|r| r.presence) {
        presence::spawn_upkeep(store, Arc::downgrade(&service));
    }
    tracing::info!(
        server_id = %io.config().server_id,
        prefix = config.prefix_str(),
        "Socket.IO server on Redis ready"
    );
    Ok(RedisSocketIo {
        layer,
        io,
        broadcaster,
        remote,
        connection,
        presence: Presence::new(service),
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
    let rooms = Arc::new(HistoryRooms::from_registry());
    let broadcaster = if rooms.is_empty() {
        config.broadcaster(transport)
    } else {
        let store: Arc<dyn Store> = Arc::new(RedisStore::new(
            transport.client().clone(),
            &config,
            connection.stats_handle(),
        ));
        config.broadcaster(HistoryTransport::new(
            transport,
            rooms,
            store,
            None::<Arc<Feed<RedisAdapter>>>,
        ))
    };
    let store = RedisPresenceStore::connect(&config, String::new()).await?;
    let service = Arc::new(crate::presence::service::PresenceService::new(Arc::new(
        store,
    )));
    Ok(RedisWorker {
        broadcaster,
        connection,
        presence: Presence::new(service),
    })
}

impl RedisConfig {
    /// A broadcaster over `transport` with this configuration's limits.
    fn broadcaster(&self, transport: impl Transport) -> Broadcaster {
        Broadcaster::builder(transport)
            .max_payload_bytes(self.max_payload_bytes_value())
            .build()
    }
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

    /// Whether Redis confirmed, on the current connection, every shard
    /// channel the client is meant to hold (always, for a plain client).
    fn holds_subscriptions(&self, stats: &RedisStats) -> bool {
        match self {
            Self::Plain(_) => true,
            Self::Subscriber(c) => c
                .tracked_shard_channels()
                .iter()
                .all(|channel| stats.counters().subscribed.contains(channel)),
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
            .field("ready", &self.is_ready())
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

    /// Whether every underlying connection is up. A server may be connected
    /// and still miss broadcasts while it re-subscribes after a reconnect:
    /// a health check wants [`is_ready`](Self::is_ready).
    ///
    /// ```no_run
    /// # fn f(connection: &broadcast_core::redis::RedisConnection) -> &'static str {
    /// if connection.is_connected() { "ok" } else { "redis down" }
    /// # }
    /// ```
    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    /// Whether this process sends and receives broadcasts through Redis
    /// right now, for a health check: connected and, on a server, every
    /// shard subscription of its namespaces confirmed by Redis on the
    /// current connection. False while Redis is down and while a server
    /// re-subscribes after a reconnect (other servers' broadcasts do not
    /// reach its sockets then). For a worker, the same as
    /// [`is_connected`](Self::is_connected).
    ///
    /// It follows fred's reconnect notification, so for an instant after a
    /// reconnect, before the notification is handled, it may still be true.
    ///
    /// ```no_run
    /// # fn f(connection: &broadcast_core::redis::RedisConnection) -> u16 {
    /// if connection.is_ready() { 200 } else { 503 }
    /// # }
    /// ```
    pub fn is_ready(&self) -> bool {
        self.is_connected() && self.client.holds_subscriptions(&self.stats)
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
