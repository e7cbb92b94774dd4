//! Abuse limits of the join protocol, with real clients on loopback: a
//! flood of joins is answered `rate_limited` and never runs the authorizer
//! beyond the socket's token bucket; a client that sends but never reads
//! holds a bounded number of server tasks and has its replies dropped, not
//! retried; a refused connect says `unauthorized` unless the app opted in.
//!
//! Every assertion is on counts; the waits are upper bounds, never pass
//! conditions.
#![deny(warnings)]
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use broadcast_core::Room;
use broadcast_core::join::{
    DEFAULT_JOIN_BURST, DEFAULT_JOINS_PER_SECOND, DEFAULT_MAX_JOINS_IN_FLIGHT, Handshake,
    JoinContext, Rooms, RoomsBuilder,
};
use broadcast_test_support::sio_client::{ClientError, SioClient};
use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use socketioxide::SocketIo;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// Upper bound for one wait; never a pass condition.
const T: Duration = Duration::from_secs(20);

struct User(u64);

#[derive(Room)]
#[room(authorize = counted)]
struct GuardedRoom(u64);

#[derive(Room)]
#[room(public)]
struct OpenRoom(u32);

/// Authorizer calls per user: each test connects as its own user, so tests
/// running in parallel do not see each other's calls.
static CALLS: Mutex<BTreeMap<u64, u64>> = Mutex::new(BTreeMap::new());

fn calls(user: u64) -> u64 {
    CALLS.lock().unwrap().get(&user).copied().unwrap_or(0)
}

/// Counts, then answers like a database would: later, and only for the
/// user's own room.
async fn counted(ctx: &JoinContext, room: &GuardedRoom) -> bool {
    let user = ctx.identity::<User>().map_or(0, |u| u.0);
    *CALLS.lock().unwrap().entry(user).or_default() += 1;
    tokio::time::sleep(Duration::from_millis(1)).await;
    user == room.0
}

async fn authenticate(h: Handshake) -> Result<Option<User>, String> {
    match h.auth()["user"].as_u64() {
        Some(0) => Err("user 0 does not exist in table users".into()),
        user => Ok(user.map(User)),
    }
}

async fn serve(builder: RoomsBuilder) -> (SocketAddr, Rooms) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_on(builder, listener).await
}

/// A server whose sockets have small send buffers (Linux: accepted sockets
/// inherit the listener's), so a client that reads nothing fills the
/// socket's outgoing buffer after a few KiB, not after megabytes of
/// loopback buffers.
async fn serve_cramped(builder: RoomsBuilder) -> (SocketAddr, Rooms) {
    let tcp = TcpSocket::new_v4().unwrap();
    tcp.set_send_buffer_size(4096).unwrap();
    tcp.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    serve_on(builder, tcp.listen(64).unwrap()).await
}

async fn serve_on(builder: RoomsBuilder, listener: tokio::net::TcpListener) -> (SocketAddr, Rooms) {
    let (layer, io) = SocketIo::new_layer();
    let rooms = builder.authenticate(authenticate).build().unwrap();
    rooms.attach(&io);
    let app = axum::Router::new().layer(layer);
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (addr, rooms)
}

/// The most authorizer calls the defaults allow in `elapsed`.
fn allowed_calls(elapsed: Duration) -> u64 {
    let refill = (elapsed.as_secs_f64() * DEFAULT_JOINS_PER_SECOND).ceil() as u64;
    u64::from(DEFAULT_JOIN_BURST) + refill + DEFAULT_MAX_JOINS_IN_FLIGHT as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_joins_is_rate_limited_and_every_request_is_answered() {
    const USER: u64 = 1;
    const FLOOD: usize = 300;
    let (addr, rooms) = serve(Rooms::builder()).await;
    let mut client = SioClient::connect(addr, "/", Some(json!({ "user": USER })))
        .await
        .unwrap();

    let start = Instant::now();
    let acks = join_all((0..FLOOD).map(|i| {
        // Its own room, another user's, or a public one.
        let (event, data) = match i % 3 {
            0 => ("join_guarded", json!(USER)),
            1 => ("join_guarded", json!(USER + 1)),
            _ => ("join_open", json!(i)),
        };
        client.emit_with_ack("/", event, vec![data], T)
    }))
    .await;
    let elapsed = start.elapsed();

    let mut by_type = BTreeMap::<String, usize>::new();
    for ack in acks {
        let ack = ack.unwrap();
        assert_eq!(ack.len(), 1, "{ack:?}");
        let ack = &ack[0];
        let kind = if ack["ok"] == true {
            "ok".to_owned()
        } else {
            let error = &ack["error"];
            if error["type"] == "rate_limited" {
                let keys: Vec<&str> = error.as_object().unwrap().keys().map(|k| &**k).collect();
                assert_eq!(keys.len(), 3, "{error}");
                assert!(
                    error["msg"].as_str().is_some_and(|m| !m.is_empty()),
                    "{error}"
                );
                assert!(
                    matches!(error["key"].as_str(), Some("guarded" | "open")),
                    "{error}"
                );
            }
            error["type"].as_str().unwrap().to_owned()
        };
        *by_type.entry(kind).or_default() += 1;
    }
    println!(
        "{FLOOD} joins in {elapsed:?}: {by_type:?}, {:?}",
        rooms.stats()
    );
    let limited = by_type.get("rate_limited").copied().unwrap_or(0);
    let allowed = allowed_calls(elapsed) as usize;
    assert!(limited + allowed >= FLOOD, "{by_type:?}");
    assert!(
        by_type.get("forbidden").is_some_and(|&n| n > 0),
        "{by_type:?}"
    );
    assert_eq!(rooms.stats().rate_limited, limited as u64);
    assert!(
        calls(USER) <= allowed_calls(elapsed),
        "{} calls",
        calls(USER)
    );

    // Each refused join had its `error` event too, the same payload.
    let mut errors = 0;
    while errors < FLOOD - by_type.get("ok").copied().unwrap_or(0) {
        let ev = client.next_event(T).await.unwrap();
        if ev.event == "error" {
            errors += 1;
        }
    }

    // Leaves are not limited: over its join limit, the client still leaves.
    let mut limited = false;
    for _ in 0..100 {
        let joined = client
            .emit_with_ack("/", "join_guarded", vec![json!(USER)], T)
            .await
            .unwrap();
        if joined[0]["error"]["type"] == "rate_limited" {
            limited = true;
            break;
        }
    }
    assert!(limited, "100 joins in a row were not limited");
    for i in 0..40 {
        let left = client
            .emit_with_ack("/", "leave_open", vec![json!(i)], T)
            .await
            .unwrap();
        assert_eq!(left[0]["ok"], true, "{left:?}");
    }
}

/// A raw websocket connected to `/` as `user`, whose socket has a small
/// receive buffer: the server's writes back up after a few KiB, as they do
/// for a client that reads nothing, without first filling megabytes of
/// loopback buffers.
async fn connect_raw(addr: SocketAddr, user: u64) -> WebSocketStream<TcpStream> {
    let tcp = TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let tcp = tcp.connect(addr).await.unwrap();
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    ws.send(Message::text(format!("40{}", json!({ "user": user }))))
        .await
        .unwrap();
    loop {
        let msg = tokio::time::timeout(T, ws.next()).await.unwrap();
        if let Some(Ok(Message::Text(t))) = msg
            && t.starts_with("40")
        {
            return ws;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_holds_bounded_server_work() {
    const USER: u64 = 2;
    const FLOOD: usize = 40_000;
    /// The protocol's bound on one socket's unanswered requests.
    const MAX_PENDING: u64 = 512;
    let (addr, rooms) = serve_cramped(Rooms::builder()).await;
    let mut ws = connect_raw(addr, USER).await;

    let mut most_pending = 0;
    let start = Instant::now();
    for i in 0..FLOOD {
        // Forbidden joins and leaves, with acks; never a read.
        let packet = match i % 4 {
            3 => format!("42{i}[\"leave_open\",{i}]"),
            _ => format!("42{i}[\"join_guarded\",{}]", USER + 1),
        };
        ws.feed(Message::text(packet)).await.unwrap();
        if i % 500 == 0 {
            ws.flush().await.unwrap();
            most_pending = most_pending.max(rooms.stats().pending);
        }
    }
    ws.flush().await.unwrap();
    // The server works through what it read; wait until it stops counting.
    let mut last = rooms.stats();
    loop {
        most_pending = most_pending.max(rooms.stats().pending);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = rooms.stats();
        if now == last || start.elapsed() > T {
            break;
        }
        last = now;
    }
    let elapsed = start.elapsed();
    let stats = rooms.stats();
    println!(
        "{FLOOD} requests unread in {elapsed:?}: {stats:?}, at most {most_pending} pending, {} authorizer calls",
        calls(USER)
    );
    assert!(
        calls(USER) <= allowed_calls(elapsed),
        "{} calls",
        calls(USER)
    );
    assert!(
        stats.requests_dropped > 0 && stats.replies_dropped > 0,
        "nothing dropped: requests or replies were held: {stats:?}"
    );
    assert!(
        most_pending > 0 && most_pending <= MAX_PENDING,
        "{most_pending}"
    );
    // Every request was answered, or dropped unread, or had its reply
    // dropped: none is still held once the flood is over.
    assert_eq!(stats.pending, 0, "{stats:?}");

    // Another client of the same server is served as usual.
    let other = SioClient::connect(addr, "/", Some(json!({ "user": USER + 2 })))
        .await
        .unwrap();
    let ack = other
        .emit_with_ack("/", "join_guarded", vec![json!(USER + 2)], T)
        .await
        .unwrap();
    assert_eq!(ack[0]["ok"], true, "{ack:?}");
    drop(ws);
}

#[tokio::test]
async fn a_refused_connect_says_unauthorized_by_default() {
    let (addr, _rooms) = serve(Rooms::builder()).await;
    let refused = SioClient::connect(addr, "/", Some(json!({ "user": 0 }))).await;
    match refused {
        Err(ClientError::ConnectError { message, .. }) => assert_eq!(message, "unauthorized"),
        other => panic!("expected a connect_error, got {other:?}"),
    }
    // The same client data, accepted, shows the server works at all.
    SioClient::connect(addr, "/", Some(json!({ "user": 3 })))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_app_can_show_its_authentication_messages() {
    let (addr, _rooms) = serve(Rooms::builder().expose_auth_errors(true)).await;
    let refused = SioClient::connect(addr, "/", Some(json!({ "user": 0 }))).await;
    match refused {
        Err(ClientError::ConnectError { message, .. }) => {
            assert_eq!(message, "user 0 does not exist in table users");
        }
        other => panic!("expected a connect_error, got {other:?}"),
    }
}
