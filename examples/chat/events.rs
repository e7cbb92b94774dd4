//! The chat's events and rooms: declared once, shared by the server and the
//! worker (`examples/worker.rs`).

use broadcast_core::join::{Authorization, JoinContext};
use broadcast_core::{BroadcastEvent, Room};
use schemars::JsonSchema;
use serde::Serialize;

/// Someone posted in a chat: everyone in the chat's room gets it.
#[derive(Debug, Clone, Serialize, JsonSchema, BroadcastEvent)]
#[broadcast(on = ChatRoom { chat_id: self.chat_id })]
pub struct MessagePosted {
    pub chat_id: u64,
    pub author: String,
    pub text: String,
    /// RFC 3339, UTC.
    pub sent_at: String,
}

/// A private notification for one user.
#[derive(Debug, Clone, Serialize, JsonSchema, BroadcastEvent)]
#[broadcast(on = UserRoom { name: self.user.clone() })]
pub struct UserNotified {
    pub user: String,
    pub text: String,
}

/// A chat's room: `chat|<id>`. Members only for private chats. It tracks
/// who is in it (presence): join acks list the members, and the others are
/// told when someone comes or goes.
#[derive(Debug, Clone, Room)]
#[room(authorize = can_join_chat, history(size = 1000, ttl = "10m"), presence)]
pub struct ChatRoom {
    pub chat_id: u64,
}

/// A user's private room: `user|<name>`. Every socket is put in its own at
/// connect; a client may (re)join its own only.
#[derive(Debug, Clone, Room)]
#[room(authorize = is_own_room)]
pub struct UserRoom {
    pub name: String,
}

/// The authenticated user of a connection (from `auth: {"user": ...}`).
#[derive(Debug, Clone)]
pub struct User(pub String);

/// A chat in the in-memory store.
pub struct Chat {
    pub id: u64,
    pub name: &'static str,
    /// `None`: public.
    pub members: Option<&'static [&'static str]>,
}

/// The demo's chats: 1 `general` is public, 2 `staff` is for alice and carol.
pub const CHATS: &[Chat] = &[
    Chat {
        id: 1,
        name: "general",
        members: None,
    },
    Chat {
        id: 2,
        name: "staff",
        members: Some(&["alice", "carol"]),
    },
];

pub fn chat(id: u64) -> Option<&'static Chat> {
    CHATS.iter().find(|c| c.id == id)
}

/// Whether `user` may read and post in `chat`.
pub fn may_access(chat: &Chat, user: &str) -> bool {
    chat.members.is_none_or(|m| m.contains(&user))
}

async fn can_join_chat(ctx: &JoinContext, room: &ChatRoom) -> Authorization {
    let Some(chat) = chat(room.chat_id) else {
        return Authorization::invalid(format!("there is no chat {}", room.chat_id));
    };
    let user = ctx.identity::<User>().map(|u| u.0.as_str()).unwrap_or("");
    Authorization::allow_if(may_access(chat, user))
}

async fn is_own_room(ctx: &JoinContext, room: &UserRoom) -> bool {
    ctx.identity::<User>().is_some_and(|u| u.0 == room.name)
}

/// A user name: 1 to 32 ASCII letters or digits.
pub fn valid_user_name(name: &str) -> bool {
    (1..=32).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Now as RFC 3339 UTC with seconds, without a date-time dependency.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
