//! The chat demo (`examples/chat`, run as a process) driven by the official
//! `socket.io-client` npm package (`tests/ts/chat_client.mjs`), and its HTTP
//! API driven from here.
//!
//! "Nothing was delivered" is shown by order, never by waiting: each client
//! receives what a server sends it in order, so after the suspect request the
//! test sends a marker the client must get; the client's next event must be
//! that marker, not the suspect one.

mod chat_common;

use chat_common::{ChatServer, NodeDriver, assert_message, npm_ready, strip_position, unix_now};
use serde_json::{Value, json};

const NAME_RULE: &str = "auth.user must be a name of 1 to 32 letters or digits";

/// The join's ack, without the chat room's position (checked, then
/// removed: tests/chat_recovery.rs is about positions).
async fn join(d: &mut NodeDriver, client: &str, data: Value) -> Value {
    let reply = d
        .call_ok(json!({"op": "emit", "client": client, "event": "join_chat",
                        "args": [data], "ack": true}))
        .await;
    let mut ack = strip_position(reply["ack"].clone());
    // Chat rooms have presence: an ok ack lists the members, which
    // tests/presence_chat.rs checks; here only the rest of the ack matters.
    if let Some(ack) = ack.as_object_mut()
        && ack.get("ok") == Some(&json!(true))
    {
        let members = ack.remove("members");
        assert!(members.as_ref().is_some_and(Value::is_array), "{members:?}");
    }
    ack
}

/// The client's next event is `joined`; its payload without the position.
async fn joined(d: &mut NodeDriver, client: &str) -> Value {
    strip_position(d.expect_event(client, "joined").await)
}

async fn leave(d: &mut NodeDriver, client: &str, data: Value) -> Value {
    let reply = d
        .call_ok(
            json!({"op": "emit", "client": client, "event": "leave_chat",
                        "args": [data], "ack": true}),
        )
        .await;
    reply["ack"].clone()
}

/// Connects `client` as `user`; returns its socket id.
async fn connect(
    d: &mut NodeDriver,
    client: &str,
    user: &str,
    transports: Option<&[&str]>,
) -> String {
    let mut req = json!({"op": "connect", "client": client, "auth": {"user": user}});
    if let Some(t) = transports {
        req["transports"] = json!(t);
    }
    let reply = d.call(req).await;
    assert_eq!(reply["ok"], json!(true), "connect {user}: {reply}");
    let sid = reply["sid"].as_str().unwrap_or_default().to_string();
    assert!(!sid.is_empty(), "{reply}");
    sid
}

/// A request the server must refuse: path, body, extra headers, what it is.
type Refused<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, &'a str);

/// The next event of each client is `message_posted` with this message.
async fn all_get(
    d: &mut NodeDriver,
    clients: &[&str],
    chat: u64,
    author: &str,
    text: &str,
    since: i64,
) {
    for c in clients {
        let p = d.expect_event(c, "message_posted").await;
        assert_message(&p, chat, author, text, since);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_demo_with_the_official_socket_io_client() {
    if !npm_ready(
        &["socket.io-client"],
        "chat_demo_with_the_official_socket_io_client",
    ) {
        return;
    }
    let server = ChatServer::start().await;
    // PORT is honoured, the bind is loopback only (no HOST), no Redis.
    let listening = format!("chat listening on http://{} (in-memory)", server.addr);
    assert!(
        server.log_text().contains(&listening),
        "{}",
        server.log_text()
    );
    let url = server.url();
    let mut d = NodeDriver::spawn("chat_client.mjs", &[("CHAT_URL", &url)]);
    let t0 = unix_now();

    // --- Connect-time authentication --------------------------------------
    let long = "a".repeat(33);
    for auth in [
        json!({"user": "bad name"}),
        json!({"user": ""}),
        json!({"user": long}),
        json!({"user": "émile"}),
        json!({"user": 7}),
        json!({}),
    ] {
        let reply = d
            .call(json!({"op": "connect", "client": "refused", "auth": auth}))
            .await;
        assert_eq!(
            reply["ok"],
            json!(false),
            "auth {auth} was admitted: {reply}"
        );
        assert_eq!(
            reply["connect_error"],
            json!(NAME_RULE),
            "auth {auth}: {reply}"
        );
        assert_eq!(reply["active"], json!(false), "a refusal is final: {reply}");
    }
    // No auth at all.
    let reply = d.call(json!({"op": "connect", "client": "refused"})).await;
    assert_eq!(reply["ok"], json!(false), "{reply}");
    assert_eq!(reply["connect_error"], json!(NAME_RULE), "{reply}");

    // The default transports (HTTP long-polling, then upgrade) and
    // WebSocket only.
    let alice = connect(&mut d, "alice", "alice", None).await;
    let _alice2 = connect(&mut d, "alice2", "alice", Some(&["websocket"])).await;
    let _bob = connect(&mut d, "bob", "bob", Some(&["websocket"])).await;
    let _carol = connect(&mut d, "carol", "carol", None).await;
    let max = "Z9".repeat(16);
    let reply = d
        .call(json!({"op": "connect", "client": "max", "auth": {"user": max}}))
        .await;
    assert_eq!(
        reply["ok"],
        json!(true),
        "a 32-character name is valid: {reply}"
    );

    // --- join_chat ----------------------------------------------------------
    let ok1 = json!({"ok": true, "room": "chat|1"});
    assert_eq!(join(&mut d, "alice", json!({"chat_id": 1})).await, ok1);
    assert_eq!(joined(&mut d, "alice").await, json!({"room": "chat|1"}));
    // Just the number.
    assert_eq!(join(&mut d, "alice2", json!(1)).await, ok1);
    assert_eq!(joined(&mut d, "alice2").await, json!({"room": "chat|1"}));
    assert_eq!(join(&mut d, "bob", json!({"chat_id": 1})).await, ok1);
    assert_eq!(joined(&mut d, "bob").await, json!({"room": "chat|1"}));
    // Without an ack: the `joined` event alone.
    d.call_ok(
        json!({"op": "emit", "client": "carol", "event": "join_chat",
                     "args": [{"chat_id": 1}]}),
    )
    .await;
    assert_eq!(joined(&mut d, "carol").await, json!({"room": "chat|1"}));

    // Chat 2 is for alice and carol: bob is refused.
    let forbidden = json!({"type": "forbidden", "room": "chat|2"});
    assert_eq!(
        join(&mut d, "bob", json!({"chat_id": 2})).await,
        json!({"ok": false, "error": forbidden})
    );
    assert_eq!(d.expect_event("bob", "error").await, forbidden);
    assert_eq!(
        join(&mut d, "alice", json!({"chat_id": 2})).await,
        json!({"ok": true, "room": "chat|2"})
    );
    assert_eq!(joined(&mut d, "alice").await, json!({"room": "chat|2"}));

    // An unknown chat.
    let ack = join(&mut d, "bob", json!({"chat_id": 99})).await;
    assert_eq!(ack["ok"], json!(false), "{ack}");
    assert_eq!(ack["error"]["type"], json!("validation_error"), "{ack}");
    let err = d.expect_event("bob", "error").await;
    assert_eq!(err["type"], json!("validation_error"), "{err}");
    assert_eq!(err, ack["error"], "event and ack carry the same error");

    // --- message_posted -----------------------------------------------------
    let r = server
        .post(
            "/chats/1/messages",
            &json!({"author": "bob", "text": "hello, chat 1"}),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{r:?}"
    );
    assert_eq!(
        r.json(),
        json!({"event": "message_posted", "rooms": ["chat|1"]})
    );
    all_get(
        &mut d,
        &["alice", "alice2", "bob", "carol"],
        1,
        "bob",
        "hello, chat 1",
        t0,
    )
    .await;

    // Chat 2 reaches alice only; bob (refused) is not in it. The marker in
    // chat 1 is the next thing bob, alice2 and carol get.
    server.post_message(2, "alice", "staff only").await;
    all_get(&mut d, &["alice"], 2, "alice", "staff only", t0).await;
    server.post_message(1, "carol", "marker 1").await;
    all_get(
        &mut d,
        &["bob", "alice2", "carol", "alice"],
        1,
        "carol",
        "marker 1",
        t0,
    )
    .await;

    // --- leave_chat ---------------------------------------------------------
    assert_eq!(leave(&mut d, "carol", json!({"chat_id": 1})).await, ok1);
    assert_eq!(
        d.expect_event("carol", "left").await,
        json!({"room": "chat|1"})
    );
    server.post_message(1, "bob", "after carol left").await;
    all_get(
        &mut d,
        &["alice", "alice2", "bob"],
        1,
        "bob",
        "after carol left",
        t0,
    )
    .await;

    // --- user_notified: only that user's sockets -----------------------------
    server.notify("carol", "for carol only").await;
    assert_eq!(
        d.expect_event("carol", "user_notified").await,
        json!({"user": "carol", "text": "for carol only"}),
        "carol's next event: not the chat message she left"
    );
    server.post_message(1, "bob", "marker 2").await;
    all_get(
        &mut d,
        &["alice", "alice2", "bob"],
        1,
        "bob",
        "marker 2",
        t0,
    )
    .await;
    // Both of alice's sockets are in `user|alice`.
    server.notify("alice", "for alice").await;
    for c in ["alice", "alice2"] {
        assert_eq!(
            d.expect_event(c, "user_notified").await,
            json!({"user": "alice", "text": "for alice"})
        );
    }

    // --- toOthers: X-Socket-ID ------------------------------------------------
    server
        .post_message_with(1, "alice", "to the others", &[("X-Socket-ID", &alice)])
        .await;
    all_get(&mut d, &["alice2", "bob"], 1, "alice", "to the others", t0).await;
    server.notify("alice", "marker 3").await;
    assert_eq!(
        d.expect_event("alice", "user_notified").await,
        json!({"user": "alice", "text": "marker 3"}),
        "the excluded socket got its own message"
    );
    assert_eq!(
        d.expect_event("alice2", "user_notified").await,
        json!({"user": "alice", "text": "marker 3"})
    );

    // --- Refused requests: a 4xx with a JSON error, and nothing broadcast ----
    let long_text = "x".repeat(2001);
    let bad: Vec<Refused> = vec![
        (
            "/chats/1/messages",
            "{\"author\": \"bob\",".into(),
            vec![],
            "bad JSON",
        ),
        (
            "/chats/1/messages",
            "[1, 2]".into(),
            vec![],
            "JSON of the wrong shape",
        ),
        (
            "/chats/1/messages",
            json!({"text": "no author"}).to_string(),
            vec![],
            "no author",
        ),
        (
            "/chats/99/messages",
            json!({"author": "bob", "text": "?"}).to_string(),
            vec![],
            "unknown chat",
        ),
        (
            "/chats/abc/messages",
            json!({"author": "bob", "text": "?"}).to_string(),
            vec![],
            "chat id not a number",
        ),
        (
            "/chats/2/messages",
            json!({"author": "bob", "text": "let me in"}).to_string(),
            vec![],
            "bob in chat 2",
        ),
        (
            "/chats/1/messages",
            json!({"author": "bob", "text": ""}).to_string(),
            vec![],
            "empty text",
        ),
        (
            "/chats/1/messages",
            json!({"author": "bob", "text": long_text}).to_string(),
            vec![],
            "2001 characters",
        ),
        (
            "/chats/1/messages",
            json!({"author": "bad name", "text": "hi"}).to_string(),
            vec![],
            "invalid author",
        ),
        (
            "/chats/1/messages",
            json!({"author": "bob", "text": "hi"}).to_string(),
            vec![("X-Socket-ID", "not-a-socket-id")],
            "invalid X-Socket-ID",
        ),
        ("/users/bob/notify", "{".into(), vec![], "notify: bad JSON"),
        (
            "/users/bob/notify",
            json!({"text": ""}).to_string(),
            vec![],
            "notify: empty text",
        ),
        (
            "/users/bad%20name/notify",
            json!({"text": "hi"}).to_string(),
            vec![],
            "notify: invalid name",
        ),
    ];
    let mut statuses = Vec::new();
    for (path, body, headers, what) in &bad {
        let r = server.post_raw(path, headers, body.as_bytes()).await;
        assert!((400..500).contains(&r.status), "{what}: {r:?}");
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{what}: {r:?}"
        );
        let err = r.json();
        assert!(
            err["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: no JSON error: {r:?}"
        );
        statuses.push(format!("{what}: {} {}", r.status, err["error"]));
    }
    eprintln!("refused requests:\n  {}", statuses.join("\n  "));
    // The longest text accepted.
    let longest = "y".repeat(2000);
    server.post_message(1, "bob", &longest).await;
    all_get(&mut d, &["alice", "alice2", "bob"], 1, "bob", &longest, t0).await;
    // Markers: a message in chat 1 (alice listens in chat 2 too) and a
    // notification for bob.
    server.post_message(1, "alice", "marker 4").await;
    all_get(
        &mut d,
        &["alice", "alice2", "bob"],
        1,
        "alice",
        "marker 4",
        t0,
    )
    .await;
    server.notify("bob", "marker 5").await;
    assert_eq!(
        d.expect_event("bob", "user_notified").await,
        json!({"user": "bob", "text": "marker 5"})
    );
    server.notify("carol", "marker 6").await;
    assert_eq!(
        d.expect_event("carol", "user_notified").await,
        json!({"user": "carol", "text": "marker 6"}),
        "carol got something after leaving chat 1"
    );
    // The 32-character user saw none of it: its next event is its own.
    server.notify(&max, "marker 7").await;
    assert_eq!(
        d.expect_event("max", "user_notified").await,
        json!({"user": max, "text": "marker 7"})
    );

    // --- leave stops delivery for that socket only ----------------------------
    assert_eq!(leave(&mut d, "alice2", json!(1)).await, ok1);
    assert_eq!(
        d.expect_event("alice2", "left").await,
        json!({"room": "chat|1"})
    );
    // Leaving again: ok, no event.
    assert_eq!(leave(&mut d, "alice2", json!(1)).await, ok1);
    server.post_message(1, "bob", "alice2 has left").await;
    all_get(&mut d, &["alice", "bob"], 1, "bob", "alice2 has left", t0).await;
    server.notify("alice", "marker 8").await;
    for c in ["alice", "alice2"] {
        assert_eq!(
            d.expect_event(c, "user_notified").await,
            json!({"user": "alice", "text": "marker 8"}),
            "{c}"
        );
    }

    // --- The other endpoints ----------------------------------------------------
    let page = server.get("/").await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{page:?}"
    );
    // The page runs the official socket.io-client and the recovery helper,
    // both served from here, as they are in the repository.
    assert!(page.body.contains(r#"<script src="/socket.io.min.js">"#));
    assert!(page.body.contains(r#"from "/recovery.js""#));
    for (path, file) in [
        ("/socket.io.min.js", "examples/chat/socket.io.min.js"),
        ("/recovery.js", "clients/typescript/recovery.js"),
    ] {
        let js = server.get(path).await;
        assert_eq!(js.status, 200, "{path}");
        assert_eq!(
            js.header("content-type"),
            Some("text/javascript; charset=utf-8")
        );
        let shipped = std::fs::read_to_string(chat_common::workspace().join(file)).unwrap();
        assert!(js.body == shipped, "{path} is not {file}");
    }
    let events = server.get("/events").await;
    assert_eq!(events.status, 200, "{events:?}");
    let registry = events.json();
    let names = |list: &str, field: &str| -> Vec<String> {
        registry[list]
            .as_array()
            .map(|a| {
                let mut v: Vec<String> = a
                    .iter()
                    .filter_map(|e| e[field].as_str().map(String::from))
                    .collect();
                v.sort();
                v
            })
            .unwrap_or_default()
    };
    assert_eq!(
        names("events", "name"),
        ["message_posted", "user_notified"],
        "{registry}"
    );
    assert_eq!(names("rooms", "key"), ["chat", "user"], "{registry}");

    // Nothing else arrived at anyone.
    for c in ["alice", "alice2", "bob", "carol", "max"] {
        assert!(d.queued(c).is_empty(), "{c} got more: {:?}", d.queued(c));
    }
    d.finish().await;
}

/// Posts whose body is not declared JSON are refused with 415 before
/// anything is parsed or broadcast; JSON with a charset is JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_posts_must_be_declared_json() {
    let server = ChatServer::start().await;
    let message = json!({"author": "bob", "text": "hi"}).to_string();
    let notification = json!({"text": "hi"}).to_string();
    let mut refused = 0;
    for (path, body) in [
        ("/chats/1/messages", &message),
        ("/users/bob/notify", &notification),
    ] {
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "",
        ] {
            let r = server
                .post_raw(path, &[("Content-Type", content_type)], body.as_bytes())
                .await;
            assert_eq!(r.status, 415, "{path} as {content_type:?}: {r:?}");
            assert!(
                r.json()["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("application/json")),
                "{r:?}"
            );
            refused += 1;
        }
        let r = server
            .post_raw(
                path,
                &[("content-type", "Application/JSON; charset=utf-8")],
                body.as_bytes(),
            )
            .await;
        assert_eq!(r.status, 202, "{path}: {r:?}");
    }
    assert_eq!(refused, 10);
}
