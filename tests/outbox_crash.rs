//! Exactly once across relay crashes: 4 writers commit 10,000 events to 10
//! rooms while the relay, a separate process (`examples/outbox_relay`,
//! publishing through a real `redis-server`), is SIGKILLed at 20 random
//! moments and restarted. Clients of a socketioxide server on the Redis
//! adapter must receive every committed event exactly once, in commit order
//! per room.

mod chat_common;
mod outbox_common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use broadcast_core::Broadcaster;
use broadcast_core::outbox::Outbox;
use broadcast_core::redis::{RedisAdapter, RedisConfig};
use broadcast_test_support::env::TempDir;
use broadcast_test_support::redis::RedisServer;
use broadcast_test_support::server::TestServer;
use chat_common::{Proc, example_bin};
use outbox_common::*;
use socketioxide::extract::SocketRef;
use socketioxide::handler::ConnectHandler;

const WRITERS: u32 = 4;
const EVENTS: u64 = 10_000;
const ROOMS: usize = 10;
const KILLS: usize = 20;

/// xorshift64: reproducible random moments from a printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The relay process, its output in a file.
struct RelayProc {
    proc: Proc,
    out: std::path::PathBuf,
}

fn start_relay(dir: &TempDir, n: usize, database: &str, redis: &str) -> RelayProc {
    let out = dir.path().join(format!("relay-{n}.out"));
    let file = std::fs::File::create(&out).expect("relay output file");
    let err = file.try_clone().expect("cloning the output handle");
    let child = Command::new(example_bin("outbox_relay"))
        .env("DATABASE_URL", database)
        .env("REDIS_URL", redis)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .expect("spawning the relay");
    RelayProc {
        proc: Proc::new(child, false),
        out,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_sigkilled_20_times_delivers_every_committed_event_once_in_commit_order() {
    init_tracing();
    let test = "relay_sigkilled_20_times_delivers_every_committed_event_once_in_commit_order";
    let Some(redis) = RedisServer::start().await.expect("redis-server") else {
        return;
    };
    let Some((db, pool)) = database(test).await else {
        return;
    };
    // Built before the clock starts: the relay binary.
    example_bin("outbox_relay");
    let started = Instant::now();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("seed {seed}");

    let parts = broadcast_core::redis::server(RedisConfig::from_url(&redis.url()).unwrap())
        .await
        .expect("server on Redis");
    parts
        .io
        .ns(
            "/",
            (async |_: SocketRef<RedisAdapter>| {}).with(join_from_auth),
        )
        .await
        .expect("namespace subscribed");
    let http = TestServer::serve(parts.layer.clone()).await.expect("serve");
    let rooms: Vec<String> = (0..ROOMS).map(|r| format!("r{r}")).collect();
    let mut clients = Vec::new();
    for room in &rooms {
        clients.push(client(http.addr, &[room.as_str()]).await);
    }
    // Each client counts what it receives while the test runs.
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let per_room = (EVENTS as usize) / ROOMS;
                collect_numbered(&mut c, per_room, Duration::from_secs(2)).await
            })
        })
        .collect();

    let dir = TempDir::new("outbox-crash").expect("temp dir");
    let mut relay = start_relay(&dir, 0, db.url(), &redis.url());

    // The writers: a broadcaster that never delivers itself (only the
    // pipeline runs at after_commit time).
    let (_l, io) = socketioxide::SocketIo::new_layer();
    let writer = Broadcaster::socketio(io);
    let writing = Arc::new(AtomicBool::new(true));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let pool = pool.clone();
            let b = writer.clone();
            let rooms = rooms.clone();
            tokio::spawn(async move {
                let mut rng = Rng(seed.wrapping_add(u64::from(w) * 7919) | 1);
                for n in 0..EVENTS / u64::from(WRITERS) {
                    let room = &rooms[rng.below(ROOMS as u64) as usize];
                    let mut tx = pool.begin().await.unwrap();
                    b.broadcast(Numbered::new(room, w, n))
                        .after_commit(&mut tx)
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                }
            })
        })
        .collect();
    let done = writing.clone();
    let all_written = tokio::spawn(async move {
        for w in writers {
            w.await.unwrap();
        }
        done.store(false, Ordering::Release);
    });

    // SIGKILL the relay at random moments while rows flow, and restart it.
    let mut rng = Rng(seed);
    for k in 1..=KILLS {
        tokio::time::sleep(Duration::from_millis(30 + rng.below(170))).await;
        relay.proc.kill();
        relay = start_relay(&dir, k, db.url(), &redis.url());
    }
    let kills_done_while_writing = writing.load(Ordering::Acquire);
    all_written.await.unwrap();

    let outbox = Outbox::default();
    let drained = eventually(Duration::from_secs(30), || async {
        (outbox.pending(&pool).await.unwrap() == 0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "the last relay did not drain the outbox");

    let mut received: HashMap<String, Vec<(u32, u64)>> = HashMap::new();
    let mut total = 0;
    for r in readers {
        for (room, w, n) in r.await.unwrap() {
            total += 1;
            received.entry(room).or_default().push((w, n));
        }
    }
    let committed = committed_order(&pool).await;
    let committed_total: usize = committed.values().map(Vec::len).sum();
    assert_eq!(committed_total, EVENTS as usize);
    let mut lost = 0;
    let mut duplicated = 0;
    for room in &rooms {
        let got = received.get(room).cloned().unwrap_or_default();
        let want = &committed[room];
        let mut seen = std::collections::HashSet::new();
        duplicated += got.iter().filter(|e| !seen.insert(**e)).count();
        lost += want.iter().filter(|e| !seen.contains(*e)).count();
        if lost == 0 && duplicated == 0 {
            assert_eq!(&got, want, "room {room}: not in commit order");
        }
    }
    // One idempotency key per event: each was published by one script run.
    let keys: i64 = redis
        .command([
            "EVAL",
            "return #redis.call('KEYS', ARGV[1])",
            "0",
            "*broadcast-id:*",
        ])
        .await
        .unwrap();
    // The last relay's own counters (SIGTERM: it prints them and exits).
    let _ = Command::new("kill")
        .args(["-TERM", &relay.proc.id().to_string()])
        .status();
    let status = relay.proc.wait_exit(Duration::from_secs(10)).await;
    let last = std::fs::read_to_string(&relay.out).unwrap_or_default();
    eprintln!(
        "{} kills ({}), {total} received, {lost} lost, {duplicated} duplicated, {keys} idempotency keys, {:.1}s; last relay: {status:?} {}",
        KILLS,
        if kills_done_while_writing {
            "all while writers ran"
        } else {
            "some after the writers finished"
        },
        started.elapsed().as_secs_f64(),
        last.trim()
    );
    assert_eq!((lost, duplicated, total), (0, 0, EVENTS as usize));
    assert_eq!(keys, EVENTS as i64);
    let _ = parts.connection.shutdown().await;
}
