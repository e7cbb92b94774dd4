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

mod packet;

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
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use self::packet::{Packet, PacketKind, encode_simple, parse_packet};
use self::packet::{encode_event, fill_placeholders, norm_ns, split_event};

/// A client websocket, as [`open_websocket`] returns it.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

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
        let (ws, engine_sid, heartbeat) = open_websocket(addr).await?;
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

/// Opens a websocket to the Socket.IO server at `addr` and reads the
/// Engine.IO open packet, within [`CONNECT_TIMEOUT`]; returns the socket, the
/// engine sid and the heartbeat deadline. No namespace is connected yet.
pub async fn open_websocket(addr: SocketAddr) -> Result<(Ws, String, Duration), ClientError> {
    open_websocket_from(addr, None).await
}

/// [`open_websocket`] from the local address `from` (port chosen by the
/// system). One source address has about 28,000 ephemeral ports towards one
/// server address; a benchmark holding more connections spreads them over
/// several loopback addresses (`127.0.0.2`, `127.0.0.3`, ...).
///
/// ```no_run
/// # async fn run() -> Result<(), broadcast_test_support::sio_client::ClientError> {
/// use broadcast_test_support::sio_client::open_websocket_from;
/// let server = "127.0.0.1:3000".parse().unwrap();
/// let (_ws, _sid, _heartbeat) = open_websocket_from(server, Some([127, 0, 0, 2].into())).await?;
/// # Ok(()) }
/// ```
pub async fn open_websocket_from(
    addr: SocketAddr,
    from: Option<std::net::IpAddr>,
) -> Result<(Ws, String, Duration), ClientError> {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    // tungstenite zero-fills its whole read buffer before every read, also
    // the read that finds nothing: with its 128 KiB default that was ~40% of
    // the bench clients' CPU and tens of µs of latency per frame at low
    // rates. 4 KiB is engineioxide's server default.
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let open = async {
        let mut ws = match from {
            None => {
                tokio_tungstenite::connect_async_with_config(url, Some(config), true)
                    .await?
                    .0
            }
            Some(ip) => {
                let socket = if addr.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()
                } else {
                    tokio::net::TcpSocket::new_v6()
                }
                .map_err(tungstenite::Error::Io)?;
                socket
                    .bind(SocketAddr::new(ip, 0))
                    .map_err(tungstenite::Error::Io)?;
                let tcp = socket.connect(addr).await.map_err(tungstenite::Error::Io)?;
                tcp.set_nodelay(true).map_err(tungstenite::Error::Io)?;
                tokio_tungstenite::client_async_with_config(
                    url,
                    MaybeTlsStream::Plain(tcp),
                    Some(config),
                )
                .await?
                .0
            }
        };
        let (sid, heartbeat) = read_open(&mut ws).await?;
        Ok((ws, sid, heartbeat))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, open)
        .await
        .map_err(|_| ClientError::Timeout)?
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
