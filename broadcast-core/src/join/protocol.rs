//! The join/leave protocol on one socket: the handlers registered before
//! the client is told it is connected, and the replies they send.

use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, TryData};
use socketioxide::handler::{
    ConnectMiddleware, FromConnectParts, FromMessage, FromMessageParts, Value,
};
use socketioxide::socket::Socket;
use socketioxide::{SendError, SocketError};
use socketioxide_core::{Str, Uid};

use broadcast_rules::protocol::{ERROR_EVENT, JOIN_PREFIX, JOINED_EVENT, LEAVE_PREFIX, LEFT_EVENT};

use super::RoomsInner;
use super::context::{Handshake, JoinContext};
use super::descriptor::{ParsedRoom, RoomDescriptor};
use super::joinable::{Access, Authorization, RoomDataError};
use super::presence::SocketPresence;
use super::recovery::{self, HistoryService, JoiningSocket, Recovery, Since};
use super::subscriptions;
use super::wire::{RoomError, RoomNotice, RoomReply};
use crate::presence::Member;
use crate::presence::service::PresenceService;
use crate::util::echo;

/// Why a join or leave was refused. Every variant names the room key or the
/// room; [`payload`](Self::payload) is what the client receives with the
/// `error` event ([`ERROR_EVENT`]) and in a failed ack.
///
/// ```
/// use broadcast_core::join::JoinError;
/// let e = JoinError::Forbidden { room: "chat|1".into() };
/// assert_eq!(e.payload(), serde_json::json!({"type": "forbidden", "room": "chat|1"}));
/// let e = JoinError::TooManyRooms { room: "chat|1".into(), limit: 128 };
/// assert_eq!(e.payload()["type"], "validation_error");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// No room type has this key in any namespace.
    #[error("unknown room key `{key}`")]
    UnknownKey {
        /// The key the client used (truncated).
        key: String,
    },
    /// The room key exists, but in another namespace.
    #[error("room `{key}` is in namespace `{namespace}`; join it there")]
    WrongNamespace {
        /// Room key.
        key: String,
        /// The namespace the room lives in.
        namespace: &'static str,
    },
    /// The event carrying the join data is larger than the limit.
    #[error("the data for room `{key}` is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Room key.
        key: &'static str,
        /// Size of the encoded event.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The event's data could not be decoded as JSON.
    #[error("the data for room `{key}` could not be decoded: {msg}")]
    Undecodable {
        /// Room key.
        key: &'static str,
        /// The decoder's message.
        msg: String,
    },
    /// The data does not describe a room of that key.
    #[error(transparent)]
    Data(#[from] RoomDataError),
    /// The join options (the second argument, `{"since": ...}`) are
    /// malformed.
    #[error("bad join options for room `{key}`: {msg}")]
    Options {
        /// Room key.
        key: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// The authorizer said the request makes no sense.
    #[error("{msg}")]
    Invalid {
        /// The room.
        room: String,
        /// The authorizer's message.
        msg: String,
    },
    /// The authorizer refused, or the socket is anonymous and the room is
    /// not public.
    #[error("joining `{room}` is forbidden")]
    Forbidden {
        /// The room.
        room: String,
    },
    /// The socket is already in the maximum number of rooms.
    #[error("cannot join `{room}`: a socket can be in at most {limit} rooms")]
    TooManyRooms {
        /// The room.
        room: String,
        /// The configured limit.
        limit: usize,
    },
    /// The socket disconnected while its join was handled; it was not left
    /// in the room.
    #[error("the socket disconnected while joining `{room}`")]
    Disconnected {
        /// The room.
        room: String,
    },
    /// The socket asked to join too often (over its token bucket) or has
    /// too many joins unanswered; the request was not parsed, nothing was
    /// authorized.
    #[error("too many join requests: `{key}` was not joined, ask again later")]
    RateLimited {
        /// Room key.
        key: &'static str,
    },
    /// The room's presence could not record the socket (its store failed,
    /// or the member is invalid); the socket was not left in the room.
    #[error("cannot join `{room}`: {msg}")]
    Presence {
        /// The room.
        room: String,
        /// What failed.
        msg: String,
    },
}

impl JoinError {
    /// What the client receives: the `error` event's payload, and the
    /// `error` of the failed ack. [`Forbidden`](Self::Forbidden) is
    /// [`RoomError::Forbidden`], [`RateLimited`](Self::RateLimited) is
    /// [`RoomError::RateLimited`]; every other error is a
    /// [`RoomError::ValidationError`] with this error's message, its
    /// [`key`](Self::key) and, when the data named one, its
    /// [`room`](Self::room).
    pub fn to_wire(&self) -> RoomError {
        match self {
            Self::Forbidden { room } => RoomError::Forbidden { room: room.clone() },
            Self::RateLimited { key } => RoomError::RateLimited {
                msg: self.to_string(),
                key: (*key).to_owned(),
            },
            other => RoomError::ValidationError {
                msg: other.to_string(),
                key: other.key().map(str::to_owned),
                room: other.room().map(str::to_owned),
            },
        }
    }

    /// The fast_app-compatible `error` payload ([`to_wire`](Self::to_wire)
    /// as JSON): `{"type": "forbidden", "room": "<name>"}` for
    /// [`Forbidden`](Self::Forbidden), otherwise
    /// `{"type": "validation_error", "msg": "...", "key": "<key>"}` (plus
    /// `"room"` when the room is known).
    pub fn payload(&self) -> serde_json::Value {
        // A tag and strings: serializing them into a `Value` cannot fail.
        serde_json::to_value(self.to_wire()).unwrap_or_default()
    }

    /// The room key, when the error has one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::UnknownKey { key } | Self::WrongNamespace { key, .. } => Some(key),
            Self::TooLarge { key, .. }
            | Self::Undecodable { key, .. }
            | Self::Options { key, .. }
            | Self::RateLimited { key } => Some(key),
            Self::Data(e) => Some(e.key()),
            Self::Invalid { room, .. }
            | Self::Forbidden { room }
            | Self::TooManyRooms { room, .. }
            | Self::Presence { room, .. }
            | Self::Disconnected { room } => room.split('|').next(),
        }
    }

    /// The room name, when the data parsed that far.
    pub fn room(&self) -> Option<&str> {
        match self {
            Self::Invalid { room, .. }
            | Self::Forbidden { room }
            | Self::TooManyRooms { room, .. }
            | Self::Presence { room, .. }
            | Self::Disconnected { room } => Some(room),
            _ => None,
        }
    }
}

/// The abuse limits of one socket's requests ([`RoomsBuilder`]'s).
///
/// [`RoomsBuilder`]: super::RoomsBuilder
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) join_burst: u32,
    pub(crate) joins_per_second: f64,
    pub(crate) max_joins_in_flight: usize,
}

/// Counters behind [`Rooms::stats`](super::Rooms::stats).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) rate_limited: AtomicU64,
    pub(crate) requests_dropped: AtomicU64,
    pub(crate) replies_dropped: AtomicU64,
    pub(crate) pending: AtomicU64,
}

/// How many requests of one socket may be admitted and unanswered at once;
/// beyond it requests are dropped unread. It bounds the memory a socket can
/// hold in the protocol (a task and a reply of at most a few hundred bytes
/// each) when its client sends but does not read, and is far above what a
/// reading client has in flight (a socket's outgoing buffer holds 128
/// packets by default).
const MAX_PENDING_REQUESTS: usize = 512;

/// How long a reply waits for room in the socket's outgoing buffer before it
/// is dropped and the socket is marked stalled.
const REPLY_PATIENCE: Duration = Duration::from_secs(1);

/// What a socket's request handlers share: requests of one socket run
/// concurrently, and the room limit, the rate limit and the reply order
/// must hold across them.
pub(crate) struct SocketState {
    membership: Mutex<()>,
    bucket: Mutex<Bucket>,
    joins_in_flight: AtomicUsize,
    pending: AtomicUsize,
    /// One reply is sent at a time, so only one task per socket waits for
    /// buffer room and the others sleep on the lock instead of polling.
    lane: tokio::sync::Mutex<()>,
    /// A reply waited [`REPLY_PATIENCE`] in vain: until one is sent again,
    /// replies are tried once and dropped if the buffer is still full.
    stalled: AtomicBool,
    /// Only in namespaces with presence rooms.
    presence: Option<SocketPresence>,
}

impl SocketState {
    fn new(limits: &Limits, presence: Option<SocketPresence>) -> Self {
        Self {
            membership: Mutex::new(()),
            bucket: Mutex::new(Bucket {
                tokens: f64::from(limits.join_burst),
                at: Instant::now(),
            }),
            joins_in_flight: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            lane: tokio::sync::Mutex::new(()),
            stalled: AtomicBool::new(false),
            presence,
        }
    }

    /// Admits a request, or drops it (counted) when the socket already has
    /// [`MAX_PENDING_REQUESTS`] unanswered.
    fn admit(self: &Arc<Self>, rooms: &Arc<RoomsInner>) -> Option<Pending> {
        let Some(slot) = Slot::take(self, |s| &s.pending, MAX_PENDING_REQUESTS) else {
            rooms
                .counters
                .requests_dropped
                .fetch_add(1, Ordering::Relaxed);
            return None;
        };
        rooms.counters.pending.fetch_add(1, Ordering::Relaxed);
        Some(Pending {
            _slot: slot,
            rooms: rooms.clone(),
        })
    }

    /// A join slot and a token, or `None`: the join is rate limited. A join
    /// refused for its in-flight cap takes no token.
    fn start_join(self: &Arc<Self>, limits: &Limits) -> Option<Slot> {
        let slot = Slot::take(self, |s| &s.joins_in_flight, limits.max_joins_in_flight)?;
        self.bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(limits)
            .then_some(slot)
    }
}

/// A token bucket: `join_burst` tokens, refilled at `joins_per_second`.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, limits: &Limits) -> bool {
        self.take_at(limits, Instant::now())
    }

    fn take_at(&mut self, limits: &Limits, now: Instant) -> bool {
        if limits.joins_per_second.is_infinite() {
            return true;
        }
        let refill = now.duration_since(self.at).as_secs_f64() * limits.joins_per_second;
        self.tokens = (self.tokens + refill).min(f64::from(limits.join_burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One unit of a per-socket count, given back on drop.
struct Slot {
    state: Arc<SocketState>,
    count: fn(&SocketState) -> &AtomicUsize,
}

impl Slot {
    fn take(
        state: &Arc<SocketState>,
        count: fn(&SocketState) -> &AtomicUsize,
        limit: usize,
    ) -> Option<Self> {
        count(state)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        Some(Self {
            state: state.clone(),
            count,
        })
    }
}

/// An admitted request, counted per socket and in [`Counters::pending`]
/// until it is answered or given up.
struct Pending {
    _slot: Slot,
    rooms: Arc<RoomsInner>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.rooms.counters.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        (self.count)(&self.state).fetch_sub(1, Ordering::AcqRel);
    }
}

/// The raw event, taken apart by the handler itself: its size must be
/// checked before anything parses it.
pub(crate) struct JoinCall<A: Adapter> {
    socket: Arc<Socket<A>>,
    value: Value,
    ack_id: Option<i64>,
}

impl<A: Adapter> FromMessage<A> for JoinCall<A> {
    type Error = Infallible;
    fn from_message(
        socket: Arc<Socket<A>>,
        value: Value,
        ack_id: Option<i64>,
    ) -> Result<Self, Infallible> {
        Ok(Self {
            socket,
            value,
            ack_id,
        })
    }
}

impl<A: Adapter> JoinCall<A> {
    fn size(&self) -> usize {
        match &self.value {
            Value::Str(text, bins) => {
                text.len() + bins.iter().flatten().map(|b| b.len()).sum::<usize>()
            }
            Value::Bytes(b) => b.len(),
        }
    }

    /// The first two arguments of the event (the room data and the join
    /// options), `null` when absent.
    fn data(&mut self) -> Result<(serde_json::Value, serde_json::Value), String> {
        if let Value::Str(text, None) = &self.value {
            // The common parser's text is the event array itself.
            let args: Vec<serde_json::Value> =
                serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
            let mut args = args.into_iter().skip(1);
            let data = args.next().unwrap_or_default();
            return Ok((data, args.next().unwrap_or_default()));
        }
        // Binary events (and other parsers): the room data only.
        let Ok(TryData(data)) = TryData::<serde_json::Value>::from_message_parts(
            &self.socket,
            &mut self.value,
            &self.ack_id,
        );
        data.map(|d| (d, serde_json::Value::Null))
            .map_err(|e| e.to_string())
    }
}

/// The connect middleware that makes the join protocol work on a socket.
///
/// socketioxide runs connect middlewares before it acknowledges the
/// namespace connect, and a client only emits after that acknowledgement, so
/// handlers registered here see every join, even one emitted the instant the
/// client is connected. (Handlers registered in the connect *handler* can
/// miss it: that handler is spawned after the acknowledgement.)
#[derive(Clone)]
pub(crate) struct RoomsMiddleware {
    pub(crate) inner: Arc<RoomsInner>,
    /// The Socket.IO server's id: finds its history service.
    pub(crate) server: Uid,
    /// The server's presence, when some room has presence.
    pub(crate) presence: Option<Arc<PresenceService>>,
}

impl fmt::Debug for RoomsMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomsMiddleware").finish_non_exhaustive()
    }
}

type MiddlewareResult = Result<(), Box<dyn fmt::Display + Send>>;

impl<A: Adapter> ConnectMiddleware<A, ()> for RoomsMiddleware {
    async fn call<'a>(
        &'a self,
        socket: Arc<Socket<A>>,
        auth: &'a Option<Value>,
    ) -> MiddlewareResult {
        if let Some(authenticate) = &self.inner.authenticator {
            let Ok(TryData(payload)) =
                TryData::<serde_json::Value>::from_connect_parts(&socket, auth);
            let handshake =
                Handshake::for_socket(&socket, payload.unwrap_or(serde_json::Value::Null));
            let joins = handshake.joins();
            match authenticate(handshake).await {
                Ok(identity) => {
                    if let Some(identity) = identity {
                        socket.extensions.insert(identity);
                    }
                    for room in joins.take() {
                        // Receiving the room's broadcasts first, so none
                        // sent after the connect is missed.
                        subscriptions::subscribe(self.server, socket.ns(), &room).await;
                        socket.join(room);
                    }
                }
                Err(msg) => {
                    tracing::debug!(target: "broadcast::rooms", ns = socket.ns(), sid = %socket.id, %msg, "connect refused by the authenticator");
                    // The detail can say which users exist or how tokens are
                    // checked; clients get it only when the app opted in.
                    let shown = if self.inner.expose_auth_errors {
                        msg
                    } else {
                        super::UNAUTHORIZED.to_owned()
                    };
                    return Err(Box::new(shown) as Box<dyn fmt::Display + Send>);
                }
            }
        }
        install(&self.inner, self.server, self.presence.as_ref(), &socket);
        Ok(())
    }
}

fn install<A: Adapter>(
    inner: &Arc<RoomsInner>,
    server: Uid,
    presence: Option<&Arc<PresenceService>>,
    socket: &Arc<Socket<A>>,
) {
    // As in Socket.IO's JavaScript server, a socket is in a room named by its
    // id: broadcasts can then skip any socket (`except`), on any server,
    // through the adapter's room exclusion.
    socket.join(socket.id.to_string());
    let presence = presence
        .filter(|_| {
            inner
                .rooms_in(socket.ns())
                .iter()
                .any(|r| r.descriptor.presence)
        })
        .map(|service| {
            SocketPresence::new(
                service.clone(),
                inner.presence.member.clone(),
                socket.ns(),
                socket.id.to_string(),
            )
        });
    let has_presence = presence.is_some();
    let state = Arc::new(SocketState::new(&inner.limits, presence));
    if has_presence {
        let st = state.clone();
        socket.on_disconnect(async move || {
            if let Some(p) = &st.presence {
                p.leave_all().await;
            }
        });
    }
    for room in inner.rooms_in(socket.ns()) {
        let entry = room.descriptor;
        let (rooms, st) = (inner.clone(), state.clone());
        socket.on(room.join_event.clone(), move |call: JoinCall<A>| {
            on_join(rooms, st, server, entry, call)
        });
        let (rooms, st) = (inner.clone(), state.clone());
        socket.on(room.leave_event.clone(), move |call: JoinCall<A>| {
            on_leave(rooms, st, entry, call)
        });
    }
    let rooms = inner.clone();
    socket.on_fallback(move |call: JoinCall<A>| on_other(rooms, state.clone(), call));
}

async fn on_join<A: Adapter>(
    rooms: Arc<RoomsInner>,
    state: Arc<SocketState>,
    server: Uid,
    entry: &'static RoomDescriptor,
    call: JoinCall<A>,
) {
    let Some(_pending) = state.admit(&rooms) else {
        return;
    };
    if !wait_connected(&call.socket).await {
        return;
    }
    let (socket, ack_id) = (call.socket.clone(), call.ack_id);
    // Held until the reply is out: a client that does not read its replies
    // keeps its slots busy, so its further joins are refused unparsed and
    // never reach the authorizer.
    let Some(_join) = state.start_join(&rooms.limits) else {
        rooms.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        let limited = JoinError::RateLimited { key: entry.key };
        reply(
            &rooms,
            &state,
            &socket,
            ack_id,
            JOINED_EVENT,
            Err(limited),
            None,
        )
        .await;
        return;
    };
    let result = join(&rooms, &state, server, entry, call).await;
    let (result, members) = match (result, &state.presence) {
        (Ok(done), Some(presence)) if entry.presence => {
            match join_presence(presence, &socket, &done.room, done.newly).await {
                Ok(members) => (Ok(done), members),
                Err(e) => (Err(e), None),
            }
        }
        (result, _) => (result, None),
    };
    reply(
        &rooms,
        &state,
        &socket,
        ack_id,
        JOINED_EVENT,
        result,
        members,
    )
    .await;
}

async fn on_leave<A: Adapter>(
    rooms: Arc<RoomsInner>,
    state: Arc<SocketState>,
    entry: &'static RoomDescriptor,
    call: JoinCall<A>,
) {
    let Some(_pending) = state.admit(&rooms) else {
        return;
    };
    if !wait_connected(&call.socket).await {
        return;
    }
    let (socket, ack_id) = (call.socket.clone(), call.ack_id);
    let result = leave(&rooms, &state, entry, call).await;
    if let (Ok((room, true)), Some(presence)) = (&result, &state.presence)
        && entry.presence
    {
        presence.leave(room).await;
    }
    let result = result.map(|(room, notify)| Done {
        room,
        notify,
        recovery: None,
        newly: false,
    });
    reply(&rooms, &state, &socket, ack_id, LEFT_EVENT, result, None).await;
}

/// Answers `join_<key>` / `leave_<key>` for keys this namespace does not
/// have; other unhandled events are left alone (they are the app's).
async fn on_other<A: Adapter>(
    rooms: Arc<RoomsInner>,
    state: Arc<SocketState>,
    mut call: JoinCall<A>,
) {
    let Ok(Event(event)) = Event::from_message_parts(&call.socket, &mut call.value, &call.ack_id)
    else {
        return;
    };
    let Some(key) = event
        .strip_prefix(JOIN_PREFIX)
        .or_else(|| event.strip_prefix(LEAVE_PREFIX))
    else {
        return;
    };
    let Some(_pending) = state.admit(&rooms) else {
        return;
    };
    if !wait_connected(&call.socket).await {
        return;
    }
    let error = match rooms.find_key(key) {
        Some(room) => JoinError::WrongNamespace {
            key: room.key.to_owned(),
            namespace: room.namespace,
        },
        None => JoinError::UnknownKey { key: echo(key) },
    };
    let socket = call.socket.clone();
    reply(
        &rooms,
        &state,
        &socket,
        call.ack_id,
        JOINED_EVENT,
        Err(error),
        None,
    )
    .await;
}

/// A request that succeeded: the room, whether to send the `joined`/`left`
/// event, for a history room its position, and whether the socket was not
/// in the room before.
struct Done {
    room: String,
    notify: bool,
    recovery: Option<Recovery>,
    newly: bool,
}

/// Records a join of a presence room (`newly`: the socket was not in it)
/// and returns the members for the ack. A failure takes the socket out of
/// the room again.
async fn join_presence<A: Adapter>(
    presence: &SocketPresence,
    socket: &Arc<Socket<A>>,
    room: &str,
    newly: bool,
) -> Result<Option<Vec<Member>>, JoinError> {
    let failed = |e: crate::presence::PresenceError| JoinError::Presence {
        room: room.to_owned(),
        msg: e.to_string(),
    };
    if !newly {
        return presence.members(room).await.map(Some).map_err(failed);
    }
    let ctx = JoinContext::for_socket(socket);
    match presence.join(&ctx, room).await {
        Ok(members) => {
            // A leave or a disconnect that ran while the store was asked
            // found nothing to remove yet: remove it now.
            let still_in = socket.connected() && socket.rooms().iter().any(|r| r == room);
            if !still_in {
                presence.leave(room).await;
                return Err(JoinError::Disconnected {
                    room: room.to_owned(),
                });
            }
            Ok(members)
        }
        Err(e) => {
            socket.leave(room.to_owned());
            tracing::warn!(target: "broadcast::presence", sid = %socket.id, room, error = %e, "join refused: presence failed");
            Err(failed(e))
        }
    }
}

/// Joins the socket to the room; `(name, true)` when it was not in it yet.
async fn join<A: Adapter>(
    rooms: &RoomsInner,
    state: &SocketState,
    server: Uid,
    entry: &'static RoomDescriptor,
    call: JoinCall<A>,
) -> Result<Done, JoinError> {
    let socket = call.socket.clone();
    let (room, options) = parse(rooms, entry, call)?;
    let name = room.name();
    // Options are checked for every room, so a client learns of a bad
    // `since` whether or not the room keeps history.
    let since = Since::from_options(&options).map_err(|msg| JoinError::Options {
        key: entry.key,
        msg,
    })?;
    let limit = rooms.max_rooms_per_socket;
    // Who may ask at all comes first, so a client learns nothing, not even
    // whether the server put it in a server-only room.
    let ctx = JoinContext::for_socket(&socket);
    let allowed_to_ask = match entry.access {
        Access::Public => true,
        Access::Authorized => ctx.is_authenticated(),
        Access::ServerOnly => false,
    };
    if !allowed_to_ask {
        return Err(JoinError::Forbidden {
            room: name.to_owned(),
        });
    }
    let history = entry
        .history
        .and_then(|policy| Some((policy, history_service(server, entry)?)));
    // Checked before authorizing too, so a socket at its limit cannot make
    // the server run authorizers (database queries) for nothing.
    match membership(&socket, name) {
        Membership::Member if history.is_none() => return Ok(done(name, None, false)),
        Membership::Member => {}
        Membership::NotMember { rooms } if rooms >= limit => {
            return Err(JoinError::TooManyRooms {
                room: name.to_owned(),
                limit,
            });
        }
        Membership::NotMember { .. } => {}
    }
    match entry.authorize(&ctx, &room).await {
        Authorization::Allow => {}
        Authorization::Forbid => {
            return Err(JoinError::Forbidden {
                room: name.to_owned(),
            });
        }
        Authorization::Invalid(msg) => {
            return Err(JoinError::Invalid {
                room: name.to_owned(),
                msg,
            });
        }
    }
    if history.is_none() {
        // Before the socket is in the room (and before the ack), so that
        // no broadcast from another process after the ack is missed.
        subscriptions::subscribe(server, socket.ns(), name).await;
    }
    let member = {
        let _guard = state
            .membership
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match membership(&socket, name) {
            Membership::Member if history.is_none() => return Ok(done(name, None, false)),
            Membership::Member => true,
            Membership::NotMember { rooms } if rooms >= limit => {
                return Err(JoinError::TooManyRooms {
                    room: name.to_owned(),
                    limit,
                });
            }
            Membership::NotMember { .. } => {
                // A history room's service joins the socket itself, after
                // the replay, so that nothing arrives out of order.
                if history.is_none() {
                    socket.join(name.to_owned());
                }
                false
            }
        }
    };
    let mut recovery = None;
    if let Some((policy, service)) = history {
        let joining: Arc<dyn JoiningSocket> = socket.clone();
        match service.join(joining, name, policy, since, member).await {
            Ok(r) => recovery = Some(r),
            Err(msg) => {
                tracing::warn!(target: "broadcast::rooms", sid = %socket.id, room = name, %msg, "history unavailable: joined without a position");
                socket.join(name.to_owned());
            }
        }
    }
    // A socket closing concurrently has its rooms cleared once; a join that
    // lands after that would stay in the adapter forever.
    if !socket.connected() {
        socket.leave(name.to_owned());
        return Err(JoinError::Disconnected {
            room: name.to_owned(),
        });
    }
    entry.on_join(&ctx, &room).await;
    Ok(done(name, recovery, !member))
}

fn done(room: &str, recovery: Option<Recovery>, newly: bool) -> Done {
    Done {
        room: room.to_owned(),
        notify: true,
        recovery,
        newly,
    }
}

/// The history service of this server, for a room that keeps history;
/// `None` (logged once) when none is registered: the room is then joined
/// like any other.
fn history_service(server: Uid, entry: &RoomDescriptor) -> Option<Arc<dyn HistoryService>> {
    let found = recovery::service(server);
    if found.is_none() {
        static WARNED: AtomicBool = AtomicBool::new(false);
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(target: "broadcast::rooms", key = entry.key, "room keeps history but this server has no broadcaster with history (build it with Broadcaster::socketio or redis::server): joins get no position");
        }
    }
    found
}

/// Leaving is always allowed; leaving a room the socket is not in changes
/// nothing and runs no hook.
async fn leave<A: Adapter>(
    rooms: &RoomsInner,
    state: &SocketState,
    entry: &'static RoomDescriptor,
    call: JoinCall<A>,
) -> Result<(String, bool), JoinError> {
    let socket = call.socket.clone();
    let (room, _) = parse(rooms, entry, call)?;
    let name = room.name();
    let was_member = {
        let _guard = state
            .membership
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let member = matches!(membership(&socket, name), Membership::Member);
        if member {
            socket.leave(name.to_owned());
        }
        member
    };
    if was_member {
        let ctx = JoinContext::for_socket(&socket);
        entry.on_leave(&ctx, &room).await;
    }
    Ok((name.to_owned(), was_member))
}

fn parse<A: Adapter>(
    rooms: &RoomsInner,
    entry: &'static RoomDescriptor,
    mut call: JoinCall<A>,
) -> Result<(ParsedRoom, serde_json::Value), JoinError> {
    let size = call.size();
    if size > rooms.max_join_bytes {
        return Err(JoinError::TooLarge {
            key: entry.key,
            size,
            limit: rooms.max_join_bytes,
        });
    }
    let (data, options) = call.data().map_err(|msg| JoinError::Undecodable {
        key: entry.key,
        msg,
    })?;
    Ok((entry.parse(&data)?, options))
}

enum Membership {
    Member,
    NotMember { rooms: usize },
}

fn membership<A: Adapter>(socket: &Socket<A>, name: &str) -> Membership {
    let rooms = socket.rooms();
    if rooms.iter().any(|r| r == name) {
        Membership::Member
    } else {
        // The socket's own id room does not count towards the limit.
        let own = socket.id.to_string();
        let count = rooms.iter().filter(|r| **r != own).count();
        Membership::NotMember { rooms: count }
    }
}

/// socketioxide sends the namespace CONNECT packet and only then marks the
/// socket connected, and `emit` refuses while it is not. A client answering
/// the CONNECT faster than the server thread gets to that flag would lose
/// its reply events, so wait (briefly, and only in that window) for it. A
/// socket still unconnected after that is closing.
async fn wait_connected<A: Adapter>(socket: &Socket<A>) -> bool {
    const YIELDS: u32 = 32;
    const SLEEPS: u32 = 100;
    for _ in 0..YIELDS {
        if socket.connected() {
            return true;
        }
        tokio::task::yield_now().await;
    }
    for _ in 0..SLEEPS {
        if socket.connected() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    socket.connected()
}

/// The payload of a reply event: `joined`/`left`'s or `error`'s.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Payload {
    Notice(RoomNotice),
    Error(RoomError),
}

/// Sends the event reply (`joined`/`left`, or `error`) and then the ack, so
/// a client that awaited the ack already has the event.
async fn reply<A: Adapter>(
    rooms: &RoomsInner,
    state: &SocketState,
    socket: &Arc<Socket<A>>,
    ack_id: Option<i64>,
    event: &str,
    result: Result<Done, JoinError>,
    members: Option<Vec<Member>>,
) {
    let (event, event_payload, ack_payload) = match result {
        Ok(Done {
            room,
            notify,
            recovery,
            newly: _,
        }) => {
            tracing::trace!(target: "broadcast::rooms", sid = %socket.id, ns = socket.ns(), %room, event, "ok");
            let (position, recovered) = match recovery {
                Some(r) => (Some(r.position), r.recovered),
                None => (None, None),
            };
            let notice = Payload::Notice(RoomNotice {
                room: room.clone(),
                position: position.clone(),
            });
            let ack = RoomReply::Ok {
                room,
                position,
                recovered,
                members,
            };
            (notify.then_some(event), notice, ack)
        }
        Err(error) => {
            tracing::debug!(target: "broadcast::rooms", sid = %socket.id, ns = socket.ns(), %error, "join/leave refused");
            let error = error.to_wire();
            let payload = Payload::Error(error.clone());
            (Some(ERROR_EVENT), payload, RoomReply::Err { error })
        }
    };
    let _lane = state.lane.lock().await;
    if let Some(event) = event {
        // socketioxide reserves a buffer slot before it encodes, so a
        // refused attempt costs no serialization: each reply is encoded once.
        send(rooms, state, socket, event, || {
            socket.emit(event, &event_payload)
        })
        .await;
    }
    if ack_id.is_none() {
        return;
    }
    send(rooms, state, socket, "ack", || {
        // `AckSender::send` consumes the sender, so each attempt makes one.
        let mut unused = Value::Str(Str::from(""), None);
        let Ok(ack) = AckSender::from_message_parts(socket, &mut unused, &ack_id);
        ack.send(&ack_payload)
    })
    .await;
}

/// A socket's outgoing buffer is bounded (socketioxide's `max_buffer_size`),
/// and a client with many requests in flight can fill it with replies.
/// Dropping a reply would leave that client waiting forever, so the reply
/// waits for room, up to [`REPLY_PATIENCE`]. A client that sends but does
/// not read never makes room: after one such wait the socket is stalled and
/// its replies are tried once and dropped (counted) until one gets through,
/// so it costs the server no more than one wait at a time.
async fn send<A: Adapter>(
    rooms: &RoomsInner,
    state: &SocketState,
    socket: &Socket<A>,
    what: &str,
    mut attempt: impl FnMut() -> Result<(), SendError>,
) {
    let mut deadline = None;
    let mut pause = Duration::from_millis(1);
    loop {
        match attempt() {
            Ok(()) => {
                state.stalled.store(false, Ordering::Relaxed);
                return;
            }
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                let now = Instant::now();
                let deadline = *deadline.get_or_insert(now + REPLY_PATIENCE);
                if state.stalled.load(Ordering::Relaxed) || now >= deadline {
                    if !state.stalled.swap(true, Ordering::Relaxed) {
                        tracing::info!(target: "broadcast::rooms", sid = %socket.id, ns = socket.ns(), "client does not read its replies: dropping them until it does");
                    }
                    rooms
                        .counters
                        .replies_dropped
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(8));
            }
            Err(e) => {
                tracing::debug!(target: "broadcast::rooms", sid = %socket.id, error = %e, what, "reply not sent");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// `payload()` as it was written before the wire types.
    fn by_hand(e: &JoinError) -> Value {
        match e {
            JoinError::Forbidden { room } => json!({"type": "forbidden", "room": room}),
            JoinError::RateLimited { key } => {
                json!({"type": "rate_limited", "msg": e.to_string(), "key": key})
            }
            other => {
                let mut v = json!({"type": "validation_error", "msg": other.to_string()});
                if let Some(key) = other.key() {
                    v["key"] = key.into();
                }
                if let Some(room) = other.room() {
                    v["room"] = room.into();
                }
                v
            }
        }
    }

    #[test]
    fn the_bucket_allows_a_burst_then_its_rate() {
        let limits = Limits {
            join_burst: 3,
            joins_per_second: 2.0,
            max_joins_in_flight: 8,
        };
        let t0 = Instant::now();
        let mut b = Bucket {
            tokens: 3.0,
            at: t0,
        };
        let taken = (0..5).filter(|_| b.take_at(&limits, t0)).count();
        assert_eq!(taken, 3);
        // Half a second refills one token at 2/s.
        let t1 = t0 + Duration::from_millis(500);
        assert!(b.take_at(&limits, t1));
        assert!(!b.take_at(&limits, t1));
        // A long pause refills the burst, never more.
        let t2 = t1 + Duration::from_secs(60);
        let taken = (0..10).filter(|_| b.take_at(&limits, t2)).count();
        assert_eq!(taken, 3);
        let unlimited = Limits {
            joins_per_second: f64::INFINITY,
            ..limits
        };
        assert!((0..1000).all(|_| b.take_at(&unlimited, t2)));
    }

    #[test]
    fn payloads_are_byte_for_byte_what_they_were() {
        let errors = [
            JoinError::UnknownKey { key: "nope".into() },
            JoinError::WrongNamespace {
                key: "audit".into(),
                namespace: "/admin",
            },
            JoinError::TooLarge {
                key: "pair",
                size: 5000,
                limit: 4096,
            },
            JoinError::Undecodable {
                key: "pair",
                msg: "eof".into(),
            },
            JoinError::Data(RoomDataError::MissingField {
                key: "pair",
                field: "b",
            }),
            JoinError::Invalid {
                room: "chat|404".into(),
                msg: "chat 404 does not exist".into(),
            },
            JoinError::Forbidden {
                room: "chat|1".into(),
            },
            JoinError::TooManyRooms {
                room: "chat|1".into(),
                limit: 3,
            },
            JoinError::Disconnected {
                room: "chat|1".into(),
            },
            JoinError::RateLimited { key: "chat" },
        ];
        for e in &errors {
            let (new, old) = (e.payload(), by_hand(e));
            assert_eq!(new.to_string(), old.to_string(), "{e:?}");
            // The typed value the handlers send is the same JSON.
            assert_eq!(serde_json::to_value(e.to_wire()).unwrap(), old, "{e:?}");
        }
        assert_eq!(
            errors[0].payload().to_string(),
            r#"{"key":"nope","msg":"unknown room key `nope`","type":"validation_error"}"#
        );
    }
}
