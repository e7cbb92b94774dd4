//! The join protocol's side of [presence](crate::presence): the member a
//! socket is, the presence rooms it is in, and how presence frames reach
//! the sockets of a room. Only rooms declared with `#[room(presence)]` come
//! here; other rooms do no presence work at all.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use broadcast_rules::protocol::{PRESENCE_DIFF_EVENT, PRESENCE_JOINED_EVENT, PRESENCE_LEFT_EVENT};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;

use super::context::JoinContext;
use super::wire::{PresenceDiff, PresenceNotice};
use crate::presence::service::{Emitter, Frame, FrameBody, PresenceConfig, PresenceService};
use crate::presence::{Member, PresenceError, PresenceHook, PresenceRate, registry};
use crate::util::BoxFuture;

/// Makes a socket's presence member from its join context.
pub(crate) type MemberFn =
    Arc<dyn Fn(&JoinContext) -> Option<Result<Member, PresenceError>> + Send + Sync>;

/// What [`RoomsBuilder`](super::RoomsBuilder) was told about presence.
#[derive(Clone, Default)]
pub(crate) struct PresenceSetup {
    pub(crate) member: Option<MemberFn>,
    pub(crate) hooks: Vec<PresenceHook>,
    pub(crate) rate: PresenceRate,
}

impl fmt::Debug for PresenceSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresenceSetup")
            .field("member", &self.member.is_some())
            .field("hooks", &self.hooks.len())
            .field("rate", &self.rate)
            .finish()
    }
}

impl PresenceSetup {
    /// The presence service of `io`, configured with these hooks and this
    /// rate and sending its frames through `io`.
    pub(crate) fn service_for<A: Adapter>(&self, io: &SocketIo<A>) -> Arc<PresenceService> {
        let service = registry::for_server(&io.config().server_id.to_string());
        service.configure(PresenceConfig {
            hooks: self.hooks.clone(),
            rate: self.rate,
            emit: emitter(io),
        });
        service
    }
}

/// Sends presence frames to a room's sockets on every server, through the
/// adapter (the Redis adapter publishes them to the other servers).
fn emitter<A: Adapter>(io: &SocketIo<A>) -> Emitter {
    let io = io.clone();
    Arc::new(move |frame: Frame| -> BoxFuture<'static, ()> {
        let io = io.clone();
        Box::pin(async move {
            let Some(ops) = io.of(frame.namespace.as_str()) else {
                tracing::warn!(target: "broadcast::presence", namespace = frame.namespace, room = frame.room, "presence frame not sent: no such namespace");
                return;
            };
            let mut ops = ops.to(frame.room.clone());
            if let Some(sid) = frame.except {
                ops = ops.except(sid);
            }
            let room = frame.room;
            let (event, result) = match frame.body {
                FrameBody::Joined(member) => {
                    let notice = PresenceNotice {
                        room: room.clone(),
                        member,
                    };
                    (
                        PRESENCE_JOINED_EVENT,
                        ops.emit(PRESENCE_JOINED_EVENT, &notice).await,
                    )
                }
                FrameBody::Left(member) => {
                    let notice = PresenceNotice {
                        room: room.clone(),
                        member,
                    };
                    (
                        PRESENCE_LEFT_EVENT,
                        ops.emit(PRESENCE_LEFT_EVENT, &notice).await,
                    )
                }
                FrameBody::Diff { joined, left } => {
                    let diff = PresenceDiff {
                        room: room.clone(),
                        joined,
                        left,
                    };
                    (
                        PRESENCE_DIFF_EVENT,
                        ops.emit(PRESENCE_DIFF_EVENT, &diff).await,
                    )
                }
            };
            if let Err(error) = result {
                tracing::warn!(target: "broadcast::presence", event, namespace = frame.namespace, room, %error, "presence frame not sent");
            }
        })
    })
}

/// The presence rooms one socket is in, so a leave, a disconnect, or the
/// socket's drop removes its connection from each.
pub(crate) struct SocketPresence {
    pub(crate) service: Arc<PresenceService>,
    member: Option<MemberFn>,
    namespace: String,
    sid: String,
    rooms: Mutex<Vec<String>>,
}

impl SocketPresence {
    pub(crate) fn new(
        service: Arc<PresenceService>,
        member: Option<MemberFn>,
        namespace: &str,
        sid: String,
    ) -> Self {
        Self {
            service,
            member,
            namespace: namespace.to_owned(),
            sid,
            rooms: Mutex::new(Vec::new()),
        }
    }

    /// Adds the socket to `room`'s presence; the members after the join,
    /// or `None` for a socket that is no member (anonymous).
    pub(crate) async fn join(
        &self,
        ctx: &JoinContext,
        room: &str,
    ) -> Result<Option<Vec<Member>>, PresenceError> {
        let Some(member) = self.member.as_ref().and_then(|f| f(ctx)).transpose()? else {
            return Ok(None);
        };
        // Recorded first: a disconnect racing this join then removes it.
        {
            let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
            if !rooms.iter().any(|r| r == room) {
                rooms.push(room.to_owned());
            }
        }
        match self
            .service
            .join(&self.namespace, room, &self.sid, &member)
            .await
        {
            Ok(members) => Ok(Some(Arc::unwrap_or_clone(members))),
            Err(e) => {
                self.forget(room);
                Err(e)
            }
        }
    }

    /// The members of `room`, for a join of a room the socket is already in.
    pub(crate) async fn members(&self, room: &str) -> Result<Vec<Member>, PresenceError> {
        self.service
            .store
            .members(&crate::presence::service::room_key(&self.namespace, room))
            .await
    }

    fn forget(&self, room: &str) -> bool {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let before = rooms.len();
        rooms.retain(|r| r != room);
        rooms.len() != before
    }

    /// Removes the socket from `room`'s presence (if it was there).
    pub(crate) async fn leave(&self, room: &str) {
        if !self.forget(room) {
            return;
        }
        if let Err(error) = self.service.leave(&self.namespace, room, &self.sid).await {
            tracing::warn!(target: "broadcast::presence", sid = self.sid, room, %error, "presence leave failed");
        }
    }

    /// Removes the socket from every presence room: it disconnected.
    pub(crate) async fn leave_all(&self) {
        let rooms = std::mem::take(&mut *self.rooms.lock().unwrap_or_else(PoisonError::into_inner));
        for room in rooms {
            if let Err(error) = self.service.leave(&self.namespace, &room, &self.sid).await {
                tracing::warn!(target: "broadcast::presence", sid = self.sid, room, %error, "presence leave on disconnect failed");
            }
        }
    }
}

impl Drop for SocketPresence {
    /// The app's connect handler may replace the protocol's disconnect
    /// handler (socketioxide keeps one); the socket's drop still removes it.
    fn drop(&mut self) {
        let rooms = std::mem::take(self.rooms.get_mut().unwrap_or_else(PoisonError::into_inner));
        if rooms.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(target: "broadcast::presence", sid = self.sid, "socket dropped outside a runtime: its presence stays until its server is cleaned up");
            return;
        };
        let (service, namespace, sid) = (
            self.service.clone(),
            std::mem::take(&mut self.namespace),
            std::mem::take(&mut self.sid),
        );
        runtime.spawn(async move {
            for room in rooms {
                if let Err(error) = service.leave(&namespace, &room, &sid).await {
                    tracing::warn!(target: "broadcast::presence", sid, room, %error, "presence leave on drop failed");
                }
            }
        });
    }
}
