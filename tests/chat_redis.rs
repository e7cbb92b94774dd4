//! The chat demo scaled out: a harness-started redis-server, two chat server
//! processes sharing it (`REDIS_URL`), and the worker example broadcasting
//! from a process with no server. Clients on both servers get messages
//! posted to either, and the worker's; clients not in the chat do not.
//!
//! "Not delivered" is shown by order, not by waiting: after the suspect
//! broadcast a marker is sent to the client, which must get the marker next.

mod chat_common;

use std::process::{Command, Stdio};

use broadcast_test_support::env::TempDir;
use broadcast_test_support::redis::RedisServer;
use broadcast_test_support::sio_client::SioClient;
use chat_common::{ChatServer, Proc, WAIT, assert_message, example_bin, strip_position, unix_now};
use serde_json::{Value, json};

async fn client(server: &ChatServer, user: &str) -> SioClient {
    SioClient::connect(server.addr, "/", Some(json!({"user": user})))
        .await
        .unwrap_or_else(|e| panic!("{user} connecting to {}: {e}", server.addr))
}

async fn join(c: &SioClient, chat_id: u64) {
    let ack = c
        .emit_with_ack("/", "join_chat", vec![json!({"chat_id": chat_id})], WAIT)
        .await
        .expect("join_chat ack");
    // Chat rooms keep history and have presence: the ack has the room's
    // position and members too (tests/chat_recovery.rs and
    // tests/presence_chat.rs check them).
    assert_eq!(ack.len(), 1, "{ack:?}");
    assert_eq!(ack[0]["ok"], json!(true), "{ack:?}");
    assert_eq!(ack[0]["room"], json!(format!("chat|{chat_id}")), "{ack:?}");
}

/// The client's next event is `name`; returns its only argument.
async fn next(c: &mut SioClient, who: &str, name: &str) -> Value {
    // Presence frames (chat rooms have presence) are another test's subject.
    let ev = loop {
        let ev = c
            .next_event(WAIT)
            .await
            .unwrap_or_else(|e| panic!("{who}: no `{name}` within {WAIT:?}: {e}"));
        if !ev.event.starts_with("presence_") {
            break ev;
        }
    };
    assert_eq!(ev.event, name, "{who}: expected `{name}` next, got {ev:?}");
    // Chat rooms keep history: their events carry a position second.
    let positioned = ev.args.len() == 2 && ev.args[1]["room"].is_string();
    assert!(ev.args.len() == 1 || positioned, "{who}: {ev:?}");
    strip_position(ev.args[0].clone())
}

/// Runs the worker example to completion; returns its stdout.
async fn run_worker(redis_url: &str, args: &[&str]) -> String {
    let dir = TempDir::new("chat-worker").expect("a temp dir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let child = Command::new(example_bin("worker"))
        .args(args)
        .env("REDIS_URL", redis_url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("worker stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("worker stderr file"))
        .spawn()
        .expect("spawning the worker");
    let mut proc = Proc::new(child, false);
    let status = proc.wait_exit(WAIT).await;
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "worker {args:?}: {status:?}\nstdout:\n{out}\nstderr:\n{err}"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chat_servers_and_the_worker_share_redis() {
    let Some(redis) = RedisServer::start().await.expect("starting redis-server") else {
        return;
    };
    let url = redis.url();
    let a = ChatServer::start_with(&[("REDIS_URL", &url)]).await;
    let b = ChatServer::start_with(&[("REDIS_URL", &url)]).await;
    assert_ne!(a.addr, b.addr);
    for s in [&a, &b] {
        assert!(s.log_text().contains("Redis fan-out"), "{}", s.log_text());
    }
    let t0 = unix_now();

    // alice on A is in chats 1 and 2, bob on B in chat 1, carol on B in
    // none.
    let mut alice = client(&a, "alice").await;
    let mut bob = client(&b, "bob").await;
    let mut carol = client(&b, "carol").await;
    join(&alice, 1).await;
    join(&bob, 1).await;
    for (c, who) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        assert_eq!(next(c, who, "joined").await, json!({"room": "chat|1"}));
    }
    join(&alice, 2).await;
    assert_eq!(
        next(&mut alice, "alice", "joined").await,
        json!({"room": "chat|2"})
    );

    // Posted over HTTP to server A: A's and B's clients in chat 1 get it.
    a.post_message(1, "alice", "from server A").await;
    for (c, who) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let p = next(c, who, "message_posted").await;
        assert_message(&p, 1, "alice", "from server A", t0);
    }
    // Posted to server B: A's client gets it too.
    b.post_message(1, "bob", "from server B").await;
    for (c, who) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let p = next(c, who, "message_posted").await;
        assert_message(&p, 1, "bob", "from server B", t0);
    }

    // The worker: no server of its own, through Redis to both servers.
    let out = run_worker(&url, &["--chat", "1", "--text", "from a background job"]).await;
    let reply: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("worker printed no JSON ({e}): {out:?}"));
    assert_eq!(
        reply,
        json!({"event": "message_posted", "rooms": ["chat|1"]})
    );
    for (c, who) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let p = next(c, who, "message_posted").await;
        assert_message(&p, 1, "worker", "from a background job", t0);
    }
    run_worker(
        &url,
        &["--chat", "1", "--text", "signed", "--author", "carol"],
    )
    .await;
    for (c, who) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let p = next(c, who, "message_posted").await;
        assert_message(&p, 1, "carol", "signed", t0);
    }

    // carol, in no chat, got none of it: a notification sent through the
    // other server is her next event.
    a.notify("carol", "marker for carol").await;
    assert_eq!(
        next(&mut carol, "carol", "user_notified").await,
        json!({"user": "carol", "text": "marker for carol"})
    );
    // And the notification went to carol only.
    b.post_message(1, "bob", "marker").await;
    for (c, who) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let p = next(c, who, "message_posted").await;
        assert_message(&p, 1, "bob", "marker", t0);
    }

    // A worker message to chat 2 reaches alice on A, not bob on B.
    run_worker(&url, &["--chat", "2", "--text", "staff only"]).await;
    let p = next(&mut alice, "alice", "message_posted").await;
    assert_message(&p, 2, "worker", "staff only", t0);
    a.post_message(1, "alice", "marker 2").await;
    for (c, who) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let p = next(c, who, "message_posted").await;
        assert_message(&p, 1, "alice", "marker 2", t0);
    }
    b.notify("carol", "marker 3").await;
    assert_eq!(
        next(&mut carol, "carol", "user_notified").await,
        json!({"user": "carol", "text": "marker 3"})
    );

    // toOthers across servers: posted to A, excluding bob's socket on B.
    let bob_sid = bob.sid("/").expect("bob's socket id");
    a.post_message_with(1, "bob", "not for bob", &[("X-Socket-ID", &bob_sid)])
        .await;
    let p = next(&mut alice, "alice", "message_posted").await;
    assert_message(&p, 1, "bob", "not for bob", t0);
    // Through A too: B handles what comes from Redis in order, so had it
    // delivered the message to bob, it would have before the marker.
    a.notify("bob", "marker 4").await;
    assert_eq!(
        next(&mut bob, "bob", "user_notified").await,
        json!({"user": "bob", "text": "marker 4"}),
        "bob's excluded socket on the other server got the message"
    );

    for (c, who) in [
        (&mut alice, "alice"),
        (&mut bob, "bob"),
        (&mut carol, "carol"),
    ] {
        while let Some(ev) = c.try_next_event() {
            assert!(ev.event.starts_with("presence_"), "{who} got more: {ev:?}");
        }
    }
    for c in [alice, bob, carol] {
        let _ = c.disconnect().await;
    }
    drop((a, b));
    drop(redis);
}

/// Redis down under a chat server: a post answers 503 and says that this
/// server's own sockets got the message, which they did; a request refused
/// before broadcasting says nobody got it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_while_redis_is_down_says_whether_it_was_delivered_locally() {
    let Some(mut redis) = RedisServer::start().await.expect("starting redis-server") else {
        return;
    };
    let server = ChatServer::start_with(&[("REDIS_URL", &redis.url())]).await;
    let mut alice = client(&server, "alice").await;
    join(&alice, 1).await;
    assert_eq!(
        next(&mut alice, "alice", "joined").await,
        json!({"room": "chat|1"})
    );
    redis.kill().await.expect("killing redis-server");
    // A chat room keeps history in Redis: without it nothing is delivered,
    // not even locally (its offsets would not be the other servers'), and
    // the answer says so. Within the 2 s command timeout, well inside the
    // HTTP helper's bound.
    let r = server
        .post(
            "/chats/1/messages",
            &json!({"author": "bob", "text": "during the outage"}),
        )
        .await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json()["delivered_locally"], json!(false), "{r:?}");
    // A user's room keeps none: its notification reaches this server's
    // sockets, and the answer says that the other servers missed it.
    let r = server
        .post("/users/alice/notify", &json!({"text": "during the outage"}))
        .await;
    assert_eq!(r.status, 503, "{r:?}");
    let body = r.json();
    assert_eq!(body["delivered_locally"], json!(true), "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("remote delivery failed")),
        "{body}"
    );
    let p = next(&mut alice, "alice", "user_notified").await;
    assert_eq!(p, json!({"user": "alice", "text": "during the outage"}));
    // Refused before any delivery: no `delivered_locally` claim at all.
    let r = server
        .post("/chats/1/messages", &json!({"author": "bob", "text": ""}))
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    assert!(r.json().get("delivered_locally").is_none(), "{r:?}");

    let _ = alice.disconnect().await;
    drop(server);
    drop(redis);
}
