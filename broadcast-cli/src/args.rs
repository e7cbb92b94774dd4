//! The command line, parsed by hand: the surface is three words and two
//! options.

use std::ffi::OsString;
use std::path::PathBuf;

/// The short usage, printed after a usage error.
pub const USAGE: &str = "\
Usage: cargo broadcast make event <Name> [--path <dir>] [--manifest-path <Cargo.toml>]
       cargo broadcast make room <Name> [--path <dir>] [--manifest-path <Cargo.toml>]";

/// `--help`.
pub const HELP: &str = "\
cargo-broadcast: generates broadcast-core events and rooms

Usage: cargo broadcast make event <Name> [--path <dir>] [--manifest-path <Cargo.toml>]
       cargo broadcast make room <Name> [--path <dir>] [--manifest-path <Cargo.toml>]
       cargo broadcast --help | --version

Commands:
  make event <Name>  Write src/events/<name>.rs: a #[derive(BroadcastEvent)] struct
                     with `on` set and every other attribute explained in comments
  make room <Name>   Write src/rooms/<name>.rs: a #[derive(Room)] struct, `public`,
                     with `authorize`, `key`, `namespace` and the hooks explained

  Each command also declares the module: it adds `pub mod <name>;` to the folder's
  mod.rs (or to <folder>.rs if that is the folder's module file), creating mod.rs
  if there is none. A module already declared there is left alone; a new line is
  appended after the existing content, which is never rewritten.

<Name>:
  PascalCase (UpdateChat, ChatRoom, HTTPRequestFailed), used as the type name, or
  snake_case (update_chat, chat_room), which must be the framework's snake_case of
  the type it names. The file is the type name in snake_case:
    UpdateChat, update_chat  ->  update_chat.rs, type UpdateChat, event \"update_chat\"
    UserNotifiedEvent        ->  user_notified_event.rs, event \"user_notified\"
    ChatRoom, chat_room      ->  chat_room.rs, type ChatRoom, room key \"chat\"
  Event names drop one trailing `_event`, room keys one trailing `_room`, exactly
  as the derives do. Refused: empty names, characters other than ASCII letters,
  digits and `_` (foo-bar, chät), a leading digit (1abc), Rust keywords as the type
  or module name (fn, type, Self, ...), raw identifiers (r#...), and spellings that
  are neither PascalCase nor snake_case (updateChat, Chat_Room, chat_2). So are
  events whose name Socket.IO or the join protocol already uses (Disconnect,
  JoinChat: \"join_chat\"), which the derive would refuse.

Options:
  --path <dir>                 Folder for the new file, relative to the project root
                               (default: src/events or src/rooms). It must be inside
                               the project, and not the root itself.
  --manifest-path <Cargo.toml> The project (default: the nearest Cargo.toml in the
                               current folder or above it)
  -h, --help                   Print this help
  -V, --version                Print the version

An existing file is never overwritten.
Exit status: 0 done, 1 refused or failed, 2 bad command line.
";

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Event,
    Room,
}

impl Kind {
    /// The folder used without `--path`, relative to the project root.
    pub fn default_dir(self) -> &'static str {
        match self {
            Kind::Event => "src/events",
            Kind::Room => "src/rooms",
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Room => "room",
        }
    }
}

/// `make <kind> <name> [options]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Make {
    pub kind: Kind,
    pub name: String,
    pub path: Option<PathBuf>,
    pub manifest_path: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    Make(Make),
}

/// A command line that does not parse (exit status 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

/// Parses the arguments after the program name. Cargo runs `cargo broadcast
/// ...` as `cargo-broadcast broadcast ...`, so a first argument `broadcast`
/// is skipped.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|a| a == "broadcast") {
        args.next();
    }

    let mut positional: Vec<OsString> = Vec::new();
    let mut path = None;
    let mut manifest_path = None;
    let mut only_positional = false;
    while let Some(arg) = args.next() {
        if only_positional {
            positional.push(arg);
            continue;
        }
        let text = arg.to_string_lossy();
        match text.as_ref() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--" => only_positional = true,
            "--path" => set_path(&mut path, "--path", args.next())?,
            "--manifest-path" => set_path(&mut manifest_path, "--manifest-path", args.next())?,
            t if t.starts_with("--path=") => set_path(&mut path, "--path", Some(after_eq(&arg)))?,
            t if t.starts_with("--manifest-path=") => {
                set_path(&mut manifest_path, "--manifest-path", Some(after_eq(&arg)))?
            }
            t if t.starts_with('-') && t.len() > 1 => {
                return Err(usage(format!("unknown option `{t}`")));
            }
            _ => positional.push(arg),
        }
    }

    let mut positional = positional.into_iter();
    match positional.next() {
        None => {
            return Err(usage(
                "missing command: `make event <Name>` or `make room <Name>`",
            ));
        }
        Some(cmd) if cmd == "make" => {}
        Some(cmd) => {
            return Err(usage(format!(
                "unknown command `{}`; expected `make`",
                cmd.to_string_lossy()
            )));
        }
    }
    let kind = match positional.next() {
        None => return Err(usage("missing what to make: `event` or `room`")),
        Some(k) if k == "event" => Kind::Event,
        Some(k) if k == "room" => Kind::Room,
        Some(k) => {
            return Err(usage(format!(
                "cannot make `{}`; expected `event` or `room`",
                k.to_string_lossy()
            )));
        }
    };
    let name = match positional.next() {
        None => {
            return Err(usage(format!(
                "missing the {} name, e.g. `{}`",
                kind.word(),
                example(kind)
            )));
        }
        // A non-UTF-8 name is kept lossily; it is refused as a name later.
        Some(n) => n.to_string_lossy().into_owned(),
    };
    if let Some(extra) = positional.next() {
        return Err(usage(format!(
            "unexpected argument `{}`",
            extra.to_string_lossy()
        )));
    }
    Ok(Command::Make(Make {
        kind,
        name,
        path,
        manifest_path,
    }))
}

fn example(kind: Kind) -> &'static str {
    match kind {
        Kind::Event => "make event UpdateChat",
        Kind::Room => "make room ChatRoom",
    }
}

fn set_path(
    slot: &mut Option<PathBuf>,
    option: &str,
    value: Option<OsString>,
) -> Result<(), UsageError> {
    let Some(value) = value else {
        return Err(usage(format!("`{option}` needs a value")));
    };
    if value.is_empty() {
        return Err(usage(format!("`{option}` needs a non-empty value")));
    }
    if slot.is_some() {
        return Err(usage(format!("`{option}` given twice")));
    }
    *slot = Some(PathBuf::from(value));
    Ok(())
}

/// The value of `--opt=value`. Converted through UTF-8 (lossily for a
/// non-UTF-8 path; `--opt value` keeps any bytes).
fn after_eq(arg: &OsString) -> OsString {
    let text = arg.to_string_lossy();
    match text.split_once('=') {
        Some((_, value)) => OsString::from(value),
        None => OsString::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    fn make(
        kind: Kind,
        name: &str,
        path: Option<&str>,
        manifest: Option<&str>,
    ) -> Result<Command, UsageError> {
        Ok(Command::Make(Make {
            kind,
            name: name.into(),
            path: path.map(PathBuf::from),
            manifest_path: manifest.map(PathBuf::from),
        }))
    }

    #[test]
    fn commands() {
        assert_eq!(
            p(&["make", "event", "UpdateChat"]),
            make(Kind::Event, "UpdateChat", None, None)
        );
        assert_eq!(
            p(&["make", "room", "chat_room"]),
            make(Kind::Room, "chat_room", None, None)
        );
        // As cargo runs it.
        assert_eq!(
            p(&["broadcast", "make", "event", "UpdateChat"]),
            make(Kind::Event, "UpdateChat", None, None)
        );
        assert_eq!(p(&["broadcast", "--help"]), Ok(Command::Help));
        // Only the first `broadcast` is cargo's.
        assert_eq!(
            p(&["make", "event", "broadcast"]),
            make(Kind::Event, "broadcast", None, None)
        );
        // An empty name reaches the name check (exit 1), not a usage error.
        assert_eq!(p(&["make", "event", ""]), make(Kind::Event, "", None, None));
    }

    #[test]
    fn options() {
        assert_eq!(
            p(&["make", "event", "A", "--path", "src/x"]),
            make(Kind::Event, "A", Some("src/x"), None)
        );
        assert_eq!(
            p(&[
                "--path=src/x",
                "make",
                "--manifest-path",
                "y/Cargo.toml",
                "event",
                "A"
            ]),
            make(Kind::Event, "A", Some("src/x"), Some("y/Cargo.toml"))
        );
        assert_eq!(
            p(&["make", "event", "--", "-x"]),
            make(Kind::Event, "-x", None, None)
        );
        assert_eq!(p(&["make", "event", "A", "-h"]), Ok(Command::Help));
        assert_eq!(p(&["--version"]), Ok(Command::Version));
        assert_eq!(p(&["-V"]), Ok(Command::Version));
    }

    #[test]
    fn usage_errors() {
        for args in [
            &[][..],
            &["make"],
            &["make", "event"],
            &["make", "thing", "A"],
            &["build", "event", "A"],
            &["make", "event", "A", "B"],
            &["make", "event", "A", "--path"],
            &["make", "event", "A", "--path="],
            &["make", "event", "A", "--path", "a", "--path", "b"],
            &["make", "event", "A", "--force"],
            &["make", "event", "A", "-f"],
        ] {
            assert!(p(args).is_err(), "{args:?}");
        }
    }
}
