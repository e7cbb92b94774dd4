//! Benchmark, run by hand (ignored by `cargo test`):
//!
//! ```text
//! cargo test --release --test outbox_bench -- --ignored --nocapture
//! ```
//!
//! 1. Deliveries/s of 1 KiB events to 10 rooms (one client each) on a
//!    socketioxide server on the Redis adapter, from a Redis worker: direct
//!    broadcasts (10 concurrent senders, one per room) against the outbox
//!    relay draining the same number of committed rows (10 streams).
//! 2. What `after_commit` adds to the caller's transaction: p50/p99 of
//!    BEGIN + INSERT + COMMIT with and without it, alternating.
//!
//! Prints one JSON line per measurement.

mod outbox_common;

use std::time::{Duration, Instant};

use broadcast_core::outbox::{Outbox, Relay};
use broadcast_core::redis::{RedisAdapter, RedisConfig};
use broadcast_core::{Broadcaster, PreparedDelivery};
use broadcast_test_support::redis::RedisServer;
use broadcast_test_support::server::TestServer;
use outbox_common::*;
use serde_json::json;
use socketioxide::extract::SocketRef;
use socketioxide::handler::ConnectHandler;

const ROOMS: usize = 10;
const EVENTS: u64 = 20_000;
const RUNS: usize = 3;

fn event(room: usize, n: u64) -> Numbered {
    Numbered {
        // About 1 KiB of payload in all.
        pad: "x".repeat(980),
        ..Numbered::new(&format!("r{room}"), 0, n)
    }
}

async fn received_all(readers: Vec<tokio::task::JoinHandle<usize>>) -> usize {
    let mut total = 0;
    for r in readers {
        total += r.await.unwrap();
    }
    total
}

/// One client per room, each counting `per_room` events.
async fn readers(addr: std::net::SocketAddr) -> Vec<tokio::task::JoinHandle<usize>> {
    let per_room = (EVENTS as usize) / ROOMS;
    let mut out = Vec::new();
    for r in 0..ROOMS {
        let mut c = client(addr, &[&format!("r{r}")]).await;
        out.push(tokio::spawn(async move {
            let mut n = 0;
            while n < per_room {
                match c.next_event(Duration::from_secs(30)).await {
                    Ok(ev) if ev.event == "numbered" => n += 1,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            n
        }));
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by hand with --release"]
async fn outbox_bench() {
    let Some(redis) = RedisServer::start().await.expect("redis-server") else {
        return;
    };
    let Some((_db, pool)) = database("outbox_bench").await else {
        return;
    };
    let parts = broadcast_core::redis::server(RedisConfig::from_url(&redis.url()).unwrap())
        .await
        .unwrap();
    parts
        .io
        .ns(
            "/",
            (async |_: SocketRef<RedisAdapter>| {}).with(join_from_auth),
        )
        .await
        .unwrap();
    let http = TestServer::serve(parts.layer.clone()).await.unwrap();
    let worker = broadcast_core::redis::worker(RedisConfig::from_url(&redis.url()).unwrap())
        .await
        .unwrap();
    let b = worker.broadcaster.clone();
    let bytes = PreparedDelivery::from_json(&{
        let (_l, io) = socketioxide::SocketIo::new_layer();
        match Broadcaster::socketio(io)
            .broadcast(event(0, 0))
            .prepare()
            .await
            .unwrap()
        {
            broadcast_core::Prepared::Ready(p) => p.to_json(),
            broadcast_core::Prepared::Skipped(_) => unreachable!(),
        }
    })
    .unwrap()
    .payload()
    .get()
    .len();

    for run in 0..RUNS {
        // Direct: 10 senders, one per room, each awaiting its broadcasts.
        let rs = readers(http.addr).await;
        let start = Instant::now();
        let senders: Vec<_> = (0..ROOMS)
            .map(|r| {
                let b = b.clone();
                tokio::spawn(async move {
                    for n in 0..EVENTS / ROOMS as u64 {
                        b.broadcast(event(r, n)).await.unwrap();
                    }
                })
            })
            .collect();
        for s in senders {
            s.await.unwrap();
        }
        let got = received_all(rs).await;
        let direct = start.elapsed();
        assert_eq!(got, EVENTS as usize);

        // Outbox: commit the rows first (100 per transaction), then time the
        // relay from its start until every client has every event.
        sqlx::query("TRUNCATE broadcast_outbox")
            .execute(&pool)
            .await
            .unwrap();
        for chunk in 0..EVENTS / 100 {
            let mut tx = pool.begin().await.unwrap();
            for i in 0..100 {
                let n = chunk * 100 + i;
                b.broadcast(event((n % ROOMS as u64) as usize, n))
                    .after_commit(&mut tx)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
        }
        let rs = readers(http.addr).await;
        let start = Instant::now();
        let relay = Relay::builder(pool.clone(), b.clone())
            .batch(1_000)
            .streams_per_round(ROOMS)
            .spawn();
        let got = received_all(rs).await;
        let relayed = start.elapsed();
        relay.shutdown().await;
        assert_eq!(got, EVENTS as usize);
        assert_eq!(Outbox::default().pending(&pool).await.unwrap(), 0);
        let direct_rate = EVENTS as f64 / direct.as_secs_f64();
        let outbox_rate = EVENTS as f64 / relayed.as_secs_f64();
        println!(
            "{}",
            json!({"run": run, "events": EVENTS, "payload_bytes": bytes,
                   "direct_per_s": direct_rate.round(), "outbox_per_s": outbox_rate.round(),
                   "ratio": (outbox_rate / direct_rate * 1000.0).round() / 1000.0})
        );
    }

    // Commit latency: BEGIN + INSERT + COMMIT, with and without the outbox
    // row, alternating so both see the same machine.
    sqlx::query("CREATE TABLE app_rows (id bigserial PRIMARY KEY, body text NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    let (mut plain, mut with_outbox) = (Vec::new(), Vec::new());
    for i in 0..4_000u64 {
        let outbox = i % 2 == 1;
        let start = Instant::now();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO app_rows (body) VALUES ($1)")
            .bind("a row")
            .execute(&mut *tx)
            .await
            .unwrap();
        if outbox {
            b.broadcast(event((i % ROOMS as u64) as usize, i))
                .after_commit(&mut tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        let took = start.elapsed();
        if outbox {
            with_outbox.push(took)
        } else {
            plain.push(took)
        }
    }
    plain.sort();
    with_outbox.sort();
    println!(
        "{}",
        json!({"commit_ms": {
            "plain_p50": percentile(&plain, 0.5), "plain_p99": percentile(&plain, 0.99),
            "outbox_p50": percentile(&with_outbox, 0.5), "outbox_p99": percentile(&with_outbox, 0.99),
            "added_p50": percentile(&with_outbox, 0.5) - percentile(&plain, 0.5),
            "added_p99": percentile(&with_outbox, 0.99) - percentile(&plain, 0.99),
        }})
    );
    let _ = worker.connection.shutdown().await;
    let _ = parts.connection.shutdown().await;
}
