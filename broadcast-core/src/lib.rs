//! Typed real-time broadcast events for [socketioxide].
//!
//! Declare an event once, then `broadcast(event).await` from anywhere: the
//! framework decides whether to send (`when`), which Socket.IO rooms and
//! namespaces receive it (`on`), shapes the payload (`as`), serializes it
//! once and delivers it through a [`Transport`](transport::Transport):
//! in-process with socketioxide, across processes with Redis (feature
//! `redis`), or into a recording fake in tests.
//!
//! ```no_run
//! use broadcast_core::{Broadcaster, BroadcastEvent, broadcast};
//! use serde::Serialize;
//!
//! #[derive(Serialize, BroadcastEvent)]
//! #[broadcast(on = "chat|{chat_id}")]
//! struct MessagePosted {
//!     chat_id: u64,
//!     text: String,
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (layer, io) = socketioxide::SocketIo::new_layer();
//! io.ns("/", async |_: socketioxide::extract::SocketRef| {});
//! broadcast_core::install(Broadcaster::socketio(io))?;
//!
//! // Anywhere, later:
//! broadcast(MessagePosted { chat_id: 1, text: "hello".into() }).await?;
//! # Ok(()) }
//! ```
//!
//! The crate root holds what every application uses; the areas are
//! [`join`] (rooms clients join, authorization), [`registry`] (every
//! event and room of the program), [`transport`], [`testing`],
//! [`typescript`], `redis` (feature `redis`) and [`rules`] (the naming
//! rules and protocol names).
//!
//! [socketioxide]: https://docs.rs/socketioxide
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The layers, lowest first: each module uses only those declared before it
// (ARCHITECTURE.md draws them; tests/layers.rs keeps them so). The comment
// before each module keeps rustfmt from sorting them.

// Helpers that depend on nothing.
mod util;
// Payload JSON Schemas (feature `schema`).
mod schema;
// `(namespace, room)` targets and `IntoTargets`.
mod target;
// The `Room` trait.
mod room;
// Stream positions and history limits.
mod position;
// The event contract and its registration.
mod event;
// Autoref dispatch for derived code.
mod kind;
// `BroadcastError`, `TransportError`.
mod error;
// How a serialized event reaches sockets.
pub mod transport;
// A pipeline's result, kept to deliver later.
mod prepared;
// The bounded in-process queue of prepared deliveries.
mod queue;
// The pipeline and `broadcast()`.
mod broadcaster;
// The recording fake.
pub mod testing;
// Who is in a room: members, transitions, hooks.
pub mod presence;
// The join protocol and room registrations.
pub mod join;
// Listing and checking every registration.
pub mod registry;
// Client declarations.
pub mod typescript;
// Rooms that keep their recent events for clients that reconnect.
pub mod history;
// Delivery across processes.
#[cfg(feature = "redis")]
pub mod redis;
// Transactional broadcasting through a Postgres outbox.
#[cfg(feature = "postgres")]
pub mod outbox;

/// The naming rules, limits and protocol event names, shared with the
/// derives and the generator.
pub use broadcast_rules as rules;

pub use broadcaster::{
    Broadcast, Broadcaster, BroadcasterBuilder, Outcome, Prepared, Queued, SkipReason, Stats,
    broadcast, install, with_broadcaster,
};
pub use error::{AlreadyInstalled, BroadcastError, TransportError};
pub use event::{BroadcastEvent, PayloadError, Resource};
pub use position::{DEFAULT_MAX_REPLAY, EventPosition, HistoryPolicy, Position};
pub use prepared::{PreparedDelivery, PreparedError};
pub use queue::{DEFAULT_QUEUE_CAPACITY, QueueError, QueueFailure, QueueReport};
pub use room::Room;
pub use target::{IntoTargets, NamespaceTargets, Target, Targets};

#[cfg(feature = "derive")]
pub use broadcast_derive::{BroadcastEvent, Room};

// The README's examples are compiled as written.
#[cfg(all(doctest, feature = "redis"))]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;

/// Items the derives expand to. Not public API.
#[doc(hidden)]
pub mod __private {
    /// What `#[derive(Room)]`'s `from_join_data` calls.
    pub mod room {
        pub use crate::join::fields::{FieldValues, Shape};
    }
    pub use crate::kind::{FutureKind, PlainKind, ResourceKind, ValueKind};
    pub use crate::schema::{NoSchemaKind, SchemaKind, SchemaProbe, no_schema};
    pub use inventory;
    pub use serde::Serialize;
    pub use serde_json::Value;
    pub use std::borrow::Cow;
    pub use std::format;
    pub use std::future::Future;
    pub use std::option::Option;
    pub use std::result::Result;
}
