//! The bench itself: Redis, servers, clients, worker; accounting; the JSON
//! line.
//!
//! Everything here runs on one current-thread runtime: the clients must not
//! compete with the servers for the 2 cores more than they need to, and the
//! children's `PR_SET_PDEATHSIG` is tied to the thread that spawned them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use broadcast_test_support::env;
use broadcast_test_support::redis::{Options, RedisServer};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::args::{Flags, USAGE, Variant};
use crate::client::{self, Live, Tally};
use crate::procs::{Proc, Wrapper, machine_busy_seconds, process_cpu};
use crate::roles::{self, now_us};
use crate::stats::{Spread, percentile};
use crate::{Result, bail};

const SETUP_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Clients connecting at once.
const CONNECT_CONCURRENCY: usize = 32;

/// One benchmark configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub servers: usize,
    pub clients: usize,
    pub rooms: u32,
    pub rooms_per_client: u32,
    pub events_per_room: u32,
    pub pad: usize,
    pub rate: f64,
    pub inflight: usize,
    pub server_threads: usize,
    pub worker_threads: usize,
    #[serde(skip)]
    pub quiet: Duration,
    #[serde(skip)]
    pub settle: Duration,
    #[serde(skip)]
    pub timeout: Duration,
    /// `room` or `hroom` (rooms that keep history).
    pub room_key: &'static str,
    /// `--placement rooms`: every member of room `r` on server `r % S`,
    /// so each server holds members of 1/S of the rooms; otherwise every
    /// server holds members of every room.
    pub rooms_on_one_server: bool,
}

impl Scenario {
    fn expected(&self) -> u64 {
        self.clients as u64 * u64::from(self.rooms_per_client) * u64::from(self.events_per_room)
    }

    /// Rooms of client `i`: `i % R` and the next ones.
    fn rooms_of(&self, i: usize) -> Vec<u32> {
        (0..self.rooms_per_client)
            .map(|j| ((i as u64 + u64::from(j)) % u64::from(self.rooms)) as u32)
            .collect()
    }

    /// Server of client `i`: blocks of R consecutive clients per server, so
    /// every server holds members of every room; or, with
    /// `--placement rooms`, the server of its room.
    fn server_of(&self, i: usize) -> usize {
        if self.rooms_on_one_server {
            (i % self.rooms as usize) % self.servers.max(1)
        } else {
            (i / self.rooms as usize) % self.servers.max(1)
        }
    }
}

/// One run's figures: the JSON line of a single run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub variant: &'static str,
    pub run: usize,
    pub expected: u64,
    /// Unique (client, room, seq) deliveries.
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Events a client got for a room it is not in (should be 0).
    pub unexpected: u64,
    pub malformed: u64,
    pub disconnected_clients: u64,
    pub deliveries_per_s: f64,
    /// From the worker's start to the last delivery.
    pub elapsed_s: f64,
    pub worker_send_s: f64,
    /// Broadcasts per second the worker completed (R x E / worker_send_s).
    pub worker_events_per_s: f64,
    pub worker_failed: u64,
    pub latency_p50_us: u32,
    pub latency_p90_us: u32,
    pub latency_p99_us: u32,
    pub latency_max_us: u32,
    pub cpu_servers_s: f64,
    pub cpu_worker_s: f64,
    /// `null` with an external Redis.
    pub cpu_redis_s: Option<f64>,
    /// The bench process itself (the clients).
    pub cpu_clients_s: f64,
    /// Servers' and worker's CPU per unique delivery, in µs: the cost of
    /// the path, less sensitive to other load on the machine than the rate.
    pub cpu_us_per_delivery: f64,
    /// CPU time the rest of the machine used meanwhile (other processes,
    /// interrupts; 10 ms ticks): how loaded the machine was.
    pub cpu_other_s: f64,
    /// Context switches of the servers' and the worker's threads.
    pub ctx_switches_servers: u64,
    pub ctx_switches_worker: u64,
    /// The worker's CPU per broadcast, in µs.
    pub worker_cpu_us_per_event: f64,
    /// Messages the framework's servers lost to a full fred pub/sub buffer
    /// (`null` for the baselines, which only log it).
    pub redis_lagged: Option<u64>,
    /// Pub/sub messages the framework's servers received from Redis, all
    /// servers together (`null` for the baselines).
    pub redis_received_servers: Option<u64>,
    /// Bytes Redis sent to all its clients during the run
    /// (`total_net_output_bytes`).
    pub redis_output_bytes: u64,
    /// CPU seconds of each server process.
    pub cpu_per_server_s: Vec<f64>,
    pub timed_out: bool,
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
            "servers",
            "clients",
            "rooms",
            "rooms-per-client",
            "events",
            "pad",
            "rate",
            "inflight",
            "runs",
            "redis-url",
            "server-threads",
            "worker-threads",
            "quiet-ms",
            "settle-ms",
            "timeout-s",
            "room-key",
            "placement",
        ],
    )?;
    let variant = f.opt("variant").unwrap_or("compare").to_owned();
    let variants: Vec<Variant> = match variant.as_str() {
        "compare" => vec![Variant::Framework, Variant::Baseline],
        list => list
            .split(',')
            .map(|v| v.trim().parse())
            .collect::<std::result::Result<_, _>>()?,
    };
    let runs: usize = f.get("runs", if variants.len() > 1 { 5 } else { 1 })?;
    let sc = Scenario {
        servers: f.get("servers", 2)?,
        clients: f.get("clients", 200)?,
        rooms: f.get("rooms", 10)?,
        rooms_per_client: f.get("rooms-per-client", 1)?,
        events_per_room: f.get("events", 500)?,
        pad: f.get("pad", 100)?,
        rate: f.get("rate", 0.0)?,
        inflight: f.get("inflight", 16)?,
        server_threads: f.get("server-threads", 0)?,
        worker_threads: f.get("worker-threads", 0)?,
        quiet: Duration::from_millis(f.get("quiet-ms", 2000)?),
        settle: Duration::from_millis(f.get("settle-ms", 300)?),
        timeout: Duration::from_secs(f.get("timeout-s", 60)?),
        room_key: roles::room_key(f.opt("room-key").unwrap_or(roles::PLAIN_ROOMS))?,
        rooms_on_one_server: match f.opt("placement").unwrap_or("blocks") {
            "blocks" => false,
            "rooms" => true,
            other => bail!("--placement {other}: expected `blocks` or `rooms`"),
        },
    };
    if sc.rooms == 0 || runs == 0 {
        bail!("--rooms and --runs must be at least 1");
    }
    if (sc.servers == 0) != (sc.clients == 0) {
        bail!(
            "--servers 0 --clients 0 together measure the worker alone (publish only); otherwise both must be at least 1"
        );
    }
    if sc.rooms_per_client == 0 || sc.rooms_per_client > sc.rooms {
        bail!("--rooms-per-client must be between 1 and --rooms");
    }
    let redis_url = f
        .opt("redis-url")
        .map(str::to_owned)
        .or_else(|| std::env::var("REDIS_URL").ok().filter(|s| !s.is_empty()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // On a signal the future is dropped: every child is killed on drop.
        tokio::select! {
            r = run_all(&sc, &variants, &variant, runs, redis_url) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
            _ = sigterm.recv() => Err("terminated".into()),
        }
    });
    drop(rt);
    crate::procs::reap_all();
    result
}

async fn run_all(
    sc: &Scenario,
    variants: &[Variant],
    mode: &str,
    runs: usize,
    redis_url: Option<String>,
) -> Result<()> {
    let exe = std::env::current_exe()?;
    let local = match &redis_url {
        Some(_) => None,
        None => Some(start_redis().await?),
    };
    let url = match (&redis_url, &local) {
        (Some(u), _) => u.clone(),
        (None, Some(r)) => r.url(),
        (None, None) => bail!("no Redis"),
    };
    let redis_pid = local.as_ref().and_then(RedisServer::pid);
    eprintln!(
        "broadcast-e2e: pid={} redis {}; {}; {runs} run(s) of {mode}",
        std::process::id(),
        crate::redis::redact(&url),
        serde_json::to_string(sc)?
    );
    let mut results = Vec::new();
    let tag = std::process::id();
    for i in 0..runs {
        // Alternate which variant goes first, so neither always runs on a
        // warmer (or more loaded) machine.
        let mut order = variants.to_vec();
        if i % 2 == 1 {
            order.reverse();
        }
        for v in order {
            let prefix = format!("bench-{tag}-{i}-{}", v.as_str());
            let r = run_once(sc, v, i, &url, &prefix, &exe, redis_pid).await?;
            eprintln!("{}", serde_json::to_string(&r)?);
            results.push(r);
        }
    }
    // Killed, reaped and its directory removed.
    drop(local);
    // A single run prints its fields in declaration order.
    let line = if runs == 1 && variants.len() == 1 {
        serde_json::to_string(&results[0])?
    } else {
        serde_json::to_string(&summary(sc, mode, runs, &results)?)?
    };
    println!("{line}");
    Ok(())
}

/// A private `redis-server` for this invocation. It dies with the bench
/// even when the bench is SIGKILLed: it is spawned from the bench's only
/// runtime thread, which lives as long as the process.
pub(crate) async fn start_redis() -> Result<RedisServer> {
    const MISSING: &str = "redis-server is not on PATH: install it (apt-get install redis-server) or pass --redis-url";
    // Checked first: the launcher's own policy is a test's (skip outside CI).
    if env::find_on_path("redis-server").is_none() {
        bail!("{MISSING}");
    }
    let options = Options {
        die_with_parent: true,
        ..Options::default()
    };
    match RedisServer::start_with(options).await? {
        Some(server) => Ok(server),
        None => bail!("{MISSING}"),
    }
}

async fn run_once(
    sc: &Scenario,
    variant: Variant,
    run: usize,
    url: &str,
    prefix: &str,
    exe: &Path,
    redis_pid: Option<u32>,
) -> Result<RunResult> {
    let common = |role: &str, threads: usize| -> Vec<String> {
        let v = if role == "server" {
            variant.servers()
        } else {
            variant.worker()
        };
        vec![
            role.to_owned(),
            "--variant".into(),
            v.as_str().into(),
            "--redis".into(),
            url.to_owned(),
            "--prefix".into(),
            prefix.to_owned(),
            "--threads".into(),
            threads.to_string(),
        ]
    };
    // A profiler in front of each server and the worker (valgrind's
    // callgrind, as in `conns`); instruction counts come from its output.
    let wrapper = Wrapper::from_env("BROADCAST_BENCH_SERVER_WRAPPER");
    let worker_wrapper = Wrapper::from_env("BROADCAST_BENCH_WORKER_WRAPPER");
    let mut servers = Vec::with_capacity(sc.servers);
    for s in 0..sc.servers {
        let args = common("server", sc.server_threads);
        servers.push(wrapper.spawn(format!("server{s}"), exe, &args)?);
    }
    let mut wargs = common("worker", sc.worker_threads);
    for (k, v) in [
        ("--rooms", sc.rooms.to_string()),
        ("--events", sc.events_per_room.to_string()),
        ("--pad", sc.pad.to_string()),
        ("--rate", sc.rate.to_string()),
        ("--inflight", sc.inflight.to_string()),
        ("--room-key", sc.room_key.to_string()),
    ] {
        wargs.push(k.into());
        wargs.push(v);
    }
    let mut worker = worker_wrapper.spawn("worker".into(), exe, &wargs)?;

    let mut addrs = Vec::with_capacity(sc.servers);
    for s in &mut servers {
        let port: u16 = s.expect("READY", SETUP_TIMEOUT).await?.parse()?;
        addrs.push(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    worker.expect("READY", SETUP_TIMEOUT).await?;

    let conns = futures_util::stream::iter(0..sc.clients)
        .map(|i| {
            let addr = addrs[sc.server_of(i)];
            let rooms = sc.rooms_of(i);
            let key = sc.room_key;
            async move {
                client::connect(addr, None, key, &rooms)
                    .await
                    .map(|ws| (ws, rooms))
            }
        })
        .buffered(CONNECT_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let live = Arc::new(Live::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(sc.clients);
    for c in conns {
        let (ws, rooms) = c?;
        tasks.push(tokio::spawn(client::receive(
            ws,
            rooms,
            sc.events_per_room,
            live.clone(),
            stop_rx.clone(),
        )));
    }

    let sample = |servers: &[Proc], worker: &Proc| -> Result<Sample> {
        let mut x = Sample {
            worker_cpu: worker.cpu()?,
            worker_cs: worker.context_switches()?,
            redis_cpu: match redis_pid {
                Some(pid) => process_cpu(pid)?,
                None => 0.0,
            },
            clients_cpu: process_cpu(std::process::id())?,
            machine_busy: machine_busy_seconds()?,
            ..Sample::default()
        };
        for p in servers {
            let cpu = p.cpu()?;
            x.servers_cpu += cpu;
            x.per_server_cpu.push(cpu);
            x.servers_cs += p.context_switches()?;
        }
        Ok(x)
    };
    let s0 = sample(&servers, &worker)?;
    let out0 = redis_output_bytes(url).await?;
    let go_us = now_us();
    let started = Instant::now();
    worker.tell("GO").await?;
    let done: Value = serde_json::from_str(&worker.expect("DONE", sc.timeout).await?)?;

    // Quiescence: every expected delivery arrived and `settle` passed with
    // nothing new (a duplicate would show up), or nothing new for `quiet`.
    let expected = sc.expected();
    let mut seen = live.received.load(Ordering::Relaxed);
    let mut changed = Instant::now();
    let mut timed_out = false;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = live.received.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            changed = Instant::now();
        }
        let quiet_for = changed.elapsed();
        if (now >= expected && quiet_for >= sc.settle) || quiet_for >= sc.quiet {
            break;
        }
        if started.elapsed() >= sc.timeout {
            timed_out = true;
            break;
        }
    }
    let s1 = sample(&servers, &worker)?;
    let out1 = redis_output_bytes(url).await?;

    let mut lagged = None;
    let mut received_servers = None;
    if variant.servers() == Variant::Framework {
        let (mut total, mut received) = (0, 0);
        for s in &mut servers {
            s.tell("STATS").await?;
            let stats: Value = serde_json::from_str(&s.expect("STATS", SETUP_TIMEOUT).await?)?;
            total += stats["lagged"].as_u64().unwrap_or(0);
            received += stats["received"].as_u64().unwrap_or(0);
        }
        lagged = Some(total);
        received_servers = Some(received);
    }

    stop_tx.send_replace(true);
    let mut tallies: Vec<Tally> = Vec::with_capacity(tasks.len());
    for t in tasks {
        tallies.push(t.await?);
    }
    worker.stop(worker_wrapper.grace(STOP_GRACE)).await;
    let grace = wrapper.grace(STOP_GRACE);
    for s in servers {
        s.stop(grace).await;
    }

    let mut lat: Vec<u32> = Vec::with_capacity(expected as usize);
    let (mut received, mut unique, mut dup, mut unexpected, mut malformed, mut disc, mut last) =
        (0, 0, 0, 0, 0, 0, 0);
    for t in tallies {
        received += t.received;
        unique += t.unique;
        dup += t.duplicated;
        unexpected += t.unexpected;
        malformed += t.malformed;
        disc += u64::from(t.disconnected);
        last = last.max(t.last_us);
        lat.extend_from_slice(&t.latencies);
    }
    debug_assert_eq!(received, unique + dup + unexpected + malformed);
    lat.sort_unstable();
    let elapsed_s = last.saturating_sub(go_us) as f64 / 1e6;
    let (cpu_servers, cpu_worker) = (
        s1.servers_cpu - s0.servers_cpu,
        s1.worker_cpu - s0.worker_cpu,
    );
    let send_s = done["send_s"].as_f64().unwrap_or(f64::NAN);
    Ok(RunResult {
        variant: variant.as_str(),
        run,
        expected,
        delivered: unique,
        lost: expected.saturating_sub(unique),
        duplicated: dup,
        unexpected,
        malformed,
        disconnected_clients: disc,
        deliveries_per_s: if elapsed_s > 0.0 {
            (unique as f64 / elapsed_s).round()
        } else {
            0.0
        },
        elapsed_s: round3(elapsed_s),
        worker_send_s: round3(send_s),
        worker_events_per_s: (f64::from(sc.rooms) * f64::from(sc.events_per_room) / send_s).round(),
        worker_failed: done["failed"].as_u64().unwrap_or(0),
        latency_p50_us: percentile(&lat, 0.50),
        latency_p90_us: percentile(&lat, 0.90),
        latency_p99_us: percentile(&lat, 0.99),
        latency_max_us: lat.last().copied().unwrap_or(0),
        cpu_servers_s: round3(cpu_servers),
        cpu_worker_s: round3(cpu_worker),
        cpu_redis_s: redis_pid.map(|_| round3(s1.redis_cpu - s0.redis_cpu)),
        cpu_clients_s: round3(s1.clients_cpu - s0.clients_cpu),
        cpu_other_s: round3(
            ((s1.machine_busy - s0.machine_busy)
                - (s1.servers_cpu - s0.servers_cpu)
                - (s1.worker_cpu - s0.worker_cpu)
                - (s1.redis_cpu - s0.redis_cpu)
                - (s1.clients_cpu - s0.clients_cpu))
                .max(0.0),
        ),
        ctx_switches_servers: s1.servers_cs.saturating_sub(s0.servers_cs),
        ctx_switches_worker: s1.worker_cs.saturating_sub(s0.worker_cs),
        cpu_us_per_delivery: if unique > 0 {
            round3((cpu_servers + cpu_worker) * 1e6 / unique as f64)
        } else {
            f64::NAN
        },
        worker_cpu_us_per_event: round3(
            cpu_worker * 1e6 / (f64::from(sc.rooms) * f64::from(sc.events_per_room)),
        ),
        redis_lagged: lagged,
        redis_received_servers: received_servers,
        redis_output_bytes: out1.saturating_sub(out0),
        cpu_per_server_s: s1
            .per_server_cpu
            .iter()
            .zip(&s0.per_server_cpu)
            .map(|(b, a)| round3(b - a))
            .collect(),
        timed_out,
    })
}

/// CPU and scheduling counters of every process at one instant.
#[derive(Default)]
struct Sample {
    servers_cpu: f64,
    per_server_cpu: Vec<f64>,
    servers_cs: u64,
    worker_cpu: f64,
    worker_cs: u64,
    redis_cpu: f64,
    clients_cpu: f64,
    machine_busy: f64,
}

/// Redis's `total_net_output_bytes`: everything it has sent its clients.
async fn redis_output_bytes(url: &str) -> Result<u64> {
    let info: String = broadcast_test_support::redis::command(url, ["INFO", "stats"]).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("total_net_output_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "INFO stats has no total_net_output_bytes".into())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Fields summarized as median/min/max, and compared as ratios.
const FIELDS: [&str; 20] = [
    "deliveries_per_s",
    "redis_output_bytes",
    "redis_received_servers",
    "lost",
    "duplicated",
    "latency_p50_us",
    "latency_p90_us",
    "latency_p99_us",
    "latency_max_us",
    "cpu_servers_s",
    "cpu_worker_s",
    "cpu_redis_s",
    "cpu_clients_s",
    "cpu_us_per_delivery",
    "worker_events_per_s",
    "worker_cpu_us_per_event",
    "elapsed_s",
    "ctx_switches_servers",
    "ctx_switches_worker",
    "cpu_other_s",
];
const RATIO_FIELDS: [&str; 11] = [
    "deliveries_per_s",
    "latency_p50_us",
    "latency_p99_us",
    "cpu_servers_s",
    "cpu_worker_s",
    "cpu_redis_s",
    "cpu_us_per_delivery",
    "worker_events_per_s",
    "worker_cpu_us_per_event",
    "ctx_switches_servers",
    "ctx_switches_worker",
];

fn field(r: &RunResult, name: &str) -> Result<Option<f64>> {
    Ok(serde_json::to_value(r)?.get(name).and_then(Value::as_f64))
}

fn summary(sc: &Scenario, mode: &str, runs: usize, results: &[RunResult]) -> Result<Value> {
    let mut per_variant = Map::new();
    let mut names: Vec<&'static str> = results.iter().map(|r| r.variant).collect();
    names.dedup();
    names.sort_unstable();
    names.dedup();
    for name in &names {
        let mine: Vec<&RunResult> = results.iter().filter(|r| r.variant == *name).collect();
        let mut m = Map::new();
        for f in FIELDS {
            let values: Vec<f64> = mine
                .iter()
                .filter_map(|r| field(r, f).ok().flatten())
                .collect();
            m.insert(
                f.into(),
                serde_json::to_value(Spread::of(&values).map(Spread::rounded))?,
            );
        }
        let all_zero_loss = mine.iter().all(|r| r.lost == 0 && r.duplicated == 0);
        m.insert("zero_lost_and_duplicated".into(), all_zero_loss.into());
        per_variant.insert((*name).into(), Value::Object(m));
    }
    let mut out = json!({
        "mode": mode,
        "scenario": sc,
        "runs": runs,
    });
    if let Value::Object(o) = &mut out {
        o.extend(per_variant);
        // Per-run ratios of each variant's run to the baseline run of the
        // same iteration, then their median: the machine's load changes
        // between iterations, much less within one.
        let base: Vec<&RunResult> = results.iter().filter(|r| r.variant == "baseline").collect();
        for name in names.iter().filter(|n| **n != "baseline") {
            let mine: Vec<&RunResult> = results.iter().filter(|r| r.variant == *name).collect();
            if mine.is_empty() || mine.len() != base.len() {
                continue;
            }
            let mut ratios = Map::new();
            for f in RATIO_FIELDS {
                let mut v = Vec::new();
                for (a, b) in mine.iter().zip(&base) {
                    if let (Some(x), Some(y)) = (field(a, f)?, field(b, f)?)
                        && y != 0.0
                    {
                        v.push(x / y);
                    }
                }
                ratios.insert(
                    f.into(),
                    serde_json::to_value(Spread::of(&v).map(Spread::rounded))?,
                );
            }
            let key = format!("ratio_{}_over_baseline", name.replace('-', "_"));
            o.insert(key, Value::Object(ratios));
        }
        o.insert("all".into(), serde_json::to_value(results)?);
    }
    Ok(out)
}
