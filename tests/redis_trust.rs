//! What arrives on the Redis channels is checked before socketioxide sees it:
//! a well-formed request that socketioxide cannot serialize must not stop
//! cross-server delivery, and a flood of mutated requests through real Redis
//! leaves delivery working.

mod redis_common;

use std::borrow::Cow;
use std::time::Duration;

use broadcast_core::redis::RedisConfig;
use broadcast_core::redis::fred::types::Value as RedisValue;
use broadcast_test_support::redis::{HarnessError, RedisServer};
use redis_common::{Node, ShardPing, WAIT, init_tracing};
use socketioxide_core::adapter::BroadcastOptions;
use socketioxide_core::adapter::remote_packet::{RequestOut, RequestTypeOut};
use socketioxide_core::packet::{Packet, PacketData};
use socketioxide_core::{Str, Uid, Value};

/// A request another server could publish: well-formed msgpack, decodable
/// by socketioxide, addressed to the room the client is in.
fn request(ns: &str, inner: PacketData) -> Vec<u8> {
    let packet = Packet {
        inner,
        ns: Str::from(ns.to_owned()),
    };
    let mut opts = BroadcastOptions::default();
    opts.rooms.push(Cow::Borrowed("chat|1"));
    let req = RequestOut::new(Uid::new(), RequestTypeOut::Broadcast(&packet), &opts);
    rmp_serde::to_vec(&req).expect("encodes")
}

async fn spublish(redis: &RedisServer, channel: &str, body: Vec<u8>) -> Result<i64, HarnessError> {
    redis
        .command::<i64, RedisValue>([
            RedisValue::from("SPUBLISH".to_owned()),
            RedisValue::from(channel.to_owned()),
            RedisValue::from(body.into_boxed_slice()),
        ])
        .await
}

fn ping(ns: &str, seq: u64) -> ShardPing {
    ShardPing {
        namespace: ns.to_owned(),
        room: "chat|1".to_owned(),
        seq,
    }
}

/// Each poison goes to its own namespace, so one namespace's adapter task
/// dying cannot hide another's.
#[tokio::test]
async fn a_request_socketioxide_cannot_serialize_does_not_stop_delivery() -> Result<(), HarnessError>
{
    init_tracing();
    let Some(redis) = RedisServer::start().await? else {
        return Ok(());
    };
    let config = || RedisConfig::from_url(&redis.url()).expect("url");
    let poisons: [(&str, PacketData); 4] = [
        (
            "/bytes",
            PacketData::Event(Value::Bytes(vec![1, 2, 3].into()), None),
        ),
        (
            "/connect",
            PacketData::Connect(Some(Value::Bytes(vec![1].into()))),
        ),
        (
            "/binary",
            PacketData::BinaryEvent(Value::Bytes(vec![1].into()), None),
        ),
        (
            "/ack",
            PacketData::EventAck(Value::Bytes(vec![1].into()), 1),
        ),
    ];
    let extra: Vec<String> = poisons.iter().map(|(ns, _)| (*ns).to_owned()).collect();
    let a = Node::start(config(), &extra).await;
    let b = Node::start(config(), &extra).await;
    let mut clients = Vec::new();
    for (ns, _) in &poisons {
        clients.push(b.client(ns, &["chat|1"]).await);
    }
    for (ns, inner) in poisons.clone() {
        let receivers = spublish(
            &redis,
            &format!("socket.io-request#{ns}#"),
            request(ns, inner),
        )
        .await?;
        assert!(receivers >= 2, "both servers subscribe to {ns}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (i, (ns, _)) in poisons.iter().enumerate() {
        a.parts
            .broadcaster
            .broadcast(ping(ns, 1))
            .await
            .expect("broadcast");
        let got = clients[i]
            .next_event(WAIT)
            .await
            .unwrap_or_else(|e| panic!("{ns}: no delivery after the poison request: {e}"));
        assert_eq!(got.event, "shard_ping", "{ns}");
        assert!(a.parts.connection.is_connected() && b.parts.connection.is_connected());
    }
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}
