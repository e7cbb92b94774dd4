//! Transactional broadcasting through a Postgres outbox (feature
//! `postgres`): an event is sent if and only if the transaction that
//! produced it commits, exactly once, even when the relay that sends it
//! crashes.
//!
//! ```no_run
//! use broadcast_core::{broadcast, BroadcastEvent, Broadcaster};
//! use broadcast_core::outbox::{Outbox, Relay};
//!
//! #[derive(serde::Serialize, BroadcastEvent)]
//! #[broadcast(on = "chat|{chat_id}")]
//! struct MessagePosted { chat_id: i64, text: String }
//!
//! # async fn run(pool: sqlx::PgPool, broadcaster: Broadcaster) -> Result<(), Box<dyn std::error::Error>> {
//! Outbox::default().migrate(&pool).await?;                    // once, at startup
//! let relay = Relay::builder(pool.clone(), broadcaster).spawn(); // in any server or worker
//!
//! let mut tx = pool.begin().await?;
//! sqlx::query("INSERT INTO messages (chat_id, text) VALUES (1, 'hi')").execute(&mut *tx).await?;
//! broadcast(MessagePosted { chat_id: 1, text: "hi".into() }).after_commit(&mut tx).await?;
//! tx.commit().await?; // only now can the relay see it; a rollback sends nothing
//! # relay.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! **Writing.** `after_commit` runs the event's pipeline at once (`when`,
//! targets, payload, the one serialization, the size limit: an error fails
//! the call and the transaction is the caller's to roll back) and inserts
//! the [`PreparedDelivery`](crate::PreparedDelivery) into the outbox table,
//! inside the caller's transaction, with a random event id.
//!
//! **Order.** Row ids and transaction ids follow the order transactions
//! *started* writing, not the order they committed. So each row gets a
//! sequence number in its *stream* (its first target, `namespace#room`)
//! from a per-stream counter row, `INSERT .. ON CONFLICT DO UPDATE SET
//! last_seq = last_seq + 1 RETURNING last_seq`, in the writer's
//! transaction. That statement locks the counter row until the writer
//! commits or rolls back, so a second writer of the same stream waits
//! there and takes the next number only once the first is finished: the
//! committed numbers of a stream have no gaps and follow commit order.
//! The cost: writers of one room are serialized from that statement to
//! their commit (writers of different rooms are not), so write the outbox
//! row late in the transaction. An event sent to several rooms is ordered
//! in its first room.
//!
//! **Relaying.** A [`Relay`] (run one in every process that should share
//! the work) wakes on `LISTEN`/`NOTIFY` (the writer's `pg_notify` is
//! delivered at commit) and polls as a fallback. Each round, in one
//! transaction, it takes a transaction-scoped advisory lock per stream
//! (`pg_try_advisory_xact_lock`, skipping streams another relay holds),
//! reads their undelivered rows in sequence order, delivers them (streams
//! concurrently, the rows of one stream one after the other), marks them
//! delivered and commits. Two relays never hold the same stream at once,
//! so a row is never delivered by two relays concurrently and a stream is
//! never reordered; a relay that dies releases its locks with its
//! connection. Delivered rows are pruned after [`RelayBuilder::retention`].
//!
//! **Exactly once across crashes.** A relay killed after publishing a row
//! and before its transaction committed leaves the row undelivered; the
//! next relay delivers it again with the same event id, and the transport
//! drops it as a duplicate ([`Delivery::id`](crate::transport::Delivery::id)):
//! with Redis, the check and the publish are one atomic script
//! (`SET {channel}:broadcast-id:<id> NX PX ttl`, then `SPUBLISH`; see
//! `redis`'s module docs); in-process, a bounded set of recent ids
//! ([`RecentIds`](crate::transport::RecentIds)). The Redis key expires after
//! an hour (`redis::IDEMPOTENCY_TTL`): a row re-delivered later than that
//! would be sent twice.
//!
//! **Failures.** A row that cannot be delivered (its namespace does not
//! exist, Redis is down) is retried with exponential backoff, holding back
//! only the rows behind it in its own stream; after
//! [`RelayBuilder::max_attempts`] it is *parked*: kept with its error,
//! listed by [`Outbox::parked`], and the rows behind it go on. A row that
//! cannot be read back at all (edited by hand, from another version) is
//! parked at once. Nothing is dropped silently.
//!
//! # Schema
//!
//! [`Outbox::migrate`] creates (and later upgrades) the tables, under a
//! table name of your choice (default `broadcast_outbox`): the outbox
//! itself, `<table>_streams` (one small row per stream ever used) and
//! `<table>_schema` (the versions applied). [`Outbox::migrations`] gives
//! the same SQL for your own migration tool.

mod error;
mod parked;
mod relay;
mod schema;
mod write;

use std::sync::Arc;

pub use error::OutboxError;
pub use parked::ParkedRow;
pub use relay::{Relay, RelayBuilder, RelayHandle, RelayStats};
pub use write::Written;

/// The default outbox table.
pub const DEFAULT_TABLE: &str = "broadcast_outbox";

/// Longest table name accepted: Postgres's 63 bytes, less the suffixes of
/// the tables and indexes named after it.
pub const MAX_TABLE_LEN: usize = 48;

/// An outbox table: its name and the SQL that uses it. Cheap to clone.
///
/// ```
/// use broadcast_core::outbox::Outbox;
/// assert_eq!(Outbox::default().table(), "broadcast_outbox");
/// assert!(Outbox::new("chat_outbox").is_ok());
/// assert!(Outbox::new("x; DROP TABLE users").is_err());
/// ```
#[derive(Clone)]
pub struct Outbox {
    table: Arc<str>,
    sql: Arc<schema::Sql>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl Default for Outbox {
    fn default() -> Self {
        Self::build(DEFAULT_TABLE)
    }
}

impl Outbox {
    /// The outbox in table `table`: lowercase ASCII letters, digits and
    /// `_`, starting with a letter or `_`, at most [`MAX_TABLE_LEN`]
    /// bytes (it is spliced into SQL, so nothing else is accepted).
    pub fn new(table: &str) -> Result<Self, OutboxError> {
        let ok = !table.is_empty()
            && table.len() <= MAX_TABLE_LEN
            && table
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !table.as_bytes()[0].is_ascii_digit();
        if !ok {
            return Err(OutboxError::InvalidTable {
                table: crate::util::echo(table),
            });
        }
        Ok(Self::build(table))
    }

    fn build(table: &str) -> Self {
        Self {
            table: table.into(),
            sql: Arc::new(schema::Sql::new(table)),
        }
    }

    /// The table's name (also the `NOTIFY` channel).
    pub fn table(&self) -> &str {
        &self.table
    }
}
