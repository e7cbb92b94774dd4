//! What a real server sends, type-checked against the generated TypeScript
//! declarations, so the declarations cannot drift from the wire.
//!
//! A socketioxide server on loopback with public, authorized, server-only
//! and namespaced rooms answers one client's joins and leaves (accepted,
//! forbidden, invalid) and delivers events of several payload shapes. The
//! client records every ack, every reply event and every delivered event,
//! and the test writes them as a TypeScript file that assigns each value to
//! the type the declarations give it:
//!
//! ```ts
//! export const t1: Parameters<d.ServerToClientEvents["joined"]>[0] = {"room":"lobby"};
//! ```
//!
//! `tsc` (strict, `exactOptionalPropertyTypes`) must accept it. Object
//! literals are excess-property-checked, so a field the server sends and the
//! declarations lack fails, as does a required field the server does not
//! send; the test shows both on broken copies, and on declarations that lost
//! a field of `RoomError`.

mod ts_common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::time::Duration;

use broadcast_core::join::{Authorization, Handshake, JoinContext, Rooms};
use broadcast_core::{BroadcastEvent, Broadcaster, Room};
use broadcast_test_support::server::TestServer;
use broadcast_test_support::sio_client::{Received, SioClient};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;

/// Upper bound for any single wait; never a pass condition.
const T: Duration = Duration::from_secs(10);

// --- Rooms: public, authorized, server-only, two fields, another namespace.

#[derive(Room)]
#[room(public)]
struct LobbyRoom;

#[derive(Room)]
#[room(authorize = can_join_team)]
struct TeamRoom(u64);

/// Server-only (neither `public` nor `authorize`): joined at connect by the
/// authenticator, never by a client.
#[derive(Room)]
struct UserRoom(u64);

#[derive(Room)]
#[room(key = "pair", public)]
struct PairRoom {
    a: u64,
    b: String,
}

#[derive(Room)]
#[room(namespace = "/games", public)]
struct TableRoom(u32);

/// Keeps history: its events carry a position, its joins take `since`.
#[derive(Room)]
#[room(public, history(size = 100, ttl = "1m"))]
struct LogRoom;

struct User {
    id: u64,
    teams: Vec<u64>,
}

async fn authenticate(h: Handshake) -> Result<Option<User>, String> {
    match h.auth().get("token").and_then(Value::as_str) {
        Some("t7") => {
            if h.namespace() == "/" {
                h.join(&UserRoom(7));
            }
            Ok(Some(User {
                id: 7,
                teams: vec![1],
            }))
        }
        Some(_) => Err("invalid token".into()),
        None => Ok(None),
    }
}

async fn can_join_team(ctx: &JoinContext, room: &TeamRoom) -> Authorization {
    if room.0 == 13 {
        return Authorization::invalid("team 13 does not exist");
    }
    Authorization::allow_if(
        ctx.identity::<User>()
            .is_some_and(|u| u.id == 7 && u.teams.contains(&room.0)),
    )
}

// --- Events: nested structs, options, maps, numbers, booleans, a tagged
// enum, a string enum, a plain string, an array, a tuple, another namespace.

#[derive(Serialize, JsonSchema)]
struct Author {
    id: u64,
    name: String,
}

#[derive(Serialize, JsonSchema, BroadcastEvent)]
#[broadcast(on = TeamRoom(self.team_id))]
struct MessagePosted {
    team_id: u64,
    text: String,
    author: Author,
    tags: Vec<String>,
    edited_at: Option<String>,
    reactions: BTreeMap<String, u32>,
    pinned: bool,
    score: f64,
}

#[derive(Clone, Serialize, JsonSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
enum TeamStatus {
    Open,
    Archived { by: String, at: u64 },
}

#[derive(BroadcastEvent)]
#[broadcast(on = TeamRoom(self.team_id), as = self.status.clone(), payload = TeamStatus)]
struct TeamStatusChanged {
    team_id: u64,
    status: TeamStatus,
}

#[derive(Serialize, JsonSchema, BroadcastEvent)]
#[broadcast(on = LobbyRoom)]
struct Typing(String);

#[derive(Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Mood {
    Calm,
    Busy,
}

#[derive(BroadcastEvent)]
#[broadcast(on = LobbyRoom, as = self.0, payload = Mood)]
struct MoodChanged(Mood);

#[derive(BroadcastEvent)]
#[broadcast(on = PairRoom { a: self.a, b: self.b.clone() }, as = self.ids.clone(), payload = Vec<u64>)]
struct PairIds {
    a: u64,
    b: String,
    ids: Vec<u64>,
}

#[derive(BroadcastEvent)]
#[broadcast(on = PairRoom { a: self.a, b: self.b.clone() }, as = (self.a, self.b.clone()), payload = (u64, String))]
struct PairTouched {
    a: u64,
    b: String,
}

#[derive(Serialize, JsonSchema, BroadcastEvent)]
#[broadcast(on = UserRoom(self.user))]
struct Notified {
    user: u64,
    text: String,
    level: Option<u8>,
}

#[derive(Serialize, JsonSchema, BroadcastEvent)]
#[broadcast(on = LogRoom)]
struct Logged {
    line: String,
}

#[derive(Serialize, JsonSchema, BroadcastEvent)]
#[broadcast(name = "score", namespace = "/games", on = TableRoom(self.table))]
struct ScoreChanged {
    table: u32,
    points: i64,
}

// --- The recording.

/// One recorded value and the TypeScript type it must have.
struct Entry {
    /// What it is, for people: `ack of join_team on /`.
    what: String,
    ty: String,
    value: Value,
}

/// `"/games"` -> `"Games"`: the prefix of a namespace's interfaces.
fn prefix(ns: &str) -> &'static str {
    match ns {
        "/" => "",
        "/games" => "Games",
        other => panic!("no interface prefix for namespace {other}"),
    }
}

/// Whether the declarations declare `event` as a join or leave of `ns`.
fn declared_request(ns: &str, event: &str) -> bool {
    broadcast_core::registry::rooms().any(|r| {
        r.namespace == ns
            && (event == broadcast_core::rules::protocol::join_event(r.key)
                || event == broadcast_core::rules::protocol::leave_event(r.key))
    })
}

/// One client and everything the server sent it, in order.
struct Recorder {
    client: SioClient,
    entries: Vec<Entry>,
}

impl Recorder {
    fn record(&mut self, what: String, ty: String, value: Value) {
        self.entries.push(Entry { what, ty, value });
    }

    /// The next event the server sent; recorded with the type the
    /// declarations give the event of that name in that namespace.
    async fn next(&mut self) -> Received {
        let ev = self.client.next_event(T).await.unwrap();
        // A payload, and for a room that keeps history, its position.
        assert!(
            (1..=2).contains(&ev.args.len()),
            "one payload per event, and a position: {ev:?}"
        );
        let event = format!(
            "d.{}ServerToClientEvents[{}]",
            prefix(&ev.ns),
            json!(ev.event)
        );
        let what = format!("event {} on {}", ev.event, ev.ns);
        self.record(what, format!("Parameters<{event}>[0]"), ev.args[0].clone());
        if let Some(position) = ev.args.get(1) {
            let what = format!("position of {} on {}", ev.event, ev.ns);
            self.record(what, format!("Parameters<{event}>[1]"), position.clone());
        }
        ev
    }

    /// Emits `event` with `data` on `ns` and an ack request; records the
    /// ack, then the reply event, which must be `reply` (none if `None`).
    /// Returns the ack and the reply event's payload.
    async fn ask(
        &mut self,
        ns: &str,
        event: &str,
        data: Value,
        reply: Option<&str>,
    ) -> (Value, Value) {
        self.ask_with(ns, event, data, None, reply).await
    }

    /// [`ask`](Self::ask) with join options (`{"since": ..}`) after the data.
    async fn ask_with(
        &mut self,
        ns: &str,
        event: &str,
        data: Value,
        options: Option<Value>,
        reply: Option<&str>,
    ) -> (Value, Value) {
        let mut sent = vec![data.clone()];
        if let Some(options) = options {
            let what = format!("options of {event} on {ns}");
            self.record(what, "d.JoinOptions".into(), options.clone());
            sent.push(options);
        }
        let mut args = self.client.emit_with_ack(ns, event, sent, T).await.unwrap();
        assert_eq!(args.len(), 1, "one ack value: {args:?}");
        let ack = args.remove(0);
        let request = format!("{}ClientToServerEvents[{}]", prefix(ns), json!(event));
        let ack_ty = if declared_request(ns, event) {
            if ack["ok"] == true {
                // What the client sent, too, when the server took it.
                let what = format!("data of {event} on {ns}");
                self.record(what, format!("Parameters<d.{request}>[0]"), data);
            }
            format!("AckReply<d.{request}>")
        } else {
            // Keys the declarations do not have still get a RoomReply.
            "d.RoomReply".to_owned()
        };
        self.record(format!("ack of {event} on {ns}"), ack_ty, ack.clone());
        // The server sends the reply event before the ack.
        let payload = match reply {
            Some(name) => {
                let ev = self.next().await;
                assert_eq!((ev.ns.as_str(), ev.event.as_str()), (ns, name), "{ev:?}");
                ev.args[0].clone()
            }
            None => Value::Null,
        };
        (ack, payload)
    }

    /// Broadcasts `event` and records what the client receives.
    async fn deliver<E: BroadcastEvent + 'static>(
        &mut self,
        b: &Broadcaster,
        event: E,
    ) -> Received {
        b.broadcast(event).await.unwrap();
        self.next().await
    }
}

struct Transcript {
    text: String,
    /// The line of each entry, 1-based.
    lines: Vec<usize>,
}

/// The entries as a TypeScript module: one `export const` per entry and line.
fn transcript(entries: &[Entry]) -> Transcript {
    let mut text = String::from(
        "// What a real server sent one client, recorded by tests/typescript_transcript.rs.\n\
         // Each value has the type the generated declarations give it. Do not edit.\n\
         import type * as d from \"./events\";\n\n\
         // The reply an ack function of a join or leave gets, wherever the\n\
         // function is among the arguments.\n\
         type AckReply<F> = F extends (...args: infer A) => void\n\
         \x20 ? Parameters<Extract<A[number], (reply: never) => void>>[0]\n\
         \x20 : never;\n\n",
    );
    let mut lines = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        lines.push(text.lines().count() + 1);
        let value = serde_json::to_string(&e.value).unwrap();
        writeln!(text, "export const t{i}: {} = {value}; // {}", e.ty, e.what).unwrap();
    }
    Transcript { text, lines }
}

const TSCONFIG: &str = r#"{
  "compilerOptions": {
    "strict": true,
    "exactOptionalPropertyTypes": true,
    "noUncheckedIndexedAccess": true,
    "noEmit": true,
    "target": "ES2020",
    "module": "ES2020",
    "moduleResolution": "node",
    "lib": ["ES2020"],
    "types": []
  },
  "files": ["events.d.ts", "transcript.ts"]
}
"#;

/// Writes a project (declarations, transcript, tsconfig) to
/// `tests/ts/generated/<name>/` and type-checks it.
fn check(name: &str, dts: &str, transcript: &str) -> std::process::Output {
    let rel = format!("generated/{name}");
    let dir = ts_common::ts_dir().join(&rel);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("events.d.ts"), dts).unwrap();
    fs::write(dir.join("transcript.ts"), transcript).unwrap();
    fs::write(dir.join("tsconfig.json"), TSCONFIG).unwrap();
    ts_common::tsc(&["-p", &rel])
}

/// The transcript lines tsc reported an error on.
fn error_lines(out: &std::process::Output) -> BTreeSet<usize> {
    let text = ts_common::text(out);
    text.lines()
        .filter_map(|l| {
            let rest = &l[l.find("transcript.ts(")? + "transcript.ts(".len()..];
            rest[..rest.find(',')?].parse().ok()
        })
        .collect()
}

async fn record() -> Vec<Entry> {
    let (layer, io) = SocketIo::new_layer();
    let rooms = Rooms::builder().authenticate(authenticate).build().unwrap();
    rooms.attach(&io);
    let server = TestServer::serve(layer).await.unwrap();
    let b = Broadcaster::socketio(io.clone());
    let auth = Some(json!({"token": "t7"}));
    let client = SioClient::connect(server.addr, "/", auth.clone())
        .await
        .unwrap();
    client.connect_ns("/games", auth).await.unwrap();
    let mut r = Recorder {
        client,
        entries: Vec::new(),
    };

    // Accepted joins: public, authorized, two fields (object and array).
    let (ack, ev) = r.ask("/", "join_lobby", Value::Null, Some("joined")).await;
    assert_eq!(ack, json!({"ok": true, "room": "lobby"}));
    assert_eq!(ev, json!({"room": "lobby"}));
    let (ack, _) = r.ask("/", "join_team", json!(1), Some("joined")).await;
    assert_eq!(ack, json!({"ok": true, "room": "team|1"}));
    let data = json!({"a": 1, "b": "x"});
    r.ask("/", "join_pair", data, Some("joined")).await;
    r.ask("/", "join_pair", json!([2, "y"]), Some("joined"))
        .await;
    let (ack, _) = r
        .ask("/games", "join_table", json!(5), Some("joined"))
        .await;
    assert_eq!(ack, json!({"ok": true, "room": "table|5"}));

    // Forbidden: not a member; a server-only room.
    let (ack, ev) = r.ask("/", "join_team", json!(2), Some("error")).await;
    let forbidden = json!({"type": "forbidden", "room": "team|2"});
    assert_eq!(ack, json!({"ok": false, "error": forbidden}));
    assert_eq!(ev, forbidden);
    let (_, ev) = r.ask("/", "join_user", json!(8), Some("error")).await;
    assert_eq!(ev, json!({"type": "forbidden", "room": "user|8"}));

    // Validation errors: with a key and a room, a key only (unknown key,
    // bad data, too large, wrong namespace).
    let (ack, ev) = r.ask("/", "join_team", json!(13), Some("error")).await;
    assert_eq!(ack["error"], ev);
    let keys: BTreeSet<&str> = ev.as_object().unwrap().keys().map(|k| &**k).collect();
    assert_eq!(keys, BTreeSet::from(["type", "msg", "key", "room"]), "{ev}");
    assert_eq!(
        (&ev["key"], &ev["room"]),
        (&json!("team"), &json!("team|13"))
    );
    let (_, ev) = r.ask("/", "join_nope", json!(1), Some("error")).await;
    assert_eq!(
        (&ev["type"], &ev["key"]),
        (&json!("validation_error"), &json!("nope"))
    );
    assert!(ev.get("room").is_none(), "{ev}");
    let (_, ev) = r.ask("/", "join_team", json!("x"), Some("error")).await;
    assert_eq!(ev["key"], "team", "{ev}");
    let big = json!([1, "x".repeat(5000)]);
    let (_, ev) = r.ask("/", "join_pair", big, Some("error")).await;
    assert_eq!(ev["key"], "pair", "{ev}");
    let (_, ev) = r.ask("/", "join_table", json!(5), Some("error")).await;
    assert_eq!(ev["key"], "table", "{ev}");
    assert!(ev["msg"].as_str().unwrap().contains("/games"), "{ev}");
    let (_, ev) = r.ask("/", "leave_nope", Value::Null, Some("error")).await;
    assert_eq!(ev["type"], "validation_error");

    // Delivered events.
    let msg = MessagePosted {
        team_id: 1,
        text: "hello".into(),
        author: Author {
            id: 7,
            name: "Ada".into(),
        },
        tags: vec!["a".into(), "b".into()],
        edited_at: None,
        reactions: BTreeMap::from([("+1".to_owned(), 2)]),
        pinned: false,
        score: 0.5,
    };
    let ev = r.deliver(&b, msg).await;
    assert_eq!(ev.event, "message_posted");
    let edited = MessagePosted {
        team_id: 1,
        text: "hello!".into(),
        author: Author {
            id: 7,
            name: "Ada".into(),
        },
        tags: vec![],
        edited_at: Some("2024-01-01T00:00:00Z".into()),
        reactions: BTreeMap::new(),
        pinned: true,
        score: -1.0,
    };
    r.deliver(&b, edited).await;
    for status in [
        TeamStatus::Open,
        TeamStatus::Archived {
            by: "ada".into(),
            at: 1_700_000_000,
        },
    ] {
        let ev = r
            .deliver(&b, TeamStatusChanged { team_id: 1, status })
            .await;
        assert_eq!(ev.event, "team_status_changed");
    }
    let ev = r.deliver(&b, Typing("ada".into())).await;
    assert_eq!(ev.args, [json!("ada")]);
    for (mood, sent) in [(Mood::Calm, "calm"), (Mood::Busy, "busy")] {
        let ev = r.deliver(&b, MoodChanged(mood)).await;
        assert_eq!(ev.args, [json!(sent)]);
    }
    let ids = PairIds {
        a: 1,
        b: "x".into(),
        ids: vec![3, 4],
    };
    let ev = r.deliver(&b, ids).await;
    assert_eq!(ev.args, [json!([3, 4])]);
    let touched = PairTouched {
        a: 2,
        b: "y".into(),
    };
    let ev = r.deliver(&b, touched).await;
    assert_eq!(ev.args, [json!([2, "y"])]);
    let note = Notified {
        user: 7,
        text: "only you".into(),
        level: None,
    };
    let ev = r.deliver(&b, note).await;
    assert_eq!(ev.event, "notified");
    let ev = r
        .deliver(
            &b,
            ScoreChanged {
                table: 5,
                points: -3,
            },
        )
        .await;
    assert_eq!((ev.ns.as_str(), ev.event.as_str()), ("/games", "score"));

    // A room that keeps history: the position in the join's ack and
    // `joined`, and after each event; joins with `since`, recovered (the
    // missed event first) and not (an unknown epoch).
    let (ack, ev) = r.ask("/", "join_log", Value::Null, Some("joined")).await;
    let position = ack["position"].clone();
    assert_eq!(position["offset"], json!(0), "{ack}");
    assert_eq!(ev["position"], position, "{ev}");
    for line in ["one", "two"] {
        let ev = r.deliver(&b, Logged { line: line.into() }).await;
        assert_eq!(ev.args.len(), 2, "{ev:?}");
        assert_eq!(ev.args[1]["room"], json!("log"), "{ev:?}");
    }
    let since = json!({"since": {"offset": 1, "epoch": position["epoch"]}});
    let (ack, _) = r
        .ask_with("/", "join_log", Value::Null, Some(since), None)
        .await;
    assert_eq!(ack["recovered"], json!(true), "{ack}");
    assert_eq!(ack["position"]["offset"], json!(2), "{ack}");
    let replayed = r.next().await;
    assert_eq!(replayed.args[1]["offset"], json!(2), "{replayed:?}");
    assert_eq!(r.next().await.event, "joined");
    let since = json!({"since": {"offset": 1, "epoch": "another"}});
    let (ack, _) = r
        .ask_with("/", "join_log", Value::Null, Some(since), Some("joined"))
        .await;
    assert_eq!(ack["recovered"], json!(false), "{ack}");

    // Leaves: `left` and the ack; a room it is not in gets the ack only.
    let (ack, ev) = r.ask("/", "leave_team", json!(1), Some("left")).await;
    assert_eq!(ack, json!({"ok": true, "room": "team|1"}));
    assert_eq!(ev, json!({"room": "team|1"}));
    let (ack, _) = r.ask("/", "leave_team", json!(1), None).await;
    assert_eq!(ack, json!({"ok": true, "room": "team|1"}));
    r.ask("/games", "leave_table", json!([5]), Some("left"))
        .await;

    // Rate limited: joins in a row until the socket's token bucket is
    // empty (20 tokens by default; the ones above took some).
    let mut limited = None;
    for _ in 0..100 {
        let ack = r
            .client
            .emit_with_ack("/", "join_lobby", vec![Value::Null], T)
            .await
            .unwrap();
        let ty = "AckReply<d.ClientToServerEvents[\"join_lobby\"]>";
        r.record("ack of join_lobby on /".into(), ty.into(), ack[0].clone());
        let ev = r.next().await;
        if ack[0]["ok"] == false {
            limited = Some((ack[0].clone(), ev.args[0].clone()));
            break;
        }
    }
    let (ack, ev) = limited.expect("100 joins in a row were not rate limited");
    assert_eq!(ack["error"], ev);
    assert_eq!(
        (&ev["type"], &ev["key"]),
        (&json!("rate_limited"), &json!("lobby"))
    );
    assert!(ev["msg"].as_str().is_some_and(|m| !m.is_empty()), "{ev}");

    // Nothing was sent that is not in the transcript.
    r.client
        .expect_silence(Duration::from_millis(200))
        .await
        .unwrap();
    r.client.disconnect().await.unwrap();
    drop(server);
    r.entries
}

#[tokio::test]
async fn what_the_server_sends_type_checks_against_the_declarations() {
    let entries = record().await;
    let dts = broadcast_core::typescript::declarations();
    let good = transcript(&entries);
    let kinds: BTreeSet<&str> = entries.iter().map(|e| e.what.as_str()).collect();
    for what in [
        "ack of join_team on /",
        "ack of join_nope on /",
        "event joined on /",
        "event joined on /games",
        "event error on /",
        "event left on /",
        "ack of leave_team on /",
        "event message_posted on /",
        "event score on /games",
        "data of join_pair on /",
        "ack of join_log on /",
        "options of join_log on /",
        "event logged on /",
        "position of logged on /",
        "ack of join_lobby on /",
    ] {
        assert!(kinds.contains(what), "{what} not recorded:\n{}", good.text);
    }
    if !ts_common::npm_ready() {
        return;
    }

    let out = check("transcript", &dts, &good.text);
    assert!(
        out.status.success(),
        "tsc rejected what the server sent:\n{}\n--- transcript.ts ---\n{}\n--- events.d.ts ---\n{dts}",
        ts_common::text(&out),
        good.text
    );

    // A field the declarations lack fails: every value, with one more field
    // (or an object instead of a scalar), is an error on its own line.
    let drifted: Vec<Entry> = entries
        .iter()
        .map(|e| {
            let value = match &e.value {
                Value::Object(o) => {
                    let mut o = o.clone();
                    o.insert("drift".into(), json!(0));
                    Value::Object(o)
                }
                _ => json!({"drift": 0}),
            };
            Entry {
                what: e.what.clone(),
                ty: e.ty.clone(),
                value,
            }
        })
        .collect();
    let broken = transcript(&drifted);
    let out = check("transcript-extra-field", &dts, &broken.text);
    assert!(!out.status.success(), "tsc accepted extra fields");
    let failed = error_lines(&out);
    for (line, e) in broken.lines.iter().zip(&entries) {
        assert!(
            failed.contains(line),
            "an extra field in `{}` (line {line}) passed:\n{}",
            e.what,
            ts_common::text(&out)
        );
    }

    // A missing field fails: `joined` without its room, an error without
    // its message.
    let mut cut = Vec::new();
    let missing: Vec<Entry> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut value = e.value.clone();
            if let Some(o) = value.as_object_mut() {
                let removed = if e.what.starts_with("event joined") {
                    o.remove("room")
                } else if o.get("type") == Some(&json!("validation_error")) {
                    o.remove("msg")
                } else {
                    None
                };
                if removed.is_some() {
                    cut.push(i);
                }
            }
            Entry {
                what: e.what.clone(),
                ty: e.ty.clone(),
                value,
            }
        })
        .collect();
    assert!(cut.len() > 5, "{cut:?}");
    let broken = transcript(&missing);
    let out = check("transcript-missing-field", &dts, &broken.text);
    let failed = error_lines(&out);
    for i in cut {
        assert!(
            failed.contains(&broken.lines[i]),
            "a missing field in `{}` passed:\n{}",
            entries[i].what,
            ts_common::text(&out)
        );
    }

    // The drift of the issue: declarations whose validation error has only
    // `msg` reject what the server sends.
    let full = "; msg: string; key?: string; room?: string }";
    assert!(dts.contains(full), "{dts}");
    let stale = dts.replace(full, "; msg: string }");
    let out = check("transcript-stale-declarations", &stale, &good.text);
    assert!(!out.status.success(), "stale declarations passed");
    let text = ts_common::text(&out);
    assert!(text.contains("TS2353") && text.contains("key"), "{text}");
}
