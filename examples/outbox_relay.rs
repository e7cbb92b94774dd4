//! An outbox relay process: delivers the committed rows of a Postgres
//! outbox through Redis to the clients of every server (the crash test
//! SIGKILLs and restarts it; in production any server or worker runs the
//! relay itself).
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1/test REDIS_URL=redis://127.0.0.1:6379 \
//!     cargo run --example outbox_relay
//! ```
//!
//! Environment: `DATABASE_URL`, `REDIS_URL`, `OUTBOX_TABLE` (default
//! `broadcast_outbox`), `RELAY_BATCH` (default 256). Prints `ready` once it
//! relays; stops on SIGTERM or Ctrl-C after its current round.

use std::time::Duration;

use broadcast_core::outbox::{Outbox, Relay};
use broadcast_core::redis::{RedisConfig, worker};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let database = std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is not set")?;
    let outbox = match std::env::var("OUTBOX_TABLE") {
        Ok(t) => Outbox::new(&t)?,
        Err(_) => Outbox::default(),
    };
    let batch = match std::env::var("RELAY_BATCH") {
        Ok(b) => b
            .parse()
            .map_err(|_| format!("RELAY_BATCH is not a number: {b}"))?,
        Err(_) => 256,
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&database)
        .await?;
    let w = worker(RedisConfig::from_env()?).await?;
    let relay = Relay::builder(pool, w.broadcaster.clone())
        .outbox(outbox)
        .batch(batch)
        .poll_interval(Duration::from_millis(200))
        .spawn();
    println!("ready");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let stats = relay.stats();
    relay.shutdown().await;
    println!(
        "{}",
        serde_json::json!({"delivered": stats.delivered, "duplicates": stats.duplicates, "parked": stats.parked})
    );
    w.connection.shutdown().await?;
    Ok(())
}
