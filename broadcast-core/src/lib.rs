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
//! [socketioxide]: https://docs.rs/socketioxide
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod broadcaster;
pub mod error;
pub mod event;
pub mod join;
pub mod registry;
pub mod room;
pub mod schema;
pub mod target;
pub mod testing;
pub mod transport;
pub mod typescript;

#[cfg(feature = "redis")]
pub mod redis;

#[doc(hidden)]
pub mod kind;

pub use broadcaster::{
    Broadcast, Broadcaster, BroadcasterBuilder, Except, Outcome, SkipReason, Stats, broadcast,
    current, install, with_broadcaster,
};
pub use error::{AlreadyInstalled, BroadcastError, TransportError};
pub use event::{BroadcastEvent, PayloadError, Resource};
pub use room::Room;
pub use room::{Authorization, IntoAuthorization, JoinableRoom, RoomDataError};
pub use target::{IntoTargets, Target, TargetError, Targets};

/// `#[derive(BroadcastEvent)]`: see the `broadcast-derive` crate docs.
#[cfg(feature = "derive")]
pub use broadcast_derive::BroadcastEvent;

/// `#[derive(Room)]`: see the `broadcast-derive` crate docs.
#[cfg(feature = "derive")]
pub use broadcast_derive::Room;

/// Items the derives expand to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::join::derive_support as room;
    pub use crate::kind::{FutureKind, PlainKind, ResourceKind, ValueKind};
    pub use crate::schema::{NoSchemaKind, SchemaKind, SchemaProbe};
    pub use inventory;
    pub use serde::Serialize;
    pub use serde_json::Value;
    pub use std::borrow::Cow;
    pub use std::format;
    pub use std::future::Future;
    pub use std::option::Option;
    pub use std::result::Result;
}
