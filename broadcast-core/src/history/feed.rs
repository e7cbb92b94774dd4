//! One server's delivery of history rooms' events to its own sockets, and
//! the joins that must fit between them: a joining socket gets the events it
//! missed, then every later one, each exactly once and in offset order.
//!
//! A join registers the socket as *pending* in the room before it reads the
//! store, so every event delivered meanwhile is also kept for it. After the
//! replay it sends the kept events newer than what it read, and joins the
//! socket, under the room's lock, which delivery holds too. Events the store
//! already had but this server has not delivered yet (still on their way
//! from Redis) would reach the new member twice: the socket gets a *floor*
//! (the offset it read), and delivery skips it for events up to that floor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use socketioxide::adapter::Adapter;
use socketioxide::socket::Sid;
use socketioxide::{SendError, SocketError, SocketIo};
use socketioxide_core::Uid;

use super::{HistoryRooms, Live, Store};
use crate::join::recovery::{self, HistoryService, JoiningSocket, Recovery, Since};
use crate::position::{EventPosition, HistoryPolicy};
use crate::transport::classify;
use crate::util::BoxFuture;

/// How long one replayed event may wait for room in the socket's outgoing
/// buffer before the replay is abandoned (and reported not recovered).
const REPLAY_PATIENCE: Duration = Duration::from_secs(5);

/// A floor older than this is dropped: events in flight from Redis arrive
/// within milliseconds.
const FLOOR_LIFETIME: Duration = Duration::from_secs(30);

/// Room states are pruned when there are more than this many idle ones.
const PRUNE_AT: usize = 4096;

type Shared = Arc<tokio::sync::Mutex<RoomState>>;

/// One server's history rooms: delivery to local sockets, and joins.
pub(crate) struct Feed<A: Adapter> {
    io: SocketIo<A>,
    /// By namespace, then room: found by `&str` without building a key (a
    /// lookup per event).
    rooms: Mutex<HashMap<String, HashMap<String, Shared>>>,
    served: OnceLock<(Arc<HistoryRooms>, Arc<dyn Store>)>,
}

#[derive(Default)]
struct RoomState {
    /// The epoch and offset of the last event delivered here.
    last: Option<(String, u64)>,
    pending: Vec<Pending>,
    floors: Vec<Floor>,
}

impl RoomState {
    fn idle(&self) -> bool {
        self.pending.is_empty() && self.floors.is_empty()
    }
}

struct Pending {
    sid: Sid,
    kept: Vec<Arc<Live>>,
}

struct Floor {
    sid: Sid,
    epoch: String,
    offset: u64,
    since: Instant,
}

impl<A: Adapter> Feed<A> {
    pub(crate) fn new(io: SocketIo<A>) -> Arc<Self> {
        Arc::new(Self {
            io,
            rooms: Mutex::new(HashMap::new()),
            served: OnceLock::new(),
        })
    }

    /// Starts answering the joins of server `server` with `store`.
    pub(crate) fn serve(
        self: &Arc<Self>,
        server: Uid,
        rooms: Arc<HistoryRooms>,
        store: Arc<dyn Store>,
    ) {
        let _ = self.served.set((rooms, store));
        let service: Arc<dyn HistoryService> = self.clone();
        recovery::register(server, &service);
    }

    fn state(&self, namespace: &str, room: &str) -> Shared {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = rooms.get(namespace).and_then(|n| n.get(room)) {
            return state.clone();
        }
        let ns = match rooms.get_mut(namespace) {
            Some(ns) => ns,
            None => rooms.entry(namespace.to_owned()).or_default(),
        };
        if ns.len() >= PRUNE_AT {
            // Idle states hold nothing a delivery needs: losing `last` only
            // gives the next joiner a floor it did not need.
            ns.retain(|_, s| {
                Arc::strong_count(s) > 1 || s.try_lock().map_or(true, |st| !st.idle())
            });
        }
        ns.entry(room.to_owned()).or_default().clone()
    }

    /// Delivers one event to this server's sockets in its room (and keeps
    /// it for sockets joining it). Returns the sockets that could not be
    /// written to.
    pub(crate) async fn deliver(&self, live: Arc<Live>) -> usize {
        let state = self.state(&live.namespace, &live.room);
        let mut st = state.lock().await;
        for p in &mut st.pending {
            p.kept.push(live.clone());
        }
        let offset = live.stored.offset;
        let mut except: Vec<String> = live.except.iter().map(Sid::to_string).collect();
        if !st.floors.is_empty() {
            let now = Instant::now();
            st.floors.retain(|f| {
                let current = f.epoch == live.epoch && now.duration_since(f.since) < FLOOR_LIFETIME;
                if current && offset <= f.offset {
                    except.push(f.sid.to_string());
                }
                current && offset < f.offset
            });
        }
        match &mut st.last {
            // The epoch is kept, not copied again, per event.
            Some((epoch, last)) if *epoch == live.epoch => *last = offset,
            last => *last = Some((live.epoch.clone(), offset)),
        }
        let Some(op) = self.io.of(live.namespace.as_str()) else {
            tracing::warn!(namespace = %live.namespace, room = %live.room, "history event for a namespace this server does not have");
            return 0;
        };
        let mut op = op.local().to(live.room.clone());
        if !except.is_empty() {
            op = op.except(except);
        }
        let position = EventPosition {
            room: &live.room,
            offset,
            epoch: &live.epoch,
        };
        let payload: &RawValue = &live.stored.payload;
        let mut report = crate::transport::DeliveryReport::default();
        // Boxed: the adapter's broadcast future is kilobytes (it can publish
        // to Redis too), and inline it was copied several times per event
        // on its way into the shard task's state (memcpy was half of this
        // path's instructions).
        let data = (payload, position);
        let emit = Box::pin(op.emit(&live.stored.event, &data));
        if let Err(e) = emit.await.or_else(|e| classify(e, &mut report)) {
            tracing::warn!(event = %live.stored.event, room = %live.room, error = %e, "history event not delivered to local sockets");
        }
        report.socket_errors
    }

    async fn join_room(
        &self,
        socket: Arc<dyn JoiningSocket>,
        room: &str,
        declared: HistoryPolicy,
        since: Option<Since>,
        member: bool,
    ) -> Result<Recovery, String> {
        let Some((rooms, store)) = self.served.get() else {
            return Err("the history service is not started".into());
        };
        let namespace = socket.ns().to_owned();
        let policy = rooms.policy(&namespace, room).unwrap_or(declared);
        let sid = socket.id();
        let state = self.state(&namespace, room);
        {
            let mut st = state.lock().await;
            st.pending.push(Pending {
                sid,
                kept: Vec::new(),
            });
            // A member asking to recover is replayed like a newcomer; the
            // events it already has come again, and its client drops them
            // by offset.
            if member && since.is_some() {
                socket.leave(room);
            }
        }
        let read = store
            .read(
                &namespace,
                room,
                policy,
                since.as_ref().map(|s| s.offset),
                rooms.max_replay,
            )
            .await;
        let read = match read {
            Ok(read) => read,
            Err(e) => {
                let mut st = state.lock().await;
                st.pending.retain(|p| p.sid != sid);
                return Err(format!("reading the history of `{room}`: {e}"));
            }
        };
        let top = read.position.offset;
        let epoch = read.position.epoch.clone();
        let mut recovered = match (&since, &read.after) {
            (Some(s), Some(_)) => Some(s.epoch == epoch && s.offset <= top),
            (Some(_), None) => Some(false),
            (None, _) => None,
        };
        if recovered == Some(true) {
            for stored in read.after.iter().flatten() {
                let position = EventPosition {
                    room,
                    offset: stored.offset,
                    epoch: &epoch,
                };
                if !send(&*socket, &stored.event, &stored.payload, position).await {
                    recovered = Some(false);
                    break;
                }
            }
        }
        let mut st = state.lock().await;
        let kept = match st.pending.iter().position(|p| p.sid == sid) {
            Some(i) => st.pending.swap_remove(i).kept,
            None => Vec::new(),
        };
        for live in kept {
            // Newer than what was read, or of a new epoch (the history was
            // lost meanwhile: every event of it is new).
            if live.epoch != epoch || live.stored.offset > top {
                let position = EventPosition {
                    room,
                    offset: live.stored.offset,
                    epoch: &live.epoch,
                };
                send(&*socket, &live.stored.event, &live.stored.payload, position).await;
            }
        }
        if socket.connected() {
            socket.join(room);
        }
        let behind = match &st.last {
            Some((e, last)) => *e == epoch && *last < top,
            None => true,
        };
        if behind {
            st.floors.push(Floor {
                sid,
                epoch: epoch.clone(),
                offset: top,
                since: Instant::now(),
            });
        }
        Ok(Recovery {
            position: read.position,
            recovered,
        })
    }
}

/// Sends one stored event, waiting up to [`REPLAY_PATIENCE`] for room in the
/// socket's buffer; false when it could not.
async fn send(
    socket: &dyn JoiningSocket,
    event: &str,
    payload: &RawValue,
    position: EventPosition<'_>,
) -> bool {
    let deadline = Instant::now() + REPLAY_PATIENCE;
    let mut pause = Duration::from_millis(1);
    loop {
        match socket.emit_event(event, payload, position) {
            Ok(()) => return true,
            Err(SendError::Socket(SocketError::InternalChannelFull))
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(16));
            }
            Err(e) => {
                tracing::debug!(sid = %socket.id(), event, error = %e, "replayed event not sent");
                return false;
            }
        }
    }
}

impl<A: Adapter> HistoryService for Feed<A> {
    fn join<'a>(
        &'a self,
        socket: Arc<dyn JoiningSocket>,
        room: &'a str,
        policy: HistoryPolicy,
        since: Option<Since>,
        member: bool,
    ) -> BoxFuture<'a, Result<Recovery, String>> {
        Box::pin(self.join_room(socket, room, policy, since, member))
    }
}
