//! The child processes: a Socket.IO server and the broadcasting worker, each
//! in a framework and a plain socketioxide-redis flavour.
//!
//! Control protocol (one line each way, so the parent stays in charge):
//! the child prints `READY [port]` once set up; the worker then waits for
//! `GO` on stdin, broadcasts everything and prints `DONE {json}`; a server
//! answers `STATS` with `STATS {json}`. End of stdin means "exit now": the
//! parent closing the pipe, or dying, stops every child.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use broadcast_core::BroadcastEvent;
use broadcast_core::redis::{
    DEFAULT_ADAPTER_BUFFER, DEFAULT_PUBSUB_BUFFER, DEFAULT_SOCKET_BUFFER, RedisConfig, fred,
    socketioxide_redis,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{Data, SocketRef};
use socketioxide::handler::ConnectHandler;
use socketioxide_redis::{FredAdapter, RedisAdapterConfig, RedisAdapterCtr};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::args::{Flags, Variant};
use crate::{Result, bail};

/// The Socket.IO event name on the wire.
pub const EVENT: &str = "bench";

/// The key of rooms without history.
pub const PLAIN_ROOMS: &str = "room";

/// The rooms of `--room-key room`: a typed room, so the framework's servers
/// receive their broadcasts on room channels (only where they have members).
/// Server-only: the framework's servers join clients to it at connect.
#[derive(broadcast_core::Room)]
#[room(key = "room")]
pub struct PlainRoom(pub u32);

/// The rooms of `--room-key hroom`: they keep their last 1,000 events, so
/// each event gets an offset in Redis and carries its position.
#[derive(broadcast_core::Room)]
#[room(key = "hroom", history(size = 1000, ttl = "10m"))]
pub struct HistoryRoom(pub u32);

/// The `--room-key` value, checked.
pub fn room_key(key: &str) -> Result<&'static str> {
    match key {
        PLAIN_ROOMS => Ok(PLAIN_ROOMS),
        "hroom" => Ok("hroom"),
        other => bail!("--room-key {other}: expected `room` or `hroom`"),
    }
}

/// Room names: `{key}|{index}`.
pub fn room_name(key: &str, room: u32) -> String {
    format!("{key}|{room}")
}

/// The benchmark event. Field order matters: the client scans `room`, `seq`
/// and `ts` from the start of the payload and never reads the padding.
#[derive(Serialize, BroadcastEvent)]
#[broadcast(name = "bench", on = room_name(self.key, self.room))]
pub struct Tick {
    /// The room key (`--room-key`), not sent.
    #[serde(skip)]
    pub key: &'static str,
    pub room: u32,
    pub seq: u32,
    /// Send time, microseconds since the Unix epoch (all processes share
    /// the machine's clock).
    pub ts: u64,
    pub pad: &'static str,
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// What a client sends as its CONNECT `auth`.
#[derive(Deserialize)]
struct Auth {
    rooms: Vec<String>,
}

/// Joins the rooms of the `auth` payload. A connect middleware runs before
/// socketioxide acknowledges the CONNECT, so a client is in its rooms as soon
/// as it sees the ack: no room protocol round trip.
async fn join_from_auth<A: Adapter>(
    s: SocketRef<A>,
    Data(auth): Data<Auth>,
) -> std::result::Result<(), Infallible> {
    s.join(auth.rooms);
    Ok(())
}

/// `BROADCAST_BENCH_ROOM_CHANNELS=off` (inherited by the server and worker
/// processes) puts the framework's broadcasts on the namespace channel, as
/// before room channels: the same build measured both ways.
fn room_channels() -> bool {
    std::env::var("BROADCAST_BENCH_ROOM_CHANNELS").map_or(true, |v| v != "off")
}

/// The framework's servers: joins the typed rooms named in `auth.rooms`
/// through the handshake (no identity).
async fn join_at_connect(
    h: broadcast_core::join::Handshake,
) -> std::result::Result<Option<()>, String> {
    let auth: Auth = serde_json::from_value(h.auth().clone()).map_err(|e| e.to_string())?;
    for name in &auth.rooms {
        let (key, index) = name
            .split_once('|')
            .ok_or_else(|| format!("room `{name}`: expected key|index"))?;
        let index: u32 = index
            .parse()
            .map_err(|_| format!("room `{name}`: bad index"))?;
        match key {
            PLAIN_ROOMS => h.join(&PlainRoom(index)),
            "hroom" => h.join(&HistoryRoom(index)),
            other => return Err(format!("unknown room key `{other}`")),
        }
    }
    Ok(None)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        b.worker_threads(threads);
    }
    Ok(b.enable_all().build()?)
}

/// Fred settings of the baseline: RESP3 (sharded pub/sub on the connection
/// that also runs commands), and fred's pub/sub broadcast channel either at
/// its default (32) or raised to the framework's default.
fn baseline_fred(url: &str, variant: Variant) -> Result<fred::clients::SubscriberClient> {
    let mut config = fred::prelude::Config::from_url(url)?;
    config.version = fred::types::RespVersion::RESP3;
    let mut perf = fred::prelude::PerformanceConfig::default();
    if variant == Variant::Baseline {
        perf.broadcast_channel_capacity = DEFAULT_PUBSUB_BUFFER;
    }
    let mut builder = fred::prelude::Builder::from_config(config);
    builder.set_performance_config(perf);
    Ok(builder.build_subscriber_client()?)
}

fn baseline_adapter_config(prefix: &str, variant: Variant) -> RedisAdapterConfig {
    let config = RedisAdapterConfig::new().with_prefix(prefix.to_owned());
    match variant {
        Variant::Baseline => config.with_stream_buffer(DEFAULT_ADAPTER_BUFFER),
        _ => config,
    }
}

type BaselineAdapter = FredAdapter<socketioxide::adapter::Emitter>;

async fn baseline_io(
    url: &str,
    prefix: &str,
    variant: Variant,
    buffers: Buffers,
) -> Result<(
    socketioxide::layer::SocketIoLayer<BaselineAdapter>,
    SocketIo<BaselineAdapter>,
)> {
    let client = baseline_fred(url, variant)?;
    let ctr =
        RedisAdapterCtr::new_with_fred_config(client, baseline_adapter_config(prefix, variant))
            .await?;
    let mut builder = SocketIo::builder();
    if variant == Variant::Baseline {
        builder = builder.max_buffer_size(DEFAULT_SOCKET_BUFFER);
    }
    Ok(buffers
        .apply(builder)
        .with_adapter::<BaselineAdapter>(ctr)
        .build_layer())
}

/// Lines from the parent; `None` at end of input (parent gone or done).
struct Control {
    lines: tokio::io::Lines<BufReader<tokio::io::Stdin>>,
}

impl Control {
    fn new() -> Self {
        Control {
            lines: BufReader::new(tokio::io::stdin()).lines(),
        }
    }

    async fn next(&mut self) -> Option<String> {
        self.lines.next_line().await.ok().flatten()
    }
}

fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A parent that is gone is noticed on stdin; nothing to do here.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Buffer sizes a server is told to use instead of its variant's own
/// (`broadcast-e2e conns` explores them); `None` keeps the variant's.
#[derive(Clone, Copy, Default)]
pub struct Buffers {
    /// Packets queued per socket (socketioxide's `max_buffer_size`).
    pub socket: Option<usize>,
    /// Bytes of each websocket's read buffer (`ws_read_buffer_size`).
    pub ws_read: Option<usize>,
}

impl Buffers {
    fn from_flags(f: &Flags) -> Result<Buffers> {
        Ok(Buffers {
            socket: f.opt("socket-buffer").map(str::parse).transpose()?,
            ws_read: f.opt("ws-read-buffer").map(str::parse).transpose()?,
        })
    }

    fn apply<A: Adapter>(
        self,
        mut b: socketioxide::SocketIoBuilder<A>,
    ) -> socketioxide::SocketIoBuilder<A> {
        if let Some(n) = self.socket {
            b = b.max_buffer_size(n);
        }
        if let Some(n) = self.ws_read {
            b = b.ws_read_buffer_size(n);
        }
        b
    }
}

/// `broadcast-e2e server --variant V --redis URL --prefix P [--threads T] [--socket-buffer N] [--ws-read-buffer N] [--raw-layer true]`
pub fn server_main(argv: &[String]) -> Result<()> {
    let f = Flags::parse(
        argv,
        &[
            "variant",
            "redis",
            "prefix",
            "threads",
            "socket-buffer",
            "ws-read-buffer",
            "raw-layer",
        ],
    )?;
    let variant: Variant = f.req("variant")?.parse()?;
    let url = f.req("redis")?.to_owned();
    let prefix = f.req("prefix")?.to_owned();
    let buffers = Buffers::from_flags(&f)?;
    let raw_layer = f.get("raw-layer", false)?;
    init_tracing();
    let rt = runtime(f.get("threads", 0usize)?)?;
    let result = rt.block_on(serve(variant, &url, &prefix, buffers, raw_layer));
    // Exit without waiting for the blocking stdin reader thread.
    std::process::exit(match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("broadcast-e2e server: {e}");
            1
        }
    })
}

/// `raw_layer`: the framework's server without its `CompactRequestLayer`
/// (socketioxide's layer alone), as it was before it had one.
async fn serve(
    variant: Variant,
    url: &str,
    prefix: &str,
    buffers: Buffers,
    raw_layer: bool,
) -> Result<()> {
    use axum::serve::ListenerExt;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    // Without TCP_NODELAY a small frame written while the previous one is
    // unacknowledged waits for the client's delayed ACK (up to 40 ms).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let variant = variant.servers();
    let stats: Box<dyn Fn() -> String + Send> = match variant {
        Variant::Framework => {
            let config = RedisConfig::from_url(url)?
                .prefix(prefix.to_owned())
                .room_channels(room_channels())
                .socketio(move |b| buffers.apply(b));
            let parts = broadcast_core::redis::server(config).await?;
            // The framework's way in: rooms joined at connect by the
            // handshake, which first subscribes to their room channels.
            let rooms = broadcast_core::join::Rooms::builder()
                .authenticate(join_at_connect)
                .build()?;
            rooms.attach(&parts.io).await?;
            let router = if raw_layer {
                axum::Router::new().layer(parts.layer.into_inner())
            } else {
                axum::Router::new().layer(parts.layer)
            };
            tokio::spawn(async move { axum::serve(listener, router).await });
            let connection = parts.connection;
            Box::new(move || serde_json::to_string(&connection.stats()).unwrap_or_default())
        }
        _ => {
            let (layer, io) = baseline_io(url, prefix, variant, buffers).await?;
            io.ns(
                "/",
                (async |_: SocketRef<BaselineAdapter>| {}).with(join_from_auth),
            )
            .await?;
            let router = axum::Router::new().layer(layer);
            tokio::spawn(async move { axum::serve(listener, router).await });
            Box::new(|| "{}".to_owned())
        }
    };
    say(&format!("READY {port}"));
    let mut control = Control::new();
    while let Some(line) = control.next().await {
        if line.trim() == "STATS" {
            say(&format!("STATS {}", stats()));
        }
    }
    Ok(())
}

/// What the worker reports after its last broadcast.
#[derive(Serialize)]
struct Done {
    sent: u64,
    failed: u64,
    /// From `GO` to the last broadcast's completion.
    send_s: f64,
    first_error: Option<String>,
}

enum Sender {
    Framework(broadcast_core::Broadcaster),
    Baseline(SocketIo<BaselineAdapter>),
}

impl Sender {
    async fn send(&self, tick: Tick) -> std::result::Result<(), String> {
        match self {
            Sender::Framework(b) => b.broadcast(tick).await.map(drop).map_err(|e| e.to_string()),
            // Boxed: socketioxide's emit future is about 8 KB, and as a
            // variant of this one it made every framework send that size too,
            // copied three times into the worker's `FuturesUnordered` (a
            // third of the worker's instructions per event under callgrind).
            Sender::Baseline(io) => {
                Box::pin(async move {
                    io.to(room_name(tick.key, tick.room))
                        .emit(EVENT, &tick)
                        .await
                        .map_err(|e| e.to_string())
                })
                .await
            }
        }
    }
}

/// `broadcast-e2e worker --variant V --redis URL --prefix P --rooms R --events E --pad B --rate X --inflight W [--threads T]`
pub fn worker_main(argv: &[String]) -> Result<()> {
    let f = Flags::parse(
        argv,
        &[
            "variant",
            "redis",
            "prefix",
            "rooms",
            "events",
            "pad",
            "rate",
            "inflight",
            "threads",
            "room-key",
            "seq-offset",
        ],
    )?;
    let variant: Variant = f.req("variant")?.parse()?;
    let url = f.req("redis")?.to_owned();
    let prefix = f.req("prefix")?.to_owned();
    let plan = Plan {
        rooms: f.get("rooms", 10u32)?,
        events: f.get("events", 500u32)?,
        pad: f.get("pad", 100usize)?,
        rate: f.get("rate", 0f64)?,
        inflight: f.get("inflight", 1usize)?.max(1),
        key: room_key(f.opt("room-key").unwrap_or(PLAIN_ROOMS))?,
        seq_offset: f.get("seq-offset", 0u32)?,
    };
    if plan.rooms == 0 {
        bail!("--rooms must be at least 1");
    }
    init_tracing();
    let rt = runtime(f.get("threads", 0usize)?)?;
    let result = rt.block_on(work(variant, &url, &prefix, plan));
    std::process::exit(match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("broadcast-e2e worker: {e}");
            1
        }
    })
}

#[derive(Clone, Copy)]
struct Plan {
    rooms: u32,
    events: u32,
    pad: usize,
    rate: f64,
    inflight: usize,
    key: &'static str,
    /// The first seq sent (a second worker of one run continues the first's).
    seq_offset: u32,
}

async fn work(variant: Variant, url: &str, prefix: &str, plan: Plan) -> Result<()> {
    let variant = variant.worker();
    let sender = match variant {
        Variant::Framework => {
            let config = RedisConfig::from_url(url)?
                .prefix(prefix.to_owned())
                .room_channels(room_channels());
            let w = broadcast_core::redis::worker(config).await?;
            Sender::Framework(w.broadcaster)
        }
        _ => {
            // The hand-written worker: a socketioxide server on the Redis
            // adapter with no clients; `io.to(room).emit(..)` publishes the
            // request and delivers to its (zero) local sockets.
            let (_layer, io) = baseline_io(url, prefix, variant, Buffers::default()).await?;
            io.ns("/", async |_: SocketRef<BaselineAdapter>| {}).await?;
            Sender::Baseline(io)
        }
    };
    let sender = Arc::new(sender);
    // One allocation for the whole run: both variants serialize the same
    // borrowed padding.
    let pad: &'static str = Box::leak("x".repeat(plan.pad).into_boxed_str());
    say("READY");
    let mut control = Control::new();
    loop {
        match control.next().await {
            Some(line) if line.trim() == "GO" => break,
            Some(_) => continue,
            None => return Ok(()),
        }
    }
    let total = u64::from(plan.rooms) * u64::from(plan.events);
    let start = Instant::now();
    let results = futures_util::stream::iter(0..total)
        .map(|k| {
            let sender = sender.clone();
            async move {
                if plan.rate > 0.0 {
                    let at = start + Duration::from_secs_f64(k as f64 / plan.rate);
                    tokio::time::sleep_until(at.into()).await;
                }
                let tick = Tick {
                    key: plan.key,
                    room: (k % u64::from(plan.rooms)) as u32,
                    seq: plan.seq_offset + (k / u64::from(plan.rooms)) as u32,
                    ts: now_us(),
                    pad,
                };
                sender.send(tick).await
            }
        })
        .buffer_unordered(plan.inflight);
    let mut done = Done {
        sent: 0,
        failed: 0,
        send_s: 0.0,
        first_error: None,
    };
    futures_util::pin_mut!(results);
    while let Some(r) = results.next().await {
        match r {
            Ok(()) => done.sent += 1,
            Err(e) => {
                done.failed += 1;
                done.first_error.get_or_insert(e);
            }
        }
    }
    done.send_s = start.elapsed().as_secs_f64();
    say(&format!("DONE {}", serde_json::to_string(&done)?));
    // Stay connected until the parent is done measuring.
    while control.next().await.is_some() {}
    Ok(())
}
