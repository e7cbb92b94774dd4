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

use std::hint::black_box;
use std::time::{Duration, Instant};

use broadcast_core::{BroadcastEvent, Broadcaster, IntoTargets, Room, Targets};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
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

fn fanout(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let mut group = c.benchmark_group("fanout");
    group.sample_size(30);
    for n in [1_000usize, 10_000] {
        let mut s = rt.block_on(sockets(n));
        let broadcaster = Broadcaster::socketio(s.io.clone());
        let msg = message(100);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("framework", n), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let event = MessagePosted {
                            message: msg.clone(),
                        };
                        let t = Instant::now();
                        let out = broadcaster.broadcast(event).await;
                        total += t.elapsed();
                        black_box(out.unwrap());
                        drain(&mut s.rxs).await;
                    }
                    total
                })
            })
        });
        group.bench_function(BenchmarkId::new("handwritten", n), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let payload = msg.clone();
                        let t = Instant::now();
                        let room = format!("chat|{}", payload.chat_id);
                        let out = s.io.to(room).emit("message_posted", &payload).await;
                        total += t.elapsed();
                        black_box(out.unwrap());
                        drain(&mut s.rxs).await;
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

struct ChatRoom(u64);
impl Room for ChatRoom {
    fn name(&self) -> std::borrow::Cow<'static, str> {
        format!("chat|{}", self.0).into()
    }
}

fn parts(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
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
    group.bench_function("template/chat|{message.chat_id}", |b| {
        b.iter(|| rt.block_on(async { black_box(event.broadcast_on().await) }))
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

criterion_group!(benches, fanout, parts);
criterion_main!(benches);
