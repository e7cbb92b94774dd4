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

/// What a batch changed (one transition per change) and, when asked for,
/// the members after it.
pub type Applied = (Vec<Transition>, Vec<Member>);

/// One change of a batch.
#[derive(Debug, Clone)]
pub enum Op {
    /// Connection `conn` of `member` joins.
    Join {
        /// The connection (socket id).
        conn: String,
        /// Who it is.
        member: Member,
    },
    /// Connection `conn` leaves.
    Leave {
        /// The connection (socket id).
        conn: String,
    },
}

/// A presence store. Every batch is applied atomically, in order; joins
/// and leaves are idempotent per connection, so retries and races count a
/// connection once.
pub trait Store: Send + Sync + 'static {
    /// Applies `ops` to `room` in order; returns one transition per op and,
    /// when `members` is asked for, every member after the batch, sorted by
    /// id.
    fn apply<'a>(
        &'a self,
        room: &'a str,
        ops: &'a [Op],
        members: bool,
    ) -> BoxFuture<'a, Result<Applied, PresenceError>>;

    /// Every member of `room`, sorted by id.
    fn members<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<Member>, PresenceError>>;

    /// How many members `room` has.
    fn count<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<usize, PresenceError>>;
}
