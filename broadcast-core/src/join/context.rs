//! Who is asking: the identity stored at connect time, and what authorizers
//! and hooks see of the socket.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use socketioxide::adapter::Adapter;
use socketioxide::socket::{Sid, Socket};

use crate::room::Room;

/// The authenticated identity of a socket, stored in its extensions at
/// connect time by [`RoomsBuilder::authenticate`](super::RoomsBuilder::authenticate)
/// and read by authorizers with [`JoinContext::identity`] and by your
/// handlers with [`identity`].
///
/// Any `Send + Sync + 'static` value can be an identity (a user, a session,
/// a set of claims); it is shared, never cloned.
///
/// ```
/// use broadcast_core::join::Identity;
/// struct User { id: u64 }
/// let id = Identity::new(User { id: 7 });
/// assert_eq!(id.get::<User>().map(|u| u.id), Some(7));
/// assert!(id.get::<String>().is_none());
/// ```
#[derive(Clone)]
pub struct Identity {
    value: Arc<dyn Any + Send + Sync>,
    type_name: &'static str,
}

impl Identity {
    /// Wraps a value.
    pub fn new<T: Send + Sync + 'static>(value: T) -> Self {
        Self {
            value: Arc::new(value),
            type_name: std::any::type_name::<T>(),
        }
    }

    /// The value, if it is a `T`.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.value.downcast_ref::<T>()
    }

    /// The Rust type name of the value (for logs).
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Identity").field(&self.type_name).finish()
    }
}

/// The identity [`RoomsBuilder::authenticate`](super::RoomsBuilder::authenticate)
/// stored on `socket` when it connected, if any: how your own event
/// handlers learn who is talking.
///
/// ```no_run
/// # use socketioxide::extract::SocketRef;
/// # struct User;
/// async fn on_message(socket: SocketRef) {
///     let me = broadcast_core::join::identity(&socket);
///     let user = me.as_ref().and_then(|id| id.get::<User>());
/// }
/// ```
pub fn identity<A: Adapter>(socket: &Socket<A>) -> Option<Identity> {
    socket.extensions.get::<Identity>()
}

type Emitter = Arc<dyn Fn(&str, &serde_json::Value) -> Result<(), String> + Send + Sync>;

/// What an authorizer or hook knows about the socket asking to join or
/// leave: its id, namespace and [`Identity`], and a way to emit to it.
///
/// Not generic over the socketioxide adapter, so room types work unchanged
/// with the in-memory and the Redis adapter.
///
/// ```
/// use broadcast_core::join::JoinContext;
/// struct User { id: u64 }
/// let ctx = JoinContext::new("/").with_identity(User { id: 7 });
/// assert_eq!(ctx.identity::<User>().map(|u| u.id), Some(7));
/// assert!(JoinContext::new("/").identity::<User>().is_none());
/// ```
#[derive(Clone)]
pub struct JoinContext {
    sid: Sid,
    namespace: String,
    identity: Option<Identity>,
    emitter: Option<Emitter>,
}

impl fmt::Debug for JoinContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinContext")
            .field("sid", &self.sid)
            .field("namespace", &self.namespace)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl JoinContext {
    /// A context for an anonymous socket in `namespace` that emits nowhere:
    /// for testing authorizers and hooks.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            sid: Sid::ZERO,
            namespace: namespace.into(),
            identity: None,
            emitter: None,
        }
    }

    /// The same context, authenticated as `identity`.
    pub fn with_identity<T: Send + Sync + 'static>(mut self, identity: T) -> Self {
        self.identity = Some(Identity::new(identity));
        self
    }

    pub(crate) fn for_socket<A: Adapter>(socket: &Arc<Socket<A>>) -> Self {
        let target = socket.clone();
        Self {
            sid: socket.id,
            namespace: socket.ns().to_owned(),
            identity: identity(socket),
            emitter: Some(Arc::new(move |event, data| {
                target.emit(event, data).map_err(|e| e.to_string())
            })),
        }
    }

    /// The socket id (`Sid::ZERO` in a context made with [`new`](Self::new)).
    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// The namespace of the socket (and of the room).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The identity, if the socket authenticated as a `T`.
    pub fn identity<T: 'static>(&self) -> Option<&T> {
        self.identity.as_ref().and_then(Identity::get)
    }

    /// Whether the socket authenticated at all.
    pub fn is_authenticated(&self) -> bool {
        self.identity.is_some()
    }

    /// The raw identity.
    pub fn raw_identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// Emits `event` to this socket only (e.g. a chat's history from an
    /// `on_join` hook). A no-op in a context made with [`new`](Self::new).
    ///
    /// ```
    /// # use broadcast_core::join::JoinContext;
    /// let ctx = JoinContext::new("/");
    /// ctx.emit("history", &["hello"]).unwrap();
    /// ```
    pub fn emit(&self, event: &str, data: &impl serde::Serialize) -> Result<(), EmitError> {
        let Some(emitter) = &self.emitter else {
            return Ok(());
        };
        let value = serde_json::to_value(data).map_err(|e| EmitError {
            event: event.to_owned(),
            sid: self.sid,
            msg: e.to_string(),
        })?;
        emitter(event, &value).map_err(|msg| EmitError {
            event: event.to_owned(),
            sid: self.sid,
            msg,
        })
    }
}

/// [`JoinContext::emit`] failed (the socket closed, or its buffer is full).
///
/// ```
/// # use broadcast_core::join::EmitError;
/// # let e = EmitError { event: "history".into(), sid: socketioxide::socket::Sid::ZERO, msg: "closed".into() };
/// assert!(e.to_string().starts_with("emitting `history` to socket"));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("emitting `{event}` to socket {sid} failed: {msg}")]
pub struct EmitError {
    /// The event.
    pub event: String,
    /// The socket.
    pub sid: Sid,
    /// Why.
    pub msg: String,
}

/// A client's connect request, as seen by
/// [`RoomsBuilder::authenticate`](crate::join::RoomsBuilder::authenticate).
///
/// ```
/// use broadcast_core::join::Handshake;
/// let h = Handshake::new("/", serde_json::json!({"token": "t"}))
///     .with_header("Authorization", "Bearer t");
/// assert_eq!(h.auth()["token"], "t");
/// assert_eq!(h.header("authorization"), Some("Bearer t"));
/// ```
#[derive(Debug, Clone)]
pub struct Handshake {
    namespace: String,
    auth: serde_json::Value,
    headers: Vec<(String, String)>,
    query: Option<String>,
    joins: Joins,
}

/// The rooms an authenticator asked to put the socket in; shared with the
/// middleware, which joins them once the authenticator has accepted.
#[derive(Debug, Clone, Default)]
pub(crate) struct Joins(Arc<Mutex<Vec<String>>>);

impl Joins {
    pub(crate) fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Handshake {
    /// A handshake for `namespace` with an `auth` payload and no headers:
    /// for testing authenticators.
    pub fn new(namespace: impl Into<String>, auth: serde_json::Value) -> Self {
        Self {
            namespace: namespace.into(),
            auth,
            headers: Vec::new(),
            query: None,
            joins: Joins::default(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub(crate) fn for_socket<A: Adapter>(socket: &Socket<A>, auth: serde_json::Value) -> Self {
        let parts = socket.req_parts();
        let headers = parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        Self {
            namespace: socket.ns().to_owned(),
            auth,
            headers,
            query: parts.uri.query().map(str::to_owned),
            joins: Joins::default(),
        }
    }

    pub(crate) fn joins(&self) -> Joins {
        self.joins.clone()
    }

    /// Puts the connecting socket in `room` once the authenticator accepts
    /// it, before the client is told it is connected: an event broadcast to
    /// the room right after the connect reaches it. This is how a socket
    /// enters a [server-only](super::Access::ServerOnly) room such as the
    /// user's own. A room of another namespace is skipped (and logged).
    ///
    /// ```
    /// use broadcast_core::join::Handshake;
    /// use broadcast_core::Room;
    ///
    /// #[derive(Room)]
    /// struct UserRoom { id: u64 }
    ///
    /// let h = Handshake::new("/", serde_json::json!({"user": 7}));
    /// h.join(&UserRoom { id: 7 });
    /// assert_eq!(h.rooms_to_join(), ["user|7"]);
    /// ```
    pub fn join(&self, room: &impl Room) {
        if room.namespace() != self.namespace {
            tracing::warn!(target: "broadcast::rooms", room = %room.name(), room_namespace = %room.namespace(), namespace = %self.namespace, "not joining a room of another namespace at connect");
            return;
        }
        self.joins
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(room.name().into_owned());
    }

    /// The rooms [`join`](Self::join) asked for so far.
    pub fn rooms_to_join(&self) -> Vec<String> {
        self.joins
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The namespace being connected to.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The client's `auth` payload; `{}` when it sent none, `null` when it
    /// was not JSON.
    pub fn auth(&self) -> &serde_json::Value {
        &self.auth
    }

    /// The first value of a header of the HTTP upgrade request (name
    /// compared case-insensitively); headers that are not UTF-8 are skipped.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The query string of the request, without `?`.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }
}
