//! Each server's presence upkeep: its heartbeat (alive key), the restore
//! of its own connections when Redis lost them, retries of leaves Redis
//! did not take, the announcement of leaves Redis could not see, and the
//! sweep of dead servers.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use fred::types::Value;

use super::{RedisPresenceStore, lock, members_of, scripts, store_error, strings};
use crate::presence::service::PresenceService;
use crate::presence::store::{Op, Transition};
use crate::presence::{Member, PresenceError};

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

/// A transition the upkeep decided: `(room, joined?, transition)`.
type Announce = (String, bool, Transition);

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

impl RedisPresenceStore {
    /// Renews this server's alive key; when it was gone (first beat, Redis
    /// restarted, or others took this server for dead), restores every
    /// local connection. Then retries failed leaves and, a beat after any
    /// restore (so the other servers have restored theirs), announces the
    /// leaves Redis could not see. Returns what is to be announced.
    async fn heartbeat(&self) -> Result<Vec<Announce>, PresenceError> {
        let err = |e| store_error("heartbeat", "-", e);
        let ttl = millis(ALIVE_TTL);
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
        let mut out = Vec::new();
        let restoring =
            matches!(renewed, Value::Null) || self.restore_pending.load(Ordering::Relaxed);
        if restoring {
            self.restore_pending.store(true, Ordering::Relaxed);
            // Alive first, then listed: a sweeper that sees this server
            // listed sees it alive, and never removes what it restores.
            self.cmd("SET", vec![alive, "1".into(), "PX".into(), ttl])
                .await
                .map_err(err)?;
        }
        // Every beat: a late sweeper may have unlisted this server.
        self.cmd("SADD", vec![self.servers_key(), self.server.clone()])
            .await
            .map_err(err)?;
        if restoring {
            self.restore(&mut out).await?;
            // Until every member is back, the next beat restores again
            // (the script skips what is there).
            self.restore_pending.store(false, Ordering::Relaxed);
        }
        self.retry_leaves(&mut out).await?;
        if !restoring {
            self.announce_lost(&mut out).await?;
        }
        Ok(out)
    }

    /// Puts this server's connections back, one script per room.
    async fn restore(&self, out: &mut Vec<Announce>) -> Result<(), PresenceError> {
        let mut rooms: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let count = {
            let local = lock(&self.local);
            for ((room, conn), member) in local.iter() {
                rooms.entry(room.clone()).or_default().extend([
                    conn.clone(),
                    member.id().to_owned(),
                    member.json().to_owned(),
                ]);
            }
            local.len()
        };
        if count > 0 {
            tracing::info!(target: "broadcast::presence", server = self.server, connections = count, "restoring this server's presence in Redis");
        }
        for (room, args) in rooms {
            let err = |e| store_error("restore", &room, e);
            self.list_room(&room).await.map_err(err)?;
            let reply = self
                .eval(&scripts::RESTORE, self.keys(&room, &self.server), args)
                .await
                .map_err(err)?;
            let Value::Array(parts) = reply else {
                return Err(store_error(
                    "restore",
                    &room,
                    "unexpected reply from Redis: not an array",
                ));
            };
            let mut parts = parts.into_iter();
            if parts.next().and_then(|v| v.as_i64()) == Some(1) {
                let t = Transition {
                    member: None,
                    edge: true,
                };
                out.push((room.clone(), true, t));
            }
            for member in members_of(&room, parts.next().unwrap_or(Value::Null)) {
                let t = Transition {
                    member: Some(member),
                    edge: false,
                };
                out.push((room.clone(), true, t));
            }
        }
        Ok(())
    }

    /// Retries the leaves Redis did not take; stops at the first failure
    /// (Redis is still away) and keeps the rest.
    async fn retry_leaves(&self, out: &mut Vec<Announce>) -> Result<(), PresenceError> {
        let retry = std::mem::take(&mut *lock(&self.retry));
        for (i, (room, conn, had)) in retry.iter().enumerate() {
            let ops = [Op::Leave { conn: conn.clone() }];
            match self.apply_in_redis(room, &ops, false).await {
                Ok(((transitions, _), known)) => {
                    if let (Some(member), Some(false)) = (had, known.first()) {
                        lock(&self.lost).push((room.clone(), member.clone()));
                    }
                    out.extend(transitions.into_iter().map(|t| (room.clone(), false, t)));
                }
                Err(e) => {
                    lock(&self.retry).extend(retry[i..].iter().cloned());
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Announces the leaves Redis could not see whose members have no
    /// connection left anywhere; the script decides once in the cluster.
    async fn announce_lost(&self, out: &mut Vec<Announce>) -> Result<(), PresenceError> {
        let lost = std::mem::take(&mut *lock(&self.lost));
        for (i, (room, member)) in lost.iter().enumerate() {
            let reply = self
                .eval(
                    &scripts::LOST,
                    self.keys(room, &self.server),
                    vec![member.id().to_owned(), millis(scripts::GONE_TTL)],
                )
                .await;
            let parts = match reply {
                Ok(Value::Array(parts)) => parts,
                Ok(_) => {
                    return Err(store_error(
                        "leave",
                        room,
                        "unexpected reply from Redis: not an array",
                    ));
                }
                Err(e) => {
                    lock(&self.lost).extend(lost[i..].iter().cloned());
                    return Err(store_error("leave", room, e));
                }
            };
            let mut flags = parts.into_iter().map(|v| v.as_i64() == Some(1));
            if flags.next() == Some(true) {
                let t = Transition {
                    member: Some(member.clone()),
                    edge: flags.next() == Some(true),
                };
                out.push((room.clone(), false, t));
            }
        }
        Ok(())
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
                    .eval(
                        &scripts::CLEANUP,
                        self.keys(&room, &server),
                        vec![millis(scripts::GONE_TTL)],
                    )
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
