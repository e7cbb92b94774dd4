//! The in-memory store: presence state of one process, for servers on the
//! in-memory adapter.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use super::member::{Member, PresenceError};
use super::store::{Applied, Op, Store, Transition};
use crate::util::BoxFuture;

#[derive(Default)]
struct RoomState {
    /// Member id -> (member, connections).
    members: BTreeMap<String, (Member, usize)>,
    /// Connection -> member id.
    conns: HashMap<String, String>,
}

/// Presence of one process. One lock over every room: each operation is a
/// few map updates, and the join ack's member list is a clone of `Arc`s.
#[derive(Default)]
pub(crate) struct MemoryStore {
    rooms: Mutex<HashMap<String, RoomState>>,
}

impl MemoryStore {
    fn members_now(&self, room: &str) -> Vec<Member> {
        let rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        rooms
            .get(room)
            .map(|s| s.members.values().map(|(m, _)| m.clone()).collect())
            .unwrap_or_default()
    }

    fn join_now(&self, room: &str, conn: &str, member: &Member) -> Transition {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let state = rooms.entry(room.to_owned()).or_default();
        let mut t = Transition::default();
        if !state.conns.contains_key(conn) {
            t.edge = state.members.is_empty();
            state.conns.insert(conn.to_owned(), member.id().to_owned());
            let entry = state
                .members
                .entry(member.id().to_owned())
                .or_insert_with(|| (member.clone(), 0));
            entry.1 += 1;
            if entry.1 == 1 {
                t.member = Some(member.clone());
            }
        }
        t
    }

    fn leave_now(&self, room: &str, conn: &str) -> Transition {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let mut t = Transition::default();
        let Some(state) = rooms.get_mut(room) else {
            return t;
        };
        let Some(id) = state.conns.remove(conn) else {
            return t;
        };
        if let Some((member, n)) = state.members.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                t.member = Some(member.clone());
                state.members.remove(&id);
            }
        }
        if state.members.is_empty() {
            t.edge = true;
            rooms.remove(room);
        }
        t
    }
}

impl Store for MemoryStore {
    fn apply<'a>(
        &'a self,
        room: &'a str,
        ops: &'a [Op],
        members: bool,
    ) -> BoxFuture<'a, Result<Applied, PresenceError>> {
        let transitions = ops
            .iter()
            .map(|op| match op {
                Op::Join { conn, member } => self.join_now(room, conn, member),
                Op::Leave { conn } => self.leave_now(room, conn),
            })
            .collect();
        let list = if members {
            self.members_now(room)
        } else {
            Vec::new()
        };
        Box::pin(std::future::ready(Ok((transitions, list))))
    }

    fn members<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<Member>, PresenceError>> {
        Box::pin(std::future::ready(Ok(self.members_now(room))))
    }

    fn count<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<usize, PresenceError>> {
        let rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let n = rooms.get(room).map_or(0, |s| s.members.len());
        Box::pin(std::future::ready(Ok(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_counted_once_over_its_connections() {
        let s = MemoryStore::default();
        let alice = Member::new("alice").unwrap();
        let carol = Member::new("carol").unwrap();
        let t = s.join_now("r", "a1", &alice);
        assert_eq!((t.member.as_ref(), t.edge), (Some(&alice), true));
        assert_eq!(s.join_now("r", "a2", &alice), Transition::default());
        let t = s.join_now("r", "c1", &carol);
        assert_eq!((t.member.as_ref(), t.edge), (Some(&carol), false));
        assert_eq!(s.members_now("r"), [alice.clone(), carol.clone()]);
        // Idempotent per connection.
        assert_eq!(s.join_now("r", "c1", &carol), Transition::default());
        assert_eq!(s.leave_now("r", "a1"), Transition::default());
        assert_eq!(s.leave_now("r", "a1"), Transition::default());
        assert_eq!(s.leave_now("r", "a2").member, Some(alice));
        let t = s.leave_now("r", "c1");
        assert_eq!((t.member, t.edge), (Some(carol), true));
        assert!(s.rooms.lock().unwrap().is_empty());
    }
}
