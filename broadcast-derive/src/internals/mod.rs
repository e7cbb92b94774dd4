//! What both derives share, after serde_derive's `internals`: the error
//! context, the attribute names, the attribute parser, the input model and
//! the room template parser.

pub mod ast;
pub mod attr;
pub mod ctxt;
pub mod symbol;
pub mod template;

pub use ctxt::Ctxt;

use broadcast_rules::NameError;

/// The namespace rule's message, with the fix spelled out where it is
/// obvious (both derives take a `namespace`).
pub fn namespace_message(ns: &str, err: &NameError) -> String {
    match err {
        NameError::NamespaceWithoutSlash => format!("{err}: write `\"/{ns}\"`"),
        _ => err.to_string(),
    }
}
