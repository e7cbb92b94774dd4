//! Which room names, namespaces, event names and room keys are acceptable.

use std::fmt;

/// The namespace used when nothing else is said.
pub const DEFAULT_NAMESPACE: &str = "/";

/// Longest room name, namespace or event name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Longest room key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 64;

/// Which kind of name a [`NameError`] is about.
///
/// ```
/// assert_eq!(broadcast_rules::NameKind::Room.to_string(), "room");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A room name (`chat|1`).
    Room,
    /// A namespace path (`/admin`).
    Namespace,
    /// A Socket.IO event name (`message_posted`).
    Event,
    /// A room key (`chat`).
    Key,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Room => "room",
            NameKind::Namespace => "namespace",
            NameKind::Event => "event",
            NameKind::Key => "room key",
        })
    }
}

/// Why a name was refused.
///
/// ```
/// use broadcast_rules::{NameError, NameKind, validate_room};
/// assert_eq!(validate_room(""), Err(NameError::Empty(NameKind::Room)));
/// assert_eq!(validate_room("").unwrap_err().to_string(), "the room name is empty");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    Empty(NameKind),
    /// The name is longer than allowed.
    TooLong {
        /// What kind of name.
        kind: NameKind,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The name holds a control character.
    ControlCharacter(NameKind),
    /// A namespace must start with `/`.
    NamespaceWithoutSlash,
    /// `#`, `,` and `?` would break Socket.IO packet framing in a namespace.
    NamespaceCharacter(char),
    /// A room key holds a character other than ASCII letters, digits, `_`,
    /// `-`, `.` and `:`.
    KeyCharacter(char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty(kind) => write!(f, "the {kind} name is empty"),
            NameError::TooLong { kind, len, max } => write!(
                f,
                "the {kind} name is {len} bytes long, more than the {max} allowed"
            ),
            NameError::ControlCharacter(kind) => {
                write!(f, "the {kind} name contains a control character")
            }
            NameError::NamespaceWithoutSlash => f.write_str("a namespace must start with `/`"),
            NameError::NamespaceCharacter(c) => write!(f, "a namespace cannot contain `{c}`"),
            NameError::KeyCharacter(c) => write!(
                f,
                "a room key may only contain ASCII letters, digits, `_`, `-`, `.` and `:`, not {c:?}"
            ),
        }
    }
}

impl std::error::Error for NameError {}

fn validate_text(name: &str, kind: NameKind, max: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty(kind));
    }
    if name.len() > max {
        return Err(NameError::TooLong {
            kind,
            len: name.len(),
            max,
        });
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter(kind));
    }
    Ok(())
}

/// Checks a room name: non-empty, at most [`MAX_NAME_LEN`] bytes, no
/// control characters.
///
/// ```
/// use broadcast_rules::validate_room;
/// assert!(validate_room("chat|1").is_ok());
/// assert!(validate_room("a\nb").is_err());
/// ```
pub fn validate_room(room: &str) -> Result<(), NameError> {
    validate_text(room, NameKind::Room, MAX_NAME_LEN)
}

/// Checks an event name: non-empty, at most [`MAX_NAME_LEN`] bytes, no
/// control characters. Whether it clashes with a name Socket.IO or the
/// protocol uses is [`protocol::reserved`](crate::protocol::reserved)'s
/// business.
///
/// ```
/// assert!(broadcast_rules::validate_event_name("chat.updated").is_ok());
/// assert!(broadcast_rules::validate_event_name("").is_err());
/// ```
pub fn validate_event_name(name: &str) -> Result<(), NameError> {
    validate_text(name, NameKind::Event, MAX_NAME_LEN)
}

/// Checks a namespace: as a room name, plus it starts with `/` and holds no
/// `#`, `,` or `?`.
///
/// ```
/// use broadcast_rules::validate_namespace;
/// assert!(validate_namespace("/admin").is_ok());
/// assert!(validate_namespace("admin").is_err());
/// assert!(validate_namespace("/a#b").is_err());
/// ```
pub fn validate_namespace(ns: &str) -> Result<(), NameError> {
    validate_text(ns, NameKind::Namespace, MAX_NAME_LEN)?;
    if !ns.starts_with('/') {
        return Err(NameError::NamespaceWithoutSlash);
    }
    if let Some(c) = ns.chars().find(|c| matches!(c, '#' | ',' | '?')) {
        return Err(NameError::NamespaceCharacter(c));
    }
    Ok(())
}

/// Checks a room key: 1 to [`MAX_KEY_LEN`] bytes of ASCII letters, digits,
/// `_`, `-`, `.` and `:` (`|` separates the key from the identifier in a
/// room name, and the key is part of the `join_<key>` event name).
///
/// ```
/// use broadcast_rules::validate_key;
/// assert!(validate_key("chat").is_ok());
/// assert!(validate_key("chat|1").is_err());
/// assert!(validate_key("").is_err());
/// ```
pub fn validate_key(key: &str) -> Result<(), NameError> {
    validate_text(key, NameKind::Key, MAX_KEY_LEN)?;
    match key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        Some(c) => Err(NameError::KeyCharacter(c)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms() {
        assert_eq!(validate_room(""), Err(NameError::Empty(NameKind::Room)));
        assert!(validate_room(&"x".repeat(MAX_NAME_LEN)).is_ok());
        assert!(matches!(
            validate_room(&"x".repeat(MAX_NAME_LEN + 1)),
            Err(NameError::TooLong { len: 257, .. })
        ));
        assert!(validate_room("emoji 🎉 and spaces").is_ok());
        assert_eq!(
            validate_room("bad\u{7}"),
            Err(NameError::ControlCharacter(NameKind::Room))
        );
    }

    #[test]
    fn namespaces() {
        assert_eq!(validate_namespace("/"), Ok(()));
        assert_eq!(
            validate_namespace(""),
            Err(NameError::Empty(NameKind::Namespace))
        );
        assert_eq!(
            validate_namespace("/a#b"),
            Err(NameError::NamespaceCharacter('#'))
        );
        assert_eq!(
            validate_namespace("/a,b"),
            Err(NameError::NamespaceCharacter(','))
        );
        assert_eq!(
            validate_namespace("/a?b"),
            Err(NameError::NamespaceCharacter('?'))
        );
        assert_eq!(
            validate_namespace("/a\tb"),
            Err(NameError::ControlCharacter(NameKind::Namespace))
        );
    }

    #[test]
    fn keys() {
        assert!(validate_key("user_profile").is_ok());
        assert!(validate_key("a.b:c-d").is_ok());
        assert_eq!(validate_key("chät"), Err(NameError::KeyCharacter('ä')));
        assert!(validate_key(&"k".repeat(MAX_KEY_LEN)).is_ok());
        assert!(matches!(
            validate_key(&"k".repeat(MAX_KEY_LEN + 1)),
            Err(NameError::TooLong {
                max: MAX_KEY_LEN,
                ..
            })
        ));
    }
}
