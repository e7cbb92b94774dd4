//! The outbox's tables, their versioned migrations, and every statement
//! that uses them (built once per table name).

use sqlx::{AssertSqlSafe, PgPool};

use super::{Outbox, OutboxError};

/// The migrations, in order: `(version, SQL)` with `{t}` for the table.
/// Applied ones are never edited; a change is a new version.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    r#"
CREATE TABLE {t} (
    id bigserial PRIMARY KEY,
    event_id uuid NOT NULL DEFAULT gen_random_uuid(),
    stream text NOT NULL,
    seq bigint NOT NULL,
    event text NOT NULL,
    delivery text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT '-infinity',
    last_error text,
    delivered_at timestamptz,
    parked_at timestamptz,
    UNIQUE (stream, seq)
);
CREATE INDEX {t}_pending ON {t} (stream, seq) WHERE delivered_at IS NULL AND parked_at IS NULL;
CREATE INDEX {t}_delivered ON {t} (delivered_at) WHERE delivered_at IS NOT NULL;
CREATE INDEX {t}_parked ON {t} (parked_at) WHERE parked_at IS NOT NULL;
CREATE TABLE {t}_streams (
    stream text PRIMARY KEY,
    last_seq bigint NOT NULL
);
"#,
)];

/// The statements of one outbox table.
pub(crate) struct Sql {
    pub(crate) insert: String,
    pub(crate) heads: String,
    pub(crate) rows: String,
    pub(crate) mark_delivered: String,
    pub(crate) delete_delivered: String,
    pub(crate) mark_failed: String,
    pub(crate) prune: String,
    pub(crate) parked: String,
    pub(crate) retry_parked: String,
    pub(crate) pending: String,
}

impl Sql {
    pub(crate) fn new(t: &str) -> Self {
        Self {
            // One round trip: the stream's next number (locking its counter
            // row until this transaction ends, which is what makes numbers
            // follow commit order), the row, and the wake-up sent at commit.
            insert: format!(
                "WITH s AS (
                    INSERT INTO {t}_streams AS s (stream, last_seq) VALUES ($1, 1)
                    ON CONFLICT (stream) DO UPDATE SET last_seq = s.last_seq + 1
                    RETURNING last_seq
                 ), r AS (
                    INSERT INTO {t} (stream, seq, event, delivery)
                    SELECT $1, s.last_seq, $2, $3 FROM s
                    RETURNING id, seq, event_id::text AS event_id
                 )
                 SELECT r.id, r.seq, r.event_id FROM r CROSS JOIN (SELECT pg_notify('{t}', '')) n"
            ),
            // Streams with work, each locked for this relay's transaction;
            // a stream another relay holds is skipped.
            heads: format!(
                "SELECT stream FROM (
                    SELECT DISTINCT stream FROM {t}
                    WHERE delivered_at IS NULL AND parked_at IS NULL
                    LIMIT $1
                 ) h
                 WHERE pg_try_advisory_xact_lock(hashtext('{t}'), hashtext(stream))"
            ),
            // The first rows of each locked stream, a share of the batch
            // each, so that one long stream does not take the whole round
            // and the streams are delivered side by side.
            rows: format!(
                "SELECT r.* FROM unnest($1::text[]) AS s(stream) CROSS JOIN LATERAL (
                    SELECT id, stream, seq, event, event_id::text AS event_id, delivery,
                           attempts, next_attempt_at <= now() AS due
                    FROM {t}
                    WHERE {t}.stream = s.stream AND delivered_at IS NULL AND parked_at IS NULL
                    ORDER BY seq
                    LIMIT $2
                 ) r
                 ORDER BY r.stream, r.seq"
            ),
            mark_delivered: format!("UPDATE {t} SET delivered_at = now() WHERE id = ANY($1)"),
            delete_delivered: format!("DELETE FROM {t} WHERE id = ANY($1)"),
            mark_failed: format!(
                "UPDATE {t} SET attempts = $2, last_error = $3,
                        next_attempt_at = now() + make_interval(secs => $4),
                        parked_at = CASE WHEN $5 THEN now() END
                 WHERE id = $1"
            ),
            prune: format!(
                "DELETE FROM {t} WHERE delivered_at < now() - make_interval(secs => $1)"
            ),
            parked: format!(
                "SELECT id, event_id::text AS event_id, stream, seq, event, attempts,
                        coalesce(last_error, '') AS last_error,
                        created_at::text AS created_at, parked_at::text AS parked_at
                 FROM {t} WHERE parked_at IS NOT NULL
                 ORDER BY parked_at, id LIMIT $1"
            ),
            retry_parked: format!(
                "UPDATE {t} SET parked_at = NULL, attempts = 0, next_attempt_at = '-infinity'
                 WHERE id = $1 AND parked_at IS NOT NULL"
            ),
            pending: format!(
                "SELECT count(*) FROM {t} WHERE delivered_at IS NULL AND parked_at IS NULL"
            ),
        }
    }
}

/// Runs one statement built from a table name checked by [`Outbox::new`].
pub(crate) fn sql(s: &str) -> AssertSqlSafe<String> {
    AssertSqlSafe(s.to_owned())
}

impl Outbox {
    /// The migrations for this table, in order: `(version, SQL)`, for an
    /// application that runs its own migration tool. [`migrate`](Self::migrate)
    /// applies the same ones.
    ///
    /// ```
    /// let m = broadcast_core::outbox::Outbox::new("chat_outbox").unwrap().migrations();
    /// assert_eq!(m[0].0, 1);
    /// assert!(m[0].1.contains("CREATE TABLE chat_outbox_streams"));
    /// ```
    pub fn migrations(&self) -> Vec<(i32, String)> {
        MIGRATIONS
            .iter()
            .map(|(v, sql)| (*v, sql.replace("{t}", &self.table)))
            .collect()
    }

    /// Creates or upgrades the outbox tables: applies the migrations not yet
    /// recorded in `<table>_schema`, each in the same transaction as its
    /// record, under an advisory lock so that processes starting together
    /// do not race. Returns the versions it applied.
    ///
    /// ```no_run
    /// # async fn run(pool: sqlx::PgPool) -> Result<(), broadcast_core::outbox::OutboxError> {
    /// broadcast_core::outbox::Outbox::default().migrate(&pool).await?;
    /// # Ok(()) }
    /// ```
    pub async fn migrate(&self, pool: &PgPool) -> Result<Vec<i32>, OutboxError> {
        let t = &*self.table;
        let db = || OutboxError::db("-", t);
        let mut tx = pool.begin().await.map_err(db())?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("{t}_schema"))
            .execute(&mut *tx)
            .await
            .map_err(db())?;
        sqlx::query(sql(&format!(
            "CREATE TABLE IF NOT EXISTS {t}_schema (
                version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
             )"
        )))
        .execute(&mut *tx)
        .await
        .map_err(db())?;
        let current: Option<i32> =
            sqlx::query_scalar(sql(&format!("SELECT max(version) FROM {t}_schema")))
                .fetch_one(&mut *tx)
                .await
                .map_err(db())?;
        let current = current.unwrap_or(0);
        let mut applied = Vec::new();
        for (version, text) in self.migrations() {
            if version <= current {
                continue;
            }
            sqlx::raw_sql(AssertSqlSafe(text))
                .execute(&mut *tx)
                .await
                .map_err(db())?;
            sqlx::query(sql(&format!(
                "INSERT INTO {t}_schema (version) VALUES ($1)"
            )))
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(db())?;
            applied.push(version);
        }
        tx.commit().await.map_err(db())?;
        if !applied.is_empty() {
            tracing::info!(table = t, ?applied, "outbox migrations applied");
        }
        Ok(applied)
    }
}
