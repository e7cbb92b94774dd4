//! Default names, computed at compile time so the runtime never does it.

/// `HTTPRequestFailed` -> `http_request_failed`: an underscore before an
/// upper-case letter that follows a lower-case letter or digit, or that starts
/// a new word after an acronym.
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

/// The snake_case name with one trailing `_<suffix>` removed (fast_app's rule:
/// `NewUserRegisteredEvent` -> `new_user_registered`, `ChatRoom` -> `chat`).
pub fn strip_suffix(ident: &str, suffix: &str) -> String {
    let snake = snake_case(ident);
    let tail = format!("_{suffix}");
    match snake.strip_suffix(&tail) {
        Some(rest) if !rest.is_empty() => rest.to_string(),
        _ => snake,
    }
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
        ] {
            assert_eq!(strip_suffix(ty, "event"), name, "{ty}");
        }
    }

    #[test]
    fn room_keys() {
        assert_eq!(strip_suffix("ChatRoom", "room"), "chat");
        assert_eq!(strip_suffix("UserRoom", "room"), "user");
        assert_eq!(strip_suffix("Room", "room"), "room");
        assert_eq!(strip_suffix("ChatRoomEvent", "room"), "chat_room_event");
    }
}
