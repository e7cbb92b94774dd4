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
    let mut rxs = Vec::with_capacity(n);
    for _ in 0..n {
        let (_tx, mut rx) = io.new_dummy_sock("/", ()).await;
        // The CONNECT reply.
        let _ = rx.recv().await;
        std::mem::forget(_tx);
        rxs.push(rx);
    }
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
                socket_errors: 0,
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
    let null = Broadcaster::new(NullTransport);
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

/// Framework/hand-written ratio from alternating blocks on the same sockets,
/// so both sides see the same machine load. Many short blocks and their
/// median: a block hit by preemption is an outlier, not a bias.
fn paired() {
    let rt = runtime();
    const BLOCKS: usize = 101;
    // (sockets, text bytes, broadcasts per block and side)
    for (n, text_len, per_block) in [
        (1_000usize, 100usize, 20usize),
        (10_000, 100, 2),
        (1_000, 1024, 20),
        (1_000, 64 * 1024, 20),
    ] {
        let mut s = rt.block_on(sockets(n));
        let broadcaster = Broadcaster::socketio(s.io.clone());
        let msg = message(text_len);
        let (mut fw, mut hw, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        rt.block_on(async {
            for _ in 0..per_block * 5 {
                framework_once(&broadcaster, &mut s, &msg).await;
                handwritten_once(&mut s, &msg).await;
            }
            for block in 0..BLOCKS {
                let (mut f, mut h) = (Duration::ZERO, Duration::ZERO);
                // Alternate which side goes first.
                for turn in 0..2 {
                    if (block + turn) % 2 == 0 {
                        for _ in 0..per_block {
                            f += framework_once(&broadcaster, &mut s, &msg).await;
                        }
                    } else {
                        for _ in 0..per_block {
                            h += handwritten_once(&mut s, &msg).await;
                        }
                    }
                }
                let per = |d: Duration| d.as_secs_f64() * 1e6 / per_block as f64;
                fw.push(per(f));
                hw.push(per(h));
                ratios.push(f.as_secs_f64() / h.as_secs_f64());
            }
        });
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (f, h, r) = (med(&mut fw), med(&mut hw), med(&mut ratios));
        let q = |p: f64| ratios[((ratios.len() - 1) as f64 * p).round() as usize];
        let name = if text_len == 100 {
            format!("{n}")
        } else {
            format!("{n}x{text_len}B")
        };
        println!(
            "paired/fanout/{name}: framework {f:.1} µs, handwritten {h:.1} µs, ratio {r:.3} (quartiles {:.3}..{:.3}; {BLOCKS} blocks of {per_block})",
            q(0.25),
            q(0.75)
        );
    }
}

criterion_group!(benches, fanout, fanout_payload, parts);

fn main() {
    benches();
    // `cargo bench --bench pipeline -- <filter>`: the paired section runs
    // without a filter or when the filter names it.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter
        .as_deref()
        .is_none_or(|f| "paired/fanout".contains(f) || f.contains("paired"))
    {
        paired();
    }
    Criterion::default().configure_from_args().final_summary();
}
