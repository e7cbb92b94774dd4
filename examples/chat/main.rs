//! The chat demo: an axum + socketioxide server showing every feature of
//! broadcast. In-memory by default; with `REDIS_URL` set it joins the other
//! chat servers (and workers) sharing that Redis.
//!
//! ```text
//! cargo run --example chat                  # http://127.0.0.1:3000
//! PORT=3001 REDIS_URL=redis://127.0.0.1:6379 cargo run --example chat
//! curl -X POST localhost:3000/chats/1/messages \
//!      -H 'content-type: application/json' -d '{"author":"alice","text":"hello"}'
//! ```
//!
//! Environment: `PORT` (default 3000), `HOST` (default 127.0.0.1),
//! `REDIS_URL` (optional), `DATABASE_URL` (optional: messages are stored in
//! Postgres and broadcast after commit through the outbox; the tables are
//! created at startup). See README.md for the Socket.IO protocol.
//!
//! On SIGTERM or Ctrl-C it stops accepting, delivers queued broadcasts
//! within 10 s (reporting any it could not send), stops its outbox relay,
//! then exits.
//!
//! A demo: the "login" is a name, not a secret, and the `author` of a posted
//! message is not checked against who sent it. A real app authenticates a
//! token at connect (the `Rooms` authenticator, in `app.rs`) and on every
//! HTTP request, and takes the author from that session (see `app.rs`).
//! Posts must be `Content-Type: application/json` (else `415`); a broadcast
//! that fails answers `503` with `{"error", "delivered_locally"}`.

mod app;
mod events;
mod store;

use std::net::SocketAddr;

use broadcast_core::registry;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,socketioxide=warn".into()),
        )
        .init();

    // Every event and room type in the program, found at link time.
    println!("{}", registry::listing());
    if let Err(problems) = registry::validate() {
        for p in problems {
            eprintln!("registry problem: {p}");
        }
        return Err("the event registry has conflicts".into());
    }

    let redis_url = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty());
    let database_url = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty());
    let app = app::build(redis_url.as_deref(), database_url.as_deref()).await?;
    broadcast_core::install(app.broadcaster.clone())?;

    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .map_err(|_| format!("PORT is not a port number: {p}"))?,
        Err(_) => 3000,
    };
    let addr: SocketAddr = format!("{host}:{port}").parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let mode = match &redis_url {
        Some(_) => "Redis fan-out",
        None => "in-memory",
    };
    let addr = listener.local_addr()?;
    match &database_url {
        None => println!("chat listening on http://{addr} ({mode})"),
        Some(_) => println!(
            "chat listening on http://{addr} ({mode}; messages in Postgres, broadcast through the outbox)"
        ),
    }
    let (broadcaster, store) = (app.broadcaster.clone(), app.store.clone());
    axum::serve(listener, app.router)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            // Sockets are still connected: deliver what is queued first.
            let report = broadcaster
                .shutdown(std::time::Duration::from_secs(10))
                .await;
            if report.is_complete() {
                tracing::info!(delivered = report.delivered, "broadcast queue drained");
            } else {
                tracing::error!(?report, "some queued broadcasts were not delivered");
            }
            store.shutdown().await;
        })
        .await?;
    Ok(())
}

/// SIGTERM (how process managers stop a server) or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
