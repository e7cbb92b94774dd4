//! The chat server, as a router: used by `main.rs` and by the tests.
//!
//! A demo, not an authentication scheme: the socket "login" is a user name
//! taken on trust, and the `author` of a `POST /chats/{id}/messages` body is
//! checked only for its shape and the chat's member list, not against who
//! sent the request. A real app checks a token in two places: at connect,
//! in the [`Rooms`] authenticator (`authenticate` below: a signed token in
//! `h.auth()` or a session cookie), and on every HTTP request, in an axum
//! extractor or middleware that turns the session into the author, instead
//! of reading the author from the body.

use std::error::Error;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use broadcast_core::join::{Handshake, JoinContext, Rooms};
use broadcast_core::presence::Presence;
use broadcast_core::{BroadcastEvent, Broadcaster, broadcast, registry};
use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use crate::events::{
    ChatRoom, MessagePosted, User, UserNotified, UserRoom, chat, may_access, now_rfc3339,
    valid_user_name,
};
use crate::store::{MAX_LIMIT, Store, StoredMessage};

/// A built chat server.
pub struct App {
    pub router: axum::Router,
    pub broadcaster: Broadcaster,
    pub store: Arc<Store>,
}

/// Builds the server: in-memory when `redis_url` is `None`, else joined to
/// the other servers through Redis; messages in Postgres (broadcast through
/// the outbox, after commit) when `database_url` is set, else in memory.
pub async fn build(
    redis_url: Option<&str>,
    database_url: Option<&str>,
) -> Result<App, Box<dyn Error>> {
    let (router, broadcaster) = build_socketio(redis_url).await?;
    let store = Arc::new(match database_url {
        Some(url) => Store::postgres(url, broadcaster.clone()).await?,
        None => Store::memory(),
    });
    Ok(App {
        router: router.with_state(store.clone()),
        broadcaster,
        store,
    })
}

/// The routes under the Socket.IO layer, and the broadcaster.
async fn build_socketio(
    redis_url: Option<&str>,
) -> Result<(axum::Router<Arc<Store>>, Broadcaster), Box<dyn Error>> {
    // The chat's login errors say what to fix, and hold nothing secret.
    let rooms = Rooms::builder()
        .authenticate(authenticate)
        .expose_auth_errors(true)
        // In chat rooms (`#[room(presence)]`) a user is their name, however
        // many tabs they have open.
        .presence_member(|ctx: &JoinContext| ctx.identity::<User>().map(|u| json!({ "id": u.0 })))
        .build()?;
    match redis_url {
        None => {
            let (layer, io) = SocketIo::new_layer();
            rooms.ns(&io, "/", on_connect);
            rooms.attach(&io);
            let presence = broadcast_core::presence::of(&io);
            let broadcaster = Broadcaster::socketio(io);
            Ok((routes(presence).layer(layer), broadcaster))
        }
        Some(url) => {
            let config = broadcast_core::redis::RedisConfig::from_url(url)?;
            let parts = broadcast_core::redis::server(config).await?;
            rooms.ns(&parts.io, "/", on_connect).await?;
            rooms.attach(&parts.io).await?;
            Ok((
                routes(parts.presence.clone()).layer(parts.layer),
                parts.broadcaster,
            ))
        }
    }
}

/// Connect-time authentication, before the connect is acknowledged:
/// `auth: {"user": "<name>"}` with a name of 1-32 letters or digits, else a
/// `connect_error`. It gives the socket the identity the room authorizers
/// read, and puts it in its own `user|<name>` room, so a notification sent
/// right after connecting arrives.
///
/// A demo: the name is taken on trust. A real app checks a token here (a
/// session cookie from `h.header("cookie")`, a signed token in `h.auth()`).
async fn authenticate(h: Handshake) -> Result<Option<User>, String> {
    let name = h.auth()["user"].as_str().unwrap_or_default();
    if !valid_user_name(name) {
        return Err("auth.user must be a name of 1 to 32 letters or digits".into());
    }
    h.join(&UserRoom {
        name: name.to_string(),
    });
    Ok(Some(User(name.to_string())))
}

async fn on_connect<A: Adapter>(socket: SocketRef<A>) {
    tracing::info!(sid = %socket.id, "connected");
}

fn routes(presence: Presence) -> axum::Router<Arc<Store>> {
    axum::Router::new()
        .route("/", get(|| async { Html(include_str!("page.html")) }))
        .route(
            "/socket.io.min.js",
            get(|| async { javascript(SOCKET_IO_CLIENT) }),
        )
        .route(
            "/recovery.js",
            get(|| async { javascript(RECOVERY_HELPER) }),
        )
        .route("/events", get(|| async { Json(registry::snapshot()) }))
        .route(
            "/events.d.ts",
            get(|| async {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/typescript; charset=utf-8",
                    )],
                    broadcast_core::typescript::declarations(),
                )
            }),
        )
        .route("/chats", get(list_chats))
        .route(
            "/chats/{chat_id}/messages",
            post(post_message).get(list_messages),
        )
        .route("/users/{name}/notify", post(notify))
        .route(
            "/chats/{chat_id}/members",
            get(move |path: Path<String>| members(presence.clone(), path)),
        )
}

/// `GET /chats/{id}/members`: who is in the chat now, on every server,
/// sorted by name: `{"members": [{"id": "alice"}, ...]}`.
async fn members(presence: Presence, Path(chat_id): Path<String>) -> Response {
    let Some(chat) = chat_id.parse::<u64>().ok().and_then(chat) else {
        return error(StatusCode::NOT_FOUND, format!("no chat `{chat_id}`"));
    };
    match presence.members_of(&ChatRoom { chat_id: chat.id }).await {
        Ok(members) => Json(json!({ "members": members })).into_response(),
        Err(e) => {
            tracing::error!("{e}");
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}

/// socket.io-client 4.8.1's browser bundle (`dist/socket.io.min.js` of the
/// npm package `tests/ts` pins), vendored so the page loads nothing from
/// elsewhere. MIT License, (c) 2014-2024 Guillermo Rauch; the notice is at
/// the top of the file.
const SOCKET_IO_CLIENT: &str = include_str!("socket.io.min.js");

/// broadcast's recovery helper, compiled from `clients/typescript/recovery.ts`.
const RECOVERY_HELPER: &str = include_str!("../../clients/typescript/recovery.js");

fn javascript(source: &'static str) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        source,
    )
}

async fn list_chats() -> Json<Value> {
    Json(json!(
        crate::events::CHATS
            .iter()
            .map(|c| json!({"id": c.id, "name": c.name, "public": c.members.is_none()}))
            .collect::<Vec<_>>()
    ))
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

#[derive(Deserialize)]
struct NewMessage {
    author: String,
    text: String,
}

/// Whether the body is declared JSON. Anything else gets `415`, so that a
/// form or a text body posted by a page of another origin is refused
/// rather than parsed.
fn declared_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

fn not_json() -> Response {
    error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "the body must be JSON, sent as `Content-Type: application/json`",
    )
}

#[derive(Deserialize)]
struct Page {
    limit: Option<i64>,
}

/// `GET /chats/{id}/messages?limit=N`: the last N (default 50, at most 500)
/// messages of a public chat, newest last. Private chats' histories are not
/// served: the demo has no session to check membership against.
async fn list_messages(
    State(store): State<Arc<Store>>,
    Path(chat_id): Path<String>,
    Query(page): Query<Page>,
) -> Response {
    let Some(chat) = chat_id.parse::<u64>().ok().and_then(chat) else {
        return error(StatusCode::NOT_FOUND, format!("no chat `{chat_id}`"));
    };
    if chat.members.is_some() {
        return error(
            StatusCode::FORBIDDEN,
            format!("chat {} is private", chat.id),
        );
    }
    let limit = page.limit.unwrap_or(50);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("limit must be 1 to {MAX_LIMIT}"),
        );
    }
    match store.recent(chat.id, limit).await {
        Ok(messages) => Json(messages).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reading messages failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "reading messages failed")
        }
    }
}

async fn post_message(
    State(store): State<Arc<Store>>,
    Path(chat_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(chat_id) = chat_id.parse::<u64>() else {
        return error(StatusCode::NOT_FOUND, format!("no chat `{chat_id}`"));
    };
    if !declared_json(&headers) {
        return not_json();
    }
    let msg: NewMessage = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
    };
    let Some(chat) = chat(chat_id) else {
        return error(StatusCode::NOT_FOUND, format!("there is no chat {chat_id}"));
    };
    if !valid_user_name(&msg.author) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "author must be a name of 1 to 32 letters or digits",
        );
    }
    if !may_access(chat, &msg.author) {
        return error(
            StatusCode::FORBIDDEN,
            format!("{} may not post in chat {chat_id}", msg.author),
        );
    }
    let len = msg.text.chars().count();
    if !(1..=2000).contains(&len) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "text must be 1 to 2000 characters",
        );
    }
    let sent_at = now_rfc3339();
    let stored = StoredMessage {
        chat_id: chat_id as i64,
        author: msg.author.clone(),
        text: msg.text.clone(),
        sent_at: sent_at.clone(),
    };
    let mut b = broadcast(MessagePosted {
        chat_id,
        author: msg.author,
        text: msg.text,
        sent_at,
    });
    // Laravel's toOthers(): the sending socket does not get its own message.
    if let Some(sid) = headers.get("x-socket-id") {
        match sid.to_str() {
            Ok(sid) => b = b.except_socket_id(sid),
            Err(_) => return error(StatusCode::BAD_REQUEST, "X-Socket-ID is not text"),
        }
    }
    // Stored, and broadcast: at once in memory, after the commit with
    // Postgres (through the outbox).
    match store.post(stored, b).await {
        Ok(rooms) => accepted(MessagePosted::NAME, rooms),
        Err(e) => match e.downcast::<broadcast_core::BroadcastError>() {
            Ok(e) => delivered(MessagePosted::NAME, Err(*e)),
            Err(e) => match e.downcast::<broadcast_core::outbox::OutboxError>() {
                Ok(e) => match *e {
                    broadcast_core::outbox::OutboxError::Broadcast(e) => {
                        delivered(MessagePosted::NAME, Err(e))
                    }
                    other => unavailable(&other.to_string(), false),
                },
                Err(e) => unavailable(&e.to_string(), false),
            },
        },
    }
}

fn accepted(event: &str, rooms: Vec<String>) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({ "event": event, "rooms": rooms })),
    )
        .into_response()
}

fn unavailable(msg: &str, delivered_locally: bool) -> Response {
    tracing::error!(error = msg, "post failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": msg, "delivered_locally": delivered_locally })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct Notification {
    text: String,
}

async fn notify(
    State(_): State<Arc<Store>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !valid_user_name(&name) {
        return error(StatusCode::NOT_FOUND, format!("no user `{name}`"));
    }
    if !declared_json(&headers) {
        return not_json();
    }
    let n: Notification = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
    };
    let len = n.text.chars().count();
    if !(1..=2000).contains(&len) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "text must be 1 to 2000 characters",
        );
    }
    delivered(
        UserNotified::NAME,
        broadcast(UserNotified {
            user: name,
            text: n.text,
        })
        .await,
    )
}

fn delivered(
    event: &str,
    result: Result<broadcast_core::Outcome, broadcast_core::BroadcastError>,
) -> Response {
    match result {
        Ok(outcome) => (
            StatusCode::ACCEPTED,
            Json(json!({
                "event": event,
                "rooms": outcome.targets().map(|t| t.room_names()).unwrap_or_default(),
            })),
        )
            .into_response(),
        Err(broadcast_core::BroadcastError::InvalidExceptSocket { .. }) => {
            error(StatusCode::BAD_REQUEST, "X-Socket-ID is not a socket id")
        }
        // The body tells the caller whether this server's sockets already
        // have the event: if so, retrying the request would show it twice
        // to them (a real app retries with `RedisSocketIo::remote`, which
        // publishes to the other servers only).
        Err(e) => {
            tracing::error!(error = %e, "broadcast failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "error": e.to_string(),
                    "delivered_locally": e.delivered_locally(),
                })),
            )
                .into_response()
        }
    }
}
