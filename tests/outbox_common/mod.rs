//! Shared by the outbox and queue tests: a per-test database with the
//! outbox migrated, a numbered event, servers and clients on loopback.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use broadcast_core::BroadcastEvent;
use broadcast_core::outbox::Outbox;
use broadcast_test_support::postgres::TestDatabase;
use broadcast_test_support::server::TestServer;
use broadcast_test_support::sio_client::{ClientError, SioClient};
use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{Data, SocketRef};
use socketioxide::handler::ConnectHandler;
use sqlx::PgPool;

pub const WAIT: Duration = Duration::from_secs(10);
pub const QUIET: Duration = Duration::from_millis(600);

/// Event `numbered` to room `room`: who wrote it and its number there.
#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = "{room}", name = "numbered")]
pub struct Numbered {
    pub room: String,
    pub writer: u32,
    pub n: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pad: String,
}

impl Numbered {
    pub fn new(room: &str, writer: u32, n: u64) -> Self {
        Self {
            room: room.into(),
            writer,
            n,
            pad: String::new(),
        }
    }
}

/// Event `stray` to a namespace the test servers do not have.
#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = "lost", namespace = "/nowhere", name = "stray")]
pub struct Stray {
    pub n: u64,
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A fresh database with the default outbox migrated, or `None` to skip
/// (no PostgreSQL outside CI; a loud line says so).
pub async fn database(test: &str) -> Option<(TestDatabase, PgPool)> {
    let db = TestDatabase::create(test)
        .await
        .expect("PostgreSQL for the outbox tests")?;
    let pool = db.pool(16).await.expect("a pool on the test database");
    Outbox::default()
        .migrate(&pool)
        .await
        .expect("outbox migrations");
    Some((db, pool))
}

/// Joins the rooms listed in the connect auth `{"rooms": [...]}`.
pub async fn join_from_auth<A: Adapter>(
    s: SocketRef<A>,
    Data(auth): Data<Value>,
) -> Result<(), Infallible> {
    let rooms: Vec<String> = auth["rooms"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    s.join(rooms);
    Ok(())
}

/// An in-memory socketioxide server on loopback with namespace `/`.
pub async fn local_server() -> (TestServer, SocketIo) {
    // Room for bursts: a test client that reads slower than a relay or a
    // queue delivers must not lose events to the default 128-packet buffer.
    let (layer, io) = SocketIo::builder().max_buffer_size(32_768).build_layer();
    io.ns("/", (async |_: SocketRef| {}).with(join_from_auth));
    let http = TestServer::serve(layer).await.expect("serve");
    (http, io)
}

pub async fn client(addr: std::net::SocketAddr, rooms: &[&str]) -> SioClient {
    SioClient::connect(addr, "/", Some(json!({ "rooms": rooms })))
        .await
        .expect("client connects")
}

/// `numbered` events a client receives, as `(room, writer, n)`.
pub async fn collect_numbered(
    c: &mut SioClient,
    want: usize,
    quiet: Duration,
) -> Vec<(String, u32, u64)> {
    let mut got = Vec::with_capacity(want);
    loop {
        let wait = if got.len() >= want { quiet } else { WAIT };
        match c.next_event(wait).await {
            Ok(ev) if ev.event == "numbered" => {
                let a = &ev.args[0];
                got.push((
                    a["room"].as_str().unwrap_or_default().to_owned(),
                    a["writer"].as_u64().unwrap_or(u64::MAX) as u32,
                    a["n"].as_u64().unwrap_or(u64::MAX),
                ));
            }
            Ok(_) => {}
            Err(ClientError::Timeout) => return got,
            Err(e) => panic!("client failed: {e}"),
        }
    }
}

/// The committed order per stream, as the outbox numbered it:
/// `room -> [(writer, n)]` by `seq`.
pub async fn committed_order(pool: &PgPool) -> HashMap<String, Vec<(u32, u64)>> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT stream, delivery FROM broadcast_outbox ORDER BY stream, seq")
            .fetch_all(pool)
            .await
            .expect("reading the outbox");
    let mut order: HashMap<String, Vec<(u32, u64)>> = HashMap::new();
    for (stream, delivery) in rows {
        let d: Value = serde_json::from_str(&delivery).expect("stored JSON");
        let p = &d["payload"];
        let room = stream.trim_start_matches("/#").to_owned();
        order.entry(room).or_default().push((
            p["writer"].as_u64().unwrap_or(u64::MAX) as u32,
            p["n"].as_u64().unwrap_or(u64::MAX),
        ));
    }
    order
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `bound`.
pub async fn eventually<T, F, Fut>(bound: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
