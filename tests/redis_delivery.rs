//! Delivery across processes through a real `redis-server`: two independent
//! socketioxide servers (separate Redis connections) and a worker, with
//! clients on each server.

mod redis_common;

use std::time::{Duration, Instant};

use broadcast_core::redis::{RedisConfig, RedisError};
use broadcast_core::{BroadcastError, TransportError};
use broadcast_test_support::redis::{HarnessError, RedisServer};
use redis_common::{AuditLogged, MessagePosted, Node, QUIET, WAIT, init_tracing};
use serde_json::json;

#[tokio::test]
async fn broadcasts_from_any_server_or_a_worker_reach_room_members_on_every_server()
-> Result<(), HarnessError> {
    init_tracing();
    let Some(redis) = RedisServer::start().await? else {
        return Ok(());
    };
    let config = || RedisConfig::from_url(&redis.url()).unwrap();
    let a = Node::start(config(), &[]).await;
    let b = Node::start(config(), &[]).await;
    let worker = broadcast_core::redis::worker(config()).await.unwrap();

    let mut a1 = a.client("/", &["chat|1"]).await;
    let mut a2 = a.client("/", &["chat|2"]).await;
    let mut b1 = b.client("/", &["chat|1"]).await;
    let mut b2 = b.client("/", &["chat|2"]).await;
    let mut b_admin = b.client("/admin", &["chat|1"]).await;

    // From server A: members of chat|1 on A and B, nobody else.
    let out = a
        .parts
        .broadcaster
        .broadcast(MessagePosted {
            chat_id: 1,
            text: "from A".into(),
        })
        .await
        .unwrap();
    assert!(out.is_delivered());
    for c in [&mut a1, &mut b1] {
        let got = c.next_event(WAIT).await.unwrap();
        assert_eq!(
            (got.ns.as_str(), got.event.as_str()),
            ("/", "message_posted")
        );
        assert_eq!(got.args, [json!({"chat_id": 1, "text": "from A"})]);
    }
    // From server B to chat|2.
    b.parts
        .broadcaster
        .broadcast(MessagePosted {
            chat_id: 2,
            text: "from B".into(),
        })
        .await
        .unwrap();
    for c in [&mut a2, &mut b2] {
        let got = c.next_event(WAIT).await.unwrap();
        assert_eq!(got.args, [json!({"chat_id": 2, "text": "from B"})]);
    }
    // From the worker, which has no Socket.IO server at all.
    worker
        .broadcaster
        .broadcast(MessagePosted {
            chat_id: 1,
            text: "from the worker".into(),
        })
        .await
        .unwrap();
    for c in [&mut a1, &mut b1] {
        let got = c.next_event(WAIT).await.unwrap();
        assert_eq!(got.args, [json!({"chat_id": 1, "text": "from the worker"})]);
    }
    // Another namespace, from the worker: only its members.
    worker
        .broadcaster
        .broadcast(AuditLogged { chat_id: 1 })
        .await
        .unwrap();
    let got = b_admin.next_event(WAIT).await.unwrap();
    assert_eq!(
        (got.ns.as_str(), got.event.as_str()),
        ("/admin", "audit_logged")
    );

    // Exactly one copy each; nobody outside the rooms got anything.
    for c in [&mut a1, &mut a2, &mut b1, &mut b2, &mut b_admin] {
        c.expect_silence(QUIET).await.unwrap();
    }

    let stats = a.parts.connection.stats();
    assert_eq!(
        (stats.lagged, stats.undeliverable, stats.publish_failed),
        (0, 0, 0)
    );
    assert!(stats.published >= 1 && stats.received >= 2, "{stats:?}");
    assert_eq!(worker.connection.stats().published, 2);
    assert_eq!(a.parts.broadcaster.stats().delivered, 1);

    worker.connection.shutdown().await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn except_skips_the_sender_on_whichever_server_it_is() -> Result<(), HarnessError> {
    init_tracing();
    let Some(redis) = RedisServer::start().await? else {
        return Ok(());
    };
    let config = || RedisConfig::from_url(&redis.url()).unwrap();
    let a = Node::start(config(), &[]).await;
    let b = Node::start(config(), &[]).await;
    let worker = broadcast_core::redis::worker(config()).await.unwrap();
    let mut a1 = a.client("/", &["chat|1"]).await;
    let mut b1 = b.client("/", &["chat|1"]).await;
    let b1_sid: socketioxide::socket::Sid = b1.sid("/").unwrap().parse().unwrap();
    let a1_sid: socketioxide::socket::Sid = a1.sid("/").unwrap().parse().unwrap();

    // Sender on the other server than the broadcasting one.
    a.parts
        .broadcaster
        .broadcast(MessagePosted {
            chat_id: 1,
            text: "not to b1".into(),
        })
        .except(b1_sid)
        .await
        .unwrap();
    assert_eq!(
        redis_common::next_text(&mut a1, WAIT).await.as_deref(),
        Some("not to b1")
    );
    b1.expect_silence(QUIET).await.unwrap();

    // Sender on the broadcasting server.
    a.parts
        .broadcaster
        .broadcast(MessagePosted {
            chat_id: 1,
            text: "not to a1".into(),
        })
        .except(a1_sid)
        .await
        .unwrap();
    assert_eq!(
        redis_common::next_text(&mut b1, WAIT).await.as_deref(),
        Some("not to a1")
    );
    a1.expect_silence(QUIET).await.unwrap();

    // From a worker, excluding a room.
    worker
        .broadcaster
        .broadcast(MessagePosted {
            chat_id: 1,
            text: "nobody".into(),
        })
        .except_rooms(["chat|1"])
        .await
        .unwrap();
    a1.expect_silence(QUIET).await.unwrap();
    b1.expect_silence(Duration::from_millis(50)).await.unwrap();

    worker.connection.shutdown().await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn garbage_on_the_adapter_channels_is_dropped_and_delivery_goes_on()
-> Result<(), HarnessError> {
    init_tracing();
    let Some(redis) = RedisServer::start().await? else {
        return Ok(());
    };
    let config = || RedisConfig::from_url(&redis.url()).unwrap();
    let a = Node::start(config(), &[]).await;
    let b = Node::start(config(), &[]).await;
    let mut b1 = b.client("/", &["chat|1"]).await;

    let uid = b.parts.io.config().server_id.to_string();
    let channels = [
        "socket.io-request#/#".to_string(),
        format!("socket.io-request#/#{uid}#"),
        format!("socket.io-response#/#{uid}#"),
        "socket.io-request#/admin#".to_string(),
    ];
    // A real request, cut short: valid msgpack start, invalid whole.
    let valid = {
        let mut out = Vec::new();
        out.extend_from_slice(&[0x97, 0xc4, 0x10]);
        out.extend_from_slice(&[0xAB; 16]);
        out
    };
    let garbage: [&[u8]; 7] = [
        b"",
        b"not msgpack at all",
        &[0xc1, 0xff, 0x00, 0x13],
        &[0x93, 0x01, 0x02, 0x03], // an array of the wrong shape
        &[0x81, 0xa4, b't', b'y', b'p', b'e', 0x63], // a map
        &valid,
        &[0xdd, 0xff, 0xff, 0xff, 0xff], // an array claiming 4 billion items
    ];
    let mut sent = 0;
    for channel in &channels {
        for payload in garbage {
            // An error reply is an `Err`: `?` fails the test on it.
            let _receivers: i64 = redis
                .command([b"SPUBLISH".as_slice(), channel.as_bytes(), payload])
                .await?;
            sent += 1;
        }
    }

    // Both servers are still up and deliver, both ways.
    a.parts
        .broadcaster
        .broadcast(MessagePosted {
            chat_id: 1,
            text: "after garbage".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        redis_common::next_text(&mut b1, WAIT).await.as_deref(),
        Some("after garbage")
    );
    let mut a1 = a.client("/", &["chat|1"]).await;
    b.parts
        .broadcaster
        .broadcast(MessagePosted {
            chat_id: 1,
            text: "and back".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        redis_common::next_text(&mut a1, WAIT).await.as_deref(),
        Some("and back")
    );
    b1.next_event(WAIT).await.unwrap();
    b1.expect_silence(QUIET).await.unwrap();
    // The garbage did reach the adapter (and was dropped there).
    assert!(
        b.parts.connection.stats().received >= sent,
        "{:?}",
        b.parts.connection.stats()
    );

    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn unreachable_redis_at_startup_is_an_error_not_a_hang() -> Result<(), HarnessError> {
    // A port nothing listens on (reserved by nobody, not 6379).
    let port = broadcast_test_support::ports::free_port()?;
    let config = RedisConfig::from_url(&format!("redis://127.0.0.1:{port}")).unwrap();
    let t0 = Instant::now();
    let err = broadcast_core::redis::server(config.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, RedisError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    let err = broadcast_core::redis::worker(config).await.unwrap_err();
    assert!(matches!(err, RedisError::Connect { .. }), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    Ok(())
}

#[tokio::test]
async fn unknown_namespace_on_a_server_is_a_typed_error() -> Result<(), HarnessError> {
    let Some(redis) = RedisServer::start().await? else {
        return Ok(());
    };
    let a = Node::start(RedisConfig::from_url(&redis.url()).unwrap(), &[]).await;
    #[derive(serde::Serialize, broadcast_core::BroadcastEvent)]
    #[broadcast(on = "r", namespace = "/missing")]
    struct Nowhere {
        x: u8,
    }
    let err = a
        .parts
        .broadcaster
        .broadcast(Nowhere { x: 1 })
        .await
        .unwrap_err();
    match err {
        BroadcastError::Transport { event, source, .. } => {
            assert_eq!(event, "nowhere");
            assert!(matches!(source, TransportError::UnknownNamespace(ns) if ns == "/missing"));
        }
        other => panic!("unexpected {other}"),
    }
    a.shutdown().await;
    Ok(())
}

/// A server set up with plain socketioxide-redis (its own fred driver), as
/// an application not using this crate would: it and ours understand each
/// other in both directions, and it receives from our workers.
#[tokio::test]
async fn plain_socketioxide_redis_servers_interoperate() -> Result<(), HarnessError> {
    use broadcast_core::redis::{fred, socketioxide_redis};
    use fred::interfaces::ClientLike;
    use socketioxide::extract::SocketRef;
    use socketioxide::handler::ConnectHandler;
    use socketioxide_redis::{FredAdapter, RedisAdapterCtr};

    init_tracing();
    let Some(redis) = RedisServer::start().await? else {
        return Ok(());
    };
    let mut fred_config = fred::prelude::Config::from_url(&redis.url()).unwrap();
    fred_config.version = fred::types::RespVersion::RESP3;
    let client = fred::prelude::Builder::from_config(fred_config)
        .build_subscriber_client()
        .unwrap();
    let ctr = RedisAdapterCtr::new_with_fred(client.clone())
        .await
        .unwrap();
    let (layer, plain_io) = socketioxide::SocketIo::builder()
        .with_adapter::<FredAdapter<_>>(ctr)
        .build_layer();
    plain_io
        .ns(
            "/",
            (async |_: SocketRef<FredAdapter<_>>| {}).with(redis_common::join_from_auth),
        )
        .await
        .unwrap();
    let plain_http = broadcast_test_support::server::TestServer::serve(layer)
        .await
        .unwrap();
    let mut plain1 = broadcast_test_support::sio_client::SioClient::connect(
        plain_http.addr,
        "/",
        Some(json!({ "rooms": ["chat|1"] })),
    )
    .await
    .unwrap();

    let config = || RedisConfig::from_url(&redis.url()).unwrap();
    let a = Node::start(config(), &[]).await;
    let worker = broadcast_core::redis::worker(config()).await.unwrap();
    let mut a1 = a.client("/", &["chat|1"]).await;

    worker
        .broadcaster
        .broadcast(MessagePosted {
            chat_id: 1,
            text: "worker".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        redis_common::next_text(&mut plain1, WAIT).await.as_deref(),
        Some("worker")
    );
    assert_eq!(
        redis_common::next_text(&mut a1, WAIT).await.as_deref(),
        Some("worker")
    );

    a.parts
        .broadcaster
        .broadcast(MessagePosted {
            chat_id: 1,
            text: "ours".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        redis_common::next_text(&mut plain1, WAIT).await.as_deref(),
        Some("ours")
    );
    assert_eq!(
        redis_common::next_text(&mut a1, WAIT).await.as_deref(),
        Some("ours")
    );

    plain_io
        .to("chat|1")
        .emit("message_posted", &json!({"chat_id": 1, "text": "plain"}))
        .await
        .unwrap();
    assert_eq!(
        redis_common::next_text(&mut a1, WAIT).await.as_deref(),
        Some("plain")
    );
    assert_eq!(
        redis_common::next_text(&mut plain1, WAIT).await.as_deref(),
        Some("plain")
    );
    for c in [&mut a1, &mut plain1] {
        c.expect_silence(QUIET).await.unwrap();
    }

    worker.connection.shutdown().await.unwrap();
    a.shutdown().await;
    let _ = client.quit().await;
    Ok(())
}

/// A server whose process stops for a while (a container's CPU quota
/// throttling it, a paused VM) finds a backlog on its Redis connection when
/// it resumes, which fred's router reads in turns of thousands of messages.
/// Here the server runs alone on a runtime with one worker thread, which the
/// test blocks while a worker publishes more than twice fred's buffer; then
/// every message still reaches its client, in order.
#[test]
fn a_server_stalled_during_a_burst_catches_up_without_losing_a_message() -> Result<(), HarnessError>
{
    use futures_util::StreamExt;

    const ROOMS: u64 = 10;
    const PER_ROOM: u64 = 3_500;
    // More than fred's buffer holds, so the backlog cannot all wait there;
    // fewer per socket than its own buffer holds.
    const _: () =
        assert!(ROOMS * PER_ROOM > 2 * broadcast_core::redis::DEFAULT_PUBSUB_BUFFER as u64);
    const _: () = assert!(PER_ROOM < broadcast_core::redis::DEFAULT_SOCKET_BUFFER as u64);

    init_tracing();
    let test_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime");
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("server runtime");
    test_rt.block_on(async {
        let Some(redis) = RedisServer::start().await? else {
            return Ok(());
        };
        let config = || RedisConfig::from_url(&redis.url()).unwrap();
        let node = server_rt.spawn(Node::start(config(), &[])).await.unwrap();
        let mut clients = Vec::new();
        for room in 1..=ROOMS {
            clients.push(node.client("/", &[&format!("chat|{room}")]).await);
        }
        let worker = broadcast_core::redis::worker(config()).await.unwrap();

        // Block the server's only worker thread: none of its tasks runs and
        // nothing reads its sockets until the burst is published.
        let (stalled, is_stalled) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        server_rt.spawn(async move {
            let _ = stalled.send(());
            let _ = released.recv_timeout(Duration::from_secs(60));
        });
        is_stalled.await.unwrap();
        let sends = (0..PER_ROOM).flat_map(|seq| {
            (1..=ROOMS).map(move |room| MessagePosted {
                chat_id: room,
                text: seq.to_string(),
            })
        });
        let results: Vec<_> = futures_util::stream::iter(sends)
            .map(|e| worker.broadcaster.broadcast(e))
            .buffered(64)
            .collect()
            .await;
        release.send(()).unwrap();
        for r in results {
            assert!(r.unwrap().is_delivered());
        }

        for (i, c) in clients.iter_mut().enumerate() {
            for seq in 0..PER_ROOM {
                let text = redis_common::next_text(c, WAIT).await;
                assert_eq!(
                    text,
                    Some(seq.to_string()),
                    "client of chat|{}: {:?}",
                    i + 1,
                    node.parts.connection.stats()
                );
            }
        }
        let stats = node.parts.connection.stats();
        assert_eq!(stats.lost(), 0, "{stats:?}");
        assert_eq!(stats.received, ROOMS * PER_ROOM, "{stats:?}");

        worker.connection.shutdown().await.unwrap();
        server_rt
            .spawn(async move { node.shutdown().await })
            .await
            .unwrap();
        Ok(())
    })
}
