//! The room join/leave protocol: clients join and leave typed rooms, the
//! server authorizes, deny by default.
//!
//! # Wiring
//!
//! Every room type declared with `#[derive(Room)]` (or registered with
//! [`register_room!`](crate::register_room)) is found at startup. Build
//! [`Rooms`] once, give each namespace that has a connect handler of yours
//! to [`Rooms::ns`], then let [`Rooms::attach`] create every other
//! namespace that rooms and events use:
//!
//! ```no_run,standalone_crate
//! use broadcast_core::Room;
//! use broadcast_core::join::{Handshake, JoinContext, Rooms};
//! use socketioxide::extract::SocketRef;
//!
//! #[derive(Room)]
//! #[room(public)]
//! struct LobbyRoom;
//!
//! #[derive(Room)]
//! #[room(authorize = can_join_chat)]
//! struct ChatRoom(u64);
//!
//! #[derive(Room)] // server-only: clients cannot join it
//! struct UserRoom(u64);
//!
//! struct User { id: u64 }
//!
//! async fn can_join_chat(ctx: &JoinContext, room: &ChatRoom) -> bool {
//!     ctx.identity::<User>().is_some_and(|u| u.id == room.0) // your membership check
//! }
//!
//! async fn authenticate(h: Handshake) -> Result<Option<User>, String> {
//!     match h.auth()["token"].as_str() {
//!         None => Ok(None), // anonymous: public rooms only
//!         Some("secret-of-7") => {
//!             h.join(&UserRoom(7)); // before the client is told it is connected
//!             Ok(Some(User { id: 7 }))
//!         }
//!         Some(_) => Err("invalid token".into()), // connect refused
//!     }
//! }
//!
//! # fn run() -> Result<(), broadcast_core::join::RoomsError> {
//! let (layer, io) = socketioxide::SocketIo::new_layer();
//! let rooms = Rooms::builder().authenticate(authenticate).build()?;
//! rooms.ns(&io, "/", async |socket: SocketRef| { /* your connect handler */ });
//! rooms.attach(&io); // with the Redis adapter: `rooms.attach(&io).await?`
//! # Ok(()) }
//! ```
//!
//! # Protocol
//!
//! Compatible with fast_app's clients. In the room's namespace, a client
//! emits `join_<key>` or `leave_<key>` with the room's identifier as the
//! first argument: a value for a single-field room (`123`), an array of
//! the field values in order (`[1, "x"]`), or an object keyed by field name
//! (`{"a": 1, "b": "x"}`, named fields only); nothing (or `null`, `[]`, `{}`)
//! for a room without fields.
//!
//! | outcome | event emitted to the socket | ack (if the client asked for one) |
//! |---|---|---|
//! | joined (or already in the room) | `joined` `{"room": "chat\|1"}` | `{"ok": true, "room": "chat\|1"}` |
//! | left | `left` `{"room": "chat\|1"}` | `{"ok": true, "room": "chat\|1"}` |
//! | left a room it was not in | none | `{"ok": true, "room": "chat\|1"}` |
//! | refused by the authorizer, anonymous socket on an authorized room, or a server-only room | `error` `{"type": "forbidden", "room": "chat\|1"}` | `{"ok": false, "error": {...same...}}` |
//! | over the socket's join rate or in-flight cap ([`RoomsBuilder::join_rate`]) | `error` `{"type": "rate_limited", "msg": "...", "key": "chat"}` | `{"ok": false, "error": {...same...}}` |
//! | anything else (bad data, unknown key, too large, room limit, authorizer said invalid) | `error` `{"type": "validation_error", "msg": "...", "key": "chat"}` (plus `"room"` once the data named one) | `{"ok": false, "error": {...same...}}` |
//!
//! The event names are [`broadcast_rules::protocol`]'s; the payloads are
//! the wire types [`RoomNotice`], [`RoomError`] and [`RoomReply`] (the ack),
//! whose [`WireShape`]s the generated TypeScript is made from. The event is
//! sent before the ack, so a client that awaited the ack has the event
//! already.
//! Once `joined` is sent, the socket is in the room.
//!
//! Rules:
//! - Joins land in the room's own namespace: a room of `/admin` is joined
//!   by a socket connected to `/admin`; `join_<key>` elsewhere gets a
//!   `validation_error` saying where the room is.
//! - Deny by default ([`Access`]): an anonymous socket (no [`Identity`]) can
//!   only join public rooms; every other join goes through the room's
//!   authorizer; a server-only room is never joined by a client.
//! - Joining a room the socket is already in answers `ok` without running
//!   the authorizer or `on_join` again.
//! - Leaving is always allowed.
//! - Limits ([`RoomsBuilder`]): at most 128 rooms per socket and namespace,
//!   and join/leave events of at most 4 KiB (the whole encoded event).
//! - Abuse limits, per socket and namespace: joins take a token from a
//!   bucket of 20 refilled at 10 per second, and at most 8 joins are
//!   unanswered at once; others are answered `rate_limited` unparsed, so
//!   the authorizer runs at most 20 + 10 per second. Leaves are not limited
//!   (leaving must stay possible). A refused connect's `connect_error` says
//!   `unauthorized` unless [`RoomsBuilder::expose_auth_errors`] is on.
//! - `on_join` runs after the socket joined and `on_leave` after it left,
//!   both before the reply; neither runs on disconnect.
//! - Unknown keys are answered by a catch-all handler (`on_fallback`); other
//!   unhandled events are left alone. A connect handler that sets its own
//!   `on_fallback` replaces it, and `join_<unknown>` then goes unanswered.
//! - A reply waits (about a second at most) for room in the socket's
//!   outgoing buffer rather than being dropped, so a client with many
//!   requests in flight still gets every answer. A client that sends but
//!   does not read gets no more than that: after one such wait in vain its
//!   replies are dropped until one gets through again, and with 512
//!   requests unanswered its further requests are dropped unread (no
//!   reply: its acks time out). [`Rooms::stats`] counts both.
//!
//! # Early joins
//!
//! socketioxide acknowledges a namespace connect before it runs the
//! (spawned) connect handler, so handlers registered there can miss an event
//! the client emits right after connecting. The protocol's handlers are
//! registered by a connect *middleware*, which socketioxide awaits before
//! acknowledging, so no join is missed.

mod context;
pub(crate) mod descriptor;
pub(crate) mod fields;
mod joinable;
mod presence;
mod protocol;
pub(crate) mod recovery;
pub(crate) mod subscriptions;
mod wire;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::{Future, IntoFuture};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use broadcast_rules::{NameError, validate_namespace};
use socketioxide::SocketIo;
use socketioxide::adapter::{Adapter, Emitter};
use socketioxide::handler::ConnectHandler;
use socketioxide_core::adapter::{CoreAdapter, DefinedAdapter, Spawnable};

pub use context::{EmitError, Handshake, Identity, JoinContext, identity};
use descriptor::RoomDescriptor;
pub use joinable::{Access, Authorization, IntoAuthorization, JoinableRoom, RoomDataError};
pub use protocol::JoinError;
use protocol::{Counters, Limits, RoomsMiddleware};
pub use recovery::Since;
pub use wire::{
    EVENT_POSITION_SHAPE, JOIN_OPTIONS_SHAPE, POSITION_SHAPE, PRESENCE_MEMBER_SHAPE, PresenceDiff,
    PresenceNotice, RoomError, RoomNotice, RoomReply, SERVER_EVENTS, WireField, WireShape,
    WireType,
};

use crate::presence::{Member, PresenceChange, PresenceError, PresenceRate};
use crate::util::BoxFuture;
use presence::PresenceSetup;

/// Default for [`RoomsBuilder::max_rooms_per_socket`].
pub const DEFAULT_MAX_ROOMS_PER_SOCKET: usize = 128;
/// Default for [`RoomsBuilder::max_join_bytes`]: 4 KiB.
pub const DEFAULT_MAX_JOIN_BYTES: usize = 4 * 1024;
/// Default burst of [`RoomsBuilder::join_rate`]: a page that joins a dozen
/// rooms as it loads is never limited.
pub const DEFAULT_JOIN_BURST: u32 = 20;
/// Default sustained rate of [`RoomsBuilder::join_rate`], per second and
/// socket: far above what a person navigating causes, and what bounds the
/// authorizer (often a database query) per socket.
pub const DEFAULT_JOINS_PER_SECOND: f64 = 10.0;
/// Default for [`RoomsBuilder::max_joins_in_flight`].
pub const DEFAULT_MAX_JOINS_IN_FLIGHT: usize = 8;
/// The `connect_error` message of a refused connect, unless
/// [`RoomsBuilder::expose_auth_errors`] is on.
pub const UNAUTHORIZED: &str = "unauthorized";

type Authenticator =
    Arc<dyn Fn(Handshake) -> BoxFuture<'static, Result<Option<Identity>, String>> + Send + Sync>;

/// Every registered joinable room, ready to be wired into a [`SocketIo`].
/// Cheap to clone.
///
/// See the [module docs](self) for the wiring and the protocol.
///
/// ```standalone_crate
/// use broadcast_core::Room;
/// use broadcast_core::join::Rooms;
///
/// #[derive(Room)]
/// #[room(public)]
/// struct LobbyRoom;
///
/// let (_layer, io) = socketioxide::SocketIo::new_layer();
/// let rooms = Rooms::builder().build().unwrap();
/// let attached = rooms.attach(&io);
/// assert!(attached.created.contains(&"/"));
/// assert!(io.of("/").is_some());
/// ```
#[derive(Clone)]
pub struct Rooms {
    inner: Arc<RoomsInner>,
}

impl fmt::Debug for Rooms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rooms")
            .field("namespaces", &self.inner.namespaces)
            .field("max_rooms_per_socket", &self.inner.max_rooms_per_socket)
            .field("max_join_bytes", &self.inner.max_join_bytes)
            .field("limits", &self.inner.limits)
            .field("authenticates", &self.inner.authenticator.is_some())
            .field("expose_auth_errors", &self.inner.expose_auth_errors)
            .finish()
    }
}

pub(crate) struct RoomsInner {
    namespaces: BTreeMap<&'static str, Vec<Registered>>,
    pub(crate) max_rooms_per_socket: usize,
    pub(crate) max_join_bytes: usize,
    pub(crate) limits: Limits,
    pub(crate) counters: Counters,
    pub(crate) authenticator: Option<Authenticator>,
    pub(crate) expose_auth_errors: bool,
    pub(crate) presence: PresenceSetup,
    /// Whether any room has presence: without, no presence work is done.
    pub(crate) has_presence: bool,
    /// Namespaces created by [`Rooms::ns`], so [`Rooms::attach`] can tell a
    /// namespace wired for joins from one created behind its back.
    wired: Mutex<BTreeSet<String>>,
}

struct Registered {
    descriptor: &'static RoomDescriptor,
    join_event: String,
    leave_event: String,
}

impl fmt::Debug for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.descriptor.key)
    }
}

impl RoomsInner {
    fn rooms_in(&self, namespace: &str) -> &[Registered] {
        self.namespaces.get(namespace).map_or(&[], Vec::as_slice)
    }

    fn find_key(&self, key: &str) -> Option<&'static RoomDescriptor> {
        self.namespaces
            .values()
            .flatten()
            .map(|r| r.descriptor)
            .find(|d| d.key == key)
    }
}

impl Rooms {
    /// Configures limits and connect-time authentication; `.build()` reads
    /// and checks every registered room.
    pub fn builder() -> RoomsBuilder {
        RoomsBuilder::default()
    }

    /// Creates the namespace `path` with your connect handler and the join
    /// protocol in front of it (authentication, then the join handlers,
    /// both before the client is told it is connected). Returns what
    /// `io.ns` returns: nothing to wait for in memory, a future to await with
    /// the Redis adapter.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use broadcast_core::join::Rooms;
    /// use socketioxide::extract::SocketRef;
    /// let (_layer, io) = socketioxide::SocketIo::new_layer();
    /// let rooms = Rooms::builder().build()?;
    /// rooms.ns(&io, "/", async |socket: SocketRef| {
    ///     tracing::info!(sid = %socket.id, "connected");
    /// });
    /// # Ok(()) }
    /// ```
    pub fn ns<A, H, T>(
        &self,
        io: &SocketIo<A>,
        path: impl Into<Cow<'static, str>>,
        handler: H,
    ) -> <A as CoreAdapter<Emitter>>::InitRes
    where
        A: Adapter + DefinedAdapter,
        H: ConnectHandler<A, T>,
        T: Send + Sync + 'static,
    {
        let path = path.into();
        self.inner
            .wired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.to_string());
        io.ns(path, handler.with(self.middleware(io)))
    }

    fn middleware<A: Adapter>(&self, io: &SocketIo<A>) -> RoomsMiddleware {
        RoomsMiddleware {
            inner: self.inner.clone(),
            server: io.config().server_id,
            presence: self
                .inner
                .has_presence
                .then(|| self.inner.presence.service_for(io)),
        }
    }

    /// Creates every namespace that registered rooms or events use and that
    /// `io` does not have yet, each with the join protocol and no connect
    /// handler of yours. Call it after your own [`ns`](Self::ns) calls (with
    /// the Redis adapter, after awaiting them: a namespace exists once it is
    /// initialized).
    ///
    /// With the in-memory adapter there is nothing to wait for; with the
    /// Redis adapter, `.await` the result, which initializes the created
    /// namespaces.
    pub fn attach<A>(&self, io: &SocketIo<A>) -> Attached<A>
    where
        A: Adapter + DefinedAdapter,
    {
        let mut wanted: Vec<&'static str> = self.inner.namespaces.keys().copied().collect();
        wanted.extend(crate::event::registered().iter().map(|e| e.namespace));
        wanted.sort_unstable();
        wanted.dedup();
        let wired = self
            .inner
            .wired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut attached = Attached {
            created: Vec::new(),
            existing: Vec::new(),
            init: Vec::new(),
        };
        for ns in wanted {
            if let Err(e) = validate_namespace(ns) {
                tracing::warn!(target: "broadcast::rooms", namespace = ns, error = %e, "not creating an invalid namespace");
                continue;
            }
            if io.of(ns).is_some() {
                if wired.contains(ns) {
                    tracing::debug!(target: "broadcast::rooms", namespace = ns, "namespace has its connect handler and the join protocol");
                } else if !self.inner.rooms_in(ns).is_empty() {
                    tracing::warn!(target: "broadcast::rooms", namespace = ns, "namespace was created without Rooms::ns: clients cannot join its rooms");
                }
                attached.existing.push(ns);
            } else {
                tracing::info!(target: "broadcast::rooms", namespace = ns, "creating namespace with the join protocol");
                attached
                    .init
                    .push(io.ns(ns, (async || {}).with(self.middleware(io))));
                attached.created.push(ns);
            }
        }
        attached
    }

    /// The namespaces that have joinable rooms.
    pub fn namespaces(&self) -> impl Iterator<Item = &'static str> {
        self.inner.namespaces.keys().copied()
    }

    /// The registered rooms of `namespace`.
    pub fn rooms_in(&self, namespace: &str) -> impl Iterator<Item = &'static RoomDescriptor> {
        self.inner.rooms_in(namespace).iter().map(|r| r.descriptor)
    }

    /// The room limit per socket.
    pub fn max_rooms_per_socket(&self) -> usize {
        self.inner.max_rooms_per_socket
    }

    /// The size limit of join/leave events, in bytes.
    pub fn max_join_bytes(&self) -> usize {
        self.inner.max_join_bytes
    }

    /// What the abuse limits did so far, over every socket.
    ///
    /// ```standalone_crate
    /// let rooms = broadcast_core::join::Rooms::builder().build().unwrap();
    /// let stats = rooms.stats();
    /// assert_eq!(stats.rate_limited + stats.requests_dropped + stats.replies_dropped, 0);
    /// assert_eq!(stats.pending, 0);
    /// ```
    pub fn stats(&self) -> RoomsStats {
        let c = &self.inner.counters;
        RoomsStats {
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            requests_dropped: c.requests_dropped.load(Ordering::Relaxed),
            replies_dropped: c.replies_dropped.load(Ordering::Relaxed),
            pending: c.pending.load(Ordering::Relaxed),
        }
    }
}

/// Counts of what the abuse limits did, from [`Rooms::stats`].
///
/// ```standalone_crate
/// let rooms = broadcast_core::join::Rooms::builder().build().unwrap();
/// println!("{:?}", rooms.stats());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoomsStats {
    /// Joins answered `rate_limited` (over the token bucket or the
    /// in-flight cap).
    pub rate_limited: u64,
    /// Requests dropped unread, without an answer, because their socket had
    /// too many unanswered (its client sends but does not read).
    pub requests_dropped: u64,
    /// Replies (events and acks) dropped because their socket's outgoing
    /// buffer stayed full.
    pub replies_dropped: u64,
    /// Requests admitted and not answered yet, now (at most 512 per
    /// socket).
    pub pending: u64,
}

/// What [`Rooms::attach`] did. With the Redis adapter, `.await` it to
/// initialize the namespaces it created before serving; dropped unawaited,
/// it initializes them in the background (failures are logged by the
/// adapter).
///
/// ```no_run
/// # async fn run(rooms: broadcast_core::join::Rooms, io: socketioxide::SocketIo) {
/// let attached = rooms.attach(&io);
/// println!("created {:?}, found {:?}", attached.created, attached.existing);
/// # }
/// ```
pub struct Attached<A: Adapter> {
    /// Namespaces it created.
    pub created: Vec<&'static str>,
    /// Namespaces that already existed (left alone).
    pub existing: Vec<&'static str>,
    init: Vec<<A as CoreAdapter<Emitter>>::InitRes>,
}

impl<A: Adapter> Drop for Attached<A> {
    fn drop(&mut self) {
        for init in self.init.drain(..) {
            init.spawn();
        }
    }
}

impl<A, E> IntoFuture for Attached<A>
where
    A: Adapter,
    <A as CoreAdapter<Emitter>>::InitRes: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display,
{
    type Output = Result<(), RoomsError>;
    type IntoFuture = BoxFuture<'static, Result<(), RoomsError>>;

    fn into_future(mut self) -> Self::IntoFuture {
        let created = self.created.clone();
        let inits = std::mem::take(&mut self.init);
        Box::pin(async move {
            for (namespace, init) in created.into_iter().zip(inits) {
                init.await.map_err(|e| RoomsError::Init {
                    namespace,
                    reason: e.to_string(),
                })?;
            }
            Ok(())
        })
    }
}

impl<A: Adapter> fmt::Debug for Attached<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attached")
            .field("created", &self.created)
            .field("existing", &self.existing)
            .finish_non_exhaustive()
    }
}

/// Configures [`Rooms`].
///
/// ```standalone_crate
/// use broadcast_core::join::{Handshake, Rooms};
///
/// struct User(u64);
///
/// let rooms = Rooms::builder()
///     .max_rooms_per_socket(32)
///     .max_join_bytes(1024)
///     .authenticate(async |h: Handshake| -> Result<Option<User>, String> {
///         Ok(h.auth()["user"].as_u64().map(User))
///     })
///     .build()
///     .unwrap();
/// assert_eq!(rooms.max_rooms_per_socket(), 32);
/// ```
pub struct RoomsBuilder {
    max_rooms_per_socket: usize,
    max_join_bytes: usize,
    limits: Limits,
    authenticator: Option<Authenticator>,
    expose_auth_errors: bool,
    presence: PresenceSetup,
}

impl Default for RoomsBuilder {
    fn default() -> Self {
        Self {
            max_rooms_per_socket: DEFAULT_MAX_ROOMS_PER_SOCKET,
            max_join_bytes: DEFAULT_MAX_JOIN_BYTES,
            limits: Limits {
                join_burst: DEFAULT_JOIN_BURST,
                joins_per_second: DEFAULT_JOINS_PER_SECOND,
                max_joins_in_flight: DEFAULT_MAX_JOINS_IN_FLIGHT,
            },
            authenticator: None,
            expose_auth_errors: false,
            presence: PresenceSetup::default(),
        }
    }
}

impl fmt::Debug for RoomsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomsBuilder")
            .field("max_rooms_per_socket", &self.max_rooms_per_socket)
            .field("max_join_bytes", &self.max_join_bytes)
            .field("limits", &self.limits)
            .field("authenticates", &self.authenticator.is_some())
            .field("expose_auth_errors", &self.expose_auth_errors)
            .field("presence", &self.presence)
            .finish()
    }
}

impl RoomsBuilder {
    /// Who a socket is in [presence](crate::presence) rooms
    /// (`#[room(presence)]`): `f` makes the member from the socket's join
    /// context, usually its [identity](JoinContext::identity). The member
    /// must serialize to a JSON object with a string `id` (the user: its
    /// connections count once); its other fields are the member's metadata,
    /// sent to clients with it. `None` (an anonymous socket) joins without
    /// being a member. Required when a room has presence.
    ///
    /// ```standalone_crate
    /// use broadcast_core::join::{JoinContext, Rooms};
    ///
    /// struct User { name: String, color: String }
    ///
    /// #[derive(serde::Serialize)]
    /// struct Here { id: String, color: String }
    ///
    /// let rooms = Rooms::builder()
    ///     .presence_member(|ctx: &JoinContext| {
    ///         ctx.identity::<User>().map(|u| Here { id: u.name.clone(), color: u.color.clone() })
    ///     })
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn presence_member<F, M>(mut self, f: F) -> Self
    where
        F: for<'a> Fn(&'a JoinContext) -> Option<M> + Send + Sync + 'static,
        M: serde::Serialize,
    {
        self.presence.member = Some(Arc::new(move |ctx: &JoinContext| {
            let member = f(ctx)?;
            Some(
                serde_json::to_string(&member)
                    .map_err(|e| PresenceError::InvalidMember {
                        id: String::new(),
                        reason: e.to_string(),
                    })
                    .and_then(|json| Member::from_json(&json)),
            )
        }));
        self
    }

    /// Runs `hook` on every presence transition of this server's making
    /// (see [`PresenceChange`]): exactly once per transition in the
    /// cluster. Each call runs in its own task, so a slow or failing hook
    /// holds up no join and no delivery. May be called several times.
    ///
    /// ```standalone_crate
    /// use broadcast_core::join::Rooms;
    /// use broadcast_core::presence::{PresenceChange, PresenceKind};
    ///
    /// let rooms = Rooms::builder()
    ///     .on_presence(async |c: PresenceChange| {
    ///         if c.kind == PresenceKind::Vacated {
    ///             tracing::info!(room = c.room, "everyone left");
    ///         }
    ///     })
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn on_presence<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(PresenceChange) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.presence
            .hooks
            .push(Arc::new(move |change| Box::pin(hook(change))));
        self
    }

    /// The rate past which a room's presence frames are coalesced into
    /// `presence_diff` (per room and server; see [`crate::presence`]).
    ///
    /// ```standalone_crate
    /// use broadcast_core::presence::PresenceRate;
    /// let rooms = broadcast_core::join::Rooms::builder()
    ///     .presence_rate(PresenceRate { burst: 5, per_second: 2.0 })
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn presence_rate(mut self, rate: PresenceRate) -> Self {
        self.presence.rate = rate;
        self
    }

    /// How many rooms one socket (in one namespace) may be in, counting
    /// rooms the server joined it to (default 128).
    pub fn max_rooms_per_socket(mut self, limit: usize) -> Self {
        self.max_rooms_per_socket = limit;
        self
    }

    /// Largest `join_<key>` / `leave_<key>` event accepted, in encoded bytes
    /// (default 4 KiB).
    pub fn max_join_bytes(mut self, limit: usize) -> Self {
        self.max_join_bytes = limit;
        self
    }

    /// The token bucket of each socket's joins (per namespace): `burst`
    /// joins at once, then `per_second` (default 20 and 10). Every
    /// `join_<key>` of a room of the namespace takes a token before it is
    /// even parsed; one without a token is answered `rate_limited` (an
    /// `error` event and the ack, [`RoomError::RateLimited`]) and goes no
    /// further, so a socket's authorizer calls are at most
    /// `burst + per_second * seconds`. `f64::INFINITY` turns it off.
    ///
    /// Leaves take no token: leaving must stay possible for a client over
    /// its limit, and a leave runs no authorizer (its `on_leave` runs only
    /// for a room the socket was in, which took a join).
    ///
    /// ```standalone_crate
    /// let rooms = broadcast_core::join::Rooms::builder().join_rate(5, 0.5).build().unwrap();
    /// ```
    pub fn join_rate(mut self, burst: u32, per_second: f64) -> Self {
        self.limits.join_burst = burst;
        self.limits.joins_per_second = per_second;
        self
    }

    /// How many joins of one socket may be unanswered at once (default 8),
    /// from their arrival until their reply is out, so a client that does
    /// not read its replies stops reaching the authorizer. One more is
    /// answered `rate_limited` without taking a token.
    ///
    /// ```standalone_crate
    /// let rooms = broadcast_core::join::Rooms::builder().max_joins_in_flight(2).build().unwrap();
    /// ```
    pub fn max_joins_in_flight(mut self, limit: usize) -> Self {
        self.limits.max_joins_in_flight = limit;
        self
    }

    /// Whether a client refused by the [authenticator](Self::authenticate)
    /// gets the authenticator's message in its `connect_error` (default
    /// `false`: it gets [`UNAUTHORIZED`], and the message is logged at
    /// debug level). Turn it on when the messages are written for users.
    ///
    /// ```standalone_crate
    /// use broadcast_core::join::{Handshake, Rooms};
    /// let rooms = Rooms::builder()
    ///     .authenticate(async |_h: Handshake| -> Result<Option<()>, String> {
    ///         Err("auth.user must be a name".into())
    ///     })
    ///     .expose_auth_errors(true)
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn expose_auth_errors(mut self, expose: bool) -> Self {
        self.expose_auth_errors = expose;
        self
    }

    /// Authenticates every socket at connect time, in every namespace the
    /// rooms are wired into, before the connect is acknowledged: the one
    /// place where a socket gets its identity.
    ///
    /// `Ok(Some(identity))` stores the identity on the socket (read it with
    /// [`JoinContext::identity`] in authorizers and with [`identity`] in
    /// your handlers), `Ok(None)` lets it in anonymously (public rooms
    /// only), and `Err(message)` refuses the connection: the client gets a
    /// `connect_error` saying [`UNAUTHORIZED`] (with `message` itself if
    /// [`expose_auth_errors`](Self::expose_auth_errors) is on). [`Handshake::join`] puts the
    /// socket in rooms of your choice (its own user room, say) before the
    /// connect is acknowledged.
    pub fn authenticate<F, Fut, T, E>(mut self, authenticate: F) -> Self
    where
        F: Fn(Handshake) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<T>, E>> + Send + 'static,
        T: Send + Sync + 'static,
        E: fmt::Display,
    {
        self.authenticator = Some(Arc::new(move |handshake| {
            let fut = authenticate(handshake);
            Box::pin(async move {
                match fut.await {
                    Ok(identity) => Ok(identity.map(Identity::new)),
                    Err(e) => Err(e.to_string()),
                }
            })
        }));
        self
    }

    /// Collects every registered room and checks them (the same check as
    /// [`registry::validate`](crate::registry::validate)): keys are valid
    /// and unique per namespace, namespaces are valid. Fails with the first
    /// problem.
    pub fn build(self) -> Result<Rooms, RoomsError> {
        let (by_namespace, problems) = descriptor::checked();
        if let Some(first) = problems.into_iter().next() {
            return Err(first);
        }
        let presence_rooms: Vec<String> = by_namespace
            .values()
            .flatten()
            .filter(|r| r.presence)
            .map(|r| r.location())
            .collect();
        if !presence_rooms.is_empty() && self.presence.member.is_none() {
            return Err(RoomsError::PresenceWithoutMember {
                rooms: presence_rooms,
            });
        }
        let namespaces = by_namespace
            .into_iter()
            .map(|(ns, rooms)| {
                let rooms = rooms
                    .into_iter()
                    .map(|descriptor| Registered {
                        descriptor,
                        join_event: broadcast_rules::protocol::join_event(descriptor.key),
                        leave_event: broadcast_rules::protocol::leave_event(descriptor.key),
                    })
                    .collect();
                (ns, rooms)
            })
            .collect();
        Ok(Rooms {
            inner: Arc::new(RoomsInner {
                namespaces,
                max_rooms_per_socket: self.max_rooms_per_socket,
                max_join_bytes: self.max_join_bytes,
                limits: self.limits,
                counters: Counters::default(),
                authenticator: self.authenticator,
                expose_auth_errors: self.expose_auth_errors,
                has_presence: !presence_rooms.is_empty(),
                presence: self.presence,
                wired: Mutex::default(),
            }),
        })
    }
}

/// The registered rooms cannot be served.
///
/// ```
/// use broadcast_core::join::RoomsError;
/// let e = RoomsError::DuplicateKey {
///     key: "chat",
///     namespace: "/",
///     rooms: vec!["a::ChatRoom (a.rs:1)".into(), "b::ChatRoom (b.rs:1)".into()],
/// };
/// assert_eq!(
///     e.to_string(),
///     "room key `chat` in namespace `/` is used by a::ChatRoom (a.rs:1), b::ChatRoom (b.rs:1)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomsError {
    /// Two room types share a key in one namespace, so `join_<key>` would be
    /// ambiguous.
    #[error("room key `{key}` in namespace `{namespace}` is used by {}", rooms.join(", "))]
    DuplicateKey {
        /// Room key.
        key: &'static str,
        /// Namespace.
        namespace: &'static str,
        /// The room types sharing it, with their source location.
        rooms: Vec<String>,
    },
    /// A room key is not acceptable.
    #[error("room key `{key}` of {room} is invalid: {source}")]
    InvalidKey {
        /// Room key.
        key: &'static str,
        /// The room type and where it is declared.
        room: String,
        /// What is wrong with it.
        source: NameError,
    },
    /// A room's namespace is not acceptable.
    #[error("room `{key}` of {room} has an invalid namespace `{namespace}`: {source}")]
    InvalidNamespace {
        /// Room key.
        key: &'static str,
        /// The namespace.
        namespace: &'static str,
        /// The room type and where it is declared.
        room: String,
        /// What is wrong with it.
        source: NameError,
    },
    /// Rooms have presence, but nothing says who a socket is in them
    /// ([`RoomsBuilder::presence_member`]).
    #[error("{} {} presence but no member function: call RoomsBuilder::presence_member", rooms.join(", "), if rooms.len() == 1 { "has" } else { "have" })]
    PresenceWithoutMember {
        /// The presence room types and where they are declared.
        rooms: Vec<String>,
    },
    /// The adapter could not initialize a namespace [`Rooms::attach`] created.
    #[error("initializing namespace `{namespace}` failed: {reason}")]
    Init {
        /// The namespace.
        namespace: &'static str,
        /// The adapter's message.
        reason: String,
    },
}
