//! The registry of every event (and room) type in the program, filled at
//! link time by the derives, so a server can list, check and export them at
//! startup.
//!
//! ```
//! use broadcast_core::{BroadcastEvent, registry};
//!
//! #[derive(serde::Serialize, BroadcastEvent)]
//! #[broadcast(on = "archive|{chat_id}")]
//! struct ChatArchived { chat_id: u64 }
//!
//! let e = registry::events().find(|e| e.name == "chat_archived").unwrap();
//! assert_eq!(e.rooms, ["archive|{chat_id}"]);
//! println!("{}", registry::listing());
//! // Two types sharing one event name in one namespace would be reported here.
//! if let Err(problems) = registry::validate() {
//!     for p in problems {
//!         eprintln!("{p}");
//!     }
//! }
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// What the registry knows of one event type.
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

    /// The room keys this event targets (the part of each template before the
    /// first `|`), for cross-referencing with rooms.
    pub fn room_keys(&self) -> impl Iterator<Item = &'static str> {
        self.rooms
            .iter()
            .map(|r| r.split_once('|').map_or(*r, |(k, _)| k))
    }
}

/// What the registry knows of one room type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    /// Whether any client may join without authorization.
    pub public: bool,
    /// Source file of the declaration.
    pub file: &'static str,
    /// Source line of the declaration.
    pub line: u32,
}

impl RoomDescriptor {
    /// A descriptor for a room key in a namespace; chain the other `const fn`s.
    pub const fn new(key: &'static str, type_name: &'static str, namespace: &'static str) -> Self {
        Self {
            key,
            type_name,
            module_path: "",
            namespace,
            fields: &[],
            public: false,
            file: "",
            line: 0,
        }
    }

    /// Sets the identifier fields.
    pub const fn fields(mut self, fields: &'static [&'static str]) -> Self {
        self.fields = fields;
        self
    }

    /// Marks the room public.
    pub const fn public(mut self, public: bool) -> Self {
        self.public = public;
        self
    }

    /// Sets where the type is declared.
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
}

inventory::collect!(EventDescriptor);
inventory::collect!(RoomDescriptor);

/// Every registered event, sorted by namespace then name.
pub fn events() -> impl Iterator<Item = &'static EventDescriptor> {
    let mut v: Vec<_> = inventory::iter::<EventDescriptor>.into_iter().collect();
    v.sort_by_key(|e| (e.namespace, e.name, e.module_path, e.type_name));
    v.into_iter()
}

/// Every registered room, sorted by namespace then key.
pub fn rooms() -> impl Iterator<Item = &'static RoomDescriptor> {
    let mut v: Vec<_> = inventory::iter::<RoomDescriptor>.into_iter().collect();
    v.sort_by_key(|r| (r.namespace, r.key, r.module_path, r.type_name));
    v.into_iter()
}

/// A problem in the registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Two or more types share one event name in one namespace, so clients
    /// could not tell their payloads apart.
    #[error("event name `{name}` in namespace `{namespace}` is used by {}", types.join(", "))]
    DuplicateEvent {
        /// Namespace.
        namespace: &'static str,
        /// Event name.
        name: &'static str,
        /// The Rust types sharing it, with their source location.
        types: Vec<String>,
    },
    /// Two or more room types share one key in one namespace, so a
    /// `join_<key>` would be ambiguous.
    #[error("room key `{key}` in namespace `{namespace}` is used by {}", types.join(", "))]
    DuplicateRoom {
        /// Namespace.
        namespace: &'static str,
        /// Room key.
        key: &'static str,
        /// The Rust types sharing it.
        types: Vec<String>,
    },
}

/// Checks the registry: every `(namespace, event name)` and every
/// `(namespace, room key)` belongs to one type. Reports all problems at once.
pub fn validate() -> Result<(), Vec<RegistryError>> {
    let mut errors = Vec::new();
    let mut by_name: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for e in events() {
        by_name
            .entry((e.namespace, e.name))
            .or_default()
            .push(format!("{} ({}:{})", e.rust_path(), e.file, e.line));
    }
    for ((namespace, name), types) in by_name {
        if types.len() > 1 {
            errors.push(RegistryError::DuplicateEvent {
                namespace,
                name,
                types,
            });
        }
    }
    let mut by_key: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for r in rooms() {
        by_key
            .entry((r.namespace, r.key))
            .or_default()
            .push(format!(
                "{}::{} ({}:{})",
                r.module_path, r.type_name, r.file, r.line
            ));
    }
    for ((namespace, key), types) in by_key {
        if types.len() > 1 {
            errors.push(RegistryError::DuplicateRoom {
                namespace,
                key,
                types,
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// A serializable snapshot of the registry, for tooling (`GET /events`).
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Every event.
    pub events: Vec<&'static EventDescriptor>,
    /// Every room.
    pub rooms: Vec<&'static RoomDescriptor>,
}

/// The registry as a serializable value.
///
/// ```
/// let json = serde_json::to_value(broadcast_core::registry::snapshot()).unwrap();
/// assert!(json["events"].is_array());
/// ```
pub fn snapshot() -> Snapshot {
    Snapshot {
        events: events().collect(),
        rooms: rooms().collect(),
    }
}

/// A readable table of every event and room.
pub fn listing() -> String {
    let events: Vec<_> = events().collect();
    let rooms: Vec<_> = rooms().collect();
    let mut out = String::new();
    let _ = writeln!(out, "broadcast events ({}):", events.len());
    let rows: Vec<[String; 5]> = events
        .iter()
        .map(|e| {
            [
                e.name.to_string(),
                e.namespace.to_string(),
                if e.rooms.is_empty() {
                    format!("<{}>", e.name)
                } else {
                    e.rooms.join(", ")
                },
                e.payload.to_string(),
                format!("{} ({}:{})", e.rust_path(), e.file, e.line),
            ]
        })
        .collect();
    table(
        &mut out,
        ["EVENT", "NAMESPACE", "ROOMS", "PAYLOAD", "TYPE"],
        &rows,
    );
    let _ = writeln!(out, "rooms ({}):", rooms.len());
    let rows: Vec<[String; 5]> = rooms
        .iter()
        .map(|r| {
            let targeted_by: Vec<&str> = events
                .iter()
                .filter(|e| {
                    e.room_keys().any(|k| k == r.key)
                        || e.rooms.iter().any(|expr| names_type(expr, r.type_name))
                })
                .map(|e| e.name)
                .collect();
            [
                r.key.to_string(),
                r.namespace.to_string(),
                r.fields.join("|"),
                if r.public { "public" } else { "authorized" }.to_string(),
                targeted_by.join(", "),
            ]
        })
        .collect();
    table(
        &mut out,
        ["ROOM KEY", "NAMESPACE", "IDENTIFIER", "ACCESS", "EVENTS"],
        &rows,
    );
    out
}

/// Whether an `on = ...` expression mentions the room type `type_name`
/// (`ChatRoom(self.chat_id)`), so typed-room targets are cross-referenced
/// like templates.
fn names_type(expr: &str, type_name: &str) -> bool {
    expr.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|word| word == type_name)
}

fn table<const N: usize>(out: &mut String, header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: [&str; N]| {
        out.push_str("  ");
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<w$}  ");
            }
        }
        out.push('\n');
    };
    line(out, header);
    for row in rows {
        line(out, std::array::from_fn(|i| row[i].as_str()));
    }
}

/// Logs the listing through `tracing` (one `info` event per line), checks
/// the registry, and returns the problems found (also logged as errors).
pub fn log_startup_listing() -> Result<(), Vec<RegistryError>> {
    for line in listing().lines() {
        tracing::info!(target: "broadcast::registry", "{line}");
    }
    let result = validate();
    if let Err(errors) = &result {
        for e in errors {
            tracing::error!(target: "broadcast::registry", "{e}");
        }
    }
    result
}

/// Registers a hand-written [`BroadcastEvent`](crate::BroadcastEvent) impl.
///
/// ```
/// use broadcast_core::{BroadcastEvent, PayloadError, register_event};
///
/// #[derive(serde::Serialize)]
/// struct Tick;
/// impl BroadcastEvent for Tick {
///     const NAME: &'static str = "tick";
///     async fn broadcast_as(&self) -> Result<impl serde::Serialize, PayloadError> { Ok(self) }
/// }
/// register_event!(Tick, rooms = ["clock"]);
///
/// assert!(broadcast_core::registry::events().any(|e| e.name == "tick"));
/// ```
#[macro_export]
macro_rules! register_event {
    ($ty:ty $(, rooms = [$($room:literal),* $(,)?])? $(,)?) => {
        $crate::__private::inventory::submit! {
            $crate::registry::EventDescriptor::new(
                <$ty as $crate::BroadcastEvent>::NAME,
                ::core::stringify!($ty),
                <$ty as $crate::BroadcastEvent>::NAMESPACE,
            )
            .rooms(&[$($($room),*)?])
            .source(::core::module_path!(), ::core::file!(), ::core::line!())
        }
    };
}
