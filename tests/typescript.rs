//! The generated TypeScript declarations type-check against the official
//! `socket.io-client` with `tsc --noEmit` (npm packages from the committed
//! lockfile in `tests/ts/`, installed with `npm ci` when missing).

use std::path::{Path, PathBuf};
use std::process::Command;

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

fn ts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ts")
}

fn npm_ready(dir: &Path) -> bool {
    if dir.join("node_modules/.bin/tsc").exists() {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    match Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
    {
        Ok(s) if s.success() => true,
        other => {
            assert!(!ci, "npm ci failed in CI: {other:?}");
            eprintln!("=== SKIPPING typescript check: npm/node not available ({other:?}) ===");
            false
        }
    }
}

#[test]
fn declarations_type_check_with_socket_io_client() {
    let dts = broadcast_core::typescript::declarations();
    assert!(
        dts.contains("\"message_posted\": (payload: MessagePostedPayload) => void;"),
        "{dts}"
    );
    assert!(
        dts.contains("\"untyped\": (payload: unknown) => void;"),
        "{dts}"
    );
    assert!(
        dts.contains("export interface GamesServerToClientEvents"),
        "{dts}"
    );
    assert!(dts.contains("\"join_chat\""), "{dts}");

    let dir = ts_dir();
    std::fs::create_dir_all(dir.join("generated")).unwrap();
    std::fs::write(dir.join("generated/events.d.ts"), &dts).unwrap();
    if !npm_ready(&dir) {
        return;
    }
    let out = Command::new(dir.join("node_modules/.bin/tsc"))
        .args(["-p", "tsconfig.json"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tsc rejected the declarations:\n{}\n{}\n--- events.d.ts ---\n{dts}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tsc_catches_a_wrong_client() {
    // The check above can fail: a client that misuses a payload is rejected.
    let dir = ts_dir();
    std::fs::create_dir_all(dir.join("generated")).unwrap();
    std::fs::write(
        dir.join("generated/events.d.ts"),
        broadcast_core::typescript::declarations(),
    )
    .unwrap();
    if !npm_ready(&dir) {
        return;
    }
    let bad = dir.join("generated/bad.ts");
    std::fs::write(
        &bad,
        "import type { MessagePostedPayload } from './events';\n\
         const p = {} as MessagePostedPayload;\nconst n: boolean = p.text;\nconsole.log(n);\n",
    )
    .unwrap();
    let out = Command::new(dir.join("node_modules/.bin/tsc"))
        .args(["--noEmit", "--strict", "--skipLibCheck"])
        .arg(&bad)
        .current_dir(&dir)
        .output()
        .unwrap();
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
