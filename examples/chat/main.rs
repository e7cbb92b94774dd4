//! A small chat server: events declared once with a derive, broadcast from an
//! HTTP handler to the Socket.IO clients in the chat's room.
//!
//! ```text
//! cargo run --example chat
//! # in another shell:
//! curl -X POST localhost:3000/chats/1/messages -H 'content-type: application/json' \
//!      -d '{"author":"alice","text":"hello"}'
//! ```
//! Clients connect to `ws://127.0.0.1:3000/socket.io/` and emit `join_chat`
//! with a chat id to receive `message_posted` events.
//! Environment: `PORT` (default 3000), `HOST` (default 127.0.0.1).

use std::net::SocketAddr;

use axum::extract::{Json, Path};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use broadcast_core::{BroadcastEvent, Broadcaster, broadcast, registry};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef};

/// A message posted in a chat, broadcast to everyone in the chat's room.
#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = "chat|{chat_id}")]
struct MessagePosted {
    chat_id: u64,
    author: String,
    text: String,
}

/// A private notification, delivered to one user's room only.
#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = "user|{user}")]
struct UserNotified {
    user: String,
    text: String,
}

#[derive(Deserialize)]
struct NewMessage {
    author: String,
    text: String,
}

async fn post_message(
    Path(chat_id): Path<u64>,
    headers: HeaderMap,
    Json(body): Json<NewMessage>,
) -> (StatusCode, Json<Value>) {
    if body.text.is_empty() || body.text.chars().count() > 2000 {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "text must be 1..2000 characters"})),
        );
    }
    let mut b = broadcast(MessagePosted {
        chat_id,
        author: body.author,
        text: body.text,
    });
    // Laravel's toOthers(): the posting client does not get its own message back.
    if let Some(sid) = headers.get("x-socket-id").and_then(|v| v.to_str().ok()) {
        b = b.except_socket_id(sid);
    }
    match b.await {
        Ok(outcome) => (
            StatusCode::ACCEPTED,
            Json(json!({
                "event": MessagePosted::NAME,
                "rooms": outcome.targets().map(|t| t.room_names()).unwrap_or_default(),
            })),
        ),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": e.to_string()})),
        ),
    }
}

async fn notify(Path(user): Path<String>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let text = body["text"].as_str().unwrap_or_default().to_string();
    match broadcast(UserNotified { user, text }).await {
        Ok(_) => (
            StatusCode::ACCEPTED,
            Json(json!({"event": UserNotified::NAME})),
        ),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": e.to_string()})),
        ),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    // Every event type in the program, found at link time.
    println!("{}", registry::listing());
    if let Err(problems) = registry::validate() {
        for p in problems {
            eprintln!("registry problem: {p}");
        }
    }

    let (layer, io) = SocketIo::new_layer();
    io.ns("/", async |socket: SocketRef, Data(auth): Data<Value>| {
        if let Some(user) = auth["user"].as_str() {
            socket.join(format!("user|{user}"));
        }
        socket.on(
            "join_chat",
            async |socket: SocketRef, Data(data): Data<Value>, ack: AckSender| {
                let id = data["chat_id"].as_u64().or(data.as_u64());
                match id {
                    Some(id) => {
                        let room = format!("chat|{id}");
                        socket.join(room.clone());
                        let _ = ack.send(&json!({"ok": true, "room": room}));
                    }
                    None => {
                        let _ = ack.send(&json!({"ok": false, "error": "expected a chat id"}));
                    }
                }
            },
        );
    });
    broadcast_core::install(Broadcaster::socketio(io))?;

    let app = axum::Router::new()
        .route(
            "/",
            get(|| async { "broadcast chat demo: see examples/chat.rs" }),
        )
        .route("/events", get(|| async { Json(registry::snapshot()) }))
        .route("/chats/{chat_id}/messages", post(post_message))
        .route("/users/{name}/notify", post(notify))
        .layer(layer);

    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let addr: SocketAddr = format!("{host}:{port}").parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
