//! Positions in a room's event stream, and how much of the stream a room
//! keeps: the data recovery is made of, shared by the join protocol (which
//! answers with positions) and the transports (which assign them).

use std::time::Duration;

use serde::Serialize;

/// How many events a recovering client may be sent at most, by default: a
/// client further behind is told `recovered: false` and reloads its state.
pub const DEFAULT_MAX_REPLAY: u64 = 1000;

/// What a history room keeps of its past events: at most `size` events, none
/// older than `ttl`. `#[room(history(size = 1000, ttl = "10m"))]` declares it;
/// [`history::HistorySettings`](crate::history::HistorySettings) overrides it
/// at startup.
///
/// ```
/// use broadcast_core::HistoryPolicy;
/// let p = HistoryPolicy::new(1000, 600);
/// assert_eq!(p.ttl(), std::time::Duration::from_secs(600));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct HistoryPolicy {
    /// Most events kept.
    pub size: u32,
    /// Oldest event kept, in seconds.
    pub ttl_secs: u64,
}

impl HistoryPolicy {
    /// At most `size` events (at least 1), none older than `ttl_secs`
    /// seconds (at least 1).
    pub const fn new(size: u32, ttl_secs: u64) -> Self {
        Self {
            size: if size == 0 { 1 } else { size },
            ttl_secs: if ttl_secs == 0 { 1 } else { ttl_secs },
        }
    }

    /// The age limit.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs)
    }
}

/// A place in one room's stream: the offset of the last event there (0
/// before the first) and the stream's epoch, which changes when the history
/// was lost (a Redis restart, a room idle past its TTL), so offsets of
/// another epoch mean nothing. On the wire: `{"offset": 17, "epoch": "..."}`.
///
/// ```
/// use broadcast_core::Position;
/// let p = Position { offset: 17, epoch: "e1".into() };
/// assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"offset":17,"epoch":"e1"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct Position {
    /// The last event's offset; offsets start at 1 and grow by 1 per event.
    pub offset: u64,
    /// The stream's epoch.
    pub epoch: String,
}

/// The argument that follows the payload of every event delivered to a
/// history room: `{"room": "chat|1", "offset": 17, "epoch": "..."}`.
///
/// ```
/// use broadcast_core::EventPosition;
/// let p = EventPosition { room: "chat|1", offset: 3, epoch: "e" };
/// assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"room":"chat|1","offset":3,"epoch":"e"}"#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EventPosition<'a> {
    /// The room the copy was delivered for.
    pub room: &'a str,
    /// The event's offset in that room.
    pub offset: u64,
    /// The room stream's epoch.
    pub epoch: &'a str,
}
