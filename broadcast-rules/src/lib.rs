//! The one copy of every naming rule, limit and protocol name of the
//! broadcast framework.
//!
//! The runtime (`broadcast-core`) checks names at run time, the derives
//! (`broadcast-derive`) check the same names at compile time, and the
//! generator (`cargo-broadcast`) names files and types the way the derives
//! do. Each of them calls this crate, so the three cannot drift apart. It
//! has no dependencies, so a proc-macro crate can use it.
//!
//! ```
//! use broadcast_rules::{default_event_name, validate_namespace, NameError};
//! assert_eq!(default_event_name("NewUserRegisteredEvent"), "new_user_registered");
//! assert_eq!(validate_namespace("admin"), Err(NameError::NamespaceWithoutSlash));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod names;
mod naming;
pub mod protocol;

pub use names::{
    DEFAULT_NAMESPACE, MAX_KEY_LEN, MAX_NAME_LEN, NameError, NameKind, validate_event_name,
    validate_key, validate_namespace, validate_room,
};
pub use naming::{default_event_name, default_room_key, snake_case};
