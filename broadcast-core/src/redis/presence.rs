//! Presence in Redis: the state every server and worker sees, changed only
//! by Lua scripts so each transition is decided once in the cluster, plus
//! each server's heartbeat, its sweep of dead servers, and the restore of
//! its own members after Redis lost them.
//!
//! Keys (`P` is the channel prefix; `R` the room's store key, in a hash
//! tag so a room's keys share a cluster slot):
//! - `P-presence:{R}:m` hash member id -> member JSON
//! - `P-presence:{R}:n` hash member id -> connections
//! - `P-presence:{R}:c` hash connection -> member id
//! - `P-presence:{R}:s:S` set of the connections of server `S`
//! - `P-presence-rooms:S` set of the rooms where server `S` has connections
//! - `P-presence-alive:S` exists while server `S` lives ([`ALIVE_TTL`])
//! - `P-presence-servers` set of the servers that have had members

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::{ClusterHash, CustomCommand, Value};

use super::config::RedisConfig;
use super::error::RedisError;
use crate::presence::service::PresenceService;
use crate::presence::store::{Applied, Op, Store, Transition};
use crate::presence::{Member, PresenceError};
use crate::util::BoxFuture;

/// How often a server renews its alive key, retries failed leaves and
/// checks that Redis still has its members.
///
/// ```
/// use broadcast_core::redis::{ALIVE_TTL, HEARTBEAT, SWEEP};
/// // A dead server's members are gone within 15 s.
/// assert!(ALIVE_TTL + SWEEP + HEARTBEAT < std::time::Duration::from_secs(15));
/// ```
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a server's alive key outlives its last heartbeat: a server
/// silent that long is dead, and the others remove its members.
///
/// ```
/// assert!(broadcast_core::redis::ALIVE_TTL > broadcast_core::redis::HEARTBEAT * 3);
/// ```
pub const ALIVE_TTL: Duration = Duration::from_secs(6);
/// How often a server looks for dead servers. A dead server's members are
/// gone within `ALIVE_TTL + SWEEP` plus one cleanup.
///
/// ```
/// assert_eq!(broadcast_core::redis::SWEEP.as_secs(), 2);
/// ```
pub const SWEEP: Duration = Duration::from_secs(2);

const JOIN: &str = r"
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
  return {0, 0, redis.call('HVALS', KEYS[1])}
end
local occupied = 0
if redis.call('HLEN', KEYS[2]) == 0 then occupied = 1 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[1])
local joined = 0
if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  joined = 1
end
return {joined, occupied, redis.call('HVALS', KEYS[1])}
";

const LEAVE: &str = r"
local id = redis.call('HGET', KEYS[3], ARGV[1])
if not id then return {'', 0} end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
local member = ''
if redis.call('HINCRBY', KEYS[2], id, -1) <= 0 then
  redis.call('HDEL', KEYS[2], id)
  member = redis.call('HGET', KEYS[1], id) or ''
  redis.call('HDEL', KEYS[1], id)
end
local vacated = 0
if member ~= '' and redis.call('HLEN', KEYS[2]) == 0 then vacated = 1 end
return {member, vacated}
";

/// A batch of joins and leaves of one room: `ARGV[1]` is `1` when the
/// members are wanted, then 4 arguments per change: `j` or `l`, the
/// connection, the member id and JSON (empty for a leave). Returns per
/// change the member that joined or left (or '') and the edge flag, then
/// the members.
const BATCH: &str = r"
local out = {}
for i = 2, #ARGV, 4 do
  local conn = ARGV[i + 1]
  local member, edge = '', 0
  if ARGV[i] == 'j' then
    if redis.call('HEXISTS', KEYS[3], conn) == 0 then
      local id = ARGV[i + 2]
      if redis.call('HLEN', KEYS[2]) == 0 then edge = 1 end
      redis.call('HSET', KEYS[3], conn, id)
      redis.call('SADD', KEYS[4], conn)
      if redis.call('HINCRBY', KEYS[2], id, 1) == 1 then
        redis.call('HSET', KEYS[1], id, ARGV[i + 3])
        member = ARGV[i + 3]
      end
    end
  else
    local id = redis.call('HGET', KEYS[3], conn)
    if id then
      redis.call('HDEL', KEYS[3], conn)
      redis.call('SREM', KEYS[4], conn)
      if redis.call('HINCRBY', KEYS[2], id, -1) <= 0 then
        redis.call('HDEL', KEYS[2], id)
        member = redis.call('HGET', KEYS[1], id) or ''
        redis.call('HDEL', KEYS[1], id)
        if member ~= '' and redis.call('HLEN', KEYS[2]) == 0 then edge = 1 end
      end
    end
  end
  table.insert(out, member)
  table.insert(out, edge)
end
if ARGV[1] == '1' then table.insert(out, redis.call('HVALS', KEYS[1])) end
return out
";

const CLEANUP: &str = r"
local left = {}
for _, conn in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  local id = redis.call('HGET', KEYS[3], conn)
  if id then
    redis.call('HDEL', KEYS[3], conn)
    if redis.call('HINCRBY', KEYS[2], id, -1) <= 0 then
      redis.call('HDEL', KEYS[2], id)
      local m = redis.call('HGET', KEYS[1], id)
      redis.call('HDEL', KEYS[1], id)
      if m then table.insert(left, m) end
    end
  end
end
redis.call('DEL', KEYS[4])
local vacated = 0
if #left > 0 and redis.call('HLEN', KEYS[2]) == 0 then vacated = 1 end
return {vacated, left}
";

/// The Redis presence store of one server (or, without a server id, a
/// worker's: queries only).
pub(crate) struct RedisPresenceStore {
    client: Client,
    prefix: String,
    server: String,
    /// This server's connections, for the restore after Redis lost them.
    local: Mutex<HashMap<(String, String), Member>>,
    /// Leaves Redis did not take (it was down): retried every heartbeat.
    retry: Mutex<Vec<(String, String)>>,
}

fn store_error(op: &'static str, room: &str, e: impl std::fmt::Display) -> PresenceError {
    PresenceError::Store {
        op,
        room: room.replace('\u{1f}', " "),
        reason: e.to_string(),
    }
}

impl RedisPresenceStore {
    pub(crate) async fn connect(config: &RedisConfig, server: String) -> Result<Self, RedisError> {
        let client = config.connect_plain().await?;
        Ok(Self {
            client,
            prefix: format!("{}-presence", config.prefix_str()),
            server,
            local: Mutex::default(),
            retry: Mutex::default(),
        })
    }

    /// The room's keys, in the scripts' `KEYS` order, for server `server`.
    fn keys(&self, room: &str, server: &str) -> [String; 4] {
        let base = format!("{}:{{{room}}}", self.prefix);
        [
            format!("{base}:m"),
            format!("{base}:n"),
            format!("{base}:c"),
            format!("{base}:s:{server}"),
        ]
    }

    fn rooms_key(&self, server: &str) -> String {
        format!("{}-rooms:{server}", self.prefix)
    }

    fn alive_key(&self, server: &str) -> String {
        format!("{}-alive:{server}", self.prefix)
    }

    fn servers_key(&self) -> String {
        format!("{}-servers", self.prefix)
    }

    async fn eval(
        &self,
        script: &'static str,
        keys: [String; 4],
        args: Vec<String>,
    ) -> Result<Value, fred::error::Error> {
        let mut all: Vec<Value> = Vec::with_capacity(2 + keys.len() + args.len());
        all.push(script.into());
        all.push(Value::Integer(4));
        all.extend(keys.into_iter().map(Value::from));
        all.extend(args.into_iter().map(Value::from));
        self.client
            .custom(
                CustomCommand::new_static("EVAL", ClusterHash::Offset(2), false),
                all,
            )
            .await
    }

    async fn cmd(
        &self,
        name: &'static str,
        args: Vec<String>,
    ) -> Result<Value, fred::error::Error> {
        self.client
            .custom(
                CustomCommand::new_static(name, ClusterHash::FirstKey, false),
                args.into_iter().map(Value::from).collect::<Vec<_>>(),
            )
            .await
    }

    async fn join_in_redis(
        &self,
        room: &str,
        conn: &str,
        member: &Member,
    ) -> Result<(Transition, Vec<Member>), PresenceError> {
        let err = |e| store_error("join", room, e);
        // Listed before the script: a sweeper that finds this server dead
        // must find this room too.
        self.cmd("SADD", vec![self.rooms_key(&self.server), room.to_owned()])
            .await
            .map_err(err)?;
        let reply = self
            .eval(
                JOIN,
                self.keys(room, &self.server),
                vec![
                    conn.to_owned(),
                    member.id().to_owned(),
                    member.json().to_owned(),
                ],
            )
            .await
            .map_err(err)?;
        let bad =
            |what: &str| store_error("join", room, format!("unexpected reply from Redis: {what}"));
        let Value::Array(mut parts) = reply else {
            return Err(bad("not an array"));
        };
        if parts.len() != 3 {
            return Err(bad("not 3 elements"));
        }
        let members = members_of(room, parts.pop().unwrap_or(Value::Null));
        let occupied = parts.pop().and_then(|v| v.as_i64()) == Some(1);
        let joined = parts.pop().and_then(|v| v.as_i64()) == Some(1);
        Ok((
            Transition {
                member: joined.then(|| member.clone()),
                edge: occupied,
            },
            members,
        ))
    }

    async fn leave_in_redis(&self, room: &str, conn: &str) -> Result<Transition, PresenceError> {
        let reply = self
            .eval(LEAVE, self.keys(room, &self.server), vec![conn.to_owned()])
            .await
            .map_err(|e| store_error("leave", room, e))?;
        let bad = |what: &str| {
            store_error(
                "leave",
                room,
                format!("unexpected reply from Redis: {what}"),
            )
        };
        let Value::Array(parts) = reply else {
            return Err(bad("not an array"));
        };
        let mut parts = parts.into_iter();
        let json = parts
            .next()
            .and_then(Value::into_string)
            .unwrap_or_default();
        let vacated = parts.next().and_then(|v| v.as_i64()) == Some(1);
        if json.is_empty() {
            return Ok(Transition::default());
        }
        let member = Member::from_json(&json).map_err(|e| store_error("leave", room, e))?;
        Ok(Transition {
            member: Some(member),
            edge: vacated,
        })
    }

    /// Renews this server's alive key; when it was gone (first beat, Redis
    /// restarted, or others took this server for dead), re-adds every local
    /// connection. Returns the transitions the restore caused.
    async fn heartbeat(&self) -> Result<Vec<(String, bool, Transition)>, PresenceError> {
        let err = |e| store_error("heartbeat", "-", e);
        let ttl = ALIVE_TTL.as_millis().to_string();
        let alive = self.alive_key(&self.server);
        let renewed = self
            .cmd(
                "SET",
                vec![
                    alive.clone(),
                    "1".into(),
                    "PX".into(),
                    ttl.clone(),
                    "XX".into(),
                ],
            )
            .await
            .map_err(err)?;
        let mut restored = Vec::new();
        if matches!(renewed, Value::Null) {
            self.cmd("SADD", vec![self.servers_key(), self.server.clone()])
                .await
                .map_err(err)?;
            let local: Vec<_> = self
                .local
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(k, m)| (k.clone(), m.clone()))
                .collect();
            if !local.is_empty() {
                tracing::info!(target: "broadcast::presence", server = self.server, connections = local.len(), "restoring this server's presence in Redis");
            }
            for ((room, conn), member) in local {
                let (t, _) = self.join_in_redis(&room, &conn, &member).await?;
                restored.push((room, true, t));
            }
            // Set last: until every member is back, the next beat restores.
            self.cmd("SET", vec![alive, "1".into(), "PX".into(), ttl])
                .await
                .map_err(err)?;
        }
        let retry = std::mem::take(&mut *self.retry.lock().unwrap_or_else(PoisonError::into_inner));
        for (i, (room, conn)) in retry.iter().enumerate() {
            match self.leave_in_redis(room, conn).await {
                Ok(t) => restored.push((room.clone(), false, t)),
                Err(e) => {
                    self.retry
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .extend(retry[i..].iter().cloned());
                    return Err(e);
                }
            }
        }
        Ok(restored)
    }

    /// Removes the members of every server whose alive key is gone;
    /// returns `(room, left members, vacated)` for what this server
    /// removed (another sweeper removing the same finds nothing).
    async fn sweep(&self) -> Result<Vec<(String, Vec<Member>, bool)>, PresenceError> {
        let err = |e| store_error("cleanup", "-", e);
        let servers = self
            .cmd("SMEMBERS", vec![self.servers_key()])
            .await
            .map_err(err)?;
        let mut out = Vec::new();
        for server in strings(servers) {
            if server == self.server {
                continue;
            }
            let exists = self
                .cmd("EXISTS", vec![self.alive_key(&server)])
                .await
                .map_err(err)?;
            if exists.as_i64() != Some(0) {
                continue;
            }
            tracing::info!(target: "broadcast::presence", dead = server, by = self.server, "removing the members of a dead server");
            let rooms = self
                .cmd("SMEMBERS", vec![self.rooms_key(&server)])
                .await
                .map_err(err)?;
            for room in strings(rooms) {
                let reply = self
                    .eval(CLEANUP, self.keys(&room, &server), vec![])
                    .await
                    .map_err(|e| store_error("cleanup", &room, e))?;
                let Value::Array(parts) = reply else {
                    return Err(store_error(
                        "cleanup",
                        &room,
                        "unexpected reply from Redis: not an array",
                    ));
                };
                let mut parts = parts.into_iter();
                let vacated = parts.next().and_then(|v| v.as_i64()) == Some(1);
                let left = members_of(&room, parts.next().unwrap_or(Value::Null));
                if !left.is_empty() || vacated {
                    out.push((room, left, vacated));
                }
            }
            self.cmd("DEL", vec![self.rooms_key(&server)])
                .await
                .map_err(err)?;
            self.cmd("SREM", vec![self.servers_key(), server])
                .await
                .map_err(err)?;
        }
        Ok(out)
    }

    /// Says goodbye: removes this server's members at once (a clean
    /// shutdown need not wait for the sweep).
    pub(crate) async fn quit(&self) {
        let _ = self.cmd("DEL", vec![self.alive_key(&self.server)]).await;
    }
}

/// The strings of an array reply (others skipped).
fn strings(v: Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.into_iter().filter_map(Value::into_string).collect(),
        _ => Vec::new(),
    }
}

/// Members from an array of JSON strings, sorted by id. Entries that are
/// not members are skipped and logged: Redis is a trust boundary, and one
/// bad entry must not hide a room's other members.
fn members_of(room: &str, v: Value) -> Vec<Member> {
    let mut members: Vec<Member> = strings(v)
        .into_iter()
        .filter_map(|json| match Member::from_json(&json) {
            Ok(m) => Some(m),
            Err(error) => {
                tracing::warn!(target: "broadcast::presence", room = room.replace('\u{1f}', " "), %error, "skipping an invalid member stored in Redis");
                None
            }
        })
        .collect();
    members.sort_by(|a, b| a.id().cmp(b.id()));
    members
}

impl RedisPresenceStore {
    async fn apply_in_redis(
        &self,
        room: &str,
        ops: &[Op],
        members: bool,
    ) -> Result<Applied, PresenceError> {
        let err = |e| store_error("join/leave", room, e);
        if ops.iter().any(|op| matches!(op, Op::Join { .. })) {
            // Listed before the script: a sweeper that finds this server
            // dead must find this room too.
            self.cmd("SADD", vec![self.rooms_key(&self.server), room.to_owned()])
                .await
                .map_err(err)?;
        }
        let mut args = Vec::with_capacity(1 + 4 * ops.len());
        args.push(if members { "1" } else { "0" }.to_owned());
        for op in ops {
            match op {
                Op::Join { conn, member } => args.extend([
                    "j".to_owned(),
                    conn.clone(),
                    member.id().to_owned(),
                    member.json().to_owned(),
                ]),
                Op::Leave { conn } => {
                    args.extend(["l".to_owned(), conn.clone(), String::new(), String::new()]);
                }
            }
        }
        let reply = self
            .eval(BATCH, self.keys(room, &self.server), args)
            .await
            .map_err(err)?;
        let Value::Array(parts) = reply else {
            return Err(store_error(
                "join/leave",
                room,
                "unexpected reply from Redis: not an array",
            ));
        };
        let want = 2 * ops.len() + usize::from(members);
        if parts.len() != want {
            return Err(store_error(
                "join/leave",
                room,
                format!(
                    "unexpected reply from Redis: {} elements, not {want}",
                    parts.len()
                ),
            ));
        }
        let mut parts = parts.into_iter();
        let mut transitions = Vec::with_capacity(ops.len());
        for op in ops {
            let json = parts
                .next()
                .and_then(Value::into_string)
                .unwrap_or_default();
            let edge = parts.next().and_then(|v| v.as_i64()) == Some(1);
            let member = match op {
                _ if json.is_empty() => None,
                Op::Join { member, .. } => Some(member.clone()),
                Op::Leave { .. } => match Member::from_json(&json) {
                    Ok(m) => Some(m),
                    Err(error) => {
                        // The leave happened; only its frame is lost.
                        tracing::warn!(target: "broadcast::presence", room = room.replace('\u{1f}', " "), %error, "a member that left is invalid in Redis: no presence_left for it");
                        None
                    }
                },
            };
            transitions.push(Transition { member, edge });
        }
        let list = if members {
            members_of(room, parts.next().unwrap_or(Value::Null))
        } else {
            Vec::new()
        };
        Ok((transitions, list))
    }
}

impl Store for RedisPresenceStore {
    fn apply<'a>(
        &'a self,
        room: &'a str,
        ops: &'a [Op],
        members: bool,
    ) -> BoxFuture<'a, Result<Applied, PresenceError>> {
        Box::pin(async move {
            {
                let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
                for op in ops {
                    match op {
                        Op::Join { conn, member } => {
                            local.insert((room.to_owned(), conn.clone()), member.clone());
                        }
                        Op::Leave { conn } => {
                            local.remove(&(room.to_owned(), conn.clone()));
                        }
                    }
                }
            }
            let result = self.apply_in_redis(room, ops, members).await;
            if result.is_err() {
                let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
                let mut retry = self.retry.lock().unwrap_or_else(PoisonError::into_inner);
                for op in ops {
                    match op {
                        Op::Join { conn, .. } => {
                            // The join is refused: nothing of it may stay.
                            local.remove(&(room.to_owned(), conn.clone()));
                            retry.push((room.to_owned(), conn.clone()));
                        }
                        Op::Leave { conn } => retry.push((room.to_owned(), conn.clone())),
                    }
                }
            }
            result
        })
    }

    fn members<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<Member>, PresenceError>> {
        Box::pin(async move {
            let [m, ..] = self.keys(room, "");
            let v = self
                .cmd("HVALS", vec![m])
                .await
                .map_err(|e| store_error("members", room, e))?;
            Ok(members_of(room, v))
        })
    }

    fn count<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<usize, PresenceError>> {
        Box::pin(async move {
            let [m, ..] = self.keys(room, "");
            let v = self
                .cmd("HLEN", vec![m])
                .await
                .map_err(|e| store_error("count", room, e))?;
            v.as_i64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    store_error("count", room, "unexpected reply from Redis: not a count")
                })
        })
    }
}

/// The heartbeat and sweep of one server, until its presence is dropped.
pub(crate) fn spawn_upkeep(store: Arc<RedisPresenceStore>, service: Weak<PresenceService>) {
    tokio::spawn(async move {
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sweep = tokio::time::Instant::now();
        let mut failing = false;
        loop {
            beat.tick().await;
            let Some(service) = service.upgrade() else {
                store.quit().await;
                return;
            };
            let result = async {
                for (room, joined, t) in store.heartbeat().await? {
                    service.announce_key(&room, joined, t);
                }
                if last_sweep.elapsed() >= SWEEP {
                    last_sweep = tokio::time::Instant::now();
                    for (room, left, vacated) in store.sweep().await? {
                        service.announce_left(&room, left, vacated);
                    }
                }
                Ok::<_, PresenceError>(())
            }
            .await;
            match result {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!(target: "broadcast::presence", "presence upkeep works again");
                }
                Ok(()) => {}
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(target: "broadcast::presence", %error, "presence upkeep failed; retrying every heartbeat");
                }
                Err(_) => {}
            }
        }
    });
}
