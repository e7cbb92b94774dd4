//! A small Socket.IO v5 client (Engine.IO v4, WebSocket transport only).
//!
//! Built for integration tests and benchmarks: one background task per
//! connection reads the websocket, answers Engine.IO pings, resolves pending
//! namespace connects and acknowledgements, and queues received events for
//! [`SioClient::next_event`]. Outgoing packets are sent by the same task, so a
//! client costs one task, two channels and one socket.
//!
//! Several namespaces can be multiplexed on one connection with
//! [`SioClient::connect_ns`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Upper bound for opening the websocket, the Engine.IO handshake and each namespace connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`SioClient::disconnect`] waits for the server to complete the close handshake.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Maximum number of queued outgoing packets written before one flush.
const MAX_WRITE_BATCH: usize = 64;

/// Heartbeat used when the open packet carries no ping settings (Engine.IO defaults).
const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(25_000 + 20_000);

/// Errors returned by the client and by [`parse_packet`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The websocket layer failed (connect, handshake or I/O).
    #[error("websocket error: {0}")]
    WebSocket(Box<tungstenite::Error>),
    /// A JSON payload could not be encoded or decoded.
    #[error("json error: {0}")]
    Json(#[from] serde_json::Error),
    /// A packet did not follow the Engine.IO / Socket.IO wire format.
    #[error("malformed packet ({reason}): {packet:?}")]
    Malformed {
        /// What was wrong.
        reason: &'static str,
        /// The offending packet (truncated).
        packet: String,
    },
    /// The Engine.IO handshake failed.
    #[error("engine.io handshake failed: {0}")]
    Handshake(String),
    /// The server rejected a namespace connect with a CONNECT_ERROR packet.
    #[error("connect to namespace {ns} rejected: {message}")]
    ConnectError {
        /// Namespace that was rejected.
        ns: String,
        /// The `message` field of the CONNECT_ERROR payload.
        message: String,
        /// The optional `data` field of the CONNECT_ERROR payload.
        data: Option<Value>,
    },
    /// Nothing happened within the given time.
    #[error("timed out")]
    Timeout,
    /// The connection is closed (the string says why).
    #[error("connection closed: {0}")]
    Closed(String),
    /// The namespace is not connected on this client.
    #[error("namespace {0} is not connected")]
    NotConnected(String),
    /// The namespace is already connected or being connected.
    #[error("namespace {0} is already connected or connecting")]
    AlreadyConnected(String),
    /// An event arrived while silence was expected.
    #[error("unexpected event {:?} on namespace {}", .0.event, .0.ns)]
    UnexpectedEvent(Received),
}

impl From<tungstenite::Error> for ClientError {
    fn from(e: tungstenite::Error) -> Self {
        ClientError::WebSocket(Box::new(e))
    }
}

/// An event received from the server.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// Namespace the event was emitted on (`"/"` for the root namespace).
    pub ns: String,
    /// Event name.
    pub event: String,
    /// Event arguments (everything after the name in the event array).
    /// Binary attachments are replaced by arrays of byte values.
    pub args: Vec<Value>,
    /// When the background task decoded the event.
    pub received_at: Instant,
}

/// Socket.IO packet type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// `0` CONNECT
    Connect,
    /// `1` DISCONNECT
    Disconnect,
    /// `2` EVENT
    Event,
    /// `3` ACK
    Ack,
    /// `4` CONNECT_ERROR
    ConnectError,
    /// `5` BINARY_EVENT
    BinaryEvent,
    /// `6` BINARY_ACK
    BinaryAck,
}

impl PacketKind {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }

    fn as_byte(self) -> u8 {
        match self {
            Self::Connect => b'0',
            Self::Disconnect => b'1',
            Self::Event => b'2',
            Self::Ack => b'3',
            Self::ConnectError => b'4',
            Self::BinaryEvent => b'5',
            Self::BinaryAck => b'6',
        }
    }

    /// Whether binary attachments follow this packet.
    pub fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

/// One decoded Socket.IO packet (the part after the Engine.IO `4`).
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// Packet type.
    pub kind: PacketKind,
    /// Namespace, `"/"` when omitted.
    pub ns: String,
    /// Ack id, if any.
    pub id: Option<u64>,
    /// Number of binary attachments (binary packets only).
    pub attachments: usize,
    /// JSON payload, if any.
    pub data: Option<Value>,
}

impl Packet {
    /// Splits an EVENT payload into `(name, args)`; `None` for other packets.
    pub fn into_event(self) -> Option<(String, Vec<Value>)> {
        if !matches!(self.kind, PacketKind::Event | PacketKind::BinaryEvent) {
            return None;
        }
        split_event(self.data?)
    }
}

fn split_event(data: Value) -> Option<(String, Vec<Value>)> {
    let Value::Array(mut items) = data else {
        return None;
    };
    if !matches!(items.first(), Some(Value::String(_))) {
        return None;
    }
    // In-place shift: no reallocation of the argument vector.
    match items.remove(0) {
        Value::String(name) => Some((name, items)),
        _ => None,
    }
}

fn malformed(reason: &'static str, packet: &str) -> ClientError {
    ClientError::Malformed {
        reason,
        packet: packet.chars().take(200).collect(),
    }
}

/// `s[from..to]` without a panic path (indices come from ASCII scanning, so this is always `Ok`).
fn slice(s: &str, from: usize, to: usize) -> Result<&str, ClientError> {
    s.get(from..to)
        .ok_or_else(|| malformed("index not on a char boundary", s))
}

/// Parses one Socket.IO packet string (without the Engine.IO `4` prefix).
///
/// Never panics; any deviation from the wire format is `Err(ClientError::Malformed)`
/// (or `Err(ClientError::Json)` for an invalid JSON payload).
pub fn parse_packet(s: &str) -> Result<Packet, ClientError> {
    let bytes = s.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(malformed("empty packet", s));
    };
    let kind = PacketKind::from_byte(first).ok_or_else(|| malformed("unknown packet type", s))?;
    let mut pos = 1;

    let mut attachments = 0;
    if kind.is_binary() {
        let start = pos;
        while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        if pos == start || bytes.get(pos) != Some(&b'-') {
            return Err(malformed("missing attachment count", s));
        }
        attachments = slice(s, start, pos)?
            .parse::<usize>()
            .map_err(|_| malformed("attachment count overflow", s))?;
        pos += 1;
    }

    let ns = if bytes.get(pos) == Some(&b'/') {
        let rest = slice(s, pos, s.len())?;
        let len = rest.find(',').unwrap_or(rest.len());
        let ns = slice(rest, 0, len)?;
        if ns.bytes().any(|b| matches!(b, b'{' | b'[' | b'"')) {
            return Err(malformed("invalid namespace", s));
        }
        pos += (len + 1).min(rest.len());
        ns
    } else {
        "/"
    };

    let id_start = pos;
    while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
        pos += 1;
    }
    let id = if pos > id_start {
        Some(
            slice(s, id_start, pos)?
                .parse::<u64>()
                .map_err(|_| malformed("ack id overflow", s))?,
        )
    } else {
        None
    };

    let rest = slice(s, pos, s.len())?;
    let data = if rest.is_empty() {
        None
    } else {
        Some(serde_json::from_str::<Value>(rest)?)
    };

    match kind {
        PacketKind::Event | PacketKind::BinaryEvent => match &data {
            Some(Value::Array(items)) if matches!(items.first(), Some(Value::String(_))) => {}
            _ => return Err(malformed("event payload must be [name, ...args]", s)),
        },
        PacketKind::Ack | PacketKind::BinaryAck => {
            if id.is_none() {
                return Err(malformed("ack without id", s));
            }
            if !matches!(data, Some(Value::Array(_))) {
                return Err(malformed("ack payload must be an array", s));
            }
        }
        PacketKind::Connect => {
            if !matches!(data, None | Some(Value::Object(_))) {
                return Err(malformed("connect payload must be an object", s));
            }
        }
        PacketKind::ConnectError => {
            if !matches!(data, Some(Value::Object(_) | Value::String(_))) {
                return Err(malformed("connect_error payload must be an object", s));
            }
        }
        PacketKind::Disconnect => {}
    }

    Ok(Packet {
        kind,
        ns: ns.to_owned(),
        id,
        attachments,
        data,
    })
}

/// Normalises a namespace: `""` → `"/"`, `"admin"` → `"/admin"`.
fn norm_ns(ns: &str) -> Cow<'_, str> {
    if ns.is_empty() {
        Cow::Borrowed("/")
    } else if ns.starts_with('/') {
        Cow::Borrowed(ns)
    } else {
        Cow::Owned(format!("/{ns}"))
    }
}

/// Writes the Engine.IO message prefix, packet type, namespace and ack id.
fn write_header(buf: &mut Vec<u8>, kind: PacketKind, ns: &str, id: Option<u64>) {
    buf.push(b'4');
    buf.push(kind.as_byte());
    if ns != "/" {
        buf.extend_from_slice(ns.as_bytes());
        buf.push(b',');
    }
    if let Some(id) = id {
        buf.extend_from_slice(id.to_string().as_bytes());
    }
}

fn into_text(buf: Vec<u8>) -> Result<String, ClientError> {
    String::from_utf8(buf).map_err(|_| malformed("encoded packet is not utf-8", ""))
}

fn encode_event(
    ns: &str,
    event: &str,
    args: &[Value],
    id: Option<u64>,
) -> Result<String, ClientError> {
    let mut buf = Vec::with_capacity(16 + ns.len() + event.len() + 32 * args.len());
    write_header(&mut buf, PacketKind::Event, ns, id);
    buf.push(b'[');
    serde_json::to_writer(&mut buf, event)?;
    for arg in args {
        buf.push(b',');
        serde_json::to_writer(&mut buf, arg)?;
    }
    buf.push(b']');
    into_text(buf)
}

fn encode_simple(kind: PacketKind, ns: &str, data: Option<&Value>) -> Result<String, ClientError> {
    let mut buf = Vec::with_capacity(8 + ns.len());
    write_header(&mut buf, kind, ns, None);
    if let Some(data) = data {
        serde_json::to_writer(&mut buf, data)?;
    }
    into_text(buf)
}

/// Replaces `{"_placeholder":true,"num":n}` with attachment `n` as an array of bytes.
fn fill_placeholders(v: &mut Value, bins: &[Bytes]) {
    let replacement = match v {
        Value::Array(items) => {
            for item in items {
                fill_placeholders(item, bins);
            }
            return;
        }
        Value::Object(map) => {
            if map.get("_placeholder") == Some(&Value::Bool(true)) {
                map.get("num")
                    .and_then(Value::as_u64)
                    .and_then(|n| usize::try_from(n).ok())
                    .and_then(|n| bins.get(n))
                    .map(|b| Value::Array(b.iter().map(|&x| Value::from(x)).collect()))
            } else {
                for item in map.values_mut() {
                    fill_placeholders(item, bins);
                }
                return;
            }
        }
        _ => return,
    };
    if let Some(r) = replacement {
        *v = r;
    }
}

type ConnectWaiter = oneshot::Sender<Result<String, ClientError>>;

#[derive(Default)]
struct State {
    /// Connected namespaces and their socket ids.
    sids: HashMap<String, String>,
    /// Namespaces waiting for CONNECT / CONNECT_ERROR.
    connecting: HashMap<String, ConnectWaiter>,
    /// Pending acknowledgements by ack id.
    acks: HashMap<u64, oneshot::Sender<Vec<Value>>>,
    /// Set once the background task has stopped.
    closed: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    next_ack: AtomicU64,
    /// Notified when a namespace disconnects or the connection closes.
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn closed_error(&self) -> ClientError {
        let reason = self.lock().closed.clone();
        ClientError::Closed(reason.unwrap_or_else(|| "connection closed".to_owned()))
    }

    fn on_connect_result(&self, ns: &str, res: Result<String, ClientError>) {
        let waiter = {
            let mut st = self.lock();
            if let Ok(sid) = &res {
                st.sids.insert(ns.to_owned(), sid.clone());
            }
            st.connecting.remove(ns)
        };
        match (waiter, res) {
            (Some(tx), res) => {
                let _ = tx.send(res);
            }
            (None, Err(e)) => tracing::debug!(ns, "unsolicited connect_error: {e}"),
            (None, Ok(_)) => {}
        }
    }

    fn on_ns_disconnect(&self, ns: &str) {
        self.lock().sids.remove(ns);
        self.changed.notify_waiters();
    }

    fn on_ack(&self, id: u64, args: Vec<Value>) {
        let waiter = self.lock().acks.remove(&id);
        match waiter {
            Some(tx) => {
                let _ = tx.send(args);
            }
            None => tracing::debug!(id, "ack without waiter (late or unknown id)"),
        }
    }

    /// Marks the connection closed; dropping the waiters wakes them with an error.
    fn close(&self, reason: String) {
        let (connecting, acks) = {
            let mut st = self.lock();
            st.closed = Some(reason);
            st.sids.clear();
            (
                std::mem::take(&mut st.connecting),
                std::mem::take(&mut st.acks),
            )
        };
        drop(connecting);
        drop(acks);
        self.changed.notify_waiters();
    }
}

enum Out {
    Text(String),
    Close,
}

/// One Engine.IO connection to a Socket.IO server, with any number of namespaces.
///
/// Dropping the client aborts its background task and closes the socket.
pub struct SioClient {
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<Out>,
    events: mpsc::UnboundedReceiver<Received>,
    task: JoinHandle<()>,
    engine_sid: String,
}

impl std::fmt::Debug for SioClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SioClient")
            .field("engine_sid", &self.engine_sid)
            .finish_non_exhaustive()
    }
}

impl Drop for SioClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SioClient {
    /// Opens the websocket and connects namespace `ns` (with optional `auth`);
    /// returns once the server acknowledged the CONNECT.
    pub async fn connect(
        addr: SocketAddr,
        ns: &str,
        auth: Option<Value>,
    ) -> Result<SioClient, ClientError> {
        let client = Self::open(addr).await?;
        client.connect_ns(ns, auth).await?;
        Ok(client)
    }

    /// Opens the websocket and completes the Engine.IO handshake without connecting any namespace.
    pub async fn open(addr: SocketAddr) -> Result<SioClient, ClientError> {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (mut ws, _resp) = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async_with_config(url, None, true),
        )
        .await
        .map_err(|_| ClientError::Timeout)??;

        let (engine_sid, heartbeat) = tokio::time::timeout(CONNECT_TIMEOUT, read_open(&mut ws))
            .await
            .map_err(|_| ClientError::Timeout)??;

        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            next_ack: AtomicU64::new(0),
            changed: Notify::new(),
        });
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(ws, shared.clone(), ev_tx, out_rx, heartbeat));
        Ok(SioClient {
            shared,
            out: out_tx,
            events: ev_rx,
            task,
            engine_sid,
        })
    }

    /// Connects an additional namespace on this connection and returns its socket id.
    pub async fn connect_ns(&self, ns: &str, auth: Option<Value>) -> Result<String, ClientError> {
        let ns = norm_ns(ns);
        let packet = encode_simple(PacketKind::Connect, &ns, auth.as_ref())?;
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.lock();
            if let Some(reason) = &st.closed {
                return Err(ClientError::Closed(reason.clone()));
            }
            if st.sids.contains_key(&*ns) || st.connecting.contains_key(&*ns) {
                return Err(ClientError::AlreadyConnected(ns.into_owned()));
            }
            st.connecting.insert(ns.to_string(), tx);
        }
        if self.out.send(Out::Text(packet)).is_err() {
            self.shared.lock().connecting.remove(&*ns);
            return Err(self.shared.closed_error());
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, rx).await {
            Ok(Ok(res)) => res,
            Ok(Err(_)) => Err(self.shared.closed_error()),
            Err(_) => {
                self.shared.lock().connecting.remove(&*ns);
                Err(ClientError::Timeout)
            }
        }
    }

    /// Socket id of namespace `ns`, if it is connected.
    pub fn sid(&self, ns: &str) -> Option<String> {
        self.shared.lock().sids.get(&*norm_ns(ns)).cloned()
    }

    /// Whether namespace `ns` is currently connected.
    pub fn is_connected(&self, ns: &str) -> bool {
        self.shared.lock().sids.contains_key(&*norm_ns(ns))
    }

    /// Whether the underlying connection has closed.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// The Engine.IO session id from the open packet.
    pub fn engine_sid(&self) -> &str {
        &self.engine_sid
    }

    /// Queues `event` with `args` on namespace `ns`.
    ///
    /// Returns once the packet is queued for the writer; a later write failure
    /// shows up as a closed connection.
    pub async fn emit(&self, ns: &str, event: &str, args: Vec<Value>) -> Result<(), ClientError> {
        let ns = norm_ns(ns);
        self.check_connected(&ns)?;
        let packet = encode_event(&ns, event, &args, None)?;
        self.send(packet)
    }

    /// Emits `event` with an ack id and waits up to `timeout` for the server's ack arguments.
    pub async fn emit_with_ack(
        &self,
        ns: &str,
        event: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<Vec<Value>, ClientError> {
        let ns = norm_ns(ns);
        let id = self.shared.next_ack.fetch_add(1, Ordering::Relaxed);
        let packet = encode_event(&ns, event, &args, Some(id))?;
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.lock();
            if let Some(reason) = &st.closed {
                return Err(ClientError::Closed(reason.clone()));
            }
            if !st.sids.contains_key(&*ns) {
                return Err(ClientError::NotConnected(ns.into_owned()));
            }
            st.acks.insert(id, tx);
        }
        if let Err(e) = self.send(packet) {
            self.shared.lock().acks.remove(&id);
            return Err(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(args)) => Ok(args),
            Ok(Err(_)) => Err(self.shared.closed_error()),
            Err(_) => {
                self.shared.lock().acks.remove(&id);
                Err(ClientError::Timeout)
            }
        }
    }

    /// Next received event, or `Err(Timeout)` if none arrives within `timeout`.
    ///
    /// Returns `Err(Closed)` once the connection is closed and all queued events were read.
    pub async fn next_event(&mut self, timeout: Duration) -> Result<Received, ClientError> {
        match tokio::time::timeout(timeout, self.events.recv()).await {
            Ok(Some(ev)) => Ok(ev),
            Ok(None) => Err(self.shared.closed_error()),
            Err(_) => Err(ClientError::Timeout),
        }
    }

    /// Next event named `event` (on any namespace) within `timeout`.
    ///
    /// Events with other names received meanwhile are **discarded** (logged at debug level).
    pub async fn next_event_named(
        &mut self,
        event: &str,
        timeout: Duration,
    ) -> Result<Received, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ev = match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ev)) => ev,
                Ok(None) => return Err(self.shared.closed_error()),
                Err(_) => return Err(ClientError::Timeout),
            };
            if ev.event == event {
                return Ok(ev);
            }
            tracing::debug!(skipped = %ev.event, wanted = event, "next_event_named: skipping event");
        }
    }

    /// Succeeds if no event arrives within `dur`; otherwise `Err(UnexpectedEvent)`.
    ///
    /// Events already queued count as arriving. A closed connection is `Err(Closed)`.
    pub async fn expect_silence(&mut self, dur: Duration) -> Result<(), ClientError> {
        match tokio::time::timeout(dur, self.events.recv()).await {
            Ok(Some(ev)) => Err(ClientError::UnexpectedEvent(ev)),
            Ok(None) => Err(self.shared.closed_error()),
            Err(_) => Ok(()),
        }
    }

    /// An already received event, if any, without waiting.
    pub fn try_next_event(&mut self) -> Option<Received> {
        self.events.try_recv().ok()
    }

    /// Waits until the server disconnects namespace `ns` (or the connection closes).
    pub async fn wait_ns_disconnected(
        &self,
        ns: &str,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let ns = norm_ns(ns);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.shared.lock().sids.contains_key(&*ns) {
                return Ok(());
            }
            tokio::time::timeout_at(deadline, notified)
                .await
                .map_err(|_| ClientError::Timeout)?;
        }
    }

    /// Leaves namespace `ns` (sends DISCONNECT) while keeping the connection open.
    pub async fn disconnect_ns(&self, ns: &str) -> Result<(), ClientError> {
        let ns = norm_ns(ns);
        self.check_connected(&ns)?;
        let packet = encode_simple(PacketKind::Disconnect, &ns, None)?;
        self.send(packet)?;
        self.shared.on_ns_disconnect(&ns);
        Ok(())
    }

    /// Sends DISCONNECT for every connected namespace, closes the websocket and
    /// waits (briefly) for the background task to finish. Already closed is `Ok`.
    pub async fn disconnect(mut self) -> Result<(), ClientError> {
        let namespaces: Vec<String> = self.shared.lock().sids.keys().cloned().collect();
        for ns in namespaces {
            let packet = encode_simple(PacketKind::Disconnect, &ns, None)?;
            if self.out.send(Out::Text(packet)).is_err() {
                return Ok(());
            }
        }
        if self.out.send(Out::Close).is_err() {
            return Ok(());
        }
        // The task bounds its own close handshake; this is a safety net.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT * 2, &mut self.task).await;
        Ok(())
    }

    fn check_connected(&self, ns: &str) -> Result<(), ClientError> {
        let st = self.shared.lock();
        if let Some(reason) = &st.closed {
            return Err(ClientError::Closed(reason.clone()));
        }
        if !st.sids.contains_key(ns) {
            return Err(ClientError::NotConnected(ns.to_owned()));
        }
        Ok(())
    }

    fn send(&self, packet: String) -> Result<(), ClientError> {
        self.out
            .send(Out::Text(packet))
            .map_err(|_| self.shared.closed_error())
    }
}

/// Reads the Engine.IO open packet; returns the engine sid and the heartbeat deadline.
async fn read_open(ws: &mut Ws) -> Result<(String, Duration), ClientError> {
    loop {
        let msg = match ws.next().await {
            Some(msg) => msg?,
            None => return Err(ClientError::Handshake("closed before open packet".into())),
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            Message::Binary(_) => return Err(ClientError::Handshake("binary open packet".into())),
            Message::Close(_) => {
                return Err(ClientError::Handshake("closed before open packet".into()));
            }
        };
        let Some(json) = text.as_str().strip_prefix('0') else {
            return Err(ClientError::Handshake(format!(
                "expected open packet, got {:?}",
                text.as_str()
            )));
        };
        let open: Value = serde_json::from_str(json)?;
        let sid = open
            .get("sid")
            .and_then(Value::as_str)
            .ok_or_else(|| ClientError::Handshake("open packet without sid".into()))?
            .to_owned();
        let interval = open.get("pingInterval").and_then(Value::as_u64);
        let timeout = open.get("pingTimeout").and_then(Value::as_u64);
        let heartbeat = match (interval, timeout) {
            (Some(i), Some(t)) => Duration::from_millis(i.saturating_add(t)),
            _ => DEFAULT_HEARTBEAT,
        };
        return Ok((sid, heartbeat));
    }
}

/// A binary packet waiting for its attachments.
struct Partial {
    packet: Packet,
    bins: Vec<Bytes>,
}

async fn run(
    mut ws: Ws,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Received>,
    mut out: mpsc::UnboundedReceiver<Out>,
    heartbeat: Duration,
) {
    let reason = io_loop(&mut ws, &shared, &events, &mut out, heartbeat).await;
    tracing::debug!(%reason, "socket.io client connection closed");
    shared.close(reason);
    // `events` drops after `close`, so readers see the close reason.
    drop(events);
}

async fn io_loop(
    ws: &mut Ws,
    shared: &Shared,
    events: &mpsc::UnboundedSender<Received>,
    out: &mut mpsc::UnboundedReceiver<Out>,
    heartbeat: Duration,
) -> String {
    let hb = tokio::time::sleep(heartbeat);
    tokio::pin!(hb);
    let mut partial: Option<Partial> = None;
    let mut close_reason: Option<String> = None;
    loop {
        tokio::select! {
            msg = ws.next() => {
                let msg = match msg {
                    None => {
                        return close_reason.unwrap_or_else(|| "websocket closed".to_owned())
                    }
                    Some(Err(e)) => {
                        return close_reason.unwrap_or_else(|| format!("websocket error: {e}"))
                    }
                    Some(Ok(msg)) => msg,
                };
                match msg {
                    Message::Text(text) => {
                        let text = text.as_str();
                        match text.as_bytes().first() {
                            Some(b'4') => {
                                let payload = text.get(1..).unwrap_or_default();
                                handle_sio(payload, shared, events, &mut partial);
                            }
                            Some(b'2') => {
                                hb.as_mut().reset(tokio::time::Instant::now() + heartbeat);
                                let pong = if text.len() == 1 {
                                    Message::text("3")
                                } else {
                                    Message::text(format!("3{}", text.get(1..).unwrap_or_default()))
                                };
                                if let Err(e) = ws.send(pong).await {
                                    return format!("failed to send pong: {e}");
                                }
                            }
                            Some(b'1') => return "server sent engine.io close".to_owned(),
                            Some(b'0' | b'3' | b'5' | b'6') => {}
                            _ => tracing::debug!(packet = text, "unknown engine.io packet"),
                        }
                    }
                    Message::Binary(bin) => match partial.as_mut() {
                        Some(p) => {
                            p.bins.push(bin);
                            if p.bins.len() >= p.packet.attachments
                                && let Some(mut p) = partial.take()
                            {
                                if let Some(data) = p.packet.data.as_mut() {
                                    fill_placeholders(data, &p.bins);
                                }
                                dispatch(p.packet, Instant::now(), shared, events);
                            }
                        }
                        None => tracing::debug!(len = bin.len(), "unexpected binary frame"),
                    },
                    Message::Close(frame) => {
                        close_reason = Some(match frame {
                            Some(f) => format!("server closed websocket: {} {}", f.code, f.reason),
                            None => "server closed websocket".to_owned(),
                        });
                    }
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                }
            }
            cmd = out.recv() => match cmd {
                Some(Out::Text(text)) => match write_batch(ws, out, text).await {
                    Ok(false) => {}
                    Ok(true) => {
                        close_ws(ws).await;
                        return "client disconnected".to_owned();
                    }
                    Err(e) => return format!("write failed: {e}"),
                },
                Some(Out::Close) => {
                    close_ws(ws).await;
                    return "client disconnected".to_owned();
                }
                None => return "client dropped".to_owned(),
            },
            () = &mut hb => return "ping timeout (no ping from server)".to_owned(),
        }
    }
}

/// Writes `first` plus whatever else is already queued, then flushes once.
/// Returns `true` when a queued `Close` was reached (the caller then closes).
async fn write_batch(
    ws: &mut Ws,
    out: &mut mpsc::UnboundedReceiver<Out>,
    first: String,
) -> Result<bool, tungstenite::Error> {
    ws.feed(Message::text(first)).await?;
    let mut close = false;
    for _ in 1..MAX_WRITE_BATCH {
        match out.try_recv() {
            Ok(Out::Text(text)) => ws.feed(Message::text(text)).await?,
            Ok(Out::Close) => {
                close = true;
                break;
            }
            Err(_) => break,
        }
    }
    ws.flush().await?;
    Ok(close)
}

/// Starts the websocket close handshake and waits (bounded) for the server's reply.
async fn close_ws(ws: &mut Ws) {
    let _ = ws.close(None).await;
    let drain = async { while let Some(Ok(_)) = ws.next().await {} };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, drain).await;
}

fn handle_sio(
    payload: &str,
    shared: &Shared,
    events: &mpsc::UnboundedSender<Received>,
    partial: &mut Option<Partial>,
) {
    let received_at = Instant::now();
    let packet = match parse_packet(payload) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("dropping malformed socket.io packet: {e}");
            return;
        }
    };
    if packet.attachments > 0 {
        let bins = Vec::with_capacity(packet.attachments.min(16));
        *partial = Some(Partial { packet, bins });
        return;
    }
    dispatch(packet, received_at, shared, events);
}

fn dispatch(
    packet: Packet,
    received_at: Instant,
    shared: &Shared,
    events: &mpsc::UnboundedSender<Received>,
) {
    let Packet {
        kind, ns, id, data, ..
    } = packet;
    match kind {
        PacketKind::Event | PacketKind::BinaryEvent => {
            let Some((event, args)) = data.and_then(split_event) else {
                return;
            };
            // A closed receiver only means the client is gone.
            let _ = events.send(Received {
                ns,
                event,
                args,
                received_at,
            });
        }
        PacketKind::Ack | PacketKind::BinaryAck => {
            if let (Some(id), Some(Value::Array(args))) = (id, data) {
                shared.on_ack(id, args);
            }
        }
        PacketKind::Connect => {
            let sid = data
                .as_ref()
                .and_then(|d| d.get("sid"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            shared.on_connect_result(&ns, Ok(sid));
        }
        PacketKind::ConnectError => {
            let (message, data) = match data {
                Some(Value::Object(mut map)) => {
                    let message = match map.remove("message") {
                        Some(Value::String(s)) => s,
                        Some(other) => other.to_string(),
                        None => String::new(),
                    };
                    (message, map.remove("data"))
                }
                Some(Value::String(s)) => (s, None),
                _ => (String::new(), None),
            };
            let err = ClientError::ConnectError {
                ns: ns.clone(),
                message,
                data,
            };
            shared.on_connect_result(&ns, Err(err));
        }
        PacketKind::Disconnect => shared.on_ns_disconnect(&ns),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_connect_root_and_ns() {
        let p = parse_packet(r#"0{"sid":"abc"}"#).unwrap();
        assert_eq!(p.kind, PacketKind::Connect);
        assert_eq!(p.ns, "/");
        assert_eq!(p.id, None);
        assert_eq!(p.data, Some(json!({"sid": "abc"})));

        let p = parse_packet(r#"0/admin,{"sid":"x"}"#).unwrap();
        assert_eq!(p.ns, "/admin");
        assert_eq!(p.data, Some(json!({"sid": "x"})));

        let p = parse_packet("0").unwrap();
        assert_eq!((p.ns.as_str(), p.data), ("/", None));
    }

    #[test]
    fn parse_events_and_ack_ids() {
        let p = parse_packet(r#"2["hello",1,{"a":[2]}]"#).unwrap();
        assert_eq!(
            (p.kind, p.ns.as_str(), p.id),
            (PacketKind::Event, "/", None)
        );
        let (name, args) = p.into_event().unwrap();
        assert_eq!(name, "hello");
        assert_eq!(args, vec![json!(1), json!({"a": [2]})]);

        let p = parse_packet(r#"2/admin,["x"]"#).unwrap();
        assert_eq!((p.ns.as_str(), p.id), ("/admin", None));
        assert_eq!(p.into_event().unwrap(), ("x".to_owned(), vec![]));

        let p = parse_packet(r#"212["x","y"]"#).unwrap();
        assert_eq!((p.ns.as_str(), p.id), ("/", Some(12)));

        let p = parse_packet(r#"2/admin,12["x"]"#).unwrap();
        assert_eq!((p.ns.as_str(), p.id), ("/admin", Some(12)));

        let p = parse_packet(r#"312["ok",3]"#).unwrap();
        assert_eq!((p.kind, p.id), (PacketKind::Ack, Some(12)));
        assert_eq!(p.data, Some(json!(["ok", 3])));

        let p = parse_packet("3/admin,0[]").unwrap();
        assert_eq!((p.ns.as_str(), p.id), ("/admin", Some(0)));
        assert!(p.into_event().is_none());
    }

    #[test]
    fn parse_connect_error_and_disconnect() {
        let p = parse_packet(r#"4{"message":"nope"}"#).unwrap();
        assert_eq!(p.kind, PacketKind::ConnectError);
        assert_eq!(p.data, Some(json!({"message": "nope"})));

        let p = parse_packet(r#"4/admin,{"message":"no","data":{"code":7}}"#).unwrap();
        assert_eq!(p.ns, "/admin");
        assert_eq!(p.data, Some(json!({"message": "no", "data": {"code": 7}})));

        let p = parse_packet("1").unwrap();
        assert_eq!((p.kind, p.ns.as_str()), (PacketKind::Disconnect, "/"));
        let p = parse_packet("1/admin,").unwrap();
        assert_eq!(p.ns, "/admin");
        let p = parse_packet("1/admin").unwrap();
        assert_eq!(p.ns, "/admin");
    }

    #[test]
    fn parse_binary() {
        let p = parse_packet(r#"51-/admin,7["bin",{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!(p.kind, PacketKind::BinaryEvent);
        assert_eq!((p.attachments, p.ns.as_str(), p.id), (1, "/admin", Some(7)));

        let mut data = p.data.unwrap();
        fill_placeholders(&mut data, &[Bytes::from_static(&[1, 2, 255])]);
        assert_eq!(data, json!(["bin", [1, 2, 255]]));

        let p = parse_packet(r#"62-3[{"_placeholder":true,"num":1}]"#).unwrap();
        assert_eq!(
            (p.kind, p.attachments, p.id),
            (PacketKind::BinaryAck, 2, Some(3))
        );
    }

    #[test]
    fn parse_malformed_is_err() {
        let bad = [
            "",
            "9",
            "x[]",
            "2",
            "2[",
            "2[]",
            "2[1]",
            r#"2{"a":1}"#,
            "2/admin,",
            r#"2/admin{"x":1},["a"]"#,
            "3[]",
            "31",
            r#"31{"a":1}"#,
            "099999999999999999999999[]",
            "399999999999999999999999[]",
            "5[\"a\"]",
            "5-[\"a\"]",
            "599999999999999999999999-[\"a\"]",
            "4",
            "44",
            "0[1]",
            r#"2["a"]trailing"#,
            "2\u{e9}",
            "/",
        ];
        for s in bad {
            assert!(parse_packet(s).is_err(), "expected error for {s:?}");
        }
    }

    #[test]
    fn parse_never_panics_on_prefixes() {
        let full = r#"51-/ns,12["ev",{"_placeholder":true,"num":0},"é"]"#;
        for (i, _) in full.char_indices() {
            let _ = parse_packet(&full[..i]);
            let _ = parse_packet(&full[i..]);
        }
    }

    #[test]
    fn encode_packets() {
        assert_eq!(
            encode_event("/", "hi", &[json!(1), json!("a")], None).unwrap(),
            r#"42["hi",1,"a"]"#
        );
        assert_eq!(
            encode_event("/admin", "hi", &[], Some(12)).unwrap(),
            r#"42/admin,12["hi"]"#
        );
        assert_eq!(encode_simple(PacketKind::Connect, "/", None).unwrap(), "40");
        assert_eq!(
            encode_simple(PacketKind::Connect, "/admin", Some(&json!({"token": "x"}))).unwrap(),
            r#"40/admin,{"token":"x"}"#
        );
        assert_eq!(
            encode_simple(PacketKind::Disconnect, "/admin", None).unwrap(),
            "41/admin,"
        );
        assert_eq!(norm_ns("admin"), "/admin");
        assert_eq!(norm_ns(""), "/");
    }
}
