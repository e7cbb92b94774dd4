//! Where presence state lives, behind one object-safe trait: the process
//! (in-memory mode) or Redis. A store decides each transition atomically,
//! so a transition is seen by exactly one caller in the cluster.

use super::member::{Member, PresenceError};
use crate::util::BoxFuture;

/// What one join or leave changed for the room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transition {
    /// The member whose first connection joined (on a join) or whose last
    /// connection left (on a leave); `None` when the member's connection
    /// count only changed.
    pub member: Option<Member>,
    /// The room got its first member (on a join) or lost its last (on a
    /// leave).
    pub edge: bool,
}

/// A presence store. Every operation is atomic in the store; `join` and
/// `leave` are idempotent per connection, so retries and races count a
/// connection once.
pub trait Store: Send + Sync + 'static {
    /// Adds connection `conn` of `member` to `room`; returns what changed
    /// and every member after the join, sorted by id.
    fn join<'a>(
        &'a self,
        room: &'a str,
        conn: &'a str,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<(Transition, Vec<Member>), PresenceError>>;

    /// Removes connection `conn` from `room`.
    fn leave<'a>(
        &'a self,
        room: &'a str,
        conn: &'a str,
    ) -> BoxFuture<'a, Result<Transition, PresenceError>>;

    /// Every member of `room`, sorted by id.
    fn members<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<Member>, PresenceError>>;

    /// How many members `room` has.
    fn count<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<usize, PresenceError>>;
}
