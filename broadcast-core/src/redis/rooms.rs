//! Room channels: a broadcast to a typed room goes on that room's own
//! sharded channel, and a server subscribes to it only while it has sockets
//! in the room, so a server without members of a room receives nothing
//! for it (socketioxide-redis sends every broadcast of a namespace to every
//! server, whose cost then grows with the number of servers).
//!
//! # Which rooms
//!
//! [`has_channel`] decides, the same way in every process: the rooms of a
//! registered room type (`chat|1` for `#[room(key = "chat")]`) that keep no
//! history (those have their shard channels, `redis/history.rs`). Everything
//! else (whole namespaces, a socket's own id room, names an application
//! joined with socketioxide directly, deliveries with an id) stays on the
//! namespace channel, which every server keeps reading.
//!
//! # No gap at join
//!
//! The join protocol (and `Handshake::join`) awaits the room's subscription
//! before it puts a socket in a room and acknowledges, so a broadcast another process sends after the
//! ack is received. A room that has had no local socket for [`IDLE`] (by default) is
//! unsubscribed by the sweep, under the room's lock, which a subscribe
//! also takes: the two cannot interleave. A room joined some other way
//! (socketioxide's `socket.join` with a typed room's name) is found by the
//! sweep within ten [`SWEEP`]s and subscribed then; broadcasts to it from
//! other processes before that are not received.
//!
//! # Order
//!
//! One process's broadcasts to one room keep their order (one channel).
//! Broadcasts to different rooms travel on different channels (on Redis
//! Cluster, different shards), so a socket in two rooms may see two
//! processes' or two rooms' events in another order than they were sent,
//! as with socket.io's sharded adapter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use socketioxide::SocketIo;
use tokio::sync::watch;

use super::RedisAdapter;
use super::driver::MeteredFredDriver;
use super::publish::{push_request_channel, request_channel};
use crate::join::subscriptions::RoomSubscriber;
use crate::util::{BoxFuture, ByRoomType};

/// How long a room's channel stays subscribed after its last join while
/// no local socket is in it, by default
/// ([`RedisConfig::room_channel_idle`](super::RedisConfig::room_channel_idle)):
/// the gap between a join's subscribe and the socket entering the room is
/// microseconds; this is far longer.
pub(crate) const IDLE: Duration = Duration::from_secs(30);

/// How often the sweep retries failed subscriptions, subscribes rooms
/// joined outside the framework and drops idle ones.
pub(crate) const SWEEP: Duration = Duration::from_secs(1);

/// Every how many sweeps the local rooms are listed to find typed rooms
/// joined outside the framework (a listing walks every room of the server,
/// one per socket at least).
const DISCOVER_EVERY: u32 = 10;

/// The channel of `room`'s broadcasts. It starts with the namespace's
/// request channel, which is how socketioxide-redis's adapter recognises a
/// request (`chan.starts_with(req_chan)`); the namespace's own channels
/// end right after that prefix or with a server id and `#`.
/// Built without `format!` (see [`push_request_channel`]): the worker
/// names a room's channel on every broadcast.
pub(crate) fn room_channel(prefix: &str, namespace: &str, room: &str) -> String {
    let mut channel = String::with_capacity(prefix.len() + namespace.len() + room.len() + 15);
    push_request_channel(&mut channel, prefix, namespace);
    channel.push_str("room#");
    channel.push_str(room);
    channel
}

/// Whether broadcasts to `room` of `namespace` go on the room's channel:
/// rooms of a registered room type without history.
pub(crate) fn has_channel(namespace: &str, room: &str) -> bool {
    // Checked on every broadcast.
    static TYPES: OnceLock<ByRoomType<()>> = OnceLock::new();
    TYPES
        .get_or_init(|| {
            ByRoomType::new(
                crate::registry::rooms()
                    .filter(|r| r.history.is_none())
                    .map(|r| ((r.key, r.namespace), ())),
            )
        })
        .get(namespace, room)
        .is_some()
}

/// The namespaces that have rooms with channels.
fn namespaces() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = crate::registry::rooms()
        .filter(|r| r.history.is_none())
        .map(|r| r.namespace)
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

struct Entry {
    namespace: String,
    room: String,
    state: tokio::sync::Mutex<State>,
}

struct State {
    subscribed: bool,
    touched: Instant,
    /// When a subscribe last failed: joins meanwhile do not wait for
    /// another attempt (each would wait up to the command timeout while
    /// Redis is down); the sweep retries.
    failed: Option<Instant>,
}

/// One server's room-channel subscriptions.
pub(crate) struct RoomChannels {
    driver: MeteredFredDriver,
    prefix: String,
    idle: Duration,
    io: SocketIo<RedisAdapter>,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
}

impl RoomChannels {
    pub(crate) fn new(
        driver: MeteredFredDriver,
        config: &super::RedisConfig,
        io: SocketIo<RedisAdapter>,
    ) -> Self {
        Self {
            driver,
            prefix: config.prefix_str().to_owned(),
            // Never below one sweep, so a join's subscribe always has a
            // whole sweep period to put its socket in the room.
            idle: config.room_channel_idle_value().max(SWEEP),
            io,
            entries: Mutex::default(),
        }
    }

    fn entry(&self, channel: &str, namespace: &str, room: &str) -> Arc<Entry> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(channel.to_owned())
            .or_insert_with(|| {
                Arc::new(Entry {
                    namespace: namespace.to_owned(),
                    room: room.to_owned(),
                    state: tokio::sync::Mutex::new(State {
                        subscribed: false,
                        touched: Instant::now(),
                        failed: None,
                    }),
                })
            })
            .clone()
    }

    fn is_current(&self, channel: &str, entry: &Arc<Entry>) -> bool {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(channel)
            .is_some_and(|e| Arc::ptr_eq(e, entry))
    }

    async fn ensure(&self, namespace: &str, room: &str) {
        if !has_channel(namespace, room) {
            return;
        }
        let channel = room_channel(&self.prefix, namespace, room);
        loop {
            let entry = self.entry(&channel, namespace, room);
            let mut state = entry.state.lock().await;
            // The sweep may have dropped this entry while we waited for
            // its lock: start over with the current one.
            if !self.is_current(&channel, &entry) {
                continue;
            }
            state.touched = Instant::now();
            let failed_lately = state.failed.is_some_and(|t| t.elapsed() < SWEEP);
            if !state.subscribed && !failed_lately {
                self.attempt(&mut state, &channel, namespace).await;
            }
            return;
        }
    }

    /// One subscribe attempt, recorded in `state`. Not even tried while
    /// the connection is down: the sweep retries once it is back.
    async fn attempt(&self, state: &mut State, channel: &str, namespace: &str) {
        use fred::interfaces::ClientLike;

        state.subscribed =
            self.driver.client().is_connected() && self.subscribe_channel(channel, namespace).await;
        state.failed = (!state.subscribed).then(Instant::now);
    }

    /// SSUBSCRIBE, routed to the namespace's adapter; false (logged) on
    /// failure, for the sweep to retry.
    async fn subscribe_channel(&self, channel: &str, namespace: &str) -> bool {
        let like = request_channel(&self.prefix, namespace);
        match self.driver.subscribe_routed(channel, &like).await {
            Ok(true) => true,
            Ok(false) => {
                tracing::debug!(%channel, namespace, "no adapter for the namespace yet; room channel not subscribed");
                false
            }
            Err(error) => {
                tracing::warn!(%channel, %error, "subscribing to a room channel failed; retrying");
                false
            }
        }
    }

    /// Whether a socket of this server is in the room.
    fn occupied(&self, namespace: &str, room: &str) -> bool {
        self.io
            .of(namespace)
            .is_some_and(|ns| !ns.to(room.to_owned()).sockets().is_empty())
    }

    /// One pass: retries and idle rooms, and with `discover` rooms joined
    /// outside the framework.
    async fn sweep(&self, discover: bool) {
        let namespaces = if discover { namespaces() } else { Vec::new() };
        for namespace in namespaces {
            let Some(ns) = self.io.of(namespace) else {
                continue;
            };
            let Ok(rooms) = ns.local().rooms().await else {
                continue;
            };
            for room in rooms {
                if has_channel(namespace, &room) {
                    let channel = room_channel(&self.prefix, namespace, &room);
                    let known = self
                        .entries
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .contains_key(&channel);
                    if !known {
                        self.ensure(namespace, &room).await;
                    }
                }
            }
        }
        let all: Vec<(String, Arc<Entry>)> = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(c, e)| (c.clone(), e.clone()))
            .collect();
        for (channel, entry) in all {
            let mut state = entry.state.lock().await;
            if !self.is_current(&channel, &entry) {
                continue;
            }
            let idle = state.touched.elapsed() >= self.idle;
            if idle && self.occupied(&entry.namespace, &entry.room) {
                // Looked at again after `idle`, not every sweep: a server with
                // thousands of rooms would otherwise list their sockets
                // every second.
                state.touched = Instant::now();
            } else if idle {
                if state.subscribed {
                    if let Err(error) = self.driver.unsubscribe_routed(&channel).await {
                        tracing::debug!(%channel, %error, "unsubscribing a room channel failed; retrying later");
                        continue;
                    }
                    state.subscribed = false;
                    tracing::debug!(%channel, "room channel unsubscribed: no local socket");
                }
                self.entries
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&channel);
                continue;
            }
            if !state.subscribed {
                self.attempt(&mut state, &channel, &entry.namespace).await;
            }
        }
    }

    /// Sweeps every [`SWEEP`] until the connection is shut down.
    pub(crate) fn spawn_sweep(self: &Arc<Self>, mut closed: watch::Receiver<bool>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut passes: u32 = 0;
            loop {
                tokio::select! {
                    biased;
                    _ = closed.wait_for(|closed| *closed) => return,
                    () = tokio::time::sleep(SWEEP) => {}
                }
                passes = passes.wrapping_add(1);
                this.sweep(passes.is_multiple_of(DISCOVER_EVERY)).await;
            }
        });
    }
}

impl RoomSubscriber for RoomChannels {
    fn subscribe<'a>(&'a self, namespace: &'a str, room: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.ensure(namespace, room))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_channels_are_request_channels_of_their_namespace() {
        let c = room_channel("socket.io", "/", "chat|1");
        assert_eq!(c, "socket.io-request#/#room#chat|1");
        assert!(c.starts_with(&request_channel("socket.io", "/")));
        // Not mistaken for another namespace's requests.
        assert!(!c.starts_with(&request_channel("socket.io", "/chat")));
    }

    #[test]
    fn unregistered_rooms_stay_on_the_namespace_channel() {
        assert!(!has_channel("/", "no-such-room-type|1"));
        assert!(!has_channel("/", "aBcDeFgHiJkLmNoP"));
    }
}
