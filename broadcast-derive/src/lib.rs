//! Derive macros for [`broadcast-core`](https://docs.rs/broadcast-core),
//! which re-exports them as `broadcast_core::BroadcastEvent` and
//! `broadcast_core::Room`: use them from there, where their attributes are
//! documented.

mod event;
mod fallback;
mod internals;
mod room;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Implements `broadcast_core::BroadcastEvent` for a struct and registers
/// the event in `broadcast_core::registry`.
///
/// ```ignore
/// use broadcast_core::BroadcastEvent;
///
/// #[derive(serde::Serialize, BroadcastEvent)]
/// #[broadcast(on = ["chat|{chat.id}", UserRoom(self.author)], name = "message.posted")]
/// struct MessagePosted {
///     chat: Chat,
///     author: u64,
///     text: String,
/// }
///
/// // Clients in `chat|<id>` and in the author's room get `message.posted`
/// // with the serialized struct:
/// broadcast_core::broadcast(MessagePosted { chat, author: 7, text: "hi".into() }).await?;
/// ```
///
/// Every attribute is optional and goes in `#[broadcast(...)]`:
///
/// | key | meaning |
/// |---|---|
/// | `on = "chat\|{chat.id}"` | a room template; `{dotted.path}` interpolates fields of the event |
/// | `on = expr` | any expression using `self`: a room string, a typed room (`ChatRoom(self.chat.id)`), or a list |
/// | `on = ["chat\|{id}", UserRoom(self.owner)]` | several targets, templates and expressions mixed |
/// | `as = path` | the payload is `path(self)`: a function or constructor taking `&Self`; sync or async; may return a `Resource` |
/// | `as = expr` | the payload is `expr` (it may use `self` and `.await`) |
/// | `when = path` | send only if `path(self)` is true; sync or async |
/// | `name = "chat.updated"` | the event name (default: the type name in snake_case, minus one trailing `_event`) |
/// | `namespace = "/admin"` | the namespace of plain room strings (default `/`) |
/// | `payload = Type` | with `as`: the payload's type, so clients get its schema (without `as` it is the event type) |
/// | `crate = "::path::to::broadcast_core"` | where `broadcast_core` is, if renamed |
///
/// Without `on` the event goes to one room named after it; without `as` the
/// payload is the event itself (it must implement `serde::Serialize`).
///
/// Checked at compile time, each mistake reported at its attribute and all
/// at once: the type is a non-generic struct; the keys are known and given
/// once; names, namespaces and template text follow the rules of
/// `broadcast_rules`; a template names only fields the struct has; and the
/// event name is not one Socket.IO or the join protocol uses (`connect`,
/// `disconnect`, `joined`, `left`, `error`, `join_*`, `leave_*`, ...), so a
/// struct `JoinChat` needs an explicit `name`.
#[proc_macro_derive(BroadcastEvent, attributes(broadcast))]
pub fn derive_broadcast_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event::derive(&input).into()
}

/// Implements `broadcast_core::Room` and `broadcast_core::join::JoinableRoom`
/// for a struct whose fields are the room's identifier, and registers the
/// room in `broadcast_core::registry` for the join protocol.
///
/// `ChatRoom(123)` is the room `chat|123`, `Pair { a: 1, b: "x" }` is
/// `pair|1|x`: the key, then one `|value` per field in declaration order.
/// Every field implements `Display` (to build the name) and
/// `serde::Deserialize` (to read it from a client's `join_<key>`).
///
/// ```ignore
/// use broadcast_core::Room;
/// use broadcast_core::join::JoinContext;
///
/// #[derive(Room)]
/// #[room(authorize = Self::is_member)]
/// struct ChatRoom(u64);
///
/// impl ChatRoom {
///     async fn is_member(ctx: &JoinContext, room: &Self) -> bool {
///         ctx.identity::<User>().is_some_and(|user| user.chats.contains(&room.0))
///     }
/// }
///
/// // Clients emit `join_chat` with `123`; events target it with
/// // `#[broadcast(on = ChatRoom(self.chat_id))]`.
/// ```
///
/// Who may join is one of three, chosen in `#[room(...)]`:
///
/// | access | meaning |
/// |---|---|
/// | `public` | any client may join, authenticated or not |
/// | `authorize = path` | `path(&JoinContext, &Self)` decides; sync or async; returns `Authorization`, `bool` or a `Result` of either (an `Err` denies) |
/// | neither | server-only: events can target it and server code can put sockets in it, but no client can join it |
///
/// The other attributes, all optional:
///
/// | key | meaning |
/// |---|---|
/// | `key = "chat"` | the room key: the first segment of the name and the `<key>` of `join_<key>` / `leave_<key>` (default: the type name in snake_case, minus one trailing `_room`) |
/// | `namespace = "/admin"` | the namespace the room lives in (default `/`) |
/// | `presence` | track who is in the room ([`presence`](https://docs.rs/broadcast-core/latest/broadcast_core/presence/)): join acks list the members, the other sockets get `presence_joined` / `presence_left` |
/// | `on_join = path` / `on_leave = path` | hooks called with `(&JoinContext, &Self)` after a client joined / left; sync or async |
/// | `history` / `history(size = 1000, ttl = "10m")` | keep the room's last `size` events (default 1,000), none older than `ttl` (`s`, `m`, `h`, `d`; default `"10m"`), so clients that reconnect recover what they missed (see `broadcast_core::history`) |
/// | `crate = "::path::to::broadcast_core"` | where `broadcast_core` is, if renamed |
///
/// Checked at compile time, each mistake reported at its attribute and all
/// at once: the type is a non-generic struct; the keys are known and given
/// once; `public` and `authorize` are not both given; the key and namespace
/// follow the rules of `broadcast_rules`; and no field carries `#[room]`.
#[proc_macro_derive(Room, attributes(room))]
pub fn derive_room(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    room::derive(&input).into()
}
