//! The broadcaster: runs an event's pipeline and hands the result to a transport.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use broadcast_rules::validate_room;
use socketioxide::socket::Sid;
use tracing::Instrument;

use crate::error::{AlreadyInstalled, BroadcastError, TransportError};
use crate::event::BroadcastEvent;
use crate::prepared::PreparedDelivery;
use crate::queue::{DEFAULT_QUEUE_CAPACITY, QueueCore, QueueError, QueueReport};
use crate::target::{IntoTargets, Targets};
#[cfg(doc)]
use crate::transport::Delivery;
use crate::transport::{DeliveryReport, RemoteReceivers, Transport};
use crate::util::{BoxFuture, echo};

/// Default limit on a serialized payload: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Runs broadcasts: `when` -> targets -> payload -> one serialization -> the
/// transport. Cheap to clone (an `Arc`).
///
/// ```no_run
/// # use broadcast_core::{Broadcaster, BroadcastEvent};
/// # #[derive(serde::Serialize, BroadcastEvent)]
/// # #[broadcast(on = "lobby")]
/// # struct Hello { text: String }
/// # async fn run() -> Result<(), broadcast_core::BroadcastError> {
/// let (_layer, io) = socketioxide::SocketIo::new_layer();
/// io.ns("/", async |_: socketioxide::extract::SocketRef| {});
/// let broadcaster = Broadcaster::socketio(io);
/// broadcaster.broadcast(Hello { text: "hi".into() }).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Broadcaster {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Box<dyn Transport>,
    max_payload_bytes: usize,
    stats: Counters,
    queue_capacity: usize,
    /// Started by the first `queue()`.
    queue: OnceLock<QueueCore>,
}

impl std::fmt::Debug for Broadcaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcaster")
            .field("max_payload_bytes", &self.inner.max_payload_bytes)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Configures a [`Broadcaster`] over any [`Transport`].
///
/// ```no_run
/// use broadcast_core::Broadcaster;
/// use broadcast_core::transport::SocketIoTransport;
/// let (_layer, io) = socketioxide::SocketIo::new_layer();
/// let b = Broadcaster::builder(SocketIoTransport::new(io))
///     .max_payload_bytes(64 * 1024)
///     .build();
/// ```
pub struct BroadcasterBuilder {
    transport: Box<dyn Transport>,
    max_payload_bytes: usize,
    queue_capacity: usize,
}

impl BroadcasterBuilder {
    /// Largest serialized payload accepted, in bytes (default 1 MiB).
    pub fn max_payload_bytes(mut self, limit: usize) -> Self {
        self.max_payload_bytes = limit;
        self
    }

    /// How many events [`Broadcast::queue`] holds before it answers
    /// [`QueueError::Full`] (default 16,384).
    ///
    /// ```no_run
    /// # let (_layer, io) = socketioxide::SocketIo::new_layer();
    /// let b = broadcast_core::Broadcaster::builder(broadcast_core::transport::SocketIoTransport::new(io))
    ///     .queue_capacity(100_000)
    ///     .build();
    /// ```
    pub fn queue_capacity(mut self, events: usize) -> Self {
        self.queue_capacity = events;
        self
    }

    /// Builds the broadcaster.
    pub fn build(self) -> Broadcaster {
        Broadcaster {
            inner: Arc::new(Inner {
                transport: self.transport,
                max_payload_bytes: self.max_payload_bytes,
                stats: Counters::default(),
                queue_capacity: self.queue_capacity,
                queue: OnceLock::new(),
            }),
        }
    }
}

/// What a successful broadcast did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing was sent, and why.
    Skipped(SkipReason),
    /// The event was handed to the transport.
    #[non_exhaustive]
    Delivered {
        /// The targets it went to.
        targets: Targets,
        /// Size of the serialized payload.
        bytes: usize,
        /// Local sockets that could not be written to (closed mid-broadcast).
        socket_errors: usize,
        /// Through Redis: per namespace, how many other processes received
        /// the publish (see [`Outcome::remote_receivers`]); empty for
        /// in-process delivery.
        remote: Vec<RemoteReceivers>,
    },
}

impl Outcome {
    /// Whether the event was delivered.
    pub fn is_delivered(&self) -> bool {
        matches!(self, Outcome::Delivered { .. })
    }

    /// The targets it was delivered to (empty when skipped).
    pub fn targets(&self) -> Option<&Targets> {
        match self {
            Outcome::Delivered { targets, .. } => Some(targets),
            Outcome::Skipped(_) => None,
        }
    }

    /// How many other processes received the publish to `namespace`
    /// through Redis: the other servers subscribed to it (for a worker:
    /// every server) when Redis handled it. `None` when nothing was
    /// published for that namespace (in-process delivery, skipped, another
    /// namespace).
    ///
    /// `Some(0)` is normal with a single server; with several it means
    /// they missed the event, typically while re-subscribing after a
    /// Redis restart (counted in `RedisStatsSnapshot::no_receivers`).
    /// Redis counts subscriptions, not sockets: a server that received the
    /// request may still have no socket in the rooms.
    ///
    /// ```no_run
    /// # use broadcast_core::BroadcastEvent;
    /// # #[derive(serde::Serialize, BroadcastEvent)]
    /// # struct Ping;
    /// # async fn run(b: broadcast_core::Broadcaster) -> Result<(), broadcast_core::BroadcastError> {
    /// let outcome = b.broadcast(Ping).await?;
    /// if outcome.remote_receivers("/") == Some(0) {
    ///     tracing::warn!("no other server received it");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn remote_receivers(&self, namespace: &str) -> Option<u64> {
        match self {
            Outcome::Delivered { remote, .. } => remote
                .iter()
                .find(|r| r.namespace == namespace)
                .map(|r| r.receivers),
            Outcome::Skipped(_) => None,
        }
    }
}

/// Why a broadcast sent nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// `broadcast_when` returned false.
    When,
    /// `broadcast_on` returned no target.
    NoTargets,
    /// The delivery's idempotency key was delivered before (an outbox row
    /// delivered again after a relay crash): nothing was sent this time.
    Duplicate,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
}

/// Counters of one broadcaster since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Broadcasts handed to the transport successfully.
    pub delivered: u64,
    /// Broadcasts skipped by `when` or for lack of targets.
    pub skipped: u64,
    /// Broadcasts that returned an error.
    pub failed: u64,
    /// Payload bytes delivered.
    pub bytes: u64,
}

impl Broadcaster {
    /// Configures a broadcaster over `transport` (limits, a transport of your
    /// own); [`socketio`](Self::socketio) is the short way for the usual one.
    pub fn builder(transport: impl Transport) -> BroadcasterBuilder {
        BroadcasterBuilder {
            transport: Box::new(transport),
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }

    /// Broadcasts `event` through this broadcaster rather than the
    /// installed one: [`broadcast`] with an explicit broadcaster. `.await`
    /// it (after optional `except`s).
    pub fn broadcast<E: BroadcastEvent + 'static>(&self, event: E) -> Broadcast<E> {
        Broadcast::new(event, Some(self.clone()))
    }

    /// Counters since this broadcaster was built.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.stats;
        Stats {
            delivered: c.delivered.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
        }
    }

    /// The whole pipeline for one event.
    async fn send<E: BroadcastEvent>(
        &self,
        event: &E,
        except: &Except,
    ) -> Result<Outcome, BroadcastError> {
        let span = tracing::debug_span!("broadcast", event = E::NAME);
        let result = self.run(event, except).instrument(span.clone()).await;
        let _enter = span.enter();
        self.count(&result);
        result
    }

    async fn run<E: BroadcastEvent>(
        &self,
        event: &E,
        except: &Except,
    ) -> Result<Outcome, BroadcastError> {
        let prepared = match self.prepare(event, except).await? {
            Prepared::Ready(p) => p,
            Prepared::Skipped(reason) => return Ok(Outcome::Skipped(reason)),
        };
        let (report, bytes) = self.transmit(&prepared, None).await?;
        Ok(Outcome::Delivered {
            targets: prepared.targets,
            bytes,
            socket_errors: report.socket_errors,
            remote: report.remote,
        })
    }

    /// The pipeline up to the transport: `when`, targets, payload, the one
    /// serialization and the size limit.
    async fn prepare<E: BroadcastEvent>(
        &self,
        event: &E,
        except: &Except,
    ) -> Result<Prepared, BroadcastError> {
        if !event.broadcast_when().await {
            return Ok(Prepared::Skipped(SkipReason::When));
        }
        let mut targets = Targets::new();
        event
            .broadcast_on()
            .await
            .into_targets(E::NAMESPACE, &mut targets);
        if targets.is_empty() {
            return Ok(Prepared::Skipped(SkipReason::NoTargets));
        }
        targets
            .validate()
            .map_err(|(target, source)| BroadcastError::InvalidTarget {
                event: E::NAME,
                target,
                source,
            })?;
        if let Some(bad) = &except.invalid {
            return Err(BroadcastError::InvalidExceptSocket {
                event: E::NAME,
                id: echo(bad),
            });
        }
        for room in &except.rooms {
            validate_room(room).map_err(|source| BroadcastError::InvalidExcept {
                event: E::NAME,
                room: room.to_string(),
                source,
            })?;
        }
        // The one serialization of this event; transports copy the bytes.
        // The block ends the payload value's life before the next await, so
        // it need not be `Send`.
        let serialized = {
            let value = event
                .broadcast_as()
                .await
                .map_err(|source| BroadcastError::Payload {
                    event: E::NAME,
                    source,
                })?;
            serde_json::value::to_raw_value(&value)
        };
        let payload = serialized.map_err(|source| BroadcastError::Serialize {
            event: E::NAME,
            source,
        })?;
        let bytes = payload.get().len();
        if bytes > self.inner.max_payload_bytes {
            return Err(BroadcastError::PayloadTooLarge {
                event: E::NAME,
                size: bytes,
                limit: self.inner.max_payload_bytes,
            });
        }
        Ok(Prepared::Ready(PreparedDelivery {
            event: E::NAME,
            targets,
            except_sockets: except.sockets.clone(),
            except_rooms: except.rooms.clone(),
            payload,
        }))
    }

    /// Hands a prepared delivery to the transport; returns its report and
    /// the payload size.
    async fn transmit(
        &self,
        p: &PreparedDelivery,
        id: Option<&str>,
    ) -> Result<(DeliveryReport, usize), BroadcastError> {
        match self.inner.transport.deliver(p.as_delivery(id)).await {
            Ok(report) => Ok((report, p.payload.get().len())),
            Err(failure) => Err(BroadcastError::Transport {
                event: p.event,
                namespace: format!(
                    "namespace `{}` (rooms {:?})",
                    failure.target.namespace, failure.target.rooms
                ),
                source: failure.error,
            }),
        }
    }

    /// Delivers an event prepared earlier ([`Broadcast::prepare`], an
    /// outbox row, a queued event) through this broadcaster's transport,
    /// with its counters. `id`, when given, is the delivery's idempotency
    /// key: a transport that saw it before sends nothing and the outcome is
    /// [`SkipReason::Duplicate`] (see [`Delivery::id`]).
    ///
    /// ```no_run
    /// # use broadcast_core::{BroadcastEvent, Broadcaster, Prepared};
    /// # #[derive(serde::Serialize, BroadcastEvent)]
    /// # struct Ping;
    /// # async fn run(b: Broadcaster) -> Result<(), broadcast_core::BroadcastError> {
    /// if let Prepared::Ready(p) = b.broadcast(Ping).prepare().await? {
    ///     b.deliver(&p, Some("ping-1")).await?;
    ///     b.deliver(&p, Some("ping-1")).await?; // a duplicate: sends nothing
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn deliver(
        &self,
        prepared: &PreparedDelivery,
        id: Option<&str>,
    ) -> Result<Outcome, BroadcastError> {
        let span = tracing::debug_span!("deliver", event = prepared.event, id);
        let result = async {
            let (report, bytes) = self.transmit(prepared, id).await?;
            if report.duplicate {
                return Ok(Outcome::Skipped(SkipReason::Duplicate));
            }
            Ok(Outcome::Delivered {
                targets: prepared.targets.clone(),
                bytes,
                socket_errors: report.socket_errors,
                remote: report.remote,
            })
        }
        .instrument(span.clone())
        .await;
        let _enter = span.enter();
        self.count(&result);
        result
    }

    /// The queue, started on first use (on the caller's tokio runtime).
    fn queue_core(&self) -> &QueueCore {
        self.inner.queue.get_or_init(|| {
            // Weak: the queue lives inside the broadcaster it delivers with.
            let inner = Arc::downgrade(&self.inner);
            QueueCore::spawn(
                self.inner.queue_capacity,
                Arc::new(move |p: PreparedDelivery| {
                    let inner = inner.upgrade();
                    Box::pin(async move {
                        let Some(inner) = inner else {
                            return Err(BroadcastError::Transport {
                                event: p.event,
                                namespace: format!("{:?}", p.targets.room_names()),
                                source: TransportError::Adapter(
                                    "the broadcaster was dropped".into(),
                                ),
                            });
                        };
                        let outcome = Broadcaster { inner }.deliver(&p, None).await?;
                        Ok(match outcome {
                            Outcome::Delivered { socket_errors, .. } => socket_errors,
                            Outcome::Skipped(_) => 0,
                        })
                    })
                }),
            )
        })
    }

    /// Waits until every event queued with [`Broadcast::queue`] has been
    /// delivered, or `within` has passed; reports the deliveries that failed
    /// since the last report and what is still queued.
    ///
    /// ```no_run
    /// # async fn run(b: broadcast_core::Broadcaster) {
    /// let report = b.flush(std::time::Duration::from_secs(5)).await;
    /// if !report.is_complete() {
    ///     tracing::warn!(?report, "some queued broadcasts were not delivered");
    /// }
    /// # }
    /// ```
    pub async fn flush(&self, within: Duration) -> QueueReport {
        self.queue_core().flush(within).await
    }

    /// Graceful shutdown of the queue: refuses new events
    /// ([`QueueError::Closed`]), delivers what is queued within `within`,
    /// then drops the rest and names it in the report
    /// ([`QueueReport::undelivered`]). Direct broadcasts still work.
    ///
    /// With axum, run it in the graceful-shutdown future, before the
    /// server stops, so that the sockets are still connected:
    ///
    /// ```no_run
    /// # async fn run(b: broadcast_core::Broadcaster, app: axum::Router, l: tokio::net::TcpListener,
    /// #     signal: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    /// axum::serve(l, app)
    ///     .with_graceful_shutdown(async move {
    ///         signal.await; // SIGTERM, Ctrl-C
    ///         let report = b.shutdown(std::time::Duration::from_secs(10)).await;
    ///         tracing::info!(?report, "broadcast queue drained");
    ///     })
    ///     .await
    /// # }
    /// ```
    pub async fn shutdown(&self, within: Duration) -> QueueReport {
        self.queue_core().shutdown(within).await
    }

    /// Delivers prepared events in order, as [`deliver`](Self::deliver)
    /// one after the other would, stopping at the first failure (the last
    /// result is then that failure; the events after it were not tried).
    /// A transport may send a run of them in one round trip (the Redis
    /// worker does, for deliveries with ids): how an outbox relay keeps up.
    ///
    /// ```no_run
    /// # use broadcast_core::{Broadcaster, PreparedDelivery};
    /// # async fn run(b: Broadcaster, p1: PreparedDelivery, p2: PreparedDelivery) {
    /// let results = b.deliver_all(&[(&p1, Some("id-1")), (&p2, Some("id-2"))]).await;
    /// assert!(results.len() <= 2);
    /// # }
    /// ```
    pub async fn deliver_all(
        &self,
        items: &[(&PreparedDelivery, Option<&str>)],
    ) -> Vec<Result<Outcome, BroadcastError>> {
        let deliveries = items.iter().map(|(p, id)| p.as_delivery(*id)).collect();
        let reports = self.inner.transport.deliver_all(deliveries).await;
        reports
            .into_iter()
            .zip(items)
            .map(|(report, (p, _))| {
                let result = match report {
                    Ok(report) if report.duplicate => Ok(Outcome::Skipped(SkipReason::Duplicate)),
                    Ok(report) => Ok(Outcome::Delivered {
                        targets: p.targets.clone(),
                        bytes: p.payload.get().len(),
                        socket_errors: report.socket_errors,
                        remote: report.remote,
                    }),
                    Err(failure) => Err(BroadcastError::Transport {
                        event: p.event,
                        namespace: format!(
                            "namespace `{}` (rooms {:?})",
                            failure.target.namespace, failure.target.rooms
                        ),
                        source: failure.error,
                    }),
                };
                self.count(&result);
                result
            })
            .collect()
    }

    /// Updates the counters and logs one result.
    fn count(&self, result: &Result<Outcome, BroadcastError>) {
        let c = &self.inner.stats;
        match result {
            Ok(Outcome::Delivered {
                targets,
                bytes,
                socket_errors,
                ..
            }) => {
                c.delivered.fetch_add(1, Ordering::Relaxed);
                c.bytes.fetch_add(*bytes as u64, Ordering::Relaxed);
                tracing::debug!(targets = targets.len(), bytes, socket_errors, "delivered");
            }
            Ok(Outcome::Skipped(reason)) => {
                c.skipped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(?reason, "skipped");
            }
            Err(error) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "broadcast failed");
            }
        }
    }
}

/// What [`Broadcast::queue`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// The queue holds it; it will be delivered in order.
    Accepted,
    /// Its pipeline decided not to send it (`when`, no target).
    Skipped(SkipReason),
}

/// What [`Broadcast::prepare`] gives: an event ready to deliver, or why
/// there is nothing to send.
#[derive(Debug, Clone)]
pub enum Prepared {
    /// The pipeline ran: deliver it now or later.
    Ready(PreparedDelivery),
    /// Nothing to send, and why.
    Skipped(SkipReason),
}

/// A broadcast being prepared: add exclusions, then `.await` it. Nothing is
/// sent until it is awaited; one dropped unawaited is logged at `warn`
/// (and `let _ = broadcast(..)` is caught by clippy's
/// `let_underscore_future`).
///
/// ```no_run
/// # use broadcast_core::{broadcast, BroadcastEvent};
/// # #[derive(serde::Serialize, BroadcastEvent)]
/// # #[broadcast(on = "chat|1")]
/// # struct MessagePosted { text: String }
/// # async fn handler(sender: socketioxide::socket::Sid) -> Result<(), broadcast_core::BroadcastError> {
/// // Everyone in `chat|1` but the socket that sent the message:
/// broadcast(MessagePosted { text: "hi".into() }).except(sender).await?;
/// # Ok(()) }
/// ```
#[must_use = "a broadcast does nothing until it is awaited"]
pub struct Broadcast<E: BroadcastEvent + 'static> {
    state: State<E>,
}

enum State<E> {
    Prepared {
        event: E,
        broadcaster: Option<Broadcaster>,
        except: Except,
    },
    Running(BoxFuture<'static, Result<Outcome, BroadcastError>>),
    Done,
}

// The event is moved into a boxed future before the first poll and never
// pinned in place, so `Broadcast` can be `Unpin` whatever `E` is.
impl<E: BroadcastEvent + 'static> Unpin for Broadcast<E> {}

/// Who a broadcast skips.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Except {
    /// Sockets to skip.
    pub(crate) sockets: Vec<Sid>,
    /// Rooms whose sockets to skip.
    pub(crate) rooms: Vec<Cow<'static, str>>,
    /// A socket id given as text that did not parse; fails the broadcast.
    invalid: Option<String>,
}

impl<E: BroadcastEvent + 'static> Broadcast<E> {
    fn new(event: E, broadcaster: Option<Broadcaster>) -> Self {
        Self {
            state: State::Prepared {
                event,
                broadcaster,
                except: Except::default(),
            },
        }
    }

    fn except_mut(&mut self) -> Option<&mut Except> {
        match &mut self.state {
            State::Prepared { except, .. } => Some(except),
            State::Running(_) | State::Done => None,
        }
    }

    /// Runs the event's pipeline (`when`, targets, payload, the one
    /// serialization, the size limit) without delivering it: the result can
    /// be stored and delivered later with [`Broadcaster::deliver`].
    ///
    /// ```
    /// # use broadcast_core::{BroadcastEvent, Prepared, testing::FakeBroadcaster};
    /// # #[derive(serde::Serialize, BroadcastEvent)]
    /// # #[broadcast(on = "lobby")]
    /// # struct Ping;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let b = FakeBroadcaster::new().broadcaster();
    /// let Prepared::Ready(p) = b.broadcast(Ping).prepare().await.unwrap() else { unreachable!() };
    /// assert_eq!(p.targets().room_names(), ["lobby"]);
    /// # }
    /// ```
    pub async fn prepare(self) -> Result<Prepared, BroadcastError> {
        self.prepare_with().await.map(|(_, p)| p)
    }

    /// [`prepare`](Self::prepare), with the broadcaster it used.
    pub(crate) async fn prepare_with(mut self) -> Result<(Broadcaster, Prepared), BroadcastError> {
        let State::Prepared {
            event,
            broadcaster,
            except,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            panic!(
                "a `Broadcast` of `{}` was prepared after it was polled",
                E::NAME
            );
        };
        let broadcaster = match broadcaster {
            Some(b) => b,
            None => current().ok_or(BroadcastError::NotInstalled { event: E::NAME })?,
        };
        let prepared = broadcaster.prepare(&event, &except).await;
        if let Err(e) = &prepared {
            broadcaster
                .inner
                .stats
                .failed
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(event = E::NAME, error = %e, "broadcast failed");
        }
        Ok((broadcaster, prepared?))
    }

    /// Runs the event's pipeline now and hands the result to the
    /// broadcaster's bounded in-process queue, which delivers it in the
    /// background, in order. Returns once the queue accepted it; a full
    /// queue is [`QueueError::Full`], an event that fails its pipeline is
    /// [`QueueError::Broadcast`]. See [`Broadcaster::flush`] and
    /// [`Broadcaster::shutdown`].
    ///
    /// ```no_run
    /// # use broadcast_core::{broadcast, BroadcastEvent, Queued};
    /// # #[derive(serde::Serialize, BroadcastEvent)]
    /// # struct Ping;
    /// # async fn run() -> Result<(), broadcast_core::QueueError> {
    /// assert_eq!(broadcast(Ping).queue().await?, Queued::Accepted);
    /// # Ok(()) }
    /// ```
    pub async fn queue(self) -> Result<Queued, QueueError> {
        let (broadcaster, prepared) = self.prepare_with().await?;
        match prepared {
            Prepared::Ready(p) => {
                broadcaster.queue_core().push(p)?;
                Ok(Queued::Accepted)
            }
            Prepared::Skipped(reason) => {
                broadcaster.count(&Ok(Outcome::Skipped(reason)));
                Ok(Queued::Skipped(reason))
            }
        }
    }

    /// Skips one socket (Laravel's `toOthers()`, Phoenix's `broadcast_from`).
    pub fn except(mut self, socket: Sid) -> Self {
        if let Some(except) = self.except_mut() {
            except.sockets.push(socket);
        }
        self
    }

    /// Skips a socket given by its id as text (e.g. from an `X-Socket-ID`
    /// header). An id that does not parse fails the broadcast with
    /// [`BroadcastError::InvalidExceptSocket`], rather than silently
    /// sending to all.
    pub fn except_socket_id(mut self, socket_id: impl AsRef<str>) -> Self {
        let text = socket_id.as_ref();
        if let Some(except) = self.except_mut() {
            match text.parse::<Sid>() {
                Ok(sid) => except.sockets.push(sid),
                Err(_) => except.invalid = Some(text.to_string()),
            }
        }
        self
    }

    /// Skips every socket in these rooms.
    pub fn except_rooms<R: Into<Cow<'static, str>>>(
        mut self,
        rooms: impl IntoIterator<Item = R>,
    ) -> Self {
        if let Some(except) = self.except_mut() {
            except.rooms.extend(rooms.into_iter().map(Into::into));
        }
        self
    }
}

impl<E: BroadcastEvent + 'static> Future for Broadcast<E> {
    type Output = Result<Outcome, BroadcastError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.state = match std::mem::replace(&mut this.state, State::Done) {
            State::Prepared {
                event,
                broadcaster,
                except,
            } => State::Running(Box::pin(async move {
                let broadcaster = match broadcaster {
                    Some(b) => b,
                    None => current().ok_or(BroadcastError::NotInstalled { event: E::NAME })?,
                };
                broadcaster.send(&event, &except).await
            })),
            other => other,
        };
        match &mut this.state {
            State::Running(fut) => {
                let out = fut.as_mut().poll(cx);
                if out.is_ready() {
                    this.state = State::Done;
                }
                out
            }
            State::Prepared { .. } | State::Done => {
                panic!(
                    "a `Broadcast` of `{}` was polled after it completed",
                    E::NAME
                )
            }
        }
    }
}

impl<E: BroadcastEvent + 'static> Drop for Broadcast<E> {
    fn drop(&mut self) {
        if let State::Prepared { .. } = self.state {
            tracing::warn!(
                event = E::NAME,
                "a broadcast was dropped without being awaited: nothing was sent"
            );
        }
    }
}

static GLOBAL: OnceLock<Broadcaster> = OnceLock::new();

tokio::task_local! {
    static SCOPED: Broadcaster;
}

/// Installs the process-wide broadcaster that [`broadcast`] uses. Call once at
/// startup; a second call is an error.
///
/// ```
/// use broadcast_core::testing::FakeBroadcaster;
/// broadcast_core::install(FakeBroadcaster::new().broadcaster()).unwrap();
/// assert!(broadcast_core::install(FakeBroadcaster::new().broadcaster()).is_err());
/// ```
pub fn install(broadcaster: Broadcaster) -> Result<(), AlreadyInstalled> {
    GLOBAL.set(broadcaster).map_err(|_| AlreadyInstalled)
}

/// The broadcaster [`broadcast`] would use here: the one of the enclosing
/// [`with_broadcaster`] scope, else the installed one.
fn current() -> Option<Broadcaster> {
    SCOPED
        .try_with(Clone::clone)
        .ok()
        .or_else(|| GLOBAL.get().cloned())
}

/// Runs `fut` with `broadcaster` as the one [`broadcast`] uses inside it
/// (within this task). Tests use it to give each test its own fake.
///
/// ```
/// # use broadcast_core::{broadcast, BroadcastEvent, testing::FakeBroadcaster};
/// # #[derive(serde::Serialize, BroadcastEvent)]
/// # struct Ping;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let fake = FakeBroadcaster::new();
/// broadcast_core::with_broadcaster(fake.broadcaster(), async {
///     broadcast(Ping).await.unwrap();
/// }).await;
/// fake.assert_broadcast::<Ping>();
/// # }
/// ```
pub async fn with_broadcaster<F: Future>(broadcaster: Broadcaster, fut: F) -> F::Output {
    SCOPED.scope(broadcaster, fut).await
}

/// Broadcasts `event` with the installed broadcaster; `.await` the result.
///
/// ```no_run
/// use broadcast_core::{broadcast, BroadcastEvent};
///
/// #[derive(serde::Serialize, BroadcastEvent)]
/// #[broadcast(on = "chat|{chat_id}")]
/// struct MessagePosted { chat_id: u64, text: String }
///
/// # async fn handler() -> Result<(), broadcast_core::BroadcastError> {
/// broadcast(MessagePosted { chat_id: 1, text: "hello".into() }).await?;
/// # Ok(()) }
/// ```
pub fn broadcast<E: BroadcastEvent + 'static>(event: E) -> Broadcast<E> {
    Broadcast::new(event, None)
}
