//! `#[derive(Room)]` without a server: names, keys, parsing, authorization,
//! hooks and registration.
#![deny(warnings)]
#![forbid(unsafe_code)]

use std::sync::Mutex;

use broadcast_core::join::{
    Access, Authorization, JoinContext, JoinableRoom, RoomDataError, Rooms,
};
use broadcast_core::testing::FakeBroadcaster;
use broadcast_core::{BroadcastEvent, Room, registry};
use serde_json::json;

struct User {
    id: u64,
    chats: Vec<u64>,
}

#[derive(Debug, PartialEq, Room)]
#[room(authorize = can_join_chat, on_join = chat_joined, on_leave = Self::left)]
struct ChatRoom(u64);

static HOOKS: Mutex<Vec<String>> = Mutex::new(Vec::new());

async fn can_join_chat(ctx: &JoinContext, room: &ChatRoom) -> Authorization {
    if room.0 == 0 {
        return Authorization::invalid("chat 0 does not exist");
    }
    Authorization::allow_if(
        ctx.identity::<User>()
            .is_some_and(|u| u.chats.contains(&room.0)),
    )
}

fn chat_joined(ctx: &JoinContext, room: &ChatRoom) {
    let who = ctx.identity::<User>().map_or(0, |u| u.id);
    HOOKS
        .lock()
        .unwrap()
        .push(format!("{who} joined {}", room.name()));
}

impl ChatRoom {
    async fn left(_: &JoinContext, room: &ChatRoom) {
        HOOKS.lock().unwrap().push(format!("left {}", room.name()));
    }
}

#[derive(Debug, PartialEq, Room)]
#[room(key = "pair", namespace = "/games", public)]
struct PairOfThings {
    a: u64,
    b: String,
}

#[derive(Debug, PartialEq, Room)]
#[room(public)]
struct LobbyRoom;

#[derive(Debug, PartialEq, Room)]
#[room(authorize = is_admin)]
struct UserRoom {
    user_id: String,
}

fn is_admin(ctx: &JoinContext, _: &UserRoom) -> bool {
    ctx.identity::<User>().is_some_and(|u| u.id == 1)
}

#[derive(Debug, PartialEq, Room)]
#[room(authorize = flaky)]
struct FlakyRoom(bool);

async fn flaky(_: &JoinContext, room: &FlakyRoom) -> Result<bool, String> {
    if room.0 {
        Ok(true)
    } else {
        Err("database is down".into())
    }
}

mod renamed {
    pub use broadcast_core as core_again;
}

#[derive(Room)]
#[room(crate = "renamed::core_again", public, key = "elsewhere")]
struct ElsewhereRoom(String);

#[derive(serde::Serialize, BroadcastEvent)]
#[broadcast(on = ChatRoom(self.chat_id))]
struct MessagePosted {
    chat_id: u64,
}

#[derive(serde::Serialize, BroadcastEvent)]
#[broadcast(on = PairOfThings { a: self.a, b: self.b.clone() })]
struct PairChanged {
    a: u64,
    b: String,
}

#[test]
fn names_are_key_and_fields_joined_by_pipes() {
    assert_eq!(ChatRoom(123).name(), "chat|123");
    assert_eq!(ChatRoom(123).namespace(), "/");
    assert_eq!(
        PairOfThings {
            a: 1,
            b: "x".into()
        }
        .name(),
        "pair|1|x"
    );
    assert_eq!(
        PairOfThings {
            a: 1,
            b: "x".into()
        }
        .namespace(),
        "/games"
    );
    assert_eq!(LobbyRoom.name(), "lobby");
    assert_eq!(
        UserRoom {
            user_id: "u7".into()
        }
        .name(),
        "user|u7"
    );
    assert_eq!(ElsewhereRoom("e".into()).name(), "elsewhere|e");
}

#[test]
fn constants() {
    assert_eq!(ChatRoom::KEY, "chat");
    assert_eq!(ChatRoom::FIELDS, ["0"]);
    assert_eq!(ChatRoom::ACCESS, Access::Authorized);
    assert_eq!(PairOfThings::KEY, "pair");
    assert_eq!(PairOfThings::NAMESPACE, "/games");
    assert_eq!(PairOfThings::FIELDS, ["a", "b"]);
    assert_eq!(PairOfThings::ACCESS, Access::Public);
    assert_eq!(LobbyRoom::FIELDS, [] as [&str; 0]);
}

#[tokio::test]
async fn events_target_the_same_names_as_rooms() {
    let fake = FakeBroadcaster::new();
    let b = fake.broadcaster();
    b.broadcast(MessagePosted { chat_id: 42 }).await.unwrap();
    b.broadcast(PairChanged {
        a: 1,
        b: "x".into(),
    })
    .await
    .unwrap();
    fake.assert_broadcast::<MessagePosted>()
        .to_room(&ChatRoom(42).name());
    let pair = fake.assert_broadcast::<PairChanged>();
    pair.to_room(
        &PairOfThings {
            a: 1,
            b: "x".into(),
        }
        .name(),
    );
    assert!(pair.targets.contains("/games", "pair|1|x"));
}

#[test]
fn parses_scalars_arrays_and_objects() {
    assert_eq!(ChatRoom::from_join_data(&json!(7)), Ok(ChatRoom(7)));
    assert_eq!(ChatRoom::from_join_data(&json!([7])), Ok(ChatRoom(7)));
    let pair = PairOfThings {
        a: 1,
        b: "x".into(),
    };
    assert_eq!(PairOfThings::from_join_data(&json!([1, "x"])), Ok(pair));
    let pair = PairOfThings {
        a: 1,
        b: "x".into(),
    };
    assert_eq!(
        PairOfThings::from_join_data(&json!({"b": "x", "a": 1})),
        Ok(pair)
    );
    assert_eq!(
        UserRoom::from_join_data(&json!("u1")),
        Ok(UserRoom {
            user_id: "u1".into()
        })
    );
    assert_eq!(
        UserRoom::from_join_data(&json!({"user_id": "u1"})),
        Ok(UserRoom {
            user_id: "u1".into()
        })
    );
    assert_eq!(LobbyRoom::from_join_data(&json!(null)), Ok(LobbyRoom));
}

#[test]
fn parse_errors_say_what_was_expected() {
    let e = ChatRoom::from_join_data(&json!("seven")).unwrap_err();
    assert!(
        matches!(
            e,
            RoomDataError::Field {
                key: "chat",
                field: "0",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("expected u64"), "{e}");

    let e = PairOfThings::from_join_data(&json!({"a": 1})).unwrap_err();
    assert_eq!(
        e,
        RoomDataError::MissingField {
            key: "pair",
            field: "b"
        }
    );

    let e = PairOfThings::from_join_data(&json!([1])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "room `pair` expects 2 value(s) [a, b], got 1"
    );

    let e = PairOfThings::from_join_data(&json!({"a": 1, "b": "x", "admin": true})).unwrap_err();
    assert!(
        matches!(e, RoomDataError::UnknownField { ref field, .. } if field == "admin"),
        "{e}"
    );

    let e = LobbyRoom::from_join_data(&json!(3)).unwrap_err();
    assert!(
        matches!(e, RoomDataError::NotEmpty { key: "lobby", .. }),
        "{e}"
    );
}

#[tokio::test]
async fn authorizers_and_hooks() {
    let member = JoinContext::new("/").with_identity(User {
        id: 7,
        chats: vec![42],
    });
    let anonymous = JoinContext::new("/");
    assert_eq!(
        ChatRoom::authorize(&member, &ChatRoom(42)).await,
        Authorization::Allow
    );
    assert_eq!(
        ChatRoom::authorize(&member, &ChatRoom(43)).await,
        Authorization::Forbid
    );
    assert_eq!(
        ChatRoom::authorize(&anonymous, &ChatRoom(42)).await,
        Authorization::Forbid
    );
    assert_eq!(
        ChatRoom::authorize(&member, &ChatRoom(0)).await,
        Authorization::Invalid("chat 0 does not exist".into())
    );
    // A sync authorizer returning bool.
    let admin = JoinContext::new("/").with_identity(User {
        id: 1,
        chats: vec![],
    });
    let room = UserRoom {
        user_id: "x".into(),
    };
    assert_eq!(
        UserRoom::authorize(&admin, &room).await,
        Authorization::Allow
    );
    assert_eq!(
        UserRoom::authorize(&member, &room).await,
        Authorization::Forbid
    );
    // An authorizer error denies.
    assert_eq!(
        FlakyRoom::authorize(&member, &FlakyRoom(true)).await,
        Authorization::Allow
    );
    assert_eq!(
        FlakyRoom::authorize(&member, &FlakyRoom(false)).await,
        Authorization::Forbid
    );
    // Public rooms let anyone in.
    assert_eq!(
        LobbyRoom::authorize(&anonymous, &LobbyRoom).await,
        Authorization::Allow
    );

    ChatRoom::on_join(&member, &ChatRoom(42)).await;
    ChatRoom::on_leave(&member, &ChatRoom(42)).await;
    // Rooms without hooks do nothing.
    LobbyRoom::on_join(&member, &LobbyRoom).await;
    assert_eq!(*HOOKS.lock().unwrap(), ["7 joined chat|42", "left chat|42"]);
}

#[test]
fn rooms_are_registered_and_listed() {
    let chat = registry::rooms().find(|r| r.key == "chat").unwrap();
    assert_eq!(chat.type_name, "ChatRoom");
    assert_eq!(chat.namespace, "/");
    assert_eq!(chat.fields, ["0"]);
    assert_eq!(chat.access, Access::Authorized);
    assert!(chat.module_path.ends_with("rooms_derive"));
    let pair = registry::rooms().find(|r| r.key == "pair").unwrap();
    assert_eq!(
        (pair.namespace, pair.fields, pair.access),
        ("/games", &["a", "b"][..], Access::Public)
    );
    registry::validate().unwrap();

    let listing = registry::listing();
    // Events that target a typed room show the room's names, not the Rust
    // expression that builds it.
    let event_line = |name: &str| {
        listing
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap()
            .to_owned()
    };
    assert!(
        event_line("message_posted ").contains("chat|{0}"),
        "{listing}"
    );
    assert!(
        event_line("pair_changed ").contains("pair|{a}|{b}")
            && !event_line("pair_changed ").contains("self.b.clone()"),
        "{listing}"
    );
    let chat_line = listing
        .lines()
        .find(|l| l.trim_start().starts_with("chat "))
        .unwrap();
    assert!(chat_line.contains("authorized"), "{listing}");
    assert!(chat_line.contains("message_posted"), "{listing}");
    let pair_line = listing
        .lines()
        .find(|l| l.trim_start().starts_with("pair "))
        .unwrap();
    assert!(
        pair_line.contains("public") && pair_line.contains("pair|{a}|{b}"),
        "{listing}"
    );

    let rooms = Rooms::builder().build().unwrap();
    assert_eq!(rooms.namespaces().collect::<Vec<_>>(), ["/", "/games"]);
    let keys: Vec<_> = rooms.rooms_in("/").map(|e| e.key).collect();
    assert_eq!(keys, ["chat", "elsewhere", "flaky", "lobby", "user"]);
}
