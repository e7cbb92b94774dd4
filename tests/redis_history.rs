//! History rooms through Redis, below the chat demo: a server that never
//! broadcasts itself (its broadcasters dropped) still delivers what a
//! worker sends to its history rooms, with positions, in order.

mod redis_common;

use broadcast_core::redis::{RedisAdapter, RedisConfig, RedisSocketIo};
use broadcast_test_support::redis::RedisServer;
use broadcast_test_support::server::TestServer;
use broadcast_test_support::sio_client::SioClient;
use redis_common::{QUIET, ShardPing, WAIT, init_tracing, join_from_auth};
use serde_json::json;
use socketioxide::extract::SocketRef;
use socketioxide::handler::ConnectHandler;

#[derive(broadcast_core::Room)]
#[room(key = "hist", history(size = 10, ttl = "1m"))]
#[allow(dead_code)]
struct HistoryRoom(u32);

/// A server's parts the tests use.
async fn server(
    config: RedisConfig,
) -> (
    broadcast_core::transport::CompactRequestLayer<
        socketioxide::layer::SocketIoLayer<RedisAdapter>,
    >,
    socketioxide::SocketIo<RedisAdapter>,
    broadcast_core::redis::RedisConnection,
) {
    let RedisSocketIo {
        layer,
        io,
        connection,
        ..
    } = broadcast_core::redis::server(config).await.unwrap();
    (layer, io, connection)
}

/// A server whose sockets join the rooms their auth names, and a client of
/// it in `room`.
async fn joined_client(
    config: RedisConfig,
    room: &str,
) -> (
    TestServer,
    broadcast_core::redis::RedisConnection,
    SioClient,
) {
    let (layer, io, connection) = server(config).await;
    io.ns(
        "/",
        (async |_: SocketRef<RedisAdapter>| {}).with(join_from_auth),
    )
    .await
    .unwrap();
    let http = TestServer::serve(layer).await.unwrap();
    let client = SioClient::connect(http.addr, "/", Some(json!({ "rooms": [room] })))
        .await
        .unwrap();
    (http, connection, client)
}

/// The worker broadcasts pings 1..=`n` to `room`, one at a time.
async fn pings(worker: &broadcast_core::redis::RedisWorker, room: &str, n: u64) {
    for seq in 1..=n {
        worker
            .broadcaster
            .broadcast(ShardPing {
                namespace: "/".into(),
                room: room.into(),
                seq,
            })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_server_that_never_broadcasts_delivers_history_rooms() {
    init_tracing();
    let Some(redis) = RedisServer::start().await.expect("starting redis-server") else {
        return;
    };
    let config = || RedisConfig::from_url(&redis.url()).unwrap();
    let (_http, connection, mut client) = joined_client(config(), "hist|1").await;
    let worker = broadcast_core::redis::worker(config()).await.unwrap();
    pings(&worker, "hist|1", 3).await;
    for seq in 1..=3u64 {
        let got = client.next_event(WAIT).await.unwrap();
        assert_eq!(got.args[0]["seq"], seq, "{got:?}");
        assert_eq!(got.args[1]["room"], "hist|1", "{got:?}");
        assert_eq!(got.args[1]["offset"], seq, "{got:?}");
    }
    tokio::time::sleep(QUIET).await;
    assert!(client.try_next_event().is_none());
    assert_eq!(connection.stats().rejected, 0);
    worker.connection.shutdown().await.unwrap();
    connection.shutdown().await.unwrap();
}

/// A delivery appended again with the same id (a relay that crashed before
/// marking it sent) reaches no socket twice and is not counted as published
/// twice.
#[tokio::test]
async fn an_id_appended_twice_is_published_and_counted_once() {
    init_tracing();
    let Some(redis) = RedisServer::start().await.expect("starting redis-server") else {
        return;
    };
    let config = || RedisConfig::from_url(&redis.url()).unwrap();
    let (_http, connection, mut client) = joined_client(config(), "hist|2").await;
    let worker = broadcast_core::redis::worker(config()).await.unwrap();
    let ping = ShardPing {
        namespace: "/".into(),
        room: "hist|2".into(),
        seq: 1,
    };
    let broadcast_core::Prepared::Ready(prepared) =
        worker.broadcaster.broadcast(ping).prepare().await.unwrap()
    else {
        panic!("the ping was skipped");
    };
    for _ in 0..2 {
        worker
            .broadcaster
            .deliver(&prepared, Some("event-1"))
            .await
            .unwrap();
    }
    let got = client.next_event(WAIT).await.unwrap();
    assert_eq!(got.args[1]["offset"], 1, "{got:?}");
    tokio::time::sleep(QUIET).await;
    assert!(client.try_next_event().is_none());
    assert_eq!(worker.connection.stats().published, 1);
    worker.connection.shutdown().await.unwrap();
    connection.shutdown().await.unwrap();
}

/// A room that keeps fewer events than a client may ask to replay.
#[derive(broadcast_core::Room)]
#[room(key = "kept", public, history(size = 10, ttl = "1m"))]
#[allow(dead_code)]
struct KeptRoom {
    id: u32,
}

/// Streams are trimmed approximately (`MAXLEN ~`), so they may hold more
/// than a room's size: a client missing more than the size is still not
/// recovered, and one missing exactly the size gets them all, in order.
#[tokio::test]
async fn a_recovery_is_limited_to_the_room_size() {
    init_tracing();
    let Some(redis) = RedisServer::start().await.expect("starting redis-server") else {
        return;
    };
    let config = || RedisConfig::from_url(&redis.url()).unwrap();
    let (layer, io, connection) = server(config()).await;
    let rooms = broadcast_core::join::Rooms::builder().build().unwrap();
    rooms
        .ns(&io, "/", async |_: SocketRef<RedisAdapter>| {})
        .await
        .unwrap();
    rooms.attach(&io);
    let http = TestServer::serve(layer).await.unwrap();
    let join = async |since: Option<serde_json::Value>| {
        let mut client = SioClient::connect(http.addr, "/", None).await.unwrap();
        let mut args = vec![json!({"id": 1})];
        if let Some(since) = since {
            args.push(json!({ "since": since }));
        }
        let ack = client
            .emit_with_ack("/", "join_kept", args, WAIT)
            .await
            .unwrap();
        let mut replayed = Vec::new();
        while let Ok(got) = client.next_event(QUIET).await {
            if got.event == "shard_ping" {
                replayed.push(got.args[1]["offset"].as_u64().unwrap());
            }
        }
        (ack[0].clone(), replayed)
    };
    let (ack, _) = join(None).await;
    let epoch = ack["position"]["epoch"].clone();
    assert!(epoch.is_string(), "{ack}");
    let worker = broadcast_core::redis::worker(config()).await.unwrap();
    pings(&worker, "kept|1", 25).await;
    let (ack, replayed) = join(Some(json!({"offset": 14, "epoch": epoch}))).await;
    assert_eq!(ack["recovered"], false, "{ack}");
    assert_eq!(ack["position"]["offset"], 25, "{ack}");
    assert!(replayed.is_empty(), "{replayed:?}");
    let (ack, replayed) = join(Some(json!({"offset": 15, "epoch": epoch}))).await;
    assert_eq!(ack["recovered"], true, "{ack}");
    assert_eq!(replayed, (16..=25).collect::<Vec<u64>>());
    assert_eq!(connection.stats().rejected, 0);
    worker.connection.shutdown().await.unwrap();
    connection.shutdown().await.unwrap();
}
