//! The files the generator writes. Each compiles as is against
//! `broadcast-core` (with `serde`'s `derive` feature for events), without
//! warnings, also under `#![deny(missing_docs)]`; the commented-out options
//! compile too once uncommented as the comments say (the fixture test checks
//! both).
//!
//! Placeholders: `__TYPE__` (the struct), `__NAME__` (the default event name
//! or room key).

use crate::naming::Names;

const EVENT: &str = r#"//! The `__NAME__` broadcast event.
//!
//! Broadcast it from anywhere once a broadcaster is installed:
//! `broadcast_core::broadcast(__TYPE__ { chat_id: 1, text: "hello".into() }).await?`.

/// Sent to clients as `__NAME__`.
#[derive(Debug, Clone, serde::Serialize, broadcast_core::BroadcastEvent)]
#[broadcast(
    // `on`: the rooms that receive the event. A room template over the
    // event's fields (`{field}` or `{field.path}`, checked at compile time),
    // any expression using `self` (a typed room: `on = ChatRoom(self.chat_id)`),
    // or a list of either (`on = ["chat|{chat_id}", "user|{user_id}"]`).
    // Without `on`, the event goes to one room named after it ("__NAME__").
    on = "chat|{chat_id}",
    // `as`: the payload clients receive; without it, the event itself (every
    // field, serialized once). A function taking `&Self`, sync or async, which
    // may return a `broadcast_core::Resource` (dumped first), or any
    // expression using `self`, which may `.await` (`as = self.text.clone()`).
    // as = Self::payload,
    // `when`: send only if this returns true; a function taking `&Self`, sync
    // or async. Without it, the event is always sent.
    // when = Self::should_broadcast,
    // `name`: the event name clients listen to. Default: the type name in
    // snake_case minus one trailing `_event`, here "__NAME__".
    // name = "__NAME__",
    // `namespace`: the Socket.IO namespace of the plain room strings in `on`
    // (typed rooms carry their own). Default: "/".
    // namespace = "/",
)]
pub struct __TYPE__ {
    /// The chat whose room, `chat|<chat_id>`, receives the event.
    pub chat_id: u64,
    /// The message.
    pub text: String,
}

// What `as = Self::payload` and `when = Self::should_broadcast` above call
// (either may be an `async fn`):
//
// impl __TYPE__ {
//     fn payload(&self) -> String {
//         self.text.clone()
//     }
//
//     fn should_broadcast(&self) -> bool {
//         !self.text.is_empty()
//     }
// }
"#;

const ROOM: &str = r#"//! The `__NAME__` room: `__NAME__|<id>`.
//!
//! Clients join it by emitting `join___NAME__` and leave it with
//! `leave___NAME__`, sending the identifier (`123` or `[123]`); they get
//! `joined` / `left`, or `error`. Events target it with
//! `#[broadcast(on = __TYPE__(self.chat_id))]`.

/// The room `__NAME__|<id>`: the key, then one `|value` per field.
#[derive(Debug, Clone, PartialEq, Eq, broadcast_core::Room)]
#[room(
    // Who may join: say one of these, or neither.
    // `public`: any client may join, even one that did not authenticate;
    public,
    // or `authorize = path`: a function, sync or async, taking
    // `(&JoinContext, &__TYPE__)` and returning `bool`, `Authorization`
    // (`Allow`, `Forbid`, `Invalid(msg)`) or a `Result` of either (an `Err`
    // denies and is logged). Only authenticated sockets get this far. Remove
    // `public` above when you use it.
    // authorize = Self::can_join,
    // With neither, the room is server-only: events can target it and server
    // code can put sockets in it, but no client can join it.
    // `key`: the first segment of the room name and the `<key>` of
    // `join_<key>` / `leave_<key>`. Default: the type name in snake_case minus
    // one trailing `_room`, here "__NAME__".
    // key = "__NAME__",
    // `namespace`: the Socket.IO namespace the room lives in; joins land there
    // and events sent to the room go there. Default: "/".
    // namespace = "/",
    // `on_join` / `on_leave`: run after a socket joined / left, before the
    // client is answered; same arguments as `authorize`, returning `()`, sync
    // or async. `on_leave` does not run when a socket disconnects.
    // on_join = Self::joined,
    // on_leave = Self::left,
)]
pub struct __TYPE__(
    /// The identifier: this room is `__NAME__|<this>`. Every field is part of
    /// the name, so each must implement `Display` (to build the name) and
    /// `serde::Deserialize` (to be read from the join request).
    pub u64,
);

// What `authorize = Self::can_join`, `on_join = Self::joined` and
// `on_leave = Self::left` above call (any of them may be an `async fn`):
//
// use broadcast_core::join::{Authorization, JoinContext};
//
// impl __TYPE__ {
//     fn can_join(ctx: &JoinContext, room: &Self) -> Authorization {
//         // e.g. ctx.identity::<User>().is_some_and(|user| user.chats.contains(&room.0))
//         if ctx.is_authenticated() && room.0 != 0 {
//             Authorization::Allow
//         } else {
//             Authorization::Forbid
//         }
//     }
//
//     fn joined(ctx: &JoinContext, room: &Self) {
//         let _ = ctx.emit("welcome", &room.0);
//     }
//
//     fn left(_ctx: &JoinContext, _room: &Self) {}
// }
"#;

fn fill(template: &str, ty: &str, name: &str) -> String {
    template.replace("__TYPE__", ty).replace("__NAME__", name)
}

/// The event file for `names`.
pub fn event(names: &Names) -> String {
    fill(EVENT, &names.ty, &names.event_name())
}

/// The room file for `names`.
pub fn room(names: &Names) -> String {
    fill(ROOM, &names.ty, &names.room_key())
}

/// Type names an event template refers to unqualified: an event of that name
/// would shadow them.
pub const EVENT_USES: &[&str] = &["String"];

/// A new `mod.rs` for a folder of events or rooms.
pub fn mod_file(kind_plural: &str, command: &str) -> String {
    format!(
        "//! The application's {kind_plural}, one module each (`cargo broadcast {command} <Name>` adds them).\n\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming;

    fn names(s: &str) -> Names {
        naming::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn event_template_uses_the_names() {
        let text = event(&names("UserNotifiedEvent"));
        assert!(text.contains("pub struct UserNotifiedEvent {"), "{text}");
        assert!(
            text.contains("Sent to clients as `user_notified`"),
            "{text}"
        );
        assert!(text.contains("// name = \"user_notified\","), "{text}");
        assert!(text.contains("    on = \"chat|{chat_id}\","), "{text}");
        assert!(!text.contains("__"), "{text}");
    }

    #[test]
    fn room_template_uses_the_names() {
        let text = room(&names("ChatRoom"));
        assert!(text.contains("pub struct ChatRoom("), "{text}");
        assert!(text.contains("join_chat"), "{text}");
        assert!(text.contains("// key = \"chat\","), "{text}");
        assert!(text.contains("The room `chat|<id>`"), "{text}");
        // An explicit access choice: without one the room would be
        // server-only, which a generated room should not be by surprise.
        assert!(text.contains("\n    public,\n"), "{text}");
        assert!(text.contains("// authorize = Self::can_join,"), "{text}");
        assert!(
            text.contains("// use broadcast_core::join::{Authorization, JoinContext};"),
            "{text}"
        );
        assert!(
            !text.contains("__TYPE__") && !text.contains("__NAME__"),
            "{text}"
        );
    }

    #[test]
    fn same_file_for_both_spellings() {
        assert_eq!(event(&names("UpdateChat")), event(&names("update_chat")));
        assert_eq!(room(&names("ChatRoom")), room(&names("chat_room")));
    }
}
