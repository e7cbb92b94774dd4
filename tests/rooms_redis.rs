//! The join protocol on the Redis adapter: two servers sharing a real
//! `redis-server`, rooms wired with the same one call, clients joining on
//! either server and receiving broadcasts sent from the other.
#![deny(warnings)]
#![forbid(unsafe_code)]

use std::time::Duration;

use broadcast_core::join::{Handshake, JoinContext, Rooms};
use broadcast_core::redis::{RedisConfig, RedisSocketIo};
use broadcast_core::{BroadcastEvent, Room};
use broadcast_test_support::redis::{HarnessError, RedisServer};
use broadcast_test_support::server::TestServer;
use broadcast_test_support::sio_client::SioClient;
use serde::Serialize;
use serde_json::{Value, json};

/// Upper bound for any single wait; never a pass condition.
const T: Duration = Duration::from_secs(10);

struct User(u64);

#[derive(Room)]
#[room(authorize = is_member)]
struct TeamRoom(u64);

#[derive(Room)]
#[room(namespace = "/ops", public)]
struct AlertsRoom;

/// User `n` is a member of team `n` only.
async fn is_member(ctx: &JoinContext, room: &TeamRoom) -> bool {
    ctx.identity::<User>().is_some_and(|u| u.0 == room.0)
}

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = TeamRoom(self.team))]
struct TeamNews {
    team: u64,
    text: String,
}

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = AlertsRoom)]
struct Alert {
    level: u8,
}

async fn authenticate(h: Handshake) -> Result<Option<User>, String> {
    Ok(h.auth()["user"].as_u64().map(User))
}

/// A server on the Redis adapter with every room wired by `attach`.
async fn node(url: &str) -> (RedisSocketIo, TestServer) {
    let parts = broadcast_core::redis::server(RedisConfig::from_url(url).unwrap())
        .await
        .unwrap();
    let rooms = Rooms::builder().authenticate(authenticate).build().unwrap();
    let attached = rooms.attach(&parts.io);
    assert_eq!(attached.created, ["/", "/ops"]);
    // With Redis, a namespace exists once its adapter has subscribed.
    attached.await.unwrap();
    let http = TestServer::serve(parts.layer.clone()).await.unwrap();
    (parts, http)
}

async fn ask(c: &SioClient, ns: &str, event: &str, data: Value) -> Value {
    let mut args = c.emit_with_ack(ns, event, vec![data], T).await.unwrap();
    assert_eq!(args.len(), 1, "{args:?}");
    args.remove(0)
}

#[tokio::test]
async fn rooms_work_across_servers_on_the_redis_adapter() -> Result<(), HarnessError> {
    let Some(redis) = RedisServer::start().await? else {
        return Ok(());
    };
    let (a, a_http) = node(&redis.url()).await;
    let (b, b_http) = node(&redis.url()).await;

    let mut on_a = SioClient::connect(a_http.addr, "/", Some(json!({"user": 3})))
        .await
        .unwrap();
    let mut on_b = SioClient::connect(b_http.addr, "/", Some(json!({"user": 3})))
        .await
        .unwrap();
    let intruder = SioClient::connect(b_http.addr, "/", Some(json!({"user": 4})))
        .await
        .unwrap();
    for c in [&on_a, &on_b] {
        assert_eq!(
            ask(c, "/", "join_team", json!(3)).await,
            json!({"ok": true, "room": "team|3"})
        );
    }
    for c in [&mut on_a, &mut on_b] {
        assert_eq!(c.next_event(T).await.unwrap().event, "joined");
    }
    let ack = ask(&intruder, "/", "join_team", json!(3)).await;
    assert_eq!(ack["error"], json!({"type": "forbidden", "room": "team|3"}));

    // The adapter's view from server B includes server A's member.
    let members =
        b.io.of("/")
            .unwrap()
            .within("team|3")
            .fetch_sockets()
            .await
            .unwrap();
    let mut sids: Vec<String> = members.iter().map(|s| s.data().id.to_string()).collect();
    sids.sort();
    let mut expected = vec![on_a.sid("/").unwrap(), on_b.sid("/").unwrap()];
    expected.sort();
    assert_eq!(sids, expected);

    // Sent from B, received on A and B.
    let news = TeamNews {
        team: 3,
        text: "standup moved".into(),
    };
    b.broadcaster.broadcast(news).await.unwrap();
    for c in [&mut on_a, &mut on_b] {
        let ev = c.next_event(T).await.unwrap();
        assert_eq!(ev.event, "team_news");
        assert_eq!(ev.args, [json!({"team": 3, "text": "standup moved"})]);
    }

    // A namespace created by `attach` works on both servers too.
    let mut ops = SioClient::connect(a_http.addr, "/ops", None).await.unwrap();
    assert_eq!(
        ask(&ops, "/ops", "join_alerts", Value::Null).await["ok"],
        true
    );
    assert_eq!(ops.next_event(T).await.unwrap().event, "joined");
    b.broadcaster.broadcast(Alert { level: 2 }).await.unwrap();
    let ev = ops.next_event(T).await.unwrap();
    assert_eq!((ev.ns.as_str(), ev.event.as_str()), ("/ops", "alert"));

    // Leaving on A: as seen from B, only B's member is left.
    assert_eq!(ask(&on_a, "/", "leave_team", json!(3)).await["ok"], true);
    assert_eq!(on_a.next_event(T).await.unwrap().event, "left");
    let members =
        b.io.of("/")
            .unwrap()
            .within("team|3")
            .fetch_sockets()
            .await
            .unwrap();
    let sids: Vec<String> = members.iter().map(|s| s.data().id.to_string()).collect();
    assert_eq!(sids, [on_b.sid("/").unwrap()]);

    a.connection.shutdown().await.ok();
    b.connection.shutdown().await.ok();
    Ok(())
}
