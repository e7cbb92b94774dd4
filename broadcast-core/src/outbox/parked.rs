//! What the application can see of the outbox: parked rows, and what is
//! still to deliver.

use sqlx::{PgPool, Row};

use super::schema::sql;
use super::{Outbox, OutboxError};

/// A row the relay gave up on, with the error of its last attempt.
///
/// ```
/// # let row = broadcast_core::outbox::ParkedRow {
/// #     id: 1, event_id: "e".into(), stream: "/#x".into(), seq: 1, event: "e".into(),
/// #     attempts: 3, error: "the server has no namespace `/x`".into(),
/// #     created_at: "".into(), parked_at: "".into() };
/// assert!(row.error.contains("no namespace"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedRow {
    /// The row's id (for [`Outbox::retry_parked`]).
    pub id: i64,
    /// The event id.
    pub event_id: String,
    /// Its stream (`namespace#room` of its first target).
    pub stream: String,
    /// Its number in the stream.
    pub seq: i64,
    /// The event name.
    pub event: String,
    /// Attempts made.
    pub attempts: i32,
    /// The last attempt's error; it names the event and the target.
    pub error: String,
    /// When it was written (Postgres's text form).
    pub created_at: String,
    /// When it was parked (Postgres's text form).
    pub parked_at: String,
}

impl Outbox {
    /// The parked rows, oldest first, at most `limit` of them.
    ///
    /// ```no_run
    /// # async fn run(pool: sqlx::PgPool) -> Result<(), broadcast_core::outbox::OutboxError> {
    /// for row in broadcast_core::outbox::Outbox::default().parked(&pool, 100).await? {
    ///     tracing::error!(row = row.id, event = row.event, error = row.error, "not delivered");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn parked(&self, pool: &PgPool, limit: i64) -> Result<Vec<ParkedRow>, OutboxError> {
        let db = || OutboxError::db("-", self.table());
        let rows = sqlx::query(sql(&self.sql.parked))
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(db())?;
        rows.iter()
            .map(|r| {
                Ok(ParkedRow {
                    id: r.try_get("id")?,
                    event_id: r.try_get("event_id")?,
                    stream: r.try_get("stream")?,
                    seq: r.try_get("seq")?,
                    event: r.try_get("event")?,
                    attempts: r.try_get("attempts")?,
                    error: r.try_get("last_error")?,
                    created_at: r.try_get("created_at")?,
                    parked_at: r.try_get("parked_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db())
    }

    /// Puts a parked row back in line (after fixing its cause). It is
    /// delivered after the rows of its stream that went out meanwhile.
    /// Returns whether a parked row with that id existed.
    ///
    /// ```no_run
    /// # async fn run(pool: sqlx::PgPool) -> Result<(), broadcast_core::outbox::OutboxError> {
    /// broadcast_core::outbox::Outbox::default().retry_parked(&pool, 42).await?;
    /// # Ok(()) }
    /// ```
    pub async fn retry_parked(&self, pool: &PgPool, id: i64) -> Result<bool, OutboxError> {
        let done = sqlx::query(sql(&self.sql.retry_parked))
            .bind(id)
            .execute(pool)
            .await
            .map_err(OutboxError::db("-", self.table()))?;
        Ok(done.rows_affected() == 1)
    }

    /// How many rows wait for delivery (not delivered, not parked).
    ///
    /// ```no_run
    /// # async fn run(pool: sqlx::PgPool) -> Result<(), broadcast_core::outbox::OutboxError> {
    /// let backlog = broadcast_core::outbox::Outbox::default().pending(&pool).await?;
    /// # Ok(()) }
    /// ```
    pub async fn pending(&self, pool: &PgPool) -> Result<i64, OutboxError> {
        sqlx::query_scalar(sql(&self.sql.pending))
            .fetch_one(pool)
            .await
            .map_err(OutboxError::db("-", self.table()))
    }
}
