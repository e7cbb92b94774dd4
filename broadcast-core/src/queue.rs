//! Queued broadcasting without a database: a bounded in-process queue of
//! prepared deliveries and the one task that delivers them, in order.
//!
//! `broadcast(event).queue()` runs the event's pipeline at once (so a bad
//! event fails the call) and returns as soon as the queue accepted it;
//! [`Broadcaster::flush`](crate::Broadcaster::flush) waits for the queue to
//! empty and [`Broadcaster::shutdown`](crate::Broadcaster::shutdown) stops
//! accepting, delivers what is queued within a deadline and reports what
//! could not be sent. The queue lives in memory: a process that dies
//! without a shutdown loses what it holds (use the Postgres outbox, feature
//! `postgres`, for events that must survive a crash).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::error::BroadcastError;
use crate::prepared::PreparedDelivery;
use crate::util::BoxFuture;

/// Default capacity of a broadcaster's queue, in events.
pub const DEFAULT_QUEUE_CAPACITY: usize = 16_384;

/// Failures kept for the next report; past it they are only counted.
const MAX_KEPT_FAILURES: usize = 1_000;

/// Why `broadcast(event).queue()` did not accept an event.
///
/// ```
/// use broadcast_core::QueueError;
/// let e = QueueError::Full { event: "message_posted", capacity: 10 };
/// assert_eq!(e.to_string(), "event `message_posted`: the broadcast queue is full (10 events)");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The queue holds its capacity of events already.
    #[error("event `{event}`: the broadcast queue is full ({capacity} events)")]
    Full {
        /// The event name.
        event: &'static str,
        /// The queue's capacity.
        capacity: usize,
    },
    /// The broadcaster is shutting down and accepts no more events.
    #[error("event `{event}`: the broadcast queue is shut down")]
    Closed {
        /// The event name.
        event: &'static str,
    },
    /// The event failed its pipeline (target, payload, size): nothing was
    /// queued.
    #[error(transparent)]
    Broadcast(#[from] BroadcastError),
}

impl QueueError {
    /// The name of the event that was not queued.
    pub fn event(&self) -> &'static str {
        match self {
            Self::Full { event, .. } | Self::Closed { event } => event,
            Self::Broadcast(e) => e.event(),
        }
    }
}

/// A queued event whose delivery failed.
///
/// ```
/// let f = broadcast_core::QueueFailure { event: "message_posted", error: "no namespace `/x`".into() };
/// assert_eq!(f.event, "message_posted");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueFailure {
    /// The event name.
    pub event: &'static str,
    /// The delivery error (it names the target that failed).
    pub error: String,
}

/// What a flush or a shutdown of the queue achieved.
///
/// ```
/// let r = broadcast_core::QueueReport::default();
/// assert!(r.is_complete());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueReport {
    /// Events delivered since the queue started.
    pub delivered: u64,
    /// Deliveries that failed since the last report (the first
    /// 1,000 of them).
    pub failed: Vec<QueueFailure>,
    /// How many deliveries failed since the last report, kept or not.
    pub failed_count: u64,
    /// Events still queued or in flight when the deadline passed (on
    /// shutdown: dropped unsent, by name).
    pub undelivered: Vec<&'static str>,
    /// How many events were still queued or in flight at the deadline.
    pub undelivered_count: usize,
    /// Sockets that could not be written to while delivering (closed, or
    /// their buffer full), since the queue started: those sockets missed
    /// the event.
    pub socket_errors: u64,
}

impl QueueReport {
    /// Whether everything queued was delivered without error.
    pub fn is_complete(&self) -> bool {
        self.failed_count == 0 && self.undelivered_count == 0 && self.socket_errors == 0
    }
}

/// Delivers one queued event; the broadcaster provides it. `Ok` carries the
/// number of sockets that could not be written to.
pub(crate) type DeliverFn = Arc<
    dyn Fn(PreparedDelivery) -> BoxFuture<'static, Result<usize, BroadcastError>> + Send + Sync,
>;

/// The queue: a bounded channel and the counters its task keeps.
pub(crate) struct QueueCore {
    tx: mpsc::Sender<PreparedDelivery>,
    capacity: usize,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Queued plus in flight.
    pending: AtomicUsize,
    idle: Notify,
    closed: AtomicBool,
    /// Past the shutdown deadline: drop the rest, by name.
    abandon: AtomicBool,
    delivered: AtomicU64,
    socket_errors: AtomicU64,
    failed_count: AtomicU64,
    failed: Mutex<Vec<QueueFailure>>,
    undelivered: Mutex<Vec<&'static str>>,
}

impl QueueCore {
    /// Starts the queue's task on the current tokio runtime.
    pub(crate) fn spawn(capacity: usize, deliver: DeliverFn) -> Self {
        let capacity = capacity.max(1);
        let (tx, mut rx) = mpsc::channel::<PreparedDelivery>(capacity);
        let shared = Arc::new(Shared::default());
        let task = shared.clone();
        tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                if task.abandon.load(Ordering::Acquire) {
                    lock(&task.undelivered).push(p.event);
                } else {
                    let event = p.event;
                    match deliver(p).await {
                        Ok(socket_errors) => {
                            task.delivered.fetch_add(1, Ordering::Relaxed);
                            task.socket_errors
                                .fetch_add(socket_errors as u64, Ordering::Relaxed);
                        }
                        Err(error) => {
                            task.failed_count.fetch_add(1, Ordering::Relaxed);
                            let mut failed = lock(&task.failed);
                            if failed.len() < MAX_KEPT_FAILURES {
                                failed.push(QueueFailure {
                                    event,
                                    error: error.to_string(),
                                });
                            }
                        }
                    }
                }
                if task.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                    task.idle.notify_waiters();
                }
            }
        });
        Self {
            tx,
            capacity,
            shared,
        }
    }

    /// Accepts `p` or says why not, at once.
    pub(crate) fn push(&self, p: PreparedDelivery) -> Result<(), QueueError> {
        let event = p.event;
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(QueueError::Closed { event });
        }
        // Counted before sending, so that the task never sees it below zero.
        self.shared.pending.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(p) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.shared.pending.fetch_sub(1, Ordering::AcqRel);
                Err(match e {
                    mpsc::error::TrySendError::Full(_) => QueueError::Full {
                        event,
                        capacity: self.capacity,
                    },
                    mpsc::error::TrySendError::Closed(_) => QueueError::Closed { event },
                })
            }
        }
    }

    /// Waits until the queue is empty or `within` has passed.
    pub(crate) async fn flush(&self, within: Duration) -> QueueReport {
        self.wait_idle(within).await;
        self.report()
    }

    /// Refuses new events, delivers the queued ones within `within`, then
    /// drops what is left and names it in the report.
    pub(crate) async fn shutdown(&self, within: Duration) -> QueueReport {
        self.shared.closed.store(true, Ordering::Release);
        if !self.wait_idle(within).await {
            self.shared.abandon.store(true, Ordering::Release);
            // The task drops the rest at once; only a delivery in flight
            // (bounded by the transport's timeout) is waited for.
            self.wait_idle(Duration::from_secs(5)).await;
        }
        self.report()
    }

    async fn wait_idle(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let idle = self.shared.idle.notified();
            if self.shared.pending.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.shared.pending.load(Ordering::Acquire) == 0;
            }
        }
    }

    fn report(&self) -> QueueReport {
        let s = &self.shared;
        let failed = std::mem::take(&mut *lock(&s.failed));
        let undelivered = std::mem::take(&mut *lock(&s.undelivered));
        let pending = s.pending.load(Ordering::Acquire);
        QueueReport {
            delivered: s.delivered.load(Ordering::Relaxed),
            socket_errors: s.socket_errors.load(Ordering::Relaxed),
            failed,
            failed_count: s.failed_count.swap(0, Ordering::Relaxed),
            undelivered_count: undelivered.len() + pending,
            undelivered,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
