//! Recovery (issue 12) through the chat demo, with the official
//! socket.io-client (`tests/ts/chat_client.mjs`): chat rooms keep their last
//! 1,000 events, every event carries its room position, and a client that
//! joins again with `since` gets what it missed, in order, before its ack,
//! on any server; or `recovered: false` when that cannot be done.
//!
//! Servers are chat example processes: two sharing a harness-started
//! redis-server, or one in memory.

mod chat_common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use broadcast_test_support::redis::RedisServer;
use chat_common::{ChatServer, Event, NodeDriver, npm_ready};
use serde_json::{Value, json};

/// Chat servers sharing one Redis, or a single in-memory one.
struct Cluster {
    servers: Vec<Arc<ChatServer>>,
    redis: Option<RedisServer>,
}

impl Cluster {
    async fn redis() -> Option<Cluster> {
        let redis = RedisServer::start().await.expect("starting redis-server")?;
        let url = redis.url();
        let a = ChatServer::start_with(&[("REDIS_URL", &url)]).await;
        let b = ChatServer::start_with(&[("REDIS_URL", &url)]).await;
        Some(Cluster {
            servers: vec![Arc::new(a), Arc::new(b)],
            redis: Some(redis),
        })
    }

    async fn memory() -> Cluster {
        Cluster {
            servers: vec![Arc::new(ChatServer::start().await)],
            redis: None,
        }
    }

    /// Server `i` (round robin: a single server is every server).
    fn server(&self, i: usize) -> &Arc<ChatServer> {
        &self.servers[i % self.servers.len()]
    }

    fn driver(&self) -> NodeDriver {
        NodeDriver::spawn("chat_client.mjs", &[("CHAT_URL", &self.server(0).url())])
    }
}

fn ready(test: &str) -> bool {
    npm_ready(&["socket.io-client"], test)
}

async fn connect(d: &mut NodeDriver, client: &str, user: &str, server: &ChatServer) {
    d.call_ok(
        json!({"op": "connect", "client": client, "auth": {"user": user},
                     "transports": ["websocket"], "url": server.url()}),
    )
    .await;
}

async fn disconnect(d: &mut NodeDriver, client: &str) {
    d.call_ok(json!({"op": "disconnect", "client": client}))
        .await;
}

/// Joins chat `chat_id`, with `since` when given; returns the ack, without
/// the members of the room (chat rooms have presence too:
/// tests/presence_chat.rs checks them).
async fn join(d: &mut NodeDriver, client: &str, chat_id: u64, since: Option<&Value>) -> Value {
    let mut args = vec![json!({"chat_id": chat_id})];
    if let Some(since) = since {
        args.push(json!({ "since": since }));
    }
    let reply = d
        .call_ok(json!({"op": "emit", "client": client, "event": "join_chat",
                        "args": args, "ack": true}))
        .await;
    let mut ack = reply["ack"].clone();
    if let Some(obj) = ack.as_object_mut() {
        obj.remove("members");
    }
    ack
}

/// A received `message_posted`: its offset, epoch and text.
#[derive(Debug, Clone, PartialEq)]
struct Msg {
    offset: u64,
    epoch: String,
    text: String,
}

fn msg(ev: &Event, room: &str) -> Msg {
    assert_eq!(ev.event, "message_posted", "{ev:?}");
    assert_eq!(
        ev.args.len(),
        2,
        "a history room's event carries its position: {ev:?}"
    );
    let pos = &ev.args[1];
    assert_eq!(pos["room"], room, "{ev:?}");
    assert_eq!(
        pos.as_object().map(|o| o.len()),
        Some(3),
        "position is {{room, offset, epoch}}: {ev:?}"
    );
    Msg {
        offset: pos["offset"].as_u64().expect("an integer offset"),
        epoch: pos["epoch"].as_str().expect("a string epoch").to_owned(),
        text: ev.args[0]["text"].as_str().unwrap_or_default().to_owned(),
    }
}

/// The next `n` events of `client`, all `message_posted` of `room`.
async fn next_messages(d: &mut NodeDriver, client: &str, room: &str, n: usize) -> Vec<Msg> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let ev = d.next_event(client).await;
        out.push(msg(&ev, room));
    }
    out
}

/// The ack's position as a `since` value.
fn position(ack: &Value) -> Value {
    let p = ack["position"].clone();
    assert!(p["offset"].is_u64() && p["epoch"].is_string(), "{ack}");
    p
}

/// The events the client received with its join (the replay, then
/// `joined`): the replayed messages.
fn replayed(events: &[Event], room: &str) -> Vec<Msg> {
    let (last, before) = events.split_last().expect("at least `joined`");
    assert_eq!(last.event, "joined", "`joined` comes last: {events:?}");
    assert_eq!(last.args[0]["room"], room);
    before.iter().map(|e| msg(e, room)).collect()
}

async fn post_all(server: &ChatServer, chat: u64, prefix: &str, range: std::ops::Range<u32>) {
    for i in range {
        server
            .post_message(chat, "bob", &format!("{prefix}{i}"))
            .await;
    }
}

/// The recovery scenario of the issue, on `cluster`: a client on the first
/// server gets 5 messages, leaves, 50 are posted through the second, and it
/// recovers them on the second, in order, before its ack.
async fn recovers_what_it_missed(cluster: &Cluster) {
    let mut d = cluster.driver();
    let (a, b) = (cluster.server(0), cluster.server(1));
    connect(&mut d, "c", "alice", a).await;
    let ack = join(&mut d, "c", 1, None).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["room"], "chat|1");
    assert_eq!(ack["position"]["offset"], 0, "a fresh room: {ack}");
    assert!(
        ack.get("recovered").is_none(),
        "no since, no `recovered`: {ack}"
    );
    let epoch = ack["position"]["epoch"].as_str().unwrap().to_owned();
    let joined = d.next_event("c").await;
    assert_eq!(joined.event, "joined");
    assert_eq!(joined.args[0]["position"], ack["position"]);

    post_all(a, 1, "before ", 0..5).await;
    let got = next_messages(&mut d, "c", "chat|1", 5).await;
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.offset, i as u64 + 1);
        assert_eq!(m.epoch, epoch);
        assert_eq!(m.text, format!("before {i}"));
    }
    disconnect(&mut d, "c").await;

    post_all(b, 1, "missed ", 0..50).await;

    connect(&mut d, "c", "alice", b).await;
    let ack = join(&mut d, "c", 1, Some(&json!({"offset": 5, "epoch": epoch}))).await;
    assert_eq!(
        ack,
        json!({"ok": true, "room": "chat|1", "recovered": true,
               "position": {"offset": 55, "epoch": epoch}})
    );
    // The replay and `joined` arrived before the ack, and nothing else.
    let events = d.events_within("c", Duration::ZERO).await;
    let replay = replayed(&events, "chat|1");
    let offsets: Vec<u64> = replay.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, (6..=55).collect::<Vec<_>>(), "{replay:?}");
    for (i, m) in replay.iter().enumerate() {
        assert_eq!(m.text, format!("missed {i}"));
        assert_eq!(m.epoch, epoch);
    }
    // And live events go on from there.
    b.post_message(1, "bob", "after").await;
    let m = next_messages(&mut d, "c", "chat|1", 1).await;
    assert_eq!((m[0].offset, m[0].text.as_str()), (56, "after"));

    // Nothing to replay: recovered, and nothing sent.
    disconnect(&mut d, "c").await;
    connect(&mut d, "c", "alice", a).await;
    let ack = join(&mut d, "c", 1, Some(&json!({"offset": 56, "epoch": epoch}))).await;
    assert_eq!(ack["recovered"], true, "{ack}");
    let events = d.events_within("c", Duration::ZERO).await;
    assert!(replayed(&events, "chat|1").is_empty());

    // Another epoch, or an offset beyond the room's: not recovered, and
    // nothing replayed.
    for since in [
        json!({"offset": 3, "epoch": "another-epoch"}),
        json!({"offset": 57, "epoch": epoch}),
    ] {
        disconnect(&mut d, "c").await;
        connect(&mut d, "c", "alice", b).await;
        let ack = join(&mut d, "c", 1, Some(&since)).await;
        assert_eq!(
            ack,
            json!({"ok": true, "room": "chat|1", "recovered": false,
                   "position": {"offset": 56, "epoch": epoch}}),
            "since {since}"
        );
        let events = d.events_within("c", Duration::ZERO).await;
        assert!(replayed(&events, "chat|1").is_empty(), "since {since}");
    }
    d.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_recovers_on_another_server() {
    if !ready("a_client_recovers_on_another_server") {
        return;
    }
    let Some(cluster) = Cluster::redis().await else {
        return;
    };
    recovers_what_it_missed(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_recovers_in_memory() {
    if !ready("a_client_recovers_in_memory") {
        return;
    }
    let cluster = Cluster::memory().await;
    recovers_what_it_missed(&cluster).await;
}

/// More events than the room keeps (1,000): not recovered, nothing sent.
async fn too_far_behind(cluster: &Cluster) {
    let mut d = cluster.driver();
    connect(&mut d, "c", "alice", cluster.server(0)).await;
    let since = position(&join(&mut d, "c", 1, None).await);
    assert_eq!(d.next_event("c").await.event, "joined");
    disconnect(&mut d, "c").await;
    // Posted concurrently through every server.
    let mut posters = Vec::new();
    for (i, server) in cluster.servers.iter().enumerate() {
        let server = server.clone();
        let n = 1001 / cluster.servers.len() as u32 + 1;
        posters.push(tokio::spawn(async move {
            post_all(&server, 1, &format!("s{i} "), 0..n).await;
        }));
    }
    for p in posters {
        p.await.unwrap();
    }
    connect(&mut d, "c", "alice", cluster.server(1)).await;
    let ack = join(&mut d, "c", 1, Some(&since)).await;
    assert_eq!(ack["recovered"], false, "{ack}");
    assert!(ack["position"]["offset"].as_u64().unwrap() >= 1001, "{ack}");
    assert_eq!(ack["position"]["epoch"], since["epoch"], "{ack}");
    let events = d.events_within("c", Duration::ZERO).await;
    assert!(replayed(&events, "chat|1").is_empty(), "{events:?}");
    d.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_the_history_holds_is_not_recovered() {
    if !ready("more_than_the_history_holds_is_not_recovered") {
        return;
    }
    too_far_behind(&Cluster::memory().await).await;
    if let Some(cluster) = Cluster::redis().await {
        too_far_behind(&cluster).await;
    }
}

/// Someone who may not join recovers nothing; malformed `since` is a
/// validation error; a client that never sends `since` works as before.
async fn refusals(cluster: &Cluster) {
    let mut d = cluster.driver();
    // History exists in chat 2 (alice and carol only).
    cluster.server(0).post_message(2, "alice", "secret").await;
    connect(&mut d, "bob", "bob", cluster.server(1)).await;
    let ack = join(&mut d, "bob", 2, Some(&json!({"offset": 0, "epoch": "x"}))).await;
    assert_eq!(
        ack,
        json!({"ok": false, "error": {"type": "forbidden", "room": "chat|2"}})
    );
    let events = d.events_within("bob", Duration::ZERO).await;
    assert_eq!(events.len(), 1, "only the error event: {events:?}");
    assert_eq!(events[0].event, "error");

    for bad in [
        json!({"since": {"offset": -1, "epoch": "e"}}),
        json!({"since": {"offset": 1.5, "epoch": "e"}}),
        json!({"since": {"offset": "1", "epoch": "e"}}),
        json!({"since": {"offset": 1, "epoch": 7}}),
        json!({"since": {"offset": 1, "epoch": "e", "extra": true}}),
        json!({"since": {"offset": 1}}),
        json!({"since": [1, "e"]}),
        json!({"sinse": {"offset": 1, "epoch": "e"}}),
        json!("since"),
    ] {
        let reply = d
            .call_ok(json!({"op": "emit", "client": "bob", "event": "join_chat",
                            "args": [{"chat_id": 1}, bad], "ack": true}))
            .await;
        let ack = &reply["ack"];
        assert_eq!(ack["ok"], false, "{bad}: {ack}");
        assert_eq!(ack["error"]["type"], "validation_error", "{bad}: {ack}");
        assert_eq!(ack["error"]["key"], "chat", "{bad}: {ack}");
        let events = d.events_within("bob", Duration::ZERO).await;
        assert_eq!(events.len(), 1, "{bad}: {events:?}");
        assert_eq!(events[0].event, "error", "{bad}");
    }
    // An explicit `null` is no options at all.
    let reply = d
        .call_ok(json!({"op": "emit", "client": "bob", "event": "join_chat",
                        "args": [{"chat_id": 1}, null], "ack": true}))
        .await;
    assert_eq!(reply["ack"]["ok"], true, "{reply}");
    d.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_access_no_replay_and_bad_since_is_refused() {
    if !ready("no_access_no_replay_and_bad_since_is_refused") {
        return;
    }
    refusals(&Cluster::memory().await).await;
    if let Some(cluster) = Cluster::redis().await {
        refusals(&cluster).await;
    }
}

/// Two processes broadcast 1,000 events each to one room at once: both
/// servers' subscribers see offsets 1..2000, contiguous and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_broadcasters_keep_one_order() {
    if !ready("concurrent_broadcasters_keep_one_order") {
        return;
    }
    let Some(cluster) = Cluster::redis().await else {
        return;
    };
    let mut d = cluster.driver();
    for (client, i) in [("on_a", 0), ("on_b", 1)] {
        connect(&mut d, client, "alice", cluster.server(i)).await;
        let ack = join(&mut d, client, 1, None).await;
        assert_eq!(ack["position"]["offset"], 0, "{ack}");
        assert_eq!(d.next_event(client).await.event, "joined");
    }
    // Each server posts 1,000 from 4 concurrent requesters.
    let mut posters = Vec::new();
    for (s, server) in cluster.servers.iter().enumerate() {
        for t in 0..4u32 {
            let server = server.clone();
            posters.push(tokio::spawn(async move {
                post_all(&server, 1, &format!("{s}.{t}."), t * 250..(t + 1) * 250).await;
            }));
        }
    }
    for p in posters {
        p.await.unwrap();
    }
    let mut seen = Vec::new();
    for client in ["on_a", "on_b"] {
        let got = next_messages(&mut d, client, "chat|1", 2000).await;
        let offsets: Vec<u64> = got.iter().map(|m| m.offset).collect();
        assert_eq!(offsets, (1..=2000).collect::<Vec<_>>(), "{client}");
        let texts: Vec<String> = got.into_iter().map(|m| m.text).collect();
        seen.push(texts);
    }
    assert_eq!(seen[0], seen[1], "both servers' clients see one order");
    d.finish().await;
}

/// While about 200 messages a second are posted through both servers, a
/// client reconnects 20 times, alternating servers, each time with `since`:
/// no offset is ever missing. Duplicates are counted and printed (the
/// server avoids them; none is expected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_under_load_misses_no_offset() {
    if !ready("reconnecting_under_load_misses_no_offset") {
        return;
    }
    let Some(cluster) = Cluster::redis().await else {
        return;
    };
    let stop = Arc::new(AtomicBool::new(false));
    let posted = Arc::new(AtomicU64::new(0));
    let mut posters = Vec::new();
    for (s, server) in cluster.servers.iter().enumerate() {
        let (server, stop, posted) = (server.clone(), stop.clone(), posted.clone());
        posters.push(tokio::spawn(async move {
            let mut i = 0u64;
            // 100/s per server: each post, then 10 ms.
            while !stop.load(Ordering::Relaxed) {
                server.post_message(1, "bob", &format!("{s}:{i}")).await;
                posted.fetch_add(1, Ordering::Relaxed);
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    let mut d = cluster.driver();
    connect(&mut d, "c", "carol", cluster.server(0)).await;
    let first = position(&join(&mut d, "c", 1, None).await);
    let start = first["offset"].as_u64().unwrap();
    let mut since = first;
    let mut received: BTreeMap<u64, u32> = BTreeMap::new();
    let mut recovered = 0;
    let mut take = |events: Vec<Event>, since: &mut Value| {
        for ev in events.iter().filter(|e| e.event == "message_posted") {
            let m = msg(ev, "chat|1");
            *received.entry(m.offset).or_default() += 1;
            *since = json!({"offset": m.offset, "epoch": m.epoch});
        }
    };
    for round in 1..=21 {
        // Live for a moment, then away for a moment.
        take(
            d.events_within("c", Duration::from_millis(150)).await,
            &mut since,
        );
        if round == 21 {
            break;
        }
        disconnect(&mut d, "c").await;
        // What arrived before the disconnect took effect.
        take(d.events_within("c", Duration::ZERO).await, &mut since);
        tokio::time::sleep(Duration::from_millis(100)).await;
        connect(&mut d, "c", "carol", cluster.server(round)).await;
        let ack = join(&mut d, "c", 1, Some(&since)).await;
        assert_eq!(ack["recovered"], true, "round {round}: {ack}");
        recovered += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for p in posters {
        p.await.unwrap();
    }
    // Whatever was posted last arrives live.
    // A fresh Redis: every post took the next offset from 1.
    let total = posted.load(Ordering::Relaxed);
    for _ in 0..100 {
        take(
            d.events_within("c", Duration::from_millis(100)).await,
            &mut since,
        );
        if since["offset"].as_u64() >= Some(total) {
            break;
        }
    }
    let missing: Vec<u64> = (start + 1..=total)
        .filter(|o| !received.contains_key(o))
        .collect();
    let duplicates: u32 = received.values().map(|n| n - 1).sum();
    let twice: Vec<u64> = received
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(o, _)| *o)
        .collect();
    println!("duplicated offsets: {twice:?}");
    println!(
        "reconnects: {recovered}, offsets {}..={total} ({} events), missing: {}, duplicates: {duplicates}",
        start + 1,
        total - start,
        missing.len()
    );
    assert!(missing.is_empty(), "missing offsets: {missing:?}");
    assert_eq!(duplicates, 0, "duplicate deliveries");
    assert!(
        total - start > 200,
        "only {} messages were posted",
        total - start
    );
    d.finish().await;
}

/// Runs the worker example once.
async fn worker(redis_url: &str, text: &str) {
    let out = std::process::Command::new(chat_common::example_bin("worker"))
        .args(["--chat", "1", "--text", text])
        .env("REDIS_URL", redis_url)
        .output()
        .expect("running the worker example");
    assert!(out.status.success(), "worker: {out:?}");
}

/// The worker's events carry positions and are recovered; after Redis
/// restarts (without persistence), an old position is not recovered and
/// new events have a new epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_events_recover_and_a_redis_restart_changes_the_epoch() {
    if !ready("worker_events_recover_and_a_redis_restart_changes_the_epoch") {
        return;
    }
    let Some(mut cluster) = Cluster::redis().await else {
        return;
    };
    let url = cluster.redis.as_ref().unwrap().url();
    let mut d = cluster.driver();
    connect(&mut d, "c", "alice", cluster.server(0)).await;
    let since = position(&join(&mut d, "c", 1, None).await);
    let epoch = since["epoch"].as_str().unwrap().to_owned();
    assert_eq!(d.next_event("c").await.event, "joined");
    worker(&url, "job 1").await;
    let m = next_messages(&mut d, "c", "chat|1", 1).await;
    assert_eq!((m[0].offset, m[0].text.as_str()), (1, "job 1"));
    disconnect(&mut d, "c").await;
    worker(&url, "job 2").await;
    worker(&url, "job 3").await;
    connect(&mut d, "c", "alice", cluster.server(1)).await;
    let ack = join(&mut d, "c", 1, Some(&json!({"offset": 1, "epoch": epoch}))).await;
    assert_eq!(ack["recovered"], true, "{ack}");
    let events = d.events_within("c", Duration::ZERO).await;
    let texts: Vec<String> = replayed(&events, "chat|1")
        .into_iter()
        .map(|m| format!("{} {}", m.offset, m.text))
        .collect();
    assert_eq!(texts, ["2 job 2", "3 job 3"]);
    disconnect(&mut d, "c").await;

    // Redis loses everything.
    cluster
        .redis
        .as_mut()
        .unwrap()
        .restart()
        .await
        .expect("restarting redis-server");
    // The servers reconnect and re-subscribe by themselves; a post fails
    // (503) until they have.
    let a = cluster.server(0).clone();
    let mut ok = false;
    for _ in 0..100 {
        let r = a
            .post(
                "/chats/1/messages",
                &json!({"author": "bob", "text": "after restart"}),
            )
            .await;
        if r.status == 202 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "posting never worked again after the restart");
    connect(&mut d, "c", "alice", cluster.server(1)).await;
    let ack = join(&mut d, "c", 1, Some(&json!({"offset": 3, "epoch": epoch}))).await;
    assert_eq!(ack["recovered"], false, "{ack}");
    let new_epoch = ack["position"]["epoch"].as_str().unwrap().to_owned();
    assert_ne!(new_epoch, epoch, "{ack}");
    assert_eq!(ack["position"]["offset"], 1, "{ack}");
    let events = d.events_within("c", Duration::ZERO).await;
    assert!(replayed(&events, "chat|1").is_empty());
    cluster.server(1).post_message(1, "bob", "next").await;
    let m = next_messages(&mut d, "c", "chat|1", 1).await;
    assert_eq!(m[0].epoch, new_epoch);
    assert_eq!(m[0].offset, 2);
    d.finish().await;
}
