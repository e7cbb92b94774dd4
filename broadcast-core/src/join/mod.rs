//! The room join/leave protocol: clients join and leave typed rooms, the
//! server authorizes, deny by default.
//!
//! # Wiring
//!
//! Every room type declared with `#[derive(Room)]` (or registered with
//! [`register_room!`](crate::register_room)) is found at startup; one call
//! wires them all into a [`SocketIo`], with any adapter:
//!
//! ```no_run,standalone_crate
//! use broadcast_core::Room;
//! use broadcast_core::join::{Handshake, Rooms};
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
//! struct User { id: u64 }
//!
//! async fn can_join_chat(ctx: &broadcast_core::join::JoinContext, room: &ChatRoom) -> bool {
//!     ctx.identity::<User>().is_some_and(|u| u.id == room.0) // your membership check
//! }
//!
//! async fn authenticate(h: Handshake) -> Result<Option<User>, String> {
//!     match h.auth()["token"].as_str() {
//!         None => Ok(None), // anonymous: public rooms only
//!         Some("secret-of-7") => Ok(Some(User { id: 7 })),
//!         Some(_) => Err("invalid token".into()), // connect refused
//!     }
//! }
//!
//! # fn run() -> Result<(), broadcast_core::join::RoomsError> {
//! let (layer, io) = socketioxide::SocketIo::new_layer();
//! let rooms = Rooms::builder().authenticate(authenticate).build()?;
//! // Namespaces with your own connect handler: wrap it.
//! io.ns("/", rooms.handler(async |socket: SocketRef| { /* your code */ }));
//! // Every other namespace used by rooms and events is created.
//! rooms.attach(&io);
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
//! | refused by the authorizer or anonymous socket on a private room | `error` `{"type": "forbidden", "room": "chat\|1"}` | `{"ok": false, "error": {...same...}}` |
//! | anything else (bad data, unknown key, too large, room limit, authorizer said invalid) | `error` `{"type": "validation_error", "msg": "...", "key": "chat"}` | `{"ok": false, "error": {...same...}}` |
//!
//! The event is sent before the ack, so a client that awaited the ack has
//! the event already. Once `joined` is sent, the socket is in the room.
//!
//! Rules:
//! - Joins land in the room's own namespace: a room of `/admin` is joined
//!   by a socket connected to `/admin`; `join_<key>` elsewhere gets a
//!   `validation_error` saying where the room is.
//! - Deny by default: an anonymous socket (no [`Identity`]) can only join
//!   public rooms; every other join goes through the room's authorizer.
//! - Joining a room the socket is already in answers `ok` without running
//!   the authorizer or `on_join` again.
//! - Leaving is always allowed.
//! - Limits ([`RoomsBuilder`]): at most 128 rooms per socket and namespace,
//!   and join/leave events of at most 4 KiB (the whole encoded event).
//! - `on_join` runs after the socket joined and `on_leave` after it left,
//!   both before the reply; neither runs on disconnect.
//! - Unknown keys are answered by a catch-all handler (`on_fallback`); other
//!   unhandled events are left alone. A connect handler that sets its own
//!   `on_fallback` replaces it, and `join_<unknown>` then goes unanswered.
//! - A reply waits (about a second at most) for room in the socket's
//!   outgoing buffer rather than being dropped, so a client with many
//!   requests in flight still gets every answer.
//!
//! # Early joins
//!
//! socketioxide acknowledges a namespace connect before it runs the
//! (spawned) connect handler, so handlers registered there can miss an event
//! the client emits right after connecting. The protocol's handlers are
//! registered by a connect *middleware* ([`Rooms::middleware`]), which
//! socketioxide awaits before acknowledging, so no join is missed.

mod context;
#[doc(hidden)]
pub mod derive_support;
mod entry;
mod protocol;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use socketioxide::SocketIo;
use socketioxide::adapter::{Adapter, Emitter};
use socketioxide::handler::ConnectHandler;
use socketioxide_core::adapter::{CoreAdapter, DefinedAdapter, Spawnable};

pub use context::{EmitError, Handshake, Identity, JoinContext, identity, set_identity};
use entry::ParsedRoom;
pub use entry::RoomEntry;
pub use protocol::{ERROR_EVENT, JOINED_EVENT, JoinError, LEFT_EVENT, RoomsMiddleware};

use crate::target::validate_namespace;
use crate::transport::BoxFuture;

/// Default for [`RoomsBuilder::max_rooms_per_socket`].
pub const DEFAULT_MAX_ROOMS_PER_SOCKET: usize = 128;
/// Default for [`RoomsBuilder::max_join_bytes`]: 4 KiB.
pub const DEFAULT_MAX_JOIN_BYTES: usize = 4 * 1024;
/// Longest room key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 64;

type Authenticator =
    Arc<dyn Fn(Handshake) -> BoxFuture<'static, Result<Option<Identity>, String>> + Send + Sync>;

/// Every registered joinable room, ready to be wired into a [`SocketIo`].
/// Cheap to clone.
///
/// See the [module docs](self) for the protocol.
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
/// let rooms = Rooms::new().unwrap();
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
            .field("authenticates", &self.inner.authenticator.is_some())
            .finish()
    }
}

pub(crate) struct RoomsInner {
    namespaces: BTreeMap<&'static str, Vec<Registered>>,
    pub(crate) max_rooms_per_socket: usize,
    pub(crate) max_join_bytes: usize,
    pub(crate) authenticator: Option<Authenticator>,
}

struct Registered {
    entry: &'static RoomEntry,
    join_event: String,
    leave_event: String,
}

impl fmt::Debug for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.entry.key())
    }
}

impl RoomsInner {
    fn rooms_in(&self, namespace: &str) -> &[Registered] {
        self.namespaces.get(namespace).map_or(&[], Vec::as_slice)
    }

    fn find_key(&self, key: &str) -> Option<&'static RoomEntry> {
        self.namespaces
            .values()
            .flatten()
            .map(|r| r.entry)
            .find(|e| e.key() == key)
    }
}

impl Rooms {
    /// Every registered room with the default limits and no authenticator.
    pub fn new() -> Result<Self, RoomsError> {
        Self::builder().build()
    }

    /// Configures limits and connect-time authentication.
    pub fn builder() -> RoomsBuilder {
        RoomsBuilder::default()
    }

    /// The connect middleware that authenticates (if configured) and
    /// installs the protocol on each socket before its connect is
    /// acknowledged. Add it to every namespace you create yourself:
    /// `io.ns(path, handler.with(rooms.middleware()))`, or use
    /// [`handler`](Self::handler) / [`ns`](Self::ns), which do that.
    pub fn middleware(&self) -> RoomsMiddleware {
        RoomsMiddleware {
            inner: self.inner.clone(),
        }
    }

    /// Your connect handler with the rooms' middleware in front of it.
    ///
    /// Middlewares you add with `.with(..)` on the result run before the
    /// rooms' one, so they can [`set_identity`] for the authorizers.
    pub fn handler<A, H, T>(&self, handler: H) -> impl ConnectHandler<A, T>
    where
        A: Adapter,
        H: ConnectHandler<A, T>,
        T: Send + Sync + 'static,
    {
        handler.with(self.middleware())
    }

    /// `io.ns(path, self.handler(handler))`: creates a namespace with your
    /// connect handler and the protocol. Await the result with the Redis
    /// adapter, as for `io.ns`.
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
        io.ns(path, self.handler(handler))
    }

    /// Creates every namespace that registered rooms or events use and that
    /// `io` does not have yet, each with the protocol and an empty connect
    /// handler.
    ///
    /// Namespaces `io` already has are left alone: their connect handler
    /// must carry [`middleware`](Self::middleware) (see
    /// [`handler`](Self::handler)) for joins to work there. So create your
    /// own namespaces first (and, with the Redis adapter, await their
    /// initialization, since a namespace only exists once it is
    /// initialized), then call `attach`.
    pub fn attach<A>(&self, io: &SocketIo<A>) -> Attached<A>
    where
        A: Adapter + DefinedAdapter,
    {
        let mut wanted: Vec<&'static str> = self.inner.namespaces.keys().copied().collect();
        wanted.extend(crate::registry::events().map(|e| e.namespace));
        wanted.sort_unstable();
        wanted.dedup();
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
                tracing::info!(target: "broadcast::rooms", namespace = ns, "namespace exists; its connect handler must carry Rooms::middleware() for joins to work");
                attached.existing.push(ns);
            } else {
                tracing::info!(target: "broadcast::rooms", namespace = ns, "creating namespace with the join protocol");
                attached.init.push(io.ns(ns, self.handler(async || {})));
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
    pub fn rooms_in(&self, namespace: &str) -> impl Iterator<Item = &'static RoomEntry> {
        self.inner.rooms_in(namespace).iter().map(|r| r.entry)
    }

    /// The room limit per socket.
    pub fn max_rooms_per_socket(&self) -> usize {
        self.inner.max_rooms_per_socket
    }

    /// The size limit of join/leave events, in bytes.
    pub fn max_join_bytes(&self) -> usize {
        self.inner.max_join_bytes
    }
}

/// What [`Rooms::attach`] did.
///
/// ```no_run
/// # async fn run(rooms: broadcast_core::join::Rooms, io: socketioxide::SocketIo) {
/// let attached = rooms.attach(&io);
/// println!("created {:?}, found {:?}", attached.created, attached.existing);
/// // In-memory adapter: nothing to wait for. With Redis, await `init`.
/// attached.spawn_init();
/// # }
/// ```
pub struct Attached<A: Adapter> {
    /// Namespaces it created.
    pub created: Vec<&'static str>,
    /// Namespaces that already existed (left alone).
    pub existing: Vec<&'static str>,
    /// The adapter's initialization of each created namespace, in the order
    /// of `created`: `()` for the in-memory adapter, a future to await (or
    /// [`spawn`](Self::spawn_init)) for the Redis adapter.
    pub init: Vec<<A as CoreAdapter<Emitter>>::InitRes>,
}

impl<A: Adapter> Attached<A> {
    /// Spawns the adapter initializations; failures are logged by the
    /// adapter.
    pub fn spawn_init(self) {
        for init in self.init {
            init.spawn();
        }
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
    authenticator: Option<Authenticator>,
}

impl Default for RoomsBuilder {
    fn default() -> Self {
        Self {
            max_rooms_per_socket: DEFAULT_MAX_ROOMS_PER_SOCKET,
            max_join_bytes: DEFAULT_MAX_JOIN_BYTES,
            authenticator: None,
        }
    }
}

impl fmt::Debug for RoomsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomsBuilder")
            .field("max_rooms_per_socket", &self.max_rooms_per_socket)
            .field("max_join_bytes", &self.max_join_bytes)
            .field("authenticates", &self.authenticator.is_some())
            .finish()
    }
}

impl RoomsBuilder {
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

    /// Authenticates every socket at connect time, in every namespace the
    /// rooms are wired into, before the connect is acknowledged.
    ///
    /// `Ok(Some(identity))` stores the identity on the socket (see
    /// [`set_identity`]), `Ok(None)` lets it in anonymously (public rooms
    /// only), and `Err(message)` refuses the connection: the client gets a
    /// `connect_error` with that message.
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

    /// Collects every registered room and checks them: keys are valid and
    /// unique per namespace, namespaces are valid.
    pub fn build(self) -> Result<Rooms, RoomsError> {
        let mut namespaces: BTreeMap<&'static str, Vec<Registered>> = BTreeMap::new();
        let mut entries: Vec<&'static RoomEntry> =
            inventory::iter::<RoomEntry>.into_iter().collect();
        entries.sort_by_key(|e| (e.namespace(), e.key(), e.type_name()));
        for entry in entries {
            if let Err(reason) = validate_key(entry.key()) {
                return Err(RoomsError::InvalidKey {
                    key: entry.key(),
                    type_name: entry.type_name(),
                    reason,
                });
            }
            if let Err(source) = validate_namespace(entry.namespace()) {
                return Err(RoomsError::InvalidNamespace {
                    key: entry.key(),
                    namespace: entry.namespace(),
                    reason: source.to_string(),
                });
            }
            let rooms = namespaces.entry(entry.namespace()).or_default();
            if let Some(other) = rooms.iter().find(|r| r.entry.key() == entry.key()) {
                return Err(RoomsError::DuplicateKey {
                    key: entry.key(),
                    namespace: entry.namespace(),
                    types: [other.entry.type_name(), entry.type_name()],
                });
            }
            rooms.push(Registered {
                entry,
                join_event: format!("join_{}", entry.key()),
                leave_event: format!("leave_{}", entry.key()),
            });
        }
        Ok(Rooms {
            inner: Arc::new(RoomsInner {
                namespaces,
                max_rooms_per_socket: self.max_rooms_per_socket,
                max_join_bytes: self.max_join_bytes,
                authenticator: self.authenticator,
            }),
        })
    }
}

/// The registered rooms cannot be served.
///
/// ```
/// use broadcast_core::join::RoomsError;
/// let e = RoomsError::DuplicateKey { key: "chat", namespace: "/", types: ["a::ChatRoom", "b::ChatRoom"] };
/// assert_eq!(
///     e.to_string(),
///     "room key `chat` in namespace `/` is used by both a::ChatRoom and b::ChatRoom"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomsError {
    /// Two room types share a key in one namespace, so `join_<key>` would be
    /// ambiguous.
    #[error("room key `{key}` in namespace `{namespace}` is used by both {} and {}", types[0], types[1])]
    DuplicateKey {
        /// Room key.
        key: &'static str,
        /// Namespace.
        namespace: &'static str,
        /// The two types.
        types: [&'static str; 2],
    },
    /// A room key is not acceptable.
    #[error("room key `{key}` of {type_name} is invalid: {reason}")]
    InvalidKey {
        /// Room key.
        key: &'static str,
        /// The room type.
        type_name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A room's namespace is not acceptable.
    #[error("room `{key}` has an invalid namespace `{namespace}`: {reason}")]
    InvalidNamespace {
        /// Room key.
        key: &'static str,
        /// The namespace.
        namespace: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Checks a room key: 1 to [`MAX_KEY_LEN`] bytes of ASCII letters, digits,
/// `_`, `-`, `.` and `:` (`|` separates the key from the identifier).
///
/// ```
/// use broadcast_core::join::validate_key;
/// assert!(validate_key("chat").is_ok());
/// assert!(validate_key("chat|1").is_err());
/// assert!(validate_key("").is_err());
/// ```
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a room key cannot be empty".to_owned());
    }
    if key.len() > MAX_KEY_LEN {
        return Err(format!("a room key is at most {MAX_KEY_LEN} bytes"));
    }
    match key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        Some(c) => Err(format!(
            "a room key may only contain ASCII letters, digits, `_`, `-`, `.` and `:`, not {c:?}"
        )),
        None => Ok(()),
    }
}
