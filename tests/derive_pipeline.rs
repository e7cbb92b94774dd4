//! The derive and the pipeline, checked through the recording fake.
#![deny(warnings)]
#![forbid(unsafe_code)]

use broadcast_core::testing::FakeBroadcaster;
use broadcast_core::{
    BroadcastError, BroadcastEvent, Outcome, PayloadError, Resource, Room, SkipReason,
};
use serde::Serialize;
use serde_json::json;
use std::borrow::Cow;

#[derive(Serialize, Clone)]
struct Chat {
    id: u64,
    owner_id: u64,
    title: String,
}

struct ChatRoom(u64);
impl Room for ChatRoom {
    fn name(&self) -> Cow<'static, str> {
        format!("chat|{}", self.0).into()
    }
}

struct AdminRoom;
impl Room for AdminRoom {
    fn name(&self) -> Cow<'static, str> {
        "admins".into()
    }
    fn namespace(&self) -> Cow<'static, str> {
        "/admin".into()
    }
}

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = "chat|{chat.id}")]
struct UpdateChat {
    chat: Chat,
}

#[derive(Serialize, BroadcastEvent)]
struct NewUserRegisteredEvent {
    user: String,
}

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = ["chat|{chat.id}", "user|{chat.owner_id}", ChatRoom(self.chat.id), AdminRoom])]
struct ChatDeleted {
    chat: Chat,
}

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = ChatRoom(self.chat_id), name = "chat.typing", namespace = "/live")]
struct Typing {
    chat_id: u64,
    who: String,
}

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = "lobby", when = Self::is_public)]
struct Announcement {
    public: bool,
    text: String,
}
impl Announcement {
    fn is_public(&self) -> bool {
        self.public
    }
}

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = "lobby", when = allowed_async)]
struct GuardedAsync {
    allow: bool,
}
async fn allowed_async(e: &GuardedAsync) -> bool {
    tokio::task::yield_now().await;
    e.allow
}

#[derive(Serialize)]
struct ChatSummary {
    id: u64,
    title_upper: String,
}

fn summary(e: &ChatRenamed) -> ChatSummary {
    ChatSummary {
        id: e.chat.id,
        title_upper: e.chat.title.to_uppercase(),
    }
}

#[derive(BroadcastEvent)]
#[broadcast(on = "chat|{chat.id}", as = summary)]
struct ChatRenamed {
    chat: Chat,
}

struct ChatResource<'a>(&'a Chat);

#[derive(Serialize)]
struct ChatJson {
    id: u64,
    members: Vec<String>,
}

impl Resource for ChatResource<'_> {
    type Output = ChatJson;
    async fn dump(&self) -> Result<ChatJson, PayloadError> {
        tokio::task::yield_now().await;
        if self.0.title.is_empty() {
            return Err(PayloadError::msg(format!(
                "chat {} has no title",
                self.0.id
            )));
        }
        Ok(ChatJson {
            id: self.0.id,
            members: vec!["alice".into(), "carol".into()],
        })
    }
}

#[derive(BroadcastEvent)]
#[broadcast(on = "chat|{chat.id}", as = ChatResource(&self.chat))]
struct ChatLoaded {
    chat: Chat,
}

async fn load_title(e: &TitleAsync) -> String {
    tokio::task::yield_now().await;
    format!("title of {}", e.id)
}

#[derive(BroadcastEvent)]
#[broadcast(on = "chat|{id}", as = json!({"id": self.id, "title": load_title(self).await}))]
struct TitleAsync {
    id: u64,
}

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = "t|{0}|{1}")]
struct Tuple(u64, &'static str);

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = self.rooms.clone())]
struct Dynamic {
    rooms: Vec<String>,
}

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = "big")]
struct Big {
    blob: String,
}

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = "x")]
struct Huge {
    n: u128,
}

fn chat() -> Chat {
    Chat {
        id: 42,
        owner_id: 7,
        title: "general".into(),
    }
}

#[test]
fn default_names_follow_fast_app() {
    assert_eq!(UpdateChat::NAME, "update_chat");
    assert_eq!(NewUserRegisteredEvent::NAME, "new_user_registered");
    assert_eq!(Typing::NAME, "chat.typing");
    assert_eq!(Typing::NAMESPACE, "/live");
    assert_eq!(UpdateChat::NAMESPACE, "/");
}

#[tokio::test]
async fn template_targets_and_self_payload() {
    let fake = FakeBroadcaster::new();
    let out = fake
        .broadcaster()
        .broadcast(UpdateChat { chat: chat() })
        .await
        .unwrap();
    assert!(out.is_delivered());
    fake.assert_broadcast::<UpdateChat>()
        .to_rooms(&["chat|42"])
        .with_payload(json!({"chat": {"id": 42, "owner_id": 7, "title": "general"}}));
}

#[tokio::test]
async fn default_room_is_the_event_name() {
    let fake = FakeBroadcaster::new();
    fake.broadcaster()
        .broadcast(NewUserRegisteredEvent { user: "bob".into() })
        .await
        .unwrap();
    fake.assert_broadcast::<NewUserRegisteredEvent>()
        .to_room_in("/", "new_user_registered");
}

#[tokio::test]
async fn lists_mix_templates_rooms_and_namespaces_deduplicated() {
    let fake = FakeBroadcaster::new();
    let out = fake
        .broadcaster()
        .broadcast(ChatDeleted { chat: chat() })
        .await
        .unwrap();
    let targets = out.targets().unwrap();
    // chat|42 named twice (template and typed room) counts once.
    assert_eq!(targets.len(), 3);
    fake.assert_broadcast::<ChatDeleted>()
        .to_room_in("/", "chat|42")
        .to_room_in("/", "user|7")
        .to_room_in("/admin", "admins");
}

#[tokio::test]
async fn typed_room_keeps_its_namespace_over_the_events() {
    let fake = FakeBroadcaster::new();
    fake.broadcaster()
        .broadcast(Typing {
            chat_id: 1,
            who: "a".into(),
        })
        .await
        .unwrap();
    // ChatRoom lives in `/`; the event's `/live` applies to plain strings only.
    fake.assert_broadcast::<Typing>().to_room_in("/", "chat|1");
}

#[tokio::test]
async fn when_false_sends_nothing_sync_and_async() {
    let fake = FakeBroadcaster::new();
    let b = fake.broadcaster();
    let out = b
        .broadcast(Announcement {
            public: false,
            text: "x".into(),
        })
        .await
        .unwrap();
    assert_eq!(out, Outcome::Skipped(SkipReason::When));
    let out = b.broadcast(GuardedAsync { allow: false }).await.unwrap();
    assert_eq!(out, Outcome::Skipped(SkipReason::When));
    fake.assert_nothing_broadcast();
    b.broadcast(GuardedAsync { allow: true }).await.unwrap();
    b.broadcast(Announcement {
        public: true,
        text: "x".into(),
    })
    .await
    .unwrap();
    fake.assert_broadcast_times::<GuardedAsync>(1);
    fake.assert_broadcast_times::<Announcement>(1);
    assert_eq!(b.stats().skipped, 2);
    assert_eq!(b.stats().delivered, 2);
}

#[tokio::test]
async fn as_shapes_the_payload() {
    let fake = FakeBroadcaster::new();
    let b = fake.broadcaster();
    b.broadcast(ChatRenamed { chat: chat() }).await.unwrap();
    fake.assert_broadcast::<ChatRenamed>()
        .with_payload(json!({"id": 42, "title_upper": "GENERAL"}));
    b.broadcast(ChatLoaded { chat: chat() }).await.unwrap();
    fake.assert_broadcast::<ChatLoaded>()
        .with_payload(json!({"id": 42, "members": ["alice", "carol"]}));
    b.broadcast(TitleAsync { id: 3 }).await.unwrap();
    fake.assert_broadcast::<TitleAsync>()
        .to_room("chat|3")
        .with_payload_containing(json!({"title": "title of 3"}));
}

#[tokio::test]
async fn failing_resource_names_the_event() {
    let fake = FakeBroadcaster::new();
    let mut c = chat();
    c.title.clear();
    let err = fake
        .broadcaster()
        .broadcast(ChatLoaded { chat: c })
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        BroadcastError::Payload {
            event: "chat_loaded",
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "event `chat_loaded`: building the payload failed: chat 42 has no title"
    );
    fake.assert_nothing_broadcast();
}

#[tokio::test]
async fn tuple_struct_templates() {
    let fake = FakeBroadcaster::new();
    fake.broadcaster().broadcast(Tuple(5, "x")).await.unwrap();
    fake.assert_broadcast::<Tuple>().to_rooms(&["t|5|x"]);
}

#[tokio::test]
async fn bad_dynamic_targets_are_errors_not_panics() {
    let fake = FakeBroadcaster::new();
    let b = fake.broadcaster();
    for (rooms, want) in [
        (vec!["".to_string()], "the room name is empty"),
        (vec!["a\u{0}b".to_string()], "control character"),
        (vec!["r".repeat(300)], "300 bytes"),
    ] {
        let err = b.broadcast(Dynamic { rooms }).await.unwrap_err();
        assert!(
            matches!(
                err,
                BroadcastError::InvalidTarget {
                    event: "dynamic",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains(want), "{err}");
    }
    let out = b.broadcast(Dynamic { rooms: vec![] }).await.unwrap();
    assert_eq!(out, Outcome::Skipped(SkipReason::NoTargets));
    fake.assert_nothing_broadcast();
    assert_eq!(b.stats().failed, 3);
}

#[tokio::test]
async fn bad_except_is_an_error() {
    let fake = FakeBroadcaster::new();
    let err = fake
        .broadcaster()
        .broadcast(UpdateChat { chat: chat() })
        .except_socket_id("")
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        BroadcastError::InvalidExceptSocket {
            event: "update_chat",
            ..
        }
    ));
}

#[tokio::test]
async fn payload_size_limit() {
    let fake = FakeBroadcaster::new();
    let big = Big {
        blob: "x".repeat(2 * 1024 * 1024),
    };
    let err = fake.broadcaster().broadcast(big).await.unwrap_err();
    match err {
        BroadcastError::PayloadTooLarge { event, size, limit } => {
            assert_eq!(event, "big");
            assert!(size > 2 * 1024 * 1024);
            assert_eq!(limit, 1024 * 1024);
        }
        other => panic!("unexpected {other}"),
    }
    let small = FakeBroadcaster::with_max_payload_bytes(12).broadcaster();
    // `{"blob":"x"}` is exactly 12 bytes: at the limit is fine, one more is not.
    assert!(small.broadcast(Big { blob: "x".into() }).await.is_ok());
    assert!(small.broadcast(Big { blob: "xx".into() }).await.is_err());
}

#[tokio::test]
async fn u128_serializes_through_serde_json() {
    // serde_json handles u128 (socketioxide's own encoder would refuse it);
    // we serialize first, so the transport only copies bytes.
    let fake = FakeBroadcaster::new();
    fake.broadcaster()
        .broadcast(Huge { n: u128::MAX })
        .await
        .unwrap();
    assert_eq!(
        fake.assert_broadcast::<Huge>().raw,
        format!(r#"{{"n":{}}}"#, u128::MAX)
    );
}

#[tokio::test]
async fn global_broadcast_without_install_is_an_error_and_scopes_work() {
    // This test binary never calls `install`.
    let err = broadcast_core::broadcast(UpdateChat { chat: chat() })
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        BroadcastError::NotInstalled {
            event: "update_chat"
        }
    ));
    let fake = FakeBroadcaster::new();
    broadcast_core::with_broadcaster(fake.broadcaster(), async {
        broadcast_core::broadcast(UpdateChat { chat: chat() })
            .await
            .unwrap();
        // Spawned tasks are outside the scope.
        let spawned =
            tokio::spawn(broadcast_core::broadcast(UpdateChat { chat: chat() }).into_future());
        assert!(spawned.await.unwrap().is_err());
    })
    .await;
    fake.assert_broadcast_times::<UpdateChat>(1);
}

#[tokio::test]
async fn broadcasts_run_from_spawned_tasks() {
    let fake = FakeBroadcaster::new();
    let b = fake.broadcaster();
    let handles: Vec<_> = (0..10)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move { b.broadcast(Tuple(i, "s")).await })
        })
        .collect();
    for h in handles {
        h.await.unwrap().unwrap();
    }
    fake.assert_broadcast_times::<Tuple>(10);
}

use std::future::IntoFuture as _;
