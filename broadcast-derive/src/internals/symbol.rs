//! The attribute names both derives accept, each spelled once.

use std::fmt::{self, Display};

use syn::{Ident, Path};

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Symbol(&'static str);

/// `#[broadcast(...)]`, on an event.
pub const BROADCAST: Symbol = Symbol("broadcast");
/// `#[room(...)]`, on a room.
pub const ROOM: Symbol = Symbol("room");

pub const ON: Symbol = Symbol("on");
pub const AS: Symbol = Symbol("as");
pub const WHEN: Symbol = Symbol("when");
pub const NAME: Symbol = Symbol("name");
pub const NAMESPACE: Symbol = Symbol("namespace");
pub const PAYLOAD: Symbol = Symbol("payload");
pub const CRATE: Symbol = Symbol("crate");
pub const KEY: Symbol = Symbol("key");
pub const PUBLIC: Symbol = Symbol("public");
pub const AUTHORIZE: Symbol = Symbol("authorize");
pub const ON_JOIN: Symbol = Symbol("on_join");
pub const ON_LEAVE: Symbol = Symbol("on_leave");
pub const HISTORY: Symbol = Symbol("history");
pub const SIZE: Symbol = Symbol("size");
pub const TTL: Symbol = Symbol("ttl");
pub const PRESENCE: Symbol = Symbol("presence");

/// The keys of `#[broadcast(...)]`, in the order error messages list them.
pub const EVENT_KEYS: &[Symbol] = &[ON, AS, WHEN, NAME, NAMESPACE, PAYLOAD, CRATE];
/// The keys of `#[room(...)]`, in the order error messages list them.
pub const ROOM_KEYS: &[Symbol] = &[
    KEY, NAMESPACE, PUBLIC, AUTHORIZE, ON_JOIN, ON_LEAVE, HISTORY, PRESENCE, CRATE,
];
/// The keys of `history(...)`.
pub const HISTORY_KEYS: &[Symbol] = &[SIZE, TTL];

/// `on, as, when, ...`: for "expected one of" messages.
pub fn list(keys: &[Symbol]) -> String {
    keys.iter().map(|k| k.0).collect::<Vec<_>>().join(", ")
}

impl PartialEq<Symbol> for Ident {
    fn eq(&self, word: &Symbol) -> bool {
        self == word.0
    }
}

impl PartialEq<Symbol> for &Ident {
    fn eq(&self, word: &Symbol) -> bool {
        *self == word.0
    }
}

impl PartialEq<Symbol> for Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl PartialEq<Symbol> for &Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl Display for Symbol {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lists() {
        assert_eq!(
            list(EVENT_KEYS),
            "on, as, when, name, namespace, payload, crate"
        );
        assert_eq!(
            list(ROOM_KEYS),
            "key, namespace, public, authorize, on_join, on_leave, history, presence, crate"
        );
        assert_eq!(list(HISTORY_KEYS), "size, ttl");
    }

    #[test]
    fn keywords_compare_as_keys() {
        // `as` and `crate` are keywords; `parse_nested_meta` still gives
        // them to us as single-ident paths.
        let attr: syn::Attribute = syn::parse_quote!(#[broadcast(as = x, crate = "y")]);
        let mut seen = Vec::new();
        attr.parse_nested_meta(|meta| {
            seen.push((meta.path == AS, meta.path == CRATE));
            let _: syn::Expr = meta.value()?.parse()?;
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [(true, false), (false, true)]);
        assert!(attr.path() == BROADCAST);
    }
}
