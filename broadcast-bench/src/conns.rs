//! `broadcast-e2e conns`: many connections on one server.
//!
//! One server process (framework, plain socketioxide-redis, or Node
//! socket.io), N websocket clients each joined to one of R rooms, and:
//!
//! 1. the server's resident memory (`VmRSS`) before and after the N clients
//!    connected and joined: KB per connection, and the join rate;
//! 2. one event to each room (so every client gets one): the time from the
//!    worker's `GO` until the last client has it;
//! 3. a burst of E events per room (the worker keeps 16 broadcasts in
//!    flight): lost and duplicated deliveries, and the resident memory after
//!    it (buffers that grew during the burst and were not given back).
//!
//! The Rust servers broadcast from a worker process through Redis, as in
//! the end-to-end bench; Node's server emits to its own rooms on a command
//! on its stdin (it has no Redis adapter here: its per-connection memory is
//! the in-memory adapter's, which is the lower bound for it).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::watch;

use crate::args::{Flags, Variant};
use crate::client::{self, Live, Tally};
use crate::procs::{Proc, Wrapper};
use crate::roles::{self, now_us};
use crate::{Result, bail};

const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(3);

pub const USAGE: &str = "\
broadcast-e2e conns: memory per connection on one server

USAGE:
    broadcast-e2e conns [OPTIONS]

OPTIONS:
    --variant V          comma-separated: framework | framework-before | baseline |
                         baseline-defaults | node    [framework,baseline-defaults,node]
                         framework-before: the framework's server as it was before its
                         connection defaults (4 KiB websocket read buffer, the request
                         head not copied out of hyper's buffer)
    --clients N          comma-separated connection counts              [10000]
    --rooms R            client i joins room i % R                      [10]
    --events E           burst: events per room after the single round  [200]
    --pad B              bytes of padding per payload                   [100]
    --concurrency C      clients connecting at once                     [64]
    --per-address A      clients per loopback source address (127.0.0.2,
                         127.0.0.3, ...): one address has ~28,000 ports [8000]
    --settle-ms MS       wait before each memory reading                [2000]
    --server-threads T   tokio worker threads of the server (0: tokio's default) [0]
    --socket-buffer N    Rust servers: packets queued per socket (overrides the variant's)
    --ws-read-buffer N   Rust servers: websocket read buffer bytes (overrides the variant's)
    --runs K             runs of each (variant, N), interleaved          [1]

Node's socket.io is installed with npm into a temporary directory on first
use ($BROADCAST_BENCH_NODE_DIR to choose it). $BROADCAST_BENCH_SERVER_WRAPPER
runs the Rust server under a program (e.g. heaptrack); its memory figures
are then the wrapper's.
";

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ConnsResult {
    pub variant: String,
    pub run: usize,
    pub clients: usize,
    pub connect_errors: usize,
    /// Server VmRSS, KiB: before any client, after all joined, after the burst.
    pub rss_before_kb: u64,
    pub rss_joined_kb: u64,
    pub rss_after_burst_kb: u64,
    /// (joined − before) / clients, KiB.
    pub kb_per_connection: f64,
    /// (after burst − before) / clients, KiB.
    pub kb_per_connection_after_burst: f64,
    /// Clients connected and joined per second (C at once).
    pub joins_per_s: f64,
    /// One event per room (every client gets one): `GO` to the last receipt.
    pub one_round_ms: f64,
    pub one_round_delivered: u64,
    pub burst_expected: u64,
    pub burst_delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub disconnected_clients: u64,
    pub burst_deliveries_per_s: f64,
}

struct Options {
    rooms: u32,
    events: u32,
    pad: usize,
    concurrency: usize,
    per_address: usize,
    settle: Duration,
    server_threads: usize,
    socket_buffer: Option<String>,
    ws_read_buffer: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Rust(Variant),
    /// The framework's server with the defaults it had before this bench:
    /// a 4 KiB websocket read buffer and no `CompactRequestLayer`.
    FrameworkBefore,
    Node,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Rust(v) => v.as_str(),
            Side::FrameworkBefore => "framework-before",
            Side::Node => "node",
        }
    }

    fn variant(self) -> Option<Variant> {
        match self {
            Side::Rust(v) => Some(v),
            Side::FrameworkBefore => Some(Variant::Framework),
            Side::Node => None,
        }
    }
}

pub fn main(argv: &[String]) -> Result<()> {
    if argv.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return Ok(());
    }
    let f = Flags::parse(
        argv,
        &[
            "variant",
            "clients",
            "rooms",
            "events",
            "pad",
            "concurrency",
            "per-address",
            "settle-ms",
            "server-threads",
            "socket-buffer",
            "ws-read-buffer",
            "runs",
        ],
    )?;
    let sides: Vec<Side> = f
        .opt("variant")
        .unwrap_or("framework,baseline-defaults,node")
        .split(',')
        .map(|v| match v.trim() {
            "node" => Ok(Side::Node),
            "framework-before" => Ok(Side::FrameworkBefore),
            other => other.parse().map(Side::Rust),
        })
        .collect::<std::result::Result<_, _>>()?;
    let counts: Vec<usize> = f
        .opt("clients")
        .unwrap_or("10000")
        .split(',')
        .map(|n| n.trim().parse())
        .collect::<std::result::Result<_, _>>()?;
    let o = Options {
        rooms: f.get("rooms", 10)?,
        events: f.get("events", 200)?,
        pad: f.get("pad", 100)?,
        concurrency: f.get("concurrency", 64usize)?.max(1),
        per_address: f.get("per-address", 8000usize)?.max(1),
        settle: Duration::from_millis(f.get("settle-ms", 2000)?),
        server_threads: f.get("server-threads", 0)?,
        socket_buffer: f.opt("socket-buffer").map(str::to_owned),
        ws_read_buffer: f.opt("ws-read-buffer").map(str::to_owned),
    };
    let runs: usize = f.get("runs", 1)?;
    if o.rooms == 0 || runs == 0 {
        bail!("--rooms and --runs must be at least 1");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = run_all(&o, &sides, &counts, runs) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
            _ = sigterm.recv() => Err("terminated".into()),
        }
    });
    drop(rt);
    crate::procs::reap_all();
    result
}

async fn run_all(o: &Options, sides: &[Side], counts: &[usize], runs: usize) -> Result<()> {
    let exe = std::env::current_exe()?;
    let node_dir = if sides.contains(&Side::Node) {
        Some(node_modules().await?)
    } else {
        None
    };
    let redis = if sides.iter().any(|s| s.variant().is_some()) {
        Some(crate::orchestrate::start_redis().await?)
    } else {
        None
    };
    let url = redis.as_ref().map(|r| r.url()).unwrap_or_default();
    let mut results = Vec::new();
    for run in 0..runs {
        for &n in counts {
            let mut order = sides.to_vec();
            if run % 2 == 1 {
                order.reverse();
            }
            for side in order {
                let prefix = format!("conns-{}-{run}-{n}-{}", std::process::id(), side.name());
                let r = run_once(o, side, run, n, &url, &prefix, &exe, node_dir.as_deref()).await?;
                eprintln!("{}", serde_json::to_string(&r)?);
                results.push(r);
            }
        }
    }
    drop(redis);
    println!("{}", serde_json::to_string(&results)?);
    Ok(())
}

/// socket.io for Node, installed once into a temporary directory.
async fn node_modules() -> Result<PathBuf> {
    let dir = match std::env::var_os("BROADCAST_BENCH_NODE_DIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join("broadcast-bench-node-socketio4"),
    };
    if dir.join("node_modules/socket.io/package.json").exists() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "broadcast-e2e conns: npm install socket.io@4 into {}",
        dir.display()
    );
    let status = tokio::process::Command::new("npm")
        .args([
            "install",
            "--no-save",
            "--no-audit",
            "--no-fund",
            "--prefix",
        ])
        .arg(&dir)
        .arg("socket.io@4")
        .stdout(std::process::Stdio::null())
        .status()
        .await?;
    if !status.success() {
        bail!("npm install socket.io@4 failed ({status})");
    }
    Ok(dir)
}

/// Resident memory of `pid`, KiB.
fn rss_kb(pid: u32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            return Ok(v.trim().trim_end_matches("kB").trim().parse()?);
        }
    }
    bail!("/proc/{pid}/status: no VmRSS")
}

/// The source address of client `i`: 127.0.0.2 for the first `per` clients,
/// then 127.0.0.3, ...
fn source_of(i: usize, per: usize) -> IpAddr {
    let k = 2 + i / per;
    IpAddr::V4(Ipv4Addr::new(127, 0, (k / 256) as u8, (k % 256) as u8))
}

#[allow(clippy::too_many_arguments)]
async fn run_once(
    o: &Options,
    side: Side,
    run: usize,
    n: usize,
    url: &str,
    prefix: &str,
    exe: &Path,
    node_dir: Option<&Path>,
) -> Result<ConnsResult> {
    let mut server = match side.variant() {
        Some(v) => {
            let mut args: Vec<String> = vec![
                "server".into(),
                "--variant".into(),
                v.as_str().into(),
                "--redis".into(),
                url.into(),
                "--prefix".into(),
                prefix.into(),
                "--threads".into(),
                o.server_threads.to_string(),
            ];
            if let Some(s) = &o.socket_buffer {
                args.extend(["--socket-buffer".into(), s.clone()]);
            }
            if let Some(s) = &o.ws_read_buffer {
                args.extend(["--ws-read-buffer".into(), s.clone()]);
            }
            if side == Side::FrameworkBefore {
                for a in ["--ws-read-buffer", "4096", "--raw-layer", "true"] {
                    args.push(a.into());
                }
            }
            // A profiler in front of the server (heaptrack, valgrind):
            // the memory figures are then the wrapper's, not the server's.
            Wrapper::from_env("BROADCAST_BENCH_SERVER_WRAPPER").spawn(
                "server".into(),
                exe,
                &args,
            )?
        }
        None => {
            let Some(dir) = node_dir else {
                bail!("socket.io for Node is not installed");
            };
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("node/conns-server.js");
            Proc::spawn(
                "node".into(),
                Path::new("node"),
                &[script.display().to_string(), dir.display().to_string()],
            )?
        }
    };
    let port: u16 = server.expect("READY", SETUP_TIMEOUT).await?.parse()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    tokio::time::sleep(o.settle).await;
    let rss_before = rss_kb(server.pid)?;

    let started = Instant::now();
    let live = Arc::new(Live::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let rooms_of = |i: usize| vec![(i as u64 % u64::from(o.rooms)) as u32];
    // Each client starts reading (and answering pings) as soon as it is
    // joined: with all of them waiting for the last connect, the first
    // ones missed their pings when connecting took longer than the ping
    // timeout, and the server closed them.
    let conns = futures_util::stream::iter(0..n)
        .map(|i| {
            let rooms = rooms_of(i);
            let from = source_of(i, o.per_address);
            let (live, stop_rx) = (live.clone(), stop_rx.clone());
            async move {
                let ws = client::connect(addr, Some(from), roles::PLAIN_ROOMS, &rooms).await?;
                Ok::<_, crate::Error>(tokio::spawn(client::receive(
                    ws,
                    rooms,
                    1 + o.events,
                    live,
                    stop_rx,
                )))
            }
        })
        .buffer_unordered(o.concurrency)
        .collect::<Vec<_>>()
        .await;
    let connect_s = started.elapsed().as_secs_f64();
    let mut tasks = Vec::with_capacity(n);
    let mut connect_errors = 0;
    let mut first_error = None;
    for c in conns {
        match c {
            Ok(task) => tasks.push(task),
            Err(e) => {
                connect_errors += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    if let Some(e) = first_error {
        eprintln!("broadcast-e2e conns: {connect_errors} connect errors, first: {e}");
    }
    let connected = tasks.len();
    tokio::time::sleep(o.settle).await;
    let rss_joined = rss_kb(server.pid)?;

    // One event per room.
    let (mut worker, go_us) = broadcast(&mut server, side, o, 0, 1, url, prefix, exe).await?;
    let round_deadline = Instant::now() + Duration::from_secs(30);
    while (live.received.load(Ordering::Relaxed) as usize) < connected
        && Instant::now() < round_deadline
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let one_round_delivered = live.received.load(Ordering::Relaxed);
    let one_round_ms = live.last_us.load(Ordering::Relaxed).saturating_sub(go_us) as f64 / 1e3;
    if let Some(w) = worker.take() {
        w.stop(STOP_GRACE).await;
    }

    // The burst, then quiescence.
    let (mut worker, burst_go) =
        broadcast(&mut server, side, o, 1, o.events, url, prefix, exe).await?;
    let expected_total = connected as u64 * u64::from(1 + o.events);
    let mut seen = live.received.load(Ordering::Relaxed);
    let mut changed = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = live.received.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            changed = Instant::now();
        }
        let quiet = changed.elapsed();
        if (now >= expected_total && quiet >= Duration::from_millis(300))
            || quiet >= Duration::from_secs(3)
            || Instant::now() >= deadline
        {
            break;
        }
    }
    let burst_last = live.last_us.load(Ordering::Relaxed);
    tokio::time::sleep(o.settle).await;
    let rss_after = rss_kb(server.pid)?;

    stop_tx.send_replace(true);
    let mut tallies: Vec<Tally> = Vec::with_capacity(tasks.len());
    for t in tasks {
        tallies.push(t.await?);
    }
    if let Some(w) = worker.take() {
        w.stop(STOP_GRACE).await;
    }
    server.stop(STOP_GRACE).await;

    let (mut unique, mut dup, mut disc) = (0u64, 0u64, 0u64);
    for t in &tallies {
        unique += t.unique;
        dup += t.duplicated;
        disc += u64::from(t.disconnected);
    }
    let burst_expected = connected as u64 * u64::from(o.events);
    let burst_delivered = unique.saturating_sub(one_round_delivered.min(connected as u64));
    let burst_s = burst_last.saturating_sub(burst_go) as f64 / 1e6;
    let per = |after: u64| {
        if connected == 0 {
            0.0
        } else {
            round2(after.saturating_sub(rss_before) as f64 / connected as f64)
        }
    };
    Ok(ConnsResult {
        variant: side.name().to_owned(),
        run,
        clients: n,
        connect_errors,
        rss_before_kb: rss_before,
        rss_joined_kb: rss_joined,
        rss_after_burst_kb: rss_after,
        kb_per_connection: per(rss_joined),
        kb_per_connection_after_burst: per(rss_after),
        joins_per_s: (connected as f64 / connect_s).round(),
        one_round_ms: round2(one_round_ms),
        one_round_delivered,
        burst_expected,
        burst_delivered,
        lost: (expected_total).saturating_sub(unique),
        duplicated: dup,
        disconnected_clients: disc,
        burst_deliveries_per_s: if burst_s > 0.0 {
            (burst_delivered as f64 / burst_s).round()
        } else {
            0.0
        },
    })
}

/// Sends `events` events per room, seqs from `offset`: through a worker
/// process for the Rust servers (returned, to be stopped once its events
/// are in), through the server itself for Node. Also returns when the
/// sending started (µs since the epoch): after the worker is connected.
#[allow(clippy::too_many_arguments)]
async fn broadcast(
    server: &mut Proc,
    side: Side,
    o: &Options,
    offset: u32,
    events: u32,
    url: &str,
    prefix: &str,
    exe: &Path,
) -> Result<(Option<Proc>, u64)> {
    match side.variant() {
        None => {
            let go = now_us();
            server
                .tell(&format!("EMIT {offset} {events} {} {}", o.rooms, o.pad))
                .await?;
            server.expect("DONE", Duration::from_secs(120)).await?;
            Ok((None, go))
        }
        Some(v) => {
            let args: Vec<String> = [
                "worker",
                "--variant",
                v.as_str(),
                "--redis",
                url,
                "--prefix",
                prefix,
                "--rooms",
                &o.rooms.to_string(),
                "--events",
                &events.to_string(),
                "--pad",
                &o.pad.to_string(),
                "--inflight",
                "16",
                "--seq-offset",
                &offset.to_string(),
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            let mut worker = Proc::spawn("worker".into(), exe, &args)?;
            worker.expect("READY", SETUP_TIMEOUT).await?;
            let go = now_us();
            worker.tell("GO").await?;
            worker.expect("DONE", Duration::from_secs(120)).await?;
            Ok((Some(worker), go))
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
