//! `broadcast-flood`: the join protocol under a flood.
//!
//! One Socket.IO server process (this binary, re-executed with the internal
//! `server` role) with the default abuse limits serves two clients on
//! loopback: a raw websocket that sends forbidden `join_<key>` requests with
//! acks at a fixed rate (50,000/s by default) and never reads, and a normal
//! client that joins, awaits the ack, leaves, five times a second. It
//! prints the normal client's join-ack latency, the server's RSS growth,
//! the authorizer calls (against what the rate limit allows) and the
//! server's `Rooms::stats`, as text and as one JSON line; it exits non-zero
//! if a target is missed.
//!
//! ```text
//! cargo run --release -p broadcast-bench --bin broadcast-flood -- --seconds 10 --rate 50000
//! ```
//!
//! Bounded: `--seconds` (at most 60) of flood, loopback only, and the
//! server is killed when the bench exits however it exits.

use std::net::SocketAddr;
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use broadcast_core::Room;
use broadcast_core::join::{
    DEFAULT_JOIN_BURST, DEFAULT_JOINS_PER_SECOND, DEFAULT_MAX_JOINS_IN_FLIGHT, Handshake,
    JoinContext, Rooms,
};
use broadcast_test_support::process::die_with_parent;
use broadcast_test_support::sio_client::{SioClient, open_websocket};
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, Error>;

/// The flooding client's user: asks for rooms of user `FLOODER + 1`.
const FLOODER: u64 = 1;
/// The normal client's user: asks for its own room.
const NORMAL: u64 = 3;
/// Targets of the issue.
const P99_TARGET: Duration = Duration::from_millis(500);
const RSS_TARGET_MB: f64 = 100.0;

#[derive(Room)]
#[room(authorize = can_join)]
struct GuardedRoom(u64);

/// Authorizer calls per user (index = user id).
static CALLS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

struct User(u64);

/// A member check that costs what a database query would: a wait.
async fn can_join(ctx: &JoinContext, room: &GuardedRoom) -> bool {
    let user = ctx.identity::<User>().map_or(0, |u| u.0);
    if let Some(c) = CALLS.get(user as usize) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    user == room.0
}

async fn authenticate(h: Handshake) -> std::result::Result<Option<User>, String> {
    Ok(h.auth()["user"].as_u64().map(User))
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = match argv.first().map(String::as_str) {
        Some("server") => server_main(),
        Some("-h" | "--help") => {
            println!("broadcast-flood [--seconds N (10, at most 60)] [--rate JOINS_PER_S (50000)]");
            return ExitCode::SUCCESS;
        }
        _ => bench_main(&argv),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("broadcast-flood: error: {e}");
            ExitCode::FAILURE
        }
    }
}

// --- The server process.

/// Serves on a free loopback port and prints `READY <addr>`; answers `STATS`
/// with `STATS {json}`; exits at the end of stdin.
fn server_main() -> Result<bool> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (layer, io) = socketioxide::SocketIo::new_layer();
        let rooms = Rooms::builder().authenticate(authenticate).build()?;
        rooms.attach(&io);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new().layer(layer);
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut out = tokio::io::stdout();
        out.write_all(format!("READY {addr}\n").as_bytes()).await?;
        out.flush().await?;
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Some(line) = lines.next_line().await? {
            if line.trim() == "STATS" {
                let s = rooms.stats();
                let stats = json!({
                    "flooder_calls": CALLS[FLOODER as usize].load(Ordering::Relaxed),
                    "normal_calls": CALLS[NORMAL as usize].load(Ordering::Relaxed),
                    "rate_limited": s.rate_limited,
                    "requests_dropped": s.requests_dropped,
                    "replies_dropped": s.replies_dropped,
                    "pending": s.pending,
                });
                out.write_all(format!("STATS {stats}\n").as_bytes()).await?;
                out.flush().await?;
            }
        }
        Ok::<_, Error>(())
    })?;
    // Exit without waiting for the blocking stdin reader thread.
    std::process::exit(0)
}

// --- The bench process.

struct Server {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    pid: u32,
}

impl Server {
    fn spawn() -> Result<Server> {
        let exe = std::env::current_exe()?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        die_with_parent(&mut cmd);
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let (Some(stdin), Some(stdout), Some(pid)) =
            (child.stdin.take(), child.stdout.take(), child.id())
        else {
            return Err("server: no pipes or pid".into());
        };
        Ok(Server {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            pid,
        })
    }

    async fn expect(&mut self, tag: &str) -> Result<String> {
        let read = async {
            while let Some(line) = self.lines.next_line().await? {
                if let Some(rest) = line.strip_prefix(tag) {
                    return Ok(rest.trim().to_owned());
                }
            }
            Err::<String, Error>(format!("server exited before `{tag}`").into())
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .map_err(|_| format!("server did not say `{tag}`"))?
    }

    async fn stats(&mut self) -> Result<Value> {
        self.stdin.write_all(b"STATS\n").await?;
        self.stdin.flush().await?;
        Ok(serde_json::from_str(&self.expect("STATS").await?)?)
    }

    /// Resident set size, MiB, from `/proc/<pid>/status`.
    fn rss_mb(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or("no VmRSS")?;
        Ok(kb / 1024.0)
    }
}

fn flag(argv: &[String], name: &str, default: u64) -> Result<u64> {
    match argv.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => Ok(argv.get(i + 1).ok_or("missing value")?.parse()?),
    }
}

fn bench_main(argv: &[String]) -> Result<bool> {
    let seconds = flag(argv, "--seconds", 10)?.clamp(1, 60);
    let rate = flag(argv, "--rate", 50_000)?.clamp(1, 1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // The child is spawned from this (main) thread, which lives as long as it.
    rt.block_on(bench(Duration::from_secs(seconds), rate))
}

/// Percentile of sorted samples.
fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn bench(duration: Duration, rate: u64) -> Result<bool> {
    let mut server = Server::spawn()?;
    let addr: SocketAddr = server.expect("READY").await?.parse()?;
    let normal = SioClient::connect(addr, "/", Some(json!({ "user": NORMAL }))).await?;
    let (mut flood_ws, _, _) = open_websocket(addr).await?;
    // The CONNECT is answered, but this client reads nothing, ever: it
    // sends its joins once the server had time to connect it.
    flood_ws
        .send(Message::text(format!("40{}", json!({ "user": FLOODER }))))
        .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let flood_connected = Instant::now();
    let rss_before = server.rss_mb()?;
    let rss_peak = Arc::new(Mutex::new(rss_before));

    let sent = Arc::new(AtomicU64::new(0));
    let flood = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let per_ms = (rate / 1000).max(1);
            let start = tokio::time::Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let mut id = 0u64;
            while start.elapsed() < duration {
                tick.tick().await;
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                let mut batch = 0;
                while id < due && batch < per_ms * 4 {
                    let packet = format!("42{id}[\"join_guarded\",{}]", FLOODER + 1);
                    if flood_ws.feed(Message::text(packet)).await.is_err() {
                        return flood_ws;
                    }
                    id += 1;
                    batch += 1;
                }
                if flood_ws.flush().await.is_err() {
                    return flood_ws;
                }
                sent.store(id, Ordering::Relaxed);
            }
            flood_ws
        })
    };

    let sampler = {
        let (pid, peak) = (server.pid, rss_peak.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                    return;
                };
                let kb: Option<f64> = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
                if let Some(kb) = kb {
                    let mut p = peak.lock().unwrap_or_else(PoisonError::into_inner);
                    *p = p.max(kb / 1024.0);
                }
            }
        })
    };

    // The normal client: join, await the ack, leave, 5 times a second
    // (half the default rate), so it is never limited itself.
    let mut latencies = Vec::new();
    let mut refused = Vec::new();
    let start = Instant::now();
    let timeout = Duration::from_secs(10);
    while start.elapsed() < duration {
        let t = Instant::now();
        let ack = normal
            .emit_with_ack("/", "join_guarded", vec![json!(NORMAL)], timeout)
            .await;
        let took = t.elapsed();
        match ack {
            Ok(a) if a.first().is_some_and(|v| v["ok"] == true) => latencies.push(took),
            Ok(a) => refused.push(format!("{a:?}")),
            Err(e) => refused.push(e.to_string()),
        }
        let _ = normal
            .emit_with_ack("/", "leave_guarded", vec![json!(NORMAL)], timeout)
            .await;
        tokio::time::sleep(Duration::from_millis(200).saturating_sub(t.elapsed())).await;
    }
    let flood_ws = flood.await?;
    let flood_elapsed = flood_connected.elapsed();
    let stats = server.stats().await?;
    sampler.abort();
    let rss_after = server.rss_mb()?;
    let rss_peak = *rss_peak.lock().unwrap_or_else(PoisonError::into_inner);
    drop(flood_ws);
    drop(normal);
    drop(server.stdin);
    let _ = tokio::time::timeout(Duration::from_secs(5), server.child.wait()).await;

    latencies.sort();
    let sent = sent.load(Ordering::Relaxed);
    let (p50, p99, max) = (
        pct(&latencies, 0.50),
        pct(&latencies, 0.99),
        pct(&latencies, 1.0),
    );
    let growth = rss_peak.max(rss_after) - rss_before;
    let allowed = u64::from(DEFAULT_JOIN_BURST)
        + (flood_elapsed.as_secs_f64() * DEFAULT_JOINS_PER_SECOND).ceil() as u64
        + DEFAULT_MAX_JOINS_IN_FLIGHT as u64;
    let flooder_calls = stats["flooder_calls"].as_u64().unwrap_or(u64::MAX);
    let ok_latency = p99 < P99_TARGET && refused.is_empty() && !latencies.is_empty();
    let ok_memory = growth < RSS_TARGET_MB;
    let ok_calls = flooder_calls <= allowed;
    println!(
        "flood: {sent} forbidden joins in {:.1} s ({:.0}/s), never read",
        duration.as_secs_f64(),
        sent as f64 / duration.as_secs_f64()
    );
    println!(
        "normal client: {} joins acked, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} refused or lost (target p99 < {} ms: {})",
        latencies.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        refused.len(),
        P99_TARGET.as_millis(),
        if ok_latency { "met" } else { "MISSED" }
    );
    println!(
        "server RSS: {rss_before:.1} MiB before, {rss_peak:.1} MiB peak, {rss_after:.1} MiB after: +{growth:.1} MiB (target < {RSS_TARGET_MB} MiB: {})",
        if ok_memory { "met" } else { "MISSED" }
    );
    println!(
        "authorizer calls for the flooder: {flooder_calls} (allowed {allowed} = {DEFAULT_JOIN_BURST} + {DEFAULT_JOINS_PER_SECOND}/s x {:.1} s + {DEFAULT_MAX_JOINS_IN_FLIGHT}: {}); server stats {stats}",
        flood_elapsed.as_secs_f64(),
        if ok_calls { "met" } else { "MISSED" }
    );
    for r in refused.iter().take(5) {
        println!("  refused: {r}");
    }
    let line = json!({
        "seconds": duration.as_secs_f64(),
        "flood_sent": sent,
        "normal_joins": latencies.len(),
        "normal_refused": refused.len(),
        "p50_ms": p50.as_secs_f64() * 1e3,
        "p99_ms": p99.as_secs_f64() * 1e3,
        "max_ms": max.as_secs_f64() * 1e3,
        "rss_before_mb": rss_before,
        "rss_peak_mb": rss_peak,
        "rss_growth_mb": growth,
        "flooder_authorizer_calls": flooder_calls,
        "allowed_calls": allowed,
        "server": stats,
    });
    println!("{line}");
    Ok(ok_latency && ok_memory && ok_calls)
}
