//! The one registration of a room type: what listings show, what the join
//! protocol checks, and the type-erased functions it calls.
//!
//! Registrations are statics collected by `inventory`, so they cannot be
//! generic over the room type. A [`RoomDescriptor`] therefore holds plain
//! function pointers, instantiated for one room type, that parse, authorize
//! and run hooks on a boxed room.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;

use broadcast_rules::{validate_key, validate_namespace, validate_room};
use serde::Serialize;

use super::RoomsError;
use super::context::JoinContext;
use super::joinable::{Access, Authorization, JoinableRoom, RoomDataError};
use crate::position::HistoryPolicy;
use crate::util::BoxFuture;

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

/// The functions of one room type, behind its registration.
#[derive(Clone, Copy)]
struct Erased {
    parse: ParseFn,
    authorize: AuthorizeFn,
    on_join: HookFn,
    on_leave: HookFn,
}

/// What the program knows of one room type: registered once per type by
/// `#[derive(Room)]` or [`register_room!`](crate::register_room), listed by
/// [`registry::rooms`](crate::registry::rooms) and served by
/// [`Rooms`](crate::join::Rooms).
///
/// Built only from a [`JoinableRoom`] type, so its functions always match
/// its room type.
///
/// ```
/// use broadcast_core::{Room, registry};
/// use broadcast_core::join::Access;
///
/// #[derive(Room)]
/// #[room(public, namespace = "/games")]
/// struct TableRoom { game: u64, table: u8 }
///
/// let room = registry::rooms().find(|r| r.type_name == "TableRoom").unwrap();
/// assert_eq!((room.key, room.namespace, room.access), ("table", "/games", Access::Public));
/// assert_eq!(room.fields, ["game", "table"]);
/// assert_eq!(room.pattern(), "table|{game}|{table}");
/// ```
#[derive(Clone, Copy, Serialize)]
pub struct RoomDescriptor {
    /// Room key (`chat` for `chat|123`).
    pub key: &'static str,
    /// Rust type name as written.
    pub type_name: &'static str,
    /// Module the type is declared in.
    pub module_path: &'static str,
    /// Namespace the room lives in.
    pub namespace: &'static str,
    /// Names of the identifier fields, joined by `|` in the room name.
    pub fields: &'static [&'static str],
    /// Who may join.
    pub access: Access,
    /// What the room keeps for clients that reconnect, as declared.
    pub history: Option<HistoryPolicy>,
    /// Whether the room tracks who is in it (`#[room(presence)]`).
    pub presence: bool,
    /// Source file of the declaration.
    pub file: &'static str,
    /// Source line of the declaration.
    pub line: u32,
    #[serde(skip)]
    erased: Erased,
}

inventory::collect!(RoomDescriptor);

impl fmt::Debug for RoomDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomDescriptor")
            .field("key", &self.key)
            .field("type_name", &self.type_name)
            .field("namespace", &self.namespace)
            .field("fields", &self.fields)
            .field("access", &self.access)
            .field("presence", &self.presence)
            .finish_non_exhaustive()
    }
}

impl RoomDescriptor {
    /// The registration of room type `R`, named `type_name` in listings and
    /// errors; chain [`source`](Self::source).
    pub const fn of<R: JoinableRoom>(type_name: &'static str) -> Self {
        Self {
            key: R::KEY,
            type_name,
            module_path: "",
            namespace: R::NAMESPACE,
            fields: R::FIELDS,
            access: R::ACCESS,
            history: R::HISTORY,
            presence: R::PRESENCE,
            file: "",
            line: 0,
            erased: Erased {
                parse: parse_erased::<R>,
                authorize: authorize_erased::<R>,
                on_join: on_join_erased::<R>,
                on_leave: on_leave_erased::<R>,
            },
        }
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

    /// The room names this type produces: `chat|{chat_id}`.
    pub fn pattern(&self) -> String {
        let mut out = self.key.to_owned();
        for field in self.fields {
            out.push_str("|{");
            out.push_str(field);
            out.push('}');
        }
        out
    }

    /// `module::path::TypeName (file:line)`, for messages that must point at
    /// the declaration.
    pub fn location(&self) -> String {
        let path = if self.module_path.is_empty() {
            self.type_name.to_owned()
        } else {
            format!("{}::{}", self.module_path, self.type_name)
        };
        format!("{path} ({}:{})", self.file, self.line)
    }

    pub(crate) fn parse(&self, data: &serde_json::Value) -> Result<ParsedRoom, RoomDataError> {
        (self.erased.parse)(data)
    }

    pub(crate) fn authorize<'a>(
        &self,
        ctx: &'a JoinContext,
        room: &'a ParsedRoom,
    ) -> BoxFuture<'a, Authorization> {
        (self.erased.authorize)(ctx, room)
    }

    pub(crate) fn on_join<'a>(
        &self,
        ctx: &'a JoinContext,
        room: &'a ParsedRoom,
    ) -> BoxFuture<'a, ()> {
        (self.erased.on_join)(ctx, room)
    }

    pub(crate) fn on_leave<'a>(
        &self,
        ctx: &'a JoinContext,
        room: &'a ParsedRoom,
    ) -> BoxFuture<'a, ()> {
        (self.erased.on_leave)(ctx, room)
    }
}

/// Every registered room, sorted by namespace then key.
pub(crate) fn registered() -> Vec<&'static RoomDescriptor> {
    let mut v: Vec<_> = inventory::iter::<RoomDescriptor>.into_iter().collect();
    v.sort_by_key(|r| (r.namespace, r.key, r.module_path, r.type_name));
    v
}

/// The registered rooms grouped by namespace, and every problem that keeps
/// some of them from being served: the one check of room registrations,
/// used by [`Rooms`](super::Rooms) and by
/// [`registry::validate`](crate::registry::validate).
pub(crate) fn checked() -> (
    BTreeMap<&'static str, Vec<&'static RoomDescriptor>>,
    Vec<RoomsError>,
) {
    let mut namespaces: BTreeMap<&'static str, Vec<&'static RoomDescriptor>> = BTreeMap::new();
    let mut problems = Vec::new();
    for room in registered() {
        if let Err(source) = validate_key(room.key) {
            problems.push(RoomsError::InvalidKey {
                key: room.key,
                room: room.location(),
                source,
            });
            continue;
        }
        if let Err(source) = validate_namespace(room.namespace) {
            problems.push(RoomsError::InvalidNamespace {
                key: room.key,
                namespace: room.namespace,
                room: room.location(),
                source,
            });
            continue;
        }
        namespaces.entry(room.namespace).or_default().push(room);
    }
    for (namespace, rooms) in &mut namespaces {
        let mut i = 0;
        while i < rooms.len() {
            let key = rooms[i].key;
            let same = rooms[i..].iter().take_while(|r| r.key == key).count();
            if same > 1 {
                problems.push(RoomsError::DuplicateKey {
                    key,
                    namespace,
                    rooms: rooms[i..i + same].iter().map(|r| r.location()).collect(),
                });
                // An ambiguous key is served by none of its types.
                rooms.drain(i..i + same);
            } else {
                i += 1;
            }
        }
    }
    (namespaces, problems)
}

fn parse_erased<R: JoinableRoom>(data: &serde_json::Value) -> Result<ParsedRoom, RoomDataError> {
    let room = R::from_join_data(data)?;
    let name = crate::room::Room::name(&room).into_owned();
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
fn check_name(key: &'static str, fields: usize, name: &str) -> Result<(), RoomDataError> {
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
        // Unreachable by construction (descriptors are built per type); deny.
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
