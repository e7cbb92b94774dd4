//! Derive macros for [`broadcast-core`](https://docs.rs/broadcast-core),
//! which re-exports them as `broadcast_core::BroadcastEvent` and
//! `broadcast_core::Room`; their attributes are documented there.

mod event;
mod fallback;
mod internals;
mod room;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `broadcast_core::BroadcastEvent`.
#[proc_macro_derive(BroadcastEvent, attributes(broadcast))]
pub fn derive_broadcast_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event::derive(&input).into()
}

/// Derives `broadcast_core::Room`.
#[proc_macro_derive(Room, attributes(room))]
pub fn derive_room(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    room::derive(&input).into()
}
