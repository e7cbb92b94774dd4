//! Counters of one Redis connection (a server's or a worker's).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) publish_failed: AtomicU64,
    pub(crate) bytes_published: AtomicU64,
    pub(crate) local_only: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) lagged: AtomicU64,
    pub(crate) undeliverable: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) overflowed: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) resubscribes: AtomicU64,
    pub(crate) resubscribe_failed: AtomicU64,
    pub(crate) no_receivers: AtomicU64,
    /// Shard channels this process's subscriber is subscribed to on its
    /// current connection, as confirmed by Redis.
    pub(crate) subscribed: Subscribed,
}

/// The shard channels a subscriber holds right now. Redis counts the
/// publishing server's own subscription in SPUBLISH's reply, so the
/// publisher needs to know whether it holds the channel to count the
/// other servers; the health check needs it to know the subscriptions
/// survived a reconnect.
#[derive(Debug, Default)]
pub(crate) struct Subscribed(RwLock<HashSet<String>>);

impl Subscribed {
    // Every write is one insert, remove or clear, so the set stays
    // consistent even if a holder panicked.
    pub(crate) fn insert(&self, channel: &str) {
        let mut set = self.0.write().unwrap_or_else(PoisonError::into_inner);
        set.insert(channel.to_owned());
    }

    pub(crate) fn remove(&self, channel: &str) {
        let mut set = self.0.write().unwrap_or_else(PoisonError::into_inner);
        set.remove(channel);
    }

    pub(crate) fn clear(&self) {
        let mut set = self.0.write().unwrap_or_else(PoisonError::into_inner);
        set.clear();
    }

    pub(crate) fn contains(&self, channel: &str) -> bool {
        let set = self.0.read().unwrap_or_else(PoisonError::into_inner);
        set.contains(channel)
    }
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Live counters of one Redis connection; cheap to clone. Read them with
/// [`snapshot`](Self::snapshot). Broadcast-level counters (sent, skipped,
/// failed, payload bytes) are in [`Broadcaster::stats`](crate::Broadcaster::stats).
///
/// ```
/// let stats = broadcast_core::redis::RedisStats::default();
/// let s = stats.snapshot();
/// assert_eq!(s.lagged, 0);
/// assert_eq!(s.lost(), 0);
/// ```
#[derive(Clone, Debug, Default)]
pub struct RedisStats {
    pub(crate) inner: Arc<Counters>,
}

/// A point-in-time copy of [`RedisStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RedisStatsSnapshot {
    /// Broadcast requests published to Redis (one per namespace of a broadcast).
    pub published: u64,
    /// Publishes that failed or timed out.
    pub publish_failed: u64,
    /// Bytes of the published requests (msgpack).
    pub bytes_published: u64,
    /// Server broadcasts delivered to this server's sockets only, because
    /// publishing to the other servers failed.
    pub local_only: u64,
    /// Messages received from Redis on the adapter's channels.
    pub received: u64,
    /// Bytes of the received messages.
    pub bytes_received: u64,
    /// Messages lost because fred's pub/sub buffer overflowed before they
    /// were read (raise [`RedisConfig::pubsub_buffer`](super::RedisConfig::pubsub_buffer)).
    /// Any non-zero value means clients missed events.
    pub lagged: u64,
    /// Messages dropped because their namespace's adapter had gone away.
    pub undeliverable: u64,
    /// Messages dropped unread because socketioxide could not have handled
    /// them safely: binary or Connect packets, unknown request types,
    /// undecodable or oversize data. Anyone
    /// who can publish on the prefix's channels can cause them; see the
    /// README's security model.
    pub rejected: u64,
    /// Messages dropped because their namespace's queue was over its
    /// message or byte budget ([`RedisConfig::adapter_buffer`](super::RedisConfig::adapter_buffer),
    /// [`RedisConfig::adapter_buffer_bytes`](super::RedisConfig::adapter_buffer_bytes)):
    /// that namespace's adapter is not keeping up. Clients missed events.
    pub overflowed: u64,
    /// Times the connection to a Redis server was re-established.
    pub reconnects: u64,
    /// Successful re-subscriptions after a reconnect.
    pub resubscribes: u64,
    /// Re-subscriptions that failed (retried until they succeed).
    pub resubscribe_failed: u64,
    /// Publishes that reached no other process: SPUBLISH's count of
    /// receivers, minus this server's own subscription, was 0. Normal when
    /// this is the only server (or a worker with no server running);
    /// otherwise the other servers were not subscribed (e.g. still
    /// re-subscribing after a Redis restart) and missed the event. Each
    /// broadcast's own count is in
    /// [`Outcome::remote_receivers`](crate::Outcome::remote_receivers).
    pub no_receivers: u64,
}

impl RedisStatsSnapshot {
    /// Messages that reached this process but not its sockets.
    ///
    /// ```
    /// let s = broadcast_core::redis::RedisStats::default().snapshot();
    /// assert_eq!(s.lost(), s.lagged + s.undeliverable + s.overflowed);
    /// ```
    pub fn lost(&self) -> u64 {
        self.lagged + self.undeliverable + self.overflowed
    }
}

impl RedisStats {
    /// The counters now.
    ///
    /// ```
    /// let stats = broadcast_core::redis::RedisStats::default();
    /// assert_eq!(stats.snapshot().published, 0);
    /// ```
    pub fn snapshot(&self) -> RedisStatsSnapshot {
        let c = &self.inner;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RedisStatsSnapshot {
            published: load(&c.published),
            publish_failed: load(&c.publish_failed),
            bytes_published: load(&c.bytes_published),
            local_only: load(&c.local_only),
            received: load(&c.received),
            bytes_received: load(&c.bytes_received),
            lagged: load(&c.lagged),
            undeliverable: load(&c.undeliverable),
            rejected: load(&c.rejected),
            overflowed: load(&c.overflowed),
            reconnects: load(&c.reconnects),
            resubscribes: load(&c.resubscribes),
            resubscribe_failed: load(&c.resubscribe_failed),
            no_receivers: load(&c.no_receivers),
        }
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.inner
    }
}
