//! Presence over Redis, in process: two servers on a harness-started
//! `redis-server`, clients of the test's Socket.IO client. Hooks fire once
//! per transition across both servers, churn leaves both servers and every
//! observer with the same members, a Redis restart is repaired by the
//! servers themselves, and bad input (from the application, from Redis)
//! is refused or skipped with an error, never a panic.
#![deny(warnings)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broadcast_core::Room;
use broadcast_core::join::{Handshake, JoinContext, Rooms};
use broadcast_core::presence::{PresenceChange, PresenceKind};
use broadcast_core::redis::{RedisConfig, RedisSocketIo};
use broadcast_test_support::redis::RedisServer;
use broadcast_test_support::server::TestServer;
use broadcast_test_support::sio_client::SioClient;
use serde_json::{Value, json};

/// Upper bound for any single wait; never a pass condition.
const T: Duration = Duration::from_secs(15);

#[derive(Room)]
#[room(public, presence)]
struct LobbyRoom(u64);

struct User(String);

async fn authenticate(h: Handshake) -> Result<Option<User>, String> {
    Ok(h.auth()["user"].as_str().map(|u| User(u.to_owned())))
}

type Log = Arc<Mutex<Vec<(usize, PresenceChange)>>>;

/// Server `idx` on Redis, recording its presence hooks in `log`.
async fn node(url: &str, idx: usize, log: &Log) -> (RedisSocketIo, TestServer) {
    let parts = broadcast_core::redis::server(RedisConfig::from_url(url).unwrap())
        .await
        .unwrap();
    let log = log.clone();
    let rooms = Rooms::builder()
        .authenticate(authenticate)
        .join_rate(1000, f64::INFINITY)
        .presence_member(|ctx: &JoinContext| {
            let user = ctx.identity::<User>()?;
            Some(match user.0.as_str() {
                // An application bug: a member without an id.
                "noid" => json!({"name": "noid"}),
                name => json!({"id": name}),
            })
        })
        .on_presence(move |c: PresenceChange| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push((idx, c));
            }
        })
        .build()
        .unwrap();
    rooms.attach(&parts.io).await.unwrap();
    let server = TestServer::serve(parts.layer.clone()).await.unwrap();
    (parts, server)
}

/// Two servers on Redis `url`, sharing one hook log.
async fn two_nodes(
    url: &str,
) -> (
    Log,
    (RedisSocketIo, TestServer),
    (RedisSocketIo, TestServer),
) {
    let log: Log = Arc::default();
    let a = node(url, 0, &log).await;
    let b = node(url, 1, &log).await;
    (log, a, b)
}

async fn client(server: &TestServer, user: &str) -> SioClient {
    SioClient::connect(server.addr, "/", Some(json!({"user": user})))
        .await
        .unwrap()
}

async fn join(c: &SioClient, room: u64) -> Value {
    let ack = c
        .emit_with_ack("/", "join_lobby", vec![json!(room)], T)
        .await
        .unwrap();
    ack[0].clone()
}

async fn leave(c: &SioClient, room: u64) {
    let ack = c
        .emit_with_ack("/", "leave_lobby", vec![json!(room)], T)
        .await
        .unwrap();
    assert_eq!(ack[0]["ok"], json!(true), "{ack:?}");
}

fn ids(members: &Value) -> BTreeSet<String> {
    members
        .as_array()
        .unwrap_or_else(|| panic!("{members}"))
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn members(parts: &RedisSocketIo, room: u64) -> BTreeSet<String> {
    parts
        .presence
        .members_of(&LobbyRoom(room))
        .await
        .unwrap()
        .iter()
        .map(|m| m.id().to_owned())
        .collect()
}

/// Waits until `log` has `n` entries, then a little more for a wrong extra.
async fn hooks(log: &Log, n: usize) -> Vec<(usize, PresenceKind, Option<String>)> {
    let deadline = Instant::now() + T;
    while log.lock().unwrap().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    log.lock()
        .unwrap()
        .iter()
        .map(|(i, c)| (*i, c.kind, c.member.as_ref().map(|m| m.id().to_owned())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_fire_once_per_transition_across_two_servers() {
    let Some(redis) = RedisServer::start().await.expect("starting redis-server") else {
        return;
    };
    let (log, (a, sa), (b, sb)) = two_nodes(&redis.url()).await;

    let alice1 = client(&sa, "alice").await;
    let alice2 = client(&sb, "alice").await;
    let carol = client(&sb, "carol").await;
    assert_eq!(
        ids(&join(&alice1, 1).await["members"]),
        ["alice".into()].into()
    );
    assert_eq!(
        ids(&join(&alice2, 1).await["members"]),
        ["alice".into()].into()
    );
    let ack = join(&carol, 1).await;
    assert_eq!(ack["members"], json!([{"id": "alice"}, {"id": "carol"}]));
    for s in [&a, &b] {
        assert_eq!(s.presence.count_of(&LobbyRoom(1)).await.unwrap(), 2);
    }
    leave(&alice1, 1).await;
    alice2.disconnect().await.unwrap();
    leave(&carol, 1).await;

    use PresenceKind::*;
    let got = hooks(&log, 6).await;
    let want = [
        (0, Occupied, None),
        (0, Joined, Some("alice".to_owned())),
        (1, Joined, Some("carol".to_owned())),
        (1, Left, Some("alice".to_owned())),
        (1, Left, Some("carol".to_owned())),
        (1, Vacated, None),
    ];
    let mut sorted = got.clone();
    sorted.sort_by_key(|(i, k, m)| (format!("{k:?}{m:?}"), *i));
    let mut want_sorted = want.to_vec();
    want_sorted.sort_by_key(|(i, k, m)| (format!("{k:?}{m:?}"), *i));
    assert_eq!(sorted, want_sorted, "hooks: {got:?}");
    for s in [&a, &b] {
        assert!(members(s, 1).await.is_empty());
    }
    drop((alice1, carol, sa, sb));
}

/// A tiny deterministic generator: the churn is random but repeatable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Applies one presence frame to a member set.
fn apply(set: &mut BTreeSet<String>, event: &str, data: &Value) {
    let id = |m: &Value| m["id"].as_str().unwrap().to_owned();
    match event {
        "presence_joined" => {
            set.insert(id(&data["member"]));
        }
        "presence_left" => {
            set.remove(&id(&data["member"]));
        }
        "presence_diff" => {
            for m in data["left"].as_array().unwrap() {
                set.remove(&id(m));
            }
            for m in data["joined"].as_array().unwrap() {
                set.insert(id(m));
            }
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_leaves_servers_and_observers_agreeing() {
    let Some(redis) = RedisServer::start().await.expect("starting redis-server") else {
        return;
    };
    let (log, (a, sa), (b, sb)) = two_nodes(&redis.url()).await;

    // Observers join first; every frame after their join is applied to the
    // ack's list.
    let mut observers = Vec::new();
    for (name, s) in [("obsa", &sa), ("obsb", &sb)] {
        let c = client(s, name).await;
        let ack = join(&c, 7).await;
        observers.push((name, c, ids(&ack["members"])));
    }

    // 50 connections of 20 users, half on each server, joining and leaving
    // at random for a few seconds.
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let server = if i % 2 == 0 { sa.addr } else { sb.addr };
        let user = format!("u{}", i % 20);
        tasks.push(tokio::spawn(async move {
            let c = SioClient::connect(server, "/", Some(json!({"user": user})))
                .await
                .unwrap();
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i + 1));
            let mut inside = false;
            let end = Instant::now() + Duration::from_secs(3);
            while Instant::now() < end {
                if inside {
                    leave(&c, 7).await;
                } else {
                    assert_eq!(join(&c, 7).await["ok"], json!(true));
                }
                inside = !inside;
                tokio::time::sleep(Duration::from_millis(rng.next() % 60)).await;
            }
            // Some end inside, some end by disconnecting while inside.
            if inside && rng.next().is_multiple_of(3) {
                c.disconnect().await.unwrap();
                return (i, false, None);
            }
            (i, inside, Some(c))
        }));
    }
    let mut expected: BTreeSet<String> = ["obsa".into(), "obsb".into()].into();
    let mut keep = Vec::new();
    for t in tasks {
        let (i, inside, c) = t.await.unwrap();
        if inside {
            expected.insert(format!("u{}", i % 20));
        }
        keep.push(c);
    }

    // Both servers answer the same from Redis (disconnects may still be
    // on their way).
    let deadline = Instant::now() + T;
    loop {
        let (ma, mb) = (members(&a, 7).await, members(&b, 7).await);
        if ma == expected && mb == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "servers: {ma:?} / {mb:?}, want {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Each observer's frames, applied in order, give the same set.
    let mut frames = 0;
    for (name, c, set) in &mut observers {
        let deadline = Instant::now() + T;
        while *set != expected {
            let ev = c
                .next_event(deadline.saturating_duration_since(Instant::now()))
                .await
                .unwrap_or_else(|e| panic!("{name}: {set:?} != {expected:?}: {e}"));
            frames += 1;
            apply(set, &ev.event, &ev.args[0]);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        while let Some(ev) = c.try_next_event() {
            frames += 1;
            apply(set, &ev.event, &ev.args[0]);
        }
        assert_eq!(*set, expected, "{name}");
    }
    // Hooks: per member, joins minus leaves is 1 for those present, 0 for
    // the others; the room was occupied once more than vacated.
    let got = hooks(&log, 0).await;
    for user in (0..20)
        .map(|u| format!("u{u}"))
        .chain(["obsa".into(), "obsb".into()])
    {
        let count = |k| {
            got.iter()
                .filter(|(_, kind, m)| *kind == k && m.as_deref() == Some(&user))
                .count() as i64
        };
        let present = i64::from(expected.contains(&user));
        assert_eq!(
            count(PresenceKind::Joined) - count(PresenceKind::Left),
            present,
            "{user}"
        );
    }
    let edges = |k| got.iter().filter(|(_, kind, _)| *kind == k).count();
    assert_eq!(
        edges(PresenceKind::Occupied),
        edges(PresenceKind::Vacated) + 1
    );
    eprintln!(
        "churn: {} hooks, {frames} frames to observers, {} members at the end",
        got.len(),
        expected.len()
    );
    drop((keep, observers, sa, sb));
}

/// Both servers' member lists, once equal to `want` (or after `T`).
async fn lists_become(a: &RedisSocketIo, b: &RedisSocketIo, room: u64, want: &BTreeSet<String>) {
    let since = Instant::now();
    loop {
        let ids = |r: Result<Vec<broadcast_core::presence::Member>, _>| {
            r.map(|v| v.iter().map(|m| m.id().to_owned()).collect::<BTreeSet<_>>())
                .unwrap_or_default()
        };
        let ma = ids(a.presence.members_of(&LobbyRoom(room)).await);
        let mb = ids(b.presence.members_of(&LobbyRoom(room)).await);
        if &ma == want && &mb == want {
            return;
        }
        assert!(since.elapsed() < T, "lists {ma:?} / {mb:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Redis loses everything while alice and carol stay and bob goes. The
/// servers put their members back silently (clients never saw them leave:
/// no `presence_joined`, no hook), and bob's leave, which Redis could not
/// see, still reaches the observer and the hooks once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_restore_their_members_after_a_redis_restart() {
    let Some(mut redis) = RedisServer::start().await.expect("starting redis-server") else {
        return;
    };
    let (log, (a, sa), (b, sb)) = two_nodes(&redis.url()).await;
    let mut dave = client(&sa, "dave").await;
    let mut seen = ids(&join(&dave, 3).await["members"]);
    let alice = client(&sa, "alice").await;
    let carol = client(&sb, "carol").await;
    let bob = client(&sb, "bob").await;
    for c in [&alice, &carol, &bob] {
        join(c, 3).await;
    }
    let set = |v: &[&str]| {
        v.iter()
            .map(|s| (*s).to_owned())
            .collect::<BTreeSet<String>>()
    };
    let all = set(&["alice", "bob", "carol", "dave"]);
    lists_become(&a, &b, 3, &all).await;
    // dave's view is complete, and the hooks of the joins are in.
    while seen != all {
        let ev = dave.next_event(T).await.unwrap();
        apply(&mut seen, &ev.event, &ev.args[0]);
    }
    assert_eq!(hooks(&log, 5).await.len(), 5);
    log.lock().unwrap().clear();

    redis.kill().await.unwrap();
    // bob leaves while Redis is down, past the command timeout: his leave
    // fails and is retried against a Redis that no longer knows him.
    bob.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    redis.restart().await.unwrap();
    let back = Instant::now();
    let stay = set(&["alice", "carol", "dave"]);
    lists_become(&a, &b, 3, &stay).await;
    let took = back.elapsed();
    eprintln!("members restored {took:?} after Redis came back");
    assert!(took < Duration::from_secs(5), "restored after {took:?}");

    // dave hears of bob's leave and of nothing else.
    let mut frames = Vec::new();
    while seen != stay {
        let ev = dave.next_event(T).await.unwrap();
        apply(&mut seen, &ev.event, &ev.args[0]);
        frames.push(ev);
    }
    // Two heartbeats for a late restore's frames.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while let Some(ev) = dave.try_next_event() {
        apply(&mut seen, &ev.event, &ev.args[0]);
        frames.push(ev);
    }
    assert_eq!(seen, stay);
    for f in &frames {
        let joined = f.event == "presence_joined"
            || (f.event == "presence_diff" && f.args[0]["joined"] != json!([]));
        assert!(!joined, "a restored member was announced: {frames:?}");
    }
    assert_eq!(
        hooks(&log, 1).await,
        [(1, PresenceKind::Left, Some("bob".to_owned()))],
        "hooks after the restart"
    );

    // And they work on: carol leaves, everyone's lists follow.
    leave(&carol, 3).await;
    lists_become(&a, &b, 3, &set(&["alice", "dave"])).await;
    let ev = dave.next_event(T).await.unwrap();
    apply(&mut seen, &ev.event, &ev.args[0]);
    assert_eq!(seen, set(&["alice", "dave"]), "{ev:?}");
    drop((alice, carol, sa, sb));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_members_and_bad_redis_data_are_errors_not_panics() {
    let Some(redis) = RedisServer::start().await.expect("starting redis-server") else {
        return;
    };
    let log: Log = Arc::default();
    let (a, sa) = node(&redis.url(), 0, &log).await;

    // The application's member has no id: the join is refused, clearly,
    // and the socket is not left in the room.
    let noid = client(&sa, "noid").await;
    let ack = join(&noid, 5).await;
    assert_eq!(ack["ok"], json!(false), "{ack}");
    let msg = ack["error"]["msg"].as_str().unwrap();
    assert!(msg.contains("lobby|5") && msg.contains("`id`"), "{msg}");
    assert!(members(&a, 5).await.is_empty());

    // An anonymous socket joins, and is no member.
    let anon = SioClient::connect(sa.addr, "/", None).await.unwrap();
    let ack = join(&anon, 5).await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    assert_eq!(ack["members"], json!(null), "{ack}");

    // Garbage in Redis is skipped (and logged); the rest still answers.
    let alice = client(&sa, "alice").await;
    join(&alice, 5).await;
    let key = "socket.io-presence:{/\u{1f}lobby|5}:m";
    for (field, value) in [("x", "not json"), ("y", "{\"id\": 7}"), ("z", "[1,2]")] {
        let _: i64 = redis.command(["HSET", key, field, value]).await.unwrap();
    }
    assert_eq!(members(&a, 5).await, ["alice".into()].into());
    let carol = client(&sa, "carol").await;
    let ack = join(&carol, 5).await;
    assert_eq!(ack["members"], json!([{"id": "alice"}, {"id": "carol"}]));
    // A connection hash pointing at a member that is garbage: the leave
    // reports it and the socket still leaves.
    let _: i64 = redis
        .command(["HSET", key, "alice", "{broken"])
        .await
        .unwrap();
    leave(&alice, 5).await;
    drop((noid, anon, alice, carol, sa));
}

/// How many `HVALS` (full reads of a member hash) Redis has run, scripts'
/// included.
async fn full_reads(redis: &RedisServer) -> u64 {
    let info: String = redis.command(["INFO", "commandstats"]).await.unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_hvals:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// A store that kept a large room's list reads only what changed since
/// (the room's log), on both servers, through joins, leaves and join acks;
/// when the log cannot serve (a writer that logs nothing, an entry that is
/// not the scripts'), it reads the whole list again, never a wrong one. A
/// store that kept nothing (a worker's first query) reads the snapshot the
/// last full read left, and the log after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_lists_follow_a_large_room_through_its_log() {
    let Some(redis) = RedisServer::start().await.expect("starting redis-server") else {
        return;
    };
    let (_, (a, sa), (b, sb)) = two_nodes(&redis.url()).await;
    // 1,000 members written as the scripts write them (1,000 clients would
    // only slow the test): the room keeps a log of 1,000 / 32 = 31
    // versions, and a snapshot.
    let base = "socket.io-presence:{/\u{1f}lobby|9}";
    let mut truth: BTreeSet<String> = (0..1000).map(|i| format!("u{i:04}")).collect();
    let mut hset = vec!["HSET".to_owned(), format!("{base}:m")];
    for id in &truth {
        hset.extend([id.clone(), format!("{{\"id\":\"{id}\"}}")]);
    }
    let _: i64 = redis.command(hset).await.unwrap();

    let users = ["alice", "bob", "carol", "dave"];
    let mut clients = Vec::new();
    for (i, user) in users.iter().enumerate() {
        clients.push(client(if i % 2 == 0 { &sa } else { &sb }, user).await);
    }
    // alice's join creates the version; both stores keep a list of it.
    assert_eq!(ids(&join(&clients[0], 9).await["members"]).len(), 1001);
    truth.insert("alice".into());
    assert_eq!(members(&a, 9).await, truth);
    assert_eq!(members(&b, 9).await, truth);

    let reads = full_reads(&redis).await;
    let mut inside = [true, false, false, false];
    for round in 0..40 {
        let i = 1 + round % 3;
        if inside[i] {
            leave(&clients[i], 9).await;
            truth.remove(users[i]);
        } else {
            let ack = join(&clients[i], 9).await;
            truth.insert(users[i].into());
            assert_eq!(ids(&ack["members"]), truth, "round {round}: ack");
        }
        inside[i] = !inside[i];
        assert_eq!(members(&a, 9).await, truth, "round {round}: server A");
        assert_eq!(members(&b, 9).await, truth, "round {round}: server B");
    }
    assert_eq!(
        full_reads(&redis).await,
        reads,
        "a kept list was read whole"
    );
    let logged: i64 = redis.command(["LLEN", &format!("{base}:l")]).await.unwrap();
    assert_eq!(logged, 31, "the log keeps one version per 32 members");

    // A writer that logs nothing changes the room: the log no longer
    // follows on, and the stores read the list whole.
    let _: i64 = redis
        .command(["HSET", &format!("{base}:m"), "zed", "{\"id\":\"zed\"}"])
        .await
        .unwrap();
    let _: i64 = redis.command(["INCR", &format!("{base}:v")]).await.unwrap();
    truth.insert("zed".into());
    assert_eq!(members(&a, 9).await, truth);
    assert_eq!(members(&b, 9).await, truth);
    assert_eq!(full_reads(&redis).await, reads + 2);

    // An entry that is not the scripts', in sequence: read whole, and the
    // list is the hash's, not the entry's.
    let v: String = redis.command(["GET", &format!("{base}:v")]).await.unwrap();
    let next = v.parse::<u64>().unwrap() + 1;
    let _: i64 = redis
        .command(["RPUSH", &format!("{base}:l"), &format!("{next}\n+not json")])
        .await
        .unwrap();
    let _: i64 = redis.command(["INCR", &format!("{base}:v")]).await.unwrap();
    assert_eq!(members(&a, 9).await, truth);
    assert_eq!(full_reads(&redis).await, reads + 3);

    // That full read left a snapshot of the current version (written in
    // the background); a worker's first query reads it, not the hash, and
    // its next one, after a leave, the log (begun afresh: the gap above
    // stays in it until trimmed, and sends every reader behind it to the
    // hash).
    let v: String = redis.command(["GET", &format!("{base}:v")]).await.unwrap();
    let deadline = Instant::now() + T;
    loop {
        let head: String = redis
            .command(["GETRANGE", &format!("{base}:snap"), "0", "24"])
            .await
            .unwrap();
        if head.split('\n').next() == Some(v.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot of version {v}: {head:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _: i64 = redis.command(["DEL", &format!("{base}:l")]).await.unwrap();
    let worker = broadcast_core::redis::worker(RedisConfig::from_url(&redis.url()).unwrap())
        .await
        .unwrap();
    let listed = |list: Vec<broadcast_core::presence::Member>| {
        list.iter()
            .map(|m| m.id().to_owned())
            .collect::<BTreeSet<_>>()
    };
    let cold = worker.presence.members_of(&LobbyRoom(9)).await.unwrap();
    assert_eq!(listed(cold), truth);
    assert_eq!(
        full_reads(&redis).await,
        reads + 3,
        "the worker read the hash"
    );
    // carol (on A, which kept the last version) leaves.
    assert!(inside[2]);
    leave(&clients[2], 9).await;
    truth.remove("carol");
    let warm = worker.presence.members_of(&LobbyRoom(9)).await.unwrap();
    assert_eq!(listed(warm), truth);
    assert_eq!(
        full_reads(&redis).await,
        reads + 3,
        "the worker read the hash"
    );
    worker.connection.shutdown().await.unwrap();
    drop((clients, sa, sb));
}
