//! The chat demo with `DATABASE_URL`: it creates its tables at startup on an
//! empty database, stores posted messages and broadcasts them after commit
//! through the outbox; `GET /chats/{id}/messages` serves them, also after a
//! restart. Without it, the same route serves the in-memory list.

mod chat_common;

use std::time::Duration;

use broadcast_test_support::postgres::TestDatabase;
use broadcast_test_support::sio_client::SioClient;
use chat_common::{ChatServer, assert_message, unix_now};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

async fn member_of_chat_1(server: &ChatServer) -> SioClient {
    let c = SioClient::connect(server.addr, "/", Some(json!({"user": "bob"})))
        .await
        .expect("client connects");
    let ack = c
        .emit_with_ack("/", "join_chat", vec![json!(1)], WAIT)
        .await
        .unwrap();
    assert_eq!(ack[0]["ok"], true, "{ack:?}");
    c
}

#[tokio::test]
async fn messages_are_stored_in_postgres_broadcast_after_commit_and_listed_after_a_restart() {
    let test = "messages_are_stored_in_postgres_broadcast_after_commit_and_listed_after_a_restart";
    let Some(db) = TestDatabase::create(test).await.expect("PostgreSQL") else {
        return;
    };
    let server = ChatServer::start_with(&[("DATABASE_URL", db.url())]).await;
    let mut c = member_of_chat_1(&server).await;
    let before = unix_now();
    for text in ["one", "two", "three"] {
        server.post_message(1, "alice", text).await;
    }
    for text in ["one", "two", "three"] {
        let ev = c.next_event_named("message_posted", WAIT).await.unwrap();
        assert_message(&ev.args[0], 1, "alice", text, before);
    }
    let r = server.get("/chats/1/messages?limit=2").await;
    assert_eq!(r.status, 200, "{r:?}");
    let texts: Vec<_> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts, [json!("two"), json!("three")], "newest last");
    drop(c);
    drop(server);

    // A new process on the same database: the history is still there.
    let server = ChatServer::start_with(&[("DATABASE_URL", db.url())]).await;
    let r = server.get("/chats/1/messages?limit=10").await;
    let texts: Vec<_> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts, [json!("one"), json!("two"), json!("three")]);
    assert_eq!(server.get("/chats/1/messages?limit=0").await.status, 422);
    assert_eq!(server.get("/chats/2/messages").await.status, 403);
    assert_eq!(server.get("/chats/9/messages").await.status, 404);
}

#[tokio::test]
async fn without_a_database_the_messages_route_serves_memory() {
    let server = ChatServer::start().await;
    server.post_message(1, "alice", "kept").await;
    let r = server.get("/chats/1/messages").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()[0]["text"], "kept");
    assert_eq!(r.json()[0]["author"], "alice");
}
