//! A background job: broadcasts `message_posted` from a process with no
//! Socket.IO server, through Redis, to the clients of every chat server.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example worker -- --chat 1 --text "from a job"
//! ```

#[path = "chat/events.rs"]
#[allow(dead_code)]
mod events;

use broadcast_core::redis::{RedisConfig, worker};
use events::MessagePosted;

fn usage() -> String {
    "usage: REDIS_URL=redis://... cargo run --example worker -- --chat <id> --text <text> [--author <name>]".into()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let (mut chat, mut text, mut author) = (None, None, "worker".to_string());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--chat" => chat = args.next().and_then(|v| v.parse::<u64>().ok()),
            "--text" => text = args.next(),
            "--author" => author = args.next().ok_or_else(usage)?,
            _ => return Err(usage().into()),
        }
    }
    let (Some(chat_id), Some(text)) = (chat, text) else {
        return Err(usage().into());
    };
    let w = worker(RedisConfig::from_env()?).await?;
    let outcome = w
        .broadcaster
        .broadcast(MessagePosted {
            chat_id,
            author,
            text,
            sent_at: events::now_rfc3339(),
        })
        .await?;
    println!(
        "{}",
        serde_json::json!({
            "event": "message_posted",
            "rooms": outcome.targets().map(|t| t.room_names()).unwrap_or_default(),
        })
    );
    w.connection.shutdown().await?;
    Ok(())
}
