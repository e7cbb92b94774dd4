//! The type-erased registration of a joinable room.
//!
//! Registry entries are statics collected by `inventory`, so they cannot be
//! generic over the room type or over the socketioxide adapter. A
//! [`RoomEntry`] therefore holds plain function pointers, instantiated for
//! one room type, that parse, authorize and run hooks on a boxed room; the
//! adapter-generic protocol code in this module calls them.

use std::any::Any;
use std::fmt;

use crate::join::JoinContext;
use crate::room::{Authorization, JoinableRoom, RoomDataError};
use crate::target::validate_room;
use crate::transport::BoxFuture;

/// A room parsed from client data, its type erased.
pub(crate) struct ParsedRoom {
    name: String,
    value: Box<dyn Any + Send + Sync>,
}

impl ParsedRoom {
    /// The room name (`chat|123`).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for ParsedRoom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ParsedRoom").field(&self.name).finish()
    }
}

type ParseFn = fn(&serde_json::Value) -> Result<ParsedRoom, RoomDataError>;
type AuthorizeFn = for<'a> fn(&'a JoinContext, &'a ParsedRoom) -> BoxFuture<'a, Authorization>;
type HookFn = for<'a> fn(&'a JoinContext, &'a ParsedRoom) -> BoxFuture<'a, ()>;

/// One joinable room type, as registered for [`Rooms`](crate::join::Rooms).
///
/// Made by `#[derive(Room)]` or [`register_room!`](crate::register_room);
/// there is no other way to build one, so its function pointers always
/// match its room type.
///
/// ```standalone_crate
/// use broadcast_core::Room;
/// use broadcast_core::join::{RoomEntry, Rooms};
///
/// #[derive(Room)]
/// #[room(public, namespace = "/games")]
/// struct TableRoom { game: u64, table: u8 }
///
/// let entry = RoomEntry::of::<TableRoom>("TableRoom");
/// assert_eq!((entry.key(), entry.namespace(), entry.public()), ("table", "/games", true));
/// assert_eq!(entry.fields(), ["game", "table"]);
/// // The derive registered it:
/// let rooms = Rooms::new().unwrap();
/// assert_eq!(rooms.rooms_in("/games").next().map(|e| e.type_name()), Some("TableRoom"));
/// ```
pub struct RoomEntry {
    key: &'static str,
    namespace: &'static str,
    public: bool,
    fields: &'static [&'static str],
    type_name: &'static str,
    parse: ParseFn,
    authorize: AuthorizeFn,
    on_join: HookFn,
    on_leave: HookFn,
}

inventory::collect!(RoomEntry);

impl fmt::Debug for RoomEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomEntry")
            .field("key", &self.key)
            .field("namespace", &self.namespace)
            .field("public", &self.public)
            .field("fields", &self.fields)
            .field("type_name", &self.type_name)
            .finish_non_exhaustive()
    }
}

impl RoomEntry {
    /// The entry of room type `R`, named `type_name` in listings and errors.
    pub const fn of<R: JoinableRoom>(type_name: &'static str) -> Self {
        Self {
            key: R::KEY,
            namespace: R::NAMESPACE,
            public: R::PUBLIC,
            fields: R::FIELDS,
            type_name,
            parse: parse_erased::<R>,
            authorize: authorize_erased::<R>,
            on_join: on_join_erased::<R>,
            on_leave: on_leave_erased::<R>,
        }
    }

    /// Room key.
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// Namespace.
    pub fn namespace(&self) -> &'static str {
        self.namespace
    }

    /// Whether anonymous sockets may join.
    pub fn public(&self) -> bool {
        self.public
    }

    /// Identifier fields.
    pub fn fields(&self) -> &'static [&'static str] {
        self.fields
    }

    /// The Rust type name.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    pub(crate) fn parse(&self, data: &serde_json::Value) -> Result<ParsedRoom, RoomDataError> {
        (self.parse)(data)
    }

    pub(crate) fn authorize<'a>(
        &self,
        ctx: &'a JoinContext,
        room: &'a ParsedRoom,
    ) -> BoxFuture<'a, Authorization> {
        (self.authorize)(ctx, room)
    }

    pub(crate) fn on_join<'a>(
        &self,
        ctx: &'a JoinContext,
        room: &'a ParsedRoom,
    ) -> BoxFuture<'a, ()> {
        (self.on_join)(ctx, room)
    }

    pub(crate) fn on_leave<'a>(
        &self,
        ctx: &'a JoinContext,
        room: &'a ParsedRoom,
    ) -> BoxFuture<'a, ()> {
        (self.on_leave)(ctx, room)
    }
}

fn parse_erased<R: JoinableRoom>(data: &serde_json::Value) -> Result<ParsedRoom, RoomDataError> {
    let room = R::from_join_data(data)?;
    let name = crate::Room::name(&room).into_owned();
    check_name(R::KEY, R::FIELDS.len(), &name)?;
    Ok(ParsedRoom {
        name,
        value: Box::new(room),
    })
}

/// The protocol invariant of joinable room names: `key` alone, or `key`
/// and one non-empty `|`-separated segment per field. A field value holding
/// `|` would let two different rooms share one name (`pair|a|b|c`), so it
/// is refused here rather than trusted to every room type.
pub(crate) fn check_name(
    key: &'static str,
    fields: usize,
    name: &str,
) -> Result<(), RoomDataError> {
    let err = |reason: String| Err(RoomDataError::Name { key, reason });
    if let Err(e) = validate_room(name) {
        return err(e.to_string());
    }
    if fields == 0 {
        return if name == key {
            Ok(())
        } else {
            err(format!("the room name must be `{key}`"))
        };
    }
    let Some(rest) = name.strip_prefix(key).and_then(|r| r.strip_prefix('|')) else {
        return err(format!("the room name must start with `{key}|`"));
    };
    let segments = rest.split('|').count();
    if segments != fields {
        return err(format!(
            "an identifier value cannot contain `|` (the name has {segments} segments for {fields} field(s))"
        ));
    }
    if rest.split('|').any(str::is_empty) {
        return err("an identifier value cannot be empty".to_owned());
    }
    Ok(())
}

fn authorize_erased<'a, R: JoinableRoom>(
    ctx: &'a JoinContext,
    room: &'a ParsedRoom,
) -> BoxFuture<'a, Authorization> {
    match room.value.downcast_ref::<R>() {
        Some(room) => Box::pin(R::authorize(ctx, room)),
        // Unreachable by construction (entries are built per type); deny.
        None => Box::pin(std::future::ready(Authorization::Forbid)),
    }
}

fn on_join_erased<'a, R: JoinableRoom>(
    ctx: &'a JoinContext,
    room: &'a ParsedRoom,
) -> BoxFuture<'a, ()> {
    match room.value.downcast_ref::<R>() {
        Some(room) => Box::pin(R::on_join(ctx, room)),
        None => Box::pin(std::future::ready(())),
    }
}

fn on_leave_erased<'a, R: JoinableRoom>(
    ctx: &'a JoinContext,
    room: &'a ParsedRoom,
) -> BoxFuture<'a, ()> {
    match room.value.downcast_ref::<R>() {
        Some(room) => Box::pin(R::on_leave(ctx, room)),
        None => Box::pin(std::future::ready(())),
    }
}

/// Registers a hand-written [`JoinableRoom`] impl, for the join protocol
/// and the registry listing. `#[derive(Room)]` does this itself.
///
/// ```standalone_crate
/// # use std::borrow::Cow;
/// use broadcast_core::{Authorization, JoinableRoom, Room, RoomDataError, register_room};
/// # use broadcast_core::join::JoinContext;
/// struct Lobby;
/// impl Room for Lobby {
///     fn name(&self) -> Cow<'static, str> { "lobby".into() }
/// }
/// impl JoinableRoom for Lobby {
///     const KEY: &'static str = "lobby";
///     const PUBLIC: bool = true;
///     const FIELDS: &'static [&'static str] = &[];
///     fn from_join_data(_: &serde_json::Value) -> Result<Self, RoomDataError> { Ok(Lobby) }
///     async fn authorize(_: &JoinContext, _: &Self) -> Authorization { Authorization::Allow }
/// }
/// register_room!(Lobby);
///
/// assert!(broadcast_core::registry::rooms().any(|r| r.key == "lobby" && r.public));
/// ```
#[macro_export]
macro_rules! register_room {
    ($ty:ty $(,)?) => {
        $crate::__private::inventory::submit! {
            $crate::registry::RoomDescriptor::new(
                <$ty as $crate::JoinableRoom>::KEY,
                ::core::stringify!($ty),
                <$ty as $crate::JoinableRoom>::NAMESPACE,
            )
            .fields(<$ty as $crate::JoinableRoom>::FIELDS)
            .public(<$ty as $crate::JoinableRoom>::PUBLIC)
            .source(::core::module_path!(), ::core::file!(), ::core::line!())
        }
        $crate::__private::inventory::submit! {
            $crate::join::RoomEntry::of::<$ty>(::core::stringify!($ty))
        }
    };
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names_must_follow_the_key_and_field_count() {
        assert!(check_name("chat", 1, "chat|1").is_ok());
        assert!(check_name("pair", 2, "pair|1|x").is_ok());
        assert!(check_name("lobby", 0, "lobby").is_ok());
        assert!(check_name("lobby", 0, "lobby|").is_err());
        assert!(check_name("pair", 2, "pair|1|x|y").is_err());
        assert!(check_name("chat", 1, "chat|a|b").is_err());
        assert!(check_name("chat", 1, "chat|").is_err());
        assert!(check_name("pair", 2, "pair||x").is_err());
        assert!(check_name("chat", 1, "user|1").is_err());
        assert!(check_name("chat", 1, "chatty|1").is_err());
        assert!(check_name("chat", 1, "chat|a\nb").is_err());
        assert!(check_name("chat", 1, &format!("chat|{}", "x".repeat(300))).is_err());
    }
}
