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
fn room_key(room: &str) -> &str {
    match room.bytes().position(|b| b == b'|') {
        Some(end) => &room[..end],
        None => room,
    }
}

/// Values by room type, `(key, namespace)`, for lookups by room name on
/// every broadcast (room channels, history rooms). A sorted slice searched
/// by binary search: there are a few registered types, and comparing a
/// couple of short strings costs less than hashing both with SipHash.
#[derive(Debug)]
pub(crate) struct ByRoomType<T>(Box<[((&'static str, &'static str), T)]>);

impl<T> Default for ByRoomType<T> {
    fn default() -> Self {
        Self(Box::default())
    }
}

impl<T> ByRoomType<T> {
    /// From `((key, namespace), value)` pairs; for a type given twice the
    /// last value wins (an override replaces a declaration).
    pub(crate) fn new(pairs: impl IntoIterator<Item = ((&'static str, &'static str), T)>) -> Self {
        let map: std::collections::BTreeMap<_, _> = pairs.into_iter().collect();
        Self(map.into_iter().collect())
    }

    /// The value of `room`'s type (`chat` for `chat|1`) in `namespace`.
    pub(crate) fn get(&self, namespace: &str, room: &str) -> Option<&T> {
        let wanted = (room_key(room), namespace);
        let i = self.0.binary_search_by(|(k, _)| k.cmp(&wanted)).ok()?;
        self.0.get(i).map(|(_, value)| value)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_types_are_found_by_room_name_and_the_last_value_wins() {
        let types = ByRoomType::new([(("chat", "/"), 1), (("user", "/"), 2), (("chat", "/"), 3)]);
        assert_eq!(types.get("/", "chat|1"), Some(&3));
        assert_eq!(types.get("/", "user"), Some(&2));
        assert_eq!(types.get("/admin", "chat|1"), None);
        assert_eq!(types.get("/", "chats|1"), None);
        assert!(ByRoomType::<u8>::default().is_empty());
    }

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
