//! Names: from what the user typed to the type name, the module (file) name,
//! the event name and the room key.
//!
//! Accepted input, checked in this order:
//! - not empty, no `r#` raw form (a raw identifier cannot name a file, and
//!   `r#type` would still be the keyword `type` as a module name);
//! - ASCII letters, digits and `_` only (module names become file names,
//!   room keys must be ASCII), not starting with a digit, with at least one
//!   letter;
//! - PascalCase (`UpdateChat`, `HTTPRequestFailed`: starts upper-case, no
//!   `_`), used as the type name as is; or snake_case (`update_chat`: no
//!   upper case), turned into the type name by upper-casing the first letter
//!   of each `_`-separated word. A snake_case input must be exactly what the
//!   framework's snake_case gives for that type (`chat_2` would become
//!   `Chat2`, whose file is `chat2.rs`, so it is refused with that
//!   suggestion); anything else (`updateChat`, `Chat_Room`) is refused with a
//!   suggestion;
//! - neither the type name nor the module name may be a Rust keyword
//!   (strict, reserved, and the 2024 edition's `gen`): `fn`, `type`, `Self`.
//!
//! These are the generator's own input rules. The names it derives from the
//! input (file, event name, room key) come from `broadcast_rules`, the same
//! functions the derives call, so they cannot differ from what the derives
//! compute.

use broadcast_rules::{default_event_name, default_room_key, snake_case};

/// Every Rust keyword that cannot be an identifier (strict and reserved, up
/// to the 2024 edition). Weak keywords (`union`, `raw`, `safe`,
/// `macro_rules`) are fine as identifiers.
const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "Self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("raw identifiers (`r#...`) are not accepted: pick a name that is not a keyword")]
    Raw,
    #[error("{0:?} is not allowed: use ASCII letters, digits and `_` (PascalCase or snake_case)")]
    Char(char),
    #[error("a Rust identifier cannot start with a digit")]
    LeadingDigit,
    #[error("the name needs at least one letter")]
    NoLetter,
    #[error(
        "it is neither PascalCase nor snake_case as the framework spells names \
         (it would become the type `{ty}` in `{module}.rs`): write `{ty}` or `{module}`"
    )]
    Spelling { ty: String, module: String },
    #[error("`{word}` is a Rust keyword, so it cannot be the {what}")]
    Keyword { word: String, what: &'static str },
    #[error("`{0}` would shadow a type the template uses; pick another name")]
    Shadows(String),
    #[error("its room key `{key}` is invalid: {reason}")]
    Key {
        key: String,
        reason: broadcast_rules::NameError,
    },
    #[error("its event name `{name}` is reserved: {why}; pick another name")]
    ReservedEvent { name: String, why: &'static str },
}

/// The names one generated item is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The struct's name: `UpdateChat`.
    pub ty: String,
    /// The module and file name: `update_chat` (`update_chat.rs`).
    pub module: String,
}

impl Names {
    /// The default event name the derive gives this type: `update_chat`.
    pub fn event_name(&self) -> String {
        default_event_name(&self.ty)
    }

    /// The default room key the derive gives this type: `chat` for `ChatRoom`.
    pub fn room_key(&self) -> String {
        default_room_key(&self.ty)
    }
}

/// Checks `input` and derives the type and module names (see the module docs).
pub fn parse(input: &str) -> Result<Names, NameError> {
    if input.is_empty() {
        return Err(NameError::Empty);
    }
    if input.starts_with("r#") {
        return Err(NameError::Raw);
    }
    if let Some(c) = input
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(NameError::Char(c));
    }
    if input.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(NameError::LeadingDigit);
    }
    if !input.chars().any(|c| c.is_ascii_alphabetic()) {
        return Err(NameError::NoLetter);
    }

    let has_upper = input.chars().any(|c| c.is_ascii_uppercase());
    let pascal = input.starts_with(|c: char| c.is_ascii_uppercase()) && !input.contains('_');
    let ty = if pascal {
        input.to_owned()
    } else {
        pascal_case(input)
    };
    let module = snake_case(&ty);
    // PascalCase is taken as is; snake_case must be the framework's own
    // spelling of the type it names, so both inputs give the same file.
    if !pascal && (has_upper || module != input) {
        return Err(NameError::Spelling { ty, module });
    }

    if KEYWORDS.contains(&ty.as_str()) {
        return Err(NameError::Keyword {
            word: ty,
            what: "type name",
        });
    }
    if KEYWORDS.contains(&module.as_str()) {
        return Err(NameError::Keyword {
            word: module,
            what: "module (file) name",
        });
    }
    Ok(Names { ty, module })
}

/// `update_chat` -> `UpdateChat`: the first letter of every `_`-separated
/// word upper-cased, the underscores dropped.
fn pascal_case(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for word in input.split('_') {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> (String, String) {
        let n = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        (n.ty, n.module)
    }

    #[test]
    fn pascal_and_snake_inputs() {
        let own = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(ok("UpdateChat"), own("UpdateChat", "update_chat"));
        assert_eq!(ok("update_chat"), own("UpdateChat", "update_chat"));
        assert_eq!(
            ok("HTTPRequestFailed"),
            own("HTTPRequestFailed", "http_request_failed")
        );
        assert_eq!(
            ok("http_request_failed"),
            own("HttpRequestFailed", "http_request_failed")
        );
        assert_eq!(ok("ChatRoom"), own("ChatRoom", "chat_room"));
        assert_eq!(ok("chat_room"), own("ChatRoom", "chat_room"));
        assert_eq!(ok("Chat2Updated"), own("Chat2Updated", "chat2_updated"));
        assert_eq!(ok("chat2_updated"), own("Chat2Updated", "chat2_updated"));
        assert_eq!(ok("UserIDChanged"), own("UserIDChanged", "user_id_changed"));
        assert_eq!(ok("ping"), own("Ping", "ping"));
        assert_eq!(ok("X"), own("X", "x"));
        // Weak keywords are identifiers.
        assert_eq!(ok("union"), own("Union", "union"));
        assert_eq!(ok("Fnord"), own("Fnord", "fnord"));
    }

    #[test]
    fn default_event_names_and_room_keys() {
        let n = |s: &str| parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(n("UpdateChat").event_name(), "update_chat");
        assert_eq!(n("update_chat").event_name(), "update_chat");
        assert_eq!(n("HTTPRequestFailed").event_name(), "http_request_failed");
        assert_eq!(n("UserNotifiedEvent").event_name(), "user_notified");
        assert_eq!(n("user_notified_event").event_name(), "user_notified");
        assert_eq!(n("Event").event_name(), "event");
        assert_eq!(n("ChatRoom").room_key(), "chat");
        assert_eq!(n("chat_room").room_key(), "chat");
        assert_eq!(n("Room").room_key(), "room");
        assert_eq!(n("Lobby").room_key(), "lobby");
    }

    #[test]
    fn invalid_identifiers() {
        assert_eq!(parse(""), Err(NameError::Empty));
        assert_eq!(parse("r#type"), Err(NameError::Raw));
        assert_eq!(parse("r#Foo"), Err(NameError::Raw));
        assert_eq!(parse("1abc"), Err(NameError::LeadingDigit));
        assert_eq!(parse("9Lives"), Err(NameError::LeadingDigit));
        assert_eq!(parse("foo-bar"), Err(NameError::Char('-')));
        assert_eq!(parse("foo bar"), Err(NameError::Char(' ')));
        assert_eq!(parse("chät"), Err(NameError::Char('ä')));
        assert_eq!(parse("a::B"), Err(NameError::Char(':')));
        assert_eq!(parse("_"), Err(NameError::NoLetter));
        assert_eq!(parse("__1"), Err(NameError::NoLetter));
    }

    #[test]
    fn keywords() {
        let kw = |s: &str| matches!(parse(s), Err(NameError::Keyword { .. }));
        for word in [
            "fn", "type", "self", "Self", "crate", "super", "mod", "async", "dyn", "gen", "try",
            "yield",
        ] {
            assert!(kw(word), "{word}");
        }
        // PascalCase names whose module would be a keyword.
        for word in ["Fn", "Type", "Crate", "Mod", "Struct", "Match"] {
            assert!(kw(word), "{word}");
        }
        assert_eq!(
            parse("Type"),
            Err(NameError::Keyword {
                word: "type".into(),
                what: "module (file) name"
            })
        );
    }

    #[test]
    fn neither_pascal_nor_snake() {
        let spelling = |ty: &str, module: &str| {
            Err(NameError::Spelling {
                ty: ty.into(),
                module: module.into(),
            })
        };
        assert_eq!(parse("updateChat"), spelling("UpdateChat", "update_chat"));
        assert_eq!(parse("Chat_Room"), spelling("ChatRoom", "chat_room"));
        assert_eq!(parse("chat_2"), spelling("Chat2", "chat2"));
        assert_eq!(parse("update__chat"), spelling("UpdateChat", "update_chat"));
        assert_eq!(parse("_chat"), spelling("Chat", "chat"));
        assert_eq!(parse("chat_"), spelling("Chat", "chat"));
        assert_eq!(
            parse("HTTP_Request"),
            spelling("HTTPRequest", "http_request")
        );
    }
}
