//! The generated TypeScript declarations type-check against the official
//! `socket.io-client` with `tsc --noEmit` (npm packages from the committed
//! lockfile in `tests/ts/`, installed with `npm ci` when missing).
//! `tests/typescript_transcript.rs` checks them against what a real server
//! sends. The recovery helper (`clients/typescript/recovery.ts`) is
//! type-checked with them (`tests/ts/client.ts` uses both), and its shipped
//! compiled `recovery.js` must be what `tsc` makes of it.

mod ts_common;

use std::path::Path;

use broadcast_core::{BroadcastEvent, Room};
use schemars::JsonSchema;
use serde::Serialize;

#[derive(Serialize, JsonSchema, BroadcastEvent)]
#[broadcast(on = ChatRoom { id: self.chat_id })]
struct MessagePosted {
    chat_id: u64,
    text: String,
    tags: Vec<String>,
    edited_at: Option<String>,
}

#[derive(Serialize, JsonSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
enum ChatStatus {
    Open,
    Archived { by: String },
}

#[derive(BroadcastEvent)]
#[broadcast(on = "chat|{chat_id}", as = self.status.clone(), payload = ChatStatus)]
struct ChatStatusChanged {
    chat_id: u64,
    status: ChatStatus,
}
impl Clone for ChatStatus {
    fn clone(&self) -> Self {
        match self {
            ChatStatus::Open => ChatStatus::Open,
            ChatStatus::Archived { by } => ChatStatus::Archived { by: by.clone() },
        }
    }
}

#[derive(Serialize, JsonSchema, BroadcastEvent)]
#[broadcast(name = "score", namespace = "/games", on = "table|{table}")]
struct ScoreChanged {
    table: u32,
    points: i64,
}

/// No schema: typed `unknown` for clients, and it still compiles.
#[derive(Serialize, BroadcastEvent)]
struct Untyped {
    x: u8,
}

#[derive(Room)]
#[room(public)]
struct ChatRoom {
    id: u64,
}

#[test]
fn declarations_type_check_with_socket_io_client() {
    let dts = broadcast_core::typescript::declarations();
    assert!(
        dts.contains(
            "\"message_posted\": (payload: MessagePostedPayload, position?: EventPosition) => void;"
        ),
        "{dts}"
    );
    assert!(
        dts.contains("\"untyped\": (payload: unknown, position?: EventPosition) => void;"),
        "{dts}"
    );
    assert!(
        dts.contains("export interface GamesServerToClientEvents"),
        "{dts}"
    );
    assert!(dts.contains("\"join_chat\""), "{dts}");

    let dir = ts_common::ts_dir();
    std::fs::create_dir_all(dir.join("generated")).unwrap();
    std::fs::write(dir.join("generated/events.d.ts"), &dts).unwrap();
    if !ts_common::npm_ready() {
        return;
    }
    let out = ts_common::tsc(&["-p", "tsconfig.json"]);
    assert!(
        out.status.success(),
        "tsc rejected the declarations:\n{}\n--- events.d.ts ---\n{dts}",
        ts_common::text(&out)
    );
}

/// `clients/typescript/recovery.js` is shipped so that pages load it without
/// a build step; it must never drift from the `recovery.ts` it is compiled
/// from.
#[test]
fn the_shipped_recovery_js_is_compiled_from_recovery_ts() {
    let clients = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/typescript");
    let shipped = std::fs::read_to_string(clients.join("recovery.js")).unwrap();
    assert!(
        shipped.contains("export class RecoveringRooms"),
        "{shipped}"
    );
    assert!(
        !shipped
            .lines()
            .any(|l| l.starts_with("import") || l.contains("require(")),
        "recovery.js must import nothing at run time:\n{shipped}"
    );
    if !ts_common::npm_ready() {
        return;
    }
    let out_dir = ts_common::ts_dir().join("generated/recovery-build");
    let _ = std::fs::remove_dir_all(&out_dir);
    let out_arg = out_dir.to_string_lossy().into_owned();
    let tsconfig = clients.to_string_lossy().into_owned();
    let out = ts_common::tsc(&["-p", &tsconfig, "--outDir", &out_arg]);
    assert!(
        out.status.success(),
        "tsc rejected recovery.ts:\n{}",
        ts_common::text(&out)
    );
    let compiled = std::fs::read_to_string(out_dir.join("recovery.js")).unwrap();
    assert!(
        compiled == shipped,
        "clients/typescript/recovery.js is not what tsc makes of recovery.ts: run \
         `tests/ts/node_modules/.bin/tsc -p clients/typescript` and commit recovery.js"
    );
}

#[test]
fn tsc_catches_a_wrong_client() {
    // The check above can fail: a client that misuses a payload is rejected.
    let dir = ts_common::ts_dir();
    std::fs::create_dir_all(dir.join("generated")).unwrap();
    std::fs::write(
        dir.join("generated/events.d.ts"),
        broadcast_core::typescript::declarations(),
    )
    .unwrap();
    if !ts_common::npm_ready() {
        return;
    }
    let bad = dir.join("generated/bad.ts");
    std::fs::write(
        &bad,
        "import type { MessagePostedPayload } from './events';\n\
         const p = {} as MessagePostedPayload;\nconst n: boolean = p.text;\nconsole.log(n);\n",
    )
    .unwrap();
    let out = ts_common::tsc(&["--noEmit", "--strict", "--skipLibCheck", "generated/bad.ts"]);
    std::fs::remove_file(&bad).unwrap();
    assert!(!out.status.success(), "tsc accepted a wrong client");
    assert!(String::from_utf8_lossy(&out.stdout).contains("TS2322"));
}

#[tokio::test]
async fn events_deliver_what_the_declarations_describe() {
    let fake = broadcast_core::testing::FakeBroadcaster::new();
    let b = fake.broadcaster();
    for status in [
        ChatStatus::Open,
        ChatStatus::Archived { by: "carol".into() },
    ] {
        b.broadcast(ChatStatusChanged { chat_id: 3, status })
            .await
            .unwrap();
    }
    let sent: Vec<_> = fake
        .broadcasts_of::<ChatStatusChanged>()
        .into_iter()
        .map(|r| r.payload)
        .collect();
    assert_eq!(
        sent,
        [
            serde_json::json!({"state": "open"}),
            serde_json::json!({"state": "archived", "by": "carol"})
        ]
    );
    b.broadcast(MessagePosted {
        chat_id: 3,
        text: "t".into(),
        tags: vec![],
        edited_at: None,
    })
    .await
    .unwrap();
    fake.assert_broadcast::<MessagePosted>()
        .to_room(&ChatRoom { id: 3 }.name());
    assert_eq!(ChatRoom { id: 3 }.name(), "chat|3");
}
