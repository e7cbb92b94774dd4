//! The join storm's clients, in child processes of `broadcast-presence`
//! (`broadcast-presence clients PORT_A PORT_B FROM TO`), so that no process
//! holds 10,000 websockets and what they receive.
//!
//! Each client is a raw websocket (Socket.IO v5 over Engine.IO v4): a frame
//! is looked at by its first bytes only. `joined` notices are counted,
//! engine pings answered, and everything else (every presence frame, up to
//! ~150 KB each at 10,000 members) dropped unread. Clients that parsed
//! every frame (the tests' `SioClient`) made one process of 10,000 grow to
//! 10 GB.
//!
//! The parent drives the children by lines: it writes `1` (join chat 1),
//! `2` (join the own `user|` room) or `3` (quit) to their stdin; a child
//! prints `connected N` once its clients are connected and `joined P` once
//! every one of them got the `joined` of phase `P` (`lost K` if a
//! connection dropped).

use std::net::SocketAddr;
use std::time::Duration;

use broadcast_test_support::sio_client::{
    CONNECT_TIMEOUT, PacketKind, Ws, encode_simple, open_websocket, parse_packet,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Opens a websocket to `addr` and connects namespace `/` as `user`.
async fn connect(addr: SocketAddr, user: &str) -> Result<Ws, Error> {
    let (mut ws, _sid, _heartbeat) = open_websocket(addr).await?;
    let auth = json!({ "user": user });
    let handshake = async {
        let connect = encode_simple(PacketKind::Connect, "/", Some(&auth))?;
        ws.send(Message::text(connect)).await?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => match t.as_bytes().first() {
                    Some(b'4') => {
                        let packet = parse_packet(t.get(1..).unwrap_or_default())?;
                        match packet.kind {
                            PacketKind::Connect => return Ok::<(), Error>(()),
                            PacketKind::ConnectError => {
                                return Err(format!("connect refused: {t}").into());
                            }
                            _ => {}
                        }
                    }
                    Some(b'2') => ws.send(Message::text("3")).await?,
                    _ => {}
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err("closed during connect".into()),
            }
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT * 4, handshake)
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))??;
    Ok(ws)
}

/// One client: sends what its phase asks, reports its `joined` notices
/// (`0` when the connection ends).
async fn run(
    mut ws: Ws,
    i: usize,
    mut phase: watch::Receiver<u8>,
    done: mpsc::UnboundedSender<u8>,
) {
    let mut current = 0u8;
    loop {
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    return;
                }
                current = *phase.borrow();
                let frame = match current {
                    1 => r#"42["join_chat",1]"#.to_owned(),
                    2 => format!(r#"42["join_user","u{i}"]"#),
                    _ => {
                        let _ = ws.close(None).await;
                        return;
                    }
                };
                if ws.send(Message::text(frame)).await.is_err() {
                    let _ = done.send(0);
                    return;
                }
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if t.starts_with(r#"42["joined""#) {
                        let _ = done.send(current);
                    } else if t.as_str() == "2" && ws.send(Message::text("3")).await.is_err() {
                        let _ = done.send(0);
                        return;
                    }
                }
                Some(Ok(_)) => {}
                _ => {
                    let _ = done.send(0);
                    return;
                }
            },
        }
    }
}

/// `clients PORT_A PORT_B FROM TO`: clients `FROM..TO` (user `u<i>`, on
/// port A for even `i`, B for odd).
pub async fn main(args: &[String]) -> Result<(), Error> {
    let [pa, pb, from, to] = args else {
        return Err("usage: clients PORT_A PORT_B FROM TO".into());
    };
    let ports: [u16; 2] = [pa.parse()?, pb.parse()?];
    let (from, to): (usize, usize) = (from.parse()?, to.parse()?);
    let (phase_tx, phase_rx) = watch::channel(0u8);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<u8>();
    let mut pending = Vec::new();
    let mut connected = 0;
    for i in from..to {
        let addr = SocketAddr::from(([127, 0, 0, 1], ports[i % 2]));
        pending.push(tokio::spawn(async move {
            (i, connect(addr, &format!("u{i}")).await)
        }));
        if pending.len() == 100 || i + 1 == to {
            for p in pending.drain(..) {
                let (i, ws) = p.await?;
                tokio::spawn(run(ws?, i, phase_rx.clone(), done_tx.clone()));
                connected += 1;
            }
        }
    }
    drop(done_tx);
    println!("connected {connected}");
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = stdin.next_line().await? {
        let phase: u8 = line.trim().parse()?;
        phase_tx.send(phase)?;
        if phase >= 3 {
            // Let the close frames go out.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return Ok(());
        }
        let mut got = 0;
        while got < connected {
            match done_rx.recv().await {
                Some(p) if p == phase => got += 1,
                Some(0) | None => {
                    println!("lost {}", connected - got);
                    return Err("a client's connection ended".into());
                }
                Some(_) => {}
            }
        }
        println!("joined {phase}");
    }
    Ok(())
}
