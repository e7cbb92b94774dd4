//! The benchmark's websocket clients: raw Socket.IO v5 over Engine.IO v4,
//! one task each on the bench's single runtime thread. Each frame is looked
//! at once: event frames are matched against the exact prefix serde_json
//! writes for [`Tick`](crate::roles::Tick) and only `room`, `seq` and `ts`
//! are read; engine pings are answered; everything else is ignored.
//!
//! Why not the tests' [`SioClient`](broadcast_test_support::sio_client::SioClient):
//! it decodes every event into `serde_json::Value`s, allocates a `Received`
//! and hands it through a channel to a second task. All clients share one
//! thread, so that cost is the bench's ceiling: with it, the default
//! scenario (2 servers, 200 clients, 10 rooms, 100,000 deliveries, framework)
//! took 3.0–4.2 µs of client CPU per delivery instead of 0.7–1.0 µs, and
//! delivered 95–134k/s instead of 218–328k/s, measuring the client rather
//! than the servers. What does not run per event is shared with it: opening
//! the websocket (with its 4 KiB read buffer), the Engine.IO open packet, the
//! CONNECT packet and the parsing of its reply.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use broadcast_test_support::sio_client::{
    CONNECT_TIMEOUT, PacketKind, Ws, encode_simple, open_websocket_from, parse_packet,
};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::roles::{now_us, room_name};
use crate::{Result, bail};

/// Counters shared by all clients, watched by the orchestrator to detect
/// quiescence.
#[derive(Default)]
pub struct Live {
    /// Event frames received (duplicates included).
    pub received: AtomicU64,
    /// Wall clock (µs since the epoch) of the latest event frame.
    pub last_us: AtomicU64,
}

/// What one client saw.
#[derive(Default)]
pub struct Tally {
    pub received: u64,
    pub unique: u64,
    pub duplicated: u64,
    /// Events of a room this client did not join, or a seq out of range.
    pub unexpected: u64,
    /// Frames that looked like events but did not parse.
    pub malformed: u64,
    /// The server closed the namespace or the connection.
    pub disconnected: bool,
    /// Latency of each unique delivery, µs (saturating).
    pub latencies: Vec<u32>,
    pub last_us: u64,
}

/// Opens a websocket to `addr`, completes the Engine.IO handshake and
/// connects namespace `/` with `{"rooms": [...]}` as auth. The server joins
/// the rooms before acknowledging, so the client is in them on return.
/// `from` is the local address (`None`: the system's choice).
pub async fn connect(
    addr: SocketAddr,
    from: Option<IpAddr>,
    key: &str,
    rooms: &[u32],
) -> Result<Ws> {
    let names: Vec<String> = rooms.iter().map(|r| room_name(key, *r)).collect();
    let auth = serde_json::json!({ "rooms": names });
    let (mut ws, _sid, _heartbeat) = open_websocket_from(addr, from).await?;
    let handshake = async {
        let connect = encode_simple(PacketKind::Connect, "/", Some(&auth))?;
        ws.send(Message::text(connect)).await?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => match t.as_bytes().first() {
                    Some(b'4') => {
                        let packet = parse_packet(t.get(1..).unwrap_or_default())?;
                        match packet.kind {
                            PacketKind::Connect => return Ok(()),
                            PacketKind::ConnectError => bail!("connect refused: {t}"),
                            _ => {}
                        }
                    }
                    Some(b'2') => ws.send(Message::text("3")).await?,
                    _ => {}
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => bail!("closed during connect"),
            }
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
        Ok(r) => r.map(|()| ws),
        Err(_) => bail!("connecting to {addr} timed out"),
    }
}

/// Which (room, seq) pairs a client has seen.
struct Seen {
    rooms: Vec<u32>,
    events: u32,
    bits: Vec<Vec<u64>>,
}

impl Seen {
    fn new(rooms: Vec<u32>, events: u32) -> Self {
        let words = (events as usize).div_ceil(64);
        let bits = rooms.iter().map(|_| vec![0u64; words]).collect();
        Seen {
            rooms,
            events,
            bits,
        }
    }

    /// `Some(true)` the first time, `Some(false)` for a duplicate, `None`
    /// if this client should never have got it.
    fn mark(&mut self, room: u32, seq: u32) -> Option<bool> {
        let i = self.rooms.iter().position(|r| *r == room)?;
        if seq >= self.events {
            return None;
        }
        let (w, b) = ((seq / 64) as usize, seq % 64);
        let word = &mut self.bits[i][w];
        let fresh = *word & (1 << b) == 0;
        *word |= 1 << b;
        Some(fresh)
    }
}

/// Reads events until `stop` turns true or the connection ends.
pub async fn receive(
    mut ws: Ws,
    rooms: Vec<u32>,
    events: u32,
    live: Arc<Live>,
    mut stop: watch::Receiver<bool>,
) -> Tally {
    let mut tally = Tally {
        latencies: Vec::with_capacity(rooms.len() * events as usize),
        ..Tally::default()
    };
    let mut seen = Seen::new(rooms, events);
    loop {
        let msg = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            msg = ws.next() => msg,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                tally.disconnected = true;
                break;
            }
            Some(Ok(_)) => continue,
        };
        let t = text.as_str();
        if t == "2" {
            if ws.send(Message::Text("3".into())).await.is_err() {
                tally.disconnected = true;
                break;
            }
            continue;
        }
        if t.starts_with("41") {
            tally.disconnected = true;
            break;
        }
        if !t.starts_with("42") {
            continue;
        }
        let now = now_us();
        tally.received += 1;
        live.received.fetch_add(1, Ordering::Relaxed);
        live.last_us.fetch_max(now, Ordering::Relaxed);
        tally.last_us = now;
        let Some((room, seq, ts)) = parse_tick(t) else {
            tally.malformed += 1;
            continue;
        };
        match seen.mark(room, seq) {
            Some(true) => {
                tally.unique += 1;
                let lat = now.saturating_sub(ts);
                tally.latencies.push(u32::try_from(lat).unwrap_or(u32::MAX));
            }
            Some(false) => tally.duplicated += 1,
            None => tally.unexpected += 1,
        }
    }
    tally
}

/// `42["bench",{"room":R,"seq":S,"ts":T,...` -> (R, S, T), reading nothing
/// past `ts`.
pub fn parse_tick(frame: &str) -> Option<(u32, u32, u64)> {
    let rest = frame.strip_prefix(r#"42["bench",{"room":"#)?;
    let (room, rest) = number(rest)?;
    let rest = rest.strip_prefix(r#","seq":"#)?;
    let (seq, rest) = number(rest)?;
    let rest = rest.strip_prefix(r#","ts":"#)?;
    let (ts, _) = number(rest)?;
    Some((u32::try_from(room).ok()?, u32::try_from(seq).ok()?, ts))
}

fn number(s: &str) -> Option<(u64, &str)> {
    let end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    Some((s[..end].parse().ok()?, &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_serialized_tick() {
        let tick = crate::roles::Tick {
            key: "room",
            room: 7,
            seq: 123,
            ts: 1_764_000_000_000_000,
            pad: "xx",
        };
        let frame = format!("42[\"bench\",{}]", serde_json::to_string(&tick).unwrap());
        assert_eq!(parse_tick(&frame), Some((7, 123, 1_764_000_000_000_000)));
        // A history room's event carries its position second.
        let frame = format!(
            "42[\"bench\",{},{{\"room\":\"hroom|7\",\"offset\":9,\"epoch\":\"e\"}}]",
            serde_json::to_string(&tick).unwrap()
        );
        assert_eq!(parse_tick(&frame), Some((7, 123, 1_764_000_000_000_000)));
        assert_eq!(parse_tick(r#"42["other",{"room":1}]"#), None);
        assert_eq!(parse_tick(r#"42["bench",{"room":x}]"#), None);
    }

    #[test]
    fn seen_counts_duplicates_and_strangers() {
        let mut s = Seen::new(vec![3, 5], 100);
        assert_eq!(s.mark(3, 0), Some(true));
        assert_eq!(s.mark(3, 0), Some(false));
        assert_eq!(s.mark(5, 99), Some(true));
        assert_eq!(s.mark(4, 1), None);
        assert_eq!(s.mark(3, 100), None);
    }
}
