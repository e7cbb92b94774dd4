//! Default names: the derives compute them at compile time, the generator
//! names files and types with them.

/// `HTTPRequestFailed` -> `http_request_failed`: an underscore before an
/// upper-case letter that follows a lower-case letter or digit, or that
/// starts a new word after an acronym.
///
/// ```
/// assert_eq!(broadcast_rules::snake_case("HTTPRequestFailed"), "http_request_failed");
/// ```
pub fn snake_case(ident: &str) -> String {
    let chars: Vec<char> = ident.chars().collect();
    let mut out = String::with_capacity(ident.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                None | Some('_') => false,
                Some(p) if p.is_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_uppercase() => next.is_some_and(char::is_lowercase),
                Some(_) => false,
            };
            if boundary {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The snake_case name with one trailing `_<suffix>` removed (fast_app's
/// rule), unless nothing would be left.
fn strip_suffix(ident: &str, suffix: &str) -> String {
    let snake = snake_case(ident);
    match snake
        .strip_suffix(suffix)
        .and_then(|rest| rest.strip_suffix('_'))
    {
        Some(rest) if !rest.is_empty() => rest.to_owned(),
        _ => snake,
    }
}

/// The event name of a type without `name = ...`: its snake_case name minus
/// one trailing `_event`.
///
/// ```
/// use broadcast_rules::default_event_name;
/// assert_eq!(default_event_name("UpdateChat"), "update_chat");
/// assert_eq!(default_event_name("NewUserRegisteredEvent"), "new_user_registered");
/// assert_eq!(default_event_name("Event"), "event");
/// ```
pub fn default_event_name(type_ident: &str) -> String {
    strip_suffix(type_ident, "event")
}

/// The room key of a type without `key = ...`: its snake_case name minus
/// one trailing `_room`.
///
/// ```
/// use broadcast_rules::default_room_key;
/// assert_eq!(default_room_key("ChatRoom"), "chat");
/// assert_eq!(default_room_key("Room"), "room");
/// ```
pub fn default_room_key(type_ident: &str) -> String {
    strip_suffix(type_ident, "room")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names() {
        for (ty, name) in [
            ("UpdateChat", "update_chat"),
            ("NewUserRegisteredEvent", "new_user_registered"),
            ("HTTPRequestFailed", "http_request_failed"),
            ("NewUserMessage", "new_user_message"),
            ("Event", "event"),
            ("EventEvent", "event"),
            ("Chat2Updated", "chat2_updated"),
            ("UserIDChanged", "user_id_changed"),
            ("already_snake", "already_snake"),
            ("ABC", "abc"),
            ("Ping", "ping"),
            ("Prevent", "prevent"),
        ] {
            assert_eq!(default_event_name(ty), name, "{ty}");
        }
    }

    #[test]
    fn room_keys() {
        assert_eq!(default_room_key("ChatRoom"), "chat");
        assert_eq!(default_room_key("UserRoom"), "user");
        assert_eq!(default_room_key("Room"), "room");
        assert_eq!(default_room_key("ChatRoomEvent"), "chat_room_event");
        assert_eq!(default_room_key("Mushroom"), "mushroom");
    }
}
