//! Where posted messages live: Postgres when `DATABASE_URL` is set (and
//! their broadcast goes through the transactional outbox), else a bounded
//! list in memory.

use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::sync::Mutex;

use broadcast_core::outbox::{Outbox, Relay, RelayHandle, Written};
use broadcast_core::{Broadcast, Broadcaster, Outcome};
use serde::Serialize;
use sqlx::PgPool;

use crate::events::MessagePosted;

/// Messages kept per chat in memory.
const KEPT_IN_MEMORY: usize = 500;
/// Largest `limit` of `GET /chats/{id}/messages`.
pub const MAX_LIMIT: i64 = 500;

/// One stored message, as `GET /chats/{id}/messages` returns it.
#[derive(Debug, Clone, Serialize)]
pub struct StoredMessage {
    pub chat_id: i64,
    pub author: String,
    pub text: String,
    pub sent_at: String,
}

pub enum Store {
    Memory(Mutex<HashMap<u64, VecDeque<StoredMessage>>>),
    Postgres {
        pool: PgPool,
        relay: Mutex<Option<RelayHandle>>,
    },
}

/// What storing and broadcasting a message gave: the rooms it goes to.
pub type Sent = Result<Vec<String>, Box<dyn Error + Send + Sync>>;

impl Store {
    /// In memory.
    pub fn memory() -> Self {
        Store::Memory(Mutex::default())
    }

    /// On Postgres: runs the outbox's migrations and the chat's own table,
    /// and starts this server's relay.
    pub async fn postgres(url: &str, broadcaster: Broadcaster) -> Result<Self, Box<dyn Error>> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect(url)
            .await?;
        Outbox::default().migrate(&pool).await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS chat_messages (
                id bigserial PRIMARY KEY,
                chat_id bigint NOT NULL,
                author text NOT NULL,
                text text NOT NULL,
                sent_at text NOT NULL
             )",
        )
        .execute(&pool)
        .await?;
        sqlx::query("CREATE INDEX IF NOT EXISTS chat_messages_chat ON chat_messages (chat_id, id)")
            .execute(&pool)
            .await?;
        let relay = Relay::builder(pool.clone(), broadcaster).spawn();
        Ok(Store::Postgres {
            pool,
            relay: Mutex::new(Some(relay)),
        })
    }

    /// Stores the message and broadcasts it: in Postgres, in one
    /// transaction with its outbox row (sent once committed); in memory,
    /// at once.
    pub async fn post(&self, m: StoredMessage, b: Broadcast<MessagePosted>) -> Sent {
        match self {
            Store::Memory(chats) => {
                {
                    let mut chats = chats.lock().unwrap_or_else(|p| p.into_inner());
                    let list = chats.entry(m.chat_id as u64).or_default();
                    if list.len() >= KEPT_IN_MEMORY {
                        list.pop_front();
                    }
                    list.push_back(m);
                }
                let outcome: Outcome = b.await?;
                Ok(outcome
                    .targets()
                    .map(|t| t.room_names())
                    .unwrap_or_default())
            }
            Store::Postgres { pool, .. } => {
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "INSERT INTO chat_messages (chat_id, author, text, sent_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(m.chat_id)
                .bind(&m.author)
                .bind(&m.text)
                .bind(&m.sent_at)
                .execute(&mut *tx)
                .await?;
                let written = b.after_commit(&mut tx).await?;
                tx.commit().await?;
                Ok(match written {
                    Written::Stored { targets, .. } => targets.room_names(),
                    Written::Skipped(_) => Vec::new(),
                })
            }
        }
    }

    /// The last `limit` messages of a chat, newest last.
    pub async fn recent(
        &self,
        chat_id: u64,
        limit: i64,
    ) -> Result<Vec<StoredMessage>, Box<dyn Error + Send + Sync>> {
        match self {
            Store::Memory(chats) => {
                let chats = chats.lock().unwrap_or_else(|p| p.into_inner());
                let list = chats.get(&chat_id).cloned().unwrap_or_default();
                let skip = list.len().saturating_sub(limit as usize);
                Ok(list.into_iter().skip(skip).collect())
            }
            Store::Postgres { pool, .. } => {
                let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
                    "SELECT chat_id, author, text, sent_at FROM chat_messages
                     WHERE chat_id = $1 ORDER BY id DESC LIMIT $2",
                )
                .bind(chat_id as i64)
                .bind(limit)
                .fetch_all(pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .rev()
                    .map(|(chat_id, author, text, sent_at)| StoredMessage {
                        chat_id,
                        author,
                        text,
                        sent_at,
                    })
                    .collect())
            }
        }
    }

    /// Stops the relay (after its current round).
    pub async fn shutdown(&self) {
        if let Store::Postgres { relay, .. } = self {
            let relay = relay.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(relay) = relay {
                relay.shutdown().await;
            }
        }
    }
}
