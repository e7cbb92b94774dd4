//! No lost early joins: socketioxide acknowledges a namespace connect
//! before it runs the connect handler, so the join protocol registers its
//! handlers from a connect middleware. Here 500 clients each emit
//! `join_<key>` the moment their connect is acknowledged, 20 times over;
//! every join must be answered, and every socket must be in its room.
//!
//! The clients are raw websockets: each writes its join in the same step
//! that reads the CONNECT acknowledgement, as a browser's `connect` callback
//! does. (A client that hands the acknowledgement to another task first
//! gives the server time to run its connect handler and hides the race.)
#![deny(warnings)]
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use broadcast_core::Room;
use broadcast_core::join::{Handshake, JoinContext, Rooms};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const CLIENTS: usize = 500;
const RUNS: usize = 20;
/// Upper bound for one client's connect and join; never a pass condition.
const T: Duration = Duration::from_secs(20);

struct Ticket(u64);

#[derive(Room)]
#[room(authorize = holds_ticket)]
struct RaceRoom(u64);

/// Authorization reads the identity stored at connect: had the middleware
/// not run before the connect was acknowledged, early joins would be
/// forbidden, not just lost.
async fn holds_ticket(ctx: &JoinContext, room: &RaceRoom) -> bool {
    ctx.identity::<Ticket>().is_some_and(|t| t.0 == room.0)
}

async fn authenticate(h: Handshake) -> Result<Option<Ticket>, String> {
    // Asynchronous, as a session store lookup would be.
    tokio::task::yield_now().await;
    Ok(h.auth()["ticket"].as_u64().map(Ticket))
}

async fn serve() -> (SocketAddr, SocketIo) {
    let (layer, io) = SocketIo::new_layer();
    let rooms = Rooms::builder().authenticate(authenticate).build().unwrap();
    // The app's own connect handler is slow; joins must not wait for it.
    rooms.ns(&io, "/", async |_: SocketRef| {
        tokio::time::sleep(Duration::from_millis(5)).await;
    });
    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (addr, io)
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a websocket and reads the Engine.IO open packet.
async fn open(addr: SocketAddr) -> Result<Ws, String> {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .map_err(|e| e.to_string())?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.starts_with('0') => Ok(ws),
        other => Err(format!("no open packet: {other:?}")),
    }
}

/// Connects namespace `/` with `ticket` as auth, emits `join_race` with an
/// ack request the moment the CONNECT acknowledgement is read, then waits
/// for the ack and the `joined` event. Returns the socket id.
async fn connect_and_join(ws: &mut Ws, ticket: u64, ack_id: u64) -> Result<String, String> {
    let room = format!("race|{ticket}");
    ws.send(Message::text(format!("40{}", json!({ "ticket": ticket }))))
        .await
        .map_err(|e| e.to_string())?;
    let mut sid = None;
    let mut acked = false;
    let mut joined = false;
    while !(acked && joined) {
        let text = match ws.next().await {
            Some(Ok(Message::Text(t))) => t.to_string(),
            Some(Ok(_)) => continue,
            other => return Err(format!("connection lost: {other:?}")),
        };
        if text == "2" {
            ws.send(Message::text("3"))
                .await
                .map_err(|e| e.to_string())?;
        } else if let Some(connect) = text.strip_prefix("40") {
            ws.send(Message::text(format!("42{ack_id}[\"join_race\",{ticket}]")))
                .await
                .map_err(|e| e.to_string())?;
            let connect: Value = serde_json::from_str(connect).map_err(|e| e.to_string())?;
            sid = connect["sid"].as_str().map(str::to_owned);
        } else if let Some(ack) = text.strip_prefix(&format!("43{ack_id}")) {
            let ack: Value = serde_json::from_str(ack).map_err(|e| e.to_string())?;
            if ack != json!([{"ok": true, "room": room}]) {
                return Err(format!("refused: {ack}"));
            }
            acked = true;
        } else if let Some(event) = text.strip_prefix("42") {
            let event: Value = serde_json::from_str(event).map_err(|e| e.to_string())?;
            if event != json!(["joined", {"room": room}]) {
                return Err(format!("unexpected event {event}"));
            }
            joined = true;
        } else {
            return Err(format!("unexpected packet {text:?}"));
        }
    }
    sid.ok_or_else(|| "no sid in CONNECT".to_owned())
}

#[derive(Debug, Default)]
struct RunStats {
    answered: usize,
    lost: Vec<String>,
}

/// Each run, every one of the `CLIENTS` connections connects namespace `/`
/// anew (a new socket on the server, as a reconnecting browser tab does)
/// and joins at once. The connections themselves are opened once: their
/// websocket handshakes cost far more CPU than the namespace connect,
/// where the race is, and would make this take minutes on 2 cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_immediate_join_is_answered_and_joined() {
    let (addr, io) = serve().await;
    let started = Instant::now();
    let opening: Vec<_> = (0..CLIENTS).map(|_| tokio::spawn(open(addr))).collect();
    let mut clients = Vec::with_capacity(CLIENTS);
    for task in opening {
        clients.push(task.await.unwrap().unwrap());
    }
    println!("{CLIENTS} connections opened in {:?}", started.elapsed());

    let mut all = Vec::with_capacity(RUNS);
    for run in 0..RUNS {
        let run_started = Instant::now();
        let tasks: Vec<_> = clients
            .drain(..)
            .enumerate()
            .map(|(i, mut ws)| {
                let ticket = run as u64 * 1_000_000 + i as u64;
                tokio::spawn(async move {
                    let outcome =
                        tokio::time::timeout(T, connect_and_join(&mut ws, ticket, run as u64))
                            .await
                            .unwrap_or_else(|_| Err("no answer".to_owned()));
                    (ws, ticket, outcome)
                })
            })
            .collect();
        let mut stats = RunStats::default();
        for task in tasks {
            let (ws, ticket, outcome) = task.await.unwrap();
            match outcome {
                Ok(sid) => {
                    // The server agrees: that socket, and only it, is in the room.
                    let members = io
                        .of("/")
                        .unwrap()
                        .within(format!("race|{ticket}"))
                        .sockets();
                    if members.len() == 1 && members[0].id.to_string() == sid {
                        stats.answered += 1;
                    } else {
                        stats
                            .lost
                            .push(format!("client {ticket}: answered but not in its room"));
                    }
                }
                Err(e) => stats.lost.push(format!("client {ticket}: {e}")),
            }
            clients.push(ws);
        }
        println!(
            "run {run:2}: {} answered and joined, {} lost ({:?})",
            stats.answered,
            stats.lost.len(),
            run_started.elapsed()
        );
        all.push(stats);
        for ws in &mut clients {
            ws.send(Message::text("41")).await.unwrap();
        }
        // The next run's sockets reuse these connections' ids: wait until
        // the server has dropped every socket of this run.
        let deadline = Instant::now() + T;
        while !io.of("/").unwrap().sockets().is_empty() {
            assert!(
                Instant::now() < deadline,
                "sockets not closed after a namespace disconnect"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let answered: usize = all.iter().map(|s| s.answered).sum();
    let lost: Vec<&String> = all.iter().flat_map(|s| &s.lost).collect();
    println!(
        "{RUNS} runs x {CLIENTS} clients: {answered} answered and joined, {} lost, in {:?}",
        lost.len(),
        started.elapsed()
    );
    assert!(lost.is_empty(), "lost joins: {lost:#?}");
    assert_eq!(answered, RUNS * CLIENTS);
}
