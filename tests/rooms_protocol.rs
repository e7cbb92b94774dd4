//! The join/leave protocol against a real axum + socketioxide server and
//! real Socket.IO clients.
#![deny(warnings)]
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use broadcast_core::join::{Authorization, Handshake, JoinContext, Rooms};
use broadcast_core::{BroadcastEvent, Broadcaster, Room};
use broadcast_test_support::sio_client::{ClientError, Received, SioClient};
use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef};

/// Upper bound for any single wait; never a pass condition.
const T: Duration = Duration::from_secs(10);

struct User {
    id: u64,
}

#[derive(Room)]
#[room(public)]
struct LobbyRoom;

#[derive(Room)]
#[room(authorize = can_join_chat, on_join = chat_joined, on_leave = chat_left)]
struct ChatRoom(u64);

#[derive(Room)]
#[room(authorize = allow_everyone_authenticated)]
struct StaffRoom(u64);

#[derive(Room)]
#[room(namespace = "/admin", authorize = is_admin)]
struct AuditRoom {
    topic: String,
}

#[derive(Room)]
#[room(key = "pair", public)]
struct PairRoom {
    a: u64,
    b: String,
}

/// Users 7 and 8 are members of chat 2; only 7 of chat 1; chat 404 does
/// not exist.
async fn can_join_chat(ctx: &JoinContext, room: &ChatRoom) -> Authorization {
    if room.0 == 404 {
        return Authorization::invalid("chat 404 does not exist");
    }
    let members: &[u64] = match room.0 {
        1 => &[7],
        2 => &[7, 8],
        _ => &[],
    };
    Authorization::allow_if(
        ctx.identity::<User>()
            .is_some_and(|u| members.contains(&u.id)),
    )
}

async fn allow_everyone_authenticated(_: &JoinContext, _: &StaffRoom) -> bool {
    true
}

fn is_admin(ctx: &JoinContext, _: &AuditRoom) -> bool {
    ctx.identity::<User>().is_some_and(|u| u.id == 1)
}

async fn chat_joined(ctx: &JoinContext, room: &ChatRoom) {
    ctx.emit(
        "chat_history",
        &json!({"chat": room.0, "messages": ["hello"]}),
    )
    .ok();
}

static LEFT: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn chat_left(ctx: &JoinContext, room: &ChatRoom) {
    LEFT.lock()
        .unwrap()
        .push(format!("{} {}", ctx.sid(), room.name()));
}

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = ChatRoom(self.chat_id))]
struct MessagePosted {
    chat_id: u64,
    text: String,
}

/// Server-only (neither `public` nor `authorize`): the authenticator puts
/// each user in their own.
#[derive(Room)]
struct InboxRoom {
    user: u64,
}

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = InboxRoom { user: self.user })]
struct InboxMessage {
    user: u64,
    text: String,
}

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = LobbyRoom)]
struct Announcement {
    text: String,
}

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = AuditRoom { topic: self.topic.clone() })]
struct AuditLogged {
    topic: String,
    line: String,
}

async fn authenticate(h: Handshake) -> Result<Option<User>, String> {
    let user = match h.auth().get("token").and_then(Value::as_str) {
        None => return Ok(None),
        Some("t1") => User { id: 1 },
        Some("t7") => User { id: 7 },
        Some("t8") => User { id: 8 },
        Some(_) => return Err("invalid token".into()),
    };
    h.join(&InboxRoom { user: user.id });
    Ok(Some(user))
}

struct Server {
    addr: SocketAddr,
    io: SocketIo,
    broadcaster: Broadcaster,
}

async fn start(rooms: Rooms) -> Server {
    let (layer, io) = SocketIo::new_layer();
    // The app keeps its own connect handler on `/`.
    rooms.ns(&io, "/", async |s: SocketRef| {
        s.on("ping", async |ack: AckSender| {
            ack.send(&"pong").ok();
        });
    });
    let attached = rooms.attach(&io);
    assert_eq!(attached.created, ["/admin"]);
    assert_eq!(attached.existing, ["/"]);
    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    let broadcaster = Broadcaster::socketio(io.clone());
    Server {
        addr,
        io,
        broadcaster,
    }
}

async fn server() -> Server {
    start(Rooms::builder().authenticate(authenticate).build().unwrap()).await
}

async fn client(s: &Server, token: Option<&str>) -> SioClient {
    let auth = token.map(|t| json!({ "token": t }));
    SioClient::connect(s.addr, "/", auth).await.unwrap()
}

/// Emits `event` with `data` and an ack request; returns the ack's payload.
async fn ask(c: &SioClient, ns: &str, event: &str, data: Value) -> Value {
    let mut args = c.emit_with_ack(ns, event, vec![data], T).await.unwrap();
    assert_eq!(args.len(), 1, "{args:?}");
    args.remove(0)
}

/// The next event, which must be named `name`; returns its payload.
async fn expect(c: &mut SioClient, name: &str) -> Value {
    let ev: Received = c.next_event(T).await.unwrap();
    assert_eq!(ev.event, name, "{ev:?}");
    ev.args.into_iter().next().unwrap_or(Value::Null)
}

/// Whether the server has socket `sid` of `ns` in `room`.
fn in_room(io: &SocketIo, ns: &str, room: &str, sid: &str) -> bool {
    io.of(ns)
        .unwrap()
        .within(room.to_owned())
        .sockets()
        .iter()
        .any(|s| s.id.to_string() == sid)
}

fn announce(text: &str) -> Announcement {
    Announcement { text: text.into() }
}

#[tokio::test]
async fn public_room_join_receives_events() {
    let s = server().await;
    let mut c = client(&s, None).await;

    // With an ack: both the ack and the `joined` event arrive.
    let ack = ask(&c, "/", "join_lobby", Value::Null).await;
    assert_eq!(ack, json!({"ok": true, "room": "lobby"}));
    assert_eq!(expect(&mut c, "joined").await, json!({"room": "lobby"}));

    s.broadcaster.broadcast(announce("hi")).await.unwrap();
    assert_eq!(expect(&mut c, "announcement").await, json!({"text": "hi"}));

    // fast_app clients emit without an ack and listen for `joined`.
    let mut d = client(&s, None).await;
    d.emit("/", "join_lobby", vec![]).await.unwrap();
    assert_eq!(expect(&mut d, "joined").await, json!({"room": "lobby"}));
    s.broadcaster.broadcast(announce("both")).await.unwrap();
    assert_eq!(
        expect(&mut c, "announcement").await,
        json!({"text": "both"})
    );
    assert_eq!(
        expect(&mut d, "announcement").await,
        json!({"text": "both"})
    );

    // The app's own handlers on `/` still work.
    assert_eq!(
        c.emit_with_ack("/", "ping", vec![], T).await.unwrap(),
        [json!("pong")]
    );
}

#[tokio::test]
async fn private_room_refuses_the_unauthorized_and_admits_the_authorized() {
    let s = server().await;
    let mut eight = client(&s, Some("t8")).await;
    let sid8 = eight.sid("/").unwrap();
    ask(&eight, "/", "join_lobby", Value::Null).await;
    expect(&mut eight, "joined").await;

    let forbidden = json!({"type": "forbidden", "room": "chat|1"});
    let ack = ask(&eight, "/", "join_chat", json!(1)).await;
    assert_eq!(ack, json!({"ok": false, "error": forbidden}));
    assert_eq!(expect(&mut eight, "error").await, forbidden);
    assert!(!in_room(&s.io, "/", "chat|1", &sid8));

    // Nothing of chat 1 reaches user 8: the lobby event sent after it is
    // the next thing it receives.
    let msg = MessagePosted {
        chat_id: 1,
        text: "secret".into(),
    };
    s.broadcaster.broadcast(msg).await.unwrap();
    s.broadcaster.broadcast(announce("after")).await.unwrap();
    assert_eq!(
        expect(&mut eight, "announcement").await,
        json!({"text": "after"})
    );

    // User 7 is a member: admitted, the on_join hook runs before `joined`.
    let mut seven = client(&s, Some("t7")).await;
    let sid7 = seven.sid("/").unwrap();
    let ack = ask(&seven, "/", "join_chat", json!(1)).await;
    assert_eq!(ack, json!({"ok": true, "room": "chat|1"}));
    assert_eq!(
        expect(&mut seven, "chat_history").await,
        json!({"chat": 1, "messages": ["hello"]})
    );
    assert_eq!(
        expect(&mut seven, "joined").await,
        json!({"room": "chat|1"})
    );
    assert!(in_room(&s.io, "/", "chat|1", &sid7));
    let msg = MessagePosted {
        chat_id: 1,
        text: "for members".into(),
    };
    s.broadcaster.broadcast(msg).await.unwrap();
    assert_eq!(
        expect(&mut seven, "message_posted").await,
        json!({"chat_id": 1, "text": "for members"})
    );

    // User 8 may join chat 2, in the array and object forms too.
    for data in [json!(2), json!([2])] {
        let ack = ask(&eight, "/", "join_chat", data).await;
        assert_eq!(ack, json!({"ok": true, "room": "chat|2"}));
    }
}

#[tokio::test]
async fn anonymous_sockets_only_join_public_rooms() {
    let s = server().await;
    let mut anon = client(&s, None).await;
    let sid = anon.sid("/").unwrap();
    // StaffRoom's authorizer allows everyone, but only authenticated sockets reach it.
    let ack = ask(&anon, "/", "join_staff", json!(5)).await;
    assert_eq!(
        ack["error"],
        json!({"type": "forbidden", "room": "staff|5"})
    );
    assert_eq!(expect(&mut anon, "error").await["type"], "forbidden");
    assert!(!in_room(&s.io, "/", "staff|5", &sid));

    let seven = client(&s, Some("t7")).await;
    let ack = ask(&seven, "/", "join_staff", json!(5)).await;
    assert_eq!(ack, json!({"ok": true, "room": "staff|5"}));

    // A bad token is refused at connect, without the authenticator's
    // reason (tests/rooms_abuse.rs shows an app opting in to it).
    let err = SioClient::connect(s.addr, "/", Some(json!({"token": "nope"})))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::ConnectError { message, .. } if message == "unauthorized"),
        "{err:?}"
    );
}

#[tokio::test]
async fn leave_stops_delivery_and_is_always_acknowledged() {
    let s = server().await;
    let mut seven = client(&s, Some("t7")).await;
    let sid = seven.sid("/").unwrap();
    ask(&seven, "/", "join_lobby", Value::Null).await;
    expect(&mut seven, "joined").await;
    ask(&seven, "/", "join_chat", json!(2)).await;
    expect(&mut seven, "chat_history").await;
    expect(&mut seven, "joined").await;

    let ack = ask(&seven, "/", "leave_chat", json!(2)).await;
    assert_eq!(ack, json!({"ok": true, "room": "chat|2"}));
    assert_eq!(expect(&mut seven, "left").await, json!({"room": "chat|2"}));
    assert!(!in_room(&s.io, "/", "chat|2", &sid));
    assert!(LEFT.lock().unwrap().contains(&format!("{sid} chat|2")));

    s.broadcaster
        .broadcast(MessagePosted {
            chat_id: 2,
            text: "gone".into(),
        })
        .await
        .unwrap();
    s.broadcaster
        .broadcast(announce("still here"))
        .await
        .unwrap();
    assert_eq!(
        expect(&mut seven, "announcement").await,
        json!({"text": "still here"})
    );

    // Leaving a room the socket is not in: an ack, and no `left` event
    // (it would have been sent before the ack).
    let ack = ask(&seven, "/", "leave_chat", json!(2)).await;
    assert_eq!(ack, json!({"ok": true, "room": "chat|2"}));
    let ack = ask(&seven, "/", "leave_chat", json!(1)).await;
    assert_eq!(ack, json!({"ok": true, "room": "chat|1"}));
    assert_eq!(seven.try_next_event(), None);
    assert_eq!(
        LEFT.lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with(&sid))
            .count(),
        1
    );
}

#[tokio::test]
async fn namespace_rooms_are_joined_in_their_namespace() {
    let s = server().await;
    let auth = Some(json!({"token": "t1"}));
    let mut admin = SioClient::connect(s.addr, "/", auth.clone()).await.unwrap();
    let admin_sid = admin.connect_ns("/admin", auth).await.unwrap();

    let ack = ask(&admin, "/admin", "join_audit", json!({"topic": "logins"})).await;
    assert_eq!(ack, json!({"ok": true, "room": "audit|logins"}));
    let joined = admin.next_event(T).await.unwrap();
    assert_eq!(
        (joined.ns.as_str(), joined.event.as_str()),
        ("/admin", "joined")
    );
    assert!(in_room(&s.io, "/admin", "audit|logins", &admin_sid));
    assert!(
        s.io.of("/")
            .unwrap()
            .within("audit|logins")
            .sockets()
            .is_empty()
    );

    let line = AuditLogged {
        topic: "logins".into(),
        line: "7 logged in".into(),
    };
    s.broadcaster.broadcast(line).await.unwrap();
    let ev = admin.next_event(T).await.unwrap();
    assert_eq!(
        (ev.ns.as_str(), ev.event.as_str()),
        ("/admin", "audit_logged")
    );
    assert_eq!(ev.args, [json!({"topic": "logins", "line": "7 logged in"})]);

    // In `/`, the key is answered with where the room lives.
    let ack = ask(&admin, "/", "join_audit", json!({"topic": "logins"})).await;
    assert_eq!(ack["error"]["type"], "validation_error");
    assert!(
        ack["error"]["msg"].as_str().unwrap().contains("/admin"),
        "{ack}"
    );
    let err = admin.next_event(T).await.unwrap();
    assert_eq!((err.ns.as_str(), err.event.as_str()), ("/", "error"));

    // Authorization holds in the namespace too: user 7 is no admin.
    let auth = Some(json!({"token": "t7"}));
    let seven = SioClient::connect(s.addr, "/admin", auth).await.unwrap();
    let ack = ask(&seven, "/admin", "join_audit", json!(["logins"])).await;
    assert_eq!(
        ack["error"],
        json!({"type": "forbidden", "room": "audit|logins"})
    );
}

#[tokio::test]
async fn bad_requests_get_validation_errors() {
    let s = server().await;
    let mut seven = client(&s, Some("t7")).await;
    let sid = seven.sid("/").unwrap();

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "join_chat",
            json!("one"),
            "room `chat`: field `0`: invalid type: string \"one\", expected u64",
        ),
        (
            "join_chat",
            Value::Null,
            "room `chat` expects a value or a one-element array, not nothing",
        ),
        ("join_chat", json!(404), "chat 404 does not exist"),
        ("join_nope", json!(1), "unknown room key `nope`"),
        ("leave_nope", json!(1), "unknown room key `nope`"),
        (
            "join_pair",
            json!({"a": 1}),
            "room `pair`: missing field `b`",
        ),
        (
            "join_pair",
            json!([1, "x|y"]),
            "room `pair`: an identifier value cannot contain `|`",
        ),
        ("join_lobby", json!("x"), "room `lobby` takes no identifier"),
        (
            "join_pair",
            json!([1, "x".repeat(5000)]),
            "over the 4096-byte limit",
        ),
        ("leave_chat", json!("x"), "room `chat`: field `0`"),
    ];
    for (event, data, msg) in cases {
        let ack = ask(&seven, "/", event, data).await;
        assert_eq!(ack["ok"], false, "{event}: {ack}");
        let error = &ack["error"];
        assert_eq!(error["type"], "validation_error", "{event}: {ack}");
        let got = error["msg"].as_str().unwrap();
        assert!(got.contains(msg), "{event}: expected {msg:?} in {got:?}");
        assert_eq!(&expect(&mut seven, "error").await, error);
    }
    let ack = ask(&seven, "/", "join_chat", json!(404)).await;
    assert_eq!(ack["error"]["room"], "chat|404");
    // Only its own id room (every socket is in it) and the inbox the
    // authenticator put it in: no room was joined.
    let mut rooms =
        s.io.of("/")
            .unwrap()
            .get_socket(sid.parse().unwrap())
            .unwrap()
            .rooms();
    rooms.sort();
    let mut expected = vec![sid.clone(), "inbox|7".to_owned()];
    expected.sort();
    assert_eq!(rooms, expected);
}

#[tokio::test]
async fn a_socket_can_be_in_a_limited_number_of_rooms() {
    let rooms = Rooms::builder()
        .authenticate(authenticate)
        .max_rooms_per_socket(3)
        .build()
        .unwrap();
    let s = start(rooms).await;
    let c = client(&s, None).await;
    for i in 0..3 {
        let ack = ask(&c, "/", "join_pair", json!([i, "x"])).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let ack = ask(&c, "/", "join_pair", json!([3, "x"])).await;
    assert_eq!(ack["error"]["type"], "validation_error");
    assert_eq!(
        ack["error"]["msg"],
        "cannot join `pair|3|x`: a socket can be in at most 3 rooms"
    );
    // Re-joining a room it is in is fine; after leaving one, there is room.
    assert_eq!(ask(&c, "/", "join_pair", json!([0, "x"])).await["ok"], true);
    assert_eq!(
        ask(&c, "/", "leave_pair", json!([0, "x"])).await["ok"],
        true
    );
    assert_eq!(ask(&c, "/", "join_pair", json!([3, "x"])).await["ok"], true);
}

#[tokio::test]
async fn server_only_rooms_are_joined_by_the_server_alone() {
    let s = server().await;
    let mut c7 = client(&s, Some("t7")).await;
    let sid7 = c7.sid("/").unwrap();
    // The authenticator put the socket in its inbox before the connect was
    // acknowledged, so an event sent right away arrives.
    assert!(in_room(&s.io, "/", "inbox|7", &sid7));
    s.broadcaster
        .broadcast(InboxMessage {
            user: 7,
            text: "welcome".into(),
        })
        .await
        .unwrap();
    assert_eq!(expect(&mut c7, "inbox_message").await["text"], "welcome");

    // No client joins one, not even the one it is in (the answer does not
    // tell whether it is), nor another user's.
    for (user, room) in [(7, "inbox|7"), (8, "inbox|8")] {
        let forbidden = json!({"type": "forbidden", "room": room});
        let ack = ask(&c7, "/", "join_inbox", json!(user)).await;
        assert_eq!(ack, json!({"ok": false, "error": forbidden}));
        assert_eq!(expect(&mut c7, "error").await, forbidden);
    }
    assert!(!in_room(&s.io, "/", "inbox|8", &sid7));
    let anonymous = client(&s, None).await;
    let ack = ask(&anonymous, "/", "join_inbox", json!(7)).await;
    assert_eq!(ack["error"]["type"], "forbidden");
    let sid = anonymous.sid("/").unwrap();
    assert!(!in_room(&s.io, "/", "inbox|7", &sid));
}
