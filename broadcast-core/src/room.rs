//! Rooms: named groups of sockets that events are delivered to.

use std::borrow::Cow;

/// A typed room: something with a room name and a namespace.
///
/// Return one from `broadcast_on` (or `on = ...` in the derive) instead of a
/// string, so events and the code that joins sockets can never disagree on
/// the spelling of a room.
///
/// ```
/// use std::borrow::Cow;
/// use broadcast_core::Room;
///
/// struct ChatRoom(u64);
///
/// impl Room for ChatRoom {
///     fn name(&self) -> Cow<'static, str> {
///         format!("chat|{}", self.0).into()
///     }
/// }
///
/// assert_eq!(ChatRoom(123).name(), "chat|123");
/// assert_eq!(ChatRoom(123).namespace(), "/");
/// ```
pub trait Room {
    /// The room's name, e.g. `chat|123`.
    fn name(&self) -> Cow<'static, str>;

    /// The namespace the room lives in; `/` unless overridden.
    fn namespace(&self) -> Cow<'static, str> {
        Cow::Borrowed(crate::target::DEFAULT_NAMESPACE)
    }
}
