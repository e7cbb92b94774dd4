//! Presence in Redis: the state every server and worker sees, changed only
//! by Lua scripts (`scripts.rs`) so each transition is decided once in the
//! cluster, plus each server's upkeep (`upkeep.rs`): its heartbeat, its
//! sweep of dead servers, and the silent restore of its own members after
//! Redis lost them.
//!
//! Keys (`P` is the channel prefix; `R` the room's store key, in a hash
//! tag so a room's keys share a cluster slot):
//! - `P-presence:{R}:m` hash member id -> member JSON
//! - `P-presence:{R}:n` hash member id -> connections
//! - `P-presence:{R}:c` hash connection -> member id
//! - `P-presence:{R}:s:S` set of the connections of server `S`
//! - `P-presence:{R}:g` hash of the members announced gone that a restore
//!   must announce again (see `scripts.rs`)
//! - `P-presence:{R}:v` the version of the member hash (see `scripts.rs`):
//!   each store keeps the list of the last version it read per room, so a
//!   query of a room that did not change reads a version, not the list
//! - `P-presence:{R}:l` the log of the last versions' changes, in large
//!   rooms (see `scripts.rs`): a store whose kept list is older reads the
//!   changes since, not the list
//! - `P-presence:{R}:snap` a large room's list as one string, for readers
//!   that keep none (see `scripts.rs`)
//! - `P-presence-rooms:S` set of the rooms where server `S` has connections
//! - `P-presence-alive:S` exists while server `S` lives ([`ALIVE_TTL`])
//! - `P-presence-servers` set of the servers that have had members
//!
//! Only the room keys are read or written by scripts; the per-server keys
//! (each in a slot of its own on a cluster) by single commands.

mod log;
mod scripts;
mod upkeep;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};

use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::{ClusterHash, CustomCommand, Value};

use super::config::RedisConfig;
use super::error::RedisError;
use super::script::Script;
use crate::presence::store::{Applied, Op, Store, Transition};
use crate::presence::{Member, PresenceError};
use crate::util::BoxFuture;

pub(crate) use upkeep::spawn_upkeep;
pub use upkeep::{ALIVE_TTL, HEARTBEAT, SWEEP};

/// A room's keys, in the scripts' `KEYS` order.
type RoomKeys = [String; 8];

/// Rooms whose last list a store keeps; past it, it forgets them all (a
/// miss costs one full read).
const CACHED_ROOMS: usize = 1024;

/// Members from which a list read whole is written back as the room's
/// snapshot (see `scripts.rs`): below it, a full read is cheap already.
const SNAPSHOT_MIN: usize = 1_000;

/// A member list, shared between a store's cache and its readers.
type List = Arc<Vec<Member>>;

/// A list a store keeps, with its version.
type Kept = (String, List);

/// Per room: the version of the member list and the list.
type Cache = HashMap<String, Kept>;

/// The Redis presence store of one server (or, without a server id, a
/// worker's: queries only).
pub(crate) struct RedisPresenceStore {
    client: Client,
    prefix: String,
    server: String,
    /// This server's connections, for the restore after Redis lost them.
    local: Mutex<HashMap<(String, String), Member>>,
    /// Leaves Redis did not take (it was down): retried every heartbeat.
    /// The member is there when the connection had joined in Redis, so a
    /// leave Redis no longer knows was lost, not a repeat.
    retry: Mutex<Vec<(String, String, Option<Member>)>>,
    /// `(room, member)` of leaves Redis could not see (it had lost the
    /// connection): announced by the heartbeat if they are final.
    lost: Mutex<Vec<(String, Member)>>,
    /// A restore began and has not finished: the next beat restores even
    /// though the alive key is there.
    restore_pending: AtomicBool,
    /// The member lists last read, by room, with their versions.
    cache: Mutex<Cache>,
}

fn store_error(op: &'static str, room: &str, e: impl std::fmt::Display) -> PresenceError {
    PresenceError::Store {
        op,
        room: room.replace('\u{1f}', " "),
        reason: e.to_string(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
            lost: Mutex::default(),
            restore_pending: AtomicBool::new(false),
            cache: Mutex::default(),
        })
    }

    /// The room's keys, in the scripts' `KEYS` order, for server `server`.
    fn keys(&self, room: &str, server: &str) -> RoomKeys {
        let base = format!("{}:{{{room}}}", self.prefix);
        [
            format!("{base}:m"),
            format!("{base}:n"),
            format!("{base}:c"),
            format!("{base}:s:{server}"),
            format!("{base}:g"),
            format!("{base}:v"),
            format!("{base}:l"),
            format!("{base}:snap"),
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

    /// Runs `script` (routed by its first key: every key of a room is in
    /// its slot).
    async fn eval(
        &self,
        script: &Script,
        keys: RoomKeys,
        args: Vec<String>,
    ) -> Result<Value, fred::error::Error> {
        script
            .run(&self.client, || {
                (
                    keys.to_vec(),
                    args.iter().map(|a| Value::from(a.as_str())).collect(),
                )
            })
            .await
    }

    /// The list this store keeps of `room`, with its version.
    fn kept(&self, room: &str) -> Option<Kept> {
        lock(&self.cache).get(room).cloned()
    }

    /// Keeps `members` as the list of `room` at `version` (none: the room
    /// is empty or was written without the scripts, and nothing is kept),
    /// unless a newer version is kept already.
    fn keep(&self, room: &str, version: &str, members: &List) {
        let mut cache = lock(&self.cache);
        if version.is_empty() {
            cache.remove(room);
            return;
        }
        if let Some((have, _)) = cache.get(room)
            && let (Ok(have), Ok(new)) = (have.parse::<u64>(), version.parse::<u64>())
            && have > new
        {
            return;
        }
        if cache.len() >= CACHED_ROOMS && !cache.contains_key(room) {
            cache.clear();
        }
        cache.insert(room.to_owned(), (version.to_owned(), members.clone()));
    }

    /// Writes `list`, read whole after version `version`, back as the
    /// room's snapshot when the room is large, in the background: the
    /// reader does not wait, and a refused write (a worker's ACL, Redis
    /// away) only leaves the next cold reader a full read.
    fn snapshot(&self, room: &str, version: &str, list: &List) {
        if list.len() < SNAPSHOT_MIN || version.is_empty() {
            return;
        }
        let mut text = String::with_capacity(version.len() + list.len() * 24);
        text.push_str(version);
        for m in list.iter() {
            text.push('\n');
            text.push_str(m.json());
        }
        let (client, keys, room) = (self.client.clone(), self.keys(room, ""), room.to_owned());
        let version = version.to_owned();
        tokio::spawn(async move {
            let written: Result<Value, _> = scripts::SNAPSHOT
                .run(&client, || {
                    (
                        keys.to_vec(),
                        vec![Value::from(version.as_str()), Value::from(text.as_str())],
                    )
                })
                .await;
            if let Err(error) = written {
                tracing::debug!(target: "broadcast::presence", room = room.replace('\u{1f}', " "), %error, "the presence snapshot was not written");
            }
        });
    }

    /// The list of `room` from an answer of the scripts' `since`, given
    /// the list kept when it was asked; `None` when a full read is needed
    /// (the answer says so, or its log does not follow on from the kept
    /// version). `Err` for an answer that is not one of `since`'s.
    fn follow(
        &self,
        room: &str,
        kept: Option<Kept>,
        answer: Value,
    ) -> Result<(String, Option<List>), String> {
        let Value::Array(parts) = answer else {
            return Err("not an array".into());
        };
        let mut parts = parts.into_iter();
        let version = parts
            .next()
            .and_then(Value::into_string)
            .ok_or("no version")?;
        let kind = parts.next().and_then(|v| v.as_i64()).ok_or("no kind")?;
        let list = match (kind, kept) {
            (0, Some((have, list))) if have == version => Some(list),
            (1, Some((have, list))) => {
                let entries = strings(parts.next().unwrap_or(Value::Null));
                match log::apply(&list, &have, &version, &entries) {
                    Ok(list) => Some(Arc::new(list)),
                    Err(why) => {
                        tracing::debug!(target: "broadcast::presence", room = room.replace('\u{1f}', " "), why, "the presence log does not serve this list: reading it whole");
                        None
                    }
                }
            }
            // The batch's script reads the list in the same call; a query
            // reads it with a plain command.
            (2, _) => parts.next().map(|all| {
                let list = Arc::new(members_of(room, all));
                self.snapshot(room, &version, &list);
                list
            }),
            (3, _) => {
                let snapshot = parts.next().and_then(Value::into_string);
                let entries = strings(parts.next().unwrap_or(Value::Null));
                match snapshot.as_deref().map(log::snapshot) {
                    Some(Ok((have, list))) => match log::apply(&list, have, &version, &entries) {
                        Ok(list) => Some(Arc::new(list)),
                        Err(why) => {
                            tracing::debug!(target: "broadcast::presence", room = room.replace('\u{1f}', " "), why, "the presence log does not follow on from the snapshot: reading the list whole");
                            None
                        }
                    },
                    Some(Err(why)) => {
                        tracing::warn!(target: "broadcast::presence", room = room.replace('\u{1f}', " "), why, "an invalid presence snapshot in Redis: reading the list whole");
                        None
                    }
                    None => None,
                }
            }
            (0 | 1, None) => return Err("changes for a list this store does not keep".into()),
            (0, Some(_)) => return Err("unchanged, from another version".into()),
            (other, _) => return Err(format!("unknown kind {other}")),
        };
        if let Some(list) = &list {
            self.keep(room, &version, list);
        }
        Ok((version, list))
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

    /// Lists `room` among this server's rooms. Before any script that adds
    /// a connection: a sweeper that finds this server dead must find the
    /// room too.
    async fn list_room(&self, room: &str) -> Result<(), fred::error::Error> {
        self.cmd("SADD", vec![self.rooms_key(&self.server), room.to_owned()])
            .await
            .map(drop)
    }

    /// Runs one batch; returns its transitions, the members when asked,
    /// and per change whether Redis knew the connection.
    async fn apply_in_redis(
        &self,
        room: &str,
        ops: &[Op],
        members: bool,
    ) -> Result<(Applied, Vec<bool>), PresenceError> {
        let err = |e| store_error("join/leave", room, e);
        if ops.iter().any(|op| matches!(op, Op::Join { .. })) {
            self.list_room(room).await.map_err(err)?;
        }
        let kept = if members { self.kept(room) } else { None };
        let mut args = Vec::with_capacity(1 + 4 * ops.len());
        args.push(match (members, &kept) {
            (false, _) => "n".to_owned(),
            (true, None) => "m".to_owned(),
            (true, Some((version, _))) => format!("m{version}"),
        });
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
            .eval(&scripts::BATCH, self.keys(room, &self.server), args)
            .await
            .map_err(err)?;
        let bad = |what: String| {
            store_error(
                "join/leave",
                room,
                format!("unexpected reply from Redis: {what}"),
            )
        };
        let Value::Array(parts) = reply else {
            return Err(bad("not an array".into()));
        };
        let want = 3 * ops.len() + usize::from(members);
        if parts.len() != want {
            return Err(bad(format!("{} elements, not {want}", parts.len())));
        }
        let mut parts = parts.into_iter();
        let mut transitions = Vec::with_capacity(ops.len());
        let mut known = Vec::with_capacity(ops.len());
        for op in ops {
            let json = parts
                .next()
                .and_then(Value::into_string)
                .unwrap_or_default();
            let edge = parts.next().and_then(|v| v.as_i64()) == Some(1);
            known.push(parts.next().and_then(|v| v.as_i64()) != Some(0));
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
            let answer = parts.next().unwrap_or(Value::Null);
            match self.follow(room, kept, answer).map_err(bad)? {
                (_, Some(list)) => list.as_ref().clone(),
                // The batch is applied; the list is read on its own.
                (_, None) => self.members(room).await?,
            }
        } else {
            Vec::new()
        };
        Ok(((transitions, list), known))
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
    let skip = |error: &dyn std::fmt::Display| {
        tracing::warn!(target: "broadcast::presence", room = room.replace('\u{1f}', " "), %error, "skipping an invalid member stored in Redis");
    };
    let items = match v {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        other => {
            skip(&format_args!("a {:?} reply, not a list", other.kind()));
            return Vec::new();
        }
    };
    // Read in place: the reply's strings are not copied before the member
    // keeps its JSON (10,000 of them per query of a full room). Each is
    // keyed by its id's first 8 bytes, so that sorting compares integers
    // and rarely the strings.
    let mut keyed = Vec::with_capacity(items.len());
    for item in &items {
        match item.as_str() {
            Some(json) => match Member::from_json(&json) {
                Ok(m) => keyed.push((prefix(m.id()), m)),
                Err(error) => skip(&error),
            },
            None => skip(&format_args!("a {:?} entry, not a string", item.kind())),
        }
    }
    drop(items);
    // Ids are unique in a room (the hash's fields): no stability needed.
    keyed.sort_unstable_by(|(ka, a), (kb, b)| ka.cmp(kb).then_with(|| a.id().cmp(b.id())));
    keyed.into_iter().map(|(_, m)| m).collect()
}

/// The first 8 bytes of `id` as a big-endian integer (zero-padded): its
/// order is the order of those bytes, as `str`'s order is.
fn prefix(id: &str) -> u64 {
    let mut bytes = [0u8; 8];
    let n = id.len().min(8);
    bytes[..n].copy_from_slice(&id.as_bytes()[..n]);
    u64::from_be_bytes(bytes)
}

impl Store for RedisPresenceStore {
    fn apply<'a>(
        &'a self,
        room: &'a str,
        ops: &'a [Op],
        members: bool,
    ) -> BoxFuture<'a, Result<Applied, PresenceError>> {
        Box::pin(async move {
            // Per op: the member of a leaving connection this server had
            // joined in Redis.
            let had: Vec<Option<Member>> = {
                let mut local = lock(&self.local);
                ops.iter()
                    .map(|op| match op {
                        Op::Join { conn, member } => {
                            local.insert((room.to_owned(), conn.clone()), member.clone());
                            None
                        }
                        Op::Leave { conn } => local.remove(&(room.to_owned(), conn.clone())),
                    })
                    .collect()
            };
            match self.apply_in_redis(room, ops, members).await {
                Ok((applied, known)) => {
                    let mut lost = lock(&self.lost);
                    for (had, known) in had.into_iter().zip(known) {
                        if let (Some(member), false) = (had, known) {
                            lost.push((room.to_owned(), member));
                        }
                    }
                    Ok(applied)
                }
                Err(e) => {
                    let mut local = lock(&self.local);
                    let mut retry = lock(&self.retry);
                    for (op, had) in ops.iter().zip(had) {
                        match op {
                            Op::Join { conn, .. } => {
                                // The join is refused: nothing of it may stay.
                                local.remove(&(room.to_owned(), conn.clone()));
                                retry.push((room.to_owned(), conn.clone(), None));
                            }
                            Op::Leave { conn } => retry.push((room.to_owned(), conn.clone(), had)),
                        }
                    }
                    Err(e)
                }
            }
        })
    }

    fn members<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<Member>, PresenceError>> {
        Box::pin(async move {
            let err = |e| store_error("members", room, e);
            let keys = self.keys(room, "");
            let kept = self.kept(room);
            let held = kept.as_ref().map(|(v, _)| v.clone()).unwrap_or_default();
            let answer = self
                .eval(&scripts::MEMBERS, keys.clone(), vec![held])
                .await
                .map_err(err)?;
            let version = match self.follow(room, kept, answer) {
                Ok((_, Some(list))) => return Ok(list.as_ref().clone()),
                Ok((version, None)) => version,
                Err(what) => {
                    return Err(store_error(
                        "members",
                        room,
                        format!("unexpected reply from Redis: {what}"),
                    ));
                }
            };
            // A full read, with a plain command (a script would copy the
            // 10,000 strings into Lua and back), after the version: a list
            // read after its version is as new or newer, and a newer one
            // has another version by now, so what is kept is never older
            // than its version says.
            let [m, ..] = keys;
            let list = self.cmd("HVALS", vec![m]).await.map_err(err)?;
            let members = Arc::new(members_of(room, list));
            self.keep(room, &version, &members);
            self.snapshot(room, &version, &members);
            Ok(members.as_ref().clone())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_sorted_by_id_and_bad_entries_skipped() {
        let ids = [
            "b",
            "a",
            "abcdefgh2",
            "abcdefgh10",
            "abcdefgh",
            "ab",
            "ü",
            "Z",
        ];
        let mut items: Vec<Value> = ids
            .iter()
            .map(|id| Member::new(*id).unwrap().json().into())
            .collect();
        items.push("not json".into());
        items.push(Value::Integer(3));
        let got: Vec<String> = members_of("r", Value::Array(items))
            .iter()
            .map(|m| m.id().to_owned())
            .collect();
        let mut want: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        assert_eq!(got, want);
        assert!(members_of("r", Value::Integer(1)).is_empty());
    }
}
