//! What arrives on the Redis channels is checked before socketioxide sees it:
//! a well-formed request that socketioxide cannot serialize must not stop
//! cross-server delivery, and a flood of mutated requests through real Redis
//! leaves delivery working.

mod redis_common;

use std::borrow::Cow;
use std::time::Duration;

use broadcast_core::redis::fred::interfaces::{ClientLike, PubsubInterface};
use broadcast_core::redis::fred::prelude::{Builder, Config};

use broadcast_core::redis::RedisConfig;
use broadcast_core::redis::fred::types::Value as RedisValue;
use broadcast_test_support::redis::{HarnessError, RedisServer};
use redis_common::{MessagePosted, Node, ShardPing, WAIT, init_tracing, poll_until};
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
    // Each server dropped every poison (its own broadcasts are requests too,
    // but they pass).
    for node in [&a, &b] {
        assert_eq!(node.parts.connection.stats().rejected, poisons.len() as u64);
    }
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

/// A small xorshift generator: the same mutations on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A valid request of one of several shapes with one to three bit flips,
/// truncations, byte swaps or byte ranges moved in from another request.
fn mutated(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(3) {
        let n = data.len();
        match rng.below(4) {
            0 if n > 0 => {
                let i = rng.below(n);
                data[i] ^= 1 << rng.below(8);
            }
            1 => data.truncate(rng.below(n)),
            2 if n > 0 => data.swap(rng.below(n), rng.below(n)),
            _ => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let to = (from + 1 + rng.below(16)).min(other.len());
                let at = rng.below(n + 1);
                data.splice(at..at, other[from..to].to_vec());
            }
        }
    }
    data
}

/// 2,000 mutated requests through real Redis to two real servers (the
/// in-process fuzz of the check runs 100,000: `redis::inbound` tests), then
/// a normal broadcast still arrives.
#[tokio::test]
async fn a_flood_of_mutated_requests_leaves_delivery_working() -> Result<(), HarnessError> {
    init_tracing();
    let Some(redis) = RedisServer::start().await? else {
        return Ok(());
    };
    let config = || RedisConfig::from_url(&redis.url()).expect("url");
    let a = Node::start(config(), &[]).await;
    let b = Node::start(config(), &[]).await;
    let mut client = b.client("/", &["chat|1"]).await;

    let text = || {
        Value::Str(
            "[\"message_posted\",{\"chat_id\":1}]".to_owned().into(),
            None,
        )
    };
    let seeds = vec![
        request("/", PacketData::Event(text(), None)),
        request(
            "/",
            PacketData::Event(Value::Bytes(vec![1, 2].into()), None),
        ),
        request("/", PacketData::Connect(Some(Value::Bytes(vec![1].into())))),
        request("/", PacketData::BinaryEvent(text(), None)),
        request("/", PacketData::Disconnect),
        request("/", PacketData::Event(text(), Some(1))),
    ];
    let publisher = Builder::from_config(Config::from_url(&redis.url()).expect("url"))
        .build()
        .expect("client");
    publisher.init().await.expect("connects");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    const FLOOD: u64 = 2_000;
    for _ in 0..FLOOD {
        let data = mutated(&mut rng, &seeds);
        let _: i64 = publisher
            .spublish("socket.io-request#/#", data)
            .await
            .expect("spublish");
    }
    let seen = poll_until(WAIT, Duration::from_millis(20), || async {
        let (sa, sb) = (a.parts.connection.stats(), b.parts.connection.stats());
        (sa.received >= FLOOD && sb.received >= FLOOD).then_some((sa, sb))
    })
    .await
    .expect("both servers read the flood");
    println!(
        "flood of {FLOOD}: server A rejected {}, server B rejected {}",
        seen.0.rejected, seen.1.rejected
    );
    assert!(seen.0.rejected > FLOOD / 2 && seen.1.rejected > FLOOD / 2);
    assert_eq!(seen.1.lost(), 0);

    a.parts
        .broadcaster
        .broadcast(MessagePosted {
            chat_id: 1,
            text: "after the flood".into(),
        })
        .await
        .expect("broadcast");
    // Mutated requests that still passed may have reached the client first.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let e = client
            .next_event_named("message_posted", WAIT)
            .await
            .expect("no delivery after the flood");
        if e.args
            .first()
            .and_then(|a| a.get("text"))
            .and_then(|t| t.as_str())
            == Some("after the flood")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery after the flood"
        );
    }
    publisher.quit().await.expect("quit");
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}
