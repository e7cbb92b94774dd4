//! The recovery helper as shipped (`clients/typescript/recovery.js`) on the
//! official socket.io-client in node (`tests/ts/recovery_client.mjs`),
//! against the chat demo run as a process: a live gap (an event lost before
//! the helper) is filled by a join with `since`, each event delivered once
//! and in order; a client cut off from one server and sent to another (two
//! chat servers over Redis, behind a loopback proxy) is rejoined with
//! `since` and gets what it missed; a server restarted without its history
//! answers `recovered: false`, and the app is told.

mod chat_common;

use broadcast_test_support::redis::RedisServer;
use chat_common::proxy::CutProxy;
use chat_common::{ChatServer, Event, NodeDriver, npm_ready};
use serde_json::{Value, json};

/// Reads `client`'s events until `count` named `name` arrived; returns them
/// and everything else read on the way.
async fn until(
    d: &mut NodeDriver,
    client: &str,
    name: &str,
    count: usize,
) -> (Vec<Event>, Vec<Event>) {
    let (mut wanted, mut others) = (Vec::new(), Vec::new());
    while wanted.len() < count {
        let ev = d.next_event(client).await;
        if ev.event == name {
            wanted.push(ev);
        } else {
            others.push(ev);
        }
    }
    (wanted, others)
}

/// (text, offset, epoch) of `delivered` events.
fn delivered(events: &[Event]) -> Vec<(String, u64, String)> {
    events
        .iter()
        .map(|e| {
            (
                e.args[0]["text"].as_str().unwrap_or_default().to_string(),
                e.args[1]["offset"].as_u64().unwrap_or_default(),
                e.args[1]["epoch"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn connect_and_join(d: &mut NodeDriver, url: &str) -> Value {
    d.call_ok(json!({"op": "connect", "client": "a", "auth": {"user": "ann"}, "url": url}))
        .await;
    let joined = d
        .call_ok(json!({"op": "join", "client": "a", "key": "chat", "data": {"chat_id": 1}}))
        .await;
    let reply = &joined["reply"];
    assert_eq!(reply["ok"], json!(true), "{joined}");
    assert_eq!(reply["room"], json!("chat|1"), "{joined}");
    assert_eq!(reply["position"]["offset"], json!(0), "{joined}");
    reply["position"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_gap_is_filled_with_since_and_each_event_delivered_once() {
    if !npm_ready(&["socket.io-client"], "a_live_gap_is_filled") {
        return;
    }
    let server = ChatServer::start().await;
    let mut d = NodeDriver::spawn("recovery_client.mjs", &[]);
    let position = connect_and_join(&mut d, &server.url()).await;
    let epoch = position["epoch"].as_str().unwrap().to_string();

    // Offset 2 is lost on the way: the helper sees 3 after 1.
    d.call_ok(json!({"op": "drop", "client": "a", "offset": 2}))
        .await;
    for text in ["m1", "m2", "m3"] {
        server.post_message(1, "carol", text).await;
    }
    let (got, others) = until(&mut d, "a", "delivered", 3).await;
    let expected = |texts: &[&str], from: u64| -> Vec<(String, u64, String)> {
        texts
            .iter()
            .zip(from..)
            .map(|(t, o)| (t.to_string(), o, epoch.clone()))
            .collect()
    };
    assert_eq!(
        delivered(&got),
        expected(&["m1", "m2", "m3"], 1),
        "{others:?}"
    );
    // It saw the gap and asked for what follows offset 1.
    assert!(
        others
            .iter()
            .any(|e| e.event == "dropped" && e.args[0]["offset"] == json!(2)),
        "{others:?}"
    );
    let sent = [
        json!("join_chat"),
        json!({"chat_id": 1}),
        json!({"since": {"offset": 1, "epoch": epoch}}),
    ];
    assert!(
        others.iter().any(|e| e.event == "sent" && e.args == sent),
        "no join with since 1: {others:?}"
    );
    assert!(
        !others.iter().any(|e| e.event == "not_recovered"),
        "{others:?}"
    );

    // The replay brought 3 again: it is not delivered twice, the next is 4.
    server.post_message(1, "carol", "m4").await;
    let (got, others) = until(&mut d, "a", "delivered", 1).await;
    assert_eq!(delivered(&got), expected(&["m4"], 4), "{others:?}");
    d.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_without_history_is_not_recovered_and_the_app_is_told() {
    if !npm_ready(&["socket.io-client"], "a_server_restarted") {
        return;
    }
    let server = ChatServer::start().await;
    let port = server.addr.port().to_string();
    let url = server.url();
    let mut d = NodeDriver::spawn("recovery_client.mjs", &[]);
    let position = connect_and_join(&mut d, &url).await;
    server.post_message(1, "carol", "before the restart").await;
    let (got, _) = until(&mut d, "a", "delivered", 1).await;
    let old_epoch = position["epoch"].as_str().unwrap().to_string();
    assert_eq!(
        delivered(&got),
        [("before the restart".to_string(), 1, old_epoch.clone())]
    );

    // A deploy: the in-memory server goes, a new one takes its port, with
    // no history. The socket reconnects by itself and the helper rejoins.
    drop(server);
    let server = ChatServer::start_with(&[("PORT", &port)]).await;
    let (told, others) = until(&mut d, "a", "not_recovered", 1).await;
    assert_eq!(told[0].args[0], json!("chat|1"), "{told:?}");
    let new_epoch = told[0].args[1]["epoch"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_ne!(new_epoch, old_epoch, "{told:?}");
    assert_eq!(told[0].args[1]["offset"], json!(0), "{told:?}");
    let since = json!({"since": {"offset": 1, "epoch": old_epoch}});
    assert!(
        others
            .iter()
            .any(|e| e.event == "sent" && e.args.get(2) == Some(&since)),
        "no rejoin with since: {others:?}"
    );

    // Events of the new history are delivered from its start.
    server.post_message(1, "carol", "after the restart").await;
    let (got, others) = until(&mut d, "a", "delivered", 1).await;
    assert_eq!(
        delivered(&got),
        [("after the restart".to_string(), 1, new_epoch)],
        "{others:?}"
    );
    d.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moved_to_another_server_gets_what_it_missed() {
    if !npm_ready(&["socket.io-client"], "a_client_moved_to_another_server") {
        return;
    }
    let Some(redis) = RedisServer::start().await.expect("starting redis-server") else {
        return;
    };
    let redis_url = redis.url();
    let a = ChatServer::start_with(&[("REDIS_URL", &redis_url)]).await;
    let b = ChatServer::start_with(&[("REDIS_URL", &redis_url)]).await;
    let proxy = CutProxy::start(a.addr).await;
    let mut d = NodeDriver::spawn("recovery_client.mjs", &[]);
    let position = connect_and_join(&mut d, &format!("http://{}", proxy.addr)).await;
    let epoch = position["epoch"].as_str().unwrap().to_string();
    let expected = |from: u64, to: u64| -> Vec<(String, u64, String)> {
        (from..=to)
            .map(|o| (format!("m{o}"), o, epoch.clone()))
            .collect()
    };
    for o in 1..=3 {
        a.post_message(1, "carol", &format!("m{o}")).await;
    }
    let (got, _) = until(&mut d, "a", "delivered", 3).await;
    assert_eq!(delivered(&got), expected(1, 3));

    // Cut off from A; messages posted through B meanwhile; the client's
    // next connection lands on B.
    proxy.set_online(false);
    for o in 4..=13 {
        b.post_message(1, "carol", &format!("m{o}")).await;
    }
    proxy.set_upstream(b.addr);
    proxy.set_online(true);
    let (told, others) = until(&mut d, "a", "recovered", 1).await;
    assert_eq!(told[0].args[0], json!("chat|1"), "{told:?}");
    let got: Vec<Event> = others
        .iter()
        .filter(|e| e.event == "delivered")
        .cloned()
        .collect();
    assert_eq!(delivered(&got), expected(4, 13), "{others:?}");
    let since = json!({"since": {"offset": 3, "epoch": epoch}});
    assert!(
        others
            .iter()
            .any(|e| e.event == "sent" && e.args.get(2) == Some(&since)),
        "no rejoin with since 3: {others:?}"
    );
    assert!(
        !others.iter().any(|e| e.event == "not_recovered"),
        "{others:?}"
    );

    // Live again, from either server.
    a.post_message(1, "carol", "m14").await;
    b.post_message(1, "carol", "m15").await;
    let (got, others) = until(&mut d, "a", "delivered", 2).await;
    assert_eq!(delivered(&got), expected(14, 15), "{others:?}");
    d.finish().await;
    drop(proxy);
}
