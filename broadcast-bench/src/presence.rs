//! Presence benchmark: two chat servers (the `chat` example, release build,
//! as processes) on a harness-started Redis, N websocket clients.
//!
//! 1. Join storm: N clients (half on each server, users `u0`..) join chat 1
//!    (a presence room) at once, without asking for acks (n acks of up to
//!    n members each are n^2 members of JSON). The clients live in child
//!    processes of 2,500 (`presence_clients.rs`) that drop every frame but
//!    their `joined` unread. Reports the time until every `joined` is in,
//!    the time until both servers' `GET /chats/1/members` list everyone,
//!    and the presence frames two observers (one per server) received:
//!    count and per second, against the coalescing rule (per room and
//!    server: burst 20, then 10/s, so at most `2 * (20 + 10 * t)` in `t`
//!    seconds from two servers); and the peak memory of every process.
//! 2. Queries at N members: `members` and `count` of chat 1 from a worker
//!    (`redis::worker(..).presence`), Q times each: p50/p99/max. The
//!    `queries` mode measures three cases: a list read whole (no version),
//!    an unchanged room (the kept list), a room changed by one member
//!    before every query (the kept list and the room's log), and a new
//!    worker's first query after each change (the snapshot and the log).
//! 3. The same N clients join their own `user|<name>` room (no presence):
//!    the join storm without presence, for comparison.
//!
//! ```text
//! cargo build --release --example chat
//! cargo run --release -p broadcast-bench --bin broadcast-presence -- [members] [queries]
//! cargo run --release -p broadcast-bench --bin broadcast-presence -- queries [members] [queries]
//! ```
//! Prints one JSON line.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broadcast_core::redis::RedisConfig;
use broadcast_test_support::ports::free_port;
use broadcast_test_support::redis::RedisServer;
use broadcast_test_support::sio_client::SioClient;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(900);

fn chat_bin() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().ok_or("no exe dir")?;
    let bin = dir.join("examples").join("chat");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "{} missing: run `cargo build --release --example chat` first",
            bin.display()
        ))
    }
}

async fn start_chat(bin: &PathBuf, redis_url: &str) -> Result<(Child, u16), String> {
    let port = free_port().map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .env("PORT", port.to_string())
        .env("REDIS_URL", redis_url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if members(port).await.is_ok() {
            return Ok((child, port));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("chat server on {port} did not start"))
}

/// `GET /chats/1/members` of the server on `port`: how many.
async fn members(port: u16) -> Result<usize, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /chats/1/members HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let body = text.split("\r\n\r\n").nth(1).ok_or("no body")?;
    // A chunked body: the JSON is the first line that starts with `{`.
    let json = body
        .lines()
        .find(|l| l.starts_with('{'))
        .ok_or("no JSON in the body")?;
    let v: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    v["members"]
        .as_array()
        .map(Vec::len)
        .ok_or_else(|| "no members".to_owned())
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// `q` times `members` and `count` of chat 1: p50/p99/max of each, ms.
async fn measure(
    worker: &broadcast_core::redis::RedisWorker,
    n: usize,
    q: usize,
) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
    let (mut list, mut count) = (Vec::new(), Vec::new());
    for _ in 0..q {
        let t = Instant::now();
        let m = worker.presence.members("/", "chat|1").await?;
        list.push(ms(t.elapsed()));
        let t = Instant::now();
        let c = worker.presence.count("/", "chat|1").await?;
        count.push(ms(t.elapsed()));
        if m.len() != n || c != n {
            return Err(format!("{} / {c} members, want {n}", m.len()).into());
        }
    }
    list.sort_by(f64::total_cmp);
    count.sort_by(f64::total_cmp);
    Ok(json!({
        "members_ms": {"p50": pct(&list, 0.5), "p99": pct(&list, 0.99), "max": pct(&list, 1.0)},
        "count_ms": {"p50": pct(&count, 0.5), "p99": pct(&count, 0.99), "max": pct(&count, 1.0)},
    }))
}

/// A change of chat 1 as the presence scripts make it (member hash,
/// version, log entry, trimmed to the scripts' limit for 10,000 members):
/// `ARGV[1]` is `+` or `-`, `ARGV[2]` the id. Mirrors `scripts.rs`;
/// `tests/presence_redis.rs` checks the scripts' own log is read.
const CHANGE: &str = r#"
local json = '{\"id\":\"' .. ARGV[2] .. '\"}'
if ARGV[1] == '+' then
  redis.call('HSET', KEYS[1], ARGV[2], json)
else
  redis.call('HDEL', KEYS[1], ARGV[2])
end
local v = redis.call('INCR', KEYS[2])
redis.call('RPUSH', KEYS[3], string.format('%d', v) .. '\n' .. ARGV[1] .. json)
redis.call('LTRIM', KEYS[3], -256, -1)
return v
"#;

/// Change `i` of chat 1 (of `n` members): an extra member joins (even
/// `i`) or leaves (odd). Returns how many members the room has after it.
async fn change(
    redis: &RedisServer,
    i: usize,
    n: usize,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let base = "socket.io-presence:{/\u{1f}chat|1}";
    let (m, v, l) = (
        format!("{base}:m"),
        format!("{base}:v"),
        format!("{base}:l"),
    );
    let (op, want) = if i.is_multiple_of(2) {
        ("+", n + 1)
    } else {
        ("-", n)
    };
    let _: i64 = redis
        .command(["EVAL", CHANGE, "3", &m, &v, &l, op, "extra"])
        .await?;
    Ok(want)
}

/// `q` times: chat 1 changes (one member joins or leaves, in turn), then
/// `members` is timed: what a store that keeps the room's list pays for a
/// room that changed since its last query (p50/p99/max, ms).
async fn measure_changed(
    worker: &broadcast_core::redis::RedisWorker,
    redis: &RedisServer,
    n: usize,
    q: usize,
) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
    let mut list = Vec::new();
    for i in 0..q {
        let want = change(redis, i, n).await?;
        let t = Instant::now();
        let got = worker.presence.members("/", "chat|1").await?;
        list.push(ms(t.elapsed()));
        if got.len() != want {
            return Err(format!("{} members, want {want}", got.len()).into());
        }
    }
    list.sort_by(f64::total_cmp);
    Ok(json!({
        "members_ms": {"p50": pct(&list, 0.5), "p99": pct(&list, 0.99), "max": pct(&list, 1.0)},
    }))
}

/// `q` times: chat 1 changes, then a new worker's first `members` is
/// timed (a process that kept no list: the room's snapshot and the log
/// after it). The first query, which finds the snapshot too old and reads
/// the hash (and writes a snapshot), is reported apart.
async fn measure_cold(
    redis: &RedisServer,
    n: usize,
    q: usize,
) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
    let mut list = Vec::new();
    let mut first = 0.0;
    for i in 0..=q {
        let want = change(redis, i, n).await?;
        let worker = broadcast_core::redis::worker(RedisConfig::from_url(&redis.url())?).await?;
        let t = Instant::now();
        let got = worker.presence.members("/", "chat|1").await?;
        let took = ms(t.elapsed());
        if got.len() != want {
            return Err(format!("{} members, want {want}", got.len()).into());
        }
        if i == 0 {
            first = took;
            // The snapshot is written in the background.
            tokio::time::sleep(Duration::from_millis(200)).await;
        } else {
            list.push(took);
        }
        worker.connection.shutdown().await?;
    }
    list.sort_by(f64::total_cmp);
    Ok(json!({
        "first_ms": first,
        "members_ms": {"p50": pct(&list, 0.5), "p99": pct(&list, 0.99), "max": pct(&list, 1.0)},
    }))
}

/// Clients per child process: far from the 20,000 files a process may
/// open, and small enough that one child's memory stays in megabytes.
const PER_CHILD: usize = 2_500;

/// A child process of clients (`presence_clients.rs`).
struct Clients {
    child: Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Clients {
    async fn spawn(ports: [u16; 2], from: usize, to: usize) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args([
                "clients".to_owned(),
                ports[0].to_string(),
                ports[1].to_string(),
            ])
            .args([from.to_string(), to.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        use tokio::io::AsyncBufReadExt;
        let lines = tokio::io::BufReader::new(stdout).lines();
        Ok(Self {
            child,
            stdin,
            lines,
        })
    }

    async fn expect(&mut self, prefix: &str) -> Result<String, String> {
        let line = tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .map_err(|_| format!("no `{prefix}` from a client process"))?
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("a client process ended before `{prefix}`"))?;
        if line.starts_with(prefix) {
            Ok(line)
        } else {
            Err(format!("a client process said `{line}`, not `{prefix}`"))
        }
    }

    async fn tell(&mut self, phase: u8) -> Result<(), String> {
        use tokio::io::AsyncWriteExt;
        self.stdin
            .write_all(format!("{phase}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())
    }

    fn peak_mb(&self) -> f64 {
        self.child.id().map_or(0.0, peak_mb)
    }
}

/// Peak resident memory of process `pid` (VmHWM), MB.
fn peak_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kb| (kb / 1024.0).round())
}

/// Tells every child `phase` and waits until each says every client of its
/// got that phase's `joined`.
async fn storm_phase(children: &mut [Clients], phase: u8) -> Result<(), String> {
    for c in children.iter_mut() {
        c.tell(phase).await?;
    }
    for c in children.iter_mut() {
        c.expect(&format!("joined {phase}")).await?;
    }
    Ok(())
}

/// `queries N Q`: the read path alone at N members, written straight into
/// Redis in the layout the presence scripts write (one process cannot hold
/// N clients' frames for large N on a small machine).
async fn queries_only(n: usize, q: usize) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let redis = RedisServer::start()
        .await?
        .ok_or("redis-server is not available")?;
    let key = "socket.io-presence:{/\u{1f}chat|1}:m";
    let mut args = vec!["HSET".to_owned(), key.to_owned()];
    for i in 0..n {
        args.push(format!("u{i}"));
        args.push(format!("{{\"id\":\"u{i}\"}}"));
    }
    let _: i64 = redis.command(args).await?;
    let worker = broadcast_core::redis::worker(RedisConfig::from_url(&redis.url())?).await?;
    // Without a version key (as written here) every query reads the whole
    // list; with one (as the scripts write it) a query of an unchanged
    // room reads the version and the list the store kept.
    let uncached = measure(&worker, n, q).await?;
    let _: String = redis
        .command(["SET", "socket.io-presence:{/\u{1f}chat|1}:v", "1"])
        .await?;
    let cached = measure(&worker, n, q).await?;
    let changed = measure_changed(&worker, &redis, n, q).await?;
    let cold = measure_cold(&redis, n, q.min(200)).await?;
    println!(
        "{}",
        json!({
            "members": n,
            "queries": q,
            "uncached": uncached,
            "cached": cached,
            "changed": changed,
            "cold": cold,
        })
    );
    worker.connection.shutdown().await?;
    Ok(())
}

mod presence_clients;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("clients") {
        args.next();
        return presence_clients::main(&args.collect::<Vec<_>>()).await;
    }
    if args.peek().map(String::as_str) == Some("queries") {
        args.next();
        let n: usize = args
            .next()
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(10_000);
        let q: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1_000);
        return queries_only(n, q).await;
    }
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let queries: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1_000);
    let bin = chat_bin()?;
    let redis = RedisServer::start()
        .await?
        .ok_or("redis-server is not available")?;
    let (server_a, pa) = start_chat(&bin, &redis.url()).await?;
    let (server_b, pb) = start_chat(&bin, &redis.url()).await?;

    // Observers, one per server, in chat 1 first.
    let mut frame_logs = Vec::new();
    for (name, port) in [("obsa", pa), ("obsb", pb)] {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut c = SioClient::connect(addr, "/", Some(json!({"user": name}))).await?;
        c.emit_with_ack("/", "join_chat", vec![json!(1)], WAIT)
            .await?;
        let log: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
        let l = log.clone();
        tokio::spawn(async move {
            while let Ok(ev) = c.next_event(WAIT).await {
                if ev.event.starts_with("presence_") {
                    l.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(Instant::now());
                }
            }
        });
        frame_logs.push(log);
    }

    let mut children = Vec::new();
    for from in (0..n).step_by(PER_CHILD) {
        children.push(Clients::spawn([pa, pb], from, (from + PER_CHILD).min(n)).await?);
    }
    for c in &mut children {
        c.expect("connected").await?;
    }
    eprintln!(
        "{n} clients connected in {} processes; join storm",
        children.len()
    );
    let start = Instant::now();
    let want = n + 2;
    let poll = tokio::spawn(async move {
        loop {
            let (ma, mb) = (
                members(pa).await.unwrap_or(0),
                members(pb).await.unwrap_or(0),
            );
            if ma == want && mb == want {
                return Ok(start.elapsed());
            }
            if start.elapsed() > WAIT {
                return Err(format!("member lists {ma}/{mb}, want {want}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    storm_phase(&mut children, 1).await?;
    let all_acked = start.elapsed();
    let complete = Some(poll.await??);
    // Frames still on their way (a last diff) arrive within a second.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut frames = Vec::new();
    for log in &frame_logs {
        let times = log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let span = times
            .last()
            .map_or(0.0, |t| t.duration_since(start).as_secs_f64());
        let mut per_second = std::collections::BTreeMap::new();
        for t in &times {
            *per_second
                .entry(t.duration_since(start).as_secs())
                .or_insert(0u32) += 1;
        }
        let max_1s = per_second.values().copied().max().unwrap_or(0);
        frames.push(json!({
            "frames": times.len(),
            "span_s": (span * 1e3).round() / 1e3,
            "frames_per_s": if span > 0.0 { (times.len() as f64 / span * 10.0).round() / 10.0 } else { 0.0 },
            "max_in_1s": max_1s,
            // Two servers, each at most burst 20 + 10/s per room.
            "rule_max": (2.0 * (20.0 + 10.0 * span)).floor(),
        }));
    }

    // Queries from a worker, at n + 2 members, once the clients are idle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let worker = broadcast_core::redis::worker(RedisConfig::from_url(&redis.url())?).await?;
    let room = "chat|1";
    let (mut list, mut count) = (Vec::new(), Vec::new());
    for _ in 0..queries {
        let t = Instant::now();
        let m = worker.presence.members("/", room).await?;
        list.push(ms(t.elapsed()));
        if m.len() != want {
            return Err(format!("members: {} != {want}", m.len()).into());
        }
        let t = Instant::now();
        let c = worker.presence.count("/", room).await?;
        count.push(ms(t.elapsed()));
        if c != want {
            return Err(format!("count: {c} != {want}").into());
        }
    }
    list.sort_by(f64::total_cmp);
    count.sort_by(f64::total_cmp);

    // The same clients into rooms without presence.
    let start = Instant::now();
    storm_phase(&mut children, 2).await?;
    let plain = start.elapsed();
    let clients_peak_mb: Vec<f64> = children.iter().map(Clients::peak_mb).collect();
    let servers_peak_mb = [&server_a, &server_b].map(|c| c.id().map_or(0.0, peak_mb));
    let harness_peak_mb = peak_mb(std::process::id());
    for c in &mut children {
        c.tell(3).await?;
    }

    println!(
        "{}",
        json!({
            "members": want,
            "join_storm": {
                "joins": n,
                "all_joined_ms": ms(all_acked),
                "every_server_complete_ms": complete.map(ms),
                "observers": frames,
            },
            "queries_at_members": want,
            "members_ms": {"p50": pct(&list, 0.5), "p99": pct(&list, 0.99), "max": pct(&list, 1.0)},
            "count_ms": {"p50": pct(&count, 0.5), "p99": pct(&count, 0.99), "max": pct(&count, 1.0)},
            "join_storm_without_presence": {"joins": n, "all_joined_ms": ms(plain)},
            "peak_mb": {
                "client_processes": clients_peak_mb,
                "chat_servers": servers_peak_mb,
                "harness": harness_peak_mb,
            },
        })
    );
    worker.connection.shutdown().await?;
    Ok(())
}
