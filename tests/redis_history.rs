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

#[tokio::test]
async fn a_server_that_never_broadcasts_delivers_history_rooms() {
    init_tracing();
    let Some(redis) = RedisServer::start().await.expect("starting redis-server") else {
        return;
    };
    let config = || RedisConfig::from_url(&redis.url()).unwrap();
    let RedisSocketIo {
        layer,
        io,
        connection,
        ..
    } = broadcast_core::redis::server(config()).await.unwrap();
    io.ns(
        "/",
        (async |_: SocketRef<RedisAdapter>| {}).with(join_from_auth),
    )
    .await
    .unwrap();
    let http = TestServer::serve(layer).await.unwrap();
    let mut client = SioClient::connect(http.addr, "/", Some(json!({"rooms": ["hist|1"]})))
        .await
        .unwrap();
    let worker = broadcast_core::redis::worker(config()).await.unwrap();
    for seq in 1..=3u64 {
        worker
            .broadcaster
            .broadcast(ShardPing {
                namespace: "/".into(),
                room: "hist|1".into(),
                seq,
            })
            .await
            .unwrap();
    }
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
    let RedisSocketIo {
        layer,
        io,
        connection,
        ..
    } = broadcast_core::redis::server(config()).await.unwrap();
    io.ns(
        "/",
        (async |_: SocketRef<RedisAdapter>| {}).with(join_from_auth),
    )
    .await
    .unwrap();
    let http = TestServer::serve(layer).await.unwrap();
    let mut client = SioClient::connect(http.addr, "/", Some(json!({"rooms": ["hist|2"]})))
        .await
        .unwrap();
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
