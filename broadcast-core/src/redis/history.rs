//! History rooms on Redis: one stream per room, written by whichever
//! process broadcasts, and a fixed set of shard channels that carry the
//! events to every server's sockets.
//!
//! One script appends events: for each it assigns the room's next offset,
//! adds the event to the room's stream (trimmed to about the room's size,
//! expiring after its TTL), and publishes it, all at once. A read answers
//! at most the room's size of events, none older than the TTL by the
//! reader's clock (the appender's clock stamped them: the processes'
//! clocks must agree within much less than a TTL). Redis runs
//! scripts one at a time and delivers a channel's messages in order, so
//! every server receives a room's events in offset order, whoever broadcast
//! them. A process sends its events in batches (`append.rs`, per shard on
//! Redis Cluster): those that queued while its previous calls ran go in one
//! call, in order.
//!
//! Each room hashes to one of [`HISTORY_SHARDS`] shards. A shard's keys and
//! its channel share a hash tag, so on Redis Cluster a shard lives in one
//! slot: history load spreads over the cluster by shard, and the script's
//! keys and channel are always on the node that runs it. Every server
//! subscribes to every shard channel.
//!
//! The epoch is created with a room's stream and changes when it is lost
//! (Redis restarted without persistence, the room idle past its TTL), so a
//! client holding an offset of the old epoch is told it was not recovered.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fred::interfaces::LuaInterface;
use fred::types::Value as RedisValue;
use futures_util::StreamExt;
use serde_json::value::RawValue;
use socketioxide::adapter::Adapter;
use socketioxide::socket::Sid;
use socketioxide_redis::drivers::Driver;
use tokio::sync::oneshot;

use super::RedisConfig;
use super::append::{Batcher, EXPIRY_SLACK_DIVISOR, Job, malformed};
use super::driver::MeteredFredDriver;
use super::publish::IDEMPOTENCY_TTL;
use super::script::Script;
use super::stats::{Counters, RedisStats};
use crate::error::TransportError;
use crate::history::{Append, Feed, Live, Read, Store, Stored, new_epoch, now_ms};
use crate::position::{HistoryPolicy, Position};
use crate::util::BoxFuture;

/// How many shards history rooms are spread over. Every process sharing a
/// Redis must use the same number: it decides where a room's stream is.
pub const HISTORY_SHARDS: u32 = 16;

/// Shortest time an epoch outlives its stream, so that offsets keep
/// growing while any event of the epoch may still be held by a client.
const MIN_META_TTL_MS: u64 = 24 * 3600 * 1000;

// ARGV: a new epoch, the first offset wanted minus one (-1: none), most
// events to answer, the meta's TTL (ms). Answers `{epoch, top, found,
// entries}`; the caller checks the entries' times against its clock.
const READ: &str = r"
local meta, stream = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'e', epoch, 't', 0)
  redis.call('PEXPIRE', meta, ARGV[4])
end
local top = tonumber(redis.call('HGET', meta, 't'))
local since = tonumber(ARGV[2])
if since < 0 or since > top or top - since > tonumber(ARGV[3]) then
  return {epoch, top, 0, {}}
end
local entries = {}
if since < top then
  entries = redis.call('XRANGE', stream, (since + 1) .. '-0', '+', 'COUNT', top - since)
end
return {epoch, top, 1, entries}
";

/// Where one room's stream and epoch are, and its shard.
struct Keys {
    shard: u32,
    meta: String,
    stream: String,
    /// Prefix of the room's idempotency keys (an id follows).
    ids: String,
}

fn shard_tag(prefix: &str, shard: u32) -> String {
    format!("{{{prefix}-history-{shard}}}")
}

/// The channel of shard `shard`.
pub(crate) fn shard_channel(prefix: &str, shard: u32) -> String {
    format!("{}#events", shard_tag(prefix, shard))
}

/// FNV-1a: stable across processes, versions and platforms.
fn shard_of(namespace: &str, room: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in namespace.bytes().chain([0]).chain(room.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % HISTORY_SHARDS
}

fn keys(prefix: &str, namespace: &str, room: &str) -> Keys {
    let shard = shard_of(namespace, room);
    let tag = shard_tag(prefix, shard);
    // Lengths first: no namespace and room can spell another pair's key.
    let id = format!("{}:{namespace}:{room}", namespace.len());
    Keys {
        shard,
        meta: format!("{tag}#{id}#meta"),
        // Entries of the layout in `append.rs`; streams of the layout
        // before (`#stream`, fields `e p t`) are left to expire, unread:
        // their events are missing from this stream, so a recovery that
        // needs them is not recovered.
        stream: format!("{tag}#{id}#log"),
        ids: format!("{tag}#{id}#id:"),
    }
}

/// History rooms' streams in Redis, through one fred client.
pub(crate) struct RedisStore<C> {
    client: C,
    prefix: String,
    /// The command timeout fred enforces, named in timeout errors.
    timeout: Duration,
    appends: Batcher,
    read: Script,
}

impl<C: LuaInterface + Clone + Send + Sync + 'static> RedisStore<C> {
    /// Starts the shards' append tasks (within a Tokio runtime).
    pub(crate) fn new(client: C, config: &RedisConfig, stats: RedisStats) -> Self {
        let prefix = config.prefix_str().to_owned();
        let timeout = config.command_timeout_value();
        let channels = (0..HISTORY_SHARDS)
            .map(|shard| shard_channel(&prefix, shard))
            .collect();
        Self {
            appends: Batcher::start(&client, channels, config.is_cluster(), &stats, timeout),
            client,
            prefix,
            timeout,
            read: Script::new(READ),
        }
    }
}

pub(super) fn redis_error(e: fred::error::Error, timeout: Duration) -> TransportError {
    match e.kind() {
        fred::error::ErrorKind::Timeout => TransportError::Timeout(timeout),
        _ => TransportError::Adapter(Box::new(e)),
    }
}

impl<C: LuaInterface + Clone + Send + Sync + 'static> Store for RedisStore<C> {
    fn append<'a>(&'a self, e: Append<'a>) -> BoxFuture<'a, Result<Option<u64>, TransportError>> {
        Box::pin(async move {
            let k = keys(&self.prefix, e.namespace, e.room);
            let payload = e.payload.get();
            let mut body = String::with_capacity(
                e.namespace.len()
                    + e.room.len()
                    + e.event.len()
                    + 18
                    + 17 * e.except.len()
                    + payload.len(),
            );
            // Writing to a String cannot fail.
            let _ = writeln!(body, "{}", now_ms());
            for part in [e.namespace, e.room, e.event] {
                body.push_str(part);
                body.push('\n');
            }
            for (i, sid) in e.except.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                let _ = write!(body, "{sid}");
            }
            body.push('\n');
            body.push_str(payload);
            let ttl_ms = e.policy.ttl_secs.saturating_mul(1000);
            let meta_ttl_ms = ttl_ms.max(MIN_META_TTL_MS);
            let id_key = match e.id {
                Some(id) => format!("{}{id}", k.ids),
                None => k.meta.clone(),
            };
            let mut numbers = format!(
                "{} {ttl_ms} {meta_ttl_ms} {}",
                e.policy.size,
                ttl_ms / EXPIRY_SLACK_DIVISOR
            );
            if e.id.is_some() {
                let _ = write!(numbers, " {}", IDEMPOTENCY_TTL.as_millis());
            }
            let (reply, answer) = oneshot::channel();
            self.appends.send(Job {
                shard: k.shard,
                keys: [k.meta, k.stream, id_key],
                args: [numbers.into(), body.into()],
                payload_len: payload.len() as u64,
                reply,
            });
            answer.await.unwrap_or_else(|_| {
                Err(TransportError::Adapter(
                    "the history store is shut down".into(),
                ))
            })
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
            let k = keys(&self.prefix, namespace, room);
            let ttl_ms = policy.ttl_secs.saturating_mul(1000);
            let since_arg = since.map_or_else(|| "-1".to_owned(), |s| s.to_string());
            // Appends trim streams approximately (`MAXLEN ~`): a stream may
            // hold more than the room's size, which a read must not answer.
            let max = max.min(u64::from(policy.size));
            let args: Vec<RedisValue> = vec![
                new_epoch().into(),
                since_arg.into(),
                max.to_string().into(),
                ttl_ms.max(MIN_META_TTL_MS).to_string().into(),
            ];
            let answer: RedisValue = self
                .read
                .run(&self.client, || {
                    (vec![k.meta.clone(), k.stream.clone()], args.clone())
                })
                .await
                .map_err(|e| redis_error(e, self.timeout))?;
            parse_read(answer, since, now_ms().saturating_sub(ttl_ms))
        })
    }
}

/// The read script's answer: `{epoch, top, found, entries}`. Entries
/// appended before `oldest` (ms, the appenders' clocks) are past the TTL.
fn parse_read(answer: RedisValue, since: Option<u64>, oldest: u64) -> Result<Read, TransportError> {
    let RedisValue::Array(mut parts) = answer else {
        return Err(malformed("not an array"));
    };
    if parts.len() != 4 {
        return Err(malformed("not four parts"));
    }
    let entries = parts.pop().unwrap_or(RedisValue::Null);
    let found = parts[2].as_u64().ok_or_else(|| malformed("status"))?;
    let top = parts[1].as_u64().ok_or_else(|| malformed("offset"))?;
    let epoch = parts[0]
        .as_string()
        .filter(|e| !e.is_empty())
        .ok_or_else(|| malformed("epoch"))?;
    let position = Position { offset: top, epoch };
    let not_recovered = |position| {
        Ok(Read {
            position,
            after: None,
        })
    };
    let Some(since) = since else {
        return not_recovered(position);
    };
    if found != 1 {
        return not_recovered(position);
    }
    let entries = match entries {
        RedisValue::Array(entries) => entries,
        RedisValue::Null => Vec::new(),
        _ => return Err(malformed("entries")),
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let stored = parse_entry(entry).ok_or_else(|| malformed("stream entry"))?;
        // Contiguous from `since + 1`, none older than the TTL: otherwise
        // some were trimmed and the client cannot be told it has them all.
        if stored.offset != since + 1 + i as u64 || stored.at_ms < oldest {
            return not_recovered(position);
        }
        out.push(stored);
    }
    if since + out.len() as u64 != top {
        return not_recovered(position);
    }
    Ok(Read {
        position,
        after: Some(out),
    })
}

/// `[id, [d, <body>]]`, the body as in a live message.
fn parse_entry(entry: RedisValue) -> Option<Stored> {
    let RedisValue::Array(mut pair) = entry else {
        return None;
    };
    let fields = pair.pop()?;
    let id = pair.pop()?.as_string()?;
    let offset: u64 = id.strip_suffix("-0")?.parse().ok()?;
    let RedisValue::Array(fields) = fields else {
        return None;
    };
    let [d, body] = <[RedisValue; 2]>::try_from(fields).ok()?;
    if d.as_str()?.as_ref() != "d" {
        return None;
    }
    let body = body.into_string()?;
    let body = parse_body(&body).ok()?;
    Some(Stored {
        offset,
        event: body.event.to_owned(),
        payload: RawValue::from_string(body.payload.to_owned()).ok()?,
        at_ms: body.at_ms,
    })
}

/// The body of a message, after its position, as appended and stored:
/// `ms\nnamespace\nroom\nevent\nexcept,ids\npayload`.
struct Body<'a> {
    at_ms: u64,
    namespace: &'a str,
    room: &'a str,
    event: &'a str,
    except: &'a str,
    payload: &'a str,
}

fn parse_body(text: &str) -> Result<Body<'_>, &'static str> {
    let mut parts = text.splitn(6, '\n');
    let mut next = || parts.next().ok_or("too few lines");
    let body = Body {
        at_ms: next()?.parse().map_err(|_| "bad time")?,
        namespace: next()?,
        room: next()?,
        event: next()?,
        except: next()?,
        payload: next()?,
    };
    broadcast_rules::validate_namespace(body.namespace).map_err(|_| "bad namespace")?;
    broadcast_rules::validate_room(body.room).map_err(|_| "bad room")?;
    broadcast_rules::validate_event_name(body.event).map_err(|_| "bad event name")?;
    Ok(body)
}

/// A message of a shard channel: `offset\nepoch\n` and a body.
pub(crate) fn parse_live(data: &[u8]) -> Result<Live, &'static str> {
    let text = std::str::from_utf8(data).map_err(|_| "not UTF-8")?;
    let mut parts = text.splitn(3, '\n');
    let mut next = || parts.next().ok_or("too few lines");
    let offset: u64 = next()?.parse().map_err(|_| "bad offset")?;
    let epoch = next()?;
    let body = parse_body(next()?)?;
    if offset == 0 || epoch.is_empty() || epoch.len() > 64 {
        return Err("bad position");
    }
    let except = body
        .except
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<Sid>().map_err(|_| "bad socket id"))
        .collect::<Result<Vec<_>, _>>()?;
    let payload =
        RawValue::from_string(body.payload.to_owned()).map_err(|_| "payload is not JSON")?;
    Ok(Live {
        namespace: body.namespace.to_owned(),
        room: body.room.to_owned(),
        epoch: epoch.to_owned(),
        stored: Stored {
            offset,
            event: body.event.to_owned(),
            payload,
            at_ms: body.at_ms,
        },
        except,
    })
}

/// Subscribes `driver` to every shard channel and delivers what arrives to
/// the server's sockets, one task per shard (a room's events are in one
/// shard, in order).
pub(crate) async fn subscribe<A: Adapter>(
    driver: &MeteredFredDriver,
    config: &RedisConfig,
    feed: &Arc<Feed<A>>,
) -> Result<(), fred::error::Error> {
    for shard in 0..HISTORY_SHARDS {
        let channel = shard_channel(config.prefix_str(), shard);
        let mut stream = driver
            .subscribe(channel.clone(), config.adapter_buffer_value())
            .await?;
        // The feed lives as long as the connection: a server that never
        // broadcasts itself still delivers what workers and others send.
        let feed = feed.clone();
        let stats = driver.stats().clone();
        let mut closed = driver.closed();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    biased;
                    _ = closed.wait_for(|closed| *closed) => return,
                    next = stream.next() => next,
                };
                let Some((_, data)) = next else { return };
                match parse_live(&data) {
                    Ok(live) => {
                        feed.deliver(Arc::new(live)).await;
                    }
                    Err(reason) => {
                        Counters::add(&stats.counters().rejected, 1);
                        warn_rejected(&channel, reason);
                    }
                }
            }
        });
    }
    Ok(())
}

fn warn_rejected(channel: &str, reason: &str) {
    static LAST: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let now = START.get_or_init(Instant::now).elapsed().as_secs() + 1;
    if LAST.swap(now, Ordering::Relaxed) != now {
        tracing::warn!(%channel, reason, "dropped a malformed history message from Redis");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_messages_round_trip_and_garbage_is_refused() {
        let live = parse_live(b"17\nep\n5\n/\nchat|1\nmessage_posted\n\n{\"a\":\n\"x\"}").unwrap();
        assert_eq!(live.stored.offset, 17);
        assert_eq!(live.room, "chat|1");
        assert_eq!(live.stored.payload.get(), "{\"a\":\n\"x\"}");
        for bad in [
            &b"x\nep\n5\n/\nr\ne\n\n{}"[..],
            b"1\nep\n5\nnoslash\nr\ne\n\n{}",
            b"1\nep\n5\n/\nr\ne\nnot-a-sid\n{}",
            b"1\nep\n5\n/\nr\ne\n\n{",
            b"1\nep",
            b"\xff",
        ] {
            assert!(
                parse_live(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn entries_parse_and_the_layout_before_is_refused() {
        let entry = |fields: &[&str]| {
            RedisValue::Array(vec![
                "7-0".into(),
                RedisValue::Array(fields.iter().map(|f| RedisValue::from(*f)).collect()),
            ])
        };
        let stored =
            parse_entry(entry(&["d", "5\n/\nchat|1\nmessage_posted\n\n{\"a\":1}"])).unwrap();
        assert_eq!(stored.offset, 7);
        assert_eq!(stored.at_ms, 5);
        assert_eq!(stored.event, "message_posted");
        assert_eq!(stored.payload.get(), "{\"a\":1}");
        // The entries of the layout before: a read of them fails instead
        // of answering wrong events (and new reads never reach them).
        assert!(parse_entry(entry(&["e", "message_posted", "p", "{}", "t", "5"])).is_none());
        assert!(parse_entry(entry(&["t", "5", "d", "/\nchat|1\nm\n\n{}"])).is_none());
        assert!(parse_entry(entry(&["d", "5\n/\nchat|1\nmessage_posted\n\n{"])).is_none());
        assert!(parse_entry(entry(&["d", "x\n/\nchat|1\nmessage_posted\n\n{}"])).is_none());
    }

    /// More entries than asked for, or older than the TTL: not recovered.
    #[test]
    fn reads_skip_nothing_and_nothing_past_the_ttl() {
        let entry = |offset: u64, at: u64| {
            RedisValue::Array(vec![
                format!("{offset}-0").as_str().into(),
                RedisValue::Array(vec![
                    "d".into(),
                    format!("{at}\n/\nr\ne\n\n{{}}").as_str().into(),
                ]),
            ])
        };
        let answer = |entries: Vec<RedisValue>| {
            RedisValue::Array(vec![
                "ep".into(),
                3.into(),
                1.into(),
                RedisValue::Array(entries),
            ])
        };
        let read = parse_read(answer(vec![entry(2, 100), entry(3, 100)]), Some(1), 50).unwrap();
        assert_eq!(read.after.map(|a| a.len()), Some(2));
        let read = parse_read(answer(vec![entry(2, 10), entry(3, 100)]), Some(1), 50).unwrap();
        assert!(read.after.is_none(), "older than the TTL");
        let read = parse_read(answer(vec![entry(3, 100)]), Some(1), 50).unwrap();
        assert!(read.after.is_none(), "a trimmed entry");
    }

    #[test]
    fn a_timeout_names_the_configured_timeout() {
        let timeout = Duration::from_millis(1500);
        let e = fred::error::Error::new(fred::error::ErrorKind::Timeout, "Request timed out.");
        assert!(matches!(
            redis_error(e, timeout),
            TransportError::Timeout(t) if t == timeout
        ));
        let e = fred::error::Error::new(fred::error::ErrorKind::IO, "closed");
        assert!(matches!(
            redis_error(e, timeout),
            TransportError::Adapter(_)
        ));
    }

    #[test]
    fn rooms_spread_over_shards_and_share_a_slot_with_their_channel() {
        let k = keys("socket.io", "/", "chat|1");
        let channel = shard_channel("socket.io", k.shard);
        let tag = &channel[..channel.find('}').unwrap() + 1];
        assert!(k.meta.starts_with(tag) && k.stream.starts_with(tag));
        let shards: std::collections::BTreeSet<u32> = (0..200)
            .map(|i| shard_of("/", &format!("chat|{i}")))
            .collect();
        assert_eq!(shards.len(), HISTORY_SHARDS as usize);
        assert_ne!(keys("p", "/a", "b").meta, keys("p", "/", "ab").meta);
    }
}
