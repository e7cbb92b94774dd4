//! A hostile client: over 10,000 join/leave attempts with random, malformed
//! and oversized data and random room keys. The server must answer every
//! one with an ack (`ok`, or a `validation_error` / `forbidden` error),
//! stay up, and leave the socket in no room it may not be in.
#![deny(warnings)]
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use broadcast_core::join::{Handshake, JoinContext, Rooms};
use broadcast_core::{BroadcastEvent, Broadcaster, Room};
use broadcast_test_support::sio_client::SioClient;
use futures_util::future::join_all;
use serde::Serialize;
use serde_json::{Map, Value, json};
use socketioxide::SocketIo;

/// Upper bound for one ack; never a pass condition.
const T: Duration = Duration::from_secs(20);
const ATTEMPTS: usize = 12_000;
/// Attempts in flight at once.
const BATCH: usize = 200;
const ME: u64 = 5;

struct User(u64);

#[derive(Room)]
#[room(public)]
struct PubRoom(u32);

#[derive(Room)]
#[room(authorize = is_owner)]
struct SecretRoom(u64);

#[derive(Room)]
#[room(public)]
struct PairRoom {
    a: i64,
    b: String,
}

#[derive(Room)]
#[room(public)]
struct LobbyRoom;

#[derive(Room)]
#[room(namespace = "/x", authorize = is_owner_x)]
struct VaultRoom {
    owner: u64,
}

async fn is_owner(ctx: &JoinContext, room: &SecretRoom) -> bool {
    ctx.identity::<User>().is_some_and(|u| u.0 == room.0)
}

async fn is_owner_x(ctx: &JoinContext, room: &VaultRoom) -> bool {
    ctx.identity::<User>().is_some_and(|u| u.0 == room.owner)
}

async fn authenticate(h: Handshake) -> Result<Option<User>, String> {
    Ok(h.auth()["user"].as_u64().map(User))
}

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = LobbyRoom)]
struct Ping {
    n: u32,
}

/// The rooms user 5 may be in.
fn allowed(ns: &str, room: &str) -> bool {
    let key = room.split('|').next().unwrap_or_default();
    match ns {
        "/" => matches!(key, "pub" | "pair" | "lobby") || room == format!("secret|{ME}"),
        "/x" => room == format!("vault|{ME}"),
        _ => false,
    }
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    fn string(&mut self, max: u64) -> String {
        const PIECES: &[&str] = &[
            "a", "Z", "0", "9", "|", "||", " ", "\n", "\t", "\u{0}", "\u{7f}", "é", "日本", "🎉",
            "\"", "\\", "{}", "[", "%", "\u{202e}", "chat", "secret", "5", "-", "_",
        ];
        let len = self.below(max + 1);
        (0..len).map(|_| self.pick(PIECES)).collect()
    }
    fn number(&mut self) -> Value {
        match self.below(8) {
            0 => json!(ME),
            1 => json!(-1),
            2 => json!(u64::MAX),
            3 => json!(i64::MIN),
            4 => json!(1.5),
            5 => json!(1e300),
            6 => json!(self.below(1000)),
            _ => json!(self.below(u32::MAX as u64 * 4)),
        }
    }
    fn value(&mut self, depth: u32) -> Value {
        let leaf = depth > 3;
        match self.below(if leaf { 5 } else { 8 }) {
            0 => Value::Null,
            1 => json!(self.below(2) == 0),
            2 | 3 => self.number(),
            4 => json!(self.string(12)),
            5 => Value::Array((0..self.below(4)).map(|_| self.value(depth + 1)).collect()),
            6 => {
                const KEYS: &[&str] = &[
                    "a",
                    "b",
                    "owner",
                    "0",
                    "",
                    "__proto__",
                    "a|b",
                    "user_id",
                    "A",
                ];
                let mut m = Map::new();
                for _ in 0..self.below(4) {
                    m.insert(self.pick(KEYS).to_owned(), self.value(depth + 1));
                }
                Value::Object(m)
            }
            _ => json!([self.number(), self.string(6)]),
        }
    }
    /// socketioxide reads event names as borrowed strings, so a name JSON
    /// must escape (`"`, `\\`, control characters) is a packet it cannot
    /// parse: it closes the connection before any handler runs. Random keys
    /// avoid those; one such name is sent at the end of the test.
    fn key(&mut self, max: u64) -> String {
        self.string(max)
            .chars()
            .filter(|c| !(u32::from(*c) < 0x20 || matches!(c, '"' | '\\')))
            .collect()
    }
    fn event(&mut self) -> String {
        const KEYS: &[&str] = &[
            "pub",
            "secret",
            "pair",
            "lobby",
            "vault",
            "chat",
            "",
            "PUB",
            "pub ",
            "secret|5",
            "join_pub",
            "🎉",
            "__proto__",
            "constructor",
            "pub\u{7f}",
            "lobby.",
            "../secret",
        ];
        let verb = if self.below(4) == 0 {
            "leave_"
        } else {
            "join_"
        };
        let key = match self.below(10) {
            0 => self.key(40),
            1 => "k".repeat(self.below(3000) as usize),
            2 | 3 => self.pick(KEYS).to_owned(),
            _ => self
                .pick(&["pub", "secret", "pair", "lobby", "vault"])
                .to_owned(),
        };
        format!("{verb}{key}")
    }
    fn args(&mut self) -> Vec<Value> {
        match self.below(20) {
            0 => Vec::new(),
            1 => vec![self.value(0), self.value(0)],
            // Oversized: 4 KiB to 40 KiB of data.
            2 => vec![json!("x".repeat(4096 + self.below(36 * 1024) as usize))],
            3 => vec![json!([ME, "y".repeat(5000)])],
            // Deeper than serde_json's recursion limit.
            4 => {
                let mut v = json!(ME);
                for _ in 0..200 {
                    v = json!([v]);
                }
                vec![v]
            }
            5 => vec![json!(ME)],
            6 => vec![json!({"owner": ME})],
            7 => vec![json!([self.below(100), self.string(8)])],
            // Someone else's secret room or vault.
            8 | 9 => vec![json!(self.below(10))],
            10 => vec![json!({"owner": self.below(10)})],
            _ => vec![self.value(0)],
        }
    }
}

/// The `leave_<key>` event and data for a room the attacker is in.
fn leave_for<'a>(ns: &'a str, room: &str) -> (&'a str, String, Vec<Value>) {
    let mut parts = room.split('|');
    let key = parts.next().unwrap_or_default();
    let ids: Vec<&str> = parts.collect();
    let data = match (key, ids.as_slice()) {
        ("pair", [a, b]) => json!([a.parse::<i64>().unwrap(), b]),
        ("vault", [owner]) => json!({"owner": owner.parse::<u64>().unwrap()}),
        (_, [id]) => json!(id.parse::<u64>().unwrap()),
        _ => Value::Null,
    };
    (ns, format!("leave_{key}"), vec![data])
}

async fn serve() -> (SocketAddr, SocketIo) {
    let (layer, io) = SocketIo::builder().max_payload(1_000_000).build_layer();
    // The abuse limits would answer most of this flood `rate_limited`
    // (tests/rooms_abuse.rs covers them); here every request must reach the
    // data checks and the authorizers.
    let rooms = Rooms::builder()
        .join_rate(u32::MAX, f64::INFINITY)
        .max_joins_in_flight(usize::MAX)
        .authenticate(authenticate)
        .build()
        .unwrap();
    let attached = rooms.attach(&io);
    assert_eq!(attached.created, ["/", "/x"]);
    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (addr, io)
}

#[derive(Default, Debug)]
struct Tally {
    ok: usize,
    by_type: BTreeMap<String, usize>,
    /// Validation errors by what they say.
    by_reason: BTreeMap<&'static str, usize>,
    problems: Vec<String>,
}

impl Tally {
    fn check(&mut self, ns: &str, event: &str, args: &[Value], ack: Result<Vec<Value>, String>) {
        let shown = || {
            let a = Value::from(args.to_vec()).to_string();
            let a: String = a.chars().take(120).collect();
            format!("{ns} {} {a}", event.chars().take(60).collect::<String>())
        };
        let ack = match ack {
            Ok(ack) => ack,
            Err(e) => {
                return self
                    .problems
                    .push(format!("{}: not answered: {e}", shown()));
            }
        };
        let [reply] = ack.as_slice() else {
            return self.problems.push(format!("{}: ack {ack:?}", shown()));
        };
        if reply["ok"] == true {
            match reply["room"].as_str() {
                // Leaving is always allowed, also for rooms one could not join.
                Some(_) if event.starts_with("leave_") => self.ok += 1,
                Some(room) if allowed(ns, room) => self.ok += 1,
                _ => self
                    .problems
                    .push(format!("{}: joined a forbidden room: {reply}", shown())),
            }
            return;
        }
        let error = &reply["error"];
        let kind = error["type"].as_str().unwrap_or_default().to_owned();
        let clear = match kind.as_str() {
            "validation_error" => error["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "forbidden" => error["room"].as_str().is_some_and(|r| !allowed(ns, r)),
            _ => false,
        };
        if clear && reply["ok"] == false {
            if let Some(msg) = error["msg"].as_str() {
                *self.by_reason.entry(reason(msg)).or_default() += 1;
            }
            *self.by_type.entry(kind).or_default() += 1;
        } else {
            self.problems
                .push(format!("{}: unclear answer {reply}", shown()));
        }
    }
}

fn reason(msg: &str) -> &'static str {
    const REASONS: &[(&str, &str)] = &[
        ("unknown room key", "unknown room key"),
        ("is in namespace", "room in another namespace"),
        ("-byte limit", "too large"),
        ("rooms", "room limit"),
        ("could not be decoded", "not decodable"),
        (
            "takes no identifier",
            "identifier for a room without fields",
        ),
        ("missing field", "missing field"),
        ("unknown field", "unknown field"),
        ("value(s)", "wrong number of values"),
        ("cannot contain `|`", "`|` in an identifier"),
        ("cannot be empty", "empty identifier"),
        ("control character", "control character in an identifier"),
        (": field `", "field does not parse"),
        ("expects", "wrong shape"),
        ("bad join options", "bad join options"),
    ];
    REASONS
        .iter()
        .find(|(needle, _)| msg.contains(needle))
        .map_or("other", |(_, reason)| reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_client_gets_answers_and_no_forbidden_room() {
    let (addr, io) = serve().await;
    let auth = Some(json!({ "user": ME }));
    let mut attacker = SioClient::connect(addr, "/", auth.clone()).await.unwrap();
    let sid = attacker.sid("/").unwrap();
    let sid_x = attacker.connect_ns("/x", auth).await.unwrap();

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut tally = Tally::default();
    let mut sent = 0;
    while sent < ATTEMPTS {
        let batch: Vec<(&str, String, Vec<Value>)> = (0..BATCH)
            .map(|_| {
                let ns = if rng.below(8) == 0 { "/x" } else { "/" };
                (ns, rng.event(), rng.args())
            })
            .collect();
        let acks = join_all(batch.iter().map(|(ns, event, args)| {
            let attacker = &attacker;
            async move {
                attacker
                    .emit_with_ack(ns, event, args.clone(), T)
                    .await
                    .map_err(|e| e.to_string())
            }
        }))
        .await;
        for ((ns, event, args), ack) in batch.iter().zip(acks) {
            tally.check(ns, event, args, ack);
        }
        sent += BATCH;
        // Leave about half the rooms joined so far, so the socket is not
        // stuck at its room limit and joins keep reaching authorization.
        let rooms: Vec<(&str, String)> = ["/", "/x"]
            .into_iter()
            .flat_map(|ns| {
                let sid = if ns == "/" { &sid } else { &sid_x };
                let socket = io.of(ns).unwrap().get_socket(sid.parse().unwrap());
                let socket = socket.unwrap();
                socket.rooms().into_iter().map(move |r| (ns, r.to_string()))
            })
            .filter(|_| rng.below(2) == 0)
            .collect();
        let leaves: Vec<(&str, String, Vec<Value>)> =
            rooms.iter().map(|(ns, room)| leave_for(ns, room)).collect();
        let acks = join_all(leaves.iter().map(|(ns, event, args)| {
            let attacker = &attacker;
            async move {
                attacker
                    .emit_with_ack(ns, event, args.clone(), T)
                    .await
                    .map_err(|e| e.to_string())
            }
        }))
        .await;
        for ((ns, event, args), ack) in leaves.iter().zip(acks) {
            tally.check(ns, event, args, ack);
            sent += 1;
        }
        // Drain the `joined`/`left`/`error` events as we go.
        while attacker.try_next_event().is_some() {}
    }
    println!(
        "{sent} attempts: {} ok, errors by type {:?}, {} problems\nvalidation errors: {:#?}",
        tally.ok,
        tally.by_type,
        tally.problems.len(),
        tally.by_reason
    );
    assert!(
        tally.problems.is_empty(),
        "{:#?}",
        &tally.problems[..tally.problems.len().min(20)]
    );
    assert_eq!(tally.ok + tally.by_type.values().sum::<usize>(), sent);
    // The barrage exercised every kind of answer.
    assert!(tally.ok > 100, "{tally:?}");
    assert!(tally.by_type["validation_error"] > 1000, "{tally:?}");
    assert!(tally.by_type["forbidden"] > 50, "{tally:?}");
    assert!(!tally.by_reason.contains_key("other"), "{tally:?}");

    // socketioxide's own view: only allowed rooms, within the limit.
    for (ns, sid) in [("/", &sid), ("/x", &sid_x)] {
        let socket = io.of(ns).unwrap().get_socket(sid.parse().unwrap()).unwrap();
        let rooms = socket.rooms();
        println!("{ns}: the attacker is in {} rooms", rooms.len());
        // The limit does not count the socket's own id room (every socket is
        // in it, as in Socket.IO's JavaScript server).
        assert!(rooms.len() <= 128 + 1, "{ns}: {} rooms", rooms.len());
        let own = sid.as_str();
        let bad: Vec<_> = rooms
            .iter()
            .filter(|r| r.as_ref() != own && !allowed(ns, r))
            .collect();
        assert!(bad.is_empty(), "{ns}: forbidden rooms {bad:?}");
    }
    assert!(
        io.of("/")
            .unwrap()
            .within(format!("secret|{ME}"))
            .sockets()
            .len()
            <= 1
    );
    let all_rooms = io.of("/").unwrap().rooms().await.unwrap();
    let socket_ids: Vec<String> = io
        .of("/")
        .unwrap()
        .sockets()
        .iter()
        .map(|s| s.id.to_string())
        .collect();
    let foreign: Vec<_> = all_rooms
        .iter()
        .filter(|r| !allowed("/", r) && !socket_ids.iter().any(|id| id == r.as_ref()))
        .collect();
    assert!(foreign.is_empty(), "{foreign:?}");

    // Still up and still serving: a new client joins and receives events,
    // and so does the attacker's connection.
    let mut fresh = SioClient::connect(addr, "/", None).await.unwrap();
    let ack = fresh
        .emit_with_ack("/", "join_lobby", vec![], T)
        .await
        .unwrap();
    assert_eq!(ack, [json!({"ok": true, "room": "lobby"})]);
    let ack = attacker
        .emit_with_ack("/", "join_lobby", vec![], T)
        .await
        .unwrap();
    assert_eq!(ack, [json!({"ok": true, "room": "lobby"})]);
    while attacker.try_next_event().is_some() {}
    Broadcaster::socketio(io.clone())
        .broadcast(Ping { n: 1 })
        .await
        .unwrap();
    assert_eq!(
        fresh.next_event_named("ping", T).await.unwrap().args,
        [json!({"n": 1})]
    );
    assert_eq!(
        attacker.next_event_named("ping", T).await.unwrap().args,
        [json!({"n": 1})]
    );

    // An event name socketioxide cannot parse costs the sender its
    // connection, and nobody else anything.
    let rude = SioClient::connect(addr, "/", None).await.unwrap();
    let refused = rude
        .emit_with_ack("/", "join_\"pub\\", vec![json!(1)], T)
        .await;
    assert!(refused.is_err() && rude.is_closed(), "{refused:?}");
    let ack = fresh
        .emit_with_ack("/", "leave_lobby", vec![], T)
        .await
        .unwrap();
    assert_eq!(ack, [json!({"ok": true, "room": "lobby"})]);
}
