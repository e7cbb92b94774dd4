//! The same code on a 3-master Redis Cluster (sharded pub/sub): delivery
//! across two servers and from a worker to 50 rooms whose request channels
//! live on all three shards.
//!
//! socketioxide-redis has one request channel per namespace, so traffic is
//! spread over shards by namespace: the rooms here are spread over
//! namespaces chosen so that their channels hash to every master.

mod redis_common;

use std::collections::{BTreeMap, BTreeSet};

use broadcast_core::join::{Handshake, JoinContext, Rooms};
use broadcast_core::presence::{PresenceChange, PresenceKind};
use broadcast_core::redis::RedisConfig;
use broadcast_test_support::redis::{HarnessError, RedisCluster, cluster_slots, slot_owner};
use broadcast_test_support::sio_client::SioClient;
use redis_common::{Node, QUIET, ShardPing, WAIT, init_tracing, poll_until};
use serde_json::{Value, json};

const ROOMS: usize = 50;

fn seq_of(got: &broadcast_test_support::sio_client::Received) -> u64 {
    got.args[0]["seq"].as_u64().expect("a seq")
}

#[tokio::test]
async fn cluster_delivers_across_servers_and_from_a_worker_to_rooms_on_every_shard()
-> Result<(), HarnessError> {
    init_tracing();
    let Some(cluster) = RedisCluster::start().await? else {
        return Ok(());
    };
    let first = cluster.nodes()[0].1;
    let ranges = cluster_slots(first).await?;

    // One namespace per master, found by hashing the adapter's channel names.
    let mut by_owner: BTreeMap<u16, String> = BTreeMap::new();
    for i in 0..1000 {
        let ns = format!("/shard{i}");
        let owner = slot_owner(first, &ranges, &format!("socket.io-request#{ns}#")).await?;
        by_owner.entry(owner).or_insert(ns);
        if by_owner.len() == 3 {
            break;
        }
    }
    assert_eq!(
        by_owner.len(),
        3,
        "namespaces for every master: {by_owner:?}"
    );
    let namespaces: Vec<String> = by_owner.values().cloned().collect();

    // A list of nodes, as the issue asks; a `redis-cluster://` URL works too.
    let config = || RedisConfig::from_nodes(cluster.urls()).unwrap();
    let a = Node::start(config(), &namespaces).await;
    let b = Node::start(config(), &namespaces).await;
    let worker = broadcast_core::redis::worker(
        RedisConfig::from_url(&format!(
            "redis-cluster://127.0.0.1:{first}?node=127.0.0.1:{}",
            cluster.nodes()[1].1
        ))
        .unwrap(),
    )
    .await
    .unwrap();

    let rooms: Vec<(String, String)> = (0..ROOMS)
        .map(|j| (namespaces[j % 3].clone(), format!("room-{j}")))
        .collect();
    let mut on_a: Vec<SioClient> = Vec::new();
    let mut on_b: Vec<SioClient> = Vec::new();
    for (ns, room) in &rooms {
        on_a.push(a.client(ns, &[room]).await);
        on_b.push(b.client(ns, &[room]).await);
    }

    // Worker -> every room, on both servers.
    for (j, (ns, room)) in rooms.iter().enumerate() {
        let outcome = worker
            .broadcaster
            .broadcast(ShardPing {
                namespace: ns.clone(),
                room: room.clone(),
                seq: j as u64,
            })
            .await
            .unwrap();
        // Each shard's primary counts the subscriptions it holds: both
        // servers'.
        assert_eq!(outcome.remote_receivers(ns), Some(2), "{outcome:?}");
    }
    for (j, c) in on_a.iter_mut().chain(on_b.iter_mut()).enumerate() {
        let got = c.next_event(WAIT).await.unwrap();
        let (ns, _) = &rooms[j % ROOMS];
        assert_eq!((&got.ns, got.event.as_str()), (ns, "shard_ping"));
        assert_eq!(seq_of(&got), (j % ROOMS) as u64);
    }

    // Server A -> B and B -> A, one room per shard each way.
    for j in 0..3 {
        let (ns, room) = &rooms[j];
        let outcome = a
            .parts
            .broadcaster
            .broadcast(ShardPing {
                namespace: ns.clone(),
                room: room.clone(),
                seq: 100 + j as u64,
            })
            .await
            .unwrap();
        // B's subscription, not A's own.
        assert_eq!(outcome.remote_receivers(ns), Some(1), "{outcome:?}");
        assert_eq!(
            seq_of(&on_b[j].next_event(WAIT).await.unwrap()),
            100 + j as u64
        );
        assert_eq!(
            seq_of(&on_a[j].next_event(WAIT).await.unwrap()),
            100 + j as u64
        );
        let (ns, room) = &rooms[3 + j];
        b.parts
            .broadcaster
            .broadcast(ShardPing {
                namespace: ns.clone(),
                room: room.clone(),
                seq: 200 + j as u64,
            })
            .await
            .unwrap();
        assert_eq!(
            seq_of(&on_a[3 + j].next_event(WAIT).await.unwrap()),
            200 + j as u64
        );
        assert_eq!(
            seq_of(&on_b[3 + j].next_event(WAIT).await.unwrap()),
            200 + j as u64
        );
    }

    // Nothing else anywhere: no duplicates, no cross-room leaks.
    tokio::time::sleep(QUIET).await;
    for c in on_a.iter_mut().chain(on_b.iter_mut()) {
        assert!(c.try_next_event().is_none());
    }

    // The three request channels really are on three different masters.
    let mut owners = BTreeSet::new();
    for ns in &namespaces {
        owners.insert(slot_owner(first, &ranges, &format!("socket.io-request#{ns}#")).await?);
    }
    assert_eq!(owners.len(), 3);
    for node in [&a, &b] {
        let s = node.parts.connection.stats();
        assert_eq!((s.lagged, s.publish_failed), (0, 0), "{s:?}");
    }
    assert_eq!(worker.connection.stats().published, ROOMS as u64);

    worker.connection.shutdown().await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn cluster_master_restart_resubscribes_its_channels() -> Result<(), HarnessError> {
    init_tracing();
    let Some(mut cluster) = RedisCluster::start().await? else {
        return Ok(());
    };
    let first = cluster.nodes()[0].1;
    let ranges = cluster_slots(first).await?;
    // A namespace whose request channel lives on the second master.
    let victim = cluster.nodes()[1].1;
    let mut ns = None;
    for i in 0..1000 {
        let candidate = format!("/shard{i}");
        if slot_owner(first, &ranges, &format!("socket.io-request#{candidate}#")).await? == victim {
            ns = Some(candidate);
            break;
        }
    }
    let ns = ns.expect("a namespace on the victim");
    let config = || RedisConfig::from_nodes(cluster.urls()).unwrap();
    let a = Node::start(config(), std::slice::from_ref(&ns)).await;
    let b = Node::start(config(), std::slice::from_ref(&ns)).await;
    let mut b1 = b.client(&ns, &["r"]).await;
    let ping = |seq| ShardPing {
        namespace: ns.clone(),
        room: "r".into(),
        seq,
    };
    a.parts.broadcaster.broadcast(ping(1)).await.unwrap();
    assert_eq!(seq_of(&b1.next_event(WAIT).await.unwrap()), 1);

    cluster.servers_mut()[1].kill().await?;
    cluster.servers_mut()[1].restart().await?;
    let restarted = std::time::Instant::now();
    cluster.wait_ok(std::time::Duration::from_secs(30)).await?;
    eprintln!(
        "cluster ok again {:?} after the restart",
        restarted.elapsed()
    );

    let mut seq = 10;
    let resumed = loop {
        seq += 1;
        let _ = a.parts.broadcaster.broadcast(ping(seq)).await;
        if let Ok(got) = b1.next_event(std::time::Duration::from_millis(200)).await {
            break Some((seq_of(&got), restarted.elapsed()));
        }
        if restarted.elapsed() > std::time::Duration::from_secs(10) {
            break None;
        }
    };
    eprintln!("cross-server delivery on the restarted shard resumed: {resumed:?}");
    let (got, after) = resumed.expect("delivery resumed on the restarted master");
    assert!(got > 10);
    assert!(after < std::time::Duration::from_secs(10));
    assert!(b.parts.connection.stats().reconnects >= 1);

    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

/// A room that keeps history: its events get offsets from a script that
/// writes the room's stream and publishes on its shard's channel, both in
/// one slot.
#[derive(broadcast_core::Room)]
#[room(key = "hist", history(size = 100, ttl = "1m"))]
#[allow(dead_code)]
struct HistoryRoom(u32);

#[tokio::test]
async fn cluster_history_rooms_number_their_events_on_every_master() -> Result<(), HarnessError> {
    init_tracing();
    let Some(cluster) = RedisCluster::start().await? else {
        return Ok(());
    };
    let first = cluster.nodes()[0].1;
    let ranges = cluster_slots(first).await?;
    // The history shards' channels (and so their streams) are spread over
    // every master.
    let mut owners = BTreeSet::new();
    for shard in 0..broadcast_core::redis::HISTORY_SHARDS {
        let channel = format!("{{socket.io-history-{shard}}}#events");
        owners.insert(slot_owner(first, &ranges, &channel).await?);
    }
    assert_eq!(owners.len(), 3, "history shards on every master");

    let config = || RedisConfig::from_nodes(cluster.urls()).unwrap();
    let a = Node::start(config(), &[]).await;
    let b = Node::start(config(), &[]).await;
    let worker = broadcast_core::redis::worker(config()).await.unwrap();
    let rooms: Vec<String> = (0..24).map(|j| format!("hist|{j}")).collect();
    let mut on_a = Vec::new();
    let mut on_b = Vec::new();
    for room in &rooms {
        on_a.push(a.client("/", &[room]).await);
        on_b.push(b.client("/", &[room]).await);
    }
    let ping = |room: &String, seq| ShardPing {
        namespace: "/".into(),
        room: room.clone(),
        seq,
    };
    // Worker, server A and server B in turn, to every room.
    for round in 0..3u64 {
        for (j, room) in rooms.iter().enumerate() {
            let seq = round * 100 + j as u64;
            worker.broadcaster.broadcast(ping(room, seq)).await.unwrap();
            a.parts
                .broadcaster
                .broadcast(ping(room, seq))
                .await
                .unwrap();
            b.parts
                .broadcaster
                .broadcast(ping(room, seq))
                .await
                .unwrap();
        }
    }
    for (j, c) in on_a.iter_mut().chain(on_b.iter_mut()).enumerate() {
        let room = &rooms[j % rooms.len()];
        for offset in 1..=9u64 {
            let got = c.next_event(WAIT).await.unwrap();
            assert_eq!(got.event, "shard_ping");
            assert_eq!(got.args.len(), 2, "{got:?}");
            assert_eq!(got.args[1]["room"], room.as_str(), "{got:?}");
            assert_eq!(got.args[1]["offset"], offset, "{got:?}");
        }
    }
    tokio::time::sleep(QUIET).await;
    for c in on_a.iter_mut().chain(on_b.iter_mut()) {
        assert!(c.try_next_event().is_none(), "one copy of each event");
    }
    worker.connection.shutdown().await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

/// A presence room: its keys share the hash tag `{/\x1flobby|N}`.
#[derive(broadcast_core::Room)]
#[room(public, presence)]
struct LobbyRoom(u64);

type HookLog = std::sync::Arc<std::sync::Mutex<Vec<(usize, PresenceChange)>>>;

struct User(String);

async fn authenticate(h: Handshake) -> Result<Option<User>, String> {
    Ok(h.auth()["user"].as_str().map(|u| User(u.to_owned())))
}

/// Server `idx` with the join protocol and presence, recording its hooks.
async fn presence_node(config: RedisConfig, idx: usize, log: &HookLog) -> Node {
    let parts = broadcast_core::redis::server(config).await.unwrap();
    let log = log.clone();
    let rooms = Rooms::builder()
        .authenticate(authenticate)
        .join_rate(1000, f64::INFINITY)
        .presence_member(|ctx: &JoinContext| Some(json!({ "id": ctx.identity::<User>()?.0 })))
        .on_presence(move |c: PresenceChange| {
            let log = log.clone();
            async move { log.lock().unwrap().push((idx, c)) }
        })
        .build()
        .unwrap();
    rooms.attach(&parts.io).await.unwrap();
    let http = broadcast_test_support::server::TestServer::serve(parts.layer.clone())
        .await
        .unwrap();
    Node { parts, http }
}

async fn user(node: &Node, name: &str) -> SioClient {
    SioClient::connect(node.http.addr, "/", Some(json!({ "user": name })))
        .await
        .unwrap()
}

/// The join's (or leave's) ack, checked to be a success.
async fn ask(c: &SioClient, event: &str, room: u64) -> Value {
    let ack = c
        .emit_with_ack("/", event, vec![json!(room)], WAIT)
        .await
        .unwrap();
    assert_eq!(ack[0]["ok"], json!(true), "{event} {room}: {ack:?}");
    ack[0].clone()
}

fn id_set<'a>(ids: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    ids.into_iter().map(str::to_owned).collect()
}

fn ack_ids(ack: &Value) -> BTreeSet<String> {
    let members = ack["members"].as_array().expect("members");
    id_set(members.iter().map(|m| m["id"].as_str().expect("an id")))
}

/// The next presence frame (the room notices of the client's own joins
/// and leaves come in between).
async fn next_presence(c: &mut SioClient) -> broadcast_test_support::sio_client::Received {
    loop {
        let got = c.next_event(WAIT * 3).await.unwrap();
        if got.event.starts_with("presence_") {
            return got;
        }
    }
}

/// The members of `room` as `presence` sees it.
async fn listed(presence: &broadcast_core::presence::Presence, room: u64) -> BTreeSet<String> {
    let members = presence.members_of(&LobbyRoom(room)).await.unwrap();
    members.iter().map(|m| m.id().to_owned()).collect()
}

/// `(kind, member)` of the hooks of `room`, sorted; waits for `n` of them.
async fn hooks_of(log: &HookLog, room: u64, n: usize) -> Vec<(PresenceKind, Option<String>)> {
    let name = format!("lobby|{room}");
    let of_room = || {
        let mut v: Vec<_> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, c)| c.room == name)
            .map(|(_, c)| (c.kind, c.member.as_ref().map(|m| m.id().to_owned())))
            .collect();
        v.sort_by_key(|(k, m)| (format!("{k:?}"), m.clone()));
        v
    };
    poll_until(WAIT * 3, std::time::Duration::from_millis(20), || async {
        (of_room().len() >= n).then_some(())
    })
    .await;
    // A wrong extra hook would come right after.
    tokio::time::sleep(QUIET).await;
    of_room()
}

/// Presence on a cluster: rooms whose keys live on each of the three
/// masters, clients on two servers, queries from both servers and a
/// worker; then a dead server's member (its per-server keys in slots of
/// their own) is swept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_presence_across_two_servers_and_a_worker() -> Result<(), HarnessError> {
    use PresenceKind::{Joined, Left, Occupied, Vacated};
    init_tracing();
    let Some(cluster) = RedisCluster::start().await? else {
        return Ok(());
    };
    let first = cluster.nodes()[0].1;
    let ranges = cluster_slots(first).await?;
    let key = |room: u64| format!("socket.io-presence:{{/\u{1f}lobby|{room}}}");
    let mut by_owner: BTreeMap<u16, u64> = BTreeMap::new();
    for room in 0..1000 {
        by_owner
            .entry(slot_owner(first, &ranges, &key(room)).await?)
            .or_insert(room);
        if by_owner.len() == 3 {
            break;
        }
    }
    assert_eq!(by_owner.len(), 3, "a room on every master: {by_owner:?}");
    let rooms: Vec<u64> = by_owner.values().copied().collect();

    let config = || RedisConfig::from_nodes(cluster.urls()).unwrap();
    let log = HookLog::default();
    let a = presence_node(config(), 0, &log).await;
    let b = presence_node(config(), 1, &log).await;
    let worker = broadcast_core::redis::worker(config()).await.unwrap();
    let everyone = [&a.parts.presence, &b.parts.presence, &worker.presence];

    for &room in &rooms {
        let mut alice = user(&a, "alice").await;
        let carol = user(&b, "carol").await;
        assert_eq!(
            ack_ids(&ask(&alice, "join_lobby", room).await),
            id_set(["alice"])
        );
        let both = id_set(["alice", "carol"]);
        assert_eq!(ack_ids(&ask(&carol, "join_lobby", room).await), both);
        let got = next_presence(&mut alice).await;
        assert_eq!(got.event, "presence_joined", "{got:?}");
        assert_eq!(got.args[0]["member"]["id"], "carol", "{got:?}");
        // alice's second connection, on the other server: the same member.
        let alice2 = user(&b, "alice").await;
        assert_eq!(ack_ids(&ask(&alice2, "join_lobby", room).await), both);
        for p in everyone {
            assert_eq!(p.count_of(&LobbyRoom(room)).await.unwrap(), 2);
            assert_eq!(listed(p, room).await, both);
        }
        ask(&carol, "leave_lobby", room).await;
        // The next frame is carol's leave: alice2 caused none.
        let got = next_presence(&mut alice).await;
        assert_eq!(got.event, "presence_left", "{got:?}");
        assert_eq!(got.args[0]["member"]["id"], "carol", "{got:?}");
        ask(&alice2, "leave_lobby", room).await;
        assert_eq!(listed(&worker.presence, room).await, id_set(["alice"]));
        ask(&alice, "leave_lobby", room).await;
        for p in everyone {
            assert_eq!(p.count_of(&LobbyRoom(room)).await.unwrap(), 0);
        }
        let alice_ = Some("alice".to_owned());
        let carol_ = Some("carol".to_owned());
        let mut want = vec![
            (Joined, alice_.clone()),
            (Joined, carol_.clone()),
            (Left, alice_),
            (Left, carol_),
            (Occupied, None),
            (Vacated, None),
        ];
        want.sort_by_key(|(k, m)| (format!("{k:?}"), m.clone()));
        assert_eq!(hooks_of(&log, room, 6).await, want, "hooks of room {room}");
        drop((alice, alice2, carol));
    }

    // A dead server's member, written in the scripts' layout: its server
    // list, room list and alive key are each in a slot of their own.
    let room = rooms[1];
    let mut dave = user(&a, "dave").await;
    ask(&dave, "join_lobby", room).await;
    let store_key = format!("/\u{1f}lobby|{room}");
    let k = key(room);
    // Listed last: a sweep in between must find the whole server.
    for cmd in [
        vec![
            "HSET".to_owned(),
            format!("{k}:c"),
            "g1".into(),
            "gus".into(),
        ],
        vec!["HSET".into(), format!("{k}:n"), "gus".into(), "1".into()],
        vec![
            "HSET".into(),
            format!("{k}:m"),
            "gus".into(),
            r#"{"id":"gus"}"#.into(),
        ],
        vec!["SADD".into(), format!("{k}:s:ghost"), "g1".into()],
        vec![
            "SADD".into(),
            "socket.io-presence-rooms:ghost".into(),
            store_key.clone(),
        ],
        vec![
            "SADD".into(),
            "socket.io-presence-servers".into(),
            "ghost".into(),
        ],
    ] {
        let _: i64 = cluster.command(cmd).await?;
    }
    let got = next_presence(&mut dave).await;
    assert_eq!(got.event, "presence_left", "{got:?}");
    assert_eq!(got.args[0]["member"]["id"], "gus", "{got:?}");
    assert_eq!(listed(&worker.presence, room).await, id_set(["dave"]));
    let hooks = hooks_of(&log, room, 9).await;
    let gus: Vec<_> = hooks
        .iter()
        .filter(|(_, m)| m.as_deref() == Some("gus"))
        .collect();
    assert_eq!(gus, [&(Left, Some("gus".to_owned()))], "{hooks:?}");

    drop(dave);
    worker.connection.shutdown().await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}
