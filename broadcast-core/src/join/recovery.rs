//! The join protocol's side of recovery: the `since` a reconnecting client
//! sends, and the per-server history service that answers it (the
//! [`history`](crate::history) layer registers one per Socket.IO server).

use std::sync::{Arc, PoisonError, RwLock, Weak};

use serde_json::Value;
use serde_json::value::RawValue;
use socketioxide::SendError;
use socketioxide::adapter::Adapter;
use socketioxide::socket::{Sid, Socket};
use socketioxide_core::Uid;

use crate::position::{EventPosition, HistoryPolicy, Position};
use crate::util::BoxFuture;

/// Where a reconnecting client left a room: the second argument of
/// `join_<key>`, `{"since": {"offset": 17, "epoch": "..."}}`.
///
/// ```
/// use broadcast_core::join::Since;
/// let since = Since::from_options(&serde_json::json!({"since": {"offset": 3, "epoch": "e"}})).unwrap();
/// assert_eq!(since.unwrap().offset, 3);
/// assert!(Since::from_options(&serde_json::json!({"since": {"offset": -1, "epoch": "e"}})).is_err());
/// assert_eq!(Since::from_options(&serde_json::Value::Null).unwrap(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    /// The offset of the last event the client has.
    pub offset: u64,
    /// The epoch that offset belongs to.
    pub epoch: String,
}

/// Longest epoch a client may send back: the framework's are 16 to 24
/// characters.
const MAX_EPOCH_LEN: usize = 64;

impl Since {
    /// Reads the join options (the event's second argument): absent or
    /// `null` means no recovery; otherwise exactly `{"since": {"offset":
    /// <integer >= 0>, "epoch": <string>}}`, and anything else is an error
    /// message for the client.
    pub fn from_options(options: &Value) -> Result<Option<Since>, String> {
        let map = match options {
            Value::Null => return Ok(None),
            Value::Object(map) => map,
            _ => return Err("join options must be an object like {\"since\": {\"offset\": 0, \"epoch\": \"...\"}}".into()),
        };
        if let Some(unknown) = map.keys().find(|k| *k != "since") {
            return Err(format!(
                "unknown join option `{}`; expected `since`",
                crate::util::echo(unknown)
            ));
        }
        let Some(since) = map.get("since") else {
            return Ok(None);
        };
        let Value::Object(since) = since else {
            return Err(
                "`since` must be an object {\"offset\": <integer>, \"epoch\": <string>}".into(),
            );
        };
        if let Some(unknown) = since.keys().find(|k| *k != "offset" && *k != "epoch") {
            return Err(format!(
                "unknown key `{}` in `since`; expected `offset` and `epoch`",
                crate::util::echo(unknown)
            ));
        }
        let offset = since
            .get("offset")
            .and_then(Value::as_u64)
            .ok_or("`since.offset` must be an integer from 0")?;
        let epoch = match since.get("epoch") {
            Some(Value::String(e)) if !e.is_empty() && e.len() <= MAX_EPOCH_LEN => e.clone(),
            _ => {
                return Err(format!(
                    "`since.epoch` must be a string of 1 to {MAX_EPOCH_LEN} bytes"
                ));
            }
        };
        Ok(Some(Since { offset, epoch }))
    }
}

/// What the history service answers a join of a history room with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recovery {
    /// The room's position when the socket was joined.
    pub(crate) position: Position,
    /// With `since`: whether every missed event was replayed.
    pub(crate) recovered: Option<bool>,
}

/// A joining socket as the history service sees it, its adapter type
/// erased (the service is one per server, whatever the adapter).
pub(crate) trait JoiningSocket: Send + Sync {
    fn id(&self) -> Sid;
    fn ns(&self) -> &str;
    fn connected(&self) -> bool;
    /// One attempt at sending a stored event with its position.
    fn emit_event(
        &self,
        event: &str,
        payload: &RawValue,
        position: EventPosition<'_>,
    ) -> Result<(), SendError>;
    fn join(&self, room: &str);
    fn leave(&self, room: &str);
}

impl<A: Adapter> JoiningSocket for Socket<A> {
    fn id(&self) -> Sid {
        self.id
    }
    fn ns(&self) -> &str {
        Socket::ns(self)
    }
    fn connected(&self) -> bool {
        Socket::connected(self)
    }
    fn emit_event(
        &self,
        event: &str,
        payload: &RawValue,
        position: EventPosition<'_>,
    ) -> Result<(), SendError> {
        self.emit(event, &(payload, position))
    }
    fn join(&self, room: &str) {
        Socket::join(self, room.to_owned());
    }
    fn leave(&self, room: &str) {
        Socket::leave(self, room.to_owned());
    }
}

/// Replays and positions for the history rooms of one Socket.IO server.
pub(crate) trait HistoryService: Send + Sync + 'static {
    /// Joins `socket` to `room` (a history room): replays what it missed
    /// since `since` when possible, then makes it a member, so that it
    /// receives every later event exactly once and in order. `member` says
    /// the socket is already in the room.
    fn join<'a>(
        &'a self,
        socket: Arc<dyn JoiningSocket>,
        room: &'a str,
        policy: HistoryPolicy,
        since: Option<Since>,
        member: bool,
    ) -> BoxFuture<'a, Result<Recovery, String>>;
}

type Services = RwLock<Vec<(Uid, Weak<dyn HistoryService>)>>;

static SERVICES: Services = RwLock::new(Vec::new());

/// Makes `service` the history service of the server `server`; it stays
/// registered while someone holds it.
pub(crate) fn register(server: Uid, service: &Arc<dyn HistoryService>) {
    let mut all = SERVICES.write().unwrap_or_else(PoisonError::into_inner);
    all.retain(|(id, s)| *id != server && s.strong_count() > 0);
    all.push((server, Arc::downgrade(service)));
}

/// The history service of server `server`, if one was registered.
pub(crate) fn service(server: Uid) -> Option<Arc<dyn HistoryService>> {
    SERVICES
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .find(|(id, _)| *id == server)
        .and_then(|(_, s)| s.upgrade())
}
