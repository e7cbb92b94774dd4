//! Self-tests of the test client (`broadcast_test_support::sio_client`) against a real socketioxide server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use broadcast_test_support::sio_client::{ClientError, SioClient};
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::handler::ConnectHandler;

const T: Duration = Duration::from_secs(5);

/// Serves `io`'s layer on 127.0.0.1:0 and returns the bound address.
async fn serve(layer: socketioxide::layer::SocketIoLayer) -> SocketAddr {
    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    addr
}

/// Handlers shared by most tests: `echo` acks its args, `join` joins a room
/// and acks, `whoami` emits the socket id back, `bye` disconnects the socket.
fn register_events(s: &SocketRef) {
    s.on("echo", async |Data(d): Data<Value>, ack: AckSender| {
        ack.send(&d).ok();
    });
    s.on(
        "join",
        async |s: SocketRef, Data(room): Data<String>, ack: AckSender| {
            s.join(room);
            ack.send(&"joined").ok();
        },
    );
    s.on("whoami", async |s: SocketRef| {
        s.emit("you", &s.id.to_string()).ok();
    });
    s.on("bye", async |s: SocketRef| {
        s.disconnect().ok();
    });
}

struct Server {
    addr: SocketAddr,
    io: SocketIo,
    disconnects: Arc<AtomicUsize>,
}

async fn start_with(builder: socketioxide::SocketIoBuilder) -> Server {
    let (layer, io) = builder.build_layer();
    let disconnects = Arc::new(AtomicUsize::new(0));
    for ns in ["/", "/admin"] {
        let disconnects = disconnects.clone();
        io.ns(ns, async move |s: SocketRef, Data(auth): Data<Value>| {
            register_events(&s);
            let disconnects = disconnects.clone();
            s.on_disconnect(async move || {
                disconnects.fetch_add(1, Ordering::SeqCst);
            });
            s.emit("welcome", &json!({ "sid": s.id.to_string(), "auth": auth }))
                .ok();
        });
    }
    io.ns(
        "/guarded",
        (async |s: SocketRef| {
            s.emit("welcome", &s.id.to_string()).ok();
        })
        .with(async |Data(auth): Data<Value>| {
            if auth.get("token") == Some(&json!("ok")) {
                Ok(())
            } else {
                Err("unauthorized")
            }
        }),
    );
    let addr = serve(layer).await;
    Server {
        addr,
        io,
        disconnects,
    }
}

async fn start() -> Server {
    start_with(SocketIo::builder()).await
}

async fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

#[tokio::test]
async fn root_and_admin_on_one_connection() {
    let srv = start().await;
    let mut c = SioClient::connect(srv.addr, "/", None).await.unwrap();
    let admin_sid = c.connect_ns("/admin", None).await.unwrap();
    let root_sid = c.sid("/").unwrap();
    // socketioxide reuses the engine.io sid as the socket id in every namespace.
    assert_eq!(root_sid, admin_sid);
    assert_eq!(root_sid, c.engine_sid());
    assert_eq!(c.sid("admin").as_deref(), Some(admin_sid.as_str()));
    assert!(c.sid("/other").is_none());

    // The connect handlers' welcome events carry the server-side socket ids.
    let mut seen = std::collections::HashMap::new();
    for _ in 0..2 {
        let ev = c.next_event_named("welcome", T).await.unwrap();
        seen.insert(
            ev.ns.clone(),
            ev.args[0]["sid"].as_str().unwrap().to_owned(),
        );
    }
    assert_eq!(seen["/"], root_sid);
    assert_eq!(seen["/admin"], admin_sid);

    // Events are routed per namespace.
    c.emit("/admin", "whoami", vec![]).await.unwrap();
    let ev = c.next_event(T).await.unwrap();
    assert_eq!((ev.ns.as_str(), ev.event.as_str()), ("/admin", "you"));
    assert_eq!(ev.args, vec![json!(admin_sid)]);
    c.emit("/", "whoami", vec![]).await.unwrap();
    let ev = c.next_event(T).await.unwrap();
    assert_eq!(
        (ev.ns.as_str(), ev.args[0].as_str()),
        ("/", Some(root_sid.as_str()))
    );

    assert!(matches!(
        c.connect_ns("/admin", None).await,
        Err(ClientError::AlreadyConnected(_))
    ));
    assert_eq!(srv.io.of("/admin").unwrap().sockets().len(), 1);
    c.disconnect().await.unwrap();
    assert!(wait_until(|| srv.disconnects.load(Ordering::SeqCst) == 2).await);
}

#[tokio::test]
async fn auth_is_passed_to_connect_handler() {
    let srv = start().await;
    let mut c = SioClient::connect(srv.addr, "/", Some(json!({"user": "alice"})))
        .await
        .unwrap();
    let ev = c.next_event_named("welcome", T).await.unwrap();
    assert_eq!(ev.args[0]["auth"], json!({"user": "alice"}));

    c.connect_ns("/admin", Some(json!({"token": "x"})))
        .await
        .unwrap();
    let ev = c.next_event_named("welcome", T).await.unwrap();
    assert_eq!(ev.ns, "/admin");
    assert_eq!(ev.args[0]["auth"], json!({"token": "x"}));
}

#[tokio::test]
async fn middleware_rejection_is_connect_error() {
    let srv = start().await;
    let mut c = SioClient::connect(srv.addr, "/", None).await.unwrap();
    c.next_event_named("welcome", T).await.unwrap();
    match c
        .connect_ns("/guarded", Some(json!({"token": "bad"})))
        .await
    {
        Err(ClientError::ConnectError { ns, message, data }) => {
            assert_eq!(ns, "/guarded");
            assert_eq!(message, "unauthorized");
            assert_eq!(data, None);
        }
        other => panic!("expected ConnectError, got {other:?}"),
    }
    assert!(c.sid("/guarded").is_none());
    // The connection survives a rejected namespace and a retry may succeed.
    let sid = c
        .connect_ns("/guarded", Some(json!({"token": "ok"})))
        .await
        .unwrap();
    let ev = c.next_event_named("welcome", T).await.unwrap();
    assert_eq!(
        (ev.ns.as_str(), ev.args[0].as_str()),
        ("/guarded", Some(sid.as_str()))
    );

    // Unknown namespaces are rejected by socketioxide itself.
    match c.connect_ns("/nope", None).await {
        Err(ClientError::ConnectError { ns, message, .. }) => {
            assert_eq!(
                (ns.as_str(), message.as_str()),
                ("/nope", "Invalid namespace")
            );
        }
        other => panic!("expected ConnectError, got {other:?}"),
    }
}

#[tokio::test]
async fn middleware_rejection_on_root_namespace() {
    let (layer, io) = SocketIo::new_layer();
    io.ns(
        "/",
        (async |_: SocketRef| {}).with(async |Data(auth): Data<Value>| {
            if auth["user"] == "root" {
                Ok(())
            } else {
                Err(format!("user {} rejected", auth["user"]))
            }
        }),
    );
    let addr = serve(layer).await;
    match SioClient::connect(addr, "/", Some(json!({"user": "eve"}))).await {
        Err(ClientError::ConnectError { ns, message, .. }) => {
            assert_eq!(
                (ns.as_str(), message.as_str()),
                ("/", "user \"eve\" rejected")
            );
        }
        other => panic!("expected ConnectError, got {other:?}"),
    }
    SioClient::connect(addr, "/", Some(json!({"user": "root"})))
        .await
        .unwrap();
}

#[tokio::test]
async fn room_broadcast_reaches_members_only() {
    let srv = start().await;
    let mut member = SioClient::connect(srv.addr, "/", None).await.unwrap();
    let mut outsider = SioClient::connect(srv.addr, "/", None).await.unwrap();
    member.next_event_named("welcome", T).await.unwrap();
    outsider.next_event_named("welcome", T).await.unwrap();

    let ack = member
        .emit_with_ack("/", "join", vec![json!("room1")], T)
        .await
        .unwrap();
    assert_eq!(ack, vec![json!("joined")]);

    srv.io
        .to("room1")
        .emit("news", &(1, "two", json!({"three": 3})))
        .await
        .unwrap();
    let ev = member.next_event(T).await.unwrap();
    assert_eq!((ev.ns.as_str(), ev.event.as_str()), ("/", "news"));
    assert_eq!(ev.args, vec![json!(1), json!("two"), json!({"three": 3})]);
    outsider
        .expect_silence(Duration::from_millis(300))
        .await
        .unwrap();
    member
        .expect_silence(Duration::from_millis(50))
        .await
        .unwrap();

    // expect_silence reports an event that does arrive.
    srv.io.emit("all", &"x").await.unwrap();
    match outsider.expect_silence(T).await {
        Err(ClientError::UnexpectedEvent(ev)) => assert_eq!(ev.event, "all"),
        other => panic!("expected UnexpectedEvent, got {other:?}"),
    }
    assert!(wait_until(|| member.try_next_event().is_some()).await);
    assert!(member.try_next_event().is_none());
}

#[tokio::test]
async fn emit_with_ack_round_trip() {
    let srv = start().await;
    let c = SioClient::connect(srv.addr, "/", None).await.unwrap();
    c.connect_ns("/admin", None).await.unwrap();

    let ack = c
        .emit_with_ack("/", "echo", vec![json!({"a": [1, 2]})], T)
        .await
        .unwrap();
    assert_eq!(ack, vec![json!({"a": [1, 2]})]);
    let ack = c
        .emit_with_ack("/admin", "echo", vec![json!("é\"\\")], T)
        .await
        .unwrap();
    assert_eq!(ack, vec![json!("é\"\\")]);

    // Many acks in flight at once are matched to the right callers.
    let futs = (0..50).map(|i| c.emit_with_ack("/", "echo", vec![json!(i)], T));
    let acks = futures_util::future::join_all(futs).await;
    for (i, ack) in acks.into_iter().enumerate() {
        assert_eq!(ack.unwrap(), vec![json!(i)]);
    }

    // No handler acks `nothing`: times out.
    let r = c
        .emit_with_ack("/", "nothing", vec![], Duration::from_millis(200))
        .await;
    assert!(matches!(r, Err(ClientError::Timeout)), "{r:?}");
    // Not connected namespaces are refused client-side.
    let r = c.emit("/guarded", "echo", vec![]).await;
    assert!(matches!(r, Err(ClientError::NotConnected(ns)) if ns == "/guarded"));
}

#[tokio::test]
async fn ping_pong_keeps_idle_client_alive() {
    let srv = start_with(
        SocketIo::builder()
            .ping_interval(Duration::from_millis(300))
            .ping_timeout(Duration::from_millis(200)),
    )
    .await;
    let mut c = SioClient::connect(srv.addr, "/", None).await.unwrap();
    let srv_io = srv.io.clone();
    // Events sent while the test is not reading are queued, not lost.
    let emitter = tokio::spawn(async move {
        for i in 0..5 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            srv_io.emit("tick", &i).await.ok();
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    emitter.await.unwrap();

    assert!(!c.is_closed());
    assert_eq!(srv.io.sockets().len(), 1);
    assert_eq!(srv.disconnects.load(Ordering::SeqCst), 0);
    c.next_event_named("welcome", T).await.unwrap();
    for i in 0..5 {
        let ev = c.next_event(T).await.unwrap();
        assert_eq!((ev.event.as_str(), &ev.args[..]), ("tick", &[json!(i)][..]));
    }
    let ack = c
        .emit_with_ack("/", "echo", vec![json!(1)], T)
        .await
        .unwrap();
    assert_eq!(ack, vec![json!(1)]);
}

#[tokio::test]
async fn many_clients_connect_concurrently() {
    const N: usize = 200;
    let srv = start().await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..N {
        let addr = srv.addr;
        set.spawn(async move {
            let mut c = SioClient::connect(addr, "/", Some(json!({ "i": i })))
                .await
                .unwrap();
            let ev = c.next_event_named("welcome", T).await.unwrap();
            assert_eq!(ev.args[0]["auth"]["i"], json!(i));
            c
        });
    }
    let mut clients = Vec::with_capacity(N);
    while let Some(c) = set.join_next().await {
        clients.push(c.unwrap());
    }
    assert_eq!(srv.io.sockets().len(), N);

    srv.io.emit("hello", &"everyone").await.unwrap();
    for c in &mut clients {
        let ev = c.next_event(T).await.unwrap();
        assert_eq!(
            (ev.event.as_str(), &ev.args[..]),
            ("hello", &[json!("everyone")][..])
        );
    }
    let disconnects = futures_util::future::join_all(clients.into_iter().map(|c| c.disconnect()));
    for r in disconnects.await {
        r.unwrap();
    }
    assert!(wait_until(|| srv.io.sockets().is_empty()).await);
}

#[tokio::test]
async fn disconnects_in_both_directions() {
    let srv = start().await;
    // Server-initiated namespace disconnect.
    let c = SioClient::connect(srv.addr, "/", None).await.unwrap();
    c.connect_ns("/admin", None).await.unwrap();
    c.emit("/admin", "bye", vec![]).await.unwrap();
    c.wait_ns_disconnected("/admin", T).await.unwrap();
    assert!(c.sid("/admin").is_none());
    assert!(c.sid("/").is_some());
    let r = c.emit("/admin", "echo", vec![]).await;
    assert!(matches!(r, Err(ClientError::NotConnected(_))));

    // Client-initiated namespace disconnect keeps the connection.
    c.connect_ns("/admin", None).await.unwrap();
    c.disconnect_ns("/admin").await.unwrap();
    assert!(wait_until(|| srv.io.of("/admin").unwrap().sockets().is_empty()).await);
    assert_eq!(srv.io.sockets().len(), 1);

    // Dropping a client closes its connection.
    drop(c);
    assert!(wait_until(|| srv.io.sockets().is_empty()).await);

    // A server-side disconnect of the last namespace keeps the engine.io connection.
    let mut c = SioClient::connect(srv.addr, "/", None).await.unwrap();
    c.emit("/", "bye", vec![]).await.unwrap();
    c.wait_ns_disconnected("/", T).await.unwrap();
    assert!(!c.is_closed());
    c.connect_ns("/", None).await.unwrap();

    // Closing the server closes the connection: queued events, then Closed.
    srv.io.close().await;
    loop {
        match c.next_event(T).await {
            Ok(ev) => assert_eq!(ev.event, "welcome"),
            Err(ClientError::Closed(_)) => break,
            Err(e) => panic!("expected Closed, got {e:?}"),
        }
    }
    assert!(c.is_closed());
    assert!(matches!(
        c.emit("/", "echo", vec![]).await,
        Err(ClientError::Closed(_))
    ));
    c.disconnect().await.unwrap();
}

#[tokio::test]
async fn binary_attachments_become_byte_arrays() {
    let srv = start().await;
    let mut c = SioClient::connect(srv.addr, "/", None).await.unwrap();
    c.next_event_named("welcome", T).await.unwrap();
    srv.io
        .emit(
            "bin",
            &("meta", axum::body::Bytes::from_static(&[0, 1, 255])),
        )
        .await
        .unwrap();
    let ev = c.next_event(T).await.unwrap();
    assert_eq!(ev.event, "bin");
    assert_eq!(ev.args, vec![json!("meta"), json!([0, 1, 255])]);
}

#[tokio::test]
async fn server_ack_requests_are_delivered_as_events() {
    let srv = start().await;
    let mut c = SioClient::connect(srv.addr, "/", None).await.unwrap();
    c.next_event_named("welcome", T).await.unwrap();
    let sock = srv.io.sockets().pop().unwrap();
    let stream = sock
        .timeout(Duration::from_millis(100))
        .emit_with_ack::<_, Value>("ask", &1)
        .unwrap();
    let ev = c.next_event(T).await.unwrap();
    assert_eq!((ev.event.as_str(), &ev.args[..]), ("ask", &[json!(1)][..]));
    // The client never acks; the server side times out.
    assert!(stream.await.is_err());
    assert!(!c.is_closed());
}
