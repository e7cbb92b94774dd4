//! A delivery with an id through real Redis, from a server (which emits to
//! its own sockets only when the id is new) and from a worker: the same id
//! twice reaches every client once, on both servers.

mod outbox_common;

use broadcast_core::redis::{RedisAdapter, RedisConfig};
use broadcast_core::{Outcome, Prepared, SkipReason};
use broadcast_test_support::redis::RedisServer;
use broadcast_test_support::server::TestServer;
use outbox_common::*;
use socketioxide::extract::SocketRef;
use socketioxide::handler::ConnectHandler;

#[tokio::test]
async fn the_same_id_twice_is_delivered_once_from_a_server_or_a_worker() {
    init_tracing();
    let Some(redis) = RedisServer::start().await.expect("redis-server") else {
        return;
    };
    let config = || RedisConfig::from_url(&redis.url()).unwrap();
    let mut servers = Vec::new();
    for _ in 0..2 {
        let parts = broadcast_core::redis::server(config()).await.unwrap();
        parts
            .io
            .ns(
                "/",
                (async |_: SocketRef<RedisAdapter>| {}).with(join_from_auth),
            )
            .await
            .unwrap();
        let http = TestServer::serve(parts.layer.clone()).await.unwrap();
        servers.push((parts, http));
    }
    let worker = broadcast_core::redis::worker(config()).await.unwrap();
    let mut a = client(servers[0].1.addr, &["r"]).await;
    let mut b = client(servers[1].1.addr, &["r"]).await;

    let from_server = servers[0].0.broadcaster.clone();
    for (n, sender) in [(1, &from_server), (2, &worker.broadcaster)] {
        let Prepared::Ready(p) = sender
            .broadcast(Numbered::new("r", 0, n))
            .prepare()
            .await
            .unwrap()
        else {
            panic!("skipped");
        };
        let id = format!("event-{n}");
        let first = sender.deliver(&p, Some(&id)).await.unwrap();
        assert!(first.is_delivered(), "{first:?}");
        let again = sender.deliver(&p, Some(&id)).await.unwrap();
        assert_eq!(again, Outcome::Skipped(SkipReason::Duplicate));
        // The worker sees the server's id as taken too: one key per event
        // and channel, whoever publishes.
        let other = if n == 1 {
            &worker.broadcaster
        } else {
            &from_server
        };
        assert_eq!(
            other.deliver(&p, Some(&id)).await.unwrap(),
            Outcome::Skipped(SkipReason::Duplicate)
        );
        for c in [&mut a, &mut b] {
            let got = collect_numbered(c, 1, QUIET).await;
            assert_eq!(got, [("r".to_string(), 0, n)]);
        }
    }
    // Without an id, nothing is de-duplicated.
    let Prepared::Ready(p) = from_server
        .broadcast(Numbered::new("r", 0, 3))
        .prepare()
        .await
        .unwrap()
    else {
        panic!("skipped");
    };
    from_server.deliver(&p, None).await.unwrap();
    from_server.deliver(&p, None).await.unwrap();
    assert_eq!(collect_numbered(&mut a, 2, QUIET).await.len(), 2);
    let _ = worker.connection.shutdown().await;
    for (parts, _) in servers {
        let _ = parts.connection.shutdown().await;
    }
}
