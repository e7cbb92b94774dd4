//! The generated TypeScript declarations type-check against the official
//! `socket.io-client` with `tsc --noEmit` (npm packages from the committed
//! lockfile in `tests/ts/`, installed with `npm ci` when missing).
//! `tests/typescript_transcript.rs` checks them against what a real server
//! sends.

mod ts_common;

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
