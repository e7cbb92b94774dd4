//! In-process delivery through a socketioxide server.

use std::borrow::Cow;

use socketioxide::adapter::Adapter;
use socketioxide::{BroadcastError as SioBroadcastError, SocketIo};

use super::{BoxFuture, Delivery, DeliveryReport, NamespaceFailure, RecentIds, Tally, Transport};
use crate::error::TransportError;
use crate::target::NamespaceTargets;

/// Delivers through a [`SocketIo`] handle, with whatever adapter it runs
/// (in-memory, or Redis to reach sockets of other servers).
///
/// [`Broadcaster::socketio`](crate::Broadcaster::socketio) uses it; name
/// it to configure the broadcaster:
///
/// ```no_run
/// use broadcast_core::{Broadcaster, transport::SocketIoTransport};
/// let (_layer, io) = socketioxide::SocketIo::new_layer();
/// let broadcaster = Broadcaster::builder(SocketIoTransport::new(io))
///     .max_payload_bytes(16 * 1024)
///     .build();
/// ```
pub struct SocketIoTransport<A: Adapter> {
    io: SocketIo<A>,
    /// Ids of deliveries that carried one ([`Delivery::id`]).
    recent: RecentIds,
}

impl<A: Adapter> SocketIoTransport<A> {
    /// Wraps a socketioxide handle.
    pub fn new(io: SocketIo<A>) -> Self {
        Self {
            io,
            recent: RecentIds::default(),
        }
    }
}

impl<A: Adapter> Transport for SocketIoTransport<A> {
    fn deliver<'a>(
        &'a self,
        d: Delivery<'a>,
    ) -> BoxFuture<'a, Result<DeliveryReport, NamespaceFailure>> {
        Box::pin(async move {
            if let Some(id) = d.id
                && !self.recent.claim(id)
            {
                return Ok(DeliveryReport {
                    duplicate: true,
                    ..Default::default()
                });
            }
            let mut tally = Tally::default();
            for group in d.targets.namespaces() {
                match emit_group(&self.io, group, &d, false, &mut tally.report).await {
                    Ok(()) => tally.delivered(),
                    Err(error) => tally.failed(group, error),
                }
            }
            // When no namespace went out, let a retry through. A partial
            // failure keeps the id, so that the namespaces that were
            // delivered are not delivered twice.
            if let Some(id) = d.id
                && tally.report.namespaces == 0
            {
                self.recent.release(id);
            }
            tally.finish()
        })
    }
}

/// Emits one namespace's share of a delivery with a single socketioxide
/// emit; `local` keeps it to this server's sockets (the adapter does not
/// publish).
pub(crate) async fn emit_group<A: Adapter>(
    io: &SocketIo<A>,
    group: &NamespaceTargets,
    d: &Delivery<'_>,
    local: bool,
    report: &mut DeliveryReport,
) -> Result<(), TransportError> {
    let Some(op) = io.of(&*group.namespace) else {
        return Err(TransportError::UnknownNamespace(
            group.namespace.to_string(),
        ));
    };
    // socketioxide excludes a sender through the socket's own broadcast
    // operator (the id travels to other nodes with the adapter's options).
    // Other sockets, and senders connected elsewhere, are excluded by their
    // id room, which the rooms middleware (`join::Rooms`) makes every
    // socket join.
    let op = match d.except_sockets.first().and_then(|sid| op.get_socket(*sid)) {
        Some(sender) => sender.broadcast(),
        None => op,
    };
    let op = if local { op.local() } else { op };
    let mut op = op.to(group.rooms.clone());
    if !d.except_rooms.is_empty() || !d.except_sockets.is_empty() {
        let mut except: Vec<Cow<'static, str>> = d.except_rooms.to_vec();
        except.extend(d.except_sockets.iter().map(|s| Cow::Owned(s.to_string())));
        op = op.except(except);
    }
    // `&RawValue` serializes as its bytes: no second JSON pass.
    op.emit(d.event, d.payload)
        .await
        .or_else(|e| classify(e, report))
}

/// Sorts socketioxide's error: per-socket write failures are counted (a
/// socket closing mid-broadcast is normal), everything else is a failure.
pub(crate) fn classify(
    e: SioBroadcastError,
    report: &mut DeliveryReport,
) -> Result<(), TransportError> {
    match e {
        SioBroadcastError::Socket(errors) => {
            tracing::debug!(count = errors.len(), "some sockets could not be written to");
            report.socket_errors += errors.len();
            Ok(())
        }
        SioBroadcastError::Serialize(e) => Err(TransportError::Encode(Box::new(e))),
        // socketioxide's adapter errors are not `Sync`; keep their message.
        SioBroadcastError::Adapter(e) => Err(TransportError::Adapter(e.to_string().into())),
    }
}
