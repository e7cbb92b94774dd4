//! Writing an event into the outbox, in the caller's transaction.

use sqlx::{PgConnection, Row};

use super::schema::sql;
use super::{Outbox, OutboxError};
use crate::broadcaster::{Broadcast, Prepared, SkipReason};
use crate::event::BroadcastEvent;
use crate::target::Targets;

/// What [`Broadcast::after_commit`] wrote.
///
/// ```
/// use broadcast_core::outbox::Written;
/// let w = Written::Stored {
///     id: 1, event_id: "c0ffee".into(), stream: "/#chat|1".into(), seq: 1,
///     targets: broadcast_core::Targets::new(),
/// };
/// assert!(w.is_stored());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// A row is in the outbox; it is delivered once the transaction commits.
    Stored {
        /// The row's id.
        id: i64,
        /// The event id the transports de-duplicate on.
        event_id: String,
        /// The stream (first target, `namespace#room`) it is ordered in.
        stream: String,
        /// Its number in the stream.
        seq: i64,
        /// Where it will go.
        targets: Targets,
    },
    /// The pipeline decided not to send it (`when`, no target): nothing was
    /// written.
    Skipped(SkipReason),
}

impl Written {
    /// Whether a row was written.
    pub fn is_stored(&self) -> bool {
        matches!(self, Written::Stored { .. })
    }
}

impl<E: BroadcastEvent + 'static> Broadcast<E> {
    /// Sends the event if, and only if, the transaction `tx` commits:
    /// runs its pipeline now (an error fails the call: roll back or go on,
    /// as you choose) and writes the result into the default outbox table
    /// within `tx`. A [`Relay`](super::Relay) delivers it after the commit,
    /// exactly once (see the [module docs](super)). Pass `&mut tx` (a
    /// `sqlx::Transaction` dereferences to the connection).
    ///
    /// ```no_run
    /// # use broadcast_core::{broadcast, BroadcastEvent};
    /// # #[derive(serde::Serialize, BroadcastEvent)]
    /// # #[broadcast(on = "chat|{chat_id}")]
    /// # struct MessagePosted { chat_id: i64 }
    /// # async fn run(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// broadcast(MessagePosted { chat_id: 1 }).after_commit(&mut tx).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn after_commit(self, tx: &mut PgConnection) -> Result<Written, OutboxError> {
        self.after_commit_in(&Outbox::default(), tx).await
    }

    /// [`after_commit`](Self::after_commit) into the table of `outbox`.
    ///
    /// ```no_run
    /// # use broadcast_core::{broadcast, BroadcastEvent, outbox::Outbox};
    /// # #[derive(serde::Serialize, BroadcastEvent)]
    /// # struct Ping;
    /// # async fn run(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let outbox = Outbox::new("chat_outbox")?;
    /// let mut tx = pool.begin().await?;
    /// broadcast(Ping).after_commit_in(&outbox, &mut tx).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn after_commit_in(
        self,
        outbox: &Outbox,
        tx: &mut PgConnection,
    ) -> Result<Written, OutboxError> {
        let (_, prepared) = self.prepare_with().await?;
        let p = match prepared {
            Prepared::Ready(p) => p,
            Prepared::Skipped(reason) => return Ok(Written::Skipped(reason)),
        };
        let stream = p.ordering_key();
        let row = sqlx::query(sql(&outbox.sql.insert))
            .bind(&stream)
            .bind(p.event)
            .bind(p.to_json())
            .fetch_one(&mut *tx)
            .await
            .map_err(OutboxError::db(p.event, outbox.table()))?;
        let get = |row: &sqlx::postgres::PgRow| -> Result<(i64, i64, String), sqlx::Error> {
            Ok((
                row.try_get("id")?,
                row.try_get("seq")?,
                row.try_get("event_id")?,
            ))
        };
        let (id, seq, event_id) = get(&row).map_err(OutboxError::db(p.event, outbox.table()))?;
        Ok(Written::Stored {
            id,
            event_id,
            stream,
            seq,
            targets: p.targets,
        })
    }
}
