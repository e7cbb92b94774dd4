//! Micro benchmarks: the cost the framework adds over hand-written
//! socketioxide code, and the cost of its parts.
//!
//! `cargo bench --bench pipeline` (append a filter, e.g. `-- fanout`).
//!
//! Fan-out: a derived event broadcast to one room of N in-process sockets
//! (socketioxide's dummy sockets: the real adapter, encoder and per-socket
//! channels, no network), against the same payload sent with hand-written
//! `io.to(room).emit(..)`. Only the broadcast call is timed; each socket's
//! packet is then received (untimed), which also proves every socket got it.
//!
//! The sockets live on a current-thread runtime: each socket's packet wakes
//! a forwarding task, and on a multi-thread runtime those tasks would run on
//! the other cores during the timed broadcast (and unpark threads), adding
//! noise that has nothing to do with the framework. Here they run when the
//! packets are drained, untimed, and the timed part is the broadcast's own
//! work, identical on both sides except for the framework.
//!
//! Criterion times the two functions one after the other, so load on the
//! machine that changes in between skews their ratio. The `paired` section
//! at the end (filter `paired`) measures the ratio itself: blocks of
//! framework and hand-written broadcasts alternate on the same sockets, and
//! the median of the per-block ratios is printed as
//! `paired/fanout/N: framework .. µs, handwritten .. µs, ratio ..`.
//!
//! Times move with the machine; instruction counts do not. The
//! `instructions` section (filter `instructions`, needs valgrind) re-runs
//! this binary under callgrind, collecting only inside the two broadcast
//! calls, and prints the instructions per broadcast of each side and their
//! ratio: the same figure on a quiet or a busy machine.

use std::future::IntoFuture;
use std::hint::black_box;
use std::time::{Duration, Instant};

use broadcast_core::transport::{BoxFuture, Delivery, DeliveryReport, NamespaceFailure, Transport};
use broadcast_core::{BroadcastEvent, Broadcaster, IntoTargets, Room, Targets};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use futures_util::FutureExt;
use serde::Serialize;
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use tokio::runtime::Runtime;
use tokio::sync::mpsc::Receiver;

#[derive(Serialize, Clone)]
struct Message {
    chat_id: u64,
    author: String,
    text: String,
    sent_at: String,
}

#[derive(Serialize, Clone, BroadcastEvent)]
#[broadcast(on = "chat|{message.chat_id}")]
struct MessagePosted {
    #[serde(flatten)]
    message: Message,
}

fn message(text_len: usize) -> Message {
    Message {
        chat_id: 1,
        author: "alice".into(),
        text: "x".repeat(text_len),
        sent_at: "2026-11-28T08:00:00Z".into(),
    }
}

struct Sockets<P> {
    io: SocketIo,
    rxs: Vec<Receiver<P>>,
}

async fn sockets(n: usize) -> Sockets<impl Send> {
    let (_svc, io) = SocketIo::builder().max_buffer_size(16).build_svc();
    io.ns("/", async |s: SocketRef| s.join("chat|1"));
    // Concurrently: socketioxide sleeps 10 ms in each `new_dummy_sock`.
    let rxs = futures_util::future::join_all((0..n).map(|_| async {
        let (tx, mut rx) = io.new_dummy_sock("/", ()).await;
        // The CONNECT reply.
        let _ = rx.recv().await;
        std::mem::forget(tx);
        rx
    }))
    .await;
    // Connect handlers run in spawned tasks; wait for every join.
    loop {
        let joined = io
            .of("/")
            .map(|op| op.to("chat|1").sockets().len())
            .unwrap_or(0);
        if joined == n {
            break;
        }
        tokio::task::yield_now().await;
    }
    Sockets { io, rxs }
}

async fn drain<P>(rxs: &mut [Receiver<P>]) {
    for rx in rxs {
        if rx.recv().await.is_none() {
            panic!("a socket missed the broadcast");
        }
    }
}

/// One framework broadcast, timed (the event is built outside the timing,
/// like the hand-written payload).
async fn framework_once<P>(b: &Broadcaster, s: &mut Sockets<P>, msg: &Message) -> Duration {
    let event = MessagePosted {
        message: msg.clone(),
    };
    let t = Instant::now();
    let out = b.broadcast(event).await;
    let elapsed = t.elapsed();
    out.unwrap();
    drain(&mut s.rxs).await;
    elapsed
}

/// The same payload with hand-written socketioxide code.
async fn handwritten_once<P>(s: &mut Sockets<P>, msg: &Message) -> Duration {
    let payload = msg.clone();
    let t = Instant::now();
    let room = format!("chat|{}", payload.chat_id);
    let out = s.io.to(room).emit("message_posted", &payload).await;
    let elapsed = t.elapsed();
    out.unwrap();
    drain(&mut s.rxs).await;
    elapsed
}

fn compare(
    c: &mut Criterion,
    rt: &Runtime,
    group_name: &str,
    cases: &[(usize, usize)],
    sample_size: usize,
) {
    let mut group = c.benchmark_group(group_name);
    group.sample_size(sample_size);
    for &(n, text_len) in cases {
        let mut s = rt.block_on(sockets(n));
        let broadcaster = Broadcaster::socketio(s.io.clone());
        let msg = message(text_len);
        // The 100-byte case is named by its socket count alone, as before.
        let id = |who: &str| {
            if text_len == 100 {
                BenchmarkId::new(who, n)
            } else {
                BenchmarkId::new(who, format!("{n}x{text_len}B"))
            }
        };
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(id("framework"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += framework_once(&broadcaster, &mut s, &msg).await;
                    }
                    total
                })
            })
        });
        group.bench_function(id("handwritten"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += handwritten_once(&mut s, &msg).await;
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A derived event with a 100-byte text to one room of 1,000 and 10,000
/// sockets.
fn fanout(c: &mut Criterion) {
    let rt = runtime();
    compare(c, &rt, "fanout", &[(1_000, 100), (10_000, 100)], 30);
}

/// The same at 1,000 sockets with a 1 KiB and a 64 KiB text.
fn fanout_payload(c: &mut Criterion) {
    let rt = runtime();
    compare(
        c,
        &rt,
        "fanout_payload",
        &[(1_000, 1024), (1_000, 64 * 1024)],
        20,
    );
}

struct ChatRoom(u64);
impl Room for ChatRoom {
    fn name(&self) -> std::borrow::Cow<'static, str> {
        format!("chat|{}", self.0).into()
    }
}

/// A transport that sends nothing: what is left is the framework's own
/// pipeline (when, targets, payload, serialization, stats).
struct NullTransport;

impl Transport for NullTransport {
    fn deliver<'a>(
        &'a self,
        d: Delivery<'a>,
    ) -> BoxFuture<'a, Result<DeliveryReport, NamespaceFailure>> {
        black_box(&d);
        Box::pin(async {
            Ok(DeliveryReport {
                namespaces: 1,
                ..Default::default()
            })
        })
    }
}

fn parts(c: &mut Criterion) {
    let mut group = c.benchmark_group("parts");
    group.bench_function("targets/5-mixed", |b| {
        b.iter(|| {
            let mut t = Targets::new();
            (
                "lobby",
                ChatRoom(black_box(42)),
                vec![format!("user|{}", black_box(7)), "chat|42".to_string()],
                ["admins", "lobby"],
            )
                .into_targets("/", &mut t);
            black_box(t)
        })
    });
    let event = MessagePosted {
        message: message(100),
    };
    // The derived futures are ready at once: polled once, no runtime.
    group.bench_function("template/chat|{message.chat_id}", |b| {
        b.iter(|| black_box(black_box(&event).broadcast_on().now_or_never()))
    });
    let null = Broadcaster::builder(NullTransport).build();
    group.bench_function("pipeline/null-transport/100B", |b| {
        b.iter(|| {
            let event = MessagePosted {
                message: black_box(&event.message).clone(),
            };
            black_box(null.broadcast(event).into_future().now_or_never())
        })
    });
    for size in [1024usize, 64 * 1024] {
        let event = MessagePosted {
            message: message(size),
        };
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("encode/framework", size), |b| {
            b.iter(|| {
                let raw = serde_json::value::to_raw_value(black_box(&event)).unwrap();
                black_box(raw)
            })
        });
        group.bench_function(BenchmarkId::new("encode/serde_json", size), |b| {
            b.iter(|| black_box(serde_json::to_vec(black_box(&event)).unwrap()))
        });
    }
    group.finish();
}

#[derive(Clone, Copy)]
enum Side {
    Framework,
    Handwritten,
}

async fn once<P>(side: Side, b: &Broadcaster, s: &mut Sockets<P>, msg: &Message) -> Duration {
    match side {
        Side::Framework => framework_once(b, s, msg).await,
        Side::Handwritten => handwritten_once(s, msg).await,
    }
}

/// Summary of one side's single-broadcast times, in µs.
struct Times {
    p25: f64,
    median: f64,
    /// Mean of the middle 80%.
    trimmed_mean: f64,
}

fn times(v: &[Duration]) -> Times {
    let mut v: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let middle = &v[v.len() / 10..v.len() - v.len() / 10];
    Times {
        p25: q(0.25),
        median: q(0.5),
        trimmed_mean: middle.iter().sum::<f64>() / middle.len() as f64,
    }
}

/// Alternates two sides strictly on the same sockets (A, B, B, A, A, B, ..:
/// neither always goes first) and returns each side's times.
async fn alternate<P>(
    (a, b): (Side, Side),
    broadcaster: &Broadcaster,
    s: &mut Sockets<P>,
    msg: &Message,
    per_side: usize,
) -> (Times, Times) {
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..per_side / 10 {
        once(a, broadcaster, s, msg).await;
        once(b, broadcaster, s, msg).await;
    }
    for i in 0..per_side {
        if i % 2 == 0 {
            ta.push(once(a, broadcaster, s, msg).await);
            tb.push(once(b, broadcaster, s, msg).await);
        } else {
            tb.push(once(b, broadcaster, s, msg).await);
            ta.push(once(a, broadcaster, s, msg).await);
        }
    }
    (times(&ta), times(&tb))
}

/// Framework/hand-written ratio from broadcasts that strictly alternate on
/// the same sockets, so both sides see the same machine load and cache
/// state, plus a control: hand-written against itself, the same way. The
/// single-broadcast times are bimodal on this machine (a fast mode and one
/// about twice as slow, in runs of several hundred broadcasts), which makes
/// medians jump between the modes; the lower quartile (the fast mode) and
/// the mean of the middle 80% are stable, and the control shows how far
/// the method itself is from 1.
fn paired() {
    let rt = runtime();
    // (sockets, text bytes, broadcasts per side)
    for (n, text_len, per_side) in [
        (1_000usize, 100usize, 4_400usize),
        (10_000, 100, 440),
        (1_000, 1024, 4_400),
        (1_000, 64 * 1024, 4_400),
    ] {
        let mut s = rt.block_on(sockets(n));
        let broadcaster = Broadcaster::socketio(s.io.clone());
        let msg = message(text_len);
        let (f, h, c1, c2) = rt.block_on(async {
            let sides = (Side::Framework, Side::Handwritten);
            let (f, h) = alternate(sides, &broadcaster, &mut s, &msg, per_side).await;
            let control = (Side::Handwritten, Side::Handwritten);
            let (c1, c2) = alternate(control, &broadcaster, &mut s, &msg, per_side).await;
            (f, h, c1, c2)
        });
        let name = if text_len == 100 {
            format!("{n}")
        } else {
            format!("{n}x{text_len}B")
        };
        println!(
            "paired/fanout/{name}: framework {:.1} µs, handwritten {:.1} µs (means of the middle 80%), ratio {:.3}; lower quartiles {:.1} / {:.1} µs, ratio {:.3}; medians ratio {:.3}; control handwritten/handwritten: {:.3} (means), {:.3} (lower quartiles); {per_side} broadcasts per side",
            f.trimmed_mean,
            h.trimmed_mean,
            f.trimmed_mean / h.trimmed_mean,
            f.p25,
            h.p25,
            f.p25 / h.p25,
            f.median / h.median,
            c1.trimmed_mean / c2.trimmed_mean,
            c1.p25 / c2.p25,
        );
    }
}

/// The framework's broadcast, alone in a function callgrind can select. Its
/// future completes at once on the in-process adapter: a `None` here would
/// mean it yielded to the runtime, which the timed benches would miss.
#[inline(never)]
fn framework_send(b: &Broadcaster, event: MessagePosted) {
    let out = b.broadcast(event).into_future().now_or_never();
    black_box(
        out.expect("the broadcast did not complete at once")
            .unwrap(),
    );
}

/// The hand-written emit, alone in a function callgrind can select.
#[inline(never)]
fn handwritten_send(io: &SocketIo, payload: &Message) {
    let room = format!("chat|{}", payload.chat_id);
    let out = io.to(room).emit("message_posted", payload).now_or_never();
    out.expect("the emit did not complete at once").unwrap();
}

const CALLGRIND_CHILD: &str = "BROADCAST_BENCH_CALLGRIND";
const COUNTED: usize = 20;

/// In the child under callgrind: `COUNTED` broadcasts of one side to `n`
/// sockets (after as many uncounted ones, to warm allocator and tables).
fn instructions_child(spec: &str) {
    let (side, n) = spec.split_once(':').expect("side:sockets");
    let n: usize = n.parse().expect("socket count");
    let rt = runtime();
    rt.block_on(async {
        let mut s = sockets(n).await;
        let broadcaster = Broadcaster::socketio(s.io.clone());
        let msg = message(100);
        for _ in 0..2 * COUNTED {
            match side {
                "framework" => framework_send(
                    &broadcaster,
                    MessagePosted {
                        message: msg.clone(),
                    },
                ),
                _ => handwritten_send(&s.io, &msg),
            }
            drain(&mut s.rxs).await;
        }
    });
}

/// Instructions per broadcast of each side, counted by callgrind.
fn instructions() {
    let exe = std::env::current_exe().expect("bench executable");
    let dir = std::env::temp_dir();
    for n in [1_000usize, 10_000] {
        let mut per = Vec::new();
        for (side, function) in [
            ("framework", "pipeline::framework_send"),
            ("handwritten", "pipeline::handwritten_send"),
        ] {
            let out = dir.join(format!(
                "callgrind.broadcast-bench.{}.{side}.{n}",
                std::process::id()
            ));
            let status = std::process::Command::new("valgrind")
                .arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg(format!("--toggle-collect={function}"))
                .arg(&exe)
                .arg("--bench")
                .env(CALLGRIND_CHILD, format!("{side}:{n}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            let status = match status {
                Ok(s) => s,
                Err(e) => {
                    println!("instructions: valgrind not runnable ({e}); skipped");
                    return;
                }
            };
            assert!(status.success(), "callgrind run failed: {status}");
            let text = std::fs::read_to_string(&out).expect("callgrind output");
            let _ = std::fs::remove_file(&out);
            // The collected total: the events of the "totals:" (or
            // "summary:") line, Ir first.
            let total: u64 = text
                .lines()
                .find_map(|l| {
                    l.strip_prefix("totals:")
                        .or_else(|| l.strip_prefix("summary:"))
                })
                .and_then(|t| t.split_whitespace().next())
                .and_then(|t| t.parse().ok())
                .expect("a callgrind total");
            // Half of the calls were warm-up: count the whole and divide by
            // all calls (both halves run the same code).
            per.push(total as f64 / (2 * COUNTED) as f64);
        }
        println!(
            "instructions/fanout/{n}: framework {:.0}, handwritten {:.0} instructions per broadcast, ratio {:.4} ({} broadcasts each, callgrind)",
            per[0],
            per[1],
            per[0] / per[1],
            2 * COUNTED
        );
    }
}

criterion_group!(benches, fanout, fanout_payload, parts);

fn main() {
    if let Ok(spec) = std::env::var(CALLGRIND_CHILD) {
        instructions_child(&spec);
        return;
    }
    benches();
    // `cargo bench --bench pipeline -- <filter>`: the paired and the
    // instructions sections run without a filter or when the filter names
    // them.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let selected = |name: &str| {
        filter
            .as_deref()
            .is_none_or(|f| name.contains(f) || f.contains(name))
    };
    if selected("paired/fanout") {
        paired();
    }
    if selected("instructions/fanout") {
        instructions();
    }
    Criterion::default().configure_from_args().final_summary();
}
