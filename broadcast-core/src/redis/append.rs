//! Appends to history rooms, batched: one script call carries every event
//! that was waiting while the previous calls ran.
//!
//! A script call has a fixed cost in Redis (the call, each room's epoch
//! read) and in the client (a command, its frame, its reply) that was a
//! large part of an event's cost when each event had its own call. A task
//! sends the events queued to it, and answers each caller: at once while
//! few calls are waiting for Redis (so batching adds no wait to a lone
//! broadcaster), else those queued meanwhile in one call, in the order
//! they were queued. On Redis Cluster each shard has its task (a shard's
//! rooms share a hash tag, so a batch's keys are in one slot); on a single
//! Redis one task batches every shard.

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
use crate::history::{new_epoch, now_ms};

/// Most events in one script call: a call blocks Redis while it runs.
const MAX_BATCH: usize = 32;

/// Calls of one task waiting for Redis at once before events are batched.
/// One connection runs them in the order they were sent, so a room's
/// events keep their order whichever call carries them.
const MAX_IN_FLIGHT: usize = 2;

/// The keys' expiries are pushed back at most once per `ttl / 16` of a
/// room (the time is kept in the meta hash, field `x`), and set that much
/// longer: a busy room's event costs two `PEXPIRE`s fewer. A stream may
/// so outlive its TTL by that much; reads skip events older than the TTL.
pub(super) const EXPIRY_SLACK_DIVISOR: u64 = 16;

// KEYS: per event its shard's channel, its room's meta and stream, and its
// idempotency key (the meta again when there is no id).
// ARGV: the epoch of a room created by this call, the caller's clock (ms),
// then per event `size ttl-ms meta-ttl-ms slack-ms [id-ttl-ms]` (parsed
// once per distinct value) and the message's body, which is also the
// stream entry (`ms\nnamespace\nroom\nevent\nexcept\npayload`, `ms` the
// caller's clock when it appended the event).
// Answers per event: how many subscribers SPUBLISH reached, -1 for an id
// appended before, -2 for malformed arguments.
//
// Costs inside Redis, measured with callgrind: each `redis.call` is
// 6,000-8,000 instructions beyond its command, each argument and each
// string a script makes a few hundred, a number turned into a string a few
// thousand (`%d` costs a fraction of `tostring`'s `%.14g`). So the time
// comes from the caller (`TIME` was one call more per script call); the
// stream entry is one field, the body the message is made of, as it
// arrives; its ID is the offset (`N` is `N-0`);
// `MAXLEN ~` lets Redis drop whole nodes of the stream instead of one
// entry per append, and a read enforces the room's size itself
// (`history.rs`).
const APPEND: &str = r"
local new_epoch, ms, format = ARGV[1], tonumber(ARGV[2]), string.format
if not ms or #ARGV ~= 2 + #KEYS / 2 or #KEYS % 4 ~= 0 then
  return redis.error_reply('malformed arguments')
end
local rooms, limits, out = {}, {}, {}
for i = 0, #KEYS / 4 - 1 do
  local k, a = 4 * i, 2 + 2 * i
  local meta, stream = KEYS[k + 2], KEYS[k + 3]
  local numbers, body = ARGV[a + 1], ARGV[a + 2]
  local l = limits[numbers]
  if not l then
    l = {string.match(numbers, '^(%d+) (%d+) (%d+) (%d+) ?(%d*)$')}
    limits[numbers] = l
  end
  local size, ttl, meta_ttl, slack, id_ttl = l[1], l[2], l[3], l[4], l[5]
  if not size then
    out[i + 1] = -2
  elseif id_ttl ~= '' and not redis.call('SET', KEYS[k + 4], '1', 'NX', 'PX', id_ttl) then
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
    local top = format('%d', redis.call('HINCRBY', meta, 't', 1))
    redis.call('XADD', stream, 'MAXLEN', '~', size, top, 'd', body)
    if room.refresh then
      redis.call('PEXPIRE', stream, ttl + slack)
      redis.call('PEXPIRE', meta, meta_ttl + slack)
      redis.call('HSET', meta, 'x', ms + slack)
      room.refresh = false
    end
    out[i + 1] = redis.call('SPUBLISH', KEYS[k + 1],
      top .. '\n' .. room.epoch .. '\n' .. body)
  end
end
return out
";

/// One event on its way to its shard's task.
pub(super) struct Job {
    /// The room's shard (its channel is the task's to add).
    pub(super) shard: u32,
    /// The room's meta, stream and idempotency keys.
    pub(super) keys: [String; 3],
    /// The limits (`size ttl-ms ...`) and the message's body.
    pub(super) args: [RedisValue; 2],
    /// The payload's length, for the stats.
    pub(super) payload_len: u64,
    pub(super) reply: oneshot::Sender<Result<Option<u64>, TransportError>>,
}

/// The queues of the append tasks: one per shard on Redis Cluster, one for
/// every shard on a single Redis.
pub(super) struct Batcher {
    queues: Vec<mpsc::UnboundedSender<Job>>,
    shards: usize,
}

impl Batcher {
    /// Starts the tasks for the shard channels in `channels`; they end when
    /// the batcher is dropped.
    ///
    /// On Redis Cluster a script's keys must be in one slot, so each shard
    /// (one hash tag) has its task. A single Redis holds every key, so one
    /// task batches every shard's events: at 16 broadcasts in flight over
    /// 16 shards, per-shard calls carried about one event each, and each
    /// paid a script call's fixed cost in Redis and a command's in the
    /// client.
    pub(super) fn start<C>(
        client: &C,
        channels: Vec<String>,
        per_shard: bool,
        stats: &RedisStats,
        timeout: Duration,
    ) -> Self
    where
        C: LuaInterface + Clone + Send + Sync + 'static,
    {
        let script = Arc::new(Script::new(APPEND));
        let shards = channels.len();
        let channels: Arc<[String]> = channels.into();
        let tasks = if per_shard { shards } else { 1 };
        let queues = (0..tasks)
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(run(
                    client.clone(),
                    script.clone(),
                    channels.clone(),
                    rx,
                    stats.clone(),
                    timeout,
                ));
                tx
            })
            .collect();
        Self { queues, shards }
    }

    /// Queues `job` on its shard's task.
    pub(super) fn send(&self, job: Job) {
        let shard = job.shard as usize;
        if shard >= self.shards {
            let _ = job.reply.send(Err(TransportError::Adapter(
                format!("history shard {shard} does not exist").into(),
            )));
            return;
        }
        let queue = &self.queues[shard % self.queues.len()];
        if let Err(mpsc::error::SendError(job)) = queue.send(job) {
            let _ = job.reply.send(Err(TransportError::Adapter(
                "the history store is shut down".into(),
            )));
        }
    }
}

/// An append task: events go out at once while fewer than
/// [`MAX_IN_FLIGHT`] calls are waiting for Redis (a lone broadcaster's
/// latency is one call); past that, every event queued meanwhile goes in
/// the next call (up to [`MAX_BATCH`]).
async fn run<C: LuaInterface + Send + Sync>(
    client: C,
    script: Arc<Script>,
    channels: Arc<[String]>,
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
                in_flight.push(call(&client, &script, &channels, batch, c, timeout));
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
    channels: &[String],
    jobs: Vec<Job>,
    c: &Counters,
    timeout: Duration,
) {
    let epoch = new_epoch();
    let now = now_ms().to_string();
    let arguments = || {
        let mut keys = Vec::with_capacity(4 * jobs.len());
        let mut args = Vec::with_capacity(2 + 2 * jobs.len());
        args.push(RedisValue::from(epoch.as_str()));
        args.push(RedisValue::from(now.as_str()));
        for job in &jobs {
            // `Batcher::send` only queues jobs of existing shards.
            keys.push(channels[job.shard as usize].clone());
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
                        Counters::add(&c.bytes_published, job.payload_len);
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

pub(super) fn malformed(what: &str) -> TransportError {
    TransportError::Adapter(format!("unexpected answer from the history script: {what}").into())
}
