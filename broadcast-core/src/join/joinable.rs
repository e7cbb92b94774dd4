//! What makes a room type joinable by clients: who may join, how the
//! room is read from a client's request, and the hooks around a join.

use std::fmt;
use std::future::Future;

use serde::Serialize;

use super::context::JoinContext;
use crate::position::HistoryPolicy;
use crate::room::Room;

/// Who may join a room type through the join protocol.
///
/// `#[derive(Room)]` picks it from the attributes: `#[room(public)]` is
/// [`Public`](Self::Public), `#[room(authorize = f)]` is
/// [`Authorized`](Self::Authorized), and a room with neither is
/// [`ServerOnly`](Self::ServerOnly).
///
/// ```
/// use broadcast_core::join::Access;
/// assert_eq!(serde_json::to_value(Access::ServerOnly).unwrap(), "server_only");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Any client, authenticated or not; the authorizer still runs.
    Public,
    /// Authenticated clients that the room's authorizer allows.
    Authorized,
    /// No client: only server code puts sockets in the room (e.g.
    /// [`Handshake::join`](super::Handshake::join) at connect time). A
    /// client's `join_<key>` is answered `forbidden`.
    ServerOnly,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Public => "public",
            Access::Authorized => "authorized",
            Access::ServerOnly => "server only",
        })
    }
}

/// A room clients can join and leave with `join_<KEY>` / `leave_<KEY>`.
///
/// Usually derived (`#[derive(Room)]` implements both [`Room`] and this
/// trait, and registers the room). Written by hand, the room must also be
/// registered with [`register_room!`](crate::register_room) for
/// [`Rooms`](super::Rooms) to find it.
///
/// The name of a joinable room must be `KEY` followed by one `|segment` per
/// identifier field (`chat|123`, `pair|1|x`), or just `KEY` for a room without
/// fields. The join protocol checks this on every join, so a field value
/// containing `|` (which would make two rooms share a name) is refused.
///
/// Deny by default: the default [`authorize`](Self::authorize) refuses
/// everyone, and a [`ServerOnly`](Access::ServerOnly) room never asks it.
///
/// ```standalone_crate
/// use std::borrow::Cow;
/// use broadcast_core::{Room, register_room};
/// use broadcast_core::join::{Access, Authorization, JoinContext, JoinableRoom, RoomDataError};
///
/// struct TeamRoom(String);
///
/// impl Room for TeamRoom {
///     fn name(&self) -> Cow<'static, str> { format!("team|{}", self.0).into() }
/// }
///
/// struct Member { team: String }
///
/// impl JoinableRoom for TeamRoom {
///     const KEY: &'static str = "team";
///     const ACCESS: Access = Access::Authorized;
///     const FIELDS: &'static [&'static str] = &["0"];
///
///     fn from_join_data(data: &serde_json::Value) -> Result<Self, RoomDataError> {
///         match data.as_str() {
///             Some(team) => Ok(TeamRoom(team.to_owned())),
///             None => Err(RoomDataError::Shape {
///                 key: Self::KEY,
///                 expected: "a team name".into(),
///                 got: "something else",
///             }),
///         }
///     }
///
///     async fn authorize(ctx: &JoinContext, room: &Self) -> Authorization {
///         Authorization::allow_if(ctx.identity::<Member>().is_some_and(|m| m.team == room.0))
///     }
/// }
/// register_room!(TeamRoom);
///
/// let room = TeamRoom::from_join_data(&serde_json::json!("red")).unwrap();
/// assert_eq!(room.name(), "team|red");
/// ```
pub trait JoinableRoom: Room + Sized + Send + Sync + 'static {
    /// The room key: `chat` for `chat|123`, and the `<key>` of `join_<key>`.
    const KEY: &'static str;

    /// The namespace the room lives in; joins land there.
    const NAMESPACE: &'static str = broadcast_rules::DEFAULT_NAMESPACE;

    /// Who may join.
    const ACCESS: Access;

    /// The identifier fields, in the order they appear in the name (`"0"`,
    /// `"1"`, ... for tuple structs).
    const FIELDS: &'static [&'static str];

    /// What the room keeps for clients that reconnect (`None`: nothing,
    /// and its events carry no position). `#[room(history(..))]` sets it.
    const HISTORY: Option<HistoryPolicy> = None;
    /// Whether the room tracks who is in it ([`presence`](crate::presence);
    /// `#[room(presence)]`). Default: no, and joins cost nothing more.
    const PRESENCE: bool = false;

    /// Builds the room from the data a client sent with `join_<key>` or
    /// `leave_<key>` (`null` when it sent none).
    fn from_join_data(data: &serde_json::Value) -> Result<Self, RoomDataError>;

    /// Decides whether the socket of `ctx` may join `room`. Called for
    /// authenticated sockets of an [`Authorized`](Access::Authorized) room
    /// and for every socket of a [`Public`](Access::Public) one; never for a
    /// [`ServerOnly`](Access::ServerOnly) room. Default: refuse.
    fn authorize(ctx: &JoinContext, room: &Self) -> impl Future<Output = Authorization> + Send {
        let _ = (ctx, room);
        std::future::ready(Authorization::Forbid)
    }

    /// Runs after the socket joined, before the client is answered.
    fn on_join(ctx: &JoinContext, room: &Self) -> impl Future<Output = ()> + Send {
        let _ = (ctx, room);
        std::future::ready(())
    }

    /// Runs after the socket left (only when it was in the room), before the
    /// client is answered. Not run when a socket disconnects.
    fn on_leave(ctx: &JoinContext, room: &Self) -> impl Future<Output = ()> + Send {
        let _ = (ctx, room);
        std::future::ready(())
    }
}

/// An authorizer's decision.
///
/// ```
/// use broadcast_core::join::Authorization;
/// assert_eq!(Authorization::allow_if(true), Authorization::Allow);
/// assert_eq!(Authorization::allow_if(false), Authorization::Forbid);
/// assert_eq!(
///     Authorization::invalid("chat 42 does not exist"),
///     Authorization::Invalid("chat 42 does not exist".into()),
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// The socket may join.
    Allow,
    /// The socket may not join; the client gets a `forbidden` error.
    Forbid,
    /// The request makes no sense (e.g. the chat does not exist); the client
    /// gets a `validation_error` with this message.
    Invalid(String),
}

impl Authorization {
    /// `Allow` if `allowed`, else `Forbid`.
    pub fn allow_if(allowed: bool) -> Self {
        if allowed { Self::Allow } else { Self::Forbid }
    }

    /// `Invalid` with a message for the client.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::Invalid(msg.into())
    }
}

impl From<bool> for Authorization {
    fn from(allowed: bool) -> Self {
        Self::allow_if(allowed)
    }
}

/// What an authorizer may return: an [`Authorization`], a `bool`, or a
/// `Result` of either.
///
/// An `Err` denies the join (deny by default) and is logged at `warn` level;
/// the client only sees `forbidden`, so server errors do not leak.
///
/// ```
/// use broadcast_core::join::{Authorization, IntoAuthorization};
/// assert_eq!(true.into_authorization(), Authorization::Allow);
/// let failed: Result<bool, &str> = Err("database is down");
/// assert_eq!(failed.into_authorization(), Authorization::Forbid);
/// ```
pub trait IntoAuthorization {
    /// Converts into a decision.
    fn into_authorization(self) -> Authorization;
}

impl IntoAuthorization for Authorization {
    fn into_authorization(self) -> Authorization {
        self
    }
}

impl IntoAuthorization for bool {
    fn into_authorization(self) -> Authorization {
        Authorization::allow_if(self)
    }
}

impl<T: IntoAuthorization, E: fmt::Display> IntoAuthorization for Result<T, E> {
    fn into_authorization(self) -> Authorization {
        match self {
            Ok(v) => v.into_authorization(),
            Err(e) => {
                tracing::warn!(target: "broadcast::rooms", error = %e, "room authorizer failed; denying the join");
                Authorization::Forbid
            }
        }
    }
}

/// Data sent with `join_<key>` / `leave_<key>` does not describe a room of
/// that key. Every variant names the room key; the message is sent to the
/// client as a `validation_error`.
///
/// ```
/// use broadcast_core::join::RoomDataError;
/// let e = RoomDataError::MissingField { key: "pair", field: "b" };
/// assert_eq!(e.to_string(), "room `pair`: missing field `b`");
/// assert_eq!(e.key(), "pair");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomDataError {
    /// The room has no identifier, but data was sent.
    #[error("room `{key}` takes no identifier; send nothing, null, [] or {{}}, not {got}")]
    NotEmpty {
        /// Room key.
        key: &'static str,
        /// The JSON type that was sent.
        got: &'static str,
    },
    /// The data has the wrong JSON shape.
    #[error("room `{key}` expects {expected}, not {got}")]
    Shape {
        /// Room key.
        key: &'static str,
        /// What would have been accepted.
        expected: String,
        /// The JSON type that was sent.
        got: &'static str,
    },
    /// An array with the wrong number of values.
    #[error("room `{key}` expects {expected} value(s) [{fields}], got {got}")]
    Arity {
        /// Room key.
        key: &'static str,
        /// Number of identifier fields.
        expected: usize,
        /// Number of values sent.
        got: usize,
        /// The field names, comma-separated.
        fields: String,
    },
    /// An object lacks a field.
    #[error("room `{key}`: missing field `{field}`")]
    MissingField {
        /// Room key.
        key: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// An object has a field the room does not have.
    #[error("room `{key}`: unknown field `{field}`; expected {fields}")]
    UnknownField {
        /// Room key.
        key: &'static str,
        /// The unknown field (truncated).
        field: String,
        /// The field names, comma-separated.
        fields: String,
    },
    /// A field's value does not parse.
    #[error("room `{key}`: field `{field}`: {msg}")]
    Field {
        /// Room key.
        key: &'static str,
        /// The field.
        field: &'static str,
        /// The parser's message.
        msg: String,
    },
    /// The room name built from the data is not acceptable.
    #[error("room `{key}`: {reason}")]
    Name {
        /// Room key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl RoomDataError {
    /// The key of the room the data was meant for.
    pub fn key(&self) -> &'static str {
        match self {
            Self::NotEmpty { key, .. }
            | Self::Shape { key, .. }
            | Self::Arity { key, .. }
            | Self::MissingField { key, .. }
            | Self::UnknownField { key, .. }
            | Self::Field { key, .. }
            | Self::Name { key, .. } => key,
        }
    }
}
