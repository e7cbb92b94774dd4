//! Errors of the outbox.

use crate::error::BroadcastError;

/// Why writing to, migrating or reading the outbox failed.
///
/// ```
/// use broadcast_core::outbox::{Outbox, OutboxError};
/// let e = Outbox::new("Bad-Name").unwrap_err();
/// assert!(matches!(e, OutboxError::InvalidTable { .. }));
/// assert!(e.to_string().contains("`Bad-Name`"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The event failed its pipeline (targets, payload, size): nothing was
    /// written. The transaction is the caller's to roll back or go on with.
    #[error(transparent)]
    Broadcast(#[from] BroadcastError),
    /// The database refused or failed a statement.
    #[error("event `{event}`: outbox table `{table}`: {source}")]
    Database {
        /// The event name (`-` for statements about no event: migrations,
        /// listings).
        event: &'static str,
        /// The outbox table.
        table: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// A table name that is not a plain lowercase identifier.
    #[error(
        "outbox table `{table}`: use lowercase ASCII letters, digits and `_`, at most {} bytes",
        super::MAX_TABLE_LEN
    )]
    InvalidTable {
        /// The name given, cut to a readable length.
        table: String,
    },
}

impl OutboxError {
    pub(crate) fn db(event: &'static str, table: &str) -> impl FnOnce(sqlx::Error) -> Self {
        let table = table.to_owned();
        move |source| Self::Database {
            event,
            table,
            source,
        }
    }
}
