//! Presence in the chat demo, driven by the official `socket.io-client`
//! (`tests/ts/chat_client.mjs`): chat servers as processes, in memory and
//! two of them over a harness-started Redis; the wire contract of issue 13.
//!
//! "Nothing was sent" is shown by order: after the suspect change a chat
//! message (a marker) is posted, and the client's next event must be that
//! marker. A short pause before the marker lets a wrong frame, if a server
//! sent one, arrive first.

mod chat_common;

use std::time::{Duration, Instant};

use broadcast_test_support::redis::RedisServer;
use chat_common::{ChatServer, NodeDriver, npm_ready};
use serde_json::{Value, json};

/// Long enough for a frame already sent to arrive; not a pass condition.
const SETTLE: Duration = Duration::from_millis(300);

async fn connect(d: &mut NodeDriver, client: &str, user: &str, server: &ChatServer) {
    let reply = d
        .call(
            json!({"op": "connect", "client": client, "auth": {"user": user},
                     "url": server.url(), "presence": true}),
        )
        .await;
    assert_eq!(reply["ok"], json!(true), "connect {client}: {reply}");
}

/// Joins chat `chat` and returns the member ids of the ack, checking the
/// rest of it.
async fn join(d: &mut NodeDriver, client: &str, chat: u64) -> Vec<String> {
    let reply = d
        .call_ok(json!({"op": "emit", "client": client, "event": "join_chat",
                        "args": [{"chat_id": chat}], "ack": true}))
        .await;
    let ack = &reply["ack"];
    assert_eq!(ack["ok"], json!(true), "{ack}");
    assert_eq!(ack["room"], json!(format!("chat|{chat}")), "{ack}");
    // Chat rooms keep history too: `joined` has the room's position
    // (tests/chat_recovery.rs checks it).
    let mut joined = d.expect_event(client, "joined").await;
    if let Some(obj) = joined.as_object_mut() {
        obj.remove("position");
    }
    assert_eq!(joined, json!({"room": format!("chat|{chat}")}));
    ids(&ack["members"])
}

fn ids(members: &Value) -> Vec<String> {
    let list = members
        .as_array()
        .unwrap_or_else(|| panic!("members is not an array: {members}"));
    let ids: Vec<String> = list
        .iter()
        .map(|m| {
            m["id"]
                .as_str()
                .unwrap_or_else(|| panic!("member without an id: {m}"))
                .to_owned()
        })
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "members are sorted by id");
    ids
}

async fn http_members(server: &ChatServer, chat: u64) -> Vec<String> {
    let r = server.get(&format!("/chats/{chat}/members")).await;
    assert_eq!(r.status, 200, "{r:?}");
    ids(&r.json()["members"])
}

fn notice(user: &str) -> Value {
    json!({"room": "chat|1", "member": {"id": user}})
}

/// Posts a marker to chat 1 through `via`; each of `clients` must get it as
/// its next event.
async fn marker(d: &mut NodeDriver, via: &ChatServer, clients: &[&str], text: &str) {
    tokio::time::sleep(SETTLE).await;
    via.post_message(1, "bob", text).await;
    for c in clients {
        let p = d.expect_event(c, "message_posted").await;
        assert_eq!(p["text"], json!(text), "{c}: {p}");
    }
}

/// The contract on servers `a` and `b` (the same server in memory).
async fn contract(d: &mut NodeDriver, a: &ChatServer, b: &ChatServer) {
    connect(d, "alice", "alice", a).await;
    connect(d, "carol", "carol", b).await;
    assert_eq!(join(d, "alice", 1).await, ["alice"]);
    assert_eq!(join(d, "carol", 1).await, ["alice", "carol"]);
    assert_eq!(
        d.expect_event("alice", "presence_joined").await,
        notice("carol")
    );

    // A second connection of alice, on the other server: nobody is told.
    connect(d, "alice2", "alice", b).await;
    assert_eq!(join(d, "alice2", 1).await, ["alice", "carol"]);
    marker(d, a, &["alice", "carol", "alice2"], "marker 1").await;
    for s in [a, b] {
        assert_eq!(http_members(s, 1).await, ["alice", "carol"]);
    }

    // Leaving from one of two connections: nobody is told.
    let reply = d
        .call_ok(
            json!({"op": "emit", "client": "alice", "event": "leave_chat",
                        "args": [{"chat_id": 1}], "ack": true}),
        )
        .await;
    assert_eq!(reply["ack"], json!({"ok": true, "room": "chat|1"}));
    assert_eq!(
        d.expect_event("alice", "left").await,
        json!({"room": "chat|1"})
    );
    marker(d, b, &["carol", "alice2"], "marker 2").await;
    for s in [a, b] {
        assert_eq!(http_members(s, 1).await, ["alice", "carol"]);
    }

    // Her last connection goes: carol is told once.
    d.call_ok(json!({"op": "disconnect", "client": "alice2"}))
        .await;
    assert_eq!(
        d.expect_event("carol", "presence_left").await,
        notice("alice")
    );
    marker(d, a, &["carol"], "marker 3").await;
    for s in [a, b] {
        assert_eq!(http_members(s, 1).await, ["carol"]);
    }
    // Another chat has its own members; an unknown chat is a 404.
    assert!(http_members(a, 2).await.is_empty());
    assert_eq!(a.get("/chats/99/members").await.status, 404);
    assert_eq!(a.get("/chats/x/members").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_on_two_chat_servers_over_redis() {
    if !npm_ready(
        &["socket.io-client"],
        "presence_on_two_chat_servers_over_redis",
    ) {
        return;
    }
    let Some(redis) = RedisServer::start().await.expect("starting redis-server") else {
        return;
    };
    let url = redis.url();
    let a = ChatServer::start_with(&[("REDIS_URL", &url)]).await;
    let b = ChatServer::start_with(&[("REDIS_URL", &url)]).await;
    let mut d = NodeDriver::spawn("chat_client.mjs", &[("CHAT_URL", &a.url())]);
    contract(&mut d, &a, &b).await;
    d.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_on_one_chat_server_in_memory() {
    if !npm_ready(
        &["socket.io-client"],
        "presence_on_one_chat_server_in_memory",
    ) {
        return;
    }
    let a = ChatServer::start().await;
    let mut d = NodeDriver::spawn("chat_client.mjs", &[("CHAT_URL", &a.url())]);
    contract(&mut d, &a, &a).await;
    d.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_servers_members_leave_within_15_seconds() {
    if !npm_ready(
        &["socket.io-client"],
        "a_killed_servers_members_leave_within_15_seconds",
    ) {
        return;
    }
    let Some(redis) = RedisServer::start().await.expect("starting redis-server") else {
        return;
    };
    let url = redis.url();
    let mut a = ChatServer::start_with(&[("REDIS_URL", &url)]).await;
    let b = ChatServer::start_with(&[("REDIS_URL", &url)]).await;
    let mut d = NodeDriver::spawn("chat_client.mjs", &[("CHAT_URL", &b.url())]);
    connect(&mut d, "dave", "dave", &a).await;
    connect(&mut d, "carol", "carol", &b).await;
    assert_eq!(join(&mut d, "dave", 1).await, ["dave"]);
    assert_eq!(join(&mut d, "carol", 1).await, ["carol", "dave"]);
    assert_eq!(
        d.expect_event("dave", "presence_joined").await,
        notice("carol")
    );

    a.kill();
    let killed = Instant::now();
    // The client's own disconnect comes first, then carol's frame.
    let ev = loop {
        let ev = d.next_event("carol").await;
        if ev.event == "presence_left" {
            break ev;
        }
        assert!(ev.event != "presence_joined", "{ev:?}");
    };
    let took = killed.elapsed();
    assert_eq!(ev.data(), &notice("dave"));
    assert!(
        took < Duration::from_secs(15),
        "presence_left after {took:?}"
    );
    assert_eq!(http_members(&b, 1).await, ["carol"]);
    eprintln!("presence_left for a SIGKILLed server's member after {took:?}");
    d.finish().await;
}
