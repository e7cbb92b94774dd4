//! Derived events delivered in-process through a real socketioxide server to
//! real Socket.IO clients on loopback.

use std::time::Duration;

use broadcast_core::{BroadcastError, BroadcastEvent, Broadcaster, TransportError};
use broadcast_test_support::server::TestServer;
use broadcast_test_support::sio_client::SioClient;
use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use socketioxide::handler::ConnectHandler;

const WAIT: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched; long enough for a loopback emit.
const QUIET: Duration = Duration::from_millis(300);

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = "chat|{chat_id}")]
struct UpdateChat {
    chat_id: u64,
    title: String,
}

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = ["chat|{chat_id}", "user|{owner}"])]
struct ChatPinned {
    chat_id: u64,
    owner: u64,
}

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = "chat|{chat_id}", when = Self::visible)]
struct Whisper {
    chat_id: u64,
    visible: bool,
}
impl Whisper {
    fn visible(&self) -> bool {
        self.visible
    }
}

#[derive(Serialize)]
struct Summary {
    id: u64,
    headline: String,
}

#[derive(BroadcastEvent)]
#[broadcast(on = "chat|{chat_id}", as = Summary { id: self.chat_id, headline: self.title.to_uppercase() })]
struct ChatRenamed {
    chat_id: u64,
    title: String,
}

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = "chat|{chat_id}", namespace = "/admin")]
struct AuditLogged {
    chat_id: u64,
}

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = "r", namespace = "/missing")]
struct Nowhere {
    x: u8,
}

/// Joins the rooms named in the client's `auth` (`{"rooms": [...]}`) from a
/// connect middleware, which socketioxide runs before acknowledging the
/// connect: the client is in its rooms as soon as `connect` returns.
async fn join_from_auth(
    s: SocketRef,
    socketioxide::extract::Data(auth): socketioxide::extract::Data<Value>,
) -> Result<(), std::convert::Infallible> {
    let rooms: Vec<String> = auth["rooms"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    s.join(rooms);
    Ok(())
}

async fn server() -> (TestServer, SocketIo) {
    let (layer, io) = SocketIo::new_layer();
    io.ns("/", (async |_: SocketRef| {}).with(join_from_auth));
    io.ns("/admin", (async |_: SocketRef| {}).with(join_from_auth));
    (TestServer::serve(layer).await.unwrap(), io)
}

async fn client(srv: &TestServer, ns: &str, rooms: &[&str]) -> SioClient {
    SioClient::connect(srv.addr, ns, Some(json!({ "rooms": rooms })))
        .await
        .unwrap()
}

#[tokio::test]
async fn event_reaches_exactly_its_rooms_in_its_namespace() {
    let (srv, io) = server().await;
    let mut in_room = client(&srv, "/", &["chat|1"]).await;
    let mut also_in_room = client(&srv, "/", &["chat|1", "other"]).await;
    let mut other_room = client(&srv, "/", &["chat|2"]).await;
    let mut other_ns = client(&srv, "/admin", &["chat|1"]).await;
    let mut no_room = client(&srv, "/", &[]).await;

    let b = Broadcaster::socketio(io);
    let out = b
        .broadcast(UpdateChat {
            chat_id: 1,
            title: "hello".into(),
        })
        .await
        .unwrap();
    assert_eq!(out.targets().unwrap().room_names(), ["chat|1"]);

    for c in [&mut in_room, &mut also_in_room] {
        let got = c.next_event(WAIT).await.unwrap();
        assert_eq!((got.ns.as_str(), got.event.as_str()), ("/", "update_chat"));
        assert_eq!(got.args, [json!({"chat_id": 1, "title": "hello"})]);
    }
    for c in [&mut other_room, &mut other_ns, &mut no_room] {
        c.expect_silence(QUIET).await.unwrap();
    }
}

#[tokio::test]
async fn when_false_sends_nothing() {
    let (srv, io) = server().await;
    let mut c = client(&srv, "/", &["chat|1"]).await;
    let b = Broadcaster::socketio(io);
    b.broadcast(Whisper {
        chat_id: 1,
        visible: false,
    })
    .await
    .unwrap();
    c.expect_silence(QUIET).await.unwrap();
    // The same event with `when` true does arrive: the silence above meant something.
    b.broadcast(Whisper {
        chat_id: 1,
        visible: true,
    })
    .await
    .unwrap();
    let got = c.next_event(WAIT).await.unwrap();
    assert_eq!(got.args, [json!({"chat_id": 1, "visible": true})]);
}

#[tokio::test]
async fn as_shapes_the_payload() {
    let (srv, io) = server().await;
    let mut c = client(&srv, "/", &["chat|3"]).await;
    Broadcaster::socketio(io)
        .broadcast(ChatRenamed {
            chat_id: 3,
            title: "news".into(),
        })
        .await
        .unwrap();
    let got = c.next_event(WAIT).await.unwrap();
    assert_eq!(got.event, "chat_renamed");
    assert_eq!(got.args, [json!({"id": 3, "headline": "NEWS"})]);
}

#[tokio::test]
async fn a_socket_in_two_targeted_rooms_gets_one_copy() {
    let (srv, io) = server().await;
    let mut both = client(&srv, "/", &["chat|1", "user|7"]).await;
    let mut owner_only = client(&srv, "/", &["user|7"]).await;
    let b = Broadcaster::socketio(io);
    b.broadcast(ChatPinned {
        chat_id: 1,
        owner: 7,
    })
    .await
    .unwrap();
    assert_eq!(both.next_event(WAIT).await.unwrap().event, "chat_pinned");
    assert_eq!(
        owner_only.next_event(WAIT).await.unwrap().event,
        "chat_pinned"
    );
    // A marker event proves the channel is live; no second copy came before it.
    b.broadcast(UpdateChat {
        chat_id: 1,
        title: "marker".into(),
    })
    .await
    .unwrap();
    assert_eq!(both.next_event(WAIT).await.unwrap().event, "update_chat");
    both.expect_silence(QUIET).await.unwrap();
}

#[tokio::test]
async fn except_skips_the_sender() {
    let (srv, io) = server().await;
    let mut sender = client(&srv, "/", &["chat|1"]).await;
    let mut other = client(&srv, "/", &["chat|1"]).await;
    let sid: socketioxide::socket::Sid = sender.sid("/").unwrap().parse().unwrap();
    let b = Broadcaster::socketio(io);
    b.broadcast(UpdateChat {
        chat_id: 1,
        title: "t".into(),
    })
    .except(sid)
    .await
    .unwrap();
    assert_eq!(other.next_event(WAIT).await.unwrap().event, "update_chat");
    sender.expect_silence(QUIET).await.unwrap();
    // By id as text (an `X-Socket-ID` header) and by room.
    b.broadcast(UpdateChat {
        chat_id: 1,
        title: "t".into(),
    })
    .except_socket_id(other.sid("/").unwrap())
    .await
    .unwrap();
    assert_eq!(sender.next_event(WAIT).await.unwrap().event, "update_chat");
    other.expect_silence(QUIET).await.unwrap();
    b.broadcast(UpdateChat {
        chat_id: 1,
        title: "t".into(),
    })
    .except_rooms(["chat|1"])
    .await
    .unwrap();
    sender.expect_silence(QUIET).await.unwrap();
}

#[tokio::test]
async fn namespaced_event_goes_to_its_namespace_only() {
    let (srv, io) = server().await;
    let mut admin = client(&srv, "/admin", &["chat|5"]).await;
    let mut root = client(&srv, "/", &["chat|5"]).await;
    Broadcaster::socketio(io)
        .broadcast(AuditLogged { chat_id: 5 })
        .await
        .unwrap();
    let got = admin.next_event(WAIT).await.unwrap();
    assert_eq!(
        (got.ns.as_str(), got.event.as_str()),
        ("/admin", "audit_logged")
    );
    root.expect_silence(QUIET).await.unwrap();
}

#[tokio::test]
async fn unknown_namespace_is_a_typed_error() {
    let (_srv, io) = server().await;
    let err = Broadcaster::socketio(io)
        .broadcast(Nowhere { x: 1 })
        .await
        .unwrap_err();
    match &err {
        BroadcastError::Transport {
            event,
            namespace,
            source,
        } => {
            assert_eq!(*event, "nowhere");
            assert!(namespace.contains("/missing"), "{namespace}");
            assert!(matches!(source, TransportError::UnknownNamespace(ns) if ns == "/missing"));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("nowhere"), "{err}");
}

#[tokio::test]
async fn installed_broadcaster_serves_broadcast_from_spawned_tasks() {
    let (srv, io) = server().await;
    let mut c = client(&srv, "/", &["chat|9"]).await;
    broadcast_core::install(Broadcaster::socketio(io)).unwrap();
    let task = tokio::spawn(async {
        broadcast_core::broadcast(UpdateChat {
            chat_id: 9,
            title: "from a task".into(),
        })
        .await
    });
    assert!(task.await.unwrap().unwrap().is_delivered());
    let got = c.next_event(WAIT).await.unwrap();
    assert_eq!(got.args[0]["title"], "from a task");
}

#[tokio::test]
async fn except_several_sockets_through_their_id_rooms() {
    // The rooms middleware puts every socket in its own id room, so any
    // number of sockets can be skipped, wherever they are connected.
    let rooms = broadcast_core::join::Rooms::builder().build().unwrap();
    let (layer, io) = SocketIo::new_layer();
    rooms.ns(&io, "/", (async |_: SocketRef| {}).with(join_from_auth));
    let srv = TestServer::serve(layer).await.unwrap();
    let mut a = client(&srv, "/", &["chat|1"]).await;
    let mut b = client(&srv, "/", &["chat|1"]).await;
    let mut c = client(&srv, "/", &["chat|1"]).await;
    let sid = |x: &SioClient| -> socketioxide::socket::Sid { x.sid("/").unwrap().parse().unwrap() };
    Broadcaster::socketio(io)
        .broadcast(UpdateChat {
            chat_id: 1,
            title: "t".into(),
        })
        .except(sid(&a))
        .except(sid(&b))
        .await
        .unwrap();
    assert_eq!(c.next_event(WAIT).await.unwrap().event, "update_chat");
    a.expect_silence(QUIET).await.unwrap();
    b.expect_silence(QUIET).await.unwrap();
}
