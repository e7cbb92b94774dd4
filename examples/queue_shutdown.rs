//! Queued broadcasting and graceful shutdown: a Socket.IO server whose
//! clients ask for a burst of queued events (`burst` with a count, acked once
//! every event is queued). On SIGTERM it drains the queue within
//! `SHUTDOWN_MS` (default 10,000) before axum stops, and prints what could
//! not be sent as one JSON line.
//!
//! ```text
//! PORT=3002 cargo run --example queue_shutdown
//! ```

use std::time::Duration;

use broadcast_core::{BroadcastEvent, Broadcaster};
use serde::Serialize;
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::handler::ConnectHandler;

/// One event of a burst, to room `burst`.
#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = "burst", name = "burst_item")]
struct BurstItem {
    n: u64,
}

async fn on_burst(count: u64, ack: AckSender, b: Broadcaster) {
    let mut queued = 0u64;
    let mut error = None;
    for n in 0..count {
        match b.broadcast(BurstItem { n }).queue().await {
            Ok(_) => queued += 1,
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    let _ = ack.send(&serde_json::json!({"queued": queued, "error": error}));
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let port: u16 = std::env::var("PORT")
        .unwrap_or_else(|_| "3002".into())
        .parse()?;
    let within = Duration::from_millis(
        std::env::var("SHUTDOWN_MS")
            .unwrap_or_else(|_| "10000".into())
            .parse()?,
    );
    // Room for a whole burst per socket: past socketioxide's default (128
    // packets) a socket that reads slower than the queue delivers drops
    // events (counted in the report's `socket_errors`).
    let (layer, io) = SocketIo::builder().max_buffer_size(32_768).build_layer();
    let broadcaster = Broadcaster::builder(broadcast_core::transport::SocketIoTransport::new(
        io.clone(),
    ))
    .queue_capacity(20_000)
    .build();
    let b = broadcaster.clone();
    // In a connect middleware, which socketioxide awaits before it
    // acknowledges the CONNECT: a handler registered in the (spawned)
    // connect handler can miss a `burst` the client sends right away.
    let setup = move |s: SocketRef| {
        let b = b.clone();
        async move {
            s.join("burst");
            s.on(
                "burst",
                async move |Data(count): Data<u64>, ack: AckSender| {
                    on_burst(count, ack, b.clone()).await
                },
            );
            Ok::<(), std::convert::Infallible>(())
        }
    };
    io.ns("/", (async |_: SocketRef| {}).with(setup));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("ready");
    let app = axum::Router::new().layer(layer);
    let shutdown = async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return,
            };
        term.recv().await;
        // Sockets are still connected here: drain first, then close them.
        let report = broadcaster.shutdown(within).await;
        println!(
            "{}",
            serde_json::json!({
                "delivered": report.delivered,
                "failed": report.failed_count,
                "undelivered": report.undelivered_count,
                "socket_errors": report.socket_errors,
            })
        );
        io.close().await;
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
