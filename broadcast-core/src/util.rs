//! Small helpers every layer may use; this module depends on nothing else
//! in the crate.

use std::future::Future;
use std::pin::Pin;

/// A boxed, `Send` future, as transports and type-erased room hooks return.
///
/// ```
/// use broadcast_core::transport::BoxFuture;
/// let f: BoxFuture<'static, u8> = Box::pin(async { 7 });
/// # drop(f);
/// ```
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Longest client-provided text echoed back in an error, in characters:
/// enough to recognise it, too little to turn replies into an amplifier.
const MAX_ECHO: usize = 64;

/// `s`, cut to [`MAX_ECHO`] characters (with `...` when cut), for echoing
/// client input back in an error message.
pub(crate) fn echo(s: &str) -> String {
    match s.char_indices().nth(MAX_ECHO) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

/// The key of a typed room's name: the part before the first `|` (`chat`
/// for `chat|1`), or the whole name. Looked up on every broadcast (room
/// channels, history rooms), so it scans the bytes itself: the name is a few
/// bytes long, and `str::split` went through a char searcher that cost more
/// than the lookup it served.
pub(crate) fn room_key(room: &str) -> &str {
    match room.bytes().position(|b| b == b'|') {
        Some(end) => &room[..end],
        None => room,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_key_ends_at_the_first_bar() {
        assert_eq!(room_key("chat|1"), "chat");
        assert_eq!(room_key("chat|1|2"), "chat");
        assert_eq!(room_key("chat"), "chat");
        assert_eq!(room_key("|1"), "");
        assert_eq!(room_key("é|1"), "é");
    }

    #[test]
    fn long_text_is_cut() {
        assert_eq!(echo("short"), "short");
        let cut = echo(&"é".repeat(1000));
        assert_eq!(cut.chars().count(), MAX_ECHO + 3);
        assert!(cut.ends_with("..."));
    }
}
