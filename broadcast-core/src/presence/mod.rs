//! Presence: who is in a room, on every server, counted once per member
//! however many connections it has.
//!
//! A room type opts in with `#[room(presence)]`; the members are whatever
//! [`RoomsBuilder::presence_member`](crate::join::RoomsBuilder::presence_member)
//! makes of a socket's identity (an id and optional metadata). In
//! in-memory mode the state lives in the process; with Redis
//! ([`redis::server`](crate#across-processes)) it lives in Redis, shared by
//! every server and worker.
//!
//! Clients see it in three places (the wire types are in
//! [`join`](crate::join)): the join ack of a presence room carries
//! `"members"` (every member after the join, sorted by id); when a member's
//! first connection joins, the room's other sockets receive
//! `presence_joined` `{"room", "member"}`; when its last connection goes
//! (leave, disconnect, or its server died), `presence_left`. Transitions
//! faster than the room's rate are coalesced into `presence_diff`
//! `{"room", "joined", "left"}`:
//!
//! Per room and server, presence frames follow a token bucket of `burst`
//! frames refilled at `per_second` ([`PresenceRate`], default 20 and 10). A
//! transition that finds a token and nothing waiting is sent alone at once.
//! Otherwise it waits in the room's pending diff, which keeps the last
//! transition of each member, and the diff goes out as one `presence_diff`
//! when the next token is there (at most `1 / per_second` later). A client
//! therefore receives at most `burst + per_second * t` presence frames per
//! room and server in any `t` seconds. Applying every presence frame it
//! receives after asking to join, in order, to the ack's member list gives
//! the room's members.
//!
//! Hooks ([`RoomsBuilder::on_presence`](crate::join::RoomsBuilder::on_presence))
//! see each [`PresenceChange`] exactly once in the cluster: on the server
//! whose join or leave caused it (the store decides transitions
//! atomically), or for a dead server's members on the server that removed
//! them. When Redis loses its data, each server puts its members back
//! without frames or hooks (clients never saw them leave); a member whose
//! last connection left meanwhile gets its `presence_left` and
//! [`Left`](PresenceKind::Left) once.
//!
//! ```
//! # async fn run() -> Result<(), broadcast_core::presence::PresenceError> {
//! let (_layer, io) = socketioxide::SocketIo::new_layer();
//! let presence = broadcast_core::presence::of(&io);
//! assert_eq!(presence.count("/", "chat|1").await?, 0);
//! assert!(presence.members("/", "chat|1").await?.is_empty());
//! # Ok(()) }
//! ```

mod member;
mod memory;
pub(crate) mod registry;
pub(crate) mod service;
pub(crate) mod store;

use std::fmt;
use std::sync::Arc;

use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;

pub use member::{MAX_MEMBER_BYTES, MAX_MEMBER_ID_LEN, Member, PresenceError};
pub use service::{PresenceChange, PresenceHook, PresenceKind, PresenceRate};

use crate::room::Room;
use service::{PresenceService, room_key};

/// Queries the presence of rooms: from a server ([`of`]) or, with Redis,
/// from any server or worker (`server.presence`, `worker.presence`). Cheap
/// to clone.
///
/// ```
/// # async fn run() -> Result<(), broadcast_core::presence::PresenceError> {
/// use broadcast_core::Room;
///
/// #[derive(Room)]
/// #[room(public, presence)]
/// struct ChatRoom { id: u64 }
///
/// let (_layer, io) = socketioxide::SocketIo::new_layer();
/// let presence = broadcast_core::presence::of(&io);
/// let members = presence.members_of(&ChatRoom { id: 1 }).await?;
/// assert!(members.is_empty());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Presence {
    service: Arc<PresenceService>,
}

impl fmt::Debug for Presence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presence").finish_non_exhaustive()
    }
}

impl Presence {
    pub(crate) fn new(service: Arc<PresenceService>) -> Self {
        Self { service }
    }

    /// Every member of `room` in `namespace`, sorted by id.
    ///
    /// ```
    /// # async fn run(p: broadcast_core::presence::Presence) -> Result<(), broadcast_core::presence::PresenceError> {
    /// for m in p.members("/", "chat|1").await? {
    ///     println!("{}", m.id());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn members(&self, namespace: &str, room: &str) -> Result<Vec<Member>, PresenceError> {
        self.service.store.members(&room_key(namespace, room)).await
    }

    /// How many members `room` in `namespace` has.
    ///
    /// ```
    /// # async fn run(p: broadcast_core::presence::Presence) -> Result<(), broadcast_core::presence::PresenceError> {
    /// let online = p.count("/", "chat|1").await?;
    /// # Ok(()) }
    /// ```
    pub async fn count(&self, namespace: &str, room: &str) -> Result<usize, PresenceError> {
        self.service.store.count(&room_key(namespace, room)).await
    }

    /// [`members`](Self::members) of a typed room.
    ///
    /// ```
    /// # async fn run(p: broadcast_core::presence::Presence) -> Result<(), broadcast_core::presence::PresenceError> {
    /// #[derive(broadcast_core::Room)]
    /// #[room(public, presence)]
    /// struct LobbyRoom;
    /// let here = p.members_of(&LobbyRoom).await?;
    /// # Ok(()) }
    /// ```
    pub async fn members_of<R: Room + ?Sized>(
        &self,
        room: &R,
    ) -> Result<Vec<Member>, PresenceError> {
        self.members(&room.namespace(), &room.name()).await
    }

    /// [`count`](Self::count) of a typed room.
    ///
    /// ```
    /// # async fn run(p: broadcast_core::presence::Presence) -> Result<(), broadcast_core::presence::PresenceError> {
    /// #[derive(broadcast_core::Room)]
    /// #[room(public, presence)]
    /// struct LobbyRoom;
    /// let n = p.count_of(&LobbyRoom).await?;
    /// # Ok(()) }
    /// ```
    pub async fn count_of<R: Room + ?Sized>(&self, room: &R) -> Result<usize, PresenceError> {
        self.count(&room.namespace(), &room.name()).await
    }
}

/// The presence of the Socket.IO server `io`: its Redis presence when it
/// was built by `redis::server`, else its in-memory presence.
///
/// ```
/// let (_layer, io) = socketioxide::SocketIo::new_layer();
/// let presence = broadcast_core::presence::of(&io);
/// # drop(presence);
/// ```
pub fn of<A: Adapter>(io: &SocketIo<A>) -> Presence {
    Presence::new(registry::for_server(&io.config().server_id.to_string()))
}
