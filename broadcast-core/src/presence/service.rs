//! One server's presence: a store that decides transitions, the hooks that
//! run once per transition, and the per-room coalescing of the frames that
//! tell clients about them.
//!
//! # Coalescing rule
//!
//! Per room and server, presence frames follow a token bucket of `burst`
//! frames refilled at `per_second` ([`PresenceRate`], default 20 and 10). A
//! transition that finds a token and nothing waiting is sent alone
//! (`presence_joined` / `presence_left`) at once. Otherwise it waits in the
//! room's pending diff, which keeps the last transition of each member, and
//! the diff goes out as one `presence_diff` `{"room", "joined", "left"}`
//! when the next token is there (at most `1 / per_second` later). So a
//! client receives at most `burst + per_second * t` presence frames per room
//! and server in any `t` seconds, and applying them in order to the join
//! ack's list gives the room's members.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::member::{Member, PresenceError};
use super::store::{Op, Store, Transition};
use crate::util::BoxFuture;

/// Which presence transition happened.
///
/// ```
/// use broadcast_core::presence::PresenceKind;
/// assert_ne!(PresenceKind::Occupied, PresenceKind::Joined);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresenceKind {
    /// The room got its first member, anywhere in the cluster.
    Occupied,
    /// A member's first connection joined the room.
    Joined,
    /// A member's last connection left the room (leave, disconnect, or its
    /// server died).
    Left,
    /// The room lost its last member.
    Vacated,
}

/// A presence transition, as hooks receive it. Each transition reaches the
/// hooks of exactly one server: the one whose change caused it (or, for the
/// members of a dead server, the one that removed them).
///
/// ```
/// use broadcast_core::presence::{PresenceChange, PresenceKind};
/// fn describe(c: &PresenceChange) -> String {
///     match (c.kind, &c.member) {
///         (PresenceKind::Joined, Some(m)) => format!("{} joined {}", m.id(), c.room),
///         (kind, _) => format!("{} {kind:?}", c.room),
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PresenceChange {
    /// What happened.
    pub kind: PresenceKind,
    /// The room's namespace.
    pub namespace: String,
    /// The room's name.
    pub room: String,
    /// The member, for [`Joined`](PresenceKind::Joined) and
    /// [`Left`](PresenceKind::Left).
    pub member: Option<Member>,
}

/// A presence hook: runs in its own task, so a slow or failing hook holds
/// up no join and no delivery.
///
/// ```
/// use std::sync::Arc;
/// use broadcast_core::presence::{PresenceChange, PresenceHook};
/// let hook: PresenceHook = Arc::new(|c: PresenceChange| Box::pin(async move {
///     tracing::info!(room = c.room, kind = ?c.kind, "presence");
/// }));
/// # drop(hook);
/// ```
pub type PresenceHook = Arc<dyn Fn(PresenceChange) -> BoxFuture<'static, ()> + Send + Sync>;

/// The coalescing rate of presence frames, per room and server (see the
/// [module docs](crate::presence)).
///
/// ```
/// use broadcast_core::presence::PresenceRate;
/// let r = PresenceRate::default();
/// assert_eq!((r.burst, r.per_second), (20, 10.0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PresenceRate {
    /// Frames that may go out at once.
    pub burst: u32,
    /// Frames per second after the burst.
    pub per_second: f64,
}

impl Default for PresenceRate {
    fn default() -> Self {
        Self {
            burst: 20,
            per_second: 10.0,
        }
    }
}

/// What a frame tells the sockets of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameBody {
    Joined(Member),
    Left(Member),
    Diff {
        joined: Vec<Member>,
        left: Vec<Member>,
    },
}

/// One presence frame to the sockets of a room (on every server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) namespace: String,
    pub(crate) room: String,
    /// The socket id whose own change this is: it is not told about itself.
    pub(crate) except: Option<String>,
    pub(crate) body: FrameBody,
}

/// Sends a frame to a room; built by the layer that knows the adapter and
/// the wire types.
pub(crate) type Emitter = Arc<dyn Fn(Frame) -> BoxFuture<'static, ()> + Send + Sync>;

/// What the application configured: set when rooms are wired into a server.
#[derive(Clone)]
pub(crate) struct PresenceConfig {
    pub(crate) hooks: Vec<PresenceHook>,
    pub(crate) rate: PresenceRate,
    pub(crate) emit: Emitter,
}

/// The store key of a room: namespaces and room names have no control
/// characters, so the separator keeps `(namespace, room)` pairs apart.
pub(crate) fn room_key(namespace: &str, room: &str) -> String {
    format!("{namespace}\u{1f}{room}")
}

/// `(namespace, room)` of a store key.
pub(crate) fn split_key(key: &str) -> Option<(&str, &str)> {
    key.split_once('\u{1f}')
}

/// Most changes of one room applied in one store call.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Arc<Vec<Member>>, PresenceError>>;

/// The changes of one room waiting for the store, and whether a task is
/// applying them.
#[derive(Default)]
struct Queue {
    ops: Vec<(Op, Option<String>, Reply)>,
    running: bool,
}

/// One server's presence.
pub(crate) struct PresenceService {
    pub(crate) store: Arc<dyn Store>,
    config: RwLock<Option<PresenceConfig>>,
    /// Changes of one room on this server go to the store in batches, one
    /// batch at a time: a room's frames leave in the order the store
    /// decided them, and a join storm costs one store call per batch, not
    /// per join.
    queues: Mutex<HashMap<String, Queue>>,
    frames: OnceLock<mpsc::UnboundedSender<Frame>>,
}

impl fmt::Debug for PresenceService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresenceService").finish_non_exhaustive()
    }
}

impl PresenceService {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            config: RwLock::new(None),
            queues: Mutex::default(),
            frames: OnceLock::new(),
        }
    }

    /// Sets the hooks, the rate and how frames are sent (the last call wins).
    pub(crate) fn configure(&self, config: PresenceConfig) {
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = Some(config);
    }

    fn config(&self) -> Option<PresenceConfig> {
        self.config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Adds socket `sid` as a connection of `member` to the room; returns
    /// every member after the join (after its batch: later joins of the same
    /// batch may be in it, and their frames follow).
    pub(crate) async fn join(
        self: &Arc<Self>,
        namespace: &str,
        room: &str,
        sid: &str,
        member: &Member,
    ) -> Result<Arc<Vec<Member>>, PresenceError> {
        let op = Op::Join {
            conn: sid.to_owned(),
            member: member.clone(),
        };
        self.submit(namespace, room, op, Some(sid.to_owned())).await
    }

    /// Removes socket `sid` from the room.
    pub(crate) async fn leave(
        self: &Arc<Self>,
        namespace: &str,
        room: &str,
        sid: &str,
    ) -> Result<(), PresenceError> {
        let op = Op::Leave {
            conn: sid.to_owned(),
        };
        self.submit(namespace, room, op, None).await.map(drop)
    }

    async fn submit(
        self: &Arc<Self>,
        namespace: &str,
        room: &str,
        op: Op,
        except: Option<String>,
    ) -> Result<Arc<Vec<Member>>, PresenceError> {
        let key = room_key(namespace, room);
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
            let q = queues.entry(key.clone()).or_default();
            q.ops.push((op, except, tx));
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            // Its own task: the batch outlives a caller that gives up.
            tokio::spawn(self.clone().drain(key));
        }
        rx.await.unwrap_or_else(|_| {
            Err(PresenceError::Unavailable {
                reason: "the presence task stopped".into(),
            })
        })
    }

    /// Applies the room's queued changes, a batch at a time, until none is
    /// left.
    async fn drain(self: Arc<Self>, key: String) {
        loop {
            let batch: Vec<(Op, Option<String>, Reply)> = {
                let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(q) = queues.get_mut(&key) else {
                    return;
                };
                if q.ops.is_empty() {
                    queues.remove(&key);
                    return;
                }
                let n = q.ops.len().min(MAX_BATCH);
                q.ops.drain(..n).collect()
            };
            let ops: Vec<Op> = batch.iter().map(|(op, _, _)| op.clone()).collect();
            let wants_members = ops.iter().any(|op| matches!(op, Op::Join { .. }));
            let result = self.store.apply(&key, &ops, wants_members).await;
            let Some((namespace, room)) = split_key(&key) else {
                return;
            };
            match result {
                Ok((transitions, members)) => {
                    let members = Arc::new(members);
                    for ((op, except, reply), t) in batch.into_iter().zip(transitions) {
                        let joined = matches!(op, Op::Join { .. });
                        self.announce(namespace, room, except.as_deref(), joined, t);
                        let _ = reply.send(Ok(members.clone()));
                    }
                }
                Err(e) => {
                    for (_, _, reply) in batch {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Announces a transition a store decided outside `join`/`leave` (a
    /// restored connection, a retried leave).
    #[cfg(feature = "redis")]
    pub(crate) fn announce_key(&self, key: &str, joined: bool, t: Transition) {
        if let Some((namespace, room)) = split_key(key) {
            self.announce(namespace, room, None, joined, t);
        }
    }

    /// Announces transitions a store decided outside `join`/`leave` (the
    /// members of a dead server, removed by this one).
    #[cfg(feature = "redis")]
    pub(crate) fn announce_left(&self, key: &str, left: Vec<Member>, vacated: bool) {
        let Some((namespace, room)) = split_key(key) else {
            return;
        };
        let n = left.len();
        for (i, member) in left.into_iter().enumerate() {
            let t = Transition {
                member: Some(member),
                edge: vacated && i + 1 == n,
            };
            self.announce(namespace, room, None, false, t);
        }
    }

    fn announce(
        &self,
        namespace: &str,
        room: &str,
        except: Option<&str>,
        joined: bool,
        t: Transition,
    ) {
        if t.member.is_none() && !t.edge {
            return;
        }
        let Some(config) = self.config() else {
            return;
        };
        if let Some(member) = &t.member {
            let body = if joined {
                FrameBody::Joined(member.clone())
            } else {
                FrameBody::Left(member.clone())
            };
            let frame = Frame {
                namespace: namespace.to_owned(),
                room: room.to_owned(),
                except: except.map(str::to_owned),
                body,
            };
            let tx = self.frames.get_or_init(|| spawn_sender(&config));
            if tx.send(frame).is_err() {
                tracing::warn!(target: "broadcast::presence", namespace, room, "presence frame not sent: the sender task has stopped");
            }
        }
        if config.hooks.is_empty() {
            return;
        }
        let change = |kind, member| PresenceChange {
            kind,
            namespace: namespace.to_owned(),
            room: room.to_owned(),
            member,
        };
        let mut changes = Vec::with_capacity(2);
        if joined {
            if t.edge {
                changes.push(change(PresenceKind::Occupied, None));
            }
            if let Some(m) = t.member {
                changes.push(change(PresenceKind::Joined, Some(m)));
            }
        } else {
            if let Some(m) = t.member {
                changes.push(change(PresenceKind::Left, Some(m)));
            }
            if t.edge {
                changes.push(change(PresenceKind::Vacated, None));
            }
        }
        for hook in config.hooks {
            let changes = changes.clone();
            // One task per hook: a hook that panics stops only itself.
            tokio::spawn(async move {
                for c in changes {
                    hook(c).await;
                }
            });
        }
    }
}

fn spawn_sender(config: &PresenceConfig) -> mpsc::UnboundedSender<Frame> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(send_frames(rx, config.emit.clone(), config.rate));
    tx
}

/// The coalescing state of one room.
struct RoomRate {
    tokens: f64,
    at: Instant,
    /// Member id -> (joined?, member): the last transition of each member.
    pending: BTreeMap<String, (bool, Member)>,
    namespace: String,
    flush_at: Option<Instant>,
}

impl RoomRate {
    fn refill(&mut self, rate: PresenceRate, now: Instant) {
        let refill = now.duration_since(self.at).as_secs_f64() * rate.per_second;
        self.tokens = (self.tokens + refill).min(f64::from(rate.burst));
        self.at = now;
    }

    fn when_token(&self, rate: PresenceRate) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        self.at + Duration::from_secs_f64(missing / rate.per_second.max(1e-3))
    }
}

/// The task that sends a server's presence frames, in order, applying the
/// coalescing rule per room.
async fn send_frames(mut rx: mpsc::UnboundedReceiver<Frame>, emit: Emitter, rate: PresenceRate) {
    let mut rooms: HashMap<String, RoomRate> = HashMap::new();
    let mut sweep = Instant::now() + Duration::from_secs(10);
    loop {
        let due = rooms.values().filter_map(|r| r.flush_at).min();
        let frame = tokio::select! {
            f = rx.recv() => match f {
                Some(f) => Some(f),
                None => return,
            },
            () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => None,
        };
        let now = Instant::now();
        if let Some(frame) = frame {
            let r = rooms.entry(frame.room.clone()).or_insert_with(|| RoomRate {
                tokens: f64::from(rate.burst),
                at: now,
                pending: BTreeMap::new(),
                namespace: frame.namespace.clone(),
                flush_at: None,
            });
            r.refill(rate, now);
            if r.pending.is_empty() && r.tokens >= 1.0 {
                r.tokens -= 1.0;
                emit(frame).await;
            } else {
                let (joined, member) = match frame.body {
                    FrameBody::Joined(m) => (true, m),
                    FrameBody::Left(m) => (false, m),
                    FrameBody::Diff { .. } => continue,
                };
                r.pending.insert(member.id().to_owned(), (joined, member));
                if r.flush_at.is_none() {
                    r.flush_at = Some(r.when_token(rate));
                }
            }
        }
        let now = Instant::now();
        let mut diffs = Vec::new();
        for (room, r) in &mut rooms {
            if r.flush_at.is_some_and(|at| at <= now) {
                r.refill(rate, now);
                if r.tokens < 1.0 {
                    r.flush_at = Some(r.when_token(rate));
                    continue;
                }
                r.tokens -= 1.0;
                r.flush_at = None;
                let (mut joined, mut left) = (Vec::new(), Vec::new());
                for (_, (j, m)) in std::mem::take(&mut r.pending) {
                    if j { joined.push(m) } else { left.push(m) }
                }
                diffs.push(Frame {
                    namespace: r.namespace.clone(),
                    room: room.clone(),
                    except: None,
                    body: FrameBody::Diff { joined, left },
                });
            }
        }
        for d in diffs {
            emit(d).await;
        }
        if now >= sweep {
            sweep = now + Duration::from_secs(10);
            rooms.retain(|_, r| {
                r.refill(rate, now);
                !r.pending.is_empty() || r.tokens < f64::from(rate.burst)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::presence::memory::MemoryStore;

    fn recorder() -> (Emitter, Arc<Mutex<Vec<Frame>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let emit: Emitter = Arc::new(move |f| {
            s.lock().unwrap().push(f);
            Box::pin(async {})
        });
        (emit, seen)
    }

    #[tokio::test]
    async fn frames_past_the_rate_are_coalesced_into_one_diff() {
        let service = Arc::new(PresenceService::new(Arc::new(MemoryStore::default())));
        let (emit, seen) = recorder();
        service.configure(PresenceConfig {
            hooks: vec![],
            rate: PresenceRate {
                burst: 2,
                per_second: 10.0,
            },
            emit,
        });
        for i in 0..5 {
            let m = Member::new(format!("u{i}")).unwrap();
            service.join("/", "r", &format!("s{i}"), &m).await.unwrap();
        }
        service.leave("/", "r", "s4").await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let frames = seen.lock().unwrap().clone();
        assert_eq!(frames.len(), 3, "{frames:?}");
        assert!(matches!(&frames[0].body, FrameBody::Joined(m) if m.id() == "u0"));
        assert_eq!(frames[0].except.as_deref(), Some("s0"));
        let FrameBody::Diff { joined, left } = &frames[2].body else {
            panic!("{frames:?}")
        };
        let ids = |v: &Vec<Member>| v.iter().map(|m| m.id().to_owned()).collect::<Vec<_>>();
        assert_eq!(
            (ids(joined), ids(left)),
            (vec!["u2".into(), "u3".into()], vec!["u4".into()])
        );
    }
}
