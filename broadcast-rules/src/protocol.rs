//! The event names of the join protocol, and the names an application's
//! events may not take because Socket.IO or the protocol already use them.

/// Sent to a socket after it joined a room: `{"room": "<name>"}`.
pub const JOINED_EVENT: &str = "joined";
/// Sent to a socket after it left a room it was in: `{"room": "<name>"}`.
pub const LEFT_EVENT: &str = "left";
/// Sent to a socket when a join or leave failed.
pub const ERROR_EVENT: &str = "error";
/// Sent to the other sockets of a presence room when a member's first
/// connection joined it: `{"room": "<name>", "member": {"id": ...}}`.
pub const PRESENCE_JOINED_EVENT: &str = "presence_joined";
/// Sent to the remaining sockets of a presence room when a member's last
/// connection left it: `{"room": "<name>", "member": {"id": ...}}`.
pub const PRESENCE_LEFT_EVENT: &str = "presence_left";
/// Sent instead of single presence events when a room's transitions come
/// faster than its rate: `{"room": "<name>", "joined": [...], "left": [...]}`.
pub const PRESENCE_DIFF_EVENT: &str = "presence_diff";
/// A client joins the room of key `K` with the event `join_K`.
pub const JOIN_PREFIX: &str = "join_";
/// A client leaves the room of key `K` with the event `leave_K`.
pub const LEAVE_PREFIX: &str = "leave_";

/// Events the Socket.IO client or server give a meaning of their own.
pub const SOCKET_IO_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Events the join protocol sends to clients.
pub const PROTOCOL_EVENTS: &[&str] = &[
    JOINED_EVENT,
    LEFT_EVENT,
    ERROR_EVENT,
    PRESENCE_JOINED_EVENT,
    PRESENCE_LEFT_EVENT,
    PRESENCE_DIFF_EVENT,
];

/// The event a client emits to join the room of key `key`.
///
/// ```
/// assert_eq!(broadcast_rules::protocol::join_event("chat"), "join_chat");
/// ```
pub fn join_event(key: &str) -> String {
    format!("{JOIN_PREFIX}{key}")
}

/// The event a client emits to leave the room of key `key`.
///
/// ```
/// assert_eq!(broadcast_rules::protocol::leave_event("chat"), "leave_chat");
/// ```
pub fn leave_event(key: &str) -> String {
    format!("{LEAVE_PREFIX}{key}")
}

/// Why an application event may not be called `name`, if it may not: the
/// name is one Socket.IO gives a meaning to, one the join protocol sends,
/// or starts like the events clients send to join and leave rooms.
///
/// ```
/// use broadcast_rules::protocol::reserved;
/// assert!(reserved("message_posted").is_none());
/// assert!(reserved("disconnect").is_some());
/// assert!(reserved("joined").is_some());
/// assert!(reserved("presence_left").is_some());
/// assert!(reserved("join_chat").is_some());
/// ```
pub fn reserved(name: &str) -> Option<&'static str> {
    if SOCKET_IO_EVENTS.contains(&name) {
        Some("Socket.IO reserves this event name")
    } else if PROTOCOL_EVENTS.contains(&name) {
        Some("the join protocol sends an event of this name to clients")
    } else if name.starts_with(JOIN_PREFIX) || name.starts_with(LEAVE_PREFIX) {
        Some("clients send `join_*` and `leave_*` events to join and leave rooms")
    } else {
        None
    }
}
