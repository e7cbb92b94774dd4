//! The pub/sub driver under the socketioxide-redis adapter: fred's
//! `SubscriberClient`, with every loss counted and subscriptions restored
//! after a reconnect.
//!
//! socketioxide-redis ships a fred driver, but it only logs when fred's
//! broadcast channel lags or a namespace's queue is full, and it never
//! re-subscribes after Redis restarts. The adapter takes any
//! [`Driver`], so this one speaks the same protocol on the same channels and
//! fixes those three things.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::types::Message;
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::{broadcast, mpsc, watch};

use super::config::RedisConfig;
use super::error::RedisError;
use super::stats::{Counters, RedisStats};

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

/// Longest pause between two attempts to restore a subscription.
const RESUBSCRIBE_MAX_DELAY: Duration = Duration::from_secs(2);

/// The socketioxide-redis [`Driver`] used by [`server`](super::server): fred
/// sharded pub/sub (SSUBSCRIBE/SPUBLISH, RESP3), wire-compatible with
/// socketioxide-redis's own fred driver.
///
/// Unlike that driver it counts messages lost to a full pub/sub buffer
/// ([`RedisStatsSnapshot::lagged`](super::RedisStatsSnapshot::lagged)),
/// waits instead of dropping when a namespace's queue is full, and restores
/// its shard subscriptions every time fred reconnects.
///
/// Only [`server`](super::server) builds one; the type is public so that
/// [`RedisAdapter`](super::RedisAdapter) can be named in handlers.
#[derive(Clone)]
pub struct MeteredFredDriver {
    client: SubscriberClient,
    handlers: Handlers,
    stats: RedisStats,
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
            .fred_builder()
            .build_subscriber_client()
            .map_err(|source| RedisError::Connect {
                target: target.clone(),
                source,
            })?;
        let stats = RedisStats::default();
        let handlers = Handlers::default();
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
            stats.clone(),
            closed_rx.clone(),
        ));
        tokio::spawn(resubscribe_on_reconnect(
            client.clone(),
            stats.clone(),
            closed_rx,
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
        write(&self.handlers).insert(chan.clone(), tx);
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

fn write(
    handlers: &Handlers,
) -> std::sync::RwLockWriteGuard<'_, HashMap<String, mpsc::Sender<ChanItem>>> {
    // The map stays consistent even if a holder panicked: every write is a
    // single insert or remove.
    handlers.write().unwrap_or_else(PoisonError::into_inner)
}

/// Most messages handled per wake-up before the reader goes back to the
/// scheduler, so that it cannot starve the sockets it feeds.
const DRAIN_BATCH: usize = 1024;

/// Hands each message to its namespace's queue, waiting when the queue is
/// full, and counts what fred's buffer dropped meanwhile.
///
/// fred's buffer is small and overwrites what is not read in time, while the
/// namespace queues behind it are large and wait. So the reader empties fred's
/// buffer in batches with non-blocking calls: a `recv().await` per message
/// spends tokio's cooperative budget and sends the reader to the back of a
/// run queue full of socket tasks, where a sustained burst (50,000 events/s)
/// overflowed fred's 8,192 slots while the queues behind it stood empty.
async fn dispatch(
    mut messages: broadcast::Receiver<Message>,
    handlers: Handlers,
    stats: RedisStats,
    mut closed: watch::Receiver<bool>,
) {
    use broadcast::error::{RecvError, TryRecvError};

    let c = stats.counters();
    loop {
        let first = tokio::select! {
            biased;
            _ = closed.wait_for(|closed| *closed) => return,
            received = messages.recv() => received,
        };
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(received) = next.take() {
            match received {
                Ok(message) => forward(message, &handlers, c).await,
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
            if handled == DRAIN_BATCH {
                break;
            }
            next = match messages.try_recv() {
                Ok(message) => Some(Ok(message)),
                Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
                Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
                Err(TryRecvError::Empty) => None,
            };
        }
        if handled == DRAIN_BATCH {
            tokio::task::yield_now().await;
        }
    }
}

/// One message to its namespace's queue.
async fn forward(message: Message, handlers: &Handlers, c: &Counters) {
    let channel = message.channel.to_string();
    let Some(data) = message.value.into_owned_bytes() else {
        // Not a payload at all (e.g. a nil): nothing to decode.
        tracing::warn!(%channel, "dropped a Redis pub/sub message without a payload");
        return;
    };
    Counters::add(&c.received, 1);
    Counters::add(&c.bytes_received, data.len() as u64);
    let handler = handlers
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&channel)
        .cloned();
    let Some(handler) = handler else {
        tracing::debug!(%channel, "message on a channel without a namespace");
        return;
    };
    let sent = match handler.try_send((channel, data)) {
        Ok(()) => Ok(()),
        // Waiting here pushes a burst back into fred's buffer, where an
        // overflow is counted, instead of dropping it unseen.
        Err(mpsc::error::TrySendError::Full(item)) => handler.send(item).await.map_err(drop),
        Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
    };
    if sent.is_err() {
        Counters::add(&c.undeliverable, 1);
        tracing::warn!("dropped a Redis message: its namespace adapter is gone");
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
        Message {
            channel: channel.into(),
            kind: MessageKind::SMessage,
            value: Value::from_static(body),
            server: Server::new("127.0.0.1", 1),
        }
    }

    struct Harness {
        tx: broadcast::Sender<Message>,
        handlers: Handlers,
        stats: RedisStats,
        closed: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    /// A dispatcher over a broadcast channel of `capacity`, started after
    /// `before` messages were already sent (so they can lag).
    fn harness(capacity: usize, before: &[Message]) -> Harness {
        let (tx, rx) = broadcast::channel(capacity);
        for m in before {
            tx.send(m.clone()).unwrap();
        }
        let handlers = Handlers::default();
        let stats = RedisStats::default();
        let (closed, closed_rx) = watch::channel(false);
        let task = tokio::spawn(dispatch(rx, handlers.clone(), stats.clone(), closed_rx));
        Harness {
            tx,
            handlers,
            stats,
            closed,
            task,
        }
    }

    fn handler(h: &Harness, channel: &str, size: usize) -> mpsc::Receiver<ChanItem> {
        let (tx, rx) = mpsc::channel(size);
        write(&h.handlers).insert(channel.to_owned(), tx);
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
        assert_eq!(rx.len(), DRAIN_BATCH);
        assert_eq!(h.stats.snapshot().received, DRAIN_BATCH as u64);
    }

    #[tokio::test]
    async fn a_full_namespace_queue_makes_the_reader_wait_not_drop() {
        let h = harness(64, &[]);
        let mut rx = handler(&h, "c", 1);
        let bodies: [&'static [u8]; 4] = [b"1", b"2", b"3", b"4"];
        for b in bodies {
            h.tx.send(message("c", b)).unwrap();
        }
        for b in bodies {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let (chan, data) = tokio::time::timeout(WAIT, rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!((chan.as_str(), data.as_slice()), ("c", b));
        }
        let s = h.stats.snapshot();
        assert_eq!((s.received, s.lagged, s.undeliverable), (4, 0, 0));
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
        assert_eq!(h.stats.snapshot().undeliverable, 1);
    }

    #[tokio::test]
    async fn shutdown_stops_the_reader() {
        let h = harness(4, &[]);
        h.closed.send_replace(true);
        tokio::time::timeout(WAIT, h.task).await.unwrap().unwrap();
    }
}
