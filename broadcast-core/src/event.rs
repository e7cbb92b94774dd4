//! The event contract: what every broadcast event says about itself.

use std::future::Future;

use serde::Serialize;

use crate::target::IntoTargets;

/// A typed broadcast event.
///
/// Usually derived (`#[derive(BroadcastEvent)]`); written by hand it looks
/// like this:
///
/// ```
/// use broadcast_core::{BroadcastEvent, PayloadError, register_event};
/// use serde::Serialize;
///
/// #[derive(Serialize)]
/// struct UpdateChat { chat_id: u64, title: String }
///
/// impl BroadcastEvent for UpdateChat {
///     const NAME: &'static str = "update_chat";
///
///     async fn broadcast_on(&self) -> impl broadcast_core::IntoTargets {
///         format!("chat|{}", self.chat_id)
///     }
///
///     async fn broadcast_as(&self) -> Result<impl Serialize, PayloadError> {
///         Ok(self)
///     }
/// }
/// // Hand-written events register themselves for listings and checks:
/// register_event!(UpdateChat, rooms = ["chat|{chat_id}"]);
/// ```
///
/// Every future is `Send`, so events can be broadcast from `tokio::spawn`ed
/// tasks and axum handlers.
pub trait BroadcastEvent: Send + Sync {
    /// The Socket.IO event name clients listen to.
    const NAME: &'static str;

    /// The namespace that plain room strings from `broadcast_on` live in.
    /// Typed rooms carry their own namespace.
    const NAMESPACE: &'static str = broadcast_rules::DEFAULT_NAMESPACE;

    /// The rooms to deliver to. Default: one room named after the event.
    fn broadcast_on(&self) -> impl Future<Output = impl IntoTargets> + Send {
        std::future::ready(Self::NAME)
    }

    /// Whether to send at all. Default: always.
    fn broadcast_when(&self) -> impl Future<Output = bool> + Send {
        std::future::ready(true)
    }

    /// The payload clients receive. It is serialized once per broadcast.
    fn broadcast_as(&self) -> impl Future<Output = Result<impl Serialize, PayloadError>> + Send;
}

/// A payload shaped from application data, possibly by awaiting more data
/// (the `Resource.dump()` of Laravel-style frameworks).
///
/// Use one from `broadcast_as` (or `as = ...` in the derive): a resource value
/// returned there is dumped before it is serialized.
///
/// ```
/// use broadcast_core::{PayloadError, Resource};
/// use serde::Serialize;
///
/// struct ChatResource { id: u64 }
///
/// #[derive(Serialize)]
/// struct ChatJson { id: u64, members: Vec<String> }
///
/// impl Resource for ChatResource {
///     type Output = ChatJson;
///     async fn dump(&self) -> Result<ChatJson, PayloadError> {
///         // e.g. load the members from the database here
///         Ok(ChatJson { id: self.id, members: vec!["alice".into()] })
///     }
/// }
/// ```
pub trait Resource: Send + Sync {
    /// What the resource dumps to.
    type Output: Serialize;

    /// Builds the payload.
    fn dump(&self) -> impl Future<Output = Result<Self::Output, PayloadError>> + Send;
}

/// A payload could not be built (a resource failed to load its data).
///
/// ```
/// use broadcast_core::PayloadError;
/// let e = PayloadError::msg("chat 7 was deleted");
/// assert_eq!(e.to_string(), "chat 7 was deleted");
/// ```
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct PayloadError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl PayloadError {
    /// An error from any error value.
    pub fn new(err: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self(err.into())
    }

    /// An error from a message.
    pub fn msg(msg: impl std::fmt::Display) -> Self {
        Self(msg.to_string().into())
    }
}

/// What the registry knows of one event type: one is registered per event
/// type, by the derive or by [`register_event!`](crate::register_event).
///
/// ```
/// use broadcast_core::{BroadcastEvent, registry};
///
/// #[derive(serde::Serialize, BroadcastEvent)]
/// #[broadcast(on = "chat|{chat_id}")]
/// struct ChatRenamed { chat_id: u64 }
///
/// let e = registry::events().find(|e| e.name == "chat_renamed").unwrap();
/// assert_eq!((e.type_name, e.namespace, e.rooms), ("ChatRenamed", "/", &["chat|{chat_id}"][..]));
/// ```
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EventDescriptor {
    /// Socket.IO event name.
    pub name: &'static str,
    /// Rust type name as written (`UpdateChat`).
    pub type_name: &'static str,
    /// Module the type is declared in.
    pub module_path: &'static str,
    /// Namespace of plain room strings.
    pub namespace: &'static str,
    /// Room templates or expressions, as written in `on = ...`. Empty means
    /// the default room (named after the event) or a hand-written
    /// `broadcast_on`.
    pub rooms: &'static [&'static str],
    /// The payload: the event type itself, or the `as = ...` expression.
    pub payload: &'static str,
    /// Source file of the declaration.
    pub file: &'static str,
    /// Source line of the declaration.
    pub line: u32,
    /// The payload's JSON Schema, when its type implements
    /// `schemars::JsonSchema` and the `schema` feature is on.
    #[serde(skip)]
    pub payload_schema: fn() -> Option<serde_json::Value>,
}

impl EventDescriptor {
    /// A descriptor with no rooms, the type itself as payload, and no source.
    /// Chain the other `const fn`s to fill it in.
    pub const fn new(name: &'static str, type_name: &'static str, namespace: &'static str) -> Self {
        Self {
            name,
            type_name,
            module_path: "",
            namespace,
            rooms: &[],
            payload: type_name,
            file: "",
            line: 0,
            payload_schema: crate::schema::no_schema,
        }
    }

    /// Sets the function that returns the payload's JSON Schema.
    pub const fn payload_schema(mut self, schema: fn() -> Option<serde_json::Value>) -> Self {
        self.payload_schema = schema;
        self
    }

    /// Sets the room templates.
    pub const fn rooms(mut self, rooms: &'static [&'static str]) -> Self {
        self.rooms = rooms;
        self
    }

    /// Sets the payload description.
    pub const fn payload(mut self, payload: &'static str) -> Self {
        self.payload = payload;
        self
    }

    /// Sets where the type is declared (`module_path!()`, `file!()`, `line!()`).
    pub const fn source(
        mut self,
        module_path: &'static str,
        file: &'static str,
        line: u32,
    ) -> Self {
        self.module_path = module_path;
        self.file = file;
        self.line = line;
        self
    }

    /// `module::path::TypeName`.
    pub fn rust_path(&self) -> String {
        if self.module_path.is_empty() {
            self.type_name.to_string()
        } else {
            format!("{}::{}", self.module_path, self.type_name)
        }
    }

    /// `module::path::TypeName (file:line)`, for messages that must point at
    /// the declaration.
    pub fn location(&self) -> String {
        format!("{} ({}:{})", self.rust_path(), self.file, self.line)
    }

    /// The room keys this event targets (the part of each template before the
    /// first `|`), for cross-referencing with rooms.
    pub fn room_keys(&self) -> impl Iterator<Item = &'static str> {
        self.rooms
            .iter()
            .map(|r| r.split_once('|').map_or(*r, |(k, _)| k))
    }
}

inventory::collect!(EventDescriptor);

/// Every registered event, sorted by namespace then name.
pub(crate) fn registered() -> Vec<&'static EventDescriptor> {
    let mut v: Vec<_> = inventory::iter::<EventDescriptor>.into_iter().collect();
    v.sort_by_key(|e| (e.namespace, e.name, e.module_path, e.type_name));
    v
}
