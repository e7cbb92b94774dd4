//! The relay: delivers committed outbox rows, in order per stream, exactly
//! once (see the [module docs](super) for the design).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgRow};
use sqlx::{PgPool, Postgres, Row, Transaction};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::schema::sql;
use super::{Outbox, OutboxError};
use crate::broadcaster::{Broadcaster, Outcome, SkipReason};
use crate::prepared::PreparedDelivery;

/// Configures and starts a [`Relay`].
///
/// ```no_run
/// # async fn run(pool: sqlx::PgPool, b: broadcast_core::Broadcaster) -> Result<(), broadcast_core::outbox::OutboxError> {
/// use std::time::Duration;
/// use broadcast_core::outbox::{Outbox, Relay};
/// let relay = Relay::builder(pool, b)
///     .outbox(Outbox::new("chat_outbox")?)
///     .batch(512)
///     .poll_interval(Duration::from_millis(500))
///     .retention(Duration::from_secs(24 * 3600))
///     .max_attempts(5)
///     .spawn();
/// # relay.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RelayBuilder {
    pool: PgPool,
    broadcaster: Broadcaster,
    outbox: Outbox,
    batch: usize,
    streams: usize,
    poll: Duration,
    retention: Duration,
    prune_every: Duration,
    max_attempts: u32,
    backoff: Duration,
    max_backoff: Duration,
}

/// Delivers the rows of an outbox table through a broadcaster.
///
/// ```no_run
/// # async fn run(pool: sqlx::PgPool, b: broadcast_core::Broadcaster) {
/// let relay = broadcast_core::outbox::Relay::builder(pool, b).spawn();
/// // ... on shutdown:
/// relay.shutdown().await;
/// # }
/// ```
#[derive(Debug)]
pub struct Relay;

impl Relay {
    /// A relay of the default outbox table through `broadcaster`.
    pub fn builder(pool: PgPool, broadcaster: Broadcaster) -> RelayBuilder {
        RelayBuilder {
            pool,
            broadcaster,
            outbox: Outbox::default(),
            batch: 256,
            streams: 64,
            poll: Duration::from_secs(1),
            retention: Duration::from_secs(3600),
            prune_every: Duration::from_secs(60),
            max_attempts: 10,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl RelayBuilder {
    /// The outbox table to relay (default `broadcast_outbox`).
    pub fn outbox(mut self, outbox: Outbox) -> Self {
        self.outbox = outbox;
        self
    }

    /// Most rows one round delivers (default 256), shared out evenly among
    /// the streams it took.
    pub fn batch(mut self, rows: usize) -> Self {
        self.batch = rows.max(1);
        self
    }

    /// Most streams one round takes (default 64).
    pub fn streams_per_round(mut self, streams: usize) -> Self {
        self.streams = streams.max(1);
        self
    }

    /// How often to look for rows without a notification (default 1 s):
    /// the fallback when a `NOTIFY` was missed (listener reconnecting).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// How long delivered rows are kept before they are pruned (default
    /// one hour); zero deletes them as they are delivered.
    pub fn retention(mut self, keep: Duration) -> Self {
        self.retention = keep;
        self
    }

    /// Attempts before a failing row is parked (default 10).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Wait after the first failure, doubled after each further one up to
    /// `max` (defaults 200 ms and 60 s).
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = first;
        self.max_backoff = max.max(first);
        self
    }

    /// Starts the relay on the current tokio runtime.
    pub fn spawn(self) -> RelayHandle {
        let (stop, stopped) = watch::channel(false);
        let stats = Arc::new(Counters::default());
        let wake = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(
            self.pool.clone(),
            self.outbox.table().to_owned(),
            wake.clone(),
            stopped.clone(),
        ));
        let worker = Worker {
            cfg: self,
            stats: stats.clone(),
        };
        let task = tokio::spawn(worker.run(wake, stopped));
        RelayHandle {
            stop,
            task,
            listener,
            stats,
        }
    }
}

/// A running relay: its counters, and how to stop it.
///
/// ```no_run
/// # async fn run(relay: broadcast_core::outbox::RelayHandle) {
/// println!("{:?}", relay.stats());
/// relay.shutdown().await;
/// # }
/// ```
#[derive(Debug)]
pub struct RelayHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    listener: JoinHandle<()>,
    stats: Arc<Counters>,
}

impl RelayHandle {
    /// Counters since the relay started.
    pub fn stats(&self) -> RelayStats {
        let c = &self.stats;
        RelayStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            parked: c.parked.load(Ordering::Relaxed),
            rounds: c.rounds.load(Ordering::Relaxed),
            round_errors: c.round_errors.load(Ordering::Relaxed),
        }
    }

    /// Stops after the current round (its rows are marked first).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.listener.abort();
        let _ = self.listener.await;
    }
}

/// What a relay did since it started.
///
/// ```
/// let s = broadcast_core::outbox::RelayStats::default();
/// assert_eq!(s.delivered, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Rows delivered (and marked).
    pub delivered: u64,
    /// Rows the transport had delivered before (a crashed relay's): marked,
    /// not sent again.
    pub duplicates: u64,
    /// Failed delivery attempts (each retried later, or parked).
    pub failed: u64,
    /// Rows parked.
    pub parked: u64,
    /// Rounds run.
    pub rounds: u64,
    /// Rounds that failed on the database (retried).
    pub round_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    duplicates: AtomicU64,
    failed: AtomicU64,
    parked: AtomicU64,
    rounds: AtomicU64,
    round_errors: AtomicU64,
}

/// Wakes the worker on every `NOTIFY` of the table's channel; reconnects
/// with a pause when the connection fails (the worker polls meanwhile).
async fn listen(
    pool: PgPool,
    channel: String,
    wake: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let result = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(&channel).await?;
            // Rows committed while the listener was down.
            wake.notify_one();
            loop {
                listener.recv().await?;
                wake.notify_one();
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            r = result => if let Err(error) = r {
                tracing::warn!(%error, table = %channel, "outbox listener failed; polling until it reconnects");
            },
        }
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

struct Worker {
    cfg: RelayBuilder,
    stats: Arc<Counters>,
}

/// One undelivered row, as read.
struct Pending {
    id: i64,
    stream: String,
    seq: i64,
    event: String,
    event_id: String,
    delivery: String,
    attempts: i32,
    due: bool,
}

/// What became of one row this round.
enum Fate {
    Delivered {
        id: i64,
        duplicate: bool,
    },
    Failed {
        id: i64,
        attempts: i32,
        error: String,
        park: bool,
    },
}

impl Worker {
    async fn run(self, wake: Arc<Notify>, mut stopped: watch::Receiver<bool>) {
        let mut last_prune = tokio::time::Instant::now() - self.cfg.prune_every;
        let mut db_backoff = Duration::from_millis(100);
        loop {
            if *stopped.borrow() {
                return;
            }
            let full = match self.round().await {
                Ok(more) => {
                    db_backoff = Duration::from_millis(100);
                    more
                }
                Err(error) => {
                    self.stats.round_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, "outbox relay round failed; retrying");
                    tokio::select! {
                        _ = stopped.wait_for(|s| *s) => return,
                        _ = tokio::time::sleep(db_backoff) => {}
                    }
                    db_backoff = (db_backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            if last_prune.elapsed() >= self.cfg.prune_every {
                last_prune = tokio::time::Instant::now();
                if let Err(error) = self.prune().await {
                    tracing::warn!(%error, "pruning the outbox failed");
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => return,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(self.cfg.poll) => {}
            }
        }
    }

    fn db(&self) -> impl FnOnce(sqlx::Error) -> OutboxError {
        OutboxError::db("-", self.cfg.outbox.table())
    }

    /// One transaction: lock streams, deliver their due rows in order, mark
    /// them. Returns whether there may be more to do at once (a stream gave
    /// its whole share, or there were more streams than one round takes).
    async fn round(&self) -> Result<bool, OutboxError> {
        self.stats.rounds.fetch_add(1, Ordering::Relaxed);
        let s = &self.cfg.outbox.sql;
        let mut tx = self.cfg.pool.begin().await.map_err(self.db())?;
        let streams: Vec<String> = sqlx::query_scalar(sql(&s.heads))
            .bind(self.cfg.streams as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(self.db())?;
        if streams.is_empty() {
            tx.commit().await.map_err(self.db())?;
            return Ok(false);
        }
        // A new statement, so a new snapshot: it sees every row the
        // previous holder of these locks marked before it committed.
        let per_stream = self.cfg.batch.div_ceil(streams.len()).max(1);
        let rows = sqlx::query(sql(&s.rows))
            .bind(&streams)
            .bind(per_stream as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(self.db())?;
        let rows = rows
            .iter()
            .map(pending)
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.db())?;
        let mut per_stream_read: std::collections::HashMap<&str, usize> = Default::default();
        for row in &rows {
            *per_stream_read.entry(&row.stream).or_default() += 1;
        }
        let more =
            streams.len() >= self.cfg.streams || per_stream_read.values().any(|&n| n >= per_stream);
        drop(per_stream_read);
        let fates = self.deliver(rows).await;
        self.record(&mut tx, fates).await?;
        tx.commit().await.map_err(self.db())?;
        Ok(more)
    }

    /// Delivers the streams concurrently, each stream's rows in order,
    /// stopping a stream at its first row that is not due or fails.
    async fn deliver(&self, rows: Vec<Pending>) -> Vec<Fate> {
        let mut streams: Vec<Vec<Pending>> = Vec::new();
        for row in rows {
            match streams.last_mut() {
                Some(last) if last[0].stream == row.stream => last.push(row),
                _ => streams.push(vec![row]),
            }
        }
        let per_stream = streams
            .into_iter()
            .map(|rows| async move { self.deliver_stream(rows).await });
        futures_util::future::join_all(per_stream)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// One stream's due rows, in order, handed to the transport together
    /// (it may send a run of them in one round trip); stops at the first
    /// row that is not due, does not read back, or fails.
    async fn deliver_stream(&self, rows: Vec<Pending>) -> Vec<Fate> {
        let mut ready = Vec::new();
        let mut unreadable = None;
        for row in rows.iter().take_while(|r| r.due) {
            match PreparedDelivery::from_json(&row.delivery) {
                Ok(p) => ready.push((row, p)),
                Err(error) => {
                    unreadable = Some(self.unreadable(row, &error));
                    break;
                }
            }
        }
        let items: Vec<_> = ready
            .iter()
            .map(|(row, p)| (p, Some(row.event_id.as_str())))
            .collect();
        let results = self.cfg.broadcaster.deliver_all(&items).await;
        let mut fates = Vec::with_capacity(results.len() + 1);
        let mut failed = false;
        for ((row, _), result) in ready.iter().zip(results) {
            let fate = self.fate(row, result);
            failed = matches!(fate, Fate::Failed { .. });
            fates.push(fate);
        }
        if !failed && fates.len() == ready.len() {
            fates.extend(unreadable);
        }
        fates
    }

    /// A row that does not read back: parked at once, retrying cannot help.
    fn unreadable(&self, row: &Pending, error: &crate::prepared::PreparedError) -> Fate {
        Fate::Failed {
            id: row.id,
            attempts: row.attempts.saturating_add(1),
            error: format!(
                "event `{}`: row {} (stream `{}`, seq {}): {error}",
                crate::util::echo(&row.event),
                row.id,
                row.stream,
                row.seq
            ),
            park: true,
        }
    }

    fn fate(&self, row: &Pending, result: Result<Outcome, crate::BroadcastError>) -> Fate {
        let attempts = row.attempts.saturating_add(1);
        match result {
            Ok(Outcome::Skipped(SkipReason::Duplicate)) => Fate::Delivered {
                id: row.id,
                duplicate: true,
            },
            Ok(_) => Fate::Delivered {
                id: row.id,
                duplicate: false,
            },
            Err(error) => Fate::Failed {
                id: row.id,
                attempts,
                error: error.to_string(),
                park: attempts >= self.cfg.max_attempts as i32,
            },
        }
    }

    async fn record(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        fates: Vec<Fate>,
    ) -> Result<(), OutboxError> {
        let s = &self.cfg.outbox.sql;
        let mut delivered = Vec::new();
        for fate in fates {
            match fate {
                Fate::Delivered { id, duplicate } => {
                    delivered.push(id);
                    let c = if duplicate {
                        &self.stats.duplicates
                    } else {
                        &self.stats.delivered
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                }
                Fate::Failed {
                    id,
                    attempts,
                    error,
                    park,
                } => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    if park {
                        self.stats.parked.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(row = id, attempts, %error, "outbox row parked");
                    } else {
                        tracing::warn!(row = id, attempts, %error, "outbox row failed; will retry");
                    }
                    let wait = self.backoff_after(attempts);
                    sqlx::query(sql(&s.mark_failed))
                        .bind(id)
                        .bind(attempts)
                        .bind(&error)
                        .bind(wait.as_secs_f64())
                        .bind(park)
                        .execute(&mut **tx)
                        .await
                        .map_err(self.db())?;
                }
            }
        }
        if !delivered.is_empty() {
            let statement = if self.cfg.retention.is_zero() {
                &s.delete_delivered
            } else {
                &s.mark_delivered
            };
            sqlx::query(sql(statement))
                .bind(&delivered)
                .execute(&mut **tx)
                .await
                .map_err(self.db())?;
        }
        Ok(())
    }

    fn backoff_after(&self, attempts: i32) -> Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(0)
            .min(20);
        self.cfg
            .backoff
            .saturating_mul(1 << doublings)
            .min(self.cfg.max_backoff)
    }

    async fn prune(&self) -> Result<u64, OutboxError> {
        if self.cfg.retention.is_zero() {
            return Ok(0);
        }
        let done = sqlx::query(sql(&self.cfg.outbox.sql.prune))
            .bind(self.cfg.retention.as_secs_f64())
            .execute(&self.cfg.pool)
            .await
            .map_err(self.db())?;
        Ok(done.rows_affected())
    }
}

fn pending(row: &PgRow) -> Result<Pending, sqlx::Error> {
    Ok(Pending {
        id: row.try_get("id")?,
        stream: row.try_get("stream")?,
        seq: row.try_get("seq")?,
        event: row.try_get("event")?,
        event_id: row.try_get("event_id")?,
        delivery: row.try_get("delivery")?,
        attempts: row.try_get("attempts")?,
        due: row.try_get("due")?,
    })
}
