//! Shared by the `redis_*` integration tests: a Socket.IO server on the Redis
//! adapter served on loopback, clients that join rooms through their `auth`
//! payload, and the test events.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::time::{Duration, Instant};

use broadcast_core::redis::{RedisAdapter, RedisConfig, RedisSocketIo};
use broadcast_core::{BroadcastEvent, PayloadError, Target};
use broadcast_test_support::server::TestServer;
use broadcast_test_support::sio_client::SioClient;
use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::extract::{Data, SocketRef};
use socketioxide::handler::ConnectHandler;

/// Upper bound for anything that should arrive.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched; ample for a loopback round trip
/// through Redis.
pub const QUIET: Duration = Duration::from_millis(400);

#[derive(Serialize, broadcast_core::BroadcastEvent)]
#[broadcast(on = "chat|{chat_id}")]
pub struct MessagePosted {
    pub chat_id: u64,
    pub text: String,
}

#[derive(Serialize, broadcast_core::BroadcastEvent)]
#[broadcast(on = "chat|{chat_id}", namespace = "/admin")]
pub struct AuditLogged {
    pub chat_id: u64,
}

/// An event whose namespace and room are chosen at run time (cluster tests
/// spread namespaces over shards).
#[derive(Serialize)]
pub struct ShardPing {
    #[serde(skip)]
    pub namespace: String,
    pub room: String,
    pub seq: u64,
}

impl BroadcastEvent for ShardPing {
    const NAME: &'static str = "shard_ping";

    async fn broadcast_on(&self) -> impl broadcast_core::IntoTargets {
        Target::new(self.namespace.clone(), self.room.clone())
    }

    async fn broadcast_as(&self) -> Result<impl Serialize, PayloadError> {
        Ok(self)
    }
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Joins the rooms named in `auth.rooms` before the connect is acknowledged,
/// so a client is in its rooms as soon as `connect` returns.
pub async fn join_from_auth<A: socketioxide::adapter::Adapter>(
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

/// One Socket.IO server process: its Redis setup and its HTTP listener.
pub struct Node {
    pub parts: RedisSocketIo,
    pub http: TestServer,
}

impl Node {
    /// Sets up a server on `config` with the namespaces `/`, `/admin` and
    /// `extra`, and serves it on a free loopback port.
    pub async fn start(config: RedisConfig, extra: &[String]) -> Node {
        let parts = broadcast_core::redis::server(config)
            .await
            .expect("server setup");
        let mut namespaces = vec!["/".to_string(), "/admin".to_string()];
        namespaces.extend(extra.iter().cloned());
        for ns in namespaces {
            parts
                .io
                .ns(
                    ns,
                    (async |_: SocketRef<RedisAdapter>| {}).with(join_from_auth),
                )
                .await
                .expect("namespace subscribed");
        }
        let http = TestServer::serve(parts.layer.clone()).await.expect("serve");
        Node { parts, http }
    }

    /// A client on namespace `ns`, in `rooms`.
    pub async fn client(&self, ns: &str, rooms: &[&str]) -> SioClient {
        SioClient::connect(self.http.addr, ns, Some(json!({ "rooms": rooms })))
            .await
            .expect("client connects")
    }

    pub async fn shutdown(&self) {
        let _ = self.parts.connection.shutdown().await;
    }
}

/// Polls `f` every `every` until it returns `Some`, for at most `bound`.
pub async fn poll_until<T, F, Fut>(bound: Duration, every: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + bound;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// The next event's `text` field, or `None` on timeout.
pub async fn next_text(c: &mut SioClient, timeout: Duration) -> Option<String> {
    let got = c.next_event(timeout).await.ok()?;
    got.args.first()?.get("text")?.as_str().map(String::from)
}
