//! Appends to history rooms, batched per shard: one script call carries
//! every event of a shard that was waiting while the previous call ran.
//!
//! A script call has a fixed cost in Redis (the call, its clock read, each
//! room's epoch read) and in the client (a command, its frame, its reply)
//! that was a large part of an event's cost when each event had its own
//! call. A task per shard sends its shard's events, and answers each
//! caller: at once while few calls are waiting for Redis (so batching adds
//! no wait to a lone broadcaster), else those queued meanwhile in one call,
//! in the order they were queued. A shard's rooms share a hash tag, so a
//! batch's keys are in one slot (Redis Cluster).

use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::LuaInterface;
use fred::types::Value as RedisValue;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

use super::script::Script;
use super::stats::{Counters, RedisStats};
use crate::error::TransportError;
use crate::history::new_epoch;

/// Most events in one script call: a call blocks Redis while it runs.
const MAX_BATCH: usize = 32;

/// Calls of one shard waiting for Redis at once before events are batched.
/// One connection runs them in the order they were sent.
const MAX_IN_FLIGHT: usize = 2;

/// The keys' expiries are pushed back at most once per `ttl / 16` of a
/// room (the time is kept in the meta hash, field `x`), and set that much
/// longer: a busy room's event costs two `PEXPIRE`s fewer. A stream may
/// so outlive its TTL by that much; reads skip events older than the TTL.
pub(super) const EXPIRY_SLACK_DIVISOR: u64 = 16;

// KEYS: the shard's channel, then per event its room's meta, stream and
// idempotency key (the meta again when there is no id).
// ARGV: the epoch of a room created by this call, then per event
// `size ttl-ms meta-ttl-ms slack-ms [id-ttl-ms]` (parsed once per distinct
// value), event, payload, message header.
// Answers per event: how many subscribers SPUBLISH reached, -1 for an id
// appended before, -2 for malformed arguments.
// Numbers are turned into strings once each: Lua's number formatting was a
// fifth of the script's cost.
const APPEND: &str = r"
local channel, new_epoch = KEYS[1], ARGV[1]
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local at = tostring(ms)
local rooms, limits, out = {}, {}, {}
for i = 0, (#ARGV - 1) / 4 - 1 do
  local meta, stream, id = KEYS[2 + 3 * i], KEYS[3 + 3 * i], KEYS[4 + 3 * i]
  local numbers, payload = ARGV[2 + 4 * i], ARGV[4 + 4 * i]
  local l = limits[numbers]
  if not l then
    l = {string.match(numbers, '^(%d+) (%d+) (%d+) (%d+) ?(%d*)$')}
    limits[numbers] = l
  end
  local size, ttl, meta_ttl, slack, id_ttl = l[1], l[2], l[3], l[4], l[5]
  if not size then
    out[i + 1] = -2
  elseif id_ttl ~= '' and not redis.call('SET', id, '1', 'NX', 'PX', id_ttl) then
    out[i + 1] = -1
  else
    local room = rooms[meta]
    if not room then
      local m = redis.call('HMGET', meta, 'e', 'x')
      room = {epoch = m[1], refresh = not m[1] or not m[2] or tonumber(m[2]) <= ms}
      if not room.epoch then
        room.epoch = new_epoch
        redis.call('DEL', stream)
        redis.call('HSET', meta, 'e', new_epoch, 't', 0)
      end
      rooms[meta] = room
    end
    local top = tostring(redis.call('HINCRBY', meta, 't', 1))
    redis.call('XADD', stream, 'MAXLEN', size, top .. '-0',
      'e', ARGV[3 + 4 * i], 'p', payload, 't', at)
    if room.refresh then
      redis.call('PEXPIRE', stream, ttl + slack)
      redis.call('PEXPIRE', meta, meta_ttl + slack)
      redis.call('HSET', meta, 'x', ms + slack)
      room.refresh = false
    end
    out[i + 1] = redis.call('SPUBLISH', channel,
      top .. '\n' .. room.epoch .. '\n' .. at .. '\n' .. ARGV[5 + 4 * i] .. payload)
  end
end
return out
";

/// One event on its way to its shard's task.
pub(super) struct Job {
    /// The room's meta, stream and idempotency keys.
    pub(super) keys: [String; 3],
    /// The limits (`size ttl-ms ...`), event, payload and message header.
    pub(super) args: [RedisValue; 4],
    pub(super) reply: oneshot::Sender<Result<Option<u64>, TransportError>>,
}

/// The queues of the shards' tasks.
pub(super) struct Batcher {
    shards: Vec<mpsc::UnboundedSender<Job>>,
}

impl Batcher {
    /// Starts one task per shard channel in `channels`; they end when the
    /// batcher is dropped.
    pub(super) fn start<C>(
        client: &C,
        channels: Vec<String>,
        stats: &RedisStats,
        timeout: Duration,
    ) -> Self
    where
        C: LuaInterface + Clone + Send + Sync + 'static,
    {
        let script = Arc::new(Script::new(APPEND));
        let shards = channels
            .into_iter()
            .map(|channel| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(run(
                    client.clone(),
                    script.clone(),
                    channel,
                    rx,
                    stats.clone(),
                    timeout,
                ));
                tx
            })
            .collect();
        Self { shards }
    }

    /// Queues `job` on shard `shard`'s task.
    pub(super) fn send(&self, shard: u32, job: Job) {
        let Some(queue) = self.shards.get(shard as usize) else {
            let _ = job.reply.send(Err(TransportError::Adapter(
                format!("history shard {shard} does not exist").into(),
            )));
            return;
        };
        if let Err(mpsc::error::SendError(job)) = queue.send(job) {
            let _ = job.reply.send(Err(TransportError::Adapter(
                "the history store is shut down".into(),
            )));
        }
    }
}

/// A shard's task: events go out at once while fewer than
/// [`MAX_IN_FLIGHT`] calls are waiting for Redis (a lone broadcaster's
/// latency is one call); past that, every event queued meanwhile goes in
/// the next call (up to [`MAX_BATCH`]).
async fn run<C: LuaInterface + Send + Sync>(
    client: C,
    script: Arc<Script>,
    channel: String,
    mut queue: mpsc::UnboundedReceiver<Job>,
    stats: RedisStats,
    timeout: Duration,
) {
    let c = stats.counters();
    let mut in_flight = FuturesUnordered::new();
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            n = queue.recv_many(&mut jobs, MAX_BATCH), if in_flight.len() < MAX_IN_FLIGHT => {
                if n == 0 {
                    break;
                }
                let batch = std::mem::replace(&mut jobs, Vec::with_capacity(MAX_BATCH));
                in_flight.push(call(&client, &script, &channel, batch, c, timeout));
            }
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
        }
    }
    while in_flight.next().await.is_some() {}
}

/// Sends one batch and answers each of its callers.
async fn call<C: LuaInterface + Send + Sync>(
    client: &C,
    script: &Script,
    channel: &str,
    jobs: Vec<Job>,
    c: &Counters,
    timeout: Duration,
) {
    let epoch = new_epoch();
    let arguments = || {
        let mut keys = Vec::with_capacity(1 + 3 * jobs.len());
        keys.push(channel.to_owned());
        let mut args = Vec::with_capacity(1 + 4 * jobs.len());
        args.push(RedisValue::from(epoch.as_str()));
        for job in &jobs {
            keys.extend(job.keys.iter().cloned());
            args.extend(job.args.iter().cloned());
        }
        (keys, args)
    };
    let answer: Result<Vec<i64>, _> = script.run(client, arguments).await;
    match answer {
        Ok(counts) if counts.len() == jobs.len() => {
            for (job, n) in jobs.into_iter().zip(counts) {
                let result = match n {
                    -1 => Ok(None),
                    n if n < 0 => Err(malformed("the arguments were refused")),
                    n => {
                        Counters::add(&c.published, 1);
                        Counters::add(&c.bytes_published, payload_len(&job));
                        Ok(Some(n.unsigned_abs()))
                    }
                };
                // A caller that stopped waiting still had its event sent.
                let _ = job.reply.send(result);
            }
        }
        Ok(counts) => {
            let what = format!("{} answers for {} events", counts.len(), jobs.len());
            for job in jobs {
                Counters::add(&c.publish_failed, 1);
                let _ = job.reply.send(Err(malformed(&what)));
            }
        }
        Err(e) => {
            for job in jobs {
                Counters::add(&c.publish_failed, 1);
                let _ = job
                    .reply
                    .send(Err(super::history::redis_error(e.clone(), timeout)));
            }
        }
    }
}

fn payload_len(job: &Job) -> u64 {
    job.args[2].as_bytes().map_or(0, |b| b.len() as u64)
}

pub(super) fn malformed(what: &str) -> TransportError {
    TransportError::Adapter(format!("unexpected answer from the history script: {what}").into())
}
