//! The pub/sub driver under the socketioxide-redis adapter: fred's
//! `SubscriberClient`, with every loss counted, subscriptions restored
//! after a reconnect, and every request checked before socketioxide sees it.
//!
//! socketioxide-redis ships a fred driver, but it only logs when fred's
//! broadcast channel lags or a namespace's queue is full, it never
//! re-subscribes after Redis restarts, and it hands the adapter whatever
//! arrives, including requests that panic the adapter's task. The adapter
//! takes any [`Driver`], so this one speaks the same protocol on the same
//! channels and fixes those things.
//!
//! Path of a message: the reader task checks it
//! ([`inbound::check_request`], request channels only) and moves it from
//! fred's buffer straight into its adapter's queue without ever waiting: a
//! queue over its message or byte budget drops and counts instead, so one
//! stuck namespace cannot hold up the others, nor shutdown.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::types::Message;
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::{broadcast, mpsc, watch};

use super::config::RedisConfig;
use super::error::RedisError;
use super::inbound::{self, Rejection, WarnLimiter};
use super::stats::{Counters, RedisStats};

type Handlers = Arc<RwLock<HashMap<String, Arc<Route>>>>;

/// Default byte budget of one channel's queue
/// ([`RedisConfig::adapter_buffer_bytes`]): 64 MiB, twice Redis's own
/// default hard limit on a subscriber's output buffer, so a burst Redis
/// lets through fits.
///
/// ```
/// assert_eq!(broadcast_core::redis::DEFAULT_ADAPTER_BUFFER_BYTES, 64 << 20);
/// ```
pub const DEFAULT_ADAPTER_BUFFER_BYTES: usize = 64 << 20;

/// Where the reader puts one channel's messages: straight into its
/// adapter's own bounded queue (no task in between: a hop per message cost
/// the servers about 15% more CPU per delivery in the end-to-end bench),
/// with the sizes of what is in that queue, so it is bounded in bytes too.
struct Route {
    adapter: mpsc::Sender<ChanItem>,
    /// Request channels are checked; response channels are not.
    check: bool,
    queued: Mutex<Queued>,
}

/// The sizes of the messages in an adapter's queue, oldest first. Only the
/// reader sends into the queue, and the adapter takes from it in order, so
/// when the queue holds `n` messages they are the last `n` sent.
#[derive(Default)]
struct Queued {
    sizes: VecDeque<usize>,
    bytes: usize,
}

impl Route {
    /// Sends one message, unless its queue is over its message or byte
    /// budget (a message larger than the whole budget still goes in when
    /// the queue is empty).
    fn send(&self, item: ChanItem, max_bytes: usize) -> Result<(), (Refused, ChanItem)> {
        let len = item.1.len();
        let mut q = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget what the adapter has taken since: the oldest entries.
        let in_queue = self.adapter.max_capacity() - self.adapter.capacity();
        while q.sizes.len() > in_queue {
            let taken = q.sizes.pop_front().unwrap_or_default();
            q.bytes -= taken;
        }
        if q.bytes > 0 && q.bytes.saturating_add(len) > max_bytes {
            return Err((Refused::Full, item));
        }
        match self.adapter.try_send(item) {
            Ok(()) => {
                q.sizes.push_back(len);
                q.bytes += len;
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(item)) => Err((Refused::Full, item)),
            Err(mpsc::error::TrySendError::Closed(item)) => Err((Refused::Gone, item)),
        }
    }

    #[cfg(test)]
    fn queued_bytes(&self) -> usize {
        self.queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes
    }
}

/// Why a message did not go into its queue.
enum Refused {
    /// Over the message or byte budget: the adapter is not keeping up.
    Full,
    /// The adapter is gone.
    Gone,
}

/// What the reader needs besides the routes: the limits and the log limiters.
#[derive(Debug)]
struct Inbound {
    /// `{prefix}-request#`: channels whose messages are requests to check.
    request_prefix: String,
    max_message_bytes: usize,
    queue_bytes: usize,
    rejected: WarnLimiter,
    overflowed: WarnLimiter,
}

impl Inbound {
    fn new(config: &RedisConfig) -> Self {
        Self {
            request_prefix: format!("{}-request#", config.prefix_str()),
            max_message_bytes: inbound::max_message_bytes(config.max_payload_bytes_value()),
            queue_bytes: config.adapter_buffer_bytes_value(),
            rejected: WarnLimiter::default(),
            overflowed: WarnLimiter::default(),
        }
    }

    fn reject(&self, c: &Counters, channel: &str, reason: Rejection) {
        Counters::add(&c.rejected, 1);
        self.rejected.warn(|suppressed| {
            tracing::warn!(
                %channel,
                %reason,
                not_logged_since_last = suppressed,
                "dropped a Redis message socketioxide must not see"
            );
        });
    }
}

/// Longest pause between two attempts to restore a subscription.
const RESUBSCRIBE_MAX_DELAY: Duration = Duration::from_secs(2);

/// The socketioxide-redis [`Driver`] used by [`server`](super::server): fred
/// sharded pub/sub (SSUBSCRIBE/SPUBLISH, RESP3), wire-compatible with
/// socketioxide-redis's own fred driver.
///
/// Unlike that driver it counts messages lost to a full pub/sub buffer
/// ([`RedisStatsSnapshot::lagged`](super::RedisStatsSnapshot::lagged)) or
/// to a namespace queue over its message or byte budget
/// ([`RedisStatsSnapshot::overflowed`](super::RedisStatsSnapshot::overflowed)),
/// drops requests that are not what this framework publishes before
/// socketioxide sees them
/// ([`RedisStatsSnapshot::rejected`](super::RedisStatsSnapshot::rejected)),
/// and restores its shard subscriptions every time fred reconnects.
///
/// Only [`server`](super::server) builds one; the type is public so that
/// [`RedisAdapter`](super::RedisAdapter) can be named in handlers.
#[derive(Clone)]
pub struct MeteredFredDriver {
    client: SubscriberClient,
    handlers: Handlers,
    stats: RedisStats,
    inbound: Arc<Inbound>,
    // Held here too so the background tasks live as long as the adapter,
    // even if the caller drops its `RedisConnection`.
    _closed: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for MeteredFredDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredFredDriver")
            .field("shard_channels", &self.client.tracked_shard_channels())
            .finish_non_exhaustive()
    }
}

impl MeteredFredDriver {
    /// Connects a subscriber client and starts the reader and the
    /// re-subscriber. They run until [`RedisConnection::shutdown`](super::RedisConnection::shutdown).
    pub(crate) async fn connect(
        config: &RedisConfig,
    ) -> Result<(Self, super::RedisConnection), RedisError> {
        config.validate()?;
        let target = config.target();
        let client = config
            .subscriber_builder()
            .build_subscriber_client()
            .map_err(|source| RedisError::Connect {
                target: target.clone(),
                source,
            })?;
        let stats = RedisStats::default();
        let handlers = Handlers::default();
        let inbound = Arc::new(Inbound::new(config));
        let (closed_tx, closed_rx) = watch::channel(false);
        let closed_tx = Arc::new(closed_tx);
        // Take the receiver before connecting so no message can slip by.
        let messages = client.message_rx();
        client.init().await.map_err(|source| RedisError::Connect {
            target: target.clone(),
            source,
        })?;
        tracing::info!(target = %target, "connected to Redis (subscriber)");
        tokio::spawn(dispatch(
            messages,
            handlers.clone(),
            inbound.clone(),
            stats.clone(),
            closed_rx.clone(),
        ));
        tokio::spawn(resubscribe_on_reconnect(
            client.clone(),
            stats.clone(),
            closed_rx.clone(),
        ));
        let connection = super::RedisConnection::new(
            super::Client::Subscriber(client.clone()),
            stats.clone(),
            closed_tx.clone(),
            target,
            config.command_timeout_value(),
        );
        Ok((
            Self {
                client,
                handlers,
                stats,
                inbound,
                _closed: closed_tx,
            },
            connection,
        ))
    }

    pub(crate) fn client(&self) -> &SubscriberClient {
        &self.client
    }

    pub(crate) fn stats(&self) -> &RedisStats {
        &self.stats
    }

    /// Becomes true when the connection is shut down.
    pub(crate) fn closed(&self) -> watch::Receiver<bool> {
        self._closed.subscribe()
    }

    /// Subscribes `chan` and hands its messages to the adapter that reads
    /// `like` (a namespace's request channel), into the same queue, so the
    /// namespace's budget and order of checks apply. `Ok(false)` when no
    /// adapter reads `like` (the namespace is not open).
    pub(crate) async fn subscribe_routed(
        &self,
        chan: &str,
        like: &str,
    ) -> Result<bool, fred::error::Error> {
        let route = self
            .handlers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(like)
            .cloned();
        let Some(route) = route else {
            return Ok(false);
        };
        // Registered before SSUBSCRIBE, as in `subscribe`.
        write(&self.handlers).insert(chan.to_owned(), route);
        if let Err(e) = self.client.ssubscribe(chan).await {
            write(&self.handlers).remove(chan);
            return Err(e);
        }
        self.stats.counters().subscribed.insert(chan);
        tracing::debug!(channel = %chan, "subscribed");
        Ok(true)
    }

    /// Undoes [`subscribe_routed`](Self::subscribe_routed).
    pub(crate) async fn unsubscribe_routed(&self, chan: &str) -> Result<(), fred::error::Error> {
        self.client.sunsubscribe(chan).await?;
        write(&self.handlers).remove(chan);
        self.stats.counters().subscribed.remove(chan);
        Ok(())
    }
}

impl Driver for MeteredFredDriver {
    type Error = fred::error::Error;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        let c = self.stats.counters();
        let len = val.len() as u64;
        match self.client.spublish::<i64, _, _>(chan, val).await {
            Ok(_) => {
                Counters::add(&c.published, 1);
                Counters::add(&c.bytes_published, len);
                Ok(())
            }
            Err(e) => {
                Counters::add(&c.publish_failed, 1);
                Err(e)
            }
        }
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, Self::Error> {
        // Registered before SSUBSCRIBE so that the first messages, which may
        // arrive before the reply, find their handler.
        let (tx, rx) = mpsc::channel(size.max(1));
        let route = Arc::new(Route {
            adapter: tx,
            check: chan.starts_with(&self.inbound.request_prefix),
            queued: Mutex::default(),
        });
        write(&self.handlers).insert(chan.clone(), route);
        if let Err(e) = self.client.ssubscribe(chan.as_str()).await {
            write(&self.handlers).remove(&chan);
            return Err(e);
        }
        self.stats.counters().subscribed.insert(&chan);
        tracing::debug!(channel = %chan, "subscribed");
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        write(&self.handlers).remove(&chan);
        self.stats.counters().subscribed.remove(&chan);
        self.client.sunsubscribe(chan).await
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        let (_, count): (String, u16) = self.client.pubsub_shardnumsub(chan).await?;
        Ok(count)
    }
}

fn write(handlers: &Handlers) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Route>>> {
    // The map stays consistent even if a holder panicked: every write is a
    // single insert or remove.
    handlers.write().unwrap_or_else(PoisonError::into_inner)
}

/// Messages handled per wake-up before the reader goes back to the
/// scheduler, so that it cannot starve the sockets it feeds.
const DRAIN_BATCH: usize = 1024;

/// Messages still waiting after a full batch past which the reader does not
/// go back to the scheduler but takes all of them first. After the process
/// was stopped for a while (a CPU quota's throttling, a paused VM), fred's
/// router reads the backlog from the socket in turns of thousands of
/// messages; at 1,024 per turn the reader fell behind and fred's buffer
/// overflowed (servers stopped for 300 ms during a 60,000 events/s burst
/// lost messages in 4 runs of 6). Taking everything waiting on every
/// wake-up kept up too, but cost the servers about 5% more CPU per delivery
/// in ordinary bursts, which rarely leave this many behind.
const BACKLOG: usize = 4 * DRAIN_BATCH;

/// Hands each message to its channel's queue and counts what fred's buffer
/// dropped meanwhile. It never waits for a queue: a full one drops and
/// counts, so neither a stuck namespace nor shutdown can hold it.
///
/// fred's buffer is small and overwrites what is not read in time, while the
/// queues behind it are large. So the reader empties fred's buffer in
/// batches with non-blocking calls: a `recv().await` per message spends
/// tokio's cooperative budget and sends the reader to the back of a run
/// queue full of socket tasks, where a sustained burst (50,000 events/s)
/// overflowed fred's buffer while the queues behind it stood empty.
async fn dispatch(
    mut messages: broadcast::Receiver<Message>,
    handlers: Handlers,
    inbound: Arc<Inbound>,
    stats: RedisStats,
    mut closed: watch::Receiver<bool>,
) {
    use broadcast::error::{RecvError, TryRecvError};

    let c = stats.counters();
    // One shutdown future for the reader's life: a new `wait_for` per
    // message registered and removed a waiter on the watch channel every
    // time, a cost per message the plain driver does not pay.
    let shutdown = closed.wait_for(|closed| *closed);
    tokio::pin!(shutdown);
    loop {
        let first = tokio::select! {
            biased;
            _ = &mut shutdown => return,
            received = messages.recv() => received,
        };
        let mut next = Some(first);
        let mut handled = 0;
        let mut turn = DRAIN_BATCH;
        while let Some(received) = next.take() {
            match received {
                Ok(message) => forward(message, &handlers, &inbound, c),
                Err(RecvError::Lagged(n)) => {
                    Counters::add(&c.lagged, n);
                    tracing::error!(
                        lost = n,
                        "Redis pub/sub buffer overflowed: {n} messages lost; raise RedisConfig::pubsub_buffer"
                    );
                }
                Err(RecvError::Closed) => return,
            }
            handled += 1;
            if handled == turn {
                let waiting = messages.len();
                if waiting <= BACKLOG {
                    break;
                }
                turn += waiting;
            }
            next = match messages.try_recv() {
                Ok(message) => Some(Ok(message)),
                Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
                Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
                Err(TryRecvError::Empty) => None,
            };
        }
        if handled == turn {
            tokio::task::yield_now().await;
        }
    }
}

/// One message into its channel's queue, unless it is oversize or the queue
/// is over budget.
fn forward(message: Message, handlers: &Handlers, inbound: &Inbound, c: &Counters) {
    let channel = message.channel.to_string();
    let Some(data) = message.value.into_owned_bytes() else {
        // Not a payload at all (e.g. a nil): nothing to decode.
        tracing::warn!(%channel, "dropped a Redis pub/sub message without a payload");
        return;
    };
    Counters::add(&c.received, 1);
    Counters::add(&c.bytes_received, data.len() as u64);
    let len = data.len();
    if len > inbound.max_message_bytes {
        let max = inbound.max_message_bytes;
        inbound.reject(c, &channel, Rejection::Oversize { len, max });
        return;
    }
    let route = handlers
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&channel)
        .cloned();
    let Some(route) = route else {
        tracing::debug!(%channel, "message on a channel without a namespace");
        return;
    };
    if route.check
        && let Err(reason) = inbound::check_request(&data)
    {
        inbound.reject(c, &channel, reason);
        return;
    }
    match route.send((channel, data), inbound.queue_bytes) {
        Ok(()) => {}
        Err((Refused::Full, (channel, _))) => {
            Counters::add(&c.overflowed, 1);
            inbound.overflowed.warn(|suppressed| {
                tracing::error!(
                    %channel,
                    not_logged_since_last = suppressed,
                    "dropped a Redis message: its namespace's queue is full (its adapter is not keeping up); \
                     raise RedisConfig::adapter_buffer_bytes / adapter_buffer"
                );
            });
        }
        Err((Refused::Gone, _)) => {
            Counters::add(&c.undeliverable, 1);
            tracing::warn!("dropped a Redis message: its namespace adapter is gone");
        }
    }
}

/// fred reconnects by itself but does not restore shard subscriptions on the
/// new connection: without this, cross-server delivery stops silently after
/// a Redis restart.
async fn resubscribe_on_reconnect(
    client: SubscriberClient,
    stats: RedisStats,
    mut closed: watch::Receiver<bool>,
) {
    let c = stats.counters();
    let mut reconnects = client.reconnect_rx();
    loop {
        let event = tokio::select! {
            biased;
            _ = closed.wait_for(|closed| *closed) => return,
            event = reconnects.recv() => event,
        };
        let server = match event {
            Ok(server) => server.to_string(),
            // Missed notifications still mean "reconnected".
            Err(broadcast::error::RecvError::Lagged(_)) => "unknown".to_owned(),
            Err(broadcast::error::RecvError::Closed) => return,
        };
        Counters::add(&c.reconnects, 1);
        // A new connection holds no subscription until restored below.
        c.subscribed.clear();
        tracing::info!(%server, "reconnected to Redis; restoring shard subscriptions");
        for channel in client.tracked_shard_channels() {
            let mut delay = Duration::from_millis(100);
            loop {
                if *closed.borrow() {
                    return;
                }
                // The namespace may have been closed meanwhile.
                if !client.tracked_shard_channels().contains(&channel) {
                    break;
                }
                match client.ssubscribe(channel.to_string()).await {
                    Ok(()) => {
                        Counters::add(&c.resubscribes, 1);
                        c.subscribed.insert(&channel);
                        tracing::debug!(channel = %&*channel, "re-subscribed");
                        break;
                    }
                    Err(error) => {
                        Counters::add(&c.resubscribe_failed, 1);
                        tracing::warn!(channel = %&*channel, %error, "re-subscribing failed; retrying");
                        tokio::select! {
                            _ = closed.wait_for(|closed| *closed) => return,
                            () = tokio::time::sleep(delay) => {}
                        }
                        delay = (delay * 2).min(RESUBSCRIBE_MAX_DELAY);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use fred::prelude::Server;
    use fred::types::{MessageKind, Value};

    use super::*;

    const WAIT: Duration = Duration::from_secs(2);

    fn message(channel: &str, body: &'static [u8]) -> Message {
        message_owned(channel, body.to_vec())
    }

    fn message_owned(channel: &str, body: Vec<u8>) -> Message {
        Message {
            channel: channel.into(),
            kind: MessageKind::SMessage,
            value: Value::Bytes(body.into()),
            server: Server::new("127.0.0.1", 1),
        }
    }

    struct Harness {
        tx: broadcast::Sender<Message>,
        handlers: Handlers,
        inbound: Arc<Inbound>,
        stats: RedisStats,
        closed: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    fn inbound(queue_bytes: usize) -> Arc<Inbound> {
        let config = RedisConfig::from_url("redis://127.0.0.1:1")
            .unwrap()
            .adapter_buffer_bytes(queue_bytes);
        Arc::new(Inbound::new(&config))
    }

    /// A dispatcher over a broadcast channel of `capacity`, started after
    /// `before` messages were already sent (so they can lag).
    fn harness(capacity: usize, before: &[Message]) -> Harness {
        harness_with(capacity, before, DEFAULT_ADAPTER_BUFFER_BYTES)
    }

    fn harness_with(capacity: usize, before: &[Message], queue_bytes: usize) -> Harness {
        let (tx, rx) = broadcast::channel(capacity);
        for m in before {
            tx.send(m.clone()).unwrap();
        }
        let handlers = Handlers::default();
        let stats = RedisStats::default();
        let inbound = inbound(queue_bytes);
        let (closed, closed_rx) = watch::channel(false);
        let task = tokio::spawn(dispatch(
            rx,
            handlers.clone(),
            inbound.clone(),
            stats.clone(),
            closed_rx,
        ));
        Harness {
            tx,
            handlers,
            inbound,
            stats,
            closed,
            task,
        }
    }

    /// A channel as `subscribe` sets it up (checked if it is a request
    /// channel), with an adapter queue of `size` messages.
    fn handler(h: &Harness, channel: &str, size: usize) -> mpsc::Receiver<ChanItem> {
        let (tx, rx) = mpsc::channel(size);
        let route = Arc::new(Route {
            adapter: tx,
            check: channel.starts_with(&h.inbound.request_prefix),
            queued: Mutex::default(),
        });
        write(&h.handlers).insert(channel.to_owned(), route);
        rx
    }

    #[tokio::test]
    async fn overflow_of_the_pubsub_buffer_is_counted_as_lagged() {
        let before: Vec<Message> = (0..5).map(|_| message("c", b"x")).collect();
        let h = harness(2, &before);
        let mut rx = handler(&h, "c", 16);
        // Three of five were overwritten before the reader ran.
        for _ in 0..2 {
            tokio::time::timeout(WAIT, rx.recv())
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(h.stats.snapshot().lagged, 3);
        assert_eq!(h.stats.snapshot().received, 2);
    }

    /// A burst already in fred's buffer is moved in one turn of the reader,
    /// not one message per scheduler round trip (which lost messages under
    /// sustained load: the buffer overflowed while the queues stood empty).
    #[tokio::test]
    async fn a_buffered_burst_is_moved_in_one_turn() {
        let h = harness(2 * DRAIN_BATCH, &[]);
        let rx = handler(&h, "c", 2 * DRAIN_BATCH);
        tokio::task::yield_now().await;
        for _ in 0..DRAIN_BATCH {
            h.tx.send(message("c", b"x")).unwrap();
        }
        // One turn for the reader (the runtime is single-threaded).
        tokio::task::yield_now().await;
        assert_eq!(h.stats.snapshot().received, DRAIN_BATCH as u64);
        assert_eq!(rx.len(), DRAIN_BATCH);
    }

    #[tokio::test]
    async fn a_slow_adapter_gets_everything_in_order() {
        let h = harness(64, &[]);
        let mut rx = handler(&h, "c", 64);
        let bodies: [&'static [u8]; 40] = [b"m"; 40];
        for b in bodies {
            h.tx.send(message("c", b)).unwrap();
        }
        for _ in bodies {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let (chan, data) = tokio::time::timeout(WAIT, rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!((chan.as_str(), data.as_slice()), ("c", &b"m"[..]));
        }
        let s = h.stats.snapshot();
        assert_eq!(
            (s.received, s.lagged, s.undeliverable, s.overflowed),
            (40, 0, 0, 0)
        );
    }

    /// One namespace whose adapter never reads fills its queue up to the
    /// byte budget; past it its messages are dropped and counted, and the
    /// other namespace keeps getting its own at once.
    #[tokio::test]
    async fn a_full_queue_of_one_namespace_does_not_stall_the_others() {
        let budget = 64 * 1024;
        let h = harness_with(1 << 16, &[], budget);
        let _stuck = handler(&h, "stuck", 1 << 20);
        let mut live = handler(&h, "live", 1 << 20);
        let body = vec![7u8; 1024];
        // The budget (64 messages of 1 KiB) fits; the rest overflows.
        for _ in 0..200 {
            h.tx.send(message_owned("stuck", body.clone())).unwrap();
        }
        for i in 0..100u8 {
            h.tx.send(message_owned("live", vec![i])).unwrap();
        }
        for i in 0..100u8 {
            let (_, data) = tokio::time::timeout(WAIT, live.recv())
                .await
                .expect("the live namespace is not held up")
                .unwrap();
            assert_eq!(data, [i]);
        }
        let s = h.stats.snapshot();
        assert_eq!(s.overflowed, 200 - 64, "{s:?}");
        assert_eq!(s.lost(), s.overflowed);
        let queued = h.handlers.read().unwrap()["stuck"].queued_bytes();
        assert!(
            queued <= budget,
            "{queued} bytes queued over a {budget} byte budget"
        );
    }

    #[test]
    fn a_zero_byte_budget_is_a_configuration_error() {
        let config = RedisConfig::from_url("redis://127.0.0.1:1").unwrap();
        assert!(config.validate().is_ok());
        let error = config.adapter_buffer_bytes(0).validate().unwrap_err();
        assert!(
            error.to_string().contains("adapter_buffer_bytes"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn the_message_budget_bounds_a_queue_too() {
        let h = harness(1 << 12, &[]);
        let _stuck = handler(&h, "stuck", 10);
        for _ in 0..100 {
            h.tx.send(message("stuck", b"x")).unwrap();
        }
        let counted = wait_until(|| h.stats.snapshot().received == 100).await;
        assert!(counted);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let overflowed = h.stats.snapshot().overflowed;
        assert_eq!(overflowed, 100 - 10);
    }

    async fn wait_until(mut f: impl FnMut() -> bool) -> bool {
        for _ in 0..200 {
            if f() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_gone_namespace_is_counted_and_others_still_get_theirs() {
        let h = harness(64, &[]);
        drop(handler(&h, "gone", 1));
        let mut rx = handler(&h, "live", 4);
        h.tx.send(message("gone", b"a")).unwrap();
        h.tx.send(message("elsewhere", b"b")).unwrap();
        h.tx.send(message("live", b"c")).unwrap();
        let (_, data) = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(data, b"c");
        assert!(wait_until(|| h.stats.snapshot().undeliverable == 1).await);
    }

    #[tokio::test]
    async fn shutdown_stops_the_reader() {
        let h = harness(4, &[]);
        h.closed.send_replace(true);
        tokio::time::timeout(WAIT, h.task).await.unwrap().unwrap();
    }

    /// Shutdown while a queue is full and its adapter reads nothing: the
    /// reader never waits for a queue, so it ends at once.
    #[tokio::test]
    async fn shutdown_does_not_hang_on_a_full_queue() {
        let h = harness_with(1 << 12, &[], 4096);
        let _stuck = handler(&h, "stuck", 1 << 20);
        for _ in 0..1000 {
            h.tx.send(message_owned("stuck", vec![0; 512])).unwrap();
        }
        assert!(wait_until(|| h.stats.snapshot().received == 1000).await);
        h.closed.send_replace(true);
        tokio::time::timeout(WAIT, h.task).await.unwrap().unwrap();
    }

    /// As the adapter takes messages, their bytes leave the budget, so a
    /// queue that drained takes a full budget again.
    #[tokio::test]
    async fn the_byte_budget_follows_what_the_adapter_takes() {
        let h = harness_with(1 << 12, &[], 4096);
        let mut rx = handler(&h, "c", 1 << 20);
        for _ in 0..16 {
            h.tx.send(message_owned("c", vec![0; 512])).unwrap();
        }
        assert!(wait_until(|| h.stats.snapshot().received == 16).await);
        assert_eq!(h.stats.snapshot().overflowed, 8);
        for _ in 0..8 {
            rx.recv().await.unwrap();
        }
        for _ in 0..8 {
            h.tx.send(message_owned("c", vec![1; 512])).unwrap();
        }
        assert!(wait_until(|| h.stats.snapshot().received == 24).await);
        assert_eq!(h.stats.snapshot().overflowed, 8);
        assert_eq!(h.handlers.read().unwrap()["c"].queued_bytes(), 4096);
    }

    fn request(inner: socketioxide_core::packet::PacketData) -> Vec<u8> {
        use socketioxide_core::adapter::BroadcastOptions;
        use socketioxide_core::adapter::remote_packet::{RequestOut, RequestTypeOut};
        let packet = socketioxide_core::packet::Packet {
            inner,
            ns: "/".to_owned().into(),
        };
        let opts = BroadcastOptions::default();
        let req = RequestOut::new(
            socketioxide_core::Uid::new(),
            RequestTypeOut::Broadcast(&packet),
            &opts,
        );
        rmp_serde::to_vec(&req).unwrap()
    }

    /// Requests are checked on request channels only; responses go through.
    #[tokio::test]
    async fn requests_that_fail_the_check_are_rejected_and_counted() {
        use socketioxide_core::Value as SioValue;
        use socketioxide_core::packet::PacketData;
        let h = harness(64, &[]);
        let mut requests = handler(&h, "socket.io-request#/#", 64);
        let mut responses = handler(&h, "socket.io-response#/#x#", 64);
        let good = request(PacketData::Event(
            SioValue::Str("[\"e\"]".to_owned().into(), None),
            None,
        ));
        let bad = request(PacketData::Event(SioValue::Bytes(vec![1].into()), None));
        let huge = vec![0u8; h.inbound.max_message_bytes + 1];
        for data in [bad.clone(), b"junk".to_vec(), huge, good.clone()] {
            h.tx.send(message_owned("socket.io-request#/#", data))
                .unwrap();
        }
        h.tx.send(message_owned("socket.io-response#/#x#", bad.clone()))
            .unwrap();
        let (_, data) = tokio::time::timeout(WAIT, requests.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(data, good);
        let (_, data) = tokio::time::timeout(WAIT, responses.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(data, bad);
        assert_eq!(h.stats.snapshot().rejected, 3);
        assert!(requests.try_recv().is_err());
    }
}
