//! History kept in the process, for a server without Redis.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use socketioxide::adapter::Adapter;

use super::{Append, Feed, Live, Read, Store, Stored, new_epoch, now_ms};
use crate::error::TransportError;
use crate::position::{HistoryPolicy, Position};
use crate::transport::RecentIds;
use crate::util::BoxFuture;

/// Streams are pruned when there are more than this many.
const PRUNE_AT: usize = 4096;

/// Every history room's stream, in memory. Appending holds the room's
/// stream while the event is delivered, so concurrent broadcasts to one
/// room reach every socket in offset order.
pub(crate) struct MemoryStore<A: Adapter> {
    feed: Weak<Feed<A>>,
    /// Ids of appended events, per room.
    recent: RecentIds,
    streams: Mutex<HashMap<(String, String), Shared>>,
}

/// One room's stream, locked while an event is appended and delivered.
type Shared = Arc<tokio::sync::Mutex<Stream>>;

struct Stream {
    epoch: String,
    top: u64,
    events: VecDeque<Stored>,
    /// When the last event was appended: a stream idle past its TTL has
    /// nothing left and is dropped (its next event starts a new epoch).
    touched_ms: u64,
}

impl Stream {
    fn new() -> Self {
        Self {
            epoch: new_epoch(),
            top: 0,
            events: VecDeque::new(),
            touched_ms: now_ms(),
        }
    }

    fn trim(&mut self, policy: HistoryPolicy, now: u64) {
        let oldest = now.saturating_sub(policy.ttl_secs.saturating_mul(1000));
        while self.events.len() > policy.size as usize
            || self.events.front().is_some_and(|e| e.at_ms < oldest)
        {
            self.events.pop_front();
        }
    }
}

impl<A: Adapter> MemoryStore<A> {
    pub(crate) fn new(feed: Arc<Feed<A>>) -> Self {
        Self {
            feed: Arc::downgrade(&feed),
            recent: RecentIds::default(),
            streams: Mutex::new(HashMap::new()),
        }
    }

    fn stream(
        &self,
        namespace: &str,
        room: &str,
        policy: HistoryPolicy,
    ) -> Arc<tokio::sync::Mutex<Stream>> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        if streams.len() >= PRUNE_AT {
            let now = now_ms();
            let ttl_ms = policy.ttl_secs.saturating_mul(1000);
            streams.retain(|_, s| {
                Arc::strong_count(s) > 1
                    || s.try_lock()
                        .map_or(true, |s| now.saturating_sub(s.touched_ms) < ttl_ms)
            });
        }
        streams
            .entry((namespace.to_owned(), room.to_owned()))
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(Stream::new())))
            .clone()
    }
}

impl<A: Adapter> Store for MemoryStore<A> {
    fn append<'a>(&'a self, e: Append<'a>) -> BoxFuture<'a, Result<Option<u64>, TransportError>> {
        Box::pin(async move {
            if let Some(id) = e.id
                && !self
                    .recent
                    .claim(&format!("{}\0{}\0{id}", e.namespace, e.room))
            {
                return Ok(None);
            }
            let stream = self.stream(e.namespace, e.room, e.policy);
            let mut s = stream.lock().await;
            let now = now_ms();
            if now.saturating_sub(s.touched_ms) > e.policy.ttl_secs.saturating_mul(1000)
                && s.top > 0
            {
                // Idle past its TTL: what it held is gone, offsets restart.
                *s = Stream::new();
            }
            s.top += 1;
            s.touched_ms = now;
            let stored = Stored {
                offset: s.top,
                event: e.event.to_owned(),
                payload: e.payload.to_owned(),
                at_ms: now,
            };
            s.events.push_back(stored.clone());
            s.trim(e.policy, now);
            let live = Arc::new(Live {
                namespace: e.namespace.to_owned(),
                room: e.room.to_owned(),
                epoch: s.epoch.clone(),
                stored,
                except: e.except.to_vec(),
            });
            if let Some(feed) = self.feed.upgrade() {
                feed.deliver(live).await;
            }
            Ok(Some(1))
        })
    }

    fn read<'a>(
        &'a self,
        namespace: &'a str,
        room: &'a str,
        policy: HistoryPolicy,
        since: Option<u64>,
        max: u64,
    ) -> BoxFuture<'a, Result<Read, TransportError>> {
        Box::pin(async move {
            let stream = self.stream(namespace, room, policy);
            let mut s = stream.lock().await;
            let now = now_ms();
            s.trim(policy, now);
            let position = Position {
                offset: s.top,
                epoch: s.epoch.clone(),
            };
            let after = since.and_then(|since| after(&s, since, max));
            Ok(Read { position, after })
        })
    }
}

/// The events after `since`, when every one of them is still kept and
/// there are at most `max`.
fn after(s: &Stream, since: u64, max: u64) -> Option<Vec<Stored>> {
    if since > s.top || s.top - since > max {
        return None;
    }
    if since == s.top {
        return Some(Vec::new());
    }
    let first = s.events.front()?.offset;
    if first > since + 1 {
        return None;
    }
    let skip = usize::try_from(since + 1 - first).ok()?;
    Some(s.events.iter().skip(skip).cloned().collect())
}
