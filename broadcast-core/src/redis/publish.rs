//! Publishing broadcasts as socketioxide-redis requests, and the two
//! transports built on it: the worker's and the server's.
//!
//! # At most once per id
//!
//! A delivery that carries an id ([`Delivery::id`], an outbox row's event
//! id) is published by one Lua script, [`IDEMPOTENT_PUBLISH`]: `SET key NX
//! PX ttl`, then `SPUBLISH` only if the key was new. Redis runs a script
//! atomically, so "seen before" and "published" cannot come apart: a relay
//! killed after the script and before it marked the row delivered re-runs
//! the script for the same id, which publishes nothing. The key carries the
//! channel as its hash tag (`{socket.io-request#/#}:broadcast-id:<id>`), so
//! on Redis Cluster it lives in the channel's slot, on the shard the
//! script's `SPUBLISH` goes to. A server transport runs the script before it
//! emits to its own sockets, and emits only if the id was new. Keys expire
//! after [`IDEMPOTENCY_TTL`]: a re-delivery later than that is not caught.
//! A prefix with `{` or `}` but no hash tag of its own cannot be matched by
//! a key's slot: on Redis Cluster its script fails with `CROSSSLOT`, an
//! error (the row is retried, then parked), never a silent duplicate.

use std::borrow::Cow;
use std::time::Duration;

use fred::interfaces::{LuaInterface, PubsubInterface};
use serde_json::value::RawValue;
use socketioxide::SocketIo;
use socketioxide_core::adapter::remote_packet::{RequestOut, RequestTypeOut};
use socketioxide_core::adapter::{BroadcastFlags, BroadcastOptions};
use socketioxide_core::packet::Packet;
use socketioxide_core::parser::Parse;
use socketioxide_core::{Sid, Str, Uid};
use socketioxide_parser_common::CommonParser;

use super::error::{PublishError, RedisError};
use super::stats::{Counters, RedisStats};
use super::{Client, RedisAdapter, RedisConfig, RedisConnection};
use crate::error::TransportError;
use crate::target::NamespaceTargets;
use crate::transport::{
    BoxFuture, Delivery, DeliveryReport, NamespaceFailure, Tally, Transport, emit_group,
};

/// How long Redis remembers a delivered id (one hour): far longer than a
/// relay takes to restart and re-deliver, short enough that the keys of a
/// busy outbox stay small (one key of about 80 bytes per event and
/// namespace).
///
/// ```
/// assert_eq!(broadcast_core::redis::IDEMPOTENCY_TTL.as_secs(), 3600);
/// ```
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(3600);

/// The atomic check-and-publish of a delivery with an id. KEYS[1]: the
/// id's key; ARGV: channel, request, TTL in milliseconds. Returns
/// SPUBLISH's count, or -1 when the id was seen before (nothing published).
pub(crate) const IDEMPOTENT_PUBLISH: &str = r#"
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[3]) then
  return redis.call('SPUBLISH', ARGV[1], ARGV[2])
end
return -1
"#;

/// [`IDEMPOTENT_PUBLISH`] for a run of deliveries to one channel, in order,
/// in one round trip. KEYS: the ids' keys; ARGV: channel, TTL in
/// milliseconds, then the requests. Returns one count (or -1) per key.
pub(crate) const IDEMPOTENT_PUBLISH_RUN: &str = r#"
local out = {}
for i = 1, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'PX', ARGV[2]) then
    out[i] = redis.call('SPUBLISH', ARGV[1], ARGV[2 + i])
  else
    out[i] = -1
  end
end
return out
"#;

/// Most deliveries one run script publishes.
const MAX_RUN: usize = 128;

/// The Redis key that records delivery `id` on `channel`: in the channel's
/// cluster slot (Redis hashes a shard channel's name as it hashes a key, hash
/// tags included, so a channel with a tag of its own is kept as the prefix).
pub(crate) fn idempotency_key(channel: &str, id: &str) -> String {
    let has_tag = channel
        .find('{')
        .is_some_and(|open| channel[open + 1..].find('}').is_some_and(|len| len > 0));
    if has_tag {
        format!("{channel}:broadcast-id:{id}")
    } else {
        format!("{{{channel}}}:broadcast-id:{id}")
    }
}

/// socketioxide-redis's channel for requests to every server of a namespace.
pub(crate) fn request_channel(prefix: &str, namespace: &str) -> String {
    let mut channel = String::with_capacity(prefix.len() + namespace.len() + 10);
    push_request_channel(&mut channel, prefix, namespace);
    channel
}

/// Appends [`request_channel`] to `out`. Built with `push_str` rather than
/// `format!`: a channel name is made for every broadcast, and the formatting
/// machinery cost about 1,000 instructions a name (callgrind on the e2e
/// bench's worker), for a few bytes of copying.
pub(crate) fn push_request_channel(out: &mut String, prefix: &str, namespace: &str) {
    out.push_str(prefix);
    out.push_str("-request#");
    out.push_str(namespace);
    out.push('#');
}

/// One broadcast request, encoded exactly as a socketioxide-redis server
/// encodes its own `sender.broadcast().to(rooms).except(..).emit(event, payload)`.
#[cfg(test)]
pub(crate) fn encode_request(
    node_id: Uid,
    group: &NamespaceTargets,
    except_sockets: &[Sid],
    except_rooms: &[Cow<'static, str>],
    event: &str,
    payload: &RawValue,
) -> Result<Vec<u8>, TransportError> {
    let packet = encode_packet(&group.namespace, event, payload)?;
    encode_with(node_id, &packet, &group.rooms, except_sockets, except_rooms)
}

/// The event packet of a request: encoded once per namespace, whatever the
/// number of requests it goes into (its string is shared, not copied).
fn encode_packet(
    namespace: &str,
    event: &str,
    payload: &RawValue,
) -> Result<Packet, TransportError> {
    // Servers decode with the common (JSON) parser; `&RawValue` goes into
    // it as its bytes, without a second JSON pass.
    let value = CommonParser
        .encode_value(payload, Some(event))
        .map_err(|e| TransportError::Encode(Box::new(e)))?;
    Ok(Packet::event(Str::from(namespace.to_owned()), value))
}

/// A request carrying `packet` to `rooms`, less the exclusions.
fn encode_with(
    node_id: Uid,
    packet: &Packet,
    rooms: &[Cow<'static, str>],
    except_sockets: &[Sid],
    except_rooms: &[Cow<'static, str>],
) -> Result<Vec<u8>, TransportError> {
    let mut opts = BroadcastOptions::default();
    opts.rooms.extend(rooms.iter().cloned());
    // As `SocketIoTransport` does: the first excluded socket is the sender
    // (excluded by id on whichever server holds it), every excluded socket
    // is also excluded through its id room.
    opts.sid = except_sockets.first().copied();
    opts.except.extend(except_rooms.iter().cloned());
    opts.except
        .extend(except_sockets.iter().map(|s| Cow::Owned(s.to_string())));
    if opts.sid.is_some() || !opts.except.is_empty() {
        opts.add_flag(BroadcastFlags::Broadcast);
    }
    let request = RequestOut::new(node_id, RequestTypeOut::Broadcast(packet), &opts);
    rmp_serde::to_vec(&request).map_err(|e| TransportError::Encode(Box::new(e)))
}

/// One namespace's requests: the targets, and each request's channel and
/// bytes.
pub(crate) type GroupRequests = (NamespaceTargets, Vec<(String, Vec<u8>)>);

/// Publishes encoded requests with any fred client and counts them.
#[derive(Clone)]
pub(crate) struct Publisher<C> {
    client: C,
    prefix: String,
    node_id: Uid,
    timeout: Duration,
    stats: RedisStats,
    room_channels: bool,
}

impl<C: PubsubInterface + LuaInterface + Send + Sync> Publisher<C> {
    pub(crate) fn new(client: C, config: &RedisConfig, node_id: Uid, stats: RedisStats) -> Self {
        Self {
            client,
            prefix: config.prefix_str().to_owned(),
            node_id,
            timeout: config.command_timeout_value(),
            stats,
            room_channels: config.uses_room_channels(),
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Encodes the requests for one namespace: each with its channel. One
    /// on the namespace's channel, unless room channels are on and the
    /// delivery has rooms with channels: then one per such room, each
    /// excluding the rooms before it so that a socket in several gets one
    /// copy, and one for the remaining rooms on the namespace's channel,
    /// excluding them all. A delivery with an id always makes one request:
    /// its check-and-publish script needs a single channel.
    pub(crate) fn encode(
        &self,
        group: &NamespaceTargets,
        d: &Delivery<'_>,
    ) -> Result<Vec<(String, Vec<u8>)>, TransportError> {
        let namespace_channel = || request_channel(&self.prefix, &group.namespace);
        let own: Vec<&Cow<'static, str>> = if self.room_channels && d.id.is_none() {
            group
                .rooms
                .iter()
                .filter(|room| super::rooms::has_channel(&group.namespace, room))
                .collect()
        } else {
            Vec::new()
        };
        let packet = encode_packet(&group.namespace, d.event, d.payload)?;
        if own.is_empty() {
            let bytes = encode_with(
                self.node_id,
                &packet,
                &group.rooms,
                d.except_sockets,
                d.except_rooms,
            )?;
            return Ok(vec![(namespace_channel(), bytes)]);
        }
        let rest: Vec<Cow<'static, str>> = group
            .rooms
            .iter()
            .filter(|room| !own.contains(room))
            .cloned()
            .collect();
        let mut except: Vec<Cow<'static, str>> = d.except_rooms.to_vec();
        let mut out = Vec::with_capacity(own.len() + 1);
        for (i, room) in own.iter().enumerate() {
            let bytes = encode_with(
                self.node_id,
                &packet,
                std::slice::from_ref(*room),
                d.except_sockets,
                &except,
            )?;
            out.push((
                super::rooms::room_channel(&self.prefix, &group.namespace, room),
                bytes,
            ));
            // Only the requests after this one exclude its room: a
            // broadcast to a single typed room (the usual case) copies no
            // room name.
            if i + 1 < own.len() || !rest.is_empty() {
                except.push((*room).clone());
            }
        }
        if !rest.is_empty() {
            let bytes = encode_with(self.node_id, &packet, &rest, d.except_sockets, &except)?;
            out.push((namespace_channel(), bytes));
        }
        Ok(out)
    }

    /// Publishes one request; returns how many other processes received it,
    /// or `None` when `id` was published before (nothing was sent).
    pub(crate) async fn publish(
        &self,
        channel: String,
        bytes: Vec<u8>,
        event: &'static str,
        id: Option<&str>,
    ) -> Result<Option<u64>, PublishError> {
        let c = self.stats.counters();
        let len = bytes.len() as u64;
        // fred enforces the command timeout itself, and skips a timed-out
        // command it has not written yet, so a failed broadcast does not
        // go out late after a reconnect. This outer bound only keeps a fred
        // bug from turning into a hung broadcast.
        let outer = self.timeout + Duration::from_millis(500);
        let command = async {
            match id {
                None => {
                    self.client
                        .spublish::<i64, _, _>(channel.as_str(), bytes)
                        .await
                }
                Some(id) => {
                    let ttl = i64::try_from(IDEMPOTENCY_TTL.as_millis()).unwrap_or(i64::MAX);
                    let args: Vec<fred::types::Value> = vec![
                        channel.as_str().into(),
                        fred::types::Value::Bytes(bytes.into()),
                        ttl.into(),
                    ];
                    self.client
                        .eval::<i64, _, _, _>(
                            IDEMPOTENT_PUBLISH,
                            idempotency_key(&channel, id),
                            args,
                        )
                        .await
                }
            }
        };
        let result = match tokio::time::timeout(outer, command).await {
            Ok(Ok(-1)) if id.is_some() => {
                tracing::debug!(%channel, event, id, "already published: not sent again");
                Ok(None)
            }
            Ok(Ok(receivers)) => {
                Counters::add(&c.published, 1);
                Counters::add(&c.bytes_published, len);
                // A server receives its own requests (and ignores them):
                // Redis counts its subscription when it holds one. A
                // worker holds none.
                let own = u64::from(c.subscribed.contains(&channel));
                let others = u64::try_from(receivers).unwrap_or(0).saturating_sub(own);
                if others == 0 {
                    Counters::add(&c.no_receivers, 1);
                }
                tracing::trace!(%channel, event, receivers = others, bytes = len, "published");
                Ok(Some(others))
            }
            Ok(Err(source)) => Err(PublishError::from_fred(
                channel.clone(),
                self.timeout,
                source,
            )),
            Err(_) => Err(PublishError::Timeout {
                channel: channel.clone(),
                timeout: self.timeout,
            }),
        };
        if let Err(error) = &result {
            Counters::add(&c.publish_failed, 1);
            tracing::warn!(%channel, event, %error, "publishing to Redis failed");
        }
        result
    }

    /// Publishes a run of requests with ids to one channel, in order, in
    /// one script call; per request, how many other processes received it
    /// or `None` for an id published before.
    pub(crate) async fn publish_run(
        &self,
        channel: &str,
        run: Vec<(String, Vec<u8>)>,
        event: &'static str,
    ) -> Result<Vec<Option<u64>>, PublishError> {
        let c = self.stats.counters();
        let ttl = i64::try_from(IDEMPOTENCY_TTL.as_millis()).unwrap_or(i64::MAX);
        let count = run.len();
        let lens: Vec<u64> = run.iter().map(|(_, b)| b.len() as u64).collect();
        let mut keys = Vec::with_capacity(count);
        let mut args: Vec<fred::types::Value> = Vec::with_capacity(count + 2);
        args.push(channel.into());
        args.push(ttl.into());
        for (id, bytes) in run {
            keys.push(idempotency_key(channel, &id));
            args.push(fred::types::Value::Bytes(bytes.into()));
        }
        let outer = self.timeout + Duration::from_millis(500);
        let result = match tokio::time::timeout(
            outer,
            self.client
                .eval::<Vec<i64>, _, _, _>(IDEMPOTENT_PUBLISH_RUN, keys, args),
        )
        .await
        {
            Ok(Ok(counts)) if counts.len() == count => {
                let own = u64::from(c.subscribed.contains(channel));
                Ok(counts
                    .into_iter()
                    .zip(lens)
                    .map(|(receivers, len)| {
                        if receivers < 0 {
                            return None;
                        }
                        Counters::add(&c.published, 1);
                        Counters::add(&c.bytes_published, len);
                        let others = u64::try_from(receivers).unwrap_or(0).saturating_sub(own);
                        if others == 0 {
                            Counters::add(&c.no_receivers, 1);
                        }
                        Some(others)
                    })
                    .collect())
            }
            Ok(Ok(counts)) => Err(PublishError::from_fred(
                channel.to_owned(),
                self.timeout,
                fred::error::Error::new(
                    fred::error::ErrorKind::Parse,
                    format!(
                        "the publish script answered {} counts for {count} requests",
                        counts.len()
                    ),
                ),
            )),
            Ok(Err(source)) => Err(PublishError::from_fred(
                channel.to_owned(),
                self.timeout,
                source,
            )),
            Err(_) => Err(PublishError::Timeout {
                channel: channel.to_owned(),
                timeout: self.timeout,
            }),
        };
        match &result {
            Ok(_) => tracing::trace!(%channel, event, count, "published a run"),
            Err(error) => {
                Counters::add(&c.publish_failed, 1);
                tracing::warn!(%channel, event, %error, "publishing to Redis failed");
            }
        }
        result
    }

    /// Publishes one namespace's requests at once: how many other
    /// processes received it (the most any of its channels reached), or
    /// `None` when its id was published before; the first error otherwise.
    async fn publish_group(
        &self,
        requests: Vec<(String, Vec<u8>)>,
        event: &'static str,
        id: Option<&str>,
    ) -> Result<Option<u64>, PublishError> {
        if requests.len() == 1 {
            let Some((channel, bytes)) = requests.into_iter().next() else {
                return Ok(Some(0));
            };
            return self.publish(channel, bytes, event, id).await;
        }
        let results = futures_util::future::join_all(
            requests
                .into_iter()
                .map(|(channel, bytes)| self.publish(channel, bytes, event, id)),
        )
        .await;
        let mut most: Option<u64> = None;
        for result in results {
            if let Some(receivers) = result? {
                most = Some(most.map_or(receivers, |m| m.max(receivers)));
            }
        }
        Ok(most)
    }

    /// Publishes every request at once, so that a broadcast to several
    /// namespaces still fails within one command timeout.
    pub(crate) async fn publish_all(
        &self,
        requests: Vec<GroupRequests>,
        event: &'static str,
        id: Option<&str>,
    ) -> Vec<(NamespaceTargets, Result<Option<u64>, PublishError>)> {
        let futures = requests.into_iter().map(|(group, parts)| async move {
            let result = self.publish_group(parts, event, id).await;
            (group, result)
        });
        futures_util::future::join_all(futures).await
    }
}

/// Delivers by publishing socketioxide-redis requests, for processes
/// without a Socket.IO server (workers); built by [`worker`](super::worker).
pub(crate) struct RedisTransport {
    publisher: Publisher<fred::clients::Client>,
    connection: RedisConnection,
}

impl std::fmt::Debug for RedisTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTransport")
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

impl RedisTransport {
    /// Connects a plain fred client (RESP3, reconnect policy, command
    /// timeout from `config`).
    pub(crate) async fn connect(config: &RedisConfig) -> Result<Self, RedisError> {
        config.validate()?;
        let target = config.target();
        let client = config.connect_plain().await?;
        tracing::info!(target = %target, "connected to Redis (worker)");
        let stats = RedisStats::default();
        let (closed, _) = tokio::sync::watch::channel(false);
        let connection = RedisConnection::new(
            Client::Plain(client.clone()),
            stats.clone(),
            std::sync::Arc::new(closed),
            target,
            config.command_timeout_value(),
        );
        connection.spawn_reconnect_counter();
        // A fresh node id: servers ignore requests carrying their own.
        let publisher = Publisher::new(client, config, Uid::new(), stats);
        Ok(Self {
            publisher,
            connection,
        })
    }

    /// A handle on the connection: stats and shutdown. Take it before
    /// handing the transport to a [`Broadcaster`](crate::Broadcaster).
    pub(crate) fn connection(&self) -> RedisConnection {
        self.connection.clone()
    }

    pub(crate) fn client(&self) -> &fred::clients::Client {
        &self.publisher.client
    }
}

impl Transport for RedisTransport {
    fn deliver<'a>(
        &'a self,
        d: Delivery<'a>,
    ) -> BoxFuture<'a, Result<DeliveryReport, NamespaceFailure>> {
        Box::pin(publish_only(&self.publisher, d))
    }

    fn deliver_all<'a>(
        &'a self,
        deliveries: Vec<Delivery<'a>>,
    ) -> BoxFuture<'a, Vec<Result<DeliveryReport, NamespaceFailure>>> {
        Box::pin(publish_runs(&self.publisher, deliveries))
    }
}

/// The one channel of a delivery with an id to a single namespace, with
/// its encoded request: what a run script can take.
fn runnable<C: PubsubInterface + LuaInterface + Send + Sync>(
    publisher: &Publisher<C>,
    d: &Delivery<'_>,
) -> Option<(NamespaceTargets, String, Vec<u8>)> {
    let id = d.id?;
    let mut groups = d.targets.namespaces();
    let group = groups.next()?;
    if groups.next().is_some() || id.is_empty() {
        return None;
    }
    let mut requests = publisher.encode(group, d).ok()?;
    if requests.len() != 1 {
        return None;
    }
    let (channel, bytes) = requests.pop()?;
    Some((group.clone(), channel, bytes))
}

/// Deliveries in order: consecutive ones with an id to the same single
/// channel go out in one script call each (up to [`MAX_RUN`]); the others
/// one by one. Stops at the first failure.
async fn publish_runs<C: PubsubInterface + LuaInterface + Send + Sync>(
    publisher: &Publisher<C>,
    deliveries: Vec<Delivery<'_>>,
) -> Vec<Result<DeliveryReport, NamespaceFailure>> {
    let mut out = Vec::with_capacity(deliveries.len());
    let mut i = 0;
    while i < deliveries.len() {
        let Some((group, channel, bytes)) = runnable(publisher, &deliveries[i]) else {
            let result = publish_only(publisher, deliveries[i]).await;
            let failed = result.is_err();
            out.push(result);
            if failed {
                return out;
            }
            i += 1;
            continue;
        };
        let event = deliveries[i].event;
        let mut run = vec![(deliveries[i].id.unwrap_or_default().to_owned(), bytes)];
        let mut j = i + 1;
        while j < deliveries.len() && run.len() < MAX_RUN {
            match runnable(publisher, &deliveries[j]) {
                Some((_, c, b)) if c == channel => {
                    run.push((deliveries[j].id.unwrap_or_default().to_owned(), b));
                    j += 1;
                }
                _ => break,
            }
        }
        match publisher.publish_run(&channel, run, event).await {
            Ok(counts) => {
                for receivers in counts {
                    let mut tally = Tally::default();
                    match receivers {
                        Some(r) => tally.published(&group, r),
                        None => tally.report.duplicate = true,
                    }
                    out.push(tally.finish());
                }
                i = j;
            }
            Err(error) => {
                // The script runs whole or not at all; a timeout may hide a
                // run that went out, which the ids make harmless to retry.
                let error = match error {
                    PublishError::Timeout { timeout, .. } => TransportError::Timeout(timeout),
                    other => TransportError::Adapter(Box::new(other)),
                };
                out.push(Err(NamespaceFailure {
                    target: group,
                    error,
                }));
                return out;
            }
        }
    }
    out
}

/// A delivery by publishing alone: a worker's, and a server's remote-only
/// retry.
async fn publish_only<C: PubsubInterface + LuaInterface + Send + Sync>(
    publisher: &Publisher<C>,
    d: Delivery<'_>,
) -> Result<DeliveryReport, NamespaceFailure> {
    let mut requests = Vec::new();
    for group in d.targets.namespaces() {
        let parts = publisher
            .encode(group, &d)
            .map_err(|error| NamespaceFailure {
                target: group.clone(),
                error,
            })?;
        requests.push((group.clone(), parts));
    }
    let mut tally = Tally::default();
    let mut duplicates = 0;
    let total = requests.len();
    for (group, result) in publisher.publish_all(requests, d.event, d.id).await {
        match result {
            Ok(Some(receivers)) => tally.published(&group, receivers),
            Ok(None) => duplicates += 1,
            Err(PublishError::Timeout { timeout, .. }) => {
                tally.failed(&group, TransportError::Timeout(timeout))
            }
            Err(other) => tally.failed(&group, TransportError::Adapter(Box::new(other))),
        }
    }
    tally.report.duplicate = total > 0 && duplicates == total;
    tally.finish()
}

/// Publishes to the other servers only, as the server itself (so its own
/// adapter ignores the request): the retry of a server broadcast whose
/// local delivery succeeded; built by [`server`](super::server).
pub(crate) struct RedisRemoteTransport {
    publisher: Publisher<fred::clients::SubscriberClient>,
}

impl std::fmt::Debug for RedisRemoteTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRemoteTransport")
            .finish_non_exhaustive()
    }
}

impl Transport for RedisRemoteTransport {
    fn deliver<'a>(
        &'a self,
        d: Delivery<'a>,
    ) -> BoxFuture<'a, Result<DeliveryReport, NamespaceFailure>> {
        Box::pin(publish_only(&self.publisher, d))
    }
}

/// Delivers to this server's sockets, then publishes to the other servers
/// through the adapter's own connection; built by [`server`](super::server).
pub(crate) struct RedisServerTransport {
    io: SocketIo<RedisAdapter>,
    publisher: Publisher<fred::clients::SubscriberClient>,
}

impl std::fmt::Debug for RedisServerTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServerTransport")
            .field("server_id", &self.io.config().server_id)
            .finish_non_exhaustive()
    }
}

impl RedisServerTransport {
    /// A transport over a server built with the Redis adapter.
    pub(crate) fn new(
        io: SocketIo<RedisAdapter>,
        driver: &super::MeteredFredDriver,
        config: &RedisConfig,
    ) -> Self {
        // The server's own id, so that its adapter ignores the request
        // when it comes back on the shared channel: local sockets have it.
        let node_id = io.config().server_id;
        let publisher = Publisher::new(
            driver.client().clone(),
            config,
            node_id,
            driver.stats().clone(),
        );
        Self { io, publisher }
    }

    /// The remote-only transport of the same server: same connection, same
    /// node id.
    pub(crate) fn remote_only(&self) -> RedisRemoteTransport {
        RedisRemoteTransport {
            publisher: self.publisher.clone(),
        }
    }
}

impl RedisServerTransport {
    /// A delivery with an id: the check-and-publish script first, then this
    /// server's sockets, and only for the namespaces whose id was new. So a
    /// re-delivered row reaches neither this server's sockets nor the
    /// others'; and when Redis is down nobody gets it (the row stays to be
    /// retried), where a plain broadcast would still reach local sockets.
    async fn deliver_once(&self, d: Delivery<'_>) -> Result<DeliveryReport, NamespaceFailure> {
        let mut tally = Tally::default();
        let mut requests = Vec::new();
        for group in d.targets.namespaces() {
            // An unknown namespace fails before anything is recorded, so
            // the retry is not taken for a duplicate.
            if self.io.of(&*group.namespace).is_none() {
                tally.failed(
                    group,
                    TransportError::UnknownNamespace(group.namespace.to_string()),
                );
                continue;
            }
            match self.publisher.encode(group, &d) {
                Ok(parts) => requests.push((group.clone(), parts)),
                Err(error) => tally.failed(group, error),
            }
        }
        let total = requests.len();
        let mut duplicates = 0;
        for (group, result) in self.publisher.publish_all(requests, d.event, d.id).await {
            match result {
                Ok(Some(receivers)) => {
                    match emit_group(&self.io, &group, &d, true, &mut tally.report).await {
                        Ok(()) => tally.published(&group, receivers),
                        Err(error) => tally.failed(&group, error),
                    }
                }
                Ok(None) => duplicates += 1,
                Err(PublishError::Timeout { timeout, .. }) => {
                    tally.failed(&group, TransportError::Timeout(timeout))
                }
                Err(other) => tally.failed(&group, TransportError::Adapter(Box::new(other))),
            }
        }
        tally.report.duplicate = total > 0 && duplicates == total;
        tally.finish()
    }
}

impl Transport for RedisServerTransport {
    fn deliver<'a>(
        &'a self,
        d: Delivery<'a>,
    ) -> BoxFuture<'a, Result<DeliveryReport, NamespaceFailure>> {
        Box::pin(async move {
            if d.id.is_some() {
                return self.deliver_once(d).await;
            }
            let mut tally = Tally::default();
            let mut requests = Vec::new();
            for group in d.targets.namespaces() {
                let local = emit_group(&self.io, group, &d, true, &mut tally.report).await;
                match local.and_then(|()| self.publisher.encode(group, &d)) {
                    Ok(parts) => requests.push((group.clone(), parts)),
                    Err(error) => tally.failed(group, error),
                }
            }
            let mut remote_failed = false;
            for (group, result) in self.publisher.publish_all(requests, d.event, None).await {
                match result {
                    Ok(receivers) => tally.published(&group, receivers.unwrap_or(0)),
                    Err(error) => {
                        remote_failed = true;
                        tally.failed(&group, TransportError::RemoteFailed(Box::new(error)));
                    }
                }
            }
            if remote_failed {
                let c = self.publisher.stats.counters();
                Counters::add(&c.local_only, 1);
                tracing::warn!(
                    event = d.event,
                    timeout = ?self.publisher.timeout(),
                    "delivered to this server's sockets only: Redis publish failed"
                );
            }
            tally.finish()
        })
    }
}

#[cfg(test)]
mod tests {
    use socketioxide_core::adapter::remote_packet::{RequestIn, RequestTypeIn};
    use socketioxide_core::packet::PacketData;

    use super::*;

    fn group(ns: &'static str, rooms: &[&'static str]) -> NamespaceTargets {
        NamespaceTargets {
            namespace: Cow::Borrowed(ns),
            rooms: rooms.iter().map(|r| Cow::Borrowed(*r)).collect(),
        }
    }

    #[test]
    fn request_decodes_as_a_socketioxide_broadcast() {
        let payload =
            serde_json::value::to_raw_value(&serde_json::json!({"chat_id": 7, "text": "hi \"x\""}))
                .unwrap();
        let node = Uid::new();
        let sender = Sid::new();
        let bytes = encode_request(
            node,
            &group("/chat", &["chat|7", "chat|8"]),
            &[sender],
            &[Cow::Borrowed("muted")],
            "message_posted",
            &payload,
        )
        .unwrap();
        let request: RequestIn = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(request.node_id, node);
        let opts = request.opts.unwrap();
        assert_eq!(opts.rooms.as_slice(), ["chat|7", "chat|8"]);
        assert_eq!(opts.sid, Some(sender));
        assert_eq!(
            opts.except.as_slice(),
            ["muted".to_string(), sender.to_string()]
        );
        assert!(opts.has_flag(BroadcastFlags::Broadcast));
        assert!(!opts.has_flag(BroadcastFlags::Local));
        let RequestTypeIn::Broadcast(packet) = request.r#type else {
            panic!("not a broadcast");
        };
        assert_eq!(&*packet.ns, "/chat");
        let PacketData::Event(value, None) = packet.inner else {
            panic!("not an event: {:?}", packet.inner);
        };
        assert_eq!(
            value.as_str().map(|s| s.to_string()).unwrap(),
            r#"["message_posted",{"chat_id":7,"text":"hi \"x\""}]"#
        );
    }

    #[test]
    fn no_except_means_no_broadcast_flag() {
        let payload = serde_json::value::to_raw_value(&1).unwrap();
        let bytes =
            encode_request(Uid::new(), &group("/", &["r"]), &[], &[], "e", &payload).unwrap();
        let request: RequestIn = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(request.opts.unwrap().flags(), 0);
    }

    #[test]
    fn idempotency_key_hashes_like_its_channel() {
        assert_eq!(
            idempotency_key("socket.io-request#/#", "e1"),
            "{socket.io-request#/#}:broadcast-id:e1"
        );
        // A channel with a hash tag of its own is hashed by that tag.
        assert_eq!(
            idempotency_key("{app}-request#/#", "e1"),
            "{app}-request#/#:broadcast-id:e1"
        );
    }

    #[test]
    fn channel_matches_socketioxide_redis() {
        assert_eq!(request_channel("socket.io", "/"), "socket.io-request#/#");
        assert_eq!(request_channel("app", "/admin"), "app-request#/admin#");
    }
}
