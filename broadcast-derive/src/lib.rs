//! Derive macros for [`broadcast-core`](https://docs.rs/broadcast-core).
//!
//! `#[derive(BroadcastEvent)]` implements `broadcast_core::BroadcastEvent`
//! and registers the event in `broadcast_core::registry`. Attributes, all
//! optional, in `#[broadcast(...)]`:
//!
//! | key | meaning |
//! |---|---|
//! | `on = "chat\|{chat.id}"` | a room template; `{dotted.path}` interpolates fields of the event |
//! | `on = expr` | any expression using `self`: a room string, a typed room (`ChatRoom(self.chat.id)`), or a list |
//! | `on = ["chat\|{id}", UserRoom(self.owner)]` | several targets, templates and expressions mixed |
//! | `as = path` | the payload is `path(self)`: a function or constructor taking `&Self`; sync or async; may return a `Resource` |
//! | `as = expr` | the payload is `expr` (it may use `self` and `.await`) |
//! | `when = path` | send only if `path(self)` is true; sync or async |
//! | `name = "chat.updated"` | the event name (default: the type name in snake_case, minus one trailing `_event`) |
//! | `namespace = "/admin"` | the namespace of plain room strings (default `/`) |
//! | `payload = Type` | with `as`: the payload's type, so clients get its schema (without `as` it is the event type) |
//! | `crate = "::path::to::broadcast_core"` | where `broadcast_core` is, if renamed |
//!
//! Without `on` the event goes to one room named after it; without `as` the
//! payload is the event itself (it must implement `serde::Serialize`).
//!
//! `#[derive(Room)]` implements `broadcast_core::Room` and
//! `broadcast_core::JoinableRoom` for a struct whose fields are the room's
//! identifier (`ChatRoom(123)` is `chat|123`, `Pair { a: 1, b: "x" }` is
//! `pair|1|x`; every field is `Display` and `Deserialize`), and registers
//! it for the join protocol (`broadcast_core::join`). In `#[room(...)]`,
//! exactly one of `public` / `authorize` is required (deny by default):
//!
//! | key | meaning |
//! |---|---|
//! | `public` | any client may join, authenticated or not |
//! | `authorize = path` | `path(&JoinContext, &Self)` decides; sync or async; returns `Authorization`, `bool` or a `Result` of either |
//! | `key = "chat"` | the room key (default: the type name in snake_case, minus one trailing `_room`) |
//! | `namespace = "/admin"` | the namespace the room lives in (default `/`) |
//! | `on_join = path` / `on_leave = path` | hooks called with `(&JoinContext, &Self)`; sync or async |
//! | `crate = "::path::to::broadcast_core"` | where `broadcast_core` is, if renamed |

mod attr;
mod ctxt;
mod expand;
mod naming;
mod room;
mod template;
mod valid;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `broadcast_core::BroadcastEvent`; see the crate docs for the
/// `#[broadcast(...)]` attributes.
#[proc_macro_derive(BroadcastEvent, attributes(broadcast))]
pub fn derive_broadcast_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let cx = ctxt::Ctxt::default();
    let attrs = attr::EventAttrs::parse(&cx, &input.attrs);
    let krate = attrs
        .krate
        .as_ref()
        .map(|a| a.value.clone())
        .unwrap_or_else(|| syn::parse_quote!(::broadcast_core));
    let event = valid::event(&cx, &input, attrs);
    match cx.check() {
        Ok(()) => expand::event(&event).into(),
        Err(err) => {
            let mut out = ctxt::Ctxt::compile_errors(&err);
            out.extend(expand::fallback(&input, &krate));
            out.into()
        }
    }
}

/// Derives `broadcast_core::Room` (and the join protocol's room type); see
/// the crate docs for the `#[room(...)]` attributes.
#[proc_macro_derive(Room, attributes(room))]
pub fn derive_room(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    room::derive(&input).into()
}
