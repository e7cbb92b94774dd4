//! Recovery: rooms that keep their recent events, so that a client that
//! reconnects gets every event it missed, in order, from any server.
//!
//! A room type opts in with `#[room(history(size = 1000, ttl = "10m"))]`.
//! Every event delivered to such a room carries one more Socket.IO argument
//! after its payload, its [`EventPosition`]
//! `{"room", "offset", "epoch"}`; offsets are per room, start at 1 and grow
//! by 1 per event, in the order every subscriber receives them. A join's
//! ack carries the room's [`Position`], and a client that
//! joins again with `{"since": {"offset", "epoch"}}` (see
//! [`Since`](crate::join::Since)) is sent every event after that offset
//! before its ack says `"recovered": true`, or nothing and
//! `"recovered": false` when the history cannot tell (another epoch, events
//! already dropped, or more than [`HistorySettings::max_replay`] of them).
//!
//! Where the events are kept:
//!
//! - in memory ([`Broadcaster::socketio`](crate::Broadcaster::socketio)):
//!   in the process, one stream per room;
//! - with Redis (`redis::server`, `redis::worker`): in Redis, one stream per
//!   room, written by whichever process broadcasts in one script that also
//!   assigns the offset and publishes, so concurrent broadcasters cannot
//!   reorder a room.
//!
//! Rooms without history are delivered exactly as before, and cost one map
//! lookup per target room when the program has history rooms at all.
//!
//! ```no_run
//! use broadcast_core::{Room, history::HistorySettings, HistoryPolicy};
//!
//! #[derive(Room)]
//! #[room(public, history(size = 1000, ttl = "10m"))]
//! struct ChatRoom(u64);
//!
//! // At startup, before building servers: keep more for chat rooms.
//! HistorySettings::new()
//!     .policy::<ChatRoom>(HistoryPolicy::new(5000, 3600))
//!     .max_replay(2000)
//!     .install();
//! ```

mod feed;
mod memory;
mod transport;

use std::sync::{Arc, PoisonError, RwLock};

use serde_json::value::RawValue;
use socketioxide::adapter::Adapter;
use socketioxide::socket::Sid;

use crate::broadcaster::Broadcaster;
use crate::error::TransportError;
use crate::join::JoinableRoom;
#[cfg(doc)]
use crate::position::EventPosition;
use crate::position::{DEFAULT_MAX_REPLAY, HistoryPolicy, Position};
use crate::registry;
use crate::transport::SocketIoTransport;
use crate::util::BoxFuture;
use crate::util::ByRoomType;

pub(crate) use feed::Feed;
pub(crate) use transport::HistoryTransport;

/// Startup overrides of the history rooms declare: their limits, and how far
/// back a client may recover. [`install`](Self::install) them before the
/// servers and workers are built; they apply to every one built after.
///
/// ```
/// use broadcast_core::{HistoryPolicy, Room, history::HistorySettings};
/// #[derive(Room)]
/// #[room(public, history)]
/// struct Lobby;
/// HistorySettings::new().policy::<Lobby>(HistoryPolicy::new(10, 60)).install();
/// ```
#[derive(Debug, Clone)]
pub struct HistorySettings {
    overrides: Vec<(&'static str, &'static str, HistoryPolicy)>,
    max_replay: u64,
}

impl Default for HistorySettings {
    fn default() -> Self {
        Self::new()
    }
}

static SETTINGS: RwLock<Option<HistorySettings>> = RwLock::new(None);

impl HistorySettings {
    /// No overrides, [`DEFAULT_MAX_REPLAY`].
    pub fn new() -> Self {
        Self {
            overrides: Vec::new(),
            max_replay: DEFAULT_MAX_REPLAY,
        }
    }

    /// Sets room type `R`'s limits (it keeps history even when its
    /// declaration does not).
    pub fn policy<R: JoinableRoom>(mut self, policy: HistoryPolicy) -> Self {
        self.overrides.push((R::NAMESPACE, R::KEY, policy));
        self
    }

    /// Most events replayed to one recovering client; further behind, it
    /// is told `recovered: false` (default 1,000).
    pub fn max_replay(mut self, events: u64) -> Self {
        self.max_replay = events;
        self
    }

    /// Makes these the settings of every server and worker built after.
    pub fn install(self) {
        *SETTINGS.write().unwrap_or_else(PoisonError::into_inner) = Some(self);
    }

    fn current() -> Self {
        SETTINGS
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_default()
    }
}

/// Which rooms keep history, by namespace and room key, with their limits.
#[derive(Debug, Default)]
pub(crate) struct HistoryRooms {
    /// Looked up for every room of every broadcast, rooms without history
    /// included.
    by_key: ByRoomType<HistoryPolicy>,
    pub(crate) max_replay: u64,
}

impl HistoryRooms {
    /// The registered rooms' declarations with the installed overrides.
    pub(crate) fn from_registry() -> Self {
        let settings = HistorySettings::current();
        let declared =
            registry::rooms().filter_map(|room| Some(((room.key, room.namespace), room.history?)));
        // After the declarations, so that an override replaces one.
        let overrides = settings
            .overrides
            .into_iter()
            .map(|(ns, key, policy)| ((key, ns), policy));
        Self {
            by_key: ByRoomType::new(declared.chain(overrides)),
            max_replay: settings.max_replay,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The policy of `room` in `namespace`, read from its key (the part
    /// before the first `|`).
    pub(crate) fn policy(&self, namespace: &str, room: &str) -> Option<HistoryPolicy> {
        self.by_key.get(namespace, room).copied()
    }
}

/// One stored event.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) offset: u64,
    pub(crate) event: String,
    pub(crate) payload: Box<RawValue>,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub(crate) at_ms: u64,
}

/// An event of a history room on its way to local sockets.
#[derive(Debug)]
pub(crate) struct Live {
    pub(crate) namespace: String,
    pub(crate) room: String,
    pub(crate) epoch: String,
    pub(crate) stored: Stored,
    pub(crate) except: Vec<Sid>,
}

/// What a store holds for a join: the room's position and, when asked,
/// the events after `since` (`None`: they are not all there any more).
#[derive(Debug)]
pub(crate) struct Read {
    pub(crate) position: Position,
    pub(crate) after: Option<Vec<Stored>>,
}

/// An event to append to a history room.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Append<'a> {
    pub(crate) namespace: &'a str,
    pub(crate) room: &'a str,
    pub(crate) policy: HistoryPolicy,
    pub(crate) event: &'a str,
    pub(crate) payload: &'a RawValue,
    pub(crate) except: &'a [Sid],
    /// The delivery's idempotency id: an event appended once with an id is
    /// not appended again with it (a relay that crashed before marking it
    /// sent delivers it again).
    pub(crate) id: Option<&'a str>,
}

/// Where history rooms' streams live: assigns offsets, keeps events and
/// gets them to every server's local sockets.
pub(crate) trait Store: Send + Sync + 'static {
    /// Appends one event and publishes it; returns how many servers were
    /// sent it (1 in memory), or `None` when its id was appended before.
    fn append<'a>(
        &'a self,
        event: Append<'a>,
    ) -> BoxFuture<'a, Result<Option<u64>, TransportError>>;

    /// The room's position and, with `since`, the events after it when
    /// they are all kept and at most `max` (else `after` is `None`).
    fn read<'a>(
        &'a self,
        namespace: &'a str,
        room: &'a str,
        policy: HistoryPolicy,
        since: Option<u64>,
        max: u64,
    ) -> BoxFuture<'a, Result<Read, TransportError>>;
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A fresh epoch: 16 random characters.
pub(crate) fn new_epoch() -> String {
    socketioxide_core::Uid::new().to_string()
}

impl Broadcaster {
    /// A broadcaster that delivers through a socketioxide server, with the
    /// default limits, keeping the history of history rooms in this
    /// process. (With Redis, `redis::server` builds the server's.)
    ///
    /// ```no_run
    /// # use broadcast_core::{Broadcaster, BroadcastEvent};
    /// # #[derive(serde::Serialize, BroadcastEvent)]
    /// # #[broadcast(on = "lobby")]
    /// # struct Hello { text: String }
    /// # async fn run() -> Result<(), broadcast_core::BroadcastError> {
    /// let (_layer, io) = socketioxide::SocketIo::new_layer();
    /// io.ns("/", async |_: socketioxide::extract::SocketRef| {});
    /// let broadcaster = Broadcaster::socketio(io);
    /// broadcaster.broadcast(Hello { text: "hi".into() }).await?;
    /// # Ok(()) }
    /// ```
    pub fn socketio<A: Adapter>(io: socketioxide::SocketIo<A>) -> Self {
        let rooms = Arc::new(HistoryRooms::from_registry());
        let inner = SocketIoTransport::new(io.clone());
        if rooms.is_empty() {
            return Self::builder(inner).build();
        }
        let feed = Feed::new(io.clone());
        let store: Arc<dyn Store> = Arc::new(memory::MemoryStore::new(feed.clone()));
        feed.serve(io.config().server_id, rooms.clone(), store.clone());
        Self::builder(HistoryTransport::new(inner, rooms, store, Some(feed))).build()
    }
}
