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

use broadcast_rules::{NameError, validate_event_name, validate_namespace};
use serde::Serialize;

pub use crate::event::EventDescriptor;
use crate::join::RoomsError;
pub use crate::join::descriptor::RoomDescriptor;

/// Every registered event, sorted by namespace then name.
pub fn events() -> impl Iterator<Item = &'static EventDescriptor> {
    crate::event::registered().into_iter()
}

/// Every registered room, sorted by namespace then key.
pub fn rooms() -> impl Iterator<Item = &'static RoomDescriptor> {
    crate::join::descriptor::registered().into_iter()
}

/// A problem in the registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
    /// A hand-written event has a name or namespace the derive would have
    /// refused.
    #[error("event `{name}` of {event}: {reason}")]
    InvalidEvent {
        /// Event name.
        name: &'static str,
        /// The Rust type and where it is declared.
        event: String,
        /// What is wrong.
        reason: String,
    },
    /// A room type cannot be served (the check [`join::Rooms`](crate::join::Rooms) makes).
    #[error(transparent)]
    Room(#[from] RoomsError),
}

/// Every problem [`validate`] found, in one error (so `?` works at
/// startup); it dereferences to the list.
///
/// ```
/// use broadcast_core::registry::{RegistryError, RegistryErrors};
/// let e = RegistryErrors::from(vec![RegistryError::InvalidEvent {
///     name: "joined",
///     event: "app::Joined (src/app.rs:3)".into(),
///     reason: "the name is reserved".into(),
/// }]);
/// assert_eq!(e.len(), 1);
/// assert!(e.to_string().contains("1 problem"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryErrors(Vec<RegistryError>);

impl From<Vec<RegistryError>> for RegistryErrors {
    fn from(errors: Vec<RegistryError>) -> Self {
        Self(errors)
    }
}

impl std::ops::Deref for RegistryErrors {
    type Target = [RegistryError];
    fn deref(&self) -> &[RegistryError] {
        &self.0
    }
}

impl IntoIterator for RegistryErrors {
    type Item = RegistryError;
    type IntoIter = std::vec::IntoIter<RegistryError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl std::fmt::Display for RegistryErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "the registry has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n- {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RegistryErrors {}

/// Checks the registry: every event has an acceptable, unreserved name and
/// namespace, every `(namespace, event name)` belongs to one type, and every
/// room can be served (valid key and namespace, one type per key and
/// namespace). Reports all problems at once.
pub fn validate() -> Result<(), RegistryErrors> {
    let mut errors = Vec::new();
    let mut by_name: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for e in events() {
        let location = e.location();
        let invalid = validate_event_name(e.name)
            .err()
            .map(|err: NameError| err.to_string())
            .or_else(|| {
                broadcast_rules::protocol::reserved(e.name)
                    .map(|why| format!("the name is reserved: {why}"))
            })
            .or_else(|| {
                validate_namespace(e.namespace)
                    .err()
                    .map(|err| err.to_string())
            });
        if let Some(reason) = invalid {
            errors.push(RegistryError::InvalidEvent {
                name: e.name,
                event: location.clone(),
                reason,
            });
        }
        by_name
            .entry((e.namespace, e.name))
            .or_default()
            .push(location);
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
    let (_, room_problems) = crate::join::descriptor::checked();
    errors.extend(room_problems.into_iter().map(RegistryError::Room));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(RegistryErrors(errors))
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
                    e.rooms
                        .iter()
                        .map(|expr| room_shown(expr, &rooms))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                e.payload.to_string(),
                e.location(),
            ]
        })
        .collect();
    table(
        &mut out,
        ["EVENT", "NAMESPACE", "ROOMS", "PAYLOAD", "TYPE"],
        &rows,
    );
    let _ = writeln!(out, "rooms ({}):", rooms.len());
    let rows: Vec<[String; 6]> = rooms
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
                r.pattern(),
                r.access.to_string(),
                r.history.map_or_else(
                    || "-".to_owned(),
                    |h| format!("{} events, {} s", h.size, h.ttl_secs),
                ),
                targeted_by.join(", "),
            ]
        })
        .collect();
    table(
        &mut out,
        [
            "ROOM KEY",
            "NAMESPACE",
            "NAMES",
            "ACCESS",
            "HISTORY",
            "EVENTS",
        ],
        &rows,
    );
    out
}

/// How the listing shows one `on = ...` item: a template as written, an
/// expression that builds a registered room type as that room's pattern
/// (`order|{order_id}`), anything else as written.
fn room_shown(expr: &str, rooms: &[&RoomDescriptor]) -> String {
    match rooms.iter().find(|r| names_type(expr, r.type_name)) {
        Some(room) => room.pattern(),
        None => expr.to_owned(),
    }
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
pub fn log_startup_listing() -> Result<(), RegistryErrors> {
    for line in listing().lines() {
        tracing::info!(target: "broadcast::registry", "{line}");
    }
    let result = validate();
    if let Err(errors) = &result {
        for e in errors.iter() {
            tracing::error!(target: "broadcast::registry", "{e}");
        }
    }
    result
}

/// Registers a hand-written [`BroadcastEvent`](crate::BroadcastEvent) impl
/// for listings and [`validate`]; `#[derive(BroadcastEvent)]` does this
/// itself.
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

/// Registers a hand-written [`JoinableRoom`](crate::join::JoinableRoom)
/// impl, for the join protocol and the listings; `#[derive(Room)]` does
/// this itself.
///
/// ```standalone_crate
/// # use std::borrow::Cow;
/// use broadcast_core::{Room, register_room};
/// use broadcast_core::join::{Access, JoinableRoom, RoomDataError};
///
/// struct Lobby;
/// impl Room for Lobby {
///     fn name(&self) -> Cow<'static, str> { "lobby".into() }
/// }
/// impl JoinableRoom for Lobby {
///     const KEY: &'static str = "lobby";
///     const ACCESS: Access = Access::ServerOnly;
///     const FIELDS: &'static [&'static str] = &[];
///     fn from_join_data(_: &serde_json::Value) -> Result<Self, RoomDataError> { Ok(Lobby) }
/// }
/// register_room!(Lobby);
///
/// assert!(broadcast_core::registry::rooms().any(|r| r.key == "lobby" && r.access == Access::ServerOnly));
/// ```
#[macro_export]
macro_rules! register_room {
    ($ty:ty $(,)?) => {
        $crate::__private::inventory::submit! {
            $crate::registry::RoomDescriptor::of::<$ty>(::core::stringify!($ty))
                .source(::core::module_path!(), ::core::file!(), ::core::line!())
        }
    };
}
