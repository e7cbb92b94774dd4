//! Room channels (issue 15): a broadcast to a typed room travels on that
//! room's own Redis channel, so a server without a socket in the room
//! receives nothing for it (counted in its Redis stats), while every
//! member on every server still gets each event once, in order, from a
//! worker and from the other server, and after a Redis restart.
#![deny(warnings)]
#![forbid(unsafe_code)]

use std::time::Duration;

use broadcast_core::join::{Handshake, Rooms};
use broadcast_core::redis::{RedisConfig, RedisSocketIo};
use broadcast_core::{BroadcastEvent, PayloadError, Room};
use broadcast_test_support::redis::{HarnessError, RedisServer};
use broadcast_test_support::server::TestServer;
use broadcast_test_support::sio_client::SioClient;
use serde::Serialize;
use serde_json::json;

/// Upper bound for any single wait; never a pass condition.
const T: Duration = Duration::from_secs(10);
/// How long "nothing more arrives" is watched.
const QUIET: Duration = Duration::from_millis(400);

#[derive(Room)]
#[room(public)]
struct SquadRoom(u64);

/// Sent to one squad, or to several at once.
#[derive(Serialize)]
struct SquadNews {
    #[serde(skip)]
    squads: Vec<u64>,
    seq: u64,
}

impl BroadcastEvent for SquadNews {
    const NAME: &'static str = "squad_news";

    async fn broadcast_on(&self) -> impl broadcast_core::IntoTargets {
        self.squads
            .iter()
            .map(|s| SquadRoom(*s))
            .collect::<Vec<_>>()
    }

    async fn broadcast_as(&self) -> Result<impl Serialize, PayloadError> {
        Ok(self)
    }
}

fn news(squads: &[u64], seq: u64) -> SquadNews {
    SquadNews {
        squads: squads.to_vec(),
        seq,
    }
}

async fn no_auth(_: Handshake) -> Result<Option<()>, String> {
    Ok(None)
}

async fn node(config: RedisConfig) -> (RedisSocketIo, TestServer) {
    let parts = broadcast_core::redis::server(config).await.unwrap();
    let rooms = Rooms::builder().authenticate(no_auth).build().unwrap();
    rooms.attach(&parts.io).await.unwrap();
    let http = TestServer::serve(parts.layer.clone()).await.unwrap();
    (parts, http)
}

/// A client on `http` in `squads`, joined through the protocol.
async fn member(http: &TestServer, squads: &[u64]) -> SioClient {
    let mut c = SioClient::connect(http.addr, "/", None).await.unwrap();
    for s in squads {
        let ack = c
            .emit_with_ack("/", "join_squad", vec![json!(s)], T)
            .await
            .unwrap();
        assert_eq!(ack[0]["ok"], json!(true), "{ack:?}");
        assert_eq!(c.next_event(T).await.unwrap().event, "joined");
    }
    c
}

/// The `seq` of every `squad_news` that arrives until `QUIET` passes
/// without one.
async fn seqs(c: &mut SioClient) -> Vec<u64> {
    let mut out = Vec::new();
    while let Ok(e) = c.next_event(QUIET).await {
        assert_eq!(e.event, "squad_news", "{e:?}");
        out.push(e.args[0]["seq"].as_u64().unwrap());
    }
    out
}

/// Disconnects `clients` and shuts the servers' and the worker's Redis
/// connections down.
async fn teardown(
    clients: Vec<SioClient>,
    servers: [&RedisSocketIo; 2],
    worker: &broadcast_core::redis::RedisWorker,
) {
    for c in clients {
        let _ = c.disconnect().await;
    }
    for s in servers {
        s.connection.shutdown().await.unwrap();
    }
    worker.connection.shutdown().await.unwrap();
}

fn received(parts: &RedisSocketIo) -> u64 {
    parts.connection.stats().received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_members_of_a_room_receives_nothing_for_it() -> Result<(), HarnessError> {
    let Some(mut redis) = RedisServer::start().await? else {
        return Ok(());
    };
    let config = || RedisConfig::from_url(&redis.url()).unwrap();
    let (a, a_http) = node(config()).await;
    let (b, b_http) = node(config()).await;
    let worker = broadcast_core::redis::worker(config()).await.unwrap();
    let mut on_a = member(&a_http, &[1]).await;
    let mut on_b = member(&b_http, &[2]).await;

    // 100 events to squad 1 from the worker: A's member gets them all, in
    // order; B, with no member of squad 1, is sent none of them.
    let (a_before, b_before) = (received(&a), received(&b));
    for seq in 1..=100 {
        let outcome = worker.broadcaster.broadcast(news(&[1], seq)).await.unwrap();
        assert_eq!(outcome.remote_receivers("/"), Some(1), "{outcome:?}");
    }
    assert_eq!(seqs(&mut on_a).await, (1..=100).collect::<Vec<_>>());
    assert_eq!(seqs(&mut on_b).await, Vec::<u64>::new());
    assert_eq!(received(&a) - a_before, 100);
    assert_eq!(received(&b) - b_before, 0, "{:?}", b.connection.stats());

    // From server B to squad 1: only A is sent it.
    let b_before = received(&b);
    b.broadcaster.broadcast(news(&[1], 101)).await.unwrap();
    assert_eq!(seqs(&mut on_a).await, [101]);
    assert_eq!(received(&b) - b_before, 0);

    // One event to squads 1 and 2, with a socket in both on B: every
    // member gets exactly one copy.
    let mut both = member(&b_http, &[1, 2]).await;
    worker
        .broadcaster
        .broadcast(news(&[1, 2], 102))
        .await
        .unwrap();
    assert_eq!(seqs(&mut on_a).await, [102]);
    assert_eq!(seqs(&mut on_b).await, [102]);
    assert_eq!(seqs(&mut both).await, [102]);

    // Exclusions travel with the room's request: a socket excluded by id,
    // and the members of an excluded room, get nothing.
    let both_sid = both.sid("/").unwrap();
    worker
        .broadcaster
        .broadcast(news(&[1], 103))
        .except_socket_id(&both_sid)
        .await
        .unwrap();
    assert_eq!(seqs(&mut on_a).await, [103]);
    assert_eq!(seqs(&mut both).await, Vec::<u64>::new());
    worker
        .broadcaster
        .broadcast(news(&[1, 2], 104))
        .except_rooms(["squad|2"])
        .await
        .unwrap();
    assert_eq!(seqs(&mut on_a).await, [104]);
    assert_eq!(seqs(&mut on_b).await, Vec::<u64>::new());
    assert_eq!(seqs(&mut both).await, Vec::<u64>::new());

    // After a Redis restart the room channels are subscribed again.
    redis.restart().await?;
    let mut delivered = false;
    for attempt in 0..50 {
        let seq = 1000 + attempt;
        let _ = worker.broadcaster.broadcast(news(&[2], seq)).await;
        let got = seqs(&mut on_b).await;
        if got.contains(&seq) {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "squad 2 never delivered after the restart");
    worker
        .broadcaster
        .broadcast(news(&[1], 2000))
        .await
        .unwrap();
    assert_eq!(seqs(&mut on_a).await, [2000]);

    teardown(vec![on_a, on_b, both], [&a, &b], &worker).await;
    Ok(())
}

/// The same broadcasts with room channels off go to every server: the
/// counter the test above relies on does see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_room_channels_off_every_server_receives_every_broadcast() -> Result<(), HarnessError>
{
    let Some(redis) = RedisServer::start().await? else {
        return Ok(());
    };
    let config = || {
        RedisConfig::from_url(&redis.url())
            .unwrap()
            .room_channels(false)
    };
    let (a, a_http) = node(config()).await;
    let (b, b_http) = node(config()).await;
    let worker = broadcast_core::redis::worker(config()).await.unwrap();
    let mut on_a = member(&a_http, &[1]).await;
    let mut on_b = member(&b_http, &[2]).await;
    let b_before = received(&b);
    for seq in 1..=20 {
        worker.broadcaster.broadcast(news(&[1], seq)).await.unwrap();
    }
    assert_eq!(seqs(&mut on_a).await, (1..=20).collect::<Vec<_>>());
    assert_eq!(seqs(&mut on_b).await, Vec::<u64>::new());
    assert_eq!(received(&b) - b_before, 20);
    teardown(vec![on_a, on_b], [&a, &b], &worker).await;
    Ok(())
}

/// On Redis Cluster room channels land on every master (each channel in
/// its own slot); members still get their rooms' events, in order, and a
/// server is sent nothing for rooms it has no member of.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_channels_work_on_redis_cluster() -> Result<(), HarnessError> {
    use broadcast_test_support::redis::RedisCluster;

    let Some(cluster) = RedisCluster::start().await? else {
        return Ok(());
    };
    let config = || RedisConfig::from_nodes(cluster.urls()).unwrap();
    let (a, a_http) = node(config()).await;
    let (b, b_http) = node(config()).await;
    let worker = broadcast_core::redis::worker(config()).await.unwrap();
    // Squads 1..=12 on A, 13..=24 on B: their channels hash all over the
    // cluster's slots.
    let mut on_a = member(&a_http, &(1..=12).collect::<Vec<_>>()).await;
    let mut on_b = member(&b_http, &(13..=24).collect::<Vec<_>>()).await;
    let b_before = received(&b);
    for seq in 1..=5 {
        for squad in 1..=12 {
            worker
                .broadcaster
                .broadcast(news(&[squad], seq * 100 + squad))
                .await
                .unwrap();
        }
    }
    let got = seqs(&mut on_a).await;
    for squad in 1..=12 {
        let mine: Vec<u64> = got.iter().copied().filter(|s| s % 100 == squad).collect();
        assert_eq!(
            mine,
            (1..=5).map(|seq| seq * 100 + squad).collect::<Vec<_>>(),
            "squad {squad}"
        );
    }
    assert_eq!(got.len(), 60);
    assert_eq!(received(&b) - b_before, 0, "{:?}", b.connection.stats());
    b.broadcaster.broadcast(news(&[24], 1)).await.unwrap();
    assert_eq!(seqs(&mut on_b).await, [1]);
    teardown(vec![on_a, on_b], [&a, &b], &worker).await;
    Ok(())
}

/// A server drops a room's channel once the room has had no local socket
/// for the configured idle time, and takes it again at the next join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_room_s_channel_is_dropped_then_taken_again() -> Result<(), HarnessError> {
    let Some(redis) = RedisServer::start().await? else {
        return Ok(());
    };
    let config = || {
        RedisConfig::from_url(&redis.url())
            .unwrap()
            .room_channel_idle(Duration::from_secs(1))
    };
    let (a, a_http) = node(config()).await;
    let worker = broadcast_core::redis::worker(config()).await.unwrap();
    let receivers = async |seq| {
        worker
            .broadcaster
            .broadcast(news(&[5], seq))
            .await
            .unwrap()
            .remote_receivers("/")
    };
    let mut c = member(&a_http, &[5]).await;
    assert_eq!(receivers(1).await, Some(1));
    assert_eq!(seqs(&mut c).await, [1]);
    let _ = c.disconnect().await;

    // Within a few sweeps of the idle time, nobody holds the channel.
    let mut dropped = false;
    for seq in 2..60 {
        if receivers(seq).await == Some(0) {
            dropped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        dropped,
        "server A kept squad 5's channel with no socket in it"
    );

    let mut again = member(&a_http, &[5]).await;
    assert_eq!(receivers(100).await, Some(1));
    assert_eq!(seqs(&mut again).await, [100]);
    let _ = again.disconnect().await;
    a.connection.shutdown().await.unwrap();
    worker.connection.shutdown().await.unwrap();
    Ok(())
}
