//! The Lua scripts of the Redis presence store: every change of a room's
//! presence is one of them, so each transition is decided once in the
//! cluster. Their `KEYS` are a room's eight keys (see the
//! [parent module](super)), all in the room's hash tag, so a script
//! touches one slot.
//!
//! The version (`KEYS[6]`) changes with every change of the member hash
//! (`KEYS[1]`), which only these scripts write: a reader that has the list
//! of a version need not read it again. It starts from
//! Redis's clock in microseconds when it is created, grows by exactly one
//! per change, and is deleted with the room's last member, so a version
//! never comes back with other members (after a Redis restart too), unless
//! a room changed more than once a microsecond for its whole life.
//!
//! The log (`KEYS[7]`) holds, in large rooms, what the last versions
//! changed: one entry per version, `<version>` then a line per member,
//! `+<json>` for one that joined, `-<json>` for one that left. A reader
//! holding the list of a version the log still covers reads only the
//! entries after it (see [`MEMBERS_LUA`]): a changed room of 10,000 members
//! costs its changes, not 10,000 strings. A room keeps at most 256
//! entries, and one per 32 members (none under 32), so small rooms, whose
//! lists are cheap to read, keep none, and a room of 10,000 keeps 256.
//!
//! The snapshot (`KEYS[8]`) is a large room's list as one string, written
//! by a reader after it read the list whole, tagged with the version read
//! before it: a reader with no kept list (a process's first query of the
//! room) reads it and the log's entries after it, one string instead of
//! 10,000, while the log still reaches back to it.
//!
//! The marks hash (`KEYS[5]`) holds the members whose leave was announced
//! while Redis may still see them come back (a dead server's members, a
//! leave Redis lost), and `''` when the room's vacating was: a restore
//! announces only what was announced gone, so a Redis restart is silent.

use std::sync::LazyLock;
use std::time::Duration;

use crate::redis::script::Script;

/// The functions the scripts share (`concat!` takes literals only).
macro_rules! prelude {
    () => {
        r"
-- A new version of the member hash (`changes`: its log lines); gone with
-- its last member. The first version of a room is not logged: a reader
-- holds a list of it, or of an earlier room, which the log cannot serve.
local function bump(changes)
  if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[6], KEYS[7], KEYS[8])
    return
  end
  local v = redis.call('INCR', KEYS[6])
  if v == 1 then
    local t = redis.call('TIME')
    redis.call('SET', KEYS[6], t[1] .. string.format('%06d', tonumber(t[2])))
    redis.call('DEL', KEYS[7], KEYS[8])
    return
  end
  local keep = math.min(256, math.floor(redis.call('HLEN', KEYS[1]) / 32))
  if keep > 0 then
    redis.call('RPUSH', KEYS[7], string.format('%d', v) .. '\n' .. table.concat(changes, '\n'))
    redis.call('LTRIM', KEYS[7], -keep, -1)
  elseif redis.call('EXISTS', KEYS[7]) == 1 then
    redis.call('DEL', KEYS[7])
  end
end
-- The log's entries after version `wn` up to `vn`, if it has them.
local function after(wn, vn)
  if not (wn and vn and wn < vn) then return nil end
  local first = redis.call('LINDEX', KEYS[7], 0)
  local f = first and tonumber(string.match(first, '^(%d+)'))
  if f and f <= wn + 1 then
    return redis.call('LRANGE', KEYS[7], wn + 1 - f, -1)
  end
  return nil
end
-- The version of the room's snapshot, if any.
local function snapshot_version()
  return tonumber(string.match(redis.call('GETRANGE', KEYS[8], 0, 24), '^(%d+)'))
end
-- What a reader holding the list of version `w` needs: {v, 0} it is
-- current; {v, 1, entries} the log's entries after it; {v, 3, snapshot,
-- entries} the snapshot and the log's entries after it; {v, 2} a full
-- read. The reader checks that entries follow on from its version. `v` is
-- '' when the room has no version (empty, or written without these
-- scripts).
local function since(w)
  local v = redis.call('GET', KEYS[6]) or ''
  if v ~= '' and v == w then return {v, 0} end
  local vn = tonumber(v)
  local entries = after(tonumber(w), vn)
  if entries then return {v, 1, entries} end
  if not vn then return {v, 2} end
  local s = snapshot_version()
  if s == vn then return {v, 3, redis.call('GET', KEYS[8]), {}} end
  entries = after(s, vn)
  if entries then return {v, 3, redis.call('GET', KEYS[8]), entries} end
  return {v, 2}
end
"
    };
}

/// A batch of joins and leaves of one room: `ARGV[1]` is `n` when the
/// members are not wanted, else `m` and the version whose list the caller
/// holds (none: `m` alone), then 4 arguments per change: `j` or `l`, the
/// connection, the member id and JSON (empty for a leave). Returns per
/// change the member that joined or left (or ''), the edge flag and
/// whether Redis knew the connection (a leave of a connection it did not
/// know, which this server had joined, was lost with Redis's data), then
/// the members as `since` answers, a full read's list third. A join clears the room's announced-gone marks (`KEYS[5]`)
/// of what it announces itself.
const BATCH_LUA: &str = concat!(
    prelude!(),
    r"
local changes = {}
local out = {}
local changed = false
for i = 2, #ARGV, 4 do
  local conn = ARGV[i + 1]
  local member, edge, known = '', 0, 1
  if ARGV[i] == 'j' then
    if redis.call('HEXISTS', KEYS[3], conn) == 0 then
      local id = ARGV[i + 2]
      if redis.call('HLEN', KEYS[2]) == 0 then
        edge = 1
        redis.call('HDEL', KEYS[5], '')
      end
      redis.call('HSET', KEYS[3], conn, id)
      redis.call('SADD', KEYS[4], conn)
      if redis.call('HINCRBY', KEYS[2], id, 1) == 1 then
        redis.call('HSET', KEYS[1], id, ARGV[i + 3])
        redis.call('HDEL', KEYS[5], id)
        member = ARGV[i + 3]
        table.insert(changes, '+' .. member)
        changed = true
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
        changed = true
        if member ~= '' then table.insert(changes, '-' .. member) end
        if member ~= '' and redis.call('HLEN', KEYS[2]) == 0 then edge = 1 end
      end
    else
      known = 0
    end
  end
  table.insert(out, member)
  table.insert(out, edge)
  table.insert(out, known)
end
if changed then bump(changes) end
if string.sub(ARGV[1], 1, 1) == 'm' then
  local s = since(string.sub(ARGV[1], 2))
  if s[2] == 2 then s[3] = redis.call('HVALS', KEYS[1]) end
  table.insert(out, s)
end
return out
",
);

/// Puts back connections of this server that Redis lost (3 arguments
/// each: connection, member id, member JSON). Clients never saw those
/// members leave, so a restored member is announced only when a leave of
/// it was announced (its mark in `KEYS[5]`: the sweep took this server for
/// dead, or a leave during the outage looked final); the same for the
/// room's occupation (mark ''). Returns `{occupied, announced members}`.
const RESTORE_LUA: &str = concat!(
    prelude!(),
    r"
local changes = {}
local changed = false
local was_empty = redis.call('HLEN', KEYS[2]) == 0
local out = {}
for i = 1, #ARGV, 3 do
  local conn, id = ARGV[i], ARGV[i + 1]
  if redis.call('HSETNX', KEYS[3], conn, id) == 1 then
    redis.call('SADD', KEYS[4], conn)
    if redis.call('HINCRBY', KEYS[2], id, 1) == 1 then
      redis.call('HSET', KEYS[1], id, ARGV[i + 2])
      table.insert(changes, '+' .. ARGV[i + 2])
      changed = true
      if redis.call('HDEL', KEYS[5], id) == 1 then table.insert(out, ARGV[i + 2]) end
    end
  end
end
if changed then bump(changes) end
local occupied = 0
if was_empty and redis.call('HLEN', KEYS[2]) > 0 and redis.call('HDEL', KEYS[5], '') == 1 then
  occupied = 1
end
return {occupied, out}
",
);

/// A leave Redis could not see (the connection was lost with its data):
/// announced once in the cluster, and only if the member has no connection
/// left anywhere. Marks what it announces (`KEYS[5]`) so a later restore
/// of the member announces it again. `ARGV[1]` is the member id,
/// `ARGV[2]` the marks' lifetime. Returns `{announce, vacated}`.
const LOST_LUA: &str = r"
local id = ARGV[1]
if redis.call('HEXISTS', KEYS[2], id) == 1 or redis.call('HEXISTS', KEYS[5], id) == 1 then
  return {0, 0}
end
redis.call('HSET', KEYS[5], id, 1)
local vacated = 0
if redis.call('HLEN', KEYS[2]) == 0 and redis.call('HSETNX', KEYS[5], '', 1) == 1 then
  vacated = 1
end
redis.call('PEXPIRE', KEYS[5], ARGV[2])
return {1, vacated}
";

/// Removes the connections of a dead server from one room; marks the
/// members it announces as gone (`KEYS[5]`, lifetime `ARGV[1]`), so the
/// server's restore, should it come back, announces them again.
const CLEANUP_LUA: &str = concat!(
    prelude!(),
    r"
local left = {}
for _, conn in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  local id = redis.call('HGET', KEYS[3], conn)
  if id then
    redis.call('HDEL', KEYS[3], conn)
    if redis.call('HINCRBY', KEYS[2], id, -1) <= 0 then
      redis.call('HDEL', KEYS[2], id)
      local m = redis.call('HGET', KEYS[1], id)
      redis.call('HDEL', KEYS[1], id)
      if m then
        table.insert(left, m)
        redis.call('HSET', KEYS[5], id, 1)
      end
    end
  end
end
redis.call('DEL', KEYS[4])
local changes = {}
for _, m in ipairs(left) do table.insert(changes, '-' .. m) end
if #left > 0 then bump(changes) end
local vacated = 0
if #left > 0 and redis.call('HLEN', KEYS[2]) == 0 then
  vacated = 1
  redis.call('HSET', KEYS[5], '', 1)
end
if #left > 0 then redis.call('PEXPIRE', KEYS[5], ARGV[1]) end
return {vacated, left}
",
);

/// Keeps `ARGV[2]` as the room's snapshot of version `ARGV[1]` (the
/// version, then the members' JSON, a line each, sorted by id), unless
/// that version is newer than the room's (a room that emptied meanwhile)
/// or a snapshot as new is kept. Returns whether it was kept.
const SNAPSHOT_LUA: &str = concat!(
    prelude!(),
    r"
local v = tonumber(redis.call('GET', KEYS[6]) or '')
local new = tonumber(ARGV[1])
if not v or not new or new > v then return 0 end
local s = snapshot_version()
if s and s >= new then return 0 end
redis.call('SET', KEYS[8], ARGV[2])
return 1
",
);

/// What a reader holding the list of version `ARGV[1]` (or none: '') needs
/// of a room: `since`'s answer (see the prelude).
const MEMBERS_LUA: &str = concat!(
    prelude!(),
    r"
return since(ARGV[1])
"
);

/// The scripts, called by hash.
pub(super) static BATCH: LazyLock<Script> = LazyLock::new(|| Script::new(BATCH_LUA));
pub(super) static RESTORE: LazyLock<Script> = LazyLock::new(|| Script::new(RESTORE_LUA));
pub(super) static LOST: LazyLock<Script> = LazyLock::new(|| Script::new(LOST_LUA));
pub(super) static CLEANUP: LazyLock<Script> = LazyLock::new(|| Script::new(CLEANUP_LUA));
pub(super) static MEMBERS: LazyLock<Script> = LazyLock::new(|| Script::new(MEMBERS_LUA));
pub(super) static SNAPSHOT: LazyLock<Script> = LazyLock::new(|| Script::new(SNAPSHOT_LUA));

/// How long a room keeps the marks of members announced as gone by a
/// sweep or a lost leave: a server that comes back later than this
/// restores its members without announcing them.
pub(super) const GONE_TTL: Duration = Duration::from_secs(24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_keeps_the_log_the_module_documents() {
        let rule = "math.min(256, math.floor(redis.call('HLEN', KEYS[1]) / 32))";
        for script in [BATCH_LUA, RESTORE_LUA, CLEANUP_LUA, MEMBERS_LUA] {
            assert!(script.contains(rule), "{script}");
        }
    }
}
