//! Typed rooms: a type that names a room, so events and the code that joins
//! sockets can never disagree on the spelling of a room.

use std::borrow::Cow;

use crate::target::{IntoTargets, Targets};

/// A typed room: something with a room name and a namespace.
///
/// Return one from `broadcast_on` (or `on = ...` in the derive) instead of a
/// string. Usually derived with `#[derive(Room)]`, which also makes the room
/// joinable by clients when it says who may join (see
/// [`join`](crate::join)); written by hand it looks like this:
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
        Cow::Borrowed(broadcast_rules::DEFAULT_NAMESPACE)
    }
}

impl<R: Room> IntoTargets for R {
    fn into_targets(self, _: &'static str, out: &mut Targets) {
        out.push(self.namespace(), self.name());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct ChatRoom(u64);
    impl Room for ChatRoom {
        fn name(&self) -> Cow<'static, str> {
            format!("chat|{}", self.0).into()
        }
    }
    struct AdminRoom;
    impl Room for AdminRoom {
        fn name(&self) -> Cow<'static, str> {
            "admins".into()
        }
        fn namespace(&self) -> Cow<'static, str> {
            "/admin".into()
        }
    }

    fn collect(t: impl IntoTargets, ns: &'static str) -> Vec<String> {
        let mut out = Targets::new();
        t.into_targets(ns, &mut out);
        out.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn typed_rooms_keep_their_namespace() {
        assert_eq!(collect(ChatRoom(5), "/ignored"), ["/#chat|5"]);
        assert_eq!(collect(AdminRoom, "/"), ["/admin#admins"]);
    }

    #[test]
    fn typed_rooms_mix_with_strings_and_deduplicate() {
        let got = collect(
            (
                vec!["b", "a", "b"],
                ChatRoom(1),
                [ChatRoom(1), ChatRoom(2)],
                AdminRoom,
            ),
            "/",
        );
        assert_eq!(got, ["/#b", "/#a", "/#chat|1", "/#chat|2", "/admin#admins"]);
    }
}
